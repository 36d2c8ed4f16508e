/*  =========================================================================
    shoal_store - a node's data directory

    The store is what a node keeps across restarts, in one directory:

        <dir>/
            LOCK                     flock'd while a store is open; "<pid>\n"
            node.id                  the node id, written once, never changed
            logs/
                <origin>/            32 lowercase hex digits of the origin id
                    <stream>/        one shoal_log (segments and indexes)
            consumers/
                <name>.cursors       the cursors of one durable consumer

    Both metadata files are text, so that a human can read them, and end
    with a checksum line, so that damage is told apart from content:

    node.id

        shoal-node-id 1\n            magic and format version
        <32 hex>\n                   the 16-byte node id, lowercase
        crc32c <8 hex>\n             CRC32C of every byte before this line

    <name>.cursors

        shoal-cursors 1\n            magic and format version
        consumer <name>\n            the consumer, equal to the file name
        <origin 32 hex> <stream> <seq>\n
                                     zero or more, sorted by origin then
                                     stream; seq (decimal, >= 1) is the
                                     last seq the consumer acknowledged
        crc32c <8 hex>\n             CRC32C of every byte before this line

    Cursors live in memory; shoal_store_cursor_set only changes memory and
    marks the consumer dirty, and shoal_store_cursors_flush writes each
    dirty consumer's file once, however many cursors moved. The node
    flushes them on a timer and at close: a crash redelivers at most what
    was acknowledged since the last flush (at-least-once, DESIGN.md 4).

    Invariants

    1. One open store per directory, across processes and within one:
       LOCK is held with flock (LOCK_EX | LOCK_NB) on a descriptor opened
       by this store, so any second open (another process, or this one
       again) fails with LOCKED. The kernel drops the lock when the holder
       dies, so a crash never leaves the directory locked. The pid in LOCK
       is for humans; it is written only after the lock is taken.
    2. The node id is made once, from libsodium's randombytes, and never
       rewritten. A node.id that exists but fails its format or checksum
       fails the open with CORRUPT and is left untouched: a node must not
       quietly change identity.
    3. Metadata files are only ever replaced whole, by
       shoal_io_replace_file (temp file, fsync, rename, fsync of the
       directory), so after any crash a reader finds the old or the new
       content. A file that fails its checksum is damage, never a torn
       write: it is reported with its path and never reset. A leftover
       "<name>.cursors.tmp" is a write that never committed; open
       removes it.
    4. A cursor never moves backwards: a lower seq is ignored. A flush
       writes a consumer's whole state, so the file holds a state that
       was once in memory.
    5. A consumer's dirty flag is cleared only when its file was replaced
       successfully; a failed flush is retried by the next one.
    6. Every entry under logs/ is a directory named by a canonical origin
       (lowercase hex) holding directories named by valid streams. Anything
       else fails the open naming the path: a misnamed log is never
       ignored silently. An empty stream directory is an empty log (made
       but never appended to, or a crash while it was being made).
    7. Open acquires in order: directories, lock, node id, logs,
       consumers. A failure releases everything acquired so far, so a
       failed open leaves the directory unlocked and no log open.
    8. Every file write goes through the configured shoal_io_t (also the
       LOCK and the cursors), so fault-injection tests reach every byte.
    ========================================================================= */

#include "shoal_store.h"
#include "shoal_crc.h"

#include "shoal_store.h"
#include "shoal_crc.h"
#include "shoal_error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_PATH_MAX 4096   //  every path the store builds fits in this
#define S_DIR_MAX 3800    //  longest data directory accepted, leaving room below it
#define S_CONSUMER_MAX 64 //  longest consumer name
#define S_HEX_SIZE (2 * SHOAL_ID_SIZE + 1)
#define S_CRC_LINE 16 //  "crc32c " + 8 hex digits + "\n"
#define S_VERSION "1"
#define S_NODE_MAGIC "shoal-node-id "
#define S_CURSOR_MAGIC "shoal-cursors "
#define S_NAME_FIRST "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"

typedef struct {
    uint8_t origin[SHOAL_ID_SIZE];     //  origin of the events counted
    char stream[SHOAL_STREAM_MAX + 1]; //  stream of the events counted
    uint64_t seq;                      //  last seq acknowledged, >= 1
} s_cursor_t;

typedef struct {
    char name[S_CONSUMER_MAX + 1]; //  consumer name, also its file name
    s_cursor_t *cursors;           //  sorted by origin, then stream
    size_t cursor_count;           //  cursors in use
    size_t cursor_alloc;           //  cursors allocated
    bool dirty;                    //  changed since its file was last written
} s_consumer_t;

