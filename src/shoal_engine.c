/*  =========================================================================
    shoal_engine - the node's actor: every socket, file and timer

    One thread runs a poll loop over the actor pipe, the PUB, SUB and
    ROUTER sockets, one DEALER per peer, the beacon, and the inbox's space
    signal. Each turn of the loop reads what is ready (a bounded amount
    per socket), then:

        1. flushes the own logs that took appends (group commit: every
           event read in this turn shares one fdatasync),
        2. sends what became durable: live events on PUB, PublishAcks to
           thin clients, own events to local subscriptions, and the new
           durable seqs to shoal_heads (waking wait_durable),
        3. asks the subscriptions for repairs and sends them,
        4. moves ready events into the inbox,
        5. pumps replay batches,
        6. runs the timers: beacon, heartbeats, pings, peer expiry.

    Promise 1 (durable before visible) is kept by step 2 being the only
    place that sends an own event or an ack, and it sends nothing above
    shoal_log_durable. Promises 2-4 are kept by shoal_sub; this file only
    routes events, heartbeats and replay batches to it. Promise 6 (bad
    input never fatal) is kept by every input path: frames are checked
    for count and size, bytes are decoded by the strict codecs, and every
    refusal is counted (and answered, where there is someone to answer).

    Peers are found by beacon (zbeacon or the loopback beacon), by static
    endpoints, and by peer exchange (Hello.known_peers). A peer that goes
    silent past expiry is dropped; one that keeps coming back is held off
    for a while that doubles each time (damping), so a flapping link does
    not cause a storm of connects and disconnects.
    ========================================================================= */

#include "shoal_engine.h"
#include "shoal_beacon.h"
#include "shoal_dedupe.h"
#include "shoal_error.h"
#include "shoal_peer.h"
#include "shoal_replay.h"
#include "shoal_secure.h"
#include "shoal_store.h"
#include "shoal_sub.h"
#include "shoal_wire.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <unistd.h>

#define S_READ_BATCH 512         //  messages read per socket per turn
#define S_REPLAY_BUDGET 2048     //  replay events sent per turn
#define S_PEER_CHECK_MS 100      //  how often peer states are looked at
#define S_REPAIR_TICK_MS 50      //  how often repairs are looked at
#define S_REPAIR_TIMEOUT_MS 2000 //  a repair with no progress this long is asked again
#define S_DAMP_WINDOW_MS 60000   //  a peer gone twice within this is flapping
#define S_DAMP_MAX_MS 30000      //  longest hold-off of a flapping peer
#define S_PENDING_MAX_MS 60000   //  forget replay requests older than this
#define S_REHELLO_EVERY 5        //  heartbeats between two Hellos to a greeted peer
#define S_KEYS_CHECK_MS 250      //  secure mode: how often the allow-list is looked at

//  A thin client's publish waiting for durability before its ack.
typedef struct {
    zframe_t *routing_id; //  ROUTER identity of the client
    uint64_t request_id;  //  its request id
    uint64_t seq;         //  seq recorded
    bool duplicate;       //  the id was seen before
} s_ack_t;

//  One of this node's own streams.
typedef struct {
    char stream[SHOAL_STREAM_MAX + 1]; //  stream name
    shoal_log_t *log;                  //  its log (owned by the store)
    uint8_t *sendq;                    //  appended, not yet sent: see s_own_append
    size_t sendq_used;                 //  bytes in sendq
    size_t sendq_alloc;                //  bytes allocated
    zlistx_t *acks;                    //  s_ack_t waiting for durability
    uint64_t sent;                     //  highest seq handed to PUB and local subscriptions
    shoal_dedupe_t *dedupe;            //  event id -> seq of thin-client publishes, a window
    bool dedupe_loaded;                //  the window was filled from the log tail
} s_own_t;

//  A replay this node asked a peer for, on behalf of a subscription.
typedef struct {
    int sub_id;                    //  subscription
    uint8_t origin[SHOAL_ID_SIZE]; //  whose log
    int64_t sent_ms;               //  when it was asked
} s_pending_t;

//  The events a durable subscription delivered from one origin and not yet
//  acknowledged, in delivery order: the cursor moves over the acknowledged
//  front of this list, never past an event still unacknowledged.
typedef struct {
    uint8_t origin[SHOAL_ID_SIZE]; //  whose events
    uint64_t *seqs;                //  delivered seqs, ascending, a ring
    bool *acked;                   //  acknowledged flags, same ring
    size_t head;                   //  first entry
    size_t count;                  //  entries used
    size_t alloc;                  //  entries allocated
} s_acker_t;

//  A durable subscription: its consumer and what waits for acknowledgement.
typedef struct {
    int sub_id;                        //  the subscription
    char consumer[65];                 //  consumer name (cursors in the store)
    char stream[SHOAL_STREAM_MAX + 1]; //  its stream
    zlistx_t *ackers;                  //  s_acker_t, one per origin
} s_durable_t;

//  What the engine remembers of a peer that went away (damping).
typedef struct {
    unsigned count;        //  departures within the damping window
    int64_t last_gone_ms;  //  when it last went
    int64_t hold_until_ms; //  beacons ignored until then
} s_gone_t;

typedef struct {
    zsock_t *pipe;                      //  actor pipe to the facade
    shoal_engine_args_t *args;          //  shared with the facade
    shoal_node_config_t *config;        //  = &args->config
    shoal_store_t *store;               //  data directory
    uint8_t id[SHOAL_ID_SIZE];          //  node id
    char id_hex[2 * SHOAL_ID_SIZE + 1]; //  node id in hex, for logs
    uint64_t mesh_id;                   //  hash of the mesh name
    zsock_t *pub;                       //  live events and heartbeats
    zsock_t *sub;                       //  connected to every peer's PUB
    zsock_t *router;                    //  requests from peers and clients
    int pub_port;                       //  bound ports
    int router_port;                    //  bound ports
    shoal_beacon_t *beacon;             //  discovery, NULL for interface "none"
    shoal_replay_t *replay;             //  replay server
    zlistx_t *peers;                    //  shoal_peer_t
    bool peers_changed;                 //  poll set must be rebuilt
    zhashx_t *gone;                     //  id hex -> s_gone_t
    zhashx_t *own;                      //  stream -> s_own_t
    zhashx_t *heads;                    //  "originhex/stream" -> head (uint64_t, owned)
    uint64_t *last_head; //  the entry of heads noted last (entries are never freed early)
    uint8_t last_origin[SHOAL_ID_SIZE];     //  its origin
    char last_stream[SHOAL_STREAM_MAX + 1]; //  its stream
    zlistx_t *subs;                         //  shoal_sub_t (replication subscriptions have ids < 0)
    zlistx_t *durables;                     //  s_durable_t
    int64_t cursors_dirty_ms;     //  when acknowledgements began waiting to be written, -1
    int next_replica_id;          //  last id given to a replication subscription (negative)
    bool replicate_all;           //  config says "all"
    uint64_t heartbeat_count;     //  heartbeat rounds so far
    int64_t next_retention_ms;    //  when retention runs next
    zhashx_t *sub_streams;        //  stream -> count of subscriptions (boxed)
    zhashx_t *pending;            //  request id (decimal) -> s_pending_t
    uint64_t next_request_id;     //  for requests this node sends
    bool waiting_space;           //  the inbox was full: poll its space signal
    bool terminated;              //  $TERM received
    shoal_node_stats_t stats;     //  counters of the engine itself
    shoal_sub_stats_t sub_totals; //  counters of subscriptions that ended
    int64_t next_heartbeat_ms;    //  timers, monotonic ms
    int64_t next_peer_check_ms;
    int64_t next_repair_ms;
    int64_t next_expire_ms;
    bool replay_busy; //  replay pump had more to send

    shoal_secure_t *secure;     //  CURVE keys and allow-list, NULL when not secure
    uint64_t beacons_refused;   //  secure: beacons without a key or of a key not allowed
    int64_t next_keys_check_ms; //  secure: when the allow-list is looked at next
} s_engine_t;

static int64_t
s_now (void)
{
    return zclock_mono ();
}

#define S_ERROR SHOAL_LOG_ERROR
#define S_WARNING SHOAL_LOG_WARNING
#define S_INFO SHOAL_LOG_INFO
#define S_DEBUG SHOAL_LOG_DEBUG

//  Logs one line to stderr when level is within the node's log level.
static void
s_log (s_engine_t *self, int level, const char *format, ...)
{
    if (level > self->config->log_level)
        return;
    static const char *names[] = {"error", "warning", "info", "debug"};
    char line[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (line, sizeof line, format, args);
    va_end (args);
    time_t now = time (NULL);
    struct tm tm;
    char stamp[32];
    strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", localtime_r (&now, &tm));
    fprintf (stderr, "%s shoal[%s] %s: %s\n", stamp, self->config->name, names[level], line);
}

//  --------------------------------------------------------------------------
//  Small helpers

static void
s_send_response (s_engine_t *self, zframe_t *routing_id, zframe_t **frame_p)
{
    zmq_send (zsock_resolve (self->router), zframe_data (routing_id), zframe_size (routing_id),
              ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (zsock_resolve (self->router), zframe_data (*frame_p), zframe_size (*frame_p),
              ZMQ_DONTWAIT);
    zframe_destroy (frame_p);
}

static void
s_reply_error (s_engine_t *self, zframe_t *routing_id, uint64_t request_id, uint32_t code,
               const char *message)
{
    self->stats.bad_requests++;
    zframe_t *frame = shoal_wire_error (request_id, code, message);
    s_send_response (self, routing_id, &frame);
}

static void
s_heads_key (char *key, size_t size, const uint8_t *origin, const char *stream)
{
    char hex[2 * SHOAL_ID_SIZE + 1];
    shoal_id_to_hex (origin, hex);
    snprintf (key, size, "%s/%s", hex, stream);
}

//  Remembers the highest seq known of (origin, stream). Events come in
//  runs from one origin and stream, so the last entry is kept at hand.
static void
s_heads_note (s_engine_t *self, const uint8_t *origin, const char *stream, uint64_t head)
{
    if (self->last_head && memcmp (self->last_origin, origin, SHOAL_ID_SIZE) == 0
        && strcmp (self->last_stream, stream) == 0) {
        if (head > *self->last_head)
            *self->last_head = head;
        return;
    }
    char key[2 * SHOAL_ID_SIZE + SHOAL_STREAM_MAX + 2];
    s_heads_key (key, sizeof key, origin, stream);
    uint64_t *known = (uint64_t *) zhashx_lookup (self->heads, key);
    if (!known) {
        known = (uint64_t *) zmalloc (sizeof (uint64_t));
        zhashx_insert (self->heads, key, known);
    }
    if (head > *known)
        *known = head;
    self->last_head = known;
    memcpy (self->last_origin, origin, SHOAL_ID_SIZE);
    snprintf (self->last_stream, sizeof self->last_stream, "%s", stream);
}

static shoal_sub_t *
s_sub_by_id (s_engine_t *self, int id)
{
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs))
        if (shoal_sub_id (sub) == id)
            return sub;
    return NULL;
}

static bool
s_has_subs (s_engine_t *self, const char *stream)
{
    return zhashx_lookup (self->sub_streams, stream) != NULL;
}

//  --------------------------------------------------------------------------
//  Own streams

static void
s_ack_destroy (s_ack_t **self_p)
{
    if (*self_p) {
        zframe_destroy (&(*self_p)->routing_id);
        free (*self_p);
        *self_p = NULL;
    }
}

static void
s_own_destroy (s_own_t **self_p)
{
    if (!*self_p)
        return;
    s_own_t *own = *self_p;
    free (own->sendq);
    zlistx_destroy (&own->acks);
    shoal_dedupe_destroy (&own->dedupe);
    free (own);
    *self_p = NULL;
}

//  The own stream, opened (and its log made) when create is true.
static s_own_t *
s_own (s_engine_t *self, const char *stream, bool create)
{
    s_own_t *own = (s_own_t *) zhashx_lookup (self->own, stream);
    if (own || !create)
        return own;
    int error = 0;
    shoal_log_t *log = shoal_store_log (self->store, self->id, stream, true, &error);
    if (!log) {
        s_log (self, S_ERROR, "cannot open the log of stream %s: %s", stream,
               shoal_strerror (error));
        return NULL;
    }
    own = (s_own_t *) zmalloc (sizeof (s_own_t));
    snprintf (own->stream, sizeof own->stream, "%s", stream);
    own->log = log;
    own->acks = zlistx_new ();
    zlistx_set_destructor (own->acks, (zlistx_destructor_fn *) s_ack_destroy);
    own->sent = shoal_log_durable (log);
    own->dedupe = shoal_dedupe_new (self->config->dedupe_window);
    zhashx_insert (self->own, stream, own);
    return own;
}

//  Appends an encoded own event. It goes out once durable: until then it
//  waits in the stream's send queue, records of
//      seq (8 bytes), size (4), type length (1), type, the encoded event
//  in seq order, which s_commit sends and drops as they become durable.
static int
s_own_append (s_engine_t *self, s_own_t *own, uint64_t seq, const uint8_t *data, size_t size,
              int64_t time_ns, const char *type, size_t type_size)
{
    size_t record = 13 + type_size + size;
    if (own->sendq_used + record > own->sendq_alloc) {
        size_t alloc = own->sendq_alloc ? own->sendq_alloc : 64 * 1024;
        while (alloc < own->sendq_used + record)
            alloc *= 2;
        uint8_t *sendq = (uint8_t *) realloc (own->sendq, alloc);
        if (!sendq) {
            s_log (self, S_ERROR, "append to %s failed: out of memory", own->stream);
            return -1;
        }
        own->sendq = sendq;
        own->sendq_alloc = alloc;
    }
    if (type_size > SHOAL_TYPE_MAX || shoal_log_append (own->log, seq, time_ns, data, size)) {
        s_log (self, S_ERROR, "append to %s failed: %s", own->stream,
               shoal_log_error_text (own->log));
        shoal_heads_update (self->args->heads, own->stream, shoal_log_head (own->log),
                            shoal_log_durable (own->log), shoal_log_failed (own->log));
        return -1;
    }
    uint8_t *p = own->sendq + own->sendq_used;
    uint32_t size32 = (uint32_t) size;
    memcpy (p, &seq, 8);
    memcpy (p + 8, &size32, 4);
    p[12] = (uint8_t) type_size;
    memcpy (p + 13, type, type_size);
    memcpy (p + 13 + type_size, data, size);
    own->sendq_used += record;
    self->stats.published++;
    return 0;
}

