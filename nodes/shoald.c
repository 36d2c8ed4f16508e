/*  =========================================================================
    shoald - the shoal node daemon

    shoald runs one node of a mesh (libshoal's shoal_node) until it is told
    to stop. Everything a node can be configured with is a setting with one
    name, used three ways: as a flag (--beacon-port 5680), as a key of the
    `shoald` section of a ZPL config file (beacon-port = 5680, read with
    czmq's zconfig), and as an environment variable (SHOAL_BEACON_PORT).
    The sources are applied in order, each overriding the one before:

        defaults  <  config file  <  environment  <  command line

    A list setting (peer, replicate) is replaced, not extended, by a later
    source; within one source it is repeated (--peer A --peer B, two
    `peer = ...` lines, or SHOAL_PEER="A,B").

    Every value is checked when it is read, so a mistake is reported where
    it was made: "FILE:LINE: ..." for the config file (zconfig does not
    keep line numbers, so the file is scanned here line by line with
    zconfig's own ZPL rules first), "SHOAL_X: ..." for the environment,
    "--x: ..." for the command line.

    Once the node runs, shoald prints one line on stdout for scripts:

        shoald: node NAME ID pub ENDPOINT router ENDPOINT data DIR

    and writes DIR/shoald.endpoint (the ROUTER endpoint, one line), which
    is how `shoal --data DIR` finds the local node. SIGTERM, SIGINT and
    SIGHUP stop it cleanly: the endpoint file is removed first (while the
    data directory's lock is still held, so a successor's file is never
    removed), then shoal_node_destroy flushes the logs and sends a leaving
    beacon.

    Logs go to stderr, one line each with a timestamp and a level; czmq's
    logging (zsys_*, which the library uses too) is routed through a
    filter stream that drops lines below --log-level.

    Exit status (also in --help and the README):
        0  stopped by a signal after a clean shutdown
        1  runtime error (data directory cannot be created or opened, ...)
        2  usage or configuration error (bad flag, bad config line, ...)
        3  the data directory is in use by another shoald (its lock)
        4  an endpoint cannot be bound (port in use, address not local)
    ========================================================================= */

#include "shoal.h"

#include <czmq.h>
#include <protobuf-c/protobuf-c.h>
#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define S_EXIT_OK 0
#define S_EXIT_RUNTIME 1
#define S_EXIT_USAGE 2
#define S_EXIT_LOCKED 3
#define S_EXIT_BIND 4

#define S_ENDPOINT_FILE "shoald.endpoint"

//  --------------------------------------------------------------------------
//  Settings

typedef enum {
    S_STRING, //  free text, checked by s_check
    S_INT,    //  decimal integer in [min, max]
    S_SIZE,   //  byte count with an optional K, M or G suffix, in [min, max]
    S_AGE,    //  a duration: whole number with s, m, h or d (plain = seconds), in [min, max] s
    S_FSYNC,  //  always, batch or never
    S_LEVEL,  //  error, warning, info or debug
    S_LIST,   //  repeated value
    S_BOOL    //  a bare flag; in a config file or SHOAL_ variable: 1/0, true/false, yes/no
} s_kind_t;

typedef enum { S_FROM_DEFAULT = 0, S_FROM_CONFIG, S_FROM_ENV, S_FROM_ARGS } s_source_t;

typedef struct {
    const char *key;  //  flag name without dashes = config key
    s_kind_t kind;    //  how the value is read
    const char *meta; //  argument name in --help, NULL for a bare flag
    long long min;    //  S_INT / S_SIZE lower bound
    long long max;    //  S_INT / S_SIZE upper bound
    const char *help; //  one line for --help
} s_option_t;

enum {
    OPT_NAME,
    OPT_MESH,
    OPT_DATA,
    OPT_INTERFACE,
    OPT_BEACON_PORT,
    OPT_BEACON_INTERVAL,
    OPT_PEER,
    OPT_PUB,
    OPT_ROUTER,
    OPT_FSYNC,
    OPT_REPLICATE,
    OPT_HEARTBEAT,
    OPT_SUSPECT,
    OPT_EXPIRY,
    OPT_MAX_EVENT,
    OPT_SNDHWM,
    OPT_RCVHWM,
    OPT_SEGMENT,
    OPT_DEDUPE,
    OPT_REORDER,
    OPT_MAX_PEERS,
    OPT_MAX_REPLAYS,
    OPT_MAX_REPLAYS_CLIENT,
    OPT_REPLAY_BATCH_EVENTS,
    OPT_REPLAY_BATCH_BYTES,
    OPT_MAX_LOGS,
    OPT_MAX_CONSUMERS,
    OPT_MAX_CONSUMER_CURSORS,
    OPT_MAX_ORIGINS,
    OPT_RETAIN_BYTES,
    OPT_RETAIN_AGE,
    OPT_LOG_LEVEL,
    OPT_SECURE,
    OPT_KEYS,
    OPT_CERT,
    OPT_COUNT
};

