/*  test_beacon - shoal_beacon: the payload codec, the loopback beacon in one
    process and across processes, and zbeacon across network namespaces.

    Nothing here sends on the machine's real interfaces: the loopback
    beacon only sends to 127.255.255.255, and the zbeacon part runs inside
    network namespaces this test makes (three nodes and a fourth holding
    the bridge that joins them) and removes at exit, on failure, and on
    SIGINT, SIGTERM or SIGHUP. The zbeacon part needs root and the `ip`
    tool (iproute2); it is skipped with the reason otherwise.

    Forked children never print TAP lines: they report over pipes and by
    exit status, and the parent checks. Every child is reaped by pid. */

#include "shoal_beacon.h"
#include "tap.h"

#include <czmq.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define INTERVAL_MS 100 //  beacon interval of every test node
#define MAX_NODES 32    //  node ids used by the test are 0 .. MAX_NODES-1
#define MAX_CHILDREN 8  //  children alive at once
#define NETNS_COUNT 4   //  three node namespaces and the bridge's

//  --------------------------------------------------------------------------
//  Cleanup that runs at exit, on failure and on signals: children killed
//  by pid, then our network namespaces removed. Only the process that made
//  them cleans up; a forked child inherits the handlers but does nothing.

static pid_t s_owner;                           //  the test's main process
static volatile pid_t s_children[MAX_CHILDREN]; //  live children, 0 = free slot
static char s_netns_path[NETNS_COUNT][64];      //  /var/run/netns/NAME, "" = none
static volatile int s_netns_count;              //  entries of s_netns_path in use

//  Removes a network namespace name the way `ip netns del` does: detach the
//  bind mount that keeps the namespace alive, then remove the mount point.
//  Async-signal-safe, so the signal handler can call it.
static void
s_netns_remove (const char *path)
{
    umount2 (path, MNT_DETACH);
    unlink (path);
}

static void
s_cleanup (void)
{
    if (getpid () != s_owner)
        return;
    for (int i = 0; i < MAX_CHILDREN; i++) {
        pid_t pid = s_children[i];
        if (pid > 0) {
            kill (pid, SIGKILL);
            waitpid (pid, NULL, 0);
            s_children[i] = 0;
        }
    }
    for (int i = 0; i < s_netns_count; i++)
        if (s_netns_path[i][0])
            s_netns_remove (s_netns_path[i]);
}

static void
s_on_signal (int signum)
{
    s_cleanup ();
    signal (signum, SIG_DFL);
    raise (signum);
}

static void
s_child_add (pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (s_children[i] == 0) {
            s_children[i] = pid;
            return;
        }
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
    bail ("more than %d children", MAX_CHILDREN);
}

//  Waits up to timeout_ms for the child to exit, then kills it. Returns its
//  wait status.
static int
s_reap (pid_t pid, int timeout_ms)
{
    int status = 0;
    double deadline = tap_now () + timeout_ms / 1000.0;
    pid_t got = 0;
    while ((got = waitpid (pid, &status, WNOHANG)) == 0 && tap_now () < deadline)
        usleep (10000);
    if (got == 0) {
        diag ("child %d did not exit in %d ms; killing it", (int) pid, timeout_ms);
        kill (pid, SIGKILL);
        waitpid (pid, &status, 0);
    }
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (s_children[i] == pid)
            s_children[i] = 0;
    return status;
}

//  --------------------------------------------------------------------------
//  Node ids: node n has 15 fixed bytes and n in the last one.

static void
s_node_id (int n, uint8_t *id)
{
    for (int i = 0; i < 15; i++)
        id[i] = (uint8_t) (0xb0 + i);
    id[15] = (uint8_t) n;
}

//  The n of a test node id, or -1 when it is not one.
static int
s_node_index (const uint8_t *id)
{
    uint8_t expect[16];
    s_node_id (id[15], expect);
    return memcmp (id, expect, 16) == 0 && id[15] < MAX_NODES ? id[15] : -1;
}

static shoal_beacon_msg_t
s_msg (uint64_t mesh_id, int n, bool leaving)
{
    shoal_beacon_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.mesh_id = mesh_id;
    s_node_id (n, msg.node);
    msg.pub_port = (uint16_t) (7000 + n);
    msg.router_port = (uint16_t) (8000 + n);
    msg.leaving = leaving;
    return msg;
}

//  --------------------------------------------------------------------------
//  Children: one stop pipe (the parent closes it to say "finish") and one
//  report pipe (the child writes fixed-size records) each.

typedef struct {
    pid_t pid;    //  child process
    int stop_w;   //  parent's end of the stop pipe, -1 once closed
    int report_r; //  parent's end of the report pipe, -1 once at EOF
} s_child_t;

//  One record from a child: a node id it saw and the sender's address, or
//  (node all 0xff) its dropped count in decimal, sent when it finishes.
typedef struct {
    uint8_t node[16]; //  node id the child saw, or all 0xff
    char ip[16];      //  sender's address as the child's beacon gave it
} s_report_t;

//  What the parent learnt from one child's reports.
typedef struct {
    bool seen[MAX_NODES];   //  node ids the child saw
    char ip[MAX_NODES][16]; //  address it got for each
    long long dropped;      //  its final dropped count, -1 until reported
} s_view_t;

typedef int (s_child_fn) (int stop_fd, int report_fd, void *arg);

//  Parent-side pipe ends of the children already running, which a new
//  child must close so that it does not hold their stop pipes open.
static int s_parent_fds[2 * MAX_CHILDREN];
static int s_parent_fd_count;

static s_child_t
s_spawn (s_child_fn *fn, void *arg)
{
    int stop[2], report[2];
    if (pipe (stop) || pipe (report))
        bail ("pipe: %s", strerror (errno));
    fflush (stdout);
    pid_t pid = fork ();
    if (pid == -1)
        bail ("fork: %s", strerror (errno));
    if (pid == 0) {
        signal (SIGINT, SIG_DFL);
        signal (SIGTERM, SIG_DFL);
        signal (SIGHUP, SIG_DFL);
        signal (SIGPIPE, SIG_IGN);
        for (int i = 0; i < s_parent_fd_count; i++)
            close (s_parent_fds[i]);
        close (stop[1]);
        close (report[0]);
        int rc = fn (stop[0], report[1], arg);
        close (report[1]);
        _exit (rc);
    }
    close (stop[0]);
    close (report[1]);
    s_child_add (pid);
    if (s_parent_fd_count + 2 <= (int) (sizeof s_parent_fds / sizeof s_parent_fds[0])) {
        s_parent_fds[s_parent_fd_count++] = stop[1];
        s_parent_fds[s_parent_fd_count++] = report[0];
    }
    return (s_child_t){pid, stop[1], report[0]};
}

