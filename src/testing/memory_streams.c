/*
 * memory_streams.c — trio.testing's in-memory streams: memory_stream_pair
 * (unbounded buffers) and lockstep_stream_pair (no buffer at all: each
 * send_all waits until the peer has received everything).
 *
 * Both are custom streams (ctrio_stream_new_custom): the generic layer in
 * stream.c refuses concurrent receivers/senders with -EBUSY and keeps the
 * ctrio_stream alive while a woken task lets go of it; this file keeps the
 * shared state (the pair) alive the same way, with a count of the open ends
 * plus the calls in progress.
 *
 * A pair is two one-way pipes, pipe[i] carrying the bytes end i sends to end
 * 1 - i, as Trio's StapledStream over two one-way pairs. The semantics follow
 * testing/_memory_streams.py:
 *   - send_eof is the send half's aclose: the peer drains what was sent, then
 *     receives 0; send_all after it is -EBADF (ClosedResourceError);
 *   - closing an end closes both of its halves: its own blocked receiver gets
 *     -EBADF, the peer receives what is left and then 0, and the peer's
 *     send_all fails with -EPIPE (BrokenResourceError);
 *   - every call is a checkpoint (the unbounded kind does two before acting,
 *     as Trio, to give concurrent misuse a chance to show).
 */
#include "internal.h"

typedef struct mem_pipe {
    char *buf;
    size_t off, len, cap; /* the bytes in flight: buf[off .. off + len) */
    bool eof;             /* the sending end sent EOF or closed (sender_closed) */
    bool rx_closed;       /* the receiving end closed (receiver_closed) */
    bool receiver_waiting; /* lockstep: a receive_some is in progress */
    ctrio__waitq waiters; /* tasks waiting for something to change here */
} mem_pipe;

typedef struct mem_pair mem_pair;

typedef struct mem_end {
    mem_pair *pair;
    int i; /* sends on pipe[i], receives from pipe[1 - i] */
} mem_end;

struct mem_pair {
    mem_pipe pipe[2];
    mem_end end[2];
    ctrio__users users; /* calls in progress; closed once both ends are */
    int ends_open;
};

/* ---- waiting ------------------------------------------------------------ */

typedef struct mem_waiter {
    ctrio__link link;
    ctrio__task *task;
} mem_waiter;

static bool waiter_abort(ctrio__task *t)
{
    mem_waiter *w = t->wait_ctx;
    ctrio__list_remove(&w->link);
    return true;
}

/* ParkingLot.park: a full checkpoint; 0 when woken, -ECANCELED. */
static int park(mem_pipe *p)
{
    ctrio__task *t = ctrio__need_task("memory stream");
    if (!t)
        return -EPERM;
    mem_waiter w = {.task = t};
    ctrio__list_push_back(&p->waiters.head, &w.link);
    return ctrio__wait(waiter_abort, &w);
}

static void unpark_all(mem_pipe *p)
{
    while (!ctrio__list_empty(&p->waiters.head)) {
        mem_waiter *w = ctrio__container_of(p->waiters.head.next, mem_waiter, link);
        ctrio__list_remove(&w->link);
        ctrio__reschedule(w->task, 0);
    }
}

/* ---- the pair's lifetime ----------------------------------------------- */

static mem_pair *hold(ctrio_stream *s, mem_pipe **tx, mem_pipe **rx)
{
    mem_end *e = ctrio_stream_impl(s);
    mem_pair *p = e->pair;
    ctrio__users_hold(&p->users);
    *tx = &p->pipe[e->i];
    *rx = &p->pipe[1 - e->i];
    return p;
}

static void pair_free(mem_pair *p)
{
    free(p->pipe[0].buf);
    free(p->pipe[1].buf);
    free(p);
}

/* An end was closed (from its close, which holds the pair): the pair is
 * closed with its second end, and freed by the last release. */
static void end_closed(mem_pair *p)
{
    if (--p->ends_open == 0)
        (void)ctrio__users_close(&p->users);
}

static ssize_t release(mem_pair *p, ssize_t rc)
{
    if (ctrio__users_release(&p->users))
        pair_free(p);
    return rc;
}

/* ---- byte queue --------------------------------------------------------- */

