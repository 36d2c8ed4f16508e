/*  =========================================================================
    fuzz_beacon - the beacon parser on any datagram

    A beacon is the first thing a stranger's bytes reach: any host on the
    LAN can send a UDP datagram to the beacon port. The receive path
    (shoal_beacon.c, s_accept) applies the 12-byte mesh filter, then
    shoal_beacon_decode. For any bytes, this target checks that:

    1. decode accepts only the two sizes of the contract (33 and 65) with
       the "SHL" version 1 prefix, and nothing else;
    2. what it accepts re-encodes to the same bytes (flags byte: only the
       leaving bit is defined, so only it is compared);
    3. the mesh id read is bytes 4-11 in network byte order, so the
       filter and the decoder agree.

    It also hashes the input as a mesh name (shoal_mesh_id reads a string
    a user or a config file gives).
    ========================================================================= */

#include "fuzz.h"
#include "shoal_beacon.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    shoal_beacon_msg_t msg;
    int rc = shoal_beacon_decode (data, size, &msg);
    bool valid = (size == SHOAL_BEACON_SIZE || size == SHOAL_BEACON_SIZE_SECURE) && data[0] == 'S'
                 && data[1] == 'H' && data[2] == 'L' && data[3] == 0x01;
    FUZZ_CHECK ((rc == 0) == valid);
    if (rc == 0) {
        uint64_t mesh = 0;
        for (int i = 4; i < 12; i++)
            mesh = mesh << 8 | data[i];
        FUZZ_CHECK (msg.mesh_id == mesh);
        FUZZ_CHECK (msg.has_key == (size == SHOAL_BEACON_SIZE_SECURE));
        uint8_t out[SHOAL_BEACON_SIZE_SECURE];
        size_t out_size = shoal_beacon_encode (&msg, out);
        FUZZ_CHECK (out_size == size);
        FUZZ_CHECK (memcmp (out, data, 32) == 0);
        FUZZ_CHECK ((out[32] & SHOAL_BEACON_FLAG_LEAVING)
                    == (data[32] & SHOAL_BEACON_FLAG_LEAVING));
        FUZZ_CHECK (memcmp (out + 33, data + 33, size - 33) == 0);
    }
    char name[256];
    size_t length = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy (name, data, length);
    name[length] = 0;
    (void) shoal_mesh_id (name);
    return 0;
}
