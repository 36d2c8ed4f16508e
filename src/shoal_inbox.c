/*  =========================================================================
    shoal_inbox - events on their way from the engine to the application

    A ring of (subscription, event) slots. Invariants:
    1. ready_fd's counter is non-zero exactly while count > 0 (written on
       the push that makes the inbox non-empty, drained on the pop that
       empties it), so a poll on it is level-triggered.
    2. space_fd is written once when a pop brings a full-marked inbox down
       to half its limit; the engine clears it before delivering again.
    ========================================================================= */

#include "shoal_inbox.h"

#include "shoal_clock.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int subscription;     //  subscription id
    shoal_event_t *event; //  owned event
} s_slot_t;

struct _shoal_inbox_t {
    pthread_mutex_t mutex;   //  guards everything below
    pthread_cond_t nonempty; //  signalled on push
    s_slot_t *slots;         //  ring of limit slots
    size_t limit;            //  slots
    size_t head;             //  oldest slot
    size_t count;            //  slots used
    bool was_full;           //  a push found it full: signal space at half
    bool closed;             //  receivers stop waiting
    int ready_fd;            //  eventfd, non-zero while count > 0
    int space_fd;            //  eventfd, written when a full inbox drains to half
};

shoal_inbox_t *
shoal_inbox_new (size_t limit)
{
    shoal_inbox_t *self = (shoal_inbox_t *) zmalloc (sizeof (shoal_inbox_t));
    self->limit = limit ? limit : 10000;
    self->slots = (s_slot_t *) zmalloc (self->limit * sizeof (s_slot_t));
    pthread_mutex_init (&self->mutex, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->nonempty, &attr);
    pthread_condattr_destroy (&attr);
    self->ready_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->space_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->ready_fd < 0 || self->space_fd < 0) {
        shoal_inbox_destroy (&self);
        return NULL;
    }
    return self;
}

void
shoal_inbox_destroy (shoal_inbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_inbox_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        shoal_event_destroy (&self->slots[(self->head + i) % self->limit].event);
    free (self->slots);
    if (self->ready_fd >= 0)
        close (self->ready_fd);
    if (self->space_fd >= 0)
        close (self->space_fd);
    pthread_cond_destroy (&self->nonempty);
    pthread_mutex_destroy (&self->mutex);
    free (self);
    *self_p = NULL;
}

static void
s_signal (int fd)
{
    uint64_t one = 1;
    if (write (fd, &one, sizeof one) < 0 && errno != EAGAIN)
        zsys_error ("shoal_inbox: cannot signal: %s", strerror (errno));
}

static void
s_clear (int fd)
{
    uint64_t value;
    if (read (fd, &value, sizeof value) < 0 && errno != EAGAIN)
        zsys_error ("shoal_inbox: cannot clear a signal: %s", strerror (errno));
}

size_t
shoal_inbox_room (shoal_inbox_t *self)
{
    pthread_mutex_lock (&self->mutex);
    size_t room = self->limit - self->count;
    if (room == 0)
        self->was_full = true;
    pthread_mutex_unlock (&self->mutex);
    return room;
}

size_t
shoal_inbox_push_many (shoal_inbox_t *self, int subscription, shoal_event_t **events, size_t count)
{
    pthread_mutex_lock (&self->mutex);
    size_t room = self->limit - self->count;
    if (count > room) {
        count = room;
        self->was_full = true;
    }
    for (size_t i = 0; i < count; i++)
        self->slots[(self->head + self->count + i) % self->limit] =
            (s_slot_t){subscription, events[i]};
    if (self->count == 0 && count > 0) {
        s_signal (self->ready_fd);
        pthread_cond_broadcast (&self->nonempty);
    }
    self->count += count;
    pthread_mutex_unlock (&self->mutex);
    return count;
}

shoal_event_t *
shoal_inbox_pop (shoal_inbox_t *self, int timeout_ms, int *subscription_p)
{
    //  The clock is read only when there is nothing to take at once.
    struct timespec deadline;
    bool timed = false;
    pthread_mutex_lock (&self->mutex);
    while (self->count == 0 && !self->closed && timeout_ms != 0) {
        if (timeout_ms < 0)
            pthread_cond_wait (&self->nonempty, &self->mutex);
        else {
            if (!timed) {
                deadline = shoal_deadline_after (timeout_ms);
                timed = true;
            }
            if (pthread_cond_timedwait (&self->nonempty, &self->mutex, &deadline) == ETIMEDOUT)
                break;
        }
    }
    shoal_event_t *event = NULL;
    if (self->count > 0) {
        s_slot_t *slot = &self->slots[self->head];
        event = slot->event;
        if (subscription_p)
            *subscription_p = slot->subscription;
        slot->event = NULL;
        self->head = (self->head + 1) % self->limit;
        if (--self->count == 0)
            s_clear (self->ready_fd);
        if (self->was_full && self->count <= self->limit / 2) {
            self->was_full = false;
            s_signal (self->space_fd);
        }
    }
    pthread_mutex_unlock (&self->mutex);
    return event;
}

void
shoal_inbox_close (shoal_inbox_t *self)
{
    pthread_mutex_lock (&self->mutex);
    self->closed = true;
    pthread_cond_broadcast (&self->nonempty);
    pthread_mutex_unlock (&self->mutex);
}

int
shoal_inbox_ready_fd (shoal_inbox_t *self)
{
    return self->ready_fd;
}

int
shoal_inbox_space_fd (shoal_inbox_t *self)
{
    return self->space_fd;
}

void
shoal_inbox_clear_space (shoal_inbox_t *self)
{
    s_clear (self->space_fd);
}