static int pipe_put(mem_pipe *p, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (p->off + p->len + n > p->cap) {
        if (p->off) {
            memmove(p->buf, p->buf + p->off, p->len);
            p->off = 0;
        }
        if (p->len + n > p->cap) {
            size_t cap = p->cap ? p->cap : 4096;
            while (cap < p->len + n) {
                if (cap > SIZE_MAX / 2)
                    return -ENOMEM;
                cap *= 2;
            }
            char *b = realloc(p->buf, cap);
            if (!b)
                return -ENOMEM;
            p->buf = b;
            p->cap = cap;
        }
    }
    memcpy(p->buf + p->off + p->len, data, n);
    p->len += n;
    return 0;
}

static size_t pipe_get(mem_pipe *p, void *out, size_t max)
{
    size_t n = p->len < max ? p->len : max;
    memcpy(out, p->buf + p->off, n);
    p->off += n;
    p->len -= n;
    if (p->len == 0)
        p->off = 0;
    return n;
}

static void pipe_wipe(mem_pipe *p)
{
    free(p->buf);
    p->buf = NULL;
    p->off = p->len = p->cap = 0;
}

/* Two checkpoints, as Trio's MemorySendStream / MemoryReceiveStream. */
static int two_checkpoints(void)
{
    int rc = ctrio_checkpoint();
    return rc < 0 ? rc : ctrio_checkpoint();
}

/* ---- memory_stream_pair: unbounded buffers ------------------------------- */

static ssize_t mem_receive_some(ctrio_stream *s, void *buf, size_t max)
{
    mem_pipe *tx, *rx;
    mem_pair *p = hold(s, &tx, &rx);
    ssize_t rc = two_checkpoints();
    while (rc == 0) {
        if (rx->rx_closed) { /* this end was closed (by another task) */
            rc = -EBADF;
            break;
        }
        if (rx->len) {
            rc = (ssize_t)pipe_get(rx, buf, max);
            break;
        }
        if (rx->eof)
            break; /* end of stream: 0 */
        rc = park(rx);
    }
    return release(p, rc);
}

static int mem_send_all(ctrio_stream *s, const void *buf, size_t len)
{
    mem_pipe *tx, *rx;
    mem_pair *p = hold(s, &tx, &rx);
    int rc = two_checkpoints();
    if (rc < 0)
        return (int)release(p, rc);
    if (tx->eof) /* after send_eof, or closed by another task meanwhile */
        return (int)release(p, -EBADF);
    if (len == 0)
        return (int)release(p, 0);
    if (tx->rx_closed) /* Trio: BrokenResourceError("MemoryReceiveStream was closed") */
        return (int)release(p, -EPIPE);
    rc = pipe_put(tx, buf, len);
    unpark_all(tx);
    return (int)release(p, rc);
}

static int mem_send_eof(ctrio_stream *s)
{
    mem_pipe *tx, *rx;
    mem_pair *p = hold(s, &tx, &rx);
    /* StapledStream.send_eof = the send half's aclose: close, then checkpoint */
    tx->eof = true;
    unpark_all(tx);
    return (int)release(p, ctrio_checkpoint());
}

static int mem_wait_send(ctrio_stream *s)
{
    mem_pipe *tx, *rx;
    mem_pair *p = hold(s, &tx, &rx);
    int rc = two_checkpoints();
    if (rc == 0 && tx->eof)
        rc = -EBADF;
    return (int)release(p, rc);
}

static int mem_close(ctrio_stream *s)
{
    mem_pipe *tx, *rx;
    mem_pair *p = hold(s, &tx, &rx);
    tx->eof = true;      /* the peer drains, then sees the end */
    rx->rx_closed = true; /* the peer's send_all breaks; our receiver wakes */
    pipe_wipe(rx);
    unpark_all(tx);
    unpark_all(rx);
    end_closed(p);
    release(p, 0);
    return 0;
}

static const ctrio_stream_ops memory_ops = {
    .receive_some = mem_receive_some,
    .send_all = mem_send_all,
    .send_eof = mem_send_eof,
    .wait_send_all_might_not_block = mem_wait_send,
    .close = mem_close,
};

/* ---- lockstep_stream_pair: no buffer ------------------------------------ */

/* _LockstepByteQueue._wait_for: until cond holds or either side closed,
 * then a checkpoint. */
static int lock_wait_for(mem_pipe *q, bool (*cond)(const mem_pipe *))
{
    while (!cond(q) && !q->eof && !q->rx_closed) {
        int rc = park(q);
        if (rc < 0)
            return rc;
    }
    return ctrio_checkpoint();
}

