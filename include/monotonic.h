/*
 * monotonic.h: the clock for intervals (timeouts, how long something
 * took), which wall-clock changes do not move.
 */
#ifndef MONOTONIC_H
#define MONOTONIC_H

/* CLOCK_MONOTONIC in milliseconds. */
long long monotonic_ms(void);

#endif
