/*
 * simulate.h: a rollout rehearsed before it starts. The live fleet is
 * copied (releases, rollouts, devices with their groups, chips, versions
 * and batteries as last seen) into a scratch registry; the rollout is
 * created and started there, and in simulated time its devices poll at
 * random phases of a poll interval, the real policy answers them and the
 * real controller judges their outcomes (failures and crashes at the
 * rates given) and opens, halts or completes the stages. The registry
 * itself is only read.
 */
#ifndef SIMULATE_H
#define SIMULATE_H

#include <stdint.h>

#include <jansson.h>

#include "catalog.h"
#include "otad.h"
#include "registry.h"

struct rehearsal {
	const struct catalog_rollout *plan; /* as rollout create takes it */
	double failure_rate;    /* offered devices that roll back, 0..1 */
	double crash_rate;      /* updated devices that crash after, 0..1 */
	int64_t poll_s;         /* each device polls once per this */
	int64_t horizon_s;      /* simulated time at most */
	uint64_t seed;          /* the same seed, the same rehearsal */
	int64_t offline_after;  /* the controller's, as configured */
};

/*
 * Rehearse plan on a copy of reg's fleet. *result: devices (copied),
 * state the rollout ends in (completed, halted, or active when the
 * horizon came first), reason, ended_after (simulated seconds), offered
 * (devices offered the release), and stages (each with opened_after,
 * targeted, offered and outcomes, as rollout status counts them).
 */
enum otad_err simulate_rollout(struct registry *reg,
    const struct rehearsal *r, json_t **result, char *why, size_t whylen);

#endif
