/*  =========================================================================
    shoal_engine_streams - the engine's streams and subscriptions

    Part of the engine's actor (shoal_engine.c; shoal_engine_int.h draws
    the split). This file holds what flows through the node:

      - own streams: appends wait in a per-stream send queue until their
        log's group commit makes them durable; then shoal_engine_commit,
        the only place that sends an own event or a PublishAck, sends
        them on PUB, to local subscriptions and to waiting thin clients
        (promise 1, durable before visible),
      - subscriptions: events, heartbeats and repair batches are routed to
        shoal_sub (which keeps promises 2-4), and its ready events moved
        into the inbox,
      - durable consumers: deliveries are tracked by shoal_durable until
        acknowledged, and cursors written to the store,
      - replication: internal subscriptions (negative ids) whose events go
        into replica logs,
      - repairs: from the origin, else from a log this node holds, else
        from a peer that replicates the stream,
      - SUB: live events and heartbeats from peers, and this node's own
        heartbeats.
    =========================================================================
*/

#include "shoal_engine_int.h"
#include "shoal_buffer.h"

#define S_REPAIR_TIMEOUT_MS 2000 //  a repair with no progress this long is asked again
//  A replay parked longer is asked anew: the node serving it may have
//  ended it (its idle timeout, 30 s by default).
#define S_PARKED_MAX_MS 10000

//  --------------------------------------------------------------------------
//  Small helpers

static void
s_heads_key (char *key, size_t size, const uint8_t *origin, const char *stream)
{
    char hex[2 * SHOAL_ID_SIZE + 1];
    shoal_id_to_hex (origin, hex);
    snprintf (key, size, "%s/%s", hex, stream);
}

//  Remembers the highest seq known of (origin, stream). Events come in
//  runs from one origin and stream, so the last entry is kept at hand.
void
shoal_engine_heads_note (shoal_engine_t *self, const uint8_t *origin, const char *stream,
                         uint64_t head)
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
        //  Bounded: a head not remembered only makes a later "now"
        //  subscription place that origin by time instead of by seq.
        if (zhashx_size (self->heads) >= self->config->max_origins) {
            self->stats.origins_refused++;
            return;
        }
        known = (uint64_t *) zmalloc (sizeof (uint64_t));
        zhashx_insert (self->heads, key, known);
    }
    if (head > *known)
        *known = head;
    self->last_head = known;
    memcpy (self->last_origin, origin, SHOAL_ID_SIZE);
    snprintf (self->last_stream, sizeof self->last_stream, "%s", stream);
}

shoal_sub_t *
shoal_engine_sub_by_id (shoal_engine_t *self, int id)
{
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs))
        if (shoal_sub_id (sub) == id)
            return sub;
    return NULL;
}

static bool
s_has_subs (shoal_engine_t *self, const char *stream)
{
    return zhashx_lookup (self->sub_streams, stream) != NULL;
}

//  --------------------------------------------------------------------------
//  Own streams

static void
s_ack_destroy (shoal_engine_ack_t **self_p)
{
    if (*self_p) {
        zframe_destroy (&(*self_p)->routing_id);
        free (*self_p);
        *self_p = NULL;
    }
}

void
shoal_engine_own_destroy (shoal_engine_own_t **self_p)
{
    if (!*self_p)
        return;
    shoal_engine_own_t *own = *self_p;
    free (own->sendq);
    zlistx_destroy (&own->acks);
    shoal_dedupe_destroy (&own->dedupe);
    free (own);
    *self_p = NULL;
}

