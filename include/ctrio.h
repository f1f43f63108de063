/*
 * ctrio.h — Trio's structured concurrency and trio.socket, in C.
 *
 * This header is the whole API a program serving with ctrio needs; what only
 * tests need (trio.testing: mock clock jumps, checkpoint counters, fault
 * injection, memory streams, the fake network) is in ctrio_testing.h, TLS in
 * ctrio_tls.h. Every call is documented where it is declared. Conventions (see README.md for the mapping from Trio's names):
 *
 *  - Every call returns >= 0 on success and a negative number on failure:
 *    -errno for system errors, or a CTRIO_E... code for the few failures that
 *    have no errno. ctrio_strerror() names every one.
 *      -ECANCELED  Trio's Cancelled: unwind and return it to your caller.
 *      -EBADF      ClosedResourceError: the object was closed by this side.
 *      -EBUSY      BusyResourceError: another task already waits for this.
 *      -ETIMEDOUT  TooSlowError (the fail_* scopes).
 *      -EINVAL     ValueError/TypeError: an argument out of range.
 *      -EPERM      RuntimeError: a call in the wrong state or place.
 *  - Every blocking call is a checkpoint: it returns -ECANCELED without doing
 *    anything when the task is already cancelled, and yields to the scheduler
 *    even when it could finish at once. Non-blocking calls never yield.
 *  - Scopes and nurseries live on the caller's stack: opening and closing one
 *    allocates nothing.
 *  - Time is double seconds on the run's clock; deadlines are absolute
 *    ctrio_current_time() values; INFINITY means none.
 *  - One ctrio_run per thread. Only ctrio_token_* and ctrio_from_thread_run,
 *    and the calls on a shared channel (ctrio_open_shared_channel), may be
 *    called from another thread.
 *  - NULL, one rule for every call: a NULL where a handle (nursery, scope,
 *    event, lock, semaphore, socket, stream, ...), a required argument or a
 *    required callback is needed is never dereferenced nor called. Calls that
 *    return int or ssize_t return -EINVAL for it (before any checkpoint);
 *    void calls do nothing; queries return a neutral value: false, 0, NULL,
 *    INFINITY (ctrio_cancel_scope_deadline), all-zero statistics, -EINVAL
 *    for the socket's family/type/protocol, -1 for its fileno. So a NULL
 *    given to an open or init call makes the matching close return -EINVAL.
 *    Outputs and arguments documented as optional ("may be NULL") may be.
 *    In an operations table (ctrio_socket_ops, ctrio_stream_ops,
 *    ctrio_listener_ops) a NULL entry means "not supported": the call
 *    returns -EOPNOTSUPP (is_readable: false; close: nothing to release, 0). In a hook (ctrio_socket_factory,
 *    ctrio_hostname_resolver) a NULL entry means the default behaviour.
 */
#ifndef CTRIO_H
#define CTRIO_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CTRIO_API __attribute__((visibility("default")))
#else
#define CTRIO_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

/* The version of this header: MAJOR.MINOR.PATCH, the same as CMake's
 * project(VERSION) (tests/test_version.c checks it). README "Versions and
 * ABI" says what each part promises: a MINOR release only adds, a PATCH
 * release changes no interface, an incompatible change is a new MAJOR (while
 * MAJOR is 0, a new MINOR) and a new SONAME. */
#define CTRIO_VERSION_MAJOR 0
#define CTRIO_VERSION_MINOR 1
#define CTRIO_VERSION_PATCH 0
/* One number that grows with each release, libuv's UV_VERSION_HEX:
 * 0xMMmmpp (0.1.0 is 0x000100), for #if CTRIO_VERSION_HEX >= 0x000200. */
#define CTRIO_VERSION_HEX                                                                         \
    ((CTRIO_VERSION_MAJOR << 16) | (CTRIO_VERSION_MINOR << 8) | CTRIO_VERSION_PATCH)
#define CTRIO_VERSION_STRINGIFY_(x) #x
#define CTRIO_VERSION_STRINGIFY(x) CTRIO_VERSION_STRINGIFY_(x)
#define CTRIO_VERSION_STRING                                                                      \
    CTRIO_VERSION_STRINGIFY(CTRIO_VERSION_MAJOR)                                                  \
    "." CTRIO_VERSION_STRINGIFY(CTRIO_VERSION_MINOR) "." CTRIO_VERSION_STRINGIFY(                 \
        CTRIO_VERSION_PATCH)

/* The version of the library the program runs against, which may be newer
 * than the header it was built with (a shared library updated since):
 * "MAJOR.MINOR.PATCH", a static string, never NULL; and the same as
 * CTRIO_VERSION_HEX. A program built with an older header works with a
 * library of the same MAJOR (of the same MINOR while MAJOR is 0) and a
 * greater or equal version hex; the dynamic loader refuses another MAJOR by
 * its SONAME. Need no run; any thread. */
CTRIO_API const char *ctrio_version(void);
CTRIO_API unsigned ctrio_version_hex(void);

/* Room to change without breaking the ABI. A struct the caller allocates
 * (a nursery, a scope, an event, a config, an options struct, an operations
 * table) has its size compiled into the caller, so a field added to it would
 * be read or written past the caller's storage by a newer library. Each ends
 * with libuv's reserved words instead: four pointer-sized slots (four
 * function pointers in an operations table), where a later minor release
 * puts new fields without changing the size or any offset, as an anonymous
 * union over them: union { void *reserved[4]; struct { int x; }; } (the
 * form abidiff, tests/abi_check.sh, knows to be harmless). Chosen over a
 * size field checked at run time because that needs every caller to set it
 * (or every open call to become a macro passing sizeof) and stays in the API
 * for good; four words cost 32 bytes of stack. The rules for callers:
 *  - a struct the library initializes (ctrio_nursery_open,
 *    ctrio_cancel_scope_init, ctrio_event_init...): nothing to do;
 *  - a struct the caller fills (ctrio_config, ctrio_tcp_listen_options,
 *    ctrio_socket_ops...): zero it whole (= {0}, or designated initializers,
 *    which zero the rest) so that its reserved slots are 0 (NULL), which is
 *    what every field added there will take as its default.
 * Structs returned by value (statistics) have no room: a new figure is a new
 * call. */
#define CTRIO_RESERVED_WORDS 4

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/* Resolver failures: far below every errno value (errno values are < 4096),
 * one per EAI_* code of getaddrinfo(3). */
#define CTRIO_EAI_BASE (-20000)
#define CTRIO_EAI_BADFLAGS (CTRIO_EAI_BASE - 1)
#define CTRIO_EAI_NONAME (CTRIO_EAI_BASE - 2)
#define CTRIO_EAI_AGAIN (CTRIO_EAI_BASE - 3)
#define CTRIO_EAI_FAIL (CTRIO_EAI_BASE - 4)
#define CTRIO_EAI_FAMILY (CTRIO_EAI_BASE - 6)
#define CTRIO_EAI_SOCKTYPE (CTRIO_EAI_BASE - 7)
#define CTRIO_EAI_SERVICE (CTRIO_EAI_BASE - 8)
#define CTRIO_EAI_MEMORY (CTRIO_EAI_BASE - 10)
#define CTRIO_EAI_OVERFLOW (CTRIO_EAI_BASE - 12)
#define CTRIO_EAI_NODATA (CTRIO_EAI_BASE - 5)
#define CTRIO_EAI_ADDRFAMILY (CTRIO_EAI_BASE - 9)
#define CTRIO_EAI_SYSTEM (CTRIO_EAI_BASE - 11) /* never returned: EAI_SYSTEM is -errno */
#define CTRIO_EAI_IDN_ENCODE (CTRIO_EAI_BASE - 105) /* a name IDNA cannot encode */

/* TLS failures (ctrio_tls.h, libctrio_tls), below the resolver's. Each breaks
 * the stream; ctrio_tls_stream_error gives OpenSSL's reason. */
#define CTRIO_ETLS_BASE (-21000)
#define CTRIO_ETLS_VERIFY (CTRIO_ETLS_BASE - 1)    /* the peer's certificate or name did not verify */
#define CTRIO_ETLS_PROTOCOL (CTRIO_ETLS_BASE - 2)  /* handshake failure, an alert, a bad record */
#define CTRIO_ETLS_TRUNCATED (CTRIO_ETLS_BASE - 3) /* transport EOF without close_notify */

/* A text for any return code of this library: for -errno the system's text
 * (glibc's strerror: ctrio_strerror(-ECANCELED) is "Operation canceled",
 * ctrio_strerror(-ETIMEDOUT) "Connection timed out"), for CTRIO_EAI_* the
 * resolver failure under its name ("CTRIO_EAI_NONAME: name or service not
 * known"), likewise for CTRIO_ETLS_*, "success" for rc >= 0, "unknown error code" for the rest. Never
 * NULL; the string is static (thread-safe, never overwritten).
 * A -errno value reads the same whether the kernel or the library returned
 * it: the library's meanings are the Conventions above. To tell the
 * library's -EPERM (misuse: the calls that list it, in the state they name)
 * from a kernel's (a socket call refused: socket(AF_PACKET) without
 * CAP_NET_RAW, a firewall rule on connect): misuse outside a task and most
 * other misuse also log a CTRIO_LOG_ERROR message naming the call (stderr by
 * default; see ctrio_config.log); a kernel's error never logs anything. */
CTRIO_API const char *ctrio_strerror(int rc);

/* ------------------------------------------------------------------------ */
/* 1. The run, tasks, nurseries                                              */
/* ------------------------------------------------------------------------ */

/* A task: returns 0 or a negative error code. */
typedef int (*ctrio_fn)(void *arg);

/* The levels of the library's messages (Python logging's numbers, which
 * Trio's messages go through). ERROR: misuse (a call in the wrong state or
 * place, then -EPERM or an abort). WARNING: a condition the library works
 * around, as ctrio_serve_listeners's "accept: Too many open files; retrying
 * in 100 ms" (at most one a second per listener, then with the number left
 * out). INFO and DEBUG: none yet. */
#define CTRIO_LOG_DEBUG 10
#define CTRIO_LOG_INFO 20
#define CTRIO_LOG_WARNING 30
#define CTRIO_LOG_ERROR 40
/* A log hook: msg is one line, without "ctrio: " or a newline, valid during
 * the call only. It is called on the run's thread, sometimes inside a task:
 * it must not block, nor call ctrio. */
typedef void (*ctrio_log_fn)(int level, const char *msg, void *arg);

/* The I/O backends (issue #11). Every behaviour is the same on each; they
 * differ in how many system calls they make. */
#define CTRIO_BACKEND_DEFAULT 0  /* $CTRIO_BACKEND if set ("epoll", "io_uring"), else the best
                                    backend that starts here (today: epoll) */
#define CTRIO_BACKEND_EPOLL 1    /* readiness: epoll, edge-triggered */
#define CTRIO_BACKEND_IO_URING 2 /* completions: io_uring (Linux 6.1 and later) */

typedef struct ctrio_config {
    size_t stack_size;         /* each task's stack; 0 = default (256 KiB); raised to
                                  16 KiB, rounded up to pages; above SIZE_MAX / 4:
                                  ctrio_run_with returns -EINVAL */
    int mock_clock;            /* nonzero: trio.testing.MockClock, starting at 0.0
                                  (ctrio_mock_clock_jump: ctrio_testing.h) */
    double autojump_threshold; /* mock clock only: jump to the next deadline once every
                                  task has been blocked this long (real seconds;
                                  0 = at once, < 0 = never) */
    /* Where the library's messages go during this run. NULL (the default):
     * CTRIO_LOG_ERROR messages (misuse) to stderr as "ctrio: <msg>\n", the
     * others dropped; the same applies outside any run (misuse with no run on
     * the thread), and on other threads. Otherwise log(level, msg, log_arg)
     * for every message of level >= log_level (0: all). The library writes
     * nothing else to stderr but a task's stack overflow report, just before
     * abort(), from the SIGSEGV handler where no hook may run. */
    ctrio_log_fn log;
    void *log_arg;
    int log_level;
    /* CTRIO_BACKEND_*. A backend asked for by name (here, or by
     * $CTRIO_BACKEND when this is CTRIO_BACKEND_DEFAULT) that cannot start
     * (io_uring refused by a seccomp filter, kernel.io_uring_disabled, an old
     * kernel) makes ctrio_run_with fail with its -errno and a CTRIO_LOG_ERROR
     * message; an unknown one with -EINVAL. The default falls back silently. */
    int backend;
    /* ctrio_run_parallel only: nonzero leaves each run's thread free to run
     * on any CPU this process may use; 0 (the default) pins run i to the
     * i-th of those CPUs (wrapping around when there are more runs). */
    int unpinned;
    void *reserved[CTRIO_RESERVED_WORDS]; /* 0: see "Room to change" above */
} ctrio_config;

