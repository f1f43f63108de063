/*
 * sockaddr.c — socket addresses to and from text, numeric only.
 *
 * The seed's socket methods take addresses that are already resolved; these
 * two calls are how a program writes one by hand or prints one, without ever
 * asking DNS: a host name is an error here, not a lookup. Every length is
 * checked against the family's structure before a byte is read, so a short
 * or odd address is refused (-EINVAL), never read past its end.
 */
#include "net.h"

#include <arpa/inet.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
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

int ctrio_sockaddr_parse(int family, const char *host, int port, struct sockaddr_storage *out,
                         socklen_t *len)
{
    if (!host || !out || !len)
        return -EINVAL;
    if (family == AF_UNIX || (family == 0 && (host[0] == '/' || host[0] == '@')))
        return parse_unix(host, out, len);
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
    default:
        return -EAFNOSUPPORT;
    }
}
