/*
 * channel.c — memory channels (trio.open_memory_channel): a ring buffer of
 * fixed-size elements shared by cloneable send and receive handles.
 *
 * Blocked senders and receivers wait in FIFO queues with their element
 * pointer on their own stack, so a send to a waiting receiver (and a receive
 * from a waiting sender, which is how capacity 0 works) copies the element
 * once, straight between the two tasks' buffers, as Trio hands values over.
 */
#include "internal.h"
#include "channel.h"

struct chan {
    size_t elem, cap;
    char *buf;
    size_t head, count;
    size_t open_send, open_recv;
    ctrio__link send_waiters, recv_waiters;
    size_t nsend_waiting, nrecv_waiting;
};

typedef struct chan_waiter {
    ctrio__link link;
    ctrio__task *task;
    void *handle;
    void *data; /* sender: the element; receiver: where it goes */
    size_t *counter;
} chan_waiter;

static bool waiter_abort(ctrio__task *t)
{
    chan_waiter *w = t->wait_ctx;
    ctrio__list_remove(&w->link);
    (*w->counter)--;
    return true;
}

static chan_waiter *pop_waiter(ctrio__link *q)
{
    if (ctrio__list_empty(q))
        return NULL;
    chan_waiter *w = ctrio__container_of(q->next, chan_waiter, link);
    ctrio__list_remove(&w->link);
    (*w->counter)--;
    return w;
}

static int park(ctrio__link *q, size_t *counter, void *handle, void *data, ctrio__task *t)
{
    chan_waiter w = {.task = t, .handle = handle, .data = data, .counter = counter};
    ctrio__list_push_back(q, &w.link);
    (*counter)++;
    return ctrio__wait(waiter_abort, &w);
}

int ctrio_open_memory_channel(size_t elem_size, size_t capacity, ctrio_send_channel **tx,
                              ctrio_receive_channel **rx)
{
    if (!elem_size || !tx || !rx || (capacity && elem_size > SIZE_MAX / capacity))
        return -EINVAL;
    chan *c = calloc(1, sizeof *c);
    ctrio_send_channel *s = calloc(1, sizeof *s);
    ctrio_receive_channel *r = calloc(1, sizeof *r);
    char *buf = capacity ? malloc(elem_size * capacity) : NULL;
    if (!c || !s || !r || (capacity && !buf)) {
        free(c);
        free(s);
        free(r);
        free(buf);
        return -ENOMEM;
    }
    c->elem = elem_size;
    c->cap = capacity;
    c->buf = buf;
    c->open_send = c->open_recv = 1;
    ctrio__list_init(&c->send_waiters);
    ctrio__list_init(&c->recv_waiters);
    s->ch = c;
    r->ch = c;
    *tx = s;
    *rx = r;
    return 0;
}

static void maybe_free(chan *c)
{
    if (c->open_send == 0 && c->open_recv == 0) {
        free(c->buf);
        free(c);
    }
}

int ctrio_channel_send_nowait(ctrio_send_channel *tx, const void *elem)
{
    if (!tx || !elem)
        return -EINVAL;
    if (CTRIO__UNLIKELY(tx->x))
        return ctrio__xchan_send_nowait(tx, elem);
    chan *c = tx->ch;
    if (c->open_recv == 0)
        return -EPIPE;
    chan_waiter *w = pop_waiter(&c->recv_waiters);
    if (w) {
        memcpy(w->data, elem, c->elem);
        ctrio__reschedule(w->task, 1);
        return 0;
    }
    if (c->count < c->cap) {
        memcpy(c->buf + ((c->head + c->count) % c->cap) * c->elem, elem, c->elem);
        c->count++;
        return 0;
    }
    return -EWOULDBLOCK;
}

int ctrio_channel_send(ctrio_send_channel *tx, const void *elem)
{
    ctrio__task *t = ctrio__need_task("ctrio_channel_send");
    if (!t)
        return -EPERM;
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    if (CTRIO__UNLIKELY(tx && tx->x))
        return ctrio__xchan_send(tx, elem, t);
    rc = ctrio_channel_send_nowait(tx, elem);
    if (rc != -EWOULDBLOCK) {
        ctrio_cancel_shielded_checkpoint();
        return rc;
    }
    return park(&tx->ch->send_waiters, &tx->ch->nsend_waiting, tx, (void *)elem, t);
}

