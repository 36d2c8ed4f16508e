/*  test_mesh - nodes as separate processes: static peers with peer
    exchange, the loopback beacon, a publisher killed with SIGKILL
    mid-stream, and zbeacon discovery across network namespaces that the
    test makes and removes.

    The parent never starts czmq: every node runs in a forked child, which
    reports to the parent over a pipe, one line per fact ("ack 17",
    "got <origin> 17", "ready <endpoint>"). Children are killed and reaped
    by pid; namespaces are removed at exit and on signals. */

#include "shoal.h"
#include "tap.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CHILDREN 8
#define NAMESPACES 4 //  three node namespaces and the bridge's

static pid_t s_owner;                           //  the test's own process
static volatile pid_t s_children[MAX_CHILDREN]; //  children alive, 0 = free
static char s_netns[NAMESPACES][64];            //  /var/run/netns/NAME of ours, "" = none

//  --------------------------------------------------------------------------
//  Cleanup: children by pid, then namespaces. Signal-safe.

static void
s_cleanup (void)
{
    if (getpid () != s_owner)
        return;
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (s_children[i] > 0) {
            kill (s_children[i], SIGKILL);
            waitpid (s_children[i], NULL, 0);
            s_children[i] = 0;
        }
    for (int i = 0; i < NAMESPACES; i++)
        if (s_netns[i][0]) {
            umount2 (s_netns[i], MNT_DETACH);
            unlink (s_netns[i]);
            s_netns[i][0] = 0;
        }
}

static void
s_on_signal (int signum)
{
    s_cleanup ();
    signal (signum, SIG_DFL);
    raise (signum);
}

//  --------------------------------------------------------------------------
//  Children

typedef struct {
    pid_t pid;          //  child process
    int fd;             //  read end of its report pipe
    char buffer[65536]; //  partial lines
    size_t used;        //  bytes in buffer
} s_child_t;

typedef struct {
    const char *name;        //  node name
    char data[4200];         //  data directory
    const char *interface;   //  "none", "lo" or a veth
    const char *netns;       //  namespace to enter, NULL = none
    const char *router;      //  ROUTER endpoint, NULL = ephemeral on loopback
    const char *peers[2];    //  static peers
    size_t peer_count;       //  entries in peers
    int beacon_port;         //  for lo and veth
    const char *mesh;        //  mesh name
    int publish;             //  events to publish (acked ones are reported)
    int publish_interval_us; //  pause between publishes
    int expect;              //  events to receive (stream "mesh", from the beginning)
    int run_ms;              //  how long to run at most
    bool stay;               //  keep serving until run_ms or a signal, not just until done
} s_role_t;

static int s_report_fd = -1;

static void
s_report (const char *format, ...)
{
    char line[256];
    va_list args;
    va_start (args, format);
    int size = vsnprintf (line, sizeof line - 1, format, args);
    va_end (args);
    line[size++] = '\n';
    if (write (s_report_fd, line, (size_t) size) != size)
        _exit (3);
}

static int
s_enter_netns (const char *name)
{
    char path[128];
    snprintf (path, sizeof path, "/var/run/netns/%s", name);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns (fd, CLONE_NEWNET) < 0)
        return -1;
    close (fd);
    return 0;
}

