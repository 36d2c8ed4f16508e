/*  test_node - several nodes in one process: discovery by static peers,
    peer exchange and the loopback beacon, live pub/sub, replay, gap
    repair under drops, late joiners, resuming subscribers, and the
    ROUTER contract under bad input. Loopback only. */

#include "shoal.h"
#include "shoal.pb-c.h"
#include "node_util.h"
#include "tap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

//  A node with its own data directory under the test's temp dir.
static shoal_node_t *
s_node (const char *name, const char *const *peers, size_t peer_count,
        void (*tune) (shoal_node_config_t *))
{
    shoal_node_config_t config;
    node_util_config (&config, "test-node", name);
    config.peers = peers;
    config.peer_count = peer_count;
    if (tune)
        tune (&config);
    return node_util_new (&config);
}

static uint64_t
s_publish (shoal_node_t *node, const char *stream, const char *type, int index)
{
    shoal_event_t *event = shoal_event_new ();
    shoal_event_set_stream (event, stream);
    shoal_event_set_type (event, type);
    char payload[100];
    memset (payload, 'x', sizeof payload);
    int length = snprintf (payload, sizeof payload, "event %d", index);
    payload[length] = ' ';
    shoal_event_set_payload (event, payload, sizeof payload);
    uint64_t seq = 0;
    int error = 0;
    if (shoal_node_publish (node, event, &seq, &error))
        diag ("publish failed: %s", shoal_strerror (error));
    shoal_event_destroy (&event);
    return seq;
}

//  Waits until peer counts say every node sees `want` connected peers.
static bool
s_wait_peers (shoal_node_t **nodes, size_t count, uint64_t want, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        bool all = true;
        for (size_t i = 0; i < count && all; i++) {
            shoal_node_stats_t stats;
            all = shoal_node_stats (nodes[i], &stats) == 0 && stats.peers >= want;
        }
        if (all)
            return true;
        zclock_sleep (20);
    }
    return false;
}

//  Receives up to `count` events of one subscription within timeout_ms and
//  checks they are seqs first..first+count-1 of origin, in order, once.
typedef struct {
    int received;      //  events received
    int out_of_order;  //  events not at the expected seq
    uint64_t last_seq; //  last seq received
} s_tally_t;

static s_tally_t
s_receive (shoal_node_t *node, int subscription, const uint8_t *origin, uint64_t first, int count,
           int timeout_ms)
{
    s_tally_t tally = {0, 0, 0};
    uint64_t expect = first;
    int64_t deadline = zclock_mono () + timeout_ms;
    while (tally.received < count && zclock_mono () < deadline) {
        int sub = 0;
        shoal_event_t *event = shoal_node_recv (node, 100, &sub);
        if (!event)
            continue;
        if (sub == subscription && memcmp (shoal_event_origin (event), origin, 16) == 0) {
            if (shoal_event_seq (event) != expect)
                tally.out_of_order++;
            expect = shoal_event_seq (event) + 1;
            tally.last_seq = shoal_event_seq (event);
            tally.received++;
        }
        shoal_event_destroy (&event);
    }
    return tally;
}

static void
s_tiny_hwm (shoal_node_config_t *config)
{
    config->sndhwm = 50;
    config->rcvhwm = 50;
    config->reorder_limit = 200;
}

static void
test_static_peers_and_pubsub (void)
{
    shoal_node_t *a = s_node ("a", NULL, 0, NULL);
    const char *seed[] = {shoal_node_router_endpoint (a)};
    shoal_node_t *b = s_node ("b", seed, 1, NULL);
    shoal_node_t *pair[] = {a, b};
    ok (s_wait_peers (pair, 2, 1, 5000), "static peer: both nodes see each other");

    shoal_from_t beginning = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    int sub = shoal_node_subscribe (b, "orders", NULL, &beginning);
    ok (sub > 0, "subscribe returns an id");
    int local = shoal_node_subscribe (a, "orders", NULL, &beginning);
    uint64_t last = 0;
    for (int i = 0; i < 1000; i++)
        last = s_publish (a, "orders", "OrderPlaced", i);
    is_int (last, 1000, "publish returns seqs 1..1000 at once");
    ok (shoal_node_wait_durable (a, "orders", last, 5000) == 0, "wait_durable returns");
    s_tally_t tally = s_receive (b, sub, shoal_node_id (a), 1, 1000, 10000);
    is_int (tally.received, 1000, "remote subscriber gets all 1000 events");
    is_int (tally.out_of_order, 0, "in seq order, no gap, no duplicate");
    tally = s_receive (a, local, shoal_node_id (a), 1, 1000, 10000);
    is_int (tally.received, 1000, "local subscriber gets the node's own events");
    is_int (tally.out_of_order, 0, "local delivery is in order");

    //  A late joiner from the beginning gets the whole history.
    shoal_node_t *c = s_node ("c", seed, 1, NULL);
    int late = shoal_node_subscribe (c, "orders", NULL, &beginning);
    tally = s_receive (c, late, shoal_node_id (a), 1, 1000, 10000);
    is_int (tally.received, 1000, "late joiner gets the history by replay");
    is_int (tally.out_of_order, 0, "late joiner: in order");
    shoal_node_stats_t stats = node_util_stats (a);
    ok (stats.replays_served > 0 && stats.events_served >= 1000, "origin served the replay");
    is_int (stats.published, 1000, "origin counted 1000 published");

    //  Peer exchange: c knew only a, and learns b from a's Hello.
    shoal_node_t *trio[] = {a, b, c};
    ok (s_wait_peers (trio, 3, 2, 5000), "peer exchange: one seed reaches the whole mesh");

    //  "now": only events after the subscription.
    int now = shoal_node_subscribe (b, "orders", NULL, NULL);
    zclock_sleep (300);
    for (int i = 0; i < 10; i++)
        s_publish (a, "orders", "OrderShipped", i);
    tally = s_receive (b, now, shoal_node_id (a), 1001, 10, 5000);
    is_int (tally.received, 10, "from now: exactly the 10 events after subscribing");
    is_int (tally.out_of_order, 0, "from now: starts at seq 1001");

    //  Type filter.
    int filtered = shoal_node_subscribe (c, "orders", "OrderShipped", &beginning);
    s_tally_t shipped = {0, 0, 0};
    int64_t deadline = zclock_mono () + 5000;
    while (shipped.received < 10 && zclock_mono () < deadline) {
        int id = 0;
        shoal_event_t *event = shoal_node_recv (c, 100, &id);
        if (event && id == filtered) {
            shipped.received++;
            if (strcmp (shoal_event_type (event), "OrderShipped") != 0)
                shipped.out_of_order++;
        }
        shoal_event_destroy (&event);
    }
    is_int (shipped.received, 10, "type filter: the 10 matching events arrive");
    is_int (shipped.out_of_order, 0, "type filter: nothing else");

    //  A subscriber restarted mid-stream resumes with no gap and no duplicate.
    shoal_node_unsubscribe (b, sub);
    uint64_t resume = 501;
    const uint8_t (*origins)[16] = (const uint8_t (*)[16]) shoal_node_id (a);
    shoal_from_t from = {SHOAL_FROM_SEQ, 1, 0, origins, &resume, 1};
    int again = shoal_node_subscribe (b, "orders", NULL, &from);
    tally = s_receive (b, again, shoal_node_id (a), 501, 510, 10000);
    is_int (tally.received, 510, "resumed subscriber gets 501..1010");
    is_int (tally.out_of_order, 0, "resumed: no gap, no duplicate");

    shoal_node_destroy (&c);
    shoal_node_destroy (&b);
    shoal_node_destroy (&a);
    ok (a == NULL && b == NULL, "destroy nulls the nodes");
}

