/*
 * overflow.c — what happens when a task's stack overflows: the task runs into
 * its guard (stack.c), and a SIGSEGV handler, running on an alternate stack
 * since the task's has no room left, names the task and its stack size and
 * aborts. A fault anywhere else goes to whatever handler was there before us.
 * The handler is process-wide (signal dispositions are), installed under a
 * lock and checked at every run; the alternate stack is the thread's.
 */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static struct sigaction prev_segv;
static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;

static void put_str(char *buf, size_t *n, size_t cap, const char *s)
{
    while (*s && *n + 1 < cap)
        buf[(*n)++] = *s++;
}

static void put_num(char *buf, size_t *n, size_t cap, uint64_t v)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k && *n + 1 < cap)
        buf[(*n)++] = tmp[--k];
}

static void segv_handler(int sig, siginfo_t *info, void *uctx)
{
    ctrio__run *r = ctrio__tls_run;
    ctrio__task *t = r ? r->current : NULL;
    char *addr = info->si_addr;
    if (t && t->stack && addr >= t->stack->map && addr < t->stack->map + t->stack->guard + 4096) {
        char msg[256];
        size_t n = 0;
        put_str(msg, &n, sizeof msg, "ctrio: stack overflow in task ");
        put_num(msg, &n, sizeof msg, t->id);
        if (t->name) {
            put_str(msg, &n, sizeof msg, " (");
            put_str(msg, &n, sizeof msg, t->name);
            put_str(msg, &n, sizeof msg, ")");
        }
        put_str(msg, &n, sizeof msg, ": its stack of ");
        put_num(msg, &n, sizeof msg, r->stacks.stack_size);
        put_str(msg, &n, sizeof msg, " bytes is exhausted; raise ctrio_config.stack_size\n");
        ssize_t w = write(2, msg, n);
        (void)w;
        signal(SIGSEGV, SIG_DFL);
        abort();
    }
    /* Not ours: hand it to whoever was there before us. */
    if (prev_segv.sa_flags & SA_SIGINFO) {
        if (prev_segv.sa_sigaction) {
            prev_segv.sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (prev_segv.sa_handler != SIG_DFL && prev_segv.sa_handler != SIG_IGN) {
        prev_segv.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL); /* returning re-runs the fault: default action */
}

static bool handler_is_ours(void)
{
    struct sigaction cur;
    return sigaction(SIGSEGV, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
           cur.sa_sigaction == segv_handler;
}

/* At every run: someone may have replaced the handler since the last one (an
 * application's own, a test framework restoring its saved disposition). Then
 * install it again, chaining to whatever is there now. */
void ctrio__stack_guard_install_handler(void)
{
    if (handler_is_ours())
        return;
    pthread_mutex_lock(&handler_lock);
    if (!handler_is_ours()) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = segv_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        /* Never chain to ourselves (our handler put back with signal(),
         * without SA_SIGINFO): keep the previous one then. */
        if (sigaction(SIGSEGV, &sa, &old) == 0 &&
            (void *)old.sa_sigaction != (void *)segv_handler)
            prev_segv = old;
    }
    pthread_mutex_unlock(&handler_lock);
}

/* The handler runs on an alternate stack of this thread: the faulting stack
 * has no room left. Keep the thread's previous one, if it had one. */
int ctrio__altstack_enter(void **saved)
{
    stack_t old;
    *saved = NULL;
    if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE))
        return 0; /* the thread has one already: use it */
    size_t size = 64 * 1024;
    void *mem = malloc(size);
    if (!mem)
        return -ENOMEM;
    stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) < 0) {
        free(mem);
        return -errno;
    }
    *saved = mem;
    return 0;
}

void ctrio__altstack_leave(void *saved)
{
    if (!saved)
        return;
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(saved);
}
