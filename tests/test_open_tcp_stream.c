/*
 * test_open_tcp_stream.c — ctrio_open_tcp_stream (trio.open_tcp_stream):
 * happy eyeballs over a fake network, plus real loopback smoke tests.
 * Port of Trio's tests/test_highlevel_open_tcp_stream.py.
 *
 * The fake network (ctrio_testing.h section 8c, src/testing/fake_net.c) plays
 * the part of that file's Scenario: a resolver that answers "test.example.com"
 * with a scripted address list, and a socket factory whose sockets connect
 * to each address after a scripted delay with a scripted result. Every
 * Scenario test runs on the mock clock with autojump, so the connect start
 * times and the end time are asserted exactly (==), computed in the same
 * order as Trio's own expected values.
 *
 * Adaptations:
 *  - Trio's test_all_fail expects one OSError caused by a group of four;
 *    ctrio returns one code: the first attempt's error (src/net/connect.c).
 *  - Trio's test_one_host_failed_after_connect raises a non-OSError from
 *    setsockopt to show it propagates; C has no such thing, and SocketStream
 *    ignores setsockopt errors (as Trio ignores OSError there), so the C test
 *    checks that a failing setsockopt does not lose the connection.
 *  - test_format_host_port: N/A (ctrio's error is a code, no message);
 *    address formatting is test_sockaddr.c's.
 *
 * "localhost" is looked up in a worker thread: this program is in
 * CTRIO_THREAD_TESTS (run under TSan too).
 */
#include "support.h"

#include <ctrio_testing.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define HOST "test.example.com"

/* Exact comparison of clock values, with a readable failure. */
#define ASSERT_TIME(t, expected)                                                                   \
    do {                                                                                           \
        double t_ = (t), e_ = (expected);                                                          \
        if (!(t_ == e_))                                                                           \
            fail_msg("time %.17g, expected exactly %.17g", t_, e_);                                \
    } while (0)

/* ---- the Scenario ------------------------------------------------------------ */

/* One address of the scenario: Trio's (ip, delay, result); result 0 is
 * "success", a -errno is "error". */
typedef struct scen_ip {
    const char *ip;
    double delay;
    int result;
} scen_ip;

typedef struct scenario {
    /* in */
    int port;
    const scen_ip *ips;
    size_t n;
    bool no_ipv4, no_ipv6;
    ctrio_tcp_stream_options opts;
    int sockopt_error;
    /* out */
    int rc;
    ctrio_fake_net *net;
    char winner[INET6_ADDRSTRLEN]; /* the stream's peer IP; "" if none */
    int winner_port;
    double end_time;
    int nodelay;      /* TCP_NODELAY as read back on the winner; -1 if unread */
    int wait_send_rc; /* the stream's wait_send_all_might_not_block */
} scenario;

static void ip_of(const struct sockaddr *sa, char *buf, size_t size, int *port)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)size);
        *port = ntohs(in->sin_port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)size);
        *port = ntohs(in6->sin6_port);
    }
}

static bool scripted(const scenario *sc, const char *ip)
{
    for (size_t i = 0; i < sc->n; i++)
        if (strcmp(sc->ips[i].ip, ip) == 0)
            return true;
    return false;
}

/* Trio's Scenario.check: every socket made was connected (unless a local
 * address may have failed to bind first), to a scripted IP and the right
 * port; every socket but the winner is closed. */
static void scenario_check(const scenario *sc)
{
    size_t count = ctrio_fake_net_attempt_count(sc->net);
    bool winner_seen = false;
    for (size_t i = 0; i < count; i++) {
        const ctrio_fake_attempt *a = ctrio_fake_net_attempt(sc->net, i);
        assert_non_null(a);
        if (!sc->opts.local_address)
            assert_true(a->peer_len > 0);
        if (a->peer_len == 0) {
            assert_true(a->closed);
            continue;
        }
        char ip[INET6_ADDRSTRLEN];
        int port;
        ip_of((const struct sockaddr *)&a->peer, ip, sizeof ip, &port);
        assert_true(scripted(sc, ip));
        assert_int_equal(port, sc->port);
        if (sc->winner[0] && strcmp(ip, sc->winner) == 0) {
            assert_false(a->closed);
            assert_int_equal(a->connect_result, 0);
            winner_seen = true;
        } else {
            assert_true(a->closed);
            assert_int_not_equal(a->connect_result, CTRIO_FAKE_PENDING);
        }
    }
    assert_true(winner_seen == (sc->winner[0] != 0));
}

/* Trio's run_scenario, in a task. The network stays in sc->net for the
 * test's assertions: free it with scenario_free. */
static void run_scenario(scenario *sc)
{
    assert_int_equal(ctrio_fake_net_new(&sc->net), 0);
    const char *addrs[16];
    assert_true(sc->n <= 16);
    for (size_t i = 0; i < sc->n; i++) {
        addrs[i] = sc->ips[i].ip;
        assert_int_equal(
            ctrio_fake_net_set_connect(sc->net, sc->ips[i].ip, sc->ips[i].delay, sc->ips[i].result),
            0);
    }
    assert_int_equal(ctrio_fake_net_add_host(sc->net, HOST, addrs, sc->n), 0);
    assert_int_equal(ctrio_fake_net_set_family(sc->net, AF_INET, !sc->no_ipv4), 0);
    assert_int_equal(ctrio_fake_net_set_family(sc->net, AF_INET6, !sc->no_ipv6), 0);
    ctrio_fake_net_fail_setsockopt(sc->net, sc->sockopt_error);
    assert_int_equal(ctrio_fake_net_install(sc->net), 0);

    ctrio_stream *stream = NULL;
    sc->rc = ctrio_open_tcp_stream_with(HOST, sc->port, &sc->opts, &stream);
    sc->end_time = ctrio_current_time();
    sc->winner[0] = 0;
    sc->nodelay = -1;
    sc->wait_send_rc = 1;

    /* Trio's ::test_no_hosts resolver asserts it: looked up once, with family
     * 0, SOCK_STREAM, protocol 0, flags 0 */
    assert_int_equal(ctrio_fake_net_lookup_count(sc->net), 1);
    const ctrio_fake_lookup *l = ctrio_fake_net_last_lookup(sc->net);
    assert_string_equal(l->host, HOST);
    char service[8];
    snprintf(service, sizeof service, "%d", sc->port);
    assert_string_equal(l->service, service);
    assert_int_equal(l->family, AF_UNSPEC);
    assert_int_equal(l->socktype, SOCK_STREAM);
    assert_int_equal(l->protocol, 0);
    assert_int_equal(l->flags, 0);

    if (sc->rc == 0) {
        assert_non_null(stream);
        ctrio_socket *sock = ctrio_socket_stream_socket(stream);
        assert_non_null(sock);
        assert_int_equal(ctrio_socket_fileno(sock), -1); /* fake: no descriptor */
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        assert_int_equal(ctrio_socket_getpeername(sock, (struct sockaddr *)&peer, &len), 0);
        ip_of((struct sockaddr *)&peer, sc->winner, sizeof sc->winner, &sc->winner_port);
        int v = -1;
        socklen_t vlen = sizeof v;
        if (ctrio_socket_getsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &v, &vlen) == 0)
            sc->nodelay = v;
        scenario_check(sc);
        sc->wait_send_rc = ctrio_stream_wait_send_all_might_not_block(stream);
        ctrio_cancel_scope shield; /* close even if the caller is cancelled */
        ctrio_cancel_scope_open(&shield);
        ctrio_cancel_scope_set_shield(&shield, true);
        assert_int_equal(ctrio_cancel_scope_close(&shield, ctrio_stream_close(stream)), 0);
    } else {
        assert_null(stream);
        scenario_check(sc);
    }
    /* every socket is closed now, the winner's too */
    for (size_t i = 0; i < ctrio_fake_net_attempt_count(sc->net); i++)
        assert_true(ctrio_fake_net_attempt(sc->net, i)->closed);
    ctrio_fake_net_uninstall(sc->net);
}

