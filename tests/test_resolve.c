/*
 * test_resolve.c — name lookup: ctrio_getaddrinfo, ctrio_getnameinfo,
 * ctrio_getprotobyname and the custom hostname resolver hook (Trio's
 * tests/test_socket.py::test_getaddrinfo, ::test_getnameinfo, ::test_idna,
 * ::test_getprotobyname, ::test_custom_hostname_resolver,
 * ::test_SocketType_resolve; trio/_socket.py's getaddrinfo and its hooks).
 *
 * ctrio does not resolve names inside socket methods (they take a struct
 * sockaddr), so Trio's tests of resolution inside connect/bind/sendto
 * (::test_SocketType_resolve) do not apply here; what is left of them is that
 * a numeric lookup never reaches a resolver or a thread.
 *
 * This machine may have no network: the only name looked up for real is
 * "localhost" (from /etc/hosts); every other name goes to a fake resolver
 * or fails before any lookup.
 *
 * White-box: a few tests read the run's limiters (internal.h) to wait until
 * an abandoned lookup thread has really finished, so that nothing is left
 * running (or leaking) when the test ends.
 */
#include "support.h"

#include "internal.h"
#include "token.h"

#include <ctrio_testing.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------- */

/* Inside a run: the number of worker threads of this run's pool (a thread,
 * once started, stays idle for 10 s before it leaves, so a lookup that used
 * one shows here). White-box: token.h. */
