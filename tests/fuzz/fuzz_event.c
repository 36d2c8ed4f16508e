/*  =========================================================================
    fuzz_event - the event decoder and the response scanner, on any bytes

    Every event that reaches a node from the network goes through
    shoal_event_decode (live PUB frames, replay batches, thin-client
    publishes); requests and responses go through shoal_wire_scan_envelope
    (and a batch through shoal_wire_scan_batch) first. This target feeds the input to all of
    them and checks, for any bytes:

    1. decode returns an event exactly when it reports no error;
    2. an event decoded re-encodes to bytes that decode to an equal event,
       and that second encoding is byte for byte the first (one canonical
       form), and fits the size limit it was decoded under;
    3. what decode accepts, protobuf-c's generic decoder accepts too, and
       peek finds the same stream and seq;
    4. the batch scanner yields at most the events it counted, each inside
       the input;
    5. the envelope scanner (which routes a thin client's publish without
       protobuf-c) reads the same request id and body as protobuf-c from
       a Request they both accept, when it finds a body (a request it
       refuses, with no body, or with its body twice, goes to
       protobuf-c); and a publish it routes that protobuf-c refuses is
       refused still: its event does not come out, or does not decode.
    ========================================================================= */

#include "fuzz.h"
#include "shoal_event.h"
#include "shoal_wire.h"

#include <string.h>

#define S_MAX_SIZE (64 * 1024) //  the limit the target decodes under

static void
s_check_event (const uint8_t *data, size_t size)
{
    int error = -1;
    shoal_event_t *event = shoal_event_decode (data, size, S_MAX_SIZE, &error);
    FUZZ_CHECK ((event != NULL) == (error == 0));
    shoal_event_peek_t peek;
    int peeked = shoal_event_peek (data, size, &peek);
    if (!event)
        return;
    FUZZ_CHECK (size <= S_MAX_SIZE);
    FUZZ_CHECK (shoal_event_validate (event, S_MAX_SIZE) == 0);
    FUZZ_CHECK (peeked == 0);
    FUZZ_CHECK (peek.stream_size == strlen (shoal_event_stream (event))
                && memcmp (peek.stream, shoal_event_stream (event), peek.stream_size) == 0);
    FUZZ_CHECK (peek.seq == shoal_event_seq (event));
    Shoal__V1__Event *generic = shoal__v1__event__unpack (NULL, size, data);
    FUZZ_CHECK (generic != NULL);
    shoal__v1__event__free_unpacked (generic, NULL);

    uint8_t *first, *second;
    size_t first_size, second_size;
    FUZZ_CHECK (shoal_event_encode (event, &first, &first_size) == 0);
    FUZZ_CHECK (first_size == shoal_event_encoded_size (event));
    FUZZ_CHECK (first_size <= size);
    shoal_event_t *again = shoal_event_decode (first, first_size, S_MAX_SIZE, &error);
    FUZZ_CHECK (again != NULL);
    FUZZ_CHECK (shoal_event_eq (event, again));
    FUZZ_CHECK (shoal_event_encode (again, &second, &second_size) == 0);
    FUZZ_CHECK (second_size == first_size && memcmp (first, second, first_size) == 0);
    free (first);
    free (second);
    shoal_event_destroy (&again);
    shoal_event_destroy (&event);
}

static void
s_check_response (const uint8_t *data, size_t size)
{
    shoal_wire_envelope_t outline;
    if (shoal_wire_scan_envelope (data, size, &outline))
        return;
    FUZZ_CHECK (outline.size == 0
                || (outline.data >= data && outline.data + outline.size <= data + size));
    if (outline.body != SHOAL__V1__RESPONSE__BODY_BATCH)
        return;
    shoal_wire_batch_t batch;
    if (shoal_wire_scan_batch (outline.data, outline.size, &batch))
        return;
    const uint8_t *event;
    size_t event_size, seen = 0;
    while (shoal_wire_batch_next (&batch, &event, &event_size)) {
        FUZZ_CHECK (event >= outline.data && event + event_size <= outline.data + outline.size);
        seen++;
        FUZZ_CHECK (seen <= batch.events);
        shoal_event_t *decoded = shoal_event_decode (event, event_size, S_MAX_SIZE, NULL);
        shoal_event_destroy (&decoded);
    }
}

static void
s_check_request (const uint8_t *data, size_t size)
{
    shoal_wire_envelope_t envelope;
    int scanned = shoal_wire_scan_envelope (data, size, &envelope);
    uint32_t body = envelope.body;
    Shoal__V1__Request *request = shoal__v1__request__unpack (NULL, size, data);
    if (!request) {
        //  A publish the scanner routes, which protobuf-c refuses, is
        //  still refused: its event does not come out, or does not decode.
        if (scanned == 0 && body == SHOAL__V1__REQUEST__BODY_PUBLISH) {
            const uint8_t *event_data = NULL;
            size_t event_size = 0;
            shoal_event_t *event = NULL;
            if (shoal_wire_publish_event (envelope.data, envelope.size, &event_data, &event_size)
                == 0)
                event = shoal_event_decode (event_data, event_size, S_MAX_SIZE, NULL);
            FUZZ_CHECK (event == NULL);
            shoal_event_destroy (&event);
        }
        return;
    }
    if (scanned == 0 && body != 0) {
        FUZZ_CHECK (envelope.request_id == request->request_id);
        FUZZ_CHECK (body == (uint32_t) request->body_case);
    }
    shoal__v1__request__free_unpacked (request, NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_check_event (data, size);
    s_check_response (data, size);
    s_check_request (data, size);
    return 0;
}
