/*  =========================================================================
    shoal_dedupe - the window of event ids a node remembers per stream, so
    that a thin client that publishes the same event again (a retry after
    a lost ack) gets the first PublishAck back instead of a second copy

    The window holds the last N ids recorded (N = dedupe_window, default
    100,000) with the seq each got. It is a fixed ring of (id, seq)
    entries, oldest first, plus an open-addressing index over the ring:
    24 bytes per entry and 4 per index slot (two or more slots an entry),
    allocated once, so a full
    window of 100,000 costs about 3.5 MiB, touched only as it fills.

    Private to the library.
    ========================================================================= */

#ifndef SHOAL_DEDUPE_H_INCLUDED
#define SHOAL_DEDUPE_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define SHOAL_DEDUPE_ID_SIZE 16

typedef struct _shoal_dedupe_t shoal_dedupe_t;

//  A window of `window` ids (at least 1; more than 2^30 is taken as 2^30).
//  NULL when window is 0 or memory is short: the functions below accept
//  NULL as an empty window that remembers nothing.
shoal_dedupe_t *shoal_dedupe_new (size_t window);

//  Idempotent; nulls the pointer.
void shoal_dedupe_destroy (shoal_dedupe_t **self_p);

//  Remembers id with its seq (seq > 0). When the window is full the oldest
//  id is forgotten. An id already remembered keeps its first seq: returns
//  1 and changes nothing; else 0.
int shoal_dedupe_insert (shoal_dedupe_t *self, const uint8_t *id, uint64_t seq);

//  The seq remembered for id, 0 when it is not in the window.
uint64_t shoal_dedupe_lookup (const shoal_dedupe_t *self, const uint8_t *id);

//  Ids remembered now.
size_t shoal_dedupe_size (const shoal_dedupe_t *self);

#endif
