/*
 * mqtt.h: the hybrid push model over MQTT (libmosquitto).
 *
 * One thread owns the broker connection. Out, QoS 1:
 *  - <prefix>/<device>/trigger when a device becomes eligible for a
 *    release (its stage opened, a publish, a forced release) and on
 *    otactl device nudge; <prefix>/group/<group>/trigger when a group
 *    stage opens; optionally retained, and the retained copy removed once
 *    the device runs the version;
 *  - <prefix>/rollout/<id>/state (retained) when a rollout changes state
 *    or stage, halts with their reason;
 *  - <prefix>/server/state: "online", or "offline" (also the will).
 * In: telemetry on the configured topics, recorded like a check-in
 * through the registry's writer queue.
 *
 * What is owed is derived from the registry (the trigger table and the
 * rollouts) whenever the broker connection is up, so a broker outage or a
 * restart queues nothing in memory and loses nothing: a trigger counts
 * as sent once the broker acknowledged it and that is on disk. HTTP never
 * waits for any of this.
 */
#ifndef MQTT_H
#define MQTT_H

#include "conf.h"
#include "otad.h"
#include "registry.h"
#include "rollout.h"

struct mqtt;

struct mqtt_options {
	const struct conf *conf; /* the mqtt_* keys and device_auth */
	const char *base_url;    /* where devices download, no trailing '/' */
	const char *db_path;
	struct registry *reg;    /* records go through its writer */
	struct rollout *rollout; /* what is offered now */
	/*
	 * One node of several (the registry is PostgreSQL): telemetry comes
	 * through a shared subscription (each message to one node), and the
	 * node's state goes on a topic of its own.
	 */
	int clustered;
};

/*
 * Start the thread (it connects, and reconnects with backoff, on its
 * own). With mqtt_host empty *out is NULL and nothing runs. Fails only
 * on configuration it cannot use (unreadable password file, TLS files).
 */
enum otad_err mqtt_start(const struct mqtt_options *o, struct mqtt **out,
    char *why, size_t whylen);

/* Whether telemetry from a device never seen may register it. */
void mqtt_set_device_auth(struct mqtt *m, int token);

/* Say "offline", disconnect, stop the thread; NULL-safe. */
void mqtt_stop(struct mqtt *m);

#endif
