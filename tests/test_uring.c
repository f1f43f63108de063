/*
 * test_uring.c — the raw io_uring layer (src/core/uring.h, issue #11): a
 * round trip, waits that time out, a full SQ, cancellation, multishot poll,
 * provided buffers, CQ overflow and injected faults.
 *
 * Each test runs twice: on a ring with DEFER_TASKRUN (completions are posted
 * only inside io_uring_enter) and on a plain one. Where io_uring_setup fails
 * (ENOSYS under qemu-user or an old kernel, EPERM from seccomp or
 * kernel.io_uring_disabled) every test is skipped with the reason.
 */
#include "support.h"

#include "uring.h"

#include <ctrio_testing.h>

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static const unsigned ring_flags[2] = {CTRIO__URING_FLAGS, 0};

/* Set up a ring, or skip the test where the kernel offers none. */
static void open_ring(ctrio__uring *u, unsigned entries, unsigned flags)
{
    int r = ctrio__uring_init(u, entries, flags);
    if (r == -ENOSYS || r == -EPERM || r == -EACCES) {
        print_message("skipped: io_uring_setup: %s\n", strerror(-r));
        skip();
    }
    assert_int_equal(r, 0);
}

/* A copy of the next CQE, waiting for it up to 5 s; false if none came. */
static bool next_cqe(ctrio__uring *u, struct io_uring_cqe *out)
{
    struct io_uring_cqe *c;
    double end = real_now() + 5;
    while (ctrio__uring_peek(u, &c, 1) == 0) {
        if (real_now() > end)
            return false;
        assert_int_equal(ctrio__uring_enter(u, 1, 1.0), 0);
    }
    *out = *c;
    ctrio__uring_advance(u, 1);
    return true;
}

static struct io_uring_sqe *queue(ctrio__uring *u, int op, int fd, uint64_t user_data)
{
    struct io_uring_sqe *sqe = ctrio__uring_sqe(u);
    assert_non_null(sqe);
    sqe->opcode = (uint8_t)op;
    sqe->fd = fd;
    sqe->user_data = user_data;
    return sqe;
}

/* ---- tests ----------------------------------------------------------------- */

static void nop_round_trip(unsigned flags)
{
    ctrio__uring u;
    open_ring(&u, 8, flags);
    /* this kernel (>= 6.1) takes every flag asked for */
    assert_int_equal(u.flags & flags, flags);
    assert_int_equal(u.cq_entries, 4 * u.sq_entries);
    assert_true(ctrio__uring_has_op(&u, IORING_OP_NOP));
    assert_false(ctrio__uring_has_op(&u, 255));
    queue(&u, IORING_OP_NOP, -1, 42);
    assert_int_equal(ctrio__uring_sq_pending(&u), 1);
    assert_int_equal(ctrio__uring_enter(&u, 1, 5.0), 0);
    assert_int_equal(ctrio__uring_sq_pending(&u), 0);
    struct io_uring_cqe *c[4];
    assert_int_equal(ctrio__uring_peek(&u, c, 4), 1);
    assert_int_equal(c[0]->user_data, 42);
    assert_int_equal(c[0]->res, 0);
    ctrio__uring_advance(&u, 1);
    assert_int_equal(ctrio__uring_peek(&u, c, 4), 0);
    ctrio__uring_fini(&u);
}

static void test_nop_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        nop_round_trip(ring_flags[i]);
}

/* A read that completes after a wait has timed out: the wait returns 0 after
 * about its timeout, with no CQE; the write then completes the read. The
 * buffer is left uninitialised so that valgrind checks the marking. */
