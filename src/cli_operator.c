/* cli_operator.c: otactl operator add | list | revoke */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int
operator_add(struct opts *o)
{
	json_t *r;

	if (o->argc != 1 || o->role == NULL)
		die("operator add needs NAME and --role viewer|operator|admin|"
		    "ci");
	r = cli_run("operator.add", cli_args("name", o->argv[0], "role",
	    o->role, CLI_END), NULL);
	/* shown once: only its hash is kept */
	say(r, "operator %s added as %s; their token (shown only now): %s",
	    o->argv[0], o->role, jstr(r, "token"));
	return 0;
}

static int
operator_list(struct opts *o)
{
	static const char *const cols[] = {"name", "role", "state", "created",
	    "revoked_at", NULL};

	return cli_list(o, "operator.list", json_object(), cols);
}

static int
operator_revoke(struct opts *o)
{
	if (o->argc != 1)
		usage();
	say(cli_run("operator.revoke", cli_args("name", o->argv[0], CLI_END),
	    NULL), "operator %s revoked: their token is refused from the next "
	    "request", o->argv[0]);
	return 0;
}

const struct cli_group cli_operator = {"operator", "--role", {
	{"add", operator_add},
	{"list", operator_list},
	{"revoke", operator_revoke},
}};