static void s_feed_local (s_engine_t *self, const uint8_t *data, size_t size);

//  Sends one own event on PUB: topic "<stream>/<type>", then the event.
static void
s_send_live (s_engine_t *self, const char *stream, const char *type, size_t type_size,
             const uint8_t *data, size_t size)
{
    char topic[SHOAL_STREAM_MAX + SHOAL_TYPE_MAX + 2];
    size_t length = strlen (stream);
    memcpy (topic, stream, length);
    topic[length++] = '/';
    memcpy (topic + length, type, type_size);
    length += type_size;
    void *pub = zsock_resolve (self->pub);
    zmq_send (pub, topic, length, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (pub, data, size, ZMQ_DONTWAIT);
}

//  TEST ONLY: planted bugs that prove the failure harness (shoal-sim --bug)
//  catches broken nodes. SHOAL_TEST_BUG=ack-before-fsync acknowledges thin
//  clients' publishes at append time and holds the flush back for up to
//  300 ms; SHOAL_TEST_BUG=skip-repair never sends a repair. Never set it
//  outside tests.
static bool
s_test_bug (const char *name)
{
    static const char *bug = "";
    if (bug && !*bug)
        bug = getenv ("SHOAL_TEST_BUG"); //  read once: NULL when unset
    return bug && streq (bug, name);
}

//  Flushes every own log that has appends, then sends what became durable.
static void
s_commit (s_engine_t *self)
{
    static int64_t bug_flushed_ms; //  TEST ONLY: last flush under ack-before-fsync
    bool bug_ack = s_test_bug ("ack-before-fsync");
    if (bug_ack && s_now () - bug_flushed_ms < 300)
        goto bug_skip_flush;
    bug_flushed_ms = s_now ();
    //  One group commit for every log that took appends: own and replicas.
    for (size_t i = 0; i < shoal_store_log_count (self->store); i++) {
        shoal_log_t *log = shoal_store_log_at (self->store, i);
        if (shoal_log_head (log) > shoal_log_durable (log) && !shoal_log_failed (log)
            && shoal_log_flush (log))
            s_log (self, S_ERROR, "flush of %s failed: %s", shoal_log_stream (log),
                   shoal_log_error_text (log));
    }
bug_skip_flush:
    for (s_own_t *own = (s_own_t *) zhashx_first (self->own); own;
         own = (s_own_t *) zhashx_next (self->own)) {
        shoal_log_t *log = own->log;
        uint64_t durable = shoal_log_durable (log);
        if (durable == own->sent && zlistx_size (own->acks) == 0)
            continue;
        //  Write, fsync, then publish (invariant of shoal_log): nothing
        //  above durable leaves this node.
        bool local = s_has_subs (self, own->stream);
        size_t at = 0;
        while (at < own->sendq_used) {
            const uint8_t *p = own->sendq + at;
            uint64_t seq;
            uint32_t size;
            memcpy (&seq, p, 8);
            if (seq > durable)
                break;
            memcpy (&size, p + 8, 4);
            const uint8_t *data = p + 13 + p[12];
            s_send_live (self, own->stream, (const char *) p + 13, p[12], data, size);
            if (local)
                s_feed_local (self, data, size);
            own->sent = seq;
            at += 13 + p[12] + size;
        }
        memmove (own->sendq, own->sendq + at, own->sendq_used - at);
        own->sendq_used -= at;
        if (shoal_log_failed (log))
            own->sendq_used = 0; //  never durable: never sent
        if (own->sent < durable)
            own->sent = durable; //  nothing waited for these (cannot happen)
        s_ack_t *ack;
        uint64_t acked = bug_ack ? shoal_log_head (log) : durable; //  TEST ONLY
        while ((ack = (s_ack_t *) zlistx_first (own->acks)) && ack->seq <= acked) {
            Shoal__V1__PublishAck body = SHOAL__V1__PUBLISH_ACK__INIT;
            body.origin.data = self->id;
            body.origin.len = SHOAL_ID_SIZE;
            body.stream = own->stream;
            body.seq = ack->seq;
            body.duplicate = ack->duplicate;
            Shoal__V1__Response response = SHOAL__V1__RESPONSE__INIT;
            response.request_id = ack->request_id;
            response.body_case = SHOAL__V1__RESPONSE__BODY_PUBLISH_ACK;
            response.publish_ack = &body;
            zframe_t *frame = shoal_wire_pack_response (&response);
            s_send_response (self, ack->routing_id, &frame);
            zlistx_delete (own->acks, zlistx_cursor (own->acks));
        }
        if (shoal_log_failed (log))
            zlistx_purge (own->acks); //  never durable: never acknowledged
        shoal_heads_update (self->args->heads, own->stream, shoal_log_head (log), durable,
                            shoal_log_failed (log));
    }
}

//  --------------------------------------------------------------------------
//  Subscriptions

//  Hands a decoded event to every subscription of its stream.
static void
s_route_event (s_engine_t *self, shoal_event_t **event_p, bool replayed, int only_sub)
{
    shoal_event_t *event = *event_p;
    const char *stream = shoal_event_stream (event);
    shoal_sub_t *last = NULL;
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs)) {
        if (strcmp (shoal_sub_stream (sub), stream) != 0)
            continue;
        if (only_sub && shoal_sub_id (sub) != only_sub)
            continue;
        //  A node does not replicate itself.
        if (shoal_sub_id (sub) < 0 && shoal_event_origin (event)
            && memcmp (shoal_event_origin (event), self->id, SHOAL_ID_SIZE) == 0)
            continue;
        if (last) {
            shoal_event_t *copy = shoal_event_dup (event);
            if (copy)
                shoal_sub_on_event (last, &copy, replayed);
        }
        last = sub;
    }
    if (last)
        shoal_sub_on_event (last, event_p, replayed);
    else
        shoal_event_destroy (event_p);
}

static void
s_feed_local (s_engine_t *self, const uint8_t *data, size_t size)
{
    shoal_event_t *event = shoal_event_decode (data, size, 0, NULL);
    if (event)
        s_route_event (self, &event, false, 0);
}

static void
s_sub_count (s_engine_t *self, const char *stream, int delta)
{
    size_t count = (size_t) zhashx_lookup (self->sub_streams, stream);
    char topic[SHOAL_STREAM_MAX + 2];
    snprintf (topic, sizeof topic, "%s/", stream);
    if (delta > 0 && count == 0)
        zsock_set_subscribe (self->sub, topic);
    if (delta < 0 && count == 1)
        zsock_set_unsubscribe (self->sub, topic);
    count += delta;
    if (count)
        zhashx_update (self->sub_streams, stream, (void *) count);
    else
        zhashx_delete (self->sub_streams, stream);
}

//  --------------------------------------------------------------------------
//  Durable consumers

static void
s_durable_destroy (s_durable_t **self_p)
{
    if (!*self_p)
        return;
    s_durable_t *durable = *self_p;
    for (s_acker_t *acker = (s_acker_t *) zlistx_first (durable->ackers); acker;
         acker = (s_acker_t *) zlistx_next (durable->ackers)) {
        free (acker->seqs);
        free (acker->acked);
        free (acker);
    }
    zlistx_destroy (&durable->ackers);
    free (durable);
    *self_p = NULL;
}

static s_durable_t *
s_durable_by_sub (s_engine_t *self, int sub_id)
{
    for (s_durable_t *durable = (s_durable_t *) zlistx_first (self->durables); durable;
         durable = (s_durable_t *) zlistx_next (self->durables))
        if (durable->sub_id == sub_id)
            return durable;
    return NULL;
}

static s_acker_t *
s_acker (s_durable_t *durable, const uint8_t *origin, bool create)
{
    for (s_acker_t *acker = (s_acker_t *) zlistx_first (durable->ackers); acker;
         acker = (s_acker_t *) zlistx_next (durable->ackers))
        if (memcmp (acker->origin, origin, SHOAL_ID_SIZE) == 0)
            return acker;
    if (!create)
        return NULL;
    s_acker_t *acker = (s_acker_t *) zmalloc (sizeof (s_acker_t));
    memcpy (acker->origin, origin, SHOAL_ID_SIZE);
    zlistx_add_end (durable->ackers, acker);
    return acker;
}

//  Records a delivery that will need an acknowledgement.
static void
s_acker_push (s_acker_t *acker, uint64_t seq)
{
    if (acker->count == acker->alloc) {
        size_t alloc = acker->alloc ? 2 * acker->alloc : 64;
        uint64_t *seqs = (uint64_t *) malloc (alloc * sizeof (uint64_t));
        bool *acked = (bool *) malloc (alloc * sizeof (bool));
        for (size_t i = 0; i < acker->count; i++) {
            seqs[i] = acker->seqs[(acker->head + i) % acker->alloc];
            acked[i] = acker->acked[(acker->head + i) % acker->alloc];
        }
        free (acker->seqs);
        free (acker->acked);
        acker->seqs = seqs;
        acker->acked = acked;
        acker->head = 0;
        acker->alloc = alloc;
    }
    size_t at = (acker->head + acker->count++) % acker->alloc;
    acker->seqs[at] = seq;
    acker->acked[at] = false;
}

//  Marks seq (or, cumulative, everything up to it) acknowledged and returns
//  the new cursor: the last seq of the acknowledged front, 0 if unchanged.
static uint64_t
s_acker_ack (s_acker_t *acker, uint64_t seq, bool cumulative)
{
    for (size_t i = 0; i < acker->count; i++) {
        size_t at = (acker->head + i) % acker->alloc;
        if (acker->seqs[at] > seq)
            break;
        if (cumulative || acker->seqs[at] == seq)
            acker->acked[at] = true;
    }
    uint64_t cursor = 0;
    while (acker->count && acker->acked[acker->head]) {
        cursor = acker->seqs[acker->head];
        acker->head = (acker->head + 1) % acker->alloc;
        acker->count--;
    }
    return cursor;
}

static void
s_ack (s_engine_t *self, int sub_id, const uint8_t *origin, uint64_t seq, bool cumulative)
{
    s_durable_t *durable = s_durable_by_sub (self, sub_id);
    s_acker_t *acker = durable ? s_acker (durable, origin, false) : NULL;
    uint64_t cursor = acker ? s_acker_ack (acker, seq, cumulative) : 0;
    if (cursor) {
        shoal_store_cursor_set (self->store, durable->consumer, origin, durable->stream, cursor);
        if (self->cursors_dirty_ms < 0)
            self->cursors_dirty_ms = s_now ();
    }
}

//  Writes cursors that changed (atomically, one file per consumer).
static int
s_cursors_flush (s_engine_t *self)
{
    self->cursors_dirty_ms = -1;
    if (!shoal_store_cursors_dirty (self->store))
        return 0;
    if (shoal_store_cursors_flush (self->store)) {
        s_log (self, S_ERROR, "cannot write consumer cursors in %s", self->config->data_dir);
        self->cursors_dirty_ms = s_now ();
        return -1;
    }
    return 0;
}

//  Deletes a consumer: its cursors, and the bond of its live
//  subscriptions to it. They go on as plain subscriptions; their
//  acknowledgements must not make the consumer again. 0, or -1 when
//  there is no such consumer.
static int
s_consumer_delete (s_engine_t *self, const char *consumer)
{
    if (shoal_store_consumer_delete (self->store, consumer))
        return -1;
    s_durable_t *durable = (s_durable_t *) zlistx_first (self->durables);
    while (durable) {
        if (streq (durable->consumer, consumer)) {
            zlistx_delete (self->durables, zlistx_cursor (self->durables));
            durable = (s_durable_t *) zlistx_first (self->durables);
        }
        else
            durable = (s_durable_t *) zlistx_next (self->durables);
    }
    return 0;
}

//  The start of a durable consumer: after its cursor for each origin it
//  has one for, from the beginning for the others.
static void
s_durable_start (s_engine_t *self, shoal_engine_sub_t *request)
{
    const char *consumer = request->consumer;
    size_t count = shoal_store_consumer_cursor_count (self->store, consumer);
    request->origins = (uint8_t (*)[SHOAL_ID_SIZE]) zmalloc ((count + 1) * SHOAL_ID_SIZE);
    request->seqs = (uint64_t *) zmalloc ((count + 1) * sizeof (uint64_t));
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        const char *stream;
        uint64_t seq;
        if (shoal_store_consumer_cursor_at (self->store, consumer, i, request->origins[n], &stream,
                                            &seq)
                == 0
            && streq (stream, request->stream))
            request->seqs[n++] = seq + 1;
    }
    request->from =
        (shoal_from_t){SHOAL_FROM_SEQ, 1, 0, (const uint8_t (*)[SHOAL_ID_SIZE]) request->origins,
                       request->seqs,  n};
    //  A consumer exists from its first subscription on, cursor or not.
    shoal_store_cursor_set (self->store, consumer, self->id, request->stream, 0);
}

//  --------------------------------------------------------------------------
//  Replication

static void s_sub_count (s_engine_t *self, const char *stream, int delta);

