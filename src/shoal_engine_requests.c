/*  =========================================================================
    shoal_engine_requests - the engine's ROUTER: requests from peers and clients

    Part of the engine's actor (shoal_engine.c; shoal_engine_int.h draws
    the split). One shoal.v1.Request per message: Hello (a peer, which is
    learnt), Status, Replay and Credit (handed to shoal_replay), Publish
    (a thin client's event, recorded with this node as origin and
    acknowledged once durable, by shoal_engine_commit), Consumer (durable
    consumer cursors), Ping. Every request is checked for frame count,
    size and decoding before it is acted on, and every refusal is counted
    and answered with an Error (promise 6: bad input is never fatal).
    =========================================================================
*/

#include "shoal_engine_int.h"
#include "shoal_buffer.h"

//  --------------------------------------------------------------------------
//  Responses

void
shoal_engine_send_response (shoal_engine_t *self, zframe_t *routing_id, zframe_t **frame_p)
{
    zmq_send (zsock_resolve (self->router), zframe_data (routing_id), zframe_size (routing_id),
              ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (zsock_resolve (self->router), zframe_data (*frame_p), zframe_size (*frame_p),
              ZMQ_DONTWAIT);
    zframe_destroy (frame_p);
}

static void
s_reply_error (shoal_engine_t *self, zframe_t *routing_id, uint64_t request_id, uint32_t code,
               const char *message)
{
    self->stats.bad_requests++;
    zframe_t *frame = shoal_wire_error (request_id, code, message);
    shoal_engine_send_response (self, routing_id, &frame);
}

//  --------------------------------------------------------------------------
//  ROUTER: requests from peers and clients

static void
s_handle_hello (shoal_engine_t *self, zframe_t *routing_id, zframe_t *payload, uint64_t request_id,
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
        shoal_peer_t *peer = shoal_engine_peer_by_id (self, hello->node.data);
        if (peer) {
            shoal_peer_touch (peer, shoal_engine_now ());
            shoal_peer_set_replicates (peer, hello->replicates, hello->n_replicates);
            shoal_engine_peer_pub_update (self, peer, hello->pub_port);
        }
        else {
            //  Secure mode: the caller's key is the one ZAP checked.
            const char *key = self->secure ? zframe_meta (payload, "User-Id") : NULL;
            peer = shoal_engine_peer_learn (self, hello->node.data, hello->name, address,
                                            hello->router_port, hello->pub_port,
                                            key && shoal_secure_key_valid (key) ? key : NULL);
            if (peer)
                shoal_peer_set_replicates (peer, hello->replicates, hello->n_replicates);
        }
    }
    size_t count = zlistx_size (self->peers);
    char **known = (char **) zmalloc ((count ? count : 1) * sizeof (char *));
    size_t n = 0;
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers))
        if (shoal_peer_greeted (peer))
            known[n++] = shoal_engine_peer_spec (self, peer);
    Shoal__V1__Hello reply;
    shoal_engine_hello_fill (self, &reply);
    reply.n_known_peers = n;
    reply.known_peers = known;
    Shoal__V1__Response response = SHOAL__V1__RESPONSE__INIT;
    response.request_id = request_id;
    response.body_case = SHOAL__V1__RESPONSE__BODY_HELLO;
    response.hello = &reply;
    zframe_t *frame = shoal_wire_pack_response (&response);
    shoal_engine_send_response (self, routing_id, &frame);
    for (size_t i = 0; i < n; i++)
        free (known[i]);
    free (known);
}

static void
s_handle_status (shoal_engine_t *self, zframe_t *routing_id, uint64_t request_id)
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
    int64_t now = shoal_engine_now ();
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers), n++) {
        Shoal__V1__PeerInfo init = SHOAL__V1__PEER_INFO__INIT;
        peers[n] = init;
        if (shoal_peer_has_id (peer)) {
            peers[n].node.data = (uint8_t *) shoal_peer_id (peer);
            peers[n].node.len = SHOAL_ID_SIZE;
        }
        peers[n].name = (char *) shoal_peer_name (peer);
        peers[n].endpoint = shoal_engine_peer_spec (self, peer);
        peers[n].state = (char *) shoal_peer_state_name (
            shoal_peer_state (peer, now, self->config->suspect_ms, self->config->expiry_ms));
        peer_ptrs[n] = &peers[n];
    }
    shoal_node_stats_t stats;
    shoal_engine_stats_fill (self, &stats);
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
        {"repairs_in_flight", stats.repairs_in_flight},
        {"origins_refused", stats.origins_refused},
        {"replay_sessions", stats.replay_sessions},
        {"repairs_resumed", stats.repairs_resumed},
        {"repairs_parked", stats.repairs_parked},
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
    shoal_engine_send_response (self, routing_id, &frame);
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
s_dedupe_load (shoal_engine_t *self, shoal_engine_own_t *own)
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

//  A thin client publishes through this node: the node is the origin.
//  Returns 0, or 1 when the heads lock was busy and the request must be
//  tried again (the caller keeps it).
//  Queues the PublishAck of seq, sent once seq is durable.
static void
s_ack_add (shoal_engine_own_t *own, zframe_t *routing_id, uint64_t request_id, uint64_t seq,
           bool duplicate)
{
    shoal_engine_ack_t *ack = (shoal_engine_ack_t *) zmalloc (sizeof (shoal_engine_ack_t));
    ack->routing_id = zframe_dup (routing_id);
    ack->request_id = request_id;
    ack->seq = seq;
    ack->duplicate = duplicate;
    zlistx_add_end (own->acks, ack);
}

