/*
 * test_sync.c — Event, Lock and Semaphore, ported from Trio's
 * tests/test_sync.py (test_Event, test_Lock_and_StrictFIFOLock,
 * test_Semaphore, test_Semaphore_bounded and the generic lock tests, run here
 * on ctrio_lock and on a semaphore of 1). Every blocking call is a checkpoint
 * and every non-blocking call is not (SPEC: "Every blocking call is a
 * checkpoint"; the counters of Trio's assert_checkpoints). Trio's statistics()
 * have no equivalent in C: ctrio_lock_locked, ctrio_semaphore_value and
 * wait_all_tasks_blocked stand in for them.
 */
#include "support.h"

#include <ctrio_testing.h>

/* ---- helpers ------------------------------------------------------------ */

/* The record of events (record / check_record) is in support.c. */

/* A lock-like object for the generic lock tests: a ctrio_lock, or a
 * semaphore of 1 (Trio's lock_factories: Lock and Semaphore(1)). */
typedef struct lock_like {
    bool is_sem;
    ctrio_lock lock;
    ctrio_semaphore sem;
} lock_like;

static void ll_init(lock_like *l, bool is_sem)
{
    l->is_sem = is_sem;
    ctrio_lock_init(&l->lock);
    ctrio_semaphore_init(&l->sem, 1, 1);
}

static int ll_acquire(lock_like *l)
{
    return l->is_sem ? ctrio_semaphore_acquire(&l->sem) : ctrio_lock_acquire(&l->lock);
}

static int ll_acquire_nowait(lock_like *l)
{
    return l->is_sem ? ctrio_semaphore_acquire_nowait(&l->sem)
                     : ctrio_lock_acquire_nowait(&l->lock);
}

static int ll_release(lock_like *l)
{
    return l->is_sem ? ctrio_semaphore_release(&l->sem) : ctrio_lock_release(&l->lock);
}

static bool ll_held(lock_like *l)
{
    return l->is_sem ? ctrio_semaphore_value(&l->sem) == 0 : ctrio_lock_locked(&l->lock);
}

/* ---- Event ---------------------------------------------------------------- */

/* Trio: tests/test_sync.py::test_Event: set is sticky, wait on a set event
 * is still a checkpoint, and set wakes every waiter. */
static int event_child(void *arg)
{
    ctrio_event *e = arg;
    record("sleeping");
    assert_int_equal(ctrio_event_wait(e), 0);
    record("woken");
    return 0;
}

static int body_event(void *arg)
{
    (void)arg;
    ctrio_event e;
    ctrio_event_init(&e);
    assert_false(ctrio_event_is_set(&e));
    ASSERT_NO_CHECKPOINTS(ctrio_event_set(&e));
    assert_true(ctrio_event_is_set(&e));
    int rc = -1;
    ASSERT_CHECKPOINTS(rc = ctrio_event_wait(&e));
    assert_int_equal(rc, 0);
    ctrio_event_set(&e); /* idempotent */
    assert_true(ctrio_event_is_set(&e));

    ctrio_event_init(&e);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, event_child, &e), 0);
    assert_int_equal(ctrio_start_soon(&n, event_child, &e), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    static const char *const before[] = {"sleeping", "sleeping"};
    check_record(before, 2);
    ctrio_event_set(&e);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    static const char *const after[] = {"sleeping", "sleeping", "woken", "woken"};
    check_record(after, 4);
    return ctrio_nursery_close(&n, 0);
}

static void test_Event(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_mock(body_event, NULL), 0);
}

/* New (SPEC: blocking calls are checkpoints): a cancelled wait returns
 * -ECANCELED, even on an event that is already set, and a waiter woken by a
 * cancel is no longer queued (a later set must not touch it). */
static int event_cancel_child(void *arg)
{
    ctrio_event *e = arg;
    int rc = ctrio_event_wait(e);
    if (rc == -ECANCELED)
        record("cancelled");
    return rc;
}

