/*
 * sched.c — the run: ctrio_run, the scheduler loop, task creation and exit,
 * the context switch with its sanitizer annotations, and the checkpoints.
 * The clock is clock.c's, misuse messages log.c's, the cancel injection of
 * the testing API inject.c's.
 *
 * Scheduling follows Trio: each turn of the loop polls I/O (blocking only
 * when nothing is runnable), reads the clock once, fires the expired
 * deadlines, then runs every runnable task once, as one batch. A task that
 * yields goes to the next batch, so a task looping on ctrio_checkpoint()
 * cannot starve the others, nor timers (checked every turn).
 *
 * I/O is not polled on every turn while tasks are runnable: a poll with a zero
 * timeout is one system call, which would dominate a turn of a few tasks.
 * Instead the loop polls when nothing is runnable, and otherwise at least every
 * CTRIO__POLL_EVERY_BATCHES turns or CTRIO__POLL_EVERY_SECONDS of real time,
 * whichever comes first (Go's scheduler similarly looks at its netpoller from
 * time to time rather than on every switch). Readiness therefore waits at
 * most that long while other tasks keep the CPU busy. And a poll that could
 * wake nobody is not made: while no task waits for a descriptor and no other
 * thread has posted to the run's token, busy turns make no system call (a
 * poll cost 1 us on the VM where bench_core runs, 8 of the 22 ns of a
 * switch between two yielding tasks).
 *
 * A task that gives up the CPU switches straight to the next task of the
 * batch; only at the end of a batch does it switch to the scheduler's context
 * (the thread's own stack). A finished task cannot free the stack it runs on:
 * it leaves itself in run->zombie, and whoever runs next frees it.
 */
#include "internal.h"
#include "token.h"

#include <math.h>
#include <pthread.h>
#include <time.h>

#ifdef CTRIO__ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CTRIO__TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define CTRIO__POLL_EVERY_BATCHES 64
#define CTRIO__POLL_EVERY_SECONDS 100e-6
#define CTRIO__CLOCK_SPACING 25e-6
#define CTRIO__CLOCK_EVERY_MAX 16

__thread ctrio__run *ctrio__tls_run __attribute__((tls_model("initial-exec")));

void ctrio__switch(void **save_sp, void *new_sp);
void ctrio__trampoline(void);

/* ---- context switch ----------------------------------------------------- */

static void task_entry(void *p);

static void context_init(ctrio__task *t, char *top)
{
    uintptr_t sp = ((uintptr_t)top) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* The frame ctrio__switch pops: control words, r15 r14 r13 r12 rbx rbp,
     * then the return address. sp + 64 stays 16-byte aligned at the
     * trampoline's call, as the ABI wants. */
    sp -= 64;
    uint64_t *f = (uint64_t *)sp;
    uint32_t mxcsr = 0x1F80;
    uint16_t fpcw = 0x037F;
    memcpy((char *)f, &mxcsr, 4);
    memcpy((char *)f + 4, &fpcw, 2);
    f[1] = 0;                            /* r15 */
    f[2] = 0;                            /* r14 */
    f[3] = (uint64_t)(uintptr_t)t;       /* r13: the argument */
    f[4] = (uint64_t)(uintptr_t)task_entry; /* r12: the entry */
    f[5] = 0;                            /* rbx */
    f[6] = 0;                            /* rbp */
    f[7] = (uint64_t)(uintptr_t)ctrio__trampoline;
#elif defined(__aarch64__)
    /* x19..x30, d8..d15, FPCR (0: round to nearest, no flush-to-zero, the
     * default a new task starts with, as on x86-64), padding. */
    sp -= 176;
    uint64_t *f = (uint64_t *)sp;
    memset(f, 0, 176);
    f[0] = (uint64_t)(uintptr_t)task_entry; /* x19 */
    f[1] = (uint64_t)(uintptr_t)t;          /* x20 */
    f[11] = (uint64_t)(uintptr_t)ctrio__trampoline; /* x30 */
#else
#error "ctrio: no context switch for this architecture"
#endif
    t->sp = (void *)sp;
}

