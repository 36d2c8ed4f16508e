/*  test_log - shoal_log: the durable log of one (origin, stream).

    Proves the contract of src/shoal_log.h against the byte layout and the
    numbered invariants drawn at the top of src/shoal_log.c: appends and
    reads, a crash torn at every byte of a record, power loss under the
    fsync policies (and that the checker would see a lost record), bit rot
    in sealed segments reported with file and offset and never served,
    ENOSPC and EIO on write and fsync, retention, index rebuild, thousands
    of segments, a clean reopen that reads no record, seek by time and the
    group-commit window. The faults come from shoal_io_faulty_new ().

    Environment: SHOAL_TEST_SEED fixes the seed of the bit flips (printed
    with diag); SHOAL_FUZZ_ITERATIONS (set by `make memcheck`) halves the
    power-loss runs and loosens the time bound of the thousands-of-segments
    check for valgrind; the crash-at-every-byte checks stay complete. */

#include "shoal_bytes.h"
#include "shoal_error.h"
#include "shoal_io.h"
#include "shoal_log.h"
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_SEG_HEADER 128 //  segment header bytes (layout in shoal_log.c)
#define S_FRAME 32       //  record frame header bytes
#define S_MAX_PAYLOAD 64 //  largest payload s_payload makes
#define S_STREAM "orders"
#define S_PATH_MAX 4400 //  room for a file path in a log directory (dirs are < 4300)

static const uint8_t s_origin[16] = {0x5a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                     0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};

static bool s_small;   //  running under valgrind (SHOAL_FUZZ_ITERATIONS set): smaller loops
static uint64_t s_rng; //  state of the seeded generator for bit flips

//  --------------------------------------------------------------------------
//  Deterministic records: every (salt, seq) has one payload and one time,
//  so any record read back can be compared with what was appended.

