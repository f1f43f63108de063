/*
 * test_cancel.c — cancel scopes: cancel(), level-triggering, which scope
 * catches, unbound scopes, shields, deadlines, the effective deadline,
 * misnesting, move_on_* / fail_*.
 */
#include "support.h"

#include <ctrio_testing.h>

#include <stdatomic.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* cancel(), flags, nesting                                                   */
/* ------------------------------------------------------------------------ */

static int edge_cases_body(void *arg)
{
    (void)arg;
    int rc;
    ctrio_cancel_scope scope;

    ctrio_cancel_scope_open(&scope);
    /* Two cancels in a row: idempotent. */
    ctrio_cancel_scope_cancel(&scope);
    ctrio_cancel_scope_cancel(&scope);
    rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&scope, rc), 0);
    assert_true(ctrio_cancel_scope_cancel_called(&scope));
    assert_true(ctrio_cancel_scope_cancelled_caught(&scope));

    /* Level-triggered: sleep_forever fails again and again. */
    ctrio_cancel_scope_open(&scope);
    ctrio_cancel_scope_cancel(&scope);
    assert_int_equal(ctrio_sleep_forever(), -ECANCELED);
    rc = ctrio_sleep_forever();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&scope, rc), 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_edge_cases. */
static void test_cancel_edge_cases(void **state)
{
    (void)state;
    assert_int_equal(run_mock(edge_cases_body, NULL), 0);
}

static int flags_body(void *arg)
{
    (void)arg;
    int rc;
    ctrio_cancel_scope s, outer, inner;

    /* Never cancelled. */
    ctrio_cancel_scope_open(&s);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(ctrio_cancel_scope_close(&s, 0), 0);
    assert_false(ctrio_cancel_scope_cancel_called(&s));
    assert_false(ctrio_cancel_scope_cancelled_caught(&s));

    /* Cancelled but no checkpoint reached: nothing caught. */
    ctrio_cancel_scope_open(&s);
    ctrio_cancel_scope_cancel(&s);
    assert_int_equal(ctrio_cancel_scope_close(&s, 0), 0);
    assert_true(ctrio_cancel_scope_cancel_called(&s));
    assert_false(ctrio_cancel_scope_cancelled_caught(&s));
    assert_int_equal(ctrio_checkpoint(), 0); /* nothing delivered after exit */

    /* Cancelled, but the body fails otherwise: the error passes unchanged. */
    ctrio_cancel_scope_open(&s);
    ctrio_cancel_scope_cancel(&s);
    assert_int_equal(ctrio_cancel_scope_close(&s, -EIO), -EIO);
    assert_true(ctrio_cancel_scope_cancel_called(&s));
    assert_false(ctrio_cancel_scope_cancelled_caught(&s));

    /* A -ECANCELED that this scope did not cause passes through. */
    ctrio_cancel_scope_open(&s);
    assert_int_equal(ctrio_cancel_scope_close(&s, -ECANCELED), -ECANCELED);
    assert_false(ctrio_cancel_scope_cancelled_caught(&s));

    /* An inner scope absorbs only its own cancellation. */
    ctrio_cancel_scope_open(&outer);
    ctrio_cancel_scope_open(&inner);
    ctrio_cancel_scope_cancel(&inner);
    rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    rc = ctrio_cancel_scope_close(&inner, rc);
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(ctrio_cancel_scope_close(&outer, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&inner));
    assert_false(ctrio_cancel_scope_cancel_called(&outer));
    assert_false(ctrio_cancel_scope_cancelled_caught(&outer));
    return 0;
}

/* New (not in Trio as one test; ::test_cancel_edge_cases,
 * ::test_cancel_scope_nesting): cancel_called records the
 * request, cancelled_caught only a -ECANCELED this scope caused and caught. */
static void test_cancel_called_and_cancelled_caught(void **state)
{
    (void)state;
    assert_int_equal(run_mock(flags_body, NULL), 0);
}

