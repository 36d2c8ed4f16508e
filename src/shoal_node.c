/*  =========================================================================
    shoal_node - a node of the mesh: the facade over the engine actor

    The facade holds what application threads touch directly: the
    configuration (copied, so the caller's strings may go away), the heads
    table that sequences publishes, and the inbox of deliveries. Anything
    else is a command to the engine over the actor pipe (shoal_engine.h).

    Publishing is the hot path and makes no round trip: under the heads
    lock the thread takes the stream's next seq and encodes the event with
    it straight into the outbox before releasing the lock, so the engine
    sees each stream's events in seq order whatever the number of
    publishing threads. The outbox push is the only step that can wait
    (its byte limit is the back-pressure on producers faster than the disk).
    ========================================================================= */

#include "shoal_node.h"
#include "shoal_engine.h"
#include "shoal_error.h"
#include "shoal_store.h"
#include "shoal_sub.h"
#include "shoal_wire.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

struct _shoal_node_t {
    shoal_engine_args_t *args; //  shared with the engine
    zactor_t *actor;           //  the engine
    pthread_mutex_t pipe_lock; //  one thread at a time on the pipe (publish is thread-safe)
    int next_sub_id;           //  last subscription id handed out
    bool *durable;             //  durable[id]: subscription id is a durable consumer's
    size_t durable_alloc;      //  entries allocated in durable
    char *strings[8];          //  owned copies of the config strings
    char **peers;              //  owned copy of config.peers
    char **replicate;          //  owned copy of config.replicate
    atomic_int inside;         //  publish and wait_durable calls under way
};

static __thread char s_start_error[600];

void
shoal_node_config_defaults (shoal_node_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->mesh = "default";
    config->interface = "none";
    config->beacon_port = 5680;
    config->beacon_interval_ms = 1000;
    config->fsync = SHOAL_FSYNC_BATCH;
    config->heartbeat_ms = 1000;
    config->max_event_size = SHOAL_EVENT_MAX_SIZE_DEFAULT;
    config->sndhwm = 100000;
    config->rcvhwm = 100000;
    config->dedupe_window = 100000;
    config->reorder_limit = 10000;
    config->log_level = SHOAL_LOG_WARNING;
    config->max_peers = 256;
    config->max_replay_sessions = 1024;
    config->max_replays_per_client = 16;
    config->replay_batch_events = 256;
    config->replay_batch_bytes = 64 * 1024;
    config->max_logs = 4096;
    config->max_consumers = 1024;
    config->max_consumer_cursors = 10000;
    config->max_origins = SHOAL_SUB_MAX_ORIGINS_DEFAULT;
}

static char **
s_copy_list (const char *const *list, size_t count)
{
    char **copy = (char **) zmalloc ((count + 1) * sizeof (char *));
    for (size_t i = 0; i < count; i++)
        copy[i] = strdup (list[i]);
    return copy;
}

static void
s_free_list (char **list)
{
    for (size_t i = 0; list && list[i]; i++)
        free (list[i]);
    free (list);
}

static void
s_free (shoal_node_t *self)
{
    if (self->args) {
        shoal_heads_destroy (&self->args->heads);
        shoal_inbox_destroy (&self->args->inbox);
        shoal_outbox_destroy (&self->args->outbox);
        free (self->args);
    }
    for (size_t i = 0; i < sizeof self->strings / sizeof self->strings[0]; i++)
        free (self->strings[i]);
    s_free_list (self->peers);
    s_free_list (self->replicate);
    free (self->durable);
    pthread_mutex_destroy (&self->pipe_lock);
    free (self);
}

