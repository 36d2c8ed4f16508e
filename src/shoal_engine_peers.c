/*  =========================================================================
    shoal_engine_peers - the engine's peers

    Part of the engine's actor (shoal_engine.c; shoal_engine_int.h draws
    the split). Peers are found by beacon (zbeacon or the loopback
    beacon), by static endpoints, and by peer exchange
    (Hello.known_peers); each gets a DEALER to its ROUTER and this node's
    SUB connects to its PUB. Hello tells a peer who we are, Ping keeps a
    greeted peer's state fresh. A peer that goes silent past expiry is
    dropped; one that keeps coming back is held off for a while that
    doubles each time (damping), so a flapping link does not cause a
    storm of connects and disconnects. Static peers are never dropped.

    The DEALER side is here too: responses from peers, that is Hello
    replies (with peer exchange), errors, and replay batches, which go to
    the subscription that asked for the repair.
    =========================================================================
*/

#include "shoal_engine_int.h"

#define S_DAMP_WINDOW_MS 60000 //  a peer gone twice within this is flapping
#define S_DAMP_MAX_MS 30000    //  longest hold-off of a flapping peer

//  What the engine remembers of a peer that went away (damping).
typedef struct {
    unsigned count;        //  departures within the damping window
    int64_t last_gone_ms;  //  when it last went
    int64_t hold_until_ms; //  beacons ignored until then
} s_gone_t;

//  --------------------------------------------------------------------------
//  Peers

shoal_peer_t *
shoal_engine_peer_by_id (shoal_engine_t *self, const uint8_t *id)
{
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers))
        if (shoal_peer_has_id (peer) && memcmp (shoal_peer_id (peer), id, SHOAL_ID_SIZE) == 0)
            return peer;
    return NULL;
}

//  A connected peer that replicates stream (and is not origin itself).
shoal_peer_t *
shoal_engine_replica_peer (shoal_engine_t *self, const char *stream, const uint8_t *origin)
{
    int64_t now = shoal_engine_now ();
    for (shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers); peer;
         peer = (shoal_peer_t *) zlistx_next (self->peers))
        if (shoal_peer_replicates (peer, stream) && shoal_peer_has_id (peer)
            && memcmp (shoal_peer_id (peer), origin, SHOAL_ID_SIZE) != 0
            && shoal_peer_state (peer, now, self->config->suspect_ms, self->config->expiry_ms)
                   == SHOAL_PEER_CONNECTED)
            return peer;
    return NULL;
}

void
shoal_engine_peer_remove (shoal_engine_t *self, shoal_peer_t *peer, bool damp)
{
    const char *pub = shoal_peer_pub_endpoint (peer);
    if (pub)
        zsock_disconnect (self->sub, "%s", pub);
    if (shoal_peer_has_id (peer))
        shoal_engine_forget_peer_replays (self, shoal_peer_id (peer));
    if (damp && shoal_peer_has_id (peer)) {
        char hex[2 * SHOAL_ID_SIZE + 1];
        shoal_id_to_hex (shoal_peer_id (peer), hex);
        s_gone_t *gone = (s_gone_t *) zhashx_lookup (self->gone, hex);
        if (!gone) {
            gone = (s_gone_t *) zmalloc (sizeof (s_gone_t));
            zhashx_insert (self->gone, hex, gone);
        }
        int64_t now = shoal_engine_now ();
        gone->count = now - gone->last_gone_ms < S_DAMP_WINDOW_MS ? gone->count + 1 : 1;
        gone->last_gone_ms = now;
        int64_t hold = gone->count >= 2 ? (int64_t) 1000 << (gone->count - 2) : 0;
        gone->hold_until_ms = now + (hold < S_DAMP_MAX_MS ? hold : S_DAMP_MAX_MS);
        shoal_engine_log (self, SHOAL_LOG_INFO, "peer %s (%s) is gone", shoal_peer_name (peer),
                          hex);
    }
    void *handle = zlistx_find (self->peers, peer);
    if (handle)
        zlistx_delete (self->peers, handle);
    self->peers_changed = true;
}

