/*
 * test_serve.c — serving connections: ctrio_serve_listeners, ctrio_serve_tcp,
 * ctrio_serve_unix.
 *
 * Ports Trio's tests/test_highlevel_serve_listeners.py and
 * tests/test_highlevel_open_tcp_listeners.py::test_serve_tcp. Trio drives
 * serve_listeners with an in-memory listener (MemoryListener); so do the
 * "custom listeners" tests here, with a custom listener (ctrio_listener_ops).
 * The others use real loopback (or AF_UNIX) listeners, and a custom socket
 * (ctrio_socket_new_custom) under a SocketListener when accept must fail in a
 * scripted way.
 *
 * Threads: Unix listeners on a filesystem path bind in a worker thread, so
 * this program is also a TSan test.
 */
#include "net_support.h"

#include <ctrio_testing.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------- */

static int listener_port(ctrio_listener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(
        ctrio_socket_getsockname(ctrio_socket_listener_socket(l), (struct sockaddr *)&ss, &len), 0);
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    assert_int_equal(ss.ss_family, AF_INET6);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void expect_eof(ctrio_stream *s)
{
    char b;
    assert_int_equal(ctrio_stream_receive_some(s, &b, 1), 0);
}

/* recv_exactly, tmpdir_make / tmpdir_remove and exists are in
 * net_support.c. */

/* What the server tasks run (launched with ctrio_start). */
typedef struct server_args {
    ctrio_stream_handler h;
    void *arg;
    ctrio_listener **ls;
    size_t n;
    int port;
    const char *host;
    const char *path;
} server_args;

static int serve_listeners_task(void *p)
{
    server_args *a = p;
    return ctrio_serve_listeners(a->h, a->arg, a->ls, a->n);
}

static int serve_tcp_task(void *p)
{
    server_args *a = p;
    return ctrio_serve_tcp(a->h, a->arg, a->port, a->host, 0);
}

static int serve_unix_task(void *p)
{
    server_args *a = p;
    return ctrio_serve_unix(a->h, a->arg, a->path, 0);
}

/* ---- scripted accept failures: a custom socket under a SocketListener ---- */

#define SCRIPT_MAX 32

typedef struct script_sock {
    int script[SCRIPT_MAX]; /* accept's results in turn; past the end it blocks */
    size_t len, calls;
    double times[SCRIPT_MAX + 1]; /* ctrio_current_time() at each call */
    int closed;
} script_sock;

static int script_accept(ctrio_socket *s, ctrio_socket **conn, struct sockaddr *addr,
                         socklen_t *len)
{
    (void)conn, (void)addr, (void)len;
    script_sock *ss = ctrio_socket_impl(s);
    if (ss->calls <= SCRIPT_MAX)
        ss->times[ss->calls] = ctrio_current_time();
    size_t i = ss->calls++;
    if (i < ss->len)
        return ss->script[i];
    return ctrio_sleep_forever(); /* no more connections */
}

static int script_close(ctrio_socket *s)
{
    script_sock *ss = ctrio_socket_impl(s);
    ss->closed++;
    return 0;
}

static const ctrio_socket_ops script_ops = {
    .accept = script_accept,
    /* ctrio_socket_listener_new asks whether the socket listens */
    .getsockopt = fake_getsockopt_listening,
    .close = script_close,
};

/* A SocketListener over a custom AF_INET stream socket (ops, impl). */
static ctrio_listener *custom_listener(const ctrio_socket_ops *ops, void *impl)
{
    ctrio_socket *s;
    assert_int_equal(ctrio_socket_new_custom(ops, impl, AF_INET, SOCK_STREAM, 0, &s), 0);
    ctrio_listener *l;
    assert_int_equal(ctrio_socket_listener_new(s, &l), 0);
    return l;
}

static ctrio_listener *script_listener(script_sock *ss, const int *script, size_t n)
{
    memset(ss, 0, sizeof *ss);
    assert_true(n <= SCRIPT_MAX);
    memcpy(ss->script, script, n * sizeof *script);
    ss->len = n;
    return custom_listener(&script_ops, ss);
}

static int never_called(ctrio_stream *s, void *arg)
{
    (void)s, (void)arg;
    fail_msg("no connection should reach the handler");
    return 0;
}

/* ---- serve_listeners ------------------------------------------------------ */

/* Trio: tests/test_highlevel_serve_listeners.py::test_serve_listeners_basic:
 * two listeners (TCP and Unix), three clients each; the handler sends
 * "123" and expects "456"; the stream is closed when the handler returns (the
 * client sees EOF); ctrio_start reports the listener set; cancelling stops
 * the server, which closes every listener. */
typedef struct basic_state {
    int handled;
} basic_state;

static int basic_handler(ctrio_stream *s, void *arg)
{
    basic_state *st = arg;
    assert_int_equal(ctrio_stream_send_all(s, "123", 3), 0);
    char buf[3];
    recv_exactly(s, buf, 3);
    assert_memory_equal(buf, "456", 3);
    st->handled++;
    return 0;
}

typedef struct basic_client {
    ctrio_listener *l;
    const char *path; /* AF_UNIX, else TCP on 127.0.0.1 */
} basic_client;

static int basic_client_task(void *p)
{
    basic_client *c = p;
    ctrio_stream *s;
    if (c->path)
        assert_int_equal(ctrio_open_unix_socket(c->path, &s), 0);
    else
        assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", listener_port(c->l), &s), 0);
    char buf[3];
    recv_exactly(s, buf, 3);
    assert_memory_equal(buf, "123", 3);
    assert_int_equal(ctrio_stream_send_all(s, "456", 3), 0);
    expect_eof(s); /* the server closed its end after the handler */
    ctrio_stream_close(s);
    return 0;
}

static int serve_basic_body(void *arg)
{
    tmpdir *t = arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    ctrio_listener **tcp;
    size_t ntcp;
    assert_int_equal(ctrio_open_tcp_listeners(0, "127.0.0.1", 0, &tcp, &ntcp), 0);
    assert_int_equal(ntcp, 1);
    ctrio_listener *ls[2];
    ls[0] = tcp[0];
    free(tcp); /* the listener is ours; the array is not needed */
    assert_int_equal(ctrio_open_unix_listener(t->path, 0, &ls[1]), 0);
    int port = listener_port(ls[0]);

    basic_state st = {0};
    server_args a = {basic_handler, &st, ls, 2, 0, NULL, NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v = NULL;
    int rc = ctrio_start(&n, serve_listeners_task, &a, &v);
    assert_int_equal(rc, 0);
    const ctrio_listener_set *set = v;
    assert_non_null(set);
    assert_ptr_equal(set->listeners, ls);
    assert_int_equal(set->count, 2);

    ctrio_nursery clients;
    ctrio_nursery_open(&clients);
    basic_client bc[6];
    for (int i = 0; i < 6; i++) {
        bc[i].l = ls[i % 2];
        bc[i].path = i % 2 ? t->path : NULL;
        ctrio_start_soon(&clients, basic_client_task, &bc[i]);
    }
    assert_int_equal(ctrio_nursery_close(&clients, 0), 0);
    assert_int_equal(st.handled, 6);

    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    /* Both listeners were closed by the server. */
    ctrio_stream *c = (ctrio_stream *)&c;
    assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", port, &c), -ECONNREFUSED);
    assert_null(c);
    assert_false(exists(t->path));
    assert_int_equal(ctrio_open_unix_socket(t->path, &c), -ENOENT);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_listeners_basic(void **state)
{
    (void)state;
    tmpdir t;
    tmpdir_make(&t, "serve");
    assert_int_equal(run_real(serve_basic_body, &t), 0);
    tmpdir_remove(&t);
}

/* Trio's MemoryListener, in C: a listener over a custom socket whose accept
 * hands out `nconns` custom connected sockets, then blocks. Each connection
 * records how it was closed. */
typedef struct fake_conn {
    int closed;
    double close_deadline; /* ctrio_current_effective_deadline() in close */
    double close_time;
} fake_conn;

typedef struct fake_listener {
    fake_conn conns[8];
    size_t nconns, given;
    int closed;
} fake_listener;

static int fconn_close(ctrio_socket *s)
{
    fake_conn *c = ctrio_socket_impl(s);
    c->closed++;
    c->close_deadline = ctrio_current_effective_deadline();
    c->close_time = ctrio_current_time();
    return 0;
}

static const ctrio_socket_ops fconn_ops = {
    .setsockopt = fake_setsockopt_ignore,
    .close = fconn_close,
};

static int flist_accept(ctrio_socket *s, ctrio_socket **conn, struct sockaddr *addr, socklen_t *len)
{
    (void)addr, (void)len;
    fake_listener *fl = ctrio_socket_impl(s);
    int rc = ctrio_checkpoint(); /* as MemoryListener.accept */
    if (rc < 0)
        return rc;
    if (fl->given == fl->nconns)
        return ctrio_sleep_forever();
    fake_conn *c = &fl->conns[fl->given++];
    return ctrio_socket_new_custom(&fconn_ops, c, AF_INET, SOCK_STREAM, 0, conn);
}

static int flist_close(ctrio_socket *s)
{
    fake_listener *fl = ctrio_socket_impl(s);
    fl->closed++;
    return 0;
}

static const ctrio_socket_ops flist_ops = {
    .accept = flist_accept,
    .getsockopt = fake_getsockopt_listening,
    .close = flist_close,
};

static ctrio_listener *fake_listener_new(fake_listener *fl, size_t nconns)
{
    memset(fl, 0, sizeof *fl);
    fl->nconns = nconns;
    return custom_listener(&flist_ops, fl);
}

typedef struct slow_state {
    int started, finished;
} slow_state;

static int slow_handler(ctrio_stream *s, void *arg)
{
    slow_state *st = arg;
    assert_non_null(ctrio_socket_stream_socket(s));
    st->started++;
    int rc = ctrio_sleep(1);
    if (rc < 0)
        return rc; /* cancelled with the server */
    st->finished++;
    return 0;
}

/* Trio: ::test_serve_listeners_basic, its close_hook part: each
 * accepted stream is closed once its handler returns, and forcefully: the
 * close runs with an effective deadline of -inf. Two listeners of three
 * connections each; handlers sleep 1 s (mock clock), so the closes happen at
 * t = 1; the listeners are closed when the server is cancelled. */
static int forceful_close_body(void *arg)
{
    (void)arg;
    fake_listener fl[2];
    ctrio_listener *ls[2] = {fake_listener_new(&fl[0], 3), fake_listener_new(&fl[1], 3)};
    slow_state st = {0, 0};
    server_args a = {slow_handler, &st, ls, 2, 0, NULL, NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v;
    assert_int_equal(ctrio_start(&n, serve_listeners_task, &a, &v), 0);
    assert_ptr_equal(((const ctrio_listener_set *)v)->listeners, ls);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(st.started, 6);
    assert_int_equal(st.finished, 0);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++)
            assert_int_equal(fl[k].conns[i].closed, 0);
    assert_int_equal(ctrio_sleep(2), 0);
    assert_int_equal(st.finished, 6);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(fl[k].given, 3);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(fl[k].conns[i].closed, 1);
            assert_true(fl[k].conns[i].close_deadline == -INFINITY);
            assert_true(fl[k].conns[i].close_time == 1.0);
        }
        assert_int_equal(fl[k].closed, 0);
    }
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(fl[0].closed, 1);
    assert_int_equal(fl[1].closed, 1);
    return 0;
}

static void test_serve_listeners_forceful_close(void **state)
{
    (void)state;
    assert_int_equal(run_mock(forceful_close_body, NULL), 0);
}

/* New: cancelling the server while handlers run cancels them, closes their
 * streams, then the listeners. */
static int cancel_handlers_body(void *arg)
{
    (void)arg;
    fake_listener fl;
    ctrio_listener *l = fake_listener_new(&fl, 4);
    slow_state st = {0, 0};
    server_args a = {slow_handler, &st, &l, 1, 0, NULL, NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start(&n, serve_listeners_task, &a, NULL), 0);
    assert_int_equal(ctrio_sleep(0.5), 0);
    assert_int_equal(st.started, 4);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_true(ctrio_current_time() == 0.5);
    assert_int_equal(st.finished, 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fl.conns[i].closed, 1);
        assert_true(fl.conns[i].close_time == 0.5);
    }
    assert_int_equal(fl.closed, 1);
    return 0;
}

