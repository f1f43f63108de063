/*
 * test_core.c — the run and the scheduler: ctrio_run's result and misuse,
 * checkpoints and their exact counters, task names, the clock,
 * scheduling batches, and the cancel-injection switch of section 8.
 */
#include "support.h"

#include "internal.h" /* white-box: a task's name, ctrio__reschedule */

#include <ctrio_testing.h>

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void real_nap(long nsec)
{
    struct timespec ts = {0, nsec};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------------------ */
/* ctrio_run                                                                  */
/* ------------------------------------------------------------------------ */

static int return_arg(void *arg)
{
    return (int)(intptr_t)arg;
}

static int checkpoint_then_return_arg(void *arg)
{
    int rc = ctrio_checkpoint();
    if (rc < 0)
        return rc;
    return (int)(intptr_t)arg;
}

/* Trio: _core/tests/test_run.py::test_basic, ::test_initial_task_error.
 * The main task's result is ctrio_run's result, errors included. */
static void test_run_returns_main_result(void **state)
{
    (void)state;
    assert_int_equal(ctrio_run(return_arg, (void *)(intptr_t)8), 8);
    assert_int_equal(ctrio_run(checkpoint_then_return_arg, (void *)(intptr_t)1), 1);
    assert_int_equal(ctrio_run(return_arg, (void *)(intptr_t)-EIO), -EIO);
    assert_int_equal(ctrio_run(checkpoint_then_return_arg, (void *)(intptr_t)-17), -17);
    /* The thread is free for another run once one has ended. */
    assert_int_equal(run_mock(return_arg, (void *)(intptr_t)3), 3);
}

static int nested_main(void *arg)
{
    (void)arg;
    return 0;
}

static int inception(void *arg)
{
    int *nested_rc = arg;
    *nested_rc = ctrio_run(nested_main, NULL);
    /* The outer run is not disturbed by the refused nested one. */
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_config cfg = {0};
    cfg.mock_clock = 1;
    assert_int_equal(ctrio_run_with(&cfg, nested_main, NULL), -EPERM);
    return 42;
}

/* Trio: _core/tests/test_run.py::test_run_nesting. A run inside a run on the
 * same thread: -EPERM (Trio: RuntimeError). */
static void test_run_nesting(void **state)
{
    (void)state;
    int nested_rc = 1;
    assert_int_equal(ctrio_run(inception, &nested_rc), 42);
    assert_int_equal(nested_rc, -EPERM);
}

/* Trio: _core/tests/test_run.py::test_out_of_context (RuntimeError outside a
 * run). Every blocking call outside a run returns -EPERM; the query calls
 * return their documented "no run" values. */
/* New: the NULL rule of ctrio.h (Conventions) for nurseries and cancel
 * scopes, which used to dereference it: status calls say -EINVAL, void calls
 * do nothing, queries give their neutral value. In a task, where the calls
 * would otherwise act; nothing is left open (the run ends cleanly). */
static int null_core_body(void *arg)
{
    (void)arg;
    ctrio_nursery_open(NULL);
    assert_int_equal(ctrio_start_soon(NULL, return_arg, NULL), -EINVAL);
    assert_int_equal(ctrio_start(NULL, return_arg, NULL, NULL), -EINVAL);
    assert_int_equal(ctrio_nursery_close(NULL, 0), -EINVAL);
    assert_int_equal(ctrio_nursery_error_count(NULL), 0);
    assert_int_equal(ctrio_nursery_error(NULL, 0), 0);
    assert_null(ctrio_nursery_cancel_scope(NULL));

    ctrio_cancel_scope_init(NULL);
    ctrio_cancel_scope_open(NULL);
    ctrio_move_on_at(NULL, 1);
    ctrio_move_on_after(NULL, 1);
    ctrio_fail_at(NULL, 1);
    ctrio_fail_after(NULL, 1);
    assert_int_equal(ctrio_cancel_scope_enter(NULL), -EINVAL);
    assert_int_equal(ctrio_cancel_scope_close(NULL, 0), -EINVAL);
    assert_int_equal(ctrio_cancel_scope_close(NULL, -ECANCELED), -EINVAL);
    ctrio_cancel_scope_cancel(NULL);
    ctrio_cancel_scope_set_deadline(NULL, 0);
    ctrio_cancel_scope_set_shield(NULL, true);
    assert_true(ctrio_cancel_scope_deadline(NULL) == INFINITY);
    assert_false(ctrio_cancel_scope_shield(NULL));
    assert_false(ctrio_cancel_scope_cancel_called(NULL));
    assert_false(ctrio_cancel_scope_cancelled_caught(NULL));
    ctrio_testing_cancel_at_checkpoint(NULL, 1); /* disarms, as n = 0 */

    /* none of it touched the task's own scopes */
    assert_true(ctrio_current_effective_deadline() == INFINITY);
    return ctrio_checkpoint();
}

static void test_null_handles(void **state)
{
    (void)state;
    assert_int_equal(run_mock(null_core_body, NULL), 0);
}

static void test_blocking_calls_outside_a_run(void **state)
{
    (void)state;
    assert_int_equal(ctrio_checkpoint(), -EPERM);
    assert_int_equal(ctrio_checkpoint_if_cancelled(), -EPERM);
    assert_int_equal(ctrio_cancel_shielded_checkpoint(), -EPERM);
    assert_int_equal(ctrio_sleep(0), -EPERM);
    assert_int_equal(ctrio_sleep(1), -EPERM);
    assert_int_equal(ctrio_sleep_until(0), -EPERM);
    assert_int_equal(ctrio_sleep_forever(), -EPERM);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), -EPERM);

    ctrio_event ev;
    ctrio_event_init(&ev);
    assert_int_equal(ctrio_event_wait(&ev), -EPERM);

    ctrio_cancel_scope cs;
    ctrio_cancel_scope_init(&cs);
    assert_int_equal(ctrio_cancel_scope_enter(&cs), -EPERM);
    ctrio_cancel_scope_open(&cs);
    assert_int_equal(ctrio_cancel_scope_close(&cs, 0), -EPERM);

    ctrio_checkpoint_counts c = ctrio_task_checkpoint_counts();
    assert_int_equal(c.cancel_points, 0);
    assert_int_equal(c.schedule_points, 0);
    assert_int_equal(ctrio_testing_run_checkpoints(), 0);
    assert_true(ctrio_current_effective_deadline() == INFINITY);
    assert_null(ctrio_current_token());
    assert_false(ctrio_testing_cancel_fired());
}

