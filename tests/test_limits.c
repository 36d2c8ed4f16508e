/*  test_limits - every limit a node keeps on what others can make it hold

    Each check drives a node (in this process, loopback endpoints only)
    past one limit and looks for the documented outcome: an Error reply
    with its DESIGN.md code, or a drop counted in the node's stats. The
    README table "Limits" lists them; this file checks each row:

        max_event_size          publish: TOO_LARGE; thin client: Error 4;
                                live event from a peer: dropped, bad_requests
        request size            Error 4 "request too large"
        ZMQ_MAXMSGSIZE          connection closed, no reply; node keeps serving
        max_replays_per_client  a session parked for credit is dropped
                                (replays_evicted); with none, Error 7,
                                replays_refused
        max_replay_sessions     the same, over all clients
        replay_batch_events     no ReplayBatch holds more events
        replay_batch_bytes      no ReplayBatch holds more event bytes (one
                                bigger event travels alone)
        replay type filter      more than 256 types: Error 1
        max_peers               Hello beyond it: peer not added, peers_refused
        max_logs                thin client's new stream: Error 7, logs_refused;
                                "replicate all": a new stream, or a new
                                origin of a replicated stream, not
                                replicated, counted once each
        max_consumers           thin client's new consumer: Error 7
        dedupe_window           a thin client's repeat inside it: the first
                                ack again; older than it: recorded again
        max_consumer_cursors    a consumer's new cursor past it: Error 7
        reorder_limit           events_deferred, and every event still
                                arrives once, in order
        max_origins             heads and events of invented origins past
                                it: dropped, origins_refused; own events
                                still delivered; a head not remembered:
                                a later "now" subscription places its
                                origin by time and misses nothing
    ========================================================================= */

#include "shoal.h"
#include "shoal.pb-c.h"
#include "node_util.h"
#include "tap.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#define S_WAIT_MS 10000 //  generous: the machine is shared

static shoal_node_t *
s_node (const char *name, const char *const *peers, size_t peer_count,
        void (*tune) (shoal_node_config_t *))
{
    shoal_node_config_t config;
    node_util_config (&config, "test-limits", name);
    config.peers = peers;
    config.peer_count = peer_count;
    config.fsync = SHOAL_FSYNC_NEVER;
    config.log_level = SHOAL_LOG_ERROR;
    if (tune)
        tune (&config);
    return node_util_new (&config);
}

//  Publishes count events of payload_size bytes; returns the last seq.
static uint64_t
s_publish (shoal_node_t *node, const char *stream, int count, size_t payload_size)
{
    uint64_t seq = 0;
    char *payload = (char *) malloc (payload_size + 1);
    memset (payload, 'p', payload_size);
    for (int i = 0; i < count; i++) {
        shoal_event_t *event = shoal_event_new ();
        shoal_event_set_stream (event, stream);
        shoal_event_set_type (event, "Tick");
        shoal_event_set_payload (event, payload, payload_size);
        int error = 0;
        if (shoal_node_publish (node, event, &seq, &error))
            bail ("publish failed: %s", shoal_strerror (error));
        shoal_event_destroy (&event);
    }
    free (payload);
    if (shoal_node_wait_durable (node, stream, seq, S_WAIT_MS))
        bail ("events did not become durable");
    return seq;
}

//  The Error code of the next response, 0 when it is not an Error, -1 when none came.
static int
s_error_code (zsock_t *client, char *message, size_t size)
{
    Shoal__V1__Response *response = node_util_recv (client);
    if (!response)
        return -1;
    int code = 0;
    if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR) {
        code = (int) response->error->code;
        if (message)
            snprintf (message, size, "%s", response->error->message);
    }
    shoal__v1__response__free_unpacked (response, NULL);
    return code;
}

static void
s_replay (zsock_t *client, uint64_t request_id, const uint8_t *origin, const char *stream,
          uint32_t credit)
{
    Shoal__V1__ReplayRequest replay = SHOAL__V1__REPLAY_REQUEST__INIT;
    replay.origin.data = (uint8_t *) origin;
    replay.origin.len = SHOAL_ID_SIZE;
    replay.stream = (char *) stream;
    replay.from_seq = 1;
    replay.credit = credit;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = request_id;
    request.body_case = SHOAL__V1__REQUEST__BODY_REPLAY;
    request.replay = &replay;
    node_util_send (client, &request);
}

//  True when a Ping gets its Pong: the node is alive and answering.
static bool
s_ping (zsock_t *client, uint64_t request_id)
{
    Shoal__V1__Ping ping = SHOAL__V1__PING__INIT;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = request_id;
    request.body_case = SHOAL__V1__REQUEST__BODY_PING;
    request.ping = &ping;
    node_util_send (client, &request);
    for (;;) {
        Shoal__V1__Response *response = node_util_recv (client);
        if (!response)
            return false;
        bool pong = response->request_id == request_id
                    && response->body_case == SHOAL__V1__RESPONSE__BODY_PONG;
        shoal__v1__response__free_unpacked (response, NULL);
        if (pong)
            return true;
    }
}

//  --------------------------------------------------------------------------

static void
s_small_events (shoal_node_config_t *config)
{
    config->max_event_size = 4096;
}

