/*  =========================================================================
    shoal_log - the durable log of one (origin, stream)

    A log is a directory of segment files, each with an index file beside
    it, named by the seq of the segment's first record in 20 decimal
    digits:

        00000000000000000001.seg   00000000000000000001.idx
        00000000000000052144.seg   00000000000000052144.idx   <- active

    Records are appended to the active (last) segment; past segment_size
    the log rolls: the active segment is synced and sealed, its index
    written, and a new segment begins. All integers are little-endian.

    Segment header (128 bytes)

        0    8   magic "SHOALSEG"
        8    4   format version, 1
        12   4   header size, 128
        16  16   origin node id
        32   8   first seq (equals the file name)
        40   1   stream name length n, 1..64
        41  64   stream name, zero padded
        105 19   zero
        124  4   CRC32C of bytes 0..123

    Record (32-byte frame header, then the payload)

        0    4   CRC32C of bytes 4..31 (the rest of the frame header)
        4    4   payload length L
        8    8   seq
        16   8   time_ns (signed)
        24   4   CRC32C of the L payload bytes
        28   4   zero
        32   L   payload: the encoded shoal.v1.Event, never parsed here

    Index file (rewritten whole, never appended)

        0    8   magic "SHOALIDX"
        8    4   format version, 1
        12   4   entry count N
        16  24N  entries { seq u64, offset u64, time_ns i64 }: the first
                 record, then the first record at or past each
                 index_interval bytes
        ..  32   trailer { covered size u64, last seq u64, last time i64,
                 flags u32 (bit 0 = sealed), CRC32C u32 of every byte of
                 the file before it }

    Invariants

    1. Records in a log have consecutive seqs: segment k+1 starts at the
       last seq of segment k plus one, and inside a segment each record's
       seq is its predecessor's plus one. The first segment's first seq is
       shoal_log_first; retention removes whole segments from the front.
    2. Bytes reach a file only by appending whole buffered records at its
       end; the only other change is a truncation back to a record
       boundary (recovery of a torn tail, or undoing a failed write).
       Hence a segment's size identifies its content: an index whose
       covered size equals its segment's size describes it exactly, and a
       segment closed cleanly is reopened without reading its records.
    3. Write, fsync, then publish: durable (the watermark) moves only
       after the fdatasync that covers the record returned success (or,
       under policy never, after the write returned). Nothing above it
       may be sent or acknowledged by the node.
    4. Recovery cuts only the tail of the last segment, and only when its
       index is stale (the process died without closing). It scans from
       the segment start and keeps every whole record up to the first
       frame that is short, fails its CRC, or breaks the seq chain.
    5. Damage anywhere else is never cut and never served: a read that
       meets a bad frame fails with CORRUPT naming the file and offset.
       A frame whose header CRC holds but payload CRC fails spoils only
       that record; a bad frame header spoils the rest of the segment up
       to the next index entry.
    6. After a failed write or fsync the log is FAILED: it truncates the
       segment back to the last whole record it knows to be written and
       refuses appends until reopened. A half record is never followed
       by a whole one, so recovery would cut it anyway.
    7. A new segment's header is synced and its directory entry synced
       before records go into it; an index is written with
       shoal_io_replace_file, so it is old or new, never torn.
    ========================================================================= */

#include "shoal_log.h"
#include "shoal_bytes.h"
#include "shoal_crc.h"
#include "shoal_error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_SEG_MAGIC "SHOALSEG"
#define S_IDX_MAGIC "SHOALIDX"
#define S_VERSION 1
#define S_SEG_HEADER 128
#define S_FRAME 32
#define S_IDX_HEADER 16
#define S_IDX_ENTRY 24
#define S_IDX_TRAILER 32
#define S_IDX_SEALED 1
#define S_BLOCK (256 * 1024) //  bytes a reader fetches at once
#define S_NAME_DIGITS 20
#define S_CLOCK_EVERY 16 //  appends between two looks at the clock

//  --------------------------------------------------------------------------
//  Structures

typedef struct {
    uint64_t seq;    //  seq of the record at offset
    uint64_t offset; //  byte offset of its frame in the segment
    int64_t time_ns; //  its time
} s_entry_t;

typedef struct {
    uint64_t first_seq;     //  seq of its first record (its name)
    uint64_t last_seq;      //  seq of its last record, first_seq - 1 when empty
    int64_t last_time;      //  time of its last record
    uint64_t size;          //  bytes in the file (for the active one: written, not buffered)
    s_entry_t *entries;     //  sparse index, ascending
    size_t entry_count;     //  entries used
    size_t entry_alloc;     //  entries allocated
    uint64_t next_entry_at; //  offset at or past which the next entry is due
    bool header_checked;    //  header read and found good since open
    bool damaged;           //  a problem was found in it (reads may fail)
    char damage[256];       //  the first problem, in words
} s_segment_t;

//  Reads frames of one segment in large blocks.
typedef struct {
    int fd;                //  open segment, -1 when none
    uint64_t first_seq;    //  which segment fd is open on
    uint8_t *block;        //  bytes of the file from block_offset
    size_t block_size;     //  valid bytes in block
    size_t block_alloc;    //  bytes allocated
    uint64_t block_offset; //  file offset of block[0]
} s_reader_t;

struct _shoal_log_t {
    char *dir;                         //  directory of the log
    uint8_t origin[SHOAL_ID_SIZE];     //  origin node id
    char stream[SHOAL_STREAM_MAX + 1]; //  stream name
    shoal_log_config_t config;         //  configuration in force
    shoal_io_t *io;                    //  file operations
    s_segment_t *segments;             //  segments, oldest first
    size_t segment_count;              //  segments used
    size_t segment_alloc;              //  segments allocated
    int fd;                            //  active (last) segment, open for writing, -1 if none
    uint8_t *buffer;                   //  records appended but not yet written
    size_t buffered;                   //  bytes in buffer
    size_t buffer_alloc;               //  bytes allocated
    uint64_t empty_first;              //  first seq while there is no segment
    uint64_t head;                     //  last appended seq, 0 when empty
    uint64_t written;                  //  last seq handed to the OS
    uint64_t durable;                  //  last seq on stable storage per policy
    int64_t pending_since;             //  monotonic ns of the oldest record not yet durable, -1
    unsigned unclocked;                //  appends since the clock was last read
    bool failed;                       //  an I/O error happened: no more appends
    int error;                         //  last error code
    char error_text[512];              //  last error in words
    uint64_t recovered_bytes;          //  bytes cut from a torn tail by the last open
    bool scanned;                      //  the last open scanned the last segment
    s_reader_t reader;                 //  reader for shoal_log_read and seek
};

struct _shoal_log_iter_t {
    shoal_log_t *log;  //  log iterated
    uint64_t seq;      //  next seq to return
    uint64_t to;       //  last seq to return, 0 = head
    uint64_t offset;   //  offset of seq's frame in its segment, 0 = unknown
    s_reader_t reader; //  own reader, so reads and iterators never disturb each other
};

