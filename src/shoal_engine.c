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

    This file is the actor itself: start and stop, the loop and its
    timers, the pipe commands. The rest is in shoal_engine_streams.c,
    shoal_engine_peers.c and shoal_engine_requests.c; shoal_engine_int.h
    says which does what.
    ========================================================================= */

#include "shoal_engine_int.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <unistd.h>

#define S_READ_BATCH 512       //  messages read per socket per turn
#define S_REPLAY_BUDGET 2048   //  replay events sent per turn
#define S_PEER_CHECK_MS 100    //  how often peer states are looked at
#define S_REPAIR_TICK_MS 50    //  how often repairs are looked at
#define S_PENDING_MAX_MS 60000 //  forget replay requests older than this
#define S_REHELLO_EVERY 5      //  heartbeats between two Hellos to a greeted peer
#define S_KEYS_CHECK_MS 250    //  secure mode: how often the allow-list is looked at

//  --------------------------------------------------------------------------
//  Small helpers

int64_t
shoal_engine_now (void)
{
    return zclock_mono ();
}

//  Logs one line to stderr when level is within the node's log level.
void
shoal_engine_log (shoal_engine_t *self, int level, const char *format, ...)
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
//  The actor pipe

void
shoal_engine_stats_fill (shoal_engine_t *self, shoal_node_stats_t *stats)
{
    *stats = self->stats;
    shoal_sub_stats_t totals = self->sub_totals;
    for (shoal_sub_t *sub = (shoal_sub_t *) zlistx_first (self->subs); sub;
         sub = (shoal_sub_t *) zlistx_next (self->subs))
        shoal_sub_stats_add (sub, &totals);
    stats->delivered = totals.delivered;
    stats->gaps_detected = totals.gaps_detected;
    stats->events_repaired = totals.events_repaired;
    stats->duplicates_dropped = totals.duplicates_dropped;
    stats->events_deferred = totals.deferred;
    stats->origins_refused = self->stats.origins_refused + totals.origins_refused;
    stats->replays_served = shoal_replay_requests_served (self->replay);
    stats->events_served = shoal_replay_events_sent (self->replay);
    stats->auth_refused =
        self->secure ? self->beacons_refused + shoal_secure_refused (self->secure) : 0;
    stats->replays_evicted = shoal_replay_sessions_evicted (self->replay);
    stats->repairs_in_flight = stats->repairs_parked = 0;
    for (shoal_engine_pending_t *pending = (shoal_engine_pending_t *) zhashx_first (self->pending);
         pending; pending = (shoal_engine_pending_t *) zhashx_next (self->pending))
        if (pending->parked)
            stats->repairs_parked++;
        else
            stats->repairs_in_flight++;
    stats->replay_sessions = shoal_replay_sessions (self->replay);
    stats->peers = 0;
    int64_t now = shoal_engine_now ();
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers))
        if (shoal_peer_state (peer, now, self->config->suspect_ms, self->config->expiry_ms)
            == SHOAL_PEER_CONNECTED)
            stats->peers++;
}

static void
s_reply_peers (shoal_engine_t *self)
{
    size_t count = zlistx_size (self->peers);
    shoal_peer_info_t *infos = (shoal_peer_info_t *) zmalloc ((count + 1) * sizeof *infos);
    size_t n = 0;
    int64_t now = shoal_engine_now ();
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers), n++) {
        if (shoal_peer_has_id (peer))
            memcpy (infos[n].id, shoal_peer_id (peer), SHOAL_ID_SIZE);
        snprintf (infos[n].name, sizeof infos[n].name, "%s", shoal_peer_name (peer));
        char *spec = shoal_engine_peer_spec (self, peer);
        snprintf (infos[n].endpoint, sizeof infos[n].endpoint, "%s", spec);
        free (spec);
        snprintf (infos[n].state, sizeof infos[n].state, "%s",
                  shoal_peer_state_name (shoal_peer_state (peer, now, self->config->suspect_ms,
                                                           self->config->expiry_ms)));
    }
    zsock_send (self->pipe, "b", infos, n * sizeof *infos);
    free (infos);
}