shoal_node_t *
shoal_node_new (const shoal_node_config_t *config, int *error_p)
{
    s_start_error[0] = 0;
    int error = SHOAL_OK;
    if (!config || !config->data_dir || !*config->data_dir) {
        snprintf (s_start_error, sizeof s_start_error, "no data directory given");
        if (error_p)
            *error_p = SHOAL_ERR_INVALID;
        return NULL;
    }
    shoal_node_t *self = (shoal_node_t *) zmalloc (sizeof (shoal_node_t));
    pthread_mutex_init (&self->pipe_lock, NULL);
    self->args = (shoal_engine_args_t *) zmalloc (sizeof (shoal_engine_args_t));
    shoal_node_config_t *copy = &self->args->config;
    *copy = *config;

    //  Defaults for what the caller left at zero.
    shoal_node_config_t defaults;
    shoal_node_config_defaults (&defaults);
    char host[256] = "shoal";
    gethostname (host, sizeof host - 1);
    const char *name = config->name && *config->name ? config->name : host;
    const char *strings[] = {
        name,
        config->mesh && *config->mesh ? config->mesh : defaults.mesh,
        config->data_dir,
        config->interface && *config->interface ? config->interface : defaults.interface,
        config->pub_endpoint,
        config->router_endpoint,
        config->keys_dir,
        config->cert_path};
    _Static_assert(sizeof strings / sizeof strings[0]
                       == sizeof self->strings / sizeof self->strings[0],
                   "every config string has its owned copy");
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        self->strings[i] = strings[i] ? strdup (strings[i]) : NULL;
    copy->name = self->strings[0];
    copy->mesh = self->strings[1];
    copy->data_dir = self->strings[2];
    copy->interface = self->strings[3];
    copy->pub_endpoint = self->strings[4];
    copy->router_endpoint = self->strings[5];
    copy->keys_dir = self->strings[6];
    copy->cert_path = self->strings[7];
    self->peers = s_copy_list (config->peers, config->peer_count);
    copy->peers = (const char *const *) self->peers;
    self->replicate = s_copy_list (config->replicate, config->replicate_count);
    copy->replicate = (const char *const *) self->replicate;
    if (copy->beacon_port <= 0)
        copy->beacon_port = defaults.beacon_port;
    if (copy->beacon_interval_ms <= 0)
        copy->beacon_interval_ms = defaults.beacon_interval_ms;
    if (copy->heartbeat_ms <= 0)
        copy->heartbeat_ms = defaults.heartbeat_ms;
    if (copy->suspect_ms <= 0)
        copy->suspect_ms = 3 * copy->beacon_interval_ms;
    if (copy->expiry_ms <= 0)
        copy->expiry_ms = 10 * copy->beacon_interval_ms;
    if (copy->max_event_size == 0)
        copy->max_event_size = defaults.max_event_size;
    if (copy->sndhwm <= 0)
        copy->sndhwm = defaults.sndhwm;
    if (copy->rcvhwm <= 0)
        copy->rcvhwm = defaults.rcvhwm;
    if (copy->dedupe_window == 0)
        copy->dedupe_window = defaults.dedupe_window;
    if (copy->reorder_limit == 0)
        copy->reorder_limit = defaults.reorder_limit;
    if (copy->max_peers == 0)
        copy->max_peers = defaults.max_peers;
    if (copy->max_replay_sessions == 0)
        copy->max_replay_sessions = defaults.max_replay_sessions;
    if (copy->max_replays_per_client == 0)
        copy->max_replays_per_client = defaults.max_replays_per_client;
    if (copy->replay_batch_events == 0)
        copy->replay_batch_events = defaults.replay_batch_events;
    if (copy->replay_batch_bytes == 0)
        copy->replay_batch_bytes = defaults.replay_batch_bytes;
    if (copy->max_logs == 0)
        copy->max_logs = defaults.max_logs;
    if (copy->max_consumers == 0)
        copy->max_consumers = defaults.max_consumers;
    if (copy->max_consumer_cursors == 0)
        copy->max_consumer_cursors = defaults.max_consumer_cursors;
    if (copy->max_origins == 0)
        copy->max_origins = defaults.max_origins;
    if (strlen (copy->name) > 63 || strlen (copy->mesh) > 63) {
        snprintf (s_start_error, sizeof s_start_error, "node and mesh names are 63 bytes at most");
        error = SHOAL_ERR_INVALID;
    }
    self->args->heads = shoal_heads_new ();
    self->args->inbox = shoal_inbox_new (copy->reorder_limit);
    //  Room for a few group commits' worth of events, and any one event.
    self->args->outbox = shoal_outbox_new (4 * 1024 * 1024 + copy->max_event_size);
    if (!error && (!self->args->inbox || !self->args->outbox)) {
        snprintf (s_start_error, sizeof s_start_error, "cannot make the delivery queue");
        error = SHOAL_ERR_IO;
    }
    if (!error) {
        self->actor = zactor_new (shoal_engine_actor, self->args);
        if (!self->actor || self->args->start_error) {
            error = self->args->start_error ? self->args->start_error : SHOAL_ERR_IO;
            snprintf (s_start_error, sizeof s_start_error, "%s",
                      self->args->start_error_text[0] ? self->args->start_error_text
                                                      : "cannot start the node engine");
            zactor_destroy (&self->actor);
        }
    }
    if (error) {
        s_free (self);
        if (error_p)
            *error_p = error;
        return NULL;
    }
    if (error_p)
        *error_p = SHOAL_OK;
    return self;
}