static void
test_drops_are_repaired (void)
{
    shoal_node_t *a = s_node ("drop-a", NULL, 0, s_tiny_hwm);
    const char *seed[] = {shoal_node_router_endpoint (a)};
    shoal_node_t *b = s_node ("drop-b", seed, 1, s_tiny_hwm);
    shoal_node_t *pair[] = {a, b};
    s_wait_peers (pair, 2, 1, 5000);
    int sub = shoal_node_subscribe (b, "sensors", NULL, NULL);
    zclock_sleep (300);
    int total = 20000;
    for (int i = 0; i < total; i++)
        s_publish (a, "sensors", "Reading", i);
    //  A stalled consumer: nothing is read for a while, queues overflow.
    zclock_sleep (1000);
    s_tally_t tally = s_receive (b, sub, shoal_node_id (a), 1, total, 30000);
    is_int (tally.received, total, "every event arrives although the live stream dropped");
    is_int (tally.out_of_order, 0, "in order, no gap, no duplicate");
    shoal_node_stats_t stats = node_util_stats (b);
    diag ("gaps %" PRIu64 ", repaired %" PRIu64 ", duplicates %" PRIu64, stats.gaps_detected,
          stats.events_repaired, stats.duplicates_dropped);
    ok (stats.events_repaired > 0, "some events came by repair (%" PRIu64 ")",
        stats.events_repaired);
    ok (stats.gaps_detected > 0, "gaps were detected");
    shoal_node_destroy (&b);
    shoal_node_destroy (&a);
}

//  One request on a DEALER, one response back (or NULL after 2 s).
static Shoal__V1__Response *
s_call (zsock_t *dealer, const void *data, size_t size)
{
    zmq_send (zsock_resolve (dealer), data, size, 0);
    zpoller_t *poller = zpoller_new (dealer, NULL);
    Shoal__V1__Response *response = NULL;
    if (zpoller_wait (poller, 2000)) {
        zframe_t *frame = zframe_recv (dealer);
        if (frame)
            response = shoal__v1__response__unpack (NULL, zframe_size (frame), zframe_data (frame));
        zframe_destroy (&frame);
    }
    zpoller_destroy (&poller);
    return response;
}

static Shoal__V1__Response *
s_call_request (zsock_t *dealer, Shoal__V1__Request *request)
{
    size_t size = shoal__v1__request__get_packed_size (request);
    uint8_t *data = malloc (size + 1);
    shoal__v1__request__pack (request, data);
    Shoal__V1__Response *response = s_call (dealer, data, size);
    free (data);
    return response;
}

static uint32_t
s_error_code (Shoal__V1__Response *response)
{
    uint32_t code = response && response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR
                        ? response->error->code
                        : 0;
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
    return code;
}

static uint32_t
s_replay_error (zsock_t *dealer, const uint8_t *origin, size_t origin_size, const char *stream,
                uint64_t from, uint64_t to)
{
    Shoal__V1__ReplayRequest replay = SHOAL__V1__REPLAY_REQUEST__INIT;
    replay.origin.data = (uint8_t *) origin;
    replay.origin.len = origin_size;
    replay.stream = (char *) stream;
    replay.from_seq = from;
    replay.to_seq = to;
    replay.credit = 100;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = 77;
    request.body_case = SHOAL__V1__REQUEST__BODY_REPLAY;
    request.replay = &replay;
    return s_error_code (s_call_request (dealer, &request));
}

static Shoal__V1__Response *
s_thin_publish (zsock_t *dealer, const char *stream, const char *type, const uint8_t *id,
                size_t payload_size)
{
    Shoal__V1__Event event = SHOAL__V1__EVENT__INIT;
    event.stream = (char *) stream;
    event.type = (char *) type;
    if (id) {
        event.id.data = (uint8_t *) id;
        event.id.len = 16;
    }
    uint8_t *payload = calloc (1, payload_size + 1);
    event.payload.data = payload;
    event.payload.len = payload_size;
    Shoal__V1__PublishRequest publish;
    Shoal__V1__Request request;
    node_util_publish_request (&request, &publish, &event, 5);
    publish.wait_durable = 1;
    Shoal__V1__Response *response = s_call_request (dealer, &request);
    free (payload);
    return response;
}

