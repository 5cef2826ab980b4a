/* telemetry.c: device telemetry fields from JSON, one set of rules */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stages.h"
#include "telemetry.h"

/* ESP-IDF esp_reset_reason_t, in its order */
static const char *const reset_names[] = {"UNKNOWN", "POWERON", "EXT", "SW",
    "PANIC", "INT_WDT", "TASK_WDT", "WDT", "DEEPSLEEP", "BROWNOUT", "SDIO",
    "USB", "JTAG", "EFUSE", "PWR_GLITCH", "CPU_LOCKUP"};

static const struct {
	const char *name;
	unsigned bit;
	int64_t min, max;
	size_t offset;
} fields[] = {
	{"uptime", TEL_UPTIME, 0, INT64_C(1) << 53,
	    offsetof(struct telemetry, uptime)},
	{"free_heap", TEL_FREE_HEAP, 0, UINT32_MAX,
	    offsetof(struct telemetry, free_heap)},
	{"rssi", TEL_RSSI, -150, 20, offsetof(struct telemetry, rssi)},
	{"reset_reason", TEL_RESET_REASON, 0, 255,
	    offsetof(struct telemetry, reset_reason)},
	{"battery", TEL_BATTERY, 0, 100, offsetof(struct telemetry, battery)},
	{"secure_version", TEL_SECURE_VERSION, 0, UINT32_MAX,
	    offsetof(struct telemetry, secure_version)},
};

int
telemetry_reset_reason(const char *name)
{
	size_t i;

	if (strncasecmp(name, "ESP_RST_", 8) == 0)
		name += 8;
	for (i = 0; i < sizeof(reset_names) / sizeof(reset_names[0]); i++)
		if (strcasecmp(name, reset_names[i]) == 0)
			return (int)i;
	return -1;
}

/* metrics: an object of at most TEL_METRICS_MAX named numbers */
static int
metrics_from_json(const json_t *m, struct telemetry *tel, char *metrics,
    char *msg, size_t msglen)
{
	const char *name;
	json_t *v;
	char *text;
	size_t n;

	if (!json_is_object(m) || json_object_size(m) > TEL_METRICS_MAX) {
		snprintf(msg, msglen, "'metrics' must be an object of at most "
		    "%d numbers", TEL_METRICS_MAX);
		return -1;
	}
	json_object_foreach((json_t *)m, name, v) {
		for (n = 0; name[n] != '\0'; n++)
			if (n >= COMPARE_METRIC_MAX || !(isalnum(
			    (unsigned char)name[n]) || name[n] == '_'))
				break;
		if (n == 0 || name[n] != '\0' || !json_is_number(v) ||
		    fabs(json_number_value(v)) > 1e15) {
			snprintf(msg, msglen, "'metrics': each name 1 to %d of "
			    "A-Z a-z 0-9 _, each value a number within "
			    "+-1e15", COMPARE_METRIC_MAX);
			return -1;
		}
	}
	if (json_object_size(m) == 0)
		return 0;
	if ((text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS |
	    JSON_REAL_PRECISION(15))) == NULL ||
	    strlen(text) >= TEL_METRICS_LEN) {
		free(text);
		snprintf(msg, msglen, "'metrics' is too long");
		return -1;
	}
	memcpy(metrics, text, strlen(text) + 1);
	free(text);
	tel->present |= TEL_METRICS;
	return 0;
}

int
telemetry_from_json(const json_t *o, struct telemetry *tel, char *metrics,
    char *msg, size_t msglen)
{
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const json_t *v = json_object_get(o, fields[i].name);
		int64_t n;

		if (v == NULL || json_is_null(v))
			continue;
		if (fields[i].bit == TEL_RESET_REASON && json_is_string(v)) {
			if ((n = telemetry_reset_reason(json_string_value(v))) <
			    0) {
				snprintf(msg, msglen, "'reset_reason' must be "
				    "an esp_reset_reason_t number or name");
				return -1;
			}
		} else if (!json_is_integer(v) ||
		    (n = json_integer_value(v)) < fields[i].min ||
		    n > fields[i].max) {
			snprintf(msg, msglen, "'%s' must be an integer from "
			    "%lld to %lld", fields[i].name,
			    (long long)fields[i].min, (long long)fields[i].max);
			return -1;
		}
		*(int64_t *)(void *)((char *)tel + fields[i].offset) = n;
		tel->present |= fields[i].bit;
	}
	if (json_object_get(o, "metrics") != NULL && !json_is_null(
	    json_object_get(o, "metrics")))
		return metrics_from_json(json_object_get(o, "metrics"), tel,
		    metrics, msg, msglen);
	return 0;
}
