/*  =========================================================================
    mesh_util.c - run shoald and shoal from a TAP test, and read their JSON

    See mesh_util.h. The process registry is a fixed array: tests start a
    few dozen processes at most, and an atexit handler kills and reaps
    whatever is still registered, so a failed check never leaves a node
    running.
    ========================================================================= */

#include "mesh_util.h"
#include "tap.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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

extern char **environ;

#define S_MAX_PROCS 256

static pid_t s_pids[S_MAX_PROCS]; //  started and not yet reaped, 0 = free slot
static bool s_atexit_set = false;

static void
s_kill_all (void)
{
    for (int i = 0; i < S_MAX_PROCS; i++)
        if (s_pids[i] > 0) {
            kill (s_pids[i], SIGKILL);
            kill (-s_pids[i], SIGKILL);
            waitpid (s_pids[i], NULL, 0);
            s_pids[i] = 0;
        }
}

static void
s_register (pid_t pid)
{
    if (!s_atexit_set) {
        atexit (s_kill_all);
        s_atexit_set = true;
    }
    for (int i = 0; i < S_MAX_PROCS; i++)
        if (s_pids[i] == 0) {
            s_pids[i] = pid;
            return;
        }
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
    bail ("more than %d processes started", S_MAX_PROCS);
}

static void
s_unregister (pid_t pid)
{
    for (int i = 0; i < S_MAX_PROCS; i++)
        if (s_pids[i] == pid)
            s_pids[i] = 0;
}

const char *
mesh_bin (const char *name)
{
    static char path[4096];
    const char *builddir = getenv ("SHOAL_BUILDDIR");
    snprintf (path, sizeof path, "%s/nodes/%s", builddir && *builddir ? builddir : ".", name);
    return path;
}

//  The child's environment: ours minus SHOAL_*, HOME and XDG_DATA_HOME,
//  plus extra. Built before fork (no allocation after fork).
static char **
s_child_env (const char *const env[])
{
    size_t count = 0, extra = 0;
    while (environ[count])
        count++;
    while (env && env[extra])
        extra++;
    char **result = (char **) calloc (count + extra + 3, sizeof (char *));
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp (environ[i], "SHOAL_", 6) != 0 && strncmp (environ[i], "HOME=", 5) != 0
            && strncmp (environ[i], "XDG_DATA_HOME=", 14) != 0)
            result[n++] = environ[i];
    static char home[4200], xdg[4200];
    snprintf (home, sizeof home, "HOME=%s/home", tap_tmpdir ());
    snprintf (xdg, sizeof xdg, "XDG_DATA_HOME=%s/home/.xdg", tap_tmpdir ());
    bool has_home = false, has_xdg = false;
    for (size_t i = 0; i < extra; i++) {
        has_home |= strncmp (env[i], "HOME=", 5) == 0;
        has_xdg |= strncmp (env[i], "XDG_DATA_HOME=", 14) == 0;
        //  "XDG_DATA_HOME=" (empty) means: leave it unset.
        if (strncmp (env[i], "XDG_DATA_HOME=", 14) != 0 || env[i][14] != 0)
            result[n++] = (char *) env[i];
    }
    if (!has_home)
        result[n++] = home;
    if (!has_xdg)
        result[n++] = xdg;
    result[n] = NULL;
    return result;
}

static void
s_nonblock (int fd)
{
    fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
}

static pid_t
s_spawn (const char *const argv[], const char *const env[], int in_fd, int out_fd, int err_fd,
         bool own_group)
{
    char **child_env = s_child_env (env);
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid < 0)
        bail ("fork: %s", strerror (errno));
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (getppid () != parent)
            _exit (127);
        if (own_group)
            setpgid (0, 0);
        //  Signals the test may have blocked or ignored are reset.
        sigset_t none;
        sigemptyset (&none);
        sigprocmask (SIG_SETMASK, &none, NULL);
        signal (SIGINT, SIG_DFL);
        signal (SIGTERM, SIG_DFL);
        signal (SIGPIPE, SIG_DFL);
        dup2 (in_fd, 0);
        dup2 (out_fd, 1);
        dup2 (err_fd, 2);
        execve (argv[0], (char *const *) argv, child_env);
        fprintf (stderr, "exec %s: %s\n", argv[0], strerror (errno));
        _exit (127);
    }
    if (own_group)
        setpgid (pid, pid);
    free (child_env);
    s_register (pid);
    return pid;
}

