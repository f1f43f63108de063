/*
 * stack.c — task stacks: reservation, guard pages and the LIFO cache. The
 * SIGSEGV handler that names the task whose stack overflowed is overflow.c's.
 *
 * A stack is a slot of an anonymous mapping reserved with MAP_NORESERVE, so
 * that only the pages a task touches cost memory: [guard | usable ... |
 * descriptor | colour]. Slots are carved from slabs (one mmap for several
 * stacks, see slab_refill); free stacks are unmapped by address, neighbours
 * together, whatever slab they came from (unmap_stacks). The descriptor
 * (ctrio__stack) sits near the top, up to CTRIO__STACK_COLORS * 64 bytes
 * below it (cache colouring, see ctrio__stack_get), and the scheduler puts the
 * task structure right below the descriptor, so spawning needs no allocation
 * besides the stack itself.
 *
 * The guard must not cost a kernel mapping: an mprotect'ed page splits the
 * mapping in two, and vm.max_map_count (65530 by default) then caps a process
 * near 32,700 stacks, as it does libdill and state-threads. Linux >= 6.13 has
 * MADV_GUARD_INSTALL, which marks pages as guards inside one mapping; we use
 * it where the kernel has it and fall back to mprotect (with that cap) where
 * it does not.
 *
 * The cache is a LIFO, so a task spawned right after another one finished
 * gets a stack whose pages are still warm, and spawning in steady state makes
 * no system call. Memory goes back to the kernel when the scheduler is about
 * to sleep (or the cache grows very large), never on the way out of a task:
 * past CTRIO__STACK_WARM cached stacks the pages are released (MADV_DONTNEED),
 * past CTRIO__STACK_CACHE_MAX the stacks are unmapped.
 */
#include "internal.h"

#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef CTRIO_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#else
#define VALGRIND_STACK_REGISTER(lo, hi) 0u
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#define RUNNING_ON_VALGRIND 0
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define CTRIO__STACK_WARM 64
#define CTRIO__STACK_CACHE_MAX 1024
#define CTRIO__GUARD_BYTES (16 * 1024)
#define CTRIO__STACK_COLORS 32

/* 1 = MADV_GUARD_INSTALL works, 0 = unknown, -1 = use mprotect. Written
 * once, racily but idempotently, by whichever run first needs a stack. */
static _Atomic int guard_mode;

/* Cached racily but idempotently too: runs of a ctrio_run_parallel group
 * start together, and TSan saw two of them fill a plain static at once. */
static size_t page_size(void)
{
    static _Atomic size_t ps;
    size_t v = atomic_load_explicit(&ps, memory_order_relaxed);
    if (!v) {
        v = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&ps, v, memory_order_relaxed);
    }
    return v;
}

/* No address space holds a quarter of SIZE_MAX, and below it the page
 * rounding, the guard and slab_refill's doubling (2 * n * size) cannot wrap
 * around: above it they did, to a mapping far smaller than the stack, and
 * the first task crashed. */
#define CTRIO__STACK_SIZE_MAX (SIZE_MAX / 4)

int ctrio__stack_cache_init(ctrio__stack_cache *c, size_t stack_size)
{
    if (stack_size > CTRIO__STACK_SIZE_MAX)
        return -EINVAL;
    size_t ps = page_size();
    if (stack_size == 0)
        stack_size = 256 * 1024;
    if (stack_size < 16 * 1024)
        stack_size = 16 * 1024;
    c->stack_size = (stack_size + ps - 1) & ~(ps - 1);
    c->free = NULL;
    c->nfree = 0;
    c->live = 0;
    c->untrimmed = 0;
    c->slab_next = c->slab_end = c->slab_guarded = NULL;
    c->slab_stacks = 1;
    c->color = 0;
    return 0;
}

static void stack_unmap(ctrio__stack *s)
{
    char *map = s->map;
    size_t size = s->map_size;
    VALGRIND_STACK_DEREGISTER(s->vg_id);
    munmap(map, size);
}

struct range {
    char *p;
    size_t n;
};

static int range_cmp(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return x->p < y->p ? -1 : x->p > y->p;
}

/* Unmap the n stacks of a list (linked by next_free). Neighbours in memory
 * go in one munmap: unmapping one slot of a slab splits the mapping, and at
 * a million stacks that cost 13-15 us each on the VM where bench_core runs,
 * against 2 us each when a whole slab goes at once. The descriptors live in
 * the stacks, so the ranges are copied out first. */
static void unmap_stacks(ctrio__stack *list, size_t n)
{
    struct range *r = n > 1 ? malloc(n * sizeof *r) : NULL;
    size_t k = 0;
    while (list) {
        ctrio__stack *s = list;
        list = s->next_free;
        if (!r) {
            stack_unmap(s);
            continue;
        }
        VALGRIND_STACK_DEREGISTER(s->vg_id);
        r[k].p = s->map;
        r[k].n = s->map_size;
        k++;
    }
    if (!r)
        return;
    qsort(r, k, sizeof *r, range_cmp);
    for (size_t i = 0; i < k;) {
        char *p = r[i].p;
        size_t len = r[i].n;
        for (i++; i < k && r[i].p == p + len; i++)
            len += r[i].n;
        munmap(p, len);
    }
    free(r);
}

