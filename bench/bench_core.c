/*
 * bench_core.c — microbenchmarks of the runtime core, each printed beside a
 * peer measured in the same run (see peers.c) and the goal from issue #2.
 *
 *   bench_core            all of them, one table
 *   QUICK=1 bench_core    fewer iterations (used by the smoke test)
 *   ONLY=switch|spawn|cancel|million bench_core   one of them (switch: with and
 *                         without a task waiting for I/O)
 *   PER=n ONLY=spawn      n tasks per nursery in the batch spawn (1000)
 *
 * Figures are wall-clock on whatever machine runs them; ratios to the peers
 * are what carries from one machine to another.
 */
#include "peers.h"

#include <ctrio.h>
#include <ctrio_testing.h>
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

static long scale = 1;

static void row(const char *what, double value, const char *unit, const char *peer,
                double peer_value, const char *goal)
{
    if (peer && peer_value > 0)
        printf("%-46s %10.1f %-6s | %-22s %9.1f | ratio %6.2fx | %s\n", what, value, unit, peer,
               peer_value, value / peer_value, goal);
    else
        printf("%-46s %10.1f %-6s | %-22s %9s | %12s | %s\n", what, value, unit, "-", "-", "-",
               goal);
    fflush(stdout);
}

/* ---- switch ---- */
static long switch_iters;
static int yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < switch_iters; i++)
        ctrio_cancel_shielded_checkpoint();
    return 0;
}
static double t_switch;
static int bench_switch(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, yielder, NULL);
    ctrio_start_soon(&n, yielder, NULL);
    double t0 = bench_now();
    ctrio_nursery_close(&n, 0);
    t_switch = (bench_now() - t0) * 1e9 / (double)(2 * switch_iters);
    return 0;
}

/* The same while a third task waits for a descriptor that stays quiet: a
 * poll could then wake someone, so every turn reads the clock (the 1 ms poll
 * bound) and a poll is made at most once per millisecond. */
static double t_switch_io;
static int quiet_waiter(void *arg)
{
    int rc = ctrio_wait_readable((int)(intptr_t)arg);
    return rc == -ECANCELED ? 0 : -EIO;
}
static int bench_switch_io(void *arg)
{
    (void)arg;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -errno;
    ctrio_nursery outer, n;
    ctrio_nursery_open(&outer);
    ctrio_start_soon(&outer, quiet_waiter, (void *)(intptr_t)efd);
    ctrio_checkpoint(); /* the waiter parks */
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, yielder, NULL);
    ctrio_start_soon(&n, yielder, NULL);
    double t0 = bench_now();
    ctrio_nursery_close(&n, 0);
    t_switch_io = (bench_now() - t0) * 1e9 / (double)(2 * switch_iters);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&outer));
    int rc = ctrio_nursery_close(&outer, 0);
    ctrio_notify_closing(efd);
    close(efd);
    return rc;
}

/* ---- spawn ---- */
static int empty(void *arg)
{
    (void)arg;
    return 0;
}
static double t_spawn_batch, t_spawn_one;
static int bench_spawn(void *arg)
{
    (void)arg;
    long per = getenv("PER") ? atol(getenv("PER")) : 1000;
    if (per < 1)
        per = 1;
    long rounds = 200 * scale * 1000 / per;
    if (rounds < 1)
        rounds = 1;
    for (int warm = 0; warm < 2; warm++) {
        double t0 = bench_now();
        for (long r = 0; r < rounds; r++) {
            ctrio_nursery n;
            ctrio_nursery_open(&n);
            for (long i = 0; i < per; i++)
                ctrio_start_soon(&n, empty, NULL);
            ctrio_nursery_close(&n, 0);
        }
        t_spawn_batch = (bench_now() - t0) * 1e9 / (double)(rounds * per);
    }
    long iters = 200000 * scale;
    double t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        ctrio_start_soon(&n, empty, NULL);
        ctrio_nursery_close(&n, 0);
    }
    t_spawn_one = (bench_now() - t0) * 1e9 / (double)iters;
    return 0;
}

/* ---- cancel scope with a deadline ---- */
static double t_scope_at, t_scope_after;
static int bench_scope(void *arg)
{
    (void)arg;
    long iters = 10000000 * scale;
    double deadline = ctrio_current_time() + 1000;
    double t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        ctrio_cancel_scope cs;
        ctrio_move_on_at(&cs, deadline);
        ctrio_cancel_scope_close(&cs, 0);
    }
    t_scope_at = (bench_now() - t0) * 1e9 / (double)iters;
    t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        ctrio_cancel_scope cs;
        ctrio_move_on_after(&cs, 1000);
        ctrio_cancel_scope_close(&cs, 0);
    }
    t_scope_after = (bench_now() - t0) * 1e9 / (double)iters;
    return 0;
}

