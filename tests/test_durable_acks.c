/*  =========================================================================
    test_durable_acks - a durable subscription's acknowledgement tracking

    The cursor of an origin moves only over the acknowledged front of
    what was delivered: an out-of-order acknowledgement waits for the ones
    before it, a cumulative one covers everything up to its seq, origins
    are independent, and the ring holding the deliveries survives growth
    and wrapping.
    ========================================================================= */

#include "shoal.h"
#include "shoal_durable.h"
#include "tap.h"

#include <string.h>

static const uint8_t s_a[SHOAL_ID_SIZE] = {1};
static const uint8_t s_b[SHOAL_ID_SIZE] = {2};

int
main (void)
{
    plan_lazy ();
    shoal_durable_t *durable = shoal_durable_new (7, "billing", "orders");
    ok (durable != NULL, "a durable subscription is made");
    is_int (shoal_durable_sub_id (durable), 7, "it keeps its subscription id");
    is_str (shoal_durable_consumer (durable), "billing", "its consumer");
    is_str (shoal_durable_stream (durable), "orders", "and its stream");

    for (uint64_t seq = 1; seq <= 5; seq++)
        shoal_durable_delivered (durable, s_a, seq);
    is_int ((int64_t) shoal_durable_ack (durable, s_a, 3, false), 0,
            "acknowledging 3 before 1 and 2 does not move the cursor");
    is_int ((int64_t) shoal_durable_ack (durable, s_a, 1, false), 1,
            "acknowledging 1 moves it to 1");
    is_int ((int64_t) shoal_durable_ack (durable, s_a, 2, false), 3,
            "acknowledging 2 moves it over 2 and the already acknowledged 3");
    is_int ((int64_t) shoal_durable_ack (durable, s_a, 5, true), 5,
            "a cumulative acknowledgement of 5 covers 4 and 5");
    is_int ((int64_t) shoal_durable_ack (durable, s_a, 5, false), 0,
            "acknowledging again what is already behind the cursor moves nothing");

    //  Origins are independent.
    shoal_durable_delivered (durable, s_a, 6);
    shoal_durable_delivered (durable, s_b, 40);
    shoal_durable_delivered (durable, s_b, 41);
    is_int ((int64_t) shoal_durable_ack (durable, s_b, 41, true), 41,
            "origin b's cursor moves to 41");
    is_int ((int64_t) shoal_durable_ack (durable, s_a, 6, false), 6,
            "origin a's goes on at 6, untouched by b");
    is_int ((int64_t) shoal_durable_ack (durable, s_b, 99, false), 0,
            "an acknowledgement of a seq never delivered moves nothing");

    //  Many deliveries, acknowledged in a scattered order: the ring grows
    //  and wraps, and the cursor never passes an unacknowledged seq.
    for (uint64_t seq = 7; seq <= 1006; seq++)
        shoal_durable_delivered (durable, s_a, seq);
    bool never_past = true;
    uint64_t cursor = 6;
    //  Even seqs first, then odd ones: the cursor may move only once the
    //  odd seq just after it is acknowledged.
    for (uint64_t seq = 8; seq <= 1006; seq += 2) {
        uint64_t moved = shoal_durable_ack (durable, s_a, seq, false);
        never_past = never_past && moved == 0;
    }
    for (uint64_t seq = 7; seq <= 1005; seq += 2) {
        uint64_t moved = shoal_durable_ack (durable, s_a, seq, false);
        //  Acknowledging odd seq unblocks seq and the even one after it.
        never_past = never_past && moved == seq + 1;
        if (moved)
            cursor = moved;
    }
    ok (never_past, "over 1,000 scattered acknowledgements the cursor never passed a hole");
    is_int ((int64_t) cursor, 1006, "and ends at the last delivered seq");

    //  Deliveries interleaved with acknowledgements (the ring wraps).
    bool steady = true;
    for (uint64_t seq = 1007; seq <= 3006; seq++) {
        shoal_durable_delivered (durable, s_a, seq);
        if (seq % 3 == 0)
            steady = steady && shoal_durable_ack (durable, s_a, seq, true) == seq;
    }
    ok (steady, "cumulative acknowledgements while delivering move the cursor each time");

    shoal_durable_destroy (&durable);
    ok (durable == NULL, "destroy nulls the pointer");
    shoal_durable_destroy (&durable);
    ok (durable == NULL, "destroying it again is harmless");
    return done_testing ();
}
