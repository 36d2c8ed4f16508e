/*  =========================================================================
    shoal_log - the durable log of one (origin, stream)

    An append-only sequence of records, one per event, numbered by seq with
    no gaps, kept in segment files in one directory. Each record carries
    the event's encoded bytes (the log never parses them), its seq, its
    time, and CRC32C checksums. The byte layout and the invariants are
    drawn at the top of shoal_log.c.

    Writes are buffered and made durable by the fsync policy:
      always  every append is written and fdatasync'd before it returns;
      batch   group commit: the buffer is written and fdatasync'd when the
              window (default 2 ms) since the first unsynced append ends,
              or when the buffer fills (the default policy);
      never   the buffer is written when the window ends or it fills, and
              the OS decides when it reaches the disk.
    shoal_log_durable () is the highest seq on stable storage under the
    policy in force: the node sends and acknowledges nothing above it.
    The log has no thread of its own: appends flush when due, and an owner
    with a poll loop calls shoal_log_flush_due () at shoal_log_deadline ().

    One process, one thread at a time: the owner (the node actor) serialises
    calls. Several logs can share one shoal_io_t.
    ========================================================================= */

#ifndef SHOAL_LOG_H_INCLUDED
#define SHOAL_LOG_H_INCLUDED

#include "shoal_event.h"
#include "shoal_io.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _shoal_log_t shoal_log_t;
typedef struct _shoal_log_iter_t shoal_log_iter_t;

typedef enum { SHOAL_FSYNC_BATCH = 0, SHOAL_FSYNC_ALWAYS, SHOAL_FSYNC_NEVER } shoal_fsync_t;

typedef struct {
    shoal_fsync_t fsync;     //  fsync policy, default batch
    int64_t window_us;       //  group-commit window, default 2000 (2 ms)
    size_t buffer_size;      //  write buffer, default 1 MiB; a full buffer flushes
    uint64_t segment_size;   //  roll to a new segment past this, default 64 MiB
    uint32_t index_interval; //  bytes of records between index entries, default 16 KiB
    uint64_t retain_bytes;   //  retention by total size, 0 = keep all
    int64_t retain_age_ns;   //  retention by record age, 0 = keep all
    size_t max_record;       //  largest record accepted, default 16 MiB
    shoal_io_t *io;          //  file operations, default shoal_io_posix ()
} shoal_log_config_t;

//  Fills config with the defaults above.
void shoal_log_config_defaults (shoal_log_config_t *config);

//  Parses "always", "batch" or "never"; -1 if none of them.
int shoal_fsync_parse (const char *name, shoal_fsync_t *policy);
const char *shoal_fsync_name (shoal_fsync_t policy);

//  Opens the log in directory dir, creating it (and the directory) when
//  create is true and it does not exist. On open, an unclean last segment
//  is scanned and a torn tail cut back to the last whole record
//  (shoal_log_recovered tells what was cut). config may be NULL for the
//  defaults. Returns NULL with a shoal_error_t in *error_p, and the reason
//  in words (file and offset) in shoal_log_open_error ().
shoal_log_t *shoal_log_open (const char *dir, const uint8_t origin[SHOAL_ID_SIZE],
                             const char *stream, bool create, const shoal_log_config_t *config,
                             int *error_p);

//  Writes what is buffered, syncs it, records the index so the next open
//  needs no scan, and frees the log. Idempotent; nulls the pointer.
void shoal_log_close (shoal_log_t **self_p);

//  Why the last shoal_log_open in this thread failed, in words.
const char *shoal_log_open_error (void);

//  Appends one record. seq must be head + 1 (any seq >= 1 when the log is
//  empty, so that a replica can start where its origin's history starts).
//  Returns 0, or -1 with shoal_log_error () set: INVALID (bad seq, record
//  too large), FAILED (an earlier I/O error), NOSPC or IO (this append's
//  own flush failed; the log is then FAILED until reopened).
int shoal_log_append (shoal_log_t *self, uint64_t seq, int64_t time_ns, const void *data,
                      size_t size);

//  Writes and (per policy) syncs everything buffered now. 0 or -1.
int shoal_log_flush (shoal_log_t *self);

//  Flushes if the group-commit window has ended. 0 or -1.
int shoal_log_flush_due (shoal_log_t *self);

