/*  test_dedupe - the window of thin-client event ids: first seq wins, the
    oldest id goes when the window is full, removal from the index never
    loses another id (checked against a plain list over random work), and
    hostile ids that share their first half still find their entries. */

#include "shoal_dedupe.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static void
s_id (uint8_t *id, uint32_t n)
{
    memset (id, 0, SHOAL_DEDUPE_ID_SIZE);
    memcpy (id, &n, sizeof n);
    id[15] = (uint8_t) (n * 37);
}

int
main (void)
{
    plan_lazy ();
    ok (shoal_dedupe_new (0) == NULL, "a window of 0 ids is refused");
    ok (shoal_dedupe_lookup (NULL, (const uint8_t *) "0123456789abcdef") == 0
            && shoal_dedupe_insert (NULL, (const uint8_t *) "0123456789abcdef", 1) == 0,
        "no window (out of memory) remembers nothing and does not crash");

    shoal_dedupe_t *dedupe = shoal_dedupe_new (3);
    ok (dedupe != NULL, "new window of 3");
    uint8_t a[16], b[16], c[16], d[16];
    s_id (a, 1);
    s_id (b, 2);
    s_id (c, 3);
    s_id (d, 4);
    is_int (shoal_dedupe_lookup (dedupe, a), 0, "an unknown id has no seq");
    is_int (shoal_dedupe_insert (dedupe, a, 10), 0, "first insert is new");
    is_int (shoal_dedupe_insert (dedupe, a, 11), 1, "the same id again is a duplicate");
    is_int (shoal_dedupe_lookup (dedupe, a), 10, "the duplicate keeps the first seq");
    shoal_dedupe_insert (dedupe, b, 20);
    shoal_dedupe_insert (dedupe, c, 30);
    is_int (shoal_dedupe_size (dedupe), 3, "three ids remembered");
    shoal_dedupe_insert (dedupe, d, 40);
    is_int (shoal_dedupe_size (dedupe), 3, "a full window stays at its size");
    is_int (shoal_dedupe_lookup (dedupe, a), 0, "the oldest id was forgotten");
    ok (shoal_dedupe_lookup (dedupe, b) == 20 && shoal_dedupe_lookup (dedupe, c) == 30
            && shoal_dedupe_lookup (dedupe, d) == 40,
        "the newer ids are all still there with their seqs");
    shoal_dedupe_destroy (&dedupe);
    ok (dedupe == NULL, "destroy nulls the pointer");
    shoal_dedupe_destroy (&dedupe);
    ok (dedupe == NULL, "destroying it again is harmless");

    //  Random work against a reference: a list of the last W ids.
    srand (11);
    int windows[] = {1, 2, 7, 100, 1000};
    for (int w = 0; w < 5; w++) {
        int window = windows[w];
        dedupe = shoal_dedupe_new ((size_t) window);
        uint32_t *recent = (uint32_t *) calloc ((size_t) window, sizeof (uint32_t));
        int used = 0, errors = 0;
        uint32_t universe = (uint32_t) window * 3 + 5; //  many repeats
        for (int op = 0; op < 20000; op++) {
            uint32_t n = 1 + (uint32_t) rand () % universe;
            uint8_t id[16];
            s_id (id, n);
            int known = -1;
            for (int i = 0; i < used; i++)
                if (recent[i] == n)
                    known = i;
            uint64_t seq = shoal_dedupe_lookup (dedupe, id);
            if ((known >= 0) != (seq != 0) || (seq && seq != n * 10))
                errors++;
            if (shoal_dedupe_insert (dedupe, id, (uint64_t) n * 10) != (known >= 0))
                errors++;
            if (known < 0) {
                if (used == window) {
                    memmove (recent, recent + 1, (size_t) (window - 1) * sizeof (uint32_t));
                    used--;
                }
                recent[used++] = n;
            }
            if (shoal_dedupe_size (dedupe) != (size_t) used)
                errors++;
        }
        //  Every remembered id is found, every other one is not.
        for (uint32_t n = 1; n <= universe; n++) {
            uint8_t id[16];
            s_id (id, n);
            bool in = false;
            for (int i = 0; i < used; i++)
                in = in || recent[i] == n;
            if ((shoal_dedupe_lookup (dedupe, id) != 0) != in)
                errors++;
        }
        is_int (errors, 0, "window of %d: 20000 random inserts agree with a plain list", window);
        free (recent);
        shoal_dedupe_destroy (&dedupe);
    }

    //  Ids that differ only in their last byte (a client choosing them).
    dedupe = shoal_dedupe_new (200);
    int misses = 0;
    for (int round = 0; round < 3; round++)
        for (int n = 0; n < 256; n++) {
            uint8_t id[16] = {0};
            id[15] = (uint8_t) n;
            shoal_dedupe_insert (dedupe, id, (uint64_t) n + 1);
        }
    for (int n = 0; n < 256; n++) {
        uint8_t id[16] = {0};
        id[15] = (uint8_t) n;
        uint64_t seq = shoal_dedupe_lookup (dedupe, id);
        //  The last 200 inserted (56..255) are remembered.
        if ((n >= 56) != (seq == (uint64_t) n + 1))
            misses++;
    }
    is_int (misses, 0, "ids alike but for one byte: exactly the last 200 are remembered");
    shoal_dedupe_destroy (&dedupe);
    return done_testing ();
}
