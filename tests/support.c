/*
 * support.c — see support.h.
 */
#include "support.h"

#include "internal.h"

#include <dirent.h>
#include <time.h>
#include <unistd.h>

#ifdef CTRIO_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

int run_real(ctrio_fn fn, void *arg)
{
    return ctrio_run(fn, arg);
}

int run_autojump(double threshold, ctrio_fn fn, void *arg)
{
    ctrio_config cfg = {0};
    cfg.mock_clock = 1;
    cfg.autojump_threshold = threshold;
    return ctrio_run_with(&cfg, fn, arg);
}

int run_mock(ctrio_fn fn, void *arg)
{
    return run_autojump(0, fn, arg);
}

void log_hook_keep(int level, const char *msg, void *arg)
{
    log_kept *k = arg;
    assert_true(k->n < LOG_KEPT_MAX);
    k->level[k->n] = level;
    snprintf(k->msg[k->n], sizeof k->msg[0], "%s", msg);
    k->n++;
}

int run_mock_logged(log_kept *kept, int min_level, ctrio_fn fn, void *arg)
{
    ctrio_config cfg = {0};
    cfg.mock_clock = 1;
    cfg.log = log_hook_keep;
    cfg.log_arg = kept;
    cfg.log_level = min_level;
    memset(kept, 0, sizeof *kept);
    return ctrio_run_with(&cfg, fn, arg);
}

const char *test_backend(void)
{
    const char *b = getenv("CTRIO_BACKEND");
    return b && *b ? b : "epoll";
}

bool under_emulator(void)
{
    const char *e = getenv("CTRIO_TEST_EMULATED");
    return e && *e;
}

bool backend_is_epoll(void)
{
    return strcmp(test_backend(), "epoll") == 0;
}

double real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The entries of a /proc directory (not "." and ".."), or -1. */
static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int count_open_fds(void)
{
    int n = count_entries("/proc/self/fd");
    return n < 0 ? -1 : n - 1; /* the directory's own descriptor */
}

/* The process's threads, without io_uring's own workers ("iou-wrk-N",
 * "iou-sqp-N"): the kernel starts and ends those by itself, for requests it
 * cannot complete inline, so they come and go between two counts. */
int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* ended since readdir: not there any more */
        bool named = fgets(comm, sizeof comm, f) != NULL;
        fclose(f);
        if (named && strncmp(comm, "iou-", 4) != 0)
            n++;
    }
    closedir(d);
    return n;
}

int wait_threads_at_most(int n, double seconds)
{
    struct timespec ms = {0, 1000000};
    int c = count_threads();
    for (int i = 0; i < (int)(seconds * 1000) && c > n; i++) {
        nanosleep(&ms, NULL);
        c = count_threads();
    }
    return c;
}

const char *rec[REC_MAX];
int nrec;

void record(const char *s)
{
    assert_true(nrec < REC_MAX);
    rec[nrec++] = s;
}

void check_record(const char *const *expected, int n)
{
    assert_int_equal(nrec, n);
    for (int i = 0; i < n; i++)
        assert_string_equal(rec[i], expected[i]);
}

void capture_start(capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(fileno(c->tmp), STDERR_FILENO) == STDERR_FILENO);
}

void capture_end(capture *c, char *buf, size_t size)
{
    fflush(stderr);
    assert_true(dup2(c->saved, STDERR_FILENO) == STDERR_FILENO);
    close(c->saved);
    rewind(c->tmp);
    size_t n = fread(buf, 1, size - 1, c->tmp);
    buf[n] = '\0';
    fclose(c->tmp);
}

static int fds_at_setup;

static int probe_main(void *arg)
{
    (void)arg;
    return 0;
}

static void quiet_log(int level, const char *msg, void *arg)
{
    (void)level, (void)msg, (void)arg;
}

/* The suite runs once per backend (tests/CMakeLists.txt). Where the one
 * asked for by $CTRIO_BACKEND cannot start (io_uring refused by a seccomp
 * filter, kernel.io_uring_disabled, qemu-user), the whole program is
 * skipped (ctest's SKIP_RETURN_CODE 77), saying why. */
static void skip_if_backend_unavailable(void)
{
    static bool probed;
    if (probed)
        return;
    probed = true;
    if (backend_is_epoll())
        return;
    ctrio_config cfg = {.log = quiet_log}; /* the reason is printed below */
    int rc = ctrio_run_with(&cfg, probe_main, NULL);
    if (rc < 0) {
        printf("backend %s cannot start here (%s): skipped\n", test_backend(), ctrio_strerror(rc));
        fflush(stdout);
        exit(77);
    }
}

int fd_setup(void **state)
{
    (void)state;
    skip_if_backend_unavailable();
    /* A failed assertion inside a task longjmps out of ctrio_run and leaves
     * the thread's run behind: forget it so the next test can run. */
    ctrio__tls_run = NULL;
    fds_at_setup = count_open_fds();
    return 0;
}

int fd_teardown(void **state)
{
    (void)state;
    int now = count_open_fds();
    if (now != fds_at_setup) {
        fprintf(stderr, "descriptor leak: %d open before the test, %d after\n", fds_at_setup,
                now);
        return -1;
    }
    return 0;
}

long vm_size_kib(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

bool under_valgrind(void)
{
#ifdef CTRIO_HAVE_VALGRIND
    return RUNNING_ON_VALGRIND != 0;
#else
    return false;
#endif
}
