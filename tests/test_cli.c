/*  test_cli - the shoal command-line tool against live shoald processes:
    every subcommand, the --json output parsed by the test, and the error
    paths (unreachable node, no endpoint file, refused requests, usage
    errors, a data directory in use, a corrupt log).

    Two nodes on loopback with static peers (interface none): alpha, and
    beta which names alpha as its peer. Every process is killed by pid
    when the test ends. */

#include "shoal.h"
#include "mesh_util.h"
#include "tap.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define streq(a, b) (strcmp ((a), (b)) == 0)
#define S_RUN_TIMEOUT 20.0

typedef struct {
    mesh_proc_t *proc; //  the shoald process
    char name[64];     //  from its start line
    char id[33];
    char router[128];
    char data[4096];
} s_node_t;

static s_node_t s_alpha, s_beta;

static int
s_start (s_node_t *node, const char *name, const char *peer)
{
    snprintf (node->data, sizeof node->data, "%s/%s", tap_tmpdir (), name);
    const char *argv[] = {mesh_bin ("shoald"),
                          "--data",
                          node->data,
                          "--name",
                          name,
                          "--interface",
                          "none",
                          "--heartbeat-ms",
                          "200",
                          peer ? "--peer" : NULL,
                          peer,
                          NULL};
    node->proc = mesh_start (argv, NULL, false);
    char line[4500];
    if (mesh_wait_line (node->proc, "shoald: node ", line, sizeof line, 10) != 0
        || sscanf (line, "shoald: node %63s %32s pub %*s router %127s", node->name, node->id,
                   node->router)
               != 3) {
        char *err = mesh_stderr (node->proc);
        diag ("shoald %s did not start: %s", name, err);
        free (err);
        return -1;
    }
    return 0;
}

//  Runs shoal with args (NULL-terminated); returns the exit status.
static int
s_shoal (const char *input, char **out, char **err, const char *const *args)
{
    return mesh_run_bin ("shoal", args, NULL, input, S_RUN_TIMEOUT, out, err);
}

#define SHOAL(input, out, err, ...)                                                                \
    s_shoal ((input), (out), (err), (const char *[]){__VA_ARGS__, NULL})

//  Splits output into lines and parses each as JSON. Returns how many
//  parsed; values[] gets them (caller frees each). -1 when a line is not JSON.
static int
s_json_lines (const char *text, json_t **values, int max)
{
    int count = 0;
    const char *p = text ? text : "";
    while (*p) {
        const char *eol = strchr (p, '\n');
        size_t length = eol ? (size_t) (eol - p) : strlen (p);
        if (length) {
            json_t *value = json_parse (p, length);
            if (!value) {
                diag ("not JSON: %.*s", (int) (length > 200 ? 200 : length), p);
                for (int i = 0; i < count; i++)
                    json_free (values[i]);
                return -1;
            }
            if (count < max)
                values[count++] = value;
            else
                json_free (value);
        }
        p = eol ? eol + 1 : p + length;
    }
    return count;
}

static void
s_free_values (json_t **values, int count)
{
    for (int i = 0; i < count; i++)
        json_free (values[i]);
}

//  Waits until alpha lists beta as a connected peer.
static bool
s_wait_peered (void)
{
    double deadline = tap_now () + 10;
    while (tap_now () < deadline) {
        char *out = NULL;
        int rc = SHOAL (NULL, &out, NULL, "--node", s_alpha.router, "--json", "peers");
        bool found = rc == 0 && tap_contains (out, s_beta.id) && tap_contains (out, "connected");
        free (out);
        if (found)
            return true;
        usleep (100000);
    }
    return false;
}

