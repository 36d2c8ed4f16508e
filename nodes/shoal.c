/*  =========================================================================
    shoal - the command-line tool of a shoal mesh

    shoal talks to a node the way any thin client does: a DEALER socket
    connected to the node's ROUTER, one Request frame out, Response frames
    back (proto/shoal.proto, DESIGN.md "Wire contract"). The node is named
    with --node ENDPOINT, or found through the data directory of a local
    shoald (--data DIR, default as shoald's), which holds the ROUTER
    endpoint in DIR/shoald.endpoint. Every command first pings the node, so
    a node that is not there is reported at once with what to do.

        pub     PublishRequest, one per event; the node acknowledges an
                event only once it is durable, so the ack is durability.
                Events from stdin are pipelined (a window of requests in
                flight); --wait sends one at a time.
        sub     follows a stream across the mesh: Status of the node and
                of its peers tells which origins have a log of the stream
                and who holds it; each origin's log is replayed from the
                start position, from the origin itself when it can be
                reached, and asked again from its next seq every poll
                interval, so new events follow. Per origin the events come
                in seq order, each once. With --durable NAME the local
                node keeps the consumer's cursors (ConsumerRequest "get"
                at the start, "ack" after events are printed, so a crash
                prints some again: at least once).
        replay  one origin's log, a range, with a progress bar on a
                terminal.
        peers, status
                the node's Status, as tables or JSON.
        log verify, log dump
                offline, on a data directory (or one log directory): they
                take the directory's lock, so they refuse to run beside a
                shoald that uses it.

    Output is for people by default; --json prints one JSON object per
    line. Exit status: 0 ok, 1 error, 2 usage. Every error says what to do
    next.
    ========================================================================= */

#include "shoal.h"
#include "shoal.pb-c.h"
#include "shoal_json.h"
#include "shoal_secure.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_OK 0
#define S_ERROR 1
#define S_USAGE 2

#define S_ENDPOINT_FILE "shoald.endpoint"
#define S_CREDIT 1000          //  replay credit window, events
#define S_PUB_WINDOW 256       //  publishes in flight from stdin
#define S_STATUS_EVERY_MS 1000 //  sub: how often sources are asked for Status
#define S_MAX_SOURCES 64       //  sub: nodes followed at once
#define S_LINE_MAX (1 << 20)   //  longest stdin line accepted by pub

static volatile sig_atomic_t s_interrupted = 0;

static void
s_on_signal (int signo)
{
    (void) signo;
    s_interrupted = 1;
}

//  The global options and what was resolved from them.
typedef struct {
    bool json;        //  --json: one JSON object per line
    int timeout_ms;   //  --timeout: longest wait for an answer
    const char *node; //  --node ENDPOINT
    const char *data; //  --data DIR
    char *endpoint;   //  the node's ROUTER endpoint
    char *found;      //  where the endpoint came from, for messages
    char *data_dir;   //  the data directory meant, for hints
} s_cli_t;

static int64_t
s_now_ms (void)
{
    return zclock_mono ();
}

static void
s_usage (FILE *out)
{
    fprintf (out,
             "usage: shoal [--node ENDPOINT | --data DIR] [--json] [--timeout MS] COMMAND ...\n"
             "\n"
             "Commands:\n"
             "  pub STREAM TYPE [--key K] [--json-payload TEXT | --data @FILE|TEXT] [--wait]\n"
             "                  [--content-type T] [--header NAME=VALUE]... [--id HEX]\n"
             "                  [--correlation-id ID] [--causation-id ID] [--schema-version N]\n"
             "      publish one event; without --json-payload or --data, one event per line\n"
             "      of stdin. Prints origin/stream/seq of each. --wait: one at a time, each\n"
             "      acknowledged (durable) before the next line is read.\n"
             "  sub STREAM [--type T]... [--from beginning|now|SEQ|TIME] [--durable NAME]\n"
             "             [--count N] [--local] [--poll-ms MS]\n"
             "      follow a stream across the mesh (the node and its peers) until Ctrl-C or\n"
             "      N events. TIME: 2024-05-01T12:00:00Z, a local time, @UNIX_SECONDS or\n"
             "      -30s/-5m/-2h/-1d. Default --from now. --local: only the logs this node holds.\n"
             "      --durable NAME: a durable consumer; the node keeps how far it got, and the\n"
             "      next run goes on from there (origins new to it: --from, default beginning).\n"
             "  replay --origin ID|NAME STREAM [--from N] [--to M] [--type T]...\n"
             "      one origin's log, seqs N to M (default: all it holds).\n"
             "  peers             the node's peers\n"
             "  status            the node: logs, peers, counters\n"
             "  log verify DIR    check every record of every log in a data directory\n"
             "  log dump DIR [--stream S] [--origin ID]\n"
             "      print every event stored in a data directory\n"
             "  trace ID          every event of correlation id ID (or of the event with id\n"
             "      ID and its correlation) in the logs of the node and its peers, in\n"
             "      causation order: each event indented under the event that caused it\n"
             "  keys new NAME [--dir DIR]   make a CURVE keypair DIR/NAME.cert (+ _secret)\n"
             "  keys list DIR               the keys a keys directory (allow-list) holds\n"
             "  keys allow DIR CERT         add a public certificate to the allow-list\n"
             "  keys revoke DIR KEY|NAME    remove a key; running nodes cut it off at once\n"
             "\n"
             "Options:\n"
             "  --node ENDPOINT   the node's ROUTER endpoint, e.g. tcp://127.0.0.1:7001\n"
             "                    (also SHOAL_NODE)\n"
             "  --data DIR        find the local shoald through DIR/" S_ENDPOINT_FILE "\n"
             "                    (also SHOAL_DATA; default as shoald's: $XDG_DATA_HOME/shoal\n"
             "                    or ~/.local/share/shoal)\n"
             "  --json            one JSON object per line, for scripts\n"
             "  --timeout MS      how long to wait for the node to answer (default 5000)\n"
             "  --cert FILE       secure mode: this client's certificate (NAME.cert with\n"
             "                    NAME.cert_secret beside it; also SHOAL_CERT)\n"
             "  --server-key KEY  secure mode: the node's public key (default: from\n"
             "                    ENDPOINT#KEY or DIR/" S_ENDPOINT_FILE "; also SHOAL_SERVER_KEY)\n"
             "  -h, --help        this help;  -V, --version  the version\n"
             "\n"
             "Exit status: 0 ok, 1 error, 2 usage error.\n");
}

//  Reports a usage error and returns S_USAGE.
static int s_usage_error (const char *format, ...) CHECK_PRINTF (1);
static int
s_usage_error (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "shoal: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n(see shoal --help)\n");
    va_end (args);
    return S_USAGE;
}

//  Matches an option of a command: "--name VALUE" or "--name=VALUE".
//  Returns 1 when argv[*i] is the option (value set, *i advanced), 0 when
//  it is another, -1 when its value is missing (reported).
static int
s_option (int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t length = strlen (name);
    const char *arg = argv[*i];
    if (strncmp (arg, name, length) != 0)
        return 0;
    if (arg[length] == '=') {
        *value = arg + length + 1;
        return 1;
    }
    if (arg[length] != 0)
        return 0;
    if (*i + 1 >= argc) {
        s_usage_error ("%s needs a value", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

//  Parses a whole unsigned decimal number. 0 or -1.
static int
s_parse_u64 (const char *text, uint64_t *value)
{
    if (!text || !*text || *text < '0' || *text > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull (text, &end, 10);
    if (errno || *end)
        return -1;
    *value = v;
    return 0;
}

//  Local time with milliseconds, for people.
static void
s_format_time (int64_t time_ns, char *text, size_t size)
{
    time_t seconds = (time_t) (time_ns / 1000000000);
    long millis = (long) ((time_ns % 1000000000) / 1000000);
    if (time_ns < 0) {
        seconds--;
        millis += 1000;
    }
    struct tm tm;
    localtime_r (&seconds, &tm);
    char stamp[40];
    strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (text, size, "%s.%03ld", stamp, millis);
}

//  Parses --from TIME: ISO 8601 (date, time, fraction, Z or +HH:MM; no
//  zone means local time), @UNIX_SECONDS[.frac], or -N[s|m|h|d] before now.
//  0 and *time_ns, or -1.
static int
s_parse_time (const char *text, int64_t *time_ns)
{
    if (text[0] == '-' && text[1] >= '0' && text[1] <= '9') {
        char *end;
        double amount = strtod (text + 1, &end);
        double unit = streq (end, "s")   ? 1
                      : streq (end, "m") ? 60
                      : streq (end, "h") ? 3600
                      : streq (end, "d") ? 86400
                                         : 0;
        if (unit == 0)
            return -1;
        *time_ns = shoal_time_ns () - (int64_t) (amount * unit * 1e9);
        return 0;
    }
    if (text[0] == '@') {
        char *end;
        double seconds = strtod (text + 1, &end);
        if (end == text + 1 || *end || seconds < 0)
            return -1;
        *time_ns = (int64_t) (seconds * 1e9);
        return 0;
    }
    int year, month, day, hour = 0, minute = 0, second = 0, used = 0;
    if (sscanf (text, "%4d-%2d-%2d%n", &year, &month, &day, &used) != 3 || used != 10)
        return -1;
    const char *p = text + used;
    long nanos = 0;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (sscanf (p, "%2d:%2d%n", &hour, &minute, &used) != 2 || used != 5)
            return -1;
        p += used;
        if (*p == ':') {
            if (sscanf (p + 1, "%2d%n", &second, &used) != 1 || used != 2)
                return -1;
            p += 3;
            if (*p == '.') {
                p++;
                long scale = 100000000;
                if (*p < '0' || *p > '9')
                    return -1;
                while (*p >= '0' && *p <= '9') {
                    nanos += (*p - '0') * scale;
                    scale /= 10;
                    p++;
                }
            }
        }
    }
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return -1;
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    time_t seconds;
    if (*p == 0) {
        tm.tm_isdst = -1;
        seconds = mktime (&tm);
    }
    else {
        int offset = 0;
        if (*p == 'Z' && p[1] == 0)
            offset = 0;
        else if ((*p == '+' || *p == '-')) {
            int zh, zm;
            if (sscanf (p + 1, "%2d:%2d%n", &zh, &zm, &used) != 2 || used != 5 || p[6] != 0)
                return -1;
            offset = (zh * 60 + zm) * 60 * (*p == '-' ? -1 : 1);
        }
        else
            return -1;
        seconds = timegm (&tm) - offset;
    }
    *time_ns = (int64_t) seconds * 1000000000 + nanos;
    return 0;
}

//  --------------------------------------------------------------------------
//  Secure mode: the client's certificate (--cert) and the node's key

static zcert_t *s_client_cert;   //  --cert FILE (or SHOAL_CERT), NULL = plain connections
static const char *s_server_key; //  --server-key KEY (or SHOAL_SERVER_KEY), NULL = from endpoint

//  Loads --cert. 0, or -1 after reporting.
static int
s_secure_setup (const char *cert_path, const char *server_key)
{
    if (server_key && *server_key && !shoal_secure_key_valid (server_key)) {
        fprintf (stderr,
                 "shoal: --server-key \"%s\" is not a CURVE public key (40 Z85 "
                 "characters, as `shoal keys list DIR` shows)\n",
                 server_key);
        return -1;
    }
    s_server_key = server_key && *server_key ? server_key : NULL;
    if (!cert_path || !*cert_path)
        return 0;
    s_client_cert = zcert_load (cert_path);
    uint8_t zero[32] = {0};
    if (!s_client_cert || memcmp (zcert_secret_key (s_client_cert), zero, 32) == 0) {
        fprintf (stderr,
                 "shoal: --cert %s: not a CURVE certificate with its secret key (make one "
                 "with `shoal keys new NAME` and give NAME.cert; NAME.cert_secret must be "
                 "beside it)\n",
                 cert_path);
        zcert_destroy (&s_client_cert);
        return -1;
    }
    return 0;
}

//  Makes dealer a CURVE client for spec (ENDPOINT or ENDPOINT#KEY) when a
//  certificate was given; plain copies the endpoint part. 0, or -1 when
//  spec is not usable.
static int
s_secure_dealer (zsock_t *dealer, const char *spec, char *plain, size_t plain_size)
{
    char key[SHOAL_KEY_TEXT_SIZE];
    if (shoal_secure_split (NULL, spec, plain, plain_size, key))
        return -1;
    const char *server = *key ? key : s_server_key;
    if (s_client_cert && server) {
        zcert_apply (s_client_cert, dealer);
        zsock_set_curve_serverkey (dealer, server);
    }
    return 0;
}

//  Watches dealer's handshakes (before it connects), so that a refusal
//  can be told apart from a node that does not answer. NULL when the
//  monitor cannot be made.
static zsock_t *
s_secure_monitor (zsock_t *dealer)
{
    static int count = 0;
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://shoal-handshakes-%d", ++count);
    if (zmq_socket_monitor (zsock_resolve (dealer), endpoint,
                            ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL))
        return NULL;
    zsock_t *monitor = zsock_new (ZMQ_PAIR);
    zsock_set_linger (monitor, 0);
    if (zsock_connect (monitor, "%s", endpoint)) {
        zmq_socket_monitor (zsock_resolve (dealer), NULL, 0);
        zsock_destroy (&monitor);
    }
    return monitor;
}

static void
s_secure_monitor_stop (zsock_t *dealer, zsock_t **monitor_p)
{
    if (*monitor_p) {
        zmq_socket_monitor (zsock_resolve (dealer), NULL, 0);
        zsock_destroy (monitor_p);
    }
}

//  After a request went unanswered: true (after reporting) when the
//  monitor saw the node refuse our key or fail the CURVE handshake.
static bool
s_secure_refused (zsock_t *monitor, s_cli_t *cli)
{
    bool auth = false, protocol = false;
    zmq_msg_t frame;
    while (monitor) {
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, zsock_resolve (monitor), ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&frame);
            break;
        }
        uint16_t event = 0;
        if (zmq_msg_size (&frame) >= 2)
            memcpy (&event, zmq_msg_data (&frame), 2);
        auth = auth || event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
        protocol = protocol || event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL;
        while (zmq_msg_more (&frame) && zmq_msg_recv (&frame, zsock_resolve (monitor), 0) >= 0)
            ;
        zmq_msg_close (&frame);
    }
    if (auth)
        fprintf (stderr,
                 "shoal: node at %s refused this client: its key (--cert) is not in the "
                 "node's allow-list; allow it there with `shoal keys allow DIR CERT`\n",
                 cli->endpoint);
    else if (protocol)
        fprintf (stderr,
                 "shoal: the CURVE handshake with %s failed: is the node's key right "
                 "(--server-key or ENDPOINT#KEY), and is the node secure?\n",
                 cli->endpoint);
    return auth || protocol;
}

//  --------------------------------------------------------------------------
//  Talking to a node

typedef struct {
    zsock_t *dealer;  //  connected to the node's ROUTER
    zsock_t *monitor; //  secure mode: the dealer's handshake failures, else NULL
    char *endpoint;   //  where
    uint64_t next_id; //  last request id used
} s_conn_t;

static s_conn_t *
s_conn_new (const char *endpoint)
{
    s_conn_t *self = (s_conn_t *) zmalloc (sizeof (s_conn_t));
    self->endpoint = strdup (endpoint);
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer) {
        free (self->endpoint);
        free (self);
        return NULL;
    }
    zsock_set_linger (self->dealer, 0);
    zsock_set_sndhwm (self->dealer, 10000);
    zsock_set_rcvhwm (self->dealer, 0);
    char plain[512];
    int rc = s_secure_dealer (self->dealer, endpoint, plain, sizeof plain);
    if (rc == 0 && s_client_cert)
        self->monitor = s_secure_monitor (self->dealer);
    if (rc || zsock_connect (self->dealer, "%s", plain)) {
        s_secure_monitor_stop (self->dealer, &self->monitor);
        zsock_destroy (&self->dealer);
        free (self->endpoint);
        free (self);
        return NULL;
    }
    return self;
}