static void
test_event_size (void)
{
    shoal_node_t *node = s_node ("size", NULL, 0, s_small_events);
    //  The library API.
    shoal_event_t *event = shoal_event_new ();
    shoal_event_set_stream (event, "orders");
    shoal_event_set_type (event, "Big");
    char payload[8192];
    memset (payload, 'b', sizeof payload);
    shoal_event_set_payload (event, payload, 5000);
    uint64_t seq = 0;
    int error = 0;
    ok (shoal_node_publish (node, event, &seq, &error) == -1 && error == SHOAL_ERR_TOO_LARGE,
        "max_event_size: publishing a 5000-byte event to a 4096-byte node fails with TOO_LARGE");
    shoal_event_destroy (&event);

    //  A thin client's PublishRequest.
    zsock_t *client = node_util_client (node, S_WAIT_MS);
    Shoal__V1__Event big = SHOAL__V1__EVENT__INIT;
    big.stream = "orders";
    big.type = "Big";
    big.payload.data = (uint8_t *) payload;
    big.payload.len = 5000;
    Shoal__V1__PublishRequest publish;
    Shoal__V1__Request request;
    node_util_publish_request (&request, &publish, &big, 1);
    uint64_t bad_before = node_util_stats (node).bad_requests;
    node_util_send (client, &request);
    is_int (s_error_code (client, NULL, 0), SHOAL_WIRE_TOO_LARGE,
            "max_event_size: a thin client's oversized PublishRequest gets Error 4");
    //  One that fits as sent, but not once the node stamps it (origin, seq,
    //  time, id): recorded, no peer could ever decode it.
    big.payload.len = 4096;
    while (shoal__v1__event__get_packed_size (&big) > 4096 - 20)
        big.payload.len--;
    request.request_id = 3;
    node_util_send (client, &request);
    is_int (s_error_code (client, NULL, 0), SHOAL_WIRE_TOO_LARGE,
            "max_event_size: a thin client's event that only the stamping takes past it gets "
            "Error 4 (%zu bytes as sent)",
            shoal__v1__event__get_packed_size (&big));

    //  A request bigger than any event plus its envelope, below ZMQ_MAXMSGSIZE.
    big.payload.len = 8192 + 100;
    char *huge = (char *) malloc (big.payload.len);
    memset (huge, 'h', big.payload.len);
    big.payload.data = (uint8_t *) huge;
    request.request_id = 2;
    node_util_send (client, &request);
    char message[256] = "";
    is_int (s_error_code (client, message, sizeof message), SHOAL_WIRE_TOO_LARGE,
            "request size: a request over max_event_size + 4096 gets Error 4 (%s)", message);
    free (huge);
    ok (node_util_stats (node).bad_requests >= bad_before + 2,
        "both refusals are counted in bad_requests");
    ok (node_util_stats (node).published == 0, "nothing was recorded");

    //  Past ZMQ_MAXMSGSIZE (4 * max_event_size + 64 KiB): ZeroMQ drops the
    //  connection before the node sees a byte of it.
    size_t giant_size = 4 * 4096 + 65536 + 1024;
    uint8_t *giant = (uint8_t *) calloc (1, giant_size);
    zmq_send (zsock_resolve (client), giant, giant_size, 0);
    free (giant);
    zsock_set_rcvtimeo (client, 1000);
    Shoal__V1__Response *none = node_util_recv (client);
    ok (none == NULL, "ZMQ_MAXMSGSIZE: a frame over 4 x max_event_size + 64 KiB gets no reply");
    if (none)
        shoal__v1__response__free_unpacked (none, NULL);
    zsock_set_rcvtimeo (client, S_WAIT_MS);
    zsock_t *other = node_util_client (node, S_WAIT_MS);
    ok (s_ping (other, 77) && s_ping (client, 78),
        "ZMQ_MAXMSGSIZE: the node keeps serving (a new client, and the same one reconnected)");
    zsock_destroy (&other);
    zsock_destroy (&client);
    shoal_node_destroy (&node);
}

static void
s_big_events (shoal_node_config_t *config)
{
    config->max_event_size = 2 * 1024 * 1024;
}

//  Above the 1 MiB default, up to the node's own max_event_size: its own
//  subscriptions get the event live and by a repair from its own log.
static void
test_big_own_events (void)
{
    shoal_node_t *node = s_node ("big", NULL, 0, s_big_events);
    shoal_from_t now = {.kind = SHOAL_FROM_NOW};
    int live = shoal_node_subscribe (node, "orders", NULL, &now);
    s_publish (node, "orders", 1, 1536 * 1024);
    int subscription = 0;
    shoal_event_t *event = shoal_node_recv (node, S_WAIT_MS, &subscription);
    ok (event && subscription == live && shoal_event_payload_size (event) == 1536 * 1024,
        "max_event_size 2 MiB: a 1.5 MiB own event reaches a local subscription live");
    shoal_event_destroy (&event);
    shoal_from_t beginning = {.kind = SHOAL_FROM_BEGINNING};
    int history = shoal_node_subscribe (node, "orders", NULL, &beginning);
    event = shoal_node_recv (node, S_WAIT_MS, &subscription);
    ok (event && subscription == history && shoal_event_payload_size (event) == 1536 * 1024,
        "and one from the beginning, by repair from the node's own log");
    shoal_event_destroy (&event);
    shoal_node_destroy (&node);
}

//  A peer's live event over this node's max_event_size is dropped and counted.
static void
s_small_subscriber (shoal_node_config_t *config)
{
    config->max_event_size = 2048;
}

static void
test_live_event_size (void)
{
    shoal_node_t *origin = s_node ("live-origin", NULL, 0, NULL);
    const char *peers[] = {shoal_node_router_endpoint (origin)};
    shoal_node_t *subscriber = s_node ("live-sub", peers, 1, s_small_subscriber);
    shoal_from_t from = {.kind = SHOAL_FROM_NOW};
    int sub = shoal_node_subscribe (subscriber, "metrics", NULL, &from);
    //  Wait until the subscriber hears the origin (heartbeats of the stream).
    s_publish (origin, "metrics", 1, 10);
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    shoal_event_t *first = NULL;
    while (!first && zclock_mono () < deadline) {
        s_publish (origin, "metrics", 1, 10);
        first = shoal_node_recv (subscriber, 200, NULL);
    }
    ok (first != NULL, "the subscriber gets small live events from its peer");
    shoal_event_destroy (&first);
    uint64_t bad_before = node_util_stats (subscriber).bad_requests;
    s_publish (origin, "metrics", 1, 3000); //  over 2048, under the SUB's ZMQ_MAXMSGSIZE
    deadline = zclock_mono () + S_WAIT_MS;
    while (node_util_stats (subscriber).bad_requests == bad_before && zclock_mono () < deadline)
        zclock_sleep (20);
    ok (node_util_stats (subscriber).bad_requests > bad_before,
        "max_event_size: a live event over the subscriber's limit is dropped and counted");
    shoal_event_t *event;
    bool delivered_big = false;
    while ((event = shoal_node_recv (subscriber, 300, NULL))) {
        if (shoal_event_payload_size (event) >= 3000)
            delivered_big = true;
        shoal_event_destroy (&event);
    }
    ok (!delivered_big, "the oversized event is never delivered");
    shoal_node_unsubscribe (subscriber, sub);
    shoal_node_destroy (&subscriber);
    shoal_node_destroy (&origin);
}

static void
s_few_replays (shoal_node_config_t *config)
{
    config->max_replays_per_client = 2;
    config->max_replay_sessions = 3;
}

//  Big events, and a ROUTER that queues one message per client: a client
//  that does not read keeps its replays busy (not parked for credit).
static void
s_few_busy_replays (shoal_node_config_t *config)
{
    s_few_replays (config);
    config->sndhwm = 1;
}