//  Starts replicating a stream: an internal subscription from where each
//  replica log ends (from the beginning for origins with none), whose
//  deliveries go into replica logs instead of the inbox.
static void
s_replicate_stream (s_engine_t *self, const char *stream)
{
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs))
        if (shoal_sub_id (sub) < 0 && streq (shoal_sub_stream (sub), stream))
            return; //  already
    size_t count = shoal_store_log_count (self->store);
    if (count >= self->config->max_logs) {
        self->stats.logs_refused++;
        return;
    }
    uint8_t (*origins)[SHOAL_ID_SIZE] =
        (uint8_t (*)[SHOAL_ID_SIZE]) zmalloc ((count + 1) * SHOAL_ID_SIZE);
    uint64_t *seqs = (uint64_t *) zmalloc ((count + 1) * sizeof (uint64_t));
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        shoal_log_t *log = shoal_store_log_at (self->store, i);
        if (streq (shoal_log_stream (log), stream)
            && memcmp (shoal_log_origin (log), self->id, SHOAL_ID_SIZE) != 0
            && shoal_log_head (log) > 0) {
            memcpy (origins[n], shoal_log_origin (log), SHOAL_ID_SIZE);
            seqs[n++] = shoal_log_head (log) + 1;
        }
    }
    shoal_from_t from = {SHOAL_FROM_SEQ, 1, 0, (const uint8_t (*)[SHOAL_ID_SIZE]) origins, seqs, n};
    shoal_sub_t *sub = shoal_sub_new (--self->next_replica_id, stream, NULL, &from,
                                      shoal_time_ns (), self->config->reorder_limit);
    free (origins);
    free (seqs);
    if (!sub)
        return;
    zlistx_add_end (self->subs, sub);
    s_sub_count (self, stream, +1);
    s_log (self, S_INFO, "replicating stream %s", stream);
}

//  Appends what a replication subscription delivers to the replica logs:
//  the same bytes as the origin's (canonical encoding), the same seqs.
static void
s_replica_append (s_engine_t *self, shoal_sub_t *sub)
{
    shoal_event_t *event;
    while ((event = shoal_sub_pop (sub))) {
        const uint8_t *origin = shoal_event_origin (event);
        if (memcmp (origin, self->id, SHOAL_ID_SIZE) != 0) {
            int error;
            shoal_log_t *log =
                shoal_store_log (self->store, origin, shoal_event_stream (event), true, &error);
            uint64_t seq = shoal_event_seq (event);
            if (log && shoal_log_head (log) > 0 && seq > shoal_log_head (log) + 1) {
                //  The subscription skips a range only when the origin
                //  trimmed it: a replica has no holes, so it starts again
                //  where the origin's history now starts.
                s_log (self, S_WARNING,
                       "replica of %s: seqs %" PRIu64 "..%" PRIu64
                       " were trimmed at the origin; the replica restarts at %" PRIu64,
                       shoal_event_stream (event), shoal_log_head (log) + 1, seq - 1, seq);
                if (shoal_log_reset (log))
                    s_log (self, S_ERROR, "replica of %s: %s", shoal_event_stream (event),
                           shoal_log_error_text (log));
            }
            uint8_t *data;
            size_t size;
            if (log && seq > shoal_log_head (log)
                && shoal_event_encode (event, &data, &size) == 0) {
                if (shoal_log_append (log, seq, shoal_event_time_ns (event), data, size))
                    s_log (self, S_ERROR, "replica of %s: %s", shoal_event_stream (event),
                           shoal_log_error_text (log));
                free (data);
            }
        }
        shoal_event_destroy (&event);
    }
}

static void
s_subscribe (s_engine_t *self, shoal_engine_sub_t *request)
{
    if (request->consumer[0])
        s_durable_start (self, request);
    shoal_sub_t *sub =
        shoal_sub_new (request->id, request->stream, request->type[0] ? request->type : NULL,
                       &request->from, shoal_time_ns (), self->config->reorder_limit);
    free (request->origins);
    free (request->seqs);
    if (!sub) {
        free (request);
        return;
    }
    //  Origins known now: "now" starts each after its head.
    size_t length = strlen (request->stream);
    for (uint64_t *head = (uint64_t *) zhashx_first (self->heads); head;
         head = (uint64_t *) zhashx_next (self->heads)) {
        const char *key = (const char *) zhashx_cursor (self->heads);
        uint8_t origin[SHOAL_ID_SIZE];
        if (strlen (key) == 2 * SHOAL_ID_SIZE + 1 + length
            && strcmp (key + 2 * SHOAL_ID_SIZE + 1, request->stream) == 0) {
            char hex[2 * SHOAL_ID_SIZE + 1];
            memcpy (hex, key, 2 * SHOAL_ID_SIZE);
            hex[2 * SHOAL_ID_SIZE] = 0;
            if (shoal_id_from_hex (hex, origin) == 0)
                shoal_sub_origin_known (sub, origin, *head);
        }
    }
    s_own_t *own = s_own (self, request->stream, false);
    if (own)
        shoal_sub_origin_known (sub, self->id, own->sent);
    else {
        //  An own log that exists but saw no publish since start.
        int error;
        shoal_log_t *log = shoal_store_log (self->store, self->id, request->stream, false, &error);
        if (log)
            shoal_sub_origin_known (sub, self->id, shoal_log_durable (log));
    }
    zlistx_add_end (self->subs, sub);
    s_sub_count (self, request->stream, +1);
    if (request->consumer[0]) {
        s_durable_t *durable = (s_durable_t *) zmalloc (sizeof (s_durable_t));
        durable->sub_id = request->id;
        snprintf (durable->consumer, sizeof durable->consumer, "%s", request->consumer);
        snprintf (durable->stream, sizeof durable->stream, "%s", request->stream);
        durable->ackers = zlistx_new ();
        zlistx_add_end (self->durables, durable);
    }
    free (request);
}

static void
s_sub_totals (s_engine_t *self, shoal_sub_t *sub)
{
    shoal_sub_stats_t stats;
    shoal_sub_stats (sub, &stats);
    self->sub_totals.delivered += stats.delivered;
    self->sub_totals.gaps_detected += stats.gaps_detected;
    self->sub_totals.events_repaired += stats.events_repaired;
    self->sub_totals.duplicates_dropped += stats.duplicates_dropped;
    self->sub_totals.deferred += stats.deferred;
}

static void
s_unsubscribe (s_engine_t *self, int id)
{
    shoal_sub_t *sub = s_sub_by_id (self, id);
    if (!sub)
        return;
    s_sub_count (self, shoal_sub_stream (sub), -1);
    s_sub_totals (self, sub);
    zlistx_delete (self->subs, zlistx_cursor (self->subs));
    s_durable_t *durable = s_durable_by_sub (self, id);
    if (durable) {
        zlistx_detach_cur (self->durables);
        s_durable_destroy (&durable);
    }
}

//  Moves ready events of every subscription into the inbox.
static void
s_deliver (s_engine_t *self)
{
    shoal_inbox_t *inbox = self->args->inbox;
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs)) {
        if (shoal_sub_id (sub) < 0) {
            s_replica_append (self, sub);
            continue;
        }
        s_durable_t *durable = s_durable_by_sub (self, shoal_sub_id (sub));
        //  In runs, each under one lock of the inbox and no longer than its
        //  room (the engine is its only producer, so room only grows).
        while (shoal_sub_ready (sub) > 0) {
            size_t room = shoal_inbox_room (inbox); //  0 marks it full: space is signalled
            if (room == 0) {
                self->waiting_space = true;
                return;
            }
            shoal_event_t *run[256];
            size_t count = 0;
            while (count < room && count < sizeof run / sizeof run[0]
                   && (run[count] = shoal_sub_pop (sub)))
                count++;
            for (size_t i = 0; durable && i < count; i++)
                s_acker_push (s_acker (durable, shoal_event_origin (run[i]), true),
                              shoal_event_seq (run[i]));
            shoal_inbox_push_many (inbox, shoal_sub_id (sub), run, count);
        }
    }
}

//  Serves a repair from a log this node holds (its own, or a replica),
//  directly, without the network.
static void
s_repair_local (s_engine_t *self, shoal_sub_t *sub, const shoal_sub_repair_t *repair)
{
    int error;
    shoal_log_t *log =
        shoal_store_log (self->store, repair->origin, shoal_sub_stream (sub), false, &error);
    if (!log) {
        shoal_sub_on_repair_error (sub, repair->origin, SHOAL_WIRE_UNKNOWN);
        return;
    }
    uint64_t durable = shoal_log_durable (log);
    uint64_t from = repair->from_seq;
    if (from == 0)
        from = shoal_log_seek_time (log, repair->from_time_ns);
    if (from < shoal_log_first (log)) {
        shoal_sub_on_repair_error (sub, repair->origin, SHOAL_WIRE_UNAVAILABLE);
        return;
    }
    uint64_t to = repair->to_seq && repair->to_seq < durable ? repair->to_seq : durable;
    uint64_t next = from;
    if (from <= to) {
        shoal_log_iter_t *iter = shoal_log_iter_new (log, from, to);
        uint64_t seq;
        int64_t time_ns;
        const uint8_t *data;
        size_t size;
        uint32_t sent = 0;
        while (iter && sent < repair->credit
               && shoal_log_iter_next (iter, &seq, &time_ns, &data, &size) == 1) {
            shoal_event_t *event = shoal_event_decode (data, size, 0, NULL);
            if (event)
                shoal_sub_on_event (sub, &event, true);
            next = seq + 1;
            sent++;
        }
        shoal_log_iter_destroy (&iter);
    }
    shoal_sub_on_batch (sub, repair->origin, next, next > to, durable);
}

static shoal_peer_t *
s_peer_by_id (s_engine_t *self, const uint8_t *id)
{
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers))
        if (shoal_peer_has_id (peer) && memcmp (shoal_peer_id (peer), id, SHOAL_ID_SIZE) == 0)
            return peer;
    return NULL;
}

//  A connected peer that replicates stream (and is not origin itself).
static shoal_peer_t *
s_replica_peer (s_engine_t *self, const char *stream, const uint8_t *origin)
{
    int64_t now = s_now ();
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers))
        if (shoal_peer_replicates (peer, stream) && shoal_peer_has_id (peer)
            && memcmp (shoal_peer_id (peer), origin, SHOAL_ID_SIZE) != 0
            && shoal_peer_state (peer, now, self->config->suspect_ms, self->config->expiry_ms)
                   == SHOAL_PEER_CONNECTED)
            return peer;
    return NULL;
}

//  Sends the repairs the subscriptions want.
static void
s_repairs (s_engine_t *self)
{
    int64_t now = s_now ();
    int timeout = S_REPAIR_TIMEOUT_MS;
    if (s_test_bug ("skip-repair")) //  TEST ONLY
        return;
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs)) {
        shoal_sub_repair_t repair;
        int rounds = 0;
        while (rounds++ < 64 && shoal_sub_next_repair (sub, now, timeout, &repair)) {
            //  From the origin while it answers; else from a replica: this
            //  node's own, or a peer's that replicates the stream.
            shoal_peer_t *peer = NULL;
            if (memcmp (repair.origin, self->id, SHOAL_ID_SIZE) != 0) {
                peer = s_peer_by_id (self, repair.origin);
                if (peer
                    && shoal_peer_state (peer, now, self->config->suspect_ms,
                                         self->config->expiry_ms)
                           != SHOAL_PEER_CONNECTED)
                    peer = NULL;
            }
            int error;
            if (!peer && shoal_sub_id (sub) > 0
                && shoal_store_log (self->store, repair.origin, shoal_sub_stream (sub), false,
                                    &error)) {
                s_repair_local (self, sub, &repair);
                continue;
            }
            if (!peer)
                peer = s_replica_peer (self, shoal_sub_stream (sub), repair.origin);
            if (!peer) {
                shoal_sub_on_repair_error (sub, repair.origin, 0);
                continue;
            }
            Shoal__V1__ReplayRequest body = SHOAL__V1__REPLAY_REQUEST__INIT;
            body.origin.data = repair.origin;
            body.origin.len = SHOAL_ID_SIZE;
            body.stream = (char *) shoal_sub_stream (sub);
            body.from_seq = repair.from_seq;
            body.from_time_ns = repair.from_time_ns;
            body.to_seq = repair.to_seq;
            body.credit = repair.credit;
            Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
            request.request_id = ++self->next_request_id;
            request.body_case = SHOAL__V1__REQUEST__BODY_REPLAY;
            request.replay = &body;
            zframe_t *frame = shoal_wire_pack_request (&request);
            if (shoal_peer_send (peer, &frame)) {
                shoal_sub_on_repair_error (sub, repair.origin, 0);
                continue;
            }
            s_pending_t *pending = (s_pending_t *) zmalloc (sizeof (s_pending_t));
            pending->sub_id = shoal_sub_id (sub);
            memcpy (pending->origin, repair.origin, SHOAL_ID_SIZE);
            pending->sent_ms = now;
            char key[24];
            snprintf (key, sizeof key, "%" PRIu64, request.request_id);
            zhashx_update (self->pending, key, pending);
        }
    }
}

//  --------------------------------------------------------------------------
//  Peers

static void
s_peer_remove (s_engine_t *self, shoal_peer_t *peer, bool damp)
{
    const char *pub = shoal_peer_pub_endpoint (peer);
    if (pub)
        zsock_disconnect (self->sub, "%s", pub);
    if (damp && shoal_peer_has_id (peer)) {
        char hex[2 * SHOAL_ID_SIZE + 1];
        shoal_id_to_hex (shoal_peer_id (peer), hex);
        s_gone_t *gone = (s_gone_t *) zhashx_lookup (self->gone, hex);
        if (!gone) {
            gone = (s_gone_t *) zmalloc (sizeof (s_gone_t));
            zhashx_insert (self->gone, hex, gone);
        }
        int64_t now = s_now ();
        gone->count = now - gone->last_gone_ms < S_DAMP_WINDOW_MS ? gone->count + 1 : 1;
        gone->last_gone_ms = now;
        int64_t hold = gone->count >= 2 ? (int64_t) 1000 << (gone->count - 2) : 0;
        gone->hold_until_ms = now + (hold < S_DAMP_MAX_MS ? hold : S_DAMP_MAX_MS);
        s_log (self, S_INFO, "peer %s (%s) is gone", shoal_peer_name (peer), hex);
    }
    void *handle = zlistx_find (self->peers, peer);
    if (handle)
        zlistx_delete (self->peers, handle);
    self->peers_changed = true;
}