static void read_later(unsigned flags)
{
    ctrio__uring u;
    open_ring(&u, 8, flags);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    char *buf = malloc(16);
    assert_non_null(buf);
    struct io_uring_sqe *sqe = queue(&u, IORING_OP_READ, p[0], 5);
    sqe->addr = (uint64_t)(uintptr_t)buf;
    sqe->len = 16;
    double t0 = real_now();
    assert_int_equal(ctrio__uring_enter(&u, 1, 0.1), 0);
    /* under valgrind a wait is cut into 10 ms slices (uring.c): wait out
     * the rest as the portable layer does */
    for (int i = 0; i < 50 && under_valgrind() && real_now() - t0 < 0.1; i++)
        assert_int_equal(ctrio__uring_enter(&u, 1, 0.1 - (real_now() - t0)), 0);
    double took = real_now() - t0;
    assert_true(took >= 0.09 && took < 2.0);
    struct io_uring_cqe *c, got;
    assert_int_equal(ctrio__uring_peek(&u, &c, 1), 0);
    assert_int_equal(ctrio__uring_enter(&u, 1, 0), 0); /* a zero timeout polls */
    assert_int_equal(ctrio__uring_peek(&u, &c, 1), 0);
    assert_int_equal(write(p[1], "hello", 5), 5);
    /* The read completed in the write's wake-up. With DEFER_TASKRUN its CQE
     * is posted only when the ring's task work runs: an enter that waits
     * for nothing must still run it. */
    assert_int_equal(ctrio__uring_enter(&u, 0, 0), 0);
    assert_int_equal(ctrio__uring_peek(&u, &c, 1), 1);
    got = *c;
    ctrio__uring_advance(&u, 1);
    assert_int_equal(got.user_data, 5);
    assert_int_equal(got.res, 5);
    ctrio__uring_mark_defined(buf, (size_t)got.res);
    assert_memory_equal(buf, "hello", 5);
    free(buf);
    close(p[0]);
    close(p[1]);
    ctrio__uring_fini(&u);
}

static void test_read_completes_after_timeout(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        read_later(ring_flags[i]);
}

/* Many more NOPs than SQ entries: the SQ fills (sqe returns NULL), is
 * submitted and wraps around many times; every NOP completes once, in order. */
static void sq_wraps(unsigned flags)
{
    enum { N = 1000 };
    ctrio__uring u;
    open_ring(&u, 8, flags);
    unsigned queued = 0, reaped = 0, full = 0;
    for (int iter = 0; iter < 10 * N && reaped < N; iter++) {
        while (queued < N) {
            struct io_uring_sqe *sqe = ctrio__uring_sqe(&u);
            if (!sqe) {
                assert_int_equal(ctrio__uring_sq_pending(&u), u.sq_entries);
                full++;
                break;
            }
            sqe->opcode = IORING_OP_NOP;
            sqe->user_data = queued++;
        }
        assert_int_equal(ctrio__uring_enter(&u, 1, 5.0), 0);
        struct io_uring_cqe *c[64];
        unsigned n = ctrio__uring_peek(&u, c, 64);
        for (unsigned i = 0; i < n; i++) {
            assert_int_equal(c[i]->user_data, reaped);
            assert_int_equal(c[i]->res, 0);
            reaped++;
        }
        ctrio__uring_advance(&u, n);
    }
    assert_int_equal(reaped, N);
    assert_true(full >= N / u.sq_entries - 1);
    ctrio__uring_fini(&u);
}

static void test_sq_full_and_wrap(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        sq_wraps(ring_flags[i]);
}

/* ASYNC_CANCEL by user_data of a pending read: two CQEs, the read's
 * -ECANCELED and the cancel's 0. */
static void cancel_read(unsigned flags)
{
    ctrio__uring u;
    open_ring(&u, 8, flags);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    char buf[16];
    struct io_uring_sqe *sqe = queue(&u, IORING_OP_READ, p[0], 1);
    sqe->addr = (uint64_t)(uintptr_t)buf;
    sqe->len = sizeof buf;
    assert_int_equal(ctrio__uring_submit(&u), 0);
    assert_int_equal(ctrio__uring_enter(&u, 1, 0.01), 0); /* not done */
    struct io_uring_cqe *c, got;
    assert_int_equal(ctrio__uring_peek(&u, &c, 1), 0);
    sqe = queue(&u, IORING_OP_ASYNC_CANCEL, -1, 2);
    sqe->addr = 1;
    int res[3] = {1, 1, 1};
    for (int i = 0; i < 2; i++) {
        assert_true(next_cqe(&u, &got));
        assert_true(got.user_data == 1 || got.user_data == 2);
        res[got.user_data] = got.res;
        assert_false(got.flags & IORING_CQE_F_MORE);
    }
    assert_int_equal(res[1], -ECANCELED);
    assert_int_equal(res[2], 0);
    close(p[0]);
    close(p[1]);
    ctrio__uring_fini(&u);
}