//  A client that reads slowly: tiny queue and socket buffer.
static zsock_t *
s_slow_client (shoal_node_t *node)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (dealer, 0);
    zsock_set_rcvtimeo (dealer, S_WAIT_MS);
    zsock_set_rcvhwm (dealer, 1);
    zsock_set_rcvbuf (dealer, 4096);
    if (zsock_connect (dealer, "%s", shoal_node_router_endpoint (node)))
        bail ("cannot connect to %s", shoal_node_router_endpoint (node));
    return dealer;
}

//  Reads responses until one for request_id; its Error code, 0 when it is
//  not an Error, -1 when none came.
static int
s_error_for (zsock_t *client, uint64_t request_id, char *message, size_t size)
{
    for (int n = 0; n < 100000; n++) {
        Shoal__V1__Response *response = node_util_recv (client);
        if (!response)
            return -1;
        if (response->request_id != request_id) {
            shoal__v1__response__free_unpacked (response, NULL);
            continue;
        }
        int code = 0;
        if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR) {
            code = (int) response->error->code;
            snprintf (message, size, "%s", response->error->message);
        }
        shoal__v1__response__free_unpacked (response, NULL);
        return code;
    }
    return -1;
}

static void
test_replay_sessions (void)
{
    //  Sessions parked for credit make room for new ones.
    shoal_node_t *node = s_node ("replays", NULL, 0, s_few_replays);
    s_publish (node, "orders", 5, 10);
    const uint8_t *id = shoal_node_id (node);
    zsock_t *alice = node_util_client (node, S_WAIT_MS);
    s_replay (alice, 1, id, "orders", 0);
    s_replay (alice, 2, id, "orders", 0);
    //  At the limit, a replay refused for what it asks costs no one a place.
    char why[256] = "";
    s_replay (alice, 4, id, "no-such-stream", 0);
    is_int (s_error_for (alice, 4, why, sizeof why), SHOAL_WIRE_UNKNOWN,
            "at the limit, a replay of a log the node lacks gets Error 2 (%s)", why);
    is_int (node_util_stats (node).replays_evicted, 0,
            "and drops no parked replay to make room for it");
    s_replay (alice, 3, id, "orders", 0);
    ok (s_ping (alice, 90), "a client with two replays parked for credit starts a third");
    ok (node_util_stats (node).replays_evicted == 1 && node_util_stats (node).replays_refused == 0,
        "max_replays_per_client: its oldest parked replay is dropped and counted in "
        "replays_evicted");
    Shoal__V1__Credit credit = SHOAL__V1__CREDIT__INIT;
    credit.replay_id = 1;
    credit.credit = 10;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = 100;
    request.body_case = SHOAL__V1__REQUEST__BODY_CREDIT;
    request.credit = &credit;
    node_util_send (alice, &request);
    credit.replay_id = 3;
    node_util_send (alice, &request);
    Shoal__V1__Response *response = node_util_recv (alice);
    ok (response && response->request_id == 3
            && response->body_case == SHOAL__V1__RESPONSE__BODY_BATCH,
        "the dropped replay sends nothing more; the new one goes on");
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
    zsock_destroy (&alice);
    shoal_node_destroy (&node);

    //  Busy sessions (their batches wait for a slow client) are not
    //  dropped: past a limit, Error 7.
    node = s_node ("busy-replays", NULL, 0, s_few_busy_replays);
    s_publish (node, "big", 40, 50000);
    id = shoal_node_id (node);
    alice = s_slow_client (node);
    zsock_t *bob = s_slow_client (node);
    s_replay (alice, 1, id, "big", 1000);
    s_replay (alice, 2, id, "big", 1000);
    zclock_sleep (500);
    s_replay (alice, 3, id, "big", 1000);
    zclock_sleep (300);
    s_replay (bob, 1, id, "big", 1000);
    zclock_sleep (500);
    s_replay (bob, 2, id, "big", 1000);
    char message[256] = "";
    is_int (s_error_for (alice, 3, message, sizeof message), SHOAL_WIRE_BUSY,
            "max_replays_per_client: a third busy replay of one client gets Error 7 (%s)", message);
    is_int (s_error_for (bob, 2, message, sizeof message), SHOAL_WIRE_BUSY,
            "max_replay_sessions: a fourth busy session in all gets Error 7 (%s)", message);
    is_int (node_util_stats (node).replays_refused, 2, "replays_refused counts both");
    zsock_destroy (&alice);
    zsock_destroy (&bob);
    shoal_node_destroy (&node);
}

static void
s_small_batches (shoal_node_config_t *config)
{
    config->replay_batch_events = 4;
    config->replay_batch_bytes = 1000;
}

//  Replays the whole stream with plenty of credit; returns the events
//  received and the most events and event bytes seen in one batch.
static int
s_replay_all (zsock_t *client, const uint8_t *id, const char *stream, size_t *max_events,
              size_t *max_bytes, size_t *max_single)
{
    s_replay (client, 5, id, stream, 1000);
    int events = 0;
    *max_events = *max_bytes = *max_single = 0;
    for (;;) {
        Shoal__V1__Response *response = node_util_recv (client);
        if (!response || response->body_case != SHOAL__V1__RESPONSE__BODY_BATCH) {
            if (response)
                shoal__v1__response__free_unpacked (response, NULL);
            return -1;
        }
        Shoal__V1__ReplayBatch *batch = response->batch;
        size_t bytes = 0;
        for (size_t i = 0; i < batch->n_events; i++) {
            size_t size = shoal__v1__event__get_packed_size (batch->events[i]);
            bytes += size;
            if (size > *max_single)
                *max_single = size;
        }
        if (batch->n_events > 1 && bytes > *max_bytes)
            *max_bytes = bytes;
        if (batch->n_events > *max_events)
            *max_events = batch->n_events;
        events += (int) batch->n_events;
        bool done = batch->done;
        shoal__v1__response__free_unpacked (response, NULL);
        if (done)
            return events;
    }
}

