/* cli_artifact.c: otactl artifact add | list | show | sign */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cli.h"
#include "fsimg.h"
#include "sign.h"

static int
artifact_add(struct opts *o)
{
	char *sig = NULL, *sig64 = NULL;
	size_t siglen = 0;
	json_t *row;

	if (o->argc != 1)
		usage();
	if (o->version != NULL)
		check_version(o->version);
	check_token("--product", o->product);
	if (o->kind != NULL && fsimg_kind_parse(o->kind) < 0)
		die("unknown --kind '%s': app, spiffs, littlefs or fatfs",
		    o->kind);
	if ((o->signature == NULL) != (o->key == NULL))
		die("--signature and --key go together");
	if (o->signature != NULL) {
		sig = read_small(o->signature, SIGN_MAX_SIG, &siglen);
		if ((sig64 = malloc(4 * ((siglen + 2) / 3) + 1)) == NULL)
			die("out of memory");
		EVP_EncodeBlock((unsigned char *)sig64,
		    (const unsigned char *)sig, (int)siglen);
	}
	row = cli_run("artifact.add", cli_args("version", o->version,
	    "product", o->product, "kind", o->kind, "key", o->key,
	    "signature", sig64, CLI_END), o->argv[0]);
	free(sig);
	free(sig64);
	say(row, "%s", jstr(row, "sha256"));
	return 0;
}

static int
artifact_sign(struct opts *o)
{
	json_t *r;

	if (o->argc != 1 || o->key == NULL)
		die("artifact sign needs SHA256 and --key NAME");
	r = cli_run("artifact.sign", cli_args("sha", o->argv[0], "key", o->key,
	    CLI_END), NULL);
	say(r, "artifact %.12s signed with key %s", jstr(r, "artifact"),
	    o->key);
	return 0;
}

static int
artifact_list(struct opts *o)
{
	static const char *const cols[] = {"sha256", "version", "product",
	    "chip", "size", "created", NULL};

	return cli_list(o, "artifact.list", json_object(), cols);
}

static int
artifact_show(struct opts *o)
{
	static const char *const keys[] = {"sha256", "version", "product",
	    "kind", "chip", "project", "idf_ver", "desc_version", "build_date",
	    "secure_version", "size", "image_len", "app_sha256", "sig_blocks",
	    "md5", "created", "releases", NULL};
	static const char *const sigcols[] = {"key", "algo", "state",
	    "created", NULL};
	static const char *const blockcols[] = {"block", "scheme",
	    "key_digest", "trusted_key", "verified", "why_not", NULL};
	json_t *row, *blocks;

	if (o->argc != 1)
		usage();
	row = cli_run("artifact.show", cli_args("sha", o->argv[0], CLI_END),
	    NULL);
	if (!print_if_json(row)) {
		print_fields(row, keys);
		printf("\nsignatures:\n");
		print_table(json_object_get(row, "signatures"), sigcols);
		blocks = json_object_get(row, "secure_boot_blocks");
		if (json_array_size(blocks) > 0) {
			printf("\nsecure boot blocks:\n");
			print_table(blocks, blockcols);
		}
	}
	json_decref(row);
	return 0;
}

const struct cli_group cli_artifact = {"artifact", "--version --product --signature --key --kind", {
	{"add", artifact_add},
	{"sign", artifact_sign},
	{"list", artifact_list},
	{"show", artifact_show},
}};