static void test_serve_listeners_cancel_closes_handlers_streams(void **state)
{
    (void)state;
    assert_int_equal(run_mock(cancel_handlers_body, NULL), 0);
}

/* Trio: ::test_serve_listeners_accept_unrecognized_error: an accept
 * error that is neither per-connection nor a lack of resources stops the
 * server with that error, and every listener (the healthy one too) is
 * closed. (Trio's second case, ECONNABORTED, is retried by a SocketListener:
 * see the next test.) */
static int unrecognized_body(void *arg)
{
    (void)arg;
    const int errs[] = {-EFAULT, -EINVAL, -ENOTSOCK, -EBADF};
    for (size_t k = 0; k < sizeof errs / sizeof errs[0]; k++) {
        script_sock ss;
        const int script[] = {errs[k]};
        ctrio_listener *ls[2];
        ls[0] = script_listener(&ss, script, 1);
        ctrio_listener **tcp;
        size_t ntcp;
        assert_int_equal(ctrio_open_tcp_listeners(0, "127.0.0.1", 0, &tcp, &ntcp), 0);
        ls[1] = tcp[0];
        free(tcp);
        int port = listener_port(ls[1]);
        assert_int_equal(ctrio_serve_listeners(never_called, NULL, ls, 2), errs[k]);
        assert_int_equal(ss.calls, 1);
        assert_int_equal(ss.closed, 1);
        ctrio_stream *c;
        assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", port, &c), -ECONNREFUSED);
    }
    return 0;
}