static void
test_replay_batches (void)
{
    shoal_node_t *node = s_node ("batches", NULL, 0, s_small_batches);
    s_publish (node, "small", 10, 10);
    s_publish (node, "wide", 6, 300);
    s_publish (node, "wide", 1, 1500);
    zsock_t *client = node_util_client (node, S_WAIT_MS);
    size_t max_events, max_bytes, max_single;
    int got =
        s_replay_all (client, shoal_node_id (node), "small", &max_events, &max_bytes, &max_single);
    is_int (got, 10, "a replay of 10 small events delivers all 10");
    ok (max_events == 4, "replay_batch_events: no batch holds more than 4 events (most: %zu)",
        max_events);
    got = s_replay_all (client, shoal_node_id (node), "wide", &max_events, &max_bytes, &max_single);
    is_int (got, 7, "a replay of 7 wide events delivers all 7");
    ok (max_bytes > 0 && max_bytes <= 1000,
        "replay_batch_bytes: batches of several events hold at most 1000 event bytes (most: %zu)",
        max_bytes);
    ok (max_single > 1000, "an event over replay_batch_bytes still travels, alone (%zu bytes)",
        max_single);

    //  The type filter of a replay: 256 types at most.
    Shoal__V1__ReplayRequest replay = SHOAL__V1__REPLAY_REQUEST__INIT;
    replay.origin.data = (uint8_t *) shoal_node_id (node);
    replay.origin.len = SHOAL_ID_SIZE;
    replay.stream = "small";
    replay.credit = 10;
    char *types[257];
    for (int i = 0; i < 257; i++)
        types[i] = "Tick";
    replay.n_types = 257;
    replay.types = types;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = 9;
    request.body_case = SHOAL__V1__REQUEST__BODY_REPLAY;
    request.replay = &replay;
    node_util_send (client, &request);
    is_int (s_error_code (client, NULL, 0), SHOAL_WIRE_BAD_REQUEST,
            "a replay with 257 types in its filter gets Error 1");
    zsock_destroy (&client);
    shoal_node_destroy (&node);
}

static void
s_one_peer (shoal_node_config_t *config)
{
    config->max_peers = 1;
}

//  A Hello from a stranger with id bytes id_byte; a pub_port makes the
//  node subscribe to that PUB.
static void
s_hello (zsock_t *client, uint8_t id_byte, int router_port, int pub_port)
{
    uint8_t id[SHOAL_ID_SIZE];
    memset (id, id_byte, sizeof id);
    Shoal__V1__Hello hello = SHOAL__V1__HELLO__INIT;
    hello.node.data = id;
    hello.node.len = SHOAL_ID_SIZE;
    hello.name = "stranger";
    hello.mesh = "test-limits";
    hello.router_port = (uint32_t) router_port;
    hello.pub_port = (uint32_t) pub_port;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = id_byte;
    request.body_case = SHOAL__V1__REQUEST__BODY_HELLO;
    request.hello = &hello;
    node_util_send (client, &request);
}

static void
test_max_peers (void)
{
    shoal_node_t *node = s_node ("peers", NULL, 0, s_one_peer);
    zsock_t *client = node_util_client (node, S_WAIT_MS);
    //  Two strangers announce themselves with a Hello (their ports are
    //  closed ones on 127.0.0.1: nothing answers there).
    s_hello (client, 0xa1, tap_free_port (), 0);
    Shoal__V1__Response *reply = node_util_recv (client);
    ok (reply && reply->body_case == SHOAL__V1__RESPONSE__BODY_HELLO,
        "a Hello is answered with a Hello");
    if (reply)
        shoal__v1__response__free_unpacked (reply, NULL);
    shoal_peer_info_t infos[4];
    is_int (shoal_node_peers (node, infos, 4), 1, "the first stranger becomes a peer");
    s_hello (client, 0xb2, tap_free_port (), 0);
    reply = node_util_recv (client);
    ok (reply && reply->body_case == SHOAL__V1__RESPONSE__BODY_HELLO,
        "the second Hello is answered too");
    if (reply)
        shoal__v1__response__free_unpacked (reply, NULL);
    is_int (shoal_node_peers (node, infos, 4), 1, "max_peers: the second stranger is not added");
    is_int (node_util_stats (node).peers_refused, 1, "peers_refused counts it");
    zsock_destroy (&client);
    shoal_node_destroy (&node);
}

static void
s_few_origins (shoal_node_config_t *config)
{
    config->max_origins = 8;
}

//  A stranger whose PUB the node subscribes to (its Hello gives the port)
//  sends a heartbeat and an event from each of 40 origin ids it invents.
static void
test_max_origins (void)
{
    enum { INVENTED = 40, MAX = 8 };
    shoal_node_t *node = s_node ("origins", NULL, 0, s_few_origins);
    zsock_t *client = node_util_client (node, S_WAIT_MS);
    zsock_t *pub = zsock_new (ZMQ_PUB);
    int pub_port = zsock_bind (pub, "tcp://127.0.0.1:*");
    s_hello (client, 0xc3, tap_free_port (), pub_port);
    Shoal__V1__Response *reply = node_util_recv (client);
    ok (reply && reply->body_case == SHOAL__V1__RESPONSE__BODY_HELLO,
        "max_origins: the stranger's Hello is answered");
    if (reply)
        shoal__v1__response__free_unpacked (reply, NULL);
    shoal_from_t from = {.kind = SHOAL_FROM_NOW};
    int sub = shoal_node_subscribe (node, "orders", NULL, &from);
    s_publish (node, "orders", 1, 10);
    shoal_event_t *own = shoal_node_recv (node, S_WAIT_MS, NULL);
    ok (own != NULL, "the node's own event is delivered");
    shoal_event_destroy (&own);
    //  One-frame junk until the node counts it: its SUB is connected.
    uint64_t bad = node_util_stats (node).bad_requests;
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    while (node_util_stats (node).bad_requests == bad && zclock_mono () < deadline) {
        zsock_send (pub, "s", "orders/OneFrame");
        zclock_sleep (50);
    }
    ok (node_util_stats (node).bad_requests > bad, "the node hears the stranger's PUB");
    for (int i = 0; i < INVENTED; i++) {
        uint8_t origin[SHOAL_ID_SIZE];
        memset (origin, 0x0f, sizeof origin);
        origin[0] = (uint8_t) i;
        Shoal__V1__Heartbeat heartbeat = SHOAL__V1__HEARTBEAT__INIT;
        heartbeat.origin.data = origin;
        heartbeat.origin.len = SHOAL_ID_SIZE;
        heartbeat.stream = "orders";
        heartbeat.head_seq = 5;
        uint8_t buffer[256];
        size_t size = shoal__v1__heartbeat__pack (&heartbeat, buffer);
        zsock_send (pub, "sb", "orders/", buffer, size);
        shoal_event_t *event = shoal_event_new ();
        shoal_event_set_stream (event, "orders");
        shoal_event_set_type (event, "Junk");
        shoal_event_set_origin (event, origin);
        shoal_event_set_seq (event, 1);
        shoal_event_generate_id (event);
        uint8_t *data;
        size_t data_size;
        shoal_event_encode (event, &data, &data_size);
        zsock_send (pub, "sb", "orders/Junk", data, data_size);
        free (data);
        shoal_event_destroy (&event);
    }
    //  Heads: MAX remembered, the other 32 refused for the heartbeat and
    //  again for the event. The subscription follows its own origin and 7
    //  more: 33 refused, twice. Either alone gives 64 or more.
    uint64_t expected = 2 * (INVENTED - MAX) + 2 * (INVENTED - (MAX - 1));
    deadline = zclock_mono () + S_WAIT_MS;
    while (node_util_stats (node).origins_refused < expected && zclock_mono () < deadline)
        zclock_sleep (20);
    uint64_t refused = node_util_stats (node).origins_refused;
    ok (refused == expected,
        "max_origins: origins past it are refused (%" PRIu64 " of %" PRIu64 ")", refused, expected);
    s_publish (node, "orders", 1, 10);
    own = shoal_node_recv (node, S_WAIT_MS, NULL);
    ok (own && memcmp (shoal_event_origin (own), shoal_node_id (node), SHOAL_ID_SIZE) == 0
            && shoal_event_seq (own) == 2,
        "the node still delivers its own next event");
    shoal_event_destroy (&own);
    shoal_node_unsubscribe (node, sub);
    zsock_destroy (&pub);
    zsock_destroy (&client);
    shoal_node_destroy (&node);
}

