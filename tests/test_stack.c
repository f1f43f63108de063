/*
 * test_stack.c — task stacks and the context switch (src/core/stack.c,
 * switch_*.S, and context_init / switch_to / reap_zombie in sched.c).
 *
 * None of this is in Trio (Python frames live on the heap, there is no
 * context switch of our kind): every test here is new, and none ports a Trio
 * test. What is tested:
 *   - a stack overflow is reported and names the task; other SIGSEGVs are not
 *     reported as overflows and still kill the process;
 *   - the floating-point control state the ABI makes callee-saved (MXCSR
 *     rounding / flush-to-zero, the x87 control word) is per task;
 *   - guard pages do not cost a kernel mapping each (MADV_GUARD_INSTALL), so
 *     vm.max_map_count does not cap the task count;
 *   - stacks are reused from the cache, also after a deep task, and cached
 *     stacks are given back when the loop goes idle;
 *   - ctrio_config.stack_size (default, minimum, rounding);
 *   - gdb can backtrace a task down to ctrio__trampoline.
 *
 * Crashing scenarios run in a fresh process: the test binary re-executes
 * itself with "--child=NAME" (see child_main), its stderr captured through a
 * pipe. A plain fork() is not enough: cmocka sets its own SIGSEGV handler for
 * every test and restores the previous disposition with signal() after it,
 * which removes the library's handler (installed once per process) for every
 * later test — see test_overflow_reported_after_handler_reset.
 *
 * White-box: reads ctrio__tls_run->stacks and the task's ctrio__stack.
 */
#include "support.h"

#include "internal.h"

#include <ctrio_testing.h>

#include <alloca.h>
#include <fcntl.h>
#include <fenv.h>
#include <float.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
#if UNDER_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef CTRIO_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#define ON_VALGRIND under_valgrind()
#else
#define ON_VALGRIND 0
#endif

#define KiB ((size_t)1024)

/* ------------------------------------------------------------------------ */
/* Child scenarios: run by the re-executed binary, outside cmocka            */
/* ------------------------------------------------------------------------ */

/* Never reached in practice: keeps -Winfinite-recursion quiet and the
 * recursion a real one. */
static volatile int recursion_limit = INT_MAX;

static int __attribute__((noinline)) recurse_forever(int depth)
{
    volatile char frame[1024]; /* 1 KiB a frame: no tail call, no loop */
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = (char)depth;
    if (depth >= recursion_limit)
        return frame[0];
    int r = recurse_forever(depth + 1);
    return r + frame[(unsigned)depth % sizeof frame];
}

static int overflow_task(void *arg)
{
    (void)arg;
    ctrio_task_set_name("deep-recursion");
    fputs("child: in task\n", stderr);
    return recurse_forever(0);
}

static int overflow_child(void)
{
    ctrio_config cfg = {0};
    cfg.stack_size = 64 * KiB;
    int rc = ctrio_run_with(&cfg, overflow_task, NULL);
    fprintf(stderr, "child: the run returned %d\n", rc);
    return 3;
}

static int segv_task(void *arg)
{
    (void)arg;
    ctrio_task_set_name("null-writer");
    fputs("child: in task\n", stderr);
    /* An address near NULL (not NULL itself, which UBSan would report
     * before the store): unmapped, and far from any task stack. */
    volatile uintptr_t addr = 16;
    *(volatile int *)addr = 1;
    return 0;
}

static int segv_child(void)
{
    int rc = ctrio_run(segv_task, NULL);
    fprintf(stderr, "child: the run returned %d\n", rc);
    return 3;
}

static int trivial_task(void *arg)
{
    (void)arg;
    return 0;
}

/* The first run installs the handler; then the SIGSEGV disposition changes
 * behind the library's back (as cmocka does around every test, or an
 * application installing its own handler); then a task overflows. */
static int overflow_after_reset_child(void)
{
    if (ctrio_run(trivial_task, NULL) != 0)
        return 4;
    signal(SIGSEGV, SIG_DFL);
    return overflow_child();
}

/* noinline, so that gdb shows it as a frame of its own. */
static int __attribute__((noinline)) gdb_trap_task(void *arg)
{
    (void)arg;
    fputs("child: in task\n", stderr);
    __builtin_trap();
}

static int trap_child(void)
{
    int rc = ctrio_run(gdb_trap_task, NULL);
    fprintf(stderr, "child: the run returned %d\n", rc);
    return 3;
}

static int child_main(const char *name)
{
    if (strcmp(name, "overflow") == 0)
        return overflow_child();
    if (strcmp(name, "segv") == 0)
        return segv_child();
    if (strcmp(name, "overflow-after-reset") == 0)
        return overflow_after_reset_child();
    if (strcmp(name, "trap") == 0)
        return trap_child();
    if (strcmp(name, "hello") == 0) {
        fputs("child: hello\n", stderr);
        return 0;
    }
    fprintf(stderr, "unknown child scenario %s\n", name);
    return 2;
}

/* ------------------------------------------------------------------------ */
/* Running a child and capturing its output                                  */
/* ------------------------------------------------------------------------ */

typedef struct child_result {
    int status; /* waitpid status */
    bool timed_out;
    char out[64 * 1024]; /* its stdout + stderr, NUL-terminated (truncated) */
} child_result;

static void self_exe(char *buf, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    assert_true(n > 0);
    buf[n] = '\0';
}

/* Run argv (argv[0] is a path) with stdout and stderr into a pipe; read all
 * of it and wait for the process, for at most `timeout` seconds in all
 * (then it is killed and res->timed_out is set). */
