/*
 * log.c — the library's messages: misuse, and notes such as serve's accept
 * retries. A library must let its user decide where they go, and it may keep
 * no global state: the hook is the run's (ctrio_config.log). Without a hook,
 * or with no run on this thread, misuse (CTRIO_LOG_ERROR) goes to stderr as
 * "ctrio: <message>" and the rest is dropped: an EMFILE-bound server printed
 * a line per 100 ms retry before.
 */
#include "internal.h"

#include <stdarg.h>

/* Long enough for every message the library writes (the longest is about
 * 160 characters); a longer one is cut, never overflows. */
#define CTRIO__LOG_MAX 512

void ctrio__vlog(int level, const char *fmt, va_list ap)
{
    ctrio__run *r = ctrio__tls_run;
    bool hooked = r && r->log;
    if (level < (hooked ? r->log_level : CTRIO_LOG_ERROR))
        return;
    char msg[CTRIO__LOG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (hooked)
        r->log(level, msg, r->log_arg);
    else
        fprintf(stderr, "ctrio: %s\n", msg); /* one call: one line, not interleaved */
}

void ctrio__log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctrio__vlog(level, fmt, ap);
    va_end(ap);
}

int ctrio__misuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctrio__vlog(CTRIO_LOG_ERROR, fmt, ap);
    va_end(ap);
    return -EPERM;
}

ctrio__task *ctrio__no_task(const char *fn)
{
    ctrio__misuse("%s called outside a ctrio task (no ctrio_run on this thread, "
                  "or from a token callback)",
                  fn);
    return NULL;
}

void ctrio__assert_fail(const char *cond, const char *file, int line, const char *fn)
{
    ctrio__log(CTRIO_LOG_ERROR, "assertion failed: %s (%s:%d, %s): aborting", cond, file, line,
               fn);
    abort();
}