static void
s_conn_destroy (s_conn_t **self_p)
{
    if (*self_p) {
        s_secure_monitor_stop ((*self_p)->dealer, &(*self_p)->monitor);
        zsock_destroy (&(*self_p)->dealer);
        free ((*self_p)->endpoint);
        free (*self_p);
        *self_p = NULL;
    }
}

//  Sends a request with the next request id, without waiting. Returns the
//  id, or 0 when the socket cannot take it now (the node is unreachable
//  and the queue is full).
static uint64_t
s_conn_send (s_conn_t *self, Shoal__V1__Request *request)
{
    request->request_id = ++self->next_id;
    size_t size = shoal__v1__request__get_packed_size (request);
    uint8_t *data = (uint8_t *) malloc (size ? size : 1);
    shoal__v1__request__pack (request, data);
    int rc = zmq_send (zsock_resolve (self->dealer), data, size, ZMQ_DONTWAIT);
    free (data);
    return rc < 0 ? 0 : request->request_id;
}

//  The next response, waiting up to timeout_ms. NULL on timeout, on an
//  interrupt, or when the frame is not a Response (*garbage set).
static Shoal__V1__Response *
s_conn_recv (s_conn_t *self, int timeout_ms, bool *garbage)
{
    if (garbage)
        *garbage = false;
    zmq_pollitem_t item = {zsock_resolve (self->dealer), 0, ZMQ_POLLIN, 0};
    int64_t deadline = s_now_ms () + timeout_ms;
    while (!s_interrupted) {
        int64_t left = deadline - s_now_ms ();
        if (left < 0)
            left = 0;
        int rc = zmq_poll (&item, 1, (long) (left > 100 ? 100 : left));
        if (rc > 0)
            break;
        if (left == 0)
            return NULL;
    }
    if (s_interrupted)
        return NULL;
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    if (zmq_msg_recv (&msg, zsock_resolve (self->dealer), ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&msg);
        return NULL;
    }
    Shoal__V1__Response *response = shoal__v1__response__unpack (
        NULL, zmq_msg_size (&msg), (const uint8_t *) zmq_msg_data (&msg));
    zmq_msg_close (&msg);
    if (!response && garbage)
        *garbage = true;
    return response;
}

//  Sends a request and waits for its response (others are dropped).
static Shoal__V1__Response *
s_conn_call (s_conn_t *self, Shoal__V1__Request *request, int timeout_ms, bool *garbage)
{
    uint64_t id = s_conn_send (self, request);
    if (id == 0)
        return NULL;
    int64_t deadline = s_now_ms () + timeout_ms;
    while (true) {
        int64_t left = deadline - s_now_ms ();
        if (left <= 0)
            return NULL;
        Shoal__V1__Response *response = s_conn_recv (self, (int) left, garbage);
        if (!response || response->request_id == id)
            return response;
        shoal__v1__response__free_unpacked (response, NULL);
    }
}

static void
s_unreachable (s_cli_t *cli)
{
    fprintf (stderr, "shoal: cannot reach node at %s (%s): no answer within %d ms.\n",
             cli->endpoint, cli->found, cli->timeout_ms);
    if (strncmp (cli->found, "read from", 9) == 0)
        fprintf (stderr,
                 "shoal: is shoald running? The endpoint file may be left from a node "
                 "that crashed: start it again with `shoald --data %s`, or name a "
                 "running node with --node tcp://HOST:PORT\n",
                 cli->data_dir);
    else
        fprintf (stderr, "shoal: is shoald running there? Its first line on stdout shows its "
                         "`router ENDPOINT`; start one with `shoald --data DIR` and use "
                         "`shoal --data DIR`, or give --timeout MS for a slow link\n");
    if (!s_client_cert)
        fprintf (stderr, "shoal: a node started with --secure answers only clients with an "
                         "allowed key: give --cert FILE\n");
    else
        fprintf (stderr, "shoal: secure mode: the node answers only if it allows this "
                         "certificate (`shoal keys allow DIR CERT` on its keys directory) and "
                         "the node's key is right (--server-key, ENDPOINT#KEY, or "
                         "DIR/" S_ENDPOINT_FILE " of a secure shoald)\n");
}

//  The name of a wire error code.
static const char *
s_wire_error_name (uint32_t code)
{
    switch (code) {
        case SHOAL_WIRE_BAD_REQUEST: return "bad request";
        case SHOAL_WIRE_UNKNOWN: return "unknown stream or origin";
        case SHOAL_WIRE_UNAVAILABLE: return "range not available";
        case SHOAL_WIRE_TOO_LARGE: return "too large";
        case SHOAL_WIRE_NOT_ALLOWED: return "not allowed";
        case SHOAL_WIRE_STORAGE: return "storage failure";
        case SHOAL_WIRE_BUSY: return "busy";
        default: return "error";
    }
}

//  What to do about a wire error.
static const char *
s_wire_error_hint (uint32_t code)
{
    switch (code) {
        case SHOAL_WIRE_BAD_REQUEST:
            return "check the stream name ([a-z0-9][a-z0-9._-]{0,63}), the event type "
                   "([A-Za-z0-9_][A-Za-z0-9._:-]{0,127}) and the other values given";
        case SHOAL_WIRE_UNKNOWN: return "`shoal status` lists the logs this node holds";
        case SHOAL_WIRE_UNAVAILABLE:
            return "`shoal status` shows the first and head seq of each log";
        case SHOAL_WIRE_TOO_LARGE:
            return "make the payload smaller, or start the node with a larger --max-event-size";
        case SHOAL_WIRE_NOT_ALLOWED: return "this client is not allowed by the node";
        case SHOAL_WIRE_STORAGE:
            return "see the shoald log; stop the node and run `shoal log verify DIR` on its data "
                   "directory";
        case SHOAL_WIRE_BUSY: return "the node is overloaded; retry in a moment";
        default: return "see the shoald log";
    }
}

static void
s_report_wire_error (s_cli_t *cli, const char *what, const Shoal__V1__Error *error)
{
    fprintf (stderr, "shoal: node at %s refused %s: %s (error %u): %s\nshoal: %s\n", cli->endpoint,
             what, s_wire_error_name (error->code), error->code,
             error->message && *error->message ? error->message : "(no message)",
             s_wire_error_hint (error->code));
}

//  Finds the node's endpoint (--node, SHOAL_NODE, or the data directory's
//  endpoint file). S_OK, or an exit status after reporting.
static int
s_resolve (s_cli_t *cli)
{
    const char *data = cli->data ? cli->data : getenv ("SHOAL_DATA");
    cli->data_dir = data && *data ? strdup (data) : shoal_store_default_dir ();
    const char *node = cli->node;
    if (!node && !cli->data) {
        const char *env = getenv ("SHOAL_NODE");
        if (env && *env) {
            cli->endpoint = strdup (env);
            cli->found = strdup ("from SHOAL_NODE");
            return S_OK;
        }
    }
    if (node) {
        cli->endpoint = strdup (node);
        cli->found = strdup ("given with --node");
        return S_OK;
    }
    char *path = zsys_sprintf ("%s/%s", cli->data_dir, S_ENDPOINT_FILE);
    FILE *file = fopen (path, "r");
    if (!file) {
        fprintf (stderr,
                 "shoal: no local node found: cannot read %s (%s).\n"
                 "shoal: is shoald running with this data directory? Start it with `shoald "
                 "--data %s`, choose the directory with --data DIR, or name a node with --node "
                 "tcp://HOST:PORT\n",
                 path, strerror (errno), cli->data_dir);
        free (path);
        return S_ERROR;
    }
    char line[512] = "";
    if (!fgets (line, sizeof line, file))
        line[0] = 0;
    fclose (file);
    line[strcspn (line, " \t\r\n")] = 0;
    if (!*line) {
        fprintf (stderr,
                 "shoal: %s is empty: restart shoald with `shoald --data %s`, or name the "
                 "node with --node tcp://HOST:PORT\n",
                 path, cli->data_dir);
        free (path);
        return S_ERROR;
    }
    cli->endpoint = strdup (line);
    cli->found = zsys_sprintf ("read from %s", path);
    free (path);
    return S_OK;
}

//  Connects and pings the node. The connection, or NULL after reporting
//  (*status_p gets the exit status).
static s_conn_t *
s_connect (s_cli_t *cli, int *status_p)
{
    s_conn_t *conn = s_conn_new (cli->endpoint);
    if (!conn) {
        fprintf (stderr, "shoal: \"%s\" (%s) is not an endpoint: use tcp://HOST:PORT\n",
                 cli->endpoint, cli->found);
        *status_p = S_USAGE;
        return NULL;
    }
    Shoal__V1__Ping ping = SHOAL__V1__PING__INIT;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.body_case = SHOAL__V1__REQUEST__BODY_PING;
    request.ping = &ping;
    bool garbage;
    Shoal__V1__Response *response = s_conn_call (conn, &request, cli->timeout_ms, &garbage);
    if (!response) {
        if (s_interrupted)
            *status_p = S_ERROR;
        else if (garbage) {
            fprintf (stderr,
                     "shoal: %s (%s) answered with something that is not a shoal "
                     "Response: is it a shoald ROUTER endpoint? (the shoald line says "
                     "`router ENDPOINT`)\n",
                     cli->endpoint, cli->found);
            *status_p = S_ERROR;
        }
        else if (s_secure_refused (conn->monitor, cli)) {
            *status_p = S_ERROR;
        }
        else {
            s_unreachable (cli);
            *status_p = S_ERROR;
        }
        s_conn_destroy (&conn);
        return NULL;
    }
    shoal__v1__response__free_unpacked (response, NULL);
    return conn;
}

//  Asks for the node's Status. The reply (caller frees the Response), or
//  NULL after reporting.
static Shoal__V1__Response *
s_status_call (s_cli_t *cli, s_conn_t *conn)
{
    Shoal__V1__StatusRequest body = SHOAL__V1__STATUS_REQUEST__INIT;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.body_case = SHOAL__V1__REQUEST__BODY_STATUS;
    request.status = &body;
    Shoal__V1__Response *response = s_conn_call (conn, &request, cli->timeout_ms, NULL);
    if (!response) {
        if (!s_interrupted)
            s_unreachable (cli);
        return NULL;
    }
    if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR) {
        s_report_wire_error (cli, "the status request", response->error);
        shoal__v1__response__free_unpacked (response, NULL);
        return NULL;
    }
    if (response->body_case != SHOAL__V1__RESPONSE__BODY_STATUS) {
        fprintf (stderr,
                 "shoal: node at %s answered Status with something else; is it a "
                 "shoal node of this version?\n",
                 cli->endpoint);
        shoal__v1__response__free_unpacked (response, NULL);
        return NULL;
    }
    return response;
}

static void
s_hex (const ProtobufCBinaryData *id, char *hex)
{
    if (id->len == SHOAL_ID_SIZE)
        shoal_id_to_hex (id->data, hex);
    else {
        size_t n = 0;
        for (size_t i = 0; i < id->len && i < SHOAL_ID_SIZE; i++)
            n += (size_t) sprintf (hex + n, "%02x", id->data[i]);
        hex[n] = 0;
    }
}

//  --------------------------------------------------------------------------
//  Printing events

//  Names known for node ids, for human output.
typedef struct {
    uint8_t id[SHOAL_ID_SIZE]; //  node id
    char name[64];             //  its name
} s_name_t;

typedef struct {
    s_name_t *names; //  known names
    size_t count;    //  entries
    size_t printed;  //  events printed so far
    bool failed;     //  stdout cannot be written
} s_printer_t;

static void
s_printer_learn (s_printer_t *self, const ProtobufCBinaryData *id, const char *name)
{
    if (id->len != SHOAL_ID_SIZE || !name || !*name)
        return;
    for (size_t i = 0; i < self->count; i++)
        if (memcmp (self->names[i].id, id->data, SHOAL_ID_SIZE) == 0) {
            snprintf (self->names[i].name, sizeof self->names[i].name, "%s", name);
            return;
        }
    self->names = (s_name_t *) realloc (self->names, (self->count + 1) * sizeof (s_name_t));
    memcpy (self->names[self->count].id, id->data, SHOAL_ID_SIZE);
    snprintf (self->names[self->count].name, sizeof self->names[self->count].name, "%s", name);
    self->count++;
}

static void
s_printer_learn_status (s_printer_t *self, const Shoal__V1__StatusReply *status)
{
    s_printer_learn (self, &status->node, status->name);
    for (size_t i = 0; i < status->n_peers; i++)
        s_printer_learn (self, &status->peers[i]->node, status->peers[i]->name);
}

//  The label of an origin for people: its name when known, else the first
//  8 hex digits of its id.
static void
s_printer_label (s_printer_t *self, const ProtobufCBinaryData *origin, char *label, size_t size)
{
    if (origin->len == SHOAL_ID_SIZE)
        for (size_t i = 0; i < self->count; i++)
            if (memcmp (self->names[i].id, origin->data, SHOAL_ID_SIZE) == 0) {
                snprintf (label, size, "%s", self->names[i].name);
                return;
            }
    char hex[2 * SHOAL_ID_SIZE + 1];
    s_hex (origin, hex);
    snprintf (label, size, "%.8s", hex);
}

//  A payload for people: text as it is (escaped, cut after 300 bytes),
//  anything else as its size.
static void
s_print_payload_human (FILE *out, const uint8_t *data, size_t size)
{
    bool text = true;
    for (size_t i = 0; i < size && text;) {
        size_t length = shoal_utf8_sequence (data + i, size - i);
        if (length == 0
            || (length == 1 && data[i] < 0x20 && data[i] != '\n' && data[i] != '\t'
                && data[i] != '\r'))
            text = false;
        i += length ? length : 1;
    }
    if (!text) {
        fprintf (out, "<%zu bytes>", size);
        return;
    }
    size_t shown = size > 300 ? 300 : size;
    while (shown < size && shown > 0 && (data[shown] & 0xc0) == 0x80)
        shown--;
    for (size_t i = 0; i < shown; i++) {
        if (data[i] == '\n')
            fputs ("\\n", out);
        else if (data[i] == '\r')
            fputs ("\\r", out);
        else if (data[i] == '\t')
            fputs ("\\t", out);
        else
            putc (data[i], out);
    }
    if (shown < size)
        fprintf (out, "... (%zu bytes)", size);
}

static void
s_print_event (s_printer_t *self, bool json, const Shoal__V1__Event *event)
{
    FILE *out = stdout;
    char origin[2 * SHOAL_ID_SIZE + 1], id[2 * SHOAL_ID_SIZE + 1];
    s_hex (&event->origin, origin);
    s_hex (&event->id, id);
    if (json) {
        fputs ("{\"origin\":", out);
        shoal_json_put_cstring (out, origin);
        fputs (",\"stream\":", out);
        shoal_json_put_cstring (out, event->stream);
        fprintf (out, ",\"seq\":%" PRIu64 ",\"type\":", event->seq);
        shoal_json_put_cstring (out, event->type);
        fputs (",\"key\":", out);
        shoal_json_put_cstring (out, event->key);
        fprintf (out, ",\"time_ns\":%" PRId64 ",\"id\":", event->time_ns);
        shoal_json_put_cstring (out, id);
        fputs (",\"correlation_id\":", out);
        shoal_json_put_cstring (out, event->correlation_id);
        fputs (",\"causation_id\":", out);
        shoal_json_put_cstring (out, event->causation_id);
        fprintf (out, ",\"schema_version\":%" PRIu32 ",\"content_type\":", event->schema_version);
        shoal_json_put_cstring (out, event->content_type);
        bool is_json = event->payload.len > 0
                       && shoal_json_valid (event->payload.data, event->payload.len, NULL, NULL);
        fprintf (out, ",\"payload_encoding\":\"%s\",\"payload\":", is_json ? "json" : "base64");
        if (is_json)
            shoal_json_put_compact (out, event->payload.data, event->payload.len);
        else
            shoal_json_put_base64 (out, event->payload.data, event->payload.len);
        fputs (",\"headers\":{", out);
        for (size_t i = 0; i < event->n_headers; i++) {
            if (i)
                putc (',', out);
            shoal_json_put_cstring (out, event->headers[i]->key);
            putc (':', out);
            shoal_json_put_cstring (out, event->headers[i]->value);
        }
        fputs ("}}\n", out);
    }
    else {
        char when[64], label[80];
        s_format_time (event->time_ns, when, sizeof when);
        s_printer_label (self, &event->origin, label, sizeof label);
        fprintf (out, "%s %s/%s/%" PRIu64 " %s", when, label, event->stream, event->seq,
                 event->type);
        if (event->key && *event->key)
            fprintf (out, " key=%s", event->key);
        if (event->payload.len) {
            putc (' ', out);
            s_print_payload_human (out, event->payload.data, event->payload.len);
        }
        putc ('\n', out);
    }
    self->printed++;
    if (ferror (out))
        self->failed = true;
}

