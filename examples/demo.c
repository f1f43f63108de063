/*
 * demo.c — `make demo`: a short, narrated tour of what ctrio does today.
 *
 * Each scene is a few lines of ordinary-looking C: tasks that block, a
 * nursery that waits for them and never loses an error, cancel scopes and
 * deadlines instead of timeouts, blocking work in a thread, a channel
 * between tasks, and a hundred thousand tasks cancelled at once.
 */
#include <ctrio.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double t0;
static void say(const char *fmt, const char *arg)
{
    printf("  [%6.3f s] ", ctrio_current_time() - t0);
    printf(fmt, arg);
    putchar('\n');
}

/* ---- scene 1: a nursery never loses a task or an error ---- */
static int worker(void *arg)
{
    const char *name = arg;
    int rc = ctrio_sleep(0.3);
    if (rc == -ECANCELED) {
        say("%s: cancelled, unwinding cleanly", name);
        return rc;
    }
    say("%s: finished", name);
    return 0;
}

static int faulty(void *arg)
{
    (void)arg;
    ctrio_sleep(0.1);
    say("%s: fails with -EIO after 0.1 s", "faulty");
    return -EIO;
}

static int scene_nursery(void)
{
    puts("\n1. A nursery: three tasks, one fails; its siblings are cancelled and the");
    puts("   nursery returns the failure to its parent.");
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, worker, "worker A");
    ctrio_start_soon(&n, worker, "worker B");
    ctrio_start_soon(&n, faulty, NULL);
    int rc = ctrio_nursery_close(&n, 0);
    say("nursery returned %s", ctrio_strerror(rc));
    return rc == -EIO ? 0 : -1;
}

/* ---- scene 2: deadlines ---- */
static int scene_deadlines(void)
{
    puts("\n2. Cancel scopes instead of timeouts: move_on_after gives up quietly,");
    puts("   fail_after turns the same expiry into -ETIMEDOUT, a shield keeps it out.");
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 0.05);
    int rc = ctrio_sleep(10);
    rc = ctrio_cancel_scope_close(&cs, rc);
    say("move_on_after(0.05) around sleep(10): rc=%s", ctrio_strerror(rc));

    ctrio_fail_after(&cs, 0.05);
    rc = ctrio_cancel_scope_close(&cs, ctrio_sleep(10));
    say("fail_after(0.05) around sleep(10): rc=%s", ctrio_strerror(rc));

    ctrio_cancel_scope outer, shield;
    ctrio_move_on_after(&outer, 0.02);
    ctrio_cancel_scope_open(&shield);
    ctrio_cancel_scope_set_shield(&shield, true);
    rc = ctrio_sleep(0.06); /* the outer deadline passes meanwhile */
    ctrio_cancel_scope_close(&shield, rc);
    say("a shielded sleep(0.06) under a 0.02 s deadline: %s", ctrio_strerror(rc));
    rc = ctrio_cancel_scope_close(&outer, ctrio_checkpoint());
    say("...and the next checkpoint outside the shield sees the deadline: caught=%s",
        ctrio_cancel_scope_cancelled_caught(&outer) ? "yes" : "no");
    return 0;
}

/* ---- scene 3: blocking work in a thread ---- */
static int blocking_work(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 80 * 1000 * 1000};
    nanosleep(&ts, NULL); /* stands for a blocking library call */
    return 7;
}

static int scene_threads(void)
{
    puts("\n3. Blocking calls go to a worker thread; the run keeps going meanwhile.");
    int rc = ctrio_to_thread_run_sync(blocking_work, NULL, 0);
    say("to_thread_run_sync returned %s", rc == 7 ? "7 (the function's result)" : "?");
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 0.01);
    rc = ctrio_to_thread_run_sync(blocking_work, NULL, CTRIO_ABANDON_ON_CANCEL);
    rc = ctrio_cancel_scope_close(&cs, rc);
    say("with CTRIO_ABANDON_ON_CANCEL and a 0.01 s deadline: gave up at once (rc=%s)",
        ctrio_strerror(rc));
    return 0;
}

/* ---- scene 4: a channel between tasks ---- */
static int producer(void *arg)
{
    ctrio_send_channel *tx = arg;
    for (int i = 1; i <= 5; i++)
        if (ctrio_channel_send(tx, &i) < 0)
            break;
    ctrio_send_channel_close(tx);
    return 0;
}

static int scene_channel(void)
{
    puts("\n4. A memory channel with no buffer: each send meets a receive.");
    ctrio_send_channel *tx;
    ctrio_receive_channel *rx;
    ctrio_open_memory_channel(sizeof(int), 0, &tx, &rx);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, producer, tx);
    int v, sum = 0, got = 0;
    while (ctrio_channel_receive(rx, &v) == 1) {
        sum += v;
        got++;
    }
    ctrio_receive_channel_close(rx);
    ctrio_nursery_close(&n, 0);
    char msg[64];
    snprintf(msg, sizeof msg, "%d values, sum %d, then end of channel", got, sum);
    say("received %s", msg);
    return 0;
}

/* ---- scene 5: many tasks ---- */
static int sleeper(void *arg)
{
    (void)arg;
    return ctrio_sleep_forever();
}

static int scene_many(void)
{
    enum { N = 100000 };
    puts("\n5. 100,000 tasks asleep at once, then the whole nursery cancelled.");
    double t = ctrio_current_time();
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < N; i++)
        ctrio_start_soon(&n, sleeper, NULL);
    ctrio_wait_all_tasks_blocked(0);
    double started = ctrio_current_time() - t;
    t = ctrio_current_time();
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    int rc = ctrio_nursery_close(&n, 0);
    char msg[128];
    snprintf(msg, sizeof msg, "started and blocked in %.0f ms, all cancelled and reaped in %.0f ms (rc=%d)",
             started * 1e3, (ctrio_current_time() - t) * 1e3, rc);
    say("%s", msg);
    return 0;
}

static int tour(void *arg)
{
    (void)arg;
    t0 = ctrio_current_time();
    int rc = scene_nursery();
    if (!rc)
        rc = scene_deadlines();
    if (!rc)
        rc = scene_threads();
    if (!rc)
        rc = scene_channel();
    if (!rc)
        rc = scene_many();
    printf("\nDone in %.2f s. The socket layer and the TCP echo-server demo come next (see README).\n",
           ctrio_current_time() - t0);
    return rc;
}

int main(void)
{
    puts("ctrio: Trio's structured concurrency in C - a tour of the runtime core");
    int rc = ctrio_run(tour, NULL);
    if (rc != 0)
        fprintf(stderr, "demo failed: %s\n", ctrio_strerror(rc));
    return rc == 0 ? 0 : 1;
}
