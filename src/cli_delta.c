/* cli_delta.c: otactl delta create | apply, on files alone */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cli.h"
#include "delta.h"
#include "espimg.h"

/* The appended SHA-256 of an ESP32 image file, for the container. */
static void
image_digest(const char *path, const uint8_t *img, size_t len,
    uint8_t digest[32])
{
	struct espimg_info info;
	char why[256];

	if (espimg_parse(img, len, &info, why, sizeof(why)) != OTAD_OK)
		die("'%s' is not an ESP32 application image (%s); --raw makes "
		    "a bare patch of any two files", path, why);
	if (!info.hash_appended)
		die("'%s' has no appended SHA-256 to name it by; use --raw",
		    path);
	memcpy(digest, info.app_sha256, 32);
}

/*
 * otactl delta create BASE TARGET -o PATCH: the container a device gets
 * (or the bare detools patch with --raw), verified by applying it.
 */
static int
delta_create_cmd(struct opts *o)
{
	const uint8_t *base, *target;
	uint8_t *patch, *check, header[DELTA_HEADER_SIZE], digest[32];
	size_t nbase, ntarget, npatch, ncheck;
	char why[256];

	if (o->argc != 2 || o->output == NULL)
		usage();
	base = map_file(o->argv[0], &nbase);
	target = map_file(o->argv[1], &ntarget);
	if (!o->raw)
		image_digest(o->argv[0], base, nbase, digest);
	if (delta_create(base, nbase, target, ntarget, &patch, &npatch) !=
	    OTAD_OK)
		die("out of memory");
	/* never hand out a patch that does not give the target back */
	if (delta_apply(base, nbase, patch, npatch, &check, &ncheck, why,
	    sizeof(why)) != OTAD_OK || ncheck != ntarget ||
	    memcmp(check, target, ntarget) != 0)
		die("internal error: the patch does not reproduce the target%s%s",
		    why[0] ? ": " : "", why);
	free(check);
	if (o->raw) {
		write_atomic(o->output, patch, npatch, 0644);
	} else {
		uint8_t *whole = malloc(DELTA_HEADER_SIZE + npatch);

		if (whole == NULL)
			die("out of memory");
		delta_container_header(digest, header);
		memcpy(whole, header, DELTA_HEADER_SIZE);
		memcpy(whole + DELTA_HEADER_SIZE, patch, npatch);
		write_atomic(o->output, whole, DELTA_HEADER_SIZE + npatch,
		    0644);
		free(whole);
		npatch += DELTA_HEADER_SIZE;
	}
	free(patch);
	if (json_out)
		printf("{\"patch\": %zu, \"target\": %zu}\n", npatch, ntarget);
	else
		printf("%s: %zu bytes, %.1f%% of the target's %zu\n", o->output,
		    npatch, ntarget ? 100.0 * (double)npatch / (double)ntarget :
		    0.0, ntarget);
	return 0;
}

/* otactl delta apply BASE PATCH -o OUT [--sha256 HEX] */
static int
delta_apply_cmd(struct opts *o)
{
	const uint8_t *base, *patch;
	uint8_t *out, want[32], have[32], digest[32];
	size_t nbase, npatch, nout, skip = 0;
	char why[256], hex[65];
	unsigned len = 0;

	if (o->argc != 2 || o->output == NULL)
		usage();
	base = map_file(o->argv[0], &nbase);
	patch = map_file(o->argv[1], &npatch);
	if (delta_container_parse(patch, npatch, want)) {
		/* a container names its base: check it is this one */
		image_digest(o->argv[0], base, nbase, digest);
		if (memcmp(digest, want, 32) != 0) {
			otad_hex(want, 32, hex);
			die("the patch is for the image whose SHA-256 is %s, not "
			    "'%s'", hex, o->argv[0]);
		}
		skip = DELTA_HEADER_SIZE;
	}
	if (delta_apply(base, nbase, patch + skip, npatch - skip, &out, &nout,
	    why, sizeof(why)) != OTAD_OK)
		die("%s", why[0] ? why : "out of memory");
	EVP_Digest(out, nout, have, &len, EVP_sha256(), NULL);
	otad_hex(have, 32, hex);
	if (o->sha256 != NULL && strcasecmp(o->sha256, hex) != 0)
		die("the result's SHA-256 is %s, not %s: wrong base or bad "
		    "patch", hex, o->sha256);
	write_atomic(o->output, out, nout, 0644);
	free(out);
	if (json_out)
		printf("{\"size\": %zu, \"sha256\": \"%s\"}\n", nout, hex);
	else
		printf("%s: %zu bytes, SHA-256 %s\n", o->output, nout, hex);
	return 0;
}

const struct cli_group cli_delta = {"delta", "--output --raw --sha256", {
	{"create", delta_create_cmd},
	{"apply", delta_apply_cmd},
}};
