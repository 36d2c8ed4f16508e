/*  test_store - shoal_store: node id, lock, logs, durable consumer cursors,
    atomic metadata under crashes, and retention.

    Everything is written under tap_tmpdir (), removed at exit. */

#include "shoal.h"
#include "shoal_store.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const uint8_t s_origin_a[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                       0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};
static const uint8_t s_origin_b[16] = {0x0b, 0x1b, 0x2b, 0x3b, 0x4b, 0x5b, 0x6b, 0x7b,
                                       0x8b, 0x9b, 0xab, 0xbb, 0xcb, 0xdb, 0xeb, 0xfb};

//  --------------------------------------------------------------------------
//  Helpers

//  Reads a whole file (NUL-terminated); NULL when it cannot.
static char *
s_read (const char *path, size_t *size_p)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return NULL;
    char *data = malloc (65536);
    size_t size = data ? fread (data, 1, 65535, file) : 0;
    fclose (file);
    if (data)
        data[size] = 0;
    if (size_p)
        *size_p = size;
    return data;
}

static void
s_write (const char *path, const void *data, size_t size)
{
    FILE *file = fopen (path, "wb");
    if (!file || fwrite (data, 1, size, file) != size)
        bail ("cannot write %s: %s", path, strerror (errno));
    fclose (file);
}

static bool
s_exists (const char *path)
{
    return access (path, F_OK) == 0;
}

//  A path below tap_tmpdir () in a buffer of the caller's.
static const char *
s_tmp (char *buffer, size_t size, const char *name)
{
    snprintf (buffer, size, "%s/%s", tap_tmpdir (), name);
    return buffer;
}

static shoal_store_t *
s_open (const char *dir, const shoal_log_config_t *config)
{
    int error = -1;
    shoal_store_t *store = shoal_store_open (dir, config, &error);
    if (!store)
        bail ("cannot open store %s: %s (%s)", dir, shoal_error_name (error),
              shoal_store_open_error ());
    return store;
}

//  Opens dir expecting failure; returns the error and copies the message.
static int
s_open_fails (const char *dir, char *message, size_t size)
{
    int error = SHOAL_OK;
    shoal_store_t *store = shoal_store_open (dir, NULL, &error);
    snprintf (message, size, "%s", shoal_store_open_error ());
    if (store) {
        shoal_store_close (&store);
        return SHOAL_OK;
    }
    diag ("open failed as expected: %s", message);
    return error;
}

//  --------------------------------------------------------------------------

static void
test_node_id (void)
{
    char dir[4200], path[4300], message[1024];
    s_tmp (dir, sizeof dir, "node");
    snprintf (path, sizeof path, "%s/node.id", dir);
    int error = -1;
    shoal_store_t *store = shoal_store_open (dir, NULL, &error);
    ok (store && error == SHOAL_OK, "open makes a new data directory");
    if (!store)
        bail ("cannot go on: %s", shoal_store_open_error ());
    is_str (shoal_store_dir (store), dir, "the store keeps its directory");
    uint8_t id[SHOAL_ID_SIZE];
    memcpy (id, shoal_store_node_id (store), SHOAL_ID_SIZE);
    static const uint8_t zero[SHOAL_ID_SIZE];
    ok (memcmp (id, zero, SHOAL_ID_SIZE) != 0, "the node id is 16 random bytes, not zeros");
    ok (!shoal_store_open (NULL, NULL, &error) && error == SHOAL_ERR_INVALID
            && !shoal_store_open ("", NULL, &error) && error == SHOAL_ERR_INVALID,
        "a missing or empty directory name is INVALID");
    shoal_store_close (&store);
    ok (store == NULL, "close nulls the pointer");
    shoal_store_close (&store);

    size_t size;
    char *text = s_read (path, &size);
    char hex[2 * SHOAL_ID_SIZE + 1];
    shoal_id_to_hex (id, hex);
    ok (text && strstr (text, hex) && strlen (hex) == 32, "node.id holds the 16-byte id in hex");

    store = s_open (dir, NULL);
    is_mem (shoal_store_node_id (store), id, SHOAL_ID_SIZE,
            "the node id is identical after reopen");
    shoal_store_close (&store);
    size_t again_size;
    char *again = s_read (path, &again_size);
    ok (again && again_size == size && memcmp (again, text, size) == 0,
        "reopening never rewrites node.id");
    free (again);

    char other[4200];
    store = s_open (s_tmp (other, sizeof other, "node-other"), NULL);
    ok (memcmp (shoal_store_node_id (store), id, SHOAL_ID_SIZE) != 0,
        "another data directory gets another node id");
    shoal_store_close (&store);

    //  One changed hex digit: the checksum catches it.
    char *damaged = strdup (text);
    char *digit = strstr (damaged, hex);
    *digit = *digit == '0' ? '1' : '0';
    s_write (path, damaged, size);
    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_CORRUPT,
            "a node.id with one changed digit fails the open with CORRUPT");
    ok (strstr (message, path) != NULL, "the message names node.id");
    again = s_read (path, &again_size);
    ok (again && again_size == size && memcmp (again, damaged, size) == 0,
        "a damaged node.id is left untouched");
    free (again);

    s_write (path, text, size - 5);
    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_CORRUPT,
            "a truncated node.id fails the open with CORRUPT");
    s_write (path, "", 0);
    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_CORRUPT,
            "an empty node.id fails the open with CORRUPT");
    s_write (path, "shoal-node-id 2\nwhatever\n", 25);
    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_MISMATCH,
            "a node.id of another format version fails the open with MISMATCH");

    s_write (path, text, size);
    store = s_open (dir, NULL);
    is_mem (shoal_store_node_id (store), id, SHOAL_ID_SIZE,
            "once repaired the directory opens with its id (failed opens left no lock)");
    shoal_store_close (&store);
    free (damaged);
    free (text);
}