static void
s_two_origins (shoal_node_config_t *config)
{
    config->max_origins = 2;
}

//  Receives from subscription sub until an event comes or timeout_ms pass.
static shoal_event_t *
s_recv_from (shoal_node_t *node, int sub, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        int from = -1;
        shoal_event_t *event = shoal_node_recv (node, 100, &from);
        if (event && from == sub)
            return event;
        shoal_event_destroy (&event);
    }
    return NULL;
}

//  A node remembers the head of at most max_origins (origin, stream)
//  pairs. One it could not remember is placed by time, not by seq, in a
//  later subscription from "now": that subscription still gets exactly
//  the events recorded after it started.
static void
test_heads_fallback (void)
{
    shoal_node_t *origin = s_node ("fallback-origin", NULL, 0, NULL);
    s_publish (origin, "fill-a", 1, 10);
    s_publish (origin, "fill-b", 1, 10);
    const char *peers[] = {shoal_node_router_endpoint (origin)};
    shoal_node_t *node = s_node ("fallback-sub", peers, 1, s_two_origins);
    //  The heads of fill-a and fill-b fill the table: their events arrive,
    //  then a few heartbeats of each.
    shoal_from_t beginning = {.kind = SHOAL_FROM_BEGINNING};
    int fill_a = shoal_node_subscribe (node, "fill-a", NULL, &beginning);
    int fill_b = shoal_node_subscribe (node, "fill-b", NULL, &beginning);
    shoal_event_t *event = s_recv_from (node, fill_a, S_WAIT_MS);
    ok (event != NULL, "the node follows the origin's first stream");
    shoal_event_destroy (&event);
    event = s_recv_from (node, fill_b, S_WAIT_MS);
    ok (event != NULL, "and its second");
    shoal_event_destroy (&event);
    zclock_sleep (1000);
    //  Then a third stream: its head is refused.
    shoal_from_t now = {.kind = SHOAL_FROM_NOW};
    int first = shoal_node_subscribe (node, "orders", NULL, &now);
    node_util_stats (node); //  the subscription is made before the stream exists
    s_publish (origin, "orders", 1, 10);
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    while (node_util_stats (node).origins_refused == 0 && zclock_mono () < deadline)
        zclock_sleep (50);
    ok (node_util_stats (node).origins_refused > 0,
        "max_origins 2: the head of a third (origin, stream) is not remembered (%" PRIu64 ")",
        node_util_stats (node).origins_refused);
    //  Events before the second subscription: the first one sees them.
    uint64_t before = s_publish (origin, "orders", 3, 10);
    uint64_t seen = 0;
    while (seen < before && (event = s_recv_from (node, first, S_WAIT_MS))) {
        seen = shoal_event_seq (event);
        shoal_event_destroy (&event);
    }
    ok (seen == before, "the first subscription from now gets the events up to seq %" PRIu64,
        before);
    int second = shoal_node_subscribe (node, "orders", NULL, &now);
    //  Its start must be behind it before the next events are stamped:
    //  a Status round trip through the engine orders the two.
    node_util_stats (node);
    uint64_t last = s_publish (origin, "orders", 3, 10);
    uint64_t expect = before + 1;
    bool in_order = true;
    while (expect <= last && (event = s_recv_from (node, second, S_WAIT_MS))) {
        in_order &= shoal_event_seq (event) == expect;
        expect = shoal_event_seq (event) + 1;
        shoal_event_destroy (&event);
    }
    ok (in_order && expect == last + 1,
        "a later subscription from now, placed by time, gets seqs %" PRIu64 " to %" PRIu64
        " and nothing before (next was %" PRIu64 ")",
        before + 1, last, expect);
    event = s_recv_from (node, second, 500);
    ok (event == NULL, "and nothing more");
    shoal_event_destroy (&event);
    shoal_node_unsubscribe (node, second);
    shoal_node_unsubscribe (node, first);
    shoal_node_unsubscribe (node, fill_b);
    shoal_node_unsubscribe (node, fill_a);
    shoal_node_destroy (&node);
    shoal_node_destroy (&origin);
}

static void
s_small_reorder (shoal_node_config_t *config)
{
    config->reorder_limit = 8;
}

//  Subscribes subscriber (room 8, inbox 8) to "backlog" from the beginning
//  and waits until its seek, cut short by the room, is parked.
static int
s_subscribe_parked (shoal_node_t *subscriber)
{
    shoal_from_t from = {.kind = SHOAL_FROM_BEGINNING};
    int sub = shoal_node_subscribe (subscriber, "backlog", NULL, &from);
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    while (zclock_mono () < deadline) {
        shoal_node_stats_t stats = node_util_stats (subscriber);
        if (stats.delivered >= 16 && stats.repairs_in_flight == 0 && stats.repairs_parked == 1)
            break;
        zclock_sleep (20);
    }
    return sub;
}

