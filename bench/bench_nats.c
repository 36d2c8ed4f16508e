/*  bench_nats - the NATS JetStream anchor of shoal's benchmarks.

    The same figures as bench_node, measured on NATS JetStream in the same
    run on the same machine: Debian's nats-server with file storage and
    Debian's C client (libnats). The server runs as a child of this
    program on 127.0.0.1 with an ephemeral port and a throwaway store
    directory (`nats-server -js -sd DIR -a 127.0.0.1 -p PORT`), and is
    stopped by pid.

    1. fan-out: one publisher (js_PublishAsync) to 1, 4 and 16 subscriber
       processes, each a live push consumer (ephemeral, deliver all, no
       acks, flow control), 100 B and 1 KiB: events/s summed over the
       subscribers, from the first publish to the last delivery.
    2. latency: p50, p99, p99.9 from publish to delivery at 1k, 10k and
       100k events/s, async publish to a push consumer in this process.
    3. catch-up: 1,000,000 events of 100 B stored first, then replayed
       through an ordered consumer: events/s.
    4. recovery: 1 GiB stored (1 KiB messages), nats-server killed with
       SIGKILL and started again on the store: the time from exec until
       the stream answers with every message.
    5. footprint: nats-server's VmRSS idle (JetStream on, 1 s after it
       answers) and while it stores 10,000 events/s; the stripped sizes of
       nats-server and libnats.

    JetStream's file store writes every message but fsyncs only on its
    sync interval (2 minutes by default), where shoal's batch policy
    fsyncs every 2 ms window: the comparison favours JetStream on
    durability, and the report says so.

    Figures go to stdout and, with --results FILE, to FILE (bench_util.h).
    --quick shrinks every count; --only LIST runs some parts. */

#include "config.h"
#include "bench_util.h"

#include <nats/nats.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_self[4096];  //  this program, for children
static const char *s_dir;  //  the bench's own directory
static bool s_quick;       //  --quick: small counts
static const char *s_only; //  --only LIST

//  A nats-server run by this program.
typedef struct {
    bench_child_t child; //  the server process
    char url[64];        //  nats://127.0.0.1:PORT
} s_server_t;

static void
s_error (const char *what, natsStatus status)
{
    fprintf (stderr, "bench_nats: %s: %s\n", what, natsStatus_GetText (status));
}

//  A connection and its JetStream context; NULL connection on failure.
static natsConnection *
s_connect (const char *url, jsCtx **js_p, bool quiet)
{
    natsOptions *options = NULL;
    natsConnection *connection = NULL;
    natsOptions_Create (&options);
    natsOptions_SetURL (options, url);
    natsOptions_SetTimeout (options, 2000);
    natsOptions_SetAllowReconnect (options, false);
    natsOptions_SetMaxPendingMsgs (options, 10000000);
    natsStatus status = natsConnection_Connect (&connection, options);
    natsOptions_Destroy (options);
    if (status != NATS_OK) {
        if (!quiet)
            s_error ("connect", status);
        return NULL;
    }
    jsOptions js_options;
    jsOptions_Init (&js_options);
    js_options.PublishAsync.MaxPending = 4096;
    js_options.PublishAsync.StallWait = 30000;
    js_options.Wait = 10000;
    if (js_p && natsConnection_JetStream (js_p, connection, &js_options) != NATS_OK) {
        natsConnection_Destroy (connection);
        return NULL;
    }
    return connection;
}

static void
s_disconnect (natsConnection **connection_p, jsCtx **js_p)
{
    if (js_p && *js_p)
        jsCtx_Destroy (*js_p);
    if (*connection_p)
        natsConnection_Destroy (*connection_p);
    *connection_p = NULL;
    if (js_p)
        *js_p = NULL;
}