static __thread char s_open_error[512];

//  --------------------------------------------------------------------------
//  Little helpers

static int64_t
s_now_mono (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
s_fail (shoal_log_t *self, int error, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->error_text, sizeof self->error_text, format, args);
    va_end (args);
    self->error = error;
    return -1;
}

static int
s_errno_code (int err)
{
    return err == ENOSPC || err == EDQUOT ? SHOAL_ERR_NOSPC : SHOAL_ERR_IO;
}

static void
s_seg_path (const shoal_log_t *self, uint64_t first_seq, const char *ext, char *path, size_t size)
{
    snprintf (path, size, "%s/%020llu.%s", self->dir, (unsigned long long) first_seq, ext);
}

static void
s_reader_init (s_reader_t *reader)
{
    memset (reader, 0, sizeof *reader);
    reader->fd = -1;
}

static void
s_reader_close (shoal_log_t *log, s_reader_t *reader)
{
    if (reader->fd >= 0)
        log->io->close (log->io, reader->fd);
    reader->fd = -1;
    reader->block_size = 0;
}

static void
s_reader_destroy (shoal_log_t *log, s_reader_t *reader)
{
    s_reader_close (log, reader);
    free (reader->block);
    reader->block = NULL;
    reader->block_alloc = 0;
}

//  --------------------------------------------------------------------------
//  Frames and headers

static void
s_frame_encode (uint8_t *frame, uint64_t seq, int64_t time_ns, const void *data, size_t size)
{
    shoal_put32 (frame + 4, (uint32_t) size);
    shoal_put64 (frame + 8, seq);
    shoal_put64 (frame + 16, (uint64_t) time_ns);
    shoal_put32 (frame + 24, shoal_crc32c (0, data, size));
    shoal_put32 (frame + 28, 0);
    shoal_put32 (frame, shoal_crc32c_small (frame + 4, S_FRAME - 4));
}

//  Parses a frame header: 0, or -1 when its checksum or reserved bytes are bad.
static int
s_frame_decode (const uint8_t *frame, uint32_t *size_p, uint64_t *seq_p, int64_t *time_p,
                uint32_t *crc_p)
{
    if (shoal_get32 (frame) != shoal_crc32c_small (frame + 4, S_FRAME - 4)
        || shoal_get32 (frame + 28) != 0)
        return -1;
    *size_p = shoal_get32 (frame + 4);
    *seq_p = shoal_get64 (frame + 8);
    *time_p = (int64_t) shoal_get64 (frame + 16);
    *crc_p = shoal_get32 (frame + 24);
    return 0;
}

static void
s_header_encode (const shoal_log_t *self, uint64_t first_seq, uint8_t *header)
{
    memset (header, 0, S_SEG_HEADER);
    memcpy (header, S_SEG_MAGIC, 8);
    shoal_put32 (header + 8, S_VERSION);
    shoal_put32 (header + 12, S_SEG_HEADER);
    memcpy (header + 16, self->origin, SHOAL_ID_SIZE);
    shoal_put64 (header + 32, first_seq);
    size_t length = strlen (self->stream);
    header[40] = (uint8_t) length;
    memcpy (header + 41, self->stream, length);
    shoal_put32 (header + 124, shoal_crc32c (0, header, 124));
}

//  Checks a segment header against this log; 0, or -1 with the problem in why.
static int
s_header_check (const shoal_log_t *self, const uint8_t *header, uint64_t first_seq, char *why,
                size_t why_size)
{
    uint8_t expected[S_SEG_HEADER];
    s_header_encode (self, first_seq, expected);
    if (memcmp (header, S_SEG_MAGIC, 8) != 0)
        snprintf (why, why_size, "not a shoal segment (bad magic)");
    else if (shoal_get32 (header + 124) != shoal_crc32c (0, header, 124))
        snprintf (why, why_size, "segment header checksum mismatch");
    else if (shoal_get32 (header + 8) != S_VERSION)
        snprintf (why, why_size, "unsupported segment version %u", shoal_get32 (header + 8));
    else if (memcmp (header + 16, self->origin, SHOAL_ID_SIZE) != 0)
        snprintf (why, why_size, "segment belongs to another origin");
    else if (header[40] != expected[40] || memcmp (header + 41, expected + 41, 64) != 0)
        snprintf (why, why_size, "segment belongs to another stream");
    else if (shoal_get64 (header + 32) != first_seq)
        snprintf (why, why_size, "segment first seq %llu does not match its name",
                  (unsigned long long) shoal_get64 (header + 32));
    else if (memcmp (header, expected, S_SEG_HEADER) != 0)
        snprintf (why, why_size, "segment header has unexpected bytes");
    else
        return 0;
    return -1;
}

//  --------------------------------------------------------------------------
//  Segments and the sparse index

static s_segment_t *
s_segment_add (shoal_log_t *self, uint64_t first_seq)
{
    if (self->segment_count == self->segment_alloc) {
        size_t alloc = self->segment_alloc ? 2 * self->segment_alloc : 8;
        s_segment_t *segments =
            (s_segment_t *) realloc (self->segments, alloc * sizeof (s_segment_t));
        if (!segments)
            return NULL;
        self->segments = segments;
        self->segment_alloc = alloc;
    }
    s_segment_t *segment = &self->segments[self->segment_count++];
    memset (segment, 0, sizeof *segment);
    segment->first_seq = first_seq;
    segment->last_seq = first_seq - 1;
    segment->size = S_SEG_HEADER;
    return segment;
}

static int
s_entry_add (s_segment_t *segment, uint64_t seq, uint64_t offset, int64_t time_ns,
             uint32_t interval)
{
    if (segment->entry_count > 0 && offset < segment->next_entry_at)
        return 0;
    if (segment->entry_count == segment->entry_alloc) {
        size_t alloc = segment->entry_alloc ? 2 * segment->entry_alloc : 16;
        s_entry_t *entries = (s_entry_t *) realloc (segment->entries, alloc * sizeof (s_entry_t));
        if (!entries)
            return -1;
        segment->entries = entries;
        segment->entry_alloc = alloc;
    }
    segment->entries[segment->entry_count++] = (s_entry_t){seq, offset, time_ns};
    segment->next_entry_at = offset + interval;
    return 0;
}

//  The segment holding seq (first_seq <= seq), by binary search; NULL if none.
static s_segment_t *
s_segment_for (const shoal_log_t *self, uint64_t seq)
{
    size_t low = 0, high = self->segment_count;
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (self->segments[mid].first_seq <= seq)
            low = mid + 1;
        else
            high = mid;
    }
    return low ? &self->segments[low - 1] : NULL;
}

//  The last index entry at or before seq; NULL if the segment has none.
static const s_entry_t *
s_entry_for (const s_segment_t *segment, uint64_t seq)
{
    size_t low = 0, high = segment->entry_count;
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (segment->entries[mid].seq <= seq)
            low = mid + 1;
        else
            high = mid;
    }
    return low ? &segment->entries[low - 1] : NULL;
}