//  --------------------------------------------------------------------------
//  pub

typedef struct {
    const char *stream;         //  STREAM
    const char *type;           //  TYPE
    const char *key;            //  --key
    const char *content_type;   //  --content-type
    const char *correlation_id; //  --correlation-id
    const char *causation_id;   //  --causation-id
    uint32_t schema_version;    //  --schema-version
    uint8_t id[SHOAL_ID_SIZE];  //  --id
    bool has_id;                //  --id given
    zlistx_t *headers;          //  "NAME=VALUE" strings (borrowed)
    bool wait;                  //  --wait
} s_pub_t;

//  Sends one PublishRequest. The request id, or 0 when the socket is full.
static uint64_t
s_pub_send (s_conn_t *conn, s_pub_t *pub, const uint8_t *payload, size_t size,
            const char *content_type)
{
    Shoal__V1__Event event = SHOAL__V1__EVENT__INIT;
    event.stream = (char *) pub->stream;
    event.type = (char *) pub->type;
    if (pub->key)
        event.key = (char *) pub->key;
    if (pub->correlation_id)
        event.correlation_id = (char *) pub->correlation_id;
    if (pub->causation_id)
        event.causation_id = (char *) pub->causation_id;
    event.schema_version = pub->schema_version;
    event.content_type = (char *) (pub->content_type ? pub->content_type
                                   : content_type    ? content_type
                                                     : "");
    event.payload.data = (uint8_t *) payload;
    event.payload.len = size;
    if (pub->has_id) {
        event.id.data = pub->id;
        event.id.len = SHOAL_ID_SIZE;
    }
    size_t count = zlistx_size (pub->headers);
    Shoal__V1__Event__HeadersEntry *entries = (Shoal__V1__Event__HeadersEntry *) zmalloc (
        (count + 1) * sizeof (Shoal__V1__Event__HeadersEntry));
    Shoal__V1__Event__HeadersEntry **pointers =
        (Shoal__V1__Event__HeadersEntry **) zmalloc ((count + 1) * sizeof (void *));
    char **copies = (char **) zmalloc ((count + 1) * sizeof (char *));
    size_t n = 0;
    for (const char *header = (const char *) zlistx_first (pub->headers); header;
         header = (const char *) zlistx_next (pub->headers), n++) {
        Shoal__V1__Event__HeadersEntry init = SHOAL__V1__EVENT__HEADERS_ENTRY__INIT;
        entries[n] = init;
        copies[n] = strdup (header);
        char *equals = strchr (copies[n], '=');
        *equals = 0;
        entries[n].key = copies[n];
        entries[n].value = equals + 1;
        pointers[n] = &entries[n];
    }
    event.n_headers = count;
    event.headers = pointers;
    Shoal__V1__PublishRequest body = SHOAL__V1__PUBLISH_REQUEST__INIT;
    body.event = &event;
    body.wait_durable = pub->wait;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.body_case = SHOAL__V1__REQUEST__BODY_PUBLISH;
    request.publish = &body;
    uint64_t id = s_conn_send (conn, &request);
    for (size_t i = 0; i < count; i++)
        free (copies[i]);
    free (copies);
    free (entries);
    free (pointers);
    return id;
}

//  Prints an ack or reports an error reply. 0, or -1 for an error reply.
static int
s_pub_answer (s_cli_t *cli, Shoal__V1__Response *response, uint64_t first_id)
{
    if (response->body_case == SHOAL__V1__RESPONSE__BODY_PUBLISH_ACK) {
        const Shoal__V1__PublishAck *ack = response->publish_ack;
        char origin[2 * SHOAL_ID_SIZE + 1];
        s_hex (&ack->origin, origin);
        if (cli->json) {
            printf ("{\"origin\":\"%s\",\"stream\":", origin);
            shoal_json_put_cstring (stdout, ack->stream);
            printf (",\"seq\":%" PRIu64 ",\"duplicate\":%s}\n", ack->seq,
                    ack->duplicate ? "true" : "false");
        }
        else
            printf ("%s/%s/%" PRIu64 "%s\n", origin, ack->stream, ack->seq,
                    ack->duplicate ? " (duplicate: already recorded with this id)" : "");
        fflush (stdout);
        return 0;
    }
    char what[64];
    snprintf (what, sizeof what, "event %" PRIu64, response->request_id - first_id + 1);
    if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR)
        s_report_wire_error (cli, what, response->error);
    else
        fprintf (stderr, "shoal: node at %s answered %s with something other than an ack\n",
                 cli->endpoint, what);
    return -1;
}

//  Reads stdin line by line without stdio buffering, so that poll on fd 0
//  tells the truth.
typedef struct {
    char *buffer; //  bytes read, not yet returned
    size_t size;  //  bytes in buffer
    size_t alloc; //  allocated
    bool eof;     //  end of input seen
} s_lines_t;

//  The next whole line (without its newline) into *line_p (borrowed until
//  the next call): 1, 0 when none is complete yet, -1 at the end.
static int
s_lines_next (s_lines_t *self, char **line_p, size_t *size_p, bool may_read)
{
    static size_t consumed = 0;
    if (consumed) {
        memmove (self->buffer, self->buffer + consumed, self->size - consumed);
        self->size -= consumed;
        consumed = 0;
    }
    while (true) {
        char *newline = (char *) memchr (self->buffer, '\n', self->size);
        if (newline) {
            *newline = 0;
            *line_p = self->buffer;
            *size_p = (size_t) (newline - self->buffer);
            consumed = *size_p + 1;
            return 1;
        }
        if (self->eof) {
            if (self->size == 0)
                return -1;
            //  A last line without a newline.
            if (self->size == self->alloc)
                self->buffer = (char *) realloc (self->buffer, ++self->alloc);
            self->buffer[self->size] = 0;
            *line_p = self->buffer;
            *size_p = self->size;
            consumed = self->size;
            return 1;
        }
        if (!may_read)
            return 0;
        struct pollfd fd = {STDIN_FILENO, POLLIN, 0};
        if (poll (&fd, 1, 0) <= 0)
            return 0;
        if (self->alloc - self->size < 65536) {
            self->alloc = self->alloc * 2 + 65536;
            self->buffer = (char *) realloc (self->buffer, self->alloc);
        }
        ssize_t got = read (STDIN_FILENO, self->buffer + self->size, self->alloc - self->size);
        if (got < 0 && errno == EINTR)
            return 0;
        if (got <= 0)
            self->eof = true;
        else
            self->size += (size_t) got;
        if (self->size > S_LINE_MAX && !memchr (self->buffer, '\n', self->size)) {
            fprintf (stderr,
                     "shoal: a line of stdin is longer than %d bytes; use --data @FILE "
                     "for large payloads\n",
                     S_LINE_MAX);
            return -2;
        }
    }
}

static int
s_cmd_pub (s_cli_t *cli, int argc, char **argv)
{
    s_pub_t pub = {0};
    pub.headers = zlistx_new ();
    const char *json_payload = NULL, *data_arg = NULL, *value;
    const char *positional[2] = {NULL, NULL};
    size_t positionals = 0;
    int status = S_USAGE;
    uint8_t *payload = NULL;
    size_t payload_size = 0;
    s_conn_t *conn = NULL;
    for (int i = 0; i < argc; i++) {
        int m;
        if ((m = s_option (argc, argv, &i, "--key", &pub.key)))
            ;
        else if ((m = s_option (argc, argv, &i, "--json-payload", &json_payload)))
            ;
        else if ((m = s_option (argc, argv, &i, "--data", &data_arg)))
            ;
        else if ((m = s_option (argc, argv, &i, "--content-type", &pub.content_type)))
            ;
        else if ((m = s_option (argc, argv, &i, "--correlation-id", &pub.correlation_id)))
            ;
        else if ((m = s_option (argc, argv, &i, "--causation-id", &pub.causation_id)))
            ;
        else if ((m = s_option (argc, argv, &i, "--schema-version", &value)) == 1) {
            uint64_t v;
            if (s_parse_u64 (value, &v) || v > UINT32_MAX) {
                s_usage_error ("--schema-version needs a number from 0 to 4294967295");
                goto done;
            }
            pub.schema_version = (uint32_t) v;
        }
        else if (m == 0 && (m = s_option (argc, argv, &i, "--id", &value)) == 1) {
            if (shoal_id_from_hex (value, pub.id)) {
                s_usage_error ("--id needs 32 hex digits (a 16-byte id)");
                goto done;
            }
            pub.has_id = true;
        }
        else if (m == 0 && (m = s_option (argc, argv, &i, "--header", &value)) == 1) {
            const char *equals = strchr (value, '=');
            if (!equals || equals == value) {
                s_usage_error ("--header needs NAME=VALUE, got \"%s\"", value);
                goto done;
            }
            zlistx_add_end (pub.headers, (void *) value);
        }
        else if (m == 0 && streq (argv[i], "--wait"))
            pub.wait = true;
        else if (m == 0 && streq (argv[i], "--json"))
            cli->json = true;
        else if (m == 0 && argv[i][0] == '-' && argv[i][1]) {
            s_usage_error ("pub: unknown option %s", argv[i]);
            goto done;
        }
        else if (m == 0) {
            if (positionals == 2) {
                s_usage_error ("pub takes STREAM and TYPE; unexpected \"%s\"", argv[i]);
                goto done;
            }
            positional[positionals++] = argv[i];
        }
        if (m < 0)
            goto done;
    }
    if (positionals != 2) {
        s_usage_error ("usage: shoal pub STREAM TYPE [--key K] [--json-payload TEXT | --data "
                       "@FILE] [--wait]");
        goto done;
    }
    pub.stream = positional[0];
    pub.type = positional[1];
    if (json_payload && data_arg) {
        s_usage_error ("give --json-payload or --data, not both");
        goto done;
    }
    const char *content_type = NULL;
    bool one = json_payload || data_arg;
    if (json_payload) {
        size_t at;
        const char *why;
        if (!shoal_json_valid ((const uint8_t *) json_payload, strlen (json_payload), &at, &why)) {
            s_usage_error ("--json-payload is not valid JSON: %s at byte %zu; quote it for the "
                           "shell, e.g. --json-payload '{\"total\":12.5}', or send text with "
                           "--data TEXT",
                           why, at);
            goto done;
        }
        payload_size = strlen (json_payload);
        payload = (uint8_t *) malloc (payload_size + 1);
        memcpy (payload, json_payload, payload_size);
        content_type = "application/json";
    }
    else if (data_arg && data_arg[0] == '@') {
        const char *path = data_arg + 1;
        FILE *file = streq (path, "-") ? stdin : fopen (path, "rb");
        if (!file) {
            fprintf (stderr,
                     "shoal: cannot read %s: %s (--data @FILE takes the payload from a "
                     "file)\n",
                     path, strerror (errno));
            status = S_ERROR;
            goto done;
        }
        size_t alloc = 65536;
        payload = (uint8_t *) malloc (alloc);
        size_t got;
        while ((got = fread (payload + payload_size, 1, alloc - payload_size, file)) > 0) {
            payload_size += got;
            if (payload_size == alloc)
                payload = (uint8_t *) realloc (payload, alloc *= 2);
        }
        bool failed = ferror (file);
        if (file != stdin)
            fclose (file);
        if (failed) {
            fprintf (stderr, "shoal: cannot read %s\n", path);
            status = S_ERROR;
            goto done;
        }
        content_type = shoal_json_valid (payload, payload_size, NULL, NULL)
                           ? "application/json"
                           : "application/octet-stream";
    }
    else if (data_arg) {
        payload_size = strlen (data_arg);
        payload = (uint8_t *) malloc (payload_size + 1);
        memcpy (payload, data_arg, payload_size);
        content_type = "text/plain";
    }

    status = s_resolve (cli);
    if (status)
        goto done;
    conn = s_connect (cli, &status);
    if (!conn)
        goto done;
    uint64_t first_id = conn->next_id + 1;
    if (one) {
        uint64_t id = s_pub_send (conn, &pub, payload, payload_size, content_type);
        Shoal__V1__Response *response = NULL;
        int64_t deadline = s_now_ms () + cli->timeout_ms;
        while (id && !response && s_now_ms () < deadline) {
            response = s_conn_recv (conn, (int) (deadline - s_now_ms ()), NULL);
            if (response && response->request_id != id) {
                shoal__v1__response__free_unpacked (response, NULL);
                response = NULL;
            }
            if (s_interrupted)
                break;
        }
        if (!response) {
            if (!s_interrupted)
                fprintf (stderr,
                         "shoal: node at %s did not acknowledge the event within %d ms: "
                         "it may not be recorded; check with `shoal status` or the "
                         "shoald log, and publish again with the same --id to be safe\n",
                         cli->endpoint, cli->timeout_ms);
            status = S_ERROR;
            goto done;
        }
        status = s_pub_answer (cli, response, first_id) ? S_ERROR : S_OK;
        shoal__v1__response__free_unpacked (response, NULL);
        goto done;
    }

    //  One event per line of stdin, a window of requests in flight; acks
    //  come in order and are printed as they arrive.
    if (isatty (STDIN_FILENO))
        fprintf (stderr, "shoal: publishing one %s event to %s per line; end with Ctrl-D\n",
                 pub.type, pub.stream);
    size_t window = pub.wait ? 1 : S_PUB_WINDOW;
    size_t in_flight = 0;
    uint64_t sent = 0, answered = 0, refused = 0;
    s_lines_t lines = {0};
    int64_t waiting_since = 0;
    bool input_done = false;
    status = S_OK;
    while (!s_interrupted) {
        //  Send what stdin has, while the window allows.
        while (!input_done && in_flight < window) {
            char *line;
            size_t size;
            int rc = s_lines_next (&lines, &line, &size, true);
            if (rc == -2) {
                status = S_ERROR;
                input_done = true;
                break;
            }
            if (rc < 0)
                input_done = true;
            if (rc <= 0)
                break;
            if (size && line[size - 1] == '\r')
                line[--size] = 0;
            if (size == 0)
                continue; //  blank lines are not events
            bool is_json = shoal_json_valid ((const uint8_t *) line, size, NULL, NULL);
            if (!s_pub_send (conn, &pub, (const uint8_t *) line, size,
                             is_json ? "application/json" : "text/plain")) {
                s_unreachable (cli);
                status = S_ERROR;
                input_done = true;
                break;
            }
            if (in_flight == 0)
                waiting_since = s_now_ms ();
            in_flight++;
            sent++;
        }
        if (input_done && in_flight == 0)
            break;
        zmq_pollitem_t items[2] = {{zsock_resolve (conn->dealer), 0, ZMQ_POLLIN, 0},
                                   {NULL, STDIN_FILENO, ZMQ_POLLIN, 0}};
        int count = (!input_done && in_flight < window) ? 2 : 1;
        if (zmq_poll (items, count, 100) < 0 && errno != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            Shoal__V1__Response *response;
            while ((response = s_conn_recv (conn, 0, NULL))) {
                if (response->request_id >= first_id && in_flight > 0) {
                    in_flight--;
                    answered++;
                    waiting_since = s_now_ms ();
                    if (s_pub_answer (cli, response, first_id)) {
                        refused++;
                        status = S_ERROR;
                    }
                }
                shoal__v1__response__free_unpacked (response, NULL);
            }
        }
        if (in_flight > 0 && s_now_ms () - waiting_since > cli->timeout_ms) {
            if (answered == 0)
                s_unreachable (cli);
            else
                fprintf (stderr,
                         "shoal: node at %s stopped acknowledging: %" PRIu64
                         " event(s) sent, %" PRIu64 " acknowledged; the rest may not "
                         "be recorded (see the shoald log)\n",
                         cli->endpoint, sent, answered);
            status = S_ERROR;
            break;
        }
    }
    if (s_interrupted && in_flight) {
        fprintf (stderr, "shoal: interrupted with %zu event(s) not yet acknowledged\n", in_flight);
        status = S_ERROR;
    }
    if (refused)
        fprintf (stderr, "shoal: %" PRIu64 " of %" PRIu64 " event(s) refused\n", refused, sent);
    free (lines.buffer);

done:
    s_conn_destroy (&conn);
    free (payload);
    zlistx_destroy (&pub.headers);
    return status;
}

