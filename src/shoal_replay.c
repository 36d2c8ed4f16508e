/*  =========================================================================
    shoal_replay - the server side of Replay on a node's ROUTER socket

    Each accepted ReplayRequest becomes a session: a log iterator, a fixed
    range [next_seq, to_seq], a credit count and an optional type filter.
    shoal_replay_pump walks the sessions round-robin and gives each, in
    turn, at most one batch per round and an equal share of the budget, so
    a replay of millions of events never starves a small one nor stalls
    the node's loop. A session ends when its last batch (done = true) or
    its Error has been handed to the socket.

    The stored records are encoded shoal.v1.Event messages. A batch embeds
    them verbatim: field 1 of ReplayBatch is a repeated Event, and a
    length-delimited field holding a message is the message's bytes, so
    the server never decodes an event (it only peeks at the type when a
    filter is set). The Response frame is written by hand, sizes first,
    then one pass into one zframe:

        Response
          0x08  varint request_id                 (field 1; absent when 0)
          0x22  varint B                          (field 4, ReplayBatch, B bytes)
          ReplayBatch (B bytes)
            0x0a  varint L1  L1 bytes of event 1  (field 1, stored bytes as is)
            ...
            0x0a  varint Ln  Ln bytes of event n
            0x10  varint next_seq                 (field 2; absent when 0)
            0x18  0x01                            (field 3 done; absent when false)
            0x20  varint head_seq                 (field 4; absent when 0)

    This is exactly what protobuf's canonical encoder writes (fields in
    number order, proto3 defaults left out). next_seq is the first seq not
    yet sent nor skipped; head_seq is the log's durable head when the
    batch is built (nothing above it is ever announced). Error responses are rare and small, so
   protobuf-c packs them.

    The engine calls shoal_replay_pump when a request or Credit arrived,
    when a log's durable watermark moved, and on a timer while sessions
    exist: a session whose client's pipe is full (EAGAIN) is not reported
    as ready, since the ROUTER cannot tell when the pipe drains.

    Invariants

    1. Nothing above shoal_log_durable is ever sent: a session reads seq
       s only when s <= durable, and otherwise waits until a later pump
       finds durable advanced (promise 1).
    2. Each seq of [from, to] is considered exactly once per session, in
       order: next_seq only grows, and every event read from the iterator
       is either skipped (filtered out), put in a batch, or held in the
       session until it can be (the iterator cannot step back).
    3. Only sent events cost credit; an event is held, not sent, when the
       credit is spent or it would take the batch past batch_bytes (a
       single event larger than batch_bytes travels alone).
    4. A batch built is sent exactly once: when the socket is full
       (EAGAIN) the frame stays queued in the session and goes first on
       the next pump; nothing new is built behind it.
    5. A client that is gone (EHOSTUNREACH under ROUTER_MANDATORY) loses
       all its sessions at once; no other session is affected.
    6. A read error mid-session ends the session with one Error (TRIMMED
       answers 3, anything else 6), after the good events read before it;
       the bad record's bytes are never sent.
    7. A session is keyed by (routing id, request_id); a new request with
       the same key replaces the old session, which sends nothing more.
    8. to_seq is fixed when the request is accepted (the head then, when
       0 or beyond the head), so a replay always ends.
    ========================================================================= */

#include "shoal_replay.h"
#include "shoal_buffer.h"
#include "shoal_wire.h"
#include "shoal_error.h"
#include "shoal.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_TYPES 256 //  types in one filter, at most
#define S_TAG_REQUEST_ID 0x08
#define S_TAG_BATCH 0x22
#define S_TAG_EVENT 0x0a
#define S_TAG_NEXT_SEQ 0x10
#define S_TAG_DONE 0x18
#define S_TAG_HEAD_SEQ 0x20

//  --------------------------------------------------------------------------
//  Structures

