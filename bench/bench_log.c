/*  bench_log - how fast shoal_log stores and reads, against the system calls
    under it.

    The machine a benchmark runs on is usually shared and noisy, so the
    absolute figures mean little. What means something is the ratio of the
    log to the raw system calls that do the same I/O, measured in the same
    run, interleaved (raw, log, raw, log, raw, log) and each taken as the
    median of its three runs:

    - append: records of 100 B and 1 KiB under each fsync policy. The raw
      side writes the same bytes (a 32-byte frame header plus the payload
      per record) in the log's write-buffer chunks, with fdatasync per
      chunk (batch), per record (always) or never;
    - scan: shoal_log_iter over every record, against read () of the same
      segment files; both warm in the page cache;
    - reopen: shoal_log_open of a 1 GiB log closed cleanly, and of one whose
      writer died without closing (a forked child), which scans the last
      segment.

    The log runs over a counting wrapper of the posix io table, so the
    report can say where its time goes (write, fdatasync, the rest). The
    goals are printed beside the figures; missing one is reported, not an
    error: the exit status is 0 unless something failed (1) or the command
    line is wrong (2).

    Every loop is bounded in count and time; the full run takes a minute or
    two. --quick shrinks every size so the whole program runs in a couple
    of seconds (a smoke test). Files go to a new directory under --dir,
    $TMPDIR or /tmp, removed at the end, also on error or interrupt. */

#include "shoal_crc.h"
#include "shoal_error.h"
#include "shoal_log.h"
#include "../tests/remove_tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_KIB 1024ULL
#define S_MIB (1024ULL * 1024)
#define S_GIB (1024ULL * 1024 * 1024)
#define S_FRAME 32                //  frame header of a record (shoal_log.c)
#define S_READ_BLOCK (256 * 1024) //  what the log's reader fetches at once
#define S_RUNS 5                  //  runs of each side, interleaved; medians are reported
#define S_DIRTY_RUNS 3            //  unclean reopens timed

//  Goals, printed beside the figures.
#define S_GOAL_BATCH_EVENTS 1000000.0
#define S_GOAL_BATCH_RATIO 0.8
#define S_GOAL_SCAN_EVENTS 3000000.0
#define S_GOAL_REOPEN_MS 100.0

//  Sizes of one run of the benchmark.
typedef struct {
    bool quick;              //  smoke-test sizes
    uint64_t append_bytes;   //  frame bytes per batch / never append run
    uint64_t always_events;  //  records per always append run
    double run_seconds;      //  time cap of one append run
    uint64_t scan_events;    //  records in the 100-byte scan log
    uint64_t reopen_bytes;   //  frame bytes in the reopen log
    uint64_t unclean_events; //  records the dying writer appends
    int reopen_runs;         //  clean reopens timed
} s_sizes_t;

//  What one timed run did.
typedef struct {
    double seconds;  //  wall time of the run
    uint64_t events; //  records written or read
    uint64_t bytes;  //  frame bytes written or read
    uint64_t writes; //  write calls
    uint64_t fsyncs; //  fdatasync calls
    double write_s;  //  seconds inside write calls
    double fsync_s;  //  seconds inside fdatasync calls
    bool capped;     //  stopped by the time cap, not the count
} s_run_t;

//  The medians of one interleaved comparison.
typedef struct {
    s_run_t log;      //  run of the log with the median rate
    s_run_t raw;      //  run of the raw calls with the median rate
    double ratio;     //  median over adjacent (raw, log) runs of log rate / raw rate
    double ratio_min; //  smallest of those ratios
    double ratio_max; //  largest of those ratios
} s_pair_t;

static char s_base[4096];                //  our directory, "" until made
static volatile sig_atomic_t s_stop = 0; //  a signal asked us to stop
static uint8_t s_origin[SHOAL_ID_SIZE] = {0x5b, 0xe1, 0x0c, 0x44, 0x19, 0x2a, 0x7e, 0x01,
                                          0x90, 0x33, 0xd2, 0x6f, 0x08, 0xaa, 0x51, 0xc7};
static volatile uint64_t s_sink; //  keeps the compiler from dropping reads

//  --------------------------------------------------------------------------
//  Helpers