/* trio.run: runs main(arg) as the first task of a new run on this thread and
 * returns its result once it and every task it started have finished.
 * Returns -EPERM if this thread already runs a ctrio_run, -ENOMEM (or another
 * -errno) if the run could not be set up (-ENOMEM too when not even the first
 * task's stack can be mapped). */
CTRIO_API int ctrio_run(ctrio_fn main, void *arg);

/* ctrio_run with a configuration (cfg may be NULL: all defaults; see
 * ctrio_config for each field): runs main(arg) as the first task of a new
 * run on this thread and returns its result once every task has finished.
 * Returns as ctrio_run: -EINVAL for a NULL main, a stack_size above
 * SIZE_MAX / 4 or an unknown backend; -EPERM if this thread already runs a
 * run; the backend's -errno if the one asked for cannot start; -ENOMEM. */
CTRIO_API int ctrio_run_with(const ctrio_config *cfg, ctrio_fn main, void *arg);

/* The name of the backend the current run polls with (ctrio_config.backend,
 * $CTRIO_BACKEND): returns "epoll" or "io_uring", a static string; NULL
 * outside a run. Not a checkpoint; for logs and for tests that run on each. */
CTRIO_API const char *ctrio_current_backend(void);
/* All cores (SPEC 12): nthreads runs on nthreads new threads (0: one per
 * CPU this process may use, from sched_getaffinity), each a ctrio_run_with(cfg)
 * running main(arg) as its first task, run i pinned to one CPU (see
 * ctrio_config.unpinned). No main starts before every run exists. Returns
 * once every run has ended: 0, or the first failure (the failing run's main
 * return value), which also cancels every other run's main scope, as the
 * first failing child of a Trio nursery cancels its siblings. After the group
 * was cancelled (a failure or ctrio_cancel_parallel_group), a run that ends
 * with -ECANCELED is no failure. Tasks never move between runs: objects of
 * one run (sockets, scopes, events) are used by its tasks only; runs talk
 * through tokens (ctrio_token_run_sync_soon, ctrio_from_thread_run).
 * The calling thread runs no run: it waits, its CPU affinity untouched.
 * Threads inherit the caller's signal mask: to stop the group on a signal,
 * block it in main() before this call, wait for it in one task of one run
 * (ctrio_wait_signal), then call ctrio_cancel_parallel_group().
 * -EINVAL for a NULL main or nthreads < 0; -EPERM inside a run; if thread k
 * cannot be made (or run k cannot be set up), the runs already started end
 * without running main and the call returns that -errno (-EAGAIN...). */
CTRIO_API int ctrio_run_parallel(int nthreads, const ctrio_config *cfg, ctrio_fn main, void *arg);
/* ctrio_run_parallel, keeping every run's result: results[i] (nthreads
 * entries; nthreads must then be > 0, else -EINVAL) is what run i's
 * ctrio_run_with returned: its main's result, -ECANCELED for a run the group
 * cancelled, or the start's error for a run that never started. The return
 * value is ctrio_run_parallel's (the first failure), so that every error of
 * the group is readable, as Trio's nursery keeps every exception. */
CTRIO_API int ctrio_run_parallel_results(int nthreads, const ctrio_config *cfg, ctrio_fn main,
                                         void *arg, int *results);
/* This run's index in its ctrio_run_parallel group: returns 0 .. nthreads-1
 * (run i is pinned to the i-th CPU unless ctrio_config.unpinned); 0 in a
 * lone ctrio_run; -EPERM outside a run. Not a checkpoint: use it to pick the
 * run's share of work or a per-run slot of an array. */
CTRIO_API int ctrio_current_run_index(void);
/* Cancel the main scope of every run of this run's group, from any task of
 * any of them (in a lone run: its own main scope). Not a checkpoint; returns
 * 0, or -EPERM outside a run. The group then returns 0 unless a run failed
 * with something other than -ECANCELED. */
CTRIO_API int ctrio_cancel_parallel_group(void);

/* Give the current task a name (Trio's task name, set at spawn), shown in
 * stack-overflow reports and by debuggers. The string is not copied: it must
 * outlive the task. NULL clears the name; outside a task it does nothing.
 * Not a checkpoint; nothing to return. */
CTRIO_API void ctrio_task_set_name(const char *name);

/* The cancel scope: Trio's CancelScope. Caller-allocated (usually on the
 * stack); fields are private. */
typedef struct ctrio_cancel_scope ctrio_cancel_scope;

/* Internal: a doubly-linked list node. Private. */
typedef struct ctrio__link {
    struct ctrio__link *next, *prev;
} ctrio__link;

struct ctrio_cancel_scope {
    /* private */
    struct ctrio_cancel_scope *parent;
    struct ctrio__task *owner;
    ctrio__link children;   /* scopes opened directly inside this one */
    ctrio__link child_link; /* our node in parent->children */
    ctrio__link tasks;      /* tasks whose innermost scope is this one */
    double deadline;
    size_t heap_index; /* position in the deadline heap; 0 = not in it */
    uint8_t cancel_called, cancelled_caught, shield, fail, state, nursery;
    void *reserved[CTRIO_RESERVED_WORDS];
};

/* The failures a nursery keeps (ctrio_nursery_error). Trio keeps every one
 * in its ExceptionGroup; a nursery lives on the caller's stack and allocates
 * nothing, so it keeps the codes of the first eight (the first is what
 * ctrio_nursery_close returns: the later ones are most often what followed
 * from it) and counts all. The number is part of the nursery's layout:
 * changing it is an incompatible release (README "Versions and ABI"). */
#define CTRIO_NURSERY_MAX_ERRORS 8

/* The nursery: Trio's Nursery. Caller-allocated; fields are private. */
typedef struct ctrio_nursery {
    /* private */
    ctrio_cancel_scope scope;
    struct ctrio__task *parent;
    ctrio__link children;
    size_t nchildren;
    size_t pending_starts;
    int first_error;
    int saw_cancelled;
    size_t nerrors; /* all failures seen, including those past the array */
    int errors[CTRIO_NURSERY_MAX_ERRORS];
    uint8_t closed, parent_waiting;
    void *reserved[CTRIO_RESERVED_WORDS];
} ctrio_nursery;

/* Open a nursery in the current task (`async with trio.open_nursery()`):
 * children started in it with ctrio_start_soon or ctrio_start run until
 * ctrio_nursery_close returns, which every open must be paired with, in the
 * same task, scopes opened since closed first. The nursery's cancel scope is
 * opened inside the caller's current scope. Not a checkpoint; allocates
 * nothing. Outside a task a message is logged, the nursery is left closed
 * (ctrio_start_soon returns -EPERM) and ctrio_nursery_close returns -EPERM. */
CTRIO_API void ctrio_nursery_open(ctrio_nursery *n);

/* nursery.start_soon: start fn(arg) as a child task. It does not run until
 * the caller's next checkpoint. Not a checkpoint. Returns 0, -EPERM if the
 * nursery is closed (or closing with no children left, as in Trio), -ENOMEM
 * if no stack could be had, -EINVAL for a NULL fn. Children may be started
 * while the parent waits in ctrio_nursery_close as long as one still runs. */
CTRIO_API int ctrio_start_soon(ctrio_nursery *n, ctrio_fn fn, void *arg);

/* nursery.start: run fn(arg) right here (as a new task, under the caller's
 * cancel scopes) until it calls ctrio_task_started(value); then move it into
 * nursery n and return 0 with *started_value = value (started_value may be
 * NULL). If fn returns before calling ctrio_task_started, returns its error,
 * or -EPERM if it returned 0. A checkpoint: in a cancelled scope it returns
 * -ECANCELED once fn has returned 0 (started() is then a no-op that leaves
 * fn running here, and its value is ignored, as in Trio). */
CTRIO_API int ctrio_start(ctrio_nursery *n, ctrio_fn fn, void *arg, void **started_value);

/* task_status.started(value): called by a task launched with ctrio_start.
 * Returns -EPERM when called twice or by a task that ctrio_start did not
 * launch. If the ctrio_start that launched the task was cancelled, the task
 * stays where it is and this is a no-op returning 0 (as in Trio). */
CTRIO_API int ctrio_task_started(void *value);

/* Close the nursery: wait for every child. The first failure (body_rc of the
 * body or a child's negative return) cancels the nursery's scope, which
 * covers the body and every child. Returns that first failure; -ECANCELED
 * only when a cancellation from outside the nursery reached it; 0 otherwise.
 * The -ECANCELED that the nursery caused itself is never returned. Waiting for
 * children is a schedule point only (Trio #1457): it never injects a
 * cancellation into the children. Returns -EPERM for a nursery that is not
 * the current task's innermost scope (misuse; a message is printed). A child
 * that returns -ECANCELED without having been cancelled is a misuse too (a
 * stray code would otherwise stop its siblings unnoticed): it counts as
 * -EPERM, with a message. */
CTRIO_API int ctrio_nursery_close(ctrio_nursery *n, int body_rc);

/* After ctrio_nursery_close: the number of failures seen (body and
 * children, -ECANCELED excluded), all of them, and the i-th of them in the
 * order they happened (the body's when ctrio_nursery_close is called, each
 * child's when it returns). Only the first CTRIO_NURSERY_MAX_ERRORS
 * are kept: ctrio_nursery_error returns 0 for i at or past that, as for i at
 * or past the count. */
CTRIO_API size_t ctrio_nursery_error_count(const ctrio_nursery *n);
CTRIO_API int ctrio_nursery_error(const ctrio_nursery *n, size_t i);

/* The nursery's cancel scope (nursery.cancel_scope): cancel it (with
 * ctrio_cancel_scope_cancel, from any task of the run) to cancel the body
 * and every child, or give it a deadline. Returns a pointer into n, valid
 * until ctrio_nursery_close; NULL for NULL. Not a checkpoint. */
CTRIO_API ctrio_cancel_scope *ctrio_nursery_cancel_scope(ctrio_nursery *n);

/* ------------------------------------------------------------------------ */
/* 2. Cancellation and time                                                  */
/* ------------------------------------------------------------------------ */

/* Open a scope in the current task (`with CancelScope():`), with no deadline
 * and no shield: cancelling it makes every checkpoint inside return
 * -ECANCELED until ctrio_cancel_scope_close, which catches that
 * cancellation. Scopes nest and are closed in the reverse order, by the task
 * that opened them. Not a checkpoint; nothing allocated, nothing returned.
 * Outside a task a message is logged and the close returns -EPERM. */
CTRIO_API void ctrio_cancel_scope_open(ctrio_cancel_scope *cs);
/* Trio's two-step form: ctrio_cancel_scope_init makes an unbound scope (no
 * deadline) that may be cancelled, given a deadline or shielded, by any task,
 * before one task enters it with ctrio_cancel_scope_enter. A scope is entered
 * once: entering it again, or entering an open or closed scope, returns
 * -EPERM (Trio: RuntimeError). ctrio_cancel_scope_open is init + enter. */
CTRIO_API void ctrio_cancel_scope_init(ctrio_cancel_scope *cs);
CTRIO_API int ctrio_cancel_scope_enter(ctrio_cancel_scope *cs);
/* Open a scope with an absolute deadline (trio.move_on_at): deadline is a
 * ctrio_current_time() value (INFINITY: none); once it passes, checkpoints
 * inside return -ECANCELED, and ctrio_cancel_scope_close turns that into 0
 * (cancelled_caught set). A past deadline cancels at once. Not a
 * checkpoint; rules as ctrio_cancel_scope_open. */
CTRIO_API void ctrio_move_on_at(ctrio_cancel_scope *cs, double deadline);
/* Open a scope with a relative deadline (trio.move_on_after): seconds from
 * now on the run's clock, as ctrio_move_on_at(cs, now + seconds). A negative
 * or NaN value is taken as 0 and a message is logged (Trio raises
 * ValueError). Not a checkpoint; close it with ctrio_cancel_scope_close,
 * which returns 0 for the cancellation its deadline caused. */
CTRIO_API void ctrio_move_on_after(ctrio_cancel_scope *cs, double seconds);
/* As ctrio_move_on_at / ctrio_move_on_after (absolute deadline / seconds from
 * now), but ctrio_cancel_scope_close returns -ETIMEDOUT instead of 0 when
 * the scope's own deadline or cancel caught the body's -ECANCELED
 * (trio.fail_at / fail_after raising TooSlowError). Not a checkpoint; a
 * negative or NaN fail_after counts as 0, with a message. */
CTRIO_API void ctrio_fail_at(ctrio_cancel_scope *cs, double deadline);
CTRIO_API void ctrio_fail_after(ctrio_cancel_scope *cs, double seconds);

/* Close a scope. Returns 0 when body_rc is the -ECANCELED that this scope
 * caused (and sets cancelled_caught), -ETIMEDOUT instead for a fail_* scope,
 * body_rc unchanged otherwise. Closing a scope that is not the task's
 * innermost open scope is misuse: the scopes inside it are closed and
 * cancelled too, a message is printed, and -EPERM is returned. */
