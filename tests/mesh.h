/*  =========================================================================
    mesh.h - the machinery of shoal's multi-process tests

    A multi-process test forks children that each run a node from the
    library and tell the parent what they see, one line per fact, over a
    pipe ("ready <id> <endpoint>", "got <origin> 17"). The parent may send
    them lines too (commands), over a second pipe. The parent itself never
    starts czmq: forking a process that runs ZeroMQ threads is not safe.

        mesh_init (120);                    //  cleanup at exit and on signals, watchdog
        mesh_child_t child;
        mesh_spawn (&child, s_run, &role);  //  the child runs s_run (&role), then _exit (0)
        mesh_ready (&child, id, sizeof id, endpoint, sizeof endpoint);  //  "ready <id> <endpoint>"
        mesh_read_line (&child, line, sizeof line, 1000);
        mesh_send (&child, "publish %d", 100);
        mesh_kill (&child);                 //  SIGKILL, reaped: the crash
        mesh_finish (&child, 5000);         //  SIGTERM, SIGKILL after 5 s, reaped

    In the child: mesh_report ("got %s %d", ...) and mesh_command (line, size).

    Children are killed by pid and reaped, never by name. Network
    namespaces made with mesh_netns_add are removed at exit, on SIGINT,
    SIGTERM and SIGALRM (the watchdog), and by mesh_netns_remove_all;
    everything inside them (veth pairs, bridges, nftables rules) goes
    with them. Nothing is ever configured outside the test's namespaces.
    ========================================================================= */

#ifndef SHOAL_TEST_MESH_H_INCLUDED
#define SHOAL_TEST_MESH_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define MESH_LINE_MAX 512

typedef struct {
    pid_t pid;          //  child process, 0 when none
    int fd;             //  read end of its report pipe, -1 when closed
    int command_fd;     //  write end of its command pipe, -1 when closed
    char buffer[65536]; //  partial lines read from it
    size_t used;        //  bytes in buffer
} mesh_child_t;

typedef void (mesh_run_fn) (const void *arg);

//  Parent: records the test's own process, kills children and removes
//  namespaces at exit and on signals, and arms a watchdog that ends the
//  whole test (cleanly) after watchdog_s seconds (0 = none). Call first.
void mesh_init (unsigned watchdog_s);

//  Parent: forks a child that runs run (arg) and then _exits with 0.
void mesh_spawn (mesh_child_t *child, mesh_run_fn *run, const void *arg);

//  Parent: one whole line (without its newline) from a child, waiting up
//  to timeout_ms. False on timeout, or when the child closed its pipe and
//  every line was read.
bool mesh_read_line (mesh_child_t *child, char *line, size_t size, int timeout_ms);

//  Parent: one whole line from any of count children, waiting up to
//  timeout_ms; returns the index of the child it came from, -1 when none.
int mesh_read_any (mesh_child_t **children, size_t count, char *line, size_t size, int timeout_ms);

//  Parent: waits for "ready <id> <endpoint>" (10 s at most); a line
//  "error ..." before it is shown with diag and gives false.
bool mesh_ready (mesh_child_t *child, char *id, size_t id_size, char *endpoint,
                 size_t endpoint_size);

//  Parent: sends a command line to a child. 0, or -1.
int mesh_send (mesh_child_t *child, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Parent: SIGKILL, then reaps the child. Lines it wrote before dying can
//  still be read until mesh_close.
void mesh_kill (mesh_child_t *child);

//  Parent: SIGTERM, SIGKILL when the child is still there after
//  timeout_ms, reaped; its pipes are closed.
void mesh_finish (mesh_child_t *child, int timeout_ms);

//  Parent: closes a reaped child's pipes.
void mesh_close (mesh_child_t *child);

//  Parent: stops (SIGSTOP) or continues (SIGCONT) a child.
void mesh_pause (mesh_child_t *child);
void mesh_resume (mesh_child_t *child);

//  Child: reports one line to the parent; exits the child if it cannot.
void mesh_report (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

//  Child: the next whole command line from the parent, without waiting.
//  True when there was one.
bool mesh_command (char *line, size_t size);

//  Child: enters the network namespace /var/run/netns/NAME. 0 or -1.
int mesh_enter_netns (const char *name);

//  Runs a program (argv[0] found on PATH) with its output discarded;
//  returns its exit status, or -1 when it did not exit normally.
int mesh_run (const char *const *argv);
#define MESH_RUN(...) mesh_run ((const char *const[]){__VA_ARGS__, NULL})
#define MESH_IP(...) MESH_RUN ("ip", __VA_ARGS__)

//  Makes the network namespace NAME (ip netns add) and records it for
//  removal. 0, or -1 (also when no more can be recorded).
int mesh_netns_add (const char *name);

//  Whether the namespace NAME exists.
bool mesh_netns_exists (const char *name);

//  Removes every namespace made by mesh_netns_add. Signal-safe.
void mesh_netns_remove_all (void);

#endif
