/*  =========================================================================
    shoal_durable - a durable subscription's deliveries awaiting acknowledgement

    For each origin the subscription received events from, the seqs
    delivered and not yet acknowledged wait in a ring, in delivery order,
    each with an acknowledged flag. An acknowledgement sets flags (one, or
    every one up to a seq when cumulative); then the acknowledged front of
    the ring is dropped, and its last seq is the origin's new cursor. So
    an application that acknowledges out of order moves the cursor only
    as far as everything before it was acknowledged too, and a restart
    redelivers what was never acknowledged.
    ========================================================================= */

#include "shoal_durable.h"
#include "shoal_buffer.h"

#include <czmq.h>

//  The events a durable subscription delivered from one origin and not yet
//  acknowledged, in delivery order: the cursor moves over the acknowledged
//  front of this list, never past an event still unacknowledged.
typedef struct {
    uint64_t seq; //  delivered seq
    bool acked;   //  acknowledged
} s_delivery_t;

typedef struct {
    uint8_t origin[SHOAL_ID_SIZE]; //  whose events
    s_delivery_t *ring;            //  deliveries, ascending seq
    size_t head;                   //  first entry
    size_t count;                  //  entries used
    size_t alloc;                  //  entries allocated
} s_acker_t;

//  A durable subscription: its consumer and what waits for acknowledgement.
struct _shoal_durable_t {
    int sub_id;                        //  the subscription
    char consumer[65];                 //  consumer name (cursors in the store)
    char stream[SHOAL_STREAM_MAX + 1]; //  its stream
    zlistx_t *ackers;                  //  s_acker_t, one per origin
    s_acker_t *last;                   //  the acker found last (deliveries come in runs)
};

shoal_durable_t *
shoal_durable_new (int sub_id, const char *consumer, const char *stream)
{
    shoal_durable_t *durable = (shoal_durable_t *) zmalloc (sizeof (shoal_durable_t));
    durable->sub_id = sub_id;
    snprintf (durable->consumer, sizeof durable->consumer, "%s", consumer);
    snprintf (durable->stream, sizeof durable->stream, "%s", stream);
    durable->ackers = zlistx_new ();
    return durable;
}

void
shoal_durable_destroy (shoal_durable_t **self_p)
{
    if (!*self_p)
        return;
    shoal_durable_t *durable = *self_p;
    for (s_acker_t *acker = (s_acker_t *) zlistx_first (durable->ackers); acker;
         acker = (s_acker_t *) zlistx_next (durable->ackers)) {
        free (acker->ring);
        free (acker);
    }
    zlistx_destroy (&durable->ackers);
    free (durable);
    *self_p = NULL;
}

int
shoal_durable_sub_id (shoal_durable_t *self)
{
    return self->sub_id;
}

const char *
shoal_durable_consumer (shoal_durable_t *self)
{
    return self->consumer;
}

const char *
shoal_durable_stream (shoal_durable_t *self)
{
    return self->stream;
}

static s_acker_t *
s_acker (shoal_durable_t *durable, const uint8_t *origin, bool create)
{
    s_acker_t *acker = durable->last;
    if (acker && memcmp (acker->origin, origin, SHOAL_ID_SIZE) == 0)
        return acker;
    for (acker = (s_acker_t *) zlistx_first (durable->ackers); acker;
         acker = (s_acker_t *) zlistx_next (durable->ackers))
        if (memcmp (acker->origin, origin, SHOAL_ID_SIZE) == 0)
            break;
    if (!acker && create) {
        acker = (s_acker_t *) zmalloc (sizeof (s_acker_t));
        memcpy (acker->origin, origin, SHOAL_ID_SIZE);
        zlistx_add_end (durable->ackers, acker);
    }
    if (acker)
        durable->last = acker;
    return acker;
}

//  Records a delivery that will need an acknowledgement.
static void
s_acker_push (s_acker_t *acker, uint64_t seq)
{
    acker->ring = (s_delivery_t *) shoal_ring_room (acker->ring, sizeof (s_delivery_t),
                                                    &acker->alloc, &acker->head, acker->count, 64);
    acker->ring[(acker->head + acker->count++) % acker->alloc] = (s_delivery_t){seq, false};
}

//  Marks seq (or, cumulative, everything up to it) acknowledged and returns
//  the new cursor: the last seq of the acknowledged front, 0 if unchanged.
static uint64_t
s_acker_ack (s_acker_t *acker, uint64_t seq, bool cumulative)
{
    for (size_t i = 0; i < acker->count; i++) {
        size_t at = (acker->head + i) % acker->alloc;
        if (acker->ring[at].seq > seq)
            break;
        if (cumulative || acker->ring[at].seq == seq)
            acker->ring[at].acked = true;
    }
    uint64_t cursor = 0;
    while (acker->count && acker->ring[acker->head].acked) {
        cursor = acker->ring[acker->head].seq;
        acker->head = (acker->head + 1) % acker->alloc;
        acker->count--;
    }
    return cursor;
}

void
shoal_durable_delivered (shoal_durable_t *self, const uint8_t *origin, uint64_t seq)
{
    s_acker_push (s_acker (self, origin, true), seq);
}

uint64_t
shoal_durable_ack (shoal_durable_t *self, const uint8_t *origin, uint64_t seq, bool cumulative)
{
    s_acker_t *acker = s_acker (self, origin, false);
    return acker ? s_acker_ack (acker, seq, cumulative) : 0;
}
