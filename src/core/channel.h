/*
 * channel.h — what memory channels (channel.c: one run, no lock) and shared
 * channels (xchannel.c: ends in any runs, one mutex) have in common: the
 * handles, and the channel itself — a ring of fixed-size elements and two
 * FIFO queues of blocked tasks — with the rules of a send, a receive and a
 * close written once, here.
 *
 * A handle points at exactly one of the two kinds: `ch` for a memory
 * channel, `x` for a shared one. The public ctrio_channel_* calls test `x`
 * first (one predictable branch on a field already loaded), so that the
 * memory channel keeps its lock-free path and users keep one set of calls.
 *
 * The rules: a blocked task waits on a waiter on its own stack that holds
 * its element (or the place its element goes), so a send to a waiting
 * receiver, and a receive from a waiting sender (which is how capacity 0
 * works), copy once, straight between the two tasks, as Trio hands values
 * over. Whoever takes a waiter off its queue finishes its handoff and wakes
 * it through the kind's wake function: channel.c reschedules the task,
 * xchannel.c may have to post to another run once its mutex is released.
 * The functions are static inline so that each kind gets its own copy with
 * its wake function inlined: the memory channel pays no indirect call.
 */
#ifndef CTRIO_CHANNEL_H
#define CTRIO_CHANNEL_H

#include "internal.h"

typedef struct chan chan;
typedef struct ctrio__xchan ctrio__xchan;

struct ctrio_send_channel {
    chan *ch;
    ctrio__xchan *x;
};
struct ctrio_receive_channel {
    chan *ch;
    ctrio__xchan *x;
};

/* The channel proper (a shared channel holds it under its mutex). */
typedef struct ctrio__chan_core {
    size_t elem, cap;
    char *buf;
    size_t head, count;
    size_t open_send, open_recv;
    ctrio__link send_waiters, recv_waiters;
    size_t nsend_waiting, nrecv_waiting;
} ctrio__chan_core;

/* A blocked task's place in a queue; each kind embeds it in its waiter. */
typedef struct ctrio__chan_waiter {
    ctrio__link link;
    void *handle; /* the handle it waits through (a close wakes its own) */
    void *data;   /* sender: the element; receiver: where it goes */
    size_t *counter;
} ctrio__chan_waiter;

/* w is off its queue and its handoff done: wake its task with value. */
typedef void ctrio__chan_wake_fn(ctrio__chan_waiter *w, int value, void *ctx);

/* The arguments of an open call: 0 or -EINVAL. */
static inline int ctrio__chan_check_open(size_t elem_size, size_t capacity,
                                         ctrio_send_channel **tx, ctrio_receive_channel **rx)
{
    if (!elem_size || !tx || !rx || (capacity && elem_size > SIZE_MAX / capacity))
        return -EINVAL;
    return 0;
}

/* Set up core c (zeroed, its arguments checked) with a ring of `capacity`
 * elements, and make one handle of each end (pointing at nothing yet: the
 * caller sets `ch` or `x`). 0, or -ENOMEM with nothing allocated. */