void
shoal_node_destroy (shoal_node_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_node_t *self = *self_p;
    //  A publisher waiting for room in the outbox returns (failed), and the
    //  engine closes the heads as it ends, so a wait_durable returns too:
    //  the memory those calls use is freed once the last has left.
    shoal_inbox_close (self->args->inbox);
    shoal_outbox_close (self->args->outbox);
    zactor_destroy (&self->actor);
    while (atomic_load (&self->inside) > 0)
        zclock_sleep (1);
    s_free (self);
    *self_p = NULL;
}

const char *
shoal_node_start_error (void)
{
    return s_start_error;
}

const uint8_t *
shoal_node_id (const shoal_node_t *self)
{
    return self->args->node_id;
}

const char *
shoal_node_name (const shoal_node_t *self)
{
    return self->args->config.name;
}

const char *
shoal_node_pub_endpoint (const shoal_node_t *self)
{
    return self->args->pub_endpoint;
}

const char *
shoal_node_router_endpoint (const shoal_node_t *self)
{
    return self->args->router_endpoint;
}

static int s_publish (shoal_node_t *self, shoal_event_t *event, uint64_t *seq_p, int *error_p);

int
shoal_node_publish (shoal_node_t *self, shoal_event_t *event, uint64_t *seq_p, int *error_p)
{
    atomic_fetch_add (&self->inside, 1);
    int rc = s_publish (self, event, seq_p, error_p);
    atomic_fetch_sub (&self->inside, 1);
    return rc;
}

static int
s_publish (shoal_node_t *self, shoal_event_t *event, uint64_t *seq_p, int *error_p)
{
    const char *stream = shoal_event_stream (event);
    int error = !shoal_stream_name_valid (stream)                   ? SHOAL_ERR_BAD_STREAM
                : !shoal_type_name_valid (shoal_event_type (event)) ? SHOAL_ERR_BAD_TYPE
                                                                    : SHOAL_OK;
    size_t worst = 0;
    if (!error) {
        //  The size check uses the largest seq encoding (10 bytes), so no
        //  seq is taken for an event the engine would have to refuse.
        worst = shoal_event_stamp (event, self->args->node_id);
        if (worst > self->args->config.max_event_size)
            error = SHOAL_ERR_TOO_LARGE;
    }
    uint64_t seq = 0;
    if (!error) {
        shoal_heads_lock (self->args->heads);
        seq = shoal_heads_take (self->args->heads, stream);
        if (seq == 0)
            error = SHOAL_ERR_FAILED;
        else {
            shoal_event_set_seq (event, seq);
            //  The size with the real seq's varint in place of the largest.
            size_t size = worst - 10 + shoal_wire_varint_size (seq);
            error = shoal_outbox_push (self->args->outbox, event, size);
            if (error)
                shoal_heads_untake (self->args->heads, stream, seq);
        }
        shoal_heads_unlock (self->args->heads);
    }
    if (error)
        shoal_event_set_seq (event, 0);
    if (error_p)
        *error_p = error;
    if (seq_p)
        *seq_p = error ? 0 : seq;
    return error ? -1 : 0;
}

