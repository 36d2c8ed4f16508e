/*  test_replay - shoal_replay: the replay server on a ROUTER socket.

    A ROUTER (with ROUTER_MANDATORY, as the engine sets it) and a DEALER
    over inproc in one thread. Requests travel as real Request frames and
    responses are checked three ways: protobuf-c decodes them to the
    right fields, re-packing them with protobuf-c gives the very same
    bytes, and the events embedded in a batch are byte for byte what the
    log stored (the bytes of event seq are rebuilt from seq). */

#include "shoal.h"
#include "shoal_log.h"
#include "shoal_replay.h"
#include "shoal_wire.h"
#include "shoal.pb-c.h"
#include "tap.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const uint8_t s_origin[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                     0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};
static const uint8_t s_stranger[16] = {0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58,
                                       0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f, 0x60};
#define S_T0 1763800000000000000LL //  time of seq 0; seq s is recorded at S_T0 + 1000 s

//  --------------------------------------------------------------------------
//  Events whose bytes follow from (stream, seq), so a test can check any
//  received event against what was stored without keeping a copy.

static const char *
s_type_of (uint64_t seq)
{
    static const char *types[] = {"Alpha", "Beta", "Gamma"};
    return types[seq % 3];
}

static size_t
s_payload_size (const char *stream, uint64_t seq)
{
    if (strcmp (stream, "bulky") == 0 && seq % 5 == 0)
        return 3000; //  bigger than the batch_bytes that test uses
    return 20 + (size_t) (seq % 50);
}

static uint8_t *
s_event_bytes (const char *stream, uint64_t seq, size_t *size_p)
{
    shoal_event_t *event = shoal_event_new ();
    char key[32], payload[3000];
    snprintf (key, sizeof key, "key-%llu", (unsigned long long) seq);
    size_t payload_size = s_payload_size (stream, seq);
    for (size_t i = 0; i < payload_size; i++)
        payload[i] = (char) ('a' + (seq + i) % 26);
    uint8_t id[16];
    for (int i = 0; i < 16; i++)
        id[i] = (uint8_t) (seq >> (8 * (i % 8))) ^ (uint8_t) i;
    if (!event || shoal_event_set_stream (event, stream)
        || shoal_event_set_type (event, s_type_of (seq)) || shoal_event_set_key (event, key)
        || shoal_event_set_payload (event, payload, payload_size))
        bail ("cannot build event %llu", (unsigned long long) seq);
    shoal_event_set_origin (event, s_origin);
    shoal_event_set_id (event, id);
    shoal_event_set_seq (event, seq);
    shoal_event_set_time_ns (event, S_T0 + (int64_t) seq * 1000);
    uint8_t *data;
    if (shoal_event_encode (event, &data, size_p))
        bail ("cannot encode event %llu", (unsigned long long) seq);
    shoal_event_destroy (&event);
    return data;
}

static void
s_append (shoal_log_t *log, uint64_t from, uint64_t to)
{
    for (uint64_t seq = from; seq <= to; seq++) {
        size_t size;
        uint8_t *data = s_event_bytes (shoal_log_stream (log), seq, &size);
        if (shoal_log_append (log, seq, S_T0 + (int64_t) seq * 1000, data, size))
            bail ("append %llu: %s", (unsigned long long) seq, shoal_log_error_text (log));
        free (data);
    }
}

//  A log in the test directory (dir named after the stream), holding 1..count, flushed.
static shoal_log_t *
s_log_new (const char *stream, uint64_t count, const shoal_log_config_t *config)
{
    int error = 0;
    shoal_log_t *log = shoal_log_open (tap_path (stream), s_origin, stream, true, config, &error);
    if (!log)
        bail ("cannot open log %s: %s", stream, shoal_log_open_error ());
    s_append (log, 1, count);
    if (shoal_log_flush (log))
        bail ("flush: %s", shoal_log_error_text (log));
    return log;
}

//  The logs the replay server can find.
#define S_MAX_LOGS 8
static shoal_log_t *s_logs[S_MAX_LOGS];

static shoal_log_t *
s_lookup (void *arg, const uint8_t origin[SHOAL_ID_SIZE], const char *stream)
{
    (void) arg;
    for (int i = 0; i < S_MAX_LOGS; i++)
        if (s_logs[i] && memcmp (origin, shoal_log_origin (s_logs[i]), 16) == 0
            && strcmp (stream, shoal_log_stream (s_logs[i])) == 0)
            return s_logs[i];
    return NULL;
}

static void
s_register (shoal_log_t *log)
{
    for (int i = 0; i < S_MAX_LOGS; i++)
        if (!s_logs[i]) {
            s_logs[i] = log;
            return;
        }
    bail ("too many logs");
}

static void
s_unregister_and_close (shoal_log_t **log_p)
{
    for (int i = 0; i < S_MAX_LOGS; i++)
        if (s_logs[i] == *log_p)
            s_logs[i] = NULL;
    shoal_log_close (log_p);
}

//  --------------------------------------------------------------------------
//  A server socket and a client

typedef struct {
    zsock_t *router;      //  the node's side, ROUTER_MANDATORY
    zsock_t *dealer;      //  the client
    zframe_t *routing_id; //  the client's routing id, as the router saw it
    char endpoint[64];    //  where the router is bound
} s_pair_t;

static int s_pair_count;

//  hwm > 0 makes the router -> dealer pipe hold about 2 * hwm messages.
static s_pair_t *
s_pair_new (int hwm)
{
    s_pair_t *pair = (s_pair_t *) calloc (1, sizeof (s_pair_t));
    char *endpoint = pair->endpoint;
    snprintf (endpoint, sizeof pair->endpoint, "inproc://test-replay-%d", ++s_pair_count);
    pair->router = zsock_new (ZMQ_ROUTER);
    pair->dealer = zsock_new (ZMQ_DEALER);
    if (!pair->router || !pair->dealer)
        bail ("cannot create sockets");
    zsock_set_router_mandatory (pair->router, 1);
    if (hwm > 0) {
        zsock_set_sndhwm (pair->router, hwm);
        zsock_set_rcvhwm (pair->dealer, hwm);
    }
    if (zsock_bind (pair->router, "%s", endpoint) || zsock_connect (pair->dealer, "%s", endpoint))
        bail ("cannot bind or connect %s", endpoint);
    return pair;
}