static void
test_router_contract (void)
{
    shoal_node_t *a = s_node ("router-a", NULL, 0, NULL);
    for (int i = 0; i < 20; i++)
        s_publish (a, "orders", "OrderPlaced", i);
    shoal_node_wait_durable (a, "orders", 20, 5000);
    zsock_t *dealer = zsock_new_dealer (shoal_node_router_endpoint (a));
    zsock_set_rcvtimeo (dealer, 2000);

    is_int (s_error_code (s_call (dealer, "\xff\xff\xff", 3)), 1, "garbage bytes: Error 1");
    Shoal__V1__Request empty = SHOAL__V1__REQUEST__INIT;
    empty.request_id = 9;
    is_int (s_error_code (s_call_request (dealer, &empty)), 1, "request with no body: Error 1");
    uint8_t unknown[16] = {1};
    is_int (s_replay_error (dealer, unknown, 16, "orders", 1, 0), 2,
            "replay of an unknown origin: Error 2");
    is_int (s_replay_error (dealer, shoal_node_id (a), 16, "nosuch", 1, 0), 2,
            "replay of an unknown stream: Error 2");
    is_int (s_replay_error (dealer, shoal_node_id (a), 16, "orders", 22, 0), 3,
            "replay from beyond head + 1: Error 3");
    is_int (s_replay_error (dealer, shoal_node_id (a), 16, "orders", 10, 5), 1,
            "replay with to < from: Error 1");
    is_int (s_replay_error (dealer, shoal_node_id (a), 15, "orders", 1, 0), 1,
            "replay with a 15-byte origin: Error 1");
    is_int (s_replay_error (dealer, shoal_node_id (a), 16, "Bad Name", 1, 0), 1,
            "replay of an invalid stream name: Error 1");
    is_int (s_error_code (s_thin_publish (dealer, "orders", "Big", NULL, (1 << 20) + 100000)), 4,
            "publish of an event over the maximum size: Error 4");
    is_int (s_error_code (s_thin_publish (dealer, "Bad/Stream", "T", NULL, 1)), 1,
            "publish to an invalid stream name: Error 1");
    is_int (s_error_code (s_thin_publish (dealer, "orders", "", NULL, 1)), 1,
            "publish with no type: Error 1");
    {
        //  A key with an embedded NUL: protobuf-c's unpack would cut it to
        //  "a"; the node must see the client's bytes and refuse them.
        Shoal__V1__Event event = SHOAL__V1__EVENT__INIT;
        event.stream = "nul";
        event.type = "T";
        event.key = "aZb";
        Shoal__V1__PublishRequest publish;
        Shoal__V1__Request request;
        node_util_publish_request (&request, &publish, &event, 6);
        size_t size = shoal__v1__request__get_packed_size (&request);
        uint8_t *data = malloc (size);
        shoal__v1__request__pack (&request, data);
        uint8_t *z = memchr (data, 'Z', size);
        if (z)
            *z = 0;
        is_int (s_error_code (s_call (dealer, data, size)),
                shoal_error_wire_code (SHOAL_ERR_BAD_UTF8),
                "publish of a key with an embedded NUL: refused, not cut short");
        free (data);
    }
    {
        //  The same PublishRequest twice in one Request: protobuf would
        //  merge the two events, a strict reader refuses to guess.
        Shoal__V1__Event event = SHOAL__V1__EVENT__INIT;
        event.stream = "orders";
        event.type = "T";
        Shoal__V1__PublishRequest publish;
        Shoal__V1__Request request;
        node_util_publish_request (&request, &publish, &event, 7);
        size_t size = shoal__v1__request__get_packed_size (&request);
        uint8_t *data = malloc (2 * size);
        shoal__v1__request__pack (&request, data);
        memcpy (data + size, data, size);
        is_int (s_error_code (s_call (dealer, data, 2 * size)), 1,
                "a Request whose PublishRequest comes twice: Error 1, not a merge");
        free (data);
    }
    {
        //  Two bodies: the one that comes last is the request, as protobuf
        //  has it. A Ping then a PublishRequest is a publish; the other way
        //  round, a ping.
        Shoal__V1__Event event = SHOAL__V1__EVENT__INIT;
        event.stream = "bodies";
        event.type = "T";
        Shoal__V1__PublishRequest publish;
        Shoal__V1__Request request;
        node_util_publish_request (&request, &publish, &event, 8);
        Shoal__V1__Ping ping_body = SHOAL__V1__PING__INIT;
        Shoal__V1__Request ping = SHOAL__V1__REQUEST__INIT;
        ping.request_id = 8;
        ping.body_case = SHOAL__V1__REQUEST__BODY_PING;
        ping.ping = &ping_body;
        size_t publish_size = shoal__v1__request__get_packed_size (&request);
        size_t ping_size = shoal__v1__request__get_packed_size (&ping);
        uint8_t *data = malloc (publish_size + ping_size);
        shoal__v1__request__pack (&ping, data);
        shoal__v1__request__pack (&request, data + ping_size);
        Shoal__V1__Response *response = s_call (dealer, data, publish_size + ping_size);
        ok (response && response->body_case == SHOAL__V1__RESPONSE__BODY_PUBLISH_ACK
                && response->request_id == 8,
            "a Ping then a PublishRequest in one Request: the publish is acknowledged");
        if (response)
            shoal__v1__response__free_unpacked (response, NULL);
        shoal__v1__request__pack (&request, data);
        shoal__v1__request__pack (&ping, data + publish_size);
        response = s_call (dealer, data, publish_size + ping_size);
        ok (response && response->body_case == SHOAL__V1__RESPONSE__BODY_PONG,
            "a PublishRequest then a Ping: Pong");
        if (response)
            shoal__v1__response__free_unpacked (response, NULL);
        free (data);
    }
    Shoal__V1__Hello hello = SHOAL__V1__HELLO__INIT;
    uint8_t node[16] = {9};
    hello.node.data = node;
    hello.node.len = 16;
    hello.mesh = "another-mesh";
    Shoal__V1__Request greet = SHOAL__V1__REQUEST__INIT;
    greet.request_id = 3;
    greet.body_case = SHOAL__V1__REQUEST__BODY_HELLO;
    greet.hello = &hello;
    is_int (s_error_code (s_call_request (dealer, &greet)), 5, "Hello from another mesh: Error 5");

    //  Two frames where one is expected.
    zsock_send (dealer, "ss", "one", "two");
    zframe_t *frame = zframe_recv (dealer);
    Shoal__V1__Response *response =
        frame ? shoal__v1__response__unpack (NULL, zframe_size (frame), zframe_data (frame)) : NULL;
    zframe_destroy (&frame);
    is_int (s_error_code (response), 1, "a two-frame request: Error 1");

    //  Thin-client publish: ack after durable; a repeated id is a duplicate.
    uint8_t id[16] = {0xAB, 0xCD};
    response = s_thin_publish (dealer, "orders", "OrderPlaced", id, 10);
    ok (response && response->body_case == SHOAL__V1__RESPONSE__BODY_PUBLISH_ACK
            && response->publish_ack->seq == 21 && !response->publish_ack->duplicate,
        "thin-client publish is acknowledged with seq 21");
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
    response = s_thin_publish (dealer, "orders", "OrderPlaced", id, 10);
    ok (response && response->body_case == SHOAL__V1__RESPONSE__BODY_PUBLISH_ACK
            && response->publish_ack->seq == 21 && response->publish_ack->duplicate,
        "the same id again: duplicate = true with the first seq");
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
    //  The facade continues after the thin client's seq.
    is_int (s_publish (a, "orders", "OrderPlaced", 99), 22, "facade publish continues at 22");

    Shoal__V1__Ping ping = SHOAL__V1__PING__INIT;
    Shoal__V1__Request pinging = SHOAL__V1__REQUEST__INIT;
    pinging.request_id = 11;
    pinging.body_case = SHOAL__V1__REQUEST__BODY_PING;
    pinging.ping = &ping;
    response = s_call_request (dealer, &pinging);
    ok (response && response->body_case == SHOAL__V1__RESPONSE__BODY_PONG
            && response->request_id == 11,
        "Ping: Pong echoing the request id");
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);

    Shoal__V1__StatusRequest status = SHOAL__V1__STATUS_REQUEST__INIT;
    Shoal__V1__Request asking = SHOAL__V1__REQUEST__INIT;
    asking.request_id = 12;
    asking.body_case = SHOAL__V1__REQUEST__BODY_STATUS;
    asking.status = &status;
    shoal_node_wait_durable (a, "orders", 22, 5000);
    response = s_call_request (dealer, &asking);
    bool has_log = false;
    uint64_t bad = 0;
    if (response && response->body_case == SHOAL__V1__RESPONSE__BODY_STATUS) {
        for (size_t i = 0; i < response->status->n_logs; i++)
            if (strcmp (response->status->logs[i]->stream, "orders") == 0
                && response->status->logs[i]->head_seq == 22)
                has_log = true;
        for (size_t i = 0; i < response->status->n_counters; i++)
            if (strcmp (response->status->counters[i]->key, "bad_requests") == 0)
                bad = response->status->counters[i]->value;
    }
    ok (has_log, "Status lists the orders log with head 22");
    ok (bad >= 12, "bad requests are counted (%" PRIu64 ")", bad);
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);

    //  Random bytes at the raw TCP level, to the ROUTER and PUB ports.
    srand (11);
    const char *targets[] = {shoal_node_router_endpoint (a), shoal_node_pub_endpoint (a)};
    for (int t = 0; t < 2; t++) {
        for (int round = 0; round < 20; round++) {
            zsock_t *raw = zsock_new (ZMQ_STREAM);
            zsock_connect (raw, "%s", targets[t]);
            uint8_t routing[256];
            size_t routing_size = 0;
            zmsg_t *hello_msg = zmsg_recv (raw); //  connect notification
            if (hello_msg) {
                zframe_t *first = zmsg_first (hello_msg);
                routing_size = zframe_size (first);
                memcpy (routing, zframe_data (first), routing_size);
                zmsg_destroy (&hello_msg);
                uint8_t junk[300];
                size_t size = 1 + (size_t) rand () % sizeof junk;
                for (size_t i = 0; i < size; i++)
                    junk[i] = (uint8_t) rand ();
                if (round % 2)
                    memcpy (junk, "\xff\0\0\0\0\0\0\0\1\x7f", size > 10 ? 10 : size);
                zmq_send (zsock_resolve (raw), routing, routing_size, ZMQ_SNDMORE);
                zmq_send (zsock_resolve (raw), junk, size, 0);
            }
            zsock_destroy (&raw);
        }
    }
    response = s_call_request (dealer, &pinging);
    ok (response && response->body_case == SHOAL__V1__RESPONSE__BODY_PONG,
        "after random bytes on ROUTER and PUB the node still answers");
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);

    //  Garbage on a PUB the node subscribes to: a fake peer says Hello
    //  with the port of a PUB of ours, then sends junk there.
    zsock_t *fake_pub = zsock_new (ZMQ_PUB);
    int fake_port = zsock_bind (fake_pub, "tcp://127.0.0.1:*");
    zsock_t *fake_router = zsock_new (ZMQ_ROUTER);
    int fake_router_port = zsock_bind (fake_router, "tcp://127.0.0.1:*");
    Shoal__V1__Hello fake = SHOAL__V1__HELLO__INIT;
    uint8_t fake_id[16] = {0xFA, 0xCE};
    fake.node.data = fake_id;
    fake.node.len = 16;
    fake.mesh = "test-node";
    fake.name = "fake";
    fake.pub_port = (uint32_t) fake_port;
    fake.router_port = (uint32_t) fake_router_port;
    greet.hello = &fake;
    response = s_call_request (dealer, &greet);
    ok (response && response->body_case == SHOAL__V1__RESPONSE__BODY_HELLO,
        "a peer's Hello is answered with Hello");
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
    int sub = shoal_node_subscribe (a, "orders", NULL, NULL);
    zclock_sleep (500);
    for (int i = 0; i < 50; i++) {
        uint8_t junk[64];
        for (size_t j = 0; j < sizeof junk; j++)
            junk[j] = (uint8_t) rand ();
        zsock_send (fake_pub, "sb", i % 2 ? "orders/" : "orders/Junk", junk, sizeof junk);
        zsock_send (fake_pub, "s", "orders/OneFrame");
    }
    zclock_sleep (300);
    response = s_call_request (dealer, &pinging);
    ok (response && response->body_case == SHOAL__V1__RESPONSE__BODY_PONG,
        "after junk on a subscribed PUB the node still answers");
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
    s_publish (a, "orders", "OrderPlaced", 1);
    s_tally_t tally = s_receive (a, sub, shoal_node_id (a), 23, 1, 5000);
    is_int (tally.received, 1, "and still delivers events");
    shoal_node_stats_t after = node_util_stats (a);
    ok (after.bad_requests >= bad + 50, "junk frames are counted as bad (%" PRIu64 ")",
        after.bad_requests);
    zsock_destroy (&fake_pub);
    zsock_destroy (&fake_router);
    zsock_destroy (&dealer);
    shoal_node_destroy (&a);
}

