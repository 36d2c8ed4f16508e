/*  bench_util - what shoal's benchmark programs share: clocks, pacing,
    percentiles, a throwaway directory, child processes, process sizes, the
    results file, and the raw libzmq anchor.

    A benchmark that needs several processes starts them as children that
    exec a program (usually itself, with `--child ROLE ...`): a process
    that already runs ZeroMQ or NATS threads must not fork and go on
    without exec. A child talks to its parent one line at a time on its
    stdout (a pipe); its stdin is a pipe too, and EOF on it means "stop".
    Children die with the parent (PR_SET_PDEATHSIG) and are killed by pid
    at exit; nothing is ever killed by name.

    Results go one per line to the results file (--results FILE), as
        figure <TAB> system <TAB> value <TAB> unit
    with system one of shoal, zmq, nats; bench/bench_table.sh turns the
    lines of every program into the table, CSV and JSON. */

#ifndef SHOAL_BENCH_UTIL_H_INCLUDED
#define SHOAL_BENCH_UTIL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../tests/remove_tree.h" //  remove_tree

//  A child process started by bench_spawn.
typedef struct {
    pid_t pid;         //  process id, 0 when none
    int out_fd;        //  read end of its stdout, -1 when closed
    int in_fd;         //  write end of its stdin, -1 when closed
    char buffer[4096]; //  partial line read from it
    size_t used;       //  bytes in buffer
} bench_child_t;

//  CLOCK_MONOTONIC in ns: the same clock in every process of the host.
//  True when part (number or name) is in the comma-separated list only;
//  every part when only is NULL (--only PARTS).
bool bench_part (const char *only, int number, const char *name);

//  A positive integer from the environment, else value.
int bench_env_int (const char *name, int value);

int64_t bench_now_ns (void);

//  Sleeps until the monotonic time `at` (ns).
void bench_sleep_until (int64_t at);

//  Sorts values (ascending) and returns the p-quantile (0..1) of them in
//  microseconds; -1 when count is 0.
double bench_percentile_us (int64_t *values, size_t count, double p);

//  The median of the values that were measured (>= 0) among count (at
//  most 16); -1 when none was.
double bench_median (const double *values, int count);

//  Makes a new directory under $TMPDIR (or /tmp) named prefix-XXXXXX,
//  removed at exit with everything in it. Returns its path (static) or
//  NULL.
const char *bench_dir (const char *prefix);

//  Opens (appends to) the results file; NULL = no file, figures are only
//  printed. 0 or -1.
int bench_results_open (const char *path);

//  Records one figure: printed to stdout and written to the results file.
//  A negative value means "could not be measured" and is written as such.
void bench_result (const char *figure, const char *system, double value, const char *unit);

//  Starts argv[0] (a path) with argv as a child. stderr goes to
//  stderr_path when given (else it is inherited). 0 or -1.
int bench_spawn (bench_child_t *child, char *const argv[], const char *stderr_path);

//  One whole line (without the newline) from the child, waiting up to
//  timeout_ms. False on timeout or when the child closed its stdout.
bool bench_child_line (bench_child_t *child, char *line, size_t size, int timeout_ms);

//  Closes the child's stdin (asking it to stop), waits up to timeout_ms
//  for it to exit, then kills it; reaps it. Returns its wait status.
int bench_child_finish (bench_child_t *child, int timeout_ms);

//  SIGKILL, reaped.
void bench_child_kill (bench_child_t *child);

//  SIGTERM, then bench_child_finish: a daemon child stopped as its users would.
int bench_child_stop (bench_child_t *child, int timeout_ms);

//  In a child: waits until the parent closes our stdin.
void bench_wait_parent (void);

//  Resident set of a process in KiB (VmRSS), -1 when unknown.
long bench_rss_kib (pid_t pid);

//  Size in bytes of a file once stripped of symbols and debug information
//  (strip to a temporary copy; the file's size when strip is missing);
//  -1 when the file does not exist.
long bench_stripped_size (const char *path);

//  The path of a shared library this process has loaded whose file name
//  holds name ("/libzmq.so"), from /proc/self/maps; NULL when none. Free it.
char *bench_loaded_library (const char *name);

//  Total size of the files under a directory.
long long bench_tree_size (const char *path);

//  A TCP port on 127.0.0.1 that was free a moment ago.
int bench_free_port (void);

//  --------------------------------------------------------------------------
//  The raw libzmq anchor: PUB/SUB of two-frame messages (topic, payload),
//  as shoal sends them, with no high-water mark.

//  The end of a fan-out run: reads each child's line "done RECEIVED
//  LAST_NS [EXTRA]" (waiting timeout_ms at most for each) and returns the
//  events/s delivered over all of them since start, or -1 when one missed
//  some (said on stderr, as who). *extra_p (may be NULL) gets the sum of
//  the EXTRA fields.
double bench_fanout_rate (bench_child_t *children, int subscribers, int count, int64_t start,
                          int timeout_ms, const char *who, unsigned long long *extra_p);

//  Fan-out: one PUB in this process to `subscribers` child processes
//  (`self --child zmq-sub ENDPOINT COUNT`), count messages of payload
//  bytes. Returns the events/s delivered over all subscribers, -1 when a
//  subscriber missed some.
double bench_raw_fanout (const char *self, int subscribers, int count, size_t payload);

//  The child side of bench_raw_fanout: argv = ENDPOINT COUNT. Exit status.
int bench_raw_sub_child (int argc, char *argv[]);

//  Latency: count messages at one every interval_ns (0 = as fast as
//  possible) from a PUB to a SUB in this process; latencies (ns) filled
//  from the send time in the payload. Returns events/s or -1 when some
//  were lost.
double bench_raw_paced (int count, int64_t interval_ns, size_t payload, int64_t *latencies);

#endif