static bool
s_known_endpoint (s_engine_t *self, const char *endpoint)
{
    if (strchr (endpoint, '#')) {
        char plain[128], key[SHOAL_KEY_TEXT_SIZE];
        if (shoal_secure_split (NULL, endpoint, plain, sizeof plain, key) == 0)
            return s_known_endpoint (self, plain);
    }
    if (strcmp (endpoint, self->args->router_endpoint) == 0)
        return true;
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers))
        if (strcmp (shoal_peer_router_endpoint (peer), endpoint) == 0)
            return true;
    return false;
}

static void s_send_hello (s_engine_t *self, shoal_peer_t *peer);

//  How a peer is named to others (peer exchange, Status): its ROUTER
//  endpoint, with "#KEY" in secure mode. Caller owns return value.
static char *
s_peer_spec (s_engine_t *self, shoal_peer_t *peer)
{
    if (self->secure && *shoal_peer_key (peer))
        return zsys_sprintf ("%s#%s", shoal_peer_router_endpoint (peer), shoal_peer_key (peer));
    return strdup (shoal_peer_router_endpoint (peer));
}

static shoal_peer_t *
s_peer_add (s_engine_t *self, const char *router_endpoint, bool is_static)
{
    if (s_known_endpoint (self, router_endpoint))
        return NULL;
    //  Limit: beacons, Hellos and peer exchange add peers up to max_peers;
    //  the operator's static peers always get in.
    if (!is_static && zlistx_size (self->peers) >= self->config->max_peers) {
        self->stats.peers_refused++;
        return NULL;
    }
    //  Secure mode: the endpoint carries the peer's key (ENDPOINT#KEY),
    //  which must be in the allow-list; without a key, no connection.
    char plain[128], key[SHOAL_KEY_TEXT_SIZE] = "";
    if (shoal_secure_split (self->secure, router_endpoint, plain, sizeof plain, key)) {
        s_log (self, S_WARNING,
               "ignoring peer %s: after # comes the peer's public key (Z85) or the name of "
               "its certificate in the keys directory",
               router_endpoint);
        return NULL;
    }
    if (self->secure && !*key) {
        s_log (self, S_WARNING,
               "ignoring peer %s: in secure mode a peer endpoint needs its key: "
               "tcp://HOST:PORT#KEY (Z85) or #NAME (a certificate in the keys directory)",
               router_endpoint);
        return NULL;
    }
    if (self->secure && !shoal_secure_allowed (self->secure, key)) {
        s_log (self, S_INFO, "ignoring peer %s: its key is not in the allow-list", plain);
        return NULL;
    }
    shoal_peer_t *peer = shoal_peer_new_secure (plain, is_static, self->config->sndhwm, s_now (),
                                                self->secure, self->secure ? key : NULL);
    if (!peer) {
        s_log (self, S_WARNING, "ignoring peer endpoint %s (expected tcp://HOST:PORT)",
               router_endpoint);
        return NULL;
    }
    //  A peer's responses are at most a batch of replay_batch_bytes or one
    //  event; anything bigger ends the connection.
    zsock_set_maxmsgsize (
        shoal_peer_dealer (peer),
        (int64_t) (self->config->max_event_size + self->config->replay_batch_bytes + 65536));
    zlistx_add_end (self->peers, peer);
    self->peers_changed = true;
    s_send_hello (self, peer);
    return peer;
}

static void
s_peer_connect_pub (s_engine_t *self, shoal_peer_t *peer)
{
    const char *pub = shoal_peer_pub_endpoint (peer);
    if (pub && self->secure)
        shoal_secure_client (self->secure, self->sub, shoal_peer_key (peer));
    if (pub && zsock_connect (self->sub, "%s", pub))
        s_log (self, S_WARNING, "cannot connect to %s", pub);
}

//  Connects SUB to the PUB port a peer announces; a peer that restarted
//  on the same ROUTER endpoint may announce another one, and then the old
//  connection hears nothing more (no events, no heartbeats).
static void
s_peer_pub_update (s_engine_t *self, shoal_peer_t *peer, uint32_t pub_port)
{
    if (pub_port == 0 || pub_port >= 65536)
        return;
    const char *old = shoal_peer_pub_endpoint (peer);
    const char *colon = old ? strrchr (old, ':') : NULL;
    if (colon && (uint32_t) atoi (colon + 1) == pub_port)
        return;
    if (old)
        zsock_disconnect (self->sub, "%s", old);
    shoal_peer_set_pub_port (peer, (int) pub_port);
    s_peer_connect_pub (self, peer);
}

static void
s_send_hello (s_engine_t *self, shoal_peer_t *peer)
{
    Shoal__V1__Hello hello = SHOAL__V1__HELLO__INIT;
    hello.node.data = self->id;
    hello.node.len = SHOAL_ID_SIZE;
    hello.name = (char *) self->config->name;
    hello.mesh = (char *) self->config->mesh;
    hello.pub_port = (uint32_t) self->pub_port;
    hello.router_port = (uint32_t) self->router_port;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    hello.n_replicates = self->config->replicate_count;
    hello.replicates = (char **) self->config->replicate;
    request.request_id = ++self->next_request_id;
    request.body_case = SHOAL__V1__REQUEST__BODY_HELLO;
    request.hello = &hello;
    zframe_t *frame = shoal_wire_pack_request (&request);
    shoal_peer_send (peer, &frame);
}

static void
s_send_ping (s_engine_t *self, shoal_peer_t *peer)
{
    Shoal__V1__Ping ping = SHOAL__V1__PING__INIT;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = ++self->next_request_id;
    request.body_case = SHOAL__V1__REQUEST__BODY_PING;
    request.ping = &ping;
    zframe_t *frame = shoal_wire_pack_request (&request);
    shoal_peer_send (peer, &frame);
}

//  A peer told us who it is (Hello reply, or a Hello it sent us).
//  Returns false when the peer entry was dropped (it is us, or a duplicate).
static bool
s_peer_identify (s_engine_t *self, shoal_peer_t *peer, const uint8_t *id, const char *name,
                 uint32_t pub_port)
{
    if (memcmp (id, self->id, SHOAL_ID_SIZE) == 0) {
        s_peer_remove (self, peer, false); //  an endpoint of our own
        return false;
    }
    shoal_peer_t *other = s_peer_by_id (self, id);
    if (other && other != peer) {
        //  Known already under another endpoint: keep the first.
        shoal_peer_touch (other, s_now ());
        s_peer_remove (self, peer, false);
        return false;
    }
    shoal_peer_set_identity (peer, id, name);
    s_peer_pub_update (self, peer, pub_port);
    if (!shoal_peer_greeted (peer)) {
        shoal_peer_set_greeted (peer, true);
        char hex[2 * SHOAL_ID_SIZE + 1];
        shoal_id_to_hex (id, hex);
        s_log (self, S_INFO, "connected to peer %s (%s) at %s", name, hex,
               shoal_peer_router_endpoint (peer));
    }
    shoal_peer_touch (peer, s_now ());
    return true;
}

static void
s_on_beacon (s_engine_t *self, const char *ip, const shoal_beacon_msg_t *msg)
{
    if (memcmp (msg->node, self->id, SHOAL_ID_SIZE) == 0)
        return;
    char key[SHOAL_KEY_TEXT_SIZE] = "";
    if (self->secure) {
        //  Only members are discovered: a beacon needs a key in the allow-list.
        if (msg->has_key)
            zmq_z85_encode (key, msg->key, SHOAL_KEY_SIZE);
        if (!msg->has_key || !shoal_secure_allowed (self->secure, key)) {
            self->beacons_refused++;
            return;
        }
    }
    shoal_peer_t *peer = s_peer_by_id (self, msg->node);
    char endpoint[96];
    snprintf (endpoint, sizeof endpoint, "tcp://%s:%u", ip, msg->router_port);
    if (msg->leaving) {
        if (peer)
            s_peer_remove (self, peer, false);
        return;
    }
    if (peer) {
        if (strcmp (shoal_peer_router_endpoint (peer), endpoint) == 0) {
            shoal_peer_touch (peer, s_now ());
            return;
        }
        //  Same id, new ports: the peer restarted. Reconnect.
        s_peer_remove (self, peer, false);
    }
    char hex[2 * SHOAL_ID_SIZE + 1];
    shoal_id_to_hex (msg->node, hex);
    s_gone_t *gone = (s_gone_t *) zhashx_lookup (self->gone, hex);
    if (gone && s_now () < gone->hold_until_ms)
        return; //  flapping: held off for now
    if (*key) {
        size_t length = strlen (endpoint);
        snprintf (endpoint + length, sizeof endpoint - length, "#%s", key);
    }
    peer = s_peer_add (self, endpoint, false);
    if (peer) {
        shoal_peer_set_identity (peer, msg->node, NULL);
        shoal_peer_set_pub_port (peer, msg->pub_port);
        s_peer_connect_pub (self, peer);
    }
}

static void
s_check_peers (s_engine_t *self)
{
    int64_t now = s_now ();
    shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers);
    while (peer) {
        shoal_peer_t *next = (shoal_peer_t *) zlistx_next (self->peers);
        shoal_peer_state_t state =
            shoal_peer_state (peer, now, self->config->suspect_ms, self->config->expiry_ms);
        if (state == SHOAL_PEER_GONE) {
            if (shoal_peer_is_static (peer)) {
                //  Static peers stay: ZeroMQ reconnects, Hello goes again.
                if (shoal_peer_greeted (peer))
                    s_log (self, S_INFO, "static peer %s is silent",
                           shoal_peer_router_endpoint (peer));
                shoal_peer_set_greeted (peer, false);
                shoal_peer_touch (peer, now);
            }
            else
                s_peer_remove (self, peer, true);
        }
        //  zlistx_next continues from the cursor, which removal moved.
        peer = next;
        if (peer)
            zlistx_find (self->peers, peer);
    }
}

//  --------------------------------------------------------------------------
//  ROUTER: requests from peers and clients

static void
s_handle_hello (s_engine_t *self, zframe_t *routing_id, zframe_t *payload, uint64_t request_id,
                const Shoal__V1__Hello *hello)
{
    if (hello->node.len != SHOAL_ID_SIZE) {
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_BAD_REQUEST,
                       "Hello.node must be 16 bytes");
        return;
    }
    if (strcmp (hello->mesh, self->config->mesh) != 0) {
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_NOT_ALLOWED,
                       "Hello from another mesh");
        return;
    }
    //  Learn the caller as a peer, if it is a node and new to us.
    const char *address = zframe_meta (payload, "Peer-Address");
    if (memcmp (hello->node.data, self->id, SHOAL_ID_SIZE) != 0 && address && hello->router_port > 0
        && hello->router_port < 65536) {
        shoal_peer_t *peer = s_peer_by_id (self, hello->node.data);
        if (peer) {
            shoal_peer_touch (peer, s_now ());
            shoal_peer_set_replicates (peer, hello->replicates, hello->n_replicates);
            s_peer_pub_update (self, peer, hello->pub_port);
        }
        else {
            char endpoint[96];
            snprintf (endpoint, sizeof endpoint, "tcp://%s:%u", address, hello->router_port);
            //  Secure mode: the caller's key is the one ZAP checked.
            const char *key = self->secure ? zframe_meta (payload, "User-Id") : NULL;
            if (key && shoal_secure_key_valid (key)) {
                size_t length = strlen (endpoint);
                snprintf (endpoint + length, sizeof endpoint - length, "#%s", key);
            }
            peer = s_peer_add (self, endpoint, false);
            if (peer) {
                shoal_peer_set_identity (peer, hello->node.data, hello->name);
                shoal_peer_set_replicates (peer, hello->replicates, hello->n_replicates);
                if (hello->pub_port > 0 && hello->pub_port < 65536) {
                    shoal_peer_set_pub_port (peer, (int) hello->pub_port);
                    s_peer_connect_pub (self, peer);
                }
            }
        }
    }
    size_t count = zlistx_size (self->peers);
    char **known = (char **) zmalloc ((count ? count : 1) * sizeof (char *));
    size_t n = 0;
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers))
        if (shoal_peer_greeted (peer))
            known[n++] = s_peer_spec (self, peer);
    Shoal__V1__Hello reply = SHOAL__V1__HELLO__INIT;
    reply.node.data = self->id;
    reply.node.len = SHOAL_ID_SIZE;
    reply.name = (char *) self->config->name;
    reply.mesh = (char *) self->config->mesh;
    reply.pub_port = (uint32_t) self->pub_port;
    reply.router_port = (uint32_t) self->router_port;
    reply.n_known_peers = n;
    reply.known_peers = known;
    reply.n_replicates = self->config->replicate_count;
    reply.replicates = (char **) self->config->replicate;
    Shoal__V1__Response response = SHOAL__V1__RESPONSE__INIT;
    response.request_id = request_id;
    response.body_case = SHOAL__V1__RESPONSE__BODY_HELLO;
    response.hello = &reply;
    zframe_t *frame = shoal_wire_pack_response (&response);
    s_send_response (self, routing_id, &frame);
    for (size_t i = 0; i < n; i++)
        free (known[i]);
    free (known);
}

static void s_stats_fill (s_engine_t *self, shoal_node_stats_t *stats);