static int nesting_body(void *arg)
{
    (void)arg;
    int rc;
    ctrio_cancel_scope scope1, scope2, scope3;

    /* Two nested scopes cancelled at once: the outer one catches. */
    ctrio_cancel_scope_open(&scope1);
    ctrio_cancel_scope_open(&scope2);
    ctrio_cancel_scope_open(&scope3);
    ctrio_cancel_scope_cancel(&scope3);
    ctrio_cancel_scope_cancel(&scope2);
    rc = ctrio_sleep_forever();
    assert_int_equal(rc, -ECANCELED);
    rc = ctrio_cancel_scope_close(&scope3, rc);
    assert_int_equal(rc, -ECANCELED);
    rc = ctrio_cancel_scope_close(&scope2, rc);
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_cancel_scope_close(&scope1, rc), 0);
    assert_true(ctrio_cancel_scope_cancel_called(&scope3));
    assert_false(ctrio_cancel_scope_cancelled_caught(&scope3));
    assert_true(ctrio_cancel_scope_cancel_called(&scope2));
    assert_true(ctrio_cancel_scope_cancelled_caught(&scope2));
    assert_false(ctrio_cancel_scope_cancel_called(&scope1));
    assert_false(ctrio_cancel_scope_cancelled_caught(&scope1));

    /* Shielding. */
    ctrio_cancel_scope_open(&scope1);
    ctrio_cancel_scope_open(&scope2);
    ctrio_cancel_scope_cancel(&scope1);
    assert_int_equal(ctrio_checkpoint(), -ECANCELED);
    assert_int_equal(ctrio_checkpoint(), -ECANCELED);
    ctrio_cancel_scope_set_shield(&scope2, true);
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_cancel_scope_cancel(&scope2);
    rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    rc = ctrio_cancel_scope_close(&scope2, rc); /* shielded: its own, caught */
    assert_int_equal(rc, 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&scope2));
    rc = ctrio_checkpoint(); /* scope1 is still cancelled */
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&scope1, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&scope1));

    /* A pending cancel that no checkpoint saw is not delivered after the
     * scope is gone. */
    ctrio_cancel_scope_open(&scope1);
    ctrio_cancel_scope_cancel(&scope1);
    assert_int_equal(ctrio_cancel_shielded_checkpoint(), 0);
    assert_int_equal(ctrio_cancel_scope_close(&scope1, 0), 0);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_false(ctrio_cancel_scope_cancelled_caught(&scope1));
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_scope_nesting. */
static void test_cancel_scope_nesting(void **state)
{
    (void)state;
    assert_int_equal(run_mock(nesting_body, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Unbound scopes (init + enter)                                              */
/* ------------------------------------------------------------------------ */

struct unbound_ctx {
    ctrio_cancel_scope *scope;
    int enter_rc, rc;
    double woke_at;
};

/* Trio's sleep_until_cancelled: `with scope, fail_after(1): sleep_forever()`. */
static int sleep_until_cancelled(void *arg)
{
    struct unbound_ctx *c = arg;
    c->enter_rc = ctrio_cancel_scope_enter(c->scope);
    if (c->enter_rc < 0)
        return c->enter_rc;
    ctrio_cancel_scope f;
    ctrio_fail_after(&f, 1);
    int rc = ctrio_sleep_forever();
    c->woke_at = ctrio_current_time();
    rc = ctrio_cancel_scope_close(&f, rc);
    c->rc = ctrio_cancel_scope_close(c->scope, rc);
    return c->rc;
}

static int unbound_before_entry_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope scope;
    ctrio_cancel_scope_init(&scope);
    ctrio_cancel_scope_cancel(&scope);
    assert_true(ctrio_cancel_scope_cancel_called(&scope));
    struct unbound_ctx c = {&scope, 1, 1, -1};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, sleep_until_cancelled, &c), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(c.enter_rc, 0);
    assert_int_equal(c.rc, 0);
    assert_true(c.woke_at == 0.0); /* not the fail_after(1) */
    assert_true(ctrio_cancel_scope_cancelled_caught(&scope));
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_unbound, "cancel before entry":
 * a scope cancelled before it is entered cancels the first checkpoint
 * inside. */
static void test_cancel_unbound_before_entry(void **state)
{
    (void)state;
    assert_int_equal(run_mock(unbound_before_entry_body, NULL), 0);
}

static int unbound_after_entry_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope scope;
    ctrio_cancel_scope_init(&scope);
    struct unbound_ctx c = {&scope, 1, 1, -1};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, sleep_until_cancelled, &c), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(c.enter_rc, 0);
    assert_true(c.woke_at == -1); /* asleep */
    ctrio_cancel_scope_cancel(&scope);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(c.rc, 0);
    assert_true(c.woke_at == 0.0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&scope));
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_unbound, "cancel after entry":
 * cancelling from another task wakes the sleeper inside. */
static void test_cancel_unbound_after_entry(void **state)
{
    (void)state;
    assert_int_equal(run_mock(unbound_after_entry_body, NULL), 0);
}

static int unbound_shield_body(void *arg)
{
    (void)arg;
    int rc;
    ctrio_cancel_scope scope, outer;
    ctrio_cancel_scope_init(&scope);
    ctrio_cancel_scope_set_shield(&scope, true);
    assert_true(ctrio_cancel_scope_shield(&scope));
    ctrio_cancel_scope_open(&outer);
    assert_int_equal(ctrio_cancel_scope_enter(&scope), 0);
    ctrio_cancel_scope_cancel(&outer);
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_cancel_scope_set_shield(&scope, false);
    rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    rc = ctrio_cancel_scope_close(&scope, rc);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&outer, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&outer));
    assert_false(ctrio_cancel_scope_cancelled_caught(&scope));
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_unbound, "shield before entry". */
static void test_cancel_unbound_shield_before_entry(void **state)
{
    (void)state;
    assert_int_equal(run_mock(unbound_shield_body, NULL), 0);
}

static int enter_and_sleep(void *arg)
{
    struct unbound_ctx *c = arg;
    c->enter_rc = ctrio_cancel_scope_enter(c->scope);
    if (c->enter_rc < 0)
        return c->enter_rc;
    int rc = ctrio_sleep_forever();
    c->rc = rc;
    return ctrio_cancel_scope_close(c->scope, rc);
}