static void
test_lock (void)
{
    char dir[4200], path[4300], message[1024], pid[32];
    s_tmp (dir, sizeof dir, "lock");
    snprintf (path, sizeof path, "%s/LOCK", dir);
    snprintf (pid, sizeof pid, "%ld", (long) getpid ());
    shoal_store_t *first = s_open (dir, NULL);
    char *holder = s_read (path, NULL);
    ok (holder && atol (holder) == getpid (), "LOCK holds the pid of the holder");
    free (holder);

    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_LOCKED,
            "a second open of the directory in the same process fails with LOCKED");
    ok (strstr (message, dir) != NULL, "the LOCKED message names the directory");
    ok (strstr (message, pid) != NULL, "the LOCKED message names the pid holding the lock");

    //  The child inherits the parent's descriptors but opens its own: the
    //  lock is still the parent's, also after the failed open above closed
    //  its own descriptor of LOCK.
    fflush (stdout);
    pid_t child = fork ();
    if (child == 0) {
        int error = SHOAL_OK;
        shoal_store_t *store = shoal_store_open (dir, NULL, &error);
        _exit (store ? 99 : strstr (shoal_store_open_error (), pid) ? error : 98);
    }
    int status = 0;
    waitpid (child, &status, 0);
    ok (WIFEXITED (status) && WEXITSTATUS (status) == SHOAL_ERR_LOCKED,
        "a forked child cannot open the directory its parent holds (LOCKED, naming the pid)");
    if (!WIFEXITED (status) || WEXITSTATUS (status) != SHOAL_ERR_LOCKED)
        diag ("child status %d", status);

    shoal_store_close (&first);
    int error = -1;
    shoal_store_t *third = shoal_store_open (dir, NULL, &error);
    ok (third != NULL, "after close the directory opens again");
    shoal_store_close (&third);

    fflush (stdout);
    child = fork ();
    if (child == 0) {
        shoal_store_t *store = shoal_store_open (dir, NULL, &error);
        int code = store ? 0 : 1;
        shoal_store_close (&store);
        _exit (code);
    }
    waitpid (child, &status, 0);
    ok (WIFEXITED (status) && WEXITSTATUS (status) == 0,
        "after close another process can open the directory");
}

//  Appends count records "<prefix>-<seq>" from the log's next seq.
static int
s_append (shoal_log_t *log, const char *prefix, uint64_t first, int count)
{
    int rc = 0;
    for (int i = 0; i < count; i++) {
        char data[64];
        uint64_t seq = shoal_log_head (log) ? shoal_log_head (log) + 1 : first;
        int size = snprintf (data, sizeof data, "%s-%llu", prefix, (unsigned long long) seq);
        rc |= shoal_log_append (log, seq, 1000 + (int64_t) seq, data, (size_t) size);
    }
    return rc;
}