CTRIO_API int ctrio_cancel_scope_close(ctrio_cancel_scope *cs, int body_rc);

/* cancel_scope.cancel(): idempotent, not a checkpoint; from any task of the
 * run. Tasks blocked inside the scope (and its children, up to a shield) are
 * woken with -ECANCELED, and every later checkpoint inside returns it until
 * the scope is closed. A scope not yet entered stays cancelled for good. */
CTRIO_API void ctrio_cancel_scope_cancel(ctrio_cancel_scope *cs);
/* cancel_scope.deadline: set_deadline moves it (earlier or later; INFINITY:
 * none) from any task of the run; a deadline already passed cancels the
 * scope at the scheduler's next turn; deadline returns it (INFINITY if
 * none, or for NULL). Neither is a checkpoint. A scope whose deadline has
 * fired stays cancelled when the deadline is then moved later. */
CTRIO_API void ctrio_cancel_scope_set_deadline(ctrio_cancel_scope *cs, double deadline);
CTRIO_API double ctrio_cancel_scope_deadline(const ctrio_cancel_scope *cs);
/* cancel_scope.shield: set_shield(true) shields the scope from outer
 * cancellation (its own cancel and deadline still apply); shield returns
 * whether it is on (false for NULL). Turning a shield off while a task inside
 * sleeps and an outer scope is cancelled wakes it at once with -ECANCELED.
 * Neither is a checkpoint; from any task of the run. */
CTRIO_API void ctrio_cancel_scope_set_shield(ctrio_cancel_scope *cs, bool shield);
CTRIO_API bool ctrio_cancel_scope_shield(const ctrio_cancel_scope *cs);
/* cancel_called: the scope was cancelled, or its deadline has passed (then,
 * as in Trio, the query cancels a scope not yet entered or open, so that the
 * answer stays true even if the deadline is moved later). Not a checkpoint.
 * cancelled_caught: ctrio_cancel_scope_close returned 0 (or -ETIMEDOUT)
 * for the -ECANCELED this scope caused. Both return false for NULL. */
CTRIO_API bool ctrio_cancel_scope_cancel_called(const ctrio_cancel_scope *cs);
CTRIO_API bool ctrio_cancel_scope_cancelled_caught(const ctrio_cancel_scope *cs);

/* trio.current_effective_deadline: returns the earliest deadline of the
 * scopes around the current task up to the first shield; -INFINITY if the
 * task is cancelled, INFINITY if there is none (and outside a task). Not a
 * checkpoint: for passing a timeout on to a call that takes one. */
CTRIO_API double ctrio_current_effective_deadline(void);

/* trio.current_time: returns the run's clock in seconds, the time that
 * deadlines are given in: CLOCK_MONOTONIC, or the mock clock of a
 * ctrio_config.mock_clock run (starting at 0.0). Outside a run,
 * CLOCK_MONOTONIC. Not a checkpoint; never fails. */
CTRIO_API double ctrio_current_time(void);
/* trio.sleep / sleep_until / sleep_forever: checkpoints. sleep(0) is a
 * checkpoint; a negative sleep returns -EINVAL (no checkpoint); sleep_until
 * a past time still checkpoints. They return 0 when the time is reached and
 * -ECANCELED when cancelled. */
CTRIO_API int ctrio_sleep(double seconds);
CTRIO_API int ctrio_sleep_until(double deadline);
CTRIO_API int ctrio_sleep_forever(void);

/* ------------------------------------------------------------------------ */
/* 3. Low level (trio.lowlevel)                                              */
/* ------------------------------------------------------------------------ */

/* Whether the caller runs in a task of a run on this thread (Trio's
 * current_task() not raising): returns true in a task, false outside any run
 * and outside its tasks. Not a checkpoint. Useful before the calls that need
 * a task, which return -EPERM (and log a message) outside one. */
CTRIO_API bool ctrio_in_task(void);
/* trio.lowlevel.checkpoint(): a schedule point (other ready tasks run
 * first), then a cancel point. Returns 0, or -ECANCELED if the task is
 * cancelled (a deadline that expired meanwhile included); -EPERM outside a
 * task. Call it in long computations so that they can be cancelled. */
CTRIO_API int ctrio_checkpoint(void);
/* trio.lowlevel.checkpoint_if_cancelled(): a cancel point only: if the task
 * is cancelled, yields once and returns -ECANCELED; else returns 0 without
 * yielding (no schedule point). -EPERM outside a task. Use it at the start
 * of a call that may finish without blocking. */
CTRIO_API int ctrio_checkpoint_if_cancelled(void);
/* trio.lowlevel.cancel_shielded_checkpoint(): a schedule point (other ready
 * tasks run first) that never returns -ECANCELED: returns 0, or -EPERM
 * outside a task. Use it after work that completed, so that its result is
 * not lost to a cancellation. */
CTRIO_API int ctrio_cancel_shielded_checkpoint(void);

/* wait_readable / wait_writable: block until the kernel reports fd readable
 * (writable). Full checkpoints. -EBUSY if another task already waits in the
 * same direction on fd; -EBADF if fd is closed or invalid (nothing is left
 * registered); -EPERM for a descriptor epoll cannot watch (a regular file);
 * -EBADF when ctrio_notify_closing(fd) is called while waiting.
 * The descriptor stays registered with the kernel until ctrio_notify_closing
 * is called for it: call it before you close a descriptor you waited on. */
CTRIO_API int ctrio_wait_readable(int fd);
CTRIO_API int ctrio_wait_writable(int fd);
/* trio.lowlevel.notify_closing: wake every task waiting on fd
 * (ctrio_wait_readable / ctrio_wait_writable) with -EBADF and forget fd, so
 * that the backend drops its registration. Call it before close(fd), from a
 * task of the run. A no-op for an unknown or invalid fd; not a checkpoint. */
CTRIO_API void ctrio_notify_closing(int fd);

/* The number of tasks currently blocked in wait_readable / wait_writable
 * (trio.lowlevel.current_statistics().io_statistics). */
typedef struct ctrio_io_statistics {
    size_t tasks_waiting_read, tasks_waiting_write;
} ctrio_io_statistics;
/* trio.lowlevel.current_statistics().io_statistics: returns the number of
 * tasks of the current run blocked in ctrio_wait_readable and in
 * ctrio_wait_writable; all zero outside a run. Not a checkpoint; for tests
 * and metrics (e.g. that a waiter has gone when its scope was cancelled). */
CTRIO_API ctrio_io_statistics ctrio_current_io_statistics(void);

/* Wait for one of the n signals listed (trio.open_signal_receiver, for
 * one signal at a time): returns its number, or -ECANCELED. The first call
 * for a set of signals blocks them in this thread (pthread_sigmask) and
 * reads them from a signalfd, so they no longer kill the process or run a
 * handler while the run lasts; block them in every other thread too (before
 * creating threads) for a process-wide effect; to catch a signal that
 * arrives before the first call, block the signals in main() before
 * ctrio_run (see examples/echo_server.c). A checkpoint. -EINVAL, before
 * anything is blocked, for NULL, n == 0, a number that names no signal, or
 * SIGKILL or SIGSTOP (they can be neither blocked nor read); -EPERM outside
 * a task. */
CTRIO_API int ctrio_wait_signal(const int *signals, size_t n);

/* ------------------------------------------------------------------------ */
/* 4. Threads and tokens                                                     */
/* ------------------------------------------------------------------------ */

#define CTRIO_ABANDON_ON_CANCEL 1

/* trio.to_thread.run_sync: run fn(arg) in a worker thread and wait for its
 * result. Worker threads come from a bounded pool of reused threads (idle
 * ones exit after 10 s); at most 40 calls per run are in threads at once
 * (Trio's default CapacityLimiter), the others wait for a slot. When
 * ctrio_run returns, the run's workers have ended entirely (joined, their
 * thread-local destructors run), except those still inside an abandoned
 * call: each of those ends on its own when its fn returns.
 * A checkpoint on entry: a cancelled caller gets -ECANCELED and fn never runs.
 * Without CTRIO_ABANDON_ON_CANCEL a cancel is ignored until fn returns; its
 * result is returned and the cancellation shows at the next checkpoint.
 * With CTRIO_ABANDON_ON_CANCEL a cancel returns -ECANCELED at once; fn keeps
 * running and its result is discarded. arg then still belongs to fn: use
 * ctrio_to_thread_run_sync_with to have it released.
 * Worker threads block every asynchronous signal (faults such as SIGSEGV
 * stay deliverable), so that signals reach the threads that wait for them;
 * a signal sent to a worker with pthread_kill does not interrupt fn. */
CTRIO_API int ctrio_to_thread_run_sync(ctrio_fn fn, void *arg, int flags);
/* As above; when the call is abandoned, on_abandon(arg, rc) runs in the
 * worker thread after fn returns, so that arg can be freed there. With
 * CTRIO_ABANDON_ON_CANCEL every -ECANCELED return hands arg to on_abandon:
 * if fn never started (cancelled on entry or waiting for a slot) or itself
 * returned -ECANCELED, on_abandon(arg, -ECANCELED) is called in the caller's
 * thread before the return. Any other return leaves arg with the caller. */
CTRIO_API int ctrio_to_thread_run_sync_with(ctrio_fn fn, void *arg, int flags,
                                            void (*on_abandon)(void *arg, int rc));

/* trio.lowlevel.TrioToken: a handle on a run that other threads may use. */
typedef struct ctrio_token ctrio_token;
/* trio.lowlevel.current_trio_token: returns the current run's token, for
 * other threads to call into the run (ctrio_token_run_sync_soon,
 * ctrio_from_thread_run); NULL outside a run. Valid until the run ends
 * (calls through it then return -ESHUTDOWN), longer with ctrio_token_retain.
 * Not a checkpoint. */
CTRIO_API ctrio_token *ctrio_current_token(void);
/* Keep a token valid past the end of its run (for threads that may outlive
 * it): every retain needs one release. Calls through a token whose run has
 * ended return -ESHUTDOWN. */
CTRIO_API void ctrio_token_retain(ctrio_token *t);
CTRIO_API void ctrio_token_release(ctrio_token *t);
/* Any thread: run fn(arg) in the run's thread soon, outside any task (it must
 * not block). FIFO. Returns 0, or -ESHUTDOWN if the run has ended, -ENOMEM. */
CTRIO_API int ctrio_token_run_sync_soon(ctrio_token *t, void (*fn)(void *), void *arg);
/* A thread other than the run's: run fn(arg) as a task of the run (a system
 * task, cancelled when the run ends) and wait for its result. Returns fn's
 * result, -ESHUTDOWN if the run has ended, -EPERM from the run's own thread. */
CTRIO_API int ctrio_from_thread_run(ctrio_token *t, ctrio_fn fn, void *arg);

/* ------------------------------------------------------------------------ */
/* 5. Synchronisation                                                        */
/* ------------------------------------------------------------------------ */

/* Internal: a list of waiting tasks. Private. */
typedef struct ctrio__waitq {
    ctrio__link head;
} ctrio__waitq;

/* trio.Event: set once, waited for by any number of tasks. */
typedef struct ctrio_event {
    /* private */
    ctrio__waitq waiters;
    bool is_set;
    void *reserved[CTRIO_RESERVED_WORDS];
} ctrio_event;
/* trio.Event(): make e an event that is not set, with no waiters; e is the
 * caller's storage (often on the stack, or in a struct shared by tasks) and
 * needs no cleanup. Call it before any other ctrio_event_* call on e. Needs
 * no run; not a checkpoint; nothing to return (NULL: nothing done). */
CTRIO_API void ctrio_event_init(ctrio_event *e);
/* event.set() wakes every waiter, from any task of the run; idempotent; not
 * a checkpoint; an event is never unset (make a new one). event.is_set()
 * returns true once set, false before (and for NULL); not a checkpoint. */
CTRIO_API void ctrio_event_set(ctrio_event *e);
CTRIO_API bool ctrio_event_is_set(const ctrio_event *e);
/* event.wait(): block until the event is set. A checkpoint (a set event
 * still yields once); returns 0 once set, -ECANCELED if cancelled first (the
 * task is no longer a waiter), -EPERM outside a task, -EINVAL for NULL. */
CTRIO_API int ctrio_event_wait(ctrio_event *e);

/* trio.Lock: a fair (FIFO hand-off) mutex between tasks. */
typedef struct ctrio_lock {
    /* private */
    ctrio__waitq waiters;
    struct ctrio__task *owner;
    void *reserved[CTRIO_RESERVED_WORDS];
} ctrio_lock;
/* trio.Lock(): make l an unlocked lock with no waiters, in the caller's
 * storage (no cleanup needed; release it before the storage goes). Call it
 * before any other ctrio_lock_* call on l. Needs no run; not a checkpoint;
 * nothing to return (NULL: nothing done). */
