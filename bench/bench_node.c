/*  bench_node - the mesh end to end, beside raw libzmq in the same run.

    1. fan-out: one publisher node to 1, 4 and 16 subscriber node
       processes over tcp loopback (static peers, interface none), 100 B
       and 1 KiB payloads, fsync batch: events/s delivered, summed over
       the subscribers, from the first publish to the last delivery.
       Anchor: raw libzmq PUB to as many SUB processes, same messages
       (two frames, as shoal sends), no high-water mark.
    2. latency: p50, p99, p99.9 from publish to delivery at fixed rates
       of 1k, 10k and 100k events/s (one publisher node, one subscriber
       node, 100 B); raw libzmq paced the same way.
    3. catch-up: a subscriber node that joins late replays 1,000,000
       events (100 B) from its peer's log: events/s.
    4. recovery: a node fills 1 GiB of logs (1 KiB events) and is killed
       with SIGKILL; the time shoald takes from exec to its ready line on
       that data directory (page cache warm: the run does not drop the
       machine's caches).
    5. discovery: 32 node processes on the loopback beacon (1 s interval):
       the time from the first launch until every one sees the 31 others.
    6. footprint: shoald's VmRSS idle (1 s after its ready line) and while
       `shoal pub` feeds it 10,000 events/s; the stripped sizes of shoald,
       shoal and libshoal, beside libzmq's.

    Figures go to stdout and, with --results FILE, one line each to FILE
    (bench_util.h), which bench/bench_table.sh turns into the table beside
    the NATS JetStream figures of bench_nats. The machine is shared, so
    each figure has its anchor measured right beside it.

    Loopback only; every loop is bounded in count and time; every data
    directory and child process is removed. --quick shrinks every count
    to a smoke test of a few seconds. --only LIST (comma-separated part
    names or numbers) runs some parts alone, e.g. for profiling. */

#include "shoal.h"
#include "bench_util.h"

#include <czmq.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_DISCOVERY_NODES 32

static char s_self[4096];  //  this program, for children
static const char *s_dir;  //  the bench's own directory
static bool s_quick;       //  --quick: small counts
static const char *s_only; //  --only LIST
static const char *s_bin;  //  where shoald and shoal are (BENCH_BIN, default ./nodes)

//  --------------------------------------------------------------------------
//  shoal nodes in this process or in a child

static shoal_node_t *
s_node (const char *dir, const char *name, const char *peer, bool fsync_never)
{
    static int serial;
    shoal_node_config_t config;
    shoal_node_config_defaults (&config);
    char path[4200];
    snprintf (path, sizeof path, "%s/%s-%d-%d", dir, name, (int) getpid (), ++serial);
    config.name = name;
    config.mesh = "bench";
    config.data_dir = path;
    config.interface = "none";
    config.pub_endpoint = "tcp://127.0.0.1:*";
    config.router_endpoint = "tcp://127.0.0.1:*";
    config.heartbeat_ms = 200;
    config.reorder_limit = 100000;
    if (getenv ("BENCH_FSYNC"))
        shoal_fsync_parse (getenv ("BENCH_FSYNC"), &config.fsync);
    if (fsync_never)
        config.fsync = SHOAL_FSYNC_NEVER;
    const char *peers[] = {peer};
    if (peer) {
        config.peers = peers;
        config.peer_count = 1;
    }
    shoal_node_t *node = shoal_node_new (&config, NULL);
    if (!node) {
        fprintf (stderr, "bench_node: cannot start a node: %s\n", shoal_node_start_error ());
        exit (1);
    }
    return node;
}

static bool
s_wait_peers (shoal_node_t *node, uint64_t peers, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    shoal_node_stats_t stats = {0};
    while (zclock_mono () < deadline) {
        if (shoal_node_stats (node, &stats) == 0 && stats.peers >= peers)
            return true;
        zclock_sleep (10);
    }
    return false;
}

