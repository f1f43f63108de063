/*
 * io_epoll.c — the epoll backend of io.h.
 *
 * Each descriptor is added once with EPOLLIN|EPOLLRDHUP|EPOLLPRI|EPOLLET, and
 * EPOLLOUT when writing is watched (io.h): the kernel then reports each new
 * edge once, and a wait that finds the descriptor registered costs nothing.
 * EPOLLOUT is left out until a write waits because ep_poll_callback drops a
 * wake-up whose events the registration does not ask for: a UDP send frees
 * its buffer at once (sock_wfree -> sock_def_write_space) and would wake
 * epoll_wait for nothing after every datagram. An event's data is the
 * descriptor's number with the caller's tag above it. Cross-thread wake-ups
 * come through an eventfd, registered level-triggered with data
 * CTRIO__EPOLL_WAKE, which poll reads (consumes) itself.
 */
#include "internal.h"

#include <math.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct epoll_state {
    int epfd;
    int wakefd; /* eventfd: other threads wake the loop through it */
} epoll_state;

/* The wake descriptor's event data: no descriptor's (their tag is above a
 * non-negative number). */
#define CTRIO__EPOLL_WAKE UINT64_MAX

static inline epoll_state *st(ctrio__io *io)
{
    return io->state;
}

static int ep_init(ctrio__io *io)
{
    epoll_state *s = malloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    int e = 0;
    s->wakefd = -1;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0)
        goto fail;
    s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wakefd < 0)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = CTRIO__EPOLL_WAKE};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wakefd, &ev) < 0)
        goto fail;
    io->state = s;
    return 0;
fail: /* one exit: what was made, unmade; the call's errno first */
    e = -errno;
    if (s->wakefd >= 0)
        close(s->wakefd);
    if (s->epfd >= 0)
        close(s->epfd);
    free(s);
    return e;
}

static void ep_fini(ctrio__io *io)
{
    close(st(io)->wakefd);
    close(st(io)->epfd);
    free(io->state);
    io->state = NULL;
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

static int ep_add(ctrio__io *io, int fd, uint32_t tag, unsigned dirs)
{
    int epfd = st(io)->epfd;
    struct epoll_event ev = event_for(fd, tag, dirs);
    if (CTRIO__SYS(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)) == 0)
        return 0;
    if (errno == EEXIST) /* a dup of a registered description: take it over */
        return CTRIO__SYS(epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)) == 0 ? 0 : -errno;
    return -errno;
}

/* EPOLL_CTL_MOD makes the kernel look at the file's readiness again
 * (ep_modify calls ep_item_poll), which is what rearm promises; ENOENT says
 * that the number was closed behind our back and now names a new file. */
static int ep_rearm(ctrio__io *io, int fd, uint32_t tag, uint32_t new_tag, unsigned dirs)
{
    int epfd = st(io)->epfd;
    struct epoll_event ev = event_for(fd, tag, dirs);
    if (CTRIO__SYS(epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)) == 0)
        return 0;
    if (errno != ENOENT)
        return -errno;
    ev = event_for(fd, new_tag, dirs);
    return CTRIO__SYS(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)) == 0 ? 1 : -errno;
}

static void ep_del(ctrio__io *io, int fd)
{
    struct epoll_event ev = {0};
    (void)epoll_ctl(st(io)->epfd, EPOLL_CTL_DEL, fd, &ev); /* closed already: fine */
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

static void ep_wake(ctrio__io *io)
{
    uint64_t one = 1;
    ssize_t r = CTRIO__SYS(write(st(io)->wakefd, &one, sizeof one));
    (void)r; /* EAGAIN: the counter is full, the loop wakes anyway */
}

static int ep_poll(ctrio__io *io, double timeout, ctrio__io_ready_fn fn, void *ctx)
{
    epoll_state *s = st(io);
    struct epoll_event evs[128]; /* may run on a task's stack: keep it small */
    int n = CTRIO__SYS_ONCE(
        epoll_wait(s->epfd, evs, (int)(sizeof evs / sizeof evs[0]), timeout_ms(timeout)));
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int taken = 0;
    for (int i = 0; i < n; i++) {
        uint64_t data = evs[i].data.u64;
        if (data == CTRIO__EPOLL_WAKE) {
            uint64_t v;
            ssize_t r = CTRIO__SYS(read(s->wakefd, &v, sizeof v));
            (void)r; /* EAGAIN: another poll consumed it */
            taken += fn(ctx, CTRIO__IO_WAKE_FD, 0, CTRIO__IO_READ);
            continue;
        }
        uint32_t e = evs[i].events;
        unsigned what = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP | EPOLLPRI))
            what |= CTRIO__IO_READ;
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            what |= CTRIO__IO_WRITE;
        if (e & (EPOLLRDHUP | EPOLLERR | EPOLLHUP | EPOLLPRI))
            what |= CTRIO__IO_SPECIAL;
        taken += fn(ctx, (int)(uint32_t)data, (uint32_t)(data >> 32), what);
    }
    return taken;
}

const ctrio__backend ctrio__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .add = ep_add,
    .rearm = ep_rearm,
    .del = ep_del,
    .poll = ep_poll,
    .wake = ep_wake,
};