//  Writes the index file of a segment (whole, atomically).
static int
s_index_write (shoal_log_t *self, const s_segment_t *segment, bool sealed)
{
    size_t size = S_IDX_HEADER + segment->entry_count * S_IDX_ENTRY + S_IDX_TRAILER;
    uint8_t *data = (uint8_t *) malloc (size);
    if (!data)
        return s_fail (self, SHOAL_ERR_IO, "out of memory writing an index");
    memcpy (data, S_IDX_MAGIC, 8);
    shoal_put32 (data + 8, S_VERSION);
    shoal_put32 (data + 12, (uint32_t) segment->entry_count);
    uint8_t *p = data + S_IDX_HEADER;
    for (size_t i = 0; i < segment->entry_count; i++, p += S_IDX_ENTRY) {
        shoal_put64 (p, segment->entries[i].seq);
        shoal_put64 (p + 8, segment->entries[i].offset);
        shoal_put64 (p + 16, (uint64_t) segment->entries[i].time_ns);
    }
    shoal_put64 (p, segment->size);
    shoal_put64 (p + 8, segment->last_seq);
    shoal_put64 (p + 16, (uint64_t) segment->last_time);
    shoal_put32 (p + 24, sealed ? S_IDX_SEALED : 0);
    shoal_put32 (p + 28, shoal_crc32c (0, data, size - 4));
    char path[4200];
    s_seg_path (self, segment->first_seq, "idx", path, sizeof path);
    int rc = shoal_io_replace_file (self->io, path, data, size);
    int err = errno;
    free (data);
    if (rc)
        return s_fail (self, s_errno_code (err), "cannot write index %s: %s", path, strerror (err));
    return 0;
}

//  Loads a segment's index if it is whole and covers exactly file_size
//  bytes (invariant 2). 0 when loaded, -1 when it must be rebuilt.
static int
s_index_load (shoal_log_t *self, s_segment_t *segment, uint64_t file_size)
{
    char path[4200];
    s_seg_path (self, segment->first_seq, "idx", path, sizeof path);
    uint8_t *data;
    size_t size;
    if (shoal_io_read_file (self->io, path, &data, &size))
        return -1;
    int rc = -1;
    if (size >= S_IDX_HEADER + S_IDX_TRAILER && memcmp (data, S_IDX_MAGIC, 8) == 0
        && shoal_get32 (data + 8) == S_VERSION
        && shoal_get32 (data + size - 4) == shoal_crc32c (0, data, size - 4)) {
        size_t count = shoal_get32 (data + 12);
        const uint8_t *trailer = data + S_IDX_HEADER + count * S_IDX_ENTRY;
        if (size == S_IDX_HEADER + count * S_IDX_ENTRY + S_IDX_TRAILER
            && shoal_get64 (trailer) == file_size) {
            segment->entries = (s_entry_t *) malloc ((count ? count : 1) * sizeof (s_entry_t));
            //  An index is trusted only when it could describe the segment:
            //  entries inside the file and ascending, seqs within the
            //  segment's range. Anything else is rebuilt by a scan (an index
            //  with a good checksum can still be wrong; found by fuzz_log).
            uint64_t last = shoal_get64 (trailer + 8);
            bool sane = segment->entries && last + 1 >= segment->first_seq;
            const uint8_t *p = data + S_IDX_HEADER;
            for (size_t i = 0; sane && i < count; i++, p += S_IDX_ENTRY) {
                segment->entries[i] = (s_entry_t){shoal_get64 (p), shoal_get64 (p + 8),
                                                  (int64_t) shoal_get64 (p + 16)};
                const s_entry_t *entry = &segment->entries[i];
                sane =
                    entry->offset >= S_SEG_HEADER && entry->offset < file_size
                    && entry->seq >= segment->first_seq && entry->seq <= last
                    && (i == 0 || (entry->offset > entry[-1].offset && entry->seq > entry[-1].seq));
            }
            if (!sane) {
                free (segment->entries);
                segment->entries = NULL;
            }
            if (segment->entries) {
                segment->entry_count = segment->entry_alloc = count;
                segment->size = file_size;
                segment->last_seq = shoal_get64 (trailer + 8);
                segment->last_time = (int64_t) shoal_get64 (trailer + 16);
                segment->next_entry_at =
                    count ? segment->entries[count - 1].offset + self->config.index_interval : 0;
                rc = 0;
            }
        }
    }
    free (data);
    return rc;
}

//  --------------------------------------------------------------------------
//  Reading frames

//  Makes bytes [offset, offset + size) of the reader's segment available
//  at *p. 0 when they are, 1 when the file ends first, -1 on I/O error.
static int
s_reader_fetch (shoal_log_t *log, s_reader_t *reader, const s_segment_t *segment, uint64_t offset,
                size_t size, const uint8_t **p)
{
    if (reader->fd < 0 || reader->first_seq != segment->first_seq) {
        s_reader_close (log, reader);
        char path[4200];
        s_seg_path (log, segment->first_seq, "seg", path, sizeof path);
        reader->fd = log->io->open (log->io, path, O_RDONLY, 0);
        if (reader->fd < 0)
            return s_fail (log, SHOAL_ERR_IO, "cannot open %s: %s", path, strerror (errno));
        reader->first_seq = segment->first_seq;
    }
    //  (Written so that no sum can wrap: offsets come from files.)
    if (offset >= reader->block_offset && size <= reader->block_size
        && offset - reader->block_offset <= reader->block_size - size) {
        *p = reader->block + (offset - reader->block_offset);
        return 0;
    }
    //  Only bytes below the segment's known end are ever read: past it a
    //  concurrent append may be half done.
    uint64_t end = segment->size;
    if (offset > end || size > end - offset)
        return 1;
    size_t want = size > S_BLOCK ? size : S_BLOCK;
    if (offset + want > end)
        want = (size_t) (end - offset);
    if (want > reader->block_alloc) {
        uint8_t *block = (uint8_t *) realloc (reader->block, want);
        if (!block)
            return s_fail (log, SHOAL_ERR_IO, "out of memory reading a segment");
        reader->block = block;
        reader->block_alloc = want;
    }
    ssize_t got = shoal_io_read_all (log->io, reader->fd, reader->block, want, (off_t) offset);
    if (got < 0) {
        reader->block_size = 0;
        return s_fail (log, SHOAL_ERR_IO, "cannot read segment %020llu.seg at offset %llu: %s",
                       (unsigned long long) segment->first_seq, (unsigned long long) offset,
                       strerror (errno));
    }
    reader->block_offset = offset;
    reader->block_size = (size_t) got;
    if ((size_t) got < size)
        return 1;
    *p = reader->block;
    return 0;
}

