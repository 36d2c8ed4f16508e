/*  =========================================================================
    shoal_bytes - little-endian integers in byte buffers

    The log's segment and index files keep their numbers little-endian
    whatever the host; these are the one way to write and read them, for
    the log and for the tests and fuzzers that build or damage its files.

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_BYTES_H_INCLUDED
#define SHOAL_BYTES_H_INCLUDED

#include <stdint.h>

static inline void
shoal_put32 (uint8_t *p, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t) (value >> (8 * i));
}

static inline void
shoal_put64 (uint8_t *p, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t) (value >> (8 * i));
}

static inline uint32_t
shoal_get32 (const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static inline uint64_t
shoal_get64 (const uint8_t *p)
{
    return (uint64_t) shoal_get32 (p) | (uint64_t) shoal_get32 (p + 4) << 32;
}

#endif