static void reap_zombie(ctrio__run *r)
{
    ctrio__task *z = r->zombie;
    r->zombie = NULL;
#ifdef CTRIO__TSAN
    __tsan_destroy_fiber(z->tsan_fiber);
#endif
    ctrio__stack *s = z->stack;
#ifdef CTRIO__ASAN
    /* The task never returned from its deepest frames: clear their poison
     * so the next task on this stack starts clean. */
    char *lo = ctrio__stack_lo(s);
    __asan_unpoison_memory_region(lo, (size_t)((char *)s - lo));
#endif
    ctrio__stack_put(&r->stacks, s);
}

static inline void after_switch(ctrio__run *r, ctrio__task *self)
{
#ifdef CTRIO__ASAN
    __sanitizer_finish_switch_fiber(self->asan_fake_stack, NULL, NULL);
#else
    (void)self;
#endif
    if (r->zombie)
        reap_zombie(r);
}

static inline void switch_to(ctrio__run *r, ctrio__task *from, ctrio__task *to)
{
    r->current = to == &r->sched ? NULL : to;
#ifdef CTRIO__ASAN
    __sanitizer_start_switch_fiber(from->state == CTRIO__DONE ? NULL : &from->asan_fake_stack,
                                   to->asan_bottom, to->asan_size);
#endif
#ifdef CTRIO__TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    ctrio__switch(&from->sp, to->sp);
    after_switch(r, from);
}

static void turn_prologue(ctrio__run *r);
static ctrio__task *take_batch(ctrio__run *r);

/* Give the CPU to the next task of the batch. At the end of a batch, when
 * tasks are runnable, the next turn starts right here on the task's stack
 * (polling I/O without blocking when due, firing deadlines): the scheduler's
 * own stack is needed only to block. */
static void switch_away(ctrio__run *r, ctrio__task *self)
{
    ctrio__task *next = r->batch;
    if (next) {
        r->batch = next->next_runnable;
    } else if (r->rq_head) {
        r->current = NULL; /* token callbacks run in the turn, outside any task */
        turn_prologue(r);
        next = take_batch(r);
    }
    if (!next) {
        switch_to(r, self, &r->sched);
        return;
    }
    next->state = CTRIO__RUNNING;
    if (next == self) {
        r->current = self; /* it yielded and is alone: no switch at all */
        return;
    }
    switch_to(r, self, next);
}

/* ---- run queue ---------------------------------------------------------- */

static inline void enqueue(ctrio__run *r, ctrio__task *t)
{
    /* queued twice, the run queue would loop; a finished task has no stack */
    CTRIO__ASSERT(t->state != CTRIO__RUNNABLE && t->state != CTRIO__DONE);
    CTRIO__ASSERT(t->run == r);
    t->state = CTRIO__RUNNABLE;
    t->next_runnable = NULL;
    if (r->rq_tail)
        r->rq_tail->next_runnable = t;
    else
        r->rq_head = t;
    r->rq_tail = t;
}

void ctrio__reschedule(ctrio__task *t, int value)
{
    CTRIO__ASSERT(t->state == CTRIO__BLOCKED); /* woken once per wait */
    ctrio__list_remove(&t->scope_link); /* no longer blocked in its scope */
    t->abort_fn = NULL;
    t->wait_ctx = NULL;
    t->wake_value = value;
    enqueue(t->run, t);
}

void ctrio__yield(void)
{
    ctrio__run *r = ctrio__tls_run;
    ctrio__task *t = r->current;
    CTRIO__ASSERT(t && t->state == CTRIO__RUNNING);
    t->counts.schedule_points++;
    enqueue(r, t);
    switch_away(r, t);
}

bool ctrio__abort_always(ctrio__task *t)
{
    (void)t;
    return true;
}

bool ctrio__abort_never(ctrio__task *t)
{
    (void)t;
    return false;
}