//  The own stream, opened (and its log made) when create is true.
shoal_engine_own_t *
shoal_engine_own (shoal_engine_t *self, const char *stream, bool create)
{
    //  Publishes come in runs on one stream: the last one found first.
    if (self->last_own && strcmp (self->last_own->stream, stream) == 0)
        return self->last_own;
    shoal_engine_own_t *own = (shoal_engine_own_t *) zhashx_lookup (self->own, stream);
    if (own)
        self->last_own = own;
    if (own || !create)
        return own;
    int error = 0;
    shoal_log_t *log = shoal_store_log (self->store, self->id, stream, true, &error);
    if (!log) {
        shoal_engine_log (self, SHOAL_LOG_ERROR, "cannot open the log of stream %s: %s", stream,
                          shoal_strerror (error));
        return NULL;
    }
    own = (shoal_engine_own_t *) zmalloc (sizeof (shoal_engine_own_t));
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
//  in seq order, which shoal_engine_commit sends and drops as they become durable.
int
shoal_engine_own_append (shoal_engine_t *self, shoal_engine_own_t *own, uint64_t seq,
                         const uint8_t *data, size_t size, int64_t time_ns, const char *type,
                         size_t type_size)
{
    size_t record = 13 + type_size + size;
    if (shoal_buffer_reserve (&own->sendq, &own->sendq_alloc, own->sendq_used + record,
                              64 * 1024)) {
        shoal_engine_log (self, SHOAL_LOG_ERROR, "append to %s failed: out of memory", own->stream);
        return -1;
    }
    if (type_size > SHOAL_TYPE_MAX || shoal_log_append (own->log, seq, time_ns, data, size)) {
        shoal_engine_log (self, SHOAL_LOG_ERROR, "append to %s failed: %s", own->stream,
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

static void s_feed_local (shoal_engine_t *self, const uint8_t *data, size_t size);

//  Sends one own event on PUB: topic "<stream>/<type>", then the event.
static void
s_send_live (shoal_engine_t *self, const char *stream, const char *type, size_t type_size,
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
void
shoal_engine_commit (shoal_engine_t *self)
{
    static int64_t bug_flushed_ms; //  TEST ONLY: last flush under ack-before-fsync
    bool bug_ack = s_test_bug ("ack-before-fsync");
    if (bug_ack) {
        if (shoal_engine_now () - bug_flushed_ms < 300)
            goto bug_skip_flush;
        bug_flushed_ms = shoal_engine_now ();
    }
    //  One group commit for every log that took appends: own and replicas.
    for (size_t i = 0; i < shoal_store_log_count (self->store); i++) {
        shoal_log_t *log = shoal_store_log_at (self->store, i);
        if (shoal_log_head (log) > shoal_log_durable (log) && !shoal_log_failed (log)
            && shoal_log_flush (log))
            shoal_engine_log (self, SHOAL_LOG_ERROR, "flush of %s failed: %s",
                              shoal_log_stream (log), shoal_log_error_text (log));
    }
bug_skip_flush:
    for (shoal_engine_own_t *own = (shoal_engine_own_t *) zhashx_first (self->own); own;
         own = (shoal_engine_own_t *) zhashx_next (self->own)) {
        shoal_log_t *log = own->log;
        uint64_t durable = shoal_log_durable (log);
        if (durable == own->sent && own->sendq_used == 0 && zlistx_size (own->acks) == 0)
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
        shoal_engine_ack_t *ack;
        uint64_t acked = bug_ack ? shoal_log_head (log) : durable; //  TEST ONLY
        while ((ack = (shoal_engine_ack_t *) zlistx_first (own->acks)) && ack->seq <= acked) {
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
            shoal_engine_send_response (self, ack->routing_id, &frame);
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

//  Hands a live event to every subscription of its stream.
static void
s_route_event (shoal_engine_t *self, shoal_event_t **event_p)
{
    shoal_event_t *event = *event_p;
    const char *stream = shoal_event_stream (event);
    shoal_sub_t *last = NULL;
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs)) {
        if (strcmp (shoal_sub_stream (sub), stream) != 0)
            continue;
        //  A node does not replicate itself.
        if (shoal_sub_id (sub) < 0 && shoal_event_origin (event)
            && memcmp (shoal_event_origin (event), self->id, SHOAL_ID_SIZE) == 0)
            continue;
        if (last) {
            shoal_event_t *copy = shoal_event_dup (event);
            if (copy)
                shoal_sub_on_event (last, &copy, false);
        }
        last = sub;
    }
    if (last)
        shoal_sub_on_event (last, event_p, false);
    else
        shoal_event_destroy (event_p);
}

static void
s_feed_local (shoal_engine_t *self, const uint8_t *data, size_t size)
{
    shoal_event_t *event = shoal_event_decode (data, size, self->config->max_event_size, NULL);
    if (event)
        s_route_event (self, &event);
}

static void
s_sub_count (shoal_engine_t *self, const char *stream, int delta)
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

static shoal_durable_t *
s_durable_by_sub (shoal_engine_t *self, int sub_id)
{
    for (shoal_durable_t *durable = (shoal_durable_t *) zlistx_first (self->durables); durable;
         durable = (shoal_durable_t *) zlistx_next (self->durables))
        if (shoal_durable_sub_id (durable) == sub_id)
            return durable;
    return NULL;
}

void
shoal_engine_ack (shoal_engine_t *self, int sub_id, const uint8_t *origin, uint64_t seq,
                  bool cumulative)
{
    shoal_durable_t *durable = s_durable_by_sub (self, sub_id);
    uint64_t cursor = durable ? shoal_durable_ack (durable, origin, seq, cumulative) : 0;
    if (cursor) {
        shoal_store_cursor_set (self->store, shoal_durable_consumer (durable), origin,
                                shoal_durable_stream (durable), cursor);
        if (self->cursors_dirty_ms < 0)
            self->cursors_dirty_ms = shoal_engine_now ();
    }
}

//  Writes cursors that changed (atomically, one file per consumer).
int
shoal_engine_cursors_flush (shoal_engine_t *self)
{
    self->cursors_dirty_ms = -1;
    if (!shoal_store_cursors_dirty (self->store))
        return 0;
    if (shoal_store_cursors_flush (self->store)) {
        shoal_engine_log (self, SHOAL_LOG_ERROR, "cannot write consumer cursors in %s",
                          self->config->data_dir);
        self->cursors_dirty_ms = shoal_engine_now ();
        return -1;
    }
    return 0;
}

//  Deletes a consumer: its cursors, and the bond of its live
//  subscriptions to it. They go on as plain subscriptions; their
//  acknowledgements must not make the consumer again. 0, or -1 when
//  there is no such consumer.
int
shoal_engine_consumer_delete (shoal_engine_t *self, const char *consumer)
{
    if (shoal_store_consumer_delete (self->store, consumer))
        return -1;
    shoal_durable_t *durable = (shoal_durable_t *) zlistx_first (self->durables);
    while (durable) {
        if (streq (shoal_durable_consumer (durable), consumer)) {
            zlistx_delete (self->durables, zlistx_cursor (self->durables));
            durable = (shoal_durable_t *) zlistx_first (self->durables);
        }
        else
            durable = (shoal_durable_t *) zlistx_next (self->durables);
    }
    return 0;
}

//  The start of a durable consumer: after its cursor for each origin it
//  has one for, from the beginning for the others.
static void
s_durable_start (shoal_engine_t *self, shoal_engine_sub_t *request)
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

//  Counts a replica log this node would have opened and did not, for
//  max_logs: once per what was refused (a stream, or one origin's stream),
//  though a refused stream is asked for again at every heartbeat and a
//  refused origin's events keep coming. The store never closes a log
//  (retention trims segments only), so a refusal stands. What was refused
//  is remembered up to max_origins entries; past that every refusal counts.
static void
s_log_refused (shoal_engine_t *self, const char *key)
{
    if (zhashx_lookup (self->logs_refused, key))
        return;
    self->stats.logs_refused++;
    if (zhashx_size (self->logs_refused) < self->config->max_origins)
        zhashx_insert (self->logs_refused, key, self); //  any non-NULL value
}

//  The replica log of (origin, stream), opened when new and max_logs allows.
static shoal_log_t *
s_replica_log (shoal_engine_t *self, const uint8_t *origin, const char *stream)
{
    bool room = shoal_store_log_count (self->store) < self->config->max_logs;
    shoal_log_t *log = shoal_store_log (self->store, origin, stream, room, NULL);
    if (!log && !room) {
        char key[2 * SHOAL_ID_SIZE + SHOAL_STREAM_MAX + 2];
        s_heads_key (key, sizeof key, origin, stream);
        s_log_refused (self, key);
    }
    return log;
}

//  Starts replicating a stream: an internal subscription from where each
//  replica log ends (from the beginning for origins with none), whose
//  deliveries go into replica logs instead of the inbox. A stream with
//  replicas here is followed whatever the number of logs (s_replica_log
//  bounds its new origins); one with none is refused at max_logs.
void
shoal_engine_replicate_stream (shoal_engine_t *self, const char *stream)
{
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs))
        if (shoal_sub_id (sub) < 0 && streq (shoal_sub_stream (sub), stream))
            return; //  already
    if (zhashx_lookup (self->logs_refused, stream))
        return; //  refused, and a refusal stands (s_log_refused)
    size_t count = shoal_store_log_count (self->store);
    uint8_t (*origins)[SHOAL_ID_SIZE] =
        (uint8_t (*)[SHOAL_ID_SIZE]) zmalloc ((count + 1) * SHOAL_ID_SIZE);
    uint64_t *seqs = (uint64_t *) zmalloc ((count + 1) * sizeof (uint64_t));
    size_t n = 0;
    bool held = false;
    for (size_t i = 0; i < count; i++) {
        shoal_log_t *log = shoal_store_log_at (self->store, i);
        if (streq (shoal_log_stream (log), stream)
            && memcmp (shoal_log_origin (log), self->id, SHOAL_ID_SIZE) != 0) {
            held = true;
            if (shoal_log_head (log) > 0) {
                memcpy (origins[n], shoal_log_origin (log), SHOAL_ID_SIZE);
                seqs[n++] = shoal_log_head (log) + 1;
            }
        }
    }
    if (!held && count >= self->config->max_logs) {
        free (origins);
        free (seqs);
        s_log_refused (self, stream);
        return;
    }
    shoal_from_t from = {SHOAL_FROM_SEQ, 1, 0, (const uint8_t (*)[SHOAL_ID_SIZE]) origins, seqs, n};
    shoal_sub_t *sub =
        shoal_sub_new (--self->next_replica_id, stream, NULL, &from, shoal_time_ns (),
                       self->config->reorder_limit, self->config->max_origins);
    free (origins);
    free (seqs);
    if (!sub)
        return;
    zlistx_add_end (self->subs, sub);
    s_sub_count (self, stream, +1);
    shoal_engine_log (self, SHOAL_LOG_INFO, "replicating stream %s", stream);
}

//  Appends what a replication subscription delivers to the replica logs:
//  the same bytes as the origin's (canonical encoding), the same seqs.
static void
s_replica_append (shoal_engine_t *self, shoal_sub_t *sub)
{
    shoal_event_t *event;
    shoal_log_t *log = NULL; //  events come in runs of one origin: looked up once a run
    while ((event = shoal_sub_pop (sub))) {
        const uint8_t *origin = shoal_event_origin (event);
        if (memcmp (origin, self->id, SHOAL_ID_SIZE) != 0) {
            if (!log || memcmp (shoal_log_origin (log), origin, SHOAL_ID_SIZE) != 0
                || strcmp (shoal_log_stream (log), shoal_event_stream (event)) != 0)
                log = s_replica_log (self, origin, shoal_event_stream (event));
            uint64_t seq = shoal_event_seq (event);
            if (log && shoal_log_head (log) > 0 && seq > shoal_log_head (log) + 1) {
                //  The subscription skips a range only when the origin
                //  trimmed it: a replica has no holes, so it starts again
                //  where the origin's history now starts.
                shoal_engine_log (self, SHOAL_LOG_WARNING,
                                  "replica of %s: seqs %" PRIu64 "..%" PRIu64
                                  " were trimmed at the origin; the replica restarts at %" PRIu64,
                                  shoal_event_stream (event), shoal_log_head (log) + 1, seq - 1,
                                  seq);
                if (shoal_log_reset (log))
                    shoal_engine_log (self, SHOAL_LOG_ERROR, "replica of %s: %s",
                                      shoal_event_stream (event), shoal_log_error_text (log));
            }
            size_t size = shoal_event_encoded_size (event);
            if (log && seq > shoal_log_head (log)
                && shoal_buffer_reserve (&self->encode_buffer, &self->encode_alloc, size, 4096)
                       == 0) {
                shoal_event_encode_to (event, self->encode_buffer);
                if (shoal_log_append (log, seq, shoal_event_time_ns (event), self->encode_buffer,
                                      size))
                    shoal_engine_log (self, SHOAL_LOG_ERROR, "replica of %s: %s",
                                      shoal_event_stream (event), shoal_log_error_text (log));
            }
        }
        shoal_event_destroy (&event);
    }
}

void
shoal_engine_subscribe (shoal_engine_t *self, shoal_engine_sub_t *request)
{
    if (request->consumer[0])
        s_durable_start (self, request);
    shoal_sub_t *sub = shoal_sub_new (
        request->id, request->stream, request->type[0] ? request->type : NULL, &request->from,
        shoal_time_ns (), self->config->reorder_limit, self->config->max_origins);
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
    //  Every own log has its entry from start-up on (s_start), so no entry
    //  means no event of this node on the stream yet.
    shoal_engine_own_t *own = shoal_engine_own (self, request->stream, false);
    if (own)
        shoal_sub_origin_known (sub, self->id, own->sent);
    zlistx_add_end (self->subs, sub);
    s_sub_count (self, request->stream, +1);
    if (request->consumer[0]) {
        shoal_durable_t *durable =
            shoal_durable_new (request->id, request->consumer, request->stream);
        zlistx_add_end (self->durables, durable);
    }
    free (request);
}

void
shoal_engine_unsubscribe (shoal_engine_t *self, int id)
{
    shoal_sub_t *sub = shoal_engine_sub_by_id (self, id);
    if (!sub)
        return;
    s_sub_count (self, shoal_sub_stream (sub), -1);
    shoal_sub_stats_add (sub, &self->sub_totals);
    zlistx_delete (self->subs, zlistx_cursor (self->subs));
    if (s_durable_by_sub (self, id))
        zlistx_delete (self->durables, zlistx_cursor (self->durables));
    shoal_engine_forget_pending (self, id, NULL);
}

//  Moves ready events of every subscription into the inbox.
void
shoal_engine_deliver (shoal_engine_t *self)
{
    shoal_inbox_t *inbox = self->args->inbox;
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs)) {
        if (shoal_sub_id (sub) < 0) {
            s_replica_append (self, sub);
            continue;
        }
        shoal_durable_t *durable = s_durable_by_sub (self, shoal_sub_id (sub));
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
                shoal_durable_delivered (durable, shoal_event_origin (run[i]),
                                         shoal_event_seq (run[i]));
            shoal_inbox_push_many (inbox, shoal_sub_id (sub), run, count);
        }
    }
}

//  Serves a repair from a log this node holds (its own, or a replica),
//  directly, without the network.
static void
s_repair_local (shoal_engine_t *self, shoal_sub_t *sub, shoal_log_t *log,
                const shoal_sub_repair_t *repair)
{
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
            shoal_event_t *event =
                shoal_event_decode (data, size, self->config->max_event_size, NULL);
            if (event)
                shoal_sub_on_event (sub, &event, true);
            next = seq + 1;
            sent++;
        }
        shoal_log_iter_destroy (&iter);
    }
    shoal_sub_on_batch (sub, repair->origin, next, next > to, durable);
}