static bool
s_known_endpoint (shoal_engine_t *self, const char *endpoint)
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

//  How a peer is named to others (peer exchange, Status): its ROUTER
//  endpoint, with "#KEY" in secure mode. Caller owns return value.
char *
shoal_engine_peer_spec (shoal_engine_t *self, shoal_peer_t *peer)
{
    if (self->secure && *shoal_peer_key (peer))
        return zsys_sprintf ("%s#%s", shoal_peer_router_endpoint (peer), shoal_peer_key (peer));
    return strdup (shoal_peer_router_endpoint (peer));
}

shoal_peer_t *
shoal_engine_peer_learn (shoal_engine_t *self, const uint8_t *id, const char *name, const char *ip,
                         uint32_t router_port, uint32_t pub_port, const char *key)
{
    char endpoint[160];
    snprintf (endpoint, sizeof endpoint, "tcp://%s:%u%s%s", ip, router_port, key ? "#" : "",
              key ? key : "");
    shoal_peer_t *peer = shoal_engine_peer_add (self, endpoint, false);
    if (peer) {
        shoal_peer_set_identity (peer, id, name);
        shoal_engine_peer_pub_update (self, peer, pub_port);
    }
    return peer;
}

shoal_peer_t *
shoal_engine_peer_add (shoal_engine_t *self, const char *router_endpoint, bool is_static)
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
        shoal_engine_log (
            self, SHOAL_LOG_WARNING,
            "ignoring peer %s: after # comes the peer's public key (Z85) or the name of "
            "its certificate in the keys directory",
            router_endpoint);
        return NULL;
    }
    if (self->secure && !*key) {
        shoal_engine_log (
            self, SHOAL_LOG_WARNING,
            "ignoring peer %s: in secure mode a peer endpoint needs its key: "
            "tcp://HOST:PORT#KEY (Z85) or #NAME (a certificate in the keys directory)",
            router_endpoint);
        return NULL;
    }
    if (self->secure && !shoal_secure_allowed (self->secure, key)) {
        shoal_engine_log (self, SHOAL_LOG_INFO,
                          "ignoring peer %s: its key is not in the allow-list", plain);
        return NULL;
    }
    shoal_peer_t *peer =
        shoal_peer_new_secure (plain, is_static, self->config->sndhwm, shoal_engine_now (),
                               self->secure, self->secure ? key : NULL);
    if (!peer) {
        shoal_engine_log (self, SHOAL_LOG_WARNING,
                          "ignoring peer endpoint %s (expected tcp://HOST:PORT)", router_endpoint);
        return NULL;
    }
    //  A peer's responses are at most a batch of replay_batch_bytes or one
    //  event; anything bigger ends the connection.
    zsock_set_maxmsgsize (
        shoal_peer_dealer (peer),
        (int64_t) (self->config->max_event_size + self->config->replay_batch_bytes + 65536));
    zlistx_add_end (self->peers, peer);
    self->peers_changed = true;
    shoal_engine_send_hello (self, peer);
    return peer;
}

static void
s_connect_pub (shoal_engine_t *self, shoal_peer_t *peer)
{
    const char *pub = shoal_peer_pub_endpoint (peer);
    if (pub && self->secure)
        shoal_secure_client (self->secure, self->sub, shoal_peer_key (peer));
    if (pub && zsock_connect (self->sub, "%s", pub))
        shoal_engine_log (self, SHOAL_LOG_WARNING, "cannot connect to %s", pub);
}

//  Connects SUB to the PUB port a peer announces; a peer that restarted
//  on the same ROUTER endpoint may announce another one, and then the old
//  connection hears nothing more (no events, no heartbeats).
void
shoal_engine_peer_pub_update (shoal_engine_t *self, shoal_peer_t *peer, uint32_t pub_port)
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
    s_connect_pub (self, peer);
}