static int single_use_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope scope;

    /* Can't reuse. */
    ctrio_cancel_scope_open(&scope);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(ctrio_cancel_scope_close(&scope, 0), 0);
    ctrio_cancel_scope_cancel(&scope);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_true(ctrio_cancel_scope_cancel_called(&scope));
    assert_false(ctrio_cancel_scope_cancelled_caught(&scope));
    assert_int_equal(ctrio_cancel_scope_enter(&scope), -EPERM);
    assert_int_equal(ctrio_checkpoint(), 0); /* still not inside it */

    /* Can't re-enter. */
    ctrio_cancel_scope_open(&scope);
    assert_int_equal(ctrio_cancel_scope_enter(&scope), -EPERM);
    assert_int_equal(ctrio_cancel_scope_close(&scope, 0), 0);

    /* An unbound scope enters once only too. */
    ctrio_cancel_scope_init(&scope);
    assert_int_equal(ctrio_cancel_scope_enter(&scope), 0);
    assert_int_equal(ctrio_cancel_scope_enter(&scope), -EPERM);
    assert_int_equal(ctrio_cancel_scope_close(&scope, 0), 0);
    assert_int_equal(ctrio_cancel_scope_enter(&scope), -EPERM);

    /* Can't enter from two tasks. */
    ctrio_cancel_scope_init(&scope);
    struct unbound_ctx c = {&scope, 1, 1, -1};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, enter_and_sleep, &c), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(c.enter_rc, 0);
    assert_int_equal(ctrio_cancel_scope_enter(&scope), -EPERM);
    /* The failed entry changed nothing: the child still sleeps. */
    assert_int_equal(c.rc, 1);
    assert_false(ctrio_cancel_scope_cancel_called(&scope));
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(c.rc, -ECANCELED);
    assert_false(ctrio_cancel_scope_cancelled_caught(&scope));
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_unbound, "can't reuse", "can't
 * reenter", "can't enter from multiple tasks": -EPERM. */
static void test_cancel_scope_single_use(void **state)
{
    (void)state;
    assert_int_equal(run_mock(single_use_body, NULL), 0);
}

static int unbound_deadline_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope scope;
    ctrio_cancel_scope_init(&scope);
    ctrio_cancel_scope_set_deadline(&scope, ctrio_current_time() + 1);
    assert_false(ctrio_cancel_scope_cancel_called(&scope));
    ctrio_cancel_scope_set_deadline(&scope, ctrio_cancel_scope_deadline(&scope) - 1);
    assert_true(ctrio_cancel_scope_cancel_called(&scope));
    ctrio_cancel_scope_set_deadline(&scope, ctrio_cancel_scope_deadline(&scope) + 1);
    assert_true(ctrio_cancel_scope_cancel_called(&scope)); /* never uncancelled */
    /* ... and so it is cancelled once entered. */
    assert_int_equal(ctrio_cancel_scope_enter(&scope), 0);
    int rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&scope, rc), 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_unbound, last block: a
 * scope not yet entered reports cancel_called once its deadline has passed,
 * and it never becomes uncancelled. */
static void test_cancel_unbound_deadline_passed(void **state)
{
    /* Found a bug: cancel_called of a scope not entered yet now sees a passed deadline. */
    (void)state;
    assert_int_equal(run_mock(unbound_deadline_body, NULL), 0);
}

/* Trio: CancelScope.cancel_called cancels the scope when the deadline has
 * passed (test_run.py::test_cancel_unbound): for an open scope too, before
 * any checkpoint noticed the deadline, and the answer stays true when the
 * deadline is moved later afterwards; the next checkpoint is cancelled. */
static int open_deadline_passed_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope scope;
    ctrio_move_on_after(&scope, 1);
    assert_false(ctrio_cancel_scope_cancel_called(&scope));
    ctrio_mock_clock_jump(2); /* fired at the next scheduler turn: not yet */
    assert_true(ctrio_cancel_scope_cancel_called(&scope));
    ctrio_cancel_scope_set_deadline(&scope, INFINITY);
    assert_true(ctrio_cancel_scope_cancel_called(&scope)); /* never uncancelled */
    int rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&scope, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&scope));
    return 0;
}