//  The replay asked for sub_id's repairs of origin, parked or not (at
//  most one; of any origin when origin is NULL), or NULL; *key_p gets its
//  key.
static shoal_engine_pending_t *
s_pending (shoal_engine_t *self, int sub_id, const uint8_t *origin, const char **key_p)
{
    for (shoal_engine_pending_t *pending = (shoal_engine_pending_t *) zhashx_first (self->pending);
         pending; pending = (shoal_engine_pending_t *) zhashx_next (self->pending))
        if (pending->sub_id == sub_id
            && (!origin || memcmp (pending->origin, origin, SHOAL_ID_SIZE) == 0)) {
            *key_p = (const char *) zhashx_cursor (self->pending);
            return pending;
        }
    return NULL;
}

void
shoal_engine_forget_pending (shoal_engine_t *self, int sub_id, const uint8_t *origin)
{
    const char *key;
    while (s_pending (self, sub_id, origin, &key))
        zhashx_delete (self->pending, key);
}

void
shoal_engine_forget_peer_replays (shoal_engine_t *self, const uint8_t *id)
{
    zlist_t *doomed = zlist_new ();
    for (shoal_engine_pending_t *pending = (shoal_engine_pending_t *) zhashx_first (self->pending);
         pending; pending = (shoal_engine_pending_t *) zhashx_next (self->pending)) {
        if (memcmp (pending->peer, id, SHOAL_ID_SIZE) != 0)
            continue;
        shoal_sub_t *sub = shoal_engine_sub_by_id (self, pending->sub_id);
        if (sub && !pending->parked)
            shoal_sub_on_repair_error (sub, pending->origin, 0);
        zlist_append (doomed, (void *) zhashx_cursor (self->pending));
    }
    for (const char *key = (const char *) zlist_first (doomed); key;
         key = (const char *) zlist_next (doomed))
        zhashx_delete (self->pending, key);
    zlist_destroy (&doomed);
}