static size_t pool_threads(void)
{
    ctrio_token *t = ctrio__tls_run->token;
    pthread_mutex_lock(&t->mu);
    size_t n = t->pool.nthreads;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* Inside a run: wait (bounded, 3 s of real time) until every name-lookup
 * slot is back, i.e. every lookup thread, abandoned ones included, has
 * finished. Returns the final value of the limiter. */
static size_t wait_dns_slots_back(void)
{
    ctrio__run *r = ctrio__tls_run;
    double until = real_now() + 3.0;
    while (ctrio_semaphore_value(&r->dns_limiter) < 20 && real_now() < until)
        ctrio_sleep(0.002);
    return ctrio_semaphore_value(&r->dns_limiter);
}

static bool is_eai(int rc)
{
    return rc <= CTRIO_EAI_BASE - 1 && rc >= CTRIO_EAI_BASE - 200;
}

static size_t list_len(const struct addrinfo *a)
{
    size_t n = 0;
    for (; a; a = a->ai_next)
        n++;
    return n;
}

/* (family, type, sockaddr) of two result lists are the same, in order: the
 * fields Trio's test_getaddrinfo compares ("interesting_fields"). */
static void assert_same_results(const struct addrinfo *got, const struct addrinfo *want)
{
    assert_int_equal(list_len(got), list_len(want));
    for (; got && want; got = got->ai_next, want = want->ai_next) {
        assert_int_equal(got->ai_family, want->ai_family);
        assert_int_equal(got->ai_socktype, want->ai_socktype);
        assert_int_equal(got->ai_addrlen, want->ai_addrlen);
        assert_memory_equal(got->ai_addr, want->ai_addr, want->ai_addrlen);
    }
}

/* The system's own answer, looked up blocking (for comparisons). */
static struct addrinfo *system_gai(const char *host, const char *service, int family, int type,
                                   int flags)
{
    struct addrinfo h, *res = NULL;
    memset(&h, 0, sizeof h);
    h.ai_family = family;
    h.ai_socktype = type;
    h.ai_flags = flags;
    int e = getaddrinfo(host, service, &h, &res);
    assert_int_equal(e, 0);
    return res;
}

/* ---- a fake resolver ---------------------------------------------------------
 * Answers every getaddrinfo with two results (192.0.2.1 and 2001:db8::1, port
 * 4242, canonical name "fake.test" when AI_CANONNAME is asked), each node and
 * address a separate allocation; its freeaddrinfo checks that it gets back a
 * list it handed out, and counts. It records the arguments of the last call. */

typedef struct fake_resolver {
    ctrio_hostname_resolver r;
    int gai_calls, gni_calls, free_calls;
    int gai_rc;            /* returned by getaddrinfo (0: answer) */
    bool answer_empty;     /* with gai_rc 0: answer an empty list */
    double sleep_first;    /* ctrio_sleep this long first (> 0) */
    int sleep_rc;          /* what that sleep returned */
    char host[256];
    bool host_null;
    char service[64];
    bool service_null;
    struct addrinfo hints;
    bool hints_null;
    struct addrinfo *out[16]; /* lists handed out, not yet freed */
    int nout;
    /* getnameinfo */
    struct sockaddr_storage gni_sa;
    socklen_t gni_salen;
    size_t gni_hostlen, gni_servlen;
    int gni_flags;
    int gni_rc;
} fake_resolver;

static struct addrinfo *fake_node(int family, int type, int flags)
{
    struct addrinfo *a = calloc(1, sizeof *a);
    assert_non_null(a);
    a->ai_family = family;
    a->ai_socktype = type;
    if (family == AF_INET) {
        struct sockaddr_in *in = calloc(1, sizeof *in);
        assert_non_null(in);
        in->sin_family = AF_INET;
        in->sin_port = htons(4242);
        inet_pton(AF_INET, "192.0.2.1", &in->sin_addr);
        a->ai_addr = (struct sockaddr *)in;
        a->ai_addrlen = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = calloc(1, sizeof *in6);
        assert_non_null(in6);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(4242);
        inet_pton(AF_INET6, "2001:db8::1", &in6->sin6_addr);
        a->ai_addr = (struct sockaddr *)in6;
        a->ai_addrlen = sizeof *in6;
    }
    if (flags & AI_CANONNAME) {
        a->ai_canonname = strdup("fake.test");
        assert_non_null(a->ai_canonname);
    }
    return a;
}

static int fake_gai(void *ctx, const char *host, const char *service,
                    const struct addrinfo *hints, struct addrinfo **res)
{
    fake_resolver *f = ctx;
    f->gai_calls++;
    f->host_null = host == NULL;
    snprintf(f->host, sizeof f->host, "%s", host ? host : "");
    f->service_null = service == NULL;
    snprintf(f->service, sizeof f->service, "%s", service ? service : "");
    f->hints_null = hints == NULL;
    if (hints)
        f->hints = *hints;
    if (f->sleep_first > 0) {
        f->sleep_rc = ctrio_sleep(f->sleep_first); /* we run in the calling task */
        if (f->sleep_rc < 0)
            return f->sleep_rc;
    }
    if (f->gai_rc != 0)
        return f->gai_rc;
    if (f->answer_empty) {
        *res = NULL;
        return 0;
    }
    int flags = hints ? hints->ai_flags : 0;
    int type = hints ? hints->ai_socktype : 0;
    struct addrinfo *a = fake_node(AF_INET, type, flags);
    a->ai_next = fake_node(AF_INET6, type, 0);
    assert_true(f->nout < 16);
    f->out[f->nout++] = a;
    *res = a;
    return 0;
}

static void fake_free(void *ctx, struct addrinfo *res)
{
    fake_resolver *f = ctx;
    f->free_calls++;
    int i;
    for (i = 0; i < f->nout; i++)
        if (f->out[i] == res)
            break;
    assert_true(i < f->nout); /* a list we handed out, freed once */
    f->out[i] = f->out[--f->nout];
    while (res) {
        struct addrinfo *next = res->ai_next;
        free(res->ai_addr);
        free(res->ai_canonname);
        free(res);
        res = next;
    }
}

static int fake_gni(void *ctx, const struct sockaddr *sa, socklen_t salen, char *host,
                    size_t hostlen, char *serv, size_t servlen, int flags)
{
    fake_resolver *f = ctx;
    f->gni_calls++;
    memset(&f->gni_sa, 0, sizeof f->gni_sa);
    memcpy(&f->gni_sa, sa, salen < sizeof f->gni_sa ? salen : sizeof f->gni_sa);
    f->gni_salen = salen;
    f->gni_hostlen = hostlen;
    f->gni_servlen = servlen;
    f->gni_flags = flags;
    if (f->gni_rc)
        return f->gni_rc;
    if (host)
        snprintf(host, hostlen, "custom_gni");
    if (serv)
        snprintf(serv, servlen, "svc");
    return 0;
}

static void fake_init(fake_resolver *f)
{
    memset(f, 0, sizeof *f);
    f->r.ctx = f;
    f->r.getaddrinfo = fake_gai;
    f->r.getnameinfo = fake_gni;
    f->r.freeaddrinfo = fake_free;
}

static struct addrinfo hints_of(int family, int type, int protocol, int flags)
{
    struct addrinfo h;
    memset(&h, 0, sizeof h);
    h.ai_family = family;
    h.ai_socktype = type;
    h.ai_protocol = protocol;
    h.ai_flags = flags;
    return h;
}

/* ---- getaddrinfo: the numeric fast path -------------------------------------- */

/* Trio: tests/test_socket.py::test_getaddrinfo ("Simple non-blocking non-error
 * cases, ipv4 and ipv6", each inside assert_checkpoints). The (family, type,
 * sockaddr) fields must match the system's answer. */
static int numeric_body(void *arg)
{
    (void)arg;
    size_t threads = pool_threads();
    struct addrinfo h = hints_of(0, SOCK_STREAM, 0, 0), *res = NULL;
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_getaddrinfo("127.0.0.1", "12345", &h, &res));
    assert_int_equal(rc, 0);
    assert_int_equal(list_len(res), 1);
    assert_int_equal(res->ai_family, AF_INET);
    assert_int_equal(res->ai_socktype, SOCK_STREAM);
    assert_int_equal(res->ai_protocol, IPPROTO_TCP);
    assert_int_equal(res->ai_addrlen, sizeof(struct sockaddr_in));
    const struct sockaddr_in *in = (const struct sockaddr_in *)res->ai_addr;
    assert_int_equal(in->sin_family, AF_INET);
    assert_int_equal(ntohs(in->sin_port), 12345);
    assert_int_equal(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
    struct addrinfo *want = system_gai("127.0.0.1", "12345", 0, SOCK_STREAM, 0);
    assert_same_results(res, want);
    freeaddrinfo(want);
    ctrio_freeaddrinfo(res);

    h = hints_of(0, SOCK_DGRAM, 0, 0);
    ASSERT_CHECKPOINTS(rc = ctrio_getaddrinfo("::1", "12345", &h, &res));
    assert_int_equal(rc, 0);
    assert_int_equal(list_len(res), 1);
    assert_int_equal(res->ai_family, AF_INET6);
    assert_int_equal(res->ai_socktype, SOCK_DGRAM);
    assert_int_equal(res->ai_protocol, IPPROTO_UDP);
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)res->ai_addr;
    assert_int_equal(ntohs(in6->sin6_port), 12345);
    assert_true(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
    assert_int_equal(in6->sin6_flowinfo, 0);
    assert_int_equal(in6->sin6_scope_id, 0);
    want = system_gai("::1", "12345", 0, SOCK_DGRAM, 0);
    assert_same_results(res, want);
    freeaddrinfo(want);
    ctrio_freeaddrinfo(res);

    /* No hints at all: every (type, protocol) the system lists. */
    ASSERT_CHECKPOINTS(rc = ctrio_getaddrinfo("10.1.2.3", "7", NULL, &res));
    assert_int_equal(rc, 0);
    want = system_gai("10.1.2.3", "7", 0, 0, 0);
    assert_same_results(res, want);
    freeaddrinfo(want);
    ctrio_freeaddrinfo(res);

    /* The fast path started no thread (ctrio: "answered at once, with no
     * thread"). */
    assert_int_equal(pool_threads(), threads);
    return 0;
}

static void test_getaddrinfo_numeric(void **state)
{
    (void)state;
    assert_int_equal(run_real(numeric_body, NULL), 0);
}

/* Trio: tests/test_socket.py::test_getaddrinfo ("check raising an error from
 * a non-blocking getaddrinfo": type=-1 -> EAI_SOCKTYPE on glibc, EAI_SERVICE
 * on musl), still a checkpoint. */
static int numeric_error_body(void *arg)
{
    (void)arg;
    fake_resolver f;
    fake_init(&f);
    ctrio_set_custom_hostname_resolver(&f.r);
    size_t threads = pool_threads();
    struct addrinfo h = hints_of(0, -1, 0, 0), *res = (struct addrinfo *)&h;
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_getaddrinfo("::1", "12345", &h, &res));
    assert_true(rc == CTRIO_EAI_SOCKTYPE || rc == CTRIO_EAI_SERVICE);
    assert_null(res);
    /* raised straight away: neither the resolver nor a thread */
    assert_int_equal(f.gai_calls, 0);
    assert_int_equal(pool_threads(), threads);
    ctrio_set_custom_hostname_resolver(NULL);
    return 0;
}