static void
s_close_parent_fd (int *fd)
{
    if (*fd == -1)
        return;
    close (*fd);
    for (int i = 0; i < s_parent_fd_count; i++)
        if (s_parent_fds[i] == *fd)
            s_parent_fds[i] = s_parent_fds[--s_parent_fd_count];
    *fd = -1;
}

//  Reads one record waiting on the child's report pipe into view.
static void
s_read_report (s_child_t *child, s_view_t *view)
{
    s_report_t report;
    ssize_t got = read (child->report_r, &report, sizeof report);
    if (got <= 0) {
        s_close_parent_fd (&child->report_r);
        return;
    }
    static const uint8_t all_ff[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (got != sizeof report)
        return;
    report.ip[15] = 0;
    if (memcmp (report.node, all_ff, 16) == 0) {
        view->dropped = atoll (report.ip);
        return;
    }
    int n = s_node_index (report.node);
    if (n >= 0) {
        view->seen[n] = true;
        memcpy (view->ip[n], report.ip, 16);
    }
}

//  Tells the child to finish, reads its last reports and reaps it.
static int
s_finish (s_child_t *child, s_view_t *view)
{
    s_close_parent_fd (&child->stop_w);
    double deadline = tap_now () + 10;
    while (child->report_r != -1 && tap_now () < deadline) {
        struct pollfd fd = {.fd = child->report_r, .events = POLLIN};
        if (poll (&fd, 1, 100) > 0)
            s_read_report (child, view);
    }
    s_close_parent_fd (&child->report_r);
    return s_reap (child->pid, 10000);
}

static bool
s_exited_ok (int status)
{
    return WIFEXITED (status) && WEXITSTATUS (status) == 0;
}

//  --------------------------------------------------------------------------
//  Codec

static void
s_test_mesh_id (void)
{
    ok (shoal_mesh_id ("") == 0xcbf29ce484222325ULL, "FNV-1a 64 of \"\" is the offset basis");
    ok (shoal_mesh_id ("a") == 0xaf63dc4c8601ec8cULL, "FNV-1a 64 of \"a\" is 0xaf63dc4c8601ec8c");
    ok (shoal_mesh_id ("foobar") == 0x85944171f73967e8ULL,
        "FNV-1a 64 of \"foobar\" is 0x85944171f73967e8");
    ok (shoal_mesh_id ("orders") != shoal_mesh_id ("Orders"), "mesh ids are case sensitive");
}

static void
s_test_codec (void)
{
    shoal_beacon_msg_t msg;
    memset (&msg, 0, sizeof msg);
    msg.mesh_id = 0x0102030405060708ULL;
    for (int i = 0; i < 16; i++)
        msg.node[i] = (uint8_t) (0xa0 + i);
    msg.pub_port = 0x1234;
    msg.router_port = 0xbeef;

    static const uint8_t expect[SHOAL_BEACON_SIZE] = {
        'S',  'H',  'L',  0x01,                         //  0-3 protocol, version
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, //  4-11 mesh id
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, //  12-27 node id
        0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, //
        0x12, 0x34,                                     //  28-29 PUB port
        0xbe, 0xef,                                     //  30-31 ROUTER port
        0x00};                                          //  32 flags

    uint8_t out[SHOAL_BEACON_SIZE_SECURE + 8];
    memset (out, 0xee, sizeof out);
    size_t size = shoal_beacon_encode (&msg, out);
    is_int (size, SHOAL_BEACON_SIZE, "a beacon without key is 33 bytes");
    is_mem (out, "SHL\x01", 4, "bytes 0-3 are 'S' 'H' 'L' 0x01");
    is_mem (out + 4, expect + 4, 8, "bytes 4-11 are the mesh id, big-endian");
    is_mem (out + 12, msg.node, 16, "bytes 12-27 are the node id");
    ok (out[28] == 0x12 && out[29] == 0x34, "bytes 28-29 are the PUB port, big-endian");
    ok (out[30] == 0xbe && out[31] == 0xef, "bytes 30-31 are the ROUTER port, big-endian");
    is_int (out[32], 0, "byte 32 (flags) is 0 when not leaving");
    is_mem (out, expect, SHOAL_BEACON_SIZE, "the whole payload matches the DESIGN table");
    is_int (out[33], 0xee, "nothing is written after byte 32 without a key");

    shoal_beacon_msg_t back;
    memset (&back, 0x55, sizeof back);
    is_int (shoal_beacon_decode (out, size, &back), 0, "a 33-byte beacon decodes");
    ok (back.mesh_id == msg.mesh_id, "mesh id survives the round trip");
    is_mem (back.node, msg.node, 16, "node id survives the round trip");
    is_int (back.pub_port, 0x1234, "PUB port survives the round trip");
    is_int (back.router_port, 0xbeef, "ROUTER port survives the round trip");
    ok (!back.leaving && !back.has_key, "no leaving flag and no key after the round trip");

    //  With a key and the leaving flag
    msg.leaving = true;
    msg.has_key = true;
    for (int i = 0; i < 32; i++)
        msg.key[i] = (uint8_t) (0x40 + i);
    memset (out, 0xee, sizeof out);
    size = shoal_beacon_encode (&msg, out);
    is_int (size, SHOAL_BEACON_SIZE_SECURE, "a beacon with a key is 65 bytes");
    is_mem (out, expect, 32, "bytes 0-31 do not move when a key is added");
    is_int (out[32], SHOAL_BEACON_FLAG_LEAVING, "byte 32 bit 0 is the leaving flag");
    is_mem (out + 33, msg.key, 32, "bytes 33-64 are the CURVE public key");
    is_int (out[65], 0xee, "nothing is written after byte 64");
    memset (&back, 0, sizeof back);
    is_int (shoal_beacon_decode (out, size, &back), 0, "a 65-byte beacon decodes");
    ok (back.leaving, "leaving flag survives the round trip");
    ok (back.has_key, "has_key is set for a 65-byte beacon");
    is_mem (back.key, msg.key, 32, "key survives the round trip");
    is_mem (back.node, msg.node, 16, "node id survives the round trip with a key");

    //  Flag bits other than leaving are ignored (room for later versions)
    uint8_t flags[SHOAL_BEACON_SIZE];
    memcpy (flags, expect, sizeof flags);
    flags[32] = 0xfe;
    is_int (shoal_beacon_decode (flags, sizeof flags, &back), 0, "unknown flag bits are accepted");
    ok (!back.leaving, "unknown flag bits do not read as leaving");
    flags[32] = 0x03;
    shoal_beacon_decode (flags, sizeof flags, &back);
    ok (back.leaving, "bit 0 is leaving whatever the other bits");

    //  Refused: sizes, prefix, version
    uint8_t big[SHOAL_BEACON_SIZE_SECURE + 200];
    memset (big, 0, sizeof big);
    memcpy (big, expect, sizeof expect);
    const size_t bad_sizes[] = {0, 1, 4, 12, 32, 34, 64, 66, 255, sizeof big};
    int refused = 0;
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++)
        refused += shoal_beacon_decode (big, bad_sizes[i], &back) == -1;
    is_int (refused, (int) (sizeof bad_sizes / sizeof bad_sizes[0]),
            "sizes other than 33 and 65 are refused (0, 1, 4, 12, 32, 34, 64, 66, 255, 265)");
    is_int (shoal_beacon_decode (NULL, 33, &back), -1, "NULL data is refused");

    uint8_t bad[SHOAL_BEACON_SIZE];
    for (int at = 0; at < 3; at++) {
        memcpy (bad, expect, sizeof bad);
        bad[at] ^= 0x20; //  's', 'h', 'l'
        is_int (shoal_beacon_decode (bad, sizeof bad, &back), -1,
                "a beacon with byte %d of the prefix changed is refused", at);
    }
    memcpy (bad, expect, sizeof bad);
    bad[3] = 0x02;
    is_int (shoal_beacon_decode (bad, sizeof bad, &back), -1, "version 2 is refused");
    bad[3] = 0x00;
    is_int (shoal_beacon_decode (bad, sizeof bad, &back), -1, "version 0 is refused");
}

