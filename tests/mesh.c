/*  =========================================================================
    mesh.c - the machinery of shoal's multi-process tests

    The parent keeps two tables that a signal handler can walk without
    allocating: the pids of its children alive, and the paths of the
    network namespaces it made. Cleanup kills and reaps every child by
    pid, then unmounts and unlinks every namespace (the kernel removes a
    namespace, with its interfaces and firewall rules, when nothing holds
    it any more). It runs at exit and on SIGINT, SIGTERM and the
    watchdog's SIGALRM, and only in the process that called mesh_init:
    a forked child that exits must not kill its siblings.

    A child reports lines with single write () calls of less than
    PIPE_BUF bytes, so a line is never torn, even when the child is killed
    in the middle of its work.
    ========================================================================= */

#include "mesh.h"
#include "tap.h"

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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_CHILDREN 32
#define S_MAX_NETNS 12

static pid_t s_owner;                             //  the test's own process
static volatile pid_t s_children[S_MAX_CHILDREN]; //  children alive, 0 = free
static char s_netns[S_MAX_NETNS][96];             //  /var/run/netns/NAME of ours, "" = none
static int s_report_fd = -1;                      //  child: write end of its report pipe
static int s_command_fd = -1;                     //  child: read end of its command pipe
static char s_command[4096];                      //  child: partial command lines
static size_t s_command_used;                     //  child: bytes in s_command

static int64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  --------------------------------------------------------------------------
//  Cleanup: children by pid, then namespaces. Signal-safe.

void
mesh_netns_remove_all (void)
{
    for (int i = 0; i < S_MAX_NETNS; i++)
        if (s_netns[i][0]) {
            umount2 (s_netns[i], MNT_DETACH);
            unlink (s_netns[i]);
            s_netns[i][0] = 0;
        }
}

static void
s_cleanup (void)
{
    if (getpid () != s_owner)
        return;
    for (int i = 0; i < S_MAX_CHILDREN; i++)
        if (s_children[i] > 0) {
            kill (s_children[i], SIGKILL);
            waitpid (s_children[i], NULL, 0);
            s_children[i] = 0;
        }
    mesh_netns_remove_all ();
}

static void
s_on_signal (int signum)
{
    s_cleanup ();
    if (signum == SIGALRM) {
        //  The watchdog: the run took far longer than it may. Exit (not
        //  die) so that the test's temporary directory goes too.
        static const char text[] = "Bail out! watchdog: the test ran out of time\n";
        if (write (STDOUT_FILENO, text, sizeof text - 1) < 0)
            _exit (255);
        exit (255);
    }
    signal (signum, SIG_DFL);
    raise (signum);
}

void
mesh_init (unsigned watchdog_s)
{
    s_owner = getpid ();
    //  The temporary directory first, so that its removal (an atexit
    //  handler) runs after the children are gone.
    tap_tmpdir ();
    atexit (s_cleanup);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGALRM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);
    if (watchdog_s)
        alarm (watchdog_s);
}

static void
s_forget (pid_t pid)
{
    for (int i = 0; i < S_MAX_CHILDREN; i++)
        if (s_children[i] == pid)
            s_children[i] = 0;
}

//  --------------------------------------------------------------------------
//  Children

void
mesh_spawn (mesh_child_t *child, mesh_run_fn *run, const void *arg)
{
    int reports[2], commands[2];
    if (pipe (reports) || pipe (commands))
        bail ("pipe: %s", strerror (errno));
    fflush (stdout);
    fflush (stderr);
    pid_t pid = fork ();
    if (pid < 0)
        bail ("fork: %s", strerror (errno));
    if (pid == 0) {
        //  The child: the parent's handlers are not its own, and its
        //  stdout is not the TAP stream (anything it prints goes to stderr).
        dup2 (STDERR_FILENO, STDOUT_FILENO);
        signal (SIGINT, SIG_DFL);
        signal (SIGTERM, SIG_DFL);
        signal (SIGALRM, SIG_DFL);
        close (reports[0]);
        close (commands[1]);
        s_report_fd = reports[1];
        s_command_fd = commands[0];
        fcntl (s_command_fd, F_SETFL, O_NONBLOCK);
        s_command_used = 0;
        run (arg);
        _exit (0);
    }
    close (reports[1]);
    close (commands[0]);
    child->pid = pid;
    child->fd = reports[0];
    child->command_fd = commands[1];
    child->used = 0;
    for (int i = 0; i < S_MAX_CHILDREN; i++)
        if (s_children[i] == 0) {
            s_children[i] = pid;
            break;
        }
}

