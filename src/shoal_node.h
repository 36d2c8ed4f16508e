/*  =========================================================================
    shoal_node - a node of the mesh: store, peers, live pub/sub and replay

    A node records the events it publishes in its own logs, sends them live
    on its PUB socket once they are durable, finds peers (beacon or static
    endpoints), subscribes to their PUB sockets, and serves replays of any
    log it holds on its ROUTER socket. A subscriber gets every matching
    event of each (origin, stream) exactly once and in seq order: gaps in
    the live stream are detected from seqs and heartbeats and repaired by
    replay from the origin's log.

    The engine is one czmq actor (shoal_engine.c) that owns every socket
    and file. This class is the thin facade the application uses; its
    calls may come from one application thread at a time, except
    shoal_node_publish and shoal_node_wait_durable, which are thread-safe.
    ========================================================================= */

#ifndef SHOAL_NODE_H_INCLUDED
#define SHOAL_NODE_H_INCLUDED

#include "shoal_event.h"
#include "shoal_log.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _shoal_node_t shoal_node_t;

typedef struct {
    const char *name;             //  node name; default the host name
    const char *mesh;             //  mesh name; default "default"
    const char *data_dir;         //  data directory; required
    const char *interface;        //  "none" (default), "lo" (loopback beacon) or a LAN interface
    int beacon_port;              //  UDP port of the beacon; default 5680
    int beacon_interval_ms;       //  beacon interval; default 1000
    const char *const *peers;     //  static peers: their ROUTER endpoints
    size_t peer_count;            //  entries in peers
    const char *pub_endpoint;     //  PUB bind endpoint; default tcp://ADDR:* (ephemeral port)
    const char *router_endpoint;  //  ROUTER bind endpoint; default tcp://ADDR:*
    shoal_fsync_t fsync;          //  fsync policy of the node's logs; default batch
    int heartbeat_ms;             //  heartbeat interval per stream; default 1000
    int suspect_ms;               //  peer silent this long is suspect; default 3 beacon intervals
    int expiry_ms;                //  peer silent this long is gone; default 10 beacon intervals
    size_t max_event_size;        //  largest encoded event accepted; default 1 MiB
    int sndhwm;                   //  ZeroMQ send high-water mark; default 100000
    int rcvhwm;                   //  ZeroMQ receive high-water mark; default 100000
    size_t dedupe_window;         //  thin-client event ids remembered per stream; default 100000
    size_t reorder_limit;         //  out-of-order events held per subscription; default 10000
    uint64_t segment_size;        //  log segment size; default 64 MiB
    const char *const *replicate; //  streams to replicate ("all" or names)
    size_t replicate_count;       //  entries in replicate
    int log_level;                //  what the node logs to stderr: SHOAL_LOG_*; default warning
    uint64_t retain_bytes;        //  retention of every log by size, 0 = keep all
    int64_t retain_age_ns;        //  retention of every log by age, 0 = keep all
    bool secure;                  //  CURVE security: encryption, allow-list (promise 8)
    const char *keys_dir;         //  secure: the allow-list, a directory of public certificates
    const char *cert_path;        //  secure: the node's certificate; default DATA/node.cert
                                  //  (secret in PATH_secret; made on first start)
    //  Limits on what strangers can make a node hold (README, "Limits").
    size_t max_peers;              //  peers known at once, static ones included; default 256
    size_t max_replay_sessions;    //  replays served at once, all clients; default 1024
    size_t max_replays_per_client; //  replays served at once to one client; default 16
    size_t replay_batch_events;    //  most events in one ReplayBatch; default 256
    size_t replay_batch_bytes;     //  most event bytes in one ReplayBatch; default 64 KiB
    size_t max_logs;               //  logs in the store before thin clients and "replicate
                                   //  all" may create no more; default 4096
    size_t max_consumers;          //  durable consumers thin clients may create; default 1024
    size_t max_consumer_cursors;   //  cursors of one consumer; default 10000
    size_t max_origins;            //  origins one subscription follows, and (origin, stream)
                                   //  heads the node remembers; default 4096
    shoal_io_t *io; //  storage's file operations; NULL = the file system (tests: a faulty disk)
} shoal_node_config_t;

