/* cli_status.c: otactl status, and otactl audit: the fleet at a glance,
 * and who did what */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int
status(struct opts *o)
{
	static const char *const vcols[] = {"version", "devices", NULL};
	static const char *const acols[] = {"state", "attempts", NULL};
	static const char *const ocols[] = {"rollout", "version", "product",
	    "started", NULL};
	json_t *obj;

	if (o->argc != 0)
		usage();
	obj = cli_run("status", json_object(), NULL);
	if (!print_if_json(obj)) {
		printf("devices %lld (seen in 24h: %lld), artifacts %lld, "
		    "releases %lld\n",
		    (long long)json_integer_value(json_object_get(obj,
		    "devices")),
		    (long long)json_integer_value(json_object_get(obj,
		    "seen_24h")),
		    (long long)json_integer_value(json_object_get(obj,
		    "artifacts")),
		    (long long)json_integer_value(json_object_get(obj,
		    "releases")));
		printf("\noffered now:\n");
		print_table(json_object_get(obj, "offered"), ocols);
		printf("\ndevices per version:\n");
		print_table(json_object_get(obj, "versions"), vcols);
		printf("\nattempts:\n");
		print_table(json_object_get(obj, "attempts"), acols);
	}
	json_decref(obj);
	return 0;
}

/* The audit log, newest first, a page at a time (--before the last id). */
static int
audit(struct opts *o)
{
	static const char *const cols[] = {"id", "at", "actor", "what", NULL};

	return cli_list(o, "audit", cli_args("actor", o->actor, "before",
	    o->before, "limit", o->limit, CLI_END), cols);
}

/* one word each: the verb is "" */
const struct cli_group cli_status = {"status", "", {{"", status}}};
const struct cli_group cli_audit = {"audit", "--actor --before --limit", {
	{"", audit},
}};
