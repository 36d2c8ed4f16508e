/*  bench_node - the mesh end to end, beside raw libzmq in the same run.

    1. Throughput: one publisher node to one subscriber node over tcp
       loopback, 100-byte payloads, fsync batch, against raw libzmq
       PUB/SUB sending the same count of the same size (two frames each,
       as shoal sends). Runs interleave (raw, shoal, shoal, raw, ...) and
       the ratio is taken between neighbours, since the machine is shared.
    2. Latency at a fixed 10,000 events/s: p50, p99, p99.9 from publish
       to delivery, against raw libzmq paced the same way.
    3. Discovery: 16 node processes on the loopback beacon (1 s interval):
       the time until every one sees all 15 others.

    Loopback only; every loop is bounded in count and time; every data
    directory and child process is removed. --quick shrinks the counts. */

#include "shoal.h"

#include <czmq.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_PAYLOAD 100

static char s_dir[4096]; //  the bench's own directory
static bool s_quick;     //  --quick: small counts
static int s_only;       //  --only N: run part N alone (for profiling)

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

//  Sleeps until the monotonic time `at` (ns): pacing that leaves the CPU
//  to the threads being measured (two cores are all there is).
static void
s_sleep_until (int64_t at)
{
    struct timespec ts = {(time_t) (at / 1000000000), (long) (at % 1000000000)};
    while (clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int
s_remove_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    remove (path);
    return 0;
}

static void
s_cleanup (void)
{
    if (s_dir[0])
        nftw (s_dir, s_remove_entry, 32, FTW_DEPTH | FTW_PHYS);
}

//  --------------------------------------------------------------------------
//  Raw libzmq

//  Sends count messages of two frames on a PUB, paced or not, and
//  receives them on a SUB; returns events/s and fills latencies (ns).
static double
s_raw_run (int count, int64_t interval_ns, int64_t *latencies)
{
    zsock_t *pub = zsock_new (ZMQ_PUB);
    zsock_set_sndhwm (pub, 0);
    int port = zsock_bind (pub, "tcp://127.0.0.1:*");
    zsock_t *sub = zsock_new (ZMQ_SUB);
    zsock_set_rcvhwm (sub, 0);
    zsock_set_subscribe (sub, "bench/");
    zsock_connect (sub, "tcp://127.0.0.1:%d", port);
    zsock_set_rcvtimeo (sub, 100);
    //  Wait until the subscription has reached the publisher.
    int64_t deadline = zclock_mono () + 2000;
    while (zclock_mono () < deadline) {
        zsock_send (pub, "ss", "bench/Probe", "x");
        char *topic = NULL, *body = NULL;
        if (zsock_recv (sub, "ss", &topic, &body) == 0) {
            zstr_free (&topic);
            zstr_free (&body);
            break;
        }
    }
    zsock_set_rcvtimeo (sub, 0);
    while (zmq_recv (zsock_resolve (sub), NULL, 0, ZMQ_DONTWAIT) >= 0)
        ; //  drain probes
    uint8_t payload[S_PAYLOAD] = {0};
    int received = 0;
    int64_t start = s_now_ns ();
    int64_t next = start;
    void *raw_pub = zsock_resolve (pub);
    void *raw_sub = zsock_resolve (sub);
    int sent = 0;
    int64_t limit = start + 20LL * 1000000000;
    while ((received < count) && s_now_ns () < limit) {
        if (interval_ns && sent < count) {
            //  Paced: sleep until the next send, unless a message waits.
            zmq_pollitem_t item = {raw_sub, 0, ZMQ_POLLIN, 0};
            int64_t wait = next - s_now_ns ();
            if (wait > 0)
                zmq_poll (&item, 1, wait / 1000000 > 0 ? wait / 1000000 : 0);
            if (!(item.revents & ZMQ_POLLIN))
                s_sleep_until (next);
        }
        int64_t now = s_now_ns ();
        while (sent < count && (interval_ns == 0 || now >= next)) {
            memcpy (payload, &now, sizeof now);
            zmq_send (raw_pub, "bench/Reading", 13, ZMQ_SNDMORE);
            zmq_send (raw_pub, payload, sizeof payload, 0);
            sent++;
            next += interval_ns;
            if (interval_ns == 0 && sent % 1000 == 0)
                break; //  let the receiver run too
        }
        uint8_t buffer[S_PAYLOAD + 64];
        while (zmq_recv (raw_sub, buffer, sizeof buffer, ZMQ_DONTWAIT) >= 0) {
            int more = 0;
            size_t size = sizeof more;
            zmq_getsockopt (raw_sub, ZMQ_RCVMORE, &more, &size);
            if (more)
                continue; //  the topic frame
            if (latencies) {
                int64_t sent_at;
                memcpy (&sent_at, buffer, sizeof sent_at);
                latencies[received] = s_now_ns () - sent_at;
            }
            received++;
        }
    }
    double seconds = (double) (s_now_ns () - start) / 1e9;
    zsock_destroy (&sub);
    zsock_destroy (&pub);
    return received == count ? count / seconds : -1;
}

//  --------------------------------------------------------------------------
//  shoal

static shoal_node_t *
s_node (const char *name, const char *peer)
{
    static int serial;
    shoal_node_config_t config;
    shoal_node_config_defaults (&config);
    char dir[4200];
    snprintf (dir, sizeof dir, "%s/%s-%d", s_dir, name, ++serial);
    config.name = name;
    config.mesh = "bench";
    config.data_dir = dir;
    config.interface = "none";
    config.pub_endpoint = "tcp://127.0.0.1:*";
    config.router_endpoint = "tcp://127.0.0.1:*";
    config.heartbeat_ms = 200;
    config.reorder_limit = 100000;
    if (getenv ("BENCH_FSYNC"))
        shoal_fsync_parse (getenv ("BENCH_FSYNC"), &config.fsync);
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

typedef struct {
    shoal_node_t *node;  //  publisher
    int count;           //  events
    int64_t interval_ns; //  pacing, 0 = as fast as possible
} s_publisher_t;

static void *
s_publish_thread (void *arg)
{
    s_publisher_t *publisher = (s_publisher_t *) arg;
    pthread_setname_np (pthread_self (), "publisher");
    shoal_event_t *event = shoal_event_new ();
    shoal_event_set_stream (event, "bench");
    shoal_event_set_type (event, "Reading");
    uint8_t payload[S_PAYLOAD] = {0};
    int64_t next = s_now_ns ();
    for (int i = 0; i < publisher->count; i++) {
        if (publisher->interval_ns) {
            s_sleep_until (next);
            next += publisher->interval_ns;
        }
        int64_t now = s_now_ns ();
        memcpy (payload, &now, sizeof now);
        shoal_event_set_payload (event, payload, sizeof payload);
        shoal_event_set_id (event, NULL); //  a fresh id per event
        uint64_t seq;
        if (shoal_node_publish (publisher->node, event, &seq, NULL))
            break;
    }
    shoal_event_destroy (&event);
    return NULL;
}

static double
s_shoal_run (int count, int64_t interval_ns, int64_t *latencies)
{
    shoal_node_t *a = s_node ("pub", NULL);
    shoal_node_t *b = s_node ("sub", shoal_node_router_endpoint (a));
    int64_t deadline = zclock_mono () + 5000;
    shoal_node_stats_t stats = {0};
    while (zclock_mono () < deadline && stats.peers == 0) {
        zclock_sleep (10);
        shoal_node_stats (b, &stats);
    }
    shoal_from_t from = {SHOAL_FROM_BEGINNING, 0, 0, NULL, NULL, 0};
    shoal_node_subscribe (b, "bench", NULL, &from);
    zclock_sleep (200);
    s_publisher_t publisher = {a, count, interval_ns};
    pthread_t thread;
    int64_t start = s_now_ns ();
    pthread_create (&thread, NULL, s_publish_thread, &publisher);
    int received = 0;
    int64_t limit = start + 30LL * 1000000000;
    while (received < count && s_now_ns () < limit) {
        shoal_event_t *event = shoal_node_recv (b, 100, NULL);
        if (!event)
            continue;
        if (latencies && shoal_event_payload_size (event) >= 8) {
            int64_t sent_at;
            memcpy (&sent_at, shoal_event_payload (event), sizeof sent_at);
            latencies[received] = s_now_ns () - sent_at;
        }
        received++;
        shoal_event_destroy (&event);
    }
    double seconds = (double) (s_now_ns () - start) / 1e9;
    pthread_join (thread, NULL);
    shoal_node_destroy (&b);
    shoal_node_destroy (&a);
    return received == count ? count / seconds : -1;
}

static int
s_compare (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

static double
s_percentile (int64_t *values, int count, double p)
{
    int index = (int) (p * (count - 1));
    return (double) values[index] / 1000.0; //  microseconds
}

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

//  --------------------------------------------------------------------------
//  Discovery

static void
s_discovery_child (int index, int port, int fd)
{
    shoal_node_config_t config;
    shoal_node_config_defaults (&config);
    char dir[4200], name[32];
    snprintf (dir, sizeof dir, "%s/disc-%d", s_dir, index);
    snprintf (name, sizeof name, "disc-%d", index);
    config.name = name;
    char mesh[64];
    snprintf (mesh, sizeof mesh, "bench-discovery-%d", (int) getppid ());
    config.mesh = mesh;
    config.data_dir = dir;
    config.interface = "lo";
    config.beacon_port = port;
    config.beacon_interval_ms = 1000;
    int64_t start = zclock_mono ();
    shoal_node_t *node = shoal_node_new (&config, NULL);
    int64_t seen_ms = -1;
    while (node && zclock_mono () - start < 10000) {
        shoal_node_stats_t stats;
        if (shoal_node_stats (node, &stats) == 0 && stats.peers >= 15) {
            seen_ms = zclock_mono () - start;
            break;
        }
        zclock_sleep (10);
    }
    if (write (fd, &seen_ms, sizeof seen_ms) != sizeof seen_ms)
        seen_ms = -1;
    //  Stay until the parent has every answer, so others still see us.
    char byte;
    if (read (fd, &byte, 1) < 0)
        byte = 0;
    shoal_node_destroy (&node);
    _exit (seen_ms >= 0 ? 0 : 1);
}

static double
s_discovery (int count)
{
    int port = 30000 + (int) (getpid () % 20000);
    pid_t pids[16];
    int fds[16];
    for (int i = 0; i < count; i++) {
        int pair[2];
        if (socketpair (AF_UNIX, SOCK_STREAM, 0, pair))
            return -1;
        pid_t pid = fork ();
        if (pid == 0) {
            close (pair[0]);
            s_discovery_child (i, port, pair[1]);
        }
        close (pair[1]);
        pids[i] = pid;
        fds[i] = pair[0];
    }
    double worst = 0;
    bool all = true;
    for (int i = 0; i < count; i++) {
        int64_t seen = -1;
        if (read (fds[i], &seen, sizeof seen) != sizeof seen || seen < 0)
            all = false;
        else if (seen > worst)
            worst = (double) seen;
    }
    for (int i = 0; i < count; i++) {
        if (write (fds[i], "x", 1) < 0)
            kill (pids[i], SIGTERM);
        close (fds[i]);
    }
    for (int i = 0; i < count; i++) {
        int status;
        waitpid (pids[i], &status, 0);
    }
    return all ? worst : -1;
}

int
main (int argc, char *argv[])
{
    for (int i = 1; i < argc; i++) {
        if (streq (argv[i], "--quick"))
            s_quick = true;
        else if (streq (argv[i], "--only") && i + 1 < argc)
            s_only = atoi (argv[++i]);
        else {
            fprintf (stderr, "usage: bench_node [--quick] [--only 1|2|3]\n");
            return 2;
        }
    }
    snprintf (s_dir, sizeof s_dir, "%s/shoal-bench-node-XXXXXX",
              getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp");
    if (!mkdtemp (s_dir)) {
        perror ("bench_node: mkdtemp");
        return 1;
    }
    atexit (s_cleanup);
    zsys_init ();
    zsys_set_logstream (NULL);
    int64_t began = zclock_mono ();

    int count = s_quick ? 20000 : 500000;
    if (getenv ("BENCH_COUNT"))
        count = atoi (getenv ("BENCH_COUNT"));
    int rounds = s_quick ? 1 : 3;
    printf ("shoal bench_node: %d events of %d B per run, tcp loopback, fsync batch\n", count,
            S_PAYLOAD);
    printf ("\nTHROUGHPUT (raw = libzmq PUB/SUB of the same messages; runs interleaved)\n");
    double ratios[8] = {-1}, shoal_rates[8] = {-1}, raw_rates[8] = {-1};
    for (int r = 0; r < rounds && (!s_only || s_only == 1); r++) {
        raw_rates[r] = s_raw_run (count, 0, NULL);
        shoal_rates[r] = s_shoal_run (count, 0, NULL);
        double raw_after = s_raw_run (count, 0, NULL);
        if (raw_after > raw_rates[r])
            raw_rates[r] = (raw_rates[r] + raw_after) / 2;
        ratios[r] = raw_rates[r] > 0 && shoal_rates[r] > 0 ? shoal_rates[r] / raw_rates[r] : -1;
        printf ("  run %d: shoal %12.0f ev/s   raw %12.0f ev/s   ratio %.2f\n", r + 1,
                shoal_rates[r], raw_rates[r], ratios[r]);
    }
    qsort (ratios, (size_t) rounds, sizeof (double), s_compare_double);
    qsort (shoal_rates, (size_t) rounds, sizeof (double), s_compare_double);
    double ratio = ratios[rounds / 2];
    double shoal_rate = shoal_rates[rounds / 2];

    int paced = s_quick ? 5000 : 20000;
    int64_t *shoal_lat = (int64_t *) calloc ((size_t) paced, sizeof (int64_t));
    int64_t *raw_lat = (int64_t *) calloc ((size_t) paced, sizeof (int64_t));
    double raw_paced = -1, shoal_paced = -1;
    if (!s_only || s_only == 2) {
        raw_paced = s_raw_run (paced, 100000, raw_lat);
        shoal_paced = s_shoal_run (paced, 100000, shoal_lat);
    }
    printf ("\nLATENCY at 10,000 events/s (%d events; publish to delivery, microseconds)\n", paced);
    double p99 = -1;
    if (raw_paced > 0 && shoal_paced > 0) {
        qsort (raw_lat, (size_t) paced, sizeof (int64_t), s_compare);
        qsort (shoal_lat, (size_t) paced, sizeof (int64_t), s_compare);
        printf ("           p50       p99     p99.9\n");
        printf ("  shoal %7.0f %9.0f %9.0f\n", s_percentile (shoal_lat, paced, 0.5),
                s_percentile (shoal_lat, paced, 0.99), s_percentile (shoal_lat, paced, 0.999));
        printf ("  raw   %7.0f %9.0f %9.0f\n", s_percentile (raw_lat, paced, 0.5),
                s_percentile (raw_lat, paced, 0.99), s_percentile (raw_lat, paced, 0.999));
        p99 = s_percentile (shoal_lat, paced, 0.99);
    }
    else
        printf ("  a paced run lost events (shoal %.0f, raw %.0f)\n", shoal_paced, raw_paced);
    free (shoal_lat);
    free (raw_lat);

    int nodes = 16;
    fflush (stdout); //  children must not print what the parent buffered
    double discovery = !s_only || s_only == 3 ? s_discovery (nodes) : -1;
    printf ("\nDISCOVERY of %d node processes on the loopback beacon (1 s interval)\n", nodes);
    printf ("  all see all within %.0f ms\n", discovery);

    printf ("\nGOALS\n");
    int met = 0;
    met += ratio >= 0.5;
    printf ("  end-to-end throughput >= 0.5 x raw libzmq     %6.2f x (%.0f ev/s)  goal %s\n", ratio,
            shoal_rate, ratio >= 0.5 ? "met" : "MISSED");
    met += p99 >= 0 && p99 <= 2000;
    printf ("  p99 latency at 10k ev/s <= 2 ms               %6.0f us            goal %s\n", p99,
            p99 >= 0 && p99 <= 2000 ? "met" : "MISSED");
    met += discovery >= 0 && discovery <= 2000;
    printf ("  16 nodes see each other within 2 s            %6.0f ms            goal %s\n",
            discovery, discovery >= 0 && discovery <= 2000 ? "met" : "MISSED");
    printf ("\n%d of 3 goals met; bench took %.1f s\n", met,
            (double) (zclock_mono () - began) / 1000.0);
    return 0;
}