static void test_serve_listeners_accept_unrecognized_error(void **state)
{
    (void)state;
    assert_int_equal(run_mock(unrecognized_body, NULL), 0);
}

/* Trio's tests/test_highlevel_socket.py::test_SocketListener_accept_errors
 * through serve_listeners: the errors of one failed connection are
 * retried by the listener at once (no sleep), the next error stops it. */
static int per_connection_body(void *arg)
{
    (void)arg;
    script_sock ss;
    const int script[] = {-ECONNABORTED, -EPERM,        -EPROTO,   -ECONNRESET,
                          -ETIMEDOUT,    -EHOSTUNREACH, -ENETDOWN, -EFAULT};
    const size_t n = sizeof script / sizeof script[0];
    ctrio_listener *l = script_listener(&ss, script, n);
    assert_int_equal(ctrio_serve_listeners(never_called, NULL, &l, 1), -EFAULT);
    assert_int_equal(ss.calls, n);
    for (size_t i = 0; i < n; i++)
        assert_true(ss.times[i] == 0.0); /* no waiting in between */
    assert_int_equal(ss.closed, 1);
    return 0;
}

static void test_serve_listeners_accept_per_connection_errors(void **state)
{
    (void)state;
    assert_int_equal(run_mock(per_connection_body, NULL), 0);
}

/* Trio: ::test_serve_listeners_accept_capacity_error: EMFILE on accept
 * is logged ("retrying") and retried every 100 ms: in 0.95 s, at 0, 0.1, ...,
 * 0.9 = 10 times. Mock clock: exact times. Unlike Trio, the note is logged at
 * most once a second per listener, at CTRIO_LOG_WARNING: one note here. */
static log_kept kept;

static int count_kept(const char *needle, int level)
{
    int count = 0;
    for (int i = 0; i < kept.n; i++)
        if (strstr(kept.msg[i], needle) && kept.level[i] == level)
            count++;
    return count;
}

static int capacity_body(void *arg)
{
    (void)arg;
    script_sock ss;
    int script[SCRIPT_MAX];
    for (int i = 0; i < SCRIPT_MAX; i++)
        script[i] = -EMFILE;
    ctrio_listener *l = script_listener(&ss, script, SCRIPT_MAX);
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 0.95);
    int rc = ctrio_serve_listeners(never_called, NULL, &l, 1);
    rc = ctrio_cancel_scope_close(&cs, rc);
    assert_int_equal(rc, 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_true(ctrio_current_time() == 0.95);
    assert_int_equal(ss.calls, 10);
    assert_int_equal(count_kept("retrying in 100 ms", CTRIO_LOG_WARNING), 1);
    assert_int_equal(kept.n, 1);
    assert_string_equal(kept.msg[0], "accept: Too many open files; retrying in 100 ms");
    for (size_t i = 0; i < ss.calls; i++)
        assert_true(fabs(ss.times[i] - 0.1 * (double)i) < 1e-9);
    assert_int_equal(ss.closed, 1);
    return 0;
}

static void test_serve_listeners_accept_capacity_error(void **state)
{
    (void)state;
    assert_int_equal(run_mock_logged(&kept, 0, capacity_body, NULL), 0);
}

/* Trio: ::test_serve_listeners_accept_capacity_error, for every capacity
 * error: each (EMFILE, ENFILE, ENOMEM, ENOBUFS) waits 100 ms,
 * and once accept blocks again the server just waits; per-connection errors
 * in between are retried at once. (One note: the rest come within 1 s.) */
static int capacity_kinds_body(void *arg)
{
    (void)arg;
    script_sock ss;
    const int script[] = {-EMFILE, -ENFILE, -ECONNABORTED, -ENOMEM, -ENOBUFS};
    ctrio_listener *l = script_listener(&ss, script, 5);
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 3);
    int rc = ctrio_serve_listeners(never_called, NULL, &l, 1);
    rc = ctrio_cancel_scope_close(&cs, rc);
    assert_int_equal(rc, 0);
    assert_true(ctrio_current_time() == 3.0);
    assert_int_equal(count_kept("retrying in 100 ms", CTRIO_LOG_WARNING), 1);
    assert_int_equal(ss.calls, 6); /* the 6th blocks until the cancel */
    const double want[] = {0.0, 0.1, 0.2, 0.2, 0.3, 0.4};
    for (size_t i = 0; i < 6; i++)
        assert_true(fabs(ss.times[i] - want[i]) < 1e-9);
    assert_int_equal(ss.closed, 1);
    return 0;
}

static void test_serve_listeners_accept_capacity_error_kinds(void **state)
{
    (void)state;
    assert_int_equal(run_mock_logged(&kept, 0, capacity_kinds_body, NULL), 0);
}

/* New (ctrio): the accept-retry note is rate-limited, at most one a second
 * per listener, each later one with the count of retries not logged: an
 * EMFILE-bound server printed a line per retry (48 in one run). 30 retries
 * in 3 s make 3 notes; the mock clock's sums of 0.1 s fall just short of
 * 1.0 s (0.9999999999999999), so the second note is the retry at 1.1 s, the
 * third the one at 2.1 s. */
static int rate_limit_body(void *arg)
{
    (void)arg;
    script_sock ss;
    int script[30];
    for (int i = 0; i < 30; i++)
        script[i] = -EMFILE;
    ctrio_listener *l = script_listener(&ss, script, 30);
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 3.05);
    int rc = ctrio_serve_listeners(never_called, NULL, &l, 1);
    rc = ctrio_cancel_scope_close(&cs, rc);
    assert_int_equal(rc, 0);
    assert_int_equal(ss.calls, 31); /* the 31st blocks */
    assert_int_equal(count_kept("accept: Too many open files; retrying in 100 ms",
                                CTRIO_LOG_WARNING), 3);
    assert_int_equal(kept.n, 3);
    assert_null(strstr(kept.msg[0], "more retries"));
    assert_non_null(strstr(kept.msg[1], "(10 more retries in the last 1.1 s)"));
    assert_non_null(strstr(kept.msg[2], "(9 more retries in the last 1.0 s)"));
    return 0;
}

static void test_serve_accept_retry_note_rate_limited(void **state)
{
    (void)state;
    assert_int_equal(run_mock_logged(&kept, 0, rate_limit_body, NULL), 0);
}

/* The note is a warning: by default (no hook) nothing reaches stderr, and a
 * hook at CTRIO_LOG_ERROR does not get it. */
