/*  =========================================================================
    service - what the example services share: command line, node start,
    signals, protobuf events, the at-least-once batch loop, a DEALER client

    See service.h. The loop is the heart of every consumer: it takes up to
    a batch of events, lets the handler decide and emit, then waits for
    the durability of everything emitted (one wait per stream, for its
    last seq) before acknowledging the inputs. Acknowledging first would
    lose an output on a crash; this order can only repeat an input, which
    the handlers absorb.
    ========================================================================= */

#include "service.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MAX_STREAMS 8    //  streams one service publishes to
#define S_BATCH_MAX 256    //  events handled before a commit
#define S_DURABLE_MS 30000 //  longest wait for durability before giving up

struct _service_t {
    const char *program;                               //  for messages
    shoal_node_t *node;                                //  the embedded node
    zsock_t *router;                                   //  the --listen ROUTER, or NULL
    char endpoint_file[4200];                          //  DIR/service.endpoint, "" when none
    char streams[S_MAX_STREAMS][SHOAL_STREAM_MAX + 1]; //  streams emitted to since the last commit
    uint64_t heads[S_MAX_STREAMS];                     //  last seq emitted to each of streams
    size_t stream_count;                               //  entries in streams
    shoal_event_t **acks;                              //  deferred events to acknowledge
    int *ack_subs;                                     //  their subscriptions
    size_t ack_count;                                  //  entries in acks
    size_t ack_max;                                    //  room in acks
    zlist_t *replies; //  ROUTER replies (zmsg_t) sent at the next commit
};

static volatile sig_atomic_t s_interrupted = 0;

static void
s_on_signal (int signo)
{
    (void) signo;
    s_interrupted = 1;
}

bool
service_interrupted (void)
{
    return s_interrupted != 0;
}

static void
s_usage (const service_config_t *config, FILE *out)
{
    fprintf (out,
             "usage: %s --data DIR [--name NAME] [--mesh MESH] [--interface lo|none|IFACE]\n"
             "       [--beacon-port N] [--beacon-interval-ms MS] [--peer ENDPOINT]...\n"
             "       [--listen ENDPOINT] [--fsync always|batch|never] [--heartbeat-ms MS]\n"
             "       [--log-level error|warning|info|debug]%s%s\n",
             config->program, config->usage ? "\n" : "", config->usage ? config->usage : "");
}

static int
s_int (const char *text, int min, int max, int *value)
{
    char *end;
    errno = 0;
    long number = strtol (text, &end, 10);
    if (errno || end == text || *end || number < min || number > max)
        return -1;
    *value = (int) number;
    return 0;
}

