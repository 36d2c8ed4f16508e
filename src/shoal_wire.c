/*  =========================================================================
    shoal_wire - small codecs for the ROUTER protocol

    Protobuf wire format, as far as this file needs it:

        key     varint (field number << 3 | wire type)
        type 0  varint value
        type 1  8 bytes          type 5  4 bytes
        type 2  varint length, then that many bytes (strings, bytes,
                embedded messages, each element of a repeated message)

    Response  { 1 request_id varint; 2..7 one body, type 2 }
    ReplayBatch { 1 events (repeated, type 2); 2 next_seq; 3 done; 4 head_seq }

    The scanners read nothing outside [data, data + size) and refuse
    groups (types 3, 4) and field number 0. Unknown fields are skipped, so
    newer peers may add fields.
    ========================================================================= */

#include "shoal_wire.h"

#include <stdio.h>

int
shoal_wire_varint_long (const uint8_t **p, const uint8_t *end, uint64_t *value)
{
    uint64_t result = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t byte = *(*p)++;
        result |= (uint64_t) (byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *value = result;
            return 0;
        }
    }
    return -1;
}

size_t
shoal_wire_put_varint (uint8_t *out, uint64_t value)
{
    size_t size = 0;
    while (value >= 0x80) {
        out[size++] = (uint8_t) (value | 0x80);
        value >>= 7;
    }
    out[size++] = (uint8_t) value;
    return size;
}

zframe_t *
shoal_wire_pack_request (const Shoal__V1__Request *request)
{
    zframe_t *frame = zframe_new (NULL, shoal__v1__request__get_packed_size (request));
    shoal__v1__request__pack (request, zframe_data (frame));
    return frame;
}

zframe_t *
shoal_wire_pack_response (const Shoal__V1__Response *response)
{
    zframe_t *frame = zframe_new (NULL, shoal__v1__response__get_packed_size (response));
    shoal__v1__response__pack (response, zframe_data (frame));
    return frame;
}

zframe_t *
shoal_wire_error (uint64_t request_id, uint32_t code, const char *message)
{
    //  Cut to printable ASCII: a message may quote client input or file
    //  names, and Error.message must be UTF-8.
    char text[600];
    snprintf (text, sizeof text, "%s", message ? message : "");
    for (char *c = text; *c; c++)
        if ((unsigned char) *c < 0x20 || (unsigned char) *c > 0x7e)
            *c = '?';
    Shoal__V1__Error error = SHOAL__V1__ERROR__INIT;
    error.code = code;
    error.message = text;
    Shoal__V1__Response response = SHOAL__V1__RESPONSE__INIT;
    response.request_id = request_id;
    response.body_case = SHOAL__V1__RESPONSE__BODY_ERROR;
    response.error = &error;
    return shoal_wire_pack_response (&response);
}

//  What s_scan found of a message's fields 1 to S_FIELDS - 1: how often
//  each came, its last value (a varint, or a length) and bytes, and where
//  it last came (1 for the first field read).
#define S_FIELDS 9
typedef struct {
    unsigned count[S_FIELDS];
    uint64_t value[S_FIELDS];
    const uint8_t *bytes[S_FIELDS];
    unsigned last[S_FIELDS];
} s_fields_t;

//  Reads a message's fields. 0, or -1 when malformed or when a field of
//  those in types (wire type by field number) has another wire type, as
//  protobuf-c refuses it.
static int
s_scan (const uint8_t *data, size_t size, const int types[S_FIELDS], s_fields_t *fields)
{
    memset (fields, 0, sizeof *fields);
    const uint8_t *p = data, *end = data + size;
    unsigned position = 0;
    while (p < end) {
        uint32_t field, type;
        uint64_t value = 0;
        const uint8_t *bytes = NULL;
        if (shoal_wire_field (&p, end, &field, &type, &value, &bytes))
            return -1;
        if (field < S_FIELDS && types[field] >= 0) {
            if (type != (uint32_t) types[field])
                return -1;
            fields->count[field]++;
            fields->value[field] = value;
            fields->bytes[field] = bytes;
            fields->last[field] = ++position;
        }
    }
    return 0;
}

