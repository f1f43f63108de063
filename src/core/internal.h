/*
 * internal.h — what the files of src/core share: the run, the task, the
 * intrusive lists, and the small interfaces between the scheduler, the
 * cancel-scope tree, the deadline heap, the stacks and the I/O backend.
 *
 * One run lives per thread (ctrio__tls_run). Everything below is touched only
 * by that thread, except the token (token.c), which other threads reach under
 * its own mutex.
 */
#ifndef CTRIO_INTERNAL_H
#define CTRIO_INTERNAL_H

#include "ctrio.h"
/* The task keeps the counters ctrio_task_checkpoint_counts reports, and the
 * library defines the testing calls: their declarations, with CTRIO_API
 * (default visibility), must be seen where they are defined. */
#include "ctrio_testing.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CTRIO__HIDDEN __attribute__((visibility("hidden")))
#define CTRIO__LIKELY(x) __builtin_expect(!!(x), 1)
#define CTRIO__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- sanitizers --------------------------------------------------------- */
#if defined(__SANITIZE_ADDRESS__)
#define CTRIO__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CTRIO__ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CTRIO__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CTRIO__TSAN 1
#endif
#endif

/* ---- assertions ---------------------------------------------------------- */
/* Invariants are asserted where libuv asserts its own (uv__io_start opens
 * with six): on the wait and reschedule paths, in the deadline heap, in the
 * nursery. On in debug builds (no NDEBUG) and sanitizer builds, where a
 * broken invariant should stop the program loudly at the point it broke (as
 * Go's runtime throws), not corrupt a run queue and crash later; off in
 * release builds, where they would cost a branch on the scheduler's path. */