//  A fake origin for the tests of parked replays: a ROUTER that answers
//  Hello, and the first ReplayRequest (unless mute) with a batch of its
//  credit then a batch of nothing that moves no further; and remembers
//  what else it was sent.
typedef struct {
    zsock_t *router;      //  the fake's ROUTER
    zsock_t *pub;         //  its PUB
    zsock_t *dealer;      //  the client it greeted the node with
    uint8_t id[16];       //  its node id
    int pub_port;         //  its PUB's port
    int router_port;      //  its ROUTER's port
    bool mute;            //  answers no ReplayRequest
    uint64_t replay_id;   //  the request id of the first replay, 0 = none yet
    uint64_t last_replay; //  the request id of the last replay, 0 = none yet
    zframe_t *asker;      //  routing id of the node that asked it
    int replays;          //  ReplayRequests received
    uint64_t credit_for;  //  replay_id of the last Credit, 0 = none
} s_fake_t;

static void
s_fake_send (s_fake_t *fake, zframe_t *routing, Shoal__V1__Response *response)
{
    size_t size = shoal__v1__response__get_packed_size (response);
    uint8_t *data = malloc (size + 1);
    shoal__v1__response__pack (response, data);
    zframe_send (&routing, fake->router, ZFRAME_MORE | ZFRAME_REUSE);
    zmq_send (zsock_resolve (fake->router), data, size, 0);
    free (data);
}

//  Sends the asker, for replay request_id, a batch of the first credit
//  events (64 at most), then a batch of nothing, not done, that stops
//  where the first did (a server may end batches where it likes).
static void
s_fake_batch (s_fake_t *fake, uint64_t request_id, uint32_t credit)
{
    if (credit > 64)
        credit = 64;
    Shoal__V1__Event events[64], *pointers[64];
    char payload[64][16];
    for (uint32_t i = 0; i < credit; i++) {
        shoal__v1__event__init (&events[i]);
        events[i].origin.data = fake->id;
        events[i].origin.len = 16;
        events[i].stream = "faked";
        events[i].type = "Faked";
        events[i].seq = i + 1;
        events[i].time_ns = shoal_time_ns ();
        events[i].id.data = (uint8_t *) "0123456789abcdef";
        events[i].id.len = 16;
        snprintf (payload[i], sizeof payload[i], "p%u", i + 1);
        events[i].payload.data = (uint8_t *) payload[i];
        events[i].payload.len = strlen (payload[i]);
        pointers[i] = &events[i];
    }
    Shoal__V1__ReplayBatch batch = SHOAL__V1__REPLAY_BATCH__INIT;
    batch.n_events = credit;
    batch.events = pointers;
    batch.next_seq = credit + 1;
    batch.head_seq = 100;
    Shoal__V1__Response response = SHOAL__V1__RESPONSE__INIT;
    response.request_id = request_id;
    response.body_case = SHOAL__V1__RESPONSE__BODY_BATCH;
    response.batch = &batch;
    s_fake_send (fake, fake->asker, &response);
    batch.n_events = 0;
    s_fake_send (fake, fake->asker, &response);
}