//  --------------------------------------------------------------------------
//  Loopback in one process

typedef struct {
    shoal_beacon_t *beacon;              //  the node's beacon
    bool seen[MAX_NODES];                //  node ids received since last reset
    shoal_beacon_msg_t last[MAX_NODES];  //  last beacon received from each
    char ip[MAX_NODES][INET_ADDRSTRLEN]; //  sender address of that beacon
    int unknown;                         //  valid beacons from ids not of the test
    int errors;                          //  shoal_beacon_recv returned -1
} s_node_t;

static void
s_node_reset (s_node_t *node)
{
    memset (node->seen, 0, sizeof node->seen);
}

static void
s_node_drain (s_node_t *node)
{
    shoal_beacon_msg_t msg;
    char ip[INET_ADDRSTRLEN];
    int rc;
    while ((rc = shoal_beacon_recv (node->beacon, ip, sizeof ip, &msg)) == 1) {
        int n = s_node_index (msg.node);
        if (n < 0) {
            node->unknown++;
            continue;
        }
        node->seen[n] = true;
        node->last[n] = msg;
        snprintf (node->ip[n], sizeof node->ip[n], "%s", ip);
    }
    if (rc == -1)
        node->errors++;
}

typedef bool (s_done_fn) (s_node_t *nodes, int count, void *arg);

//  Runs the nodes' poll loop (tick, poll, receive) for up to ms, or until
//  done says so. Returns the time it took in ms.
static int
s_pump (s_node_t *nodes, int count, int ms, s_done_fn *done, void *arg)
{
    double start = tap_now ();
    double deadline = start + ms / 1000.0;
    while (true) {
        int timeout = INTERVAL_MS;
        for (int i = 0; i < count; i++) {
            int next = shoal_beacon_tick (nodes[i].beacon);
            if (next >= 0 && next < timeout)
                timeout = next;
        }
        double left = deadline - tap_now ();
        if (left <= 0 || (done && done (nodes, count, arg)))
            break;
        if (timeout > left * 1000)
            timeout = (int) (left * 1000) + 1;
        struct pollfd fds[MAX_CHILDREN];
        for (int i = 0; i < count; i++)
            fds[i] = (struct pollfd){.fd = shoal_beacon_fd (nodes[i].beacon), .events = POLLIN};
        poll (fds, (nfds_t) count, timeout);
        for (int i = 0; i < count; i++)
            s_node_drain (&nodes[i]);
    }
    return (int) ((tap_now () - start) * 1000);
}

//  Done when every node saw the ids listed in arg (-1 terminated).
static bool
s_all_seen (s_node_t *nodes, int count, void *arg)
{
    const int *ids = arg;
    for (int i = 0; i < count; i++)
        for (const int *n = ids; *n >= 0; n++)
            if (!nodes[i].seen[*n])
                return false;
    return true;
}

//  A port no socket on the host is bound to for 127.255.255.255.
static int
s_free_port (void)
{
    srand ((unsigned) getpid () ^ (unsigned) time (NULL));
    for (int attempt = 0; attempt < 100; attempt++) {
        int port = 20000 + rand () % 40000;
        int fd = socket (AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons ((uint16_t) port)};
        inet_pton (AF_INET, "127.255.255.255", &address.sin_addr);
        int rc = bind (fd, (struct sockaddr *) &address, sizeof address);
        close (fd);
        if (rc == 0)
            return port;
    }
    bail ("no free UDP port for the loopback beacon");
}

//  Sends a datagram to 127.255.255.255:port from a plain socket.
static void
s_send_raw (int port, const void *data, size_t size)
{
    int fd = socket (AF_INET, SOCK_DGRAM, 0);
    int on = 1;
    setsockopt (fd, SOL_SOCKET, SO_BROADCAST, &on, sizeof on);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons ((uint16_t) port)};
    inet_pton (AF_INET, "127.255.255.255", &address.sin_addr);
    if (sendto (fd, data, size, 0, (struct sockaddr *) &address, sizeof address) != (ssize_t) size)
        diag ("sendto of %zu bytes: %s", size, strerror (errno));
    close (fd);
}

