/* mqttmsg and telemetry: what comes in over MQTT, what goes out */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqttmsg.h"
#include "telemetry.h"

static void
test_topic_level(void **state)
{
	char id[65];

	(void)state;
	assert_int_equal(mqttmsg_topic_level("devices/+/status",
	    "devices/esp-7/status", id, sizeof(id)), 0);
	assert_string_equal(id, "esp-7");
	assert_int_equal(mqttmsg_topic_level("+/telemetry", "abc/telemetry",
	    id, sizeof(id)), 0);
	assert_string_equal(id, "abc");
	/* no '+', or a topic of another shape */
	assert_int_equal(mqttmsg_topic_level("devices/telemetry",
	    "devices/telemetry", id, sizeof(id)), 1);
	assert_int_equal(mqttmsg_topic_level("devices/+/status",
	    "other/x/status", id, sizeof(id)), -1);
	assert_int_equal(mqttmsg_topic_level("devices/+/status", "devices",
	    id, sizeof(id)), -1);
	assert_int_equal(mqttmsg_topic_level("devices/+/status",
	    "devices//status", id, sizeof(id)), -1);
	assert_int_equal(mqttmsg_topic_level("site/#", "site/a/b", id,
	    sizeof(id)), 1);
	/* a level longer than the buffer is refused, not cut */
	assert_int_equal(mqttmsg_topic_level("d/+", "d/abcdefgh", id, 4), -1);
}

static int
parse(const char *payload, const char *topic_device, struct telemetry_msg *t,
    char *why)
{
	return mqttmsg_telemetry(payload, strlen(payload), topic_device, t,
	    why, 200);
}

static void
test_telemetry_fields(void **state)
{
	struct telemetry_msg t;
	char why[200];

	(void)state;
	assert_int_equal(parse("{\"device_id\":\"esp-1\",\"firmware\":\"1.4.2\","
	    "\"uptime\":3600,\"free_heap\":123456,\"rssi\":-67,"
	    "\"reset_reason\":\"ESP_RST_TASK_WDT\",\"battery\":81,"
	    "\"secure_version\":2}", NULL, &t, why), 0);
	assert_string_equal(t.device, "esp-1");
	assert_string_equal(t.version, "1.4.2");
	assert_int_equal(t.tel.present, TEL_UPTIME | TEL_FREE_HEAP | TEL_RSSI |
	    TEL_RESET_REASON | TEL_BATTERY | TEL_SECURE_VERSION);
	assert_int_equal(t.tel.uptime, 3600);
	assert_int_equal(t.tel.free_heap, 123456);
	assert_int_equal(t.tel.rssi, -67);
	assert_int_equal(t.tel.reset_reason, 6);
	assert_int_equal(t.tel.battery, 81);
	assert_int_equal(t.tel.secure_version, 2);

	/* the id from the topic; no firmware is fine; numeric reasons */
	assert_int_equal(parse("{\"uptime\":5,\"reset_reason\":4}", "esp-2", &t,
	    why), 0);
	assert_string_equal(t.device, "esp-2");
	assert_string_equal(t.version, "");
	assert_int_equal(t.tel.present, TEL_UPTIME | TEL_RESET_REASON);
	assert_int_equal(t.tel.reset_reason, 4);
	/* "version" is taken for "firmware", null for absent */
	assert_int_equal(parse("{\"device_id\":\"a\",\"version\":\"2.0\","
	    "\"rssi\":null}", NULL, &t, why), 0);
	assert_string_equal(t.version, "2.0");
	assert_int_equal(t.tel.present, 0);
	/* metrics: named numbers, kept as compact JSON with sorted keys */
	assert_int_equal(parse("{\"device_id\":\"a\",\"metrics\":{\"z_q\":1,"
	    "\"a\":2.5,\"n\":-3}}", NULL, &t, why), 0);
	assert_int_equal(t.tel.present, TEL_METRICS);
	assert_string_equal(t.metrics, "{\"a\":2.5,\"n\":-3,\"z_q\":1}");
	assert_int_equal(parse("{\"device_id\":\"a\",\"metrics\":{}}", NULL,
	    &t, why), 0);
	assert_int_equal(t.tel.present, 0);
	assert_int_equal(telemetry_reset_reason("panic"), 4);
	assert_int_equal(telemetry_reset_reason("ESP_RST_BROWNOUT"), 9);
	assert_int_equal(telemetry_reset_reason("ESP_RST_"), -1);
	assert_int_equal(telemetry_reset_reason("HAMMER"), -1);
}

static void
expect_refused(const char *payload, const char *topic_device,
    const char *want, const char *device)
{
	struct telemetry_msg t;
	char why[200];

	assert_int_equal(parse(payload, topic_device, &t, why), -1);
	if (strstr(why, want) == NULL)
		fail_msg("'%s': got '%s', want '%s'", payload, why, want);
	/* what the log is keyed by: the id found, if any */
	assert_string_equal(t.device, device);
}