static void
s_fake_serve (s_fake_t *fake, int timeout_ms)
{
    zpoller_t *poller = zpoller_new (fake->router, NULL);
    while (zpoller_wait (poller, timeout_ms)) {
        zmsg_t *msg = zmsg_recv (fake->router);
        zframe_t *routing = msg ? zmsg_pop (msg) : NULL;
        zframe_t *body = msg ? zmsg_first (msg) : NULL;
        Shoal__V1__Request *request =
            body ? shoal__v1__request__unpack (NULL, zframe_size (body), zframe_data (body)) : NULL;
        Shoal__V1__Response response = SHOAL__V1__RESPONSE__INIT;
        response.request_id = request ? request->request_id : 0;
        if (request && request->body_case == SHOAL__V1__REQUEST__BODY_HELLO) {
            Shoal__V1__Hello hello = SHOAL__V1__HELLO__INIT;
            hello.node.data = fake->id;
            hello.node.len = 16;
            hello.mesh = "test-node";
            hello.name = "fake-origin";
            hello.pub_port = (uint32_t) fake->pub_port;
            hello.router_port = (uint32_t) fake->router_port;
            response.body_case = SHOAL__V1__RESPONSE__BODY_HELLO;
            response.hello = &hello;
            s_fake_send (fake, routing, &response);
        }
        else if (request && request->body_case == SHOAL__V1__REQUEST__BODY_REPLAY) {
            fake->last_replay = request->request_id;
            if (fake->replays++ == 0)
                fake->replay_id = request->request_id;
            zframe_destroy (&fake->asker);
            fake->asker = zframe_dup (routing);
            if (fake->replays == 1 && !fake->mute)
                s_fake_batch (fake, request->request_id, request->replay->credit);
        }
        else if (request && request->body_case == SHOAL__V1__REQUEST__BODY_CREDIT)
            fake->credit_for = request->credit->replay_id;
        if (request)
            shoal__v1__request__free_unpacked (request, NULL);
        zframe_destroy (&routing);
        zmsg_destroy (&msg);
        timeout_ms = 50;
    }
    zpoller_destroy (&poller);
}

//  Starts fake, introduces it to node a (a Hello on a's ROUTER), and
//  subscribes a to the fake's stream "faked" from the beginning, telling
//  of its log (head 100) by heartbeats until its replay is asked; the
//  subscription.
static int
s_fake_start (s_fake_t *fake, shoal_node_t *a)
{
    fake->router = zsock_new (ZMQ_ROUTER);
    fake->router_port = zsock_bind (fake->router, "tcp://127.0.0.1:*");
    fake->pub = zsock_new (ZMQ_PUB);
    fake->pub_port = zsock_bind (fake->pub, "tcp://127.0.0.1:*");
    fake->dealer = node_util_client (a, 2000);
    Shoal__V1__Hello hello = SHOAL__V1__HELLO__INIT;
    hello.node.data = fake->id;
    hello.node.len = 16;
    hello.mesh = "test-node";
    hello.name = "fake-origin";
    hello.pub_port = (uint32_t) fake->pub_port;
    hello.router_port = (uint32_t) fake->router_port;
    Shoal__V1__Request greet = SHOAL__V1__REQUEST__INIT;
    greet.request_id = 1;
    greet.body_case = SHOAL__V1__REQUEST__BODY_HELLO;
    greet.hello = &hello;
    Shoal__V1__Response *response = s_call_request (fake->dealer, &greet);
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
    shoal_from_t from = {.kind = SHOAL_FROM_BEGINNING};
    int sub = shoal_node_subscribe (a, "faked", NULL, &from);
    Shoal__V1__Heartbeat heartbeat = SHOAL__V1__HEARTBEAT__INIT;
    heartbeat.origin.data = fake->id;
    heartbeat.origin.len = 16;
    heartbeat.stream = "faked";
    heartbeat.head_seq = 100;
    uint8_t beat[128];
    size_t beat_size = shoal__v1__heartbeat__pack (&heartbeat, beat);
    int64_t deadline = zclock_mono () + 5000;
    while (fake->replays == 0 && zclock_mono () < deadline) {
        zsock_send (fake->pub, "sb", "faked/", beat, beat_size);
        s_fake_serve (fake, 100);
    }
    return sub;
}

static void
s_fake_stop (s_fake_t *fake)
{
    zframe_destroy (&fake->asker);
    zsock_destroy (&fake->dealer);
    zsock_destroy (&fake->pub);
    zsock_destroy (&fake->router);
}

static void
s_room_8 (shoal_node_config_t *config)
{
    config->reorder_limit = 8;
}

//  A node (tuned to an inbox of 8) whose inbox is full of its own
//  events, unread: what a fake origin then sends stays in the
//  subscription, whose room the fake's first batch fills.
static shoal_node_t *
s_node_inbox_full (const char *name, void (*tune) (shoal_node_config_t *))
{
    shoal_node_t *node = s_node (name, NULL, 0, tune);
    shoal_node_subscribe (node, "local", NULL, NULL);
    for (int i = 0; i < 8; i++)
        s_publish (node, "local", "Own", i);
    return node;
}

//  A batch that comes for a replay already parked (its credit spent, in
//  the subscription's eyes) leaves it parked, and the next repair
//  continues it with a Credit. (The engine once dropped the parked replay
//  there, and wrote into it after.)
static void
test_batch_after_parked (void)
{
    shoal_node_t *a = s_node_inbox_full ("parked", s_room_8);
    s_fake_t fake = {.id = {0xFA, 0x4E, 0x01}};
    int sub = s_fake_start (&fake, a);
    ok (fake.replays == 1, "the subscription seeks the fake origin's log");
    int64_t deadline = zclock_mono () + 5000;
    while (node_util_stats (a).repairs_parked == 0 && zclock_mono () < deadline)
        s_fake_serve (&fake, 50);
    s_fake_serve (&fake, 300); //  and the empty batch after
    is_int ((int) node_util_stats (a).repairs_parked, 1,
            "after its credit's worth and a batch of nothing, the replay is still parked");
    //  Reading frees the room: the parked replay is continued.
    int got = 0;
    for (int i = 0; i < 16; i++) {
        int which = 0;
        shoal_event_t *event = shoal_node_recv (a, 2000, &which);
        got += event && which == sub;
        shoal_event_destroy (&event);
        s_fake_serve (&fake, 1);
    }
    is_int (got, 8, "the 8 events of the first batch are delivered");
    deadline = zclock_mono () + 3000;
    while (fake.credit_for == 0 && zclock_mono () < deadline)
        s_fake_serve (&fake, 100);
    ok (fake.credit_for == fake.replay_id && fake.replays == 1,
        "the replay is continued with a Credit (for %llu; replays asked %d)",
        (unsigned long long) fake.credit_for, fake.replays);
    s_fake_stop (&fake);
    shoal_node_destroy (&a);
}

static void
s_room_8_quick_expiry (shoal_node_config_t *config)
{
    s_room_8 (config);
    config->suspect_ms = 500;
    config->expiry_ms = 1500;
}