static void
s_test_loopback (int port)
{
    const char *mesh_name = "test-beacon";
    uint64_t mesh = shoal_mesh_id (mesh_name);
    s_node_t nodes[4];
    memset (nodes, 0, sizeof nodes);
    for (int i = 0; i < 3; i++) {
        nodes[i].beacon = shoal_beacon_new ("lo", port, mesh);
        if (!nodes[i].beacon)
            bail ("loopback beacon on port %d: %s", port, shoal_beacon_error ());
    }
    ok (shoal_beacon_fd (nodes[0].beacon) >= 0, "a loopback beacon has a file descriptor");
    ok (shoal_beacon_socket (nodes[0].beacon) == NULL, "a loopback beacon has no ZeroMQ socket");
    is_int (shoal_beacon_tick (nodes[0].beacon), -1, "tick is -1 before publish");
    shoal_beacon_msg_t nothing;
    is_int (shoal_beacon_recv (nodes[0].beacon, NULL, 0, &nothing), 0,
            "recv is 0 when nothing was sent");

    //  Three nodes find each other
    for (int i = 0; i < 3; i++) {
        shoal_beacon_msg_t msg = s_msg (mesh, i, false);
        is_int (shoal_beacon_publish (nodes[i].beacon, &msg, INTERVAL_MS), 0, "node %d publishes",
                i);
    }
    int next = shoal_beacon_tick (nodes[0].beacon);
    ok (next > 0 && next <= INTERVAL_MS, "tick after publish says the next send is due in %d ms",
        next);
    int ids[] = {0, 1, 2, -1};
    int took = s_pump (nodes, 3, 3 * INTERVAL_MS, s_all_seen, ids);
    diag ("three loopback beacons found each other in %d ms", took);
    for (int i = 0; i < 3; i++)
        ok (nodes[i].seen[(i + 1) % 3] && nodes[i].seen[(i + 2) % 3],
            "node %d sees the other two within 3 intervals", i);
    ok (nodes[0].seen[0] && nodes[1].seen[1] && nodes[2].seen[2],
        "a loopback beacon receives its own beacons");
    is_str (nodes[0].ip[1], "127.0.0.1", "the sender address is 127.0.0.1");
    is_int (nodes[0].last[1].pub_port, 7001, "the PUB port arrives");
    is_int (nodes[0].last[2].router_port, 8002, "the ROUTER port arrives");
    ok (nodes[0].last[1].mesh_id == mesh && !nodes[0].last[1].leaving, "mesh id and flags arrive");
    is_int (nodes[0].errors + nodes[1].errors + nodes[2].errors, 0, "recv never failed");
    is_int (shoal_beacon_dropped (nodes[0].beacon), 0, "nothing dropped among nodes of one mesh");

    //  A late joiner that only listens learns of the others from their
    //  periodic beacons (tick), within about one interval
    nodes[3].beacon = shoal_beacon_new ("lo", port, mesh);
    if (!nodes[3].beacon)
        bail ("%s", shoal_beacon_error ());
    took = s_pump (nodes, 4, 3 * INTERVAL_MS, s_all_seen, ids);
    diag ("a late joiner heard the others after %d ms", took);
    ok (nodes[3].seen[0] && nodes[3].seen[1] && nodes[3].seen[2],
        "a late joiner hears the periodic beacons of all three");
    ok (took <= 2 * INTERVAL_MS, "... within two intervals (%d ms)", took);
    ok (!nodes[0].seen[3], "a beacon that never published is not seen");
    shoal_beacon_destroy (&nodes[3].beacon);

    //  A node of another mesh is filtered both ways
    nodes[3].beacon = shoal_beacon_new ("lo", port, shoal_mesh_id ("other-mesh"));
    ok (nodes[3].beacon != NULL, "a fourth loopback beacon on the same port, other mesh");
    if (!nodes[3].beacon)
        bail ("%s", shoal_beacon_error ());
    shoal_beacon_msg_t other = s_msg (shoal_mesh_id ("other-mesh"), 3, false);
    shoal_beacon_publish (nodes[3].beacon, &other, INTERVAL_MS);
    for (int i = 0; i < 4; i++)
        s_node_reset (&nodes[i]);
    uint64_t dropped_before = shoal_beacon_dropped (nodes[0].beacon);
    s_pump (nodes, 4, 3 * INTERVAL_MS + 50, NULL, NULL);
    ok (!nodes[0].seen[3] && !nodes[1].seen[3] && !nodes[2].seen[3],
        "beacons of another mesh are not returned");
    uint64_t other_drops = shoal_beacon_dropped (nodes[0].beacon) - dropped_before;
    ok (other_drops >= 3, "beacons of another mesh are counted as dropped (%llu)",
        (unsigned long long) other_drops);
    ok (!nodes[3].seen[0] && !nodes[3].seen[1] && !nodes[3].seen[2] && nodes[3].seen[3],
        "the other mesh's node sees only itself");
    ok (shoal_beacon_dropped (nodes[3].beacon) >= 6,
        "the other mesh's node drops our beacons (%llu)",
        (unsigned long long) shoal_beacon_dropped (nodes[3].beacon));
    shoal_beacon_destroy (&nodes[3].beacon);
    ok (nodes[3].beacon == NULL, "destroy sets the pointer to NULL");
    shoal_beacon_destroy (&nodes[3].beacon);

    //  Garbage on the port is dropped and counted by every node, without harm
    s_pump (nodes, 3, INTERVAL_MS, NULL, NULL); //  no other-mesh beacons in flight
    uint64_t before[3];
    for (int i = 0; i < 3; i++)
        before[i] = shoal_beacon_dropped (nodes[i].beacon);
    uint8_t valid[SHOAL_BEACON_SIZE_SECURE];
    shoal_beacon_msg_t template = s_msg (mesh, 9, false);
    shoal_beacon_encode (&template, valid);
    uint8_t garbage[1000];
    memset (garbage, 0, sizeof garbage);
    memcpy (garbage, valid, SHOAL_BEACON_SIZE);
    const size_t sizes[] = {0, 1, 12, 32, 34, 64, 66, 255, 300, 1000};
    int sent = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++, sent++)
        s_send_raw (port, garbage, sizes[i]);
    uint8_t bad[SHOAL_BEACON_SIZE_SECURE];
    memcpy (bad, valid, SHOAL_BEACON_SIZE);
    bad[0] = 'X';
    s_send_raw (port, bad, SHOAL_BEACON_SIZE);
    bad[0] = 'S';
    bad[3] = 0x02;
    s_send_raw (port, bad, SHOAL_BEACON_SIZE);
    bad[3] = 0x01;
    bad[11] ^= 1; //  another mesh id
    s_send_raw (port, bad, SHOAL_BEACON_SIZE);
    template.has_key = true;
    template.mesh_id = mesh ^ 0x100;
    shoal_beacon_encode (&template, bad);
    s_send_raw (port, bad, SHOAL_BEACON_SIZE_SECURE);
    sent += 4; //  bad prefix, bad version, other mesh with and without key
    for (int i = 0; i < 3; i++)
        s_node_reset (&nodes[i]);
    s_pump (nodes, 3, 2 * INTERVAL_MS, NULL, NULL);
    for (int i = 0; i < 3; i++)
        is_int (shoal_beacon_dropped (nodes[i].beacon) - before[i], sent,
                "node %d dropped and counted each of the %d bad datagrams", i, sent);
    ok (!nodes[0].seen[9] && !nodes[1].seen[9] && !nodes[2].seen[9],
        "no bad datagram was returned as a beacon");
    ok (nodes[0].seen[1] && nodes[1].seen[2] && nodes[2].seen[0],
        "the nodes still see each other after the garbage");
    is_int (nodes[0].errors + nodes[1].errors + nodes[2].errors, 0, "recv never failed on garbage");

    //  A valid beacon from a plain socket is returned (the filter is exact)
    template = s_msg (mesh, 9, false);
    template.has_key = true;
    memset (template.key, 0x77, 32);
    shoal_beacon_encode (&template, valid);
    s_send_raw (port, valid, SHOAL_BEACON_SIZE_SECURE);
    int nine[] = {9, -1};
    s_pump (nodes, 3, INTERVAL_MS, s_all_seen, nine);
    ok (nodes[0].seen[9] && nodes[0].last[9].has_key && nodes[0].last[9].key[31] == 0x77,
        "a 65-byte beacon with a key is received with its key");

    //  Unicast to the port is not for the beacon: it is bound to the
    //  broadcast address only
    template = s_msg (mesh, 8, false);
    shoal_beacon_encode (&template, valid);
    int fd = socket (AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in unicast = {.sin_family = AF_INET, .sin_port = htons ((uint16_t) port)};
    inet_pton (AF_INET, "127.0.0.1", &unicast.sin_addr);
    for (int i = 0; i < 3; i++)
        sendto (fd, valid, SHOAL_BEACON_SIZE, 0, (struct sockaddr *) &unicast, sizeof unicast);
    close (fd);
    s_pump (nodes, 3, INTERVAL_MS, NULL, NULL);
    ok (!nodes[0].seen[8] && !nodes[1].seen[8] && !nodes[2].seen[8],
        "a beacon sent by unicast to 127.0.0.1 is not received");

    //  The leaving flag is seen
    shoal_beacon_msg_t leaving = s_msg (mesh, 1, true);
    shoal_beacon_publish (nodes[1].beacon, &leaving, INTERVAL_MS);
    for (int i = 0; i < 3; i++)
        nodes[i].last[1].leaving = false;
    double start = tap_now ();
    while (tap_now () - start < 3.0 * INTERVAL_MS / 1000
           && !(nodes[0].last[1].leaving && nodes[2].last[1].leaving))
        s_pump (nodes, 3, 10, NULL, NULL);
    ok (nodes[0].last[1].leaving && nodes[2].last[1].leaving, "the other nodes see node 1 leaving");

    //  Silence stops sending
    shoal_beacon_silence (nodes[2].beacon);
    is_int (shoal_beacon_tick (nodes[2].beacon), -1, "tick is -1 after silence");
    s_pump (nodes, 3, INTERVAL_MS / 2, NULL, NULL); //  what was in flight
    for (int i = 0; i < 3; i++)
        s_node_reset (&nodes[i]);
    s_pump (nodes, 3, 3 * INTERVAL_MS, NULL, NULL);
    ok (!nodes[0].seen[2] && !nodes[1].seen[2] && !nodes[2].seen[2],
        "nothing from a silenced node for 3 intervals");
    ok (nodes[0].seen[1] && nodes[2].seen[0], "the others still send and the silent one receives");
    shoal_beacon_msg_t again = s_msg (mesh, 2, false);
    shoal_beacon_publish (nodes[2].beacon, &again, INTERVAL_MS);
    int two[] = {2, -1};
    s_node_reset (&nodes[0]);
    s_pump (nodes, 1, INTERVAL_MS, s_all_seen, two);
    ok (nodes[0].seen[2], "publish after silence sends again at once");

    is_int (shoal_beacon_publish (nodes[0].beacon, &again, 0), -1, "an interval of 0 is refused");
    for (int i = 0; i < 3; i++)
        shoal_beacon_destroy (&nodes[i].beacon);
}

