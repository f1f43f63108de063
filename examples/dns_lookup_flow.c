/*
 * dns_lookup_flow.c — dns_lookup's flow (see dns_lookup.c for what the
 * program does and shows), with its streams as parameters (dns_lookup.h).
 */
#include "dns_lookup.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

typedef struct lookup {
    const char *name;
    FILE *out;
    bool answered;
    int rc;
} lookup;

/* "127.0.0.1:0" -> "127.0.0.1", "[::1]:0" -> "::1": the address alone. */
static void address_text(const struct addrinfo *ai, char *buf, size_t size)
{
    if (ctrio_sockaddr_format(ai->ai_addr, ai->ai_addrlen, buf, size) < 0) {
        snprintf(buf, size, "?");
        return;
    }
    char *colon = strrchr(buf, ':');
    if (colon)
        *colon = '\0';
    if (buf[0] == '[')
        memmove(buf, buf + 1, strlen(buf)); /* drops '[' and keeps the '\0' */
    size_t len = strlen(buf);
    if (len && buf[len - 1] == ']')
        buf[len - 1] = '\0';
}

static int lookup_one(void *arg)
{
    lookup *l = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int rc = ctrio_getaddrinfo(l->name, NULL, &hints, &res);
    if (rc == -ECANCELED)
        return rc; /* the deadline: main_task reports it */
    l->answered = true;
    l->rc = rc;
    if (rc < 0) {
        fprintf(l->out, "%-24s error: %s\n", l->name, ctrio_strerror(rc));
        return 0; /* one name failing does not stop the others */
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char text[128];
        address_text(ai, text, sizeof text);
        fprintf(l->out, "%-24s %s\n", l->name, text);
    }
    fflush(l->out);
    ctrio_freeaddrinfo(res);
    return 0;
}

int dns_lookup_flow(void *arg)
{
    dns_lookup_options *o = arg;
    lookup *ls = calloc((size_t)o->count, sizeof *ls);
    if (!ls)
        return -ENOMEM;
    double start = ctrio_current_time();
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, o->timeout);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    int rc = 0;
    for (int i = 0; i < o->count && rc == 0; i++) {
        ls[i].name = o->names[i];
        ls[i].out = o->out;
        rc = ctrio_start_soon(&n, lookup_one, &ls[i]);
    }
    rc = ctrio_nursery_close(&n, rc);
    rc = ctrio_cancel_scope_close(&deadline, rc);

    int failed = 0;
    for (int i = 0; i < o->count; i++) {
        if (!ls[i].answered && rc == -ETIMEDOUT)
            fprintf(o->out, "%-24s error: no answer within %g s\n", ls[i].name, o->timeout);
        if (!ls[i].answered || ls[i].rc < 0)
            failed++;
    }
    if (o->err)
        fprintf(o->err, "%d name%s looked up in %.3f s, %d failed%s\n", o->count,
                o->count == 1 ? "" : "s", ctrio_current_time() - start, failed,
                rc == -ETIMEDOUT ? " (deadline reached)" : "");
    free(ls);
    /* Cancelled from outside (or a lookup could not start): that error, not
     * -ENOENT, so that a cancellation unwinds as one. */
    if (rc < 0 && rc != -ETIMEDOUT)
        return rc;
    return failed ? -ENOENT : rc;
}

