/*  =========================================================================
    shoal_engine - the node's actor: every socket, file and timer

    Started by shoal_node_new as a czmq actor. The facade and the engine
    share four things only: the configuration (copied), shoal_heads (own
    streams' seqs), shoal_outbox (events the facade sequenced, on their way
    to the log) and shoal_inbox (deliveries). Everything else reaches the
    engine as a command on the actor pipe; the engine takes the outbox
    before it acts on any command, so a command sees every publish made
    before it was sent:

        SUBSCRIBE pointer                   a shoal_engine_sub_t (engine owns it)
        UNSUBSCRIBE id
        ACK id origin seq cumulative         an acknowledgement
        ACKFLUSH                  -> reply: "0" or "-1" once cursors are written
        CONSUMERS                 -> reply: one frame per consumer name
        CONSUMERDELETE name       -> reply: "0" or "-1"
        STATS                     -> reply: shoal_node_stats_t as bytes
        PEERS                     -> reply: shoal_peer_info_t array as bytes
        $TERM                               stop

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_ENGINE_H_INCLUDED
#define SHOAL_ENGINE_H_INCLUDED

#include "shoal_heads.h"
#include "shoal_inbox.h"
#include "shoal_node.h"
#include "shoal_outbox.h"

#include <czmq.h>

typedef struct {
    shoal_node_config_t config; //  configuration, strings owned by the facade
    shoal_heads_t *heads;       //  shared seq table
    shoal_inbox_t *inbox;       //  shared delivery queue
    shoal_outbox_t *outbox;     //  shared publish queue
    //  Filled by the engine before it signals the pipe:
    uint8_t node_id[SHOAL_ID_SIZE]; //  the node id
    char pub_endpoint[128];         //  PUB endpoint bound
    char router_endpoint[128];      //  ROUTER endpoint bound
    int start_error;                //  shoal_error_t when start failed, else 0
    char start_error_text[600];     //  why it failed
} shoal_engine_args_t;

//  A subscription request: the engine takes it and frees it.
typedef struct {
    int id;                            //  subscription id
    char consumer[65];                 //  durable consumer name, "" = not durable
    char stream[SHOAL_STREAM_MAX + 1]; //  stream
    char type[SHOAL_TYPE_MAX + 1];     //  type filter, "" = all
    shoal_from_t from;                 //  start; origins/seqs point into the arrays below
    uint8_t (*origins)[SHOAL_ID_SIZE]; //  owned copy of from.origins
    uint64_t *seqs;                    //  owned copy of from.seqs
} shoal_engine_sub_t;

void shoal_engine_actor (zsock_t *pipe, void *args);

#endif