static int body_event_cancel(void *arg)
{
    (void)arg;
    ctrio_event e;
    ctrio_event_init(&e);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, event_cancel_child, &e), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_false(ctrio_event_is_set(&e));
    ctrio_event_set(&e); /* the cancelled waiter's node is gone */
    assert_int_equal(ctrio_event_wait(&e), 0);

    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    int rc = 0;
    ASSERT_CHECKPOINTS(rc = ctrio_event_wait(&e)); /* set, but cancelled */
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    return 0;
}

static void test_Event_wait_cancelled(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_mock(body_event_cancel, NULL), 0);
    static const char *const expected[] = {"cancelled"};
    check_record(expected, 1);
}

/* ---- Lock ----------------------------------------------------------------- */

/* Trio: tests/test_sync.py::test_Lock_and_StrictFIFOLock (first part):
 * acquire is a checkpoint, acquire_nowait and release are not; re-acquiring a
 * held lock and releasing a lock one does not hold are errors
 * (RuntimeError -> -EPERM). */
static int body_lock_basic(void *arg)
{
    (void)arg;
    ctrio_lock l;
    ctrio_lock_init(&l);
    assert_false(ctrio_lock_locked(&l));
    int rc = -1;
    ASSERT_CHECKPOINTS(rc = ctrio_lock_acquire(&l));
    assert_int_equal(rc, 0);
    assert_true(ctrio_lock_locked(&l));
    ASSERT_NO_CHECKPOINTS(rc = ctrio_lock_release(&l));
    assert_int_equal(rc, 0);
    assert_false(ctrio_lock_locked(&l));

    ASSERT_NO_CHECKPOINTS(rc = ctrio_lock_acquire_nowait(&l));
    assert_int_equal(rc, 0);
    assert_true(ctrio_lock_locked(&l));
    /* error out if we already own the lock */
    assert_int_equal(ctrio_lock_acquire_nowait(&l), -EPERM);
    assert_int_equal(ctrio_lock_acquire(&l), -EPERM);
    assert_true(ctrio_lock_locked(&l));
    assert_int_equal(ctrio_lock_release(&l), 0);
    assert_false(ctrio_lock_locked(&l));
    /* error out if we don't own the lock */
    assert_int_equal(ctrio_lock_release(&l), -EPERM);
    assert_false(ctrio_lock_locked(&l));
    return 0;
}

static void test_Lock_basic(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_lock_basic, NULL), 0);
}

/* Trio: tests/test_sync.py::test_Lock_and_StrictFIFOLock (second part): a
 * lock held by another task: acquire_nowait -> WouldBlock (-EWOULDBLOCK),
 * release -> RuntimeError (-EPERM); a second holder queues; cancelling both
 * leaves the lock free with nobody queued. */
static int holder(void *arg)
{
    ctrio_lock *l = arg;
    int rc = ctrio_lock_acquire(l);
    if (rc < 0) {
        record("holder acquire cancelled");
        return rc;
    }
    record("holder has it");
    rc = ctrio_sleep_forever();
    assert_int_equal(ctrio_lock_release(l), 0);
    return rc;
}

