/*  =========================================================================
    fuzz_main - replays a fuzz target's corpus as a TAP test (make check)

    Built with the ordinary compiler and no libFuzzer: main feeds each file
    of tests/fuzz/corpus/<FUZZ_TARGET>/ (under $SHOAL_SRCDIR, or the
    directory given as the first argument) to LLVMFuzzerTestOneInput, in
    name order, one "ok" per file. An input that crashes or breaks a
    FUZZ_CHECK aborts the program, which fails the test; so the seeds and
    every crash input kept in the corpus are regression tests.
    ========================================================================= */

#include "fuzz.h"
#include "tap.h"

#include <dirent.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FUZZ_TARGET
#error "FUZZ_TARGET must name the target's corpus directory"
#endif

static int
s_compare (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

//  Reads a whole file; NULL on failure. Caller owns the buffer.
static uint8_t *
s_slurp (const char *path, size_t *size_p)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return NULL;
    uint8_t *data = NULL;
    size_t size = 0, alloc = 0;
    for (;;) {
        if (size == alloc) {
            alloc = alloc ? 2 * alloc : 4096;
            uint8_t *bigger = (uint8_t *) realloc (data, alloc);
            if (!bigger) {
                free (data);
                fclose (file);
                return NULL;
            }
            data = bigger;
        }
        size_t got = fread (data + size, 1, alloc - size, file);
        size += got;
        if (got == 0)
            break;
    }
    bool failed = ferror (file);
    fclose (file);
    if (failed) {
        free (data);
        return NULL;
    }
    *size_p = size;
    return data;
}

int
main (int argc, char *argv[])
{
    char dir[4096];
    if (argc > 1)
        snprintf (dir, sizeof dir, "%s", argv[1]);
    else {
        const char *srcdir = getenv ("SHOAL_SRCDIR");
        snprintf (dir, sizeof dir, "%s/tests/fuzz/corpus/%s", srcdir ? srcdir : ".", FUZZ_TARGET);
    }
    DIR *handle = opendir (dir);
    if (!handle)
        bail ("cannot open the corpus %s", dir);
    char **names = NULL;
    size_t count = 0, alloc = 0;
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        if (entry->d_name[0] == '.')
            continue;
        if (count == alloc) {
            alloc = alloc ? 2 * alloc : 64;
            names = (char **) realloc (names, alloc * sizeof (char *));
            if (!names)
                bail ("out of memory");
        }
        names[count++] = strdup (entry->d_name);
    }
    closedir (handle);
    if (count == 0)
        bail ("the corpus %s is empty", dir);
    qsort (names, count, sizeof (char *), s_compare);
    plan ((int) count);
    for (size_t i = 0; i < count; i++) {
        char path[4200];
        snprintf (path, sizeof path, "%s/%s", dir, names[i]);
        size_t size = 0;
        uint8_t *data = s_slurp (path, &size);
        if (!data) {
            ok (false, "%s: cannot read it", names[i]);
            free (names[i]);
            continue;
        }
        LLVMFuzzerTestOneInput (data, size);
        ok (true, "%s/%s (%zu bytes) handled", FUZZ_TARGET, names[i], size);
        free (data);
        free (names[i]);
    }
    free (names);
    return done_testing ();
}