typedef struct {
    char *key;              //  "hex(routing id)/request_id", key in the session table
    void *handle;           //  the session's node in the round-robin list
    zframe_t *routing_id;   //  client's ROUTER routing id (own copy)
    uint64_t request_id;    //  echoed in every response
    shoal_log_t *log;       //  log read (borrowed; forget_log ends us first)
    shoal_log_iter_t *iter; //  positioned at next_seq, or next_seq + 1 while held
    uint64_t next_seq;      //  first seq not yet sent nor skipped
    uint64_t to_seq;        //  last seq of the range, fixed at the start
    uint64_t credit;        //  events that may still be sent
    char **types;           //  type filter, NULL = every type
    size_t *type_sizes;     //  strlen of each filter type
    size_t type_count;      //  entries in types
    uint8_t *held;          //  bytes of event next_seq, read but not yet sent
    size_t held_size;       //  bytes in held
    size_t held_alloc;      //  bytes allocated for held
    bool holding;           //  held is in use
    zframe_t *pending;      //  built batch the socket refused (EAGAIN)
    size_t pending_events;  //  events in pending, counted as sent once it goes
    zframe_t *final_error;  //  Error response to send after pending
    bool finished;          //  after pending and final_error, the session ends
    bool blocked;           //  the socket refused us during this pump
    int64_t active_at;      //  zclock_mono () of the last progress
    uint64_t round;         //  last pump round that served the session
} s_session_t;

struct _shoal_replay_t {
    shoal_replay_lookup_fn *lookup; //  finds the log of (origin, stream)
    void *lookup_arg;               //  its argument
    shoal_replay_config_t config;   //  limits in force (zeros replaced by defaults)
    zhashx_t *by_key;               //  key -> session (not owning)
    zlistx_t *sessions;             //  round-robin order, head served next (owning)
    uint64_t round;                 //  pump round counter, tells who was served
    uint8_t *scratch;               //  batch body being built (events with their prefixes)
    size_t scratch_size;            //  bytes used in scratch
    size_t scratch_alloc;           //  bytes allocated
    uint64_t requests_served;       //  replays whose done batch went out
    uint64_t events_sent;           //  events in batches handed to the socket
    uint64_t evicted;               //  parked sessions dropped to make room under a limit
};

//  --------------------------------------------------------------------------
//  Varints and the batch encoder

static uint8_t *
s_put_varint (uint8_t *p, uint64_t value)
{
    return p + shoal_wire_put_varint (p, value);
}

//  Appends one event, with its tag and length, to the batch being built.
static int
s_scratch_add (shoal_replay_t *self, const uint8_t *data, size_t size)
{
    size_t need = self->scratch_size + 1 + shoal_wire_varint_size (size) + size;
    if (shoal_buffer_reserve (&self->scratch, &self->scratch_alloc, need, 4096))
        return -1;
    uint8_t *p = self->scratch + self->scratch_size;
    *p++ = S_TAG_EVENT;
    p = s_put_varint (p, size);
    if (size)
        memcpy (p, data, size);
    self->scratch_size = need;
    return 0;
}

//  Wraps the scratch events into a Response { request_id, ReplayBatch }.
static zframe_t *
s_batch_frame (shoal_replay_t *self, uint64_t request_id, uint64_t next_seq, bool done,
               uint64_t head_seq)
{
    size_t batch = self->scratch_size + (next_seq ? 1 + shoal_wire_varint_size (next_seq) : 0)
                   + (done ? 2 : 0) + (head_seq ? 1 + shoal_wire_varint_size (head_seq) : 0);
    size_t total = (request_id ? 1 + shoal_wire_varint_size (request_id) : 0) + 1
                   + shoal_wire_varint_size (batch) + batch;
    zframe_t *frame = zframe_new (NULL, total);
    if (!frame)
        return NULL;
    uint8_t *p = zframe_data (frame);
    if (request_id) {
        *p++ = S_TAG_REQUEST_ID;
        p = s_put_varint (p, request_id);
    }
    *p++ = S_TAG_BATCH;
    p = s_put_varint (p, batch);
    if (self->scratch_size)
        memcpy (p, self->scratch, self->scratch_size);
    p += self->scratch_size;
    if (next_seq) {
        *p++ = S_TAG_NEXT_SEQ;
        p = s_put_varint (p, next_seq);
    }
    if (done) {
        *p++ = S_TAG_DONE;
        *p++ = 1;
    }
    if (head_seq) {
        *p++ = S_TAG_HEAD_SEQ;
        p = s_put_varint (p, head_seq);
    }
    assert (p == zframe_data (frame) + total);
    return frame;
}