static void run_captured(char *const argv[], double timeout, child_result *res)
{
    memset(res, 0, sizeof *res);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        execv(argv[0], argv);
        char msg[] = "run_captured: exec failed\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    close(p[1]);
    double end = real_now() + timeout;
    size_t n = 0;
    for (;;) {
        double left = end - real_now();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        char tmp[4096];
        ssize_t k = read(p[0], tmp, sizeof tmp);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break; /* EOF: every writer is gone */
        size_t take = (size_t)k;
        if (take > sizeof res->out - 1 - n)
            take = sizeof res->out - 1 - n;
        memcpy(res->out + n, tmp, take);
        n += take;
    }
    res->out[n] = '\0';
    close(p[0]);
    /* Bounded wait: poll waitpid until the deadline, then kill. */
    for (;;) {
        pid_t w = waitpid(pid, &res->status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            fail_msg("waitpid: %s", strerror(errno));
        if (real_now() >= end) {
            res->timed_out = true;
            kill(pid, SIGKILL);
            waitpid(pid, &res->status, 0);
            break;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static bool exec_failed(const child_result *res)
{
    return WIFEXITED(res->status) && WEXITSTATUS(res->status) == 127 &&
           strstr(res->out, "run_captured: exec failed") != NULL;
}

static void run_child_raw(const char *scenario, double timeout, child_result *res)
{
    char exe[4096], arg[128];
    self_exe(exe, sizeof exe);
    snprintf(arg, sizeof arg, "--child=%s", scenario);
    char *argv[] = {exe, arg, NULL};
    run_captured(argv, timeout, res);
}

/* Whether this binary can execute itself. Not under user-mode emulation
 * without binfmt_misc (the cross build's ctest runs us as
 * "qemu-aarch64-static test_stack": a plain exec of the aarch64 binary then
 * fails with ENOEXEC) — and then gdb cannot run it either. */
static bool can_reexec(void)
{
    static int known = -1;
    if (known < 0) {
        static child_result res;
        run_child_raw("hello", 20, &res);
        known = WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0 &&
                strstr(res.out, "child: hello") != NULL;
        if (!known)
            print_message("cannot re-execute this binary (status %#x):\n%s\n", (unsigned)res.status,
                          res.out);
        /* Only an exec that failed excuses it: anything else is a failure. */
        assert_true(known || exec_failed(&res));
    }
    return known;
}

/* Run this binary with --child=scenario; skips the test where it cannot
 * execute itself. */
static void run_child(const char *scenario, double timeout, child_result *res)
{
    if (!can_reexec())
        skip();
    run_child_raw(scenario, timeout, res);
}

static void print_child(const char *what, const child_result *res)
{
    print_message("%s: status %#x%s, output:\n%s\n", what, (unsigned)res->status,
                  res->timed_out ? " (timed out)" : "", res->out);
}

/* ------------------------------------------------------------------------ */
/* 1. Stack overflow                                                         */
/* ------------------------------------------------------------------------ */

/* New: a task that recurses without bound dies by SIGABRT from the SIGSEGV
 * handler, which names it ("deep-recursion") and says how big its stack was.
 * Under ASan, ASan's own stack-overflow report is accepted instead, as long
 * as the process dies and does not hang. */
static void test_stack_overflow_names_task(void **state)
{
    (void)state;
    static child_result res;
    run_child("overflow", UNDER_ASAN ? 60 : 20, &res);
    if (res.timed_out)
        print_child("overflow child", &res);
    assert_false(res.timed_out);
    assert_non_null(strstr(res.out, "child: in task"));
    bool ours = strstr(res.out, "stack overflow in task") != NULL &&
                strstr(res.out, "deep-recursion") != NULL;
#if UNDER_ASAN
    bool asans = strstr(res.out, "stack-overflow") != NULL;
    if (!ours && !asans)
        print_child("overflow child", &res);
    assert_true(ours || asans);
    /* Dead either way: by a signal, or by ASan's exit code. */
    assert_true(WIFSIGNALED(res.status) || (WIFEXITED(res.status) && WEXITSTATUS(res.status) != 0 &&
                                            WEXITSTATUS(res.status) != 3));
    if (ours)
        assert_true(WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGABRT);
#else
    if (!ours || !WIFSIGNALED(res.status) || WTERMSIG(res.status) != SIGABRT)
        print_child("overflow child", &res);
    assert_true(ours);
    assert_true(WIFSIGNALED(res.status));
    assert_int_equal(WTERMSIG(res.status), SIGABRT);
    /* The message gives the configured size. */
    assert_non_null(strstr(res.out, "65536 bytes"));
#endif
}

/* New: a SIGSEGV that has nothing to do with a task stack (a store to an
 * address near NULL, inside a task) is not reported as a stack overflow,
 * and still kills the process (by SIGSEGV; under ASan, by ASan's SEGV
 * report, which the handler chains to). */
static void test_unrelated_segv_not_reported_as_overflow(void **state)
{
    (void)state;
    static child_result res;
    run_child("segv", UNDER_ASAN ? 60 : 20, &res);
    if (res.timed_out)
        print_child("segv child", &res);
    assert_false(res.timed_out);
    assert_non_null(strstr(res.out, "child: in task"));
    assert_null(strstr(res.out, "stack overflow"));
    assert_null(strstr(res.out, "child: the run returned"));
#if UNDER_ASAN
    assert_true(WIFSIGNALED(res.status) || (WIFEXITED(res.status) && WEXITSTATUS(res.status) != 0 &&
                                            WEXITSTATUS(res.status) != 3));
    /* ASan's report (handle_segv=1, the default), or the kernel's kill. */
    assert_true(strstr(res.out, "SEGV") != NULL ||
                (WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGSEGV));
#else
    if (!WIFSIGNALED(res.status))
        print_child("segv child", &res);
    assert_true(WIFSIGNALED(res.status));
    assert_int_equal(WTERMSIG(res.status), SIGSEGV);
#endif
}

/* New: the overflow report still works when the SIGSEGV disposition was
 * changed after the first run installed the handler (an application's own
 * handler, or cmocka's around each test). */
static void test_overflow_reported_after_handler_reset(void **state)
{
    (void)state;
    /* Found a bug: the handler is now reinstalled at each run when needed. */
    static child_result res;
    run_child("overflow-after-reset", UNDER_ASAN ? 60 : 20, &res);
    if (res.timed_out)
        print_child("overflow-after-reset child", &res);
    assert_false(res.timed_out);
    assert_non_null(strstr(res.out, "child: in task"));
    if (!strstr(res.out, "stack overflow in task"))
        print_child("overflow-after-reset child", &res);
    assert_non_null(strstr(res.out, "stack overflow in task"));
    assert_non_null(strstr(res.out, "deep-recursion"));
    assert_true(WIFSIGNALED(res.status));
    assert_int_equal(WTERMSIG(res.status), SIGABRT);
}

/* ------------------------------------------------------------------------ */
/* 2. Floating-point control state is per task                               */
/* ------------------------------------------------------------------------ */

/* The hardware's view of the floating-point control state, per architecture:
 * assert_hw_rounding checks that every unit doing arithmetic holds the
 * rounding mode fesetround was given; ftz_get/ftz_set read and write
 * flush-to-zero (x86-64: MXCSR.FTZ; AArch64: FPCR.FZ). */
#if defined(__x86_64__)
#define MXCSR_FTZ 0x8000u
#define X87_PC_53 0x027F /* precision control: double (53 bits) */
#define X87_DEFAULT 0x037F

static unsigned mxcsr_rc(void)
{
    return (_mm_getcsr() >> 13) & 3; /* 0 nearest, 1 down, 2 up, 3 zero */
}

static unsigned short x87_cw(void)
{
    unsigned short cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return cw;
}

static void x87_set_cw(unsigned short cw)
{
    __asm__ volatile("fldcw %0" : : "m"(cw));
}

static unsigned x87_rc(void)
{
    return (x87_cw() >> 10) & 3;
}

static void assert_hw_rounding(int mode)
{
    unsigned want = mode == FE_UPWARD       ? 2
                    : mode == FE_DOWNWARD   ? 1
                    : mode == FE_TOWARDZERO ? 3
                                            : 0;
    assert_int_equal(mxcsr_rc(), want); /* SSE arithmetic */
    assert_int_equal(x87_rc(), want);   /* x87 (long double) arithmetic */
}

static bool ftz_get(void)
{
    return (_mm_getcsr() & MXCSR_FTZ) != 0;
}

static void ftz_set(bool on)
{
    _mm_setcsr(on ? _mm_getcsr() | MXCSR_FTZ : _mm_getcsr() & ~MXCSR_FTZ);
}
#else /* AArch64 */
#define FPCR_FZ (1ull << 24)

static uint64_t fpcr_get(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}

static void fpcr_set(uint64_t v)
{
    __asm__ volatile("msr fpcr, %0" : : "r"(v));
}

static void assert_hw_rounding(int mode)
{
    unsigned want = mode == FE_UPWARD       ? 1 /* RMode: RP */
                    : mode == FE_DOWNWARD   ? 2 /* RM */
                    : mode == FE_TOWARDZERO ? 3 /* RZ */
                                            : 0; /* RN */
    assert_int_equal((fpcr_get() >> 22) & 3, want);
}

static bool ftz_get(void)
{
    return (fpcr_get() & FPCR_FZ) != 0;
}

static void ftz_set(bool on)
{
    fpcr_set(on ? fpcr_get() | FPCR_FZ : fpcr_get() & ~FPCR_FZ);
}
#endif

/* A call the compiler cannot see through nor move across fesetround
 * (without -frounding-math it would otherwise treat the two as unrelated). */
static double __attribute__((noipa)) divide(double a, double b)
{
    return a / b;
}

typedef struct round_task {
    int mode; /* FE_* this task runs with */
    int yields;
    int checks; /* how many times it found its mode intact */
} round_task;

static int round_task_fn(void *arg)
{
    round_task *rt = arg;
    if (rt->mode != FE_TONEAREST)
        assert_int_equal(fesetround(rt->mode), 0);
    else
        assert_int_equal(fegetround(), FE_TONEAREST); /* a new task's default */
    for (int i = 0; i < rt->yields; i++) {
        assert_int_equal(ctrio_checkpoint(), 0);
        assert_int_equal(fegetround(), rt->mode);
        assert_hw_rounding(rt->mode);
        /* The rounding is really in effect for double arithmetic. */
        if (ON_VALGRIND) { /* its FPU emulation does arithmetic rounding to nearest */
            rt->checks++;
            continue;
        }
        /* 1/3 rounded to nearest is rounded down, -1/3 is rounded up. */
        double pos = divide(1.0, 3.0), neg = divide(-1.0, 3.0);
        fesetround(FE_TONEAREST);
        double pos_n = divide(1.0, 3.0), neg_n = divide(-1.0, 3.0);
        fesetround(rt->mode);
        if (rt->mode == FE_UPWARD) {
            assert_true(pos > pos_n);
            assert_true(neg == neg_n);
        } else if (rt->mode == FE_DOWNWARD) {
            assert_true(pos == pos_n);
            assert_true(neg < neg_n);
        } else {
            assert_true(pos == pos_n);
            assert_true(neg == neg_n);
        }
        rt->checks++;
    }
    fesetround(FE_TONEAREST);
    return 0;
}

static int rounding_main(void *arg)
{
    round_task *tasks = arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ctrio_start_soon(&n, round_task_fn, &tasks[i]), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(fegetround(), FE_TONEAREST);
    return 0;
}

/* New: the rounding mode is per task (x86-64: MXCSR.RC and the x87 control
 * word's RC, both callee-saved in the ABI; AArch64: FPCR.RMode, which ctrio
 * keeps per task although the ABI makes it thread-wide): three tasks with
 * different modes interleave through several yields and each keeps its own. */
static void test_rounding_mode_per_task(void **state)
{
    (void)state;
    round_task tasks[3] = {{FE_UPWARD, 6, 0}, {FE_TONEAREST, 6, 0}, {FE_DOWNWARD, 6, 0}};
    int rc = run_mock(rounding_main, tasks);
    int after = fegetround();
    fesetround(FE_TONEAREST);
    assert_int_equal(rc, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tasks[i].checks, 6);
    assert_int_equal(after, FE_TONEAREST);
}

static double __attribute__((noipa)) halve(double a)
{
    return a * 0.5;
}

typedef struct ftz_task {
    bool ftz;   /* this task sets flush-to-zero */
    bool x87pc; /* this task sets the x87 precision to 53 bits (x86-64) */
    int checks;
} ftz_task;

static int ftz_task_fn(void *arg)
{
    ftz_task *ft = arg;
    if (ft->ftz)
        ftz_set(true);
#if defined(__x86_64__)
    if (ft->x87pc)
        x87_set_cw(X87_PC_53);
#endif
    for (int i = 0; i < 6; i++) {
        assert_int_equal(ctrio_checkpoint(), 0);
        assert_int_equal(ftz_get(), ft->ftz);
        /* DBL_MIN / 2 is subnormal: flushed to zero only under FTZ. */
        double half = halve(DBL_MIN);
        if (ft->ftz)
            assert_true(half == 0.0);
        else
            assert_true(half > 0.0);
#if defined(__x86_64__)
        assert_int_equal(x87_cw(), ft->x87pc ? X87_PC_53 : X87_DEFAULT);
#endif
        ft->checks++;
    }
    ftz_set(false);
#if defined(__x86_64__)
    x87_set_cw(X87_DEFAULT);
#endif
    return 0;
}

static int ftz_main(void *arg)
{
    ftz_task *tasks = arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ctrio_start_soon(&n, ftz_task_fn, &tasks[i]), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    return 0;
}

/* New: flush-to-zero (MXCSR bit 15; FPCR.FZ on AArch64) and, on x86-64, the
 * x87 precision control are per task too: one task with FTZ, one with 53-bit
 * x87 precision (on AArch64: plain), one with the defaults interleave and
 * each keeps its own. */
static void test_ftz_and_x87_control_per_task(void **state)
{
    (void)state;
    if (ON_VALGRIND) {
        print_message("valgrind does not emulate flush-to-zero\n");
        skip();
    }
    ftz_task tasks[3] = {{true, false, 0}, {false, false, 0}, {false, true, 0}};
    int rc = run_mock(ftz_main, tasks);
    bool ftz_after = ftz_get();
    ftz_set(false);
#if defined(__x86_64__)
    unsigned short cw = x87_cw();
    x87_set_cw(X87_DEFAULT);
    assert_int_equal(cw, X87_DEFAULT);
#endif
    assert_int_equal(rc, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tasks[i].checks, 6);
    assert_false(ftz_after);
}

static int leave_upward_task(void *arg)
{
    (void)arg;
    assert_int_equal(fesetround(FE_UPWARD), 0);
    ftz_set(true);
    assert_int_equal(ctrio_checkpoint(), 0);
    return 0; /* returns without restoring anything */
}

static int leave_upward_main(void *arg)
{
    int *mode_in_main = arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, leave_upward_task, NULL), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    *mode_in_main = fegetround();
    return 0;
}

/* New: a task that finishes with its own rounding mode and FTZ set does not
 * leak them into the task that runs next, nor into the thread once ctrio_run
 * returns. */
static void test_fp_mode_does_not_leak_from_finished_task(void **state)
{
    (void)state;
    int mode_in_main = -1;
    int rc = run_mock(leave_upward_main, &mode_in_main);
    int after = fegetround();
    bool ftz_after = ftz_get();
    fesetround(FE_TONEAREST);
    ftz_set(false);
    assert_int_equal(rc, 0);
    assert_int_equal(mode_in_main, FE_TONEAREST);
    assert_int_equal(after, FE_TONEAREST);
    assert_false(ftz_after);
}

/* ------------------------------------------------------------------------ */
/* 3. Guard pages do not cap the task count                                  */
/* ------------------------------------------------------------------------ */

#define MANY_STACKS 40000

static int count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -1;
    int n = 0, c;
    while ((c = getc(f)) != EOF)
        if (c == '\n')
            n++;
    fclose(f);
    return n;
}

static int trivial(void *arg)
{
    (void)arg;
    return 0;
}

/* What the library found: a run makes a stack, which settles the mode (a
 * real guard, checked; qemu-user accepts MADV_GUARD_INSTALL and ignores it). */
static bool kernel_has_guard_install(void)
{
    if (ctrio__stack_guard_mode() == 0)
        assert_int_equal(ctrio_run(trivial, NULL), 0);
    return ctrio__stack_guard_mode() > 0;
}

typedef struct many_stacks {
    int maps_before, maps_during;
    size_t live;
    int blocked;
    int spawned;
    int spawn_error; /* the first failed spawn's code */
} many_stacks;

static int block_forever(void *arg)
{
    many_stacks *m = arg;
    m->blocked++;
    int rc = ctrio_sleep_forever();
    m->blocked--;
    return rc == -ECANCELED ? 0 : -1;
}

static int many_stacks_main(void *arg)
{
    many_stacks *m = arg;
    m->maps_before = count_maps();
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    /* A failed spawn stops the loop but not the run: the tasks are still
     * cancelled and the run ends cleanly, and the test asserts afterwards. */
    for (int i = 0; i < MANY_STACKS && !m->spawn_error; i++) {
        int rc = ctrio_start_soon(&n, block_forever, m);
        if (rc != 0)
            m->spawn_error = rc;
        else
            m->spawned++;
    }
    int wrc = ctrio_wait_all_tasks_blocked(0);
    m->maps_during = count_maps();
    m->live = ctrio__tls_run->stacks.live;
    if (wrc == 0 && m->blocked != m->spawned)
        wrc = -EAGAIN;
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    int crc = ctrio_nursery_close(&n, 0);
    return wrc ? wrc : crc ? crc : m->blocked;
}

/* New: 40,000 tasks alive at once with 16 KiB stacks do not add one kernel
 * mapping each (with mprotect guards they would add two, and vm.max_map_count
 * = 65530 would stop the spawns near 32,700): the guard is a
 * MADV_GUARD_INSTALL marker inside the stack's own mapping. */
static void test_guard_pages_do_not_cap_task_count(void **state)
{
    (void)state;
    if (!kernel_has_guard_install()) {
        print_message("no working MADV_GUARD_INSTALL (kernel < 6.13, or an emulator): the "
                      "mprotect fallback is in use, which costs a mapping per guard\n");
        skip();
    }
    many_stacks m = {0};
    ctrio_config cfg = {0};
    cfg.stack_size = 16 * KiB;
    cfg.mock_clock = 1;
    cfg.autojump_threshold = 0;
    int rc = ctrio_run_with(&cfg, many_stacks_main, &m);
    if (m.spawn_error)
        print_message("spawn %d failed: %s\n", m.spawned, ctrio_strerror(m.spawn_error));
    assert_int_equal(m.spawn_error, 0);
    assert_int_equal(rc, 0); /* all were blocked at once, and all were cancelled */
    assert_int_equal(m.spawned, MANY_STACKS);
    assert_true(m.maps_before > 0);
    assert_true(m.live >= MANY_STACKS + 1); /* the main task's too */
    print_message("mappings: %d before, %d with %d tasks alive\n", m.maps_before, m.maps_during,
                  MANY_STACKS);
    assert_true(m.maps_during - m.maps_before < 10000);
}

/* ------------------------------------------------------------------------ */
/* 4. Stack reuse                                                            */
/* ------------------------------------------------------------------------ */

static ctrio__stack *my_stack(void)
{
    return ctrio__tls_run->current->stack;
}

/* Bytes of the current task's stack in use at this frame. */
static size_t __attribute__((noinline)) stack_depth(void)
{
    return (size_t)((char *)my_stack() - (char *)__builtin_frame_address(0));
}

typedef struct deep {
    size_t target; /* recurse until this much stack is in use */
    size_t reached;
    ctrio__stack *stack;
    int bad; /* frames whose contents changed across the yield */
} deep;

static int __attribute__((noinline)) go_deep(deep *d, int level)
{
    volatile unsigned char frame[1024];
    for (size_t i = 0; i < sizeof frame; i += 64)
        frame[i] = (unsigned char)(level + i);
    size_t depth = stack_depth();
    if (depth >= d->target) {
        d->reached = depth;
        /* Another task runs (on another stack) while this one is deep. */
        assert_int_equal(ctrio_checkpoint(), 0);
#if UNDER_ASAN
        /* Leave poison below the deepest frame, as frames a task never
         * returned from would (their redzones): reap_zombie must clear it
         * before the stack serves another task. Nothing of this task runs
         * that deep again. */
        char *fp = __builtin_frame_address(0);
        __asan_poison_memory_region(fp - 8 * KiB, 5 * KiB);
#endif
    } else {
        go_deep(d, level + 1);
    }
    for (size_t i = 0; i < sizeof frame; i += 64)
        if (frame[i] != (unsigned char)(level + i))
            d->bad++;
    return 0;
}

static int deep_task(void *arg)
{
    deep *d = arg;
    d->stack = my_stack();
    return go_deep(d, 0);
}

static int yield_task(void *arg)
{
    (void)arg;
    return ctrio_checkpoint();
}

typedef struct reuse {
    ctrio__stack *stack;
    size_t touched;
    int runs;
} reuse;

/* Use `touched` bytes of stack (alloca: on the real stack even under ASan)
 * and check them back. */
static int touch_task(void *arg)
{
    reuse *u = arg;
    u->stack = my_stack();
    volatile unsigned char *p = alloca(u->touched);
    assert_true((char *)p >= ctrio__stack_lo(u->stack));
    assert_true((char *)p < (char *)u->stack);
    for (size_t i = 0; i < u->touched; i += 256)
        p[i] = (unsigned char)(i >> 8);
    for (size_t i = 0; i < u->touched; i += 256)
        if (p[i] != (unsigned char)(i >> 8))
            return -EIO;
    u->runs++;
    return 0;
}

/* Deeper than the deep task went, and than the poison it leaves (ASan). */
#define REUSE_TOUCH (54 * KiB)

static int stack_reuse_main(void *arg)
{
    (void)arg;
    ctrio__stack_cache *c = &ctrio__tls_run->stacks;
    assert_int_equal(c->stack_size, 64 * KiB);

    /* A deep task, with another task running while it is deep. */
    deep d = {.target = 44 * KiB};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, deep_task, &d), 0);
    assert_int_equal(ctrio_start_soon(&n, yield_task, NULL), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_true(d.reached >= 44 * KiB);
    assert_true(d.reached < 64 * KiB);
    assert_int_equal(d.bad, 0);
    assert_non_null(d.stack);

    /* Both stacks are back in the cache; the next spawn takes one from it
     * (no new stack), and the LIFO gives the most recently freed. */
    size_t live0 = c->live, free0 = c->nfree;
    assert_int_equal(live0, 1); /* the main task's */
    assert_true(free0 >= 2);
    reuse u = {.touched = REUSE_TOUCH};
    for (int i = 0; i < 200; i++) {
        ctrio_nursery_open(&n);
        assert_int_equal(ctrio_start_soon(&n, touch_task, &u), 0);
        assert_int_equal(c->live, live0 + 1);
        assert_int_equal(c->nfree, free0 - 1);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        assert_int_equal(c->live, live0);
        assert_int_equal(c->nfree, free0);
        assert_int_equal(u.runs, i + 1);
    }
    /* The deep task's stack is among the two cached ones: spawn two at once
     * and check one of them got it. */
    reuse u1 = {.touched = REUSE_TOUCH}, u2 = {.touched = REUSE_TOUCH};
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, touch_task, &u1), 0);
    assert_int_equal(ctrio_start_soon(&n, touch_task, &u2), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_true(u1.stack == d.stack || u2.stack == d.stack);
    assert_true(u1.stack != u2.stack);
    assert_int_equal(c->nfree, free0);
    return 0;
}

