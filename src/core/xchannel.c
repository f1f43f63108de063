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
    size_t elem, cap;
    char *buf;
    size_t head, count;
    size_t open_send, open_recv;
    ctrio__link send_waiters, recv_waiters;
    size_t nsend_waiting, nrecv_waiting;
    _Atomic size_t refs;
};

typedef struct xwaiter {
    ctrio__link link;   /* in send_waiters or recv_waiters while queued */
    ctrio__post post;   /* the wake-up, posted to `token` by another thread */
    ctrio__task *task;
    ctrio__run *run;
    ctrio_token *token;
    ctrio__xchan *x;
    void *handle;
    void *data;         /* sender: the element; receiver: where it goes */
    size_t *counter;
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
        free(x->buf);
        free(x);
    }
}

static void wake_post(ctrio__post *p)
{
    xwaiter *w = ctrio__container_of(p, xwaiter, post);
    ctrio__reschedule(w->task, w->value);
}

/* Under mu: w is off its queue and its handoff done; wake it with value. */
static void wake(xwaiter *w, int value, wakelist *wl)
{
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

static xwaiter *pop_waiter(ctrio__link *q)
{
    if (ctrio__list_empty(q))
        return NULL;
    xwaiter *w = ctrio__container_of(q->next, xwaiter, link);
    ctrio__list_remove(&w->link);
    (*w->counter)--;
    return w;
}

static bool xwaiter_abort(ctrio__task *t)
{
    xwaiter *w = t->wait_ctx;
    pthread_mutex_lock(&w->x->mu);
    bool undone = !w->handed;
    if (undone) {
        ctrio__list_remove(&w->link);
        (*w->counter)--;
    }
    pthread_mutex_unlock(&w->x->mu);
    return undone;
}

/* Under mu: queue the current task's waiter w. */
static void park_locked(ctrio__xchan *x, ctrio__link *q, size_t *counter, void *handle,
                        void *data, ctrio__task *t, xwaiter *w)
{
    *w = (xwaiter){.post = {.fn = wake_post}, .task = t, .run = t->run, .token = t->run->token,
                   .x = x, .handle = handle, .data = data, .counter = counter};
    ctrio__list_push_back(q, &w->link);
    (*counter)++;
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
    if (!elem_size || !tx || !rx || (capacity && elem_size > SIZE_MAX / capacity))
        return -EINVAL;
    ctrio__xchan *x = calloc(1, sizeof *x);
    ctrio_send_channel *s = calloc(1, sizeof *s);
    ctrio_receive_channel *r = calloc(1, sizeof *r);
    char *buf = capacity ? malloc(elem_size * capacity) : NULL;
    if (!x || !s || !r || (capacity && !buf)) {
        free(x);
        free(s);
        free(r);
        free(buf);
        return -ENOMEM;
    }
    pthread_mutex_init(&x->mu, NULL);
    x->elem = elem_size;
    x->cap = capacity;
    x->buf = buf;
    x->open_send = x->open_recv = 1;
    ctrio__list_init(&x->send_waiters);
    ctrio__list_init(&x->recv_waiters);
    atomic_init(&x->refs, 1);
    s->x = x;
    r->x = x;
    *tx = s;
    *rx = r;
    return 0;
}

static int send_locked(ctrio__xchan *x, const void *elem, wakelist *wl)
{
    if (x->open_recv == 0)
        return -EPIPE;
    xwaiter *w = pop_waiter(&x->recv_waiters);
    if (w) {
        memcpy(w->data, elem, x->elem);
        wake(w, 1, wl);
        return 0;
    }
    if (x->count < x->cap) {
        memcpy(x->buf + ((x->head + x->count) % x->cap) * x->elem, elem, x->elem);
        x->count++;
        return 0;
    }
    return -EWOULDBLOCK;
}

static int receive_locked(ctrio__xchan *x, void *out, wakelist *wl)
{
    if (x->count) {
        memcpy(out, x->buf + x->head * x->elem, x->elem);
        x->head = (x->head + 1) % x->cap;
        x->count--;
        xwaiter *w = pop_waiter(&x->send_waiters);
        if (w) { /* a blocked sender's element takes the freed slot */
            memcpy(x->buf + ((x->head + x->count) % x->cap) * x->elem, w->data, x->elem);
            x->count++;
            wake(w, 0, wl);
        }
        return 1;
    }
    xwaiter *w = pop_waiter(&x->send_waiters);
    if (w) {
        memcpy(out, w->data, x->elem);
        wake(w, 0, wl);
        return 1;
    }
    if (x->open_send == 0)
        return 0; /* EndOfChannel */
    return -EWOULDBLOCK;
}

int ctrio__xchan_send_nowait(ctrio_send_channel *tx, const void *elem)
{
    ctrio__xchan *x = tx->x;
    wakelist wl = {NULL};
    pthread_mutex_lock(&x->mu);
    int rc = send_locked(x, elem, &wl);
    pthread_mutex_unlock(&x->mu);
    flush(&wl);
    return rc;
}

/* After ctrio_checkpoint_if_cancelled (channel.c). */
int ctrio__xchan_send(ctrio_send_channel *tx, const void *elem, ctrio__task *t)
{
    if (!elem)
        return -EINVAL;
    ctrio__xchan *x = tx->x;
    wakelist wl = {NULL};
    xwaiter w;
    pthread_mutex_lock(&x->mu);
    int rc = send_locked(x, elem, &wl);
    if (rc == -EWOULDBLOCK)
        park_locked(x, &x->send_waiters, &x->nsend_waiting, tx, (void *)elem, t, &w);
    pthread_mutex_unlock(&x->mu);
    flush(&wl);
    if (rc == -EWOULDBLOCK)
        return wait_parked(x, &w);
    ctrio_cancel_shielded_checkpoint();
    return rc;
}

int ctrio__xchan_receive_nowait(ctrio_receive_channel *rx, void *out)
{
    ctrio__xchan *x = rx->x;
    wakelist wl = {NULL};
    pthread_mutex_lock(&x->mu);
    int rc = receive_locked(x, out, &wl);
    pthread_mutex_unlock(&x->mu);
    flush(&wl);
    return rc;
}

int ctrio__xchan_receive(ctrio_receive_channel *rx, void *out, ctrio__task *t)
{
    if (!out)
        return -EINVAL;
    ctrio__xchan *x = rx->x;
    wakelist wl = {NULL};
    xwaiter w;
    pthread_mutex_lock(&x->mu);
    int rc = receive_locked(x, out, &wl);
    if (rc == -EWOULDBLOCK)
        park_locked(x, &x->recv_waiters, &x->nrecv_waiting, rx, out, t, &w);
    pthread_mutex_unlock(&x->mu);
    flush(&wl);
    if (rc == -EWOULDBLOCK)
        return wait_parked(x, &w);
    ctrio_cancel_shielded_checkpoint();
    return rc;
}

int ctrio__xchan_send_clone(ctrio_send_channel *tx, ctrio_send_channel *s)
{
    ctrio__xchan *x = tx->x;
    pthread_mutex_lock(&x->mu);
    x->open_send++;
    pthread_mutex_unlock(&x->mu);
    s->x = x;
    return 0;
}

int ctrio__xchan_receive_clone(ctrio_receive_channel *rx, ctrio_receive_channel *r)
{
    ctrio__xchan *x = rx->x;
    pthread_mutex_lock(&x->mu);
    x->open_recv++;
    pthread_mutex_unlock(&x->mu);
    r->x = x;
    return 0;
}

/* Under mu: wake the waiters of queue q that wait through `handle` (all if
 * NULL) with value. */
static void wake_waiters(ctrio__link *q, void *handle, int value, wakelist *wl)
{
    for (ctrio__link *l = q->next; l != q;) {
        xwaiter *w = ctrio__container_of(l, xwaiter, link);
        l = l->next;
        if (handle && w->handle != handle)
            continue;
        ctrio__list_remove(&w->link);
        (*w->counter)--;
        wake(w, value, wl);
    }
}

/* Under mu, at the end of a close: release mu, wake, free the handle, and
 * after the last handle let go of the handles' reference. */
static void close_done(ctrio__xchan *x, void *handle, wakelist *wl)
{
    bool last = x->open_send == 0 && x->open_recv == 0;
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
    wake_waiters(&x->send_waiters, tx, -EBADF, &wl);
    if (--x->open_send == 0)
        wake_waiters(&x->recv_waiters, NULL, 0, &wl); /* EndOfChannel */
    close_done(x, tx, &wl);
    return 0;
}

int ctrio__xchan_receive_close(ctrio_receive_channel *rx)
{
    ctrio__xchan *x = rx->x;
    wakelist wl = {NULL};
    pthread_mutex_lock(&x->mu);
    wake_waiters(&x->recv_waiters, rx, -EBADF, &wl);
    if (--x->open_recv == 0) {
        wake_waiters(&x->send_waiters, NULL, -EPIPE, &wl);
        x->count = 0; /* nobody can read it any more */
    }
    close_done(x, rx, &wl);
    return 0;
}

ctrio_channel_statistics ctrio__xchan_statistics(ctrio__xchan *x)
{
    pthread_mutex_lock(&x->mu);
    ctrio_channel_statistics s = {x->count, x->cap, x->open_send, x->open_recv,
                                  x->nsend_waiting, x->nrecv_waiting};
    pthread_mutex_unlock(&x->mu);
    return s;
}