static void test_getaddrinfo_numeric_error(void **state)
{
    (void)state;
    assert_int_equal(run_real(numeric_error_body, NULL), 0);
}

/* New (ctrio; Trio's getaddrinfo fast path, test_socket.py::test_getaddrinfo):
 * with a resolver installed, a numeric host and port are still answered by the
 * fast path: the resolver is not called, no thread starts, and the answer is
 * the system's. */
static int fast_path_body(void *arg)
{
    (void)arg;
    fake_resolver f;
    fake_init(&f);
    assert_null(ctrio_set_custom_hostname_resolver(&f.r));
    size_t threads = pool_threads();
    const char *hosts[] = {"127.0.0.1", "::1", "fe80::1%1", "0.0.0.0", "::ffff:1.2.3.4"};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        struct addrinfo h = hints_of(0, SOCK_STREAM, 0, 0), *res = NULL;
        int rc;
        ASSERT_CHECKPOINTS(rc = ctrio_getaddrinfo(hosts[i], "80", &h, &res));
        assert_int_equal(rc, 0);
        struct addrinfo *want = system_gai(hosts[i], "80", 0, SOCK_STREAM, 0);
        assert_same_results(res, want);
        freeaddrinfo(want);
        ctrio_freeaddrinfo(res);
    }
    /* A NULL host with a numeric port is numeric too (the wildcard with
     * AI_PASSIVE, loopback otherwise). */
    struct addrinfo h = hints_of(AF_INET, SOCK_DGRAM, 0, AI_PASSIVE), *res = NULL;
    assert_int_equal(ctrio_getaddrinfo(NULL, "53", &h, &res), 0);
    assert_int_equal(((struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr, htonl(INADDR_ANY));
    ctrio_freeaddrinfo(res);
    assert_int_equal(f.gai_calls, 0);
    assert_int_equal(f.free_calls, 0);
    assert_int_equal(pool_threads(), threads);
    assert_ptr_equal(ctrio_set_custom_hostname_resolver(NULL), &f.r);
    return 0;
}

static void test_numeric_fast_path_skips_resolver_and_threads(void **state)
{
    (void)state;
    assert_int_equal(run_real(fast_path_body, NULL), 0);
}

/* New (ctrio improves on Trio #1249): a lookup whose caller asked for
 * AI_NUMERICHOST|AI_NUMERICSERV (or AI_NUMERICHOST with no service) and that
 * fails is answered CTRIO_EAI_NONAME at once: no thread, no resolver. Trio
 * retries it pointlessly in a thread (trio/_socket.py's getaddrinfo). */
static int numeric_only_body(void *arg)
{
    (void)arg;
    fake_resolver f;
    fake_init(&f);
    ctrio_set_custom_hostname_resolver(&f.r);
    size_t threads = pool_threads();
    struct addrinfo *res = NULL;
    struct addrinfo h = hints_of(0, SOCK_STREAM, 0, AI_NUMERICHOST | AI_NUMERICSERV);
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_getaddrinfo("localhost", "80", &h, &res));
    assert_int_equal(rc, CTRIO_EAI_NONAME);
    assert_null(res);
    h = hints_of(0, SOCK_STREAM, 0, AI_NUMERICHOST);
    ASSERT_CHECKPOINTS(rc = ctrio_getaddrinfo("some.name.test", NULL, &h, &res));
    assert_int_equal(rc, CTRIO_EAI_NONAME);
    h = hints_of(0, SOCK_STREAM, 0, AI_NUMERICHOST | AI_NUMERICSERV);
    assert_int_equal(ctrio_getaddrinfo("127.0.0.1", "http", &h, &res), CTRIO_EAI_NONAME);
    assert_int_equal(f.gai_calls, 0);
    assert_int_equal(pool_threads(), threads);

    /* Only AI_NUMERICHOST with a service name: the service still needs a
     * lookup, so this one does reach the resolver. */
    h = hints_of(0, SOCK_STREAM, 0, AI_NUMERICHOST);
    assert_int_equal(ctrio_getaddrinfo("127.0.0.1", "http", &h, &res), 0);
    assert_int_equal(f.gai_calls, 1);
    assert_int_equal(f.hints.ai_flags, AI_NUMERICHOST);
    ctrio_freeaddrinfo(res);
    assert_int_equal(f.free_calls, 1);
    ctrio_set_custom_hostname_resolver(NULL);
    return 0;
}

static void test_numeric_only_flags_fail_without_thread(void **state)
{
    (void)state;
    assert_int_equal(run_real(numeric_only_body, NULL), 0);
}

/* ---- getaddrinfo: the slow path --------------------------------------------- */

/* Trio: tests/test_socket.py::test_getaddrinfo ("host", "port" answered by the
 * monkeypatched getaddrinfo with a checkpoint; "asdf" raising from a
 * blocking getaddrinfo). Here the blocking getaddrinfo is a
 * fake resolver: its answer (and its error) comes back as is. */
static int slow_resolver_body(void *arg)
{
    (void)arg;
    fake_resolver f;
    fake_init(&f);
    ctrio_set_custom_hostname_resolver(&f.r);
    struct addrinfo *res = NULL;
    int rc;
    uint64_t dc, ds;
    CP_DELTA_(rc = ctrio_getaddrinfo("host", "port", NULL, &res), dc, ds);
    (void)ds; /* the resolver itself does not yield: Trio's neither */
    assert_true(dc >= 1);
    assert_int_equal(rc, 0);
    assert_int_equal(f.gai_calls, 1);
    assert_string_equal(f.host, "host");
    assert_string_equal(f.service, "port");
    assert_int_equal(list_len(res), 2);
    ctrio_freeaddrinfo(res);

    /* "check raising an error from a blocking getaddrinfo" */
    f.gai_rc = CTRIO_EAI_AGAIN;
    res = (struct addrinfo *)&f;
    assert_int_equal(ctrio_getaddrinfo("asdf", "12345", NULL, &res), CTRIO_EAI_AGAIN);
    assert_null(res);
    /* -errno passes through too (EAI_SYSTEM is -errno) */
    f.gai_rc = -EIO;
    assert_int_equal(ctrio_getaddrinfo("asdf", "12345", NULL, &res), -EIO);
    assert_int_equal(f.gai_calls, 3);
    assert_int_equal(f.free_calls, 1); /* errors hand nothing out */
    ctrio_set_custom_hostname_resolver(NULL);
    return 0;
}

static void test_getaddrinfo_slow_path_resolver(void **state)
{
    (void)state;
    assert_int_equal(run_real(slow_resolver_body, NULL), 0);
}