//  Publishes count events of payload bytes on stream "bench", paced at
//  one every interval_ns (0 = as fast as possible); a paced event carries
//  its send time (monotonic ns) in its first 8 bytes. Returns the last seq.
static uint64_t
s_publish (shoal_node_t *node, int count, size_t payload, int64_t interval_ns)
{
    shoal_event_t *event = shoal_event_new ();
    shoal_event_set_stream (event, "bench");
    shoal_event_set_type (event, "Reading");
    uint8_t *buffer = (uint8_t *) calloc (1, payload < 8 ? 8 : payload);
    int64_t next = bench_now_ns ();
    uint64_t seq = 0;
    shoal_event_set_payload (event, buffer, payload);
    for (int i = 0; i < count; i++) {
        //  Paced events carry their send time; unpaced ones (fan-out) are
        //  sent as they are, like the raw anchor's, which reads no clock.
        if (interval_ns) {
            bench_sleep_until (next);
            next += interval_ns;
            int64_t now = bench_now_ns ();
            memcpy (buffer, &now, sizeof now);
            shoal_event_set_payload (event, buffer, payload);
        }
        shoal_event_set_id (event, NULL); //  a fresh id per event
        if (shoal_node_publish (node, event, &seq, NULL))
            break;
    }
    free (buffer);
    shoal_event_destroy (&event);
    return seq;
}

typedef struct {
    shoal_node_t *node;  //  publisher
    int count;           //  events
    size_t payload;      //  bytes per event
    int64_t interval_ns; //  pacing, 0 = as fast as possible
} s_publisher_t;

static void *
s_publish_thread (void *arg)
{
    s_publisher_t *publisher = (s_publisher_t *) arg;
    pthread_setname_np (pthread_self (), "publisher");
    s_publish (publisher->node, publisher->count, publisher->payload, publisher->interval_ns);
    return NULL;
}

//  Child: a subscriber node. argv = ROUTER COUNT. Says "ready" once it
//  has its peer and its subscription, then "done RECEIVED LAST_NS".
static int
s_sub_child (int argc, char *argv[])
{
    if (argc < 2)
        return 2;
    int count = atoi (argv[1]);
    shoal_node_t *node = s_node (s_dir, "sub", argv[0], false);
    if (!s_wait_peers (node, 1, 20000)) {
        printf ("nopeer\n");
        fflush (stdout);
        bench_wait_parent ();
        shoal_node_destroy (&node);
        return 1;
    }
    shoal_from_t from = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    shoal_node_subscribe (node, "bench", NULL, &from);
    printf ("subscribed\n");
    fflush (stdout);
    //  Warm-up events come until every subscriber has had one live (not
    //  by repair): like the raw anchor's probes, so a slow joiner is not
    //  what is measured. The measured events are the "Reading" ones.
    int received = 0;
    bool live = false;
    shoal_node_stats_t stats = {0};
    uint64_t repaired_before = 0;
    int64_t last = 0, limit = bench_now_ns () + 120LL * 1000000000;
    while (received < count && bench_now_ns () < limit) {
        shoal_event_t *event = shoal_node_recv (node, 100, NULL);
        if (!event)
            continue;
        if (streq (shoal_event_type (event), "Warmup")) {
            shoal_node_stats (node, &stats);
            if (!live && stats.events_repaired == repaired_before) {
                live = true;
                printf ("ready\n");
                fflush (stdout);
            }
            repaired_before = stats.events_repaired;
        }
        else {
            received++;
            last = bench_now_ns ();
        }
        shoal_event_destroy (&event);
    }
    shoal_node_stats (node, &stats);
    printf ("done %d %lld %llu\n", received, (long long) last,
            (unsigned long long) (stats.events_repaired - repaired_before));
    fflush (stdout);
    bench_wait_parent ();
    shoal_node_destroy (&node);
    return 0;
}

//  --------------------------------------------------------------------------
//  1. Fan-out

