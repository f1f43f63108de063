/*
 * test_parallel.c — groups of runs (SPEC 12): ctrio_run_parallel, the run
 * index, cancelling the group, and SO_REUSEPORT servers across runs.
 *
 * The group semantics follow a Trio nursery whose children are the runs:
 * the first failure is the result and cancels the siblings (Trio's
 * test_nursery_cancel_doesnt_create_cyclic_garbage / test_child_crash_wakes_parent
 * family), and cancelling the group's own scope is no failure.
 *
 * cmocka's asserts are for the test's own thread only: the runs record what
 * they see in the shared structs below, and the test checks it after the
 * group has returned. Every wait in a run is bounded (ctrio_sleep with a
 * few seconds at most), so a missing cancellation shows as a wrong result,
 * never as a hang. A thread test: built and run under TSan too.
 */
#include "support.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* pthread_create is wrapped (tests/CMakeLists.txt, --wrap): the n-th call
 * from now fails with EAGAIN when fail_create_at is n. */
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
static atomic_int fail_create_at;
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    if (atomic_load(&fail_create_at) > 0 && atomic_fetch_sub(&fail_create_at, 1) == 1)
        return EAGAIN;
    return __real_pthread_create(t, a, fn, arg);
}

#define MAXRUNS 64

/* What the runs of one test record. */
typedef struct shared {
    atomic_int started; /* mains that ran */
    atomic_int seen[MAXRUNS]; /* seen[i]: run index i ran its main (count) */
    atomic_int ended_cancelled;
    atomic_int cpu[MAXRUNS]; /* the one CPU run i may use, -1: several */
    atomic_int listening;
    atomic_int port[MAXRUNS];
    atomic_int served_by[MAXRUNS]; /* connections each run accepted */
    atomic_int fail_index; /* the run that fails (-1: none) */
    atomic_int cancel_index; /* the run that cancels the group (-1: none) */
    int fail_rc;
} shared;

static void shared_init(shared *s)
{
    memset(s, 0, sizeof *s);
    atomic_store(&s->fail_index, -1);
    atomic_store(&s->cancel_index, -1);
}

static int only_cpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0 || CPU_COUNT(&set) != 1)
        return -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            return c;
    return -1;
}

static int allowed_cpus(void)
{
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    return CPU_COUNT(&set);
}

/* Record the index; the failing run fails after a while, the cancelling one
 * cancels the group; the others sleep (bounded) until cancelled. */
static int member(void *p)
{
    shared *s = p;
    int i = ctrio_current_run_index();
    if (i < 0 || i >= MAXRUNS)
        return -ERANGE;
    atomic_fetch_add(&s->started, 1);
    atomic_fetch_add(&s->seen[i], 1);
    atomic_store(&s->cpu[i], only_cpu());
    if (i == atomic_load(&s->fail_index)) {
        ctrio_sleep(0.02);
        return s->fail_rc;
    }
    if (i == atomic_load(&s->cancel_index)) {
        ctrio_sleep(0.02);
        ctrio_cancel_parallel_group();
    }
    int rc = ctrio_sleep(5);
    if (rc == -ECANCELED)
        atomic_fetch_add(&s->ended_cancelled, 1);
    return rc;
}

static int returns_zero(void *p)
{
    shared *s = p;
    atomic_fetch_add(&s->started, 1);
    atomic_fetch_add(&s->seen[ctrio_current_run_index()], 1);
    atomic_store(&s->cpu[ctrio_current_run_index()], only_cpu());
    return 0;
}

/* ---- group semantics ------------------------------------------------------ */

static void test_indexes_distinct(void **state)
{
    (void)state;
    shared s;
    shared_init(&s);
    int threads = wait_threads_at_most(1, 1.0); /* earlier tests' threads settle */
    assert_int_equal(ctrio_run_parallel(3, NULL, returns_zero, &s), 0);
    assert_int_equal(atomic_load(&s.started), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&s.seen[i]), 1);
    if (!under_emulator()) /* qemu-user's own threads come and go (seen: 3 after, 2 before) */
        assert_int_equal(wait_threads_at_most(threads, 2.0), threads);
}

