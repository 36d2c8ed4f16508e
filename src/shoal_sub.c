/*  =========================================================================
    shoal_sub - one subscription: ordering, gap detection and repair

    State, per origin of the subscribed stream:

        next        the seq to deliver next; 0 while the origin is not yet
                    placed (its start is being found by a seek replay)
        known_head  the highest seq known to exist (events, heartbeats,
                    batch heads)
        held        events above next, sorted by seq, each held once; an
                    entry with no event marks a seq the type filter drops
        repair      at most one replay in flight: its credit, what came
                    back, whether it made progress; and whether the last
                    one spent its credit short of its end (resumable)

    and for the whole subscription a ready queue of events in delivery
    order, and a limit on held + ready events. Origins are found by an
    open-addressing index of their positions in the origin table (keyed
    hash, shoal_idhash; linear probing, at most half full, rebuilt when it
    would pass that); origins are only ever added, so no entry is removed.

    Invariants:
    1. For each origin, the events made ready have strictly increasing,
       consecutive seqs (counting filtered ones): next only moves by one
       over a seq that was delivered or filtered, or over a range that a
       replay batch vouched for (every seq below its next_seq was sent or
       filtered by the server, and none of them was dropped here).
    2. An event is made ready at most once: anything below next, or
       already held, is a duplicate and is dropped.
    3. Held + ready never exceeds the limit: an event with no room is
       dropped (deferred) and its seq stays at or above next, so a later
       repair fetches it again. Nothing is lost for lack of memory. When
       held events ahead of a gap fill the room, the upper half of them
       is dropped the same way, so the gap's repair always finds room.
       A seq dropped after a replay may have sent it (deferred from a
       batch, or held and then dropped) is remembered until next reaches
       it, since a later batch of that replay vouches for it. A live event
       dropped on arrival needs no record (any replay covering it sends
       it), nor does a seq the type filter drops (the server drops it too).
    4. A gap (known_head >= next, or an unplaced origin) always has a
       repair in flight, or one waiting only for room, for the retry
       delay, or for a timeout; so every gap is eventually repaired while
       a node holding the log is reachable.
    5. A replay is continued (resumed) only while next is at or above the
       next_seq of its last batch: it goes on from there, so what it sends
       is what the subscription lacks (or a duplicate, below next). With
       next below (a seq deferred from that batch), it would pass over the
       deferred seqs, which invariant 1 then keeps next from passing: a
       new replay from next is asked instead.
    ========================================================================= */

#include "shoal_sub.h"
#include "shoal_buffer.h"
#include "shoal_error.h"
#include "shoal_idhash.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#define S_RETRY_MS 200     //  delay before a failed repair is tried again
#define S_MAX_CREDIT 10000 //  credit asked per repair at most

typedef struct {
    uint64_t seq;         //  seq of the held event
    shoal_event_t *event; //  the event, or NULL when the type filter drops it
} s_held_t;

typedef struct {
    uint64_t low;  //  first seq of the range
    uint64_t high; //  last seq of the range
} s_range_t;

typedef struct {
    uint8_t origin[SHOAL_ID_SIZE]; //  origin node id
    uint64_t next;                 //  next seq to deliver, 0 = not placed yet
    uint64_t known_head;           //  highest seq known to exist
    int64_t seek_time_ns;          //  where an unplaced origin starts, by time
    uint64_t seek_first;           //  lowest replayed seq seen while unplaced, 0 = none
    uint64_t lost_from;            //  next before a re-seek over a trimmed range, 0 = none
    s_range_t *dropped;            //  seqs no batch may vouch past (invariant 3):
                                   //  ascending ranges, disjoint and not adjacent
    size_t dropped_count;          //  entries used
    size_t dropped_alloc;          //  entries allocated
    bool gap;                      //  a gap is known (counted once)
    s_held_t *held;                //  reorder buffer, ascending seq (inside held_base)
    size_t held_count;             //  entries used
    s_held_t *held_base;           //  allocation: drained entries leave held ahead of it
    size_t held_alloc;             //  entries allocated at held_base
    bool repairing;                //  a replay is in flight
    bool progress;                 //  a batch arrived since the timer last looked
    bool failed;                   //  the last repair failed: wait S_RETRY_MS
    int64_t repair_ms;             //  when the repair was sent or last progressed
    int64_t retry_at_ms;           //  not before this after a failure
    uint32_t repair_credit;        //  credit of the repair in flight
    uint32_t repair_got;           //  events it brought so far
    bool resumable;                //  the last replay spent its credit short of its end
    uint64_t resume_next;          //  and stopped there (its last batch's next_seq)
} s_origin_t;

