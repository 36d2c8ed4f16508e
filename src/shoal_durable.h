/*  =========================================================================
    shoal_durable - a durable subscription's deliveries awaiting acknowledgement

    A durable subscription belongs to a named consumer whose cursors the
    store keeps. The engine tells this class what it delivered and what
    the application acknowledged; the class answers with the new cursor
    of an origin, which only ever moves over the acknowledged front of
    the deliveries, never past an event still unacknowledged.

    Private to the library (the engine's).
    ========================================================================= */

#ifndef SHOAL_DURABLE_H_INCLUDED
#define SHOAL_DURABLE_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#include "shoal_event.h"

typedef struct _shoal_durable_t shoal_durable_t;

//  A durable subscription: sub_id, the consumer's name (at most 64
//  characters) and its stream. Never NULL (allocation failure aborts, as
//  with czmq's zmalloc).
shoal_durable_t *shoal_durable_new (int sub_id, const char *consumer, const char *stream);

//  Destroys the subscription's tracking. Idempotent; nulls *self_p.
void shoal_durable_destroy (shoal_durable_t **self_p);

//  The subscription id.
int shoal_durable_sub_id (shoal_durable_t *self);

//  The consumer's name.
const char *shoal_durable_consumer (shoal_durable_t *self);

//  The subscription's stream.
const char *shoal_durable_stream (shoal_durable_t *self);

//  Records a delivery of (origin, seq) that will need an acknowledgement.
//  Deliveries of one origin come in ascending seq order.
void shoal_durable_delivered (shoal_durable_t *self, const uint8_t *origin, uint64_t seq);

//  Marks seq of origin (or, cumulative, everything of origin up to it)
//  acknowledged and returns the new cursor of origin: the last seq of the
//  acknowledged front, 0 if it did not move.
uint64_t shoal_durable_ack (shoal_durable_t *self, const uint8_t *origin, uint64_t seq,
                            bool cumulative);

#endif