static uint64_t
s_mix (uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t
s_random (void)
{
    s_rng = s_mix (s_rng);
    return s_rng;
}

//  Payload of record seq in a log of this salt; returns its size (0..64).
static size_t
s_payload (uint64_t salt, uint64_t seq, uint8_t *buffer)
{
    uint64_t h = s_mix (salt * 1000003 + seq);
    size_t size = seq % 97 == 0 ? 0 : (size_t) (h % S_MAX_PAYLOAD) + 1;
    for (size_t i = 0; i < size; i++) {
        if (i % 8 == 0)
            h = s_mix (h);
        buffer[i] = (uint8_t) (h >> (8 * (i % 8)));
    }
    return size;
}

static int64_t
s_time (uint64_t seq)
{
    return 1700000000000000000LL + (int64_t) seq * 1000;
}

static int
s_append (shoal_log_t *log, uint64_t salt, uint64_t seq)
{
    uint8_t payload[S_MAX_PAYLOAD];
    size_t size = s_payload (salt, seq, payload);
    return shoal_log_append (log, seq, s_time (seq), payload, size);
}

//  Appends seqs from..to; the number of appends that failed.
static int
s_append_range (shoal_log_t *log, uint64_t salt, uint64_t from, uint64_t to)
{
    int failed = 0;
    for (uint64_t seq = from; seq <= to; seq++)
        if (s_append (log, salt, seq)) {
            if (failed++ == 0)
                diag ("append of seq %" PRIu64 " failed: %s", seq, shoal_log_error_text (log));
        }
    return failed;
}

//  Reads seq and compares bytes, size and time with what was appended.
//  0 when equal; 1 when different (why says how); -1 when the read failed.
static int
s_compare (shoal_log_t *log, uint64_t salt, uint64_t seq, char *why, size_t why_size)
{
    uint8_t expect[S_MAX_PAYLOAD];
    size_t expect_size = s_payload (salt, seq, expect);
    uint8_t *data = NULL;
    size_t size = 0;
    int64_t time_ns = 0;
    if (shoal_log_read (log, seq, &data, &size, &time_ns)) {
        snprintf (why, why_size, "read of seq %" PRIu64 " failed: %s (%s)", seq,
                  shoal_error_name (shoal_log_error (log)), shoal_log_error_text (log));
        return -1;
    }
    int rc = 0;
    if (size != expect_size)
        rc = snprintf (why, why_size, "seq %" PRIu64 ": size %zu, expected %zu", seq, size,
                       expect_size);
    else if (size && memcmp (data, expect, size) != 0)
        rc = snprintf (why, why_size, "seq %" PRIu64 ": payload bytes differ", seq);
    else if (time_ns != s_time (seq))
        rc = snprintf (why, why_size, "seq %" PRIu64 ": time %" PRId64 ", expected %" PRId64, seq,
                       time_ns, s_time (seq));
    free (data);
    return rc > 0 ? 1 : 0;
}

//  Reads seqs from..to; the number that failed or differed (first one in diag).
static uint64_t
s_check_range (shoal_log_t *log, uint64_t salt, uint64_t from, uint64_t to)
{
    uint64_t bad = 0;
    char why[700];
    for (uint64_t seq = from; seq <= to; seq++)
        if (s_compare (log, salt, seq, why, sizeof why) != 0 && bad++ == 0)
            diag ("%s", why);
    return bad;
}

//  Iterates from..to (to 0 = head) and checks every record and the order.
//  Returns the count of records seen, or -1 on a wrong record or error.
static int64_t
s_iterate (shoal_log_t *log, uint64_t salt, uint64_t from, uint64_t to)
{
    shoal_log_iter_t *iter = shoal_log_iter_new (log, from, to);
    if (!iter) {
        diag ("iter_new (%" PRIu64 ", %" PRIu64 ") failed: %s", from, to,
              shoal_log_error_text (log));
        return -1;
    }
    int64_t count = 0;
    uint64_t expect_seq = from;
    uint64_t seq;
    int64_t time_ns;
    const uint8_t *data;
    size_t size;
    int rc;
    while ((rc = shoal_log_iter_next (iter, &seq, &time_ns, &data, &size)) == 1) {
        uint8_t expect[S_MAX_PAYLOAD];
        size_t expect_size = s_payload (salt, seq, expect);
        if (seq != expect_seq || size != expect_size || (size && memcmp (data, expect, size))
            || time_ns != s_time (seq)) {
            diag ("iterator gave seq %" PRIu64 " (expected %" PRIu64 ") size %zu with wrong "
                  "content",
                  seq, expect_seq, size);
            count = -1;
            break;
        }
        expect_seq++;
        count++;
    }
    if (rc < 0) {
        diag ("iterator failed at seq %" PRIu64 ": %s", expect_seq, shoal_log_error_text (log));
        count = -1;
    }
    shoal_log_iter_destroy (&iter);
    return count;
}

//  --------------------------------------------------------------------------
//  Logs and files

static void
s_config (shoal_log_config_t *config, shoal_fsync_t policy, shoal_io_t *io)
{
    shoal_log_config_defaults (config);
    config->fsync = policy;
    if (io)
        config->io = io;
}

static shoal_log_t *
s_open (const char *dir, const shoal_log_config_t *config)
{
    int error = -1;
    shoal_log_t *log = shoal_log_open (dir, s_origin, S_STREAM, true, config, &error);
    if (!log)
        diag ("cannot open log %s: %s (%s)", dir, shoal_error_name (error),
              shoal_log_open_error ());
    return log;
}

//  Opens a log that the test needs in order to go on at all.
static shoal_log_t *
s_open_or_bail (const char *dir, const shoal_log_config_t *config)
{
    shoal_log_t *log = s_open (dir, config);
    if (!log)
        bail ("cannot open log %s: %s", dir, shoal_log_open_error ());
    return log;
}

//  A fresh directory path for one log of the test.
static void
s_dir (char *dir, size_t size, const char *name)
{
    snprintf (dir, size, "%s", tap_path (name));
}

static void
s_file (char *path, size_t size, const char *dir, uint64_t first_seq, const char *ext)
{
    snprintf (path, size, "%s/%020" PRIu64 ".%s", dir, first_seq, ext);
}

static int
s_compare_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

//  First seqs of the .seg files of dir, sorted; caller frees. Count in *count_p.
static uint64_t *
s_segments (const char *dir, size_t *count_p)
{
    DIR *handle = opendir (dir);
    if (!handle)
        bail ("cannot list %s: %s", dir, strerror (errno));
    size_t count = 0, alloc = 64;
    uint64_t *firsts = malloc (alloc * sizeof (uint64_t));
    struct dirent *entry;
    while (firsts && (entry = readdir (handle))) {
        size_t length = strlen (entry->d_name);
        if (length != 24 || strcmp (entry->d_name + 20, ".seg") != 0)
            continue;
        if (count == alloc)
            firsts = realloc (firsts, (alloc *= 2) * sizeof (uint64_t));
        if (firsts)
            firsts[count++] = strtoull (entry->d_name, NULL, 10);
    }
    closedir (handle);
    if (!firsts)
        bail ("out of memory");
    qsort (firsts, count, sizeof (uint64_t), s_compare_u64);
    *count_p = count;
    return firsts;
}

static int64_t
s_file_size (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 ? (int64_t) st.st_size : -1;
}

static bool
s_exists (const char *path)
{
    return access (path, F_OK) == 0;
}

static void
s_read_at (const char *path, int64_t offset, void *buffer, size_t size)
{
    int fd = open (path, O_RDONLY);
    if (fd < 0 || pread (fd, buffer, size, offset) != (ssize_t) size)
        bail ("cannot read %s at %" PRId64 ": %s", path, offset, strerror (errno));
    close (fd);
}

//  Overwrites bytes in place (the size of the file does not change).
static void
s_write_at (const char *path, int64_t offset, const void *buffer, size_t size)
{
    int fd = open (path, O_WRONLY);
    if (fd < 0 || pwrite (fd, buffer, size, offset) != (ssize_t) size)
        bail ("cannot write %s at %" PRId64 ": %s", path, offset, strerror (errno));
    close (fd);
}

static void
s_flip_bit (const char *path, int64_t offset, int bit)
{
    uint8_t byte;
    s_read_at (path, offset, &byte, 1);
    byte ^= (uint8_t) (1u << bit);
    s_write_at (path, offset, &byte, 1);
}

//  Does text name file (by its base name) and an offset?
static bool
s_names_file_and_offset (const char *text, const char *file)
{
    const char *base = strrchr (file, '/');
    base = base ? base + 1 : file;
    return text && strstr (text, base) && strstr (text, "offset");
}

//  --------------------------------------------------------------------------
//  1. Basics

static void
s_test_basics (void)
{
    diag ("basics: append, read, iterate, seq rules, empty logs");
    char dir[4300];
    s_dir (dir, sizeof dir, "basics");
    const uint64_t salt = 1, n = 200;
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    config.window_us = 10 * 1000 * 1000; //  nothing flushes by itself during the test

    int error = SHOAL_OK;
    shoal_log_t *log = shoal_log_open (dir, s_origin, S_STREAM, false, &config, &error);
    ok (log == NULL && error == SHOAL_ERR_NOT_FOUND,
        "opening a missing log without create fails with NOT_FOUND");
    shoal_log_close (&log);

    log = s_open_or_bail (dir, &config);
    ok (shoal_log_first (log) == 1 && shoal_log_head (log) == 0 && shoal_log_durable (log) == 0,
        "a new log has first 1, head 0, durable 0");
    is_str (shoal_log_stream (log), S_STREAM, "the log keeps its stream name");
    is_mem (shoal_log_origin (log), s_origin, 16, "the log keeps its origin");
    uint8_t *data = NULL;
    size_t size;
    ok (shoal_log_read (log, 1, &data, &size, NULL) == -1
            && shoal_log_error (log) == SHOAL_ERR_NOT_FOUND,
        "reading seq 1 of an empty log fails with NOT_FOUND");
    ok (shoal_log_append (log, 0, s_time (0), "x", 1) == -1
            && shoal_log_error (log) == SHOAL_ERR_INVALID && shoal_log_head (log) == 0,
        "seq 0 is refused with INVALID");

    int failed = 0;
    bool head_tracks = true;
    for (uint64_t seq = 1; seq <= n; seq++) {
        failed += s_append (log, salt, seq) != 0;
        head_tracks &= shoal_log_head (log) == seq && shoal_log_durable (log) <= seq;
    }
    is_int (failed, 0, "%" PRIu64 " appends with seq = head + 1 succeed", n);
    ok (head_tracks, "head follows each append and durable never passes it");
    ok (shoal_log_first (log) == 1 && shoal_log_head (log) == n, "first 1, head %" PRIu64, n);
    ok (shoal_log_durable (log) < n,
        "under batch, records wait for the window (durable %" PRIu64 " < head)",
        shoal_log_durable (log));
    is_int (s_check_range (log, salt, 1, n), 0,
            "every record reads back with its bytes, size and time before a flush");
    is_int (shoal_log_flush (log), 0, "flush succeeds");
    is_int (shoal_log_durable (log), n, "after flush durable equals head");
    is_int (s_check_range (log, salt, 1, n), 0,
            "every record reads back with its bytes, size and time after a flush");

    //  Seq rules.
    uint8_t payload[S_MAX_PAYLOAD];
    size_t psize = s_payload (salt, n + 1, payload);
    ok (shoal_log_append (log, n + 2, s_time (n + 2), payload, psize) == -1
            && shoal_log_error (log) == SHOAL_ERR_INVALID,
        "append of head + 2 (a gap) is refused with INVALID");
    ok (shoal_log_append (log, n, s_time (n), payload, psize) == -1
            && shoal_log_error (log) == SHOAL_ERR_INVALID,
        "append of head again (a duplicate) is refused with INVALID");
    ok (shoal_log_append (log, 1, s_time (1), payload, psize) == -1
            && shoal_log_error (log) == SHOAL_ERR_INVALID,
        "append of an old seq is refused with INVALID");
    is_int (shoal_log_head (log), n, "refused appends leave the head alone");
    is_int (s_check_range (log, salt, n - 2, n), 0, "refused appends change no record");

    //  Reads out of range.
    data = NULL;
    ok (shoal_log_read (log, n + 1, &data, &size, NULL) == -1
            && shoal_log_error (log) == SHOAL_ERR_NOT_FOUND && data == NULL,
        "read above the head fails with NOT_FOUND");
    ok (shoal_log_read (log, UINT64_MAX, &data, &size, NULL) == -1
            && shoal_log_error (log) == SHOAL_ERR_NOT_FOUND,
        "read of seq 2^64-1 fails with NOT_FOUND");
    ok (shoal_log_read (log, 0, &data, &size, NULL) == -1
            && shoal_log_error (log) == SHOAL_ERR_TRIMMED,
        "read of seq 0, below first, fails with TRIMMED");

    //  Iterators.
    is_int (s_iterate (log, salt, 1, 0), n,
            "an iterator from 1 to 0 (the head) gives every record in order");
    is_int (s_iterate (log, salt, 10, 20), 11,
            "an iterator from 10 to 20 gives exactly 11 records");
    is_int (s_iterate (log, salt, n, n), 1, "an iterator over the last record gives it once");
    is_int (s_iterate (log, salt, n + 1, 0), 0, "an iterator from head + 1 gives nothing");
    is_int (s_iterate (log, salt, 50, n + 100), n - 49,
            "an iterator whose end is past the head stops at the head");
    {
        shoal_log_iter_t *iter = shoal_log_iter_new (log, n - 1, 0);
        uint64_t seq = 0, last = 0;
        const uint8_t *p;
        int64_t t;
        int got = 0;
        while (iter && shoal_log_iter_next (iter, &seq, &t, &p, &size) == 1)
            last = seq, got++;
        int end = iter ? shoal_log_iter_next (iter, &seq, &t, &p, &size) : -1;
        int appended = s_append (log, salt, n + 1);
        int more = iter ? shoal_log_iter_next (iter, &seq, &t, &p, &size) : -1;
        ok (got == 2 && last == n && end == 0 && appended == 0 && more == 1 && seq == n + 1,
            "an iterator to 0 sees a record appended after it reached the end");
        shoal_log_iter_destroy (&iter);
    }
    uint64_t head = shoal_log_head (log);

    //  Oversized records.
    shoal_log_close (&log);
    ok (log == NULL, "close nulls the pointer");
    shoal_log_close (&log);
    config.max_record = 40;
    log = s_open_or_bail (dir, &config);
    ok (shoal_log_head (log) == head && shoal_log_first (log) == 1,
        "a clean reopen keeps first and head");
    ok (shoal_log_durable (log) == head, "a reopened log is durable up to its head");
    is_int (s_check_range (log, salt, 1, head), 0, "every record survives a clean reopen");
    uint8_t big[S_MAX_PAYLOAD] = {0};
    ok (shoal_log_append (log, head + 1, s_time (head + 1), big, 41) == -1
            && shoal_log_error (log) == SHOAL_ERR_INVALID && shoal_log_head (log) == head,
        "a record one byte over max_record is refused with INVALID");
    ok (shoal_log_append (log, head + 1, s_time (head + 1), big, 40) == 0
            && shoal_log_head (log) == head + 1,
        "a record of exactly max_record is accepted");
    data = NULL;
    ok (shoal_log_read (log, head + 1, &data, &size, NULL) == 0 && size == 40 && data
            && memcmp (data, big, 40) == 0,
        "the max_record record reads back");
    free (data);
    ok (shoal_log_failed (log) == false, "refusals do not fail the log");
    shoal_log_close (&log);

    //  An empty log takes any first seq, for a replica.
    char replica[4300];
    s_dir (replica, sizeof replica, "replica");
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    log = s_open_or_bail (replica, &config);
    ok (shoal_log_first (log) == 1 && shoal_log_head (log) == 0,
        "a new replica log has first 1, head 0");
    is_int (s_append (log, salt, 500), 0, "an empty log accepts a first append at seq 500");
    ok (shoal_log_first (log) == 500 && shoal_log_head (log) == 500,
        "then first is 500 and head 500");
    ok (shoal_log_append (log, 502, s_time (502), "x", 1) == -1
            && shoal_log_error (log) == SHOAL_ERR_INVALID,
        "after that, seq must be head + 1 again");
    is_int (s_append_range (log, salt, 501, 520), 0, "appends 501..520 follow");
    data = NULL;
    ok (shoal_log_read (log, 499, &data, &size, NULL) == -1
            && shoal_log_error (log) == SHOAL_ERR_TRIMMED && data == NULL,
        "read below first (499) fails with TRIMMED");
    ok (shoal_log_read (log, 1, &data, &size, NULL) == -1
            && shoal_log_error (log) == SHOAL_ERR_TRIMMED,
        "read of seq 1 in a log that starts at 500 fails with TRIMMED");
    shoal_log_iter_t *iter = shoal_log_iter_new (log, 499, 0);
    ok (iter == NULL && shoal_log_error (log) == SHOAL_ERR_TRIMMED,
        "an iterator from below first is refused with TRIMMED");
    shoal_log_iter_destroy (&iter);
    is_int (s_iterate (log, salt, 500, 0), 21, "an iterator from 500 gives 500..520");
    shoal_log_close (&log);
    log = s_open_or_bail (replica, &config);
    ok (shoal_log_first (log) == 500 && shoal_log_head (log) == 520,
        "the replica log reopens with first 500 and head 520");
    is_int (s_check_range (log, salt, 500, 520), 0, "its records survive the reopen");
    shoal_log_close (&log);
}

//  --------------------------------------------------------------------------
//  2. A crash torn at every byte of the last record

//  One run: k whole records flushed, then the next record's write torn after
//  b bytes, the process dead, and a reopen with the real file system.
//  Returns a bit set of the properties that failed (diag says why).
enum {
    S_CRASH_REPORTED = 1,  //  the flush that crashed returned -1
    S_CRASH_HEAD = 2,      //  head after reopen
    S_CRASH_INTACT = 4,    //  the whole records are intact
    S_CRASH_RECOVERED = 8, //  recovered_bytes
    S_CRASH_APPEND = 16,   //  a further append works
    S_CRASH_SCANNED = 32,  //  the reopen scanned the last segment
    S_CRASH_OPEN = 64      //  the reopen succeeded
};

//  full is the bytes the append writes; cut is what recovery must remove
//  (the torn bytes, but a whole segment header stays).
static int
s_crash_once (const char *dir, uint64_t salt, uint64_t k, uint64_t b, uint64_t full, uint64_t cut)
{
    shoal_io_t *io = shoal_io_faulty_new ();
    if (!io)
        bail ("out of memory");
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, io);
    config.window_us = 10 * 1000 * 1000;
    shoal_log_t *log = s_open_or_bail (dir, &config);
    if (s_append_range (log, salt, 1, k) || shoal_log_flush (log) || shoal_log_durable (log) != k)
        bail ("cannot write the %" PRIu64 " records before the crash", k);
    shoal_io_faulty_crash_after (io, b);
    int failures = 0;
    int appended = s_append (log, salt, k + 1);
    int flushed = appended == 0 ? shoal_log_flush (log) : -1;
    bool torn = b < full;
    if (torn ? flushed != -1 : (appended != 0 || flushed != 0)) {
        failures |= S_CRASH_REPORTED;
        diag ("b=%" PRIu64 ": append %d, flush %d (%s)", b, appended, flushed,
              shoal_log_error_text (log));
    }
    shoal_log_close (&log); //  the io is dead by now (or dies writing the index)
    shoal_io_faulty_destroy (&io);

    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    log = s_open (dir, &config);
    if (!log)
        return failures | S_CRASH_OPEN;
    uint64_t expect_head = torn ? k : k + 1;
    if (shoal_log_head (log) != expect_head || shoal_log_durable (log) != expect_head) {
        failures |= S_CRASH_HEAD;
        diag ("b=%" PRIu64 ": head %" PRIu64 " durable %" PRIu64 ", expected %" PRIu64, b,
              shoal_log_head (log), shoal_log_durable (log), expect_head);
    }
    if (s_check_range (log, salt, 1, expect_head))
        failures |= S_CRASH_INTACT;
    uint64_t expect_cut = torn ? cut : 0;
    if (shoal_log_recovered_bytes (log) != expect_cut) {
        failures |= S_CRASH_RECOVERED;
        diag ("b=%" PRIu64 ": recovered_bytes %" PRIu64 ", expected %" PRIu64, b,
              shoal_log_recovered_bytes (log), expect_cut);
    }
    if (!shoal_log_was_scanned (log))
        failures |= S_CRASH_SCANNED;
    //  A further append (a different record at the same seq when it was torn).
    uint64_t next = shoal_log_head (log) + 1;
    if (s_append (log, salt + 1, next) || shoal_log_flush (log)
        || s_check_range (log, salt + 1, next, next) || s_check_range (log, salt, 1, next - 1)) {
        failures |= S_CRASH_APPEND;
        diag ("b=%" PRIu64 ": append after recovery failed: %s", b, shoal_log_error_text (log));
    }
    shoal_log_close (&log);
    //  And the repaired log reopens clean, with the new record.
    log = s_open (dir, &config);
    if (!log || shoal_log_head (log) != next || s_check_range (log, salt + 1, next, next)) {
        failures |= S_CRASH_APPEND;
        diag ("b=%" PRIu64 ": the log repaired and appended to does not reopen right", b);
    }
    shoal_log_close (&log);
    return failures;
}

