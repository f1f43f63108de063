/*
 * fuzz_sockaddr.c — a libFuzzer harness for ctrio_sockaddr_format and
 * ctrio_sockaddr_parse (the two calls of SPEC §6 that read untrusted bytes:
 * an address from the kernel or the network, a text from a user).
 *
 * One input drives both:
 *  - format: the whole input is a sockaddr of that length, copied into a heap
 *    block of exactly that size (malloc's alignment, and AddressSanitizer sees
 *    any read past the end); it is formatted into a buffer whose size the
 *    first byte picks (followed by a canary), and once more into a roomy one.
 *  - parse: the first byte picks the family (0, AF_INET, AF_INET6, AF_UNIX,
 *    AF_PACKET, AF_NETLINK, AF_VSOCK) and the port; the rest, up to its
 *    first NUL, is the host text (a NUL-terminated heap copy).
 *
 * Invariants checked (a violation aborts, which libFuzzer reports):
 *  - format returns -EINVAL, -ENOSPC, -EAFNOSUPPORT or n with 0 <= n <=
 *    size - 1; on success the text is NUL-terminated, strlen(text) == n; no
 *    byte at or past `size` is written; with a 256-byte buffer never -ENOSPC.
 *  - parse returns 0 or one of -EINVAL, -ENODEV, -EAFNOSUPPORT,
 *    -ENAMETOOLONG, and changes nothing past *len on success; a successful
 *    parse formats back without error, and that text parses again (brackets
 *    and port taken off) to the very same address.
 *
 * Built two ways (fuzz/CMakeLists.txt): with clang as a libFuzzer target
 * (fuzz_sockaddr), and with any compiler together with replay_main.c as a
 * plain program (fuzz_sockaddr_replay) that ctest runs.
 */
#include <ctrio.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/netlink.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netpacket/packet.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CANARY 0xA5
#define MAX_ADDR 1024 /* longer inputs are cut: nothing reads that far */

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_sockaddr: invariant violated: %s\n", what);
        abort();
    }
}

/* format `sa` (len bytes) into a buffer of `size` bytes followed by a
 * canary; check the invariants; returns format's result. */
static int format_checked(const void *sa, socklen_t len, size_t size, char *text, size_t tsize)
{
    unsigned char *out = malloc(size + 16);
    check(out != NULL, "malloc");
    memset(out, CANARY, size + 16);
    int rc = ctrio_sockaddr_format(sa, len, (char *)out, size);
    for (size_t i = size; i < size + 16; i++)
        check(out[i] == CANARY, "format wrote past size");
    if (rc >= 0) {
        check((size_t)rc <= size - 1, "format returned more than size - 1");
        check(out[rc] == '\0', "format's text is not NUL-terminated at its length");
        check(strlen((char *)out) == (size_t)rc, "format's length is not strlen");
        if (text && tsize > (size_t)rc)
            memcpy(text, out, (size_t)rc + 1);
    } else {
        check(rc == -EINVAL || rc == -ENOSPC || rc == -EAFNOSUPPORT,
              "format returned an unexpected error");
    }
    free(out);
    return rc;
}

static void fuzz_format(const uint8_t *data, size_t size)
{
    size_t len = size > MAX_ADDR ? MAX_ADDR : size;
    void *sa = malloc(len ? len : 1);
    check(sa != NULL, "malloc");
    if (len)
        memcpy(sa, data, len);
    size_t small = size ? 1 + (size_t)data[0] % 130 : 1;
    int a = format_checked(sa, (socklen_t)len, small, NULL, 0);
    char text[256];
    int b = format_checked(sa, (socklen_t)len, sizeof text, text, sizeof text);
    check(b != -ENOSPC, "format: -ENOSPC with 256 bytes");
    /* the outcome does not depend on the buffer, but for the room */
    if (b < 0)
        check(a == b, "format: different errors for different sizes");
    else
        check(a == b || (a == -ENOSPC && (size_t)b >= small), "format: size changed the result");
    free(sa);
}