/* New (the real thread path of Trio's ::test_getaddrinfo). "localhost" comes
 * from /etc/hosts: the lookup runs in a worker thread (the thread count grows,
 * which shows the count used by the "no thread" tests above can see one), is a
 * checkpoint, and answers what the system answers. */
static int localhost_body(void *arg)
{
    (void)arg;
    size_t threads = pool_threads();
    struct addrinfo h = hints_of(AF_INET, SOCK_STREAM, 0, 0), *res = NULL;
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_getaddrinfo("localhost", "80", &h, &res));
    assert_int_equal(rc, 0);
    assert_true(pool_threads() > threads);
    assert_non_null(res);
    const struct sockaddr_in *in = (const struct sockaddr_in *)res->ai_addr;
    assert_int_equal(in->sin_family, AF_INET);
    assert_int_equal(ntohs(in->sin_port), 80);
    assert_int_equal(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
    struct addrinfo *want = system_gai("localhost", "80", AF_INET, SOCK_STREAM, 0);
    assert_same_results(res, want);
    freeaddrinfo(want);
    ctrio_freeaddrinfo(res);

    /* AI_CANONNAME: the name is copied with the result. */
    h = hints_of(AF_INET, SOCK_STREAM, 0, AI_CANONNAME);
    assert_int_equal(ctrio_getaddrinfo("localhost", NULL, &h, &res), 0);
    assert_non_null(res->ai_canonname);
    assert_string_equal(res->ai_canonname, "localhost");
    ctrio_freeaddrinfo(res);

    /* A service name needs the slow path too, and its errors map to
     * CTRIO_EAI_* codes from the thread as well. */
    h = hints_of(AF_INET, SOCK_STREAM, 0, 0);
    res = (struct addrinfo *)&h;
    assert_int_equal(ctrio_getaddrinfo("127.0.0.1", "no-such-service-ctrio", &h, &res),
                     CTRIO_EAI_SERVICE);
    assert_null(res);
    return 0;
}

static void test_getaddrinfo_localhost_in_thread(void **state)
{
    (void)state;
    assert_int_equal(run_real(localhost_body, NULL), 0);
}

/* Trio: ::test_getaddrinfo's assert_checkpoints, cancelled first (no Trio
 * test; probed): a lookup in a cancelled scope
 * returns -ECANCELED before any lookup: no resolver call, no thread, on the
 * numeric and the slow path alike; getnameinfo and getprotobyname too. */
static int precancel_body(void *arg)
{
    (void)arg;
    fake_resolver f;
    fake_init(&f);
    size_t threads = pool_threads();
    ctrio_cancel_scope cs;
    ctrio_move_on_at(&cs, -INFINITY); /* a deadline in the past */
    struct addrinfo *res = (struct addrinfo *)&f;
    assert_int_equal(ctrio_getaddrinfo("127.0.0.1", "80", NULL, &res), -ECANCELED);
    assert_null(res);
    assert_int_equal(ctrio_getaddrinfo("localhost", "80", NULL, &res), -ECANCELED);
    ctrio_set_custom_hostname_resolver(&f.r);
    assert_int_equal(ctrio_getaddrinfo("name.test", "80", NULL, &res), -ECANCELED);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    char host[64], serv[16];
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host,
                                       serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV),
                     -ECANCELED);
    ctrio_set_custom_hostname_resolver(NULL);
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host,
                                       serv, sizeof serv, 0),
                     -ECANCELED);
    assert_int_equal(ctrio_getprotobyname("tcp"), -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, -ECANCELED), 0);
    assert_int_equal(f.gai_calls, 0);
    assert_int_equal(f.gni_calls, 0);
    assert_int_equal(pool_threads(), threads);
    return 0;
}

static void test_lookups_precancelled(void **state)
{
    (void)state;
    assert_int_equal(run_real(precancel_body, NULL), 0);
}

/* Cancelling a lookup, through the hook (Trio: the resolver is awaited in the
 * calling task, so cancelling it cancels the resolver): a resolver that sleeps
 * is cancelled by the scope's deadline, on the mock clock, at exactly that
 * time; nothing is handed out, so nothing is freed. */
static int resolver_cancel_body(void *arg)
{
    (void)arg;
    fake_resolver f;
    fake_init(&f);
    f.sleep_first = 10;
    ctrio_set_custom_hostname_resolver(&f.r);
    double t0 = ctrio_current_time();
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 1.0);
    struct addrinfo *res = (struct addrinfo *)&f;
    int rc = ctrio_getaddrinfo("slow.test", "80", NULL, &res);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_true(ctrio_current_time() - t0 == 1.0);
    assert_int_equal(f.gai_calls, 1);
    assert_int_equal(f.sleep_rc, -ECANCELED);
    assert_null(res);
    assert_int_equal(f.free_calls, 0);
    /* uncancelled, the same resolver answers after its 10 s */
    res = NULL;
    assert_int_equal(ctrio_getaddrinfo("slow.test", "80", NULL, &res), 0);
    assert_true(ctrio_current_time() - t0 == 11.0);
    assert_int_equal(list_len(res), 2);
    ctrio_freeaddrinfo(res);
    assert_int_equal(f.free_calls, 1);
    ctrio_set_custom_hostname_resolver(NULL);
    return 0;
}

static void test_getaddrinfo_resolver_cancelled(void **state)
{
    (void)state;
    assert_int_equal(run_mock(resolver_cancel_body, NULL), 0);
}

/* Cancelling a lookup (Trio: abandon-on-cancel threads, probed; generic
 * tests/test_threads.py::test_run_in_worker_thread_cancellation): a real
 * lookup cancelled while its thread runs returns -ECANCELED at once with no
 * result; the thread finishes on its own, frees its job, and gives its slot
 * back only then (as trio/_socket.py's getaddrinfo, with abandon_on_cancel).
 * Whether the cancel beats the (fast) lookup is a race, so both outcomes are
 * accepted, each checked for consistency; the test waits for every slot to
 * come back, so that a leaked job would show under LeakSanitizer. */
typedef struct abandon_ctx {
    ctrio_cancel_scope cs;
    int rc;
    struct addrinfo *res;
    double took;
} abandon_ctx;

static int abandon_child(void *arg)
{
    abandon_ctx *c = arg;
    ctrio_cancel_scope_open(&c->cs);
    struct addrinfo h = hints_of(AF_INET, SOCK_STREAM, 0, 0);
    double t0 = real_now();
    c->rc = ctrio_getaddrinfo("localhost", "80", &h, &c->res);
    c->took = real_now() - t0;
    ctrio_cancel_scope_close(&c->cs, c->rc);
    return 0;
}

