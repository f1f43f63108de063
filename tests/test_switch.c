/*
 * test_switch.c — the context switch (src/core/switch_*.S) preserves every
 * callee-saved register of a task across its switches away and back.
 *
 * New (not in Trio: Python has no registers to lose). Ports no Trio test;
 * it checks the machinery under all of them, on x86-64 and on AArch64
 * (make test-aarch64 runs it under qemu-user).
 *
 * How: call_with_sentinels() is one asm block that loads a distinct sentinel
 * into every callee-saved register of the ABI, calls a yielding ctrio
 * function *from inside the asm* (so the compiler cannot spill, reload or
 * rematerialise the values around the call: they really are in those
 * registers while the task is switched out), and stores the registers to
 * memory right after the call returns. Two (or three) tasks do this with
 * different sentinels, many times, interleaved: a switch that forgets to save
 * or restore one register hands a task the other task's (or the scheduler's)
 * value, and the comparison fails.
 *   x86-64 (System V): rbx, r12-r15. rbp is callee-saved too, but it may be
 *     the frame pointer of the function holding the asm, so it is left out
 *     (the switch pushes/pops it exactly like rbx; its loss would crash the
 *     caller anyway). No xmm register is callee-saved.
 *   AArch64 (AAPCS64): x19-x28 and d8-d15 (the low 64 bits of v8-v15). x29
 *     (frame pointer) is left out for the same reason as rbp; x30 and sp are
 *     checked implicitly (the call returns to the right place, the stack
 *     pointer saved in the asm frame is found again).
 */
#include "support.h"

#include <fenv.h>
#include <stdbool.h>

#if defined(__x86_64__)
#define NREGS 5 /* rbx r12 r13 r14 r15 */
static const char *const reg_names[NREGS] = {"rbx", "r12", "r13", "r14", "r15"};
#elif defined(__aarch64__)
#define NREGS 18 /* x19-x28, d8-d15 */
static const char *const reg_names[NREGS] = {"x19", "x20", "x21", "x22", "x23", "x24",
                                             "x25", "x26", "x27", "x28", "d8",  "d9",
                                             "d10", "d11", "d12", "d13", "d14", "d15"};
#else
#error "test_switch: no register check for this architecture"
#endif

/* Shared with the asm: the offsets below are spelled out in it. */
struct sentinel_frame {
    int (*fn)(void);     /* offset 0: what the asm calls (it yields) */
    uint64_t in[NREGS];  /* offset 8: loaded into the registers before the call */
    uint64_t out[NREGS]; /* offset 8 + 8 * NREGS: the registers after the call */
    int64_t rc;          /* fn's return value */
};
_Static_assert(offsetof(struct sentinel_frame, fn) == 0, "asm layout");
_Static_assert(offsetof(struct sentinel_frame, in) == 8, "asm layout");
_Static_assert(offsetof(struct sentinel_frame, out) == 8 + 8 * NREGS, "asm layout");
_Static_assert(offsetof(struct sentinel_frame, rc) == 8 + 16 * NREGS, "asm layout");

/* Load f->in into the callee-saved registers, call f->fn(), store the
 * registers into f->out and fn's result into f->rc. noinline: one real frame,
 * whose prologue/epilogue save the registers the asm declares clobbered. */
