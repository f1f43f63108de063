/*
 * test_close_races.c — closing an object while another task is inside a call
 * on it, at the points where that call yields between two uses of it.
 *
 * New (not in Trio, where the garbage collector makes these moot). Each case
 * was a heap-use-after-free found in review; under AddressSanitizer each
 * regression aborts the test program. Each asserts the documented outcome:
 * the task inside the call gets -EBADF (or completes), the closer succeeds.
 */
#include "support.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct race {
    ctrio_stream *st;
    ctrio_socket *sock;
    ctrio_listener *l;
    char *big;
    int op_rc, close_rc;
} race;

static int send_all_task(void *a)
{
    race *r = a;
    r->op_rc = ctrio_stream_send_all(r->st, r->big, 8 << 20);
    return 0;
}

static int send_eof_task(void *a)
{
    race *r = a;
    r->op_rc = ctrio_stream_send_eof(r->st);
    return 0;
}

static int stream_closer(void *a)
{
    race *r = a;
    r->close_rc = ctrio_stream_close(r->st);
    return 0;
}

static int stream_race_body(void *arg)
{
    ctrio_fn op = (ctrio_fn)arg;
    race r = {0};
    ctrio_socket *p[2];
    assert_int_equal(ctrio_socketpair(0, 0, 0, p), 0);
    assert_int_equal(ctrio_socket_stream_new(p[0], &r.st), 0);
    r.big = calloc(1, 8 << 20);
    assert_non_null(r.big);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, op, &r), 0);
    assert_int_equal(ctrio_start_soon(&n, stream_closer, &r), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(r.close_rc, 0);
    if (op == send_all_task)
        assert_int_equal(r.op_rc, -EBADF); /* 8 MiB cannot fit: closed mid-send */
    else
        assert_true(r.op_rc == 0 || r.op_rc == -EBADF);
    free(r.big);
    assert_int_equal(ctrio_socket_close(p[1]), 0);
    return 0;
}

/* send_all yields between its sends; the stream (and its socket) is closed
 * by another task meanwhile. */
static void test_close_during_send_all(void **state)
{
    (void)state;
    assert_int_equal(run_real(stream_race_body, (void *)send_all_task), 0);
}

/* send_eof checkpoints before its shutdown. */
static void test_close_during_send_eof(void **state)
{
    (void)state;
    assert_int_equal(run_real(stream_race_body, (void *)send_eof_task), 0);
}

static int recv0_task(void *a)
{
    race *r = a;
    char b;
    r->op_rc = (int)ctrio_socket_recv(r->sock, &b, 0, 0);
    return 0;
}

static int socket_closer(void *a)
{
    race *r = a;
    r->close_rc = ctrio_socket_close(r->sock);
    return 0;
}

static int recv0_body(void *arg)
{
    (void)arg;
    race r = {0};
    ctrio_socket *p[2];
    assert_int_equal(ctrio_socketpair(0, 0, 0, p), 0);
    r.sock = p[0];
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, recv0_task, &r), 0);
    assert_int_equal(ctrio_start_soon(&n, socket_closer, &r), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(r.close_rc, 0);
    assert_int_equal(r.op_rc, -EBADF); /* closed during its yield */
    assert_int_equal(ctrio_socket_close(p[1]), 0);
    return 0;
}

/* recv of 0 bytes yields once, then looks at the socket. */
static void test_close_during_recv0(void **state)
{
    (void)state;
    assert_int_equal(run_real(recv0_body, NULL), 0);
}

static int accept_task(void *a)
{
    race *r = a;
    ctrio_stream *s = NULL;
    r->op_rc = ctrio_listener_accept(r->l, &s);
    if (s)
        ctrio_stream_close(s);
    return 0;
}

static int listener_closer(void *a)
{
    race *r = a;
    r->close_rc = ctrio_listener_close(r->l);
    return 0;
}

static int accept_emfile_body(void *arg)
{
    const char *path = arg;
    race r = {0};
    unlink(path);
    assert_int_equal(ctrio_open_unix_listener(path, 16, &r.l), 0);
    ctrio_stream *c;
    assert_int_equal(ctrio_open_unix_socket(path, &c), 0);
    /* Out of descriptors: accept fails with EMFILE at once, yields, and the
     * listener is closed meanwhile (then its EMFILE handling must not touch
     * the freed socket). */
    int fds[256], nf = 0;
    for (; nf < 256; nf++)
        if ((fds[nf] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
            break;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, accept_task, &r), 0);
    assert_int_equal(ctrio_start_soon(&n, listener_closer, &r), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    for (int i = 0; i < nf; i++)
        close(fds[i]);
    assert_true(r.op_rc == -EMFILE || r.op_rc == -EBADF);
    assert_int_equal(r.close_rc, 0);
    ctrio_stream_close(c);
    return 0;
}

static void test_close_during_accept_emfile(void **state)
{
    (void)state;
    /* valgrind keeps RLIMIT_NOFILE to itself (setrlimit changes only its
     * own view, which its accept wrapper enforces); an accept that io_uring
     * makes in the kernel never meets that limit, so EMFILE cannot be made
     * to happen there */
    if (!backend_is_epoll() && under_valgrind())
        skip();
    char dir[] = "/tmp/ctrio-race-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/l.sock", dir);
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)count_open_fds() + 32; /* the run's own few, then EMFILE */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int rc = run_real(accept_emfile_body, path);
    setrlimit(RLIMIT_NOFILE, &old);
    unlink(path);
    rmdir(dir);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_close_during_send_all),
        TEST(test_close_during_send_eof),
        TEST(test_close_during_recv0),
        TEST(test_close_during_accept_emfile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
