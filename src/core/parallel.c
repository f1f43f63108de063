/*
 * parallel.c — groups of runs: ctrio_run_parallel (one run per thread, each
 * pinned to a CPU), the run index, cancelling the group, and the state the
 * runs of a group share (the port of port-0 SO_REUSEPORT listeners).
 *
 * Each run stays a plain ctrio_run on its own thread: tasks never move
 * between runs, and nothing of a run's scheduler is shared. The group only
 * touches runs through their tokens (token.c), which other threads may
 * already use: a cancellation is a post that cancels the run's main scope
 * on the run's own thread, as a token callback.
 *
 * Every run starts with a first task of ours that records the run's token
 * in the group and waits at a barrier until every run has done so: no main
 * starts before every run exists, so a failure in any of them can cancel
 * all the others (Trio's nursery: the first child to fail cancels its
 * siblings). The calling thread runs no run: it waits and joins. That keeps
 * its CPU affinity and signal mask as they were (run threads are pinned and
 * inherit the mask), and makes every run alike.
 */
#include "internal.h"
#include "token.h"

#include <pthread.h>
#include <sched.h>

typedef struct ctrio__group ctrio__group;

typedef struct member {
    ctrio__post cancel_post; /* posted to the run's token at most once */
    atomic_bool cancel_posted;
    ctrio__group *g;
    int index;
    int cpu; /* -1: not pinned */
    bool arrived; /* reached the barrier (under g->mu) */
    int rc;       /* what its ctrio_run_with returned */
    pthread_t thread;
    ctrio_token *token; /* retained at the barrier, released at the end */
} member;

/* A port published by the first run to bind a port-0 SO_REUSEPORT listener. */
typedef struct shared_port {
    struct shared_port *next;
    char *host; /* NULL: every local address */
    int port;
} shared_port;

struct ctrio__group {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const ctrio_config *cfg;
    ctrio_fn main;
    void *arg;
    int n, narrived;
    bool go;        /* every run arrived: mains may start */
    bool aborted;   /* a run could not start: no main starts */
    bool cancelled; /* the group was cancelled: -ECANCELED is no failure */
    int first_rc;   /* the first failure, or 0 */
    shared_port *ports;
    member members[];
};

/* ---- cancellation ------------------------------------------------------- */

/* Runs on the member's thread, between batches (a token callback). */
static void cancel_main(ctrio__post *p)
{
    (void)p;
    ctrio__run *r = ctrio__tls_run;
    if (r)
        ctrio_cancel_scope_cancel(&r->root_scope);
}

/* Cancel the main scope of every run that reached the barrier: through its
 * token, so from any thread. A run already over refuses the post (-ESHUTDOWN):
 * nothing left to cancel. Called with g->mu held (lock order: group, then
 * token; a token callback never takes the group's lock). */
static void cancel_all_locked(ctrio__group *g)
{
    g->cancelled = true;
    for (int i = 0; i < g->n; i++) {
        member *m = &g->members[i];
        if (!m->token || atomic_exchange(&m->cancel_posted, true))
            continue;
        m->cancel_post.fn = cancel_main;
        (void)ctrio__token_post(m->token, &m->cancel_post);
    }
}

int ctrio_cancel_parallel_group(void)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r)
        return ctrio__misuse("ctrio_cancel_parallel_group called outside a run");
    ctrio__group *g = r->group;
    if (!g) { /* a lone run is a group of one */
        ctrio_cancel_scope_cancel(&r->root_scope);
        return 0;
    }
    pthread_mutex_lock(&g->mu);
    cancel_all_locked(g);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

int ctrio_current_run_index(void)
{
    ctrio__run *r = ctrio__tls_run;
    return r ? r->run_index : -EPERM;
}

/* ---- a member's run ----------------------------------------------------- */

/* Wait until every run has arrived; false if the group aborted its start. */
static bool barrier(member *m, ctrio_token *t)
{
    ctrio__group *g = m->g;
    pthread_mutex_lock(&g->mu);
    ctrio__token_ref(t);
    m->token = t;
    m->arrived = true;
    if (++g->narrived == g->n) {
        g->go = true;
        pthread_cond_broadcast(&g->cv);
    }
    while (!g->go && !g->aborted)
        pthread_cond_wait(&g->cv, &g->mu);
    bool go = !g->aborted;
    pthread_mutex_unlock(&g->mu);
    return go;
}

/* The run's first task: join the group, wait for the others, run main. The
 * barrier blocks the thread, which is fine: nothing else runs in this run
 * yet. */
static int member_main(void *p)
{
    member *m = p;
    ctrio__run *r = ctrio__tls_run;
    r->group = m->g;
    r->run_index = m->index;
    r->run_cpu = m->cpu;
    if (!barrier(m, r->token))
        return -ECANCELED;
    return m->g->main(m->g->arg);
}

/* A run ended with rc. The first failure is the group's result and cancels
 * the others; once the group is cancelled, -ECANCELED is the expected end. A
 * run that never reached the barrier (its setup failed) aborts the start. */
static void member_done(member *m, int rc)
{
    ctrio__group *g = m->g;
    pthread_mutex_lock(&g->mu);
    m->rc = rc;
    if (!m->arrived) {
        if (!g->first_rc)
            g->first_rc = rc < 0 ? rc : -ECANCELED;
        g->aborted = true;
        pthread_cond_broadcast(&g->cv);
    } else if (rc < 0 && !g->aborted && !(rc == -ECANCELED && g->cancelled)) {
        if (!g->first_rc)
            g->first_rc = rc;
        cancel_all_locked(g);
    }
    pthread_mutex_unlock(&g->mu);
}