CTRIO_API void ctrio_lock_init(ctrio_lock *l);
/* lock.acquire(): take the lock, waiting in FIFO order while another task
 * holds it. A checkpoint (yields even when the lock is free). Returns 0;
 * -ECANCELED if cancelled before it was handed over (the lock is then not
 * held); -EPERM if the task already holds it (Trio: RuntimeError) or outside
 * a task; -EINVAL for NULL. */
CTRIO_API int ctrio_lock_acquire(ctrio_lock *l);
/* lock.acquire_nowait(): take the lock if it is free. Not a checkpoint:
 * returns 0, or -EWOULDBLOCK if held or being handed to a waiter (Trio:
 * WouldBlock), -EPERM if the caller holds it already or outside a task,
 * -EINVAL for NULL. */
CTRIO_API int ctrio_lock_acquire_nowait(ctrio_lock *l);
/* lock.release() hands the lock to the first waiter, if any (FIFO); not a
 * checkpoint; returns 0, -EPERM if the caller does not hold it (or outside
 * a task), -EINVAL for NULL. lock.locked() returns true while a task holds
 * it (false for NULL); not a checkpoint. */
CTRIO_API int ctrio_lock_release(ctrio_lock *l);
CTRIO_API bool ctrio_lock_locked(const ctrio_lock *l);

/* trio.Semaphore: a counter that acquire decrements, blocking at 0, and
 * release increments (up to max_value if max_value > 0; past it -EINVAL;
 * with no maximum, past SIZE_MAX -EOVERFLOW), value unchanged on error. */
typedef struct ctrio_semaphore {
    /* private */
    ctrio__waitq waiters;
    size_t value, max_value;
    void *reserved[CTRIO_RESERVED_WORDS];
} ctrio_semaphore;
/* trio.Semaphore(initial, max_value=...): make s a semaphore of value
 * initial, in the caller's storage (no cleanup needed); max_value 0: no
 * maximum. Returns 0, or -EINVAL for initial > max_value (Trio: ValueError),
 * leaving the semaphore empty (value 0) with that maximum; -EINVAL for NULL.
 * Needs no run; not a checkpoint. */
CTRIO_API int ctrio_semaphore_init(ctrio_semaphore *s, size_t initial, size_t max_value);
/* semaphore.acquire(): decrement the value, waiting (FIFO) while it is 0. A
 * checkpoint (yields even when a unit is free). Returns 0; -ECANCELED if
 * cancelled before a unit was handed over (the value is then unchanged);
 * -EPERM outside a task; -EINVAL for NULL. */
CTRIO_API int ctrio_semaphore_acquire(ctrio_semaphore *s);
/* semaphore.acquire_nowait(): decrement the value if it is above 0. Not a
 * checkpoint; needs no task. Returns 0, or -EWOULDBLOCK at 0 (Trio:
 * WouldBlock), -EINVAL for NULL. */
CTRIO_API int ctrio_semaphore_acquire_nowait(ctrio_semaphore *s);
/* semaphore.release() hands a unit to the first waiter, if any, else
 * increments the value; not a checkpoint. Returns 0; -EINVAL past max_value
 * (Trio: ValueError) or for NULL; -EOVERFLOW past SIZE_MAX with no maximum;
 * the value unchanged on error. semaphore.value returns the current value
 * (0 for NULL); not a checkpoint. */
CTRIO_API int ctrio_semaphore_release(ctrio_semaphore *s);
CTRIO_API size_t ctrio_semaphore_value(const ctrio_semaphore *s);

/* trio.open_memory_channel: a queue of fixed-size elements between tasks of
 * one run, with `capacity` slots (0: every send waits for a receiver).
 * Each end can be cloned; an end is closed (and freed) by its close call. */
typedef struct ctrio_send_channel ctrio_send_channel;
typedef struct ctrio_receive_channel ctrio_receive_channel;
/* trio.open_memory_channel(capacity): *tx and *rx get the two ends of a new
 * channel of elements of elem_size bytes (copied in and out), with capacity
 * slots (0: every send waits for a receiver). Needs no run; not a checkpoint.
 * Close each end (and each clone) with its close call. Returns 0, -EINVAL
 * (elem_size 0, NULL outputs, elem_size * capacity overflowing), -ENOMEM. */
CTRIO_API int ctrio_open_memory_channel(size_t elem_size, size_t capacity,
                                        ctrio_send_channel **tx, ctrio_receive_channel **rx);
/* A shared channel: a memory channel whose ends may be used from different
 * runs (threads), e.g. between the runs of ctrio_run_parallel; all the
 * ctrio_channel_* calls below work on it with the same results, capacity 0
 * included (every send waits for a receiver, in whatever run). May be called
 * outside any run. Waking a task of another run goes through that run's
 * token. The non-blocking calls, clone, close and statistics may be called
 * from any thread, even one with no run; the blocking calls from a task of
 * any run. Cancelling a blocked send or receive works as on a memory channel,
 * with one case that only threads create: when another run has already
 * completed the handoff (taken the element, or delivered one), the call
 * returns that result (0 or 1) and the cancellation is delivered at the next
 * checkpoint, so nothing is lost nor sent twice. A handle must not be used
 * after its close, from any thread: close an end only when no other thread
 * may be about to use it (its tasks blocked on it get -EBADF). A run that
 * ends does not close the ends it used: close them before it returns, or
 * the other runs' tasks waiting on the channel wait on (as in Trio, where a
 * channel left open is never closed for you). Each call takes a mutex held
 * for a few copies; a memory channel takes none.
 * Returns 0, -EINVAL (elem_size 0, NULL outputs), -ENOMEM. */
CTRIO_API int ctrio_open_shared_channel(size_t elem_size, size_t capacity,
                                        ctrio_send_channel **tx, ctrio_receive_channel **rx);
/* Copy elem_size bytes from elem into the channel. A checkpoint.
 * 0; -EBADF if this end was closed; -EPIPE if every receive end is closed
 * (BrokenResourceError); -ECANCELED (nothing was sent). */
CTRIO_API int ctrio_channel_send(ctrio_send_channel *tx, const void *elem);
/* send_nowait: copy elem into the channel if a receiver waits or a slot is
 * free. Not a checkpoint; needs no task. Returns as ctrio_channel_send (0,
 * -EBADF, -EPIPE, -EINVAL for NULL), or -EWOULDBLOCK if it would block
 * (Trio: WouldBlock), nothing sent. */
CTRIO_API int ctrio_channel_send_nowait(ctrio_send_channel *tx, const void *elem);
/* Receive one element into out. A checkpoint. 1: an element; 0: end of
 * channel (every send end closed and nothing left: EndOfChannel); -EBADF if
 * this end was closed; -ECANCELED (nothing was taken). */
CTRIO_API int ctrio_channel_receive(ctrio_receive_channel *rx, void *out);
/* receive_nowait: take one element into out if one is buffered or a sender
 * waits. Not a checkpoint; needs no task. Returns as ctrio_channel_receive
 * (1 an element, 0 end of channel, -EBADF, -EINVAL for NULL), or
 * -EWOULDBLOCK if it would block (Trio: WouldBlock), nothing taken. */
CTRIO_API int ctrio_channel_receive_nowait(ctrio_receive_channel *rx, void *out);
/* channel.clone(): *out gets a new handle on the same channel end (the
 * original stays open); the end is closed for the peers only when every
 * handle on it is closed, so that each producer (consumer) task can own and
 * close its own. Not a checkpoint. Returns 0, -EINVAL for NULL, -ENOMEM. */
CTRIO_API int ctrio_send_channel_clone(ctrio_send_channel *tx, ctrio_send_channel **out);
CTRIO_API int ctrio_receive_channel_clone(ctrio_receive_channel *rx,
                                          ctrio_receive_channel **out);
/* Close and free the handle. Tasks blocked on this handle get -EBADF; when
 * the last send handle closes, receivers see end of channel; when the last
 * receive handle closes, blocked senders get -EPIPE and the buffer is dropped. */
CTRIO_API int ctrio_send_channel_close(ctrio_send_channel *tx);
CTRIO_API int ctrio_receive_channel_close(ctrio_receive_channel *rx);

typedef struct ctrio_channel_statistics {
    size_t current_buffer_used, max_buffer_size;
    size_t open_send_channels, open_receive_channels;
    size_t tasks_waiting_send, tasks_waiting_receive;
} ctrio_channel_statistics;
/* channel.statistics(): returns the channel's figures, the same through
 * either end: elements buffered and capacity, open handles of each end,
 * tasks blocked in send and in receive. All zero for NULL; not a checkpoint;
 * on a shared channel from any thread. */
CTRIO_API ctrio_channel_statistics ctrio_send_channel_statistics(const ctrio_send_channel *tx);
CTRIO_API ctrio_channel_statistics
ctrio_receive_channel_statistics(const ctrio_receive_channel *rx);

/* ------------------------------------------------------------------------ */
/* 6. Sockets: trio.socket                                                   */
/* ------------------------------------------------------------------------ */
/*
 * A ctrio_socket behaves like a blocking BSD socket to the task that uses
 * it; underneath, the descriptor is non-blocking and close-on-exec, and no
 * call raises SIGPIPE (a broken peer is -EPIPE). The type is abstract, as
 * trio.socket.SocketType: a table of operations stands behind each handle, so
 * that ctrio_set_custom_socket_factory can put fake sockets behind the same
 * calls (see ctrio_socket_ops below).
 *
 * Blocking methods are checkpoints, as in Trio: they return -ECANCELED
 * without acting if the task is already cancelled; they try the system call
 * first; on EAGAIN they wait for readiness and retry; when the call completes
 * at once they still yield once (without a cancel point: the result wins).
 * A second task that needs to wait in the same direction on the same socket
 * gets -EBUSY. Closing a socket wakes every task blocked on it with -EBADF.
 * Methods that take addresses take them resolved (struct sockaddr): resolving
 * names is ctrio_getaddrinfo's job.
 */
struct addrinfo;
struct sockaddr;
struct sockaddr_storage;
struct msghdr;
struct mmsghdr; /* <sys/socket.h> declares it with _GNU_SOURCE */
typedef struct ctrio_socket ctrio_socket;

/* trio.socket.socket(): *out gets a new socket; family/type/protocol as
 * socket(2) (SOCK_NONBLOCK/SOCK_CLOEXEC are added). With a custom socket
 * factory set, the factory makes the socket. Not a checkpoint. Returns 0 or
 * socket(2)'s -errno (-EAFNOSUPPORT, -EMFILE, -EACCES...), -EINVAL for a
 * NULL out (*out is NULL on failure). Close it with ctrio_socket_close. */
CTRIO_API int ctrio_socket_open(int family, int type, int protocol, ctrio_socket **out);
/* trio.socket.socketpair(): out[0] and out[1] get two connected sockets
 * (non-blocking, close-on-exec underneath); family 0 means AF_UNIX; type 0
 * means SOCK_STREAM. Not a checkpoint; no factory is asked. Returns 0 or
 * socketpair(2)'s -errno, -EINVAL for a NULL out (both NULL on failure). */
CTRIO_API int ctrio_socketpair(int family, int type, int protocol, ctrio_socket *out[2]);
/* fromfd(): wrap a duplicate of fd (the caller keeps fd). family, type and
 * protocol are read from the kernel (SO_DOMAIN, SO_TYPE, SO_PROTOCOL); the
 * arguments are accepted for Python's signature and ignored, as Trio does on
 * Linux. Not a checkpoint. Returns 0; -EBADF for a closed or negative fd,
 * -ENOTSOCK for one that is not a socket, -EMFILE; -EINVAL for a NULL out. */
CTRIO_API int ctrio_socket_fromfd(int fd, int family, int type, int protocol,
                                  ctrio_socket **out);
/* from_stdlib_socket(): adopt fd (no dup): on success the socket owns it
 * (made non-blocking and close-on-exec; ctrio_socket_close closes it); on
 * failure it stays the caller's. Not a checkpoint. Returns 0, -ENOTSOCK for
 * a descriptor that is not a socket, -EBADF for a closed one, -EINVAL for a
 * NULL out. */
CTRIO_API int ctrio_socket_from_fd(int fd, ctrio_socket **out);

/* getaddrinfo(3), cancellable. A numeric host and service are answered at
 * once, with no thread; anything else runs in a worker thread that a cancel
 * abandons (or in the custom resolver). A non-ASCII (UTF-8) host name is
 * encoded with IDNA 2008 + UTS-46 first, as Trio does, through libidn2
 * (loaded at run time); a name it cannot encode, or a missing libidn2 (with a
 * message), gives CTRIO_EAI_IDN_ENCODE. Returns 0, a CTRIO_EAI_* code, or
 * -errno (EAI_SYSTEM). Free *res with ctrio_freeaddrinfo. */
CTRIO_API int ctrio_getaddrinfo(const char *host, const char *service,
                                const struct addrinfo *hints, struct addrinfo **res);