static void
s_run_role (const s_role_t *role)
{
    if (role->netns && s_enter_netns (role->netns)) {
        s_report ("error cannot enter %s: %s", role->netns, strerror (errno));
        _exit (2);
    }
    shoal_node_config_t config;
    shoal_node_config_defaults (&config);
    config.name = role->name;
    config.mesh = role->mesh;
    config.data_dir = role->data;
    config.interface = role->interface;
    config.beacon_port = role->beacon_port;
    config.beacon_interval_ms = 200;
    config.heartbeat_ms = 200;
    config.router_endpoint = role->router;
    if (strcmp (role->interface, "none") == 0 || strcmp (role->interface, "lo") == 0) {
        config.pub_endpoint = "tcp://127.0.0.1:*";
        if (!role->router)
            config.router_endpoint = "tcp://127.0.0.1:*";
    }
    config.peers = role->peers;
    config.peer_count = role->peer_count;
    config.log_level = SHOAL_LOG_ERROR;
    shoal_node_t *node = shoal_node_new (&config, NULL);
    if (!node) {
        s_report ("error %s", shoal_node_start_error ());
        _exit (2);
    }
    char id[33];
    shoal_id_to_hex (shoal_node_id (node), id);
    s_report ("ready %s %s", id, shoal_node_router_endpoint (node));
    shoal_from_t beginning = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    if (role->expect)
        shoal_node_subscribe (node, "mesh", NULL, &beginning);
    int64_t deadline = zclock_mono () + role->run_ms;
    int published = 0, received = 0;
    uint64_t last_acked = 0;
    while (zclock_mono () < deadline
           && (role->stay || published < role->publish || received < role->expect
               || role->publish < 0)) {
        if (published < role->publish || role->publish < 0) {
            shoal_event_t *event = shoal_event_new ();
            shoal_event_set_stream (event, "mesh");
            shoal_event_set_type (event, "Tick");
            shoal_event_set_payload (event, role->name, strlen (role->name));
            uint64_t seq = 0;
            if (shoal_node_publish (node, event, &seq, NULL) == 0)
                published++;
            shoal_event_destroy (&event);
            //  Acknowledged = durable: reported only once the node says so.
            if (seq && shoal_node_wait_durable (node, "mesh", seq, 5000) == 0) {
                for (uint64_t s = last_acked + 1; s <= seq; s++)
                    s_report ("ack %" PRIu64, s);
                last_acked = seq;
            }
            if (role->publish_interval_us)
                usleep ((useconds_t) role->publish_interval_us);
        }
        bool publishing = published < role->publish || role->publish < 0;
        shoal_event_t *event = shoal_node_recv (node, publishing ? 0 : 50, NULL);
        while (event) {
            char origin[33];
            shoal_id_to_hex (shoal_event_origin (event), origin);
            s_report ("got %s %" PRIu64, origin, shoal_event_seq (event));
            received++;
            shoal_event_destroy (&event);
            event = shoal_node_recv (node, 0, NULL);
        }
    }
    s_report ("done %d %d", published, received);
    shoal_node_destroy (&node);
    _exit (0);
}

static void
s_spawn (s_child_t *child, const s_role_t *role)
{
    int pipes[2];
    if (pipe (pipes))
        bail ("pipe: %s", strerror (errno));
    fflush (stdout);
    pid_t pid = fork ();
    if (pid < 0)
        bail ("fork: %s", strerror (errno));
    if (pid == 0) {
        close (pipes[0]);
        s_report_fd = pipes[1];
        s_run_role (role);
    }
    close (pipes[1]);
    child->pid = pid;
    child->fd = pipes[0];
    child->used = 0;
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (s_children[i] == 0) {
            s_children[i] = pid;
            break;
        }
}

//  Reads one whole line from a child, waiting up to timeout_ms. The line
//  (without newline) goes to line; returns false on timeout or end.
static bool
s_read_line (s_child_t *child, char *line, size_t size, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        char *newline = memchr (child->buffer, '\n', child->used);
        if (newline) {
            size_t length = (size_t) (newline - child->buffer);
            snprintf (line, size, "%.*s", (int) length, child->buffer);
            memmove (child->buffer, newline + 1, child->used - length - 1);
            child->used -= length + 1;
            return true;
        }
        int64_t left = deadline - zclock_mono ();
        if (left <= 0 || child->fd < 0)
            return false;
        struct pollfd item = {child->fd, POLLIN, 0};
        if (poll (&item, 1, (int) left) <= 0)
            continue;
        ssize_t got =
            read (child->fd, child->buffer + child->used, sizeof child->buffer - child->used - 1);
        if (got <= 0) {
            close (child->fd);
            child->fd = -1;
        }
        else
            child->used += (size_t) got;
    }
}

//  Ends a child: SIGTERM, then SIGKILL after timeout_ms.
static void
s_finish (s_child_t *child, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    int status;
    kill (child->pid, SIGTERM);
    while (waitpid (child->pid, &status, WNOHANG) == 0 && zclock_mono () < deadline)
        usleep (10000);
    kill (child->pid, SIGKILL);
    waitpid (child->pid, &status, 0);
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (s_children[i] == child->pid)
            s_children[i] = 0;
    if (child->fd >= 0)
        close (child->fd);
    child->fd = -1;
}