static int body_lock_other_holder(void *arg)
{
    (void)arg;
    ctrio_lock l;
    ctrio_lock_init(&l);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_false(ctrio_lock_locked(&l));
    assert_int_equal(ctrio_start_soon(&n, holder, &l), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_true(ctrio_lock_locked(&l));
    assert_int_equal(ctrio_lock_acquire_nowait(&l), -EWOULDBLOCK);
    assert_int_equal(ctrio_lock_release(&l), -EPERM);
    assert_true(ctrio_lock_locked(&l));

    assert_int_equal(ctrio_start_soon(&n, holder, &l), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    static const char *const one[] = {"holder has it"};
    check_record(one, 1); /* the second one waits */
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    static const char *const both[] = {"holder has it", "holder acquire cancelled"};
    check_record(both, 2);
    assert_false(ctrio_lock_locked(&l));
    /* nobody is left in the queue: the lock is free for the taking */
    assert_int_equal(ctrio_lock_acquire_nowait(&l), 0);
    assert_int_equal(ctrio_lock_release(&l), 0);
    return 0;
}

static void test_Lock_held_by_other_task(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_mock(body_lock_other_holder, NULL), 0);
}

/* Trio: tests/test_sync.py::test_CapacityLimiter / test_Semaphore
 * ("Fairness"), applied to Lock (trio.Lock hands the lock to the first
 * waiter on release): after release with a waiter queued the lock stays
 * locked, now owned by the waiter, and acquire_nowait by a third task fails. */
static int lock_waiter(void *arg)
{
    ctrio_lock *l = arg;
    record("waiter started");
    assert_int_equal(ctrio_lock_acquire(l), 0);
    record("waiter got it");
    assert_int_equal(ctrio_checkpoint(), 0);
    assert_int_equal(ctrio_lock_release(l), 0);
    return 0;
}

static int body_lock_handoff(void *arg)
{
    (void)arg;
    ctrio_lock l;
    ctrio_lock_init(&l);
    assert_int_equal(ctrio_lock_acquire(&l), 0);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, lock_waiter, &l), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_lock_release(&l), 0);
    /* handed off: still locked, not ours, and not free to grab */
    assert_true(ctrio_lock_locked(&l));
    assert_int_equal(ctrio_lock_acquire_nowait(&l), -EWOULDBLOCK);
    assert_int_equal(ctrio_lock_release(&l), -EPERM);
    static const char *const before[] = {"waiter started"};
    check_record(before, 1);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    static const char *const after[] = {"waiter started", "waiter got it"};
    check_record(after, 2);
    assert_false(ctrio_lock_locked(&l));
    return 0;
}

static void test_Lock_fair_handoff(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_mock(body_lock_handoff, NULL), 0);
}

/* Trio's generic lock rule (test_sync.py, "acquire is a checkpoint even when
 * uncontended", from test_Lock_and_StrictFIFOLock's assert_checkpoints):
 * an uncontended acquire yields (another task runs during it); an acquire in
 * a cancelled scope returns -ECANCELED and leaves the lock free. Lock and
 * Semaphore(1). */
static int flag;

static int set_flag(void *arg)
{
    (void)arg;
    flag = 1;
    return 0;
}

static int body_acquire_checkpoint(void *arg)
{
    bool is_sem = arg != NULL;
    lock_like l;
    ll_init(&l, is_sem);

    flag = 0;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, set_flag, NULL), 0);
    int rc = -1;
    ASSERT_CHECKPOINTS(rc = ll_acquire(&l));
    assert_int_equal(rc, 0);
    assert_int_equal(flag, 1); /* the child ran while we acquired */
    assert_true(ll_held(&l));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    ASSERT_NO_CHECKPOINTS(rc = ll_release(&l));
    assert_int_equal(rc, 0);
    assert_false(ll_held(&l));

    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    ASSERT_CHECKPOINTS(rc = ll_acquire(&l));
    assert_int_equal(rc, -ECANCELED);
    assert_false(ll_held(&l)); /* a cancelled acquire takes nothing */
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(ll_acquire_nowait(&l), 0);
    assert_int_equal(ll_release(&l), 0);
    return 0;
}

static void test_Lock_acquire_is_checkpoint(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_acquire_checkpoint, NULL), 0);
}

static void test_Semaphore_acquire_is_checkpoint(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_acquire_checkpoint, (void *)1), 0);
}

/* New, after Trio's test_CapacityLimiter_memleak_548 and the generic lock
 * rule "a cancelled acquire does not take the lock": a waiter cancelled while
 * queued is removed; the holder's release then leaves the lock free instead
 * of handing it to the cancelled task. Lock and Semaphore(1). */
static int ll_blocked_acquirer(void *arg)
{
    lock_like *l = arg;
    int rc = ll_acquire(l);
    if (rc == -ECANCELED)
        record("acquire cancelled");
    else if (rc == 0)
        record("acquired (wrong)");
    return rc;
}