//  A parked replay goes with its peer: once the fake origin that serves
//  it falls silent and expires, nothing is left parked for it (it would
//  otherwise wait for a repair to find its peer gone).
static void
test_parked_peer_gone (void)
{
    shoal_node_t *a = s_node_inbox_full ("parked-gone", s_room_8_quick_expiry);
    s_fake_t fake = {.id = {0xFA, 0x4E, 0x03}};
    s_fake_start (&fake, a);
    int64_t deadline = zclock_mono () + 5000;
    while (node_util_stats (a).repairs_parked == 0 && zclock_mono () < deadline)
        s_fake_serve (&fake, 50);
    is_int ((int) node_util_stats (a).repairs_parked, 1,
            "peer gone: the seek of the fake origin's log is parked");
    //  The fake answers nothing more.
    shoal_peer_info_t peers[4];
    deadline = zclock_mono () + 8000;
    while (shoal_node_peers (a, peers, 4) > 0 && zclock_mono () < deadline)
        zclock_sleep (100);
    is_int ((int) shoal_node_peers (a, peers, 4), 0,
            "peer gone: the silent fake origin expires and is dropped");
    is_int ((int) node_util_stats (a).repairs_parked, 0,
            "peer gone: and the replay parked with it is forgotten");
    s_fake_stop (&fake);
    shoal_node_destroy (&a);
}

//  A subscription has one replay asked for per origin: when a repair
//  makes no progress and is asked again, the engine forgets the replay
//  given up on, and a batch of it that comes late is dropped, not fed to
//  the subscription as if it were the new replay's (nor parked there).
static void
test_late_batch_dropped (void)
{
    shoal_node_t *a = s_node ("late-batch", NULL, 0, s_room_8);
    s_fake_t fake = {.id = {0xFA, 0x4E, 0x02}, .mute = true};
    int sub = s_fake_start (&fake, a);
    ok (fake.replays == 1, "late batch: the subscription seeks the fake origin's log");
    //  Unanswered, the repair is asked again after its timeout (2 s).
    int64_t deadline = zclock_mono () + 8000;
    while (fake.replays < 2 && zclock_mono () < deadline)
        s_fake_serve (&fake, 100);
    ok (fake.replays == 2 && fake.last_replay != fake.replay_id,
        "late batch: a repair with no progress is asked again (%d replays)", fake.replays);
    is_int ((int) node_util_stats (a).repairs_in_flight, 1,
            "late batch: the subscription awaits one replay of the origin, not two");
    s_fake_batch (&fake, fake.replay_id, 8);
    s_fake_serve (&fake, 300);
    shoal_event_t *event = shoal_node_recv (a, 300, NULL);
    ok (event == NULL && node_util_stats (a).events_repaired == 0,
        "late batch: the first replay's batch, come late, is dropped");
    shoal_event_destroy (&event);
    is_int ((int) node_util_stats (a).repairs_parked, 0,
            "late batch: and nothing is parked for it");
    s_fake_batch (&fake, fake.last_replay, 8);
    int got = 0;
    for (int i = 0; i < 8; i++) {
        int which = 0;
        event = shoal_node_recv (a, 2000, &which);
        got += event && which == sub && shoal_event_seq (event) == (uint64_t) i + 1;
        shoal_event_destroy (&event);
    }
    is_int (got, 8, "late batch: the replay asked again delivers its 8, in order");
    s_fake_stop (&fake);
    shoal_node_destroy (&a);
}

static void
s_loopback (shoal_node_config_t *config)
{
    config->interface = "lo";
    config->beacon_port = 20000 + (int) (getpid () % 20000);
    config->mesh = "test-node-lo";
}

static void
test_loopback_beacon (void)
{
    shoal_node_t *nodes[3];
    nodes[0] = s_node ("lo-a", NULL, 0, s_loopback);
    nodes[1] = s_node ("lo-b", NULL, 0, s_loopback);
    nodes[2] = s_node ("lo-c", NULL, 0, s_loopback);
    ok (s_wait_peers (nodes, 3, 2, 5000), "loopback beacon: three nodes find each other");
    shoal_peer_info_t peers[8];
    size_t count = shoal_node_peers (nodes[0], peers, 8);
    is_int (count, 2, "node a lists two peers");
    int sub = shoal_node_subscribe (nodes[2], "metrics", NULL, NULL);
    zclock_sleep (300);
    for (int i = 0; i < 100; i++)
        s_publish (nodes[1], "metrics", "Cpu", i);
    s_tally_t tally = s_receive (nodes[2], sub, shoal_node_id (nodes[1]), 1, 100, 10000);
    is_int (tally.received, 100, "events flow between beacon-discovered nodes");
    //  A node that leaves is noticed at once (leaving beacon), not after expiry.
    shoal_node_destroy (&nodes[1]);
    int64_t start = zclock_mono ();
    bool gone = false;
    while (!gone && zclock_mono () - start < 1500) {
        gone = shoal_node_peers (nodes[0], NULL, 0) == 1;
        zclock_sleep (20);
    }
    ok (gone, "a leaving node is dropped well before expiry");
    shoal_node_destroy (&nodes[0]);
    shoal_node_destroy (&nodes[2]);
}

static void
s_replicate_all (shoal_node_config_t *config)
{
    static const char *all[] = {"all"};
    config->replicate = all;
    config->replicate_count = 1;
}

//  A node that replicates "all" picks up a stream created later on a
//  peer, and its replica holds the origin's events byte for byte.
static void
test_replicate_all (void)
{
    shoal_node_t *origin = s_node ("rep-origin", NULL, 0, NULL);
    const char *seed[] = {shoal_node_router_endpoint (origin)};
    shoal_node_t *replica = s_node ("rep-all", seed, 1, s_replicate_all);
    shoal_node_t *pair[] = {origin, replica};
    s_wait_peers (pair, 2, 1, 5000);
    for (int i = 0; i < 50; i++)
        s_publish (origin, "born-later", "Created", i);
    uint8_t origin_id[16];
    memcpy (origin_id, shoal_node_id (origin), 16);
    zsock_t *client = node_util_client (replica, 2000);
    uint64_t head = node_util_wait_log_head (client, NULL, "born-later", 50, 8000);
    zsock_destroy (&client);
    is_int (head, 50, "a node replicating all holds a stream created later on a peer");
    shoal_node_destroy (&replica);
    shoal_node_destroy (&origin);
    //  Offline: the replica log equals the origin's, byte for byte.
    char dir[4200];
    snprintf (dir, sizeof dir, "%s", tap_path ("rep-origin"));
    shoal_store_t *a = shoal_store_open (dir, NULL, NULL);
    snprintf (dir, sizeof dir, "%s", tap_path ("rep-all"));
    shoal_store_t *b = shoal_store_open (dir, NULL, NULL);
    shoal_log_t *la = a ? shoal_store_log (a, origin_id, "born-later", false, NULL) : NULL;
    shoal_log_t *lb = b ? shoal_store_log (b, origin_id, "born-later", false, NULL) : NULL;
    int same = 0;
    for (uint64_t seq = 1; la && lb && seq <= 50; seq++) {
        uint8_t *x = NULL, *y = NULL;
        size_t xs = 0, ys = 0;
        if (shoal_log_read (la, seq, &x, &xs, NULL) == 0
            && shoal_log_read (lb, seq, &y, &ys, NULL) == 0 && xs == ys && memcmp (x, y, xs) == 0)
            same++;
        free (x);
        free (y);
    }
    is_int (same, 50, "replica and origin hold the same 50 events, byte for byte");
    shoal_store_close (&a);
    shoal_store_close (&b);
}