static int quiet_body(void *arg)
{
    (void)arg;
    script_sock ss;
    const int script[] = {-EMFILE, -ENFILE};
    ctrio_listener *l = script_listener(&ss, script, 2);
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 2);
    int rc = ctrio_serve_listeners(never_called, NULL, &l, 1);
    rc = ctrio_cancel_scope_close(&cs, rc);
    assert_int_equal(rc, 0);
    assert_int_equal(ss.calls, 3);
    return 0;
}

static void test_serve_accept_retry_note_not_by_default(void **state)
{
    (void)state;
    capture cap;
    char buf[1024];
    capture_start(&cap);
    int rc = run_mock(quiet_body, NULL);
    capture_end(&cap, buf, sizeof buf);
    assert_int_equal(rc, 0);
    assert_string_equal(buf, "");
    assert_int_equal(run_mock_logged(&kept, CTRIO_LOG_ERROR, quiet_body, NULL), 0);
    assert_int_equal(kept.n, 0);
    assert_int_equal(run_mock_logged(&kept, CTRIO_LOG_WARNING, quiet_body, NULL), 0);
    assert_int_equal(kept.n, 1);
}

/* Trio: ::test_serve_listeners_connection_nursery, adapted: ctrio has
 * no handler_nursery argument; what is checked is that the connection
 * handlers run concurrently in the server's nursery: ten handlers are all
 * alive at once before any of them answers. */
typedef struct gather {
    int active, max_active;
    ctrio_event all_in;
} gather;

static int gather_handler(ctrio_stream *s, void *arg)
{
    gather *g = arg;
    if (++g->active > g->max_active)
        g->max_active = g->active;
    if (g->active == 10)
        ctrio_event_set(&g->all_in);
    assert_int_equal(ctrio_event_wait(&g->all_in), 0);
    assert_int_equal(ctrio_stream_send_all(s, "k", 1), 0);
    g->active--;
    return 0;
}

static int concurrent_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    gather g;
    memset(&g, 0, sizeof g);
    ctrio_event_init(&g.all_in);
    server_args a = {gather_handler, &g, NULL, 0, 0, "127.0.0.1", NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v;
    assert_int_equal(ctrio_start(&n, serve_tcp_task, &a, &v), 0);
    const ctrio_listener_set *set = v;
    int port = listener_port(set->listeners[0]);
    ctrio_stream *c[10];
    for (int i = 0; i < 10; i++)
        assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", port, &c[i]), 0);
    for (int i = 0; i < 10; i++) {
        char b;
        recv_exactly(c[i], &b, 1);
        assert_int_equal(b, 'k');
        expect_eof(c[i]);
        ctrio_stream_close(c[i]);
    }
    assert_int_equal(g.max_active, 10);
    assert_int_equal(g.active, 0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_listeners_connection_nursery(void **state)
{
    (void)state;
    assert_int_equal(run_real(concurrent_body, NULL), 0);
}

/* New (serve_listeners' docstring says it; no Trio test): a handler's failure
 * stops the server with that error: the other handlers are cancelled and their
 * streams closed (their clients see EOF), the listeners are closed. */
typedef struct fail_state {
    int echoed, cancelled;
} fail_state;

static int failing_handler(ctrio_stream *s, void *arg)
{
    fail_state *st = arg;
    char b;
    recv_exactly(s, &b, 1);
    if (b == 'X')
        return -EPROTO;
    assert_int_equal(ctrio_stream_send_all(s, &b, 1), 0);
    st->echoed++;
    int rc = ctrio_sleep_forever();
    assert_int_equal(rc, -ECANCELED);
    st->cancelled++;
    return rc;
}

static int handler_failure_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    fail_state st = {0, 0};
    server_args a = {failing_handler, &st, NULL, 0, 0, "127.0.0.1", NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v;
    assert_int_equal(ctrio_start(&n, serve_tcp_task, &a, &v), 0);
    int port = listener_port(((const ctrio_listener_set *)v)->listeners[0]);
    ctrio_stream *c[5];
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", port, &c[i]), 0);
        char b = (char)('a' + i), r;
        assert_int_equal(ctrio_stream_send_all(c[i], &b, 1), 0);
        recv_exactly(c[i], &r, 1);
        assert_int_equal(r, b);
    }
    ctrio_stream *bad;
    assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", port, &bad), 0);
    assert_int_equal(ctrio_stream_send_all(bad, "X", 1), 0);
    int body = ctrio_sleep_forever(); /* until the server's failure cancels us */
    assert_int_equal(body, -ECANCELED);
    int rc = ctrio_nursery_close(&n, body);
    assert_int_equal(rc, -EPROTO);
    assert_int_equal(ctrio_nursery_error_count(&n), 1);
    assert_int_equal(st.echoed, 5);
    assert_int_equal(st.cancelled, 5);
    for (int i = 0; i < 5; i++) {
        expect_eof(c[i]);
        ctrio_stream_close(c[i]);
    }
    expect_eof(bad);
    ctrio_stream_close(bad);
    ctrio_stream *c2;
    assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", port, &c2), -ECONNREFUSED);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_listeners_handler_failure_stops_server(void **state)
{
    (void)state;
    assert_int_equal(run_real(handler_failure_body, NULL), 0);
}

/* New (ctrio): once serving ends, the listeners are closed and their
 * entries in the caller's array are NULL, so that the array from
 * ctrio_open_tcp_listeners is freed with ctrio_listeners_close as documented
 * there, without closing a freed listener again (before: dangling entries). */
static int array_after_serve_body(void *arg)
{
    (void)arg;
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(0, "127.0.0.1", 0, &ls, &n), 0);
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 1);
    int rc = ctrio_serve_listeners(never_called, NULL, ls, n);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    for (size_t i = 0; i < n; i++)
        assert_null(ls[i]);
    ctrio_listeners_close(ls, n);
    return 0;
}

static void test_serve_listeners_array_after_serving(void **state)
{
    (void)state;
    assert_int_equal(run_mock(array_after_serve_body, NULL), 0);
}

/* New: argument checks. */
static int invalid_body(void *arg)
{
    (void)arg;
    script_sock ss;
    const int script[] = {-EFAULT};
    ctrio_listener *l = script_listener(&ss, script, 1);
    assert_int_equal(ctrio_serve_listeners(never_called, NULL, NULL, 1), -EINVAL);
    assert_int_equal(ctrio_serve_listeners(never_called, NULL, &l, 0), -EINVAL);
    assert_int_equal(ctrio_serve_listeners(NULL, NULL, &l, 1), -EINVAL);
    assert_int_equal(ss.calls, 0);
    if (!ss.closed) /* refused before serving: the listener is still ours */
        ctrio_listener_close(l);
    assert_int_equal(ss.closed, 1);
    assert_int_equal(ctrio_serve_tcp(never_called, NULL, -1, "127.0.0.1", 0), -EINVAL);
    assert_int_equal(ctrio_serve_tcp(never_called, NULL, 70000, NULL, 0), -EINVAL);
    assert_int_equal(ctrio_serve_unix(never_called, NULL, NULL, 0), -EINVAL);
    return 0;
}