static void
test_usage (void)
{
    char *out = NULL, *err = NULL;
    int rc = SHOAL (NULL, &out, &err, "--help");
    ok (rc == 0 && tap_contains (out, "pub STREAM TYPE") && tap_contains (out, "log verify DIR")
            && tap_contains (out, "Exit status"),
        "--help exits 0 and lists the commands and exit codes");
    free (out);
    free (err);
    const char *const cases[][4] = {
        {"frobnicate", NULL},
        {"--bogus", "status", NULL},
        {"--node", "tcp://127.0.0.1:1", "--data", "/tmp"},
        {"pub", "orders", NULL},
        {"pub", "orders", "T", "--json-payload"},
        {"sub", NULL},
        {"replay", "orders", NULL},
        {"log", "frob", NULL},
    };
    const char *names[] = {"an unknown command",
                           "an unknown option",
                           "--node with --data",
                           "pub without TYPE",
                           "--json-payload without its value",
                           "sub without STREAM",
                           "replay without --origin",
                           "log frob"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[8] = {mesh_bin ("shoal")};
        size_t n = 1;
        for (size_t j = 0; j < 4 && cases[i][j]; j++)
            argv[n++] = cases[i][j];
        argv[n] = NULL;
        rc = mesh_run (argv, NULL, NULL, S_RUN_TIMEOUT, NULL, &err);
        ok (rc == 2 && tap_contains (err, "shoal: "), "%s exits 2 with a message", names[i]);
        free (err);
    }
    rc = SHOAL (NULL, NULL, &err, "--node", s_alpha.router, "pub", "orders", "T", "--json-payload",
                "{\"a\":1,}");
    ok (rc == 2 && tap_contains (err, "not valid JSON"),
        "pub refuses --json-payload that is not JSON");
    free (err);
    rc = SHOAL (NULL, NULL, &err, "--node", s_alpha.router, "sub", "Bad_Stream");
    ok (rc == 2 && tap_contains (err, "not a stream name"), "sub refuses a bad stream name");
    free (err);
    rc = SHOAL (NULL, NULL, &err, "--node", s_alpha.router, "sub", "orders", "--durable",
                "no spaces");
    ok (rc == 2 && tap_contains (err, "not a consumer name"), "sub refuses a bad consumer name");
    free (err);
    rc = SHOAL (NULL, NULL, &err, "--node", s_alpha.router, "sub", "orders", "--from", "someday");
    ok (rc == 2 && tap_contains (err, "--from"), "sub refuses a --from it cannot read");
    free (err);
}

static void
test_unreachable (void)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", tap_free_port ());
    char *err = NULL;
    double start = tap_now ();
    int rc = SHOAL (NULL, NULL, &err, "--node", endpoint, "--timeout", "300", "status");
    ok (rc == 1 && tap_contains (err, "cannot reach node at") && tap_contains (err, endpoint)
            && tap_contains (err, "shoald"),
        "an unreachable node exits 1, names the endpoint and says to start shoald");
    ok (tap_now () - start < 5, "it gives up after --timeout");
    free (err);
    char empty[4200];
    snprintf (empty, sizeof empty, "%s/no-node-here", tap_tmpdir ());
    mkdir (empty, 0755);
    rc = SHOAL (NULL, NULL, &err, "--data", empty, "status");
    ok (rc == 1 && tap_contains (err, "shoald.endpoint") && tap_contains (err, "shoald --data"),
        "--data without a running shoald exits 1 and says how to start one");
    free (err);
    rc = SHOAL (NULL, NULL, &err, "--node", endpoint, "--timeout", "300", "pub", "orders", "T",
                "--data", "x");
    ok (rc == 1 && tap_contains (err, "cannot reach"), "pub to an unreachable node exits 1");
    free (err);
}

static void
test_status_and_peers (void)
{
    char *out = NULL, *err = NULL;
    int rc = SHOAL (NULL, &out, &err, "--data", s_alpha.data, "--json", "status");
    json_t *status = json_parse (out, out ? strlen (out) : 0);
    ok (rc == 0 && status, "status --json (node found through --data) prints one JSON object");
    is_str (json_get_string (status, "node"), s_alpha.id, "status --json: node id");
    is_str (json_get_string (status, "name"), "alpha", "status --json: name");
    is_str (json_get_string (status, "endpoint"), s_alpha.router, "status --json: endpoint");
    ok (json_type (json_get (status, "logs")) == JSON_ARRAY
            && json_type (json_get (json_get (status, "counters"), "published")) == JSON_NUMBER,
        "status --json: logs array and counters");
    json_t *peers = json_get (status, "peers");
    ok (json_count (peers) == 1
            && streq (json_get_string (json_at (peers, 0), "node") ?: "", s_beta.id),
        "status --json: beta among the peers");
    json_free (status);
    free (out);
    free (err);

    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "status");
    ok (rc == 0 && tap_contains (out, "node      alpha") && tap_contains (out, "counters")
            && tap_contains (out, "beta"),
        "status prints a table for people");
    free (out);
    free (err);

    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "peers", "--json");
    json_t *values[8];
    int count = s_json_lines (out, values, 8);
    ok (rc == 0 && count == 1, "peers --json prints one object per peer");
    if (count == 1) {
        is_str (json_get_string (values[0], "name"), "beta", "peers --json: name");
        is_str (json_get_string (values[0], "node"), s_beta.id, "peers --json: node id");
        is_str (json_get_string (values[0], "state"), "connected", "peers --json: state");
        ok (json_get_string (values[0], "endpoint")
                && strncmp (json_get_string (values[0], "endpoint"), "tcp://127.0.0.1:", 16) == 0,
            "peers --json: endpoint");
    }
    else
        skip (4, "no peer line");
    s_free_values (values, count);
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "peers");
    ok (rc == 0 && tap_contains (out, "NAME") && tap_contains (out, "beta")
            && tap_contains (out, s_beta.id),
        "peers prints a table for people");
    free (out);
    free (err);
}