static const s_option_t s_options[OPT_COUNT] = {
    [OPT_NAME] = {"name", S_STRING, "NAME", 0, 0, "node name (default: the host name)"},
    [OPT_MESH] = {"mesh", S_STRING, "MESH", 0, 0,
                  "mesh name; beacons of other meshes are ignored (default: default)"},
    [OPT_DATA] = {"data", S_STRING, "DIR", 0, 0,
                  "data directory (default: $XDG_DATA_HOME/shoal or ~/.local/share/shoal)"},
    [OPT_INTERFACE] = {"interface", S_STRING, "IFACE|lo|none", 0, 0,
                       "discovery: a LAN interface, lo (loopback beacon: one host)\n"
                       "                          or none (static peers only); default: the first\n"
                       "                          broadcast-capable interface that is up"},
    [OPT_BEACON_PORT] = {"beacon-port", S_INT, "N", 1, 65535,
                         "UDP port of the beacon (default 5680)"},
    [OPT_BEACON_INTERVAL] = {"beacon-interval-ms", S_INT, "MS", 10, 3600000,
                             "beacon interval (default 1000)"},
    [OPT_PEER] = {"peer", S_LIST, "ENDPOINT", 0, 0,
                  "a static peer's ROUTER endpoint, tcp://HOST:PORT (repeatable)"},
    [OPT_PUB] = {"pub", S_STRING, "ENDPOINT", 0, 0,
                 "PUB bind endpoint (default: tcp://ADDRESS:* on the interface's address)"},
    [OPT_ROUTER] = {"router", S_STRING, "ENDPOINT", 0, 0,
                    "ROUTER bind endpoint (default: tcp://ADDRESS:*)"},
    [OPT_FSYNC] = {"fsync", S_FSYNC, "always|batch|never", 0, 0,
                   "fsync policy of the logs (default batch)"},
    [OPT_REPLICATE] = {"replicate", S_LIST, "STREAM|all", 0, 0,
                       "streams to keep replicas of (repeatable)"},
    [OPT_HEARTBEAT] = {"heartbeat-ms", S_INT, "MS", 10, 3600000,
                       "heartbeat interval per stream (default 1000)"},
    [OPT_SUSPECT] = {"suspect-ms", S_INT, "MS", 10, 86400000,
                     "a peer silent this long is suspect (default 3 beacon intervals)"},
    [OPT_EXPIRY] = {"expiry-ms", S_INT, "MS", 10, 86400000,
                    "a peer silent this long is gone (default 10 beacon intervals)"},
    [OPT_MAX_EVENT] = {"max-event-size", S_SIZE, "BYTES", 256, 1LL << 30,
                       "largest encoded event accepted (default 1M)"},
    [OPT_SNDHWM] = {"sndhwm", S_INT, "N", 1, 100000000,
                    "ZeroMQ send high-water mark (default 100000)"},
    [OPT_RCVHWM] = {"rcvhwm", S_INT, "N", 1, 100000000,
                    "ZeroMQ receive high-water mark (default 100000)"},
    [OPT_SEGMENT] = {"segment-size", S_SIZE, "BYTES", 4096, 1LL << 40,
                     "log segment size (default 64M)"},
    [OPT_DEDUPE] = {"dedupe-window", S_INT, "N", 1, 100000000,
                    "thin-client event ids remembered per stream (default 100000)"},
    [OPT_REORDER] = {"reorder-limit", S_INT, "N", 1, 100000000,
                     "out-of-order events held per subscription (default 10000)"},
    [OPT_MAX_PEERS] = {"max-peers", S_INT, "N", 1, 1000000,
                       "peers known at once; more are ignored and counted (default 256)"},
    [OPT_MAX_REPLAYS] = {"max-replays", S_INT, "N", 1, 1000000,
                         "replays served at once; more get Error 7 busy (default 1024)"},
    [OPT_MAX_REPLAYS_CLIENT] = {"max-replays-per-client", S_INT, "N", 1, 1000000,
                                "replays served at once to one client (default 16)"},
    [OPT_REPLAY_BATCH_EVENTS] = {"replay-batch-events", S_INT, "N", 1, 1000000,
                                 "most events in one replay batch (default 256)"},
    [OPT_REPLAY_BATCH_BYTES] = {"replay-batch-bytes", S_SIZE, "BYTES", 1024, 1LL << 30,
                                "most event bytes in one replay batch (default 64K)"},
    [OPT_MAX_LOGS] = {"max-logs", S_INT, "N", 1, 100000000,
                      "logs held before thin clients and replicate-all create no more (default "
                      "4096)"},
    [OPT_MAX_CONSUMERS] = {"max-consumers", S_INT, "N", 1, 100000000,
                           "durable consumers thin clients may create (default 1024)"},
    [OPT_MAX_CONSUMER_CURSORS] = {"max-consumer-cursors", S_INT, "N", 1, 100000000,
                                  "cursors of one durable consumer (default 10000)"},
    [OPT_MAX_ORIGINS] = {"max-origins", S_INT, "N", 1, 100000000,
                         "origins a subscription follows, and stream heads remembered "
                         "(default 4096)"},
    [OPT_RETAIN_BYTES] = {"retain-bytes", S_SIZE, "BYTES", 0, 1LL << 50,
                          "retention: drop a log's oldest segments past this size (0 = keep all)"},
    [OPT_RETAIN_AGE] = {"retain-age", S_AGE, "AGE", 0, 100LL * 365 * 86400,
                        "retention: drop segments older than this, e.g. 7d, 12h (0 = keep all)"},
    [OPT_LOG_LEVEL] = {"log-level", S_LEVEL, "LEVEL", 0, 0,
                       "error, warning, info or debug (default info)"},
    [OPT_SECURE] = {"secure", S_BOOL, NULL, 0, 0,
                    "CURVE security: encrypted traffic, only keys in --keys get in"},
    [OPT_KEYS] = {"keys", S_STRING, "DIR", 0, 0,
                  "secure: the allow-list, a directory of public certificates\n"
                  "                          (`shoal keys allow DIR CERT`)"},
    [OPT_CERT] = {"cert", S_STRING, "FILE", 0, 0,
                  "secure: this node's certificate (default DATA/node.cert,\n"
                  "                          made on first start; the secret is FILE_secret)"},
};

typedef struct {
    char *value[OPT_COUNT];       //  scalar values as text (checked), NULL = default
    zlistx_t *list[OPT_COUNT];    //  list values (strings), for S_LIST options
    s_source_t source[OPT_COUNT]; //  who set each value last
} s_settings_t;

//  One assignment read from a source, applied later in precedence order.
typedef struct {
    int option;  //  index in s_options
    char *value; //  the text
    char *where; //  "FILE:LINE", "SHOAL_X" or "--x", for messages
} s_assign_t;

static void
s_assign_destroy (void **item_p)
{
    s_assign_t *assign = (s_assign_t *) *item_p;
    if (assign) {
        free (assign->value);
        free (assign->where);
        free (assign);
        *item_p = NULL;
    }
}

static zlistx_t *
s_assign_list (void)
{
    zlistx_t *list = zlistx_new ();
    zlistx_set_destructor (list, s_assign_destroy);
    return list;
}

static void
s_assign_add (zlistx_t *list, int option, const char *value, const char *where)
{
    s_assign_t *assign = (s_assign_t *) zmalloc (sizeof (s_assign_t));
    assign->option = option;
    assign->value = strdup (value);
    assign->where = strdup (where);
    zlistx_add_end (list, assign);
}

static int
s_option_find (const char *key)
{
    char normal[64];
    size_t length = strlen (key);
    if (length == 0 || length >= sizeof normal)
        return -1;
    for (size_t i = 0; i <= length; i++)
        normal[i] = key[i] == '_' ? '-' : key[i];
    for (int i = 0; i < OPT_COUNT; i++)
        if (streq (s_options[i].key, normal))
            return i;
    return -1;
}

//  Parses a decimal integer, or a size with a K/M/G suffix (powers of
//  1024) when sized. 0, or -1 when it is not one or out of [min, max].
static int
s_parse_number (const char *text, bool sized, long long min, long long max, long long *value_p)
{
    if (!text || !*text || *text == '+' || *text == '-' || *text == ' ')
        return -1;
    char *end;
    errno = 0;
    unsigned long long value = strtoull (text, &end, 10);
    if (errno || end == text)
        return -1;
    if (sized && *end) {
        unsigned long long unit = 0;
        switch (*end) {
            case 'k':
            case 'K': unit = 1ULL << 10; break;
            case 'm':
            case 'M': unit = 1ULL << 20; break;
            case 'g':
            case 'G': unit = 1ULL << 30; break;
            default: return -1;
        }
        end++;
        if (*end == 'i' && end[1] == 'B')
            end += 2;
        else if (*end == 'B')
            end++;
        if (value > ULLONG_MAX / unit)
            return -1;
        value *= unit;
    }
    if (*end || value > (unsigned long long) LLONG_MAX || (long long) value < min
        || (long long) value > max)
        return -1;
    *value_p = (long long) value;
    return 0;
}

