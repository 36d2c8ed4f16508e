/*  test_shoald - the node daemon as a user meets it: flags, config file,
    environment, defaults, the start line and endpoint file, the data
    directory's lock, a port in use, signals, and discovery on the
    loopback beacon.

    Only loopback: nodes use --interface none (static peers) or lo (the
    loopback beacon on a random port, with a mesh name of this run's own).
    Every process is killed by pid when the test ends. */

#include "shoal.h"
#include "mesh_util.h"
#include "tap.h"

#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define streq(a, b) (strcmp ((a), (b)) == 0)

#define S_START_TIMEOUT 10.0 //  seconds for a node to print its start line
#define S_RUN_TIMEOUT 15.0   //  seconds for a short command

//  What the start line tells.
typedef struct {
    char name[64];
    char id[33];
    char pub[128];
    char router[128];
    char data[4096];
} s_ready_t;

static int
s_parse_ready (const char *line, s_ready_t *ready)
{
    memset (ready, 0, sizeof *ready);
    return sscanf (line, "shoald: node %63s %32s pub %127s router %127s data %4095s", ready->name,
                   ready->id, ready->pub, ready->router, ready->data)
                   == 5
               ? 0
               : -1;
}

//  Starts shoald with args (NULL-terminated after the program) and waits
//  for its start line. NULL (the process stopped) when it does not come.
static mesh_proc_t *
s_start_node (const char *const *args, const char *const env[], s_ready_t *ready)
{
    mesh_proc_t *proc = mesh_start_bin ("shoald", args, env, false);
    char line[4500];
    if (mesh_wait_line (proc, "shoald: node ", line, sizeof line, S_START_TIMEOUT) == 0
        && s_parse_ready (line, ready) == 0)
        return proc;
    char *err = mesh_stderr (proc);
    diag ("shoald did not start: %s", err);
    free (err);
    mesh_stop (&proc);
    return NULL;
}

//  Runs shoald to completion; returns its exit status, *err its stderr.
static int
s_shoald (const char *const *args, const char *const env[], char **out, char **err)
{
    return mesh_run_bin ("shoald", args, env, NULL, S_RUN_TIMEOUT, out, err);
}

static void
s_write (const char *path, const char *text)
{
    FILE *file = fopen (path, "w");
    if (!file)
        bail ("cannot write %s", path);
    fputs (text, file);
    fclose (file);
}

static char *
s_read (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return NULL;
    char *text = (char *) calloc (1, 65536);
    size_t got = fread (text, 1, 65535, file);
    text[got] = 0;
    fclose (file);
    return text;
}

static void
test_help_and_version (void)
{
    char *out = NULL, *err = NULL;
    int rc = s_shoald ((const char *[]){"--help", NULL}, NULL, &out, &err);
    is_int (rc, 0, "--help exits 0");
    const char *flags[] = {"--name",
                           "--mesh",
                           "--data",
                           "--interface",
                           "--beacon-port",
                           "--peer",
                           "--pub",
                           "--router",
                           "--fsync",
                           "--replicate",
                           "--config",
                           "--secure",
                           "--keys",
                           "--log-level",
                           "--help",
                           "--version",
                           "--beacon-interval-ms",
                           "--heartbeat-ms",
                           "--suspect-ms",
                           "--expiry-ms",
                           "--max-event-size",
                           "--sndhwm",
                           "--rcvhwm",
                           "--segment-size",
                           "--dedupe-window",
                           "--reorder-limit",
                           "--retain-bytes",
                           "--retain-age",
                           "--max-peers",
                           "--max-replays",
                           "--max-replays-per-client",
                           "--replay-batch-events",
                           "--replay-batch-bytes",
                           "--max-logs",
                           "--max-consumers",
                           "--max-consumer-cursors",
                           "--max-origins"};
    bool all = true;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!tap_contains (out, flags[i])) {
            diag ("--help does not mention %s", flags[i]);
            all = false;
        }
    ok (all, "--help names every stable flag of DESIGN.md and every node setting");
    ok (tap_contains (out, "Exit status") && tap_contains (out, "3  the data directory is in use")
            && tap_contains (out, "4  an endpoint cannot be bound"),
        "--help documents the exit codes");
    free (out);
    free (err);
    rc = s_shoald ((const char *[]){"--version", NULL}, NULL, &out, &err);
    ok (rc == 0 && tap_contains (out, "shoald " SHOAL_VERSION_STRING), "--version prints %s",
        SHOAL_VERSION_STRING);
    free (out);
    free (err);
}