static int body_cancelled_waiter(void *arg)
{
    bool is_sem = arg != NULL;
    lock_like l;
    ll_init(&l, is_sem);
    assert_int_equal(ll_acquire(&l), 0);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, ll_blocked_acquirer, &l), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_true(ll_held(&l)); /* still ours */
    assert_int_equal(ll_release(&l), 0);
    assert_false(ll_held(&l)); /* not handed to the cancelled waiter */
    assert_int_equal(ll_acquire_nowait(&l), 0);
    assert_int_equal(ll_release(&l), 0);
    return 0;
}

static void test_Lock_cancelled_waiter_does_not_get_lock(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_mock(body_cancelled_waiter, NULL), 0);
    static const char *const expected[] = {"acquire cancelled"};
    check_record(expected, 1);
}

static void test_Semaphore_cancelled_waiter_does_not_get_unit(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_mock(body_cancelled_waiter, (void *)1), 0);
    static const char *const expected[] = {"acquire cancelled"};
    check_record(expected, 1);
}

/* ---- generic lock tests (Lock and Semaphore(1)) ---------------------------- */

/* Trio: tests/test_sync.py::test_generic_lock_exclusion: 5 workers x 10
 * loops; never two in the critical section. */
#define EXCL_LOOPS 10
#define EXCL_WORKERS 5
static bool in_critical_section;
static int acquires;

static int excl_worker(void *arg)
{
    lock_like *l = arg;
    for (int i = 0; i < EXCL_LOOPS; i++) {
        assert_int_equal(ll_acquire(l), 0);
        acquires++;
        assert_false(in_critical_section);
        in_critical_section = true;
        assert_int_equal(ctrio_checkpoint(), 0);
        assert_int_equal(ctrio_checkpoint(), 0);
        assert_true(in_critical_section);
        in_critical_section = false;
        assert_int_equal(ll_release(l), 0);
    }
    return 0;
}

static int body_exclusion(void *arg)
{
    lock_like l;
    ll_init(&l, arg != NULL);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < EXCL_WORKERS; i++)
        assert_int_equal(ctrio_start_soon(&n, excl_worker, &l), 0);
    return ctrio_nursery_close(&n, 0);
}

static void test_generic_lock_exclusion(void **state)
{
    (void)state;
    for (int is_sem = 0; is_sem < 2; is_sem++) {
        in_critical_section = false;
        acquires = 0;
        assert_int_equal(run_mock(body_exclusion, is_sem ? (void *)1 : NULL), 0);
        assert_false(in_critical_section);
        assert_int_equal(acquires, EXCL_LOOPS * EXCL_WORKERS);
    }
}

/* Trio: tests/test_sync.py::test_generic_lock_fifo_fairness: three tasks
 * loop on the lock; after the first round they take it in the same order. */
#define FIFO_LOOPS 5
static int initial_order[3], ninitial;
static int fifo_record[3 * FIFO_LOOPS], nfifo;

typedef struct loopy_arg {
    lock_like *l;
    int name;
} loopy_arg;

static int loopy(void *arg)
{
    loopy_arg *a = arg;
    initial_order[ninitial++] = a->name;
    for (int i = 0; i < FIFO_LOOPS; i++) {
        assert_int_equal(ll_acquire(a->l), 0);
        fifo_record[nfifo++] = a->name;
        assert_int_equal(ll_release(a->l), 0);
    }
    return 0;
}

static int body_fifo(void *arg)
{
    lock_like l;
    ll_init(&l, arg != NULL);
    loopy_arg a[3] = {{&l, 1}, {&l, 2}, {&l, 3}};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ctrio_start_soon(&n, loopy, &a[i]), 0);
    return ctrio_nursery_close(&n, 0);
}