#if !defined(NDEBUG) || defined(CTRIO__ASAN) || defined(CTRIO__TSAN)
#define CTRIO__ASSERTS 1
#define CTRIO__ASSERT(cond)                                                                        \
    (CTRIO__LIKELY(cond) ? (void)0 : ctrio__assert_fail(#cond, __FILE__, __LINE__, __func__))
#else
#define CTRIO__ASSERTS 0
#define CTRIO__ASSERT(cond) ((void)sizeof(!(cond)))
#endif
/* Log "assertion failed: <cond>" with where, at CTRIO_LOG_ERROR, and abort (log.c). */
CTRIO__HIDDEN _Noreturn void ctrio__assert_fail(const char *cond, const char *file, int line,
                                                const char *fn);

/* ---- intrusive doubly-linked lists -------------------------------------- */
static inline void ctrio__list_init(ctrio__link *l)
{
    l->next = l->prev = l;
}
static inline bool ctrio__list_empty(const ctrio__link *l)
{
    return l->next == l;
}
static inline void ctrio__list_push_back(ctrio__link *head, ctrio__link *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}
static inline void ctrio__list_remove(ctrio__link *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}
#define ctrio__container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- count users, free on the last close --------------------------------- */
/* A handle that one task may close while calls of other tasks are inside it
 * (a socket, a stream, a listener, a memory stream pair): each such call
 * holds it, the close marks it closed, and whichever comes last, the close
 * or the last call's release, frees it. So a call woken by the close (with
 * -EBADF) never finds its handle freed under it. Run's thread only. */
typedef struct ctrio__users {
    unsigned n;  /* holds: calls in progress */
    bool closed; /* no new call gets in; free when n drops to 0 */
} ctrio__users;
static inline void ctrio__users_hold(ctrio__users *u)
{
    u->n++;
}
/* Drop a hold: true if the caller must free the handle now. */
static inline bool ctrio__users_release(ctrio__users *u)
{
    return --u->n == 0 && u->closed;
}
/* Mark the handle closed: true if the caller must free it now (no holds). */
static inline bool ctrio__users_close(ctrio__users *u)
{
    u->closed = true;
    return u->n == 0;
}

/* ---- stacks (stack.c) --------------------------------------------------- */
typedef struct ctrio__stack {
    char *map;        /* start of the stack's slot: the guard is at its bottom */
    size_t map_size;  /* whole slot, guard included */
    size_t guard;     /* guard bytes at the bottom */
    unsigned vg_id;   /* valgrind stack id */
    unsigned trimmed; /* its pages were given back while cached */
    struct ctrio__stack *next_free;
} ctrio__stack;

typedef struct ctrio__stack_cache {
    ctrio__stack *free; /* LIFO of ready stacks */
    size_t nfree;
    size_t stack_size; /* usable bytes, page multiple */
    size_t live;       /* stacks handed out */
    size_t untrimmed;  /* cached stacks put back since the last trim */
    char *slab_next;   /* stacks are carved from slabs: the next unused one */
    char *slab_end;
    char *slab_guarded; /* slots of the slab below this have their guard */
    size_t slab_stacks; /* stacks in the next slab (grows to a cap) */
    unsigned color;     /* cache colour of the last new stack (stack.c) */
} ctrio__stack_cache;

/* -EINVAL for a stack_size above CTRIO__STACK_SIZE_MAX (stack.c; the cache
 * is then untouched). */
CTRIO__HIDDEN int ctrio__stack_cache_init(ctrio__stack_cache *c, size_t stack_size);
CTRIO__HIDDEN void ctrio__stack_cache_fini(ctrio__stack_cache *c);
/* A stack with its metadata stored near its top: returns the descriptor,
 * which lives inside the stack's slot. NULL with errno on failure. */
CTRIO__HIDDEN ctrio__stack *ctrio__stack_get(ctrio__stack_cache *c);
CTRIO__HIDDEN void ctrio__stack_put(ctrio__stack_cache *c, ctrio__stack *s);
CTRIO__HIDDEN bool ctrio__stack_trim_due(const ctrio__stack_cache *c);
CTRIO__HIDDEN void ctrio__stack_trim(ctrio__stack_cache *c);
/* How guards are made: 1 MADV_GUARD_INSTALL, -1 mprotect (each guard splits
 * a mapping: vm.max_map_count caps the number of stacks near 32,700), 0 not
 * known yet (no stack made). */
CTRIO__HIDDEN int ctrio__stack_guard_mode(void);
/* Stack overflow (overflow.c): the SIGSEGV handler that names the task, put
 * back at every run if someone replaced it, and the thread's alternate stack
 * it runs on (saved: what to give back at the run's end). */
CTRIO__HIDDEN void ctrio__stack_guard_install_handler(void);
CTRIO__HIDDEN int ctrio__altstack_enter(void **saved);
CTRIO__HIDDEN void ctrio__altstack_leave(void *saved);
/* Usable stack region: [lo, descriptor). The task struct sits just below the
 * descriptor, near the top of the slot (stack.c). */
static inline char *ctrio__stack_lo(const ctrio__stack *s)
{
    return s->map + s->guard;
}

/* ---- tasks -------------------------------------------------------------- */
enum { CTRIO__RUNNABLE = 1, CTRIO__RUNNING, CTRIO__BLOCKED, CTRIO__DONE };

struct ctrio__task;
typedef struct ctrio__task ctrio__task;
/* Abort function of a blocked task (Trio's abort_fn): undo the wait and
 * return true (the task is then rescheduled with -ECANCELED), or return false
 * and keep waiting (the wait cannot be abandoned). */
typedef bool (*ctrio__abort_fn)(ctrio__task *t);

typedef struct ctrio__start_status {
    ctrio_nursery *old_nursery; /* the temporary nursery in ctrio_start's caller */
    ctrio_nursery *target;      /* where the task moves on started() */
    void *value;
    bool called;
} ctrio__start_status;

struct ctrio__task {
    void *sp; /* saved stack pointer while switched out */
    struct ctrio__run *run;
    ctrio__task *next_runnable;
    ctrio_cancel_scope *scope; /* innermost open scope */
    ctrio__link scope_link;    /* in scope->tasks while blocked (abortably) */
    ctrio_nursery *nursery;    /* the nursery this task is a child of */
    ctrio__link nursery_link;  /* in nursery->children */
    ctrio_fn fn;
    void *arg;
    ctrio__abort_fn abort_fn;
    void *wait_ctx; /* what the blocked task waits on, for its abort_fn */
    int wake_value;
    uint8_t state;
    bool system;
    bool started_called;
    ctrio__start_status *start;
    ctrio_checkpoint_counts counts;
    const char *name;
    uint64_t id;
    ctrio__stack *stack;
    ctrio__link idle_link; /* in run->idle_waiters (wait_all_tasks_blocked) */
    double idle_cushion;
#ifdef CTRIO__ASAN
    void *asan_fake_stack;
    const void *asan_bottom;
    size_t asan_size;
#endif
#ifdef CTRIO__TSAN
    void *tsan_fiber;
#endif
};

/* ---- deadline heap (deadlines.c) ---------------------------------------- */
typedef struct ctrio__heap {
    ctrio_cancel_scope **a; /* 1-based binary min-heap on ->deadline */
    size_t n, cap;
} ctrio__heap;
CTRIO__HIDDEN void ctrio__heap_fini(ctrio__heap *h);
CTRIO__HIDDEN int ctrio__heap_add(ctrio__heap *h, ctrio_cancel_scope *cs);
CTRIO__HIDDEN void ctrio__heap_remove(ctrio__heap *h, ctrio_cancel_scope *cs);
CTRIO__HIDDEN void ctrio__heap_update(ctrio__heap *h, ctrio_cancel_scope *cs);
static inline ctrio_cancel_scope *ctrio__heap_min(const ctrio__heap *h)
{
    return h->n ? h->a[1] : NULL;
}

/* ---- I/O backend (io.h) ------------------------------------------------- */
#include "io.h"

typedef struct ctrio__fdstate {
    ctrio__task *reader, *writer;
    uint8_t registered;
    uint8_t watched; /* the directions in the registration (io.c) */
    uint8_t ready; /* CTRIO__IO_READ / WRITE seen while nobody waited */
    uint8_t drained; /* a short read emptied the receive queue (see io.c) */
    uint8_t special; /* a hang-up, error or urgent data was reported */
    uint32_t gen;    /* the backend tag of the current registration (io.c) */
} ctrio__fdstate;

/* ---- the run ------------------------------------------------------------ */
typedef struct ctrio__run {
    ctrio__task *current;   /* NULL while the scheduler itself runs */
    ctrio__task sched;      /* the scheduler's context (the thread's own stack) */
    ctrio__task *batch;     /* the rest of the batch being run */
    ctrio__task *rq_head, *rq_tail; /* the next batch */
    ctrio__task *zombie;    /* a finished task whose stack waits to be freed */
    ctrio__task *main_task;
    int main_result;
    bool main_done;
    size_t ntasks;          /* live tasks */
    size_t nsystem;         /* live system tasks */
    uint64_t next_id;

    /* clock */
    bool mock;
    double autojump;
    double now;             /* the clock at this turn (mock: the mock time) */
    double mock_offset;     /* unused for real clock */

    ctrio__heap deadlines;
    ctrio_cancel_scope root_scope;   /* the main task's */
    ctrio_cancel_scope system_scope; /* system tasks'; cancelled when main ends */

    ctrio__stack_cache stacks;

    /* I/O */
    ctrio__io io;
    ctrio__fdstate *fds;
    size_t nfds;
    unsigned batches_since_poll;
    double last_poll;
    /* busy turns between clock reads while a poll could wake someone, and
     * the turns since the last read (sched.c, poll_and_clock) */
    unsigned clock_every, turns_since_clock;
    double clock_at; /* when the clock was last read */

    /* threads */
    struct ctrio_token *token;
    ctrio_semaphore thread_limiter; /* to_thread_run_sync: 40, as Trio */
    ctrio_semaphore dns_limiter;    /* name lookups: their own (Trio #10) */

    /* what the layers above keep per run (layer.c) */
    struct ctrio__layer_slot *layers;

    /* where the library's messages go (log.c) */
    ctrio_log_fn log;
    void *log_arg;
    int log_level;

    /* testing */
    ctrio__link idle_waiters; /* sorted by cushion */
    uint64_t run_checkpoints;
    uint64_t inject_at;
    ctrio_cancel_scope *inject_scope;
    bool inject_fired;
    /* the system-call fault switch (fault.c) */
    uint64_t run_syscalls;
    uint64_t fault_at; /* 0: off */
    int fault_err;
    bool fault_fired;
    bool fault_eagain; /* an injected EAGAIN: the next socket wait re-arms */

    void *altstack;

    /* ctrio_run_parallel (parallel.c): the group this run belongs to (NULL
     * in a lone ctrio_run), its index in it, the CPU it is pinned to (-1:
     * not pinned). Set by the run's first task before main starts. */
    struct ctrio__group *group;
    int run_index;
    int run_cpu;
#ifdef CTRIO__ASAN
    const void *asan_main_bottom;
    size_t asan_main_size;
#endif
} ctrio__run;

extern __thread ctrio__run *ctrio__tls_run __attribute__((tls_model("initial-exec")));

static inline ctrio__task *ctrio__current(void)
{
    ctrio__run *r = ctrio__tls_run;
    return r ? r->current : NULL;
}

/* Every system call the library makes on a run's thread goes through
 * CTRIO__SYS (or, for calls that do not return -1, ctrio__sys_fault): it
 * counts the call and, on the one ctrio_testing_fail_syscall_at armed,
 * sets errno and skips it, as if the kernel had failed it. Off, it costs the
 * count and one predictable branch on a field of the run. Calls from other
 * threads (workers, token users) are not counted.
 * CTRIO__SYS makes the call again on EINTR, as Python does since PEP 475: a
 * signal handler that ran is no error of the caller's. CTRIO__SYS_ONCE is
 * for the calls that handle EINTR themselves (connect, epoll_wait). */
CTRIO__HIDDEN bool ctrio__fault_fire(ctrio__run *r);
static inline bool ctrio__sys_fault(void)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r)
        return false;
    r->run_syscalls++;
    return CTRIO__UNLIKELY(r->fault_at != 0) && ctrio__fault_fire(r);
}
#define CTRIO__SYS_ONCE(call) (ctrio__sys_fault() ? -1 : (call))
#define CTRIO__SYS(call)                                                                           \
    __extension__({                                                                                \
        __typeof__(call) sys_r_;                                                                   \
        do                                                                                         \
            sys_r_ = CTRIO__SYS_ONCE(call);                                                        \
        while (sys_r_ == -1 && errno == EINTR);                                                    \
        sys_r_;                                                                                    \
    })