void
service_parse (service_config_t *config, int argc, char **argv, service_option_fn *option_fn,
               void *arg)
{
    config->mesh = config->mesh ? config->mesh : "shop";
    config->interface = config->interface ? config->interface : "lo";
    config->beacon_port = config->beacon_port ? config->beacon_port : 5680;
    config->beacon_interval_ms = config->beacon_interval_ms ? config->beacon_interval_ms : 500;
    config->heartbeat_ms = config->heartbeat_ms ? config->heartbeat_ms : 500;
    config->fsync = SHOAL_FSYNC_BATCH;
    config->log_level = SHOAL_LOG_WARNING;
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (streq (option, "--help") || streq (option, "-h")) {
            s_usage (config, stdout);
            exit (0);
        }
        if (option_fn) {
            int taken = option_fn (arg, argc, argv, i);
            if (taken < 0)
                exit (2);
            if (taken > 0) {
                i += taken - 1;
                continue;
            }
        }
        bool takes_value = streq (option, "--data") || streq (option, "--name")
                           || streq (option, "--mesh") || streq (option, "--interface")
                           || streq (option, "--beacon-port") || streq (option, "--peer")
                           || streq (option, "--listen") || streq (option, "--fsync")
                           || streq (option, "--log-level") || streq (option, "--heartbeat-ms")
                           || streq (option, "--beacon-interval-ms");
        if (!takes_value) {
            fprintf (stderr, "%s: unknown option '%s'\n", config->program, option);
            s_usage (config, stderr);
            exit (2);
        }
        if (!value) {
            fprintf (stderr, "%s: %s needs a value\n", config->program, option);
            exit (2);
        }
        i++;
        bool bad = false;
        if (streq (option, "--data"))
            config->data_dir = value;
        else if (streq (option, "--name"))
            config->name = value;
        else if (streq (option, "--mesh"))
            config->mesh = value;
        else if (streq (option, "--interface"))
            config->interface = value;
        else if (streq (option, "--listen"))
            config->listen = value;
        else if (streq (option, "--beacon-port"))
            bad = s_int (value, 1, 65535, &config->beacon_port) != 0;
        else if (streq (option, "--beacon-interval-ms"))
            bad = s_int (value, 10, 60000, &config->beacon_interval_ms) != 0;
        else if (streq (option, "--heartbeat-ms"))
            bad = s_int (value, 10, 60000, &config->heartbeat_ms) != 0;
        else if (streq (option, "--fsync"))
            bad = shoal_fsync_parse (value, &config->fsync) != 0;
        else if (streq (option, "--peer")) {
            if (config->peer_count == SERVICE_MAX_PEERS) {
                fprintf (stderr, "%s: at most %d --peer\n", config->program, SERVICE_MAX_PEERS);
                exit (2);
            }
            config->peers[config->peer_count++] = value;
        }
        else if (streq (option, "--log-level")) {
            const char *levels[] = {"error", "warning", "info", "debug"};
            bad = true;
            for (int level = 0; level < 4; level++)
                if (streq (value, levels[level])) {
                    config->log_level = level;
                    bad = false;
                }
        }
        if (bad) {
            fprintf (stderr, "%s: bad value '%s' for %s\n", config->program, value, option);
            exit (2);
        }
    }
    if (!config->data_dir) {
        fprintf (stderr, "%s: --data DIR is required\n", config->program);
        s_usage (config, stderr);
        exit (2);
    }
    if (!config->name)
        config->name = config->program;
}

int
service_read_own_log (const char *data_dir, const char *stream, service_event_fn *fn, void *arg)
{
    int error = 0;
    shoal_store_t *store = shoal_store_open (data_dir, NULL, &error);
    if (!store) {
        fprintf (stderr, "cannot open %s: %s\n", data_dir, shoal_store_open_error ());
        return -1;
    }
    shoal_log_t *log = shoal_store_log (store, shoal_store_node_id (store), stream, false, &error);
    int rc = 0;
    if (log && shoal_log_head (log) >= shoal_log_first (log) && shoal_log_head (log) > 0) {
        shoal_log_iter_t *iter = shoal_log_iter_new (log, shoal_log_first (log), 0);
        const uint8_t *data;
        size_t size;
        uint64_t seq;
        int64_t time_ns;
        int more;
        while (iter && (more = shoal_log_iter_next (iter, &seq, &time_ns, &data, &size)) == 1) {
            shoal_event_t *event = shoal_event_decode (data, size, 0, NULL);
            if (event) {
                fn (arg, event);
                shoal_event_destroy (&event);
            }
        }
        if (!iter || more < 0) {
            fprintf (stderr, "cannot read the log of %s in %s: %s\n", stream, data_dir,
                     shoal_log_error_text (log));
            rc = -1;
        }
        shoal_log_iter_destroy (&iter);
    }
    shoal_store_close (&store);
    return rc;
}

void
service_catch_signals (void)
{
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    signal (SIGPIPE, SIG_IGN);
    zsys_handler_set (NULL);
}