//  Starts nats-server with JetStream on store; waits until it takes
//  connections (and, when stream is given, until that stream holds
//  msgs messages). Returns the ms from exec to ready, -1 on failure.
static double
s_server_start (s_server_t *server, const char *store, const char *stream, uint64_t msgs)
{
    int port = bench_free_port ();
    char port_text[16], log[4300];
    snprintf (port_text, sizeof port_text, "%d", port);
    snprintf (server->url, sizeof server->url, "nats://127.0.0.1:%d", port);
    snprintf (log, sizeof log, "%s.log", store);
    char *argv[] = {NATS_SERVER_PATH,
                    "-js",
                    "-sd",
                    (char *) store,
                    "-a",
                    "127.0.0.1",
                    "-p",
                    port_text,
                    "-l",
                    log,
                    NULL};
    int64_t start = bench_now_ns ();
    if (bench_spawn (&server->child, argv, NULL))
        return -1;
    int64_t deadline = start + 300LL * 1000000000;
    while (bench_now_ns () < deadline) {
        jsCtx *js = NULL;
        natsConnection *connection = s_connect (server->url, &js, true);
        bool ready = connection != NULL;
        if (ready && stream) {
            jsStreamInfo *info = NULL;
            ready = js_GetStreamInfo (&info, js, stream, NULL, NULL) == NATS_OK
                    && info->State.Msgs >= msgs;
            if (info)
                jsStreamInfo_Destroy (info);
        }
        s_disconnect (&connection, &js);
        if (ready)
            return (double) (bench_now_ns () - start) / 1e6;
        usleep (5000);
    }
    fprintf (stderr, "bench_nats: nats-server did not get ready (log in %s)\n", log);
    bench_child_kill (&server->child);
    return -1;
}

static int
s_add_stream (jsCtx *js, const char *name, const char *subject)
{
    jsStreamConfig config;
    jsStreamConfig_Init (&config);
    config.Name = name;
    const char *subjects[] = {subject};
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    jsErrCode code = 0;
    natsStatus status = js_AddStream (NULL, js, &config, NULL, &code);
    if (status != NATS_OK) {
        fprintf (stderr, "bench_nats: add stream %s: %s (%d)\n", name, natsStatus_GetText (status),
                 (int) code);
        return -1;
    }
    return 0;
}

//  Publishes count messages of payload bytes asynchronously, one every
//  interval_ns (0 = as fast as possible), each carrying its send time in
//  its first 8 bytes; waits for every ack. 0 or -1.
static int
s_publish (jsCtx *js, const char *subject, int count, size_t payload, int64_t interval_ns)
{
    uint8_t *buffer = (uint8_t *) calloc (1, payload < 8 ? 8 : payload);
    int64_t next = bench_now_ns ();
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        if (interval_ns) {
            bench_sleep_until (next);
            next += interval_ns;
        }
        int64_t now = bench_now_ns ();
        memcpy (buffer, &now, sizeof now);
        natsStatus status = js_PublishAsync (js, subject, buffer, (int) payload, NULL);
        if (status != NATS_OK) {
            s_error ("publish", status);
            rc = -1;
        }
    }
    free (buffer);
    jsPubOptions options;
    jsPubOptions_Init (&options);
    options.MaxWait = 120000;
    if (rc == 0 && js_PublishAsyncComplete (js, &options) != NATS_OK)
        rc = -1;
    return rc;
}

//  --------------------------------------------------------------------------
//  1. Fan-out

//  Child: a live push consumer. argv = URL STREAM SUBJECT COUNT. Says
//  "ready", then "done RECEIVED LAST_NS".
static int
s_sub_child (int argc, char *argv[])
{
    if (argc < 4)
        return 2;
    int count = atoi (argv[3]);
    jsCtx *js = NULL;
    natsConnection *connection = s_connect (argv[0], &js, false);
    if (!connection)
        return 1;
    jsSubOptions options;
    jsSubOptions_Init (&options);
    options.Stream = argv[1];
    options.Config.DeliverPolicy = js_DeliverAll;
    options.Config.AckPolicy = js_AckNone;
    options.Config.FlowControl = true;
    options.Config.Heartbeat = 5000000000LL;
    natsSubscription *sub = NULL;
    jsErrCode code = 0;
    natsStatus status = js_SubscribeSync (&sub, js, argv[2], NULL, &options, &code);
    if (status != NATS_OK) {
        s_error ("subscribe", status);
        return 1;
    }
    natsSubscription_SetPendingLimits (sub, -1, -1);
    printf ("ready\n");
    fflush (stdout);
    int received = 0;
    int64_t last = 0, limit = bench_now_ns () + 120LL * 1000000000;
    while (received < count && bench_now_ns () < limit) {
        natsMsg *msg = NULL;
        if (natsSubscription_NextMsg (&msg, sub, 1000) != NATS_OK)
            continue;
        received++;
        last = bench_now_ns ();
        natsMsg_Destroy (msg);
    }
    printf ("done %d %lld\n", received, (long long) last);
    fflush (stdout);
    bench_wait_parent ();
    natsSubscription_Destroy (sub);
    s_disconnect (&connection, &js);
    return 0;
}