//  An event the facade sequenced, as the outbox holds it.
static void
s_handle_publish_record (shoal_engine_t *self, const shoal_outbox_record_t *record)
{
    shoal_engine_own_t *own = shoal_engine_own (self, record->stream, true);
    if (!own)
        shoal_heads_update (self->args->heads, record->stream, 0, 0, true);
    else if (record->seq != shoal_log_head (own->log) + 1) {
        //  A seq the log does not expect: records sequenced before an
        //  append failed that left the head behind them (a failed push
        //  gives its seq back, shoal_heads_untake). Number again after
        //  the real head, so the stream does not stall (a failed log
        //  stays failed: it hands out no more seqs).
        shoal_engine_log (self, SHOAL_LOG_ERROR,
                          "%s: event seq %" PRIu64 " dropped, log head is %" PRIu64, record->stream,
                          record->seq, shoal_log_head (own->log));
        shoal_heads_renumber (self->args->heads, record->stream, shoal_log_head (own->log),
                              shoal_log_durable (own->log), shoal_log_failed (own->log));
    }
    else
        shoal_engine_own_append (self, own, record->seq, record->data, record->size,
                                 record->time_ns, record->type, record->type_size);
}

//  Appends everything the facade published so far. Returns 1 when there was any.
int
shoal_engine_outbox_read (shoal_engine_t *self)
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
s_handle_pipe_message (shoal_engine_t *self, zmsg_t *msg)
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
            shoal_engine_subscribe (self, request);
        }
        zframe_destroy (&pointer);
    }
    else if (streq (command, "UNSUBSCRIBE")) {
        char *id = zmsg_popstr (msg);
        if (id)
            shoal_engine_unsubscribe (self, atoi (id));
        zstr_free (&id);
    }
    else if (streq (command, "ACK")) {
        char *id = zmsg_popstr (msg);
        zframe_t *origin = zmsg_pop (msg);
        char *seq = zmsg_popstr (msg);
        char *cumulative = zmsg_popstr (msg);
        if (id && origin && seq && cumulative && zframe_size (origin) == SHOAL_ID_SIZE)
            shoal_engine_ack (self, atoi (id), zframe_data (origin), strtoull (seq, NULL, 10),
                              streq (cumulative, "1"));
        zstr_free (&id);
        zframe_destroy (&origin);
        zstr_free (&seq);
        zstr_free (&cumulative);
    }
    else if (streq (command, "ACKFLUSH"))
        zstr_send (self->pipe, shoal_engine_cursors_flush (self) == 0 ? "0" : "-1");
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
        int deleted = name ? shoal_engine_consumer_delete (self, name) : -1;
        zstr_send (self->pipe, deleted == 0 ? "0" : "-1");
        zstr_free (&name);
    }
    else if (streq (command, "STATS")) {
        shoal_node_stats_t stats;
        shoal_engine_stats_fill (self, &stats);
        zsock_send (self->pipe, "b", &stats, sizeof stats);
    }
    else if (streq (command, "PEERS"))
        s_reply_peers (self);
    else if (streq (command, "$TERM")) {
        self->terminated = true;
        rc = -1;
    }
    else
        shoal_engine_log (self, SHOAL_LOG_ERROR, "engine got an unknown command %s", command);
    zstr_free (&command);
    zmsg_destroy (&msg);
    return rc;
}

//  Reads one pipe message without waiting, after what the outbox holds
//  (a command must see every publish made before it). Returns 1 when it
//  read one, 0 when the pipe was empty, -1 on $TERM.
static int
s_pipe_read (shoal_engine_t *self)
{
    zmsg_t *msg = zmsg_recv_nowait (self->pipe);
    if (!msg)
        return 0;
    shoal_engine_outbox_read (self);
    return s_handle_pipe_message (self, msg) < 0 ? -1 : 1;
}

//  --------------------------------------------------------------------------
//  Start and stop