void ctrio__count_cancel_point(ctrio__task *t)
{
    ctrio__run *r = t->run;
    t->counts.cancel_points++;
    r->run_checkpoints++;
    if (CTRIO__UNLIKELY(r->inject_at != 0) && r->run_checkpoints >= r->inject_at)
        ctrio__inject_fire(r);
}

static int wait_impl(ctrio__abort_fn abort_fn, void *ctx, bool cancel_point)
{
    ctrio__run *r = ctrio__tls_run;
    ctrio__task *t = r->current;
    CTRIO__ASSERT(t && t->state == CTRIO__RUNNING && abort_fn);
    /* one wait at a time: a task still in a scope's list is blocked already */
    CTRIO__ASSERT(ctrio__list_empty(&t->scope_link) && !t->abort_fn);
    t->counts.schedule_points++;
    t->abort_fn = abort_fn;
    t->wait_ctx = ctx;
    t->state = CTRIO__BLOCKED;
    if (abort_fn != ctrio__abort_never) /* where a cancellation will look */
        ctrio__list_push_back(&t->scope->tasks, &t->scope_link);
    if (cancel_point) {
        ctrio__count_cancel_point(t);
        /* Trio's _attempt_delivery_of_any_pending_cancel: a task that blocks
         * in a cancelled scope is aborted at once. */
        if (t->abort_fn && ctrio__task_cancelled(t) && abort_fn(t))
            ctrio__reschedule(t, -ECANCELED);
    }
    switch_away(r, t);
    return t->wake_value;
}

int ctrio__wait(ctrio__abort_fn abort_fn, void *ctx)
{
    return wait_impl(abort_fn, ctx, true);
}

int ctrio__wait_uncancellable(void *ctx)
{
    return wait_impl(ctrio__abort_never, ctx, false);
}

/* ---- checkpoints -------------------------------------------------------- */

bool ctrio_in_task(void)
{
    return ctrio__current() != NULL;
}

int ctrio_checkpoint(void)
{
    ctrio__task *t = ctrio__need_task("ctrio_checkpoint");
    if (!t)
        return -EPERM;
    ctrio__yield(); /* the schedule point first, so a deadline that expired
                       meanwhile is seen below (test_yield_briefly_checks_for_timeout) */
    ctrio__count_cancel_point(t);
    return ctrio__task_cancelled(t) ? -ECANCELED : 0;
}

int ctrio_checkpoint_if_cancelled(void)
{
    ctrio__task *t = ctrio__need_task("ctrio_checkpoint_if_cancelled");
    if (!t)
        return -EPERM;
    ctrio__count_cancel_point(t);
    if (ctrio__task_cancelled(t)) {
        ctrio__yield();
        return -ECANCELED;
    }
    return 0;
}

int ctrio_cancel_shielded_checkpoint(void)
{
    ctrio__task *t = ctrio__need_task("ctrio_cancel_shielded_checkpoint");
    if (!t)
        return -EPERM;
    ctrio__yield();
    return 0;
}

ctrio_checkpoint_counts ctrio_task_checkpoint_counts(void)
{
    ctrio__task *t = ctrio__current();
    ctrio_checkpoint_counts none = {0, 0};
    return t ? t->counts : none;
}

void ctrio_task_set_name(const char *name)
{
    ctrio__task *t = ctrio__current();
    if (t)
        t->name = name;
}

/* ---- tasks -------------------------------------------------------------- */

static void task_finish(ctrio__run *r, ctrio__task *t, int rc);

static void task_entry(void *p)
{
    ctrio__task *t = p;
    ctrio__run *r = t->run;
    after_switch(r, t);
    int rc = t->fn(t->arg);
    task_finish(r, t, rc);
}

