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
#include "dns_lookup.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- the program (the flow is in dns_lookup_flow.c) ------------------------- */

int main(int argc, char **argv)
{
    dns_lookup_options o = {5.0, 0, NULL, stdout, stderr};
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
    return ctrio_run(dns_lookup_flow, &o) == 0 ? 0 : 1;
}