static void
s_pair_destroy (s_pair_t **pair_p)
{
    s_pair_t *pair = *pair_p;
    zsock_destroy (&pair->dealer);
    zsock_destroy (&pair->router);
    zframe_destroy (&pair->routing_id);
    free (pair);
    *pair_p = NULL;
}

//  Sends a Request from the dealer and receives it on the router.
static Shoal__V1__Request *
s_roundtrip (s_pair_t *pair, zsock_t *dealer, const Shoal__V1__Request *request)
{
    zframe_t *frame = zframe_new (NULL, shoal__v1__request__get_packed_size (request));
    shoal__v1__request__pack (request, zframe_data (frame));
    if (zframe_send (&frame, dealer, 0))
        bail ("cannot send a request");
    zsock_set_rcvtimeo (pair->router, 1000);
    zmsg_t *msg = zmsg_recv (pair->router);
    if (!msg || zmsg_size (msg) != 2)
        bail ("router did not get the request");
    zframe_destroy (&pair->routing_id);
    pair->routing_id = zmsg_pop (msg);
    zframe_t *body = zmsg_pop (msg);
    Shoal__V1__Request *got =
        shoal__v1__request__unpack (NULL, zframe_size (body), zframe_data (body));
    zframe_destroy (&body);
    zmsg_destroy (&msg);
    if (!got)
        bail ("router cannot decode the request");
    return got;
}

typedef struct {
    const uint8_t *origin; //  NULL = s_origin
    size_t origin_size;    //  0 = 16
    const char *stream;    //  stream
    uint64_t from, to;     //  range
    uint32_t credit;       //  initial credit
    const char **types;    //  filter, NULL-terminated, or NULL
    int64_t from_time_ns;  //  when from is 0
} s_ask_t;

//  Sends a ReplayRequest over the pair (or from another dealer) and hands
//  it to the server. Returns what shoal_replay_start returned.
static int
s_start (shoal_replay_t *replay, s_pair_t *pair, zsock_t *dealer, uint64_t request_id,
         const s_ask_t *ask)
{
    Shoal__V1__ReplayRequest replay_request = SHOAL__V1__REPLAY_REQUEST__INIT;
    replay_request.origin.data = (uint8_t *) (ask->origin ? ask->origin : s_origin);
    replay_request.origin.len = ask->origin_size ? ask->origin_size : 16;
    if (ask->origin_size == (size_t) -1)
        replay_request.origin.len = 0;
    replay_request.stream = (char *) ask->stream;
    replay_request.from_seq = ask->from;
    replay_request.to_seq = ask->to;
    replay_request.credit = ask->credit;
    replay_request.from_time_ns = ask->from_time_ns;
    size_t n_types = 0;
    while (ask->types && ask->types[n_types])
        n_types++;
    replay_request.n_types = n_types;
    replay_request.types = (char **) ask->types;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = request_id;
    request.body_case = SHOAL__V1__REQUEST__BODY_REPLAY;
    request.replay = &replay_request;
    Shoal__V1__Request *got = s_roundtrip (pair, dealer ? dealer : pair->dealer, &request);
    if (got->body_case != SHOAL__V1__REQUEST__BODY_REPLAY)
        bail ("request lost its body");
    int rc =
        shoal_replay_start (replay, pair->router, pair->routing_id, got->request_id, got->replay);
    shoal__v1__request__free_unpacked (got, NULL);
    return rc;
}

static int
s_credit (shoal_replay_t *replay, s_pair_t *pair, uint64_t replay_id, uint32_t credit)
{
    Shoal__V1__Credit body = SHOAL__V1__CREDIT__INIT;
    body.replay_id = replay_id;
    body.credit = credit;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = 999;
    request.body_case = SHOAL__V1__REQUEST__BODY_CREDIT;
    request.credit = &body;
    Shoal__V1__Request *got = s_roundtrip (pair, pair->dealer, &request);
    int rc =
        shoal_replay_credit (replay, pair->routing_id, got->credit->replay_id, got->credit->credit);
    shoal__v1__request__free_unpacked (got, NULL);
    return rc;
}

//  --------------------------------------------------------------------------
//  What a client received for one request

typedef struct {
    uint64_t request_id; //  responses for this request_id land here
    const char *stream;  //  stream replayed, to rebuild expected bytes
    size_t bytes_bound;  //  batch_bytes in force, 0 = not checked
    size_t events;       //  events received
    uint64_t last_seq;   //  seq of the last one
    uint64_t max_seq;    //  highest seq received
    bool in_order;       //  every event was last_seq + 1 (or the first)
    bool identical;      //  every event byte-identical to the stored one
    bool decoded;        //  protobuf-c and shoal_event_decode agree with the bytes
    bool canonical;      //  protobuf-c re-packs each response to the same bytes
    bool bounded;        //  no batch over bytes_bound with more than one event
    size_t batches;      //  batch responses received
    size_t max_batch;    //  most events in one batch
    bool done;           //  a batch with done = true arrived
    bool after_end;      //  something arrived after done or an error
    uint64_t next_seq;   //  next_seq of the last batch
    uint64_t head_seq;   //  head_seq of the last batch
    uint32_t error;      //  Error.code, 0 = none
    char message[600];   //  Error.message
    const char *types;   //  when set, every event's type must be in this "|A|B|" list
    bool types_ok;       //  every event matched the filter
} s_got_t;

static void
s_got_init (s_got_t *got, uint64_t request_id, const char *stream)
{
    memset (got, 0, sizeof *got);
    got->request_id = request_id;
    got->stream = stream;
    got->in_order = got->identical = got->decoded = got->canonical = true;
    got->bounded = got->types_ok = true;
}

static int
s_varint (const uint8_t **p, const uint8_t *end, uint64_t *value)
{
    *value = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t byte = *(*p)++;
        *value |= (uint64_t) (byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return 0;
    }
    return -1;
}

//  One event embedded in a batch, as raw bytes.
static void
s_take_event (s_got_t *got, const uint8_t *data, size_t size, const Shoal__V1__Event *unpacked)
{
    shoal_event_peek_t peek;
    if (shoal_event_peek (data, size, &peek)) {
        got->identical = got->decoded = false;
        return;
    }
    uint64_t seq = peek.seq;
    if (got->events > 0 && seq != got->last_seq + 1)
        got->in_order = false;
    got->events++;
    got->last_seq = seq;
    if (seq > got->max_seq)
        got->max_seq = seq;
    size_t expected_size;
    uint8_t *expected = s_event_bytes (got->stream, seq, &expected_size);
    if (expected_size != size || memcmp (expected, data, size) != 0)
        got->identical = false;
    free (expected);
    shoal_event_t *event = shoal_event_decode (data, size, 0, NULL);
    if (!event || !unpacked || unpacked->seq != seq || shoal_event_seq (event) != seq
        || strcmp (unpacked->type, shoal_event_type (event)) != 0
        || unpacked->payload.len != shoal_event_payload_size (event))
        got->decoded = false;
    if (got->types) {
        char needle[160];
        snprintf (needle, sizeof needle, "|%.*s|", (int) peek.type_size, peek.type);
        if (!strstr (got->types, needle))
            got->types_ok = false;
    }
    shoal_event_destroy (&event);
}

