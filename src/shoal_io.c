/*  =========================================================================
    shoal_io - the file operations of shoal's storage, behind a table

    Two implementations of one table. The posix one calls the system. The
    faulty one calls the posix one and keeps, for every file written
    through it, the model a power-loss test needs:

        file { path, synced_size, durable }

    - pwrite extends the file; nothing in the model moves;
    - fsync sets synced_size to the file's current size (unless fsyncs
      are being lost or this fsync is made to fail);
    - ftruncate below synced_size lowers synced_size;
    - a file made by open (O_CREAT) is not durable until sync_dir of its
      directory; power_loss deletes it if it never became durable, and
      otherwise truncates it to synced_size;
    - only regular files are modelled; a rename carries the model, and
      the descriptors open on the old name, to the new name;
    - lose_fsyncs drops the syncs of directories as well as of files.

    Renames are taken as durable at once: shoal's metadata code syncs the
    directory right after every rename, and the tests of atomic replacement
    check that a reader sees old or new content, not the rename's timing.

    The faulty io may be called from several threads (a test arms a fault
    from its own thread while a node's engine writes through the io):
    every call, and every fault setter, holds one mutex.
    ========================================================================= */

#include "shoal_io.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  posix

static int
s_posix_open (shoal_io_t *io, const char *path, int flags, mode_t mode)
{
    (void) io;
    return open (path, flags | O_CLOEXEC, mode);
}

static int
s_posix_close (shoal_io_t *io, int fd)
{
    (void) io;
    return close (fd);
}

static ssize_t
s_posix_pread (shoal_io_t *io, int fd, void *buffer, size_t size, off_t offset)
{
    (void) io;
    return pread (fd, buffer, size, offset);
}

static ssize_t
s_posix_pwrite (shoal_io_t *io, int fd, const void *buffer, size_t size, off_t offset)
{
    (void) io;
    return pwrite (fd, buffer, size, offset);
}

static int
s_posix_fsync (shoal_io_t *io, int fd)
{
    (void) io;
    return fdatasync (fd);
}

static int
s_posix_ftruncate (shoal_io_t *io, int fd, off_t size)
{
    (void) io;
    return ftruncate (fd, size);
}

static off_t
s_posix_size (shoal_io_t *io, int fd)
{
    (void) io;
    struct stat st;
    return fstat (fd, &st) == 0 ? st.st_size : -1;
}

static int
s_posix_rename (shoal_io_t *io, const char *from, const char *to)
{
    (void) io;
    return rename (from, to);
}

static int
s_posix_unlink (shoal_io_t *io, const char *path)
{
    (void) io;
    return unlink (path);
}

static int
s_posix_mkdir (shoal_io_t *io, const char *path, mode_t mode)
{
    (void) io;
    return mkdir (path, mode);
}

static int
s_posix_sync_dir (shoal_io_t *io, const char *path)
{
    (void) io;
    int fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    int saved = errno;
    close (fd);
    errno = saved;
    return rc;
}

static shoal_io_t s_posix = {
    s_posix_open,   s_posix_close,     s_posix_pread,    s_posix_pwrite,
    s_posix_fsync,  s_posix_ftruncate, s_posix_size,     s_posix_rename,
    s_posix_unlink, s_posix_mkdir,     s_posix_sync_dir, NULL,
};

shoal_io_t *
shoal_io_posix (void)
{
    return &s_posix;
}

//  --------------------------------------------------------------------------
//  Helpers over any table

//  Copies the directory part of path into dir ("." when there is none).
static void
s_dirname (const char *path, char *dir, size_t size)
{
    const char *slash = strrchr (path, '/');
    if (!slash)
        snprintf (dir, size, ".");
    else if (slash == path)
        snprintf (dir, size, "/");
    else
        snprintf (dir, size, "%.*s", (int) (slash - path), path);
}