static void test_generic_lock_fifo_fairness(void **state)
{
    (void)state;
    for (int is_sem = 0; is_sem < 2; is_sem++) {
        ninitial = nfifo = 0;
        assert_int_equal(run_mock(body_fifo, is_sem ? (void *)1 : NULL), 0);
        assert_int_equal(ninitial, 3);
        assert_int_equal(nfifo, 3 * FIFO_LOOPS);
        for (int i = 0; i < FIFO_LOOPS; i++)
            for (int j = 0; j < 3; j++)
                assert_int_equal(fifo_record[3 * i + j], initial_order[j]);
    }
}

/* Trio: tests/test_sync.py::test_generic_lock_acquire_nowait_blocks_acquire:
 * a lock taken with acquire_nowait makes another task's acquire wait until
 * it is released. */
static int lock_taker(void *arg)
{
    lock_like *l = arg;
    record("started");
    assert_int_equal(ll_acquire(l), 0);
    assert_int_equal(ll_release(l), 0);
    record("finished");
    return 0;
}

static int body_nowait_blocks(void *arg)
{
    lock_like l;
    ll_init(&l, arg != NULL);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ll_acquire_nowait(&l), 0);
    assert_int_equal(ctrio_start_soon(&n, lock_taker, &l), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    static const char *const started[] = {"started"};
    check_record(started, 1);
    assert_int_equal(ll_release(&l), 0);
    return ctrio_nursery_close(&n, 0);
}

static void test_generic_lock_acquire_nowait_blocks_acquire(void **state)
{
    (void)state;
    for (int is_sem = 0; is_sem < 2; is_sem++) {
        nrec = 0;
        assert_int_equal(run_mock(body_nowait_blocks, is_sem ? (void *)1 : NULL), 0);
        static const char *const expected[] = {"started", "finished"};
        check_record(expected, 2);
    }
}

/* ---- Semaphore ------------------------------------------------------------- */

/* Trio: tests/test_sync.py::test_Semaphore: value accounting, acquire is a
 * checkpoint, acquire_nowait at 0 -> WouldBlock (-EWOULDBLOCK), unbounded
 * release (max_value 0: none), and fairness: a release with a waiter hands
 * the unit over (value stays 0). */
static int do_acquire(void *arg)
{
    ctrio_semaphore *s = arg;
    record("started");
    assert_int_equal(ctrio_semaphore_acquire(s), 0);
    record("finished");
    return 0;
}

static int body_semaphore(void *arg)
{
    (void)arg;
    ctrio_semaphore s;
    ctrio_semaphore_init(&s, 1, 0);
    assert_int_equal(ctrio_semaphore_value(&s), 1);
    int rc = -1;
    ASSERT_NO_CHECKPOINTS(rc = ctrio_semaphore_release(&s));
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_semaphore_value(&s), 2);
    ASSERT_NO_CHECKPOINTS(rc = ctrio_semaphore_acquire_nowait(&s));
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_semaphore_value(&s), 1);
    ASSERT_CHECKPOINTS(rc = ctrio_semaphore_acquire(&s));
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_semaphore_value(&s), 0);
    ASSERT_NO_CHECKPOINTS(rc = ctrio_semaphore_acquire_nowait(&s));
    assert_int_equal(rc, -EWOULDBLOCK);
    assert_int_equal(ctrio_semaphore_value(&s), 0);

    assert_int_equal(ctrio_semaphore_release(&s), 0);
    assert_int_equal(ctrio_semaphore_value(&s), 1);
    ASSERT_CHECKPOINTS(rc = ctrio_semaphore_acquire(&s));
    assert_int_equal(ctrio_semaphore_value(&s), 0);
    assert_int_equal(ctrio_semaphore_release(&s), 0);
    assert_int_equal(ctrio_semaphore_value(&s), 1);
    assert_int_equal(ctrio_semaphore_acquire_nowait(&s), 0);

    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, do_acquire, &s), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    static const char *const started[] = {"started"};
    check_record(started, 1);
    assert_int_equal(ctrio_semaphore_value(&s), 0);
    assert_int_equal(ctrio_semaphore_release(&s), 0);
    /* fairness: */
    assert_int_equal(ctrio_semaphore_value(&s), 0);
    assert_int_equal(ctrio_semaphore_acquire_nowait(&s), -EWOULDBLOCK);
    rc = ctrio_nursery_close(&n, 0);
    static const char *const done[] = {"started", "finished"};
    check_record(done, 2);
    return rc;
}