//  Checks one batch frame by walking its bytes, independently of protobuf-c.
static void
s_take_batch (s_got_t *got, const uint8_t *data, size_t size, const Shoal__V1__ReplayBatch *batch)
{
    const uint8_t *p = data, *end = data + size, *body = NULL;
    uint64_t key, length;
    while (p < end) {
        if (s_varint (&p, end, &key))
            break;
        if ((key & 7) == 0) {
            if (s_varint (&p, end, &length))
                break;
            continue;
        }
        if ((key & 7) != 2 || s_varint (&p, end, &length) || length > (uint64_t) (end - p))
            break;
        if (key == 0x22) {
            body = p;
            end = p + length;
            break;
        }
        p += length;
    }
    if (!body) {
        got->decoded = false;
        return;
    }
    size_t index = 0, count = 0, bytes = 0;
    for (p = body; p < end;) {
        if (s_varint (&p, end, &key))
            break;
        if (key == 0x0a) {
            if (s_varint (&p, end, &length) || length > (uint64_t) (end - p))
                break;
            s_take_event (got, p, length, index < batch->n_events ? batch->events[index] : NULL);
            index++;
            count++;
            bytes += length;
            p += length;
        }
        else if ((key & 7) == 0) {
            if (s_varint (&p, end, &length))
                break;
        }
        else
            break;
    }
    if (p != end || index != batch->n_events)
        got->decoded = false;
    if (got->bytes_bound && count > 1 && bytes > got->bytes_bound)
        got->bounded = false;
    if (count > got->max_batch)
        got->max_batch = count;
}

//  Reads responses until none comes for wait_ms; files each under its request.
static size_t
s_drain (s_pair_t *pair, s_got_t *gots, size_t got_count, int wait_ms)
{
    size_t received = 0;
    zsock_set_rcvtimeo (pair->dealer, wait_ms);
    zframe_t *frame;
    while ((frame = zframe_recv (pair->dealer))) {
        received++;
        Shoal__V1__Response *response =
            shoal__v1__response__unpack (NULL, zframe_size (frame), zframe_data (frame));
        s_got_t *got = NULL;
        for (size_t i = 0; response && i < got_count; i++)
            if (gots[i].request_id == response->request_id)
                got = &gots[i];
        if (!got) {
            diag ("unexpected response (%zu bytes)", zframe_size (frame));
            for (size_t i = 0; i < got_count; i++)
                gots[i].decoded = false;
        }
        else {
            if (got->done || got->error)
                got->after_end = true;
            size_t packed_size = shoal__v1__response__get_packed_size (response);
            uint8_t *packed = (uint8_t *) malloc (packed_size);
            shoal__v1__response__pack (response, packed);
            if (packed_size != zframe_size (frame)
                || memcmp (packed, zframe_data (frame), packed_size) != 0)
                got->canonical = false;
            free (packed);
            if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR) {
                got->error = response->error->code;
                snprintf (got->message, sizeof got->message, "%s", response->error->message);
            }
            else if (response->body_case == SHOAL__V1__RESPONSE__BODY_BATCH) {
                got->batches++;
                s_take_batch (got, zframe_data (frame), zframe_size (frame), response->batch);
                got->next_seq = response->batch->next_seq;
                got->head_seq = response->batch->head_seq;
                got->done = response->batch->done;
            }
            else
                got->decoded = false;
        }
        if (response)
            shoal__v1__response__free_unpacked (response, NULL);
        zframe_destroy (&frame);
    }
    return received;
}

//  Pumps and drains until the server has nothing more to send right now.
static void
s_run (shoal_replay_t *replay, s_pair_t *pair, s_got_t *gots, size_t got_count, size_t budget)
{
    for (int round = 0; round < 100000; round++) {
        int more = shoal_replay_pump (replay, pair->router, budget);
        size_t received = s_drain (pair, gots, got_count, more ? 0 : 20);
        if (!more && received == 0)
            return;
    }
    bail ("the replay never settles");
}

static bool
s_contains (const char *text, const char *part)
{
    bool found = strstr (text, part) != NULL;
    if (!found)
        diag ("\"%s\" does not contain \"%s\"", text, part);
    return found;
}

static shoal_replay_t *
s_replay_new (size_t batch_events, size_t batch_bytes, size_t max_sessions, int idle_ms)
{
    shoal_replay_config_t config;
    shoal_replay_config_defaults (&config);
    if (batch_events)
        config.batch_events = batch_events;
    if (batch_bytes)
        config.batch_bytes = batch_bytes;
    if (max_sessions)
        config.max_sessions = max_sessions;
    if (idle_ms)
        config.idle_timeout_ms = idle_ms;
    shoal_replay_t *replay = shoal_replay_new (s_lookup, NULL, &config);
    if (!replay)
        bail ("cannot create the replay server");
    return replay;
}

//  --------------------------------------------------------------------------
//  Tests

