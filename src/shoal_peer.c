/*  =========================================================================
    shoal_peer - one peer of a node, as the engine sees it

    Invariants:
    1. The DEALER is connected to router_endpoint for the peer's whole
       life; ZeroMQ reconnects it by itself when the peer restarts on the
       same endpoint. A peer that comes back on new ports is a new
       shoal_peer (the engine replaces the old one).
    2. has_id is set once, from a Hello reply or a beacon, and the id
       never changes after that.
    3. Sends never block: a full DEALER queue refuses the frame, and the
       caller treats it as lost (replays time out and are asked again).
    ========================================================================= */

#include "shoal_peer.h"
#include "shoal_secure.h"

struct _shoal_peer_t {
    uint8_t id[SHOAL_ID_SIZE]; //  node id, valid when has_id
    bool has_id;               //  id is known
    char name[64];             //  node name, "" until known
    char router[128];          //  ROUTER endpoint
    char pub[128];             //  PUB endpoint, "" until known
    char host[96];             //  host part of router
    bool is_static;            //  from configuration: never dropped
    bool greeted;              //  a Hello reply has come
    zsock_t *dealer;           //  connected to router
    int64_t last_seen_ms;      //  monotonic ms of the last sign of life
    zlistx_t *replicates;      //  streams it replicates ("all" or names), from Hello
    char key[41];              //  CURVE public key (Z85) in secure mode, else ""
};

//  Splits "tcp://HOST:PORT" into host; -1 when it is not of that form.
static int
s_host (const char *endpoint, char *host, size_t size)
{
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return -1;
    const char *start = endpoint + 6;
    const char *colon = strrchr (start, ':');
    if (!colon || colon == start || !colon[1]
        || strspn (colon + 1, "0123456789") != strlen (colon + 1))
        return -1;
    snprintf (host, size, "%.*s", (int) (colon - start), start);
    return 0;
}

shoal_peer_t *
shoal_peer_new_secure (const char *router_endpoint, bool is_static, int sndhwm, int64_t now_ms,
                       shoal_secure_t *secure, const char *key)
{
    if (secure && !shoal_secure_key_valid (key))
        return NULL;
    shoal_peer_t *self = (shoal_peer_t *) zmalloc (sizeof (shoal_peer_t));
    if (strlen (router_endpoint) >= sizeof self->router
        || s_host (router_endpoint, self->host, sizeof self->host)) {
        free (self);
        return NULL;
    }
    snprintf (self->router, sizeof self->router, "%s", router_endpoint);
    self->is_static = is_static;
    self->last_seen_ms = now_ms;
    //  Requests queue until the connection is up (a Hello sent right
    //  after connecting is not lost), bounded by a small high-water mark:
    //  a peer that never answers costs little.
    self->dealer = zsock_new (ZMQ_DEALER);
    zsock_set_sndhwm (self->dealer, sndhwm < 1000 ? sndhwm : 1000);
    zsock_set_rcvhwm (self->dealer, sndhwm);
    zsock_set_linger (self->dealer, 0);
    if (secure) {
        snprintf (self->key, sizeof self->key, "%s", key);
        shoal_secure_client (secure, self->dealer, key);
    }
    if (zsock_connect (self->dealer, "%s", router_endpoint)) {
        zsock_destroy (&self->dealer);
        free (self);
        return NULL;
    }
    return self;
}

void
shoal_peer_destroy (shoal_peer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zlistx_destroy (&(*self_p)->replicates);
    zsock_destroy (&(*self_p)->dealer);
    free (*self_p);
    *self_p = NULL;
}

bool
shoal_peer_has_id (const shoal_peer_t *self)
{
    return self->has_id;
}

const uint8_t *
shoal_peer_id (const shoal_peer_t *self)
{
    return self->has_id ? self->id : NULL;
}

const char *
shoal_peer_name (const shoal_peer_t *self)
{
    return self->name;
}

bool
shoal_peer_is_static (const shoal_peer_t *self)
{
    return self->is_static;
}

const char *
shoal_peer_router_endpoint (const shoal_peer_t *self)
{
    return self->router;
}

const char *
shoal_peer_key (const shoal_peer_t *self)
{
    return self->key;
}

const char *
shoal_peer_pub_endpoint (const shoal_peer_t *self)
{
    return self->pub[0] ? self->pub : NULL;
}

zsock_t *
shoal_peer_dealer (shoal_peer_t *self)
{
    return self->dealer;
}

void
shoal_peer_set_identity (shoal_peer_t *self, const uint8_t id[SHOAL_ID_SIZE], const char *name)
{
    if (!self->has_id) {
        memcpy (self->id, id, SHOAL_ID_SIZE);
        self->has_id = true;
    }
    if (name && *name)
        snprintf (self->name, sizeof self->name, "%s", name);
}

void
shoal_peer_set_pub_port (shoal_peer_t *self, int port)
{
    snprintf (self->pub, sizeof self->pub, "tcp://%s:%d", self->host, port);
}

void
shoal_peer_touch (shoal_peer_t *self, int64_t now_ms)
{
    if (now_ms > self->last_seen_ms)
        self->last_seen_ms = now_ms;
}

bool
shoal_peer_greeted (const shoal_peer_t *self)
{
    return self->greeted;
}

void
shoal_peer_set_greeted (shoal_peer_t *self, bool greeted)
{
    self->greeted = greeted;
}

shoal_peer_state_t
shoal_peer_state (const shoal_peer_t *self, int64_t now_ms, int suspect_ms, int expiry_ms)
{
    int64_t silent = now_ms - self->last_seen_ms;
    if (silent > expiry_ms)
        return SHOAL_PEER_GONE;
    if (!self->greeted)
        return SHOAL_PEER_PENDING;
    return silent > suspect_ms ? SHOAL_PEER_SUSPECT : SHOAL_PEER_CONNECTED;
}

const char *
shoal_peer_state_name (shoal_peer_state_t state)
{
    static const char *names[] = {"pending", "connected", "suspect", "gone"};
    return state <= SHOAL_PEER_GONE ? names[state] : "unknown";
}

void
shoal_peer_set_replicates (shoal_peer_t *self, char **streams, size_t count)
{
    zlistx_destroy (&self->replicates);
    self->replicates = zlistx_new ();
    zlistx_set_destructor (self->replicates, (zlistx_destructor_fn *) zstr_free);
    for (size_t i = 0; i < count; i++)
        zlistx_add_end (self->replicates, strdup (streams[i]));
}

bool
shoal_peer_replicates (const shoal_peer_t *self, const char *stream)
{
    if (!self->replicates)
        return false;
    for (const char *name = (const char *) zlistx_first (self->replicates); name;
         name = (const char *) zlistx_next (self->replicates))
        if (streq (name, "all") || streq (name, stream))
            return true;
    return false;
}

int
shoal_peer_send (shoal_peer_t *self, zframe_t **frame_p)
{
    zframe_t *frame = *frame_p;
    *frame_p = NULL;
    int rc = zmq_send (zsock_resolve (self->dealer), zframe_data (frame), zframe_size (frame),
                       ZMQ_DONTWAIT);
    zframe_destroy (&frame);
    return rc < 0 ? -1 : 0;
}