struct _shoal_sub_t {
    int id;                                 //  subscription id
    char stream[SHOAL_STREAM_MAX + 1];      //  stream subscribed
    char *type;                             //  type filter, NULL = all
    shoal_from_kind_t from_kind;            //  start position kind
    uint64_t from_seq;                      //  SHOAL_FROM_SEQ default seq
    uint8_t (*from_origins)[SHOAL_ID_SIZE]; //  SHOAL_FROM_SEQ origins with their own start
    uint64_t *from_seqs;                    //  their starts
    size_t from_count;                      //  entries in both
    int64_t start_ns;                       //  wall time of subscribing, or the FROM_TIME time
    size_t limit;                           //  most events held + ready
    s_origin_t *origins;                    //  origins seen
    size_t origin_count;                    //  entries used
    size_t origin_alloc;                    //  entries allocated
    size_t max_origins;                     //  most entries
    uint32_t *index;                        //  open addressing: position + 1, 0 = empty
    size_t index_size;                      //  slots, a power of two, >= 2 * origin_count
    uint64_t index_key;                     //  its hash key, random
    size_t cursor;                          //  round-robin start for next_repair
    size_t held_total;                      //  held entries across origins
    shoal_event_t **ready;                  //  ring of events to deliver, in order
    size_t ready_head;                      //  oldest entry
    size_t ready_count;                     //  entries used
    size_t ready_alloc;                     //  entries allocated (grows up to limit)
    shoal_sub_stats_t stats;                //  counters
};

shoal_sub_t *
shoal_sub_new (int id, const char *stream, const char *type, const shoal_from_t *from,
               int64_t now_ns, size_t limit, size_t max_origins)
{
    if (!shoal_stream_name_valid (stream) || (type && !shoal_type_name_valid (type)))
        return NULL;
    shoal_sub_t *self = (shoal_sub_t *) zmalloc (sizeof (shoal_sub_t));
    self->index_key = shoal_idhash_key ();
    self->id = id;
    snprintf (self->stream, sizeof self->stream, "%s", stream);
    self->type = type ? strdup (type) : NULL;
    self->limit = limit ? limit : 10000;
    self->max_origins = max_origins ? max_origins : SHOAL_SUB_MAX_ORIGINS_DEFAULT;
    self->from_kind = from ? from->kind : SHOAL_FROM_NOW;
    self->start_ns = now_ns;
    if (from && from->kind == SHOAL_FROM_TIME)
        self->start_ns = from->time_ns;
    if (from && from->kind == SHOAL_FROM_SEQ) {
        self->from_seq = from->seq ? from->seq : 1;
        if (from->count) {
            self->from_origins = (uint8_t (*)[SHOAL_ID_SIZE]) zmalloc (from->count * SHOAL_ID_SIZE);
            self->from_seqs = (uint64_t *) zmalloc (from->count * sizeof (uint64_t));
            memcpy (self->from_origins, from->origins, from->count * SHOAL_ID_SIZE);
            memcpy (self->from_seqs, from->seqs, from->count * sizeof (uint64_t));
            self->from_count = from->count;
        }
    }
    return self;
}

void
shoal_sub_destroy (shoal_sub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_sub_t *self = *self_p;
    for (size_t i = 0; i < self->origin_count; i++) {
        s_origin_t *o = &self->origins[i];
        for (size_t h = 0; h < o->held_count; h++)
            shoal_event_destroy (&o->held[h].event);
        free (o->held_base);
        free (o->dropped);
    }
    free (self->origins);
    free (self->index);
    shoal_event_t *event;
    while ((event = shoal_sub_pop (self)))
        shoal_event_destroy (&event);
    free (self->ready);
    free (self->type);
    free (self->from_origins);
    free (self->from_seqs);
    free (self);
    *self_p = NULL;
}