static void
test_full_replay (void)
{
    shoal_log_t *log = s_log_new ("orders", 1000, NULL);
    s_register (log);
    shoal_replay_t *replay = s_replay_new (64, 0, 0, 0);
    s_pair_t *pair = s_pair_new (0);
    s_got_t got;
    s_got_init (&got, 42, "orders");

    s_ask_t ask = {.stream = "orders", .from = 1, .credit = 5000};
    is_int (s_start (replay, pair, NULL, 42, &ask), 0, "a valid request starts a session");
    is_int (shoal_replay_sessions (replay), 1, "one session open");
    s_run (replay, pair, &got, 1, 10000);
    is_int (got.events, 1000, "full replay: all 1000 events arrive");
    ok (got.in_order && got.last_seq == 1000, "full replay: seqs 1..1000 in order, exactly once");
    ok (got.identical, "every embedded event is byte-identical to the stored one");
    ok (got.decoded, "protobuf-c decodes every batch to the same events");
    ok (got.canonical, "hand-encoded batches equal protobuf-c's own encoding byte for byte");
    ok (got.max_batch <= 64, "no batch holds more than batch_events (most: %zu)", got.max_batch);
    is_int (got.batches, 16, "1000 events in batches of 64 take 16 batches, done on the last");
    ok (got.done, "the last batch has done = true");
    is_int (got.next_seq, 1001, "done batch has next_seq = head + 1");
    is_int (got.head_seq, 1000, "done batch has head_seq = head");
    is_int (got.error, 0, "no error");
    ok (!got.after_end, "nothing arrives after done");
    is_int (shoal_replay_sessions (replay), 0, "the session ends with done");
    is_int (shoal_replay_requests_served (replay), 1, "one request served");
    is_int (shoal_replay_events_sent (replay), 1000, "1000 events counted as sent");
    is_int (shoal_replay_pump (replay, pair->router, 100), 0, "pump with no sessions returns 0");

    //  Batches bounded by bytes; an event bigger than the bound travels alone.
    shoal_log_t *bulky = s_log_new ("bulky", 60, NULL);
    s_register (bulky);
    shoal_replay_t *small = s_replay_new (0, 1000, 0, 0);
    s_got_init (&got, 7, "bulky");
    got.bytes_bound = 1000;
    ask = (s_ask_t){.stream = "bulky", .from = 1, .credit = 100};
    is_int (s_start (small, pair, NULL, 7, &ask), 0, "replay of a stream with big events starts");
    s_run (small, pair, &got, 1, 1000);
    ok (got.events == 60 && got.in_order && got.identical && got.done,
        "with batch_bytes 1000 all 60 events arrive in order");
    ok (got.bounded, "no batch of several events exceeds batch_bytes");
    ok (got.batches >= 12, "3000-byte events each travel in a batch of their own (%zu batches)",
        got.batches);
    shoal_replay_destroy (&small);

    s_pair_destroy (&pair);
    shoal_replay_destroy (&replay);
    ok (replay == NULL, "destroy nulls the pointer");
    shoal_replay_destroy (&replay);
    s_unregister_and_close (&bulky);
    s_unregister_and_close (&log);
}

static void
test_credit (void)
{
    shoal_log_t *log = s_log_new ("credit", 50, NULL);
    s_register (log);
    shoal_replay_t *replay = s_replay_new (4, 0, 0, 0);
    s_pair_t *pair = s_pair_new (0);
    s_got_t got;
    s_got_init (&got, 3, "credit");
    s_ask_t ask = {.stream = "credit", .from = 1, .credit = 10};
    is_int (s_start (replay, pair, NULL, 3, &ask), 0, "credit 10: session starts");
    s_run (replay, pair, &got, 1, 1000);
    is_int (got.events, 10, "credit 10: exactly 10 events arrive");
    ok (!got.done, "credit 10: the replay is not done");
    is_int (shoal_replay_pump (replay, pair->router, 1000), 0, "pump reports nothing to send");
    s_drain (pair, &got, 1, 30);
    is_int (got.events, 10, "still 10 events: nothing more comes without credit");
    is_int (s_credit (replay, pair, 3, 15), 0, "Credit for the session is accepted");
    s_run (replay, pair, &got, 1, 1000);
    is_int (got.events, 25, "Credit 15 lets exactly 15 more through");
    is_int (s_credit (replay, pair, 4, 100), -1, "Credit for an unknown replay_id is refused");
    s_run (replay, pair, &got, 1, 1000);
    is_int (got.events, 25, "credit for another replay_id does not move this one");
    is_int (s_credit (replay, pair, 3, 100), 0, "more credit");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 50 && got.in_order && got.identical, "then the rest arrives, in order");
    ok (got.done && got.next_seq == 51, "and the replay ends with done, next_seq 51");
    is_int (s_credit (replay, pair, 3, 1), -1, "Credit after the end is refused");

    //  Credit 0: nothing at all until Credit.
    s_got_init (&got, 4, "credit");
    ask.credit = 0;
    is_int (s_start (replay, pair, NULL, 4, &ask), 0, "credit 0: session starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 0 && got.batches == 0, "credit 0: nothing is sent");
    is_int (s_credit (replay, pair, 4, 1), 0, "credit 1");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 1 && got.last_seq == 1, "credit 1: exactly event 1");
    shoal_replay_destroy (&replay);
    s_pair_destroy (&pair);
    s_unregister_and_close (&log);
}