static int abandon_body(void *arg)
{
    int *abandoned = arg;
    for (int i = 0; i < 8; i++) {
        abandon_ctx c;
        memset(&c, 0, sizeof c);
        c.res = (struct addrinfo *)&c;
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        assert_int_equal(ctrio_start_soon(&n, abandon_child, &c), 0);
        /* the child is blocked in its lookup: cancel it */
        assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
        ctrio_cancel_scope_cancel(&c.cs);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        if (c.rc == -ECANCELED) {
            ++*abandoned;
            assert_null(c.res);
            assert_true(c.took < 0.5); /* at once, not after the lookup */
        } else {
            assert_int_equal(c.rc, 0);
            assert_non_null(c.res);
            assert_int_equal(ntohl(((struct sockaddr_in *)c.res->ai_addr)->sin_addr.s_addr),
                             INADDR_LOOPBACK);
            ctrio_freeaddrinfo(c.res);
        }
    }
    assert_int_equal(wait_dns_slots_back(), 20);
    return 0;
}

static void test_getaddrinfo_abandoned_thread(void **state)
{
    (void)state;
    int threads = count_threads();
    int abandoned = 0;
    assert_int_equal(run_real(abandon_body, &abandoned), 0);
    /* every worker has left once the run is over (a thread of an earlier
     * run may still have been on its way out when we counted) */
    assert_true(wait_threads_at_most(threads, 3.0) <= threads);
    print_message("    (%d of 8 lookups were abandoned)\n", abandoned);
}

/* New (ctrio encodes non-ASCII names with IDNA 2008 + UTS-46 through
 * libidn2): a non-ASCII host never crashes the lookup; it fails cleanly with
 * a CTRIO_EAI_* code that ctrio_strerror names. "bücher.invalid" encodes
 * (to "xn--bcher-kva.invalid") and is then not found (CTRIO_EAI_NONAME, or
 * AGAIN/NODATA without DNS; the lookup is bounded by a 2 s scope in case a
 * DNS server does not answer); bytes that are not UTF-8 and a character IDNA
 * forbids can never be encoded: CTRIO_EAI_IDN_ENCODE, at once, with no
 * thread and after a checkpoint. */
static int non_ascii_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 2.0);
    struct addrinfo *res = (struct addrinfo *)&res;
    struct addrinfo h = hints_of(AF_INET, SOCK_STREAM, 0, 0);
    int rc = ctrio_getaddrinfo("b\xc3\xbc" "cher.invalid", "80", &h, &res);
    ctrio_cancel_scope_close(&cs, rc);
    assert_true(rc == CTRIO_EAI_NONAME || rc == CTRIO_EAI_AGAIN || rc == CTRIO_EAI_NODATA ||
                rc == CTRIO_EAI_FAIL || rc == -ECANCELED);
    assert_null(res);
    if (rc != -ECANCELED)
        assert_non_null(strstr(ctrio_strerror(rc), "CTRIO_EAI_"));

    size_t threads = pool_threads();
    const char *bad[] = {"\xff\xfe.invalid", "a\xe2\x92\x88" "b.invalid",
                         "b\xc3\xbc" "cher\xc3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        res = (struct addrinfo *)&res;
        ASSERT_CHECKPOINTS(rc = ctrio_getaddrinfo(bad[i], "80", &h, &res));
        assert_int_equal(rc, CTRIO_EAI_IDN_ENCODE);
        assert_true(is_eai(rc));
        assert_null(res);
        assert_non_null(strstr(ctrio_strerror(rc), "CTRIO_EAI_IDN_ENCODE"));
    }
    assert_int_equal(pool_threads(), threads);
    assert_int_equal(wait_dns_slots_back(), 20);
    return 0;
}

static void test_getaddrinfo_non_ascii_fails_cleanly(void **state)
{
    (void)state;
    assert_int_equal(run_real(non_ascii_body, NULL), 0);
}

/* Trio: tests/test_socket.py::test_idna and the "IDNA encoding is handled
 * before calling the special object" part of ::test_custom_hostname_resolver;
 * A non-ASCII host reaches the resolver IDNA 2008 + UTS-46
 * encoded ("föö" -> "xn--f-1gaa", "faß.de" -> "xn--fa-hia.de", upper case
 * mapped to lower), with the caller's flags unchanged; an already encoded
 * name passes as is. Whatever the process locale. */
static int idna_body(void *arg)
{
    (void)arg;
    fake_resolver f;
    fake_init(&f);
    ctrio_set_custom_hostname_resolver(&f.r);
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"f\xc3\xb6\xc3\xb6", "xn--f-1gaa"},
        {"F\xc3\x96\xc3\x96", "xn--f-1gaa"},
        {"fa\xc3\x9f.de", "xn--fa-hia.de"},
        {"xn--fa-hia.de", "xn--fa-hia.de"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct addrinfo *res = NULL;
        assert_int_equal(ctrio_getaddrinfo(cases[i].in, "foo", NULL, &res), 0);
        assert_int_equal(f.gai_calls, (int)i + 1);
        assert_string_equal(f.host, cases[i].out);
        assert_string_equal(f.service, "foo");
        assert_int_equal(f.hints.ai_flags, 0);
        ctrio_freeaddrinfo(res);
    }
    ctrio_set_custom_hostname_resolver(NULL);
    return 0;
}

static void test_getaddrinfo_idna_before_resolver(void **state)
{
    (void)state;
    assert_int_equal(run_real(idna_body, NULL), 0);
}

/* ---- the hook ------------------------------------------------------------------ */

/* Trio: tests/test_socket.py::test_custom_hostname_resolver.
 * set returns the previous resolver (none at first); every argument reaches
 * the resolver unchanged for a non-numeric lookup ("localhost" with a
 * service name); a numeric lookup never does; setting NULL restores the
 * system's lookup. ctrio: the results are copied, the resolver's own list is
 * released through its freeaddrinfo right away (once per answer), and the
 * copy survives it. */
