/*  test_io - shoal_io: the posix table, the helpers over any table, and the
    fault-injecting table that the storage tests put under the real code.

    The faulty io is only worth something if its model of a disk is right,
    so most checks here look at the real files after a fault or a power
    loss: a torn write leaves exactly the budgeted bytes, a power loss
    keeps exactly the synced bytes and drops files never made durable, and
    shoal_io_replace_file shows old or new content whatever byte it dies at. */

#include "shoal_io.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  Size of a file by path, -1 if it does not exist.
static off_t
s_file_size (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 ? st.st_size : -1;
}

static bool
s_exists (const char *path)
{
    return access (path, F_OK) == 0;
}

//  A path in the test's directory, in a buffer of the caller's.
static const char *
s_path (char *buffer, size_t size, const char *name)
{
    snprintf (buffer, size, "%s/%s", tap_tmpdir (), name);
    return buffer;
}

//  Fills buffer with a pattern that depends on seed, so that a byte in the
//  wrong place is seen.
static void
s_fill (uint8_t *buffer, size_t size, unsigned seed)
{
    for (size_t i = 0; i < size; i++)
        buffer[i] = (uint8_t) ((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}

//  Creates path with content through the posix io, synced.
static void
s_put (const char *path, const void *data, size_t size)
{
    if (shoal_io_replace_file (shoal_io_posix (), path, data, size))
        bail ("cannot write %s: %s", path, strerror (errno));
}

//  True when path holds exactly size bytes equal to data.
static bool
s_holds (const char *path, const void *data, size_t size)
{
    uint8_t *got = NULL;
    size_t got_size = 0;
    if (shoal_io_read_file (shoal_io_posix (), path, &got, &got_size))
        return false;
    bool same = got_size == size && memcmp (got, data, size) == 0;
    free (got);
    return same;
}

static shoal_io_t *
s_faulty (void)
{
    shoal_io_t *io = shoal_io_faulty_new ();
    if (!io)
        bail ("cannot make a faulty io");
    return io;
}

static void
test_posix_round_trip (void)
{
    shoal_io_t *io = shoal_io_posix ();
    ok (io == shoal_io_posix (), "posix table is one static table");
    char path[4200];
    s_path (path, sizeof path, "round-trip");
    int fd = io->open (io, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        bail ("cannot open %s: %s", path, strerror (errno));
    ok (fcntl (fd, F_GETFD) & FD_CLOEXEC, "posix open sets close-on-exec");

    //  Large enough that the kernel may split it; the helpers retry.
    size_t size = 3 * 1024 * 1024 + 17;
    uint8_t *data = malloc (size);
    uint8_t *back = malloc (size + 100);
    if (!data || !back)
        bail ("out of memory");
    s_fill (data, size, 1);
    is_int (shoal_io_write_all (io, fd, data, size, 0), 0, "write_all writes 3 MiB");
    is_int (io->size (io, fd), size, "size reports what was written");
    is_int (io->fsync (io, fd), 0, "fsync succeeds");
    is_int (shoal_io_read_all (io, fd, back, size, 0), size, "read_all reads it all");
    ok (memcmp (back, data, size) == 0, "read_all gives back the bytes written");
    is_int (shoal_io_read_all (io, fd, back, size + 100, 0), size,
            "read_all past the end returns the count up to the end");
    is_int (shoal_io_read_all (io, fd, back, 100, (off_t) size), 0,
            "read_all at the end returns 0");
    is_int (shoal_io_read_all (io, fd, back, 1000, 4096), 1000, "read_all at an offset");
    ok (memcmp (back, data + 4096, 1000) == 0, "read_all at an offset reads the right bytes");

    //  Writing at an offset overwrites in place.
    is_int (shoal_io_write_all (io, fd, "hello", 5, 10), 0, "write_all at an offset");
    is_int (shoal_io_read_all (io, fd, back, 5, 10), 5, "read the overwritten bytes");
    is_mem (back, "hello", 5, "write_all at an offset lands there");
    is_int (io->size (io, fd), size, "writing inside the file keeps its size");

    is_int (io->ftruncate (io, fd, 1000), 0, "ftruncate succeeds");
    is_int (io->size (io, fd), 1000, "ftruncate sets the size");
    is_int (io->close (io, fd), 0, "close succeeds");
    is_int (io->size (io, fd), -1, "size of a closed descriptor is -1");

    char renamed[4200];
    s_path (renamed, sizeof renamed, "round-trip.renamed");
    is_int (io->rename (io, path, renamed), 0, "rename succeeds");
    ok (!s_exists (path) && s_file_size (renamed) == 1000, "rename moves the file");
    is_int (io->sync_dir (io, tap_tmpdir ()), 0, "sync_dir of a directory succeeds");
    errno = 0;
    ok (io->sync_dir (io, tap_path ("no-such-dir")) == -1 && errno == ENOENT,
        "sync_dir of a missing directory fails with ENOENT");
    is_int (io->unlink (io, renamed), 0, "unlink succeeds");
    errno = 0;
    ok (io->unlink (io, renamed) == -1 && errno == ENOENT, "unlink of a missing file: ENOENT");
    errno = 0;
    ok (io->open (io, path, O_RDONLY, 0) == -1 && errno == ENOENT,
        "open of a missing file: ENOENT");
    free (data);
    free (back);
}

static void
test_read_file (void)
{
    shoal_io_t *io = shoal_io_posix ();
    uint8_t *data = (uint8_t *) "untouched";
    size_t size = 12345;
    errno = 0;
    ok (shoal_io_read_file (io, tap_path ("missing"), &data, &size) == -1 && errno == ENOENT,
        "read_file of a missing file fails with ENOENT");
    ok (size == 12345 && strcmp ((char *) data, "untouched") == 0,
        "a failed read_file leaves the outputs alone");

    char path[4200];
    s_path (path, sizeof path, "text");
    s_put (path, "name = node-1", 13);
    ok (shoal_io_read_file (io, path, &data, &size) == 0, "read_file of a file");
    is_int (size, 13, "read_file gives the size");
    is_str ((char *) data, "name = node-1", "read_file gives the bytes and a NUL after them");
    free (data);

    s_put (path, "", 0);
    ok (shoal_io_read_file (io, path, &data, &size) == 0 && size == 0 && data[0] == 0,
        "read_file of an empty file gives an empty, terminated buffer");
    free (data);
    io->unlink (io, path);

    errno = 0;
    ok (shoal_io_read_file (io, tap_tmpdir (), &data, &size) == -1 && errno == EISDIR,
        "read_file of a directory fails (EISDIR)");
}

static void
test_mkdirs (void)
{
    shoal_io_t *io = shoal_io_posix ();
    char path[4200];
    s_path (path, sizeof path, "a/b/c/d");
    is_int (shoal_io_mkdirs (io, path), 0, "mkdirs makes nested directories");
    struct stat st;
    ok (stat (path, &st) == 0 && S_ISDIR (st.st_mode), "the deepest one is a directory");
    is_int (shoal_io_mkdirs (io, path), 0, "mkdirs again is fine (idempotent)");
    s_path (path, sizeof path, "a/b/x/");
    is_int (shoal_io_mkdirs (io, path), 0, "mkdirs with a trailing slash");
    ok (stat (path, &st) == 0 && S_ISDIR (st.st_mode), "the directory is made");
    s_path (path, sizeof path, "a//b//y");
    is_int (shoal_io_mkdirs (io, path), 0, "mkdirs with doubled slashes");
    is_int (shoal_io_mkdirs (io, tap_tmpdir ()), 0, "mkdirs of an existing absolute path");

    s_path (path, sizeof path, "a/file");
    s_put (path, "x", 1);
    s_path (path, sizeof path, "a/file/sub");
    errno = 0;
    ok (shoal_io_mkdirs (io, path) == -1 && errno == ENOTDIR,
        "mkdirs through a regular file fails with ENOTDIR");
    s_path (path, sizeof path, "a/file");
    errno = 0;
    ok (shoal_io_mkdirs (io, path) == -1 && errno == ENOTDIR,
        "mkdirs of a path that is a regular file fails with ENOTDIR");
    errno = 0;
    ok (shoal_io_mkdirs (io, "") == -1 && errno == ENOENT, "mkdirs of an empty path: ENOENT");

    //  Through the faulty io too: the same directories, and the counters see no writes.
    shoal_io_t *faulty = s_faulty ();
    s_path (path, sizeof path, "f1/f2/f3");
    is_int (shoal_io_mkdirs (faulty, path), 0, "mkdirs through the faulty io");
    ok (stat (path, &st) == 0 && S_ISDIR (st.st_mode), "the faulty io makes real directories");
    shoal_io_faulty_destroy (&faulty);
}

//  Writes a fresh file through io, makes its creation durable, and returns
//  the open descriptor.
static int
s_create (shoal_io_t *io, const char *path)
{
    int fd = io->open (io, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        bail ("cannot create %s: %s", path, strerror (errno));
    if (io->sync_dir (io, tap_tmpdir ()))
        bail ("cannot sync %s: %s", tap_tmpdir (), strerror (errno));
    return fd;
}

static void
test_crash_after (void)
{
    shoal_io_t *io = s_faulty ();
    char path[4200];
    s_path (path, sizeof path, "crash");
    uint8_t data[1000];
    s_fill (data, sizeof data, 2);
    int fd = s_create (io, path);

    shoal_io_faulty_crash_after (io, 300);
    is_int (shoal_io_write_all (io, fd, data, 100, 0), 0, "a write inside the budget succeeds");
    errno = 0;
    ok (io->pwrite (io, fd, data + 100, 900, 100) == -1 && errno == EIO,
        "the write that crosses the budget fails with EIO");
    is_int (s_file_size (path), 300, "the torn write left exactly the budget on disk");
    uint8_t back[1000];
    ok (pread (fd, back, 300, 0) == 300 && memcmp (back, data, 300) == 0,
        "the torn part holds the first bytes of the write");
    is_int (shoal_io_faulty_bytes_written (io), 300, "bytes_written counts the torn part");

    //  The process is dead: every operation fails with EIO.
    int dead = 0;
    errno = 0;
    dead += io->pwrite (io, fd, data, 1, 0) == -1 && errno == EIO;
    errno = 0;
    dead += io->pread (io, fd, back, 1, 0) == -1 && errno == EIO;
    errno = 0;
    dead += io->fsync (io, fd) == -1 && errno == EIO;
    errno = 0;
    dead += io->ftruncate (io, fd, 0) == -1 && errno == EIO;
    errno = 0;
    dead += io->size (io, fd) == -1 && errno == EIO;
    errno = 0;
    dead += io->open (io, path, O_RDONLY, 0) == -1 && errno == EIO;
    errno = 0;
    dead += io->rename (io, path, tap_path ("crash.2")) == -1 && errno == EIO;
    errno = 0;
    dead += io->unlink (io, path) == -1 && errno == EIO;
    errno = 0;
    dead += io->mkdir (io, tap_path ("crash.d"), 0755) == -1 && errno == EIO;
    errno = 0;
    dead += io->sync_dir (io, tap_tmpdir ()) == -1 && errno == EIO;
    is_int (dead, 10, "after the crash every call fails with EIO");
    ok (s_file_size (path) == 300 && !s_exists (tap_path ("crash.2"))
            && !s_exists (tap_path ("crash.d")),
        "and none of them touched the disk");
    is_int (shoal_io_faulty_bytes_written (io), 300, "nothing more was written");
    is_int (io->close (io, fd), 0, "close still works on a dead io (descriptors are released)");

    shoal_io_faulty_reset (io);
    fd = io->open (io, path, O_RDWR, 0);
    ok (fd >= 0, "reset brings the io back to life");
    is_int (shoal_io_write_all (io, fd, data, sizeof data, 0), 0, "writes work again");
    is_int (io->fsync (io, fd), 0, "fsync works again");
    is_int (s_file_size (path), 1000, "the whole write is on disk");
    io->close (io, fd);

    //  Zero budget: the very next write writes nothing.
    fd = io->open (io, path, O_RDWR | O_TRUNC, 0);
    shoal_io_faulty_crash_after (io, 0);
    errno = 0;
    ok (io->pwrite (io, fd, data, 10, 0) == -1 && errno == EIO,
        "crash_after (0) fails the next write");
    is_int (s_file_size (path), 0, "and writes not a byte");
    io->close (io, fd);

    //  Tearing through write_all at every byte of a small write.
    int wrong = 0;
    for (size_t n = 0; n < 64; n++) {
        shoal_io_faulty_reset (io);
        fd = io->open (io, path, O_RDWR | O_TRUNC, 0);
        shoal_io_faulty_crash_after (io, n);
        errno = 0;
        int rc = shoal_io_write_all (io, fd, data, 64, 0);
        if (rc != -1 || errno != EIO || s_file_size (path) != (off_t) n) {
            if (!wrong)
                diag ("crash_after (%zu): rc %d, size %lld", n, rc, (long long) s_file_size (path));
            wrong++;
        }
        io->close (io, fd);
    }
    is_int (wrong, 0, "crash_after (n) tears write_all at exactly n bytes, for every n < size");
    shoal_io_faulty_reset (io);
    fd = io->open (io, path, O_RDWR | O_TRUNC, 0);
    shoal_io_faulty_crash_after (io, 64);
    ok (shoal_io_write_all (io, fd, data, 64, 0) == 0 && io->fsync (io, fd) == 0,
        "a write that uses the budget exactly is whole, and the process lives");
    errno = 0;
    ok (io->pwrite (io, fd, data, 1, 64) == -1 && errno == EIO, "until it writes one more byte");
    is_int (s_file_size (path), 64, "which is not written");
    io->close (io, fd);
    shoal_io_faulty_destroy (&io);
    shoal_io_faulty_destroy (&io);
    ok (io == NULL, "destroy nulls the pointer and is idempotent");
    unlink (path);
}

static void
test_write_error (void)
{
    shoal_io_t *io = s_faulty ();
    char path[4200];
    s_path (path, sizeof path, "nospc");
    uint8_t data[500];
    s_fill (data, sizeof data, 3);
    int fd = s_create (io, path);

    shoal_io_faulty_write_error (io, ENOSPC, 250);
    is_int (shoal_io_write_all (io, fd, data, 200, 0), 0, "writes inside the budget succeed");
    errno = 0;
    ok (shoal_io_write_all (io, fd, data + 200, 300, 200) == -1 && errno == ENOSPC,
        "the write past the budget fails with ENOSPC");
    is_int (s_file_size (path), 250, "exactly the budget reached the file");
    errno = 0;
    ok (io->pwrite (io, fd, data, 1, 250) == -1 && errno == ENOSPC,
        "later writes fail with ENOSPC too");
    is_int (io->fsync (io, fd), 0, "but the io is not dead: fsync works");
    uint8_t back[250];
    ok (shoal_io_read_all (io, fd, back, 250, 0) == 250 && memcmp (back, data, 250) == 0,
        "reads work and see the bytes that fit");
    is_int (io->ftruncate (io, fd, 200), 0, "ftruncate works (undo of the torn part)");
    is_int (io->size (io, fd), 200, "the file is back to 200 bytes");

    shoal_io_faulty_reset (io);
    is_int (shoal_io_write_all (io, fd, data + 200, 300, 200), 0, "after reset the write succeeds");
    is_int (s_file_size (path), 500, "and the whole file is there");
    io->close (io, fd);

    //  EIO is just another errno to it.
    fd = io->open (io, path, O_RDWR | O_TRUNC, 0);
    shoal_io_faulty_write_error (io, EIO, 0);
    errno = 0;
    ok (io->pwrite (io, fd, data, 10, 0) == -1 && errno == EIO && s_file_size (path) == 0,
        "write_error (EIO, 0) fails the next write without writing");
    shoal_io_faulty_reset (io);
    io->close (io, fd);

    //  replace_file under ENOSPC keeps the old content and cleans up its temp file.
    char meta[4200], temp[4300];
    s_path (meta, sizeof meta, "meta-nospc");
    snprintf (temp, sizeof temp, "%s.tmp", meta);
    s_put (meta, "old", 3);
    shoal_io_faulty_write_error (io, ENOSPC, 10);
    errno = 0;
    ok (shoal_io_replace_file (io, meta, data, sizeof data) == -1 && errno == ENOSPC,
        "replace_file on a full disk fails with ENOSPC");
    ok (s_holds (meta, "old", 3), "and the old content is still there");
    ok (!s_exists (temp), "and its temp file is removed");
    shoal_io_faulty_destroy (&io);
    unlink (path);
    unlink (meta);
}

static void
test_fsync_error (void)
{
    shoal_io_t *io = s_faulty ();
    char path[4200];
    s_path (path, sizeof path, "fsync-error");
    uint8_t data[100];
    s_fill (data, sizeof data, 4);
    int fd = s_create (io, path);

    shoal_io_faulty_fsync_error (io, EIO, 0);
    shoal_io_write_all (io, fd, data, 10, 0);
    errno = 0;
    ok (io->fsync (io, fd) == -1 && errno == EIO, "fsync_error (EIO, 0) fails the next fsync");
    is_int (shoal_io_faulty_fsyncs (io), 0, "a failed fsync is not counted");
    is_int (io->fsync (io, fd), 0, "only once: the fsync after it succeeds");
    is_int (shoal_io_faulty_fsyncs (io), 1, "and is counted");

    shoal_io_faulty_fsync_error (io, ENOSPC, 2);
    int rc1 = io->fsync (io, fd);
    int rc2 = io->fsync (io, fd);
    errno = 0;
    int rc3 = io->fsync (io, fd);
    int saved = errno;
    int rc4 = io->fsync (io, fd);
    ok (rc1 == 0 && rc2 == 0, "fsync_error (err, 2) lets two fsyncs succeed");
    ok (rc3 == -1 && saved == ENOSPC, "then fails one with err");
    is_int (rc4, 0, "then works again");
    is_int (shoal_io_faulty_fsyncs (io), 4, "fsyncs counts the successful ones");

    //  A failed fsync moves nothing in the model: the bytes are lost on power loss.
    shoal_io_write_all (io, fd, data + 10, 40, 10);
    shoal_io_faulty_fsync_error (io, EIO, 0);
    io->fsync (io, fd);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (path), 10, "bytes whose fsync failed are lost on power loss");

    //  Armed and cleared by reset.
    fd = io->open (io, path, O_RDWR, 0);
    shoal_io_faulty_fsync_error (io, EIO, 0);
    shoal_io_faulty_reset (io);
    is_int (io->fsync (io, fd), 0, "reset disarms a pending fsync error");
    io->close (io, fd);

    //  replace_file when its fsync fails: old content, no temp file.
    char meta[4200], temp[4300];
    s_path (meta, sizeof meta, "meta-fsync");
    snprintf (temp, sizeof temp, "%s.tmp", meta);
    s_put (meta, "old", 3);
    shoal_io_faulty_fsync_error (io, EIO, 0);
    errno = 0;
    ok (shoal_io_replace_file (io, meta, "new content", 11) == -1 && errno == EIO,
        "replace_file fails when its fsync fails");
    ok (s_holds (meta, "old", 3), "and leaves the old content");
    ok (!s_exists (temp), "and removes its temp file");
    shoal_io_faulty_destroy (&io);
    unlink (path);
    unlink (meta);
}

static void
test_power_loss (void)
{
    shoal_io_t *io = s_faulty ();
    uint8_t data[4096];
    s_fill (data, sizeof data, 5);

    //  Synced size survives, the rest is cut.
    char path[4200];
    s_path (path, sizeof path, "power");
    int fd = s_create (io, path);
    shoal_io_write_all (io, fd, data, 1000, 0);
    io->fsync (io, fd);
    shoal_io_write_all (io, fd, data + 1000, 500, 1000);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (path), 1000, "power loss truncates a file to its synced size");
    ok (s_holds (path, data, 1000), "and the synced bytes are intact");

    //  Created and synced, but its directory never synced: gone.
    char fresh[4200];
    s_path (fresh, sizeof fresh, "fresh");
    fd = io->open (io, fresh, O_RDWR | O_CREAT, 0644);
    shoal_io_write_all (io, fd, data, 100, 0);
    io->fsync (io, fd);
    io->close (io, fd);
    ok (s_exists (fresh), "a new file exists before the power loss");
    shoal_io_faulty_power_loss (io);
    ok (!s_exists (fresh), "a file whose creation was never synced is deleted by power loss");

    //  The same, with sync_dir: stays, with its synced bytes.
    fd = io->open (io, fresh, O_RDWR | O_CREAT, 0644);
    shoal_io_write_all (io, fd, data, 100, 0);
    io->fsync (io, fd);
    is_int (io->sync_dir (io, tap_tmpdir ()), 0, "sync_dir of its directory");
    shoal_io_write_all (io, fd, data + 100, 100, 100);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (fresh), 100, "after sync_dir it survives, cut to its synced size");

    //  Never fsynced but durable: empty.
    char empty[4200];
    s_path (empty, sizeof empty, "never-synced");
    fd = s_create (io, empty);
    shoal_io_write_all (io, fd, data, 300, 0);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (empty), 0, "a durable file never fsynced is cut to empty");

    //  sync_dir of another directory does not help.
    char sub[4200], other[4200];
    s_path (sub, sizeof sub, "sub");
    shoal_io_mkdirs (io, sub);
    s_path (other, sizeof other, "sub/other");
    fd = io->open (io, other, O_RDWR | O_CREAT, 0644);
    shoal_io_write_all (io, fd, data, 10, 0);
    io->fsync (io, fd);
    io->close (io, fd);
    io->sync_dir (io, tap_tmpdir ());
    shoal_io_faulty_power_loss (io);
    ok (!s_exists (other), "sync_dir of the parent's parent does not make a file durable");

    //  ftruncate below the synced size lowers it.
    fd = io->open (io, path, O_RDWR, 0);
    io->ftruncate (io, fd, 400);
    shoal_io_write_all (io, fd, data + 2000, 600, 400);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (path), 400, "ftruncate lowers the synced size");
    ok (s_holds (path, data, 400), "and the bytes below it are intact");

    //  A file the io never saw is left alone, and one it opens later counts as durable.
    char outside[4200];
    s_path (outside, sizeof outside, "outside");
    s_put (outside, data, 700);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (outside), 700, "a file the io never opened is left alone");
    fd = io->open (io, outside, O_RDWR, 0);
    shoal_io_write_all (io, fd, data, 50, 700);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (outside), 700,
            "a file that existed before the io saw it is durable as it was (only new bytes go)");
    ok (s_holds (outside, data, 700), "its old bytes are intact");
    fd = io->open (io, outside, O_RDONLY, 0);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    ok (s_holds (outside, data, 700), "opening it read-only changes nothing");

    //  O_TRUNC forgets what was synced.
    fd = io->open (io, outside, O_RDWR | O_TRUNC, 0);
    shoal_io_write_all (io, fd, data, 10, 0);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (outside), 0, "O_TRUNC without fsync: nothing survives");

    //  A file deleted and made again is new, not durable.
    unlink (fresh);
    fd = io->open (io, fresh, O_RDWR | O_CREAT, 0644);
    io->fsync (io, fd);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    ok (!s_exists (fresh), "a file deleted behind the io's back and created again is new");

    //  Relative paths work: sync_dir (".") makes a file in the working directory durable.
    char cwd[4200];
    if (!getcwd (cwd, sizeof cwd) || chdir (tap_tmpdir ()))
        bail ("cannot change directory: %s", strerror (errno));
    fd = io->open (io, "relative", O_RDWR | O_CREAT, 0644);
    shoal_io_write_all (io, fd, data, 20, 0);
    io->fsync (io, fd);
    io->sync_dir (io, ".");
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size ("relative"), 20, "sync_dir (\".\") makes a relative file durable");
    unlink ("relative");
    if (chdir (cwd))
        bail ("cannot go back to %s: %s", cwd, strerror (errno));

    //  An fd that stays open across a rename keeps being tracked.
    char before[4200], after[4200];
    s_path (before, sizeof before, "before-rename");
    s_path (after, sizeof after, "after-rename");
    fd = io->open (io, before, O_RDWR | O_CREAT, 0644);
    is_int (io->rename (io, before, after), 0, "rename of an open file");
    io->sync_dir (io, tap_tmpdir ());
    shoal_io_write_all (io, fd, data, 30, 0);
    io->fsync (io, fd);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (after), 30, "fsync through an fd opened before a rename counts");
    is_int (io->rename (io, after, after), 0, "rename of a file onto itself succeeds");
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (after), 30, "and changes nothing");

    //  Unlink forgets the file; directories opened through the io are not files.
    is_int (io->unlink (io, after), 0, "unlink through the faulty io");
    shoal_io_faulty_power_loss (io);
    ok (!s_exists (after), "an unlinked file stays unlinked");
    fd = io->open (io, tap_tmpdir (), O_RDONLY | O_DIRECTORY, 0);
    ok (fd >= 0, "a directory can be opened through the io");
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    struct stat st;
    ok (stat (tap_tmpdir (), &st) == 0 && S_ISDIR (st.st_mode),
        "power loss leaves directories alone");

    shoal_io_faulty_destroy (&io);
    unlink (path);
    unlink (fresh);
    unlink (empty);
    unlink (outside);
    rmdir (sub);
}

