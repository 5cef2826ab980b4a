/* store: atomic, content-addressed ingest */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "imgbuild.h"
#include "store.h"

static char state_dir[64];

static int
setup(void **state)
{
	(void)state;
	snprintf(state_dir, sizeof(state_dir), "/tmp/otad-store-XXXXXX");
	return mkdtemp(state_dir) ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A valid image of about len bytes for chip */
static size_t
make_image(uint8_t *buf, size_t len, uint16_t chip)
{
	struct imgspec s = img_default();

	s.chip = chip;
	s.segments = 1;
	s.seglen = (uint32_t)((len - 24 - 8 - 16 - 32) & ~3u);
	return img_build(buf, len, &s);
}

/* An fd that reads buf: a temp file, rewound. */
static int
source(const uint8_t *buf, size_t len)
{
	char path[] = "/tmp/otad-src-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static void
hexdigest(const EVP_MD *md, const uint8_t *buf, size_t len, char *out)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned n, i;

	EVP_Digest(buf, len, d, &n, md, NULL);
	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static int
entries(void)
{
	char path[128];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/artifacts", state_dir);
	assert_non_null(d = opendir(path));
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' || strlen(de->d_name) > 2)
			n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

static int
named_never(void *arg, const char *sha256)
{
	(void)sha256;
	return *(int *)arg = 0;
}

static int
named_always(void *arg, const char *sha256)
{
	(void)arg;
	(void)sha256;
	return 1;
}

static void
test_ingest(void **state)
{
	static uint8_t img[70000];
	struct store_artifact art;
	struct store *st;
	char why[256], sha[65], md5[33], path[256];
	size_t n;
	int fd, existed, asked = 1;
	FILE *f;
	long size;

	(void)state;
	n = make_image(img, sizeof(img), 5);
	assert_true(n > 60000);
	assert_int_equal(store_open(state_dir, &st), OTAD_OK);
	fd = source(img, n);
	assert_int_equal(store_ingest(st, fd, KIND_APP, &art, why, sizeof(why)), OTAD_OK);
	assert_int_equal(store_publish(st, &art, &existed, why, sizeof(why)),
	    OTAD_OK);
	close(fd);
	store_artifact_release(&art);
	hexdigest(EVP_sha256(), img, n, sha);
	hexdigest(EVP_md5(), img, n, md5);
	assert_string_equal(art.sha256, sha);
	assert_string_equal(art.md5, md5);
	assert_int_equal(art.size, n);
	assert_string_equal(art.image.project_name, "sensor");
	assert_int_equal(art.image.chip_id, 5);
	assert_int_equal(existed, 0);
	assert_int_equal(store_path(st, sha, path, sizeof(path)), 0);
	assert_non_null(f = fopen(path, "rb"));
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fclose(f);
	assert_int_equal(size, (long)n);
	/* the same content again: nothing new */
	fd = source(img, n);
	assert_int_equal(store_ingest(st, fd, KIND_APP, &art, why, sizeof(why)), OTAD_OK);
	assert_int_equal(store_publish(st, &art, &existed, why, sizeof(why)),
	    OTAD_OK);
	close(fd);
	store_artifact_release(&art);
	assert_int_equal(existed, 1);
	assert_int_equal(entries(), 1);
	fd = store_open_artifact(st, sha);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(store_open_artifact(st, "../../etc/passwd"), -1);
	/* nothing names it, nothing holds it: the sweep takes it */
	assert_int_equal(store_sweep(st, named_never, &asked), 1);
	assert_int_equal(entries(), 0);
	store_free(st);
}

/*
 * The sweep removes a file no record names, never one an ingest holds,
 * and an ingest of a file the sweep just took publishes it again.
 */
static void
test_sweep_spares_what_is_held_or_named(void **state)
{
	static uint8_t img[70000];
	struct store_artifact art, again;
	struct store *st;
	char why[256];
	size_t n;
	int fd, existed, asked = 1;

	(void)state;
	n = make_image(img, sizeof(img), 5);
	assert_int_equal(store_open(state_dir, &st), OTAD_OK);
	fd = source(img, n);
	assert_int_equal(store_ingest(st, fd, KIND_APP, &art, why, sizeof(why)), OTAD_OK);
	assert_int_equal(store_publish(st, &art, &existed, why, sizeof(why)),
	    OTAD_OK);
	close(fd);
	/* held: not even asked about */
	assert_int_equal(store_sweep(st, named_never, &asked), 0);
	assert_int_equal(asked, 1);
	/* a second ingest of the same content while the first holds it */
	fd = source(img, n);
	assert_int_equal(store_ingest(st, fd, KIND_APP, &again, why, sizeof(why)),
	    OTAD_OK);
	assert_int_equal(store_publish(st, &again, &existed, why, sizeof(why)),
	    OTAD_OK);
	close(fd);
	assert_int_equal(existed, 1);
	store_artifact_release(&art);
	assert_int_equal(store_sweep(st, named_never, &asked), 0);
	store_artifact_release(&again);
	store_artifact_release(&again); /* idempotent */
	/* named: kept */
	assert_int_equal(store_sweep(st, named_always, NULL), 0);
	assert_int_equal(entries(), 1);
	/* named by nobody, held by nobody: removed */
	assert_int_equal(store_sweep(st, named_never, &asked), 1);
	assert_int_equal(asked, 0);
	assert_int_equal(entries(), 0);
	store_free(st);
}

static void
test_refusals_leave_nothing(void **state)
{
	static uint8_t img[4096];
	struct store_artifact art;
	struct store *st;
	char why[256];
	size_t n;
	int fd;

	(void)state;
	assert_int_equal(store_open(state_dir, &st), OTAD_OK);
	n = make_image(img, sizeof(img), 0);
	img[0] = 0x7f;
	fd = source(img, n);
	assert_int_equal(store_ingest(st, fd, KIND_APP, &art, why, sizeof(why)),
	    OTAD_ERR_NOT_IMAGE);
	assert_non_null(strstr(why, "not 0xe9"));
	close(fd);
	n = make_image(img, sizeof(img), 0x42);
	fd = source(img, n);
	assert_int_equal(store_ingest(st, fd, KIND_APP, &art, why, sizeof(why)),
	    OTAD_ERR_NOT_IMAGE);
	assert_string_equal(why, "unknown chip id 0x0042");
	close(fd);
	n = make_image(img, sizeof(img), 0);
	img[28] = 0xff;
	img[29] = 0xff; /* segment 0 longer than the file */
	fd = source(img, n);
	assert_int_equal(store_ingest(st, fd, KIND_APP, &art, why, sizeof(why)),
	    OTAD_ERR_NOT_IMAGE);
	assert_non_null(strstr(why, "runs past the end"));
	close(fd);
	fd = source(img, 10);
	assert_int_equal(store_ingest(st, fd, KIND_APP, &art, why, sizeof(why)),
	    OTAD_ERR_NOT_IMAGE);
	close(fd);
	n = make_image(img, sizeof(img), 0);
	img[100] ^= 1; /* a data byte: the checksum no longer matches */
	fd = source(img, n);
	assert_int_equal(store_ingest(st, fd, KIND_APP, &art, why, sizeof(why)),
	    OTAD_ERR_NOT_IMAGE);
	assert_non_null(strstr(why, "checksum mismatch"));
	close(fd);
	fd = open("/dev/zero", O_RDONLY);
	assert_int_equal(store_ingest(st, fd, KIND_APP, &art, why, sizeof(why)),
	    OTAD_ERR_TOO_LARGE);
	close(fd);
	assert_int_equal(entries(), 0);
	store_free(st);
}

static void
test_clean_removes_only_dead_ingests(void **state)
{
	char dead[160], live[160];
	struct store *st;
	int fd, lfd;

	(void)state;
	assert_int_equal(store_open(state_dir, &st), OTAD_OK);
	snprintf(dead, sizeof(dead), "%s/artifacts/.ingest-1-0", state_dir);
	snprintf(live, sizeof(live), "%s/artifacts/.ingest-2-0", state_dir);
	fd = open(dead, O_CREAT | O_WRONLY, 0600);
	close(fd);
	lfd = open(live, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(flock(lfd, LOCK_EX), 0);
	assert_int_equal(store_clean(st), 1);
	assert_int_equal(access(dead, F_OK), -1);
	assert_int_equal(access(live, F_OK), 0);
	close(lfd);
	assert_int_equal(store_clean(st), 1);
	assert_int_equal(entries(), 0);
	store_free(st);
}

static void
test_valid_sha256(void **state)
{
	(void)state;
	assert_true(store_valid_sha256("73522fc9881bc9c824f4073e12e62af910afd86"
	    "e7137447e94092934642ff2a6"));
	assert_false(store_valid_sha256("73522FC9881bc9c824f4073e12e62af910afd8"
	    "6e7137447e94092934642ff2a6"));
	assert_false(store_valid_sha256("abc"));
	assert_false(store_valid_sha256(""));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ingest),
		cmocka_unit_test(test_sweep_spares_what_is_held_or_named),
		cmocka_unit_test(test_refusals_leave_nothing),
		cmocka_unit_test(test_clean_removes_only_dead_ingests),
		cmocka_unit_test(test_valid_sha256),
	};

	return cmocka_run_group_tests_name("store", tests, setup, teardown);
}