static int hook_body(void *arg)
{
    (void)arg;
    fake_resolver f;
    fake_init(&f);
    assert_null(ctrio_set_custom_hostname_resolver(&f.r));

    struct addrinfo vals[] = {
        hints_of(AF_INET, 0, 0, 0),
        hints_of(0, SOCK_STREAM, 0, 0),
        hints_of(0, 0, IPPROTO_TCP, 0),
        hints_of(0, 0, 0, AI_CANONNAME),
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        struct addrinfo *res = NULL;
        assert_int_equal(ctrio_getaddrinfo("localhost", "foo", &vals[i], &res), 0);
        assert_int_equal(f.gai_calls, (int)i + 1);
        assert_string_equal(f.host, "localhost");
        assert_string_equal(f.service, "foo");
        assert_false(f.hints_null);
        assert_int_equal(f.hints.ai_family, vals[i].ai_family);
        assert_int_equal(f.hints.ai_socktype, vals[i].ai_socktype);
        assert_int_equal(f.hints.ai_protocol, vals[i].ai_protocol);
        assert_int_equal(f.hints.ai_flags, vals[i].ai_flags);
        /* freed through the resolver at once; the copy is ours */
        assert_int_equal(f.free_calls, (int)i + 1);
        assert_int_equal(f.nout, 0);
        assert_int_equal(list_len(res), 2);
        assert_int_equal(res->ai_family, AF_INET);
        assert_int_equal(res->ai_socktype, vals[i].ai_socktype);
        assert_int_equal(res->ai_addrlen, sizeof(struct sockaddr_in));
        const struct sockaddr_in *in = (const struct sockaddr_in *)res->ai_addr;
        assert_int_equal(ntohs(in->sin_port), 4242);
        char txt[64];
        assert_non_null(inet_ntop(AF_INET, &in->sin_addr, txt, sizeof txt));
        assert_string_equal(txt, "192.0.2.1");
        if (vals[i].ai_flags & AI_CANONNAME) {
            assert_non_null(res->ai_canonname);
            assert_string_equal(res->ai_canonname, "fake.test");
        } else {
            assert_null(res->ai_canonname);
        }
        const struct addrinfo *b = res->ai_next;
        assert_int_equal(b->ai_family, AF_INET6);
        assert_int_equal(b->ai_addrlen, sizeof(struct sockaddr_in6));
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)b->ai_addr;
        assert_non_null(inet_ntop(AF_INET6, &in6->sin6_addr, txt, sizeof txt));
        assert_string_equal(txt, "2001:db8::1");
        assert_null(b->ai_canonname);
        ctrio_freeaddrinfo(res);
    }

    /* A NULL host or service reaches it as NULL. */
    struct addrinfo *res = NULL;
    assert_int_equal(ctrio_getaddrinfo("name.test", NULL, NULL, &res), 0);
    assert_true(f.service_null);
    assert_false(f.host_null);
    ctrio_freeaddrinfo(res);
    assert_int_equal(ctrio_getaddrinfo(NULL, "http", NULL, &res), 0);
    assert_true(f.host_null);
    assert_string_equal(f.service, "http");
    ctrio_freeaddrinfo(res);
    int calls = f.gai_calls;

    /* Numeric: never the resolver. */
    assert_int_equal(ctrio_getaddrinfo("127.0.0.1", "80", NULL, &res), 0);
    assert_int_equal(res->ai_family, AF_INET);
    ctrio_freeaddrinfo(res);
    assert_int_equal(f.gai_calls, calls);

    /* A resolver that answers "success" with nothing: no name. */
    f.answer_empty = true;
    res = (struct addrinfo *)&f;
    assert_int_equal(ctrio_getaddrinfo("empty.test", NULL, NULL, &res), CTRIO_EAI_NONAME);
    assert_null(res);
    f.answer_empty = false;
    assert_int_equal(f.free_calls, f.gai_calls - 1);

    /* Set it back to none: the system answers again ("localhost" from
     * /etc/hosts) and the resolver sees nothing more. */
    assert_ptr_equal(ctrio_set_custom_hostname_resolver(NULL), &f.r);
    calls = f.gai_calls;
    struct addrinfo h = hints_of(AF_INET, SOCK_STREAM, 0, 0);
    assert_int_equal(ctrio_getaddrinfo("localhost", "80", &h, &res), 0);
    assert_int_equal(ntohl(((struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr),
                     INADDR_LOOPBACK);
    ctrio_freeaddrinfo(res);
    assert_int_equal(f.gai_calls, calls);
    assert_null(ctrio_set_custom_hostname_resolver(NULL));
    return 0;
}

static void test_custom_hostname_resolver(void **state)
{
    (void)state;
    assert_int_equal(run_real(hook_body, NULL), 0);
}

/* Trio: ::test_custom_hostname_resolver (the hooks live in a RunVar): a
 * resolver set in one run is gone in the next. */
static int set_resolver_body(void *arg)
{
    assert_null(ctrio_set_custom_hostname_resolver(arg));
    return 0;
}

static int check_no_resolver_body(void *arg)
{
    (void)arg;
    assert_null(ctrio_set_custom_hostname_resolver(NULL));
    return 0;
}

static void test_resolver_is_per_run(void **state)
{
    (void)state;
    fake_resolver f;
    fake_init(&f);
    assert_int_equal(run_mock(set_resolver_body, &f.r), 0);
    assert_int_equal(run_mock(check_no_resolver_body, NULL), 0);
    /* Outside a run there is nothing to set (misuse: a message, NULL), and
     * the next run still starts without one. */
    assert_null(ctrio_set_custom_hostname_resolver(&f.r));
    assert_int_equal(run_mock(check_no_resolver_body, NULL), 0);
}

/* ---- getnameinfo ----------------------------------------------------------------- */

/* Trio: tests/test_socket.py::test_getnameinfo. Numeric flags give
 * the numbers; flags 0 give what the blocking getnameinfo gives;
 * NI_NUMERICHOST / NI_NUMERICSERV each make one half numeric. Every call is
 * a checkpoint. */
static int gni_body(void *arg)
{
    (void)arg;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(1234);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_getnameinfo((struct sockaddr *)&sin, sizeof sin, host,
                                              sizeof host, serv, sizeof serv,
                                              NI_NUMERICHOST | NI_NUMERICSERV));
    assert_int_equal(rc, 0);
    assert_string_equal(host, "127.0.0.1");
    assert_string_equal(serv, "1234");

    /* IPv6 too, with a scope id */
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(8080);
    s6.sin6_addr = in6addr_loopback;
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&s6, sizeof s6, host, sizeof host,
                                       serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV),
                     0);
    assert_string_equal(host, "::1");
    assert_string_equal(serv, "8080");

    /* Blocking call to get the expected values. */
    sin.sin_port = htons(80);
    char want_host[NI_MAXHOST], want_serv[NI_MAXSERV];
    assert_int_equal(getnameinfo((struct sockaddr *)&sin, sizeof sin, want_host,
                                 sizeof want_host, want_serv, sizeof want_serv, 0),
                     0);
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host,
                                       serv, sizeof serv, 0),
                     0);
    assert_string_equal(host, want_host);
    assert_string_equal(serv, want_serv);
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host,
                                       serv, sizeof serv, NI_NUMERICHOST),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_string_equal(serv, want_serv);
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host,
                                       serv, sizeof serv, NI_NUMERICSERV),
                     0);
    assert_string_equal(host, want_host);
    assert_string_equal(serv, "80");

    /* Only the host, or only the service. */
    memset(serv, 'x', sizeof serv);
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host,
                                       NULL, 0, NI_NUMERICHOST),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(serv[0], 'x');
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&sin, sizeof sin, NULL, 0, serv,
                                       sizeof serv, NI_NUMERICSERV),
                     0);
    assert_string_equal(serv, "80");
    return 0;
}