//  An origin with count events of stream backlog, and a subscriber (room
//  8, inbox 8) from the beginning that nobody reads: its seek brings 8,
//  which the inbox takes; a Credit brings 8 more, and then, with no room
//  left, the seek waits at the origin for the next Credit. Returns the
//  subscription once it is so.
static int
s_parked_seek (const char *name, uint64_t count, shoal_node_t **origin_p,
               shoal_node_t **subscriber_p)
{
    char origin_name[64], subscriber_name[64];
    snprintf (origin_name, sizeof origin_name, "%s-origin", name);
    snprintf (subscriber_name, sizeof subscriber_name, "%s-sub", name);
    *origin_p = s_node (origin_name, NULL, 0, NULL);
    s_publish (*origin_p, "backlog", count, 10);
    const char *peers[] = {shoal_node_router_endpoint (*origin_p)};
    *subscriber_p = s_node (subscriber_name, peers, 1, s_small_reorder);
    return s_subscribe_parked (*subscriber_p);
}

static void
test_reorder_limit (void)
{
    //  Live events only once the seek is parked, so that none takes room
    //  from its first batch.
    shoal_node_t *origin, *subscriber;
    int sub = s_parked_seek ("reorder", 60, &origin, &subscriber);
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    is_int (
        (int) node_util_stats (subscriber).repairs_parked, 1,
        "reorder_limit: the seek's credit ran out at the room: it is parked, awaiting a Credit");
    uint64_t resumed = node_util_stats (subscriber).repairs_resumed;
    //  The rest of what arrives is dropped for room (to be fetched again).
    while (node_util_stats (subscriber).events_deferred == 0 && zclock_mono () < deadline) {
        s_publish (origin, "backlog", 1, 10);
        zclock_sleep (50);
    }
    uint64_t deferred = node_util_stats (subscriber).events_deferred;
    ok (deferred > 0, "reorder_limit: events beyond the room are dropped and counted (%llu)",
        (unsigned long long) deferred);
    uint64_t head = s_publish (origin, "backlog", 1, 10);
    //  Its live copy is dropped too before anyone reads: no live event
    //  then takes room from a batch of the repairs that follow.
    while (node_util_stats (subscriber).events_deferred == deferred && zclock_mono () < deadline)
        zclock_sleep (20);
    uint64_t expect = 1, most_in_flight = 0;
    int wrong = 0;
    deadline = zclock_mono () + 3 * S_WAIT_MS;
    while (expect <= head && zclock_mono () < deadline) {
        uint64_t in_flight = node_util_stats (subscriber).repairs_in_flight;
        if (in_flight > most_in_flight)
            most_in_flight = in_flight;
        shoal_event_t *event = shoal_node_recv (subscriber, 200, NULL);
        if (!event)
            continue;
        if (shoal_event_seq (event) != expect)
            wrong++;
        expect = shoal_event_seq (event) + 1;
        shoal_event_destroy (&event);
    }
    ok (expect == head + 1 && wrong == 0,
        "every event still arrives once and in order (%llu of %llu, %d out of order)",
        (unsigned long long) (expect - 1), (unsigned long long) head, wrong);
    ok (most_in_flight > 0, "repairs_in_flight counts the repairs while they run (%llu at most)",
        (unsigned long long) most_in_flight);
    //  Each repair asked for at most 8 events (the room): one whose credit
    //  is spent is over, and the subscriber awaits nothing more of it.
    uint64_t gaps = node_util_stats (subscriber).gaps_detected;
    deadline = zclock_mono () + S_WAIT_MS;
    while (node_util_stats (subscriber).repairs_in_flight > 0 && zclock_mono () < deadline)
        zclock_sleep (50);
    is_int ((int) node_util_stats (subscriber).repairs_in_flight, 0,
            "no repair is left awaited once everything arrived (%llu gaps repaired)",
            (unsigned long long) gaps);
    //  Nor served: a repair of a range of seqs asks no more than its
    //  credit, so its replay ends with its last batch. The first seek,
    //  from the beginning by time, cannot be bounded so: its credit (8)
    //  runs out short of its end, and a Credit continues it, rather than
    //  leave it waiting at the origin, served by nobody, until the idle
    //  timeout (30 s).
    while (node_util_stats (origin).replay_sessions > 0 && zclock_mono () < deadline)
        zclock_sleep (50);
    is_int ((int) node_util_stats (origin).replay_sessions, 0,
            "and the origin holds no replay session for them (%llu served)",
            (unsigned long long) node_util_stats (origin).replays_served);
    is_int ((int) node_util_stats (subscriber).repairs_parked, 0,
            "nor is one parked at the subscriber");
    ok (node_util_stats (subscriber).repairs_resumed > resumed,
        "the seek whose credit ran out was continued with Credits (%llu more), not left waiting",
        (unsigned long long) (node_util_stats (subscriber).repairs_resumed - resumed));
    shoal_node_unsubscribe (subscriber, sub);
    shoal_node_destroy (&subscriber);
    shoal_node_destroy (&origin);
}

//  A subscription that goes away with a replay parked for it forgets it.
static void
test_unsubscribe_parked (void)
{
    shoal_node_t *origin, *subscriber;
    int sub = s_parked_seek ("parked", 30, &origin, &subscriber);
    is_int ((int) node_util_stats (subscriber).repairs_parked, 1,
            "a seek cut short by the room is parked while nobody reads");
    shoal_node_unsubscribe (subscriber, sub);
    is_int ((int) node_util_stats (subscriber).repairs_parked, 0, "unsubscribing forgets it");
    shoal_node_destroy (&subscriber);
    shoal_node_destroy (&origin);
}

static void
s_replicate_backlog (shoal_node_config_t *config)
{
    static const char *backlog[] = {"backlog"};
    config->replicate = backlog;
    config->replicate_count = 1;
}

