/*
 * cancel.c — cancel scopes: the tree they form, delivery of cancellation to
 * blocked tasks, shields and deadlines (Trio's CancelScope and CancelStatus).
 *
 * Every open scope knows its parent (the scope that was innermost when it was
 * opened, possibly in another task: a nursery's scope is the parent of its
 * children's scopes), its child scopes, and the blocked tasks whose innermost
 * scope it is (a task joins that list when it blocks and leaves it when it is
 * woken, so opening and closing a scope never touches a task list). A task is cancelled when walking up from its innermost scope meets a
 * cancelled scope before a shield. Cancelling a scope walks down the tree,
 * stopping at shields and at scopes already cancelled, and aborts the blocked
 * tasks it meets. All links are intrusive: opening and closing a scope
 * allocates nothing (a deadline adds the scope to the run's heap).
 */
#include "internal.h"

#include <math.h>

bool ctrio__scope_cancelled(const ctrio_cancel_scope *cs)
{
    for (const ctrio_cancel_scope *s = cs; s; s = s->parent) {
        if (s->cancel_called)
            return true;
        if (s->shield)
            return false;
    }
    return false;
}

bool ctrio__task_cancelled(const ctrio__task *t)
{
    return ctrio__scope_cancelled(t->scope);
}

/* Is a cancellation of an enclosing scope visible inside cs? */
static bool parent_cancel_visible(const ctrio_cancel_scope *cs)
{
    return !cs->shield && ctrio__scope_cancelled(cs->parent);
}

void ctrio__scope_attach(ctrio_cancel_scope *cs, ctrio_cancel_scope *parent, ctrio__task *owner)
{
    cs->parent = parent;
    cs->owner = owner;
    ctrio__list_init(&cs->children);
    ctrio__list_init(&cs->tasks);
    if (parent)
        ctrio__list_push_back(&parent->children, &cs->child_link);
    else
        ctrio__list_init(&cs->child_link);
}

/* Wake the blocked tasks under cs, down to shields and scopes that were
 * cancelled before (their tasks were woken then, or abort at once when they
 * block). */
static void deliver(ctrio_cancel_scope *cs)
{
    for (ctrio__link *l = cs->tasks.next; l != &cs->tasks;) {
        ctrio__task *t = ctrio__container_of(l, ctrio__task, scope_link);
        l = l->next;
        if (t->state == CTRIO__BLOCKED && t->abort_fn && t->abort_fn(t))
            ctrio__reschedule(t, -ECANCELED);
    }
    for (ctrio__link *l = cs->children.next; l != &cs->children; l = l->next) {
        ctrio_cancel_scope *c = ctrio__container_of(l, ctrio_cancel_scope, child_link);
        if (!c->shield && !c->cancel_called)
            deliver(c);
    }
}

static void heap_track(ctrio_cancel_scope *cs)
{
    ctrio__run *r = ctrio__tls_run;
    /* -INFINITY is a deadline like any past one (Trio only compares it with
     * the clock): only INFINITY (none) and NaN stay out of the heap. */
    if (cs->state != CTRIO__SCOPE_OPEN || cs->cancel_called || !(cs->deadline < INFINITY)) {
        if (cs->heap_index)
            ctrio__heap_remove(&r->deadlines, cs);
        return;
    }
    if (cs->heap_index) {
        ctrio__heap_update(&r->deadlines, cs);
    } else if (ctrio__heap_add(&r->deadlines, cs) < 0) {
        ctrio__misuse("out of memory for a deadline: aborting");
        abort();
    }
}

/* Move an open scope (with its subtree) under a new parent, as
 * TaskStatus.started does; a cancellation already visible there reaches the
 * tasks blocked in the subtree at once (Trio's CancelStatus.parent setter). */
void ctrio__scope_reparent(ctrio_cancel_scope *cs, ctrio_cancel_scope *parent)
{
    ctrio__list_remove(&cs->child_link);
    cs->parent = parent;
    ctrio__list_push_back(&parent->children, &cs->child_link);
    if (!cs->cancel_called && parent_cancel_visible(cs))
        deliver(cs);
}

static inline void scope_init(ctrio_cancel_scope *cs, double deadline, bool fail)
{
    cs->parent = NULL;
    cs->owner = NULL;
    ctrio__list_init(&cs->children);
    ctrio__list_init(&cs->tasks);
    ctrio__list_init(&cs->child_link);
    cs->deadline = deadline;
    cs->heap_index = 0;
    cs->cancel_called = cs->cancelled_caught = cs->shield = cs->nursery = 0;
    cs->fail = fail;
    cs->state = CTRIO__SCOPE_NEW;
}