service_t *
service_new (const service_config_t *config)
{
    service_catch_signals ();

    service_t *self = (service_t *) calloc (1, sizeof (service_t));
    if (!self)
        return NULL;
    self->program = config->program;
    self->replies = zlist_new ();
    shoal_node_config_t node_config;
    shoal_node_config_defaults (&node_config);
    node_config.name = config->name;
    node_config.mesh = config->mesh;
    node_config.data_dir = config->data_dir;
    node_config.interface = config->interface;
    node_config.beacon_port = config->beacon_port;
    node_config.beacon_interval_ms = config->beacon_interval_ms;
    node_config.peers = config->peers;
    node_config.peer_count = config->peer_count;
    node_config.fsync = config->fsync;
    node_config.log_level = config->log_level;
    node_config.heartbeat_ms = config->heartbeat_ms;
    self->node = shoal_node_new (&node_config, NULL);
    if (!self->node) {
        fprintf (stderr, "%s: cannot start the node: %s\n", config->program,
                 shoal_node_start_error ());
        free (self);
        return NULL;
    }
    if (config->listen) {
        self->router = zsock_new (ZMQ_ROUTER);
        if (!self->router || zsock_bind (self->router, "%s", config->listen) < 0) {
            fprintf (stderr, "%s: cannot bind --listen %s: %s\n", config->program, config->listen,
                     zmq_strerror (zmq_errno ()));
            service_destroy (&self);
            return NULL;
        }
    }
    char id[33];
    shoal_id_to_hex (shoal_node_id (self->node), id);
    char *listen = self->router ? zsock_last_endpoint (self->router) : NULL;
    if (listen) {
        snprintf (self->endpoint_file, sizeof self->endpoint_file, "%s/service.endpoint",
                  config->data_dir);
        char temp[4300];
        snprintf (temp, sizeof temp, "%s.tmp", self->endpoint_file);
        FILE *file = fopen (temp, "w");
        if (!file || fprintf (file, "%s\n", listen) < 0 || fclose (file) != 0
            || rename (temp, self->endpoint_file) != 0)
            fprintf (stderr, "%s: cannot write %s\n", config->program, self->endpoint_file);
    }
    printf ("%s: node %s %s router %s%s%s data %s\n", config->program, shoal_node_name (self->node),
            id, shoal_node_router_endpoint (self->node), listen ? " listen " : "",
            listen ? listen : "", config->data_dir);
    fflush (stdout);
    free (listen);
    return self;
}

void
service_destroy (service_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    service_t *self = *self_p;
    for (size_t i = 0; i < self->ack_count; i++)
        shoal_event_destroy (&self->acks[i]);
    free (self->acks);
    free (self->ack_subs);
    zmsg_t *reply;
    while (self->replies && (reply = (zmsg_t *) zlist_pop (self->replies)))
        zmsg_destroy (&reply);
    zlist_destroy (&self->replies);
    zsock_destroy (&self->router);
    if (self->node)
        shoal_node_ack_flush (self->node);
    shoal_node_destroy (&self->node);
    if (*self->endpoint_file)
        unlink (self->endpoint_file);
    free (self);
    *self_p = NULL;
}

shoal_node_t *
service_node (service_t *self)
{
    return self->node;
}

uint8_t *
service_pack (const ProtobufCMessage *message, size_t *size_p)
{
    size_t size = protobuf_c_message_get_packed_size (message);
    uint8_t *data = (uint8_t *) malloc (size ? size : 1);
    if (data)
        *size_p = protobuf_c_message_pack (message, data);
    return data;
}

ProtobufCMessage *
service_unpack (const char *program, const ProtobufCMessageDescriptor *descriptor,
                const shoal_event_t *event)
{
    ProtobufCMessage *message = protobuf_c_message_unpack (
        descriptor, NULL, shoal_event_payload_size (event), shoal_event_payload (event));
    if (!message) {
        char origin[33] = "?";
        if (shoal_event_origin (event))
            shoal_id_to_hex (shoal_event_origin (event), origin);
        fprintf (stderr, "%s: skipped %s/%s/%llu: its payload is not a %s\n", program, origin,
                 shoal_event_stream (event), (unsigned long long) shoal_event_seq (event),
                 descriptor->name);
    }
    return message;
}

void
service_event_id (const shoal_event_t *event, char id_hex[33])
{
    const uint8_t *id = shoal_event_id (event);
    if (id)
        shoal_id_to_hex (id, id_hex);
    else
        id_hex[0] = 0;
}