static void
test_lose_fsyncs (void)
{
    shoal_io_t *io = s_faulty ();
    uint8_t data[1000];
    s_fill (data, sizeof data, 6);
    char path[4200];
    s_path (path, sizeof path, "lost");
    int fd = s_create (io, path);
    shoal_io_write_all (io, fd, data, 100, 0);
    io->fsync (io, fd);
    uint64_t fsyncs = shoal_io_faulty_fsyncs (io);

    shoal_io_faulty_lose_fsyncs (io, true);
    shoal_io_write_all (io, fd, data + 100, 900, 100);
    is_int (io->fsync (io, fd), 0, "a lost fsync reports success");
    is_int (shoal_io_faulty_fsyncs (io), fsyncs, "but does not count as a real one");
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (path), 100, "lose_fsyncs + power loss drops what the lost fsync covered");
    ok (s_holds (path, data, 100), "and keeps what was really synced");

    //  A lying disk lies about directories too.
    char fresh[4200];
    s_path (fresh, sizeof fresh, "lost-fresh");
    shoal_io_faulty_lose_fsyncs (io, true);
    fd = io->open (io, fresh, O_RDWR | O_CREAT, 0644);
    shoal_io_write_all (io, fd, data, 10, 0);
    io->fsync (io, fd);
    io->sync_dir (io, tap_tmpdir ());
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    ok (!s_exists (fresh), "a file created while directory syncs are lost does not survive");

    //  Turned off again, fsync works.
    fd = io->open (io, path, O_RDWR, 0);
    shoal_io_faulty_lose_fsyncs (io, true);
    shoal_io_faulty_lose_fsyncs (io, false);
    shoal_io_write_all (io, fd, data + 100, 50, 100);
    io->fsync (io, fd);
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (s_file_size (path), 150, "lose_fsyncs (false) makes fsyncs real again");
    shoal_io_faulty_destroy (&io);
    unlink (path);
}