/* A message at a CTRIO_LOG_* level to the run's log hook, or with none (or
 * no run) "ctrio: <message>" to stderr for CTRIO_LOG_ERROR only (log.c). */
CTRIO__HIDDEN void ctrio__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
CTRIO__HIDDEN void ctrio__vlog(int level, const char *fmt, va_list ap);
/* Misuse: log "<what>" at CTRIO_LOG_ERROR and return -EPERM (log.c). */
CTRIO__HIDDEN int ctrio__misuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The current task, or NULL after printing a message naming `fn`. */
CTRIO__HIDDEN ctrio__task *ctrio__no_task(const char *fn);
static inline ctrio__task *ctrio__need_task(const char *fn)
{
    ctrio__task *t = ctrio__current();
    return CTRIO__LIKELY(t != NULL) ? t : ctrio__no_task(fn);
}

/* ---- state of the layers above, per run (layer.c) ----------------------- */
/* A layer above the core names its per-run state by the address of a key of
 * its own, which says the state's size. */
typedef struct ctrio__layer_key {
    size_t size;
} ctrio__layer_key;
typedef struct ctrio__layer_slot ctrio__layer_slot;
/* The run's state for key, NULL if none was made yet. */
CTRIO__HIDDEN void *ctrio__layer_find(ctrio__run *r, const ctrio__layer_key *key);
/* The run's state for key, made zeroed on first use; NULL if out of memory. */
CTRIO__HIDDEN void *ctrio__layer_get(ctrio__run *r, const ctrio__layer_key *key);
/* At the run's end (sched.c): every layer's state is freed. */
CTRIO__HIDDEN void ctrio__layer_free_all(ctrio__run *r);

