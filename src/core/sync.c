/*
 * sync.c — Event, Lock and Semaphore (trio.Event, trio.Lock,
 * trio.Semaphore) on one wait-queue primitive: a waiter node on the waiting
 * task's stack, linked into the object's queue, removed by whoever wakes it
 * or by its abort function when the task is cancelled.
 */
#include "internal.h"

typedef struct waiter {
    ctrio__link link;
    ctrio__task *task;
} waiter;

static bool waiter_abort(ctrio__task *t)
{
    waiter *w = t->wait_ctx;
    ctrio__list_remove(&w->link);
    return true;
}

static int park(ctrio__waitq *q, ctrio__task *t)
{
    waiter w = {.task = t};
    ctrio__list_push_back(&q->head, &w.link);
    return ctrio__wait(waiter_abort, &w);
}

static ctrio__task *unpark_one(ctrio__waitq *q, int value)
{
    if (ctrio__list_empty(&q->head))
        return NULL;
    waiter *w = ctrio__container_of(q->head.next, waiter, link);
    ctrio__list_remove(&w->link);
    ctrio__task *t = w->task;
    ctrio__reschedule(t, value);
    return t;
}

static void waitq_init(ctrio__waitq *q)
{
    ctrio__list_init(&q->head);
}

/* ---- Event -------------------------------------------------------------- */

void ctrio_event_init(ctrio_event *e)
{
    if (!e)
        return;
    waitq_init(&e->waiters);
    e->is_set = false;
}

void ctrio_event_set(ctrio_event *e)
{
    if (!e)
        return;
    e->is_set = true;
    while (unpark_one(&e->waiters, 0))
        ;
}

bool ctrio_event_is_set(const ctrio_event *e)
{
    return e && e->is_set;
}

int ctrio_event_wait(ctrio_event *e)
{
    if (!e)
        return -EINVAL;
    ctrio__task *t = ctrio__need_task("ctrio_event_wait");
    if (!t)
        return -EPERM;
    if (e->is_set)
        return ctrio_checkpoint();
    return park(&e->waiters, t);
}

/* ---- Lock --------------------------------------------------------------- */

void ctrio_lock_init(ctrio_lock *l)
{
    if (!l)
        return;
    waitq_init(&l->waiters);
    l->owner = NULL;
}

int ctrio_lock_acquire_nowait(ctrio_lock *l)
{
    if (!l)
        return -EINVAL;
    ctrio__task *t = ctrio__need_task("ctrio_lock_acquire_nowait");
    if (!t)
        return -EPERM;
    if (l->owner == t)
        return ctrio__misuse("attempt to re-acquire an already held lock");
    /* Trio: with waiters queued the lock is being handed off: not free. */
    if (l->owner || !ctrio__list_empty(&l->waiters.head))
        return -EWOULDBLOCK;
    l->owner = t;
    return 0;
}

int ctrio_lock_acquire(ctrio_lock *l)
{
    if (!l)
        return -EINVAL;
    ctrio__task *t = ctrio__need_task("ctrio_lock_acquire");
    if (!t)
        return -EPERM;
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    rc = ctrio_lock_acquire_nowait(l);
    if (rc == 0) {
        ctrio_cancel_shielded_checkpoint();
        return 0;
    }
    if (rc != -EWOULDBLOCK)
        return rc;
    return park(&l->waiters, t); /* release hands the lock over: owner set */
}

int ctrio_lock_release(ctrio_lock *l)
{
    if (!l)
        return -EINVAL;
    ctrio__task *t = ctrio__need_task("ctrio_lock_release");
    if (!t)
        return -EPERM;
    if (l->owner != t)
        return ctrio__misuse("can't release a lock owned by another task");
    l->owner = unpark_one(&l->waiters, 0); /* FIFO hand-off, as trio.Lock */
    return 0;
}

bool ctrio_lock_locked(const ctrio_lock *l)
{
    return l && l->owner != NULL;
}

/* ---- Semaphore ---------------------------------------------------------- */

int ctrio_semaphore_init(ctrio_semaphore *s, size_t initial, size_t max_value)
{
    if (!s)
        return -EINVAL;
    waitq_init(&s->waiters);
    s->max_value = max_value;
    /* Trio: Semaphore(2, max_value=1) is a ValueError. Left empty, not
     * unset, so that a caller who ignores the error cannot crash. */
    bool bad = max_value && initial > max_value;
    s->value = bad ? 0 : initial;
    return bad ? -EINVAL : 0;
}

int ctrio_semaphore_acquire_nowait(ctrio_semaphore *s)
{
    if (!s)
        return -EINVAL;
    if (s->value == 0)
        return -EWOULDBLOCK;
    s->value--;
    return 0;
}

int ctrio_semaphore_acquire(ctrio_semaphore *s)
{
    if (!s)
        return -EINVAL;
    ctrio__task *t = ctrio__need_task("ctrio_semaphore_acquire");
    if (!t)
        return -EPERM;
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    if (ctrio_semaphore_acquire_nowait(s) == 0) {
        ctrio_cancel_shielded_checkpoint();
        return 0;
    }
    return park(&s->waiters, t); /* release hands the unit over */
}

int ctrio_semaphore_release(ctrio_semaphore *s)
{
    if (!s)
        return -EINVAL;
    if (unpark_one(&s->waiters, 0))
        return 0;
    if (s->max_value && s->value >= s->max_value)
        return -EINVAL; /* Trio: ValueError, semaphore released too many times */
    if (s->value == SIZE_MAX)
        return -EOVERFLOW; /* no maximum, but a size_t: Trio's ints never wrap */
    s->value++;
    return 0;
}

size_t ctrio_semaphore_value(const ctrio_semaphore *s)
{
    return s ? s->value : 0;
}

/* ---- Sequencer (trio.testing.Sequencer) -------------------------------- */

void ctrio_sequencer_init(ctrio_sequencer *s)
{
    if (!s)
        return;
    memset(s, 0, sizeof *s);
    waitq_init(&s->waiters);
}

int ctrio_sequencer_enter(ctrio_sequencer *s, size_t position)
{
    if (!s)
        return -EINVAL;
    ctrio__task *t = ctrio__need_task("ctrio_sequencer_enter");
    if (!t)
        return -EPERM;
    if (position >= 256)
        return -EINVAL;
    uint64_t bit = 1ull << (position % 64);
    if (s->claimed[position / 64] & bit)
        return ctrio__misuse("sequencer position %zu entered twice", position);
    if (s->broken)
        return ctrio__misuse("sequencer broken: a waiter was cancelled");
    s->claimed[position / 64] |= bit;
    while (s->next != position) {
        int rc = park(&s->waiters, t);
        if (rc < 0) {
            s->broken = true;
            while (unpark_one(&s->waiters, 0))
                ;
            return rc;
        }
        if (s->broken)
            return -EPERM;
    }
    int rc = ctrio_checkpoint();
    if (rc < 0) {
        /* Cancelled at its own turn: it will never leave, so the sequencer
         * breaks, as for a cancelled waiter (Trio: the wait raises). */
        s->broken = true;
        while (unpark_one(&s->waiters, 0))
            ;
    }
    return rc;
}

int ctrio_sequencer_leave(ctrio_sequencer *s, size_t position)
{
    if (!s)
        return -EINVAL;
    if (s->next != position)
        return ctrio__misuse("sequencer position %zu left out of turn", position);
    s->next = position + 1;
    while (unpark_one(&s->waiters, 0))
        ;
    return 0;
}
