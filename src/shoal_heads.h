/*  =========================================================================
    shoal_heads - the seqs of a node's own streams, shared by the
    application threads and the engine

    Publishing returns the event's seq at once, without a round trip to the
    engine: the publishing thread takes the next seq of the stream here,
    under the lock, and hands the event to the engine while it still holds
    it, so the engine receives each stream's events in seq order. The
    engine takes seqs here too (for thin clients publishing over ROUTER),
    and reports the durable watermark, which wakes threads waiting in
    shoal_node_wait_durable.

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_HEADS_H_INCLUDED
#define SHOAL_HEADS_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

typedef struct _shoal_heads_t shoal_heads_t;

shoal_heads_t *shoal_heads_new (void);
void shoal_heads_destroy (shoal_heads_t **self_p);

//  The lock over every stream's counters. try_lock returns true when taken.
void shoal_heads_lock (shoal_heads_t *self);
bool shoal_heads_try_lock (shoal_heads_t *self);
void shoal_heads_unlock (shoal_heads_t *self);

//  With the lock held: the next seq of stream, counted from head when the
//  stream is new here (its log's head). Returns 0 when the stream failed.
uint64_t shoal_heads_take (shoal_heads_t *self, const char *stream);

//  With the lock still held since the take: gives seq back when it is the
//  last one taken, so a publish that could not hand its event on leaves
//  no hole in the numbering (the next take returns seq again).
void shoal_heads_untake (shoal_heads_t *self, const char *stream, uint64_t seq);

//  Sets what the engine knows of a stream: its head and durable seq, and
//  whether its log failed. Takes the lock; wakes waiters.
void shoal_heads_update (shoal_heads_t *self, const char *stream, uint64_t head, uint64_t durable,
                         bool failed);

//  The same, and the numbering restarts after head even though the stream
//  has handed out seqs: the engine got a seq its log did not expect. One
//  hold of the lock: no waiter or publisher sees the stream failed meanwhile.
void shoal_heads_renumber (shoal_heads_t *self, const char *stream, uint64_t head, uint64_t durable,
                           bool failed);

//  Waits until stream's durable seq reaches seq: 0, or -1 on timeout or a
//  failed log. timeout_ms < 0 waits for ever.
int shoal_heads_wait (shoal_heads_t *self, const char *stream, uint64_t seq, int timeout_ms);

//  Wakes every waiter (the node is stopping); later waits fail at once.
void shoal_heads_close (shoal_heads_t *self);

#endif
