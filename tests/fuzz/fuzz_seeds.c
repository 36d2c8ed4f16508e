/*  =========================================================================
    fuzz_seeds - writes the seed corpus of the fuzz targets

    `make fuzz-seeds` runs it; it writes tests/fuzz/corpus/<target>/seed-*
    from real encodings made by the library and protobuf-c (events, every
    Request type, beacons, logs written and closed by shoal_log), so the
    fuzzers start from inputs that reach deep into each path. Files that
    are not named seed-* (crash inputs kept as regressions) are left
    alone. The seeds are committed; run this again when a format changes.
    ========================================================================= */

#include "shoal.pb-c.h"
#include "shoal_beacon.h"
#include "shoal_event.h"
#include "shoal_log.h"
#include "../remove_tree.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *s_corpus;

static void
s_write (const char *target, const char *name, const void *data, size_t size)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/%s", s_corpus, target);
    mkdir (path, 0755);
    snprintf (path, sizeof path, "%s/%s/seed-%s", s_corpus, target, name);
    FILE *file = fopen (path, "wb");
    if (!file || (size && fwrite (data, 1, size, file) != size) || fclose (file)) {
        fprintf (stderr, "fuzz_seeds: cannot write %s\n", path);
        exit (1);
    }
}

static shoal_event_t *
s_event (const char *stream, uint64_t seq, bool full)
{
    static const uint8_t origin[SHOAL_ID_SIZE] = {15, 15, 15, 15, 15, 15, 15, 15,
                                                  15, 15, 15, 15, 15, 15, 15, 15};
    shoal_event_t *event = shoal_event_new ();
    shoal_event_set_stream (event, stream);
    shoal_event_set_type (event, "OrderPlaced");
    if (seq) {
        shoal_event_set_origin (event, origin);
        shoal_event_set_seq (event, seq);
        shoal_event_set_time_ns (event, 1700000000000000000 + (int64_t) seq);
        shoal_event_generate_id (event);
    }
    if (full) {
        shoal_event_set_key (event, "order-7");
        shoal_event_set_correlation_id (event, "corr-1");
        shoal_event_set_causation_id (event, "cause-1");
        shoal_event_set_content_type (event, "application/json");
        shoal_event_set_schema_version (event, 3);
        shoal_event_set_header (event, "tenant", "acme");
        shoal_event_set_header (event, "region", "eu");
        shoal_event_set_payload (event, "{\"qty\":2,\"sku\":\"X1\"}", 21);
    }
    return event;
}

static void
s_events (void)
{
    const char *names[] = {"minimal", "full", "sequenced"};
    shoal_event_t *events[] = {s_event ("orders", 0, false), s_event ("orders", 0, true),
                               s_event ("sensors.t-1", 42, true)};
    for (int i = 0; i < 3; i++) {
        uint8_t *data;
        size_t size;
        shoal_event_encode (events[i], &data, &size);
        s_write ("event", names[i], data, size);
        free (data);
    }
    //  A Response holding a ReplayBatch of two events (the scanner's input).
    Shoal__V1__Event *packed[2];
    uint8_t *bytes[2];
    size_t sizes[2];
    for (int i = 0; i < 2; i++) {
        shoal_event_encode (events[i + 1], &bytes[i], &sizes[i]);
        packed[i] = shoal__v1__event__unpack (NULL, sizes[i], bytes[i]);
    }
    Shoal__V1__ReplayBatch batch = SHOAL__V1__REPLAY_BATCH__INIT;
    batch.n_events = 2;
    batch.events = packed;
    batch.next_seq = 43;
    batch.done = true;
    batch.head_seq = 42;
    Shoal__V1__Response response = SHOAL__V1__RESPONSE__INIT;
    response.request_id = 9;
    response.body_case = SHOAL__V1__RESPONSE__BODY_BATCH;
    response.batch = &batch;
    uint8_t out[4096];
    s_write ("event", "batch-response", out, shoal__v1__response__pack (&response, out));
    for (int i = 0; i < 2; i++) {
        shoal__v1__event__free_unpacked (packed[i], NULL);
        free (bytes[i]);
    }
    for (int i = 0; i < 3; i++)
        shoal_event_destroy (&events[i]);
}

static void
s_request (const char *name, Shoal__V1__Request *request)
{
    uint8_t out[4096];
    size_t size = shoal__v1__request__get_packed_size (request);
    if (size > sizeof out)
        exit (1);
    size = shoal__v1__request__pack (request, out);
    s_write ("request", name, out, size);
    //  The event target holds the request scanner against protobuf-c too.
    char event_name[128];
    snprintf (event_name, sizeof event_name, "request-%s", name);
    s_write ("event", event_name, out, size);
}

