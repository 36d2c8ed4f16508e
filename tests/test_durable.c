/*  test_durable - durable consumers and replication across processes
    (issue 6; DESIGN.md promises 4 and 5)

    1. A durable consumer SIGKILLed at random points (seeded: the seed is
       printed, SHOAL_TEST_SEED repeats a run) while it works through
       10,000 events of one origin and 2,000 of another, restarted on its
       data directory each time: every event is processed, exactly once
       after dedupe, in order per origin within each run, and what a
       restart redelivers is exactly what was not durably acknowledged
       (each cursor read from the dead consumer's store, plus one, is that
       origin's first event in the next run).
    2. The origin SIGKILLed mid-stream: a live subscriber, a fresh one and
       a durable consumer restarted meanwhile all catch up from a replica;
       the origin restarted: its log and the replica's are the same,
       record by record, byte for byte.
    3. The origin partitioned while it publishes 5,000 events, by SIGSTOP
       of its peers and by nftables rules in namespaces the test makes:
       after healing, a subscriber, a durable consumer and the replica
       have all of it within 5 s.
    4. An origin and two replicas (one also an origin, one replicating
       "all"), each one down in turn: a fresh subscriber replays the whole
       history from the other two, and a replica that comes back converges.
    5. Consumers listed, read, acknowledged and deleted through the API
       and the wire (ConsumerRequest), and kept across a restart.
    6. Retention on a replica follows the stream's policy: with small
       segments, the replica drops old segments like the origin, and one
       that was down while the origin trimmed past it converges again.

    Every node runs in a forked child (tests/mesh.c) that reports what
    it sees over a pipe. The parent never starts czmq; it reads the data
    directories of dead nodes with shoal_store and shoal_log.
    SHOAL_TEST_ONLY=1,4 runs only those parts. */

#include "shoal.h"
#include "mesh.h"
#include "shoal.pb-c.h"
#include "tap.h"

#include <czmq.h>
#include <errno.h>

#define S_STREAM_MAX 64
#define S_MAX_PROCS 16
#define S_BEACON_MS 100 //  suspect after 300 ms, gone after 1 s

static int s_run_id;   //  this run's pid, for unique mesh and namespace names
static uint64_t s_rng; //  the seeded generator

static uint64_t
s_random (void)
{
    //  xorshift64*
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 2685821657736338717ULL;
}

//  A uniform number in [low, high].
static int
s_between (int low, int high)
{
    return low + (int) (s_random () % (uint64_t) (high - low + 1));
}

static int64_t
s_now (void)
{
    return (int64_t) (tap_now () * 1000);
}

//  ==========================================================================
//  The child: one node in a role

typedef struct {
    char name[32];         //  node name
    char data[512];        //  data directory
    char mesh[64];         //  mesh name
    const char *interface; //  "none" (static peers) or a veth (zbeacon)
    const char *netns;     //  namespace to enter, NULL = none
    char pub[64];          //  PUB endpoint, "" = ephemeral
    char router[64];       //  ROUTER endpoint, "" = ephemeral
    char peers[4][128];    //  static peers (ROUTER endpoints)
    size_t peer_count;     //  entries in peers
    const char *replicate; //  stream to replicate, NULL = none
    uint64_t segment_size; //  log segment size, 0 = default
    uint64_t retain_bytes; //  retention by size, 0 = keep all
    const char *stream;    //  the stream it publishes and reads
    int publish;           //  events to publish at start ("publish N" adds more)
    int batch;             //  events per burst
    int pause_ms;          //  pause between bursts
    bool subscribe;        //  a plain subscription from the beginning ("have" lines)
    const char *consumer;  //  a durable consumer, NULL = none
    bool consumer_lines;   //  per event "proc" lines, else "dhave" summaries
    int flush_every;       //  shoal_node_ack_flush every this many events
    int work_us;           //  time the consumer spends on each event
    bool watch;            //  reports its own logs from Status ("log" lines)
} s_role_t;

//  What one subscription saw of one origin.
typedef struct {
    char origin[33]; //  origin in hex
    uint64_t count;  //  events received
    uint64_t bad;    //  events not at the seq after the previous one
    uint64_t last;   //  last seq
    bool changed;    //  not reported since it changed
} s_seen_t;

static s_seen_t *
s_seen (s_seen_t *table, size_t *count, const char *origin)
{
    for (size_t i = 0; i < *count; i++)
        if (streq (table[i].origin, origin))
            return &table[i];
    if (*count == 8)
        return NULL;
    s_seen_t *seen = &table[(*count)++];
    memset (seen, 0, sizeof *seen);
    snprintf (seen->origin, sizeof seen->origin, "%s", origin);
    return seen;
}

static void
s_seen_note (const char *what, s_seen_t *table, size_t *count, const shoal_event_t *event)
{
    char origin[33];
    shoal_id_to_hex (shoal_event_origin (event), origin);
    s_seen_t *seen = s_seen (table, count, origin);
    if (!seen)
        return;
    uint64_t seq = shoal_event_seq (event);
    if (seq != seen->last + 1 && seen->bad++ < 5)
        mesh_report ("note %s: after %" PRIu64 " came %" PRIu64, what, seen->last, seq);
    seen->last = seq;
    seen->count++;
    seen->changed = true;
}

static void
s_seen_report (const char *what, s_seen_t *table, size_t count, bool all)
{
    for (size_t i = 0; i < count; i++)
        if (table[i].changed || all) {
            mesh_report ("%s %s %" PRIu64 " %" PRIu64 " %" PRIu64, what, table[i].origin,
                         table[i].count, table[i].bad, table[i].last);
            table[i].changed = false;
        }
}

//  An event with every field set, varied by n: some payloads empty, some
//  binary, headers given out of order.
static shoal_event_t *
s_event (const char *stream, int n)
{
    shoal_event_t *event = shoal_event_new ();
    shoal_event_set_stream (event, stream);
    shoal_event_set_type (event, n % 3 ? "OrderPlaced" : "OrderShipped");
    char text[160];
    snprintf (text, sizeof text, "order-%d", n % 97);
    shoal_event_set_key (event, text);
    snprintf (text, sizeof text, "corr-%d", n / 10);
    shoal_event_set_correlation_id (event, text);
    if (n % 2)
        shoal_event_set_causation_id (event, "cause");
    shoal_event_set_content_type (event, n % 5 ? "application/json" : "application/octet-stream");
    shoal_event_set_schema_version (event, (uint32_t) (1 + n % 3));
    shoal_event_set_header (event, "zone", "eu-west");
    shoal_event_set_header (event, "attempt", n % 4 ? "1" : "2");
    shoal_event_set_header (event, "b-trace", "00f067aa0ba902b7");
    if (n % 5 == 0) {
        uint8_t bytes[48];
        for (size_t i = 0; i < sizeof bytes; i++)
            bytes[i] = (uint8_t) (n * 31 + i * 7);
        shoal_event_set_payload (event, bytes, sizeof bytes);
    }
    else if (n % 7) {
        int size = snprintf (text, sizeof text, "{\"n\":%d,\"item\":\"widget-%d\",\"qty\":%d}", n,
                             n % 13, n % 9);
        shoal_event_set_payload (event, text, (size_t) size);
    }
    return event;
}

//  Asks the node's own ROUTER for Status and reports each log whose first
//  or head seq changed: "log <origin> <stream> <first> <head>".
typedef struct {
    zsock_t *dealer;     //  to the node's own ROUTER
    uint64_t next_id;    //  request ids given so far
    uint64_t request_id; //  of the request in flight, 0 = none
    int64_t sent_ms;     //  when it was sent
    struct {
        char key[S_STREAM_MAX + 40]; //  "origin/stream"
        uint64_t first, head;        //  last reported
    } logs[16];
    size_t log_count;
} s_watch_t;

static void
s_watch_poll (s_watch_t *watch)
{
    zframe_t *frame;
    while ((frame = zframe_recv_nowait (watch->dealer))) {
        Shoal__V1__Response *response =
            shoal__v1__response__unpack (NULL, zframe_size (frame), zframe_data (frame));
        zframe_destroy (&frame);
        if (!response)
            continue;
        if (response->request_id == watch->request_id
            && response->body_case == SHOAL__V1__RESPONSE__BODY_STATUS) {
            watch->request_id = 0;
            for (size_t i = 0; i < response->status->n_logs; i++) {
                Shoal__V1__LogHead *head = response->status->logs[i];
                if (head->origin.len != SHOAL_ID_SIZE)
                    continue;
                char origin[33], key[S_STREAM_MAX + 40];
                shoal_id_to_hex (head->origin.data, origin);
                snprintf (key, sizeof key, "%s/%s", origin, head->stream);
                size_t n = 0;
                while (n < watch->log_count && !streq (watch->logs[n].key, key))
                    n++;
                if (n == watch->log_count) {
                    if (n == 16)
                        continue;
                    watch->log_count++;
                    snprintf (watch->logs[n].key, sizeof watch->logs[n].key, "%s", key);
                    watch->logs[n].first = watch->logs[n].head = UINT64_MAX;
                }
                if (watch->logs[n].first != head->first_seq
                    || watch->logs[n].head != head->head_seq) {
                    watch->logs[n].first = head->first_seq;
                    watch->logs[n].head = head->head_seq;
                    mesh_report ("log %s %s %" PRIu64 " %" PRIu64, origin, head->stream,
                                 head->first_seq, head->head_seq);
                }
            }
        }
        shoal__v1__response__free_unpacked (response, NULL);
    }
    int64_t now = zclock_mono ();
    if (watch->request_id == 0 || now - watch->sent_ms > 1000) {
        Shoal__V1__StatusRequest body = SHOAL__V1__STATUS_REQUEST__INIT;
        Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
        request.request_id = ++watch->next_id;
        watch->request_id = request.request_id;
        request.body_case = SHOAL__V1__REQUEST__BODY_STATUS;
        request.status = &body;
        uint8_t buffer[64];
        size_t size = shoal__v1__request__pack (&request, buffer);
        zframe_t *out = zframe_new (buffer, size);
        zframe_send (&out, watch->dealer, ZFRAME_DONTWAIT);
        watch->sent_ms = now;
    }
}

