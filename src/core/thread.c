/*
 * thread.c — running blocking work in worker threads (trio.to_thread.run_sync)
 * and coming back into the run from them (trio.from_thread.run).
 *
 * Each run has a pool of worker threads, kept in its token (token.h): a thread is
 * started when a job finds no idle one, reused while there is work, and exits
 * after CTRIO__WORKER_IDLE_SECONDS without any (Trio's thread cache:
 * IDLE_TIMEOUT; ctrio_testing_set_worker_idle shortens it for a test), or
 * when the run ends. At most
 * 40 jobs of a run are in threads at once (Trio's default CapacityLimiter);
 * the others wait for a slot, cancellably.
 *
 * Workers are joined, not detached: one that leaves puts itself on the pool's
 * exited list; the next submit joins those that have ended (without waiting:
 * a thread's exit may run slow TLS destructors, and the run must not stall
 * on them), and the run's end joins them all. So when
 * ctrio_run returns no worker of the run is still ending (glibc frees a
 * thread's resolver state and TLS as it ends; a detached worker still doing
 * that when main returned made valgrind report the resolver's memory as
 * lost, once in CI). Only a worker busy with an abandoned call when the run
 * ends detaches itself: nobody is left to join it.
 *
 * A job's state decides who finishes it: the worker moves it RUNNING -> DONE
 * and posts the result to the run, or the cancelled caller moves it RUNNING ->
 * ABANDONED (only with CTRIO_ABANDON_ON_CANCEL) and returns -ECANCELED at
 * once; the worker then releases the argument through on_abandon, gives the
 * slot back (if the run still exists) and frees the job. Whichever move wins
 * the compare-and-swap decides; the other side sees it and steps back.
 */
#include "internal.h"
#include "token.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#define CTRIO__WORKER_IDLE_SECONDS 10

enum { JOB_RUNNING, JOB_DONE, JOB_ABANDONED };

struct ctrio__worker {
    ctrio__worker *next;
    ctrio_token *token;
    pthread_t thread;
};

struct ctrio__job {
    ctrio__job *next;
    ctrio__post post; /* result back to the run */
    ctrio_fn fn;
    void *arg;
    void (*on_abandon)(void *arg, int rc);
    ctrio__task *task;
    ctrio_token *token;
    ctrio_semaphore *limiter;
    bool *abandoned; /* the caller's flag, set by job_abort (run's thread) */
    _Atomic int state;
    int flags;
    int rc;
};


void ctrio__pool_init(ctrio__pool *p)
{
    p->idle_seconds = CTRIO__WORKER_IDLE_SECONDS;
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->drained_cv, NULL);
}

void ctrio__pool_fini(ctrio__pool *p)
{
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->drained_cv);
}

/* Join workers taken off the exited list (without the mutex: a leaving
 * worker has released it for good before it is on the list). */
static void join_workers(ctrio__worker *w)
{
    while (w) {
        ctrio__worker *next = w->next;
        pthread_join(w->thread, NULL);
        free(w);
        w = next;
    }
}

/* Under the mutex: join the exited workers that have ended by now. */
static void reap_ended_locked(ctrio__pool *p)
{
    for (ctrio__worker **pw = &p->exited; *pw;) {
        ctrio__worker *w = *pw;
        if (pthread_tryjoin_np(w->thread, NULL) == 0) {
            *pw = w->next;
            free(w);
        } else {
            pw = &w->next;
        }
    }
}

void ctrio__pool_close_locked(ctrio__pool *p, pthread_mutex_t *mu)
{
    pthread_cond_broadcast(&p->cv);
    while (p->nthreads > p->nbusy)
        pthread_cond_wait(&p->drained_cv, mu);
    if (p->reaped)
        return;
    p->reaped = true;
    ctrio__worker *w = p->exited;
    p->exited = NULL;
    pthread_mutex_unlock(mu);
    join_workers(w);
    pthread_mutex_lock(mu);
}

/* Run's thread: the worker finished a job nobody abandoned. */
static void job_done_post(ctrio__post *p)
{
    ctrio__job *j = ctrio__container_of(p, ctrio__job, post);
    ctrio_semaphore_release(j->limiter);
    ctrio__reschedule(j->task, j->rc);
    ctrio__token_unref(j->token);
    free(j);
}

/* Run's thread: an abandoned job finished; give its slot back. */
static void job_slot_post(ctrio__post *p)
{
    ctrio__job *j = ctrio__container_of(p, ctrio__job, post);
    ctrio_semaphore_release(j->limiter);
    ctrio__token_unref(j->token);
    free(j);
}

/* Worker, without the mutex: run the call and settle who finishes the job.
 * Returns the post to make (under the mutex, by the caller). */