//  --------------------------------------------------------------------------
//  Loopback across processes

//  In a child: reports the node ids seen that were not reported yet.
static void
s_report_seen (s_node_t *node, bool *reported, int report_fd)
{
    for (int n = 0; n < MAX_NODES; n++)
        if (node->seen[n] && !reported[n]) {
            s_report_t report;
            memset (&report, 0, sizeof report);
            memcpy (report.node, node->last[n].node, 16);
            snprintf (report.ip, sizeof report.ip, "%s", node->ip[n]);
            if (write (report_fd, &report, sizeof report) != sizeof report)
                return;
            reported[n] = true;
        }
}

//  In a child: reports its dropped count, last thing before it exits.
static void
s_report_dropped (s_node_t *node, int report_fd)
{
    s_report_t report;
    memset (&report, 0, sizeof report);
    memset (report.node, 0xff, sizeof report.node);
    snprintf (report.ip, sizeof report.ip, "%llu",
              (unsigned long long) shoal_beacon_dropped (node->beacon));
    if (write (report_fd, &report, sizeof report) != sizeof report)
        return;
}

typedef struct {
    int port;      //  UDP port of the loopback beacon
    uint64_t mesh; //  mesh id
    int n;         //  node number of the child
} s_lo_child_arg_t;

//  A child node: publishes its id and reports every new id it sees, until
//  the parent closes the stop pipe (or 10 s pass).
static int
s_lo_child (int stop_fd, int report_fd, void *varg)
{
    s_lo_child_arg_t *arg = varg;
    s_node_t node;
    memset (&node, 0, sizeof node);
    node.beacon = shoal_beacon_new ("lo", arg->port, arg->mesh);
    if (!node.beacon) {
        fprintf (stderr, "child %d: %s\n", arg->n, shoal_beacon_error ());
        return 2;
    }
    shoal_beacon_msg_t msg = s_msg (arg->mesh, arg->n, false);
    shoal_beacon_publish (node.beacon, &msg, INTERVAL_MS);
    bool reported[MAX_NODES] = {false};
    double deadline = tap_now () + 10;
    while (tap_now () < deadline) {
        int timeout = shoal_beacon_tick (node.beacon);
        struct pollfd fds[2] = {{.fd = shoal_beacon_fd (node.beacon), .events = POLLIN},
                                {.fd = stop_fd, .events = POLLIN}};
        poll (fds, 2, timeout);
        if (fds[1].revents)
            break; //  the parent closed the stop pipe
        s_node_drain (&node);
        s_report_seen (&node, reported, report_fd);
    }
    int rc = node.errors ? 3 : 0;
    s_report_dropped (&node, report_fd);
    shoal_beacon_destroy (&node.beacon);
    return rc;
}