static int
s_corrupt (shoal_log_t *self, const s_segment_t *segment, uint64_t offset, const char *what)
{
    return s_fail (self, SHOAL_ERR_CORRUPT, "%s/%020llu.seg: %s at offset %llu", self->dir,
                   (unsigned long long) segment->first_seq, what, (unsigned long long) offset);
}

//  Checks the header of a segment once; -1 with CORRUPT or MISMATCH if bad.
static int
s_segment_check (shoal_log_t *self, s_reader_t *reader, s_segment_t *segment)
{
    if (segment->header_checked)
        return 0;
    const uint8_t *header;
    int rc = s_reader_fetch (self, reader, segment, 0, S_SEG_HEADER, &header);
    if (rc < 0)
        return -1;
    char why[160];
    if (rc > 0)
        snprintf (why, sizeof why, "segment shorter than its header");
    else if (s_header_check (self, header, segment->first_seq, why, sizeof why) == 0) {
        segment->header_checked = true;
        return 0;
    }
    s_corrupt (self, segment, 0, why);
    self->error = strstr (why, "another") ? SHOAL_ERR_MISMATCH : SHOAL_ERR_CORRUPT;
    return -1;
}

//  Reads the frame at offset, which must hold seq. 0 and the payload at
//  *data_p (borrowed from the reader), or -1 with CORRUPT or IO.
static int
s_frame_read (shoal_log_t *self, s_reader_t *reader, const s_segment_t *segment, uint64_t offset,
              uint64_t seq, bool check_payload, const uint8_t **data_p, uint32_t *size_p,
              int64_t *time_p)
{
    const uint8_t *frame;
    int rc = s_reader_fetch (self, reader, segment, offset, S_FRAME, &frame);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return s_corrupt (self, segment, offset, "segment ends inside a frame header");
    uint32_t size, crc;
    uint64_t frame_seq;
    int64_t time_ns;
    if (s_frame_decode (frame, &size, &frame_seq, &time_ns, &crc))
        return s_corrupt (self, segment, offset, "frame header checksum mismatch");
    if (frame_seq != seq)
        return s_corrupt (self, segment, offset, "frame out of sequence");
    *size_p = size;
    *time_p = time_ns;
    if (!check_payload)
        return 0;
    rc = s_reader_fetch (self, reader, segment, offset + S_FRAME, size, data_p);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return s_corrupt (self, segment, offset, "segment ends inside a record");
    if (shoal_crc32c (0, *data_p, size) != crc)
        return s_corrupt (self, segment, offset, "record checksum mismatch");
    return 0;
}

//  Finds the offset of seq's frame, walking from the nearest index entry.
static int
s_locate (shoal_log_t *self, s_reader_t *reader, s_segment_t *segment, uint64_t seq,
          uint64_t *offset_p)
{
    if (s_segment_check (self, reader, segment))
        return -1;
    const s_entry_t *entry = s_entry_for (segment, seq);
    if (!entry)
        return s_corrupt (self, segment, S_SEG_HEADER, "no index entry (damaged segment)");
    uint64_t offset = entry->offset;
    for (uint64_t at = entry->seq; at < seq; at++) {
        uint32_t size;
        int64_t time_ns;
        if (s_frame_read (self, reader, segment, offset, at, false, NULL, &size, &time_ns))
            return -1;
        offset += S_FRAME + size;
    }
    *offset_p = offset;
    return 0;
}

//  --------------------------------------------------------------------------
//  Writing

static int
s_fail_io (shoal_log_t *self, int err, const char *what)
{
    self->failed = true;
    return s_fail (self, s_errno_code (err),
                   "%s/%020llu.seg: %s failed: %s; log refuses appends until reopened", self->dir,
                   (unsigned long long) (self->segment_count
                                             ? self->segments[self->segment_count - 1].first_seq
                                             : 0),
                   what, strerror (err));
}

//  Hands the buffered records to the OS. On failure, cuts the segment back
//  to its last whole record and fails the log (invariant 6).
static int
s_write_buffer (shoal_log_t *self)
{
    if (self->buffered == 0)
        return 0;
    if (self->failed)
        return s_fail (self, SHOAL_ERR_FAILED, "log %s failed earlier; reopen it", self->dir);
    s_segment_t *active = &self->segments[self->segment_count - 1];
    if (shoal_io_write_all (self->io, self->fd, self->buffer, self->buffered,
                            (off_t) active->size)) {
        int err = errno;
        if (self->io->ftruncate (self->io, self->fd, (off_t) active->size) == 0)
            self->io->fsync (self->io, self->fd);
        return s_fail_io (self, err, "write");
    }
    active->size += self->buffered;
    self->buffered = 0;
    self->written = self->head;
    return 0;
}

//  Write, fsync, then publish the watermark (invariant 3).
static int
s_sync (shoal_log_t *self, bool force)
{
    if (s_write_buffer (self))
        return -1;
    if (self->durable == self->written) {
        self->pending_since = -1;
        return 0;
    }
    if (self->config.fsync != SHOAL_FSYNC_NEVER || force) {
        if (self->io->fsync (self->io, self->fd))
            return s_fail_io (self, errno, "fsync");
    }
    self->durable = self->written;
    self->pending_since = -1;
    return 0;
}