//  Wire types by field number, -1 for a field not read here: the envelope
//  a Request and a Response share (1 request_id, 2 to 8 the members of the
//  body's oneof), a PublishRequest (1 event, 2 wait_durable) and a
//  ReplayBatch (1 events, 2 next_seq, 3 done, 4 head_seq).
static const int s_envelope_types[S_FIELDS] = {-1, 0, 2, 2, 2, 2, 2, 2, 2};
static const int s_publish_types[S_FIELDS] = {-1, 2, 0, -1, -1, -1, -1, -1, -1};
static const int s_batch_types[S_FIELDS] = {-1, 2, 0, 0, 0, -1, -1, -1, -1};

int
shoal_wire_scan_envelope (const uint8_t *data, size_t size, shoal_wire_envelope_t *envelope)
{
    s_fields_t fields;
    memset (envelope, 0, sizeof *envelope);
    if (s_scan (data, size, s_envelope_types, &fields))
        return -1;
    envelope->request_id = fields.value[1];
    //  The body is the member of the oneof that came last, as protobuf-c
    //  keeps it; one that came twice is merged there, which is for
    //  protobuf-c to do.
    uint32_t body = 0;
    for (uint32_t field = 2; field < S_FIELDS; field++)
        if (fields.count[field] && (!body || fields.last[field] > fields.last[body]))
            body = field;
    if (body && fields.count[body] == 1) {
        envelope->body = body;
        envelope->data = fields.bytes[body];
        envelope->size = (size_t) fields.value[body];
    }
    return 0;
}

//  The bytes of the length-delimited field `want` of a message scanned
//  with types: 0, or -1 when it comes twice: protobuf merges repeated
//  embedded messages, and a merge is nothing a strict reader should guess
//  at (protobuf-c and this reader would see different events).
static int
s_only_bytes (const uint8_t *data, size_t size, uint32_t want, const int types[S_FIELDS],
              const uint8_t **bytes_p, size_t *size_p)
{
    s_fields_t fields;
    *bytes_p = NULL;
    *size_p = 0;
    if (s_scan (data, size, types, &fields) || fields.count[want] > 1)
        return -1;
    if (fields.count[want]) {
        *bytes_p = fields.bytes[want];
        *size_p = (size_t) fields.value[want];
    }
    return 0;
}

int
shoal_wire_publish_event (const uint8_t *data, size_t size, const uint8_t **event_p,
                          size_t *event_size_p)
{
    return s_only_bytes (data, size, 1, s_publish_types, event_p, event_size_p);
}

int
shoal_wire_scan_batch (const uint8_t *data, size_t size, shoal_wire_batch_t *batch)
{
    s_fields_t fields;
    memset (batch, 0, sizeof *batch);
    batch->data = batch->cursor = data;
    batch->end = data + size;
    if (s_scan (data, size, s_batch_types, &fields))
        return -1;
    batch->events = fields.count[1];
    batch->next_seq = fields.value[2];
    batch->done = fields.value[3] != 0;
    batch->head_seq = fields.value[4];
    return 0;
}

int
shoal_wire_batch_next (shoal_wire_batch_t *batch, const uint8_t **event_p, size_t *size_p)
{
    while (batch->cursor < batch->end) {
        uint32_t field, type;
        uint64_t value = 0;
        const uint8_t *bytes = NULL;
        if (shoal_wire_field (&batch->cursor, batch->end, &field, &type, &value, &bytes))
            return 0; //  scan_batch checked the whole batch already
        if (field == 1 && type == 2) {
            *event_p = bytes;
            *size_p = (size_t) value;
            return 1;
        }
    }
    return 0;
}
