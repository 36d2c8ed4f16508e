/*  =========================================================================
    tap.h - a small Test Anything Protocol library for shoal's tests

    Each test program prints a plan ("1..N"), then one "ok" or "not ok"
    line per check, and exits non-zero when a check failed or the count
    differs from the plan. automake's tap-driver.sh reads the output.

        plan (3);               or plan_lazy () and done_testing () at the end
        ok (x > 0, "x is positive");
        is_int (got, 42, "the answer");
        is_str (name, "orders", "stream name kept");
        is_mem (buf, expect, 16, "id bytes");
        diag ("seed %u", seed);
        skip (2, "protoc not installed");
        bail ("cannot start: %s", strerror (errno));

    tap_tmpdir () gives a directory of the test's own, made on first use
    and removed with everything in it when the program exits.
    ========================================================================= */

#ifndef SHOAL_TAP_H_INCLUDED
#define SHOAL_TAP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define TAP_PRINTF(a, b) __attribute__ ((format (printf, a, b)))
#define TAP_NORETURN __attribute__ ((noreturn))
#else
#define TAP_PRINTF(a, b)
#define TAP_NORETURN
#endif

//  Announce the number of checks to come.
void plan (int count);
//  Announce that the plan is printed at the end by done_testing ().
void plan_lazy (void);
//  Print the plan for a lazy plan; returns the exit status for main.
int done_testing (void);

//  One check each; all return the truth of the check.
bool ok (bool condition, const char *format, ...) TAP_PRINTF (2, 3);
#define is_int(got, expected, ...)                                                                 \
    tap_is_int (__FILE__, __LINE__, (long long) (got), (long long) (expected), __VA_ARGS__)
#define is_str(got, expected, ...) tap_is_str (__FILE__, __LINE__, (got), (expected), __VA_ARGS__)
#define is_mem(got, expected, size, ...)                                                           \
    tap_is_mem (__FILE__, __LINE__, (got), (expected), (size), __VA_ARGS__)

bool tap_is_int (const char *file, int line, long long got, long long expected, const char *format,
                 ...) TAP_PRINTF (5, 6);
bool tap_is_str (const char *file, int line, const char *got, const char *expected,
                 const char *format, ...) TAP_PRINTF (5, 6);
bool tap_is_mem (const char *file, int line, const void *got, const void *expected, size_t size,
                 const char *format, ...) TAP_PRINTF (6, 7);

//  A comment line ("# ..."), shown by the driver in the log.
void diag (const char *format, ...) TAP_PRINTF (1, 2);
//  Counts count checks as skipped, with the reason.
void skip (int count, const char *format, ...) TAP_PRINTF (2, 3);
//  Stops the whole test run: "Bail out!" and exit status 255.
void bail (const char *format, ...) TAP_PRINTF (1, 2) TAP_NORETURN;

//  Number of failed checks so far.
int tap_failures (void);

//  The test's own temporary directory, removed at exit. Never NULL (bails).
const char *tap_tmpdir (void);

//  A path inside tap_tmpdir (); returns a static buffer reused by the next call.
const char *tap_path (const char *name);

//  A TCP port free on 127.0.0.1 now, for a node that must keep its
//  endpoint across a restart. Bails when none can be had.
int tap_free_port (void);

//  Seconds since an arbitrary start, monotonic; for bounding loops.
double tap_now (void);

//  Runs fn (arg) in a forked child, for code that should end the process
//  (an abort): what the child writes to stderr goes into text (size bytes,
//  NUL-terminated). Returns the child's wait status; a child whose fn
//  returns exits 0.
int tap_child (void (*fn) (void *), void *arg, char *text, size_t size);

//  True when text (may be NULL) holds needle.
bool tap_contains (const char *text, const char *needle);

#endif