//  Starts a new active segment whose first record will be first_seq.
static int
s_segment_create (shoal_log_t *self, uint64_t first_seq)
{
    char path[4200];
    s_seg_path (self, first_seq, "seg", path, sizeof path);
    int fd = self->io->open (self->io, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return s_fail_io (self, errno, "create segment");
    uint8_t header[S_SEG_HEADER];
    s_header_encode (self, first_seq, header);
    if (shoal_io_write_all (self->io, fd, header, S_SEG_HEADER, 0) || self->io->fsync (self->io, fd)
        || self->io->sync_dir (self->io, self->dir)) {
        int err = errno;
        self->io->close (self->io, fd);
        self->io->unlink (self->io, path);
        return s_fail_io (self, err, "create segment");
    }
    s_segment_t *segment = s_segment_add (self, first_seq);
    if (!segment) {
        self->io->close (self->io, fd);
        return s_fail (self, SHOAL_ERR_IO, "out of memory");
    }
    segment->header_checked = true;
    self->fd = fd;
    return 0;
}

//  Seals the active segment and starts the next one.
static int
s_roll (shoal_log_t *self)
{
    if (s_sync (self, false))
        return -1;
    s_segment_t *active = &self->segments[self->segment_count - 1];
    if (s_index_write (self, active, true)) {
        self->failed = true;
        return -1;
    }
    uint64_t next = active->last_seq + 1;
    self->io->close (self->io, self->fd);
    self->fd = -1;
    return s_segment_create (self, next);
}

//  --------------------------------------------------------------------------
//  Opening and recovery

//  Scans a segment from its header, rebuilding its index. Stops at the
//  first frame that is short, bad, or out of sequence, and returns the
//  offset where whole records end in *good_end_p. why gets the problem.
static int
s_segment_scan (shoal_log_t *self, s_segment_t *segment, uint64_t file_size, uint64_t *good_end_p,
                char *why, size_t why_size)
{
    s_reader_t reader;
    s_reader_init (&reader);
    segment->size = file_size;
    segment->entry_count = 0;
    segment->last_seq = segment->first_seq - 1;
    segment->last_time = 0;
    why[0] = 0;
    int rc = 0;
    const uint8_t *header;
    int got = s_reader_fetch (self, &reader, segment, 0, S_SEG_HEADER, &header);
    if (got < 0)
        rc = -1;
    else if (got > 0) {
        snprintf (why, why_size, "segment shorter than its header");
        *good_end_p = 0;
    }
    else if (s_header_check (self, header, segment->first_seq, why, why_size))
        *good_end_p = 0;
    else {
        segment->header_checked = true;
        uint64_t offset = S_SEG_HEADER;
        uint64_t seq = segment->first_seq;
        while (offset < file_size) {
            const uint8_t *data;
            uint32_t size;
            int64_t time_ns;
            if (s_frame_read (self, &reader, segment, offset, seq, true, &data, &size, &time_ns)) {
                if (self->error == SHOAL_ERR_IO)
                    rc = -1;
                else
                    snprintf (why, why_size, "%s", self->error_text);
                break;
            }
            if (s_entry_add (segment, seq, offset, time_ns, self->config.index_interval)) {
                rc = s_fail (self, SHOAL_ERR_IO, "out of memory");
                break;
            }
            segment->last_seq = seq++;
            segment->last_time = time_ns;
            offset += S_FRAME + size;
        }
        *good_end_p = offset < file_size ? offset : file_size;
    }
    s_reader_destroy (self, &reader);
    return rc;
}

static int
s_compare_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

//  The first seqs of the segment files in dir, sorted.
static int
s_list_segments (const char *dir, uint64_t **firsts_p, size_t *count_p)
{
    DIR *handle = opendir (dir);
    if (!handle)
        return -1;
    uint64_t *firsts = NULL;
    size_t count = 0, alloc = 0;
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        const char *name = entry->d_name;
        if (strlen (name) != S_NAME_DIGITS + 4 || strcmp (name + S_NAME_DIGITS, ".seg") != 0)
            continue;
        if (strspn (name, "0123456789") != S_NAME_DIGITS)
            continue;
        if (count == alloc) {
            alloc = alloc ? 2 * alloc : 64;
            uint64_t *grown = (uint64_t *) realloc (firsts, alloc * sizeof (uint64_t));
            if (!grown) {
                free (firsts);
                closedir (handle);
                errno = ENOMEM;
                return -1;
            }
            firsts = grown;
        }
        firsts[count++] = strtoull (name, NULL, 10);
    }
    closedir (handle);
    if (count > 1)
        qsort (firsts, count, sizeof (uint64_t), s_compare_u64);
    *firsts_p = firsts;
    *count_p = count;
    return 0;
}

static void
s_free (shoal_log_t *self)
{
    s_reader_destroy (self, &self->reader);
    if (self->fd >= 0)
        self->io->close (self->io, self->fd);
    for (size_t i = 0; i < self->segment_count; i++)
        free (self->segments[i].entries);
    free (self->segments);
    free (self->buffer);
    free (self->dir);
    free (self);
}

//  Opens every segment: trusts whole indexes, scans the rest, cuts a torn
//  tail of the last segment. 0, or -1 with the reason.
static int
s_recover (shoal_log_t *self)
{
    uint64_t *firsts;
    size_t count;
    if (s_list_segments (self->dir, &firsts, &count))
        return s_fail (self, SHOAL_ERR_IO, "cannot list %s: %s", self->dir, strerror (errno));
    //  Seqs start at 1: a segment named 0 is damage, and taking it would
    //  make seq 0 part of the log (found by fuzz_log).
    if (count && firsts[0] == 0) {
        free (firsts);
        return s_fail (self, SHOAL_ERR_CORRUPT,
                       "%s: segment %020d.seg cannot exist (seqs start at 1)", self->dir, 0);
    }
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        bool last = i + 1 == count;
        char path[4200];
        s_seg_path (self, firsts[i], "seg", path, sizeof path);
        int fd = self->io->open (self->io, path, last ? O_RDWR : O_RDONLY, 0);
        off_t file_size = fd >= 0 ? self->io->size (self->io, fd) : -1;
        if (file_size < 0) {
            rc = s_fail (self, SHOAL_ERR_IO, "cannot open %s: %s", path, strerror (errno));
            if (fd >= 0)
                self->io->close (self->io, fd);
            break;
        }
        s_segment_t *segment = s_segment_add (self, firsts[i]);
        if (!segment) {
            self->io->close (self->io, fd);
            rc = s_fail (self, SHOAL_ERR_IO, "out of memory");
            break;
        }
        if (s_index_load (self, segment, (uint64_t) file_size) == 0) {
            if (last)
                self->fd = fd;
            else
                self->io->close (self->io, fd);
            continue;
        }
        uint64_t good_end;
        char why[sizeof self->error_text];
        if (last)
            self->scanned = true;
        if (s_segment_scan (self, segment, (uint64_t) file_size, &good_end, why, sizeof why)) {
            self->io->close (self->io, fd);
            rc = -1;
            break;
        }
        if (!last) {
            self->io->close (self->io, fd);
            if (why[0]) {
                segment->damaged = true;
                snprintf (segment->damage, sizeof segment->damage, "%.200s", why);
            }
            else if (s_index_write (self, segment, true))
                rc = -1;
            continue;
        }
        //  The last segment: a torn tail is cut (invariant 4). A segment
        //  whose header never became whole held no record: remove it.
        if (good_end < S_SEG_HEADER) {
            if ((uint64_t) file_size >= S_SEG_HEADER) {
                self->io->close (self->io, fd);
                rc = s_fail (self, SHOAL_ERR_CORRUPT, "%s: %s; cannot append after it", path, why);
                break;
            }
            self->io->close (self->io, fd);
            self->recovered_bytes += (uint64_t) file_size;
            self->segment_count--;
            free (segment->entries);
            if (self->io->unlink (self->io, path) || self->io->sync_dir (self->io, self->dir))
                rc = s_fail (self, SHOAL_ERR_IO, "cannot remove %s: %s", path, strerror (errno));
            char idx[4200];
            s_seg_path (self, firsts[i], "idx", idx, sizeof idx);
            self->io->unlink (self->io, idx);
            break;
        }
        if (good_end < (uint64_t) file_size) {
            if (self->io->ftruncate (self->io, fd, (off_t) good_end)) {
                self->io->close (self->io, fd);
                rc = s_fail (self, SHOAL_ERR_IO, "cannot cut the torn tail of %s: %s", path,
                             strerror (errno));
                break;
            }
            self->recovered_bytes += (uint64_t) file_size - good_end;
            segment->size = good_end;
        }
        //  What was found is made durable before anything is built on it.
        if (self->io->fsync (self->io, fd)) {
            self->io->close (self->io, fd);
            rc = s_fail (self, SHOAL_ERR_IO, "cannot sync %s: %s", path, strerror (errno));
            break;
        }
        self->fd = fd;
    }
    free (firsts);
    if (rc)
        return -1;
    //  The seq chain across segments (invariant 1). A damaged segment's end
    //  is known from its successor's start.
    for (size_t i = 0; i + 1 < self->segment_count; i++) {
        s_segment_t *segment = &self->segments[i];
        uint64_t next = self->segments[i + 1].first_seq;
        if (segment->damaged && segment->last_seq + 1 < next)
            segment->last_seq = next - 1;
        else if (segment->last_seq + 1 != next)
            return s_fail (self, SHOAL_ERR_CORRUPT,
                           "%s: segment %020llu.seg ends at seq %llu but the next starts at %llu",
                           self->dir, (unsigned long long) segment->first_seq,
                           (unsigned long long) segment->last_seq, (unsigned long long) next);
    }
    if (self->segment_count) {
        self->head = self->segments[self->segment_count - 1].last_seq;
        self->empty_first = self->segments[0].first_seq;
    }
    self->written = self->durable = self->head;
    return 0;
}