static double
s_shoal_fanout (int subscribers, int count, size_t payload)
{
    shoal_node_t *origin = s_node (s_dir, "pub", NULL, false);
    bench_child_t *children = (bench_child_t *) calloc ((size_t) subscribers, sizeof *children);
    char count_text[32], router[256];
    snprintf (count_text, sizeof count_text, "%d", count);
    snprintf (router, sizeof router, "%s", shoal_node_router_endpoint (origin));
    char *argv[] = {s_self,      "--dir", (char *) s_dir, "--child",
                    "shoal-sub", router,  count_text,     NULL};
    double rate = -1;
    int started = 0, ready = 0;
    char line[256];
    for (; started < subscribers; started++)
        if (bench_spawn (&children[started], argv, NULL))
            goto done;
    for (int i = 0; i < subscribers; i++)
        if (bench_child_line (&children[i], line, sizeof line, 30000) && streq (line, "subscribed"))
            ready++;
    if (ready < subscribers || !s_wait_peers (origin, (uint64_t) subscribers, 10000))
        goto done;
    //  Warm-up events until every subscriber gets them live.
    shoal_event_t *warmup = shoal_event_new ();
    shoal_event_set_stream (warmup, "bench");
    shoal_event_set_type (warmup, "Warmup");
    bool *live = (bool *) calloc ((size_t) subscribers, sizeof (bool));
    int64_t deadline = bench_now_ns () + 30LL * 1000000000;
    ready = 0;
    while (ready < subscribers && bench_now_ns () < deadline) {
        shoal_event_set_id (warmup, NULL);
        shoal_node_publish (origin, warmup, NULL, NULL);
        zclock_sleep (20);
        for (int i = 0; i < subscribers; i++)
            if (!live[i] && bench_child_line (&children[i], line, sizeof line, 0)
                && streq (line, "ready")) {
                live[i] = true;
                ready++;
            }
    }
    free (live);
    shoal_event_destroy (&warmup);
    if (ready < subscribers)
        goto done;
    zclock_sleep (50);
    int64_t start = bench_now_ns ();
    s_publish (origin, count, payload, 0);
    unsigned long long repaired = 0;
    rate = bench_fanout_rate (children, subscribers, count, start, 130000, "shoal", &repaired);
    if (repaired)
        printf ("  (%d subscribers, %zu B: %.1f%% of the deliveries came by replay, not live)\n",
                subscribers, payload, 100.0 * (double) repaired / ((double) count * subscribers));
done:
    for (int i = 0; i < started; i++)
        bench_child_finish (&children[i], 10000);
    free (children);
    shoal_node_destroy (&origin);
    return rate;
}

//  BENCH_FANOUT=N[:BYTES] runs one fan-out configuration alone (profiling).
static bool
s_fan_wanted (int fan, size_t payload)
{
    const char *only = getenv ("BENCH_FANOUT");
    if (!only)
        return true;
    const char *colon = strchr (only, ':');
    return atoi (only) == fan && (!colon || (size_t) atoi (colon + 1) == payload);
}

//  Each configuration runs in rounds, raw zmq and shoal interleaved
//  within a round, and each system reports the median of its rounds: a
//  run is short and the machine shared, so one round hit by a burst of a
//  neighbour's work does not decide the ratio. Five rounds: on 2 cores
//  the ratio of one round swings from under 0.4 to over 0.6 within a run.
static void
s_fanout (void)
{
    int count = bench_env_int ("BENCH_COUNT", s_quick ? 2000 : 200000);
    int rounds = s_quick ? 1 : 5;
    printf ("\nFAN-OUT (%d events per run, fsync batch; events/s summed over subscribers;"
            " median of %d rounds)\n",
            count, rounds);
    size_t payloads[] = {100, 1024};
    int fans[] = {1, 4, 16};
    for (int p = 0; p < 2; p++)
        for (int f = 0; f < 3; f++) {
            if ((s_quick && fans[f] == 16) || !s_fan_wanted (fans[f], payloads[p]))
                continue;
            double raw[8], shoal[8];
            for (int round = 0; round < rounds; round++) {
                raw[round] = bench_raw_fanout (s_self, fans[f], count, payloads[p]);
                shoal[round] = s_shoal_fanout (fans[f], count, payloads[p]);
            }
            char figure[64];
            snprintf (figure, sizeof figure, "fanout_%d_%zuB", fans[f], payloads[p]);
            bench_result (figure, "zmq", bench_median (raw, rounds), "ev/s");
            bench_result (figure, "shoal", bench_median (shoal, rounds), "ev/s");
            //  Each round's ratio, so that the spread the medians hide shows.
            printf ("  (shoal / zmq by round:");
            for (int round = 0; round < rounds; round++)
                if (raw[round] > 0 && shoal[round] > 0)
                    printf (" %.3f", shoal[round] / raw[round]);
                else
                    printf (" -");
            printf (")\n");
        }
}