static void
test_telemetry_refused(void **state)
{
	char *huge;

	(void)state;
	expect_refused("", NULL, "not JSON", "");
	expect_refused("not json", NULL, "not JSON", "");
	expect_refused("{\"device_id\":\"a\",\"device_id\":\"b\"}", NULL,
	    "not JSON", "");
	expect_refused("[1,2]", NULL, "not a JSON object", "");
	expect_refused("{\"firmware\":\"1.0\"}", NULL, "no device id", "");
	expect_refused("{\"device_id\":5}", NULL, "'device_id'", "");
	expect_refused("{\"device_id\":\"a\",\"metrics\":7}", NULL,
	    "'metrics'", "a");
	expect_refused("{\"device_id\":\"a\",\"metrics\":{\"x\":true}}",
	    NULL, "'metrics'", "a");
	expect_refused("{\"device_id\":\"a\",\"metrics\":{\"x y\":1}}",
	    NULL, "'metrics'", "a");
	expect_refused("{\"device_id\":\"../etc\"}", NULL, "'device_id'", "");
	expect_refused("{\"device_id\":\"a\",\"firmware\":\"has space\"}", NULL,
	    "'firmware'", "a");
	expect_refused("{\"device_id\":\"a\",\"firmware\":7}", NULL,
	    "'firmware'", "a");
	expect_refused("{\"device_id\":\"a\",\"uptime\":\"long\"}", NULL,
	    "'uptime' must be an integer", "a");
	expect_refused("{\"device_id\":\"a\",\"uptime\":-1}", NULL,
	    "'uptime' must be an integer", "a");
	expect_refused("{\"device_id\":\"a\",\"rssi\":99999}", NULL,
	    "'rssi' must be an integer from -150 to 20", "a");
	expect_refused("{\"device_id\":\"a\",\"battery\":101}", NULL,
	    "'battery'", "a");
	expect_refused("{\"device_id\":\"a\",\"free_heap\":1.5}", NULL,
	    "'free_heap'", "a");
	expect_refused("{\"device_id\":\"a\",\"reset_reason\":\"HAMMER\"}",
	    NULL, "'reset_reason'", "a");
	expect_refused("{\"device_id\":\"b\"}", "a", "differs from the topic",
	    "a");
	/* large: refused before it is parsed */
	huge = malloc(MQTTMSG_TELEMETRY_MAX + 2);
	assert_non_null(huge);
	memset(huge, ' ', MQTTMSG_TELEMETRY_MAX + 1);
	huge[0] = '{';
	huge[MQTTMSG_TELEMETRY_MAX] = '}';
	huge[MQTTMSG_TELEMETRY_MAX + 1] = '\0';
	expect_refused(huge, "big", "over the 4096 allowed", "big");
	free(huge);
	/* binary garbage with a NUL inside */
	{
		struct telemetry_msg t;
		char why[200];

		assert_int_equal(mqttmsg_telemetry("{\"device_id\0\":1}", 17,
		    NULL, &t, why, sizeof(why)), -1);
	}
}

static void
test_trigger(void **state)
{
	struct offer o;
	json_t *j;
	char *s;

	(void)state;
	memset(&o, 0, sizeof(o));
	o.rollout_id = 3;
	o.release_id = 9;
	snprintf(o.version, sizeof(o.version), "2.0.0");
	memset(o.sha256, 'a', 64);
	memset(o.md5, 'b', 32);
	o.size = 1286112;
	o.forced = 1;
	o.stage = 2;
	s = mqttmsg_trigger(&o, "https://ota.example.com", "forced", 0);
	assert_non_null(s);
	j = json_loads(s, 0, NULL);
	free(s);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "update")));
	assert_string_equal(json_string_value(json_object_get(j, "version")),
	    "2.0.0");
	assert_string_equal(json_string_value(json_object_get(j, "url")),
	    "https://ota.example.com/firmware/artifacts/"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(json_integer_value(json_object_get(j, "size")),
	    1286112);
	assert_true(json_is_true(json_object_get(j, "forced")));
	assert_int_equal(json_integer_value(json_object_get(j, "rollout")), 3);
	assert_null(json_object_get(j, "signature")); /* unsigned */
	/* every copy of this trigger carries the same id */
	assert_string_equal(json_string_value(json_object_get(j, "id")),
	    "3-9-2");
	json_decref(j);
	/* a nudge with nothing to offer says only that, and which nudge */
	s = mqttmsg_trigger(NULL, "https://x", "nudge", 17);
	assert_string_equal(s, "{\"update\":false,\"reason\":\"nudge\","
	    "\"id\":\"nudge-17\"}");
	free(s);
}

static void
test_rollout_state(void **state)
{
	json_t *row, *j;
	char *s;

	(void)state;
	row = json_pack("{s:i,s:s,s:s,s:s,s:i,s:i,s:i,s:s}", "id", 4,
	    "version", "2.0.0", "product", "", "state", "halted", "staged", 1,
	    "stage", 1, "stages", 3, "reason",
	    "stage 1: rollback rate 0.67 > 0.05 (2 of 3)");
	s = mqttmsg_rollout_state(row, 1700000000);
	json_decref(row);
	j = json_loads(s, 0, NULL);
	free(s);
	assert_int_equal(json_integer_value(json_object_get(j, "rollout")), 4);
	assert_string_equal(json_string_value(json_object_get(j, "state")),
	    "halted");
	assert_string_equal(json_string_value(json_object_get(j, "reason")),
	    "stage 1: rollback rate 0.67 > 0.05 (2 of 3)");
	assert_int_equal(json_integer_value(json_object_get(j, "stages")), 3);
	assert_null(json_object_get(j, "product")); /* "" is left out */
	assert_int_equal(json_integer_value(json_object_get(j, "at")),
	    1700000000);
	json_decref(j);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topic_level),
		cmocka_unit_test(test_telemetry_fields),
		cmocka_unit_test(test_telemetry_refused),
		cmocka_unit_test(test_trigger),
		cmocka_unit_test(test_rollout_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
