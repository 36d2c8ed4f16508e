/*  test_event - shoal_event: fields, validation, codec, and hostile input.

    Environment: SHOAL_FUZZ_ITERATIONS (default 100000) sets how many random
    and mutated inputs are decoded; SHOAL_TEST_SEED fixes the fuzz seed;
    PROTOC and SHOAL_PROTO_DIR, set by `make check`, let the test compare
    against bytes made by protoc, another protobuf implementation. */

#include "shoal.h"
#include "shoal.pb-c.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const uint8_t s_origin[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                     0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};
static const uint8_t s_id[16] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
                                 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0xff};

//  An event with every field set.
static shoal_event_t *
s_full_event (void)
{
    shoal_event_t *event = shoal_event_new ();
    if (!event)
        bail ("out of memory");
    int rc = shoal_event_set_stream (event, "orders") | shoal_event_set_type (event, "OrderPlaced")
             | shoal_event_set_key (event, "order-42")
             | shoal_event_set_correlation_id (event, "corr-1")
             | shoal_event_set_causation_id (event, "cause-7")
             | shoal_event_set_content_type (event, "application/json")
             | shoal_event_set_payload (event, "{\"total\":12.5}", 14)
             | shoal_event_set_header (event, "tenant", "acme")
             | shoal_event_set_header (event, "trace", "00-af-01");
    if (rc)
        bail ("cannot build the full event");
    shoal_event_set_origin (event, s_origin);
    shoal_event_set_id (event, s_id);
    shoal_event_set_seq (event, 123456789012ULL);
    shoal_event_set_time_ns (event, 1763800000123456789LL);
    shoal_event_set_schema_version (event, 3);
    return event;
}

//  Encodes a raw protobuf-c message, for inputs the setters would refuse.
static uint8_t *
s_pack_raw (const Shoal__V1__Event *message, size_t *size_p)
{
    *size_p = shoal__v1__event__get_packed_size (message);
    uint8_t *data = malloc (*size_p + 1);
    shoal__v1__event__pack (message, data);
    return data;
}

static int
s_decode_error (const uint8_t *data, size_t size, size_t max_size)
{
    int error = -1;
    shoal_event_t *event = shoal_event_decode (data, size, max_size, &error);
    int result = event ? SHOAL_OK : error;
    shoal_event_destroy (&event);
    return result;
}

static int
s_raw_error (const Shoal__V1__Event *message)
{
    size_t size;
    uint8_t *data = s_pack_raw (message, &size);
    int error = s_decode_error (data, size, 0);
    free (data);
    return error;
}

static void
test_round_trip (void)
{
    shoal_event_t *event = s_full_event ();
    is_str (shoal_event_stream (event), "orders", "stream is kept");
    is_str (shoal_event_type (event), "OrderPlaced", "type is kept");
    is_str (shoal_event_key (event), "order-42", "key is kept");
    is_str (shoal_event_correlation_id (event), "corr-1", "correlation id is kept");
    is_str (shoal_event_causation_id (event), "cause-7", "causation id is kept");
    is_str (shoal_event_content_type (event), "application/json", "content type is kept");
    is_mem (shoal_event_origin (event), s_origin, 16, "origin is kept");
    is_mem (shoal_event_id (event), s_id, 16, "id is kept");
    ok (shoal_event_seq (event) == 123456789012ULL, "seq is kept");
    ok (shoal_event_time_ns (event) == 1763800000123456789LL, "time is kept");
    is_int (shoal_event_schema_version (event), 3, "schema version is kept");
    is_int (shoal_event_payload_size (event), 14, "payload size is kept");
    is_mem (shoal_event_payload (event), "{\"total\":12.5}", 14, "payload is kept");
    is_int (shoal_event_header_count (event), 2, "two headers");
    is_str (shoal_event_header (event, "tenant"), "acme", "header value by name");
    is_str (shoal_event_header_name (event, 1), "trace", "headers keep their order");
    ok (shoal_event_header (event, "missing") == NULL, "absent header is NULL");
    is_int (shoal_event_validate (event, 0), SHOAL_OK, "full event is valid");

    uint8_t *data;
    size_t size;
    ok (shoal_event_encode (event, &data, &size) == 0, "encode succeeds");
    is_int (size, shoal_event_encoded_size (event), "encoded size matches the prediction");
    uint8_t *buffer = malloc (size);
    is_int (shoal_event_encode_to (event, buffer), size, "encode_to writes the same count");
    is_mem (buffer, data, size, "encode_to writes the same bytes");
    free (buffer);

    int error = -1;
    shoal_event_t *decoded = shoal_event_decode (data, size, 0, &error);
    ok (decoded != NULL && error == SHOAL_OK, "decode succeeds");
    ok (decoded && shoal_event_eq (event, decoded), "every field survives the round trip");
    if (decoded) {
        is_str (shoal_event_header (decoded, "trace"), "00-af-01", "decoded header value");
        is_mem (shoal_event_id (decoded), s_id, 16, "decoded id bytes");
    }
    shoal_event_t *copy = shoal_event_dup (event);
    ok (copy && shoal_event_eq (copy, event), "dup copies every field");
    shoal_event_set_seq (copy, 1);
    ok (!shoal_event_eq (copy, event), "eq notices a changed seq");
    shoal_event_destroy (&copy);
    ok (copy == NULL, "destroy nulls the pointer");
    shoal_event_destroy (&copy);
    ok (copy == NULL, "destroy is idempotent");

    shoal_event_peek_t peek;
    ok (shoal_event_peek (data, size, &peek) == 0, "peek scans a valid encoding");
    ok (peek.seq == 123456789012ULL && peek.time_ns == 1763800000123456789LL,
        "peek finds seq and time");
    ok (peek.stream_size == 6 && memcmp (peek.stream, "orders", 6) == 0, "peek finds the stream");
    ok (peek.type_size == 11 && memcmp (peek.type, "OrderPlaced", 11) == 0, "peek finds the type");
    ok (peek.origin && memcmp (peek.origin, s_origin, 16) == 0, "peek finds the origin");
    ok (peek.id && memcmp (peek.id, s_id, 16) == 0, "peek finds the id");
    ok (shoal_event_peek (data, size - 1, &peek) == -1, "peek refuses a truncated encoding");

    //  Protobuf is proto3: the canonical encoding of the same fields is identical.
    uint8_t *again;
    size_t again_size;
    shoal_event_encode (decoded, &again, &again_size);
    ok (again_size == size && memcmp (again, data, size) == 0, "re-encoding gives the same bytes");
    free (again);
    free (data);
    shoal_event_destroy (&decoded);

    //  A minimal event: only stream and type.
    shoal_event_t *minimal = shoal_event_new ();
    shoal_event_set_stream (minimal, "s");
    shoal_event_set_type (minimal, "T");
    ok (shoal_event_origin (minimal) == NULL && shoal_event_id (minimal) == NULL,
        "unset origin and id read as NULL");
    is_str (shoal_event_key (minimal), "", "unset key reads as empty");
    shoal_event_encode (minimal, &data, &size);
    decoded = shoal_event_decode (data, size, 0, NULL);
    ok (decoded && shoal_event_eq (decoded, minimal) && shoal_event_id (decoded) == NULL,
        "minimal event round-trips with no id");
    shoal_event_destroy (&decoded);
    shoal_event_destroy (&minimal);
    free (data);
    shoal_event_destroy (&event);
}