void
shoal_engine_hello_fill (shoal_engine_t *self, Shoal__V1__Hello *hello)
{
    shoal__v1__hello__init (hello);
    hello->node.data = self->id;
    hello->node.len = SHOAL_ID_SIZE;
    hello->name = (char *) self->config->name;
    hello->mesh = (char *) self->config->mesh;
    hello->pub_port = (uint32_t) self->pub_port;
    hello->router_port = (uint32_t) self->router_port;
    hello->n_replicates = self->config->replicate_count;
    hello->replicates = (char **) self->config->replicate;
}

void
shoal_engine_send_hello (shoal_engine_t *self, shoal_peer_t *peer)
{
    Shoal__V1__Hello hello;
    shoal_engine_hello_fill (self, &hello);
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = ++self->next_request_id;
    request.body_case = SHOAL__V1__REQUEST__BODY_HELLO;
    request.hello = &hello;
    zframe_t *frame = shoal_wire_pack_request (&request);
    shoal_peer_send (peer, &frame);
}

void
shoal_engine_send_ping (shoal_engine_t *self, shoal_peer_t *peer)
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
s_peer_identify (shoal_engine_t *self, shoal_peer_t *peer, const uint8_t *id, const char *name,
                 uint32_t pub_port)
{
    if (memcmp (id, self->id, SHOAL_ID_SIZE) == 0) {
        shoal_engine_peer_remove (self, peer, false); //  an endpoint of our own
        return false;
    }
    shoal_peer_t *other = shoal_engine_peer_by_id (self, id);
    if (other && other != peer) {
        //  Known already under another endpoint: keep the first.
        shoal_peer_touch (other, shoal_engine_now ());
        shoal_engine_peer_remove (self, peer, false);
        return false;
    }
    shoal_peer_set_identity (peer, id, name);
    shoal_engine_peer_pub_update (self, peer, pub_port);
    if (!shoal_peer_greeted (peer)) {
        shoal_peer_set_greeted (peer, true);
        char hex[2 * SHOAL_ID_SIZE + 1];
        shoal_id_to_hex (id, hex);
        shoal_engine_log (self, SHOAL_LOG_INFO, "connected to peer %s (%s) at %s", name, hex,
                          shoal_peer_router_endpoint (peer));
    }
    shoal_peer_touch (peer, shoal_engine_now ());
    return true;
}

void
shoal_engine_on_beacon (shoal_engine_t *self, const char *ip, const shoal_beacon_msg_t *msg)
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
    shoal_peer_t *peer = shoal_engine_peer_by_id (self, msg->node);
    char endpoint[96];
    snprintf (endpoint, sizeof endpoint, "tcp://%s:%u", ip, msg->router_port);
    if (msg->leaving) {
        if (peer)
            shoal_engine_peer_remove (self, peer, false);
        return;
    }
    if (peer) {
        if (strcmp (shoal_peer_router_endpoint (peer), endpoint) == 0) {
            shoal_peer_touch (peer, shoal_engine_now ());
            return;
        }
        //  Same id, new ports: the peer restarted. Reconnect.
        shoal_engine_peer_remove (self, peer, false);
    }
    char hex[2 * SHOAL_ID_SIZE + 1];
    shoal_id_to_hex (msg->node, hex);
    s_gone_t *gone = (s_gone_t *) zhashx_lookup (self->gone, hex);
    if (gone && shoal_engine_now () < gone->hold_until_ms)
        return; //  flapping: held off for now
    shoal_engine_peer_learn (self, msg->node, NULL, ip, msg->router_port, msg->pub_port,
                             *key ? key : NULL);
}

