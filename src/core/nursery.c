/*
 * nursery.c — nurseries (Trio's Nursery and nursery.start).
 *
 * A nursery is a cancel scope with children. The first failure, of the body
 * or of a child, cancels that scope; ctrio_nursery_close waits for every
 * child and returns the first real failure, keeping the later ones readable.
 * Following Trio >= 0.23 (#1457), waiting for the children is a schedule
 * point only: it never injects a cancellation of its own.
 *
 * ctrio_start runs the new task inside a temporary nursery of the caller
 * (as Trio's start does), so that the task runs under the caller's cancel
 * scopes until it calls ctrio_task_started; then it moves, with the scopes it
 * has opened, into the target nursery.
 */
#include "internal.h"

#include <math.h>

void ctrio_nursery_open(ctrio_nursery *n)
{
    if (!n)
        return; /* NULL: a no-op (ctrio.h, Conventions); its close is -EINVAL */
    memset(n, 0, sizeof *n);
    ctrio__list_init(&n->children);
    ctrio__task *t = ctrio__need_task("ctrio_nursery_open");
    ctrio_cancel_scope_open(&n->scope);
    n->scope.nursery = 1;
    n->parent = t;
    if (!t)
        n->closed = 1;
}

static void add_error(ctrio_nursery *n, int rc)
{
    if (rc == -ECANCELED) {
        n->saw_cancelled = 1;
    } else {
        if (!n->first_error)
            n->first_error = rc;
        if (n->nerrors < CTRIO_NURSERY_MAX_ERRORS)
            n->errors[n->nerrors] = rc;
        n->nerrors++;
    }
    ctrio_cancel_scope_cancel(&n->scope);
}

static void check_done(ctrio_nursery *n)
{
    CTRIO__ASSERT(!n->parent_waiting || n->parent->state == CTRIO__BLOCKED);
    if (n->parent_waiting && n->nchildren == 0 && n->pending_starts == 0) {
        n->closed = 1; /* Trio's _check_nursery_closed: closed from now on */
        n->parent_waiting = 0;
        ctrio__reschedule(n->parent, 0);
    }
}

void ctrio__nursery_child_done(ctrio__task *t, int rc)
{
    ctrio_nursery *n = t->nursery;
    CTRIO__ASSERT(n && n->nchildren > 0 && !ctrio__list_empty(&t->nursery_link));
    ctrio__list_remove(&t->nursery_link);
    n->nchildren--;
    CTRIO__ASSERT((n->nchildren == 0) == ctrio__list_empty(&n->children));
    t->nursery = NULL;
    if (rc == -ECANCELED && !ctrio__task_cancelled(t)) {
        /* -ECANCELED from a task that no scope cancelled (Trio cannot raise
         * Cancelled there): a stray code. Taken as a cancellation it would
         * stop the siblings and make the nursery report success. */
        ctrio__misuse("task %llu returned -ECANCELED but was not cancelled",
                      (unsigned long long)t->id);
        rc = -EPERM;
    }
    if (rc < 0)
        add_error(n, rc);
    check_done(n);
}

int ctrio_start_soon(ctrio_nursery *n, ctrio_fn fn, void *arg)
{
    if (!n || !fn)
        return -EINVAL;
    if (!ctrio__need_task("ctrio_start_soon"))
        return -EPERM;
    if (n->closed)
        return -EPERM; /* Trio: "Nursery is closed to new arrivals" */
    int err = 0;
    return ctrio__spawn(n, &n->scope, fn, arg, &err) ? 0 : err;
}