static void
s_test_loopback_processes (int port)
{
    uint64_t mesh = shoal_mesh_id ("test-beacon-processes");
    s_lo_child_arg_t args[2] = {{port, mesh, 11}, {port, mesh, 12}};
    s_child_t children[2];
    //  Children first: they must not inherit the parent's beacon socket.
    for (int i = 0; i < 2; i++)
        children[i] = s_spawn (s_lo_child, &args[i]);

    s_node_t parent;
    memset (&parent, 0, sizeof parent);
    parent.beacon = shoal_beacon_new ("lo", port, mesh);
    if (!parent.beacon)
        bail ("%s", shoal_beacon_error ());
    shoal_beacon_msg_t msg = s_msg (mesh, 10, false);
    shoal_beacon_publish (parent.beacon, &msg, INTERVAL_MS);

    s_view_t views[2];
    memset (views, 0, sizeof views);
    views[0].dropped = views[1].dropped = -1;
    double start = tap_now ();
    while (tap_now () - start < 3.0) {
        bool done = parent.seen[10] && parent.seen[11] && parent.seen[12];
        for (int i = 0; i < 2; i++)
            done = done && views[i].seen[10] && views[i].seen[11] && views[i].seen[12];
        if (done)
            break;
        int timeout = shoal_beacon_tick (parent.beacon);
        struct pollfd fds[3] = {{.fd = shoal_beacon_fd (parent.beacon), .events = POLLIN},
                                {.fd = children[0].report_r, .events = POLLIN},
                                {.fd = children[1].report_r, .events = POLLIN}};
        poll (fds, 3, timeout);
        s_node_drain (&parent);
        for (int i = 0; i < 2; i++)
            if (fds[1 + i].revents && children[i].report_r != -1)
                s_read_report (&children[i], &views[i]);
    }
    diag ("three processes exchanged loopback beacons in %.0f ms", (tap_now () - start) * 1000);
    ok (parent.seen[11] && parent.seen[12], "the parent sees both children");
    ok (parent.seen[10], "the parent sees itself");
    for (int i = 0; i < 2; i++) {
        ok (views[i].seen[10] && views[i].seen[11 + (1 - i)],
            "child %d sees the parent and the other child", 11 + i);
        ok (views[i].seen[11 + i], "child %d sees itself", 11 + i);
        is_str (views[i].ip[10], "127.0.0.1", "child %d gets the parent's address", 11 + i);
    }
    shoal_beacon_destroy (&parent.beacon);
    for (int i = 0; i < 2; i++) {
        int status = s_finish (&children[i], &views[i]);
        ok (s_exited_ok (status), "child %d exits cleanly (status 0x%x)", 11 + i, status);
        is_int (views[i].dropped, 0, "child %d dropped nothing", 11 + i);
    }
}

//  --------------------------------------------------------------------------
//  zbeacon across network namespaces

static char s_ip_path[256]; //  the ip tool, "" when not found

static bool
s_find_ip (void)
{
    const char *path = getenv ("PATH");
    char copy[4096];
    snprintf (copy, sizeof copy, "%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *dir = strtok_r (copy, ":", &save); dir; dir = strtok_r (NULL, ":", &save)) {
        snprintf (s_ip_path, sizeof s_ip_path, "%s/ip", dir);
        if (access (s_ip_path, X_OK) == 0)
            return true;
    }
    s_ip_path[0] = 0;
    return false;
}

//  Runs `ip` with the given arguments (NULL-terminated); 0 on success.
static int
s_ip (const char *first, ...)
{
    const char *argv[32] = {"ip", first};
    int argc = 2;
    va_list args;
    va_start (args, first);
    const char *arg;
    while (argc < 31 && (arg = va_arg (args, const char *)))
        argv[argc++] = arg;
    va_end (args);
    argv[argc] = NULL;

    fflush (stdout);
    pid_t pid = fork ();
    if (pid == -1)
        return -1;
    if (pid == 0) {
        int null = open ("/dev/null", O_WRONLY);
        if (null != -1)
            dup2 (null, STDOUT_FILENO);
        execv (s_ip_path, (char *const *) argv);
        _exit (127);
    }
    s_child_add (pid); //  so a signal now kills it before removing namespaces
    int status = s_reap (pid, 10000);
    if (!s_exited_ok (status)) {
        char line[512] = "";
        for (int i = 0; i < argc; i++) {
            strncat (line, argv[i], sizeof line - strlen (line) - 2);
            strcat (line, " ");
        }
        diag ("failed: %s(status 0x%x)", line, status);
        return -1;
    }
    return 0;
}