//  --------------------------------------------------------------------------
//  sub

typedef struct {
    s_conn_t *conn;            //  DEALER to the node
    bool local;                //  the node given by --node / --data
    bool has_id;               //  its id is known (first Status answered)
    uint8_t id[SHOAL_ID_SIZE]; //  its node id
    bool alive;                //  answered its last Status in time
    bool answered;             //  answered a Status at least once
    bool warned;               //  a loss of contact was reported
    uint64_t status_id;        //  pending Status request, 0 when none
    int64_t status_sent;       //  when it was sent
    int64_t next_status;       //  when to ask next
} s_source_t;

typedef struct {
    uint8_t origin[SHOAL_ID_SIZE]; //  whose log
    bool holds[S_MAX_SOURCES];     //  which sources hold a log of (origin, stream)
    int source;                    //  index of the source it is replayed from, -1 none
    uint64_t next_seq;             //  next seq wanted; 0 = by from_time (0 = first held)
    int64_t from_time;             //  when next_seq is 0
    uint64_t replay_id;            //  request id of the replay running, 0 when idle
    int64_t active_at;             //  last sign of life of that replay
    int64_t next_poll;             //  when idle: when to ask again
    uint64_t acked;                //  --durable: last seq acknowledged to the node
} s_cursor_t;

//  A durable consumer's cursor as the node kept it.
typedef struct {
    uint8_t origin[SHOAL_ID_SIZE]; //  origin
    uint64_t seq;                  //  last seq acknowledged
} s_saved_t;

typedef struct {
    s_cli_t *cli;                      //  global options
    const char *stream;                //  STREAM
    char **types;                      //  --type filters
    size_t type_count;                 //  how many
    shoal_from_kind_t from;            //  start position kind
    uint64_t from_seq;                 //  --from SEQ
    int64_t from_time;                 //  --from TIME, or the start time for "now"
    uint64_t count;                    //  --count, 0 = for ever
    bool local_only;                   //  --local
    int poll_ms;                       //  --poll-ms
    s_source_t sources[S_MAX_SOURCES]; //  nodes asked
    size_t source_count;               //  entries
    zlistx_t *cursors;                 //  s_cursor_t, one per origin
    s_printer_t printer;               //  output
    bool finished;                     //  --count reached, or a fatal error
    int status;                        //  exit status once finished
    const char *durable;               //  --durable NAME, or NULL
    s_saved_t *saved;                  //  its cursors for this stream at the start
    size_t saved_count;                //  entries
    uint64_t ack_id;                   //  acknowledgement in flight, 0 when none
    int64_t ack_sent;                  //  when it was sent
} s_sub_t;

static int
s_sub_add_source (s_sub_t *self, const char *endpoint, bool local)
{
    for (size_t i = 0; i < self->source_count; i++)
        if (streq (self->sources[i].conn->endpoint, endpoint))
            return (int) i;
    if (self->source_count == S_MAX_SOURCES)
        return -1;
    s_conn_t *conn = s_conn_new (endpoint);
    if (!conn)
        return -1;
    s_source_t *source = &self->sources[self->source_count];
    memset (source, 0, sizeof *source);
    source->conn = conn;
    source->local = local;
    source->alive = true;
    return (int) self->source_count++;
}

static s_cursor_t *
s_sub_cursor (s_sub_t *self, const uint8_t *origin)
{
    for (s_cursor_t *c = (s_cursor_t *) zlistx_first (self->cursors); c;
         c = (s_cursor_t *) zlistx_next (self->cursors))
        if (memcmp (c->origin, origin, SHOAL_ID_SIZE) == 0)
            return c;
    return NULL;
}

//  Takes what a Status tells: the source's identity, its peers (new
//  sources), and which origins it holds a log of the stream for.
static void
s_sub_on_status (s_sub_t *self, int index, const Shoal__V1__StatusReply *status)
{
    s_source_t *source = &self->sources[index];
    bool first = !source->answered;
    source->answered = true;
    if (!source->alive || source->warned) {
        if (source->warned)
            fprintf (stderr, "shoal: node at %s answers again\n", source->conn->endpoint);
        source->warned = false;
    }
    source->alive = true;
    if (status->node.len == SHOAL_ID_SIZE) {
        memcpy (source->id, status->node.data, SHOAL_ID_SIZE);
        source->has_id = true;
    }
    s_printer_learn_status (&self->printer, status);
    if (!self->local_only)
        for (size_t i = 0; i < status->n_peers; i++) {
            const char *endpoint = status->peers[i]->endpoint;
            if (endpoint && strncmp (endpoint, "tcp://", 6) == 0)
                s_sub_add_source (self, endpoint, false);
        }
    for (s_cursor_t *c = (s_cursor_t *) zlistx_first (self->cursors); c;
         c = (s_cursor_t *) zlistx_next (self->cursors))
        c->holds[index] = false;
    for (size_t i = 0; i < status->n_logs; i++) {
        const Shoal__V1__LogHead *head = status->logs[i];
        if (head->origin.len != SHOAL_ID_SIZE || !streq (head->stream, self->stream))
            continue;
        s_cursor_t *cursor = s_sub_cursor (self, head->origin.data);
        if (!cursor) {
            cursor = (s_cursor_t *) zmalloc (sizeof (s_cursor_t));
            memcpy (cursor->origin, head->origin.data, SHOAL_ID_SIZE);
            cursor->source = -1;
            zlistx_add_end (self->cursors, cursor);
            //  A durable consumer goes on after its cursor.
            bool resumed = false;
            for (size_t j = 0; j < self->saved_count && !resumed; j++)
                if (memcmp (self->saved[j].origin, cursor->origin, SHOAL_ID_SIZE) == 0) {
                    cursor->next_seq = self->saved[j].seq + 1;
                    cursor->acked = self->saved[j].seq;
                    resumed = true;
                }
            if (resumed) {
                cursor->holds[index] = true;
                continue;
            }
            switch (self->from) {
                case SHOAL_FROM_BEGINNING: break;
                case SHOAL_FROM_SEQ: cursor->next_seq = self->from_seq; break;
                case SHOAL_FROM_TIME: cursor->from_time = self->from_time; break;
                case SHOAL_FROM_NOW:
                    //  Exact for what the local node held when we started;
                    //  by time for origins found later.
                    if (source->local && first)
                        cursor->next_seq = head->head_seq + 1;
                    else
                        cursor->from_time = self->from_time;
                    break;
            }
        }
        cursor->holds[index] = true;
    }
}

//  The best source for a cursor now: the origin itself, else the local
//  node, else any live holder; the current one while it still serves.
static int
s_sub_choose (s_sub_t *self, s_cursor_t *cursor)
{
    if (cursor->source >= 0 && cursor->holds[cursor->source] && self->sources[cursor->source].alive)
        return cursor->source;
    int best = -1, best_rank = 0;
    for (size_t i = 0; i < self->source_count; i++) {
        s_source_t *source = &self->sources[i];
        if (!cursor->holds[i] || !source->alive)
            continue;
        int rank = source->has_id && memcmp (source->id, cursor->origin, SHOAL_ID_SIZE) == 0 ? 3
                   : source->local                                                           ? 2
                                                                                             : 1;
        if (rank > best_rank) {
            best = (int) i;
            best_rank = rank;
        }
    }
    return best;
}

static void
s_sub_request_replay (s_sub_t *self, s_cursor_t *cursor, int64_t now)
{
    int index = s_sub_choose (self, cursor);
    cursor->source = index;
    cursor->next_poll = now + self->poll_ms;
    if (index < 0)
        return;
    Shoal__V1__ReplayRequest body = SHOAL__V1__REPLAY_REQUEST__INIT;
    body.origin.data = cursor->origin;
    body.origin.len = SHOAL_ID_SIZE;
    body.stream = (char *) self->stream;
    body.from_seq = cursor->next_seq;
    body.from_time_ns = cursor->next_seq ? 0 : cursor->from_time;
    body.credit = S_CREDIT;
    body.n_types = self->type_count;
    body.types = self->types;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.body_case = SHOAL__V1__REQUEST__BODY_REPLAY;
    request.replay = &body;
    cursor->replay_id = s_conn_send (self->sources[index].conn, &request);
    cursor->active_at = now;
}

static void
s_sub_send_credit (s_source_t *source, uint64_t replay_id, uint32_t credit)
{
    Shoal__V1__Credit body = SHOAL__V1__CREDIT__INIT;
    body.replay_id = replay_id;
    body.credit = credit;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.body_case = SHOAL__V1__REQUEST__BODY_CREDIT;
    request.credit = &body;
    s_conn_send (source->conn, &request);
}

static void
s_sub_on_response (s_sub_t *self, int index, Shoal__V1__Response *response, int64_t now)
{
    s_source_t *source = &self->sources[index];
    if (self->ack_id && source->local && response->request_id == self->ack_id) {
        self->ack_id = 0;
        if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR) {
            s_report_wire_error (self->cli, "the acknowledgement", response->error);
            self->finished = true;
            self->status = S_ERROR;
        }
        return;
    }
    if (source->status_id && response->request_id == source->status_id) {
        source->status_id = 0;
        if (response->body_case == SHOAL__V1__RESPONSE__BODY_STATUS)
            s_sub_on_status (self, index, response->status);
        return;
    }
    s_cursor_t *cursor = NULL;
    for (s_cursor_t *c = (s_cursor_t *) zlistx_first (self->cursors); c;
         c = (s_cursor_t *) zlistx_next (self->cursors))
        if (c->replay_id && c->replay_id == response->request_id && c->source == index) {
            cursor = c;
            break;
        }
    if (!cursor)
        return; //  an answer to a request given up on
    cursor->active_at = now;
    if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR) {
        const Shoal__V1__Error *error = response->error;
        cursor->replay_id = 0;
        cursor->next_poll = now + self->poll_ms;
        if (error->code == SHOAL_WIRE_UNKNOWN)
            cursor->holds[index] = false; //  gone from there: ask another
        else if (error->code == SHOAL_WIRE_UNAVAILABLE) {
            if (error->message && strstr (error->message, "trimmed")) {
                char label[80];
                ProtobufCBinaryData origin = {SHOAL_ID_SIZE, cursor->origin};
                s_printer_label (&self->printer, &origin, label, sizeof label);
                fprintf (stderr,
                         "shoal: events of %s/%s from seq %" PRIu64 " were removed by "
                         "retention; going on from the first one held\n",
                         label, self->stream, cursor->next_seq);
                cursor->next_seq = 0;
                cursor->from_time = 0;
            }
            //  else: the start is beyond the head; wait for it.
        }
        else {
            char what[160];
            snprintf (what, sizeof what, "the replay of %s", self->stream);
            s_cli_t cli = *self->cli;
            cli.endpoint = source->conn->endpoint;
            s_report_wire_error (&cli, what, error);
            self->finished = true;
            self->status = S_ERROR;
        }
        return;
    }
    if (response->body_case != SHOAL__V1__RESPONSE__BODY_BATCH)
        return;
    const Shoal__V1__ReplayBatch *batch = response->batch;
    for (size_t i = 0; i < batch->n_events && !self->finished; i++) {
        const Shoal__V1__Event *event = batch->events[i];
        if (cursor->next_seq && event->seq < cursor->next_seq)
            continue; //  seen already
        s_print_event (&self->printer, self->cli->json, event);
        cursor->next_seq = event->seq + 1;
        if (self->printer.failed || (self->count && self->printer.printed >= self->count))
            self->finished = true;
    }
    fflush (stdout);
    if (ferror (stdout))
        self->finished = true;
    //  next_seq also counts events skipped by the type filter; when --count
    //  ended the run inside the batch, the rest was not seen.
    if (!self->finished && batch->next_seq > cursor->next_seq)
        cursor->next_seq = batch->next_seq;
    if (batch->done) {
        cursor->replay_id = 0;
        cursor->next_poll = now + self->poll_ms;
    }
    else if (batch->n_events)
        s_sub_send_credit (source, cursor->replay_id, (uint32_t) batch->n_events);
}

//  --durable: tells the local node how far each origin was printed (one
//  ConsumerRequest "ack" in flight at a time; the node answers once the
//  cursors are on disk). Events are printed before they are acknowledged,
//  so a crash in between prints them again (at least once).
static void
s_sub_send_acks (s_sub_t *self, int64_t now)
{
    if (!self->durable || self->ack_id)
        return;
    size_t count = 0;
    for (s_cursor_t *c = (s_cursor_t *) zlistx_first (self->cursors); c;
         c = (s_cursor_t *) zlistx_next (self->cursors))
        count += c->next_seq > 0 && c->next_seq - 1 > c->acked;
    if (count == 0)
        return;
    Shoal__V1__LogHead *heads = (Shoal__V1__LogHead *) zmalloc (count * sizeof *heads);
    Shoal__V1__LogHead **pointers = (Shoal__V1__LogHead **) zmalloc (count * sizeof (void *));
    size_t n = 0;
    for (s_cursor_t *c = (s_cursor_t *) zlistx_first (self->cursors); c;
         c = (s_cursor_t *) zlistx_next (self->cursors)) {
        if (!(c->next_seq > 0 && c->next_seq - 1 > c->acked))
            continue;
        Shoal__V1__LogHead init = SHOAL__V1__LOG_HEAD__INIT;
        heads[n] = init;
        heads[n].origin.data = c->origin;
        heads[n].origin.len = SHOAL_ID_SIZE;
        heads[n].stream = (char *) self->stream;
        heads[n].head_seq = c->next_seq - 1;
        pointers[n] = &heads[n];
        n++;
    }
    Shoal__V1__ConsumerRequest body = SHOAL__V1__CONSUMER_REQUEST__INIT;
    body.name = (char *) self->durable;
    body.op = "ack";
    body.n_cursors = n;
    body.cursors = pointers;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.body_case = SHOAL__V1__REQUEST__BODY_CONSUMER;
    request.consumer = &body;
    self->ack_id = s_conn_send (self->sources[0].conn, &request);
    self->ack_sent = now;
    if (self->ack_id)
        for (size_t i = 0; i < n; i++)
            for (s_cursor_t *c = (s_cursor_t *) zlistx_first (self->cursors); c;
                 c = (s_cursor_t *) zlistx_next (self->cursors))
                if (heads[i].origin.data == c->origin)
                    c->acked = heads[i].head_seq;
    free (heads);
    free (pointers);
}

//  --durable, at the end: sends what is not acknowledged yet and waits
//  (bounded) for the node to have it on disk. 0, or -1 after reporting.
static int
s_sub_finish_acks (s_sub_t *self)
{
    if (!self->durable)
        return 0;
    //  After a Ctrl-C the acknowledgements still go out; a second one
    //  gives up on them.
    s_interrupted = 0;
    int64_t deadline = s_now_ms () + self->cli->timeout_ms;
    while (s_now_ms () < deadline && !s_interrupted) {
        s_sub_send_acks (self, s_now_ms ());
        if (!self->ack_id)
            return 0;
        Shoal__V1__Response *response = s_conn_recv (self->sources[0].conn, 100, NULL);
        if (response) {
            if (response->request_id == self->ack_id) {
                bool refused = response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR;
                if (refused)
                    s_report_wire_error (self->cli, "the acknowledgement", response->error);
                self->ack_id = 0;
                shoal__v1__response__free_unpacked (response, NULL);
                if (refused)
                    return -1;
                continue;
            }
            shoal__v1__response__free_unpacked (response, NULL);
        }
    }
    fprintf (stderr,
             "shoal: node at %s did not confirm the last acknowledgement of consumer %s: the "
             "next `sub --durable %s` may print some events again\n",
             self->cli->endpoint, self->durable, self->durable);
    return -1;
}