static void
test_type_filter (void)
{
    shoal_log_t *log = s_log_new ("typed", 30, NULL);
    s_register (log);
    shoal_replay_t *replay = s_replay_new (4, 0, 0, 0);
    s_pair_t *pair = s_pair_new (0);
    s_got_t got;

    //  Beta is seq % 3 == 1: 1, 4, ..., 28 (10 events); 29 and 30 are not Beta.
    const char *beta[] = {"Beta", NULL};
    s_got_init (&got, 1, "typed");
    got.types = "|Beta|";
    s_ask_t ask = {.stream = "typed", .from = 1, .credit = 3, .types = beta};
    is_int (s_start (replay, pair, NULL, 1, &ask), 0, "filtered replay starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 3 && got.last_seq == 7, "credit 3: Beta events 1, 4, 7 arrive");
    ok (got.types_ok, "only Beta events are sent");
    is_int (got.next_seq, 10, "next_seq advances past the skipped events 8 and 9");
    ok (!got.done, "not done while a match waits for credit");
    is_int (s_credit (replay, pair, 1, 7), 0, "credit 7, exactly the Beta events left");
    s_run (replay, pair, &got, 1, 1000);
    is_int (got.events, 10, "skipped events cost no credit: all 10 Beta events arrive");
    ok (got.types_ok && got.identical, "all of type Beta and byte-identical");
    ok (got.done, "the replay ends with done although credit is spent");
    is_int (got.next_seq, 31, "next_seq 31: past the trailing non-matching 29 and 30");

    const char *two[] = {"Alpha", "Gamma", NULL};
    s_got_init (&got, 2, "typed");
    got.types = "|Alpha|Gamma|";
    ask = (s_ask_t){.stream = "typed", .from = 1, .to = 12, .credit = 100, .types = two};
    is_int (s_start (replay, pair, NULL, 2, &ask), 0, "two-type filter starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 8 && got.types_ok && got.done && got.next_seq == 13,
        "two types over 1..12: 8 events, done, next_seq 13");

    const char *none[] = {"Delta", NULL};
    s_got_init (&got, 3, "typed");
    ask = (s_ask_t){.stream = "typed", .from = 1, .credit = 0, .types = none};
    is_int (s_start (replay, pair, NULL, 3, &ask), 0, "a filter that matches nothing starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 0 && got.batches == 1 && got.done,
        "an empty range after filtering still ends with one done batch, even without credit");
    is_int (got.next_seq, 31, "and its next_seq is past the range");
    is_int (shoal_replay_sessions (replay), 0, "no session left");

    const char *bad[] = {"Beta", "no spaces", NULL};
    s_got_init (&got, 4, "typed");
    ask = (s_ask_t){.stream = "typed", .from = 1, .credit = 10, .types = bad};
    is_int (s_start (replay, pair, NULL, 4, &ask), SHOAL_WIRE_BAD_REQUEST,
            "an invalid type in the filter is a bad request");
    s_drain (pair, &got, 1, 20);
    ok (got.error == 1 && s_contains (got.message, "no spaces"), "Error 1 names the bad type");
    shoal_replay_destroy (&replay);
    s_pair_destroy (&pair);
    s_unregister_and_close (&log);
}

static void
test_durable (void)
{
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.fsync = SHOAL_FSYNC_BATCH;
    config.window_us = 60 * 1000000LL; //  no flush unless asked
    shoal_log_t *log = s_log_new ("durable", 10, &config);
    s_register (log);
    s_append (log, 11, 20);
    is_int (shoal_log_durable (log), 10, "appends 11..20 are not durable yet");
    is_int (shoal_log_head (log), 20, "head is 20");

    shoal_replay_t *replay = s_replay_new (4, 0, 0, 0);
    s_pair_t *pair = s_pair_new (0);
    s_got_t got;
    s_got_init (&got, 9, "durable");
    s_ask_t ask = {.stream = "durable", .from = 1, .credit = 100};
    is_int (s_start (replay, pair, NULL, 9, &ask), 0, "replay to the head (20) starts");
    s_run (replay, pair, &got, 1, 1000);
    is_int (got.events, 10, "only the 10 durable events are sent");
    is_int (got.max_seq, 10, "nothing above the durable watermark");
    ok (!got.done, "not done: 11..20 wait for durability");
    is_int (shoal_replay_pump (replay, pair->router, 1000), 0, "the waiting session is not ready");
    is_int (shoal_replay_sessions (replay), 1, "the session waits");
    is_int (shoal_log_flush (log), 0, "flush makes 11..20 durable");
    is_int (shoal_log_durable (log), 20, "durable is 20");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 20 && got.in_order && got.identical, "after the flush 11..20 follow");
    ok (got.done && got.next_seq == 21, "and the replay is done");
    shoal_replay_destroy (&replay);
    s_pair_destroy (&pair);
    s_unregister_and_close (&log);
}

static void
test_range (void)
{
    shoal_log_t *log = s_log_new ("range", 10, NULL);
    s_register (log);
    shoal_replay_t *replay = s_replay_new (0, 0, 0, 0);
    s_pair_t *pair = s_pair_new (0);
    s_got_t got;

    s_got_init (&got, 1, "range");
    s_ask_t ask = {.stream = "range", .from = 1, .to = 0, .credit = 0};
    is_int (s_start (replay, pair, NULL, 1, &ask), 0, "to_seq 0 replay starts at head 10");
    s_append (log, 11, 15);
    shoal_log_flush (log);
    is_int (s_credit (replay, pair, 1, 100), 0, "credit after 5 more appends");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 10 && got.last_seq == 10, "to_seq 0 is the head at request time: 1..10");
    ok (got.done && got.next_seq == 11, "done with next_seq 11");
    is_int (got.head_seq, 15, "head_seq tells the head now, 15");

    s_got_init (&got, 2, "range");
    ask = (s_ask_t){.stream = "range", .from = 3, .to = 7, .credit = 100};
    is_int (s_start (replay, pair, NULL, 2, &ask), 0, "replay 3..7 starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 5 && got.last_seq == 7 && got.in_order && got.done && got.next_seq == 8,
        "replay 3..7 sends exactly 3..7, next_seq 8");

    s_got_init (&got, 3, "range");
    ask = (s_ask_t){.stream = "range", .from = 14, .to = 100, .credit = 100};
    is_int (s_start (replay, pair, NULL, 3, &ask), 0, "to_seq beyond the head is accepted");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 2 && got.last_seq == 15 && got.done && got.next_seq == 16,
        "and cut at the head: 14, 15, done");

    s_got_init (&got, 4, "range");
    ask = (s_ask_t){.stream = "range", .from = 0, .from_time_ns = S_T0 + 5500, .credit = 100};
    is_int (s_start (replay, pair, NULL, 4, &ask), 0, "from_time_ns replay starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 10 && got.in_order && got.identical,
        "from_time_ns between 5 and 6 replays 6..15");
    is_int (got.events ? got.last_seq - got.events + 1 : 0, 6, "the first event sent is seq 6");

    s_got_init (&got, 5, "range");
    ask = (s_ask_t){.stream = "range", .from = 0, .credit = 100};
    is_int (s_start (replay, pair, NULL, 5, &ask), 0, "from_seq 0 without a time starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 15 && got.done, "from_seq 0 and no time replays from the first seq");

    //  A time after the last event, like from_seq = head + 1, is an
    //  up-to-date client: an empty batch with done and next_seq = head + 1.
    s_got_init (&got, 6, "range");
    ask = (s_ask_t){.stream = "range", .from = 0, .from_time_ns = S_T0 + 999999, .credit = 9};
    is_int (s_start (replay, pair, NULL, 6, &ask), 0, "from_time_ns after the last event starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 0 && got.done && got.error == 0 && got.next_seq == 16,
        "from_time_ns after the last event: no events, done, next_seq 16");
    s_got_init (&got, 7, "range");
    ask = (s_ask_t){.stream = "range", .from = 16, .credit = 9};
    is_int (s_start (replay, pair, NULL, 7, &ask), 0, "from_seq = head + 1 starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 0 && got.done && got.error == 0 && got.next_seq == 16,
        "from_seq = head + 1: no events, done, next_seq 16");
    shoal_replay_destroy (&replay);
    s_pair_destroy (&pair);
    s_unregister_and_close (&log);
}