static void scenario_free(scenario *sc)
{
    ctrio_fake_net_free(sc->net);
    sc->net = NULL;
}

/* Trio's scenario.connect_times == {ip: t, ...}: exactly these IPs were
 * connected to, each starting at exactly that time. */
static void expect_connect_times(const scenario *sc, const char *const *ips, const double *times,
                                 size_t n)
{
    size_t connected = 0;
    for (size_t i = 0; i < ctrio_fake_net_attempt_count(sc->net); i++)
        if (ctrio_fake_net_attempt(sc->net, i)->peer_len)
            connected++;
    assert_int_equal(connected, n);
    for (size_t i = 0; i < n; i++) {
        const ctrio_fake_attempt *a = ctrio_fake_net_find_attempt(sc->net, ips[i]);
        if (!a)
            fail_msg("%s was never connected to", ips[i]);
        ASSERT_TIME(a->connect_time, times[i]);
    }
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the Scenario tests -------------------------------------------------------- */

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_one_host_quick_success */
static int one_host_quick_success(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.2.3.4", 0.123, 0}};
    scenario sc = {.port = 80, .ips = ips, .n = N(ips)};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "1.2.3.4");
    assert_int_equal(sc.winner_port, 80);
    ASSERT_TIME(sc.end_time, 0.123);
    scenario_free(&sc);
    return 0;
}
static void test_one_host_quick_success(void **state)
{
    (void)state;
    assert_int_equal(run_mock(one_host_quick_success, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_one_host_slow_success */
static int one_host_slow_success(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.2.3.4", 100, 0}};
    scenario sc = {.port = 81, .ips = ips, .n = N(ips)};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "1.2.3.4");
    assert_int_equal(sc.winner_port, 81);
    ASSERT_TIME(sc.end_time, 100);
    scenario_free(&sc);
    return 0;
}
static void test_one_host_slow_success(void **state)
{
    (void)state;
    assert_int_equal(run_mock(one_host_slow_success, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_one_host_quick_fail */
static int one_host_quick_fail(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.2.3.4", 0.123, -ECONNREFUSED}};
    scenario sc = {.port = 82, .ips = ips, .n = N(ips)};
    run_scenario(&sc);
    assert_int_equal(sc.rc, -ECONNREFUSED);
    ASSERT_TIME(sc.end_time, 0.123);
    scenario_free(&sc);
    return 0;
}
static void test_one_host_quick_fail(void **state)
{
    (void)state;
    assert_int_equal(run_mock(one_host_quick_fail, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_one_host_slow_fail */
static int one_host_slow_fail(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.2.3.4", 100, -ETIMEDOUT}};
    scenario sc = {.port = 83, .ips = ips, .n = N(ips)};
    run_scenario(&sc);
    assert_int_equal(sc.rc, -ETIMEDOUT);
    ASSERT_TIME(sc.end_time, 100);
    scenario_free(&sc);
    return 0;
}
static void test_one_host_slow_fail(void **state)
{
    (void)state;
    assert_int_equal(run_mock(one_host_slow_fail, NULL), 0);
}

/* Trio:
 * tests/test_highlevel_open_tcp_stream.py::test_one_host_failed_after_connect,
 * adapted: Trio's fake setsockopt raises a non-OSError, which must propagate;
 * C has none, and SocketStream ignores setsockopt errors (Trio ignores OSError
 * there). So: setsockopt fails on the connected socket, the stream is still
 * made (the options were tried, not set), nothing leaks. */
static int one_host_failed_after_connect(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.2.3.4", 1, 0}};
    scenario sc = {.port = 83, .ips = ips, .n = N(ips), .sockopt_error = -EIO};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "1.2.3.4");
    ASSERT_TIME(sc.end_time, 1);
    const ctrio_fake_attempt *a = ctrio_fake_net_find_attempt(sc.net, "1.2.3.4");
    assert_non_null(a);
    assert_true(a->setsockopt_calls >= 1); /* SocketStream tried TCP_NODELAY */
    assert_int_equal(sc.nodelay, 0);       /* ... and it did not stick */
    scenario_free(&sc);
    return 0;
}
static void test_one_host_failed_after_connect(void **state)
{
    (void)state;
    assert_int_equal(run_mock(one_host_failed_after_connect, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_basic_fallthrough:
 * with the default 0.250 s delay, the third attempt wins. Also: the winner
 * got TCP_NODELAY from SocketStream (Trio #72). */
static int basic_fallthrough(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.1.1.1", 1, 0}, {"2.2.2.2", 1, 0}, {"3.3.3.3", 0.2, 0}};
    scenario sc = {.port = 80, .ips = ips, .n = N(ips)};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "3.3.3.3");
    ASSERT_TIME(sc.end_time, 0.250 + 0.250 + 0.2);
    static const char *const want[] = {"1.1.1.1", "2.2.2.2", "3.3.3.3"};
    static const double at[] = {0, 0.250, 0.500};
    expect_connect_times(&sc, want, at, N(want));
    assert_int_equal(sc.nodelay, 1);
    /* the losers' connects were cancelled */
    assert_int_equal(ctrio_fake_net_find_attempt(sc.net, "1.1.1.1")->connect_result, -ECANCELED);
    assert_int_equal(ctrio_fake_net_find_attempt(sc.net, "2.2.2.2")->connect_result, -ECANCELED);
    scenario_free(&sc);
    return 0;
}
static void test_basic_fallthrough(void **state)
{
    (void)state;
    assert_int_equal(run_mock(basic_fallthrough, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_early_success:
 * an attempt not yet started never starts. */
static int early_success(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.1.1.1", 1, 0}, {"2.2.2.2", 0.1, 0}, {"3.3.3.3", 0.2, 0}};
    scenario sc = {.port = 80, .ips = ips, .n = N(ips)};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "2.2.2.2");
    ASSERT_TIME(sc.end_time, 0.250 + 0.1);
    static const char *const want[] = {"1.1.1.1", "2.2.2.2"}; /* 3.3.3.3 never started */
    static const double at[] = {0, 0.250};
    expect_connect_times(&sc, want, at, N(want));
    assert_null(ctrio_fake_net_find_attempt(sc.net, "3.3.3.3"));
    assert_int_equal(ctrio_fake_net_attempt_count(sc.net), 2);
    scenario_free(&sc);
    return 0;
}
static void test_early_success(void **state)
{
    (void)state;
    assert_int_equal(run_mock(early_success, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_custom_delay:
 * with a 0.450 s delay the first attempt wins. */
static int custom_delay(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.1.1.1", 1, 0}, {"2.2.2.2", 1, 0}, {"3.3.3.3", 0.2, 0}};
    scenario sc = {.port = 80, .ips = ips, .n = N(ips), .opts = {.happy_eyeballs_delay = 0.450}};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "1.1.1.1");
    ASSERT_TIME(sc.end_time, 1);
    static const char *const want[] = {"1.1.1.1", "2.2.2.2", "3.3.3.3"};
    static const double at[] = {0, 0.450, 0.900};
    expect_connect_times(&sc, want, at, N(want));
    scenario_free(&sc);
    return 0;
}
static void test_custom_delay(void **state)
{
    (void)state;
    assert_int_equal(run_mock(custom_delay, NULL), 0);
}

/* New (Trio HEAD's test_none_default covers the other end of
 * ::test_custom_delay): an infinite delay makes the attempts strictly
 * sequential. */
static int infinite_delay(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.1.1.1", 10, -ECONNREFUSED}, {"2.2.2.2", 1, 0}};
    scenario sc = {.port = 80, .ips = ips, .n = N(ips), .opts = {.happy_eyeballs_delay = INFINITY}};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "2.2.2.2");
    ASSERT_TIME(sc.end_time, 10 + 1);
    static const char *const want[] = {"1.1.1.1", "2.2.2.2"};
    static const double at[] = {0, 10};
    expect_connect_times(&sc, want, at, N(want));
    scenario_free(&sc);
    return 0;
}
static void test_infinite_delay(void **state)
{
    (void)state;
    assert_int_equal(run_mock(infinite_delay, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_custom_errors_expedite:
 * a failure starts the next attempt at once. */
static int custom_errors_expedite(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.1.1.1", 0.1, -ECONNREFUSED},
                                  {"2.2.2.2", 0.2, -ECONNREFUSED},
                                  {"3.3.3.3", 10, 0},
                                  {"4.4.4.4", 0.25, 0}};
    scenario sc = {.port = 80, .ips = ips, .n = N(ips)};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "4.4.4.4");
    ASSERT_TIME(sc.end_time, 0.1 + 0.2 + 0.25 + 0.25);
    static const char *const want[] = {"1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"};
    static const double at[] = {0, 0.1, 0.1 + 0.2, 0.1 + 0.2 + 0.25};
    expect_connect_times(&sc, want, at, N(want));
    scenario_free(&sc);
    return 0;
}
static void test_custom_errors_expedite(void **state)
{
    (void)state;
    assert_int_equal(run_mock(custom_errors_expedite, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_all_fail,
 * adapted: one code comes back, the first attempt's error, once the last
 * attempt has failed. */
static int all_fail(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.1.1.1", 0.1, -ECONNREFUSED},
                                  {"2.2.2.2", 0.2, -EHOSTUNREACH},
                                  {"3.3.3.3", 10, -ETIMEDOUT},
                                  {"4.4.4.4", 0.250, -ENETUNREACH}};
    scenario sc = {.port = 80, .ips = ips, .n = N(ips)};
    run_scenario(&sc);
    assert_int_equal(sc.rc, -ECONNREFUSED);
    ASSERT_TIME(sc.end_time, 0.1 + 0.2 + 10);
    static const char *const want[] = {"1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"};
    static const double at[] = {0, 0.1, 0.1 + 0.2, 0.1 + 0.2 + 0.25};
    expect_connect_times(&sc, want, at, N(want));
    /* every attempt ran to its own error (the group of four in Trio) */
    for (size_t i = 0; i < N(ips); i++)
        assert_int_equal(ctrio_fake_net_find_attempt(sc.net, ips[i].ip)->connect_result,
                         ips[i].result);
    scenario_free(&sc);
    return 0;
}
static void test_all_fail(void **state)
{
    (void)state;
    assert_int_equal(run_mock(all_fail, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_multi_success:
 * three attempts succeed at the same instant; one is returned, the others
 * are closed. */
static int multi_success(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.1.1.1", 0.5, -ECONNREFUSED},
                                  {"2.2.2.2", 10, 0},
                                  {"3.3.3.3", 10 - 1, 0},
                                  {"4.4.4.4", 10 - 2, 0},
                                  {"5.5.5.5", 0.5, -ECONNREFUSED}};
    scenario sc = {.port = 80, .ips = ips, .n = N(ips), .opts = {.happy_eyeballs_delay = 1}};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_int_not_equal(ctrio_fake_net_find_attempt(sc.net, "1.1.1.1")->connect_result, 0);
    assert_int_not_equal(ctrio_fake_net_find_attempt(sc.net, "5.5.5.5")->connect_result, 0);
    assert_true(ctrio_fake_net_find_attempt(sc.net, "2.2.2.2")->connect_result == 0 ||
                ctrio_fake_net_find_attempt(sc.net, "3.3.3.3")->connect_result == 0 ||
                ctrio_fake_net_find_attempt(sc.net, "4.4.4.4")->connect_result == 0);
    assert_true(strcmp(sc.winner, "2.2.2.2") == 0 || strcmp(sc.winner, "3.3.3.3") == 0 ||
                strcmp(sc.winner, "4.4.4.4") == 0);
    ASSERT_TIME(sc.end_time, 0.5 + 10);
    static const char *const want[] = {"1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4", "5.5.5.5"};
    static const double at[] = {0, 0.5, 1.5, 2.5, 3.5};
    expect_connect_times(&sc, want, at, N(want));
    scenario_free(&sc);
    return 0;
}
static void test_multi_success(void **state)
{
    (void)state;
    assert_int_equal(run_mock(multi_success, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_does_reorder */
static int does_reorder(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.1.1.1", 10, -ECONNREFUSED},
                                  {"2.2.2.2", 1, 0}, /* would win if tried first... */
                                  {"::3", 0.5, 0}};  /* ...but this is tried first (5.4) */
    scenario sc = {.port = 80, .ips = ips, .n = N(ips), .opts = {.happy_eyeballs_delay = 1}};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "::3");
    ASSERT_TIME(sc.end_time, 1 + 0.5);
    static const char *const want[] = {"1.1.1.1", "::3"};
    static const double at[] = {0, 1};
    expect_connect_times(&sc, want, at, N(want));
    scenario_free(&sc);
    return 0;
}
static void test_does_reorder(void **state)
{
    (void)state;
    assert_int_equal(run_mock(does_reorder, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_handles_no_ipv4:
 * a socket that cannot be made fails its attempt at once. */
static int handles_no_ipv4(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {
        {"::1", 10, 0}, {"2.2.2.2", 0, 0}, {"::3", 0.1, 0}, {"4.4.4.4", 0, 0}};
    scenario sc = {
        .port = 80, .ips = ips, .n = N(ips), .no_ipv4 = true, .opts = {.happy_eyeballs_delay = 1}};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "::3");
    ASSERT_TIME(sc.end_time, 1 + 0.1);
    static const char *const want[] = {"::1", "::3"};
    static const double at[] = {0, 1.0};
    expect_connect_times(&sc, want, at, N(want));
    assert_int_equal(ctrio_fake_net_attempt_count(sc.net), 2); /* no IPv4 socket was made */
    scenario_free(&sc);
    return 0;
}
static void test_handles_no_ipv4(void **state)
{
    (void)state;
    assert_int_equal(run_mock(handles_no_ipv4, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_handles_no_ipv6 */
static int handles_no_ipv6(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {
        {"::1", 0, 0}, {"2.2.2.2", 10, 0}, {"::3", 0, 0}, {"4.4.4.4", 0.1, 0}};
    scenario sc = {
        .port = 80, .ips = ips, .n = N(ips), .no_ipv6 = true, .opts = {.happy_eyeballs_delay = 1}};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "4.4.4.4");
    ASSERT_TIME(sc.end_time, 1 + 0.1);
    static const char *const want[] = {"2.2.2.2", "4.4.4.4"};
    static const double at[] = {0, 1.0};
    expect_connect_times(&sc, want, at, N(want));
    assert_int_equal(ctrio_fake_net_attempt_count(sc.net), 2);
    scenario_free(&sc);
    return 0;
}
static void test_handles_no_ipv6(void **state)
{
    (void)state;
    assert_int_equal(run_mock(handles_no_ipv6, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_no_hosts: the
 * resolver answers an empty list; that is an error, and no socket is made. */
static int no_hosts(void *arg)
{
    (void)arg;
    scenario sc = {.port = 80, .ips = NULL, .n = 0};
    run_scenario(&sc);
    assert_int_equal(sc.rc, CTRIO_EAI_NONAME);
    assert_int_equal(ctrio_fake_net_attempt_count(sc.net), 0);
    ASSERT_TIME(sc.end_time, 0);
    scenario_free(&sc);
    return 0;
}
static void test_no_hosts(void **state)
{
    (void)state;
    assert_int_equal(run_mock(no_hosts, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_cancel: a cancel
 * from outside comes out as -ECANCELED and every attempt's socket is closed. */
static int cancel(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {
        {"1.1.1.1", 10, 0}, {"2.2.2.2", 10, 0}, {"3.3.3.3", 10, 0}, {"4.4.4.4", 10, 0}};
    scenario sc = {.port = 80, .ips = ips, .n = N(ips)};
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 5);
    run_scenario(&sc);
    int rc = sc.rc;
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    ASSERT_TIME(ctrio_current_time(), 5);
    ASSERT_TIME(sc.end_time, 5);
    static const char *const want[] = {"1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"};
    static const double at[] = {0, 0.25, 0.5, 0.75};
    expect_connect_times(&sc, want, at, N(want));
    for (size_t i = 0; i < N(ips); i++) {
        const ctrio_fake_attempt *a = ctrio_fake_net_find_attempt(sc.net, ips[i].ip);
        assert_true(a->closed);
        assert_int_equal(a->connect_result, -ECANCELED);
    }
    scenario_free(&sc);
    return 0;
}
static void test_cancel(void **state)
{
    (void)state;
    assert_int_equal(run_mock(cancel, NULL), 0);
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_close_all,
 * adapted: ctrio has no close_all helper; what it guarantees is that every
 * socket of the race is closed however the race ends. Here: several
 * attempts in flight when one wins (losers closed, winner open), then a
 * race where every attempt fails (all closed, including the ones that failed
 * at once and the one that was still connecting when an earlier one failed). */
static int close_all(void *arg)
{
    (void)arg;
    static const scen_ip win[] = {
        {"1.1.1.1", 5, 0}, {"2.2.2.2", 5, 0}, {"3.3.3.3", 5, 0}, {"4.4.4.4", 0.1, 0}};
    scenario sc = {.port = 80, .ips = win, .n = N(win)};
    run_scenario(&sc); /* scenario_check: the three losers closed, the winner not */
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "4.4.4.4");
    assert_int_equal(ctrio_fake_net_attempt_count(sc.net), 4);
    scenario_free(&sc);

    static const scen_ip lose[] = {
        {"1.1.1.1", 0, -ECONNREFUSED}, {"::2", 1, -ECONNRESET}, {"3.3.3.3", 0.5, -EHOSTUNREACH}};
    scenario sc2 = {.port = 81, .ips = lose, .n = N(lose)};
    run_scenario(&sc2);
    assert_int_equal(sc2.rc, -ECONNREFUSED);
    assert_int_equal(ctrio_fake_net_attempt_count(sc2.net), 3);
    for (size_t i = 0; i < 3; i++)
        assert_true(ctrio_fake_net_attempt(sc2.net, i)->closed);
    scenario_free(&sc2);
    return 0;
}
static void test_close_all(void **state)
{
    (void)state;
    assert_int_equal(run_mock(close_all, NULL), 0);
}

/* ---- RFC 6555 section 5.4, through the order of the attempts -------------------- */

typedef struct order_case {
    const char *const *in;
    size_t n;
    const char *const *want;
} order_case;

/* Every attempt fails at once, so each address is tried, in order. */
static int attempt_order(void *arg)
{
    const order_case *c = arg;
    scen_ip ips[8];
    for (size_t i = 0; i < c->n; i++)
        ips[i] = (scen_ip){c->in[i], 0, -ECONNREFUSED};
    scenario sc = {.port = 80, .ips = ips, .n = c->n};
    run_scenario(&sc);
    assert_int_equal(sc.rc, -ECONNREFUSED);
    ASSERT_TIME(sc.end_time, 0);
    assert_int_equal(ctrio_fake_net_attempt_count(sc.net), c->n);
    for (size_t i = 0; i < c->n; i++) {
        const ctrio_fake_attempt *a = ctrio_fake_net_attempt(sc.net, i);
        char ip[INET6_ADDRSTRLEN];
        int port;
        ip_of((const struct sockaddr *)&a->peer, ip, sizeof ip, &port);
        assert_string_equal(ip, c->want[i]);
    }
    scenario_free(&sc);
    return 0;
}

/* Trio:
 * tests/test_highlevel_open_tcp_stream.py::test_reorder_for_rfc_6555_section_5_4,
 * through the observable order of the attempts. */
static void test_reorder_for_rfc_6555_section_5_4(void **state)
{
    (void)state;
    /* no effect on homogeneous lists, either family */
    static const char *const v4[] = {"10.0.0.0", "10.0.0.1", "10.0.0.2"};
    static const char *const v6[] = {"::", "::1", "::2"};
    /* single-item lists are fine */
    static const char *const one4[] = {"10.0.0.0"};
    static const char *const one6[] = {"::"};
    /* different families in positions 0 and 1: left alone */
    static const char *const mixed[] = {"10.0.0.0", "::", "10.0.0.1", "::1"};
    /* otherwise the first of the other family moves to second place */
    static const char *const late[] = {"10.0.0.0", "10.0.0.1", "10.0.0.2", "::", "::1"};
    static const char *const late_want[] = {"10.0.0.0", "::", "10.0.0.1", "10.0.0.2", "::1"};
    static const char *const late6[] = {"::", "::1", "10.0.0.0", "::2"};
    static const char *const late6_want[] = {"::", "10.0.0.0", "::1", "::2"};
    const order_case cases[] = {
        {v4, N(v4), v4},
        {v6, N(v6), v6},
        {one4, 1, one4},
        {one6, 1, one6},
        {mixed, N(mixed), mixed},
        {late, N(late), late_want},
        {late6, N(late6), late6_want},
    };
    for (size_t i = 0; i < N(cases); i++)
        assert_int_equal(run_mock(attempt_order, (void *)&cases[i]), 0);
}

/* ---- local_address --------------------------------------------------------------- */

/* New (the fake side of Trio's test_local_address_real): a local
 * address of one family fails the attempts of the other family at bind
 * (that attempt fails at once, without connecting) and is bound on the
 * others, with IP_BIND_ADDRESS_NO_PORT set first. */
static int local_address_fake(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"2001:db8::1", 1, 0}, {"192.0.2.1", 0.5, 0}};
    struct sockaddr_storage local;
    socklen_t llen;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, "0.0.0.0", 0, &local, &llen), 0);
    scenario sc = {.port = 443,
                   .ips = ips,
                   .n = N(ips),
                   .opts = {.local_address = (struct sockaddr *)&local, .local_address_len = llen}};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_string_equal(sc.winner, "192.0.2.1");
    ASSERT_TIME(sc.end_time, 0.5); /* the IPv6 attempt failed at once */
    assert_int_equal(ctrio_fake_net_attempt_count(sc.net), 2);
    const ctrio_fake_attempt *v6 = ctrio_fake_net_attempt(sc.net, 0);
    const ctrio_fake_attempt *v4 = ctrio_fake_net_attempt(sc.net, 1);
    assert_int_equal(v6->family, AF_INET6);
    assert_int_equal(v6->local_len, 0);
    assert_int_equal(v6->peer_len, 0); /* never connected */
    assert_true(v6->closed);
    assert_int_equal(v4->family, AF_INET);
    assert_int_equal(v4->local_len, sizeof(struct sockaddr_in));
    assert_memory_equal(&v4->local, &local, sizeof(struct sockaddr_in));
    ASSERT_TIME(v4->connect_time, 0);
    assert_true(v4->setsockopt_calls >= 1);
    scenario_free(&sc);

    /* only the other family: the bind error comes out */
    static const scen_ip only6[] = {{"2001:db8::1", 1, 0}};
    scenario sc2 = {
        .port = 443,
        .ips = only6,
        .n = 1,
        .opts = {.local_address = (struct sockaddr *)&local, .local_address_len = llen}};
    run_scenario(&sc2);
    assert_int_equal(sc2.rc, -EINVAL); /* as Linux: a sockaddr_in is too short for AF_INET6 */
    scenario_free(&sc2);
    return 0;
}
static void test_local_address_fake(void **state)
{
    (void)state;
    assert_int_equal(run_mock(local_address_fake, NULL), 0);
}

/* ---- the fake network itself -------------------------------------------------------- */

/* New: a fake socket whose connect is cancelled behaves like a real one
 * (SPEC §6 connect: the socket is closed underneath; every later call is
 * -EBADF; close still works). Checked on a real socket and on fake ones,
 * cancelled before the attempt and (fake) while it waits. */
static void expect_dead(ctrio_socket *s)
{
    int one = 1;
    socklen_t len = sizeof one;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    assert_int_equal(ctrio_socket_setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one),
                     -EBADF);
    assert_int_equal(ctrio_socket_getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, &len), -EBADF);
    assert_int_equal(ctrio_socket_getsockname(s, (struct sockaddr *)&ss, &sslen), -EBADF);
    sslen = sizeof ss;
    assert_int_equal(ctrio_socket_getpeername(s, (struct sockaddr *)&ss, &sslen), -EBADF);
    assert_int_equal(ctrio_socket_shutdown(s, SHUT_RDWR), -EBADF);
    assert_int_equal(ctrio_socket_wait_writable(s), -EBADF);
    assert_false(ctrio_socket_is_readable(s));
    assert_int_equal(ctrio_socket_fileno(s), -1);
    struct sockaddr_storage a;
    socklen_t alen;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, "127.0.0.1", 0, &a, &alen), 0);
    assert_int_equal(ctrio_socket_bind(s, (struct sockaddr *)&a, alen), -EBADF);
    assert_int_equal(ctrio_socket_connect(s, (struct sockaddr *)&a, alen), -EBADF);
    assert_int_equal(ctrio_socket_close(s), 0);
}

static int cancelled_connect_like_real(void *arg)
{
    (void)arg;
    struct sockaddr_storage to;
    socklen_t tolen;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, "127.0.0.1", 9, &to, &tolen), 0);

    /* a real socket, cancelled before the attempt */
    ctrio_socket *s;
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &s), 0);
    assert_true(ctrio_socket_fileno(s) >= 0);
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    int rc = ctrio_socket_connect(s, (struct sockaddr *)&to, tolen);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    expect_dead(s);

    /* a fake one, the same way */
    ctrio_fake_net *net;
    assert_int_equal(ctrio_fake_net_new(&net), 0);
    assert_int_equal(ctrio_fake_net_set_connect(net, "127.0.0.1", 10, 0), 0);
    assert_int_equal(ctrio_fake_net_install(net), 0);
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &s), 0);
    assert_int_equal(ctrio_socket_fileno(s), -1);
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    rc = ctrio_socket_connect(s, (struct sockaddr *)&to, tolen);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    const ctrio_fake_attempt *a = ctrio_fake_net_attempt(net, 0);
    assert_int_equal(a->connect_result, -ECANCELED);
    assert_false(a->closed);
    expect_dead(s);
    assert_true(a->closed);

    /* a fake one, cancelled while it waits: at the deadline exactly */
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &s), 0);
    ctrio_move_on_after(&cs, 1.5);
    rc = ctrio_socket_connect(s, (struct sockaddr *)&to, tolen);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    ASSERT_TIME(ctrio_current_time(), 1.5);
    a = ctrio_fake_net_attempt(net, 1);
    ASSERT_TIME(a->connect_time, 0);
    assert_int_equal(a->connect_result, -ECANCELED);
    expect_dead(s);
    assert_true(a->closed);
    ctrio_fake_net_free(net);
    return 0;
}
static void test_cancelled_connect_like_real(void **state)
{
    (void)state;
    assert_int_equal(run_mock(cancelled_connect_like_real, NULL), 0);
}

/* New: closing a fake socket from another task wakes its connect with
 * -EBADF at once, as for a real socket (SPEC §6: close wakes every task
 * blocked on the socket). */
typedef struct closer_ctx {
    ctrio_socket *s;
    int rc;
    double when;
} closer_ctx;

static int connector(void *arg)
{
    closer_ctx *c = arg;
    struct sockaddr_storage to;
    socklen_t tolen;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET6, "2001:db8::7", 80, &to, &tolen), 0);
    c->rc = ctrio_socket_connect(c->s, (struct sockaddr *)&to, tolen);
    c->when = ctrio_current_time();
    return 0; /* the handle was closed by the other task: not ours to close */
}

static int close_during_connect(void *arg)
{
    (void)arg;
    ctrio_fake_net *net;
    assert_int_equal(ctrio_fake_net_new(&net), 0);
    assert_int_equal(ctrio_fake_net_set_connect(net, "2001:db8::7", INFINITY, 0), 0);
    assert_int_equal(ctrio_fake_net_install(net), 0);
    closer_ctx c = {.rc = 1};
    assert_int_equal(ctrio_socket_open(AF_INET6, SOCK_STREAM, 0, &c.s), 0);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, connector, &c), 0);
    assert_int_equal(ctrio_sleep(2), 0);
    assert_int_equal(c.rc, 1); /* still connecting */
    assert_int_equal(ctrio_socket_close(c.s), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(c.rc, -EBADF);
    ASSERT_TIME(c.when, 2);
    const ctrio_fake_attempt *a = ctrio_fake_net_attempt(net, 0);
    assert_true(a->closed);
    assert_int_equal(a->connect_result, -EBADF);
    ctrio_fake_net_free(net);
    return 0;
}
static void test_close_during_connect(void **state)
{
    (void)state;
    assert_int_equal(run_mock(close_during_connect, NULL), 0);
}

/* New (the Scenario's resolver): the fake resolver answers in the scripted
 * order with the service's port, honours a family in the hints, is a
 * checkpoint, says EAI_NONAME for an unknown name, and is never asked about
 * numeric hosts. */
static int fake_resolver(void *arg)
{
    (void)arg;
    ctrio_fake_net *net;
    assert_int_equal(ctrio_fake_net_new(&net), 0);
    static const char *const addrs[] = {"192.0.2.7", "2001:db8::7", "192.0.2.8"};
    assert_int_equal(ctrio_fake_net_add_host(net, "www.example.org", addrs, 3), 0);
    static const char *const bad[] = {"not-an-ip"};
    assert_int_equal(ctrio_fake_net_add_host(net, "bad.example.org", bad, 1), -EINVAL);
    assert_int_equal(ctrio_fake_net_install(net), 0);
    assert_int_equal(ctrio_fake_net_install(net), -EPERM); /* already installed */

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_getaddrinfo("WWW.Example.ORG", "443", &hints, &res));
    assert_int_equal(rc, 0);
    size_t i = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next, i++) {
        char ip[INET6_ADDRSTRLEN];
        int port;
        assert_true(i < 3);
        ip_of(ai->ai_addr, ip, sizeof ip, &port);
        assert_string_equal(ip, addrs[i]);
        assert_int_equal(port, 443);
        assert_int_equal(ai->ai_family, i == 1 ? AF_INET6 : AF_INET);
        assert_int_equal(ai->ai_socktype, SOCK_STREAM);
        assert_int_equal(ai->ai_protocol, IPPROTO_TCP);
    }
    assert_int_equal(i, 3);
    ctrio_freeaddrinfo(res);

    hints.ai_family = AF_INET6;
    assert_int_equal(ctrio_getaddrinfo("www.example.org", "80", &hints, &res), 0);
    assert_non_null(res);
    assert_int_equal(res->ai_family, AF_INET6);
    assert_null(res->ai_next);
    ctrio_freeaddrinfo(res);
    const ctrio_fake_lookup *l = ctrio_fake_net_last_lookup(net);
    assert_int_equal(l->family, AF_INET6);
    assert_string_equal(l->service, "80");

    assert_int_equal(ctrio_getaddrinfo("nowhere.example.org", "80", NULL, &res), CTRIO_EAI_NONAME);
    assert_null(res);
    size_t lookups = ctrio_fake_net_lookup_count(net);
    assert_int_equal(lookups, 3);

    /* numeric: answered without the resolver */
    assert_int_equal(ctrio_getaddrinfo("192.0.2.99", "80", NULL, &res), 0);
    ctrio_freeaddrinfo(res);
    assert_int_equal(ctrio_fake_net_lookup_count(net), lookups);

    /* a lookup in a cancelled scope */
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    rc = ctrio_getaddrinfo("www.example.org", "80", NULL, &res);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);

    ctrio_fake_net_uninstall(net);
    ctrio_fake_net_free(net);
    return 0;
}
static void test_fake_resolver(void **state)
{
    (void)state;
    assert_int_equal(run_mock(fake_resolver, NULL), 0);
}

/* New (the Scenario's socket factory): the fake socket factory: families
 * switched off, kinds it does not make, options, addresses, scripted and
 * unscripted connects, and real sockets again once uninstalled. */
static int fake_sockets(void *arg)
{
    (void)arg;
    ctrio_fake_net *net;
    assert_int_equal(ctrio_fake_net_new(&net), 0);
    assert_int_equal(ctrio_fake_net_set_connect(net, "198.51.100.1", 2, 0), 0);
    assert_int_equal(ctrio_fake_net_set_connect(net, "198.51.100.2", -1, 0), -EINVAL);
    assert_int_equal(ctrio_fake_net_set_connect(net, "198.51.100.2", 1, 5), -EINVAL);
    assert_int_equal(ctrio_fake_net_set_family(net, AF_INET6, false), 0);
    assert_int_equal(ctrio_fake_net_set_family(net, AF_UNIX, false), -EINVAL);
    assert_int_equal(ctrio_fake_net_install(net), 0);

    ctrio_socket *s;
    assert_int_equal(ctrio_socket_open(AF_INET6, SOCK_STREAM, 0, &s), -EAFNOSUPPORT);
    assert_int_equal(ctrio_socket_open(AF_UNIX, SOCK_STREAM, 0, &s), -EAFNOSUPPORT);
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_RAW, 0, &s), -ESOCKTNOSUPPORT);
    assert_int_equal(ctrio_fake_net_attempt_count(net), 0);

    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &s), 0);
    assert_int_equal(ctrio_fake_net_attempt_count(net), 1);
    assert_int_equal(ctrio_socket_fileno(s), -1);
    assert_int_equal(ctrio_socket_family(s), AF_INET);
    assert_int_equal(ctrio_socket_type(s), SOCK_STREAM);
    assert_int_equal(ctrio_socket_protocol(s), IPPROTO_TCP);
    int v = 7;
    socklen_t vlen = sizeof v;
    assert_int_equal(ctrio_socket_setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v), 0);
    v = 0;
    assert_int_equal(ctrio_socket_getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vlen), 0);
    assert_int_equal(v, 7);
    vlen = sizeof v;
    assert_int_equal(ctrio_socket_getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vlen), 0);
    assert_int_equal(v, SOCK_STREAM);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(ctrio_socket_getpeername(s, (struct sockaddr *)&ss, &len), -ENOTCONN);

    /* unscripted address: refused at once (still a checkpoint) */
    struct sockaddr_storage to;
    socklen_t tolen;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, "198.51.100.9", 80, &to, &tolen), 0);
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_socket_connect(s, (struct sockaddr *)&to, tolen));
    assert_int_equal(rc, -ECONNREFUSED);
    ASSERT_TIME(ctrio_current_time(), 0);
    assert_int_equal(ctrio_socket_close(s), 0);

    /* scripted: connects after 2 s; then peer and local addresses */
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &s), 0);
    struct sockaddr_storage six;
    socklen_t sixlen;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET6, "::1", 80, &six, &sixlen), 0);
    assert_int_equal(ctrio_socket_connect(s, (struct sockaddr *)&six, sixlen), -EAFNOSUPPORT);
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, "198.51.100.1", 8080, &to, &tolen), 0);
    assert_int_equal(ctrio_socket_connect(s, (struct sockaddr *)&to, tolen), 0);
    ASSERT_TIME(ctrio_current_time(), 2);
    assert_int_equal(ctrio_socket_connect(s, (struct sockaddr *)&to, tolen), -EISCONN);
    len = sizeof ss;
    assert_int_equal(ctrio_socket_getpeername(s, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(len, tolen);
    assert_memory_equal(&ss, &to, tolen);
    len = sizeof ss;
    assert_int_equal(ctrio_socket_getsockname(s, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ctrio_socket_wait_writable(s), 0);
    assert_int_equal(ctrio_socket_shutdown(s, SHUT_WR), 0);
    assert_true(ctrio_socket_did_shutdown_wr(s));
    assert_int_equal(ctrio_socket_send(s, "x", 1, 0), -EOPNOTSUPP); /* no data moves */
    const ctrio_fake_attempt *a = ctrio_fake_net_find_attempt(net, "198.51.100.1");
    assert_non_null(a);
    assert_ptr_equal(a, ctrio_fake_net_attempt(net, 1));
    ASSERT_TIME(a->connect_time, 0);
    assert_int_equal(a->connect_result, 0);
    assert_false(a->closed);
    assert_int_equal(ctrio_socket_close(s), 0);
    assert_true(a->closed);
    assert_null(ctrio_fake_net_attempt(net, 2));

    /* uninstalled: real sockets again */
    ctrio_fake_net_uninstall(net);
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &s), 0);
    assert_true(ctrio_socket_fileno(s) >= 0);
    assert_int_equal(ctrio_socket_close(s), 0);
    assert_int_equal(ctrio_fake_net_attempt_count(net), 2);
    ctrio_fake_net_free(net);
    return 0;
}
static void test_fake_sockets(void **state)
{
    (void)state;
    assert_int_equal(run_mock(fake_sockets, NULL), 0);
}