/* New: a finished task's stack goes back to the cache and the next spawn
 * takes it from there (live/nfree move by one, no new stack); a task that
 * used ~44 KiB of a 64 KiB stack (yielding while deep) is followed by many
 * tasks that use 54 KiB of the same stacks. Under ASan the deep task leaves
 * poison below its deepest frame, as abandoned frames would: the next tasks
 * run clean only thanks to reap_zombie's unpoisoning. */
static void test_stack_reuse_after_deep_task(void **state)
{
    (void)state;
    ctrio_config cfg = {0};
    cfg.stack_size = 64 * KiB;
    cfg.mock_clock = 1;
    cfg.autojump_threshold = 0;
    assert_int_equal(ctrio_run_with(&cfg, stack_reuse_main, NULL), 0);
}

static int record_stack(void *arg)
{
    *(ctrio__stack **)arg = my_stack();
    return 0;
}

static int sequential_reuse_main(void *arg)
{
    (void)arg;
    ctrio__stack *first = NULL, *s = NULL;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, record_stack, &first), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_non_null(first);
    assert_true(first != my_stack());
    for (int i = 0; i < 100; i++) {
        s = NULL;
        ctrio_nursery_open(&n);
        assert_int_equal(ctrio_start_soon(&n, record_stack, &s), 0);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        assert_ptr_equal(s, first);
    }
    return 0;
}