CTRIO_API void ctrio_freeaddrinfo(struct addrinfo *res);
/* trio.socket.getnameinfo: getnameinfo(3) of sa in a worker thread (or the
 * custom resolver): host and serv get the names (hostlen / servlen bytes,
 * NUL-terminated; either may be NULL with length 0). A checkpoint that a
 * cancel abandons (-ECANCELED; the thread's answer is dropped). Returns 0, a
 * CTRIO_EAI_* code, -EINVAL (NULL sa, salen too long), -EPERM outside a task. */
CTRIO_API int ctrio_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host,
                                size_t hostlen, char *serv, size_t servlen, int flags);
/* trio.socket.getprotobyname: returns the protocol number of a name ("tcp"
 * -> 6) from /etc/protocols, looked up in a worker thread; -ENOENT for an
 * unknown name. A checkpoint that a cancel abandons (-ECANCELED). -EINVAL
 * for NULL, -EPERM outside a task. */
CTRIO_API int ctrio_getprotobyname(const char *name);

/* connect(). A cancellation, even one that arrived before the attempt,
 * closes the descriptor (a non-blocking connect cannot be undone) and returns
 * -ECANCELED: the object must still be closed, and every other call on it
 * returns -EBADF. A failed attempt returns the SO_ERROR value. Outside a
 * task: -EPERM, and the socket is left as it was. */
CTRIO_API int ctrio_socket_connect(ctrio_socket *s, const struct sockaddr *addr, socklen_t len);
/* accept(): *conn is a new socket (non-blocking, close-on-exec) and, if addr
 * is not NULL, *len bytes of the peer's address (len in/out, as accept(2)).
 * A checkpoint: waits for a connection. Returns 0 or accept(2)'s -errno
 * (-EINVAL: not listening; -EMFILE...); -ECANCELED: no connection was taken
 * (it stays queued); -EBUSY if another task accepts on s; -EBADF once closed. */
CTRIO_API int ctrio_socket_accept(ctrio_socket *s, ctrio_socket **conn, struct sockaddr *addr,
                                  socklen_t *len);
/* bind(): a checkpoint, then bind(2). An AF_UNIX filesystem path binds in a
 * worker thread (the kernel walks the filesystem), as in Trio; a cancel does
 * not abandon that thread: its result is returned. Returns 0 or bind(2)'s
 * -errno (-EADDRINUSE, -EACCES...), -ECANCELED (not bound), -EBADF once
 * closed, -EINVAL for a NULL argument. */
CTRIO_API int ctrio_socket_bind(ctrio_socket *s, const struct sockaddr *addr, socklen_t len);
/* recv / recv_into, recvfrom / recvfrom_into: receive up to len bytes into
 * buf (flags as recv(2): MSG_PEEK...); recvfrom also stores the sender's
 * address in addr (*addrlen in/out, as recvfrom(2); addr may be NULL). A
 * checkpoint: waits until data (or EOF) is there. Returns the bytes
 * received, 0 at EOF (or for len 0); recv(2)'s -errno (-ECONNRESET...);
 * -ECANCELED: no byte was taken; -EBUSY if another task receives on s;
 * -EBADF if s is closed meanwhile; -EINVAL for NULL buf with len > 0. */
CTRIO_API ssize_t ctrio_socket_recv(ctrio_socket *s, void *buf, size_t len, int flags);
CTRIO_API ssize_t ctrio_socket_recvfrom(ctrio_socket *s, void *buf, size_t len, int flags,
                                        struct sockaddr *addr, socklen_t *addrlen);
/* recvmsg: on AF_UNIX sockets MSG_CMSG_CLOEXEC is added, so received
 * descriptors are close-on-exec (other families carry none, and some, such
 * as AF_PACKET, refuse the flag). msg_flags never shows a flag added. */
CTRIO_API ssize_t ctrio_socket_recvmsg(ctrio_socket *s, struct msghdr *msg, int flags);
/* send, sendto, sendmsg: one send(2) / sendto(2) / sendmsg(2) with
 * MSG_NOSIGNAL added (a closed peer is -EPIPE, never SIGPIPE). A checkpoint:
 * waits while the socket's buffer is full. Returns the bytes accepted,
 * possibly fewer than len: it never loops (ctrio_stream_send_all does);
 * -ECANCELED means nothing was sent (a send that went returns its count);
 * the call's -errno (-EPIPE, -ECONNRESET, -EMSGSIZE...); -EBUSY if another
 * task sends on s; -EBADF if s is closed meanwhile; -EINVAL for NULL buf
 * with len > 0. */
CTRIO_API ssize_t ctrio_socket_send(ctrio_socket *s, const void *buf, size_t len, int flags);
CTRIO_API ssize_t ctrio_socket_sendto(ctrio_socket *s, const void *buf, size_t len, int flags,
                                      const struct sockaddr *addr, socklen_t addrlen);
CTRIO_API ssize_t ctrio_socket_sendmsg(ctrio_socket *s, const struct msghdr *msg, int flags);
/* recvmmsg(2), batched receive (SPEC section 10): a checkpoint; waits until at
 * least one datagram is there, then returns how many (1..vlen) were received
 * into msgs[0..n), with msg_len set for each: whatever is queued, never
 * waiting for the batch to fill (MSG_WAITFORONE's meaning, the flag implied).
 * No received datagram is lost to a cancellation: -ECANCELED means that none
 * was taken. An error after the first datagram ends the batch early and is
 * returned by the next call. Each message's msg_hdr.msg_flags shows
 * MSG_TRUNC (the datagram was longer than its buffers: msg_len is what was
 * kept) and MSG_CTRUNC (control data cut off), as recvmsg(2); on AF_UNIX,
 * MSG_CMSG_CLOEXEC is added and hidden as for recvmsg. -EINVAL for msgs NULL
 * or vlen 0; the kernel takes at most UIO_MAXIOV (1024) per call. A socket
 * whose operations have no recvmmsg entry gets a loop over its recvmsg:
 * the first may wait, the next are made (with MSG_DONTWAIT) only while its
 * is_readable says a datagram is there. */
CTRIO_API int ctrio_socket_recvmmsg(ctrio_socket *s, struct mmsghdr *msgs, unsigned int vlen,
                                    int flags);
/* sendmmsg(2), batched send: a checkpoint; waits until at least one datagram
 * can go, then returns how many (1..vlen) were sent, msg_len set for each:
 * msgs[n..vlen) were not sent (the socket's buffer filled up, or the next
 * one failed: its error comes back when it is sent again). -ECANCELED means
 * that none was sent. MSG_NOSIGNAL is added. Without a sendmmsg entry, a
 * loop over the socket's sendmsg: the first may wait, the next are made with
 * MSG_DONTWAIT. */
CTRIO_API int ctrio_socket_sendmmsg(ctrio_socket *s, struct mmsghdr *msgs, unsigned int vlen,
                                    int flags);
/* sendfile(2) from a regular file: count bytes (0: to the end of the file),
 * from *offset if offset is not NULL (advancing it), else from the file
 * position; waits whenever the socket is full; returns the bytes sent.
 * Cancelled part-way, it returns -ECANCELED and *offset (or the file
 * position) says where to resume. */
CTRIO_API ssize_t ctrio_socket_sendfile(ctrio_socket *s, int in_fd, off_t *offset,
                                        size_t count);
/* wait_writable: block until the socket is writable (a send would take at
 * least a byte, or fail at once). A checkpoint. Returns 0; -ECANCELED;
 * -EBUSY if another task waits to send on s; -EBADF if s is closed before
 * or while waiting; -EOPNOTSUPP for a custom socket without it. */
CTRIO_API int ctrio_socket_wait_writable(ctrio_socket *s);

/* Non-blocking methods: never checkpoints. */
/* is_readable: a zero-timeout poll for POLLIN; returns true when a receive
 * (or accept) would not wait: data, EOF, an error, or a pending connection.
 * False on a closed socket, for NULL, and for a custom socket without the
 * operation. Never a checkpoint. */
CTRIO_API bool ctrio_socket_is_readable(ctrio_socket *s);
/* did_shutdown_SHUT_WR: returns true after a successful shutdown(SHUT_WR or
 * SHUT_RDWR) through this object, false before (and for NULL). Never a
 * checkpoint; Trio's SocketStream uses it to refuse sends after send_eof. */
CTRIO_API bool ctrio_socket_did_shutdown_wr(const ctrio_socket *s);
/* socket.family / socket.type: return the family (AF_INET...) and the type
 * (SOCK_STREAM..., without SOCK_NONBLOCK/SOCK_CLOEXEC) the socket was made
 * with, or read from the kernel for an adopted descriptor; -EINVAL for NULL.
 * Never checkpoints; they make no system call. */
CTRIO_API int ctrio_socket_family(const ctrio_socket *s);
CTRIO_API int ctrio_socket_type(const ctrio_socket *s);
/* socket.proto: returns the kernel's protocol (SO_PROTOCOL: IPPROTO_TCP for
 * a TCP socket opened with 0), or the one given to ctrio_socket_open where
 * the kernel says 0 (AF_PACKET), as Trio reports it; -EINVAL for NULL. Never
 * a checkpoint. */
CTRIO_API int ctrio_socket_protocol(const ctrio_socket *s);
/* socket.fileno(): returns the descriptor, -1 once closed or detached (or
 * for NULL, or a custom socket without one). The socket still owns it: do
 * not close it; after this call, closing the socket removes the backend's
 * registration first, so a dup of it may live on. Never a checkpoint. */
CTRIO_API int ctrio_socket_fileno(const ctrio_socket *s);
/* listen(2), getpeername(2), getsockname(2), shutdown(2), setsockopt(2),
 * getsockopt(2) on the socket, with the same arguments (addresses and option
 * lengths in/out as there). Never checkpoints. Each returns 0 or the system
 * call's -errno (-ENOTCONN, -ENOPROTOOPT...); -EBADF once closed; -EINVAL
 * for NULL s, NULL addr or len, a NULL setsockopt val with a length, a NULL
 * getsockopt val or len; -EOPNOTSUPP for a custom socket without the
 * operation. A successful SHUT_WR or SHUT_RDWR sets
 * ctrio_socket_did_shutdown_wr. */
CTRIO_API int ctrio_socket_listen(ctrio_socket *s, int backlog);
CTRIO_API int ctrio_socket_getpeername(ctrio_socket *s, struct sockaddr *addr, socklen_t *len);
CTRIO_API int ctrio_socket_getsockname(ctrio_socket *s, struct sockaddr *addr, socklen_t *len);
CTRIO_API int ctrio_socket_shutdown(ctrio_socket *s, int how);
CTRIO_API int ctrio_socket_setsockopt(ctrio_socket *s, int level, int name, const void *val,
                                      socklen_t len);
CTRIO_API int ctrio_socket_getsockopt(ctrio_socket *s, int level, int name, void *val,
                                      socklen_t *len);
/* dup(): *out gets an independent socket on a new descriptor (close-on-exec;
 * did_shutdown_wr false) for the same kernel socket; close each on its own.
 * Never a checkpoint. Returns 0, fcntl(2)'s -errno (-EMFILE), -EBADF once
 * closed, -EINVAL for NULL, -EOPNOTSUPP for a custom socket without it. */
CTRIO_API int ctrio_socket_dup(ctrio_socket *s, ctrio_socket **out);
/* detach(): returns the descriptor without closing it and frees s; tasks
 * blocked on s are woken with -EBADF first. -EBADF if already closed,
 * -EOPNOTSUPP for a custom socket, -EINVAL for NULL. Never a checkpoint.
 * set_inheritable / get_inheritable: clear or set FD_CLOEXEC (returns 0);
 * return 1 if the descriptor survives exec, 0 if not; or -EBADF, -EINVAL. */
CTRIO_API int ctrio_socket_detach(ctrio_socket *s);
CTRIO_API int ctrio_socket_set_inheritable(ctrio_socket *s, bool inheritable);
CTRIO_API int ctrio_socket_get_inheritable(ctrio_socket *s);
/* close(): wakes every task blocked on s with -EBADF, closes the descriptor
 * and frees s (once the woken tasks have let go of it). Always closes; not a
 * checkpoint. */
CTRIO_API int ctrio_socket_close(ctrio_socket *s);