void
shoal_engine_check_peers (shoal_engine_t *self)
{
    int64_t now = shoal_engine_now ();
    shoal_peer_t *peer = (shoal_peer_t *) zlistx_first (self->peers);
    while (peer) {
        shoal_peer_t *next = (shoal_peer_t *) zlistx_next (self->peers);
        shoal_peer_state_t state =
            shoal_peer_state (peer, now, self->config->suspect_ms, self->config->expiry_ms);
        if (state == SHOAL_PEER_GONE) {
            if (shoal_peer_is_static (peer)) {
                //  Static peers stay: ZeroMQ reconnects, Hello goes again.
                if (shoal_peer_greeted (peer))
                    shoal_engine_log (self, SHOAL_LOG_INFO, "static peer %s is silent",
                                      shoal_peer_router_endpoint (peer));
                shoal_peer_set_greeted (peer, false);
                shoal_peer_touch (peer, now);
            }
            else
                shoal_engine_peer_remove (self, peer, true);
        }
        //  zlistx_next continues from the cursor, which removal moved.
        peer = next;
        if (peer)
            zlistx_find (self->peers, peer);
    }
}

//  --------------------------------------------------------------------------
//  DEALER: responses from peers

//  Feeds a batch of pending's replay to its subscription; *finished when
//  the subscription awaits no more of it, *stopped_at the batch's next_seq
//  (0 for a bad batch).
static void
s_handle_batch (shoal_engine_t *self, shoal_engine_pending_t *pending,
                const shoal_wire_envelope_t *outline, bool *finished, uint64_t *stopped_at)
{
    *stopped_at = 0;
    shoal_wire_batch_t batch;
    shoal_sub_t *sub = shoal_engine_sub_by_id (self, pending->sub_id);
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
        shoal_engine_heads_note (self, pending->origin, shoal_event_stream (event),
                                 shoal_event_seq (event));
        if (sub)
            shoal_sub_on_event (sub, &event, true);
        else
            shoal_event_destroy (&event);
    }
    //  A batch with a bad event vouches for nothing: only its good events
    //  count, and the repair is asked again. The request is finished unless
    //  the subscription still awaits batches of it (a spent credit ends it
    //  too: the subscription asks again from where it stands).
    bool more = false;
    if (sub && bad)
        shoal_sub_on_repair_error (sub, pending->origin, 0);
    else if (sub) {
        more =
            shoal_sub_on_batch (sub, pending->origin, batch.next_seq, batch.done, batch.head_seq);
        *stopped_at = batch.next_seq;
    }
    *finished = !more;
}

void
shoal_engine_handle_response (shoal_engine_t *self, shoal_peer_t *peer, zframe_t *frame)
{
    shoal_peer_touch (peer, shoal_engine_now ());
    shoal_wire_envelope_t outline;
    if (shoal_wire_scan_envelope (zframe_data (frame), zframe_size (frame), &outline)) {
        self->stats.bad_requests++;
        return;
    }
    char key[24];
    snprintf (key, sizeof key, "%" PRIu64, outline.request_id);
    shoal_engine_pending_t *pending = (shoal_engine_pending_t *) zhashx_lookup (self->pending, key);
    if (outline.body == SHOAL__V1__RESPONSE__BODY_BATCH && pending) {
        bool finished = false;
        uint64_t stopped_at;
        s_handle_batch (self, pending, &outline, &finished, &stopped_at);
        shoal_sub_t *sub = finished ? shoal_engine_sub_by_id (self, pending->sub_id) : NULL;
        if (sub && shoal_peer_has_id (peer)
            && shoal_sub_resumable (sub, pending->origin, stopped_at)) {
            //  The subscription's next repair continues it. (It may be
            //  parked already: a replay the subscription counted as spent
            //  can still send batches.)
            pending->parked = true;
            pending->sent_ms = shoal_engine_now ();
        }
        else if (finished)
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
                    shoal_engine_peer_add (self, hello->known_peers[i], false);
            }
        }
        else
            self->stats.bad_requests++;
    }
    else if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR && pending) {
        shoal_sub_t *sub = shoal_engine_sub_by_id (self, pending->sub_id);
        if (sub)
            shoal_sub_on_repair_error (sub, pending->origin, response->error->code);
        zhashx_delete (self->pending, key);
    }
    shoal__v1__response__free_unpacked (response, NULL);
}