//  True when seqs first..head of log read back as s_append wrote them.
static bool
s_contents_ok (shoal_log_t *log, const char *prefix, uint64_t first, uint64_t head)
{
    if (!log || shoal_log_first (log) != first || shoal_log_head (log) != head)
        return false;
    for (uint64_t seq = first; seq <= head; seq++) {
        char expected[64];
        int length =
            snprintf (expected, sizeof expected, "%s-%llu", prefix, (unsigned long long) seq);
        uint8_t *data = NULL;
        size_t size = 0;
        int64_t time_ns = 0;
        bool same = shoal_log_read (log, seq, &data, &size, &time_ns) == 0
                    && size == (size_t) length && memcmp (data, expected, size) == 0
                    && time_ns == 1000 + (int64_t) seq;
        free (data);
        if (!same)
            return false;
    }
    return true;
}

static void
test_logs (void)
{
    char dir[4200], path[4400], message[1024];
    s_tmp (dir, sizeof dir, "logs");
    shoal_store_t *store = s_open (dir, NULL);
    uint8_t self_id[SHOAL_ID_SIZE];
    memcpy (self_id, shoal_store_node_id (store), SHOAL_ID_SIZE);
    int error = -1;
    shoal_log_t *own = shoal_store_log (store, self_id, "orders", false, &error);
    ok (!own && error == SHOAL_ERR_NOT_FOUND, "without create a missing log is NOT_FOUND");
    own = shoal_store_log (store, self_id, "orders", true, &error);
    ok (own && error == SHOAL_OK, "create makes the node's own log");
    shoal_log_t *replica = shoal_store_log (store, s_origin_b, "sensors", true, &error);
    ok (replica && error == SHOAL_OK, "create makes a replica log of another origin");
    if (!own || !replica)
        bail ("cannot go on without logs: %s", shoal_log_open_error ());
    ok (shoal_store_log (store, self_id, "orders", true, &error) == own,
        "asking again gives the same log");
    ok (!shoal_store_log (store, self_id, "Bad Name", true, &error)
            && error == SHOAL_ERR_BAD_STREAM,
        "an invalid stream name is refused");
    is_int (shoal_store_log_count (store), 2, "the store holds two logs");

    ok (s_append (own, "order", 1, 3) == 0 && s_append (replica, "reading", 10, 2) == 0,
        "appends to the own log and the replica succeed");
    ok (shoal_store_deadline (store) >= 0, "buffered appends give the store a deadline");
    ok (shoal_store_flush_due (store) == 0, "flush_due succeeds");
    ok (shoal_store_flush (store) == 0, "flush succeeds");
    is_int (shoal_store_deadline (store), -1, "after flush nothing waits");
    ok (shoal_log_durable (own) == 3 && shoal_log_durable (replica) == 11,
        "after flush every log is durable to its head");
    ok (shoal_store_log (store, self_id, "empty", true, &error) != NULL, "an empty log is made");
    shoal_store_close (&store);

    store = s_open (dir, NULL);
    is_int (shoal_store_log_count (store), 3, "reopen finds every log");
    own = shoal_store_log (store, self_id, "orders", false, &error);
    replica = shoal_store_log (store, s_origin_b, "sensors", false, &error);
    ok (s_contents_ok (own, "order", 1, 3), "the own log has its head and records after reopen");
    ok (s_contents_ok (replica, "reading", 10, 11),
        "the replica has its first seq, head and records after reopen");
    shoal_log_t *empty = shoal_store_log (store, self_id, "empty", false, &error);
    ok (empty && shoal_log_head (empty) == 0, "the empty log is found again, still empty");
    bool listed = true;
    for (size_t index = 0; index < shoal_store_log_count (store); index++) {
        shoal_log_t *log = shoal_store_log_at (store, index);
        listed &= log == own || log == replica || log == empty;
    }
    ok (listed && shoal_store_log_at (store, 3) == NULL, "log_at lists exactly the logs held");
    shoal_store_close (&store);

    //  Anything misnamed under logs/ is refused, naming the path.
    const char *strays[] = {"logs/not-an-origin", "logs/A0A1A2A3A4A5A6A7A8A9AAABACADAEAF",
                            "logs/0b1b2b3b4b5b6b7b8b9babbbcbdbebfb/Bad_Stream"};
    for (size_t index = 0; index < 3; index++) {
        snprintf (path, sizeof path, "%s/%s", dir, strays[index]);
        mkdir (path, 0755);
        is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_CORRUPT,
                "a stray %s fails the open with CORRUPT", strays[index]);
        ok (strstr (message, path) != NULL, "the message names %s", strays[index]);
        rmdir (path);
    }
    snprintf (path, sizeof path, "%s/logs/stray-file", dir);
    s_write (path, "x", 1);
    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_CORRUPT,
            "a plain file in logs/ fails the open with CORRUPT");
    unlink (path);
    store = s_open (dir, NULL);
    is_int (shoal_store_log_count (store), 3, "with the strays gone the store opens");
    shoal_store_close (&store);
}

