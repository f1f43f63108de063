/*
 * io_epoll.c — the epoll backend of io.h.
 *
 * Each descriptor is added once with EPOLLIN|EPOLLRDHUP|EPOLLPRI|EPOLLET, and
 * EPOLLOUT when writing is watched (io.h): the kernel then reports each new
 * edge once, and a wait that finds the descriptor registered costs nothing.
 * EPOLLOUT is left out until a write waits because ep_poll_callback drops a
 * wake-up whose events the registration does not ask for: a UDP send frees
 * its buffer at once (sock_wfree -> sock_def_write_space) and would wake
 * epoll_wait for nothing after every datagram. An event's data is the descriptor's
 * number with the caller's tag above it. Cross-thread wake-ups come through
 * an eventfd, registered level-triggered with the eventfd's own number (and
 * tag 0) as data.
 */
#include "internal.h"

#include <math.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

int ctrio__io_init(ctrio__io *io)
{
    io->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (io->epfd < 0)
        return -errno;
    io->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (io->wakefd < 0) {
        int e = -errno;
        close(io->epfd);
        return e;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint32_t)io->wakefd};
    if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, io->wakefd, &ev) < 0) {
        int e = -errno;
        close(io->wakefd);
        close(io->epfd);
        return e;
    }
    return 0;
}

void ctrio__io_fini(ctrio__io *io)
{
    close(io->wakefd);
    close(io->epfd);
}

#define CTRIO__EPOLL_READ (EPOLLIN | EPOLLRDHUP | EPOLLPRI | EPOLLET)

/* The data of each event: the tag above the descriptor number. */
static struct epoll_event event_for(int fd, uint32_t tag, unsigned dirs)
{
    struct epoll_event ev = {.events = CTRIO__EPOLL_READ |
                                       ((dirs & CTRIO__IO_WRITE) ? (uint32_t)EPOLLOUT : 0),
                             .data.u64 = (uint64_t)tag << 32 | (uint32_t)fd};
    return ev;
}

int ctrio__io_add(ctrio__io *io, int fd, uint32_t tag, unsigned dirs)
{
    struct epoll_event ev = event_for(fd, tag, dirs);
    if (CTRIO__SYS(epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev)) == 0)
        return 0;
    if (errno == EEXIST) /* a dup of a registered description: take it over */
        return CTRIO__SYS(epoll_ctl(io->epfd, EPOLL_CTL_MOD, fd, &ev)) == 0 ? 0 : -errno;
    return -errno;
}

int ctrio__io_rearm(ctrio__io *io, int fd, uint32_t tag, uint32_t new_tag, unsigned dirs)
{
    struct epoll_event ev = event_for(fd, tag, dirs);
    if (CTRIO__SYS(epoll_ctl(io->epfd, EPOLL_CTL_MOD, fd, &ev)) == 0)
        return 0;
    if (errno != ENOENT)
        return -errno;
    /* closed behind our back; the number is a new file */
    ev = event_for(fd, new_tag, dirs);
    return CTRIO__SYS(epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev)) == 0 ? 1 : -errno;
}

void ctrio__io_del(ctrio__io *io, int fd)
{
    struct epoll_event ev = {0};
    (void)epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, &ev); /* closed already: fine */
}

static int timeout_ms(double timeout)
{
    if (timeout < 0 || isinf(timeout))
        return -1;
    if (timeout == 0)
        return 0;
    if (timeout > 86400.0)
        return 86400 * 1000;
    return (int)ceil(timeout * 1000.0); /* never wake before a deadline */
}

int ctrio__io_poll(ctrio__io *io, double timeout, ctrio__io_ready_fn fn, void *ctx)
{
    struct epoll_event evs[128]; /* may run on a task's stack: keep it small */
    /* the end of a finite wait, to wait out the rest after dropped events
     * (a blocking poll only: its clock read costs nothing beside it) */
    double end = timeout > 0 && !isinf(timeout) ? ctrio__monotonic() + timeout : 0;
    for (;;) {
        int n = CTRIO__SYS_ONCE(
            epoll_wait(io->epfd, evs, (int)(sizeof evs / sizeof evs[0]), timeout_ms(timeout)));
        if (n < 0 && errno != EINTR)
            return -errno;
        int taken = 0;
        for (int i = 0; i < n; i++) {
            uint32_t e = evs[i].events;
            unsigned what = 0;
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP | EPOLLPRI))
                what |= CTRIO__IO_READ;
            if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                what |= CTRIO__IO_WRITE;
            if (e & (EPOLLRDHUP | EPOLLERR | EPOLLHUP | EPOLLPRI))
                what |= CTRIO__IO_SPECIAL;
            uint64_t data = evs[i].data.u64;
            taken += fn(ctx, (int)(uint32_t)data, (uint32_t)(data >> 32), what);
        }
        if (taken || n == 0 || timeout == 0)
            return taken;
        /* Only events of closed files, or a signal handler ran (EINTR): the
         * caller asked to sleep until something happens or the time is up
         * (an idle wait and the mock clock's autojump count on it). */
        if (end > 0) {
            double now = ctrio__monotonic();
            if (now >= end)
                return 0;
            timeout = end - now;
        }
    }
}

void ctrio__io_wake(ctrio__io *io)
{
    uint64_t one = 1;
    ssize_t r = CTRIO__SYS(write(io->wakefd, &one, sizeof one));
    (void)r; /* EAGAIN: the counter is full, the loop wakes anyway */
}

void ctrio__io_wake_ack(ctrio__io *io)
{
    uint64_t v;
    ssize_t r = CTRIO__SYS(read(io->wakefd, &v, sizeof v));
    (void)r;
}