//  What a receiving child saw of one origin: counts and order.
typedef struct {
    char origin[33];  //  whose events
    int received;     //  events of that origin
    int out_of_order; //  not at the next seq
    uint64_t last;    //  last seq
} s_seen_t;

//  Reads "got" lines until `expect` events of origin arrived or timeout.
static s_seen_t
s_collect (s_child_t *child, const char *origin, int expect, int timeout_ms)
{
    s_seen_t seen = {{0}, 0, 0, 0};
    snprintf (seen.origin, sizeof seen.origin, "%s", origin);
    char line[256];
    int64_t deadline = zclock_mono () + timeout_ms;
    while (seen.received < expect && zclock_mono () < deadline
           && s_read_line (child, line, sizeof line, (int) (deadline - zclock_mono ()))) {
        char who[64];
        uint64_t seq;
        if (sscanf (line, "got %63s %" SCNu64, who, &seq) == 2 && strcmp (who, origin) == 0) {
            if (seq != seen.last + 1)
                seen.out_of_order++;
            seen.last = seq;
            seen.received++;
        }
    }
    return seen;
}

static bool
s_ready (s_child_t *child, char *id, char *endpoint)
{
    char line[512];
    while (s_read_line (child, line, sizeof line, 10000)) {
        if (sscanf (line, "ready %32s %200s", id, endpoint) == 2)
            return true;
        if (strncmp (line, "error", 5) == 0) {
            diag ("child: %s", line);
            return false;
        }
    }
    return false;
}

//  A free TCP port on loopback, for a node that must keep its endpoint
//  across a restart.
static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    int port = -1;
    if (bind (fd, (struct sockaddr *) &address, sizeof address) == 0
        && getsockname (fd, (struct sockaddr *) &address, &length) == 0)
        port = ntohs (address.sin_port);
    close (fd);
    return port;
}

//  --------------------------------------------------------------------------
//  Tests

static s_role_t
s_role (const char *name, const char *mesh)
{
    s_role_t role;
    memset (&role, 0, sizeof role);
    role.name = name;
    role.mesh = mesh;
    role.interface = "none";
    role.run_ms = 20000;
    snprintf (role.data, sizeof role.data, "%s", tap_path (name));
    return role;
}

static void
test_static_peers_and_exchange (void)
{
    char mesh[64];
    snprintf (mesh, sizeof mesh, "mesh-static-%d", (int) getpid ());
    s_role_t publisher = s_role ("p-static", mesh);
    publisher.publish = 500;
    publisher.run_ms = 30000;
    publisher.stay = true;
    s_child_t children[3];
    s_spawn (&children[0], &publisher);
    char p_id[64], p_router[256];
    ok (s_ready (&children[0], p_id, p_router), "publisher process started");

    s_role_t first = s_role ("s1-static", mesh);
    first.peers[0] = p_router;
    first.peer_count = 1;
    first.expect = 500;
    s_spawn (&children[1], &first);
    char s1_id[64], s1_router[256];
    ok (s_ready (&children[1], s1_id, s1_router),
        "subscriber 1 started, seeded with the publisher");

    //  The second subscriber knows only the first: it learns the publisher
    //  by peer exchange in Hello.
    s_role_t second = s_role ("s2-static", mesh);
    second.peers[0] = s1_router;
    second.peer_count = 1;
    second.expect = 500;
    s_spawn (&children[2], &second);
    char s2_id[64], s2_router[256];
    ok (s_ready (&children[2], s2_id, s2_router), "subscriber 2 started, seeded with subscriber 1");

    s_seen_t one = s_collect (&children[1], p_id, 500, 20000);
    s_seen_t two = s_collect (&children[2], p_id, 500, 20000);
    is_int (one.received, 500, "subscriber 1 (static peer) gets all 500 events");
    is_int (one.out_of_order, 0, "subscriber 1: in order, no gap, no duplicate");
    is_int (two.received, 500, "subscriber 2 (peer exchange only) gets all 500 events");
    is_int (two.out_of_order, 0, "subscriber 2: in order, no gap, no duplicate");
    for (int i = 0; i < 3; i++)
        s_finish (&children[i], 5000);
}