static void
s_sub_tick (s_sub_t *self, int64_t now)
{
    if (self->ack_id && now - self->ack_sent > self->cli->timeout_ms)
        self->ack_id = 0; //  lost with a node that went away: sent again
    s_sub_send_acks (self, now);
    for (size_t i = 0; i < self->source_count; i++) {
        s_source_t *source = &self->sources[i];
        if (source->status_id && now - source->status_sent > self->cli->timeout_ms) {
            source->status_id = 0;
            source->alive = false;
            if (!source->warned && source->answered) {
                fprintf (stderr,
                         "shoal: node at %s stopped answering; following its "
                         "origins elsewhere or when it is back\n",
                         source->conn->endpoint);
                source->warned = true;
            }
        }
        if (!source->status_id && now >= source->next_status) {
            Shoal__V1__StatusRequest body = SHOAL__V1__STATUS_REQUEST__INIT;
            Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
            request.body_case = SHOAL__V1__REQUEST__BODY_STATUS;
            request.status = &body;
            source->status_id = s_conn_send (source->conn, &request);
            source->status_sent = now;
            source->next_status = now + S_STATUS_EVERY_MS;
            if (!source->status_id)
                source->alive = false;
        }
    }
    for (s_cursor_t *c = (s_cursor_t *) zlistx_first (self->cursors); c;
         c = (s_cursor_t *) zlistx_next (self->cursors)) {
        if (c->replay_id && now - c->active_at > self->cli->timeout_ms) {
            //  No news from the replay: give up on it and ask again.
            c->replay_id = 0;
            c->next_poll = now;
        }
        if (!c->replay_id && now >= c->next_poll)
            s_sub_request_replay (self, c, now);
    }
}

//  --durable: the consumer's cursors for the stream, as the node keeps
//  them. 0, or -1 after reporting.
static int
s_sub_load_cursors (s_sub_t *self, s_conn_t *conn)
{
    Shoal__V1__ConsumerRequest body = SHOAL__V1__CONSUMER_REQUEST__INIT;
    body.name = (char *) self->durable;
    body.op = "get";
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.body_case = SHOAL__V1__REQUEST__BODY_CONSUMER;
    request.consumer = &body;
    Shoal__V1__Response *response = s_conn_call (conn, &request, self->cli->timeout_ms, NULL);
    if (!response) {
        if (!s_interrupted)
            s_unreachable (self->cli);
        return -1;
    }
    int rc = 0;
    if (response->body_case == SHOAL__V1__RESPONSE__BODY_CONSUMER) {
        const Shoal__V1__ConsumerReply *reply = response->consumer;
        self->saved = (s_saved_t *) zmalloc ((reply->n_cursors + 1) * sizeof (s_saved_t));
        for (size_t i = 0; i < reply->n_cursors; i++) {
            const Shoal__V1__LogHead *head = reply->cursors[i];
            if (head->origin.len != SHOAL_ID_SIZE || !streq (head->stream, self->stream))
                continue;
            memcpy (self->saved[self->saved_count].origin, head->origin.data, SHOAL_ID_SIZE);
            self->saved[self->saved_count++].seq = head->head_seq;
        }
    }
    else if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR) {
        s_report_wire_error (self->cli, "the durable consumer's cursors", response->error);
        rc = -1;
    }
    else {
        fprintf (stderr,
                 "shoal: node at %s does not know durable consumers (ConsumerRequest); it is "
                 "older than this shoal: upgrade shoald, or run sub without --durable\n",
                 self->cli->endpoint);
        rc = -1;
    }
    shoal__v1__response__free_unpacked (response, NULL);
    return rc;
}

static int
s_cmd_sub (s_cli_t *cli, int argc, char **argv)
{
    s_sub_t sub;
    memset (&sub, 0, sizeof sub);
    sub.cli = cli;
    sub.poll_ms = 200;
    sub.from = SHOAL_FROM_NOW;
    sub.cursors = zlistx_new ();
    zlistx_set_destructor (sub.cursors, (zlistx_destructor_fn *) zstr_free);
    sub.types = (char **) zmalloc ((size_t) (argc + 1) * sizeof (char *));
    int status = S_USAGE;
    const char *value, *from = NULL, *durable = NULL;
    for (int i = 0; i < argc; i++) {
        int m;
        if ((m = s_option (argc, argv, &i, "--type", &value)) == 1) {
            if (!shoal_type_name_valid (value)) {
                s_usage_error ("--type \"%s\" is not an event type name "
                               "([A-Za-z0-9_][A-Za-z0-9._:-]{0,127})",
                               value);
                goto done;
            }
            sub.types[sub.type_count++] = (char *) value;
        }
        else if (m == 0 && (m = s_option (argc, argv, &i, "--from", &from)))
            ;
        else if (m == 0 && (m = s_option (argc, argv, &i, "--durable", &durable)))
            ;
        else if (m == 0 && (m = s_option (argc, argv, &i, "--count", &value)) == 1) {
            if (s_parse_u64 (value, &sub.count) || sub.count == 0) {
                s_usage_error ("--count needs a number of events, 1 or more");
                goto done;
            }
        }
        else if (m == 0 && (m = s_option (argc, argv, &i, "--poll-ms", &value)) == 1) {
            uint64_t v;
            if (s_parse_u64 (value, &v) || v < 10 || v > 60000) {
                s_usage_error ("--poll-ms needs a number from 10 to 60000");
                goto done;
            }
            sub.poll_ms = (int) v;
        }
        else if (m == 0 && streq (argv[i], "--local"))
            sub.local_only = true;
        else if (m == 0 && streq (argv[i], "--json"))
            cli->json = true;
        else if (m == 0 && argv[i][0] == '-' && argv[i][1]) {
            s_usage_error ("sub: unknown option %s", argv[i]);
            goto done;
        }
        else if (m == 0) {
            if (sub.stream) {
                s_usage_error ("sub takes one STREAM; unexpected \"%s\"", argv[i]);
                goto done;
            }
            sub.stream = argv[i];
        }
        if (m < 0)
            goto done;
    }
    if (!sub.stream) {
        s_usage_error ("usage: shoal sub STREAM [--type T] [--from beginning|now|SEQ|TIME] "
                       "[--count N]");
        goto done;
    }
    if (!shoal_stream_name_valid (sub.stream)) {
        s_usage_error ("\"%s\" is not a stream name: stream names match [a-z0-9][a-z0-9._-]{0,63}",
                       sub.stream);
        goto done;
    }
    if (durable && !shoal_consumer_name_valid (durable)) {
        s_usage_error ("--durable \"%s\" is not a consumer name ([A-Za-z0-9_][A-Za-z0-9._-]{0,63})",
                       durable);
        goto done;
    }
    sub.durable = durable;
    sub.from_time = shoal_time_ns ();
    //  A durable consumer starts origins it has no cursor for at the
    //  beginning, unless --from says otherwise.
    if (durable && !from)
        sub.from = SHOAL_FROM_BEGINNING;
    if (from) {
        if (streq (from, "beginning"))
            sub.from = SHOAL_FROM_BEGINNING;
        else if (streq (from, "now"))
            sub.from = SHOAL_FROM_NOW;
        else if (s_parse_u64 (from, &sub.from_seq) == 0) {
            sub.from = SHOAL_FROM_SEQ;
            if (sub.from_seq == 0)
                sub.from = SHOAL_FROM_BEGINNING;
        }
        else if (s_parse_time (from, &sub.from_time) == 0)
            sub.from = SHOAL_FROM_TIME;
        else {
            s_usage_error ("--from \"%s\": use beginning, now, a seq (e.g. 100), a time "
                           "(2024-05-01T12:00:00Z, @UNIX_SECONDS) or an age (-30s, -5m, -2h, -1d)",
                           from);
            goto done;
        }
    }

    status = s_resolve (cli);
    if (status)
        goto done;
    s_conn_t *probe = s_connect (cli, &status);
    if (!probe)
        goto done;
    //  The local node's first Status, synchronously: it fixes "now" for
    //  what it holds, and an error here is reported at once.
    Shoal__V1__Response *first = s_status_call (cli, probe);
    if (first && durable && s_sub_load_cursors (&sub, probe)) {
        shoal__v1__response__free_unpacked (first, NULL);
        first = NULL;
    }
    s_conn_destroy (&probe);
    if (!first) {
        status = S_ERROR;
        goto done;
    }
    int local = s_sub_add_source (&sub, cli->endpoint, true);
    sub.sources[local].next_status = s_now_ms () + S_STATUS_EVERY_MS;
    s_sub_on_status (&sub, local, first->status);
    shoal__v1__response__free_unpacked (first, NULL);
    if (isatty (STDERR_FILENO) && !sub.count)
        fprintf (stderr, "shoal: following %s%s; Ctrl-C to stop\n", sub.stream,
                 sub.local_only ? " on this node" : " across the mesh");

    status = S_OK;
    while (!s_interrupted && !sub.finished) {
        int64_t now = s_now_ms ();
        s_sub_tick (&sub, now);
        zmq_pollitem_t items[S_MAX_SOURCES];
        for (size_t i = 0; i < sub.source_count; i++) {
            items[i].socket = zsock_resolve (sub.sources[i].conn->dealer);
            items[i].fd = 0;
            items[i].events = ZMQ_POLLIN;
            items[i].revents = 0;
        }
        int rc = zmq_poll (items, (int) sub.source_count, 50);
        if (rc < 0 && errno != EINTR)
            break;
        now = s_now_ms ();
        size_t count = sub.source_count; //  a Status may add sources
        for (size_t i = 0; i < count && !sub.finished; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            Shoal__V1__Response *response;
            while (!sub.finished && (response = s_conn_recv (sub.sources[i].conn, 0, NULL))) {
                s_sub_on_response (&sub, (int) i, response, now);
                shoal__v1__response__free_unpacked (response, NULL);
            }
        }
    }
    if (sub.finished && sub.status)
        status = sub.status;
    else if (sub.source_count && s_sub_finish_acks (&sub))
        status = S_ERROR;

done:
    for (size_t i = 0; i < sub.source_count; i++)
        s_conn_destroy (&sub.sources[i].conn);
    zlistx_destroy (&sub.cursors);
    free (sub.saved);
    free (sub.types);
    free (sub.printer.names);
    return status;
}

//  --------------------------------------------------------------------------
//  replay

//  Finds an origin by hex id, by node name (the node or its peers), or by
//  a unique hex prefix of a log's origin. 0, or -1 after reporting.
static int
s_resolve_origin (s_cli_t *cli, const Shoal__V1__StatusReply *status, const char *text,
                  uint8_t origin[SHOAL_ID_SIZE])
{
    if (shoal_id_from_hex (text, origin) == 0)
        return 0;
    if (streq (status->name, text) && status->node.len == SHOAL_ID_SIZE) {
        memcpy (origin, status->node.data, SHOAL_ID_SIZE);
        return 0;
    }
    for (size_t i = 0; i < status->n_peers; i++)
        if (streq (status->peers[i]->name, text) && status->peers[i]->node.len == SHOAL_ID_SIZE) {
            memcpy (origin, status->peers[i]->node.data, SHOAL_ID_SIZE);
            return 0;
        }
    //  A hex prefix of the node, a peer or a log's origin (as printed by sub).
    size_t length = strlen (text);
    size_t candidates = 1 + status->n_peers + status->n_logs;
    int found = 0;
    for (size_t i = 0; length >= 4 && i < candidates; i++) {
        const ProtobufCBinaryData *id = i == 0 ? &status->node
                                        : i <= status->n_peers
                                            ? &status->peers[i - 1]->node
                                            : &status->logs[i - 1 - status->n_peers]->origin;
        if (id->len != SHOAL_ID_SIZE)
            continue;
        char hex[2 * SHOAL_ID_SIZE + 1];
        s_hex (id, hex);
        if (strncasecmp (hex, text, length) == 0) {
            if (found && memcmp (origin, id->data, SHOAL_ID_SIZE) != 0) {
                fprintf (stderr,
                         "shoal: origin \"%s\" is ambiguous: give more hex digits (see "
                         "`shoal status`)\n",
                         text);
                return -1;
            }
            memcpy (origin, id->data, SHOAL_ID_SIZE);
            found = 1;
        }
    }
    if (found)
        return 0;
    fprintf (stderr,
             "shoal: no origin \"%s\" at node %s: give a node id (32 hex digits), a "
             "node name, or an id prefix; `shoal status` lists the origins it holds\n",
             text, cli->endpoint);
    return -1;
}

static void
s_progress (uint64_t done, uint64_t total, bool final)
{
    int width = 40;
    int filled = total ? (int) ((double) done / (double) total * width) : 0;
    if (filled > width)
        filled = width;
    char bar[64];
    memset (bar, '#', (size_t) filled);
    memset (bar + filled, '.', (size_t) (width - filled));
    bar[width] = 0;
    fprintf (stderr, "\r[%s] %3d%% %" PRIu64 "/%" PRIu64 " events", bar,
             total ? (int) (100.0 * (double) done / (double) total) : 100, done, total);
    if (final)
        fputs ("\r\033[K", stderr);
    fflush (stderr);
}