static void
s_replicate_hist (shoal_node_config_t *config)
{
    static const char *hist[] = {"hist"};
    config->replicate = hist;
    config->replicate_count = 1;
}

//  An origin that died: a subscriber that knew it repairs from a replica.
//  The replica heartbeats on the dead origin's behalf; those heartbeats
//  must not make the dead origin look alive, or every repair would go to
//  it and none would ever be answered.
static void
test_dead_origin_repaired_by_replica (void)
{
    shoal_node_t *origin = s_node ("dead-origin", NULL, 0, NULL);
    const char *seed[] = {shoal_node_router_endpoint (origin)};
    shoal_node_t *replica = s_node ("dead-replica", seed, 1, s_replicate_hist);
    const char *both[] = {shoal_node_router_endpoint (origin),
                          shoal_node_router_endpoint (replica)};
    shoal_node_t *reader = s_node ("dead-reader", both, 2, NULL);
    shoal_node_t *three[] = {origin, replica, reader};
    ok (s_wait_peers (three, 3, 2, 8000), "origin, replica and reader see each other");
    uint8_t origin_id[16];
    memcpy (origin_id, shoal_node_id (origin), 16);
    for (int i = 0; i < 50; i++)
        s_publish (origin, "hist", "Fact", i);
    zsock_t *client = node_util_client (replica, 2000);
    is_int (node_util_wait_log_head (client, NULL, "hist", 50, 8000), 50,
            "the replica holds the origin's 50");
    zsock_destroy (&client);
    shoal_node_destroy (&origin);
    shoal_from_t from = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    int sub = shoal_node_subscribe (reader, "hist", NULL, &from);
    s_tally_t tally = s_receive (reader, sub, origin_id, 1, 50, 8000);
    ok (tally.received == 50 && tally.out_of_order == 0,
        "a subscriber that knew the dead origin gets all 50 from the replica, in order (%d)",
        tally.received);
    shoal_node_destroy (&reader);
    shoal_node_destroy (&replica);
}

//  Promise 1, durable before visible, through a node: the disk fills
//  while a stream is published. Nothing that never became durable goes
//  out live or is acknowledged, to the application or to a thin client,
//  and the node keeps running.
static shoal_io_t *s_full_disk;

static void
s_on_full_disk (shoal_node_config_t *config)
{
    config->io = s_full_disk;
}

static void
test_full_disk_shows_nothing (void)
{
    s_full_disk = shoal_io_faulty_new ();
    //  Start-up writes a few hundred bytes; the events are 15 KiB.
    shoal_io_faulty_write_error (s_full_disk, ENOSPC, 4096);
    shoal_node_t *origin = s_node ("full-origin", NULL, 0, s_on_full_disk);
    const char *seed[] = {shoal_node_router_endpoint (origin)};
    shoal_node_t *reader = s_node ("full-reader", seed, 1, NULL);
    shoal_node_t *pair[] = {origin, reader};
    ok (s_wait_peers (pair, 2, 1, 8000), "a node on a disk about to fill, and a reader");
    shoal_from_t from = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    int sub = shoal_node_subscribe (reader, "full", NULL, &from);
    zclock_sleep (300);
    //  Each event alone is past what the disk has left, so none can
    //  become durable however the engine groups them.
    uint64_t last = 0;
    char *payload = (char *) calloc (1, 15 * 1024);
    for (int i = 0; i < 100; i++) {
        shoal_event_t *event = shoal_event_new ();
        shoal_event_set_stream (event, "full");
        shoal_event_set_type (event, "Fact");
        shoal_event_set_payload (event, payload, 15 * 1024);
        uint64_t seq = 0;
        if (shoal_node_publish (origin, event, &seq, NULL) == 0)
            last = seq;
        shoal_event_destroy (&event);
    }
    free (payload);
    ok (last > 0 && shoal_node_wait_durable (origin, "full", last, 3000) == -1,
        "the events published onto the full disk never become durable");
    shoal_event_t *after = shoal_event_new ();
    shoal_event_set_stream (after, "full");
    shoal_event_set_type (after, "Fact");
    int error = 0;
    uint64_t seq_after = 0;
    seq_after = 99;
    int rc = shoal_node_publish (origin, after, &seq_after, &error);
    ok (rc == -1 && error == SHOAL_ERR_FAILED && seq_after == 0,
        "once its log failed, the stream hands out no seq: a publish fails at once (seq %" PRIu64
        ")",
        seq_after);
    shoal_event_destroy (&after);
    s_tally_t tally = s_receive (reader, sub, shoal_node_id (origin), 1, 1, 1500);
    is_int (tally.received, 0, "the reader gets none of them, live or by repair");
    zsock_t *dealer = zsock_new_dealer (shoal_node_router_endpoint (origin));
    is_int (s_error_code (s_thin_publish (dealer, "full", "Fact", NULL, 10)), SHOAL_WIRE_STORAGE,
            "a thin client publishing to the failed stream gets Error 6, not an ack");
    zsock_destroy (&dealer);
    shoal_node_stats_t stats;
    ok (shoal_node_stats (origin, &stats) == 0, "the node still answers");
    shoal_node_destroy (&reader);
    shoal_node_destroy (&origin);
    shoal_io_faulty_destroy (&s_full_disk);
}

//  "now" is every event recorded after the subscription started: a
//  subscription made just before a publish gets that event, though the
//  engine finds the command and the event waiting in the same turn, and
//  though the stream has no log yet.
static void
test_now_then_publish (void)
{
    enum { STREAMS = 60 };
    shoal_node_t *node = s_node ("now-then", NULL, 0, NULL);
    //  A burst on another stream keeps the engine busy, so commands and
    //  events queue up and meet in one turn.
    for (int i = 0; i < 20000; i++)
        s_publish (node, "busy", "Tick", i);
    int subs[STREAMS];
    for (int i = 0; i < STREAMS; i++) {
        char stream[32];
        snprintf (stream, sizeof stream, "now-%d", i);
        shoal_from_t now = {.kind = SHOAL_FROM_NOW};
        subs[i] = shoal_node_subscribe (node, stream, NULL, &now);
        s_publish (node, stream, "Fact", i);
    }
    int got = 0, wrong = 0;
    shoal_event_t *event;
    int subscription = 0;
    while (got + wrong < STREAMS && (event = shoal_node_recv (node, 5000, &subscription))) {
        int index = -1;
        sscanf (shoal_event_stream (event), "now-%d", &index);
        if (index >= 0 && index < STREAMS && subs[index] == subscription)
            got++;
        else
            wrong++;
        shoal_event_destroy (&event);
    }
    is_int (got, STREAMS,
            "a subscription from now gets the event published right after it (%d of %d)", got,
            STREAMS);
    shoal_node_destroy (&node);
}

