/*  =========================================================================
    shoal_peer - one peer of a node, as the engine sees it

    A peer is another node: its id and name once known, its ROUTER and
    PUB endpoints, a DEALER connected to its ROUTER (Hello, Ping, Replay
    requests go there), and when it was last heard from. A static peer
    (from configuration or peer exchange) starts with only an endpoint and
    learns its id from the Hello reply.

    States, from the time since last heard:
        pending    no Hello reply yet
        connected  heard within suspect_ms
        suspect    silent longer than suspect_ms
        gone       silent longer than expiry_ms: the engine drops it
                   (a static peer is kept, back to pending)

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_PEER_H_INCLUDED
#define SHOAL_PEER_H_INCLUDED

#include "shoal_event.h"

#include <czmq.h>

typedef struct _shoal_peer_t shoal_peer_t;

typedef enum {
    SHOAL_PEER_PENDING = 0,
    SHOAL_PEER_CONNECTED,
    SHOAL_PEER_SUSPECT,
    SHOAL_PEER_GONE
} shoal_peer_state_t;

//  A peer reached at router_endpoint; its DEALER connects at once.
//  is_static peers are never dropped. In secure mode (secure not NULL)
//  the DEALER is a CURVE client of secure's keypair, to the server with
//  public key `key` (Z85). NULL when the endpoint or the key is invalid.
typedef struct _shoal_secure_t shoal_secure_t;
shoal_peer_t *shoal_peer_new_secure (const char *router_endpoint, bool is_static, int sndhwm,
                                     int64_t now_ms, shoal_secure_t *secure, const char *key);
void shoal_peer_destroy (shoal_peer_t **self_p);

bool shoal_peer_has_id (const shoal_peer_t *self);
const uint8_t *shoal_peer_id (const shoal_peer_t *self);
const char *shoal_peer_name (const shoal_peer_t *self);
bool shoal_peer_is_static (const shoal_peer_t *self);
const char *shoal_peer_router_endpoint (const shoal_peer_t *self);
//  The peer's CURVE public key (Z85), "" when not in secure mode.
const char *shoal_peer_key (const shoal_peer_t *self);
//  The PUB endpoint, or NULL until known.
const char *shoal_peer_pub_endpoint (const shoal_peer_t *self);
zsock_t *shoal_peer_dealer (shoal_peer_t *self);

//  Records what a Hello (or beacon) told: id, name, PUB port.
void shoal_peer_set_identity (shoal_peer_t *self, const uint8_t id[SHOAL_ID_SIZE],
                              const char *name);
void shoal_peer_set_pub_port (shoal_peer_t *self, int port);

//  The peer was heard from now.
void shoal_peer_touch (shoal_peer_t *self, int64_t now_ms);
bool shoal_peer_greeted (const shoal_peer_t *self);
void shoal_peer_set_greeted (shoal_peer_t *self, bool greeted);

shoal_peer_state_t shoal_peer_state (const shoal_peer_t *self, int64_t now_ms, int suspect_ms,
                                     int expiry_ms);
const char *shoal_peer_state_name (shoal_peer_state_t state);

//  What the peer's Hello said it replicates ("all" or stream names).
void shoal_peer_set_replicates (shoal_peer_t *self, char **streams, size_t count);
//  True when the peer keeps replicas of stream.
bool shoal_peer_replicates (const shoal_peer_t *self, const char *stream);

//  Sends one frame on the DEALER without blocking (ownership taken).
//  0, or -1 when it could not go (the peer's queue is full).
int shoal_peer_send (shoal_peer_t *self, zframe_t **frame_p);

#endif
