/*
 * xchan_bench.c — cross-run channel messages per second (issue #12), run by
 * bench/xchan_bench.sh beside a Go channel (bench/xchan_go).
 *
 *   xchan_bench MODE CAPACITY N
 *
 * MODE:
 *   ctrio    two runs on two threads (pinned to CPUs 0 and 1 when there are
 *            two): one sends the ints 0..N-1 through a shared channel of
 *            CAPACITY, the other receives them (and checks the order)
 *   pthread  the same with two plain threads and a bounded ring under a
 *            pthread mutex and two condition variables (CAPACITY >= 1), the
 *            usual hand-written queue
 *   shared1  one run: a sending and a receiving task on a shared channel
 *            (what the mutex costs when both ends are in one run)
 *   memory   one run: the same on a memory channel (the lock-free path,
 *            whose speed the shared channel must not change)
 * Prints "MODE CAPACITY N SECONDS MSGS_PER_S CPU_SECONDS" (CPU: the process's
 * user + system time).
 */
#include <ctrio.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void pin(int cpu)
{
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2)
        return;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pthread_setaffinity_np(pthread_self(), sizeof one, &one);
}

static long n_msgs;
static int failed;

/* ---- ctrio ---------------------------------------------------------------- */

static ctrio_send_channel *tx;
static ctrio_receive_channel *rx;

static int producer(void *arg)
{
    (void)arg;
    for (long i = 0; i < n_msgs; i++)
        if (ctrio_channel_send(tx, &i) != 0)
            failed = 1;
    ctrio_send_channel_close(tx);
    return 0;
}

static int consumer(void *arg)
{
    (void)arg;
    long v, expect = 0;
    int rc;
    while ((rc = ctrio_channel_receive(rx, &v)) == 1)
        if (v != expect++)
            failed = 1;
    if (rc != 0 || expect != n_msgs)
        failed = 1;
    ctrio_receive_channel_close(rx);
    return 0;
}

typedef struct runner {
    ctrio_fn fn;
    int cpu;
} runner;

static void *run_thread(void *p)
{
    runner *r = p;
    pin(r->cpu);
    if (ctrio_run(r->fn, NULL) != 0)
        failed = 1;
    return NULL;
}

static void bench_ctrio_two_runs(void)
{
    runner a = {producer, 0}, b = {consumer, 1};
    pthread_t ta, tb;
    pthread_create(&tb, NULL, run_thread, &b);
    pthread_create(&ta, NULL, run_thread, &a);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
}

static int one_run_main(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, consumer, NULL);
    ctrio_start_soon(&n, producer, NULL);
    return ctrio_nursery_close(&n, 0);
}

/* ---- pthread mutex + condvar queue --------------------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    long *buf;
    size_t cap, head, count;
    int closed;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
       NULL, 0, 0, 0, 0};

static void *q_producer(void *arg)
{
    (void)arg;
    pin(0);
    for (long i = 0; i < n_msgs; i++) {
        pthread_mutex_lock(&q.mu);
        while (q.count == q.cap)
            pthread_cond_wait(&q.not_full, &q.mu);
        q.buf[(q.head + q.count) % q.cap] = i;
        q.count++;
        pthread_cond_signal(&q.not_empty);
        pthread_mutex_unlock(&q.mu);
    }
    pthread_mutex_lock(&q.mu);
    q.closed = 1;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
    return NULL;
}

static void *q_consumer(void *arg)
{
    (void)arg;
    pin(1);
    long expect = 0;
    for (;;) {
        pthread_mutex_lock(&q.mu);
        while (q.count == 0 && !q.closed)
            pthread_cond_wait(&q.not_empty, &q.mu);
        if (q.count == 0) {
            pthread_mutex_unlock(&q.mu);
            break;
        }
        long v = q.buf[q.head];
        q.head = (q.head + 1) % q.cap;
        q.count--;
        pthread_cond_signal(&q.not_full);
        pthread_mutex_unlock(&q.mu);
        if (v != expect++)
            failed = 1;
    }
    if (expect != n_msgs)
        failed = 1;
    return NULL;
}

static void bench_pthread(size_t cap)
{
    q.cap = cap;
    q.buf = calloc(cap, sizeof *q.buf);
    pthread_t ta, tb;
    pthread_create(&tb, NULL, q_consumer, NULL);
    pthread_create(&ta, NULL, q_producer, NULL);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    free(q.buf);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ctrio|pthread|shared1|memory CAPACITY N\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    size_t cap = strtoul(argv[2], NULL, 10);
    n_msgs = strtol(argv[3], NULL, 10);
    double t0 = now(), c0 = cpu_seconds();
    int rc = 0;
    if (strcmp(mode, "pthread") == 0) {
        if (cap == 0) {
            fprintf(stderr, "pthread: capacity 0 not supported\n");
            return 2;
        }
        bench_pthread(cap);
    } else if (strcmp(mode, "memory") == 0) {
        rc = ctrio_open_memory_channel(sizeof(long), cap, &tx, &rx);
        if (rc == 0)
            rc = ctrio_run(one_run_main, NULL);
    } else {
        rc = ctrio_open_shared_channel(sizeof(long), cap, &tx, &rx);
        if (rc == 0 && strcmp(mode, "ctrio") == 0)
            bench_ctrio_two_runs();
        else if (rc == 0 && strcmp(mode, "shared1") == 0)
            rc = ctrio_run(one_run_main, NULL);
        else if (rc == 0)
            rc = -EINVAL;
    }
    double secs = now() - t0, cpu = cpu_seconds() - c0;
    if (rc != 0 || failed) {
        fprintf(stderr, "%s: failed (%s)\n", mode, rc ? ctrio_strerror(rc) : "wrong elements");
        return 1;
    }
    printf("%s %zu %ld %.3f %.0f %.3f\n", mode, cap, n_msgs, secs, (double)n_msgs / secs, cpu);
    return 0;
}