//  Starts a request that must fail; checks the code, the Error response
//  and that the message contains `part`.
static void
s_refused (shoal_replay_t *replay, s_pair_t *pair, uint64_t request_id, const s_ask_t *ask,
           int code, const char *part, const char *what)
{
    s_got_t got;
    s_got_init (&got, request_id, ask->stream);
    size_t before = shoal_replay_sessions (replay);
    is_int (s_start (replay, pair, NULL, request_id, ask), code, "%s: returns code %d", what, code);
    s_drain (pair, &got, 1, 20);
    ok (got.error == (uint32_t) code && got.batches == 0 && !got.after_end,
        "%s: one Error %d response, echoing request_id", what, code);
    ok (s_contains (got.message, part), "%s: the message says \"%s\"", what, part);
    is_int (shoal_replay_sessions (replay), before, "%s: no session is made", what);
}

static void
test_errors (void)
{
    shoal_log_t *log = s_log_new ("errors", 50, NULL);
    s_register (log);
    shoal_replay_t *replay = s_replay_new (0, 0, 1, 0);
    s_pair_t *pair = s_pair_new (0);
    s_ask_t ask = {.stream = "errors", .from = 1, .credit = 10};

    ask.origin_size = 8;
    s_refused (replay, pair, 11, &ask, 1, "16 bytes", "origin of 8 bytes");
    ask.origin_size = (size_t) -1;
    s_refused (replay, pair, 12, &ask, 1, "16 bytes", "missing origin");
    ask.origin_size = 0;
    ask.stream = "Bad Stream!";
    s_refused (replay, pair, 13, &ask, 1, "invalid stream name \"Bad Stream!\"", "invalid stream");
    ask.stream = "";
    s_refused (replay, pair, 14, &ask, 1, "invalid stream", "empty stream");
    ask.stream = "errors";
    ask.from = 20;
    ask.to = 10;
    s_refused (replay, pair, 15, &ask, 1, "to_seq 10 is below from_seq 20", "to < from");
    ask.from = 1;
    ask.to = 0;
    ask.origin = s_stranger;
    s_refused (replay, pair, 16, &ask, 2, "5152535455565758595a5b5c5d5e5f60", "unknown origin");
    ask.origin = NULL;
    ask.stream = "nosuch";
    s_refused (replay, pair, 17, &ask, 2, "nosuch", "unknown stream");
    ask.stream = "errors";
    ask.from = 52;
    s_refused (replay, pair, 18, &ask, 3, "beyond the head: available are first 1, head 50",
               "from beyond the head");

    //  Busy: max_sessions 1 (the session has credit: one parked for
    //  credit would be dropped to make room instead).
    s_got_t got;
    s_got_init (&got, 20, "errors");
    ask.from = 1;
    ask.credit = 5;
    is_int (s_start (replay, pair, NULL, 20, &ask), 0, "first session starts");
    s_refused (replay, pair, 21, &ask, 7, "too many", "second session with max_sessions 1");
    is_int (s_start (replay, pair, NULL, 20, &ask), 0,
            "a repeated request_id replaces its session rather than being busy");
    is_int (shoal_replay_sessions (replay), 1, "still one session");
    shoal_replay_destroy (&replay);
    s_pair_destroy (&pair);
    s_unregister_and_close (&log);

    //  Trimmed: small segments and retention.
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.segment_size = 2048;
    log = s_log_new ("trimmed", 200, &config);
    s_register (log);
    shoal_log_set_retention (log, 6000, 0);
    ok (shoal_log_apply_retention (log, shoal_time_ns ()) > 0, "retention drops old segments");
    uint64_t first = shoal_log_first (log);
    ok (first > 1, "first seq is now %llu", (unsigned long long) first);
    replay = s_replay_new (0, 0, 0, 0);
    pair = s_pair_new (0);
    char part[80];
    snprintf (part, sizeof part, "trimmed by retention: available are first %llu, head 200",
              (unsigned long long) first);
    ask = (s_ask_t){.stream = "trimmed", .from = 1, .credit = 10};
    s_refused (replay, pair, 30, &ask, 3, part, "trimmed from_seq");
    ask.from = first;
    s_got_init (&got, 31, "trimmed");
    is_int (s_start (replay, pair, NULL, 31, &ask), 0, "from the first seq held is fine");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 10 && got.last_seq == first + 9, "10 events from the first seq");

    //  Trimmed while the session runs: Error 3 ends it.
    s_append (log, 201, 400);
    shoal_log_flush (log);
    ok (shoal_log_apply_retention (log, shoal_time_ns ()) > 0, "retention runs again");
    ok (shoal_log_first (log) > got.last_seq + 1, "the session's next seq is trimmed now");
    is_int (s_credit (replay, pair, 31, 100), 0, "credit to go on");
    s_run (replay, pair, &got, 1, 1000);
    is_int (got.events, 10, "no event after the trim");
    ok (got.error == 3 && s_contains (got.message, "trimmed"),
        "Error 3 when the range is trimmed during the replay");
    is_int (shoal_replay_sessions (replay), 0, "and the session ends");
    shoal_replay_destroy (&replay);
    s_pair_destroy (&pair);
    s_unregister_and_close (&log);
}

//  Every Error reply (the engine's and the replay server's) goes through
//  shoal_wire_error, which keeps its message UTF-8: bytes outside
//  printable ASCII, as a client's input or a file name may carry, become
//  '?'.
static void
test_error_text (void)
{
    zframe_t *frame = shoal_wire_error (7, SHOAL_WIRE_BAD_REQUEST, "bad \x01 byte \xff\xfe end");
    Shoal__V1__Response *response =
        frame ? shoal__v1__response__unpack (NULL, zframe_size (frame), zframe_data (frame)) : NULL;
    ok (response && response->request_id == 7
            && response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR
            && response->error->code == SHOAL_WIRE_BAD_REQUEST,
        "shoal_wire_error: an Error reply with its request id and code");
    is_str (response ? response->error->message : NULL, "bad ? byte ?? end",
            "shoal_wire_error: bytes outside printable ASCII become '?'");
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
    zframe_destroy (&frame);
}