ctrio__task *ctrio__spawn(ctrio_nursery *n, ctrio_cancel_scope *scope, ctrio_fn fn, void *arg,
                          int *err)
{
    ctrio__run *r = ctrio__tls_run;
    ctrio__stack *s = ctrio__stack_get(&r->stacks);
    if (!s) {
        *err = errno ? -errno : -ENOMEM;
        return NULL;
    }
    ctrio__task *t = (ctrio__task *)(((uintptr_t)s - sizeof(ctrio__task)) & ~(uintptr_t)63);
    memset(t, 0, sizeof *t);
    t->run = r;
    t->fn = fn;
    t->arg = arg;
    t->stack = s;
    t->id = ++r->next_id;
    ctrio__list_init(&t->scope_link);
    ctrio__list_init(&t->nursery_link);
    ctrio__list_init(&t->idle_link);
    context_init(t, (char *)t);
#ifdef CTRIO__ASAN
    t->asan_bottom = ctrio__stack_lo(s);
    t->asan_size = (size_t)((char *)t - ctrio__stack_lo(s));
#endif
#ifdef CTRIO__TSAN
    t->tsan_fiber = __tsan_create_fiber(0);
#endif
    ctrio__task_set_scope(t, scope);
    if (n) {
        t->nursery = n;
        ctrio__list_push_back(&n->children, &t->nursery_link);
        n->nchildren++;
    }
    r->ntasks++;
    enqueue(r, t);
    return t;
}

/* A task returned. Its scopes must all be closed; a task that leaves plain
 * scopes open is told so and fails with -EPERM; one that leaves a nursery open
 * cannot be repaired (the children point into its dead frame): that stops the
 * process with a message. */
static int check_scopes_on_exit(ctrio__task *t, ctrio_cancel_scope *root, int rc)
{
    if (t->scope == root)
        return rc;
    for (ctrio_cancel_scope *s = t->scope; s && s != root; s = s->parent) {
        if (s->nursery) {
            ctrio__misuse("task %llu returned without closing a nursery: aborting",
                          (unsigned long long)t->id);
            abort();
        }
    }
    ctrio__misuse("task %llu returned with cancel scopes still open; closing them",
                  (unsigned long long)t->id);
    while (t->scope != root && t->scope)
        ctrio__scope_close_checked(t->scope, 0, true);
    return -EPERM;
}

static void task_finish(ctrio__run *r, ctrio__task *t, int rc)
{
    ctrio_cancel_scope *root = t->nursery ? &t->nursery->scope
                               : t->system ? &r->system_scope
                                           : &r->root_scope;
    rc = check_scopes_on_exit(t, root, rc);
    ctrio__list_remove(&t->scope_link);
    if (t == r->main_task) {
        r->main_result = rc;
        r->main_done = true;
        r->main_task = NULL;
        ctrio_cancel_scope_cancel(&r->system_scope);
    }
    if (t->system)
        r->nsystem--;
    if (t->nursery)
        ctrio__nursery_child_done(t, rc);
    r->ntasks--;
    t->state = CTRIO__DONE;
    r->zombie = t;
    switch_away(r, t);
    __builtin_unreachable();
}

/* ---- the loop ----------------------------------------------------------- */

/* Make the run queue the batch and return its first task (NULL if empty). */
static ctrio__task *take_batch(ctrio__run *r)
{
    ctrio__task *t = r->rq_head;
    if (!t)
        return NULL;
    r->rq_head = r->rq_tail = NULL;
    r->batch = t->next_runnable;
    return t;
}

static void run_batch(ctrio__run *r)
{
    ctrio__task *t = take_batch(r);
    if (!t)
        return;
    t->state = CTRIO__RUNNING;
    switch_to(r, &r->sched, t);
}

static int fire_deadlines(ctrio__run *r)
{
    int n = 0;
    ctrio_cancel_scope *cs;
    while ((cs = ctrio__heap_min(&r->deadlines)) && cs->deadline <= r->now) {
        ctrio__scope_fire(cs);
        n++;
    }
    return n;
}