static ctrio__post *job_run(ctrio__job *j)
{
    int rc = j->fn(j->arg);
    j->rc = rc;
    int expect = JOB_RUNNING;
    if (atomic_compare_exchange_strong(&j->state, &expect, JOB_DONE)) {
        j->post.fn = job_done_post;
        return &j->post;
    }
    if (j->on_abandon)
        j->on_abandon(j->arg, rc);
    j->post.fn = job_slot_post;
    return &j->post;
}

static void *worker_main(void *p)
{
    ctrio__worker *self = p;
    ctrio_token *t = self->token;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->pool.jobs_head && !t->closed) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            double idle = t->pool.idle_seconds;
            until.tv_sec += (time_t)idle;
            until.tv_nsec += (long)((idle - (double)(time_t)idle) * 1e9);
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            t->pool.nidle++;
            int rc = pthread_cond_timedwait(&t->pool.cv, &t->mu, &until);
            t->pool.nidle--;
            if (rc == ETIMEDOUT && !t->pool.jobs_head)
                goto leave;
        }
        if (!t->pool.jobs_head)
            break; /* closed */
        ctrio__job *j = t->pool.jobs_head;
        t->pool.jobs_head = j->next;
        if (!t->pool.jobs_head)
            t->pool.jobs_tail = NULL;
        t->pool.njobs--;
        t->pool.nbusy++;
        pthread_mutex_unlock(&t->mu);
        ctrio__post *post = job_run(j);
        pthread_mutex_lock(&t->mu);
        /* Not busy any more before the result can reach the run: a run that
         * ends on this result then waits for this worker to leave (only
         * abandoned calls keep a worker busy past the run's end). */
        t->pool.nbusy--;
        if (ctrio__token_post_locked(t, post) < 0) {
            /* the run has ended: only an abandoned job's slot is lost (a
             * waiting task keeps the run open) */
            ctrio__token_unref(j->token); /* not the last: this worker holds one */
            free(j);
        }
    }
leave:
    t->pool.nthreads--;
    if (t->pool.reaped) {
        pthread_detach(pthread_self());
        free(self);
    } else {
        self->next = t->pool.exited; /* the joiner frees self */
        t->pool.exited = self;
    }
    pthread_cond_broadcast(&t->pool.drained_cv);
    pthread_mutex_unlock(&t->mu);
    ctrio__token_unref(t); /* not the last: the run keeps one until the pool is joined */
    return NULL;
}