//  A node restarted with a log of its own: a local subscription from
//  "now", made before it publishes again, gets the next event and none of
//  those recorded before the restart (its own origin is placed after the
//  head of the log it reopened).
static void
test_now_after_restart (void)
{
    shoal_node_t *node = s_node ("now-restart", NULL, 0, NULL);
    for (int i = 0; i < 3; i++)
        s_publish (node, "kept", "Old", i);
    ok (shoal_node_wait_durable (node, "kept", 3, 5000) == 0, "three events recorded");
    shoal_node_destroy (&node);
    node = s_node ("now-restart", NULL, 0, NULL);
    shoal_from_t now = {.kind = SHOAL_FROM_NOW};
    int sub = shoal_node_subscribe (node, "kept", NULL, &now);
    uint64_t seq = s_publish (node, "kept", "New", 3);
    shoal_event_t *event = shoal_node_recv (node, 5000, NULL);
    ok (seq == 4 && event && shoal_event_seq (event) == 4
            && strcmp (shoal_event_type (event), "New") == 0,
        "restarted, a subscription from now gets the next event, seq %" PRIu64, seq);
    shoal_event_destroy (&event);
    event = shoal_node_recv (node, 500, NULL);
    ok (event == NULL, "and none recorded before the restart");
    shoal_event_destroy (&event);
    shoal_node_unsubscribe (node, sub);
    shoal_node_destroy (&node);
}

//  A file system whose fsync waits while the gate is shut: the engine
//  stops in its group commit, and the outbox fills behind it.
static shoal_io_t s_gated;
static pthread_mutex_t s_gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_gate_open = PTHREAD_COND_INITIALIZER;
static bool s_gate_shut;

static int
s_gated_fsync (shoal_io_t *io, int fd)
{
    (void) io;
    pthread_mutex_lock (&s_gate_lock);
    while (s_gate_shut)
        pthread_cond_wait (&s_gate_open, &s_gate_lock);
    pthread_mutex_unlock (&s_gate_lock);
    return shoal_io_posix ()->fsync (shoal_io_posix (), fd);
}

static void
s_gate (bool shut)
{
    pthread_mutex_lock (&s_gate_lock);
    s_gate_shut = shut;
    pthread_cond_broadcast (&s_gate_open);
    pthread_mutex_unlock (&s_gate_lock);
}

static void
s_on_gated_disk (shoal_node_config_t *config)
{
    config->io = &s_gated;
}

typedef struct {
    shoal_node_t *node;   //  publishes here
    atomic_int published; //  events published
    int error;            //  error of the publish that failed
    uint64_t seq;         //  what that publish said its seq was
    int rc;               //  the wait's result
    int64_t returned_ms;  //  when the call returned
} s_caller_t;

//  Publishes 64 KiB events until a publish fails.
static void *
s_publisher (void *arg)
{
    s_caller_t *self = (s_caller_t *) arg;
    char *payload = (char *) calloc (1, 64 * 1024);
    for (int i = 0; i < 100000; i++) {
        shoal_event_t *event = shoal_event_new ();
        shoal_event_set_stream (event, "blobs");
        shoal_event_set_type (event, "Blob");
        shoal_event_set_payload (event, payload, 64 * 1024);
        self->seq = 99;
        int rc = shoal_node_publish (self->node, event, &self->seq, &self->error);
        shoal_event_destroy (&event);
        if (rc)
            break;
        atomic_fetch_add (&self->published, 1);
    }
    self->returned_ms = zclock_mono ();
    free (payload);
    return NULL;
}

static void *
s_waiter (void *arg)
{
    s_caller_t *self = (s_caller_t *) arg;
    self->rc = shoal_node_wait_durable (self->node, "blobs", 1000000, 60000);
    self->returned_ms = zclock_mono ();
    return NULL;
}

static int64_t s_destroyed_ms; //  when s_destroyer's destroy returned

static void *
s_destroyer (void *arg)
{
    shoal_node_t *node = (shoal_node_t *) arg;
    shoal_node_destroy (&node);
    s_destroyed_ms = zclock_mono ();
    return NULL;
}

//  A node destroyed while one thread waits for room in its outbox (the
//  engine held in an fsync) and another for durability: both calls fail,
//  the publisher's without a seq, and destroy returns after them.
static void
test_destroy_under_callers (void)
{
    s_gated = *shoal_io_posix ();
    s_gated.fsync = s_gated_fsync;
    s_gate (false);
    shoal_node_t *node = s_node ("destroyed", NULL, 0, s_on_gated_disk);
    s_gate (true);
    s_caller_t publisher = {.node = node}, waiter = {.node = node};
    pthread_t publishing, waiting, destroying;
    pthread_create (&publishing, NULL, s_publisher, &publisher);
    pthread_create (&waiting, NULL, s_waiter, &waiter);
    //  The publisher is stopped when its count stays put: the outbox holds
    //  4 MiB and the largest event, about 80 of these.
    int last = -1;
    int64_t deadline = zclock_mono () + 10000;
    while (zclock_mono () < deadline) {
        zclock_sleep (200);
        int now = atomic_load (&publisher.published);
        if (now == last && now > 0)
            break;
        last = now;
    }
    ok (last > 50 && publisher.returned_ms == 0,
        "the publisher waits for room, the engine held in an fsync (%d events in)", last);
    int64_t destroyed_ms = zclock_mono ();
    pthread_create (&destroying, NULL, s_destroyer, node);
    pthread_join (publishing, NULL);
    ok (publisher.error == SHOAL_ERR_CLOSED && publisher.seq == 0,
        "destroy ends its wait: the publish fails (%s), with no seq (%" PRIu64 ")",
        shoal_strerror (publisher.error), publisher.seq);
    s_gate (false); //  the engine finishes its commit and stops
    pthread_join (waiting, NULL);
    pthread_join (destroying, NULL);
    ok (waiter.rc == -1 && waiter.returned_ms - destroyed_ms < 30000,
        "a wait for durability fails when the node stops, well before its timeout (%d)", waiter.rc);
    ok (s_destroyed_ms >= publisher.returned_ms && s_destroyed_ms >= waiter.returned_ms,
        "destroy returns after both calls have");
}

int
main (void)
{
    plan_lazy ();
    zsys_init ();
    zsys_set_logstream (NULL);
    test_static_peers_and_pubsub ();
    test_drops_are_repaired ();
    test_router_contract ();
    test_loopback_beacon ();
    test_replicate_all ();
    test_dead_origin_repaired_by_replica ();
    test_full_disk_shows_nothing ();
    test_now_then_publish ();
    test_now_after_restart ();
    test_destroy_under_callers ();
    test_batch_after_parked ();
    test_late_batch_dropped ();
    test_parked_peer_gone ();
    return done_testing ();
}