//  Crashes at every byte of what appending seq k + 1 writes: its frame and
//  payload, and before them the segment header when k is 0 (the append
//  that creates the log's first segment).
static void
s_crash_every_byte (uint64_t salt, uint64_t k)
{
    uint8_t payload[S_MAX_PAYLOAD];
    uint64_t full = S_FRAME + s_payload (salt, k + 1, payload);
    if (full <= S_FRAME)
        bail ("the torn record should have a payload");
    uint64_t total = (k == 0 ? S_SEG_HEADER : 0) + full;
    int seen = 0;
    uint64_t runs = 0;
    for (uint64_t b = 0; b <= total; b++) {
        char name[64], dir[4300];
        snprintf (name, sizeof name, "crash-%" PRIu64 "-%03" PRIu64, k, b);
        s_dir (dir, sizeof dir, name);
        uint64_t cut = k == 0 && b >= S_SEG_HEADER ? b - S_SEG_HEADER : b;
        seen |= s_crash_once (dir, salt, k, b, total, cut);
        runs++;
    }
    const char *what = k ? "a record" : "a log's first segment header and record";
    diag ("%" PRIu64 " crash points over %" PRIu64 " bytes after %" PRIu64 " whole records", runs,
          total, k);
    ok (runs == total + 1 && !(seen & S_CRASH_OPEN),
        "the log reopens after a crash at each of the %" PRIu64 " byte offsets of %s", total + 1,
        what);
    ok (!(seen & S_CRASH_REPORTED), "the append or flush torn inside %s reports the failure", what);
    ok (!(seen & S_CRASH_HEAD),
        "after each crash inside %s the head is exactly the %" PRIu64 " whole records (%" PRIu64
        " when nothing was torn)",
        what, k, k + 1);
    ok (!(seen & S_CRASH_INTACT), "all whole records are intact after each crash inside %s", what);
    ok (!(seen & S_CRASH_RECOVERED),
        "recovered_bytes equals the bytes cut at every offset of %s (0 when none)", what);
    ok (!(seen & S_CRASH_SCANNED), "every reopen after a crash inside %s scanned the last segment",
        what);
    ok (!(seen & S_CRASH_APPEND),
        "after each crash inside %s a further append works and survives a reopen", what);
}

static void
s_test_crash_every_byte (void)
{
    diag ("crash at every byte offset of the last record");
    s_crash_every_byte (2, 9);
    diag ("crash at every byte offset of a new log's first segment and record");
    s_crash_every_byte (3, 0);
}

//  --------------------------------------------------------------------------
//  3. Power loss under `always` and `batch`

//  Kills the process behind log (its io dies on the next write, so close
//  cannot write or sync anything) and then drops every unsynced byte.
static void
s_power_loss (shoal_log_t **log_p, shoal_io_t *io)
{
    shoal_io_faulty_crash_after (io, 0);
    shoal_log_close (log_p);
    shoal_io_faulty_power_loss (io);
}

//  After a power loss: reopens dir with the real file system and counts the
//  records at or below durable that are missing or not intact. *rest_ok_p
//  tells whether the records above durable up to the head are intact too
//  and an append then works. -1 when the log does not open.
static int64_t
s_lost_durable (const char *dir, uint64_t salt, uint64_t durable, uint64_t *head_p, bool *rest_ok_p)
{
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    shoal_log_t *log = s_open (dir, &config);
    if (!log)
        return -1;
    uint64_t head = shoal_log_head (log);
    *head_p = head;
    *rest_ok_p = true;
    int64_t lost = 0;
    char why[700];
    for (uint64_t seq = 1; seq <= durable || seq <= head; seq++) {
        if (s_compare (log, salt, seq, why, sizeof why) != 0) {
            if (lost == 0 && *rest_ok_p)
                diag ("%s", why);
            if (seq <= durable)
                lost++;
            else
                *rest_ok_p = false;
        }
    }
    //  And the log takes appends again.
    if (s_append (log, salt, head + 1) || shoal_log_flush (log)
        || s_check_range (log, salt, head + 1, head + 1)) {
        diag ("append after the power loss failed: %s", shoal_log_error_text (log));
        *rest_ok_p = false;
    }
    shoal_log_close (&log);
    return lost;
}

static void
s_power_loss_policy (shoal_fsync_t policy, uint64_t salt, int records)
{
    const char *name = shoal_fsync_name (policy);
    char dir[4300], sub[64];
    snprintf (sub, sizeof sub, "power-%s", name);
    s_dir (dir, sizeof dir, sub);
    shoal_io_t *io = shoal_io_faulty_new ();
    shoal_log_config_t config;
    s_config (&config, policy, io);
    config.window_us = 500;
    config.segment_size = 8192; //  power loss around rolls too
    config.buffer_size = 4096;
    shoal_log_t *log = s_open_or_bail (dir, &config);
    uint64_t max_durable = 0;
    bool monotonic = true, always_durable = true, flush_catches_up = true;
    int waiting = 0, failed = 0;
    for (uint64_t seq = 1; seq <= (uint64_t) records; seq++) {
        failed += s_append (log, salt, seq) != 0;
        if (shoal_log_durable (log) < shoal_log_head (log))
            waiting++;
        if (policy == SHOAL_FSYNC_ALWAYS && shoal_log_durable (log) != seq)
            always_durable = false;
        if (seq % 3 == 0)
            failed += shoal_log_flush_due (log) != 0;
        if (seq % 50 == 0) {
            failed += shoal_log_flush (log) != 0;
            if (shoal_log_durable (log) != shoal_log_head (log))
                flush_catches_up = false;
        }
        uint64_t durable = shoal_log_durable (log);
        if (durable < max_durable || durable > shoal_log_head (log))
            monotonic = false;
        max_durable = durable > max_durable ? durable : max_durable;
    }
    is_int (failed, 0, "%s: %d appends and flushes succeed", name, records);
    ok (monotonic, "%s: durable never goes back and never passes the head", name);
    if (policy == SHOAL_FSYNC_ALWAYS)
        ok (always_durable, "%s: every append is durable when it returns", name);
    else {
        ok (waiting > 0, "%s: group commit: durable < head after %d of %d appends", name, waiting,
            records);
        ok (flush_catches_up, "%s: durable catches up with the head after shoal_log_flush", name);
    }
    uint64_t head_before = shoal_log_head (log);
    size_t segments = shoal_log_segments (log);
    diag ("%s: head %" PRIu64 ", highest durable seen %" PRIu64 ", %zu segments", name, head_before,
          max_durable, segments);
    s_power_loss (&log, io);
    shoal_io_faulty_destroy (&io);
    uint64_t head = 0;
    bool rest_ok = false;
    int64_t lost = s_lost_durable (dir, salt, max_durable, &head, &rest_ok);
    is_int (lost, 0,
            "%s: after power loss every record up to the durable watermark %" PRIu64
            " is present and intact",
            name, max_durable);
    ok (head >= max_durable && head <= head_before && rest_ok,
        "%s: after power loss the head (%" PRIu64 ") is between the durable watermark and the "
        "old head, every record to it intact, and appends work",
        name, head);
}

//  The checker has teeth: when fsyncs lie, records reported durable are
//  lost by a power loss, and s_lost_durable sees it.
static void
s_power_loss_teeth (void)
{
    const uint64_t salt = 6, honest = 100, liars = 100;
    char dir[4300];
    s_dir (dir, sizeof dir, "power-lying");
    shoal_io_t *io = shoal_io_faulty_new ();
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_ALWAYS, io);
    shoal_log_t *log = s_open_or_bail (dir, &config);
    int failed = s_append_range (log, salt, 1, honest);
    shoal_io_faulty_lose_fsyncs (io, true);
    failed += s_append_range (log, salt, honest + 1, honest + liars);
    uint64_t reported = shoal_log_durable (log);
    ok (failed == 0 && reported == honest + liars,
        "always with lost fsyncs: all %" PRIu64 " records were reported durable", honest + liars);
    s_power_loss (&log, io);
    shoal_io_faulty_destroy (&io);
    uint64_t head = 0;
    bool rest_ok = false;
    diag ("the checker should now report a lost record:");
    int64_t lost = s_lost_durable (dir, salt, reported, &head, &rest_ok);
    is_int (lost, (int64_t) liars,
            "the power-loss checker finds exactly the %" PRIu64
            " records whose fsync was lost missing",
            liars);
    is_int (head, honest, "the log comes back with the %" PRIu64 " records really synced", honest);
}

static void
s_test_power_loss (void)
{
    diag ("power loss under always and batch");
    int records = s_small ? 323 : 623; //  not a multiple of 50: some records are never flushed
    s_power_loss_policy (SHOAL_FSYNC_ALWAYS, 4, records);
    s_power_loss_policy (SHOAL_FSYNC_BATCH, 5, records);
    s_power_loss_teeth ();
}

//  --------------------------------------------------------------------------
//  4. Bit rot in sealed segments

//  Index of the segment (in firsts) that holds seq.
static size_t
s_segment_of (const uint64_t *firsts, size_t count, uint64_t seq)
{
    size_t i = 0;
    while (i + 1 < count && firsts[i + 1] <= seq)
        i++;
    return i;
}

