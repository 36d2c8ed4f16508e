/*  =========================================================================
    shoal_engine_int - what the engine's files share

    The engine (see shoal_engine.h) is one czmq actor, written in four
    files that share the engine's state, shoal_engine_t, and call each
    other through the functions declared here:

        shoal_engine.c           the actor: start and stop, the poll loop
                                 and its timers, the pipe commands and
                                 stats, the outbox of the facade
        shoal_engine_streams.c   own streams and their group commit,
                                 subscriptions, durable consumers,
                                 replication, repairs, and SUB: live events
                                 and heartbeats
        shoal_engine_peers.c     peers: discovery, Hello and Ping, expiry
                                 and damping, and the DEALER side:
                                 responses from peers (replay batches)
        shoal_engine_requests.c  the ROUTER side: requests from peers and
                                 thin clients (Hello, Status, Replay,
                                 Publish, Credit, Consumer, Ping)

    The acknowledgement tracking of durable subscriptions is a class of
    its own, shoal_durable. Everything in these files runs in the engine's
    thread; nothing here is locked.

    Private to the engine's files.
    ========================================================================= */

#ifndef SHOAL_ENGINE_INT_H_INCLUDED
#define SHOAL_ENGINE_INT_H_INCLUDED

#include "shoal_engine.h"
#include "shoal_beacon.h"
#include "shoal_dedupe.h"
#include "shoal_durable.h"
#include "shoal_error.h"
#include "shoal_peer.h"
#include "shoal_replay.h"
#include "shoal_secure.h"
#include "shoal_store.h"
#include "shoal_sub.h"
#include "shoal_wire.h"

//  A thin client's publish waiting for durability before its ack.
typedef struct {
    zframe_t *routing_id; //  ROUTER identity of the client
    uint64_t request_id;  //  its request id
    uint64_t seq;         //  seq recorded
    bool duplicate;       //  the id was seen before
} shoal_engine_ack_t;

//  One of this node's own streams.
typedef struct {
    char stream[SHOAL_STREAM_MAX + 1]; //  stream name
    shoal_log_t *log;                  //  its log (owned by the store)
    uint8_t *sendq;                    //  appended, not yet sent: see shoal_engine_own_append
    size_t sendq_used;                 //  bytes in sendq
    size_t sendq_alloc;                //  bytes allocated
    zlistx_t *acks;                    //  shoal_engine_ack_t waiting for durability
    uint64_t sent;                     //  highest seq handed to PUB and local subscriptions
    shoal_dedupe_t *dedupe;            //  event id -> seq of thin-client publishes, a window
    bool dedupe_loaded;                //  the window was filled from the log tail
} shoal_engine_own_t;

//  A replay this node asked a peer for, on behalf of a subscription; at
//  most one per subscription and origin (the next repair forgets the one
//  before unless it continues it). Parked: it spent its credit short of
//  its end and waits at the peer, served by nobody, for the Credit that
//  continues it (shoal_sub's resume); it is not in flight.
typedef struct {
    int sub_id;                    //  subscription
    uint8_t origin[SHOAL_ID_SIZE]; //  whose log
    int64_t sent_ms;               //  when it was asked, given credit, or parked
    bool parked;                   //  waits for a Credit
    uint8_t peer[SHOAL_ID_SIZE];   //  the node asked, which serves it
} shoal_engine_pending_t;

//  The engine: everything its files share.
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
    uint8_t *encode_buffer;       //  an event encoded for a log (replicas, thin clients), reused
    size_t encode_alloc;          //  bytes allocated in it
    zlistx_t *peers;              //  shoal_peer_t
    bool peers_changed;           //  poll set must be rebuilt
    zhashx_t *gone;               //  id hex -> s_gone_t (shoal_engine_peers.c)
    zhashx_t *own;                //  stream -> shoal_engine_own_t
    shoal_engine_own_t *last_own; //  the own stream looked up last (entries live until stop)
    zhashx_t *heads;              //  "originhex/stream" -> head (uint64_t, owned)
    uint64_t *last_head;          //  the entry of heads noted last (entries are never freed early)
    uint8_t last_origin[SHOAL_ID_SIZE];     //  its origin
    char last_stream[SHOAL_STREAM_MAX + 1]; //  its stream
    zlistx_t *subs;                         //  shoal_sub_t (replication subscriptions have ids < 0)
    zlistx_t *durables;                     //  shoal_durable_t
    int64_t cursors_dirty_ms;     //  when acknowledgements began waiting to be written, -1
    int next_replica_id;          //  last id given to a replication subscription (negative)
    bool replicate_all;           //  config says "all"
    uint64_t heartbeat_count;     //  heartbeat rounds so far
    int64_t next_retention_ms;    //  when retention runs next
    zhashx_t *sub_streams;        //  stream -> count of subscriptions (boxed)
    zhashx_t *logs_refused;       //  replicas refused for max_logs: stream or "originhex/stream"
    zhashx_t *pending;            //  request id (decimal) -> shoal_engine_pending_t
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
} shoal_engine_t;

//  shoal_engine.c: the actor

int64_t shoal_engine_now (void);

//  Logs one line to stderr when level is within the node's log level.
void shoal_engine_log (shoal_engine_t *self, int level, const char *format, ...);

void shoal_engine_stats_fill (shoal_engine_t *self, shoal_node_stats_t *stats);

//  Appends everything the facade published so far. Returns 1 when there was any.
int shoal_engine_outbox_read (shoal_engine_t *self);

//  shoal_engine_streams.c: own streams, subscriptions, durable consumers,
//  replication, repairs, live events and heartbeats