static int report_clock(void *arg)
{
    double *out = arg;
    out[0] = mono_now();
    out[1] = ctrio_current_time();
    out[2] = mono_now();
    return ctrio_checkpoint();
}

/* New (not in Trio): ctrio_run_with(NULL, ...) is ctrio_run: a real
 * CLOCK_MONOTONIC clock; a NULL main is refused with -EINVAL. */
static void test_run_with_null_config(void **state)
{
    (void)state;
    assert_int_equal(ctrio_run_with(NULL, return_arg, (void *)(intptr_t)5), 5);
    double t[3];
    assert_int_equal(ctrio_run_with(NULL, report_clock, t), 0);
    assert_true(t[0] <= t[1] && t[1] <= t[2]);
    assert_int_equal(ctrio_run_with(NULL, NULL, NULL), -EINVAL);
    assert_int_equal(ctrio_run(NULL, NULL), -EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints and their counters                                             */
/* ------------------------------------------------------------------------ */

static int checkpoint_counts_body(void *arg)
{
    (void)arg;
    int rc = 1;
    /* a schedule point then a cancel point. */
    CP_EXACT(rc = ctrio_checkpoint(), 1, 1);
    assert_int_equal(rc, 0);
    /* only a cancel point when not cancelled. */
    rc = 1;
    CP_EXACT(rc = ctrio_checkpoint_if_cancelled(), 1, 0);
    assert_int_equal(rc, 0);
    /* only a schedule point. */
    rc = 1;
    CP_EXACT(rc = ctrio_cancel_shielded_checkpoint(), 0, 1);
    assert_int_equal(rc, 0);
    /* sleep(0) and a real sleep are full checkpoints. */
    CP_EXACT(rc = ctrio_sleep(0), 1, 1);
    assert_int_equal(rc, 0);
    CP_EXACT(rc = ctrio_sleep(1), 1, 1);
    assert_int_equal(rc, 0);
    /* sleep_until a past time still checkpoints (Trio: test_sleep). */
    CP_EXACT(rc = ctrio_sleep_until(ctrio_current_time() - 1), 1, 1);
    assert_int_equal(rc, 0);
    /* a negative sleep is refused without a checkpoint (Trio: test_sleep). */
    CP_EXACT(rc = ctrio_sleep(-1), 0, 0);
    assert_int_equal(rc, -EINVAL);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_trivial_yields, ::test_cancel_points:
 * the exact counter movement of each checkpoint kind when
 * the task is not cancelled. */
static void test_checkpoint_counts_uncancelled(void **state)
{
    (void)state;
    assert_int_equal(run_mock(checkpoint_counts_body, NULL), 0);
}

static int cancelled_counts_body(void *arg)
{
    (void)arg;
    int rc;
    ctrio_cancel_scope cs;

    /* main2: checkpoint() in a cancelled scope. */
    ctrio_cancel_scope_open(&cs);
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_cancel_scope_cancel(&cs);
    CP_EXACT(rc = ctrio_checkpoint(), 1, 1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);

    /* main1: checkpoint_if_cancelled yields, then returns -ECANCELED. */
    ctrio_cancel_scope_open(&cs);
    assert_int_equal(ctrio_checkpoint_if_cancelled(), 0);
    ctrio_cancel_scope_cancel(&cs);
    CP_EXACT(rc = ctrio_checkpoint_if_cancelled(), 1, 1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);

    /* main3: sleep_forever in a cancelled scope. */
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    CP_EXACT(rc = ctrio_sleep_forever(), 1, 1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);

    /* main4: cancel_shielded_checkpoint never returns -ECANCELED. */
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    CP_EXACT(rc = ctrio_cancel_shielded_checkpoint(), 0, 1);
    assert_int_equal(rc, 0);
    CP_EXACT(rc = ctrio_cancel_shielded_checkpoint(), 0, 1);
    assert_int_equal(rc, 0);
    CP_EXACT(rc = ctrio_checkpoint(), 1, 1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_points (main1..main4);
 * with exact counters inside a cancelled scope. */
static void test_checkpoint_counts_cancelled(void **state)
{
    (void)state;
    assert_int_equal(run_mock(cancelled_counts_body, NULL), 0);
}

static int deadline_in_run_queue_body(void *arg)
{
    (void)arg;
    int rc;
    ctrio_cancel_scope cs;
    ctrio_move_on_at(&cs, ctrio_current_time() + 5);
    CP_EXACT(rc = ctrio_checkpoint(), 1, 1);
    assert_int_equal(rc, 0);
    ctrio_mock_clock_jump(10);
    /* Not a checkpoint: the deadline has passed but nothing has seen it. */
    assert_int_equal(ctrio_checkpoint_if_cancelled(), 0);
    /* The schedule point comes first, so the expiry is seen by this very
     * checkpoint. */
    CP_EXACT(rc = ctrio_checkpoint(), 1, 1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_true(ctrio_current_time() == 10.0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_yield_briefly_checks_for_timeout,
 * with exact counters. */
static void test_checkpoint_sees_deadline_expired_in_run_queue(void **state)
{
    (void)state;
    assert_int_equal(run_mock(deadline_in_run_queue_body, NULL), 0);
}

static int cancel_not_checkpoint_body(void *arg)
{
    (void)arg;
    int rc;
    int after_cancel = 0;
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    /* cancel twice, no checkpoint, code after it runs. */
    ASSERT_NO_CHECKPOINTS({
        ctrio_cancel_scope_cancel(&cs);
        ctrio_cancel_scope_cancel(&cs);
        after_cancel = 1;
    });
    assert_int_equal(after_cancel, 1);
    assert_true(ctrio_cancel_scope_cancel_called(&cs));
    /* level-triggered: every kind of checkpoint raises, again and again,
     * each one a full checkpoint. */
    for (int i = 0; i < 3; i++) {
        CP_EXACT(rc = ctrio_checkpoint(), 1, 1);
        assert_int_equal(rc, -ECANCELED);
        CP_EXACT(rc = ctrio_sleep_forever(), 1, 1);
        assert_int_equal(rc, -ECANCELED);
        CP_EXACT(rc = ctrio_sleep(0), 1, 1);
        assert_int_equal(rc, -ECANCELED);
        CP_EXACT(rc = ctrio_sleep(5), 1, 1);
        assert_int_equal(rc, -ECANCELED);
        CP_EXACT(rc = ctrio_checkpoint_if_cancelled(), 1, 1);
        assert_int_equal(rc, -ECANCELED);
    }
    assert_true(ctrio_current_time() == 0.0); /* nothing slept */
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    /* Outside the scope nothing is cancelled any more. */
    CP_EXACT(rc = ctrio_checkpoint(), 1, 1);
    assert_int_equal(rc, 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_edge_cases, with
 * counters: cancel() is not a checkpoint; every checkpoint afterwards in the
 * scope returns -ECANCELED. */
static void test_cancel_is_not_a_checkpoint_and_level_triggered(void **state)
{
    (void)state;
    assert_int_equal(run_mock(cancel_not_checkpoint_body, NULL), 0);
}

static int noop_child(void *arg)
{
    (void)arg;
    return 0;
}

static int assert_checkpoints_body(void *arg)
{
    (void)arg;
    uint64_t dc, ds;

    /* A checkpoint is what assert_checkpoints accepts. */
    ASSERT_CHECKPOINTS(ctrio_checkpoint());

    /* Nothing at all: assert_checkpoints would fail. */
    CP_DELTA_((void)0, dc, ds);
    assert_false(dc > 0 && ds > 0);

    /* Partial yields are not checkpoints: each moves only one counter. */
    CP_DELTA_(ctrio_checkpoint_if_cancelled(), dc, ds);
    assert_int_equal(dc, 1);
    assert_int_equal(ds, 0);
    CP_DELTA_(ctrio_cancel_shielded_checkpoint(), dc, ds);
    assert_int_equal(dc, 0);
    assert_int_equal(ds, 1);

    /* But both together count as one. */
    ASSERT_CHECKPOINTS({
        ctrio_checkpoint_if_cancelled();
        ctrio_cancel_shielded_checkpoint();
    });

    /* assert_no_checkpoints: the non-blocking calls never yield. */
    ctrio_cancel_scope cs, outer;
    ctrio_event ev;
    ctrio_event_init(&ev);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ASSERT_NO_CHECKPOINTS({
        ctrio_cancel_scope_open(&outer);
        ctrio_cancel_scope_open(&cs);
        ctrio_cancel_scope_set_deadline(&cs, ctrio_current_time() + 100);
        ctrio_cancel_scope_set_shield(&cs, true);
        ctrio_cancel_scope_set_shield(&cs, false);
        (void)ctrio_current_effective_deadline();
        (void)ctrio_current_time();
        ctrio_event_set(&ev);
        assert_int_equal(ctrio_start_soon(&n, noop_child, NULL), 0);
        ctrio_cancel_scope_cancel(&cs);
        assert_int_equal(ctrio_cancel_scope_close(&cs, 0), 0);
        assert_int_equal(ctrio_cancel_scope_close(&outer, 0), 0);
        ctrio_task_set_name("assert_checkpoints_body");
        (void)ctrio_testing_run_checkpoints();
    });
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    /* A set event's wait is still a full checkpoint. */
    ASSERT_CHECKPOINTS(assert_int_equal(ctrio_event_wait(&ev), 0));
    return 0;
}

/* Trio: tests/test_testing.py::test_assert_checkpoints,
 * ::test_assert_no_checkpoints: what the two counters say about which
 * calls are checkpoints, partial and full. */
static void test_assert_checkpoints_semantics(void **state)
{
    (void)state;
    assert_int_equal(run_mock(assert_checkpoints_body, NULL), 0);
}

struct counts_child {
    int nchk;
    ctrio_checkpoint_counts at_start, at_end;
};

static int counting_child(void *arg)
{
    struct counts_child *c = arg;
    c->at_start = ctrio_task_checkpoint_counts();
    for (int i = 0; i < c->nchk; i++) {
        int rc = ctrio_checkpoint();
        if (rc < 0)
            return rc;
    }
    c->at_end = ctrio_task_checkpoint_counts();
    return 0;
}

static int per_task_counts_body(void *arg)
{
    (void)arg;
    struct counts_child kids[2] = {{.nchk = 3}, {.nchk = 7}};
    uint64_t run0 = ctrio_testing_run_checkpoints();
    ctrio_checkpoint_counts me0 = ctrio_task_checkpoint_counts();

    for (int i = 0; i < 4; i++)
        assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(ctrio_cancel_shielded_checkpoint(), 0);
    assert_int_equal(ctrio_checkpoint_if_cancelled(), 0);
    ctrio_checkpoint_counts me1 = ctrio_task_checkpoint_counts();
    /* The run's counter moves with the cancel points of this task only. */
    assert_int_equal(ctrio_testing_run_checkpoints() - run0, 5);
    assert_int_equal(me1.cancel_points - me0.cancel_points, 5);
    assert_int_equal(me1.schedule_points - me0.schedule_points, 5);

    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, counting_child, &kids[0]), 0);
    assert_int_equal(ctrio_start_soon(&n, counting_child, &kids[1]), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    ctrio_checkpoint_counts me2 = ctrio_task_checkpoint_counts();

    for (int i = 0; i < 2; i++) {
        /* A task's counters start at zero and are its own. */
        assert_int_equal(kids[i].at_start.cancel_points, 0);
        assert_int_equal(kids[i].at_start.schedule_points, 0);
        assert_int_equal(kids[i].at_end.cancel_points, (uint64_t)kids[i].nchk);
        assert_int_equal(kids[i].at_end.schedule_points, (uint64_t)kids[i].nchk);
    }
    /* The run's counter is the sum over every task. */
    assert_int_equal(ctrio_testing_run_checkpoints() - run0,
                     (me2.cancel_points - me0.cancel_points) + kids[0].at_end.cancel_points +
                         kids[1].at_end.cancel_points);
    return 0;
}

/* New (not in Trio): counters are per task and start at zero;
 * ctrio_testing_run_checkpoints counts the cancel points of every task. */
static void test_checkpoint_counts_per_task_and_run(void **state)
{
    (void)state;
    assert_int_equal(run_mock(per_task_counts_body, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Task names, time                                                           */
/* ------------------------------------------------------------------------ */

static const char child_name[] = "child-task";
static const char main_name[] = "main-task";

static int named_child(void *arg)
{
    const char **seen = arg;
    seen[0] = ctrio__current()->name; /* unnamed at first */
    ctrio_task_set_name(child_name);
    assert_int_equal(ctrio_checkpoint(), 0);
    seen[1] = ctrio__current()->name;
    return 0;
}

static int names_body(void *arg)
{
    (void)arg;
    const char *seen[2] = {"x", NULL};
    ctrio_task_set_name(main_name);
    assert_ptr_equal(ctrio__current()->name, main_name);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, named_child, seen), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_null(seen[0]);
    assert_ptr_equal(seen[1], child_name);
    /* The child's name did not touch ours; renaming works. */
    assert_ptr_equal(ctrio__current()->name, main_name);
    ctrio_task_set_name(child_name);
    assert_ptr_equal(ctrio__current()->name, child_name);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_spawn_name (a task has a name of its
 * own). White-box: the name is stored uncopied, per task. Outside a run,
 * naming is a harmless no-op. */
static void test_task_names(void **state)
{
    (void)state;
    ctrio_task_set_name("outside"); /* no run: must not crash */
    assert_int_equal(run_mock(names_body, NULL), 0);
}

static int real_time_body(void *arg)
{
    (void)arg;
    double m0 = mono_now();
    double t1 = ctrio_current_time();
    double m1 = mono_now();
    assert_true(m0 <= t1 && t1 <= m1);
    real_nap(2 * 1000 * 1000);
    double t2 = ctrio_current_time();
    assert_true(t2 > t1);
    assert_true(t2 - t1 >= 0.002);
    double prev = t2;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(ctrio_checkpoint(), 0);
        double t = ctrio_current_time();
        assert_true(t >= prev);
        prev = t;
    }
    double before = ctrio_current_time();
    assert_int_equal(ctrio_sleep(0.01), 0);
    assert_true(ctrio_current_time() - before >= 0.01);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_current_time: the real clock is
 * CLOCK_MONOTONIC and never goes back. Outside a run it is CLOCK_MONOTONIC
 * too. */
static void test_current_time_real(void **state)
{
    (void)state;
    double m0 = mono_now();
    double t = ctrio_current_time();
    double m1 = mono_now();
    assert_true(m0 <= t && t <= m1);
    assert_int_equal(run_real(real_time_body, NULL), 0);
}

static int mock_time_body(void *arg)
{
    (void)arg;
    assert_true(ctrio_current_time() == 0.0);
    real_nap(1000 * 1000);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_true(ctrio_current_time() == 0.0); /* rate 0 */
    ctrio_mock_clock_jump(3.14);
    assert_true(ctrio_current_time() == 3.14);
    ctrio_mock_clock_jump(-1); /* refused, with a message */
    assert_true(ctrio_current_time() == 3.14);
    ctrio_mock_clock_jump(0);
    assert_true(ctrio_current_time() == 3.14);
    assert_int_equal(ctrio_sleep(2), 0); /* autojump */
    assert_true(ctrio_current_time() == 3.14 + 2);
    assert_int_equal(ctrio_sleep_until(10), 0);
    assert_true(ctrio_current_time() == 10.0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_current_time_with_mock_clock. */
static void test_current_time_mock(void **state)
{
    (void)state;
    assert_int_equal(run_mock(mock_time_body, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Batches                                                                    */
/* ------------------------------------------------------------------------ */

struct rec {
    char who;
    int i;
};

struct looper_ctx {
    struct rec *log;
    int *nlog;
    char who;
};

static int looper(void *arg)
{
    struct looper_ctx *c = arg;
    for (int i = 0; i < 3; i++) {
        c->log[(*c->nlog)++] = (struct rec){c->who, i};
        int rc = ctrio_checkpoint();
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int interleave_body(void *arg)
{
    (void)arg;
    struct rec log[6];
    int nlog = 0;
    struct looper_ctx a = {log, &nlog, 'a'}, b = {log, &nlog, 'b'};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, looper, &a), 0);
    assert_int_equal(ctrio_start_soon(&n, looper, &b), 0);
    assert_int_equal(nlog, 0); /* start_soon does not run the child */
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(nlog, 6);
    /* Each batch holds one step of each task, in either order. */
    for (int k = 0; k < 3; k++) {
        struct rec x = log[2 * k], y = log[2 * k + 1];
        assert_int_equal(x.i, k);
        assert_int_equal(y.i, k);
        assert_true((x.who == 'a' && y.who == 'b') || (x.who == 'b' && y.who == 'a'));
    }
    return 0;
}

/* Trio: _core/tests/test_run.py::test_basic_interleave: tasks that
 * checkpoint advance in lockstep batches; the order within a batch is not
 * assumed. */
static void test_basic_interleave(void **state)
{
    (void)state;
    assert_int_equal(run_mock(interleave_body, NULL), 0);
}

struct spin_ctx {
    int done;
    long spins;
    long limit;
};

static int spinner(void *arg)
{
    struct spin_ctx *c = arg;
    while (!c->done && c->spins < c->limit) {
        int rc = ctrio_checkpoint();
        if (rc < 0)
            return rc;
        c->spins++;
    }
    return 0;
}

static int ten_checkpoints_then_done(void *arg)
{
    struct spin_ctx *c = arg;
    for (int i = 0; i < 10; i++) {
        int rc = ctrio_checkpoint();
        if (rc < 0)
            return rc;
    }
    c->done = 1;
    return 0;
}

static int sleep_then_done(void *arg)
{
    struct spin_ctx *c = arg;
    int rc = ctrio_sleep(0.02);
    if (rc < 0)
        return rc;
    c->done = 1;
    return 0;
}

static int no_starvation_body(void *arg)
{
    (void)arg;
    /* Against another checkpointing task: one step each per batch. */
    struct spin_ctx c = {0, 0, 1000000};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, spinner, &c), 0);
    assert_int_equal(ctrio_start_soon(&n, ten_checkpoints_then_done, &c), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(c.done, 1);
    assert_true(c.spins >= 10 && c.spins <= 11);

    /* Against a sleeper: timers are checked every turn, even while a task
     * keeps the run queue busy. */
    struct spin_ctx s = {0, 0, 50L * 1000 * 1000};
    double t0 = ctrio_current_time();
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, spinner, &s), 0);
    assert_int_equal(ctrio_start_soon(&n, sleep_then_done, &s), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    double elapsed = ctrio_current_time() - t0;
    assert_int_equal(s.done, 1);
    assert_true(s.spins < s.limit);
    assert_true(s.spins > 0);
    assert_true(elapsed >= 0.02);
    assert_true(elapsed < 2.0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_basic_interleave, variant (the
 * "looping on checkpoint cannot starve" property is new): a task looping on
 * ctrio_checkpoint() starves neither a checkpointing task nor a sleeping one. */
static void test_checkpoint_loop_does_not_starve(void **state)
{
    (void)state;
    assert_int_equal(run_real(no_starvation_body, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Cancel injection (section 8)                                              */
/* ------------------------------------------------------------------------ */

#define SCENARIO_CHECKPOINTS 5

/* Five checkpoints and a one-second sleep; *steps counts the completed ones. */
static int scenario(int *steps)
{
    for (int i = 0; i < SCENARIO_CHECKPOINTS; i++) {
        int rc = ctrio_checkpoint();
        if (rc < 0)
            return rc;
        (*steps)++;
    }
    int rc = ctrio_sleep(1);
    if (rc < 0)
        return rc;
    (*steps)++;
    return 0;
}

static int injection_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope outer, cs;
    ctrio_cancel_scope_open(&outer);

    /* Dry run: how many cancel points does the scenario reach? */
    int steps = 0;
    uint64_t before = ctrio_testing_run_checkpoints();
    ctrio_cancel_scope_open(&cs);
    int rc = scenario(&steps);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    uint64_t points = ctrio_testing_run_checkpoints() - before;
    assert_int_equal(steps, SCENARIO_CHECKPOINTS + 1);
    assert_int_equal(points, SCENARIO_CHECKPOINTS + 1);
    assert_false(ctrio_testing_cancel_fired());

    uint64_t n;
    for (n = 1; n <= 100; n++) {
        double t0 = ctrio_current_time();
        steps = 0;
        ctrio_cancel_scope_open(&cs);
        ctrio_testing_cancel_at_checkpoint(&cs, n);
        assert_false(ctrio_testing_cancel_fired());
        rc = scenario(&steps);
        bool fired = ctrio_testing_cancel_fired();
        rc = ctrio_cancel_scope_close(&cs, rc);
        assert_int_equal(rc, 0);
        if (!fired) {
            /* The scenario finished before the n-th cancel point. */
            assert_false(ctrio_cancel_scope_cancel_called(&cs));
            assert_false(ctrio_cancel_scope_cancelled_caught(&cs));
            assert_int_equal(steps, SCENARIO_CHECKPOINTS + 1);
            assert_true(ctrio_current_time() == t0 + 1);
            break;
        }
        /* The n-th cancel point saw the cancellation; the scope caught it;
         * nothing past it ran (the sleep never completed). */
        assert_true(ctrio_cancel_scope_cancel_called(&cs));
        assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
        assert_int_equal(steps, (int)(n - 1));
        assert_true(ctrio_current_time() == t0);
        /* No cancellation leaks out of the scope. */
        assert_int_equal(ctrio_checkpoint(), 0);
        assert_false(ctrio_cancel_scope_cancel_called(&outer));
    }
    assert_int_equal(n, points + 1);
    assert_false(ctrio_cancel_scope_cancel_called(&outer));

    /* n = 0 disarms: nothing fires. */
    ctrio_cancel_scope_open(&cs);
    ctrio_testing_cancel_at_checkpoint(&cs, 2);
    ctrio_testing_cancel_at_checkpoint(&cs, 0);
    steps = 0;
    rc = scenario(&steps);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_false(ctrio_testing_cancel_fired());
    assert_false(ctrio_cancel_scope_cancel_called(&cs));
    assert_int_equal(steps, SCENARIO_CHECKPOINTS + 1);

    assert_int_equal(ctrio_cancel_scope_close(&outer, 0), 0);
    return 0;
}

/* New (not in Trio): ctrio_testing_cancel_at_checkpoint replays a
 * five-checkpoints-and-a-sleep scenario with the cancellation injected at each
 * cancel point in turn; each time the scope catches it and nothing else moves. */
static void test_cancel_injection_replay(void **state)
{
    (void)state;
    assert_int_equal(run_mock(injection_body, NULL), 0);
}

struct inj_child {
    int steps, nchk, rc;
};

static int inj_child_fn(void *arg)
{
    struct inj_child *c = arg;
    c->rc = 0;
    for (int i = 0; i < c->nchk; i++) {
        int rc = ctrio_checkpoint();
        if (rc < 0)
            return c->rc = rc;
        c->steps++;
    }
    int rc = ctrio_sleep(0.5);
    if (rc < 0)
        return c->rc = rc;
    c->steps++;
    return 0;
}

/* A nursery of two children inside cs; returns the nursery's result. */
static int nursery_scenario(struct inj_child kids[2])
{
    kids[0] = (struct inj_child){0, 2, 1};
    kids[1] = (struct inj_child){0, 4, 1};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    int rc = ctrio_start_soon(&n, inj_child_fn, &kids[0]);
    if (rc == 0)
        rc = ctrio_start_soon(&n, inj_child_fn, &kids[1]);
    if (rc == 0)
        rc = ctrio_checkpoint();
    return ctrio_nursery_close(&n, rc);
}

static int injection_nursery_body(void *arg)
{
    (void)arg;
    struct inj_child kids[2];
    ctrio_cancel_scope cs;

    uint64_t before = ctrio_testing_run_checkpoints();
    ctrio_cancel_scope_open(&cs);
    int rc = nursery_scenario(kids);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    uint64_t points = ctrio_testing_run_checkpoints() - before;
    assert_int_equal(kids[0].steps, 3);
    assert_int_equal(kids[1].steps, 5);
    assert_true(points >= 1 + 3 + 5);

    uint64_t n;
    for (n = 1; n <= 100; n++) {
        double t0 = ctrio_current_time();
        ctrio_cancel_scope_open(&cs);
        ctrio_testing_cancel_at_checkpoint(&cs, n);
        rc = nursery_scenario(kids);
        bool fired = ctrio_testing_cancel_fired();
        assert_int_equal(rc, fired ? -ECANCELED : 0);
        assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
        assert_int_equal(ctrio_cancel_scope_cancelled_caught(&cs), fired);
        for (int i = 0; i < 2; i++) {
            /* Each child either finished or unwound with -ECANCELED early. */
            if (kids[i].rc == 0) {
                assert_int_equal(kids[i].steps, kids[i].nchk + 1);
            } else {
                assert_true(fired);
                assert_int_equal(kids[i].rc, -ECANCELED);
                assert_true(kids[i].steps <= kids[i].nchk);
            }
        }
        if (!fired) {
            assert_true(ctrio_current_time() == t0 + 0.5);
            break;
        }
        assert_true(ctrio_current_time() == t0);
        assert_int_equal(ctrio_checkpoint(), 0);
    }
    assert_int_equal(n, points + 1);
    return 0;
}

/* New (not in Trio): cancel injection across the tasks of a nursery: the
 * scope catches every injected cancellation, whichever task reached the n-th
 * cancel point, and the children unwind. */
static void test_cancel_injection_nursery(void **state)
{
    (void)state;
    assert_int_equal(run_mock(injection_nursery_body, NULL), 0);
}

/* ctrio_strerror gives the system's text for every -errno value, the same
 * as strerror(3): the kernel returns these codes too (EPERM from
 * socket(AF_PACKET), ETIMEDOUT from connect, EPIPE from send), and a library
 * meaning ("called in the wrong state or place") misdescribed them. The
 * strings are static: two results stay valid side by side. */
static void test_strerror_is_the_systems(void **state)
{
    (void)state;
    static const int codes[] = {EPERM,  ECANCELED, EBADF,     EBUSY,     ETIMEDOUT, EPIPE,
                                ESHUTDOWN, EWOULDBLOCK, ECONNRESET, EINVAL, EMFILE,  ENOENT};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        assert_string_equal(ctrio_strerror(-codes[i]), strerror(codes[i]));
    const char *a = ctrio_strerror(-EPERM), *b = ctrio_strerror(-ETIMEDOUT);
    assert_string_equal(a, "Operation not permitted");
    assert_string_equal(b, "Connection timed out");
    /* the header's examples */
    assert_string_equal(ctrio_strerror(-ECANCELED), "Operation canceled");
    assert_string_equal(ctrio_strerror(CTRIO_EAI_NONAME),
                        "CTRIO_EAI_NONAME: name or service not known");
    assert_string_equal(ctrio_strerror(0), "success");
    assert_string_equal(ctrio_strerror(-4000), "unknown error code");
    assert_string_equal(ctrio_strerror(-30000), "unknown error code");
    assert_non_null(strstr(ctrio_strerror(CTRIO_EAI_SYSTEM), "CTRIO_EAI_SYSTEM"));
}

/* The library's messages go through the run's log hook (ctrio_config.log)
 * at or above its level, or by default misuse alone to stderr, as "ctrio:
 * <message>"; outside a run the default applies. */
static int misuse_body(void *arg)
{
    (void)arg;
    return ctrio_task_started(NULL); /* not launched with ctrio_start */
}

static void test_log_hook_and_default(void **state)
{
    (void)state;
    char buf[1024];
    capture c;
    /* default, outside a run: misuse to stderr */
    capture_start(&c);
    int rc = ctrio_sleep(0);
    capture_end(&c, buf, sizeof buf);
    assert_int_equal(rc, -EPERM);
    assert_non_null(strstr(buf, "ctrio: ctrio_sleep called outside a ctrio task"));
    /* default, in a run: the same */
    capture_start(&c);
    rc = run_real(misuse_body, NULL);
    capture_end(&c, buf, sizeof buf);
    assert_int_equal(rc, -EPERM);
    assert_non_null(strstr(buf, "ctrio: ctrio_task_started called by a task not launched"));
    /* a hook: the message at CTRIO_LOG_ERROR, nothing on stderr */
    log_kept k;
    capture_start(&c);
    rc = run_mock_logged(&k, 0, misuse_body, NULL);
    capture_end(&c, buf, sizeof buf);
    assert_int_equal(rc, -EPERM);
    assert_string_equal(buf, "");
    assert_int_equal(k.n, 1);
    assert_int_equal(k.level[0], CTRIO_LOG_ERROR);
    assert_ptr_equal(strstr(k.msg[0], "ctrio_task_started called by a task not launched"),
                     k.msg[0]);
    /* a hook above ERROR: nothing at all */
    capture_start(&c);
    rc = run_mock_logged(&k, CTRIO_LOG_ERROR + 1, misuse_body, NULL);
    capture_end(&c, buf, sizeof buf);
    assert_int_equal(rc, -EPERM);
    assert_string_equal(buf, "");
    assert_int_equal(k.n, 0);
}

/* ------------------------------------------------------------------------ */
/* assertions of invariants (CTRIO__ASSERT, debug and sanitizer builds)       */
/* ------------------------------------------------------------------------ */

static ctrio__task *sleeper_task;

static int sleeper(void *arg)
{
    (void)arg;
    sleeper_task = ctrio__current();
    return ctrio_sleep_forever();
}

static void assert_log_to_fd(int level, const char *msg, void *arg)
{
    (void)level;
    ssize_t w = write(*(int *)arg, msg, strlen(msg));
    (void)w;
}

/* White-box: a blocked task woken twice (a double ctrio__reschedule, the bug
 * a wrong abort_fn makes) would be queued twice, and the run queue would
 * loop on it; libuv asserts such states where they break (uv__io_start).
 * With assertions on, the second wake stops the process at once. */
static int double_wake_body(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, sleeper, NULL);
    ctrio_checkpoint(); /* the sleeper blocks */
    ctrio__reschedule(sleeper_task, 0);
    ctrio__reschedule(sleeper_task, 0);
    return ctrio_nursery_close(&n, 0);
}

static void test_assert_double_wake_aborts(void **state)
{
    (void)state;
    if (!CTRIO__ASSERTS)
        skip(); /* a release build: the assertions are compiled out */
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        signal(SIGABRT, SIG_DFL);
        ctrio_config cfg = {.log = assert_log_to_fd, .log_arg = &p[1]};
        ctrio_run_with(&cfg, double_wake_body, NULL);
        _exit(0);
    }
    close(p[1]);
    int status = 0;
    pid_t w = 0;
    for (int i = 0; i < 500 && (w = waitpid(pid, &status, WNOHANG)) == 0; i++)
        real_nap(10 * 1000 * 1000); /* at most 5 s */
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    char buf[512];
    ssize_t k = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    buf[k > 0 ? k : 0] = '\0';
    assert_int_not_equal(w, 0); /* it did not hang */
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    assert_non_null(strstr(buf, "assertion failed: t->state == CTRIO__BLOCKED"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_run_returns_main_result),
        TEST(test_strerror_is_the_systems),
        TEST(test_log_hook_and_default),
        TEST(test_run_nesting),
        TEST(test_blocking_calls_outside_a_run),
        TEST(test_null_handles),
        TEST(test_run_with_null_config),
        TEST(test_checkpoint_counts_uncancelled),
        TEST(test_checkpoint_counts_cancelled),
        TEST(test_checkpoint_sees_deadline_expired_in_run_queue),
        TEST(test_cancel_is_not_a_checkpoint_and_level_triggered),
        TEST(test_assert_checkpoints_semantics),
        TEST(test_checkpoint_counts_per_task_and_run),
        TEST(test_task_names),
        TEST(test_current_time_real),
        TEST(test_current_time_mock),
        TEST(test_basic_interleave),
        TEST(test_checkpoint_loop_does_not_starve),
        TEST(test_cancel_injection_replay),
        TEST(test_cancel_injection_nursery),
        TEST(test_assert_double_wake_aborts),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