//  Continues sub's parked replay of origin with a Credit of credit, when
//  it is recent and its peer still connected; false when there is none
//  to continue. The replay before a repair is forgotten here when it is
//  not continued: one given up on (its late batches are then dropped),
//  or one parked that its peer ends at its idle timeout. So a
//  subscription has at most one replay asked for per origin.
static bool
s_resume (shoal_engine_t *self, shoal_sub_t *sub, const shoal_sub_repair_t *repair, int64_t now)
{
    const char *key;
    shoal_engine_pending_t *pending = s_pending (self, shoal_sub_id (sub), repair->origin, &key);
    if (!pending)
        return false;
    shoal_peer_t *peer =
        pending->parked && repair->resume && now - pending->sent_ms < S_PARKED_MAX_MS
            ? shoal_engine_peer_by_id (self, pending->peer)
            : NULL;
    if (peer
        && shoal_peer_state (peer, now, self->config->suspect_ms, self->config->expiry_ms)
               == SHOAL_PEER_CONNECTED) {
        Shoal__V1__Credit body = SHOAL__V1__CREDIT__INIT;
        body.replay_id = strtoull (key, NULL, 10);
        body.credit = repair->credit;
        Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
        request.request_id = ++self->next_request_id;
        request.body_case = SHOAL__V1__REQUEST__BODY_CREDIT;
        request.credit = &body;
        zframe_t *frame = shoal_wire_pack_request (&request);
        if (shoal_peer_send (peer, &frame) == 0) {
            pending->parked = false;
            pending->sent_ms = now;
            self->stats.repairs_resumed++;
            return true;
        }
    }
    zhashx_delete (self->pending, key);
    return false;
}