static shoal_node_t *
s_node_start (const s_role_t *role)
{
    if (role->netns && mesh_enter_netns (role->netns)) {
        mesh_report ("error cannot enter %s: %s", role->netns, strerror (errno));
        _exit (2);
    }
    shoal_node_config_t config;
    shoal_node_config_defaults (&config);
    config.name = role->name;
    config.mesh = role->mesh;
    config.data_dir = role->data;
    config.interface = role->interface ? role->interface : "none";
    config.beacon_port = 5680;
    config.beacon_interval_ms = S_BEACON_MS;
    config.heartbeat_ms = 100;
    bool loopback = streq (config.interface, "none");
    config.pub_endpoint = role->pub[0] ? role->pub : loopback ? "tcp://127.0.0.1:*" : NULL;
    config.router_endpoint = role->router[0] ? role->router : loopback ? "tcp://127.0.0.1:*" : NULL;
    const char *peers[4];
    for (size_t i = 0; i < role->peer_count; i++)
        peers[i] = role->peers[i];
    config.peers = peers;
    config.peer_count = role->peer_count;
    const char *replicate[1] = {role->replicate};
    if (role->replicate) {
        config.replicate = replicate;
        config.replicate_count = 1;
    }
    config.segment_size = role->segment_size;
    config.retain_bytes = role->retain_bytes;
    config.log_level = SHOAL_LOG_ERROR;
    shoal_node_t *node = shoal_node_new (&config, NULL);
    if (!node) {
        mesh_report ("error %s", shoal_node_start_error ());
        _exit (2);
    }
    return node;
}

//  The child's main: runs the node in its role until SIGTERM (czmq turns
//  it into zsys_interrupted) or a minute, then stops it cleanly.
static void
s_run_node (const void *arg)
{
    const s_role_t *role = (const s_role_t *) arg;
    shoal_node_t *node = s_node_start (role);
    char id[33];
    shoal_id_to_hex (shoal_node_id (node), id);
    mesh_report ("ready %s %s", id, shoal_node_router_endpoint (node));

    shoal_from_t beginning = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    int plain = role->subscribe ? shoal_node_subscribe (node, role->stream, NULL, &beginning) : 0;
    int durable = role->consumer
                      ? shoal_node_subscribe_durable (node, role->consumer, role->stream, NULL)
                      : 0;
    s_watch_t watch;
    memset (&watch, 0, sizeof watch);
    if (role->watch)
        watch.dealer = zsock_new_dealer (shoal_node_router_endpoint (node));

    s_seen_t have[8], dhave[8], acked[8];
    size_t have_count = 0, dhave_count = 0, acked_count = 0;
    int target = role->publish, published = 0;
    uint64_t last_seq = 0, processed = 0;
    int64_t next_burst = 0, next_report = 0;
    int64_t deadline = zclock_mono () + 60000;
    bool reported_published = target == 0;
    while (!zsys_interrupted && zclock_mono () < deadline) {
        char command[256];
        while (mesh_command (command, sizeof command)) {
            int more;
            if (sscanf (command, "publish %d", &more) == 1) {
                target += more;
                reported_published = false;
            }
        }
        int64_t now = zclock_mono ();
        if (published < target && now >= next_burst) {
            int burst = role->batch ? role->batch : target;
            for (int i = 0; i < burst && published < target; i++) {
                shoal_event_t *event = s_event (role->stream, published + 1);
                uint64_t seq = 0;
                if (shoal_node_publish (node, event, &seq, NULL) == 0) {
                    published++;
                    last_seq = seq;
                }
                shoal_event_destroy (&event);
            }
            next_burst = now + role->pause_ms;
        }
        if (published == target && !reported_published) {
            //  Reported once durable: what the origin holds for sure.
            if (shoal_node_wait_durable (node, role->stream, last_seq, 10000) == 0)
                mesh_report ("published %d %" PRIu64, published, last_seq);
            else
                mesh_report ("error publish of %" PRIu64 " not durable", last_seq);
            reported_published = true;
        }
        int wait = published < target ? 0 : 10;
        int subscription = 0;
        shoal_event_t *event = shoal_node_recv (node, wait, &subscription);
        for (int n = 0; event; n++) {
            if (subscription == plain)
                s_seen_note ("subscription", have, &have_count, event);
            else if (subscription == durable) {
                if (role->consumer_lines) {
                    char origin[33];
                    shoal_id_to_hex (shoal_event_origin (event), origin);
                    //  Processed, then acknowledged: an acknowledged
                    //  event has always been reported.
                    mesh_report ("proc %s %" PRIu64, origin, shoal_event_seq (event));
                    if (role->work_us)
                        usleep ((useconds_t) role->work_us);
                }
                else
                    s_seen_note ("durable subscription", dhave, &dhave_count, event);
                shoal_node_ack (node, durable, event, false);
                char origin[33];
                shoal_id_to_hex (shoal_event_origin (event), origin);
                s_seen_t *ack = s_seen (acked, &acked_count, origin);
                if (ack)
                    ack->last = shoal_event_seq (event);
                processed++;
                if (role->flush_every && processed % (uint64_t) role->flush_every == 0) {
                    //  Every acknowledgement so far is durable now.
                    if (shoal_node_ack_flush (node) == 0)
                        for (size_t i = 0; i < acked_count; i++)
                            mesh_report ("flushed %s %" PRIu64, acked[i].origin, acked[i].last);
                    else
                        mesh_report ("error ack_flush failed");
                }
            }
            shoal_event_destroy (&event);
            if (n < 2000) //  then the loop's other work
                event = shoal_node_recv (node, 0, &subscription);
        }
        if (now >= next_report) {
            s_seen_report ("have", have, have_count, false);
            s_seen_report ("dhave", dhave, dhave_count, false);
            if (watch.dealer)
                s_watch_poll (&watch);
            next_report = now + 50;
        }
    }
    s_seen_report ("have", have, have_count, true);
    s_seen_report ("dhave", dhave, dhave_count, true);
    zsock_destroy (&watch.dealer);
    shoal_node_destroy (&node);
    mesh_report ("done");
}

//  ==========================================================================
//  The parent: children as processes, and what they reported

typedef struct {
    char origin[33];           //  origin in hex
    char stream[S_STREAM_MAX]; //  stream
    uint64_t first, head;      //  as last reported
} s_loghead_t;

//  One event a durable consumer processed.
typedef struct {
    uint64_t seq; //  its seq
    int origin;   //  index of its origin in s_proc_t.origins
} s_proc_line_t;

typedef struct {
    mesh_child_t child;     //  the process
    s_role_t role;          //  its role (the child has its own copy)
    char id[64];            //  node id in hex
    char router[128];       //  ROUTER endpoint
    s_seen_t have[8];       //  plain subscription, per origin
    size_t have_count;      //  entries in have
    s_seen_t dhave[8];      //  durable subscription, per origin
    size_t dhave_count;     //  entries in dhave
    s_loghead_t logs[16];   //  its logs, from Status
    size_t log_count;       //  entries in logs
    uint64_t published;     //  events it reported published (durable)
    uint64_t published_seq; //  seq of the last of them
    s_proc_line_t *procs;   //  "proc" lines in order (when consumer_lines)
    size_t proc_count;      //  entries in procs
    size_t proc_alloc;      //  entries allocated
    uint64_t foreign;       //  "proc" lines of another origin than expected
    char origins[2][33];    //  the origins "proc" lines may name
    uint64_t flushed[2];    //  last "flushed" seq of each of them
    int errors;             //  "error" lines
    bool running;           //  alive and registered
} s_proc_t;

static s_proc_t *s_procs[S_MAX_PROCS]; //  running children, pumped by every wait

static void
s_handle_line (s_proc_t *proc, const char *line)
{
    char origin[64], stream[128];
    uint64_t a, b, c;
    if (sscanf (line, "have %63s %" SCNu64 " %" SCNu64 " %" SCNu64, origin, &a, &b, &c) == 4
        || sscanf (line, "dhave %63s %" SCNu64 " %" SCNu64 " %" SCNu64, origin, &a, &b, &c) == 4) {
        bool plain = line[0] == 'h';
        s_seen_t *seen = plain ? s_seen (proc->have, &proc->have_count, origin)
                               : s_seen (proc->dhave, &proc->dhave_count, origin);
        if (seen) {
            seen->count = a;
            seen->bad = b;
            seen->last = c;
        }
    }
    else if (sscanf (line, "proc %63s %" SCNu64, origin, &a) == 2) {
        int index = streq (origin, proc->origins[0])   ? 0
                    : streq (origin, proc->origins[1]) ? 1
                                                       : -1;
        if (index < 0) {
            proc->foreign++;
            return;
        }
        if (proc->proc_count == proc->proc_alloc) {
            proc->proc_alloc = proc->proc_alloc ? 2 * proc->proc_alloc : 16384;
            proc->procs =
                (s_proc_line_t *) realloc (proc->procs, proc->proc_alloc * sizeof (s_proc_line_t));
            if (!proc->procs)
                bail ("out of memory");
        }
        proc->procs[proc->proc_count].seq = a;
        proc->procs[proc->proc_count++].origin = index;
    }
    else if (sscanf (line, "flushed %63s %" SCNu64, origin, &a) == 2) {
        for (int i = 0; i < 2; i++)
            if (streq (origin, proc->origins[i]))
                proc->flushed[i] = a;
    }
    else if (sscanf (line, "published %" SCNu64 " %" SCNu64, &a, &b) == 2) {
        proc->published = a;
        proc->published_seq = b;
    }
    else if (sscanf (line, "log %63s %127s %" SCNu64 " %" SCNu64, origin, stream, &a, &b) == 4) {
        size_t n = 0;
        while (n < proc->log_count
               && !(streq (proc->logs[n].origin, origin) && streq (proc->logs[n].stream, stream)))
            n++;
        if (n == proc->log_count && n < 16) {
            proc->log_count++;
            snprintf (proc->logs[n].origin, sizeof proc->logs[n].origin, "%.32s", origin);
            snprintf (proc->logs[n].stream, sizeof proc->logs[n].stream, "%.63s", stream);
        }
        if (n < 16) {
            proc->logs[n].first = a;
            proc->logs[n].head = b;
        }
    }
    else if (strncmp (line, "error", 5) == 0) {
        proc->errors++;
        diag ("%s: %s", proc->role.name, line);
    }
    else if (strncmp (line, "note ", 5) == 0)
        diag ("%s: %s", proc->role.name, line + 5);
}

