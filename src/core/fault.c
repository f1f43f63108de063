/*
 * fault.c — the system-call fault switch of the testing API (SQLite's way:
 * its test harness fails every allocation and I/O call in turn and checks
 * that each failure unwinds cleanly).
 *
 * The run counts the system calls the library makes on its thread
 * (ctrio__sys_fault in internal.h, at every call site); a test arms the
 * switch for the n-th call from now with an errno, replays a scenario for
 * n = 1, 2, ... and checks that each run ends with a clear error or a
 * correct result, leaking nothing. It fires once, then disarms itself.
 */
#include "internal.h"

#include <stdlib.h>

bool ctrio__fault_fire(ctrio__run *r)
{
    if (r->run_syscalls < r->fault_at)
        return false;
    r->fault_at = 0;
    r->fault_fired = true;
    /* The socket layer trusts an EAGAIN to mean that an edge will follow
     * (io.c): the kernel's always does. An injected one is a lie about a
     * socket that may be ready, so the wait after it asks the kernel for the
     * current state (an exact wait), as a true EAGAIN would have let it. */
    r->fault_eagain = r->fault_err == EAGAIN;
    errno = r->fault_err;
    return true;
}

void ctrio_testing_fail_syscall_at(uint64_t n, int err)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r)
        return;
    r->fault_fired = false;
    r->fault_err = abs(err);
    /* n == 0 or no errno: off */
    r->fault_at = n == 0 || err == 0 ? 0 : r->run_syscalls + n;
}

bool ctrio_testing_syscall_fault_fired(void)
{
    ctrio__run *r = ctrio__tls_run;
    return r && r->fault_fired;
}

uint64_t ctrio_testing_run_syscalls(void)
{
    ctrio__run *r = ctrio__tls_run;
    return r ? r->run_syscalls : 0;
}
