/*
 * test_tls_serve.c — TLS listeners and servers: trio.SSLListener and
 * trio.serve_ssl_over_tcp over real loopback sockets (Trio's
 * test_SSLListener and test_open_ssl_over_tcp_stream_and_everything_else in
 * trio/_tests/test_highlevel_ssl_helpers.py).
 */
#include "support.h"

#include <ctrio_testing.h>
#include <ctrio_tls.h>
#include <netinet/in.h>
#include <openssl/ssl.h>

static ctrio_tls_test_ca *ca;
static ctrio_tls_test_cert *cert;
static ctrio_tls_context *client_ctx, *server_ctx;

static int setup(void **state)
{
    const char *names[] = {"localhost", "127.0.0.1", "::1"};
    assert_int_equal(ctrio_tls_test_ca_new(&ca), 0);
    assert_int_equal(ctrio_tls_test_cert_new(ca, names, 3, NULL, &cert), 0);
    assert_int_equal(ctrio_tls_client_context(&client_ctx), 0);
    assert_int_equal(ctrio_tls_test_ca_trust(ca, client_ctx), 0);
    assert_int_equal(ctrio_tls_server_context(NULL, NULL, &server_ctx), 0);
    assert_int_equal(ctrio_tls_test_cert_use(cert, server_ctx), 0);
    return fd_setup(state);
}

static int teardown(void **state)
{
    ctrio_tls_context_free(client_ctx);
    ctrio_tls_context_free(server_ctx);
    ctrio_tls_test_cert_free(cert);
    ctrio_tls_test_ca_free(ca);
    return fd_teardown(state);
}

#define TLS_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static int port_of(ctrio_listener *tls_listener)
{
    ctrio_listener *tcp = ctrio_tls_listener_transport(tls_listener);
    assert_non_null(tcp);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(
        ctrio_socket_getsockname(ctrio_socket_listener_socket(tcp), (struct sockaddr *)&ss, &len),
        0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* The handler of a server that outlives bad clients: a failed or stalled
 * handshake ends this connection only (a handler's error would stop the
 * whole server, as in Trio, so a TLS handler keeps TLS failures to itself). */
typedef struct server_stats {
    int served, tls_failures, last_failure;
} server_stats;

static int echo_handler(ctrio_stream *s, void *arg)
{
    server_stats *st = arg;
    char buf[1024];
    for (;;) {
        ssize_t n = ctrio_stream_receive_some(s, buf, sizeof buf);
        if (n == 0) {
            st->served++;
            return 0;
        }
        if (n < 0 || ctrio_stream_send_all(s, buf, (size_t)n) < 0) {
            st->tls_failures++;
            st->last_failure = (int)n;
            return 0;
        }
    }
}

typedef struct serve_args {
    server_stats stats;
    int flags;
} serve_args;

static int serve_task(void *arg)
{
    serve_args *a = arg;
    return ctrio_serve_tls_over_tcp(echo_handler, &a->stats, 0, "127.0.0.1", server_ctx, a->flags,
                                    0);
}

static void echo_once(int port, const char *host, const char *msg)
{
    ctrio_stream *s;
    assert_int_equal(ctrio_open_tls_over_tcp_stream(host, port, client_ctx, 0, &s), 0);
    size_t len = strlen(msg);
    assert_int_equal(ctrio_stream_send_all(s, msg, len), 0);
    char buf[256];
    size_t got = 0;
    while (got < len) {
        ssize_t n = ctrio_stream_receive_some(s, buf + got, sizeof buf - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(buf, msg, len);
    assert_string_equal(ctrio_tls_stream_version(s), "TLSv1.3");
    assert_int_equal(ctrio_stream_close(s), 0);
}

/* A plain TCP client that sends bytes that are not TLS, and one that sends
 * nothing at all: neither holds up a good client. */
typedef struct bad_client {
    int port;
    const char *junk;
    ctrio_event done;
} bad_client;

static int bad_client_task(void *arg)
{
    bad_client *b = arg;
    ctrio_stream *s;
    int rc = ctrio_open_tcp_stream("127.0.0.1", b->port, &s);
    if (rc < 0)
        return rc;
    if (b->junk)
        ctrio_stream_send_all(s, b->junk, strlen(b->junk));
    rc = ctrio_event_wait(&b->done);
    ctrio_stream_close(s);
    return rc;
}

static int body_serve(void *arg)
{
    (void)arg;
    serve_args a = {0};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *v;
    assert_int_equal(ctrio_start(&n, serve_task, &a, &v), 0);
    const ctrio_listener_set *set = v;
    assert_int_equal(set->count, 1);
    int port = port_of(set->listeners[0]);
    assert_null(ctrio_tls_listener_transport(ctrio_tls_listener_transport(set->listeners[0])));

    bad_client junk = {.port = port, .junk = "GET / HTTP/1.0\r\n\r\n"}, stall = {.port = port};
    ctrio_event_init(&junk.done);
    ctrio_event_init(&stall.done);
    ctrio_start_soon(&n, bad_client_task, &junk);
    ctrio_start_soon(&n, bad_client_task, &stall);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.01), 0);
    echo_once(port, "127.0.0.1", "first");
    echo_once(port, "localhost", "second");
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.01), 0); /* the handlers saw the EOFs */
    assert_int_equal(a.stats.served, 2);
    /* the junk client's handshake failed in its own handler */
    assert_int_equal(a.stats.tls_failures, 1);
    assert_int_equal(a.stats.last_failure, CTRIO_ETLS_PROTOCOL);
    ctrio_event_set(&junk.done);
    ctrio_event_set(&stall.done);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    return 0;
}

