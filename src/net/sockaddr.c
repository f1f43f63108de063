/*
 * sockaddr.c — socket addresses to and from text, numeric only.
 *
 * The seed's socket methods take addresses that are already resolved; these
 * two calls are how a program writes one by hand or prints one, without ever
 * asking DNS: a host name is an error here, not a lookup. Every length is
 * checked against the family's structure before a byte is read, so a short
 * or odd address is refused (-EINVAL), never read past its end.
 *
 * The kernel's own families (AF_NETLINK, AF_PACKET, AF_VSOCK) have no
 * customary text form, so ctrio gives each one with the family as a prefix:
 * "netlink:PID:GROUPS", "packet:IFACE:PROTO[:HWADDR]", "vsock:CID:PORT". The
 * whole address is in the text (a vsock port does not fit the int port of
 * the IP families), and format writes exactly what parse reads, so a printed
 * address can be pasted back. Other families are refused (-EAFNOSUPPORT)
 * rather than printed as bytes that nothing could read back.
 */
#include "net.h"

#include <arpa/inet.h>
#include <limits.h>
#include <linux/netlink.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/un.h>

static int parse_unix(const char *host, struct sockaddr_storage *out, socklen_t *len)
{
    struct sockaddr_un *un = (struct sockaddr_un *)out;
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    size_t base = offsetof(struct sockaddr_un, sun_path);
    if (host[0] == '@') { /* Linux's abstract namespace: a leading NUL */
        size_t n = strlen(host + 1);
        if (n + 1 > sizeof un->sun_path)
            return -ENAMETOOLONG;
        memcpy(un->sun_path + 1, host + 1, n);
        *len = (socklen_t)(base + 1 + n);
        return 0;
    }
    size_t n = strlen(host);
    if (n == 0)
        return -EINVAL;
    if (n + 1 > sizeof un->sun_path)
        return -ENAMETOOLONG;
    memcpy(un->sun_path, host, n + 1);
    *len = (socklen_t)(base + n + 1);
    return 0;
}

static int parse_scope(const char *scope, uint32_t *id)
{
    if (!*scope)
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long v = strtoul(scope, &end, 10);
    if (scope[0] >= '0' && scope[0] <= '9' && *end == '\0' && errno == 0 && v <= UINT32_MAX) {
        *id = (uint32_t)v;
        return 0;
    }
    unsigned idx = if_nametoindex(scope);
    if (idx == 0)
        return -ENODEV;
    *id = idx;
    return 0;
}

static int parse_inet6(const char *host, int port, struct sockaddr_storage *out,
                       socklen_t *len)
{
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    size_t n = strlen(host);
    if (n >= sizeof buf)
        return -EINVAL;
    memcpy(buf, host, n + 1);
    uint32_t scope = 0;
    char *pct = strchr(buf, '%');
    if (pct) {
        *pct = '\0';
        int rc = parse_scope(pct + 1, &scope);
        if (rc < 0)
            return rc;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    memset(in6, 0, sizeof *in6);
    if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1)
        return -EINVAL;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    in6->sin6_scope_id = scope;
    *len = sizeof *in6;
    return 0;
}

static int parse_inet(const char *host, int port, struct sockaddr_storage *out, socklen_t *len)
{
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    memset(in, 0, sizeof *in);
    if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
        return -EINVAL;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    *len = sizeof *in;
    return 0;
}

/* ---- the kernel's families: "netlink:", "packet:", "vsock:" --------------- */