/* New: tasks spawned one after the other all run on the same stack (the
 * LIFO cache hands back the one just freed, pages still warm). */
static void test_sequential_tasks_share_one_stack(void **state)
{
    (void)state;
    assert_int_equal(run_mock(sequential_reuse_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* 5. Trimming the cache when the loop goes idle                             */
/* ------------------------------------------------------------------------ */

#define TRIM_TASKS 2000
#define TRIM_TOUCH (32 * KiB)

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return -1;
    long size = 0, resident = -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

typedef struct trim {
    long rss_base, rss_finished, rss_idle;
    size_t nfree_finished, nfree_idle, untrimmed_finished;
    int runs;
} trim;

static int touch32_task(void *arg)
{
    trim *t = arg;
    volatile unsigned char *p = alloca(TRIM_TOUCH);
    for (size_t i = 0; i < TRIM_TOUCH; i += 512)
        p[i] = (unsigned char)i;
    t->runs++;
    return 0;
}

static int trim_main(void *arg)
{
    trim *t = arg;
    ctrio__stack_cache *c = &ctrio__tls_run->stacks;
    t->rss_base = rss_bytes();
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < TRIM_TASKS; i++)
        assert_int_equal(ctrio_start_soon(&n, touch32_task, t), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    t->rss_finished = rss_bytes();
    t->nfree_finished = c->nfree;
    t->untrimmed_finished = c->untrimmed;
    /* Nothing runnable: the scheduler is about to sleep, and trims. */
    assert_int_equal(ctrio_sleep(0.01), 0);
    t->rss_idle = rss_bytes();
    t->nfree_idle = c->nfree;
    return 0;
}

/* New: 2,000 tasks each touch 32 KiB of stack and finish; their stacks are
 * cached (no memory given back on the way out of a task), and once the loop
 * goes idle the cache keeps a few warm stacks and gives the rest back
 * (MADV_DONTNEED, and munmap past 1024 cached stacks): the resident memory
 * drops by at least half of what the tasks touched. */
static void test_stack_cache_trimmed_when_idle(void **state)
{
    (void)state;
    if (ON_VALGRIND) {
        print_message("under valgrind, RSS is mostly valgrind's own\n");
        skip();
    }
    trim t = {0};
    assert_int_equal(run_real(trim_main, &t), 0);
    assert_int_equal(t.runs, TRIM_TASKS);
    assert_true(t.rss_base > 0 && t.rss_finished > 0 && t.rss_idle > 0);
    long touched = (long)(TRIM_TASKS * TRIM_TOUCH);
    print_message("RSS: %ld KiB at start, %ld KiB after the tasks, %ld KiB once idle "
                  "(stacks cached: %zu then %zu)\n",
                  t.rss_base / 1024, t.rss_finished / 1024, t.rss_idle / 1024, t.nfree_finished,
                  t.nfree_idle);
    /* The pages were really touched and still resident right after... */
    assert_true(t.nfree_finished >= TRIM_TASKS);
    assert_true(t.untrimmed_finished >= TRIM_TASKS);
    assert_true(t.rss_finished - t.rss_base >= touched / 2);
    /* ...and given back once idle. */
    assert_true(t.rss_finished - t.rss_idle >= touched / 2);
    assert_true(t.nfree_idle <= 1024);
    assert_true(t.nfree_idle >= 64);
}

#define MIX_TASKS 3000
typedef struct mix {
    int phase;     /* 0: all started; 1: odd tasks released; 2: even ones use their stacks */
    int deep_ok;   /* even tasks that used 64 KiB of stack after the unmapping */
    long vm_all, vm_trimmed; /* address space with every task alive, and after the trim */
    size_t nfree;  /* stacks cached after the trim */
    ctrio_event release_odd, release_even;
} mix;

static int __attribute__((noinline)) use_stack(size_t bytes)
{
    volatile char *buf = alloca(bytes);
    for (size_t i = 0; i < bytes; i += 512)
        buf[i] = (char)(i >> 9);
    return buf[bytes - 512] == (char)((bytes - 512) >> 9) ? 1 : 0;
}

static int mix_task(void *arg)
{
    mix *m = arg;
    int idx = (int)ctrio__tls_run->current->id;
    if (idx & 1)
        return ctrio_event_wait(&m->release_odd);
    int rc = ctrio_event_wait(&m->release_even);
    if (rc == 0)
        m->deep_ok += use_stack(64 * KiB);
    return rc;
}

static int mix_main(void *arg)
{
    mix *m = arg;
    ctrio__stack_cache *c = &ctrio__tls_run->stacks;
    ctrio_event_init(&m->release_odd);
    ctrio_event_init(&m->release_even);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < MIX_TASKS; i++)
        assert_int_equal(ctrio_start_soon(&n, mix_task, m), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    m->vm_all = vm_size_kib();
    ctrio_event_set(&m->release_odd);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_sleep(0.01), 0); /* idle: the cache is trimmed */
    m->vm_trimmed = vm_size_kib();
    m->nfree = c->nfree;
    ctrio_event_set(&m->release_even);
    return ctrio_nursery_close(&n, 0);
}

/* New: past 1024 cached stacks, the trim unmaps the rest, neighbours in
 * memory in one munmap (one call per slab or more, instead of one per stack:
 * 14 s against 2 s to end a run of a million tasks). Every other task of
 * 3000 finishes, so that the stacks to unmap alternate with live ones in
 * every slab: a merged munmap that reached past a free stack would take a
 * live one with it, and that task would fault when it next uses 64 KiB of
 * its stack. The address space shrinks by the unmapped stacks. */
static void test_stack_trim_unmaps_only_free_stacks(void **state)
{
    (void)state;
    mix m;
    memset(&m, 0, sizeof m);
    assert_int_equal(run_real(mix_main, &m), 0);
    assert_int_equal(m.deep_ok, MIX_TASKS / 2);
    assert_true(m.nfree <= 1024);
    size_t freed = MIX_TASKS / 2 - m.nfree; /* stacks unmapped by the trim */
    print_message("address space: %ld KiB with %d tasks, %ld KiB after the trim "
                  "(%zu stacks unmapped)\n",
                  m.vm_all, MIX_TASKS, m.vm_trimmed, freed);
    assert_true(m.vm_all > 0 && m.vm_trimmed > 0);
    assert_true(m.vm_all - m.vm_trimmed >= (long)(freed * 256));
}

#define SLAB_TASKS 300
typedef struct slab_check {
    uintptr_t low_bits[SLAB_TASKS]; /* task address mod 4096 */
    int blocked;
    int misaligned;     /* stacks not starting and ending on a page boundary */
    size_t slab_stacks; /* the cache's next slab size, once all are started */
    size_t unused;      /* bytes left in the current slab then */
    int unguarded;      /* stacks whose lowest page is not a guard */
    bool batch_guarded; /* the current slab's guards were installed at once */
} slab_check;

static int slab_sleeper(void *arg)
{
    slab_check *sc = arg;
    ctrio__stack *s = ctrio__tls_run->current->stack;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    sc->misaligned += (((uintptr_t)s->map | s->map_size) & (page - 1)) != 0;
    /* see stack.c; valgrind dies of a fault when it reads a guard itself
     * (the path of access), so there the guard mode is checked instead */
    if (!under_valgrind())
        sc->unguarded += !(access(s->map, F_OK) < 0 && errno == EFAULT);
    sc->low_bits[sc->blocked++] = (uintptr_t)ctrio__tls_run->current & 4095;
    return ctrio_sleep_forever() == -ECANCELED ? 0 : -EIO;
}

static int slab_main(void *arg)
{
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < SLAB_TASKS; i++)
        assert_int_equal(ctrio_start_soon(&n, slab_sleeper, arg), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    slab_check *sc = arg;
    sc->slab_stacks = ctrio__tls_run->stacks.slab_stacks;
    sc->unused = (size_t)(ctrio__tls_run->stacks.slab_end - ctrio__tls_run->stacks.slab_next);
    sc->batch_guarded = ctrio__tls_run->stacks.slab_guarded == ctrio__tls_run->stacks.slab_end;
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    return ctrio_nursery_close(&n, 0); /* the nursery's own scope catches it */
}

/* New: new stacks are carved from slabs (one mmap for several stacks, each
 * slot page-aligned, every one with a real guard, installed for the whole
 * slab in one call where the kernel allows), and what a run reserved is all given back when it
 * returns, the unused rest of the last slab included: 300 tasks and the main
 * one leave the slabs 1, 2, 4 ... 32, 32 ... (16 MiB at most) with 18 stacks
 * (4.8 MiB of address space) unused, which must not outlive the run. And the
 * task structures at the tops of the stacks are spread over many offsets
 * within a page (cache colouring), not all at one. */
static void test_stack_slabs_released_and_coloured(void **state)
{
    (void)state;
    slab_check sc = {0};
    assert_int_equal(run_real(slab_main, &sc), 0); /* warm-up: libc's own arenas */
    long before = vm_size_kib();
    memset(&sc, 0, sizeof sc);
    assert_int_equal(run_real(slab_main, &sc), 0);
    long after = vm_size_kib();
    assert_int_equal(sc.blocked, SLAB_TASKS);
    assert_int_equal(sc.misaligned, 0);
    assert_int_equal(sc.unguarded, 0);
    if (under_valgrind()) /* guards by mprotect, which valgrind follows */
        assert_int_equal(ctrio__stack_guard_mode(), -1);
    /* Where this process may install guards on itself with one
     * process_madvise, the library does it a slab at a time. */
    bool batch_works = false;
    if (ctrio__stack_guard_mode() > 0) {
        char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(m != MAP_FAILED);
        struct iovec iov = {m, 4096};
        batch_works = process_madvise(-10001 /* PIDFD_SELF_PROCESS */, &iov, 1,
                                      102 /* MADV_GUARD_INSTALL */, 0) == 4096;
        munmap(m, 4096);
    }
    print_message("guard mode %d; guards a slab at a time: %s (the library: %s)\n",
                  ctrio__stack_guard_mode(), batch_works ? "possible" : "not here",
                  sc.batch_guarded ? "yes" : "no");
    assert_int_equal(sc.batch_guarded, batch_works);
    assert_true(sc.slab_stacks > 1);          /* stacks do come from slabs */
    assert_true(sc.unused >= 4 * 272 * KiB); /* so that the check below sees a leak */
    print_message("address space: %ld KiB before the run, %ld KiB after\n", before, after);
    assert_true(before > 0 && after > 0);
    assert_true(after - before < 1024);
    int offsets = 0;
    for (int i = 0; i < SLAB_TASKS; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = sc.low_bits[j] == sc.low_bits[i];
        offsets += !seen;
    }
    print_message("%d distinct task offsets within a page\n", offsets);
    assert_true(offsets >= 16);
}

/* ------------------------------------------------------------------------ */
/* 6. ctrio_config.stack_size                                                */
/* ------------------------------------------------------------------------ */

typedef struct size_check {
    size_t stack_size; /* what the run's cache says */
    size_t usable;     /* bytes from the task's frame down to the guard */
    int runs;
} size_check;

static int size_task(void *arg)
{
    size_check *sc = arg;
    ctrio__stack *s = my_stack();
    sc->stack_size = ctrio__tls_run->stacks.stack_size;
    sc->usable = (size_t)((char *)__builtin_frame_address(0) - ctrio__stack_lo(s));
    sc->runs++;
    return 0;
}

static int use_200k_task(void *arg)
{
    reuse u = {.touched = 200 * KiB};
    int rc = touch_task(&u);
    *(int *)arg = u.runs;
    return rc;
}

static int default_size_main(void *arg)
{
    size_check *sc = arg;
    int runs = 0;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, size_task, sc), 0);
    assert_int_equal(ctrio_start_soon(&n, use_200k_task, &runs), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(runs, 1);
    return 0;
}

/* New: stack_size = 0 gives the documented default of 256 KiB, and a task
 * can use 200 KiB of it (alloca'ed and written) without crashing. */
static void test_default_stack_size(void **state)
{
    (void)state;
    size_check sc = {0};
    ctrio_config cfg = {0};
    cfg.mock_clock = 1;
    assert_int_equal(ctrio_run_with(&cfg, default_size_main, &sc), 0);
    assert_int_equal(sc.runs, 1);
    assert_int_equal(sc.stack_size, 256 * KiB);
    assert_true(sc.usable > 240 * KiB);
    assert_true(sc.usable < 256 * KiB);
}

/* New: invalid tiny stack sizes are raised to the 16 KiB minimum (stack.c),
 * and sizes are rounded up to whole pages; a trivial task runs on each. */
static void test_tiny_stack_size_raised_to_minimum(void **state)
{
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t asked[] = {1, 4096, 16 * KiB - 1, 16 * KiB + 1};
    for (size_t i = 0; i < sizeof asked / sizeof asked[0]; i++) {
        size_check sc = {0};
        ctrio_config cfg = {0};
        cfg.stack_size = asked[i];
        assert_int_equal(ctrio_run_with(&cfg, size_task, &sc), 0);
        assert_int_equal(sc.runs, 1);
        size_t want = asked[i] < 16 * KiB ? 16 * KiB : asked[i];
        want = (want + page - 1) / page * page;
        assert_int_equal(sc.stack_size, want);
        assert_true(sc.usable > 8 * KiB);
        assert_true(sc.usable < want);
    }
}

/* New: a stack_size that no address space can hold is refused with -EINVAL
 * before anything is set up: near SIZE_MAX the page rounding and the guard
 * used to wrap around to a tiny mapping and the first task crashed (repro
 * d6). Just below the limit the size is taken and the first stack cannot be
 * mapped: an error code (-ENOMEM), no task runs, no crash. */
static void test_huge_stack_size_refused(void **state)
{
    (void)state;
    const size_t refused[] = {SIZE_MAX, SIZE_MAX - 4095, SIZE_MAX / 2, SIZE_MAX / 4 + 1};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        size_check sc = {0};
        ctrio_config cfg = {0};
        cfg.stack_size = refused[i];
        assert_int_equal(ctrio_run_with(&cfg, size_task, &sc), -EINVAL);
        assert_int_equal(sc.runs, 0);
    }
    size_check sc = {0};
    ctrio_config cfg = {0};
    cfg.stack_size = SIZE_MAX / 4;
    /* the kernel says ENOMEM; valgrind's mmap refuses such a length with
     * EINVAL before the kernel sees it */
    int rc = ctrio_run_with(&cfg, size_task, &sc);
    if (rc != -ENOMEM && !(under_valgrind() && rc == -EINVAL))
        fail_msg("stack_size SIZE_MAX / 4: %d (%s)", rc, ctrio_strerror(rc));
    assert_int_equal(sc.runs, 0);
}

