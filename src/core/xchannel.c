/*
 * xchannel.c — shared channels: memory channels whose ends may be used from
 * different runs (threads), opened by ctrio_open_shared_channel and driven by
 * the same ctrio_channel_* calls (channel.h dispatches on the handle).
 *
 * Why the same calls and not a second family of types: a task that receives
 * from "a channel" should not care where the senders run, code written for
 * one run keeps working when its producers move to other runs, and Trio has
 * one MemorySendChannel too. The cost is one branch per call on the memory
 * channel's path, which stays lock-free.
 *
 * The channel's state is under one mutex, held only for the few copies of a
 * send or receive, never across a task switch. A blocked task waits as on a
 * memory channel: a waiter on its own stack, in a FIFO queue, holding the
 * element (or the place it goes), so that a handoff copies once between the
 * two tasks. Whoever takes a waiter off its queue (a sender, a receiver, a
 * close) finishes the handoff under the mutex and marks the waiter `handed`;
 * it then wakes the task: directly when the waiter belongs to the caller's
 * own run, otherwise by posting the waiter's embedded ctrio__post to the
 * waiter's run token, after the mutex is released. Another run's scheduler
 * is never touched.
 *
 * Cancellation: the blocked task's abort function runs in its own run and
 * takes the mutex. A waiter still queued is removed (-ECANCELED: nothing was
 * sent or taken). A waiter already handed has its element delivered (or
 * taken) by another thread, and its wake-up is on the way: the abort fails
 * and the task keeps waiting for that post, so the call returns the
 * handoff's result and the cancellation shows at the next checkpoint. This
 * is what Trio's abort_fn returning Abort.FAILED is for; nothing is lost or
 * delivered twice (tests/test_xchannel.c, the cancellation races).
 *
 * Posts cannot meet an ended run: a waiter's task is alive until its post
 * has run, and a run closes its token (after which posts fail with
 * -ESHUTDOWN) only once it has no task left. Nor can the token be freed
 * under the poster: the post is queued under the token's mutex, and the
 * task, hence its run, lives until the run's thread has taken it from there.
 *
 * Lifetime: `refs` counts one for the open handles together and one per
 * parked waiter, so that an abort may still take the mutex after the last
 * handle was closed by another run; the last to leave frees the channel.
 */
#include "internal.h"
#include "channel.h"
#include "token.h"

#include <assert.h>
#include <pthread.h>

struct ctrio__xchan {
    pthread_mutex_t mu;
    ctrio__chan_core core; /* under mu */
    _Atomic size_t refs;
};

typedef struct xwaiter {
    ctrio__chan_waiter base; /* queued in core's send_waiters or recv_waiters */
    ctrio__post post;   /* the wake-up, posted to `token` by another thread */
    ctrio__task *task;
    ctrio__run *run;
    ctrio_token *token;
    ctrio__xchan *x;
    struct xwaiter *next_wake; /* in the waker's list of posts to make */
    int value;          /* the task's result, set when handed */
    bool handed;        /* taken off its queue by a waker (under mu) */
} xwaiter;

/* Waiters of other runs to wake once the mutex is released. */
typedef struct wakelist {
    xwaiter *head;
} wakelist;

static void xchan_unref(ctrio__xchan *x)
{
    if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&x->mu);
        free(x->core.buf);
        free(x);
    }
}

static void wake_post(ctrio__post *p)
{
    xwaiter *w = ctrio__container_of(p, xwaiter, post);
    ctrio__reschedule(w->task, w->value);
}

/* Under mu: w is off its queue and its handoff done; wake it with value
 * (ctx: the wakelist of the waiters of other runs). */
static void wake(ctrio__chan_waiter *base, int value, void *ctx)
{
    xwaiter *w = ctrio__container_of(base, xwaiter, base);
    wakelist *wl = ctx;
    w->handed = true;
    w->value = value;
    if (w->run == ctrio__tls_run) {
        ctrio__reschedule(w->task, value); /* our own run: no switch here */
        return;
    }
    w->next_wake = wl->head;
    wl->head = w;
}

/* After mu is released. Each waiter may vanish once its post is queued. */
static void flush(wakelist *wl)
{
    for (xwaiter *w = wl->head; w;) {
        xwaiter *next = w->next_wake;
        int rc = ctrio__token_post(w->token, &w->post);
        assert(rc == 0); /* the waiter's run is alive: see the top */
        (void)rc;
        w = next;
    }
    wl->head = NULL;
}

static bool xwaiter_abort(ctrio__task *t)
{
    xwaiter *w = t->wait_ctx;
    pthread_mutex_lock(&w->x->mu);
    bool undone = !w->handed;
    if (undone)
        ctrio__chan_unpark(&w->base);
    pthread_mutex_unlock(&w->x->mu);
    return undone;
}