void
shoal_log_config_defaults (shoal_log_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->fsync = SHOAL_FSYNC_BATCH;
    config->window_us = 2000;
    config->buffer_size = 1 << 20;
    config->segment_size = 64ULL << 20;
    config->index_interval = 16 << 10;
    config->max_record = 16 << 20;
    config->io = shoal_io_posix ();
}

int
shoal_fsync_parse (const char *name, shoal_fsync_t *policy)
{
    static const char *names[] = {"batch", "always", "never"};
    for (int i = 0; i < 3; i++)
        if (name && strcmp (name, names[i]) == 0) {
            *policy = (shoal_fsync_t) i;
            return 0;
        }
    return -1;
}

const char *
shoal_fsync_name (shoal_fsync_t policy)
{
    return policy == SHOAL_FSYNC_ALWAYS  ? "always"
           : policy == SHOAL_FSYNC_NEVER ? "never"
                                         : "batch";
}

shoal_log_t *
shoal_log_open (const char *dir, const uint8_t origin[SHOAL_ID_SIZE], const char *stream,
                bool create, const shoal_log_config_t *config, int *error_p)
{
    int error = SHOAL_OK;
    shoal_log_t *self = NULL;
    s_open_error[0] = 0;
    if (!dir || !origin || !shoal_stream_name_valid (stream)) {
        error = SHOAL_ERR_INVALID;
        snprintf (s_open_error, sizeof s_open_error, "invalid log directory, origin or stream");
        goto done;
    }
    self = (shoal_log_t *) calloc (1, sizeof (shoal_log_t));
    if (!self || !(self->dir = strdup (dir))) {
        error = SHOAL_ERR_IO;
        snprintf (s_open_error, sizeof s_open_error, "out of memory");
        goto done;
    }
    self->fd = -1;
    self->pending_since = -1;
    self->empty_first = 1;
    s_reader_init (&self->reader);
    memcpy (self->origin, origin, SHOAL_ID_SIZE);
    snprintf (self->stream, sizeof self->stream, "%s", stream);
    if (config)
        self->config = *config;
    else
        shoal_log_config_defaults (&self->config);
    shoal_log_config_t defaults;
    shoal_log_config_defaults (&defaults);
    if (!self->config.io)
        self->config.io = defaults.io;
    if (self->config.window_us <= 0)
        self->config.window_us = defaults.window_us;
    if (self->config.buffer_size < 4096)
        self->config.buffer_size = 4096;
    if (self->config.segment_size < S_SEG_HEADER + S_FRAME)
        self->config.segment_size = defaults.segment_size;
    if (self->config.index_interval == 0)
        self->config.index_interval = defaults.index_interval;
    if (self->config.max_record == 0)
        self->config.max_record = defaults.max_record;
    self->io = self->config.io;
    self->buffer_alloc = self->config.buffer_size;
    self->buffer = (uint8_t *) malloc (self->buffer_alloc);
    if (!self->buffer) {
        error = SHOAL_ERR_IO;
        snprintf (s_open_error, sizeof s_open_error, "out of memory");
        goto done;
    }
    if (access (dir, F_OK) != 0) {
        if (!create) {
            error = SHOAL_ERR_NOT_FOUND;
            snprintf (s_open_error, sizeof s_open_error, "no log at %s", dir);
            goto done;
        }
        if (shoal_io_mkdirs (self->io, dir)) {
            error = s_errno_code (errno);
            snprintf (s_open_error, sizeof s_open_error, "cannot create %s: %s", dir,
                      strerror (errno));
            goto done;
        }
    }
    if (s_recover (self)) {
        error = self->error;
        snprintf (s_open_error, sizeof s_open_error, "%s", self->error_text);
    }
done:
    if (error && self) {
        s_free (self);
        self = NULL;
    }
    if (error_p)
        *error_p = error;
    return self;
}

void
shoal_log_close (shoal_log_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_log_t *self = *self_p;
    //  A clean close leaves an index that covers the active segment, so the
    //  next open reads no record (invariant 2). A failed log leaves none
    //  that matches, so the next open scans and repairs.
    if (!self->failed && self->segment_count && s_sync (self, true) == 0)
        s_index_write (self, &self->segments[self->segment_count - 1], false);
    s_free (self);
    *self_p = NULL;
}

const char *
shoal_log_open_error (void)
{
    return s_open_error;
}

//  --------------------------------------------------------------------------
//  Appending