int ctrio_channel_receive_nowait(ctrio_receive_channel *rx, void *out)
{
    if (!rx || !out)
        return -EINVAL;
    if (CTRIO__UNLIKELY(rx->x))
        return ctrio__xchan_receive_nowait(rx, out);
    chan *c = rx->ch;
    if (c->count) {
        memcpy(out, c->buf + c->head * c->elem, c->elem);
        c->head = (c->head + 1) % c->cap;
        c->count--;
        chan_waiter *w = pop_waiter(&c->send_waiters);
        if (w) { /* a blocked sender's element takes the freed slot */
            memcpy(c->buf + ((c->head + c->count) % c->cap) * c->elem, w->data, c->elem);
            c->count++;
            ctrio__reschedule(w->task, 0);
        }
        return 1;
    }
    chan_waiter *w = pop_waiter(&c->send_waiters);
    if (w) {
        memcpy(out, w->data, c->elem);
        ctrio__reschedule(w->task, 0);
        return 1;
    }
    if (c->open_send == 0)
        return 0; /* EndOfChannel */
    return -EWOULDBLOCK;
}

int ctrio_channel_receive(ctrio_receive_channel *rx, void *out)
{
    ctrio__task *t = ctrio__need_task("ctrio_channel_receive");
    if (!t)
        return -EPERM;
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    if (CTRIO__UNLIKELY(rx && rx->x))
        return ctrio__xchan_receive(rx, out, t);
    rc = ctrio_channel_receive_nowait(rx, out);
    if (rc != -EWOULDBLOCK) {
        ctrio_cancel_shielded_checkpoint();
        return rc;
    }
    return park(&rx->ch->recv_waiters, &rx->ch->nrecv_waiting, rx, out, t);
}

int ctrio_send_channel_clone(ctrio_send_channel *tx, ctrio_send_channel **out)
{
    if (!tx || !out)
        return -EINVAL;
    ctrio_send_channel *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    if (tx->x) {
        *out = s;
        return ctrio__xchan_send_clone(tx, s);
    }
    s->ch = tx->ch;
    s->ch->open_send++;
    *out = s;
    return 0;
}

int ctrio_receive_channel_clone(ctrio_receive_channel *rx, ctrio_receive_channel **out)
{
    if (!rx || !out)
        return -EINVAL;
    ctrio_receive_channel *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    if (rx->x) {
        *out = r;
        return ctrio__xchan_receive_clone(rx, r);
    }
    r->ch = rx->ch;
    r->ch->open_recv++;
    *out = r;
    return 0;
}

/* Wake the waiters of queue q that wait through `handle` (all if NULL). */
static void wake_waiters(ctrio__link *q, void *handle, int value)
{
    for (ctrio__link *l = q->next; l != q;) {
        chan_waiter *w = ctrio__container_of(l, chan_waiter, link);
        l = l->next;
        if (handle && w->handle != handle)
            continue;
        ctrio__list_remove(&w->link);
        (*w->counter)--;
        ctrio__reschedule(w->task, value);
    }
}

int ctrio_send_channel_close(ctrio_send_channel *tx)
{
    if (!tx)
        return -EINVAL;
    if (tx->x)
        return ctrio__xchan_send_close(tx);
    chan *c = tx->ch;
    wake_waiters(&c->send_waiters, tx, -EBADF);
    if (--c->open_send == 0)
        wake_waiters(&c->recv_waiters, NULL, 0); /* EndOfChannel */
    free(tx);
    maybe_free(c);
    return 0;
}

int ctrio_receive_channel_close(ctrio_receive_channel *rx)
{
    if (!rx)
        return -EINVAL;
    if (rx->x)
        return ctrio__xchan_receive_close(rx);
    chan *c = rx->ch;
    wake_waiters(&c->recv_waiters, rx, -EBADF);
    if (--c->open_recv == 0) {
        wake_waiters(&c->send_waiters, NULL, -EPIPE);
        c->count = 0; /* nobody can read it any more */
    }
    free(rx);
    maybe_free(c);
    return 0;
}

static ctrio_channel_statistics stats(const chan *c)
{
    ctrio_channel_statistics s = {0, 0, 0, 0, 0, 0}; /* NULL handle: all zero */
    if (c)
        s = (ctrio_channel_statistics){c->count, c->cap, c->open_send, c->open_recv,
                                       c->nsend_waiting, c->nrecv_waiting};
    return s;
}

ctrio_channel_statistics ctrio_send_channel_statistics(const ctrio_send_channel *tx)
{
    if (tx && tx->x)
        return ctrio__xchan_statistics(tx->x);
    return stats(tx ? tx->ch : NULL);
}

ctrio_channel_statistics ctrio_receive_channel_statistics(const ctrio_receive_channel *rx)
{
    if (rx && rx->x)
        return ctrio__xchan_statistics(rx->x);
    return stats(rx ? rx->ch : NULL);
}
