/*  test_mesh - nodes as separate processes: static peers with peer
    exchange, the loopback beacon, a publisher killed with SIGKILL
    mid-stream, and zbeacon discovery across network namespaces that the
    test makes and removes.

    The parent never starts czmq: every node runs in a forked child, which
    reports to the parent over a pipe, one line per fact ("ack 17",
    "got <origin> 17", "ready <endpoint>"). Children are killed and reaped
    by pid; namespaces are removed at exit and on signals (tests/mesh.c). */

#include "shoal.h"
#include "mesh.h"
#include "tap.h"

#include <czmq.h>
#include <errno.h>

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

//  The child: runs a node in its role and reports what it does. SIGTERM
//  (caught by czmq) ends it cleanly.
static void
s_run_role (const void *arg)
{
    const s_role_t *role = (const s_role_t *) arg;
    if (role->netns && mesh_enter_netns (role->netns)) {
        mesh_report ("error cannot enter %s: %s", role->netns, strerror (errno));
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
        mesh_report ("error %s", shoal_node_start_error ());
        _exit (2);
    }
    char id[33];
    shoal_id_to_hex (shoal_node_id (node), id);
    mesh_report ("ready %s %s", id, shoal_node_router_endpoint (node));
    shoal_from_t beginning = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    if (role->expect)
        shoal_node_subscribe (node, "mesh", NULL, &beginning);
    int64_t deadline = zclock_mono () + role->run_ms;
    int published = 0, received = 0;
    uint64_t last_acked = 0;
    while (zclock_mono () < deadline && !zsys_interrupted
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
                    mesh_report ("ack %" PRIu64, s);
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
            mesh_report ("got %s %" PRIu64, origin, shoal_event_seq (event));
            received++;
            shoal_event_destroy (&event);
            event = shoal_node_recv (node, 0, NULL);
        }
    }
    mesh_report ("done %d %d", published, received);
    shoal_node_destroy (&node);
    _exit (0);
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
s_collect (mesh_child_t *child, const char *origin, int expect, int timeout_ms)
{
    s_seen_t seen = {{0}, 0, 0, 0};
    snprintf (seen.origin, sizeof seen.origin, "%s", origin);
    char line[256];
    int64_t deadline = zclock_mono () + timeout_ms;
    while (seen.received < expect && zclock_mono () < deadline
           && mesh_read_line (child, line, sizeof line, (int) (deadline - zclock_mono ()))) {
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
    mesh_child_t children[3];
    mesh_spawn (&children[0], s_run_role, &publisher);
    char p_id[64], p_router[256];
    ok (mesh_ready (&children[0], p_id, sizeof p_id, p_router, sizeof p_router),
        "publisher process started");

    s_role_t first = s_role ("s1-static", mesh);
    first.peers[0] = p_router;
    first.peer_count = 1;
    first.expect = 500;
    mesh_spawn (&children[1], s_run_role, &first);
    char s1_id[64], s1_router[256];
    ok (mesh_ready (&children[1], s1_id, sizeof s1_id, s1_router, sizeof s1_router),
        "subscriber 1 started, seeded with the publisher");

    //  The second subscriber knows only the first: it learns the publisher
    //  by peer exchange in Hello.
    s_role_t second = s_role ("s2-static", mesh);
    second.peers[0] = s1_router;
    second.peer_count = 1;
    second.expect = 500;
    mesh_spawn (&children[2], s_run_role, &second);
    char s2_id[64], s2_router[256];
    ok (mesh_ready (&children[2], s2_id, sizeof s2_id, s2_router, sizeof s2_router),
        "subscriber 2 started, seeded with subscriber 1");

    s_seen_t one = s_collect (&children[1], p_id, 500, 20000);
    s_seen_t two = s_collect (&children[2], p_id, 500, 20000);
    is_int (one.received, 500, "subscriber 1 (static peer) gets all 500 events");
    is_int (one.out_of_order, 0, "subscriber 1: in order, no gap, no duplicate");
    is_int (two.received, 500, "subscriber 2 (peer exchange only) gets all 500 events");
    is_int (two.out_of_order, 0, "subscriber 2: in order, no gap, no duplicate");
    for (int i = 0; i < 3; i++)
        mesh_finish (&children[i], 5000);
}

static void
test_loopback_beacon_processes (void)
{
    char mesh[64];
    snprintf (mesh, sizeof mesh, "mesh-lo-%d", (int) getpid ());
    int port = 20000 + (int) (getpid () * 7 % 30000);
    mesh_child_t children[3];
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
        mesh_spawn (&children[i], s_run_role, &role);
        ok (mesh_ready (&children[i], ids[i], sizeof ids[i], routers[i], sizeof routers[i]),
            "loopback beacon process %s started", names[i]);
    }
    for (int i = 1; i < 3; i++) {
        s_seen_t seen = s_collect (&children[i], ids[0], 200, 20000);
        is_int (seen.received, 200, "%s finds the publisher by beacon and gets all 200", names[i]);
        is_int (seen.out_of_order, 0, "%s: in order, no gap, no duplicate", names[i]);
    }
    for (int i = 0; i < 3; i++)
        mesh_finish (&children[i], 5000);
}

