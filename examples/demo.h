/*
 * demo.h — the demo's tour as a function, so that tests/test_sweep.c sweeps
 * the program's own code (issue #8, section 5); demo.c keeps main().
 */
#ifndef CTRIO_EXAMPLE_DEMO_H
#define CTRIO_EXAMPLE_DEMO_H

#include <ctrio.h>

#include <stdio.h>

typedef struct demo_options {
    int clients;        /* scene 2: clients connecting at once */
    int chatty_clients; /* scene 4: clients talking while the server is cancelled */
    double idle_limit;  /* scene 3: the server hangs up after this much silence */
    double settle;      /* scene 4: how long the clients talk before the cancel (0: 0.2 s) */
    double line_pause;  /* scene 4: each client's pause between lines (0: 0.05 s) */
    int scenes;         /* the scenes played: 1 and 2, up to 3, or up to 4 */
    FILE *out;          /* the narration */
} demo_options;

/* Run the tour; 0 when every scene played worked (then "Done in" ends the
 * narration), or the first error. */
int demo_tour(void *options);

#endif