static void wake_idle_waiters(ctrio__run *r)
{
    ctrio__link *first = r->idle_waiters.next;
    double cushion = ctrio__container_of(first, ctrio__task, idle_link)->idle_cushion;
    while (!ctrio__list_empty(&r->idle_waiters)) {
        ctrio__task *t = ctrio__container_of(r->idle_waiters.next, ctrio__task, idle_link);
        if (t->idle_cushion != cushion)
            break;
        ctrio__list_remove(&t->idle_link);
        ctrio__reschedule(t, 0);
    }
}

static void autojump(ctrio__run *r)
{
    ctrio_cancel_scope *cs = ctrio__heap_min(&r->deadlines);
    if (cs && cs->deadline > r->now && isfinite(cs->deadline))
        r->now = cs->deadline;
}

enum { IDLE_NONE, IDLE_WAITERS, IDLE_AUTOJUMP };

/* Could a poll wake a task: does one wait for a descriptor, or has another
 * thread posted to the token (a thread's result, run_sync_soon)? */
static inline bool poll_can_wake(ctrio__run *r)
{
    return r->io.waiting_read || r->io.waiting_write ||
           atomic_load_explicit(&r->io.wake_sent, memory_order_relaxed);
}

/* The tasks that a poll made runnable in the middle of a busy run go to the
 * front of the run queue, so that the next batch starts with them: they have
 * waited for their descriptor while the tasks already queued held the CPU,
 * and behind a batch of busy tasks (a flood being echoed) a ping-pong would
 * wait one more batch for nothing. Every queued task still runs once in that
 * batch, so nobody starves; only the order within it changes (Trio shuffles
 * that order at random, and promises none). */
static void front_new_tasks(ctrio__run *r, ctrio__task *old_tail)
{
    ctrio__task *first_new = old_tail ? old_tail->next_runnable : NULL;
    if (!first_new)
        return; /* the queue was empty, or the poll woke nobody */
    old_tail->next_runnable = NULL;
    r->rq_tail->next_runnable = r->rq_head;
    r->rq_head = first_new;
    r->rq_tail = old_tail;
}

/* Read the real clock into r->now. While a poll could wake someone, busy
 * turns read it only every clock_every turns, chosen from the last interval
 * so that the reads come about every CTRIO__CLOCK_SPACING seconds: turns of
 * tasks that yield at once (25 ns) read it every 16th turn, turns of real
 * work (a flood echoed: 100 us and more) every turn. A read costs 25-70 ns
 * on the VM where bench_core runs, more than a switch (12 ns). After turns
 * lengthen suddenly, the first interval may last 16 of them; the next ones
 * keep the bound. The bound was 1 ms at first: with four connections echoing
 * floods of 64 KiB writes beside four ping-pongs (bench/echo_bench.sh,
 * mixed-4-4) the ping-pongs then made 0.4-0.6x the round trips of the raw
 * epoll server; at 100 us, 1.0-1.3x, as a poll costs 1% of a busy turn. */
static void read_clock(ctrio__run *r)
{
    double t = ctrio__monotonic();
    double per_turn = (t - r->clock_at) / (r->turns_since_clock + 1);
    double every = per_turn > 0 ? CTRIO__CLOCK_SPACING / per_turn : CTRIO__CLOCK_EVERY_MAX;
    r->clock_every = every >= CTRIO__CLOCK_EVERY_MAX ? CTRIO__CLOCK_EVERY_MAX
                     : every < 1                     ? 1
                                                     : (unsigned)every;
    r->turns_since_clock = 0;
    r->clock_at = r->now = t;
}

/* Poll I/O (timeout 0, or idle-aware when blocking), read the clock, fire
 * deadlines. Returns the number of I/O events.
 *
 * While tasks are runnable and a poll could wake someone, the clock is read
 * on busy turns too (see read_clock), so that the time bound holds however
 * long a batch takes (tasks spinning between checkpoints, or a flood of large
 * reads and writes being echoed): before, only the batch bound applied while
 * no deadline was pending, and a readiness waited 64 batches (48 ms at the
 * median behind four tasks spinning 50 us each). A poll costs 1 us: the time
 * bound keeps polls to about one per CTRIO__POLL_EVERY_SECONDS, and a run
 * where no poll can wake anyone reads neither clock nor poll. */