//  Whether a (maybe NULL) string is b.
static bool
s_same (const char *a, const char *b)
{
    return a && strcmp (a, b) == 0;
}

//  Decodes a protobuf-c Event whose headers are given as name/value
//  pairs, repeats allowed (the setters would merge them).
static shoal_event_t *
s_decode_headers (const char *const *pairs, size_t count)
{
    Shoal__V1__Event message = SHOAL__V1__EVENT__INIT;
    message.stream = "orders";
    message.type = "Placed";
    message.origin.data = (uint8_t *) s_origin;
    message.origin.len = 16;
    message.seq = 7;
    Shoal__V1__Event__HeadersEntry *entries = calloc (count, sizeof *entries);
    Shoal__V1__Event__HeadersEntry **pointers = calloc (count, sizeof *pointers);
    for (size_t i = 0; i < count; i++) {
        Shoal__V1__Event__HeadersEntry init = SHOAL__V1__EVENT__HEADERS_ENTRY__INIT;
        entries[i] = init;
        entries[i].key = (char *) pairs[2 * i];
        entries[i].value = (char *) pairs[2 * i + 1];
        pointers[i] = &entries[i];
    }
    message.n_headers = count;
    message.headers = pointers;
    size_t size;
    uint8_t *data = s_pack_raw (&message, &size);
    shoal_event_t *event = shoal_event_decode (data, size, 0, NULL);
    free (data);
    free (pointers);
    free (entries);
    return event;
}

static void
test_decoded_headers (void)
{
    //  A repeated name keeps its first place and takes its last value,
    //  as in a protobuf map; an empty name is no header.
    const char *few[] = {"a", "1", "b", "2", "", "x", "a", "3", "c", ""};
    shoal_event_t *event = s_decode_headers (few, 5);
    ok (event != NULL, "an event with repeated header names decodes");
    if (!event)
        return;
    is_int (shoal_event_header_count (event), 3, "one header per name, none for an empty name");
    is_str (shoal_event_header_name (event, 0), "a", "a repeated name keeps its first place");
    is_str (shoal_event_header (event, "a"), "3", "and takes its last value");
    is_str (shoal_event_header_name (event, 2), "c", "the others keep their order");
    is_str (shoal_event_header (event, "c"), "", "an empty value is kept");

    //  The decoded headers live in the event's own memory; changing them
    //  (valgrind, in `make memcheck`, checks what is freed) works as on a
    //  made event.
    ok (shoal_event_set_header (event, "a", "4") == 0
            && s_same (shoal_event_header (event, "a"), "4"),
        "a decoded header's value is replaced");
    ok (shoal_event_unset_header (event, "b") == 0 && shoal_event_header_count (event) == 2
            && shoal_event_header (event, "b") == NULL,
        "a decoded header is removed");
    bool added = true;
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf (name, sizeof name, "new-%d", i);
        added &= shoal_event_set_header (event, name, name) == 0;
    }
    ok (added && shoal_event_header_count (event) == 22, "headers are added past the decoded ones");
    is_str (shoal_event_header_name (event, 0), "a", "the decoded ones first");
    is_str (shoal_event_header (event, "new-19"), "new-19", "then the new ones");
    shoal_event_t *copy = shoal_event_dup (event);
    ok (copy && shoal_event_eq (copy, event), "a copy has the same headers");
    is_str (copy ? shoal_event_header_name (copy, 21) : NULL, "new-19", "in the same order");
    shoal_event_destroy (&copy);
    shoal_event_destroy (&event);

    //  Many headers, each name four times: the same rule, found by the index.
    size_t count = 4000;
    const char **many = calloc (2 * count, sizeof (char *));
    char (*texts)[16] = calloc (2 * count, 16);
    for (size_t i = 0; i < count; i++) {
        snprintf (texts[2 * i], 16, "h%zu", i % 1000);
        snprintf (texts[2 * i + 1], 16, "v%zu", i);
        many[2 * i] = texts[2 * i];
        many[2 * i + 1] = texts[2 * i + 1];
    }
    event = s_decode_headers (many, count);
    ok (event && shoal_event_header_count (event) == 1000, "%zu headers of 1000 names: 1000 kept",
        count);
    bool right = event != NULL;
    for (size_t i = 0; right && i < 1000; i++) {
        char name[16], value[16];
        snprintf (name, sizeof name, "h%zu", i);
        snprintf (value, sizeof value, "v%zu", i + 3000);
        right = s_same (shoal_event_header_name (event, i), name)
                && s_same (shoal_event_header (event, name), value);
    }
    ok (right, "each in its first place, with its last value");
    shoal_event_destroy (&event);
    free (texts);
    free (many);
}