//  Kills replace_file at every byte of the new content and checks what a
//  reader finds: with power_loss after the crash, and without (a process
//  crash only, which leaves the temp file behind).
static void
test_replace_atomic (bool had_old, bool power_loss)
{
    const char *label = power_loss ? "crash + power loss" : "process crash";
    const char *start = had_old ? "over old content" : "of a new file";
    char path[4200], temp[4300];
    s_path (path, sizeof path, "atomic");
    snprintf (temp, sizeof temp, "%s.tmp", path);
    uint8_t old_data[200], new_data[333];
    s_fill (old_data, sizeof old_data, 7);
    s_fill (new_data, sizeof new_data, 8);

    int mixed = 0, lost = 0, temp_left = 0, saw_old = 0, saw_new = 0, retry_failed = 0;
    for (size_t n = 0; n <= sizeof new_data; n++) {
        unlink (path);
        unlink (temp);
        if (had_old)
            s_put (path, old_data, sizeof old_data);
        shoal_io_t *io = s_faulty ();
        shoal_io_faulty_crash_after (io, n);
        int rc = shoal_io_replace_file (io, path, new_data, sizeof new_data);
        if (power_loss)
            shoal_io_faulty_power_loss (io);
        else
            shoal_io_faulty_reset (io);

        bool is_old = had_old ? s_holds (path, old_data, sizeof old_data) : !s_exists (path);
        bool is_new = s_holds (path, new_data, sizeof new_data);
        if (!is_old && !is_new) {
            if (!mixed)
                diag ("%s at byte %zu: neither old nor new (size %lld)", label, n,
                      (long long) s_file_size (path));
            mixed++;
        }
        if (rc == 0 && !is_new) {
            if (!lost)
                diag ("%s at byte %zu: replace_file succeeded but the content is old", label, n);
            lost++;
        }
        saw_old += is_old;
        saw_new += is_new;
        if (power_loss && s_exists (temp))
            temp_left++;

        //  Whatever was left behind, the next replacement works.
        if (shoal_io_replace_file (io, path, "after", 5) || !s_holds (path, "after", 5)
            || s_exists (temp))
            retry_failed++;
        shoal_io_faulty_destroy (&io);
    }
    is_int (mixed, 0, "replace_file %s, %s at every byte: old or new content, never a mix", start,
            label);
    is_int (lost, 0, "replace_file %s, %s: a success is never undone", start, label);
    ok (saw_old > 0 && saw_new > 0, "replace_file %s, %s: both outcomes were seen (%d old, %d new)",
        start, label, saw_old, saw_new);
    if (power_loss)
        is_int (temp_left, 0, "replace_file %s, %s: power loss leaves no temp file", start, label);
    is_int (retry_failed, 0, "replace_file %s, %s: the next replacement succeeds", start, label);
    unlink (path);
    unlink (temp);
}

