/*
 * token.h — the token's layout, shared by token.c and thread.c.
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

struct ctrio_token {
    pthread_mutex_t mu;
    ctrio__post *head, *tail;
    bool closed;
    _Atomic long refs;
    ctrio__run *run; /* only the run's thread reads it */
    ctrio__io *io;
    /* the worker pool (thread.c), under mu */
    pthread_cond_t pool_cv, drained_cv;
    ctrio__job *jobs_head, *jobs_tail;
    size_t njobs, nthreads, nidle, nbusy;
};

/* Queue p for the run's thread; -ESHUTDOWN once the run has ended. */
int ctrio__token_post(ctrio_token *t, ctrio__post *p);
void ctrio__token_ref(ctrio_token *t);
void ctrio__token_unref(ctrio_token *t);

#endif
