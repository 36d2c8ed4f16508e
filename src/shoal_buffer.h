/*  =========================================================================
    shoal_buffer - growing a byte buffer that records are appended to

    The outbox, the engine's send queues and the replay batch encoder each
    append records to a plain byte buffer they reuse; this is the one way
    they grow it: doubling from a first size, keeping what it holds. Tables
    that cannot refuse what needed the room grow by shoal_grow, and rings
    of them (a subscription's ready events, a consumer's deliveries) by
    shoal_ring_room.

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_BUFFER_H_INCLUDED
#define SHOAL_BUFFER_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Makes *data (of *alloc bytes) hold at least need bytes, doubling from
//  first. 0, or -1 when out of memory (*data and *alloc untouched).
static inline int
shoal_buffer_reserve (uint8_t **data, size_t *alloc, size_t need, size_t first)
{
    if (need <= *alloc)
        return 0;
    size_t size = *alloc ? *alloc : first;
    while (size < need)
        size *= 2;
    uint8_t *grown = (uint8_t *) realloc (*data, size);
    if (!grown)
        return -1;
    *data = grown;
    *alloc = size;
    return 0;
}

//  realloc for the tables a class grows in memory (rings, ranges, reorder
//  buffers): out of memory ends the process with a message, as czmq's
//  zmalloc does for everything else the library allocates, rather than
//  writing through NULL. Buffers whose owner can refuse the record that
//  needed the room use shoal_buffer_reserve instead.
static inline void *
shoal_grow (void *data, size_t size)
{
    void *grown = realloc (data, size);
    if (!grown && size) {
        fprintf (stderr, "shoal: out of memory growing a table to %zu bytes\n", size);
        fflush (stderr);
        abort ();
    }
    return grown;
}

//  Makes room in a ring of *alloc elements of elem_size bytes, count of
//  them used from *head_p: when full, twice as big (first first_alloc),
//  unwrapped so the entries from head to the old end move to the new end.
//  Returns the ring (out of memory ends the process, as shoal_grow).
static inline void *
shoal_ring_room (void *ring, size_t elem_size, size_t *alloc_p, size_t *head_p, size_t count,
                 size_t first_alloc)
{
    if (count < *alloc_p)
        return ring;
    size_t old = *alloc_p;
    size_t alloc = old ? 2 * old : first_alloc;
    uint8_t *grown = (uint8_t *) shoal_grow (ring, alloc * elem_size);
    size_t tail = old - *head_p;
    memmove (grown + (alloc - tail) * elem_size, grown + *head_p * elem_size, tail * elem_size);
    *head_p = count ? alloc - tail : 0;
    *alloc_p = alloc;
    return grown;
}

#endif