static void test_getnameinfo(void **state)
{
    (void)state;
    assert_int_equal(run_real(gni_body, NULL), 0);
}

/* Trio: tests/test_socket.py::test_getnameinfo ("getnameinfo requires a
 * numeric address": in C the address is a sockaddr, so the failures are a
 * sockaddr the system cannot read and a buffer too small). Errors
 * are CTRIO_EAI_* codes, after a checkpoint; bad arguments are -EINVAL. The
 * caller's buffer is never written past hostlen. */
static int gni_error_body(void *arg)
{
    (void)arg;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(80);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    int rc;
    /* a short AF_INET address */
    ASSERT_CHECKPOINTS(rc = ctrio_getnameinfo((struct sockaddr *)&sin, 4, host, sizeof host,
                                              serv, sizeof serv, NI_NUMERICHOST));
    assert_int_equal(rc, CTRIO_EAI_FAMILY);
    /* a family getnameinfo does not know */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_APPLETALK;
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&ss, sizeof ss, host, sizeof host,
                                       serv, sizeof serv, 0),
                     CTRIO_EAI_FAMILY);
    /* a host buffer too small: nothing written past its end */
    char small[8 + 4];
    memset(small, 'C', sizeof small);
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&sin, sizeof sin, small, 4, serv,
                                       sizeof serv, NI_NUMERICHOST),
                     CTRIO_EAI_OVERFLOW);
    for (size_t i = 4; i < sizeof small; i++)
        assert_int_equal(small[i], 'C');
    /* argument errors */
    assert_int_equal(ctrio_getnameinfo(NULL, sizeof sin, host, sizeof host, NULL, 0, 0),
                     -EINVAL);
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&sin, sizeof sin, NULL, 10, NULL, 0,
                                       0),
                     -EINVAL);
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&sin,
                                       (socklen_t)sizeof(struct sockaddr_storage) + 1, host,
                                       sizeof host, NULL, 0, 0),
                     -EINVAL);
    return 0;
}

static void test_getnameinfo_errors(void **state)
{
    (void)state;
    assert_int_equal(run_real(gni_error_body, NULL), 0);
}

/* Trio: tests/test_socket.py::test_custom_hostname_resolver (the getnameinfo
 * part: delegated with the sockaddr and flags unchanged):
 * getnameinfo has no fast path, so even numeric flags go to the resolver;
 * its errors come back as they are. No thread starts. */
static int gni_hook_body(void *arg)
{
    (void)arg;
    fake_resolver f;
    fake_init(&f);
    ctrio_set_custom_hostname_resolver(&f.r);
    size_t threads = pool_threads();
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(99);
    s6.sin6_scope_id = 7;
    char host[32], serv[8];
    int flags = NI_NUMERICHOST | NI_NUMERICSERV;
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&s6, sizeof s6, host, sizeof host,
                                       serv, sizeof serv, flags),
                     0);
    assert_string_equal(host, "custom_gni");
    assert_string_equal(serv, "svc");
    assert_int_equal(f.gni_calls, 1);
    assert_int_equal(f.gni_salen, sizeof s6);
    assert_memory_equal(&f.gni_sa, &s6, sizeof s6);
    assert_int_equal(f.gni_flags, flags);
    assert_int_equal(f.gni_hostlen, sizeof host);
    assert_int_equal(f.gni_servlen, sizeof serv);
    f.gni_rc = CTRIO_EAI_NONAME;
    assert_int_equal(ctrio_getnameinfo((struct sockaddr *)&s6, sizeof s6, host, sizeof host,
                                       serv, sizeof serv, NI_NAMEREQD),
                     CTRIO_EAI_NONAME);
    assert_int_equal(f.gni_flags, NI_NAMEREQD);
    assert_int_equal(f.gni_calls, 2);
    assert_int_equal(f.gai_calls, 0);
    assert_int_equal(pool_threads(), threads);
    ctrio_set_custom_hostname_resolver(NULL);
    return 0;
}

static void test_getnameinfo_custom_resolver(void **state)
{
    (void)state;
    assert_int_equal(run_real(gni_hook_body, NULL), 0);
}

/* ---- getprotobyname -------------------------------------------------------------- */

/* Trio: tests/test_socket.py::test_getprotobyname ("udp" -> 17, "tcp" -> 6);
 * an unknown name is an error (-ENOENT here). A checkpoint. */
static int proto_body(void *arg)
{
    (void)arg;
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_getprotobyname("udp"));
    assert_int_equal(rc, 17);
    ASSERT_CHECKPOINTS(rc = ctrio_getprotobyname("tcp"));
    assert_int_equal(rc, 6);
    assert_int_equal(ctrio_getprotobyname("icmp"), IPPROTO_ICMP);
    ASSERT_CHECKPOINTS(rc = ctrio_getprotobyname("no-such-protocol-ctrio"));
    assert_int_equal(rc, -ENOENT);
    assert_int_equal(ctrio_getprotobyname(NULL), -EINVAL);
    return 0;
}

static void test_getprotobyname(void **state)
{
    (void)state;
    assert_int_equal(run_real(proto_body, NULL), 0);
}

/* Trio: ::test_getprotobyname with the header's contract ("the protocol number
 * of a name, or -ENOENT; a checkpoint"): a name too long to be any protocol's
 * is not found, after a checkpoint, like any other unknown name. */
static int proto_long_body(void *arg)
{
    (void)arg;
    char name[80];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_getprotobyname(name));
    assert_int_equal(rc, -ENOENT);
    return 0;
}