//  Log levels: a node logs messages at or below its level to stderr.
#define SHOAL_LOG_ERROR 0
#define SHOAL_LOG_WARNING 1
#define SHOAL_LOG_INFO 2
#define SHOAL_LOG_DEBUG 3

//  Where a subscription starts, for each origin.
typedef enum {
    SHOAL_FROM_NOW = 0,   //  every event recorded after the subscription started
    SHOAL_FROM_BEGINNING, //  the whole history each origin still holds
    SHOAL_FROM_SEQ,       //  from seq (per origin in origins/seqs, else `seq`)
    SHOAL_FROM_TIME       //  events recorded at or after time_ns
} shoal_from_kind_t;

typedef struct {
    shoal_from_kind_t kind;                  //  see above
    uint64_t seq;                            //  SHOAL_FROM_SEQ: first seq for unlisted origins
    int64_t time_ns;                         //  SHOAL_FROM_TIME: unix ns
    const uint8_t (*origins)[SHOAL_ID_SIZE]; //  SHOAL_FROM_SEQ: origins with their own start
    const uint64_t *seqs;                    //  SHOAL_FROM_SEQ: first seq for each of origins
    size_t count;                            //  entries in origins and seqs
} shoal_from_t;

//  Counters, as reported in Status.counters too.
typedef struct {
    uint64_t published;          //  events recorded by this node as origin
    uint64_t delivered;          //  events handed to local subscriptions
    uint64_t gaps_detected;      //  missing ranges found from seqs or heartbeats
    uint64_t events_repaired;    //  events delivered that came by replay, not live
    uint64_t duplicates_dropped; //  events received again and dropped
    uint64_t bad_requests;       //  malformed or invalid requests and frames
    uint64_t replays_served;     //  replay requests answered
    uint64_t events_served;      //  events sent in replay batches
    uint64_t peers;              //  peers connected now
    uint64_t auth_refused;       //  secure: handshakes and beacons refused for unknown keys
    uint64_t peers_refused;      //  peers not added: max_peers reached
    uint64_t replays_refused;    //  replay requests answered Error 7 (session limits)
    uint64_t replays_evicted;    //  replays parked for credit, dropped to make room
    uint64_t events_deferred;    //  events dropped for lack of reorder room (repaired later)
    uint64_t logs_refused;       //  new logs refused: max_logs reached
    uint64_t repairs_in_flight;  //  replays this node asked for and still awaits (now)
    uint64_t origins_refused;    //  events and heads of origins past max_origins, dropped
    uint64_t replay_sessions;    //  replays this node serves (now), parked ones included
    uint64_t repairs_resumed;    //  replays this node asked for, continued with a Credit
    uint64_t repairs_parked;     //  replays this node asked for that await its Credit (now;
                                 //  one parked over 10 s is asked anew, not continued)
} shoal_node_stats_t;

typedef struct {
    uint8_t id[SHOAL_ID_SIZE]; //  peer node id
    char name[64];             //  its name
    char endpoint[128];        //  its ROUTER endpoint
    char state[16];            //  "connected", "suspect" or "pending"
} shoal_peer_info_t;

//  Fills config with the defaults.
void shoal_node_config_defaults (shoal_node_config_t *config);

//  Starts a node: opens the store, binds sockets, starts discovery.
//  Returns NULL with *error_p (a shoal_error_t) and the reason in words
//  in shoal_node_start_error ().
shoal_node_t *shoal_node_new (const shoal_node_config_t *config, int *error_p);

//  Stops the node: flushes logs, sends a leaving beacon, closes
//  everything. Idempotent; nulls the pointer. Threads inside
//  shoal_node_publish or shoal_node_wait_durable when it begins (waiting
//  for room, or for durability) see those calls fail, and it returns
//  once they have returned; a call begun after that is an error.
void shoal_node_destroy (shoal_node_t **self_p);

//  Why the last shoal_node_new of this thread failed.
const char *shoal_node_start_error (void);

