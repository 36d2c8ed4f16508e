/*  test_secure - secure mode (CURVE, allow-list, ZAP), promise 8: only
    members get in, and all traffic is encrypted.

    Real shoald processes on loopback: a and b are members (b's key is
    allowed while it runs), c is a stranger node whose own allow-list
    trusts a and b but whose key the mesh does not allow, x is a stranger
    client. The test checks that members discover each other and exchange
    events; that the stranger is not discovered and cannot connect,
    subscribe, replay or publish (each tried, each refused and counted);
    that revoking b's key cuts it off from a running a (no restart); and
    that a marker payload never shows on the wire in secure mode, while it
    does with two insecure nodes (so the capture check can fail).

    The capture is an AF_PACKET socket on lo that reads only TCP segments
    to or from the ports of this test's nodes (root only; skipped
    otherwise). Beacons go to a UDP port of this run on the loopback
    beacon. Every process is killed by pid when the test ends. */

#include "shoal.h"
#include "mesh_util.h"
#include "tap.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_RUN_TIMEOUT 20.0
#define S_MARKER "TOP-SECRET-MARKER-7f3a9c"

typedef struct {
    mesh_proc_t *proc; //  the shoald process
    char name[64];     //  from its start line
    char id[33];       //  node id, hex
    char pub[128];     //  PUB endpoint
    char router[128];  //  ROUTER endpoint
    char data[4096];   //  data directory
    char spec[200];    //  ROUTER#KEY in secure mode (from shoald.endpoint), else ROUTER
} s_node_t;

static char s_mesh[64];
static char s_beacon_port[16];
static char s_keys[4096];   //  the mesh's allow-list
static char s_keys_c[4096]; //  the stranger's own allow-list
static char s_certs[4096];  //  where the test's certificates are made

static const char *
s_cert (const char *name)
{
    static char path[4200];
    snprintf (path, sizeof path, "%s/%s.cert", s_certs, name);
    return path;
}

//  Runs shoal with args (NULL-terminated); returns the exit status.
static int
s_shoal (char **out, char **err, const char *const *args)
{
    return mesh_run_bin ("shoal", args, NULL, NULL, S_RUN_TIMEOUT, out, err);
}

#define SHOAL(out, err, ...) s_shoal ((out), (err), (const char *[]){__VA_ARGS__, NULL})