static inline int ctrio__chan_core_open(ctrio__chan_core *c, size_t elem_size, size_t capacity,
                                        ctrio_send_channel **tx, ctrio_receive_channel **rx)
{
    ctrio_send_channel *s = calloc(1, sizeof *s);
    ctrio_receive_channel *r = calloc(1, sizeof *r);
    char *buf = capacity ? malloc(elem_size * capacity) : NULL;
    if (!s || !r || (capacity && !buf)) {
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
    *tx = s;
    *rx = r;
    return 0;
}

static inline ctrio__chan_waiter *ctrio__chan_pop(ctrio__link *q)
{
    if (ctrio__list_empty(q))
        return NULL;
    ctrio__chan_waiter *w = ctrio__container_of(q->next, ctrio__chan_waiter, link);
    ctrio__list_remove(&w->link);
    (*w->counter)--;
    return w;
}

/* Queue w (the current task's) on c's senders (send) or receivers. */
static inline void ctrio__chan_park(ctrio__chan_core *c, bool send, void *handle, void *data,
                                    ctrio__chan_waiter *w)
{
    size_t *counter = send ? &c->nsend_waiting : &c->nrecv_waiting;
    *w = (ctrio__chan_waiter){.handle = handle, .data = data, .counter = counter};
    ctrio__list_push_back(send ? &c->send_waiters : &c->recv_waiters, &w->link);
    (*counter)++;
}

/* Take a still-queued waiter off its queue (a cancellation). */
static inline void ctrio__chan_unpark(ctrio__chan_waiter *w)
{
    ctrio__list_remove(&w->link);
    (*w->counter)--;
}

static inline void ctrio__chan_push_ring(ctrio__chan_core *c, const void *elem)
{
    memcpy(c->buf + ((c->head + c->count) % c->cap) * c->elem, elem, c->elem);
    c->count++;
}

/* 0 sent, -EPIPE (no receiver left) or -EWOULDBLOCK (full: the caller
 * parks or gives up). */
static inline int ctrio__chan_send(ctrio__chan_core *c, const void *elem,
                                   ctrio__chan_wake_fn *wake, void *ctx)
{
    if (c->open_recv == 0)
        return -EPIPE;
    ctrio__chan_waiter *w = ctrio__chan_pop(&c->recv_waiters);
    if (w) {
        memcpy(w->data, elem, c->elem);
        wake(w, 1, ctx);
        return 0;
    }
    if (c->count < c->cap) {
        ctrio__chan_push_ring(c, elem);
        return 0;
    }
    return -EWOULDBLOCK;
}

/* 1 received, 0 end of channel, or -EWOULDBLOCK (empty). */
static inline int ctrio__chan_receive(ctrio__chan_core *c, void *out,
                                      ctrio__chan_wake_fn *wake, void *ctx)
{
    if (c->count) {
        memcpy(out, c->buf + c->head * c->elem, c->elem);
        c->head = (c->head + 1) % c->cap;
        c->count--;
        ctrio__chan_waiter *w = ctrio__chan_pop(&c->send_waiters);
        if (w) { /* a blocked sender's element takes the freed slot */
            ctrio__chan_push_ring(c, w->data);
            wake(w, 0, ctx);
        }
        return 1;
    }
    ctrio__chan_waiter *w = ctrio__chan_pop(&c->send_waiters);
    if (w) {
        memcpy(out, w->data, c->elem);
        wake(w, 0, ctx);
        return 1;
    }
    if (c->open_send == 0)
        return 0; /* EndOfChannel */
    return -EWOULDBLOCK;
}

/* Wake the waiters of queue q that wait through `handle` (all if NULL). */
static inline void ctrio__chan_wake_waiters(ctrio__link *q, void *handle, int value,
                                            ctrio__chan_wake_fn *wake, void *ctx)
{
    for (ctrio__link *l = q->next; l != q;) {
        ctrio__chan_waiter *w = ctrio__container_of(l, ctrio__chan_waiter, link);
        l = l->next;
        if (handle && w->handle != handle)
            continue;
        ctrio__chan_unpark(w);
        wake(w, value, ctx);
    }
}

/* A send handle closes: its own blocked sends get -EBADF; after the last
 * one, blocked receives see the end of the channel. */
static inline void ctrio__chan_close_send(ctrio__chan_core *c, void *handle,
                                          ctrio__chan_wake_fn *wake, void *ctx)
{
    ctrio__chan_wake_waiters(&c->send_waiters, handle, -EBADF, wake, ctx);
    if (--c->open_send == 0)
        ctrio__chan_wake_waiters(&c->recv_waiters, NULL, 0, wake, ctx); /* EndOfChannel */
}

/* A receive handle closes: its own blocked receives get -EBADF; after the
 * last one, blocked sends get -EPIPE and what is buffered is dropped. */
static inline void ctrio__chan_close_receive(ctrio__chan_core *c, void *handle,
                                             ctrio__chan_wake_fn *wake, void *ctx)
{
    ctrio__chan_wake_waiters(&c->recv_waiters, handle, -EBADF, wake, ctx);
    if (--c->open_recv == 0) {
        ctrio__chan_wake_waiters(&c->send_waiters, NULL, -EPIPE, wake, ctx);
        c->count = 0; /* nobody can read it any more */
    }
}

static inline ctrio_channel_statistics ctrio__chan_statistics(const ctrio__chan_core *c)
{
    return (ctrio_channel_statistics){c->count, c->cap, c->open_send, c->open_recv,
                                      c->nsend_waiting, c->nrecv_waiting};
}

CTRIO__HIDDEN int ctrio__xchan_send_nowait(ctrio_send_channel *tx, const void *elem);
CTRIO__HIDDEN int ctrio__xchan_send(ctrio_send_channel *tx, const void *elem, ctrio__task *t);
CTRIO__HIDDEN int ctrio__xchan_receive_nowait(ctrio_receive_channel *rx, void *out);
CTRIO__HIDDEN int ctrio__xchan_receive(ctrio_receive_channel *rx, void *out, ctrio__task *t);
CTRIO__HIDDEN int ctrio__xchan_send_clone(ctrio_send_channel *tx, ctrio_send_channel *s);
CTRIO__HIDDEN int ctrio__xchan_receive_clone(ctrio_receive_channel *rx, ctrio_receive_channel *r);
CTRIO__HIDDEN int ctrio__xchan_send_close(ctrio_send_channel *tx);
CTRIO__HIDDEN int ctrio__xchan_receive_close(ctrio_receive_channel *rx);
CTRIO__HIDDEN ctrio_channel_statistics ctrio__xchan_statistics(ctrio__xchan *x);

#endif