static void
test_pub (void)
{
    char *out = NULL, *err = NULL;
    char expect[200];
    int rc =
        SHOAL (NULL, &out, &err, "--node", s_alpha.router, "pub", "orders", "OrderPlaced", "--key",
               "order-1", "--json-payload", "{\"total\": 12.5,\n \"items\": [1,2]}", "--header",
               "tenant=acme", "--correlation-id", "corr-1", "--schema-version", "3");
    snprintf (expect, sizeof expect, "%s/orders/1\n", s_alpha.id);
    ok (rc == 0 && out && streq (out, expect), "pub prints origin/stream/seq of the event");
    free (out);
    free (err);

    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "--json", "pub", "orders",
                "OrderShipped", "--key", "order-1", "--data", "plain text", "--wait", "--id",
                "00112233445566778899aabbccddeeff");
    json_t *ack = json_parse (out, out ? strlen (out) : 0);
    ok (rc == 0 && ack, "pub --json --wait prints a JSON ack");
    is_str (json_get_string (ack, "origin"), s_alpha.id, "pub --json: origin");
    is_str (json_get_string (ack, "stream"), "orders", "pub --json: stream");
    is_int (json_get_u64 (ack, "seq", 0), 2, "pub --json: seq");
    ok (json_type (json_get (ack, "duplicate")) == JSON_BOOL
            && !json_bool (json_get (ack, "duplicate"), true),
        "pub --json: not a duplicate");
    json_free (ack);
    free (out);
    free (err);

    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "--json", "pub", "orders",
                "OrderShipped", "--data", "plain text", "--id", "00112233445566778899aabbccddeeff");
    ack = json_parse (out, out ? strlen (out) : 0);
    ok (rc == 0 && json_get_u64 (ack, "seq", 0) == 2
            && json_bool (json_get (ack, "duplicate"), false),
        "the same --id again is acknowledged as a duplicate of seq 2");
    json_free (ack);
    free (out);
    free (err);

    //  A binary payload from a file.
    char path[4200];
    snprintf (path, sizeof path, "%s/payload.bin", tap_tmpdir ());
    FILE *file = fopen (path, "wb");
    const uint8_t binary[] = {0x00, 0xff, 0x10, 0x80, 'a', '"', 0x0a, 0xfe};
    fwrite (binary, 1, sizeof binary, file);
    fclose (file);
    char at_path[4300];
    snprintf (at_path, sizeof at_path, "@%s", path);
    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "pub", "orders", "Blob", "--data",
                at_path);
    snprintf (expect, sizeof expect, "%s/orders/3\n", s_alpha.id);
    ok (rc == 0 && out && streq (out, expect), "pub --data @FILE publishes the file");
    free (out);
    free (err);

    //  One event per line of stdin; blank lines are skipped.
    rc = SHOAL ("{\"n\":1}\n\nsecond line\n{\"n\":3}", &out, &err, "--node", s_beta.router,
                "--json", "pub", "orders", "Line");
    json_t *values[8];
    int count = s_json_lines (out, values, 8);
    ok (rc == 0 && count == 3, "pub reads one event per stdin line (blank lines skipped)");
    bool in_order = count == 3;
    for (int i = 0; i < count; i++)
        in_order = in_order && json_get_u64 (values[i], "seq", 0) == (uint64_t) i + 1
                   && streq (json_get_string (values[i], "origin") ?: "", s_beta.id);
    ok (in_order, "their acks come in seq order, with beta as origin");
    s_free_values (values, count);
    free (out);
    free (err);

    //  Refusals by the node are shown.
    rc =
        SHOAL (NULL, &out, &err, "--node", s_alpha.router, "pub", "Bad_Stream", "T", "--data", "x");
    ok (rc == 1 && tap_contains (err, "refused") && tap_contains (err, "bad request")
            && tap_contains (err, "stream name"),
        "a bad stream name: the node's error reply is shown, exit 1");
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "pub", "orders", "bad type!", "--data",
                "x");
    ok (rc == 1 && tap_contains (err, "event type"), "a bad event type: the error reply is shown");
    free (out);
    free (err);
}