static int s_err_count = 0;

mesh_proc_t *
mesh_start (const char *const argv[], const char *const env[], bool own_group)
{
    mesh_proc_t *proc = (mesh_proc_t *) calloc (1, sizeof (mesh_proc_t));
    proc->status = -1;
    snprintf (proc->err_path, sizeof proc->err_path, "%s/stderr-%d.txt", tap_tmpdir (),
              ++s_err_count);
    int err_fd = open (proc->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int in_fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
    int pipe_fds[2];
    if (err_fd < 0 || in_fd < 0 || pipe2 (pipe_fds, O_CLOEXEC))
        bail ("cannot set up a child: %s", strerror (errno));
    proc->pid = s_spawn (argv, env, in_fd, pipe_fds[1], err_fd, own_group);
    close (pipe_fds[1]);
    close (err_fd);
    close (in_fd);
    proc->out_fd = pipe_fds[0];
    s_nonblock (proc->out_fd);
    return proc;
}

void
mesh_drain (mesh_proc_t *proc)
{
    while (proc->out_fd >= 0) {
        if (proc->out_size == sizeof proc->out - 1) {
            //  Full: keep the newer half, so a chatty child never blocks.
            size_t half = proc->out_size / 2;
            memmove (proc->out, proc->out + half, proc->out_size - half);
            proc->out_size -= half;
        }
        ssize_t got =
            read (proc->out_fd, proc->out + proc->out_size, sizeof proc->out - 1 - proc->out_size);
        if (got > 0)
            proc->out_size += (size_t) got;
        else {
            if (got == 0) {
                close (proc->out_fd);
                proc->out_fd = -1;
            }
            break;
        }
    }
    proc->out[proc->out_size] = 0;
}

int
mesh_wait_line (mesh_proc_t *proc, const char *prefix, char *line, size_t size, double timeout_s)
{
    double deadline = tap_now () + timeout_s;
    while (true) {
        mesh_drain (proc);
        const char *p = proc->out;
        while (p && *p) {
            const char *eol = strchr (p, '\n');
            if (!eol)
                break;
            if (strncmp (p, prefix, strlen (prefix)) == 0) {
                size_t length = (size_t) (eol - p);
                if (length >= size)
                    length = size - 1;
                memcpy (line, p, length);
                line[length] = 0;
                return 0;
            }
            p = eol + 1;
        }
        double left = deadline - tap_now ();
        if (left <= 0 || proc->out_fd < 0)
            return -1;
        struct pollfd fd = {proc->out_fd, POLLIN, 0};
        poll (&fd, 1, left > 0.1 ? 100 : (int) (left * 1000) + 1);
    }
}

static int
s_decode_status (int status)
{
    if (WIFEXITED (status))
        return WEXITSTATUS (status);
    if (WIFSIGNALED (status))
        return 128 + WTERMSIG (status);
    return -1;
}

int
mesh_wait (mesh_proc_t *proc, double timeout_s)
{
    if (proc->status >= 0)
        return proc->status;
    double deadline = tap_now () + timeout_s;
    while (true) {
        int status;
        pid_t got = waitpid (proc->pid, &status, WNOHANG);
        if (got == proc->pid) {
            s_unregister (proc->pid);
            proc->status = s_decode_status (status);
            mesh_drain (proc);
            return proc->status;
        }
        if (tap_now () >= deadline)
            return -1;
        mesh_drain (proc);
        usleep (10000);
    }
}

void
mesh_signal (mesh_proc_t *proc, int signo, bool group)
{
    if (proc->status < 0)
        kill (group ? -proc->pid : proc->pid, signo);
}

static char *
s_read_file (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return strdup ("");
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream (&text, &size);
    char buffer[4096];
    size_t got;
    while ((got = fread (buffer, 1, sizeof buffer, file)) > 0)
        fwrite (buffer, 1, got, mem);
    fclose (file);
    fclose (mem);
    return text;
}

char *
mesh_stderr (mesh_proc_t *proc)
{
    return s_read_file (proc->err_path);
}

void
mesh_stop (mesh_proc_t **proc_p)
{
    mesh_proc_t *proc = *proc_p;
    if (!proc)
        return;
    if (proc->status < 0) {
        kill (proc->pid, SIGKILL);
        int status;
        waitpid (proc->pid, &status, 0);
        s_unregister (proc->pid);
    }
    if (proc->out_fd >= 0)
        close (proc->out_fd);
    free (proc);
    *proc_p = NULL;
}

//  argv of the build tree's program name with args, in the caller's argv.
static void
s_bin_argv (const char *name, const char *const *args, const char *argv[64])
{
    size_t n = 0;
    argv[n++] = mesh_bin (name);
    for (size_t i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
}

mesh_proc_t *
mesh_start_bin (const char *name, const char *const *args, const char *const env[], bool own_group)
{
    const char *argv[64];
    s_bin_argv (name, args, argv);
    return mesh_start (argv, env, own_group);
}

int
mesh_run_bin (const char *name, const char *const *args, const char *const env[], const char *input,
              double timeout_s, char **out, char **err)
{
    const char *argv[64];
    s_bin_argv (name, args, argv);
    return mesh_run (argv, env, input, timeout_s, out, err);
}

char *
mesh_output (const char *name, const char *const *args, double timeout_s)
{
    char *out = NULL;
    if (mesh_run_bin (name, args, NULL, NULL, timeout_s, &out, NULL) != 0) {
        free (out);
        return NULL;
    }
    return out;
}

int
mesh_run (const char *const argv[], const char *const env[], const char *input, double timeout_s,
          char **out, char **err)
{
    char in_path[4200], out_path[4200], err_path[4200];
    int n = ++s_err_count;
    snprintf (in_path, sizeof in_path, "%s/run-%d.in", tap_tmpdir (), n);
    snprintf (out_path, sizeof out_path, "%s/run-%d.out", tap_tmpdir (), n);
    snprintf (err_path, sizeof err_path, "%s/run-%d.err", tap_tmpdir (), n);
    FILE *file = fopen (in_path, "w");
    if (!file)
        bail ("cannot write %s", in_path);
    if (input)
        fputs (input, file);
    fclose (file);
    int in_fd = open (in_path, O_RDONLY | O_CLOEXEC);
    int out_fd = open (out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err_fd = open (err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in_fd < 0 || out_fd < 0 || err_fd < 0)
        bail ("cannot open files for a child: %s", strerror (errno));
    pid_t pid = s_spawn (argv, env, in_fd, out_fd, err_fd, false);
    close (in_fd);
    close (out_fd);
    close (err_fd);
    double deadline = tap_now () + timeout_s;
    int status = -1, raw;
    while (true) {
        if (waitpid (pid, &raw, WNOHANG) == pid) {
            status = s_decode_status (raw);
            break;
        }
        if (tap_now () >= deadline) {
            kill (pid, SIGKILL);
            waitpid (pid, &raw, 0);
            diag ("%s killed after %.1f s", argv[0], timeout_s);
            status = -1;
            break;
        }
        usleep (5000);
    }
    s_unregister (pid);
    const char *paths[2] = {out_path, err_path};
    char **targets[2] = {out, err};
    for (int i = 0; i < 2; i++) {
        if (targets[i])
            *targets[i] = s_read_file (paths[i]);
    }
    unlink (in_path);
    unlink (out_path);
    unlink (err_path);
    return status;
}

bool
mesh_process_with (const char *needle)
{
    DIR *dir = opendir ("/proc");
    if (!dir)
        return false;
    bool found = false;
    struct dirent *entry;
    pid_t self = getpid ();
    while (!found && (entry = readdir (dir))) {
        pid_t pid = (pid_t) atoi (entry->d_name);
        if (pid <= 0 || pid == self)
            continue;
        char path[64], buffer[8192];
        snprintf (path, sizeof path, "/proc/%d/cmdline", (int) pid);
        int fd = open (path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t got = read (fd, buffer, sizeof buffer - 1);
        close (fd);
        if (got <= 0)
            continue;
        for (ssize_t i = 0; i < got; i++)
            if (buffer[i] == 0)
                buffer[i] = ' ';
        buffer[got] = 0;
        found = strstr (buffer, needle) != NULL;
    }
    closedir (dir);
    return found;
}

bool
mesh_service_start (mesh_service_t *svc, const char *mesh, const char *beacon_port,
                    const char *const *extra)
{
    if (!*svc->data)
        snprintf (svc->data, sizeof svc->data, "%s/%s", tap_tmpdir (), svc->program);
    char bin[4200];
    snprintf (bin, sizeof bin, "%s", mesh_bin (svc->program));
    const char *argv[32] = {bin,          "--data",         svc->data,   "--name",
                            svc->program, "--mesh",         mesh,        "--interface",
                            "lo",         "--beacon-port",  beacon_port, "--beacon-interval-ms",
                            "200",        "--heartbeat-ms", "200"};
    size_t argc = 15;
    for (size_t i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    svc->proc = mesh_start (argv, NULL, false);
    char prefix[64], line[4500];
    snprintf (prefix, sizeof prefix, "%s: node ", svc->program);
    if (mesh_wait_line (svc->proc, prefix, line, sizeof line, 15) != 0
        || sscanf (line, "%*s node %*s %32s router %127s", svc->id, svc->router) != 2) {
        char *err = mesh_stderr (svc->proc);
        diag ("%s did not start: %s", svc->program, err);
        free (err);
        return false;
    }
    const char *listen = strstr (line, " listen ");
    svc->listen[0] = 0;
    if (listen)
        sscanf (listen, " listen %127s", svc->listen);
    return true;
}

int
mesh_service_stop (mesh_service_t *svc, char **err_p)
{
    if (!svc->proc)
        return -1;
    mesh_signal (svc->proc, SIGTERM, false);
    int status = mesh_wait (svc->proc, 20);
    char *err = mesh_stderr (svc->proc);
    if (err_p)
        *err_p = err;
    else {
        if (status != 0)
            diag ("%s stopped with %d: %s", svc->program, status, err);
        free (err);
    }
    mesh_stop (&svc->proc);
    return status;
}

//  --------------------------------------------------------------------------
//  JSON

struct json_s {
    json_type_t type; //  what it is
    bool boolean;     //  JSON_BOOL
    char *text;       //  JSON_STRING decoded; JSON_NUMBER as written
    size_t size;      //  bytes in text
    json_t **items;   //  JSON_ARRAY elements, JSON_OBJECT values
    char **keys;      //  JSON_OBJECT keys
    size_t count;     //  items
};

typedef struct {
    const char *p;   //  position
    const char *end; //  end of text
    int depth;       //  nesting
} s_parser_t;

static json_t *s_parse_value (s_parser_t *parser);

static void
s_skip (s_parser_t *parser)
{
    while (parser->p < parser->end
           && (*parser->p == ' ' || *parser->p == '\t' || *parser->p == '\n' || *parser->p == '\r'))
        parser->p++;
}

static void
s_put_utf8 (char *out, size_t *n, unsigned long c)
{
    if (c < 0x80)
        out[(*n)++] = (char) c;
    else if (c < 0x800) {
        out[(*n)++] = (char) (0xc0 | (c >> 6));
        out[(*n)++] = (char) (0x80 | (c & 0x3f));
    }
    else if (c < 0x10000) {
        out[(*n)++] = (char) (0xe0 | (c >> 12));
        out[(*n)++] = (char) (0x80 | ((c >> 6) & 0x3f));
        out[(*n)++] = (char) (0x80 | (c & 0x3f));
    }
    else {
        out[(*n)++] = (char) (0xf0 | (c >> 18));
        out[(*n)++] = (char) (0x80 | ((c >> 12) & 0x3f));
        out[(*n)++] = (char) (0x80 | ((c >> 6) & 0x3f));
        out[(*n)++] = (char) (0x80 | (c & 0x3f));
    }
}

static char *
s_parse_string (s_parser_t *parser, size_t *size_p)
{
    if (parser->p >= parser->end || *parser->p != '"')
        return NULL;
    parser->p++;
    char *out = (char *) malloc ((size_t) (parser->end - parser->p) + 1);
    size_t n = 0;
    while (parser->p < parser->end && *parser->p != '"') {
        unsigned char c = (unsigned char) *parser->p++;
        if (c < 0x20) {
            free (out);
            return NULL;
        }
        if (c != '\\') {
            out[n++] = (char) c;
            continue;
        }
        if (parser->p >= parser->end)
            break;
        char e = *parser->p++;
        switch (e) {
            case '"': out[n++] = '"'; break;
            case '\\': out[n++] = '\\'; break;
            case '/': out[n++] = '/'; break;
            case 'b': out[n++] = '\b'; break;
            case 'f': out[n++] = '\f'; break;
            case 'n': out[n++] = '\n'; break;
            case 'r': out[n++] = '\r'; break;
            case 't': out[n++] = '\t'; break;
            case 'u': {
                if (parser->end - parser->p < 4) {
                    free (out);
                    return NULL;
                }
                char hex[5] = {parser->p[0], parser->p[1], parser->p[2], parser->p[3], 0};
                char *stop;
                unsigned long c1 = strtoul (hex, &stop, 16);
                if (*stop) {
                    free (out);
                    return NULL;
                }
                parser->p += 4;
                if (c1 >= 0xd800 && c1 <= 0xdbff && parser->end - parser->p >= 6
                    && parser->p[0] == '\\' && parser->p[1] == 'u') {
                    char low[5] = {parser->p[2], parser->p[3], parser->p[4], parser->p[5], 0};
                    unsigned long c2 = strtoul (low, &stop, 16);
                    if (!*stop && c2 >= 0xdc00 && c2 <= 0xdfff) {
                        c1 = 0x10000 + ((c1 - 0xd800) << 10) + (c2 - 0xdc00);
                        parser->p += 6;
                    }
                }
                s_put_utf8 (out, &n, c1);
                break;
            }
            default: free (out); return NULL;
        }
    }
    if (parser->p >= parser->end) {
        free (out);
        return NULL;
    }
    parser->p++;
    out[n] = 0;
    *size_p = n;
    return out;
}

static json_t *
s_new (json_type_t type)
{
    json_t *value = (json_t *) calloc (1, sizeof (json_t));
    value->type = type;
    return value;
}

static json_t *
s_parse_container (s_parser_t *parser, bool object)
{
    if (++parser->depth > 200)
        return NULL;
    json_t *value = s_new (object ? JSON_OBJECT : JSON_ARRAY);
    char close = object ? '}' : ']';
    parser->p++;
    s_skip (parser);
    if (parser->p < parser->end && *parser->p == close) {
        parser->p++;
        parser->depth--;
        return value;
    }
    while (true) {
        char *key = NULL;
        size_t key_size;
        s_skip (parser);
        if (object) {
            key = s_parse_string (parser, &key_size);
            s_skip (parser);
            if (!key || parser->p >= parser->end || *parser->p != ':') {
                free (key);
                json_free (value);
                return NULL;
            }
            parser->p++;
        }
        json_t *item = s_parse_value (parser);
        if (!item) {
            free (key);
            json_free (value);
            return NULL;
        }
        value->items = (json_t **) realloc (value->items, (value->count + 1) * sizeof (json_t *));
        value->keys = (char **) realloc (value->keys, (value->count + 1) * sizeof (char *));
        value->items[value->count] = item;
        value->keys[value->count] = key;
        value->count++;
        s_skip (parser);
        if (parser->p < parser->end && *parser->p == ',') {
            parser->p++;
            continue;
        }
        if (parser->p < parser->end && *parser->p == close) {
            parser->p++;
            parser->depth--;
            return value;
        }
        json_free (value);
        return NULL;
    }
}

static json_t *
s_parse_value (s_parser_t *parser)
{
    s_skip (parser);
    if (parser->p >= parser->end)
        return NULL;
    char c = *parser->p;
    if (c == '{' || c == '[')
        return s_parse_container (parser, c == '{');
    if (c == '"') {
        size_t size;
        char *text = s_parse_string (parser, &size);
        if (!text)
            return NULL;
        json_t *value = s_new (JSON_STRING);
        value->text = text;
        value->size = size;
        return value;
    }
    const char *words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t length = strlen (words[i]);
        if ((size_t) (parser->end - parser->p) >= length
            && memcmp (parser->p, words[i], length) == 0) {
            parser->p += length;
            json_t *value = s_new (i == 2 ? JSON_NULL : JSON_BOOL);
            value->boolean = i == 0;
            return value;
        }
    }
    const char *start = parser->p;
    if (*parser->p == '-')
        parser->p++;
    while (parser->p < parser->end
           && ((*parser->p >= '0' && *parser->p <= '9') || *parser->p == '.' || *parser->p == 'e'
               || *parser->p == 'E' || *parser->p == '+' || *parser->p == '-'))
        parser->p++;
    if (parser->p == start || (parser->p == start + 1 && *start == '-'))
        return NULL;
    json_t *value = s_new (JSON_NUMBER);
    value->size = (size_t) (parser->p - start);
    value->text = strndup (start, value->size);
    char *stop;
    strtod (value->text, &stop);
    if (*stop) {
        json_free (value);
        return NULL;
    }
    return value;
}

json_t *
json_parse (const char *text, size_t size)
{
    if (!text)
        return NULL;
    s_parser_t parser = {text, text + size, 0};
    json_t *value = s_parse_value (&parser);
    s_skip (&parser);
    if (value && parser.p != parser.end) {
        json_free (value);
        return NULL;
    }
    return value;
}

void
json_free (json_t *value)
{
    if (!value)
        return;
    for (size_t i = 0; i < value->count; i++) {
        json_free (value->items[i]);
        if (value->keys)
            free (value->keys[i]);
    }
    free (value->items);
    free (value->keys);
    free (value->text);
    free (value);
}

json_type_t
json_type (const json_t *value)
{
    return value ? value->type : JSON_NULL;
}

json_t *
json_get (const json_t *value, const char *key)
{
    if (!value || value->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < value->count; i++)
        if (strcmp (value->keys[i], key) == 0)
            return value->items[i];
    return NULL;
}

json_t *
json_at (const json_t *value, size_t index)
{
    if (!value || value->type != JSON_ARRAY || index >= value->count)
        return NULL;
    return value->items[index];
}

size_t
json_count (const json_t *value)
{
    return value && (value->type == JSON_ARRAY || value->type == JSON_OBJECT) ? value->count : 0;
}

const char *
json_key_at (const json_t *value, size_t index)
{
    if (!value || value->type != JSON_OBJECT || index >= value->count)
        return NULL;
    return value->keys[index];
}

const char *
json_string (const json_t *value)
{
    return value && value->type == JSON_STRING ? value->text : NULL;
}

size_t
json_string_size (const json_t *value)
{
    return value && value->type == JSON_STRING ? value->size : 0;
}

uint64_t
json_u64 (const json_t *value, uint64_t fallback)
{
    if (!value || value->type != JSON_NUMBER)
        return fallback;
    char *stop;
    unsigned long long v = strtoull (value->text, &stop, 10);
    return *stop ? fallback : (uint64_t) v;
}

bool
json_bool (const json_t *value, bool fallback)
{
    return value && value->type == JSON_BOOL ? value->boolean : fallback;
}

const char *
json_get_string (const json_t *value, const char *key)
{
    return json_string (json_get (value, key));
}

uint64_t
json_get_u64 (const json_t *value, const char *key, uint64_t fallback)
{
    return json_u64 (json_get (value, key), fallback);
}

uint8_t *
mesh_base64_decode (const char *text, size_t *size_p)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t length = strlen (text);
    if (length % 4)
        return NULL;
    uint8_t *out = (uint8_t *) malloc (length / 4 * 3 + 1);
    size_t n = 0;
    for (size_t i = 0; i < length; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = text[i + (size_t) j];
            const char *at = c ? strchr (alphabet, c) : NULL;
            if (c == '=' && i + 4 == length && j >= 2) {
                pad++;
                v <<= 6;
            }
            else if (at && !pad)
                v = (v << 6) | (uint32_t) (at - alphabet);
            else {
                free (out);
                return NULL;
            }
        }
        out[n++] = (uint8_t) (v >> 16);
        if (pad < 2)
            out[n++] = (uint8_t) (v >> 8);
        if (pad < 1)
            out[n++] = (uint8_t) v;
    }
    *size_p = n;
    return out;
}

bool
mesh_replay_json (const char *router, const char *origin, const char *stream, double timeout_s,
                  mesh_event_fn *fn, void *arg)
{
    const char *args[] = {"--node", router, "--json", "replay", "--origin", origin, stream, NULL};
    char *out = NULL, *err = NULL;
    int rc = mesh_run_bin ("shoal", args, NULL, NULL, timeout_s, &out, &err);
    if (rc != 0)
        diag ("shoal replay %s of %s: exit %d: %s", stream, origin, rc, err);
    for (const char *line = out; rc == 0 && line && *line;) {
        const char *eol = strchr (line, '\n');
        size_t length = eol ? (size_t) (eol - line) : strlen (line);
        json_t *event = json_parse (line, length);
        const char *payload = json_get_string (event, "payload");
        size_t size = 0;
        uint8_t *data = payload ? mesh_base64_decode (payload, &size) : NULL;
        if (event)
            fn (arg, event, data, size);
        free (data);
        json_free (event);
        line = eol ? eol + 1 : NULL;
    }
    free (out);
    free (err);
    return rc == 0;
}
