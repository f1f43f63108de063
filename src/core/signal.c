/*
 * signal.c — waiting for signals (trio.open_signal_receiver, one signal per
 * call): the signals are blocked in the thread and read from a signalfd,
 * which the run waits on like any other descriptor. A program uses it to turn
 * SIGINT/SIGTERM into a cancellation of its top nursery, which is how the
 * examples exit cleanly.
 */
#include "internal.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

int ctrio_wait_signal(const int *signals, size_t n)
{
    ctrio__task *t = ctrio__need_task("ctrio_wait_signal");
    if (!t)
        return -EPERM;
    if (!signals || n == 0)
        return -EINVAL;
    sigset_t set;
    sigemptyset(&set);
    /* All checked before anything is blocked. SIGKILL and SIGSTOP cannot
     * be blocked or read from a signalfd (the kernel drops them from the
     * set silently): a wait for them alone would never end, so they are
     * refused, as Python's signal.signal refuses them. */
    for (size_t i = 0; i < n; i++)
        if (signals[i] == SIGKILL || signals[i] == SIGSTOP || sigaddset(&set, signals[i]) < 0)
            return -EINVAL;
    /* Blocked first, so that a signal that arrives from now on waits in the
     * kernel for the signalfd instead of killing the process. */
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -EINVAL;
    int fd = CTRIO__SYS(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (fd < 0)
        return -errno;
    ctrio__fd_adopt(fd);
    int rc;
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t r = CTRIO__SYS(read(fd, &si, sizeof si));
        if (r == (ssize_t)sizeof si) {
            rc = (int)si.ssi_signo;
            int cp = ctrio_cancel_shielded_checkpoint();
            (void)cp;
            break;
        }
        if (r < 0 && errno != EAGAIN) {
            rc = -errno;
            break;
        }
        rc = ctrio__wait_fd(fd, CTRIO__IO_READ, false);
        if (rc < 0)
            break;
    }
    ctrio_notify_closing(fd);
    close(fd);
    return rc;
}
