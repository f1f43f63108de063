/*
 * test_listeners.c — listeners: ctrio_open_tcp_listeners, the SocketListener
 * (ctrio_socket_listener_new / ctrio_listener_accept / ctrio_listener_close),
 * ctrio_listeners_close, and Unix-domain listeners (ctrio_open_unix_listener).
 *
 * Ports Trio's tests/test_highlevel_open_tcp_listeners.py and the parts of
 * tests/test_highlevel_socket.py::test_SocketListener that concern
 * construction and closing, plus ctrio's own improvements: one port for every
 * listener on port 0 (Trio #283), the spare-descriptor trick on EMFILE (Trio
 * #73), and the safe unlink of a Unix listener's path (Trio #279).
 *
 * Real sockets use loopback only (127.0.0.1, ::1, "localhost") or AF_UNIX in
 * a private temporary directory (or the abstract namespace). Tests that need
 * exact control (the backlog passed to listen, failures part-way) use a fake
 * socket factory and a fake resolver, as Trio does.
 *
 * Threads: a Unix listener on a filesystem path binds in a worker thread, and
 * "localhost" is looked up in one, so this program is also a TSan test.
 */
#include "net_support.h"

#include <ctrio_testing.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------- */

/* The port of a sockaddr (AF_INET / AF_INET6), or -1. */
static int sa_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return -1;
}

/* getsockname of a socket, formatted ("127.0.0.1:80", "[::]:80", a path);
 * returns the port (or 0 for AF_UNIX). */
static int sock_name(ctrio_socket *s, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(ctrio_socket_getsockname(s, (struct sockaddr *)&ss, &len), 0);
    if (buf)
        assert_true(ctrio_sockaddr_format((struct sockaddr *)&ss, len, buf, size) >= 0);
    return ss.ss_family == AF_UNIX ? 0 : sa_port(&ss);
}

static int sock_peer(ctrio_socket *s, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(ctrio_socket_getpeername(s, (struct sockaddr *)&ss, &len), 0);
    assert_true(ctrio_sockaddr_format((struct sockaddr *)&ss, len, buf, size) >= 0);
    return sa_port(&ss);
}

static int listener_port(ctrio_listener *l)
{
    return sock_name(ctrio_socket_listener_socket(l), NULL, 0);
}

/* Trio's testing.open_stream_to_socket_listener: connect to a listener,
 * mapping a wildcard address to the loopback of its family (Trio:
 * tests/test_testing.py::test_open_stream_to_socket_listener). */
static int connect_to_listener(ctrio_listener *l, ctrio_stream **out)
{
    ctrio_socket *s = ctrio_socket_listener_socket(l);
    int port = listener_port(l);
    const char *host = ctrio_socket_family(s) == AF_INET6 ? "::1" : "127.0.0.1";
    return ctrio_open_tcp_stream(host, port, out);
}

/* recv_exactly, tmpdir_make / tmpdir_remove (a private temporary directory
 * for Unix socket paths) and exists are in net_support.c. */

/* A unique abstract AF_UNIX name for this process. */
static void abstract_name(char *buf, size_t size)
{
    static int counter;
    snprintf(buf, size, "@ctrio-test-listeners-%d-%d", (int)getpid(), ++counter);
}

/* ---- a fake network (Trio's FakeSocketFactory / FakeHostnameResolver) ------ */

#define FAKE_MAX 64

typedef struct fake_factory fake_factory;

typedef struct fake_sock {
    fake_factory *f;
    int family;
    int closed;  /* times ops->close was called */
    int backlog; /* -1 until listen */
    int port;    /* bound port (0: not bound) */
    bool poison_listen;
} fake_sock;

struct fake_factory {
    ctrio_socket_factory hook;
    fake_sock socks[FAKE_MAX];
    size_t n;
    size_t poison_at;     /* 1-based: the n-th socket's listen fails with -EIO; 0 none */
    int fail_v4, fail_v6; /* socket() of that family fails with this (0: works) */
    int next_port;        /* the port a bind to port 0 gets; increments */
    int v6_inuse_port;    /* a v6 bind to this port gives -EADDRINUSE (-2: any port) */
};

static int fake_bind(ctrio_socket *s, const struct sockaddr *addr, socklen_t len)
{
    (void)len;
    fake_sock *fs = ctrio_socket_impl(s);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    int port = sa_port(&ss);
    if (fs->family == AF_INET6 &&
        (fs->f->v6_inuse_port == -2 || (port != 0 && port == fs->f->v6_inuse_port)))
        return -EADDRINUSE;
    fs->port = port ? port : fs->f->next_port++;
    return 0;
}

static int fake_listen(ctrio_socket *s, int backlog)
{
    fake_sock *fs = ctrio_socket_impl(s);
    assert_int_equal(fs->backlog, -1); /* listen once */
    fs->backlog = backlog;
    return fs->poison_listen ? -EIO : 0;
}

/* SO_ACCEPTCONN: whether listen was called */
static int fake_getsockopt(ctrio_socket *s, int level, int name, void *val, socklen_t *len)
{
    fake_sock *fs = ctrio_socket_impl(s);
    return fake_sockopt_acceptconn(level, name, val, len, fs->backlog >= 0);
}

static int fake_getsockname(ctrio_socket *s, struct sockaddr *addr, socklen_t *len)
{
    fake_sock *fs = ctrio_socket_impl(s);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t n;
    if (fs->family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)fs->port);
        n = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)fs->port);
        n = sizeof *a;
    }
    memcpy(addr, &ss, *len < n ? *len : n);
    *len = n;
    return 0;
}

static int fake_close(ctrio_socket *s)
{
    fake_sock *fs = ctrio_socket_impl(s);
    fs->closed++;
    return 0;
}

static const ctrio_socket_ops fake_ops = {
    .bind = fake_bind,
    .listen = fake_listen,
    .setsockopt = fake_setsockopt_ignore,
    .getsockopt = fake_getsockopt,
    .getsockname = fake_getsockname,
    .close = fake_close,
};

static int fake_socket(void *ctx, int family, int type, int protocol, ctrio_socket **out)
{
    fake_factory *f = ctx;
    if (family == AF_INET && f->fail_v4)
        return f->fail_v4;
    if (family == AF_INET6 && f->fail_v6)
        return f->fail_v6;
    assert_true(f->n < FAKE_MAX);
    fake_sock *fs = &f->socks[f->n++];
    memset(fs, 0, sizeof *fs);
    fs->f = f;
    fs->family = family;
    fs->backlog = -1;
    fs->poison_listen = f->poison_at == f->n;
    return ctrio_socket_new_custom(&fake_ops, fs, family, type, protocol, out);
}

static void fake_factory_init(fake_factory *f)
{
    memset(f, 0, sizeof *f);
    f->hook.ctx = f;
    f->hook.socket = fake_socket;
    f->next_port = 40000;
    f->v6_inuse_port = -1;
}

/* The fake resolver answers every name with its list of families (each with
 * a made-up address of that family and the service's port). */
typedef struct fake_resolver {
    ctrio_hostname_resolver hook;
    int families[4];
    size_t n;
    int calls;
} fake_resolver;

static int fake_gai(void *ctx, const char *host, const char *service, const struct addrinfo *hints,
                    struct addrinfo **res)
{
    fake_resolver *r = ctx;
    r->calls++;
    assert_non_null(host);
    /* open_tcp_listeners asks for passive stream addresses of any family */
    assert_non_null(hints);
    assert_true(hints->ai_flags & AI_PASSIVE);
    assert_int_equal(hints->ai_family, AF_UNSPEC);
    assert_int_equal(hints->ai_socktype, SOCK_STREAM);
    int port = service ? atoi(service) : 0;
    struct addrinfo *head = NULL, **tail = &head;
    for (size_t i = 0; i < r->n; i++) {
        struct addrinfo *ai = calloc(1, sizeof *ai + sizeof(struct sockaddr_storage));
        assert_non_null(ai);
        struct sockaddr_storage *ss = (struct sockaddr_storage *)(ai + 1);
        ai->ai_family = r->families[i];
        ai->ai_socktype = SOCK_STREAM;
        ai->ai_protocol = IPPROTO_TCP;
        ai->ai_addr = (struct sockaddr *)ss;
        if (r->families[i] == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
            a->sin6_family = AF_INET6;
            a->sin6_port = htons((uint16_t)port);
            inet_pton(AF_INET6, "2001:db8::1", &a->sin6_addr);
            ai->ai_addrlen = sizeof *a;
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)ss;
            a->sin_family = AF_INET;
            a->sin_port = htons((uint16_t)port);
            a->sin_addr.s_addr = htonl(0x01010101u * (uint32_t)(i + 1)); /* 1.1.1.1, 2.2.2.2 ... */
            ai->ai_addrlen = sizeof *a;
        }
        *tail = ai;
        tail = &ai->ai_next;
    }
    *res = head;
    return 0;
}

