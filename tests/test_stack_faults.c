/*
 * test_stack_faults.c — task stacks when the kernel says no.
 *
 * This program is linked with -Wl,--wrap=mmap,--wrap=madvise,--wrap=mprotect
 * and --wrap=process_madvise (tests/CMakeLists.txt), so the library's calls
 * to those go through the wrappers below, which fail on demand. Every test here is new (Trio has no
 * stacks to run out of): a spawn whose stack cannot be made fails with an
 * error and leaves nothing behind, the next spawn works, and a slab that does
 * not fit falls back to a single stack.
 */
#include "support.h"

#include "internal.h"

#include <ctrio_testing.h>

#include <stdint.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_madvise(void *addr, size_t len, int advice);
int __real_mprotect(void *addr, size_t len, int prot);
ssize_t __real_process_madvise(int pidfd, const struct iovec *iov, size_t n, int advice,
                               unsigned flags);

/* What to fail: the next `fail_guards` guard installs (MADV_GUARD_INSTALL or
 * mprotect PROT_NONE, whichever this kernel uses), and every stack mmap
 * longer than `mmap_max` bytes (0: no limit) or all of them. */
static int fail_guards;
static size_t mmap_max;
static bool fail_all_mmaps;
static int guards_failed, mmaps_failed;
static size_t largest_stack_mmap;

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (flags & MAP_STACK) {
        if (fail_all_mmaps || (mmap_max && len > mmap_max)) {
            mmaps_failed++;
            errno = ENOMEM;
            return MAP_FAILED;
        }
        if (len > largest_stack_mmap)
            largest_stack_mmap = len;
    }
    return __real_mmap(addr, len, prot, flags, fd, off);
}

/* A guard install that is to fail: counts it and sets errno. */
static bool guard_fault(void)
{
    if (fail_guards <= 0)
        return false;
    fail_guards--;
    guards_failed++;
    errno = ENOMEM;
    return true;
}

int __wrap_madvise(void *addr, size_t len, int advice)
{
    if (advice == MADV_GUARD_INSTALL && guard_fault())
        return -1;
    return __real_madvise(addr, len, advice);
}

/* A slab's guards in one call (stack.c, guard_slab): refused as a whole
 * while guard installs are to fail, without using up a failure, so that the
 * stack-by-stack installs that follow meet them. */
static int batches_refused, last_batches_refused;
ssize_t __wrap_process_madvise(int pidfd, const struct iovec *iov, size_t n, int advice,
                               unsigned flags)
{
    if (advice == MADV_GUARD_INSTALL && fail_guards > 0) {
        batches_refused++;
        errno = ENOMEM;
        return -1;
    }
    return __real_process_madvise(pidfd, iov, n, advice, flags);
}

int __wrap_mprotect(void *addr, size_t len, int prot)
{
    if (prot == PROT_NONE && guard_fault())
        return -1;
    return __real_mprotect(addr, len, prot);
}

static void reset_faults(void)
{
    fail_guards = 0;
    mmap_max = 0;
    fail_all_mmaps = false;
    guards_failed = mmaps_failed = batches_refused = 0;
    largest_stack_mmap = 0;
}

static int sleeper(void *arg)
{
    (void)arg;
    return ctrio_sleep_forever() == -ECANCELED ? 0 : -EIO;
}

typedef struct spawn_plan {
    int tasks;       /* spawns to try */
    int fail_at;     /* before spawn number fail_at (0-based), arm the fault */
    int guard_fails; /* how many guard installs fail from there */
    bool all_mmaps;  /* or: every stack mmap fails from there */
    int started, refused;
    int first_error;
} spawn_plan;

static int plan_main(void *arg)
{
    spawn_plan *p = arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio__stack_cache *c = &ctrio__tls_run->stacks;
    int armed_at = -1;
    for (int i = 0; i < p->tasks; i++) {
        /* Arm at the first spawn from fail_at on that needs a new slab (the
         * current one used up): the slab's mapping, and its guards where
         * they are installed for the whole slab at once, are made then. */
        if (armed_at < 0 && p->fail_at >= 0 && i >= p->fail_at && c->free == NULL &&
            c->slab_next == c->slab_end) {
            armed_at = i;
            fail_guards = p->guard_fails;
            fail_all_mmaps = p->all_mmaps;
        }
        int rc = ctrio_start_soon(&n, sleeper, NULL);
        if (rc == 0) {
            p->started++;
        } else {
            p->refused++;
            if (!p->first_error)
                p->first_error = rc;
        }
        if (armed_at >= 0 && i == armed_at + 2)
            fail_all_mmaps = false; /* three refusals, then room again */
    }
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    return ctrio_nursery_close(&n, 0);
}

