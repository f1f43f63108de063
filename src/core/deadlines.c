/*
 * deadlines.c — the run's deadline heap: a binary min-heap of the open cancel
 * scopes that have a finite deadline, each scope knowing its own position so
 * that adding, moving and removing one are all O(log n). The scheduler looks
 * at the minimum once per turn to fire expired scopes and to bound its I/O
 * wait.
 */
#include "internal.h"

static inline void place(ctrio__heap *h, size_t i, ctrio_cancel_scope *cs)
{
    h->a[i] = cs;
    cs->heap_index = i;
}

static void sift_up(ctrio__heap *h, size_t i)
{
    ctrio_cancel_scope *cs = h->a[i];
    while (i > 1) {
        size_t p = i / 2;
        if (h->a[p]->deadline <= cs->deadline)
            break;
        place(h, i, h->a[p]);
        i = p;
    }
    place(h, i, cs);
    CTRIO__ASSERT(i == 1 || h->a[i / 2]->deadline <= cs->deadline);
}

static void sift_down(ctrio__heap *h, size_t i)
{
    ctrio_cancel_scope *cs = h->a[i];
    for (;;) {
        size_t c = 2 * i;
        if (c > h->n)
            break;
        if (c < h->n && h->a[c + 1]->deadline < h->a[c]->deadline)
            c++;
        if (cs->deadline <= h->a[c]->deadline)
            break;
        place(h, i, h->a[c]);
        i = c;
    }
    place(h, i, cs);
}

int ctrio__heap_add(ctrio__heap *h, ctrio_cancel_scope *cs)
{
    CTRIO__ASSERT(cs->heap_index == 0); /* in the heap once */
    CTRIO__ASSERT(cs->deadline == cs->deadline); /* NaN would break the order */
    if (h->n + 1 >= h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        ctrio_cancel_scope **a = realloc(h->a, cap * sizeof *a);
        if (!a)
            return -ENOMEM;
        h->a = a;
        h->cap = cap;
    }
    h->n++;
    place(h, h->n, cs);
    sift_up(h, h->n);
    return 0;
}

void ctrio__heap_remove(ctrio__heap *h, ctrio_cancel_scope *cs)
{
    size_t i = cs->heap_index;
    CTRIO__ASSERT(i >= 1 && i <= h->n && h->a[i] == cs);
    cs->heap_index = 0;
    ctrio_cancel_scope *last = h->a[h->n--];
    if (i > h->n)
        return; /* it was the last one */
    place(h, i, last);
    ctrio__heap_update(h, last);
}

void ctrio__heap_update(ctrio__heap *h, ctrio_cancel_scope *cs)
{
    size_t i = cs->heap_index;
    CTRIO__ASSERT(i >= 1 && i <= h->n && h->a[i] == cs);
    if (i > 1 && h->a[i / 2]->deadline > cs->deadline)
        sift_up(h, i);
    else
        sift_down(h, i);
}

void ctrio__heap_fini(ctrio__heap *h)
{
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}