static void fake_freeaddrinfo(void *ctx, struct addrinfo *res)
{
    (void)ctx;
    while (res) {
        struct addrinfo *next = res->ai_next;
        free(res);
        res = next;
    }
}

static void fake_resolver_init(fake_resolver *r, const int *families, size_t n)
{
    memset(r, 0, sizeof *r);
    r->hook.ctx = r;
    r->hook.getaddrinfo = fake_gai;
    r->hook.freeaddrinfo = fake_freeaddrinfo;
    memcpy(r->families, families, n * sizeof *families);
    r->n = n;
}

/* ---- open_tcp_listeners on real sockets ----------------------------------- */

/* Trio:
 * tests/test_highlevel_open_tcp_listeners.py::test_open_tcp_listeners_basic.
 * Host NULL: one listener per wildcard address (0.0.0.0, and :: when the host
 * has IPv6); each accepts connections; the first takes two. */
static int basic_body(void *arg)
{
    (void)arg;
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(0, NULL, 0, &ls, &n), 0);
    assert_non_null(ls);
    assert_int_equal(n, have_ipv6_loopback() ? 2 : 1);
    bool saw4 = false, saw6 = false;
    for (size_t i = 0; i < n; i++) {
        ctrio_socket *s = ctrio_socket_listener_socket(ls[i]);
        assert_non_null(s);
        char name[64];
        int port = sock_name(s, name, sizeof name);
        assert_true(port > 0);
        if (ctrio_socket_family(s) == AF_INET) {
            saw4 = true;
            assert_true(strncmp(name, "0.0.0.0:", 8) == 0);
        } else {
            assert_int_equal(ctrio_socket_family(s), AF_INET6);
            saw6 = true;
            assert_true(strncmp(name, "[::]:", 5) == 0);
        }
    }
    assert_true(saw4);
    assert_true(saw6 == have_ipv6_loopback());

    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    /* The first listener: two clients queued at once (backlog >= 2). */
    ctrio_stream *c1, *c2, *s1, *s2;
    assert_int_equal(connect_to_listener(ls[0], &c1), 0);
    assert_int_equal(connect_to_listener(ls[0], &c2), 0);
    assert_int_equal(ctrio_listener_accept(ls[0], &s1), 0);
    assert_int_equal(ctrio_listener_accept(ls[0], &s2), 0);
    /* We don't know which server stream goes with which client. */
    assert_int_equal(ctrio_stream_send_all(s1, "x", 1), 0);
    assert_int_equal(ctrio_stream_send_all(s2, "y", 1), 0);
    char a = 0, b = 0;
    recv_exactly(c1, &a, 1);
    recv_exactly(c2, &b, 1);
    assert_true((a == 'x' && b == 'y') || (a == 'y' && b == 'x'));
    ctrio_stream_close(c1);
    ctrio_stream_close(c2);
    ctrio_stream_close(s1);
    ctrio_stream_close(s2);
    /* Every listener accepts, and the accepted stream's local address is on
     * the listener's port, its peer the client's own address. */
    for (size_t i = 0; i < n; i++) {
        ctrio_stream *c, *s;
        assert_int_equal(connect_to_listener(ls[i], &c), 0);
        assert_int_equal(ctrio_listener_accept(ls[i], &s), 0);
        char cname[64], speer[64];
        sock_name(ctrio_socket_stream_socket(c), cname, sizeof cname);
        sock_peer(ctrio_socket_stream_socket(s), speer, sizeof speer);
        assert_string_equal(cname, speer);
        assert_int_equal(sock_name(ctrio_socket_stream_socket(s), NULL, 0), listener_port(ls[i]));
        assert_int_equal(ctrio_stream_send_all(c, "ping", 4), 0);
        char buf[4];
        recv_exactly(s, buf, 4);
        assert_memory_equal(buf, "ping", 4);
        ctrio_stream_close(c);
        ctrio_stream_close(s);
    }
    assert_int_equal(ctrio_cancel_scope_close(&cs, 0), 0);
    ctrio_listeners_close(ls, n);
    return 0;
}

static void test_open_tcp_listeners_basic(void **state)
{
    (void)state;
    assert_int_equal(run_real(basic_body, NULL), 0);
}

/* New (ctrio improves on Trio #283): with port 0 every listener gets the same
 * port, so one number reaches the server over IPv4 and IPv6. Repeated a few
 * times, since a clash in the second family is retried with a fresh port. */
static int same_port_body(void *arg)
{
    (void)arg;
    for (int round = 0; round < 5; round++) {
        ctrio_listener **ls;
        size_t n;
        assert_int_equal(ctrio_open_tcp_listeners(0, NULL, 0, &ls, &n), 0);
        assert_true(n >= 1);
        int port = listener_port(ls[0]);
        assert_true(port > 0 && port <= 65535);
        for (size_t i = 1; i < n; i++)
            assert_int_equal(listener_port(ls[i]), port);
        if (n == 2) { /* both families really answer on that one port */
            ctrio_stream *c4, *c6;
            assert_int_equal(ctrio_open_tcp_stream("127.0.0.1", port, &c4), 0);
            assert_int_equal(ctrio_open_tcp_stream("::1", port, &c6), 0);
            ctrio_stream_close(c4);
            ctrio_stream_close(c6);
        }
        ctrio_listeners_close(ls, n);
    }
    return 0;
}

static void test_open_tcp_listeners_port0_same_port(void **state)
{
    (void)state;
    assert_int_equal(run_real(same_port_body, NULL), 0);
}

/* Trio: ::test_open_tcp_listeners_specific_port_specific_host. */
static int specific_body(void *arg)
{
    (void)arg;
    /* Pick a port: bind a socket to 127.0.0.1:0 and close it. */
    ctrio_socket *probe;
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &probe), 0);
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, "127.0.0.1", 0, &ss, &len), 0);
    assert_int_equal(ctrio_socket_bind(probe, (struct sockaddr *)&ss, len), 0);
    int port = sock_name(probe, NULL, 0);
    assert_true(port > 0);
    ctrio_socket_close(probe);

    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(port, "127.0.0.1", 10, &ls, &n), 0);
    assert_int_equal(n, 1);
    char name[64], want[64];
    sock_name(ctrio_socket_listener_socket(ls[0]), name, sizeof name);
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    assert_string_equal(name, want);
    ctrio_listeners_close(ls, n);
    return 0;
}

static void test_open_tcp_listeners_specific_port_specific_host(void **state)
{
    (void)state;
    assert_int_equal(run_real(specific_body, NULL), 0);
}

/* Trio: ::test_open_tcp_listeners_ipv6_v6only. The ::1 listener has
 * IPV6_V6ONLY=1, so 127.0.0.1 on its port is refused; ::1 is served. */
static int v6only_body(void *arg)
{
    (void)arg;
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(0, "::1", 0, &ls, &n), 0);
    assert_int_equal(n, 1);
    ctrio_socket *s = ctrio_socket_listener_socket(ls[0]);
    assert_int_equal(ctrio_socket_family(s), AF_INET6);
    int v = -1;
    socklen_t len = sizeof v;
    assert_int_equal(ctrio_socket_getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), 0);
    assert_int_equal(v, 1);
    int port = listener_port(ls[0]);
    ctrio_stream *c;
    assert_true(ctrio_open_tcp_stream("127.0.0.1", port, &c) < 0);
    assert_null(c);
    assert_int_equal(ctrio_open_tcp_stream("::1", port, &c), 0);
    ctrio_stream_close(c);
    ctrio_listeners_close(ls, n);

    /* Host NULL: the :: listener is V6ONLY too, the 0.0.0.0 one serves IPv4 */
    assert_int_equal(ctrio_open_tcp_listeners(0, NULL, 0, &ls, &n), 0);
    for (size_t i = 0; i < n; i++) {
        s = ctrio_socket_listener_socket(ls[i]);
        if (ctrio_socket_family(s) != AF_INET6)
            continue;
        v = -1;
        len = sizeof v;
        assert_int_equal(ctrio_socket_getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), 0);
        assert_int_equal(v, 1);
    }
    ctrio_listeners_close(ls, n);
    return 0;
}