static void test_cancel_called_open_deadline_passed(void **state)
{
    (void)state;
    assert_int_equal(run_autojump(-1, open_deadline_passed_body, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Shields                                                                    */
/* ------------------------------------------------------------------------ */

static int shielding_body(void *arg)
{
    (void)arg;
    int rc;
    ctrio_cancel_scope outer, inner, innerest;
    ctrio_cancel_scope_open(&outer);
    ctrio_cancel_scope_open(&inner);
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_cancel_scope_cancel(&outer);
    assert_int_equal(ctrio_checkpoint(), -ECANCELED);

    assert_false(ctrio_cancel_scope_shield(&inner));
    ctrio_cancel_scope_set_shield(&inner, true);
    assert_true(ctrio_cancel_scope_shield(&inner));
    /* The shield protects us from outer. */
    assert_int_equal(ctrio_checkpoint(), 0);

    /* ... but not from a scope inside inner. */
    ctrio_cancel_scope_open(&innerest);
    ctrio_cancel_scope_cancel(&innerest);
    rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&innerest, rc), 0);
    assert_int_equal(ctrio_checkpoint(), 0);

    /* The shield can be dropped again ... */
    ctrio_cancel_scope_set_shield(&inner, false);
    assert_false(ctrio_cancel_scope_shield(&inner));
    assert_int_equal(ctrio_checkpoint(), -ECANCELED);

    /* ... and raised again; it does not protect from inner itself. */
    ctrio_cancel_scope_set_shield(&inner, true);
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_cancel_scope_cancel(&inner);
    rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    rc = ctrio_cancel_scope_close(&inner, rc); /* absorbed by inner */
    assert_int_equal(rc, 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&inner));
    assert_int_equal(ctrio_cancel_scope_close(&outer, rc), 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_shielding. (Trio's "shield
 * must be a bool" check is the C type system's.) */
static void test_cancel_shielding(void **state)
{
    (void)state;
    assert_int_equal(run_mock(shielding_body, NULL), 0);
}

struct shield_record {
    int sleeping, cancelled;
};

static int shield_abort_sleeper(void *arg)
{
    struct shield_record *r = arg;
    r->sleeping = 1;
    if (ctrio_sleep_forever() == -ECANCELED)
        r->cancelled = 1;
    return 0; /* Trio's sleeper swallows the Cancelled */
}

static int shield_abort_body(void *arg)
{
    (void)arg;
    struct shield_record rec = {0, 0};
    ctrio_cancel_scope outer, shielded;
    ctrio_cancel_scope_open(&outer);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_cancel_scope_cancel(&outer);
    ctrio_cancel_scope_set_shield(ctrio_nursery_cancel_scope(&n), true);
    /* The outer scope is cancelled but the shield lets the child sleep. */
    assert_int_equal(ctrio_start_soon(&n, shield_abort_sleeper, &rec), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(rec.sleeping, 1);
    assert_int_equal(rec.cancelled, 0);
    /* Unshielding aborts the sleep at once: check it before the nursery's
     * close could cancel anything itself. */
    ctrio_cancel_scope_set_shield(ctrio_nursery_cancel_scope(&n), false);
    ctrio_cancel_scope_open(&shielded);
    ctrio_cancel_scope_set_shield(&shielded, true);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(rec.cancelled, 1);
    assert_int_equal(ctrio_cancel_scope_close(&shielded, 0), 0);
    /* The body now sees the outer cancellation too. */
    int rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    rc = ctrio_nursery_close(&n, rc);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&outer, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&outer));
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_shield_abort. */
static void test_cancel_shield_abort(void **state)
{
    (void)state;
    assert_int_equal(run_mock(shield_abort_body, NULL), 0);
}

static int unshield_propagating_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope outer, inner;
    ctrio_cancel_scope_open(&outer);
    ctrio_cancel_scope_open(&inner);
    ctrio_cancel_scope_cancel(&outer);
    int rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    /* Trio's `finally: inner.shield = True` while Cancelled propagates. */
    ctrio_cancel_scope_set_shield(&inner, true);
    rc = ctrio_cancel_scope_close(&inner, rc);
    assert_int_equal(rc, -ECANCELED);
    rc = ctrio_cancel_scope_close(&outer, rc);
    assert_int_equal(rc, 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&outer));
    assert_false(ctrio_cancel_scope_cancelled_caught(&inner));
    return 0;
}

/* Trio: _core/tests/test_run.py::test_unshield_while_cancel_propagating
 * (Trio #1175): shielding an inner scope while the outer scope's
 * cancellation unwinds through it does not make the inner scope catch it. */
static void test_unshield_while_cancel_propagating(void **state)
{
    (void)state;
    assert_int_equal(run_mock(unshield_propagating_body, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Deadlines                                                                  */
/* ------------------------------------------------------------------------ */

static int basic_timeout_body(void *arg)
{
    (void)arg;
    int rc;
    ctrio_cancel_scope scope;

    double start = ctrio_current_time();
    ctrio_cancel_scope_open(&scope);
    assert_true(ctrio_cancel_scope_deadline(&scope) == INFINITY);
    ctrio_cancel_scope_set_deadline(&scope, start + 1);
    assert_true(ctrio_cancel_scope_deadline(&scope) == start + 1);
    assert_int_equal(ctrio_cancel_scope_close(&scope, 0), 0);
    assert_false(ctrio_cancel_scope_cancel_called(&scope));
    ctrio_mock_clock_jump(2);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_false(ctrio_cancel_scope_cancel_called(&scope)); /* closed in time */

    start = ctrio_current_time();
    ctrio_move_on_at(&scope, start + 1);
    ctrio_mock_clock_jump(2);
    rc = ctrio_sleep_forever();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&scope, rc), 0);
    assert_true(ctrio_cancel_scope_cancel_called(&scope));
    assert_true(ctrio_cancel_scope_cancelled_caught(&scope));
    assert_true(ctrio_current_time() == start + 2);

    /* Changing the deadline. */
    start = ctrio_current_time();
    ctrio_cancel_scope_open(&scope);
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_cancel_scope_set_deadline(&scope, start + 10);
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_mock_clock_jump(5);
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_cancel_scope_set_deadline(&scope, start + 1);
    assert_int_equal(ctrio_checkpoint(), -ECANCELED);
    rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&scope, rc), 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_basic_timeout. */
static void test_basic_timeout(void **state)
{
    (void)state;
    assert_int_equal(run_mock(basic_timeout_body, NULL), 0);
}

static int yield_briefly_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_move_on_at(&cs, ctrio_current_time() + 5);
    assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_mock_clock_jump(10);
    int rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_yield_briefly_checks_for_timeout. */
static void test_yield_briefly_checks_for_timeout(void **state)
{
    (void)state;
    assert_int_equal(run_mock(yield_briefly_body, NULL), 0);
}

static int past_deadline_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_mock_clock_jump(10);
    double now = ctrio_current_time();
    int rc;

    /* A deadline in the past: cancelled at entry, before any checkpoint. */
    ctrio_move_on_at(&cs, now - 1);
    assert_true(ctrio_cancel_scope_cancel_called(&cs));
    assert_true(ctrio_current_effective_deadline() == -INFINITY);
    CP_EXACT(rc = ctrio_checkpoint_if_cancelled(), 1, 1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));

    /* A deadline of exactly now counts as past (move_on_at(now)). */
    ctrio_move_on_at(&cs, now);
    assert_true(ctrio_cancel_scope_cancel_called(&cs));
    rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);

    /* The unbound form: a past deadline set before entry. */
    ctrio_cancel_scope_init(&cs);
    ctrio_cancel_scope_set_deadline(&cs, now - 5);
    assert_int_equal(ctrio_cancel_scope_enter(&cs), 0);
    assert_true(ctrio_cancel_scope_cancel_called(&cs));
    rc = ctrio_sleep(1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);

    /* move_on_after(0) and (a negative value, taken as 0 with a message). */
    ctrio_move_on_after(&cs, 0);
    assert_true(ctrio_cancel_scope_deadline(&cs) == now);
    assert_true(ctrio_cancel_scope_cancel_called(&cs));
    assert_int_equal(ctrio_cancel_scope_close(&cs, ctrio_checkpoint()), 0);
    ctrio_move_on_after(&cs, -1);
    assert_true(ctrio_cancel_scope_deadline(&cs) == now);
    assert_true(ctrio_cancel_scope_cancel_called(&cs));
    assert_int_equal(ctrio_cancel_scope_close(&cs, ctrio_checkpoint()), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));

    assert_true(ctrio_current_time() == now); /* nothing slept */
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_unbound (end),
 * tests/test_timeouts.py::test_move_on_after: a scope entered with
 * its deadline already past is cancelled at entry; move_on_at(now) too. The
 * negative move_on_after is this port's documented deviation (0, not
 * ValueError). */
