/*
 * lg_common.h — what the three load generators share (loadgen.c for the
 * echo benchmark, tls_loadgen.c, udp_loadgen.c): the options every one takes
 * (-H HOST -p PORT -d SECONDS -w WARMUP -l LABEL -n COUNT -g GOFILE), the
 * clocks (wall and own CPU, for lg_busy), the pattern every echoed byte is
 * checked against, the latency samples and their percentiles, the GOFILE
 * wait of a counted run, and the "NAME-N" workload names.
 *
 * Each load generator is one translation unit, so this header holds the
 * definitions themselves (static: nothing is exported); the file that
 * includes it defines MAX_SAMPLES first. The functions are static inline so
 * that a load generator need not use all of them.
 */
#ifndef CTRIO_BENCH_LG_COMMON_H
#define CTRIO_BENCH_LG_COMMON_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#ifndef MAX_SAMPLES
#error "define MAX_SAMPLES (the most latency samples kept per workload) before lg_common.h"
#endif

/* The pattern repeats every PAT_PERIOD bytes, a prime: no block, message or
 * datagram size divides it, so a byte echoed at the wrong offset differs. */
#define PAT_PERIOD 65521u

/* ---- the common options --------------------------------------------------- */

#define LG_OPTSTRING "H:p:d:w:l:n:g:"

static const char *host = "127.0.0.1";
static int port;
static double duration = 2.0, warmup = 0.25;
static const char *label = "server";
static long count;         /* -n */
static const char *gofile; /* -g */
static struct sockaddr_in addr;

/* One of the common options (getopt's opt and optarg): false if opt is not
 * one of them. */
static inline bool lg_option(int opt, const char *arg)
{
    switch (opt) {
    case 'H':
        host = arg;
        return true;
    case 'p':
        port = atoi(arg);
        return true;
    case 'd':
        duration = atof(arg);
        return true;
    case 'w':
        warmup = atof(arg);
        return true;
    case 'l':
        label = arg;
        return true;
    case 'n':
        count = atol(arg);
        return true;
    case 'g':
        gofile = arg;
        return true;
    default:
        return false;
    }
}

/* The common options in range, and at least one workload left (optind <
 * argc); every run is bounded: 600 s measured, 60 s of warm-up. */
static inline bool lg_options_ok(int optind_, int argc)
{
    return port > 0 && port <= 65535 && optind_ < argc && duration > 0 && duration <= 600 &&
           warmup >= 0 && warmup <= 60 && count >= 0;
}

/* addr from HOST and PORT; false (and said, as prog) if HOST is not a
 * numeric IPv4 address. */
static inline bool lg_addr(const char *prog)
{
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) == 1)
        return true;
    fprintf(stderr, "%s: HOST must be a numeric IPv4 address\n", prog);
    return false;
}

/* "base" or "base-N" with 1 <= N <= max: N, dflt when absent; -1 if w is
 * not one of these. */
static inline int parse_count(const char *w, const char *base, int dflt, int max)
{
    size_t bl = strlen(base);
    if (strncmp(w, base, bl) != 0)
        return -1;
    if (w[bl] == '\0')
        return dflt;
    if (w[bl] != '-')
        return -1;
    char *end;
    long c = strtol(w + bl + 1, &end, 10);
    if (*end || c < 1 || c > max)
        return -1;
    return (int)c;
}

/* ---- clocks ----------------------------------------------------------------- */

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* this process's CPU time so far, user + system, s (for lg_busy: whether
 * the client, not the server, bounds the rate) */
static inline double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* ---- the pattern -------------------------------------------------------------- */

/* pat[0..len) with a period of PAT_PERIOD (xorshift32), len >= PAT_PERIOD:
 * the bytes past the period let any offset be compared as one run. */
static inline void pat_fill(unsigned char *pat, size_t len)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < PAT_PERIOD; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pat[i] = (unsigned char)(x >> 24);
    }
    for (size_t i = PAT_PERIOD; i < len; i++)
        pat[i] = pat[i - PAT_PERIOD];
}

/* ---- latency samples -------------------------------------------------------- */

/* At most MAX_SAMPLES kept: past it (or out of memory) the rest go uncounted
 * in the percentiles, never in the rate. */
typedef struct {
    double *v;
    size_t n, cap;
} samples;

static inline void sample_add(samples *s, double x)
{
    if (s->n == s->cap) {
        if (s->cap >= MAX_SAMPLES)
            return;
        size_t cap = s->cap ? s->cap * 2 : 65536;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
}

static inline int lg_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* sorts the samples, for percentile */
static inline void samples_sort(samples *s)
{
    if (s->n)
        qsort(s->v, s->n, sizeof *s->v, lg_cmp_double);
}

/* the p-quantile (0..1) of sorted samples, 0 when there are none */
static inline double percentile(const samples *s, double p)
{
    return s->n ? s->v[(size_t)(p * (double)(s->n - 1) + 0.5)] : 0;
}

/* ---- a counted run's GOFILE ------------------------------------------------ */

/* Waits (bounded: 60 s) until path exists (want true) or is gone (false). */
static inline bool wait_file(const char *path, bool want)
{
    struct stat st;
    for (int i = 0; i < 12000; i++) {
        if ((stat(path, &st) == 0) == want)
            return true;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

#endif