//  Parses a duration: a whole number with an optional s, m, h or d suffix
//  (seconds without one), in [min, max] seconds. 0, or -1.
static int
s_parse_age (const char *text, long long min, long long max, long long *seconds_p)
{
    if (!text || *text < '0' || *text > '9')
        return -1;
    char *end;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    long long unit = 1;
    if (*end == 's' || *end == 'm' || *end == 'h' || *end == 'd') {
        unit = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : 86400;
        end++;
    }
    if (errno || *end || value > max / unit || value * unit < min)
        return -1;
    *seconds_p = value * unit;
    return 0;
}

static bool
s_endpoint_valid (const char *endpoint)
{
    if (strncmp (endpoint, "tcp://", 6) == 0) {
        const char *colon = strrchr (endpoint + 6, ':');
        return colon && colon > endpoint + 6 && colon[1] != 0;
    }
    return strncmp (endpoint, "ipc://", 6) == 0 && endpoint[6] != 0;
}

//  Parses a yes or no; true when text is one (*value_p, may be NULL, gets it).
static bool
s_bool_parse (const char *text, bool *value_p)
{
    bool yes = streq (text, "1") || streq (text, "true") || streq (text, "yes");
    bool no = streq (text, "0") || streq (text, "false") || streq (text, "no");
    if (value_p)
        *value_p = yes;
    return yes || no;
}

//  Checks a value for an option. 0, or -1 with the reason in why.
static int
s_check (int option, const char *value, char *why, size_t size)
{
    const s_option_t *o = &s_options[option];
    long long number;
    switch (o->kind) {
        case S_BOOL:
            if (!s_bool_parse (value, NULL)) {
                snprintf (why, size, "\"%s\" is not a yes or no: use 1, 0, true, false, yes or no",
                          value);
                return -1;
            }
            return 0;
        case S_INT:
        case S_SIZE:
            if (s_parse_number (value, o->kind == S_SIZE, o->min, o->max, &number)) {
                if (o->kind == S_SIZE)
                    snprintf (why, size,
                              "\"%s\" is not a size from %lld to %lld bytes (suffixes K, M, G "
                              "allowed)",
                              value, o->min, o->max);
                else
                    snprintf (why, size, "\"%s\" is not a whole number from %lld to %lld", value,
                              o->min, o->max);
                return -1;
            }
            return 0;
        case S_AGE:
            if (s_parse_age (value, o->min, o->max, &number)) {
                snprintf (why, size,
                          "\"%s\" is not an age: a whole number with s, m, h or d (e.g. 7d), "
                          "0 to keep all",
                          value);
                return -1;
            }
            return 0;
        case S_FSYNC: {
            shoal_fsync_t policy;
            if (shoal_fsync_parse (value, &policy)) {
                snprintf (why, size, "\"%s\" is not an fsync policy: use always, batch or never",
                          value);
                return -1;
            }
            return 0;
        }
        case S_LEVEL:
            if (!streq (value, "error") && !streq (value, "warning") && !streq (value, "info")
                && !streq (value, "debug")) {
                snprintf (why, size, "\"%s\" is not a log level: use error, warning, info or debug",
                          value);
                return -1;
            }
            return 0;
        case S_LIST:
            if (option == OPT_PEER && !s_endpoint_valid (value)) {
                snprintf (why, size, "\"%s\" is not a peer endpoint: use tcp://HOST:PORT", value);
                return -1;
            }
            if (option == OPT_REPLICATE && !streq (value, "all")
                && !shoal_stream_name_valid (value)) {
                snprintf (why, size,
                          "\"%s\" is neither \"all\" nor a stream name ([a-z0-9][a-z0-9._-]{0,63})",
                          value);
                return -1;
            }
            return 0;
        case S_STRING:
            if (!*value) {
                snprintf (why, size, "needs a value");
                return -1;
            }
            if ((option == OPT_PUB || option == OPT_ROUTER) && !s_endpoint_valid (value)) {
                snprintf (why, size,
                          "\"%s\" is not an endpoint to bind: use tcp://ADDRESS:PORT (PORT * for "
                          "any free port)",
                          value);
                return -1;
            }
            if ((option == OPT_NAME || option == OPT_MESH) && strlen (value) > 63) {
                snprintf (why, size, "is %zu bytes long; 63 at most", strlen (value));
                return -1;
            }
            for (const char *p = value; *p; p++)
                if ((unsigned char) *p < 0x20) {
                    snprintf (why, size, "contains a control character");
                    return -1;
                }
            return 0;
    }
    return 0;
}

static void
s_settings_init (s_settings_t *self)
{
    memset (self, 0, sizeof *self);
    for (int i = 0; i < OPT_COUNT; i++)
        if (s_options[i].kind == S_LIST) {
            self->list[i] = zlistx_new ();
            zlistx_set_destructor (self->list[i], (zlistx_destructor_fn *) zstr_free);
            zlistx_set_duplicator (self->list[i], (zlistx_duplicator_fn *) strdup);
        }
}

static void
s_settings_destroy (s_settings_t *self)
{
    for (int i = 0; i < OPT_COUNT; i++) {
        zstr_free (&self->value[i]);
        zlistx_destroy (&self->list[i]);
    }
}