static void
s_handle_status (s_engine_t *self, zframe_t *routing_id, uint64_t request_id)
{
    size_t log_count = shoal_store_log_count (self->store);
    Shoal__V1__LogHead *heads = (Shoal__V1__LogHead *) zmalloc ((log_count + 1) * sizeof *heads);
    Shoal__V1__LogHead **head_ptrs =
        (Shoal__V1__LogHead **) zmalloc ((log_count + 1) * sizeof (void *));
    for (size_t i = 0; i < log_count; i++) {
        shoal_log_t *log = shoal_store_log_at (self->store, i);
        Shoal__V1__LogHead init = SHOAL__V1__LOG_HEAD__INIT;
        heads[i] = init;
        heads[i].origin.data = (uint8_t *) shoal_log_origin (log);
        heads[i].origin.len = SHOAL_ID_SIZE;
        heads[i].stream = (char *) shoal_log_stream (log);
        heads[i].first_seq = shoal_log_first (log);
        heads[i].head_seq = shoal_log_durable (log);
        head_ptrs[i] = &heads[i];
    }
    size_t peer_count = zlistx_size (self->peers);
    Shoal__V1__PeerInfo *peers = (Shoal__V1__PeerInfo *) zmalloc ((peer_count + 1) * sizeof *peers);
    Shoal__V1__PeerInfo **peer_ptrs =
        (Shoal__V1__PeerInfo **) zmalloc ((peer_count + 1) * sizeof (void *));
    size_t n = 0;
    int64_t now = s_now ();
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers), n++) {
        Shoal__V1__PeerInfo init = SHOAL__V1__PEER_INFO__INIT;
        peers[n] = init;
        if (shoal_peer_has_id (peer)) {
            peers[n].node.data = (uint8_t *) shoal_peer_id (peer);
            peers[n].node.len = SHOAL_ID_SIZE;
        }
        peers[n].name = (char *) shoal_peer_name (peer);
        peers[n].endpoint = s_peer_spec (self, peer);
        peers[n].state = (char *) shoal_peer_state_name (
            shoal_peer_state (peer, now, self->config->suspect_ms, self->config->expiry_ms));
        peer_ptrs[n] = &peers[n];
    }
    shoal_node_stats_t stats;
    s_stats_fill (self, &stats);
    struct {
        const char *name;
        uint64_t value;
    } counters[] = {
        {"published", stats.published},
        {"delivered", stats.delivered},
        {"gaps_detected", stats.gaps_detected},
        {"events_repaired", stats.events_repaired},
        {"duplicates_dropped", stats.duplicates_dropped},
        {"bad_requests", stats.bad_requests},
        {"replays_served", stats.replays_served},
        {"events_served", stats.events_served},
        {"peers", stats.peers},
        {"auth_refused", stats.auth_refused},
        {"peers_refused", stats.peers_refused},
        {"replays_refused", stats.replays_refused},
        {"replays_evicted", stats.replays_evicted},
        {"events_deferred", stats.events_deferred},
        {"logs_refused", stats.logs_refused},
    };
    size_t counter_count = sizeof counters / sizeof counters[0];
    Shoal__V1__StatusReply__CountersEntry entries[sizeof counters / sizeof counters[0]];
    Shoal__V1__StatusReply__CountersEntry *entry_ptrs[sizeof counters / sizeof counters[0]];
    for (size_t i = 0; i < counter_count; i++) {
        Shoal__V1__StatusReply__CountersEntry init = SHOAL__V1__STATUS_REPLY__COUNTERS_ENTRY__INIT;
        entries[i] = init;
        entries[i].key = (char *) counters[i].name;
        entries[i].value = counters[i].value;
        entry_ptrs[i] = &entries[i];
    }
    Shoal__V1__StatusReply reply = SHOAL__V1__STATUS_REPLY__INIT;
    reply.node.data = self->id;
    reply.node.len = SHOAL_ID_SIZE;
    reply.name = (char *) self->config->name;
    reply.n_logs = log_count;
    reply.logs = head_ptrs;
    reply.n_peers = n;
    reply.peers = peer_ptrs;
    reply.n_counters = counter_count;
    reply.counters = entry_ptrs;
    Shoal__V1__Response response = SHOAL__V1__RESPONSE__INIT;
    response.request_id = request_id;
    response.body_case = SHOAL__V1__RESPONSE__BODY_STATUS;
    response.status = &reply;
    zframe_t *frame = shoal_wire_pack_response (&response);
    s_send_response (self, routing_id, &frame);
    free (heads);
    free (head_ptrs);
    for (size_t i = 0; i < n; i++)
        free (peers[i].endpoint);
    free (peers);
    free (peer_ptrs);
}

//  Fills the dedupe window of an own stream from the tail of its log, so
//  a client that retries after this node restarted is still recognised.
static void
s_dedupe_load (s_engine_t *self, s_own_t *own)
{
    own->dedupe_loaded = true;
    uint64_t head = shoal_log_head (own->log);
    uint64_t window = self->config->dedupe_window;
    uint64_t from = head > window ? head - window + 1 : 1;
    if (from < shoal_log_first (own->log))
        from = shoal_log_first (own->log);
    shoal_log_iter_t *iter = shoal_log_iter_new (own->log, from, head);
    uint64_t seq;
    int64_t time_ns;
    const uint8_t *data;
    size_t size;
    while (iter && shoal_log_iter_next (iter, &seq, &time_ns, &data, &size) == 1) {
        shoal_event_peek_t peek;
        if (shoal_event_peek (data, size, &peek) == 0 && peek.id)
            shoal_dedupe_insert (own->dedupe, peek.id, seq);
    }
    shoal_log_iter_destroy (&iter);
}

static int s_outbox_read (s_engine_t *self);

//  A thin client publishes through this node: the node is the origin.
//  Returns 0, or 1 when the heads lock was busy and the request must be
//  tried again (the caller keeps it).
static int
s_handle_publish (s_engine_t *self, zframe_t *routing_id, uint64_t request_id,
                  const Shoal__V1__PublishRequest *publish)
{
    if (!publish->event) {
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_BAD_REQUEST,
                       "PublishRequest.event is missing");
        return 0;
    }
    //  Re-encode the event and decode it with the strict codec, so a thin
    //  client's event gets exactly the checks of every other input.
    size_t raw_size = shoal__v1__event__get_packed_size (publish->event);
    if (raw_size > self->config->max_event_size) {
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_TOO_LARGE,
                       "event larger than this node's maximum event size");
        return 0;
    }
    uint8_t *raw = (uint8_t *) malloc (raw_size ? raw_size : 1);
    shoal__v1__event__pack (publish->event, raw);
    int error = 0;
    shoal_event_t *event = shoal_event_decode (raw, raw_size, self->config->max_event_size, &error);
    free (raw);
    if (!event) {
        char message[200];
        snprintf (message, sizeof message, "invalid event: %s", shoal_strerror (error));
        s_reply_error (self, routing_id, request_id, shoal_error_wire_code (error), message);
        return 0;
    }
    if (!shoal_event_id (event))
        shoal_event_generate_id (event);
    const char *stream = shoal_event_stream (event);
    if (!zhashx_lookup (self->own, stream)
        && shoal_store_log_count (self->store) >= self->config->max_logs) {
        shoal_event_destroy (&event);
        self->stats.logs_refused++;
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_BUSY,
                       "this node holds as many logs as it may (max_logs): no new stream");
        return 0;
    }
    s_own_t *own = s_own (self, stream, true);
    if (!own || shoal_log_failed (own->log)) {
        shoal_event_destroy (&event);
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_STORAGE,
                       "storage failure: the stream's log cannot be written");
        return 0;
    }
    if (!own->dedupe_loaded)
        s_dedupe_load (self, own);
    uint64_t first = shoal_dedupe_lookup (own->dedupe, shoal_event_id (event));
    if (first) {
        s_ack_t *ack = (s_ack_t *) zmalloc (sizeof (s_ack_t));
        ack->routing_id = zframe_dup (routing_id);
        ack->request_id = request_id;
        ack->seq = first;
        ack->duplicate = true;
        zlistx_add_end (own->acks, ack);
        shoal_event_destroy (&event);
        return 0;
    }
    //  Take the next seq as the facade does. Every seq the facade took
    //  before we got the lock is already in the pipe: read them first so
    //  the log receives seqs in order.
    if (!shoal_heads_try_lock (self->args->heads)) {
        shoal_event_destroy (&event);
        return 1;
    }
    s_outbox_read (self);
    uint64_t seq = shoal_heads_take (self->args->heads, stream);
    shoal_event_set_origin (event, self->id);
    shoal_event_set_seq (event, seq);
    shoal_event_set_time_ns (event, shoal_time_ns ());
    uint8_t *data;
    size_t size;
    int rc = seq == 0 ? -1 : shoal_event_encode (event, &data, &size);
    if (rc == 0) {
        const char *type = shoal_event_type (event);
        rc = s_own_append (self, own, seq, data, size, shoal_event_time_ns (event), type,
                           strlen (type));
        free (data);
    }
    shoal_heads_unlock (self->args->heads);
    if (rc) {
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_STORAGE,
                       "storage failure: the event could not be recorded");
        shoal_event_destroy (&event);
        return 0;
    }
    shoal_dedupe_insert (own->dedupe, shoal_event_id (event), seq);
    s_ack_t *ack = (s_ack_t *) zmalloc (sizeof (s_ack_t));
    ack->routing_id = zframe_dup (routing_id);
    ack->request_id = request_id;
    ack->seq = seq;
    zlistx_add_end (own->acks, ack);
    shoal_event_destroy (&event);
    return 0;
}

//  Durable consumer cursors for thin clients (ConsumerRequest).
static void
s_handle_consumer (s_engine_t *self, zframe_t *routing_id, uint64_t request_id,
                   const Shoal__V1__ConsumerRequest *request)
{
    const char *op = request->op;
    bool list = streq (op, "list");
    if (!list && !shoal_consumer_name_valid (request->name)) {
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_BAD_REQUEST,
                       "invalid consumer name (must match [A-Za-z0-9_][A-Za-z0-9._-]{0,63})");
        return;
    }
    if (streq (op, "ack")) {
        size_t added = 0;
        for (size_t i = 0; i < request->n_cursors; i++) {
            const Shoal__V1__LogHead *cursor = request->cursors[i];
            if (cursor->origin.len != SHOAL_ID_SIZE || !shoal_stream_name_valid (cursor->stream)) {
                s_reply_error (self, routing_id, request_id, SHOAL_WIRE_BAD_REQUEST,
                               "each cursor needs a 16-byte origin and a valid stream");
                return;
            }
            if (shoal_store_cursor (self->store, request->name, cursor->origin.data, cursor->stream)
                == 0)
                added++;
        }
        //  Limits: a stranger must not fill the disk with consumers or cursors.
        size_t held = shoal_store_consumer_cursor_count (self->store, request->name);
        if (held == 0 && added > 0
            && shoal_store_consumer_count (self->store) >= self->config->max_consumers) {
            s_reply_error (self, routing_id, request_id, SHOAL_WIRE_BUSY,
                           "too many durable consumers on this node (max_consumers)");
            return;
        }
        if (held + added > self->config->max_consumer_cursors) {
            s_reply_error (self, routing_id, request_id, SHOAL_WIRE_BUSY,
                           "too many cursors for one consumer (max_consumer_cursors)");
            return;
        }
        for (size_t i = 0; i < request->n_cursors; i++)
            shoal_store_cursor_set (self->store, request->name, request->cursors[i]->origin.data,
                                    request->cursors[i]->stream, request->cursors[i]->head_seq);
        if (s_cursors_flush (self)) {
            s_reply_error (self, routing_id, request_id, SHOAL_WIRE_STORAGE,
                           "storage failure: the cursors could not be written");
            return;
        }
    }
    else if (streq (op, "delete")) {
        if (s_consumer_delete (self, request->name)) {
            s_reply_error (self, routing_id, request_id, SHOAL_WIRE_UNKNOWN, "no such consumer");
            return;
        }
    }
    else if (!list && !streq (op, "get")) {
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_BAD_REQUEST,
                       "ConsumerRequest.op must be get, ack, list or delete");
        return;
    }
    Shoal__V1__ConsumerReply reply = SHOAL__V1__CONSUMER_REPLY__INIT;
    size_t count = list ? shoal_store_consumer_count (self->store)
                        : shoal_store_consumer_cursor_count (self->store, request->name);
    char **names = (char **) zmalloc ((count + 1) * sizeof (char *));
    Shoal__V1__LogHead *heads = (Shoal__V1__LogHead *) zmalloc ((count + 1) * sizeof *heads);
    Shoal__V1__LogHead **head_ptrs =
        (Shoal__V1__LogHead **) zmalloc ((count + 1) * sizeof (void *));
    uint8_t (*origins)[SHOAL_ID_SIZE] =
        (uint8_t (*)[SHOAL_ID_SIZE]) zmalloc ((count + 1) * SHOAL_ID_SIZE);
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        if (list) {
            names[n++] = (char *) shoal_store_consumer_name (self->store, i);
            continue;
        }
        const char *stream;
        uint64_t seq;
        if (shoal_store_consumer_cursor_at (self->store, request->name, i, origins[n], &stream,
                                            &seq))
            continue;
        Shoal__V1__LogHead init = SHOAL__V1__LOG_HEAD__INIT;
        heads[n] = init;
        heads[n].origin.data = origins[n];
        heads[n].origin.len = SHOAL_ID_SIZE;
        heads[n].stream = (char *) stream;
        heads[n].head_seq = seq;
        head_ptrs[n] = &heads[n];
        n++;
    }
    if (list) {
        reply.n_names = n;
        reply.names = names;
    }
    else {
        reply.n_cursors = n;
        reply.cursors = head_ptrs;
    }
    Shoal__V1__Response response = SHOAL__V1__RESPONSE__INIT;
    response.request_id = request_id;
    response.body_case = SHOAL__V1__RESPONSE__BODY_CONSUMER;
    response.consumer = &reply;
    zframe_t *frame = shoal_wire_pack_response (&response);
    s_send_response (self, routing_id, &frame);
    free (names);
    free (heads);
    free (head_ptrs);
    free (origins);
}

