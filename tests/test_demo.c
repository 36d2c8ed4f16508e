/*  test_demo - `./quickstart demo` as CI runs it: a short run that must
    show the three nodes and the shop saga's four services, order events
    flowing, each node's status, the order view with every order settled
    and the money balanced, and leave no process and no directory behind;
    then a run stopped by Ctrl-C (SIGINT to its process group, as a
    terminal sends it) that must clean up too.

    The demo uses only loopback (interface lo, a mesh name of its own) and
    the binaries of this build tree (SHOAL_BIN_DIR, --no-build). */

#include "mesh_util.h"
#include "tap.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_quickstart[4200];
static char s_bin_env[4300];
static char s_tmp_env[4300];

static int
s_count (const char *text, const char *needle)
{
    int count = 0;
    for (const char *p = text; p && (p = strstr (p, needle)); p += strlen (needle))
        count++;
    return count;
}

//  The demo's data directory, from its "throwaway data directories in" line.
static void
s_demo_dir (const char *out, char *dir, size_t size)
{
    dir[0] = 0;
    const char *at = out ? strstr (out, "throwaway data directories in ") : NULL;
    if (at) {
        at += strlen ("throwaway data directories in ");
        size_t length = strcspn (at, "\n");
        snprintf (dir, size, "%.*s", (int) length, at);
    }
}

static void
test_short_run (void)
{
    const char *argv[] = {"/bin/bash", s_quickstart, "demo", "--duration", "4", "--no-build", NULL};
    const char *env[] = {s_bin_env, s_tmp_env, NULL};
    char *out = NULL, *err = NULL;
    int rc = mesh_run (argv, env, NULL, 120, &out, &err);
    is_int (rc, 0, "./quickstart demo --duration 4 exits 0");
    if (rc != 0)
        diag ("stderr: %s", err);
    is_int (s_count (out, "  shoald: node "), 3, "it starts three nodes");
    ok (tap_contains (out, "loopback beacon"), "on the loopback beacon");
    ok (tap_contains (out, "found each other") && s_count (out, "connected") >= 2,
        "the nodes discover each other");
    ok (s_count (out, "  sub@alpha | ") >= 6, "events flow to the subscriber");
    ok (tap_contains (out, "sub@alpha | ") && tap_contains (out, "/orders/1 OrderPlaced"),
        "the subscriber shows readable events");
    ok (tap_contains (out, "status of alpha") && tap_contains (out, "status of beta")
            && tap_contains (out, "status of gamma"),
        "each node's status is shown");
    ok (tap_contains (out, "every event arrived once, in seq order per origin"),
        "every published event reached the subscriber, in order");
    ok (tap_contains (out, "  orders: node ") && tap_contains (out, "  payments: node ")
            && tap_contains (out, "  inventory: node ")
            && tap_contains (out, "  order-view: node "),
        "the shop's services start: orders, payments, inventory, order-view");
    ok (s_count (out, "  view | o-") >= 3 && tap_contains (out, "  view | o-1 "),
        "the order view is shown, from o-1 on");
    ok (tap_contains (out, "every order ended in exactly one terminal state"),
        "the saga settles every order");
    ok (tap_contains (out,
                      "money balances: charged - refunded = the totals of the confirmed orders"),
        "the money balances");
    ok (tap_contains (out, "OrderConfirmed") || tap_contains (out, "OrderCancelled"),
        "the subscriber shows the saga closing orders");
    char dir[4200];
    s_demo_dir (out, dir, sizeof dir);
    ok (*dir && tap_contains (out, "removed ") && access (dir, F_OK) != 0,
        "its data directories are removed");
    ok (*dir && !mesh_process_with (dir), "no process of the demo is left");
    free (out);
    free (err);
}

static void
test_interrupted (void)
{
    const char *argv[] = {"/bin/bash", s_quickstart, "demo", "--duration",
                          "120",       "--no-build", NULL};
    const char *env[] = {s_bin_env, s_tmp_env, NULL};
    mesh_proc_t *demo = mesh_start (argv, env, true);
    char line[4096];
    bool flowing = mesh_wait_line (demo, "  sub@alpha | ", line, sizeof line, 30) == 0;
    ok (flowing, "a long demo run shows events");
    char dir[4200];
    s_demo_dir (demo->out, dir, sizeof dir);
    mesh_signal (demo, SIGINT, true);
    int rc = mesh_wait (demo, 60);
    is_int (rc, 130, "Ctrl-C (SIGINT to its process group) stops the demo with status 130");
    ok (tap_contains (demo->out, "demo: interrupted") && tap_contains (demo->out, "removed "),
        "it says it was interrupted and cleans up");
    ok (*dir && access (dir, F_OK) != 0, "its data directories are removed after Ctrl-C");
    ok (*dir && !mesh_process_with (dir), "no process of the demo is left after Ctrl-C");
    mesh_stop (&demo);
}

int
main (void)
{
    plan_lazy ();
    const char *srcdir = getenv ("SHOAL_SRCDIR");
    const char *builddir = getenv ("SHOAL_BUILDDIR");
    snprintf (s_quickstart, sizeof s_quickstart, "%s/quickstart", srcdir && *srcdir ? srcdir : ".");
    char *bin = realpath (builddir && *builddir ? builddir : ".", NULL);
    snprintf (s_bin_env, sizeof s_bin_env, "SHOAL_BIN_DIR=%s/nodes", bin ? bin : ".");
    free (bin);
    snprintf (s_tmp_env, sizeof s_tmp_env, "TMPDIR=%s", tap_tmpdir ());

    char *err = NULL;
    const char *bad[] = {"/bin/bash", s_quickstart, "demo", "--duration",
                         "soon",      "--no-build", NULL};
    int rc = mesh_run (bad, (const char *[]){s_bin_env, NULL}, NULL, 30, NULL, &err);
    ok (rc == 2 && tap_contains (err, "--duration"), "demo --duration with a bad value exits 2");
    free (err);
    test_short_run ();
    test_interrupted ();
    return done_testing ();
}