static void test_serve_tls_over_tcp(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_serve, NULL), 0);
}

/* Trio's test_SSLListener: accept gives server TLS streams; aclose closes
 * the transport listener; a task blocked in accept gets -EBADF. */
typedef struct accept_args {
    ctrio_listener *l;
    int rc;
} accept_args;

static int accept_task(void *arg)
{
    accept_args *a = arg;
    ctrio_stream *s = NULL;
    a->rc = ctrio_listener_accept(a->l, &s);
    assert_null(s);
    return 0;
}

static int body_listener(void *arg)
{
    (void)arg;
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(0, "127.0.0.1", 0, &ls, &n), 0);
    ctrio_listener *tl;
    assert_int_equal(ctrio_tls_listener_new(ls[0], NULL, 0, &tl), -EINVAL);
    assert_null(tl);
    assert_int_equal(ctrio_tls_listener_new(ls[0], server_ctx, 4, &tl), -EINVAL);
    assert_int_equal(ctrio_tls_listener_new(ls[0], server_ctx, 0, &tl), 0);
    free(ls);
    assert_null(ctrio_tls_listener_transport(NULL));
    int port = port_of(tl);

    /* accept, then a client over the accepted stream's peer */
    ctrio_stream *c;
    assert_int_equal(ctrio_open_tls_over_tcp_stream("127.0.0.1", port, client_ctx, 0, &c), 0);
    ctrio_stream *srv;
    assert_int_equal(ctrio_listener_accept(tl, &srv), 0);
    assert_non_null(ctrio_tls_stream_ssl(srv));
    assert_null(ctrio_tls_stream_version(srv)); /* no handshake at accept */
    ctrio_nursery nur;
    ctrio_nursery_open(&nur);
    ctrio_start_soon(&nur, (ctrio_fn)ctrio_tls_stream_handshake, srv);
    assert_int_equal(ctrio_tls_stream_handshake(c), 0);
    assert_int_equal(ctrio_nursery_close(&nur, 0), 0);
    assert_true(SSL_is_server(ctrio_tls_stream_ssl(srv)));
    assert_int_equal(ctrio_stream_close(c), 0);
    char b;
    assert_int_equal(ctrio_stream_receive_some(srv, &b, 1), 0); /* close_notify */
    assert_int_equal(ctrio_stream_close(srv), 0);

    /* close while another task waits in accept */
    accept_args a = {.l = tl};
    ctrio_nursery_open(&nur);
    ctrio_start_soon(&nur, accept_task, &a);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.01), 0);
    assert_int_equal(ctrio_listener_close(tl), 0);
    assert_int_equal(ctrio_nursery_close(&nur, 0), 0);
    assert_int_equal(a.rc, -EBADF);
    return 0;
}

static void test_tls_listener(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_listener, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TLS_TEST(test_serve_tls_over_tcp),
        TLS_TEST(test_tls_listener),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