//  The events of sub/replay --json output, checked for the fields.
static bool
s_event_has_every_field (const json_t *event)
{
    const char *fields[] = {"origin",
                            "stream",
                            "seq",
                            "type",
                            "key",
                            "time_ns",
                            "id",
                            "correlation_id",
                            "causation_id",
                            "schema_version",
                            "content_type",
                            "payload",
                            "payload_encoding",
                            "headers"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!json_get (event, fields[i])) {
            diag ("field %s missing", fields[i]);
            return false;
        }
    return true;
}

static void
test_sub (void)
{
    char *out = NULL, *err = NULL;
    //  Through alpha: alpha's own 3 events and beta's 3 (beta is a peer).
    int rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "--json", "sub", "orders", "--from",
                    "beginning", "--count", "6");
    json_t *values[16];
    int count = s_json_lines (out, values, 16);
    ok (rc == 0 && count == 6, "sub --from beginning --count 6 prints 6 JSON lines and exits 0");
    int from_alpha = 0, from_beta = 0;
    uint64_t last_alpha = 0, last_beta = 0;
    bool ordered = true, fields = true;
    const json_t *first = NULL, *blob = NULL, *line2 = NULL;
    for (int i = 0; i < count; i++) {
        const char *origin = json_get_string (values[i], "origin");
        uint64_t seq = json_get_u64 (values[i], "seq", 0);
        fields = fields && s_event_has_every_field (values[i]);
        if (origin && streq (origin, s_alpha.id)) {
            ordered = ordered && seq == last_alpha + 1;
            last_alpha = seq;
            from_alpha++;
            if (seq == 1)
                first = values[i];
            if (seq == 3)
                blob = values[i];
        }
        else if (origin && streq (origin, s_beta.id)) {
            ordered = ordered && seq == last_beta + 1;
            last_beta = seq;
            from_beta++;
            if (seq == 2)
                line2 = values[i];
        }
    }
    ok (from_alpha == 3 && from_beta == 3, "sub follows the stream across the mesh (both origins)");
    ok (ordered, "each origin's events come in seq order, each once");
    ok (fields, "every Event field is in the JSON object");
    //  A JSON payload is embedded as JSON (on one line), other bytes as base64.
    json_t *payload = json_get (first, "payload");
    ok (json_type (payload) == JSON_OBJECT
            && json_u64 (json_at (json_get (payload, "items"), 1), 0) == 2
            && streq (json_get_string (first, "payload_encoding") ?: "", "json"),
        "a JSON payload is printed as JSON");
    is_str (json_get_string (first, "type"), "OrderPlaced", "type");
    is_str (json_get_string (first, "key"), "order-1", "key");
    is_str (json_get_string (first, "correlation_id"), "corr-1", "correlation_id");
    is_int (json_get_u64 (first, "schema_version", 0), 3, "schema_version");
    is_str (json_get_string (first, "content_type"), "application/json", "content_type");
    is_str (json_get_string (json_get (first, "headers"), "tenant"), "acme", "headers");
    ok (json_get_u64 (first, "time_ns", 0) > 1600000000000000000ULL, "time_ns is a unix ns time");
    ok (json_get_string (first, "id") && strlen (json_get_string (first, "id")) == 32,
        "id is 32 hex digits");
    const uint8_t binary[] = {0x00, 0xff, 0x10, 0x80, 'a', '"', 0x0a, 0xfe};
    size_t size = 0;
    uint8_t *decoded = json_get_string (blob, "payload")
                           ? mesh_base64_decode (json_get_string (blob, "payload"), &size)
                           : NULL;
    ok (decoded && size == sizeof binary && memcmp (decoded, binary, size) == 0
            && streq (json_get_string (blob, "payload_encoding") ?: "", "base64"),
        "a binary payload is printed as base64 of its exact bytes");
    free (decoded);
    decoded = json_get_string (line2, "payload")
                  ? mesh_base64_decode (json_get_string (line2, "payload"), &size)
                  : NULL;
    ok (decoded && size == 11 && memcmp (decoded, "second line", 11) == 0,
        "a text payload that is not JSON is base64 too");
    free (decoded);
    s_free_values (values, count);
    free (out);
    free (err);

    //  Human-readable output.
    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "sub", "orders", "--from", "beginning",
                "--count", "3", "--local");
    ok (rc == 0 && tap_contains (out, "alpha/orders/1 OrderPlaced key=order-1")
            && tap_contains (out, "<8 bytes>"),
        "sub prints one readable line per event");
    free (out);
    free (err);

    //  Type filter and --from SEQ.
    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "--json", "sub", "orders", "--from",
                "beginning", "--type", "Line", "--count", "3");
    count = s_json_lines (out, values, 16);
    bool all_lines = count == 3;
    for (int i = 0; i < count; i++)
        all_lines = all_lines && streq (json_get_string (values[i], "type") ?: "", "Line");
    ok (rc == 0 && all_lines, "sub --type keeps only that type");
    s_free_values (values, count);
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "--node", s_beta.router, "--json", "sub", "orders", "--from", "3",
                "--count", "2");
    count = s_json_lines (out, values, 16);
    ok (rc == 0 && count == 2 && json_get_u64 (values[0], "seq", 0) == 3
            && json_get_u64 (values[1], "seq", 0) == 3,
        "sub --from SEQ starts each origin at that seq");
    s_free_values (values, count);
    free (out);
    free (err);

    //  --from now: only what comes after; then a live event arrives.
    const char *argv[] = {mesh_bin ("shoal"), "--node", s_alpha.router, "--json", "sub", "orders",
                          "--count",          "1",      "--poll-ms",    "50",     NULL};
    mesh_proc_t *sub = mesh_start (argv, NULL, false);
    usleep (500000);
    rc = SHOAL (NULL, NULL, NULL, "--node", s_beta.router, "pub", "orders", "Live",
                "--json-payload", "\"live\"");
    char line[4096];
    int got = mesh_wait_line (sub, "{", line, sizeof line, 10);
    json_t *live = got == 0 ? json_parse (line, strlen (line)) : NULL;
    ok (got == 0 && streq (json_get_string (live, "type") ?: "", "Live")
            && streq (json_get_string (live, "payload") ?: "", "live"),
        "sub --from now gets an event published after it started, from a peer");
    is_int (mesh_wait (sub, 10), 0, "sub --count 1 exits 0 after one event");
    json_free (live);
    mesh_stop (&sub);

    //  --from TIME: everything recorded since a minute ago.
    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "--json", "sub", "orders", "--from",
                "-1m", "--count", "7");
    count = s_json_lines (out, values, 16);
    ok (rc == 0 && count == 7, "sub --from -1m gets every event of the last minute");
    s_free_values (values, count);
    free (out);
    free (err);

    //  Ctrl-C ends a sub cleanly.
    const char *forever[] = {mesh_bin ("shoal"), "--node", s_alpha.router, "sub", "orders", NULL};
    sub = mesh_start (forever, NULL, false);
    usleep (300000);
    mesh_signal (sub, SIGINT, false);
    is_int (mesh_wait (sub, 10), 0, "SIGINT ends sub with exit 0");
    mesh_stop (&sub);
}

