/*  shoal_crc - CRC32C (Castagnoli), the checksum of every stored record.

    Computed by Intel's ISA-L (libisal), which picks SSE4.2, PCLMUL or
    AVX-512 code at run time and has a portable fallback. ISA-L's
    crc32_iscsi works on the raw register; this wrapper gives the usual
    CRC32C (initial value and final xor 0xFFFFFFFF), chainable:
    shoal_crc32c (shoal_crc32c (0, a, n), b, m) == shoal_crc32c (0, ab, n + m).
    CRC32C of "123456789" is 0xE3069283. Private to the library. */

#ifndef SHOAL_CRC_H_INCLUDED
#define SHOAL_CRC_H_INCLUDED

#include <isa-l/crc.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

static inline uint32_t
shoal_crc32c (uint32_t crc, const void *data, size_t size)
{
    unsigned char *bytes = (unsigned char *) data;
    uint32_t state = ~crc;
    while (size > 0) {
        int chunk = size > (size_t) INT_MAX ? INT_MAX : (int) size;
        state = crc32_iscsi (bytes, chunk, state);
        bytes += chunk;
        size -= (size_t) chunk;
    }
    return ~state;
}

//  The same CRC for a few bytes (frame headers): a library call costs
//  more than the work there, so on x86-64 with SSE4.2 the crc32
//  instruction runs inline. Same result as shoal_crc32c (0, data, size).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__ ((target ("sse4.2"))) static inline uint32_t
s_shoal_crc32c_sse42 (const uint8_t *p, size_t size)
{
    uint64_t state = 0xFFFFFFFFu;
    for (; size >= 8; size -= 8, p += 8) {
        uint64_t word;
        __builtin_memcpy (&word, p, 8);
        state = __builtin_ia32_crc32di (state, word);
    }
    uint32_t state32 = (uint32_t) state;
    for (; size > 0; size--, p++)
        state32 = __builtin_ia32_crc32qi (state32, *p);
    return ~state32;
}

static inline uint32_t
shoal_crc32c_small (const void *data, size_t size)
{
    static int have_sse42 = -1;
    if (have_sse42 < 0)
        have_sse42 = __builtin_cpu_supports ("sse4.2") ? 1 : 0;
    return have_sse42 ? s_shoal_crc32c_sse42 ((const uint8_t *) data, size)
                      : shoal_crc32c (0, data, size);
}
#else
static inline uint32_t
shoal_crc32c_small (const void *data, size_t size)
{
    return shoal_crc32c (0, data, size);
}
#endif

#endif