//  Handles one ROUTER message. Returns 1 when it must be retried later.
static int
s_handle_request (s_engine_t *self, zmsg_t *msg)
{
    zframe_t *routing_id = zmsg_first (msg);
    zframe_t *payload = zmsg_next (msg);
    if (!routing_id)
        return 0;
    if (!payload || zmsg_size (msg) != 2) {
        s_reply_error (self, routing_id, 0, SHOAL_WIRE_BAD_REQUEST,
                       "a request is exactly one frame (a shoal.v1.Request)");
        return 0;
    }
    if (zframe_size (payload) > self->config->max_event_size + 4096) {
        s_reply_error (self, routing_id, 0, SHOAL_WIRE_TOO_LARGE, "request too large");
        return 0;
    }
    Shoal__V1__Request *request =
        shoal__v1__request__unpack (NULL, zframe_size (payload), zframe_data (payload));
    if (!request) {
        s_reply_error (self, routing_id, 0, SHOAL_WIRE_BAD_REQUEST,
                       "undecodable request (not a shoal.v1.Request)");
        return 0;
    }
    int retry = 0;
    uint64_t id = request->request_id;
    switch (request->body_case) {
        case SHOAL__V1__REQUEST__BODY_HELLO:
            s_handle_hello (self, routing_id, payload, id, request->hello);
            break;
        case SHOAL__V1__REQUEST__BODY_STATUS: s_handle_status (self, routing_id, id); break;
        case SHOAL__V1__REQUEST__BODY_REPLAY: {
            int code =
                shoal_replay_start (self->replay, self->router, routing_id, id, request->replay);
            if (code == SHOAL_WIRE_BUSY)
                self->stats.replays_refused++;
            else if (code)
                self->stats.bad_requests++;
            else
                self->replay_busy = true;
            break;
        }
        case SHOAL__V1__REQUEST__BODY_PUBLISH:
            retry = s_handle_publish (self, routing_id, id, request->publish);
            break;
        case SHOAL__V1__REQUEST__BODY_CREDIT:
            if (shoal_replay_credit (self->replay, routing_id, request->credit->replay_id,
                                     request->credit->credit)
                == 0)
                self->replay_busy = true;
            break;
        case SHOAL__V1__REQUEST__BODY_CONSUMER:
            s_handle_consumer (self, routing_id, id, request->consumer);
            break;
        case SHOAL__V1__REQUEST__BODY_PING: {
            Shoal__V1__Pong pong = SHOAL__V1__PONG__INIT;
            Shoal__V1__Response response = SHOAL__V1__RESPONSE__INIT;
            response.request_id = id;
            response.body_case = SHOAL__V1__RESPONSE__BODY_PONG;
            response.pong = &pong;
            zframe_t *frame = shoal_wire_pack_response (&response);
            s_send_response (self, routing_id, &frame);
            break;
        }
        default:
            s_reply_error (self, routing_id, id, SHOAL_WIRE_BAD_REQUEST,
                           "request has no body (hello, status, replay, publish, credit or ping)");
    }
    shoal__v1__request__free_unpacked (request, NULL);
    return retry;
}

//  --------------------------------------------------------------------------
//  DEALER: responses from peers

static void
s_handle_batch (s_engine_t *self, s_pending_t *pending, const shoal_wire_response_t *outline,
                bool *finished)
{
    shoal_wire_batch_t batch;
    shoal_sub_t *sub = s_sub_by_id (self, pending->sub_id);
    if (shoal_wire_scan_batch (outline->data, outline->size, &batch)) {
        self->stats.bad_requests++;
        if (sub)
            shoal_sub_on_repair_error (sub, pending->origin, 0);
        *finished = true;
        return;
    }
    const uint8_t *data;
    size_t size;
    bool bad = false;
    while (shoal_wire_batch_next (&batch, &data, &size)) {
        shoal_event_t *event = shoal_event_decode (data, size, self->config->max_event_size, NULL);
        if (!event || !shoal_event_origin (event)
            || memcmp (shoal_event_origin (event), pending->origin, SHOAL_ID_SIZE) != 0) {
            self->stats.bad_requests++;
            shoal_event_destroy (&event);
            bad = true;
            continue;
        }
        s_heads_note (self, pending->origin, shoal_event_stream (event), shoal_event_seq (event));
        if (sub)
            shoal_sub_on_event (sub, &event, true);
        else
            shoal_event_destroy (&event);
    }
    //  A batch with a bad event vouches for nothing: only its good events
    //  count, and the repair is asked again.
    if (sub && bad)
        shoal_sub_on_repair_error (sub, pending->origin, 0);
    else if (sub)
        shoal_sub_on_batch (sub, pending->origin, batch.next_seq, batch.done, batch.head_seq);
    *finished = batch.done || bad;
}

static void
s_handle_response (s_engine_t *self, shoal_peer_t *peer, zframe_t *frame)
{
    shoal_peer_touch (peer, s_now ());
    shoal_wire_response_t outline;
    if (shoal_wire_scan_response (zframe_data (frame), zframe_size (frame), &outline)) {
        self->stats.bad_requests++;
        return;
    }
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, outline.request_id);
    s_pending_t *pending = (s_pending_t *) zhashx_lookup (self->pending, key);
    if (outline.body == SHOAL__V1__RESPONSE__BODY_BATCH && pending) {
        bool finished = false;
        s_handle_batch (self, pending, &outline, &finished);
        if (finished)
            zhashx_delete (self->pending, key);
        return;
    }
    if (outline.body == SHOAL__V1__RESPONSE__BODY_BATCH)
        return; //  a late batch of a replay we gave up on
    Shoal__V1__Response *response =
        shoal__v1__response__unpack (NULL, zframe_size (frame), zframe_data (frame));
    if (!response) {
        self->stats.bad_requests++;
        return;
    }
    if (response->body_case == SHOAL__V1__RESPONSE__BODY_HELLO) {
        Shoal__V1__Hello *hello = response->hello;
        if (hello->node.len == SHOAL_ID_SIZE && strcmp (hello->mesh, self->config->mesh) == 0) {
            if (s_peer_identify (self, peer, hello->node.data, hello->name, hello->pub_port)) {
                shoal_peer_set_replicates (peer, hello->replicates, hello->n_replicates);
                //  Peer exchange: one seed endpoint reaches the whole mesh.
                for (size_t i = 0; i < hello->n_known_peers; i++)
                    s_peer_add (self, hello->known_peers[i], false);
            }
        }
        else
            self->stats.bad_requests++;
    }
    else if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR && pending) {
        shoal_sub_t *sub = s_sub_by_id (self, pending->sub_id);
        if (sub)
            shoal_sub_on_repair_error (sub, pending->origin, response->error->code);
        zhashx_delete (self->pending, key);
    }
    shoal__v1__response__free_unpacked (response, NULL);
}

//  --------------------------------------------------------------------------
//  SUB: live events and heartbeats

//  Handles one message from SUB: a topic and a body, or junk.
static void
s_handle_live (s_engine_t *self, const uint8_t *topic, size_t topic_size, const uint8_t *body,
               size_t body_size, bool well_formed)
{
    if (!well_formed || topic_size < 2) {
        self->stats.bad_requests++;
        return;
    }
    const uint8_t *slash = (const uint8_t *) memchr (topic, '/', topic_size);
    if (!slash) {
        self->stats.bad_requests++;
        return;
    }
    if (slash + 1 == topic + topic_size) {
        //  "<stream>/": a heartbeat.
        Shoal__V1__Heartbeat *heartbeat = shoal__v1__heartbeat__unpack (NULL, body_size, body);
        if (!heartbeat || heartbeat->origin.len != SHOAL_ID_SIZE
            || !shoal_stream_name_valid (heartbeat->stream)) {
            self->stats.bad_requests++;
            if (heartbeat)
                shoal__v1__heartbeat__free_unpacked (heartbeat, NULL);
            return;
        }
        const uint8_t *origin = heartbeat->origin.data;
        s_heads_note (self, origin, heartbeat->stream, heartbeat->head_seq);
        if (self->replicate_all && memcmp (origin, self->id, SHOAL_ID_SIZE) != 0)
            s_replicate_stream (self, heartbeat->stream);
        shoal_peer_t *peer = s_peer_by_id (self, origin);
        if (peer)
            shoal_peer_touch (peer, s_now ());
        for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
             sub = (shoal_sub_t *) zlistx_next (self->subs))
            if (strcmp (shoal_sub_stream (sub), heartbeat->stream) == 0)
                shoal_sub_on_heartbeat (sub, origin, heartbeat->head_seq);
        shoal__v1__heartbeat__free_unpacked (heartbeat, NULL);
        return;
    }
    int error = 0;
    shoal_event_t *event =
        shoal_event_decode (body, body_size, self->config->max_event_size, &error);
    if (!event || !shoal_event_origin (event) || shoal_event_seq (event) == 0) {
        self->stats.bad_requests++;
        shoal_event_destroy (&event);
        return;
    }
    s_heads_note (self, shoal_event_origin (event), shoal_event_stream (event),
                  shoal_event_seq (event));
    s_route_event (self, &event, false, 0);
}

//  Reads one message from SUB without waiting; 1 when it read one.
static int
s_sub_read (s_engine_t *self)
{
    void *sub = zsock_resolve (self->sub);
    zmq_msg_t topic, body;
    zmq_msg_init (&topic);
    if (zmq_msg_recv (&topic, sub, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&topic);
        return 0;
    }
    zmq_msg_init (&body);
    bool well_formed = zmq_msg_more (&topic) && zmq_msg_recv (&body, sub, 0) >= 0;
    if (well_formed && zmq_msg_more (&body)) {
        //  More than two frames: drop the rest of the message.
        well_formed = false;
        zmq_msg_t rest;
        zmq_msg_init (&rest);
        while (zmq_msg_more (&body) && zmq_msg_recv (&rest, sub, 0) >= 0 && zmq_msg_more (&rest))
            ;
        zmq_msg_close (&rest);
    }
    s_handle_live (self, (const uint8_t *) zmq_msg_data (&topic), zmq_msg_size (&topic),
                   (const uint8_t *) zmq_msg_data (&body), zmq_msg_size (&body), well_formed);
    zmq_msg_close (&body);
    zmq_msg_close (&topic);
    return 1;
}

static void
s_send_heartbeat (s_engine_t *self, const uint8_t *origin, const char *stream, uint64_t head)
{
    Shoal__V1__Heartbeat heartbeat = SHOAL__V1__HEARTBEAT__INIT;
    heartbeat.origin.data = (uint8_t *) origin;
    heartbeat.origin.len = SHOAL_ID_SIZE;
    heartbeat.stream = (char *) stream;
    heartbeat.head_seq = head;
    heartbeat.time_ns = shoal_time_ns ();
    uint8_t buffer[256];
    size_t size = shoal__v1__heartbeat__pack (&heartbeat, buffer);
    char topic[SHOAL_STREAM_MAX + 2];
    int length = snprintf (topic, sizeof topic, "%s/", stream);
    zmq_send (zsock_resolve (self->pub), topic, (size_t) length, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (zsock_resolve (self->pub), buffer, size, ZMQ_DONTWAIT);
}

//  A heartbeat per own stream, and one per replica on its origin's behalf:
//  a subscriber learns of an origin that is down from its replicas.
static void
s_send_heartbeats (s_engine_t *self)
{
    for (s_own_t *own = (s_own_t *) zhashx_first (self->own); own;
         own = (s_own_t *) zhashx_next (self->own))
        s_send_heartbeat (self, self->id, own->stream, own->sent);
    for (size_t i = 0; i < shoal_store_log_count (self->store); i++) {
        shoal_log_t *log = shoal_store_log_at (self->store, i);
        if (memcmp (shoal_log_origin (log), self->id, SHOAL_ID_SIZE) != 0
            && shoal_log_durable (log) > 0)
            s_send_heartbeat (self, shoal_log_origin (log), shoal_log_stream (log),
                              shoal_log_durable (log));
    }
}

//  --------------------------------------------------------------------------
//  The actor pipe

static void
s_stats_fill (s_engine_t *self, shoal_node_stats_t *stats)
{
    *stats = self->stats;
    shoal_sub_stats_t totals = self->sub_totals;
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs)) {
        shoal_sub_stats_t one;
        shoal_sub_stats (sub, &one);
        totals.delivered += one.delivered;
        totals.gaps_detected += one.gaps_detected;
        totals.events_repaired += one.events_repaired;
        totals.duplicates_dropped += one.duplicates_dropped;
        totals.deferred += one.deferred;
    }
    stats->delivered = totals.delivered;
    stats->gaps_detected = totals.gaps_detected;
    stats->events_repaired = totals.events_repaired;
    stats->duplicates_dropped = totals.duplicates_dropped;
    stats->events_deferred = totals.deferred;
    stats->replays_served = shoal_replay_requests_served (self->replay);
    stats->events_served = shoal_replay_events_sent (self->replay);
    stats->auth_refused =
        self->secure ? self->beacons_refused + shoal_secure_refused (self->secure) : 0;
    stats->replays_evicted = shoal_replay_sessions_evicted (self->replay);
    stats->peers = 0;
    int64_t now = s_now ();
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers))
        if (shoal_peer_state (peer, now, self->config->suspect_ms, self->config->expiry_ms)
            == SHOAL_PEER_CONNECTED)
            stats->peers++;
}

static void
s_reply_peers (s_engine_t *self)
{
    size_t count = zlistx_size (self->peers);
    shoal_peer_info_t *infos = (shoal_peer_info_t *) zmalloc ((count + 1) * sizeof *infos);
    size_t n = 0;
    int64_t now = s_now ();
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers), n++) {
        if (shoal_peer_has_id (peer))
            memcpy (infos[n].id, shoal_peer_id (peer), SHOAL_ID_SIZE);
        snprintf (infos[n].name, sizeof infos[n].name, "%s", shoal_peer_name (peer));
        char *spec = s_peer_spec (self, peer);
        snprintf (infos[n].endpoint, sizeof infos[n].endpoint, "%s", spec);
        free (spec);
        snprintf (infos[n].state, sizeof infos[n].state, "%s",
                  shoal_peer_state_name (shoal_peer_state (peer, now, self->config->suspect_ms,
                                                           self->config->expiry_ms)));
    }
    zsock_send (self->pipe, "b", infos, n * sizeof *infos);
    free (infos);
}

//  An event the facade sequenced: a zero byte, then the encoded event.
static void
s_handle_publish_record (s_engine_t *self, const shoal_outbox_record_t *record)
{
    s_own_t *own = s_own (self, record->stream, true);
    if (!own)
        shoal_heads_update (self->args->heads, record->stream, 0, 0, true);
    else if (record->seq != shoal_log_head (own->log) + 1) {
        //  A seq lost between the facade and here (a failed push): number
        //  again after the real head, so the stream does not stall.
        s_log (self, S_ERROR, "%s: event seq %" PRIu64 " dropped, log head is %" PRIu64,
               record->stream, record->seq, shoal_log_head (own->log));
        shoal_heads_update (self->args->heads, record->stream, shoal_log_head (own->log),
                            shoal_log_durable (own->log), true);
        shoal_heads_update (self->args->heads, record->stream, shoal_log_head (own->log),
                            shoal_log_durable (own->log), false);
    }
    else
        s_own_append (self, own, record->seq, record->data, record->size, record->time_ns,
                      record->type, record->type_size);
}