static void
test_cursors (void)
{
    char dir[4200], path[4400], message[1024];
    s_tmp (dir, sizeof dir, "cursors");
    snprintf (path, sizeof path, "%s/consumers/audit.cursors", dir);
    shoal_store_t *store = s_open (dir, NULL);
    ok (!shoal_store_cursors_dirty (store), "a new store has nothing to write");
    is_int (shoal_store_cursor_set (store, "audit", s_origin_a, "orders", 5), 0,
            "cursor_set accepts a valid consumer");
    is_int (shoal_store_cursor (store, "audit", s_origin_a, "orders"), 5, "the cursor reads back");
    ok (shoal_store_cursors_dirty (store), "a moved cursor makes the store dirty");
    ok (!s_exists (path), "cursor_set alone writes no file");
    shoal_store_cursor_set (store, "audit", s_origin_a, "orders", 3);
    is_int (shoal_store_cursor (store, "audit", s_origin_a, "orders"), 5,
            "a lower seq never moves a cursor backwards");
    shoal_store_cursor_set (store, "audit", s_origin_a, "orders", 7);
    is_int (shoal_store_cursor (store, "audit", s_origin_a, "orders"), 7,
            "a higher seq moves it forward");
    shoal_store_cursor_set (store, "audit", s_origin_b, "sensors", 42);
    is_int (shoal_store_cursor (store, "audit", s_origin_a, "sensors"), 0,
            "(origin, stream) pairs are separate cursors");
    is_int (shoal_store_cursor (store, "nobody", s_origin_a, "orders"), 0,
            "an unknown consumer has cursor 0");
    ok (shoal_store_cursors_flush (store) == 0 && !shoal_store_cursors_dirty (store),
        "flush succeeds and clears the dirty flag");
    ok (s_exists (path), "flush writes consumers/<name>.cursors");
    shoal_store_cursor_set (store, "audit", s_origin_a, "orders", 6);
    ok (!shoal_store_cursors_dirty (store),
        "a cursor_set that moves nothing leaves nothing to write");
    shoal_store_close (&store);

    store = s_open (dir, NULL);
    ok (shoal_store_cursor (store, "audit", s_origin_a, "orders") == 7
            && shoal_store_cursor (store, "audit", s_origin_b, "sensors") == 42,
        "cursors are the same after reopen");
    ok (!shoal_store_cursors_dirty (store), "loaded cursors are not dirty");
    is_int (shoal_store_consumer_cursor_count (store, "audit"), 2, "the consumer has two cursors");
    uint8_t origin[SHOAL_ID_SIZE];
    const char *stream = NULL;
    uint64_t seq = 0;
    bool listed = shoal_store_consumer_cursor_at (store, "audit", 0, origin, &stream, &seq) == 0
                  && memcmp (origin, s_origin_b, SHOAL_ID_SIZE) == 0
                  && strcmp (stream, "sensors") == 0 && seq == 42
                  && shoal_store_consumer_cursor_at (store, "audit", 1, origin, &stream, &seq) == 0
                  && memcmp (origin, s_origin_a, SHOAL_ID_SIZE) == 0
                  && strcmp (stream, "orders") == 0 && seq == 7;
    ok (listed, "cursor_at lists every cursor, sorted by origin then stream");
    is_int (shoal_store_consumer_cursor_at (store, "audit", 2, origin, &stream, &seq), -1,
            "cursor_at out of range is -1");

    //  Names
    char longest[66];
    memset (longest, 'n', 65);
    longest[65] = 0;
    const char *bad[] = {"", ".hidden", "-dash", "a/b", "a b", "../up", "tab\t", longest, NULL};
    bool refused = true;
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++)
        refused &= !shoal_consumer_name_valid (bad[index])
                   && shoal_store_cursor_set (store, bad[index], s_origin_a, "orders", 1) == -1;
    ok (refused, "invalid consumer names are refused by name_valid and cursor_set");
    longest[64] = 0;
    ok (shoal_consumer_name_valid (longest) && shoal_consumer_name_valid ("_a")
            && shoal_consumer_name_valid ("Billing.v2-eu_1"),
        "valid names pass, up to 64 characters");
    is_int (shoal_store_cursor_set (store, "audit", s_origin_a, "Bad Stream", 9), -1,
            "an invalid stream is refused");
    is_int (shoal_store_consumer_count (store), 1, "refused names made no consumer");

    const char *names[] = {"zeta", "alpha", "Mid", "_under"};
    for (size_t index = 0; index < 4; index++)
        shoal_store_cursor_set (store, names[index], s_origin_a, "orders", index + 1);
    const char *sorted[] = {"Mid", "_under", "alpha", "audit", "zeta"};
    bool in_order = shoal_store_consumer_count (store) == 5;
    for (size_t index = 0; in_order && index < 5; index++)
        in_order = strcmp (shoal_store_consumer_name (store, index), sorted[index]) == 0;
    ok (in_order, "consumers are listed sorted by name");
    ok (shoal_store_consumer_name (store, 5) == NULL, "consumer_name out of range is NULL");
    shoal_store_cursors_flush (store);

    char alpha[4400];
    snprintf (alpha, sizeof alpha, "%s/consumers/alpha.cursors", dir);
    ok (s_exists (alpha), "every consumer has its file");
    is_int (shoal_store_consumer_delete (store, "alpha"), 0, "delete succeeds");
    ok (!s_exists (alpha), "delete removes the consumer's file");
    is_int (shoal_store_consumer_count (store), 4, "delete removes the consumer from the list");
    is_int (shoal_store_consumer_delete (store, "alpha"), -1, "deleting it again is -1");
    shoal_store_cursor_set (store, "fresh", s_origin_a, "orders", 1);
    is_int (shoal_store_consumer_delete (store, "fresh"), 0,
            "a consumer never flushed can be deleted");
    shoal_store_close (&store);
    store = s_open (dir, NULL);
    ok (shoal_store_consumer_count (store) == 4
            && shoal_store_cursor (store, "alpha", s_origin_a, "orders") == 0
            && shoal_store_cursor (store, "zeta", s_origin_a, "orders") == 1,
        "a deleted consumer stays deleted after reopen");
    shoal_store_close (&store);

    //  Damage is reported, naming the file, and the file is left alone.
    size_t size;
    char *text = s_read (path, &size);
    char *damaged = strdup (text);
    char *digit = strstr (damaged, " 42\n");
    digit[1] = '5';
    s_write (path, damaged, size);
    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_CORRUPT,
            "a cursor file with a changed seq fails the open with CORRUPT");
    ok (strstr (message, path) != NULL, "the message names the cursor file");
    size_t again_size;
    char *again = s_read (path, &again_size);
    ok (again && again_size == size && memcmp (again, damaged, size) == 0,
        "a damaged cursor file is left untouched");
    free (again);
    s_write (path, text, size - 1);
    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_CORRUPT,
            "a truncated cursor file fails the open with CORRUPT");
    s_write (path, text, size);
    char renamed[4400];
    snprintf (renamed, sizeof renamed, "%s/consumers/other.cursors", dir);
    s_write (renamed, text, size);
    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_CORRUPT,
            "a cursor file under another consumer's name fails the open with CORRUPT");
    unlink (renamed);
    snprintf (renamed, sizeof renamed, "%s/consumers/notes.txt", dir);
    s_write (renamed, "hello\n", 6);
    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_CORRUPT,
            "a stray file in consumers/ fails the open with CORRUPT");
    unlink (renamed);
    store = s_open (dir, NULL);
    is_int (shoal_store_cursor (store, "audit", s_origin_b, "sensors"), 42,
            "with the file repaired the cursors are back");
    shoal_store_close (&store);
    free (damaged);
    free (text);
}

