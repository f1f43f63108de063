/*
 * dns_lookup.h — dns_lookup's flow as a function, so that tests/test_sweep.c
 * sweeps the program's own code (issue #8, section 5); dns_lookup.c keeps
 * the command line.
 */
#ifndef CTRIO_EXAMPLE_DNS_LOOKUP_H
#define CTRIO_EXAMPLE_DNS_LOOKUP_H

#include <ctrio.h>

#include <stdio.h>

typedef struct dns_lookup_options {
    double timeout; /* for all the lookups together */
    int count;
    char **names;
    FILE *out, *err; /* the answers; the summary (NULL: none) */
} dns_lookup_options;

/* Look every name up at once, printing "NAME  ADDRESS" or "NAME  error: ..."
 * lines on out as answers come. Returns 0 if every name was found, -ENOENT
 * if one was not, or another error (-ENOMEM...). */
int dns_lookup_flow(void *options);

#endif