/* Take the host back out of format's text: "[h]:p" -> h, "h:p" -> h. */
static int host_of(int family, const char *text, char *host, size_t hsize)
{
    const char *start = text, *end;
    if (family == AF_INET6) {
        if (text[0] != '[')
            return -1;
        start = text + 1;
        end = strrchr(text, ']');
    } else if (family == AF_INET) {
        end = strrchr(text, ':');
    } else {
        end = text + strlen(text);
    }
    if (!end || end < start || (size_t)(end - start) >= hsize)
        return -1;
    memcpy(host, start, (size_t)(end - start));
    host[end - start] = '\0';
    return 0;
}

static void fuzz_parse(const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    static const int families[] = {0, AF_INET, AF_INET6, AF_UNIX, AF_PACKET, AF_NETLINK, AF_VSOCK};
    static const int ports[] = {0, 80, 65535, -1, 65536, 443, 1, 8080};
    int family = families[data[0] % 7];
    int port = ports[(data[0] / 7) % 8];
    size_t n = size - 1 > MAX_ADDR ? MAX_ADDR : size - 1;
    char *host = malloc(n + 1);
    check(host != NULL, "malloc");
    memcpy(host, data + 1, n);
    host[n] = '\0';

    struct sockaddr_storage ss;
    memset(&ss, CANARY, sizeof ss);
    socklen_t len = 0;
    int rc = ctrio_sockaddr_parse(family, host, port, &ss, &len);
    if (rc != 0) {
        check(rc == -EINVAL || rc == -ENODEV || rc == -EAFNOSUPPORT || rc == -ENAMETOOLONG,
              "parse returned an unexpected error");
        free(host);
        return;
    }
    check(len >= sizeof(sa_family_t) && len <= sizeof ss, "parse: length out of range");
    for (size_t i = len; i < sizeof ss; i++)
        if (ss.ss_family != AF_UNIX) /* AF_UNIX clears its whole sockaddr_un */
            check(((unsigned char *)&ss)[i] == CANARY, "parse wrote past *len");
    int fam = ss.ss_family;
    bool ip = fam == AF_INET || fam == AF_INET6;
    check(ip || fam == AF_UNIX || fam == AF_PACKET || fam == AF_NETLINK || fam == AF_VSOCK,
          "parse: odd family");
    check(family == 0 || family == fam, "parse: family not the one asked");
    if (fam == AF_INET)
        check(len == sizeof(struct sockaddr_in), "parse: AF_INET length");
    if (fam == AF_INET6)
        check(len == sizeof(struct sockaddr_in6), "parse: AF_INET6 length");
    if (fam == AF_NETLINK)
        check(len == sizeof(struct sockaddr_nl), "parse: AF_NETLINK length");
    if (fam == AF_PACKET)
        check(len == sizeof(struct sockaddr_ll), "parse: AF_PACKET length");
    if (fam == AF_VSOCK)
        check(len == sizeof(struct sockaddr_vm), "parse: AF_VSOCK length");
    if (ip) /* the others carry their whole address in the text */
        check(port >= 0 && port <= 65535, "parse accepted a bad port");

    char text[256];
    int f = format_checked(&ss, len, sizeof text, text, sizeof text);
    check(f >= 0, "a parsed address does not format");

    /* and the text parses back to the same address */
    char again_host[256];
    check(host_of(fam, text, again_host, sizeof again_host) == 0, "format's text has no host");
    struct sockaddr_storage ss2;
    memset(&ss2, 0, sizeof ss2);
    socklen_t len2 = 0;
    int rc2 = ctrio_sockaddr_parse(fam, again_host, ip ? port : 0, &ss2, &len2);
    check(rc2 == 0, "format's text does not parse back");
    check(len2 == len, "parse(format(a)) has another length");
    check(memcmp(&ss, &ss2, len) == 0, "parse(format(a)) is another address");
    free(host);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_format(data, size);
    fuzz_parse(data, size);
    return 0;
}
