/*
 * layer.c — state that a layer above the core (src/net, src/testing) keeps
 * per run. The core knows neither its type nor what it is for: a layer names
 * its state by the address of a key it owns, and the run keeps one zeroed
 * block of key->size bytes per key, made on first use and freed with the
 * run. So the layering include -> core -> net -> testing has no arrow going
 * up (issue #13; tests/check_layers.sh keeps it so), as a pthread key gives
 * a library thread-local state without the threads library knowing it.
 *
 * Runs hold one or two such blocks: a list is walked faster than a table
 * would be looked up, and it holds no global state (no key registry).
 */
#include "internal.h"

struct ctrio__layer_slot {
    struct ctrio__layer_slot *next;
    const ctrio__layer_key *key;
    _Alignas(max_align_t) unsigned char state[];
};

void *ctrio__layer_find(ctrio__run *r, const ctrio__layer_key *key)
{
    for (ctrio__layer_slot *s = r->layers; s; s = s->next)
        if (s->key == key)
            return s->state;
    return NULL;
}

void *ctrio__layer_get(ctrio__run *r, const ctrio__layer_key *key)
{
    void *state = ctrio__layer_find(r, key);
    if (state)
        return state;
    ctrio__layer_slot *s = calloc(1, sizeof *s + key->size);
    if (!s)
        return NULL;
    s->key = key;
    s->next = r->layers;
    r->layers = s;
    return s->state;
}

void ctrio__layer_free_all(ctrio__run *r)
{
    while (r->layers) {
        ctrio__layer_slot *s = r->layers;
        r->layers = s->next;
        free(s);
    }
}