int
service_emit (service_t *self, const char *stream, const char *type, const char *key,
              const char *correlation_id, const char *causation_id, uint32_t schema_version,
              const ProtobufCMessage *message, char *id_hex, uint64_t *seq_p)
{
    size_t size = 0;
    uint8_t *payload = service_pack (message, &size);
    shoal_event_t *event = shoal_event_new ();
    if (!payload || !event || shoal_event_set_stream (event, stream)
        || shoal_event_set_type (event, type) || (key && shoal_event_set_key (event, key))
        || (correlation_id && shoal_event_set_correlation_id (event, correlation_id))
        || (causation_id && shoal_event_set_causation_id (event, causation_id))
        || shoal_event_set_content_type (event, "application/x-protobuf")
        || shoal_event_set_payload (event, payload, size)) {
        fprintf (stderr, "%s: cannot make a %s event\n", self->program, type);
        free (payload);
        shoal_event_destroy (&event);
        return -1;
    }
    free (payload);
    shoal_event_set_schema_version (event, schema_version);
    shoal_event_generate_id (event);
    if (id_hex)
        service_event_id (event, id_hex);
    uint64_t seq = 0;
    int rc = shoal_node_publish (self->node, event, &seq, NULL);
    shoal_event_destroy (&event);
    if (rc) {
        fprintf (stderr, "%s: cannot publish %s on %s\n", self->program, type, stream);
        return -1;
    }
    if (seq_p)
        *seq_p = seq;
    size_t index;
    for (index = 0; index < self->stream_count; index++)
        if (streq (self->streams[index], stream))
            break;
    if (index == self->stream_count) {
        if (index == S_MAX_STREAMS) {
            //  Too many streams for one commit: make this one durable now.
            return shoal_node_wait_durable (self->node, stream, seq, S_DURABLE_MS);
        }
        snprintf (self->streams[index], sizeof self->streams[index], "%s", stream);
        self->stream_count++;
    }
    self->heads[index] = seq;
    return 0;
}

void
service_defer_ack (service_t *self, int subscription, shoal_event_t **event_p)
{
    if (self->ack_count == self->ack_max) {
        size_t max = self->ack_max ? self->ack_max * 2 : 64;
        shoal_event_t **acks = (shoal_event_t **) realloc (self->acks, max * sizeof *acks);
        if (acks)
            self->acks = acks;
        int *subs = (int *) realloc (self->ack_subs, max * sizeof *subs);
        if (subs)
            self->ack_subs = subs;
        if (!acks || !subs) {
            //  Out of memory: not acknowledging only means a redelivery.
            shoal_event_destroy (event_p);
            return;
        }
        self->ack_max = max;
    }
    self->acks[self->ack_count] = *event_p;
    self->ack_subs[self->ack_count++] = subscription;
    *event_p = NULL;
}

int
service_commit (service_t *self)
{
    int rc = 0;
    for (size_t i = 0; i < self->stream_count; i++)
        if (shoal_node_wait_durable (self->node, self->streams[i], self->heads[i], S_DURABLE_MS)) {
            fprintf (stderr, "%s: events on %s are not durable\n", self->program, self->streams[i]);
            rc = -1;
        }
    self->stream_count = 0;
    for (size_t i = 0; i < self->ack_count; i++) {
        if (rc == 0)
            shoal_node_ack (self->node, self->ack_subs[i], self->acks[i], false);
        shoal_event_destroy (&self->acks[i]);
    }
    self->ack_count = 0;
    zmsg_t *reply;
    while ((reply = (zmsg_t *) zlist_pop (self->replies))) {
        if (rc == 0)
            zmsg_send (&reply, self->router);
        zmsg_destroy (&reply);
    }
    return rc;
}