//  Past 16 headers a name is found through an index, not a scan: an
//  event of many headers is built, read and compared in linear time.
static void
test_header_index (void)
{
    shoal_event_t *event = shoal_event_new ();
    char name[32], value[32];
    for (int i = 0; i < 16; i++) {
        snprintf (name, sizeof name, "k%d", i);
        shoal_event_set_header (event, name, name);
    }
    ok (!shoal_event_header_indexed (event), "16 headers: found by a scan");
    shoal_event_set_header (event, "k16", "k16");
    ok (shoal_event_header_indexed (event), "17: through the index");
    shoal_event_unset_header (event, "k3");
    ok (!shoal_event_header_indexed (event) && shoal_event_header (event, "k16")
            && !shoal_event_header (event, "k3"),
        "back to 16: a scan again, and it finds the rest");
    shoal_event_destroy (&event);

    //  20,000 headers (a scan for each set would be 200 million compares).
    enum { MANY = 20000 };
    event = shoal_event_new ();
    shoal_event_set_stream (event, "s");
    shoal_event_set_type (event, "T");
    bool set = true;
    for (int i = 0; i < MANY; i++) {
        snprintf (name, sizeof name, "name-%d", i);
        snprintf (value, sizeof value, "v%d", i);
        set &= shoal_event_set_header (event, name, value) == 0;
    }
    set &= shoal_event_set_header (event, "name-77", "again") == 0; //  a replacement
    ok (set && shoal_event_header_count (event) == MANY && shoal_event_header_indexed (event),
        "%d headers set, one replaced, indexed", MANY);
    //  Every other one removed from the front half: positions shift.
    bool unset = true;
    for (int i = 0; i < 200; i += 2) {
        snprintf (name, sizeof name, "name-%d", i);
        unset &= shoal_event_unset_header (event, name) == 0;
    }
    ok (unset && shoal_event_unset_header (event, "name-0") == -1, "100 removed, once each");
    bool found = true;
    for (int i = 0; i < MANY; i++) {
        snprintf (name, sizeof name, "name-%d", i);
        snprintf (value, sizeof value, "v%d", i);
        const char *got = shoal_event_header (event, name);
        if (i < 200 && i % 2 == 0)
            found &= got == NULL;
        else
            found &= got && strcmp (got, i == 77 ? "again" : value) == 0;
    }
    ok (found, "each name finds its own value after appends, a replacement and removals");
    is_str (shoal_event_header_name (event, 0), "name-1", "and the order is kept");
    uint8_t *bytes = NULL;
    size_t size = 0;
    shoal_event_t *decoded = shoal_event_encode (event, &bytes, &size) == 0
                                 ? shoal_event_decode (bytes, size, 4 << 20, NULL)
                                 : NULL;
    shoal_event_t *copy = shoal_event_dup (event);
    ok (decoded && shoal_event_header_indexed (decoded) && copy
            && shoal_event_header_indexed (copy),
        "a decoded event and a copy have their index too");
    ok (decoded && shoal_event_eq (decoded, event) && copy && shoal_event_eq (copy, event),
        "and compare equal, header by header through it");
    shoal_event_destroy (&decoded);
    shoal_event_destroy (&copy);
    free (bytes);
    shoal_event_destroy (&event);
}