static size_t
s_file_size (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 ? (size_t) st.st_size : 0;
}

static void
test_batching (void)
{
    char dir[4200], one[4400], two[4400];
    s_tmp (dir, sizeof dir, "batch");
    snprintf (one, sizeof one, "%s/consumers/one.cursors", dir);
    snprintf (two, sizeof two, "%s/consumers/two.cursors", dir);
    shoal_io_t *io = shoal_io_faulty_new ();
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.io = io;
    shoal_store_t *store = s_open (dir, &config);
    for (int i = 0; i < 200; i++) {
        char stream[16];
        snprintf (stream, sizeof stream, "s%d", i % 5);
        shoal_store_cursor_set (store, i % 2 ? "one" : "two", i % 3 ? s_origin_a : s_origin_b,
                                stream, (uint64_t) i + 1);
    }
    uint64_t fsyncs = shoal_io_faulty_fsyncs (io);
    uint64_t bytes = shoal_io_faulty_bytes_written (io);
    ok (shoal_store_cursors_flush (store) == 0, "flush after 200 cursor moves succeeds");
    is_int (shoal_io_faulty_fsyncs (io) - fsyncs, 2,
            "200 moves of two consumers are written with one file write each");
    is_int (shoal_io_faulty_bytes_written (io) - bytes, s_file_size (one) + s_file_size (two),
            "the bytes written are exactly the two cursor files");
    fsyncs = shoal_io_faulty_fsyncs (io);
    bytes = shoal_io_faulty_bytes_written (io);
    shoal_store_cursors_flush (store);
    ok (shoal_io_faulty_fsyncs (io) == fsyncs && shoal_io_faulty_bytes_written (io) == bytes,
        "a flush with nothing changed writes nothing");
    shoal_store_cursor_set (store, "one", s_origin_a, "s1", 1000);
    shoal_store_cursors_flush (store);
    is_int (shoal_io_faulty_bytes_written (io) - bytes, s_file_size (one),
            "only the consumer that changed is rewritten");

    //  A failed write keeps the consumer dirty, and the file as it was.
    size_t size;
    char *before = s_read (one, &size);
    shoal_store_cursor_set (store, "one", s_origin_a, "s1", 2000);
    shoal_io_faulty_write_error (io, ENOSPC, 10);
    ok (shoal_store_cursors_flush (store) == -1, "a flush on a full disk fails");
    ok (shoal_store_cursors_dirty (store), "after a failed flush the cursors are still dirty");
    char *after = s_read (one, NULL);
    ok (before && after && strcmp (before, after) == 0, "the file keeps the old cursors");
    free (after);
    shoal_io_faulty_reset (io);
    shoal_io_faulty_fsync_error (io, EIO, 0);
    ok (shoal_store_cursors_flush (store) == -1 && shoal_store_cursors_dirty (store),
        "a failed fsync fails the flush and keeps the cursors dirty");
    shoal_io_faulty_reset (io);
    ok (shoal_store_cursors_flush (store) == 0 && !shoal_store_cursors_dirty (store),
        "the next flush writes them");
    shoal_store_close (&store);
    store = s_open (dir, NULL);
    is_int (shoal_store_cursor (store, "one", s_origin_a, "s1"), 2000,
            "the retried write is what a reopen finds");
    shoal_store_close (&store);
    free (before);

    //  A disk that fails at the first open: nothing is left locked or half made.
    char fresh[4200], message[1024];
    s_tmp (fresh, sizeof fresh, "batch-full");
    shoal_io_faulty_write_error (io, ENOSPC, 0);
    int error = -1;
    store = shoal_store_open (fresh, &config, &error);
    snprintf (message, sizeof message, "%s", shoal_store_open_error ());
    ok (!store && error == SHOAL_ERR_NOSPC, "a full disk at the first open fails with NOSPC");
    ok (strstr (message, fresh) != NULL, "the message names the path (%s)", message);
    shoal_io_faulty_reset (io);
    store = shoal_store_open (fresh, &config, &error);
    ok (store != NULL, "with space again the directory opens");
    shoal_store_close (&store);
    shoal_io_faulty_destroy (&io);
}