static bool drained(const mem_pipe *q)
{
    return q->len == 0;
}

static bool has_data(const mem_pipe *q)
{
    return q->len != 0;
}

static bool receiver_waiting(const mem_pipe *q)
{
    return q->receiver_waiting;
}

static int lock_send_all(ctrio_stream *s, const void *buf, size_t len)
{
    mem_pipe *tx, *rx;
    mem_pair *p = hold(s, &tx, &rx);
    int rc;
    if (tx->eof) {
        rc = -EBADF;
    } else if (tx->rx_closed) {
        rc = -EPIPE;
    } else {
        rc = pipe_put(tx, buf, len);
        unpark_all(tx);
        if (rc == 0)
            rc = lock_wait_for(tx, drained);
        /* cancelled: what was not taken stays queued, as in Trio */
        if (rc == 0 && tx->eof)
            rc = -EBADF;
        else if (rc == 0 && tx->len && tx->rx_closed)
            rc = -EPIPE;
    }
    return (int)release(p, rc);
}

static int lock_wait_send(ctrio_stream *s)
{
    mem_pipe *tx, *rx;
    mem_pair *p = hold(s, &tx, &rx);
    int rc;
    if (tx->eof) {
        rc = -EBADF;
    } else if (tx->rx_closed) {
        rc = ctrio_checkpoint();
    } else {
        rc = lock_wait_for(tx, receiver_waiting);
        if (rc == 0 && tx->eof)
            rc = -EBADF;
    }
    return (int)release(p, rc);
}

static ssize_t lock_receive_some(ctrio_stream *s, void *buf, size_t max)
{
    mem_pipe *tx, *rx;
    mem_pair *p = hold(s, &tx, &rx);
    ssize_t rc;
    if (rx->rx_closed)
        return release(p, -EBADF);
    /* wake wait_send_all_might_not_block, then wait for data */
    rx->receiver_waiting = true;
    unpark_all(rx);
    rc = lock_wait_for(rx, has_data);
    rx->receiver_waiting = false;
    if (rc == 0) {
        if (rx->rx_closed) {
            rc = -EBADF;
        } else if (rx->len) {
            rc = (ssize_t)pipe_get(rx, buf, max);
            unpark_all(rx); /* maybe wake send_all */
        } /* else the sender closed: 0 */
    }
    return release(p, rc);
}

static int lock_send_eof(ctrio_stream *s)
{
    mem_pipe *tx, *rx;
    mem_pair *p = hold(s, &tx, &rx);
    tx->eof = true; /* close_sender */
    unpark_all(tx);
    return (int)release(p, ctrio_checkpoint());
}

static int lock_close(ctrio_stream *s)
{
    mem_pipe *tx, *rx;
    mem_pair *p = hold(s, &tx, &rx);
    tx->eof = true;       /* close_sender */
    rx->rx_closed = true; /* close_receiver */
    unpark_all(tx);
    unpark_all(rx);
    end_closed(p);
    release(p, 0);
    return 0;
}

static const ctrio_stream_ops lockstep_ops = {
    .receive_some = lock_receive_some,
    .send_all = lock_send_all,
    .send_eof = lock_send_eof,
    .wait_send_all_might_not_block = lock_wait_send,
    .close = lock_close,
};

/* ---- constructors ------------------------------------------------------- */

static int make_pair(const ctrio_stream_ops *ops, ctrio_stream **a, ctrio_stream **b)
{
    if (!a || !b)
        return -EINVAL;
    *a = *b = NULL;
    mem_pair *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    for (int i = 0; i < 2; i++) {
        ctrio__list_init(&p->pipe[i].waiters.head);
        p->end[i].pair = p;
        p->end[i].i = i;
    }
    p->ends_open = 2;
    int rc = ctrio_stream_new_custom(ops, &p->end[0], a);
    if (rc == 0) {
        rc = ctrio_stream_new_custom(ops, &p->end[1], b);
        if (rc < 0) {
            ctrio_stream_close(*a); /* closes one end: the pair stays */
            *a = NULL;
            pair_free(p);
        }
    } else {
        pair_free(p);
    }
    return rc;
}

int ctrio_memory_stream_pair(ctrio_stream **a, ctrio_stream **b)
{
    return make_pair(&memory_ops, a, b);
}

int ctrio_lockstep_stream_pair(ctrio_stream **a, ctrio_stream **b)
{
    return make_pair(&lockstep_ops, a, b);
}