static void test_open_tcp_listeners_ipv6_v6only(void **state)
{
    (void)state;
    if (!have_ipv6_loopback())
        skip();
    assert_int_equal(run_real(v6only_body, NULL), 0);
}

/* Trio: ::test_open_tcp_listeners_ipv6_v6only's options: every listening
 * socket has SO_REUSEADDR=1. */
static int reuseaddr_body(void *arg)
{
    (void)arg;
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(0, NULL, 0, &ls, &n), 0);
    assert_true(n >= 1);
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        socklen_t len = sizeof v;
        assert_int_equal(ctrio_socket_getsockopt(ctrio_socket_listener_socket(ls[i]), SOL_SOCKET,
                                                 SO_REUSEADDR, &v, &len),
                         0);
        assert_int_equal(v, 1);
        v = 0;
        len = sizeof v;
        assert_int_equal(ctrio_socket_getsockopt(ctrio_socket_listener_socket(ls[i]), SOL_SOCKET,
                                                 SO_ACCEPTCONN, &v, &len),
                         0);
        assert_int_equal(v, 1);
        assert_int_equal(ctrio_socket_type(ctrio_socket_listener_socket(ls[i])), SOCK_STREAM);
    }
    ctrio_listeners_close(ls, n);
    return 0;
}

static void test_open_tcp_listeners_reuseaddr(void **state)
{
    (void)state;
    assert_int_equal(run_real(reuseaddr_body, NULL), 0);
}

/* Whether /proc/net/tcp shows a connection in state st (hex) with local
 * port `port`. */
static bool tcp_state_on_port(int port, int st)
{
    FILE *f = fopen("/proc/net/tcp", "re");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    if (!fgets(line, sizeof line, f)) { /* header */
        fclose(f);
        return false;
    }
    while (fgets(line, sizeof line, f)) {
        unsigned lip, lport, rip, rport, state;
        if (sscanf(line, " %*d: %x:%x %x:%x %x", &lip, &lport, &rip, &rport, &state) == 5 &&
            (int)lport == port && (int)state == st)
            found = true;
    }
    fclose(f);
    return found;
}

/* Trio: ::test_open_tcp_listeners_rebind. While the listener lives its
 * address cannot be bound again, even with SO_REUSEADDR; once it is closed it
 * can, despite connections left ESTABLISHED, half-closed, and in TIME_WAIT. */
static int rebind_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    ctrio_listener **l1;
    size_t n1;
    assert_int_equal(ctrio_open_tcp_listeners(0, "127.0.0.1", 0, &l1, &n1), 0);
    assert_int_equal(n1, 1);
    char addr1[64];
    int port = sock_name(ctrio_socket_listener_socket(l1[0]), addr1, sizeof addr1);

    /* A plain rebind fails while it is there, SO_REUSEADDR or not. */
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(probe >= 0);
    int one = 1;
    assert_int_equal(setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, "127.0.0.1", port, &ss, &len), 0);
    assert_int_equal(bind(probe, (struct sockaddr *)&ss, len), -1);
    assert_int_equal(errno, EADDRINUSE);
    close(probe);
    ctrio_listener **dup;
    size_t ndup = 99;
    assert_int_equal(ctrio_open_tcp_listeners(port, "127.0.0.1", 0, &dup, &ndup), -EADDRINUSE);
    assert_null(dup);
    assert_int_equal(ndup, 0);

    /* Connections in various states. */
    ctrio_stream *c_est, *s_est, *c_half, *s_half, *c_tw, *s_tw;
    assert_int_equal(connect_to_listener(l1[0], &c_est), 0);
    assert_int_equal(ctrio_listener_accept(l1[0], &s_est), 0);
    assert_int_equal(connect_to_listener(l1[0], &c_half), 0);
    assert_int_equal(ctrio_listener_accept(l1[0], &s_half), 0);
    assert_int_equal(connect_to_listener(l1[0], &c_tw), 0);
    assert_int_equal(ctrio_listener_accept(l1[0], &s_tw), 0);
    /* Server-initiated close: c_half's server side waits in FIN_WAIT_2 (Trio's
     * case), c_tw's goes to TIME_WAIT once the client closes as well. */
    ctrio_stream_close(s_half);
    ctrio_stream_close(s_tw);
    char b;
    assert_int_equal(ctrio_stream_receive_some(c_tw, &b, 1), 0);
    ctrio_stream_close(c_tw);
    bool tw = false;
    for (int i = 0; i < 50 && !(tw = tcp_state_on_port(port, 0x06)); i++)
        ctrio_sleep(0.002);
    assert_true(tw); /* really TIME_WAIT on the listener's port */

    ctrio_listeners_close(l1, n1);
    ctrio_listener **l2;
    size_t n2;
    assert_int_equal(ctrio_open_tcp_listeners(port, "127.0.0.1", 0, &l2, &n2), 0);
    assert_int_equal(n2, 1);
    char addr2[64], name[64];
    sock_name(ctrio_socket_listener_socket(l2[0]), addr2, sizeof addr2);
    assert_string_equal(addr1, addr2);
    sock_name(ctrio_socket_stream_socket(s_est), name, sizeof name);
    assert_string_equal(name, addr2);
    sock_peer(ctrio_socket_stream_socket(c_half), name, sizeof name);
    assert_string_equal(name, addr2);
    /* The old established connection still works, and l2 serves. */
    assert_int_equal(ctrio_stream_send_all(c_est, "e", 1), 0);
    recv_exactly(s_est, &b, 1);
    assert_int_equal(b, 'e');
    ctrio_stream *c_new, *s_new;
    assert_int_equal(connect_to_listener(l2[0], &c_new), 0);
    assert_int_equal(ctrio_listener_accept(l2[0], &s_new), 0);
    ctrio_stream_close(c_new);
    ctrio_stream_close(s_new);
    ctrio_stream_close(c_est);
    ctrio_stream_close(s_est);
    ctrio_stream_close(c_half);
    ctrio_listeners_close(l2, n2);
    assert_int_equal(ctrio_cancel_scope_close(&cs, 0), 0);
    return 0;
}

static void test_open_tcp_listeners_rebind(void **state)
{
    (void)state;
    assert_int_equal(run_real(rebind_body, NULL), 0);
}

/* Trio: ::test_open_tcp_listeners_port_checking, and the range check
 * that C needs instead of a type check. */
static int port_checking_body(void *arg)
{
    (void)arg;
    ctrio_listener **ls = (ctrio_listener **)&ls;
    size_t n = 7;
    const char *hosts[] = {"127.0.0.1", NULL};
    for (int h = 0; h < 2; h++) {
        assert_int_equal(ctrio_open_tcp_listeners(-1, hosts[h], 0, &ls, &n), -EINVAL);
        assert_int_equal(ctrio_open_tcp_listeners(65536, hosts[h], 0, &ls, &n), -EINVAL);
        assert_int_equal(ctrio_open_tcp_listeners(INT32_MIN, hosts[h], 0, &ls, &n), -EINVAL);
        assert_int_equal(ctrio_open_tcp_listeners(0, hosts[h], 0, NULL, &n), -EINVAL);
        assert_int_equal(ctrio_open_tcp_listeners(0, hosts[h], 0, &ls, NULL), -EINVAL);
    }
    /* A host that is not an address of this machine */
    assert_int_equal(ctrio_open_tcp_listeners(0, "192.0.2.1", 0, &ls, &n), -EADDRNOTAVAIL);
    assert_null(ls);
    assert_int_equal(n, 0);
    ctrio_listeners_close(NULL, 0); /* a no-op */
    return 0;
}

