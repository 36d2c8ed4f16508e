/*  =========================================================================
    fuzz_request - any bytes as a Request on a live node's ROUTER socket

    The input is sent, as one frame, from a DEALER to the ROUTER of a real
    node running in this process, so it takes the path every client's
    request takes: the engine's frame checks, the envelope scan (a
    publish is read from its bytes) or the protobuf-c unpack, and
    the handler of its body (Hello, Status, Replay, Publish, Credit, Ping,
    Consumer) with the node's store, replay server and limits behind it.
    A Ping with a reserved request id follows it; the node answers in
    order, so its Pong means every reply to the input has been sent.

    The node listens on inproc endpoints and has no discovery, so nothing
    leaves the process: a Hello from the input cannot make it connect
    anywhere (inproc carries no peer address to learn). Its data
    directory is a fresh temporary one (on /dev/shm when there is one),
    with a fixed node id (so the seed corpus can name it as an origin) and
    three events in stream "orders"; the node is replaced by a fresh one
    every S_RECYCLE inputs, so streams that inputs create do not pile up.

    For any bytes, the target checks that:

    1. the node answers the Ping within S_TIMEOUT_MS (it neither crashed
       nor hung);
    2. every frame it sends back is a valid shoal.v1.Response.
    ========================================================================= */

#include "fuzz.h"
#include "../remove_tree.h"
#include "shoal.pb-c.h"
#include "shoal_crc.h"
#include "shoal_node.h"

#include <czmq.h>

#define S_RECYCLE 20000
#define S_TIMEOUT_MS 20000
#define S_SYNC_ID 0x5359AC5359AC5359ull //  request id of the Ping that follows each input

//  The node id the seeds use as origin: 0x0f repeated.
static const uint8_t s_node_id[SHOAL_ID_SIZE] = {15, 15, 15, 15, 15, 15, 15, 15,
                                                 15, 15, 15, 15, 15, 15, 15, 15};

static shoal_node_t *s_node;
static zsock_t *s_dealer;
static char s_dir[256];
static unsigned s_generation;
static unsigned s_inputs;
static bool s_verbose; //  SHOAL_FUZZ_VERBOSE set: print each response

static void
s_stop (void)
{
    zsock_destroy (&s_dealer);
    shoal_node_destroy (&s_node);
    if (s_dir[0])
        remove_tree (s_dir);
    s_dir[0] = 0;
}

static void
s_start (void)
{
    const char *base = access ("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf (s_dir, sizeof s_dir, "%s/shoal-fuzz-request-XXXXXX", base);
    FUZZ_CHECK (mkdtemp (s_dir) != NULL);
    //  node.id as the store writes it: magic, hex id, checksum line.
    char hex[2 * SHOAL_ID_SIZE + 1], text[128], path[300];
    shoal_id_to_hex (s_node_id, hex);
    int length = snprintf (text, sizeof text, "shoal-node-id 1\n%s\n", hex);
    snprintf (text + length, sizeof text - (size_t) length, "crc32c %08x\n",
              shoal_crc32c (0, text, (size_t) length));
    snprintf (path, sizeof path, "%s/node.id", s_dir);
    FILE *file = fopen (path, "w");
    FUZZ_CHECK (file && fputs (text, file) >= 0 && fclose (file) == 0);

    char pub[64], router[64];
    s_generation++;
    snprintf (pub, sizeof pub, "inproc://fuzz-pub-%d-%u", (int) getpid (), s_generation);
    snprintf (router, sizeof router, "inproc://fuzz-router-%d-%u", (int) getpid (), s_generation);
    shoal_node_config_t config;
    shoal_node_config_defaults (&config);
    config.name = "fuzz";
    config.mesh = "fuzz";
    config.data_dir = s_dir;
    config.interface = "none";
    config.pub_endpoint = pub;
    config.router_endpoint = router;
    config.fsync = SHOAL_FSYNC_NEVER;
    config.segment_size = 64 * 1024;
    config.max_event_size = 64 * 1024;
    config.log_level = -1; //  silent: refusals are the point here
    config.dedupe_window = 1000;
    config.max_replays_per_client = 8;
    int error = 0;
    s_node = shoal_node_new (&config, &error);
    if (!s_node)
        fprintf (stderr, "fuzz_request: cannot start a node: %s\n", shoal_node_start_error ());
    FUZZ_CHECK (s_node);
    FUZZ_CHECK (memcmp (shoal_node_id (s_node), s_node_id, SHOAL_ID_SIZE) == 0);
    for (int i = 0; i < 3; i++) {
        shoal_event_t *event = shoal_event_new ();
        shoal_event_set_stream (event, "orders");
        shoal_event_set_type (event, i == 1 ? "OrderShipped" : "OrderPlaced");
        shoal_event_set_key (event, "order-1");
        shoal_event_set_payload (event, "{\"qty\":1}", 9);
        uint64_t seq;
        FUZZ_CHECK (shoal_node_publish (s_node, event, &seq, &error) == 0);
        FUZZ_CHECK (shoal_node_wait_durable (s_node, "orders", seq, S_TIMEOUT_MS) == 0);
        shoal_event_destroy (&event);
    }
    s_dealer = zsock_new (ZMQ_DEALER);
    FUZZ_CHECK (s_dealer);
    zsock_set_linger (s_dealer, 0);
    FUZZ_CHECK (zsock_connect (s_dealer, "%s", router) == 0);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_node) {
        s_verbose = getenv ("SHOAL_FUZZ_VERBOSE") != NULL;
        s_start ();
        atexit (s_stop);
    }
    else if (++s_inputs % S_RECYCLE == 0) {
        s_stop ();
        s_start ();
    }
    void *dealer = zsock_resolve (s_dealer);
    FUZZ_CHECK (zmq_send (dealer, data, size, 0) == (int) size);
    Shoal__V1__Ping ping = SHOAL__V1__PING__INIT;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = S_SYNC_ID;
    request.body_case = SHOAL__V1__REQUEST__BODY_PING;
    request.ping = &ping;
    uint8_t sync[32];
    size_t sync_size = shoal__v1__request__pack (&request, sync);
    FUZZ_CHECK (zmq_send (dealer, sync, sync_size, 0) == (int) sync_size);
    for (;;) {
        zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};
        int ready = zmq_poll (&item, 1, S_TIMEOUT_MS);
        if (ready < 0 && zmq_errno () == EINTR)
            continue;
        if (ready <= 0)
            fprintf (stderr, "fuzz_request: no Pong within %d ms\n", S_TIMEOUT_MS);
        FUZZ_CHECK (ready > 0);
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        FUZZ_CHECK (zmq_msg_recv (&frame, dealer, 0) >= 0);
        FUZZ_CHECK (!zmq_msg_more (&frame));
        Shoal__V1__Response *response = shoal__v1__response__unpack (
            NULL, zmq_msg_size (&frame), (const uint8_t *) zmq_msg_data (&frame));
        zmq_msg_close (&frame);
        FUZZ_CHECK (response != NULL);
        if (s_verbose)
            fprintf (stderr, "fuzz_request: response %llu body %d%s%s\n",
                     (unsigned long long) response->request_id, (int) response->body_case,
                     response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR ? " " : "",
                     response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR
                         ? response->error->message
                         : "");
        bool synced = response->request_id == S_SYNC_ID
                      && response->body_case == SHOAL__V1__RESPONSE__BODY_PONG;
        shoal__v1__response__free_unpacked (response, NULL);
        if (synced)
            break;
    }
    return 0;
}