static double
s_js_fanout (s_server_t *server, jsCtx *js, int subscribers, int count, size_t payload, int round)
{
    char stream[64], subject[64], count_text[32];
    snprintf (stream, sizeof stream, "FAN_%d_%zu_%d", subscribers, payload, round);
    snprintf (subject, sizeof subject, "fan.%d.%zu.%d", subscribers, payload, round);
    snprintf (count_text, sizeof count_text, "%d", count);
    if (s_add_stream (js, stream, subject))
        return -1;
    bench_child_t *children = (bench_child_t *) calloc ((size_t) subscribers, sizeof *children);
    char *argv[] = {s_self, "--child", "js-sub", server->url, stream, subject, count_text, NULL};
    double rate = -1;
    int started = 0, ready = 0;
    char line[256];
    for (; started < subscribers; started++)
        if (bench_spawn (&children[started], argv, NULL))
            goto done;
    for (int i = 0; i < subscribers; i++)
        if (bench_child_line (&children[i], line, sizeof line, 30000)
            && strcmp (line, "ready") == 0)
            ready++;
    if (ready < subscribers)
        goto done;
    usleep (300000);
    int64_t start = bench_now_ns ();
    if (s_publish (js, subject, count, payload, 0))
        goto done;
    rate = bench_fanout_rate (children, subscribers, count, start, 130000, "JetStream", NULL);
done:
    for (int i = 0; i < started; i++)
        bench_child_finish (&children[i], 10000);
    free (children);
    js_DeleteStream (js, stream, NULL, NULL);
    return rate;
}

//  Rounds and medians as in bench_node, so the two are comparable.
static void
s_fanout (s_server_t *server, jsCtx *js)
{
    int count = bench_env_int ("BENCH_COUNT", s_quick ? 2000 : 200000);
    int rounds = s_quick ? 1 : 3;
    printf ("\nFAN-OUT (%d events per run, JetStream file storage; events/s summed;"
            " median of %d rounds)\n",
            count, rounds);
    size_t payloads[] = {100, 1024};
    int fans[] = {1, 4, 16};
    for (int p = 0; p < 2; p++)
        for (int f = 0; f < 3; f++) {
            if (s_quick && fans[f] == 16)
                continue;
            double rates[8];
            for (int round = 0; round < rounds; round++)
                rates[round] = s_js_fanout (server, js, fans[f], count, payloads[p], round);
            char figure[64];
            snprintf (figure, sizeof figure, "fanout_%d_%zuB", fans[f], payloads[p]);
            bench_result (figure, "nats", bench_median (rates, rounds), "ev/s");
        }
}

//  --------------------------------------------------------------------------
//  2. Latency

typedef struct {
    int64_t *latencies;  //  one per message, ns
    int count;           //  room in latencies
    atomic_int received; //  messages so far
} s_receiver_t;

static void
s_on_message (natsConnection *connection, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void) connection;
    (void) sub;
    s_receiver_t *receiver = (s_receiver_t *) closure;
    int index = atomic_load (&receiver->received);
    if (index < receiver->count && natsMsg_GetDataLength (msg) >= 8) {
        int64_t at;
        memcpy (&at, natsMsg_GetData (msg), sizeof at);
        receiver->latencies[index] = bench_now_ns () - at;
        atomic_store (&receiver->received, index + 1);
    }
    natsMsg_Destroy (msg);
}