static void test_Semaphore(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_mock(body_semaphore, NULL), 0);
}

/* Trio: tests/test_sync.py::test_Semaphore_bounded: releasing past
 * max_value -> ValueError (-EINVAL), value unchanged. Trio's
 * Semaphore(2, max_value=1) -> ValueError is ctrio_semaphore_init's -EINVAL
 * (test_Semaphore_init_checks). */
static int body_semaphore_bounded(void *arg)
{
    (void)arg;
    ctrio_semaphore bs;
    ctrio_semaphore_init(&bs, 1, 1);
    assert_int_equal(ctrio_semaphore_release(&bs), -EINVAL);
    assert_int_equal(ctrio_semaphore_value(&bs), 1);
    assert_int_equal(ctrio_semaphore_acquire_nowait(&bs), 0);
    assert_int_equal(ctrio_semaphore_value(&bs), 0);
    assert_int_equal(ctrio_semaphore_release(&bs), 0);
    assert_int_equal(ctrio_semaphore_value(&bs), 1);
    assert_int_equal(ctrio_semaphore_release(&bs), -EINVAL);
    assert_int_equal(ctrio_semaphore_value(&bs), 1);

    /* a bound of 3: up to 3, not past */
    ctrio_semaphore s3;
    ctrio_semaphore_init(&s3, 0, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ctrio_semaphore_release(&s3), 0);
    assert_int_equal(ctrio_semaphore_value(&s3), 3);
    assert_int_equal(ctrio_semaphore_release(&s3), -EINVAL);
    assert_int_equal(ctrio_semaphore_value(&s3), 3);
    return 0;
}

static void test_Semaphore_bounded(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_semaphore_bounded, NULL), 0);
}

/* Trio: tests/test_sync.py::test_Semaphore_bounded (Semaphore(2,
 * max_value=1) raises ValueError, "max_values must be >= initial_value"
 * in _sync.py): an initial value above the maximum
 * is -EINVAL and leaves an empty semaphore with that maximum (it was taken
 * as given: value 5 with a maximum of 2). Trio's ints cannot overflow; here
 * a release at SIZE_MAX with no maximum is -EOVERFLOW, value unchanged (it
 * wrapped to 0). Not checkpoints, and usable outside a run. */
static void test_Semaphore_init_checks(void **state)
{
    (void)state;
    ctrio_semaphore s;
    assert_int_equal(ctrio_semaphore_init(&s, 5, 2), -EINVAL);
    assert_int_equal(ctrio_semaphore_value(&s), 0);
    assert_int_equal(ctrio_semaphore_release(&s), 0);
    assert_int_equal(ctrio_semaphore_release(&s), 0);
    assert_int_equal(ctrio_semaphore_release(&s), -EINVAL);
    assert_int_equal(ctrio_semaphore_value(&s), 2);

    assert_int_equal(ctrio_semaphore_init(&s, 2, 2), 0);
    assert_int_equal(ctrio_semaphore_value(&s), 2);
    assert_int_equal(ctrio_semaphore_init(&s, 0, 0), 0);
    assert_int_equal(ctrio_semaphore_init(&s, SIZE_MAX, SIZE_MAX), 0);

    assert_int_equal(ctrio_semaphore_init(&s, SIZE_MAX - 1, 0), 0);
    assert_int_equal(ctrio_semaphore_release(&s), 0);
    assert_true(ctrio_semaphore_value(&s) == SIZE_MAX);
    assert_int_equal(ctrio_semaphore_release(&s), -EOVERFLOW);
    assert_true(ctrio_semaphore_value(&s) == SIZE_MAX);
    assert_int_equal(ctrio_semaphore_acquire_nowait(&s), 0);
    assert_true(ctrio_semaphore_value(&s) == SIZE_MAX - 1);
}