/* Addresses as text, numeric only: never a DNS lookup. parse reads
 * "127.0.0.1", "::1", "fe80::1%lo" (scope by name or number) for AF_INET /
 * AF_INET6 (family 0: either), an AF_UNIX path, or "@name" for an abstract
 * AF_UNIX name; port 0..65535 (ignored for AF_UNIX). A host name is refused
 * with -EINVAL. format writes "127.0.0.1:80", "[::1]:80", "[fe80::1%lo]:80", a
 * path as is, "@name" for an abstract name (each NUL inside shown as '@'), and
 * returns its length; -ENOSPC if size is too small.
 *
 * The kernel's families carry their whole address in the text, after the
 * family's prefix (family 0 recognises the prefix; port is ignored); format
 * writes the same text, which parses back to the same address:
 *  - AF_NETLINK "netlink:PID:GROUPS": the port id (0: the kernel) and the
 *    multicast group mask; format writes "netlink:0:0x11", parse also takes
 *    decimal and "netlink:PID" (no groups).
 *  - AF_PACKET "packet:IFACE:PROTO[:HWADDR]": the interface by name or by
 *    decimal index (format: by index when no interface has it; 0: any);
 *    the ethertype, host
 *    order, written 0x0800 (0x0003: ETH_P_ALL); the hardware address when
 *    sll_halen > 0, "aa:bb:cc:dd:ee:ff" (1 to 8 bytes). sll_hatype and
 *    sll_pkttype are not shown (parse leaves them 0); format needs only
 *    offsetof(struct sockaddr_ll, sll_addr) + sll_halen bytes, as the kernel
 *    returns them; parse gives sizeof(struct sockaddr_ll), as bind wants.
 *  - AF_VSOCK "vsock:CID:PORT", each a number or "any" (VMADDR_CID_ANY,
 *    VMADDR_PORT_ANY); svm_flags is not shown (parse leaves it 0).
 * Numbers are decimal or 0x hex, digits only (no sign, no space). An
 * interface name that no interface has is -ENODEV; any other family is
 * -EAFNOSUPPORT, for both calls. */
CTRIO_API int ctrio_sockaddr_parse(int family, const char *host, int port,
                                   struct sockaddr_storage *out, socklen_t *len);
CTRIO_API int ctrio_sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf,
                                    size_t size);

/* Custom sockets: the operations behind a ctrio_socket. A fake socket fills
 * in what it supports; a NULL entry makes the call return -EOPNOTSUPP
 * (is_readable: false). Each gets the handle; ctrio_socket_impl(s) returns
 * the impl pointer given to ctrio_socket_new_custom. The public calls check
 * their arguments, then call these; close must release impl. */
typedef struct ctrio_socket_ops {
    int (*connect)(ctrio_socket *s, const struct sockaddr *addr, socklen_t len);
    int (*accept)(ctrio_socket *s, ctrio_socket **conn, struct sockaddr *addr, socklen_t *len);
    int (*bind)(ctrio_socket *s, const struct sockaddr *addr, socklen_t len);
    ssize_t (*recvmsg)(ctrio_socket *s, struct msghdr *msg, int flags);
    ssize_t (*sendmsg)(ctrio_socket *s, const struct msghdr *msg, int flags);
    /* optional: recvfrom/sendto, used by recv/recvfrom/send/sendto when set
     * (else those go through recvmsg/sendmsg) */
    ssize_t (*recvfrom)(ctrio_socket *s, void *buf, size_t len, int flags,
                        struct sockaddr *addr, socklen_t *addrlen);
    ssize_t (*sendto)(ctrio_socket *s, const void *buf, size_t len, int flags,
                      const struct sockaddr *addr, socklen_t addrlen);
    ssize_t (*sendfile)(ctrio_socket *s, int in_fd, off_t *offset, size_t count);
    int (*wait_writable)(ctrio_socket *s);
    bool (*is_readable)(ctrio_socket *s);
    int (*listen)(ctrio_socket *s, int backlog);
    int (*getpeername)(ctrio_socket *s, struct sockaddr *addr, socklen_t *len);
    int (*getsockname)(ctrio_socket *s, struct sockaddr *addr, socklen_t *len);
    int (*shutdown)(ctrio_socket *s, int how);
    int (*setsockopt)(ctrio_socket *s, int level, int name, const void *val, socklen_t len);
    int (*getsockopt)(ctrio_socket *s, int level, int name, void *val, socklen_t *len);
    int (*dup)(ctrio_socket *s, ctrio_socket **out);
    int (*close)(ctrio_socket *s);
    /* optional: batches (ctrio_socket_recvmmsg / _sendmmsg). When NULL, those
     * loop over recvmsg / sendmsg (calling them with MSG_DONTWAIT after the
     * first, recvmsg only while is_readable is true) instead of returning
     * -EOPNOTSUPP. */
    int (*recvmmsg)(ctrio_socket *s, struct mmsghdr *msgs, unsigned int vlen, int flags);
    int (*sendmmsg)(ctrio_socket *s, struct mmsghdr *msgs, unsigned int vlen, int flags);
    void (*reserved[CTRIO_RESERVED_WORDS])(void); /* NULL */
} ctrio_socket_ops;
/* Make a socket handle backed by ops (which must outlive it) and impl, for
 * fake sockets (the socket factory's job): *out reports family, type and
 * protocol as given; its fileno is -1. ctrio_socket_impl returns the impl
 * pointer (NULL for NULL). Not a checkpoint. Returns 0, -EINVAL for NULL
 * ops or out, -ENOMEM. Closing it calls ops->close, which releases impl. */
CTRIO_API int ctrio_socket_new_custom(const ctrio_socket_ops *ops, void *impl, int family,
                                      int type, int protocol, ctrio_socket **out);
CTRIO_API void *ctrio_socket_impl(const ctrio_socket *s);

/* The two hooks of trio.socket, per run: each returns the previous one
 * (NULL: the default). The factory serves ctrio_socket_open only. A
 * resolver is called in the calling task for lookups that are not numeric;
 * it returns 0, a CTRIO_EAI_* code or -errno, and its results are copied and
 * then released through its freeaddrinfo. ctrio_getaddrinfo's cancel point
 * comes before the resolver is called; its schedule point is the resolver's
 * own (a resolver that never yields makes the lookup a cancel point only).
 * A NULL entry means the default: a factory without socket makes kernel
 * sockets, a resolver without getaddrinfo or getnameinfo leaves that lookup
 * to the system, one without freeaddrinfo keeps its results. */
typedef struct ctrio_socket_factory {
    void *ctx;
    int (*socket)(void *ctx, int family, int type, int protocol, ctrio_socket **out);
    void (*reserved[CTRIO_RESERVED_WORDS])(void); /* NULL */
} ctrio_socket_factory;
typedef struct ctrio_hostname_resolver {
    void *ctx;
    int (*getaddrinfo)(void *ctx, const char *host, const char *service,
                       const struct addrinfo *hints, struct addrinfo **res);
    int (*getnameinfo)(void *ctx, const struct sockaddr *sa, socklen_t salen, char *host,
                       size_t hostlen, char *serv, size_t servlen, int flags);
    void (*freeaddrinfo)(void *ctx, struct addrinfo *res);
    void (*reserved[CTRIO_RESERVED_WORDS])(void); /* NULL */
} ctrio_hostname_resolver;
/* trio.socket.set_custom_socket_factory / set_custom_hostname_resolver:
 * install f (r) for the current run only; NULL puts the default back. The
 * struct must stay valid while installed. Each returns the previous one
 * (NULL: the default), and NULL with a message outside a run. Not a
 * checkpoint; tasks of the run see the change at their next call. */
CTRIO_API const ctrio_socket_factory *
ctrio_set_custom_socket_factory(const ctrio_socket_factory *f);
CTRIO_API const ctrio_hostname_resolver *
ctrio_set_custom_hostname_resolver(const ctrio_hostname_resolver *r);

/* ------------------------------------------------------------------------ */
/* 6b. Datagrams: control messages, segmentation offload (not in Trio)      */
/* ------------------------------------------------------------------------ */
/*
 * Control messages without CMSG_* arithmetic. Storage is the caller's: declare
 * it with CTRIO_CMSG_STORAGE and the sum of the CTRIO_CMSG_SPACE_* sizes of
 * what it must hold (aligned for struct cmsghdr, on any stack).
 *
 * To send: ctrio_cmsg_buf_init binds a builder to a struct msghdr (one of a
 * struct mmsghdr batch too) and the storage; each ctrio_cmsg_add_* appends one
 * message and updates msg_control/msg_controllen, or returns -ENOBUFS and
 * leaves both as they were when the storage is too small.
 *
 *     CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_PKTINFO + CTRIO_CMSG_SPACE_SEGMENT);
 *     ctrio_cmsg_buf cb;
 *     ctrio_cmsg_buf_init(&cb, &msg, &st, sizeof st);
 *     ctrio_cmsg_add_pktinfo(&cb, (struct sockaddr *)&asked_on, ifindex);
 *
 * To receive: msg.msg_control = &st; msg.msg_controllen = sizeof st (again
 * before each receive: the kernel writes back the length it used), then the
 * ctrio_cmsg_get_* readers on the received msghdr. Each returns 0 when the
 * message is there, -ENOENT when it is not, and -EMSGSIZE when it is not
 * there but the kernel cut the control data (MSG_CTRUNC: the storage was too
 * small): a truncation is reported, never taken for an absence. The readers
 * never yield and need no run.
 *
 * Ask the kernel for what a socket should receive with
 * ctrio_socket_enable_cmsg (the right option for the socket's family).
 */
struct timespec;
struct sock_extended_err;

/* The bytes each message takes in the storage (CMSG_SPACE of its data). */
#define CTRIO_CMSG_SPACE_PKTINFO CMSG_SPACE(20)   /* in6_pktinfo (in_pktinfo: 12) */
#define CTRIO_CMSG_SPACE_TIMESTAMP CMSG_SPACE(16) /* struct timespec */
#define CTRIO_CMSG_SPACE_FDS(n) CMSG_SPACE((n) * sizeof(int))
#define CTRIO_CMSG_SPACE_SEGMENT CMSG_SPACE(sizeof(int)) /* UDP_SEGMENT / UDP_GRO */
/* sock_extended_err (16) and the offender's address (sockaddr_in6: 28) */
#define CTRIO_CMSG_SPACE_ERROR CMSG_SPACE(16 + 28)
/* Declare storage for control messages: sizeof name is its size. */
#define CTRIO_CMSG_STORAGE(name, space)                                                            \
    union {                                                                                        \
        struct cmsghdr align_;                                                                     \
        unsigned char bytes[(space)];                                                              \
    } name

/* A builder over one msghdr's control data. */
typedef struct ctrio_cmsg_buf {
    struct msghdr *msg;
    size_t cap; /* bytes of storage */
    void *reserved[CTRIO_RESERVED_WORDS];
} ctrio_cmsg_buf;
/* Bind cb to msg and storage (cap bytes) and empty it: msg_control = storage,
 * msg_controllen = 0. -EINVAL for NULL or storage not aligned for struct
 * cmsghdr. Call again to reuse the storage for another send. */
CTRIO_API int ctrio_cmsg_buf_init(ctrio_cmsg_buf *cb, struct msghdr *msg, void *storage,
                                  size_t cap);

/* What ctrio_socket_enable_cmsg asks for (or-ed). */
#define CTRIO_CMSG_PKTINFO 1u   /* IP_PKTINFO / IPV6_RECVPKTINFO */
#define CTRIO_CMSG_TIMESTAMP 2u /* SO_TIMESTAMPNS */
#define CTRIO_CMSG_RECVERR 4u   /* IP_RECVERR / IPV6_RECVERR: the error queue */
/* Turn on the control messages in what (CTRIO_CMSG_*) for the datagrams this
 * socket receives, with the options of its family (AF_INET: IP_*, AF_INET6:
 * IPV6_*, which also cover IPv4-mapped traffic). Not a checkpoint. -EINVAL
 * for an unknown bit, -EAFNOSUPPORT for PKTINFO or RECVERR on a family other
 * than AF_INET/AF_INET6; else the first setsockopt failure. */
CTRIO_API int ctrio_socket_enable_cmsg(ctrio_socket *s, unsigned what);

/* IP_PKTINFO / IPV6_PKTINFO: where a datagram was sent to. *dst gets the
 * destination address of the datagram's header (AF_INET or AF_INET6, port 0;
 * a link-local IPv6 address gets the interface as its scope id), *ifindex
 * (may be NULL) the interface it came in on. Answering from the address a
 * query came to is this address, with ctrio_cmsg_add_pktinfo. */
CTRIO_API int ctrio_cmsg_get_pktinfo(const struct msghdr *msg, struct sockaddr_storage *dst,
                                     int *ifindex);
/* Set the source of a datagram being sent: src's address (its port is
 * ignored; the socket's own is used) and the interface ifindex (0: the
 * route's; for IPv6, 0 takes src's scope id). AF_INET src: IP_PKTINFO, for an
 * AF_INET socket; AF_INET6: IPV6_PKTINFO, for an AF_INET6 socket. src may be
 * the unspecified address (0.0.0.0, ::) to choose the interface only, as for
 * an answer to a datagram sent to a broadcast or multicast address.
 * -EAFNOSUPPORT for another family, -ENOBUFS if the storage is full. */
