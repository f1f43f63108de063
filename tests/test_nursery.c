/*
 * test_nursery.c — nurseries and nursery.start, ported from Trio's
 * _core/tests/test_run.py (each test names its original), plus a few tests
 * that are new here (named as such): error bookkeeping past
 * CTRIO_NURSERY_MAX_ERRORS, the nursery's cancel scope, 100,000 live tasks,
 * 10,000 sequential spawns, and the descriptors a run holds.
 *
 * Trio's exceptions are negative codes here: E_KEY stands for KeyError,
 * E_VALUE for ValueError. Trio >= 0.23 semantics are followed (#1457: a
 * nursery never injects Cancelled while it waits for its children).
 */
#include "support.h"

#include "internal.h" /* white-box: the stack cache counters (test_sequential_spawns) */

#include <ctrio_testing.h>

#include <stdint.h>
#include <stdlib.h>

#define E_KEY (-ENOKEY)
#define E_VALUE (-EDOM)

/* ------------------------------------------------------------------------ */
/* Small task bodies shared by the tests                                    */
/* ------------------------------------------------------------------------ */

/* Sleep forever and record what ended the sleep. */
static int sleeper(void *arg)
{
    int *rc = arg;
    *rc = ctrio_sleep_forever();
    return *rc;
}

/* Count one run. */
static int counter(void *arg)
{
    int *n = arg;
    (*n)++;
    return 0;
}

/* Return the error in *arg at once. */
static int crasher(void *arg)
{
    return *(int *)arg;
}

static int e_key = E_KEY;
static int e_value = E_VALUE;

/* Trio's sleep_then_start: sleep(s), started(s), sleep(s). The started value
 * is the pointer to the seconds. */
static int sleep_then_start(void *arg)
{
    double s = *(double *)arg;
    int rc = ctrio_sleep(s);
    if (rc < 0)
        return rc;
    rc = ctrio_task_started(arg);
    if (rc < 0)
        return rc;
    return ctrio_sleep(s);
}

/* nursery.start run as a task: `nursery1.start_soon(nursery2.start, fn)`. */
struct starter {
    ctrio_nursery *target;
    ctrio_fn fn;
    void *arg;
    int rc;
    int done;
};