static void
test_setters_refuse (void)
{
    shoal_event_t *event = shoal_event_new ();
    shoal_event_set_stream (event, "good");
    ok (shoal_event_set_stream (event, "Bad") == -1, "upper-case stream refused");
    ok (shoal_event_set_stream (event, "-lead") == -1, "stream starting with '-' refused");
    ok (shoal_event_set_stream (event, "") == -1, "empty stream refused");
    ok (shoal_event_set_stream (event, "a/b") == -1, "stream with '/' refused");
    char long_name[80];
    memset (long_name, 'a', 65);
    long_name[65] = 0;
    ok (shoal_event_set_stream (event, long_name) == -1, "65-character stream refused");
    long_name[64] = 0;
    ok (shoal_event_set_stream (event, long_name) == 0, "64-character stream accepted");
    ok (shoal_event_set_stream (event, "s1.x_y-z") == 0, "stream with . _ - accepted");
    is_str (shoal_event_stream (event), "s1.x_y-z", "accepted stream is stored");
    ok (shoal_event_set_type (event, "a b") == -1, "type with a space refused");
    ok (shoal_event_set_type (event, "x/y") == -1, "type with '/' refused");
    ok (shoal_event_set_type (event, "") == -1, "empty type refused");
    ok (shoal_event_set_type (event, "orders.v1:Placed") == 0, "type with . and : accepted");
    ok (shoal_event_set_key (event, "\xc3\x28") == -1, "key with invalid UTF-8 refused");
    ok (shoal_event_set_key (event, "\xed\xa0\x80") == -1, "key with a UTF-16 surrogate refused");
    ok (shoal_event_set_key (event, "\xc0\xaf") == -1, "overlong UTF-8 refused");
    ok (shoal_event_set_key (event, "caf\xc3\xa9 \xf0\x9f\x90\x9f") == 0, "UTF-8 key accepted");
    ok (shoal_event_set_header (event, "", "x") == -1, "empty header name refused");
    ok (shoal_event_set_header (event, "h", "\xff") == -1, "header value not UTF-8 refused");
    shoal_event_set_header (event, "h", "1");
    shoal_event_set_header (event, "h", "2");
    is_int (shoal_event_header_count (event), 1, "setting a header twice replaces it");
    is_str (shoal_event_header (event, "h"), "2", "the second value wins");
    ok (shoal_event_unset_header (event, "h") == 0 && shoal_event_header_count (event) == 0,
        "unset removes a header");
    ok (shoal_event_unset_header (event, "h") == -1, "unset of an absent header fails");
    shoal_event_set_payload (event, "abc", 3);
    shoal_event_set_payload (event, NULL, 0);
    ok (shoal_event_payload_size (event) == 0 && shoal_event_payload (event) == NULL,
        "empty payload clears");

    shoal_event_t *blank = shoal_event_new ();
    is_int (shoal_event_validate (blank, 0), SHOAL_ERR_BAD_STREAM, "validate: no stream");
    shoal_event_set_stream (blank, "s");
    is_int (shoal_event_validate (blank, 0), SHOAL_ERR_BAD_TYPE, "validate: no type");
    shoal_event_set_type (blank, "T");
    uint8_t big[2048] = {0};
    shoal_event_set_payload (blank, big, sizeof big);
    is_int (shoal_event_validate (blank, 1024), SHOAL_ERR_TOO_LARGE, "validate: over max size");
    is_int (shoal_event_validate (blank, 0), SHOAL_OK, "validate: default max allows 2 KiB");
    shoal_event_destroy (&blank);
    shoal_event_destroy (&event);
}

static void
test_decode_errors (void)
{
    is_int (s_decode_error (NULL, 0, 0), SHOAL_ERR_EMPTY, "no bytes: EMPTY");
    is_int (s_decode_error ((const uint8_t *) "\x0a\x10\x01", 3, 0), SHOAL_ERR_MALFORMED,
            "field longer than the input: MALFORMED");
    is_int (s_decode_error ((const uint8_t *) "\xff\xff\xff", 3, 0), SHOAL_ERR_MALFORMED,
            "garbage: MALFORMED");
    is_int (s_decode_error ((const uint8_t *) "\x0f", 1, 0), SHOAL_ERR_MALFORMED,
            "wire type 7: MALFORMED");

    Shoal__V1__Event raw = SHOAL__V1__EVENT__INIT;
    raw.stream = "orders";
    raw.type = "Placed";
    is_int (s_raw_error (&raw), SHOAL_OK, "raw event with stream and type is accepted");

    Shoal__V1__Event bad = raw;
    bad.stream = "";
    is_int (s_raw_error (&bad), SHOAL_ERR_BAD_STREAM, "missing stream: BAD_STREAM");
    bad.stream = "Orders";
    is_int (s_raw_error (&bad), SHOAL_ERR_BAD_STREAM, "invalid stream name: BAD_STREAM");
    bad = raw;
    bad.type = "";
    is_int (s_raw_error (&bad), SHOAL_ERR_BAD_TYPE, "missing type: BAD_TYPE");
    bad.type = "has space";
    is_int (s_raw_error (&bad), SHOAL_ERR_BAD_TYPE, "invalid type: BAD_TYPE");
    bad = raw;
    uint8_t fifteen[15] = {0};
    bad.origin.data = fifteen;
    bad.origin.len = 15;
    is_int (s_raw_error (&bad), SHOAL_ERR_BAD_ORIGIN, "15-byte origin: BAD_ORIGIN");
    bad = raw;
    uint8_t seventeen[17] = {0};
    bad.id.data = seventeen;
    bad.id.len = 17;
    is_int (s_raw_error (&bad), SHOAL_ERR_BAD_ID, "17-byte id: BAD_ID");
    bad = raw;
    bad.key = "\xc3\x28";
    is_int (s_raw_error (&bad), SHOAL_ERR_BAD_UTF8, "key not UTF-8: BAD_UTF8");
    bad = raw;
    Shoal__V1__Event__HeadersEntry entry = SHOAL__V1__EVENT__HEADERS_ENTRY__INIT;
    entry.key = "k";
    entry.value = "\xe2\x82";
    Shoal__V1__Event__HeadersEntry *entries[1] = {&entry};
    bad.n_headers = 1;
    bad.headers = entries;
    is_int (s_raw_error (&bad), SHOAL_ERR_BAD_UTF8, "header value not UTF-8: BAD_UTF8");

    //  protobuf-c would cut a string at a NUL: such input must be refused,
    //  never decoded to a shorter type or stream.
    {
        shoal_event_t *event = s_full_event ();
        uint8_t *data;
        size_t size;
        shoal_event_encode (event, &data, &size);
        uint8_t *at = memmem (data, size, "OrderPlaced", 11);
        at[5] = 0;
        is_int (s_decode_error (data, size, 0), SHOAL_ERR_BAD_UTF8,
                "type with an embedded NUL: BAD_UTF8, not a shorter type");
        at[5] = 'P';
        at = memmem (data, size, "tenant", 6);
        at[2] = 0;
        is_int (s_decode_error (data, size, 0), SHOAL_ERR_BAD_UTF8,
                "header name with an embedded NUL: BAD_UTF8");
        free (data);
        shoal_event_destroy (&event);
    }

    //  The maximum size is configurable and checked before parsing.
    shoal_event_t *event = s_full_event ();
    uint8_t *data;
    size_t size;
    shoal_event_encode (event, &data, &size);
    is_int (s_decode_error (data, size, size - 1), SHOAL_ERR_TOO_LARGE,
            "one byte over a configured maximum: TOO_LARGE");
    is_int (s_decode_error (data, size, size), SHOAL_OK, "exactly the maximum is accepted");
    free (data);
    uint8_t *huge = calloc (1, SHOAL_EVENT_MAX_SIZE_DEFAULT + 64);
    shoal_event_set_payload (event, huge, SHOAL_EVENT_MAX_SIZE_DEFAULT);
    shoal_event_encode (event, &data, &size);
    is_int (s_decode_error (data, size, 0), SHOAL_ERR_TOO_LARGE,
            "over the default 1 MiB: TOO_LARGE");
    free (data);
    free (huge);
    shoal_event_destroy (&event);

    //  Every error code has a name and a sentence; decode errors map to wire codes.
    bool named = true;
    for (int code = 0; code < SHOAL_ERR_COUNT; code++)
        named = named && strncmp (shoal_error_name (code), "SHOAL_", 6) == 0
                && strcmp (shoal_strerror (code), "unknown error") != 0;
    ok (named, "every error code has a name and a message");
    is_int (shoal_error_wire_code (SHOAL_ERR_TOO_LARGE), SHOAL_WIRE_TOO_LARGE,
            "TOO_LARGE maps to wire code 4");
    is_int (shoal_error_wire_code (SHOAL_ERR_BAD_STREAM), SHOAL_WIRE_BAD_REQUEST,
            "BAD_STREAM maps to wire code 1");
    is_int (shoal_error_wire_code (SHOAL_ERR_TRIMMED), SHOAL_WIRE_UNAVAILABLE,
            "TRIMMED maps to wire code 3");
}