//  The number after "offset " in text, or -1.
static int64_t
s_offset_in (const char *text)
{
    const char *at = text ? strstr (text, "offset ") : NULL;
    return at ? strtoll (at + 7, NULL, 10) : -1;
}

typedef struct {
    const char *dir;        //  log directory
    const uint64_t *firsts; //  its segments
    size_t count;           //  how many
    int *reported;          //  problems reported per segment
    int stray;              //  problems naming no segment, or a bad offset
} s_verify_t;

static void
s_verify_report (void *arg, const char *file, uint64_t offset, const char *problem)
{
    s_verify_t *self = (s_verify_t *) arg;
    for (size_t i = 0; i < self->count; i++) {
        char path[S_PATH_MAX];
        s_file (path, sizeof path, self->dir, self->firsts[i], "seg");
        if (file && strcmp (file, path) == 0) {
            if ((int64_t) offset >= s_file_size (path) || !problem || !*problem)
                self->stray++;
            self->reported[i]++;
            return;
        }
    }
    diag ("verify reported a problem in an unknown file %s: %s", file ? file : "(null)",
          problem ? problem : "");
    self->stray++;
}

//  Reads every record of a log whose segments in damaged[] were hit by bit
//  flips, and checks that each read gives the original record or fails
//  with CORRUPT naming its segment file and an offset inside it.
static void
s_check_rot (const char *dir, const char *when, uint64_t salt, uint64_t n, const uint64_t *firsts,
             size_t count, const bool *damaged)
{
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    shoal_log_t *log = s_open (dir, &config);
    if (!ok (log != NULL, "%s: a log with rotten sealed segments opens", when))
        return;
    ok (shoal_log_first (log) == 1 && shoal_log_head (log) == n,
        "%s: first and head are unchanged by the damage", when);
    uint64_t wrong_bytes = 0, bad_errors = 0, undamaged_failed = 0, failed = 0;
    uint64_t first_failed = 0;
    int *failed_in = calloc (count, sizeof (int));
    char why[700];
    for (uint64_t seq = 1; seq <= n; seq++) {
        size_t segment = s_segment_of (firsts, count, seq);
        int rc = s_compare (log, salt, seq, why, sizeof why);
        if (rc == 1) {
            if (wrong_bytes++ == 0)
                diag ("%s: DIFFERENT BYTES SERVED: %s", when, why);
            continue;
        }
        if (rc == 0)
            continue;
        failed++;
        first_failed = first_failed ? first_failed : seq;
        failed_in[segment]++;
        if (!damaged[segment] && undamaged_failed++ == 0)
            diag ("%s: undamaged segment failed: %s", when, why);
        char path[S_PATH_MAX];
        s_file (path, sizeof path, dir, firsts[segment], "seg");
        const char *text = shoal_log_error_text (log);
        int64_t offset = s_offset_in (text);
        if (shoal_log_error (log) != SHOAL_ERR_CORRUPT || !s_names_file_and_offset (text, path)
            || offset < 0 || offset >= s_file_size (path)) {
            if (bad_errors++ == 0)
                diag ("%s: seq %" PRIu64 ": error %s \"%s\" does not name %s and an offset in it",
                      when, seq, shoal_error_name (shoal_log_error (log)), text, path);
        }
    }
    int missed = 0;
    for (size_t i = 0; i < count; i++)
        if (damaged[i] && failed_in[i] == 0 && missed++ == 0)
            diag ("%s: no read failed in damaged segment %zu", when, i);
    diag ("%s: %" PRIu64 " of %" PRIu64 " reads failed", when, failed, n);
    is_int (wrong_bytes, 0, "%s: no read ever serves bytes different from what was appended", when);
    is_int (bad_errors, 0,
            "%s: every failed read is CORRUPT and its text names the segment file and an offset "
            "inside it",
            when);
    is_int (missed, 0, "%s: the damage in every damaged segment is detected by reading it", when);
    is_int (undamaged_failed, 0, "%s: every record of the undamaged segments reads fine", when);

    //  An iterator serves the records before the first damage, then stops.
    shoal_log_iter_t *iter = shoal_log_iter_new (log, 1, 0);
    uint64_t seq = 0, served = 0;
    int64_t time_ns;
    const uint8_t *data;
    size_t size;
    int rc;
    bool exact = true;
    while (iter && (rc = shoal_log_iter_next (iter, &seq, &time_ns, &data, &size)) == 1) {
        uint8_t expect[S_MAX_PAYLOAD];
        if (size != s_payload (salt, seq, expect) || (size && memcmp (data, expect, size)))
            exact = false;
        served++;
    }
    ok (iter && exact && rc == -1 && shoal_log_error (log) == SHOAL_ERR_CORRUPT
            && served + 1 == first_failed,
        "%s: an iterator serves exactly the %" PRIu64
        " records before the first damage, then fails with CORRUPT",
        when, first_failed ? first_failed - 1 : 0);
    shoal_log_iter_destroy (&iter);

    int *reported = calloc (count, sizeof (int));
    s_verify_t verify = {dir, firsts, count, reported, 0};
    int problems = shoal_log_verify (log, s_verify_report, &verify);
    int unreported = 0, false_alarms = 0;
    for (size_t i = 0; i < count; i++) {
        if (damaged[i] && reported[i] == 0)
            unreported++;
        if (!damaged[i] && reported[i] > 0)
            false_alarms++;
    }
    ok (problems >= 1, "%s: verify reports %d problems", when, problems);
    ok (unreported == 0 && verify.stray == 0,
        "%s: verify names every damaged segment file, with an offset inside it", when);
    is_int (false_alarms, 0, "%s: verify names no undamaged segment", when);
    free (reported);
    free (failed_in);
    //  The active segment is healthy, so the log still takes appends.
    ok (s_append (log, salt, n + 1) == 0 && shoal_log_flush (log) == 0
            && s_check_range (log, salt, n + 1, n + 1) == 0,
        "%s: the log still takes appends", when);
    shoal_log_close (&log);
}

//  Writes a log of n records in small segments and closes it cleanly.
static uint64_t *
s_small_segments_log (const char *dir, uint64_t salt, uint64_t n, uint64_t segment_size,
                      size_t *count_p)
{
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    config.segment_size = segment_size;
    config.index_interval = 512;
    shoal_log_t *log = s_open_or_bail (dir, &config);
    if (s_append_range (log, salt, 1, n) || shoal_log_flush (log))
        bail ("cannot write the log %s", dir);
    shoal_log_close (&log);
    return s_segments (dir, count_p);
}

static void
s_test_bit_rot (void)
{
    diag ("random bit flips in closed (non-last) segments");
    const uint64_t salt = 7, n = 500;
    char dir[4300];
    s_dir (dir, sizeof dir, "bitrot");
    size_t count;
    uint64_t *firsts = s_small_segments_log (dir, salt, n, 4096, &count);
    if (!ok (count >= 4, "a log of %" PRIu64 " records in 4 KiB segments has %zu segments", n,
             count)) {
        free (firsts);
        return;
    }
    //  Damage a random subset of the sealed segments, at least one, and
    //  leave at least one sealed segment whole.
    bool *damaged = calloc (count, sizeof (bool));
    size_t sealed = count - 1, hit = 0;
    for (size_t i = 0; i < sealed; i++)
        hit += damaged[i] = s_random () % 2;
    if (hit == 0)
        damaged[s_random () % sealed] = true;
    if (hit == sealed)
        damaged[s_random () % sealed] = false;
    for (size_t i = 0; i < sealed; i++) {
        if (!damaged[i])
            continue;
        char path[S_PATH_MAX];
        s_file (path, sizeof path, dir, firsts[i], "seg");
        int64_t size = s_file_size (path);
        int flips = 1 + (int) (s_random () % 4);
        for (int f = 0; f < flips; f++) {
            int64_t offset =
                S_SEG_HEADER + (int64_t) (s_random () % (uint64_t) (size - S_SEG_HEADER));
            int bit = (int) (s_random () % 8);
            s_flip_bit (path, offset, bit);
            diag ("flipped bit %d at offset %" PRId64 " of segment %zu (%020" PRIu64 ".seg)", bit,
                  offset, i, firsts[i]);
        }
    }
    s_check_rot (dir, "bit rot, indexes whole", salt, n, firsts, count, damaged);

    //  The same damage found by a scan: no index to trust. The appends of
    //  the first pass are in the last segment, which is not damaged.
    for (size_t i = 0; i < count; i++) {
        char path[S_PATH_MAX];
        s_file (path, sizeof path, dir, firsts[i], "idx");
        unlink (path);
    }
    free (firsts);
    firsts = s_segments (dir, &count);
    s_check_rot (dir, "bit rot, indexes deleted", salt, n + 1, firsts, count, damaged);
    free (damaged);
    free (firsts);
}

//  A byte of a segment header flipped: that segment cannot be read, the
//  others can.
static void
s_test_header_rot (void)
{
    diag ("a flipped byte in a segment header");
    const uint64_t salt = 8, n = 300;
    char dir[4300];
    s_dir (dir, sizeof dir, "header-rot");
    size_t count;
    uint64_t *firsts = s_small_segments_log (dir, salt, n, 4096, &count);
    if (count < 3)
        bail ("the header-rot log should have 3 segments or more, not %zu", count);
    size_t victim = 1;
    char path[S_PATH_MAX];
    s_file (path, sizeof path, dir, firsts[victim], "seg");
    uint8_t original[S_SEG_HEADER];
    s_read_at (path, 0, original, sizeof original);
    //  Magic, version, header size, origin, first seq, stream length and
    //  name, reserved zeros, checksum, and two random places.
    int64_t offsets[] = {0, 8, 12, 20, 32, 40, 41, 110, 125, -1, -1};
    int rounds = 0, bad_rounds = 0;
    for (size_t r = 0; r < sizeof offsets / sizeof offsets[0]; r++) {
        int64_t offset = offsets[r] >= 0 ? offsets[r] : (int64_t) (s_random () % S_SEG_HEADER);
        uint8_t byte = original[offset] ^ (uint8_t) (1 + s_random () % 255);
        s_write_at (path, offset, &byte, 1);
        shoal_log_config_t config;
        s_config (&config, SHOAL_FSYNC_BATCH, NULL);
        shoal_log_t *log = s_open (dir, &config);
        uint64_t wrong = 0, others_failed = 0, victim_served = 0;
        for (uint64_t seq = 1; log && seq <= n; seq++) {
            char why[700];
            int rc = s_compare (log, salt, seq, why, sizeof why);
            bool in_victim = s_segment_of (firsts, count, seq) == victim;
            int error = shoal_log_error (log);
            if (rc == 1)
                wrong++;
            else if (in_victim && rc == 0)
                victim_served++;
            else if (in_victim
                     && ((error != SHOAL_ERR_CORRUPT && error != SHOAL_ERR_MISMATCH)
                         || !strstr (shoal_log_error_text (log), path + strlen (dir) + 1)))
                victim_served++;
            else if (!in_victim && rc != 0)
                others_failed++;
        }
        rounds++;
        if (!log || wrong || others_failed || victim_served) {
            bad_rounds++;
            diag ("header byte %" PRId64 ": open %s, %" PRIu64 " wrong, %" PRIu64
                  " reads of the damaged segment not refused right, %" PRIu64
                  " reads elsewhere failed",
                  offset, log ? "ok" : shoal_log_open_error (), wrong, victim_served,
                  others_failed);
        }
        shoal_log_close (&log);
        s_write_at (path, 0, original, sizeof original);
    }
    is_int (bad_rounds, 0,
            "a flipped byte anywhere in a segment header (%d places) makes every read of that "
            "segment fail with CORRUPT or MISMATCH naming it, and every other read work",
            rounds);
    free (firsts);
}