static void test_past_deadline_cancelled_at_entry(void **state)
{
    (void)state;
    assert_int_equal(run_mock(past_deadline_body, NULL), 0);
}

/* Trio: deadline = -math.inf cancels the scope, as any past deadline does
 * (_core/_run.py: CancelScope.deadline accepts any float; the deadline
 * check is deadline <= now). It used to be kept out of the deadline heap as
 * "not finite", so a scope given it once open was never cancelled. Mock
 * clock with autojump: a sleep that is not cancelled returns 0, later. */
static int neg_inf_deadline_body(void *arg)
{
    (void)arg;
    double now = ctrio_current_time();
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_set_deadline(&cs, -INFINITY);
    int rc = ctrio_sleep(1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));

    /* opened with it, then a later deadline, then -INFINITY again */
    ctrio_move_on_at(&cs, INFINITY);
    ctrio_cancel_scope_set_deadline(&cs, now + 100);
    ctrio_cancel_scope_set_deadline(&cs, -INFINITY);
    rc = ctrio_sleep(1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);

    ctrio_move_on_at(&cs, -INFINITY);
    assert_true(ctrio_cancel_scope_cancel_called(&cs));
    rc = ctrio_sleep(1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_current_time() == now); /* nothing slept */
    return 0;
}

static void test_negative_infinite_deadline(void **state)
{
    (void)state;
    assert_int_equal(run_mock(neg_inf_deadline_body, NULL), 0);
}

struct mover {
    ctrio_cancel_scope *scope;
    double after, new_deadline;
};

static int move_deadline_later(void *arg)
{
    struct mover *m = arg;
    int rc = ctrio_sleep(m->after);
    if (rc < 0)
        return rc;
    ctrio_cancel_scope_set_deadline(m->scope, m->new_deadline);
    return 0;
}

static int deadline_from_other_task_body(void *arg)
{
    (void)arg;
    int rc;
    ctrio_cancel_scope cs;
    ctrio_nursery n;

    /* Earlier: from none to start + 3. */
    double start = ctrio_current_time();
    struct mover m = {&cs, 1, start + 3};
    ctrio_nursery_open(&n);
    ctrio_cancel_scope_open(&cs);
    assert_int_equal(ctrio_start_soon(&n, move_deadline_later, &m), 0);
    rc = ctrio_sleep_forever();
    assert_int_equal(rc, -ECANCELED);
    assert_true(ctrio_current_time() == start + 3);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    /* Later: from start + 2 to start + 5, moved at start + 1. */
    start = ctrio_current_time();
    m = (struct mover){&cs, 1, start + 5};
    ctrio_nursery_open(&n);
    ctrio_move_on_at(&cs, start + 2);
    assert_int_equal(ctrio_start_soon(&n, move_deadline_later, &m), 0);
    rc = ctrio_sleep_forever();
    assert_int_equal(rc, -ECANCELED);
    assert_true(ctrio_current_time() == start + 5);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    /* Into the past from another task: wakes the sleeper at once. */
    start = ctrio_current_time();
    m = (struct mover){&cs, 2, start - 100};
    ctrio_nursery_open(&n);
    ctrio_move_on_at(&cs, start + 50);
    assert_int_equal(ctrio_start_soon(&n, move_deadline_later, &m), 0);
    rc = ctrio_sleep(1000);
    assert_int_equal(rc, -ECANCELED);
    assert_true(ctrio_current_time() == start + 2);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    /* Once fired, moving the deadline later does not uncancel the scope. */
    start = ctrio_current_time();
    ctrio_move_on_after(&cs, 1);
    rc = ctrio_sleep_forever();
    assert_int_equal(rc, -ECANCELED);
    assert_true(ctrio_current_time() == start + 1);
    ctrio_cancel_scope_set_deadline(&cs, start + 100);
    assert_true(ctrio_cancel_scope_cancel_called(&cs));
    assert_true(ctrio_current_effective_deadline() == -INFINITY);
    rc = ctrio_checkpoint();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_current_time() == start + 1);
    return 0;
}

