/*
 * token.c — the run's token (trio.lowlevel.TrioToken). The worker-thread
 * pool that hangs off it is thread.c's.
 *
 * The token is the one object of a run that other threads touch: a mutex, a
 * FIFO of callbacks, and the run's wake descriptor. A callback posted from
 * any thread is run by the scheduler's thread between batches, outside any
 * task. The token is reference-counted: the run holds one reference, each
 * worker thread and each outstanding thread job another, and anyone may take
 * one with ctrio_token_retain. When the run ends the token is closed: posts
 * then fail with -ESHUTDOWN, idle workers exit, and the memory goes when the
 * last reference does.
 */
#include "internal.h"
#include "token.h"

#include <pthread.h>

static void token_unref(ctrio_token *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&t->mu);
        ctrio__pool_fini(&t->pool);
        free(t);
    }
}

void ctrio__token_ref(ctrio_token *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void ctrio__token_unref(ctrio_token *t)
{
    token_unref(t);
}

int ctrio__token_create(ctrio__run *r)
{
    ctrio_token *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    ctrio__pool_init(&t->pool);
    atomic_init(&t->refs, 1);
    t->run = r;
    t->io = &r->io;
    r->token = t;
    return 0;
}

int ctrio__token_post_locked(ctrio_token *t, ctrio__post *p)
{
    if (t->closed)
        return -ESHUTDOWN;
    p->next = NULL;
    if (t->tail)
        t->tail->next = p;
    else
        t->head = p;
    t->tail = p;
    ctrio__io_wake(t->io); /* sends one only if none is on its way (io.c) */
    return 0;
}

int ctrio__token_post(ctrio_token *t, ctrio__post *p)
{
    pthread_mutex_lock(&t->mu);
    int rc = ctrio__token_post_locked(t, p);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static ctrio__post *take_all(ctrio_token *t)
{
    pthread_mutex_lock(&t->mu);
    ctrio__post *p = t->head;
    t->head = t->tail = NULL;
    pthread_mutex_unlock(&t->mu);
    return p;
}

static void run_posts(ctrio__post *p)
{
    while (p) {
        ctrio__post *next = p->next;
        p->fn(p); /* may free p */
        p = next;
    }
}

void ctrio__token_drain(ctrio__run *r)
{
    run_posts(take_all(r->token));
}

/* The run is over: refuse new posts, run what was posted, send the idle
 * workers home and wait until they have left (busy ones, running abandoned
 * calls, leave when their call returns). Idempotent. */
void ctrio__token_close(ctrio__run *r)
{
    ctrio_token *t = r->token;
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->closed = true;
    ctrio__pool_close_locked(&t->pool, &t->mu);
    pthread_mutex_unlock(&t->mu);
    run_posts(take_all(t));
    if (r->ntasks == 0 && !r->rq_head) {
        t->run = NULL;
        r->token = NULL;
        token_unref(t);
    }
}

/* ---- public ------------------------------------------------------------- */

ctrio_token *ctrio_current_token(void)
{
    ctrio__run *r = ctrio__tls_run;
    return r ? r->token : NULL;
}

typedef struct user_post {
    ctrio__post post;
    void (*fn)(void *);
    void *arg;
} user_post;

static void run_user_post(ctrio__post *p)
{
    user_post *u = (user_post *)p;
    void (*fn)(void *) = u->fn;
    void *arg = u->arg;
    free(u);
    fn(arg);
}

int ctrio_token_run_sync_soon(ctrio_token *t, void (*fn)(void *), void *arg)
{
    if (!t || !fn)
        return -EINVAL;
    user_post *u = malloc(sizeof *u);
    if (!u)
        return -ENOMEM;
    u->post.fn = run_user_post;
    u->fn = fn;
    u->arg = arg;
    int rc = ctrio__token_post(t, &u->post);
    if (rc < 0)
        free(u);
    return rc;
}

void ctrio_token_retain(ctrio_token *t)
{
    if (t)
        ctrio__token_ref(t);
}

void ctrio_token_release(ctrio_token *t)
{
    if (t)
        token_unref(t);
}