//  --------------------------------------------------------------------------
//  2. Latency

static double
s_shoal_paced (int count, int64_t interval_ns, int64_t *latencies, bool fsync_never)
{
    shoal_node_t *a = s_node (s_dir, "pub", NULL, fsync_never);
    shoal_node_t *b = s_node (s_dir, "sub", shoal_node_router_endpoint (a), fsync_never);
    s_wait_peers (b, 1, 5000);
    shoal_from_t from = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    shoal_node_subscribe (b, "bench", NULL, &from);
    //  Warm up until an event comes live, not by repair: the figure is the
    //  steady state, not a slow joiner's first heartbeat interval.
    int64_t deadline = zclock_mono () + 5000;
    while (zclock_mono () < deadline) {
        shoal_node_stats_t before = {0}, after = {0};
        shoal_node_stats (b, &before);
        s_publish (a, 1, 100, 0);
        shoal_event_t *event = shoal_node_recv (b, 1000, NULL);
        shoal_node_stats (b, &after);
        bool live = event && after.events_repaired == before.events_repaired;
        shoal_event_destroy (&event);
        if (live)
            break;
    }
    while (true) {
        shoal_event_t *event = shoal_node_recv (b, 50, NULL);
        if (!event)
            break;
        shoal_event_destroy (&event);
    }
    s_publisher_t publisher = {a, count, 100, interval_ns};
    pthread_t thread;
    int64_t start = bench_now_ns ();
    pthread_create (&thread, NULL, s_publish_thread, &publisher);
    int received = 0;
    int64_t limit = start + 30LL * 1000000000 + (int64_t) count * interval_ns;
    while (received < count && bench_now_ns () < limit) {
        shoal_event_t *event = shoal_node_recv (b, 100, NULL);
        if (!event)
            continue;
        if (latencies && shoal_event_payload_size (event) >= 8) {
            int64_t sent_at;
            memcpy (&sent_at, shoal_event_payload (event), sizeof sent_at);
            latencies[received] = bench_now_ns () - sent_at;
        }
        received++;
        shoal_event_destroy (&event);
    }
    double seconds = (double) (bench_now_ns () - start) / 1e9;
    pthread_join (thread, NULL);
    shoal_node_destroy (&b);
    shoal_node_destroy (&a);
    return received == count ? count / seconds : -1;
}

//  Each rate is measured in rounds, the systems interleaved within a
//  round (zmq, shoal, and at 10k/s shoal with fsync never, which shows
//  what "durable before visible" costs); each percentile reported is the
//  median of its rounds, so that one round hit by a neighbour's burst on
//  this shared machine does not make the figure.
static void
s_latency (void)
{
    int rounds = s_quick ? 1 : 3;
    double seconds = s_quick ? 0.5 : 2;
    printf ("\nLATENCY (publish to delivery, 100 B, microseconds; median of %d rounds of %.1f s)\n",
            rounds, seconds);
    int rates[] = {1000, 10000, 100000};
    const char *names[] = {"p50", "p99", "p999"};
    double ps[] = {0.5, 0.99, 0.999};
    for (int r = 0; r < 3; r++) {
        int count = (int) (rates[r] * seconds);
        int64_t interval = 1000000000LL / rates[r];
        int64_t *latencies = (int64_t *) calloc ((size_t) count, sizeof (int64_t));
        double figures[3][3][8]; //  system, percentile, round
        int systems = rates[r] == 10000 ? 3 : 2;
        for (int round = 0; round < rounds; round++)
            for (int s = 0; s < systems; s++) {
                double rate = s == 0 ? bench_raw_paced (count, interval, 100, latencies)
                                     : s_shoal_paced (count, interval, latencies, s == 2);
                for (int q = 0; q < 3; q++)
                    figures[s][q][round] =
                        rate > 0 ? bench_percentile_us (latencies, (size_t) count, ps[q]) : -1;
            }
        for (int s = 0; s < systems; s++)
            for (int q = 0; q < 3; q++) {
                char figure[64];
                snprintf (figure, sizeof figure, "latency_%dk_%s%s", rates[r] / 1000, names[q],
                          s == 2 ? "_nofsync" : "");
                bench_result (figure, s == 0 ? "zmq" : "shoal",
                              bench_median (figures[s][q], rounds), "us");
            }
        free (latencies);
    }
}