//  --------------------------------------------------------------------------
//  Crash at every byte of a cursor write, then power loss

static void
s_cursors_old (shoal_store_t *store)
{
    shoal_store_cursor_set (store, "c", s_origin_a, "orders", 10);
    shoal_store_cursor_set (store, "c", s_origin_b, "sensors", 20);
}

static void
s_cursors_new (shoal_store_t *store)
{
    shoal_store_cursor_set (store, "c", s_origin_a, "orders", 15);
    shoal_store_cursor_set (store, "c", s_origin_b, "sensors", 25);
    shoal_store_cursor_set (store, "c", s_origin_a, "payments", 3);
}

//  1 when the store holds exactly the old cursors, 2 the new ones, 0 otherwise.
static int
s_cursors_state (shoal_store_t *store)
{
    uint64_t orders = shoal_store_cursor (store, "c", s_origin_a, "orders");
    uint64_t sensors = shoal_store_cursor (store, "c", s_origin_b, "sensors");
    uint64_t payments = shoal_store_cursor (store, "c", s_origin_a, "payments");
    size_t count = shoal_store_consumer_cursor_count (store, "c");
    if (count == 2 && orders == 10 && sensors == 20 && payments == 0)
        return 1;
    if (count == 3 && orders == 15 && sensors == 25 && payments == 3)
        return 2;
    return 0;
}

