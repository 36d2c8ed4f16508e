/*  =========================================================================
    shoal-sim - seeded failure simulation of a shoal mesh, with a checker

    shoal-sim starts N shoald processes, runs a recorded workload against
    them while a seeded schedule injects faults, lets the mesh settle, and
    checks the recorded history against the promises of DESIGN.md:

        lost         every acknowledged (origin, stream, seq, id) is in the
                     origin's log and was delivered to every consumer
        order        at every consumer, each (origin, stream) arrives in seq
                     order without gaps (after dropping redeliveries)
        duplicates   after dedupe by (origin, stream, seq) no event appears
                     twice: one id per key, one key per id
        convergence  every replica holds the same seqs and bytes as its
                     origin's log (compared offline, nodes stopped)
        liveness     once faults stop, everything is delivered and every
                     replica caught up within the stated bound

    As root each node runs in a network namespace of its own, joined to the
    others by veth pairs on a bridge in another namespace; discovery is by
    zbeacon on the veth; faults are SIGKILL + restart, SIGSTOP/SIGCONT,
    symmetric and asymmetric partitions and packet loss (nftables rules in
    the node namespaces), and a full disk (each data dir is a small tmpfs;
    a ballast file fills it). Without root (or with --loopback) the nodes
    are loopback processes and only kill and pause are injected.

    Clients (one producer and one durable consumer per node) are forked
    processes that enter the node's namespace and use raw libzmq (nothing
    of ZeroMQ exists in the parent, so forking is safe); they report each
    acknowledged publish and each delivery to the parent as text lines over
    a pipe. Everything the run creates (processes, namespaces, rules,
    mounts, files) is tracked and removed at the end, on failure and on
    SIGINT/SIGTERM. Every loop is bounded in count and in time.
    ========================================================================= */

#include "shoal.h"
#include "shoal.pb-c.h"
#include "shoal_event.h"
#include "shoal_log.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_MAX_NODES 7
#define S_STREAMS 2
#define S_MAX_FAULTS 64
#define S_MAX_PIDS 64
#define S_LINE_MAX 512

static const char *s_streams[S_STREAMS] = {"sim-a", "sim-b"};

typedef enum {
    F_KILL,
    F_PAUSE,
    F_CKILL,
    F_PARTITION,
    F_APART,
    F_LOSS,
    F_DISK,
    F_TYPES
} s_fault_type_t;
static const char *s_fault_names[F_TYPES] = {"kill",       "pause", "consumer-kill", "partition",
                                             "apartition", "loss",  "disk"};

typedef struct {
    s_fault_type_t type; //  what is injected
    int a, b;            //  target node, and the other side of a partition
    int percent;         //  packet loss percentage
    int64_t start_ms;    //  when it starts, ms after the workload began
    int64_t end_ms;      //  when it is reverted
    int state;           //  0 scheduled, 1 active, 2 reverted
} s_fault_t;

typedef struct {
    pid_t pid;       //  running shoald, or 0
    bool paused;     //  SIGSTOPped
    char id[33];     //  node id, hex
    char ip[32];     //  address in its namespace (or 127.0.0.1)
    char ns[40];     //  namespace name
    char dir[512];   //  node directory (data is dir/data)
    bool mounted;    //  dir/data is a tmpfs we mounted
    int router_port; //  ROUTER port
    int pub_port;    //  PUB port
} s_node_t;

typedef struct {
    pid_t pid;      //  worker process
    int fd;         //  read end of its report pipe, or -1
    int node;       //  node it talks to
    bool producer;  //  producer or consumer
    char buf[8192]; //  partial line
    size_t used;    //  bytes in buf
} s_worker_t;

//  Settings, all reproducible from the command line.
static struct {
    int nodes;
    uint64_t seed;
    int duration;       //  seconds of workload with faults
    int bound;          //  liveness bound, seconds after faults stop
    const char *bug;    //  planted bug passed to the nodes
    bool loopback;      //  forced loopback mode
    char faults[128];   //  enabled fault types, comma separated
    const char *shoald; //  node program
    bool keep;          //  keep the work directory
    bool verbose;
} S = {3, 0, 8, 30, NULL, false, "", NULL, false, false};

static bool s_netns;         //  namespace mode (else loopback)
static int s_run;            //  third octet of the addresses
static char s_prefix[24];    //  shsim<pid>
static char s_bridge_ns[40]; //  the bridge's namespace
static bool s_bridge_made;
static char s_work[256]; //  work directory
static bool s_work_made;
static s_node_t s_nodes[S_MAX_NODES];
static int s_ns_made; //  node namespaces created
static s_worker_t s_workers[S_MAX_PIDS];
static int s_worker_count;
static s_fault_t s_faults[S_MAX_FAULTS];
static int s_fault_count;
static int s_beacon_port;
static volatile sig_atomic_t s_interrupted;
static pid_t s_parent_pid;
static int64_t s_t0;
static int64_t s_hard_end; //  no client runs past this

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_msg (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    printf ("[%6.2f] ", s_t0 ? (s_now_ms () - s_t0) / 1000.0 : 0.0);
    vprintf (format, args);
    printf ("\n");
    fflush (stdout);
    va_end (args);
}