//  --------------------------------------------------------------------------
//  3. Catch-up

static void
s_catchup (void)
{
    int count = bench_env_int ("BENCH_CATCHUP", s_quick ? 20000 : 1000000);
    printf ("\nCATCH-UP (a late subscriber replays %d events of 100 B from its peer's log)\n",
            count);
    shoal_node_t *origin = s_node (s_dir, "origin", NULL, false);
    uint64_t last = s_publish (origin, count, 100, 0);
    double rate = -1;
    if (last == (uint64_t) count && shoal_node_wait_durable (origin, "bench", last, 120000) == 0) {
        shoal_node_t *late = s_node (s_dir, "late", shoal_node_router_endpoint (origin), false);
        if (s_wait_peers (late, 1, 10000)) {
            int64_t start = bench_now_ns ();
            shoal_from_t from = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
            shoal_node_subscribe (late, "bench", NULL, &from);
            int received = 0;
            int64_t limit = start + 120LL * 1000000000;
            while (received < count && bench_now_ns () < limit) {
                shoal_event_t *event = shoal_node_recv (late, 100, NULL);
                if (event) {
                    received++;
                    shoal_event_destroy (&event);
                }
            }
            if (received == count)
                rate = count / ((double) (bench_now_ns () - start) / 1e9);
            else
                fprintf (stderr, "bench_node: catch-up got %d of %d events\n", received, count);
        }
        shoal_node_destroy (&late);
    }
    shoal_node_destroy (&origin);
    bench_result ("catchup", "shoal", rate, "ev/s");
}

//  --------------------------------------------------------------------------
//  4. Recovery

//  Child: fills a node's logs. argv = BYTES PAYLOAD. Says "filled SEQ"
//  once every event is written, then waits to be killed.
static int
s_fill_child (int argc, char *argv[])
{
    if (argc < 2)
        return 2;
    long long bytes = atoll (argv[0]);
    size_t payload = (size_t) atoi (argv[1]);
    int count = (int) (bytes / (long long) payload) + 1;
    shoal_node_t *node = s_node (s_dir, "fill", NULL, true);
    uint64_t seq = s_publish (node, count, payload, 0);
    shoal_node_wait_durable (node, "bench", seq, 300000);
    printf ("filled %llu\n", (unsigned long long) seq);
    fflush (stdout);
    bench_wait_parent ();
    shoal_node_destroy (&node);
    return 0;
}

//  Starts shoald on dir; returns the child (pid 0 when it failed) and
//  the ms it took to say it is ready.
static double
s_start_shoald (bench_child_t *child, const char *dir)
{
    char shoald[4200], log[4200];
    snprintf (shoald, sizeof shoald, "%s/shoald", s_bin);
    snprintf (log, sizeof log, "%s.log", dir);
    char *argv[] = {shoald,
                    "--data",
                    (char *) dir,
                    "--interface",
                    "none",
                    "--pub",
                    "tcp://127.0.0.1:*",
                    "--router",
                    "tcp://127.0.0.1:*",
                    "--log-level",
                    "warning",
                    NULL};
    int64_t start = bench_now_ns ();
    if (bench_spawn (child, argv, log))
        return -1;
    char line[1024];
    while (bench_child_line (child, line, sizeof line, 300000))
        if (strncmp (line, "shoald: node ", 13) == 0)
            return (double) (bench_now_ns () - start) / 1e6;
    fprintf (stderr, "bench_node: shoald did not start on %s (log in %s)\n", dir, log);
    bench_child_kill (child);
    return -1;
}

