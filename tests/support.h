/*
 * support.h — what every ctrio test program shares: cmocka, running a test
 * body inside a run (real or mock clock), checkpoint assertions in the style
 * of trio.testing.assert_checkpoints, and the descriptor-leak check that
 * every test ends with.
 */
#ifndef CTRIO_TEST_SUPPORT_H
#define CTRIO_TEST_SUPPORT_H

#include <ctrio.h>
#include <ctrio_testing.h>

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* Run fn(arg) as the main task of a run with a real clock / a mock clock
 * that autojumps at once (Trio's autojump_clock fixture); returns its result. */
int run_real(ctrio_fn fn, void *arg);
int run_mock(ctrio_fn fn, void *arg);

/* Run fn(arg) on a mock clock with the given autojump threshold (< 0: never;
 * run_mock is a threshold of 0). */
int run_autojump(double threshold, ctrio_fn fn, void *arg);

/* CLOCK_MONOTONIC in seconds: real time, whatever clock the run uses. */
double real_now(void);

/* True when the program runs under valgrind (its client request; always
 * false where valgrind.h was missing at build time). */
bool under_valgrind(void);
/* The backend the tests run on ($CTRIO_BACKEND, else "epoll"): white-box
 * tests of one backend's registrations skip on the other. */
const char *test_backend(void);
/* Run by a cross build's emulator (qemu-user: tests/CMakeLists.txt sets
 * CTRIO_TEST_EMULATED), whose threads and CPU affinity are its own. */
bool under_emulator(void);
bool backend_is_epoll(void);

/* The number of open descriptors of this process (/proc/self/fd). */
int count_open_fds(void);
/* Address space of the process, from /proc/self/status (VmSize, KiB); -1 if
 * unknown. */
long vm_size_kib(void);

/* The number of threads of this process (/proc/self/task), or -1. */
int count_threads(void);
/* Poll (real time, every 1 ms, at most `seconds`) until count_threads() <= n;
 * returns the last count. A thread that pthread_join has seen end may still
 * be listed in /proc/self/task for a moment (the kernel clears its tid before
 * it unhashes it), so a count after a join waits for that. */
int wait_threads_at_most(int n, double seconds);

/* A record of events, compared against the expected order: record(s)
 * appends (at most REC_MAX), check_record compares; a test starts with
 * nrec = 0. */
#define REC_MAX 64
extern const char *rec[REC_MAX];
extern int nrec;
void record(const char *s);
void check_record(const char *const *expected, int n);

/* Capture what is written to stderr (descriptor 2; the library's misuse and
 * log messages) between capture_start and capture_end, which restores it and
 * copies the text into buf (NUL-terminated, truncated to size - 1). */
typedef struct capture {
    FILE *tmp;
    int saved;
} capture;
void capture_start(capture *c);
void capture_end(capture *c, char *buf, size_t size);

/* A log hook (ctrio_config.log) that keeps what it is given: log_hook_keep
 * with a log_kept as its argument; run_mock_logged runs fn(arg) as run_mock
 * does, with that hook at min_level. */
#define LOG_KEPT_MAX 64
typedef struct log_kept {
    int n;
    int level[LOG_KEPT_MAX];
    char msg[LOG_KEPT_MAX][256];
} log_kept;
void log_hook_keep(int level, const char *msg, void *arg);
int run_mock_logged(log_kept *kept, int min_level, ctrio_fn fn, void *arg);

/* cmocka setup/teardown that every test uses: the teardown fails the test
 * if it left a descriptor open. */
int fd_setup(void **state);
int fd_teardown(void **state);
#define TEST(fn) cmocka_unit_test_setup_teardown(fn, fd_setup, fd_teardown)

/* Assert how the current task's checkpoint counters move across `stmt`:
 * CP_EXACT(stmt, dc, ds) exactly; ASSERT_CHECKPOINTS (both grow, Trio's
 * assert_checkpoints); ASSERT_NO_CHECKPOINTS (neither grows). */
#define CP_DELTA_(stmt, dc, ds)                                                                   \
    do {                                                                                          \
        ctrio_checkpoint_counts cp_a_ = ctrio_task_checkpoint_counts();                           \
        stmt;                                                                                     \
        ctrio_checkpoint_counts cp_b_ = ctrio_task_checkpoint_counts();                           \
        dc = cp_b_.cancel_points - cp_a_.cancel_points;                                           \
        ds = cp_b_.schedule_points - cp_a_.schedule_points;                                       \
    } while (0)
/* The cancel points of a socket call that completes at once: 1 on epoll (a
 * cancel check, the call, a schedule point); 2 on io_uring, whose call
 * always waits for its completion, and that wait is a cancel point of its
 * own, where a cancellation races the operation in the kernel. */
#define CP_OP (backend_is_epoll() ? 1u : 2u)
#define CP_EXACT(stmt, c, s)                                                                      \
    do {                                                                                          \
        uint64_t dc_, ds_;                                                                        \
        CP_DELTA_(stmt, dc_, ds_);                                                                \
        assert_int_equal(dc_, (c));                                                               \
        assert_int_equal(ds_, (s));                                                               \
    } while (0)
#define ASSERT_CHECKPOINTS(stmt)                                                                  \
    do {                                                                                          \
        uint64_t dc_, ds_;                                                                        \
        CP_DELTA_(stmt, dc_, ds_);                                                                \
        assert_true(dc_ > 0);                                                                     \
        assert_true(ds_ > 0);                                                                     \
    } while (0)
#define ASSERT_NO_CHECKPOINTS(stmt)                                                               \
    do {                                                                                          \
        uint64_t dc_, ds_;                                                                        \
        CP_DELTA_(stmt, dc_, ds_);                                                                \
        assert_int_equal(dc_, 0);                                                                 \
        assert_int_equal(ds_, 0);                                                                 \
    } while (0)

#endif