/* ---- groups of runs (parallel.c) ----------------------------------------- */
/* The port a port-0 SO_REUSEPORT listener on host (NULL: every address)
 * should take in this run's group: 0 if none is published yet (or no group). */
CTRIO__HIDDEN int ctrio__group_port_get(const char *host);
/* Publish port, just bound on port 0 for host; returns the port that stands
 * (port, or the one another run published first: then rebind on it).
 * -ENOMEM if it cannot be recorded. Without a group: port. */
CTRIO__HIDDEN int ctrio__group_port_publish(const char *host, int port);
/* The CPU this run is pinned to, else the one it runs on now; -errno. */
CTRIO__HIDDEN int ctrio__run_cpu(void);

/* ---- scheduler (sched.c) ------------------------------------------------ */
CTRIO__HIDDEN void ctrio__reschedule(ctrio__task *t, int value);
/* Block the current task until ctrio__reschedule; counts a cancel point and a
 * schedule point. If the task is cancelled, abort_fn is tried at once. */
CTRIO__HIDDEN int ctrio__wait(ctrio__abort_fn abort_fn, void *ctx);
/* Block without a cancel point: only ctrio__reschedule wakes the task. */
CTRIO__HIDDEN int ctrio__wait_uncancellable(void *ctx);
/* Put the current task at the end of the run queue and switch away. */
CTRIO__HIDDEN void ctrio__yield(void);
CTRIO__HIDDEN bool ctrio__abort_always(ctrio__task *t);
CTRIO__HIDDEN bool ctrio__abort_never(ctrio__task *t);
/* A cancel point: counts it, and runs the cancel-injection switch. */
CTRIO__HIDDEN void ctrio__count_cancel_point(ctrio__task *t);
CTRIO__HIDDEN ctrio__task *ctrio__spawn(ctrio_nursery *n, ctrio_cancel_scope *scope,
                                        ctrio_fn fn, void *arg, int *err);