//  The seqs of sub's JSON lines, as "1,2,3".
static void
s_seqs (const char *out, char *text, size_t size)
{
    json_t *values[32];
    int count = s_json_lines (out, values, 32);
    size_t n = 0;
    text[0] = 0;
    for (int i = 0; i < count && n < size; i++)
        n += (size_t) snprintf (text + n, size - n, "%s%" PRIu64, i ? "," : "",
                                json_get_u64 (values[i], "seq", 0));
    s_free_values (values, count);
}

static void
test_durable (void)
{
    char *out = NULL, *err = NULL, seqs[256];
    int rc =
        SHOAL ("j1\nj2\nj3\nj4\nj5\n", NULL, NULL, "--node", s_alpha.router, "pub", "jobs", "Job");
    struct {
        const char *count;
        const char *expect;
        const char *name;
    } runs[] = {
        {"2", "1,2", "a new durable consumer starts at the beginning"},
        {"2", "3,4", "the next run goes on after what the first one printed"},
        {"1", "5", "and the next one after that"},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "--json", "sub", "jobs",
                    "--durable", "worker-1", "--count", runs[i].count);
        s_seqs (out, seqs, sizeof seqs);
        ok (rc == 0 && streq (seqs, runs[i].expect), "sub --durable: %s (%s)", runs[i].name, seqs);
        free (out);
        free (err);
    }
    //  Ctrl-C: what was printed is acknowledged before it exits.
    const char *argv[] = {mesh_bin ("shoal"), "--node",   s_alpha.router, "--json", "sub", "jobs",
                          "--durable",        "worker-1", "--poll-ms",    "50",     NULL};
    mesh_proc_t *sub = mesh_start (argv, NULL, false);
    usleep (300000);
    SHOAL ("j6\n", NULL, NULL, "--node", s_alpha.router, "pub", "jobs", "Job");
    char line[4096];
    bool got =
        mesh_wait_line (sub, "{", line, sizeof line, 10) == 0 && tap_contains (line, "\"seq\":6");
    mesh_signal (sub, SIGINT, false);
    rc = mesh_wait (sub, 10);
    ok (got && rc == 0, "a durable sub prints a new event and ends on SIGINT with exit 0");
    mesh_stop (&sub);
    SHOAL ("j7\n", NULL, NULL, "--node", s_alpha.router, "pub", "jobs", "Job");
    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "--json", "sub", "jobs", "--durable",
                "worker-1", "--count", "1");
    s_seqs (out, seqs, sizeof seqs);
    ok (rc == 0 && streq (seqs, "7"),
        "after SIGINT the consumer goes on after the last event it printed (%s)", seqs);
    free (out);
    free (err);
    //  Another consumer is independent; --from sets where it starts.
    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "--json", "sub", "jobs", "--durable",
                "worker-2", "--from", "6", "--count", "2");
    s_seqs (out, seqs, sizeof seqs);
    ok (rc == 0 && streq (seqs, "6,7"),
        "a second consumer is independent and starts at --from (%s)", seqs);
    free (out);
    free (err);
}