static void
s_recovery (void)
{
    long long bytes = s_quick ? 16LL << 20 : 1LL << 30;
    if (getenv ("BENCH_RECOVERY_MIB"))
        bytes = atoll (getenv ("BENCH_RECOVERY_MIB")) << 20;
    printf ("\nRECOVERY (shoald restart on %lld MiB of logs after SIGKILL)\n", bytes >> 20);
    char dir[4200], bytes_text[32];
    snprintf (dir, sizeof dir, "%s/recovery", s_dir);
    snprintf (bytes_text, sizeof bytes_text, "%lld", bytes);
    char *argv[] = {s_self, "--dir", dir, "--child", "fill", bytes_text, "1024", NULL};
    zsys_dir_create ("%s", dir);
    bench_child_t filler;
    double ms = -1;
    char line[256];
    if (bench_spawn (&filler, argv, NULL) == 0) {
        bool filled = bench_child_line (&filler, line, sizeof line, 600000)
                      && strncmp (line, "filled ", 7) == 0;
        bench_child_kill (&filler); //  the crash
        //  The filler's data directory is the only one under dir.
        DIR *handle = opendir (dir);
        struct dirent *entry;
        char data[4500] = "";
        while (handle && (entry = readdir (handle)))
            if (strncmp (entry->d_name, "fill-", 5) == 0)
                snprintf (data, sizeof data, "%s/%s", dir, entry->d_name);
        if (handle)
            closedir (handle);
        if (filled && data[0]) {
            printf ("  %.0f MiB of logs in %s, filler killed\n",
                    (double) bench_tree_size (data) / 1048576.0, data);
            bench_child_t shoald;
            ms = s_start_shoald (&shoald, data);
            bench_child_stop (&shoald, 20000);
        }
    }
    remove_tree (dir);
    bench_result ("recovery", "shoal", ms, "ms");
}

//  --------------------------------------------------------------------------
//  5. Discovery

//  Child: one node on the loopback beacon. argv = PORT MESH NODES. Says
//  "seen NS" (monotonic) when it sees every other node, "seen -1" if not
//  within 20 s.
static int
s_discovery_child (int argc, char *argv[])
{
    if (argc < 3)
        return 2;
    shoal_node_config_t config;
    shoal_node_config_defaults (&config);
    char dir[4200], name[32];
    snprintf (name, sizeof name, "disc-%d", (int) getpid ());
    snprintf (dir, sizeof dir, "%s/%s", s_dir, name);
    config.name = name;
    config.mesh = argv[1];
    config.data_dir = dir;
    config.interface = "lo";
    config.beacon_port = atoi (argv[0]);
    config.beacon_interval_ms = 1000;
    uint64_t others = (uint64_t) atoi (argv[2]) - 1;
    shoal_node_t *node = shoal_node_new (&config, NULL);
    long long seen = -1, up = bench_now_ns ();
    int64_t deadline = bench_now_ns () + 20LL * 1000000000;
    while (node && bench_now_ns () < deadline) {
        shoal_node_stats_t stats;
        if (shoal_node_stats (node, &stats) == 0 && stats.peers >= others) {
            seen = bench_now_ns ();
            break;
        }
        zclock_sleep (5);
    }
    printf ("seen %lld %lld\n", seen, up);
    fflush (stdout);
    bench_wait_parent (); //  stay, so that the others still see us
    shoal_node_destroy (&node);
    return seen >= 0 ? 0 : 1;
}