/* The cancel injection's switch reached its cancel point (inject.c). */
CTRIO__HIDDEN void ctrio__inject_fire(ctrio__run *r);

/* ---- clock (clock.c) ---------------------------------------------------- */
/* The run's clock: the mock time, or CLOCK_MONOTONIC. */
CTRIO__HIDDEN double ctrio__clock_now(ctrio__run *r);
/* CLOCK_MONOTONIC in seconds, whatever clock the run uses. Inline: the
 * scheduler reads it on busy turns (sched.c, read_clock). */
static inline double ctrio__monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- cancel scopes (cancel.c) ------------------------------------------- */
enum { CTRIO__SCOPE_NEW = 1, CTRIO__SCOPE_OPEN, CTRIO__SCOPE_CLOSED };
/* Is a cancellation visible inside cs (walking up to the first shield)? */
CTRIO__HIDDEN bool ctrio__scope_cancelled(const ctrio_cancel_scope *cs);
CTRIO__HIDDEN bool ctrio__task_cancelled(const ctrio__task *t);
CTRIO__HIDDEN void ctrio__scope_attach(ctrio_cancel_scope *cs, ctrio_cancel_scope *parent,
                                       ctrio__task *owner);
/* Make cs the task's innermost scope (a blocked task moves to its list). */
static inline void ctrio__task_set_scope(ctrio__task *t, ctrio_cancel_scope *cs)
{
    if (CTRIO__UNLIKELY(!ctrio__list_empty(&t->scope_link))) {
        ctrio__list_remove(&t->scope_link);
        ctrio__list_push_back(&cs->tasks, &t->scope_link);
    }
    t->scope = cs;
}
CTRIO__HIDDEN void ctrio__scope_fire(ctrio_cancel_scope *cs);
CTRIO__HIDDEN void ctrio__scope_reparent(ctrio_cancel_scope *cs, ctrio_cancel_scope *parent);
CTRIO__HIDDEN int ctrio__scope_close_checked(ctrio_cancel_scope *cs, int body_rc, bool nursery);