static void
test_truncated (void)
{
    shoal_event_t *event = s_full_event ();
    uint8_t *data;
    size_t size;
    shoal_event_encode (event, &data, &size);
    int accepted_as_whole = 0;
    int refused = 0;
    for (size_t cut = 0; cut < size; cut++) {
        //  A fresh allocation of exactly `cut` bytes lets valgrind and ASan
        //  catch any read past the end.
        uint8_t *prefix = malloc (cut ? cut : 1);
        memcpy (prefix, data, cut);
        int error = -1;
        shoal_event_t *decoded = shoal_event_decode (prefix, cut, 0, &error);
        if (decoded && shoal_event_eq (decoded, event))
            accepted_as_whole++;
        if (!decoded && error != SHOAL_OK)
            refused++;
        shoal_event_destroy (&decoded);
        free (prefix);
    }
    is_int (accepted_as_whole, 0, "no truncated encoding decodes to the whole event");
    ok (refused > (int) size / 2, "most truncations are refused (%d of %zu)", refused, size);
    free (data);
    shoal_event_destroy (&event);
}

//  xorshift64*: a reproducible stream for the fuzz loop (test data, not ids).
static uint64_t s_rng;
static uint64_t
s_rand (void)
{
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 2685821657736338717ULL;
}

static void
test_fuzz (void)
{
    const char *env = getenv ("SHOAL_FUZZ_ITERATIONS");
    long iterations = env ? atol (env) : 100000;
    const char *seed_env = getenv ("SHOAL_TEST_SEED");
    uint64_t seed = seed_env ? strtoull (seed_env, NULL, 0) : (uint64_t) time (NULL);
    s_rng = seed ? seed : 1;
    diag ("fuzz: %ld inputs, seed %llu (SHOAL_TEST_SEED to repeat)", iterations,
          (unsigned long long) seed);

    shoal_event_t *event = s_full_event ();
    uint8_t *valid;
    size_t valid_size;
    shoal_event_encode (event, &valid, &valid_size);
    shoal_event_destroy (&event);

    long decoded_count = 0, refused = 0, inconsistent = 0, run = 0, peek_mismatch = 0;
    long pb_mismatch = 0;
    double deadline = tap_now () + 20.0;
    uint8_t buffer[512];
    for (run = 0; run < iterations && tap_now () < deadline; run++) {
        size_t size;
        if (run % 2 == 0) {
            //  Random bytes of random length.
            size = s_rand () % sizeof buffer;
            for (size_t i = 0; i < size; i++)
                buffer[i] = (uint8_t) s_rand ();
        }
        else {
            //  The valid encoding with a few bytes changed, inserted or cut.
            size = valid_size;
            memcpy (buffer, valid, size);
            int mutations = 1 + (int) (s_rand () % 4);
            for (int m = 0; m < mutations; m++) {
                size_t at = s_rand () % size;
                switch (s_rand () % 4) {
                    case 0: buffer[at] = (uint8_t) s_rand (); break;
                    case 1: buffer[at] ^= (uint8_t) (1u << (s_rand () % 8)); break;
                    case 2: size = at + 1; break;
                    default:
                        if (size < sizeof buffer) {
                            memmove (buffer + at + 1, buffer + at, size - at);
                            buffer[at] = (uint8_t) s_rand ();
                            size++;
                        }
                }
            }
        }
        uint8_t *input = malloc (size ? size : 1);
        memcpy (input, buffer, size);
        int error = -1;
        shoal_event_t *decoded = shoal_event_decode (input, size, 0, &error);
        shoal_event_peek_t peek;
        int peeked = shoal_event_peek (input, size, &peek);
        //  Our decoder against protobuf-c's: whatever we accept protobuf-c
        //  accepts, with the same fields. (We refuse a few encodings that
        //  protobuf-c lets through, such as field numbers above 2^29 - 1,
        //  which the protobuf spec forbids.)
        Shoal__V1__Event *reference = shoal__v1__event__unpack (NULL, size, input);
        shoal_event_t *probe = shoal_event_decode (input, size, 0, NULL);
        if (probe && !reference)
            pb_mismatch++;
        else if (probe
                 && (strcmp (shoal_event_stream (probe), reference->stream) != 0
                     || strcmp (shoal_event_type (probe), reference->type) != 0
                     || strcmp (shoal_event_key (probe), reference->key) != 0
                     || shoal_event_seq (probe) != reference->seq
                     || shoal_event_time_ns (probe) != reference->time_ns
                     || shoal_event_schema_version (probe) != reference->schema_version
                     || shoal_event_payload_size (probe) != reference->payload.len
                     || (reference->payload.len
                         && memcmp (shoal_event_payload (probe), reference->payload.data,
                                    reference->payload.len))))
            pb_mismatch++;
        shoal_event_destroy (&probe);
        if (reference)
            shoal__v1__event__free_unpacked (reference, NULL);
        if (decoded) {
            decoded_count++;
            //  Whatever decodes must also peek to the same routing fields.
            if (peeked != 0 || peek.seq != shoal_event_seq (decoded)
                || peek.stream_size != strlen (shoal_event_stream (decoded))
                || memcmp (peek.stream, shoal_event_stream (decoded), peek.stream_size) != 0
                || peek.type_size != strlen (shoal_event_type (decoded))
                || (peek.origin == NULL) != (shoal_event_origin (decoded) == NULL)) {
                if (peek_mismatch++ < 3)
                    diag ("peek %d seq %llu/%llu stream %zu/%zu type %zu/%zu origin %d/%d", peeked,
                          (unsigned long long) peek.seq,
                          (unsigned long long) shoal_event_seq (decoded), peek.stream_size,
                          strlen (shoal_event_stream (decoded)), peek.type_size,
                          strlen (shoal_event_type (decoded)), peek.origin != NULL,
                          shoal_event_origin (decoded) != NULL);
            }
            //  Whatever decodes must be valid and survive its own round trip.
            uint8_t *again;
            size_t again_size;
            shoal_event_t *back = NULL;
            if (shoal_event_validate (decoded, 0) == SHOAL_OK
                && shoal_event_encode (decoded, &again, &again_size) == 0) {
                back = shoal_event_decode (again, again_size, 0, NULL);
                free (again);
            }
            if (!back || !shoal_event_eq (back, decoded) || error != SHOAL_OK)
                inconsistent++;
            shoal_event_destroy (&back);
            shoal_event_destroy (&decoded);
        }
        else if (error > SHOAL_OK && error < SHOAL_ERR_COUNT)
            refused++;
        else
            inconsistent++;
        free (input);
    }
    free (valid);
    diag ("fuzz: %ld decoded, %ld refused", decoded_count, refused);
    is_int (run, iterations, "all %ld fuzz inputs ran within the time bound", iterations);
    is_int (inconsistent, 0, "every input decoded to a valid event or a known error");
    is_int (peek_mismatch, 0, "peek agrees with decode on every decodable input");
    is_int (pb_mismatch, 0, "decode agrees with protobuf-c's unpack on every input");
    ok (refused > 0 && decoded_count > 0, "the fuzz inputs reached both outcomes");
}

