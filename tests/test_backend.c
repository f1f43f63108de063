/*
 * test_backend.c — choosing the I/O backend (SPEC §11): ctrio_config.backend,
 * $CTRIO_BACKEND, ctrio_current_backend(), and what happens where io_uring
 * is refused (a seccomp filter, as Docker's default profile installs).
 */
#include "support.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct logged {
    int n;
    char last[256];
} logged;

static void keep_log(int level, const char *msg, void *arg)
{
    logged *l = arg;
    if (level >= CTRIO_LOG_ERROR) {
        l->n++;
        snprintf(l->last, sizeof l->last, "%s", msg);
    }
}

static int name_main(void *arg)
{
    const char **out = arg;
    *out = ctrio_current_backend();
    return 0;
}

static const char *run_named(int backend, int *rc, logged *l)
{
    const char *name = NULL;
    ctrio_config cfg = {.backend = backend, .log = keep_log, .log_arg = l};
    *rc = ctrio_run_with(&cfg, name_main, &name);
    return name;
}

/* Outside a run there is none; inside, the one $CTRIO_BACKEND names (the
 * suite runs once per backend), or epoll. */
static void test_current_backend(void **state)
{
    (void)state;
    assert_null(ctrio_current_backend());
    logged l = {0};
    int rc;
    const char *name = run_named(CTRIO_BACKEND_DEFAULT, &rc, &l);
    assert_int_equal(rc, 0);
    assert_non_null(name);
    assert_string_equal(name, test_backend());
    assert_int_equal(l.n, 0);
    assert_null(ctrio_current_backend());
}

/* ctrio_config.backend wins over $CTRIO_BACKEND. */
static void test_config_wins(void **state)
{
    (void)state;
    logged l = {0};
    int rc;
    assert_string_equal(run_named(CTRIO_BACKEND_EPOLL, &rc, &l), "epoll");
    assert_int_equal(rc, 0);
    const char *name = run_named(CTRIO_BACKEND_IO_URING, &rc, &l);
    if (rc == 0) {
        assert_string_equal(name, "io_uring");
    } else { /* refused here: its error, and a message saying so */
        assert_true(rc < 0);
        assert_int_equal(l.n, 1);
        assert_non_null(strstr(l.last, "io_uring"));
    }
}

/* Unknown backends: -EINVAL and a message naming what was asked. */
static void test_unknown_backend(void **state)
{
    (void)state;
    logged l = {0};
    int rc;
    assert_null(run_named(99, &rc, &l));
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(l.n, 1);
    assert_non_null(strstr(l.last, "99"));

    const char *was = getenv("CTRIO_BACKEND");
    char *saved = was ? strdup(was) : NULL;
    setenv("CTRIO_BACKEND", "kqueue", 1);
    l = (logged){0};
    assert_null(run_named(CTRIO_BACKEND_DEFAULT, &rc, &l));
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(l.n, 1);
    assert_non_null(strstr(l.last, "kqueue"));
    /* the configuration still wins over a bad variable */
    assert_string_equal(run_named(CTRIO_BACKEND_EPOLL, &rc, &l), "epoll");
    assert_int_equal(rc, 0);
    if (saved) {
        setenv("CTRIO_BACKEND", saved, 1);
        free(saved);
    } else {
        unsetenv("CTRIO_BACKEND");
    }
}

/* A seccomp filter that fails io_uring_setup with EPERM, as Docker's
 * default profile does. */
static int refuse_io_uring(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* In a child with io_uring refused: asked for by name (config or
 * environment), the run fails with -EPERM and a message; the default falls
 * back to epoll silently (SPEC §11). Exit status: 0 pass, else the step. */
static int refused_child(void)
{
    if (refuse_io_uring() < 0)
        return 10;
    if (syscall(__NR_io_uring_setup, 4, NULL) != -1 || errno != EPERM)
        return 11; /* the filter is not in place */
    logged l = {0};
    int rc;
    if (run_named(CTRIO_BACKEND_IO_URING, &rc, &l) != NULL || rc != -EPERM)
        return 1;
    if (l.n != 1 || !strstr(l.last, "io_uring"))
        return 2;
    setenv("CTRIO_BACKEND", "io_uring", 1);
    l = (logged){0};
    if (run_named(CTRIO_BACKEND_DEFAULT, &rc, &l) != NULL || rc != -EPERM || l.n != 1)
        return 3;
    unsetenv("CTRIO_BACKEND");
    l = (logged){0};
    const char *name = run_named(CTRIO_BACKEND_DEFAULT, &rc, &l);
    if (rc != 0 || !name || strcmp(name, "epoll") != 0 || l.n != 0)
        return 4;
    return 0;
}

static void test_refused_by_seccomp(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(refused_child());
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 10)
        skip(); /* no seccomp here */
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_current_backend),
        TEST(test_config_wins),
        TEST(test_unknown_backend),
        TEST(test_refused_by_seccomp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