typedef struct {
    char netns[32];     //  namespace to enter
    char interface[16]; //  interface to run the beacon on
    uint64_t mesh;      //  mesh id
    int n;              //  node number
} s_ns_child_arg_t;

static int
s_enter_netns (const char *name)
{
    char path[128];
    snprintf (path, sizeof path, "/var/run/netns/%.40s", name);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd == -1 || setns (fd, CLONE_NEWNET) == -1) {
        fprintf (stderr, "cannot enter %s: %s\n", path, strerror (errno));
        if (fd != -1)
            close (fd);
        return -1;
    }
    close (fd);
    return 0;
}

//  A node in its own namespace, on zbeacon: publishes its id and reports
//  every new id it sees (with the sender's address) until stopped.
static int
s_ns_child (int stop_fd, int report_fd, void *varg)
{
    s_ns_child_arg_t *arg = varg;
    if (s_enter_netns (arg->netns))
        return 2;
    s_node_t node;
    memset (&node, 0, sizeof node);
    node.beacon = shoal_beacon_new (arg->interface, SHOAL_BEACON_PORT, arg->mesh);
    if (!node.beacon) {
        fprintf (stderr, "node %d: %s\n", arg->n, shoal_beacon_error ());
        return 3;
    }
    int rc = 0;
    if (shoal_beacon_socket (node.beacon) == NULL || shoal_beacon_fd (node.beacon) != -1)
        rc = 4;
    shoal_beacon_msg_t msg = s_msg (arg->mesh, arg->n, false);
    if (shoal_beacon_publish (node.beacon, &msg, INTERVAL_MS))
        rc = 5;
    if (shoal_beacon_tick (node.beacon) != -1)
        rc = 6; //  zbeacon sends from its own thread
    bool reported[MAX_NODES] = {false};
    double deadline = tap_now () + 10;
    while (rc == 0 && tap_now () < deadline) {
        zmq_pollitem_t items[2] = {{shoal_beacon_socket (node.beacon), 0, ZMQ_POLLIN, 0},
                                   {NULL, stop_fd, ZMQ_POLLIN, 0}};
        if (zmq_poll (items, 2, 1000) == -1)
            break;
        if (items[1].revents)
            break;
        s_node_drain (&node);
        s_report_seen (&node, reported, report_fd);
    }
    if (node.errors)
        rc = 7;
    s_report_dropped (&node, report_fd);
    shoal_beacon_silence (node.beacon);
    shoal_beacon_destroy (&node.beacon);
    zsys_shutdown ();
    return rc;
}

//  In the bridge's namespace: a bridge port without an IPv4 address cannot
//  carry zbeacon, and loopback is down; both are refused with a reason.
static int
s_refusal_child (int stop_fd, int report_fd, void *varg)
{
    (void) stop_fd;
    (void) report_fd;
    s_ns_child_arg_t *arg = varg;
    if (s_enter_netns (arg->netns))
        return 2;
    int rc = 0;
    shoal_beacon_t *beacon = shoal_beacon_new (arg->interface, SHOAL_BEACON_PORT, arg->mesh);
    if (beacon || !strstr (shoal_beacon_error (), "cannot broadcast")) {
        fprintf (stderr, "expected 'cannot broadcast', got: %s\n", shoal_beacon_error ());
        rc |= 8;
    }
    shoal_beacon_destroy (&beacon);
    beacon = shoal_beacon_new ("lo", SHOAL_BEACON_PORT, arg->mesh);
    if (beacon || !strstr (shoal_beacon_error (), "lo is down")) {
        fprintf (stderr, "expected 'lo is down', got: %s\n", shoal_beacon_error ());
        rc |= 16;
    }
    shoal_beacon_destroy (&beacon);
    return rc;
}

static void
s_register_netns (const char *name)
{
    snprintf (s_netns_path[s_netns_count], sizeof s_netns_path[0], "/var/run/netns/%.40s", name);
    s_netns_count++;
}

