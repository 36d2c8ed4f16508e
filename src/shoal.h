/*  =========================================================================
    shoal.h - the public API of libshoal, a brokerless event mesh

    Include this one header; it brings in every public class. Compare
    SHOAL_VERSION against SHOAL_MAKE_VERSION (major, minor, patch) to test
    for features at compile time, and shoal_version () at run time.
    ========================================================================= */

#ifndef SHOAL_H_INCLUDED
#define SHOAL_H_INCLUDED

#include "shoal_version.h"
#include "shoal_error.h"
#include "shoal_event.h"
#include "shoal_io.h"
#include "shoal_log.h"
#include "shoal_store.h"
#include "shoal_node.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Version of the library linked at run time, as major, minor and patch.
void shoal_version (int *major, int *minor, int *patch);

#ifdef __cplusplus
}
#endif

#endif
