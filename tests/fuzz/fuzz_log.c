/*  =========================================================================
    fuzz_log - log recovery and reading on arbitrary file bytes

    A data directory can hold anything after a crash, a bad disk or a
    careless copy. The input is turned into the files of one log directory
    and the log is opened, read, verified, appended to and reopened.

    Input layout (all integers little-endian):

        0    1   flags: bit 0 = fix the checksums before writing (so the
                 fuzzer gets past CRC32C into framing and seq checks)
        then up to 4 files, each:
        0    1   kind: even = segment, odd = index of the last segment
        1    4   length L (clamped to what is left)
        5    L   the file's bytes

    A segment is named by the first seq in its header (bytes 32-39), or
    by its position when the header is too short; an index takes the name
    of the segment before it. The log is (origin 01..10, stream "orders").

    For any bytes, the target checks that:

    1. open either fails with an error code or gives a log with
       first <= head + 1;
    2. reading first..head yields consecutive seqs, or stops with an
       error (CORRUPT, TRIMMED, IO), never beyond head;
    3. verify runs to the end;
    4. after a successful append of head + 1 and a clean close, the log
       reopens with exactly that head.
    ========================================================================= */

#include "fuzz.h"
#include "shoal_bytes.h"
#include "shoal_crc.h"
#include "shoal_error.h"
#include "shoal_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAX_FILES 4
#define S_SEG_HEADER 128
#define S_FRAME 32

static char s_dir[256];
static const uint8_t s_origin[SHOAL_ID_SIZE] = {1, 2,  3,  4,  5,  6,  7,  8,
                                                9, 10, 11, 12, 13, 14, 15, 16};

//  Makes the checksums of a segment (header, frames, payloads) right.
static void
s_fix_segment (uint8_t *data, size_t size)
{
    if (size < S_SEG_HEADER)
        return;
    shoal_put32 (data + 124, shoal_crc32c (0, data, 124));
    size_t at = S_SEG_HEADER;
    while (at + S_FRAME <= size) {
        uint32_t length = shoal_get32 (data + at + 4);
        if (length > size - at - S_FRAME)
            break;
        shoal_put32 (data + at + 24, shoal_crc32c (0, data + at + S_FRAME, length));
        shoal_put32 (data + at, shoal_crc32c (0, data + at + 4, S_FRAME - 4));
        at += S_FRAME + length;
    }
}

//  Makes the checksum of an index (the trailer's last 4 bytes) right.
static void
s_fix_index (uint8_t *data, size_t size)
{
    if (size >= 48)
        shoal_put32 (data + size - 4, shoal_crc32c (0, data, size - 4));
}

static void
s_write (const char *name, const uint8_t *data, size_t size)
{
    char path[512];
    snprintf (path, sizeof path, "%s/%s", s_dir, name);
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK (fd >= 0);
    FUZZ_CHECK (size == 0 || write (fd, data, size) == (ssize_t) size);
    close (fd);
}

static void
s_clear (void)
{
    DIR *handle = opendir (s_dir);
    FUZZ_CHECK (handle);
    struct dirent *entry;
    char path[512];
    while ((entry = readdir (handle)))
        if (entry->d_name[0] != '.') {
            snprintf (path, sizeof path, "%s/%s", s_dir, entry->d_name);
            unlink (path);
        }
    closedir (handle);
}

static void
s_cleanup (void)
{
    if (s_dir[0]) {
        s_clear ();
        rmdir (s_dir);
    }
}

static void
s_report (void *arg, const char *file, uint64_t offset, const char *problem)
{
    (void) file;
    (void) offset;
    FUZZ_CHECK (problem != NULL);
    (*(int *) arg)++;
}