static void test_open_tcp_listeners_port_checking(void **state)
{
    (void)state;
    assert_int_equal(run_real(port_checking_body, NULL), 0);
}

/* "localhost" is looked up in a worker thread (not numeric): listeners on
 * its loopback addresses, all on one port. */
static int localhost_body(void *arg)
{
    (void)arg;
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(0, "localhost", 0, &ls, &n), 0);
    assert_true(n >= 1 && n <= 4);
    int port = listener_port(ls[0]);
    for (size_t i = 0; i < n; i++) {
        char name[64];
        assert_int_equal(sock_name(ctrio_socket_listener_socket(ls[i]), name, sizeof name), port);
        assert_true(strncmp(name, "127.", 4) == 0 || strncmp(name, "[::1]:", 6) == 0);
        ctrio_stream *c, *s;
        assert_int_equal(connect_to_listener(ls[i], &c), 0);
        assert_int_equal(ctrio_listener_accept(ls[i], &s), 0);
        ctrio_stream_close(c);
        ctrio_stream_close(s);
    }
    ctrio_listeners_close(ls, n);
    return 0;
}

static void test_open_tcp_listeners_localhost(void **state)
{
    (void)state;
    assert_int_equal(run_real(localhost_body, NULL), 0);
}

/* ---- open_tcp_listeners over the fake network ----------------------------- */

/* Trio: ::test_open_tcp_listeners_backlog: the backlog passed to
 * listen: <= 0 means 0xFFFF, larger values are capped, others pass through. */
static int backlog_body(void *arg)
{
    (void)arg;
    fake_factory f;
    fake_factory_init(&f);
    ctrio_set_custom_socket_factory(&f.hook);
    const struct {
        int given, expected;
    } cases[] = {{0, 0xFFFF},
                 {-1, 0xFFFF},
                 {INT32_MIN, 0xFFFF},
                 {99999999, 0xFFFF},
                 {0x10000, 0xFFFF},
                 {0xFFFF, 0xFFFF},
                 {10, 10},
                 {1, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t first = f.n;
        ctrio_listener **ls;
        size_t n;
        assert_int_equal(ctrio_open_tcp_listeners(0, NULL, cases[k].given, &ls, &n), 0);
        assert_true(n >= 1);
        assert_int_equal(f.n - first, n);
        for (size_t i = first; i < f.n; i++)
            assert_int_equal(f.socks[i].backlog, cases[k].expected);
        ctrio_listeners_close(ls, n);
        for (size_t i = first; i < f.n; i++)
            assert_int_equal(f.socks[i].closed, 1);
    }
    ctrio_set_custom_socket_factory(NULL);

    /* On real sockets every one of these values is accepted. */
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ctrio_listener **ls;
        size_t n;
        assert_int_equal(ctrio_open_tcp_listeners(0, "127.0.0.1", cases[k].given, &ls, &n), 0);
        assert_int_equal(n, 1);
        ctrio_stream *c, *s;
        assert_int_equal(connect_to_listener(ls[0], &c), 0);
        assert_int_equal(ctrio_listener_accept(ls[0], &s), 0);
        ctrio_stream_close(c);
        ctrio_stream_close(s);
        ctrio_listeners_close(ls, n);
    }
    return 0;
}

static void test_open_tcp_listeners_backlog(void **state)
{
    (void)state;
    assert_int_equal(run_real(backlog_body, NULL), 0);
}

/* Trio: ::test_open_tcp_listeners_multiple_host_cleanup_on_error: the
 * third of three listens fails; all three sockets are closed and the error
 * comes out. */
static int cleanup_on_error_body(void *arg)
{
    (void)arg;
    fake_factory f;
    fake_factory_init(&f);
    f.poison_at = 3;
    fake_resolver r;
    const int fam[] = {AF_INET, AF_INET, AF_INET};
    fake_resolver_init(&r, fam, 3);
    ctrio_set_custom_socket_factory(&f.hook);
    ctrio_set_custom_hostname_resolver(&r.hook);
    ctrio_listener **ls = (ctrio_listener **)&ls;
    size_t n = 5;
    assert_int_equal(ctrio_open_tcp_listeners(80, "example.org", 0, &ls, &n), -EIO);
    assert_int_equal(r.calls, 1);
    assert_null(ls);
    assert_int_equal(n, 0);
    assert_int_equal(f.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(f.socks[i].closed, 1);
        assert_int_equal(f.socks[i].port, 80);
    }
    ctrio_set_custom_socket_factory(NULL);
    ctrio_set_custom_hostname_resolver(NULL);
    return 0;
}

static void test_open_tcp_listeners_multiple_host_cleanup_on_error(void **state)
{
    (void)state;
    assert_int_equal(run_real(cleanup_on_error_body, NULL), 0);
}

/* Trio: ::test_open_tcp_listeners_some_address_families_unavailable,
 * every combination of tried and failing families: EAFNOSUPPORT from
 * socket() skips a family; if none is left, -EAFNOSUPPORT. */
static int families_body(void *arg)
{
    (void)arg;
    const int sets[3][2] = {{AF_INET, 0}, {AF_INET6, 0}, {AF_INET, AF_INET6}};
    const size_t sizes[3] = {1, 1, 2};
    for (int t = 0; t < 3; t++) {
        for (int fl = 0; fl < 3; fl++) {
            fake_factory f;
            fake_factory_init(&f);
            bool fail4 = false, fail6 = false;
            for (size_t i = 0; i < sizes[fl]; i++) {
                if (sets[fl][i] == AF_INET)
                    fail4 = true;
                else
                    fail6 = true;
            }
            f.fail_v4 = fail4 ? -EAFNOSUPPORT : 0;
            f.fail_v6 = fail6 ? -EAFNOSUPPORT : 0;
            fake_resolver r;
            fake_resolver_init(&r, sets[t], sizes[t]);
            ctrio_set_custom_socket_factory(&f.hook);
            ctrio_set_custom_hostname_resolver(&r.hook);
            size_t should = 0;
            for (size_t i = 0; i < sizes[t]; i++)
                if (!(sets[t][i] == AF_INET ? fail4 : fail6))
                    should++;
            ctrio_listener **ls;
            size_t n;
            int rc = ctrio_open_tcp_listeners(80, "example.org", 0, &ls, &n);
            if (should == 0) {
                assert_int_equal(rc, -EAFNOSUPPORT);
                assert_int_equal(n, 0);
                assert_int_equal(f.n, 0);
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(n, should);
                for (size_t i = 0; i < n; i++) {
                    int family = ctrio_socket_family(ctrio_socket_listener_socket(ls[i]));
                    assert_false(family == AF_INET ? fail4 : fail6);
                }
                ctrio_listeners_close(ls, n);
                for (size_t i = 0; i < f.n; i++)
                    assert_int_equal(f.socks[i].closed, 1);
            }
            ctrio_set_custom_socket_factory(NULL);
            ctrio_set_custom_hostname_resolver(NULL);
        }
    }
    return 0;
}

static void test_open_tcp_listeners_some_address_families_unavailable(void **state)
{
    (void)state;
    assert_int_equal(run_real(families_body, NULL), 0);
}

/* Trio: ::test_open_tcp_listeners_socket_fails_not_afnosupport: any
 * other socket() error comes out as it is, and what was made is closed. */
static int not_afnosupport_body(void *arg)
{
    (void)arg;
    fake_factory f;
    fake_factory_init(&f);
    f.fail_v4 = -EAFNOSUPPORT;
    f.fail_v6 = -EINVAL;
    fake_resolver r;
    const int fam[] = {AF_INET, AF_INET6};
    fake_resolver_init(&r, fam, 2);
    ctrio_set_custom_socket_factory(&f.hook);
    ctrio_set_custom_hostname_resolver(&r.hook);
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(80, "example.org", 0, &ls, &n), -EINVAL);
    assert_int_equal(f.n, 0);

    /* The same with the failing family second, after a listener was made. */
    fake_factory_init(&f);
    f.fail_v6 = -EMFILE;
    assert_int_equal(ctrio_open_tcp_listeners(80, "example.org", 0, &ls, &n), -EMFILE);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.socks[0].closed, 1);
    ctrio_set_custom_socket_factory(NULL);
    ctrio_set_custom_hostname_resolver(NULL);
    return 0;
}