static shoal_log_t *
s_lookup (void *arg, const uint8_t origin[SHOAL_ID_SIZE], const char *stream)
{
    shoal_engine_t *self = (shoal_engine_t *) arg;
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
s_fail_start (shoal_engine_t *self, int error, const char *format, ...)
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
s_bind (shoal_engine_t *self, zsock_t *socket, const char *endpoint, const char *what, char *bound,
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
s_secure_start (shoal_engine_t *self)
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
        shoal_engine_log (
            self, SHOAL_LOG_WARNING,
            "this node's key %s is not in the allow-list %s: peers that share it will "
            "refuse this node (`shoal keys allow %s DATA/node.cert`)",
            shoal_secure_public_txt (self->secure), config->keys_dir, config->keys_dir);
    self->next_keys_check_ms = shoal_engine_now () + S_KEYS_CHECK_MS;
    return 0;
}

//  Binds a new server socket like `old` on the endpoint old had, then
//  destroys old. The port was released by old a moment ago, so the bind
//  is tried again for a while. The new socket or NULL.
static zsock_t *
s_secure_rebind (shoal_engine_t *self, zsock_t *old, int type, const char *endpoint)
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
    shoal_engine_log (self, SHOAL_LOG_ERROR, "cannot bind %s again after a revocation: %s",
                      endpoint, zmq_strerror (zmq_errno ()));
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
s_secure_revoke (shoal_engine_t *self)
{
    shoal_engine_log (self, SHOAL_LOG_INFO,
                      "a key left the allow-list %s: cutting every connection",
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
            shoal_engine_peer_remove (self, peer, true);
        peer = next;
        if (peer)
            zlistx_find (self->peers, peer);
    }
    self->peers_changed = true;
}

static int
s_start (shoal_engine_t *self)
{
    shoal_node_config_t *config = self->config;
    shoal_log_config_t log_config;
    shoal_log_config_defaults (&log_config);
    log_config.fsync = config->fsync;
    if (config->io)
        log_config.io = config->io;
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
            shoal_engine_own (self, shoal_log_stream (log), true);
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
        shoal_engine_peer_add (self, config->peers[i], true);
    //  Replication: named streams start now; "all" starts each stream when
    //  its first heartbeat arrives (and now, for replicas already held).
    for (size_t i = 0; i < config->replicate_count; i++) {
        if (streq (config->replicate[i], "all"))
            self->replicate_all = true;
        else if (shoal_stream_name_valid (config->replicate[i]))
            shoal_engine_replicate_stream (self, config->replicate[i]);
        else
            return s_fail_start (self, SHOAL_ERR_BAD_STREAM,
                                 "cannot replicate \"%s\": not a stream name (or \"all\")",
                                 config->replicate[i]);
    }
    //  Replicating everything means hearing every stream's heartbeats,
    //  including streams no one here has subscribed to yet.
    if (self->replicate_all) {
        zsock_set_subscribe (self->sub, "");
        for (size_t i = 0; i < shoal_store_log_count (self->store); i++) {
            shoal_log_t *log = shoal_store_log_at (self->store, i);
            if (memcmp (shoal_log_origin (log), self->id, SHOAL_ID_SIZE) != 0)
                shoal_engine_replicate_stream (self, shoal_log_stream (log));
        }
    }
    shoal_store_set_retention (self->store, "*", config->retain_bytes, config->retain_age_ns);
    int64_t now = shoal_engine_now ();
    self->next_heartbeat_ms = now + config->heartbeat_ms;
    self->next_peer_check_ms = now + S_PEER_CHECK_MS;
    self->next_repair_ms = now + S_REPAIR_TICK_MS;
    self->next_expire_ms = now + 1000;
    self->next_retention_ms = now + 1000;
    return 0;
}

static void
s_stop (shoal_engine_t *self)
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
        shoal_engine_commit (self);
        shoal_engine_cursors_flush (self);
    }
    shoal_beacon_destroy (&self->beacon);
    shoal_replay_destroy (&self->replay);
    zlistx_destroy (&self->subs);
    zlistx_destroy (&self->durables);
    zlistx_destroy (&self->peers);
    zhashx_destroy (&self->own);
    self->last_own = NULL;
    shoal_store_close (&self->store);
    zsock_destroy (&self->pub);
    zsock_destroy (&self->sub);
    zsock_destroy (&self->router);
    shoal_secure_destroy (&self->secure);
    shoal_heads_close (self->args->heads);
}

//  --------------------------------------------------------------------------
//  The loop

//  Forgets the repairs asked for more than S_PENDING_MAX_MS ago whose
//  answer never ended (a peer that went away mid-replay): their late
//  batches, if any come, are ignored.
static void
s_expire_pending (shoal_engine_t *self, int64_t now)
{
    zlist_t *doomed = zlist_new ();
    for (shoal_engine_pending_t *pending = (shoal_engine_pending_t *) zhashx_first (self->pending);
         pending; pending = (shoal_engine_pending_t *) zhashx_next (self->pending))
        if (now - pending->sent_ms > S_PENDING_MAX_MS)
            zlist_append (doomed, (void *) zhashx_cursor (self->pending));
    for (const char *key = (const char *) zlist_first (doomed); key;
         key = (const char *) zlist_next (doomed))
        zhashx_delete (self->pending, key);
    zlist_destroy (&doomed);
}

static int64_t
s_min (int64_t a, int64_t b)
{
    return a < b ? a : b;
}