//  --------------------------------------------------------------------------
//  4b. How far damage reaches (invariant 5)

//  Offset of seq's frame in the segment starting at first, by the layout.
static int64_t
s_frame_offset (uint64_t salt, uint64_t first, uint64_t seq)
{
    uint8_t payload[S_MAX_PAYLOAD];
    int64_t offset = S_SEG_HEADER;
    for (uint64_t at = first; at < seq; at++)
        offset += S_FRAME + (int64_t) s_payload (salt, at, payload);
    return offset;
}

//  The seq of the first index entry after seq in the index file idx (by the
//  layout in shoal_log.c), or 0 when there is none. Bails on a bad file.
static uint64_t
s_next_entry (const char *idx, uint64_t seq)
{
    int64_t size = s_file_size (idx);
    if (size < 48)
        bail ("no index %s", idx);
    uint8_t *index = malloc ((size_t) size);
    s_read_at (idx, 0, index, (size_t) size);
    uint64_t count = (uint64_t) index[12] | (uint64_t) index[13] << 8 | (uint64_t) index[14] << 16
                     | (uint64_t) index[15] << 24;
    if (memcmp (index, "SHOALIDX", 8) != 0 || (int64_t) (16 + 24 * count + 32) != size)
        bail ("the index %s does not have the documented layout", idx);
    uint64_t next = 0;
    for (uint64_t e = 0; e < count && !next; e++)
        if (shoal_get64 (index + 16 + 24 * e) > seq)
            next = shoal_get64 (index + 16 + 24 * e);
    free (index);
    return next;
}

//  Reads 1..n and returns how many reads differ from "fails exactly on
//  from..to" (and names the first). Wrong bytes always count.
static uint64_t
s_fails_exactly (shoal_log_t *log, uint64_t salt, uint64_t n, uint64_t from, uint64_t to)
{
    uint64_t off = 0;
    char why[700];
    for (uint64_t seq = 1; seq <= n; seq++) {
        int rc = s_compare (log, salt, seq, why, sizeof why);
        bool should_fail = seq >= from && seq <= to;
        bool right = should_fail ? rc == -1 && shoal_log_error (log) == SHOAL_ERR_CORRUPT : rc == 0;
        if (!right && off++ == 0)
            diag ("seq %" PRIu64 " %s: %s", seq, should_fail ? "should fail" : "should read",
                  rc ? why : "it read fine");
    }
    return off;
}

static void
s_test_damage_extent (void)
{
    diag ("how far one damaged record reaches, with and without its index");
    const uint64_t salt = 9, n = 400;
    char dir[4300];
    s_dir (dir, sizeof dir, "extent");
    size_t count;
    uint64_t *firsts = s_small_segments_log (dir, salt, n, 8192, &count);
    if (count < 2)
        bail ("the extent log should have 2 segments or more");
    char seg[S_PATH_MAX], idx[S_PATH_MAX];
    s_file (seg, sizeof seg, dir, firsts[0], "seg");
    s_file (idx, sizeof idx, dir, firsts[0], "idx");
    uint64_t last_of_first = firsts[1] - 1;
    //  The index entries of segment 0, from its file (layout in shoal_log.c).
    int64_t idx_size = s_file_size (idx);
    if (idx_size < 48)
        bail ("no index for the first segment");
    uint8_t *index = malloc ((size_t) idx_size);
    s_read_at (idx, 0, index, (size_t) idx_size);
    uint32_t entries = (uint32_t) index[12] | (uint32_t) index[13] << 8 | (uint32_t) index[14] << 16
                       | (uint32_t) index[15] << 24;
    if (memcmp (index, "SHOALIDX", 8) != 0
        || (int64_t) (16 + 24 * (uint64_t) entries + 32) != idx_size || entries < 3)
        bail ("the index of the first segment does not have the documented layout");
    //  A victim with a payload, one past an index entry, two or more before the next.
    uint64_t victim = 0, next_entry = 0;
    uint8_t payload[S_MAX_PAYLOAD];
    for (uint32_t e = 1; e + 1 < entries && !victim; e++) {
        uint64_t seq = shoal_get64 (index + 16 + 24 * e) + 1;
        uint64_t next = shoal_get64 (index + 16 + 24 * (e + 1));
        int64_t offset = (int64_t) shoal_get64 (index + 16 + 24 * e + 8);
        if (offset != s_frame_offset (salt, firsts[0], seq - 1))
            bail ("index entry %u does not point at its record's frame", e);
        if (next > seq + 1 && s_payload (salt, seq, payload) > 0)
            victim = seq, next_entry = next;
    }
    free (index);
    if (!victim)
        bail ("no victim record found");
    int64_t frame = s_frame_offset (salt, firsts[0], victim);
    diag ("victim seq %" PRIu64 " at offset %" PRId64 ", next index entry at seq %" PRIu64, victim,
          frame, next_entry);
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    config.index_interval = 512; //  as written, so a rebuilt index is as fine

    //  Payload damage: the frame's length is still good, only the record is lost.
    s_flip_bit (seg, frame + S_FRAME, 0);
    shoal_log_t *log = s_open_or_bail (dir, &config);
    is_int (s_fails_exactly (log, salt, n, victim, victim), 0,
            "with its index whole, a damaged payload spoils only its own record");
    shoal_log_close (&log);
    unlink (idx);
    log = s_open_or_bail (dir, &config);
    is_int (s_fails_exactly (log, salt, n, victim, victim), 0,
            "with its index deleted (found by a scan), a damaged payload in a sealed segment "
            "spoils only its own record");
    shoal_log_close (&log);
    s_flip_bit (seg, frame + S_FRAME, 0);
    log = s_open_or_bail (dir, &config);
    ok (s_exists (idx) && s_fails_exactly (log, salt, n, 1, 0) == 0,
        "repaired, the segment reads whole and its index is rebuilt");
    shoal_log_close (&log);

    //  Frame header damage: the length cannot be trusted, the records up to
    //  the next index entry are lost.
    next_entry = s_next_entry (idx, victim);
    if (next_entry <= victim + 1)
        bail ("the rebuilt index has no entry after the victim");
    s_flip_bit (seg, frame + 8, 2); //  in the seq field
    log = s_open_or_bail (dir, &config);
    is_int (s_fails_exactly (log, salt, n, victim, next_entry - 1), 0,
            "with its index whole, a damaged frame header spoils its records up to the next index "
            "entry, no more");
    shoal_log_close (&log);
    unlink (idx);
    log = s_open_or_bail (dir, &config);
    is_int (
        s_fails_exactly (log, salt, n, victim, last_of_first), 0,
        "with its index deleted, a damaged frame header spoils the rest of its segment, no more");
    shoal_log_close (&log);
    s_flip_bit (seg, frame + 8, 2);
    free (firsts);
}

//  --------------------------------------------------------------------------
//  5. ENOSPC and EIO on write and on fsync

static void
s_io_error_once (shoal_fsync_t policy, bool on_fsync, int err, uint64_t salt)
{
    const char *name = shoal_fsync_name (policy);
    char what[128], sub[64], dir[4300];
    snprintf (what, sizeof what, "%s on %s under %s", err == ENOSPC ? "ENOSPC" : "EIO",
              on_fsync ? "fsync" : "write", name);
    snprintf (sub, sizeof sub, "ioerr-%s-%s-%d", name, on_fsync ? "fsync" : "write", err);
    s_dir (dir, sizeof dir, sub);
    int code = err == ENOSPC ? SHOAL_ERR_NOSPC : SHOAL_ERR_IO;
    const uint64_t before = 100, after = 20;

    shoal_io_t *io = shoal_io_faulty_new ();
    shoal_log_config_t config;
    s_config (&config, policy, io);
    config.window_us = 10 * 1000 * 1000;
    shoal_log_t *log = s_open_or_bail (dir, &config);
    if (s_append_range (log, salt, 1, before) || shoal_log_flush (log))
        bail ("%s: cannot write the first records", what);
    uint64_t durable = shoal_log_durable (log);
    //  Writes fail 100 bytes on (inside the second record), or the next fsync fails.
    if (on_fsync)
        shoal_io_faulty_fsync_error (io, err, 0);
    else
        shoal_io_faulty_write_error (io, err, 100);
    //  durable is kept as the watermark seen just before the failing call.
    int rc = 0;
    for (uint64_t seq = before + 1; seq <= before + after && rc == 0; seq++)
        if ((rc = s_append (log, salt, seq)) == 0)
            durable = shoal_log_durable (log);
    bool append_failed = rc != 0;
    if (rc == 0)
        rc = shoal_log_flush (log);
    int error = shoal_log_error (log);
    char text[512];
    snprintf (text, sizeof text, "%s", shoal_log_error_text (log));
    if (policy == SHOAL_FSYNC_ALWAYS)
        ok (append_failed, "%s: the append whose sync fails returns -1", what);
    else
        ok (!append_failed && rc == -1, "%s: the flush returns -1", what);
    if (!ok (rc == -1 && error == code, "%s: the error is %s", what, shoal_error_name (code)))
        diag ("got %s: %s", shoal_error_name (error), text);
    if (!on_fsync) {
        char seg[S_PATH_MAX];
        s_file (seg, sizeof seg, dir, 1, "seg");
        is_int (s_file_size (seg), s_frame_offset (salt, 1, durable + 1),
                "%s: the torn write is cut back at once to the last whole record", what);
    }
    ok (strstr (text, ".seg") != NULL, "%s: the error text names the segment file", what);
    ok (shoal_log_failed (log), "%s: shoal_log_failed () is true", what);
    ok (shoal_log_durable (log) == durable,
        "%s: the failure does not move the durable watermark (%" PRIu64 ")", what,
        shoal_log_durable (log));
    uint64_t head = shoal_log_head (log);
    ok (s_append (log, salt, head + 1) == -1 && shoal_log_error (log) == SHOAL_ERR_FAILED
            && shoal_log_head (log) == head,
        "%s: a further append is refused with FAILED", what);
    ok (shoal_log_flush (log) == -1 && shoal_log_error (log) == SHOAL_ERR_FAILED,
        "%s: a further flush is refused with FAILED", what);
    ok (shoal_log_deadline (log) == -1, "%s: a failed log has no flush deadline", what);
    ok (s_check_range (log, salt, 1, durable) == 0,
        "%s: the durable records still read back from the failed log", what);
    shoal_log_close (&log);
    shoal_io_faulty_destroy (&io);

    s_config (&config, policy, NULL);
    log = s_open (dir, &config);
    if (!ok (log != NULL, "%s: the log reopens with the real file system", what))
        return;
    uint64_t reopened = shoal_log_head (log);
    ok (reopened >= durable && reopened <= head && s_check_range (log, salt, 1, reopened) == 0,
        "%s: reopened, the head %" PRIu64 " is at or past the durable %" PRIu64
        " and every record to it is intact",
        what, reopened, durable);
    ok (s_append_range (log, salt, reopened + 1, reopened + 10) == 0 && shoal_log_flush (log) == 0
            && shoal_log_durable (log) == reopened + 10 && !shoal_log_failed (log),
        "%s: reopened, appends work again", what);
    shoal_log_close (&log);
    log = s_open (dir, &config);
    ok (log && shoal_log_head (log) == reopened + 10
            && s_check_range (log, salt, 1, reopened + 10) == 0,
        "%s: and the log is whole after one more reopen", what);
    shoal_log_close (&log);
}