void ctrio_cancel_scope_init(ctrio_cancel_scope *cs)
{
    if (cs)
        scope_init(cs, INFINITY, false);
}

int ctrio_cancel_scope_enter(ctrio_cancel_scope *cs)
{
    if (!cs)
        return -EINVAL;
    ctrio__task *t = ctrio__need_task("ctrio_cancel_scope_enter");
    if (!t)
        return -EPERM;
    if (cs->state != CTRIO__SCOPE_NEW)
        return ctrio__misuse("a cancel scope may be entered only once");
    ctrio__scope_attach(cs, t->scope, t);
    ctrio__task_set_scope(t, cs);
    cs->state = CTRIO__SCOPE_OPEN;
    if (!cs->cancel_called && cs->deadline <= t->run->now)
        cs->cancel_called = 1; /* entered past its deadline: cancelled at entry */
    if (cs->deadline < INFINITY)
        heap_track(cs);
    return 0;
}

static void open_with(ctrio_cancel_scope *cs, double deadline, bool fail)
{
    if (!cs)
        return; /* NULL: a no-op (ctrio.h, Conventions); its close is -EINVAL */
    scope_init(cs, deadline, fail);
    if (ctrio_cancel_scope_enter(cs) < 0)
        cs->state = CTRIO__SCOPE_CLOSED; /* outside a task: close says -EPERM */
}

void ctrio_cancel_scope_open(ctrio_cancel_scope *cs)
{
    open_with(cs, INFINITY, false);
}

void ctrio_move_on_at(ctrio_cancel_scope *cs, double deadline)
{
    open_with(cs, deadline, false);
}

void ctrio_fail_at(ctrio_cancel_scope *cs, double deadline)
{
    open_with(cs, deadline, true);
}

/* Relative deadlines count from the clock reading of the current scheduler
 * turn, as libuv's timers count from the loop time: reading the clock costs
 * as much as the rest of opening a scope. */
static double relative(double seconds, const char *fn)
{
    if (!(seconds >= 0)) {
        if (seconds != seconds || seconds < 0)
            ctrio__misuse("%s: a negative or NaN timeout (%g) counts as 0", fn, seconds);
        seconds = 0;
    }
    /* Trio: current_time() + seconds, the clock read now. The run's cached
     * turn time (r->now) may be a whole turn old: a deadline taken from it
     * came that much early, which the epoll backend's whole milliseconds hid
     * and io_uring's exact timeouts showed (test_move_on_after_real). */
    return ctrio_current_time() + seconds;
}

void ctrio_move_on_after(ctrio_cancel_scope *cs, double seconds)
{
    open_with(cs, relative(seconds, "ctrio_move_on_after"), false);
}

void ctrio_fail_after(ctrio_cancel_scope *cs, double seconds)
{
    open_with(cs, relative(seconds, "ctrio_fail_after"), true);
}

static void detach(ctrio__task *t, ctrio_cancel_scope *cs)
{
    ctrio__run *r = t->run;
    if (cs->heap_index)
        ctrio__heap_remove(&r->deadlines, cs);
    if (r->inject_scope == cs) {
        r->inject_scope = NULL;
        r->inject_at = 0;
    }
    ctrio__list_remove(&cs->child_link);
    ctrio__task_set_scope(t, cs->parent);
    cs->state = CTRIO__SCOPE_CLOSED;
}

int ctrio__scope_close_checked(ctrio_cancel_scope *cs, int body_rc, bool allow_nursery)
{
    ctrio__task *t = ctrio__need_task("ctrio_cancel_scope_close");
    if (!t)
        return -EPERM;
    if (cs->state != CTRIO__SCOPE_OPEN || cs->owner != t)
        return ctrio__misuse("closing a cancel scope that this task has not open");
    if (cs->nursery && !allow_nursery)
        return ctrio__misuse("a nursery's scope is closed by ctrio_nursery_close");
    int rc = body_rc;
    if (t->scope != cs) {
        /* Misnesting (Trio: test_cancel_scope_misnesting). Close the scopes
         * inside cs too, cancelled, then cs, and report the misuse. */
        ctrio_cancel_scope *s = t->scope;
        while (s && s != cs && s->owner == t)
            s = s->parent;
        if (s != cs)
            return ctrio__misuse("closing a cancel scope that is not open in this task");
        ctrio__misuse("cancel scopes closed out of order");
        while (t->scope != cs) {
            ctrio_cancel_scope *inner = t->scope;
            if (inner->nursery) {
                ctrio__misuse("a nursery is still open inside the scope being closed: aborting");
                abort();
            }
            ctrio_cancel_scope_cancel(inner);
            detach(t, inner);
        }
        ctrio_cancel_scope_cancel(cs);
        detach(t, cs);
        return -EPERM;
    }
    /* Trio's CancelScope._close: the scope catches its own Cancelled when no
     * cancellation from outside is visible (the outermost cancelled scope
     * catches it). */
    if (rc == -ECANCELED && cs->cancel_called && !parent_cancel_visible(cs)) {
        cs->cancelled_caught = 1;
        rc = cs->fail ? -ETIMEDOUT : 0;
    }
    detach(t, cs);
    return rc;
}