static void
test_loopback_beacon_processes (void)
{
    char mesh[64];
    snprintf (mesh, sizeof mesh, "mesh-lo-%d", (int) getpid ());
    int port = 20000 + (int) (getpid () * 7 % 30000);
    s_child_t children[3];
    char ids[3][64], routers[3][256];
    const char *names[3] = {"lo-p", "lo-s1", "lo-s2"};
    for (int i = 0; i < 3; i++) {
        s_role_t role = s_role (names[i], mesh);
        role.interface = "lo";
        role.beacon_port = port;
        role.publish = i == 0 ? 200 : 0;
        role.publish_interval_us = i == 0 ? 2000 : 0;
        role.expect = i == 0 ? 0 : 200;
        role.stay = true;
        s_spawn (&children[i], &role);
        ok (s_ready (&children[i], ids[i], routers[i]), "loopback beacon process %s started",
            names[i]);
    }
    for (int i = 1; i < 3; i++) {
        s_seen_t seen = s_collect (&children[i], ids[0], 200, 20000);
        is_int (seen.received, 200, "%s finds the publisher by beacon and gets all 200", names[i]);
        is_int (seen.out_of_order, 0, "%s: in order, no gap, no duplicate", names[i]);
    }
    for (int i = 0; i < 3; i++)
        s_finish (&children[i], 5000);
}

static void
test_publisher_killed (void)
{
    char mesh[64], router[64];
    snprintf (mesh, sizeof mesh, "mesh-kill-%d", (int) getpid ());
    snprintf (router, sizeof router, "tcp://127.0.0.1:%d", s_free_port ());
    s_role_t publisher = s_role ("p-kill", mesh);
    publisher.router = router;
    publisher.publish = -1; //  until killed
    publisher.publish_interval_us = 200;
    s_child_t pub;
    s_spawn (&pub, &publisher);
    char p_id[64], p_router[256];
    ok (s_ready (&pub, p_id, p_router), "publisher started at a fixed endpoint");

    s_role_t reader = s_role ("s-kill", mesh);
    reader.peers[0] = router;
    reader.peer_count = 1;
    reader.expect = 1000000; //  reads until its run time ends
    reader.run_ms = 25000;
    s_child_t sub;
    s_spawn (&sub, &reader);
    char s_id[64], s_router[256];
    ok (s_ready (&sub, s_id, s_router), "subscriber started");

    //  Let it run, then SIGKILL the publisher in the middle of its stream.
    srand ((unsigned) getpid ());
    int64_t until = zclock_mono () + 800 + rand () % 700;
    uint64_t acked = 0;
    char line[256];
    while (zclock_mono () < until && s_read_line (&pub, line, sizeof line, 100)) {
        uint64_t seq;
        if (sscanf (line, "ack %" SCNu64, &seq) == 1)
            acked = seq;
    }
    kill (pub.pid, SIGKILL);
    //  Acks already written to the pipe before the kill count too.
    while (s_read_line (&pub, line, sizeof line, 200)) {
        uint64_t seq;
        if (sscanf (line, "ack %" SCNu64, &seq) == 1)
            acked = seq;
    }
    s_finish (&pub, 1000);
    diag ("publisher killed after %" PRIu64 " acknowledged events", acked);
    ok (acked > 10, "the publisher acknowledged events before the kill (%" PRIu64 ")", acked);

    //  Restarted on the same data directory and endpoint, it serves its
    //  log again; the subscriber repairs whatever the kill cut off.
    publisher.publish = 0;
    publisher.expect = 0;
    publisher.run_ms = 15000;
    s_spawn (&pub, &publisher);
    char p_id2[64], p_router2[256];
    ok (s_ready (&pub, p_id2, p_router2), "publisher restarted");
    is_str (p_id2, p_id, "the restarted publisher has the same node id");
    s_seen_t seen = s_collect (&sub, p_id, (int) acked, 15000);
    ok (seen.received >= (int) acked,
        "every acknowledged event reaches the subscriber (%d of %" PRIu64 ")", seen.received,
        acked);
    is_int (seen.out_of_order, 0, "exactly once and in order across the kill");
    s_finish (&pub, 5000);
    s_finish (&sub, 5000);
}

