/*
 * clock.c — the run's clock: CLOCK_MONOTONIC, or a mock clock that only
 * jumps (Trio's MockClock: ctrio_config.mock_clock, autojump_threshold).
 * The scheduler reads the clock once per turn into run->now (sched.c,
 * read_clock); a task asking for the time reads it afresh, as Trio's
 * current_time() does.
 */
#include "internal.h"

double ctrio__clock_now(ctrio__run *r)
{
    return r->mock ? r->now : ctrio__monotonic();
}

double ctrio_current_time(void)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r)
        return ctrio__monotonic();
    if (!r->mock)
        r->now = ctrio__monotonic();
    return r->now;
}

void ctrio_mock_clock_jump(double seconds)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r || !r->mock) {
        ctrio__misuse("ctrio_mock_clock_jump: this run has no mock clock");
        return;
    }
    if (!(seconds >= 0)) {
        ctrio__misuse("ctrio_mock_clock_jump: a negative jump (%g)", seconds);
        return;
    }
    r->now += seconds;
}
