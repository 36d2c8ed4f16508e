/*  =========================================================================
    test_outbox - the queue from publishing threads to the engine

    Records come out in the order pushed with every field intact; the
    ready fd follows emptiness; a full outbox makes a writer wait until
    the engine takes; an event bigger than the limit still goes, alone;
    close releases a waiting writer and refuses later pushes.
    ========================================================================= */

#include "shoal.h"
#include "shoal_outbox.h"
#include "tap.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static shoal_event_t *
s_event (const char *stream, const char *type, uint64_t seq, size_t payload_size)
{
    shoal_event_t *event = shoal_event_new ();
    shoal_event_set_stream (event, stream);
    shoal_event_set_type (event, type);
    shoal_event_set_seq (event, seq);
    shoal_event_set_time_ns (event, (int64_t) seq * 1000);
    uint8_t payload[4096];
    for (size_t i = 0; i < payload_size && i < sizeof payload; i++)
        payload[i] = (uint8_t) (seq + i);
    shoal_event_set_payload (event, payload, payload_size);
    return event;
}

static int
s_push (shoal_outbox_t *outbox, shoal_event_t *event)
{
    return shoal_outbox_push (outbox, event, shoal_event_encoded_size (event));
}

static bool
s_readable (int fd)
{
    struct pollfd item = {fd, POLLIN, 0};
    return poll (&item, 1, 0) == 1;
}

static void
test_order_and_fields (void)
{
    shoal_outbox_t *outbox = shoal_outbox_new (1 << 20);
    ok (outbox != NULL, "an outbox is made");
    ok (!s_readable (shoal_outbox_fd (outbox)), "an empty outbox is not readable");
    const char *streams[] = {"orders", "payments", "o"};
    int pushed = 0;
    for (uint64_t seq = 1; seq <= 300; seq++) {
        shoal_event_t *event = s_event (streams[seq % 3], seq % 2 ? "OrderPlaced" : "T", seq,
                                        (size_t) (seq * 7 % 500));
        pushed += s_push (outbox, event) == 0;
        shoal_event_destroy (&event);
    }
    is_int (pushed, 300, "300 pushes accepted");
    ok (s_readable (shoal_outbox_fd (outbox)), "a non-empty outbox is readable");
    ok (shoal_outbox_take (outbox), "take finds records");
    ok (!s_readable (shoal_outbox_fd (outbox)), "the take clears the signal");
    shoal_outbox_record_t record;
    int good = 0, count = 0;
    while (shoal_outbox_next (outbox, &record)) {
        count++;
        uint64_t seq = (uint64_t) count;
        shoal_event_t *decoded = shoal_event_decode (record.data, record.size, 0, NULL);
        const char *type = seq % 2 ? "OrderPlaced" : "T";
        if (record.seq == seq && record.time_ns == (int64_t) seq * 1000
            && strcmp (record.stream, streams[seq % 3]) == 0 && record.type_size == strlen (type)
            && memcmp (record.type, type, record.type_size) == 0 && decoded
            && shoal_event_seq (decoded) == seq
            && shoal_event_payload_size (decoded) == (size_t) (seq * 7 % 500))
            good++;
        shoal_event_destroy (&decoded);
    }
    is_int (count, 300, "every record comes out once");
    is_int (good, 300, "in push order, with seq, time, stream, type and the event intact");
    ok (!shoal_outbox_take (outbox), "a second take finds nothing");
    shoal_outbox_destroy (&outbox);
    ok (outbox == NULL, "destroy nulls the pointer");
}

typedef struct {
    shoal_outbox_t *outbox;
    int pushed;
    int refused;
} s_writer_t;

static void *
s_writer (void *arg)
{
    s_writer_t *writer = (s_writer_t *) arg;
    for (uint64_t seq = 1; seq <= 50; seq++) {
        shoal_event_t *event = s_event ("orders", "Big", seq, 1000);
        if (s_push (writer->outbox, event) == 0)
            writer->pushed++;
        else
            writer->refused++;
        shoal_event_destroy (&event);
    }
    return NULL;
}

static void
test_back_pressure (void)
{
    //  Room for about ten 1 KiB events: the writer must wait for takes.
    shoal_outbox_t *outbox = shoal_outbox_new (10 * 1024);
    s_writer_t writer = {outbox, 0, 0};
    pthread_t thread;
    pthread_create (&thread, NULL, s_writer, &writer);
    usleep (100 * 1000);
    ok (writer.pushed < 50, "a full outbox holds the writer back (%d of 50 in)", writer.pushed);
    int taken = 0, takes = 0;
    uint64_t expect = 1;
    bool in_order = true;
    for (int spin = 0; spin < 2000 && taken < 50; spin++) {
        if (shoal_outbox_take (outbox)) {
            takes++;
            shoal_outbox_record_t record;
            while (shoal_outbox_next (outbox, &record)) {
                in_order = in_order && record.seq == expect++;
                taken++;
            }
        }
        else
            usleep (1000);
    }
    pthread_join (thread, NULL);
    while (shoal_outbox_take (outbox)) {
        shoal_outbox_record_t record;
        while (shoal_outbox_next (outbox, &record)) {
            in_order = in_order && record.seq == expect++;
            taken++;
        }
    }
    is_int (taken, 50, "every event got through once the engine took");
    ok (takes > 1, "it took several takes (%d)", takes);
    ok (in_order, "in order");

    //  An event bigger than the whole limit still goes, alone.
    shoal_event_t *big = s_event ("orders", "Huge", 1, 4000);
    shoal_outbox_t *small = shoal_outbox_new (1024);
    is_int (s_push (small, big), 0,
            "an event bigger than the limit is accepted into an empty outbox");
    shoal_outbox_record_t record;
    ok (shoal_outbox_take (small) && shoal_outbox_next (small, &record) && record.size > 4000,
        "and comes out whole");
    shoal_outbox_destroy (&small);
    shoal_event_destroy (&big);
    shoal_outbox_destroy (&outbox);
}

static void
test_close (void)
{
    shoal_outbox_t *outbox = shoal_outbox_new (10 * 1024);
    s_writer_t writer = {outbox, 0, 0};
    pthread_t thread;
    pthread_create (&thread, NULL, s_writer, &writer);
    usleep (100 * 1000);
    shoal_outbox_close (outbox);
    pthread_join (thread, NULL); //  would hang if close did not release the writer
    ok (writer.pushed > 0 && writer.refused > 0 && writer.pushed + writer.refused == 50,
        "close releases a waiting writer; later pushes fail (%d in, %d refused)", writer.pushed,
        writer.refused);
    shoal_event_t *event = s_event ("orders", "T", 1, 10);
    is_int (s_push (outbox, event), SHOAL_ERR_CLOSED, "a push after close fails: CLOSED");
    shoal_event_destroy (&event);
    shoal_outbox_destroy (&outbox);
}

int
main (void)
{
    plan_lazy ();
    test_order_and_fields ();
    test_back_pressure ();
    test_close ();
    return done_testing ();
}
