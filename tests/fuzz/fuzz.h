/*  =========================================================================
    fuzz.h - what every shoal fuzz target shares

    A target is one function, LLVMFuzzerTestOneInput, that feeds arbitrary
    bytes to one input path of the library (the event decoder, the ROUTER
    request handler, the beacon parser, log recovery). It is built two
    ways from the same source:

        make fuzz     clang -fsanitize=fuzzer,address,undefined: libFuzzer
                      mutates inputs for a bounded time
        make check    gcc, with fuzz_main.c: every file of the target's
                      corpus (tests/fuzz/corpus/<target>/) is fed once, as
                      a TAP check, so a crash found once stays fixed

    Beyond "does not crash", a target checks what must hold for any input
    (a decoded event re-encodes to bytes that decode to the same event, a
    reply is a valid Response, ...) with FUZZ_CHECK, which aborts: both
    libFuzzer and the TAP driver report an abort as a failure.
    ========================================================================= */

#ifndef SHOAL_FUZZ_H_INCLUDED
#define SHOAL_FUZZ_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  An invariant of the target: a failure is a bug, reported like a crash.
#define FUZZ_CHECK(condition)                                                                      \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf (stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #condition);    \
            abort ();                                                                              \
        }                                                                                          \
    } while (0)

#endif
