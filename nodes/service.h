/*  =========================================================================
    service - what the example services (nodes/orders.c, payments.c,
    inventory.c, order_view.c, sensor.c, detector.c, alerts.c) share

    Each example service is one process embedding a shoal node: it finds
    its peers with the loopback beacon (or static peers), consumes streams
    as durable consumers, and publishes protobuf payloads of
    proto/shop.proto or proto/iot.proto. This file holds the boilerplate
    they would otherwise repeat:

    - the common command line (--data --name --mesh --interface
      --beacon-port --peer --listen --fsync --log-level) with a hook for a
      service's own options;
    - starting the node and an optional ROUTER of the service itself
      (--listen) for commands and queries, and stopping on SIGINT/SIGTERM;
    - publishing a protobuf message as an event with key, correlation and
      causation ids and a schema version;
    - the batch loop of an at-least-once consumer: handle what arrived,
      wait until everything the handlers published is durable, then
      acknowledge the events that caused it. A crash therefore either
      loses an output together with its acknowledgement (the input comes
      again) or keeps both; handlers make a redelivered input harmless by
      remembering what they did, rebuilt from their own log at start
      (service_read_own_log);
    - a DEALER client for the CLI side of a service.

    Start line on stdout, for scripts and tests:
        NAME: node NODE ID router ENDPOINT [listen ENDPOINT] data DIR
    With --listen, the endpoint is also written to DIR/service.endpoint.
    ========================================================================= */

#ifndef SERVICE_H_INCLUDED
#define SERVICE_H_INCLUDED

#include "shoal.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERVICE_MAX_PEERS 16

typedef struct _service_t service_t;

//  A service's own option: return how many arguments it took from
//  argv[index] on (1 or 2), 0 when it is not one of its own, -1 when it
//  is but the value is bad (the hook prints why).
typedef int (service_option_fn) (void *arg, int argc, char **argv, int index);

typedef struct {
    const char *program;                  //  service name, prefix of messages
    const char *usage;                    //  the service's own options, for --help
    const char *data_dir;                 //  --data DIR (required)
    const char *name;                     //  --name, default the program name
    const char *mesh;                     //  --mesh, default "shop"
    const char *interface;                //  --interface, default "lo"
    int beacon_port;                      //  --beacon-port, default 5680
    int beacon_interval_ms;               //  --beacon-interval-ms, default 500
    const char *peers[SERVICE_MAX_PEERS]; //  --peer ENDPOINT...
    size_t peer_count;                    //  entries in peers
    const char *listen;                   //  --listen ENDPOINT of the service's ROUTER, or NULL
    shoal_fsync_t fsync;                  //  --fsync, default batch
    int log_level;                        //  --log-level, default warning
    int heartbeat_ms;                     //  --heartbeat-ms, default 500
} service_config_t;

//  Parses the command line into config; options not common to every
//  service go to option_fn. Returns 0, or exits with status 2 (usage) or
//  0 (--help).
void service_parse (service_config_t *config, int argc, char **argv, service_option_fn *option_fn,
                    void *arg);

//  Reads the events of this data directory's own log of stream (the
//  node's own origin) before the node starts, calling fn for each in seq
//  order. 0, or -1 when the store cannot be opened (the reason on stderr).
typedef void (service_event_fn) (void *arg, const shoal_event_t *event);
int service_read_own_log (const char *data_dir, const char *stream, service_event_fn *fn,
                          void *arg);

//  A request from the service's ROUTER: fills *reply (a ShopReply or any
//  message the service chooses; caller frees it with free ()) and returns
//  0, or -1 to send nothing.
typedef int (service_request_fn) (void *arg, const uint8_t *data, size_t size, uint8_t **reply_p,
                                  size_t *reply_size_p);

//  Starts the node (and the --listen ROUTER) and prints the start line.
//  NULL on failure (the reason on stderr).
service_t *service_new (const service_config_t *config);

//  Stops the node; idempotent, nulls the pointer.
void service_destroy (service_t **self_p);

shoal_node_t *service_node (service_t *self);

//  True once SIGINT or SIGTERM has arrived.
bool service_interrupted (void);

//  From now on SIGINT and SIGTERM set service_interrupted () instead of
//  ending the process (service_new does this too).
void service_catch_signals (void);

//  Publishes message as an event of stream and type with key,
//  correlation and causation ids (may be NULL) and schema_version. The
//  new event's id in hex goes to id_hex (33 bytes, may be NULL), its seq
//  to *seq_p (may be NULL). The event becomes durable at the next
//  service_commit. 0, or -1.
int service_emit (service_t *self, const char *stream, const char *type, const char *key,
                  const char *correlation_id, const char *causation_id, uint32_t schema_version,
                  const ProtobufCMessage *message, char *id_hex, uint64_t *seq_p);

//  Keeps event (the service takes it) to be acknowledged on subscription
//  at the next service_commit.
void service_defer_ack (service_t *self, int subscription, shoal_event_t **event_p);

//  Waits until every event emitted so far is durable, then acknowledges
//  the deferred events. 0, or -1 (nothing acknowledged).
int service_commit (service_t *self);

//  Handles one event: the handler emits what it must; the loop commits.
typedef void (service_handler_fn) (void *arg, int subscription, const shoal_event_t *event);

//  The main loop: until interrupted, receives events in batches (up to
//  batch_max), calls handler for each and defers its ack, answers ROUTER
//  requests with request_fn (may be NULL; replies go out after the
//  commit), calls tick_fn (may be NULL) every loop turn before the
//  commit, and commits unless tick_fn returned 1 (hold the
//  acknowledgements for a later turn). Returns 0 when interrupted, -1
//  when a commit failed.
typedef int (service_tick_fn) (void *arg);
int service_run (service_t *self, service_handler_fn *handler, service_request_fn *request_fn,
                 service_tick_fn *tick_fn, void *arg);

//  The event id of event in hex (33 bytes), "" when it has none.
void service_event_id (const shoal_event_t *event, char id_hex[33]);

//  Packs a protobuf message into a new buffer (caller frees). NULL when
//  out of memory.
uint8_t *service_pack (const ProtobufCMessage *message, size_t *size_p);

//  Unpacks the event's payload as a message of descriptor; NULL (and a
//  warning on stderr naming the event) when it is not one. Free with
//  protobuf_c_message_free_unpacked (message, NULL).
ProtobufCMessage *service_unpack (const char *program, const ProtobufCMessageDescriptor *descriptor,
                                  const shoal_event_t *event);

//  --------------------------------------------------------------------------
//  Client side: one request, one reply over a DEALER.

//  The endpoint a service listens on: endpoint itself, or read from
//  DIR/service.endpoint. Caller frees. NULL (reason on stderr) if none.
char *service_client_endpoint (const char *endpoint, const char *data_dir);

//  Sends each of count requests (a window of at most `window` in flight,
//  at most `rate` per second when rate > 0) and calls reply_fn with every reply frame, in the order
//  they come. 0 when every request got a reply within timeout_ms of the last progress, -1 otherwise
//  (reason on stderr).
typedef void (service_reply_fn) (void *arg, const uint8_t *data, size_t size);
int service_client_requests (const char *endpoint, uint8_t **requests, size_t *sizes, size_t count,
                             size_t window, int rate, int timeout_ms, service_reply_fn *reply_fn,
                             void *arg);

#endif