//  Reads and handles what the running children reported, waiting up to
//  timeout_ms (50 ms at most) for the first line.
static void
s_pump (int timeout_ms)
{
    mesh_child_t *children[S_MAX_PROCS];
    s_proc_t *owners[S_MAX_PROCS];
    size_t count = 0;
    for (int i = 0; i < S_MAX_PROCS; i++)
        if (s_procs[i]) {
            owners[count] = s_procs[i];
            children[count++] = &s_procs[i]->child;
        }
    char line[MESH_LINE_MAX];
    int wait = timeout_ms > 50 ? 50 : timeout_ms < 0 ? 0 : timeout_ms;
    int64_t start = s_now ();
    bool any = false;
    int index;
    while ((index = mesh_read_any (children, count, line, sizeof line, any ? 0 : wait)) >= 0) {
        s_handle_line (owners[index], line);
        any = true;
    }
    //  Nothing to read (no child, or only closed pipes): still a pause,
    //  so that waiting loops never spin.
    int64_t left = wait - (s_now () - start);
    if (!any && left > 0)
        usleep ((useconds_t) left * 1000);
}

//  Pumps until cond holds or timeout_ms passed; the truth of cond.
#define S_WAIT_UNTIL(cond, timeout_ms)                                                             \
    do {                                                                                           \
        int64_t until_ = s_now () + (timeout_ms);                                                  \
        while (!(cond) && s_now () < until_)                                                       \
            s_pump ((int) (until_ - s_now ()));                                                    \
    } while (0)

static void
s_register (s_proc_t *proc)
{
    for (int i = 0; i < S_MAX_PROCS; i++)
        if (!s_procs[i]) {
            s_procs[i] = proc;
            proc->running = true;
            return;
        }
    bail ("too many children");
}

static void
s_unregister (s_proc_t *proc)
{
    for (int i = 0; i < S_MAX_PROCS; i++)
        if (s_procs[i] == proc)
            s_procs[i] = NULL;
    proc->running = false;
}

//  Starts a child in its role and waits for it to be ready. A restart
//  keeps what was reported before, except the per-run progress.
static bool
s_start (s_proc_t *proc)
{
    proc->have_count = proc->dhave_count = proc->log_count = 0;
    proc->published = proc->published_seq = 0;
    mesh_spawn (&proc->child, s_run_node, &proc->role);
    s_register (proc);
    char line[MESH_LINE_MAX];
    int64_t until = s_now () + 10000;
    while (s_now () < until) {
        if (!mesh_read_line (&proc->child, line, sizeof line, 500)) {
            if (proc->child.fd < 0)
                break; //  it died
            continue;
        }
        char id[64], router[128];
        if (sscanf (line, "ready %63s %127s", id, router) == 2) {
            snprintf (proc->id, sizeof proc->id, "%s", id);
            snprintf (proc->router, sizeof proc->router, "%s", router);
            return true;
        }
        s_handle_line (proc, line);
        if (strncmp (line, "error", 5) == 0)
            return false;
    }
    return false;
}

//  SIGKILL; then reads what it wrote before it died.
static void
s_crash (s_proc_t *proc)
{
    mesh_kill (&proc->child);
    char line[MESH_LINE_MAX];
    while (mesh_read_line (&proc->child, line, sizeof line, 1000))
        s_handle_line (proc, line);
    mesh_close (&proc->child);
    s_unregister (proc);
}

//  SIGTERM: the child stops its node cleanly; reads its last lines.
static void
s_stop (s_proc_t *proc)
{
    if (!proc->running)
        return;
    kill (proc->child.pid, SIGTERM);
    kill (proc->child.pid, SIGCONT);
    char line[MESH_LINE_MAX];
    while (mesh_read_line (&proc->child, line, sizeof line, 8000))
        s_handle_line (proc, line);
    mesh_finish (&proc->child, 1000);
    s_unregister (proc);
    free (proc->procs);
    proc->procs = NULL;
    proc->proc_count = proc->proc_alloc = 0;
}

static const s_seen_t *
s_have (const s_proc_t *proc, const char *origin, bool durable)
{
    const s_seen_t *table = durable ? proc->dhave : proc->have;
    size_t count = durable ? proc->dhave_count : proc->have_count;
    for (size_t i = 0; i < count; i++)
        if (streq (table[i].origin, origin))
            return &table[i];
    static const s_seen_t none = {{0}, 0, 0, 0, false};
    return &none;
}

static const s_loghead_t *
s_log_head (const s_proc_t *proc, const char *origin, const char *stream)
{
    for (size_t i = 0; i < proc->log_count; i++)
        if (streq (proc->logs[i].origin, origin) && streq (proc->logs[i].stream, stream))
            return &proc->logs[i];
    static const s_loghead_t none = {{0}, {0}, 0, 0};
    return &none;
}

static s_role_t
s_role (const char *name, const char *mesh, const char *stream)
{
    s_role_t role;
    memset (&role, 0, sizeof role);
    snprintf (role.name, sizeof role.name, "%s", name);
    snprintf (role.mesh, sizeof role.mesh, "%s-%d", mesh, s_run_id);
    snprintf (role.data, sizeof role.data, "%s", tap_path (name));
    role.interface = "none";
    role.stream = stream;
    return role;
}

static void
s_fixed_endpoints (s_role_t *role)
{
    snprintf (role->pub, sizeof role->pub, "tcp://127.0.0.1:%d", tap_free_port ());
    snprintf (role->router, sizeof role->router, "tcp://127.0.0.1:%d", tap_free_port ());
}

static void
s_add_peer (s_role_t *role, const char *endpoint)
{
    if (role->peer_count < 4)
        snprintf (role->peers[role->peer_count++], sizeof role->peers[0], "%s", endpoint);
}

//  The cursor of consumer for (origin, stream), read from a dead node's
//  data directory; UINT64_MAX when the store cannot be opened.
static uint64_t
s_offline_cursor (const char *dir, const char *consumer, const char *origin_hex, const char *stream)
{
    int error = 0;
    shoal_store_t *store = shoal_store_open (dir, NULL, &error);
    if (!store) {
        diag ("cannot open %s: %s", dir, shoal_store_open_error ());
        return UINT64_MAX;
    }
    uint8_t origin[SHOAL_ID_SIZE];
    uint64_t cursor = shoal_id_from_hex (origin_hex, origin) == 0
                          ? shoal_store_cursor (store, consumer, origin, stream)
                          : UINT64_MAX;
    shoal_store_close (&store);
    return cursor;
}

//  ==========================================================================
//  1. A durable consumer killed at random points

#define S_EVENTS 10000  //  from the origin
#define S_EVENTS_B 2000 //  from a second origin, so that there are cursors per origin
#define S_KILLS 5

//  One run of the consumer process, per origin.
typedef struct {
    uint64_t first[2];   //  first seq processed in the run, 0 = none
    uint64_t last[2];    //  last seq processed in the run, 0 = none
    size_t count[2];     //  events processed in the run
    size_t out_of_order; //  events not at the seq after the previous one of their origin
    uint64_t flushed[2]; //  last seq known durably acknowledged (ack_flush) at its end
    uint64_t cursor[2];  //  cursor in the store after the run ended, UINT64_MAX = unreadable
} s_run_t;

