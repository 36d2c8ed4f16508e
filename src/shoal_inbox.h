/*  =========================================================================
    shoal_inbox - events on their way from the engine to the application

    A bounded FIFO of (subscription id, event) under a mutex, with a
    condition variable for blocking receives and two eventfds: `ready` is
    readable while the inbox holds an event (for the application's poll
    loop), and `space` becomes readable when a full inbox drains to half,
    so the engine knows it may deliver again. A full inbox never blocks
    the engine: it keeps events in its subscriptions (bounded), and what
    does not fit there is fetched again later by replay.

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_INBOX_H_INCLUDED
#define SHOAL_INBOX_H_INCLUDED

#include "shoal_event.h"

typedef struct _shoal_inbox_t shoal_inbox_t;

shoal_inbox_t *shoal_inbox_new (size_t limit);
//  Destroys the inbox and every event still in it.
void shoal_inbox_destroy (shoal_inbox_t **self_p);

//  Room for this many more events.
size_t shoal_inbox_room (shoal_inbox_t *self);

//  Adds events in order under one lock, as many as there is room for
//  (ownership of those taken); returns how many.
size_t shoal_inbox_push_many (shoal_inbox_t *self, int subscription, shoal_event_t **events,
                              size_t count);

//  Takes the oldest event, waiting up to timeout_ms (-1 for ever). NULL on
//  timeout or after close.
shoal_event_t *shoal_inbox_pop (shoal_inbox_t *self, int timeout_ms, int *subscription_p);

//  Wakes every receiver; later pops return what is left, then NULL.
void shoal_inbox_close (shoal_inbox_t *self);

int shoal_inbox_ready_fd (shoal_inbox_t *self);
int shoal_inbox_space_fd (shoal_inbox_t *self);
//  The engine clears the space signal before it delivers.
void shoal_inbox_clear_space (shoal_inbox_t *self);

#endif