int ctrio_cancel_scope_close(ctrio_cancel_scope *cs, int body_rc)
{
    if (!cs)
        return -EINVAL;
    return ctrio__scope_close_checked(cs, body_rc, false);
}

void ctrio_cancel_scope_cancel(ctrio_cancel_scope *cs)
{
    if (!cs || cs->cancel_called)
        return;
    cs->cancel_called = 1;
    if (cs->state != CTRIO__SCOPE_OPEN)
        return;
    if (cs->heap_index)
        ctrio__heap_remove(&ctrio__tls_run->deadlines, cs);
    deliver(cs);
}

void ctrio__scope_fire(ctrio_cancel_scope *cs)
{
    ctrio_cancel_scope_cancel(cs);
}

void ctrio_cancel_scope_set_deadline(ctrio_cancel_scope *cs, double deadline)
{
    if (!cs)
        return;
    ctrio__run *r = ctrio__tls_run;
    /* Trio: once the deadline of a scope not yet entered has passed, the
     * scope is cancelled for good (cancel_called never reverts). */
    if (cs->state == CTRIO__SCOPE_NEW && r && !cs->cancel_called) {
        double now = ctrio__clock_now(r);
        if (cs->deadline <= now || deadline <= now)
            cs->cancel_called = 1;
    }
    cs->deadline = deadline;
    if (cs->state == CTRIO__SCOPE_OPEN && r)
        heap_track(cs);
}

double ctrio_cancel_scope_deadline(const ctrio_cancel_scope *cs)
{
    return cs ? cs->deadline : INFINITY;
}

void ctrio_cancel_scope_set_shield(ctrio_cancel_scope *cs, bool shield)
{
    if (!cs)
        return;
    bool was = cs->shield;
    cs->shield = shield;
    /* Trio: test_cancel_shield_abort. Dropping a shield lets an outer
     * cancellation in: wake what now sees it. */
    if (was && !shield && cs->state == CTRIO__SCOPE_OPEN && !cs->cancel_called &&
        parent_cancel_visible(cs))
        deliver(cs);
}

bool ctrio_cancel_scope_shield(const ctrio_cancel_scope *cs)
{
    return cs && cs->shield;
}

bool ctrio_cancel_scope_cancel_called(const ctrio_cancel_scope *cs)
{
    if (!cs)
        return false;
    if (cs->cancel_called)
        return true;
    /* Trio (CancelScope.cancel_called, test_run.py::test_cancel_unbound):
     * once the deadline has passed, before the scheduler fires it, the query
     * itself cancels the scope (not yet entered, or open), so that the answer
     * stays true even if the deadline is moved later afterwards. The scope
     * is the caller's own object: const is only the query's promise. */
    ctrio__run *r = ctrio__tls_run;
    if (cs->state == CTRIO__SCOPE_CLOSED || !r || cs->deadline > ctrio__clock_now(r))
        return false;
    ctrio_cancel_scope_cancel((ctrio_cancel_scope *)cs);
    return true;
}

bool ctrio_cancel_scope_cancelled_caught(const ctrio_cancel_scope *cs)
{
    return cs && cs->cancelled_caught;
}

double ctrio_current_effective_deadline(void)
{
    ctrio__task *t = ctrio__current();
    if (!t)
        return INFINITY;
    double d = INFINITY;
    for (const ctrio_cancel_scope *s = t->scope; s; s = s->parent) {
        if (s->cancel_called)
            return -INFINITY;
        if (s->deadline < d)
            d = s->deadline;
        if (s->shield)
            break;
    }
    return d;
}