//  Takes one whole line from what was read of a child.
static bool
s_take_line (mesh_child_t *child, char *line, size_t size)
{
    char *newline = (char *) memchr (child->buffer, '\n', child->used);
    if (!newline)
        return false;
    size_t length = (size_t) (newline - child->buffer);
    snprintf (line, size, "%.*s", (int) length, child->buffer);
    memmove (child->buffer, newline + 1, child->used - length - 1);
    child->used -= length + 1;
    return true;
}

//  Reads what a child wrote; closes its pipe at the end.
static void
s_fill (mesh_child_t *child)
{
    ssize_t got = read (child->fd, child->buffer + child->used, sizeof child->buffer - child->used);
    if (got <= 0) {
        if (got < 0 && errno == EINTR)
            return;
        close (child->fd);
        child->fd = -1;
    }
    else
        child->used += (size_t) got;
}

int
mesh_read_any (mesh_child_t **children, size_t count, char *line, size_t size, int timeout_ms)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    while (true) {
        for (size_t i = 0; i < count; i++)
            if (children[i] && s_take_line (children[i], line, size))
                return (int) i;
        struct pollfd items[S_MAX_CHILDREN];
        size_t polled = 0;
        for (size_t i = 0; i < count && polled < S_MAX_CHILDREN; i++)
            if (children[i] && children[i]->fd >= 0
                && children[i]->used < sizeof children[i]->buffer) {
                items[polled].fd = children[i]->fd;
                items[polled].events = POLLIN;
                items[polled].revents = 0;
                polled++;
            }
        int64_t left = deadline - s_now_ms ();
        if (polled == 0 || left < 0)
            return -1;
        if (poll (items, polled, (int) left) <= 0) {
            if (s_now_ms () >= deadline)
                return -1;
            continue;
        }
        for (size_t n = 0; n < polled; n++)
            if (items[n].revents)
                for (size_t i = 0; i < count; i++)
                    if (children[i] && children[i]->fd == items[n].fd) {
                        s_fill (children[i]);
                        break;
                    }
    }
}

bool
mesh_read_line (mesh_child_t *child, char *line, size_t size, int timeout_ms)
{
    return mesh_read_any (&child, 1, line, size, timeout_ms) == 0;
}

bool
mesh_ready (mesh_child_t *child, char *id, size_t id_size, char *endpoint, size_t endpoint_size)
{
    char line[MESH_LINE_MAX];
    int64_t deadline = s_now_ms () + 10000;
    while (s_now_ms () < deadline
           && mesh_read_line (child, line, sizeof line, (int) (deadline - s_now_ms ()))) {
        char one[128], two[256];
        if (sscanf (line, "ready %127s %255s", one, two) == 2) {
            snprintf (id, id_size, "%s", one);
            snprintf (endpoint, endpoint_size, "%s", two);
            return true;
        }
        if (strncmp (line, "error", 5) == 0) {
            diag ("child %d: %s", (int) child->pid, line);
            return false;
        }
    }
    return false;
}