static void
test_replace_file (void)
{
    shoal_io_t *io = shoal_io_posix ();
    char path[4200], temp[4300];
    s_path (path, sizeof path, "meta");
    snprintf (temp, sizeof temp, "%s.tmp", path);
    is_int (shoal_io_replace_file (io, path, "first", 5), 0, "replace_file creates a file");
    ok (s_holds (path, "first", 5), "with the content");
    is_int (shoal_io_replace_file (io, path, "second, longer", 14), 0, "replace_file replaces it");
    ok (s_holds (path, "second, longer", 14), "with the new content");
    is_int (shoal_io_replace_file (io, path, "3", 1), 0, "replace_file with shorter content");
    ok (s_holds (path, "3", 1), "leaves no bytes of the longer one");
    ok (!s_exists (temp), "no temp file is left");

    //  A temp file left by an earlier crash: readers never see it, and it is overwritten.
    s_put (temp, "garbage from a crash, longer than the content", 45);
    ok (s_holds (path, "3", 1), "a leftover temp file does not change what readers see");
    is_int (shoal_io_replace_file (io, path, "fourth", 6), 0,
            "replace_file over a leftover temp file");
    ok (s_holds (path, "fourth", 6), "gives exactly the new content");
    ok (!s_exists (temp), "and the leftover is gone");

    //  In a directory that does not exist.
    errno = 0;
    ok (shoal_io_replace_file (io, tap_path ("nodir/meta"), "x", 1) == -1 && errno == ENOENT,
        "replace_file in a missing directory fails with ENOENT");
    unlink (path);

    //  Through the faulty io, the file survives power loss with the new content.
    shoal_io_t *faulty = s_faulty ();
    is_int (shoal_io_replace_file (faulty, path, "durable", 7), 0,
            "replace_file through the faulty io");
    uint64_t fsyncs = shoal_io_faulty_fsyncs (faulty);
    is_int (fsyncs, 1, "it fsyncs the temp file once");
    is_int (shoal_io_faulty_bytes_written (faulty), 7, "and writes the content once");
    shoal_io_faulty_power_loss (faulty);
    ok (s_holds (path, "durable", 7), "a completed replace_file survives power loss");
    shoal_io_faulty_destroy (&faulty);

    test_replace_atomic (true, true);
    test_replace_atomic (true, false);
    test_replace_atomic (false, true);
    test_replace_atomic (false, false);
    unlink (path);
}