//  Sends the repairs the subscriptions want.
void
shoal_engine_repairs (shoal_engine_t *self)
{
    int64_t now = shoal_engine_now ();
    int timeout = S_REPAIR_TIMEOUT_MS;
    if (s_test_bug ("skip-repair")) //  TEST ONLY
        return;
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs)) {
        shoal_sub_repair_t repair;
        int rounds = 0;
        while (rounds++ < 64 && shoal_sub_next_repair (sub, now, timeout, &repair)) {
            if (s_resume (self, sub, &repair, now))
                continue;
            //  From the origin while it answers; else from a replica: this
            //  node's own, or a peer's that replicates the stream.
            shoal_peer_t *peer = NULL;
            if (memcmp (repair.origin, self->id, SHOAL_ID_SIZE) != 0) {
                peer = shoal_engine_peer_by_id (self, repair.origin);
                if (peer
                    && shoal_peer_state (peer, now, self->config->suspect_ms,
                                         self->config->expiry_ms)
                           != SHOAL_PEER_CONNECTED)
                    peer = NULL;
            }
            shoal_log_t *log = peer || shoal_sub_id (sub) <= 0
                                   ? NULL
                                   : shoal_store_log (self->store, repair.origin,
                                                      shoal_sub_stream (sub), false, NULL);
            if (log) {
                s_repair_local (self, sub, log, &repair);
                continue;
            }
            if (!peer)
                peer = shoal_engine_replica_peer (self, shoal_sub_stream (sub), repair.origin);
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
            shoal_engine_pending_t *pending =
                (shoal_engine_pending_t *) zmalloc (sizeof (shoal_engine_pending_t));
            pending->sub_id = shoal_sub_id (sub);
            memcpy (pending->origin, repair.origin, SHOAL_ID_SIZE);
            memcpy (pending->peer, shoal_peer_id (peer), SHOAL_ID_SIZE);
            pending->sent_ms = now;
            char key[24];
            snprintf (key, sizeof key, "%" PRIu64, request.request_id);
            zhashx_update (self->pending, key, pending);
        }
    }
}