//  Applies assignments of one source. 0, or -1 after printing the error.
static int
s_settings_apply (s_settings_t *self, zlistx_t *assigns, s_source_t source)
{
    for (s_assign_t *a = (s_assign_t *) zlistx_first (assigns); a;
         a = (s_assign_t *) zlistx_next (assigns)) {
        char why[400];
        if (s_check (a->option, a->value, why, sizeof why)) {
            fprintf (stderr, "shoald: %s: %s\n", a->where, why);
            return -1;
        }
        if (s_options[a->option].kind == S_LIST) {
            //  A later source replaces the list of an earlier one.
            if (self->source[a->option] != source)
                zlistx_purge (self->list[a->option]);
            zlistx_add_end (self->list[a->option], a->value);
        }
        else {
            zstr_free (&self->value[a->option]);
            self->value[a->option] = strdup (a->value);
        }
        self->source[a->option] = source;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Config file: ZPL, read by zconfig, with line numbers found here

static bool
s_zpl_namechar (char c)
{
    return isalnum ((unsigned char) c) || c == '$' || c == '-' || c == '_' || c == '@' || c == '.'
           || c == '&' || c == '+' || c == '/';
}

//  Scans ZPL text with the rules zconfig applies (rfc.zeromq.org/spec:4),
//  so that a syntax error gets its line number, and records the line of
//  every item in file order (the order of a depth-first walk of the tree
//  zconfig builds). 0, or -1 with *bad_line and the reason.
static int
s_zpl_scan (const char *text, int *item_lines, size_t max_items, size_t *item_count, int *bad_line,
            char *why, size_t size)
{
    int lineno = 0;
    int last_level = -1;
    *item_count = 0;
    const char *p = text;
    while (*p) {
        const char *eol = strchr (p, '\n');
        size_t length = eol ? (size_t) (eol - p) : strlen (p);
        char line[1025];
        if (length > 1024)
            length = 1024;
        memcpy (line, p, length);
        line[length] = 0;
        p = eol ? eol + 1 : p + strlen (p);
        lineno++;
        *bad_line = lineno;
        while (length && isspace ((unsigned char) line[length - 1]))
            line[--length] = 0;
        char *scan = line;
        while (*scan == ' ')
            scan++;
        size_t indent = (size_t) (scan - line);
        if (*scan == '\t') {
            snprintf (why, size, "tab in the indentation: indent with 4 spaces per level");
            return -1;
        }
        char *name = scan;
        while (s_zpl_namechar (*scan))
            scan++;
        size_t name_length = (size_t) (scan - name);
        if (name_length == 0) {
            while (isspace ((unsigned char) *scan))
                scan++;
            if (*scan && *scan != '#') {
                snprintf (why, size, "invalid syntax at \"%.60s\": expected NAME = VALUE", scan);
                return -1;
            }
            continue;
        }
        if (indent % 4) {
            snprintf (why, size, "indented by %zu spaces: indent with 4 spaces per level", indent);
            return -1;
        }
        int level = (int) (indent / 4);
        if (name[0] == '/' || name[name_length - 1] == '/') {
            snprintf (why, size, "'/' cannot start or end a name");
            return -1;
        }
        while (isspace ((unsigned char) *scan))
            scan++;
        if (*scan == '=') {
            scan++;
            while (isspace ((unsigned char) *scan))
                scan++;
            if (*scan == '"' || *scan == '\'') {
                char *close = strchr (scan + 1, *scan);
                if (!close) {
                    snprintf (why, size, "missing closing %c", *scan);
                    return -1;
                }
                scan = close + 1;
                while (isspace ((unsigned char) *scan))
                    scan++;
                if (*scan && *scan != '#') {
                    snprintf (why, size, "invalid syntax after the quoted value: \"%.60s\"", scan);
                    return -1;
                }
            }
        }
        else if (*scan && *scan != '#') {
            snprintf (why, size, "invalid syntax at \"%.60s\": expected NAME = VALUE", scan);
            return -1;
        }
        if (level > last_level + 1) {
            snprintf (why, size, "indented too deep: nothing above it to belong to");
            return -1;
        }
        last_level = level;
        if (*item_count >= max_items) {
            snprintf (why, size, "too many lines");
            return -1;
        }
        item_lines[(*item_count)++] = lineno;
    }
    return 0;
}

//  Reads the config file into assignments. 0, or -1 after printing the
//  error as FILE:LINE: reason.
static int
s_config_load (const char *path, zlistx_t *assigns)
{
    FILE *file = fopen (path, "r");
    if (!file) {
        fprintf (stderr,
                 "shoald: cannot read config file %s: %s (check the path given to "
                 "--config or SHOAL_CONFIG)\n",
                 path, strerror (errno));
        return -1;
    }
    zchunk_t *chunk = zchunk_read (file, 1 << 20);
    bool too_big = fgetc (file) != EOF;
    fclose (file);
    if (!chunk || too_big) {
        fprintf (stderr, "shoald: %s: cannot read it whole (larger than 1 MiB?)\n", path);
        zchunk_destroy (&chunk);
        return -1;
    }
    size_t size = zchunk_size (chunk);
    char *text = (char *) zmalloc (size + 1);
    memcpy (text, zchunk_data (chunk), size);
    zchunk_destroy (&chunk);
    if (strlen (text) != size) {
        fprintf (stderr, "shoald: %s: contains a NUL byte; is it a text file?\n", path);
        free (text);
        return -1;
    }
    size_t max_items = 1;
    for (const char *c = text; *c; c++)
        max_items += *c == '\n';
    int *lines = (int *) zmalloc (max_items * sizeof (int));
    size_t item_count;
    int bad_line;
    char why[600];
    if (s_zpl_scan (text, lines, max_items, &item_count, &bad_line, why, sizeof why)) {
        fprintf (stderr, "shoald: %s:%d: %s\n", path, bad_line, why);
        free (lines);
        free (text);
        return -1;
    }
    //  zconfig reports its own syntax errors on stdout: point stdout at
    //  stderr while it parses, so nothing but the ready line reaches stdout.
    fflush (stdout);
    int saved = dup (STDOUT_FILENO);
    dup2 (STDERR_FILENO, STDOUT_FILENO);
    zconfig_t *root = zconfig_str_load (text);
    fflush (stdout);
    dup2 (saved, STDOUT_FILENO);
    close (saved);
    free (text);
    if (!root) {
        fprintf (stderr, "shoald: %s: not valid ZPL (see the line zconfig names above)\n", path);
        free (lines);
        return -1;
    }
    int rc = 0;
    size_t next = 0;
    char where[PATH_MAX + 32];
    for (zconfig_t *section = zconfig_child (root); section && rc == 0;
         section = zconfig_next (section)) {
        int line = next < item_count ? lines[next] : 0;
        next++;
        if (!streq (zconfig_name (section), "shoald")) {
            fprintf (stderr,
                     "shoald: %s:%d: unknown section \"%s\": settings go in a section "
                     "named shoald (indented by 4 spaces)\n",
                     path, line, zconfig_name (section));
            rc = -1;
            break;
        }
        if (zconfig_value (section) && *zconfig_value (section)) {
            fprintf (stderr, "shoald: %s:%d: the shoald section takes no value\n", path, line);
            rc = -1;
            break;
        }
        for (zconfig_t *item = zconfig_child (section); item; item = zconfig_next (item)) {
            line = next < item_count ? lines[next] : 0;
            next++;
            int option = s_option_find (zconfig_name (item));
            if (option < 0) {
                fprintf (stderr,
                         "shoald: %s:%d: unknown setting \"%s\" (the settings are the "
                         "long flags of shoald --help, without the dashes)\n",
                         path, line, zconfig_name (item));
                rc = -1;
                break;
            }
            if (zconfig_child (item)) {
                //  The first child is the next item in file order.
                fprintf (stderr,
                         "shoald: %s:%d: \"%s\" takes a value, not indented settings "
                         "below it\n",
                         path, next < item_count ? lines[next] : line, zconfig_name (item));
                rc = -1;
                break;
            }
            snprintf (where, sizeof where, "%s:%d", path, line);
            const char *value = zconfig_value (item) ? zconfig_value (item) : "";
            if (s_options[option].kind == S_BOOL && !*value)
                value = "1";
            s_assign_add (assigns, option, value, where);
        }
    }
    zconfig_destroy (&root);
    free (lines);
    return rc;
}

//  Reads SHOAL_<KEY> variables into assignments.
static void
s_env_load (zlistx_t *assigns)
{
    for (int i = 0; i < OPT_COUNT; i++) {
        char name[64] = "SHOAL_";
        size_t at = strlen (name);
        for (const char *k = s_options[i].key; *k && at < sizeof name - 1; k++)
            name[at++] = *k == '-' ? '_' : (char) toupper ((unsigned char) *k);
        name[at] = 0;
        const char *value = getenv (name);
        if (!value)
            continue;
        if (s_options[i].kind == S_LIST) {
            //  A list is comma or space separated.
            char *copy = strdup (value);
            char *save = NULL;
            for (char *item = strtok_r (copy, ", \t", &save); item;
                 item = strtok_r (NULL, ", \t", &save))
                s_assign_add (assigns, i, item, name);
            free (copy);
        }
        else
            s_assign_add (assigns, i, value, name);
    }
}

//  --------------------------------------------------------------------------
//  Logging: czmq's zsys log lines, filtered by level and stamped

static int s_log_threshold = SHOAL_LOG_INFO; //  SHOAL_LOG_ERROR .. SHOAL_LOG_DEBUG

//  zsys writes "L: [(ident) ]yy-mm-dd HH:MM:SS message"; this filter
//  keeps lines at or above the threshold and rewrites them as
//  "YYYY-MM-DDTHH:MM:SS shoald[pid] level: message" on stderr, the form
//  of the node's own log lines ("... shoal[NAME] level: message").
typedef struct {
    char line[2048]; //  the line being assembled
    size_t size;     //  bytes in it
} s_log_filter_t;

static void
s_log_emit (const char *line)
{
    int level;
    const char *name;
    switch (line[0]) {
        case 'E':
            level = 0;
            name = "error";
            break;
        case 'W':
            level = 1;
            name = "warning";
            break;
        case 'N':
            level = 2;
            name = "notice";
            break;
        case 'I':
            level = 2;
            name = "info";
            break;
        case 'D':
            level = 3;
            name = "debug";
            break;
        default: level = 2; name = NULL;
    }
    if (level > s_log_threshold)
        return;
    const char *message = line;
    if (name && line[1] == ':' && line[2] == ' ') {
        message = line + 3;
        if (*message == '(') {
            const char *close = strstr (message, ") ");
            if (close)
                message = close + 2;
        }
        //  Skip zsys's own "yy-mm-dd HH:MM:SS " stamp.
        if (strlen (message) > 18 && message[2] == '-' && message[5] == '-' && message[8] == ' '
            && message[11] == ':' && message[17] == ' ')
            message += 18;
    }
    time_t now = time (NULL);
    struct tm tm;
    char stamp[40];
    strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", localtime_r (&now, &tm));
    fprintf (stderr, "%s shoald[%ld] %s: %s\n", stamp, (long) getpid (), name ? name : "info",
             message);
}

static ssize_t
s_log_write (void *cookie, const char *data, size_t size)
{
    s_log_filter_t *filter = (s_log_filter_t *) cookie;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '\n' || filter->size == sizeof filter->line - 1) {
            filter->line[filter->size] = 0;
            s_log_emit (filter->line);
            filter->size = 0;
            if (data[i] == '\n')
                continue;
        }
        filter->line[filter->size++] = data[i];
    }
    return (ssize_t) size;
}

