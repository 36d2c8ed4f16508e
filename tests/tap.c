/*  =========================================================================
    tap.c - a small Test Anything Protocol library for shoal's tests

    State is one counter set per process. The temporary directory belongs
    to the process that made it: a forked child that exits does not remove
    its parent's files.
    ========================================================================= */

#define _XOPEN_SOURCE 700
#include "tap.h"
#include "remove_tree.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int s_planned = -1;   //  announced count, -1 for a lazy plan
static int s_run = 0;        //  checks run so far
static int s_failed = 0;     //  checks failed so far
static char s_tmpdir[4096];  //  our temporary directory, "" until made
static pid_t s_tmpdir_owner; //  process that made it and removes it

void
plan (int count)
{
    s_planned = count;
    printf ("1..%d\n", count);
    fflush (stdout);
}

void
plan_lazy (void)
{
    s_planned = -1;
}

int
done_testing (void)
{
    if (s_planned < 0)
        printf ("1..%d\n", s_run);
    else if (s_run != s_planned)
        printf ("# planned %d checks but ran %d\n", s_planned, s_run);
    fflush (stdout);
    return (s_failed || (s_planned >= 0 && s_run != s_planned)) ? 1 : 0;
}

static bool
s_report (bool condition, const char *format, va_list args)
{
    s_run++;
    if (!condition)
        s_failed++;
    printf ("%s %d - ", condition ? "ok" : "not ok", s_run);
    vprintf (format, args);
    printf ("\n");
    fflush (stdout);
    return condition;
}

bool
ok (bool condition, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    s_report (condition, format, args);
    va_end (args);
    return condition;
}

bool
tap_is_int (const char *file, int line, long long got, long long expected, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    bool result = s_report (got == expected, format, args);
    va_end (args);
    if (!result)
        diag ("  %s:%d: got %lld, expected %lld", file, line, got, expected);
    return result;
}

bool
tap_is_str (const char *file, int line, const char *got, const char *expected, const char *format,
            ...)
{
    bool same = (got == NULL && expected == NULL)
                || (got != NULL && expected != NULL && strcmp (got, expected) == 0);
    va_list args;
    va_start (args, format);
    bool result = s_report (same, format, args);
    va_end (args);
    if (!result)
        diag ("  %s:%d: got \"%s\", expected \"%s\"", file, line, got ? got : "(null)",
              expected ? expected : "(null)");
    return result;
}

bool
tap_is_mem (const char *file, int line, const void *got, const void *expected, size_t size,
            const char *format, ...)
{
    bool same = (got == NULL && expected == NULL)
                || (got != NULL && expected != NULL && memcmp (got, expected, size) == 0);
    va_list args;
    va_start (args, format);
    bool result = s_report (same, format, args);
    va_end (args);
    if (!result && got && expected) {
        size_t at = 0;
        while (at < size && ((const uint8_t *) got)[at] == ((const uint8_t *) expected)[at])
            at++;
        diag ("  %s:%d: %zu bytes differ first at offset %zu", file, line, size, at);
    }
    else if (!result)
        diag ("  %s:%d: one side is NULL", file, line);
    return result;
}

void
diag (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    printf ("# ");
    vprintf (format, args);
    printf ("\n");
    va_end (args);
    fflush (stdout);
}

void
skip (int count, const char *format, ...)
{
    char reason[512];
    va_list args;
    va_start (args, format);
    vsnprintf (reason, sizeof reason, format, args);
    va_end (args);
    for (int i = 0; i < count; i++)
        printf ("ok %d # SKIP %s\n", ++s_run, reason);
    fflush (stdout);
}

void
bail (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    printf ("Bail out! ");
    vprintf (format, args);
    printf ("\n");
    va_end (args);
    fflush (stdout);
    exit (255);
}

int
tap_failures (void)
{
    return s_failed;
}

static void
s_remove_tmpdir (void)
{
    if (s_tmpdir[0] && getpid () == s_tmpdir_owner)
        remove_tree (s_tmpdir);
}

const char *
tap_tmpdir (void)
{
    if (!s_tmpdir[0]) {
        const char *base = getenv ("TMPDIR");
        snprintf (s_tmpdir, sizeof s_tmpdir, "%s/shoal-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp (s_tmpdir))
            bail ("cannot make a temporary directory in %s: %s", base ? base : "/tmp",
                  strerror (errno));
        s_tmpdir_owner = getpid ();
        atexit (s_remove_tmpdir);
    }
    return s_tmpdir;
}

const char *
tap_path (const char *name)
{
    static char path[4200];
    snprintf (path, sizeof path, "%s/%s", tap_tmpdir (), name);
    return path;
}

double
tap_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int
tap_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address;
    memset (&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (fd < 0 || bind (fd, (struct sockaddr *) &address, sizeof address)
        || getsockname (fd, (struct sockaddr *) &address, &length))
        bail ("cannot find a free port: %s", strerror (errno));
    int port = ntohs (address.sin_port);
    close (fd);
    return port;
}

bool
tap_contains (const char *text, const char *needle)
{
    return text && strstr (text, needle) != NULL;
}

int
tap_child (void (*fn) (void *), void *arg, char *text, size_t size)
{
    int out[2];
    if (pipe (out))
        bail ("pipe: %s", strerror (errno));
    fflush (NULL);
    pid_t child = fork ();
    if (child < 0)
        bail ("fork: %s", strerror (errno));
    if (child == 0) {
        dup2 (out[1], STDERR_FILENO);
        close (out[0]);
        fn (arg);
        _exit (0);
    }
    close (out[1]);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < size && (n = read (out[0], text + got, size - 1 - got)) > 0)
        got += (size_t) n;
    if (size)
        text[got] = 0;
    close (out[0]);
    int status = 0;
    waitpid (child, &status, 0);
    return status;
}
