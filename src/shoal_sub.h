/*  =========================================================================
    shoal_sub - one subscription: ordering, gap detection and repair

    Pure logic, no sockets: the engine feeds a subscription what arrives
    (live events, heartbeats, replay batches, replay errors) and takes out
    what it must do (events to deliver, replays to request). So promises 2
    to 4 of DESIGN.md (order, no gaps, no duplicates) live in one small
    class that tests can drive through every interleaving.

    For each origin of its stream the subscription keeps `next`, the seq
    it must deliver next. An event below next is a duplicate; at next it
    is delivered (or, when the type filter rejects it, passed over); above
    next it waits in a bounded reorder buffer and the range between is a
    gap, repaired by replay from a node holding the origin's log. A
    heartbeat whose head is at or above next is a gap too, so a silent
    loss is found within one heartbeat interval of the next heartbeat.
    ========================================================================= */

#ifndef SHOAL_SUB_H_INCLUDED
#define SHOAL_SUB_H_INCLUDED

#include "shoal_node.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _shoal_sub_t shoal_sub_t;

//  A replay the subscription wants sent to a node holding origin's log.
typedef struct {
    uint8_t origin[SHOAL_ID_SIZE]; //  whose log
    uint64_t from_seq;             //  first seq, 0 = seek by from_time_ns
    int64_t from_time_ns;          //  used when from_seq is 0
    uint64_t to_seq;               //  last seq wanted, 0 = up to the head
    uint32_t credit;               //  events the subscription has room for
    bool resume;                   //  continue, with a Credit of credit, the replay
                                   //  that last spent its credit short of its end;
                                   //  when it cannot, ask from_seq..to_seq anew
} shoal_sub_repair_t;

//  What shoal_sub_on_event did with an event.
typedef enum {
    SHOAL_SUB_DELIVERED = 0, //  in order: ready to deliver (or passed over by the filter)
    SHOAL_SUB_BUFFERED,      //  ahead of a gap, or its origin not yet placed: held
    SHOAL_SUB_DUPLICATE,     //  already delivered or already held: dropped
    SHOAL_SUB_DEFERRED,      //  no room: dropped, a later repair brings it back
    SHOAL_SUB_OTHER,         //  another stream, no origin, or seq 0: dropped
    SHOAL_SUB_REFUSED        //  a new origin past the subscription's max origins: dropped
} shoal_sub_result_t;

typedef struct {
    uint64_t delivered;          //  events made ready for the application
    uint64_t gaps_detected;      //  gaps found (seq jumps and heartbeats)
    uint64_t events_repaired;    //  delivered events that came by replay
    uint64_t duplicates_dropped; //  events dropped as already seen
    uint64_t deferred;           //  events dropped for lack of room
    uint64_t lost;               //  events the mesh no longer holds (trimmed everywhere)
    uint64_t origins_refused;    //  events and heads of new origins past max origins, dropped
} shoal_sub_stats_t;

#define SHOAL_SUB_MAX_ORIGINS_DEFAULT 4096

//  A subscription to stream (type NULL = all) starting at from, made at
//  wall-clock time now_ns. limit bounds the events held (reorder buffer
//  plus ready queue); max_origins the origins it follows (0 = the
//  default). Past max_origins an event, heartbeat or known head of a new
//  origin is dropped and counted (origins_refused): an origin's position
//  cannot be forgotten without breaking "no duplicates", so a stranger
//  inventing origin ids gets refused rather than unbounded memory and
//  repairs.
shoal_sub_t *shoal_sub_new (int id, const char *stream, const char *type, const shoal_from_t *from,
                            int64_t now_ns, size_t limit, size_t max_origins);
void shoal_sub_destroy (shoal_sub_t **self_p);

int shoal_sub_id (const shoal_sub_t *self);
const char *shoal_sub_stream (const shoal_sub_t *self);
//  True when events of this type are delivered.
bool shoal_sub_wants_type (const shoal_sub_t *self, const char *type);

//  Tells the subscription, as it starts, the origins the node already
//  knows for its stream and their heads: "now" starts each after its head.
//  Origins placed later ("now" or "time") start by a replay that seeks
//  the subscription's start time.
void shoal_sub_origin_known (shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE], uint64_t head);

//  Feeds an event (ownership taken, *event_p nulled). replayed is true
//  when it came in a replay batch.
shoal_sub_result_t shoal_sub_on_event (shoal_sub_t *self, shoal_event_t **event_p, bool replayed);

//  Feeds a heartbeat: origin's log of this stream reaches head.
void shoal_sub_on_heartbeat (shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE], uint64_t head);

//  Feeds the end of a replay batch for origin's repair (its events went
//  through on_event first): every seq below next_seq has been sent or
//  filtered out; done ends the repair, and so does a spent credit.
//  Returns true while the repair goes on (more batches are awaited).
//  A replay whose credit is spent short of its end (a seek, whose range
//  no credit can bound) waits at the node serving it: see resumable.
bool shoal_sub_on_batch (shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE], uint64_t next_seq,
                         bool done, uint64_t head);

//  True when origin's last replay spent its credit short of its end, with
//  a last batch that ended at next_seq, and the subscription stands at or
//  past there: the next repair of origin continues it (resume) instead of
//  leaving it to wait, served by nobody, until the serving node's idle
//  timeout. next_seq tells that replay from an older one, given up on,
//  whose batches still come.
bool shoal_sub_resumable (shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE],
                          uint64_t next_seq);

//  The repair for origin failed with a wire error code (or 0 for a
//  timeout or a lost peer); it is tried again later.
void shoal_sub_on_repair_error (shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE],
                                uint32_t code);

//  The next replay to send, if any: 1 and *repair filled, else 0. At most
//  one repair per origin is in flight; one with no progress for
//  timeout_ms is sent again. now_ms is monotonic.
int shoal_sub_next_repair (shoal_sub_t *self, int64_t now_ms, int timeout_ms,
                           shoal_sub_repair_t *repair);

//  Takes the next event ready for delivery (caller owns it), or NULL.
shoal_event_t *shoal_sub_pop (shoal_sub_t *self);

//  Events held now (buffered and ready), and the room left under limit.
size_t shoal_sub_held (const shoal_sub_t *self);
//  Events ready to deliver (a part of held).
size_t shoal_sub_ready (const shoal_sub_t *self);
size_t shoal_sub_room (const shoal_sub_t *self);

//  The next seq expected from origin (0 when the origin is unknown or not
//  yet placed), for tests and for durable consumers.
uint64_t shoal_sub_next_seq (const shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE]);

void shoal_sub_stats (const shoal_sub_t *self, shoal_sub_stats_t *stats);
//  Adds the subscription's counters to sum.
void shoal_sub_stats_add (const shoal_sub_t *self, shoal_sub_stats_t *sum);

#ifdef __cplusplus
}
#endif

#endif