static int poll_and_clock(ctrio__run *r, bool runnable, double timeout)
{
    int events = 0;
    bool fresh = false; /* r->now read on this turn */
    bool poll = !runnable;
    ++r->batches_since_poll;
    if (runnable && poll_can_wake(r)) {
        if (!r->mock && ++r->turns_since_clock >= r->clock_every) {
            read_clock(r);
            fresh = true;
        }
        poll = r->batches_since_poll >= CTRIO__POLL_EVERY_BATCHES ||
               (fresh && r->now - r->last_poll >= CTRIO__POLL_EVERY_SECONDS);
    }
    if (poll) {
        ctrio__task *old_tail = r->rq_tail;
        events = ctrio__io_poll_and_wake(r, timeout);
        r->batches_since_poll = 0;
        if (runnable)
            front_new_tasks(r, old_tail);
    }
    /* Otherwise the clock is read once per turn, and only when something
     * compares against it: a pending deadline, or a blocking poll (which
     * starts the time bound). */
    if (!r->mock) {
        if (!fresh && (!runnable || r->deadlines.n))
            read_clock(r);
        if (poll)
            r->last_poll = r->now;
    }
    return events;
}

/* A turn that must not block (tasks are runnable): run from a task's stack. */
static void turn_prologue(ctrio__run *r)
{
    poll_and_clock(r, true, 0);
    fire_deadlines(r);
}

/* A turn on the scheduler's stack: nothing may be runnable, so it may block
 * in the I/O poll until the next deadline, an idle waiter's cushion, or the
 * autojump threshold. */
static void turn(ctrio__run *r)
{
    bool runnable = r->rq_head != NULL;
    double timeout = 0;
    int idle = IDLE_NONE;
    if (!runnable && ctrio__stack_trim_due(&r->stacks))
        ctrio__stack_trim(&r->stacks); /* about to sleep: give memory back now */
    else if (CTRIO__UNLIKELY(r->stacks.nfree > 65536 && r->stacks.untrimmed))
        ctrio__stack_trim(&r->stacks);
    if (!runnable) {
        ctrio_cancel_scope *cs = ctrio__heap_min(&r->deadlines);
        if (!cs)
            timeout = INFINITY;
        else if (r->mock)
            timeout = cs->deadline <= r->now ? 0 : INFINITY;
        else
            timeout = fmax(0, cs->deadline - ctrio__monotonic());
        if (!ctrio__list_empty(&r->idle_waiters)) {
            double c = ctrio__container_of(r->idle_waiters.next, ctrio__task, idle_link)
                           ->idle_cushion;
            if (c < timeout) {
                timeout = c;
                idle = IDLE_WAITERS;
            }
        } else if (r->mock && r->autojump >= 0 && r->autojump < timeout) {
            timeout = r->autojump;
            idle = IDLE_AUTOJUMP;
        }
    }
    int events = poll_and_clock(r, runnable, timeout);
    if (fire_deadlines(r))
        idle = IDLE_NONE;
    if (idle != IDLE_NONE && !r->rq_head && events == 0) {
        if (idle == IDLE_WAITERS)
            wake_idle_waiters(r);
        else
            autojump(r);
    }
    run_batch(r);
}

static void scope_root_init(ctrio_cancel_scope *cs)
{
    memset(cs, 0, sizeof *cs);
    cs->deadline = INFINITY;
    ctrio__scope_attach(cs, NULL, NULL);
    cs->state = CTRIO__SCOPE_OPEN;
}

static void sched_context_init(ctrio__run *r)
{
    r->sched.run = r;
    r->sched.state = CTRIO__RUNNING;
#ifdef CTRIO__ASAN
    pthread_attr_t attr;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &addr, &size);
        pthread_attr_destroy(&attr);
    }
    r->sched.asan_bottom = addr;
    r->sched.asan_size = size;
