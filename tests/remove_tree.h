/*  =========================================================================
    remove_tree.h - removes a directory and everything under it

    The one copy that the tests (tap.c), the fuzzers and the benchmarks
    share. Header-only, static: each program includes it and links
    nothing more (the libFuzzer builds compile a single source file).
    ========================================================================= */

#ifndef SHOAL_REMOVE_TREE_H_INCLUDED
#define SHOAL_REMOVE_TREE_H_INCLUDED

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int s_remove_tree_failures; //  entries remove_tree could not remove

static inline int
s_remove_tree_entry (const char *path, const struct stat *info, int flag, struct FTW *ftw)
{
    (void) info;
    (void) flag;
    (void) ftw;
    if (remove (path) != 0 && errno != ENOENT) {
        fprintf (stderr, "cannot remove %s: %s\n", path, strerror (errno));
        s_remove_tree_failures++;
    }
    return 0; //  go on with the rest
}

//  Removes path and everything under it, without following symbolic
//  links; a missing path is already removed. 0, or -1 when some entry
//  could not be removed (each is told on stderr).
static inline int
remove_tree (const char *path)
{
    s_remove_tree_failures = 0;
    if (access (path, F_OK) != 0)
        return 0;
    nftw (path, s_remove_tree_entry, 16, FTW_DEPTH | FTW_PHYS);
    return s_remove_tree_failures ? -1 : 0;
}

#endif
