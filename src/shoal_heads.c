/*  =========================================================================
    shoal_heads - the seqs of a node's own streams

    Two locks, never taken the other way round:

    seq lock    held by a publishing thread from taking a seq until the
                event is in the outbox (which may wait for the engine to take);
                guards `next` of every stream. The engine only try-locks it.
    state lock  short holds only; guards durable, failed, the head to
                restart from after a failure, and wakes the waiters.

    The engine reports durability under the state lock alone, so a
    publisher waiting on a full outbox while holding the seq lock can
    never stop the engine from taking from that outbox.

    Invariants:
    1. `next` is read and changed only under the seq lock, so seqs are
       handed out once each, in order.
    2. After the engine reports a failed stream, take returns 0 until the
       engine reports it healthy again; then numbering restarts after the
       head the log really has (`restart`), not after seqs that never got in.
    3. A seq handed out and given back (untake, under the same hold of the
       seq lock) is handed out again next: no publish leaves a hole.
    ========================================================================= */

#include "shoal_heads.h"

#include "shoal_clock.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>

typedef struct {
    uint64_t next;         //  next seq to hand out (seq lock)
    uint64_t durable;      //  highest durable seq (state lock)
    bool taken;            //  a seq was handed out (state lock)
    bool restart;          //  next must restart after restart_head (state lock)
    uint64_t restart_head; //  the log's real head (state lock)
    bool failed;           //  the stream's log failed (state lock)
} s_stream_t;

struct _shoal_heads_t {
    pthread_mutex_t seq_lock;   //  guards next (see above)
    pthread_mutex_t state_lock; //  guards durable, restart, failed, closed, the table
    pthread_cond_t changed;     //  signalled when durable or failed changes
    zhashx_t *streams;          //  stream name -> s_stream_t (state lock)
    bool closed;                //  the node stops: waits fail
};

shoal_heads_t *
shoal_heads_new (void)
{
    shoal_heads_t *self = (shoal_heads_t *) zmalloc (sizeof (shoal_heads_t));
    pthread_mutex_init (&self->seq_lock, NULL);
    pthread_mutex_init (&self->state_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->changed, &attr);
    pthread_condattr_destroy (&attr);
    self->streams = zhashx_new ();
    zhashx_set_destructor (self->streams, (zhashx_destructor_fn *) zstr_free);
    return self;
}

void
shoal_heads_destroy (shoal_heads_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_heads_t *self = *self_p;
    zhashx_destroy (&self->streams);
    pthread_cond_destroy (&self->changed);
    pthread_mutex_destroy (&self->state_lock);
    pthread_mutex_destroy (&self->seq_lock);
    free (self);
    *self_p = NULL;
}

void
shoal_heads_lock (shoal_heads_t *self)
{
    pthread_mutex_lock (&self->seq_lock);
}

bool
shoal_heads_try_lock (shoal_heads_t *self)
{
    return pthread_mutex_trylock (&self->seq_lock) == 0;
}

void
shoal_heads_unlock (shoal_heads_t *self)
{
    pthread_mutex_unlock (&self->seq_lock);
}

//  The stream's entry, made when new. Caller holds the state lock.
static s_stream_t *
s_stream (shoal_heads_t *self, const char *stream)
{
    s_stream_t *entry = (s_stream_t *) zhashx_lookup (self->streams, stream);
    if (!entry) {
        entry = (s_stream_t *) zmalloc (sizeof (s_stream_t));
        entry->next = 1;
        zhashx_insert (self->streams, stream, entry);
    }
    return entry;
}

uint64_t
shoal_heads_take (shoal_heads_t *self, const char *stream)
{
    //  Caller holds the seq lock; the state lock is taken inside it.
    pthread_mutex_lock (&self->state_lock);
    s_stream_t *entry = s_stream (self, stream);
    uint64_t seq = 0;
    if (!entry->failed) {
        if (entry->restart) {
            entry->next = entry->restart_head + 1;
            entry->restart = false;
        }
        seq = entry->next++;
        entry->taken = true;
    }
    pthread_mutex_unlock (&self->state_lock);
    return seq;
}

void
shoal_heads_untake (shoal_heads_t *self, const char *stream, uint64_t seq)
{
    pthread_mutex_lock (&self->state_lock);
    s_stream_t *entry = s_stream (self, stream);
    if (seq > 0 && entry->next == seq + 1 && !entry->restart)
        entry->next = seq;
    pthread_mutex_unlock (&self->state_lock);
}

//  What update and renumber share: renumber also restarts the numbering
//  of a healthy stream that has handed out seqs.
static void
s_update (shoal_heads_t *self, const char *stream, uint64_t head, uint64_t durable, bool failed,
          bool renumber)
{
    pthread_mutex_lock (&self->state_lock);
    s_stream_t *entry = s_stream (self, stream);
    //  The engine knows the log's real head; numbering continues after it
    //  for a stream that has handed out nothing yet, or that comes back
    //  from a failure (seqs taken meanwhile never got in).
    if (!failed && (renumber || entry->failed || !entry->taken)) {
        entry->restart = true;
        entry->restart_head = head;
    }
    entry->durable = durable;
    entry->failed = failed;
    pthread_cond_broadcast (&self->changed);
    pthread_mutex_unlock (&self->state_lock);
}

void
shoal_heads_update (shoal_heads_t *self, const char *stream, uint64_t head, uint64_t durable,
                    bool failed)
{
    s_update (self, stream, head, durable, failed, false);
}

void
shoal_heads_renumber (shoal_heads_t *self, const char *stream, uint64_t head, uint64_t durable,
                      bool failed)
{
    s_update (self, stream, head, durable, failed, true);
}

int
shoal_heads_wait (shoal_heads_t *self, const char *stream, uint64_t seq, int timeout_ms)
{
    struct timespec deadline = shoal_deadline_after (timeout_ms);
    int rc = -1;
    pthread_mutex_lock (&self->state_lock);
    while (!self->closed) {
        s_stream_t *entry = s_stream (self, stream);
        if (entry->durable >= seq) {
            rc = 0;
            break;
        }
        if (entry->failed || timeout_ms == 0)
            break;
        if (timeout_ms < 0)
            pthread_cond_wait (&self->changed, &self->state_lock);
        else if (pthread_cond_timedwait (&self->changed, &self->state_lock, &deadline) == ETIMEDOUT)
            timeout_ms = 0; //  one last look, then give up
    }
    pthread_mutex_unlock (&self->state_lock);
    return rc;
}

void
shoal_heads_close (shoal_heads_t *self)
{
    pthread_mutex_lock (&self->state_lock);
    self->closed = true;
    pthread_cond_broadcast (&self->changed);
    pthread_mutex_unlock (&self->state_lock);
}