int
shoal_sub_id (const shoal_sub_t *self)
{
    return self->id;
}

const char *
shoal_sub_stream (const shoal_sub_t *self)
{
    return self->stream;
}

bool
shoal_sub_wants_type (const shoal_sub_t *self, const char *type)
{
    return !self->type || strcmp (self->type, type) == 0;
}

size_t
shoal_sub_held (const shoal_sub_t *self)
{
    return self->held_total + self->ready_count;
}

size_t
shoal_sub_ready (const shoal_sub_t *self)
{
    return self->ready_count;
}

size_t
shoal_sub_room (const shoal_sub_t *self)
{
    size_t held = shoal_sub_held (self);
    return held < self->limit ? self->limit - held : 0;
}

void
shoal_sub_stats_add (const shoal_sub_t *self, shoal_sub_stats_t *sum)
{
    sum->delivered += self->stats.delivered;
    sum->gaps_detected += self->stats.gaps_detected;
    sum->events_repaired += self->stats.events_repaired;
    sum->duplicates_dropped += self->stats.duplicates_dropped;
    sum->deferred += self->stats.deferred;
    sum->lost += self->stats.lost;
    sum->origins_refused += self->stats.origins_refused;
}

void
shoal_sub_stats (const shoal_sub_t *self, shoal_sub_stats_t *stats)
{
    *stats = self->stats;
}

//  --------------------------------------------------------------------------
//  Origins

//  Where an origin's probe starts: keyed, so invented origins cannot be
//  chosen to collide.
static size_t
s_slot (const shoal_sub_t *self, const uint8_t *origin)
{
    return (size_t) shoal_idhash (self->index_key, origin) & (self->index_size - 1);
}

static s_origin_t *
s_find (const shoal_sub_t *self, const uint8_t *origin)
{
    if (self->index_size == 0)
        return NULL;
    size_t mask = self->index_size - 1;
    for (size_t slot = s_slot (self, origin);; slot = (slot + 1) & mask) {
        uint32_t entry = self->index[slot];
        if (entry == 0)
            return NULL; //  the index is never full: an empty slot ends every probe
        s_origin_t *o = &self->origins[entry - 1];
        if (memcmp (o->origin, origin, SHOAL_ID_SIZE) == 0)
            return o;
    }
}

//  Puts the origin at position in the index (which has room).
static void
s_index_put (shoal_sub_t *self, size_t position)
{
    size_t mask = self->index_size - 1;
    size_t slot = s_slot (self, self->origins[position].origin);
    while (self->index[slot])
        slot = (slot + 1) & mask;
    self->index[slot] = (uint32_t) position + 1;
}

//  Adds an origin, placed by the start position when that gives a seq,
//  else left unplaced for a seek replay at seek_time_ns. NULL, counted,
//  when max_origins are followed already.
static s_origin_t *
s_add (shoal_sub_t *self, const uint8_t *origin)
{
    if (self->origin_count >= self->max_origins) {
        self->stats.origins_refused++;
        return NULL;
    }
    if (self->origin_count == self->origin_alloc) {
        self->origin_alloc = self->origin_alloc ? 2 * self->origin_alloc : 8;
        self->origins =
            (s_origin_t *) shoal_grow (self->origins, self->origin_alloc * sizeof (s_origin_t));
    }
    if (2 * (self->origin_count + 1) > self->index_size) {
        //  Rebuilt twice as big: every origin placed again.
        free (self->index);
        self->index_size = self->index_size ? 2 * self->index_size : 16;
        self->index = (uint32_t *) zmalloc (self->index_size * sizeof (uint32_t));
        for (size_t i = 0; i < self->origin_count; i++)
            s_index_put (self, i);
    }
    s_origin_t *o = &self->origins[self->origin_count];
    memset (o, 0, sizeof *o);
    memcpy (o->origin, origin, SHOAL_ID_SIZE);
    s_index_put (self, self->origin_count++);
    switch (self->from_kind) {
        case SHOAL_FROM_SEQ:
            o->next = self->from_seq;
            for (size_t i = 0; i < self->from_count; i++)
                if (memcmp (self->from_origins[i], origin, SHOAL_ID_SIZE) == 0)
                    o->next = self->from_seqs[i] ? self->from_seqs[i] : 1;
            break;
        case SHOAL_FROM_BEGINNING:
            o->seek_time_ns = 0; //  the first event the log still holds
            break;
        default: o->seek_time_ns = self->start_ns;
    }
    return o;
}

