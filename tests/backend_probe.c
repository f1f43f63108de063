/*
 * backend_probe — exit 0 if the backend that $CTRIO_BACKEND names starts
 * here, 77 (printing why) if it cannot: examples/test_examples.sh skips its
 * io_uring runs so where io_uring is refused (seccomp, kernel.io_uring_disabled,
 * qemu-user).
 */
#include "ctrio.h"

#include <stdio.h>

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

static void quiet(int level, const char *msg, void *arg)
{
    (void)level, (void)msg, (void)arg;
}

int main(void)
{
    ctrio_config cfg = {.log = quiet};
    int rc = ctrio_run_with(&cfg, nothing, NULL);
    if (rc < 0) {
        printf("this backend cannot start here: %s\n", ctrio_strerror(rc));
        return 77;
    }
    return 0;
}