static void
s_test_netns (void)
{
    if (geteuid () != 0) {
        skip (1, "zbeacon across namespaces needs root");
        return;
    }
    if (!s_find_ip ()) {
        skip (1, "zbeacon across namespaces needs the ip tool (iproute2)");
        return;
    }
    double start = tap_now ();
    int pid = (int) getpid ();
    const char *tags[3] = {"a", "b", "c"};
    char ns[NETNS_COUNT][32], veth[3][16], port[3][16], bridge[16], address[3][32];
    for (int i = 0; i < 3; i++) {
        snprintf (ns[i], sizeof ns[i], "shoalb%d%s", pid, tags[i]);
        snprintf (veth[i], sizeof veth[i], "sb%d%s", pid, tags[i]);
        snprintf (port[i], sizeof port[i], "sb%dp%s", pid, tags[i]);
        snprintf (address[i], sizeof address[i], "10.213.0.%d/24", i + 1);
    }
    snprintf (ns[3], sizeof ns[3], "shoalb%dbr", pid);
    snprintf (bridge, sizeof bridge, "sb%dbr", pid);

    //  Namespaces are registered for cleanup before they exist, so a
    //  failure half-way through still removes what was made.
    bool made = true;
    for (int i = 0; i < NETNS_COUNT && made; i++) {
        s_register_netns (ns[i]);
        made = s_ip ("netns", "add", ns[i], NULL) == 0;
    }
    made = made && s_ip ("-n", ns[3], "link", "add", bridge, "type", "bridge", NULL) == 0
           && s_ip ("-n", ns[3], "link", "set", bridge, "up", NULL) == 0;
    for (int i = 0; i < 3 && made; i++)
        made =
            s_ip ("-n", ns[i], "link", "add", veth[i], "type", "veth", "peer", "name", port[i],
                  "netns", ns[3], NULL)
                == 0
            && s_ip ("-n", ns[3], "link", "set", port[i], "master", bridge, "up", NULL) == 0
            && s_ip ("-n", ns[i], "addr", "add", address[i], "broadcast", "+", "dev", veth[i], NULL)
                   == 0
            && s_ip ("-n", ns[i], "link", "set", "lo", "up", NULL) == 0
            && s_ip ("-n", ns[i], "link", "set", veth[i], "up", NULL) == 0;
    diag ("namespaces set up in %.0f ms", (tap_now () - start) * 1000);
    if (!made) {
        skip (1, "cannot make network namespaces, veth or bridge here");
        s_cleanup ();
        return;
    }

    //  Nodes 20, 21, 22 in namespaces a, b, c; node 24 of another mesh
    //  next to node 20 in namespace a, on the same interface and port; in
    //  the bridge's namespace, a child that checks the refusals.
    uint64_t mesh = shoal_mesh_id ("test-beacon-netns");
    s_ns_child_arg_t args[5];
    s_child_t children[5];
    s_view_t views[5];
    memset (views, 0, sizeof views);
    for (int i = 0; i < 5; i++) {
        bool refusal = i == 3;
        args[i] =
            (s_ns_child_arg_t){.mesh = i == 4 ? shoal_mesh_id ("other-mesh") : mesh, .n = 20 + i};
        snprintf (args[i].netns, sizeof args[i].netns, "%.31s", ns[i == 4 ? 0 : i]);
        snprintf (args[i].interface, sizeof args[i].interface, "%.15s",
                  refusal ? port[0] : veth[i == 4 ? 0 : i]);
        views[i].dropped = -1;
        children[i] = s_spawn (refusal ? s_refusal_child : s_ns_child, &args[i]);
    }
    double begin = tap_now ();
    double done_at = 0;
    //  Runs until the three have seen each other, then 3 intervals more so
    //  that the other mesh's beacons have been out for a while.
    while (tap_now () - begin < 8.0 && (!done_at || tap_now () < done_at + 0.3)) {
        bool done = true;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                done = done && (i == j || views[i].seen[20 + j]);
        if (done && !done_at) {
            done_at = tap_now ();
            diag ("zbeacon nodes in three namespaces found each other in %.0f ms",
                  (done_at - begin) * 1000);
        }
        struct pollfd fds[5];
        for (int i = 0; i < 5; i++)
            fds[i] = (struct pollfd){.fd = children[i].report_r, .events = POLLIN};
        if (poll (fds, 5, 50) <= 0)
            continue;
        for (int i = 0; i < 5; i++)
            if (fds[i].revents && children[i].report_r != -1)
                s_read_report (&children[i], &views[i]);
    }
    for (int i = 0; i < 3; i++) {
        int a = (i + 1) % 3, b = (i + 2) % 3;
        ok (views[i].seen[20 + a] && views[i].seen[20 + b],
            "zbeacon node in namespace %s sees the other two", tags[i]);
        char expect[16];
        snprintf (expect, sizeof expect, "10.213.0.%d", a + 1);
        is_str (views[i].ip[20 + a], expect, "node %s gets node %s's address from zbeacon", tags[i],
                tags[a]);
        ok (!views[i].seen[20 + i], "zbeacon node %s does not get its own beacon", tags[i]);
        ok (!views[i].seen[24], "zbeacon node %s does not get the other mesh's node", tags[i]);
    }
    bool other_saw = false;
    for (int n = 0; n < MAX_NODES; n++)
        other_saw = other_saw || views[4].seen[n];
    ok (!other_saw, "the other mesh's zbeacon node gets none of ours");
    int status[5];
    for (int i = 0; i < 5; i++)
        status[i] = s_finish (&children[i], &views[i]);
    for (int i = 0; i < 3; i++) {
        ok (s_exited_ok (status[i]), "zbeacon node %s exits cleanly (status 0x%x)", tags[i],
            status[i]);
        is_int (views[i].dropped, 0,
                "zbeacon node %s counts no drops: zbeacon's 12-byte filter removed the other mesh",
                tags[i]);
    }
    ok (s_exited_ok (status[4]), "the other mesh's zbeacon node exits cleanly (status 0x%x)",
        status[4]);
    ok (s_exited_ok (status[3]),
        "an interface without IPv4 and a down lo are refused with reasons (status 0x%x)",
        status[3]);

    s_cleanup ();
    int left = 0;
    for (int i = 0; i < NETNS_COUNT; i++)
        left += access (s_netns_path[i], F_OK) == 0;
    is_int (left, 0, "the test's network namespaces are removed");
    diag ("namespace test took %.0f ms", (tap_now () - start) * 1000);
}

//  --------------------------------------------------------------------------
//  Refusals that need no network

static void
s_test_refusals (int port)
{
    shoal_beacon_t *beacon = shoal_beacon_new ("shoalnosuch0", port, 1);
    ok (beacon == NULL, "an unknown interface is refused");
    ok (strstr (shoal_beacon_error (), "no such interface") != NULL,
        "the error names the reason: %s", shoal_beacon_error ());
    beacon = shoal_beacon_new ("*", port, 1);
    ok (beacon == NULL, "\"*\" (zbeacon's every-interface mode) is refused");
    beacon = shoal_beacon_new ("", port, 1);
    ok (beacon == NULL, "an empty interface name is refused");
    beacon = shoal_beacon_new (NULL, port, 1);
    ok (beacon == NULL, "a NULL interface name is refused");
    beacon = shoal_beacon_new ("lo", 0, 1);
    ok (beacon == NULL && strstr (shoal_beacon_error (), "port"), "port 0 is refused");
    beacon = shoal_beacon_new ("lo", 65536, 1);
    ok (beacon == NULL, "port 65536 is refused");
    shoal_beacon_destroy (&beacon);
}

int
main (void)
{
    plan_lazy ();
    s_owner = getpid ();
    atexit (s_cleanup);
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    sigaction (SIGHUP, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    double start = tap_now ();
    int port = s_free_port ();
    diag ("loopback beacon port %d", port);

    s_test_mesh_id ();
    s_test_codec ();
    s_test_loopback (port);
    s_test_loopback_processes (port);
    //  Before anything in this process starts czmq: the namespace children
    //  start their own, and a fork must not inherit a running one.
    s_test_netns ();
    s_test_refusals (port);

    diag ("test_beacon took %.1f s", tap_now () - start);
    return done_testing ();
}