static s_origin_t *
s_origin (shoal_sub_t *self, const uint8_t *origin)
{
    s_origin_t *o = s_find (self, origin);
    return o ? o : s_add (self, origin);
}

void
shoal_sub_origin_known (shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE], uint64_t head)
{
    s_origin_t *o = s_find (self, origin);
    if (!o) {
        o = s_add (self, origin);
        if (!o)
            return;
        if (self->from_kind == SHOAL_FROM_NOW)
            o->next = head + 1;
    }
    if (head > o->known_head)
        o->known_head = head;
}

uint64_t
shoal_sub_next_seq (const shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE])
{
    const s_origin_t *o = s_find (self, origin);
    return o ? o->next : 0;
}

//  --------------------------------------------------------------------------
//  Delivery

static void
s_note_gap (shoal_sub_t *self, s_origin_t *o)
{
    if (!o->gap) {
        o->gap = true;
        self->stats.gaps_detected++;
    }
}

//  Hands the event at next to the ready queue (or drops it when filtered)
//  and moves next over it.
static void
s_accept (shoal_sub_t *self, s_origin_t *o, shoal_event_t *event, bool replayed)
{
    if (event) {
        self->ready = (shoal_event_t **) shoal_ring_room (self->ready, sizeof (shoal_event_t *),
                                                          &self->ready_alloc, &self->ready_head,
                                                          self->ready_count, 64);
        self->ready[(self->ready_head + self->ready_count++) % self->ready_alloc] = event;
        self->stats.delivered++;
        if (replayed)
            self->stats.events_repaired++;
    }
    o->next++;
}

//  Delivers held events that have become next, drops held ones below it.
static void
s_drain (shoal_sub_t *self, s_origin_t *o)
{
    size_t taken = 0;
    while (taken < o->held_count && o->held[taken].seq <= o->next) {
        s_held_t *held = &o->held[taken++];
        if (held->seq == o->next)
            s_accept (self, o, held->event, false);
        else {
            shoal_event_destroy (&held->event);
            self->stats.duplicates_dropped++;
        }
    }
    if (taken) {
        //  The drained entries are stepped over, not moved out: events
        //  drain one at a time behind a repair, and moving the rest each
        //  time would cost the whole buffer per event.
        o->held = o->held_count > taken ? o->held + taken : o->held_base;
        o->held_count -= taken;
        self->held_total -= taken;
    }
    if (o->next > o->known_head && o->held_count == 0)
        o->gap = false;
    size_t passed = 0;
    while (passed < o->dropped_count && o->dropped[passed].high < o->next)
        passed++;
    if (passed) {
        memmove (o->dropped, o->dropped + passed, (o->dropped_count - passed) * sizeof (s_range_t));
        o->dropped_count -= passed;
    }
    if (o->dropped_count && o->dropped[0].low < o->next)
        o->dropped[0].low = o->next;
}