static void
s_requests (void)
{
    static uint8_t node[SHOAL_ID_SIZE] = {15, 15, 15, 15, 15, 15, 15, 15,
                                          15, 15, 15, 15, 15, 15, 15, 15};
    static uint8_t stranger[SHOAL_ID_SIZE] = {1, 2,  3,  4,  5,  6,  7,  8,
                                              9, 10, 11, 12, 13, 14, 15, 16};
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = 1;

    Shoal__V1__Hello hello = SHOAL__V1__HELLO__INIT;
    hello.node.data = stranger;
    hello.node.len = SHOAL_ID_SIZE;
    hello.name = "stranger";
    hello.mesh = "fuzz";
    hello.pub_port = 7002;
    hello.router_port = 7001;
    char *known[] = {"tcp://127.0.0.1:7003"};
    char *replicates[] = {"orders"};
    hello.n_known_peers = 1;
    hello.known_peers = known;
    hello.n_replicates = 1;
    hello.replicates = replicates;
    request.body_case = SHOAL__V1__REQUEST__BODY_HELLO;
    request.hello = &hello;
    s_request ("hello", &request);

    Shoal__V1__StatusRequest status = SHOAL__V1__STATUS_REQUEST__INIT;
    request.body_case = SHOAL__V1__REQUEST__BODY_STATUS;
    request.status = &status;
    s_request ("status", &request);

    Shoal__V1__ReplayRequest replay = SHOAL__V1__REPLAY_REQUEST__INIT;
    replay.origin.data = node;
    replay.origin.len = SHOAL_ID_SIZE;
    replay.stream = "orders";
    replay.from_seq = 1;
    replay.credit = 100;
    request.request_id = 7;
    request.body_case = SHOAL__V1__REQUEST__BODY_REPLAY;
    request.replay = &replay;
    s_request ("replay", &request);
    char *types[] = {"OrderShipped"};
    replay.n_types = 1;
    replay.types = types;
    replay.from_seq = 2;
    replay.to_seq = 3;
    replay.credit = 0;
    request.request_id = 8;
    s_request ("replay-filtered-no-credit", &request);
    replay.n_types = 0;
    replay.from_seq = 0;
    replay.from_time_ns = 1;
    s_request ("replay-from-time", &request);

    Shoal__V1__Event event = SHOAL__V1__EVENT__INIT;
    event.stream = "orders";
    event.type = "OrderPlaced";
    event.key = "order-9";
    uint8_t id[SHOAL_ID_SIZE] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
    event.id.data = id;
    event.id.len = SHOAL_ID_SIZE;
    event.payload.data = (uint8_t *) "{}";
    event.payload.len = 2;
    Shoal__V1__PublishRequest publish = SHOAL__V1__PUBLISH_REQUEST__INIT;
    publish.event = &event;
    publish.wait_durable = true;
    request.request_id = 10;
    request.body_case = SHOAL__V1__REQUEST__BODY_PUBLISH;
    request.publish = &publish;
    s_request ("publish", &request);

    Shoal__V1__Credit credit = SHOAL__V1__CREDIT__INIT;
    credit.replay_id = 8;
    credit.credit = 5;
    request.request_id = 11;
    request.body_case = SHOAL__V1__REQUEST__BODY_CREDIT;
    request.credit = &credit;
    s_request ("credit", &request);

    Shoal__V1__Ping ping = SHOAL__V1__PING__INIT;
    request.request_id = 12;
    request.body_case = SHOAL__V1__REQUEST__BODY_PING;
    request.ping = &ping;
    s_request ("ping", &request);

    Shoal__V1__LogHead cursor = SHOAL__V1__LOG_HEAD__INIT;
    cursor.origin.data = node;
    cursor.origin.len = SHOAL_ID_SIZE;
    cursor.stream = "orders";
    cursor.head_seq = 2;
    Shoal__V1__LogHead *cursors[] = {&cursor};
    Shoal__V1__ConsumerRequest consumer = SHOAL__V1__CONSUMER_REQUEST__INIT;
    consumer.name = "billing";
    consumer.op = "ack";
    consumer.n_cursors = 1;
    consumer.cursors = cursors;
    request.request_id = 13;
    request.body_case = SHOAL__V1__REQUEST__BODY_CONSUMER;
    request.consumer = &consumer;
    s_request ("consumer-ack", &request);
    consumer.op = "get";
    consumer.n_cursors = 0;
    s_request ("consumer-get", &request);
    consumer.op = "list";
    s_request ("consumer-list", &request);
    consumer.op = "delete";
    s_request ("consumer-delete", &request);

    request.body_case = SHOAL__V1__REQUEST__BODY__NOT_SET;
    s_request ("no-body", &request);
}