static void
s_test_io_errors (void)
{
    diag ("ENOSPC and EIO on write and on fsync");
    uint64_t salt = 20;
    shoal_fsync_t policies[] = {SHOAL_FSYNC_BATCH, SHOAL_FSYNC_ALWAYS};
    int errors[] = {ENOSPC, EIO};
    for (int p = 0; p < 2; p++)
        for (int on_fsync = 0; on_fsync < 2; on_fsync++)
            for (int e = 0; e < 2; e++)
                s_io_error_once (policies[p], on_fsync, errors[e], salt++);
}

//  --------------------------------------------------------------------------
//  6. Retention by size and by age

//  Checks a log after retention: first is the first seq of the oldest
//  segment file left, reads below it are TRIMMED, the rest read back.
static void
s_check_trimmed (shoal_log_t *log, const char *dir, const char *what, uint64_t salt,
                 uint64_t expect_first, uint64_t head)
{
    size_t count;
    uint64_t *firsts = s_segments (dir, &count);
    ok (shoal_log_first (log) == expect_first && count > 0 && firsts[0] == expect_first
            && shoal_log_segments (log) == count,
        "%s: first is %" PRIu64 " (got %" PRIu64 "), the oldest segment file left", what,
        expect_first, shoal_log_first (log));
    free (firsts);
    uint64_t trimmed_ok = 0;
    for (uint64_t seq = 1; seq < expect_first; seq++) {
        uint8_t *data = NULL;
        size_t size;
        if (shoal_log_read (log, seq, &data, &size, NULL) == -1
            && shoal_log_error (log) == SHOAL_ERR_TRIMMED && data == NULL)
            trimmed_ok++;
        free (data);
    }
    is_int (trimmed_ok, expect_first - 1, "%s: every read below first fails with TRIMMED", what);
    shoal_log_iter_t *iter = shoal_log_iter_new (log, expect_first - 1, 0);
    ok (expect_first == 1 || (iter == NULL && shoal_log_error (log) == SHOAL_ERR_TRIMMED),
        "%s: an iterator from below first is refused with TRIMMED", what);
    shoal_log_iter_destroy (&iter);
    ok (shoal_log_head (log) == head && s_check_range (log, salt, expect_first, head) == 0,
        "%s: head %" PRIu64 " kept and every record from first on reads back", what, head);
}

static void
s_test_retention (void)
{
    diag ("retention by size and by age");
    const uint64_t salt = 30, n = 400;
    char dir[4300];
    s_dir (dir, sizeof dir, "retain-size");
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    config.segment_size = 1024;
    shoal_log_t *log = s_open_or_bail (dir, &config);
    if (s_append_range (log, salt, 1, n) || shoal_log_flush (log))
        bail ("cannot write the retention log");
    is_int (shoal_log_apply_retention (log, 0), 0, "no retention configured: nothing is dropped");

    //  What retain_bytes must drop, from the segment files' sizes.
    size_t count;
    uint64_t *firsts = s_segments (dir, &count);
    uint64_t total = 0;
    int64_t *sizes = calloc (count, sizeof (int64_t));
    for (size_t i = 0; i < count; i++) {
        char path[S_PATH_MAX];
        s_file (path, sizeof path, dir, firsts[i], "seg");
        sizes[i] = s_file_size (path);
        total += (uint64_t) sizes[i];
    }
    ok (count >= 10 && shoal_log_size (log) == total,
        "shoal_log_size (%" PRIu64 ") is the bytes of the %zu segment files", total, count);
    uint64_t retain = total / 3;
    size_t drop = 0;
    for (uint64_t left = total; drop + 1 < count && left > retain; drop++)
        left -= (uint64_t) sizes[drop];
    shoal_log_set_retention (log, retain, 0);
    int dropped = shoal_log_apply_retention (log, 0);
    is_int (dropped, drop, "retain_bytes %" PRIu64 " drops the %zu oldest whole segments", retain,
            drop);
    ok (drop > 0 && shoal_log_size (log) <= retain
            && shoal_log_size (log) + (uint64_t) sizes[drop - 1] > retain,
        "the log is now within retain_bytes, and one segment fewer would not be");
    char path[S_PATH_MAX];
    s_file (path, sizeof path, dir, firsts[0], "seg");
    bool gone = !s_exists (path);
    s_file (path, sizeof path, dir, firsts[0], "idx");
    ok (gone && !s_exists (path), "a dropped segment's .seg and .idx files are removed");
    s_check_trimmed (log, dir, "size retention", salt, firsts[drop], n);
    is_int (shoal_log_apply_retention (log, 0), 0, "applying it again drops nothing");

    shoal_log_set_retention (log, 1, 0);
    dropped = shoal_log_apply_retention (log, 0);
    ok (dropped == (int) (count - drop - 1) && shoal_log_segments (log) == 1,
        "retain_bytes 1 drops all but the active segment, which is never dropped");
    uint64_t active_first = firsts[count - 1];
    s_check_trimmed (log, dir, "retain_bytes 1", salt, active_first, n);
    ok (s_append (log, salt, n + 1) == 0 && shoal_log_flush (log) == 0
            && s_check_range (log, salt, n + 1, n + 1) == 0,
        "the log takes appends after its old segments are dropped");
    shoal_log_close (&log);
    log = s_open_or_bail (dir, &config);
    s_check_trimmed (log, dir, "size retention, reopened", salt, active_first, n + 1);
    shoal_log_close (&log);
    free (firsts);
    free (sizes);

    //  By age: record seq has time s_time (seq); a segment goes when its
    //  newest record is older than now - age.
    s_dir (dir, sizeof dir, "retain-age");
    config.retain_age_ns = 0;
    log = s_open_or_bail (dir, &config);
    if (s_append_range (log, salt, 1, n) || shoal_log_flush (log))
        bail ("cannot write the age retention log");
    firsts = s_segments (dir, &count);
    const int64_t age = 50 * 1000; //  50 seqs' worth of time
    uint64_t cutoff_seq = n / 2;   //  records older than this one's time go
    int64_t now = s_time (cutoff_seq) + age;
    drop = 0;
    while (drop + 1 < count && s_time (firsts[drop + 1] - 1) < now - age)
        drop++;
    shoal_log_set_retention (log, 0, age);
    is_int (shoal_log_apply_retention (log, s_time (firsts[1] - 1) + age), 0,
            "a segment whose newest record is exactly retain_age old is kept");
    dropped = shoal_log_apply_retention (log, now);
    ok (drop > 0 && dropped == (int) drop,
        "retain_age drops the %zu oldest segments whose newest record is older than now - age",
        drop);
    s_check_trimmed (log, dir, "age retention", salt, firsts[drop], n);
    ok (shoal_log_seek_time (log, s_time (1)) == firsts[drop],
        "seek_time to a trimmed time gives the first seq held");
    is_int (shoal_log_apply_retention (log, now), 0,
            "applying it again with the same now drops nothing");
    shoal_log_close (&log);
    config.retain_age_ns = age; //  and from the config this time
    log = s_open_or_bail (dir, &config);
    s_check_trimmed (log, dir, "age retention, reopened", salt, firsts[drop], n);
    dropped = shoal_log_apply_retention (log, INT64_MAX / 2);
    ok (dropped == (int) (count - drop - 1) && shoal_log_segments (log) == 1
            && shoal_log_first (log) == firsts[count - 1],
        "a now far past every record drops all but the active segment");
    s_check_trimmed (log, dir, "age retention of all", salt, firsts[count - 1], n);
    shoal_log_close (&log);
    free (firsts);
}

//  --------------------------------------------------------------------------
//  7. Index rebuild

//  Is idx a whole index (layout in shoal_log.c) covering exactly seg?
static bool
s_index_valid (const char *idx, const char *seg)
{
    int64_t size = s_file_size (idx);
    if (size < 48)
        return false;
    uint8_t *index = malloc ((size_t) size);
    s_read_at (idx, 0, index, (size_t) size);
    uint64_t count = (uint64_t) index[12] | (uint64_t) index[13] << 8 | (uint64_t) index[14] << 16
                     | (uint64_t) index[15] << 24;
    bool valid = memcmp (index, "SHOALIDX", 8) == 0 && (int64_t) (16 + 24 * count + 32) == size
                 && (int64_t) shoal_get64 (index + 16 + 24 * count) == s_file_size (seg);
    free (index);
    return valid;
}