const uint8_t *shoal_node_id (const shoal_node_t *self);
const char *shoal_node_name (const shoal_node_t *self);
//  The endpoints actually bound (ports resolved), e.g. tcp://127.0.0.1:40123.
const char *shoal_node_pub_endpoint (const shoal_node_t *self);
const char *shoal_node_router_endpoint (const shoal_node_t *self);

//  Publishes an event (borrowed: the node copies what it needs). stream
//  and type must be set; the node sets origin, seq and time, and an id
//  when it has none. Returns 0 and the seq at once, before the event is
//  durable; the event goes on the wire only once durable. -1 and
//  *error_p on a bad event (BAD_STREAM, BAD_TYPE, TOO_LARGE), a failed
//  log (FAILED), or a node being destroyed (CLOSED).
int shoal_node_publish (shoal_node_t *self, shoal_event_t *event, uint64_t *seq_p, int *error_p);

//  Waits until seq of this node's stream is durable. 0 when it is, -1 on
//  timeout or when the log failed. timeout_ms < 0 waits for ever.
int shoal_node_wait_durable (shoal_node_t *self, const char *stream, uint64_t seq, int timeout_ms);

//  Subscribes to a stream (type NULL = all types) from a start position.
//  Returns the subscription id (> 0) or -1 on a bad argument.
int shoal_node_subscribe (shoal_node_t *self, const char *stream, const char *type,
                          const shoal_from_t *from);

//  Ends a subscription; events already queued for it are still received.
int shoal_node_unsubscribe (shoal_node_t *self, int subscription);

//  Subscribes as the durable consumer `consumer` ([A-Za-z0-9_][A-Za-z0-9._-]{0,63}):
//  for each origin the subscription starts after the consumer's cursor,
//  kept in this node's store (origins it has no cursor for: from the
//  beginning). Acknowledge what you have processed with shoal_node_ack;
//  after a crash the consumer gets again exactly the events it had not
//  acknowledged (durably, see shoal_node_ack_flush). Returns the
//  subscription id or -1.
int shoal_node_subscribe_durable (shoal_node_t *self, const char *consumer, const char *stream,
                                  const char *type);

//  Acknowledges one event of a durable subscription. Cumulative when
//  `cumulative` is true (every event of that origin up to it). The cursor
//  moves over acknowledged events in delivery order; cursor writes are
//  batched (within 50 ms) and atomic. 0, or -1 (not a durable subscription).
int shoal_node_ack (shoal_node_t *self, int subscription, const shoal_event_t *event,
                    bool cumulative);

//  Waits until every acknowledgement made so far is on stable storage.
//  0, or -1 when the cursors could not be written.
int shoal_node_ack_flush (shoal_node_t *self);

//  The durable consumers this node keeps cursors for: a NULL-terminated
//  array of names (caller owns it; free with shoal_node_consumers_free).
char **shoal_node_consumers (shoal_node_t *self);
void shoal_node_consumers_free (char ***names_p);

//  Deletes a durable consumer and its cursors. 0, or -1 when it does not
//  exist. Its subscriptions, if any, go on without cursors.
int shoal_node_consumer_delete (shoal_node_t *self, const char *consumer);

//  Next event of any subscription, waiting up to timeout_ms (-1 = for
//  ever, 0 = poll). Caller owns the event. *subscription_p (may be NULL)
//  gets its subscription id. NULL on timeout or interrupt.
shoal_event_t *shoal_node_recv (shoal_node_t *self, int timeout_ms, int *subscription_p);

//  A file descriptor that is readable (level-triggered) while
//  shoal_node_recv has an event, for the application's poll loop.
int shoal_node_fd (shoal_node_t *self);

//  Counters now. 0 or -1.
int shoal_node_stats (shoal_node_t *self, shoal_node_stats_t *stats);

//  Peers known now; fills up to max entries and returns how many there are.
size_t shoal_node_peers (shoal_node_t *self, shoal_peer_info_t *peers, size_t max);

#ifdef __cplusplus
}
#endif

#endif
