/*  =========================================================================
    shoal_event - one event: the unit that shoal records, sends and replays

    The event keeps its fields in plain C form (owned strings, fixed 16-byte
    ids, a copied payload, an ordered header list). proto/shoal.proto is the
    model; this file is a hand-written codec for it (a strict one-pass
    decoder, an encoder that gives protobuf-c's exact bytes), so the hot
    path makes no intermediate protobuf-c message. The tests hold both
    against protobuf-c and protoc.

    Invariants kept by every function here:
    1. A string field is NULL (unset, read as "") or an owned, valid UTF-8
       string with no NUL inside; stream and type, when set, follow their
       name rules.
    2. has_origin and has_id tell whether the 16 bytes are meaningful; an
       id is never shorter or longer than 16 bytes.
    3. Header names are unique, non-empty, and kept in the order first set.
    4. decode returns either a fully valid event or NULL with the one error
       code that names the first problem found; it never returns a partial
       event and never reads outside the given bytes.
    5. A decoded event's strings, payload and headers (their array, then
       each name and value) live in one allocation with it, a tail right
       after the struct. A string, payload, header array, header name or
       header value pointer either points into that tail (released with
       the event) or is an allocation of its own (a setter's); s_release
       frees only the latter.
    6. A decoded event's allocation is a shoal_pool block (pool_class says
       which); every other event is a plain calloc (pool_class 0). Decoded
       events are made in an engine thread and destroyed in the
       application's, which the pool serves better than malloc.
    7. An event of more than S_INDEX_MIN headers has a header index: each
       header's position by its name, under a keyed hash (SipHash, one
       random key per process), so a name is found without a scan and a stranger's
       names collide only by chance. Appending a header adds it; anything
       else that moves headers builds the index again.
    ========================================================================= */

#include "shoal_event.h"
#include "shoal_error.h"
#include "shoal_pool.h"
#include "shoal_wire.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char *name;  //  header name, unique within the event, non-empty
    char *value; //  header value, may be empty
} s_header_t;

#define S_INDEX_MIN 16 //  up to this many headers, a scan finds a name

//  Open addressing, linear probing, at most half full.
typedef struct {
    size_t size;      //  slots, a power of two
    uint32_t slots[]; //  header position + 1, 0 = empty
} s_index_t;

//  The indexes' SipHash key: random, set once by s_sodium_init_once.
static uint8_t s_index_key[crypto_shorthash_KEYBYTES];

struct _shoal_event_t {
    char *stream;                  //  stream name, or NULL when unset
    char *type;                    //  event type, or NULL when unset
    char *key;                     //  entity / aggregate key, or NULL
    char *correlation_id;          //  correlation id, or NULL
    char *causation_id;            //  causation id, or NULL
    char *content_type;            //  media type of the payload, or NULL
    uint8_t origin[SHOAL_ID_SIZE]; //  node id of the origin, valid if has_origin
    bool has_origin;               //  origin has been set
    uint8_t id[SHOAL_ID_SIZE];     //  idempotency key, valid if has_id
    bool has_id;                   //  id has been set
    uint64_t seq;                  //  position in (origin, stream), 0 = unassigned
    int64_t time_ns;               //  unix ns when recorded, 0 = unassigned
    uint32_t schema_version;       //  payload schema version
    uint8_t *payload;              //  payload bytes, or NULL when empty
    size_t payload_size;           //  bytes in payload
    s_header_t *headers;           //  header list, header_count used
    size_t header_count;           //  headers in use
    size_t header_alloc;           //  headers allocated
    s_index_t *header_index;       //  when header_count > S_INDEX_MIN, else NULL
    uint8_t *tail;                 //  decoded strings, payload, headers: in this allocation
    size_t tail_size;              //  bytes in tail
    int pool_class;                //  shoal_pool class of this allocation, 0 = calloc
};

//  --------------------------------------------------------------------------
//  Name and string rules