static void
s_beacons (void)
{
    shoal_beacon_msg_t msg = {0};
    msg.mesh_id = shoal_mesh_id ("default");
    for (int i = 0; i < SHOAL_ID_SIZE; i++)
        msg.node[i] = (uint8_t) (i + 1);
    msg.pub_port = 7002;
    msg.router_port = 7001;
    uint8_t out[SHOAL_BEACON_SIZE_SECURE];
    s_write ("beacon", "plain", out, shoal_beacon_encode (&msg, out));
    msg.leaving = true;
    s_write ("beacon", "leaving", out, shoal_beacon_encode (&msg, out));
    msg.leaving = false;
    msg.has_key = true;
    memset (msg.key, 0xab, sizeof msg.key);
    s_write ("beacon", "secure", out, shoal_beacon_encode (&msg, out));
}

//  Appends one file of a log directory to a fuzz_log input.
static size_t
s_pack_file (uint8_t *out, size_t at, const char *dir, const char *name, bool is_index)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen (path, "rb");
    if (!file)
        return at;
    uint8_t *size_at = out + at + 1;
    out[at] = is_index ? 1 : 0;
    size_t got = fread (out + at + 5, 1, 200000, file);
    fclose (file);
    for (int i = 0; i < 4; i++)
        size_at[i] = (uint8_t) (got >> (8 * i));
    return at + 5 + got;
}

//  Writes a log of count records with the real code, then packs its files.
static void
s_log_seed (const char *name, int count, uint64_t segment_size, bool with_index, size_t cut)
{
    static const uint8_t origin[SHOAL_ID_SIZE] = {1, 2,  3,  4,  5,  6,  7,  8,
                                                  9, 10, 11, 12, 13, 14, 15, 16};
    char dir[] = "/tmp/shoal-fuzz-seeds-XXXXXX";
    if (!mkdtemp (dir))
        exit (1);
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.fsync = SHOAL_FSYNC_NEVER;
    config.segment_size = segment_size;
    config.index_interval = 256;
    int error;
    shoal_log_t *log = shoal_log_open (dir, origin, "orders", true, &config, &error);
    if (!log)
        exit (1);
    for (int i = 1; i <= count; i++) {
        shoal_event_t *event = s_event ("orders", (uint64_t) i, i % 2 == 0);
        uint8_t *data;
        size_t size;
        shoal_event_encode (event, &data, &size);
        shoal_log_append (log, (uint64_t) i, 1700000000000000000 + i, data, size);
        free (data);
        shoal_event_destroy (&event);
    }
    shoal_log_close (&log);
    //  The files in name order: each segment, then its index.
    struct dirent **names;
    int n = scandir (dir, &names, NULL, alphasort);
    uint8_t *out = (uint8_t *) malloc (1000000);
    size_t at = 0;
    out[at++] = 0; //  flags: checksums as written
    int files = 0;
    for (int i = 0; i < n; i++) {
        const char *file = names[i]->d_name;
        size_t length = strlen (file);
        bool seg = length > 4 && strcmp (file + length - 4, ".seg") == 0;
        bool idx = length > 4 && strcmp (file + length - 4, ".idx") == 0;
        if (files < 4 && (seg || (idx && with_index))) {
            at = s_pack_file (out, at, dir, file, idx);
            files++;
        }
        free (names[i]);
    }
    free (names);
    if (cut && cut < at)
        at -= cut;
    s_write ("log", name, out, at);
    free (out);
    remove_tree (dir);
}

int
main (int argc, char *argv[])
{
    if (argc != 2) {
        fprintf (stderr, "usage: fuzz_seeds CORPUS-DIR\n");
        return 2;
    }
    s_corpus = argv[1];
    mkdir (s_corpus, 0755);
    s_events ();
    s_requests ();
    s_beacons ();
    s_log_seed ("clean", 5, 64 * 1024, true, 0);
    s_log_seed ("no-index", 5, 64 * 1024, false, 0);
    s_log_seed ("torn-tail", 5, 64 * 1024, false, 13);
    s_log_seed ("two-segments", 40, 4096, true, 0);
    return 0;
}
