/*
 * channel.c — memory channels (trio.open_memory_channel): a ring buffer of
 * fixed-size elements shared by cloneable send and receive handles, used by
 * the tasks of one run, so no lock. The rules of a send, a receive and a
 * close are channel.h's (shared with xchannel.c); what is this file's is how
 * a blocked task waits and is woken: on its own stack, rescheduled directly.
 */
#include "internal.h"
#include "channel.h"

struct chan {
    ctrio__chan_core core;
};

typedef struct chan_waiter {
    ctrio__chan_waiter base;
    ctrio__task *task;
} chan_waiter;

static void wake(ctrio__chan_waiter *w, int value, void *ctx)
{
    (void)ctx;
    ctrio__reschedule(ctrio__container_of(w, chan_waiter, base)->task, value);
}

static bool waiter_abort(ctrio__task *t)
{
    chan_waiter *w = t->wait_ctx;
    ctrio__chan_unpark(&w->base);
    return true;
}

static int park(chan *c, bool send, void *handle, void *data, ctrio__task *t)
{
    chan_waiter w = {.task = t};
    ctrio__chan_park(&c->core, send, handle, data, &w.base);
    return ctrio__wait(waiter_abort, &w);
}

int ctrio_open_memory_channel(size_t elem_size, size_t capacity, ctrio_send_channel **tx,
                              ctrio_receive_channel **rx)
{
    int rc = ctrio__chan_check_open(elem_size, capacity, tx, rx);
    if (rc < 0)
        return rc;
    chan *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    rc = ctrio__chan_core_open(&c->core, elem_size, capacity, tx, rx);
    if (rc < 0) {
        free(c);
        return rc;
    }
    (*tx)->ch = c;
    (*rx)->ch = c;
    return 0;
}

static void maybe_free(chan *c)
{
    if (c->core.open_send == 0 && c->core.open_recv == 0) {
        free(c->core.buf);
        free(c);
    }
}

int ctrio_channel_send_nowait(ctrio_send_channel *tx, const void *elem)
{
    if (!tx || !elem)
        return -EINVAL;
    if (CTRIO__UNLIKELY(tx->x))
        return ctrio__xchan_send_nowait(tx, elem);
    return ctrio__chan_send(&tx->ch->core, elem, wake, NULL);
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
    return park(tx->ch, true, tx, (void *)elem, t);
}

int ctrio_channel_receive_nowait(ctrio_receive_channel *rx, void *out)
{
    if (!rx || !out)
        return -EINVAL;
    if (CTRIO__UNLIKELY(rx->x))
        return ctrio__xchan_receive_nowait(rx, out);
    return ctrio__chan_receive(&rx->ch->core, out, wake, NULL);
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
    return park(rx->ch, false, rx, out, t);
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
    s->ch->core.open_send++;
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
    r->ch->core.open_recv++;
    *out = r;
    return 0;
}

int ctrio_send_channel_close(ctrio_send_channel *tx)
{
    if (!tx)
        return -EINVAL;
    if (tx->x)
        return ctrio__xchan_send_close(tx);
    chan *c = tx->ch;
    ctrio__chan_close_send(&c->core, tx, wake, NULL);
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
    ctrio__chan_close_receive(&c->core, rx, wake, NULL);
    free(rx);
    maybe_free(c);
    return 0;
}

static ctrio_channel_statistics stats(const chan *c)
{
    ctrio_channel_statistics s = {0, 0, 0, 0, 0, 0}; /* NULL handle: all zero */
    return c ? ctrio__chan_statistics(&c->core) : s;
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