//  Starts shoald named name; secure when keys is not NULL. extra: more
//  arguments (NULL-terminated, may be NULL). 0, or -1 when it did not start.
static int
s_start (s_node_t *node, const char *name, const char *keys, const char *cert,
         const char *const *extra)
{
    snprintf (node->data, sizeof node->data, "%s/%s", tap_tmpdir (), name);
    const char *args[63];
    size_t n = 0;
    const char *base[] = {"--data",         node->data, "--name",        name,
                          "--mesh",         s_mesh,     "--beacon-port", s_beacon_port,
                          "--heartbeat-ms", "200",      "--log-level",   "info"};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        args[n++] = base[i];
    if (keys) {
        args[n++] = "--secure";
        args[n++] = "--keys";
        args[n++] = keys;
    }
    if (cert) {
        args[n++] = "--cert";
        args[n++] = cert;
    }
    for (size_t i = 0; extra && extra[i] && n < 62; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    node->proc = mesh_start_bin ("shoald", args, NULL, false);
    char line[4500];
    if (mesh_wait_line (node->proc, "shoald: node ", line, sizeof line, 10) != 0
        || sscanf (line, "shoald: node %63s %32s pub %127s router %127s", node->name, node->id,
                   node->pub, node->router)
               != 4) {
        char *err = mesh_stderr (node->proc);
        diag ("shoald %s did not start: %s", name, err);
        free (err);
        return -1;
    }
    char path[4200];
    snprintf (path, sizeof path, "%s/shoald.endpoint", node->data);
    FILE *file = fopen (path, "r");
    if (!file || !fgets (node->spec, sizeof node->spec, file))
        node->spec[0] = 0;
    if (file)
        fclose (file);
    node->spec[strcspn (node->spec, "\r\n")] = 0;
    return 0;
}

static int
s_port (const char *endpoint)
{
    const char *colon = strrchr (endpoint, ':');
    return colon ? atoi (colon + 1) : 0;
}

//  The node's Status as JSON, asked with certificate cert (NULL = none).
//  NULL when the node did not answer.
static json_t *
s_status (const s_node_t *node, const char *cert)
{
    char *out = NULL;
    int rc =
        cert ? SHOAL (&out, NULL, "--node", node->spec, "--cert", cert, "--timeout", "3000",
                      "--json", "status")
             : SHOAL (&out, NULL, "--node", node->spec, "--timeout", "3000", "--json", "status");
    json_t *status = rc == 0 && out ? json_parse (out, strlen (out)) : NULL;
    free (out);
    return status;
}

static uint64_t
s_counter (const json_t *status, const char *name)
{
    return json_get_u64 (json_get (status, "counters"), name, 0);
}

//  True when status lists peer id in state (NULL = any state).
static bool
s_has_peer (const json_t *status, const char *id, const char *state)
{
    json_t *peers = json_get (status, "peers");
    for (size_t i = 0; i < json_count (peers); i++) {
        json_t *peer = json_at (peers, i);
        const char *node = json_get_string (peer, "node");
        if (node && streq (node, id)
            && (!state
                || (json_get_string (peer, "state")
                    && streq (json_get_string (peer, "state"), state))))
            return true;
    }
    return false;
}

//  True when status lists a peer at ROUTER endpoint router (with or without #KEY).
static bool
s_has_endpoint (const json_t *status, const char *router)
{
    json_t *peers = json_get (status, "peers");
    for (size_t i = 0; i < json_count (peers); i++) {
        const char *endpoint = json_get_string (json_at (peers, i), "endpoint");
        if (endpoint && strncmp (endpoint, router, strlen (router)) == 0)
            return true;
    }
    return false;
}

//  The head seq status shows for (origin, stream), 0 when it holds no such log.
static uint64_t
s_head (const json_t *status, const char *origin, const char *stream)
{
    json_t *logs = json_get (status, "logs");
    for (size_t i = 0; i < json_count (logs); i++) {
        json_t *log = json_at (logs, i);
        const char *o = json_get_string (log, "origin");
        const char *s = json_get_string (log, "stream");
        if (o && s && streq (o, origin) && streq (s, stream))
            return json_get_u64 (log, "head_seq", 0);
    }
    return 0;
}

//  Waits until `node` (asked with the client cert) holds seq `seq` of
//  (origin, stream). True when it does within timeout_s.
static bool
s_wait_head (const s_node_t *node, const char *cert, const char *origin, const char *stream,
             uint64_t seq, double timeout_s)
{
    double deadline = tap_now () + timeout_s;
    while (tap_now () < deadline) {
        json_t *status = s_status (node, cert);
        bool done = status && s_head (status, origin, stream) >= seq;
        json_free (status);
        if (done)
            return true;
        usleep (200000);
    }
    return false;
}

//  Waits until node lists peer (connected) or, with present false, does
//  not list it at all.
static bool
s_wait_peer (const s_node_t *node, const char *cert, const char *id, bool present, double timeout_s)
{
    double deadline = tap_now () + timeout_s;
    while (tap_now () < deadline) {
        json_t *status = s_status (node, cert);
        bool done = status && s_has_peer (status, id, present ? "connected" : NULL) == present;
        json_free (status);
        if (done)
            return true;
        usleep (200000);
    }
    return false;
}

//  --------------------------------------------------------------------------
//  Capture on lo: TCP payload bytes to or from the given ports

typedef struct {
    pthread_t thread;   //  reads the socket while the test runs (lo is busy: the
                        //  machine's other loopback traffic would fill its buffer)
    volatile bool stop; //  tells the thread to end
    int fd;             //  AF_PACKET socket bound to lo, -1 when not available
    int ports[8];       //  the ports that count
    size_t port_count;  //  entries in ports
    size_t bytes;       //  TCP payload bytes seen on those ports
    int hits;           //  segments that contained the marker
} s_capture_t;

static int
s_capture_open (s_capture_t *capture)
{
    memset (capture, 0, sizeof *capture);
    capture->fd = socket (AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons (ETH_P_ALL));
    if (capture->fd < 0)
        return -1;
    struct sockaddr_ll address;
    memset (&address, 0, sizeof address);
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons (ETH_P_ALL);
    address.sll_ifindex = (int) if_nametoindex ("lo");
    int size = 64 << 20;
    setsockopt (capture->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    if (address.sll_ifindex == 0
        || bind (capture->fd, (struct sockaddr *) &address, sizeof address)) {
        close (capture->fd);
        capture->fd = -1;
        return -1;
    }
    return 0;
}

static void
s_capture_port (s_capture_t *capture, int port)
{
    if (capture->port_count < 8)
        capture->ports[capture->port_count++] = port;
}

//  Reads what lo carries until told to stop.
static void *
s_capture_run (void *arg)
{
    s_capture_t *capture = (s_capture_t *) arg;
    static uint8_t packet[70000];
    while (!capture->stop) {
        struct pollfd item = {capture->fd, POLLIN, 0};
        if (poll (&item, 1, 50) <= 0)
            continue;
        ssize_t size;
        while ((size = recv (capture->fd, packet, sizeof packet, 0)) > 0) {
            //  lo frames: a 14-byte Ethernet header, then IPv4, then TCP.
            if (size < 14 + 20 + 20 || packet[12] != 0x08 || packet[13] != 0x00)
                continue;
            const uint8_t *ip = packet + 14;
            size_t ip_length = (size_t) (ip[0] & 0x0f) * 4;
            if ((ip[0] >> 4) != 4 || ip[9] != 6 || 14 + ip_length + 20 > (size_t) size)
                continue;
            const uint8_t *tcp = ip + ip_length;
            int source = (tcp[0] << 8) | tcp[1];
            int target = (tcp[2] << 8) | tcp[3];
            bool ours = false;
            for (size_t i = 0; i < capture->port_count; i++)
                ours = ours || capture->ports[i] == source || capture->ports[i] == target;
            size_t tcp_length = (size_t) (tcp[12] >> 4) * 4;
            size_t total = (size_t) ((ip[2] << 8) | ip[3]);
            if (!ours || total > (size_t) size - 14 || ip_length + tcp_length > total)
                continue;
            size_t payload = total - ip_length - tcp_length;
            capture->bytes += payload;
            if (payload && memmem (tcp + tcp_length, payload, S_MARKER, strlen (S_MARKER)))
                capture->hits++;
        }
    }
    return NULL;
}

static void
s_capture_start (s_capture_t *capture)
{
    capture->stop = false;
    if (pthread_create (&capture->thread, NULL, s_capture_run, capture))
        bail ("cannot start the capture thread");
}

//  Reads on for linger_s more, then stops and closes.
static void
s_capture_close (s_capture_t *capture, double linger_s)
{
    if (capture->fd < 0)
        return;
    usleep ((useconds_t) (linger_s * 1e6));
    capture->stop = true;
    pthread_join (capture->thread, NULL);
    close (capture->fd);
    capture->fd = -1;
}

//  --------------------------------------------------------------------------

static void
s_test_keys (void)
{
    char *out = NULL, *err = NULL;
    const char *names[] = {"a", "cli", "c", "x"};
    bool made = true;
    for (size_t i = 0; i < 4; i++)
        made = SHOAL (NULL, NULL, "keys", "new", names[i], "--dir", s_certs) == 0 && made;
    ok (made, "keys new makes a certificate pair for each of a, cli, c, x");
    struct stat info;
    ok (stat (s_cert ("a"), &info) == 0, "keys new wrote NAME.cert");
    char secret[4300];
    snprintf (secret, sizeof secret, "%s_secret", s_cert ("a"));
    ok (stat (secret, &info) == 0 && (info.st_mode & 077) == 0,
        "the secret certificate is readable by its owner only");
    is_int (SHOAL (NULL, &err, "keys", "new", "a", "--dir", s_certs), 1,
            "keys new refuses to overwrite a certificate");
    ok (tap_contains (err, "already exists"), "and says why");
    free (err);
    err = NULL;

    bool allowed = SHOAL (NULL, NULL, "keys", "allow", s_keys, s_cert ("a")) == 0
                   && SHOAL (NULL, NULL, "keys", "allow", s_keys, s_cert ("cli")) == 0;
    ok (allowed, "keys allow adds a and cli to the mesh's allow-list");
    is_int (SHOAL (&out, NULL, "keys", "allow", s_keys, s_cert ("a")), 0,
            "allowing a key twice is fine");
    ok (tap_contains (out, "allowed already"), "and says it was allowed already");
    free (out);
    out = NULL;
    is_int (SHOAL (NULL, &err, "keys", "allow", s_keys, "/dev/null"), 1,
            "keys allow refuses a file that is not a certificate");
    free (err);
    err = NULL;
    is_int (SHOAL (&out, NULL, "--json", "keys", "list", s_keys), 0, "keys list");
    int lines = 0;
    bool named = true;
    for (const char *p = out ? out : ""; *p;) {
        const char *eol = strchr (p, '\n');
        size_t length = eol ? (size_t) (eol - p) : strlen (p);
        json_t *entry = json_parse (p, length);
        const char *name = json_get_string (entry, "name");
        const char *key = json_get_string (entry, "key");
        named = named && name && key && strlen (key) == 40
                && (streq (name, "a") || streq (name, "cli"));
        json_free (entry);
        lines++;
        p = eol ? eol + 1 : p + length;
    }
    ok (lines == 2 && named, "keys list shows the two allowed keys with their names (%d)", lines);
    free (out);
    out = NULL;
    is_int (SHOAL (NULL, &err, "keys", "revoke", s_keys, "nobody"), 1,
            "keys revoke of an unknown name fails");
    free (err);
    err = NULL;
    //  The stranger's own allow-list trusts a, b and c: what keeps it out
    //  is the mesh's list, not its own.
    ok (SHOAL (NULL, NULL, "keys", "allow", s_keys_c, s_cert ("a")) == 0
            && SHOAL (NULL, NULL, "keys", "allow", s_keys_c, s_cert ("c")) == 0,
        "the stranger's own allow-list is made");
}

static void
s_test_usage (void)
{
    char *err = NULL;
    const char *argv1[] = {mesh_bin ("shoald"), "--data", tap_path ("u1"), "--interface", "none",
                           "--secure",          NULL};
    is_int (mesh_run (argv1, NULL, NULL, S_RUN_TIMEOUT, NULL, &err), 2,
            "shoald --secure without --keys is a usage error");
    ok (tap_contains (err, "--keys"), "and names --keys");
    free (err);
    err = NULL;
    const char *argv2[] = {mesh_bin ("shoald"),
                           "--data",
                           tap_path ("u2"),
                           "--interface",
                           "none",
                           "--keys",
                           s_keys,
                           NULL};
    is_int (mesh_run (argv2, NULL, NULL, S_RUN_TIMEOUT, NULL, &err), 2,
            "shoald --keys without --secure is a usage error");
    free (err);
    err = NULL;
    char data3[4200], missing[4200];
    snprintf (data3, sizeof data3, "%s", tap_path ("u3"));
    snprintf (missing, sizeof missing, "%s", tap_path ("no-such-dir"));
    const char *argv3[] = {mesh_bin ("shoald"), "--data", data3,   "--interface", "none",
                           "--secure",          "--keys", missing, NULL};
    is_int (mesh_run (argv3, NULL, NULL, S_RUN_TIMEOUT, NULL, &err), 2,
            "shoald --secure with a missing keys directory exits 2");
    ok (tap_contains (err, "not a directory"), "and says the keys directory is missing");
    free (err);
}

//  Embedded nodes: three in this process share its one ZAP handler, each
//  with an allow-list of its own. n1 and n2 allow each other; n3 is a
//  stranger to them (its own list trusts n1).
static shoal_node_t *
s_embedded (const char *name, const char *keys, const char *peer)
{
    char data[4200], cert[4300];
    snprintf (data, sizeof data, "%s/embedded-%s", tap_tmpdir (), name);
    snprintf (cert, sizeof cert, "%s/%s.cert", s_certs, name);
    shoal_node_config_t config;
    shoal_node_config_defaults (&config);
    config.name = name;
    config.mesh = s_mesh;
    config.data_dir = data;
    config.interface = "none";
    config.heartbeat_ms = 200;
    config.secure = true;
    config.keys_dir = keys;
    config.cert_path = cert;
    const char *peers[] = {peer};
    config.peers = peers;
    config.peer_count = peer ? 1 : 0;
    int error = 0;
    shoal_node_t *node = shoal_node_new (&config, &error);
    if (!node)
        diag ("embedded node %s: %s", name, shoal_node_start_error ());
    return node;
}

static void
s_test_embedded (void)
{
    char keys[4200], keys3[4200];
    snprintf (keys, sizeof keys, "%s/keys-embedded", tap_tmpdir ());
    snprintf (keys3, sizeof keys3, "%s/keys-n3", tap_tmpdir ());
    mkdir (keys, 0755);
    mkdir (keys3, 0755);
    const char *names[] = {"n1", "n2", "n3"};
    for (size_t i = 0; i < 3; i++)
        SHOAL (NULL, NULL, "keys", "new", names[i], "--dir", s_certs);
    ok (SHOAL (NULL, NULL, "keys", "allow", keys, s_cert ("n1")) == 0
            && SHOAL (NULL, NULL, "keys", "allow", keys, s_cert ("n2")) == 0
            && SHOAL (NULL, NULL, "keys", "allow", keys3, s_cert ("n1")) == 0,
        "embedded: allow-lists made");
    //  Files that are no certificate sit beside the allowed ones; the
    //  allow-list skips them and still admits exactly its members.
    char junk[4300];
    snprintf (junk, sizeof junk, "%s/notes.txt", keys);
    FILE *file = fopen (junk, "w");
    ok (file && fputs ("who may join: n1, n2\n", file) >= 0 && fclose (file) == 0,
        "embedded: a text file lies in n1's keys directory");
    snprintf (junk, sizeof junk, "%s/empty", keys);
    file = fopen (junk, "w");
    if (file)
        fclose (file);
    shoal_node_t *n1 = s_embedded ("n1", keys, NULL);
    ok (n1 != NULL, "embedded: a secure node starts in-process");
    if (!n1)
        return;
    char peer[300];
    snprintf (peer, sizeof peer, "%s#n1", shoal_node_router_endpoint (n1));
    shoal_node_t *n2 = s_embedded ("n2", keys, peer);
    shoal_node_t *n3 = s_embedded ("n3", keys3, peer);
    ok (n2 && n3, "embedded: two more secure nodes start in the same process (one ZAP handler)");
    if (!n2 || !n3) {
        shoal_node_destroy (&n2);
        shoal_node_destroy (&n3);
        shoal_node_destroy (&n1);
        return;
    }
    shoal_from_t beginning = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    shoal_node_subscribe (n2, "orders", NULL, &beginning);
    shoal_node_subscribe (n3, "orders", NULL, &beginning);
    shoal_event_t *event = shoal_event_new ();
    shoal_event_set_stream (event, "orders");
    shoal_event_set_type (event, "Placed");
    shoal_event_set_payload (event, "{}", 2);
    uint64_t seq = 0;
    ok (shoal_node_publish (n1, event, &seq, NULL) == 0
            && shoal_node_wait_durable (n1, "orders", seq, 5000) == 0,
        "embedded: n1 publishes");
    shoal_event_destroy (&event);
    shoal_event_t *got = NULL;
    double deadline = tap_now () + 15;
    while (!got && tap_now () < deadline)
        got = shoal_node_recv (n2, 200, NULL);
    ok (got && shoal_event_seq (got) == seq,
        "embedded: n2 (peer named ENDPOINT#NAME, allowed) receives n1's event");
    shoal_event_destroy (&got);
    deadline = tap_now () + 3;
    while (!got && tap_now () < deadline)
        got = shoal_node_recv (n3, 200, NULL);
    ok (!got, "embedded: n3 (key not allowed by n1) receives nothing");
    shoal_event_destroy (&got);
    shoal_node_stats_t stats;
    int stats_rc = shoal_node_stats (n1, &stats);
    ok (stats_rc == 0 && stats.auth_refused > 0,
        "embedded: n1 counted n3's refused handshakes (%llu)",
        (unsigned long long) stats.auth_refused);
    shoal_node_destroy (&n3);
    shoal_node_destroy (&n2);
    shoal_node_destroy (&n1);
    n1 = s_embedded ("n1", keys, NULL);
    ok (n1 != NULL, "embedded: the ZAP handler starts again after the last secure node stopped");
    shoal_node_destroy (&n1);
}

int
main (void)
{
    plan_lazy ();
    signal (SIGPIPE, SIG_IGN);
    snprintf (s_mesh, sizeof s_mesh, "secure-%d", (int) getpid ());
    snprintf (s_beacon_port, sizeof s_beacon_port, "%d", tap_free_port ());
    snprintf (s_keys, sizeof s_keys, "%s/keys", tap_tmpdir ());
    snprintf (s_keys_c, sizeof s_keys_c, "%s/keys-c", tap_tmpdir ());
    snprintf (s_certs, sizeof s_certs, "%s/certs", tap_tmpdir ());
    mkdir (s_keys, 0755);
    mkdir (s_keys_c, 0755);
    mkdir (s_certs, 0755);

    s_test_keys ();
    s_test_usage ();
    s_test_embedded ();
    const char *cli = strdup (s_cert ("cli"));

    //  Members: a with a certificate made beforehand, b with the one shoald
    //  makes in its data directory, allowed while b runs.
    s_node_t a, b, c, d, e;
    const char *lo[] = {"--interface", "lo", NULL};
    const char *lo_replicate[] = {"--interface", "lo", "--replicate", "all", NULL};
    if (s_start (&a, "a", s_keys, s_cert ("a"), lo)
        || s_start (&b, "b", s_keys, NULL, lo_replicate))
        bail ("secure nodes did not start");
    ok (tap_contains (a.spec, "#") && strlen (strchr (a.spec, '#') + 1) == 40,
        "a secure shoald writes ROUTER#KEY to its endpoint file");
    char b_cert[4200];
    snprintf (b_cert, sizeof b_cert, "%s/node.cert", b.data);
    struct stat info;
    ok (stat (b_cert, &info) == 0, "b made its keypair in its data directory");
    ok (SHOAL (NULL, NULL, "keys", "allow", s_keys, b_cert) == 0,
        "b's key is allowed while a and b run");
    ok (s_wait_peer (&a, cli, b.id, true, 20) && s_wait_peer (&b, cli, a.id, true, 20),
        "a and b discover each other (beacons with allowed keys) and connect over CURVE");

    //  A static peer without its key is not tried in secure mode.
    s_node_t f;
    char a_plain[200];
    snprintf (a_plain, sizeof a_plain, "%s", a.router);
    if (s_start (&f, "f", s_keys, NULL,
                 (const char *[]){"--interface", "none", "--peer", a_plain, NULL})
        == 0) {
        char *f_err = mesh_stderr (f.proc);
        ok (tap_contains (f_err, "needs its key"),
            "secure mode: a static peer without #KEY is ignored, with a warning");
        free (f_err);
    }
    else
        ok (false, "node f started");
    mesh_stop (&f.proc);

    //  An allowed client publishes; b replicates it; the wire shows no plaintext.
    s_capture_t capture;
    bool can_capture = s_capture_open (&capture) == 0;
    if (can_capture) {
        s_capture_port (&capture, s_port (a.pub));
        s_capture_port (&capture, s_port (a.router));
        s_capture_port (&capture, s_port (b.pub));
        s_capture_port (&capture, s_port (b.router));
        s_capture_start (&capture);
    }
    char *out = NULL, *err = NULL;
    is_int (SHOAL (&out, &err, "--node", a.spec, "--cert", cli, "pub", "secret", "Marked",
                   "--json-payload", "{\"text\":\"" S_MARKER "\"}", "--wait"),
            0, "an allowed client publishes through a");
    free (out);
    free (err);
    out = err = NULL;
    ok (s_wait_head (&b, cli, a.id, "secret", 1, 20),
        "b (allowed) receives a's event and replicates it");
    if (can_capture) {
        s_capture_close (&capture, 1.0);
        ok (capture.bytes > 0, "the capture saw the nodes' traffic on lo (%zu bytes)",
            capture.bytes);
        is_int (capture.hits, 0, "secure mode: the payload marker never appears on the wire");
    }
    else
        skip (2, "no AF_PACKET capture (needs root)");
    s_capture_close (&capture, 0);

    //  The stranger: its own list trusts a, and it names a as a static peer.
    json_t *before = s_status (&a, cli);
    uint64_t refused_before = s_counter (before, "auth_refused");
    uint64_t published_before = s_counter (before, "published");
    json_free (before);
    char a_peer[300];
    snprintf (a_peer, sizeof a_peer, "%s", a.spec);
    const char *stranger[] = {"--interface", "lo", "--replicate", "all", "--peer", a_peer, NULL};
    if (s_start (&c, "c", s_keys_c, s_cert ("c"), stranger))
        bail ("the stranger node did not start");
    sleep (4); //  beacons, Hellos, SUB connects and replays: each tried and refused
    json_t *status_a = s_status (&a, cli);
    json_t *status_b = s_status (&b, cli);
    json_t *status_c = s_status (&c, s_cert ("c"));
    ok (status_a && !s_has_peer (status_a, c.id, NULL),
        "a does not discover the stranger (its beacons are ignored)");
    ok (status_b && !s_has_peer (status_b, c.id, NULL), "nor does b");
    ok (s_counter (status_a, "auth_refused") > refused_before,
        "a counted the stranger's refused beacons and handshakes (%llu)",
        (unsigned long long) s_counter (status_a, "auth_refused"));
    ok (status_c && s_has_endpoint (status_c, a.router) && !s_has_peer (status_c, a.id, NULL),
        "the stranger tried a (static peer) but never got a Hello answered");
    ok (status_c && s_head (status_c, a.id, "secret") == 0,
        "the stranger got none of a's events: no subscription, no replay");
    json_free (status_a);
    json_free (status_b);
    json_free (status_c);

    is_int (
        SHOAL (NULL, &err, "--node", a.spec, "--cert", s_cert ("x"), "--timeout", "1500", "status"),
        1, "a client with a key not allowed cannot connect (status)");
    ok (tap_contains (err, "refused this client"),
        "it gets no answer, and the CLI tells a refused key from an absent node");
    free (err);
    err = NULL;
    is_int (SHOAL (NULL, NULL, "--node", a.spec, "--cert", s_cert ("x"), "--timeout", "1500", "pub",
                   "secret", "Evil", "--json-payload", "{}"),
            1, "nor publish");
    is_int (SHOAL (NULL, NULL, "--node", a.spec, "--cert", s_cert ("x"), "--timeout", "1500",
                   "replay", "--origin", a.id, "secret"),
            1, "nor replay");
    is_int (SHOAL (NULL, NULL, "--node", a.spec, "--cert", s_cert ("c"), "--timeout", "1500",
                   "replay", "--origin", a.id, "secret"),
            1, "the stranger node's key cannot replay either");
    is_int (SHOAL (NULL, NULL, "--node", a.spec, "--timeout", "1500", "status"), 1,
            "a plain (insecure) client cannot talk to a secure node");
    json_t *after = s_status (&a, cli);
    is_int (s_counter (after, "published"), published_before,
            "nothing the strangers sent was recorded");
    json_free (after);
    mesh_stop (&c.proc);

    //  Revocation: b is cut off from a running a.
    json_t *status = s_status (&a, cli);
    uint64_t head = s_head (status, a.id, "secret");
    json_free (status);
    ok (SHOAL (NULL, NULL, "keys", "revoke", s_keys, "b") == 0, "keys revoke b");
    if (!ok (s_wait_peer (&a, cli, b.id, false, 10),
             "a drops b within seconds, without a restart")) {
        char *a_err = mesh_stderr (a.proc);
        diag ("a's log: %s", a_err);
        free (a_err);
    }
    ok (SHOAL (NULL, NULL, "--node", a.spec, "--cert", cli, "pub", "secret", "After",
               "--json-payload", "{}", "--wait")
            == 0,
        "a still serves allowed clients after cutting every connection");
    ok (s_wait_head (&a, cli, a.id, "secret", head + 1, 5), "a recorded the new event");
    ok (!s_wait_head (&b, cli, a.id, "secret", head + 1, 4),
        "b, revoked, no longer receives a's live events (nor repairs them)");
    is_int (SHOAL (NULL, NULL, "--node", a.spec, "--cert", b_cert, "--timeout", "1500", "replay",
                   "--origin", a.id, "secret"),
            1, "b's key cannot replay from a any more");
    ok (kill (a.proc->pid, 0) == 0 && mesh_wait (a.proc, 0.1) == -1, "a kept running throughout");
    mesh_stop (&a.proc);
    mesh_stop (&b.proc);

    //  Insecure mode, for comparison: the capture does see the marker.
    if (s_start (&d, "d", NULL, NULL, (const char *[]){"--interface", "none", NULL}))
        bail ("insecure node d did not start");
    char d_peer[200];
    snprintf (d_peer, sizeof d_peer, "%s", d.router);
    if (s_start (
            &e, "e", NULL, NULL,
            (const char *[]){"--interface", "none", "--replicate", "all", "--peer", d_peer, NULL}))
        bail ("insecure node e did not start");
    char *d_err = mesh_stderr (d.proc);
    ok (tap_contains (d_err, "insecure mode"), "an insecure shoald warns in its log");
    free (d_err);
    can_capture = s_capture_open (&capture) == 0;
    if (can_capture) {
        s_capture_port (&capture, s_port (d.pub));
        s_capture_port (&capture, s_port (d.router));
        s_capture_port (&capture, s_port (e.pub));
        s_capture_port (&capture, s_port (e.router));
        s_capture_start (&capture);
    }
    is_int (SHOAL (NULL, NULL, "--node", d.router, "pub", "secret", "Marked", "--json-payload",
                   "{\"text\":\"" S_MARKER "\"}", "--wait"),
            0, "insecure: a plain client publishes");
    ok (s_wait_head (&e, NULL, d.id, "secret", 1, 20), "insecure: e replicates d's event");
    if (can_capture) {
        s_capture_close (&capture, 1.0);
        ok (capture.hits > 0, "insecure mode: the marker is on the wire (%d segments, %zu bytes)",
            capture.hits, capture.bytes);
    }
    else
        skip (1, "no AF_PACKET capture (needs root)");
    s_capture_close (&capture, 0);
    mesh_stop (&d.proc);
    mesh_stop (&e.proc);
    free ((char *) cli);
    return done_testing ();
}