//  Remembers a seq dropped after a replay may have sent it: no batch
//  moves next past it until it came again (invariant 3). Seqs are kept
//  as ranges: they are dropped in runs (a batch with no room, the upper
//  half of a full buffer), and a run costs one entry however long.
static void
s_remember (s_origin_t *o, uint64_t seq)
{
    //  The first range that ends at seq - 1 or later.
    size_t low = 0, high = o->dropped_count;
    if (high && o->dropped[high - 1].high + 1 < seq)
        low = high; //  the usual case: above every range
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (o->dropped[mid].high + 1 < seq)
            low = mid + 1;
        else
            high = mid;
    }
    s_range_t *range = low < o->dropped_count ? &o->dropped[low] : NULL;
    if (range && range->low <= seq && seq <= range->high)
        return; //  already there
    if (range && range->high + 1 == seq) {
        range->high = seq;
        if (low + 1 < o->dropped_count && range[1].low == seq + 1) { //  joins the next one
            range->high = range[1].high;
            memmove (range + 1, range + 2, (o->dropped_count - low - 2) * sizeof (s_range_t));
            o->dropped_count--;
        }
        return;
    }
    if (range && range->low == seq + 1) {
        range->low = seq;
        return;
    }
    if (o->dropped_count == o->dropped_alloc) {
        o->dropped_alloc = o->dropped_alloc ? 2 * o->dropped_alloc : 16;
        o->dropped = (s_range_t *) shoal_grow (o->dropped, o->dropped_alloc * sizeof (s_range_t));
    }
    memmove (o->dropped + low + 1, o->dropped + low, (o->dropped_count - low) * sizeof (s_range_t));
    o->dropped[low] = (s_range_t){seq, seq};
    o->dropped_count++;
}

//  Position of seq in held (or where it would go); *found when present.
static size_t
s_held_find (const s_origin_t *o, uint64_t seq, bool *found)
{
    size_t low = 0, high = o->held_count;
    if (high && o->held[high - 1].seq < seq)
        low = high; //  the usual case: ahead of everything held
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (o->held[mid].seq < seq)
            low = mid + 1;
        else
            high = mid;
    }
    *found = low < o->held_count && o->held[low].seq == seq;
    return low;
}

//  Drops an event for lack of room; remember when its seq must be kept
//  from vouching (a wanted event that came by replay).
static shoal_sub_result_t
s_defer (shoal_sub_t *self, s_origin_t *o, shoal_event_t **event_p, uint64_t seq, bool remember)
{
    shoal_event_destroy (event_p);
    self->stats.deferred++;
    if (remember)
        s_remember (o, seq);
    return SHOAL_SUB_DEFERRED;
}

static void s_place (shoal_sub_t *self, s_origin_t *o, uint64_t next_seq);

shoal_sub_result_t
shoal_sub_on_event (shoal_sub_t *self, shoal_event_t **event_p, bool replayed)
{
    shoal_event_t *event = *event_p;
    const uint8_t *origin = shoal_event_origin (event);
    uint64_t seq = shoal_event_seq (event);
    if (!origin || seq == 0 || strcmp (shoal_event_stream (event), self->stream) != 0) {
        shoal_event_destroy (event_p);
        return SHOAL_SUB_OTHER;
    }
    s_origin_t *o = s_origin (self, origin);
    if (!o) {
        shoal_event_destroy (event_p);
        return SHOAL_SUB_REFUSED;
    }
    if (seq > o->known_head)
        o->known_head = seq;
    if (replayed && o->repairing) {
        o->repair_got++;
        o->progress = true;
    }
    if (o->next == 0 && replayed && (o->seek_first == 0 || seq < o->seek_first))
        o->seek_first = seq;
    //  From the beginning, seq 1 places its origin: nothing comes before it.
    if (o->next == 0 && seq == 1 && o->seek_time_ns == 0 && o->lost_from == 0)
        s_place (self, o, 1);
    if (o->next != 0 && seq < o->next) {
        shoal_event_destroy (event_p);
        self->stats.duplicates_dropped++;
        return SHOAL_SUB_DUPLICATE;
    }
    bool wanted = shoal_sub_wants_type (self, shoal_event_type (event));
    if (o->next != 0 && seq == o->next) {
        //  In order. It needs room only if it is delivered.
        if (wanted && shoal_sub_room (self) == 0)
            return s_defer (self, o, event_p, seq, replayed);
        if (!wanted)
            shoal_event_destroy (event_p);
        s_accept (self, o, wanted ? event : NULL, replayed);
        *event_p = NULL;
        s_drain (self, o);
        return SHOAL_SUB_DELIVERED;
    }
    //  Ahead of next (or the origin is not placed yet): hold it.
    bool found;
    size_t at = s_held_find (o, seq, &found);
    if (found) {
        shoal_event_destroy (event_p);
        self->stats.duplicates_dropped++;
        return SHOAL_SUB_DUPLICATE;
    }
    if (o->next != 0)
        s_note_gap (self, o);
    if (shoal_sub_room (self) == 0)
        return s_defer (self, o, event_p, seq, replayed && wanted);
    size_t skipped = (size_t) (o->held - o->held_base);
    if (skipped + o->held_count == o->held_alloc) {
        if (skipped && skipped >= o->held_alloc / 2) { //  room enough once compacted
            memmove (o->held_base, o->held, o->held_count * sizeof (s_held_t));
            o->held = o->held_base;
        }
        else {
            o->held_alloc = o->held_alloc ? 2 * o->held_alloc : 64;
            o->held_base =
                (s_held_t *) shoal_grow (o->held_base, o->held_alloc * sizeof (s_held_t));
            o->held = o->held_base + skipped;
        }
    }
    memmove (o->held + at + 1, o->held + at, (o->held_count - at) * sizeof (s_held_t));
    if (!wanted)
        shoal_event_destroy (event_p);
    o->held[at] = (s_held_t){seq, wanted ? event : NULL};
    o->held_count++;
    self->held_total++;
    *event_p = NULL;
    return SHOAL_SUB_BUFFERED;
}