static void test_open_tcp_listeners_socket_fails_not_afnosupport(void **state)
{
    (void)state;
    assert_int_equal(run_real(not_afnosupport_body, NULL), 0);
}

/* New (ctrio's Trio #283 fix, white-box on the fake network): the port the
 * first listener got is given to the others; if it is taken in another
 * family, everything is closed and tried again with a new port; after 20
 * tries the error comes out. */
static int shared_port_retry_body(void *arg)
{
    (void)arg;
    fake_factory f;
    fake_factory_init(&f);
    fake_resolver r;
    const int fam[] = {AF_INET, AF_INET6};
    fake_resolver_init(&r, fam, 2);
    ctrio_set_custom_socket_factory(&f.hook);
    ctrio_set_custom_hostname_resolver(&r.hook);

    /* No clash: the v6 socket is bound to the port the v4 one got. */
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(0, "example.org", 0, &ls, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(f.n, 2);
    assert_int_equal(f.socks[0].port, 40000);
    assert_int_equal(f.socks[1].port, 40000);
    assert_int_equal(listener_port(ls[0]), 40000);
    assert_int_equal(listener_port(ls[1]), 40000);
    ctrio_listeners_close(ls, n);

    /* The first port is taken in v6: a second round on a new port. */
    fake_factory_init(&f);
    f.v6_inuse_port = 40000;
    assert_int_equal(ctrio_open_tcp_listeners(0, "example.org", 0, &ls, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(f.n, 4);
    assert_int_equal(f.socks[0].closed, 1); /* first round, all closed */
    assert_int_equal(f.socks[1].closed, 1);
    assert_int_equal(f.socks[2].closed, 0);
    assert_int_equal(f.socks[3].closed, 0);
    assert_int_equal(listener_port(ls[0]), 40001);
    assert_int_equal(listener_port(ls[1]), 40001);
    ctrio_listeners_close(ls, n);
    assert_int_equal(f.socks[2].closed, 1);
    assert_int_equal(f.socks[3].closed, 1);

    /* Always taken: gives up with -EADDRINUSE, everything closed. */
    fake_factory_init(&f);
    f.v6_inuse_port = -2;
    assert_int_equal(ctrio_open_tcp_listeners(0, "example.org", 0, &ls, &n), -EADDRINUSE);
    assert_int_equal(f.n, 40); /* 20 rounds of two sockets */
    for (size_t i = 0; i < f.n; i++)
        assert_int_equal(f.socks[i].closed, 1);

    /* A fixed port is never retried. */
    fake_factory_init(&f);
    f.v6_inuse_port = 8080;
    assert_int_equal(ctrio_open_tcp_listeners(8080, "example.org", 0, &ls, &n), -EADDRINUSE);
    assert_int_equal(f.n, 2);
    assert_int_equal(f.socks[0].closed, 1);
    assert_int_equal(f.socks[1].closed, 1);

    ctrio_set_custom_socket_factory(NULL);
    ctrio_set_custom_hostname_resolver(NULL);
    return 0;
}

static void test_open_tcp_listeners_shared_port_retry(void **state)
{
    (void)state;
    assert_int_equal(run_real(shared_port_retry_body, NULL), 0);
}

/* ---- SocketListener -------------------------------------------------------- */

/* Trio: tests/test_highlevel_socket.py::test_SocketListener: the socket
 * must be SOCK_STREAM and listening (SO_ACCEPTCONN). */
static int socket_listener_new_body(void *arg)
{
    (void)arg;
    ctrio_listener *l = (ctrio_listener *)&l;
    ctrio_socket *s;
    /* A datagram socket */
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_DGRAM, 0, &s), 0);
    assert_int_equal(ctrio_socket_listener_new(s, &l), -EINVAL);
    assert_null(l);
    ctrio_socket_close(s); /* still ours */
    /* Bound but not listening */
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &s), 0);
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(ctrio_sockaddr_parse(AF_INET, "127.0.0.1", 0, &ss, &len), 0);
    assert_int_equal(ctrio_socket_bind(s, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(ctrio_socket_listener_new(s, &l), -EINVAL);
    /* Listening: the listener owns it from now on */
    assert_int_equal(ctrio_socket_listen(s, 5), 0);
    assert_int_equal(ctrio_socket_listener_new(s, &l), 0);
    assert_ptr_equal(ctrio_socket_listener_socket(l), s);
    assert_null(ctrio_socket_listener_socket(NULL));
    assert_int_equal(ctrio_socket_listener_new(NULL, &l), -EINVAL);
    assert_int_equal(ctrio_listener_close(l), 0);
    assert_int_equal(ctrio_listener_close(NULL), -EINVAL);
    return 0;
}

static void test_socket_listener_new_checks(void **state)
{
    (void)state;
    assert_int_equal(run_real(socket_listener_new_body, NULL), 0);
}

/* Trio: tests/test_highlevel_socket.py::test_SocketListener (the wake probed,
 * untested there): closing a listener wakes a task blocked in accept with
 * -EBADF, and everything is freed (ASan) and closed (the descriptor check). */
typedef struct accept_waiter {
    ctrio_listener *l;
    int rc;
    bool done;
} accept_waiter;

static int blocked_accept(void *p)
{
    accept_waiter *w = p;
    ctrio_stream *s = (ctrio_stream *)&s;
    w->rc = ctrio_listener_accept(w->l, &s);
    assert_null(s);
    w->done = true;
    return 0;
}

static int close_wakes_body(void *arg)
{
    (void)arg;
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(0, NULL, 0, &ls, &n), 0);
    accept_waiter w[2] = {{ls[0], 1, false}, {ls[n - 1], 1, false}};
    ctrio_nursery nur;
    ctrio_nursery_open(&nur);
    ctrio_start_soon(&nur, blocked_accept, &w[0]);
    if (n > 1)
        ctrio_start_soon(&nur, blocked_accept, &w[1]);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.01), 0);
    assert_false(w[0].done);
    ctrio_listeners_close(ls, n); /* closes every listener and frees the array */
    int rc = ctrio_nursery_close(&nur, 0);
    assert_int_equal(rc, 0);
    assert_true(w[0].done);
    assert_int_equal(w[0].rc, -EBADF);
    if (n > 1)
        assert_int_equal(w[1].rc, -EBADF);
    return 0;
}

static void test_listeners_close_wakes_accept_and_frees(void **state)
{
    (void)state;
    assert_int_equal(run_real(close_wakes_body, NULL), 0);
}

/* New (Trio #73, libuv's trick): out of descriptors, accept refuses the
 * pending connection at once (the client sees its connection closed instead
 * of waiting in the backlog), returns -EMFILE, and keeps its spare descriptor
 * for the next time. */
static int fill_descriptors(int *fds, int max)
{
    int k = 0;
    while (k < max) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            break;
        fds[k++] = fd;
    }
    return k;
}

static int emfile_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(0, "127.0.0.1", 0, &ls, &n), 0);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int fillers[256];
    for (int round = 0; round < 2; round++) {
        ctrio_stream *c;
        assert_int_equal(connect_to_listener(ls[0], &c), 0); /* queued in the backlog */
        /* Exhaust descriptors: lower the limit to just above the highest one
         * open now, then fill the holes. */
        int top = 0;
        for (int fd = 0; fd < 4096; fd++)
            if (fcntl(fd, F_GETFD) >= 0)
                top = fd;
        struct rlimit low = old;
        low.rlim_cur = (rlim_t)top + 1;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        int k = fill_descriptors(fillers, 256);
        assert_true(k < 256);
        ctrio_stream *s = (ctrio_stream *)&s;
        int rc = ctrio_listener_accept(ls[0], &s);
        for (int i = 0; i < k; i++)
            close(fillers[i]);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
        assert_int_equal(rc, -EMFILE);
        assert_null(s);
        /* The pending client was accepted and closed: EOF (or a reset). */
        char b;
        ssize_t r = ctrio_stream_receive_some(c, &b, 1);
        assert_true(r == 0 || r == -ECONNRESET);
        ctrio_stream_close(c);
    }
    /* With descriptors back, accept works again. */
    ctrio_stream *c, *s;
    assert_int_equal(connect_to_listener(ls[0], &c), 0);
    assert_int_equal(ctrio_listener_accept(ls[0], &s), 0);
    assert_int_equal(ctrio_stream_send_all(s, "k", 1), 0);
    char b;
    recv_exactly(c, &b, 1);
    assert_int_equal(b, 'k');
    ctrio_stream_close(c);
    ctrio_stream_close(s);
    ctrio_listeners_close(ls, n);
    assert_int_equal(ctrio_cancel_scope_close(&cs, 0), 0);
    return 0;
}

