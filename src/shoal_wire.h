/*  =========================================================================
    shoal_wire - small codecs for the ROUTER protocol (Request/Response)

    Most requests and responses are small and go through the generated
    protobuf-c code. A ReplayBatch can carry hundreds of events, and a
    thin client's PublishRequest carries one: they are scanned here
    without unpacking, so each embedded Event reaches shoal_event_decode
    as the exact bytes its sender wrote, and gets the same strict checks
    as an event read from PUB.

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_WIRE_H_INCLUDED
#define SHOAL_WIRE_H_INCLUDED

#include "shoal.pb-c.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

//  Reads one base-128 varint at *p (< end), advancing *p. 0 or -1.
//  Inline for the common one-byte case (tags and short lengths).
int shoal_wire_varint_long (const uint8_t **p, const uint8_t *end, uint64_t *value);
static inline int
shoal_wire_varint (const uint8_t **p, const uint8_t *end, uint64_t *value)
{
    if (*p < end && **p < 0x80) {
        *value = *(*p)++;
        return 0;
    }
    return shoal_wire_varint_long (p, end, value);
}

//  Reads one protobuf field at *p (< end), advancing *p past it: its
//  number, its wire type, and for type 0 its value, for type 2 its length
//  in *value and its bytes in *bytes. Types 1 and 5 are stepped over.
//  0, or -1 when malformed (a field number out of range, a group, a
//  value cut short). Inline: the event decoder calls it per field.
static inline int
shoal_wire_field (const uint8_t **p, const uint8_t *end, uint32_t *field, uint32_t *type,
                  uint64_t *value, const uint8_t **bytes)
{
    uint64_t key;
    if (shoal_wire_varint (p, end, &key) || (key >> 3) == 0 || (key >> 3) > 536870911)
        return -1;
    *field = (uint32_t) (key >> 3);
    *type = (uint32_t) (key & 7);
    switch (*type) {
        case 0: return shoal_wire_varint (p, end, value);
        case 1:
        case 5: {
            long width = *type == 1 ? 8 : 4;
            if (end - *p < width)
                return -1;
            *p += width;
            return 0;
        }
        case 2:
            if (shoal_wire_varint (p, end, value) || *value > (uint64_t) (end - *p))
                return -1;
            *bytes = *p;
            *p += *value;
            return 0;
        default: return -1;
    }
}

//  Writes a varint at out (10 bytes at most); returns its size.
size_t shoal_wire_put_varint (uint8_t *out, uint64_t value);

//  Bytes the varint of value takes.
static inline size_t
shoal_wire_varint_size (uint64_t value)
{
    size_t size = 1;
    while (value >= 0x80) {
        value >>= 7;
        size++;
    }
    return size;
}

//  Packs a Request or Response into a new frame.
zframe_t *shoal_wire_pack_request (const Shoal__V1__Request *request);
zframe_t *shoal_wire_pack_response (const Shoal__V1__Response *response);

//  A Response with an Error body; the message is cut to printable ASCII
//  (at most 599 bytes).
zframe_t *shoal_wire_error (uint64_t request_id, uint32_t code, const char *message);

//  The outline of a Request or a Response (one envelope: request_id, then
//  the oneof of bodies): its request_id (the last, as protobuf has it)
//  and its body, the member that came last as protobuf-c keeps it (the
//  field number: 2 hello .. 8 consumer), with that body's bytes; body 0
//  when there is none, or when that member came twice (protobuf-c merges
//  such a body: it is for protobuf-c to read).
typedef struct {
    uint64_t request_id; //  the request id
    uint32_t body;       //  field number of the body, 0 when absent
    const uint8_t *data; //  the body's bytes
    size_t size;         //  their count
} shoal_wire_envelope_t;

//  Scans a Request or a Response. 0, or -1 when the bytes are malformed or
//  a known field has another wire type (protobuf-c refuses those too).
int shoal_wire_scan_envelope (const uint8_t *data, size_t size, shoal_wire_envelope_t *envelope);

//  Finds the bytes of the Event inside a PublishRequest's bytes (a
//  Request's body 5; the Event is its field 1), as the client sent them:
//  a thin client's event is decoded from these by the strict codec, never
//  from protobuf-c's unpacked copy, which cuts a string at an embedded
//  NUL. 0 with *event_p, *event_size_p (an absent event: size 0, *event_p
//  NULL), or -1 when malformed or when the event comes twice (protobuf
//  would merge them).
int shoal_wire_publish_event (const uint8_t *data, size_t size, const uint8_t **event_p,
                              size_t *event_size_p);

//  A ReplayBatch body, scanned: call shoal_wire_batch_next for each event.
typedef struct {
    const uint8_t *data;   //  the batch's bytes
    const uint8_t *end;    //  their end
    const uint8_t *cursor; //  scan position
    uint64_t next_seq;     //  ReplayBatch.next_seq
    bool done;             //  ReplayBatch.done
    uint64_t head_seq;     //  ReplayBatch.head_seq
    size_t events;         //  events in the batch
} shoal_wire_batch_t;

//  Reads the scalar fields and counts the events. 0, or -1 when malformed
//  or a known field has another wire type.
int shoal_wire_scan_batch (const uint8_t *data, size_t size, shoal_wire_batch_t *batch);

//  The next event's bytes: 1 and *event_p/*size_p, 0 at the end.
int shoal_wire_batch_next (shoal_wire_batch_t *batch, const uint8_t **event_p, size_t *size_p);

#endif