#endif
#ifdef CTRIO__TSAN
    r->sched.tsan_fiber = __tsan_get_current_fiber();
#endif
}

/* Turn until every task has ended and the token is closed; main's result. */
static int run_loop(ctrio__run *r)
{
    for (;;) {
        if (r->ntasks == 0) {
            ctrio__token_close(r); /* may start system tasks: loop on if so */
            if (r->ntasks == 0 && !r->rq_head)
                break;
        }
        turn(r);
    }
    return r->main_result;
}

int ctrio_run_with(const ctrio_config *cfg, ctrio_fn main_fn, void *arg)
{
    static const ctrio_config defaults = {0};
    if (!cfg)
        cfg = &defaults;
    if (!main_fn)
        return -EINVAL;
    if (ctrio__tls_run)
        return ctrio__misuse("ctrio_run called inside a run on the same thread");
    ctrio__run *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    int rc;
    r->mock = cfg->mock_clock != 0;
    r->autojump = cfg->autojump_threshold;
    r->log = cfg->log;
    r->log_arg = cfg->log_arg;
    r->log_level = cfg->log_level;
    r->now = r->mock ? 0.0 : ctrio__monotonic();
    r->last_poll = r->clock_at = r->now;
    r->clock_every = 1;
    r->run_cpu = -1; /* not pinned (parallel.c pins the runs of a group) */
    if ((rc = ctrio__stack_cache_init(&r->stacks, cfg->stack_size)) < 0)
        goto run;
    scope_root_init(&r->root_scope);
    scope_root_init(&r->system_scope);
    ctrio__list_init(&r->idle_waiters);
    ctrio_semaphore_init(&r->thread_limiter, 40, 0);
    ctrio_semaphore_init(&r->dns_limiter, 20, 0);
    sched_context_init(r);
    ctrio__tls_run = r; /* a backend that cannot start says so through cfg's log hook */
    rc = ctrio__io_setup(r, cfg->backend);
    ctrio__tls_run = NULL;
    if (rc < 0)
        goto stacks;
    if ((rc = ctrio__token_create(r)) < 0)
        goto io;
    ctrio__stack_guard_install_handler();
    ctrio__altstack_enter(&r->altstack);
    ctrio__tls_run = r;
    r->main_task = ctrio__spawn(NULL, &r->root_scope, main_fn, arg, &rc);
    if (r->main_task)
        rc = run_loop(r);
    else
        ctrio__token_close(r);
    /* One exit, in the reverse order of the making (Redis and libdill's
     * ladder): each label undoes what was made before its goto. */
    ctrio__tls_run = NULL;
    ctrio__altstack_leave(r->altstack);
    ctrio__layer_free_all(r);
    ctrio__heap_fini(&r->deadlines);
io:
    ctrio__io_teardown(r);
stacks:
    ctrio__stack_cache_fini(&r->stacks);
run:
    free(r);
    return rc;
}

int ctrio_run(ctrio_fn main_fn, void *arg)
{
    return ctrio_run_with(NULL, main_fn, arg);
}

/* ---- wait_all_tasks_blocked ------------------------------------------- */

static bool idle_abort(ctrio__task *t)
{
    ctrio__list_remove(&t->idle_link);
    return true;
}

int ctrio_wait_all_tasks_blocked(double cushion)
{
    ctrio__task *t = ctrio__need_task("ctrio_wait_all_tasks_blocked");
    if (!t)
        return -EPERM;
    if (!(cushion >= 0))
        return -EINVAL;
    ctrio__run *r = t->run;
    t->idle_cushion = cushion;
    ctrio__link *pos = r->idle_waiters.next;
    while (pos != &r->idle_waiters &&
           ctrio__container_of(pos, ctrio__task, idle_link)->idle_cushion <= cushion)
        pos = pos->next;
    ctrio__list_push_back(pos, &t->idle_link); /* insert before pos */
    return ctrio__wait(idle_abort, NULL);
}