int
shoal_io_mkdirs (shoal_io_t *io, const char *path)
{
    char buffer[4096];
    if (!*path) {
        errno = ENOENT;
        return -1;
    }
    if (snprintf (buffer, sizeof buffer, "%s", path) >= (int) sizeof buffer) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buffer + 1;; p++) {
        if (*p != '/' && *p != 0)
            continue;
        char saved = *p;
        *p = 0;
        if (io->mkdir (io, buffer, 0755) == 0) {
            char parent[4096];
            s_dirname (buffer, parent, sizeof parent);
            if (io->sync_dir (io, parent))
                return -1;
        }
        else if (errno != EEXIST)
            return -1;
        *p = saved;
        if (saved == 0)
            break;
    }
    struct stat st;
    if (stat (path, &st) || !S_ISDIR (st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int
shoal_io_write_all (shoal_io_t *io, int fd, const void *buffer, size_t size, off_t offset)
{
    const uint8_t *bytes = (const uint8_t *) buffer;
    while (size > 0) {
        ssize_t written = io->pwrite (io, fd, bytes, size, offset);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (written == 0) {
            errno = ENOSPC;
            return -1;
        }
        bytes += written;
        size -= (size_t) written;
        offset += written;
    }
    return 0;
}

ssize_t
shoal_io_read_all (shoal_io_t *io, int fd, void *buffer, size_t size, off_t offset)
{
    uint8_t *bytes = (uint8_t *) buffer;
    size_t done = 0;
    while (done < size) {
        ssize_t got = io->pread (io, fd, bytes + done, size - done, offset + (off_t) done);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (got == 0)
            break;
        done += (size_t) got;
    }
    return (ssize_t) done;
}

int
shoal_io_replace_file (shoal_io_t *io, const char *path, const void *data, size_t size)
{
    char temp[4200];
    char dir[4096];
    snprintf (temp, sizeof temp, "%s.tmp", path);
    s_dirname (path, dir, sizeof dir);
    int fd = io->open (io, temp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    if (shoal_io_write_all (io, fd, data, size, 0) || io->fsync (io, fd)) {
        int saved = errno;
        io->close (io, fd);
        io->unlink (io, temp);
        errno = saved;
        return -1;
    }
    if (io->close (io, fd) || io->rename (io, temp, path)) {
        int saved = errno;
        io->unlink (io, temp);
        errno = saved;
        return -1;
    }
    return io->sync_dir (io, dir);
}

int
shoal_io_read_file (shoal_io_t *io, const char *path, uint8_t **data_p, size_t *size_p)
{
    int fd = io->open (io, path, O_RDONLY, 0);
    if (fd < 0)
        return -1;
    off_t size = io->size (io, fd);
    uint8_t *data = size >= 0 ? (uint8_t *) malloc ((size_t) size + 1) : NULL;
    ssize_t got = data ? shoal_io_read_all (io, fd, data, (size_t) size, 0) : -1;
    int saved = errno;
    io->close (io, fd);
    if (got != size) {
        free (data);
        errno = got < 0 ? saved : EIO;
        return -1;
    }
    data[size] = 0; //  a NUL after the bytes makes text files easy to parse
    *data_p = data;
    *size_p = (size_t) size;
    return 0;
}

//  --------------------------------------------------------------------------
//  faulty

typedef struct {
    char *path;        //  file path as opened
    off_t synced_size; //  bytes that survive a power loss
    bool durable;      //  its directory entry survives a power loss
} s_file_t;

typedef struct {
    s_file_t *files;          //  every file written or created through the io
    size_t file_count;        //  files in use
    size_t file_alloc;        //  files allocated
    char **fd_paths;          //  path of each open fd, indexed by fd
    size_t fd_alloc;          //  entries in fd_paths
    bool dead;                //  crash_after ran out: every call fails EIO
    bool crash_armed;         //  crash_budget is counting
    uint64_t crash_budget;    //  bytes left before the crash
    int write_errno;          //  error for writes past write_budget, 0 = none
    uint64_t write_budget;    //  bytes left before writes fail
    int fsync_errno;          //  error for the armed fsync, 0 = none
    unsigned fsync_countdown; //  fsyncs that succeed before it fails
    bool lose_fsyncs;         //  fsync succeeds without syncing
    uint64_t bytes_written;   //  total written, for tests
    uint64_t fsyncs;          //  total successful fsyncs, for tests
    pthread_mutex_t mutex;    //  held by every call (recursive: power_loss resets)
} s_faulty_t;

static s_faulty_t *
s_state (shoal_io_t *io)
{
    return (s_faulty_t *) io->state;
}

static s_file_t *
s_file (s_faulty_t *self, const char *path, bool add)
{
    for (size_t i = 0; i < self->file_count; i++)
        if (strcmp (self->files[i].path, path) == 0)
            return &self->files[i];
    if (!add)
        return NULL;
    if (self->file_count == self->file_alloc) {
        size_t alloc = self->file_alloc ? 2 * self->file_alloc : 16;
        s_file_t *files = (s_file_t *) realloc (self->files, alloc * sizeof (s_file_t));
        if (!files)
            return NULL;
        self->files = files;
        self->file_alloc = alloc;
    }
    s_file_t *file = &self->files[self->file_count];
    file->path = strdup (path);
    if (!file->path)
        return NULL;
    file->synced_size = 0;
    file->durable = false;
    self->file_count++;
    return file;
}

static s_file_t *
s_fd_file (s_faulty_t *self, int fd)
{
    if (fd < 0 || (size_t) fd >= self->fd_alloc || !self->fd_paths[fd])
        return NULL;
    return s_file (self, self->fd_paths[fd], false);
}

#define S_IF_DEAD(self)                                                                            \
    do {                                                                                           \
        if ((self)->dead) {                                                                        \
            errno = EIO;                                                                           \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static int
s_faulty_open (shoal_io_t *io, const char *path, int flags, mode_t mode)
{
    s_faulty_t *self = s_state (io);
    S_IF_DEAD (self);
    bool existed = access (path, F_OK) == 0;
    int fd = open (path, flags | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    if ((size_t) fd >= self->fd_alloc) {
        size_t alloc = (size_t) fd + 64;
        char **paths = (char **) realloc (self->fd_paths, alloc * sizeof (char *));
        if (!paths) {
            close (fd);
            errno = ENOMEM;
            return -1;
        }
        memset (paths + self->fd_alloc, 0, (alloc - self->fd_alloc) * sizeof (char *));
        self->fd_paths = paths;
        self->fd_alloc = alloc;
    }
    free (self->fd_paths[fd]);
    self->fd_paths[fd] = NULL;
    //  Only regular files have data to lose; a directory opened here is not
    //  modelled (power_loss would try to truncate it).
    struct stat st;
    if (fstat (fd, &st) || !S_ISREG (st.st_mode))
        return fd;
    self->fd_paths[fd] = strdup (path);
    //  A file that existed before this io saw it counts as durable as it is.
    s_file_t *file = s_file (self, path, false);
    if (!file && (file = s_file (self, path, true)) && existed) {
        file->durable = true;
        file->synced_size = s_posix_size (io, fd);
    }
    else if (file && !existed) {
        file->synced_size = 0;
        file->durable = false;
    }
    if (file && (flags & O_TRUNC))
        file->synced_size = 0;
    return fd;
}

static int
s_faulty_close (shoal_io_t *io, int fd)
{
    s_faulty_t *self = s_state (io);
    if (fd >= 0 && (size_t) fd < self->fd_alloc) {
        free (self->fd_paths[fd]);
        self->fd_paths[fd] = NULL;
    }
    return close (fd); //  even a dead process's descriptors are closed
}

static ssize_t
s_faulty_pread (shoal_io_t *io, int fd, void *buffer, size_t size, off_t offset)
{
    s_faulty_t *self = s_state (io);
    S_IF_DEAD (self);
    return pread (fd, buffer, size, offset);
}

static ssize_t
s_faulty_pwrite (shoal_io_t *io, int fd, const void *buffer, size_t size, off_t offset)
{
    s_faulty_t *self = s_state (io);
    S_IF_DEAD (self);
    size_t allowed = size;
    int error = 0;
    if (self->crash_armed && self->crash_budget < allowed) {
        allowed = (size_t) self->crash_budget;
        error = EIO;
    }
    if (self->write_errno && self->write_budget < allowed) {
        allowed = (size_t) self->write_budget;
        error = self->write_errno;
    }
    if (allowed > 0) {
        ssize_t written = pwrite (fd, buffer, allowed, offset);
        if (written < 0)
            return -1;
        allowed = (size_t) written;
        self->bytes_written += allowed;
        if (self->crash_armed)
            self->crash_budget -= allowed;
        if (self->write_errno)
            self->write_budget -= allowed;
    }
    if (error) {
        if (self->crash_armed && self->crash_budget == 0)
            self->dead = true;
        errno = error;
        return -1; //  the torn part is on disk, as after a real failure
    }
    return (ssize_t) allowed;
}

static int
s_faulty_fsync (shoal_io_t *io, int fd)
{
    s_faulty_t *self = s_state (io);
    S_IF_DEAD (self);
    if (self->fsync_errno) {
        if (self->fsync_countdown == 0) {
            errno = self->fsync_errno;
            self->fsync_errno = 0;
            return -1;
        }
        self->fsync_countdown--;
    }
    if (self->lose_fsyncs)
        return 0;
    if (fdatasync (fd))
        return -1;
    s_file_t *file = s_fd_file (self, fd);
    if (file) {
        struct stat st;
        if (fstat (fd, &st) == 0)
            file->synced_size = st.st_size;
    }
    self->fsyncs++;
    return 0;
}

static int
s_faulty_ftruncate (shoal_io_t *io, int fd, off_t size)
{
    s_faulty_t *self = s_state (io);
    S_IF_DEAD (self);
    if (ftruncate (fd, size))
        return -1;
    s_file_t *file = s_fd_file (self, fd);
    if (file && file->synced_size > size)
        file->synced_size = size;
    return 0;
}

static off_t
s_faulty_size (shoal_io_t *io, int fd)
{
    s_faulty_t *self = s_state (io);
    S_IF_DEAD (self);
    return s_posix_size (io, fd);
}

static int
s_faulty_rename (shoal_io_t *io, const char *from, const char *to)
{
    s_faulty_t *self = s_state (io);
    S_IF_DEAD (self);
    if (rename (from, to))
        return -1;
    if (strcmp (from, to) == 0)
        return 0; //  renaming a file onto itself changes nothing
    //  Descriptors open on the source now write the target.
    for (size_t fd = 0; fd < self->fd_alloc; fd++)
        if (self->fd_paths[fd] && strcmp (self->fd_paths[fd], from) == 0) {
            char *path = strdup (to);
            if (path) {
                free (self->fd_paths[fd]);
                self->fd_paths[fd] = path;
            }
        }
    s_file_t *source = s_file (self, from, false);
    if (!source) {
        //  An untracked file replaced the target: forget the target's model.
        s_file_t *target = s_file (self, to, false);
        if (target) {
            free (target->path);
            *target = self->files[--self->file_count];
        }
    }
    else {
        //  The target takes the source's model; the old target's is gone.
        s_file_t *target = s_file (self, to, false);
        if (target) {
            free (target->path);
            *target = self->files[--self->file_count];
            source = s_file (self, from, false);
        }
        free (source->path);
        source->path = strdup (to);
        source->durable = true;
    }
    return 0;
}

static int
s_faulty_unlink (shoal_io_t *io, const char *path)
{
    s_faulty_t *self = s_state (io);
    S_IF_DEAD (self);
    if (unlink (path))
        return -1;
    s_file_t *file = s_file (self, path, false);
    if (file) {
        free (file->path);
        *file = self->files[--self->file_count];
    }
    return 0;
}

static int
s_faulty_mkdir (shoal_io_t *io, const char *path, mode_t mode)
{
    s_faulty_t *self = s_state (io);
    S_IF_DEAD (self);
    return mkdir (path, mode);
}

static int
s_faulty_sync_dir (shoal_io_t *io, const char *path)
{
    s_faulty_t *self = s_state (io);
    S_IF_DEAD (self);
    if (s_posix_sync_dir (io, path))
        return -1;
    if (self->lose_fsyncs)
        return 0; //  a disk that drops fsyncs drops those of directories too
    //  The files whose directory part is path ("." for a bare name),
    //  ignoring trailing slashes of path.
    size_t length = strlen (path);
    while (length > 1 && path[length - 1] == '/')
        length--;
    char dir[4096];
    for (size_t i = 0; i < self->file_count; i++) {
        s_dirname (self->files[i].path, dir, sizeof dir);
        if (strlen (dir) == length && strncmp (dir, path, length) == 0)
            self->files[i].durable = true;
    }
    return 0;
}

//  Each table entry runs its s_faulty_ function under the mutex, keeping
//  the errno that function left.
#define S_LOCKED(name, type, params, args)                                                         \
    static type name##_locked params                                                               \
    {                                                                                              \
        s_faulty_t *state = s_state (io);                                                          \
        pthread_mutex_lock (&state->mutex);                                                        \
        type rc = name args;                                                                       \
        int saved = errno;                                                                         \
        pthread_mutex_unlock (&state->mutex);                                                      \
        errno = saved;                                                                             \
        return rc;                                                                                 \
    }

S_LOCKED (s_faulty_open, int, (shoal_io_t * io, const char *path, int flags, mode_t mode),
          (io, path, flags, mode))
S_LOCKED (s_faulty_close, int, (shoal_io_t * io, int fd), (io, fd))
S_LOCKED (s_faulty_pread, ssize_t,
          (shoal_io_t * io, int fd, void *buffer, size_t size, off_t offset),
          (io, fd, buffer, size, offset))
S_LOCKED (s_faulty_pwrite, ssize_t,
          (shoal_io_t * io, int fd, const void *buffer, size_t size, off_t offset),
          (io, fd, buffer, size, offset))
S_LOCKED (s_faulty_fsync, int, (shoal_io_t * io, int fd), (io, fd))
S_LOCKED (s_faulty_ftruncate, int, (shoal_io_t * io, int fd, off_t size), (io, fd, size))
S_LOCKED (s_faulty_size, off_t, (shoal_io_t * io, int fd), (io, fd))
S_LOCKED (s_faulty_rename, int, (shoal_io_t * io, const char *from, const char *to), (io, from, to))
S_LOCKED (s_faulty_unlink, int, (shoal_io_t * io, const char *path), (io, path))
S_LOCKED (s_faulty_mkdir, int, (shoal_io_t * io, const char *path, mode_t mode), (io, path, mode))
S_LOCKED (s_faulty_sync_dir, int, (shoal_io_t * io, const char *path), (io, path))

shoal_io_t *
shoal_io_faulty_new (void)
{
    shoal_io_t *self = (shoal_io_t *) calloc (1, sizeof (shoal_io_t));
    s_faulty_t *state = (s_faulty_t *) calloc (1, sizeof (s_faulty_t));
    if (!self || !state) {
        free (self);
        free (state);
        return NULL;
    }
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init (&attributes);
    pthread_mutexattr_settype (&attributes, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init (&state->mutex, &attributes);
    pthread_mutexattr_destroy (&attributes);
    self->open = s_faulty_open_locked;
    self->close = s_faulty_close_locked;
    self->pread = s_faulty_pread_locked;
    self->pwrite = s_faulty_pwrite_locked;
    self->fsync = s_faulty_fsync_locked;
    self->ftruncate = s_faulty_ftruncate_locked;
    self->size = s_faulty_size_locked;
    self->rename = s_faulty_rename_locked;
    self->unlink = s_faulty_unlink_locked;
    self->mkdir = s_faulty_mkdir_locked;
    self->sync_dir = s_faulty_sync_dir_locked;
    self->state = state;
    return self;
}

void
shoal_io_faulty_destroy (shoal_io_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_faulty_t *state = s_state (*self_p);
    for (size_t i = 0; i < state->file_count; i++)
        free (state->files[i].path);
    free (state->files);
    for (size_t i = 0; i < state->fd_alloc; i++)
        free (state->fd_paths[i]);
    free (state->fd_paths);
    pthread_mutex_destroy (&state->mutex);
    free (state);
    free (*self_p);
    *self_p = NULL;
}

void
shoal_io_faulty_crash_after (shoal_io_t *self, uint64_t bytes)
{
    pthread_mutex_lock (&s_state (self)->mutex);
    s_state (self)->crash_armed = true;
    s_state (self)->crash_budget = bytes;
    pthread_mutex_unlock (&s_state (self)->mutex);
}

void
shoal_io_faulty_write_error (shoal_io_t *self, int error, uint64_t after_bytes)
{
    pthread_mutex_lock (&s_state (self)->mutex);
    s_state (self)->write_errno = error;
    s_state (self)->write_budget = after_bytes;
    pthread_mutex_unlock (&s_state (self)->mutex);
}

void
shoal_io_faulty_fsync_error (shoal_io_t *self, int error, unsigned after_fsyncs)
{
    pthread_mutex_lock (&s_state (self)->mutex);
    s_state (self)->fsync_errno = error;
    s_state (self)->fsync_countdown = after_fsyncs;
    pthread_mutex_unlock (&s_state (self)->mutex);
}

void
shoal_io_faulty_lose_fsyncs (shoal_io_t *self, bool lose)
{
    pthread_mutex_lock (&s_state (self)->mutex);
    s_state (self)->lose_fsyncs = lose;
    pthread_mutex_unlock (&s_state (self)->mutex);
}

void
shoal_io_faulty_power_loss (shoal_io_t *self)
{
    pthread_mutex_lock (&s_state (self)->mutex);
    s_faulty_t *state = s_state (self);
    for (size_t i = 0; i < state->file_count;) {
        s_file_t *file = &state->files[i];
        if (!file->durable) {
            unlink (file->path);
            free (file->path);
            *file = state->files[--state->file_count];
            continue;
        }
        if (truncate (file->path, file->synced_size) != 0 && errno != ENOENT)
            fprintf (stderr, "shoal_io: power loss cannot truncate %s: %s\n", file->path,
                     strerror (errno));
        i++;
    }
    shoal_io_faulty_reset (self);
    pthread_mutex_unlock (&s_state (self)->mutex);
}

void
shoal_io_faulty_reset (shoal_io_t *self)
{
    pthread_mutex_lock (&s_state (self)->mutex);
    s_faulty_t *state = s_state (self);
    state->dead = false;
    state->crash_armed = false;
    state->crash_budget = 0;
    state->write_errno = 0;
    state->write_budget = 0;
    state->fsync_errno = 0;
    state->fsync_countdown = 0;
    state->lose_fsyncs = false;
    pthread_mutex_unlock (&s_state (self)->mutex);
}

uint64_t
shoal_io_faulty_bytes_written (shoal_io_t *self)
{
    pthread_mutex_lock (&s_state (self)->mutex);
    uint64_t value = s_state (self)->bytes_written;
    pthread_mutex_unlock (&s_state (self)->mutex);
    return value;
}

uint64_t
shoal_io_faulty_fsyncs (shoal_io_t *self)
{
    pthread_mutex_lock (&s_state (self)->mutex);
    uint64_t value = s_state (self)->fsyncs;
    pthread_mutex_unlock (&s_state (self)->mutex);
    return value;
}