static void
s_test_index_rebuild (void)
{
    diag ("index rebuild");
    const uint64_t salt = 40, n = 300;
    char dir[4300];
    s_dir (dir, sizeof dir, "reindex");
    size_t count;
    uint64_t *firsts = s_small_segments_log (dir, salt, n, 2048, &count);
    if (count < 4)
        bail ("the reindex log should have 4 segments or more");
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    config.index_interval = 512;
    size_t victims[] = {1, count - 1}; //  a sealed segment and the active one
    for (int v = 0; v < 2; v++) {
        const char *which = v ? "the active segment" : "a sealed segment";
        char seg[S_PATH_MAX], idx[S_PATH_MAX];
        s_file (seg, sizeof seg, dir, firsts[victims[v]], "seg");
        s_file (idx, sizeof idx, dir, firsts[victims[v]], "idx");
        ok (s_index_valid (idx, seg), "%s has a whole index after a clean close", which);
        int64_t idx_size = s_file_size (idx);
        for (int mode = 0; mode < 3; mode++) {
            const char *how = mode == 0 ? "deleted" : mode == 1 ? "corrupt" : "truncated";
            if (mode > 0 && !s_exists (idx)) {
                ok (false, "the index of %s is there to be %s", which, how);
                continue;
            }
            if (mode == 0)
                unlink (idx);
            else if (mode == 1) {
                //  One flipped bit inside the first entry's offset.
                s_flip_bit (idx, 16 + 8, 3);
            }
            else if (truncate (idx, idx_size - 8) != 0)
                bail ("cannot truncate %s", idx);
            shoal_log_t *log = s_open (dir, &config);
            if (!ok (log != NULL, "the log opens with the index of %s %s", which, how))
                continue;
            ok (shoal_log_first (log) == 1 && shoal_log_head (log) == n,
                "index of %s %s: first and head are right", which, how);
            is_int (s_check_range (log, salt, 1, n), 0, "index of %s %s: every record reads back",
                    which, how);
            is_int (s_iterate (log, salt, 1, 0), n,
                    "index of %s %s: an iterator gives every record", which, how);
            if (v == 1)
                ok (shoal_log_was_scanned (log), "index of %s %s: the open scanned it", which, how);
            is_int (shoal_log_verify (log, NULL, NULL), 0,
                    "index of %s %s: verify finds no problem", which, how);
            if (v == 0)
                ok (s_index_valid (idx, seg), "index of %s %s: rebuilt by the open", which, how);
            shoal_log_close (&log);
            ok (s_index_valid (idx, seg), "index of %s %s: whole again after close", which, how);
        }
    }
    free (firsts);
}

//  Promise 7 at the log's door: a segment file named 0 cannot exist (seqs
//  start at 1). Opening a log that holds one is refused as CORRUPT, naming
//  the file, and leaves the file as it was.
static void
s_test_segment_named_zero (void)
{
    diag ("a segment named 0");
    char dir[4300], seg[S_PATH_MAX];
    s_dir (dir, sizeof dir, "segment-zero");
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    shoal_log_t *log = s_open_or_bail (dir, &config);
    shoal_log_close (&log);
    s_file (seg, sizeof seg, dir, 0, "seg");
    FILE *file = fopen (seg, "w");
    if (!file || fputs ("not a segment", file) < 0 || fclose (file))
        bail ("cannot write %s", seg);
    int error = 0;
    log = shoal_log_open (dir, s_origin, S_STREAM, true, &config, &error);
    ok (!log && error == SHOAL_ERR_CORRUPT,
        "a log holding a segment named 0 does not open: CORRUPT (%s)", shoal_error_name (error));
    ok (strstr (shoal_log_open_error (), "00000000000000000000.seg") != NULL,
        "and the reason names the file: %s", shoal_log_open_error ());
    is_int (s_file_size (seg), (long long) strlen ("not a segment"), "the file is left as it was");
    shoal_log_close (&log);
}

//  --------------------------------------------------------------------------
//  8. Thousands of segments

//  Building thousands of segments costs several fsyncs each; this test is
//  about their number, not durability, so the writer's io skips syncs.
static int
s_skip_fsync (shoal_io_t *io, int fd)
{
    (void) io;
    (void) fd;
    return 0;
}

static int
s_skip_sync_dir (shoal_io_t *io, const char *path)
{
    (void) io;
    (void) path;
    return 0;
}

static void
s_test_many_segments (void)
{
    diag ("thousands of segments");
    const uint64_t salt = 50, n = 2500;
    char dir[4300];
    s_dir (dir, sizeof dir, "many");
    shoal_io_t fast = *shoal_io_posix ();
    fast.fsync = s_skip_fsync;
    fast.sync_dir = s_skip_sync_dir;
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_NEVER, &fast);
    config.segment_size = S_SEG_HEADER + S_FRAME; //  the smallest: one record per segment
    double start = tap_now ();
    shoal_log_t *log = s_open_or_bail (dir, &config);
    int failed = s_append_range (log, salt, 1, n);
    ok (failed == 0 && shoal_log_segments (log) == n,
        "%" PRIu64 " records in the smallest segments make %zu segments", n,
        shoal_log_segments (log));
    shoal_log_close (&log);
    double built = tap_now () - start;

    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    config.segment_size = S_SEG_HEADER + S_FRAME;
    start = tap_now ();
    log = s_open (dir, &config);
    double opened = tap_now () - start;
    if (!ok (log != NULL, "a log of %" PRIu64 " segments reopens", n))
        return;
    size_t count;
    uint64_t *firsts = s_segments (dir, &count);
    ok (count >= 2000 && shoal_log_segments (log) == count && shoal_log_first (log) == 1
            && shoal_log_head (log) == n,
        "reopened: %zu segment files, first 1, head %" PRIu64, count, n);
    free (firsts);
    ok (!shoal_log_was_scanned (log), "reopened after a clean close without a scan");
    uint64_t picks[] = {1, 2, n / 2, n / 2 + 1, n - 1, n};
    uint64_t bad = 0;
    for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++)
        bad += s_check_range (log, salt, picks[i], picks[i]);
    is_int (bad, 0, "the first, middle and last records read back");
    start = tap_now ();
    is_int (s_iterate (log, salt, 1, 0), n, "an iterator crosses all %" PRIu64 " segments in order",
            n);
    double iterated = tap_now () - start;
    start = tap_now ();
    is_int (s_check_range (log, salt, 1, n), 0, "every record reads back by seq");
    double read = tap_now () - start;
    ok (s_append (log, salt, n + 1) == 0 && shoal_log_flush (log) == 0
            && shoal_log_segments (log) == n + 1,
        "an append rolls to segment %" PRIu64, n + 1);
    shoal_log_close (&log);
    diag ("build %.2f s, reopen %.3f s, iterate %.3f s, read all %.3f s", built, opened, iterated,
          read);
    double limit = s_small ? 30.0 : 5.0;
    ok (opened < limit && iterated < limit && read < limit,
        "reopen, iteration and reads of %" PRIu64 " segments each take under %.0f s", n, limit);
}

//  --------------------------------------------------------------------------
//  9. A clean reopen reads no record; an unclean one scans

static void
s_test_clean_reopen (void)
{
    diag ("reopening after a clean close does not read the data");
    const uint64_t salt = 60, n = 200;
    char dir[4300];
    s_dir (dir, sizeof dir, "clean");
    size_t count;
    uint64_t *firsts = s_small_segments_log (dir, salt, n, 4096, &count);
    char seg[S_PATH_MAX];
    s_file (seg, sizeof seg, dir, firsts[count - 1], "seg");
    free (firsts);
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    shoal_log_t *log = s_open_or_bail (dir, &config);
    ok (!shoal_log_was_scanned (log) && shoal_log_recovered_bytes (log) == 0,
        "a clean reopen does not scan and recovers nothing");
    shoal_log_close (&log);

    //  Garbage over the last record's payload, same length: a scan would
    //  cut it, a reopen that trusts the clean index does not look.
    uint8_t payload[S_MAX_PAYLOAD], garbage[S_MAX_PAYLOAD];
    size_t size = s_payload (salt, n, payload);
    if (size == 0)
        bail ("the last record should have a payload");
    for (size_t i = 0; i < size; i++)
        garbage[i] = (uint8_t) ~payload[i];
    int64_t seg_size = s_file_size (seg);
    s_write_at (seg, seg_size - (int64_t) size, garbage, size);
    ok (s_file_size (seg) == seg_size, "garbage of the same length leaves the segment size alone");
    log = s_open_or_bail (dir, &config);
    ok (!shoal_log_was_scanned (log),
        "after a clean close the reopen does not scan (was_scanned false)");
    is_int (shoal_log_head (log), n, "so the head is unchanged by the garbage");
    uint8_t *data = NULL;
    size_t got;
    ok (shoal_log_read (log, n, &data, &got, NULL) == -1
            && shoal_log_error (log) == SHOAL_ERR_CORRUPT
            && s_names_file_and_offset (shoal_log_error_text (log), seg),
        "the garbage record is not served: CORRUPT, naming the segment and an offset");
    free (data);
    is_int (s_check_range (log, salt, 1, n - 1), 0, "the records before it read back");
    shoal_log_close (&log);
    //  The same bytes with a stale index: now the open scans and cuts them.
    char idx[S_PATH_MAX];
    snprintf (idx, sizeof idx, "%.*sidx", (int) strlen (seg) - 3, seg);
    unlink (idx);
    log = s_open_or_bail (dir, &config);
    ok (shoal_log_was_scanned (log) && shoal_log_head (log) == n - 1
            && shoal_log_recovered_bytes (log) == S_FRAME + size,
        "with its index gone the open scans and cuts the bad last record (%" PRIu64 " bytes)",
        shoal_log_recovered_bytes (log));
    shoal_log_close (&log);

    //  A whole record with good checksums but the wrong seq after the last
    //  one (a copy of the one before it) breaks the seq chain: cut.
    s_dir (dir, sizeof dir, "wrong-seq");
    firsts = s_small_segments_log (dir, salt, 50, 64 * 1024, &count);
    free (firsts);
    s_file (seg, sizeof seg, dir, 1, "seg");
    int64_t copy_from = s_frame_offset (salt, 1, 49);
    size_t copy_size = (size_t) (s_frame_offset (salt, 1, 50) - copy_from);
    uint8_t copy[S_FRAME + S_MAX_PAYLOAD];
    s_read_at (seg, copy_from, copy, copy_size);
    s_write_at (seg, s_file_size (seg), copy, copy_size);
    log = s_open_or_bail (dir, &config);
    ok (shoal_log_was_scanned (log) && shoal_log_head (log) == 50
            && shoal_log_recovered_bytes (log) == copy_size
            && s_check_range (log, salt, 1, 50) == 0,
        "a whole record with valid checksums but the wrong seq at the tail is cut by recovery");
    ok (s_append (log, salt, 51) == 0 && shoal_log_flush (log) == 0
            && s_check_range (log, salt, 51, 51) == 0,
        "and the next append takes its place");
    shoal_log_close (&log);

    //  An unclean close: the process dies (crash_after (0)) before it can
    //  write the index at close.
    s_dir (dir, sizeof dir, "unclean");
    shoal_io_t *io = shoal_io_faulty_new ();
    s_config (&config, SHOAL_FSYNC_BATCH, io);
    log = s_open_or_bail (dir, &config);
    if (s_append_range (log, salt, 1, n) || shoal_log_flush (log))
        bail ("cannot write the unclean log");
    shoal_log_close (&log);
    log = s_open_or_bail (dir, &config); //  cleanly closed once; now an unclean session
    int failed = s_append_range (log, salt, n + 1, n + 10) + (shoal_log_flush (log) != 0);
    shoal_io_faulty_crash_after (io, 0);
    shoal_log_close (&log);
    shoal_io_faulty_destroy (&io);
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    log = s_open_or_bail (dir, &config);
    ok (failed == 0 && shoal_log_was_scanned (log),
        "after an unclean close (crash_after (0), then close) the reopen scans");
    ok (shoal_log_head (log) == n + 10 && shoal_log_recovered_bytes (log) == 0
            && s_check_range (log, salt, 1, n + 10) == 0,
        "and keeps every flushed record, cutting nothing");
    shoal_log_close (&log);
    log = s_open_or_bail (dir, &config);
    ok (!shoal_log_was_scanned (log), "after the repaired log is closed cleanly, no scan again");
    shoal_log_close (&log);
}