CTRIO_API int ctrio_cmsg_add_pktinfo(ctrio_cmsg_buf *cb, const struct sockaddr *src, int ifindex);
/* SO_TIMESTAMPNS (ask with CTRIO_CMSG_TIMESTAMP): *ts gets when the kernel
 * received the datagram, on CLOCK_REALTIME. Returns 0; -ENOENT when the
 * message has none; -EMSGSIZE when the control data was cut (MSG_CTRUNC);
 * -EINVAL for NULL. Never yields; needs no run. */
CTRIO_API int ctrio_cmsg_get_timestamp(const struct msghdr *msg, struct timespec *ts);

/* SCM_RIGHTS, AF_UNIX: append a message that sends n descriptors (1..253;
 * the caller keeps them: the receiver gets copies) to cb's control data.
 * Returns 0; -ENOBUFS when the storage is too small (CTRIO_CMSG_SPACE_FDS(n)),
 * msg left as it was; -EINVAL for NULL or n out of range. Never yields. */
CTRIO_API int ctrio_cmsg_add_fds(ctrio_cmsg_buf *cb, const int *fds, size_t n);
/* Take the descriptors a message carried (close-on-exec: ctrio_socket_recvmsg
 * adds MSG_CMSG_CLOEXEC): up to max into fds, returns how many (0 when there
 * were none); they are then the caller's, and the message no longer holds
 * them. Never a leaked descriptor: when the control data was cut
 * (MSG_CTRUNC: the kernel itself dropped the descriptors that did not fit)
 * every descriptor that did arrive is closed and the call returns -EMSGSIZE;
 * when more arrived than max, all are closed and it returns -ENOBUFS. */
CTRIO_API int ctrio_cmsg_take_fds(struct msghdr *msg, int *fds, size_t max);
/* Close every descriptor a received message still holds (those not taken
 * by ctrio_cmsg_take_fds): for a receiver that wants none, or an error path,
 * so that no descriptor leaks. Returns how many it closed (0: none),
 * -EINVAL for NULL. Never yields; needs no run. */
CTRIO_API int ctrio_cmsg_close_fds(struct msghdr *msg);

/* UDP_GRO (ctrio_socket_set_gro): returns the size of each datagram
 * coalesced into the buffer received (the last may be shorter); -ENOENT
 * when the receive was one datagram; -EMSGSIZE when the control data was
 * cut; -EINVAL for NULL. Never yields. ctrio_socket_recv_segments does this
 * for you. */
CTRIO_API int ctrio_cmsg_get_segment_size(const struct msghdr *msg);
/* UDP_SEGMENT: have the kernel cut the buffer sent into datagrams of
 * seg_size (1..65507) bytes, at most 64 of them, the last may be shorter.
 * No probe and no fallback here: ctrio_socket_send_segments has both.
 * Returns 0; -ENOBUFS when the storage is full; -EINVAL for NULL or seg_size
 * out of range. Never yields. */
CTRIO_API int ctrio_cmsg_add_segment_size(ctrio_cmsg_buf *cb, size_t seg_size);

/* IP_RECVERR / IPV6_RECVERR, read from the error queue
 * (ctrio_socket_recvmsg(s, &msg, MSG_ERRQUEUE)): *err gets the extended
 * error (ee_errno, ee_origin, ee_type, ee_code, ee_info: <linux/errqueue.h>),
 * and *offender (may be NULL) the address of the node that reported it, for
 * an ICMP error (AF_UNSPEC when there is none). */
CTRIO_API int ctrio_cmsg_get_error(const struct msghdr *msg, struct sock_extended_err *err,
                                   struct sockaddr_storage *offender);

/* UDP segmentation offload. Send len bytes as datagrams of seg_size bytes
 * each (the last may be shorter) to addr (NULL: a connected socket's peer).
 * The first call on a socket probes it (getsockopt UDP_SEGMENT) and keeps the
 * answer; where the kernel offers UDP_SEGMENT, one sendmsg carries up to 64
 * datagrams (and at most 65,507 bytes). Where it does not, or refuses a send
 * with EIO (a device without checksum offload), ENOPROTOOPT or EOPNOTSUPP,
 * the socket stops using it, and the datagrams of that send go one sendmsg
 * each; EINVAL or EMSGSIZE (a segment over the path's MTU, say) fall back
 * for that send only. Either way every datagram is sent exactly once: a
 * refused send carried none. A checkpoint per sendmsg. Returns the bytes
 * sent: len, or fewer (whole datagrams) when an error or a cancellation came
 * after the first datagrams went; the error, -ECANCELED included, when none
 * went. -EINVAL for seg_size 0 or above 65,507. */
CTRIO_API ssize_t ctrio_socket_send_segments(ctrio_socket *s, const void *buf, size_t len,
                                             size_t seg_size, int flags,
                                             const struct sockaddr *addr, socklen_t addrlen);
/* The most bytes of control messages ctrio_socket_sendmsg_segments takes
 * from its caller (beside the UDP_SEGMENT message it adds). */
#define CTRIO_SEGMENTS_CONTROL_MAX 512
/* The same for a whole message, as sendmsg: msg's data (msg_iov, any number
 * of entries up to IOV_MAX, cut where the datagrams fall whatever the
 * entries' sizes) goes as datagrams of seg_size bytes each to msg_name (NULL:
 * a connected socket's peer), and every datagram carries msg's own control
 * messages: IP_PKTINFO (answer from the address a query came to), IP_TOS or
 * IPV6_TCLASS (ECN, as QUIC sends), built with ctrio_cmsg_buf, at most
 * CTRIO_SEGMENTS_CONTROL_MAX bytes of them. The probe, the fallbacks and the
 * partial results are ctrio_socket_send_segments's; a fallback sends each
 * datagram with the same control messages. msg is not changed, and
 * msg_flags is ignored. Returns the bytes sent (whole datagrams), or the
 * error when none went; -EINVAL for NULL, a NULL buffer of non-zero length,
 * seg_size 0 or above 65,507, or control messages that hold UDP_SEGMENT
 * already; -ENOBUFS when they exceed CTRIO_SEGMENTS_CONTROL_MAX; -EMSGSIZE
 * for more than IOV_MAX entries. No data sends one empty datagram. A
 * checkpoint per sendmsg. */
CTRIO_API ssize_t ctrio_socket_sendmsg_segments(ctrio_socket *s, const struct msghdr *msg,
                                                size_t seg_size, int flags);
/* Receive coalescing (UDP_GRO), off unless asked for on a socket: on, one
 * receive may return many datagrams from one sender, of one size, back to
 * back (give it a buffer of 64 KiB: a smaller one cuts the batch and loses
 * the rest). -ENOPROTOOPT where the kernel lacks it (each receive then stays
 * one datagram). Not a checkpoint. */
CTRIO_API int ctrio_socket_set_gro(ctrio_socket *s, bool on);
/* recvfrom with coalescing understood: returns the bytes received, *seg_size
 * the size of each datagram in them (the last may be shorter; equal to the
 * return value when it is one datagram). *msg_flags (may be NULL) gets
 * MSG_TRUNC when the buffer cut the data: the last datagram is incomplete
 * (and the ones after it lost). addr/addrlen as recvfrom (may be NULL). */
CTRIO_API ssize_t ctrio_socket_recv_segments(ctrio_socket *s, void *buf, size_t len,
                                             size_t *seg_size, struct sockaddr *addr,
                                             socklen_t *addrlen, int *msg_flags);
/* Walk the datagrams of a received buffer (after ctrio_socket_recv_segments
 * or a UDP_GRO receive): init with what was received (buf, len) and the
 * segment size (0: one datagram), then each ctrio_segment_next sets *dgram
 * and *len to one datagram, in order, and returns true, until it returns
 * false (a received empty datagram is one of 0 bytes). No copy, no system
 * call: the pointers are into buf. */
typedef struct ctrio_segment_iter {
    const unsigned char *next;
    size_t left, seg_size;
    bool started;
    void *reserved[CTRIO_RESERVED_WORDS];
} ctrio_segment_iter;
/* ctrio_segment_iter_init(it, buf, len, seg_size) starts a walk over the
 * len bytes received in buf, cut every seg_size bytes (0, or above len: one
 * datagram); ctrio_segment_next(it, &dgram, &dlen) returns true with the next
 * datagram (pointer into buf, its length), false after the last one or for
 * NULL. Neither yields nor needs a run. */
CTRIO_API void ctrio_segment_iter_init(ctrio_segment_iter *it, const void *buf, size_t len,
                                       size_t seg_size);
CTRIO_API bool ctrio_segment_next(ctrio_segment_iter *it, const void **dgram, size_t *len);

/* ------------------------------------------------------------------------ */
/* 7. Streams and servers: Trio's high-level networking                     */
/* ------------------------------------------------------------------------ */

/* trio.abc.HalfCloseableStream. A second concurrent receive_some, or a
 * second concurrent send_all / send_eof / wait_send_all_might_not_block,
 * gets -EBUSY. A task blocked in a stream that another task closes gets
 * -EBADF. A peer that went away shows as -EPIPE / -ECONNRESET. */
typedef struct ctrio_stream ctrio_stream;
/* receive_some: receive up to max (>= 1) bytes into buf, at least one
 * unless the stream ended. A checkpoint. Returns the bytes received; 0 at
 * end of stream (the peer's send_eof or close); -ECANCELED: no byte was
 * taken; -EBUSY if another task receives; -EBADF once closed (or closed
 * while waiting); -EPIPE / -ECONNRESET for a peer gone; -EINVAL for max 0. */
CTRIO_API ssize_t ctrio_stream_receive_some(ctrio_stream *s, void *buf, size_t max);
/* send_all: send all len bytes, waiting as often as needed; a checkpoint
 * (len 0 too). Returns 0 once every byte went to the transport, or fails:
 * -EBADF after send_eof or close; -EBUSY if another task is sending;
 * -EPIPE / -ECONNRESET for a peer gone. Cancelled (-ECANCELED), or failed,
 * part of the data may have been sent: as in Trio, the stream is then
 * broken and should only be closed. -EINVAL for NULL buf with len > 0. */
CTRIO_API int ctrio_stream_send_all(ctrio_stream *s, const void *buf, size_t len);
/* send_eof: half-close (shutdown(SHUT_WR) on a socket stream): the peer's
 * receive_some returns 0 once it has read the rest, and receiving here goes
 * on; idempotent; a checkpoint. Returns 0, -ECANCELED (not sent), -EBUSY
 * during a send_all, -EBADF once closed, -EOPNOTSUPP for a stream that
 * cannot half-close.
 * wait_send_all_might_not_block: block until send_all could take some data
 * without waiting (on TCP: below TCP_NOTSENT_LOWAT); a checkpoint; returns
 * 0, -ECANCELED, -EBUSY during another send-side call, -EBADF once closed. */
CTRIO_API int ctrio_stream_send_eof(ctrio_stream *s);
CTRIO_API int ctrio_stream_wait_send_all_might_not_block(ctrio_stream *s);
/* aclose: always closes and frees (tasks blocked in the stream get -EBADF;
 * the memory goes when the last of them has returned); then a checkpoint
 * (so it may return -ECANCELED after closing, as Trio's aclose raises
 * Cancelled). Returns 0, the transport's close error, or -ECANCELED;
 * -EINVAL for NULL. Never use s after this call, whatever it returned. */
CTRIO_API int ctrio_stream_close(ctrio_stream *s);

/* The operations behind a stream (for memory streams, TLS, test doubles).
 * A NULL entry: the call returns -EOPNOTSUPP (close: nothing to release). */
typedef struct ctrio_stream_ops {
    ssize_t (*receive_some)(ctrio_stream *s, void *buf, size_t max);
    int (*send_all)(ctrio_stream *s, const void *buf, size_t len);
    int (*send_eof)(ctrio_stream *s);
    int (*wait_send_all_might_not_block)(ctrio_stream *s);
    /* release impl. Not a checkpoint by itself, but it may block (a TLS
     * stream sends close_notify): meanwhile the stream counts as closed,
     * every other call on it returns -EBADF. */
    int (*close)(ctrio_stream *s);
    void (*reserved[CTRIO_RESERVED_WORDS])(void); /* NULL */
} ctrio_stream_ops;
/* Make a stream backed by ops (which must outlive it) and impl: memory
 * streams, TLS, a test double. The public calls check arguments and state
 * (-EBUSY, -EBADF) before calling ops; ctrio_stream_impl(s) returns impl
 * (NULL for NULL). Not a checkpoint. Returns 0, -EINVAL for NULL ops or
 * out, -ENOMEM. ctrio_stream_close calls ops->close, which releases impl. */
CTRIO_API int ctrio_stream_new_custom(const ctrio_stream_ops *ops, void *impl,
                                      ctrio_stream **out);
CTRIO_API void *ctrio_stream_impl(const ctrio_stream *s);
/* The operations table a stream was made with: compare it with a wrapper's
 * own table to tell its streams from others before using ctrio_stream_impl.
 * Returns the ops pointer, NULL for NULL. Not a checkpoint; no side effect. */