typedef struct {
    char stream[SHOAL_STREAM_MAX + 1]; //  stream name, or "*" for the default
    uint64_t bytes;                    //  retain_bytes, 0 = unlimited
    int64_t age_ns;                    //  retain_age_ns, 0 = unlimited
} s_retention_t;

struct _shoal_store_t {
    char *dir;                      //  data directory, without a trailing slash
    shoal_log_config_t config;      //  every log's configuration; config.io is set
    shoal_io_t *io;                 //  file operations (config.io), not owned
    int lock_fd;                    //  descriptor holding the flock on LOCK, or -1
    uint8_t node_id[SHOAL_ID_SIZE]; //  this node's id, from node.id
    shoal_log_t **logs;             //  every log held, owned; found by linear search
    size_t log_count;               //  logs in use
    size_t log_alloc;               //  logs allocated
    s_consumer_t **consumers;       //  durable consumers, sorted by name, owned
    size_t consumer_count;          //  consumers in use
    size_t consumer_alloc;          //  consumers allocated
    s_retention_t *retention;       //  retention settings per stream
    size_t retention_count;         //  settings in use
    size_t retention_alloc;         //  settings allocated
};

//  Why the last open in this thread failed: a shoal_error_t and words.
static _Thread_local int s_error_code;
static _Thread_local char s_error_text[1024];

