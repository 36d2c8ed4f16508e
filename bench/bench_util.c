/*  bench_util - shared helpers of shoal's benchmark programs; see the header.

    Everything here is deliberately plain: a benchmark is only as good as
    the certainty that it measures what it says, so each helper does one
    obvious thing. Child processes are tracked in a small table so that an
    exit (normal, error, or a signal turned into exit) kills and reaps
    every one of them by pid, and the throwaway directory is removed. */

#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_MAX_CHILDREN 64 //  live children tracked for cleanup
#define S_MAX_DIRS 8      //  throwaway directories removed at exit

static pid_t s_children[S_MAX_CHILDREN];  //  live children, 0 = free slot
static char s_dirs[S_MAX_DIRS][PATH_MAX]; //  directories to remove at exit
static pid_t s_owner;                     //  the process that made them
static FILE *s_results;                   //  results file, or NULL

int64_t
bench_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
bench_sleep_until (int64_t at)
{
    struct timespec ts = {(time_t) (at / 1000000000), (long) (at % 1000000000)};
    while (clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int
s_compare_ns (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

double
bench_percentile_us (int64_t *values, size_t count, double p)
{
    if (count == 0)
        return -1;
    qsort (values, count, sizeof (int64_t), s_compare_ns);
    size_t index = (size_t) (p * (double) (count - 1) + 0.5);
    return (double) values[index] / 1000.0;
}

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

double
bench_median (const double *values, int count)
{
    double valid[16];
    int n = 0;
    for (int i = 0; i < count && n < 16; i++)
        if (values[i] >= 0)
            valid[n++] = values[i];
    if (n == 0)
        return -1;
    qsort (valid, (size_t) n, sizeof (double), s_compare_double);
    return valid[n / 2];
}

static void
s_at_exit (void)
{
    if (getpid () != s_owner)
        return;
    for (int i = 0; i < S_MAX_CHILDREN; i++)
        if (s_children[i] > 0) {
            kill (s_children[i], SIGKILL);
            waitpid (s_children[i], NULL, 0);
            s_children[i] = 0;
        }
    for (int i = 0; i < S_MAX_DIRS; i++)
        if (s_dirs[i][0]) {
            remove_tree (s_dirs[i]);
            s_dirs[i][0] = 0;
        }
    if (s_results)
        fclose (s_results);
    s_results = NULL;
}

static void
s_on_signal (int sig)
{
    (void) sig;
    exit (130); //  runs s_at_exit: children killed, directories removed
}

static void
s_init (void)
{
    if (s_owner)
        return;
    s_owner = getpid ();
    atexit (s_at_exit);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGALRM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);
}

const char *
bench_dir (const char *prefix)
{
    s_init ();
    for (int i = 0; i < S_MAX_DIRS; i++)
        if (!s_dirs[i][0]) {
            const char *tmp = getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp";
            snprintf (s_dirs[i], sizeof s_dirs[i], "%s/%s-XXXXXX", tmp, prefix);
            if (!mkdtemp (s_dirs[i])) {
                fprintf (stderr, "bench: cannot make a directory in %s: %s\n", tmp,
                         strerror (errno));
                s_dirs[i][0] = 0;
                return NULL;
            }
            return s_dirs[i];
        }
    return NULL;
}

int
bench_results_open (const char *path)
{
    s_init ();
    if (!path)
        return 0;
    s_results = fopen (path, "a");
    if (!s_results) {
        fprintf (stderr, "bench: cannot open %s: %s\n", path, strerror (errno));
        return -1;
    }
    return 0;
}

void
bench_result (const char *figure, const char *system, double value, const char *unit)
{
    if (value < 0)
        printf ("  %-24s %-6s     (not measured)\n", figure, system);
    else
        printf ("  %-24s %-6s %14.1f %s\n", figure, system, value, unit);
    fflush (stdout);
    if (s_results) {
        fprintf (s_results, "%s\t%s\t%.3f\t%s\n", figure, system, value, unit);
        fflush (s_results);
    }
}

//  --------------------------------------------------------------------------
//  Children

int
bench_spawn (bench_child_t *child, char *const argv[], const char *stderr_path)
{
    s_init ();
    memset (child, 0, sizeof *child);
    child->out_fd = child->in_fd = -1;
    int slot = -1;
    for (int i = 0; i < S_MAX_CHILDREN && slot < 0; i++)
        if (s_children[i] == 0)
            slot = i;
    int out[2], in[2];
    if (slot < 0 || pipe2 (out, O_CLOEXEC))
        return -1;
    if (pipe2 (in, O_CLOEXEC)) {
        close (out[0]);
        close (out[1]);
        return -1;
    }
    //  BENCH_WRAP (e.g. "valgrind --tool=callgrind") runs the children that
    //  are this program under a profiler: sh -c 'exec $BENCH_WRAP "$@"'.
    const char *wrap = getenv ("BENCH_WRAP");
    char self[PATH_MAX] = "";
    ssize_t length = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (length > 0)
        self[length] = 0;
    if (wrap && strcmp (self, argv[0]) != 0)
        wrap = NULL;
    char script[PATH_MAX + 64];
    snprintf (script, sizeof script, "exec %s \"$@\"", wrap ? wrap : "");
    char *wrapped[64] = {"/bin/sh", "-c", script, "sh"};
    for (int i = 0; wrap && argv[i] && i < 59; i++)
        wrapped[4 + i] = argv[i];
    fflush (NULL);
    pid_t pid = fork ();
    if (pid < 0) {
        close (out[0]);
        close (out[1]);
        close (in[0]);
        close (in[1]);
        return -1;
    }
    if (pid == 0) {
        //  Only async-signal-safe calls until exec.
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        dup2 (in[0], 0);
        dup2 (out[1], 1);
        if (stderr_path) {
            int fd = open (stderr_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0)
                dup2 (fd, 2);
        }
        if (wrap)
            execv ("/bin/sh", wrapped);
        execv (argv[0], argv);
        _exit (127);
    }
    close (out[1]);
    close (in[0]);
    child->pid = pid;
    child->out_fd = out[0];
    child->in_fd = in[1];
    s_children[slot] = pid;
    return 0;
}

bool
bench_child_line (bench_child_t *child, char *line, size_t size, int timeout_ms)
{
    int64_t deadline = bench_now_ns () + (int64_t) timeout_ms * 1000000;
    while (true) {
        char *newline = (char *) memchr (child->buffer, '\n', child->used);
        if (newline) {
            size_t length = (size_t) (newline - child->buffer);
            size_t copy = length < size - 1 ? length : size - 1;
            memcpy (line, child->buffer, copy);
            line[copy] = 0;
            child->used -= length + 1;
            memmove (child->buffer, newline + 1, child->used);
            return true;
        }
        if (child->out_fd < 0 || child->used == sizeof child->buffer)
            return false;
        int64_t left = (deadline - bench_now_ns ()) / 1000000;
        if (left < 0)
            return false;
        struct pollfd item = {child->out_fd, POLLIN, 0};
        int rc = poll (&item, 1, (int) left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return false;
        ssize_t got =
            read (child->out_fd, child->buffer + child->used, sizeof child->buffer - child->used);
        if (got <= 0) {
            close (child->out_fd);
            child->out_fd = -1;
        }
        else
            child->used += (size_t) got;
    }
}

static void
s_forget (pid_t pid)
{
    for (int i = 0; i < S_MAX_CHILDREN; i++)
        if (s_children[i] == pid)
            s_children[i] = 0;
}

static void
s_close_pipes (bench_child_t *child)
{
    if (child->in_fd >= 0)
        close (child->in_fd);
    if (child->out_fd >= 0)
        close (child->out_fd);
    child->in_fd = child->out_fd = -1;
}

int
bench_child_finish (bench_child_t *child, int timeout_ms)
{
    if (child->pid <= 0)
        return -1;
    if (child->in_fd >= 0)
        close (child->in_fd);
    child->in_fd = -1;
    int status = -1;
    int64_t deadline = bench_now_ns () + (int64_t) timeout_ms * 1000000;
    while (true) {
        pid_t done = waitpid (child->pid, &status, WNOHANG);
        if (done == child->pid)
            break;
        if (bench_now_ns () > deadline) {
            kill (child->pid, SIGKILL);
            waitpid (child->pid, &status, 0);
            break;
        }
        usleep (2000);
    }
    s_forget (child->pid);
    s_close_pipes (child);
    child->pid = 0;
    return status;
}

void
bench_child_kill (bench_child_t *child)
{
    if (child->pid <= 0)
        return;
    kill (child->pid, SIGKILL);
    waitpid (child->pid, NULL, 0);
    s_forget (child->pid);
    s_close_pipes (child);
    child->pid = 0;
}

void
bench_wait_parent (void)
{
    char byte;
    while (read (0, &byte, 1) > 0 || errno == EINTR)
        errno = 0;
}

long
bench_rss_kib (pid_t pid)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    long rss = -1;
    while (fgets (line, sizeof line, file))
        if (strncmp (line, "VmRSS:", 6) == 0)
            rss = strtol (line + 6, NULL, 10);
    fclose (file);
    return rss;
}

long
bench_stripped_size (const char *path)
{
    struct stat st;
    if (stat (path, &st))
        return -1;
    char copy[PATH_MAX], command[3 * PATH_MAX];
    const char *tmp = getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp";
    snprintf (copy, sizeof copy, "%s/bench-strip-%d", tmp, (int) getpid ());
    snprintf (command, sizeof command, "strip -o '%s' '%s' 2>/dev/null", copy, path);
    long size = (long) st.st_size;
    if (system (command) == 0 && stat (copy, &st) == 0)
        size = (long) st.st_size;
    remove (copy);
    return size;
}

static long long s_tree_total; //  bench_tree_size's running sum

static int
s_add_size (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) path;
    (void) ftw;
    if (flag == FTW_F)
        s_tree_total += st->st_size;
    return 0;
}

long long
bench_tree_size (const char *path)
{
    s_tree_total = 0;
    nftw (path, s_add_size, 32, FTW_PHYS);
    return s_tree_total;
}

int
bench_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
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
//  Raw libzmq

#define S_TOPIC "bench/Reading"
#define S_PROBE "probe/"

//  A PUB bound on an ephemeral loopback port, with no high-water mark;
//  endpoint filled.
static void *
s_raw_pub (void *context, char *endpoint, size_t size)
{
    void *pub = zmq_socket (context, ZMQ_PUB);
    int zero = 0;
    zmq_setsockopt (pub, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_bind (pub, "tcp://127.0.0.1:*");
    zmq_getsockopt (pub, ZMQ_LAST_ENDPOINT, endpoint, &size);
    return pub;
}

static void *
s_raw_sub (void *context, const char *endpoint)
{
    void *sub = zmq_socket (context, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt (sub, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "bench/", 6);
    zmq_setsockopt (sub, ZMQ_SUBSCRIBE, S_PROBE, strlen (S_PROBE));
    zmq_connect (sub, endpoint);
    return sub;
}

//  Reads one two-frame message; returns the payload size, or -1. topic
//  tells whether it was a probe.
static int
s_raw_recv (void *sub, uint8_t *buffer, size_t size, bool *probe, int flags)
{
    char topic[32];
    int rc = zmq_recv (sub, topic, sizeof topic, flags);
    if (rc < 0)
        return -1;
    *probe = (size_t) rc >= strlen (S_PROBE) && memcmp (topic, S_PROBE, strlen (S_PROBE)) == 0;
    return zmq_recv (sub, buffer, size, 0);
}

int
bench_raw_sub_child (int argc, char *argv[])
{
    if (argc < 2)
        return 2;
    int count = atoi (argv[1]);
    void *context = zmq_ctx_new ();
    void *sub = s_raw_sub (context, argv[0]);
    uint8_t buffer[65536];
    bool probe, ready = false;
    int received = 0;
    int64_t last = 0, limit = bench_now_ns () + 60LL * 1000000000;
    int timeout = 100;
    zmq_setsockopt (sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    while (received < count && bench_now_ns () < limit) {
        if (s_raw_recv (sub, buffer, sizeof buffer, &probe, 0) < 0)
            continue;
        if (probe) {
            if (!ready)
                printf ("ready\n");
            fflush (stdout);
            ready = true;
            continue;
        }
        received++;
        last = bench_now_ns ();
    }
    printf ("done %d %lld\n", received, (long long) last);
    fflush (stdout);
    bench_wait_parent ();
    zmq_close (sub);
    zmq_ctx_term (context);
    return 0;
}

double
bench_fanout_rate (bench_child_t *children, int subscribers, int count, int64_t start,
                   int timeout_ms, const char *who, unsigned long long *extra_p)
{
    int64_t last = 0;
    int complete = 0;
    unsigned long long extra_total = 0;
    for (int i = 0; i < subscribers; i++) {
        char line[256];
        int received = 0;
        long long at = 0;
        unsigned long long extra = 0;
        if (bench_child_line (&children[i], line, sizeof line, timeout_ms)
            && sscanf (line, "done %d %lld %llu", &received, &at, &extra) >= 2
            && received == count) {
            complete++;
            extra_total += extra;
            if (at > last)
                last = at;
        }
        else
            fprintf (stderr, "bench: %s subscriber %d got %d of %d events\n", who, i, received,
                     count);
    }
    if (extra_p)
        *extra_p = extra_total;
    return complete == subscribers && last > start
               ? (double) count * subscribers / ((double) (last - start) / 1e9)
               : -1;
}

double
bench_raw_fanout (const char *self, int subscribers, int count, size_t payload)
{
    void *context = zmq_ctx_new ();
    char endpoint[256];
    void *pub = s_raw_pub (context, endpoint, sizeof endpoint);
    bench_child_t *children = (bench_child_t *) calloc ((size_t) subscribers, sizeof *children);
    char count_text[32];
    snprintf (count_text, sizeof count_text, "%d", count);
    char *argv[] = {(char *) self, "--child", "zmq-sub", endpoint, count_text, NULL};
    double rate = -1;
    int started = 0;
    for (; started < subscribers; started++)
        if (bench_spawn (&children[started], argv, NULL))
            goto done;
    //  Probe until every subscriber has said it gets messages.
    int ready = 0;
    char line[256];
    int64_t deadline = bench_now_ns () + 10LL * 1000000000;
    while (ready < subscribers && bench_now_ns () < deadline) {
        zmq_send (pub, S_PROBE, strlen (S_PROBE), ZMQ_SNDMORE);
        zmq_send (pub, "x", 1, 0);
        for (int i = 0; i < subscribers; i++)
            if (bench_child_line (&children[i], line, sizeof line, 0)
                && strcmp (line, "ready") == 0)
                ready++;
        usleep (10000);
    }
    if (ready < subscribers)
        goto done;
    usleep (50000); //  let the last probes drain
    uint8_t *buffer = (uint8_t *) calloc (1, payload);
    int64_t start = bench_now_ns ();
    for (int i = 0; i < count; i++) {
        zmq_send (pub, S_TOPIC, strlen (S_TOPIC), ZMQ_SNDMORE);
        zmq_send (pub, buffer, payload, 0);
    }
    free (buffer);
    rate = bench_fanout_rate (children, subscribers, count, start, 90000, "raw zmq", NULL);
done:
    for (int i = 0; i < started; i++)
        bench_child_finish (&children[i], 2000);
    free (children);
    int linger = 0;
    zmq_setsockopt (pub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close (pub);
    zmq_ctx_term (context);
    return rate;
}

typedef struct {
    void *sub;          //  the SUB socket, used by the receiver thread only
    int count;          //  messages expected
    int64_t *latencies; //  filled by the receiver, may be NULL
    int64_t limit;      //  monotonic ns after which the receiver gives up
    int received;       //  messages received
} s_receiver_t;

//  Receives until count messages or the time limit, stamping each.
static void *
s_receiver (void *arg)
{
    s_receiver_t *self = (s_receiver_t *) arg;
    uint8_t incoming[65536];
    bool probe;
    int timeout = 100;
    zmq_setsockopt (self->sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    while (self->received < self->count && bench_now_ns () < self->limit) {
        int size = s_raw_recv (self->sub, incoming, sizeof incoming, &probe, 0);
        if (size < 8 || probe)
            continue;
        if (self->latencies) {
            int64_t at;
            memcpy (&at, incoming, sizeof at);
            self->latencies[self->received] = bench_now_ns () - at;
        }
        self->received++;
    }
    return NULL;
}

double
bench_raw_paced (int count, int64_t interval_ns, size_t payload, int64_t *latencies)
{
    void *context = zmq_ctx_new ();
    char endpoint[256];
    void *pub = s_raw_pub (context, endpoint, sizeof endpoint);
    void *sub = s_raw_sub (context, endpoint);
    uint8_t *buffer = (uint8_t *) calloc (1, payload < 64 ? 64 : payload);
    uint8_t incoming[256];
    bool probe;
    //  Wait until the subscription has reached the publisher.
    int64_t deadline = bench_now_ns () + 2000000000LL;
    bool ready = false;
    while (!ready && bench_now_ns () < deadline) {
        zmq_send (pub, S_PROBE, strlen (S_PROBE), ZMQ_SNDMORE);
        zmq_send (pub, "x", 1, 0);
        usleep (1000);
        while (s_raw_recv (sub, incoming, sizeof incoming, &probe, ZMQ_DONTWAIT) >= 0)
            ready = true;
    }
    //  The receiver runs in its own thread, as a subscriber node's does:
    //  the publisher's pacing never delays a receive.
    int64_t start = bench_now_ns ();
    s_receiver_t receiver = {sub, count, latencies,
                             start + 30LL * 1000000000 + (int64_t) count * interval_ns, 0};
    pthread_t thread;
    pthread_create (&thread, NULL, s_receiver, &receiver);
    int64_t next = start;
    for (int sent = 0; sent < count; sent++) {
        if (interval_ns) {
            bench_sleep_until (next);
            next += interval_ns;
        }
        int64_t now = bench_now_ns ();
        memcpy (buffer, &now, sizeof now);
        zmq_send (pub, S_TOPIC, strlen (S_TOPIC), ZMQ_SNDMORE);
        zmq_send (pub, buffer, payload, 0);
    }
    pthread_join (thread, NULL);
    double seconds = (double) (bench_now_ns () - start) / 1e9;
    free (buffer);
    int linger = 0;
    zmq_setsockopt (pub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close (sub);
    zmq_close (pub);
    zmq_ctx_term (context);
    return receiver.received == count ? count / seconds : -1;
}

bool
bench_part (const char *only, int number, const char *name)
{
    if (!only)
        return true;
    char copy[256];
    snprintf (copy, sizeof copy, "%s", only);
    char *save = NULL;
    for (char *item = strtok_r (copy, ",", &save); item; item = strtok_r (NULL, ",", &save))
        if (strcmp (item, name) == 0 || atoi (item) == number)
            return true;
    return false;
}

int
bench_env_int (const char *name, int value)
{
    const char *text = getenv (name);
    return text && atoi (text) > 0 ? atoi (text) : value;
}

int
bench_child_stop (bench_child_t *child, int timeout_ms)
{
    if (child->pid > 0)
        kill (child->pid, SIGTERM);
    return bench_child_finish (child, timeout_ms);
}

char *
bench_loaded_library (const char *name)
{
    char *path = NULL;
    FILE *maps = fopen ("/proc/self/maps", "r");
    char line[4500];
    while (maps && !path && fgets (line, sizeof line, maps))
        if (strstr (line, name) && strchr (line, '/')) {
            line[strcspn (line, "\n")] = 0;
            path = strdup (strchr (line, '/'));
        }
    if (maps)
        fclose (maps);
    return path;
}