int
shoal_log_append (shoal_log_t *self, uint64_t seq, int64_t time_ns, const void *data, size_t size)
{
    if (self->failed)
        return s_fail (self, SHOAL_ERR_FAILED, "log %s failed after an I/O error; reopen it",
                       self->dir);
    if (size > self->config.max_record || size > UINT32_MAX)
        return s_fail (self, SHOAL_ERR_INVALID, "record of %zu bytes is over the maximum of %zu",
                       size, self->config.max_record);
    bool empty = self->head == 0 && self->segment_count == 0;
    if (seq == 0 || (!empty && seq != self->head + 1))
        return s_fail (self, SHOAL_ERR_INVALID, "append of seq %llu, expected %llu",
                       (unsigned long long) seq, (unsigned long long) (self->head + 1));
    size_t frame_size = S_FRAME + size;
    if (self->segment_count == 0) {
        if (s_segment_create (self, seq))
            return -1;
        self->empty_first = seq;
    }
    else {
        s_segment_t *active = &self->segments[self->segment_count - 1];
        if (active->last_seq >= active->first_seq
            && active->size + self->buffered + frame_size > self->config.segment_size
            && s_roll (self))
            return -1;
    }
    if (self->buffered + frame_size > self->buffer_alloc) {
        //  A full buffer ends the group: written and synced (policy batch).
        if (s_sync (self, false))
            return -1;
        if (frame_size > self->buffer_alloc) {
            uint8_t *buffer = (uint8_t *) realloc (self->buffer, frame_size);
            if (!buffer)
                return s_fail (self, SHOAL_ERR_IO, "out of memory");
            self->buffer = buffer;
            self->buffer_alloc = frame_size;
        }
    }
    s_segment_t *active = &self->segments[self->segment_count - 1];
    uint64_t offset = active->size + self->buffered;
    if (s_entry_add (active, seq, offset, time_ns, self->config.index_interval))
        return s_fail (self, SHOAL_ERR_IO, "out of memory");
    uint8_t *frame = self->buffer + self->buffered;
    s_frame_encode (frame, seq, time_ns, data, size);
    if (size)
        memcpy (frame + S_FRAME, data, size);
    self->buffered += frame_size;
    active->last_seq = seq;
    active->last_time = time_ns;
    self->head = seq;

    if (self->config.fsync == SHOAL_FSYNC_ALWAYS)
        return s_sync (self, false);
    //  The clock is read when a group starts and then every few appends:
    //  reading it costs a third of an append. An owner with a poll loop
    //  flushes at shoal_log_deadline whatever the count.
    if (self->pending_since < 0) {
        self->pending_since = s_now_mono ();
        self->unclocked = 0;
    }
    else if (++self->unclocked >= S_CLOCK_EVERY) {
        self->unclocked = 0;
        if (s_now_mono () - self->pending_since >= self->config.window_us * 1000)
            return s_sync (self, false);
    }
    return 0;
}

int
shoal_log_flush (shoal_log_t *self)
{
    if (self->failed)
        return s_fail (self, SHOAL_ERR_FAILED, "log %s failed after an I/O error; reopen it",
                       self->dir);
    return self->segment_count ? s_sync (self, false) : 0;
}

int
shoal_log_flush_due (shoal_log_t *self)
{
    int64_t deadline = shoal_log_deadline (self);
    if (deadline < 0 || s_now_mono () < deadline)
        return 0;
    return shoal_log_flush (self);
}

int64_t
shoal_log_deadline (const shoal_log_t *self)
{
    if (self->pending_since < 0 || self->failed)
        return -1;
    return self->pending_since + self->config.window_us * 1000;
}

//  --------------------------------------------------------------------------
//  Accessors

uint64_t
shoal_log_first (const shoal_log_t *self)
{
    return self->segment_count ? self->segments[0].first_seq : self->empty_first;
}

uint64_t
shoal_log_head (const shoal_log_t *self)
{
    return self->head;
}

uint64_t
shoal_log_durable (const shoal_log_t *self)
{
    return self->durable;
}

uint64_t
shoal_log_size (const shoal_log_t *self)
{
    uint64_t size = self->buffered;
    for (size_t i = 0; i < self->segment_count; i++)
        size += self->segments[i].size;
    return size;
}

size_t
shoal_log_segments (const shoal_log_t *self)
{
    return self->segment_count;
}

const uint8_t *
shoal_log_origin (const shoal_log_t *self)
{
    return self->origin;
}

const char *
shoal_log_stream (const shoal_log_t *self)
{
    return self->stream;
}

const char *
shoal_log_dir (const shoal_log_t *self)
{
    return self->dir;
}

uint64_t
shoal_log_recovered_bytes (const shoal_log_t *self)
{
    return self->recovered_bytes;
}

bool
shoal_log_was_scanned (const shoal_log_t *self)
{
    return self->scanned;
}

int
shoal_log_error (const shoal_log_t *self)
{
    return self->error;
}

const char *
shoal_log_error_text (const shoal_log_t *self)
{
    return self->error_text;
}

bool
shoal_log_failed (const shoal_log_t *self)
{
    return self->failed;
}

void
shoal_log_set_retention (shoal_log_t *self, uint64_t bytes, int64_t age_ns)
{
    self->config.retain_bytes = bytes;
    self->config.retain_age_ns = age_ns;
}

//  --------------------------------------------------------------------------
//  Reading

//  Checks that seq can be read, and that its bytes are in the file.
static int
s_readable (shoal_log_t *self, uint64_t seq)
{
    if (seq < shoal_log_first (self))
        return s_fail (self, SHOAL_ERR_TRIMMED, "seq %llu is below the first seq %llu",
                       (unsigned long long) seq, (unsigned long long) shoal_log_first (self));
    if (seq > self->head || seq == 0)
        return s_fail (self, SHOAL_ERR_NOT_FOUND, "seq %llu is above the head %llu",
                       (unsigned long long) seq, (unsigned long long) self->head);
    if (seq > self->written && s_write_buffer (self))
        return -1;
    return 0;
}

int
shoal_log_read (shoal_log_t *self, uint64_t seq, uint8_t **data_p, size_t *size_p,
                int64_t *time_ns_p)
{
    if (s_readable (self, seq))
        return -1;
    s_segment_t *segment = s_segment_for (self, seq);
    uint64_t offset;
    const uint8_t *data;
    uint32_t size;
    int64_t time_ns;
    if (s_locate (self, &self->reader, segment, seq, &offset)
        || s_frame_read (self, &self->reader, segment, offset, seq, true, &data, &size, &time_ns))
        return -1;
    uint8_t *copy = (uint8_t *) malloc (size ? size : 1);
    if (!copy)
        return s_fail (self, SHOAL_ERR_IO, "out of memory");
    memcpy (copy, data, size);
    *data_p = copy;
    *size_p = size;
    if (time_ns_p)
        *time_ns_p = time_ns;
    return 0;
}

shoal_log_iter_t *
shoal_log_iter_new (shoal_log_t *self, uint64_t from, uint64_t to)
{
    if (from == 0)
        from = 1;
    if (from < shoal_log_first (self)) {
        s_fail (self, SHOAL_ERR_TRIMMED, "seq %llu is below the first seq %llu",
                (unsigned long long) from, (unsigned long long) shoal_log_first (self));
        return NULL;
    }
    shoal_log_iter_t *iter = (shoal_log_iter_t *) calloc (1, sizeof (shoal_log_iter_t));
    if (!iter) {
        s_fail (self, SHOAL_ERR_IO, "out of memory");
        return NULL;
    }
    iter->log = self;
    iter->seq = from;
    iter->to = to;
    s_reader_init (&iter->reader);
    return iter;
}

void
shoal_log_iter_destroy (shoal_log_iter_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_reader_destroy ((*self_p)->log, &(*self_p)->reader);
    free (*self_p);
    *self_p = NULL;
}

