/*
 * mqttmsg.h: the MQTT message formats, as pure functions.
 *
 * In: the telemetry JSON ESP32 fleets already publish
 *   {"device_id","firmware","uptime","free_heap","rssi","reset_reason",
 *    "battery","secure_version"}
 * on a topic such as devices/telemetry, or devices/<id>/status where the
 * device id may come from the topic. Out: a trigger for a device or group
 * and a rollout's state. No I/O here, so the formats are unit-tested
 * without a broker.
 */
#ifndef MQTTMSG_H
#define MQTTMSG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "otad.h"
#include "policy.h"
#include "registry.h"

/* A telemetry payload larger than this is refused unread. */
#define MQTTMSG_TELEMETRY_MAX 4096

struct telemetry_msg {
	char device[OTAD_ID_MAX + 1];
	char version[OTAD_VERSION_MAX + 1]; /* "" = not said */
	struct telemetry tel;
	char metrics[TEL_METRICS_LEN]; /* "" = none sent */
};

/*
 * The level of topic that the first '+' of filter matches, into out: 0.
 * 1 when filter has no '+' (its topics name no device); -1 when topic
 * does not fit it, or that level is empty or does not fit out (such a
 * topic names no device it can be trusted for).
 */
int mqttmsg_topic_level(const char *filter, const char *topic, char *out,
    size_t len);

/*
 * Parse a telemetry payload. topic_device is the id the topic names
 * (NULL if it names none): used when the payload has no device_id, and
 * it must agree when both are there. 0, or -1 with one line in msg; the
 * device id found so far (for rate-limited logging) stays in out->device.
 */
int mqttmsg_telemetry(const void *payload, size_t len,
    const char *topic_device, struct telemetry_msg *out, char *msg,
    size_t msglen);

/*
 * A trigger: offer (NULL: nothing to offer, a nudge says only "check
 * now") with its download URL under base_url ("https://host:port", no
 * trailing '/'). reason: "rollout", "forced" or "nudge"; nudge_id the
 * nudge's row (0 for none). Caller frees; NULL when out of memory.
 *
 * Its "id" is the same in every copy of one trigger (QoS 1 delivers at
 * least once, and one sent just before a crash is sent again after it),
 * so a device that acted on an id can ignore it: nudge-<row> for a nudge,
 * <rollout>-<release>-<stage> for an offer in a stage.
 */
char *mqttmsg_trigger(const struct offer *offer, const char *base_url,
    const char *reason, int64_t nudge_id);

/*
 * A rollout's state from a registry_rollout_states row, at now. Caller
 * frees; NULL when out of memory.
 */
char *mqttmsg_rollout_state(const json_t *row, int64_t now);

#endif