/* ------------------------------------------------------------------------ */
/* 7. gdb can backtrace a task                                               */
/* ------------------------------------------------------------------------ */

/* New: gdb, stopped in a task (SIGILL from __builtin_trap), backtraces it
 * through task_entry to ctrio__trampoline, where the CFI ends the unwind
 * cleanly (no "corrupt stack?", no "??" frames past it). Needs gdb; not run
 * under a sanitizer. */
static void test_gdb_backtraces_a_task(void **state)
{
    (void)state;
#if UNDER_ASAN
    skip();
#else
    const char *gdb = NULL;
    static const char *const candidates[] = {"/usr/bin/gdb", "/usr/local/bin/gdb", "/bin/gdb"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (access(candidates[i], X_OK) == 0)
            gdb = candidates[i];
    if (!gdb) {
        print_message("gdb is not installed\n");
        skip();
    }
    if (!can_reexec())
        skip();
    char exe[4096];
    self_exe(exe, sizeof exe);
    char *argv[] = {(char *)gdb,
                    "-nx",
                    "-batch",
                    "-iex",
                    "set debuginfod enabled off",
                    "-ex",
                    "set startup-with-shell off",
                    "-ex",
                    "run",
                    "-ex",
                    "bt",
                    "--args",
                    exe,
                    "--child=trap",
                    NULL};
    static child_result res;
    run_captured(argv, 60, &res);
    if (res.timed_out)
        print_child("gdb", &res);
    assert_false(res.timed_out);
    if (!strstr(res.out, "Program received signal") &&
        (strstr(res.out, "ptrace") || strstr(res.out, "not permitted"))) {
        print_message("gdb cannot trace here:\n%s\n", res.out);
        skip();
    }
    bool ok = strstr(res.out, "SIGILL") && strstr(res.out, "gdb_trap_task") &&
              strstr(res.out, "ctrio__trampoline") && !strstr(res.out, "corrupt stack");
    if (!ok)
        print_child("gdb", &res);
    assert_non_null(strstr(res.out, "SIGILL"));
    assert_non_null(strstr(res.out, "gdb_trap_task"));
    assert_non_null(strstr(res.out, "task_entry"));
    const char *tramp = strstr(res.out, "ctrio__trampoline");
    assert_non_null(tramp);
    assert_null(strstr(res.out, "corrupt stack"));
    /* ctrio__trampoline is the outermost frame: its CFI says the return
     * address is undefined, so gdb shows no garbage frames past it. */
    const char *eol = strchr(tramp, '\n');
    if (eol)
        assert_null(strstr(eol, "\n#"));
#endif
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strncmp(argv[1], "--child=", 8) == 0)
        return child_main(argv[1] + 8);
    const struct CMUnitTest tests[] = {
        TEST(test_stack_overflow_names_task),
        TEST(test_unrelated_segv_not_reported_as_overflow),
        TEST(test_overflow_reported_after_handler_reset),
        TEST(test_rounding_mode_per_task),
        TEST(test_ftz_and_x87_control_per_task),
        TEST(test_fp_mode_does_not_leak_from_finished_task),
        TEST(test_guard_pages_do_not_cap_task_count),
        TEST(test_stack_reuse_after_deep_task),
        TEST(test_sequential_tasks_share_one_stack),
        TEST(test_stack_cache_trimmed_when_idle),
        TEST(test_stack_slabs_released_and_coloured),
        TEST(test_stack_trim_unmaps_only_free_stacks),
        TEST(test_default_stack_size),
        TEST(test_tiny_stack_size_raised_to_minimum),
        TEST(test_huge_stack_size_refused),
        TEST(test_gdb_backtraces_a_task),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
