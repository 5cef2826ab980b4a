/* conf: the key table, bounds, defaults and file:line errors */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf.h"

static void
test_defaults(void **state)
{
	struct conf c;

	(void)state;
	conf_defaults(&c);
	assert_string_equal(c.listen, "127.0.0.1:8080");
	assert_string_equal(c.state_dir, "/var/lib/otad");
	assert_int_equal(c.max_header_bytes, 8192);
	assert_int_equal(c.max_body_bytes, 16384);
	assert_int_equal(c.http_threads, 0);
	assert_int_equal(c.debug, 0);
	assert_int_equal(c.require_signature, 1);
	assert_int_equal(c.device_auth, 0);
}

static void
test_parse_values(void **state)
{
	char err[CONF_ERR_MAX];
	struct conf c;

	(void)state;
	assert_int_equal(conf_parse("t.conf",
	    "# otad\n\n  listen = [::1]:9000  # v6\n"
	    "state_dir=/srv/ota\r\nmax_body_bytes = 64k\n"
	    "max_header_bytes = 16K\nlog_level = debug\nhttp_threads = 4\n"
	    "require_signature = off\ndevice_auth = token\n",
	    &c, err, sizeof(err)), 0);
	assert_int_equal(c.require_signature, 0);
	assert_int_equal(c.device_auth, 1);
	assert_string_equal(c.listen, "[::1]:9000");
	assert_string_equal(c.state_dir, "/srv/ota");
	assert_int_equal(c.max_body_bytes, 65536);
	assert_int_equal(c.max_header_bytes, 16384);
	assert_int_equal(c.debug, 1);
	assert_int_equal(c.http_threads, 4);
}

/* '#' inside a value is an MQTT wildcard, not a comment */
static void
test_mqtt_keys(void **state)
{
	char err[CONF_ERR_MAX];
	struct conf c;

	(void)state;
	assert_int_equal(conf_parse("t.conf",
	    "mqtt_host = broker.lan # the site's broker\n"
	    "mqtt_telemetry_topics = site/# devices/+/status\n"
	    "mqtt_topic_prefix = fleet/ota\nmqtt_retain_triggers = yes\n"
	    "public_url = https://ota.example.com\n",
	    &c, err, sizeof(err)), 0);
	assert_string_equal(c.mqtt_host, "broker.lan");
	assert_string_equal(c.mqtt_telemetry_topics,
	    "site/# devices/+/status");
	assert_string_equal(c.mqtt_topic_prefix, "fleet/ota");
	assert_int_equal(c.mqtt_retain_triggers, 1);
	assert_int_equal(c.mqtt_port, 1883);
	assert_int_equal(c.mqtt_keepalive, 60);
	assert_int_equal(conf_parse("t.conf", "promote_window = tue-thu "
	    "09:00-16:00 +01:00\n", &c, err, sizeof(err)), 0);
	assert_string_equal(c.promote_window, "tue-thu 09:00-16:00 +01:00");
	assert_int_equal(conf_parse("t.conf", "quarantine_after = 5 in 2h\n",
	    &c, err, sizeof(err)), 0);
	assert_int_equal(c.quarantine_n, 5);
	assert_int_equal(c.quarantine_s, 7200);
	assert_int_equal(conf_parse("t.conf", "trusted_proxies = 10.0.0.0/8, "
	    "::1\n", &c, err, sizeof(err)), 0);
	assert_int_equal(c.proxies.n, 2);
	assert_int_equal(c.proxies.v[1].bits, 128);
	assert_int_equal(conf_parse("t.conf", "quarantine_after = off\n", &c,
	    err, sizeof(err)), 0);
	assert_int_equal(c.quarantine_n, 0);
	assert_int_equal(conf_parse("t.conf", "telemetry_interval = 0\n"
	    "telemetry_retention = 86400\ncompare_min_devices = 25\n", &c, err,
	    sizeof(err)), 0);
	assert_int_equal(c.telemetry_interval, 0);
	assert_int_equal(c.telemetry_retention, 86400);
	assert_int_equal(c.compare_min_devices, 25);
	conf_defaults(&c);
	assert_int_equal(c.telemetry_interval, 300);
	assert_int_equal(c.telemetry_retention, 604800);
	assert_int_equal(c.compare_min_devices, 10);
	assert_int_equal(c.quarantine_n, 3);
	assert_int_equal(c.quarantine_s, 86400);
	assert_string_equal(c.mqtt_host, "");
	assert_string_equal(c.mqtt_telemetry_topics,
	    "devices/+/telemetry devices/+/status");
}