static void test_cancel_pending_read(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        cancel_read(ring_flags[i]);
}

/* A multishot POLL_ADD on an eventfd: a CQE with IORING_CQE_F_MORE per
 * wake-up, then, once removed, a last one without it. */
static void multishot_poll(unsigned flags)
{
    ctrio__uring u;
    open_ring(&u, 8, flags);
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_true(efd >= 0);
    struct io_uring_sqe *sqe = queue(&u, IORING_OP_POLL_ADD, efd, 7);
    sqe->len = IORING_POLL_ADD_MULTI;
    sqe->poll32_events = POLLIN;
    assert_int_equal(ctrio__uring_submit(&u), 0);
    struct io_uring_cqe got;
    uint64_t v = 1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(write(efd, &v, sizeof v), sizeof v);
        assert_true(next_cqe(&u, &got));
        assert_int_equal(got.user_data, 7);
        assert_true(got.res & POLLIN);
        assert_true(got.flags & IORING_CQE_F_MORE);
        assert_int_equal(read(efd, &v, sizeof v), sizeof v);
    }
    sqe = queue(&u, IORING_OP_POLL_REMOVE, -1, 8);
    sqe->addr = 7;
    int res[9] = {0};
    for (int i = 0; i < 2; i++) {
        assert_true(next_cqe(&u, &got));
        assert_true(got.user_data == 7 || got.user_data == 8);
        assert_false(got.flags & IORING_CQE_F_MORE);
        res[got.user_data] = got.res;
    }
    assert_int_equal(res[7], -ECANCELED);
    assert_int_equal(res[8], 0);
    close(efd);
    ctrio__uring_fini(&u);
}

static void test_multishot_poll(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        multishot_poll(ring_flags[i]);
}

/* RECV with IOSQE_BUFFER_SELECT from a ring of 4 buffers, 10 times: the
 * kernel names the buffer it filled, and runs dry unless each is given back. */