__attribute__((noinline)) static void call_with_sentinels(struct sentinel_frame *f)
{
#if defined(__x86_64__)
    register struct sentinel_frame *p __asm__("rdi") = f;
    __asm__ volatile(
        /* Step over the red zone (the compiler may keep data there), keep
         * the frame pointer for after the call, align the stack to 16. */
        "leaq -128(%%rsp), %%rsp\n\t"
        "pushq %%rdi\n\t"
        "movq %%rsp, %%rax\n\t"
        "andq $-16, %%rsp\n\t"
        "pushq %%rax\n\t"
        "pushq %%rax\n\t"
        "movq 8(%%rdi), %%rbx\n\t"
        "movq 16(%%rdi), %%r12\n\t"
        "movq 24(%%rdi), %%r13\n\t"
        "movq 32(%%rdi), %%r14\n\t"
        "movq 40(%%rdi), %%r15\n\t"
        "callq *(%%rdi)\n\t"
        "movq (%%rsp), %%rsp\n\t"
        "popq %%rdi\n\t"
        "movq %%rbx, 48(%%rdi)\n\t"
        "movq %%r12, 56(%%rdi)\n\t"
        "movq %%r13, 64(%%rdi)\n\t"
        "movq %%r14, 72(%%rdi)\n\t"
        "movq %%r15, 80(%%rdi)\n\t"
        "movslq %%eax, %%rax\n\t"
        "movq %%rax, 88(%%rdi)\n\t"
        "leaq 128(%%rsp), %%rsp\n\t"
        : "+r"(p)
        :
        : "rax", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "rbx", "r12", "r13", "r14",
          "r15", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
#elif defined(__aarch64__)
    register struct sentinel_frame *p __asm__("x0") = f;
    __asm__ volatile(
        /* Keep the frame pointer on the stack (sp stays 16-byte aligned). */
        "str x0, [sp, #-16]!\n\t"
        "ldp x19, x20, [x0, #8]\n\t"
        "ldp x21, x22, [x0, #24]\n\t"
        "ldp x23, x24, [x0, #40]\n\t"
        "ldp x25, x26, [x0, #56]\n\t"
        "ldp x27, x28, [x0, #72]\n\t"
        "ldp d8, d9, [x0, #88]\n\t"
        "ldp d10, d11, [x0, #104]\n\t"
        "ldp d12, d13, [x0, #120]\n\t"
        "ldp d14, d15, [x0, #136]\n\t"
        "ldr x16, [x0]\n\t"
        "blr x16\n\t"
        "ldr x9, [sp], #16\n\t"
        "stp x19, x20, [x9, #152]\n\t"
        "stp x21, x22, [x9, #168]\n\t"
        "stp x23, x24, [x9, #184]\n\t"
        "stp x25, x26, [x9, #200]\n\t"
        "stp x27, x28, [x9, #216]\n\t"
        "stp d8, d9, [x9, #232]\n\t"
        "stp d10, d11, [x9, #248]\n\t"
        "stp d12, d13, [x9, #264]\n\t"
        "stp d14, d15, [x9, #280]\n\t"
        "sxtw x0, w0\n\t"
        "str x0, [x9, #296]\n\t"
        : "+r"(p)
        :
        : "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
          "x14", "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25",
          "x26", "x27", "x28", "x30", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9",
          "v10", "v11", "v12", "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21",
          "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31", "memory", "cc");
#endif
    (void)p;
}

/* ------------------------------------------------------------------------ */

#define ITERATIONS 2000

struct worker {
    int id;               /* 1, 2, 3: part of every sentinel */
    int (*yield)(void);   /* the yielding call made with the sentinels loaded */
    int iterations;
    int *last_runner;     /* shared: who ran last */
    int interleavings;    /* times another task ran while we were switched out */
    int mismatches;
    char first_error[160];
};

static uint64_t sentinel(int task, int reg, int iter)
{
    /* Distinct per task, register and iteration; high bits set so that no
     * sentinel looks like a small integer or a pointer the code might hold. */
    return 0xC7A5000000000000ull | ((uint64_t)task << 44) | ((uint64_t)reg << 36) |
           ((uint64_t)(uint32_t)iter * 2654435761u % 0xFFFFFFFFull);
}

static int worker_body(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->iterations; i++) {
        struct sentinel_frame f;
        memset(&f, 0, sizeof f);
        f.fn = w->yield;
        for (int r = 0; r < NREGS; r++)
            f.in[r] = sentinel(w->id, r, i);
        f.rc = -12345;
        *w->last_runner = w->id;
        call_with_sentinels(&f);
        if (*w->last_runner != w->id)
            w->interleavings++;
        assert_int_equal(f.rc, 0);
        for (int r = 0; r < NREGS; r++) {
            if (f.out[r] != f.in[r]) {
                if (!w->mismatches)
                    snprintf(w->first_error, sizeof w->first_error,
                             "task %d iteration %d: %s = 0x%016llx, expected 0x%016llx", w->id,
                             i, reg_names[r], (unsigned long long)f.out[r],
                             (unsigned long long)f.in[r]);
                w->mismatches++;
            }
        }
    }
    return 0;
}

struct scenario {
    int ntasks;
    int (*yield)(void);
    struct worker w[3];
    int last_runner;
};

static int scenario_main(void *arg)
{
    struct scenario *s = arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < s->ntasks; i++) {
        struct worker *w = &s->w[i];
        w->id = i + 1;
        w->yield = s->yield;
        w->iterations = ITERATIONS;
        w->last_runner = &s->last_runner;
        assert_int_equal(ctrio_start_soon(&n, worker_body, w), 0);
    }
    return ctrio_nursery_close(&n, 0);
}

