/*  =========================================================================
    shoal_idhash - a keyed hash of 16-byte ids, for the open-addressing
    indexes that find one (the dedupe window's event ids, a subscription's
    origins)

    Ids are random, but a stranger can choose ids that collide under any
    fixed hash and make every lookup a scan. Each index draws its own
    random key, so such ids collide only by chance.

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_IDHASH_H_INCLUDED
#define SHOAL_IDHASH_H_INCLUDED

#include <sodium.h>
#include <stdint.h>
#include <string.h>

//  A fresh random key for one index.
static inline uint64_t
shoal_idhash_key (void)
{
    uint64_t key;
    randombytes_buf (&key, sizeof key);
    return key;
}

static inline uint64_t
shoal_idhash_mix (uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

//  The hash of a 16-byte id under key.
static inline uint64_t
shoal_idhash (uint64_t key, const uint8_t *id)
{
    uint64_t a, b;
    memcpy (&a, id, 8);
    memcpy (&b, id + 8, 8);
    return shoal_idhash_mix (a ^ key) ^ shoal_idhash_mix (b + key);
}

#endif
