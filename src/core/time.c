/*
 * time.c — sleeping (trio.sleep, sleep_until, sleep_forever). As in Trio, a
 * sleep is a cancel scope with a deadline around a wait that only a
 * cancellation ends, so timers and cancellation share one mechanism.
 */
#include "internal.h"

#include <math.h>

int ctrio_sleep_forever(void)
{
    if (!ctrio__need_task("ctrio_sleep_forever"))
        return -EPERM;
    return ctrio__wait(ctrio__abort_always, NULL);
}

int ctrio_sleep_until(double deadline)
{
    if (!ctrio__need_task("ctrio_sleep_until"))
        return -EPERM;
    if (deadline != deadline)
        return -EINVAL;
    ctrio_cancel_scope cs;
    ctrio_move_on_at(&cs, deadline);
    int rc = ctrio__wait(ctrio__abort_always, NULL);
    return ctrio_cancel_scope_close(&cs, rc);
}

int ctrio_sleep(double seconds)
{
    ctrio__task *t = ctrio__need_task("ctrio_sleep");
    if (!t)
        return -EPERM;
    if (!(seconds >= 0))
        return -EINVAL;
    if (seconds == 0)
        return ctrio_checkpoint();
    return ctrio_sleep_until(ctrio_current_time() + seconds);
}