static void test_pinned_by_default(void **state)
{
    (void)state;
    shared s;
    shared_init(&s);
    int n = allowed_cpus();
    assert_int_equal(ctrio_run_parallel(n, NULL, returns_zero, &s), 0);
    for (int i = 0; i < n; i++) {
        assert_true(atomic_load(&s.cpu[i]) >= 0 || under_emulator()); /* one CPU each (qemu-user: its own) */
        for (int j = 0; j < i; j++)
            assert_int_not_equal(atomic_load(&s.cpu[i]), atomic_load(&s.cpu[j]));
    }
    if (n > 1) { /* with one CPU, pinned and unpinned look the same */
        ctrio_config cfg = {0};
        cfg.unpinned = 1;
        shared_init(&s);
        assert_int_equal(ctrio_run_parallel(2, &cfg, returns_zero, &s), 0);
        assert_int_equal(atomic_load(&s.cpu[0]), -1);
        assert_int_equal(atomic_load(&s.cpu[1]), -1);
    }
}

static void test_zero_means_one_per_cpu(void **state)
{
    (void)state;
    shared s;
    shared_init(&s);
    int n = allowed_cpus();
    assert_int_equal(ctrio_run_parallel(0, NULL, returns_zero, &s), 0);
    assert_int_equal(atomic_load(&s.started), n);
    for (int i = 0; i < n; i++)
        assert_int_equal(atomic_load(&s.seen[i]), 1);
}

static int lone_index(void *p)
{
    *(int *)p = ctrio_current_run_index();
    return 0;
}

static void test_lone_run_index_zero(void **state)
{
    (void)state;
    int index = -1;
    assert_int_equal(ctrio_run(lone_index, &index), 0);
    assert_int_equal(index, 0);
    assert_int_equal(ctrio_current_run_index(), -EPERM); /* no run here */
}

static void test_bad_arguments(void **state)
{
    (void)state;
    assert_int_equal(ctrio_run_parallel(-1, NULL, returns_zero, NULL), -EINVAL);
    assert_int_equal(ctrio_run_parallel(2, NULL, NULL, NULL), -EINVAL);
}

static void test_first_failure_cancels_the_rest(void **state)
{
    (void)state;
    shared s;
    shared_init(&s);
    atomic_store(&s.fail_index, 2);
    s.fail_rc = -EIO;
    int threads = wait_threads_at_most(1, 1.0); /* earlier tests' threads settle */
    double t0 = real_now();
    assert_int_equal(ctrio_run_parallel(4, NULL, member, &s), -EIO);
    assert_true(real_now() - t0 < 2.5); /* not the 5 s sleeps */
    assert_int_equal(atomic_load(&s.started), 4);
    assert_int_equal(atomic_load(&s.ended_cancelled), 3);
    if (!under_emulator()) /* qemu-user's own threads come and go (seen: 3 after, 2 before) */
        assert_int_equal(wait_threads_at_most(threads, 2.0), threads);
}

/* Every run's result is readable (issue #12: "all errors readable"; Trio's
 * nursery keeps every exception): two runs that fail at once both show
 * their error, the runs the group cancelled show -ECANCELED, and the group
 * returns the first failure. */
static int fails_by_index(void *p)
{
    (void)p;
    switch (ctrio_current_run_index()) {
    case 1:
        return -EIO;
    case 2:
        return -ENOENT;
    default:
        return ctrio_sleep(5); /* until the group cancels it */
    }
}

