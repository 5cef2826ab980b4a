/* cli_key.c: otactl key add | generate | list | revoke */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Say that a key was added (or generated: where its private half is). */
static void
key_say(json_t *k, int generated)
{
	const char *held = json_string_value(json_object_get(k,
	    "private_key_file"));

	json_incref(k);
	say(k, "key %s %s: %s, %s, fingerprint %s%s%s", jstr(k, "name"),
	    generated ? "generated" : "added", jstr(k, "algo"),
	    jstr(k, "purpose"), jstr(k, "fingerprint"),
	    held ? ", private key in " : "", held ? held : "");
}

static int
key_add(struct opts *o)
{
	const char *digest, *warning;
	char *pem;
	size_t len;
	json_t *k;

	if (o->argc != 1 || o->public == NULL)
		die("key add needs NAME and --public PEM");
	pem = read_small(o->public, 64 * 1024, &len);
	k = cli_run("key.add", cli_args("name", o->argv[0], "public_key", pem,
	    "secure_boot", o->secure_boot ? "true" : NULL, CLI_END), NULL);
	free(pem);
	key_say(k, 0);
	digest = json_string_value(json_object_get(k, "efuse_digest"));
	warning = json_string_value(json_object_get(k, "warning"));
	if (digest != NULL && !json_out)
		printf("eFuse key digest (espsecure digest-sbv2-public-key, "
		    "espefuse summary): %s\n", digest);
	if (warning != NULL)
		fprintf(stderr, "otactl: warning: %s\n", warning);
	json_decref(k);
	return 0;
}

static int
key_generate(struct opts *o)
{
	json_t *k;

	if (o->argc != 1)
		usage();
	k = cli_run("key.generate", cli_args("name", o->argv[0], "algo",
	    o->algo, CLI_END), NULL);
	key_say(k, 1);
	json_decref(k);
	return 0;
}

static int
key_list(struct opts *o)
{
	static const char *const cols[] = {"name", "algo", "purpose", "state",
	    "server_held", "signatures", "fingerprint", "efuse_digest",
	    "created", NULL};

	return cli_list(o, "key.list", json_object(), cols);
}

static int
key_revoke(struct opts *o)
{
	if (o->argc != 1)
		usage();
	say(cli_run("key.revoke", cli_args("name", o->argv[0], CLI_END), NULL),
	    "key %s revoked: artifacts signed only by it are no longer "
	    "offered", o->argv[0]);
	return 0;
}

const struct cli_group cli_key = {"key", "--public --secure-boot --algo", {
	{"add", key_add},
	{"generate", key_generate},
	{"list", key_list},
	{"revoke", key_revoke},
}};
