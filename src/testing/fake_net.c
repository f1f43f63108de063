/*
 * fake_net.c — trio.testing-style fake network: a scripted hostname
 * resolver and socket factory on the two hooks of ctrio.h's section 6 (see
 * section 8c of ctrio_testing.h), modelled on the Scenario of Trio's
 * tests/test_highlevel_open_tcp_stream.py.
 *
 * The network owns one record per fake socket (fake_sock, whose first
 * member is the public ctrio_fake_attempt). The ctrio_socket handle points
 * at it; closing the handle only marks the record closed, so the records
 * outlive the sockets and a test can read them after the race is over.
 *
 * A connect in progress sleeps inside a cancel scope of its own: closing
 * the socket from another task cancels that scope, and the connect returns
 * -EBADF, as a real socket's does (notify_closing). Any other cancellation
 * kills the socket (dead: every call but close is -EBADF), as a real
 * connect that is cancelled closes its descriptor (Trio #247).
 */
#include "internal.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>

typedef struct fake_host {
    char *name;
    struct sockaddr_storage *addrs;
    socklen_t *lens;
    size_t n;
} fake_host;

typedef struct fake_rule {
    struct sockaddr_storage addr;
    double delay;
    int result;
} fake_rule;

typedef struct fake_opt {
    int level, name, value;
} fake_opt;

#define FAKE_MAX_OPTS 16

/* A datagram in a fake SOCK_DGRAM socket's receive queue. */
typedef struct fake_dgram {
    struct fake_dgram *next;
    struct sockaddr_storage from;
    socklen_t fromlen;
    size_t len;
    char data[];
} fake_dgram;

typedef struct fake_sock {
    ctrio_fake_attempt a; /* first: the public record */
    ctrio_fake_net *net;
    int type, protocol;
    bool dead; /* a cancelled connect "closed the descriptor" */
    bool connected;
    ctrio_cancel_scope *connect_scope; /* set while connect waits */
    fake_opt opts[FAKE_MAX_OPTS];
    size_t nopts;
    fake_dgram *queue, **queue_tail; /* SOCK_DGRAM: received, not yet read */
    ctrio_event *more;               /* set by a delivery or a close */
} fake_sock;

struct ctrio_fake_net {
    fake_host *hosts;
    size_t nhosts;
    fake_rule *rules;
    size_t nrules;
    fake_sock **socks;
    size_t nsocks, capsocks;
    bool no_inet, no_inet6;
    int sockopt_error;
    unsigned next_port; /* ports given to datagram sockets bound to port 0 */
    size_t nlookups;
    ctrio_fake_lookup last_lookup;
    /* installation */
    ctrio__run *run; /* the run it is installed in, NULL if none */
    const ctrio_socket_factory *prev_factory;
    const ctrio_hostname_resolver *prev_resolver;
    ctrio_socket_factory factory;
    ctrio_hostname_resolver resolver;
};

/* ---- addresses ------------------------------------------------------------- */

/* Same host address (family, address, IPv6 scope); ports are ignored. */
static bool same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0 &&
               x->sin6_scope_id == y->sin6_scope_id;
    }
    return false;
}

