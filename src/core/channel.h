/*
 * channel.h — the channel handles, shared by channel.c (memory channels, one
 * run, no lock) and xchannel.c (shared channels, ends in any runs).
 *
 * A handle points at exactly one of the two kinds: `ch` for a memory
 * channel, `x` for a shared one. The public ctrio_channel_* calls test `x`
 * first (one predictable branch on a field already loaded), so that the
 * memory channel keeps its lock-free path and users keep one set of calls.
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