/* New: a numeric host never reaches the resolver (SPEC §6), but its
 * connection still goes through the socket factory. And an unknown name is
 * the resolver's error, with no socket made. */
static int numeric_and_unknown_hosts(void *arg)
{
    (void)arg;
    ctrio_fake_net *net;
    assert_int_equal(ctrio_fake_net_new(&net), 0);
    assert_int_equal(ctrio_fake_net_set_connect(net, "203.0.113.5", 0.5, 0), 0);
    assert_int_equal(ctrio_fake_net_install(net), 0);
    ctrio_stream *st = NULL;
    assert_int_equal(ctrio_open_tcp_stream("203.0.113.5", 8000, &st), 0);
    ASSERT_TIME(ctrio_current_time(), 0.5);
    assert_int_equal(ctrio_fake_net_lookup_count(net), 0);
    assert_int_equal(ctrio_fake_net_attempt_count(net), 1);
    assert_int_equal(ctrio_stream_close(st), 0);

    assert_int_equal(ctrio_open_tcp_stream("nowhere.example", 80, &st), CTRIO_EAI_NONAME);
    assert_null(st);
    assert_int_equal(ctrio_fake_net_lookup_count(net), 1);
    assert_int_equal(ctrio_fake_net_attempt_count(net), 1);
    ctrio_fake_net_free(net); /* uninstalls */
    return 0;
}
static void test_numeric_and_unknown_hosts(void **state)
{
    (void)state;
    assert_int_equal(run_mock(numeric_and_unknown_hosts, NULL), 0);
}