//  Milliseconds until the next timer (or 0 when work is waiting).
static long
s_poll_timeout (shoal_engine_t *self)
{
    if (self->replay_busy)
        return 0;
    int64_t now = shoal_engine_now ();
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
    shoal_engine_t *self = (shoal_engine_t *) zmalloc (sizeof (shoal_engine_t));
    self->pipe = pipe;
    self->args = (shoal_engine_args_t *) arg;
    self->config = &self->args->config;
    self->peers = zlistx_new ();
    zlistx_set_destructor (self->peers, (zlistx_destructor_fn *) shoal_peer_destroy);
    self->gone = zhashx_new ();
    self->own = zhashx_new ();
    zhashx_set_destructor (self->own, (zhashx_destructor_fn *) shoal_engine_own_destroy);
    self->heads = zhashx_new ();
    self->subs = zlistx_new ();
    zlistx_set_destructor (self->subs, (zlistx_destructor_fn *) shoal_sub_destroy);
    self->durables = zlistx_new ();
    zlistx_set_destructor (self->durables, (zlistx_destructor_fn *) shoal_durable_destroy);
    self->cursors_dirty_ms = -1;
    self->sub_streams = zhashx_new ();
    self->logs_refused = zhashx_new ();
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
            shoal_engine_outbox_read (self);
            for (int n = 0; n < S_READ_BATCH && !self->terminated; n++)
                if (s_pipe_read (self) <= 0)
                    break;
            if (self->terminated)
                break;
            zmsg_t *msg;
            while ((msg = (zmsg_t *) zlistx_first (retry))) {
                zlistx_detach_cur (retry);
                if (shoal_engine_handle_request (self, msg) == 1) {
                    zlistx_add_start (retry, msg);
                    break;
                }
                zmsg_destroy (&msg);
            }
            for (int n = 0; n < S_READ_BATCH && zlistx_size (retry) == 0; n++) {
                if (!(msg = zmsg_recv_nowait (self->router)))
                    break;
                if (shoal_engine_handle_request (self, msg) == 1)
                    zlistx_add_end (retry, msg);
                else
                    zmsg_destroy (&msg);
            }
            for (int n = 0; n < S_READ_BATCH; n++)
                if (!shoal_engine_sub_read (self))
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
                        shoal_engine_handle_response (self, peer, frame);
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
                    shoal_engine_on_beacon (self, ip, &beacon);
                }
            }
            if (self->waiting_space && (items[3].revents & ZMQ_POLLIN)) {
                shoal_inbox_clear_space (self->args->inbox);
                self->waiting_space = false;
            }

            //  Then act on it: commit, repair, deliver, replay, timers.
            shoal_engine_commit (self);
            //  Repairs are looked at every turn (a new gap is asked for at
            //  once); the tick only bounds how long a timeout goes unseen.
            int64_t now = shoal_engine_now ();
            shoal_engine_repairs (self);
            self->next_repair_ms = now + S_REPAIR_TICK_MS;
            shoal_engine_deliver (self);
            self->replay_busy =
                shoal_replay_pump (self->replay, self->router, S_REPLAY_BUDGET) == 1;
            if (now >= self->next_heartbeat_ms) {
                shoal_engine_send_heartbeats (self);
                //  Every few heartbeats a Hello even to greeted peers: a
                //  peer may have restarted on its endpoint with another
                //  PUB port, and its known peers change.
                bool rehello = ++self->heartbeat_count % S_REHELLO_EVERY == 0;
                for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
                     peer = (shoal_peer_t *) zlistx_next (self->peers)) {
                    if (shoal_peer_greeted (peer) && !rehello)
                        shoal_engine_send_ping (self, peer);
                    else
                        shoal_engine_send_hello (self, peer);
                }
                self->next_heartbeat_ms = now + self->config->heartbeat_ms;
            }
            if (self->secure && now >= self->next_keys_check_ms) {
                if (shoal_secure_check (self->secure))
                    s_secure_revoke (self);
                self->next_keys_check_ms = now + S_KEYS_CHECK_MS;
            }
            if (now >= self->next_peer_check_ms) {
                shoal_engine_check_peers (self);
                self->next_peer_check_ms = now + S_PEER_CHECK_MS;
            }
            if (self->cursors_dirty_ms >= 0 && now - self->cursors_dirty_ms >= 50)
                shoal_engine_cursors_flush (self);
            if (now >= self->next_retention_ms) {
                if (shoal_store_apply_retention (self->store, shoal_time_ns ()) < 0)
                    shoal_engine_log (self, SHOAL_LOG_ERROR, "retention failed in %s",
                                      self->config->data_dir);
                self->next_retention_ms = now + 5000;
            }
            if (now >= self->next_expire_ms) {
                shoal_replay_expire (self->replay, NULL);
                s_expire_pending (self, now);
                self->next_expire_ms = now + 1000;
            }
        }
        free (items);
        zlistx_destroy (&retry);
        s_stop (self);
    }
    //  s_stop, run on both paths, took the subscriptions, durables, peers
    //  and own streams down with the store; what is left is the tables.
    zhashx_destroy (&self->gone);
    zhashx_destroy (&self->heads);
    zhashx_destroy (&self->sub_streams);
    zhashx_destroy (&self->logs_refused);
    free (self->encode_buffer);
    zhashx_destroy (&self->pending);
    free (self);
}
