/*
 * test_tls.c — TLS streams (ctrio_tls.h), ported from Trio's
 * trio/_tests/test_ssl.py where it applies to C. Certificates come from the
 * in-memory test CA (Python's trustme, as Trio's tests use).
 */
#include "support.h"
#include "stream_check.h"

#include <ctrio_tls.h>
#include <openssl/ssl.h>
#include <unistd.h>

/* ---- fixtures: Trio's client_ctx / server_ctx ------------------------------ */

typedef struct tls_fixture {
    ctrio_tls_test_ca *ca;
    ctrio_tls_test_cert *cert; /* "trio-test-1.example.org", as Trio's */
    ctrio_tls_context *client, *server;
} tls_fixture;

static tls_fixture fx;

static int fixture_setup(void **state)
{
    const char *names[] = {"trio-test-1.example.org"};
    assert_int_equal(ctrio_tls_test_ca_new(&fx.ca), 0);
    assert_int_equal(ctrio_tls_test_cert_new(fx.ca, names, 1, NULL, &fx.cert), 0);
    assert_int_equal(ctrio_tls_client_context(&fx.client), 0);
    assert_int_equal(ctrio_tls_test_ca_trust(fx.ca, fx.client), 0);
    assert_int_equal(ctrio_tls_server_context(NULL, NULL, &fx.server), 0);
    assert_int_equal(ctrio_tls_test_cert_use(fx.cert, fx.server), 0);
    return fd_setup(state);
}

static int fixture_teardown(void **state)
{
    ctrio_tls_context_free(fx.client);
    ctrio_tls_context_free(fx.server);
    ctrio_tls_test_cert_free(fx.cert);
    ctrio_tls_test_ca_free(fx.ca);
    memset(&fx, 0, sizeof fx);
    return fd_teardown(state);
}

#define TLS_TEST(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

/* A client and a server TLS stream over a memory stream pair. */
static int tls_memory_pair(ctrio_stream **client, ctrio_stream **server, int client_flags,
                           int server_flags)
{
    ctrio_stream *a, *b;
    int rc = ctrio_memory_stream_pair(&a, &b);
    if (rc < 0)
        return rc;
    rc = ctrio_tls_stream_new(a, fx.client, "trio-test-1.example.org", client_flags, client);
    if (rc == 0)
        rc = ctrio_tls_stream_new(b, fx.server, NULL, server_flags | CTRIO_TLS_SERVER, server);
    assert_int_equal(rc, 0);
    return 0;
}

static int memory_maker(void *ctx, ctrio_stream **a, ctrio_stream **b)
{
    (void)ctx;
    return tls_memory_pair(a, b, 0, 0);
}

/* ---- basics ---------------------------------------------------------------- */

typedef struct echo_args {
    ctrio_stream *s;
    size_t n;
} echo_args;

/* Echo until EOF (close_notify). */
static int echo_task(void *arg)
{
    echo_args *e = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = ctrio_stream_receive_some(e->s, buf, sizeof buf);
        if (n <= 0)
            return (int)n;
        e->n += (size_t)n;
        int rc = ctrio_stream_send_all(e->s, buf, (size_t)n);
        if (rc < 0)
            return rc;
    }
}

static int body_echo(void *arg)
{
    (void)arg;
    ctrio_stream *c, *s;
    tls_memory_pair(&c, &s, 0, 0);
    echo_args e = {.s = s};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, echo_task, &e);
    assert_null(ctrio_tls_stream_version(c));
    assert_int_equal(ctrio_tls_stream_handshake(c), 0);
    assert_string_equal(ctrio_tls_stream_version(c), "TLSv1.3");
    assert_null(ctrio_tls_stream_alpn(c));
    assert_int_equal(ctrio_stream_send_all(c, "hello", 5), 0);
    char buf[16] = {0};
    size_t got = 0;
    while (got < 5) {
        ssize_t k = ctrio_stream_receive_some(c, buf + got, sizeof buf - got);
        assert_true(k > 0);
        got += (size_t)k;
    }
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(ctrio_stream_send_eof(c), -EOPNOTSUPP);
    assert_int_equal(ctrio_stream_close(c), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(e.n, 5);
    assert_int_equal(ctrio_stream_close(s), 0);
    return 0;
}

static void test_echo(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_echo, NULL), 0);
}

/* Trio's test_ssl_stream_generic over memory streams (minus the clogged
 * checks, which need lockstep transports: below). */
static int body_generic_memory(void *arg)
{
    (void)arg;
    return check_two_way_stream(memory_maker, NULL, NULL);
}

static void test_generic_memory(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_generic_memory, NULL), 0);
}

/* A file that cannot be read is the system's errno, as ctrio_tls.h says
 * (Python's SSLContext.load_cert_chain and load_verify_locations raise
 * FileNotFoundError); bad contents are -EINVAL. They were -EINVAL both. */
static void test_context_file_errors(void **state)
{
    (void)state;
    char dir[] = "/tmp/ctrio-test-tls-XXXXXX", cert[64], key[64], ca[64], none[64];
    ctrio_tls_context *ctx = NULL;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(ctrio_tls_test_cert_write(fx.cert, dir), 0);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(none, sizeof none, "%s/none.pem", dir);

    assert_int_equal(ctrio_tls_server_context(none, key, &ctx), -ENOENT);
    assert_null(ctx);
    assert_int_equal(ctrio_tls_server_context(cert, none, &ctx), -ENOENT);
    assert_null(ctx);
    assert_int_equal(ctrio_tls_server_context(cert, ca, &ctx), -EINVAL); /* not a key */
    assert_null(ctx);
    assert_int_equal(ctrio_tls_server_context(cert, key, &ctx), 0);
    ctrio_tls_context_free(ctx);

    assert_int_equal(ctrio_tls_client_context(&ctx), 0);
    assert_int_equal(ctrio_tls_context_load_ca(ctx, none), -ENOENT);
    assert_int_equal(ctrio_tls_context_load_ca(ctx, key), -EINVAL); /* no certificate in it */
    assert_int_equal(ctrio_tls_context_load_ca(ctx, ca), 0);
    ctrio_tls_context_free(ctx);

    unlink(cert);
    unlink(key);
    unlink(ca);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TLS_TEST(test_echo),
        TLS_TEST(test_generic_memory),
        TLS_TEST(test_context_file_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