//  Answers every request waiting on the ROUTER.
static void
s_serve (service_t *self, service_request_fn *request_fn, void *arg)
{
    while (zsock_events (self->router) & ZMQ_POLLIN) {
        zmsg_t *msg = zmsg_recv (self->router);
        if (!msg)
            return;
        zframe_t *identity = zmsg_pop (msg);
        zframe_t *body = zmsg_pop (msg);
        uint8_t *reply = NULL;
        size_t reply_size = 0;
        if (identity && body && request_fn
            && request_fn (arg, zframe_data (body), zframe_size (body), &reply, &reply_size) == 0) {
            zmsg_t *out = zmsg_new ();
            zmsg_append (out, &identity);
            zmsg_addmem (out, reply, reply_size);
            //  Sent once what the request caused is durable.
            zlist_append (self->replies, out);
        }
        free (reply);
        zframe_destroy (&identity);
        zframe_destroy (&body);
        zmsg_destroy (&msg);
    }
}

int
service_run (service_t *self, service_handler_fn *handler, service_request_fn *request_fn,
             service_tick_fn *tick_fn, void *arg)
{
    zmq_pollitem_t items[2];
    memset (items, 0, sizeof items);
    items[0].fd = shoal_node_fd (self->node);
    items[0].events = ZMQ_POLLIN;
    int count = 1;
    if (self->router) {
        items[1].socket = zsock_resolve (self->router);
        items[1].events = ZMQ_POLLIN;
        count = 2;
    }
    while (!s_interrupted) {
        zmq_poll (items, count, 100);
        if (s_interrupted)
            break;
        for (int batch = 0; batch < S_BATCH_MAX; batch++) {
            int subscription = 0;
            shoal_event_t *event = shoal_node_recv (self->node, 0, &subscription);
            if (!event)
                break;
            handler (arg, subscription, event);
            service_defer_ack (self, subscription, &event);
        }
        if (self->router)
            s_serve (self, request_fn, arg);
        if (tick_fn && tick_fn (arg) == 1)
            continue;
        if (service_commit (self))
            return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Client side

char *
service_client_endpoint (const char *endpoint, const char *data_dir)
{
    if (endpoint)
        return strdup (endpoint);
    if (!data_dir) {
        fprintf (stderr, "give the service's endpoint: --connect ENDPOINT or --data DIR\n");
        return NULL;
    }
    char path[4200];
    snprintf (path, sizeof path, "%s/service.endpoint", data_dir);
    FILE *file = fopen (path, "r");
    char line[512] = "";
    if (!file || !fgets (line, sizeof line, file)) {
        fprintf (stderr, "no service endpoint in %s (is the service running with --listen?)\n",
                 path);
        if (file)
            fclose (file);
        return NULL;
    }
    fclose (file);
    line[strcspn (line, "\r\n")] = 0;
    return strdup (line);
}

int
service_client_requests (const char *endpoint, uint8_t **requests, size_t *sizes, size_t count,
                         size_t window, int rate, int timeout_ms, service_reply_fn *reply_fn,
                         void *arg)
{
    zsys_handler_set (NULL);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer || zsock_connect (dealer, "%s", endpoint) < 0) {
        fprintf (stderr, "cannot connect to %s\n", endpoint);
        zsock_destroy (&dealer);
        return -1;
    }
    size_t sent = 0, received = 0;
    int64_t start = zclock_mono (), last = start;
    while (received < count) {
        while (sent < count && sent - received < window
               && (rate <= 0 || (zclock_mono () - start) * rate >= (int64_t) sent * 1000)) {
            zframe_t *frame = zframe_new (requests[sent], sizes[sent]);
            zframe_send (&frame, dealer, 0);
            sent++;
        }
        zmq_pollitem_t item = {zsock_resolve (dealer), 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, rate > 0 ? 1 : 100) > 0) {
            zframe_t *frame = zframe_recv (dealer);
            if (frame) {
                reply_fn (arg, zframe_data (frame), zframe_size (frame));
                zframe_destroy (&frame);
                received++;
                last = zclock_mono ();
            }
        }
        if (zclock_mono () - last > timeout_ms) {
            fprintf (stderr, "no reply from %s within %d ms (%zu of %zu answered)\n", endpoint,
                     timeout_ms, received, count);
            break;
        }
    }
    zsock_set_linger (dealer, 0);
    zsock_destroy (&dealer);
    return received == count ? 0 : -1;
}
