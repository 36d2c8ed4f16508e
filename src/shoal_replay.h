/*  =========================================================================
    shoal_replay - the server side of Replay on a node's ROUTER socket

    A client (a peer's DEALER, or any thin client) sends a Request with a
    ReplayRequest; the node answers with ReplayBatch responses, each
    echoing the request_id, until one has done = true. Flow control is by
    credit: the request grants `credit` events; the server sends at most
    that many, then pauses until a Credit { replay_id = request_id,
    credit } adds more. Events skipped by the type filter cost no credit.

    Batches carry the stored event bytes as they are (the log keeps
    encoded Events; a ReplayBatch embeds them without decoding). Only
    durable records are sent (shoal_log_durable): promise 1 holds on
    replay as on live PUB. to_seq 0 means the head at request time; when
    from_seq is 0, from_time_ns picks the first event at or after a time.

    Errors answer the request with an Error response (DESIGN.md codes):
    1 bad request (invalid stream name, origin not 16 bytes, to < from),
    2 unknown stream or origin (no such log here), 3 range not available
    (from_seq below the first seq after retention, or above the head),
    6 storage failure (a corrupt or unreadable record met mid-replay),
    7 busy (too many sessions in all, or from this client, and none of
    them parked: a session waiting only for credit is dropped to make
    room instead, oldest first).

    The class has no socket of its own: the engine hands it requests and
    lets it pump batches onto the ROUTER socket, a bounded amount at a
    time, so a big replay never stalls the node.
    ========================================================================= */

#ifndef SHOAL_REPLAY_H_INCLUDED
#define SHOAL_REPLAY_H_INCLUDED

#include "shoal_log.h"

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _shoal_replay_t shoal_replay_t;

typedef struct {
    size_t batch_events;            //  most events per batch, default 256
    size_t batch_bytes;             //  most event bytes per batch, default 64 KiB
    size_t max_sessions;            //  sessions at once before Error 7, default 1024
    size_t max_sessions_per_client; //  sessions of one routing id before Error 7, default 16
    int idle_timeout_ms; //  a session with no credit and no news this long is dropped, default
                         //  30000
} shoal_replay_config_t;

void shoal_replay_config_defaults (shoal_replay_config_t *config);

//  Finds the log of (origin, stream) that the node holds, or NULL. The
//  engine passes one over its shoal_store; tests pass their own logs.
typedef shoal_log_t *(shoal_replay_lookup_fn) (void *arg, const uint8_t origin[SHOAL_ID_SIZE],
                                               const char *stream);

//  A replay server reading the logs that lookup finds. Logs must stay
//  open while sessions on them exist: before closing one, call
//  shoal_replay_forget_log.
shoal_replay_t *shoal_replay_new (shoal_replay_lookup_fn *lookup, void *arg,
                                  const shoal_replay_config_t *config);
void shoal_replay_destroy (shoal_replay_t **self_p);

//  Handles one replay request from the client with ROUTER routing id
//  `routing_id` (copied). `request` is the protobuf-c
//  Shoal__V1__ReplayRequest (const void * so this header needs no
//  generated code). Returns 0 when a session started (batches follow from
//  shoal_replay_pump), or sends the Error response itself on router and
//  returns the wire error code (> 0).
int shoal_replay_start (shoal_replay_t *self, zsock_t *router, zframe_t *routing_id,
                        uint64_t request_id, const void *request);

//  Adds credit to the session (routing_id, replay_id). 0, or -1 when no
//  such session exists (finished or never started: ignored by the caller).
int shoal_replay_credit (shoal_replay_t *self, zframe_t *routing_id, uint64_t replay_id,
                         uint32_t credit);

//  Sends batches for sessions that have credit and durable events, at
//  most `budget` events in all in this call. Returns 1 when some session
//  could send more right now (call again soon), 0 when all wait for
//  credit or durability (or there are none).
int shoal_replay_pump (shoal_replay_t *self, zsock_t *router, size_t budget);

//  Ends every session reading log (it is about to close).
void shoal_replay_forget_log (shoal_replay_t *self, shoal_log_t *log);

//  Drops sessions idle past the timeout, and all sessions of a client
//  that is gone (routing_id NULL = only the timeout check).
void shoal_replay_expire (shoal_replay_t *self, zframe_t *routing_id);

//  Sessions open now, and counters for the node's stats.
size_t shoal_replay_sessions (const shoal_replay_t *self);
uint64_t shoal_replay_requests_served (const shoal_replay_t *self);
uint64_t shoal_replay_events_sent (const shoal_replay_t *self);
uint64_t shoal_replay_sessions_evicted (const shoal_replay_t *self);

#ifdef __cplusplus
}
#endif

#endif