//  A PublishRequest, its bytes as the client sent them.
static int
s_handle_publish (shoal_engine_t *self, zframe_t *routing_id, const uint8_t *publish,
                  size_t publish_size, uint64_t request_id)
{
    //  The event's own bytes, decoded by the strict codec: a thin client's
    //  event gets exactly the checks of every other input.
    const uint8_t *raw = NULL;
    size_t raw_size = 0;
    if (shoal_wire_publish_event (publish, publish_size, &raw, &raw_size) || !raw) {
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_BAD_REQUEST,
                       "a PublishRequest holds exactly one event");
        return 0;
    }
    int error = 0;
    shoal_event_t *event = shoal_event_decode (raw, raw_size, self->config->max_event_size, &error);
    //  As recorded (with origin, seq, time and id) it must still fit, or
    //  no peer could decode it: it would be a gap nobody can repair. The
    //  size counts the longest seq, so it is also the room to encode it.
    size_t worst = event ? shoal_event_stamp (event, self->id) : 0;
    if (event && worst > self->config->max_event_size) {
        shoal_event_destroy (&event);
        error = SHOAL_ERR_TOO_LARGE;
    }
    if (!event) {
        char message[200];
        snprintf (message, sizeof message, "invalid event: %s", shoal_strerror (error));
        s_reply_error (self, routing_id, request_id, shoal_error_wire_code (error), message);
        return 0;
    }
    const char *stream = shoal_event_stream (event);
    shoal_engine_own_t *own = shoal_engine_own (self, stream, false);
    if (!own && shoal_store_log_count (self->store) >= self->config->max_logs) {
        shoal_event_destroy (&event);
        self->stats.logs_refused++;
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_BUSY,
                       "this node holds as many logs as it may (max_logs): no new stream");
        return 0;
    }
    if (!own)
        own = shoal_engine_own (self, stream, true);
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
        s_ack_add (own, routing_id, request_id, first, true);
        shoal_event_destroy (&event);
        return 0;
    }
    //  Take the next seq as the facade does. Every seq the facade took
    //  before we got the lock is already in the outbox: take them first so
    //  the log receives seqs in order.
    if (!shoal_heads_try_lock (self->args->heads)) {
        shoal_event_destroy (&event);
        return 1;
    }
    shoal_engine_outbox_read (self);
    uint64_t seq = shoal_heads_take (self->args->heads, stream);
    shoal_event_set_seq (event, seq);
    int rc = seq == 0
                 ? -1
                 : shoal_buffer_reserve (&self->encode_buffer, &self->encode_alloc, worst, 4096);
    if (rc == 0) {
        size_t size = shoal_event_encode_to (event, self->encode_buffer);
        const char *type = shoal_event_type (event);
        rc = shoal_engine_own_append (self, own, seq, self->encode_buffer, size,
                                      shoal_event_time_ns (event), type, strlen (type));
    }
    if (rc && seq)
        shoal_heads_untake (self->args->heads, stream, seq); //  not in the log: no hole
    shoal_heads_unlock (self->args->heads);
    if (rc) {
        s_reply_error (self, routing_id, request_id, SHOAL_WIRE_STORAGE,
                       "storage failure: the event could not be recorded");
        shoal_event_destroy (&event);
        return 0;
    }
    shoal_dedupe_insert (own->dedupe, shoal_event_id (event), seq);
    s_ack_add (own, routing_id, request_id, seq, false);
    shoal_event_destroy (&event);
    return 0;
}

//  Durable consumer cursors for thin clients (ConsumerRequest).
static void
s_handle_consumer (shoal_engine_t *self, zframe_t *routing_id, uint64_t request_id,
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
        if (added > 0 && !shoal_store_consumer_exists (self->store, request->name)
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
        if (shoal_engine_cursors_flush (self)) {
            s_reply_error (self, routing_id, request_id, SHOAL_WIRE_STORAGE,
                           "storage failure: the cursors could not be written");
            return;
        }
    }
    else if (streq (op, "delete")) {
        if (shoal_engine_consumer_delete (self, request->name)) {
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
    shoal_engine_send_response (self, routing_id, &frame);
    free (names);
    free (heads);
    free (head_ptrs);
    free (origins);
}

//  Handles one ROUTER message. Returns 1 when it must be retried later.
int
shoal_engine_handle_request (shoal_engine_t *self, zmsg_t *msg)
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
    //  A publish, the one request that comes in streams, is read from its
    //  bytes alone (s_handle_publish decodes the event strictly); the
    //  others go through protobuf-c.
    shoal_wire_envelope_t envelope;
    if (shoal_wire_scan_envelope (zframe_data (payload), zframe_size (payload), &envelope) == 0
        && envelope.body == SHOAL__V1__REQUEST__BODY_PUBLISH)
        return s_handle_publish (self, routing_id, envelope.data, envelope.size,
                                 envelope.request_id);
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
        case SHOAL__V1__REQUEST__BODY_PUBLISH: //  merged from two: the scan gives it no bytes
            s_reply_error (self, routing_id, id, SHOAL_WIRE_BAD_REQUEST,
                           "a request holds one PublishRequest, once");
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
            shoal_engine_send_response (self, routing_id, &frame);
            break;
        }
        default:
            s_reply_error (self, routing_id, id, SHOAL_WIRE_BAD_REQUEST,
                           "request has no body (hello, status, replay, publish, credit or ping)");
    }
    shoal__v1__request__free_unpacked (request, NULL);
    return retry;
}