static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int s_error (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

//  Prints an error and returns -1.
static int
s_error (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "bench_log: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
    return -1;
}

static void
s_on_signal (int signum)
{
    (void) signum;
    s_stop = 1;
}

//  A count with thousands separators, in one of a few rotating buffers.
static const char *
s_commas (double value)
{
    static char buffers[8][32];
    static int next = 0;
    char *out = buffers[next++ % 8];
    char digits[32];
    snprintf (digits, sizeof digits, "%.0f", value);
    size_t length = strlen (digits), o = 0;
    for (size_t i = 0; i < length; i++) {
        if (i > 0 && (length - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = 0;
    return out;
}

static void
s_cleanup (void)
{
    if (s_base[0])
        remove_tree (s_base);
    s_base[0] = 0;
}

//  A path in our directory, in a buffer of the caller's.
static const char *
s_path (char *buffer, size_t size, const char *name)
{
    snprintf (buffer, size, "%s/%s", s_base, name);
    return buffer;
}

//  Writes back every dirty page of our file system (untimed), so that a
//  run does not pay for the previous one's writeback.
static void
s_settle (void)
{
    int fd = open (s_base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        syncfs (fd);
        close (fd);
    }
}

static int
s_compare_doubles (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

//  The median of count values (count odd); sorts them.
static double
s_median (double *values, int count)
{
    qsort (values, (size_t) count, sizeof (double), s_compare_doubles);
    return values[count / 2];
}

static double
s_rate (const s_run_t *run)
{
    return run->seconds > 0 ? (double) run->events / run->seconds : 0;
}

//  The run whose rate is the median.
static s_run_t
s_median_run (const s_run_t runs[S_RUNS])
{
    double rates[S_RUNS];
    for (int i = 0; i < S_RUNS; i++)
        rates[i] = s_rate (&runs[i]);
    double median = s_median (rates, S_RUNS);
    for (int i = 0; i < S_RUNS; i++)
        if (s_rate (&runs[i]) == median)
            return runs[i];
    return runs[0];
}

//  Medians of interleaved runs, and the spread of the ratio of each log
//  run to the raw run next to it in time (the noise of a shared machine
//  hits both of them alike, so these ratios are steadier than the rates).
static void
s_pair_make (const s_run_t logs[S_RUNS], const s_run_t raws[S_RUNS], s_pair_t *pair)
{
    pair->log = s_median_run (logs);
    pair->raw = s_median_run (raws);
    double ratios[S_RUNS];
    for (int i = 0; i < S_RUNS; i++)
        ratios[i] = s_rate (&raws[i]) > 0 ? s_rate (&logs[i]) / s_rate (&raws[i]) : 0;
    pair->ratio = s_median (ratios, S_RUNS);
    pair->ratio_min = ratios[0];
    pair->ratio_max = ratios[S_RUNS - 1];
}

//  Fills buffer with bytes that do not compress to nothing.
static void
s_fill (uint8_t *buffer, size_t size)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buffer[i] = (uint8_t) x;
    }
}

//  --------------------------------------------------------------------------
//  A counting io: the posix table, timing its writes and fsyncs

static s_run_t s_counted; //  what the counting io saw since the last reset

static ssize_t
s_count_pwrite (shoal_io_t *io, int fd, const void *buffer, size_t size, off_t offset)
{
    (void) io;
    double start = s_now ();
    ssize_t rc = shoal_io_posix ()->pwrite (shoal_io_posix (), fd, buffer, size, offset);
    s_counted.write_s += s_now () - start;
    s_counted.writes++;
    return rc;
}

static int
s_count_fsync (shoal_io_t *io, int fd)
{
    (void) io;
    double start = s_now ();
    int rc = shoal_io_posix ()->fsync (shoal_io_posix (), fd);
    s_counted.fsync_s += s_now () - start;
    s_counted.fsyncs++;
    return rc;
}

//  A directory sync is an fsync too, and costs like one.
static int
s_count_sync_dir (shoal_io_t *io, const char *path)
{
    (void) io;
    double start = s_now ();
    int rc = shoal_io_posix ()->sync_dir (shoal_io_posix (), path);
    s_counted.fsync_s += s_now () - start;
    s_counted.fsyncs++;
    return rc;
}

static shoal_io_t *
s_counting_io (void)
{
    static shoal_io_t io;
    io = *shoal_io_posix ();
    io.pwrite = s_count_pwrite;
    io.fsync = s_count_fsync;
    io.sync_dir = s_count_sync_dir;
    return &io;
}

//  An io that discards what is written: the log's own CPU cost, alone.
static ssize_t
s_null_pwrite (shoal_io_t *io, int fd, const void *buffer, size_t size, off_t offset)
{
    (void) io;
    (void) fd;
    (void) buffer;
    (void) offset;
    return (ssize_t) size;
}

static int
s_null_fsync (shoal_io_t *io, int fd)
{
    (void) io;
    (void) fd;
    return 0;
}

static int
s_null_sync_dir (shoal_io_t *io, const char *path)
{
    (void) io;
    (void) path;
    return 0;
}

static shoal_io_t *
s_null_io (void)
{
    static shoal_io_t io;
    io = *shoal_io_posix ();
    io.pwrite = s_null_pwrite;
    io.fsync = s_null_fsync;
    io.sync_dir = s_null_sync_dir;
    return &io;
}

//  --------------------------------------------------------------------------
//  Append

static shoal_log_t *
s_log_open (const char *dir, shoal_fsync_t policy, bool create)
{
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.fsync = policy;
    config.io = s_counting_io ();
    int error = 0;
    shoal_log_t *log = shoal_log_open (dir, s_origin, "bench", create, &config, &error);
    if (!log)
        s_error ("cannot open a log in %s: %s (%s)", dir, shoal_log_open_error (),
                 shoal_error_name (error));
    return log;
}

//  Appends up to count records of payload_size bytes to a new log in dir,
//  then flushes; times both.
static int
s_append_log (const char *dir, shoal_fsync_t policy, size_t payload_size, const uint8_t *payload,
              uint64_t count, double cap, s_run_t *run)
{
    memset (run, 0, sizeof *run);
    remove_tree (dir);
    s_settle ();
    shoal_log_t *log = s_log_open (dir, policy, true);
    if (!log)
        return -1;
    memset (&s_counted, 0, sizeof s_counted);
    int64_t time_base = 1763800000000000000LL;
    double start = s_now ();
    double deadline = start + cap;
    uint64_t seq = 0;
    int rc = 0;
    while (seq < count) {
        if (shoal_log_append (log, seq + 1, time_base + (int64_t) seq, payload, payload_size)) {
            rc = s_error ("append of seq %llu failed: %s", (unsigned long long) (seq + 1),
                          shoal_log_error_text (log));
            break;
        }
        seq++;
        if ((seq & 255) == 0 && (s_now () > deadline || s_stop)) {
            run->capped = !s_stop && seq < count;
            break;
        }
    }
    if (rc == 0 && shoal_log_flush (log))
        rc = s_error ("flush failed: %s", shoal_log_error_text (log));
    double end = s_now ();
    if (rc == 0 && shoal_log_durable (log) != seq)
        rc = s_error ("after flush, durable is %llu, head %llu",
                      (unsigned long long) shoal_log_durable (log), (unsigned long long) seq);
    run->seconds = end - start;
    run->events = seq;
    run->bytes = seq * (S_FRAME + payload_size);
    run->writes = s_counted.writes;
    run->fsyncs = s_counted.fsyncs;
    run->write_s = s_counted.write_s;
    run->fsync_s = s_counted.fsync_s;
    shoal_log_close (&log);
    remove_tree (dir);
    return s_stop ? s_error ("interrupted") : rc;
}

//  Writes the same bytes as count records with plain pwrite and fdatasync:
//  chunks of whole records filling the log's buffer (batch, never) or one
//  record at a time (always), fdatasync after each chunk unless never.
static int
s_append_raw (const char *path, shoal_fsync_t policy, size_t payload_size, const uint8_t *chunk,
              size_t buffer_size, uint64_t count, double cap, s_run_t *run)
{
    unlink (path);
    s_settle ();
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return s_error ("cannot create %s: %s", path, strerror (errno));
    size_t frame = S_FRAME + payload_size;
    uint64_t per_chunk = policy == SHOAL_FSYNC_ALWAYS ? 1 : buffer_size / frame;
    memset (run, 0, sizeof *run);
    double start = s_now ();
    double deadline = start + cap;
    uint64_t done = 0;
    off_t offset = 0;
    int rc = 0;
    while (done < count) {
        uint64_t records = count - done < per_chunk ? count - done : per_chunk;
        size_t size = (size_t) (records * frame);
        double before = s_now ();
        ssize_t written = pwrite (fd, chunk, size, offset);
        double after = s_now ();
        run->write_s += after - before;
        run->writes++;
        if (written != (ssize_t) size) {
            rc = s_error ("write to %s: %s", path, written < 0 ? strerror (errno) : "short write");
            break;
        }
        offset += (off_t) size;
        if (policy != SHOAL_FSYNC_NEVER) {
            if (fdatasync (fd)) {
                rc = s_error ("fdatasync of %s: %s", path, strerror (errno));
                break;
            }
            run->fsync_s += s_now () - after;
            run->fsyncs++;
        }
        done += records;
        if (s_now () > deadline || s_stop) {
            run->capped = !s_stop && done < count;
            break;
        }
    }
    run->seconds = s_now () - start;
    run->events = done;
    run->bytes = done * frame;
    close (fd);
    unlink (path);
    return s_stop ? s_error ("interrupted") : rc;
}

//  Interleaves raw and log runs of one policy and payload size.
static int
s_append_compare (const s_sizes_t *sizes, shoal_fsync_t policy, size_t payload_size, s_pair_t *pair)
{
    shoal_log_config_t defaults;
    shoal_log_config_defaults (&defaults);
    size_t frame = S_FRAME + payload_size;
    uint64_t count =
        policy == SHOAL_FSYNC_ALWAYS ? sizes->always_events : sizes->append_bytes / frame;
    double cap = policy == SHOAL_FSYNC_ALWAYS ? (sizes->quick ? 1.0 : 2.0) : sizes->run_seconds;
    uint8_t *payload = (uint8_t *) malloc (payload_size);
    uint8_t *chunk = (uint8_t *) malloc (defaults.buffer_size + frame);
    if (!payload || !chunk) {
        free (payload);
        free (chunk);
        return s_error ("out of memory");
    }
    s_fill (payload, payload_size);
    s_fill (chunk, defaults.buffer_size + frame);
    char dir[4200], file[4200];
    s_path (dir, sizeof dir, "append-log");
    s_path (file, sizeof file, "append-raw");
    s_run_t logs[S_RUNS], raws[S_RUNS];
    memset (logs, 0, sizeof logs);
    memset (raws, 0, sizeof raws);
    int rc = 0;
    //  raw, log, log, raw, raw, log, ...: each pair adjacent, neither side always first.
    for (int i = 0; i < S_RUNS && rc == 0; i++) {
        for (int side = 0; side < 2 && rc == 0; side++) {
            if ((side == 0) == (i % 2 == 0))
                rc = s_append_raw (file, policy, payload_size, chunk, defaults.buffer_size, count,
                                   cap, &raws[i]);
            else
                rc = s_append_log (dir, policy, payload_size, payload, count, cap, &logs[i]);
        }
    }
    free (payload);
    free (chunk);
    if (rc == 0)
        s_pair_make (logs, raws, pair);
    return rc;
}

//  Nanoseconds per record of the log's CPU work, and of its main parts
//  measured alone: the two CRC32C (frame header, payload), the clock read
//  of every append, and the copy into the buffer.
typedef struct {
    double append_ns; //  shoal_log_append + flush over an io that discards
    double crc_ns;    //  shoal_crc32c of 28 bytes and of the payload
    double clock_ns;  //  one clock_gettime (CLOCK_MONOTONIC)
    double copy_ns;   //  memcpy of the payload into a 1 MiB buffer
} s_cpu_t;

static int
s_cpu_profile (const char *dir, size_t payload_size, uint64_t count, s_cpu_t *cpu)
{
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.fsync = SHOAL_FSYNC_NEVER;
    config.io = s_null_io ();
    remove_tree (dir);
    int error = 0;
    shoal_log_t *log = shoal_log_open (dir, s_origin, "bench", true, &config, &error);
    if (!log)
        return s_error ("cannot open a log in %s: %s", dir, shoal_log_open_error ());
    uint8_t *payload = (uint8_t *) malloc (payload_size);
    uint8_t *buffer = (uint8_t *) malloc (S_MIB + payload_size);
    if (!payload || !buffer) {
        free (payload);
        free (buffer);
        shoal_log_close (&log);
        return s_error ("out of memory");
    }
    s_fill (payload, payload_size);
    int rc = 0;
    double start = s_now ();
    for (uint64_t seq = 1; seq <= count && rc == 0; seq++)
        if (shoal_log_append (log, seq, (int64_t) seq, payload, payload_size))
            rc = s_error ("append failed: %s", shoal_log_error_text (log));
    if (rc == 0 && shoal_log_flush (log))
        rc = s_error ("flush failed: %s", shoal_log_error_text (log));
    cpu->append_ns = (s_now () - start) * 1e9 / (double) count;
    shoal_log_close (&log);
    remove_tree (dir);

    uint32_t crc = 0;
    start = s_now ();
    for (uint64_t i = 0; i < count; i++) {
        payload[0] = (uint8_t) i;
        crc += shoal_crc32c (0, payload, 28);
        crc += shoal_crc32c (0, payload, payload_size);
    }
    cpu->crc_ns = (s_now () - start) * 1e9 / (double) count;
    struct timespec ts;
    uint64_t sum = crc;
    start = s_now ();
    for (uint64_t i = 0; i < count; i++) {
        clock_gettime (CLOCK_MONOTONIC, &ts);
        sum += (uint64_t) ts.tv_nsec;
    }
    cpu->clock_ns = (s_now () - start) * 1e9 / (double) count;
    size_t at = 0;
    start = s_now ();
    for (uint64_t i = 0; i < count; i++) {
        memcpy (buffer + at, payload, payload_size);
        at = at + payload_size > S_MIB ? 0 : at + payload_size;
        sum += buffer[at];
    }
    cpu->copy_ns = (s_now () - start) * 1e9 / (double) count;
    s_sink += sum;
    free (payload);
    free (buffer);
    return rc;
}

//  --------------------------------------------------------------------------
//  Scan

//  Writes count records of payload_size bytes to a new log in dir under
//  policy never, flushes and closes it cleanly.
static int
s_build_log (const char *dir, size_t payload_size, uint64_t count, double cap)
{
    shoal_log_t *log = s_log_open (dir, SHOAL_FSYNC_NEVER, true);
    if (!log)
        return -1;
    uint8_t *payload = (uint8_t *) malloc (payload_size);
    if (!payload) {
        shoal_log_close (&log);
        return s_error ("out of memory");
    }
    s_fill (payload, payload_size);
    double deadline = s_now () + cap;
    int rc = 0;
    for (uint64_t seq = 1; seq <= count && rc == 0; seq++) {
        if (shoal_log_append (log, seq, (int64_t) seq, payload, payload_size))
            rc = s_error ("building %s, append failed: %s", dir, shoal_log_error_text (log));
        else if ((seq & 4095) == 0 && s_stop)
            rc = s_error ("interrupted");
        else if ((seq & 4095) == 0 && s_now () > deadline)
            rc = s_error ("building %s took more than %.0f s (disk too slow?)", dir, cap);
    }
    if (rc == 0 && shoal_log_flush (log))
        rc = s_error ("flush of %s failed: %s", dir, shoal_log_error_text (log));
    free (payload);
    shoal_log_close (&log);
    return rc;
}

//  Iterates over every record of the log in dir.
static int
s_scan_log (const char *dir, s_run_t *run)
{
    memset (run, 0, sizeof *run);
    shoal_log_t *log = s_log_open (dir, SHOAL_FSYNC_NEVER, false);
    if (!log)
        return -1;
    uint64_t head = shoal_log_head (log);
    double start = s_now ();
    shoal_log_iter_t *iter = shoal_log_iter_new (log, shoal_log_first (log), 0);
    if (!iter) {
        s_error ("cannot iterate %s: %s", dir, shoal_log_error_text (log));
        shoal_log_close (&log);
        return -1;
    }
    uint64_t seq, sum = 0, bytes = 0, events = 0;
    int64_t time_ns;
    const uint8_t *data;
    size_t size;
    int got;
    while ((got = shoal_log_iter_next (iter, &seq, &time_ns, &data, &size)) == 1) {
        sum += data[0];
        bytes += S_FRAME + size;
        events++;
    }
    shoal_log_iter_destroy (&iter);
    run->seconds = s_now () - start;
    run->events = events;
    run->bytes = bytes;
    s_sink += sum;
    int rc = 0;
    if (got < 0)
        rc = s_error ("scan of %s failed: %s", dir, shoal_log_error_text (log));
    else if (events != head)
        rc = s_error ("scan of %s saw %llu records, head is %llu", dir, (unsigned long long) events,
                      (unsigned long long) head);
    shoal_log_close (&log);
    return rc;
}

static int
s_compare_names (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

//  Reads every segment file of the log in dir with read (), in order.
static int
s_scan_raw (const char *dir, uint64_t events, s_run_t *run)
{
    memset (run, 0, sizeof *run);
    DIR *handle = opendir (dir);
    if (!handle)
        return s_error ("cannot list %s: %s", dir, strerror (errno));
    char *names[4096];
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (handle)) && count < 4096) {
        size_t length = strlen (entry->d_name);
        if (length > 4 && strcmp (entry->d_name + length - 4, ".seg") == 0)
            names[count++] = strdup (entry->d_name);
    }
    closedir (handle);
    qsort (names, count, sizeof (char *), s_compare_names);
    uint8_t *block = (uint8_t *) malloc (S_READ_BLOCK);
    int rc = block ? 0 : s_error ("out of memory");
    uint64_t sum = 0;
    double start = s_now ();
    for (size_t i = 0; i < count && rc == 0; i++) {
        char path[8400];
        snprintf (path, sizeof path, "%s/%s", dir, names[i]);
        int fd = names[i] ? open (path, O_RDONLY | O_CLOEXEC) : -1;
        if (fd < 0) {
            rc = s_error ("cannot open %s: %s", path, strerror (errno));
            break;
        }
        ssize_t got;
        while ((got = read (fd, block, S_READ_BLOCK)) > 0) {
            sum += block[0];
            run->bytes += (uint64_t) got;
        }
        if (got < 0)
            rc = s_error ("cannot read %s: %s", path, strerror (errno));
        close (fd);
    }
    run->seconds = s_now () - start;
    run->events = events;
    s_sink += sum;
    for (size_t i = 0; i < count; i++)
        free (names[i]);
    free (block);
    return rc;
}

//  Interleaves raw reads and log scans of the log in dir, both warm.
static int
s_scan_compare (const char *dir, uint64_t events, s_pair_t *pair)
{
    s_run_t logs[S_RUNS], raws[S_RUNS], warm;
    //  One untimed pass of each so both start from the page cache.
    if (s_scan_raw (dir, events, &warm) || s_scan_log (dir, &warm))
        return -1;
    for (int i = 0; i < S_RUNS; i++) {
        if (s_stop)
            return s_error ("interrupted");
        int rc = i % 2 == 0 ? s_scan_raw (dir, events, &raws[i]) || s_scan_log (dir, &logs[i])
                            : s_scan_log (dir, &logs[i]) || s_scan_raw (dir, events, &raws[i]);
        if (rc)
            return -1;
    }
    s_pair_make (logs, raws, pair);
    return 0;
}

//  --------------------------------------------------------------------------
//  Reopen

typedef struct {
    double clean_ms;       //  median open time after a clean close
    double unclean_ms;     //  median open time after the writer died
    uint64_t log_bytes;    //  size of the log
    size_t segments;       //  its segment files
    uint64_t last_segment; //  bytes in the last segment (what a dirty open scans)
    bool scanned_ok;       //  the dirty open really scanned, and found every record
} s_reopen_t;

//  Times one shoal_log_open of dir; checks head and whether it scanned.
static int
s_time_open (const char *dir, uint64_t head, bool expect_scan, double *ms_p, bool *as_expected_p)
{
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.fsync = SHOAL_FSYNC_NEVER;
    int error = 0;
    double start = s_now ();
    shoal_log_t *log = shoal_log_open (dir, s_origin, "bench", false, &config, &error);
    double end = s_now ();
    if (!log)
        return s_error ("cannot reopen %s: %s", dir, shoal_log_open_error ());
    *ms_p = (end - start) * 1000;
    *as_expected_p = shoal_log_head (log) == head && shoal_log_was_scanned (log) == expect_scan;
    if (shoal_log_head (log) != head)
        s_error ("reopened %s with head %llu, expected %llu", dir,
                 (unsigned long long) shoal_log_head (log), (unsigned long long) head);
    shoal_log_close (&log);
    return 0;
}

//  A child appends count records (flushed to the OS, not closed) and dies.
static int
s_die_while_writing (const char *dir, uint64_t count)
{
    fflush (NULL);
    pid_t pid = fork ();
    if (pid < 0)
        return s_error ("fork: %s", strerror (errno));
    if (pid == 0) {
        shoal_log_config_t config;
        shoal_log_config_defaults (&config);
        config.fsync = SHOAL_FSYNC_NEVER;
        shoal_log_t *log = shoal_log_open (dir, s_origin, "bench", false, &config, NULL);
        if (!log)
            _exit (3);
        uint8_t payload[1024];
        s_fill (payload, sizeof payload);
        uint64_t seq = shoal_log_head (log);
        for (uint64_t i = 0; i < count; i++) {
            seq++;
            if (shoal_log_append (log, seq, (int64_t) seq, payload, sizeof payload))
                _exit (4);
        }
        if (shoal_log_flush (log))
            _exit (5);
        raise (SIGKILL);
        _exit (6);
    }
    int status;
    while (waitpid (pid, &status, 0) < 0)
        if (errno != EINTR)
            return s_error ("waitpid: %s", strerror (errno));
    if (!WIFSIGNALED (status) || WTERMSIG (status) != SIGKILL)
        return s_error ("the dying writer failed (status %d)", status);
    return 0;
}

//  Bytes in the last (highest named) segment file of the log in dir.
static uint64_t
s_last_segment_size (const char *dir)
{
    struct dirent *entry;
    DIR *handle = opendir (dir);
    char last[256] = "";
    while (handle && (entry = readdir (handle)))
        if (strstr (entry->d_name, ".seg") && strcmp (entry->d_name, last) > 0)
            snprintf (last, sizeof last, "%s", entry->d_name);
    if (handle)
        closedir (handle);
    char path[4600];
    snprintf (path, sizeof path, "%s/%s", dir, last);
    struct stat st;
    return last[0] && stat (path, &st) == 0 ? (uint64_t) st.st_size : 0;
}

static int
s_reopen (const s_sizes_t *sizes, const char *dir, uint64_t events, s_reopen_t *result)
{
    memset (result, 0, sizeof *result);
    shoal_log_t *log = s_log_open (dir, SHOAL_FSYNC_NEVER, false);
    if (!log)
        return -1;
    result->log_bytes = shoal_log_size (log);
    result->segments = shoal_log_segments (log);
    shoal_log_close (&log);
    s_settle ();

    double times[16];
    bool as_expected = true, ok;
    int runs = sizes->reopen_runs;
    for (int i = 0; i < runs; i++) {
        if (s_stop)
            return s_error ("interrupted");
        if (s_time_open (dir, events, false, &times[i], &ok))
            return -1;
        as_expected = as_expected && ok;
    }
    if (!as_expected)
        return s_error ("a clean reopen scanned or lost records");
    result->clean_ms = s_median (times, runs);

    //  The worst case of a dirty open scans a whole segment: the first dying
    //  writer fills the last segment up to nearly its size (not in --quick).
    shoal_log_config_t defaults;
    shoal_log_config_defaults (&defaults);
    uint64_t frame = S_FRAME + 1024;
    uint64_t room = defaults.segment_size - s_last_segment_size (dir);
    uint64_t fill = room / frame > (S_DIRTY_RUNS + 1) * sizes->unclean_events
                        ? room / frame - (S_DIRTY_RUNS + 1) * sizes->unclean_events
                        : 0;
    if (sizes->quick)
        fill = 0;
    double dirty[S_DIRTY_RUNS];
    result->scanned_ok = true;
    for (int i = 0; i < S_DIRTY_RUNS; i++) {
        if (s_stop)
            return s_error ("interrupted");
        uint64_t count = sizes->unclean_events + (i == 0 ? fill : 0);
        if (s_die_while_writing (dir, count))
            return -1;
        events += count;
        if (s_time_open (dir, events, true, &dirty[i], &ok))
            return -1;
        result->scanned_ok = result->scanned_ok && ok;
    }
    result->unclean_ms = s_median (dirty, S_DIRTY_RUNS);
    result->last_segment = s_last_segment_size (dir);
    return 0;
}

//  --------------------------------------------------------------------------
//  Report

static void
s_print_append_row (const char *policy, size_t payload, const s_pair_t *pair)
{
    double log_rate = s_rate (&pair->log);
    double log_mb = pair->log.seconds > 0 ? (double) pair->log.bytes / pair->log.seconds / 1e6 : 0;
    double raw_mb = pair->raw.seconds > 0 ? (double) pair->raw.bytes / pair->raw.seconds / 1e6 : 0;
    printf ("  %-7s %5zu B %11s %12s %9.1f %9.1f %7.2f %5.2f-%4.2f %8s %8s%s\n", policy, payload,
            s_commas ((double) pair->log.events), s_commas (log_rate), log_mb, raw_mb, pair->ratio,
            pair->ratio_min, pair->ratio_max, s_commas ((double) pair->log.fsyncs),
            s_commas ((double) pair->raw.fsyncs),
            pair->log.capped || pair->raw.capped ? "  (time cap)" : "");
}

static void
s_print_where (const char *policy, size_t payload, const s_pair_t *pair)
{
    const s_run_t *log = &pair->log, *raw = &pair->raw;
    double other = log->seconds - log->write_s - log->fsync_s;
    printf ("  %-7s %5zu B   log %7.3f s = write %5.1f%% + fdatasync %5.1f%% + other %5.1f%%"
            "   raw %7.3f s = write %5.1f%% + fdatasync %5.1f%%\n",
            policy, payload, log->seconds, 100 * log->write_s / log->seconds,
            100 * log->fsync_s / log->seconds, 100 * other / log->seconds, raw->seconds,
            100 * raw->write_s / raw->seconds, 100 * raw->fsync_s / raw->seconds);
}

static int s_goals_missed = 0;

static void
s_goal (const char *what, const char *figure, bool met, bool quick)
{
    printf ("  %-44s %20s   %s%s\n", what, figure, met ? "goal met" : "goal MISSED",
            quick ? " (quick run: sizes too small to judge)" : "");
    if (!met)
        s_goals_missed++;
}

//  --------------------------------------------------------------------------
//  Main

static void
s_usage (FILE *out)
{
    fprintf (out, "usage: bench_log [--quick] [--dir DIR]\n"
                  "  --quick    tiny sizes, a smoke test of a couple of seconds\n"
                  "  --dir DIR  make the scratch directory in DIR (default $TMPDIR or /tmp)\n");
}

static int
s_run (const s_sizes_t *sizes_in)
{
    s_sizes_t sizes = *sizes_in;
    //  Disk space: the reopen log, the scan log and one append run at a time.
    struct statvfs vfs;
    if (statvfs (s_base, &vfs))
        return s_error ("statvfs %s: %s", s_base, strerror (errno));
    uint64_t free_bytes = (uint64_t) vfs.f_bavail * vfs.f_frsize;
    uint64_t need = sizes.quick ? 64 * S_MIB : 5 * S_GIB / 2;
    if (free_bytes < need) {
        if (free_bytes < 64 * S_MIB)
            return s_error ("only %llu MiB free in %s; need at least 64 MiB",
                            (unsigned long long) (free_bytes / S_MIB), s_base);
        uint64_t room = free_bytes / 2;
        if (sizes.reopen_bytes > room / 2)
            sizes.reopen_bytes = room / 2;
        if (sizes.scan_events * (S_FRAME + 100) > room / 4)
            sizes.scan_events = room / 4 / (S_FRAME + 100);
        if (sizes.append_bytes > room / 4)
            sizes.append_bytes = room / 4;
        printf ("NOTE: only %llu MiB free in %s (want %llu MiB): sizes shrunk; the reopen log is "
                "%llu MiB, not 1 GiB\n",
                (unsigned long long) (free_bytes / S_MIB), s_base,
                (unsigned long long) (need / S_MIB),
                (unsigned long long) (sizes.reopen_bytes / S_MIB));
    }
    shoal_log_config_t defaults;
    shoal_log_config_defaults (&defaults);
    printf ("shoal bench_log%s: dir %s\n", sizes.quick ? " --quick" : "", s_base);
    printf ("log defaults: buffer %llu KiB, window %lld us, segment %llu MiB, index every %u KiB\n",
            (unsigned long long) (defaults.buffer_size / S_KIB), (long long) defaults.window_us,
            (unsigned long long) (defaults.segment_size / S_MIB), defaults.index_interval / 1024);
    printf (
        "each rate is the median of %d runs, log and raw interleaved (raw, log, log, raw, ...);\n"
        "log/raw is the median of the ratios of adjacent runs, (range) their spread;\n"
        "MB/s counts frame bytes (32 B header + payload), MB = 10^6 bytes\n\n",
        S_RUNS);
    double bench_start = s_now ();

    //  Append
    static const shoal_fsync_t policies[] = {SHOAL_FSYNC_BATCH, SHOAL_FSYNC_ALWAYS,
                                             SHOAL_FSYNC_NEVER};
    static const size_t payloads[] = {100, 1024};
    s_pair_t append[2][3];
    for (int p = 0; p < 2; p++)
        for (int f = 0; f < 3; f++)
            if (s_append_compare (&sizes, policies[f], payloads[p], &append[p][f]))
                return -1;
    printf ("APPEND (raw = pwrite of the same bytes in %llu KiB chunks of whole records, "
            "fdatasync per chunk (batch), per record (always) or none (never))\n",
            (unsigned long long) (defaults.buffer_size / S_KIB));
    printf ("  %-7s %7s %11s %12s %9s %9s %7s %10s %8s %8s\n", "policy", "payload", "events",
            "log ev/s", "log MB/s", "raw MB/s", "log/raw", "(range)", "log sync", "raw sync");
    for (int p = 0; p < 2; p++)
        for (int f = 0; f < 3; f++)
            s_print_append_row (shoal_fsync_name (policies[f]), payloads[p], &append[p][f]);
    printf ("\nWHERE THE APPEND TIME GOES (median runs; 'other' = framing, CRC32C, copying, "
            "segment rolls)\n");
    for (int p = 0; p < 2; p++)
        for (int f = 0; f < 3; f++)
            s_print_where (shoal_fsync_name (policies[f]), payloads[p], &append[p][f]);

    //  The log's CPU per append, with the io discarding everything.
    char cpu_dir[4200];
    s_path (cpu_dir, sizeof cpu_dir, "cpu-log");
    s_cpu_t cpu[2];
    for (int p = 0; p < 2; p++) {
        uint64_t count = sizes.quick ? 20000 : payloads[p] == 100 ? 2000000 : 500000;
        if (s_cpu_profile (cpu_dir, payloads[p], count, &cpu[p]))
            return -1;
    }
    //  The log reads the clock once every 16 appends (S_CLOCK_EVERY in
    //  shoal_log.c), so one read costs an append a sixteenth of it.
    printf ("\nCPU PER APPEND (the log over an io that discards writes; parts timed alone)\n");
    for (int p = 0; p < 2; p++) {
        double clock_share = cpu[p].clock_ns / 16;
        printf ("  %5zu B  %6.1f ns/append   CRC32C (ISA-L payload, inline header) timed as ISA-L "
                "%5.1f ns, clock_gettime / 16 %5.1f ns, memcpy %5.1f ns, rest %5.1f ns\n",
                payloads[p], cpu[p].append_ns, cpu[p].crc_ns, clock_share, cpu[p].copy_ns,
                cpu[p].append_ns - cpu[p].crc_ns - clock_share - cpu[p].copy_ns);
    }
    printf ("  (batch 100 B: the raw run spends %.1f ns per record in write + fdatasync; the log "
            "adds its CPU to that, not overlapped)\n",
            append[0][0].raw.seconds * 1e9 / (double) append[0][0].raw.events);

    //  Scan: a log of 100-byte records, and the reopen log of 1 KiB ones.
    char scan_dir[4200], reopen_dir[4200];
    s_path (scan_dir, sizeof scan_dir, "scan-log");
    s_path (reopen_dir, sizeof reopen_dir, "reopen-log");
    uint64_t reopen_events = sizes.reopen_bytes / (S_FRAME + 1024);
    double build_start = s_now ();
    if (s_build_log (scan_dir, 100, sizes.scan_events, 60)
        || s_build_log (reopen_dir, 1024, reopen_events, 90))
        return -1;
    double build_s = s_now () - build_start;
    s_pair_t scan[2];
    if (s_scan_compare (scan_dir, sizes.scan_events, &scan[0])
        || s_scan_compare (reopen_dir, reopen_events, &scan[1]))
        return -1;
    printf ("\nSCAN (shoal_log_iter over every record; raw = read () of the same segment files "
            "in %d KiB blocks; both warm)\n",
            S_READ_BLOCK / 1024);
    printf ("  %-7s %7s %11s %12s %9s %9s %7s %10s\n", "", "payload", "events", "log ev/s",
            "log MB/s", "raw MB/s", "log/raw", "(range)");
    for (int i = 0; i < 2; i++) {
        const s_pair_t *pair = &scan[i];
        double log_mb = (double) pair->log.bytes / pair->log.seconds / 1e6;
        //  Raw read the segment headers too; its rate is taken over the same
        //  record bytes so that the ratio compares like with like.
        double raw_mb = (double) pair->log.bytes / pair->raw.seconds / 1e6;
        printf ("  %-7s %5d B %11s %12s %9.1f %9.1f %7.2f %5.2f-%4.2f\n", "scan",
                i == 0 ? 100 : 1024, s_commas ((double) pair->log.events),
                s_commas (s_rate (&pair->log)), log_mb, raw_mb, pair->ratio, pair->ratio_min,
                pair->ratio_max);
    }

    //  Reopen
    s_reopen_t reopen;
    if (s_reopen (&sizes, reopen_dir, reopen_events, &reopen))
        return -1;
    printf ("\nREOPEN (shoal_log_open of a log of %s records of 1 KiB, %.2f GiB in %zu segments; "
            "built in %.1f s with the scan log)\n",
            s_commas ((double) reopen_events), (double) reopen.log_bytes / (double) S_GIB,
            reopen.segments, build_s);
    printf ("  after a clean close          %8.2f ms   (median of %d)\n", reopen.clean_ms,
            sizes.reopen_runs);
    printf ("  after the writer was killed  %8.2f ms   (median of %d; scans the last segment, "
            "%.1f MiB%s)\n",
            reopen.unclean_ms, S_DIRTY_RUNS, (double) reopen.last_segment / (double) S_MIB,
            reopen.scanned_ok ? "" : "; NOT AS EXPECTED: no scan or records lost");
    if (!reopen.scanned_ok)
        return s_error ("an unclean reopen did not scan or lost records");

    //  Goals
    const s_pair_t *batch100 = &append[0][0], *batch1k = &append[1][0];
    char figure[64];
    printf ("\nGOALS\n");
    snprintf (figure, sizeof figure, "%s ev/s", s_commas (s_rate (&batch100->log)));
    s_goal ("batch append of 100 B >= 1,000,000 events/s", figure,
            s_rate (&batch100->log) >= S_GOAL_BATCH_EVENTS, sizes.quick);
    double ratio100 = batch100->ratio;
    double ratio1k = batch1k->ratio;
    snprintf (figure, sizeof figure, "%.2f", ratio100);
    s_goal ("batch append of 100 B >= 0.80 of raw write", figure, ratio100 >= S_GOAL_BATCH_RATIO,
            sizes.quick);
    snprintf (figure, sizeof figure, "%.2f", ratio1k);
    s_goal ("batch append of 1 KiB >= 0.80 of raw write", figure, ratio1k >= S_GOAL_BATCH_RATIO,
            sizes.quick);
    snprintf (figure, sizeof figure, "%s ev/s", s_commas (s_rate (&scan[0].log)));
    s_goal ("scan of 100 B records >= 3,000,000 events/s", figure,
            s_rate (&scan[0].log) >= S_GOAL_SCAN_EVENTS, sizes.quick);
    snprintf (figure, sizeof figure, "%.2f ms", reopen.clean_ms);
    s_goal (reopen.log_bytes >= S_GIB - 64 * S_MIB ? "reopen of a 1 GiB log < 100 ms"
                                                   : "reopen of the (shrunk) log < 100 ms",
            figure, reopen.clean_ms < S_GOAL_REOPEN_MS, sizes.quick);
    printf ("\n%d of 5 goals met; bench took %.1f s\n", 5 - s_goals_missed, s_now () - bench_start);
    return 0;
}

int
main (int argc, char **argv)
{
    s_sizes_t sizes = {false, 512 * S_MIB, 2000, 5.0, 2000000, S_GIB, 1000, 5};
    const char *parent = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--quick") == 0)
            sizes.quick = true;
        else if (strcmp (argv[i], "--dir") == 0 && i + 1 < argc)
            parent = argv[++i];
        else if (strcmp (argv[i], "--help") == 0 || strcmp (argv[i], "-h") == 0) {
            s_usage (stdout);
            return 0;
        }
        else {
            s_usage (stderr);
            return 2;
        }
    }
    if (sizes.quick) {
        sizes.append_bytes = 2 * S_MIB;
        sizes.always_events = 50;
        sizes.run_seconds = 1.0;
        sizes.scan_events = 20000;
        sizes.reopen_bytes = 8 * S_MIB;
        sizes.unclean_events = 100;
        sizes.reopen_runs = 3;
    }
    if (!parent) {
        const char *tmpdir = getenv ("TMPDIR");
        parent = tmpdir && *tmpdir ? tmpdir : "/tmp";
    }
    snprintf (s_base, sizeof s_base, "%s/shoal-bench-XXXXXX", parent);
    if (!mkdtemp (s_base)) {
        s_error ("cannot make a directory in %s: %s", parent, strerror (errno));
        s_base[0] = 0;
        return 1;
    }
    atexit (s_cleanup);
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    sigaction (SIGHUP, &action, NULL);
    setvbuf (stdout, NULL, _IOLBF, 0);

    int rc = s_run (&sizes);
    s_cleanup ();
    return rc ? 1 : 0;
}