static void test_listener_emfile_refuses_pending(void **state)
{
    (void)state;
    /* valgrind keeps RLIMIT_NOFILE to itself (setrlimit changes only its
     * own view, which its accept wrapper enforces); an accept that io_uring
     * makes in the kernel never meets that limit, so EMFILE cannot be made
     * to happen there */
    if (!backend_is_epoll() && under_valgrind())
        skip();
    assert_int_equal(run_real(emfile_body, NULL), 0);
}

/* Trio: tests/test_highlevel_socket.py::test_SocketListener: accept
 * is a checkpoint even with a connection waiting; a cancelled accept takes
 * nothing (the connection stays queued for the next one). */
static int accept_checkpoint_body(void *arg)
{
    (void)arg;
    ctrio_listener **ls;
    size_t n;
    assert_int_equal(ctrio_open_tcp_listeners(0, "127.0.0.1", 0, &ls, &n), 0);
    ctrio_stream *c, *s = NULL;
    assert_int_equal(connect_to_listener(ls[0], &c), 0);
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    int rc = ctrio_listener_accept(ls[0], &s);
    assert_int_equal(rc, -ECANCELED);
    assert_null(s);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    ASSERT_CHECKPOINTS(rc = ctrio_listener_accept(ls[0], &s));
    assert_int_equal(rc, 0);
    assert_non_null(s);
    assert_int_equal(ctrio_stream_send_all(c, "q", 1), 0);
    char b;
    recv_exactly(s, &b, 1);
    assert_int_equal(b, 'q');
    ctrio_stream_close(c);
    ctrio_stream_close(s);
    ctrio_listeners_close(ls, n);
    return 0;
}

static void test_listener_accept_is_checkpoint(void **state)
{
    (void)state;
    assert_int_equal(run_real(accept_checkpoint_body, NULL), 0);
}

/* ctrio_listener_accept outside a task (no run, or a token callback) is
 * misuse: -EPERM at once. It looped forever before, taking the socket's
 * -EPERM for a failed connection's EPERM (Trio's ignorable errnos). Each case
 * runs in a child killed by alarm(5), so that the bug fails the test instead
 * of hanging it; the child's stderr (the misuse message) goes to /dev/null. */
static int accept_misuse_rc;

static int accept_on_a_new_listener(void)
{
    ctrio_socket *s;
    ctrio_listener *l;
    ctrio_stream *st = (ctrio_stream *)&st;
    if (ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &s) < 0)
        return 1;
    ctrio_socket_listen(s, 5);
    if (ctrio_socket_listener_new(s, &l) < 0)
        return 1;
    int rc = ctrio_listener_accept(l, &st);
    ctrio_listener_close(l);
    return rc == -EPERM && st == NULL ? 0 : 1;
}

static void accept_in_callback(void *arg)
{
    (void)arg;
    accept_misuse_rc = accept_on_a_new_listener();
}

static int accept_from_callback_body(void *arg)
{
    (void)arg;
    accept_misuse_rc = 2;
    ctrio_token_run_sync_soon(ctrio_current_token(), accept_in_callback, NULL);
    int rc = ctrio_sleep(0.05);
    return rc < 0 ? rc : accept_misuse_rc;
}

