/* docs-test: run
 * tasks.c: the tutorial's first program. A parent task starts two children in
 * a nursery; the nursery waits for both before the parent goes on. */
#include <ctrio.h>
#include <stdio.h>

static int child1(void *arg)
{
    (void)arg;
    printf("  child1: started! sleeping now...\n");
    int rc = ctrio_sleep(0.2);
    printf("  child1: exiting!\n");
    return rc;
}

static int child2(void *arg)
{
    (void)arg;
    printf("  child2: started! sleeping now...\n");
    int rc = ctrio_sleep(0.2);
    printf("  child2: exiting!\n");
    return rc;
}

static int parent(void *arg)
{
    (void)arg;
    printf("parent: started!\n");
    ctrio_nursery nursery;
    ctrio_nursery_open(&nursery);

    printf("parent: spawning child1...\n");
    int rc = ctrio_start_soon(&nursery, child1, NULL);
    if (rc == 0) {
        printf("parent: spawning child2...\n");
        rc = ctrio_start_soon(&nursery, child2, NULL);
    }

    printf("parent: waiting for children to finish...\n");
    rc = ctrio_nursery_close(&nursery, rc); /* waits for both children */
    printf("parent: all done!\n");
    return rc;
}

int main(void)
{
    return ctrio_run(parent, NULL) == 0 ? 0 : 1;
}
