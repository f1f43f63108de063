/*
 * dns_lookup.c — look up many names at once, all under one deadline.
 *
 *   dns_lookup [-t SECONDS] NAME...      (default deadline: 5 s)
 *
 * Prints "NAME  ADDRESS" for each address found, as the answers come in,
 * and "NAME  error: ..." for a name that failed or had no answer before the
 * deadline. Exits 0 if every name was found, 1 otherwise.
 *
 * What it shows:
 *  - A nursery runs one lookup task per name: the lookups overlap, so the
 *    whole run takes as long as the slowest one, not their sum.
 *  - fail_after puts one deadline on the whole group: when it passes, every
 *    lookup still running is cancelled (ctrio_getaddrinfo abandons its worker
 *    thread at once) and the scope reports -ETIMEDOUT.
 *  - ctrio_getaddrinfo answers numeric names ("127.0.0.1", "::1") at once,
 *    without a thread; ctrio_sockaddr_format prints any address.
 */
#include <ctrio.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct lookup {
    const char *name;
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
        printf("%-24s error: %s\n", l->name, ctrio_strerror(rc));
        return 0; /* one name failing does not stop the others */
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char text[128];
        address_text(ai, text, sizeof text);
        printf("%-24s %s\n", l->name, text);
    }
    fflush(stdout);
    ctrio_freeaddrinfo(res);
    return 0;
}

typedef struct options {
    double timeout;
    int count;
    char **names;
} options;

static int main_task(void *arg)
{
    options *o = arg;
    lookup *ls = calloc((size_t)o->count, sizeof *ls);
    if (!ls)
        return -ENOMEM;
    double start = ctrio_current_time();
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, o->timeout);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < o->count; i++) {
        ls[i].name = o->names[i];
        ctrio_start_soon(&n, lookup_one, &ls[i]);
    }
    int rc = ctrio_nursery_close(&n, 0);
    rc = ctrio_cancel_scope_close(&deadline, rc);

    int failed = 0;
    for (int i = 0; i < o->count; i++) {
        if (!ls[i].answered)
            printf("%-24s error: no answer within %g s\n", ls[i].name, o->timeout);
        if (!ls[i].answered || ls[i].rc < 0)
            failed++;
    }
    fprintf(stderr, "%d name%s looked up in %.3f s, %d failed%s\n", o->count,
            o->count == 1 ? "" : "s", ctrio_current_time() - start, failed,
            rc == -ETIMEDOUT ? " (deadline reached)" : "");
    free(ls);
    return failed ? -ENOENT : rc;
}

int main(int argc, char **argv)
{
    options o = {5.0, 0, NULL};
    int opt;
    char *end;
    while ((opt = getopt(argc, argv, "t:")) != -1) {
        if (opt != 't' || (o.timeout = strtod(optarg, &end), *end) || o.timeout < 0) {
            fprintf(stderr, "usage: %s [-t SECONDS] NAME...\n", argv[0]);
            return 2;
        }
    }
    o.count = argc - optind;
    o.names = argv + optind;
    if (o.count == 0) {
        fprintf(stderr, "usage: %s [-t SECONDS] NAME...\n", argv[0]);
        return 2;
    }
    return ctrio_run(main_task, &o) == 0 ? 0 : 1;
}