void
shoal_sub_on_heartbeat (shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE], uint64_t head)
{
    s_origin_t *o = s_origin (self, origin);
    if (!o)
        return;
    if (head > o->known_head)
        o->known_head = head;
    if (o->next != 0 && o->known_head >= o->next)
        s_note_gap (self, o);
}

//  Places an unplaced origin after its seek replay answered.
static void
s_place (shoal_sub_t *self, s_origin_t *o, uint64_t next_seq)
{
    //  The seek's first event is where the origin starts (recorded even
    //  when there was no room to hold it); with none, after the head.
    uint64_t start = o->seek_first ? o->seek_first : next_seq;
    o->next = start;
    o->seek_first = 0;
    if (o->lost_from && start > o->lost_from)
        self->stats.lost += start - o->lost_from;
    o->lost_from = 0;
    s_drain (self, o);
}

bool
shoal_sub_on_batch (shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE], uint64_t next_seq,
                    bool done, uint64_t head)
{
    s_origin_t *o = s_find (self, origin);
    if (!o)
        return false;
    if (head > o->known_head)
        o->known_head = head;
    o->progress = true;
    if (o->next == 0)
        s_place (self, o, next_seq);
    //  Every seq below next_seq was sent (and went through on_event) or
    //  filtered out by the server: move next over the filtered ones, but
    //  never over one we dropped for lack of room (invariant 1).
    uint64_t limit = next_seq;
    if (o->dropped_count && o->dropped[0].low < limit)
        limit = o->dropped[0].low;
    while (o->next < limit) {
        if (o->held_count && o->held[0].seq == o->next)
            s_drain (self, o);
        else
            o->next = o->held_count && o->held[0].seq < limit ? o->held[0].seq : limit;
    }
    s_drain (self, o);
    if (done || o->repair_got >= o->repair_credit) {
        o->repairing = false;
        //  Short of its end, the replay waits at the node serving it.
        o->resumable = !done;
        o->resume_next = next_seq;
    }
    return o->repairing;
}

//  Whether o's last replay is to be continued (invariant 5).
static bool
s_resumable (const s_origin_t *o)
{
    return o->resumable && o->next >= o->resume_next;
}

bool
shoal_sub_resumable (shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE], uint64_t next_seq)
{
    s_origin_t *o = s_find (self, origin);
    return o && s_resumable (o) && o->resume_next == next_seq;
}

void
shoal_sub_on_repair_error (shoal_sub_t *self, const uint8_t origin[SHOAL_ID_SIZE], uint32_t code)
{
    s_origin_t *o = s_find (self, origin);
    if (!o)
        return;
    o->repairing = false;
    o->resumable = false;
    o->failed = true;
    if (code == SHOAL_WIRE_UNAVAILABLE && o->next != 0 && o->next <= o->known_head) {
        //  The range was trimmed by retention: start again from the first
        //  event still held, and count what is gone.
        o->lost_from = o->next;
        o->next = 0;
        o->seek_time_ns = 0;
    }
}

