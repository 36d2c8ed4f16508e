/*  node_util.c - in-process nodes and thin clients for the TAP tests */

#include "node_util.h"
#include "tap.h"

#include <stdlib.h>

void
node_util_config (shoal_node_config_t *config, const char *mesh, const char *name)
{
    shoal_node_config_defaults (config);
    config->name = name;
    config->mesh = mesh;
    config->data_dir = NULL; //  tap_path (name), set by node_util_new
    config->interface = "none";
    config->pub_endpoint = "tcp://127.0.0.1:*";
    config->router_endpoint = "tcp://127.0.0.1:*";
    config->heartbeat_ms = 200;
    config->beacon_interval_ms = 200;
}

shoal_node_t *
node_util_new (const shoal_node_config_t *config)
{
    //  tap_path's buffer is taken here, not when the config was filled:
    //  a tune function between the two may use it for a path of its own.
    shoal_node_config_t copy = *config;
    if (!copy.data_dir)
        copy.data_dir = tap_path (copy.name);
    int error = 0;
    shoal_node_t *node = shoal_node_new (&copy, &error);
    if (!node)
        bail ("cannot start node %s: %s", copy.name, shoal_node_start_error ());
    return node;
}

shoal_node_stats_t
node_util_stats (shoal_node_t *node)
{
    shoal_node_stats_t stats;
    if (shoal_node_stats (node, &stats))
        bail ("no stats");
    return stats;
}

zsock_t *
node_util_client (shoal_node_t *node, int timeout_ms)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (dealer, 0);
    zsock_set_rcvtimeo (dealer, timeout_ms);
    if (zsock_connect (dealer, "%s", shoal_node_router_endpoint (node)))
        bail ("cannot connect to %s", shoal_node_router_endpoint (node));
    return dealer;
}

void
node_util_publish_request (Shoal__V1__Request *request, Shoal__V1__PublishRequest *publish,
                           Shoal__V1__Event *event, uint64_t request_id)
{
    Shoal__V1__PublishRequest publish_init = SHOAL__V1__PUBLISH_REQUEST__INIT;
    Shoal__V1__Request request_init = SHOAL__V1__REQUEST__INIT;
    *publish = publish_init;
    publish->event = event;
    *request = request_init;
    request->request_id = request_id;
    request->body_case = SHOAL__V1__REQUEST__BODY_PUBLISH;
    request->publish = publish;
}

void
node_util_send (zsock_t *client, const Shoal__V1__Request *request)
{
    size_t size = shoal__v1__request__get_packed_size (request);
    uint8_t *data = (uint8_t *) malloc (size ? size : 1);
    shoal__v1__request__pack (request, data);
    zmq_send (zsock_resolve (client), data, size, 0);
    free (data);
}

Shoal__V1__Response *
node_util_recv (zsock_t *client)
{
    zframe_t *frame = zframe_recv (client);
    if (!frame)
        return NULL;
    Shoal__V1__Response *response =
        shoal__v1__response__unpack (NULL, zframe_size (frame), zframe_data (frame));
    zframe_destroy (&frame);
    return response;
}

size_t
node_util_log_head (zsock_t *client, const uint8_t *origin, const char *stream, uint64_t *head_p)
{
    Shoal__V1__StatusRequest status = SHOAL__V1__STATUS_REQUEST__INIT;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = 60;
    request.body_case = SHOAL__V1__REQUEST__BODY_STATUS;
    request.status = &status;
    node_util_send (client, &request);
    Shoal__V1__Response *response = node_util_recv (client);
    size_t count = 0;
    *head_p = 0;
    if (response && response->body_case == SHOAL__V1__RESPONSE__BODY_STATUS) {
        count = response->status->n_logs;
        for (size_t i = 0; i < count; i++) {
            Shoal__V1__LogHead *log = response->status->logs[i];
            if ((!origin
                 || (log->origin.len == SHOAL_ID_SIZE
                     && memcmp (log->origin.data, origin, SHOAL_ID_SIZE) == 0))
                && streq (log->stream, stream))
                *head_p = log->head_seq;
        }
    }
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
    return count;
}

uint64_t
node_util_wait_log_head (zsock_t *client, const uint8_t *origin, const char *stream, uint64_t want,
                         int timeout_ms)
{
    uint64_t seen = 0;
    int64_t deadline = zclock_mono () + timeout_ms;
    for (node_util_log_head (client, origin, stream, &seen);
         seen < want && zclock_mono () < deadline;
         node_util_log_head (client, origin, stream, &seen))
        zclock_sleep (50);
    return seen;
}