static int submit(ctrio_token *t, ctrio__job *j)
{
    pthread_mutex_lock(&t->mu);
    if (t->closed) {
        pthread_mutex_unlock(&t->mu);
        return -ESHUTDOWN;
    }
    reap_ended_locked(&t->pool);
    j->next = NULL;
    if (t->pool.jobs_tail)
        t->pool.jobs_tail->next = j;
    else
        t->pool.jobs_head = j;
    t->pool.jobs_tail = j;
    t->pool.njobs++;
    int rc = 0;
    if (t->pool.nidle >= t->pool.njobs) {
        pthread_cond_signal(&t->pool.cv);
    } else {
        ctrio__worker *w = calloc(1, sizeof *w);
        if (w)
            w->token = t;
        /* Workers take no asynchronous signals: those stay for the threads
         * that wait for them (ctrio_wait_signal blocks them only in its own
         * thread, and a worker made earlier would take one and die of it). */
        sigset_t all, old;
        sigfillset(&all);
        static const int sync_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
        for (size_t i = 0; i < sizeof sync_sigs / sizeof sync_sigs[0]; i++)
            sigdelset(&all, sync_sigs[i]); /* faults in fn keep their handlers */
        pthread_sigmask(SIG_SETMASK, &all, &old);
        ctrio__token_ref(t);
        int e = w ? 0 : ENOMEM;
        while (w) { /* (EINTR: only the fault switch makes one) */
            e = ctrio__sys_fault() ? errno : pthread_create(&w->thread, NULL, worker_main, w);
            if (e != EINTR)
                break;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (e == 0) {
            t->pool.nthreads++;
        } else {
            free(w);
            ctrio__token_unref(t);
            /* No idle worker and no new one: the busy ones may never come
             * back (abandoned calls), so take the job back (the tail). */
            ctrio__job **pp = &t->pool.jobs_head, *prev = NULL;
            while (*pp != j) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            *pp = NULL;
            t->pool.jobs_tail = prev;
            t->pool.njobs--;
            rc = -e;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static bool job_abort(ctrio__task *task)
{
    ctrio__job *j = task->wait_ctx;
    if (!(j->flags & CTRIO_ABANDON_ON_CANCEL))
        return false;
    int expect = JOB_RUNNING;
    if (!atomic_compare_exchange_strong(&j->state, &expect, JOB_ABANDONED))
        return false;
    *j->abandoned = true; /* j is the worker's from here on */
    return true;
}

int ctrio__to_thread(ctrio_fn fn, void *arg, int flags, void (*on_abandon)(void *arg, int rc),
                     ctrio_semaphore *limiter, bool *abandoned)
{
    bool dummy;
    if (!abandoned)
        abandoned = &dummy;
    *abandoned = false;
    ctrio__task *t = ctrio__need_task("ctrio_to_thread_run_sync");
    if (!t)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    ctrio__run *r = t->run;
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    rc = ctrio_semaphore_acquire(limiter);
    if (rc < 0)
        return rc;
    ctrio__job *j = calloc(1, sizeof *j);
    if (!j) {
        ctrio_semaphore_release(limiter);
        return -ENOMEM;
    }
    j->fn = fn;
    j->arg = arg;
    j->on_abandon = on_abandon;
    j->task = t;
    j->flags = flags;
    j->token = r->token;
    j->limiter = limiter;
    j->abandoned = abandoned;
    atomic_init(&j->state, JOB_RUNNING);
    ctrio__token_ref(j->token);
    rc = submit(r->token, j);
    if (rc < 0) {
        ctrio__token_unref(j->token);
        free(j);
        ctrio_semaphore_release(limiter);
        return rc;
    }
    /* The job is the worker's now; job_abort sets *abandoned if it gave it
     * up (fn itself may return -ECANCELED too). */
    return ctrio__wait(job_abort, j);
}

int ctrio_to_thread_run_sync_with(ctrio_fn fn, void *arg, int flags,
                                  void (*on_abandon)(void *arg, int rc))
{
    ctrio__task *t = ctrio__need_task("ctrio_to_thread_run_sync");
    if (!t)
        return -EPERM;
    bool abandoned;
    int rc = ctrio__to_thread(fn, arg, flags, on_abandon, &t->run->thread_limiter, &abandoned);
    /* -ECANCELED with CTRIO_ABANDON_ON_CANCEL always hands arg to on_abandon:
     * the worker calls it after fn if the call was abandoned; otherwise (the
     * caller was cancelled before fn started, or fn returned -ECANCELED) it
     * is called here, now. The caller cannot tell these cases apart. */
    if (rc == -ECANCELED && !abandoned && (flags & CTRIO_ABANDON_ON_CANCEL) && on_abandon)
        on_abandon(arg, rc);
    return rc;
}

int ctrio_to_thread_run_sync(ctrio_fn fn, void *arg, int flags)
{
    return ctrio_to_thread_run_sync_with(fn, arg, flags, NULL);
}

/* ---- from_thread_run ---------------------------------------------------- */

typedef struct from_req {
    ctrio__post post;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ctrio_fn fn;
    void *arg;
    int rc;
    bool done;
} from_req;

static void from_finish(from_req *q, int rc)
{
    pthread_mutex_lock(&q->mu);
    q->rc = rc;
    q->done = true;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static int from_task(void *p)
{
    from_req *q = p;
    from_finish(q, q->fn(q->arg));
    return 0;
}

static void from_spawn(ctrio__post *p)
{
    from_req *q = ctrio__container_of(p, from_req, post);
    ctrio__run *r = ctrio__tls_run;
    int err = 0;
    ctrio__task *t = ctrio__spawn(NULL, &r->system_scope, from_task, q, &err);
    if (!t) {
        from_finish(q, err);
        return;
    }
    t->system = true;
    r->nsystem++;
}

int ctrio_from_thread_run(ctrio_token *t, ctrio_fn fn, void *arg)
{
    if (!t || !fn)
        return -EINVAL;
    if (ctrio__tls_run)
        return ctrio__misuse("ctrio_from_thread_run called from a thread that runs a "
                             "ctrio_run: call the function directly");
    from_req q;
    memset(&q, 0, sizeof q);
    pthread_mutex_init(&q.mu, NULL);
    pthread_cond_init(&q.cv, NULL);
    q.fn = fn;
    q.arg = arg;
    q.post.fn = from_spawn;
    int rc = ctrio__token_post(t, &q.post);
    if (rc == 0) {
        pthread_mutex_lock(&q.mu);
        while (!q.done)
            pthread_cond_wait(&q.cv, &q.mu);
        pthread_mutex_unlock(&q.mu);
        rc = q.rc;
    }
    pthread_cond_destroy(&q.cv);
    pthread_mutex_destroy(&q.mu);
    return rc;
}

int ctrio_testing_set_worker_idle(double seconds)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r)
        return -EPERM;
    if (!(seconds > 0) || seconds > 86400)
        return -EINVAL;
    ctrio_token *t = r->token;
    pthread_mutex_lock(&t->mu);
    t->pool.idle_seconds = seconds;
    pthread_cond_broadcast(&t->pool.cv); /* idle workers wait anew, with the new time */
    pthread_mutex_unlock(&t->mu);
    return 0;
}