static void
test_corrupt (void)
{
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.segment_size = 4096;
    shoal_log_t *log = s_log_new ("corrupt", 100, &config);
    ok (shoal_log_segments (log) > 2, "several segments (%zu)", shoal_log_segments (log));
    shoal_log_close (&log);

    //  Record 20 is in the first (closed) segment: 128-byte header, then
    //  32-byte frame headers and the event bytes.
    uint64_t offset = 128;
    for (uint64_t seq = 1; seq < 20; seq++) {
        size_t size;
        free (s_event_bytes ("corrupt", seq, &size));
        offset += 32 + size;
    }
    offset += 32 + 10;
    char path[4300];
    snprintf (path, sizeof path, "%s/00000000000000000001.seg", tap_path ("corrupt"));
    int fd = open (path, O_RDWR);
    uint8_t byte = 0;
    bool flipped = fd >= 0 && pread (fd, &byte, 1, (off_t) offset) == 1;
    byte ^= 0x20;
    flipped = flipped && pwrite (fd, &byte, 1, (off_t) offset) == 1;
    if (fd >= 0)
        close (fd);
    ok (flipped, "flipped a payload byte of record 20 in a closed segment");

    int error = 0;
    log = shoal_log_open (tap_path ("corrupt"), s_origin, "corrupt", false, &config, &error);
    if (!log)
        bail ("reopen: %s", shoal_log_open_error ());
    s_register (log);
    shoal_replay_t *replay = s_replay_new (8, 0, 0, 0);
    s_pair_t *pair = s_pair_new (0);
    s_got_t got;
    s_got_init (&got, 5, "corrupt");
    s_ask_t ask = {.stream = "corrupt", .from = 1, .credit = 1000};
    is_int (s_start (replay, pair, NULL, 5, &ask), 0, "replay over the damage starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 19 && got.last_seq == 19 && got.in_order,
        "the 19 good events before the damage arrive");
    ok (got.identical, "every event sent is the stored good one");
    ok (got.max_seq < 20, "the corrupted record is never sent");
    is_int (got.error, 6, "Error 6, storage failure");
    ok (s_contains (got.message, "seq 20") && s_contains (got.message, "checksum"),
        "the message names the seq and the checksum failure");
    ok (!got.done && !got.after_end, "no done and nothing after the error");
    is_int (shoal_replay_sessions (replay), 0, "the session ends");

    //  From past the damage the replay is fine.
    s_got_init (&got, 6, "corrupt");
    ask.from = 21;
    is_int (s_start (replay, pair, NULL, 6, &ask), 0, "replay past the damage starts");
    s_run (replay, pair, &got, 1, 1000);
    ok (got.events == 80 && got.done && got.identical, "21..100 replay fine");
    shoal_replay_destroy (&replay);
    s_pair_destroy (&pair);
    s_unregister_and_close (&log);
}

static void
test_fair (void)
{
    shoal_log_t *log = s_log_new ("fair", 1000, NULL);
    s_register (log);
    shoal_replay_t *replay = s_replay_new (10, 0, 0, 0);
    s_pair_t *pair = s_pair_new (0);
    s_got_t gots[2];
    s_got_init (&gots[0], 1, "fair");
    s_got_init (&gots[1], 2, "fair");
    s_ask_t ask = {.stream = "fair", .from = 1, .credit = 10000};
    is_int (s_start (replay, pair, NULL, 1, &ask), 0, "first big replay starts");
    is_int (s_start (replay, pair, NULL, 2, &ask), 0, "second big replay starts");
    is_int (shoal_replay_pump (replay, pair->router, 20), 1, "budget 20: more to do");
    s_drain (pair, gots, 2, 20);
    ok (gots[0].events == 10 && gots[1].events == 10,
        "budget 20 is shared: 10 and 10 (got %zu and %zu)", gots[0].events, gots[1].events);
    bool fair = true;
    int pumps = 0;
    while (shoal_replay_pump (replay, pair->router, 30) && pumps++ < 1000) {
        s_drain (pair, gots, 2, 0);
        long gap = (long) gots[0].events - (long) gots[1].events;
        if (gap > 20 || gap < -20)
            fair = false;
    }
    s_run (replay, pair, gots, 2, 30);
    ok (fair, "the two replays never drift more than two batches apart");
    ok (gots[0].events == 1000 && gots[1].events == 1000 && gots[0].done && gots[1].done,
        "both complete");
    ok (gots[0].in_order && gots[1].in_order && gots[0].identical && gots[1].identical,
        "both in order and byte-identical");

    //  A big replay with a budget per pump, and a small one that is not starved.
    s_unregister_and_close (&log);
    shoal_replay_destroy (&replay);
    replay = s_replay_new (0, 0, 0, 0);
    log = s_log_new ("huge", 20000, NULL);
    s_register (log);
    s_got_init (&gots[0], 100, "huge");
    s_got_init (&gots[1], 101, "huge");
    ask = (s_ask_t){.stream = "huge", .from = 1, .credit = 100000};
    is_int (s_start (replay, pair, NULL, 100, &ask), 0, "replay of 20000 events starts");
    bool within_budget = true, small_served = false;
    int small_pumps = 0;
    pumps = 0;
    for (; pumps < 10000; pumps++) {
        if (pumps == 5) {
            ask = (s_ask_t){.stream = "huge", .from = 500, .to = 509, .credit = 100};
            is_int (s_start (replay, pair, NULL, 101, &ask), 0, "a small replay joins");
        }
        size_t before = gots[0].events + gots[1].events;
        int more = shoal_replay_pump (replay, pair->router, 500);
        s_drain (pair, gots, 2, 0);
        if (gots[0].events + gots[1].events - before > 500)
            within_budget = false;
        if (pumps >= 5 && !small_served && ++small_pumps && gots[1].done)
            small_served = true;
        if (!more && gots[0].done)
            break;
    }
    s_run (replay, pair, gots, 2, 500);
    ok (within_budget, "no pump sends more than its budget of 500 events");
    ok (gots[0].events == 20000 && gots[0].in_order && gots[0].identical && gots[0].done,
        "the 20000-event replay completes in order (%zu pumps)", (size_t) pumps);
    ok (small_served && small_pumps <= 2, "the small replay is done within %d pump(s)",
        small_pumps);
    ok (gots[1].events == 10 && gots[1].done, "the small replay got its 10 events");
    is_int (shoal_replay_events_sent (replay), 20010, "events_sent counts both");
    shoal_replay_destroy (&replay);
    s_pair_destroy (&pair);
    s_unregister_and_close (&log);
}