//  --------------------------------------------------------------------------
//  SUB: live events and heartbeats

//  Handles one message from SUB: a topic and a body, or junk.
static void
s_handle_live (shoal_engine_t *self, const uint8_t *topic, size_t topic_size, const uint8_t *body,
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
        shoal_engine_heads_note (self, origin, heartbeat->stream, heartbeat->head_seq);
        if (self->replicate_all && memcmp (origin, self->id, SHOAL_ID_SIZE) != 0)
            shoal_engine_replicate_stream (self, heartbeat->stream);
        //  No peer is touched here: a replica heartbeats on behalf of an
        //  origin that may be dead, and a dead origin that looked alive
        //  would keep getting the repairs its replicas could serve. A
        //  peer's liveness is its answers on the DEALER (pings, Hellos).
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
    shoal_engine_heads_note (self, shoal_event_origin (event), shoal_event_stream (event),
                             shoal_event_seq (event));
    s_route_event (self, &event);
}

//  Reads one message from SUB without waiting; 1 when it read one.
int
shoal_engine_sub_read (shoal_engine_t *self)
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
s_send_heartbeat (shoal_engine_t *self, const uint8_t *origin, const char *stream, uint64_t head)
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
void
shoal_engine_send_heartbeats (shoal_engine_t *self)
{
    for (shoal_engine_own_t *own = (shoal_engine_own_t *) zhashx_first (self->own); own;
         own = (shoal_engine_own_t *) zhashx_next (self->own))
        s_send_heartbeat (self, self->id, own->stream, own->sent);
    for (size_t i = 0; i < shoal_store_log_count (self->store); i++) {
        shoal_log_t *log = shoal_store_log_at (self->store, i);
        if (memcmp (shoal_log_origin (log), self->id, SHOAL_ID_SIZE) != 0
            && shoal_log_durable (log) > 0)
            s_send_heartbeat (self, shoal_log_origin (log), shoal_log_stream (log),
                              shoal_log_durable (log));
    }
}
