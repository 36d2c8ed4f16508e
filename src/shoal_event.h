/*  =========================================================================
    shoal_event - one event: the unit that shoal records, sends and replays

    An event belongs to a stream and has a type; the node that records it
    (its origin) gives it a seq and a time. Its 16-byte id is the
    idempotency key: random unless the producer sets one. The encoded form
    is the protobuf message shoal.v1.Event of proto/shoal.proto, so any
    language with a protobuf library can read and write it.

    Setters copy their arguments and refuse values that could never be
    valid (a bad stream or type name, a string that is not UTF-8), leaving
    the event unchanged. Decoding checks everything the setters check plus
    the size limit and the length of origin and id.
    ========================================================================= */

#ifndef SHOAL_EVENT_H_INCLUDED
#define SHOAL_EVENT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _shoal_event_t shoal_event_t;

#define SHOAL_ID_SIZE 16                        //  bytes in a node id and an event id
#define SHOAL_STREAM_MAX 64                     //  longest stream name
#define SHOAL_TYPE_MAX 128                      //  longest event type
#define SHOAL_EVENT_MAX_SIZE_DEFAULT (1u << 20) //  default maximum encoded size, 1 MiB

//  Create an empty event (no stream, no type, no id). Never NULL unless out of memory.
shoal_event_t *shoal_event_new (void);

//  Destroy the event; idempotent, nulls the caller's pointer.
void shoal_event_destroy (shoal_event_t **self_p);

//  Deep copy of the event. Caller owns return value.
shoal_event_t *shoal_event_dup (const shoal_event_t *self);

//  Field by field equality (headers compared as a set).
bool shoal_event_eq (const shoal_event_t *a, const shoal_event_t *b);

//  Name rules. Return true when the name is valid.
bool shoal_stream_name_valid (const char *name);
bool shoal_type_name_valid (const char *name);

//  Setters: 0 on success; -1 and the event unchanged when the value is
//  invalid (see shoal_error.h for what each check means).
int shoal_event_set_stream (shoal_event_t *self, const char *stream);
int shoal_event_set_type (shoal_event_t *self, const char *type);
int shoal_event_set_key (shoal_event_t *self, const char *key);
int shoal_event_set_correlation_id (shoal_event_t *self, const char *correlation_id);
int shoal_event_set_causation_id (shoal_event_t *self, const char *causation_id);
int shoal_event_set_content_type (shoal_event_t *self, const char *content_type);
void shoal_event_set_origin (shoal_event_t *self, const uint8_t origin[SHOAL_ID_SIZE]);
void shoal_event_set_id (shoal_event_t *self, const uint8_t id[SHOAL_ID_SIZE]);
void shoal_event_set_seq (shoal_event_t *self, uint64_t seq);
void shoal_event_set_time_ns (shoal_event_t *self, int64_t time_ns);
void shoal_event_set_schema_version (shoal_event_t *self, uint32_t schema_version);
//  Copies size bytes of payload; a NULL or empty payload clears it.
int shoal_event_set_payload (shoal_event_t *self, const void *payload, size_t size);
//  Sets (or replaces) one header; name must be non-empty, both UTF-8.
int shoal_event_set_header (shoal_event_t *self, const char *name, const char *value);
//  Removes a header; 0 if it was there, -1 if not.
int shoal_event_unset_header (shoal_event_t *self, const char *name);

//  Gives the event a fresh random id (libsodium's randombytes).
void shoal_event_generate_id (shoal_event_t *self);