static void
test_consumer_killed (void)
{
    s_proc_t *origins[2];
    const char *names[2] = {"c-origin", "c-origin2"};
    const uint64_t totals[2] = {S_EVENTS, S_EVENTS_B};
    bool started = true;
    for (int o = 0; o < 2; o++) {
        origins[o] = (s_proc_t *) zmalloc (sizeof (s_proc_t));
        origins[o]->role = s_role (names[o], "durable", "jobs");
        origins[o]->role.batch = o == 0 ? 40 : 10;
        origins[o]->role.pause_ms = 10;
        started = started && s_start (origins[o]);
    }
    ok (started, "two origin processes started");
    s_proc_t *worker = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    worker->role = s_role ("c-worker", "durable", "jobs");
    worker->role.consumer = "worker";
    worker->role.consumer_lines = true;
    worker->role.flush_every = s_between (300, 1200);
    worker->role.work_us = 100;
    for (int o = 0; o < 2; o++) {
        s_add_peer (&worker->role, origins[o]->router);
        snprintf (worker->origins[o], sizeof worker->origins[o], "%.32s", origins[o]->id);
    }
    diag ("the consumer flushes its acknowledgements every %d events", worker->role.flush_every);

    s_run_t runs[S_KILLS + 1];
    memset (runs, 0, sizeof runs);
    uint8_t *times[2]; //  how often each seq of each origin was processed
    for (int o = 0; o < 2; o++)
        times[o] = (uint8_t *) zmalloc (totals[o] + 1);
    size_t total = 0, kills = 0, foreign = 0;
    uint64_t cursor[2] = {0, 0}; //  as the previous run left it
    for (int run = 0; run <= S_KILLS && started; run++) {
        started = s_start (worker);
        if (!started)
            break;
        if (run == 0)
            for (int o = 0; o < 2; o++)
                mesh_send (&origins[o]->child, "publish %" PRIu64, totals[o]);
        //  Killed after a random number of events of this run (the last
        //  run is left to finish), a few ms after the parent saw it.
        size_t kill_after = run < S_KILLS ? (size_t) s_between (1, 1700) : SIZE_MAX;
        int64_t until = s_now () + 30000;
        uint64_t reached[2] = {cursor[0], cursor[1]};
        size_t scanned = 0;
        while (s_now () < until && worker->proc_count < kill_after
               && (reached[0] < totals[0] || reached[1] < totals[1])) {
            s_pump ((int) (until - s_now ()));
            for (; scanned < worker->proc_count; scanned++)
                reached[worker->procs[scanned].origin] = worker->procs[scanned].seq;
        }
        if (run < S_KILLS) {
            usleep ((useconds_t) s_between (0, 15000));
            s_crash (worker);
            kills++;
        }
        else {
            s_pump (200);
            kill (worker->child.pid, SIGTERM);
            char line[MESH_LINE_MAX];
            while (mesh_read_line (&worker->child, line, sizeof line, 8000))
                s_handle_line (worker, line);
            mesh_finish (&worker->child, 1000);
            s_unregister (worker);
        }
        s_run_t *this = &runs[run];
        uint64_t previous[2] = {0, 0};
        for (size_t i = 0; i < worker->proc_count; i++) {
            int o = worker->procs[i].origin;
            uint64_t seq = worker->procs[i].seq;
            if (this->count[o] == 0)
                this->first[o] = seq;
            else if (seq != previous[o] + 1)
                this->out_of_order++;
            previous[o] = seq;
            this->last[o] = seq;
            this->count[o]++;
            if (seq >= 1 && seq <= totals[o] && times[o][seq] < 255)
                times[o][seq]++;
        }
        total += worker->proc_count;
        foreign += worker->foreign;
        for (int o = 0; o < 2; o++) {
            this->flushed[o] = worker->flushed[o];
            this->cursor[o] =
                s_offline_cursor (worker->role.data, "worker", origins[o]->id, "jobs");
            //  What the next run knows to be durable, at least.
            if (this->cursor[o] != UINT64_MAX)
                worker->flushed[o] = cursor[o] = this->cursor[o];
        }
        diag ("run %d: processed %zu + %zu (seqs %" PRIu64 "..%" PRIu64 " and %" PRIu64 "..%" PRIu64
              "), flushed %" PRIu64 " and %" PRIu64 ", durable cursors %" PRIu64 " and %" PRIu64
              "%s",
              run + 1, this->count[0], this->count[1], this->first[0], this->last[0],
              this->first[1], this->last[1], this->flushed[0], this->flushed[1], this->cursor[0],
              this->cursor[1], run < S_KILLS ? ", then SIGKILL" : ", then stopped cleanly");
        worker->proc_count = 0;
        worker->foreign = 0;
    }
    ok (started, "the consumer process started each time");
    is_int (kills, S_KILLS, "the consumer was SIGKILLed %d times at random points and restarted",
            S_KILLS);
    is_int (origins[0]->errors + origins[1]->errors + worker->errors, 0,
            "no child reported an error");

    size_t missing = 0, distinct = 0;
    for (int o = 0; o < 2; o++)
        for (size_t seq = 1; seq <= totals[o]; seq++) {
            missing += times[o][seq] == 0;
            distinct += times[o][seq] > 0;
        }
    is_int (missing, 0, "every one of the %d + %d events was processed at least once", S_EVENTS,
            S_EVENTS_B);
    ok (distinct == S_EVENTS + S_EVENTS_B && foreign == 0,
        "after dedupe by (origin, seq) each event was processed exactly once (%zu distinct of "
        "%zu processed, %zu of another origin)",
        distinct, total, foreign);
    size_t out_of_order = 0;
    for (int run = 0; run <= S_KILLS; run++)
        out_of_order += runs[run].out_of_order;
    is_int (out_of_order, 0,
            "within each run each origin's events came in seq order, no gap, no duplicate");

    //  What each crash left, per origin: the durable cursor covers what
    //  ack_flush covered and never goes past what was processed; the next
    //  run starts right after it.
    size_t below_flush = 0, ahead = 0, wrong_start = 0, unchecked = 0;
    uint64_t unacknowledged = 0;
    uint64_t before[2] = {0, 0}; //  cursor before the run
    for (int run = 0; run < S_KILLS; run++) {
        const s_run_t *this = &runs[run];
        const s_run_t *next = &runs[run + 1];
        for (int o = 0; o < 2; o++) {
            uint64_t last = this->count[o] ? this->last[o] : before[o];
            if (this->cursor[o] == UINT64_MAX || this->cursor[o] < this->flushed[o])
                below_flush++;
            if (this->cursor[o] != UINT64_MAX && this->cursor[o] > last)
                ahead++;
            if (this->cursor[o] != UINT64_MAX && last > this->cursor[o])
                unacknowledged += last - this->cursor[o];
            if (next->count[o] && next->first[o] != this->cursor[o] + 1) {
                wrong_start++;
                diag ("run %d began origin %d at %" PRIu64 ", its durable cursor was %" PRIu64,
                      run + 2, o + 1, next->first[o], this->cursor[o]);
            }
            else if (!next->count[o] && run + 1 == S_KILLS && this->cursor[o] != totals[o])
                wrong_start++;
            else if (!next->count[o])
                unchecked++; //  killed before it got to this origin
            before[o] = this->cursor[o];
        }
    }
    is_int (below_flush, 0,
            "after each kill each durable cursor is at or past what ack_flush made durable");
    is_int (ahead, 0, "after each kill no durable cursor is past the last processed event");
    ok (runs[0].first[0] == 1 && runs[0].first[1] <= 1,
        "the first run started at each origin's first event");
    is_int (wrong_start, 0,
            "after each restart each origin's first event is its durable cursor + 1: "
            "redelivered events are exactly the unacknowledged ones (%zu of %d not seen)",
            unchecked, 2 * S_KILLS);
    is_int (total - S_EVENTS - S_EVENTS_B, unacknowledged,
            "duplicates = events processed but not durably acknowledged at the kills (%" PRIu64 ")",
            unacknowledged);
    ok (runs[S_KILLS].cursor[0] == S_EVENTS && runs[S_KILLS].cursor[1] == S_EVENTS_B,
        "after a clean stop the cursors are at the last acknowledged events (%" PRIu64
        " and %" PRIu64 ")",
        runs[S_KILLS].cursor[0], runs[S_KILLS].cursor[1]);
    for (int o = 0; o < 2; o++) {
        s_stop (origins[o]);
        free (origins[o]);
        free (times[o]);
    }
    free (worker->procs);
    free (worker);
}

//  ==========================================================================
//  Offline comparison of an origin's log with a replica's

typedef struct {
    uint64_t compared;  //  records compared
    uint64_t different; //  records that differ (seq, time or bytes)
    uint64_t first[2];  //  first seq of each log
    uint64_t head[2];   //  head of each log
    bool opened;        //  both logs could be opened
} s_compare_t;