/* New (not in Trio as such; beside ::test_basic_timeout): a deadline moved
 * earlier, later, or into the past by another task takes effect at once for a
 * task sleeping in the scope; a fired deadline stays fired. */
static void test_deadline_moved_by_another_task(void **state)
{
    (void)state;
    assert_int_equal(run_mock(deadline_from_other_task_body, NULL), 0);
}

static int effective_deadline_body(void *arg)
{
    (void)arg;
    assert_true(ctrio_current_effective_deadline() == INFINITY);
    ctrio_cancel_scope scope1, scope2;
    ctrio_move_on_at(&scope1, 5);
    ctrio_move_on_at(&scope2, 10);
    assert_true(ctrio_current_effective_deadline() == 5);
    ctrio_cancel_scope_set_deadline(&scope2, 3);
    assert_true(ctrio_current_effective_deadline() == 3);
    ctrio_cancel_scope_set_deadline(&scope2, 10);
    assert_true(ctrio_current_effective_deadline() == 5);
    ctrio_cancel_scope_set_shield(&scope2, true);
    assert_true(ctrio_current_effective_deadline() == 10);
    ctrio_cancel_scope_set_shield(&scope2, false);
    assert_true(ctrio_current_effective_deadline() == 5);
    ctrio_cancel_scope_cancel(&scope1);
    assert_true(ctrio_current_effective_deadline() == -INFINITY);
    ctrio_cancel_scope_set_shield(&scope2, true);
    assert_true(ctrio_current_effective_deadline() == 10);
    assert_int_equal(ctrio_cancel_scope_close(&scope2, 0), 0);
    assert_true(ctrio_current_effective_deadline() == -INFINITY);
    assert_int_equal(ctrio_cancel_scope_close(&scope1, 0), 0);
    assert_true(ctrio_current_effective_deadline() == INFINITY);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_current_effective_deadline. */
static void test_current_effective_deadline(void **state)
{
    (void)state;
    assert_int_equal(run_mock(effective_deadline_body, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* fail_* and move_on_*                                                       */
/* ------------------------------------------------------------------------ */

static int fail_body(void *arg)
{
    (void)arg;
    int rc;
    ctrio_cancel_scope f, g, outer;

    /* Its own deadline: -ETIMEDOUT at the deadline. */
    double t0 = ctrio_current_time();
    ctrio_fail_after(&f, 1);
    rc = ctrio_sleep(100);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&f, rc), -ETIMEDOUT);
    assert_true(ctrio_current_time() == t0 + 1);
    assert_true(ctrio_cancel_scope_cancelled_caught(&f));

    /* In time: 0. */
    t0 = ctrio_current_time();
    ctrio_fail_at(&f, t0 + 10);
    rc = ctrio_sleep(1);
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_cancel_scope_close(&f, rc), 0);
    assert_true(ctrio_current_time() == t0 + 1);
    assert_false(ctrio_cancel_scope_cancel_called(&f));

    /* fail_at with a past deadline. */
    t0 = ctrio_current_time();
    ctrio_fail_at(&f, t0 - 1);
    assert_int_equal(ctrio_cancel_scope_close(&f, ctrio_checkpoint()), -ETIMEDOUT);

    /* An outer cancellation passes through unchanged; the outer scope
     * catches it. */
    ctrio_cancel_scope_open(&outer);
    ctrio_fail_after(&f, 5);
    ctrio_cancel_scope_cancel(&outer);
    rc = ctrio_sleep(1);
    assert_int_equal(rc, -ECANCELED);
    rc = ctrio_cancel_scope_close(&f, rc);
    assert_int_equal(rc, -ECANCELED);
    assert_false(ctrio_cancel_scope_cancelled_caught(&f));
    assert_int_equal(ctrio_cancel_scope_close(&outer, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&outer));

    /* Nested fail scopes: the one whose deadline fired reports it. */
    t0 = ctrio_current_time();
    ctrio_fail_after(&f, 1);
    ctrio_fail_after(&g, 2);
    rc = ctrio_sleep(10);
    rc = ctrio_cancel_scope_close(&g, rc);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&f, rc), -ETIMEDOUT);
    assert_true(ctrio_current_time() == t0 + 1);

    /* A body error passes unchanged, even past the deadline. */
    ctrio_fail_after(&f, 1);
    ctrio_mock_clock_jump(2);
    assert_int_equal(ctrio_checkpoint(), -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&f, -EIO), -EIO);

    /* A deadline that passed with no checkpoint seeing it: nothing caught,
     * no -ETIMEDOUT. */
    ctrio_fail_after(&f, 1);
    ctrio_mock_clock_jump(2);
    assert_int_equal(ctrio_cancel_scope_close(&f, 0), 0);
    assert_false(ctrio_cancel_scope_cancelled_caught(&f));

    /* An explicit cancel() of a fail scope also reads as -ETIMEDOUT. */
    ctrio_fail_after(&f, 10);
    ctrio_cancel_scope_cancel(&f);
    assert_int_equal(ctrio_cancel_scope_close(&f, ctrio_checkpoint()), -ETIMEDOUT);
    return 0;
}

/* Trio: tests/test_timeouts.py::test_fail: fail_at / fail_after give
 * -ETIMEDOUT only when their own scope caught the cancellation. */
static void test_fail_at_fail_after(void **state)
{
    (void)state;
    assert_int_equal(run_mock(fail_body, NULL), 0);
}

