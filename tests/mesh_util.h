/*  =========================================================================
    mesh_util.h - run shoald and shoal from a TAP test, and read their JSON

    Processes: every process started here is remembered and killed
    (SIGKILL, then reaped) when the test exits, and gets PR_SET_PDEATHSIG
    so it dies with the test even if the test crashes. Every wait is
    bounded. Children get the test's environment without any SHOAL_*
    variable (so a developer's SHOAL_DATA cannot leak in), plus the ones
    the test passes, and HOME and XDG_DATA_HOME inside tap_tmpdir ().

    JSON: a small independent parser (not the CLI's checker), so that the
    tests check the tool's output with other code than the tool's own.
    ========================================================================= */

#ifndef MESH_UTIL_H_INCLUDED
#define MESH_UTIL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

//  Path of a program of the build tree, e.g. mesh_bin ("shoald"):
//  $SHOAL_BUILDDIR/nodes/NAME (SHOAL_BUILDDIR defaults to ".").
//  Returns a static buffer reused by the next call.
const char *mesh_bin (const char *name);

typedef struct {
    pid_t pid;           //  the process
    int out_fd;          //  read end of its stdout
    char out[65536];     //  stdout read so far (the last 64 KiB at most)
    size_t out_size;     //  bytes in out
    char err_path[4096]; //  file holding its stderr
    int status;          //  exit status once reaped (128 + signal), -1 before
} mesh_proc_t;

//  Starts argv (NULL-terminated) with extra environment entries
//  ("NAME=VALUE", NULL-terminated, may be NULL). stdin is /dev/null,
//  stdout a pipe, stderr a file. With own_group, the child leads its
//  own process group (so a test can signal the group, like Ctrl-C).
//  Bails on failure.
mesh_proc_t *mesh_start (const char *const argv[], const char *const env[], bool own_group);

//  mesh_start of the build tree's program name (mesh_bin) with args
//  (NULL-terminated, at most 62 of them).
mesh_proc_t *mesh_start_bin (const char *name, const char *const *args, const char *const env[],
                             bool own_group);

//  Reads stdout until it holds a whole line that starts with prefix;
//  copies that line (without newline) into line. 0, or -1 on timeout or
//  end of output.
int mesh_wait_line (mesh_proc_t *proc, const char *prefix, char *line, size_t size,
                    double timeout_s);

//  Reads whatever stdout has now (non-blocking) into proc->out.
void mesh_drain (mesh_proc_t *proc);

//  Waits for the process to exit: its status (exit code, or 128 + signal),
//  or -1 on timeout (the process is left running).
int mesh_wait (mesh_proc_t *proc, double timeout_s);

//  Sends a signal (to the group when it leads one and group is true).
void mesh_signal (mesh_proc_t *proc, int signo, bool group);

//  Its stderr so far. Caller frees.
char *mesh_stderr (mesh_proc_t *proc);

//  Kills (if running), reaps and frees.
void mesh_stop (mesh_proc_t **proc_p);

//  Runs a program to completion with input on stdin (NULL = none),
//  waiting at most timeout_s (then kills it and returns -1). *out and
//  *err (either may be NULL) get its stdout and stderr (caller frees).
//  Returns the exit status (128 + signal when killed by one).
int mesh_run (const char *const argv[], const char *const env[], const char *input,
              double timeout_s, char **out, char **err);

//  mesh_run of the build tree's program name (mesh_bin) with args
//  (NULL-terminated, at most 62 of them).
int mesh_run_bin (const char *name, const char *const *args, const char *const env[],
                  const char *input, double timeout_s, char **out, char **err);

//  The stdout of mesh_run_bin (name, args) when it exits 0, else NULL.
//  Caller frees.
char *mesh_output (const char *name, const char *const *args, double timeout_s);

//  True when some process other than the test's own has `needle` in its
//  command line (to check that nothing was left behind).
bool mesh_process_with (const char *needle);

//  --------------------------------------------------------------------------
//  Example services (nodes/orders, nodes/detector, ...) as processes

typedef struct {
    const char *program; //  nodes/PROGRAM
    mesh_proc_t *proc;   //  the running process
    char id[33];         //  node id, from its start line
    char router[128];    //  node ROUTER endpoint
    char listen[128];    //  service ROUTER endpoint ("" when none)
    char data[4096];     //  data directory (default: the test's tmpdir / program)
} mesh_service_t;

//  Starts the service on the loopback beacon of mesh, with fast beacons
//  and heartbeats and the extra arguments (NULL-terminated, may be NULL),
//  and waits for its start line. False (with a diag) when it did not start.
bool mesh_service_start (mesh_service_t *svc, const char *mesh, const char *beacon_port,
                         const char *const *extra);

//  Stops it with SIGTERM; its exit status (-1 when not running). Its
//  stderr goes to *err when err is not NULL (caller frees), else to a
//  diag when the status is not 0.
int mesh_service_stop (mesh_service_t *svc, char **err);

//  --------------------------------------------------------------------------
//  JSON

typedef enum {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type_t;

typedef struct json_s json_t;

//  Parses one JSON text; NULL when it is not exactly one valid value.
json_t *json_parse (const char *text, size_t size);
void json_free (json_t *value);

json_type_t json_type (const json_t *value);
//  Member of an object, or NULL (also when value is NULL or not an object).
json_t *json_get (const json_t *value, const char *key);
//  Element of an array, or NULL.
json_t *json_at (const json_t *value, size_t index);
//  Elements of an array or members of an object.
size_t json_count (const json_t *value);
//  Key of the index-th member of an object.
const char *json_key_at (const json_t *value, size_t index);
//  Decoded string (NUL-terminated; json_string_size for embedded NULs), or NULL.
const char *json_string (const json_t *value);
size_t json_string_size (const json_t *value);
//  A number as an unsigned integer (exact for whole numbers), or fallback.
uint64_t json_u64 (const json_t *value, uint64_t fallback);
bool json_bool (const json_t *value, bool fallback);

//  Member shortcuts: json_get then json_string / json_u64.
const char *json_get_string (const json_t *value, const char *key);
uint64_t json_get_u64 (const json_t *value, const char *key, uint64_t fallback);

//  Base64 decoding (RFC 4648, padding required). Returns a new buffer and
//  its size, or NULL when the text is not base64.
uint8_t *mesh_base64_decode (const char *text, size_t *size_p);

//  Reads one log with `shoal --node ROUTER --json replay --origin ORIGIN
//  STREAM` and calls fn for every event line, with its payload decoded
//  from base64 (NULL when it has none or it does not decode). False, with
//  a diagnostic, when shoal fails.
typedef void (mesh_event_fn) (void *arg, json_t *event, const uint8_t *payload, size_t size);
bool mesh_replay_json (const char *router, const char *origin, const char *stream, double timeout_s,
                       mesh_event_fn *fn, void *arg);

#endif
