/*
 * io.h — the seam between the portable run loop (io.c, sched.c) and the
 * kernel's readiness interface. One backend is compiled in: io_epoll.c on
 * Linux; a kqueue or io_uring backend fills in the same five calls.
 *
 * The contract, modelled on Go's netpoller: a descriptor is registered once,
 * edge-triggered, and stays registered until ctrio__io_del or until its file
 * is closed. A wait therefore costs no system call of the backend; the
 * portable layer remembers edges that arrived while nobody waited, and tells
 * a closed file's late events by their tag. Unlike Go, the registration
 * watches only the directions that a task has waited for (reading, and
 * writing once a write had to wait): a UDP socket reports a writability edge
 * after every datagram sent, and a loop that watched it woke once per reply
 * for nothing (issue #10).
 */
#ifndef CTRIO_IO_H
#define CTRIO_IO_H

#include <stdbool.h>
#include <stdint.h>

#define CTRIO__IO_READ 1u
#define CTRIO__IO_WRITE 2u
/* Reported with READ for a hang-up, an error or urgent data: after one of
 * these, a short read no longer proves the receive queue empty. */
#define CTRIO__IO_SPECIAL 4u

typedef struct ctrio__io {
    int epfd;
    int wakefd; /* eventfd: other threads wake the loop through it */
} ctrio__io;

/* The callback for each ready descriptor: events is READ|WRITE (errors and
 * hang-ups report both, with SPECIAL), tag the one given when fd was added or
 * re-armed. fd == the wake descriptor is reported as is. Returns false for
 * an event it drops (a stale tag): those do not count as activity. */
typedef bool (*ctrio__io_ready_fn)(void *ctx, int fd, uint32_t tag, unsigned events);

int ctrio__io_init(ctrio__io *io);
void ctrio__io_fini(ctrio__io *io);
/* Register fd for the directions `dirs` (READ|WRITE); its events carry `tag`, so that events of
 * a registration the kernel still holds for a closed number (the file lives
 * on in a dup or a forked child) can be told from the current one's. Returns
 * 0 or -errno (EBADF, EPERM...). */
int ctrio__io_add(ctrio__io *io, int fd, uint32_t tag, unsigned dirs);
/* Re-arm a registered fd for `dirs` (reports its current readiness in them
 * again: an edge missed while a direction was not watched is not lost) with
 * `tag`; if the number now names another file, adds it with `new_tag`
 * instead and returns 1. Returns 0, 1 or -errno. */
int ctrio__io_rearm(ctrio__io *io, int fd, uint32_t tag, uint32_t new_tag, unsigned dirs);
void ctrio__io_del(ctrio__io *io, int fd);
/* Wait up to timeout seconds (< 0: forever, 0: just look) for an event that
 * fn takes: events it drops do not end the wait. Returns the number of
 * events taken (0 when the time is up), or -errno. */
int ctrio__io_poll(ctrio__io *io, double timeout, ctrio__io_ready_fn fn, void *ctx);
/* Make a concurrent or later ctrio__io_poll return: any thread. */
void ctrio__io_wake(ctrio__io *io);
/* Consume wake-ups (after the wake descriptor was reported). */
void ctrio__io_wake_ack(ctrio__io *io);

#endif