int
shoal_node_wait_durable (shoal_node_t *self, const char *stream, uint64_t seq, int timeout_ms)
{
    atomic_fetch_add (&self->inside, 1);
    int rc = shoal_heads_wait (self->args->heads, stream, seq, timeout_ms);
    atomic_fetch_sub (&self->inside, 1);
    return rc;
}

int
shoal_node_subscribe (shoal_node_t *self, const char *stream, const char *type,
                      const shoal_from_t *from)
{
    if (!shoal_stream_name_valid (stream) || (type && *type && !shoal_type_name_valid (type)))
        return -1;
    if (from && from->kind == SHOAL_FROM_SEQ && from->count && (!from->origins || !from->seqs))
        return -1;
    shoal_engine_sub_t *request = (shoal_engine_sub_t *) zmalloc (sizeof (shoal_engine_sub_t));
    request->id = ++self->next_sub_id;
    snprintf (request->stream, sizeof request->stream, "%s", stream);
    snprintf (request->type, sizeof request->type, "%s", type ? type : "");
    if (from)
        request->from = *from;
    if (from && from->count) {
        request->origins = (uint8_t (*)[SHOAL_ID_SIZE]) malloc (from->count * SHOAL_ID_SIZE);
        request->seqs = (uint64_t *) malloc (from->count * sizeof (uint64_t));
        memcpy (request->origins, from->origins, from->count * SHOAL_ID_SIZE);
        memcpy (request->seqs, from->seqs, from->count * sizeof (uint64_t));
        request->from.origins = (const uint8_t (*)[SHOAL_ID_SIZE]) request->origins;
        request->from.seqs = request->seqs;
    }
    else {
        request->from.origins = NULL;
        request->from.seqs = NULL;
        request->from.count = 0;
    }
    int id = request->id;
    pthread_mutex_lock (&self->pipe_lock);
    zsock_send (zactor_sock (self->actor), "sb", "SUBSCRIBE", &request, sizeof request);
    pthread_mutex_unlock (&self->pipe_lock);
    return id;
}

int
shoal_node_subscribe_durable (shoal_node_t *self, const char *consumer, const char *stream,
                              const char *type)
{
    if (!shoal_consumer_name_valid (consumer) || !shoal_stream_name_valid (stream)
        || (type && *type && !shoal_type_name_valid (type)))
        return -1;
    shoal_engine_sub_t *request = (shoal_engine_sub_t *) zmalloc (sizeof (shoal_engine_sub_t));
    request->id = ++self->next_sub_id;
    snprintf (request->consumer, sizeof request->consumer, "%s", consumer);
    snprintf (request->stream, sizeof request->stream, "%s", stream);
    snprintf (request->type, sizeof request->type, "%s", type ? type : "");
    int id = request->id;
    if ((size_t) id >= self->durable_alloc) {
        size_t alloc = 2 * (size_t) id + 16;
        bool *durable = (bool *) realloc (self->durable, alloc * sizeof (bool));
        if (!durable) {
            free (request);
            return -1;
        }
        memset (durable + self->durable_alloc, 0, (alloc - self->durable_alloc) * sizeof (bool));
        self->durable = durable;
        self->durable_alloc = alloc;
    }
    self->durable[id] = true;
    pthread_mutex_lock (&self->pipe_lock);
    zsock_send (zactor_sock (self->actor), "sb", "SUBSCRIBE", &request, sizeof request);
    pthread_mutex_unlock (&self->pipe_lock);
    return id;
}

int
shoal_node_ack (shoal_node_t *self, int subscription, const shoal_event_t *event, bool cumulative)
{
    if (subscription <= 0 || (size_t) subscription >= self->durable_alloc
        || !self->durable[subscription] || !event || !shoal_event_origin (event))
        return -1;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "ACK");
    zmsg_addstrf (msg, "%d", subscription);
    zmsg_addmem (msg, shoal_event_origin (event), SHOAL_ID_SIZE);
    zmsg_addstrf (msg, "%" PRIu64, shoal_event_seq (event));
    zmsg_addstr (msg, cumulative ? "1" : "0");
    pthread_mutex_lock (&self->pipe_lock);
    int rc = zmsg_send (&msg, zactor_sock (self->actor));
    pthread_mutex_unlock (&self->pipe_lock);
    return rc;
}