void ctrio__stack_cache_fini(ctrio__stack_cache *c)
{
    unmap_stacks(c->free, c->nfree);
    c->free = NULL;
    c->nfree = 0;
    if (c->slab_next != c->slab_end)
        munmap(c->slab_next, (size_t)(c->slab_end - c->slab_next));
    c->slab_next = c->slab_end = c->slab_guarded = NULL;
}

int ctrio__stack_guard_mode(void)
{
    return atomic_load_explicit(&guard_mode, memory_order_relaxed);
}

/* A guard page reads as "bad address" to the kernel: access(2) on it fails
 * with EFAULT, where a plain page gives ENOENT. qemu-user says yes to
 * madvise advice it does not know and does nothing, so the first guard is
 * checked this way before MADV_GUARD_INSTALL is trusted. */
static bool guard_is_real(char *map)
{
    return access(map, F_OK) < 0 && errno == EFAULT;
}

/* Valgrind's client request where valgrind.h was there at build time; its
 * preloaded libraries otherwise (a library built without valgrind.h and run
 * under valgrind must not die either). */
static bool on_valgrind(void)
{
    if (RUNNING_ON_VALGRIND)
        return true;
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload_");
}

static int install_guard(char *map, size_t guard)
{
    int mode = atomic_load_explicit(&guard_mode, memory_order_relaxed);
    if (mode > 0)
        return CTRIO__SYS(madvise(map, guard, MADV_GUARD_INSTALL));
    if (mode == 0) {
        /* First stack: any failure or a guard that is not one means this
         * kernel (or emulator, or seccomp filter) lacks MADV_GUARD_INSTALL.
         * Valgrind gets mprotect: it follows mprotect, but knows nothing of
         * guard pages and dies of a fault when it reads one itself (the
         * path of the access(2) probe, for one). */
        if (!on_valgrind() && madvise(map, guard, MADV_GUARD_INSTALL) == 0 &&
            guard_is_real(map)) {
            atomic_store_explicit(&guard_mode, 1, memory_order_relaxed);
            return 0;
        }
        atomic_store_explicit(&guard_mode, -1, memory_order_relaxed);
    }
    return CTRIO__SYS(mprotect(map, guard, PROT_NONE));
}

/* PIDFD_SELF_PROCESS (Linux >= 6.15): process_madvise on this process
 * without opening a pidfd. */
#define CTRIO__PIDFD_SELF_PROCESS (-10001)
#define CTRIO__SLAB_MAX_STACKS 64

/* The guards of a new slab's n slots in one system call: process_madvise
 * takes a vector of ranges, and accepts any advice for the calling process
 * since Linux 6.13 (which MADV_GUARD_INSTALL needs anyway). One madvise per
 * stack cost 1.4 us each on the VM where bench_core runs, the batch 0.25 us
 * a stack. Returns how many slots, from the first, have their guard; the
 * others get theirs one by one when they are carved (an older kernel or
 * glibc, or a seccomp filter, says no here and costs one call a slab). */
static size_t guard_slab(char *map, size_t n, size_t size, size_t guard)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 36)
    if (n < 2 || atomic_load_explicit(&guard_mode, memory_order_relaxed) <= 0)
        return 0;
    struct iovec iov[CTRIO__SLAB_MAX_STACKS];
    for (size_t k = 0; k < n; k++) {
        iov[k].iov_base = map + k * size;
        iov[k].iov_len = guard;
    }
    /* (a fault here makes the one-by-one guards of install_guard) */
    ssize_t done = ctrio__sys_fault()
                       ? -1
                       : process_madvise(CTRIO__PIDFD_SELF_PROCESS, iov, n, MADV_GUARD_INSTALL, 0);
    /* An emulator may say yes and do nothing, as qemu-user does for madvise
     * (see install_guard): trust a batch only once its first guard holds. */
    return done > 0 && guard_is_real(map) ? (size_t)done / guard : 0;
#else
    (void)map, (void)n, (void)size, (void)guard;
    return 0;
#endif
}

/* New stacks are carved from slabs: one mmap for several stacks, so that a
 * program that grows to many tasks makes one system call (the guard) per new
 * stack instead of two, and where the kernel allows, one for all the guards
 * of a slab (guard_slab). A slab holds 1, 2, 4 ... stacks, up to 64 and at most
 * 16 MiB (32 default stacks), so a small program reserves little. A stack
 * is unmapped without regard to its slab (munmap of part of a mapping, or of
 * several, is fine); what fini finds unused is unmapped in one piece. */
#define CTRIO__SLAB_MAX_BYTES ((size_t)16 << 20)