//  Appends everything the facade published so far. Returns 1 when there was any.
static int
s_outbox_read (s_engine_t *self)
{
    shoal_outbox_t *outbox = self->args->outbox;
    if (!shoal_outbox_take (outbox))
        return 0;
    shoal_outbox_record_t record;
    while (shoal_outbox_next (outbox, &record))
        s_handle_publish_record (self, &record);
    return 1;
}

//  Handles one pipe message (destroys it). Returns -1 on $TERM.
static int
s_handle_pipe_message (s_engine_t *self, zmsg_t *msg)
{
    char *command = zmsg_popstr (msg);
    int rc = 0;
    if (!command)
        ;
    else if (streq (command, "SUBSCRIBE")) {
        zframe_t *pointer = zmsg_pop (msg);
        if (pointer && zframe_size (pointer) == sizeof (void *)) {
            shoal_engine_sub_t *request;
            memcpy (&request, zframe_data (pointer), sizeof request);
            s_subscribe (self, request);
        }
        zframe_destroy (&pointer);
    }
    else if (streq (command, "UNSUBSCRIBE")) {
        char *id = zmsg_popstr (msg);
        if (id)
            s_unsubscribe (self, atoi (id));
        zstr_free (&id);
    }
    else if (streq (command, "ACK")) {
        char *id = zmsg_popstr (msg);
        zframe_t *origin = zmsg_pop (msg);
        char *seq = zmsg_popstr (msg);
        char *cumulative = zmsg_popstr (msg);
        if (id && origin && seq && cumulative && zframe_size (origin) == SHOAL_ID_SIZE)
            s_ack (self, atoi (id), zframe_data (origin), strtoull (seq, NULL, 10),
                   streq (cumulative, "1"));
        zstr_free (&id);
        zframe_destroy (&origin);
        zstr_free (&seq);
        zstr_free (&cumulative);
    }
    else if (streq (command, "ACKFLUSH"))
        zstr_send (self->pipe, s_cursors_flush (self) == 0 ? "0" : "-1");
    else if (streq (command, "CONSUMERS")) {
        //  One frame: the names, each followed by a newline.
        zchunk_t *names = zchunk_new (NULL, 0);
        for (size_t i = 0; i < shoal_store_consumer_count (self->store); i++) {
            const char *name = shoal_store_consumer_name (self->store, i);
            zchunk_extend (names, name, strlen (name));
            zchunk_extend (names, "\n", 1);
        }
        zsock_send (self->pipe, "b", zchunk_data (names), zchunk_size (names));
        zchunk_destroy (&names);
    }
    else if (streq (command, "CONSUMERDELETE")) {
        char *name = zmsg_popstr (msg);
        int deleted = name ? s_consumer_delete (self, name) : -1;
        zstr_send (self->pipe, deleted == 0 ? "0" : "-1");
        zstr_free (&name);
    }
    else if (streq (command, "STATS")) {
        shoal_node_stats_t stats;
        s_stats_fill (self, &stats);
        zsock_send (self->pipe, "b", &stats, sizeof stats);
    }
    else if (streq (command, "PEERS"))
        s_reply_peers (self);
    else if (streq (command, "$TERM")) {
        self->terminated = true;
        rc = -1;
    }
    else
        s_log (self, S_ERROR, "engine got an unknown command %s", command);
    zstr_free (&command);
    zmsg_destroy (&msg);
    return rc;
}

//  Reads one pipe message without waiting, after what the outbox holds
//  (a command must see every publish made before it). Returns 1 when it
//  read one, 0 when the pipe was empty, -1 on $TERM.
static int
s_pipe_read (s_engine_t *self)
{
    zmsg_t *msg = zmsg_recv_nowait (self->pipe);
    if (!msg)
        return 0;
    s_outbox_read (self);
    return s_handle_pipe_message (self, msg) < 0 ? -1 : 1;
}

//  --------------------------------------------------------------------------
//  Start and stop

static shoal_log_t *
s_lookup (void *arg, const uint8_t origin[SHOAL_ID_SIZE], const char *stream)
{
    s_engine_t *self = (s_engine_t *) arg;
    int error;
    return shoal_store_log (self->store, origin, stream, false, &error);
}

//  The IPv4 address of an interface, for default bind endpoints.
static int
s_interface_address (const char *name, char *address, size_t size)
{
    struct ifaddrs *list;
    if (getifaddrs (&list))
        return -1;
    int rc = -1;
    for (struct ifaddrs *entry = list; entry; entry = entry->ifa_next)
        if (entry->ifa_addr && entry->ifa_addr->sa_family == AF_INET
            && strcmp (entry->ifa_name, name) == 0) {
            inet_ntop (AF_INET, &((struct sockaddr_in *) entry->ifa_addr)->sin_addr, address,
                       (socklen_t) size);
            rc = 0;
            break;
        }
    freeifaddrs (list);
    return rc;
}

static int
s_fail_start (s_engine_t *self, int error, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->args->start_error_text, sizeof self->args->start_error_text, format, args);
    va_end (args);
    self->args->start_error = error;
    return -1;
}

//  Binds a socket; reports the endpoint with its port resolved.
static int
s_bind (s_engine_t *self, zsock_t *socket, const char *endpoint, const char *what, char *bound,
        size_t bound_size, int *port_p)
{
    //  czmq binds "tcp://ADDR:*" by trying each port from 49152 up, every
    //  try a full libzmq bind: with many nodes on one host that was most
    //  of a node's start (32 nodes: ~1 s). Port 0 lets the kernel choose.
    char direct[256];
    size_t length = strlen (endpoint);
    if (length > 2 && length < sizeof direct && strcmp (endpoint + length - 2, ":*") == 0)
        snprintf (direct, sizeof direct, "%.*s:0", (int) (length - 2), endpoint);
    else
        snprintf (direct, sizeof direct, "%s", endpoint);
    int port = zsock_bind (socket, "%s", direct);
    if (port < 0)
        return s_fail_start (self, SHOAL_ERR_IO,
                             "cannot bind the %s socket to %s: %s (is the port in use? choose "
                             "another with --%s)",
                             what, endpoint, zmq_strerror (zmq_errno ()), what);
    char *last = zsock_last_endpoint (socket);
    snprintf (bound, bound_size, "%s", last ? last : endpoint);
    zstr_free (&last);
    const char *colon = strrchr (bound, ':');
    *port_p = colon ? atoi (colon + 1) : port;
    return 0;
}

//  Secure mode: the node's keypair (made in the data directory on first
//  start) and the allow-list, before any socket exists.
static int
s_secure_start (s_engine_t *self)
{
    shoal_node_config_t *config = self->config;
    char *cert_path = config->cert_path && *config->cert_path
                          ? strdup (config->cert_path)
                          : zsys_sprintf ("%s/node.cert", config->data_dir);
    char domain[64];
    snprintf (domain, sizeof domain, "shoal-%s", self->id_hex);
    self->secure = shoal_secure_new (config->keys_dir, cert_path, config->name, domain);
    free (cert_path);
    if (!self->secure)
        return s_fail_start (self, SHOAL_ERR_INVALID, "secure mode: %s", shoal_secure_error ());
    if (!shoal_secure_allowed (self->secure, shoal_secure_public_txt (self->secure)))
        s_log (self, S_WARNING,
               "this node's key %s is not in the allow-list %s: peers that share it will "
               "refuse this node (`shoal keys allow %s DATA/node.cert`)",
               shoal_secure_public_txt (self->secure), config->keys_dir, config->keys_dir);
    self->next_keys_check_ms = s_now () + S_KEYS_CHECK_MS;
    return 0;
}

//  Binds a new server socket like `old` on the endpoint old had, then
//  destroys old. The port was released by old a moment ago, so the bind
//  is tried again for a while. The new socket or NULL.
static zsock_t *
s_secure_rebind (s_engine_t *self, zsock_t *old, int type, const char *endpoint)
{
    zsock_t *socket = zsock_new (type);
    zsock_set_sndhwm (socket, zsock_sndhwm (old));
    zsock_set_rcvhwm (socket, zsock_rcvhwm (old));
    zsock_set_maxmsgsize (socket, zsock_maxmsgsize (old));
    zsock_set_linger (socket, 0);
    if (type == ZMQ_ROUTER)
        zsock_set_router_mandatory (socket, 1);
    shoal_secure_server (self->secure, socket);
    zsock_destroy (&old);
    for (int attempt = 0; attempt < 500; attempt++) {
        if (zsock_bind (socket, "%s", endpoint) >= 0)
            return socket;
        zclock_sleep (10);
    }
    s_log (self, S_ERROR, "cannot bind %s again after a revocation: %s", endpoint,
           zmq_strerror (zmq_errno ()));
    zsock_destroy (&socket);
    return NULL;
}

//  A key left the allow-list: ZAP refuses it from the next handshake on,
//  but connections made before stay up. So every connection is cut: PUB
//  and ROUTER are made again on the same endpoints (allowed peers and
//  clients reconnect by themselves and handshake again; the revoked key
//  is refused), and this node drops its own connections to peers whose
//  key went. Events lost on the way are repaired like any gap.
static void
s_secure_revoke (s_engine_t *self)
{
    s_log (self, S_INFO, "a key left the allow-list %s: cutting every connection",
           self->config->keys_dir);
    zsock_t *pub = s_secure_rebind (self, self->pub, ZMQ_PUB, self->args->pub_endpoint);
    zsock_t *router = s_secure_rebind (self, self->router, ZMQ_ROUTER, self->args->router_endpoint);
    if (!pub || !router) {
        //  Without its sockets the node cannot go on: stop as after $TERM.
        zsock_destroy (&pub);
        zsock_destroy (&router);
        self->pub = zsock_new (ZMQ_PUB);
        self->router = zsock_new (ZMQ_ROUTER);
        self->terminated = true;
        return;
    }
    self->pub = pub;
    self->router = router;
    shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers);
    while (peer) {
        shoal_peer_t *next = (shoal_peer_t *) zlistx_next (self->peers);
        if (!shoal_secure_allowed (self->secure, shoal_peer_key (peer)))
            s_peer_remove (self, peer, true);
        peer = next;
        if (peer)
            zlistx_find (self->peers, peer);
    }
    self->peers_changed = true;
}

static int
s_start (s_engine_t *self)
{
    shoal_node_config_t *config = self->config;
    shoal_log_config_t log_config;
    shoal_log_config_defaults (&log_config);
    log_config.fsync = config->fsync;
    if (config->segment_size)
        log_config.segment_size = config->segment_size;
    int error = 0;
    self->store = shoal_store_open (config->data_dir, &log_config, &error);
    if (!self->store)
        return s_fail_start (self, error, "%s", shoal_store_open_error ());
    memcpy (self->id, shoal_store_node_id (self->store), SHOAL_ID_SIZE);
    memcpy (self->args->node_id, self->id, SHOAL_ID_SIZE);
    shoal_id_to_hex (self->id, self->id_hex);
    self->mesh_id = shoal_mesh_id (config->mesh);
    if (config->secure && s_secure_start (self))
        return -1;

    //  Default endpoints: the interface's own address, so that nothing is
    //  bound where it was not asked for.
    char address[64] = "127.0.0.1";
    const char *interface = config->interface ? config->interface : "none";
    if (strcmp (interface, "none") != 0 && strcmp (interface, "lo") != 0
        && s_interface_address (interface, address, sizeof address))
        return s_fail_start (self, SHOAL_ERR_INVALID,
                             "interface %s has no IPv4 address (see `ip -4 addr`)", interface);
    char pub_default[96], router_default[96];
    snprintf (pub_default, sizeof pub_default, "tcp://%s:*", address);
    snprintf (router_default, sizeof router_default, "tcp://%s:*", address);

    self->pub = zsock_new (ZMQ_PUB);
    zsock_set_sndhwm (self->pub, config->sndhwm);
    zsock_set_linger (self->pub, 0);
    self->router = zsock_new (ZMQ_ROUTER);
    zsock_set_router_mandatory (self->router, 1);
    zsock_set_sndhwm (self->router, config->sndhwm);
    zsock_set_rcvhwm (self->router, config->rcvhwm);
    zsock_set_linger (self->router, 0);
    //  Requests up to four times the event limit are read and refused
    //  with Error 4; a bigger one ends the connection (it is not a client
    //  that can be helped, and reading it would cost the memory).
    zsock_set_maxmsgsize (self->router, 4 * (int64_t) config->max_event_size + 65536);
    self->sub = zsock_new (ZMQ_SUB);
    zsock_set_rcvhwm (self->sub, config->rcvhwm);
    zsock_set_maxmsgsize (self->sub, (int64_t) config->max_event_size + 65536);
    zsock_set_linger (self->sub, 0);
    if (self->secure) {
        shoal_secure_server (self->secure, self->pub);
        shoal_secure_server (self->secure, self->router);
    }
    if (s_bind (self, self->pub, config->pub_endpoint ? config->pub_endpoint : pub_default, "pub",
                self->args->pub_endpoint, sizeof self->args->pub_endpoint, &self->pub_port)
        || s_bind (self, self->router,
                   config->router_endpoint ? config->router_endpoint : router_default, "router",
                   self->args->router_endpoint, sizeof self->args->router_endpoint,
                   &self->router_port))
        return -1;

    shoal_replay_config_t replay_config;
    shoal_replay_config_defaults (&replay_config);
    replay_config.batch_events = config->replay_batch_events;
    replay_config.batch_bytes = config->replay_batch_bytes;
    replay_config.max_sessions = config->max_replay_sessions;
    replay_config.max_sessions_per_client = config->max_replays_per_client;
    self->replay = shoal_replay_new (s_lookup, self, &replay_config);

    //  Own streams already in the store: their seqs continue after the head.
    for (size_t i = 0; i < shoal_store_log_count (self->store); i++) {
        shoal_log_t *log = shoal_store_log_at (self->store, i);
        if (memcmp (shoal_log_origin (log), self->id, SHOAL_ID_SIZE) == 0) {
            s_own (self, shoal_log_stream (log), true);
            shoal_heads_update (self->args->heads, shoal_log_stream (log), shoal_log_head (log),
                                shoal_log_durable (log), false);
        }
    }

    if (strcmp (interface, "none") != 0) {
        self->beacon = shoal_beacon_new (interface, config->beacon_port, self->mesh_id);
        if (!self->beacon)
            return s_fail_start (self, SHOAL_ERR_INVALID, "cannot start discovery on %s: %s",
                                 interface, shoal_beacon_error ());
        shoal_beacon_msg_t msg = {0};
        msg.mesh_id = self->mesh_id;
        memcpy (msg.node, self->id, SHOAL_ID_SIZE);
        msg.pub_port = (uint16_t) self->pub_port;
        msg.router_port = (uint16_t) self->router_port;
        if (self->secure) {
            msg.has_key = true;
            memcpy (msg.key, shoal_secure_public_key (self->secure), SHOAL_KEY_SIZE);
        }
        shoal_beacon_publish (self->beacon, &msg, config->beacon_interval_ms);
    }
    for (size_t i = 0; i < config->peer_count; i++)
        s_peer_add (self, config->peers[i], true);
    //  Replication: named streams start now; "all" starts each stream when
    //  its first heartbeat arrives (and now, for replicas already held).
    for (size_t i = 0; i < config->replicate_count; i++) {
        if (streq (config->replicate[i], "all"))
            self->replicate_all = true;
        else if (shoal_stream_name_valid (config->replicate[i]))
            s_replicate_stream (self, config->replicate[i]);
        else
            return s_fail_start (self, SHOAL_ERR_BAD_STREAM,
                                 "cannot replicate \"%s\": not a stream name (or \"all\")",
                                 config->replicate[i]);
    }
    //  Replicating everything means hearing every stream's heartbeats,
    //  including streams no one here has subscribed to yet.
    if (self->replicate_all)
        zsock_set_subscribe (self->sub, "");
    if (self->replicate_all)
        for (size_t i = 0; i < shoal_store_log_count (self->store); i++) {
            shoal_log_t *log = shoal_store_log_at (self->store, i);
            if (memcmp (shoal_log_origin (log), self->id, SHOAL_ID_SIZE) != 0)
                s_replicate_stream (self, shoal_log_stream (log));
        }
    shoal_store_set_retention (self->store, "*", config->retain_bytes, config->retain_age_ns);
    int64_t now = s_now ();
    self->next_heartbeat_ms = now + config->heartbeat_ms;
    self->next_peer_check_ms = now + S_PEER_CHECK_MS;
    self->next_repair_ms = now + S_REPAIR_TICK_MS;
    self->next_expire_ms = now + 1000;
    self->next_retention_ms = now + 1000;
    return 0;
}