//  Sends a command (and an optional argument), waits for its one-frame reply.
static zframe_t *
s_call (shoal_node_t *self, const char *command, const char *argument)
{
    pthread_mutex_lock (&self->pipe_lock);
    if (argument)
        zsock_send (zactor_sock (self->actor), "ss", command, argument);
    else
        zsock_send (zactor_sock (self->actor), "s", command);
    zframe_t *reply = NULL;
    zsock_recv (zactor_sock (self->actor), "f", &reply);
    pthread_mutex_unlock (&self->pipe_lock);
    return reply;
}

int
shoal_node_ack_flush (shoal_node_t *self)
{
    zframe_t *reply = s_call (self, "ACKFLUSH", NULL);
    int rc = reply && zframe_streq (reply, "0") ? 0 : -1;
    zframe_destroy (&reply);
    return rc;
}

char **
shoal_node_consumers (shoal_node_t *self)
{
    zframe_t *reply = s_call (self, "CONSUMERS", NULL);
    size_t size = reply ? zframe_size (reply) : 0;
    size_t count = 0;
    for (size_t i = 0; i < size; i++)
        count += zframe_data (reply)[i] == '\n';
    char **names = (char **) zmalloc ((count + 1) * sizeof (char *));
    const char *start = reply ? (const char *) zframe_data (reply) : NULL;
    for (size_t n = 0; n < count; n++) {
        const char *end = (const char *) memchr (
            start, '\n', size - (size_t) (start - (const char *) zframe_data (reply)));
        names[n] = strndup (start, (size_t) (end - start));
        start = end + 1;
    }
    zframe_destroy (&reply);
    return names;
}

void
shoal_node_consumers_free (char ***names_p)
{
    if (!names_p || !*names_p)
        return;
    for (char **name = *names_p; *name; name++)
        free (*name);
    free (*names_p);
    *names_p = NULL;
}

int
shoal_node_consumer_delete (shoal_node_t *self, const char *consumer)
{
    if (!shoal_consumer_name_valid (consumer))
        return -1;
    zframe_t *reply = s_call (self, "CONSUMERDELETE", consumer);
    int rc = reply && zframe_streq (reply, "0") ? 0 : -1;
    zframe_destroy (&reply);
    return rc;
}

int
shoal_node_unsubscribe (shoal_node_t *self, int subscription)
{
    if (subscription <= 0 || subscription > self->next_sub_id)
        return -1;
    if ((size_t) subscription < self->durable_alloc)
        self->durable[subscription] = false;
    pthread_mutex_lock (&self->pipe_lock);
    zsock_send (zactor_sock (self->actor), "si", "UNSUBSCRIBE", subscription);
    pthread_mutex_unlock (&self->pipe_lock);
    return 0;
}

shoal_event_t *
shoal_node_recv (shoal_node_t *self, int timeout_ms, int *subscription_p)
{
    return shoal_inbox_pop (self->args->inbox, timeout_ms, subscription_p);
}

int
shoal_node_fd (shoal_node_t *self)
{
    return shoal_inbox_ready_fd (self->args->inbox);
}

int
shoal_node_stats (shoal_node_t *self, shoal_node_stats_t *stats)
{
    zframe_t *reply = s_call (self, "STATS", NULL);
    int rc = -1;
    if (reply && zframe_size (reply) == sizeof *stats) {
        memcpy (stats, zframe_data (reply), sizeof *stats);
        rc = 0;
    }
    zframe_destroy (&reply);
    return rc;
}

size_t
shoal_node_peers (shoal_node_t *self, shoal_peer_info_t *peers, size_t max)
{
    zframe_t *reply = s_call (self, "PEERS", NULL);
    size_t count = reply ? zframe_size (reply) / sizeof (shoal_peer_info_t) : 0;
    if (reply && peers)
        memcpy (peers, zframe_data (reply), (count < max ? count : max) * sizeof *peers);
    zframe_destroy (&reply);
    return count;
}