static void buffer_ring_recv(unsigned flags)
{
    ctrio__uring u;
    open_ring(&u, 8, flags);
    ctrio__uring_buf_ring br;
    int r = ctrio__uring_buf_ring_setup(&u, &br, 3, 4, 64);
    if (r == -EINVAL) {
        ctrio__uring_fini(&u);
        print_message("skipped: no IORING_REGISTER_PBUF_RING (kernel < 5.19)\n");
        skip();
    }
    assert_int_equal(r, 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    for (int i = 0; i < 10; i++) {
        struct io_uring_sqe *sqe = queue(&u, IORING_OP_RECV, sv[0], 100 + (uint64_t)i);
        sqe->flags = IOSQE_BUFFER_SELECT;
        sqe->buf_group = 3;
        char msg[8];
        int len = snprintf(msg, sizeof msg, "msg %d", i);
        assert_int_equal(send(sv[1], msg, (size_t)len, 0), len);
        struct io_uring_cqe got;
        assert_true(next_cqe(&u, &got));
        assert_int_equal(got.user_data, 100 + (uint64_t)i);
        assert_int_equal(got.res, len);
        assert_true(got.flags & IORING_CQE_F_BUFFER);
        uint16_t bid = (uint16_t)(got.flags >> IORING_CQE_BUFFER_SHIFT);
        assert_true(bid < 4);
        assert_memory_equal(ctrio__uring_buf_ring_buf(&br, bid), msg, (size_t)len);
        ctrio__uring_buf_ring_add(&br, bid);
    }
    close(sv[0]);
    close(sv[1]);
    ctrio__uring_buf_ring_fini(&u, &br);
    ctrio__uring_fini(&u);
}

static void test_buffer_ring_recv(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        buffer_ring_recv(ring_flags[i]);
}

/* 200 NOPs on a CQ of 16, none reaped until all were submitted: the CQ
 * overflows (IORING_SQ_CQ_OVERFLOW), the kernel keeps the rest, and enter
 * flushes them as they are reaped; none is lost, all come in order. */
static void cq_overflow(unsigned flags)
{
    enum { N = 200 };
    ctrio__uring u;
    open_ring(&u, 4, flags);
    assert_int_equal(u.cq_entries, 16);
    unsigned queued = 0, reaped = 0;
    for (int iter = 0; iter < N && queued < N; iter++) {
        struct io_uring_sqe *sqe;
        while (queued < N && (sqe = ctrio__uring_sqe(&u))) {
            sqe->opcode = IORING_OP_NOP;
            sqe->user_data = queued++;
        }
        assert_int_equal(ctrio__uring_submit(&u), 0);
        if (ctrio__uring_sq_pending(&u) == u.sq_entries)
            break; /* an older kernel takes no more before a reap */
    }
    assert_true(atomic_load(u.sq_flags) & IORING_SQ_CQ_OVERFLOW);
    for (int iter = 0; iter < 10 * N && reaped < N; iter++) {
        struct io_uring_sqe *sqe;
        while (queued < N && (sqe = ctrio__uring_sqe(&u))) {
            sqe->opcode = IORING_OP_NOP;
            sqe->user_data = queued++;
        }
        assert_int_equal(ctrio__uring_enter(&u, 0, 0), 0);
        struct io_uring_cqe *c[8];
        unsigned n = ctrio__uring_peek(&u, c, 8);
        for (unsigned i = 0; i < n; i++)
            assert_int_equal(c[i]->user_data, reaped++);
        ctrio__uring_advance(&u, n);
    }
    assert_int_equal(reaped, N);
    assert_int_equal(atomic_load(u.cq_overflow), 0); /* nothing dropped */
    assert_false(atomic_load(u.sq_flags) & IORING_SQ_CQ_OVERFLOW);
    ctrio__uring_fini(&u);
}

static void test_cq_overflow(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        cq_overflow(ring_flags[i]);
}

/* Inside a run, io_uring_enter and io_uring_setup are counted system calls:
 * the fault switch fails them with its errno, and nothing is lost or leaked. */
static int faults_main(void *arg)
{
    unsigned flags = *(unsigned *)arg;
    ctrio__uring u;
    int r = ctrio__uring_init(&u, 8, flags);
    if (r == -ENOSYS || r == -EPERM || r == -EACCES)
        return r;
    assert_int_equal(r, 0);
    /* one system call per turn: submitting and waiting are one enter; with
     * nothing to do a plain ring makes none, a DEFER_TASKRUN one the enter
     * that runs its task work */
    uint64_t s0 = ctrio_testing_run_syscalls();
    queue(&u, IORING_OP_NOP, -1, 0);
    assert_int_equal(ctrio__uring_enter(&u, 1, 1.0), 0);
    assert_int_equal(ctrio_testing_run_syscalls() - s0, 1);
    struct io_uring_cqe *c;
    assert_int_equal(ctrio__uring_peek(&u, &c, 1), 1);
    ctrio__uring_advance(&u, 1);
    s0 = ctrio_testing_run_syscalls();
    assert_int_equal(ctrio__uring_enter(&u, 0, 0), 0);
    assert_int_equal(ctrio_testing_run_syscalls() - s0,
                     (u.flags & IORING_SETUP_DEFER_TASKRUN) != 0);

    queue(&u, IORING_OP_NOP, -1, 1);
    ctrio_testing_fail_syscall_at(1, EIO);
    assert_int_equal(ctrio__uring_enter(&u, 1, 1.0), -EIO);
    assert_true(ctrio_testing_syscall_fault_fired());
    assert_int_equal(ctrio__uring_sq_pending(&u), 1); /* still queued */
    ctrio_testing_fail_syscall_at(1, EINTR);          /* a signal: no error */
    assert_int_equal(ctrio__uring_enter(&u, 1, 1.0), 0);
    struct io_uring_cqe got;
    assert_true(next_cqe(&u, &got));
    assert_int_equal(got.user_data, 1);
    /* EBUSY/EAGAIN (a CQ overflow the kernel could not flush, no memory for
     * a request): no error while there are CQEs to reap, whose reaping is
     * what the kernel asks for; an error with none */
    queue(&u, IORING_OP_NOP, -1, 2);
    assert_int_equal(ctrio__uring_enter(&u, 1, 1.0), 0);
    queue(&u, IORING_OP_NOP, -1, 3);
    ctrio_testing_fail_syscall_at(1, EBUSY);
    assert_int_equal(ctrio__uring_enter(&u, 1, 1.0), 0);
    assert_int_equal(ctrio__uring_sq_pending(&u), 1); /* submitted after the reap */
    assert_true(next_cqe(&u, &got));
    assert_int_equal(got.user_data, 2);
    ctrio_testing_fail_syscall_at(1, EAGAIN);
    assert_int_equal(ctrio__uring_enter(&u, 1, 1.0), -EAGAIN);
    assert_true(next_cqe(&u, &got));
    assert_int_equal(got.user_data, 3);
    ctrio__uring_fini(&u);

    /* kernel.io_uring_disabled or seccomp: setup's error is the answer */
    ctrio_testing_fail_syscall_at(1, EPERM);
    assert_int_equal(ctrio__uring_init(&u, 8, flags), -EPERM);
    assert_int_equal(u.fd, -1);
    /* the probe (the 2nd call) fails: the ring is undone */
    ctrio_testing_fail_syscall_at(2, ENOMEM);
    assert_int_equal(ctrio__uring_init(&u, 8, flags), -ENOMEM);
    /* flags refused (an older kernel): the next ones are tried */
    ctrio_testing_fail_syscall_at(1, EINVAL);
    assert_int_equal(ctrio__uring_init(&u, 8, flags), 0);
    if (flags & IORING_SETUP_DEFER_TASKRUN) {
        assert_false(u.flags & IORING_SETUP_DEFER_TASKRUN);
        assert_true(u.flags & IORING_SETUP_COOP_TASKRUN);
    } else {
        assert_false(u.flags & IORING_SETUP_CQSIZE);
        assert_int_equal(u.cq_entries, 2 * u.sq_entries); /* the kernel's own size */
    }
    ctrio__uring_fini(&u);
    return 0;
}

static void test_faults_in_a_run(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        unsigned flags = ring_flags[i];
        int r = run_real(faults_main, &flags);
        if (r == -ENOSYS || r == -EPERM || r == -EACCES) {
            print_message("skipped: io_uring_setup: %s\n", strerror(-r));
            skip();
        }
        assert_int_equal(r, 0);
    }
}

static void test_bad_arguments(void **state)
{
    (void)state;
    ctrio__uring u;
    assert_int_equal(ctrio__uring_init(&u, 0, 0), -EINVAL);
    assert_int_equal(ctrio__uring_init(&u, 65536, 0), -EINVAL);
    open_ring(&u, 8, 0);
    ctrio__uring_buf_ring br;
    assert_int_equal(ctrio__uring_buf_ring_setup(&u, &br, 1, 3, 64), -EINVAL);
    assert_int_equal(ctrio__uring_buf_ring_setup(&u, &br, 1, 4, 0), -EINVAL);
    ctrio__uring_buf_ring_fini(&u, &br); /* an unset ring: nothing to do */
    ctrio__uring_fini(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_nop_round_trip),
        TEST(test_read_completes_after_timeout),
        TEST(test_sq_full_and_wrap),
        TEST(test_cancel_pending_read),
        TEST(test_multishot_poll),
        TEST(test_buffer_ring_recv),
        TEST(test_cq_overflow),
        TEST(test_faults_in_a_run),
        TEST(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
