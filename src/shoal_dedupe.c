/*  =========================================================================
    shoal_dedupe - a bounded window of recently recorded event ids

    Layout (all in memory; nothing here is persisted: the engine refills
    the window from the tail of the log when a stream is first used):

        entries [window]   ring of { id: 16 bytes, seq: 8 bytes }, the
                           oldest at `oldest`, `count` of them in use
        slots [2^k]        open addressing with linear probing, 2^k >= 2 x
                           window; a slot holds 1 + the entry's index in
                           the ring, or 0 when empty

    Invariants:
    1. Every entry in use has exactly one slot pointing at it, and every
       non-empty slot points at an entry in use.
    2. An entry's slot is reached from its home slot (hash of the id) by
       probing forward over non-empty slots only: no tombstones. Removal
       shifts the following run of slots back (Knuth's algorithm R), which
       keeps this true.
    3. The index is never more than half full, so probes stay short.
    4. The hash is keyed with a per-window random seed: ids are chosen by
       clients, and a client must not be able to make them all collide.

    The ring and the index are allocated zeroed once; the kernel maps the
    pages only as the window fills, so an idle node pays nothing for them.
    ========================================================================= */

#include "shoal_dedupe.h"
#include "shoal_idhash.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t id[SHOAL_DEDUPE_ID_SIZE]; //  event id
    uint64_t seq;                     //  the seq it was recorded with
} s_entry_t;

struct _shoal_dedupe_t {
    s_entry_t *entries; //  ring of remembered ids, `window` of them
    size_t window;      //  ring capacity
    size_t oldest;      //  ring index of the oldest entry
    size_t count;       //  entries in use
    uint32_t *slots;    //  index: 1 + ring index, 0 = empty
    size_t mask;        //  slot count - 1 (a power of two minus one)
    uint64_t seed;      //  hash key
};

static size_t
s_home (const shoal_dedupe_t *self, const uint8_t *id)
{
    return (size_t) shoal_idhash (self->seed, id) & self->mask;
}

shoal_dedupe_t *
shoal_dedupe_new (size_t window)
{
    if (window == 0)
        return NULL;
    if (window > (1u << 30))
        window = 1u << 30;
    shoal_dedupe_t *self = (shoal_dedupe_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    size_t slots = 16;
    while (slots < 2 * window)
        slots *= 2;
    self->window = window;
    self->mask = slots - 1;
    self->entries = (s_entry_t *) calloc (window, sizeof (s_entry_t));
    self->slots = (uint32_t *) calloc (slots, sizeof (uint32_t));
    self->seed = shoal_idhash_key ();
    if (!self->entries || !self->slots)
        shoal_dedupe_destroy (&self);
    return self;
}

void
shoal_dedupe_destroy (shoal_dedupe_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_dedupe_t *self = *self_p;
    free (self->entries);
    free (self->slots);
    free (self);
    *self_p = NULL;
}

//  The slot that points at id, or the empty slot where it would go.
static size_t
s_find (const shoal_dedupe_t *self, const uint8_t *id)
{
    size_t slot = s_home (self, id);
    while (self->slots[slot]
           && memcmp (self->entries[self->slots[slot] - 1].id, id, SHOAL_DEDUPE_ID_SIZE) != 0)
        slot = (slot + 1) & self->mask;
    return slot;
}

//  Empties a slot and shifts the run after it back (invariant 2).
static void
s_remove_slot (shoal_dedupe_t *self, size_t hole)
{
    size_t next = hole;
    while (true) {
        self->slots[hole] = 0;
        while (true) {
            next = (next + 1) & self->mask;
            if (!self->slots[next])
                return;
            size_t home = s_home (self, self->entries[self->slots[next] - 1].id);
            //  The entry at next may move to the hole unless its home lies
            //  cyclically in (hole, next].
            bool stays =
                hole <= next ? (hole < home && home <= next) : (hole < home || home <= next);
            if (!stays)
                break;
        }
        self->slots[hole] = self->slots[next];
        hole = next;
    }
}

int
shoal_dedupe_insert (shoal_dedupe_t *self, const uint8_t *id, uint64_t seq)
{
    if (!self)
        return 0;
    if (self->slots[s_find (self, id)])
        return 1;
    size_t index;
    if (self->count == self->window) {
        //  Forget the oldest: its entry is reused for the new id.
        index = self->oldest;
        s_remove_slot (self, s_find (self, self->entries[index].id));
        self->oldest = (self->oldest + 1) % self->window;
    }
    else {
        index = (self->oldest + self->count) % self->window;
        self->count++;
    }
    memcpy (self->entries[index].id, id, SHOAL_DEDUPE_ID_SIZE);
    self->entries[index].seq = seq;
    self->slots[s_find (self, id)] = (uint32_t) index + 1;
    return 0;
}

uint64_t
shoal_dedupe_lookup (const shoal_dedupe_t *self, const uint8_t *id)
{
    if (!self)
        return 0;
    uint32_t slot = self->slots[s_find (self, id)];
    return slot ? self->entries[slot - 1].seq : 0;
}

size_t
shoal_dedupe_size (const shoal_dedupe_t *self)
{
    return self ? self->count : 0;
}