//  One paced run: percentiles (us) filled, -1 when messages were lost.
static void
s_latency_run (s_server_t *server, jsCtx *js, int rate, int count, double percentiles[3])
{
    static int serial;
    char stream[32], subject[32];
    snprintf (stream, sizeof stream, "LAT_%d_%d", rate, ++serial);
    snprintf (subject, sizeof subject, "lat.%d.%d", rate, serial);
    s_receiver_t receiver = {(int64_t *) calloc ((size_t) count, sizeof (int64_t)), count, 0};
    bool ok = s_add_stream (js, stream, subject) == 0;
    jsCtx *sub_js = NULL;
    natsConnection *sub_connection = ok ? s_connect (server->url, &sub_js, false) : NULL;
    natsSubscription *sub = NULL;
    if (sub_connection) {
        jsSubOptions options;
        jsSubOptions_Init (&options);
        options.Stream = stream;
        options.Config.DeliverPolicy = js_DeliverAll;
        options.Config.AckPolicy = js_AckNone;
        options.Config.FlowControl = true;
        options.Config.Heartbeat = 5000000000LL;
        ok = js_Subscribe (&sub, sub_js, subject, s_on_message, &receiver, NULL, &options, NULL)
             == NATS_OK;
        if (ok)
            natsSubscription_SetPendingLimits (sub, -1, -1);
    }
    else
        ok = false;
    if (ok) {
        //  Warm up: one message through, then the measured ones.
        ok = s_publish (js, subject, 1, 100, 0) == 0;
        int64_t deadline = bench_now_ns () + 5000000000LL;
        while (ok && atomic_load (&receiver.received) < 1 && bench_now_ns () < deadline)
            usleep (1000);
        atomic_store (&receiver.received, 0);
        ok = ok && s_publish (js, subject, count, 100, 1000000000LL / rate) == 0;
        int64_t limit = bench_now_ns () + 30LL * 1000000000;
        while (ok && atomic_load (&receiver.received) < count && bench_now_ns () < limit)
            usleep (1000);
        ok = ok && atomic_load (&receiver.received) == count;
    }
    if (sub) {
        natsSubscription_Unsubscribe (sub);
        natsSubscription_Destroy (sub);
    }
    s_disconnect (&sub_connection, &sub_js);
    js_DeleteStream (js, stream, NULL, NULL);
    double ps[] = {0.5, 0.99, 0.999};
    for (int q = 0; q < 3; q++)
        percentiles[q] = ok ? bench_percentile_us (receiver.latencies, (size_t) count, ps[q]) : -1;
    free (receiver.latencies);
}

//  Rounds and medians as in bench_node, so the two are comparable.
static void
s_latency (s_server_t *server, jsCtx *js)
{
    int rounds = s_quick ? 1 : 3;
    double seconds = s_quick ? 0.5 : 2;
    printf ("\nLATENCY (publish to delivery, 100 B, microseconds; median of %d rounds of %.1f s)\n",
            rounds, seconds);
    int rates[] = {1000, 10000, 100000};
    const char *names[] = {"p50", "p99", "p999"};
    for (int r = 0; r < 3; r++) {
        double figures[3][8]; //  percentile, round
        for (int round = 0; round < rounds; round++) {
            double percentiles[3];
            s_latency_run (server, js, rates[r], (int) (rates[r] * seconds), percentiles);
            for (int q = 0; q < 3; q++)
                figures[q][round] = percentiles[q];
        }
        for (int q = 0; q < 3; q++) {
            char figure[64];
            snprintf (figure, sizeof figure, "latency_%dk_%s", rates[r] / 1000, names[q]);
            bench_result (figure, "nats", bench_median (figures[q], rounds), "us");
        }
    }
}

//  --------------------------------------------------------------------------
//  3. Catch-up

