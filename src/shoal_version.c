/*  shoal_version - the version of the library that is linked at run time,
    so a program can tell it from the headers it was compiled against. */

#include "shoal.h"

void
shoal_version (int *major, int *minor, int *patch)
{
    if (major)
        *major = SHOAL_VERSION_MAJOR;
    if (minor)
        *minor = SHOAL_VERSION_MINOR;
    if (patch)
        *patch = SHOAL_VERSION_PATCH;
}