/* Run a plan once to warm up libc and find the guard mode, then measure the
 * address space around a second run. */
static long run_plan(spawn_plan *p, long *grown_kib)
{
    reset_faults();
    spawn_plan warm = {.tasks = 8, .fail_at = -1};
    assert_int_equal(run_real(plan_main, &warm), 0);
    assert_int_equal(warm.started, 8);
    long before = vm_size_kib();
    int rc = run_real(plan_main, p);
    long after = vm_size_kib();
    *grown_kib = after - before;
    print_message("guard mode %d: %d started, %d refused (first error %d), %d guards, %d slab "
                  "guard batches and %d mmaps failed, address space %+ld KiB\n",
                  ctrio__stack_guard_mode(), p->started, p->refused, p->first_error, guards_failed,
                  batches_refused, mmaps_failed, *grown_kib);
    last_batches_refused = batches_refused;
    reset_faults();
    return rc;
}

/* New: a guard that cannot be installed (mprotect at vm.max_map_count, or
 * MADV_GUARD_INSTALL refused, for the whole slab and then for the stack)
 * makes that spawn fail with the kernel's error; the slot goes back to its
 * slab, the next spawn uses it, and nothing of the run's address space
 * outlives the run. */
static void test_guard_failure_refuses_spawn_and_leaks_nothing(void **state)
{
    (void)state;
    spawn_plan p = {.tasks = 100, .fail_at = 40, .guard_fails = 3};
    long grown;
    assert_int_equal(run_plan(&p, &grown), 0);
    assert_int_equal(guards_failed, 0); /* reset after the run */
    /* with MADV_GUARD_INSTALL, the new slab's guards were asked for at once
     * first (and refused); mprotect guards go one by one */
    assert_int_equal(last_batches_refused > 0, ctrio__stack_guard_mode() > 0);
    assert_int_equal(p.refused, 3);
    assert_int_equal(p.started, 97);
    assert_int_equal(p.first_error, -ENOMEM);
    assert_true(grown < 1024);
}

/* New: when no stack can be mapped at all (address-space limit), spawning
 * fails with -ENOMEM, the tasks already running are unaffected, and
 * spawning works again once memory is back. */
static void test_mmap_failure_refuses_spawn(void **state)
{
    (void)state;
    spawn_plan p = {.tasks = 200, .fail_at = 150, .all_mmaps = true};
    long grown;
    assert_int_equal(run_plan(&p, &grown), 0);
    assert_int_equal(mmaps_failed, 0); /* reset after the run */
    assert_int_equal(p.refused, 3);
    assert_int_equal(p.started, 197);
    assert_int_equal(p.first_error, -ENOMEM);
    assert_true(grown < 1024);
}

static int many_main(void *arg)
{
    int *started = arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < 100; i++)
        if (ctrio_start_soon(&n, sleeper, NULL) == 0)
            (*started)++;
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    return ctrio_nursery_close(&n, 0);
}

/* New: a slab of several stacks that does not fit (the mapping is refused
 * above one stack's size) falls back to one stack per mapping: every spawn
 * still succeeds. */
static void test_slab_too_big_falls_back_to_one_stack(void **state)
{
    (void)state;
    /* A default stack (256 KiB) and its guard (16 KiB, or a page if larger). */
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    size_t slot = ((16 * 1024 + ps - 1) & ~(ps - 1)) + 256 * 1024;
    int started = 0;
    reset_faults();
    mmap_max = slot; /* any slab of two or more stacks is refused */
    started = 0;
    int rc = run_real(many_main, &started);
    int refused_slabs = mmaps_failed;
    size_t largest = largest_stack_mmap;
    reset_faults();
    print_message("%d started; %d slab mappings refused; largest stack mapping %zu bytes\n",
                  started, refused_slabs, largest);
    assert_int_equal(rc, 0);
    assert_int_equal(started, 100);
    assert_true(refused_slabs >= 1);
    assert_true(largest <= slot);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_guard_failure_refuses_spawn_and_leaks_nothing),
        TEST(test_mmap_failure_refuses_spawn),
        TEST(test_slab_too_big_falls_back_to_one_stack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
