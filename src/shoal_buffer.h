/*  =========================================================================
    shoal_buffer - growing a byte buffer that records are appended to

    The outbox, the engine's send queues and the replay batch encoder each
    append records to a plain byte buffer they reuse; this is the one way
    they grow it: doubling from a first size, keeping what it holds.

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_BUFFER_H_INCLUDED
#define SHOAL_BUFFER_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

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

#endif