//  Runs the ip tool; 0 when it succeeded.
static int
s_ip (const char *const *args)
{
    pid_t pid = fork ();
    if (pid == 0) {
        int null = open ("/dev/null", O_WRONLY);
        dup2 (null, 1);
        dup2 (null, 2);
        execvp ("ip", (char *const *) args);
        _exit (127);
    }
    int status = 0;
    waitpid (pid, &status, 0);
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

#define IP(...) s_ip ((const char *const[]){"ip", __VA_ARGS__, NULL})

static void
test_namespaces (void)
{
    if (geteuid () != 0 || access ("/var/run", W_OK) != 0) {
        skip (7, "network namespaces need root");
        return;
    }
    int pid = (int) getpid ();
    char ns[NAMESPACES][32], veth[3][16], port[3][16], bridge[16], address[3][24];
    const char *tags = "abc";
    for (int i = 0; i < 3; i++) {
        snprintf (ns[i], sizeof ns[i], "shoalm%d%c", pid, tags[i]);
        snprintf (veth[i], sizeof veth[i], "sm%d%c", pid % 100000, tags[i]);
        snprintf (port[i], sizeof port[i], "sm%dp%c", pid % 100000, tags[i]);
        snprintf (address[i], sizeof address[i], "10.214.0.%d/24", i + 1);
    }
    snprintf (ns[3], sizeof ns[3], "shoalm%dbr", pid);
    snprintf (bridge, sizeof bridge, "sm%dbr", pid % 100000);
    bool made = true;
    for (int i = 0; i < NAMESPACES && made; i++) {
        snprintf (s_netns[i], sizeof s_netns[i], "/var/run/netns/%s", ns[i]);
        made = IP ("netns", "add", ns[i]) == 0;
    }
    made = made && IP ("-n", ns[3], "link", "add", bridge, "type", "bridge") == 0
           && IP ("-n", ns[3], "link", "set", bridge, "up") == 0;
    for (int i = 0; i < 3 && made; i++)
        made = IP ("-n", ns[i], "link", "add", veth[i], "type", "veth", "peer", "name", port[i],
                   "netns", ns[3])
                   == 0
               && IP ("-n", ns[3], "link", "set", port[i], "master", bridge, "up") == 0
               && IP ("-n", ns[i], "addr", "add", address[i], "broadcast", "+", "dev", veth[i]) == 0
               && IP ("-n", ns[i], "link", "set", "lo", "up") == 0
               && IP ("-n", ns[i], "link", "set", veth[i], "up") == 0;
    if (!made) {
        s_cleanup ();
        skip (7, "cannot make network namespaces, veth pairs or a bridge here");
        return;
    }
    //  Three nodes, one per namespace, zbeacon on their veth: each
    //  publishes 20 events and reads everyone's from the beginning.
    char mesh[64];
    snprintf (mesh, sizeof mesh, "mesh-ns-%d", pid);
    s_child_t children[3];
    char ids[3][64], routers[3][256];
    static const char *names[3] = {"ns-a", "ns-b", "ns-c"};
    for (int i = 0; i < 3; i++) {
        s_role_t role = s_role (names[i], mesh);
        role.interface = veth[i];
        role.netns = ns[i];
        role.beacon_port = 5680;
        role.publish = 20;
        role.expect = 60;
        role.stay = true;
        s_spawn (&children[i], &role);
        ok (s_ready (&children[i], ids[i], routers[i]), "node in namespace %c started on %s",
            tags[i], veth[i]);
    }
    for (int i = 0; i < 3; i++) {
        int other = (i + 1) % 3;
        s_seen_t seen = s_collect (&children[i], ids[other], 20, 15000);
        ok (seen.received == 20 && seen.out_of_order == 0,
            "node %c found node %c by zbeacon across the bridge and got its 20 events in order",
            tags[i], tags[other]);
        if (seen.received != 20 || seen.out_of_order)
            diag ("node %c: %d events of %c, %d out of order", tags[i], seen.received, tags[other],
                  seen.out_of_order);
    }
    for (int i = 0; i < 3; i++)
        s_finish (&children[i], 5000);
    s_cleanup ();
    int left = 0;
    for (int i = 0; i < NAMESPACES; i++) {
        char path[96];
        snprintf (path, sizeof path, "/var/run/netns/%.31s", ns[i]);
        left += access (path, F_OK) == 0;
    }
    is_int (left, 0, "the test's namespaces are removed");
}

int
main (void)
{
    s_owner = getpid ();
    atexit (s_cleanup);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);
    plan_lazy ();
    test_static_peers_and_exchange ();
    test_loopback_beacon_processes ();
    test_publisher_killed ();
    test_namespaces ();
    return done_testing ();
}