static void
test_replay (void)
{
    char *out = NULL, *err = NULL;
    json_t *values[16];
    int rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "--json", "replay", "--origin",
                    s_alpha.id, "orders", "--from", "2", "--to", "3");
    int count = s_json_lines (out, values, 16);
    ok (rc == 0 && count == 2 && json_get_u64 (values[0], "seq", 0) == 2
            && json_get_u64 (values[1], "seq", 0) == 3,
        "replay --origin ID --from 2 --to 3 prints exactly seqs 2 and 3");
    s_free_values (values, count);
    free (out);
    free (err);

    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "replay", "--origin", "beta", "orders");
    ok (rc == 0 && tap_contains (out, "beta/orders/1 Line")
            && tap_contains (out, "beta/orders/4 Live"),
        "replay --origin NAME of a peer's log replays it from that peer");
    free (out);
    free (err);

    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "replay", "--origin", s_alpha.id,
                "orders", "--from", "100");
    ok (rc == 1 && tap_contains (err, "range not available")
            && tap_contains (err, "beyond the head"),
        "a range beyond the head: the node's error 3 is shown, exit 1");
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "replay", "--origin", s_alpha.id,
                "nosuchstream");
    ok (rc == 1 && tap_contains (err, "unknown stream or origin")
            && tap_contains (err, "shoal status"),
        "an unknown stream: error 2 is shown with what to do");
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "--node", s_alpha.router, "replay", "--origin", "nobody",
                "orders");
    ok (rc == 1 && tap_contains (err, "no origin \"nobody\""), "an unknown origin name exits 1");
    free (out);
    free (err);
}

