/*  =========================================================================
    test_heads - the seqs of a node's own streams

    Seqs are handed out once each, in order, per stream; a seq given back
    right after it was taken is handed out again (a publish that could not
    reach the engine leaves no hole); a failed stream hands out none and
    numbers again after its log's real head once healthy; a waiter sees
    durability, failure and its timeout.
    ========================================================================= */

#include "shoal_heads.h"
#include "tap.h"

#include <pthread.h>
#include <unistd.h>

static uint64_t
s_take (shoal_heads_t *heads, const char *stream)
{
    shoal_heads_lock (heads);
    uint64_t seq = shoal_heads_take (heads, stream);
    shoal_heads_unlock (heads);
    return seq;
}

//  Takes a seq and gives it back under the same hold of the lock, as a
//  publish whose outbox push failed does.
static uint64_t
s_take_and_give_back (shoal_heads_t *heads, const char *stream)
{
    shoal_heads_lock (heads);
    uint64_t seq = shoal_heads_take (heads, stream);
    shoal_heads_untake (heads, stream, seq);
    shoal_heads_unlock (heads);
    return seq;
}

static void
test_take_and_untake (void)
{
    shoal_heads_t *heads = shoal_heads_new ();
    uint64_t a = s_take (heads, "orders");
    uint64_t b = s_take (heads, "orders");
    is_int ((long long) a, 1, "a new stream starts at seq 1");
    is_int ((long long) b, 2, "the next take is 2");
    is_int ((long long) s_take (heads, "audit"), 1, "each stream counts on its own");

    uint64_t given = s_take_and_give_back (heads, "orders");
    is_int ((long long) given, 3, "a take after 2 is 3");
    is_int ((long long) s_take (heads, "orders"), 3,
            "3 was given back, so the next publish gets 3: no hole");

    //  Only the last seq taken can go back: an older one is in the outbox
    //  already, and numbering must not hand it out twice.
    shoal_heads_lock (heads);
    shoal_heads_untake (heads, "orders", 2);
    shoal_heads_untake (heads, "orders", 0);
    shoal_heads_unlock (heads);
    is_int ((long long) s_take (heads, "orders"), 4,
            "giving back a seq that is not the last taken changes nothing");
    shoal_heads_destroy (&heads);
}

static void
test_failed_and_restart (void)
{
    shoal_heads_t *heads = shoal_heads_new ();
    //  The engine opened the log and found 10 events in it.
    shoal_heads_update (heads, "orders", 10, 10, false);
    uint64_t first = s_take_and_give_back (heads, "orders");
    is_int ((long long) first, 11, "numbering continues after the log's head");
    is_int ((long long) s_take (heads, "orders"), 11,
            "a seq given back at the restart point is handed out again");
    is_int ((long long) s_take (heads, "orders"), 12, "then 12");

    //  The engine got seq 12 but its log's head is 10 (an append failed
    //  behind it): numbering restarts after 10, and the stream never
    //  looks failed on the way.
    shoal_heads_renumber (heads, "orders", 10, 10, false);
    is_int (shoal_heads_wait (heads, "orders", 10, 0), 0, "renumbered, the stream is healthy");
    is_int ((long long) s_take (heads, "orders"), 11, "renumbered, the next take follows the head");
    is_int ((long long) s_take (heads, "orders"), 12, "and goes on from there");

    shoal_heads_update (heads, "orders", 12, 10, true);
    is_int ((long long) s_take (heads, "orders"), 0, "a failed stream hands out no seq");
    is_int ((long long) s_take_and_give_back (heads, "orders"), 0,
            "giving back the 0 of a failed stream is harmless");
    //  Back to healthy with 11 as the real head (12 never got in).
    shoal_heads_update (heads, "orders", 11, 11, false);
    is_int ((long long) s_take (heads, "orders"), 12,
            "once healthy, numbering restarts after the real head");
    shoal_heads_destroy (&heads);
}

typedef struct {
    shoal_heads_t *heads;
    int rc;
} s_waiter_t;

static void *
s_wait_for_5 (void *arg)
{
    s_waiter_t *waiter = (s_waiter_t *) arg;
    waiter->rc = shoal_heads_wait (waiter->heads, "orders", 5, 10000);
    return NULL;
}

static void
test_wait (void)
{
    shoal_heads_t *heads = shoal_heads_new ();
    shoal_heads_update (heads, "orders", 4, 4, false);
    is_int (shoal_heads_wait (heads, "orders", 4, 0), 0, "seq 4 is durable");
    is_int (shoal_heads_wait (heads, "orders", 5, 0), -1, "seq 5 is not, and 0 ms means no wait");
    is_int (shoal_heads_wait (heads, "orders", 5, 50), -1, "a wait that times out returns -1");

    s_waiter_t waiter = {heads, 99};
    pthread_t thread;
    pthread_create (&thread, NULL, s_wait_for_5, &waiter);
    usleep (50 * 1000);
    shoal_heads_update (heads, "orders", 5, 5, false);
    pthread_join (thread, NULL);
    is_int (waiter.rc, 0, "a waiter wakes when its seq becomes durable");

    shoal_heads_update (heads, "orders", 5, 5, true);
    double start = tap_now ();
    int rc = shoal_heads_wait (heads, "orders", 6, 10000);
    ok (rc == -1 && tap_now () - start < 5,
        "a wait on a failed stream returns -1 at once, not at its timeout");
    shoal_heads_close (heads);
    start = tap_now ();
    rc = shoal_heads_wait (heads, "orders", 1, 10000);
    ok (rc == -1 && tap_now () - start < 5, "after close every wait fails at once");
    shoal_heads_destroy (&heads);
}

int
main (void)
{
    plan_lazy ();
    test_take_and_untake ();
    test_failed_and_restart ();
    test_wait ();
    return done_testing ();
}
