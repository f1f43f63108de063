/*
 * peers.c — the reference points that bench_core measures ctrio against, in
 * the same process and run: a raw Boost.Context jump_fcontext ping-pong (the
 * fastest portable stackful switch), swapcontext (what most C coroutine
 * libraries use), and libuv's timer start/stop (what a callback loop pays
 * for a timeout around a read).
 */
#include "peers.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <uv.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- Boost.Context: its C-linkage primitives from libboost_context ---- */
typedef void *fcontext_t;
typedef struct {
    fcontext_t fctx;
    void *data;
} transfer_t;
transfer_t jump_fcontext(fcontext_t const to, void *vp);
fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t));

static void fctx_fn(transfer_t t)
{
    for (;;)
        t = jump_fcontext(t.fctx, NULL);
}

double peer_fcontext_ns_per_switch(long iters)
{
    size_t size = 64 * 1024;
    char *stack = malloc(size);
    fcontext_t ctx = make_fcontext(stack + size, size, fctx_fn);
    transfer_t t = {ctx, NULL};
    double t0 = bench_now();
    for (long i = 0; i < iters; i++)
        t = jump_fcontext(t.fctx, NULL);
    double dt = bench_now() - t0;
    free(stack);
    return dt * 1e9 / (double)(iters * 2); /* two switches per round */
}

/* ---- swapcontext ---- */
static ucontext_t uc_main, uc_co;
static void uc_fn(void)
{
    for (;;)
        swapcontext(&uc_co, &uc_main);
}

double peer_swapcontext_ns_per_switch(long iters)
{
    size_t size = 64 * 1024;
    char *stack = malloc(size);
    getcontext(&uc_co);
    uc_co.uc_stack.ss_sp = stack;
    uc_co.uc_stack.ss_size = size;
    uc_co.uc_link = NULL;
    makecontext(&uc_co, uc_fn, 0);
    double t0 = bench_now();
    for (long i = 0; i < iters; i++)
        swapcontext(&uc_main, &uc_co);
    double dt = bench_now() - t0;
    free(stack);
    return dt * 1e9 / (double)(iters * 2);
}

/* ---- libuv timers ---- */
static void never(uv_timer_t *t)
{
    (void)t;
}

double peer_uv_timer_ns(long iters)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_t tm;
    uv_timer_init(&loop, &tm);
    double t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        uv_timer_start(&tm, never, 10000, 0);
        uv_timer_stop(&tm);
    }
    double dt = bench_now() - t0;
    uv_close((uv_handle_t *)&tm, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return dt * 1e9 / (double)iters;
}

/* The floor under "start N tasks": what it costs this machine to give N
 * fresh pages, one at the top of each of N stack-sized slots of one
 * reserved mapping (each task touches the top page of its own stack, and
 * nothing can start a task without that page). No scheduler, no guard pages:
 * only the page faults and the page tables. */
double peer_page_touch_ms(long n, size_t stride)
{
    char *m = mmap(NULL, (size_t)n * stride, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    madvise(m, (size_t)n * stride, MADV_NOHUGEPAGE); /* 4 KiB faults, as ctrio's stacks */
    double t0 = bench_now();
    for (long i = 0; i < n; i++)
        m[(size_t)(i + 1) * stride - 64] = 1;
    double ms = (bench_now() - t0) * 1e3;
    munmap(m, (size_t)n * stride);
    return ms;
}