/* New: a semaphore of 2 lets exactly two tasks in at once; the others
 * queue and get in, in FIFO order, as units are released. */
static int sem_inside, sem_max_inside;

static int sem_worker(void *arg)
{
    ctrio_semaphore *s = arg;
    assert_int_equal(ctrio_semaphore_acquire(s), 0);
    sem_inside++;
    if (sem_inside > sem_max_inside)
        sem_max_inside = sem_inside;
    assert_int_equal(ctrio_sleep(1), 0);
    sem_inside--;
    assert_int_equal(ctrio_semaphore_release(s), 0);
    return 0;
}

static int body_semaphore_counting(void *arg)
{
    (void)arg;
    ctrio_semaphore s;
    ctrio_semaphore_init(&s, 2, 2);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ctrio_start_soon(&n, sem_worker, &s), 0);
    int rc = ctrio_nursery_close(&n, 0);
    /* 5 one-second holders, 2 at a time: 3 rounds */
    assert_true(ctrio_current_time() == 3.0);
    assert_int_equal(ctrio_semaphore_value(&s), 2);
    return rc;
}

static void test_Semaphore_counts(void **state)
{
    (void)state;
    sem_inside = sem_max_inside = 0;
    assert_int_equal(run_mock(body_semaphore_counting, NULL), 0);
    assert_int_equal(sem_max_inside, 2);
    assert_int_equal(sem_inside, 0);
}

/* New: the NULL rule of ctrio.h (Conventions) for Event, Lock and
 * Semaphore, which used to dereference it: -EINVAL from the int calls (no
 * checkpoint), nothing from the void ones, false / 0 from the queries. */
static int body_null_handles(void *arg)
{
    (void)arg;
    int rc = 0;
    ctrio_event_init(NULL);
    ctrio_event_set(NULL);
    assert_false(ctrio_event_is_set(NULL));
    CP_EXACT(rc = ctrio_event_wait(NULL), 0, 0);
    assert_int_equal(rc, -EINVAL);

    ctrio_lock_init(NULL);
    CP_EXACT(rc = ctrio_lock_acquire(NULL), 0, 0);
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(ctrio_lock_acquire_nowait(NULL), -EINVAL);
    assert_int_equal(ctrio_lock_release(NULL), -EINVAL);
    assert_false(ctrio_lock_locked(NULL));

    assert_int_equal(ctrio_semaphore_init(NULL, 1, 0), -EINVAL);
    CP_EXACT(rc = ctrio_semaphore_acquire(NULL), 0, 0);
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(ctrio_semaphore_acquire_nowait(NULL), -EINVAL);
    assert_int_equal(ctrio_semaphore_release(NULL), -EINVAL);
    assert_int_equal(ctrio_semaphore_value(NULL), 0);
    return 0;
}

static void test_null_handles(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_null_handles, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_Event),
        TEST(test_Event_wait_cancelled),
        TEST(test_Lock_basic),
        TEST(test_Lock_held_by_other_task),
        TEST(test_Lock_fair_handoff),
        TEST(test_Lock_acquire_is_checkpoint),
        TEST(test_Semaphore_acquire_is_checkpoint),
        TEST(test_Lock_cancelled_waiter_does_not_get_lock),
        TEST(test_Semaphore_cancelled_waiter_does_not_get_unit),
        TEST(test_generic_lock_exclusion),
        TEST(test_generic_lock_fifo_fairness),
        TEST(test_generic_lock_acquire_nowait_blocks_acquire),
        TEST(test_Semaphore),
        TEST(test_Semaphore_bounded),
        TEST(test_Semaphore_init_checks),
        TEST(test_null_handles),
        TEST(test_Semaphore_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