//  splitmix64: the schedule and workloads depend only on the seed.
static uint64_t
s_rand (uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int
s_rand_range (uint64_t *state, int lo, int hi)
{
    return lo + (int) (s_rand (state) % (uint64_t) (hi - lo + 1));
}

//  Runs a command (argv style through /bin/sh -c) and returns its status.
static int
s_sh (const char *format, ...)
{
    char command[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (command, sizeof command, format, args);
    va_end (args);
    if (S.verbose)
        s_msg ("+ %s", command);
    char quiet[1100];
    snprintf (quiet, sizeof quiet, "%s >/dev/null 2>&1", command);
    int rc = system (quiet);
    return WIFEXITED (rc) ? WEXITSTATUS (rc) : -1;
}

static void
s_sleep_ms (int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep (&ts, NULL);
}

//  --------------------------------------------------------------------------
//  Clients: forked, in the node's namespace, raw libzmq, report over a pipe

static volatile sig_atomic_t s_worker_stop;
static void
s_worker_on_term (int sig)
{
    (void) sig;
    s_worker_stop = 1;
}

static int
s_enter_ns (const char *ns)
{
    char path[128];
    snprintf (path, sizeof path, "/var/run/netns/%s", ns);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = setns (fd, CLONE_NEWNET);
    close (fd);
    return rc;
}

static void
s_report (int fd, const char *format, ...)
{
    char line[S_LINE_MAX];
    va_list args;
    va_start (args, format);
    int n = vsnprintf (line, sizeof line - 1, format, args);
    va_end (args);
    if (n < 0 || n >= (int) sizeof line - 1)
        return;
    line[n++] = '\n';
    ssize_t rc = write (fd, line, (size_t) n);
    (void) rc;
}

static void
s_hex (const uint8_t *data, size_t size, char *out)
{
    for (size_t i = 0; i < size; i++)
        sprintf (out + 2 * i, "%02x", data[i]);
    out[2 * size] = 0;
}

typedef struct {
    void *ctx;
    void *sock;
    char endpoint[128];
    uint64_t next_id;
} s_client_t;

static void
s_client_open (s_client_t *self)
{
    if (self->sock)
        zmq_close (self->sock);
    self->sock = zmq_socket (self->ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
    int ivl = 100;
    zmq_setsockopt (self->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_connect (self->sock, self->endpoint);
}

static int
s_client_send (s_client_t *self, Shoal__V1__Request *request)
{
    request->request_id = ++self->next_id;
    size_t size = shoal__v1__request__get_packed_size (request);
    uint8_t *data = (uint8_t *) malloc (size ? size : 1);
    shoal__v1__request__pack (request, data);
    int rc = zmq_send (self->sock, data, size, ZMQ_DONTWAIT);
    free (data);
    return rc < 0 ? -1 : 0;
}

//  Waits up to timeout_ms for a response with request_id >= min_id.
//  Caller owns the returned response.
static Shoal__V1__Response *
s_client_recv (s_client_t *self, uint64_t min_id, int timeout_ms)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    for (int n = 0; n < 100000 && !s_worker_stop; n++) {
        int64_t left = deadline - s_now_ms ();
        if (left <= 0)
            return NULL;
        zmq_pollitem_t item = {self->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, left > 200 ? 200 : left) <= 0)
            continue;
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        if (zmq_msg_recv (&msg, self->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&msg);
            continue;
        }
        Shoal__V1__Response *response = shoal__v1__response__unpack (
            NULL, zmq_msg_size (&msg), (const uint8_t *) zmq_msg_data (&msg));
        zmq_msg_close (&msg);
        if (response && response->request_id >= min_id)
            return response;
        if (response)
            shoal__v1__response__free_unpacked (response, NULL);
    }
    return NULL;
}

//  A producer publishes events with durable acknowledgement and reports
//  every acknowledgement: "A origin stream seq id dup".
static void
s_producer (int node, int fd, int64_t end_ms)
{
    uint64_t rng = S.seed * 1000003ULL + (uint64_t) node * 7919ULL + 1;
    s_client_t client = {zmq_ctx_new (), NULL, "", 0};
    snprintf (client.endpoint, sizeof client.endpoint, "tcp://%s:%d", s_nodes[node].ip,
              s_nodes[node].router_port);
    s_client_open (&client);
    for (int n = 0; n < 100000 && !s_worker_stop && s_now_ms () < end_ms; n++) {
        uint8_t id[16];
        for (int i = 0; i < 16; i += 8) {
            uint64_t r = s_rand (&rng);
            memcpy (id + i, &r, 8);
        }
        char idhex[33];
        s_hex (id, 16, idhex);
        const char *stream = s_streams[s_rand (&rng) % S_STREAMS];
        char payload[64];
        int plen = snprintf (payload, sizeof payload, "n%d-%d-%s", node, n, idhex);
        Shoal__V1__Event event = SHOAL__V1__EVENT__INIT;
        event.stream = (char *) stream;
        event.type = (char *) "SimEvent";
        event.id.data = id;
        event.id.len = 16;
        event.payload.data = (uint8_t *) payload;
        event.payload.len = (size_t) plen;
        Shoal__V1__PublishRequest publish = SHOAL__V1__PUBLISH_REQUEST__INIT;
        publish.event = &event;
        publish.wait_durable = true;
        Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
        request.body_case = SHOAL__V1__REQUEST__BODY_PUBLISH;
        request.publish = &publish;
        uint64_t first_id = client.next_id + 1;
        //  Retry the same id until acknowledged: the node dedupes it.
        for (int attempt = 0; attempt < 50 && !s_worker_stop && s_now_ms () < end_ms; attempt++) {
            s_client_send (&client, &request);
            Shoal__V1__Response *response = s_client_recv (&client, first_id, 1500);
            if (!response) {
                s_client_open (&client);
                continue;
            }
            bool done = false;
            if (response->body_case == SHOAL__V1__RESPONSE__BODY_PUBLISH_ACK
                && response->publish_ack->origin.len == 16) {
                char origin[33];
                s_hex (response->publish_ack->origin.data, 16, origin);
                s_report (fd, "A %s %s %llu %s %d", origin, response->publish_ack->stream,
                          (unsigned long long) response->publish_ack->seq, idhex,
                          response->publish_ack->duplicate ? 1 : 0);
                done = true;
            }
            else
                s_sleep_ms (200); //  an error (storage full, busy): try again later
            shoal__v1__response__free_unpacked (response, NULL);
            if (done)
                break;
        }
        s_sleep_ms (s_rand_range (&rng, 5, 25));
    }
    zmq_close (client.sock);
    zmq_ctx_term (client.ctx);
}

//  A durable consumer reads every (origin, stream) its node holds by
//  replay, reports each delivery ("D origin stream seq id") and acks its
//  cursor on the node. It reports its node's heads ("H origin stream head")
//  so the parent can tell when the mesh converged. After any timeout it
//  reloads its cursors from the node (at-least-once redelivery).
typedef struct {
    char origin[33];
    uint8_t origin_raw[16];
    char stream[72];
    uint64_t cursor;
    uint64_t head;
} s_cursor_t;

static s_cursor_t *
s_cursor (s_cursor_t *cursors, int *count, const uint8_t *origin, const char *stream)
{
    for (int i = 0; i < *count; i++)
        if (memcmp (cursors[i].origin_raw, origin, 16) == 0 && streq (cursors[i].stream, stream))
            return &cursors[i];
    if (*count >= 64)
        return NULL;
    s_cursor_t *c = &cursors[(*count)++];
    memset (c, 0, sizeof *c);
    memcpy (c->origin_raw, origin, 16);
    s_hex (origin, 16, c->origin);
    snprintf (c->stream, sizeof c->stream, "%s", stream);
    return c;
}

static void
s_consumer (int node, int fd, int64_t end_ms)
{
    char name[32];
    snprintf (name, sizeof name, "simc%d", node);
    s_client_t client = {zmq_ctx_new (), NULL, "", 0};
    snprintf (client.endpoint, sizeof client.endpoint, "tcp://%s:%d", s_nodes[node].ip,
              s_nodes[node].router_port);
    s_client_open (&client);
    s_cursor_t cursors[64];
    int count = 0;
    bool loaded = false;
    for (int round = 0; round < 1000000 && !s_worker_stop && s_now_ms () < end_ms; round++) {
        if (!loaded) {
            Shoal__V1__ConsumerRequest creq = SHOAL__V1__CONSUMER_REQUEST__INIT;
            creq.name = name;
            creq.op = (char *) "get";
            Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
            request.body_case = SHOAL__V1__REQUEST__BODY_CONSUMER;
            request.consumer = &creq;
            s_client_send (&client, &request);
            Shoal__V1__Response *response = s_client_recv (&client, client.next_id, 1500);
            if (!response) {
                s_client_open (&client);
                continue;
            }
            for (int i = 0; i < count; i++)
                cursors[i].cursor = 0;
            if (response->body_case == SHOAL__V1__RESPONSE__BODY_CONSUMER)
                for (size_t i = 0; i < response->consumer->n_cursors; i++) {
                    Shoal__V1__LogHead *h = response->consumer->cursors[i];
                    if (h->origin.len != 16)
                        continue;
                    s_cursor_t *c = s_cursor (cursors, &count, h->origin.data, h->stream);
                    if (c)
                        c->cursor = h->head_seq;
                }
            loaded = response->body_case == SHOAL__V1__RESPONSE__BODY_CONSUMER;
            shoal__v1__response__free_unpacked (response, NULL);
            if (!loaded) {
                s_sleep_ms (200);
                continue;
            }
        }
        //  Status: the node's logs and heads.
        Shoal__V1__StatusRequest sreq = SHOAL__V1__STATUS_REQUEST__INIT;
        Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
        request.body_case = SHOAL__V1__REQUEST__BODY_STATUS;
        request.status = &sreq;
        s_client_send (&client, &request);
        Shoal__V1__Response *response = s_client_recv (&client, client.next_id, 1500);
        if (!response || response->body_case != SHOAL__V1__RESPONSE__BODY_STATUS) {
            if (response)
                shoal__v1__response__free_unpacked (response, NULL);
            s_client_open (&client);
            loaded = false;
            continue;
        }
        int peers = 0;
        for (size_t i = 0; i < response->status->n_peers; i++)
            if (response->status->peers[i]->state
                && strstr (response->status->peers[i]->state, "connect"))
                peers++;
        s_report (fd, "P %d", peers);
        for (size_t i = 0; i < response->status->n_logs; i++) {
            Shoal__V1__LogHead *h = response->status->logs[i];
            if (h->origin.len != 16 || strncmp (h->stream, "sim-", 4) != 0)
                continue;
            s_cursor_t *c = s_cursor (cursors, &count, h->origin.data, h->stream);
            if (c) {
                c->head = h->head_seq;
                s_report (fd, "H %s %s %llu", c->origin, c->stream,
                          (unsigned long long) h->head_seq);
            }
        }
        shoal__v1__response__free_unpacked (response, NULL);
        //  Replay what is new, then ack the cursor.
        bool progress = false, failed = false;
        for (int i = 0; i < count && !failed && !s_worker_stop; i++) {
            s_cursor_t *c = &cursors[i];
            if (c->head <= c->cursor)
                continue;
            uint64_t to = c->head < c->cursor + 500 ? c->head : c->cursor + 500;
            Shoal__V1__ReplayRequest rreq = SHOAL__V1__REPLAY_REQUEST__INIT;
            rreq.origin.data = c->origin_raw;
            rreq.origin.len = 16;
            rreq.stream = c->stream;
            rreq.from_seq = c->cursor + 1;
            rreq.to_seq = to;
            rreq.credit = 1000;
            Shoal__V1__Request req2 = SHOAL__V1__REQUEST__INIT;
            req2.body_case = SHOAL__V1__REQUEST__BODY_REPLAY;
            req2.replay = &rreq;
            s_client_send (&client, &req2);
            uint64_t rid = client.next_id;
            bool done = false;
            for (int b = 0; b < 1000 && !done; b++) {
                Shoal__V1__Response *r = s_client_recv (&client, rid, 1500);
                if (!r) {
                    failed = true;
                    break;
                }
                if (r->request_id != rid) {
                    shoal__v1__response__free_unpacked (r, NULL);
                    continue;
                }
                if (r->body_case != SHOAL__V1__RESPONSE__BODY_BATCH) {
                    shoal__v1__response__free_unpacked (r, NULL);
                    break; //  an error: the log is not (yet) here, or trimmed
                }
                for (size_t k = 0; k < r->batch->n_events; k++) {
                    Shoal__V1__Event *e = r->batch->events[k];
                    char idhex[33] = "-";
                    if (e->id.len == 16)
                        s_hex (e->id.data, 16, idhex);
                    s_report (fd, "D %s %s %llu %s", c->origin, c->stream,
                              (unsigned long long) e->seq, idhex);
                    if (e->seq > c->cursor)
                        c->cursor = e->seq;
                    progress = true;
                }
                done = r->batch->done;
                shoal__v1__response__free_unpacked (r, NULL);
            }
            if (!done)
                failed = true;
        }
        if (progress && !failed) {
            Shoal__V1__LogHead heads[64];
            Shoal__V1__LogHead *ptrs[64];
            for (int i = 0; i < count; i++) {
                Shoal__V1__LogHead init = SHOAL__V1__LOG_HEAD__INIT;
                heads[i] = init;
                heads[i].origin.data = cursors[i].origin_raw;
                heads[i].origin.len = 16;
                heads[i].stream = cursors[i].stream;
                heads[i].head_seq = cursors[i].cursor;
                ptrs[i] = &heads[i];
            }
            Shoal__V1__ConsumerRequest creq = SHOAL__V1__CONSUMER_REQUEST__INIT;
            creq.name = name;
            creq.op = (char *) "ack";
            creq.n_cursors = (size_t) count;
            creq.cursors = ptrs;
            Shoal__V1__Request req3 = SHOAL__V1__REQUEST__INIT;
            req3.body_case = SHOAL__V1__REQUEST__BODY_CONSUMER;
            req3.consumer = &creq;
            s_client_send (&client, &req3);
            Shoal__V1__Response *r = s_client_recv (&client, client.next_id, 1500);
            if (!r)
                failed = true;
            else
                shoal__v1__response__free_unpacked (r, NULL);
        }
        if (failed) {
            s_client_open (&client);
            loaded = false; //  resume from the node's durable cursor
        }
        else if (!progress)
            s_sleep_ms (100);
    }
    zmq_close (client.sock);
    zmq_ctx_term (client.ctx);
}

static int
s_worker_start (int node, bool producer, int64_t end_ms)
{
    int fds[2];
    if (s_worker_count >= S_MAX_PIDS || pipe (fds))
        return -1;
    fflush (stdout);
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close (fds[0]);
        signal (SIGINT, SIG_IGN);
        signal (SIGTERM, s_worker_on_term);
        signal (SIGPIPE, SIG_IGN);
        if (s_netns && s_enter_ns (s_nodes[node].ns)) {
            s_report (fds[1], "E cannot enter namespace %s", s_nodes[node].ns);
            _exit (3);
        }
        if (producer)
            s_producer (node, fds[1], end_ms);
        else
            s_consumer (node, fds[1], end_ms);
        _exit (0);
    }
    close (fds[1]);
    fcntl (fds[0], F_SETFL, O_NONBLOCK);
    s_worker_t *w = &s_workers[s_worker_count++];
    memset (w, 0, sizeof *w);
    w->pid = pid;
    w->fd = fds[0];
    w->node = node;
    w->producer = producer;
    return 0;
}

//  --------------------------------------------------------------------------
//  History: what the clients reported

typedef struct {
    zhashx_t *acked;                  //  "origin/stream/seq" -> id hex
    zhashx_t *acked_ids;              //  id hex -> "origin/stream/seq"
    zhashx_t *delivered[S_MAX_NODES]; //  per consumer: key -> id hex
    zhashx_t *next_seq[S_MAX_NODES];  //  per consumer: "origin/stream" -> highest seq delivered
    zhashx_t *heads[S_MAX_NODES];     //  per node: "origin/stream" -> head
    int peers[S_MAX_NODES];           //  connected peers reported
    size_t deliveries;                //  delivery lines, redeliveries included
    size_t redeliveries;              //  deliveries of a key already delivered
    zlistx_t *violations[6];          //  per invariant: text
} s_history_t;

static s_history_t H;
enum { V_LOST, V_ORDER, V_DUP, V_CONVERGE, V_LIVE, V_CRASH, V_COUNT };
static const char *s_invariant_names[V_COUNT] = {
    "no acknowledged event lost", "per-origin order, no gaps", "no duplicates after dedupe",
    "replicas converge",          "liveness within the bound", "nodes never exit on their own"};

static void
s_violation (int invariant, const char *format, ...)
{
    char text[400];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    if (zlistx_size (H.violations[invariant]) < 1000)
        zlistx_add_end (H.violations[invariant], strdup (text));
}

static void
s_history_init (void)
{
    H.acked = zhashx_new ();
    zhashx_set_destructor (H.acked, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (H.acked, (zhashx_duplicator_fn *) strdup);
    H.acked_ids = zhashx_new ();
    zhashx_set_destructor (H.acked_ids, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (H.acked_ids, (zhashx_duplicator_fn *) strdup);
    for (int i = 0; i < S_MAX_NODES; i++) {
        H.delivered[i] = zhashx_new ();
        zhashx_set_destructor (H.delivered[i], (zhashx_destructor_fn *) zstr_free);
        zhashx_set_duplicator (H.delivered[i], (zhashx_duplicator_fn *) strdup);
        H.next_seq[i] = zhashx_new ();
        H.heads[i] = zhashx_new ();
    }
    for (int i = 0; i < V_COUNT; i++) {
        H.violations[i] = zlistx_new ();
        zlistx_set_destructor (H.violations[i], (zlistx_destructor_fn *) zstr_free);
    }
}

static void
s_on_line (s_worker_t *w, char *line)
{
    char origin[80], stream[80], idhex[80];
    unsigned long long seq;
    int dup, peers;
    char key[200], log_key[200];
    if (sscanf (line, "A %79s %79s %llu %79s %d", origin, stream, &seq, idhex, &dup) == 5) {
        snprintf (key, sizeof key, "%s/%s/%llu", origin, stream, seq);
        const char *known = (const char *) zhashx_lookup (H.acked, key);
        if (known && !streq (known, idhex))
            s_violation (V_DUP, "seq %s acknowledged with two ids %s and %s", key, known, idhex);
        const char *known_key = (const char *) zhashx_lookup (H.acked_ids, idhex);
        if (known_key && !streq (known_key, key))
            s_violation (V_DUP, "id %s acknowledged at two positions %s and %s", idhex, known_key,
                         key);
        zhashx_insert (H.acked, key, idhex);
        zhashx_insert (H.acked_ids, idhex, key);
    }
    else if (sscanf (line, "D %79s %79s %llu %79s", origin, stream, &seq, idhex) == 4) {
        int c = w->node;
        H.deliveries++;
        snprintf (key, sizeof key, "%s/%s/%llu", origin, stream, seq);
        snprintf (log_key, sizeof log_key, "%s/%s", origin, stream);
        const char *known = (const char *) zhashx_lookup (H.delivered[c], key);
        if (known) {
            H.redeliveries++;
            if (!streq (known, idhex))
                s_violation (V_DUP, "consumer %d got %s twice with different ids %s and %s", c, key,
                             known, idhex);
            return;
        }
        zhashx_insert (H.delivered[c], key, idhex);
        uint64_t last = (uint64_t) (uintptr_t) zhashx_lookup (H.next_seq[c], log_key);
        if (seq != last + 1)
            s_violation (V_ORDER, "consumer %d got %s after seq %llu", c, key,
                         (unsigned long long) last);
        if (seq > last)
            zhashx_update (H.next_seq[c], log_key, (void *) (uintptr_t) seq);
    }
    else if (sscanf (line, "H %79s %79s %llu", origin, stream, &seq) == 3) {
        snprintf (log_key, sizeof log_key, "%s/%s", origin, stream);
        zhashx_update (H.heads[w->node], log_key, (void *) (uintptr_t) seq);
    }
    else if (sscanf (line, "P %d", &peers) == 1)
        H.peers[w->node] = peers;
    else if (line[0] == 'E')
        s_msg ("worker for node %d: %s", w->node, line + 2);
}

//  Reads what the workers wrote, waiting at most timeout_ms.
static void
s_pump (int timeout_ms)
{
    struct pollfd fds[S_MAX_PIDS];
    int map[S_MAX_PIDS];
    int n = 0;
    for (int i = 0; i < s_worker_count; i++)
        if (s_workers[i].fd >= 0) {
            fds[n].fd = s_workers[i].fd;
            fds[n].events = POLLIN;
            map[n++] = i;
        }
    if (n == 0) {
        s_sleep_ms (timeout_ms);
        return;
    }
    if (poll (fds, (nfds_t) n, timeout_ms) <= 0)
        return;
    for (int k = 0; k < n; k++) {
        if (!(fds[k].revents & (POLLIN | POLLHUP)))
            continue;
        s_worker_t *w = &s_workers[map[k]];
        for (int reads = 0; reads < 64; reads++) {
            ssize_t got = read (w->fd, w->buf + w->used, sizeof w->buf - 1 - w->used);
            if (got <= 0) {
                if (got == 0) {
                    close (w->fd);
                    w->fd = -1;
                }
                break;
            }
            w->used += (size_t) got;
            w->buf[w->used] = 0;
            char *start = w->buf, *nl;
            while ((nl = strchr (start, '\n'))) {
                *nl = 0;
                s_on_line (w, start);
                start = nl + 1;
            }
            w->used -= (size_t) (start - w->buf);
            memmove (w->buf, start, w->used);
            if (w->used >= sizeof w->buf - 1)
                w->used = 0; //  an overlong line: dropped
        }
    }
}

//  --------------------------------------------------------------------------
//  Nodes

static void
s_node_start (int i)
{
    s_node_t *node = &s_nodes[i];
    char data[600], logfile[600], name[16], mesh[40], router[80], pub[80], beacon[16];
    snprintf (data, sizeof data, "%s/data", node->dir);
    snprintf (logfile, sizeof logfile, "%s/shoald.log", node->dir);
    snprintf (name, sizeof name, "n%d", i);
    snprintf (mesh, sizeof mesh, "%s", s_prefix);
    snprintf (router, sizeof router, "tcp://%s:%d", node->ip, node->router_port);
    snprintf (pub, sizeof pub, "tcp://%s:%d", node->ip, node->pub_port);
    snprintf (beacon, sizeof beacon, "%d", s_beacon_port);
    fflush (stdout);
    pid_t pid = fork ();
    if (pid == 0) {
        signal (SIGINT, SIG_IGN);
        int fd = open (logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2 (fd, 1);
            dup2 (fd, 2);
            close (fd);
        }
        if (s_netns && s_enter_ns (node->ns))
            _exit (3);
        if (S.bug)
            setenv ("SHOAL_TEST_BUG", S.bug, 1);
        const char *argv[] = {S.shoald,
                              "--name",
                              name,
                              "--mesh",
                              mesh,
                              "--data",
                              data,
                              "--interface",
                              s_netns ? "veth0" : "lo",
                              "--beacon-port",
                              beacon,
                              "--router",
                              router,
                              "--pub",
                              pub,
                              "--replicate",
                              "all",
                              "--beacon-interval-ms",
                              "250",
                              "--heartbeat-ms",
                              "250",
                              "--suspect-ms",
                              "1000",
                              "--expiry-ms",
                              "2500",
                              "--segment-size",
                              "4194304",
                              "--log-level",
                              "warning",
                              NULL};
        execvp (S.shoald, (char *const *) argv);
        _exit (127);
    }
    node->pid = pid > 0 ? pid : 0;
    node->paused = false;
}

static void
s_node_stop (int i, int sig)
{
    s_node_t *node = &s_nodes[i];
    if (!node->pid)
        return;
    if (node->paused)
        kill (node->pid, SIGCONT);
    kill (node->pid, sig);
    int status;
    for (int n = 0; n < 100; n++) {
        if (waitpid (node->pid, &status, WNOHANG) == node->pid) {
            node->pid = 0;
            node->paused = false;
            return;
        }
        s_sleep_ms (50);
    }
    kill (node->pid, SIGKILL);
    waitpid (node->pid, &status, 0);
    node->pid = 0;
    node->paused = false;
}

//  A node that exits by itself (a crash, an assert, a refused restart)
//  is a violation; it is restarted so the run goes on (at most 10 times).
static void
s_reap_nodes (void)
{
    static int restarts;
    for (int i = 0; i < S.nodes; i++) {
        int status;
        if (s_nodes[i].pid && waitpid (s_nodes[i].pid, &status, WNOHANG) == s_nodes[i].pid) {
            s_nodes[i].pid = 0;
            s_violation (V_CRASH, "n%d exited on its own (%s %d)", i,
                         WIFSIGNALED (status) ? "signal" : "status",
                         WIFSIGNALED (status) ? WTERMSIG (status) : WEXITSTATUS (status));
            s_msg ("node n%d exited on its own; the end of its log:", i);
            char command[700];
            snprintf (command, sizeof command, "tail -n 5 '%s/shoald.log' | sed 's/^/    /'",
                      s_nodes[i].dir);
            fflush (stdout);
            if (system (command) != 0)
                s_msg ("(no log)");
            if (restarts++ < 10)
                s_node_start (i);
        }
    }
}

//  Reads the node id from the line shoald prints when started.
static int
s_node_read_id (int i)
{
    char logfile[600];
    snprintf (logfile, sizeof logfile, "%s/shoald.log", s_nodes[i].dir);
    for (int n = 0; n < 100; n++) {
        FILE *f = fopen (logfile, "r");
        char line[1024];
        while (f && fgets (line, sizeof line, f)) {
            char name[64], id[64];
            if (sscanf (line, "shoald: node %63s %63s", name, id) == 2 && strlen (id) == 32) {
                memcpy (s_nodes[i].id, id, 33);
                fclose (f);
                return 0;
            }
        }
        if (f)
            fclose (f);
        s_sleep_ms (100);
    }
    return -1;
}

static int
s_free_port (int type)
{
    int fd = socket (AF_INET, type, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = -1;
    if (fd >= 0 && bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0
        && getsockname (fd, (struct sockaddr *) &addr, &len) == 0)
        port = ntohs (addr.sin_port);
    if (fd >= 0)
        close (fd);
    return port;
}

//  --------------------------------------------------------------------------
//  Setup and cleanup

static void
s_nft_flush (int i)
{
    s_sh ("ip netns exec %s nft flush chain inet shsim input", s_nodes[i].ns);
    s_sh ("ip netns exec %s nft flush chain inet shsim output", s_nodes[i].ns);
}

static void
s_cleanup (void)
{
    static bool done;
    if (done || getpid () != s_parent_pid)
        return;
    done = true;
    for (int i = 0; i < s_worker_count; i++)
        if (s_workers[i].pid) {
            kill (s_workers[i].pid, SIGKILL);
            waitpid (s_workers[i].pid, NULL, 0);
            s_workers[i].pid = 0;
        }
    for (int i = 0; i < S.nodes; i++)
        if (s_nodes[i].pid)
            s_node_stop (i, SIGKILL);
    for (int i = 0; i < S.nodes; i++)
        if (s_nodes[i].mounted) {
            char data[600];
            snprintf (data, sizeof data, "%s/data", s_nodes[i].dir);
            if (umount2 (data, MNT_DETACH) == 0)
                s_nodes[i].mounted = false;
            else
                fprintf (stderr, "shoal-sim: cannot unmount %s: %s\n", data, strerror (errno));
        }
    //  Deleting a namespace deletes its veth end and its nft rules.
    for (int i = 0; i < s_ns_made; i++)
        s_sh ("ip netns del %s", s_nodes[i].ns);
    s_ns_made = 0;
    if (s_bridge_made)
        s_sh ("ip netns del %s", s_bridge_ns);
    s_bridge_made = false;
    if (s_work_made && !S.keep)
        s_sh ("rm -rf '%s'", s_work);
}

static void
s_on_signal (int sig)
{
    (void) sig;
    s_interrupted = 1;
}

static int
s_setup_netns (void)
{
    snprintf (s_bridge_ns, sizeof s_bridge_ns, "%sb", s_prefix);
    if (s_sh ("ip netns add %s", s_bridge_ns))
        return -1;
    s_bridge_made = true;
    if (s_sh ("ip -n %s link add br0 type bridge", s_bridge_ns)
        || s_sh ("ip -n %s link set br0 up", s_bridge_ns))
        return -1;
    const char *table = "add table inet shsim; add chain inet shsim input { type filter hook "
                        "input priority 0; policy accept; }; add chain inet shsim output { type "
                        "filter hook output priority 0; policy accept; }";
    for (int i = 0; i < S.nodes; i++) {
        s_node_t *node = &s_nodes[i];
        if (s_sh ("ip netns add %s", node->ns))
            return -1;
        s_ns_made = i + 1;
        if (s_sh ("ip -n %s link add v%d type veth peer name veth0 netns %s", s_bridge_ns, i,
                  node->ns)
            || s_sh ("ip -n %s link set v%d master br0 up", s_bridge_ns, i)
            || s_sh ("ip -n %s addr add %s/24 dev veth0", node->ns, node->ip)
            || s_sh ("ip -n %s link set veth0 up", node->ns)
            || s_sh ("ip -n %s link set lo up", node->ns)
            || s_sh ("ip netns exec %s nft '%s'", node->ns, table))
            return -1;
        char data[600];
        snprintf (data, sizeof data, "%s/data", node->dir);
        if (mount ("tmpfs", data, "tmpfs", 0, "size=48m,mode=0755"))
            return -1;
        node->mounted = true;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Faults

static bool
s_fault_enabled (s_fault_type_t type)
{
    if (!s_netns && type != F_KILL && type != F_PAUSE && type != F_CKILL)
        return false;
    if (!*S.faults)
        return true;
    char list[160];
    snprintf (list, sizeof list, ",%s,", S.faults);
    char item[40];
    snprintf (item, sizeof item, ",%s,", s_fault_names[type]);
    return strstr (list, item) != NULL;
}

//  One fault at a time, from 1 s into the workload to its end.
static void
s_schedule (void)
{
    uint64_t rng = S.seed;
    s_fault_type_t types[F_TYPES];
    int ntypes = 0;
    for (int t = 0; t < F_TYPES; t++)
        if (s_fault_enabled ((s_fault_type_t) t))
            types[ntypes++] = (s_fault_type_t) t;
    int64_t t = 1000;
    int64_t end = (int64_t) S.duration * 1000;
    while (ntypes && s_fault_count < S_MAX_FAULTS) {
        int64_t length = s_rand_range (&rng, 800, 3000);
        if (t + length > end)
            break;
        s_fault_t *f = &s_faults[s_fault_count++];
        f->type = types[s_rand (&rng) % (uint64_t) ntypes];
        f->a = (int) (s_rand (&rng) % (uint64_t) S.nodes);
        f->b = (f->a + 1 + (int) (s_rand (&rng) % (uint64_t) (S.nodes - 1))) % S.nodes;
        f->percent = s_rand_range (&rng, 20, 60);
        f->start_ms = t;
        f->end_ms = t + length;
        f->state = 0;
        t += length + s_rand_range (&rng, 300, 1500);
    }
}

static void
s_fault_text (const s_fault_t *f, char *text, size_t size)
{
    switch (f->type) {
        case F_PARTITION: snprintf (text, size, "partition n%d <-/-> n%d", f->a, f->b); break;
        case F_APART:
            snprintf (text, size, "apartition n%d hears nothing from n%d", f->a, f->b);
            break;
        case F_LOSS: snprintf (text, size, "loss %d%% at n%d", f->percent, f->a); break;
        default: snprintf (text, size, "%s n%d", s_fault_names[f->type], f->a);
    }
}

static void
s_fill_disk (int i)
{
    char path[600];
    snprintf (path, sizeof path, "%s/data/ballast", s_nodes[i].dir);
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return;
    static char block[1 << 16];
    for (int n = 0; n < 2048; n++) //  at most 128 MiB: more than the tmpfs
        if (write (fd, block, sizeof block) < (ssize_t) sizeof block)
            break;
    close (fd);
}

static void
s_fault_apply (s_fault_t *f, bool start)
{
    s_node_t *a = &s_nodes[f->a], *b = &s_nodes[f->b];
    char text[120];
    s_fault_text (f, text, sizeof text);
    s_msg ("%s %s", start ? "fault start:" : "fault end:  ", text);
    switch (f->type) {
        case F_KILL:
            if (start)
                s_node_stop (f->a, SIGKILL);
            else
                s_node_start (f->a);
            break;
        case F_CKILL:
            //  The consumer client crashes; its successor resumes from the
            //  cursor the node kept (at-least-once: redeliveries allowed).
            if (start) {
                for (int i = 0; i < s_worker_count; i++)
                    if (!s_workers[i].producer && s_workers[i].node == f->a && s_workers[i].pid) {
                        kill (s_workers[i].pid, SIGKILL);
                        waitpid (s_workers[i].pid, NULL, 0);
                        s_workers[i].pid = 0;
                    }
            }
            else
                s_worker_start (f->a, false, s_hard_end);
            break;
        case F_PAUSE:
            if (a->pid) {
                kill (a->pid, start ? SIGSTOP : SIGCONT);
                a->paused = start;
            }
            break;
        case F_PARTITION:
        case F_APART:
            if (start) {
                s_sh ("ip netns exec %s nft add rule inet shsim input ip saddr %s drop", a->ns,
                      b->ip);
                if (f->type == F_PARTITION) {
                    s_sh ("ip netns exec %s nft add rule inet shsim output ip daddr %s drop", a->ns,
                          b->ip);
                    s_sh ("ip netns exec %s nft add rule inet shsim input ip saddr %s drop", b->ns,
                          a->ip);
                    s_sh ("ip netns exec %s nft add rule inet shsim output ip daddr %s drop", b->ns,
                          a->ip);
                }
            }
            else {
                s_nft_flush (f->a);
                s_nft_flush (f->b);
            }
            break;
        case F_LOSS:
            if (start) {
                s_sh ("ip netns exec %s nft add rule inet shsim input iifname veth0 "
                      "numgen random mod 100 lt %d drop",
                      a->ns, f->percent);
                s_sh ("ip netns exec %s nft add rule inet shsim output oifname veth0 "
                      "numgen random mod 100 lt %d drop",
                      a->ns, f->percent);
            }
            else
                s_nft_flush (f->a);
            break;
        case F_DISK:
            if (start)
                s_fill_disk (f->a);
            else {
                char path[600];
                snprintf (path, sizeof path, "%s/data/ballast", a->dir);
                unlink (path);
                //  A log that hit ENOSPC refuses appends until reopened.
                s_node_stop (f->a, SIGTERM);
                s_node_start (f->a);
            }
            break;
        default: break;
    }
}

//  --------------------------------------------------------------------------
//  Offline checks: logs compared after the nodes stopped

//  Reads one log into arrays of records. Caller frees with s_log_free.
typedef struct {
    size_t count;
    uint64_t *seqs;
    uint8_t **data;
    size_t *sizes;
    bool ok;
} s_log_dump_t;

static void
s_log_free (s_log_dump_t *d)
{
    for (size_t i = 0; i < d->count; i++)
        free (d->data[i]);
    free (d->seqs);
    free (d->data);
    free (d->sizes);
    memset (d, 0, sizeof *d);
}

static s_log_dump_t
s_log_read_all (int node, const char *origin_hex, const char *stream)
{
    s_log_dump_t d = {0, NULL, NULL, NULL, false};
    char dir[800];
    snprintf (dir, sizeof dir, "%s/data/logs/%s/%s", s_nodes[node].dir, origin_hex, stream);
    struct stat st;
    if (stat (dir, &st))
        return d;
    uint8_t origin[16];
    for (int i = 0; i < 16; i++) {
        unsigned v;
        sscanf (origin_hex + 2 * i, "%2x", &v);
        origin[i] = (uint8_t) v;
    }
    shoal_log_config_t config;
    shoal_log_config_defaults (&config);
    config.segment_size = 4194304;
    int error = 0;
    shoal_log_t *log = shoal_log_open (dir, origin, stream, false, &config, &error);
    if (!log)
        return d;
    size_t alloc = 1024;
    d.seqs = (uint64_t *) malloc (alloc * sizeof (uint64_t));
    d.data = (uint8_t **) malloc (alloc * sizeof (uint8_t *));
    d.sizes = (size_t *) malloc (alloc * sizeof (size_t));
    shoal_log_iter_t *iter = shoal_log_iter_new (log, shoal_log_first (log), 0);
    uint64_t seq;
    int64_t time_ns;
    const uint8_t *data;
    size_t size;
    for (size_t n = 0;
         iter && n < 10000000 && shoal_log_iter_next (iter, &seq, &time_ns, &data, &size) == 1;
         n++) {
        if (d.count == alloc) {
            alloc *= 2;
            d.seqs = (uint64_t *) realloc (d.seqs, alloc * sizeof (uint64_t));
            d.data = (uint8_t **) realloc (d.data, alloc * sizeof (uint8_t *));
            d.sizes = (size_t *) realloc (d.sizes, alloc * sizeof (size_t));
        }
        d.seqs[d.count] = seq;
        d.data[d.count] = (uint8_t *) malloc (size ? size : 1);
        memcpy (d.data[d.count], data, size);
        d.sizes[d.count] = size;
        d.count++;
    }
    shoal_log_iter_destroy (&iter);
    shoal_log_close (&log);
    d.ok = true;
    return d;
}

static void
s_check_offline (size_t *compared)
{
    //  Every acknowledged event is in its origin's log with its id; no id
    //  twice in one log.
    for (int o = 0; o < S.nodes; o++)
        for (int s = 0; s < S_STREAMS; s++) {
            s_log_dump_t mine = s_log_read_all (o, s_nodes[o].id, s_streams[s]);
            zhashx_t *ids = zhashx_new ();
            zhashx_t *by_seq = zhashx_new ();
            zhashx_set_destructor (by_seq, (zhashx_destructor_fn *) zstr_free);
            zhashx_set_duplicator (by_seq, (zhashx_duplicator_fn *) strdup);
            for (size_t k = 0; k < mine.count; k++) {
                shoal_event_t *e = shoal_event_decode (mine.data[k], mine.sizes[k], 0, NULL);
                if (!e)
                    continue;
                char idhex[33] = "-", key[40];
                if (shoal_event_id (e))
                    shoal_id_to_hex (shoal_event_id (e), idhex);
                snprintf (key, sizeof key, "%llu", (unsigned long long) mine.seqs[k]);
                if (zhashx_lookup (ids, idhex))
                    s_violation (V_DUP, "id %s twice in the log of n%d/%s", idhex, o, s_streams[s]);
                zhashx_update (ids, idhex, (void *) 1);
                zhashx_update (by_seq, key, idhex);
                shoal_event_destroy (&e);
            }
            //  Compare with the acknowledged history of this log.
            char prefix[120];
            int plen = snprintf (prefix, sizeof prefix, "%s/%s/", s_nodes[o].id, s_streams[s]);
            for (const char *id = (const char *) zhashx_first (H.acked); id;
                 id = (const char *) zhashx_next (H.acked)) {
                const char *key = (const char *) zhashx_cursor (H.acked);
                if (strncmp (key, prefix, (size_t) plen) != 0)
                    continue;
                const char *found = (const char *) zhashx_lookup (by_seq, key + plen);
                if (!found)
                    s_violation (V_LOST, "acknowledged %s (id %s) missing from the origin's log",
                                 key, id);
                else if (!streq (found, id))
                    s_violation (V_LOST, "acknowledged %s has id %s in the log, not %s", key, found,
                                 id);
            }
            //  Replicas hold the same seqs and the same bytes.
            for (int r = 0; r < S.nodes; r++) {
                if (r == o)
                    continue;
                s_log_dump_t replica = s_log_read_all (r, s_nodes[o].id, s_streams[s]);
                if (!replica.ok && mine.count)
                    s_violation (V_CONVERGE, "n%d has no replica of n%d/%s", r, o, s_streams[s]);
                else if (replica.count != mine.count)
                    s_violation (V_CONVERGE, "n%d holds %zu events of n%d/%s, the origin %zu", r,
                                 replica.count, o, s_streams[s], mine.count);
                else
                    for (size_t k = 0; k < mine.count; k++) {
                        (*compared)++;
                        if (replica.seqs[k] != mine.seqs[k] || replica.sizes[k] != mine.sizes[k]
                            || memcmp (replica.data[k], mine.data[k], mine.sizes[k]) != 0) {
                            s_violation (V_CONVERGE, "n%d's replica of n%d/%s differs at seq %llu",
                                         r, o, s_streams[s], (unsigned long long) mine.seqs[k]);
                            break;
                        }
                    }
                s_log_free (&replica);
            }
            zhashx_destroy (&ids);
            zhashx_destroy (&by_seq);
            s_log_free (&mine);
        }
}

//  True when every consumer has every acknowledged event and every log
//  its origin reports, and every node's replica reached its origin's head.
static bool
s_settled (size_t *missing_p)
{
    size_t missing = 0;
    for (int c = 0; c < S.nodes; c++)
        for (const char *id = (const char *) zhashx_first (H.acked); id;
             id = (const char *) zhashx_next (H.acked))
            if (!zhashx_lookup (H.delivered[c], (const char *) zhashx_cursor (H.acked)))
                missing++;
    for (int o = 0; o < S.nodes; o++)
        for (int s = 0; s < S_STREAMS; s++) {
            char log_key[120];
            snprintf (log_key, sizeof log_key, "%s/%s", s_nodes[o].id, s_streams[s]);
            uint64_t head = (uint64_t) (uintptr_t) zhashx_lookup (H.heads[o], log_key);
            for (int c = 0; c < S.nodes; c++) {
                uint64_t have = (uint64_t) (uintptr_t) zhashx_lookup (H.next_seq[c], log_key);
                uint64_t replica = (uint64_t) (uintptr_t) zhashx_lookup (H.heads[c], log_key);
                if (have < head)
                    missing += head - have;
                if (replica < head)
                    missing += head - replica;
            }
        }
    *missing_p = missing;
    return missing == 0;
}

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "usage: shoal-sim [OPTION]...\n"
        "Run N shoald under a seeded fault schedule and check the promises.\n\n"
        "  --nodes N        nodes (default 3, at most %d)\n"
        "  --seed S         seed of the schedule and workload (default: from the clock)\n"
        "  --duration SEC   workload with faults (default 8)\n"
        "  --bound SEC      liveness bound once faults stop (default 30)\n"
        "  --faults LIST    kill,pause,consumer-kill,partition,apartition,loss,disk (default\n"
        "                   all that the mode allows)\n"
        "  --bug NAME       planted bug for the nodes (SHOAL_TEST_BUG): ack-before-fsync,\n"
        "                   skip-repair\n"
        "  --loopback       loopback processes, not network namespaces (automatic without root)\n"
        "  --shoald PATH    the node program (default: shoald next to shoal-sim, else PATH)\n"
        "  --keep           keep the work directory\n"
        "  --verbose        print every command run\n\n"
        "Exit status: 0 no violation, 1 a violation, 2 usage, 3 setup failed.\n",
        S_MAX_NODES);
}

int
main (int argc, char **argv)
{
    static struct option options[] = {
        {"nodes", required_argument, 0, 'n'},    {"seed", required_argument, 0, 's'},
        {"duration", required_argument, 0, 'd'}, {"bound", required_argument, 0, 'b'},
        {"faults", required_argument, 0, 'f'},   {"bug", required_argument, 0, 'B'},
        {"loopback", no_argument, 0, 'l'},       {"shoald", required_argument, 0, 'S'},
        {"keep", no_argument, 0, 'k'},           {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    bool seeded = false;
    int opt;
    while ((opt = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
            case 'n': S.nodes = atoi (optarg); break;
            case 's':
                S.seed = strtoull (optarg, NULL, 0);
                seeded = true;
                break;
            case 'd': S.duration = atoi (optarg); break;
            case 'b': S.bound = atoi (optarg); break;
            case 'f': snprintf (S.faults, sizeof S.faults, "%s", optarg); break;
            case 'B': S.bug = optarg; break;
            case 'l': S.loopback = true; break;
            case 'S': S.shoald = optarg; break;
            case 'k': S.keep = true; break;
            case 'v': S.verbose = true; break;
            case 'h': s_usage (stdout); return 0;
            default: s_usage (stderr); return 2;
        }
    }
    if (optind != argc || S.nodes < 2 || S.nodes > S_MAX_NODES || S.duration < 2
        || S.duration > 3600 || S.bound < 1 || S.bound > 3600) {
        s_usage (stderr);
        return 2;
    }
    if (!seeded) {
        struct timespec ts;
        clock_gettime (CLOCK_REALTIME, &ts);
        S.seed = (uint64_t) ts.tv_nsec ^ ((uint64_t) ts.tv_sec << 20) ^ (uint64_t) getpid ();
        S.seed %= 1000000000ULL;
    }
    static char shoald_path[1024];
    if (!S.shoald) {
        char self[900];
        ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
        S.shoald = "shoald";
        if (n > 0) {
            self[n] = 0;
            char *slash = strrchr (self, '/');
            if (slash) {
                *slash = 0;
                snprintf (shoald_path, sizeof shoald_path, "%s/shoald", self);
                if (access (shoald_path, X_OK) == 0)
                    S.shoald = shoald_path;
            }
        }
    }
    s_parent_pid = getpid ();
    s_t0 = s_now_ms ();
    setvbuf (stdout, NULL, _IOLBF, 0);
    signal (SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGHUP, &sa, NULL);
    atexit (s_cleanup);
    s_history_init ();

    const char *why_loopback = NULL;
    if (S.loopback)
        why_loopback = "--loopback given";
    else if (geteuid () != 0)
        why_loopback = "not root";
    else if (s_sh ("command -v ip") || s_sh ("command -v nft"))
        why_loopback = "ip or nft missing (apt-get install iproute2 nftables)";
    s_netns = why_loopback == NULL;
    snprintf (s_prefix, sizeof s_prefix, "shsim%d", (int) getpid ());
    s_run = (int) (getpid () % 250) + 1;
    const char *tmp = getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp";
    snprintf (s_work, sizeof s_work, "%s/%s", tmp, s_prefix);
    if (mkdir (s_work, 0755)) {
        fprintf (stderr, "shoal-sim: cannot create %s: %s\n", s_work, strerror (errno));
        return 3;
    }
    s_work_made = true;
    s_beacon_port = s_netns ? 5680 : s_free_port (SOCK_DGRAM);
    for (int i = 0; i < S.nodes; i++) {
        s_node_t *node = &s_nodes[i];
        snprintf (node->dir, sizeof node->dir, "%s/n%d", s_work, i);
        char data[600];
        snprintf (data, sizeof data, "%s/data", node->dir);
        mkdir (node->dir, 0755);
        mkdir (data, 0755);
        snprintf (node->ns, sizeof node->ns, "%sn%d", s_prefix, i);
        if (s_netns) {
            snprintf (node->ip, sizeof node->ip, "10.216.%d.%d", s_run, i + 1);
            node->router_port = 7001;
            node->pub_port = 7002;
        }
        else {
            snprintf (node->ip, sizeof node->ip, "127.0.0.1");
            node->router_port = s_free_port (SOCK_STREAM);
            node->pub_port = s_free_port (SOCK_STREAM);
        }
    }
    s_schedule ();

    //  Under libtool's wrapper argv[0] is .libs/shoal-sim or .libs/lt-shoal-sim.
    char self_name[600];
    snprintf (self_name, sizeof self_name, "%s", argv[0]);
    char *libs = strstr (self_name, ".libs/");
    if (libs) {
        const char *base = strstr (libs, "lt-") ? strstr (libs, "lt-") + 3 : libs + 6;
        memmove (libs, base, strlen (base) + 1);
    }
    char repro[1024];
    int rlen = snprintf (repro, sizeof repro, "%s --seed %llu --nodes %d --duration %d --bound %d",
                         self_name, (unsigned long long) S.seed, S.nodes, S.duration, S.bound);
    if (*S.faults)
        rlen += snprintf (repro + rlen, sizeof repro - (size_t) rlen, " --faults %s", S.faults);
    if (S.bug)
        rlen += snprintf (repro + rlen, sizeof repro - (size_t) rlen, " --bug %s", S.bug);
    if (S.loopback)
        snprintf (repro + rlen, sizeof repro - (size_t) rlen, " --loopback");

    printf ("shoal-sim: seed %llu, %d nodes, %s mode%s%s, workload %d s, liveness bound %d s\n",
            (unsigned long long) S.seed, S.nodes, s_netns ? "network-namespace" : "loopback",
            why_loopback ? " because " : "", why_loopback ? why_loopback : "", S.duration, S.bound);
    printf ("shoal-sim: run %s, work directory %s\n", s_prefix, s_work);
    if (!s_netns)
        printf ("shoal-sim: loopback mode injects only kill, pause and consumer-kill (partitions, "
                "loss and full disks need root)\n");
    if (S.bug)
        printf ("shoal-sim: planted bug %s (SHOAL_TEST_BUG)\n", S.bug);
    printf ("schedule (%d faults, ms after the workload starts):\n", s_fault_count);
    for (int i = 0; i < s_fault_count; i++) {
        char text[120];
        s_fault_text (&s_faults[i], text, sizeof text);
        printf ("  %6lld - %6lld  %s\n", (long long) s_faults[i].start_ms,
                (long long) s_faults[i].end_ms, text);
    }
    fflush (stdout);

    int exit_code = 0;
    if (s_netns && s_setup_netns ()) {
        fprintf (stderr, "shoal-sim: network setup failed (run with --verbose to see which "
                         "command)\n");
        exit_code = 3;
        goto done;
    }
    for (int i = 0; i < S.nodes; i++)
        s_node_start (i);
    for (int i = 0; i < S.nodes; i++)
        if (s_node_read_id (i)) {
            fprintf (stderr, "shoal-sim: node n%d did not start; see %s/shoald.log\n", i,
                     s_nodes[i].dir);
            S.keep = true;
            exit_code = 3;
            goto done;
        }
    for (int i = 0; i < S.nodes; i++)
        s_msg ("node n%d id %s at %s:%d (pid %d)", i, s_nodes[i].id, s_nodes[i].ip,
               s_nodes[i].router_port, (int) s_nodes[i].pid);

    //  Consumers first; they also tell when the mesh has formed.
    s_hard_end = s_now_ms () + (int64_t) (S.duration + S.bound + 60) * 1000;
    for (int i = 0; i < S.nodes; i++)
        s_worker_start (i, false, s_hard_end);
    int64_t formed_by = s_now_ms () + 15000;
    bool formed = false;
    for (int n = 0; n < 300 && !s_interrupted && s_now_ms () < formed_by && !formed; n++) {
        s_pump (100);
        formed = true;
        for (int i = 0; i < S.nodes; i++)
            formed = formed && H.peers[i] >= S.nodes - 1;
    }
    s_msg ("mesh %s (peers seen: n0 %d, n1 %d)",
           formed ? "formed" : "not fully formed after 15 s; going on", H.peers[0], H.peers[1]);

    int64_t start = s_now_ms ();
    int64_t work_end = start + (int64_t) S.duration * 1000;
    for (int i = 0; i < S.nodes; i++)
        s_worker_start (i, true, work_end);
    for (int n = 0; n < 1000000 && !s_interrupted; n++) {
        int64_t t = s_now_ms () - start;
        for (int i = 0; i < s_fault_count; i++) {
            s_fault_t *f = &s_faults[i];
            if (f->state == 0 && t >= f->start_ms) {
                s_fault_apply (f, true);
                f->state = 1;
            }
            if (f->state == 1 && t >= f->end_ms) {
                s_fault_apply (f, false);
                f->state = 2;
            }
        }
        if (t >= (int64_t) S.duration * 1000)
            break;
        s_pump (50);
        s_reap_nodes ();
    }
    //  Faults stop: revert any still active, every node running.
    for (int i = 0; i < s_fault_count; i++)
        if (s_faults[i].state == 1) {
            s_fault_apply (&s_faults[i], false);
            s_faults[i].state = 2;
        }
    for (int i = 0; i < S.nodes; i++)
        if (!s_nodes[i].pid)
            s_node_start (i);
    //  Producers end by themselves at work_end; wait for them (bounded).
    for (int n = 0; n < 200; n++) {
        bool running = false;
        for (int i = 0; i < s_worker_count; i++)
            if (s_workers[i].producer && s_workers[i].pid) {
                if (waitpid (s_workers[i].pid, NULL, WNOHANG) == s_workers[i].pid)
                    s_workers[i].pid = 0;
                else
                    running = true;
            }
        if (!running)
            break;
        s_pump (50);
    }
    int64_t quiet = s_now_ms ();
    s_msg ("faults stopped; %zu events acknowledged; waiting up to %d s for delivery",
           zhashx_size (H.acked), S.bound);
    size_t missing = 0;
    bool settled = false;
    int stable = 0;
    for (int n = 0; n < 100000 && !s_interrupted && s_now_ms () - quiet < (int64_t) S.bound * 1000;
         n++) {
        s_pump (100);
        s_reap_nodes ();
        //  Settled three checks in a row (~300 ms): no late stragglers.
        if (s_settled (&missing)) {
            if (++stable >= 3) {
                settled = true;
                break;
            }
        }
        else
            stable = 0;
    }
    double settle_s = (s_now_ms () - quiet) / 1000.0;
    s_reap_nodes ();
    if (s_interrupted) {
        fprintf (stderr, "shoal-sim: interrupted; cleaning up\n");
        exit_code = 130;
        goto done;
    }
    if (!settled) {
        s_violation (V_LIVE,
                     "%zu deliveries or replica events still missing %d s after faults "
                     "stopped",
                     missing, S.bound);
    }
    s_msg ("%s after %.1f s", settled ? "settled" : "NOT settled", settle_s);
    //  Stop the clients, then the nodes (cleanly), then check the logs.
    for (int i = 0; i < s_worker_count; i++)
        if (s_workers[i].pid)
            kill (s_workers[i].pid, SIGTERM);
    for (int n = 0; n < 100; n++) {
        bool running = false;
        for (int i = 0; i < s_worker_count; i++)
            if (s_workers[i].pid) {
                if (waitpid (s_workers[i].pid, NULL, WNOHANG) == s_workers[i].pid)
                    s_workers[i].pid = 0;
                else
                    running = true;
            }
        s_pump (50);
        if (!running)
            break;
    }
    for (int i = 0; i < S.nodes; i++)
        s_node_stop (i, SIGTERM);
    //  Missing deliveries of acknowledged events.
    for (int c = 0; c < S.nodes; c++) {
        size_t lost = 0;
        for (const char *id = (const char *) zhashx_first (H.acked); id;
             id = (const char *) zhashx_next (H.acked)) {
            const char *key = (const char *) zhashx_cursor (H.acked);
            if (!zhashx_lookup (H.delivered[c], key)) {
                if (lost++ < 5)
                    s_violation (V_LOST, "acknowledged %s never delivered to consumer %d", key, c);
            }
        }
        if (lost > 5)
            s_violation (V_LOST, "... %zu acknowledged events never delivered to consumer %d", lost,
                         c);
    }
    size_t compared = 0;
    s_check_offline (&compared);

    printf ("\nshoal-sim report\n");
    printf ("  seed        %llu\n", (unsigned long long) S.seed);
    printf ("  mode        %s\n", s_netns ? "network namespaces (zbeacon on veth)" : "loopback");
    printf ("  faults      %d injected:", s_fault_count);
    int per_type[F_TYPES] = {0};
    for (int i = 0; i < s_fault_count; i++)
        per_type[s_faults[i].type]++;
    for (int t = 0; t < F_TYPES; t++)
        if (per_type[t])
            printf (" %s=%d", s_fault_names[t], per_type[t]);
    printf ("\n  history     %zu acknowledged, %zu deliveries (%zu redeliveries), %zu replica "
            "records compared\n",
            zhashx_size (H.acked), H.deliveries, H.redeliveries, compared);
    printf ("  settled in  %.1f s (bound %d s)\n", settle_s, S.bound);
    for (int v = 0; v < V_COUNT; v++) {
        size_t count = zlistx_size (H.violations[v]);
        printf ("  %-4s %s%s", count ? "FAIL" : "ok", s_invariant_names[v], count ? ":" : "\n");
        if (count)
            printf (" %zu violation%s\n", count, count == 1 ? "" : "s");
        int shown = 0;
        for (const char *text = (const char *) zlistx_first (H.violations[v]); text && shown < 5;
             text = (const char *) zlistx_next (H.violations[v]), shown++)
            printf ("         %s\n", text);
        if (count)
            exit_code = 1;
    }
    if (H.deliveries == 0 || zhashx_size (H.acked) == 0) {
        printf ("  FAIL workload: nothing was acknowledged or delivered\n");
        exit_code = 1;
    }
    printf ("  verdict     %s\n", exit_code ? "VIOLATION" : "ok");
    printf ("  reproduce   %s\n", repro);
    if (exit_code)
        S.keep = S.keep || getenv ("SHOAL_SIM_KEEP") != NULL;
done:
    s_cleanup ();
    if (S.keep && s_work_made)
        printf ("  work dir    %s (kept)\n", s_work);
    return exit_code;
}
