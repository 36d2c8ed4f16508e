/*  shoal_clock - the deadline of a timed wait on a condition variable.
    Condition variables here use CLOCK_MONOTONIC (pthread_condattr_setclock),
    so wall-clock jumps never stretch or cut a wait. Private to the library. */

#ifndef SHOAL_CLOCK_H_INCLUDED
#define SHOAL_CLOCK_H_INCLUDED

#include <time.h>

//  CLOCK_MONOTONIC now plus timeout_ms (now when timeout_ms <= 0).
static inline struct timespec
shoal_deadline_after (int timeout_ms)
{
    struct timespec deadline;
    clock_gettime (CLOCK_MONOTONIC, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    return deadline;
}

#endif