static void
test_crash (void)
{
    char dir[4200], name[64];
    shoal_io_t *io = shoal_io_faulty_new ();
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.io = io;

    //  How many bytes the new state's write takes.
    shoal_store_t *store = s_open (s_tmp (dir, sizeof dir, "crash-size"), &config);
    s_cursors_old (store);
    shoal_store_cursors_flush (store);
    s_cursors_new (store);
    uint64_t before = shoal_io_faulty_bytes_written (io);
    shoal_store_cursors_flush (store);
    uint64_t size = shoal_io_faulty_bytes_written (io) - before;
    shoal_store_close (&store);
    ok (size > 0 && size < 1000, "a cursor write takes %llu bytes", (unsigned long long) size);

    //  A dying store complains on stderr at close; keep the test output clean.
    fflush (stderr);
    int saved_stderr = dup (2);
    int null = open ("/dev/null", O_WRONLY);
    dup2 (null, 2);
    close (null);
    int opened = 0, old_state = 0, new_state = 0, mixed = 0;
    for (uint64_t budget = 0; budget <= size; budget++) {
        snprintf (name, sizeof name, "crash-%llu", (unsigned long long) budget);
        s_tmp (dir, sizeof dir, name);
        store = s_open (dir, &config);
        s_cursors_old (store);
        shoal_store_cursors_flush (store);
        s_cursors_new (store);
        shoal_io_faulty_crash_after (io, budget);
        shoal_store_cursors_flush (store);
        shoal_store_close (&store);
        shoal_io_faulty_power_loss (io);

        int error = -1;
        store = shoal_store_open (dir, NULL, &error);
        if (store) {
            opened++;
            int state = s_cursors_state (store);
            old_state += state == 1;
            new_state += state == 2;
            mixed += state == 0;
            shoal_store_close (&store);
        }
    }
    fflush (stderr);
    dup2 (saved_stderr, 2);
    close (saved_stderr);
    is_int (opened, size + 1, "the store opens after a crash at every byte of a cursor write");
    is_int (mixed, 0, "every crash leaves the old or the new cursors, never a mix");
    ok (old_state > 0 && new_state > 0,
        "both outcomes occur: old before the commit (%d), new after (%d)", old_state, new_state);

    //  A temp file left by a write that never committed.
    char temp[4400];
    snprintf (temp, sizeof temp, "%s/consumers/c.cursors.tmp", s_tmp (dir, sizeof dir, "crash-0"));
    s_write (temp, "shoal-cursors 1\nconsumer c\ngarbage", 34);
    int error = -1;
    store = shoal_store_open (dir, NULL, &error);
    ok (store != NULL, "a leftover .tmp does not break open");
    ok (store && s_cursors_state (store) == 1, "the committed cursors are kept");
    ok (!s_exists (temp), "open removes the leftover .tmp");
    shoal_store_close (&store);
    shoal_io_faulty_destroy (&io);
}

static void
test_not_writable (void)
{
    char parent[4200], dir[4300], probe[4300], message[1024];
    s_tmp (parent, sizeof parent, "readonly");
    mkdir (parent, 0700);
    snprintf (dir, sizeof dir, "%s/data", parent);
    snprintf (probe, sizeof probe, "%s/probe", parent);
    chmod (parent, 0500);
    int fd = open (probe, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) {
        close (fd);
        unlink (probe);
        skip (4, "chmod 0500 does not stop this user's writes (running as root?)");
    }
    else {
        is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_IO,
                "a data directory that cannot be created fails with IO");
        ok (strstr (message, dir) && strstr (message, strerror (EACCES)),
            "the message names the path and the reason");
        chmod (parent, 0700);
        mkdir (dir, 0700);
        chmod (dir, 0500);
        is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_IO,
                "an existing data directory that is not writable fails with IO");
        ok (strstr (message, dir) && strstr (message, strerror (EACCES)),
            "the message names the directory and the reason");
        chmod (dir, 0700);
    }
    chmod (parent, 0700);

    //  Also as root: a data directory below a regular file.
    char file[4200];
    s_tmp (file, sizeof file, "plain-file");
    s_write (file, "x", 1);
    snprintf (dir, sizeof dir, "%s/data", file);
    is_int (s_open_fails (dir, message, sizeof message), SHOAL_ERR_IO,
            "a data directory below a regular file fails with IO");
    ok (strstr (message, dir) && strstr (message, strerror (ENOTDIR)),
        "the message names the path and the reason");
}

