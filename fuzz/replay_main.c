/*
 * replay_main.c — a plain main() for a libFuzzer harness, so that it builds
 * with any compiler and runs under ctest (and the ASan build) without
 * libFuzzer.
 *
 *   fuzz_sockaddr_replay FILE|DIR...   run the harness on each file (a
 *                                      directory: on each file in it, as a
 *                                      libFuzzer corpus)
 *   fuzz_sockaddr_replay               run a built-in, deterministic set of
 *                                      inputs: well-formed addresses and
 *                                      texts, then mutations of them, then
 *                                      random bytes
 *   fuzz_sockaddr_replay --write-corpus DIR
 *                                      write that set into DIR (one file
 *                                      per input) as a seed corpus for
 *                                      the libFuzzer target, and run it
 *
 * Exits 0 when every input ran (a violated invariant aborts).
 */
#include <ctrio.h>

#include <dirent.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <linux/netlink.h>
#include <linux/vm_sockets.h>
#include <netpacket/packet.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return -1;
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int run_path(const char *path, int *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        ++*count;
        return run_file(path);
    }
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (run_path(sub, count) < 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

/* ---- the built-in set ------------------------------------------------------ */

static const char *corpus_dir; /* --write-corpus */
static int written;

/* Run one built-in input (and write it to the corpus directory, if any). */
static void one(const uint8_t *data, size_t size)
{
    if (corpus_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/seed-%04d", corpus_dir, written++);
        FILE *f = fopen(path, "wb");
        if (f) {
            if (size)
                fwrite(data, 1, size, f);
            fclose(f);
        }
    }
    LLVMFuzzerTestOneInput(data, size);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Parse inputs: first byte picks family (b % 7: 0, INET, INET6, UNIX,
 * PACKET, NETLINK, VSOCK) and port ((b / 7) % 8), then the text. */
static const char *texts[] = {
    "127.0.0.1", "0.0.0.0", "255.255.255.255", "::1", "::", "fe80::1%lo", "fe80::1%1",
    "fe80::1%4000000000", "::ffff:1.2.3.4", "2001:db8::abcd:1", "/tmp/x.sock", "@abstract",
    "@", "rel/path", "localhost", "1.2.3", "[::1]", "fe80::1%", "fe80::1%no-such-if",
    "1:2:3:4:5:6:7:8", "::ffff:255.255.255.255", "fe80::1% 1", "fe80::1%+1",
    "netlink:0:0x11", "netlink:4294967295:0xffffffff", "netlink:1234", "netlink:0x1f:17",
    "packet:lo:0x0800", "packet:1:3:00:11:22:33:44:55", "packet:no-such-if:0x0800",
    "packet:0:0x86dd:01:02:03:04:05:06:07:08", "packet:lo:0x0800:aa:", "vsock:2:1234",
    "vsock:any:any", "vsock:4294967295:0x10", "vsock:1:",
};

static size_t make_sockaddr(uint8_t *out, size_t cap, uint32_t pick)
{
    memset(out, 0, cap);
    switch (pick % 7) {
    case 4: {
        struct sockaddr_nl nl = {.nl_family = AF_NETLINK, .nl_pid = next_rand()};
        nl.nl_groups = next_rand();
        memcpy(out, &nl, sizeof nl);
        return sizeof nl;
    }
    case 5: {
        struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = (uint16_t)next_rand()};
        ll.sll_ifindex = (int)(next_rand() % 4);
        ll.sll_halen = (unsigned char)(next_rand() % 10); /* 9: more than sll_addr holds */
        for (size_t i = 0; i < sizeof ll.sll_addr; i++)
            ll.sll_addr[i] = (unsigned char)next_rand();
        memcpy(out, &ll, sizeof ll);
        return offsetof(struct sockaddr_ll, sll_addr) + (ll.sll_halen & 7);
    }
    case 6: {
        struct sockaddr_vm vm = {.svm_family = AF_VSOCK, .svm_port = next_rand()};
        vm.svm_cid = next_rand() % 3 ? next_rand() % 4 : VMADDR_CID_ANY;
        memcpy(out, &vm, sizeof vm);
        return sizeof vm;
    }
    case 0: {
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = (uint16_t)next_rand()};
        in.sin_addr.s_addr = next_rand();
        memcpy(out, &in, sizeof in);
        return sizeof in;
    }
    case 1: {
        struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = (uint16_t)next_rand()};
        for (int i = 0; i < 16; i++)
            in6.sin6_addr.s6_addr[i] = (uint8_t)next_rand();
        in6.sin6_scope_id = next_rand() % 3 ? 0 : next_rand() % 4;
        memcpy(out, &in6, sizeof in6);
        return sizeof in6;
    }
    default: {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        size_t n = next_rand() % sizeof un.sun_path;
        for (size_t i = 0; i < n; i++)
            un.sun_path[i] = (char)(' ' + next_rand() % 95);
        if (pick % 7 == 3)
            un.sun_path[0] = '\0'; /* abstract */
        memcpy(out, &un, sizeof un);
        return offsetof(struct sockaddr_un, sun_path) + n + (next_rand() % 2);
    }
    }
}

static int run_builtin(void)
{
    uint8_t buf[600];
    int count = 0;
    /* each text, with each family/port byte */
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++)
        for (int b = 0; b < 40; b += 3) {
            size_t n = strlen(texts[t]);
            buf[0] = (uint8_t)b;
            memcpy(buf + 1, texts[t], n);
            one(buf, n + 1);
            count++;
        }
    /* well-formed sockaddrs, whole and cut short */
    for (int i = 0; i < 200; i++) {
        size_t n = make_sockaddr(buf, sizeof buf, next_rand());
        one(buf, n);
        one(buf, next_rand() % (n + 1));
        count += 2;
    }
    /* mutated texts: a few bytes flipped, inserted or cut */
    for (int i = 0; i < 300; i++) {
        const char *t = texts[next_rand() % (sizeof texts / sizeof texts[0])];
        size_t n = strlen(t);
        buf[0] = (uint8_t)next_rand();
        memcpy(buf + 1, t, n);
        int edits = 1 + (int)(next_rand() % 3);
        for (int e = 0; e < edits && n > 0; e++)
            buf[1 + next_rand() % n] = (uint8_t)"0123456789abcdef:.%[]@/ \xff"[next_rand() % 26];
        size_t len = 1 + (next_rand() % 4 ? n : next_rand() % (n + 1));
        one(buf, len);
        count++;
    }
    /* random bytes, short and long */
    for (int i = 0; i < 300; i++) {
        size_t n = next_rand() % (i < 150 ? 40 : sizeof buf);
        for (size_t k = 0; k < n; k++)
            buf[k] = (uint8_t)next_rand();
        if (n >= 2 && i % 3 == 0) { /* a plausible family */
            sa_family_t fam = (sa_family_t)(i % 2 ? AF_INET6 : AF_UNIX);
            memcpy(buf, &fam, sizeof fam);
        }
        one(buf, n);
        count++;
    }
    one(NULL, 0);
    count++;
    return count;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        corpus_dir = argv[2];
    if (argc < 2 || corpus_dir) {
        int n = run_builtin();
        printf("fuzz_sockaddr_replay: %d built-in inputs, no invariant violated\n", n);
        return 0;
    }
    int count = 0, rc = 0;
    for (int i = 1; i < argc; i++)
        if (run_path(argv[i], &count) < 0)
            rc = 1;
    printf("fuzz_sockaddr_replay: %d files run\n", count);
    return rc;
}