static void
s_stop (s_engine_t *self)
{
    if (self->beacon) {
        //  A leaving beacon tells peers at once instead of after expiry.
        shoal_beacon_msg_t msg = {0};
        msg.mesh_id = self->mesh_id;
        memcpy (msg.node, self->id, SHOAL_ID_SIZE);
        msg.pub_port = (uint16_t) self->pub_port;
        msg.router_port = (uint16_t) self->router_port;
        msg.leaving = true;
        if (self->secure) {
            msg.has_key = true;
            memcpy (msg.key, shoal_secure_public_key (self->secure), SHOAL_KEY_SIZE);
        }
        shoal_beacon_publish (self->beacon, &msg, self->config->beacon_interval_ms);
        shoal_beacon_tick (self->beacon);
        shoal_beacon_silence (self->beacon);
    }
    if (self->store) {
        s_commit (self);
        s_cursors_flush (self);
    }
    shoal_beacon_destroy (&self->beacon);
    shoal_replay_destroy (&self->replay);
    zlistx_destroy (&self->subs);
    zlistx_destroy (&self->durables);
    zlistx_destroy (&self->peers);
    zhashx_destroy (&self->own);
    shoal_store_close (&self->store);
    zsock_destroy (&self->pub);
    zsock_destroy (&self->sub);
    zsock_destroy (&self->router);
    shoal_secure_destroy (&self->secure);
    shoal_heads_close (self->args->heads);
}

//  --------------------------------------------------------------------------
//  The loop

static int64_t
s_min (int64_t a, int64_t b)
{
    return a < b ? a : b;
}

//  Milliseconds until the next timer (or 0 when work is waiting).
static long
s_poll_timeout (s_engine_t *self)
{
    if (self->replay_busy)
        return 0;
    int64_t now = s_now ();
    int64_t next = s_min (self->next_heartbeat_ms, self->next_peer_check_ms);
    next = s_min (next, self->next_repair_ms);
    next = s_min (next, self->next_expire_ms);
    if (self->secure)
        next = s_min (next, self->next_keys_check_ms);
    if (self->beacon) {
        int beacon = shoal_beacon_tick (self->beacon);
        if (beacon >= 0)
            next = s_min (next, now + beacon);
    }
    if (self->cursors_dirty_ms >= 0)
        next = s_min (next, self->cursors_dirty_ms + 50);
    int64_t deadline = shoal_store_deadline (self->store);
    if (deadline >= 0)
        next = s_min (next, deadline / 1000000 + 1);
    return next > now ? (long) (next - now) : 0;
}

void
shoal_engine_actor (zsock_t *pipe, void *arg)
{
    pthread_setname_np (pthread_self (), "shoal-engine");
    s_engine_t *self = (s_engine_t *) zmalloc (sizeof (s_engine_t));
    self->pipe = pipe;
    self->args = (shoal_engine_args_t *) arg;
    self->config = &self->args->config;
    self->peers = zlistx_new ();
    zlistx_set_destructor (self->peers, (zlistx_destructor_fn *) shoal_peer_destroy);
    self->gone = zhashx_new ();
    self->own = zhashx_new ();
    zhashx_set_destructor (self->own, (zhashx_destructor_fn *) s_own_destroy);
    self->heads = zhashx_new ();
    self->subs = zlistx_new ();
    zlistx_set_destructor (self->subs, (zlistx_destructor_fn *) shoal_sub_destroy);
    self->durables = zlistx_new ();
    zlistx_set_destructor (self->durables, (zlistx_destructor_fn *) s_durable_destroy);
    self->cursors_dirty_ms = -1;
    self->sub_streams = zhashx_new ();
    self->pending = zhashx_new ();
    zhashx_set_destructor (self->pending, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_destructor (self->gone, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_destructor (self->heads, (zhashx_destructor_fn *) zstr_free);

    if (s_start (self)) {
        s_stop (self);
        zsock_signal (pipe, 1);
    }
    else {
        zsock_signal (pipe, 0);
        zmq_pollitem_t *items = NULL;
        size_t item_count = 0;
        zlistx_t *retry = zlistx_new (); //  ROUTER messages waiting for the heads lock
        zlistx_set_destructor (retry, (zlistx_destructor_fn *) zmsg_destroy);
        self->peers_changed = true;
        while (!self->terminated) {
            if (self->peers_changed) {
                self->peers_changed = false;
                item_count = 6 + zlistx_size (self->peers);
                free (items);
                items = (zmq_pollitem_t *) zmalloc (item_count * sizeof *items);
                items[0].socket = zsock_resolve (pipe);
                items[1].socket = zsock_resolve (self->router);
                items[2].socket = zsock_resolve (self->sub);
                items[3].fd = shoal_inbox_space_fd (self->args->inbox);
                items[4].fd = -1;
                if (self->beacon) {
                    items[4].socket = shoal_beacon_socket (self->beacon);
                    items[4].fd = shoal_beacon_fd (self->beacon);
                }
                items[5].fd = shoal_outbox_fd (self->args->outbox);
                size_t i = 6;
                for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
                     peer = (shoal_peer_t *) zlistx_next (self->peers))
                    items[i++].socket = zsock_resolve (shoal_peer_dealer (peer));
                for (i = 0; i < item_count; i++)
                    items[i].events = ZMQ_POLLIN;
                if (!self->beacon)
                    items[4].events = 0;
            }
            items[3].events = self->waiting_space ? ZMQ_POLLIN : 0;
            long timeout = zlistx_size (retry) ? 1 : s_poll_timeout (self);
            if (zmq_poll (items, (int) item_count, timeout) < 0) {
                if (zmq_errno () == EINTR)
                    continue;
                break;
            }
            //  Read what is ready, a bounded amount from each source (the
            //  outbox whole: one group commit for everything published).
            s_outbox_read (self);
            for (int n = 0; n < S_READ_BATCH && !self->terminated; n++)
                if (s_pipe_read (self) <= 0)
                    break;
            if (self->terminated)
                break;
            zmsg_t *msg;
            while ((msg = (zmsg_t *) zlistx_first (retry))) {
                zlistx_detach_cur (retry);
                if (s_handle_request (self, msg) == 1) {
                    zlistx_add_start (retry, msg);
                    break;
                }
                zmsg_destroy (&msg);
            }
            for (int n = 0; n < S_READ_BATCH && zlistx_size (retry) == 0; n++) {
                if (!(msg = zmsg_recv_nowait (self->router)))
                    break;
                if (s_handle_request (self, msg) == 1)
                    zlistx_add_end (retry, msg);
                else
                    zmsg_destroy (&msg);
            }
            for (int n = 0; n < S_READ_BATCH; n++)
                if (!s_sub_read (self))
                    break;
            for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;) {
                shoal_peer_t *next = (shoal_peer_t *) zlistx_next (self->peers);
                size_t before = zlistx_size (self->peers);
                for (int n = 0; n < S_READ_BATCH; n++) {
                    zframe_t *frame = NULL;
                    zmsg_t *response = zmsg_recv_nowait (shoal_peer_dealer (peer));
                    if (!response)
                        break;
                    frame = zmsg_first (response);
                    if (frame && zmsg_size (response) == 1)
                        s_handle_response (self, peer, frame);
                    else
                        self->stats.bad_requests++;
                    zmsg_destroy (&response);
                    if (zlistx_size (self->peers) < before || self->peers_changed)
                        break; //  the peer list changed under us
                }
                if (zlistx_size (self->peers) != before)
                    break; //  the rest is read on the next turn
                peer = next;
                if (peer)
                    zlistx_find (self->peers, peer);
            }
            if (self->beacon) {
                char ip[64];
                shoal_beacon_msg_t beacon;
                for (int n = 0; n < S_READ_BATCH; n++) {
                    int got = shoal_beacon_recv (self->beacon, ip, sizeof ip, &beacon);
                    if (got <= 0)
                        break;
                    s_on_beacon (self, ip, &beacon);
                }
            }
            if (self->waiting_space && (items[3].revents & ZMQ_POLLIN)) {
                shoal_inbox_clear_space (self->args->inbox);
                self->waiting_space = false;
            }

            //  Then act on it: commit, repair, deliver, replay, timers.
            s_commit (self);
            //  Repairs are looked at every turn (a new gap is asked for at
            //  once); the tick only bounds how long a timeout goes unseen.
            int64_t now = s_now ();
            s_repairs (self);
            self->next_repair_ms = now + S_REPAIR_TICK_MS;
            s_deliver (self);
            self->replay_busy =
                shoal_replay_pump (self->replay, self->router, S_REPLAY_BUDGET) == 1;
            if (now >= self->next_heartbeat_ms) {
                s_send_heartbeats (self);
                //  Every few heartbeats a Hello even to greeted peers: a
                //  peer may have restarted on its endpoint with another
                //  PUB port, and its known peers change.
                bool rehello = ++self->heartbeat_count % S_REHELLO_EVERY == 0;
                for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
                     peer = (shoal_peer_t *) zlistx_next (self->peers)) {
                    if (shoal_peer_greeted (peer) && !rehello)
                        s_send_ping (self, peer);
                    else
                        s_send_hello (self, peer);
                }
                self->next_heartbeat_ms = now + self->config->heartbeat_ms;
            }
            if (self->secure && now >= self->next_keys_check_ms) {
                if (shoal_secure_check (self->secure))
                    s_secure_revoke (self);
                self->next_keys_check_ms = now + S_KEYS_CHECK_MS;
            }
            if (now >= self->next_peer_check_ms) {
                s_check_peers (self);
                self->next_peer_check_ms = now + S_PEER_CHECK_MS;
            }
            if (self->cursors_dirty_ms >= 0 && now - self->cursors_dirty_ms >= 50)
                s_cursors_flush (self);
            if (now >= self->next_retention_ms) {
                if (shoal_store_apply_retention (self->store, shoal_time_ns ()) < 0)
                    s_log (self, S_ERROR, "retention failed in %s", self->config->data_dir);
                self->next_retention_ms = now + 5000;
            }
            if (now >= self->next_expire_ms) {
                shoal_replay_expire (self->replay, NULL);
                for (s_pending_t *pending = (s_pending_t *) zhashx_first (self->pending); pending;
                     pending = (s_pending_t *) zhashx_next (self->pending))
                    if (now - pending->sent_ms > S_PENDING_MAX_MS) {
                        zhashx_delete (self->pending, zhashx_cursor (self->pending));
                        break; //  one per second is plenty; the cursor is gone
                    }
                self->next_expire_ms = now + 1000;
            }
        }
        free (items);
        zlistx_destroy (&retry);
        s_stop (self);
    }
    zhashx_destroy (&self->gone);
    zhashx_destroy (&self->own);
    zhashx_destroy (&self->heads);
    zlistx_destroy (&self->subs);
    zlistx_destroy (&self->durables);
    zlistx_destroy (&self->peers);
    zhashx_destroy (&self->sub_streams);
    zhashx_destroy (&self->pending);
    free (self);
}