static int digit_value(char c, unsigned base)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (base == 16 && c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (base == 16 && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* s[0..n): decimal digits, or "0x" and hex digits, at most max. No sign and
 * no space (strtoul would skip both, as the IPv6 scope once did); at most 10
 * digits, so that the sum below cannot overflow. */
static int parse_number(const char *s, size_t n, uint32_t max, uint32_t *out)
{
    unsigned base = 10;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        n -= 2;
    }
    if (n == 0 || n > 10)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = digit_value(s[i], base);
        if (d < 0)
            return -EINVAL;
        v = v * base + (unsigned)d;
    }
    if (v > max)
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

/* The field of *p up to the next ':' (or the end); *p moves past it and its
 * ':'. Returns the field's length; *last tells whether it was the last one. */
static size_t next_field(const char **p, const char **field, bool *last)
{
    const char *colon = strchr(*p, ':');
    size_t n = colon ? (size_t)(colon - *p) : strlen(*p);
    *field = *p;
    *last = colon == NULL;
    *p = colon ? colon + 1 : *p + n;
    return n;
}

/* "netlink:PID[:GROUPS]" (the prefix taken off): the port id (0 is the
 * kernel) and the multicast group mask, decimal or 0x hex. */
static int parse_netlink(const char *p, struct sockaddr_storage *out, socklen_t *len)
{
    const char *f;
    bool last;
    size_t n = next_field(&p, &f, &last);
    uint32_t pid, groups = 0;
    if (parse_number(f, n, UINT32_MAX, &pid) < 0)
        return -EINVAL;
    if (!last && parse_number(p, strlen(p), UINT32_MAX, &groups) < 0)
        return -EINVAL;
    struct sockaddr_nl *nl = (struct sockaddr_nl *)out;
    memset(nl, 0, sizeof *nl);
    nl->nl_family = AF_NETLINK;
    nl->nl_pid = pid;
    nl->nl_groups = groups;
    *len = sizeof *nl;
    return 0;
}

/* A vsock CID or port: a number, or "any" (VMADDR_CID_ANY and
 * VMADDR_PORT_ANY are both -1U). */
static int parse_vsock_number(const char *s, size_t n, uint32_t *out)
{
    if (n == 3 && memcmp(s, "any", 3) == 0) {
        *out = UINT32_MAX;
        return 0;
    }
    return parse_number(s, n, UINT32_MAX, out);
}

/* "vsock:CID:PORT" (the prefix taken off). */
static int parse_vsock(const char *p, struct sockaddr_storage *out, socklen_t *len)
{
    const char *f;
    bool last;
    size_t n = next_field(&p, &f, &last);
    uint32_t cid, port;
    if (last || parse_vsock_number(f, n, &cid) < 0 || parse_vsock_number(p, strlen(p), &port) < 0)
        return -EINVAL;
    struct sockaddr_vm *vm = (struct sockaddr_vm *)out;
    memset(vm, 0, sizeof *vm);
    vm->svm_family = AF_VSOCK;
    vm->svm_cid = cid;
    vm->svm_port = port;
    *len = sizeof *vm;
    return 0;
}

/* An interface by decimal index (0: any) or by name, as an IPv6 scope:
 * digits only are an index (Linux names may be "1x" or "-1"). */
static int parse_ifindex(const char *s, size_t n, int *out)
{
    uint32_t v;
    if (n > 0 && strspn(s, "0123456789") >= n) {
        if (parse_number(s, n, INT_MAX, &v) < 0)
            return -EINVAL;
        *out = (int)v;
        return 0;
    }
    char name[IF_NAMESIZE];
    if (n == 0 || n >= sizeof name)
        return n == 0 ? -EINVAL : -ENODEV;
    memcpy(name, s, n);
    name[n] = '\0';
    unsigned idx = if_nametoindex(name);
    if (idx == 0 || idx > INT_MAX)
        return -ENODEV;
    *out = (int)idx;
    return 0;
}

/* "aa:bb:cc:dd:ee:ff": 1 to 8 bytes of two hex digits each. */
static int parse_hwaddr(const char *p, unsigned char *addr, unsigned char *halen)
{
    size_t i = 0;
    for (;;) {
        int hi = digit_value(p[0], 16), lo = hi < 0 ? -1 : digit_value(p[1], 16);
        if (lo < 0 || i == 8)
            return -EINVAL;
        addr[i++] = (unsigned char)(hi * 16 + lo);
        p += 2;
        if (*p == '\0')
            break;
        if (*p++ != ':')
            return -EINVAL;
    }
    *halen = (unsigned char)i;
    return 0;
}

/* "packet:IFACE:PROTO[:HWADDR]" (the prefix taken off): the interface, the
 * ethertype (host order in the text: 0x0800 is IPv4, 0x0003 ETH_P_ALL) and,
 * for sendto, the hardware address. */
static int parse_packet(const char *p, struct sockaddr_storage *out, socklen_t *len)
{
    struct sockaddr_ll ll;
    memset(&ll, 0, sizeof ll);
    const char *f;
    bool last;
    size_t n = next_field(&p, &f, &last);
    int rc = parse_ifindex(f, n, &ll.sll_ifindex);
    if (rc < 0)
        return rc;
    if (last)
        return -EINVAL;
    n = next_field(&p, &f, &last);
    uint32_t proto;
    if (parse_number(f, n, 0xffff, &proto) < 0)
        return -EINVAL;
    if (!last && parse_hwaddr(p, ll.sll_addr, &ll.sll_halen) < 0)
        return -EINVAL;
    ll.sll_family = AF_PACKET;
    ll.sll_protocol = htons((uint16_t)proto);
    memcpy(out, &ll, sizeof ll);
    *len = sizeof ll; /* packet_bind wants the whole structure */
    return 0;
}

static const struct kernel_family {
    int family;
    const char *prefix;
    int (*parse)(const char *text, struct sockaddr_storage *out, socklen_t *len);
} kernel_families[] = {
    {AF_NETLINK, "netlink:", parse_netlink},
    {AF_PACKET, "packet:", parse_packet},
    {AF_VSOCK, "vsock:", parse_vsock},
};

/* The entry for this family (or, for family 0, for the host's prefix). */
static const struct kernel_family *kernel_family_of(int family, const char *host)
{
    for (size_t i = 0; i < sizeof kernel_families / sizeof kernel_families[0]; i++) {
        const struct kernel_family *k = &kernel_families[i];
        if (family == k->family ||
            (family == 0 && strncmp(host, k->prefix, strlen(k->prefix)) == 0))
            return k;
    }
    return NULL;
}

static int parse_kernel_family(const struct kernel_family *k, const char *host,
                               struct sockaddr_storage *out, socklen_t *len)
{
    size_t n = strlen(k->prefix);
    if (strncmp(host, k->prefix, n) != 0)
        return -EINVAL;
    return k->parse(host + n, out, len);
}

int ctrio_sockaddr_parse(int family, const char *host, int port, struct sockaddr_storage *out,
                         socklen_t *len)
{
    if (!host || !out || !len)
        return -EINVAL;
    if (family == AF_UNIX || (family == 0 && (host[0] == '/' || host[0] == '@')))
        return parse_unix(host, out, len);
    const struct kernel_family *k = kernel_family_of(family, host);
    if (k) /* the whole address is in the text: port unused, as for AF_UNIX */
        return parse_kernel_family(k, host, out, len);
    if (port < 0 || port > 65535)
        return -EINVAL;
    switch (family) {
    case AF_INET:
        return parse_inet(host, port, out, len);
    case AF_INET6:
        return parse_inet6(host, port, out, len);
    case 0:
        if (parse_inet(host, port, out, len) == 0)
            return 0;
        return parse_inet6(host, port, out, len);
    default:
        return -EAFNOSUPPORT;
    }
}

static int finish(int n, size_t size)
{
    if (n < 0)
        return -EINVAL;
    return (size_t)n >= size ? -ENOSPC : n;
}

static int format_unix(const struct sockaddr_un *un, socklen_t len, char *buf, size_t size)
{
    size_t base = offsetof(struct sockaddr_un, sun_path);
    size_t n = len - base; /* bytes of sun_path present */
    if (n > sizeof un->sun_path)
        n = sizeof un->sun_path;
    if (n == 0) /* an unnamed socket */
        return finish(snprintf(buf, size, "%s", ""), size);
    if (un->sun_path[0] == '\0') { /* abstract: every byte counts, NULs included */
        /* '@' for the leading NUL and each NUL inside, as ss(8) and /proc/net/unix */
        if (n >= size)
            return -ENOSPC;
        buf[0] = '@';
        for (size_t i = 1; i < n; i++)
            buf[i] = un->sun_path[i] ? un->sun_path[i] : '@';
        buf[n] = '\0';
        return (int)n;
    }
    size_t l = strnlen(un->sun_path, n);
    return finish(snprintf(buf, size, "%.*s", (int)l, un->sun_path), size);
}

static int format_netlink(const struct sockaddr_nl *nl, socklen_t len, char *buf, size_t size)
{
    if (len < (socklen_t)sizeof *nl)
        return -EINVAL;
    return finish(snprintf(buf, size, "netlink:%u:0x%x", nl->nl_pid, nl->nl_groups), size);
}

static int format_vsock(const struct sockaddr_vm *vm, socklen_t len, char *buf, size_t size)
{
    if (len < (socklen_t)sizeof *vm)
        return -EINVAL;
    char cid[16] = "any", port[16] = "any";
    if (vm->svm_cid != VMADDR_CID_ANY)
        snprintf(cid, sizeof cid, "%u", vm->svm_cid);
    if (vm->svm_port != VMADDR_PORT_ANY)
        snprintf(port, sizeof port, "%u", vm->svm_port);
    return finish(snprintf(buf, size, "vsock:%s:%s", cid, port), size);
}

/* The kernel returns a sockaddr_ll cut after its hardware address
 * (offsetof(sll_addr) + sll_halen bytes: 18 for lo), so that much is all
 * that is required. */
static int format_packet(const struct sockaddr_ll *ll, socklen_t len, char *buf, size_t size)
{
    size_t base = offsetof(struct sockaddr_ll, sll_addr);
    if (len < (socklen_t)base || ll->sll_halen > sizeof ll->sll_addr ||
        ll->sll_halen > len - base || ll->sll_ifindex < 0) /* nothing parse would read */
        return -EINVAL;
    char ifname[IF_NAMESIZE];
    char text[IF_NAMESIZE + 64];
    int n;
    if (ll->sll_ifindex > 0 && if_indextoname((unsigned)ll->sll_ifindex, ifname))
        n = snprintf(text, sizeof text, "packet:%s:0x%04x", ifname, ntohs(ll->sll_protocol));
    else
        n = snprintf(text, sizeof text, "packet:%d:0x%04x", ll->sll_ifindex,
                     ntohs(ll->sll_protocol));
    for (size_t i = 0; i < ll->sll_halen; i++)
        n += snprintf(text + n, sizeof text - (size_t)n, ":%02x", ll->sll_addr[i]);
    return finish(snprintf(buf, size, "%s", text), size);
}

int ctrio_sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
    if (!sa || !buf || size == 0)
        return -EINVAL;
    if (len < (socklen_t)sizeof(sa_family_t))
        return -EINVAL;
    char ip[INET6_ADDRSTRLEN];
    switch (sa->sa_family) {
    case AF_INET: {
        if (len < (socklen_t)sizeof(struct sockaddr_in))
            return -EINVAL;
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        return finish(snprintf(buf, size, "%s:%u", ip, ntohs(in->sin_port)), size);
    }
    case AF_INET6: {
        if (len < (socklen_t)sizeof(struct sockaddr_in6))
            return -EINVAL;
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        if (in6->sin6_scope_id) {
            char ifname[IF_NAMESIZE];
            if (if_indextoname(in6->sin6_scope_id, ifname))
                return finish(snprintf(buf, size, "[%s%%%s]:%u", ip, ifname,
                                       ntohs(in6->sin6_port)),
                              size);
            return finish(snprintf(buf, size, "[%s%%%u]:%u", ip, in6->sin6_scope_id,
                                   ntohs(in6->sin6_port)),
                          size);
        }
        return finish(snprintf(buf, size, "[%s]:%u", ip, ntohs(in6->sin6_port)), size);
    }
    case AF_UNIX:
        if (len < (socklen_t)offsetof(struct sockaddr_un, sun_path))
            return -EINVAL;
        return format_unix((const struct sockaddr_un *)sa, len, buf, size);
    case AF_NETLINK:
        return format_netlink((const struct sockaddr_nl *)sa, len, buf, size);
    case AF_PACKET:
        return format_packet((const struct sockaddr_ll *)sa, len, buf, size);
    case AF_VSOCK:
        return format_vsock((const struct sockaddr_vm *)sa, len, buf, size);
    default:
        return -EAFNOSUPPORT;
    }
}