//  Promise 5 under a seek cut short: the origin is gone, so its replica
//  serves the seek; when the room runs out the seek is parked there, and
//  the Credits that continue it go to the replica, the peer that holds
//  it, not to the origin the events are of.
static void
test_replica_seek_resumed (void)
{
    shoal_node_t *origin = s_node ("rseek-origin", NULL, 0, NULL);
    const char *seed[] = {shoal_node_router_endpoint (origin)};
    shoal_node_t *replica = s_node ("rseek-replica", seed, 1, s_replicate_backlog);
    zsock_t *client = node_util_client (replica, 2000);
    uint64_t head = s_publish (origin, "backlog", 40, 10);
    ok (node_util_wait_log_head (client, NULL, "backlog", head, S_WAIT_MS) == head,
        "replica seek: the replica holds the origin's %llu events", (unsigned long long) head);
    zsock_destroy (&client);
    shoal_node_destroy (&origin);

    const char *peers[] = {shoal_node_router_endpoint (replica)};
    shoal_node_t *subscriber = s_node ("rseek-sub", peers, 1, s_small_reorder);
    int sub = s_subscribe_parked (subscriber);
    is_int ((int) node_util_stats (subscriber).repairs_parked, 1,
            "replica seek: the seek the replica serves is parked when the room runs out");
    is_int ((int) node_util_stats (replica).replay_sessions, 1,
            "replica seek: and the replica holds it, awaiting a Credit");
    uint64_t resumed = node_util_stats (subscriber).repairs_resumed;
    uint64_t expect = 1;
    int wrong = 0;
    int64_t deadline = zclock_mono () + 3 * S_WAIT_MS;
    while (expect <= head && zclock_mono () < deadline) {
        shoal_event_t *event = shoal_node_recv (subscriber, 200, NULL);
        if (!event)
            continue;
        if (shoal_event_seq (event) != expect)
            wrong++;
        expect = shoal_event_seq (event) + 1;
        shoal_event_destroy (&event);
    }
    ok (expect == head + 1 && wrong == 0,
        "replica seek: the dead origin's events all arrive once and in order (%llu of %llu, %d "
        "out of order)",
        (unsigned long long) (expect - 1), (unsigned long long) head, wrong);
    ok (node_util_stats (subscriber).repairs_resumed > resumed,
        "replica seek: the replica's seek was continued with Credits (%llu)",
        (unsigned long long) (node_util_stats (subscriber).repairs_resumed - resumed));
    deadline = zclock_mono () + S_WAIT_MS;
    while (node_util_stats (replica).replay_sessions > 0 && zclock_mono () < deadline)
        zclock_sleep (50);
    is_int ((int) node_util_stats (replica).replay_sessions, 0,
            "replica seek: the replica holds no replay session once all arrived");
    shoal_node_unsubscribe (subscriber, sub);
    shoal_node_destroy (&subscriber);
    shoal_node_destroy (&replica);
}

static void
s_few_logs (shoal_node_config_t *config)
{
    config->max_logs = 2;
    config->max_consumers = 1;
    config->max_consumer_cursors = 2;
}

//  A thin client's publish to stream; returns the response body case, or
//  Error code + 100 for an Error, -1 when nothing came.
static int
s_thin_publish (zsock_t *client, uint64_t request_id, const char *stream)
{
    Shoal__V1__Event event = SHOAL__V1__EVENT__INIT;
    event.stream = (char *) stream;
    event.type = "Tick";
    Shoal__V1__PublishRequest publish;
    Shoal__V1__Request request;
    node_util_publish_request (&request, &publish, &event, request_id);
    node_util_send (client, &request);
    Shoal__V1__Response *response = node_util_recv (client);
    if (!response)
        return -1;
    int result = response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR
                     ? 100 + (int) response->error->code
                     : (int) response->body_case;
    shoal__v1__response__free_unpacked (response, NULL);
    return result;
}

//  A thin client's ConsumerRequest ack of cursors on streams[0..count).
static int
s_thin_ack (zsock_t *client, const char *consumer, const uint8_t *origin,
            const char *const *streams, size_t count)
{
    Shoal__V1__LogHead heads[4];
    Shoal__V1__LogHead *pointers[4];
    for (size_t i = 0; i < count; i++) {
        Shoal__V1__LogHead init = SHOAL__V1__LOG_HEAD__INIT;
        heads[i] = init;
        heads[i].origin.data = (uint8_t *) origin;
        heads[i].origin.len = SHOAL_ID_SIZE;
        heads[i].stream = (char *) streams[i];
        heads[i].head_seq = 1;
        pointers[i] = &heads[i];
    }
    Shoal__V1__ConsumerRequest ack = SHOAL__V1__CONSUMER_REQUEST__INIT;
    ack.name = (char *) consumer;
    ack.op = "ack";
    ack.n_cursors = count;
    ack.cursors = pointers;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = 50;
    request.body_case = SHOAL__V1__REQUEST__BODY_CONSUMER;
    request.consumer = &ack;
    node_util_send (client, &request);
    return s_error_code (client, NULL, 0);
}

static void
test_store_limits (void)
{
    shoal_node_t *node = s_node ("store", NULL, 0, s_few_logs);
    zsock_t *client = node_util_client (node, S_WAIT_MS);
    int ack = SHOAL__V1__RESPONSE__BODY_PUBLISH_ACK;
    ok (s_thin_publish (client, 1, "one") == ack && s_thin_publish (client, 2, "two") == ack,
        "a thin client creates two streams");
    is_int (s_thin_publish (client, 3, "three"), 100 + SHOAL_WIRE_BUSY,
            "max_logs: a third new stream gets Error 7");
    is_int (node_util_stats (node).logs_refused, 1, "logs_refused counts it");
    is_int (s_thin_publish (client, 4, "one"), ack,
            "publishing to a stream that exists still works");

    const uint8_t *id = shoal_node_id (node);
    const char *streams[] = {"one", "two", "three"};
    //  The node's own durable consumer "billing" exists before any cursor
    //  of it does: the store is at max_consumers, yet billing is no newcomer.
    shoal_node_subscribe_durable (node, "billing", "one", NULL);
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    bool known = false;
    while (!known && zclock_mono () < deadline) {
        char **names = shoal_node_consumers (node);
        known = names && names[0] && streq (names[0], "billing");
        shoal_node_consumers_free (&names);
        if (!known)
            zclock_sleep (20);
    }
    ok (known, "the node's durable consumer billing exists, with no cursor yet");
    is_int (s_thin_ack (client, "billing", id, streams, 2), 0,
            "a thin client's acknowledgements for that existing consumer are taken");
    is_int (s_thin_ack (client, "audit", id, streams, 1), SHOAL_WIRE_BUSY,
            "max_consumers: a second consumer gets Error 7");
    is_int (s_thin_ack (client, "billing", id, streams + 2, 1), SHOAL_WIRE_BUSY,
            "max_consumer_cursors: a third cursor of one consumer gets Error 7");
    is_int (s_thin_ack (client, "billing", id, streams, 2), 0,
            "acknowledging the cursors it has still works");
    char **names = shoal_node_consumers (node);
    ok (names && names[0] && streq (names[0], "billing") && !names[1],
        "only the first consumer exists");
    shoal_node_consumers_free (&names);
    zsock_destroy (&client);
    shoal_node_destroy (&node);
}