static int slab_refill(ctrio__stack_cache *c, size_t size, size_t guard)
{
    size_t n = c->slab_stacks;
    /* (a fault here makes the one-stack retry below) */
    char *map = ctrio__sys_fault()
                    ? MAP_FAILED
                    : mmap(NULL, n * size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED && n > 1) {
        /* No room for a whole slab (RLIMIT_AS, strict overcommit): one
         * stack may still fit. */
        c->slab_stacks = n = 1;
        map = ctrio__sys_fault()
                  ? MAP_FAILED
                  : mmap(NULL, size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    }
    if (map == MAP_FAILED)
        return -1;
    /* The unused rest of a slab is one writable mapping with the newest
     * stack: large enough for transparent huge pages where MAP_STACK does not
     * rule them out (Linux < 6.7 with THP "always"), and one 2 MiB page per
     * task would be 500 times the memory we mean to use. */
    madvise(map, n * size, MADV_NOHUGEPAGE);
    c->slab_next = map;
    c->slab_end = map + n * size;
    c->slab_guarded = map + guard_slab(map, n, size, guard) * size;
    if (n < CTRIO__SLAB_MAX_STACKS && 2 * n * size <= CTRIO__SLAB_MAX_BYTES)
        c->slab_stacks = 2 * n;
    return 0;
}

ctrio__stack *ctrio__stack_get(ctrio__stack_cache *c)
{
    ctrio__stack *s = c->free;
    if (CTRIO__LIKELY(s != NULL)) {
        c->free = s->next_free;
        if (c->free) /* the next spawn will want it: start the cache miss now */
            __builtin_prefetch(c->free, 1);
        c->nfree--;
        c->live++;
        if (!s->trimmed && c->untrimmed)
            c->untrimmed--;
        return s;
    }
    /* Every slot starts on a page boundary, with 64 KiB pages too (madvise,
     * mprotect and munmap refuse anything else); stack_size is a page
     * multiple already. */
    size_t ps = page_size();
    size_t guard = (CTRIO__GUARD_BYTES + ps - 1) & ~(ps - 1);
    size_t size = guard + c->stack_size;
    if (c->slab_next == c->slab_end && slab_refill(c, size, guard) < 0)
        return NULL;
    char *map = c->slab_next;
    c->slab_next += size;
    if (map >= c->slab_guarded && install_guard(map, guard) < 0) {
        /* Back to the slab, for the next spawn to try again or for fini to
         * unmap: a munmap here would split the slab's mapping, and that
         * fails too when the mapping count is what made mprotect fail. */
        c->slab_next = map;
        return NULL;
    }
    /* Cache colouring: the descriptor, the task and its first frames sit at
     * the top of each stack, so without an offset they would have the same
     * address bits below 4 KiB in every stack and compete for the same few
     * sets of the L1 cache. A batch of 1000 new tasks took 113 ns each that
     * way, 45 ns with 32 offsets 64 bytes apart (bench_core, ONLY=spawn). */
    c->color = (c->color + 1) % CTRIO__STACK_COLORS;
    s = (ctrio__stack *)(map + size - sizeof(ctrio__stack) - c->color * 64);
    s->map = map;
    s->map_size = size;
    s->guard = guard;
    s->vg_id = VALGRIND_STACK_REGISTER(map + guard, map + size - 1); /* last byte */
    s->next_free = NULL;
    s->trimmed = 0;
    c->live++;
    return s;
}

void ctrio__stack_put(ctrio__stack_cache *c, ctrio__stack *s)
{
    /* O(1) and no system call: giving memory back waits for ctrio__stack_trim,
     * which the scheduler calls when it is about to sleep. */
    c->live--;
    s->trimmed = 0;
    s->next_free = c->free;
    c->free = s;
    c->nfree++;
    c->untrimmed++;
}

bool ctrio__stack_trim_due(const ctrio__stack_cache *c)
{
    return c->untrimmed && c->nfree > CTRIO__STACK_WARM;
}

/* Past CTRIO__STACK_WARM cached stacks, give the pages back (all but the
 * top one, which holds the descriptor and the free-list link); past
 * CTRIO__STACK_CACHE_MAX, unmap. The LIFO keeps the warm stacks on top. */
void ctrio__stack_trim(ctrio__stack_cache *c)
{
    size_t ps = page_size();
    size_t i = 0;
    ctrio__stack **link = &c->free;
    while (*link) {
        ctrio__stack *s = *link;
        if (i >= CTRIO__STACK_CACHE_MAX) {
            *link = NULL; /* the rest of the list goes */
            unmap_stacks(s, c->nfree - i);
            c->nfree = i;
            break;
        }
        if (i >= CTRIO__STACK_WARM && !s->trimmed) {
            char *lo = ctrio__stack_lo(s);
            char *top_page = (char *)((uintptr_t)s & ~(uintptr_t)(ps - 1));
            if (top_page > lo)
                madvise(lo, (size_t)(top_page - lo), MADV_DONTNEED);
            s->trimmed = 1;
        }
        link = &s->next_free;
        i++;
    }
    c->untrimmed = 0;
}