static void
s_discovery (void)
{
    int nodes = s_quick ? 4 : S_DISCOVERY_NODES;
    printf ("\nDISCOVERY (%d node processes on the loopback beacon, 1 s interval)\n", nodes);
    char port[16], mesh[64], nodes_text[16];
    snprintf (port, sizeof port, "%d", 30000 + (int) (getpid () % 20000));
    snprintf (mesh, sizeof mesh, "bench-discovery-%d", (int) getpid ());
    snprintf (nodes_text, sizeof nodes_text, "%d", nodes);
    char *argv[] = {s_self, "--dir", (char *) s_dir, "--child", "discovery",
                    port,   mesh,    nodes_text,     NULL};
    bench_child_t children[S_DISCOVERY_NODES];
    //  The earlier parts leave this process with a large heap (the raw
    //  fan-out queues ~300 MiB without a high-water mark); forking 32
    //  children from it took 1-2 s of page-table copying, the bench's cost,
    //  not discovery's. Hand the free memory back first.
    malloc_trim (0);
    int started = 0;
    int64_t start = bench_now_ns (), last = 0;
    for (; started < nodes; started++)
        if (bench_spawn (&children[started], argv, NULL))
            break;
    int64_t launched = bench_now_ns (), first = 0, last_up = 0;
    bool all = started == nodes;
    for (int i = 0; i < started; i++) {
        char line[128];
        long long seen = -1, up = 0;
        if (!bench_child_line (&children[i], line, sizeof line, 30000)
            || sscanf (line, "seen %lld %lld", &seen, &up) != 2 || seen < 0)
            all = false;
        else {
            if (up > last_up)
                last_up = up;
            if (seen > last)
                last = seen;
            if (!first || seen < first)
                first = seen;
        }
    }
    if (all)
        printf ("  launched in %.0f ms, the last node up at %.0f ms; the first node saw all "
                "others at %.0f ms, the last at %.0f ms\n",
                (double) (launched - start) / 1e6, (double) (last_up - start) / 1e6,
                (double) (first - start) / 1e6, (double) (last - start) / 1e6);
    for (int i = 0; i < started; i++)
        bench_child_finish (&children[i], 10000);
    bench_result ("discovery", "shoal", all ? (double) (last - start) / 1e6 : -1, "ms");
}

//  --------------------------------------------------------------------------
//  6. Footprint

static void
s_footprint (void)
{
    printf ("\nFOOTPRINT (shoald VmRSS; stripped sizes)\n");
    char dir[4200];
    snprintf (dir, sizeof dir, "%s/footprint", s_dir);
    bench_child_t shoald;
    long idle = -1, busy = -1;
    if (s_start_shoald (&shoald, dir) >= 0) {
        zclock_sleep (1000);
        idle = bench_rss_kib (shoald.pid);
        //  shoal pub, fed 100 lines every 10 ms: 10,000 events/s.
        char shoal[4200];
        snprintf (shoal, sizeof shoal, "%s/shoal", s_bin);
        char *argv[] = {shoal, "--data", dir, "pub", "bench", "Tick", NULL};
        char log[4300];
        snprintf (log, sizeof log, "%s/pub.log", s_dir);
        bench_child_t pub;
        if (bench_spawn (&pub, argv, log) == 0) {
            double seconds = s_quick ? 1 : 5;
            char lines[100 * 128];
            size_t used = 0;
            for (int i = 0; i < 100; i++)
                used += (size_t) snprintf (lines + used, sizeof lines - used,
                                           "{\"reading\":%d,\"sensor\":\"bench-footprint\"}\n", i);
            int64_t start = bench_now_ns (), next = start;
            int sent = 0;
            while (sent < (int) (10000 * seconds)) {
                bench_sleep_until (next);
                next += 10000000;
                if (write (pub.in_fd, lines, used) != (ssize_t) used)
                    break;
                sent += 100;
                long rss = bench_rss_kib (shoald.pid);
                if (rss > busy)
                    busy = rss;
                //  Drain the acks so the publisher never blocks on its stdout.
                char ack[256];
                while (bench_child_line (&pub, ack, sizeof ack, 0))
                    ;
            }
            int64_t took = bench_now_ns () - start;
            if (sent < (int) (10000 * seconds) || took > (int64_t) (seconds * 1.5e9))
                busy = -1; //  the feed could not keep the rate
            bench_child_finish (&pub, 20000);
        }
        bench_child_stop (&shoald, 20000);
    }
    bench_result ("rss_idle", "shoal", idle >= 0 ? idle / 1024.0 : -1, "MiB");
    bench_result ("rss_10k", "shoal", busy >= 0 ? busy / 1024.0 : -1, "MiB");

    char path[4300];
    snprintf (path, sizeof path, "%s/.libs/shoald", s_bin);
    if (access (path, F_OK))
        snprintf (path, sizeof path, "%s/shoald", s_bin);
    long size = bench_stripped_size (path);
    bench_result ("size_daemon", "shoal", size >= 0 ? size / 1024.0 : -1, "KiB");
    snprintf (path, sizeof path, "%s/.libs/shoal", s_bin);
    if (access (path, F_OK))
        snprintf (path, sizeof path, "%s/shoal", s_bin);
    size = bench_stripped_size (path);
    bench_result ("size_cli", "shoal", size >= 0 ? size / 1024.0 : -1, "KiB");
    const char *lib =
        getenv ("BENCH_LIBSHOAL") ? getenv ("BENCH_LIBSHOAL") : "src/.libs/libshoal.so";
    char *real = realpath (lib, NULL);
    size = real ? bench_stripped_size (real) : -1;
    free (real);
    bench_result ("size_library", "shoal", size >= 0 ? size / 1024.0 : -1, "KiB");
    //  The transport under it, for scale: libzmq as this program loaded it.
    char *zmq_path = bench_loaded_library ("/libzmq.so");
    size = zmq_path ? bench_stripped_size (zmq_path) : -1;
    free (zmq_path);
    bench_result ("size_library", "zmq", size >= 0 ? size / 1024.0 : -1, "KiB");
}