/* ---- nursery (nursery.c) ------------------------------------------------ */
CTRIO__HIDDEN void ctrio__nursery_child_done(ctrio__task *t, int rc);
/* Was the current task launched by ctrio_start, without having called
 * ctrio_task_started yet? (serve_* report their listeners only then.) */
CTRIO__HIDDEN bool ctrio__task_awaits_started(void);

/* ---- I/O (io.c) --------------------------------------------------------- */
/* Start the backend asked for (ctrio_config.backend, else $CTRIO_BACKEND,
 * else the best that starts); -errno with a message if one asked for by
 * name cannot start. */
CTRIO__HIDDEN int ctrio__io_setup(ctrio__run *r, int backend);
CTRIO__HIDDEN void ctrio__io_teardown(ctrio__run *r);
/* Poll the backend, waking tasks; returns the number of events. */
CTRIO__HIDDEN int ctrio__io_poll_and_wake(ctrio__run *r, double timeout);
/* Wait until fd is ready in `dir` (CTRIO__IO_READ/WRITE). Without exact
 * (the socket layer, after an EAGAIN) an edge remembered from before ends
 * the wait; with exact (the public waits, level-triggered as Trio's) the
 * registration is re-armed so that the backend reports the current
 * readiness anew (io.c). */
CTRIO__HIDDEN int ctrio__wait_fd(int fd, unsigned dir, bool exact);
/* The socket layer: a read of fd found the receive queue empty (a short TCP
 * read), so the next read may wait for an edge instead of trying first;
 * take_drained says whether that still holds, and forgets it. */
CTRIO__HIDDEN void ctrio__fd_set_drained(int fd);
/* Perform op on *fdp as Trio's _nonblocking_helper does (io.c). */
CTRIO__HIDDEN ssize_t ctrio__fd_io(const int *fdp, ctrio__op *op);
CTRIO__HIDDEN bool ctrio__fd_take_drained(int fd);
/* A datagram socket's receive returned its pending error (sk_err), which
 * ends what its EPOLLERR edge meant for `drained`: a later error brings an
 * edge of its own. (Not for streams: a FIN or urgent mark stays.) */
CTRIO__HIDDEN void ctrio__fd_clear_special(int fd);
/* fd was just returned by the kernel: forget what the table remembers of
 * an earlier file with that number, and re-arm if it was registered. */
CTRIO__HIDDEN void ctrio__fd_adopt(int fd);
/* ctrio_notify_closing for a descriptor that the caller closes right after:
 * the same wake-ups, without removing the registration (see io.c). */
CTRIO__HIDDEN void ctrio__fd_closing(int fd);

/* ---- token and threads (token.c, thread.c) ------------------------------ */
CTRIO__HIDDEN int ctrio__token_create(ctrio__run *r);
CTRIO__HIDDEN void ctrio__token_close(ctrio__run *r);
CTRIO__HIDDEN void ctrio__token_drain(ctrio__run *r);
/* to_thread_run_sync with the slot taken from `limiter` (a semaphore of the
 * current run). *abandoned (if not NULL) tells whether the job was abandoned:
 * then arg belongs to the worker (on_abandon releases it); otherwise it is
 * the caller's again, whatever the return value. */
CTRIO__HIDDEN int ctrio__to_thread(ctrio_fn fn, void *arg, int flags,
                                   void (*on_abandon)(void *arg, int rc),
                                   ctrio_semaphore *limiter, bool *abandoned);

#endif /* CTRIO_INTERNAL_H */