/* ---- cancel 10,000 tasks blocked in wait_readable ---- */
#define NWAIT 10000
static int efds[NWAIT];
static int waiter(void *arg)
{
    int fd = (int)(intptr_t)arg;
    int rc = ctrio_wait_readable(fd);
    return rc == -ECANCELED ? 0 : -EIO;
}
static double t_cancel_10k;
static int bench_cancel(void *arg)
{
    (void)arg;
    int made = 0;
    for (; made < NWAIT; made++) {
        efds[made] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (efds[made] < 0)
            break;
    }
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < made; i++)
        ctrio_start_soon(&n, waiter, (void *)(intptr_t)efds[i]);
    ctrio_wait_all_tasks_blocked(0);
    double t0 = bench_now();
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    int rc = ctrio_nursery_close(&n, 0);
    t_cancel_10k = (bench_now() - t0) * 1e3;
    for (int i = 0; i < made; i++) {
        ctrio_notify_closing(efds[i]);
        close(efds[i]);
    }
    if (rc != 0 || made != NWAIT)
        fprintf(stderr, "cancel bench: rc=%d, %d eventfds\n", rc, made);
    return 0;
}

/* ---- 1,000,000 sleeping tasks ---- */
/* A default stack (ctrio_config.stack_size 0 = 256 KiB) plus its 16 KiB
 * guard, as src/core/stack.c lays them out. */
#define DEFAULT_STACK_SLOT ((size_t)(256 + 16) * 1024)
static long nsleepers;
static int sleeper(void *arg)
{
    (void)arg;
    return ctrio_sleep_forever() == -ECANCELED ? 0 : -EIO;
}
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}
static double t_million_start, kib_per_task, t_million_cancel, t_million_end;
static int bench_million(void *arg)
{
    (void)arg;
    long before = rss_kib();
    double t0 = bench_now();
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    long started = 0;
    for (; started < nsleepers; started++)
        if (ctrio_start_soon(&n, sleeper, NULL) < 0)
            break;
    ctrio_wait_all_tasks_blocked(0);
    t_million_start = bench_now() - t0;
    kib_per_task = (double)(rss_kib() - before) / (double)started;
    if (started != nsleepers)
        fprintf(stderr, "only %ld tasks started: %s\n", started, strerror(errno));
    t0 = bench_now();
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    ctrio_nursery_close(&n, 0);
    t_million_cancel = bench_now() - t0;
    t_million_end = bench_now();
    return 0;
}

/* ctrio_run(bench_million) and how long the run took to end after the main
 * task returned: releasing every cached stack. */
static double run_million(void)
{
    ctrio_run(bench_million, NULL);
    return bench_now() - t_million_end;
}