//  --------------------------------------------------------------------------

static int
s_usage (void)
{
    fprintf (stderr, "usage: bench_node [--quick] [--only PARTS] [--results FILE]\n"
                     "  PARTS: comma-separated numbers or names: 1 fanout, 2 latency,\n"
                     "         3 catchup, 4 recovery, 5 discovery, 6 footprint\n"
                     "  env: BENCH_COUNT (fan-out events), BENCH_FANOUT=N[:BYTES] (one fan-out),\n"
                     "       BENCH_CATCHUP (catch-up events), BENCH_WRAP (profiler for children),\n"
                     "       BENCH_RECOVERY_MIB, BENCH_FSYNC, BENCH_BIN (dir of shoald, shoal)\n");
    return 2;
}

int
main (int argc, char *argv[])
{
    const char *results = NULL, *child = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (streq (argv[i], "--quick"))
            s_quick = true;
        else if (streq (argv[i], "--only") && i + 1 < argc)
            s_only = argv[++i];
        else if (streq (argv[i], "--results") && i + 1 < argc)
            results = argv[++i];
        else if (streq (argv[i], "--dir") && i + 1 < argc)
            s_dir = argv[++i];
        else if (streq (argv[i], "--child") && i + 1 < argc) {
            child = argv[++i];
            i++;
            break;
        }
        else
            return s_usage ();
    }
    ssize_t length = readlink ("/proc/self/exe", s_self, sizeof s_self - 1);
    if (length <= 0)
        return 1;
    s_self[length] = 0;
    s_bin = getenv ("BENCH_BIN") ? getenv ("BENCH_BIN") : "./nodes";
    if (child) {
        zsys_init ();
        zsys_set_logstream (NULL);
        if (streq (child, "zmq-sub"))
            return bench_raw_sub_child (argc - i, argv + i);
        if (!s_dir)
            return 2;
        if (streq (child, "shoal-sub"))
            return s_sub_child (argc - i, argv + i);
        if (streq (child, "fill"))
            return s_fill_child (argc - i, argv + i);
        if (streq (child, "discovery"))
            return s_discovery_child (argc - i, argv + i);
        return s_usage ();
    }
    s_dir = bench_dir ("shoal-bench-node");
    if (!s_dir || bench_results_open (results))
        return 1;
    alarm (900); //  watchdog: the whole run, cleanly ended
    zsys_init ();
    zsys_set_logstream (NULL);
    int64_t began = bench_now_ns ();
    printf ("shoal bench_node%s: tcp loopback, fsync %s\n", s_quick ? " --quick" : "",
            getenv ("BENCH_FSYNC") ? getenv ("BENCH_FSYNC") : "batch");
    if (bench_part (s_only, 1, "fanout"))
        s_fanout ();
    if (bench_part (s_only, 5, "discovery"))
        s_discovery ();
    if (bench_part (s_only, 2, "latency"))
        s_latency ();
    if (bench_part (s_only, 3, "catchup"))
        s_catchup ();
    if (bench_part (s_only, 4, "recovery"))
        s_recovery ();
    if (bench_part (s_only, 6, "footprint"))
        s_footprint ();
    printf ("\nbench_node took %.1f s\n", (double) (bench_now_ns () - began) / 1e9);
    return 0;
}