static void *member_thread(void *p)
{
    member *m = p;
    member_done(m, ctrio_run_with(m->g->cfg, member_main, m));
    return NULL;
}

/* ---- the group ---------------------------------------------------------- */

/* The k-th CPU (wrapping around) of the set this process may use. */
static int nth_cpu(const cpu_set_t *allowed, int ncpu, int k)
{
    k %= ncpu;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, allowed) && k-- == 0)
            return c;
    return -1;
}

static int start_member(member *m)
{
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err)
        return -err;
    if (m->cpu >= 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(m->cpu, &one);
        err = pthread_attr_setaffinity_np(&attr, sizeof one, &one);
    }
    if (!err)
        err = pthread_create(&m->thread, &attr, member_thread, m);
    pthread_attr_destroy(&attr);
    return -err;
}

/* Start every run; if thread k cannot be made, abort the start (the k
 * started leave the barrier without running main) and return its -errno. */
static int start_all(ctrio__group *g, int *started)
{
    int rc = 0;
    for (*started = 0; *started < g->n; (*started)++) {
        rc = start_member(&g->members[*started]);
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        pthread_mutex_lock(&g->mu);
        g->aborted = true;
        cancel_all_locked(g); /* none passed the barrier: for symmetry only */
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
    }
    return rc;
}

static ctrio__group *group_new(int n, const ctrio_config *cfg, ctrio_fn fn, void *arg,
                               const cpu_set_t *allowed, int ncpu)
{
    ctrio__group *g = calloc(1, sizeof *g + (size_t)n * sizeof(member));
    if (!g)
        return NULL;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->cfg = cfg;
    g->main = fn;
    g->arg = arg;
    g->n = n;
    for (int i = 0; i < n; i++) {
        member *m = &g->members[i];
        m->g = g;
        m->index = i;
        m->cpu = cfg && cfg->unpinned ? -1 : nth_cpu(allowed, ncpu, i);
        atomic_init(&m->cancel_posted, false);
    }
    return g;
}

static void group_free(ctrio__group *g)
{
    for (int i = 0; i < g->n; i++)
        if (g->members[i].token)
            ctrio__token_unref(g->members[i].token);
    while (g->ports) {
        shared_port *p = g->ports;
        g->ports = p->next;
        free(p->host);
        free(p);
    }
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

int ctrio_run_parallel(int nthreads, const ctrio_config *cfg, ctrio_fn main_fn, void *arg)
{
    return ctrio_run_parallel_results(nthreads, cfg, main_fn, arg, NULL);
}

int ctrio_run_parallel_results(int nthreads, const ctrio_config *cfg, ctrio_fn main_fn, void *arg,
                               int *results)
{
    if (!main_fn || nthreads < 0 || (results && nthreads == 0))
        return -EINVAL;
    if (ctrio__tls_run)
        return ctrio__misuse("ctrio_run_parallel called inside a run");
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0)
        return -errno;
    int ncpu = CPU_COUNT(&allowed);
    if (ncpu < 1)
        return -ENODEV; /* not reachable on Linux: some CPU runs us */
    if (nthreads == 0)
        nthreads = ncpu;
    ctrio__group *g = group_new(nthreads, cfg, main_fn, arg, &allowed, ncpu);
    if (!g)
        return -ENOMEM;
    int started;
    int rc = start_all(g, &started);
    for (int i = 0; i < started; i++)
        pthread_join(g->members[i].thread, NULL);
    if (rc == 0)
        rc = g->first_rc;
    for (int i = 0; results && i < nthreads; i++)
        results[i] = i < started ? g->members[i].rc : rc; /* never started: the start's error */
    group_free(g);
    return rc;
}

/* ---- state shared by the runs of a group --------------------------------- */

static bool same_host(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static shared_port *find_port(ctrio__group *g, const char *host)
{
    for (shared_port *p = g->ports; p; p = p->next)
        if (same_host(p->host, host))
            return p;
    return NULL;
}

int ctrio__group_port_get(const char *host)
{
    ctrio__run *r = ctrio__tls_run;
    ctrio__group *g = r ? r->group : NULL;
    if (!g)
        return 0;
    pthread_mutex_lock(&g->mu);
    shared_port *p = find_port(g, host);
    int port = p ? p->port : 0;
    pthread_mutex_unlock(&g->mu);
    return port;
}

/* The lock is never held across a socket call: two runs may both bind a port
 * 0; the first to publish wins and the other rebinds on the winner's port. */
int ctrio__group_port_publish(const char *host, int port)
{
    ctrio__run *r = ctrio__tls_run;
    ctrio__group *g = r ? r->group : NULL;
    if (!g)
        return port;
    int rc = port;
    pthread_mutex_lock(&g->mu);
    shared_port *p = find_port(g, host);
    if (p) {
        rc = p->port;
        goto out;
    }
    p = calloc(1, sizeof *p);
    if (!p || (host && !(p->host = strdup(host)))) {
        free(p);
        rc = -ENOMEM;
        goto out;
    }
    p->port = port;
    p->next = g->ports;
    g->ports = p;
out:
    pthread_mutex_unlock(&g->mu);
    return rc;
}

int ctrio__run_cpu(void)
{
    ctrio__run *r = ctrio__tls_run;
    if (r && r->run_cpu >= 0)
        return r->run_cpu;
    int cpu = sched_getcpu();
    return cpu < 0 ? -errno : cpu;
}
