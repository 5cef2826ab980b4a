/* cli_release.c: otactl release create | list | publish */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int
release_create(struct opts *o)
{
	json_t *r;

	if (o->argc != 1)
		usage();
	if (o->artifact == NULL)
		die("release create needs --artifact SHA256");
	check_version(o->argv[0]);
	check_token("--product", o->product);
	check_token("--hw-rev", o->hw_rev);
	if (o->min_from != NULL)
		check_version(o->min_from);
	r = cli_run("release.create", cli_args("version", o->argv[0],
	    "artifact", o->artifact, "product", o->product, "hw_rev",
	    o->hw_rev, "min_from", o->min_from, "forced", o->forced ? "true" :
	    NULL, "confirm_secure_version", o->confirm_sv ? "true" : NULL,
	    CLI_END), NULL);
	if (json_string_value(json_object_get(r, "warning")) != NULL)
		fprintf(stderr, "otactl: warning: %s\n", jstr(r, "warning"));
	say(r, "release %s created (id %lld, artifact %.12s)", o->argv[0],
	    jint(r, "id"), jstr(r, "artifact"));
	return 0;
}

static int
release_list(struct opts *o)
{
	static const char *const cols[] = {"id", "version", "product",
	    "chip", "hw_rev", "min_from", "secure_version", "artifact",
	    "rollout_state", "succeeded", "created", NULL};

	return cli_list(o, "release.list", json_object(), cols);
}

static int
release_publish(struct opts *o)
{
	long long rollout;
	json_t *r;

	if (o->argc != 1)
		usage();
	check_version(o->argv[0]);
	check_token("--product", o->product);
	r = cli_run("release.publish", cli_args("version", o->argv[0],
	    "product", o->product, "chip", o->chip, "break_glass",
	    o->break_glass, CLI_END), NULL);
	rollout = jint(r, "rollout");
	if (json_is_true(json_object_get(r, "awaiting_approval")))
		say(r, "release %s: rollout %lld awaits a second operator's "
		    "approval (otactl rollout approve %lld)", o->argv[0],
		    rollout, rollout);
	else
		say(r, "release %s published to every matching device "
		    "(rollout %lld)", o->argv[0], rollout);
	return 0;
}

const struct cli_group cli_release = {"release", "--artifact --product --hw-rev "
    "--chip --min-from --confirm-secure-version --forced --break-glass", {
	{"create", release_create},
	{"list", release_list},
	{"publish", release_publish},
}};