static s_log_filter_t s_log_filter;

static void
s_log_init (const char *level)
{
    s_log_threshold = streq (level, "error")     ? SHOAL_LOG_ERROR
                      : streq (level, "warning") ? SHOAL_LOG_WARNING
                      : streq (level, "debug")   ? SHOAL_LOG_DEBUG
                                                 : SHOAL_LOG_INFO;
    cookie_io_functions_t functions = {NULL, s_log_write, NULL, NULL};
    FILE *stream = fopencookie (&s_log_filter, "w", functions);
    if (stream) {
        setvbuf (stream, NULL, _IOLBF, 0);
        zsys_set_logstream (stream);
    }
    else
        zsys_set_logstream (stderr);
}

//  --------------------------------------------------------------------------
//  Defaults that depend on the machine

//  The first interface that is up, can broadcast, is not loopback and
//  has an IPv4 address, or NULL. Caller owns result.
static char *
s_default_interface (void)
{
    struct ifaddrs *list;
    if (getifaddrs (&list))
        return NULL;
    char *name = NULL;
    for (struct ifaddrs *entry = list; entry && !name; entry = entry->ifa_next)
        if (entry->ifa_addr && entry->ifa_addr->sa_family == AF_INET && (entry->ifa_flags & IFF_UP)
            && (entry->ifa_flags & IFF_BROADCAST) && !(entry->ifa_flags & IFF_LOOPBACK))
            name = strdup (entry->ifa_name);
    freeifaddrs (list);
    return name;
}

