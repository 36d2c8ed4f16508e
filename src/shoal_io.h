/*  =========================================================================
    shoal_io - the file operations of shoal's storage, behind a table

    Every byte that shoal's storage reads or writes goes through a
    shoal_io_t, so that tests can put a faulty disk under the real code:
    tear a write at any byte, fail fsync, return ENOSPC or EIO, and drop
    everything that was never synced ("power loss"). SQLite's test6.c does
    the same to prove its crash recovery.

    shoal_io_posix () is the real thing. shoal_io_faulty_new () wraps it
    with fault injection and a model of the page cache:

    - each file written through it has a synced size, moved to its current
      size by a successful fsync; power_loss () truncates every file back
      to its synced size (storage only appends, so this drops exactly the
      unsynced bytes) and deletes files whose creation was never made
      durable by an fsync of their directory;
    - crash_after (n) lets n more bytes be written, tearing the write that
      crosses the budget, then fails every later call with EIO, as if the
      process had died there;
    - write_error (err, n) fails every write past n more bytes with err
      (ENOSPC, EIO); fsync_error (err, n) lets n more fsyncs succeed and
      fails the next one, once, with err; the io keeps working otherwise;
    - lose_fsyncs (on) makes fsync and sync_dir report success without
      syncing.

    Functions return what their POSIX namesake returns and set errno.
    ========================================================================= */

#ifndef SHOAL_IO_H_INCLUDED
#define SHOAL_IO_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _shoal_io_t shoal_io_t;

struct _shoal_io_t {
    int (*open) (shoal_io_t *io, const char *path, int flags, mode_t mode);
    int (*close) (shoal_io_t *io, int fd);
    ssize_t (*pread) (shoal_io_t *io, int fd, void *buffer, size_t size, off_t offset);
    ssize_t (*pwrite) (shoal_io_t *io, int fd, const void *buffer, size_t size, off_t offset);
    int (*fsync) (shoal_io_t *io, int fd); //  data and size (fdatasync)
    int (*ftruncate) (shoal_io_t *io, int fd, off_t size);
    off_t (*size) (shoal_io_t *io, int fd); //  current size, -1 on error
    int (*rename) (shoal_io_t *io, const char *from, const char *to);
    int (*unlink) (shoal_io_t *io, const char *path);
    int (*mkdir) (shoal_io_t *io, const char *path, mode_t mode);
    int (*sync_dir) (shoal_io_t *io, const char *path); //  fsync of a directory
    void *state;                                        //  implementation's own data
};

//  The real file system. Static; never destroy it.
shoal_io_t *shoal_io_posix (void);

//  Makes every directory of path that is missing (mkdir -p) and syncs the
//  parent of each one it made. 0 or -1 with errno.
int shoal_io_mkdirs (shoal_io_t *io, const char *path);

//  Writes all of buffer at offset, retrying short writes. 0 or -1 with errno
//  (ENOSPC or EIO after a torn write; the bytes before it may be on disk).
int shoal_io_write_all (shoal_io_t *io, int fd, const void *buffer, size_t size, off_t offset);

//  Reads up to size bytes at offset, retrying short reads; returns the
//  count read (less than size only at end of file) or -1 with errno.
ssize_t shoal_io_read_all (shoal_io_t *io, int fd, void *buffer, size_t size, off_t offset);

//  Replaces path with data atomically: temp file, write, fsync, rename,
//  fsync of the directory. Readers see the old or the new content, never
//  a mix, also after a crash. 0 or -1 with errno.
int shoal_io_replace_file (shoal_io_t *io, const char *path, const void *data, size_t size);

//  Reads a whole (small) file into a new buffer; caller owns *data_p
//  (free ()). 0, or -1 with errno (ENOENT when there is no such file).
int shoal_io_read_file (shoal_io_t *io, const char *path, uint8_t **data_p, size_t *size_p);

//  A fault-injecting wrapper of shoal_io_posix (see above).
shoal_io_t *shoal_io_faulty_new (void);
void shoal_io_faulty_destroy (shoal_io_t **self_p);
void shoal_io_faulty_crash_after (shoal_io_t *self, uint64_t bytes);
void shoal_io_faulty_write_error (shoal_io_t *self, int error, uint64_t after_bytes);
void shoal_io_faulty_fsync_error (shoal_io_t *self, int error, unsigned after_fsyncs);
void shoal_io_faulty_lose_fsyncs (shoal_io_t *self, bool lose);
//  Drops every unsynced byte and every file whose creation was never synced.
//  Close everything opened through the io first (as a dead process would).
void shoal_io_faulty_power_loss (shoal_io_t *self);
//  Clears every armed fault; the io works normally again.
void shoal_io_faulty_reset (shoal_io_t *self);
//  Counts, for tests and benchmarks.
uint64_t shoal_io_faulty_bytes_written (shoal_io_t *self);
uint64_t shoal_io_faulty_fsyncs (shoal_io_t *self);

#ifdef __cplusplus
}
#endif

#endif