static void
s_catchup (s_server_t *server, jsCtx *js)
{
    int count = bench_env_int ("BENCH_CATCHUP", s_quick ? 20000 : 1000000);
    printf ("\nCATCH-UP (%d events of 100 B replayed through an ordered consumer)\n", count);
    double rate = -1;
    if (s_add_stream (js, "CATCH", "catch") == 0 && s_publish (js, "catch", count, 100, 0) == 0) {
        jsCtx *sub_js = NULL;
        natsConnection *connection = s_connect (server->url, &sub_js, false);
        jsSubOptions options;
        jsSubOptions_Init (&options);
        options.Ordered = true;
        natsSubscription *sub = NULL;
        int64_t start = bench_now_ns ();
        if (connection
            && js_SubscribeSync (&sub, sub_js, "catch", NULL, &options, NULL) == NATS_OK) {
            natsSubscription_SetPendingLimits (sub, -1, -1);
            int received = 0;
            int64_t limit = start + 120LL * 1000000000;
            while (received < count && bench_now_ns () < limit) {
                natsMsg *msg = NULL;
                if (natsSubscription_NextMsg (&msg, sub, 1000) == NATS_OK) {
                    received++;
                    natsMsg_Destroy (msg);
                }
            }
            if (received == count)
                rate = count / ((double) (bench_now_ns () - start) / 1e9);
            else
                fprintf (stderr, "bench_nats: catch-up got %d of %d\n", received, count);
            natsSubscription_Unsubscribe (sub);
            natsSubscription_Destroy (sub);
        }
        s_disconnect (&connection, &sub_js);
    }
    js_DeleteStream (js, "CATCH", NULL, NULL);
    bench_result ("catchup", "nats", rate, "ev/s");
}

//  --------------------------------------------------------------------------
//  4. Recovery

static void
s_recovery (void)
{
    long long bytes = s_quick ? 16LL << 20 : 1LL << 30;
    if (getenv ("BENCH_RECOVERY_MIB"))
        bytes = atoll (getenv ("BENCH_RECOVERY_MIB")) << 20;
    int count = (int) (bytes / 1024) + 1;
    printf ("\nRECOVERY (nats-server restart on %lld MiB of JetStream store after SIGKILL)\n",
            bytes >> 20);
    char store[4200];
    snprintf (store, sizeof store, "%s/recovery", s_dir);
    s_server_t server;
    double ms = -1;
    if (s_server_start (&server, store, NULL, 0) >= 0) {
        jsCtx *js = NULL;
        natsConnection *connection = s_connect (server.url, &js, false);
        bool filled = connection && s_add_stream (js, "REC", "rec") == 0
                      && s_publish (js, "rec", count, 1024, 0) == 0;
        s_disconnect (&connection, &js);
        bench_child_kill (&server.child); //  the crash
        if (filled) {
            printf ("  %.0f MiB in the store, nats-server killed\n",
                    (double) bench_tree_size (store) / 1048576.0);
            ms = s_server_start (&server, store, "REC", (uint64_t) count);
            bench_child_stop (&server.child, 20000);
        }
    }
    remove_tree (store);
    bench_result ("recovery", "nats", ms, "ms");
}

//  --------------------------------------------------------------------------
//  5. Footprint