static void test_every_result_readable(void **state)
{
    (void)state;
    int results[4] = {1, 1, 1, 1};
    double t0 = real_now();
    int rc = ctrio_run_parallel_results(4, NULL, fails_by_index, NULL, results);
    assert_true(real_now() - t0 < 2.5);
    assert_true(rc == -EIO || rc == -ENOENT);
    assert_int_equal(results[0], -ECANCELED);
    assert_int_equal(results[3], -ECANCELED);
    /* run 2 fails at once too, unless the cancellation that run 1's failure
     * sent reached it first */
    assert_int_equal(results[1], -EIO);
    assert_true(results[2] == -ENOENT || results[2] == -ECANCELED);
    assert_true(rc == -EIO || results[2] == -ENOENT);
    /* a thread that cannot be made: the runs never started show why */
    atomic_store(&fail_create_at, 2);
    int r2[3] = {1, 1, 1};
    assert_int_equal(ctrio_run_parallel_results(3, NULL, fails_by_index, NULL, r2), -EAGAIN);
    atomic_store(&fail_create_at, 0);
    assert_int_equal(r2[2], -EAGAIN);
    assert_int_equal(r2[0], -ECANCELED); /* left the barrier without running main */
    /* results need a count */
    assert_int_equal(ctrio_run_parallel_results(0, NULL, fails_by_index, NULL, r2), -EINVAL);
}

static void test_cancel_group_from_any_run(void **state)
{
    (void)state;
    for (int who = 0; who < 3; who++) {
        shared s;
        shared_init(&s);
        atomic_store(&s.cancel_index, who);
        double t0 = real_now();
        assert_int_equal(ctrio_run_parallel(3, NULL, member, &s), 0);
        assert_true(real_now() - t0 < 2.5);
        assert_int_equal(atomic_load(&s.ended_cancelled), 3); /* the canceller too */
    }
}

static void test_thread_creation_failure(void **state)
{
    (void)state;
    shared s;
    shared_init(&s);
    int threads = wait_threads_at_most(1, 1.0); /* earlier tests' threads settle */
    atomic_store(&fail_create_at, 3); /* the third run's thread */
    assert_int_equal(ctrio_run_parallel(4, NULL, member, &s), -EAGAIN);
    atomic_store(&fail_create_at, 0);
    assert_int_equal(atomic_load(&s.started), 0); /* no main ran */
    if (!under_emulator()) /* qemu-user's own threads come and go (seen: 3 after, 2 before) */
        assert_int_equal(wait_threads_at_most(threads, 2.0), threads);
}

static void test_run_setup_failure(void **state)
{
    (void)state;
    shared s;
    shared_init(&s);
    ctrio_config cfg = {0};
    cfg.stack_size = SIZE_MAX; /* ctrio_run_with refuses it: -EINVAL */
    assert_int_equal(ctrio_run_parallel(2, &cfg, member, &s), -EINVAL);
    assert_int_equal(atomic_load(&s.started), 0);
}

static int nested(void *p)
{
    (void)p;
    capture c;
    char text[256];
    capture_start(&c);
    int rc = ctrio_run_parallel(2, NULL, returns_zero, NULL);
    capture_end(&c, text, sizeof text);
    assert_non_null(strstr(text, "ctrio_run_parallel called inside a run"));
    return rc;
}

static void test_inside_a_run_is_misuse(void **state)
{
    (void)state;
    assert_int_equal(ctrio_run(nested, NULL), -EPERM);
}

/* One watcher stops the group: run 0 waits for SIGUSR1 (blocked in every
 * thread, as the header tells), run 1 sends it to the process. */
static int signal_member(void *p)
{
    shared *s = p;
    atomic_fetch_add(&s->started, 1);
    if (ctrio_current_run_index() == 0) {
        static const int sig[] = {SIGUSR1};
        int rc = ctrio_wait_signal(sig, 1);
        if (rc != SIGUSR1)
            return rc < 0 ? rc : -EPROTO;
        return ctrio_cancel_parallel_group();
    }
    if (ctrio_current_run_index() == 1) {
        ctrio_sleep(0.05);
        kill(getpid(), SIGUSR1);
    }
    int rc = ctrio_sleep(5);
    if (rc == -ECANCELED)
        atomic_fetch_add(&s->ended_cancelled, 1);
    return rc;
}