static bool
s_is_lower_alnum (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool
s_is_alnum_ (char c)
{
    return s_is_lower_alnum (c) || (c >= 'A' && c <= 'Z') || c == '_';
}

bool
shoal_stream_name_valid (const char *name)
{
    if (!name || !s_is_lower_alnum (name[0]))
        return false;
    size_t len = 1;
    for (const char *p = name + 1; *p; p++, len++) {
        if (len >= SHOAL_STREAM_MAX)
            return false;
        if (!(s_is_lower_alnum (*p) || *p == '.' || *p == '_' || *p == '-'))
            return false;
    }
    return true;
}

bool
shoal_type_name_valid (const char *name)
{
    if (!name || !s_is_alnum_ (name[0]))
        return false;
    size_t len = 1;
    for (const char *p = name + 1; *p; p++, len++) {
        if (len >= SHOAL_TYPE_MAX)
            return false;
        if (!(s_is_alnum_ (*p) || *p == '.' || *p == ':' || *p == '-'))
            return false;
    }
    return true;
}

//  Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
static bool
s_utf8_valid (const char *string)
{
    const unsigned char *s = (const unsigned char *) string;
    while (*s) {
        if (*s < 0x80) {
            s++;
            continue;
        }
        size_t extra;
        uint32_t cp;
        if ((*s & 0xE0) == 0xC0) {
            extra = 1;
            cp = *s & 0x1F;
        }
        else if ((*s & 0xF0) == 0xE0) {
            extra = 2;
            cp = *s & 0x0F;
        }
        else if ((*s & 0xF8) == 0xF0) {
            extra = 3;
            cp = *s & 0x07;
        }
        else
            return false;
        for (size_t i = 1; i <= extra; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false; //  also stops at the terminating NUL
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000)
            || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        s += extra + 1;
    }
    return true;
}

static uintptr_t
s_align_up (uintptr_t value, size_t alignment)
{
    return (value + alignment - 1) & ~(uintptr_t) (alignment - 1);
}

//  Whether pointer is in the event's tail (its decoded fields).
static bool
s_in_tail (const shoal_event_t *self, const void *pointer)
{
    const uint8_t *p = (const uint8_t *) pointer;
    return self->tail && p >= self->tail && p < self->tail + self->tail_size;
}

//  Frees a string, payload or header part unless it lives in the tail.
static void
s_release (const shoal_event_t *self, void *pointer)
{
    if (pointer && !s_in_tail (self, pointer))
        free (pointer);
}

//  Replaces *field by a copy of value ("" and NULL both clear it).
static int
s_set_string (shoal_event_t *self, char **field, const char *value)
{
    char *copy = NULL;
    if (value && *value) {
        copy = strdup (value);
        if (!copy)
            return -1;
    }
    s_release (self, *field);
    *field = copy;
    return 0;
}

static int
s_set_text (shoal_event_t *self, char **field, const char *value)
{
    if (value && !s_utf8_valid (value))
        return -1;
    return s_set_string (self, field, value);
}

//  --------------------------------------------------------------------------
//  The header index (invariant 7)

static void s_sodium_ready (void);

static size_t
s_index_slot (const s_index_t *index, const char *name)
{
    uint8_t hash[crypto_shorthash_BYTES];
    crypto_shorthash (hash, (const unsigned char *) name, strlen (name), s_index_key);
    uint64_t value;
    memcpy (&value, hash, sizeof value);
    return (size_t) value & (index->size - 1);
}

static void
s_index_add (s_index_t *index, const s_header_t *headers, size_t position)
{
    size_t slot = s_index_slot (index, headers[position].name);
    while (index->slots[slot])
        slot = (slot + 1) & (index->size - 1);
    index->slots[slot] = (uint32_t) position + 1;
}

//  Gives self the index its header count calls for, built anew (none up
//  to S_INDEX_MIN headers). Out of memory, it has none: names are found
//  by a scan, as in a small event.
static void
s_index_update (shoal_event_t *self)
{
    free (self->header_index);
    self->header_index = NULL;
    if (self->header_count <= S_INDEX_MIN || self->header_count > UINT32_MAX / 4)
        return;
    size_t size = 64;
    while (size < 4 * self->header_count) //  room to double before a rebuild
        size *= 2;
    s_index_t *index = (s_index_t *) calloc (1, sizeof (s_index_t) + size * sizeof (uint32_t));
    if (!index)
        return;
    s_sodium_ready ();
    index->size = size;
    for (size_t i = 0; i < self->header_count; i++)
        s_index_add (index, self->headers, i);
    self->header_index = index;
}

//  Keeps self's index up after a header was appended (its last).
static void
s_index_appended (shoal_event_t *self)
{
    if (self->header_count <= S_INDEX_MIN)
        return; //  a small event has none
    if (self->header_index && 2 * self->header_count <= self->header_index->size)
        s_index_add (self->header_index, self->headers, self->header_count - 1);
    else
        s_index_update (self);
}

//  --------------------------------------------------------------------------
//  Construction

shoal_event_t *
shoal_event_new (void)
{
    return (shoal_event_t *) calloc (1, sizeof (shoal_event_t));
}

static void
s_clear_headers (shoal_event_t *self)
{
    for (size_t i = 0; i < self->header_count; i++) {
        s_release (self, self->headers[i].name);
        s_release (self, self->headers[i].value);
    }
    s_release (self, self->headers);
    self->headers = NULL;
    self->header_count = 0;
    self->header_alloc = 0;
    free (self->header_index);
    self->header_index = NULL;
}

void
shoal_event_destroy (shoal_event_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_event_t *self = *self_p;
    //  A decoded event destroyed twice: its block is back in the pool
    //  already (and its first words are the pool's), so stop here.
    if (self->pool_class)
        shoal_pool_check (self, self->pool_class);
    s_release (self, self->stream);
    s_release (self, self->type);
    s_release (self, self->key);
    s_release (self, self->correlation_id);
    s_release (self, self->causation_id);
    s_release (self, self->content_type);
    s_release (self, self->payload);
    s_clear_headers (self);
    shoal_pool_put (self, self->pool_class);
    *self_p = NULL;
}

shoal_event_t *
shoal_event_dup (const shoal_event_t *self)
{
    if (!self)
        return NULL;
    shoal_event_t *copy = shoal_event_new ();
    if (!copy)
        return NULL;
    copy->has_origin = self->has_origin;
    memcpy (copy->origin, self->origin, SHOAL_ID_SIZE);
    copy->has_id = self->has_id;
    memcpy (copy->id, self->id, SHOAL_ID_SIZE);
    copy->seq = self->seq;
    copy->time_ns = self->time_ns;
    copy->schema_version = self->schema_version;
    int rc = s_set_string (copy, &copy->stream, self->stream)
             | s_set_string (copy, &copy->type, self->type)
             | s_set_string (copy, &copy->key, self->key)
             | s_set_string (copy, &copy->correlation_id, self->correlation_id)
             | s_set_string (copy, &copy->causation_id, self->causation_id)
             | s_set_string (copy, &copy->content_type, self->content_type)
             | shoal_event_set_payload (copy, self->payload, self->payload_size);
    //  The names are unique already: copied as they are, not set one by
    //  one (each set looks for its name in the others).
    if (rc == 0 && self->header_count) {
        copy->headers = (s_header_t *) calloc (self->header_count, sizeof (s_header_t));
        if (copy->headers)
            copy->header_alloc = self->header_count;
        else
            rc = -1;
        for (size_t i = 0; rc == 0 && i < self->header_count; i++) {
            s_header_t *header = &copy->headers[copy->header_count++];
            header->name = strdup (self->headers[i].name);
            header->value = strdup (self->headers[i].value);
            if (!header->name || !header->value)
                rc = -1;
        }
        if (rc == 0)
            s_index_update (copy);
    }
    if (rc != 0)
        shoal_event_destroy (&copy);
    return copy;
}

static bool
s_str_eq (const char *a, const char *b)
{
    return strcmp (a ? a : "", b ? b : "") == 0;
}

bool
shoal_event_eq (const shoal_event_t *a, const shoal_event_t *b)
{
    if (!a || !b)
        return a == b;
    if (a->has_origin != b->has_origin
        || (a->has_origin && memcmp (a->origin, b->origin, SHOAL_ID_SIZE) != 0))
        return false;
    if (a->has_id != b->has_id || (a->has_id && memcmp (a->id, b->id, SHOAL_ID_SIZE) != 0))
        return false;
    if (a->seq != b->seq || a->time_ns != b->time_ns || a->schema_version != b->schema_version)
        return false;
    if (!s_str_eq (a->stream, b->stream) || !s_str_eq (a->type, b->type)
        || !s_str_eq (a->key, b->key) || !s_str_eq (a->correlation_id, b->correlation_id)
        || !s_str_eq (a->causation_id, b->causation_id)
        || !s_str_eq (a->content_type, b->content_type))
        return false;
    if (a->payload_size != b->payload_size
        || (a->payload_size && memcmp (a->payload, b->payload, a->payload_size) != 0))
        return false;
    if (a->header_count != b->header_count)
        return false;
    for (size_t i = 0; i < a->header_count; i++) {
        const char *value = shoal_event_header (b, a->headers[i].name);
        if (!value || strcmp (value, a->headers[i].value) != 0)
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Setters

int
shoal_event_set_stream (shoal_event_t *self, const char *stream)
{
    if (!shoal_stream_name_valid (stream))
        return -1;
    return s_set_string (self, &self->stream, stream);
}

int
shoal_event_set_type (shoal_event_t *self, const char *type)
{
    if (!shoal_type_name_valid (type))
        return -1;
    return s_set_string (self, &self->type, type);
}

int
shoal_event_set_key (shoal_event_t *self, const char *key)
{
    return s_set_text (self, &self->key, key);
}

int
shoal_event_set_correlation_id (shoal_event_t *self, const char *correlation_id)
{
    return s_set_text (self, &self->correlation_id, correlation_id);
}

int
shoal_event_set_causation_id (shoal_event_t *self, const char *causation_id)
{
    return s_set_text (self, &self->causation_id, causation_id);
}

int
shoal_event_set_content_type (shoal_event_t *self, const char *content_type)
{
    return s_set_text (self, &self->content_type, content_type);
}

void
shoal_event_set_origin (shoal_event_t *self, const uint8_t origin[SHOAL_ID_SIZE])
{
    self->has_origin = origin != NULL;
    if (origin)
        memcpy (self->origin, origin, SHOAL_ID_SIZE);
}

void
shoal_event_set_id (shoal_event_t *self, const uint8_t id[SHOAL_ID_SIZE])
{
    self->has_id = id != NULL;
    if (id)
        memcpy (self->id, id, SHOAL_ID_SIZE);
}

void
shoal_event_set_seq (shoal_event_t *self, uint64_t seq)
{
    self->seq = seq;
}

void
shoal_event_set_time_ns (shoal_event_t *self, int64_t time_ns)
{
    self->time_ns = time_ns;
}

void
shoal_event_set_schema_version (shoal_event_t *self, uint32_t schema_version)
{
    self->schema_version = schema_version;
}

int
shoal_event_set_payload (shoal_event_t *self, const void *payload, size_t size)
{
    uint8_t *copy = NULL;
    if (payload && size) {
        copy = (uint8_t *) malloc (size);
        if (!copy)
            return -1;
        memcpy (copy, payload, size);
    }
    else
        size = 0;
    s_release (self, self->payload);
    self->payload = copy;
    self->payload_size = size;
    return 0;
}

static s_header_t *
s_find_header (const shoal_event_t *self, const char *name)
{
    const s_index_t *index = self->header_index;
    if (!index) {
        for (size_t i = 0; i < self->header_count; i++)
            if (strcmp (self->headers[i].name, name) == 0)
                return &self->headers[i];
        return NULL;
    }
    for (size_t slot = s_index_slot (index, name); index->slots[slot];
         slot = (slot + 1) & (index->size - 1)) {
        s_header_t *header = &self->headers[index->slots[slot] - 1];
        if (strcmp (header->name, name) == 0)
            return header;
    }
    return NULL;
}

int
shoal_event_set_header (shoal_event_t *self, const char *name, const char *value)
{
    if (!name || !*name || !value || !s_utf8_valid (name) || !s_utf8_valid (value))
        return -1;
    char *value_copy = strdup (value);
    if (!value_copy)
        return -1;
    s_header_t *header = s_find_header (self, name);
    if (header) {
        s_release (self, header->value);
        header->value = value_copy;
        return 0;
    }
    if (self->header_count == self->header_alloc) {
        //  A decoded event's array is in its tail: it moves out to grow.
        size_t alloc = self->header_alloc ? self->header_alloc * 2 : 4;
        bool in_tail = self->headers && s_in_tail (self, self->headers);
        s_header_t *headers =
            (s_header_t *) (in_tail ? malloc (alloc * sizeof (s_header_t))
                                    : realloc (self->headers, alloc * sizeof (s_header_t)));
        if (!headers) {
            free (value_copy);
            return -1;
        }
        if (in_tail)
            memcpy (headers, self->headers, self->header_count * sizeof (s_header_t));
        self->headers = headers;
        self->header_alloc = alloc;
    }
    char *name_copy = strdup (name);
    if (!name_copy) {
        free (value_copy);
        return -1;
    }
    self->headers[self->header_count].name = name_copy;
    self->headers[self->header_count].value = value_copy;
    self->header_count++;
    s_index_appended (self);
    return 0;
}

int
shoal_event_unset_header (shoal_event_t *self, const char *name)
{
    s_header_t *header = name ? s_find_header (self, name) : NULL;
    if (!header)
        return -1;
    s_release (self, header->name);
    s_release (self, header->value);
    size_t index = (size_t) (header - self->headers);
    memmove (header, header + 1, (self->header_count - index - 1) * sizeof (s_header_t));
    self->header_count--;
    s_index_update (self);
    return 0;
}

static pthread_once_t s_sodium_once = PTHREAD_ONCE_INIT;

static void
s_sodium_init (void)
{
    //  sodium_init fails only when the system has no entropy source at
    //  all; randombytes then aborts, which is the only safe answer.
    if (sodium_init () < 0)
        abort ();
}

//  Ids come from a per-thread pool refilled 256 at a time by ChaCha20 in
//  "fast key erasure" form: the thread's 32-byte key, taken once from the
//  system's random source, makes a keystream whose first 32 bytes become
//  the next key and whose rest is the pool; the old key is gone. That is a
//  userspace CSPRNG as arc4random and the kernel's own are built, at a
//  fraction of a getrandom call per 256 ids. A forked child forgets both
//  key and pool (pthread_atfork), so it can never hand out the ids its
//  parent will.
#define S_ID_POOL 256
static __thread uint8_t s_id_stream[crypto_stream_chacha20_KEYBYTES + S_ID_POOL * SHOAL_ID_SIZE];
static __thread uint8_t s_id_key[crypto_stream_chacha20_KEYBYTES];
static __thread bool s_id_keyed;
static __thread unsigned s_id_left;

static void
s_id_pool_forget (void)
{
    s_id_left = 0;
    s_id_keyed = false;
}

static void
s_sodium_init_once (void)
{
    s_sodium_init ();
    randombytes_buf (s_index_key, sizeof s_index_key);
    pthread_atfork (NULL, NULL, s_id_pool_forget);
}

static void
s_sodium_ready (void)
{
    pthread_once (&s_sodium_once, s_sodium_init_once);
}

static void
s_id_pool_refill (void)
{
    static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
    if (!s_id_keyed) {
        s_sodium_ready ();
        randombytes_buf (s_id_key, sizeof s_id_key);
        s_id_keyed = true;
    }
    crypto_stream_chacha20 (s_id_stream, sizeof s_id_stream, nonce, s_id_key);
    memcpy (s_id_key, s_id_stream, sizeof s_id_key);
    sodium_memzero (s_id_stream, sizeof s_id_key);
    s_id_left = S_ID_POOL;
}

size_t
shoal_event_stamp (shoal_event_t *self, const uint8_t origin[SHOAL_ID_SIZE])
{
    shoal_event_set_origin (self, origin);
    shoal_event_set_seq (self, UINT64_MAX);
    shoal_event_set_time_ns (self, shoal_time_ns ());
    if (!shoal_event_id (self))
        shoal_event_generate_id (self);
    return shoal_event_encoded_size (self);
}

void
shoal_event_generate_id (shoal_event_t *self)
{
    if (s_id_left == 0)
        s_id_pool_refill ();
    s_id_left--;
    uint8_t *id = s_id_stream + sizeof s_id_key + s_id_left * SHOAL_ID_SIZE;
    memcpy (self->id, id, SHOAL_ID_SIZE);
    sodium_memzero (id, SHOAL_ID_SIZE);
    self->has_id = true;
}

//  --------------------------------------------------------------------------
//  Getters

#define S_TEXT(field) ((field) ? (field) : "")

const char *
shoal_event_stream (const shoal_event_t *self)
{
    return S_TEXT (self->stream);
}

const char *
shoal_event_type (const shoal_event_t *self)
{
    return S_TEXT (self->type);
}

const char *
shoal_event_key (const shoal_event_t *self)
{
    return S_TEXT (self->key);
}

const char *
shoal_event_correlation_id (const shoal_event_t *self)
{
    return S_TEXT (self->correlation_id);
}

const char *
shoal_event_causation_id (const shoal_event_t *self)
{
    return S_TEXT (self->causation_id);
}

const char *
shoal_event_content_type (const shoal_event_t *self)
{
    return S_TEXT (self->content_type);
}

const uint8_t *
shoal_event_origin (const shoal_event_t *self)
{
    return self->has_origin ? self->origin : NULL;
}

const uint8_t *
shoal_event_id (const shoal_event_t *self)
{
    return self->has_id ? self->id : NULL;
}

uint64_t
shoal_event_seq (const shoal_event_t *self)
{
    return self->seq;
}

int64_t
shoal_event_time_ns (const shoal_event_t *self)
{
    return self->time_ns;
}

uint32_t
shoal_event_schema_version (const shoal_event_t *self)
{
    return self->schema_version;
}

const uint8_t *
shoal_event_payload (const shoal_event_t *self)
{
    return self->payload;
}

size_t
shoal_event_payload_size (const shoal_event_t *self)
{
    return self->payload_size;
}

const char *
shoal_event_header (const shoal_event_t *self, const char *name)
{
    s_header_t *header = name ? s_find_header (self, name) : NULL;
    return header ? header->value : NULL;
}

bool
shoal_event_header_indexed (const shoal_event_t *self)
{
    return self->header_index != NULL;
}

size_t
shoal_event_header_count (const shoal_event_t *self)
{
    return self->header_count;
}

const char *
shoal_event_header_name (const shoal_event_t *self, size_t index)
{
    return index < self->header_count ? self->headers[index].name : NULL;
}

const char *
shoal_event_header_value (const shoal_event_t *self, size_t index)
{
    return index < self->header_count ? self->headers[index].value : NULL;
}

//  --------------------------------------------------------------------------
//  Peek: the fields the engine routes on, without a decode

//  The top-level fields the engine routes on, by shoal_wire_field. 0, or
//  -1 when the bytes are not well-formed or origin/id are not 16 bytes.
int
shoal_event_peek (const uint8_t *data, size_t size, shoal_event_peek_t *peek)
{
    memset (peek, 0, sizeof *peek);
    size_t origin_size = 0, id_size = 0;
    const uint8_t *p = data, *end = data + size;
    while (p < end) {
        uint32_t field, type;
        uint64_t value = 0;
        const uint8_t *bytes = NULL;
        if (shoal_wire_field (&p, end, &field, &type, &value, &bytes))
            return -1;
        if (type == 0 && field == 3)
            peek->seq = value;
        else if (type == 0 && field == 6)
            peek->time_ns = (int64_t) value;
        else if (type == 2 && field == 1) {
            peek->origin = bytes;
            origin_size = (size_t) value;
        }
        else if (type == 2 && field == 7) {
            peek->id = bytes;
            id_size = (size_t) value;
        }
        else if (type == 2 && field == 2) {
            peek->stream = (const char *) bytes;
            peek->stream_size = (size_t) value;
        }
        else if (type == 2 && field == 4) {
            peek->type = (const char *) bytes;
            peek->type_size = (size_t) value;
        }
    }
    //  Later occurrences win, as in a full decode; only the final lengths count.
    if ((origin_size != 0 && origin_size != SHOAL_ID_SIZE)
        || (id_size != 0 && id_size != SHOAL_ID_SIZE))
        return -1;
    if (origin_size == 0)
        peek->origin = NULL;
    if (id_size == 0)
        peek->id = NULL;
    return 0;
}

//  --------------------------------------------------------------------------
//  Codec

//  The encoder is our own too, written to give exactly the bytes that
//  protobuf-c's pack gives (fields in number order, proto3 defaults left
//  out, map entries in header order); the tests compare the two.

static uint8_t *
s_put_varint (uint8_t *p, uint64_t value)
{
    return p + shoal_wire_put_varint (p, value);
}

//  A length-delimited field of number < 16 holding size bytes.
static size_t
s_bytes_size (size_t size)
{
    return 1 + shoal_wire_varint_size (size) + size;
}

static uint8_t *
s_put_bytes (uint8_t *p, uint32_t field, const void *data, size_t size)
{
    *p++ = (uint8_t) (field << 3 | 2);
    p = s_put_varint (p, size);
    memcpy (p, data, size);
    return p + size;
}

//  A string field, left out when empty.
static size_t
s_text_size (const char *text)
{
    return text && *text ? s_bytes_size (strlen (text)) : 0;
}

static uint8_t *
s_put_text (uint8_t *p, uint32_t field, const char *text)
{
    return text && *text ? s_put_bytes (p, field, text, strlen (text)) : p;
}

//  A varint field, left out when zero.
static size_t
s_number_size (uint64_t value)
{
    return value ? 1 + shoal_wire_varint_size (value) : 0;
}

static uint8_t *
s_put_number (uint8_t *p, uint32_t field, uint64_t value)
{
    if (!value)
        return p;
    *p++ = (uint8_t) (field << 3);
    return s_put_varint (p, value);
}

//  The body of a header map entry: { 1: name, 2: value }.
static size_t
s_entry_size (const s_header_t *header)
{
    return s_text_size (header->name) + s_text_size (header->value);
}

size_t
shoal_event_encoded_size (const shoal_event_t *self)
{
    size_t size = (self->has_origin ? s_bytes_size (SHOAL_ID_SIZE) : 0) + s_text_size (self->stream)
                  + s_number_size (self->seq) + s_text_size (self->type) + s_text_size (self->key)
                  + s_number_size ((uint64_t) self->time_ns)
                  + (self->has_id ? s_bytes_size (SHOAL_ID_SIZE) : 0)
                  + s_text_size (self->correlation_id) + s_text_size (self->causation_id)
                  + s_number_size (self->schema_version) + s_text_size (self->content_type)
                  + (self->payload_size ? s_bytes_size (self->payload_size) : 0);
    for (size_t i = 0; i < self->header_count; i++)
        size += s_bytes_size (s_entry_size (&self->headers[i]));
    return size;
}

size_t
shoal_event_encode_to (const shoal_event_t *self, uint8_t *buffer)
{
    uint8_t *p = buffer;
    if (self->has_origin)
        p = s_put_bytes (p, 1, self->origin, SHOAL_ID_SIZE);
    p = s_put_text (p, 2, self->stream);
    p = s_put_number (p, 3, self->seq);
    p = s_put_text (p, 4, self->type);
    p = s_put_text (p, 5, self->key);
    p = s_put_number (p, 6, (uint64_t) self->time_ns);
    if (self->has_id)
        p = s_put_bytes (p, 7, self->id, SHOAL_ID_SIZE);
    p = s_put_text (p, 8, self->correlation_id);
    p = s_put_text (p, 9, self->causation_id);
    p = s_put_number (p, 10, self->schema_version);
    p = s_put_text (p, 11, self->content_type);
    if (self->payload_size)
        p = s_put_bytes (p, 12, self->payload, self->payload_size);
    for (size_t i = 0; i < self->header_count; i++) {
        *p++ = 13 << 3 | 2;
        p = s_put_varint (p, s_entry_size (&self->headers[i]));
        p = s_put_text (p, 1, self->headers[i].name);
        p = s_put_text (p, 2, self->headers[i].value);
    }
    return (size_t) (p - buffer);
}

int
shoal_event_encode (const shoal_event_t *self, uint8_t **data_p, size_t *size_p)
{
    size_t size = shoal_event_encoded_size (self);
    //  malloc (0) may return NULL; an empty event still gets a buffer.
    uint8_t *data = (uint8_t *) malloc (size ? size : 1);
    if (!data)
        return -1;
    shoal_event_encode_to (self, data);
    *data_p = data;
    *size_p = size;
    return 0;
}

int
shoal_event_validate (const shoal_event_t *self, size_t max_size)
{
    if (!self)
        return SHOAL_ERR_INVALID;
    if (!self->stream || !shoal_stream_name_valid (self->stream))
        return SHOAL_ERR_BAD_STREAM;
    if (!self->type || !shoal_type_name_valid (self->type))
        return SHOAL_ERR_BAD_TYPE;
    if (shoal_event_encoded_size (self) > (max_size ? max_size : SHOAL_EVENT_MAX_SIZE_DEFAULT))
        return SHOAL_ERR_TOO_LARGE;
    return SHOAL_OK;
}

//  A run of bytes in the input, and whether the field was present.
typedef struct {
    const uint8_t *data; //  first byte
    size_t size;         //  byte count
} s_span_t;

//  The fields of an encoded event, found in one pass: spans into the input
//  and scalar values, checked only for wire-level form.
typedef struct {
    s_span_t origin, id, payload; //  bytes fields
    s_span_t text[6];             //  stream, type, key, correlation, causation, content type
    uint64_t seq;                 //  field 3
    uint64_t time_ns;             //  field 6
    uint64_t schema_version;      //  field 10
    s_span_t *headers;            //  name/value pairs, two spans each
    size_t header_count;          //  pairs
    size_t header_alloc;          //  pairs allocated
} s_fields_t;

//  Index in s_fields_t.text of each string field, -1 for the others.
static int
s_text_slot (uint32_t field)
{
    switch (field) {
        case 2: return 0;
        case 4: return 1;
        case 5: return 2;
        case 8: return 3;
        case 9: return 4;
        case 11: return 5;
        default: return -1;
    }
}

//  Reads a header map entry { 1: name, 2: value }.
static int
s_take_header (s_fields_t *fields, s_span_t entry)
{
    s_span_t pair[2] = {{(const uint8_t *) "", 0}, {(const uint8_t *) "", 0}};
    const uint8_t *p = entry.data, *end = entry.data + entry.size;
    while (p < end) {
        uint32_t field, type;
        uint64_t value = 0;
        const uint8_t *bytes = NULL;
        if (shoal_wire_field (&p, end, &field, &type, &value, &bytes))
            return SHOAL_ERR_MALFORMED;
        if (field == 1 || field == 2) {
            if (type != 2)
                return SHOAL_ERR_MALFORMED;
            pair[field - 1] = (s_span_t){bytes, (size_t) value};
        }
    }
    if (fields->header_count == fields->header_alloc) {
        size_t alloc = fields->header_alloc ? 2 * fields->header_alloc : 8;
        s_span_t *headers = (s_span_t *) realloc (fields->headers, 2 * alloc * sizeof (s_span_t));
        if (!headers)
            return SHOAL_ERR_INVALID;
        fields->headers = headers;
        fields->header_alloc = alloc;
    }
    fields->headers[2 * fields->header_count] = pair[0];
    fields->headers[2 * fields->header_count + 1] = pair[1];
    fields->header_count++;
    return SHOAL_OK;
}

//  One pass over the top-level fields. Later occurrences of a field win,
//  as protobuf says; a known field with the wrong wire type is malformed
//  (as protobuf-c has it); unknown fields are skipped.
static int
s_parse (const uint8_t *data, size_t size, s_fields_t *fields)
{
    const uint8_t *p = data, *end = data + size;
    while (p < end) {
        uint32_t field, type;
        uint64_t value = 0;
        const uint8_t *bytes = NULL;
        if (shoal_wire_field (&p, end, &field, &type, &value, &bytes))
            return SHOAL_ERR_MALFORMED;
        s_span_t span = {bytes, (size_t) value};
        int slot = s_text_slot (field);
        s_span_t *target = slot >= 0     ? &fields->text[slot]
                           : field == 1  ? &fields->origin
                           : field == 7  ? &fields->id
                           : field == 12 ? &fields->payload
                                         : NULL;
        if (target || field == 13) {
            if (type != 2)
                return SHOAL_ERR_MALFORMED;
            if (target)
                *target = span;
            else {
                int rc = s_take_header (fields, span);
                if (rc)
                    return rc;
            }
        }
        else if (field == 3 || field == 6 || field == 10) {
            if (type != 0)
                return SHOAL_ERR_MALFORMED;
            *(field == 3   ? &fields->seq
              : field == 6 ? &fields->time_ns
                           : &fields->schema_version) = value;
        }
        //  Any other field was stepped over.
    }
    return SHOAL_OK;
}

//  A string field as a C string at *cursor in the event's tail: BAD_UTF8
//  when it holds a NUL (a C string would cut it) or is not UTF-8.
static int
s_tail_string (char **field, s_span_t span, uint8_t **cursor, bool utf8)
{
    if (span.size == 0)
        return SHOAL_OK;
    if (memchr (span.data, 0, span.size))
        return SHOAL_ERR_BAD_UTF8;
    char *copy = (char *) *cursor;
    memcpy (copy, span.data, span.size);
    copy[span.size] = 0;
    if (utf8 && !s_utf8_valid (copy))
        return SHOAL_ERR_BAD_UTF8;
    *field = copy;
    *cursor += span.size + 1;
    return SHOAL_OK;
}

//  Builds the event from its fields, checking them in the order the
//  errors are documented: sizes of origin and id, names, then text.
static int
s_build (shoal_event_t *self, const s_fields_t *f)
{
    if (f->origin.size != 0 && f->origin.size != SHOAL_ID_SIZE)
        return SHOAL_ERR_BAD_ORIGIN;
    if (f->id.size != 0 && f->id.size != SHOAL_ID_SIZE)
        return SHOAL_ERR_BAD_ID;
    int rc;
    char **targets[6] = {&self->stream,         &self->type,         &self->key,
                         &self->correlation_id, &self->causation_id, &self->content_type};
    uint8_t *cursor = self->tail;
    //  Stream and type (0 and 1) skip the UTF-8 pass: their name rules,
    //  checked next, allow only ASCII.
    for (int i = 0; i < 6; i++)
        if ((rc = s_tail_string (targets[i], f->text[i], &cursor, i > 1)))
            return rc;
    if (!self->stream || !shoal_stream_name_valid (self->stream))
        return SHOAL_ERR_BAD_STREAM;
    if (!self->type || !shoal_type_name_valid (self->type))
        return SHOAL_ERR_BAD_TYPE;
    if (f->origin.size)
        shoal_event_set_origin (self, f->origin.data);
    if (f->id.size)
        shoal_event_set_id (self, f->id.data);
    self->seq = f->seq;
    self->time_ns = (int64_t) f->time_ns;
    self->schema_version = (uint32_t) f->schema_version;
    if (f->payload.size) {
        memcpy (cursor, f->payload.data, f->payload.size);
        self->payload = cursor;
        self->payload_size = f->payload.size;
    }
    if (f->header_count) {
        cursor += f->payload.size;
        //  The array, then each name and value, in the tail too.
        cursor = (uint8_t *) s_align_up ((uintptr_t) cursor, _Alignof(s_header_t));
        self->headers = (s_header_t *) cursor;
        self->header_alloc = f->header_count;
        cursor += f->header_count * sizeof (s_header_t);
        //  One header per name, in its first place with its last value,
        //  as a protobuf map has it; found by the index past a few, so
        //  100,000 headers decode in milliseconds.
        for (size_t i = 0; i < f->header_count; i++) {
            char *name = NULL, *value = NULL;
            if ((rc = s_tail_string (&name, f->headers[2 * i], &cursor, true))
                || (rc = s_tail_string (&value, f->headers[2 * i + 1], &cursor, true)))
                return rc;
            if (!name)
                continue; //  an empty header name is not a header
            if (!value) {
                value = (char *) cursor++;
                *value = 0;
            }
            s_header_t *header = s_find_header (self, name);
            if (header)
                header->value = value;
            else {
                self->headers[self->header_count++] = (s_header_t){name, value};
                s_index_appended (self);
            }
        }
    }
    return SHOAL_OK;
}

shoal_event_t *
shoal_event_decode (const uint8_t *data, size_t size, size_t max_size, int *error_p)
{
    int error = SHOAL_OK;
    shoal_event_t *self = NULL;
    if (!data || size == 0)
        error = SHOAL_ERR_EMPTY;
    else if (size > (max_size ? max_size : SHOAL_EVENT_MAX_SIZE_DEFAULT))
        error = SHOAL_ERR_TOO_LARGE;
    else {
        //  One strict pass of our own rather than protobuf-c's unpack:
        //  protobuf-c cuts a string at an embedded NUL without a word, and
        //  a decode must never change a field. The tests check the two
        //  agree on everything protobuf-c accepts.
        //  Only what s_parse may leave unset is cleared: a decode runs for
        //  every event received, and clearing both structs whole (rep stos)
        //  was a quarter of it.
        s_fields_t fields;
        fields.origin.size = fields.id.size = fields.payload.size = 0;
        for (int i = 0; i < 6; i++)
            fields.text[i].size = 0;
        fields.seq = fields.time_ns = fields.schema_version = 0;
        fields.headers = NULL;
        fields.header_count = fields.header_alloc = 0;
        error = s_parse (data, size, &fields);
        if (!error) {
            //  One allocation: the struct, then its strings and payload.
            size_t tail = fields.payload.size;
            for (int i = 0; i < 6; i++)
                tail += fields.text[i].size ? fields.text[i].size + 1 : 0;
            if (fields.header_count) {
                tail += _Alignof(s_header_t) - 1 + fields.header_count * sizeof (s_header_t);
                for (size_t i = 0; i < 2 * fields.header_count; i++)
                    tail += fields.headers[i].size + 1;
            }
            int pool_class = 0;
            self = (shoal_event_t *) shoal_pool_get (sizeof (shoal_event_t) + tail, &pool_class);
            if (self) {
                self->pool_class = pool_class;
                //  What s_build does not set in every case.
                self->stream = self->type = self->key = NULL;
                self->correlation_id = self->causation_id = self->content_type = NULL;
                self->has_origin = self->has_id = false;
                self->payload = NULL;
                self->payload_size = 0;
                self->headers = NULL;
                self->header_count = self->header_alloc = 0;
                self->header_index = NULL;
                self->tail = (uint8_t *) (self + 1);
                self->tail_size = tail;
            }
            error = self ? s_build (self, &fields) : SHOAL_ERR_INVALID;
            if (error)
                shoal_event_destroy (&self);
        }
        free (fields.headers);
    }
    if (error_p)
        *error_p = error;
    return self;
}

//  --------------------------------------------------------------------------
//  Ids and time

void
shoal_id_to_hex (const uint8_t id[SHOAL_ID_SIZE], char hex[2 * SHOAL_ID_SIZE + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < SHOAL_ID_SIZE; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 0x0F];
    }
    hex[2 * SHOAL_ID_SIZE] = 0;
}

static int
s_hex_digit (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
shoal_id_from_hex (const char *hex, uint8_t id[SHOAL_ID_SIZE])
{
    if (!hex || strlen (hex) != 2 * SHOAL_ID_SIZE)
        return -1;
    uint8_t out[SHOAL_ID_SIZE];
    for (size_t i = 0; i < SHOAL_ID_SIZE; i++) {
        int high = s_hex_digit (hex[2 * i]);
        int low = s_hex_digit (hex[2 * i + 1]);
        if (high < 0 || low < 0)
            return -1;
        out[i] = (uint8_t) (high << 4 | low);
    }
    memcpy (id, out, SHOAL_ID_SIZE);
    return 0;
}

int64_t
shoal_time_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}