//  mkdir -p. 0, or -1 with errno.
static int
s_make_path (const char *path)
{
    char buffer[PATH_MAX];
    if (snprintf (buffer, sizeof buffer, "%s", path) >= (int) sizeof buffer) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buffer + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char saved = *p;
            *p = 0;
            if (mkdir (buffer, 0750) && errno != EEXIST)
                return -1;
            *p = saved;
            if (saved == 0)
                break;
        }
    }
    struct stat st;
    if (stat (path, &st))
        return -1;
    if (!S_ISDIR (st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Help and version

static void
s_usage (FILE *out)
{
    fprintf (out, "usage: shoald [OPTION]...\n"
                  "Run one node of a shoal mesh: it records the events published through it,\n"
                  "serves them to peers and clients, and finds its peers by beacon or static\n"
                  "endpoints. Stop it with SIGTERM or Ctrl-C.\n\n"
                  "Options (each is also a config key and a SHOAL_<KEY> environment variable):\n");
    for (int i = 0; i < OPT_COUNT; i++) {
        char flag[64];
        snprintf (flag, sizeof flag, "--%s%s%s", s_options[i].key, s_options[i].meta ? " " : "",
                  s_options[i].meta ? s_options[i].meta : "");
        if (strlen (flag) >= 24)
            fprintf (out, "  %s\n  %-24s%s\n", flag, "", s_options[i].help);
        else
            fprintf (out, "  %-24s%s\n", flag, s_options[i].help);
    }
    fprintf (out,
             "  --config FILE           read settings from a ZPL file (also SHOAL_CONFIG)\n"
             "  --print-config          print the settings in effect as a config file and exit\n"
             "  -h, --help              show this help and exit\n"
             "  -V, --version           show the version and exit\n\n"
             "Precedence: defaults < config file < environment < command line. Lists (peer,\n"
             "replicate) from a later source replace those of an earlier one; in SHOAL_PEER\n"
             "and SHOAL_REPLICATE separate them with commas. A config file looks like:\n\n"
             "    shoald\n"
             "        name = alpha\n"
             "        mesh = orders\n"
             "        interface = lo\n"
             "        peer = tcp://10.0.0.2:7001\n"
             "        peer = tcp://10.0.0.3:7001\n\n"
             "Once running, shoald prints one line on stdout:\n"
             "    shoald: node NAME ID pub ENDPOINT router ENDPOINT data DIR\n"
             "and writes DIR/" S_ENDPOINT_FILE " so that `shoal --data DIR` finds it.\n\n"
             "Exit status:\n"
             "  0  stopped cleanly by SIGTERM, SIGINT or SIGHUP\n"
             "  1  runtime error (data directory cannot be created or opened, ...)\n"
             "  2  usage or configuration error (bad flag, bad config line as FILE:LINE)\n"
             "  3  the data directory is in use by another shoald\n"
             "  4  an endpoint cannot be bound (port in use)\n");
}

static void
s_version (void)
{
    int major, minor, patch;
    shoal_version (&major, &minor, &patch);
    int zmq_major, zmq_minor, zmq_patch;
    zmq_version (&zmq_major, &zmq_minor, &zmq_patch);
    printf ("shoald %s (libshoal %d.%d.%d, czmq %d.%d.%d, libzmq %d.%d.%d, protobuf-c %s)\n",
            SHOAL_VERSION_STRING, major, minor, patch, CZMQ_VERSION_MAJOR, CZMQ_VERSION_MINOR,
            CZMQ_VERSION_PATCH, zmq_major, zmq_minor, zmq_patch, protobuf_c_version ());
}

//  Prints the settings in effect as a ZPL config file.
static void
s_print_config (s_settings_t *settings)
{
    printf ("shoald\n");
    for (int i = 0; i < OPT_COUNT; i++) {
        if (s_options[i].kind == S_LIST) {
            for (const char *v = (const char *) zlistx_first (settings->list[i]); v;
                 v = (const char *) zlistx_next (settings->list[i]))
                printf ("    %s = \"%s\"\n", s_options[i].key, v);
        }
        else if (settings->value[i]) {
            const char *v = settings->value[i];
            printf ("    %s = %c%s%c\n", s_options[i].key, strchr (v, '"') ? '\'' : '"', v,
                    strchr (v, '"') ? '\'' : '"');
        }
        else
            printf ("    # %s: library default\n", s_options[i].key);
    }
}

//  --------------------------------------------------------------------------
//  Command line

typedef struct {
    zlistx_t *assigns;  //  settings given as flags
    const char *config; //  --config FILE, or NULL
    bool help;          //  --help
    bool version;       //  --version
    bool print_config;  //  --print-config
} s_args_t;

//  Parses argv. 0, or -1 after printing the error.
static int
s_args_parse (int argc, char *argv[], s_args_t *args)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (streq (arg, "-h") || streq (arg, "--help")) {
            args->help = true;
            continue;
        }
        if (streq (arg, "-V") || streq (arg, "--version")) {
            args->version = true;
            continue;
        }
        if (streq (arg, "--print-config")) {
            args->print_config = true;
            continue;
        }
        if (strncmp (arg, "--", 2) != 0 || arg[2] == 0) {
            fprintf (stderr,
                     "shoald: unexpected argument \"%s\": shoald takes only options "
                     "(see shoald --help)\n",
                     arg);
            return -1;
        }
        char key[64];
        const char *equals = strchr (arg, '=');
        size_t key_length = equals ? (size_t) (equals - arg - 2) : strlen (arg + 2);
        if (key_length >= sizeof key)
            key_length = sizeof key - 1;
        memcpy (key, arg + 2, key_length);
        key[key_length] = 0;
        const char *value = equals ? equals + 1 : NULL;
        bool is_config = streq (key, "config");
        int option = is_config ? -1 : s_option_find (key);
        if (!is_config && (option < 0 || strchr (key, '_'))) {
            fprintf (stderr, "shoald: unknown option --%s (see shoald --help)\n", key);
            return -1;
        }
        bool takes_value = is_config || s_options[option].meta != NULL;
        if (!takes_value && value) {
            fprintf (stderr, "shoald: --%s takes no value\n", key);
            return -1;
        }
        if (takes_value && !value) {
            if (i + 1 >= argc) {
                fprintf (stderr, "shoald: --%s needs a value: --%s %s\n", key, key,
                         is_config ? "FILE" : s_options[option].meta);
                return -1;
            }
            value = argv[++i];
        }
        if (is_config)
            args->config = value;
        else {
            char where[80];
            snprintf (where, sizeof where, "--%s", key);
            s_assign_add (args->assigns, option, value ? value : "1", where);
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Running

//  Writes path atomically: temp file, rename. 0 or -1 with errno.
static int
s_write_file (const char *path, const char *content)
{
    char temp[PATH_MAX + 8];
    snprintf (temp, sizeof temp, "%s.tmp", path);
    FILE *file = fopen (temp, "w");
    if (!file)
        return -1;
    bool ok = fputs (content, file) >= 0;
    ok = (fflush (file) == 0) && ok;
    ok = (fsync (fileno (file)) == 0) && ok;
    ok = (fclose (file) == 0) && ok;
    if (!ok || rename (temp, path)) {
        int error = errno;
        unlink (temp);
        errno = error;
        return -1;
    }
    return 0;
}

//  The endpoint a client on this host connects to, for one bound with a
//  wildcard address. Caller owns result.
static char *
s_connectable (const char *endpoint)
{
    const char *wild[] = {"tcp://0.0.0.0:", "tcp://*:"};
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++)
        if (strncmp (endpoint, wild[i], strlen (wild[i])) == 0)
            return zsys_sprintf ("tcp://127.0.0.1:%s", endpoint + strlen (wild[i]));
    return strdup (endpoint);
}

static const char *
s_signal_name (int signo)
{
    return signo == SIGTERM  ? "SIGTERM"
           : signo == SIGINT ? "SIGINT"
           : signo == SIGHUP ? "SIGHUP"
                             : "signal";
}

int
main (int argc, char *argv[])
{
    //  Signals: blocked in every thread (the node's threads inherit the
    //  mask) and taken by sigwait in main, so that a stop always runs the
    //  clean shutdown below. czmq's own handler is turned off.
    sigset_t stop_signals;
    sigemptyset (&stop_signals);
    sigaddset (&stop_signals, SIGINT);
    sigaddset (&stop_signals, SIGTERM);
    sigaddset (&stop_signals, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &stop_signals, NULL);
    signal (SIGPIPE, SIG_IGN);
    zsys_handler_set (NULL);
    zsys_set_logstream (stderr);

    s_args_t args = {0};
    args.assigns = s_assign_list ();
    zlistx_t *config_assigns = s_assign_list ();
    zlistx_t *env_assigns = s_assign_list ();
    s_settings_t settings;
    s_settings_init (&settings);
    int status = S_EXIT_USAGE;
    char *data_dir = NULL, *interface = NULL, *endpoint_path = NULL, *keys_dir = NULL;
    const char **peers = NULL, **replicate = NULL;
    shoal_node_t *node = NULL;

    if (s_args_parse (argc, argv, &args))
        goto done;
    if (args.help) {
        s_usage (stdout);
        status = S_EXIT_OK;
        goto done;
    }
    if (args.version) {
        s_version ();
        status = S_EXIT_OK;
        goto done;
    }
    const char *config_path = args.config ? args.config : getenv ("SHOAL_CONFIG");
    if (config_path && *config_path && s_config_load (config_path, config_assigns))
        goto done;
    s_env_load (env_assigns);
    if (s_settings_apply (&settings, config_assigns, S_FROM_CONFIG)
        || s_settings_apply (&settings, env_assigns, S_FROM_ENV)
        || s_settings_apply (&settings, args.assigns, S_FROM_ARGS))
        goto done;

    s_log_init (settings.value[OPT_LOG_LEVEL] ? settings.value[OPT_LOG_LEVEL] : "info");

    //  Machine-dependent defaults.
    if (!settings.value[OPT_DATA])
        settings.value[OPT_DATA] = shoal_store_default_dir ();
    if (!settings.value[OPT_INTERFACE]) {
        char *found = s_default_interface ();
        settings.value[OPT_INTERFACE] = found ? found : strdup ("none");
        if (!found && !args.print_config)
            zsys_warning ("no broadcast-capable interface is up: discovery is off; give "
                          "--interface lo for one host, or --peer ENDPOINT");
    }
    if (!settings.value[OPT_NAME]) {
        char host[256] = "shoal";
        gethostname (host, sizeof host - 1);
        host[63] = 0;
        settings.value[OPT_NAME] = strdup (host);
    }
    if (!settings.value[OPT_MESH])
        settings.value[OPT_MESH] = strdup ("default");
    if (!settings.value[OPT_FSYNC])
        settings.value[OPT_FSYNC] = strdup ("batch");
    if (!settings.value[OPT_LOG_LEVEL])
        settings.value[OPT_LOG_LEVEL] = strdup ("info");
    if (args.print_config) {
        s_print_config (&settings);
        status = S_EXIT_OK;
        goto done;
    }
    interface = settings.value[OPT_INTERFACE];
    if (!streq (interface, "lo") && !streq (interface, "none") && if_nametoindex (interface) == 0) {
        fprintf (stderr,
                 "shoald: no network interface \"%s\": see `ip link` for the names, or "
                 "use --interface lo (one host) or none (static peers)\n",
                 interface);
        goto done;
    }

    //  The data directory: made here with its parents, so the error names
    //  the directory and what to do.
    char *absolute = realpath (settings.value[OPT_DATA], NULL);
    data_dir = absolute ? absolute : strdup (settings.value[OPT_DATA]);
    if (s_make_path (data_dir)) {
        fprintf (stderr,
                 "shoald: cannot create data directory %s: %s: choose another with "
                 "--data DIR, or fix the permissions of its parent\n",
                 data_dir, strerror (errno));
        status = S_EXIT_RUNTIME;
        goto done;
    }
    if (access (data_dir, W_OK | X_OK)) {
        fprintf (stderr,
                 "shoald: data directory %s is not writable: %s: choose another with "
                 "--data DIR, or fix its owner and permissions\n",
                 data_dir, strerror (errno));
        status = S_EXIT_RUNTIME;
        goto done;
    }
    if (!absolute) {
        absolute = realpath (data_dir, NULL);
        if (absolute) {
            free (data_dir);
            data_dir = absolute;
        }
    }

    shoal_node_config_t config;
    shoal_node_config_defaults (&config);
    config.name = settings.value[OPT_NAME];
    config.mesh = settings.value[OPT_MESH];
    config.data_dir = data_dir;
    config.interface = interface;
    config.pub_endpoint = settings.value[OPT_PUB];
    config.router_endpoint = settings.value[OPT_ROUTER];
    shoal_fsync_parse (settings.value[OPT_FSYNC], &config.fsync);
    long long number;
#define S_NUMBER(opt, field, type)                                                                 \
    if (settings.value[opt]                                                                        \
        && s_parse_number (settings.value[opt], s_options[opt].kind == S_SIZE, s_options[opt].min, \
                           s_options[opt].max, &number)                                            \
               == 0)                                                                               \
        config.field = (type) number;
    S_NUMBER (OPT_BEACON_PORT, beacon_port, int)
    S_NUMBER (OPT_BEACON_INTERVAL, beacon_interval_ms, int)
    S_NUMBER (OPT_HEARTBEAT, heartbeat_ms, int)
    S_NUMBER (OPT_SUSPECT, suspect_ms, int)
    S_NUMBER (OPT_EXPIRY, expiry_ms, int)
    S_NUMBER (OPT_MAX_EVENT, max_event_size, size_t)
    S_NUMBER (OPT_SNDHWM, sndhwm, int)
    S_NUMBER (OPT_RCVHWM, rcvhwm, int)
    S_NUMBER (OPT_SEGMENT, segment_size, uint64_t)
    S_NUMBER (OPT_DEDUPE, dedupe_window, size_t)
    S_NUMBER (OPT_REORDER, reorder_limit, size_t)
    S_NUMBER (OPT_MAX_PEERS, max_peers, size_t)
    S_NUMBER (OPT_MAX_REPLAYS, max_replay_sessions, size_t)
    S_NUMBER (OPT_MAX_REPLAYS_CLIENT, max_replays_per_client, size_t)
    S_NUMBER (OPT_REPLAY_BATCH_EVENTS, replay_batch_events, size_t)
    S_NUMBER (OPT_REPLAY_BATCH_BYTES, replay_batch_bytes, size_t)
    S_NUMBER (OPT_MAX_LOGS, max_logs, size_t)
    S_NUMBER (OPT_MAX_CONSUMERS, max_consumers, size_t)
    S_NUMBER (OPT_MAX_CONSUMER_CURSORS, max_consumer_cursors, size_t)
    S_NUMBER (OPT_MAX_ORIGINS, max_origins, size_t)
    S_NUMBER (OPT_RETAIN_BYTES, retain_bytes, uint64_t)
#undef S_NUMBER
    if (settings.value[OPT_RETAIN_AGE]
        && s_parse_age (settings.value[OPT_RETAIN_AGE], s_options[OPT_RETAIN_AGE].min,
                        s_options[OPT_RETAIN_AGE].max, &number)
               == 0)
        config.retain_age_ns = (int64_t) number * 1000000000;
    //  The node logs to stderr itself, at the same level as shoald.
    config.log_level = s_log_threshold;
    if (settings.value[OPT_SECURE])
        s_bool_parse (settings.value[OPT_SECURE], &config.secure);
    if (config.secure && !settings.value[OPT_KEYS]) {
        fprintf (stderr, "shoald: --secure needs --keys DIR, the directory of allowed public "
                         "certificates (make one with `shoal keys new NAME --dir DIR`)\n");
        goto done;
    }
    if (!config.secure && (settings.value[OPT_KEYS] || settings.value[OPT_CERT])) {
        fprintf (stderr, "shoald: --keys and --cert are for secure mode: add --secure\n");
        goto done;
    }
    //  Absolute, so the node's log names the directory whatever the cwd.
    keys_dir = settings.value[OPT_KEYS] ? realpath (settings.value[OPT_KEYS], NULL) : NULL;
    config.keys_dir = keys_dir ? keys_dir : settings.value[OPT_KEYS];
    config.cert_path = settings.value[OPT_CERT];
    if (!config.secure)
        zsys_warning ("insecure mode: traffic is not encrypted and anyone who reaches this "
                      "node can read, publish and replay; use --secure --keys DIR on an "
                      "untrusted network");
    size_t peer_count = zlistx_size (settings.list[OPT_PEER]);
    peers = (const char **) zmalloc ((peer_count + 1) * sizeof (char *));
    size_t n = 0;
    for (const char *v = (const char *) zlistx_first (settings.list[OPT_PEER]); v;
         v = (const char *) zlistx_next (settings.list[OPT_PEER]))
        peers[n++] = v;
    config.peers = peers;
    config.peer_count = peer_count;
    size_t replicate_count = zlistx_size (settings.list[OPT_REPLICATE]);
    replicate = (const char **) zmalloc ((replicate_count + 1) * sizeof (char *));
    n = 0;
    for (const char *v = (const char *) zlistx_first (settings.list[OPT_REPLICATE]); v;
         v = (const char *) zlistx_next (settings.list[OPT_REPLICATE]))
        replicate[n++] = v;
    config.replicate = replicate;
    config.replicate_count = replicate_count;

    int error = 0;
    node = shoal_node_new (&config, &error);
    if (!node) {
        const char *why = shoal_node_start_error ();
        if (error == SHOAL_ERR_LOCKED) {
            fprintf (stderr,
                     "shoald: %s\nshoald: another shoald uses data directory %s: stop it "
                     "first, or give this one its own directory with --data DIR\n",
                     why, data_dir);
            status = S_EXIT_LOCKED;
        }
        else if (strncmp (why, "cannot bind", 11) == 0) {
            fprintf (stderr, "shoald: %s\n", why);
            status = S_EXIT_BIND;
        }
        else if (error == SHOAL_ERR_INVALID) {
            fprintf (stderr, "shoald: %s\n", why);
            status = S_EXIT_USAGE;
        }
        else {
            fprintf (stderr,
                     "shoald: cannot start the node: %s\nshoald: check that %s is a shoal "
                     "data directory on a writable disk with free space (`shoal log verify "
                     "%s` checks its logs)\n",
                     why, data_dir, data_dir);
            status = S_EXIT_RUNTIME;
        }
        goto done;
    }
    char id_hex[2 * SHOAL_ID_SIZE + 1];
    shoal_id_to_hex (shoal_node_id (node), id_hex);
    char *router = s_connectable (shoal_node_router_endpoint (node));
    endpoint_path = zsys_sprintf ("%s/%s", data_dir, S_ENDPOINT_FILE);
    //  Secure mode: the endpoint file carries the node's public key
    //  (ENDPOINT#KEY), which is how `shoal --data DIR --cert FILE` finds it.
    char key_suffix[64] = "";
    if (config.secure) {
        char *cert_file =
            config.cert_path ? strdup (config.cert_path) : zsys_sprintf ("%s/node.cert", data_dir);
        zcert_t *cert = zcert_load (cert_file);
        if (cert) {
            snprintf (key_suffix, sizeof key_suffix, "#%s", zcert_public_txt (cert));
            zsys_info ("secure mode: public key %s (certificate %s), allow-list %s",
                       zcert_public_txt (cert), cert_file, config.keys_dir);
        }
        zcert_destroy (&cert);
        free (cert_file);
    }
    char *content = zsys_sprintf ("%s%s\n", router, key_suffix);
    int written = s_write_file (endpoint_path, content);
    int write_error = errno;
    free (content);
    if (written) {
        fprintf (stderr, "shoald: cannot write %s: %s: is the disk full or read-only?\n",
                 endpoint_path, strerror (write_error));
        free (router);
        zstr_free (&endpoint_path);
        status = S_EXIT_RUNTIME;
        goto done;
    }
    const char *discovery = streq (interface, "none") ? "static peers only"
                            : streq (interface, "lo") ? "loopback beacon"
                                                      : "beacon on";
    zsys_info ("node %s (%s) of mesh %s started: data %s, pub %s, router %s, %s%s%s, fsync %s, "
               "%zu static peer%s",
               shoal_node_name (node), id_hex, settings.value[OPT_MESH], data_dir,
               shoal_node_pub_endpoint (node), shoal_node_router_endpoint (node), discovery,
               streq (interface, "none") || streq (interface, "lo") ? "" : " ",
               streq (interface, "none") || streq (interface, "lo") ? "" : interface,
               settings.value[OPT_FSYNC], peer_count, peer_count == 1 ? "" : "s");
    printf ("shoald: node %s %s pub %s router %s data %s\n", shoal_node_name (node), id_hex,
            shoal_node_pub_endpoint (node), router, data_dir);
    fflush (stdout);
    free (router);

    int signo = 0;
    while (sigwait (&stop_signals, &signo) != 0)
        ;
    zsys_info ("%s received: stopping", s_signal_name (signo));
    //  The endpoint file goes first, while this process still holds the
    //  data directory's lock: after destroy another shoald may own it.
    unlink (endpoint_path);
    shoal_node_destroy (&node);
    zsys_info ("stopped cleanly");
    status = S_EXIT_OK;

done:
    shoal_node_destroy (&node);
    zstr_free (&endpoint_path);
    free (peers);
    free (replicate);
    free (data_dir);
    free (keys_dir);
    s_settings_destroy (&settings);
    zlistx_destroy (&args.assigns);
    zlistx_destroy (&config_assigns);
    zlistx_destroy (&env_assigns);
    return status;
}