static int start_in(void *arg)
{
    struct starter *s = arg;
    s->rc = ctrio_start(s->target, s->fn, s->arg, NULL);
    s->done = 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Nursery closure                                                          */
/* ------------------------------------------------------------------------ */

struct closure {
    ctrio_nursery *n;
    int spawn_rc;
    int child2_runs;
    int parent_in_close;
    int spawned_during_close;
};

static int closure_child2(void *arg)
{
    struct closure *c = arg;
    c->child2_runs++;
    return 0;
}

static int closure_child1(void *arg)
{
    struct closure *c = arg;
    c->spawned_during_close = c->parent_in_close;
    c->spawn_rc = ctrio_start_soon(c->n, closure_child2, c);
    return 0;
}

static int nursery_closure_main(void *arg)
{
    (void)arg;
    struct closure c = {0};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    c.n = &n;
    assert_int_equal(ctrio_start_soon(&n, closure_child1, &c), 0);
    c.parent_in_close = 1;
    int rc = ctrio_nursery_close(&n, 0);
    c.parent_in_close = 0;
    assert_int_equal(rc, 0);
    /* child1 spawned child2 into the nursery while we waited in close, and
     * close waited for child2 too. */
    assert_int_equal(c.spawned_during_close, 1);
    assert_int_equal(c.spawn_rc, 0);
    assert_int_equal(c.child2_runs, 1);
    /* Once close returned, the nursery is closed to new arrivals. */
    assert_int_equal(ctrio_start_soon(&n, closure_child2, &c), -EPERM);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(c.child2_runs, 1);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_closure */
static void test_nursery_closure(void **state)
{
    (void)state;
    assert_int_equal(run_mock(nursery_closure_main, NULL), 0);
}

static int closed_nursery_main(void *arg)
{
    (void)arg;
    int runs = 0;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    /* Argument checks on an open nursery. */
    assert_int_equal(ctrio_start_soon(&n, NULL, NULL), -EINVAL);
    assert_int_equal(ctrio_start(&n, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    double secs = 7, t0 = ctrio_current_time();
    int rc;
    /* start on a closed nursery: -EPERM at once, without yielding. */
    CP_EXACT(rc = ctrio_start(&n, sleep_then_start, &secs, NULL), 0, 0);
    assert_int_equal(rc, -EPERM);
    assert_true(ctrio_current_time() == t0);
    CP_EXACT(rc = ctrio_start_soon(&n, counter, &runs), 0, 0);
    assert_int_equal(rc, -EPERM);
    assert_int_equal(ctrio_sleep(1), 0);
    assert_int_equal(runs, 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_start, last part ("trying to
 * start in a closed nursery raises an error immediately") and
 * ::test_nursery_closure */
static void test_closed_nursery_rejects_start(void **state)
{
    (void)state;
    assert_int_equal(run_mock(closed_nursery_main, NULL), 0);
}

/* A task that tries to spawn into nursery l->n while its parent is inside
 * ctrio_nursery_close with no child left. */
struct late {
    ctrio_nursery *n;
    int phase; /* 0 before the parent closes, 1 in close, 2 after */
    ctrio_event ev;
    int tried, rc, runs;
};

static int late_spawner_polling(void *arg)
{
    struct late *l = arg;
    for (int i = 0; i < 100 && l->phase == 0; i++)
        ctrio_checkpoint();
    if (l->phase == 1) {
        l->tried = 1;
        l->rc = ctrio_start_soon(l->n, counter, &l->runs);
    }
    return 0;
}

static int empty_closing_main(void *arg)
{
    (void)arg;
    struct late l = {0};
    ctrio_nursery outer, n;
    ctrio_nursery_open(&outer);
    assert_int_equal(ctrio_start_soon(&outer, late_spawner_polling, &l), 0);
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_nursery_open(&n);
    l.n = &n;
    l.phase = 1;
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    l.phase = 2;
    assert_int_equal(ctrio_nursery_close(&outer, 0), 0);
    /* The spawner ran while we were in the close's schedule point. */
    assert_int_equal(l.tried, 1);
    /* Trio: a nursery with no child, no pending start and its body done is
     * closed (_check_nursery_closed) before the schedule point of its exit. */
    assert_int_equal(l.rc, -EPERM);
    assert_int_equal(l.runs, 0);
    return 0;
}

/* New (an edge of ::test_nursery_closure; Trio's
 * Nursery._check_nursery_closed): start_soon into a nursery whose parent sits
 * in the schedule point of an empty close. */
static void test_start_soon_into_empty_closing_nursery(void **state)
{
    (void)state;
    assert_int_equal(run_mock(empty_closing_main, NULL), 0);
}

static int last_child_sets_event(void *arg)
{
    struct late *l = arg;
    ctrio_event_set(&l->ev);
    return 0;
}

static int late_spawner_on_event(void *arg)
{
    struct late *l = arg;
    if (ctrio_event_wait(&l->ev) < 0)
        return 0;
    l->tried = 1;
    l->rc = ctrio_start_soon(l->n, counter, &l->runs);
    return 0;
}

static int last_child_exit_main(void *arg)
{
    (void)arg;
    struct late l = {0};
    ctrio_event_init(&l.ev);
    ctrio_nursery outer, n;
    ctrio_nursery_open(&outer);
    assert_int_equal(ctrio_start_soon(&outer, late_spawner_on_event, &l), 0);
    assert_int_equal(ctrio_checkpoint(), 0); /* the spawner now waits on ev */
    ctrio_nursery_open(&n);
    l.n = &n;
    assert_int_equal(ctrio_start_soon(&n, last_child_sets_event, &l), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_nursery_close(&outer, 0), 0);
    assert_int_equal(l.tried, 1);
    /* The last child exited while we waited: from then on the nursery is
     * closed, whether or not we have resumed yet. */
    assert_int_equal(l.rc, -EPERM);
    assert_int_equal(l.runs, 0);
    return 0;
}

/* New (an edge of ::test_nursery_closure; Trio's
 * Nursery._check_nursery_closed): start_soon after the last child exited but
 * before the waiting parent resumed. */
static void test_start_soon_after_last_child_exited(void **state)
{
    (void)state;
    assert_int_equal(run_mock(last_child_exit_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* A child's failure cancels the nursery and comes out of close             */
/* ------------------------------------------------------------------------ */

static int child_crash_basic_main(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, crasher, &e_value), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), E_VALUE);
    assert_int_equal(ctrio_nursery_error_count(&n), 1);
    assert_int_equal(ctrio_nursery_error(&n, 0), E_VALUE);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_child_crash_basic */
static void test_child_crash_basic(void **state)
{
    (void)state;
    assert_int_equal(run_mock(child_crash_basic_main, NULL), 0);
}

struct looper_rec {
    int rc;
    int iterations;
};

static int looper(void *arg)
{
    struct looper_rec *r = arg;
    for (r->iterations = 0; r->iterations < 1000; r->iterations++) {
        r->rc = ctrio_checkpoint();
        if (r->rc < 0)
            return r->rc;
    }
    return 0;
}

static struct looper_rec crash_prop_looper;

static int task_crash_propagation_main(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, looper, &crash_prop_looper), 0);
    assert_int_equal(ctrio_start_soon(&n, crasher, &e_value), 0);
    return ctrio_nursery_close(&n, 0);
}

/* Trio: _core/tests/test_run.py::test_task_crash_propagation */
static void test_task_crash_propagation(void **state)
{
    (void)state;
    memset(&crash_prop_looper, 0, sizeof crash_prop_looper);
    assert_int_equal(run_mock(task_crash_propagation_main, NULL), E_VALUE);
    assert_int_equal(crash_prop_looper.rc, -ECANCELED);
    assert_true(crash_prop_looper.iterations < 1000);
}

static int child_crash_wakes_parent_main(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, crasher, &e_value), 0);
    int body = ctrio_sleep_forever();
    assert_int_equal(body, -ECANCELED);
    /* The body's own -ECANCELED is absorbed: the child's error comes out. */
    assert_int_equal(ctrio_nursery_close(&n, body), E_VALUE);
    assert_int_equal(ctrio_nursery_error_count(&n), 1);
    assert_true(ctrio_current_time() == 0.0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_child_crash_wakes_parent */
static void test_child_crash_wakes_parent(void **state)
{
    (void)state;
    assert_int_equal(run_mock(child_crash_wakes_parent_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* A failure of the body cancels the children and propagates                */
/* ------------------------------------------------------------------------ */

static int main_block_error_main(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_nursery_close(&n, E_VALUE), E_VALUE);
    assert_int_equal(ctrio_nursery_error_count(&n), 1);
    assert_int_equal(ctrio_nursery_error(&n, 0), E_VALUE);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_main_block_error_basic */
static void test_nursery_main_block_error_basic(void **state)
{
    (void)state;
    assert_int_equal(run_mock(main_block_error_main, NULL), 0);
}

static int explicit_exception_main(void *arg)
{
    (void)arg;
    int child = 1;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, sleeper, &child), 0);
    assert_int_equal(ctrio_checkpoint(), 0); /* the child is asleep now */
    assert_int_equal(child, 1);
    assert_int_equal(ctrio_nursery_close(&n, E_KEY), E_KEY);
    assert_int_equal(child, -ECANCELED);
    assert_int_equal(ctrio_nursery_error_count(&n), 1);
    assert_true(ctrio_current_time() == 0.0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_explicit_exception, with a
 * sleeping child that the body's failure must cancel */
static void test_nursery_explicit_exception(void **state)
{
    (void)state;
    assert_int_equal(run_mock(explicit_exception_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Several failures: the first comes out, the others stay readable          */
/* ------------------------------------------------------------------------ */

static ctrio_nursery both_crash_n;

static int main_and_task_both_crash_main(void *arg)
{
    (void)arg;
    ctrio_nursery_open(&both_crash_n);
    assert_int_equal(ctrio_start_soon(&both_crash_n, crasher, &e_value), 0);
    return ctrio_nursery_close(&both_crash_n, E_KEY);
}

/* Trio: _core/tests/test_run.py::test_main_and_task_both_crash */
static void test_main_and_task_both_crash(void **state)
{
    (void)state;
    /* The body failed first (the child had not run yet). */
    assert_int_equal(run_mock(main_and_task_both_crash_main, NULL), E_KEY);
    assert_int_equal(ctrio_nursery_error_count(&both_crash_n), 2);
    assert_int_equal(ctrio_nursery_error(&both_crash_n, 0), E_KEY);
    assert_int_equal(ctrio_nursery_error(&both_crash_n, 1), E_VALUE);
}

static ctrio_nursery two_crash_n;

static int two_child_crashes_main(void *arg)
{
    (void)arg;
    ctrio_nursery_open(&two_crash_n);
    assert_int_equal(ctrio_start_soon(&two_crash_n, crasher, &e_key), 0);
    assert_int_equal(ctrio_start_soon(&two_crash_n, crasher, &e_value), 0);
    return ctrio_nursery_close(&two_crash_n, 0);
}

/* Trio: _core/tests/test_run.py::test_two_child_crashes */
static void test_two_child_crashes(void **state)
{
    (void)state;
    int rc = run_mock(two_child_crashes_main, NULL);
    assert_int_equal(ctrio_nursery_error_count(&two_crash_n), 2);
    int e0 = ctrio_nursery_error(&two_crash_n, 0), e1 = ctrio_nursery_error(&two_crash_n, 1);
    /* The order of the children is not specified: compare as a set. */
    assert_true((e0 == E_KEY && e1 == E_VALUE) || (e0 == E_VALUE && e1 == E_KEY));
    assert_int_equal(rc, e0);
}

#define MANY_CRASHERS 10

static int many_errors[MANY_CRASHERS];
static ctrio_nursery many_crash_n;

static int many_child_crashes_main(void *arg)
{
    (void)arg;
    ctrio_nursery_open(&many_crash_n);
    for (int i = 0; i < MANY_CRASHERS; i++) {
        many_errors[i] = -(1000 + i);
        assert_int_equal(ctrio_start_soon(&many_crash_n, crasher, &many_errors[i]), 0);
    }
    return ctrio_nursery_close(&many_crash_n, 0);
}

/* New (beside ::test_two_child_crashes): more failures than
 * CTRIO_NURSERY_MAX_ERRORS: all are counted, the first ones are kept,
 * distinct, and ctrio_nursery_error is 0 past them. */
static void test_many_child_crashes(void **state)
{
    (void)state;
    assert_true(MANY_CRASHERS > CTRIO_NURSERY_MAX_ERRORS);
    int rc = run_mock(many_child_crashes_main, NULL);
    assert_int_equal(ctrio_nursery_error_count(&many_crash_n), MANY_CRASHERS);
    assert_int_equal(rc, ctrio_nursery_error(&many_crash_n, 0));
    int seen[MANY_CRASHERS] = {0};
    for (size_t i = 0; i < CTRIO_NURSERY_MAX_ERRORS; i++) {
        int e = ctrio_nursery_error(&many_crash_n, i);
        assert_true(e <= -1000 && e > -1000 - MANY_CRASHERS);
        assert_int_equal(seen[-e - 1000]++, 0);
    }
    for (size_t i = CTRIO_NURSERY_MAX_ERRORS; i < MANY_CRASHERS + 5; i++)
        assert_int_equal(ctrio_nursery_error(&many_crash_n, i), 0);
}

/* The failures kept past CTRIO_NURSERY_MAX_ERRORS are the first ones, in
 * the order they happened (not the order the children started): the body's
 * own failure first (ctrio_nursery_close records it before waiting), then
 * each child's as it returns. Trio keeps every one in its ExceptionGroup; a
 * nursery allocates nothing, so ctrio keeps the first eight codes and counts
 * the rest (ctrio.h, ctrio_nursery_error). Child i fails after 10 - i
 * seconds in a shielded scope, so that the first failure's cancel does not
 * turn the later ones into -ECANCELED: they fail in reverse start order. */
#define ORDERED_CRASHERS 10
#define ORDERED_BODY_ERROR (-2000)
static ctrio_nursery ordered_n;
static int ordered_codes[ORDERED_CRASHERS];

static int late_crasher(void *arg)
{
    int i = (int)(intptr_t)arg;
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_set_shield(&cs, true);
    int rc = ctrio_sleep(ORDERED_CRASHERS - i);
    rc = ctrio_cancel_scope_close(&cs, rc);
    return rc < 0 ? rc : ordered_codes[i];
}

static int ordered_crashes_main(void *arg)
{
    (void)arg;
    ctrio_nursery_open(&ordered_n);
    for (int i = 0; i < ORDERED_CRASHERS; i++) {
        ordered_codes[i] = -(1000 + i);
        assert_int_equal(ctrio_start_soon(&ordered_n, late_crasher, (void *)(intptr_t)i), 0);
    }
    return ctrio_nursery_close(&ordered_n, ORDERED_BODY_ERROR);
}

static void test_first_errors_kept_in_order(void **state)
{
    (void)state;
    assert_true(ORDERED_CRASHERS + 1 > CTRIO_NURSERY_MAX_ERRORS);
    assert_int_equal(run_mock(ordered_crashes_main, NULL), ORDERED_BODY_ERROR);
    assert_int_equal(ctrio_nursery_error_count(&ordered_n), ORDERED_CRASHERS + 1);
    assert_int_equal(ctrio_nursery_error(&ordered_n, 0), ORDERED_BODY_ERROR);
    for (size_t k = 1; k < CTRIO_NURSERY_MAX_ERRORS; k++)
        assert_int_equal(ctrio_nursery_error(&ordered_n, k), ordered_codes[ORDERED_CRASHERS - k]);
    for (size_t k = CTRIO_NURSERY_MAX_ERRORS; k <= ORDERED_CRASHERS; k++)
        assert_int_equal(ctrio_nursery_error(&ordered_n, k), 0);
}

/* ------------------------------------------------------------------------ */
/* Cancellations are filtered out, the real error remains                   */
/* ------------------------------------------------------------------------ */

static int multierror_filtering_main(void *arg)
{
    (void)arg;
    int t1 = 1, t2 = 1, t3 = 1;
    ctrio_cancel_scope outer, shield;
    ctrio_cancel_scope_open(&outer);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    /* Two children that get cancelled by the nursery scope. */
    assert_int_equal(ctrio_start_soon(&n, sleeper, &t1), 0);
    assert_int_equal(ctrio_start_soon(&n, sleeper, &t2), 0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    ctrio_cancel_scope_open(&shield);
    ctrio_cancel_scope_set_shield(&shield, true);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_cancel_scope_close(&shield, 0), 0);
    assert_int_equal(t1, -ECANCELED);
    assert_int_equal(t2, -ECANCELED);
    /* One child that gets cancelled by the outer scope. */
    assert_int_equal(ctrio_start_soon(&n, sleeper, &t3), 0);
    ctrio_cancel_scope_cancel(&outer);
    /* And one that fails with a different error. */
    assert_int_equal(ctrio_start_soon(&n, crasher, &e_key), 0);
    int rc = ctrio_nursery_close(&n, 0);
    assert_int_equal(t3, -ECANCELED);
    /* Only the real error comes out; the cancellations are not counted. */
    assert_int_equal(rc, E_KEY);
    assert_int_equal(ctrio_nursery_error_count(&n), 1);
    assert_int_equal(ctrio_nursery_error(&n, 0), E_KEY);
    /* Outside the outer scope it is still just the KeyError. */
    assert_int_equal(ctrio_cancel_scope_close(&outer, rc), E_KEY);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_scope_multierror_filtering,
 * adapted: no exception groups in C */
static void test_cancel_scope_multierror_filtering(void **state)
{
    (void)state;
    assert_int_equal(run_mock(multierror_filtering_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* A child spawned into a cancelled nursery still starts                    */
/* ------------------------------------------------------------------------ */

struct precancelled {
    int started;
    int rc;
};

static int precancelled_blocker(void *arg)
{
    struct precancelled *p = arg;
    p->started = 1;
    p->rc = ctrio_sleep_forever();
    return p->rc;
}

static int precancelled_main(void *arg)
{
    (void)arg;
    struct precancelled p = {0, 1};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_start_soon(&n, precancelled_blocker, &p), 0);
    /* start_soon does not run it (test_run.py::test_basic_interleave) */
    assert_int_equal(p.started, 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(p.started, 1);
    assert_int_equal(p.rc, -ECANCELED);
    assert_true(ctrio_cancel_scope_cancelled_caught(ctrio_nursery_cancel_scope(&n)));
    return 0;
}

/* Trio: _core/tests/test_run.py::test_precancelled_task (Trio #41) */
static void test_precancelled_task(void **state)
{
    (void)state;
    assert_int_equal(run_mock(precancelled_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Nursery exit is a schedule point and never injects a cancellation        */
/* ------------------------------------------------------------------------ */

static int trivial_yields_empty_main(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    uint64_t dc, ds;
    /* An empty nursery: a schedule point, not a cancel point. */
    CP_DELTA_(
        {
            ctrio_nursery_open(&n);
            assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        },
        dc, ds);
    assert_int_equal(dc, 0);
    assert_true(ds >= 1);

    /* In a cancelled scope: still no -ECANCELED from the nursery itself. */
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    CP_DELTA_(
        {
            ctrio_nursery_open(&n);
            assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        },
        dc, ds);
    assert_int_equal(ctrio_cancel_scope_close(&cs, 0), 0);
    assert_false(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_true(ds >= 1);
    return 0;
}

/* Trio (HEAD, >= 0.23): _core/_tests/test_run.py::test_trivial_yields, the
 * empty-nursery cases */
static void test_trivial_yields_empty_nursery(void **state)
{
    (void)state;
    assert_int_equal(run_mock(trivial_yields_empty_main, NULL), 0);
}

static int trivial_yields_noop_child_main(void *arg)
{
    (void)arg;
    int runs = 0;
    ctrio_checkpoint_counts before = ctrio_task_checkpoint_counts();
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, counter, &runs), 0); /* no checkpoint inside */
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_cancel_scope_close(&cs, 0), 0);
    assert_false(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_int_equal(runs, 1);
    assert_true(ctrio_task_checkpoint_counts().schedule_points > before.schedule_points);
    return 0;
}

/* Trio (HEAD): test_trivial_yields, noop_with_no_checkpoint case */
static void test_trivial_yields_noop_child(void **state)
{
    (void)state;
    assert_int_equal(run_mock(trivial_yields_noop_child_main, NULL), 0);
}

static int trivial_yields_body_error_main(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    /* 0.22 gave [KeyError, Cancelled]; 0.23+ gives the KeyError alone. */
    assert_int_equal(ctrio_nursery_close(&n, E_KEY), E_KEY);
    assert_int_equal(ctrio_nursery_error_count(&n), 1);
    assert_int_equal(ctrio_cancel_scope_close(&cs, E_KEY), E_KEY);
    assert_false(ctrio_cancel_scope_cancelled_caught(&cs));
    return 0;
}

/* Trio (HEAD): test_trivial_yields, KeyError in a cancelled scope */
static void test_trivial_yields_body_error_in_cancelled_scope(void **state)
{
    (void)state;
    assert_int_equal(run_mock(trivial_yields_body_error_main, NULL), 0);
}

static int shielded_sleep_one(void *arg)
{
    int *rc = arg;
    ctrio_cancel_scope sh;
    ctrio_cancel_scope_open(&sh);
    ctrio_cancel_scope_set_shield(&sh, true);
    *rc = ctrio_sleep(1);
    return ctrio_cancel_scope_close(&sh, *rc);
}

static int outer_cancel_waiting_main(void *arg)
{
    (void)arg;
    /* 1. A child still running when the outer scope is cancelled is
     *    cancelled through the scope tree; the nursery returns -ECANCELED,
     *    which the outer scope (its cause) catches. */
    int child = 1;
    ctrio_cancel_scope outer;
    ctrio_cancel_scope_open(&outer);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, sleeper, &child), 0);
    ctrio_cancel_scope_cancel(&outer);
    int rc = ctrio_nursery_close(&n, 0);
    assert_int_equal(child, -ECANCELED);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_nursery_error_count(&n), 0);
    assert_int_equal(ctrio_cancel_scope_close(&outer, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&outer));
    assert_true(ctrio_current_time() == 0.0);

    /* 2. Waiting for the children injects nothing (#1457): a child shielded
     *    from the cancelled outer scope runs to its end, and the nursery,
     *    having seen no -ECANCELED, returns 0. */
    ctrio_cancel_scope outer2;
    ctrio_cancel_scope_open(&outer2);
    ctrio_cancel_scope_cancel(&outer2);
    ctrio_nursery n2;
    ctrio_nursery_open(&n2);
    child = 1;
    assert_int_equal(ctrio_start_soon(&n2, shielded_sleep_one, &child), 0);
    rc = ctrio_nursery_close(&n2, 0);
    assert_int_equal(rc, 0);
    assert_int_equal(child, 0);
    assert_true(ctrio_current_time() == 1.0);
    assert_int_equal(ctrio_cancel_scope_close(&outer2, rc), 0);
    assert_false(ctrio_cancel_scope_cancelled_caught(&outer2));
    return 0;
}

/* Trio (HEAD): test_trivial_yields semantics, #1457: the nursery only
 * passes on cancellations its children saw, and never adds its own. */
static void test_nursery_close_never_injects_cancel(void **state)
{
    (void)state;
    assert_int_equal(run_mock(outer_cancel_waiting_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Nursery.start                                                            */
/* ------------------------------------------------------------------------ */

static int nursery_start_basic_main(void *arg)
{
    (void)arg;
    double seconds[2] = {1, 2};
    for (int i = 0; i < 2; i++) {
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        double t0 = ctrio_current_time();
        void *value = NULL;
        assert_int_equal(ctrio_start(&n, sleep_then_start, &seconds[i], &value), 0);
        assert_ptr_equal(value, &seconds[i]);
        assert_true(ctrio_current_time() - t0 == seconds[i]);
        /* The child now belongs to n: close waits for its second sleep. */
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        assert_true(ctrio_current_time() - t0 == 2 * seconds[i]);
    }
    /* started_value may be NULL. */
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    double t0 = ctrio_current_time(), three = 3;
    assert_int_equal(ctrio_start(&n, sleep_then_start, &three, NULL), 0);
    assert_true(ctrio_current_time() - t0 == 3);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_true(ctrio_current_time() - t0 == 6);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_start, happy path */
static void test_nursery_start_basic(void **state)
{
    (void)state;
    assert_int_equal(run_mock(nursery_start_basic_main, NULL), 0);
}

static int started_outside_start(void *arg)
{
    int *rc = arg;
    *rc = ctrio_task_started(NULL);
    return 0;
}

static int task_started_not_launched_main(void *arg)
{
    (void)arg;
    /* The main task was not launched by ctrio_start. */
    assert_int_equal(ctrio_task_started(NULL), -EPERM);
    int rc = 1;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, started_outside_start, &rc), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(rc, -EPERM);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_start, the
 * TASK_STATUS_IGNORED case, adapted: C has no ignored status; a task
 * not launched by ctrio_start gets -EPERM from ctrio_task_started. */
static void test_task_started_outside_start(void **state)
{
    (void)state;
    assert_int_equal(run_mock(task_started_not_launched_main, NULL), 0);
}

struct double_started {
    int rc1, rc2;
};

static int double_started(void *arg)
{
    struct double_started *d = arg;
    d->rc1 = ctrio_task_started(d);
    d->rc2 = ctrio_task_started(NULL);
    return 0;
}

static int double_started_main(void *arg)
{
    (void)arg;
    struct double_started d = {1, 1};
    void *value = NULL;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start(&n, double_started, &d, &value), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(d.rc1, 0);
    assert_int_equal(d.rc2, -EPERM);
    assert_ptr_equal(value, &d); /* the first call's value */
    assert_int_equal(ctrio_nursery_error_count(&n), 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_start, "calling started
 * twice" */
static void test_task_started_twice(void **state)
{
    (void)state;
    assert_int_equal(run_mock(double_started_main, NULL), 0);
}

static int returns_without_started(void *arg)
{
    int *runs = arg;
    (*runs)++;
    return 0;
}

static int no_started_main(void *arg)
{
    (void)arg;
    int runs = 0;
    void *value = &runs;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start(&n, returns_without_started, &runs, &value), -EPERM);
    assert_int_equal(runs, 1);
    assert_ptr_equal(value, &runs); /* untouched */
    /* The failure belongs to start, not to the nursery. */
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_nursery_error_count(&n), 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_start, "child exiting cleanly
 * before calling started" */
static void test_start_child_returns_without_started(void **state)
{
    (void)state;
    assert_int_equal(run_mock(no_started_main, NULL), 0);
}

static int sleep_then_fail(void *arg)
{
    int rc = ctrio_sleep(1);
    if (rc < 0)
        return rc;
    return *(int *)arg;
}

static int fail_before_started_main(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start(&n, crasher, &e_key, NULL), E_KEY);
    assert_int_equal(ctrio_start(&n, sleep_then_fail, &e_value, NULL), E_VALUE);
    assert_true(ctrio_current_time() == 1.0);
    /* Nothing reached the nursery: it was not cancelled and has no error. */
    assert_false(ctrio_cancel_scope_cancel_called(ctrio_nursery_cancel_scope(&n)));
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_nursery_error_count(&n), 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_start, "child crashes before
 * calling started -> error comes out of .start()" */
static void test_start_child_fails_before_started(void **state)
{
    (void)state;
    assert_int_equal(run_mock(fail_before_started_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* A cancelled start makes started() a no-op                                */
/* ------------------------------------------------------------------------ */

struct just_started {
    int started_rc;
    int checkpoint_rc;
};

static int just_started(void *arg)
{
    struct just_started *j = arg;
    j->started_rc = ctrio_task_started("hi");
    j->checkpoint_rc = ctrio_checkpoint();
    return j->checkpoint_rc;
}

static int started_with_no_checkpoint(void *arg)
{
    return ctrio_task_started(arg);
}

static int error_after_started(void *arg)
{
    int rc = ctrio_task_started(NULL);
    if (rc < 0)
        return rc;
    return *(int *)arg;
}

static int start_cancelled_main(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_cancel_scope cs;

    /* started() is a no-op; the child's checkpoint is cancelled; start
     * returns -ECANCELED, which cs catches. */
    struct just_started j = {1, 1};
    ctrio_nursery_open(&n);
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    int rc = ctrio_start(&n, just_started, &j, NULL);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(j.started_rc, 0); /* a no-op, not an error */
    assert_int_equal(j.checkpoint_rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_nursery_error_count(&n), 0);

    /* Trio's just_started: a child that reaches no checkpoint and returns 0
     * completes, but start is a checkpoint in a cancelled scope: -ECANCELED,
     * the value ignored ("start() raises Cancelled"), and cs catches it. */
    int marker = 0;
    void *value = NULL;
    ctrio_nursery_open(&n);
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    rc = ctrio_start(&n, started_with_no_checkpoint, &marker, &value);
    assert_int_equal(rc, -ECANCELED);
    assert_null(value);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    /* A failure after the no-op started() still comes out of start, not out
     * of the nursery. */
    ctrio_nursery_open(&n);
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    rc = ctrio_start(&n, error_after_started, &e_key, NULL);
    assert_int_equal(rc, E_KEY);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), E_KEY);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_nursery_error_count(&n), 0);
    return 0;
}

/* Trio (HEAD): _core/_tests/test_run.py::test_nursery_start, the cancelled
 * start cases: just_started, started_with_no_checkpoint,
 * raise_keyerror_after_started */
static void test_start_cancelled(void **state)
{
    (void)state;
    assert_int_equal(run_mock(start_cancelled_main, NULL), 0);
}

static int started_then_shielded_sleep(void *arg)
{
    int *rc = arg;
    int r = ctrio_task_started(NULL);
    if (r < 0)
        return r;
    return shielded_sleep_one(rc);
}

static int start_cancelled_child_stays_main(void *arg)
{
    (void)arg;
    int child = 1;
    ctrio_nursery n;
    ctrio_cancel_scope cs;
    ctrio_nursery_open(&n);
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    /* started() did not move the child: start waits for all of it, then
     * says -ECANCELED (Trio: start() raises Cancelled). */
    int rc = ctrio_start(&n, started_then_shielded_sleep, &child, NULL);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(child, 0);
    assert_true(ctrio_current_time() == 1.0);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    /* ... and the target nursery has nothing left to wait for. */
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_true(ctrio_current_time() == 1.0);
    return 0;
}

/* New (beside ::test_nursery_start): after a cancelled start's no-op
 * started(), the child keeps running under ctrio_start, which returns only
 * when the child does. */
static void test_start_cancelled_child_stays_under_start(void **state)
{
    (void)state;
    assert_int_equal(run_mock(start_cancelled_child_stays_main, NULL), 0);
}

/* ctrio_task_started from inside two cancel scopes of the child's own: the
 * outer of them moves under the target nursery (Trio re-parents the child's
 * cancel status the same way), so cancelling the target nursery reaches the
 * child's innermost wait, and the deadline of its inner scope still works
 * there. (Before this test only a child that called started in no scope, or
 * in one, was exercised.) */
static int nested_started_child(void *arg)
{
    int *woke = arg;
    ctrio_cancel_scope a, b;
    ctrio_cancel_scope_open(&a);
    ctrio_move_on_after(&b, 100); /* far: the nursery's cancel comes first */
    int rc = ctrio_task_started(NULL);
    if (rc == 0)
        rc = ctrio_sleep_forever();
    *woke = rc;
    rc = ctrio_cancel_scope_close(&b, rc);
    return ctrio_cancel_scope_close(&a, rc);
}

static int nested_started_main(void *arg)
{
    (void)arg;
    ctrio_cancel_scope guard;
    ctrio_fail_after(&guard, 1000);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    int woke = 1;
    assert_int_equal(ctrio_start(&n, nested_started_child, &woke, NULL), 0);
    assert_int_equal(ctrio_sleep(1), 0);
    assert_int_equal(woke, 1); /* still waiting, under n now */
    double t0 = ctrio_current_time();
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(woke, -ECANCELED);
    assert_true(ctrio_current_time() == t0); /* at once, not at a deadline */
    return ctrio_cancel_scope_close(&guard, 0);
}

static void test_started_inside_nested_scopes(void **state)
{
    (void)state;
    assert_int_equal(run_mock(nested_started_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* A pending start keeps the target nursery open                            */
/* ------------------------------------------------------------------------ */

static int sleep_a_bit(void *arg)
{
    (void)arg;
    int rc = ctrio_sleep(2);
    if (rc < 0)
        return rc;
    if ((rc = ctrio_task_started(NULL)) < 0)
        return rc;
    return ctrio_sleep(3);
}

static int keeps_open_main(void *arg)
{
    (void)arg;
    ctrio_nursery n1, n2;
    struct starter s1 = {0}, s2 = {0};
    ctrio_nursery_open(&n1);
    double t0 = ctrio_current_time();
    ctrio_nursery_open(&n2);
    s1 = (struct starter){&n2, sleep_a_bit, NULL, 1, 0};
    s2 = s1;
    assert_int_equal(ctrio_start_soon(&n1, start_in, &s1), 0);
    assert_int_equal(ctrio_sleep(1), 0);
    assert_int_equal(ctrio_start_soon(&n1, start_in, &s2), 0);
    /* n2 has no child yet: only the pending starts keep it open. */
    assert_int_equal(ctrio_nursery_close(&n2, 0), 0);
    assert_true(ctrio_current_time() - t0 == 6);
    assert_int_equal(ctrio_nursery_close(&n1, 0), 0);
    assert_int_equal(s1.rc, 0);
    assert_int_equal(s2.rc, 0);
    assert_true(ctrio_current_time() - t0 == 6);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_start_keeps_nursery_open,
 * first part */
static void test_nursery_start_keeps_nursery_open(void **state)
{
    (void)state;
    assert_int_equal(run_mock(keeps_open_main, NULL), 0);
}

static int sleep_then_crash(void *arg)
{
    (void)arg;
    int rc = ctrio_sleep(7);
    if (rc < 0)
        return rc;
    return E_KEY;
}

static int keeps_open_crash_main(void *arg)
{
    (void)arg;
    ctrio_nursery n1, n2;
    ctrio_nursery_open(&n1);
    double t0 = ctrio_current_time();
    ctrio_nursery_open(&n2);
    struct starter s = {&n2, sleep_then_crash, NULL, 1, 0};
    assert_int_equal(ctrio_start_soon(&n1, start_in, &s), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(s.done, 0);
    /* The starting child crashes and never enters n2: n2 still closes, at
     * the crash, and without the error. */
    assert_int_equal(ctrio_nursery_close(&n2, 0), 0);
    assert_true(ctrio_current_time() - t0 == 7);
    assert_int_equal(ctrio_nursery_error_count(&n2), 0);
    assert_int_equal(s.done, 1);
    assert_int_equal(s.rc, E_KEY);
    assert_int_equal(ctrio_nursery_close(&n1, 0), 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_start_keeps_nursery_open,
 * second part (sleep_then_crash) */
static void test_nursery_start_keeps_nursery_open_crash(void **state)
{
    (void)state;
    assert_int_equal(run_mock(keeps_open_crash_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Tasks moved into a cancelled nursery get cancelled there                 */
/* ------------------------------------------------------------------------ */

struct setup_nursery {
    int sleep_rc, rc;
};

static int setup_nursery(void *arg)
{
    struct setup_nursery *s = arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    int rc = ctrio_task_started(&n);
    if (rc == 0)
        rc = s->sleep_rc = ctrio_sleep_forever();
    s->rc = ctrio_nursery_close(&n, rc);
    return s->rc;
}

/* Sleeps that end long after the test should: with sleep_forever (as in
 * Trio) a missed cancellation would hang the run; with these it shows as a
 * wrong result and a wrong time. */
static int long_sleeper(void *arg)
{
    int *rc = arg;
    *rc = ctrio_sleep(50);
    return *rc;
}

struct sleeping_children {
    ctrio_nursery *target;
    bool cancel_before_started;
    int sleeper_rc[2];
    int rc;
};

static int sleeping_children(void *arg)
{
    struct sleeping_children *s = arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    int rc = ctrio_start_soon(&n, long_sleeper, &s->sleeper_rc[0]);
    if (rc == 0)
        rc = ctrio_start_soon(&n, long_sleeper, &s->sleeper_rc[1]);
    if (rc == 0)
        rc = ctrio_wait_all_tasks_blocked(0);
    if (rc == 0 && s->cancel_before_started)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(s->target));
    if (rc == 0)
        rc = ctrio_task_started(NULL);
    s->rc = ctrio_nursery_close(&n, rc);
    return s->rc;
}

static int cancelled_target_main(void *arg)
{
    bool before = *(bool *)arg;
    struct setup_nursery su = {1, 1};
    struct sleeping_children sc = {NULL, before, {1, 1}, 1};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    void *target = NULL;
    assert_int_equal(ctrio_start(&n, setup_nursery, &su, &target), 0);
    assert_non_null(target);
    sc.target = target;
    assert_int_equal(ctrio_start(target, sleeping_children, &sc, NULL), 0);
    if (!before)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(target));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    /* The sleepers, moved with their task into the cancelled target, were
     * cancelled at once. */
    assert_int_equal(sc.sleeper_rc[0], -ECANCELED);
    assert_int_equal(sc.sleeper_rc[1], -ECANCELED);
    assert_true(ctrio_current_time() == 0.0);
    /* Their nursery passes the cancellation on; setup_nursery's nursery,
     * which caused it, absorbs it. */
    assert_int_equal(sc.rc, -ECANCELED);
    assert_int_equal(su.sleep_rc, -ECANCELED);
    assert_int_equal(su.rc, 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_nursery_start_with_cancelled_nursery,
 * "cancelling the setup_nursery just *before* calling started()" */
static void test_nursery_start_with_cancelled_nursery_before(void **state)
{
    (void)state;
    bool before = true;
    assert_int_equal(run_mock(cancelled_target_main, &before), 0);
}

/* Trio: _core/tests/test_run.py::test_nursery_start_with_cancelled_nursery,
 * "cancelling the setup_nursery just *after* calling started()" */
static void test_nursery_start_with_cancelled_nursery_after(void **state)
{
    (void)state;
    bool before = false;
    assert_int_equal(run_mock(cancelled_target_main, &before), 0);
}

/* ------------------------------------------------------------------------ */
/* Cancelling a nursery reaches every descendant                            */
/* ------------------------------------------------------------------------ */

struct leaf {
    unsigned *record;
    unsigned bit;
};

static int leaf(void *arg)
{
    struct leaf *l = arg;
    if (ctrio_sleep_forever() == -ECANCELED)
        *l->record |= l->bit;
    return 0;
}

struct worker {
    struct leaf leaves[2];
    int rc;
};

static int worker(void *arg)
{
    struct worker *w = arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, leaf, &w->leaves[0]);
    ctrio_start_soon(&n, leaf, &w->leaves[1]);
    w->rc = ctrio_nursery_close(&n, 0);
    return w->rc;
}

static int cancel_inheritance_main(void *arg)
{
    (void)arg;
    unsigned record = 0;
    struct worker w[2] = {{{{&record, 1}, {&record, 2}}, 1}, {{{&record, 4}, {&record, 8}}, 1}};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, worker, &w[0]), 0);
    assert_int_equal(ctrio_start_soon(&n, worker, &w[1]), 0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(record, 0xF);
    assert_int_equal(w[0].rc, 0);
    assert_int_equal(w[1].rc, 0);
    assert_true(ctrio_current_time() == 0.0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_inheritance */
static void test_cancel_inheritance(void **state)
{
    (void)state;
    assert_int_equal(run_mock(cancel_inheritance_main, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* New tests                                                                */
/* ------------------------------------------------------------------------ */

static int nursery_cancel_scope_main(void *arg)
{
    (void)arg;
    int c1 = 1, c2 = 1;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_cancel_scope *cs = ctrio_nursery_cancel_scope(&n);
    assert_non_null(cs);
    assert_int_equal(ctrio_start_soon(&n, sleeper, &c1), 0);
    assert_int_equal(ctrio_start_soon(&n, sleeper, &c2), 0);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_false(ctrio_cancel_scope_cancel_called(cs));
    ctrio_cancel_scope_cancel(cs);
    assert_true(ctrio_cancel_scope_cancel_called(cs));
    int body = ctrio_sleep_forever();
    assert_int_equal(body, -ECANCELED);
    assert_int_equal(ctrio_nursery_close(&n, body), 0);
    assert_int_equal(c1, -ECANCELED);
    assert_int_equal(c2, -ECANCELED);
    assert_true(ctrio_cancel_scope_cancelled_caught(cs));
    assert_int_equal(ctrio_nursery_error_count(&n), 0);
    /* Outside the nursery nothing is cancelled any more. */
    assert_int_equal(ctrio_checkpoint(), 0);
    return 0;
}

/* New: ctrio_nursery_cancel_scope cancels the body and every child; close
 * then returns 0 (Trio: nursery.cancel_scope.cancel()). */
static void test_nursery_cancel_scope(void **state)
{
    (void)state;
    assert_int_equal(run_mock(nursery_cancel_scope_main, NULL), 0);
}

#define MANY_TASKS 100000

struct many {
    ctrio_event ev;
    size_t started, finished;
};

static int many_waiter(void *arg)
{
    struct many *m = arg;
    m->started++;
    int rc = ctrio_event_wait(&m->ev);
    if (rc == 0)
        m->finished++;
    return rc;
}

static int many_tasks_main(void *arg)
{
    struct many *m = arg;
    ctrio_event_init(&m->ev);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (size_t i = 0; i < MANY_TASKS; i++) {
        int rc = ctrio_start_soon(&n, many_waiter, m);
        if (rc != 0) {
            ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
            ctrio_nursery_close(&n, rc);
            fail_msg("start_soon failed at task %zu: %s", i, ctrio_strerror(rc));
        }
    }
    /* Every child runs once and blocks before we run again. */
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(m->started, MANY_TASKS);
    assert_int_equal(m->finished, 0);
    ctrio_event_set(&m->ev);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(m->finished, MANY_TASKS);
    return 0;
}

/* New: 100,000 tasks alive at once in one nursery, each waiting on one
 * Event; all finish once it is set. */
static int trivial_task(void *arg)
{
    (void)arg;
    return 0;
}

static void test_100k_tasks_alive(void **state)
{
    (void)state;
    if (ctrio__stack_guard_mode() == 0)
        assert_int_equal(ctrio_run(trivial_task, NULL), 0);
    if (ctrio__stack_guard_mode() < 0) {
        /* mprotect guards (no working MADV_GUARD_INSTALL: an old kernel or
         * qemu-user) cap a process near 32,700 stacks: documented */
        print_message("mprotect guards in use: 100,000 stacks exceed vm.max_map_count\n");
        skip();
    }
    static struct many m;
    memset(&m, 0, sizeof m);
    ctrio_config cfg = {0};
    cfg.stack_size = 32 * 1024;
    cfg.mock_clock = 1;
    cfg.autojump_threshold = 0;
    assert_int_equal(ctrio_run_with(&cfg, many_tasks_main, &m), 0);
    assert_int_equal(m.started, MANY_TASKS);
    assert_int_equal(m.finished, MANY_TASKS);
}

#define SEQ_SPAWNS 10000

static int sequential_spawns_main(void *arg)
{
    (void)arg;
    int runs = 0;
    size_t max_live = 0, max_free = 0;
    ctrio__stack_cache *c = &ctrio__tls_run->stacks;
    for (int i = 0; i < SEQ_SPAWNS; i++) {
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        assert_int_equal(ctrio_start_soon(&n, counter, &runs), 0);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        assert_int_equal(runs, i + 1);
        if (c->live > max_live)
            max_live = c->live;
        if (c->nfree > max_free)
            max_free = c->nfree;
    }
    /* Each child's stack went back to the cache and was reused: never more
     * than the main task's and one child's (plus one not yet reaped). */
    assert_true(max_live <= 3);
    assert_true(max_free <= 2);
    return 0;
}

/* New: 10,000 tasks spawned one after the other (spawn, reap) reuse their
 * stacks from the cache. White-box: reads ctrio__run.stacks. */
static void test_sequential_spawns(void **state)
{
    (void)state;
    assert_int_equal(run_mock(sequential_spawns_main, NULL), 0);
}

static int fds_during_run;

static int fds_main(void *arg)
{
    (void)arg;
    fds_during_run = count_open_fds();
    int runs = 0;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ctrio_start_soon(&n, counter, &runs), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(runs, 10);
    return 0;
}

/* New: a run holds descriptors (its poller and wakeup) and closes every one
 * of them before ctrio_run returns (TEST()'s teardown checks it too). */
static void test_no_descriptor_left_after_run(void **state)
{
    (void)state;
    int before = count_open_fds();
    assert_true(before >= 0);
    assert_int_equal(run_real(fds_main, NULL), 0);
    assert_true(fds_during_run > before);
    assert_int_equal(count_open_fds(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_nursery_closure),
        TEST(test_closed_nursery_rejects_start),
        TEST(test_start_soon_into_empty_closing_nursery),
        TEST(test_start_soon_after_last_child_exited),
        TEST(test_child_crash_basic),
        TEST(test_task_crash_propagation),
        TEST(test_child_crash_wakes_parent),
        TEST(test_nursery_main_block_error_basic),
        TEST(test_nursery_explicit_exception),
        TEST(test_main_and_task_both_crash),
        TEST(test_two_child_crashes),
        TEST(test_many_child_crashes),
        TEST(test_first_errors_kept_in_order),
        TEST(test_cancel_scope_multierror_filtering),
        TEST(test_precancelled_task),
        TEST(test_trivial_yields_empty_nursery),
        TEST(test_trivial_yields_noop_child),
        TEST(test_trivial_yields_body_error_in_cancelled_scope),
        TEST(test_nursery_close_never_injects_cancel),
        TEST(test_nursery_start_basic),
        TEST(test_task_started_outside_start),
        TEST(test_task_started_twice),
        TEST(test_start_child_returns_without_started),
        TEST(test_start_child_fails_before_started),
        TEST(test_start_cancelled),
        TEST(test_start_cancelled_child_stays_under_start),
        TEST(test_started_inside_nested_scopes),
        TEST(test_nursery_start_keeps_nursery_open),
        TEST(test_nursery_start_keeps_nursery_open_crash),
        TEST(test_nursery_start_with_cancelled_nursery_before),
        TEST(test_nursery_start_with_cancelled_nursery_after),
        TEST(test_cancel_inheritance),
        TEST(test_nursery_cancel_scope),
        TEST(test_100k_tasks_alive),
        TEST(test_sequential_spawns),
        TEST(test_no_descriptor_left_after_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