//  Monotonic time in ns (CLOCK_MONOTONIC) when a flush is due, or -1 when
//  nothing waits.
int64_t shoal_log_deadline (const shoal_log_t *self);

//  Seqs: first held (after retention), head (last appended), durable
//  (last on stable storage per policy). An empty log has head 0 and first
//  equal to the seq its next append must have (1 for a new log).
uint64_t shoal_log_first (const shoal_log_t *self);
uint64_t shoal_log_head (const shoal_log_t *self);
uint64_t shoal_log_durable (const shoal_log_t *self);

//  Total bytes in segment files, and the number of segments.
uint64_t shoal_log_size (const shoal_log_t *self);
size_t shoal_log_segments (const shoal_log_t *self);

const uint8_t *shoal_log_origin (const shoal_log_t *self);
const char *shoal_log_stream (const shoal_log_t *self);
const char *shoal_log_dir (const shoal_log_t *self);

//  Reads one record. Returns 0 and a new buffer in *data_p (caller owns,
//  free ()), or -1 with shoal_log_error (): TRIMMED below first, NOT_FOUND
//  above head, CORRUPT (shoal_log_error_text names file and offset), IO.
int shoal_log_read (shoal_log_t *self, uint64_t seq, uint8_t **data_p, size_t *size_p,
                    int64_t *time_ns_p);

//  The first seq whose record time is >= time_ns (head + 1 if none).
uint64_t shoal_log_seek_time (shoal_log_t *self, int64_t time_ns);

//  Iterates records from seq `from` to `to` inclusive (to 0 = the head at
//  each step). Returns NULL with shoal_log_error () set when from is
//  trimmed. The iterator reads in large blocks; it sees appends made after
//  it was created. Destroy it before closing the log.
shoal_log_iter_t *shoal_log_iter_new (shoal_log_t *self, uint64_t from, uint64_t to);
void shoal_log_iter_destroy (shoal_log_iter_t **self_p);

//  Next record: 1 and borrowed pointers valid until the next call, 0 at
//  the end, -1 on error (shoal_log_error () of the log: CORRUPT, TRIMMED
//  when retention removed the next record, IO).
int shoal_log_iter_next (shoal_log_iter_t *self, uint64_t *seq_p, int64_t *time_ns_p,
                         const uint8_t **data_p, size_t *size_p);

//  Empties the log: removes every segment with its index, oldest first
//  (so a crash leaves a shorter valid log, or an empty one), then syncs
//  the directory. The next append may have any seq, as for a new log.
//  For a replica whose origin trimmed past everything it holds. 0, or -1
//  with shoal_log_error () set (IO; the log is then FAILED).
int shoal_log_reset (shoal_log_t *self);

//  Drops whole segments (never the one being written) from the oldest
//  while the log exceeds retain_bytes or a segment's newest record is
//  older than retain_age_ns before now_ns. Returns segments dropped or -1.
int shoal_log_apply_retention (shoal_log_t *self, int64_t now_ns);

//  Changes the retention of an open log (0 = unlimited).
void shoal_log_set_retention (shoal_log_t *self, uint64_t bytes, int64_t age_ns);

//  Reads every record of every segment and checks it. Calls report (if
//  given) once per problem with the file, the offset and a sentence.
//  Returns the number of problems (0 = healthy) or -1 when it could not run.
typedef void (shoal_log_report_fn) (void *arg, const char *file, uint64_t offset,
                                    const char *problem);
int shoal_log_verify (shoal_log_t *self, shoal_log_report_fn *report, void *arg);

//  What the last open's recovery cut from a torn tail: records and bytes.
uint64_t shoal_log_recovered_bytes (const shoal_log_t *self);
//  True when the last open had to scan (unclean close, stale index).
bool shoal_log_was_scanned (const shoal_log_t *self);

//  The last error of this log: a shoal_error_t and a sentence naming the
//  file and offset when one is involved.
int shoal_log_error (const shoal_log_t *self);
const char *shoal_log_error_text (const shoal_log_t *self);

//  True after an I/O failure: appends are refused until the log is reopened.
bool shoal_log_failed (const shoal_log_t *self);

#ifdef __cplusplus
}
#endif

#endif