static void
test_log (void)
{
    char *out = NULL, *err = NULL;
    int rc = SHOAL (NULL, &out, &err, "log", "verify", s_alpha.data);
    ok (rc == 1 && tap_contains (err, "in use by a running shoald"),
        "log verify refuses a data directory a running shoald holds");
    free (out);
    free (err);

    //  Stop alpha cleanly, then look at its files.
    mesh_signal (s_alpha.proc, SIGTERM, false);
    is_int (mesh_wait (s_alpha.proc, 10), 0, "alpha stops cleanly on SIGTERM");
    rc = SHOAL (NULL, &out, &err, "log", "verify", s_alpha.data);
    ok (rc == 0 && tap_contains (out, "ok: 2 log(s), 10 records, no problems"),
        "log verify of a healthy data directory exits 0");
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "--json", "log", "verify", s_alpha.data);
    json_t *summary = json_parse (out, out ? strlen (out) : 0);
    ok (rc == 0 && json_get_u64 (summary, "problems", 99) == 0
            && json_get_u64 (summary, "records", 0) == 10,
        "log verify --json prints a summary object");
    json_free (summary);
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "--json", "log", "dump", s_alpha.data);
    json_t *values[16];
    int count = s_json_lines (out, values, 16);
    ok (rc == 0 && count == 10 && json_get_u64 (values[9], "seq", 0) == 3
            && streq (json_get_string (values[0], "origin") ?: "", s_alpha.id),
        "log dump --json prints every stored event");
    s_free_values (values, count);
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "log", "dump", s_alpha.data, "--stream", "orders");
    ok (rc == 0 && tap_contains (out, "/orders/1 OrderPlaced key=order-1"),
        "log dump prints for people");
    free (out);
    free (err);

    //  Damage a record in the middle of the segment.
    char logdir[4300], seg[4400];
    snprintf (logdir, sizeof logdir, "%s/logs/%s/orders", s_alpha.data, s_alpha.id);
    snprintf (seg, sizeof seg, "%s/00000000000000000001.seg", logdir);
    struct stat st;
    int fd = open (seg, O_RDWR);
    bool damaged = false;
    if (fd >= 0 && fstat (fd, &st) == 0 && st.st_size > 300) {
        uint8_t byte;
        off_t at = 128 + 32 + 10; //  inside the first record's payload
        if (pread (fd, &byte, 1, at) == 1) {
            byte ^= 0xff;
            damaged = pwrite (fd, &byte, 1, at) == 1;
        }
    }
    if (fd >= 0)
        close (fd);
    ok (damaged, "a byte of the first record is flipped");
    rc = SHOAL (NULL, &out, &err, "log", "verify", s_alpha.data);
    char expect[4500];
    snprintf (expect, sizeof expect, "%s:128: ", seg);
    ok (rc == 1 && tap_contains (out, expect) && tap_contains (out, "1 problem(s)"),
        "log verify reports the damage with file and offset, exit 1");
    if (!tap_contains (out, expect))
        diag ("stdout: %s", out);
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "log", "verify", logdir);
    ok (rc == 1 && tap_contains (out, expect), "log verify of one log directory finds it too");
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "log", "dump", s_alpha.data);
    ok (rc == 1 && !tap_contains (out, "/orders/1 ") && tap_contains (out, "/orders/2 ")
            && tap_contains (err, "skipped"),
        "log dump skips the damaged record, shows the others, exits 1");
    free (out);
    free (err);
    rc = SHOAL (NULL, &out, &err, "log", "verify", tap_tmpdir ());
    ok (rc == 1 && tap_contains (err, "neither a shoal data directory"),
        "log verify of a directory that is not a data directory exits 1");
    free (out);
    free (err);
}

int
main (void)
{
    plan_lazy ();
    if (s_start (&s_alpha, "alpha", NULL))
        bail ("alpha did not start");
    if (s_start (&s_beta, "beta", s_alpha.router))
        bail ("beta did not start");
    ok (s_wait_peered (), "beta peers with alpha through its static --peer");
    test_usage ();
    test_unreachable ();
    test_status_and_peers ();
    test_pub ();
    test_sub ();
    test_replay ();
    test_durable ();
    test_log ();
    mesh_signal (s_beta.proc, SIGTERM, false);
    is_int (mesh_wait (s_beta.proc, 10), 0, "beta stops cleanly on SIGTERM");
    mesh_stop (&s_alpha.proc);
    mesh_stop (&s_beta.proc);
    ok (!mesh_process_with (tap_tmpdir ()), "no process of this test is left running");
    return done_testing ();
}