/* New: a SocketStream over a fake (custom) socket works:
 * wait_send_all_might_not_block on a connected fake socket returns 0. */
static int stream_over_fake_socket(void *arg)
{
    (void)arg;
    static const scen_ip ips[] = {{"1.2.3.4", 0.25, 0}};
    scenario sc = {.port = 80, .ips = ips, .n = N(ips)};
    run_scenario(&sc);
    assert_int_equal(sc.rc, 0);
    assert_int_equal(sc.wait_send_rc, 0);
    scenario_free(&sc);
    return 0;
}
static void test_stream_over_fake_socket(void **state)
{
    (void)state;
    /* Found a bug (fixed): SocketStream took fileno -1 for "closed", but a
     * custom socket always has fileno -1. */
    assert_int_equal(run_mock(stream_over_fake_socket, NULL), 0);
}

/* ---- real sockets ------------------------------------------------------------- */

typedef struct real_ctx {
    const char *host;
} real_ctx;

static ctrio_socket *loopback_listener(int *port)
{
    ctrio_socket *l;
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &l), 0);
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, "127.0.0.1", 0, &ss, &len), 0);
    assert_int_equal(ctrio_socket_bind(l, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(ctrio_socket_listen(l, 4), 0);
    len = sizeof ss;
    assert_int_equal(ctrio_socket_getsockname(l, (struct sockaddr *)&ss, &len), 0);
    *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return l;
}

static int real_socket(void *arg)
{
    real_ctx *c = arg;
    int port;
    ctrio_socket *l = loopback_listener(&port);
    ctrio_stream *client = NULL;
    assert_int_equal(ctrio_open_tcp_stream(c->host, port, &client), 0);
    ctrio_socket *server;
    assert_int_equal(ctrio_socket_accept(l, &server, NULL, NULL), 0);
    assert_int_equal(ctrio_stream_send_all(client, "x", 1), 0);
    char b = 0;
    assert_int_equal(ctrio_socket_recv(server, &b, 1, 0), 1);
    assert_int_equal(b, 'x');
    /* TCP_NODELAY is on (SocketStream) */
    int v = 0;
    socklen_t vlen = sizeof v;
    assert_int_equal(ctrio_socket_getsockopt(ctrio_socket_stream_socket(client), IPPROTO_TCP,
                                             TCP_NODELAY, &v, &vlen),
                     0);
    assert_int_not_equal(v, 0);
    assert_int_equal(ctrio_stream_close(client), 0);
    assert_int_equal(ctrio_socket_close(server), 0);
    assert_int_equal(ctrio_socket_close(l), 0);
    return 0;
}

/* Trio:
 * tests/test_highlevel_open_tcp_stream.py::test_open_tcp_stream_real_socket_smoketest
 */
static void test_open_tcp_stream_real_socket(void **state)
{
    (void)state;
    real_ctx c = {"127.0.0.1"};
    assert_int_equal(run_real(real_socket, &c), 0);
}

/* Trio: same smoke test, through a real lookup of "localhost" (a worker
 * thread; ::1, if listed first, is refused and the race falls through). */
static void test_open_tcp_stream_real_socket_localhost(void **state)
{
    (void)state;
    real_ctx c = {"localhost"};
    assert_int_equal(run_real(real_socket, &c), 0);
}

/* Trio:
 * tests/test_highlevel_open_tcp_stream.py::test_open_tcp_stream_input_validation:
 * no host, a port out of range, no output → -EINVAL, before any lookup. */
static int input_validation(void *arg)
{
    (void)arg;
    ctrio_fake_net *net;
    assert_int_equal(ctrio_fake_net_new(&net), 0);
    static const char *const addrs[] = {"192.0.2.1"};
    assert_int_equal(ctrio_fake_net_add_host(net, "h.example", addrs, 1), 0);
    assert_int_equal(ctrio_fake_net_install(net), 0);
    ctrio_stream *st = (ctrio_stream *)&st; /* non-NULL junk */
    assert_int_equal(ctrio_open_tcp_stream(NULL, 80, &st), -EINVAL);
    assert_int_equal(ctrio_open_tcp_stream("h.example", -1, &st), -EINVAL);
    assert_int_equal(ctrio_open_tcp_stream("h.example", 65536, &st), -EINVAL);
    assert_int_equal(ctrio_open_tcp_stream("h.example", 80, NULL), -EINVAL);
    assert_int_equal(ctrio_open_tcp_stream_with(NULL, 80, NULL, &st), -EINVAL);
    assert_int_equal(ctrio_fake_net_lookup_count(net), 0);
    assert_int_equal(ctrio_fake_net_attempt_count(net), 0);
    ctrio_fake_net_free(net);
    return 0;
}
static void test_open_tcp_stream_input_validation(void **state)
{
    (void)state;
    assert_int_equal(run_mock(input_validation, NULL), 0);
}

static bool can_bind_127_0_0_2(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Trio: tests/test_highlevel_open_tcp_stream.py::test_local_address_real */
static int local_address_real(void *arg)
{
    (void)arg;
    int port;
    ctrio_socket *l = loopback_listener(&port);
    const char *local_ip = can_bind_127_0_0_2() ? "127.0.0.2" : "127.0.0.1";
    struct sockaddr_storage local;
    socklen_t llen;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, local_ip, 0, &local, &llen), 0);
    ctrio_tcp_stream_options o = {.local_address = (struct sockaddr *)&local,
                                  .local_address_len = llen};
    ctrio_stream *client = NULL;
    assert_int_equal(ctrio_open_tcp_stream_with("127.0.0.1", port, &o, &client), 0);
    ctrio_socket *cs = ctrio_socket_stream_socket(client);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(ctrio_socket_getsockname(cs, (struct sockaddr *)&ss, &len), 0);
    char ip[INET6_ADDRSTRLEN];
    int p;
    ip_of((struct sockaddr *)&ss, ip, sizeof ip, &p);
    assert_string_equal(ip, local_ip);
    int v = 0;
    socklen_t vlen = sizeof v;
    int grc = ctrio_socket_getsockopt(cs, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &v, &vlen);
    if (grc != -ENOPROTOOPT) { /* qemu-user lacks the option; Linux has it */
        assert_int_equal(grc, 0);
        assert_int_not_equal(v, 0);
    }
    ctrio_socket *server;
    struct sockaddr_storage remote;
    socklen_t rlen = sizeof remote;
    assert_int_equal(ctrio_socket_accept(l, &server, (struct sockaddr *)&remote, &rlen), 0);
    assert_int_equal(ctrio_stream_close(client), 0);
    assert_int_equal(ctrio_socket_close(server), 0);
    ip_of((struct sockaddr *)&remote, ip, sizeof ip, &p);
    assert_string_equal(ip, local_ip);

    /* an IPv6 wildcard local address to an IPv4 target fails */
    assert_int_equal(ctrio_sockaddr_parse(AF_INET6, "::", 0, &local, &llen), 0);
    o.local_address_len = llen;
    client = NULL;
    assert_int_equal(ctrio_open_tcp_stream_with("127.0.0.1", port, &o, &client), -EAFNOSUPPORT);
    assert_null(client);

    /* but the IPv4 wildcard works */
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, "0.0.0.0", 0, &local, &llen), 0);
    o.local_address_len = llen;
    assert_int_equal(ctrio_open_tcp_stream_with("127.0.0.1", port, &o, &client), 0);
    rlen = sizeof remote;
    assert_int_equal(ctrio_socket_accept(l, &server, (struct sockaddr *)&remote, &rlen), 0);
    assert_int_equal(ctrio_socket_close(server), 0);
    len = sizeof ss;
    assert_int_equal(
        ctrio_socket_getsockname(ctrio_socket_stream_socket(client), (struct sockaddr *)&ss, &len),
        0);
    assert_int_equal(len, rlen);
    assert_memory_equal(&ss, &remote, len);
    assert_int_equal(ctrio_stream_close(client), 0);
    assert_int_equal(ctrio_socket_close(l), 0);
    return 0;
}
static void test_local_address_real(void **state)
{
    (void)state;
    assert_int_equal(run_real(local_address_real, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_close_all),
        TEST(test_reorder_for_rfc_6555_section_5_4),
        TEST(test_open_tcp_stream_real_socket),
        TEST(test_open_tcp_stream_real_socket_localhost),
        TEST(test_open_tcp_stream_input_validation),
        TEST(test_local_address_real),
        TEST(test_one_host_quick_success),
        TEST(test_one_host_slow_success),
        TEST(test_one_host_quick_fail),
        TEST(test_one_host_slow_fail),
        TEST(test_one_host_failed_after_connect),
        TEST(test_basic_fallthrough),
        TEST(test_early_success),
        TEST(test_custom_delay),
        TEST(test_infinite_delay),
        TEST(test_custom_errors_expedite),
        TEST(test_all_fail),
        TEST(test_multi_success),
        TEST(test_does_reorder),
        TEST(test_handles_no_ipv4),
        TEST(test_handles_no_ipv6),
        TEST(test_no_hosts),
        TEST(test_cancel),
        TEST(test_local_address_fake),
        TEST(test_cancelled_connect_like_real),
        TEST(test_close_during_connect),
        TEST(test_fake_resolver),
        TEST(test_fake_sockets),
        TEST(test_numeric_and_unknown_hosts),
        TEST(test_stream_over_fake_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