static void
test_publisher_killed (void)
{
    char mesh[64], router[64];
    snprintf (mesh, sizeof mesh, "mesh-kill-%d", (int) getpid ());
    snprintf (router, sizeof router, "tcp://127.0.0.1:%d", tap_free_port ());
    s_role_t publisher = s_role ("p-kill", mesh);
    publisher.router = router;
    publisher.publish = -1; //  until killed
    publisher.publish_interval_us = 200;
    mesh_child_t pub;
    mesh_spawn (&pub, s_run_role, &publisher);
    char p_id[64], p_router[256];
    ok (mesh_ready (&pub, p_id, sizeof p_id, p_router, sizeof p_router),
        "publisher started at a fixed endpoint");

    s_role_t reader = s_role ("s-kill", mesh);
    reader.peers[0] = router;
    reader.peer_count = 1;
    reader.expect = 1000000; //  reads until its run time ends
    reader.run_ms = 25000;
    mesh_child_t sub;
    mesh_spawn (&sub, s_run_role, &reader);
    char s_id[64], s_router[256];
    ok (mesh_ready (&sub, s_id, sizeof s_id, s_router, sizeof s_router), "subscriber started");

    //  Let it run, then SIGKILL the publisher in the middle of its stream.
    srand ((unsigned) getpid ());
    int64_t until = zclock_mono () + 800 + rand () % 700;
    uint64_t acked = 0;
    char line[256];
    while (zclock_mono () < until && mesh_read_line (&pub, line, sizeof line, 100)) {
        uint64_t seq;
        if (sscanf (line, "ack %" SCNu64, &seq) == 1)
            acked = seq;
    }
    mesh_kill (&pub);
    //  Acks already written to the pipe before the kill count too.
    while (mesh_read_line (&pub, line, sizeof line, 200)) {
        uint64_t seq;
        if (sscanf (line, "ack %" SCNu64, &seq) == 1)
            acked = seq;
    }
    mesh_close (&pub);
    diag ("publisher killed after %" PRIu64 " acknowledged events", acked);
    ok (acked > 10, "the publisher acknowledged events before the kill (%" PRIu64 ")", acked);

    //  Restarted on the same data directory and endpoint, it serves its
    //  log again; the subscriber repairs whatever the kill cut off.
    publisher.publish = 0;
    publisher.expect = 0;
    publisher.run_ms = 15000;
    publisher.stay = true; //  serves its log until stopped
    mesh_spawn (&pub, s_run_role, &publisher);
    char p_id2[64], p_router2[256];
    ok (mesh_ready (&pub, p_id2, sizeof p_id2, p_router2, sizeof p_router2), "publisher restarted");
    is_str (p_id2, p_id, "the restarted publisher has the same node id");
    s_seen_t seen = s_collect (&sub, p_id, (int) acked, 15000);
    ok (seen.received >= (int) acked,
        "every acknowledged event reaches the subscriber (%d of %" PRIu64 ")", seen.received,
        acked);
    is_int (seen.out_of_order, 0, "exactly once and in order across the kill");
    mesh_finish (&pub, 5000);
    mesh_finish (&sub, 5000);
}

static void
test_namespaces (void)
{
    if (geteuid () != 0 || access ("/var/run", W_OK) != 0) {
        skip (7, "network namespaces need root");
        return;
    }
    int pid = (int) getpid ();
    char ns[4][32], veth[3][16], port[3][16], bridge[16], address[3][24];
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
    for (int i = 0; i < 4 && made; i++)
        made = mesh_netns_add (ns[i]) == 0;
    made = made && MESH_IP ("-n", ns[3], "link", "add", bridge, "type", "bridge") == 0
           && MESH_IP ("-n", ns[3], "link", "set", bridge, "up") == 0;
    for (int i = 0; i < 3 && made; i++)
        made = MESH_IP ("-n", ns[i], "link", "add", veth[i], "type", "veth", "peer", "name",
                        port[i], "netns", ns[3])
                   == 0
               && MESH_IP ("-n", ns[3], "link", "set", port[i], "master", bridge, "up") == 0
               && MESH_IP ("-n", ns[i], "addr", "add", address[i], "broadcast", "+", "dev", veth[i])
                      == 0
               && MESH_IP ("-n", ns[i], "link", "set", "lo", "up") == 0
               && MESH_IP ("-n", ns[i], "link", "set", veth[i], "up") == 0;
    if (!made) {
        mesh_netns_remove_all ();
        skip (7, "cannot make network namespaces, veth pairs or a bridge here");
        return;
    }
    //  Three nodes, one per namespace, zbeacon on their veth: each
    //  publishes 20 events and reads everyone's from the beginning.
    char mesh[64];
    snprintf (mesh, sizeof mesh, "mesh-ns-%d", pid);
    mesh_child_t children[3];
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
        mesh_spawn (&children[i], s_run_role, &role);
        ok (mesh_ready (&children[i], ids[i], sizeof ids[i], routers[i], sizeof routers[i]),
            "node in namespace %c started on %s", tags[i], veth[i]);
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
        mesh_finish (&children[i], 5000);
    mesh_netns_remove_all ();
    int left = 0;
    for (int i = 0; i < 4; i++)
        left += mesh_netns_exists (ns[i]);
    is_int (left, 0, "the test's namespaces are removed");
}

int
main (void)
{
    mesh_init (120);
    plan_lazy ();
    test_static_peers_and_exchange ();
    test_loopback_beacon_processes ();
    test_publisher_killed ();
    test_namespaces ();
    return done_testing ();
}