static int
s_cmd_replay (s_cli_t *cli, int argc, char **argv)
{
    const char *origin_text = NULL, *stream = NULL, *value;
    uint64_t from = 0, to = 0;
    char **types = (char **) zmalloc ((size_t) (argc + 1) * sizeof (char *));
    size_t type_count = 0;
    int status = S_USAGE;
    s_conn_t *conn = NULL;
    Shoal__V1__Response *status_reply = NULL;
    s_printer_t printer = {0};
    for (int i = 0; i < argc; i++) {
        int m;
        if ((m = s_option (argc, argv, &i, "--origin", &origin_text)))
            ;
        else if ((m = s_option (argc, argv, &i, "--from", &value)) == 1) {
            if (s_parse_u64 (value, &from)) {
                s_usage_error ("--from needs a seq (a whole number)");
                goto done;
            }
        }
        else if (m == 0 && (m = s_option (argc, argv, &i, "--to", &value)) == 1) {
            if (s_parse_u64 (value, &to)) {
                s_usage_error ("--to needs a seq (a whole number)");
                goto done;
            }
        }
        else if (m == 0 && (m = s_option (argc, argv, &i, "--type", &value)) == 1)
            types[type_count++] = (char *) value;
        else if (m == 0 && streq (argv[i], "--json"))
            cli->json = true;
        else if (m == 0 && argv[i][0] == '-' && argv[i][1]) {
            s_usage_error ("replay: unknown option %s", argv[i]);
            goto done;
        }
        else if (m == 0) {
            if (stream) {
                s_usage_error ("replay takes one STREAM; unexpected \"%s\"", argv[i]);
                goto done;
            }
            stream = argv[i];
        }
        if (m < 0)
            goto done;
    }
    if (!stream || !origin_text) {
        s_usage_error ("usage: shoal replay --origin ID STREAM [--from N] [--to M]");
        goto done;
    }
    status = s_resolve (cli);
    if (status)
        goto done;
    conn = s_connect (cli, &status);
    if (!conn)
        goto done;
    status = S_ERROR;
    status_reply = s_status_call (cli, conn);
    if (!status_reply)
        goto done;
    s_printer_learn_status (&printer, status_reply->status);
    uint8_t origin[SHOAL_ID_SIZE];
    if (s_resolve_origin (cli, status_reply->status, origin_text, origin))
        goto done;
    //  A log this node does not hold is replayed from its origin, when
    //  that is one of the node's peers.
    const Shoal__V1__StatusReply *reply = status_reply->status;
    bool held = false;
    for (size_t i = 0; i < reply->n_logs && !held; i++)
        held = reply->logs[i]->origin.len == SHOAL_ID_SIZE
               && memcmp (reply->logs[i]->origin.data, origin, SHOAL_ID_SIZE) == 0
               && streq (reply->logs[i]->stream, stream);
    for (size_t i = 0; i < reply->n_peers && !held; i++) {
        const Shoal__V1__PeerInfo *peer = reply->peers[i];
        if (peer->node.len != SHOAL_ID_SIZE || memcmp (peer->node.data, origin, SHOAL_ID_SIZE)
            || strncmp (peer->endpoint, "tcp://", 6) != 0)
            continue;
        fprintf (stderr, "shoal: %s holds no log of %s/%s; replaying from its origin at %s\n",
                 reply->name, peer->name, stream, peer->endpoint);
        s_conn_destroy (&conn);
        free (cli->endpoint);
        free (cli->found);
        cli->endpoint = strdup (peer->endpoint);
        cli->found = zsys_sprintf ("a peer of %s", reply->name);
        conn = s_connect (cli, &status);
        if (!conn)
            goto done;
        status = S_ERROR;
        held = true;
    }

    Shoal__V1__ReplayRequest body = SHOAL__V1__REPLAY_REQUEST__INIT;
    body.origin.data = origin;
    body.origin.len = SHOAL_ID_SIZE;
    body.stream = (char *) stream;
    body.from_seq = from;
    body.to_seq = to;
    body.credit = S_CREDIT;
    body.n_types = type_count;
    body.types = types;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.body_case = SHOAL__V1__REQUEST__BODY_REPLAY;
    request.replay = &body;
    uint64_t replay_id = s_conn_send (conn, &request);
    if (!replay_id) {
        s_unreachable (cli);
        goto done;
    }
    bool show_progress = isatty (STDERR_FILENO);
    int64_t started = s_now_ms (), drawn = 0;
    uint64_t first_seq = 0, seen = 0;
    bool progress_on = false;
    while (!s_interrupted) {
        Shoal__V1__Response *response = s_conn_recv (conn, cli->timeout_ms, NULL);
        if (!response) {
            if (!s_interrupted)
                fprintf (stderr,
                         "shoal: node at %s stopped sending the replay (no batch within "
                         "%d ms); is it still running?\n",
                         cli->endpoint, cli->timeout_ms);
            break;
        }
        if (response->request_id != replay_id) {
            shoal__v1__response__free_unpacked (response, NULL);
            continue;
        }
        if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR) {
            if (progress_on)
                s_progress (0, 0, true);
            s_report_wire_error (cli, "the replay", response->error);
            shoal__v1__response__free_unpacked (response, NULL);
            break;
        }
        if (response->body_case != SHOAL__V1__RESPONSE__BODY_BATCH) {
            shoal__v1__response__free_unpacked (response, NULL);
            continue;
        }
        const Shoal__V1__ReplayBatch *batch = response->batch;
        if (first_seq == 0 && batch->n_events)
            first_seq = batch->events[0]->seq;
        if (first_seq == 0)
            first_seq = from ? from : batch->next_seq;
        for (size_t i = 0; i < batch->n_events; i++)
            s_print_event (&printer, cli->json, batch->events[i]);
        seen = batch->next_seq > first_seq ? batch->next_seq - first_seq : seen;
        fflush (stdout);
        if (show_progress) {
            uint64_t last = to && to < batch->head_seq ? to : batch->head_seq;
            uint64_t total = last >= first_seq ? last - first_seq + 1 : 0;
            int64_t now = s_now_ms ();
            if ((now - started > 300 || total > 5000) && now - drawn > 100 && !batch->done) {
                s_progress (seen, total, false);
                progress_on = true;
                drawn = now;
            }
        }
        if (printer.failed) {
            shoal__v1__response__free_unpacked (response, NULL);
            break;
        }
        if (batch->done) {
            if (progress_on)
                s_progress (seen, seen, true);
            status = S_OK;
            shoal__v1__response__free_unpacked (response, NULL);
            break;
        }
        if (batch->n_events)
            s_sub_send_credit (&(s_source_t){.conn = conn}, replay_id, (uint32_t) batch->n_events);
        shoal__v1__response__free_unpacked (response, NULL);
    }
    if (progress_on && status != S_OK)
        fputs ("\n", stderr);

done:
    if (status_reply)
        shoal__v1__response__free_unpacked (status_reply, NULL);
    s_conn_destroy (&conn);
    free (types);
    free (printer.names);
    return status;
}

//  --------------------------------------------------------------------------
//  peers, status

static void
s_json_peer (const Shoal__V1__PeerInfo *peer)
{
    char hex[2 * SHOAL_ID_SIZE + 1];
    s_hex (&peer->node, hex);
    printf ("{\"node\":\"%s\",\"name\":", hex);
    shoal_json_put_cstring (stdout, peer->name);
    printf (",\"endpoint\":");
    shoal_json_put_cstring (stdout, peer->endpoint);
    printf (",\"state\":");
    shoal_json_put_cstring (stdout, peer->state);
    printf ("}");
}

static void
s_table_peers (const Shoal__V1__StatusReply *reply, const char *indent)
{
    int name_width = 4, endpoint_width = 8;
    for (size_t i = 0; i < reply->n_peers; i++) {
        int n = (int) strlen (reply->peers[i]->name);
        int e = (int) strlen (reply->peers[i]->endpoint);
        name_width = n > name_width ? n : name_width;
        endpoint_width = e > endpoint_width ? e : endpoint_width;
    }
    printf ("%s%-*s  %-32s  %-*s  %s\n", indent, name_width, "NAME", "NODE", endpoint_width,
            "ENDPOINT", "STATE");
    for (size_t i = 0; i < reply->n_peers; i++) {
        const Shoal__V1__PeerInfo *peer = reply->peers[i];
        char hex[2 * SHOAL_ID_SIZE + 1];
        s_hex (&peer->node, hex);
        printf ("%s%-*s  %-32s  %-*s  %s\n", indent, name_width, *peer->name ? peer->name : "-",
                *hex ? hex : "-", endpoint_width, peer->endpoint, peer->state);
    }
}

static int
s_cmd_info (s_cli_t *cli, int argc, char **argv, bool peers_only)
{
    for (int i = 0; i < argc; i++) {
        if (streq (argv[i], "--json"))
            cli->json = true;
        else
            return s_usage_error ("%s takes no arguments; unexpected \"%s\"",
                                  peers_only ? "peers" : "status", argv[i]);
    }
    int status = s_resolve (cli);
    if (status)
        return status;
    s_conn_t *conn = s_connect (cli, &status);
    if (!conn)
        return status;
    Shoal__V1__Response *response = s_status_call (cli, conn);
    s_conn_destroy (&conn);
    if (!response)
        return S_ERROR;
    const Shoal__V1__StatusReply *reply = response->status;
    char node_hex[2 * SHOAL_ID_SIZE + 1];
    s_hex (&reply->node, node_hex);
    s_printer_t printer = {0};
    s_printer_learn_status (&printer, reply);
    if (peers_only && cli->json) {
        for (size_t i = 0; i < reply->n_peers; i++) {
            s_json_peer (reply->peers[i]);
            printf ("\n");
        }
    }
    else if (peers_only) {
        if (reply->n_peers == 0)
            printf ("no peers: node %s knows no other node of its mesh (check --mesh, "
                    "--interface and --peer of the shoald processes)\n",
                    reply->name);
        else
            s_table_peers (reply, "");
    }
    else if (cli->json) {
        printf ("{\"node\":\"%s\",\"name\":", node_hex);
        shoal_json_put_cstring (stdout, reply->name);
        printf (",\"endpoint\":");
        shoal_json_put_cstring (stdout, cli->endpoint);
        printf (",\"logs\":[");
        for (size_t i = 0; i < reply->n_logs; i++) {
            const Shoal__V1__LogHead *head = reply->logs[i];
            char hex[2 * SHOAL_ID_SIZE + 1];
            s_hex (&head->origin, hex);
            printf ("%s{\"origin\":\"%s\",\"stream\":", i ? "," : "", hex);
            shoal_json_put_cstring (stdout, head->stream);
            printf (",\"first_seq\":%" PRIu64 ",\"head_seq\":%" PRIu64 "}", head->first_seq,
                    head->head_seq);
        }
        printf ("],\"peers\":[");
        for (size_t i = 0; i < reply->n_peers; i++) {
            if (i)
                printf (",");
            s_json_peer (reply->peers[i]);
        }
        printf ("],\"counters\":{");
        for (size_t i = 0; i < reply->n_counters; i++) {
            if (i)
                printf (",");
            shoal_json_put_cstring (stdout, reply->counters[i]->key);
            printf (":%" PRIu64, reply->counters[i]->value);
        }
        printf ("}}\n");
    }
    else {
        printf ("node      %s (%s)\nendpoint  %s\n", reply->name, node_hex, cli->endpoint);
        printf ("logs      %zu\n", reply->n_logs);
        if (reply->n_logs) {
            int stream_width = 6;
            for (size_t i = 0; i < reply->n_logs; i++) {
                int w = (int) strlen (reply->logs[i]->stream);
                stream_width = w > stream_width ? w : stream_width;
            }
            printf ("  %-32s  %-12s  %-*s  %10s  %10s\n", "ORIGIN", "NAME", stream_width, "STREAM",
                    "FIRST", "HEAD");
            for (size_t i = 0; i < reply->n_logs; i++) {
                const Shoal__V1__LogHead *head = reply->logs[i];
                char hex[2 * SHOAL_ID_SIZE + 1], label[80];
                s_hex (&head->origin, hex);
                s_printer_label (&printer, &head->origin, label, sizeof label);
                printf ("  %-32s  %-12s  %-*s  %10" PRIu64 "  %10" PRIu64 "\n", hex, label,
                        stream_width, head->stream, head->first_seq, head->head_seq);
            }
        }
        printf ("peers     %zu\n", reply->n_peers);
        if (reply->n_peers)
            s_table_peers (reply, "  ");
        printf ("counters\n");
        for (size_t i = 0; i < reply->n_counters; i++)
            printf ("  %-20s %" PRIu64 "\n", reply->counters[i]->key, reply->counters[i]->value);
    }
    free (printer.names);
    shoal__v1__response__free_unpacked (response, NULL);
    fflush (stdout);
    return ferror (stdout) ? S_ERROR : S_OK;
}

//  --------------------------------------------------------------------------
//  log verify, log dump: offline, on the files

//  One log found on disk.
typedef struct {
    char *dir;                         //  its directory
    uint8_t origin[SHOAL_ID_SIZE];     //  from the directory name
    char stream[SHOAL_STREAM_MAX + 1]; //  from the directory name
} s_found_log_t;

static int
s_compare_names (const void *a, const void *b)
{
    return strcmp (*(const char *const *) a, *(const char *const *) b);
}

//  Names in a directory, sorted, without . and .. (caller frees each and
//  the array). -1 when it cannot be read.
static int
s_list_dir (const char *path, char ***names_p, size_t *count_p)
{
    DIR *dir = opendir (path);
    if (!dir)
        return -1;
    char **names = NULL;
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (streq (entry->d_name, ".") || streq (entry->d_name, ".."))
            continue;
        names = (char **) realloc (names, (count + 1) * sizeof (char *));
        names[count++] = strdup (entry->d_name);
    }
    closedir (dir);
    if (count > 1) //  an empty directory has no array (qsort of NULL is undefined)
        qsort (names, count, sizeof (char *), s_compare_names);
    *names_p = names;
    *count_p = count;
    return 0;
}

static bool
s_is_dir (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 && S_ISDIR (st.st_mode);
}

//  Takes the data directory's lock as shoald does, so that nothing runs
//  against a live node. The descriptor (close to release), or -1 after
//  reporting.
static int
s_lock_data_dir (const char *dir)
{
    char *path = zsys_sprintf ("%s/LOCK", dir);
    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf (stderr,
                 "shoal: cannot open %s: %s (log verify and log dump need to lock the "
                 "data directory; run as its owner)\n",
                 path, strerror (errno));
        free (path);
        return -1;
    }
    if (flock (fd, LOCK_EX | LOCK_NB) != 0) {
        char holder[32] = "";
        ssize_t got = pread (fd, holder, sizeof holder - 1, 0);
        holder[got > 0 ? strcspn (holder, "\n") : 0] = 0;
        fprintf (stderr,
                 "shoal: data directory %s is in use by a running shoald (process %s holds "
                 "%s): stop it first, since log verify and log dump read the files "
                 "directly; to look at a running node use `shoal --data %s status`\n",
                 dir, *holder ? holder : "unknown", path, dir);
        close (fd);
        free (path);
        return -1;
    }
    char pid[32];
    int length = snprintf (pid, sizeof pid, "%ld\n", (long) getpid ());
    //  The pid is for people only: a failure to write it changes nothing.
    if (ftruncate (fd, 0) == 0 && pwrite (fd, pid, (size_t) length, 0) != length)
        errno = 0;
    free (path);
    return fd;
}

//  Finds the logs under DIR: a data directory (DIR/logs/ORIGIN/STREAM) or
//  one log directory (.../ORIGIN/STREAM with segment files). Problems with
//  names are reported and counted in *problems. 0, or -1 when DIR is
//  neither (reported).
static int
s_find_logs (const char *dir, s_found_log_t **logs_p, size_t *count_p, int *lock_fd, int *problems)
{
    *logs_p = NULL;
    *count_p = 0;
    *lock_fd = -1;
    char *logs_dir = zsys_sprintf ("%s/logs", dir);
    if (s_is_dir (logs_dir)) {
        *lock_fd = s_lock_data_dir (dir);
        if (*lock_fd < 0) {
            free (logs_dir);
            return -1;
        }
        char **origins;
        size_t origin_count;
        if (s_list_dir (logs_dir, &origins, &origin_count)) {
            fprintf (stderr, "shoal: cannot read %s: %s\n", logs_dir, strerror (errno));
            free (logs_dir);
            return -1;
        }
        for (size_t i = 0; i < origin_count; i++) {
            uint8_t origin[SHOAL_ID_SIZE];
            char *origin_dir = zsys_sprintf ("%s/%s", logs_dir, origins[i]);
            char **streams = NULL;
            size_t stream_count = 0;
            if (shoal_id_from_hex (origins[i], origin) || !s_is_dir (origin_dir)
                || s_list_dir (origin_dir, &streams, &stream_count)) {
                printf ("%s: not an origin directory (32 hex digits): shoald will refuse to "
                        "open this data directory\n",
                        origin_dir);
                (*problems)++;
            }
            for (size_t j = 0; j < stream_count; j++) {
                char *stream_dir = zsys_sprintf ("%s/%s", origin_dir, streams[j]);
                if (!shoal_stream_name_valid (streams[j]) || !s_is_dir (stream_dir)) {
                    printf ("%s: not a stream directory: shoald will refuse to open this data "
                            "directory\n",
                            stream_dir);
                    (*problems)++;
                    free (stream_dir);
                }
                else {
                    *logs_p = (s_found_log_t *) realloc (*logs_p,
                                                         (*count_p + 1) * sizeof (s_found_log_t));
                    s_found_log_t *log = &(*logs_p)[(*count_p)++];
                    log->dir = stream_dir;
                    memcpy (log->origin, origin, SHOAL_ID_SIZE);
                    snprintf (log->stream, sizeof log->stream, "%s", streams[j]);
                }
                free (streams[j]);
            }
            free (streams);
            free (origin_dir);
            free (origins[i]);
        }
        free (origins);
        free (logs_dir);
        return 0;
    }
    free (logs_dir);
    //  One log directory: .../<origin>/<stream>.
    char *copy = strdup (dir);
    size_t length = strlen (copy);
    while (length > 1 && copy[length - 1] == '/')
        copy[--length] = 0;
    char *slash = strrchr (copy, '/');
    const char *stream = slash ? slash + 1 : copy;
    uint8_t origin[SHOAL_ID_SIZE];
    bool ok = false;
    if (slash && s_is_dir (dir) && shoal_stream_name_valid (stream)) {
        *slash = 0;
        char *parent_slash = strrchr (copy, '/');
        const char *origin_hex = parent_slash ? parent_slash + 1 : copy;
        ok = shoal_id_from_hex (origin_hex, origin) == 0;
        if (ok) {
            *logs_p = (s_found_log_t *) zmalloc (sizeof (s_found_log_t));
            (*logs_p)->dir = strdup (dir);
            memcpy ((*logs_p)->origin, origin, SHOAL_ID_SIZE);
            snprintf ((*logs_p)->stream, sizeof (*logs_p)->stream, "%s", stream);
            *count_p = 1;
            //  Its data directory is two levels up from logs/ORIGIN.
            if (parent_slash) {
                *parent_slash = 0;
                char *up = strrchr (copy, '/');
                if (up && streq (up + 1, "logs")) {
                    *up = 0;
                    *lock_fd = s_lock_data_dir (*copy ? copy : "/");
                    if (*lock_fd < 0) {
                        free ((*logs_p)->dir);
                        free (*logs_p);
                        *logs_p = NULL;
                        *count_p = 0;
                        free (copy);
                        return -1;
                    }
                }
            }
        }
    }
    free (copy);
    if (!ok) {
        fprintf (stderr,
                 "shoal: %s is neither a shoal data directory (with logs/ in it) nor a "
                 "log directory (logs/ORIGIN/STREAM): give shoald's --data directory\n",
                 dir);
        return -1;
    }
    return 0;
}