static void test_serve_invalid_arguments(void **state)
{
    (void)state;
    assert_int_equal(run_real(invalid_body, NULL), 0);
}

/* New (Trio's handlers often close their stream themselves, `async with
 * stream:`; Trio's aclose is idempotent): a handler that closes its stream
 * before returning must be fine: the server must not close it again. */
static int closing_handler(ctrio_stream *s, void *arg)
{
    int *count = arg;
    assert_int_equal(ctrio_stream_send_all(s, "bye", 3), 0);
    ctrio_stream_close(s);
    (*count)++;
    return 0;
}

static int handler_closes_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    int count = 0;
    server_args a = {closing_handler, &count, NULL, 0, 0, "127.0.0.1", NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v;
    assert_int_equal(ctrio_start(&n, serve_tcp_task, &a, &v), 0);
    int port = listener_port(((const ctrio_listener_set *)v)->listeners[0]);
    for (int i = 0; i < 3; i++) {
        ctrio_stream *c;
        assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", port, &c), 0);
        char b[3];
        recv_exactly(c, b, 3);
        assert_memory_equal(b, "bye", 3);
        expect_eof(c);
        ctrio_stream_close(c);
    }
    /* let the connection tasks finish after their handlers */
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.01), 0);
    assert_int_equal(count, 3);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_handler_closes_its_stream(void **state)
{
    (void)state;
    /* Found a bug (fixed): the server closed a stream its handler had
     * already closed (a use after free). */
    assert_int_equal(run_real(handler_closes_body, NULL), 0);
}

/* ---- serve_tcp ------------------------------------------------------------- */

static int send_x_handler(ctrio_stream *s, void *arg)
{
    int *count = arg;
    (*count)++;
    return ctrio_stream_send_all(s, "x", 1);
}

/* Trio: tests/test_highlevel_open_tcp_listeners.py::test_serve_tcp:
 * under ctrio_start, serve_tcp reports the listener set once it accepts;
 * clients reach the port from getsockname; cancelling the nursery stops it
 * and closes the listener (the port is refused afterwards). */