static void
test_counters (void)
{
    shoal_io_t *io = s_faulty ();
    is_int (shoal_io_faulty_bytes_written (io), 0, "a new faulty io has written nothing");
    is_int (shoal_io_faulty_fsyncs (io), 0, "and synced nothing");
    char path[4200];
    s_path (path, sizeof path, "counted");
    int fd = s_create (io, path);
    uint8_t data[256];
    s_fill (data, sizeof data, 9);
    for (int i = 0; i < 10; i++)
        shoal_io_write_all (io, fd, data, sizeof data, (off_t) (i * sizeof data));
    is_int (shoal_io_faulty_bytes_written (io), 2560, "bytes_written adds every write");
    for (int i = 0; i < 3; i++)
        io->fsync (io, fd);
    is_int (shoal_io_faulty_fsyncs (io), 3, "fsyncs adds every fsync");
    shoal_io_write_all (io, fd, data, 100, 0);
    is_int (shoal_io_faulty_bytes_written (io), 2660, "overwrites count too");
    shoal_io_faulty_reset (io);
    is_int (shoal_io_faulty_bytes_written (io), 2660, "reset keeps the counters");
    io->close (io, fd);
    shoal_io_faulty_power_loss (io);
    is_int (shoal_io_faulty_fsyncs (io), 3, "power loss keeps the counters");
    shoal_io_faulty_destroy (&io);
    unlink (path);
}

int
main (void)
{
    plan_lazy ();
    test_posix_round_trip ();
    test_read_file ();
    test_mkdirs ();
    test_crash_after ();
    test_write_error ();
    test_fsync_error ();
    test_power_loss ();
    test_lose_fsyncs ();
    test_replace_file ();
    test_counters ();
    return done_testing ();
}