typedef struct {
    bool json;    //  --json
    int problems; //  counted
} s_verify_t;

static void
s_verify_report (void *arg, const char *file, uint64_t offset, const char *problem)
{
    s_verify_t *verify = (s_verify_t *) arg;
    verify->problems++;
    if (verify->json) {
        printf ("{\"file\":");
        shoal_json_put_cstring (stdout, file);
        printf (",\"offset\":%" PRIu64 ",\"problem\":", offset);
        shoal_json_put_cstring (stdout, problem);
        printf ("}\n");
    }
    else {
        //  The log's sentences often name the file already.
        size_t length = strlen (file);
        if (strncmp (problem, file, length) == 0 && strncmp (problem + length, ": ", 2) == 0)
            problem += length + 2;
        printf ("%s:%" PRIu64 ": %s\n", file, offset, problem);
    }
}

static int
s_cmd_log (s_cli_t *cli, int argc, char **argv)
{
    const char *action = argc > 0 ? argv[0] : NULL;
    if (!action || (!streq (action, "verify") && !streq (action, "dump")))
        return s_usage_error ("usage: shoal log verify DIR | shoal log dump DIR");
    bool dump = streq (action, "dump");
    const char *dir = NULL, *stream_filter = NULL, *origin_text = NULL;
    for (int i = 1; i < argc; i++) {
        int m = 0;
        if (dump && (m = s_option (argc, argv, &i, "--stream", &stream_filter)))
            ;
        else if (dump && (m = s_option (argc, argv, &i, "--origin", &origin_text)))
            ;
        else if (streq (argv[i], "--json"))
            cli->json = true;
        else if (argv[i][0] == '-' && argv[i][1])
            return s_usage_error ("log %s: unknown option %s", action, argv[i]);
        else if (dir)
            return s_usage_error ("log %s takes one DIR; unexpected \"%s\"", action, argv[i]);
        else
            dir = argv[i];
        if (m < 0)
            return S_USAGE;
    }
    if (!dir)
        return s_usage_error ("usage: shoal log %s DIR (a shoald data directory)", action);
    uint8_t origin_filter[SHOAL_ID_SIZE];
    if (origin_text && shoal_id_from_hex (origin_text, origin_filter))
        return s_usage_error ("--origin needs a node id (32 hex digits)");
    s_found_log_t *logs;
    size_t log_count;
    int lock_fd;
    s_verify_t verify = {cli->json, 0};
    if (s_find_logs (dir, &logs, &log_count, &lock_fd, &verify.problems))
        return S_ERROR;
    uint64_t records = 0, events = 0;
    size_t dumped = 0;
    s_printer_t printer = {0};
    for (size_t i = 0; i < log_count; i++) {
        s_found_log_t *found = &logs[i];
        if (dump && stream_filter && !streq (stream_filter, found->stream))
            continue;
        if (dump && origin_text && memcmp (origin_filter, found->origin, SHOAL_ID_SIZE) != 0)
            continue;
        int error = 0;
        dumped++;
        shoal_log_t *log =
            shoal_log_open (found->dir, found->origin, found->stream, false, NULL, &error);
        if (!log) {
            s_verify_report (&verify, found->dir, 0, shoal_log_open_error ());
            continue;
        }
        if (shoal_log_recovered_bytes (log) && !cli->json)
            fprintf (stderr,
                     "shoal: %s: a torn tail of %" PRIu64 " bytes (left by a crash) was "
                     "cut back to the last whole record, as shoald does when it starts\n",
                     found->dir, shoal_log_recovered_bytes (log));
        uint64_t first = shoal_log_first (log), head = shoal_log_head (log);
        if (!dump) {
            int problems = shoal_log_verify (log, s_verify_report, &verify);
            if (problems < 0)
                s_verify_report (&verify, found->dir, 0, shoal_log_error_text (log));
            records += head >= first ? head - first + 1 : 0;
        }
        else {
            //  Every readable record, in seq order; a damaged one is
            //  reported and skipped (a new iterator starts past it).
            uint64_t next = first, bad_from = 0;
            while (next <= head && !printer.failed) {
                shoal_log_iter_t *iter = shoal_log_iter_new (log, next, head);
                uint64_t seq;
                int64_t time_ns;
                const uint8_t *data;
                size_t size;
                int rc = iter ? 0 : -1;
                while (iter && !printer.failed
                       && (rc = shoal_log_iter_next (iter, &seq, &time_ns, &data, &size)) == 1) {
                    if (bad_from) {
                        fprintf (stderr,
                                 "shoal: %s: records %" PRIu64 " to %" PRIu64
                                 " are damaged and were skipped\n",
                                 found->dir, bad_from, seq - 1);
                        bad_from = 0;
                    }
                    next = seq + 1;
                    Shoal__V1__Event *event = shoal__v1__event__unpack (NULL, size, data);
                    if (!event) {
                        fprintf (stderr, "shoal: %s: record %" PRIu64 " is not a shoal.v1.Event\n",
                                 found->dir, seq);
                        verify.problems++;
                        continue;
                    }
                    s_print_event (&printer, cli->json, event);
                    events++;
                    shoal__v1__event__free_unpacked (event, NULL);
                }
                shoal_log_iter_destroy (&iter);
                if (rc >= 0)
                    break;
                if (!bad_from) {
                    fprintf (stderr, "shoal: %s\n", shoal_log_error_text (log));
                    bad_from = next;
                    verify.problems++;
                }
                next++;
            }
            if (bad_from)
                fprintf (stderr,
                         "shoal: %s: records %" PRIu64 " to %" PRIu64
                         " are damaged and were skipped\n",
                         found->dir, bad_from, head);
        }
        shoal_log_close (&log);
    }
    fflush (stdout);
    if (!dump) {
        if (cli->json)
            printf ("{\"logs\":%zu,\"records\":%" PRIu64 ",\"problems\":%d}\n", log_count, records,
                    verify.problems);
        else if (verify.problems)
            printf ("%d problem(s) in %zu log(s), %" PRIu64 " records: the damaged ranges are "
                    "never served; restore the files from a replica or a backup\n",
                    verify.problems, log_count, records);
        else
            printf ("ok: %zu log(s), %" PRIu64 " records, no problems\n", log_count, records);
    }
    else if (!cli->json)
        fprintf (stderr, "shoal: %" PRIu64 " event(s) in %zu log(s)\n", events, dumped);
    for (size_t i = 0; i < log_count; i++)
        free (logs[i].dir);
    free (logs);
    free (printer.names);
    if (lock_fd >= 0)
        close (lock_fd);
    fflush (stdout);
    return verify.problems || ferror (stdout) ? S_ERROR : S_OK;
}

//  --------------------------------------------------------------------------
//  trace: every event of one correlation id (or event id) across the mesh
//
//  Status of the node and of each of its peers tells which (origin,
//  stream) logs exist and who holds them; each log is replayed once, from
//  its origin when that can be reached, and the events whose correlation
//  id or event id is ID are kept. When ID named an event with a
//  correlation id of its own, the logs are read again for that one. The
//  events are printed in causation order: an event after the event its
//  causation id names, indented under it, siblings by time.

#define S_TRACE_MAX_LOGS 4096     //  logs looked at, at most
#define S_TRACE_MAX_EVENTS 100000 //  events kept, at most

typedef struct {
    uint8_t origin[SHOAL_ID_SIZE];     //  origin of the log
    char stream[SHOAL_STREAM_MAX + 1]; //  its stream
    int holder;                        //  index in the trace's connections of the node to ask
    int rank;                          //  3 = the origin itself, 2 = the local node, 1 = a peer
} s_trace_log_t;

typedef struct {
    s_cli_t *cli;                   //  global options
    s_printer_t printer;            //  names of the nodes seen
    s_conn_t *conns[S_MAX_SOURCES]; //  the node, then its peers
    size_t conn_count;              //  entries in conns
    s_trace_log_t *logs;            //  every log found
    size_t log_count;               //  entries in logs
    Shoal__V1__Event **events;      //  the events kept (owned copies)
    size_t event_count;             //  entries in events
    zhashx_t *seen;                 //  "origin/stream/seq" of kept events
} s_trace_t;

//  Notes the logs a node's Status lists, with that node as a holder.
static void
s_trace_learn (s_trace_t *self, int holder, bool local, const Shoal__V1__StatusReply *status)
{
    s_printer_learn_status (&self->printer, status);
    for (size_t i = 0; i < status->n_logs; i++) {
        const Shoal__V1__LogHead *head = status->logs[i];
        if (head->origin.len != SHOAL_ID_SIZE || head->head_seq == 0
            || strlen (head->stream) > SHOAL_STREAM_MAX)
            continue;
        int rank = status->node.len == SHOAL_ID_SIZE
                           && memcmp (status->node.data, head->origin.data, SHOAL_ID_SIZE) == 0
                       ? 3
                   : local ? 2
                           : 1;
        s_trace_log_t *log = NULL;
        for (size_t j = 0; j < self->log_count && !log; j++)
            if (memcmp (self->logs[j].origin, head->origin.data, SHOAL_ID_SIZE) == 0
                && streq (self->logs[j].stream, head->stream))
                log = &self->logs[j];
        if (!log) {
            if (self->log_count == S_TRACE_MAX_LOGS)
                continue;
            log = &self->logs[self->log_count++];
            memcpy (log->origin, head->origin.data, SHOAL_ID_SIZE);
            snprintf (log->stream, sizeof log->stream, "%s", head->stream);
            log->rank = 0;
        }
        if (rank > log->rank) {
            log->rank = rank;
            log->holder = holder;
        }
    }
}

//  True when the event is one of ID's.
static bool
s_trace_match (const Shoal__V1__Event *event, const char *id, const char *correlation)
{
    if (event->correlation_id && *event->correlation_id
        && (streq (event->correlation_id, id)
            || (correlation && streq (event->correlation_id, correlation))))
        return true;
    char hex[2 * SHOAL_ID_SIZE + 1];
    s_hex (&event->id, hex);
    return *hex && streq (hex, id);
}

//  Keeps a copy of the event, once.
static void
s_trace_keep (s_trace_t *self, const Shoal__V1__Event *event)
{
    char key[2 * SHOAL_ID_SIZE + SHOAL_STREAM_MAX + 32], origin[2 * SHOAL_ID_SIZE + 1];
    s_hex (&event->origin, origin);
    snprintf (key, sizeof key, "%s/%s/%" PRIu64, origin, event->stream, event->seq);
    if (zhashx_lookup (self->seen, key) || self->event_count == S_TRACE_MAX_EVENTS)
        return;
    zhashx_insert (self->seen, key, (void *) 1);
    size_t size = shoal__v1__event__get_packed_size (event);
    uint8_t *data = (uint8_t *) malloc (size ? size : 1);
    shoal__v1__event__pack (event, data);
    Shoal__V1__Event *copy = shoal__v1__event__unpack (NULL, size, data);
    free (data);
    if (!copy)
        return;
    if (self->event_count % 256 == 0)
        self->events = (Shoal__V1__Event **) realloc (
            self->events, (self->event_count + 256) * sizeof (Shoal__V1__Event *));
    self->events[self->event_count++] = copy;
}

//  Replays one log and keeps the events of ID. 0, or -1 after reporting.
static int
s_trace_scan (s_trace_t *self, s_trace_log_t *log, const char *id, const char *correlation)
{
    s_conn_t *conn = self->conns[log->holder];
    Shoal__V1__ReplayRequest body = SHOAL__V1__REPLAY_REQUEST__INIT;
    body.origin.data = log->origin;
    body.origin.len = SHOAL_ID_SIZE;
    body.stream = log->stream;
    body.credit = S_CREDIT;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.body_case = SHOAL__V1__REQUEST__BODY_REPLAY;
    request.replay = &body;
    uint64_t replay_id = s_conn_send (conn, &request);
    while (replay_id && !s_interrupted) {
        Shoal__V1__Response *response = s_conn_recv (conn, self->cli->timeout_ms, NULL);
        if (!response)
            break;
        if (response->request_id != replay_id) {
            shoal__v1__response__free_unpacked (response, NULL);
            continue;
        }
        if (response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR) {
            s_cli_t cli = *self->cli;
            cli.endpoint = conn->endpoint;
            s_report_wire_error (&cli, "the replay of a log to trace", response->error);
            shoal__v1__response__free_unpacked (response, NULL);
            return -1;
        }
        bool done = true;
        if (response->body_case == SHOAL__V1__RESPONSE__BODY_BATCH) {
            const Shoal__V1__ReplayBatch *batch = response->batch;
            for (size_t i = 0; i < batch->n_events; i++)
                if (s_trace_match (batch->events[i], id, correlation))
                    s_trace_keep (self, batch->events[i]);
            done = batch->done;
            if (!done && batch->n_events)
                s_sub_send_credit (&(s_source_t){.conn = conn}, replay_id,
                                   (uint32_t) batch->n_events);
        }
        shoal__v1__response__free_unpacked (response, NULL);
        if (done)
            return 0;
    }
    if (!s_interrupted)
        fprintf (stderr, "shoal: node at %s stopped answering the replay of %s; is it running?\n",
                 conn->endpoint, log->stream);
    return -1;
}

//  Prints the event at index and, below it, the events it caused.
static void
s_trace_print (s_trace_t *self, size_t index, int depth, bool *printed)
{
    if (printed[index])
        return;
    printed[index] = true;
    if (!self->cli->json)
        printf ("%*s", 2 * depth, "");
    s_print_event (&self->printer, self->cli->json, self->events[index]);
    char hex[2 * SHOAL_ID_SIZE + 1];
    s_hex (&self->events[index]->id, hex);
    //  Children: events whose causation id is this event's id (kept sorted by time).
    for (size_t i = 0; *hex && i < self->event_count; i++)
        if (!printed[i] && streq (self->events[i]->causation_id, hex))
            s_trace_print (self, i, depth + 1, printed);
}

static int
s_trace_by_time (const void *a, const void *b)
{
    const Shoal__V1__Event *x = *(Shoal__V1__Event *const *) a;
    const Shoal__V1__Event *y = *(Shoal__V1__Event *const *) b;
    return x->time_ns < y->time_ns ? -1 : x->time_ns > y->time_ns ? 1 : 0;
}

