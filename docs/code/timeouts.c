/* docs-test: run
 * timeouts.c: cancel scopes. move_on_after gives up quietly; fail_after turns
 * its own timeout into -ETIMEDOUT; the -ECANCELED a scope caused stops at that
 * scope's close. */
#include <ctrio.h>
#include <errno.h>
#include <stdio.h>

static int main_task(void *arg)
{
    (void)arg;
    /* [move_on] */
    ctrio_cancel_scope scope;
    ctrio_move_on_after(&scope, 0.1);
    int rc = ctrio_sleep(10); /* -ECANCELED after 0.1 s */
    printf("sleep returned %s\n", ctrio_strerror(rc));
    rc = ctrio_cancel_scope_close(&scope, rc); /* the scope's own: 0 */
    printf("the scope returned %d; cancelled_caught: %d\n", rc,
           ctrio_cancel_scope_cancelled_caught(&scope));
    /* [move_on] */
    if (rc != 0)
        return rc;

    /* [fail_after] */
    ctrio_fail_after(&scope, 0.1);
    rc = ctrio_sleep(10);
    rc = ctrio_cancel_scope_close(&scope, rc);
    printf("fail_after: %s\n", ctrio_strerror(rc)); /* Connection timed out */
    /* [fail_after] */
    return rc == -ETIMEDOUT ? 0 : -EPROTO;
}

int main(void)
{
    return ctrio_run(main_task, NULL) == 0 ? 0 : 1;
}
