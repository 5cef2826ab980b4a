/*
 * telemetry.h: what devices say about themselves, as JSON.
 *
 * The same fields arrive in outcome reports (POST /firmware/report) and in
 * the telemetry ESP32 fleets publish over MQTT, so one parser serves both:
 * integers within the bounds a device can send, and the reset reason as
 * ESP-IDF's esp_reset_reason_t number or its name ("ESP_RST_PANIC",
 * "panic").
 */
#ifndef TELEMETRY_H
#define TELEMETRY_H

#include <stddef.h>

#include <jansson.h>

#include "registry.h"

/*
 * Fill tel from the fields of object o that are present (uptime,
 * free_heap, rssi, reset_reason, battery, secure_version) and metrics
 * (TEL_METRICS_LEN bytes) from its "metrics", an object of named numbers,
 * as compact JSON. 0, or -1 with one line in msg naming the field that is
 * wrong.
 */
int telemetry_from_json(const json_t *o, struct telemetry *tel,
    char *metrics, char *msg, size_t msglen);

/* esp_reset_reason_t of a name, with or without "ESP_RST_"; -1 if none. */
int telemetry_reset_reason(const char *name);

#endif