static s_compare_t
s_compare_logs (const char *origin_dir, const char *replica_dir, const char *origin_hex,
                const char *stream)
{
    s_compare_t result;
    memset (&result, 0, sizeof result);
    uint8_t origin[SHOAL_ID_SIZE];
    if (shoal_id_from_hex (origin_hex, origin))
        return result;
    int error = 0;
    shoal_store_t *stores[2] = {shoal_store_open (origin_dir, NULL, &error),
                                shoal_store_open (replica_dir, NULL, &error)};
    shoal_log_t *logs[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (stores[i])
            logs[i] = shoal_store_log (stores[i], origin, stream, false, &error);
    if (logs[0] && logs[1]) {
        result.opened = true;
        for (int i = 0; i < 2; i++) {
            result.first[i] = shoal_log_first (logs[i]);
            result.head[i] = shoal_log_head (logs[i]);
        }
        //  Over the range both hold, record by record.
        uint64_t from = result.first[0] > result.first[1] ? result.first[0] : result.first[1];
        shoal_log_iter_t *iters[2] = {shoal_log_iter_new (logs[0], from, 0),
                                      shoal_log_iter_new (logs[1], from, 0)};
        while (iters[0] && iters[1]) {
            uint64_t seq[2];
            int64_t time_ns[2];
            const uint8_t *data[2];
            size_t size[2];
            int got0 = shoal_log_iter_next (iters[0], &seq[0], &time_ns[0], &data[0], &size[0]);
            int got1 = shoal_log_iter_next (iters[1], &seq[1], &time_ns[1], &data[1], &size[1]);
            if (got0 != 1 || got1 != 1) {
                if (got0 != got1)
                    result.different++;
                break;
            }
            result.compared++;
            if (seq[0] != seq[1] || time_ns[0] != time_ns[1] || size[0] != size[1]
                || memcmp (data[0], data[1], size[0]) != 0) {
                if (result.different++ < 3)
                    diag ("seq %" PRIu64 "/%" PRIu64 " differs: %zu bytes against %zu", seq[0],
                          seq[1], size[0], size[1]);
            }
        }
        shoal_log_iter_destroy (&iters[0]);
        shoal_log_iter_destroy (&iters[1]);
    }
    else
        diag ("cannot open both logs of %s/%s", origin_hex, stream);
    shoal_store_close (&stores[0]);
    shoal_store_close (&stores[1]);
    return result;
}

//  ==========================================================================
//  2. The origin killed; a subscriber catches up from a replica

static void
test_origin_killed (void)
{
    s_proc_t *origin = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    s_proc_t *replica = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    s_proc_t *reader = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    origin->role = s_role ("k-origin", "killed", "hist");
    s_fixed_endpoints (&origin->role);
    origin->role.batch = 50;
    origin->role.pause_ms = 5;
    origin->role.watch = true;
    replica->role = s_role ("k-replica", "killed", "hist");
    s_add_peer (&replica->role, origin->role.router);
    replica->role.replicate = "hist";
    replica->role.watch = true;
    ok (s_start (origin) && s_start (replica), "origin and replica started");
    //  A subscriber that is there before the kill, connected to both.
    s_proc_t *early = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    early->role = s_role ("k-early", "killed", "hist");
    s_add_peer (&early->role, origin->role.router);
    s_add_peer (&early->role, replica->router);
    early->role.subscribe = true;
    ok (s_start (early), "a subscriber started before the kill");
    //  And a slow durable consumer (1 ms per event), also connected to both.
    s_proc_t *worker = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    worker->role = s_role ("k-worker", "killed", "hist");
    s_add_peer (&worker->role, origin->role.router);
    s_add_peer (&worker->role, replica->router);
    worker->role.consumer = "slow";
    worker->role.consumer_lines = true;
    worker->role.flush_every = 250;
    worker->role.work_us = 1000;
    snprintf (worker->origins[0], sizeof worker->origins[0], "%.32s", origin->id);
    ok (s_start (worker), "a slow durable consumer started before the kill");

    //  Killed in the middle of its stream, once the replica has some.
    mesh_send (&origin->child, "publish 3000");
    S_WAIT_UNTIL (s_log_head (replica, origin->id, "hist")->head >= 1000, 15000);
    s_crash (origin);
    uint64_t held = 0;
    int64_t stable_since = s_now ();
    int64_t until = s_now () + 5000;
    while (s_now () < until && s_now () - stable_since < 600) {
        s_pump (50);
        if (s_log_head (replica, origin->id, "hist")->head != held) {
            held = s_log_head (replica, origin->id, "hist")->head;
            stable_since = s_now ();
        }
    }
    diag ("origin killed; the replica holds %" PRIu64 " of its events", held);
    ok (held >= 1000, "the replica held the origin's events before the kill (%" PRIu64 ")", held);

    //  The durable consumer crashes, mid-way, and restarts while the
    //  origin is still down: it resumes after its cursor, from the replica.
    s_crash (worker);
    uint64_t cursor = s_offline_cursor (worker->role.data, "slow", origin->id, "hist");
    uint64_t processed = worker->proc_count ? worker->procs[worker->proc_count - 1].seq : 0;
    worker->proc_count = 0;
    ok (s_start (worker),
        "the durable consumer, killed after %" PRIu64 " events, restarted while the origin is down",
        processed);
    S_WAIT_UNTIL (worker->proc_count && worker->procs[worker->proc_count - 1].seq >= held, 10000);
    size_t gaps = 0;
    for (size_t i = 1; i < worker->proc_count; i++)
        gaps += worker->procs[i].seq != worker->procs[i - 1].seq + 1;
    ok (cursor < held && worker->proc_count == held - cursor && worker->procs[0].seq == cursor + 1
            && gaps == 0,
        "it resumes from the replica right after its durable cursor %" PRIu64
        ", in order, to %" PRIu64 " (%zu events from %" PRIu64 ")",
        cursor, held, worker->proc_count, worker->proc_count ? worker->procs[0].seq : 0);
    s_stop (worker);
    free (worker);

    //  A fresh subscriber that knows the dead origin and the replica.
    reader->role = s_role ("k-reader", "killed", "hist");
    s_add_peer (&reader->role, origin->role.router);
    s_add_peer (&reader->role, replica->router);
    reader->role.subscribe = true;
    ok (s_start (reader), "a fresh subscriber started while the origin is down");
    int64_t started = s_now ();
    S_WAIT_UNTIL (s_have (reader, origin->id, false)->count >= held, 15000);
    const s_seen_t *seen = s_have (reader, origin->id, false);
    ok (seen->count == held && seen->bad == 0,
        "it catches up from the replica: all %" PRIu64 " events, in order, no gap (%" PRIu64
        " in %d ms)",
        held, seen->count, (int) (s_now () - started));
    //  It may hold more than the replica: events the origin made durable
    //  and sent live before it died, that had not reached the replica yet.
    S_WAIT_UNTIL (s_have (early, origin->id, false)->count >= held, 10000);
    seen = s_have (early, origin->id, false);
    ok (seen->count >= held && seen->bad == 0,
        "the subscriber that was live when the origin died gets the rest from the replica (%" PRIu64
        " of %" PRIu64 ", in order)",
        seen->count, held);
    s_stop (early);
    free (early);

    //  The origin comes back on its data and ROUTER endpoint, with
    //  another PUB port (as an ephemeral one would be), and goes on.
    origin->role.publish = 0;
    snprintf (origin->role.pub, sizeof origin->role.pub, "tcp://127.0.0.1:%d", tap_free_port ());
    ok (s_start (origin), "origin restarted (same ROUTER endpoint, another PUB port)");
    mesh_send (&origin->child, "publish 500");
    S_WAIT_UNTIL (origin->published == 500, 15000);
    uint64_t head = origin->published_seq;
    ok (head > held, "the restarted origin continues its seqs (head %" PRIu64 ")", head);
    S_WAIT_UNTIL (s_log_head (replica, origin->id, "hist")->head == head
                      && s_have (reader, origin->id, false)->count == head,
                  8000);
    is_int (s_log_head (replica, origin->id, "hist")->head, head,
            "the replica converges to the origin's head");
    seen = s_have (reader, origin->id, false);
    ok (seen->count == head && seen->bad == 0,
        "the subscriber gets the rest from the origin, in order (%" PRIu64 " of %" PRIu64 ")",
        seen->count, head);
    s_stop (reader);
    s_stop (replica);
    s_stop (origin);

    s_compare_t compare =
        s_compare_logs (origin->role.data, replica->role.data, origin->id, "hist");
    ok (compare.opened && compare.first[0] == 1 && compare.first[1] == 1 && compare.head[0] == head
            && compare.head[1] == head,
        "origin and replica logs hold the same range (%" PRIu64 "..%" PRIu64 " and %" PRIu64
        "..%" PRIu64 ")",
        compare.first[0], compare.head[0], compare.first[1], compare.head[1]);
    ok (compare.compared == head && compare.different == 0,
        "the replica's log equals the origin's record by record: same seqs, times and bytes "
        "(%" PRIu64 " compared, %" PRIu64 " differ)",
        compare.compared, compare.different);
    free (origin);
    free (replica);
    free (reader);
}

//  ==========================================================================
//  3. The origin partitioned while it publishes, then healed

#define S_PARTITIONED 5000

//  Runs the partition: before it, 100 events everyone has; during it,
//  5,000 more; after it, everyone must have all 5,100 within 5 s.
//  cut and heal make and end the partition; they return 0 on success.
static void
s_partition_run (const char *variant, s_proc_t *origin, s_proc_t *reader, s_proc_t *replica,
                 int (*cut) (void *), int (*heal) (void *), void *arg)
{
    const char *stream = origin->role.stream;
    mesh_send (&origin->child, "publish 100");
    S_WAIT_UNTIL (s_have (reader, origin->id, false)->count == 100
                      && s_have (reader, origin->id, true)->count == 100
                      && s_log_head (replica, origin->id, stream)->head == 100,
                  15000);
    ok (s_have (reader, origin->id, false)->count == 100
            && s_have (reader, origin->id, true)->count == 100
            && s_log_head (replica, origin->id, stream)->head == 100,
        "%s: subscriber, durable consumer and replica are connected (100 events before)", variant);
    if (cut (arg)) {
        ok (false, "%s: the partition could be made", variant);
        return;
    }
    int64_t cut_at = s_now ();
    mesh_send (&origin->child, "publish %d", S_PARTITIONED);
    S_WAIT_UNTIL (origin->published == 100 + S_PARTITIONED, 20000);
    //  Cut off well past the peers' expiry, so that they give each other up.
    int64_t hold_until = s_now () + 1500;
    while (s_now () < hold_until)
        s_pump ((int) (hold_until - s_now ()));
    ok (origin->published == 100 + S_PARTITIONED,
        "%s: the cut-off origin recorded all %d events durably (in %d ms)", variant, S_PARTITIONED,
        (int) (s_now () - cut_at));
    uint64_t during = s_have (reader, origin->id, false)->count;
    if (heal (arg)) {
        ok (false, "%s: the partition could be healed", variant);
        return;
    }
    int64_t healed = s_now ();
    uint64_t all = 100 + S_PARTITIONED;
    int64_t reader_ms = -1, consumer_ms = -1, replica_ms = -1;
    int64_t until = healed + 5000;
    while (s_now () < until && (reader_ms < 0 || consumer_ms < 0 || replica_ms < 0)) {
        s_pump ((int) (until - s_now ()));
        if (reader_ms < 0 && s_have (reader, origin->id, false)->count >= all)
            reader_ms = s_now () - healed;
        if (consumer_ms < 0 && s_have (reader, origin->id, true)->count >= all)
            consumer_ms = s_now () - healed;
        if (replica_ms < 0 && s_log_head (replica, origin->id, stream)->head >= all)
            replica_ms = s_now () - healed;
    }
    is_int (during, 100, "%s: the partition held: nothing reached the subscriber meanwhile",
            variant);
    const s_seen_t *plain = s_have (reader, origin->id, false);
    const s_seen_t *durable = s_have (reader, origin->id, true);
    ok (reader_ms >= 0 && plain->count == all && plain->bad == 0,
        "%s: the subscriber has all %d, in order, within 5 s of healing (%" PRIu64 " in %d ms)",
        variant, S_PARTITIONED, plain->count, (int) reader_ms);
    ok (consumer_ms >= 0 && durable->count == all && durable->bad == 0,
        "%s: the durable consumer has all %d, in order, within 5 s of healing (%" PRIu64
        " in %d ms)",
        variant, S_PARTITIONED, durable->count, (int) consumer_ms);
    if (durable->count != all || durable->bad)
        diag ("%s: durable consumer: %" PRIu64 " events, %" PRIu64 " out of order, last %" PRIu64,
              variant, durable->count, durable->bad, durable->last);
    if (plain->count != all || plain->bad)
        diag ("%s: subscriber: %" PRIu64 " events, %" PRIu64 " out of order, last %" PRIu64,
              variant, plain->count, plain->bad, plain->last);
    ok (replica_ms >= 0 && s_log_head (replica, origin->id, stream)->head == all,
        "%s: the replica has all %d within 5 s of healing (head %" PRIu64 " in %d ms)", variant,
        S_PARTITIONED, s_log_head (replica, origin->id, stream)->head, (int) replica_ms);
}

static int
s_stop_peers (void *arg)
{
    s_proc_t **peers = (s_proc_t **) arg;
    mesh_pause (&peers[0]->child);
    mesh_pause (&peers[1]->child);
    return 0;
}

static int
s_continue_peers (void *arg)
{
    s_proc_t **peers = (s_proc_t **) arg;
    mesh_resume (&peers[0]->child);
    mesh_resume (&peers[1]->child);
    return 0;
}

static void
test_partition_paused (void)
{
    s_proc_t *origin = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    s_proc_t *reader = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    s_proc_t *replica = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    origin->role = s_role ("p-origin", "paused", "part");
    origin->role.batch = 250;
    origin->role.pause_ms = 50;
    reader->role = s_role ("p-reader", "paused", "part");
    reader->role.subscribe = true;
    reader->role.consumer = "partitioned";
    reader->role.flush_every = 500;
    replica->role = s_role ("p-replica", "paused", "part");
    replica->role.replicate = "part";
    replica->role.watch = true;
    bool started = s_start (origin);
    s_add_peer (&reader->role, origin->router);
    s_add_peer (&replica->role, origin->router);
    started = started && s_start (reader) && s_start (replica);
    ok (started, "SIGSTOP: origin, subscriber and replica processes started");
    if (started) {
        s_proc_t *peers[2] = {reader, replica};
        s_partition_run ("SIGSTOP", origin, reader, replica, s_stop_peers, s_continue_peers, peers);
    }
    s_stop (reader);
    s_stop (replica);
    s_stop (origin);
    free (origin);
    free (reader);
    free (replica);
}

//  The nftables variant: three namespaces on a bridge (a fourth
//  namespace), zbeacon on the veths. The bridge drops every frame to or
//  from the origin's port: packets are lost on the way, as on a real
//  network, and no node sees an error when it sends.
typedef struct {
    char ns[4][32];   //  origin, subscriber, replica, bridge
    char veth[3][16]; //  the nodes' interfaces
    char rules[4200]; //  nft script that cuts the origin off
} s_nft_t;

static int
s_nft_cut (void *arg)
{
    s_nft_t *net = (s_nft_t *) arg;
    return MESH_IP ("netns", "exec", net->ns[3], "nft", "-f", net->rules);
}

static int
s_nft_heal (void *arg)
{
    s_nft_t *net = (s_nft_t *) arg;
    return MESH_IP ("netns", "exec", net->ns[3], "nft", "delete", "table", "bridge",
                    "shoal_partition");
}

static void
test_partition_nft (void)
{
    const int checks = 7;
    if (geteuid () != 0 || access ("/var/run", W_OK) != 0) {
        skip (checks, "nftables partition: network namespaces need root");
        return;
    }
    if (MESH_RUN ("nft", "--version") != 0) {
        skip (checks, "nftables partition: nft is not installed (apt-get install nftables)");
        return;
    }
    s_nft_t net;
    memset (&net, 0, sizeof net);
    const char *tags = "osr";
    char port[3][16], bridge[16], address[3][24];
    for (int i = 0; i < 3; i++) {
        snprintf (net.ns[i], sizeof net.ns[i], "shoald%d%c", s_run_id, tags[i]);
        snprintf (net.veth[i], sizeof net.veth[i], "sd%d%c", s_run_id % 100000, tags[i]);
        snprintf (port[i], sizeof port[i], "sd%dp%c", s_run_id % 100000, tags[i]);
        snprintf (address[i], sizeof address[i], "10.215.0.%d/24", i + 1);
    }
    snprintf (net.ns[3], sizeof net.ns[3], "shoald%dbr", s_run_id);
    snprintf (bridge, sizeof bridge, "sd%dbr", s_run_id % 100000);
    bool made = true;
    for (int i = 0; i < 4 && made; i++)
        made = mesh_netns_add (net.ns[i]) == 0;
    made = made && MESH_IP ("-n", net.ns[3], "link", "add", bridge, "type", "bridge") == 0
           && MESH_IP ("-n", net.ns[3], "link", "set", bridge, "up") == 0;
    for (int i = 0; i < 3 && made; i++)
        made = MESH_IP ("-n", net.ns[i], "link", "add", net.veth[i], "type", "veth", "peer", "name",
                        port[i], "netns", net.ns[3])
                   == 0
               && MESH_IP ("-n", net.ns[3], "link", "set", port[i], "master", bridge, "up") == 0
               && MESH_IP ("-n", net.ns[i], "addr", "add", address[i], "broadcast", "+", "dev",
                           net.veth[i])
                      == 0
               && MESH_IP ("-n", net.ns[i], "link", "set", "lo", "up") == 0
               && MESH_IP ("-n", net.ns[i], "link", "set", net.veth[i], "up") == 0;
    if (!made) {
        mesh_netns_remove_all ();
        skip (checks, "nftables partition: cannot make namespaces, veth pairs or a bridge here");
        return;
    }
    //  The rules, tried once before the nodes start: a kernel without
    //  nf_tables skips the variant.
    snprintf (net.rules, sizeof net.rules, "%s", tap_path ("partition.nft"));
    FILE *file = fopen (net.rules, "w");
    if (file) {
        fprintf (file,
                 "table bridge shoal_partition {\n"
                 "    chain forward {\n"
                 "        type filter hook forward priority 0; policy accept;\n"
                 "        iifname \"%s\" drop\n"
                 "        oifname \"%s\" drop\n"
                 "    }\n"
                 "}\n",
                 port[0], port[0]);
        fclose (file);
    }
    if (!file || s_nft_cut (&net) != 0 || s_nft_heal (&net) != 0) {
        mesh_netns_remove_all ();
        skip (checks, "nftables partition: nft cannot load rules in a namespace here (no "
                      "nf_tables in this kernel?)");
        return;
    }
    s_proc_t *procs[3];
    const char *names[3] = {"n-origin", "n-reader", "n-replica"};
    bool started = true;
    for (int i = 0; i < 3; i++) {
        procs[i] = (s_proc_t *) zmalloc (sizeof (s_proc_t));
        procs[i]->role = s_role (names[i], "nft", "part");
        procs[i]->role.interface = net.veth[i];
        procs[i]->role.netns = net.ns[i];
    }
    procs[0]->role.batch = 250;
    procs[0]->role.pause_ms = 50;
    procs[1]->role.subscribe = true;
    procs[1]->role.consumer = "partitioned";
    procs[1]->role.flush_every = 500;
    procs[2]->role.replicate = "part";
    procs[2]->role.watch = true;
    for (int i = 0; i < 3; i++)
        started = started && s_start (procs[i]);
    ok (started, "nftables: origin, subscriber and replica started in their own namespaces");
    if (started)
        s_partition_run ("nftables", procs[0], procs[1], procs[2], s_nft_cut, s_nft_heal, &net);
    else
        skip (checks - 1, "nftables: the nodes did not start");
    for (int i = 0; i < 3; i++) {
        s_stop (procs[i]);
        free (procs[i]);
    }
    mesh_netns_remove_all ();
    for (int i = 0; i < 4; i++)
        if (mesh_netns_exists (net.ns[i]))
            diag ("namespace %s was not removed", net.ns[i]);
}

//  ==========================================================================
//  4. An origin and two replicas, any one of them down

static void
test_any_one_down (void)
{
    s_proc_t *nodes[3];
    const char *names[3] = {"m-origin", "m-replica1", "m-replica2"};
    for (int i = 0; i < 3; i++) {
        nodes[i] = (s_proc_t *) zmalloc (sizeof (s_proc_t));
        nodes[i]->role = s_role (names[i], "multi", "multi");
        s_fixed_endpoints (&nodes[i]->role);
        nodes[i]->role.watch = true;
    }
    //  One replica names the stream, the other replicates "all"; the
    //  second replica is also an origin of the stream (100 events of its
    //  own, kept by itself and the first replica).
    for (int i = 1; i < 3; i++) {
        s_add_peer (&nodes[i]->role, nodes[0]->role.router);
        nodes[i]->role.replicate = i == 1 ? "multi" : "all";
    }
    s_add_peer (&nodes[2]->role, nodes[1]->role.router);
    bool started = true;
    for (int i = 0; i < 3; i++)
        started = started && s_start (nodes[i]);
    ok (started, "origin and two replicas (one of stream \"multi\", one of \"all\") started");
    s_proc_t *origin = nodes[0], *second = nodes[2];
    mesh_send (&origin->child, "publish 1000");
    mesh_send (&second->child, "publish 100");
    S_WAIT_UNTIL (origin->published == 1000 && second->published == 100
                      && s_log_head (nodes[1], origin->id, "multi")->head == 1000
                      && s_log_head (nodes[2], origin->id, "multi")->head == 1000
                      && s_log_head (nodes[1], second->id, "multi")->head == 100,
                  10000);
    ok (s_log_head (nodes[1], origin->id, "multi")->head == 1000,
        "%s holds the origin's 1000 events (%" PRIu64 ")", names[1],
        s_log_head (nodes[1], origin->id, "multi")->head);
    ok (s_log_head (nodes[2], origin->id, "multi")->head == 1000,
        "%s (\"all\") holds the origin's 1000 events (%" PRIu64 ")", names[2],
        s_log_head (nodes[2], origin->id, "multi")->head);
    ok (s_log_head (nodes[1], second->id, "multi")->head == 100,
        "%s holds %s's own 100 events (%" PRIu64 ")", names[1], names[2],
        s_log_head (nodes[1], second->id, "multi")->head);
    uint64_t total = 1000;
    for (int down = 0; down < 3; down++) {
        s_proc_t *victim = nodes[down];
        s_crash (victim);
        if (down > 0) {
            //  History moves on while a replica is down.
            uint64_t before = origin->published;
            mesh_send (&origin->child, "publish 200");
            S_WAIT_UNTIL (origin->published == before + 200, 10000);
            total = origin->published_seq;
        }
        s_proc_t *reader = (s_proc_t *) zmalloc (sizeof (s_proc_t));
        char name[32];
        snprintf (name, sizeof name, "m-reader%d", down);
        reader->role = s_role (name, "multi", "multi");
        for (int i = 0; i < 3; i++)
            s_add_peer (&reader->role, nodes[i]->role.router);
        reader->role.subscribe = true;
        bool up = s_start (reader);
        int64_t started_at = s_now ();
        S_WAIT_UNTIL (s_have (reader, origin->id, false)->count >= total
                          && s_have (reader, second->id, false)->count >= 100,
                      15000);
        const s_seen_t *seen = s_have (reader, origin->id, false);
        const s_seen_t *other = s_have (reader, second->id, false);
        ok (up && seen->count == total && seen->bad == 0 && other->count == 100 && other->bad == 0,
            "with %s down, a fresh subscriber replays both origins' history in order from the "
            "others (%" PRIu64 " of %" PRIu64 " and %" PRIu64 " of 100 in %d ms)",
            victim->role.name, seen->count, total, other->count, (int) (s_now () - started_at));
        s_stop (reader);
        free (reader);
        //  It comes back on its data and endpoints; a replica converges.
        victim->role.publish = 0;
        bool back = s_start (victim);
        if (down == 0)
            ok (back, "%s restarted", victim->role.name);
        else {
            S_WAIT_UNTIL (s_log_head (victim, origin->id, "multi")->head == total, 8000);
            ok (back && s_log_head (victim, origin->id, "multi")->head == total,
                "%s restarted and converged to the origin's head %" PRIu64 " (has %" PRIu64 ")",
                victim->role.name, total, s_log_head (victim, origin->id, "multi")->head);
        }
    }
    for (int i = 0; i < 3; i++)
        s_stop (nodes[i]);
    s_compare_t compares[3] = {
        s_compare_logs (nodes[0]->role.data, nodes[1]->role.data, nodes[0]->id, "multi"),
        s_compare_logs (nodes[0]->role.data, nodes[2]->role.data, nodes[0]->id, "multi"),
        s_compare_logs (nodes[2]->role.data, nodes[1]->role.data, nodes[2]->id, "multi")};
    const char *what[3] = {"m-replica1's copy of the origin", "m-replica2's copy of the origin",
                           "m-replica1's copy of m-replica2"};
    uint64_t expect[3] = {total, total, 100};
    for (int i = 0; i < 3; i++)
        ok (compares[i].compared == expect[i] && compares[i].different == 0,
            "%s equals its origin's log byte for byte (%" PRIu64 " compared, %" PRIu64 " differ)",
            what[i], compares[i].compared, compares[i].different);
    for (int i = 0; i < 3; i++)
        free (nodes[i]);
}

//  ==========================================================================
//  5. Consumers through the API and the wire

#define S_CONSUMER_CHECKS 26

//  Child: one check, reported to the parent.
static void
s_check (bool condition, const char *format, ...)
{
    char text[400];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    mesh_report ("check %d %s", condition ? 1 : 0, text);
}

static uint64_t s_request_id;

//  Child: sends a ConsumerRequest and waits for its Response. Caller owns it.
static Shoal__V1__Response *
s_consumer_call (zsock_t *dealer, const char *name, const char *op, Shoal__V1__LogHead **cursors,
                 size_t cursor_count)
{
    Shoal__V1__ConsumerRequest body = SHOAL__V1__CONSUMER_REQUEST__INIT;
    body.name = (char *) name;
    body.op = (char *) op;
    body.cursors = cursors;
    body.n_cursors = cursor_count;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = ++s_request_id;
    request.body_case = SHOAL__V1__REQUEST__BODY_CONSUMER;
    request.consumer = &body;
    size_t size = shoal__v1__request__get_packed_size (&request);
    zframe_t *frame = zframe_new (NULL, size);
    shoal__v1__request__pack (&request, zframe_data (frame));
    zframe_send (&frame, dealer, 0);
    zpoller_t *poller = zpoller_new (dealer, NULL);
    Shoal__V1__Response *response = NULL;
    while (!response && zpoller_wait (poller, 5000)) {
        zframe_t *reply = zframe_recv (dealer);
        if (!reply)
            break;
        response = shoal__v1__response__unpack (NULL, zframe_size (reply), zframe_data (reply));
        zframe_destroy (&reply);
        if (response && response->request_id != request.request_id)
            shoal__v1__response__free_unpacked (response, NULL), response = NULL;
    }
    zpoller_destroy (&poller);
    return response;
}

//  The cursor of (origin, stream) in a ConsumerReply, 0 when absent,
//  UINT64_MAX when the response is not a ConsumerReply.
static uint64_t
s_reply_cursor (const Shoal__V1__Response *response, const uint8_t *origin, const char *stream)
{
    if (!response || response->body_case != SHOAL__V1__RESPONSE__BODY_CONSUMER)
        return UINT64_MAX;
    for (size_t i = 0; i < response->consumer->n_cursors; i++) {
        const Shoal__V1__LogHead *cursor = response->consumer->cursors[i];
        if (cursor->origin.len == SHOAL_ID_SIZE
            && memcmp (cursor->origin.data, origin, SHOAL_ID_SIZE) == 0
            && streq (cursor->stream, stream))
            return cursor->head_seq;
    }
    return 0;
}

static bool
s_reply_names (const Shoal__V1__Response *response, const char *expect)
{
    if (!response || response->body_case != SHOAL__V1__RESPONSE__BODY_CONSUMER)
        return false;
    char names[512] = "";
    for (size_t i = 0; i < response->consumer->n_names; i++) {
        size_t used = strlen (names);
        snprintf (names + used, sizeof names - used, "%s%s", i ? "," : "",
                  response->consumer->names[i]);
    }
    if (!streq (names, expect))
        mesh_report ("note names are \"%s\", expected \"%s\"", names, expect);
    return streq (names, expect);
}

static bool
s_reply_error (const Shoal__V1__Response *response, uint32_t code)
{
    return response && response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR
           && response->error->code == code;
}

static bool
s_api_names (shoal_node_t *node, const char *expect)
{
    char **names = shoal_node_consumers (node);
    char text[512] = "";
    for (size_t i = 0; names && names[i]; i++) {
        size_t used = strlen (text);
        snprintf (text + used, sizeof text - used, "%s%s", i ? "," : "", names[i]);
    }
    shoal_node_consumers_free (&names);
    if (!streq (text, expect))
        mesh_report ("note API names are \"%s\", expected \"%s\"", text, expect);
    return streq (text, expect);
}

//  Receives count events of one subscription (others are dropped).
static int
s_receive (shoal_node_t *node, int subscription, shoal_event_t **events, int count)
{
    int got = 0;
    int64_t until = zclock_mono () + 5000;
    while (got < count && zclock_mono () < until) {
        int from = 0;
        shoal_event_t *event = shoal_node_recv (node, 100, &from);
        if (event && from == subscription)
            events[got++] = event;
        else
            shoal_event_destroy (&event);
    }
    return got;
}

static void
s_free_events (shoal_event_t **events, int count)
{
    for (int i = 0; i < count; i++)
        shoal_event_destroy (&events[i]);
}

static void
s_run_consumers (const void *arg)
{
    const s_role_t *role = (const s_role_t *) arg;
    shoal_node_t *node = s_node_start (role);
    mesh_report ("ready - %s", shoal_node_router_endpoint (node));
    const uint8_t *self = shoal_node_id (node);
    uint8_t id[SHOAL_ID_SIZE];
    memcpy (id, self, SHOAL_ID_SIZE);
    uint64_t seq = 0;
    for (int n = 1; n <= 10; n++) {
        shoal_event_t *event = s_event ("cons", n);
        shoal_node_publish (node, event, &seq, NULL);
        shoal_event_destroy (&event);
    }
    shoal_node_wait_durable (node, "cons", seq, 5000);
    zsock_t *dealer = zsock_new_dealer (shoal_node_router_endpoint (node));

    int alpha = shoal_node_subscribe_durable (node, "alpha", "cons", NULL);
    int beta = shoal_node_subscribe_durable (node, "beta", "cons", NULL);
    shoal_event_t *a[10], *b[10];
    int got_a = s_receive (node, alpha, a, 10);
    int got_b = s_receive (node, beta, b, 10);
    s_check (alpha > 0 && beta > 0 && got_a == 10 && got_b == 10,
             "two durable consumers of the node's own stream get its 10 events (%d, %d)", got_a,
             got_b);
    s_check (s_api_names (node, "alpha,beta"), "shoal_node_consumers lists alpha and beta");
    shoal_from_t beginning = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    int plain = shoal_node_subscribe (node, "cons", NULL, &beginning);
    shoal_event_t *p[1];
    int got_p = s_receive (node, plain, p, 1);
    s_check (got_p == 1 && shoal_node_ack (node, plain, p[0], false) == -1,
             "shoal_node_ack on a plain subscription returns -1");
    s_free_events (p, got_p);
    shoal_node_unsubscribe (node, plain);
    s_check (shoal_node_subscribe_durable (node, "no such name!", "cons", NULL) == -1
                 && shoal_node_subscribe_durable (node, "alpha", "Not A Stream", NULL) == -1,
             "shoal_node_subscribe_durable refuses an invalid consumer or stream name");
    if (got_a < 10 || got_b < 10) {
        mesh_report ("error the consumers got no events; stopping here");
        _exit (1);
    }

    //  A single ack ahead of unacknowledged events does not move the
    //  cursor; a cumulative one moves it over the acknowledged front.
    shoal_node_ack (node, alpha, a[2], false);
    s_check (shoal_node_ack_flush (node) == 0, "shoal_node_ack_flush returns 0");
    Shoal__V1__Response *response = s_consumer_call (dealer, "alpha", "get", NULL, 0);
    s_check (
        s_reply_cursor (response, id, "cons") == 0,
        "wire get: a single ack of seq 3 with 1 and 2 unacknowledged leaves no cursor (%" PRIu64
        ")",
        s_reply_cursor (response, id, "cons"));
    shoal__v1__response__free_unpacked (response, NULL);
    shoal_node_ack (node, alpha, a[1], true);
    shoal_node_ack_flush (node);
    response = s_consumer_call (dealer, "alpha", "get", NULL, 0);
    s_check (s_reply_cursor (response, id, "cons") == 3,
             "wire get: a cumulative ack of seq 2 moves the cursor over 1..3 (%" PRIu64 ")",
             s_reply_cursor (response, id, "cons"));
    shoal__v1__response__free_unpacked (response, NULL);
    shoal_node_ack (node, beta, b[4], true);
    shoal_node_ack_flush (node);
    response = s_consumer_call (dealer, "beta", "get", NULL, 0);
    s_check (s_reply_cursor (response, id, "cons") == 5,
             "wire get: beta's cursor is its own: a cumulative ack of seq 5 moved it to 5 (%" PRIu64
             ")",
             s_reply_cursor (response, id, "cons"));
    shoal__v1__response__free_unpacked (response, NULL);
    response = s_consumer_call (dealer, "", "list", NULL, 0);
    s_check (s_reply_names (response, "alpha,beta"), "wire list names alpha and beta");
    shoal__v1__response__free_unpacked (response, NULL);

    //  A thin client's consumer, acknowledged over the wire.
    Shoal__V1__LogHead cursor = SHOAL__V1__LOG_HEAD__INIT;
    cursor.origin.data = id;
    cursor.origin.len = SHOAL_ID_SIZE;
    cursor.stream = "cons";
    cursor.head_seq = 7;
    Shoal__V1__LogHead *cursors[1] = {&cursor};
    response = s_consumer_call (dealer, "gamma", "ack", cursors, 1);
    s_check (response && response->body_case == SHOAL__V1__RESPONSE__BODY_CONSUMER,
             "wire ack of a new consumer gamma answers a ConsumerReply");
    shoal__v1__response__free_unpacked (response, NULL);
    cursor.head_seq = 5;
    response = s_consumer_call (dealer, "gamma", "ack", cursors, 1);
    shoal__v1__response__free_unpacked (response, NULL);
    response = s_consumer_call (dealer, "gamma", "get", NULL, 0);
    s_check (s_reply_cursor (response, id, "cons") == 7,
             "wire get: gamma's cursor is 7; an ack of 5 after it did not move it back (%" PRIu64
             ")",
             s_reply_cursor (response, id, "cons"));
    shoal__v1__response__free_unpacked (response, NULL);
    s_check (s_api_names (node, "alpha,beta,gamma"),
             "shoal_node_consumers lists the wire's consumer too");

    //  Refusals.
    cursor.origin.len = 3;
    response = s_consumer_call (dealer, "gamma", "ack", cursors, 1);
    s_check (s_reply_error (response, 1), "wire ack with a 3-byte origin: Error 1");
    shoal__v1__response__free_unpacked (response, NULL);
    cursor.origin.len = SHOAL_ID_SIZE;
    response = s_consumer_call (dealer, "no such name!", "get", NULL, 0);
    s_check (s_reply_error (response, 1), "wire get with an invalid name: Error 1");
    shoal__v1__response__free_unpacked (response, NULL);
    response = s_consumer_call (dealer, "alpha", "rewind", NULL, 0);
    s_check (s_reply_error (response, 1), "wire op \"rewind\": Error 1");
    shoal__v1__response__free_unpacked (response, NULL);

    //  Deletes.
    s_check (shoal_node_consumer_delete (node, "beta") == 0,
             "shoal_node_consumer_delete of beta returns 0");
    s_check (s_api_names (node, "alpha,gamma"), "beta is no longer listed");
    s_check (shoal_node_consumer_delete (node, "beta") == -1
                 && shoal_node_consumer_delete (node, "nobody") == -1,
             "deleting a consumer that does not exist returns -1");
    response = s_consumer_call (dealer, "gamma", "delete", NULL, 0);
    s_check (response && response->body_case == SHOAL__V1__RESPONSE__BODY_CONSUMER,
             "wire delete of gamma answers a ConsumerReply");
    shoal__v1__response__free_unpacked (response, NULL);
    response = s_consumer_call (dealer, "gamma", "delete", NULL, 0);
    s_check (s_reply_error (response, 2), "wire delete of gamma again: Error 2");
    shoal__v1__response__free_unpacked (response, NULL);
    response = s_consumer_call (dealer, "", "list", NULL, 0);
    s_check (s_reply_names (response, "alpha"), "wire list names only alpha now");
    shoal__v1__response__free_unpacked (response, NULL);

    //  The deleted consumer's subscription goes on without cursors: its
    //  acknowledgements (6..10 were not acknowledged yet) must not bring
    //  the consumer back.
    shoal_node_ack (node, beta, b[9], true);
    shoal_node_ack_flush (node);
    s_check (s_api_names (node, "alpha"),
             "acks on a deleted consumer's live subscription do not bring it back");
    s_free_events (a, 10);
    s_free_events (b, 10);
    zsock_destroy (&dealer);
    shoal_node_destroy (&node);

    //  After a restart: what was listed and acknowledged is still there,
    //  and alpha resumes after its cursor.
    node = s_node_start (role);
    dealer = zsock_new_dealer (shoal_node_router_endpoint (node));
    s_check (s_api_names (node, "alpha"), "after a restart, the consumers are alpha alone");
    response = s_consumer_call (dealer, "alpha", "get", NULL, 0);
    s_check (s_reply_cursor (response, id, "cons") == 3,
             "after a restart, alpha's cursor is still 3 (%" PRIu64 ")",
             s_reply_cursor (response, id, "cons"));
    shoal__v1__response__free_unpacked (response, NULL);
    alpha = shoal_node_subscribe_durable (node, "alpha", "cons", NULL);
    got_a = s_receive (node, alpha, a, 7);
    s_check (got_a == 7 && shoal_event_seq (a[0]) == 4 && shoal_event_seq (a[6]) == 10,
             "alpha resumes after its cursor: seqs 4..10 (%d events, first %" PRIu64 ")", got_a,
             got_a ? shoal_event_seq (a[0]) : 0);
    s_free_events (a, got_a);
    //  A durable consumer that is new on a node with history starts at
    //  the beginning of it.
    int delta = shoal_node_subscribe_durable (node, "delta", "cons", NULL);
    shoal_event_t *d[10];
    int got_d = s_receive (node, delta, d, 10);
    s_check (got_d == 10 && shoal_event_seq (d[0]) == 1,
             "a new consumer starts at the beginning of the history (%d events, first %" PRIu64 ")",
             got_d, got_d ? shoal_event_seq (d[0]) : 0);
    s_free_events (d, got_d);
    zsock_destroy (&dealer);
    shoal_node_destroy (&node);
    mesh_report ("end");
}

static void
test_consumers_api_and_wire (void)
{
    s_proc_t *proc = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    proc->role = s_role ("w-consumers", "consumers", "cons");
    mesh_spawn (&proc->child, s_run_consumers, &proc->role);
    int checks = 0;
    char line[MESH_LINE_MAX];
    while (mesh_read_line (&proc->child, line, sizeof line, 20000)) {
        int passed;
        int offset = 0;
        if (sscanf (line, "check %d %n", &passed, &offset) == 1 && offset > 0) {
            ok (passed == 1, "%s", line + offset);
            checks++;
        }
        else if (strncmp (line, "note ", 5) == 0 || strncmp (line, "error", 5) == 0)
            diag ("%s", line);
        else if (streq (line, "end"))
            break;
    }
    mesh_finish (&proc->child, 5000);
    for (; checks < S_CONSUMER_CHECKS; checks++)
        ok (false, "consumer check %d: the child ended before it", checks + 1);
    free (proc);
}

//  ==========================================================================
//  6. Retention on a replica

static void
test_replica_retention (void)
{
    s_proc_t *origin = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    s_proc_t *replica = (s_proc_t *) zmalloc (sizeof (s_proc_t));
    const uint64_t segment = 8192, retain = 32768;
    origin->role = s_role ("r-origin", "retain", "trim");
    replica->role = s_role ("r-replica", "retain", "trim");
    s_proc_t *both[2] = {origin, replica};
    for (int i = 0; i < 2; i++) {
        both[i]->role.segment_size = segment;
        both[i]->role.retain_bytes = retain;
        both[i]->role.watch = true;
    }
    origin->role.batch = 200;
    origin->role.pause_ms = 5;
    replica->role.replicate = "trim";
    bool started = s_start (origin);
    s_add_peer (&replica->role, origin->router);
    ok (started && s_start (replica),
        "origin and replica with %" PRIu64 "-byte segments and a %" PRIu64
        "-byte retention started",
        segment, retain);
    mesh_send (&origin->child, "publish 3000");
    //  Retention runs every 5 s.
    S_WAIT_UNTIL (s_log_head (origin, origin->id, "trim")->first > 1
                      && s_log_head (replica, origin->id, "trim")->first > 1
                      && s_log_head (replica, origin->id, "trim")->head == 3000,
                  15000);
    const s_loghead_t *own = s_log_head (origin, origin->id, "trim");
    const s_loghead_t *copy = s_log_head (replica, origin->id, "trim");
    ok (own->first > 1 && own->head == 3000,
        "the origin dropped old segments of its log (first seq %" PRIu64 ", head %" PRIu64 ")",
        own->first, own->head);
    ok (copy->first > 1 && copy->head == 3000,
        "the replica dropped old segments of its copy too (first seq %" PRIu64 ", head %" PRIu64
        ")",
        copy->first, copy->head);
    //  The replica is down while the origin trims past everything the
    //  replica holds; back, it must converge on what the origin still has.
    uint64_t replica_head = copy->head;
    s_crash (replica);
    mesh_send (&origin->child, "publish 3000");
    S_WAIT_UNTIL (origin->published == 3000
                      && s_log_head (origin, origin->id, "trim")->first > replica_head + 1,
                  15000);
    ok (s_log_head (origin, origin->id, "trim")->first > replica_head + 1,
        "while the replica was down the origin trimmed past its head (first seq %" PRIu64
        ", replica head %" PRIu64 ")",
        s_log_head (origin, origin->id, "trim")->first, replica_head);
    uint64_t head = origin->published_seq;
    ok (s_start (replica), "replica restarted");
    S_WAIT_UNTIL (s_log_head (replica, origin->id, "trim")->head == head, 10000);
    ok (s_log_head (replica, origin->id, "trim")->head == head,
        "the replica converges on the origin's retained history (head %" PRIu64 " of %" PRIu64 ")",
        s_log_head (replica, origin->id, "trim")->head, head);
    s_stop (replica);
    s_stop (origin);
    //  Offline: both within the bound, and equal where they overlap.
    s_compare_t compare =
        s_compare_logs (origin->role.data, replica->role.data, origin->id, "trim");
    uint64_t sizes[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        int error;
        shoal_store_t *store = shoal_store_open (both[i]->role.data, NULL, &error);
        uint8_t id[SHOAL_ID_SIZE];
        shoal_id_from_hex (origin->id, id);
        shoal_log_t *log = store ? shoal_store_log (store, id, "trim", false, &error) : NULL;
        sizes[i] = log ? shoal_log_size (log) : UINT64_MAX;
        shoal_store_close (&store);
    }
    ok (sizes[0] <= retain + segment && sizes[1] <= retain + segment,
        "both logs stay within retain_bytes plus one segment (%" PRIu64 " and %" PRIu64 " bytes)",
        sizes[0], sizes[1]);
    ok (compare.opened && compare.compared > 0 && compare.different == 0
            && compare.head[0] == compare.head[1],
        "what both still hold is the same, byte for byte, to the same head (%" PRIu64
        " compared, heads %" PRIu64 " and %" PRIu64 ")",
        compare.compared, compare.head[0], compare.head[1]);
    free (origin);
    free (replica);
}

int
main (void)
{
    mesh_init (170);
    s_run_id = (int) getpid ();
    const char *seed_text = getenv ("SHOAL_TEST_SEED");
    uint64_t seed = seed_text && *seed_text ? strtoull (seed_text, NULL, 10)
                                            : (uint64_t) time (NULL) ^ (uint64_t) s_run_id;
    if (seed == 0)
        seed = 1;
    s_rng = seed;
    plan_lazy ();
    diag ("seed %" PRIu64 " (SHOAL_TEST_SEED=%" PRIu64 " repeats this run)", seed, seed);
    //  SHOAL_TEST_ONLY=3,5 runs only those parts (for debugging).
    const char *only = getenv ("SHOAL_TEST_ONLY");
    struct {
        void (*run) (void);
        const char *what;
    } parts[] = {{test_consumer_killed, "consumer killed"},
                 {test_origin_killed, "origin killed"},
                 {test_partition_paused, "partition by SIGSTOP"},
                 {test_partition_nft, "partition by nftables"},
                 {test_any_one_down, "any one down"},
                 {test_consumers_api_and_wire, "consumers through API and wire"},
                 {test_replica_retention, "retention on a replica"}};
    double start = tap_now ();
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        char number[8];
        snprintf (number, sizeof number, "%zu", i + 1);
        if (only && *only && !strstr (only, number))
            continue;
        double began = tap_now ();
        parts[i].run ();
        diag ("%s: %.1f s (%.1f s in all)", parts[i].what, tap_now () - began, tap_now () - start);
    }
    return done_testing ();
}