static void
test_sessions (void)
{
    shoal_log_t *log = s_log_new ("sessions", 300, NULL);
    s_register (log);
    shoal_replay_t *replay = s_replay_new (10, 0, 0, 0);
    s_pair_t *pair = s_pair_new (0);
    s_got_t got;
    s_ask_t ask = {.stream = "sessions", .from = 1, .credit = 0};

    //  A repeated request_id replaces the session.
    s_got_init (&got, 7, "sessions");
    is_int (s_start (replay, pair, NULL, 7, &ask), 0, "request 7 from 1");
    ask = (s_ask_t){.stream = "sessions", .from = 5, .to = 7, .credit = 100};
    is_int (s_start (replay, pair, NULL, 7, &ask), 0, "request 7 again, from 5 to 7");
    is_int (shoal_replay_sessions (replay), 1, "the second replaces the first");
    s_run (replay, pair, &got, 1, 100);
    ok (got.events == 3 && got.last_seq == 7 && got.done && got.batches == 1,
        "only the new session's events arrive: 5, 6, 7");

    //  forget_log ends the sessions on that log.
    ask = (s_ask_t){.stream = "sessions", .from = 1, .credit = 0};
    is_int (s_start (replay, pair, NULL, 8, &ask), 0, "a session waiting for credit");
    shoal_replay_forget_log (replay, log);
    is_int (shoal_replay_sessions (replay), 0, "forget_log ends it");
    is_int (s_credit (replay, pair, 8, 10), -1, "its credit is refused");

    //  Idle timeout.
    shoal_replay_destroy (&replay);
    replay = s_replay_new (10, 0, 0, 40);
    is_int (s_start (replay, pair, NULL, 9, &ask), 0, "a session with no credit");
    shoal_replay_expire (replay, NULL);
    is_int (shoal_replay_sessions (replay), 1, "not idle yet");
    zclock_sleep (80);
    shoal_replay_expire (replay, NULL);
    is_int (shoal_replay_sessions (replay), 0, "dropped after the idle timeout");

    //  expire with a routing id drops that client's sessions only.
    s_pair_t *other = s_pair_new (0);
    is_int (s_start (replay, pair, NULL, 10, &ask), 0, "client A session 10");
    is_int (s_start (replay, pair, NULL, 11, &ask), 0, "client A session 11");
    zframe_t *client_a = zframe_dup (pair->routing_id);
    is_int (s_start (replay, other, NULL, 10, &ask), 0, "client B session 10 (same id)");
    is_int (shoal_replay_sessions (replay), 3, "three sessions");
    is_int (s_credit (replay, other, 10, 1), 0, "credit reaches client B's session 10");
    shoal_replay_expire (replay, client_a);
    is_int (shoal_replay_sessions (replay), 1, "expire (client A) leaves client B's session");
    zframe_destroy (&client_a);
    shoal_replay_destroy (&replay);
    s_pair_destroy (&other);

    //  EHOSTUNREACH: the client goes away mid-replay.
    replay = s_replay_new (10, 0, 0, 0);
    zsock_t *gone = zsock_new (ZMQ_DEALER);
    zsock_connect (gone, "%s", pair->endpoint);
    ask = (s_ask_t){.stream = "sessions", .from = 1, .credit = 0};
    is_int (s_start (replay, pair, gone, 1, &ask), 0, "leaving client: waiting session");
    ask.credit = 1000;
    is_int (s_start (replay, pair, gone, 2, &ask), 0, "leaving client: running session");
    is_int (s_start (replay, pair, NULL, 3, &ask), 0, "staying client: running session");
    ask.credit = 0;
    is_int (s_start (replay, pair, NULL, 4, &ask), 0, "staying client: waiting session");
    zsock_destroy (&gone);
    s_got_t gots[2];
    s_got_init (&gots[0], 3, "sessions");
    s_got_init (&gots[1], 4, "sessions");
    for (int i = 0; i < 1000 && shoal_replay_sessions (replay) > 2; i++) {
        shoal_replay_pump (replay, pair->router, 2);
        s_drain (pair, gots, 2, 2);
    }
    is_int (shoal_replay_sessions (replay), 2,
            "a gone client's sessions, waiting or running, are all dropped");
    s_run (replay, pair, gots, 2, 100);
    is_int (shoal_replay_sessions (replay), 1, "the staying client's waiting session stays");
    ok (gots[0].events == 300 && gots[0].done && gots[0].identical,
        "the staying client's replay completes");
    shoal_replay_destroy (&replay);
    s_pair_destroy (&pair);
    s_unregister_and_close (&log);
}

static void
test_full_pipe (void)
{
    shoal_log_t *log = s_log_new ("pipe", 400, NULL);
    s_register (log);
    shoal_replay_t *replay = s_replay_new (10, 0, 0, 0);
    s_pair_t *pair = s_pair_new (1);
    s_got_t got;
    s_got_init (&got, 1, "pipe");
    s_ask_t ask = {.stream = "pipe", .from = 1, .credit = 1000};
    is_int (s_start (replay, pair, NULL, 1, &ask), 0, "replay to a slow client starts");
    for (int i = 0; i < 20; i++)
        shoal_replay_pump (replay, pair->router, 1000);
    uint64_t sent = shoal_replay_events_sent (replay);
    ok (sent > 0 && sent < 400, "a full pipe stops the replay (%llu of 400 sent)",
        (unsigned long long) sent);
    is_int (shoal_replay_pump (replay, pair->router, 1000), 0,
            "a session blocked on the socket is not reported ready");
    is_int (shoal_replay_sessions (replay), 1, "the session waits, EAGAIN is not fatal");
    //  The router learns that the pipe has room when it processes its
    //  commands, at most about once a millisecond: give it time.
    for (int i = 0; i < 5000 && !got.done; i++) {
        shoal_replay_pump (replay, pair->router, 1000);
        s_drain (pair, &got, 1, 1);
    }
    ok (got.events == 400 && got.in_order && got.identical && got.done,
        "after draining, all 400 events arrive once, in order: no batch lost or repeated "
        "(%zu events, %zu batches)",
        got.events, got.batches);
    is_int (shoal_replay_events_sent (replay), 400, "events_sent is 400");
    shoal_replay_destroy (&replay);
    s_pair_destroy (&pair);
    s_unregister_and_close (&log);
}

int
main (void)
{
    plan_lazy ();
    zsys_init ();
    zsys_set_linger (0);
    test_full_replay ();
    test_credit ();
    test_type_filter ();
    test_durable ();
    test_range ();
    test_errors ();
    test_error_text ();
    test_corrupt ();
    test_fair ();
    test_sessions ();
    test_full_pipe ();
    return done_testing ();
}