//  Records why an operation failed; returns -1 for the caller to return.
static int s_fail (int code, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static int
s_fail (int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (s_error_text, sizeof s_error_text, format, args);
    va_end (args);
    s_error_code = code;
    return -1;
}

//  The shoal_error_t for an errno from the file system.
static int
s_errno_code (int error)
{
    return error == ENOSPC ? SHOAL_ERR_NOSPC : SHOAL_ERR_IO;
}

//  Opens a gap for one element of size bytes at index in *array, which
//  holds *count of them (growing it); false when out of memory.
static bool
s_insert (void **array, size_t *count, size_t *alloc, size_t index, size_t size)
{
    if (*count == *alloc) {
        void *larger = realloc (*array, (*alloc ? 2 * *alloc : 8) * size);
        if (!larger)
            return false;
        *array = larger;
        *alloc = *alloc ? 2 * *alloc : 8;
    }
    uint8_t *bytes = (uint8_t *) *array;
    memmove (bytes + (index + 1) * size, bytes + index * size, (*count - index) * size);
    (*count)++;
    return true;
}

//  Writes "<dir>/<a>[/<b>]" into path (S_PATH_MAX bytes). dir is at most
//  S_DIR_MAX long and a, b are file names, so it always fits.
static void
s_path (char *path, const char *dir, const char *a, const char *b)
{
    const char *parts[] = {dir, "/", a, b ? "/" : "", b ? b : ""};
    size_t length = 0;
    for (size_t index = 0; index < 5; index++) {
        size_t size = strlen (parts[index]);
        size = length + size < S_PATH_MAX ? size : S_PATH_MAX - 1 - length;
        memcpy (path + length, parts[index], size);
        length += size;
    }
    path[length] = 0;
}

static bool
s_is_directory (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 && S_ISDIR (st.st_mode);
}

//  Calls fn for each entry of dir but . and .., until one returns non-zero.
typedef int (s_entry_fn) (shoal_store_t *self, const char *path, const char *name, void *arg);

static int
s_scan (shoal_store_t *self, const char *dir, s_entry_fn *fn, void *arg)
{
    DIR *handle = opendir (dir);
    if (!handle)
        return s_fail (SHOAL_ERR_IO, "cannot read %s: %s", dir, strerror (errno));
    int rc = 0;
    struct dirent *entry;
    char path[S_PATH_MAX];
    while (rc == 0 && (entry = readdir (handle)))
        if (strcmp (entry->d_name, ".") != 0 && strcmp (entry->d_name, "..") != 0) {
            s_path (path, dir, entry->d_name, NULL);
            rc = fn (self, path, entry->d_name, arg);
        }
    closedir (handle);
    return rc;
}

//  --------------------------------------------------------------------------
//  Metadata text: "<magic><version>\n", body lines, "crc32c <8 hex>\n"

//  Checks a file read by shoal_io_read_file (text is NUL-terminated) and
//  returns its body lines, NUL-terminated after the last newline, or NULL
//  after s_fail: MISMATCH for another version, CORRUPT for any damage.
static char *
s_text_body (char *text, size_t size, const char *magic, const char *path)
{
    size_t magic_size = strlen (magic), crc_at = size - S_CRC_LINE;
    if (strncmp (text, magic, magic_size) != 0) {
        s_fail (SHOAL_ERR_CORRUPT, "%s is damaged: it does not start with \"%s\"", path, magic);
        return NULL;
    }
    char *version = text + magic_size;
    if (strncmp (version, S_VERSION "\n", 2) != 0) {
        s_fail (SHOAL_ERR_MISMATCH, "%s has format version %.*s, this build reads " S_VERSION, path,
                (int) strcspn (version, "\n"), version);
        return NULL;
    }
    char expected[S_CRC_LINE + 1];
    if (size >= magic_size + 2 + S_CRC_LINE)
        snprintf (expected, sizeof expected, "crc32c %08" PRIx32 "\n",
                  shoal_crc32c (0, text, crc_at));
    if (size < magic_size + 2 + S_CRC_LINE || strlen (text) != size
        || strcmp (text + crc_at, expected) != 0) {
        s_fail (SHOAL_ERR_CORRUPT, "%s is damaged: its crc32c line is missing or does not match",
                path);
        return NULL;
    }
    text[crc_at] = 0;
    return version + 2;
}

//  Appends the checksum line over text[0 .. length); returns the new length.
static size_t
s_text_seal (char *text, size_t length, size_t capacity)
{
    uint32_t crc = shoal_crc32c (0, text, length);
    snprintf (text + length, capacity - length, "crc32c %08" PRIx32 "\n", crc);
    return length + S_CRC_LINE;
}

//  --------------------------------------------------------------------------
//  Lock and node id

//  Takes the directory's lock (invariant 1).
static int
s_lock (shoal_store_t *self)
{
    char path[S_PATH_MAX];
    s_path (path, self->dir, "LOCK", NULL);
    int fd = self->io->open (self->io, path, O_RDWR | O_CREAT, 0644);
    if (fd < 0)
        return s_fail (s_errno_code (errno), "cannot open lock file %s: %s", path,
                       strerror (errno));
    if (flock (fd, LOCK_EX | LOCK_NB) != 0) {
        int error = errno;
        char holder[32] = "";
        ssize_t got = shoal_io_read_all (self->io, fd, holder, sizeof holder - 1, 0);
        holder[got > 0 ? strcspn (holder, "\n") : 0] = 0;
        self->io->close (self->io, fd);
        if (error == EWOULDBLOCK)
            return s_fail (SHOAL_ERR_LOCKED,
                           "data directory %s is in use: process %s holds its lock %s", self->dir,
                           *holder ? holder : "(unknown pid)", path);
        return s_fail (SHOAL_ERR_IO, "cannot lock %s: %s", path, strerror (error));
    }
    char pid[32];
    int length = snprintf (pid, sizeof pid, "%ld\n", (long) getpid ());
    if (self->io->ftruncate (self->io, fd, 0) != 0
        || shoal_io_write_all (self->io, fd, pid, (size_t) length, 0) != 0) {
        int error = errno;
        self->io->close (self->io, fd);
        return s_fail (s_errno_code (error), "cannot write lock file %s: %s", path,
                       strerror (error));
    }
    self->lock_fd = fd;
    return 0;
}

//  Loads node.id, or makes it on first open (invariant 2).
static int
s_node_id_load (shoal_store_t *self)
{
    char path[S_PATH_MAX];
    s_path (path, self->dir, "node.id", NULL);
    uint8_t *data;
    size_t size;
    if (shoal_io_read_file (self->io, path, &data, &size) == 0) {
        char *body = s_text_body ((char *) data, size, S_NODE_MAGIC, path);
        char *line = body ? strsep (&body, "\n") : NULL;
        int rc = line ? 0 : -1;
        if (line
            && (!body || *body || strlen (line) != 2 * SHOAL_ID_SIZE
                || shoal_id_from_hex (line, self->node_id) != 0))
            rc =
                s_fail (SHOAL_ERR_CORRUPT, "%s is damaged: it holds no 32-digit hex node id", path);
        free (data);
        return rc;
    }
    if (errno != ENOENT)
        return s_fail (s_errno_code (errno), "cannot read %s: %s", path, strerror (errno));
    if (sodium_init () < 0)
        return s_fail (SHOAL_ERR_IO, "libsodium cannot start: no random source for the node id");
    randombytes_buf (self->node_id, SHOAL_ID_SIZE);
    char hex[S_HEX_SIZE], text[128];
    shoal_id_to_hex (self->node_id, hex);
    int length = snprintf (text, sizeof text, S_NODE_MAGIC S_VERSION "\n%s\n", hex);
    size_t total = s_text_seal (text, (size_t) length, sizeof text);
    if (shoal_io_replace_file (self->io, path, text, total) != 0)
        return s_fail (s_errno_code (errno), "cannot write %s: %s", path, strerror (errno));
    return 0;
}

//  --------------------------------------------------------------------------
//  Logs

static shoal_log_t *
s_log_find (const shoal_store_t *self, const uint8_t *origin, const char *stream)
{
    for (size_t index = 0; index < self->log_count; index++)
        if (memcmp (shoal_log_origin (self->logs[index]), origin, SHOAL_ID_SIZE) == 0
            && strcmp (shoal_log_stream (self->logs[index]), stream) == 0)
            return self->logs[index];
    return NULL;
}

//  Takes an open log into the store; on failure closes it.
static int
s_log_add (shoal_store_t *self, shoal_log_t *log)
{
    if (!s_insert ((void **) &self->logs, &self->log_count, &self->log_alloc, self->log_count,
                   sizeof (shoal_log_t *))) {
        shoal_log_close (&log);
        return s_fail (SHOAL_ERR_IO, "out of memory");
    }
    self->logs[self->log_count - 1] = log;
    return 0;
}

//  One entry of logs/<origin>/: a stream's log (invariant 6).
static int
s_stream_entry (shoal_store_t *self, const char *path, const char *name, void *origin)
{
    if (!shoal_stream_name_valid (name) || !s_is_directory (path))
        return s_fail (SHOAL_ERR_CORRUPT, "%s is not a log directory named by a valid stream",
                       path);
    int error = SHOAL_ERR_IO;
    shoal_log_t *log =
        shoal_log_open (path, (const uint8_t *) origin, name, false, &self->config, &error);
    if (!log)
        return s_fail (error, "cannot open log %s: %s", path, shoal_log_open_error ());
    return s_log_add (self, log);
}

//  One entry of logs/: an origin's directory (invariant 6).
static int
s_origin_entry (shoal_store_t *self, const char *path, const char *name, void *arg)
{
    (void) arg;
    uint8_t origin[SHOAL_ID_SIZE];
    char canonical[S_HEX_SIZE] = "";
    if (strlen (name) == 2 * SHOAL_ID_SIZE && shoal_id_from_hex (name, origin) == 0)
        shoal_id_to_hex (origin, canonical);
    if (strcmp (canonical, name) != 0 || !s_is_directory (path))
        return s_fail (SHOAL_ERR_CORRUPT,
                       "%s is not a directory named by an origin id in lowercase hex", path);
    return s_scan (self, path, s_stream_entry, origin);
}

//  --------------------------------------------------------------------------
//  Consumers and their cursors

//  The consumer named name, or NULL; *index_p (if given) gets its index, or
//  where it belongs in the sorted list.
static s_consumer_t *
s_consumer (const shoal_store_t *self, const char *name, size_t *index_p)
{
    size_t index = 0;
    int order = -1;
    while (name && index < self->consumer_count
           && (order = strcmp (self->consumers[index]->name, name)) < 0)
        index++;
    if (index_p)
        *index_p = index;
    return index < self->consumer_count && order == 0 ? self->consumers[index] : NULL;
}

//  The consumer, made (empty and dirty) when missing; NULL when out of memory.
static s_consumer_t *
s_consumer_require (shoal_store_t *self, const char *name)
{
    size_t index;
    s_consumer_t *consumer = s_consumer (self, name, &index);
    if (consumer)
        return consumer;
    consumer = (s_consumer_t *) calloc (1, sizeof (s_consumer_t));
    if (!consumer
        || !s_insert ((void **) &self->consumers, &self->consumer_count, &self->consumer_alloc,
                      index, sizeof (s_consumer_t *))) {
        free (consumer);
        return NULL;
    }
    snprintf (consumer->name, sizeof consumer->name, "%s", name);
    consumer->dirty = true;
    self->consumers[index] = consumer;
    return consumer;
}

//  Index of the cursor, or where it belongs in the sorted list (*found false).
static size_t
s_cursor_find (const s_consumer_t *consumer, const uint8_t *origin, const char *stream, bool *found)
{
    size_t index = 0;
    int order = -1;
    for (; index < consumer->cursor_count; index++) {
        const s_cursor_t *cursor = &consumer->cursors[index];
        order = memcmp (cursor->origin, origin, SHOAL_ID_SIZE);
        order = order ? order : strcmp (cursor->stream, stream);
        if (order >= 0)
            break;
    }
    *found = index < consumer->cursor_count && order == 0;
    return index;
}

//  Sets a cursor, inserting it when new; false when out of memory.
static bool
s_cursor_put (s_consumer_t *consumer, const uint8_t *origin, const char *stream, uint64_t seq)
{
    bool found;
    size_t index = s_cursor_find (consumer, origin, stream, &found);
    if (!found) {
        if (!s_insert ((void **) &consumer->cursors, &consumer->cursor_count,
                       &consumer->cursor_alloc, index, sizeof (s_cursor_t)))
            return false;
        memcpy (consumer->cursors[index].origin, origin, SHOAL_ID_SIZE);
        snprintf (consumer->cursors[index].stream, SHOAL_STREAM_MAX + 1, "%s", stream);
    }
    consumer->cursors[index].seq = seq;
    return true;
}

//  Parses a cursor line "<origin hex> <stream> <seq>" in place; false if malformed.
static bool
s_cursor_parse (char *line, uint8_t *origin, char **stream_p, uint64_t *seq_p)
{
    char *hex = strsep (&line, " ");
    char *stream = line ? strsep (&line, " ") : NULL;
    size_t digits = line ? strlen (line) : 0;
    if (!stream || strlen (hex) != 2 * SHOAL_ID_SIZE || shoal_id_from_hex (hex, origin) != 0
        || !shoal_stream_name_valid (stream) || digits == 0 || digits > 20
        || strspn (line, "0123456789") != digits)
        return false;
    errno = 0;
    *seq_p = strtoull (line, NULL, 10);
    *stream_p = stream;
    return errno == 0 && *seq_p > 0;
}

//  Loads one consumer file (invariant 3).
static int
s_consumer_load (shoal_store_t *self, const char *path, const char *name)
{
    uint8_t *data;
    size_t size;
    if (shoal_io_read_file (self->io, path, &data, &size) != 0)
        return s_fail (s_errno_code (errno), "cannot read %s: %s", path, strerror (errno));
    char *body = s_text_body ((char *) data, size, S_CURSOR_MAGIC, path);
    char *line = body ? strsep (&body, "\n") : NULL;
    int rc = line ? 0 : -1;
    if (line && (!body || strncmp (line, "consumer ", 9) != 0 || strcmp (line + 9, name) != 0))
        rc = s_fail (SHOAL_ERR_CORRUPT, "%s is damaged: it does not name consumer %s", path, name);
    s_consumer_t *consumer = rc == 0 ? s_consumer_require (self, name) : NULL;
    if (rc == 0 && !consumer)
        rc = s_fail (SHOAL_ERR_IO, "out of memory");
    for (unsigned number = 3; rc == 0 && *body; number++) {
        uint8_t origin[SHOAL_ID_SIZE];
        char *stream;
        uint64_t seq;
        bool found = false;
        line = strsep (&body, "\n");
        if (!s_cursor_parse (line, origin, &stream, &seq)
            || (s_cursor_find (consumer, origin, stream, &found), found))
            rc = s_fail (SHOAL_ERR_CORRUPT, "%s is damaged: line %u is not a new cursor", path,
                         number);
        else if (!s_cursor_put (consumer, origin, stream, seq))
            rc = s_fail (SHOAL_ERR_IO, "out of memory");
    }
    if (consumer)
        consumer->dirty = false;
    free (data);
    return rc;
}

//  One entry of consumers/: a consumer file, or a temp file left by a
//  write that never committed, which is removed (invariant 3).
static int
s_consumer_entry (shoal_store_t *self, const char *path, const char *file, void *arg)
{
    (void) arg;
    size_t length = strlen (file);
    if (length > 12 && strcmp (file + length - 12, ".cursors.tmp") == 0) {
        if (self->io->unlink (self->io, path) != 0 && errno != ENOENT)
            return s_fail (s_errno_code (errno), "cannot remove %s: %s", path, strerror (errno));
        return 0;
    }
    char name[S_CONSUMER_MAX + 1] = "";
    if (length > 8 && length - 8 <= S_CONSUMER_MAX && strcmp (file + length - 8, ".cursors") == 0)
        snprintf (name, sizeof name, "%.*s", (int) (length - 8), file);
    if (!shoal_consumer_name_valid (name))
        return s_fail (SHOAL_ERR_CORRUPT,
                       "%s is not a consumer file: consumers/ holds only <name>.cursors", path);
    return s_consumer_load (self, path, name);
}

//  Writes one consumer's file (invariants 3 and 5). 0 or -1 with errno.
static int
s_consumer_write (shoal_store_t *self, s_consumer_t *consumer)
{
    const size_t line_max = 2 * SHOAL_ID_SIZE + 1 + SHOAL_STREAM_MAX + 1 + 20 + 1;
    size_t capacity = 64 + S_CONSUMER_MAX + consumer->cursor_count * line_max + S_CRC_LINE + 1;
    char *text = (char *) malloc (capacity);
    if (!text) {
        errno = ENOMEM;
        return -1;
    }
    size_t length = (size_t) snprintf (text, capacity, S_CURSOR_MAGIC S_VERSION "\nconsumer %s\n",
                                       consumer->name);
    for (size_t index = 0; index < consumer->cursor_count; index++) {
        const s_cursor_t *cursor = &consumer->cursors[index];
        char hex[S_HEX_SIZE];
        shoal_id_to_hex (cursor->origin, hex);
        length += (size_t) snprintf (text + length, capacity - length, "%s %s %" PRIu64 "\n", hex,
                                     cursor->stream, cursor->seq);
    }
    length = s_text_seal (text, length, capacity);
    char path[S_PATH_MAX], file[S_CONSUMER_MAX + 16];
    snprintf (file, sizeof file, "%s.cursors", consumer->name);
    s_path (path, self->dir, "consumers", file);
    int rc = shoal_io_replace_file (self->io, path, text, length);
    free (text);
    if (rc == 0)
        consumer->dirty = false;
    return rc;
}

//  --------------------------------------------------------------------------
//  Open and close

const char *
shoal_store_open_error (void)
{
    return s_error_text;
}

//  Makes the directory tree; IO naming the path when it cannot be written.
static int
s_make_directories (shoal_store_t *self)
{
    if (shoal_io_mkdirs (self->io, self->dir) != 0)
        return s_fail (s_errno_code (errno), "cannot create data directory %s: %s", self->dir,
                       strerror (errno));
    if (access (self->dir, W_OK | X_OK) != 0)
        return s_fail (SHOAL_ERR_IO, "data directory %s is not writable: %s", self->dir,
                       strerror (errno));
    const char *subdirs[] = {"logs", "consumers"};
    for (size_t index = 0; index < 2; index++) {
        char path[S_PATH_MAX];
        s_path (path, self->dir, subdirs[index], NULL);
        if (shoal_io_mkdirs (self->io, path) != 0)
            return s_fail (s_errno_code (errno), "cannot create %s: %s", path, strerror (errno));
    }
    return 0;
}

shoal_store_t *
shoal_store_open (const char *dir, const shoal_log_config_t *log_config, int *error_p)
{
    s_error_code = SHOAL_OK;
    s_error_text[0] = 0;
    size_t length = dir ? strlen (dir) : 0;
    while (length > 1 && dir[length - 1] == '/')
        length--;
    shoal_store_t *self = NULL;
    if (length == 0 || length > S_DIR_MAX)
        s_fail (SHOAL_ERR_INVALID, "data directory path is empty or too long");
    else if (!(self = (shoal_store_t *) calloc (1, sizeof (shoal_store_t)))
             || !(self->dir = strndup (dir, length))) {
        free (self);
        self = NULL;
        s_fail (SHOAL_ERR_IO, "out of memory");
    }
    if (self) {
        self->lock_fd = -1;
        if (log_config)
            self->config = *log_config;
        else
            shoal_log_config_defaults (&self->config);
        if (!self->config.io)
            self->config.io = shoal_io_posix ();
        self->io = self->config.io;
        char path[S_PATH_MAX], consumers[S_PATH_MAX];
        s_path (path, self->dir, "logs", NULL);
        s_path (consumers, self->dir, "consumers", NULL);
        if (s_make_directories (self) || s_lock (self) || s_node_id_load (self)
            || s_scan (self, path, s_origin_entry, NULL)
            || s_scan (self, consumers, s_consumer_entry, NULL)) {
            for (size_t index = 0; index < self->consumer_count; index++)
                self->consumers[index]->dirty = false; //  a failed open writes nothing back
            shoal_store_close (&self);                 //  keeps s_error_*: it never fails them
        }
    }
    if (error_p)
        *error_p = s_error_code;
    return self;
}

void
shoal_store_close (shoal_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_store_t *self = *self_p;
    if (shoal_store_flush (self) != 0)
        fprintf (stderr, "shoal_store: %s: a log could not be flushed at close\n", self->dir);
    if (shoal_store_cursors_flush (self) != 0)
        fprintf (stderr, "shoal_store: %s: consumer cursors could not be written at close: %s\n",
                 self->dir, strerror (errno));
    for (size_t index = 0; index < self->log_count; index++)
        shoal_log_close (&self->logs[index]);
    free (self->logs);
    for (size_t index = 0; index < self->consumer_count; index++) {
        free (self->consumers[index]->cursors);
        free (self->consumers[index]);
    }
    free (self->consumers);
    free (self->retention);
    if (self->lock_fd >= 0)
        self->io->close (self->io, self->lock_fd); //  releases the flock
    free (self->dir);
    free (self);
    *self_p = NULL;
}

const char *
shoal_store_dir (const shoal_store_t *self)
{
    return self->dir;
}

const uint8_t *
shoal_store_node_id (const shoal_store_t *self)
{
    return self->node_id;
}

//  --------------------------------------------------------------------------
//  Logs

shoal_log_t *
shoal_store_log (shoal_store_t *self, const uint8_t origin[SHOAL_ID_SIZE], const char *stream,
                 bool create, int *error_p)
{
    int error_local;
    int *error = error_p ? error_p : &error_local;
    shoal_log_t *log = NULL;
    if (!self || !origin || !stream)
        *error = SHOAL_ERR_INVALID;
    else if (!shoal_stream_name_valid (stream))
        *error = SHOAL_ERR_BAD_STREAM;
    else if ((log = s_log_find (self, origin, stream)) || !create)
        *error = log ? SHOAL_OK : SHOAL_ERR_NOT_FOUND;
    else
        *error = SHOAL_OK;
    if (log || *error != SHOAL_OK)
        return log;
    char hex[S_HEX_SIZE], name[S_HEX_SIZE + SHOAL_STREAM_MAX + 1], path[S_PATH_MAX];
    shoal_id_to_hex (origin, hex);
    snprintf (name, sizeof name, "%s/%s", hex, stream);
    s_path (path, self->dir, "logs", name); //  shoal_log_open makes the directories
    log = shoal_log_open (path, origin, stream, true, &self->config, error);
    if (log && s_log_add (self, log) != 0) {
        *error = SHOAL_ERR_IO;
        return NULL;
    }
    return log;
}

size_t
shoal_store_log_count (const shoal_store_t *self)
{
    return self->log_count;
}

shoal_log_t *
shoal_store_log_at (const shoal_store_t *self, size_t index)
{
    return index < self->log_count ? self->logs[index] : NULL;
}

//  Calls flush on every log, also after one failed. 0, or -1 if any failed.
static int
s_flush_each (shoal_store_t *self, int (*flush) (shoal_log_t *))
{
    int rc = 0;
    for (size_t index = 0; index < self->log_count; index++)
        rc |= flush (self->logs[index]) != 0 ? -1 : 0;
    return rc;
}

int
shoal_store_flush (shoal_store_t *self)
{
    return s_flush_each (self, shoal_log_flush);
}

int
shoal_store_flush_due (shoal_store_t *self)
{
    return s_flush_each (self, shoal_log_flush_due);
}

int64_t
shoal_store_deadline (const shoal_store_t *self)
{
    int64_t earliest = -1;
    for (size_t index = 0; index < self->log_count; index++) {
        int64_t deadline = shoal_log_deadline (self->logs[index]);
        if (deadline >= 0 && (earliest < 0 || deadline < earliest))
            earliest = deadline;
    }
    return earliest;
}

//  --------------------------------------------------------------------------
//  Retention

static s_retention_t *
s_retention (const shoal_store_t *self, const char *stream)
{
    for (size_t index = 0; index < self->retention_count; index++)
        if (strcmp (self->retention[index].stream, stream) == 0)
            return &self->retention[index];
    return NULL;
}

void
shoal_store_set_retention (shoal_store_t *self, const char *stream, uint64_t bytes, int64_t age_ns)
{
    if (!stream || (strcmp (stream, "*") != 0 && !shoal_stream_name_valid (stream)))
        return;
    s_retention_t *setting = s_retention (self, stream);
    if (!setting) {
        if (!s_insert ((void **) &self->retention, &self->retention_count, &self->retention_alloc,
                       self->retention_count, sizeof (s_retention_t)))
            return;
        setting = &self->retention[self->retention_count - 1];
        snprintf (setting->stream, sizeof setting->stream, "%s", stream);
    }
    setting->bytes = bytes;
    setting->age_ns = age_ns;
}

int
shoal_store_apply_retention (shoal_store_t *self, int64_t now_ns)
{
    int dropped = 0;
    bool failed = false;
    const s_retention_t *fallback = s_retention (self, "*");
    for (size_t index = 0; index < self->log_count; index++) {
        shoal_log_t *log = self->logs[index];
        const s_retention_t *setting = s_retention (self, shoal_log_stream (log));
        if (!setting)
            setting = fallback;
        //  Without any setting, the configuration the logs were opened with.
        shoal_log_set_retention (log, setting ? setting->bytes : self->config.retain_bytes,
                                 setting ? setting->age_ns : self->config.retain_age_ns);
        int count = shoal_log_apply_retention (log, now_ns);
        if (count < 0)
            failed = true;
        else
            dropped += count;
    }
    return failed ? -1 : dropped;
}

//  --------------------------------------------------------------------------
//  Cursors and consumers

bool
shoal_consumer_name_valid (const char *name)
{
    size_t length = name ? strlen (name) : 0;
    return length >= 1 && length <= S_CONSUMER_MAX && strchr (S_NAME_FIRST, name[0])
           && strspn (name + 1, S_NAME_FIRST ".-") == length - 1;
}

int
shoal_store_cursor_set (shoal_store_t *self, const char *consumer_name,
                        const uint8_t origin[SHOAL_ID_SIZE], const char *stream, uint64_t seq)
{
    if (!self || !origin || !shoal_consumer_name_valid (consumer_name)
        || !shoal_stream_name_valid (stream))
        return -1;
    s_consumer_t *consumer = s_consumer_require (self, consumer_name);
    if (!consumer)
        return -1;
    //  seq 0 only registers the consumer; a cursor never moves backwards.
    if (seq == 0 || seq <= shoal_store_cursor (self, consumer_name, origin, stream))
        return 0;
    if (!s_cursor_put (consumer, origin, stream, seq))
        return -1;
    consumer->dirty = true;
    return 0;
}

uint64_t
shoal_store_cursor (const shoal_store_t *self, const char *consumer_name,
                    const uint8_t origin[SHOAL_ID_SIZE], const char *stream)
{
    const s_consumer_t *consumer = s_consumer (self, consumer_name, NULL);
    bool found = false;
    size_t index =
        consumer && origin && stream ? s_cursor_find (consumer, origin, stream, &found) : 0;
    return found ? consumer->cursors[index].seq : 0;
}

int
shoal_store_cursors_flush (shoal_store_t *self)
{
    int rc = 0;
    for (size_t index = 0; index < self->consumer_count; index++)
        if (self->consumers[index]->dirty && s_consumer_write (self, self->consumers[index]) != 0)
            rc = -1;
    return rc;
}

bool
shoal_store_cursors_dirty (const shoal_store_t *self)
{
    for (size_t index = 0; index < self->consumer_count; index++)
        if (self->consumers[index]->dirty)
            return true;
    return false;
}

size_t
shoal_store_consumer_count (const shoal_store_t *self)
{
    return self->consumer_count;
}

const char *
shoal_store_consumer_name (const shoal_store_t *self, size_t index)
{
    return index < self->consumer_count ? self->consumers[index]->name : NULL;
}

bool
shoal_store_consumer_exists (const shoal_store_t *self, const char *consumer_name)
{
    return s_consumer (self, consumer_name, NULL) != NULL;
}

size_t
shoal_store_consumer_cursor_count (const shoal_store_t *self, const char *consumer_name)
{
    const s_consumer_t *consumer = s_consumer (self, consumer_name, NULL);
    return consumer ? consumer->cursor_count : 0;
}

int
shoal_store_consumer_cursor_at (const shoal_store_t *self, const char *consumer_name, size_t index,
                                uint8_t origin[SHOAL_ID_SIZE], const char **stream_p,
                                uint64_t *seq_p)
{
    const s_consumer_t *consumer = s_consumer (self, consumer_name, NULL);
    if (!consumer || index >= consumer->cursor_count)
        return -1;
    const s_cursor_t *cursor = &consumer->cursors[index];
    if (origin)
        memcpy (origin, cursor->origin, SHOAL_ID_SIZE);
    if (stream_p)
        *stream_p = cursor->stream;
    if (seq_p)
        *seq_p = cursor->seq;
    return 0;
}

int
shoal_store_consumer_delete (shoal_store_t *self, const char *consumer_name)
{
    size_t index;
    if (!s_consumer (self, consumer_name, &index))
        return -1;
    char consumers[S_PATH_MAX], path[S_PATH_MAX], file[S_CONSUMER_MAX + 16];
    snprintf (file, sizeof file, "%s.cursors", consumer_name);
    s_path (consumers, self->dir, "consumers", NULL);
    s_path (path, consumers, file, NULL);
    if (self->io->unlink (self->io, path) != 0 && errno != ENOENT)
        return -1;
    free (self->consumers[index]->cursors);
    free (self->consumers[index]);
    memmove (self->consumers + index, self->consumers + index + 1,
             (self->consumer_count - index - 1) * sizeof (s_consumer_t *));
    self->consumer_count--;
    return self->io->sync_dir (self->io, consumers);
}

char *
shoal_store_default_dir (void)
{
    const char *xdg = getenv ("XDG_DATA_HOME");
    char *dir = NULL;
    if (xdg && xdg[0] == '/') {
        if (asprintf (&dir, "%s/shoal", xdg) < 0)
            dir = NULL;
        return dir;
    }
    const char *home = getenv ("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid (getuid ());
        home = pw ? pw->pw_dir : "/";
    }
    if (asprintf (&dir, "%s/.local/share/shoal", home) < 0)
        dir = NULL;
    return dir;
}