int ctrio_nursery_close(ctrio_nursery *n, int body_rc)
{
    if (!n)
        return -EINVAL;
    ctrio__task *t = ctrio__need_task("ctrio_nursery_close");
    if (!t)
        return -EPERM;
    if (n->parent != t || n->closed)
        return ctrio__misuse("closing a nursery that this task has not open");
    if (t->scope != &n->scope)
        return ctrio__misuse("ctrio_nursery_close: cancel scopes opened inside the nursery "
                             "are still open");
    if (body_rc < 0)
        add_error(n, body_rc);
    if (n->nchildren || n->pending_starts) {
        n->parent_waiting = 1;
        ctrio__wait_uncancellable(n);
    } else {
        n->closed = 1; /* nothing left: closed before the schedule point */
        ctrio__yield();
    }
    n->closed = 1;
    /* the parent leaves only when every child has (Trio's nursery __aexit__) */
    CTRIO__ASSERT(n->nchildren == 0 && n->pending_starts == 0 && ctrio__list_empty(&n->children));
    int rc = n->first_error ? n->first_error : n->saw_cancelled ? -ECANCELED : 0;
    return ctrio__scope_close_checked(&n->scope, rc, true);
}

size_t ctrio_nursery_error_count(const ctrio_nursery *n)
{
    return n ? n->nerrors : 0;
}

int ctrio_nursery_error(const ctrio_nursery *n, size_t i)
{
    return n && i < n->nerrors && i < CTRIO_NURSERY_MAX_ERRORS ? n->errors[i] : 0;
}

ctrio_cancel_scope *ctrio_nursery_cancel_scope(ctrio_nursery *n)
{
    return n ? &n->scope : NULL;
}

/* ---- start / task_started ---------------------------------------------- */

int ctrio_start(ctrio_nursery *n, ctrio_fn fn, void *arg, void **started_value)
{
    if (!n || !fn)
        return -EINVAL;
    ctrio__task *t = ctrio__need_task("ctrio_start");
    if (!t)
        return -EPERM;
    if (n->closed)
        return -EPERM;
    n->pending_starts++;
    ctrio_nursery old;
    ctrio_nursery_open(&old);
    ctrio__start_status st = {&old, n, NULL, false};
    int rc = 0;
    ctrio__task *child = ctrio__spawn(&old, &old.scope, fn, arg, &rc);
    if (child)
        child->start = &st;
    rc = ctrio_nursery_close(&old, rc);
    n->pending_starts--;
    check_done(n);
    /* Trio leaves the old nursery through a checkpoint: in a cancelled scope
     * start raises Cancelled and the started() value is ignored, even when
     * the child reached no checkpoint itself (test_run.py::
     * test_nursery_start, just_started). */
    if (rc == 0 && ctrio__task_cancelled(t))
        rc = -ECANCELED;
    if (rc < 0)
        return rc;
    if (!st.called)
        return ctrio__misuse("a task launched with ctrio_start returned without calling "
                             "ctrio_task_started");
    if (started_value)
        *started_value = st.value;
    return 0;
}

int ctrio_task_started(void *value)
{
    ctrio__task *t = ctrio__need_task("ctrio_task_started");
    if (!t)
        return -EPERM;
    if (t->started_called)
        return ctrio__misuse("ctrio_task_started called twice");
    ctrio__start_status *st = t->start;
    if (!st)
        return ctrio__misuse("ctrio_task_started called by a task not launched with "
                             "ctrio_start");
    t->started_called = true;
    st->called = true;
    st->value = value;
    ctrio_nursery *old = st->old_nursery, *target = st->target;
    /* Trio: if the old nursery is cancelled, quietly stay there; moving a
     * task with a Cancelled on its way into a scope that did not cause it
     * would let it escape. */
    if (ctrio__scope_cancelled(&old->scope))
        return 0;
    ctrio__list_remove(&t->nursery_link);
    old->nchildren--;
    ctrio__list_push_back(&target->children, &t->nursery_link);
    target->nchildren++;
    t->nursery = target;
    t->start = NULL;
    if (t->scope == &old->scope) {
        ctrio__task_set_scope(t, &target->scope);
    } else {
        ctrio_cancel_scope *s = t->scope;
        while (s->parent != &old->scope)
            s = s->parent;
        ctrio__scope_reparent(s, &target->scope);
    }
    check_done(old);
    return 0;
}

bool ctrio__task_awaits_started(void)
{
    ctrio__task *t = ctrio__current();
    return t && t->start && !t->started_called;
}