static void
s_config (shoal_log_config_t *config)
{
    shoal_log_config_defaults (config);
    config->fsync = SHOAL_FSYNC_NEVER;
    config->segment_size = 64 * 1024;
    config->index_interval = 256;
    config->max_record = 1 << 20;
    config->buffer_size = 16 * 1024;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_dir[0]) {
        const char *base = access ("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf (s_dir, sizeof s_dir, "%s/shoal-fuzz-log-XXXXXX", base);
        FUZZ_CHECK (mkdtemp (s_dir) != NULL);
        atexit (s_cleanup);
    }
    if (size < 1)
        return 0;
    bool fix = data[0] & 1;
    size_t at = 1;
    char segment[32] = "";
    for (int file = 0; file < S_MAX_FILES && at + 5 <= size; file++) {
        bool is_index = data[at] & 1;
        size_t length = shoal_get32 (data + at + 1);
        at += 5;
        if (length > size - at)
            length = size - at;
        uint8_t *bytes = (uint8_t *) malloc (length ? length : 1);
        FUZZ_CHECK (bytes);
        memcpy (bytes, data + at, length);
        at += length;
        char name[40];
        if (!is_index) {
            uint64_t first = length >= 40 ? shoal_get64 (bytes + 32) : (uint64_t) file + 1;
            snprintf (segment, sizeof segment, "%020llu", (unsigned long long) first);
            if (fix)
                s_fix_segment (bytes, length);
            snprintf (name, sizeof name, "%s.seg", segment);
        }
        else {
            if (fix)
                s_fix_index (bytes, length);
            snprintf (name, sizeof name, "%s.idx", segment[0] ? segment : "00000000000000000001");
        }
        s_write (name, bytes, length);
        free (bytes);
    }

    shoal_log_config_t config;
    s_config (&config);
    int error = 0;
    shoal_log_t *log = shoal_log_open (s_dir, s_origin, "orders", false, &config, &error);
    if (!log) {
        FUZZ_CHECK (error != 0);
        FUZZ_CHECK (shoal_log_open_error () != NULL);
        s_clear ();
        return 0;
    }
    uint64_t first = shoal_log_first (log), head = shoal_log_head (log);
    FUZZ_CHECK (first <= head + 1);
    FUZZ_CHECK (shoal_log_durable (log) <= head);
    if (head >= first) {
        shoal_log_iter_t *iter = shoal_log_iter_new (log, first, head);
        uint64_t expect = first, seq;
        int64_t time_ns;
        const uint8_t *record;
        size_t record_size;
        int rc;
        while (iter
               && (rc = shoal_log_iter_next (iter, &seq, &time_ns, &record, &record_size)) == 1) {
            if (seq != expect || seq > head)
                fprintf (stderr, "fuzz_log: read seq %llu, expected %llu (first %llu, head %llu)\n",
                         (unsigned long long) seq, (unsigned long long) expect,
                         (unsigned long long) first, (unsigned long long) head);
            FUZZ_CHECK (seq == expect && seq <= head);
            expect++;
        }
        if (iter && rc < 0)
            FUZZ_CHECK (shoal_log_error (log) != 0);
        shoal_log_iter_destroy (&iter);
        uint8_t *one = NULL;
        size_t one_size = 0;
        if (shoal_log_read (log, head, &one, &one_size, NULL) == 0)
            free (one);
        (void) shoal_log_seek_time (log, 0);
    }
    int problems = 0;
    int verified = shoal_log_verify (log, s_report, &problems);
    FUZZ_CHECK (verified == -1 || verified == problems);

    static const uint8_t record[] = "fuzz";
    bool appended = !shoal_log_failed (log)
                    && shoal_log_append (log, head + 1, 1, record, sizeof record) == 0
                    && shoal_log_flush (log) == 0;
    uint64_t new_head = shoal_log_head (log);
    shoal_log_close (&log);
    if (appended) {
        log = shoal_log_open (s_dir, s_origin, "orders", false, &config, &error);
        FUZZ_CHECK (log != NULL);
        FUZZ_CHECK (shoal_log_head (log) == new_head);
        shoal_log_close (&log);
    }
    s_clear ();
    return 0;
}