static void
test_usage_errors (void)
{
    struct {
        const char *args[4];
        const char *message;
        const char *name;
    } cases[] = {
        {{"--bogus", NULL}, "unknown option --bogus", "an unknown flag"},
        {{"extra", NULL}, "unexpected argument", "a stray argument"},
        {{"--fsync", "sometimes", NULL}, "use always, batch or never", "a bad --fsync"},
        {{"--beacon-port", "70000", NULL}, "from 1 to 65535", "a port out of range"},
        {{"--segment-size", "12Q", NULL}, "suffixes K, M, G", "a bad size"},
        {{"--peer", "127.0.0.1:7000", NULL}, "tcp://HOST:PORT", "a peer without tcp://"},
        {{"--log-level", "loud", NULL}, "error, warning, info or debug", "a bad --log-level"},
        {{"--name", NULL}, "--name needs a value", "a flag without its value"},
        {{"--interface", "nosuchif0", NULL},
         "no network interface",
         "an interface that does not exist"},
        {{"--retain-age", "7x", NULL}, "is not an age", "a bad --retain-age"},
        {{"--replicate", "Bad_Stream", NULL},
         "neither \"all\" nor a stream name",
         "a bad --replicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *err = NULL;
        int rc = s_shoald (cases[i].args, NULL, NULL, &err);
        ok (rc == 2 && tap_contains (err, cases[i].message), "%s exits 2 and says what is wrong",
            cases[i].name);
        if (rc != 2 || !tap_contains (err, cases[i].message))
            diag ("rc %d, stderr: %s", rc, err);
        free (err);
    }
    //  CURVE settings that cannot work are refused, not ignored (secure
    //  mode itself is tested in test_secure).
    char *err = NULL;
    int rc = s_shoald ((const char *[]){"--interface", "none", "--secure", NULL}, NULL, NULL, &err);
    ok (rc == 2 && tap_contains (err, "--secure needs --keys DIR"),
        "--secure without --keys is refused with exit 2");
    free (err);
    rc = s_shoald ((const char *[]){"--interface", "none", "--keys", tap_tmpdir (), NULL}, NULL,
                   NULL, &err);
    ok (rc == 2 && tap_contains (err, "add --secure"), "--keys without --secure is refused too");
    free (err);
    rc = s_shoald ((const char *[]){"--interface", "none", NULL},
                   (const char *[]){"SHOAL_SECURE=maybe", NULL}, NULL, &err);
    ok (rc == 2 && tap_contains (err, "SHOAL_SECURE"),
        "a SHOAL_SECURE that is not yes or no is refused");
    free (err);
}

static void
test_config_file (void)
{
    char path[4200];
    snprintf (path, sizeof path, "%s/bad-indent.cfg", tap_tmpdir ());
    s_write (path, "# a comment\nshoald\n    name = alpha\n   mesh = beta\n");
    char *err = NULL, *out = NULL;
    int rc = s_shoald ((const char *[]){"--config", path, NULL}, NULL, NULL, &err);
    char expect[4300];
    snprintf (expect, sizeof expect, "%s:4: ", path);
    ok (rc == 2 && tap_contains (err, expect),
        "a badly indented line is reported as FILE:4 with exit 2");
    if (!tap_contains (err, expect))
        diag ("stderr: %s", err);
    free (err);

    snprintf (path, sizeof path, "%s/unknown-key.cfg", tap_tmpdir ());
    s_write (path, "shoald\n    name = alpha\n\n    # colour is not a setting\n    colour = red\n");
    rc = s_shoald ((const char *[]){"--config", path, NULL}, NULL, NULL, &err);
    snprintf (expect, sizeof expect, "%s:5: unknown setting \"colour\"", path);
    ok (rc == 2 && tap_contains (err, expect), "an unknown key is reported as FILE:5 with exit 2");
    if (!tap_contains (err, expect))
        diag ("stderr: %s", err);
    free (err);

    snprintf (path, sizeof path, "%s/bad-value.cfg", tap_tmpdir ());
    s_write (path, "shoald\n    mesh = m\n    fsync = sometimes   # not a policy\n");
    rc = s_shoald ((const char *[]){"--config", path, NULL}, NULL, NULL, &err);
    snprintf (expect, sizeof expect, "%s:3: \"sometimes\" is not an fsync policy", path);
    ok (rc == 2 && tap_contains (err, expect), "a bad value is reported as FILE:3 with exit 2");
    free (err);

    snprintf (path, sizeof path, "%s/quote.cfg", tap_tmpdir ());
    s_write (path, "shoald\n    name = \"alpha\n");
    rc = s_shoald ((const char *[]){"--config", path, NULL}, NULL, &out, &err);
    snprintf (expect, sizeof expect, "%s:2: missing closing \"", path);
    ok (rc == 2 && tap_contains (err, expect) && out && !*out,
        "a missing quote is reported as FILE:2, and nothing reaches stdout");
    free (err);
    free (out);

    snprintf (path, sizeof path, "%s/section.cfg", tap_tmpdir ());
    s_write (path, "node\n    name = alpha\n");
    rc = s_shoald ((const char *[]){"--config", path, NULL}, NULL, NULL, &err);
    snprintf (expect, sizeof expect, "%s:1: unknown section \"node\"", path);
    ok (rc == 2 && tap_contains (err, expect), "a section other than shoald is reported as FILE:1");
    free (err);

    rc = s_shoald ((const char *[]){"--config", "/nonexistent/shoald.cfg", NULL}, NULL, NULL, &err);
    ok (rc == 2 && tap_contains (err, "cannot read config file /nonexistent/shoald.cfg"),
        "a missing config file exits 2 naming it");
    free (err);
}

//  The value of KEY in --print-config output, or "".
static const char *
s_config_value (const char *text, const char *key)
{
    static char value[512];
    value[0] = 0;
    char pattern[80];
    snprintf (pattern, sizeof pattern, "\n    %s = \"", key);
    const char *at = text ? strstr (text, pattern) : NULL;
    if (at) {
        at += strlen (pattern);
        size_t length = strcspn (at, "\"");
        snprintf (value, sizeof value, "%.*s", (int) length, at);
    }
    return value;
}

static void
test_precedence_and_defaults (void)
{
    char path[4200];
    snprintf (path, sizeof path, "%s/layers.cfg", tap_tmpdir ());
    s_write (path, "shoald\n"
                   "    name = from-file\n"
                   "    mesh = from-file\n"
                   "    beacon-port = 7000\n"
                   "    peer = tcp://127.0.0.1:1001\n"
                   "    peer = tcp://127.0.0.1:1002\n"
                   "    fsync = always\n");
    char *out = NULL, *err = NULL;
    int rc = s_shoald ((const char *[]){"--config", path, "--beacon-port", "7002", "--interface",
                                        "none", "--print-config", NULL},
                       (const char *[]){"SHOAL_MESH=from-env", "SHOAL_BEACON_PORT=7001", NULL},
                       &out, &err);
    is_int (rc, 0, "--print-config exits 0");
    is_str (s_config_value (out, "name"), "from-file", "the config file overrides the default");
    is_str (s_config_value (out, "mesh"), "from-env", "the environment overrides the config file");
    is_str (s_config_value (out, "beacon-port"), "7002",
            "the command line overrides the environment");
    ok (tap_contains (out, "peer = \"tcp://127.0.0.1:1001\"")
            && tap_contains (out, "peer = \"tcp://127.0.0.1:1002\""),
        "repeated peer lines in the config file make a list");
    free (out);
    free (err);

    rc = s_shoald (
        (const char *[]){"--config", path, "--interface", "none", "--print-config", NULL},
        (const char *[]){"SHOAL_PEER=tcp://127.0.0.1:2001,tcp://127.0.0.1:2002", NULL}, &out, &err);
    ok (rc == 0 && !tap_contains (out, ":1001") && tap_contains (out, ":2001")
            && tap_contains (out, ":2002"),
        "SHOAL_PEER replaces the config file's peers");
    free (out);
    free (err);
    rc = s_shoald ((const char *[]){"--config", path, "--interface", "none", "--peer",
                                    "tcp://127.0.0.1:3001", "--print-config", NULL},
                   (const char *[]){"SHOAL_PEER=tcp://127.0.0.1:2001", NULL}, &out, &err);
    ok (rc == 0 && !tap_contains (out, ":2001") && !tap_contains (out, ":1001")
            && tap_contains (out, ":3001"),
        "--peer replaces the environment's peers");
    free (out);
    free (err);

    //  Defaults: XDG data directory, host name, mesh default, fsync batch.
    char xdg[4200], expect[4300], host[256] = "";
    snprintf (xdg, sizeof xdg, "XDG_DATA_HOME=%s/xdg", tap_tmpdir ());
    gethostname (host, sizeof host - 1);
    host[63] = 0;
    rc = s_shoald ((const char *[]){"--interface", "none", "--print-config", NULL},
                   (const char *[]){xdg, NULL}, &out, &err);
    snprintf (expect, sizeof expect, "%s/xdg/shoal", tap_tmpdir ());
    is_str (s_config_value (out, "data"), expect,
            "the data directory defaults to $XDG_DATA_HOME/shoal");
    is_str (s_config_value (out, "name"), host, "the name defaults to the host name");
    is_str (s_config_value (out, "mesh"), "default", "the mesh defaults to \"default\"");
    is_str (s_config_value (out, "fsync"), "batch", "fsync defaults to batch");
    free (out);
    free (err);
    //  The default interface is only looked up here (--print-config starts
    //  nothing, so nothing is broadcast).
    rc = s_shoald ((const char *[]){"--print-config", NULL}, NULL, &out, &err);
    const char *interface = s_config_value (out, "interface");
    ok (rc == 0 && *interface && !streq (interface, "lo")
            && (streq (interface, "none") || if_nametoindex (interface) > 0),
        "the interface defaults to a real non-loopback one (or none when there is none): %s",
        interface);
    free (out);
    free (err);
    char home[4200];
    snprintf (home, sizeof home, "HOME=%s/home2", tap_tmpdir ());
    rc = s_shoald ((const char *[]){"--interface", "none", "--print-config", NULL},
                   (const char *[]){home, "XDG_DATA_HOME=", NULL}, &out, &err);
    snprintf (expect, sizeof expect, "%s/home2/.local/share/shoal", tap_tmpdir ());
    is_str (s_config_value (out, "data"), expect,
            "without XDG_DATA_HOME it is ~/.local/share/shoal");
    free (out);
    free (err);
}

static void
test_run_and_stop (void)
{
    char data[4200];
    snprintf (data, sizeof data, "%s/node-a", tap_tmpdir ());
    s_ready_t ready;
    mesh_proc_t *node = s_start_node (
        (const char *[]){"--data", data, "--interface", "none", "--name", "alpha", NULL}, NULL,
        &ready);
    ok (node != NULL, "shoald starts and prints its start line");
    if (!node) {
        skip (13, "shoald did not start");
        return;
    }
    is_str (ready.name, "alpha", "the start line names the node");
    ok (strlen (ready.id) == 32, "the start line gives the 32-hex node id");
    ok (strncmp (ready.router, "tcp://127.0.0.1:", 16) == 0
            && strncmp (ready.pub, "tcp://127.0.0.1:", 16) == 0,
        "with interface none the node binds loopback only");
    is_str (ready.data, data, "the start line gives the data directory");
    char endpoint_path[4300];
    snprintf (endpoint_path, sizeof endpoint_path, "%s/shoald.endpoint", data);
    char *endpoint = s_read (endpoint_path);
    char expect[200];
    snprintf (expect, sizeof expect, "%s\n", ready.router);
    is_str (endpoint, expect, "DATA/shoald.endpoint holds the ROUTER endpoint");
    free (endpoint);

    //  A second shoald on the same directory.
    char *err = NULL;
    int rc =
        s_shoald ((const char *[]){"--data", data, "--interface", "none", NULL}, NULL, NULL, &err);
    char pid[32];
    snprintf (pid, sizeof pid, "process %d", (int) node->pid);
    is_int (rc, 3, "a second shoald on the same data directory exits 3");
    ok (tap_contains (err, data) && tap_contains (err, pid) && tap_contains (err, "--data"),
        "its message names the directory, the pid holding it, and --data");
    if (!tap_contains (err, pid))
        diag ("stderr: %s", err);
    free (err);
    endpoint = s_read (endpoint_path);
    is_str (endpoint, expect, "the refused shoald leaves the endpoint file alone");
    free (endpoint);

    //  A port in use.
    char other[4200];
    snprintf (other, sizeof other, "%s/node-b", tap_tmpdir ());
    rc = s_shoald (
        (const char *[]){"--data", other, "--interface", "none", "--router", ready.router, NULL},
        NULL, NULL, &err);
    is_int (rc, 4, "a ROUTER endpoint in use exits 4");
    ok (tap_contains (err, ready.router) && tap_contains (err, "--router"),
        "its message names the endpoint and the flag to change it");
    free (err);
    rc = s_shoald (
        (const char *[]){"--data", other, "--interface", "none", "--pub", ready.pub, NULL}, NULL,
        NULL, &err);
    ok (rc == 4 && tap_contains (err, "--pub"), "a PUB endpoint in use exits 4 and names --pub");
    free (err);

    //  SIGTERM: clean stop.
    mesh_signal (node, SIGTERM, false);
    rc = mesh_wait (node, 10);
    is_int (rc, 0, "SIGTERM stops shoald with exit 0");
    ok (access (endpoint_path, F_OK) != 0, "the endpoint file is removed on a clean stop");
    err = mesh_stderr (node);
    ok (tap_contains (err, "SIGTERM received") && tap_contains (err, "stopped cleanly")
            && tap_contains (err, " info: "),
        "the log says why and that it stopped cleanly, with levels");
    free (err);
    mesh_stop (&node);

    //  Restart: same id; SIGINT stops it too.
    s_ready_t again;
    node =
        s_start_node ((const char *[]){"--data", data, "--interface", "none", NULL}, NULL, &again);
    ok (node && streq (again.id, ready.id), "the node id survives a restart");
    if (node) {
        mesh_signal (node, SIGINT, false);
        is_int (mesh_wait (node, 10), 0, "SIGINT stops shoald with exit 0");
        mesh_stop (&node);
    }
    else
        skip (1, "no node");
}

static void
test_log_level_and_errors (void)
{
    char data[4200];
    snprintf (data, sizeof data, "%s/quiet", tap_tmpdir ());
    s_ready_t ready;
    mesh_proc_t *node = s_start_node (
        (const char *[]){"--data", data, "--interface", "none", "--log-level", "error", NULL}, NULL,
        &ready);
    if (node) {
        mesh_signal (node, SIGTERM, false);
        int rc = mesh_wait (node, 10);
        char *err = mesh_stderr (node);
        ok (rc == 0 && *err == 0, "--log-level error keeps info lines out of the log");
        free (err);
        mesh_stop (&node);
    }
    else
        skip (1, "no node");

    //  A data directory that cannot be made: its parent is a file.
    char file[4200], below[4300];
    snprintf (file, sizeof file, "%s/a-file", tap_tmpdir ());
    s_write (file, "not a directory\n");
    snprintf (below, sizeof below, "%s/data", file);
    char *err = NULL;
    int rc =
        s_shoald ((const char *[]){"--data", below, "--interface", "none", NULL}, NULL, NULL, &err);
    ok (rc == 1 && tap_contains (err, "cannot create data directory") && tap_contains (err, below)
            && tap_contains (err, "--data"),
        "a data directory that cannot be made exits 1 naming it and --data");
    free (err);

    //  A config file that makes a working node.
    char path[4200], data2[4200], text[8600];
    snprintf (path, sizeof path, "%s/good.cfg", tap_tmpdir ());
    snprintf (data2, sizeof data2, "%s/from-config", tap_tmpdir ());
    snprintf (text, sizeof text,
              "shoald\n    name = configured\n    data = %s\n    interface = none\n"
              "    fsync = always\n",
              data2);
    s_write (path, text);
    node = s_start_node ((const char *[]){"--config", path, NULL}, NULL, &ready);
    ok (node && streq (ready.name, "configured") && streq (ready.data, data2),
        "a node runs with the settings of its config file");
    if (node) {
        mesh_signal (node, SIGTERM, false);
        mesh_wait (node, 10);
        mesh_stop (&node);
    }
}

//  Loopback beacon: two nodes of a mesh of this run find each other, and
//  a clean stop tells the other at once (leaving beacon).
static void
test_loopback_discovery (void)
{
    char mesh[64], port[16], a_dir[4200], b_dir[4200];
    snprintf (mesh, sizeof mesh, "test-shoald-%d-%ld", (int) getpid (), (long) time (NULL));
    snprintf (port, sizeof port, "%d", 20000 + (int) (getpid () % 20000));
    snprintf (a_dir, sizeof a_dir, "%s/lo-a", tap_tmpdir ());
    snprintf (b_dir, sizeof b_dir, "%s/lo-b", tap_tmpdir ());
    s_ready_t a_ready, b_ready;
    //  Expiry far away: only a leaving beacon can make the peer go fast.
    mesh_proc_t *a = s_start_node (
        (const char *[]){"--data", a_dir, "--name", "lo-a", "--interface", "lo", "--mesh", mesh,
                         "--beacon-port", port, "--beacon-interval-ms", "200", "--expiry-ms",
                         "60000", "--suspect-ms", "30000", NULL},
        NULL, &a_ready);
    mesh_proc_t *b = s_start_node (
        (const char *[]){"--data", b_dir, "--name", "lo-b", "--interface", "lo", "--mesh", mesh,
                         "--beacon-port", port, "--beacon-interval-ms", "200", "--expiry-ms",
                         "60000", "--suspect-ms", "30000", NULL},
        NULL, &b_ready);
    if (!a || !b) {
        mesh_stop (&a);
        mesh_stop (&b);
        skip (2, "nodes did not start");
        return;
    }
    const char *argv[] = {mesh_bin ("shoal"), "--node", a_ready.router, "--json", "peers", NULL};
    bool found = false;
    double deadline = tap_now () + 10;
    while (!found && tap_now () < deadline) {
        char *out = NULL;
        mesh_run (argv, NULL, NULL, S_RUN_TIMEOUT, &out, NULL);
        found = tap_contains (out, b_ready.id) && tap_contains (out, "\"connected\"");
        free (out);
        if (!found)
            usleep (200000);
    }
    ok (found, "two nodes on the loopback beacon discover each other");
    mesh_signal (b, SIGTERM, false);
    mesh_wait (b, 10);
    bool gone = false;
    deadline = tap_now () + 5;
    while (!gone && tap_now () < deadline) {
        char *out = NULL;
        int rc = mesh_run (argv, NULL, NULL, S_RUN_TIMEOUT, &out, NULL);
        gone = rc == 0 && !tap_contains (out, b_ready.id);
        free (out);
        if (!gone)
            usleep (200000);
    }
    ok (gone, "a node stopped with SIGTERM leaves its peer's table at once (leaving beacon)");
    mesh_signal (a, SIGTERM, false);
    mesh_wait (a, 10);
    mesh_stop (&a);
    mesh_stop (&b);
}

//  --replicate reaches the node: a peer's log of that stream shows up in
//  its status.
static void
test_replicate (void)
{
    char a_dir[4200], b_dir[4200];
    snprintf (a_dir, sizeof a_dir, "%s/rep-a", tap_tmpdir ());
    snprintf (b_dir, sizeof b_dir, "%s/rep-b", tap_tmpdir ());
    s_ready_t a_ready, b_ready;
    mesh_proc_t *a =
        s_start_node ((const char *[]){"--data", a_dir, "--name", "rep-a", "--interface", "none",
                                       "--heartbeat-ms", "200", NULL},
                      NULL, &a_ready);
    mesh_proc_t *b =
        a ? s_start_node ((const char *[]){"--data", b_dir, "--name", "rep-b", "--interface",
                                           "none", "--peer", a_ready.router, "--replicate",
                                           "orders", "--heartbeat-ms", "200", NULL},
                          NULL, &b_ready)
          : NULL;
    if (!a || !b) {
        mesh_stop (&a);
        mesh_stop (&b);
        skip (1, "nodes did not start");
        return;
    }
    const char *pub[] = {
        mesh_bin ("shoal"), "--node", a_ready.router, "pub", "orders", "Rep", NULL};
    mesh_run (pub, NULL, "one\ntwo\nthree\n", S_RUN_TIMEOUT, NULL, NULL);
    const char *status[] = {mesh_bin ("shoal"), "--node", b_ready.router, "--json", "status", NULL};
    char expect[128];
    snprintf (expect, sizeof expect,
              "{\"origin\":\"%s\",\"stream\":\"orders\",\"first_seq\":1,"
              "\"head_seq\":3}",
              a_ready.id);
    bool replicated = false;
    double deadline = tap_now () + 10;
    while (!replicated && tap_now () < deadline) {
        char *out = NULL;
        mesh_run (status, NULL, NULL, S_RUN_TIMEOUT, &out, NULL);
        replicated = tap_contains (out, expect);
        free (out);
        if (!replicated)
            usleep (200000);
    }
    ok (replicated, "--replicate orders: the node keeps a replica of its peer's orders log");
    mesh_signal (a, SIGTERM, false);
    mesh_signal (b, SIGTERM, false);
    mesh_wait (a, 10);
    mesh_wait (b, 10);
    mesh_stop (&a);
    mesh_stop (&b);
}

//  A node's Status as `shoal --json status` prints it: how many logs of
//  stream it holds, and *refused its origins_refused counter.
static size_t
s_status_logs (const char *router, const char *stream, uint64_t *refused)
{
    const char *status[] = {mesh_bin ("shoal"), "--node", router, "--json", "status", NULL};
    char *out = NULL;
    mesh_run (status, NULL, NULL, S_RUN_TIMEOUT, &out, NULL);
    json_t *reply = out ? json_parse (out, strlen (out)) : NULL;
    *refused = json_get_u64 (json_get (reply, "counters"), "origins_refused", 0);
    json_t *logs = json_get (reply, "logs");
    size_t count = 0;
    for (size_t i = 0; i < json_count (logs); i++) {
        const char *name = json_get_string (json_at (logs, i), "stream");
        count += name && streq (name, stream);
    }
    json_free (reply);
    free (out);
    return count;
}

//  --max-origins reaches the node: replicating a stream written by two
//  origins, a node allowed one follows one, and its Status counts the
//  other in origins_refused.
static void
test_max_origins (void)
{
    char dirs[3][4200];
    const char *names[] = {"orig-a", "orig-b", "orig-c"};
    for (int i = 0; i < 3; i++)
        snprintf (dirs[i], sizeof dirs[i], "%s/%s", tap_tmpdir (), names[i]);
    s_ready_t ready[3];
    mesh_proc_t *procs[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 2; i++)
        procs[i] =
            s_start_node ((const char *[]){"--data", dirs[i], "--name", names[i], "--interface",
                                           "none", "--heartbeat-ms", "200", NULL},
                          NULL, &ready[i]);
    if (procs[0] && procs[1])
        procs[2] = s_start_node (
            (const char *[]){"--data", dirs[2], "--name", names[2], "--interface", "none", "--peer",
                             ready[0].router, "--peer", ready[1].router, "--replicate", "orders",
                             "--max-origins", "1", "--heartbeat-ms", "200", NULL},
            NULL, &ready[2]);
    ok (procs[2] != NULL, "shoald starts with --max-origins 1");
    if (!procs[2]) {
        for (int i = 0; i < 3; i++)
            mesh_stop (&procs[i]);
        skip (2, "nodes did not start");
        return;
    }
    for (int i = 0; i < 2; i++) {
        const char *pub[] = {
            mesh_bin ("shoal"), "--node", ready[i].router, "pub", "orders", "Tick", NULL};
        mesh_run (pub, NULL, "one\ntwo\n", S_RUN_TIMEOUT, NULL, NULL);
    }
    uint64_t refused = 0;
    size_t replicas = 0;
    double deadline = tap_now () + 10;
    while ((refused == 0 || replicas == 0) && tap_now () < deadline) {
        replicas = s_status_logs (ready[2].router, "orders", &refused);
        if (refused == 0 || replicas == 0)
            usleep (200000);
    }
    ok (refused > 0,
        "--max-origins 1: the second origin is counted in origins_refused (%" PRIu64 ")", refused);
    //  A moment more: the refused origin's heartbeats and events keep coming.
    usleep (600000);
    replicas = s_status_logs (ready[2].router, "orders", &refused);
    is_int ((long long) replicas, 1,
            "--max-origins 1: one origin's orders are replicated, not two");
    for (int i = 0; i < 3; i++)
        mesh_signal (procs[i], SIGTERM, false);
    for (int i = 0; i < 3; i++) {
        mesh_wait (procs[i], 10);
        mesh_stop (&procs[i]);
    }
}

int
main (void)
{
    plan_lazy ();
    test_help_and_version ();
    test_usage_errors ();
    test_config_file ();
    test_precedence_and_defaults ();
    test_run_and_stop ();
    test_log_level_and_errors ();
    test_loopback_discovery ();
    test_replicate ();
    test_max_origins ();
    ok (!mesh_process_with (tap_tmpdir ()), "no process of this test is left running");
    return done_testing ();
}