static void test_signal_stops_the_group(void **state)
{
    (void)state;
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    shared s;
    shared_init(&s);
    double t0 = real_now();
    assert_int_equal(ctrio_run_parallel(3, NULL, signal_member, &s), 0);
    assert_true(real_now() - t0 < 2.5);
    assert_int_equal(atomic_load(&s.ended_cancelled), 2);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

/* ---- servers across runs -------------------------------------------------- */

/* The handler answers with the index of the run that accepted. */
static int tell_index(ctrio_stream *st, void *arg)
{
    shared *s = arg;
    int i = ctrio_current_run_index();
    atomic_fetch_add(&s->served_by[i], 1);
    char b = (char)('0' + i);
    ctrio_stream_send_all(st, &b, 1); /* a client gone early is no failure */
    return 0;
}

static int serve_task(void *p)
{
    /* not incoming_cpu: on loopback the packets are handled on the client's
     * CPU, so every connection would go to the client's run */
    ctrio_tcp_listen_options o = {0};
    o.reuseport = 1;
    return ctrio_serve_tcp_with(tell_index, p, 0, "127.0.0.1", &o);
}

/* SO_INCOMING_CPU: the listener is steered to the CPU this run is pinned to. */
static int incoming_cpu_of_listener(void)
{
    ctrio_tcp_listen_options o = {0};
    o.incoming_cpu = 1;
    ctrio_listener **ls;
    size_t n;
    int rc = ctrio_open_tcp_listeners_with(0, "127.0.0.1", &o, &ls, &n);
    if (rc < 0)
        return rc;
    int cpu = -1;
    socklen_t len = sizeof cpu;
    rc = ctrio_socket_getsockopt(ctrio_socket_listener_socket(ls[0]), SOL_SOCKET,
                                 SO_INCOMING_CPU, &cpu, &len);
    ctrio_listeners_close(ls, n);
    return rc < 0 ? rc : cpu;
}

/* Connect until both runs have answered (at most 200 connections): the
 * kernel's reuseport hash on the 4-tuple spreads them. */
static int clients(shared *s, int port)
{
    int got[2] = {0, 0};
    for (int k = 0; k < 200 && !(got[0] && got[1]); k++) {
        ctrio_stream *st;
        int rc = ctrio_open_tcp_stream("127.0.0.1", port, &st);
        if (rc < 0)
            return rc;
        char b = 0;
        ssize_t n = ctrio_stream_receive_some(st, &b, 1);
        ctrio_stream_close(st);
        if (n != 1 || (b != '0' && b != '1'))
            return -EPROTO;
        got[b - '0']++;
    }
    (void)s;
    return got[0] && got[1] ? 0 : -ENOTCONN;
}

static int server_member(void *p)
{
    shared *s = p;
    int i = ctrio_current_run_index();
    atomic_store(&s->cpu[i], incoming_cpu_of_listener());
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v;
    int rc = ctrio_start(&n, serve_task, s, &v);
    if (rc == 0) {
        const ctrio_listener_set *set = v;
        struct sockaddr_in sin;
        socklen_t len = sizeof sin;
        ctrio_socket_getsockname(ctrio_socket_listener_socket(set->listeners[0]),
                                 (struct sockaddr *)&sin, &len);
        atomic_store(&s->port[i], ntohs(sin.sin_port));
        atomic_fetch_add(&s->listening, 1);
    }
    if (rc == 0 && i == 0) {
        for (int k = 0; k < 5000 && atomic_load(&s->listening) < 2; k++)
            ctrio_sleep(0.001);
        rc = clients(s, atomic_load(&s->port[0]));
        if (rc == 0)
            ctrio_cancel_parallel_group();
    }
    return ctrio_nursery_close(&n, rc);
}

static void test_server_on_two_runs(void **state)
{
    (void)state;
    shared s;
    shared_init(&s);
    int threads = wait_threads_at_most(1, 1.0); /* earlier tests' threads settle */
    assert_int_equal(ctrio_run_parallel(2, NULL, server_member, &s), 0);
    assert_int_equal(atomic_load(&s.listening), 2);
    assert_true(atomic_load(&s.port[0]) > 0);
    assert_int_equal(atomic_load(&s.port[0]), atomic_load(&s.port[1])); /* port 0 shared */
    assert_true(atomic_load(&s.served_by[0]) >= 1);
    assert_true(atomic_load(&s.served_by[1]) >= 1);
    if (!under_emulator()) /* qemu-user's own threads come and go (seen: 3 after, 2 before) */
        assert_int_equal(wait_threads_at_most(threads, 2.0), threads);
    int cpus = allowed_cpus();
    if (under_emulator())
        return; /* qemu-user answers the affinity calls its own way */
    for (int i = 0; i < 2; i++) /* run i is pinned to a CPU of its own */
        assert_true(atomic_load(&s.cpu[i]) >= 0);
    if (cpus > 1)
        assert_int_not_equal(atomic_load(&s.cpu[0]), atomic_load(&s.cpu[1]));
}

/* A resolver that answers every name with an abstract AF_UNIX address: the
 * "TCP" listener then is an AF_UNIX stream socket, a family where Linux (6.x)
 * refuses SO_REUSEPORT. */
static struct sockaddr_un unix_addr;
static struct addrinfo unix_ai;
static int unix_gai(void *ctx, const char *host, const char *service,
                    const struct addrinfo *hints, struct addrinfo **res)
{
    (void)ctx, (void)host, (void)service, (void)hints;
    memset(&unix_addr, 0, sizeof unix_addr);
    unix_addr.sun_family = AF_UNIX;
    memcpy(unix_addr.sun_path, "\0ctrio-test-parallel", 20);
    memset(&unix_ai, 0, sizeof unix_ai);
    unix_ai.ai_family = AF_UNIX;
    unix_ai.ai_socktype = SOCK_STREAM;
    unix_ai.ai_addr = (struct sockaddr *)&unix_addr;
    unix_ai.ai_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 20);
    *res = &unix_ai;
    return 0;
}