static int move_on_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope s, t;
    double t0 = ctrio_current_time();
    ctrio_move_on_after(&s, 5);
    assert_true(ctrio_cancel_scope_deadline(&s) == t0 + 5);
    int rc = ctrio_sleep_forever();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&s, rc), 0);
    assert_true(ctrio_current_time() == t0 + 5);
    assert_true(ctrio_cancel_scope_cancelled_caught(&s));

    /* Nested: the outer, earlier deadline catches, the inner does not. */
    t0 = ctrio_current_time();
    ctrio_move_on_after(&s, 1);
    ctrio_move_on_after(&t, 2);
    rc = ctrio_sleep(10);
    rc = ctrio_cancel_scope_close(&t, rc);
    assert_int_equal(rc, -ECANCELED);
    assert_false(ctrio_cancel_scope_cancel_called(&t));
    assert_int_equal(ctrio_cancel_scope_close(&s, rc), 0);
    assert_true(ctrio_current_time() == t0 + 1);

    /* In time. */
    t0 = ctrio_current_time();
    ctrio_move_on_after(&s, 10);
    assert_int_equal(ctrio_sleep(1), 0);
    assert_int_equal(ctrio_cancel_scope_close(&s, 0), 0);
    assert_false(ctrio_cancel_scope_cancel_called(&s));
    assert_true(ctrio_current_time() == t0 + 1);
    return 0;
}