static void
s_replicate_two_logs (shoal_node_config_t *config)
{
    static const char *all[] = {"all"};
    config->replicate = all;
    config->replicate_count = 1;
    config->max_logs = 2;
}

//  A node that replicates "all" with room for two logs: two origins of a
//  stream fill it. A third origin of that stream and a new stream are not
//  replicated, and each counts once in logs_refused, though heartbeats
//  ask for the new stream again and again and the third origin's events
//  keep coming.
static void
test_replica_limits (void)
{
    shoal_node_t *origins[3];
    const char *endpoints[3];
    const char *names[] = {"replica-a", "replica-b", "replica-c"};
    for (int i = 0; i < 3; i++) {
        origins[i] = s_node (names[i], NULL, 0, NULL);
        endpoints[i] = shoal_node_router_endpoint (origins[i]);
    }
    shoal_node_t *replica = s_node ("replica", endpoints, 3, s_replicate_two_logs);
    zsock_t *client = node_util_client (replica, S_WAIT_MS);
    s_publish (origins[0], "shared", 10, 10);
    is_int ((long long) node_util_wait_log_head (client, shoal_node_id (origins[0]), "shared", 10,
                                                 S_WAIT_MS),
            10, "max_logs (replicas): the first origin of a stream is replicated");
    s_publish (origins[1], "shared", 10, 10);
    is_int ((long long) node_util_wait_log_head (client, shoal_node_id (origins[1]), "shared", 10,
                                                 S_WAIT_MS),
            10, "max_logs (replicas): the second origin fills the store");
    s_publish (origins[2], "shared", 10, 10);
    s_publish (origins[0], "extra", 5, 10);
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    while (node_util_stats (replica).logs_refused < 2 && zclock_mono () < deadline)
        zclock_sleep (50);
    //  Seven heartbeat intervals more: the new stream is asked for at each.
    zclock_sleep (7 * 200);
    s_publish (origins[2], "shared", 5, 10);
    zclock_sleep (400);
    uint64_t refused = node_util_stats (replica).logs_refused;
    ok (refused == 2,
        "max_logs (replicas): a third origin and a new stream count once each (%" PRIu64 ")",
        refused);
    uint64_t head = 0;
    size_t logs = node_util_log_head (client, shoal_node_id (origins[2]), "shared", &head);
    ok (logs == 2 && head == 0,
        "max_logs (replicas): the node holds two logs, none of the third origin (%zu logs)", logs);
    node_util_log_head (client, shoal_node_id (origins[0]), "extra", &head);
    is_int ((long long) head, 0, "max_logs (replicas): the new stream is not replicated");
    s_publish (origins[0], "shared", 5, 10);
    is_int ((long long) node_util_wait_log_head (client, shoal_node_id (origins[0]), "shared", 15,
                                                 S_WAIT_MS),
            15, "max_logs (replicas): the replicas it holds still follow their origins");
    zsock_destroy (&client);
    shoal_node_destroy (&replica);
    //  Started again on its store, it is at the limit from the start.
    replica = s_node ("replica", endpoints, 3, s_replicate_two_logs);
    client = node_util_client (replica, S_WAIT_MS);
    s_publish (origins[1], "shared", 5, 10);
    is_int ((long long) node_util_wait_log_head (client, shoal_node_id (origins[1]), "shared", 15,
                                                 S_WAIT_MS),
            15, "max_logs (replicas): restarted at the limit, it follows the replicas it holds");
    zsock_destroy (&client);
    shoal_node_destroy (&replica);
    for (int i = 0; i < 3; i++)
        shoal_node_destroy (&origins[i]);
}

static void
s_small_window (shoal_node_config_t *config)
{
    config->dedupe_window = 3;
}

//  A thin client's publish of an event with id byte `id`; the ack's seq,
//  with *duplicate set, or 0 when no ack came.
static uint64_t
s_publish_id (zsock_t *client, uint8_t id, bool *duplicate)
{
    uint8_t event_id[SHOAL_ID_SIZE] = {0};
    event_id[0] = id;
    Shoal__V1__Event event = SHOAL__V1__EVENT__INIT;
    event.stream = "window";
    event.type = "Tick";
    event.id.data = event_id;
    event.id.len = sizeof event_id;
    Shoal__V1__PublishRequest publish;
    Shoal__V1__Request request;
    node_util_publish_request (&request, &publish, &event, 70 + id);
    node_util_send (client, &request);
    Shoal__V1__Response *response = node_util_recv (client);
    uint64_t seq = 0;
    *duplicate = false;
    if (response && response->body_case == SHOAL__V1__RESPONSE__BODY_PUBLISH_ACK) {
        seq = response->publish_ack->seq;
        *duplicate = response->publish_ack->duplicate;
    }
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
    return seq;
}

//  A window of three ids: a repeat within it gets the first ack back; once
//  three newer ids are recorded, the same id is recorded again.
static void
test_dedupe_window (void)
{
    shoal_node_t *node = s_node ("window", NULL, 0, s_small_window);
    zsock_t *client = node_util_client (node, S_WAIT_MS);
    bool duplicate = false;
    ok (s_publish_id (client, 1, &duplicate) == 1 && !duplicate, "dedupe_window: event 1 is seq 1");
    ok (s_publish_id (client, 1, &duplicate) == 1 && duplicate,
        "dedupe_window: its repeat gets seq 1 back, duplicate");
    for (uint8_t id = 2; id <= 4; id++)
        s_publish_id (client, id, &duplicate);
    ok (s_publish_id (client, 4, &duplicate) == 4 && duplicate,
        "dedupe_window: the newest id is still remembered");
    uint64_t seq = s_publish_id (client, 1, &duplicate);
    ok (seq == 5 && !duplicate,
        "dedupe_window: three ids later, event 1 is recorded again as seq %" PRIu64, seq);
    zsock_destroy (&client);
    shoal_node_destroy (&node);
}

int
main (void)
{
    zsys_init ();
    zsys_set_linger (0);
    plan_lazy ();
    test_event_size ();
    test_live_event_size ();
    test_big_own_events ();
    test_replay_sessions ();
    test_unsubscribe_parked ();
    test_replica_seek_resumed ();
    test_replay_batches ();
    test_max_peers ();
    test_max_origins ();
    test_heads_fallback ();
    test_reorder_limit ();
    test_store_limits ();
    test_replica_limits ();
    test_dedupe_window ();
    return done_testing ();
}