static int parse_ip(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!text)
        return -EINVAL;
    int rc = ctrio_sockaddr_parse(0, text, 0, ss, len);
    if (rc < 0)
        return rc;
    return ss->ss_family == AF_INET || ss->ss_family == AF_INET6 ? 0 : -EINVAL;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static int port_of(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static socklen_t family_len(int family)
{
    return family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* ---- the resolver ------------------------------------------------------------ */

static fake_host *find_host(ctrio_fake_net *net, const char *name)
{
    for (size_t i = 0; i < net->nhosts; i++)
        if (strcasecmp(net->hosts[i].name, name) == 0)
            return &net->hosts[i];
    return NULL;
}

static void fake_freeaddrinfo(void *ctx, struct addrinfo *res)
{
    (void)ctx;
    while (res) {
        struct addrinfo *next = res->ai_next;
        free(res); /* one block: the entry and its address */
        res = next;
    }
}

static void copy_text(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

static int fake_getaddrinfo(void *ctx, const char *host, const char *service,
                            const struct addrinfo *hints, struct addrinfo **res)
{
    ctrio_fake_net *net = ctx;
    *res = NULL;
    ctrio_fake_lookup *l = &net->last_lookup;
    net->nlookups++;
    copy_text(l->host, sizeof l->host, host);
    copy_text(l->service, sizeof l->service, service);
    l->flags = hints ? hints->ai_flags : 0;
    l->family = hints ? hints->ai_family : 0;
    l->socktype = hints ? hints->ai_socktype : 0;
    l->protocol = hints ? hints->ai_protocol : 0;
    /* The schedule point of the lookup (its cancel point came before). */
    int rc = ctrio_checkpoint();
    if (rc < 0)
        return rc;
    fake_host *h = host ? find_host(net, host) : NULL;
    if (!h)
        return CTRIO_EAI_NONAME;
    long port = 0;
    if (service && *service) {
        char *end;
        port = strtol(service, &end, 10);
        if (*end || port < 0 || port > 65535)
            return CTRIO_EAI_SERVICE;
    }
    int socktype = l->socktype ? l->socktype : SOCK_STREAM;
    if (socktype != SOCK_STREAM && socktype != SOCK_DGRAM)
        return CTRIO_EAI_SOCKTYPE;
    int protocol = l->protocol ? l->protocol : socktype == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
    struct addrinfo *head = NULL, **tail = &head;
    for (size_t i = 0; i < h->n; i++) {
        int fam = h->addrs[i].ss_family;
        if (l->family != AF_UNSPEC && l->family != fam)
            continue;
        struct addrinfo *ai = calloc(1, sizeof *ai + sizeof(struct sockaddr_storage));
        if (!ai) {
            fake_freeaddrinfo(NULL, head);
            return -ENOMEM;
        }
        struct sockaddr_storage *ss = (struct sockaddr_storage *)(ai + 1);
        memcpy(ss, &h->addrs[i], h->lens[i]);
        set_port(ss, (int)port);
        ai->ai_family = fam;
        ai->ai_socktype = socktype;
        ai->ai_protocol = protocol;
        ai->ai_addr = (struct sockaddr *)ss;
        ai->ai_addrlen = h->lens[i];
        *tail = ai;
        tail = &ai->ai_next;
    }
    *res = head; /* may be empty: ctrio_getaddrinfo turns that into EAI_NONAME */
    return 0;
}

/* ---- the sockets ---------------------------------------------------------------- */

static const ctrio_socket_ops fake_ops;

/* No "descriptor" any more: a cancelled connect killed it, or another task
 * closed the socket while this call waited (the handle lives on until the
 * call returns). */
static bool gone(const fake_sock *fs)
{
    return fs->dead || fs->a.closed;
}

static fake_rule *find_rule(ctrio_fake_net *net, const struct sockaddr *addr)
{
    for (size_t i = 0; i < net->nrules; i++)
        if (same_ip((struct sockaddr *)&net->rules[i].addr, addr))
            return &net->rules[i];
    return NULL;
}

static int dgram_connect(fake_sock *fs, const struct sockaddr *addr, socklen_t len);

static int fake_connect(ctrio_socket *s, const struct sockaddr *addr, socklen_t len)
{
    fake_sock *fs = ctrio_socket_impl(s);
    /* outside a task: -EPERM (reported as misuse), acting on nothing, as a
     * real socket; the cancel check below would take it for a cancel */
    if (!ctrio_in_task())
        return ctrio_checkpoint();
    if (fs->type == SOCK_DGRAM)
        return dgram_connect(fs, addr, len);
    if (gone(fs)) {
        int rc = ctrio_checkpoint();
        return rc < 0 ? rc : -EBADF;
    }
    if (fs->a.peer_len) { /* one connect per fake socket */
        int rc = ctrio_checkpoint();
        if (rc < 0)
            return rc;
        return fs->connected                                ? -EISCONN
               : fs->a.connect_result == CTRIO_FAKE_PENDING ? -EALREADY
                                                            : fs->a.connect_result;
    }
    if (len < family_len(fs->a.family) || len > sizeof fs->a.peer ||
        addr->sa_family != fs->a.family) {
        int rc = ctrio_checkpoint();
        if (rc < 0)
            return rc;
        return len < sizeof(sa_family_t) || addr->sa_family == fs->a.family ? -EINVAL
                                                                            : -EAFNOSUPPORT;
    }
    memcpy(&fs->a.peer, addr, len);
    fs->a.peer_len = len;
    fs->a.connect_time = ctrio_current_time();
    fs->a.connect_result = CTRIO_FAKE_PENDING;
    if (ctrio_checkpoint_if_cancelled() < 0) { /* as a real socket: cancelled = closed */
        fs->dead = true;
        return fs->a.connect_result = -ECANCELED;
    }
    fake_rule *rule = find_rule(fs->net, addr);
    double delay = rule ? rule->delay : 0;
    int result = rule ? rule->result : -ECONNREFUSED;
    int rc;
    if (delay == 0) {
        ctrio_cancel_shielded_checkpoint(); /* completed at once: the result wins */
        rc = 0;
    } else {
        ctrio_cancel_scope cs;
        ctrio_cancel_scope_open(&cs);
        fs->connect_scope = &cs;
        rc = isinf(delay) ? ctrio_sleep_forever() : ctrio_sleep(delay);
        fs->connect_scope = NULL;
        rc = ctrio_cancel_scope_close(&cs, rc);
    }
    if (fs->a.closed) /* closed under us by another task */
        return fs->a.connect_result = -EBADF;
    if (rc < 0) {
        fs->dead = true;
        return fs->a.connect_result = rc;
    }
    fs->connected = result == 0;
    return fs->a.connect_result = result;
}

static int fake_bind(ctrio_socket *s, const struct sockaddr *addr, socklen_t len)
{
    fake_sock *fs = ctrio_socket_impl(s);
    int rc = ctrio_checkpoint();
    if (rc < 0)
        return rc;
    if (gone(fs))
        return -EBADF;
    if (len < family_len(fs->a.family) || len > sizeof fs->a.local)
        return -EINVAL;
    if (addr->sa_family != fs->a.family)
        return -EAFNOSUPPORT;
    if (fs->a.local_len || fs->a.peer_len)
        return -EINVAL;
    memcpy(&fs->a.local, addr, len);
    fs->a.local_len = len;
    if (fs->type == SOCK_DGRAM && port_of(&fs->a.local) == 0) /* the kernel picks one */
        set_port(&fs->a.local, (int)fs->net->next_port++);
    return 0;
}

static int copy_out(const struct sockaddr_storage *src, socklen_t srclen, struct sockaddr *addr,
                    socklen_t *len)
{
    memcpy(addr, src, *len < srclen ? *len : srclen); /* truncated, as the kernel */
    *len = srclen;
    return 0;
}

static int fake_getpeername(ctrio_socket *s, struct sockaddr *addr, socklen_t *len)
{
    fake_sock *fs = ctrio_socket_impl(s);
    if (gone(fs))
        return -EBADF;
    if (!fs->connected)
        return -ENOTCONN;
    return copy_out(&fs->a.peer, fs->a.peer_len, addr, len);
}

static int fake_getsockname(ctrio_socket *s, struct sockaddr *addr, socklen_t *len)
{
    fake_sock *fs = ctrio_socket_impl(s);
    if (gone(fs))
        return -EBADF;
    if (fs->a.local_len)
        return copy_out(&fs->a.local, fs->a.local_len, addr, len);
    struct sockaddr_storage any;
    memset(&any, 0, sizeof any);
    any.ss_family = (sa_family_t)fs->a.family; /* the wildcard, port 0 */
    return copy_out(&any, family_len(fs->a.family), addr, len);
}

static int fake_shutdown(ctrio_socket *s, int how)
{
    fake_sock *fs = ctrio_socket_impl(s);
    if (gone(fs))
        return -EBADF;
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
        return -EINVAL;
    return fs->connected ? 0 : -ENOTCONN;
}

static int fake_setsockopt(ctrio_socket *s, int level, int name, const void *val, socklen_t len)
{
    fake_sock *fs = ctrio_socket_impl(s);
    if (gone(fs))
        return -EBADF;
    fs->a.setsockopt_calls++;
    if (fs->net->sockopt_error)
        return fs->net->sockopt_error;
    if (len < sizeof(int))
        return -EINVAL;
    int v;
    memcpy(&v, val, sizeof v);
    for (size_t i = 0; i < fs->nopts; i++) {
        if (fs->opts[i].level == level && fs->opts[i].name == name) {
            fs->opts[i].value = v;
            return 0;
        }
    }
    if (fs->nopts == FAKE_MAX_OPTS)
        return -ENOMEM;
    fs->opts[fs->nopts++] = (fake_opt){level, name, v};
    return 0;
}

static int fake_getsockopt(ctrio_socket *s, int level, int name, void *val, socklen_t *len)
{
    fake_sock *fs = ctrio_socket_impl(s);
    if (gone(fs))
        return -EBADF;
    if (*len < sizeof(int))
        return -EINVAL;
    int v = 0; /* an option never set reads 0 */
    if (level == SOL_SOCKET && name == SO_TYPE)
        v = fs->type;
    else if (level == SOL_SOCKET && name == SO_DOMAIN)
        v = fs->a.family;
    else if (level == SOL_SOCKET && name == SO_PROTOCOL)
        v = fs->protocol;
    else if (level == SOL_SOCKET && name == SO_ERROR)
        v = 0;
    else
        for (size_t i = 0; i < fs->nopts; i++)
            if (fs->opts[i].level == level && fs->opts[i].name == name)
                v = fs->opts[i].value;
    memcpy(val, &v, sizeof v);
    *len = sizeof v;
    return 0;
}

static int fake_wait_writable(ctrio_socket *s)
{
    fake_sock *fs = ctrio_socket_impl(s);
    int rc = ctrio_checkpoint();
    if (rc < 0)
        return rc;
    if (gone(fs))
        return -EBADF;
    return fs->connected ? 0 : -ENOTCONN;
}

/* ---- datagrams (SOCK_DGRAM) ------------------------------------------------------ */

/* A datagram goes to the open fake datagram socket bound to its address
 * (or to the wildcard address of its family) and port; to nowhere, it is
 * dropped, as UDP drops it. Sends complete at once; receives wait for a
 * datagram. Each call is one checkpoint, as a kernel socket's (Trio's
 * _nonblocking_helper): cancelled before, it does nothing. */

static void free_queue(fake_sock *fs)
{
    while (fs->queue) {
        fake_dgram *d = fs->queue;
        fs->queue = d->next;
        free(d);
    }
    fs->queue_tail = &fs->queue;
}

static bool is_wildcard(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static fake_sock *dgram_dest(ctrio_fake_net *net, const struct sockaddr_storage *to)
{
    for (size_t i = 0; i < net->nsocks; i++) {
        fake_sock *d = net->socks[i];
        if (d->type == SOCK_DGRAM && !gone(d) && d->a.local_len && d->a.family == to->ss_family &&
            port_of(&d->a.local) == port_of(to) &&
            (is_wildcard(&d->a.local) ||
             same_ip((const struct sockaddr *)&d->a.local, (const struct sockaddr *)to)))
            return d;
    }
    return NULL;
}

/* A send from an unbound socket binds it to the wildcard and a port. */
static void dgram_autobind(fake_sock *fs)
{
    if (fs->a.local_len)
        return;
    memset(&fs->a.local, 0, sizeof fs->a.local);
    fs->a.local.ss_family = (sa_family_t)fs->a.family;
    set_port(&fs->a.local, (int)fs->net->next_port++);
    fs->a.local_len = family_len(fs->a.family);
}

static int dgram_connect(fake_sock *fs, const struct sockaddr *addr, socklen_t len)
{
    int rc = ctrio_checkpoint();
    if (rc < 0)
        return rc;
    if (gone(fs))
        return -EBADF;
    if (len < family_len(fs->a.family) || len > sizeof fs->a.peer)
        return -EINVAL;
    if (addr->sa_family != fs->a.family)
        return -EAFNOSUPPORT;
    dgram_autobind(fs);
    memcpy(&fs->a.peer, addr, len);
    fs->a.peer_len = len;
    fs->connected = true;
    fs->a.connect_result = 0;
    return 0;
}

/* Deliver one message; returns its length or -errno. */
static ssize_t dgram_send_one(fake_sock *fs, const struct msghdr *m)
{
    struct sockaddr_storage to;
    if (m->msg_name && m->msg_namelen) {
        if (m->msg_namelen < family_len(fs->a.family) || m->msg_namelen > sizeof to)
            return -EINVAL;
        memcpy(&to, m->msg_name, m->msg_namelen);
        if (to.ss_family != fs->a.family)
            return -EAFNOSUPPORT;
    } else if (fs->connected) {
        to = fs->a.peer;
    } else {
        return -EDESTADDRREQ;
    }
    size_t len = 0;
    for (size_t i = 0; i < (size_t)m->msg_iovlen; i++)
        len += m->msg_iov[i].iov_len;
    dgram_autobind(fs);
    fake_sock *dst = dgram_dest(fs->net, &to);
    if (!dst)
        return (ssize_t)len; /* to nowhere: dropped */
    fake_dgram *d = malloc(sizeof *d + len);
    if (!d)
        return -ENOBUFS;
    d->next = NULL;
    d->from = fs->a.local;
    d->fromlen = fs->a.local_len;
    d->len = 0;
    for (size_t i = 0; i < (size_t)m->msg_iovlen; i++) {
        memcpy(d->data + d->len, m->msg_iov[i].iov_base, m->msg_iov[i].iov_len);
        d->len += m->msg_iov[i].iov_len;
    }
    *dst->queue_tail = d;
    dst->queue_tail = &d->next;
    if (dst->more)
        ctrio_event_set(dst->more);
    return (ssize_t)len;
}

static int fake_sendmmsg(ctrio_socket *s, struct mmsghdr *msgs, unsigned int vlen, int flags)
{
    (void)flags;
    fake_sock *fs = ctrio_socket_impl(s);
    if (fs->type != SOCK_DGRAM)
        return -EOPNOTSUPP; /* no data moves on a fake stream (ctrio_testing.h) */
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    unsigned n = 0;
    ssize_t r = gone(fs) ? -EBADF : 0;
    while (r >= 0 && n < vlen) {
        r = dgram_send_one(fs, &msgs[n].msg_hdr);
        if (r >= 0)
            msgs[n++].msg_len = (unsigned)r;
    }
    ctrio_cancel_shielded_checkpoint(); /* sent: the result wins */
    return n ? (int)n : (int)r;
}

static ssize_t fake_sendmsg(ctrio_socket *s, const struct msghdr *msg, int flags)
{
    struct mmsghdr m = {.msg_hdr = *msg};
    int rc = fake_sendmmsg(s, &m, 1, flags);
    return rc < 0 ? rc : (ssize_t)m.msg_len;
}

/* Copy the first queued datagram into m (scattered over its buffers). */
static unsigned dgram_take(fake_sock *fs, struct msghdr *m)
{
    fake_dgram *d = fs->queue;
    fs->queue = d->next;
    if (!fs->queue)
        fs->queue_tail = &fs->queue;
    size_t done = 0;
    for (size_t i = 0; i < (size_t)m->msg_iovlen && done < d->len; i++) {
        size_t k = d->len - done < m->msg_iov[i].iov_len ? d->len - done : m->msg_iov[i].iov_len;
        memcpy(m->msg_iov[i].iov_base, d->data + done, k);
        done += k;
    }
    m->msg_flags = done < d->len ? MSG_TRUNC : 0;
    m->msg_controllen = 0;
    if (m->msg_name)
        copy_out(&d->from, d->fromlen, m->msg_name, &m->msg_namelen);
    free(d);
    return (unsigned)done;
}

static int fake_recvmmsg(ctrio_socket *s, struct mmsghdr *msgs, unsigned int vlen, int flags)
{
    fake_sock *fs = ctrio_socket_impl(s);
    if (fs->type != SOCK_DGRAM)
        return -EOPNOTSUPP;
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    bool waited = false;
    while (!gone(fs) && !fs->queue && !(flags & MSG_DONTWAIT)) {
        ctrio_event e; /* a delivery or a close sets it */
        ctrio_event_init(&e);
        fs->more = &e;
        rc = ctrio_event_wait(&e);
        fs->more = NULL;
        if (rc < 0)
            return rc;
        waited = true;
    }
    unsigned n = 0;
    while (!gone(fs) && fs->queue && n < vlen) {
        unsigned len = dgram_take(fs, &msgs[n].msg_hdr);
        msgs[n++].msg_len = len;
    }
    if (!waited)
        ctrio_cancel_shielded_checkpoint(); /* taken at once: the result wins */
    return n ? (int)n : gone(fs) ? -EBADF : -EAGAIN;
}

static ssize_t fake_recvmsg(ctrio_socket *s, struct msghdr *msg, int flags)
{
    struct mmsghdr m = {.msg_hdr = *msg};
    int rc = fake_recvmmsg(s, &m, 1, flags);
    if (rc < 0)
        return rc;
    *msg = m.msg_hdr;
    return (ssize_t)m.msg_len;
}

static bool fake_is_readable(ctrio_socket *s)
{
    fake_sock *fs = ctrio_socket_impl(s);
    return !gone(fs) && fs->queue != NULL;
}

/* The record stays with the network; wake a connect in progress. */
static int fake_close(ctrio_socket *s)
{
    fake_sock *fs = ctrio_socket_impl(s);
    fs->a.closed = true;
    if (fs->connect_scope)
        ctrio_cancel_scope_cancel(fs->connect_scope);
    if (fs->more) /* a receive in progress: -EBADF */
        ctrio_event_set(fs->more);
    free_queue(fs);
    return 0;
}

static const ctrio_socket_ops fake_ops = {
    .connect = fake_connect,
    .bind = fake_bind,
    .wait_writable = fake_wait_writable,
    .is_readable = fake_is_readable,
    .getpeername = fake_getpeername,
    .getsockname = fake_getsockname,
    .shutdown = fake_shutdown,
    .setsockopt = fake_setsockopt,
    .getsockopt = fake_getsockopt,
    .close = fake_close,
    .recvmsg = fake_recvmsg,
    .sendmsg = fake_sendmsg,
    .recvmmsg = fake_recvmmsg,
    .sendmmsg = fake_sendmmsg,
};

static int fake_socket(void *ctx, int family, int type, int protocol, ctrio_socket **out)
{
    ctrio_fake_net *net = ctx;
    if ((family != AF_INET && family != AF_INET6) || (family == AF_INET && net->no_inet) ||
        (family == AF_INET6 && net->no_inet6))
        return -EAFNOSUPPORT;
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (base != SOCK_STREAM && base != SOCK_DGRAM)
        return -ESOCKTNOSUPPORT;
    int proto = base == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
    if (protocol == 0)
        protocol = proto;
    else if (protocol != proto)
        return -EPROTONOSUPPORT;
    if (net->nsocks == net->capsocks) {
        size_t cap = net->capsocks ? 2 * net->capsocks : 8;
        fake_sock **p = realloc(net->socks, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        net->socks = p;
        net->capsocks = cap;
    }
    fake_sock *fs = calloc(1, sizeof *fs);
    if (!fs)
        return -ENOMEM;
    fs->net = net;
    fs->a.family = family;
    fs->a.connect_result = CTRIO_FAKE_PENDING;
    fs->type = base;
    fs->protocol = protocol;
    fs->queue_tail = &fs->queue;
    int rc = ctrio_socket_new_custom(&fake_ops, fs, family, base, protocol, out);
    if (rc < 0) {
        free(fs);
        return rc;
    }
    net->socks[net->nsocks++] = fs;
    return 0;
}

/* ---- the network ---------------------------------------------------------------- */

int ctrio_fake_net_new(ctrio_fake_net **out)
{
    if (!out)
        return -EINVAL;
    ctrio_fake_net *net = calloc(1, sizeof *net);
    *out = net;
    if (!net)
        return -ENOMEM;
    net->factory = (ctrio_socket_factory){.ctx = net, .socket = fake_socket};
    net->next_port = 49152; /* the IANA ephemeral range, as Linux may pick */
    net->resolver = (ctrio_hostname_resolver){
        .ctx = net, .getaddrinfo = fake_getaddrinfo, .freeaddrinfo = fake_freeaddrinfo};
    return 0;
}

static void free_host(fake_host *h)
{
    free(h->name);
    free(h->addrs);
    free(h->lens);
}

void ctrio_fake_net_free(ctrio_fake_net *net)
{
    if (!net)
        return;
    ctrio_fake_net_uninstall(net);
    for (size_t i = 0; i < net->nhosts; i++)
        free_host(&net->hosts[i]);
    free(net->hosts);
    free(net->rules);
    for (size_t i = 0; i < net->nsocks; i++) {
        free_queue(net->socks[i]); /* a socket left open */
        free(net->socks[i]);
    }
    free(net->socks);
    free(net);
}

int ctrio_fake_net_add_host(ctrio_fake_net *net, const char *name, const char *const *addrs,
                            size_t n)
{
    if (!net || !name || (n && !addrs))
        return -EINVAL;
    fake_host h = {0};
    h.n = n;
    h.name = strdup(name);
    h.addrs = calloc(n ? n : 1, sizeof *h.addrs);
    h.lens = calloc(n ? n : 1, sizeof *h.lens);
    int rc = h.name && h.addrs && h.lens ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = parse_ip(addrs[i], &h.addrs[i], &h.lens[i]);
    fake_host *old = rc == 0 ? find_host(net, name) : NULL;
    if (rc == 0 && !old) {
        fake_host *p = realloc(net->hosts, (net->nhosts + 1) * sizeof *p);
        if (!p)
            rc = -ENOMEM;
        else
            net->hosts = p;
    }
    if (rc < 0) {
        free_host(&h);
        return rc;
    }
    if (old) {
        free_host(old);
        *old = h;
    } else {
        net->hosts[net->nhosts++] = h;
    }
    return 0;
}

int ctrio_fake_net_set_connect(ctrio_fake_net *net, const char *addr, double delay, int result)
{
    if (!net || !(delay >= 0) || result > 0)
        return -EINVAL;
    fake_rule r = {.delay = delay, .result = result};
    socklen_t len;
    int rc = parse_ip(addr, &r.addr, &len);
    if (rc < 0)
        return rc;
    fake_rule *old = find_rule(net, (struct sockaddr *)&r.addr);
    if (old) {
        *old = r;
        return 0;
    }
    fake_rule *p = realloc(net->rules, (net->nrules + 1) * sizeof *p);
    if (!p)
        return -ENOMEM;
    net->rules = p;
    net->rules[net->nrules++] = r;
    return 0;
}

int ctrio_fake_net_set_family(ctrio_fake_net *net, int family, bool supported)
{
    if (!net)
        return -EINVAL;
    if (family == AF_INET)
        net->no_inet = !supported;
    else if (family == AF_INET6)
        net->no_inet6 = !supported;
    else
        return -EINVAL;
    return 0;
}

void ctrio_fake_net_fail_setsockopt(ctrio_fake_net *net, int err)
{
    if (net)
        net->sockopt_error = err < 0 ? err : 0;
}

int ctrio_fake_net_install(ctrio_fake_net *net)
{
    if (!net)
        return -EINVAL;
    ctrio__run *r = ctrio__tls_run;
    if (!r)
        return ctrio__misuse("ctrio_fake_net_install called outside a run");
    if (net->run == r)
        return ctrio__misuse("ctrio_fake_net_install: already installed");
    net->run = r;
    net->prev_factory = ctrio_set_custom_socket_factory(&net->factory);
    net->prev_resolver = ctrio_set_custom_hostname_resolver(&net->resolver);
    return 0;
}

void ctrio_fake_net_uninstall(ctrio_fake_net *net)
{
    if (!net || !net->run)
        return;
    if (net->run == ctrio__tls_run) {
        ctrio_set_custom_socket_factory(net->prev_factory);
        ctrio_set_custom_hostname_resolver(net->prev_resolver);
    }
    net->run = NULL;
    net->prev_factory = NULL;
    net->prev_resolver = NULL;
}

size_t ctrio_fake_net_attempt_count(const ctrio_fake_net *net)
{
    return net ? net->nsocks : 0;
}

const ctrio_fake_attempt *ctrio_fake_net_attempt(const ctrio_fake_net *net, size_t i)
{
    return net && i < net->nsocks ? &net->socks[i]->a : NULL;
}

const ctrio_fake_attempt *ctrio_fake_net_find_attempt(const ctrio_fake_net *net, const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (!net || parse_ip(addr, &ss, &len) < 0)
        return NULL;
    for (size_t i = 0; i < net->nsocks; i++)
        if (net->socks[i]->a.peer_len &&
            same_ip((struct sockaddr *)&net->socks[i]->a.peer, (struct sockaddr *)&ss))
            return &net->socks[i]->a;
    return NULL;
}

size_t ctrio_fake_net_lookup_count(const ctrio_fake_net *net)
{
    return net ? net->nlookups : 0;
}

const ctrio_fake_lookup *ctrio_fake_net_last_lookup(const ctrio_fake_net *net)
{
    return net && net->nlookups ? &net->last_lookup : NULL;
}
