/*  =========================================================================
    shoal_outbox - own events on their way from publishing threads to the engine

    The mirror of shoal_inbox. Publishing threads encode each event straight
    into a shared byte buffer under a mutex; the engine swaps that buffer
    for an empty one and works through the records without the lock, so a
    burst of publishes costs the engine one wake-up and no allocation per
    event. An eventfd is readable while the outbox holds a record, so the
    engine polls it beside its sockets. The byte limit is the back-pressure
    on producers faster than the disk: a push waits while the buffer is
    full (a record bigger than the limit still goes, alone).

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_OUTBOX_H_INCLUDED
#define SHOAL_OUTBOX_H_INCLUDED

#include "shoal_event.h"

typedef struct _shoal_outbox_t shoal_outbox_t;

//  One record, as the engine reads it: pointers into the taken buffer,
//  valid until the next take.
typedef struct {
    uint64_t seq;        //  the event's seq
    int64_t time_ns;     //  its time
    const char *stream;  //  NUL-terminated stream name
    const char *type;    //  type name (not terminated)
    size_t type_size;    //  its length
    const uint8_t *data; //  the encoded event
    size_t size;         //  its length
} shoal_outbox_record_t;

//  limit: bytes the buffer may hold before pushes wait.
shoal_outbox_t *shoal_outbox_new (size_t limit);
void shoal_outbox_destroy (shoal_outbox_t **self_p);

//  Appends an event whose stream, type, seq and time are set, encoded in
//  `size` bytes (shoal_event_encoded_size). Waits while the outbox is
//  full. 0, or a shoal_error_t: CLOSED once the outbox is closed (also
//  for a push that was waiting), INVALID when its names are too long,
//  FAILED when it cannot go in (out of memory, the encoding fails).
int shoal_outbox_push (shoal_outbox_t *self, const shoal_event_t *event, size_t size);

//  Engine side: takes every record pushed so far (the previous take's
//  records become invalid). True when there were any.
bool shoal_outbox_take (shoal_outbox_t *self);

//  The next taken record: 1, or 0 when every taken record was read.
int shoal_outbox_next (shoal_outbox_t *self, shoal_outbox_record_t *record);

//  Readable while records wait to be taken.
int shoal_outbox_fd (shoal_outbox_t *self);

//  Wakes every waiting writer; later pushes fail at once.
void shoal_outbox_close (shoal_outbox_t *self);

#endif