/* Under mu: queue the current task's waiter w. */
static void park_locked(ctrio__xchan *x, bool send, void *handle, void *data, ctrio__task *t,
                        xwaiter *w)
{
    *w = (xwaiter){.post = {.fn = wake_post}, .task = t, .run = t->run, .token = t->run->token,
                   .x = x};
    ctrio__chan_park(&x->core, send, handle, data, &w->base);
    atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed);
}

/* Block on the parked waiter w (mu released), then let go of the channel. */
static int wait_parked(ctrio__xchan *x, xwaiter *w)
{
    int rc = ctrio__wait(xwaiter_abort, w);
    xchan_unref(x);
    return rc;
}

int ctrio_open_shared_channel(size_t elem_size, size_t capacity, ctrio_send_channel **tx,
                              ctrio_receive_channel **rx)
{
    int rc = ctrio__chan_check_open(elem_size, capacity, tx, rx);
    if (rc < 0)
        return rc;
    ctrio__xchan *x = calloc(1, sizeof *x);
    if (!x)
        return -ENOMEM;
    rc = ctrio__chan_core_open(&x->core, elem_size, capacity, tx, rx);
    if (rc < 0) {
        free(x);
        return rc;
    }
    pthread_mutex_init(&x->mu, NULL);
    atomic_init(&x->refs, 1);
    (*tx)->x = x;
    (*rx)->x = x;
    return 0;
}

/* A send (data: the element) or a receive (data: where it goes), tried
 * under mu; with a task t, a call that would block parks t until a waker
 * hands it over (t == NULL: the _nowait calls, which return -EWOULDBLOCK).
 * With t, it is called after ctrio_checkpoint_if_cancelled (channel.c). */
static int xchan_call(ctrio__xchan *x, bool send, void *handle, void *data, ctrio__task *t)
{
    wakelist wl = {NULL};
    xwaiter w;
    pthread_mutex_lock(&x->mu);
    int rc = send ? ctrio__chan_send(&x->core, data, wake, &wl)
                  : ctrio__chan_receive(&x->core, data, wake, &wl);
    bool park = rc == -EWOULDBLOCK && t;
    if (park)
        park_locked(x, send, handle, data, t, &w);
    pthread_mutex_unlock(&x->mu);
    flush(&wl);
    if (park)
        return wait_parked(x, &w);
    if (t)
        ctrio_cancel_shielded_checkpoint();
    return rc;
}

int ctrio__xchan_send_nowait(ctrio_send_channel *tx, const void *elem)
{
    return xchan_call(tx->x, true, tx, (void *)elem, NULL);
}

int ctrio__xchan_send(ctrio_send_channel *tx, const void *elem, ctrio__task *t)
{
    return elem ? xchan_call(tx->x, true, tx, (void *)elem, t) : -EINVAL;
}

int ctrio__xchan_receive_nowait(ctrio_receive_channel *rx, void *out)
{
    return xchan_call(rx->x, false, rx, out, NULL);
}

int ctrio__xchan_receive(ctrio_receive_channel *rx, void *out, ctrio__task *t)
{
    return out ? xchan_call(rx->x, false, rx, out, t) : -EINVAL;
}

int ctrio__xchan_send_clone(ctrio_send_channel *tx, ctrio_send_channel *s)
{
    ctrio__xchan *x = tx->x;
    pthread_mutex_lock(&x->mu);
    x->core.open_send++;
    pthread_mutex_unlock(&x->mu);
    s->x = x;
    return 0;
}

int ctrio__xchan_receive_clone(ctrio_receive_channel *rx, ctrio_receive_channel *r)
{
    ctrio__xchan *x = rx->x;
    pthread_mutex_lock(&x->mu);
    x->core.open_recv++;
    pthread_mutex_unlock(&x->mu);
    r->x = x;
    return 0;
}

/* Under mu, at the end of a close: release mu, wake, free the handle, and
 * after the last handle let go of the handles' reference. */
static void close_done(ctrio__xchan *x, void *handle, wakelist *wl)
{
    bool last = x->core.open_send == 0 && x->core.open_recv == 0;
    pthread_mutex_unlock(&x->mu);
    flush(wl);
    free(handle);
    if (last)
        xchan_unref(x);
}

int ctrio__xchan_send_close(ctrio_send_channel *tx)
{
    ctrio__xchan *x = tx->x;
    wakelist wl = {NULL};
    pthread_mutex_lock(&x->mu);
    ctrio__chan_close_send(&x->core, tx, wake, &wl);
    close_done(x, tx, &wl);
    return 0;
}

int ctrio__xchan_receive_close(ctrio_receive_channel *rx)
{
    ctrio__xchan *x = rx->x;
    wakelist wl = {NULL};
    pthread_mutex_lock(&x->mu);
    ctrio__chan_close_receive(&x->core, rx, wake, &wl);
    close_done(x, rx, &wl);
    return 0;
}

ctrio_channel_statistics ctrio__xchan_statistics(ctrio__xchan *x)
{
    pthread_mutex_lock(&x->mu);
    ctrio_channel_statistics s = ctrio__chan_statistics(&x->core);
    pthread_mutex_unlock(&x->mu);
    return s;
}