int
shoal_log_iter_next (shoal_log_iter_t *self, uint64_t *seq_p, int64_t *time_ns_p,
                     const uint8_t **data_p, size_t *size_p)
{
    shoal_log_t *log = self->log;
    uint64_t last = self->to ? self->to : log->head;
    if (last > log->head)
        last = log->head;
    if (self->seq > last)
        return 0;
    if (s_readable (log, self->seq))
        return -1;
    s_segment_t *segment = s_segment_for (log, self->seq);
    if (self->offset == 0 || self->reader.first_seq != segment->first_seq
        || self->offset >= segment->size) {
        if (s_locate (log, &self->reader, segment, self->seq, &self->offset))
            return -1;
    }
    const uint8_t *data;
    uint32_t size;
    int64_t time_ns;
    if (s_frame_read (log, &self->reader, segment, self->offset, self->seq, true, &data, &size,
                      &time_ns))
        return -1;
    *seq_p = self->seq;
    if (time_ns_p)
        *time_ns_p = time_ns;
    *data_p = data;
    *size_p = size;
    self->seq++;
    self->offset = self->seq > segment->last_seq ? 0 : self->offset + S_FRAME + size;
    return 1;
}

uint64_t
shoal_log_seek_time (shoal_log_t *self, int64_t time_ns)
{
    for (size_t i = 0; i < self->segment_count; i++) {
        s_segment_t *segment = &self->segments[i];
        if (segment->last_seq < segment->first_seq || segment->last_time < time_ns)
            continue;
        //  Start at the last index entry older than time_ns, then walk.
        uint64_t from = segment->first_seq;
        for (size_t e = 0; e < segment->entry_count && segment->entries[e].time_ns < time_ns; e++)
            from = segment->entries[e].seq;
        shoal_log_iter_t *iter = shoal_log_iter_new (self, from, segment->last_seq);
        uint64_t seq;
        int64_t at;
        const uint8_t *data;
        size_t size;
        uint64_t found = 0;
        int rc;
        while (iter && (rc = shoal_log_iter_next (iter, &seq, &at, &data, &size)) == 1)
            if (at >= time_ns) {
                found = seq;
                break;
            }
        //  A record that cannot be read may be the one sought: answer its
        //  seq, so the reader meets the error instead of skipping it.
        if (iter && !found && rc < 0)
            found = iter->seq;
        shoal_log_iter_destroy (&iter);
        if (found)
            return found;
    }
    return self->head + 1;
}

//  --------------------------------------------------------------------------
//  Retention and verification

int
shoal_log_apply_retention (shoal_log_t *self, int64_t now_ns)
{
    int dropped = 0;
    uint64_t total = shoal_log_size (self);
    while (self->segment_count > 1) {
        s_segment_t *oldest = &self->segments[0];
        bool too_big = self->config.retain_bytes && total > self->config.retain_bytes;
        bool too_old =
            self->config.retain_age_ns && oldest->last_time < now_ns - self->config.retain_age_ns;
        if (!too_big && !too_old)
            break;
        char path[4200];
        s_seg_path (self, oldest->first_seq, "seg", path, sizeof path);
        if (self->io->unlink (self->io, path) && errno != ENOENT)
            return s_fail (self, SHOAL_ERR_IO, "cannot remove %s: %s", path, strerror (errno));
        s_seg_path (self, oldest->first_seq, "idx", path, sizeof path);
        self->io->unlink (self->io, path);
        if (self->reader.fd >= 0 && self->reader.first_seq == oldest->first_seq)
            s_reader_close (self, &self->reader);
        total -= oldest->size;
        free (oldest->entries);
        memmove (self->segments, self->segments + 1,
                 (self->segment_count - 1) * sizeof (s_segment_t));
        self->segment_count--;
        dropped++;
    }
    if (dropped && self->io->sync_dir (self->io, self->dir))
        return s_fail (self, SHOAL_ERR_IO, "cannot sync %s: %s", self->dir, strerror (errno));
    return dropped;
}

int
shoal_log_reset (shoal_log_t *self)
{
    if (self->fd >= 0) {
        self->io->close (self->io, self->fd);
        self->fd = -1;
    }
    s_reader_close (self, &self->reader);
    self->buffered = 0;
    while (self->segment_count > 0) {
        s_segment_t *oldest = &self->segments[0];
        char path[4200];
        s_seg_path (self, oldest->first_seq, "seg", path, sizeof path);
        if (self->io->unlink (self->io, path) && errno != ENOENT)
            return s_fail_io (self, errno, "remove segment");
        s_seg_path (self, oldest->first_seq, "idx", path, sizeof path);
        self->io->unlink (self->io, path);
        free (oldest->entries);
        memmove (self->segments, self->segments + 1,
                 (self->segment_count - 1) * sizeof (s_segment_t));
        self->segment_count--;
    }
    self->head = self->written = self->durable = 0;
    self->empty_first = 1;
    self->pending_since = -1;
    if (self->io->sync_dir (self->io, self->dir))
        return s_fail_io (self, errno, "sync of the log directory");
    return 0;
}

int
shoal_log_verify (shoal_log_t *self, shoal_log_report_fn *report, void *arg)
{
    if (s_write_buffer (self))
        return -1;
    int problems = 0;
    s_reader_t reader;
    s_reader_init (&reader);
    for (size_t i = 0; i < self->segment_count; i++) {
        s_segment_t *segment = &self->segments[i];
        char path[4200];
        s_seg_path (self, segment->first_seq, "seg", path, sizeof path);
        segment->header_checked = false;
        if (s_segment_check (self, &reader, segment)) {
            if (self->error == SHOAL_ERR_IO)
                break;
            problems++;
            if (report)
                report (arg, path, 0, self->error_text);
            continue;
        }
        uint64_t offset = S_SEG_HEADER;
        uint64_t seq = segment->first_seq;
        while (seq <= segment->last_seq) {
            const uint8_t *data;
            uint32_t size;
            int64_t time_ns;
            if (s_frame_read (self, &reader, segment, offset, seq, true, &data, &size, &time_ns)
                == 0) {
                offset += S_FRAME + size;
                seq++;
                continue;
            }
            if (self->error == SHOAL_ERR_IO) {
                s_reader_destroy (self, &reader);
                return -1;
            }
            problems++;
            if (report)
                report (arg, path, offset, self->error_text);
            //  A bad payload leaves the frame's length trustworthy; a bad
            //  frame header does not: go on from the next index entry.
            uint32_t frame_size, crc;
            uint64_t frame_seq;
            const uint8_t *frame;
            if (s_reader_fetch (self, &reader, segment, offset, S_FRAME, &frame) == 0
                && s_frame_decode (frame, &frame_size, &frame_seq, &time_ns, &crc) == 0
                && frame_seq == seq) {
                offset += S_FRAME + frame_size;
                seq++;
                continue;
            }
            const s_entry_t *next = NULL;
            for (size_t e = 0; e < segment->entry_count; e++)
                if (segment->entries[e].seq > seq) {
                    next = &segment->entries[e];
                    break;
                }
            if (!next)
                break;
            seq = next->seq;
            offset = next->offset;
        }
    }
    s_reader_destroy (self, &reader);
    return problems;
}
