/*  test_crc - CRC32C: known values, chaining, and the inline small-input
    path agreeing with ISA-L's on every length. */

#include "shoal_crc.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

int
main (void)
{
    plan_lazy ();
    is_int (shoal_crc32c (0, "123456789", 9), 0xE3069283u, "CRC32C check value of 123456789");
    is_int (shoal_crc32c (0, "", 0), 0, "CRC32C of nothing is 0");
    uint8_t zeros[32] = {0};
    is_int (shoal_crc32c (0, zeros, 32), 0x8A9136AAu, "CRC32C of 32 zero bytes (RFC 3720)");
    uint8_t ones[32];
    memset (ones, 0xFF, sizeof ones);
    is_int (shoal_crc32c (0, ones, 32), 0x62A8AB43u, "CRC32C of 32 0xFF bytes (RFC 3720)");
    is_int (shoal_crc32c (shoal_crc32c (0, "1234", 4), "56789", 5), 0xE3069283u,
            "CRC32C chains over split input");
    is_int (shoal_crc32c_small ("123456789", 9), 0xE3069283u, "small path: check value");

    srand (7);
    int mismatches = 0;
    uint8_t buffer[300];
    for (int round = 0; round < 20000; round++) {
        size_t size = (size_t) rand () % sizeof buffer;
        for (size_t i = 0; i < size; i++)
            buffer[i] = (uint8_t) rand ();
        size_t offset = size ? (size_t) rand () % (size + 1) : 0; //  unaligned starts too
        if (shoal_crc32c_small (buffer + offset, size - offset)
            != shoal_crc32c (0, buffer + offset, size - offset))
            mismatches++;
    }
    is_int (mismatches, 0, "small path equals ISA-L on 20000 random inputs of 0-299 bytes");
    buffer[5] ^= 1;
    uint32_t flipped = shoal_crc32c_small (buffer, 28);
    buffer[5] ^= 1;
    ok (flipped != shoal_crc32c_small (buffer, 28), "one flipped bit changes the CRC");
    return done_testing ();
}