//  Getters. Strings are never NULL ("" when unset); origin and id are NULL when unset.
const char *shoal_event_stream (const shoal_event_t *self);
const char *shoal_event_type (const shoal_event_t *self);
const char *shoal_event_key (const shoal_event_t *self);
const char *shoal_event_correlation_id (const shoal_event_t *self);
const char *shoal_event_causation_id (const shoal_event_t *self);
const char *shoal_event_content_type (const shoal_event_t *self);
const uint8_t *shoal_event_origin (const shoal_event_t *self);
const uint8_t *shoal_event_id (const shoal_event_t *self);
uint64_t shoal_event_seq (const shoal_event_t *self);
int64_t shoal_event_time_ns (const shoal_event_t *self);
uint32_t shoal_event_schema_version (const shoal_event_t *self);
const uint8_t *shoal_event_payload (const shoal_event_t *self);
size_t shoal_event_payload_size (const shoal_event_t *self);
//  Value of a header, or NULL when absent.
const char *shoal_event_header (const shoal_event_t *self, const char *name);
//  Headers by index, in the order they were first set (0 <= index < count).
size_t shoal_event_header_count (const shoal_event_t *self);
const char *shoal_event_header_name (const shoal_event_t *self, size_t index);
const char *shoal_event_header_value (const shoal_event_t *self, size_t index);
//  For the tests: whether names are found by the header index (an event
//  of more than 16 headers) rather than a scan.
bool shoal_event_header_indexed (const shoal_event_t *self);

//  Checks the whole event as decode would: 0 if valid, else a shoal_error_t.
//  max_size 0 means SHOAL_EVENT_MAX_SIZE_DEFAULT.
int shoal_event_validate (const shoal_event_t *self, size_t max_size);

//  Size of the encoded event in bytes.
size_t shoal_event_encoded_size (const shoal_event_t *self);
//  Stamps the event as its origin records it: origin, the time now, an id
//  when it has none, and the largest seq as a placeholder (set the real
//  one once taken). Returns the encoded size then, the most the event can
//  take with any seq: what the origin checks against its max event size
//  before it takes a seq.
size_t shoal_event_stamp (shoal_event_t *self, const uint8_t origin[SHOAL_ID_SIZE]);

//  Encodes into buffer, which must hold shoal_event_encoded_size bytes.
//  Returns the number of bytes written.
size_t shoal_event_encode_to (const shoal_event_t *self, uint8_t *buffer);

//  Encodes into a new buffer. Returns 0 and sets *data_p (caller owns it,
//  free with free()) and *size_p, or -1 when out of memory.
int shoal_event_encode (const shoal_event_t *self, uint8_t **data_p, size_t *size_p);

//  Decodes and validates an event. max_size 0 means the default (1 MiB).
//  Returns the event (caller owns it) or NULL, with the reason in *error_p
//  when error_p is not NULL.
shoal_event_t *shoal_event_decode (const uint8_t *data, size_t size, size_t max_size, int *error_p);

//  What shoal_event_peek finds in encoded event bytes without decoding
//  them: pointers into the bytes, not copies.
typedef struct {
    const uint8_t *origin; //  16 bytes, or NULL when absent
    uint64_t seq;          //  0 when absent
    int64_t time_ns;       //  0 when absent
    const char *stream;    //  not NUL-terminated; stream_size bytes
    size_t stream_size;    //  bytes in stream
    const char *type;      //  not NUL-terminated; type_size bytes
    size_t type_size;      //  bytes in type
    const uint8_t *id;     //  16 bytes, or NULL when absent
} shoal_event_peek_t;

//  Scans the top-level fields of an encoded event (fast: no allocation,
//  no copy). 0, or -1 when the bytes are not a well-formed protobuf
//  message or origin/id are not 16 bytes. Later fields of the same number
//  win, as in a full decode. It does not check names: decode for that.
int shoal_event_peek (const uint8_t *data, size_t size, shoal_event_peek_t *peek);

//  Writes 32 lowercase hex digits and a NUL of a 16-byte id into hex.
void shoal_id_to_hex (const uint8_t id[SHOAL_ID_SIZE], char hex[2 * SHOAL_ID_SIZE + 1]);

//  Parses 32 hex digits into a 16-byte id: 0 on success, -1 if not an id.
int shoal_id_from_hex (const char *hex, uint8_t id[SHOAL_ID_SIZE]);

//  Wall-clock time in unix nanoseconds.
int64_t shoal_time_ns (void);

#ifdef __cplusplus
}
#endif

#endif