static int serve_tcp_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    int count = 0;
    server_args a = {send_x_handler, &count, NULL, 0, 0, "127.0.0.1", NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v = NULL;
    assert_int_equal(ctrio_start(&n, serve_tcp_task, &a, &v), 0);
    const ctrio_listener_set *set = v;
    assert_non_null(set);
    assert_int_equal(set->count, 1);
    ctrio_socket *ls = ctrio_socket_listener_socket(set->listeners[0]);
    assert_int_equal(ctrio_socket_family(ls), AF_INET);
    int port = listener_port(set->listeners[0]);
    assert_true(port > 0);
    for (int i = 0; i < 3; i++) {
        ctrio_stream *c;
        assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", port, &c), 0);
        char b;
        recv_exactly(c, &b, 1);
        assert_int_equal(b, 'x');
        expect_eof(c);
        ctrio_stream_close(c);
    }
    assert_int_equal(count, 3);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    ctrio_stream *c = (ctrio_stream *)&c;
    assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", port, &c), -ECONNREFUSED);
    assert_null(c);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_tcp(void **state)
{
    (void)state;
    assert_int_equal(run_real(serve_tcp_body, NULL), 0);
}

/* New: serve_tcp on every address (host NULL) and port 0 listens on one port
 * for IPv4 and IPv6 (Trio #283), and serves both. */
static int serve_tcp_any_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    int count = 0;
    server_args a = {send_x_handler, &count, NULL, 0, 0, NULL, NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v = NULL;
    assert_int_equal(ctrio_start(&n, serve_tcp_task, &a, &v), 0);
    const ctrio_listener_set *set = v;
    assert_true(set->count >= 1);
    int port = listener_port(set->listeners[0]);
    bool v6 = false;
    for (size_t i = 0; i < set->count; i++) {
        assert_int_equal(listener_port(set->listeners[i]), port);
        if (ctrio_socket_family(ctrio_socket_listener_socket(set->listeners[i])) == AF_INET6)
            v6 = true;
    }
    const char *hosts[] = {"127.0.0.1", "::1"};
    int nhosts = v6 ? 2 : 1;
    for (int i = 0; i < nhosts; i++) {
        ctrio_stream *c;
        assert_int_equal(ctrio_open_tcp_stream(hosts[i], port, &c), 0);
        char b;
        recv_exactly(c, &b, 1);
        assert_int_equal(b, 'x');
        expect_eof(c);
        ctrio_stream_close(c);
    }
    assert_int_equal(count, nhosts);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    for (int i = 0; i < nhosts; i++) {
        ctrio_stream *c;
        assert_int_equal(ctrio_open_tcp_stream(hosts[i], port, &c), -ECONNREFUSED);
    }
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_tcp_any_address_one_port(void **state)
{
    (void)state;
    assert_int_equal(run_real(serve_tcp_any_body, NULL), 0);
}

/* New: serve_tcp under ctrio_start when the listeners cannot be opened: the
 * error comes out of ctrio_start, and nothing is left running. */
static int serve_tcp_error_body(void *arg)
{
    (void)arg;
    ctrio_listener **ls;
    size_t nls;
    assert_int_equal(ctrio_open_tcp_listeners(0, "127.0.0.1", 0, &ls, &nls), 0);
    int port = listener_port(ls[0]);
    int count = 0;
    server_args a = {send_x_handler, &count, NULL, 0, port, "127.0.0.1", NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v = (void *)&v;
    assert_int_equal(ctrio_start(&n, serve_tcp_task, &a, &v), -EADDRINUSE);
    a.port = -5;
    assert_int_equal(ctrio_start(&n, serve_tcp_task, &a, &v), -EINVAL);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    ctrio_listeners_close(ls, nls);
    return 0;
}

static void test_serve_tcp_open_error(void **state)
{
    (void)state;
    assert_int_equal(run_real(serve_tcp_error_body, NULL), 0);
}

/* ---- serve_unix ------------------------------------------------------------ */

static int echo_handler(ctrio_stream *s, void *arg)
{
    size_t *total = arg;
    char buf[1024];
    for (;;) {
        ssize_t r = ctrio_stream_receive_some(s, buf, sizeof buf);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return 0;
        int rc = ctrio_stream_send_all(s, buf, (size_t)r);
        if (rc < 0)
            return rc;
        if (total)
            *total += (size_t)r;
    }
}

/* New: ctrio_serve_unix end to end: the path exists while serving, clients
 * connect with ctrio_open_unix_socket, echo works; cancelling unlinks the
 * path. */
static int serve_unix_body(void *arg)
{
    tmpdir *t = arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    size_t total = 0;
    server_args a = {echo_handler, &total, NULL, 0, 0, NULL, t->path};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v = NULL;
    assert_int_equal(ctrio_start(&n, serve_unix_task, &a, &v), 0);
    const ctrio_listener_set *set = v;
    assert_non_null(set);
    assert_int_equal(set->count, 1);
    assert_int_equal(ctrio_socket_family(ctrio_socket_listener_socket(set->listeners[0])), AF_UNIX);
    struct stat st;
    assert_int_equal(lstat(t->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    for (int i = 0; i < 3; i++) {
        ctrio_stream *c;
        assert_int_equal(ctrio_open_unix_socket(t->path, &c), 0);
        char msg[16], back[16];
        int len = snprintf(msg, sizeof msg, "hello %d", i);
        assert_int_equal(ctrio_stream_send_all(c, msg, (size_t)len), 0);
        assert_int_equal(ctrio_stream_send_eof(c), 0);
        recv_exactly(c, back, (size_t)len);
        assert_memory_equal(back, msg, (size_t)len);
        expect_eof(c);
        ctrio_stream_close(c);
    }
    assert_int_equal(total, strlen("hello 0") * 3);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_false(exists(t->path));

    /* A path that exists: the error comes out of ctrio_start. */
    int fd = open(t->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start(&n, serve_unix_task, &a, &v), -EADDRINUSE);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_true(exists(t->path)); /* not ours: left alone */
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_unix(void **state)
{
    (void)state;
    tmpdir t;
    tmpdir_make(&t, "serve");
    assert_int_equal(run_real(serve_unix_body, &t), 0);
    tmpdir_remove(&t);
}

/* New: serve_unix on an abstract name. */
static int serve_unix_abstract_body(void *arg)
{
    (void)arg;
    char name[108];
    snprintf(name, sizeof name, "@ctrio-test-serve-%d", (int)getpid());
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    server_args a = {echo_handler, NULL, NULL, 0, 0, NULL, name};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v;
    assert_int_equal(ctrio_start(&n, serve_unix_task, &a, &v), 0);
    ctrio_stream *c;
    assert_int_equal(ctrio_open_unix_socket(name, &c), 0);
    assert_int_equal(ctrio_stream_send_all(c, "abc", 3), 0);
    char b[3];
    recv_exactly(c, b, 3);
    assert_memory_equal(b, "abc", 3);
    ctrio_stream_close(c);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_open_unix_socket(name, &c), -ECONNREFUSED);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_unix_abstract(void **state)
{
    (void)state;
    assert_int_equal(run_real(serve_unix_abstract_body, NULL), 0);
}

/* ---- custom listeners: Trio's MemoryListener ------------------------------ */

/* Trio's MemoryListener (tests/test_highlevel_serve_listeners.py) as a
 * custom listener (ctrio_listener_ops): connect makes a memory stream pair
 * and queues the server's half in a channel of capacity 1; accept is a
 * checkpoint, then the accept hook if any, then it takes the next half from
 * the channel. close closes both ends of the channel; a half still queued is
 * kept for the test to close (closing a stream is a checkpoint, which a
 * listener's close must not be). impl is the test's: as ctrio.h asks, accept
 * reads ctrio_listener_impl(l) again after each wait, since close releases
 * the channel. */
#define MEM_HOOKS 32

typedef struct mem_listener {
    ctrio_listener *l;
    ctrio_send_channel *tx;
    ctrio_receive_channel *rx;
    int hook[MEM_HOOKS]; /* the hook's results in turn (0: none); past the end 0 */
    size_t nhook, hook_calls;
    double hook_times[MEM_HOOKS];
    int accepted, closed;
    ctrio_stream *left[4];
    size_t nleft;
} mem_listener;

static int mem_accept(ctrio_listener *l, ctrio_stream **out)
{
    int rc = ctrio_checkpoint();
    mem_listener *ml = ctrio_listener_impl(l);
    if (rc < 0 || !ml)
        return rc < 0 ? rc : -EBADF;
    if (ml->hook_calls < ml->nhook) {
        ml->hook_times[ml->hook_calls] = ctrio_current_time();
        rc = ml->hook[ml->hook_calls++];
        if (rc < 0)
            return rc;
    }
    ctrio_stream *s;
    rc = ctrio_channel_receive(ml->rx, &s);
    if (rc != 1)
        return rc < 0 ? rc : -EBADF; /* every connect end closed */
    ml = ctrio_listener_impl(l);
    if (ml)
        ml->accepted++;
    *out = s;
    return 0;
}

static int mem_close(ctrio_listener *l)
{
    mem_listener *ml = ctrio_listener_impl(l);
    ctrio_stream *s;
    while (ml->nleft < 4 && ctrio_channel_receive_nowait(ml->rx, &s) == 1)
        ml->left[ml->nleft++] = s;
    ctrio_receive_channel_close(ml->rx);
    ctrio_send_channel_close(ml->tx);
    ml->closed++;
    return 0;
}

static const ctrio_listener_ops mem_listener_ops = {.accept = mem_accept, .close = mem_close};

static ctrio_listener *mem_listener_new(mem_listener *ml, const int *hook, size_t nhook)
{
    memset(ml, 0, sizeof *ml);
    assert_true(nhook <= MEM_HOOKS);
    if (nhook)
        memcpy(ml->hook, hook, nhook * sizeof *hook);
    ml->nhook = nhook;
    assert_int_equal(ctrio_open_memory_channel(sizeof(ctrio_stream *), 1, &ml->tx, &ml->rx), 0);
    assert_int_equal(ctrio_listener_new_custom(&mem_listener_ops, ml, &ml->l), 0);
    assert_null(ctrio_socket_listener_socket(ml->l));
    return ml->l;
}

/* MemoryListener.connect: the client's half. */
static ctrio_stream *mem_connect(mem_listener *ml)
{
    assert_int_equal(ml->closed, 0);
    ctrio_stream *client, *server;
    assert_int_equal(ctrio_memory_stream_pair(&client, &server), 0);
    assert_int_equal(ctrio_channel_send(ml->tx, &server), 0);
    return client;
}

/* After the listener's close: the halves it kept. */
static void mem_listener_finish(mem_listener *ml)
{
    assert_int_equal(ml->closed, 1);
    for (size_t i = 0; i < ml->nleft; i++)
        ctrio_stream_close(ml->left[i]);
}

typedef struct mem_client {
    mem_listener *ml;
    int id;
} mem_client;

/* Trio's client in ::test_serve_listeners_basic. */
static int mem_basic_client(void *p)
{
    mem_client *c = p;
    ctrio_stream *s = mem_connect(c->ml);
    char buf[3];
    recv_exactly(s, buf, 3);
    assert_memory_equal(buf, "123", 3);
    assert_int_equal(ctrio_stream_send_all(s, "456", 3), 0);
    expect_eof(s); /* the server closed its half after the handler */
    ctrio_stream_close(s);
    return 0;
}

/* Trio: ::test_serve_listeners_basic, with Trio's own fake listener, which
 * ctrio can now serve: two MemoryListeners, three clients each; the handler
 * sends "123" and expects "456"; each stream is closed when its handler
 * returns; ctrio_start reports the listeners; cancelling the server (its
 * accepts are then blocked in the listeners' channels) closes both
 * listeners once and clears their entries. */
static int mem_basic_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    mem_listener ml[2];
    ctrio_listener *ls[2] = {mem_listener_new(&ml[0], NULL, 0), mem_listener_new(&ml[1], NULL, 0)};
    basic_state st = {0};
    server_args a = {basic_handler, &st, ls, 2, 0, NULL, NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v = NULL;
    assert_int_equal(ctrio_start(&n, serve_listeners_task, &a, &v), 0);
    const ctrio_listener_set *set = v;
    assert_ptr_equal(set->listeners, ls);
    assert_int_equal(set->count, 2);
    ctrio_nursery clients;
    ctrio_nursery_open(&clients);
    mem_client mc[6];
    for (int i = 0; i < 6; i++) {
        mc[i] = (mem_client){&ml[i % 2], i};
        assert_int_equal(ctrio_start_soon(&clients, mem_basic_client, &mc[i]), 0);
    }
    assert_int_equal(ctrio_nursery_close(&clients, 0), 0);
    assert_int_equal(st.handled, 6);
    assert_int_equal(ml[0].accepted, 3);
    assert_int_equal(ml[1].accepted, 3);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_null(ls[0]);
    assert_null(ls[1]);
    mem_listener_finish(&ml[0]);
    mem_listener_finish(&ml[1]);
    assert_int_equal(ml[0].nleft + ml[1].nleft, 0);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_custom_listeners_basic(void **state)
{
    (void)state;
    assert_int_equal(run_mock(mem_basic_body, NULL), 0);
}

/* New: an echo server over a custom listener: each client sends a message
 * and half-closes, gets the message back, then EOF. */
static int mem_echo_client(void *p)
{
    mem_client *c = p;
    ctrio_stream *s = mem_connect(c->ml);
    char msg[16], back[16];
    int len = snprintf(msg, sizeof msg, "hello %d", c->id);
    assert_int_equal(ctrio_stream_send_all(s, msg, (size_t)len), 0);
    assert_int_equal(ctrio_stream_send_eof(s), 0);
    recv_exactly(s, back, (size_t)len);
    assert_memory_equal(back, msg, (size_t)len);
    expect_eof(s);
    ctrio_stream_close(s);
    return 0;
}

static int mem_echo_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    mem_listener ml;
    ctrio_listener *l = mem_listener_new(&ml, NULL, 0);
    size_t total = 0;
    server_args a = {echo_handler, &total, &l, 1, 0, NULL, NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start(&n, serve_listeners_task, &a, NULL), 0);
    ctrio_nursery clients;
    ctrio_nursery_open(&clients);
    mem_client mc[5];
    for (int i = 0; i < 5; i++) {
        mc[i] = (mem_client){&ml, i};
        assert_int_equal(ctrio_start_soon(&clients, mem_echo_client, &mc[i]), 0);
    }
    assert_int_equal(ctrio_nursery_close(&clients, 0), 0);
    assert_int_equal(total, 5 * strlen("hello 0"));
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    mem_listener_finish(&ml);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_custom_listener_echo(void **state)
{
    (void)state;
    assert_int_equal(run_mock(mem_echo_body, NULL), 0);
}

/* Trio: ::test_serve_listeners_accept_unrecognized_error, both of its cases:
 * an accept error that is not a lack of resources stops the server with that
 * error, ECONNABORTED included (only a SocketListener retries it, inside its
 * accept: serve_listeners does not); every listener is closed, the healthy
 * one too. */
static int mem_unrecognized_body(void *arg)
{
    (void)arg;
    const int errs[] = {-EFAULT, -ECONNABORTED};
    for (size_t k = 0; k < 2; k++) {
        mem_listener bad, good;
        ctrio_listener *ls[2] = {mem_listener_new(&bad, &errs[k], 1),
                                 mem_listener_new(&good, NULL, 0)};
        assert_int_equal(ctrio_serve_listeners(never_called, NULL, ls, 2), errs[k]);
        assert_int_equal(bad.hook_calls, 1);
        mem_listener_finish(&bad);
        mem_listener_finish(&good);
    }
    return 0;
}

static void test_serve_custom_listener_accept_unrecognized_error(void **state)
{
    (void)state;
    assert_int_equal(run_mock(mem_unrecognized_body, NULL), 0);
}

/* Trio: ::test_serve_listeners_accept_capacity_error: the wait-and-retry is
 * serve_listeners', so it holds for any listener: EMFILE every 100 ms, in
 * 0.95 s at 0, 0.1, ..., 0.9 = 10 times, one note (ctrio's rate limit); and
 * ENFILE, ENOMEM, ENOBUFS alike, after which the server accepts again. */
static int mem_capacity_body(void *arg)
{
    (void)arg;
    int emfile[MEM_HOOKS];
    for (int i = 0; i < MEM_HOOKS; i++)
        emfile[i] = -EMFILE;
    mem_listener ml;
    ctrio_listener *l = mem_listener_new(&ml, emfile, MEM_HOOKS);
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 0.95);
    int rc = ctrio_serve_listeners(never_called, NULL, &l, 1);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(ml.hook_calls, 10);
    for (size_t i = 0; i < ml.hook_calls; i++)
        assert_true(fabs(ml.hook_times[i] - 0.1 * (double)i) < 1e-9);
    assert_int_equal(count_kept("accept: Too many open files; retrying in 100 ms",
                                CTRIO_LOG_WARNING), 1);
    mem_listener_finish(&ml);

    const int kinds[] = {-ENFILE, -ENOMEM, -ENOBUFS};
    size_t handled = 0;
    l = mem_listener_new(&ml, kinds, 3);
    server_args a = {echo_handler, &handled, &l, 1, 0, NULL, NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    double t0 = ctrio_current_time();
    assert_int_equal(ctrio_start(&n, serve_listeners_task, &a, NULL), 0);
    mem_client mc = {&ml, 7};
    assert_int_equal(mem_echo_client(&mc), 0);
    assert_true(fabs(ctrio_current_time() - t0 - 0.3) < 1e-9);
    assert_int_equal(handled, strlen("hello 7"));
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    mem_listener_finish(&ml);
    return 0;
}

static void test_serve_custom_listener_accept_capacity_error(void **state)
{
    (void)state;
    assert_int_equal(run_mock_logged(&kept, 0, mem_capacity_body, NULL), 0);
}

/* Trio: ::test_serve_listeners_connection_nursery, adapted (no
 * handler_nursery argument): ten connections to a custom listener make ten
 * handlers, all running at once in the server's nursery. */
typedef struct sleepy {
    int active, max_active;
} sleepy;

static int sleepy_handler(ctrio_stream *s, void *arg)
{
    (void)s;
    sleepy *sl = arg;
    if (++sl->active > sl->max_active)
        sl->max_active = sl->active;
    int rc = ctrio_sleep(1);
    sl->active--;
    return rc;
}

static int mem_nursery_body(void *arg)
{
    (void)arg;
    mem_listener ml;
    ctrio_listener *l = mem_listener_new(&ml, NULL, 0);
    sleepy sl = {0, 0};
    server_args a = {sleepy_handler, &sl, &l, 1, 0, NULL, NULL};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start(&n, serve_listeners_task, &a, NULL), 0);
    ctrio_stream *c[10];
    for (int i = 0; i < 10; i++)
        c[i] = mem_connect(&ml);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(sl.active, 10);
    assert_true(ctrio_current_time() == 0.0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(sl.max_active, 10);
    assert_int_equal(sl.active, 0);
    for (int i = 0; i < 10; i++) {
        expect_eof(c[i]); /* the server closed each handler's stream */
        ctrio_stream_close(c[i]);
    }
    mem_listener_finish(&ml);
    return 0;
}

static void test_serve_custom_listener_connection_nursery(void **state)
{
    (void)state;
    assert_int_equal(run_mock(mem_nursery_body, NULL), 0);
}

/* New: a task blocked in a MemoryListener's accept (in the channel that
 * close releases) when another task closes the listener gets -EBADF; a
 * connection queued and never accepted is kept by close, not lost (ASan:
 * nothing used after it was freed, nothing leaked). */
typedef struct mem_waiter {
    ctrio_listener *l;
    int rc;
} mem_waiter;

static int mem_blocked_accept(void *p)
{
    mem_waiter *w = p;
    ctrio_stream *s = (ctrio_stream *)&s;
    w->rc = ctrio_listener_accept(w->l, &s);
    assert_null(s);
    return 0;
}

static int mem_close_wakes_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    for (int queued = 0; queued < 2; queued++) {
        mem_listener ml;
        mem_waiter w = {mem_listener_new(&ml, NULL, 0), 1};
        ctrio_stream *c = queued ? mem_connect(&ml) : NULL;
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        if (!queued)
            assert_int_equal(ctrio_start_soon(&n, mem_blocked_accept, &w), 0);
        assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
        assert_int_equal(ctrio_listener_close(w.l), 0);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        if (!queued)
            assert_int_equal(w.rc, -EBADF);
        assert_int_equal(ml.nleft, (size_t)queued);
        mem_listener_finish(&ml);
        if (c) {
            expect_eof(c);
            ctrio_stream_close(c);
        }
    }
    assert_true(ctrio_current_time() == 0.0);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_custom_listener_close_wakes_accept(void **state)
{
    (void)state;
    assert_int_equal(run_mock(mem_close_wakes_body, NULL), 0);
}

/* ---- many clients ----------------------------------------------------------- */

#define NCLIENTS 200
#define PAYLOAD 4096

typedef struct many {
    int port;
    int done;
    size_t verified;
} many;

typedef struct many_client {
    many *m;
    int id;
} many_client;

static int many_client_task(void *p)
{
    many_client *mc = p;
    ctrio_stream *s;
    int rc = ctrio_open_tcp_stream("127.0.0.1", mc->m->port, &s);
    assert_int_equal(rc, 0);
    unsigned char out[PAYLOAD], in[PAYLOAD];
    for (size_t i = 0; i < PAYLOAD; i++)
        out[i] = (unsigned char)((size_t)mc->id * 131u + i * 7u + (i >> 8));
    assert_int_equal(ctrio_stream_send_all(s, out, PAYLOAD), 0);
    assert_int_equal(ctrio_stream_send_eof(s), 0);
    size_t got = 0;
    while (got < PAYLOAD) {
        ssize_t r = ctrio_stream_receive_some(s, in + got, PAYLOAD - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    expect_eof(s); /* nothing more, then the server's close */
    assert_memory_equal(in, out, PAYLOAD);
    mc->m->verified += got;
    mc->m->done++;
    ctrio_stream_close(s);
    return 0;
}

/* New: 200 clients connect at once; each sends 4 KiB and half-closes; the
 * server echoes and closes; every byte comes back in order. Bounded by a
 * 20 s deadline. */
static int many_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 20);
    size_t total = 0;
    server_args a = {echo_handler, &total, NULL, 0, 0, "127.0.0.1", NULL};
    ctrio_nursery server;
    ctrio_nursery_open(&server);
    void *v;
    assert_int_equal(ctrio_start(&server, serve_tcp_task, &a, &v), 0);
    many m = {listener_port(((const ctrio_listener_set *)v)->listeners[0]), 0, 0};
    static many_client mc[NCLIENTS];
    ctrio_nursery clients;
    ctrio_nursery_open(&clients);
    for (int i = 0; i < NCLIENTS; i++) {
        mc[i].m = &m;
        mc[i].id = i;
        assert_int_equal(ctrio_start_soon(&clients, many_client_task, &mc[i]), 0);
    }
    assert_int_equal(ctrio_nursery_close(&clients, 0), 0);
    assert_int_equal(m.done, NCLIENTS);
    assert_int_equal(m.verified, (size_t)NCLIENTS * PAYLOAD);
    assert_int_equal(total, (size_t)NCLIENTS * PAYLOAD);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&server));
    assert_int_equal(ctrio_nursery_close(&server, 0), 0);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_serve_many_concurrent_clients(void **state)
{
    (void)state;
    assert_int_equal(run_real(many_body, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_serve_listeners_basic),
        TEST(test_serve_listeners_forceful_close),
        TEST(test_serve_listeners_cancel_closes_handlers_streams),
        TEST(test_serve_listeners_accept_unrecognized_error),
        TEST(test_serve_listeners_accept_per_connection_errors),
        TEST(test_serve_listeners_accept_capacity_error),
        TEST(test_serve_listeners_accept_capacity_error_kinds),
        TEST(test_serve_accept_retry_note_rate_limited),
        TEST(test_serve_accept_retry_note_not_by_default),
        TEST(test_serve_listeners_connection_nursery),
        TEST(test_serve_listeners_handler_failure_stops_server),
        TEST(test_serve_invalid_arguments),
        TEST(test_serve_listeners_array_after_serving),
        TEST(test_serve_handler_closes_its_stream),
        TEST(test_serve_tcp),
        TEST(test_serve_tcp_any_address_one_port),
        TEST(test_serve_tcp_open_error),
        TEST(test_serve_unix),
        TEST(test_serve_unix_abstract),
        TEST(test_serve_many_concurrent_clients),
        TEST(test_serve_custom_listeners_basic),
        TEST(test_serve_custom_listener_echo),
        TEST(test_serve_custom_listener_accept_unrecognized_error),
        TEST(test_serve_custom_listener_accept_capacity_error),
        TEST(test_serve_custom_listener_connection_nursery),
        TEST(test_custom_listener_close_wakes_accept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