static void
test_retention (void)
{
    char dir[4200];
    s_tmp (dir, sizeof dir, "retention");
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.segment_size = 1024;
    shoal_store_t *store = s_open (dir, &config);
    int error;
    const uint8_t *self_id = shoal_store_node_id (store);
    shoal_log_t *orders = shoal_store_log (store, self_id, "orders", true, &error);
    shoal_log_t *keep = shoal_store_log (store, self_id, "keep", true, &error);
    shoal_log_t *replica = shoal_store_log (store, s_origin_b, "orders", true, &error);
    if (!orders || !keep || !replica)
        bail ("cannot make the logs: %s", shoal_log_open_error ());
    shoal_log_t *logs[] = {orders, keep, replica};
    char payload[100];
    memset (payload, 'p', sizeof payload);
    int rc = 0;
    for (size_t index = 0; index < 3; index++)
        for (uint64_t seq = 1; seq <= 60; seq++)
            rc |= shoal_log_append (logs[index], seq, (int64_t) seq, payload, sizeof payload);
    ok (rc == 0 && shoal_store_flush (store) == 0, "60 records appended to three logs");
    size_t segments[3];
    for (size_t index = 0; index < 3; index++)
        segments[index] = shoal_log_segments (logs[index]);
    ok (segments[0] > 3, "small segments make several (%zu)", segments[0]);

    is_int (shoal_store_apply_retention (store, shoal_time_ns ()), 0,
            "without retention settings nothing is dropped");
    shoal_store_set_retention (store, "*", 2048, 0);
    shoal_store_set_retention (store, "keep", 0, 0);
    shoal_store_set_retention (store, "Not Valid", 1, 1);
    int dropped = shoal_store_apply_retention (store, shoal_time_ns ());
    ok (dropped > 0, "apply_retention drops segments (%d)", dropped);
    ok (shoal_log_segments (orders) < segments[0] && shoal_log_size (orders) <= 2048,
        "the default setting trims the own log to its size");
    ok (shoal_log_first (orders) > 1 && shoal_log_head (orders) == 60,
        "the oldest records are gone, the head stays");
    ok (shoal_log_segments (replica) < segments[2] && shoal_log_first (replica) > 1,
        "retention applies to replicas alike");
    ok (shoal_log_segments (keep) == segments[1] && shoal_log_first (keep) == 1,
        "a stream's own setting overrides the default");
    is_int (dropped,
            (segments[0] - shoal_log_segments (orders))
                + (segments[2] - shoal_log_segments (replica)),
            "the count returned is the segments dropped");
    uint8_t *data = NULL;
    size_t size;
    int64_t time_ns;
    ok (shoal_log_read (orders, 1, &data, &size, &time_ns) == -1
            && shoal_log_error (orders) == SHOAL_ERR_TRIMMED,
        "a dropped record reads as TRIMMED");
    free (data);

    shoal_store_set_retention (store, "*", 0, 1);
    ok (shoal_store_apply_retention (store, 1000000) > 0 && shoal_log_segments (orders) == 1,
        "age retention keeps only the active segment when every record is old");
    shoal_store_close (&store);
}

//  The default data directory follows XDG, then HOME.
static void
test_default_dir (void)
{
    char *saved_xdg = getenv ("XDG_DATA_HOME") ? strdup (getenv ("XDG_DATA_HOME")) : NULL;
    char *saved_home = getenv ("HOME") ? strdup (getenv ("HOME")) : NULL;
    setenv ("XDG_DATA_HOME", "/srv/data", 1);
    char *dir = shoal_store_default_dir ();
    is_str (dir, "/srv/data/shoal", "default data dir: $XDG_DATA_HOME/shoal");
    free (dir);
    setenv ("XDG_DATA_HOME", "relative/path", 1);
    setenv ("HOME", "/home/ada", 1);
    dir = shoal_store_default_dir ();
    is_str (dir, "/home/ada/.local/share/shoal",
            "a relative XDG_DATA_HOME is ignored: ~/.local/share/shoal");
    free (dir);
    unsetenv ("XDG_DATA_HOME");
    dir = shoal_store_default_dir ();
    is_str (dir, "/home/ada/.local/share/shoal", "no XDG_DATA_HOME: ~/.local/share/shoal");
    free (dir);
    if (saved_xdg)
        setenv ("XDG_DATA_HOME", saved_xdg, 1);
    if (saved_home)
        setenv ("HOME", saved_home, 1);
    free (saved_xdg);
    free (saved_home);
}

int
main (void)
{
    plan_lazy ();
    test_node_id ();
    test_lock ();
    test_logs ();
    test_cursors ();
    test_batching ();
    test_crash ();
    test_not_writable ();
    test_retention ();
    test_default_dir ();
    return done_testing ();
}