static void test_getprotobyname_long_name(void **state)
{
    (void)state;
    /* Found a bug (fixed): a name of 64 bytes or more returns -EINVAL at once, with no
     * checkpoint (the job's fixed name buffer). See the report. */
    assert_int_equal(run_real(proto_long_body, NULL), 0);
}

/* ---- error codes ----------------------------------------------------------------- */

/* New (ctrio): resolver failures are CTRIO_EAI_* codes, all distinct, all
 * below every -errno value (so they never collide with one), each named by
 * ctrio_strerror; the system's EAI_* failures come back as the matching
 * code, from the fast path and from the thread. */
static int eai_map_body(void *arg)
{
    (void)arg;
    struct addrinfo *res = NULL;
    struct addrinfo h = hints_of(12345, 0, 0, 0);
    assert_int_equal(ctrio_getaddrinfo("127.0.0.1", "80", &h, &res), CTRIO_EAI_FAMILY);
    h = hints_of(0, 0, 0, 0x7fff0000);
    assert_int_equal(ctrio_getaddrinfo("127.0.0.1", "80", &h, &res), CTRIO_EAI_BADFLAGS);
    h = hints_of(0, SOCK_STREAM, 0, AI_NUMERICHOST);
    assert_int_equal(ctrio_getaddrinfo("not-numeric", "80", &h, &res), CTRIO_EAI_NONAME);
    h = hints_of(AF_INET, SOCK_STREAM, 0, AI_NUMERICHOST);
    int rc = ctrio_getaddrinfo("::1", "80", &h, &res); /* wrong family */
    assert_true(rc == CTRIO_EAI_ADDRFAMILY || rc == CTRIO_EAI_NONAME);
    h = hints_of(0, SOCK_STREAM, 0, 0);
    assert_int_equal(ctrio_getaddrinfo("127.0.0.1", "no-such-service-ctrio", &h, &res),
                     CTRIO_EAI_SERVICE);
    assert_null(res);
    assert_int_equal(ctrio_getaddrinfo("127.0.0.1", "80", &h, NULL), -EINVAL);
    return 0;
}

static void test_eai_codes(void **state)
{
    (void)state;
    static const int codes[] = {
        CTRIO_EAI_BADFLAGS, CTRIO_EAI_NONAME,  CTRIO_EAI_AGAIN,      CTRIO_EAI_FAIL,
        CTRIO_EAI_FAMILY,   CTRIO_EAI_SOCKTYPE, CTRIO_EAI_SERVICE,    CTRIO_EAI_MEMORY,
        CTRIO_EAI_OVERFLOW, CTRIO_EAI_NODATA,  CTRIO_EAI_ADDRFAMILY, CTRIO_EAI_IDN_ENCODE,
        CTRIO_EAI_SYSTEM,
    };
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        assert_true(codes[i] < -4095);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(codes[i], codes[j]);
        const char *s = ctrio_strerror(codes[i]);
        assert_non_null(s);
        assert_non_null(strstr(s, "CTRIO_EAI_"));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(s, ctrio_strerror(codes[j]));
    }
    /* and glibc's numbering is what the mapping assumes */
    assert_int_equal(CTRIO_EAI_NONAME, CTRIO_EAI_BASE + EAI_NONAME);
    assert_int_equal(CTRIO_EAI_SOCKTYPE, CTRIO_EAI_BASE + EAI_SOCKTYPE);
    assert_int_equal(CTRIO_EAI_AGAIN, CTRIO_EAI_BASE + EAI_AGAIN);
    assert_int_equal(CTRIO_EAI_SYSTEM, CTRIO_EAI_BASE + EAI_SYSTEM);
    /* no -errno value is named as a resolver failure */
    for (int e = 1; e < 4096; e++)
        assert_null(strstr(ctrio_strerror(-e), "CTRIO_EAI_"));
    assert_int_equal(run_real(eai_map_body, NULL), 0);
}

/* ---- limiters -------------------------------------------------------------------- */

/* New (ctrio improves on Trio #10: lookups share Trio's default
 * CapacityLimiter(40) with every other thread job): with all 40 slots of
 * to_thread_run_sync taken by blocked jobs, a name lookup still runs. */
static atomic_int release_jobs;

static int blocked_job(void *arg)
{
    (void)arg;
    double until = real_now() + 5.0; /* bounded */
    while (!atomic_load(&release_jobs) && real_now() < until)
        usleep(1000);
    return 0;
}

static int hog_task(void *arg)
{
    (void)arg;
    return ctrio_to_thread_run_sync(blocked_job, NULL, 0);
}

static int limiter_body(void *arg)
{
    (void)arg;
    atomic_store(&release_jobs, 0);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < 40; i++)
        assert_int_equal(ctrio_start_soon(&n, hog_task, NULL), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_semaphore_value(&ctrio__tls_run->thread_limiter), 0);
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 2.0);
    struct addrinfo h = hints_of(AF_INET, SOCK_STREAM, 0, 0), *res = NULL;
    int rc = ctrio_getaddrinfo("localhost", "80", &h, &res);
    ctrio_cancel_scope_close(&cs, rc);
    atomic_store(&release_jobs, 1);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(rc, 0);
    assert_non_null(res);
    ctrio_freeaddrinfo(res);
    return 0;
}

static void test_lookups_have_their_own_limiter(void **state)
{
    (void)state;
    int rc = run_real(limiter_body, NULL);
    atomic_store(&release_jobs, 1);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_getaddrinfo_numeric),
        TEST(test_getaddrinfo_numeric_error),
        TEST(test_numeric_fast_path_skips_resolver_and_threads),
        TEST(test_numeric_only_flags_fail_without_thread),
        TEST(test_getaddrinfo_slow_path_resolver),
        TEST(test_getaddrinfo_localhost_in_thread),
        TEST(test_lookups_precancelled),
        TEST(test_getaddrinfo_resolver_cancelled),
        TEST(test_getaddrinfo_abandoned_thread),
        TEST(test_getaddrinfo_non_ascii_fails_cleanly),
        TEST(test_getaddrinfo_idna_before_resolver),
        TEST(test_custom_hostname_resolver),
        TEST(test_resolver_is_per_run),
        TEST(test_getnameinfo),
        TEST(test_getnameinfo_errors),
        TEST(test_getnameinfo_custom_resolver),
        TEST(test_getprotobyname),
        TEST(test_getprotobyname_long_name),
        TEST(test_eai_codes),
        TEST(test_lookups_have_their_own_limiter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