static int in_bounded_child(int (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(5);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        _exit(fn());
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int accept_from_callback(void)
{
    return run_real(accept_from_callback_body, NULL);
}

static void test_listener_accept_outside_task(void **state)
{
    (void)state;
    assert_int_equal(in_bounded_child(accept_on_a_new_listener), 0);
    assert_int_equal(in_bounded_child(accept_from_callback), 0);
}

/* New: opening listeners in a cancelled scope makes nothing: -ECANCELED, no
 * descriptor (the teardown checks), no file. */
static int cancelled_open_body(void *arg)
{
    tmpdir *t = arg;
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    ctrio_listener **ls = (ctrio_listener **)&ls;
    size_t n = 3;
    int rc = ctrio_open_tcp_listeners(0, "127.0.0.1", 0, &ls, &n);
    assert_int_equal(rc, -ECANCELED);
    assert_null(ls);
    assert_int_equal(n, 0);
    assert_int_equal(ctrio_open_tcp_listeners(0, NULL, 0, &ls, &n), -ECANCELED);
    ctrio_listener *l = (ctrio_listener *)&l;
    assert_int_equal(ctrio_open_unix_listener(t->path, 0, &l), -ECANCELED);
    assert_null(l);
    assert_false(exists(t->path));
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    return 0;
}

static void test_open_listeners_cancelled(void **state)
{
    (void)state;
    tmpdir t;
    tmpdir_make(&t, "listeners");
    assert_int_equal(run_real(cancelled_open_body, &t), 0);
    tmpdir_remove(&t);
}

/* ---- Unix-domain listeners ------------------------------------------------ */

/* New: a listener at a fresh path; a client connects with
 * ctrio_open_unix_socket; closing the listener unlinks the path, after which
 * connecting fails with -ENOENT (Trio: test_highlevel_open_unix_stream.py::
 * test_open_bad_socket). */
static int unix_basic_body(void *arg)
{
    tmpdir *t = arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    ctrio_listener *l;
    assert_int_equal(ctrio_open_unix_listener(t->path, 0, &l), 0);
    struct stat st;
    assert_int_equal(lstat(t->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    ctrio_socket *ls = ctrio_socket_listener_socket(l);
    assert_int_equal(ctrio_socket_family(ls), AF_UNIX);
    char name[160];
    sock_name(ls, name, sizeof name);
    assert_string_equal(name, t->path);

    ctrio_stream *c, *s;
    assert_int_equal(ctrio_open_unix_socket(t->path, &c), 0);
    assert_int_equal(ctrio_listener_accept(l, &s), 0);
    assert_int_equal(ctrio_stream_send_all(c, "hello", 5), 0);
    char buf[5];
    recv_exactly(s, buf, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(ctrio_stream_send_all(s, "world", 5), 0);
    recv_exactly(c, buf, 5);
    assert_memory_equal(buf, "world", 5);
    ctrio_stream_close(c);
    ctrio_stream_close(s);

    assert_int_equal(ctrio_listener_close(l), 0);
    assert_false(exists(t->path));
    assert_int_equal(ctrio_open_unix_socket(t->path, &c), -ENOENT);
    assert_null(c);
    assert_int_equal(ctrio_cancel_scope_close(&cs, 0), 0);
    return 0;
}

static void test_unix_listener_basic(void **state)
{
    (void)state;
    tmpdir t;
    tmpdir_make(&t, "listeners");
    assert_int_equal(run_real(unix_basic_body, &t), 0);
    tmpdir_remove(&t);
}

/* New: the path must not exist yet: -EADDRINUSE for a regular file or a live
 * socket, which are left alone; -ENOENT in a missing directory. */
static int unix_exists_body(void *arg)
{
    tmpdir *t = arg;
    ctrio_listener *l = (ctrio_listener *)&l;
    int fd = open(t->other, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "keep", 4), 4);
    close(fd);
    assert_int_equal(ctrio_open_unix_listener(t->other, 0, &l), -EADDRINUSE);
    assert_null(l);
    struct stat st;
    assert_int_equal(lstat(t->other, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 4);

    ctrio_listener *first;
    assert_int_equal(ctrio_open_unix_listener(t->path, 0, &first), 0);
    assert_int_equal(ctrio_open_unix_listener(t->path, 0, &l), -EADDRINUSE);
    /* the first one is untouched and still serves */
    assert_true(exists(t->path));
    ctrio_stream *c, *s;
    assert_int_equal(ctrio_open_unix_socket(t->path, &c), 0);
    assert_int_equal(ctrio_listener_accept(first, &s), 0);
    ctrio_stream_close(c);
    ctrio_stream_close(s);
    assert_int_equal(ctrio_listener_close(first), 0);
    assert_false(exists(t->path));

    char missing[200];
    snprintf(missing, sizeof missing, "%s/no/such/dir/sock", t->dir);
    assert_int_equal(ctrio_open_unix_listener(missing, 0, &l), -ENOENT);
    assert_int_equal(ctrio_open_unix_listener(NULL, 0, &l), -EINVAL);
    assert_int_equal(ctrio_open_unix_listener(t->path, 0, NULL), -EINVAL);
    char toolong[200];
    memset(toolong, 'a', sizeof toolong - 1);
    toolong[0] = '/';
    toolong[sizeof toolong - 1] = '\0';
    assert_true(ctrio_open_unix_listener(toolong, 0, &l) < 0);
    return 0;
}

static void test_unix_listener_path_must_not_exist(void **state)
{
    (void)state;
    tmpdir t;
    tmpdir_make(&t, "listeners");
    assert_int_equal(run_real(unix_exists_body, &t), 0);
    tmpdir_remove(&t);
}

/* New (Trio #279): if the path was replaced (renamed over) while the listener
 * lived, closing it leaves the new file alone. */
static int unix_replaced_body(void *arg)
{
    tmpdir *t = arg;
    ctrio_listener *l;
    assert_int_equal(ctrio_open_unix_listener(t->path, 0, &l), 0);
    int fd = open(t->other, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "new!", 4), 4);
    close(fd);
    assert_int_equal(rename(t->other, t->path), 0);
    assert_int_equal(ctrio_listener_close(l), 0);
    struct stat st;
    assert_int_equal(lstat(t->path, &st), 0); /* still there */
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 4);
    return 0;
}

static void test_unix_listener_replaced_path_not_unlinked(void **state)
{
    (void)state;
    tmpdir t;
    tmpdir_make(&t, "listeners");
    assert_int_equal(run_real(unix_replaced_body, &t), 0);
    tmpdir_remove(&t);
}

/* New (Trio #279): replaced by another socket, not just another file: the
 * identity (device, inode) is checked, not the file type. */
static int unix_replaced_socket_body(void *arg)
{
    tmpdir *t = arg;
    ctrio_listener *a, *b;
    assert_int_equal(ctrio_open_unix_listener(t->path, 0, &a), 0);
    assert_int_equal(ctrio_open_unix_listener(t->other, 0, &b), 0);
    struct stat sb;
    assert_int_equal(lstat(t->other, &sb), 0);
    assert_int_equal(rename(t->other, t->path), 0); /* b's socket now at a's path */
    assert_int_equal(ctrio_listener_close(a), 0);
    struct stat st;
    assert_int_equal(lstat(t->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_true(st.st_ino == sb.st_ino);
    /* b still answers there */
    ctrio_stream *c, *s;
    assert_int_equal(ctrio_open_unix_socket(t->path, &c), 0);
    assert_int_equal(ctrio_listener_accept(b, &s), 0);
    ctrio_stream_close(c);
    ctrio_stream_close(s);
    /* b's own path is gone (renamed away): its close unlinks nothing */
    assert_int_equal(ctrio_listener_close(b), 0);
    assert_true(exists(t->path));
    assert_int_equal(unlink(t->path), 0);
    return 0;
}

static void test_unix_listener_replaced_by_socket_not_unlinked(void **state)
{
    (void)state;
    tmpdir t;
    tmpdir_make(&t, "listeners");
    assert_int_equal(run_real(unix_replaced_socket_body, &t), 0);
    tmpdir_remove(&t);
}

/* New: an abstract "@name" listener works, leaves no file, and its name is
 * free again once closed; a second listener on a live name: -EADDRINUSE. */
static int unix_abstract_body(void *arg)
{
    (void)arg;
    char name[108];
    abstract_name(name, sizeof name);
    ctrio_listener *l, *l2 = (ctrio_listener *)&l2;
    assert_int_equal(ctrio_open_unix_listener(name, 0, &l), 0);
    assert_false(exists(name)); /* not a relative path in the working directory */
    char got[128];
    sock_name(ctrio_socket_listener_socket(l), got, sizeof got);
    assert_string_equal(got, name);
    assert_int_equal(ctrio_open_unix_listener(name, 0, &l2), -EADDRINUSE);
    assert_null(l2);

    ctrio_stream *c, *s;
    assert_int_equal(ctrio_open_unix_socket(name, &c), 0);
    assert_int_equal(ctrio_listener_accept(l, &s), 0);
    assert_int_equal(ctrio_stream_send_all(c, "abs", 3), 0);
    char buf[3];
    recv_exactly(s, buf, 3);
    assert_memory_equal(buf, "abs", 3);
    ctrio_stream_close(c);
    ctrio_stream_close(s);
    assert_int_equal(ctrio_listener_close(l), 0);
    assert_false(exists(name));
    assert_int_equal(ctrio_open_unix_socket(name, &c), -ECONNREFUSED);
    /* the name can be listened on again */
    assert_int_equal(ctrio_open_unix_listener(name, 0, &l), 0);
    assert_int_equal(ctrio_listener_close(l), 0);
    return 0;
}

static void test_unix_listener_abstract(void **state)
{
    (void)state;
    assert_int_equal(run_real(unix_abstract_body, NULL), 0);
}

/* New: several clients queue on a Unix listener and are accepted in turn;
 * a task blocked in accept is woken by the next client. */
typedef struct unix_server {
    ctrio_listener *l;
    int accepted;
} unix_server;

static int unix_accept_three(void *p)
{
    unix_server *u = p;
    for (int i = 0; i < 3; i++) {
        ctrio_stream *s;
        assert_int_equal(ctrio_listener_accept(u->l, &s), 0);
        char b;
        recv_exactly(s, &b, 1);
        assert_int_equal(ctrio_stream_send_all(s, &b, 1), 0);
        ctrio_stream_close(s);
        u->accepted++;
    }
    return 0;
}

static int unix_many_body(void *arg)
{
    tmpdir *t = arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    unix_server u = {NULL, 0};
    assert_int_equal(ctrio_open_unix_listener(t->path, 2, &u.l), 0);
    ctrio_nursery nur;
    ctrio_nursery_open(&nur);
    ctrio_start_soon(&nur, unix_accept_three, &u);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.005), 0); /* blocked in accept */
    assert_int_equal(u.accepted, 0);
    for (int i = 0; i < 3; i++) {
        ctrio_stream *c;
        assert_int_equal(ctrio_open_unix_socket(t->path, &c), 0);
        char b = (char)('a' + i), r = 0;
        assert_int_equal(ctrio_stream_send_all(c, &b, 1), 0);
        recv_exactly(c, &r, 1);
        assert_int_equal(r, b);
        ssize_t eof = ctrio_stream_receive_some(c, &r, 1);
        assert_int_equal(eof, 0);
        ctrio_stream_close(c);
    }
    assert_int_equal(ctrio_nursery_close(&nur, 0), 0);
    assert_int_equal(u.accepted, 3);
    assert_int_equal(ctrio_listener_close(u.l), 0);
    assert_false(exists(t->path));
    assert_int_equal(ctrio_cancel_scope_close(&cs, 0), 0);
    return 0;
}

static void test_unix_listener_accepts_in_turn(void **state)
{
    (void)state;
    tmpdir t;
    tmpdir_make(&t, "listeners");
    assert_int_equal(run_real(unix_many_body, &t), 0);
    tmpdir_remove(&t);
}

/* ---- custom listeners (ctrio_listener_ops) -------------------------------- */

/* A custom listener whose accept waits on nothing its close touches
 * (ctrio_sleep_forever): only the generic layer can wake it. impl is heap
 * memory that close frees (ASan: a woken accept must not touch it). A
 * lingering accept holds the closed listener a while after waking (a
 * shielded sleep), so that the test can use the closed handle meanwhile. */
typedef struct sleeper {
    int *closed;    /* close calls: the test's counter, which outlives impl */
    bool *saw_null; /* set when ctrio_listener_impl(l) is NULL after the wait */
    bool linger;
} sleeper;

static int sleeper_accept(ctrio_listener *l, ctrio_stream **out)
{
    (void)out;
    sleeper *sp = ctrio_listener_impl(l);
    bool linger = sp->linger;
    bool *saw_null = sp->saw_null;
    int rc = ctrio_sleep_forever();
    if (!ctrio_listener_impl(l)) /* closed meanwhile: sp was freed */
        *saw_null = true;
    if (linger) {
        ctrio_cancel_scope cs;
        ctrio_cancel_scope_open(&cs);
        ctrio_cancel_scope_set_shield(&cs, true);
        assert_int_equal(ctrio_sleep(1), 0);
        ctrio_cancel_scope_close(&cs, 0);
    }
    return rc;
}

static int sleeper_close(ctrio_listener *l)
{
    sleeper *sp = ctrio_listener_impl(l);
    (*sp->closed)++;
    free(sp);
    return 0;
}

static const ctrio_listener_ops sleeper_ops = {.accept = sleeper_accept, .close = sleeper_close};

static ctrio_listener *sleeper_new(int *closed, bool *saw_null, bool linger)
{
    sleeper *sp = malloc(sizeof *sp);
    assert_non_null(sp);
    *sp = (sleeper){closed, saw_null, linger};
    ctrio_listener *l;
    assert_int_equal(ctrio_listener_new_custom(&sleeper_ops, sp, &l), 0);
    assert_ptr_equal(ctrio_listener_impl(l), sp);
    return l;
}

/* New (trio.abc.Listener's contract, made true for every listener by the
 * generic layer): a task blocked in a custom accept that its close does not
 * wake gets -EBADF when another task closes the listener, at once (mock
 * clock: at t = 0, not at the 5 s deadline), impl is NULL for it after the
 * wait, and everything is freed (ASan). */
static int custom_close_wakes_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    int closed = 0;
    bool saw_null = false;
    ctrio_listener *l = sleeper_new(&closed, &saw_null, false);
    accept_waiter w[1] = {{l, 1, false}};
    ctrio_nursery nur;
    ctrio_nursery_open(&nur);
    ctrio_start_soon(&nur, blocked_accept, &w[0]);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_false(w[0].done);
    assert_int_equal(ctrio_listener_close(l), 0);
    assert_int_equal(closed, 1);
    assert_int_equal(ctrio_nursery_close(&nur, 0), 0);
    assert_true(w[0].done);
    assert_int_equal(w[0].rc, -EBADF);
    assert_true(saw_null);
    assert_true(ctrio_current_time() == 0.0);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_custom_listener_close_wakes_accept(void **state)
{
    (void)state;
    assert_int_equal(run_mock(custom_close_wakes_body, NULL), 0);
}

/* New: while a woken accept still holds a closed custom listener, accept and
 * close on it are -EBADF (no second release), impl is NULL; the handle is
 * freed when that accept returns (ASan). */
static int custom_after_close_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5);
    int closed = 0;
    bool saw_null = false;
    ctrio_listener *l = sleeper_new(&closed, &saw_null, true);
    accept_waiter w = {l, 1, false};
    ctrio_nursery nur;
    ctrio_nursery_open(&nur);
    ctrio_start_soon(&nur, blocked_accept, &w);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_listener_close(l), 0);
    /* the accept lingers until t = 1: the handle is still alive */
    assert_false(w.done);
    ctrio_stream *s = (ctrio_stream *)&s;
    assert_int_equal(ctrio_listener_accept(l, &s), -EBADF);
    assert_null(s);
    assert_int_equal(ctrio_listener_close(l), -EBADF);
    assert_null(ctrio_listener_impl(l));
    assert_null(ctrio_socket_listener_socket(l));
    assert_int_equal(closed, 1);
    assert_int_equal(ctrio_nursery_close(&nur, 0), 0);
    assert_true(ctrio_current_time() == 1.0);
    assert_int_equal(w.rc, -EBADF);
    assert_true(saw_null);
    assert_int_equal(ctrio_cancel_scope_close(&deadline, 0), 0);
    return 0;
}

