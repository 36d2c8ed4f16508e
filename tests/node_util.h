/*  =========================================================================
    node_util.h - in-process nodes and thin clients for the TAP tests

    A test node lives in this process, on loopback endpoints with ephemeral
    ports, with its data directory under tap_tmpdir (); a thin client is a
    DEALER on a node's ROUTER that sends one Request frame and reads one
    Response frame.
    ========================================================================= */

#ifndef NODE_UTIL_H_INCLUDED
#define NODE_UTIL_H_INCLUDED

#include "shoal.h"
#include "shoal.pb-c.h"

#include <czmq.h>

//  Fills config for a test node called name in mesh: the defaults, no
//  beacon, loopback PUB and ROUTER on ephemeral ports, heartbeats and
//  beacon intervals of 200 ms; data_dir NULL stands for tap_path (name).
void node_util_config (shoal_node_config_t *config, const char *mesh, const char *name);

//  Starts a node with config, or bails out of the test.
shoal_node_t *node_util_new (const shoal_node_config_t *config);

//  The node's counters now (bails when it gives none).
shoal_node_stats_t node_util_stats (shoal_node_t *node);

//  A thin client on node's ROUTER whose receives give up after timeout_ms.
zsock_t *node_util_client (shoal_node_t *node, int timeout_ms);

//  Makes request (with publish, both the caller's) a thin client's publish
//  of event: a PublishRequest in a Request.
void node_util_publish_request (Shoal__V1__Request *request, Shoal__V1__PublishRequest *publish,
                                Shoal__V1__Event *event, uint64_t request_id);

//  Sends request as one frame.
void node_util_send (zsock_t *client, const Shoal__V1__Request *request);

//  The next response, or NULL after the client's timeout or when it does
//  not decode. The caller frees it (shoal__v1__response__free_unpacked).
Shoal__V1__Response *node_util_recv (zsock_t *client);

//  The node's logs by its Status, as a thin client sees them: how many it
//  holds, and *head_p the head of stream's log from origin (any origin
//  when NULL), 0 when it holds none.
size_t node_util_log_head (zsock_t *client, const uint8_t *origin, const char *stream,
                           uint64_t *head_p);

//  Asks Status until that head reaches want or timeout_ms pass; the head seen.
uint64_t node_util_wait_log_head (zsock_t *client, const uint8_t *origin, const char *stream,
                                  uint64_t want, int timeout_ms);

#endif
