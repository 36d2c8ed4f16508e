/*  =========================================================================
    shoal_store - a node's data directory

    The store holds what a node keeps across restarts:
    - its node id, 16 random bytes made on first open and kept forever;
    - every log the node holds: its own streams (origin = node id) and the
      replicas of other origins' streams, one shoal_log each;
    - the cursors of its durable consumers, one seq per (origin, stream);
    - a lock, so two processes never open one data directory.

    Metadata files (node id, cursors) are replaced atomically: temp file,
    fsync, rename, fsync of the directory. The layout on disk and the
    invariants are drawn at the top of shoal_store.c.

    Like shoal_log, a store is used from one thread at a time.
    ========================================================================= */

#ifndef SHOAL_STORE_H_INCLUDED
#define SHOAL_STORE_H_INCLUDED

#include "shoal_log.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _shoal_store_t shoal_store_t;

//  Opens (creating when missing) the data directory dir, takes its lock,
//  loads or makes the node id, and opens every log found in it.
//  log_config (may be NULL) is the configuration every log gets; its io
//  is used for all files. Returns NULL with *error_p set (LOCKED when
//  another process holds the directory, IO when it cannot be created or
//  written, CORRUPT when the node id file is damaged) and the reason in
//  words in shoal_store_open_error ().
shoal_store_t *shoal_store_open (const char *dir, const shoal_log_config_t *log_config,
                                 int *error_p);

//  Flushes and closes every log, writes dirty cursors, releases the lock.
void shoal_store_close (shoal_store_t **self_p);

//  The default data directory: $XDG_DATA_HOME/shoal when XDG_DATA_HOME is
//  an absolute path, else ~/.local/share/shoal. Caller owns return value
//  (free ()).
char *shoal_store_default_dir (void);

//  Why the last shoal_store_open in this thread failed, in words.
const char *shoal_store_open_error (void);

const char *shoal_store_dir (const shoal_store_t *self);
const uint8_t *shoal_store_node_id (const shoal_store_t *self);

//  The log of (origin, stream), opened or (with create) made. The store
//  owns it: never close it yourself. NULL with *error_p when it is absent
//  (NOT_FOUND) or cannot be opened.
shoal_log_t *shoal_store_log (shoal_store_t *self, const uint8_t origin[SHOAL_ID_SIZE],
                              const char *stream, bool create, int *error_p);

//  The logs held, in no particular order (0 <= index < count).
size_t shoal_store_log_count (const shoal_store_t *self);
shoal_log_t *shoal_store_log_at (const shoal_store_t *self, size_t index);

//  Flushes every log (shoal_log_flush). 0, or -1 if any failed.
int shoal_store_flush (shoal_store_t *self);
//  Flushes the logs whose window ended. 0, or -1 if any failed.
int shoal_store_flush_due (shoal_store_t *self);
//  Earliest shoal_log_deadline of all logs, or -1.
int64_t shoal_store_deadline (const shoal_store_t *self);

//  Retention per stream (stream "*" sets the default for streams without
//  their own); applies to own logs and replicas alike. 0 = unlimited.
void shoal_store_set_retention (shoal_store_t *self, const char *stream, uint64_t bytes,
                                int64_t age_ns);
//  Applies retention to every log; returns segments dropped or -1.
int shoal_store_apply_retention (shoal_store_t *self, int64_t now_ns);

//  Consumer names: [A-Za-z0-9_][A-Za-z0-9._-]{0,63}.
bool shoal_consumer_name_valid (const char *name);

//  Sets the cursor of a consumer for (origin, stream): the last seq it
//  has acknowledged. Kept in memory until shoal_store_cursors_flush.
//  A cursor never moves backwards: a lower seq is ignored. 0 or -1
//  (invalid name).
int shoal_store_cursor_set (shoal_store_t *self, const char *consumer,
                            const uint8_t origin[SHOAL_ID_SIZE], const char *stream, uint64_t seq);
//  The cursor, or 0 when the consumer has none for (origin, stream).
uint64_t shoal_store_cursor (const shoal_store_t *self, const char *consumer,
                             const uint8_t origin[SHOAL_ID_SIZE], const char *stream);
//  Writes every consumer whose cursors changed, each file replaced
//  atomically. 0 or -1.
int shoal_store_cursors_flush (shoal_store_t *self);
//  True when cursors changed since the last flush.
bool shoal_store_cursors_dirty (const shoal_store_t *self);

//  Consumers known to the store, sorted by name (0 <= index < count).
size_t shoal_store_consumer_count (const shoal_store_t *self);
const char *shoal_store_consumer_name (const shoal_store_t *self, size_t index);
//  True when the store knows the consumer (it may have no cursor yet).
bool shoal_store_consumer_exists (const shoal_store_t *self, const char *consumer);
//  The cursors of one consumer (0 <= index < count); -1 when out of range.
size_t shoal_store_consumer_cursor_count (const shoal_store_t *self, const char *consumer);
int shoal_store_consumer_cursor_at (const shoal_store_t *self, const char *consumer, size_t index,
                                    uint8_t origin[SHOAL_ID_SIZE], const char **stream_p,
                                    uint64_t *seq_p);
//  Deletes a consumer and its file. 0, or -1 when there is no such consumer.
int shoal_store_consumer_delete (shoal_store_t *self, const char *consumer);

#ifdef __cplusplus
}
#endif

#endif