static void test_custom_listener_after_close(void **state)
{
    (void)state;
    assert_int_equal(run_mock(custom_after_close_body, NULL), 0);
}

/* New: the generic checks of a custom listener. NULL arguments -EINVAL; a
 * NULL accept -EOPNOTSUPP (no checkpoint, *out NULL); a NULL close releases
 * nothing (0); close is a checkpoint and may return -ECANCELED after
 * closing; an accept cancelled from outside is -ECANCELED (not -EBADF: the
 * listener is open); ctrio_socket_listener_socket is NULL for it. */
static int count_close(ctrio_listener *l)
{
    (*(int *)ctrio_listener_impl(l))++;
    return 0;
}

static int custom_checks_body(void *arg)
{
    (void)arg;
    static const ctrio_listener_ops none = {.accept = NULL, .close = NULL};
    static const ctrio_listener_ops only_close = {.accept = NULL, .close = count_close};
    ctrio_listener *l = (ctrio_listener *)&l;
    assert_int_equal(ctrio_listener_new_custom(NULL, NULL, &l), -EINVAL);
    assert_null(l);
    assert_int_equal(ctrio_listener_new_custom(&none, NULL, NULL), -EINVAL);
    assert_null(ctrio_listener_impl(NULL));
    assert_int_equal(ctrio_listener_accept(NULL, &(ctrio_stream *){NULL}), -EINVAL);

    assert_int_equal(ctrio_listener_new_custom(&none, NULL, &l), 0);
    assert_int_equal(ctrio_listener_accept(l, NULL), -EINVAL);
    ctrio_stream *s = (ctrio_stream *)&s;
    int rc;
    ASSERT_NO_CHECKPOINTS(rc = ctrio_listener_accept(l, &s));
    assert_int_equal(rc, -EOPNOTSUPP);
    assert_null(s);
    assert_null(ctrio_socket_listener_socket(l));
    ASSERT_CHECKPOINTS(rc = ctrio_listener_close(l));
    assert_int_equal(rc, 0);

    int closed = 0;
    assert_int_equal(ctrio_listener_new_custom(&only_close, &closed, &l), 0);
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    rc = ctrio_listener_close(l);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(closed, 1); /* closed all the same */
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);

    bool saw_null = false;
    l = sleeper_new(&closed, &saw_null, false);
    ctrio_move_on_after(&cs, 1);
    rc = ctrio_listener_accept(l, &s);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_false(saw_null);
    assert_int_equal(ctrio_listener_close(l), 0);
    assert_int_equal(closed, 2);
    return 0;
}

static void test_custom_listener_checks(void **state)
{
    (void)state;
    assert_int_equal(run_mock(custom_checks_body, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_open_tcp_listeners_basic),
        TEST(test_open_tcp_listeners_port0_same_port),
        TEST(test_open_tcp_listeners_specific_port_specific_host),
        TEST(test_open_tcp_listeners_ipv6_v6only),
        TEST(test_open_tcp_listeners_reuseaddr),
        TEST(test_open_tcp_listeners_rebind),
        TEST(test_open_tcp_listeners_port_checking),
        TEST(test_open_tcp_listeners_localhost),
        TEST(test_open_tcp_listeners_backlog),
        TEST(test_open_tcp_listeners_multiple_host_cleanup_on_error),
        TEST(test_open_tcp_listeners_some_address_families_unavailable),
        TEST(test_open_tcp_listeners_socket_fails_not_afnosupport),
        TEST(test_open_tcp_listeners_shared_port_retry),
        TEST(test_socket_listener_new_checks),
        TEST(test_listeners_close_wakes_accept_and_frees),
        TEST(test_listener_emfile_refuses_pending),
        TEST(test_listener_accept_is_checkpoint),
        TEST(test_listener_accept_outside_task),
        TEST(test_open_listeners_cancelled),
        TEST(test_unix_listener_basic),
        TEST(test_unix_listener_path_must_not_exist),
        TEST(test_unix_listener_replaced_path_not_unlinked),
        TEST(test_unix_listener_replaced_by_socket_not_unlinked),
        TEST(test_unix_listener_abstract),
        TEST(test_unix_listener_accepts_in_turn),
        TEST(test_custom_listener_close_wakes_accept),
        TEST(test_custom_listener_after_close),
        TEST(test_custom_listener_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
