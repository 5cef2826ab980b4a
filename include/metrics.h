/*
 * metrics.h: process-wide counters, rendered in the Prometheus text format.
 * Every function is thread-safe (relaxed atomics: counters need no order).
 */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum metric {
	M_CHECKS,        /* update checks answered with a decision */
	M_OFFERS,        /* checks answered with an image */
	M_REPORTS,       /* outcome reports recorded */
	M_BYTES_SERVED,  /* bytes of images whose sending completed */
	M_RECORD_ERRORS, /* records the writer could not store */
	M_TRIGGERS,      /* MQTT triggers the broker took */
	M_TELEMETRY,     /* MQTT telemetry messages recorded */
	M_TELEMETRY_BAD, /* MQTT telemetry messages refused */
	M_MQTT_CONNECTS, /* connections to the broker made */
	M_AUTH_FAILURES, /* device requests refused for their token */
	M_RECORDS_DROPPED, /* check-in records dropped: the queue was full */
	M_CONNECTIONS_REFUSED, /* over max_connections_per_address */
	M_CONNECTIONS_SLOW, /* cut: a request took over request_timeout */
	M_LATEST,        /* requests to /firmware/latest/<product> */
	M_LATEST_OFFERS, /* ... answered with an image */
	M_DELTA_URL,     /* requests to /firmware/delta/<device> */
	M_BREAK_GLASS,   /* starts without the second approval */
	M_PULL_CHECKS,   /* manifests asked for by pull-OTA libraries */
	M_PULL_OFFERS,   /* ... listing an update for the device */
	M_PULL_INFERRED_ROLLBACKS, /* images fetched again after delivery */
	M_COUNT
};

void metrics_add(enum metric m, uint64_t n);
/* Count one response with this HTTP status. */
void metrics_status(unsigned status);
uint64_t metrics_get(enum metric m);

/*
 * Gauges read at render time: requests in flight and the writer's queue.
 * Set once at start-up, before any render.
 */
void metrics_set_gauges(size_t (*queue_depth)(void *), void *arg,
    long (*in_flight)(void));

/* What the device rows kept in memory say at render time. */
struct metrics_device_rows {
	size_t devices;
	uint64_t hits, misses; /* device lookups answered from memory, not */
};
/* rows: 0 and the figures, or -1 when none are kept (not shown) */
void metrics_set_device_rows(int (*rows)(void *, struct metrics_device_rows *),
    void *arg);

/* MQTT connection state: -1 off (not shown), 0 down, 1 connected. */
void metrics_set_mqtt(int state);

/* Whether this node leads (otad_leader). */
void metrics_set_leader(int leading);

/*
 * The fleet's gauges, from registry_fleet_gauges (rendered now, shown
 * until the next call; NULL forgets them). Thread-safe.
 */
void metrics_set_fleet(const json_t *gauges);

/* The whole exposition; caller frees. NULL when out of memory. */
char *metrics_render(void);

#endif
