/*
 * token.h — the token's layout and its worker pool's, shared by token.c and
 * thread.c.
 */
#ifndef CTRIO_TOKEN_H
#define CTRIO_TOKEN_H

#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>

/* A callback for the run's thread; embedded in whatever posts it. */
typedef struct ctrio__post {
    struct ctrio__post *next;
    void (*fn)(struct ctrio__post *self);
} ctrio__post;

typedef struct ctrio__job ctrio__job;
typedef struct ctrio__worker ctrio__worker;

/* The run's worker threads (thread.c). They live under the token's mutex:
 * a worker holds a reference to the token, takes its jobs under that mutex
 * and posts their results through the token, and the pool ends when the
 * token closes. */
typedef struct ctrio__pool {
    pthread_cond_t cv;         /* a job was queued, or the token closed */
    pthread_cond_t drained_cv; /* a worker left */
    ctrio__job *jobs_head, *jobs_tail;
    ctrio__worker *exited; /* workers that left, to be joined */
    bool reaped;           /* closed and joined: later leavers detach */
    size_t njobs, nthreads, nidle, nbusy;
    double idle_seconds; /* how long a worker waits for work before it leaves */
} ctrio__pool;

struct ctrio_token {
    pthread_mutex_t mu;
    ctrio__post *head, *tail;
    bool closed;
    _Atomic long refs;
    ctrio__run *run; /* only the run's thread reads it */
    ctrio__io *io;
    ctrio__pool pool; /* under mu */
};

CTRIO__HIDDEN void ctrio__pool_init(ctrio__pool *p);
CTRIO__HIDDEN void ctrio__pool_fini(ctrio__pool *p);
/* With mu held and the token just closed: send the idle workers home, wait
 * until they have left and join them, so that none is still ending when the
 * run returns (busy ones detach and leave when their call returns). mu is
 * released while joining. */
CTRIO__HIDDEN void ctrio__pool_close_locked(ctrio__pool *p, pthread_mutex_t *mu);

/* Queue p for the run's thread; -ESHUTDOWN once the run has ended. */
int ctrio__token_post(ctrio_token *t, ctrio__post *p);
/* The same with t->mu held. */
int ctrio__token_post_locked(ctrio_token *t, ctrio__post *p);
void ctrio__token_ref(ctrio_token *t);
void ctrio__token_unref(ctrio_token *t);

#endif