static int reuseport_refused(void *p)
{
    (void)p;
    ctrio_hostname_resolver r = {.getaddrinfo = unix_gai};
    ctrio_set_custom_hostname_resolver(&r);
    ctrio_tcp_listen_options o = {0};
    o.reuseport = 1;
    ctrio_listener **ls = NULL;
    size_t n = 7;
    int rc = ctrio_open_tcp_listeners_with(0, "anywhere", &o, &ls, &n);
    assert_int_equal(rc, -EOPNOTSUPP);
    assert_null(ls);
    assert_int_equal(n, 0);
    /* without the option the same address listens */
    o.reuseport = 0;
    assert_int_equal(ctrio_open_tcp_listeners_with(0, "anywhere", &o, &ls, &n), 0);
    assert_int_equal(n, 1);
    ctrio_listeners_close(ls, n);
    ctrio_set_custom_hostname_resolver(NULL);
    return 0;
}

static void test_reuseport_refused_is_a_clear_error(void **state)
{
    (void)state;
    int s = socket(AF_UNIX, SOCK_STREAM, 0), one = 1;
    assert_true(s >= 0);
    int refused = setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    close(s);
    if (refused == 0)
        skip(); /* a kernel older than 6.x takes SO_REUSEPORT on AF_UNIX */
    assert_int_equal(run_real(reuseport_refused, NULL), 0);
}

static void *nothing(void *p)
{
    return p;
}

int main(void)
{
    /* TSan starts a thread of its own at the first pthread_create: make it
     * exist before the tests count threads. */
    pthread_t t;
    if (pthread_create(&t, NULL, nothing, NULL) == 0)
        pthread_join(t, NULL);
    const struct CMUnitTest tests[] = {
        TEST(test_indexes_distinct),
        TEST(test_pinned_by_default),
        TEST(test_zero_means_one_per_cpu),
        TEST(test_lone_run_index_zero),
        TEST(test_bad_arguments),
        TEST(test_first_failure_cancels_the_rest),
        TEST(test_cancel_group_from_any_run),
        TEST(test_every_result_readable),
        TEST(test_thread_creation_failure),
        TEST(test_run_setup_failure),
        TEST(test_inside_a_run_is_misuse),
        TEST(test_signal_stops_the_group),
        TEST(test_server_on_two_runs),
        TEST(test_reuseport_refused_is_a_clear_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