static void
expect_error(const char *text, const char *want)
{
	char err[CONF_ERR_MAX];
	struct conf c;

	assert_int_equal(conf_parse("t.conf", text, &c, err, sizeof(err)), -1);
	if (strstr(err, want) == NULL)
		fail_msg("'%s' lacks '%s'", err, want);
}

static void
test_errors(void **state)
{
	(void)state;
	expect_error("listen = 1:1\nbogus = 2\n", "t.conf:2: unknown key");
	expect_error("http_threads = 65\n", "t.conf:1: 'http_threads' must be "
	    "between 0 and 64");
	expect_error("http_threads = 4x\n", "whole number");
	expect_error("http_threads = \n", "whole number");
	expect_error("http_threads = 99999999999999999999999\n",
	    "whole number");
	expect_error("max_body_bytes = 2M\n", "between 256 and 1048576");
	expect_error("max_body_bytes = 1G\n", "whole number");
	expect_error("listen = nowhere\n", "host:port");
	expect_error("listen = host:\n", "host:port");
	expect_error("listen = [::1:80\n", "host:port");
	expect_error("log_level = trace\n", "info or debug");
	expect_error("require_signature = maybe\n", "'require_signature' is "
	    "yes or no, not 'maybe'");
	expect_error("device_auth = password\n", "none or token");
	expect_error("just words\n", "t.conf:1: expected 'key = value'");
	expect_error("listen = a:1\nlisten = b:2\n", "t.conf:2: 'listen' is "
	    "set twice");
	expect_error("state_dir =\n", "must not be empty");
	expect_error("tls_key = /k.pem\n", "go together");
	expect_error("promote_window = office hours\n", "'promote_window' is "
	    "like 'tue-thu 09:00-16:00 +01:00'");
	expect_error("quarantine_after = 3\n", "'quarantine_after' is like");
	expect_error("trusted_proxies = 10.0.0.0/8 proxy.lan\n",
	    "'trusted_proxies' lists addresses and networks "
	    "('10.0.0.0/8, 127.0.0.1'): 'proxy.lan' is not an IPv4 or IPv6");
	expect_error("quarantine_after = 0 in 24h\n", "'quarantine_after'");
	expect_error("quarantine_after = 3 in 400d\n", "'quarantine_after'");
	expect_error("quarantine_after = 3 within 24h\n", "'quarantine_after'");
	expect_error("quarantine_after = 3 in 24h extra\n",
	    "'quarantine_after'");
	expect_error("quarantine_after = -3 in 24h\n", "'quarantine_after'");
	expect_error("on_halt = rollback\n", "hold or revert");
	expect_error("telemetry_interval = 86401\n", "'telemetry_interval' "
	    "must be between 0 and 86400");
	expect_error("telemetry_interval = -1\n", "'telemetry_interval'");
	expect_error("telemetry_retention = 60\n", "'telemetry_retention' "
	    "must be between 3600");
	expect_error("telemetry_retention = 7d\n", "'telemetry_retention'");
	expect_error("compare_min_devices = 0\n", "'compare_min_devices' "
	    "must be between 1");
}

static void
test_long_line(void **state)
{
	static char text[5000];
	char err[CONF_ERR_MAX];
	struct conf c;

	(void)state;
	memset(text, 'a', sizeof(text) - 1);
	assert_int_equal(conf_parse("t.conf", text, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too long"));
}

static void
test_restart_keys(void **state)
{
	char err[CONF_ERR_MAX];
	struct conf a, b;
	const char *key = NULL;

	(void)state;
	assert_int_equal(conf_parse("a", "max_body_bytes = 1k\n", &a, err,
	    sizeof(err)), 0);
	assert_int_equal(conf_parse("b", "max_body_bytes = 2k\n", &b, err,
	    sizeof(err)), 0);
	assert_int_equal(conf_needs_restart(&a, &b, &key), 0);
	assert_int_equal(conf_parse("b", "listen = 127.0.0.1:1\n", &b, err,
	    sizeof(err)), 0);
	assert_int_equal(conf_needs_restart(&a, &b, &key), 1);
	assert_string_equal(key, "listen");
}

static void
test_load_file(void **state)
{
	char path[] = "/tmp/otad-conf-XXXXXX", err[CONF_ERR_MAX];
	struct conf c;
	FILE *f;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs("state_dir = /x\nnope = 1\n", f);
	fclose(f);
	assert_int_equal(conf_load(path, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ":2: unknown key 'nope'"));
	assert_non_null(strstr(err, path));
	remove(path);
	assert_int_equal(conf_load(path, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot open"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_parse_values),
		cmocka_unit_test(test_mqtt_keys),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_restart_keys),
		cmocka_unit_test(test_load_file),
	};

	return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