//  Frees room for the repair of a gap at next by dropping the upper half
//  of what the origin holds: those seqs stay at or above next, so they
//  are fetched again (invariant 3). Without this, events far ahead could
//  fill the buffer and leave no room for the ones that let them drain.
static void
s_evict (shoal_sub_t *self, s_origin_t *o)
{
    size_t keep = o->held_count / 2;
    for (size_t i = keep; i < o->held_count; i++) {
        if (o->held[i].event) //  a seq the filter drops need not come back
            s_remember (o, o->held[i].seq);
        shoal_event_destroy (&o->held[i].event);
        self->stats.deferred++;
    }
    self->held_total -= o->held_count - keep;
    o->held_count = keep;
}

int
shoal_sub_next_repair (shoal_sub_t *self, int64_t now_ms, int timeout_ms,
                       shoal_sub_repair_t *repair)
{
    size_t room = shoal_sub_room (self);
    if (room == 0) {
        //  Blocked: a placed origin with a gap at next and held events
        //  ahead of it gives up the upper half of them.
        for (size_t n = 0; n < self->origin_count && room == 0; n++) {
            s_origin_t *o = &self->origins[n];
            if (o->next != 0 && o->known_head >= o->next && o->held_count > 0 && !o->repairing) {
                s_evict (self, o);
                room = shoal_sub_room (self);
            }
        }
    }
    for (size_t n = 0; n < self->origin_count; n++) {
        s_origin_t *o = &self->origins[(self->cursor + n) % self->origin_count];
        if (o->repairing) {
            if (o->progress) {
                o->progress = false;
                o->repair_ms = now_ms;
            }
            if (now_ms - o->repair_ms < timeout_ms)
                continue;
            o->repairing = false; //  no progress: ask again
        }
        if (o->failed) {
            o->failed = false;
            o->retry_at_ms = now_ms + S_RETRY_MS;
        }
        //  An unplaced origin seeks even with no room: the answer's first
        //  seq places it (recorded before any deferral), and placing it is
        //  what lets its held events drain.
        if (now_ms < o->retry_at_ms || (room == 0 && o->next != 0))
            continue;
        memset (repair, 0, sizeof *repair);
        memcpy (repair->origin, o->origin, SHOAL_ID_SIZE);
        if (o->next == 0) {
            repair->from_seq = 0;
            repair->from_time_ns = o->seek_time_ns;
            //  What is held arrived live: the seek need not send it again.
            if (o->held_count)
                repair->to_seq = o->held[0].seq - 1;
        }
        else if (o->known_head >= o->next) {
            repair->from_seq = o->next;
            repair->to_seq = o->held_count ? o->held[0].seq - 1 : o->known_head;
        }
        else
            continue;
        uint64_t credit = room < S_MAX_CREDIT ? room : S_MAX_CREDIT;
        if (credit == 0)
            credit = 1;
        repair->credit = (uint32_t) credit;
        //  No longer than the credit: the replay ends with its last batch
        //  (done) rather than wait, parked at the node that serves it, for
        //  a Credit; the subscription asks again from where it stands.
        if (repair->from_seq && repair->to_seq - repair->from_seq >= credit)
            repair->to_seq = repair->from_seq + credit - 1;
        //  A replay left short of its end goes on from where it stopped
        //  (invariant 5) rather than wait, served by nobody, at its node.
        repair->resume = s_resumable (o);
        o->resumable = false;
        o->repairing = true;
        o->progress = false;
        o->repair_ms = now_ms;
        o->repair_credit = repair->credit;
        o->repair_got = 0;
        self->cursor = (self->cursor + n + 1) % self->origin_count;
        return 1;
    }
    return 0;
}

shoal_event_t *
shoal_sub_pop (shoal_sub_t *self)
{
    if (self->ready_count == 0)
        return NULL;
    shoal_event_t *event = self->ready[self->ready_head];
    self->ready_head = (self->ready_head + 1) % self->ready_alloc;
    self->ready_count--;
    return event;
}