static int
s_cmd_trace (s_cli_t *cli, int argc, char **argv)
{
    const char *id = NULL;
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1])
            return s_usage_error ("trace: unknown option %s", argv[i]);
        if (id)
            return s_usage_error ("trace takes one ID");
        id = argv[i];
    }
    if (!id || !*id)
        return s_usage_error ("trace needs an ID: a correlation id or an event id");
    int status = s_resolve (cli);
    if (status)
        return status;
    status = S_ERROR;
    s_trace_t self = {0};
    self.cli = cli;
    self.logs = (s_trace_log_t *) zmalloc (S_TRACE_MAX_LOGS * sizeof (s_trace_log_t));
    self.seen = zhashx_new ();
    s_conn_t *conn = s_connect (cli, &status);
    Shoal__V1__Response *reply = conn ? s_status_call (cli, conn) : NULL;
    if (!reply) {
        s_conn_destroy (&conn);
        status = conn ? S_ERROR : status;
        goto done;
    }
    self.conns[self.conn_count++] = conn;
    s_trace_learn (&self, 0, true, reply->status);
    //  The peers: each one's Status, asked once.
    for (size_t i = 0; i < reply->status->n_peers && self.conn_count < S_MAX_SOURCES; i++) {
        const char *endpoint = reply->status->peers[i]->endpoint;
        if (!endpoint || strncmp (endpoint, "tcp://", 6) != 0)
            continue;
        s_conn_t *peer = s_conn_new (endpoint);
        if (!peer)
            continue;
        Shoal__V1__StatusRequest body = SHOAL__V1__STATUS_REQUEST__INIT;
        Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
        request.body_case = SHOAL__V1__REQUEST__BODY_STATUS;
        request.status = &body;
        Shoal__V1__Response *answer = s_conn_call (peer, &request, cli->timeout_ms, NULL);
        if (answer && answer->body_case == SHOAL__V1__RESPONSE__BODY_STATUS) {
            self.conns[self.conn_count] = peer;
            s_trace_learn (&self, (int) self.conn_count++, false, answer->status);
        }
        else {
            fprintf (stderr, "shoal: peer %s did not answer; the trace lacks what only it holds\n",
                     endpoint);
            s_conn_destroy (&peer);
        }
        if (answer)
            shoal__v1__response__free_unpacked (answer, NULL);
    }
    shoal__v1__response__free_unpacked (reply, NULL);
    for (size_t i = 0; i < self.log_count && !s_interrupted; i++)
        s_trace_scan (&self, &self.logs[i], id, NULL);
    //  An event id: follow its correlation id too.
    const char *correlation = NULL;
    for (size_t i = 0; i < self.event_count && !correlation; i++) {
        char hex[2 * SHOAL_ID_SIZE + 1];
        s_hex (&self.events[i]->id, hex);
        if (streq (hex, id) && *self.events[i]->correlation_id
            && !streq (self.events[i]->correlation_id, id))
            correlation = self.events[i]->correlation_id;
    }
    char *followed = correlation ? strdup (correlation) : NULL;
    if (followed)
        for (size_t i = 0; i < self.log_count && !s_interrupted; i++)
            s_trace_scan (&self, &self.logs[i], id, followed);
    if (self.event_count == 0) {
        fprintf (stderr,
                 "shoal: no event with correlation id or event id \"%s\" in the %zu log(s) of "
                 "%zu node(s)\n",
                 id, self.log_count, self.conn_count);
        free (followed);
        goto done;
    }
    qsort (self.events, self.event_count, sizeof self.events[0], s_trace_by_time);
    //  Roots: events whose cause is not among the events kept.
    zhashx_t *by_id = zhashx_new ();
    for (size_t i = 0; i < self.event_count; i++) {
        char hex[2 * SHOAL_ID_SIZE + 1];
        s_hex (&self.events[i]->id, hex);
        if (*hex)
            zhashx_update (by_id, hex, self.events[i]);
    }
    bool *printed = (bool *) zmalloc (self.event_count * sizeof (bool));
    if (!cli->json)
        printf ("trace %s%s%s: %zu event(s) in %zu log(s) of %zu node(s)\n", id,
                followed ? ", correlation id " : "", followed ? followed : "", self.event_count,
                self.log_count, self.conn_count);
    for (size_t i = 0; i < self.event_count; i++)
        if (!zhashx_lookup (by_id, self.events[i]->causation_id))
            s_trace_print (&self, i, 0, printed);
    //  Causation cycles (never made by shoal's services) still get printed.
    for (size_t i = 0; i < self.event_count; i++)
        s_trace_print (&self, i, 0, printed);
    free (printed);
    zhashx_destroy (&by_id);
    free (followed);
    status = S_OK;

done:
    for (size_t i = 0; i < self.event_count; i++)
        shoal__v1__event__free_unpacked (self.events[i], NULL);
    free (self.events);
    for (size_t i = 0; i < self.conn_count; i++)
        s_conn_destroy (&self.conns[i]);
    free (self.logs);
    free (self.printer.names);
    zhashx_destroy (&self.seen);
    return status;
}

//  --------------------------------------------------------------------------
//  keys: certificates and the allow-list (a directory of public certificates)

//  The name a certificate goes by (shoal_secure_cert_name, the rule the
//  node's allow-list uses). Caller owns return value.
static char *
s_keys_name (zcert_t *cert, const char *path)
{
    char name[64]; //  as the allow-list keeps it
    shoal_secure_cert_name (cert, path, name, sizeof name);
    return strdup (name);
}

static bool
s_keys_name_valid (const char *name)
{
    return *name && strlen (name) <= 63 && name[0] != '.'
           && strspn (name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
                  == strlen (name);
}

static int
s_keys_print (void *arg, const char *path, zcert_t *cert)
{
    s_cli_t *cli = (s_cli_t *) arg;
    char *name = s_keys_name (cert, path);
    if (cli->json) {
        printf ("{\"name\":");
        shoal_json_put_cstring (stdout, name);
        printf (",\"key\":\"%s\",\"file\":", zcert_public_txt (cert));
        shoal_json_put_cstring (stdout, path);
        printf ("}\n");
    }
    else
        printf ("%-24s %s  %s\n", name, zcert_public_txt (cert), path);
    free (name);
    return 0;
}

//  Collects the files whose key or name is `what`.
typedef struct {
    const char *what; //  the key (Z85) or name looked for
    zlistx_t *paths;  //  every matching file
} s_keys_match_t;

static int
s_keys_match (void *arg, const char *path, zcert_t *cert)
{
    s_keys_match_t *match = (s_keys_match_t *) arg;
    char *name = s_keys_name (cert, path);
    if (streq (zcert_public_txt (cert), match->what) || streq (name, match->what))
        zlistx_add_end (match->paths, (void *) path);
    free (name);
    return 0;
}

static zlistx_t *
s_keys_paths (void)
{
    zlistx_t *paths = zlistx_new ();
    zlistx_set_duplicator (paths, (zlistx_duplicator_fn *) strdup);
    zlistx_set_destructor (paths, (zlistx_destructor_fn *) zstr_free);
    return paths;
}

static int
s_keys_new (s_cli_t *cli, int argc, char **argv)
{
    const char *name = NULL, *dir = ".";
    for (int i = 1; i < argc; i++) {
        int m = s_option (argc, argv, &i, "--dir", &dir);
        if (m < 0)
            return S_USAGE;
        if (m == 0 && !name && argv[i][0] != '-')
            name = argv[i];
        else if (m == 0)
            return s_usage_error ("keys new NAME [--dir DIR]: unexpected \"%s\"", argv[i]);
    }
    if (!name || !s_keys_name_valid (name))
        return s_usage_error ("keys new needs a NAME of letters, digits, '.', '_' or '-' "
                              "(63 at most)");
    char *path = zsys_sprintf ("%s/%s.cert", dir, name);
    char *secret = zsys_sprintf ("%s_secret", path);
    int status = S_OK;
    zcert_t *cert = NULL;
    if (access (path, F_OK) == 0 || access (secret, F_OK) == 0) {
        fprintf (stderr, "shoal: %s already exists: choose another NAME or --dir\n", path);
        status = S_ERROR;
    }
    else if (!(cert = zcert_new ()) || (zcert_set_meta (cert, "name", "%s", name), 0)
             || zcert_save (cert, path)) {
        fprintf (stderr, "shoal: cannot write %s: %s\n", path, strerror (errno));
        status = S_ERROR;
    }
    else if (cli->json) {
        printf ("{\"name\":\"%s\",\"key\":\"%s\",\"file\":", name, zcert_public_txt (cert));
        shoal_json_put_cstring (stdout, path);
        printf ("}\n");
    }
    else
        printf ("%s %s\nshoal: public certificate %s, secret %s (keep it private); allow it "
                "with `shoal keys allow DIR %s`\n",
                name, zcert_public_txt (cert), path, secret, path);
    zcert_destroy (&cert);
    free (path);
    free (secret);
    return status;
}

static int
s_keys_allow (const char *dir, const char *file)
{
    zcert_t *cert = shoal_secure_load_cert (file);
    if (!cert) {
        fprintf (stderr, "shoal: %s is not a certificate (make one with `shoal keys new NAME`)\n",
                 file);
        return S_ERROR;
    }
    if (!s_is_dir (dir) && mkdir (dir, 0755)) {
        fprintf (stderr, "shoal: cannot make %s: %s\n", dir, strerror (errno));
        zcert_destroy (&cert);
        return S_ERROR;
    }
    char *name = s_keys_name (cert, file);
    s_keys_match_t match = {zcert_public_txt (cert), s_keys_paths ()};
    shoal_secure_each_cert (dir, s_keys_match, &match);
    int status = S_OK;
    char *path = zsys_sprintf ("%s/%s.cert", dir, name);
    char *temp = zsys_sprintf ("%s/.%s.cert.tmp", dir, name);
    if (zlistx_size (match.paths) > 0)
        printf ("shoal: key %s is allowed already\n", zcert_public_txt (cert));
    else if (!s_keys_name_valid (name) || access (path, F_OK) == 0) {
        fprintf (stderr,
                 "shoal: cannot allow %s as \"%s\": %s; name it with `shoal keys new` or "
                 "rename the file\n",
                 file, name,
                 s_keys_name_valid (name) ? "another key has that name" : "not a usable name");
        status = S_ERROR;
    }
    else if (zcert_save_public (cert, temp) || rename (temp, path)) {
        //  Written aside first: a node never reads half a certificate.
        fprintf (stderr, "shoal: cannot write %s: %s\n", path, strerror (errno));
        unlink (temp);
        status = S_ERROR;
    }
    else
        printf ("shoal: allowed %s (%s) in %s\n", name, zcert_public_txt (cert), dir);
    zlistx_destroy (&match.paths);
    free (path);
    free (temp);
    free (name);
    zcert_destroy (&cert);
    return status;
}

static int
s_keys_revoke (const char *dir, const char *what)
{
    if (!s_is_dir (dir)) {
        fprintf (stderr, "shoal: %s is not a directory\n", dir);
        return S_ERROR;
    }
    s_keys_match_t match = {what, s_keys_paths ()};
    shoal_secure_each_cert (dir, s_keys_match, &match);
    int status = S_OK;
    if (zlistx_size (match.paths) == 0) {
        fprintf (stderr, "shoal: no key or name \"%s\" in %s (`shoal keys list %s`)\n", what, dir,
                 dir);
        status = S_ERROR;
    }
    for (const char *path = (const char *) zlistx_first (match.paths); path;
         path = (const char *) zlistx_next (match.paths)) {
        char *secret = zsys_sprintf ("%s_secret", path);
        unlink (secret);
        free (secret);
        if (unlink (path)) {
            fprintf (stderr, "shoal: cannot remove %s: %s\n", path, strerror (errno));
            status = S_ERROR;
        }
        else
            printf ("shoal: revoked %s (running secure nodes cut it off within a second)\n", path);
    }
    zlistx_destroy (&match.paths);
    return status;
}

static int
s_cmd_keys (s_cli_t *cli, int argc, char **argv)
{
    const char *action = argc > 0 ? argv[0] : "";
    if (streq (action, "new"))
        return s_keys_new (cli, argc, argv);
    if (streq (action, "list") && argc == 2) {
        if (!s_is_dir (argv[1])) {
            fprintf (stderr, "shoal: %s is not a directory\n", argv[1]);
            return S_ERROR;
        }
        shoal_secure_each_cert (argv[1], s_keys_print, cli);
        return S_OK;
    }
    if (streq (action, "allow") && argc == 3)
        return s_keys_allow (argv[1], argv[2]);
    if (streq (action, "revoke") && argc == 3)
        return s_keys_revoke (argv[1], argv[2]);
    return s_usage_error ("keys new NAME [--dir DIR] | keys list DIR | keys allow DIR CERT | "
                          "keys revoke DIR KEY|NAME");
}

//  --------------------------------------------------------------------------

int
main (int argc, char *argv[])
{
    //  Our handlers (not czmq's): Ctrl-C ends sub and replay cleanly.
    zsys_handler_set (NULL);
    zsys_set_logstream (stderr);
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    s_cli_t cli = {0};
    cli.timeout_ms = 5000;
    const char *cert_path = getenv ("SHOAL_CERT");
    const char *server_key = getenv ("SHOAL_SERVER_KEY");
    int i = 1;
    for (; i < argc; i++) {
        const char *value;
        int m;
        if ((m = s_option (argc, argv, &i, "--node", &cli.node)))
            ;
        else if ((m = s_option (argc, argv, &i, "--data", &cli.data)))
            ;
        else if ((m = s_option (argc, argv, &i, "--cert", &cert_path)))
            ;
        else if ((m = s_option (argc, argv, &i, "--server-key", &server_key)))
            ;
        else if ((m = s_option (argc, argv, &i, "--timeout", &value)) == 1) {
            uint64_t v;
            if (s_parse_u64 (value, &v) || v < 1 || v > 3600000)
                return s_usage_error ("--timeout needs milliseconds, from 1 to 3600000");
            cli.timeout_ms = (int) v;
        }
        else if (m == 0 && streq (argv[i], "--json"))
            cli.json = true;
        else if (m == 0 && (streq (argv[i], "-h") || streq (argv[i], "--help"))) {
            s_usage (stdout);
            return S_OK;
        }
        else if (m == 0 && (streq (argv[i], "-V") || streq (argv[i], "--version"))) {
            printf ("shoal %s\n", SHOAL_VERSION_STRING);
            return S_OK;
        }
        else if (m == 0 && argv[i][0] == '-')
            return s_usage_error ("unknown option %s", argv[i]);
        else if (m == 0)
            break;
        if (m < 0)
            return S_USAGE;
    }
    if (cli.node && cli.data)
        return s_usage_error ("give --node or --data, not both");
    if (i >= argc) {
        s_usage (stderr);
        return S_USAGE;
    }
    const char *command = argv[i];
    int sub_argc = argc - i - 1;
    char **sub_argv = argv + i + 1;
    int status;
    if (s_secure_setup (cert_path, server_key))
        return S_USAGE;
    if (streq (command, "keys"))
        status = s_cmd_keys (&cli, sub_argc, sub_argv);
    else if (streq (command, "pub"))
        status = s_cmd_pub (&cli, sub_argc, sub_argv);
    else if (streq (command, "sub"))
        status = s_cmd_sub (&cli, sub_argc, sub_argv);
    else if (streq (command, "replay"))
        status = s_cmd_replay (&cli, sub_argc, sub_argv);
    else if (streq (command, "peers"))
        status = s_cmd_info (&cli, sub_argc, sub_argv, true);
    else if (streq (command, "status"))
        status = s_cmd_info (&cli, sub_argc, sub_argv, false);
    else if (streq (command, "log"))
        status = s_cmd_log (&cli, sub_argc, sub_argv);
    else if (streq (command, "trace"))
        status = s_cmd_trace (&cli, sub_argc, sub_argv);
    else if (streq (command, "help"))
        s_usage (stdout), status = S_OK;
    else
        status = s_usage_error ("unknown command \"%s\": use pub, sub, replay, peers, status, "
                                "log or trace",
                                command);
    free (cli.endpoint);
    free (cli.found);
    free (cli.data_dir);
    zcert_destroy (&s_client_cert);
    fflush (stdout);
    return status;
}