//  Runs protoc --encode on text, returns the bytes (caller frees) or NULL.
static uint8_t *
s_protoc_encode (const char *protoc, const char *proto_dir, const char *text, size_t *size_p)
{
    char in_path[4200], out_path[4200];
    snprintf (in_path, sizeof in_path, "%s", tap_path ("event.txt"));
    snprintf (out_path, sizeof out_path, "%s", tap_path ("event.bin"));
    FILE *file = fopen (in_path, "w");
    if (!file)
        return NULL;
    fputs (text, file);
    fclose (file);
    char command[13000];
    snprintf (command, sizeof command,
              "'%s' --proto_path='%s' --encode=shoal.v1.Event '%s/shoal.proto' < '%s' > '%s'",
              protoc, proto_dir, proto_dir, in_path, out_path);
    int status = system (command);
    if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
        return NULL;
    file = fopen (out_path, "rb");
    if (!file)
        return NULL;
    uint8_t *data = malloc (4096);
    *size_p = fread (data, 1, 4096, file);
    fclose (file);
    return data;
}

//  Our encoder against protobuf-c's pack: random valid events (every field
//  left out or set, edge values of each number, headers with empty values)
//  must encode to the same bytes, and decode back to the same event.
static void
test_encoder_matches_protobuf_c (void)
{
    s_rng = 0x5eed5eed12345ULL;
    const uint64_t numbers[] = {0, 1, 127, 128, 16383, 16384, UINT32_MAX, UINT64_MAX};
    const char *texts[] = {"",
                           "a",
                           "order-42",
                           "\xc3\xa9t\xc3\xa9",
                           "x y z",
                           "a-string-longer-than-one-hundred-and-twenty-seven-bytes-so-that-its-"
                           "length-takes-two-bytes-of-varint-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
    const size_t text_count = sizeof texts / sizeof texts[0];
    int differ = 0, round_trip = 0;
    const int rounds = 5000;
    for (int round = 0; round < rounds; round++) {
        shoal_event_t *event = shoal_event_new ();
        shoal_event_set_stream (event, s_rand () % 2 ? "orders" : "s");
        shoal_event_set_type (event, s_rand () % 2 ? "OrderPlaced" : "T");
        shoal_event_set_key (event, texts[s_rand () % text_count]);
        shoal_event_set_correlation_id (event, texts[s_rand () % text_count]);
        shoal_event_set_causation_id (event, texts[s_rand () % text_count]);
        shoal_event_set_content_type (event, texts[s_rand () % text_count]);
        if (s_rand () % 2)
            shoal_event_set_origin (event, s_origin);
        if (s_rand () % 2)
            shoal_event_set_id (event, s_id);
        shoal_event_set_seq (event, numbers[s_rand () % 8]);
        shoal_event_set_time_ns (event,
                                 (int64_t) numbers[s_rand () % 8] * (s_rand () % 2 ? 1 : -1));
        shoal_event_set_schema_version (event, (uint32_t) numbers[s_rand () % 7]);
        uint8_t payload[300];
        size_t payload_size = s_rand () % 2 ? 0 : s_rand () % sizeof payload;
        for (size_t i = 0; i < payload_size; i++)
            payload[i] = (uint8_t) s_rand ();
        shoal_event_set_payload (event, payload, payload_size);
        size_t headers = s_rand () % 4;
        for (size_t i = 0; i < headers; i++) {
            char name[16];
            snprintf (name, sizeof name, "h%zu", i);
            shoal_event_set_header (event, name, texts[s_rand () % text_count]);
        }
        //  The same fields through protobuf-c.
        Shoal__V1__Event message = SHOAL__V1__EVENT__INIT;
        if (shoal_event_origin (event)) {
            message.origin.data = (uint8_t *) s_origin;
            message.origin.len = 16;
        }
        if (shoal_event_id (event)) {
            message.id.data = (uint8_t *) s_id;
            message.id.len = 16;
        }
        message.stream = (char *) shoal_event_stream (event);
        message.type = (char *) shoal_event_type (event);
        message.key = (char *) shoal_event_key (event);
        message.correlation_id = (char *) shoal_event_correlation_id (event);
        message.causation_id = (char *) shoal_event_causation_id (event);
        message.content_type = (char *) shoal_event_content_type (event);
        message.seq = shoal_event_seq (event);
        message.time_ns = shoal_event_time_ns (event);
        message.schema_version = shoal_event_schema_version (event);
        message.payload.data = (uint8_t *) shoal_event_payload (event);
        message.payload.len = shoal_event_payload_size (event);
        Shoal__V1__Event__HeadersEntry entries[4], *pointers[4];
        for (size_t i = 0; i < headers; i++) {
            Shoal__V1__Event__HeadersEntry init = SHOAL__V1__EVENT__HEADERS_ENTRY__INIT;
            entries[i] = init;
            entries[i].key = (char *) shoal_event_header_name (event, i);
            entries[i].value = (char *) shoal_event_header (event, entries[i].key);
            pointers[i] = &entries[i];
        }
        message.n_headers = headers;
        message.headers = pointers;
        size_t reference_size;
        uint8_t *reference = s_pack_raw (&message, &reference_size);
        uint8_t *ours;
        size_t ours_size;
        shoal_event_encode (event, &ours, &ours_size);
        if (ours_size != reference_size || memcmp (ours, reference, ours_size) != 0) {
            if (differ++ < 3)
                diag ("round %d: ours %zu bytes, protobuf-c %zu", round, ours_size, reference_size);
        }
        shoal_event_t *back = shoal_event_decode (ours, ours_size, 0, NULL);
        if (back && shoal_event_eq (back, event))
            round_trip++;
        shoal_event_destroy (&back);
        free (ours);
        free (reference);
        shoal_event_destroy (&event);
    }
    is_int (differ, 0, "our encoding equals protobuf-c's pack for %d random events", rounds);
    is_int (round_trip, rounds, "each of them decodes back to the same event");
}

static void
test_other_encoder (void)
{
    const char *protoc = getenv ("PROTOC");
    const char *proto_dir = getenv ("SHOAL_PROTO_DIR");
    if (!protoc || !*protoc || !proto_dir || access (protoc, X_OK) != 0) {
        skip (6, "protoc not installed (apt-get install protobuf-compiler)");
        return;
    }
    const char *text = "origin: \"\\240\\241\\242\\243\\244\\245\\246\\247\\250\\251\\252\\253"
                       "\\254\\255\\256\\257\"\n"
                       "stream: \"orders\"\n"
                       "seq: 123456789012\n"
                       "type: \"OrderPlaced\"\n"
                       "key: \"order-42\"\n"
                       "time_ns: 1763800000123456789\n"
                       "id: \"\\020\\021\\022\\023\\024\\025\\026\\027\\030\\031\\032\\033\\034"
                       "\\035\\036\\377\"\n"
                       "correlation_id: \"corr-1\"\n"
                       "causation_id: \"cause-7\"\n"
                       "schema_version: 3\n"
                       "content_type: \"application/json\"\n"
                       "payload: \"{\\\"total\\\":12.5}\"\n"
                       "headers { key: \"tenant\" value: \"acme\" }\n"
                       "headers { key: \"trace\" value: \"00-af-01\" }\n";
    size_t size = 0;
    uint8_t *data = s_protoc_encode (protoc, proto_dir, text, &size);
    ok (data != NULL && size > 0, "protoc encoded a text-format event (%zu bytes)", size);
    int error = -1;
    shoal_event_t *decoded = data ? shoal_event_decode (data, size, 0, &error) : NULL;
    ok (decoded != NULL, "protoc's bytes decode (error %d)", error);
    shoal_event_t *expected = s_full_event ();
    ok (decoded && shoal_event_eq (decoded, expected), "protoc's bytes give the same fields");
    is_str (decoded ? shoal_event_header (decoded, "trace") : NULL, "00-af-01",
            "protoc's map entry decodes as a header");
    is_mem (decoded ? shoal_event_origin (decoded) : NULL, s_origin, 16,
            "protoc's origin bytes decode");
    //  Our encoding of the same event, decoded by protoc, must print the same text.
    uint8_t *ours;
    size_t ours_size;
    shoal_event_encode (expected, &ours, &ours_size);
    ok (ours_size == size && memcmp (ours, data, size) == 0,
        "our encoding is byte-identical to protoc's");
    free (ours);
    shoal_event_destroy (&expected);
    shoal_event_destroy (&decoded);
    free (data);
}

static void
test_ids (void)
{
    shoal_event_t *a = shoal_event_new ();
    shoal_event_t *b = shoal_event_new ();
    shoal_event_generate_id (a);
    shoal_event_generate_id (b);
    ok (shoal_event_id (a) && shoal_event_id (b), "generated ids are set");
    ok (memcmp (shoal_event_id (a), shoal_event_id (b), 16) != 0, "two generated ids differ");
    char hex[33];
    shoal_id_to_hex (s_id, hex);
    is_str (hex, "101112131415161718191a1b1c1d1eff", "id to hex");
    uint8_t back[16];
    ok (shoal_id_from_hex (hex, back) == 0 && memcmp (back, s_id, 16) == 0, "hex back to id");
    ok (shoal_id_from_hex ("101112", back) == -1, "short hex refused");
    ok (shoal_id_from_hex ("g01112131415161718191a1b1c1d1eff", back) == -1, "non-hex refused");
    int64_t now = shoal_time_ns ();
    ok (now > 1600000000LL * 1000000000LL, "wall clock in unix ns");
    int major = -1, minor = -1, patch = -1;
    shoal_version (&major, &minor, &patch);
    ok (SHOAL_MAKE_VERSION (major, minor, patch) == SHOAL_VERSION,
        "run-time version matches headers");
    shoal_event_destroy (&a);
    shoal_event_destroy (&b);
}

static int
s_id_compare (const void *a, const void *b)
{
    return memcmp (a, b, 16);
}

//  Many pool refills give no id twice, and a forked child never hands out
//  the ids its parent goes on to make (it must not share the parent's key).
static void
test_id_stream (void)
{
    enum { COUNT = 10000 };
    uint8_t *ids = (uint8_t *) malloc (COUNT * 16);
    shoal_event_t *event = shoal_event_new ();
    size_t zero = 0;
    for (size_t i = 0; i < COUNT; i++) {
        shoal_event_generate_id (event);
        memcpy (ids + 16 * i, shoal_event_id (event), 16);
        static const uint8_t nothing[16] = {0};
        zero += memcmp (ids + 16 * i, nothing, 16) == 0;
    }
    qsort (ids, COUNT, 16, s_id_compare);
    size_t repeats = 0;
    for (size_t i = 1; i < COUNT; i++)
        repeats += memcmp (ids + 16 * (i - 1), ids + 16 * i, 16) == 0;
    ok (repeats == 0 && zero == 0, "%d generated ids: none repeats, none is zero", COUNT);
    free (ids);

    //  Half a pool used, so parent and child both have ids left in it.
    for (int i = 0; i < 100; i++)
        shoal_event_generate_id (event);
    int fds[2];
    uint8_t child_ids[16 * 300], parent_ids[16 * 300];
    bool forked = pipe (fds) == 0;
    pid_t pid = forked ? fork () : -1;
    if (pid == 0) {
        close (fds[0]);
        for (int i = 0; i < 300; i++) {
            shoal_event_generate_id (event);
            memcpy (child_ids + 16 * i, shoal_event_id (event), 16);
        }
        shoal_event_destroy (&event);
        _exit (write (fds[1], child_ids, sizeof child_ids) == (ssize_t) sizeof child_ids ? 0 : 1);
    }
    size_t got = 0;
    if (pid > 0) {
        close (fds[1]);
        ssize_t n;
        while (got < sizeof child_ids
               && (n = read (fds[0], child_ids + got, sizeof child_ids - got)) > 0)
            got += (size_t) n;
        close (fds[0]);
        waitpid (pid, NULL, 0);
    }
    for (int i = 0; i < 300; i++) {
        shoal_event_generate_id (event);
        memcpy (parent_ids + 16 * i, shoal_event_id (event), 16);
    }
    size_t shared = 0;
    for (int i = 0; i < 300 && got == sizeof child_ids; i++)
        for (int j = 0; j < 300; j++)
            shared += memcmp (child_ids + 16 * i, parent_ids + 16 * j, 16) == 0;
    ok (got == sizeof child_ids && shared == 0,
        "a forked child and its parent make no id in common (%zu shared)", shared);
    shoal_event_destroy (&event);
}

int
main (void)
{
    plan_lazy ();
    test_round_trip ();
    test_decoded_headers ();
    test_header_index ();
    test_setters_refuse ();
    test_decode_errors ();
    test_truncated ();
    test_fuzz ();
    test_encoder_matches_protobuf_c ();
    test_other_encoder ();
    test_ids ();
    test_id_stream ();
    return done_testing ();
}