//  An Error response (shoal_wire_error) with a formatted message.
static zframe_t *
s_error_frame (uint64_t request_id, uint32_t code, const char *format, ...)
{
    char text[600];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    return shoal_wire_error (request_id, code, text);
}

//  A client-supplied string, quoted safely and cut short, for messages.
static const char *
s_quote (const char *text, char *buffer, size_t size)
{
    size_t length = strlen (text);
    snprintf (buffer, size, "%.*s%s", (int) (length > 64 ? 64 : length), text,
              length > 64 ? "..." : "");
    return buffer;
}

//  --------------------------------------------------------------------------
//  Sending

//  Sends one response to a client without blocking. 0 when sent (the
//  frame is gone), or -1 with errno: EAGAIN when the client's pipe is full
//  (the frame is kept for a retry), EHOSTUNREACH when the client is gone,
//  anything else when the frame was lost.
static int
s_send (zsock_t *router, zframe_t *routing_id, zframe_t **frame_p)
{
    void *handle = zsock_resolve (router);
    if (zmq_send (handle, zframe_data (routing_id), zframe_size (routing_id),
                  ZMQ_SNDMORE | ZMQ_DONTWAIT)
        < 0)
        return -1;
    //  ROUTER checked the peer's pipe on the first frame, so the body goes
    //  unless the socket itself fails; then the frame cannot be retried.
    if (zframe_send (frame_p, router, ZFRAME_DONTWAIT) < 0) {
        int err = errno;
        zframe_destroy (frame_p);
        errno = err == EAGAIN ? EPIPE : err;
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Sessions

static void
s_session_destroy (s_session_t **self_p)
{
    s_session_t *self = *self_p;
    if (!self)
        return;
    shoal_log_iter_destroy (&self->iter);
    zframe_destroy (&self->routing_id);
    zframe_destroy (&self->pending);
    zframe_destroy (&self->final_error);
    for (size_t i = 0; i < self->type_count; i++)
        free (self->types[i]);
    free (self->types);
    free (self->type_sizes);
    free (self->held);
    free (self->key);
    free (self);
    *self_p = NULL;
}

//  The table key of (routing id, request_id). Caller owns return value.
static char *
s_key (zframe_t *routing_id, uint64_t request_id)
{
    size_t size = zframe_size (routing_id);
    char *key = (char *) malloc (2 * size + 24);
    if (!key)
        return NULL;
    const uint8_t *data = zframe_data (routing_id);
    for (size_t i = 0; i < size; i++)
        sprintf (key + 2 * i, "%02x", data[i]);
    sprintf (key + 2 * size, "/%" PRIu64, request_id);
    return key;
}

static void
s_remove (shoal_replay_t *self, s_session_t *session)
{
    zhashx_delete (self->by_key, session->key);
    zlistx_delete (self->sessions, session->handle);
    s_session_destroy (&session);
}

//  Removes every session of a client (routing_id), else every session
//  reading log, else every session idle since before idle_before (ms of
//  zclock_mono). Removes quietly: nothing is sent.
static void
s_remove_where (shoal_replay_t *self, zframe_t *routing_id, shoal_log_t *log, int64_t idle_before)
{
    s_session_t *session = (s_session_t *) zlistx_first (self->sessions);
    while (session) {
        s_session_t *next = (s_session_t *) zlistx_next (self->sessions);
        bool doomed = routing_id ? zframe_eq (session->routing_id, routing_id)
                      : log      ? session->log == log
                                 : session->active_at < idle_before;
        if (doomed)
            s_remove (self, session);
        session = next;
    }
}

static bool
s_type_wanted (const s_session_t *session, const uint8_t *data, size_t size, int *bad)
{
    shoal_event_peek_t peek;
    if (shoal_event_peek (data, size, &peek)) {
        *bad = 1;
        return false;
    }
    for (size_t i = 0; i < session->type_count; i++)
        if (peek.type_size == session->type_sizes[i]
            && memcmp (peek.type, session->types[i], peek.type_size) == 0)
            return true;
    return false;
}

static int
s_hold (s_session_t *session, const uint8_t *data, size_t size)
{
    if (size > session->held_alloc) {
        uint8_t *held = (uint8_t *) realloc (session->held, size);
        if (!held)
            return -1;
        session->held = held;
        session->held_alloc = size;
    }
    if (size)
        memcpy (session->held, data, size);
    session->held_size = size;
    session->holding = true;
    return 0;
}

//  Sends what the session has queued. 0 when nothing is left queued, 1
//  when the socket is full, -1 when the session is gone (it finished, or
//  its client did). *sent tells whether anything went out.
static int
s_flush (shoal_replay_t *self, s_session_t *session, zsock_t *router, bool *sent)
{
    zframe_t **queue[2] = {&session->pending, &session->final_error};
    for (int i = 0; i < 2; i++) {
        if (!*queue[i])
            continue;
        if (s_send (router, session->routing_id, queue[i])) {
            if (errno == EAGAIN) {
                session->blocked = true;
                return 1;
            }
            if (errno == EHOSTUNREACH) {
                zframe_t *client = zframe_dup (session->routing_id);
                if (client)
                    s_remove_where (self, client, NULL, 0);
                else
                    s_remove (self, session);
                zframe_destroy (&client);
            }
            else
                s_remove (self, session);
            return -1;
        }
        *sent = true;
        session->active_at = zclock_mono ();
        if (i == 0) {
            self->events_sent += session->pending_events;
            session->pending_events = 0;
        }
    }
    if (session->finished) {
        if (!session->final_error && session->next_seq > session->to_seq)
            self->requests_served++;
        s_remove (self, session);
        return -1;
    }
    return 0;
}

//  Builds at most one batch of the session, reading at most limit events,
//  and sends it. *used counts events read or sent (the budget spent).
//  Returns true when something happened (events read, frames sent).
static bool
s_serve (shoal_replay_t *self, s_session_t *session, zsock_t *router, size_t limit, size_t *used)
{
    bool sent = false;
    session->blocked = false;
    *used = 0;
    if (s_flush (self, session, router, &sent))
        return sent;

    shoal_log_t *log = session->log;
    uint64_t durable = shoal_log_durable (log);
    size_t count = 0, bytes = 0;
    int bad = 0;
    self->scratch_size = 0;
    while (count < self->config.batch_events && *used < limit) {
        if (session->holding) {
            if (session->credit == 0
                || (count > 0 && bytes + session->held_size > self->config.batch_bytes))
                break;
            if (s_scratch_add (self, session->held, session->held_size))
                break;
            (*used)++;
            count++;
            bytes += session->held_size;
            session->credit--;
            session->next_seq++;
            session->holding = false;
            continue;
        }
        uint64_t seq = session->next_seq;
        if (seq > session->to_seq || seq > durable
            || (session->credit == 0 && session->type_count == 0))
            break;
        int64_t time_ns;
        const uint8_t *data;
        size_t size;
        int rc = shoal_log_iter_next (session->iter, &seq, &time_ns, &data, &size);
        if (rc == 0)
            break; //  cannot happen below the head; wait rather than guess
        if (rc < 0) {
            int error = shoal_log_error (log);
            if (error == SHOAL_ERR_TRIMMED)
                session->final_error = s_error_frame (
                    session->request_id, SHOAL_WIRE_UNAVAILABLE,
                    "seq %" PRIu64 " was trimmed by retention during the replay: first %" PRIu64
                    ", head %" PRIu64,
                    session->next_seq, shoal_log_first (log), shoal_log_head (log));
            else
                session->final_error =
                    s_error_frame (session->request_id, SHOAL_WIRE_STORAGE,
                                   "storage failure at seq %" PRIu64 ": %s", session->next_seq,
                                   shoal_log_error_text (log));
            session->finished = true;
            break;
        }
        (*used)++;
        if (session->type_count && !s_type_wanted (session, data, size, &bad)) {
            if (bad) {
                session->final_error = s_error_frame (
                    session->request_id, SHOAL_WIRE_STORAGE,
                    "storage failure at seq %" PRIu64 ": the record is not an Event", seq);
                session->finished = true;
                break;
            }
            session->next_seq++;
            continue;
        }
        if (session->credit == 0 || (count > 0 && bytes + size > self->config.batch_bytes)
            || s_scratch_add (self, data, size)) {
            if (s_hold (session, data, size)) {
                session->final_error = s_error_frame (session->request_id, SHOAL_WIRE_STORAGE,
                                                      "out of memory at seq %" PRIu64, seq);
                session->finished = true;
            }
            break;
        }
        count++;
        bytes += size;
        session->credit--;
        session->next_seq++;
    }
    bool done = !session->finished && !session->holding && session->next_seq > session->to_seq;
    if (count > 0 || done) {
        session->pending = s_batch_frame (self, session->request_id, session->next_seq, done,
                                          shoal_log_durable (log));
        session->pending_events = count;
        if (done)
            session->finished = true;
        if (!session->pending) {
            //  Out of memory: the events are lost for this session, end it.
            session->final_error = s_error_frame (session->request_id, SHOAL_WIRE_STORAGE,
                                                  "out of memory building a batch");
            session->finished = true;
        }
    }
    bool progress = *used > 0 || sent;
    if (session->pending || session->final_error || session->finished)
        s_flush (self, session, router, &sent);
    return progress || sent;
}

//  Whether the session could send or read more right now.
static bool
s_ready (const s_session_t *session)
{
    if (session->blocked)
        return false;
    if (session->pending || session->final_error || session->finished)
        return true;
    if (session->holding)
        return session->credit > 0;
    if (session->next_seq > session->to_seq)
        return true;
    return session->next_seq <= shoal_log_durable (session->log)
           && (session->credit > 0 || session->type_count > 0);
}

//  --------------------------------------------------------------------------
//  Public API

void
shoal_replay_config_defaults (shoal_replay_config_t *config)
{
    assert (config);
    config->batch_events = 256;
    config->batch_bytes = 64 * 1024;
    config->max_sessions = 1024;
    config->max_sessions_per_client = 16;
    config->idle_timeout_ms = 30000;
}

//  True when nothing but a Credit can move the session: no credit left,
//  nothing built or to report, and an event to send next (a session at
//  the end of its range still has its done batch to send; one with a type
//  filter may still skip events).
static bool
s_waits_for_credit (const s_session_t *session)
{
    return session->credit == 0 && !session->pending && !session->final_error && !session->finished
           && session->next_seq <= session->to_seq
           && (session->holding || session->type_count == 0);
}

//  The session that waits only for credit (nothing built, nothing to
//  send) and has waited longest, of one client or (routing_id NULL) of
//  any; NULL when none does. A node's repairs of a range of seqs ask for
//  no more events than their credit, so they end by themselves; what
//  parks is a thin client's replay awaiting its Credit, or a node's seek
//  by time cut short by its credit: that node continues it with a Credit
//  as its room frees, or, when it asks anew instead, leaves it here to
//  the idle timeout.
static s_session_t *
s_parked (shoal_replay_t *self, zframe_t *routing_id)
{
    s_session_t *oldest = NULL;
    for (s_session_t *session = (s_session_t *) zlistx_first (self->sessions); session;
         session = (s_session_t *) zlistx_next (self->sessions))
        if ((!routing_id || zframe_eq (session->routing_id, routing_id))
            && s_waits_for_credit (session) && (!oldest || session->active_at < oldest->active_at))
            oldest = session;
    return oldest;
}

//  Sessions open now for one client.
static size_t
s_client_sessions (shoal_replay_t *self, zframe_t *routing_id)
{
    size_t count = 0;
    for (s_session_t *session = (s_session_t *) zlistx_first (self->sessions); session;
         session = (s_session_t *) zlistx_next (self->sessions))
        if (zframe_eq (session->routing_id, routing_id))
            count++;
    return count;
}

//  Makes room for one more session of the client under both limits: at a
//  limit, the session parked longest for credit (the client's own for the
//  per-client limit, anyone's for the total) is dropped and counted. 0, or
//  SHOAL_WIRE_BUSY with text when no session at the limit is parked.
static uint32_t
s_make_room (shoal_replay_t *self, zframe_t *routing_id, char *text, size_t size)
{
    if (s_client_sessions (self, routing_id) >= self->config.max_sessions_per_client) {
        s_session_t *parked = s_parked (self, routing_id);
        if (!parked) {
            snprintf (text, size,
                      "too many replay sessions from this client (%zu at once); retry later",
                      self->config.max_sessions_per_client);
            return SHOAL_WIRE_BUSY;
        }
        s_remove (self, parked);
        self->evicted++;
    }
    if (zlistx_size (self->sessions) >= self->config.max_sessions) {
        s_session_t *parked = s_parked (self, NULL);
        if (!parked) {
            snprintf (text, size, "too many replay sessions (%zu); retry later",
                      zlistx_size (self->sessions));
            return SHOAL_WIRE_BUSY;
        }
        s_remove (self, parked);
        self->evicted++;
    }
    return 0;
}

shoal_replay_t *
shoal_replay_new (shoal_replay_lookup_fn *lookup, void *arg, const shoal_replay_config_t *config)
{
    assert (lookup);
    shoal_replay_t *self = (shoal_replay_t *) zmalloc (sizeof (shoal_replay_t));
    if (!self)
        return NULL;
    self->lookup = lookup;
    self->lookup_arg = arg;
    shoal_replay_config_t defaults;
    shoal_replay_config_defaults (&defaults);
    self->config = config ? *config : defaults;
    if (self->config.batch_events == 0)
        self->config.batch_events = defaults.batch_events;
    if (self->config.batch_bytes == 0)
        self->config.batch_bytes = defaults.batch_bytes;
    if (self->config.max_sessions == 0)
        self->config.max_sessions = defaults.max_sessions;
    if (self->config.max_sessions_per_client == 0)
        self->config.max_sessions_per_client = defaults.max_sessions_per_client;
    self->by_key = zhashx_new ();
    self->sessions = zlistx_new ();
    if (!self->by_key || !self->sessions) {
        shoal_replay_destroy (&self);
        return NULL;
    }
    return self;
}

void
shoal_replay_destroy (shoal_replay_t **self_p)
{
    assert (self_p);
    shoal_replay_t *self = *self_p;
    if (!self)
        return;
    if (self->sessions) {
        s_session_t *session;
        while ((session = (s_session_t *) zlistx_first (self->sessions)))
            s_remove (self, session);
    }
    zlistx_destroy (&self->sessions);
    zhashx_destroy (&self->by_key);
    free (self->scratch);
    free (self);
    *self_p = NULL;
}

//  Sends an Error at once (best effort: an Error refused by a full pipe is
//  dropped, since that client is not reading anyway) and returns the code.
static int
s_refuse (shoal_replay_t *self, zsock_t *router, zframe_t *routing_id, uint64_t request_id,
          uint32_t code, const char *text)
{
    zframe_t *frame = s_error_frame (request_id, code, "%s", text);
    if (frame && s_send (router, routing_id, &frame) && errno == EHOSTUNREACH)
        s_remove_where (self, routing_id, NULL, 0);
    zframe_destroy (&frame);
    return (int) code;
}

int
shoal_replay_start (shoal_replay_t *self, zsock_t *router, zframe_t *routing_id,
                    uint64_t request_id, const void *request)
{
    assert (self && router && routing_id && request);
    const Shoal__V1__ReplayRequest *req = (const Shoal__V1__ReplayRequest *) request;
    char text[400], quoted[80];
    char *key = s_key (routing_id, request_id);
    if (!key)
        return s_refuse (self, router, routing_id, request_id, SHOAL_WIRE_BUSY, "out of memory");
    s_session_t *old = (s_session_t *) zhashx_lookup (self->by_key, key);
    if (old)
        s_remove (self, old);

    const char *stream = req->stream ? req->stream : "";
    uint32_t code = 0;
    if (req->origin.len != SHOAL_ID_SIZE) {
        code = SHOAL_WIRE_BAD_REQUEST;
        snprintf (text, sizeof text, "origin must be %d bytes, not %zu", SHOAL_ID_SIZE,
                  req->origin.len);
    }
    else if (!shoal_stream_name_valid (stream)) {
        code = SHOAL_WIRE_BAD_REQUEST;
        snprintf (text, sizeof text, "invalid stream name \"%s\"",
                  s_quote (stream, quoted, sizeof quoted));
    }
    else if (req->to_seq && req->from_seq && req->to_seq < req->from_seq) {
        code = SHOAL_WIRE_BAD_REQUEST;
        snprintf (text, sizeof text, "to_seq %" PRIu64 " is below from_seq %" PRIu64, req->to_seq,
                  req->from_seq);
    }
    else if (req->n_types > S_MAX_TYPES) {
        code = SHOAL_WIRE_BAD_REQUEST;
        snprintf (text, sizeof text, "%zu types in the filter, at most %d", req->n_types,
                  S_MAX_TYPES);
    }
    for (size_t i = 0; !code && i < req->n_types; i++)
        if (!req->types[i] || !shoal_type_name_valid (req->types[i])) {
            code = SHOAL_WIRE_BAD_REQUEST;
            snprintf (text, sizeof text, "invalid event type \"%s\" in the type filter",
                      s_quote (req->types[i] ? req->types[i] : "", quoted, sizeof quoted));
        }
    shoal_log_t *log = NULL;
    if (!code) {
        log = self->lookup (self->lookup_arg, req->origin.data, stream);
        if (!log) {
            char hex[2 * SHOAL_ID_SIZE + 1];
            shoal_id_to_hex (req->origin.data, hex);
            code = SHOAL_WIRE_UNKNOWN;
            snprintf (text, sizeof text, "no log of stream \"%s\" from origin %s on this node",
                      stream, hex);
        }
    }
    uint64_t from = req->from_seq, to = req->to_seq;
    if (!code) {
        uint64_t first = shoal_log_first (log), head = shoal_log_head (log);
        if (from == 0)
            from = req->from_time_ns ? shoal_log_seek_time (log, req->from_time_ns) : first;
        //  from = head + 1 is an up-to-date client (or a time after the
        //  last event): it gets an empty batch with done, not an error.
        if (from < first || from > head + 1) {
            code = SHOAL_WIRE_UNAVAILABLE;
            int n = req->from_seq || !req->from_time_ns
                        ? snprintf (text, sizeof text, "seq %" PRIu64 " is %s", from,
                                    from < first ? "trimmed by retention" : "beyond the head")
                        : snprintf (text, sizeof text, "no event at or after time %" PRId64,
                                    req->from_time_ns);
            snprintf (text + n, sizeof text - (size_t) n,
                      ": available are first %" PRIu64 ", head %" PRIu64, first, head);
        }
        if (to == 0 || to > head)
            to = head;
    }
    shoal_log_iter_t *iter = NULL;
    if (!code && !(iter = shoal_log_iter_new (log, from, to))) {
        int error = shoal_log_error (log);
        code = error == SHOAL_ERR_TRIMMED ? SHOAL_WIRE_UNAVAILABLE : SHOAL_WIRE_STORAGE;
        snprintf (text, sizeof text, "%s", shoal_log_error_text (log));
    }
    //  Only a request that would start makes room: one refused for what
    //  it asks never costs another session its place.
    if (!code && (code = s_make_room (self, routing_id, text, sizeof text)))
        shoal_log_iter_destroy (&iter);
    s_session_t *session = NULL;
    if (!code) {
        session = (s_session_t *) zmalloc (sizeof (s_session_t));
        if (session) {
            session->key = key;
            key = NULL;
            session->iter = iter;
            session->routing_id = zframe_dup (routing_id);
            session->types = (char **) calloc (req->n_types + 1, sizeof (char *));
            session->type_sizes = (size_t *) calloc (req->n_types + 1, sizeof (size_t));
        }
        bool ok = session && session->routing_id && session->types && session->type_sizes;
        for (size_t i = 0; ok && i < req->n_types; i++) {
            session->types[i] = strdup (req->types[i]);
            session->type_sizes[i] = strlen (req->types[i]);
            ok = session->types[i] != NULL;
            session->type_count = i + 1;
        }
        if (ok) {
            session->handle = zlistx_add_end (self->sessions, session);
            ok = session->handle && zhashx_insert (self->by_key, session->key, session) == 0;
            if (!ok && session->handle)
                zlistx_delete (self->sessions, session->handle);
        }
        if (!ok) {
            if (session)
                s_session_destroy (&session);
            else
                shoal_log_iter_destroy (&iter);
            code = SHOAL_WIRE_BUSY;
            snprintf (text, sizeof text, "out of memory");
        }
    }
    free (key);
    if (code)
        return s_refuse (self, router, routing_id, request_id, code, text);
    session->request_id = request_id;
    session->log = log;
    session->next_seq = from;
    session->to_seq = to;
    session->credit = req->credit;
    session->active_at = zclock_mono ();
    session->round = self->round;
    return 0;
}

int
shoal_replay_credit (shoal_replay_t *self, zframe_t *routing_id, uint64_t replay_id,
                     uint32_t credit)
{
    assert (self && routing_id);
    char *key = s_key (routing_id, replay_id);
    s_session_t *session = key ? (s_session_t *) zhashx_lookup (self->by_key, key) : NULL;
    free (key);
    if (!session)
        return -1;
    session->credit += credit;
    session->active_at = zclock_mono ();
    return 0;
}

int
shoal_replay_pump (shoal_replay_t *self, zsock_t *router, size_t budget)
{
    assert (self && router);
    s_session_t *session;
    for (session = (s_session_t *) zlistx_first (self->sessions); session;
         session = (s_session_t *) zlistx_next (self->sessions))
        session->blocked = false;
    //  Rounds: each session once per round, from the head of the list; a
    //  served session moves to the tail, so the next pump starts with the
    //  first one this pump did not reach.
    while (budget > 0 && zlistx_size (self->sessions) > 0) {
        self->round++;
        size_t share = budget / zlistx_size (self->sessions);
        if (share == 0)
            share = 1;
        bool progress = false;
        while (budget > 0 && (session = (s_session_t *) zlistx_first (self->sessions))
               && session->round != self->round) {
            session->round = self->round;
            zlistx_move_end (self->sessions, session->handle);
            size_t used = 0;
            if (s_serve (self, session, router, share < budget ? share : budget, &used))
                progress = true;
            budget -= used;
        }
        if (!progress)
            break;
    }
    for (session = (s_session_t *) zlistx_first (self->sessions); session;
         session = (s_session_t *) zlistx_next (self->sessions))
        if (s_ready (session))
            return 1;
    return 0;
}

void
shoal_replay_forget_log (shoal_replay_t *self, shoal_log_t *log)
{
    assert (self && log);
    s_remove_where (self, NULL, log, 0);
}

void
shoal_replay_expire (shoal_replay_t *self, zframe_t *routing_id)
{
    assert (self);
    if (routing_id)
        s_remove_where (self, routing_id, NULL, 0);
    if (self->config.idle_timeout_ms > 0)
        s_remove_where (self, NULL, NULL, zclock_mono () - self->config.idle_timeout_ms);
}

size_t
shoal_replay_sessions (const shoal_replay_t *self)
{
    assert (self);
    return zlistx_size (self->sessions);
}

uint64_t
shoal_replay_requests_served (const shoal_replay_t *self)
{
    assert (self);
    return self->requests_served;
}

uint64_t
shoal_replay_sessions_evicted (const shoal_replay_t *self)
{
    assert (self);
    return self->evicted;
}

uint64_t
shoal_replay_events_sent (const shoal_replay_t *self)
{
    assert (self);
    return self->events_sent;
}
