/* cli_device.c: otactl device list | show | set | add | revoke-token |
 * block | unblock | nudge */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "espimg.h"

static int
device_list(struct opts *o)
{
	static const char *const cols[] = {"id", "version", "product",
	    "last_seen", "address", "checks", "last_attempt", NULL};

	return cli_list(o, "device.list", cli_args("offline", o->offline ?
	    "true" : NULL, CLI_END), cols);
}

static int
device_show(struct opts *o)
{
	static const char *const keys[] = {"id", "version", "product",
	    "chip", "group", "hw_rev", "running_sha256", "fs_version", "address",
	    "first_seen", "last_seen", "checks",
	    "uptime", "free_heap", "rssi", "reset_reason", "battery",
	    "secure_version", "free_space", "deferred", "deferred_at",
	    "has_token", "token_created", "blocked", "mqtt_seen",
	    "last_trigger", NULL};
	static const char *const cols[] = {"id", "from_version", "to_version",
	    "state", "reason", "offered_at", "updated_at", NULL};
	json_t *obj;

	if (o->argc != 1)
		usage();
	obj = cli_run("device.show", cli_args("id", o->argv[0], CLI_END), NULL);
	if (!print_if_json(obj)) {
		print_fields(obj, keys);
		printf("\nattempts (newest first):\n");
		print_table(json_object_get(obj, "attempts"), cols);
	}
	json_decref(obj);
	return 0;
}

static int
device_set(struct opts *o)
{
	json_t *r;

	if (o->argc != 1)
		usage();
	if (o->group == NULL && o->hw_rev == NULL && o->chip == NULL)
		die("device set needs --group, --hw-rev or --chip");
	check_token("--group", o->group);
	check_token("--hw-rev", o->hw_rev);
	if (o->chip != NULL && espimg_chip_id(o->chip) < 0)
		die("unknown chip '%s' (esp32, esp32s2, esp32s3, esp32c3, "
		    "esp32c2, esp32c6, esp32h2, esp32p4, esp32c5, esp32c61)",
		    o->chip);
	r = cli_run("device.set", cli_args("id", o->argv[0], "group",
	    o->group, "hw_rev", o->hw_rev, "chip", o->chip, CLI_END), NULL);
	say(r, "device %s updated", o->argv[0]);
	return 0;
}

static int
device_add(struct opts *o)
{
	json_t *r;

	if (o->argc != 1)
		usage();
	check_device_id(o->argv[0]);
	check_token("--group", o->group);
	r = cli_run("device.add", cli_args("id", o->argv[0], "group",
	    o->group, CLI_END), NULL);
	/* shown once: only its hash is kept */
	say(r, "device %s added; its token (shown only now): %s", o->argv[0],
	    jstr(r, "token"));
	return 0;
}

/* revoke-token, block, unblock, clear: one word, one operation */
static int
device_change(struct opts *o)
{
	char name[32];

	if (o->argc != 1)
		usage();
	snprintf(name, sizeof(name), "device.%s", o->verb);
	say(cli_run(name, cli_args("id", o->argv[0], CLI_END), NULL),
	    "device %s: %s done", o->argv[0], o->verb);
	return 0;
}

/*
 * Ask otad to send the device a trigger over MQTT now; the operation
 * waits a little to say whether it went out.
 */
static int
device_nudge(struct opts *o)
{
	const char *version;
	json_t *r;

	if (o->argc != 1)
		usage();
	check_device_id(o->argv[0]);
	r = cli_run("device.nudge", cli_args("id", o->argv[0], CLI_END), NULL);
	version = json_string_value(json_object_get(r, "version"));
	if (!json_is_true(json_object_get(r, "sent")))
		say(r, "device %s: nudge queued; otad sends it once it is "
		    "connected to the MQTT broker", o->argv[0]);
	else if (version != NULL)
		say(r, "device %s nudged: trigger for %s sent", o->argv[0],
		    version);
	else
		say(r, "device %s nudged: nothing to offer it, told to check "
		    "in", o->argv[0]);
	return 0;
}

const struct cli_group cli_device = {"device", "--offline --group --hw-rev --chip", {
	{"list", device_list},
	{"show", device_show},
	{"set", device_set},
	{"add", device_add},
	{"revoke-token", device_change},
	{"block", device_change},
	{"unblock", device_change},
	{"clear", device_change},
	{"nudge", device_nudge},
}};