/* ---- the deadline heap at 1,000 ... 1,000,000 pending deadlines ---- */
static double heap_ns(size_t pending)
{
    ctrio__heap h = {0};
    ctrio_cancel_scope *s = calloc(pending + 1, sizeof *s);
    srand(1);
    for (size_t i = 0; i < pending; i++) {
        s[i].deadline = 1000.0 + (double)rand() / RAND_MAX * 1000.0;
        ctrio__heap_add(&h, &s[i]);
    }
    long iters = 2000000 * scale;
    double t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        s[pending].deadline = 1000.0 + (double)(i % 1000);
        ctrio__heap_add(&h, &s[pending]);
        ctrio__heap_remove(&h, &s[pending]);
    }
    double ns = (bench_now() - t0) * 1e9 / (double)iters;
    ctrio__heap_fini(&h);
    free(s);
    return ns;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const char *q = getenv("QUICK");
    bool quick = q && *q && *q != '0';
    long base = quick ? 100000 : 10000000;
    if (quick)
        scale = 0; /* minimum counts below */
    switch_iters = base;
    nsleepers = quick ? 10000 : 1000000;
    if (scale == 0)
        scale = 1, base = 100000;

    printf("ctrio core benchmarks (%s)\n", quick ? "quick" : "full");
    printf("%-46s %17s | %-22s %9s | %12s | %s\n", "measure", "ctrio", "peer (same run)", "peer",
           "ctrio/peer", "goal");

    const char *only = getenv("ONLY");
    if (only && strcmp(only, "spawn") == 0) {
        int rc = ctrio_run(bench_spawn, NULL);
        row("spawn+run+reap empty task (1000 per nursery)", t_spawn_batch, "ns", NULL, 0, "-");
        row("nursery open + 1 task + close", t_spawn_one, "ns", NULL, 0, "-");
        return rc;
    }
    if (only && strcmp(only, "switch") == 0) {
        int rc = ctrio_run(bench_switch, NULL);
        row("switch: 2 tasks yielding via the scheduler", t_switch, "ns", NULL, 0, "-");
        rc = rc ? rc : ctrio_run(bench_switch_io, NULL);
        row("switch: (same), a third task waiting for I/O", t_switch_io, "ns", NULL, 0, "-");
        return rc;
    }
    if (only && strcmp(only, "cancel") == 0) {
        int rc = ctrio_run(bench_cancel, NULL);
        row("cancel nursery of 10,000 tasks in wait_readable", t_cancel_10k, "ms", NULL, 0, "-");
        return rc;
    }
    if (only && strcmp(only, "million") == 0) {
        double t_exit = run_million();
        double floor_ms = peer_page_touch_ms(nsleepers, DEFAULT_STACK_SLOT);
        printf("%ld tasks: start %.0f ms (touching 1 page per stack: %.0f ms), %.2f KiB/task, "
               "cancel %.0f ms, run exit %.0f ms\n",
               nsleepers, t_million_start * 1e3, floor_ms, kib_per_task, t_million_cancel * 1e3,
               t_exit * 1e3);
        return 0;
    }
    ctrio_run(bench_switch, NULL);
    double fctx = peer_fcontext_ns_per_switch(base * 2);
    double swc = peer_swapcontext_ns_per_switch(base / 4);
    row("switch: 2 tasks yielding via the scheduler", t_switch, "ns", "boost jump_fcontext", fctx,
        "<= 20 ns, <= 5x fcontext");
    row("switch: (same)", t_switch, "ns", "swapcontext", swc, "faster than swapcontext");
    ctrio_run(bench_switch_io, NULL);
    row("switch: (same), a third task waiting for I/O", t_switch_io, "ns", "switch, no I/O wait",
        t_switch, "-");

    ctrio_run(bench_spawn, NULL);
    row("spawn+run+reap empty task (1000 per nursery)", t_spawn_batch, "ns", NULL, 0,
        "<= 100 ns (stretch 50)");
    row("nursery open + 1 task + close", t_spawn_one, "ns", NULL, 0, "-");

    ctrio_run(bench_scope, NULL);
    double uv = peer_uv_timer_ns(base * 10);
    row("scope: move_on_at + close (deadline unfired)", t_scope_at, "ns", "uv_timer_start+stop",
        uv, "<= 20 ns, <= 3x libuv");
    row("scope: move_on_after + close", t_scope_after, "ns", "uv_timer_start+stop", uv,
        "<= 20 ns, <= 3x libuv");

    for (size_t p = 1000; p <= 1000000; p *= 10) {
        char what[64];
        snprintf(what, sizeof what, "deadline heap add+remove, %zu pending", p);
        row(what, heap_ns(p), "ns", NULL, 0, "O(log n)");
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < NWAIT + 100) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ctrio_run(bench_cancel, NULL);
    row("cancel nursery of 10,000 tasks in wait_readable", t_cancel_10k, "ms", NULL, 0,
        "<= 10 ms");

    /* The page-fault floor, measured just before and just after (this VM's
     * cost of fresh pages varies a lot from one minute to the next): the
     * better of the two is the peer. */
    double floor1 = peer_page_touch_ms(nsleepers, DEFAULT_STACK_SLOT);
    double t_exit = run_million();
    double floor2 = peer_page_touch_ms(nsleepers, DEFAULT_STACK_SLOT);
    double floor_ms = floor1 > 0 && (floor2 <= 0 || floor1 < floor2) ? floor1 : floor2;
    char what[80];
    snprintf(what, sizeof what, "%ld sleeping tasks: start, all blocked", nsleepers);
    row(what, t_million_start * 1e3, "ms", "touch 1 page per stack", floor_ms,
        "<= 1000 ms for 1M");
    snprintf(what, sizeof what, "%ld sleeping tasks: resident memory per task", nsleepers);
    row(what, kib_per_task, "KiB", NULL, 0, "<= 8 KiB");
    snprintf(what, sizeof what, "%ld sleeping tasks: cancel all and reap", nsleepers);
    row(what, t_million_cancel * 1e3, "ms", NULL, 0, "-");
    snprintf(what, sizeof what, "%ld tasks: run exit, all stacks released", nsleepers);
    row(what, t_exit * 1e3, "ms", NULL, 0, "-");
    return 0;
}