/* Trio: tests/test_timeouts.py::test_move_on_after. */
static void test_move_on(void **state)
{
    (void)state;
    assert_int_equal(run_mock(move_on_body, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Cancellation across tasks                                                  */
/* ------------------------------------------------------------------------ */

struct sleeper_ctx {
    ctrio_cancel_scope *published;
    int inner_rc, rc;
    double woke_at;
};

static int scoped_sleeper(void *arg)
{
    struct sleeper_ctx *c = arg;
    ctrio_cancel_scope cs, inner;
    ctrio_cancel_scope_open(&cs);
    c->published = &cs;
    ctrio_move_on_after(&inner, 50);
    int rc = ctrio_sleep(100);
    c->woke_at = ctrio_current_time();
    rc = ctrio_cancel_scope_close(&inner, rc);
    c->inner_rc = rc;
    rc = ctrio_cancel_scope_close(&cs, rc);
    c->rc = rc;
    if (ctrio_cancel_scope_cancelled_caught(&cs))
        c->rc = 1000; /* caught: marker */
    c->published = NULL;
    return 0;
}

static int cancel_other_task_body(void *arg)
{
    (void)arg;
    struct sleeper_ctx c = {NULL, 1, 1, -1};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, scoped_sleeper, &c), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_non_null(c.published);
    assert_true(c.woke_at == -1);
    ctrio_cancel_scope_cancel(c.published);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_true(c.woke_at == 0.0); /* woken at once, by the cancel */
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_int_equal(c.rc, 1000);
    assert_null(c.published);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_unbound, "cancel after entry"
 * variant: a scope opened by one task and cancelled by another wakes a
 * sleeper nested inside it at once. */
static void test_cancel_from_another_task_wakes_sleeper(void **state)
{
    (void)state;
    assert_int_equal(run_mock(cancel_other_task_body, NULL), 0);
}

struct leaf_ctx {
    unsigned *record;
    unsigned bit;
};

static int leaf(void *arg)
{
    struct leaf_ctx *l = arg;
    if (ctrio_sleep_forever() == -ECANCELED)
        *l->record |= l->bit;
    return 0;
}

static int worker(void *arg)
{
    struct leaf_ctx *l = arg; /* two leaves */
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    int rc = ctrio_start_soon(&n, leaf, &l[0]);
    if (rc == 0)
        rc = ctrio_start_soon(&n, leaf, &l[1]);
    return ctrio_nursery_close(&n, rc);
}

static int inheritance_body(void *arg)
{
    (void)arg;
    for (int wait_first = 0; wait_first < 2; wait_first++) {
        unsigned record = 0;
        struct leaf_ctx l[4] = {{&record, 1}, {&record, 2}, {&record, 4}, {&record, 8}};
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        assert_int_equal(ctrio_start_soon(&n, worker, &l[0]), 0);
        assert_int_equal(ctrio_start_soon(&n, worker, &l[2]), 0);
        if (wait_first) {
            assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
            assert_int_equal(record, 0);
        }
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        assert_int_equal(record, 15);
        assert_true(ctrio_current_time() == 0.0);
    }
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_inheritance: cancelling a
 * nursery reaches every descendant, through nested nurseries; both before the
 * tasks ran and once they are all blocked. */
static void test_cancel_inheritance(void **state)
{
    (void)state;
    assert_int_equal(run_mock(inheritance_body, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Misnesting                                                                 */
/* ------------------------------------------------------------------------ */

static int misnesting_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope outer, inner;
    double t0 = ctrio_current_time();
    ctrio_move_on_after(&outer, 10);
    ctrio_move_on_after(&inner, 1);
    /* Closing the outer scope first: misuse. */
    assert_int_equal(ctrio_cancel_scope_close(&outer, 0), -EPERM);
    /* The scope inside it was cancelled and closed with it. */
    assert_true(ctrio_cancel_scope_cancel_called(&inner));
    /* Closing the inner one now is misuse too: it is not open any more.
     * (Trio raises nothing further here.) */
    assert_int_equal(ctrio_cancel_scope_close(&inner, 0), -EPERM);
    /* The task is outside both: no cancellation, no deadline left. */
    assert_true(ctrio_current_effective_deadline() == INFINITY);
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(ctrio_sleep(5), 0);
    assert_true(ctrio_current_time() == t0 + 5);
    /* And scopes work normally afterwards. */
    ctrio_cancel_scope s;
    ctrio_move_on_after(&s, 1);
    int rc = ctrio_sleep_forever();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&s, rc), 0);
    assert_true(ctrio_current_time() == t0 + 6);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_scope_misnesting, first block:
 * closing scopes out of order returns -EPERM; the inner scope ends up
 * cancelled and closed. (Trio's variants with a nursery inside the abandoned
 * scopes cannot be ported: ctrio aborts the process there, by design.) */
static void test_cancel_scope_misnesting(void **state)
{
    (void)state;
    assert_int_equal(run_mock(misnesting_body, NULL), 0);
}

static int task3(void *arg)
{
    (void)arg;
    ctrio_cancel_scope scope;
    ctrio_cancel_scope_open(&scope);
    int rc = ctrio_task_started(&scope);
    if (rc == 0)
        rc = ctrio_sleep_forever();
    rc = ctrio_cancel_scope_close(&scope, rc);
    if (rc == 0 && !ctrio_cancel_scope_cancelled_caught(&scope))
        rc = -EIO; /* expected to catch its cancellation */
    return rc;
}

static int unrelated_close_body(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    void *p = NULL;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start(&n, task3, NULL, &p), 0);
    ctrio_cancel_scope *scope = p;
    assert_non_null(scope);
    /* Closing another task's scope: -EPERM, and nothing changes. */
    assert_int_equal(ctrio_cancel_scope_close(scope, 0), -EPERM);
    assert_false(ctrio_cancel_scope_cancel_called(scope));
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    ctrio_cancel_scope_cancel(scope);
    /* The owner then closes it normally and catches its cancellation. */
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_cancel_scope_misnesting, last block:
 * closing a scope from an unrelated task returns -EPERM without
 * affecting it. */
static void test_cancel_scope_close_from_unrelated_task(void **state)
{
    (void)state;
    assert_int_equal(run_mock(unrelated_close_body, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Failed abort                                                               */
/* ------------------------------------------------------------------------ */

struct stubborn {
    atomic_int release;
    ctrio_cancel_scope *scope;
    int sleep, woke, cancelled, thread_rc;
};

static int latched(void *arg)
{
    struct stubborn *s = arg;
    /* Bounded: at most ~10 s, so a broken test cannot hang forever. */
    for (int i = 0; i < 10000 && !atomic_load(&s->release); i++) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

static int stubborn_sleeper(void *arg)
{
    struct stubborn *s = arg;
    ctrio_cancel_scope scope;
    ctrio_cancel_scope_open(&scope);
    s->scope = &scope;
    s->sleep = 1;
    s->thread_rc = ctrio_to_thread_run_sync(latched, s, 0);
    s->woke = 1;
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc == -ECANCELED)
        s->cancelled = 1;
    rc = ctrio_cancel_scope_close(&scope, rc);
    s->scope = NULL;
    return rc;
}

static int failed_abort_body(void *arg)
{
    (void)arg;
    struct stubborn s;
    memset(&s, 0, sizeof s);
    atomic_init(&s.release, 0);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, stubborn_sleeper, &s), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.01), 0);
    assert_int_equal(s.sleep, 1);
    assert_int_equal(s.woke, 0);
    assert_non_null(s.scope);
    ctrio_cancel_scope_cancel(s.scope);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.01), 0);
    /* The cancel did not wake it. */
    assert_int_equal(s.woke, 0);
    atomic_store(&s.release, 1);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(s.thread_rc, 1); /* the result, not -ECANCELED */
    assert_int_equal(s.woke, 1);
    assert_int_equal(s.cancelled, 1);
    return 0;
}

/* Trio: _core/tests/test_run.py::test_failed_abort: a blocked operation
 * that refuses to abort (here a thread offload without
 * CTRIO_ABANDON_ON_CANCEL) is not woken by a cancel; it completes, then the
 * next checkpoint reports the cancellation. */
static void test_failed_abort(void **state)
{
    (void)state;
    assert_int_equal(run_real(failed_abort_body, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_cancel_edge_cases),
        TEST(test_cancel_called_and_cancelled_caught),
        TEST(test_cancel_scope_nesting),
        TEST(test_cancel_unbound_before_entry),
        TEST(test_cancel_unbound_after_entry),
        TEST(test_cancel_unbound_shield_before_entry),
        TEST(test_cancel_scope_single_use),
        TEST(test_cancel_unbound_deadline_passed),
        TEST(test_cancel_called_open_deadline_passed),
        TEST(test_cancel_shielding),
        TEST(test_cancel_shield_abort),
        TEST(test_unshield_while_cancel_propagating),
        TEST(test_basic_timeout),
        TEST(test_yield_briefly_checks_for_timeout),
        TEST(test_past_deadline_cancelled_at_entry),
        TEST(test_negative_infinite_deadline),
        TEST(test_deadline_moved_by_another_task),
        TEST(test_current_effective_deadline),
        TEST(test_fail_at_fail_after),
        TEST(test_move_on),
        TEST(test_cancel_from_another_task_wakes_sleeper),
        TEST(test_cancel_inheritance),
        TEST(test_cancel_scope_misnesting),
        TEST(test_cancel_scope_close_from_unrelated_task),
        TEST(test_failed_abort),
    };
    return cmocka_run_group_tests_name("cancel", tests, NULL, NULL);
}