static void
s_footprint (void)
{
    printf ("\nFOOTPRINT (nats-server VmRSS; stripped sizes)\n");
    char store[4200];
    snprintf (store, sizeof store, "%s/footprint", s_dir);
    s_server_t server;
    long idle = -1, busy = -1;
    if (s_server_start (&server, store, NULL, 0) >= 0) {
        usleep (1000000);
        idle = bench_rss_kib (server.child.pid);
        jsCtx *js = NULL;
        natsConnection *connection = s_connect (server.url, &js, false);
        if (connection && s_add_stream (js, "FOOT", "foot") == 0) {
            double seconds = s_quick ? 1 : 5;
            int64_t start = bench_now_ns (), next = start;
            int sent = 0;
            bool ok = true;
            while (ok && sent < (int) (10000 * seconds)) {
                bench_sleep_until (next);
                next += 10000000;
                char line[64];
                for (int i = 0; i < 100 && ok; i++) {
                    int size =
                        snprintf (line, sizeof line, "{\"reading\":%d,\"sensor\":\"bench\"}", i);
                    ok = js_PublishAsync (js, "foot", line, size, NULL) == NATS_OK;
                }
                sent += 100;
                long rss = bench_rss_kib (server.child.pid);
                if (rss > busy)
                    busy = rss;
            }
            jsPubOptions options;
            jsPubOptions_Init (&options);
            options.MaxWait = 30000;
            ok = ok && js_PublishAsyncComplete (js, &options) == NATS_OK;
            if (!ok || bench_now_ns () - start > (int64_t) (seconds * 1.5e9))
                busy = -1;
        }
        s_disconnect (&connection, &js);
        bench_child_stop (&server.child, 20000);
    }
    remove_tree (store);
    bench_result ("rss_idle", "nats", idle >= 0 ? idle / 1024.0 : -1, "MiB");
    bench_result ("rss_10k", "nats", busy >= 0 ? busy / 1024.0 : -1, "MiB");
    long size = bench_stripped_size (NATS_SERVER_PATH);
    bench_result ("size_daemon", "nats", size >= 0 ? size / 1024.0 : -1, "KiB");
    char *lib = bench_loaded_library ("/libnats.so");
    size = lib ? bench_stripped_size (lib) : -1;
    free (lib);
    bench_result ("size_library", "nats", size >= 0 ? size / 1024.0 : -1, "KiB");
}

//  --------------------------------------------------------------------------

static int
s_usage (void)
{
    fprintf (stderr, "usage: bench_nats [--quick] [--only PARTS] [--results FILE]\n"
                     "  PARTS: comma-separated numbers or names: 1 fanout, 2 latency,\n"
                     "         3 catchup, 4 recovery, 6 footprint\n"
                     "  env: BENCH_COUNT, BENCH_CATCHUP, BENCH_RECOVERY_MIB\n");
    return 2;
}

int
main (int argc, char *argv[])
{
    const char *results = NULL, *child = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp (argv[i], "--quick") == 0)
            s_quick = true;
        else if (strcmp (argv[i], "--only") == 0 && i + 1 < argc)
            s_only = argv[++i];
        else if (strcmp (argv[i], "--results") == 0 && i + 1 < argc)
            results = argv[++i];
        else if (strcmp (argv[i], "--child") == 0 && i + 1 < argc) {
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
    if (child) {
        if (strcmp (child, "js-sub") == 0)
            return s_sub_child (argc - i, argv + i);
        return s_usage ();
    }
    if (access (NATS_SERVER_PATH, X_OK)) {
        fprintf (stderr, "bench_nats: %s is missing (apt-get install nats-server)\n",
                 NATS_SERVER_PATH);
        return 1;
    }
    s_dir = bench_dir ("shoal-bench-nats");
    if (!s_dir || bench_results_open (results))
        return 1;
    alarm (900); //  watchdog: the whole run, cleanly ended
    int64_t began = bench_now_ns ();
    printf ("bench_nats%s: %s, JetStream file storage, 127.0.0.1\n", s_quick ? " --quick" : "",
            NATS_SERVER_PATH);
    if (bench_part (s_only, 1, "fanout") || bench_part (s_only, 2, "latency")
        || bench_part (s_only, 3, "catchup")) {
        char store[4200];
        snprintf (store, sizeof store, "%s/main", s_dir);
        s_server_t server;
        if (s_server_start (&server, store, NULL, 0) < 0)
            return 1;
        jsCtx *js = NULL;
        natsConnection *connection = s_connect (server.url, &js, false);
        if (!connection)
            return 1;
        if (bench_part (s_only, 1, "fanout"))
            s_fanout (&server, js);
        if (bench_part (s_only, 2, "latency"))
            s_latency (&server, js);
        if (bench_part (s_only, 3, "catchup"))
            s_catchup (&server, js);
        s_disconnect (&connection, &js);
        bench_child_stop (&server.child, 20000);
    }
    if (bench_part (s_only, 4, "recovery"))
        s_recovery ();
    if (bench_part (s_only, 6, "footprint"))
        s_footprint ();
    nats_Close ();
    printf ("\nbench_nats took %.1f s\n", (double) (bench_now_ns () - began) / 1e9);
    return 0;
}
