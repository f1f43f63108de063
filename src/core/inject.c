/*
 * inject.c — the cancel injection of the testing API: cancel a scope at the
 * n-th cancel point from now, so that a test can replay a scenario with a
 * cancellation at every point in turn (as fault.c does for system calls) and
 * check that each one unwinds cleanly. The run counts its cancel points
 * (ctrio__count_cancel_point, sched.c); the switch fires once, then disarms.
 */
#include "internal.h"

void ctrio__inject_fire(ctrio__run *r)
{
    ctrio_cancel_scope *cs = r->inject_scope;
    r->inject_at = 0;
    r->inject_scope = NULL;
    r->inject_fired = true;
    ctrio_cancel_scope_cancel(cs);
}

void ctrio_testing_cancel_at_checkpoint(ctrio_cancel_scope *cs, uint64_t n)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r)
        return;
    r->inject_fired = false;
    if (n == 0 || !cs) {
        r->inject_at = 0;
        r->inject_scope = NULL;
        return;
    }
    r->inject_scope = cs;
    r->inject_at = r->run_checkpoints + n;
}

bool ctrio_testing_cancel_fired(void)
{
    ctrio__run *r = ctrio__tls_run;
    return r && r->inject_fired;
}

uint64_t ctrio_testing_run_checkpoints(void)
{
    ctrio__run *r = ctrio__tls_run;
    return r ? r->run_checkpoints : 0;
}