static void check_scenario(struct scenario *s)
{
    for (int i = 0; i < s->ntasks; i++) {
        struct worker *w = &s->w[i];
        if (w->mismatches)
            fail_msg("%d register(s) not preserved across a switch; first: %s", w->mismatches,
                     w->first_error);
        /* The check means something only if the tasks really took turns
         * (with the sentinels loaded): all but the last few iterations. */
        assert_true(w->interleavings >= ITERATIONS - 2);
    }
}

/* Yielding calls made from inside the asm. */
static int yield_shielded(void)
{
    return ctrio_cancel_shielded_checkpoint();
}

static int yield_sleep(void)
{
    /* Every task asleep: the switch goes through the scheduler's own stack
     * (which blocks, then the mock clock jumps) instead of task to task. */
    return ctrio_sleep(0.001);
}

static int yield_checkpoint(void)
{
    return ctrio_checkpoint();
}

/* Task to task: two tasks alternate at ctrio_cancel_shielded_checkpoint,
 * each with its own sentinels in every callee-saved register. */
static void test_switch_preserves_callee_saved_task_to_task(void **state)
{
    (void)state;
    struct scenario s;
    memset(&s, 0, sizeof s);
    s.ntasks = 2;
    s.yield = yield_shielded;
    assert_int_equal(run_real(scenario_main, &s), 0);
    check_scenario(&s);
}

/* Through the scheduler: both tasks sleep (mock clock), so every switch goes
 * task -> scheduler -> task. */
static void test_switch_preserves_callee_saved_through_scheduler(void **state)
{
    (void)state;
    struct scenario s;
    memset(&s, 0, sizeof s);
    s.ntasks = 2;
    s.yield = yield_sleep;
    assert_int_equal(run_mock(scenario_main, &s), 0);
    check_scenario(&s);
}

/* Three tasks with plain checkpoints: each resumes after two other tasks
 * (each with its own sentinels) have run. */
static void test_switch_preserves_callee_saved_three_tasks(void **state)
{
    (void)state;
    struct scenario s;
    memset(&s, 0, sizeof s);
    s.ntasks = 3;
    s.yield = yield_checkpoint;
    assert_int_equal(run_real(scenario_main, &s), 0);
    check_scenario(&s);
}

/* ------------------------------------------------------------------------ */
/* The floating-point control state                                          */
/* ------------------------------------------------------------------------ */

struct round_worker {
    int mode;
    int iterations;
    int wrong;
    int seen;
};

static int round_body(void *arg)
{
    struct round_worker *w = arg;
    assert_int_equal(fesetround(w->mode), 0);
    for (int i = 0; i < w->iterations; i++) {
        assert_int_equal(ctrio_cancel_shielded_checkpoint(), 0);
        int now = fegetround();
        if (now != w->mode) {
            w->wrong++;
            w->seen = now;
        }
    }
    fesetround(FE_TONEAREST);
    return 0;
}

static int round_main(void *arg)
{
    struct round_worker *w = arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, round_body, &w[0]), 0);
    assert_int_equal(ctrio_start_soon(&n, round_body, &w[1]), 0);
    return ctrio_nursery_close(&n, 0);
}

/* The switch keeps the floating-point control state per task (x86-64: MXCSR
 * and the x87 control word, whose control bits the SysV ABI makes
 * callee-saved; AArch64: FPCR), reloading it only when it differs: two tasks
 * with different rounding modes each keep theirs. */
static void test_switch_keeps_rounding_mode_per_task(void **state)
{
    (void)state;
    struct round_worker w[2];
    memset(w, 0, sizeof w);
    w[0].mode = FE_TOWARDZERO;
    w[1].mode = FE_UPWARD;
    w[0].iterations = w[1].iterations = 200;
    assert_int_equal(run_real(round_main, w), 0);
    assert_int_equal(fegetround(), FE_TONEAREST);
    for (int i = 0; i < 2; i++)
        if (w[i].wrong)
            fail_msg("task with rounding mode %d saw mode %d after %d switch(es)", w[i].mode,
                     w[i].seen, w[i].wrong);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_switch_preserves_callee_saved_task_to_task),
        TEST(test_switch_preserves_callee_saved_through_scheduler),
        TEST(test_switch_preserves_callee_saved_three_tasks),
        TEST(test_switch_keeps_rounding_mode_per_task),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
