/*
 * support.c — see support.h.
 */
#include "support.h"

#include "internal.h"

#include <dirent.h>

int run_real(ctrio_fn fn, void *arg)
{
    return ctrio_run(fn, arg);
}

int run_mock(ctrio_fn fn, void *arg)
{
    ctrio_config cfg = {0};
    cfg.mock_clock = 1;
    cfg.autojump_threshold = 0;
    return ctrio_run_with(&cfg, fn, arg);
}

int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static int fds_at_setup;

int fd_setup(void **state)
{
    (void)state;
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