//  --------------------------------------------------------------------------
//  10. Seek by time, and the group-commit window

static int64_t
s_mono_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
s_sleep_until (int64_t mono_ns)
{
    int64_t now;
    while ((now = s_mono_ns ()) < mono_ns) {
        int64_t wait = mono_ns - now;
        struct timespec ts = {(time_t) (wait / 1000000000), (long) (wait % 1000000000)};
        nanosleep (&ts, NULL);
    }
}

//  Time of record seq in the seek log: three records share each time.
static int64_t
s_seek_time (uint64_t seq)
{
    return 1000000 + (int64_t) ((seq - 1) / 3) * 1000;
}

static void
s_test_seek_time (void)
{
    diag ("seek by time");
    const uint64_t salt = 70, n = 600;
    char dir[4300];
    s_dir (dir, sizeof dir, "seek");
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    config.segment_size = 4096;
    config.index_interval = 256;
    shoal_log_t *log = s_open_or_bail (dir, &config);
    is_int (shoal_log_seek_time (log, 0), 1, "seek_time in an empty log gives head + 1");
    int failed = 0;
    for (uint64_t seq = 1; seq <= n; seq++) {
        uint8_t payload[S_MAX_PAYLOAD];
        size_t size = s_payload (salt, seq, payload);
        failed += shoal_log_append (log, seq, s_seek_time (seq), payload, size) != 0;
    }
    is_int (failed, 0, "%" PRIu64 " records appended with times shared by three", n);
    for (int pass = 0; pass < 2; pass++) {
        const char *when = pass ? "after a reopen" : "before a flush";
        uint64_t wrong = 0;
        for (uint64_t seq = 1; seq <= n; seq++) {
            uint64_t first_of_time = seq - (seq - 1) % 3;
            uint64_t exact = shoal_log_seek_time (log, s_seek_time (seq));
            uint64_t before = shoal_log_seek_time (log, s_seek_time (seq) - 1);
            if (exact != first_of_time || before != first_of_time) {
                if (wrong++ == 0)
                    diag ("seek to the time of seq %" PRIu64 " gave %" PRIu64 " (and %" PRIu64
                          " for a ns earlier), expected %" PRIu64,
                          seq, exact, before, first_of_time);
            }
        }
        is_int (wrong, 0,
                "%s: seek_time gives the first seq whose time is >= the time asked, for every "
                "record",
                when);
        ok (shoal_log_seek_time (log, INT64_MIN) == 1 && shoal_log_seek_time (log, 0) == 1,
            "%s: seek_time before every record gives the first seq", when);
        ok (shoal_log_seek_time (log, s_seek_time (n) + 1) == n + 1
                && shoal_log_seek_time (log, INT64_MAX) == n + 1,
            "%s: seek_time after every record gives head + 1", when);
        shoal_log_close (&log);
        log = s_open_or_bail (dir, &config);
    }
    ok (shoal_log_segments (log) >= 5, "the seek log spans %zu segments", shoal_log_segments (log));
    shoal_log_close (&log);
}

static void
s_test_batch_window (void)
{
    diag ("the batch window");
    const uint64_t salt = 80;
    const int64_t window_us = 100 * 1000;
    char dir[4300];
    s_dir (dir, sizeof dir, "window");
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    config.window_us = window_us;
    shoal_log_t *log = s_open_or_bail (dir, &config);
    is_int (shoal_log_deadline (log), -1, "a new log has no deadline");
    is_int (shoal_log_flush_due (log), 0, "flush_due with nothing pending is a no-op");

    int64_t before = s_mono_ns ();
    int rc = s_append (log, salt, 1);
    int64_t after = s_mono_ns ();
    int64_t deadline = shoal_log_deadline (log);
    ok (rc == 0 && shoal_log_durable (log) == 0, "an append under batch waits for the window");
    ok (deadline >= before + window_us * 1000 && deadline <= after + window_us * 1000,
        "the deadline is the window after the first pending append (%+" PRId64 " ns from it)",
        deadline - before - window_us * 1000);
    rc = s_append (log, salt, 2);
    ok (rc == 0 && shoal_log_deadline (log) == deadline,
        "a second append does not move the deadline (it counts from the oldest)");
    rc = shoal_log_flush_due (log);
    int64_t called = s_mono_ns ();
    if (called < deadline)
        ok (rc == 0 && shoal_log_durable (log) == 0 && shoal_log_deadline (log) == deadline,
            "flush_due before the deadline does not flush");
    else
        skip (1, "the machine was too slow to call flush_due within the window");
    s_sleep_until (deadline);
    rc = shoal_log_flush_due (log);
    ok (rc == 0 && shoal_log_durable (log) == 2 && shoal_log_head (log) == 2,
        "flush_due once the window has passed makes the records durable");
    is_int (shoal_log_deadline (log), -1, "after the flush nothing is pending: deadline -1");

    //  Appends made after the window has passed flush by themselves, with no
    //  poll loop (the log may look at the clock only every few appends).
    uint64_t seq = 3;
    rc = s_append (log, salt, seq);
    deadline = shoal_log_deadline (log);
    ok (rc == 0 && deadline > 0 && shoal_log_durable (log) == 2, "a new append opens a new window");
    s_sleep_until (deadline);
    while (rc == 0 && shoal_log_durable (log) < seq && seq < 3 + 64)
        rc = s_append (log, salt, ++seq);
    ok (rc == 0 && shoal_log_durable (log) == seq && shoal_log_deadline (log) == -1,
        "appends made after the window has passed flush everything pending by themselves "
        "(after %" PRIu64 " of them, at most 64)",
        seq - 3);

    //  flush makes everything durable at once; under always nothing waits.
    rc = s_append (log, salt, ++seq);
    ok (rc == 0 && shoal_log_deadline (log) > 0 && shoal_log_flush (log) == 0
            && shoal_log_durable (log) == seq && shoal_log_deadline (log) == -1,
        "shoal_log_flush ends the window early");
    shoal_log_close (&log);
    config.fsync = SHOAL_FSYNC_ALWAYS;
    log = s_open_or_bail (dir, &config);
    rc = s_append (log, salt, ++seq);
    ok (rc == 0 && shoal_log_durable (log) == seq && shoal_log_deadline (log) == -1,
        "under always an append is durable at once and leaves no deadline");
    is_int (s_check_range (log, salt, 1, seq), 0, "the window's records read back");
    shoal_log_close (&log);

    //  A full buffer flushes without waiting for the window.
    s_dir (dir, sizeof dir, "window-full");
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    config.window_us = 60 * 1000 * 1000;
    config.buffer_size = 4096;
    log = s_open_or_bail (dir, &config);
    seq = 0;
    uint64_t bytes = 0;
    while (shoal_log_durable (log) == 0 && bytes <= 2 * config.buffer_size) {
        uint8_t payload[S_MAX_PAYLOAD];
        bytes += S_FRAME + s_payload (salt, ++seq, payload);
        rc |= s_append (log, salt, seq);
    }
    ok (rc == 0 && shoal_log_durable (log) > 0
            && bytes <= config.buffer_size + S_FRAME + S_MAX_PAYLOAD,
        "a full buffer is written and synced without waiting for the window (durable %" PRIu64
        " after %" PRIu64 " bytes in a %zu-byte buffer)",
        shoal_log_durable (log), bytes, config.buffer_size);
    shoal_log_close (&log);
}

//  Reset empties a log (a replica whose origin trimmed past it): no
//  segment left, and the next append may start anywhere.
static void
s_test_reset (void)
{
    diag ("reset: an emptied log starts again at any seq");
    char dir[4200];
    s_dir (dir, sizeof dir, "reset");
    shoal_log_config_t config;
    s_config (&config, SHOAL_FSYNC_BATCH, NULL);
    config.segment_size = 4096;
    shoal_log_t *log = s_open_or_bail (dir, &config);
    char payload[100] = "reset";
    for (uint64_t seq = 1; seq <= 200; seq++)
        shoal_log_append (log, seq, (int64_t) seq, payload, sizeof payload);
    shoal_log_flush (log);
    ok (shoal_log_segments (log) > 1, "several segments before the reset");
    is_int (shoal_log_reset (log), 0, "reset succeeds");
    ok (shoal_log_head (log) == 0 && shoal_log_segments (log) == 0 && shoal_log_size (log) == 0,
        "after reset: head 0, no segment, no bytes");
    uint8_t *data = NULL;
    size_t size = 0;
    ok (shoal_log_read (log, 100, &data, &size, NULL) == -1, "old seqs are gone");
    is_int (shoal_log_append (log, 5000, 5000, payload, sizeof payload), 0,
            "the next append may start at any seq");
    shoal_log_close (&log);
    log = s_open_or_bail (dir, &config);
    ok (shoal_log_first (log) == 5000 && shoal_log_head (log) == 5000,
        "reopened: the log holds 5000 only");
    ok (shoal_log_read (log, 5000, &data, &size, NULL) == 0 && size == sizeof payload,
        "and reads it back");
    free (data);
    shoal_log_close (&log);
}

int
main (void)
{
    plan_lazy ();
    s_small = getenv ("SHOAL_FUZZ_ITERATIONS") != NULL;
    const char *seed_env = getenv ("SHOAL_TEST_SEED");
    uint64_t seed = seed_env ? strtoull (seed_env, NULL, 0)
                             : (uint64_t) time (NULL) ^ ((uint64_t) getpid () << 16);
    seed &= 0xffffffffu;
    diag ("seed %" PRIu64 " (set SHOAL_TEST_SEED=%" PRIu64 " to repeat)", seed, seed);
    s_rng = seed;
    double start = tap_now ();

    s_test_basics ();
    s_test_crash_every_byte ();
    s_test_power_loss ();
    s_test_bit_rot ();
    s_test_header_rot ();
    s_test_damage_extent ();
    s_test_io_errors ();
    s_test_retention ();
    s_test_index_rebuild ();
    s_test_segment_named_zero ();
    s_test_many_segments ();
    s_test_clean_reopen ();
    s_test_seek_time ();
    s_test_batch_window ();
    s_test_reset ();

    diag ("total %.1f s", tap_now () - start);
    return done_testing ();
}
