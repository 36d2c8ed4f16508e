/*  =========================================================================
    shoal_outbox - own events on their way from publishing threads to the engine

    Two byte buffers: `filling`, which writers append to under the mutex,
    and `taken`, which the engine reads without it. A take swaps them (the
    old taken buffer is emptied and becomes the new filling one), so the
    buffers are reused and a steady stream of publishes allocates nothing.

    A record in a buffer:

        seq         8 bytes, host order
        time_ns     8 bytes, host order
        size        4 bytes, length of the encoded event
        stream_len  1 byte
        type_len    1 byte
        stream      stream_len bytes, then a NUL
        type        type_len bytes
        event       size bytes, the encoded event

    Invariants:
    1. Records sit in the order pushed; the caller pushes under the heads
       lock, which makes that seq order for every stream.
    2. ready_fd's counter is non-zero exactly while filling holds a record
       (written by the push that ends emptiness, drained by the take).
    3. A push waits while filling holds a record and the new one would
       take it past limit, so a record of any size gets in, alone if need be.
    4. Once closed, pushes fail and waiting writers return.
    ========================================================================= */

#include "shoal_outbox.h"
#include "shoal_buffer.h"
#include "shoal_error.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define S_HEADER 22 //  seq, time_ns, size, stream length, type length

typedef struct {
    uint8_t *data; //  records
    size_t used;   //  bytes of records
    size_t alloc;  //  bytes allocated
} s_buffer_t;

//  Publishers write the first part on every push and the engine writes
//  the second on every record it reads, from another core: each part has
//  cache lines of its own, or every push and every read would pull the
//  shared line from the other core (false sharing).
struct _shoal_outbox_t {
    pthread_mutex_t mutex;         //  guards filling, closed and the fd counter
    pthread_cond_t space;          //  signalled on take and close
    s_buffer_t filling;            //  writers append here
    size_t limit;                  //  bytes filling may hold before pushes wait
    bool closed;                   //  pushes fail
    int ready_fd;                  //  eventfd, non-zero while filling has a record
    _Alignas(64) s_buffer_t taken; //  the engine reads here, without the lock
    size_t cursor;                 //  next record in taken
};

shoal_outbox_t *
shoal_outbox_new (size_t limit)
{
    shoal_outbox_t *self =
        (shoal_outbox_t *) aligned_alloc (_Alignof(shoal_outbox_t), sizeof (shoal_outbox_t));
    if (!self)
        return NULL;
    memset (self, 0, sizeof *self);
    self->limit = limit ? limit : 4 * 1024 * 1024;
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->space, NULL);
    self->ready_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->ready_fd < 0)
        shoal_outbox_destroy (&self);
    return self;
}

void
shoal_outbox_destroy (shoal_outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_outbox_t *self = *self_p;
    free (self->filling.data);
    free (self->taken.data);
    if (self->ready_fd >= 0)
        close (self->ready_fd);
    pthread_cond_destroy (&self->space);
    pthread_mutex_destroy (&self->mutex);
    free (self);
    *self_p = NULL;
}

int
shoal_outbox_push (shoal_outbox_t *self, const shoal_event_t *event, size_t size)
{
    const char *stream = shoal_event_stream (event);
    const char *type = shoal_event_type (event);
    size_t stream_size = strlen (stream);
    size_t type_size = strlen (type);
    if (stream_size > SHOAL_STREAM_MAX || type_size > SHOAL_TYPE_MAX || size > UINT32_MAX)
        return SHOAL_ERR_INVALID;
    size_t record = S_HEADER + stream_size + 1 + type_size + size;
    pthread_mutex_lock (&self->mutex);
    while (!self->closed && self->filling.used > 0 && self->filling.used + record > self->limit)
        pthread_cond_wait (&self->space, &self->mutex);
    s_buffer_t *buffer = &self->filling;
    int error =
        self->closed ? SHOAL_ERR_CLOSED
        : shoal_buffer_reserve (&buffer->data, &buffer->alloc, buffer->used + record, 64 * 1024)
            ? SHOAL_ERR_FAILED
            : SHOAL_OK;
    if (error) {
        pthread_mutex_unlock (&self->mutex);
        return error;
    }
    uint8_t *p = buffer->data + buffer->used;
    uint64_t seq = shoal_event_seq (event);
    int64_t time_ns = shoal_event_time_ns (event);
    uint32_t size32 = (uint32_t) size;
    memcpy (p, &seq, 8);
    memcpy (p + 8, &time_ns, 8);
    memcpy (p + 16, &size32, 4);
    p[20] = (uint8_t) stream_size;
    p[21] = (uint8_t) type_size;
    p += S_HEADER;
    memcpy (p, stream, stream_size + 1);
    p += stream_size + 1;
    memcpy (p, type, type_size);
    p += type_size;
    if (shoal_event_encode_to (event, p) != size) {
        pthread_mutex_unlock (&self->mutex);
        return SHOAL_ERR_FAILED;
    }
    //  Only the push that ends emptiness needs to wake the engine.
    if (buffer->used == 0) {
        uint64_t one = 1;
        if (write (self->ready_fd, &one, sizeof one) < 0 && errno != EAGAIN)
            zsys_error ("shoal_outbox: cannot signal: %s", strerror (errno));
    }
    buffer->used += record;
    pthread_mutex_unlock (&self->mutex);
    return 0;
}

bool
shoal_outbox_take (shoal_outbox_t *self)
{
    pthread_mutex_lock (&self->mutex);
    self->taken.used = 0;
    s_buffer_t swap = self->taken;
    self->taken = self->filling;
    self->filling = swap;
    self->cursor = 0;
    if (self->taken.used > 0) {
        uint64_t value;
        if (read (self->ready_fd, &value, sizeof value) < 0 && errno != EAGAIN)
            zsys_error ("shoal_outbox: cannot clear the signal: %s", strerror (errno));
        pthread_cond_broadcast (&self->space);
    }
    bool took = self->taken.used > 0;
    pthread_mutex_unlock (&self->mutex);
    return took;
}

int
shoal_outbox_next (shoal_outbox_t *self, shoal_outbox_record_t *record)
{
    if (self->cursor >= self->taken.used)
        return 0;
    const uint8_t *p = self->taken.data + self->cursor;
    uint32_t size;
    memcpy (&record->seq, p, 8);
    memcpy (&record->time_ns, p + 8, 8);
    memcpy (&size, p + 16, 4);
    size_t stream_size = p[20];
    record->type_size = p[21];
    p += S_HEADER;
    record->stream = (const char *) p;
    p += stream_size + 1;
    record->type = (const char *) p;
    p += record->type_size;
    record->data = p;
    record->size = size;
    self->cursor += S_HEADER + stream_size + 1 + record->type_size + size;
    return 1;
}

int
shoal_outbox_fd (shoal_outbox_t *self)
{
    return self->ready_fd;
}

void
shoal_outbox_close (shoal_outbox_t *self)
{
    pthread_mutex_lock (&self->mutex);
    self->closed = true;
    pthread_cond_broadcast (&self->space);
    pthread_mutex_unlock (&self->mutex);
}