int
mesh_send (mesh_child_t *child, const char *format, ...)
{
    char line[MESH_LINE_MAX];
    va_list args;
    va_start (args, format);
    int size = vsnprintf (line, sizeof line - 1, format, args);
    va_end (args);
    if (size < 0 || size >= (int) sizeof line - 1 || child->command_fd < 0)
        return -1;
    line[size++] = '\n';
    return write (child->command_fd, line, (size_t) size) == size ? 0 : -1;
}

void
mesh_close (mesh_child_t *child)
{
    if (child->fd >= 0)
        close (child->fd);
    if (child->command_fd >= 0)
        close (child->command_fd);
    child->fd = -1;
    child->command_fd = -1;
}

void
mesh_kill (mesh_child_t *child)
{
    if (child->pid <= 0)
        return;
    kill (child->pid, SIGKILL);
    waitpid (child->pid, NULL, 0);
    s_forget (child->pid);
    child->pid = 0;
}

void
mesh_finish (mesh_child_t *child, int timeout_ms)
{
    if (child->pid > 0) {
        int64_t deadline = s_now_ms () + timeout_ms;
        int status;
        kill (child->pid, SIGTERM);
        kill (child->pid, SIGCONT); //  a paused child must see it too
        while (waitpid (child->pid, &status, WNOHANG) == 0 && s_now_ms () < deadline)
            usleep (5000);
        mesh_kill (child);
    }
    mesh_close (child);
}

void
mesh_pause (mesh_child_t *child)
{
    if (child->pid > 0)
        kill (child->pid, SIGSTOP);
}

void
mesh_resume (mesh_child_t *child)
{
    if (child->pid > 0)
        kill (child->pid, SIGCONT);
}

void
mesh_report (const char *format, ...)
{
    char line[MESH_LINE_MAX];
    va_list args;
    va_start (args, format);
    int size = vsnprintf (line, sizeof line - 1, format, args);
    va_end (args);
    if (size < 0)
        _exit (3);
    if (size > (int) sizeof line - 2)
        size = (int) sizeof line - 2;
    line[size++] = '\n';
    if (write (s_report_fd, line, (size_t) size) != size)
        _exit (3);
}

bool
mesh_command (char *line, size_t size)
{
    while (true) {
        char *newline = (char *) memchr (s_command, '\n', s_command_used);
        if (newline) {
            size_t length = (size_t) (newline - s_command);
            snprintf (line, size, "%.*s", (int) length, s_command);
            memmove (s_command, newline + 1, s_command_used - length - 1);
            s_command_used -= length + 1;
            return true;
        }
        if (s_command_fd < 0 || s_command_used == sizeof s_command)
            return false;
        ssize_t got =
            read (s_command_fd, s_command + s_command_used, sizeof s_command - s_command_used);
        if (got <= 0)
            return false;
        s_command_used += (size_t) got;
    }
}

//  --------------------------------------------------------------------------
//  Network

int
mesh_enter_netns (const char *name)
{
    char path[128];
    snprintf (path, sizeof path, "/var/run/netns/%s", name);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = setns (fd, CLONE_NEWNET);
    close (fd);
    return rc;
}

int
mesh_run (const char *const *argv)
{
    fflush (stdout);
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open ("/dev/null", O_RDWR);
        dup2 (null, 0);
        dup2 (null, 1);
        dup2 (null, 2);
        execvp (argv[0], (char *const *) argv);
        _exit (127);
    }
    int status = 0;
    while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

int
mesh_netns_add (const char *name)
{
    for (int i = 0; i < S_MAX_NETNS; i++)
        if (!s_netns[i][0]) {
            //  Recorded first: a signal between the two still removes it.
            snprintf (s_netns[i], sizeof s_netns[i], "/var/run/netns/%s", name);
            if (MESH_IP ("netns", "add", name) == 0)
                return 0;
            s_netns[i][0] = 0;
            return -1;
        }
    return -1;
}

bool
mesh_netns_exists (const char *name)
{
    char path[128];
    snprintf (path, sizeof path, "/var/run/netns/%s", name);
    return access (path, F_OK) == 0;
}