//  Remembers the highest seq known of (origin, stream). Events come in
//  runs from one origin and stream, so the last entry is kept at hand.
void shoal_engine_heads_note (shoal_engine_t *self, const uint8_t *origin, const char *stream,
                              uint64_t head);

shoal_sub_t *shoal_engine_sub_by_id (shoal_engine_t *self, int id);

void shoal_engine_own_destroy (shoal_engine_own_t **self_p);

//  The own stream, opened (and its log made) when create is true.
shoal_engine_own_t *shoal_engine_own (shoal_engine_t *self, const char *stream, bool create);

//  Appends an encoded own event. It goes out once durable: until then it
//  waits in the stream's send queue, records of
//      seq (8 bytes), size (4), type length (1), type, the encoded event
//  in seq order, which shoal_engine_commit sends and drops as they become durable.
int shoal_engine_own_append (shoal_engine_t *self, shoal_engine_own_t *own, uint64_t seq,
                             const uint8_t *data, size_t size, int64_t time_ns, const char *type,
                             size_t type_size);

//  Flushes every own log that has appends, then sends what became durable.
void shoal_engine_commit (shoal_engine_t *self);

void shoal_engine_ack (shoal_engine_t *self, int sub_id, const uint8_t *origin, uint64_t seq,
                       bool cumulative);

//  Writes cursors that changed (atomically, one file per consumer).
int shoal_engine_cursors_flush (shoal_engine_t *self);

//  Deletes a consumer: its cursors, and the bond of its live
//  subscriptions to it. They go on as plain subscriptions; their
//  acknowledgements must not make the consumer again. 0, or -1 when
//  there is no such consumer.
int shoal_engine_consumer_delete (shoal_engine_t *self, const char *consumer);

//  Starts replicating a stream: an internal subscription from where each
//  replica log ends (from the beginning for origins with none), whose
//  deliveries go into replica logs instead of the inbox.
void shoal_engine_replicate_stream (shoal_engine_t *self, const char *stream);

void shoal_engine_subscribe (shoal_engine_t *self, shoal_engine_sub_t *request);

void shoal_engine_unsubscribe (shoal_engine_t *self, int id);

//  Moves ready events of every subscription into the inbox.
void shoal_engine_deliver (shoal_engine_t *self);

//  Forgets the replay asked for sub_id's repairs of origin, if any (of
//  every origin when origin is NULL).
void shoal_engine_forget_pending (shoal_engine_t *self, int sub_id, const uint8_t *origin);

//  Forgets the replays asked of peer id, which is gone (its sessions with
//  them): a subscription awaiting one asks again without its timeout.
void shoal_engine_forget_peer_replays (shoal_engine_t *self, const uint8_t *id);

//  Sends the repairs the subscriptions want.
void shoal_engine_repairs (shoal_engine_t *self);

//  Reads one message from SUB without waiting; 1 when it read one.
int shoal_engine_sub_read (shoal_engine_t *self);

//  A heartbeat per own stream, and one per replica on its origin's behalf:
//  a subscriber learns of an origin that is down from its replicas.
void shoal_engine_send_heartbeats (shoal_engine_t *self);

//  shoal_engine_peers.c: peers and their responses

shoal_peer_t *shoal_engine_peer_by_id (shoal_engine_t *self, const uint8_t *id);

//  A connected peer that replicates stream (and is not origin itself).
shoal_peer_t *shoal_engine_replica_peer (shoal_engine_t *self, const char *stream,
                                         const uint8_t *origin);

void shoal_engine_peer_remove (shoal_engine_t *self, shoal_peer_t *peer, bool damp);

//  How a peer is named to others (peer exchange, Status): its ROUTER
//  endpoint, with "#KEY" in secure mode. Caller owns return value.
char *shoal_engine_peer_spec (shoal_engine_t *self, shoal_peer_t *peer);

shoal_peer_t *shoal_engine_peer_add (shoal_engine_t *self, const char *router_endpoint,
                                     bool is_static);

//  Adds a node that told of itself (a Hello, a beacon) as a peer: its
//  ROUTER at ip:router_port (with "#KEY" when key is not NULL, secure
//  mode), its id and name (NULL when not told), its PUB port. NULL when
//  it was not added (max_peers).
shoal_peer_t *shoal_engine_peer_learn (shoal_engine_t *self, const uint8_t *id, const char *name,
                                       const char *ip, uint32_t router_port, uint32_t pub_port,
                                       const char *key);

//  Connects SUB to the PUB port a peer announces; a peer that restarted
//  on the same ROUTER endpoint may announce another one, and then the old
//  connection hears nothing more (no events, no heartbeats).
void shoal_engine_peer_pub_update (shoal_engine_t *self, shoal_peer_t *peer, uint32_t pub_port);

//  A Hello about this node (id, name, mesh, ports, replicated streams);
//  the caller adds known peers when it answers one.
void shoal_engine_hello_fill (shoal_engine_t *self, Shoal__V1__Hello *hello);
void shoal_engine_send_hello (shoal_engine_t *self, shoal_peer_t *peer);

void shoal_engine_send_ping (shoal_engine_t *self, shoal_peer_t *peer);

void shoal_engine_on_beacon (shoal_engine_t *self, const char *ip, const shoal_beacon_msg_t *msg);

void shoal_engine_check_peers (shoal_engine_t *self);

void shoal_engine_handle_response (shoal_engine_t *self, shoal_peer_t *peer, zframe_t *frame);

//  shoal_engine_requests.c: requests on ROUTER

void shoal_engine_send_response (shoal_engine_t *self, zframe_t *routing_id, zframe_t **frame_p);

//  Handles one ROUTER message. Returns 1 when it must be retried later.
int shoal_engine_handle_request (shoal_engine_t *self, zmsg_t *msg);

#endif