CTRIO_API const ctrio_stream_ops *ctrio_stream_get_ops(const ctrio_stream *s);

/* trio.SocketStream: a stream over a connected SOCK_STREAM socket, which it
 * owns from then on (on failure the socket stays the caller's). Sets
 * TCP_NODELAY (and TCP_NOTSENT_LOWAT 16 KiB) on TCP sockets, as Trio. Not a
 * checkpoint. Returns 0, -EINVAL for a socket not SOCK_STREAM or NULL
 * arguments, -ENOMEM. Closing the stream closes the socket. */
CTRIO_API int ctrio_socket_stream_new(ctrio_socket *sock, ctrio_stream **out);
/* SocketStream.socket: returns the socket under a SocketStream (for
 * getsockopt, getpeername...; the stream still owns it: do not close it),
 * NULL for another kind of stream or NULL. Not a checkpoint. */
CTRIO_API ctrio_socket *ctrio_socket_stream_socket(ctrio_stream *s);

/* trio.abc.Listener: a socket listener, a Unix listener, a TLS listener
 * (ctrio_tls.h) or a custom one (ctrio_listener_new_custom below); the calls
 * below keep the same rules for all of them. */
typedef struct ctrio_listener ctrio_listener;
/* Accept the next connection as a stream (*out; NULL on failure). A
 * checkpoint. -EINVAL for a NULL argument, -EPERM outside a task, -EBADF on
 * a closed listener; a task blocked in accept when another task closes the
 * listener gets -EBADF (an accept that had already completed returns its
 * stream). A second task accepting on a socket listener at the same time
 * gets -EBUSY (Trio's BusyResourceError); a custom listener decides. */
CTRIO_API int ctrio_listener_accept(ctrio_listener *l, ctrio_stream **out);
/* aclose: release and free, then a checkpoint (it may return -ECANCELED
 * after closing); tasks blocked in accept get -EBADF, and the memory is freed
 * once the last of them has returned. Closing again is -EBADF only while
 * such a task still holds the listener; after that the handle is dead. A
 * Unix listener unlinks its path if the path still names the socket it
 * created. */
CTRIO_API int ctrio_listener_close(ctrio_listener *l);

/* The operations behind a listener (for TLS, in-memory listeners, test
 * doubles). ctrio_listener_accept and ctrio_listener_close check the
 * arguments and the state, then call these; ctrio_listener_impl(l) returns
 * the impl given to ctrio_listener_new_custom, NULL once l is closed. A NULL
 * accept: ctrio_listener_accept returns -EOPNOTSUPP; a NULL close: nothing
 * to release (0).
 *  - accept: a checkpoint (it may block), returns 0 and a new stream in
 *    *out, or -errno. It runs in a cancel scope of its own that a close from
 *    another task cancels before calling close: waits on ctrio calls (sleep,
 *    event, channel, socket, another listener's accept) return -ECANCELED,
 *    and any error it returns then becomes -EBADF. Because close may have
 *    released impl meanwhile, accept reads ctrio_listener_impl(l) again
 *    after each wait, and once it is NULL touches impl no more (a stream it
 *    got is returned as success; anything else it holds it releases). Waits
 *    it makes in a shielded scope, or that cannot be aborted, are not woken.
 *  - close: releases impl; not a checkpoint (ctrio_listener_close adds it).
 *    Tasks blocked in accept have been woken but have not run yet; what
 *    they still touch when they return (a ctrio object they waited on
 *    handles this itself) must stay valid. A listener that wraps another
 *    closes it here with ctrio_listener_close (whose checkpoint then comes
 *    before the outer one); it releases its own memory after that call. */
typedef struct ctrio_listener_ops {
    int (*accept)(ctrio_listener *l, ctrio_stream **out);
    int (*close)(ctrio_listener *l);
    void (*reserved[CTRIO_RESERVED_WORDS])(void); /* NULL */
} ctrio_listener_ops;
/* Make a listener backed by ops (which must outlive it) and impl, with the
 * rules of ctrio_listener_ops above; ctrio_listener_impl(l) returns impl,
 * NULL once l is closed (or for NULL). Not a checkpoint. Returns 0, -EINVAL
 * for NULL ops or out, -ENOMEM. */
CTRIO_API int ctrio_listener_new_custom(const ctrio_listener_ops *ops, void *impl,
                                        ctrio_listener **out);
CTRIO_API void *ctrio_listener_impl(const ctrio_listener *l);
/* The operations table a listener was made with: compare it with a
 * wrapper's own table to tell its listeners from others before using
 * ctrio_listener_impl. Returns the ops pointer, NULL for NULL. Not a
 * checkpoint. */
CTRIO_API const ctrio_listener_ops *ctrio_listener_get_ops(const ctrio_listener *l);
/* trio.SocketListener over a listening socket, which it owns from then on.
 * accept retries the errors of one failed connection (ECONNABORTED, EPROTO,
 * EPERM, and the network errors Linux reports on accept), returns the rest.
 * On EMFILE/ENFILE it refuses the pending connection at once with libuv's
 * spare-descriptor trick, then returns the error (Trio #73). */
CTRIO_API int ctrio_socket_listener_new(ctrio_socket *sock, ctrio_listener **out);
/* SocketListener.socket: returns the socket under a SocketListener (or Unix
 * listener), e.g. to read the port of a port 0 listener with
 * ctrio_socket_getsockname; the listener still owns it. NULL for another
 * kind of listener, a closed one, or NULL. Not a checkpoint. */
CTRIO_API ctrio_socket *ctrio_socket_listener_socket(ctrio_listener *l);

typedef struct ctrio_tcp_stream_options {
    double happy_eyeballs_delay;          /* seconds between attempts; 0 = 0.25 (RFC 8305) */
    const struct sockaddr *local_address; /* bind before connect (port chosen late) */
    socklen_t local_address_len;
    void *reserved[CTRIO_RESERVED_WORDS]; /* 0 */
} ctrio_tcp_stream_options;
/* trio.open_tcp_stream: resolve host, then happy eyeballs (RFC 8305) over
 * every address, families interleaved: a new attempt every delay or as soon
 * as the previous fails; the first connection wins and the others are
 * cancelled and closed. A checkpoint (the lookup and every connect are).
 * Returns 0 and *out, a SocketStream; a CTRIO_EAI_* code if host does not
 * resolve; if all fail, the first attempt's error (-ECONNREFUSED...);
 * -ECANCELED, nothing left open; -EINVAL for NULL host or out, or a port
 * outside 0..65535. */
CTRIO_API int ctrio_open_tcp_stream(const char *host, int port, ctrio_stream **out);
CTRIO_API int ctrio_open_tcp_stream_with(const char *host, int port,
                                         const ctrio_tcp_stream_options *opts,
                                         ctrio_stream **out);
/* trio.open_unix_socket: connect to a Unix-domain stream socket at path
 * ("@name": an abstract name) and return it as a SocketStream in *out. A
 * checkpoint. Returns 0; connect(2)'s -errno (-ENOENT, -ECONNREFUSED...);
 * -ECANCELED, nothing left open; -ENAMETOOLONG for a path longer than
 * sun_path holds; -EINVAL for NULL or an empty path. */
CTRIO_API int ctrio_open_unix_socket(const char *path, ctrio_stream **out);

/* trio.open_tcp_listeners: one listener per address of a passive lookup of
 * host (NULL: every local address), SO_REUSEADDR, IPV6_V6ONLY on IPv6,
 * backlog <= 0 meaning as large as the system allows (Trio's 0xFFFF). With
 * port 0 every listener gets the same free port (better than Trio #283).
 * *out is an array of *count listeners: free it with ctrio_listeners_close. */
CTRIO_API int ctrio_open_tcp_listeners(int port, const char *host, int backlog,
                                       ctrio_listener ***out, size_t *count);
CTRIO_API void ctrio_listeners_close(ctrio_listener **ls, size_t count);
/* Options of ctrio_open_tcp_listeners_with and ctrio_serve_tcp_with. Zero
 * every field you do not set (= {0}): 0 is the default of each field, and
 * fields added later will keep that rule. */
typedef struct ctrio_tcp_listen_options {
    int backlog; /* <= 0: as large as the system allows (Trio's 0xFFFF) */
    /* nonzero: SO_REUSEPORT on every listening socket, so that each run of a
     * ctrio_run_parallel group listens on the same port and the kernel
     * spreads the connections among them. With port 0, the first run of the
     * group to bind for this host publishes its port and every other port-0
     * request of the group for the same host (in any run, for the group's
     * life) takes it. A kernel or family that refuses SO_REUSEPORT: the
     * setsockopt's -errno (-ENOPROTOOPT, -EOPNOTSUPP...), nothing left open. */
    int reuseport;
    /* nonzero: SO_INCOMING_CPU set to the CPU this run is pinned to (in an
     * unpinned run, the one it runs on now), so that with reuseport the
     * kernel prefers the listener of the run on the CPU that received the
     * packets; its -errno if refused. */
    int incoming_cpu;
    void *reserved[CTRIO_RESERVED_WORDS]; /* 0 */
} ctrio_tcp_listen_options;
/* ctrio_open_tcp_listeners with options (opts may be NULL: all defaults;
 * see ctrio_tcp_listen_options: backlog, reuseport, incoming_cpu). Returns
 * as ctrio_open_tcp_listeners (0 and *out, *count; or the first error), or
 * the -errno of an option the kernel refused (-ENOPROTOOPT...). */
CTRIO_API int ctrio_open_tcp_listeners_with(int port, const char *host,
                                            const ctrio_tcp_listen_options *opts,
                                            ctrio_listener ***out, size_t *count);
/* A Unix-domain listener at path (which must not exist yet); closing it
 * unlinks the path only if it still names this socket (Trio #279). backlog
 * <= 0: as large as the system allows. A checkpoint (the bind of a path
 * runs in a worker thread). Returns 0 and *out; -EADDRINUSE if path exists;
 * bind(2)'s or listen(2)'s -errno; -ENAMETOOLONG; -EINVAL for NULL. */
CTRIO_API int ctrio_open_unix_listener(const char *path, int backlog, ctrio_listener **out);

typedef struct ctrio_listener_set {
    ctrio_listener **listeners;
    size_t count;
} ctrio_listener_set;
typedef int (*ctrio_stream_handler)(ctrio_stream *s, void *arg);
/* trio.serve_listeners: accept on every listener (of any kind: socket, Unix,
 * TLS, custom), run h(stream, arg) as a new task per connection, close each
 * stream when its handler returns. A
 * handler's failure stops the server with that error, as in Trio. EMFILE,
 * ENFILE, ENOMEM, ENOBUFS on accept: wait 100 ms and go on (a
 * CTRIO_LOG_WARNING note, at most one a second per listener). Launched with
 * ctrio_start, it reports a const ctrio_listener_set * (valid while it serves)
 * through ctrio_task_started. Runs until cancelled; closes the listeners
 * when it returns and sets their entries in ls to NULL; the array itself
 * stays the caller's to free (free(), or ctrio_listeners_close for an array
 * from ctrio_open_tcp_listeners: it skips NULL entries). Except on -EINVAL
 * for bad arguments and -EPERM outside a task, when nothing was touched. A handler may close its stream
 * itself; otherwise the server closes it when the handler returns. */
CTRIO_API int ctrio_serve_listeners(ctrio_stream_handler h, void *arg, ctrio_listener **ls,
                                    size_t n);
/* trio.serve_tcp: ctrio_open_tcp_listeners(port, host, backlog) then
 * ctrio_serve_listeners(h, arg) on them: h(stream, arg) runs as a task per
 * connection. Runs until cancelled (then returns -ECANCELED) or a handler
 * fails (returns its error); an error opening the listeners is returned at
 * once. Launch it with ctrio_start to learn the port of a port 0 server. */
CTRIO_API int ctrio_serve_tcp(ctrio_stream_handler h, void *arg, int port, const char *host,
                              int backlog);
/* ctrio_open_tcp_listeners_with + ctrio_serve_listeners (opts may be NULL).
 * In every run of a ctrio_run_parallel group, with reuseport: one server
 * on one port, the kernel spreading the connections over the runs. */
CTRIO_API int ctrio_serve_tcp_with(ctrio_stream_handler h, void *arg, int port, const char *host,
                                   const ctrio_tcp_listen_options *opts);
/* ctrio_open_unix_listener(path, backlog) then ctrio_serve_listeners(h, arg):
 * h(stream, arg) runs as a task per connection. Runs until cancelled (then
 * returns -ECANCELED) or a handler fails (returns its error); an error
 * opening the listener is returned at once. The path is unlinked when the
 * server returns. */
CTRIO_API int ctrio_serve_unix(ctrio_stream_handler h, void *arg, const char *path,
                               int backlog);

#ifdef __cplusplus
}
#endif
#endif /* CTRIO_H */
