/*
 * otactl.c: the operator's tool. Works on the same database and store as
 * otad (the daemon notices changes within a second). Every command prints
 * a table by default and JSON with --json, and on error one line on stderr
 * and a non-zero exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "auth.h"
#include "catalog.h"
#include "conf.h"
#include "delta.h"
#include "espimg.h"
#include "fsimg.h"
#include "log.h"
#include "registry.h"
#include "semver.h"
#include "sbv2.h"
#include "sign.h"
#include "stages.h"
#include "store.h"

#ifndef OTAD_CONF
#define OTAD_CONF "/etc/otad/otad.conf"
#endif

#define EXIT_USAGE 2

static int json_out;
static struct conf conf;
/* open for the whole command; closed at exit, after die() too */
static struct registry *the_reg;
static struct store *the_store;
/* --break-glass: a reason to start without a second approval */
static const char *break_glass;
static void
cleanup(void)
{
	registry_close(the_reg);
	store_free(the_store);
	the_reg = NULL;
	the_store = NULL;
}

static _Noreturn void
usage(void)
{
	fprintf(stderr,
	    "usage: otactl [-c FILE] [--json] COMMAND\n"
	    "  artifact add FILE [--version V] [--product P]"
	    " [--signature SIG --key NAME]\n"
	    "    [--kind app|spiffs|littlefs|fatfs]\n"
	    "  artifact list | show SHA256 | sign SHA256 --key NAME\n"
	    "  key add NAME --public PEM [--secure-boot]\n"
	    "  key generate NAME [--algo ecdsa-p256|ed25519]\n"
	    "  key list | revoke NAME\n"
	    "  release create VERSION --artifact SHA256 [--product P]"
	    " [--hw-rev R]\n"
	    "    [--min-from V] [--confirm-secure-version] [--forced]\n"
	    "  release list | publish VERSION [--product P] [--chip C]\n"
	    "  rollout create VERSION --stages SPEC [--window HH:MM-HH:MM]"
	    " [--days mon-thu]\n"
	    "    [--utc-offset +02:00] [--min-battery N] [--timeout 10m]"
	    " [--downgrade]\n"
	    "  rollout start|pause|abort ID | resume ID [--force] |"
	    " status [ID]\n"
	    "  rollout approve ID | start ID --break-glass REASON\n"
	    "  operator add NAME --role viewer|operator|admin|ci |"
	    " list | revoke NAME\n"
	    "  device list [--offline] | show ID\n"
	    "  device set ID [--group G] [--hw-rev R] [--chip C]\n"
	    "  device add ID [--group G] | revoke-token ID | block ID |"
	    " unblock ID\n"
	    "  device nudge ID\n"
	    "  delta create BASE TARGET -o PATCH [--raw]\n"
	    "  delta apply BASE PATCH -o OUT [--sha256 HEX]\n"
	    "  status\n");
	exit(EXIT_USAGE);
}

/* One clear line and a non-zero exit. */
static _Noreturn void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("otactl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Options after the command words: --name VALUE or --flag. */
struct opts {
	int argc;
	char **argv; /* positional words left */
	const char *version, *product, *artifact, *hw_rev, *group, *chip;
	const char *signature, *key, *public, *algo, *min_from;
	const char *stages, *window, *days, *utc_offset, *min_battery, *timeout;
	const char *output, *sha256, *kind, *break_glass, *role;
	int offline, secure_boot, confirm_sv, forced, force, downgrade, raw;
};

/* Is a one of the space-separated words of allowed? */
static int
allowed_option(const char *allowed, const char *a)
{
	size_t n = strlen(a);
	const char *p = allowed;

	while ((p = strstr(p, a)) != NULL) {
		if ((p == allowed || p[-1] == ' ') &&
		    (p[n] == ' ' || p[n] == '\0'))
			return 1;
		p += n;
	}
	return 0;
}

static void
parse_opts(int argc, char **argv, struct opts *o, const char *allowed)
{
	static char *pos[64];
	int i;

	memset(o, 0, sizeof(*o));
	o->argv = pos;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;

		if (strcmp(a, "-o") == 0)
			a = "--output";
		if (strncmp(a, "--", 2) != 0) {
			if (o->argc == 63)
				usage();
			pos[o->argc++] = argv[i];
			continue;
		}
		if (!allowed_option(allowed, a))
			die("unknown option '%s' here", a);
		if (strcmp(a, "--offline") == 0) {
			o->offline = 1;
			continue;
		}
		if (strcmp(a, "--secure-boot") == 0) {
			o->secure_boot = 1;
			continue;
		}
		if (strcmp(a, "--confirm-secure-version") == 0) {
			o->confirm_sv = 1;
			continue;
		}
		if (strcmp(a, "--forced") == 0) {
			o->forced = 1;
			continue;
		}
		if (strcmp(a, "--force") == 0) {
			o->force = 1;
			continue;
		}
		if (strcmp(a, "--downgrade") == 0) {
			o->downgrade = 1;
			continue;
		}
		if (strcmp(a, "--raw") == 0) {
			o->raw = 1;
			continue;
		}
		if (strcmp(a, "--version") == 0)
			slot = &o->version;
		else if (strcmp(a, "--product") == 0)
			slot = &o->product;
		else if (strcmp(a, "--artifact") == 0)
			slot = &o->artifact;
		else if (strcmp(a, "--hw-rev") == 0)
			slot = &o->hw_rev;
		else if (strcmp(a, "--group") == 0)
			slot = &o->group;
		else if (strcmp(a, "--chip") == 0)
			slot = &o->chip;
		else if (strcmp(a, "--signature") == 0)
			slot = &o->signature;
		else if (strcmp(a, "--key") == 0)
			slot = &o->key;
		else if (strcmp(a, "--public") == 0)
			slot = &o->public;
		else if (strcmp(a, "--algo") == 0)
			slot = &o->algo;
		else if (strcmp(a, "--min-from") == 0)
			slot = &o->min_from;
		else if (strcmp(a, "--stages") == 0)
			slot = &o->stages;
		else if (strcmp(a, "--window") == 0)
			slot = &o->window;
		else if (strcmp(a, "--days") == 0)
			slot = &o->days;
		else if (strcmp(a, "--utc-offset") == 0)
			slot = &o->utc_offset;
		else if (strcmp(a, "--min-battery") == 0)
			slot = &o->min_battery;
		else if (strcmp(a, "--timeout") == 0)
			slot = &o->timeout;
		else if (strcmp(a, "--output") == 0)
			slot = &o->output;
		else if (strcmp(a, "--sha256") == 0)
			slot = &o->sha256;
		else if (strcmp(a, "--kind") == 0)
			slot = &o->kind;
		else if (strcmp(a, "--break-glass") == 0)
			slot = &o->break_glass;
		else if (strcmp(a, "--role") == 0)
			slot = &o->role;
		else
			die("unknown option '%s'", a);
		if (i + 1 >= argc)
			die("%s needs a value", a);
		*slot = argv[++i];
	}
	pos[o->argc] = NULL;
}

static void
check_version(const char *v)
{
	if (!semver_valid(v))
		die("invalid version '%s': 1 to 64 printable characters, no "
		    "spaces", v);
}

/* An optional option value: 1 to 64 printable characters, no spaces. */
static void
check_token(const char *option, const char *p)
{
	size_t n;

	if (p == NULL)
		return;
	for (n = 0; p[n] != '\0'; n++)
		if (n >= OTAD_PRODUCT_MAX || p[n] <= 0x20 || p[n] >= 0x7f)
			die("invalid %s '%s': 1 to 64 printable characters, "
			    "no spaces", option, p);
	if (n == 0)
		die("%s must not be empty", option);
}

static void
check_product(const char *p)
{
	check_token("--product", p);
}

static struct registry *
open_registry(void)
{
	char path[PATH_MAX + 16], actor[96];
	struct passwd *pw = getpwuid(getuid());
	struct registry *reg;

	if (mkdir(conf.state_dir, 0750) < 0 && errno != EEXIST)
		die("cannot create state directory '%s': %s", conf.state_dir,
		    strerror(errno));
	if (conf_db_path(&conf, path, sizeof(path)) < 0)
		die("state_dir is too long");
	if (registry_open(path, &reg) != OTAD_OK)
		die("cannot open the registry '%s'", path);
	snprintf(actor, sizeof(actor), "otactl:%s",
	    pw ? pw->pw_name : "unknown");
	registry_set_actor(reg, actor);
	registry_set_who(reg, actor);
	registry_set_approvals(reg, conf.rollout_approvals, break_glass);
	registry_set_patience(reg, 10000);
	the_reg = reg;
	return reg;
}

/*
 * After a change to what is offered: when otad is running, return only
 * once it serves the change, so that the next device request sees it.
 */
static void
wait_served(void)
{
	if (registry_wait_served(the_reg, 3000) == OTAD_ERR_BUSY)
		fprintf(stderr, "otactl: warning: otad has not picked up the "
		    "change within 3 s; it will\n");
}

static void
print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s == NULL)
		die("out of memory");
	puts(s);
	free(s);
}

static int
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n > m && strcmp(s + (n - m), suffix) == 0;
}

/* A cell as text: times as UTC, NULL as "-". */
static void
cell(json_t *v, const char *col, char *buf, size_t len)
{
	int is_time = strcmp(col, "created") == 0 ||
	    strcmp(col, "started") == 0 || ends_with(col, "_at") ||
	    ends_with(col, "_seen") || ends_with(col, "_created");

	if (v == NULL || json_is_null(v)) {
		snprintf(buf, len, "-");
	} else if (json_is_integer(v) && is_time &&
	    json_integer_value(v) == 0) {
		snprintf(buf, len, "never");
	} else if (json_is_integer(v) && is_time) {
		time_t t = (time_t)json_integer_value(v);
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
	} else if (json_is_integer(v)) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	} else if (json_is_real(v)) {
		snprintf(buf, len, "%.2f", json_real_value(v));
	} else if (json_is_string(v)) {
		snprintf(buf, len, "%s", json_string_value(v));
	} else {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

		snprintf(buf, len, "%s", s ? s : "?");
		free(s);
	}
}

/* A padded cell and its gap, or (width < 0) the last one and the newline */
static void
print_cell(const char *text, int width)
{
	if (width < 0)
		printf("%s\n", text);
	else
		printf("%-*s  ", width, text);
}

/* rows: array of objects; cols: the keys to show, in order. */
static void
print_table(json_t *rows, const char *const *cols)
{
	size_t ncol, c, r, w[32] = {0};
	char buf[512];

	for (ncol = 0; ncol < 32 && cols[ncol] != NULL; ncol++)
		w[ncol] = strlen(cols[ncol]);
	for (r = 0; r < json_array_size(rows); r++)
		for (c = 0; c < ncol; c++) {
			cell(json_object_get(json_array_get(rows, r), cols[c]),
			    cols[c], buf, sizeof(buf));
			if (strlen(buf) > w[c])
				w[c] = strlen(buf);
		}
	for (c = 0; c < ncol; c++) {
		char up[64];
		size_t i;

		for (i = 0; cols[c][i] && i < sizeof(up) - 1; i++)
			up[i] = cols[c][i] == '_' ? ' ' :
			    (char)(cols[c][i] >= 'a' && cols[c][i] <= 'z' ?
			    cols[c][i] - 32 : cols[c][i]);
		up[i] = '\0';
		print_cell(up, c + 1 < ncol ? (int)w[c] : -1);
	}
	for (r = 0; r < json_array_size(rows); r++)
		for (c = 0; c < ncol; c++) {
			cell(json_object_get(json_array_get(rows, r), cols[c]),
			    cols[c], buf, sizeof(buf));
			print_cell(buf, c + 1 < ncol ? (int)w[c] : -1);
		}
}

/* One object as "key: value" lines, skipping nested arrays. */
static void
print_fields(json_t *obj, const char *const *keys)
{
	char buf[512];
	size_t i;

	for (i = 0; keys[i] != NULL; i++) {
		cell(json_object_get(obj, keys[i]), keys[i], buf, sizeof(buf));
		printf("%-15s %s\n", keys[i], buf);
	}
}

static void
print_rows(json_t *rows, const char *const *cols)
{
	if (json_out)
		print_json(rows);
	else
		print_table(rows, cols);
}

/* ---- artifact ---- */

/*
 * Write a whole file: temp, fsync, rename, so that a crash leaves the old
 * file or the new one, never half of one. Dies on error.
 */
static void
write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX + 8];
	const uint8_t *p = data;
	ssize_t n;
	int fd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		die("'%s': path is too long", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0)
		die("cannot write '%s': %s", path, strerror(errno));
	for (; len > 0; p += n, len -= (size_t)n)
		if ((n = write(fd, p, len)) <= 0)
			break;
	if (len > 0 || fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) <
	    0) {
		int e = errno;

		unlink(tmp);
		die("cannot write '%s': %s", path, strerror(e));
	}
}

/* A whole file, mapped read-only (an empty one too); dies on error. */
static const uint8_t *
map_file(const char *path, size_t *len)
{
	static const uint8_t empty[1];
	struct stat st;
	void *map;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
		die("cannot open '%s': %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		die("'%s' is not a file", path);
	*len = (size_t)st.st_size;
	if (*len == 0) {
		close(fd);
		return empty;
	}
	map = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		die("cannot read '%s': %s", path, strerror(errno));
	return map;
}

/* A whole small file (PEM, signature) into memory; dies on error. */
static char *
read_small(const char *path, size_t max, size_t *len)
{
	char *buf;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		die("cannot open '%s': %s", path, strerror(errno));
	if ((buf = malloc(max + 1)) == NULL)
		die("out of memory");
	n = read(fd, buf, max + 1);
	close(fd);
	if (n < 0)
		die("cannot read '%s': %s", path, strerror(errno));
	if ((size_t)n > max)
		die("'%s' is larger than %zu bytes", path, max);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

static struct store *
open_store(void)
{
	if (the_store == NULL &&
	    store_open(conf.state_dir, &the_store) != OTAD_OK)
		die("cannot open the artifact store in '%s'", conf.state_dir);
	return the_store;
}

static int
artifact_add(struct opts *o)
{
	struct catalog_artifact a;
	struct registry *reg;
	char why[512], sha[65], *sig = NULL;
	size_t siglen = 0;
	json_t *row;
	int fd, kind;

	if (o->argc != 1)
		usage();
	if (o->version != NULL)
		check_version(o->version);
	check_product(o->product);
	if ((kind = o->kind ? fsimg_kind_parse(o->kind) : KIND_APP) < 0)
		die("unknown --kind '%s': app, spiffs, littlefs or fatfs",
		    o->kind);
	if (kind != KIND_APP && o->version == NULL)
		die("a %s image says nothing of its version: give --version",
		    o->kind);
	if ((o->signature == NULL) != (o->key == NULL))
		die("--signature and --key go together");
	if ((fd = open(o->argv[0], O_RDONLY | O_CLOEXEC)) < 0)
		die("cannot open '%s': %s", o->argv[0], strerror(errno));
	reg = open_registry();
	if (o->signature != NULL)
		sig = read_small(o->signature, SIGN_MAX_SIG, &siglen);
	memset(&a, 0, sizeof(a));
	a.version = o->version;
	a.product = o->product;
	a.kind = (enum artifact_kind)kind;
	a.key = o->key;
	a.sig = (const uint8_t *)sig;
	a.siglen = siglen;
	if (catalog_artifact_add(reg, open_store(), fd, &a, sha, why,
	    sizeof(why)) != OTAD_OK)
		die("cannot add '%s': %s", o->argv[0], why);
	close(fd);
	free(sig);
	if (json_out) {
		if (registry_artifact_get(reg, sha, &row, why, sizeof(why)) !=
		    OTAD_OK)
			die("%s", why);
		print_json(row);
		json_decref(row);
	} else {
		puts(sha);
	}
	return 0;
}

/* <state_dir>/keys/<name>.pem, where server-held private keys live */
static void
key_path(const char *name, char *buf, size_t len)
{
	if ((size_t)snprintf(buf, len, "%s/keys/%s.pem", conf.state_dir, name)
	    >= len)
		die("state_dir is too long");
}

static int
artifact_sign(struct opts *o)
{
	char why[256], sha[65];

	if (o->argc != 1 || o->key == NULL)
		die("artifact sign needs SHA256 and --key NAME");
	open_registry();
	if (catalog_artifact_sign(the_reg, open_store(), conf.state_dir,
	    o->argv[0], o->key, sha, why, sizeof(why)) != OTAD_OK)
		die("%s", why);
	wait_served();
	if (json_out)
		printf("{\"artifact\": \"%s\", \"key\": \"%s\"}\n", sha,
		    o->key);
	else
		printf("artifact %.12s signed with key %s\n", sha, o->key);
	return 0;
}

static int
artifact_list(void)
{
	static const char *const cols[] = {"sha256", "version", "product",
	    "chip", "size", "created", NULL};
	struct registry *reg = open_registry();
	json_t *rows;

	if (registry_artifact_list(reg, &rows) != OTAD_OK)
		die("cannot read artifacts");
	print_rows(rows, cols);
	json_decref(rows);
	return 0;
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
	struct registry *reg;
	char why[256];
	json_t *row, *sigs, *blocks;

	if (o->argc != 1)
		usage();
	reg = open_registry();
	if (registry_artifact_get(reg, o->argv[0], &row, why, sizeof(why)) !=
	    OTAD_OK)
		die("%s", why);
	if (registry_artifact_signatures(reg, json_string_value(
	    json_object_get(row, "sha256")), &sigs) != OTAD_OK)
		die("cannot read signatures");
	json_object_set_new(row, "signatures", sigs);
	if (strcmp(json_string_value(json_object_get(row, "kind")), "app") ==
	    0)
		blocks = catalog_secure_boot_blocks(the_reg, open_store(),
		    json_string_value(json_object_get(row, "sha256")));
	else
		blocks = json_array();
	json_object_set_new(row, "secure_boot_blocks", blocks);
	if (json_out) {
		print_json(row);
	} else {
		print_fields(row, keys);
		printf("\nsignatures:\n");
		print_table(sigs, sigcols);
		if (json_array_size(blocks) > 0) {
			printf("\nsecure boot blocks:\n");
			print_table(blocks, blockcols);
		}
	}
	json_decref(row);
	return 0;
}

/* ---- release ---- */

static int
release_create(struct opts *o)
{
	struct catalog_release r;
	char why[512], sha[65];
	int64_t id;

	if (o->argc != 1)
		usage();
	if (o->artifact == NULL)
		die("release create needs --artifact SHA256");
	memset(&r, 0, sizeof(r));
	r.version = o->argv[0];
	r.artifact = o->artifact;
	r.product = o->product;
	r.hw_rev = o->hw_rev;
	r.min_from = o->min_from;
	r.forced = o->forced;
	r.confirm_secure_version = o->confirm_sv;
	open_registry();
	if (catalog_release_create(the_reg, &r, conf.require_signature, &id,
	    sha, why, sizeof(why)) != OTAD_OK)
		die("%s", why);
	if (json_out) {
		json_t *v = json_pack("{s:I,s:s,s:s,s:s?}", "id", (json_int_t)id,
		    "version", o->argv[0], "artifact", sha, "product",
		    o->product);

		print_json(v);
		json_decref(v);
	} else {
		printf("release %s created (id %lld, artifact %.12s)\n",
		    o->argv[0], (long long)id, sha);
	}
	return 0;
}

static int
release_list(void)
{
	static const char *const cols[] = {"id", "version", "product",
	    "chip", "hw_rev", "min_from", "secure_version", "artifact",
	    "rollout_state", "succeeded", "created", NULL};
	struct registry *reg = open_registry();
	json_t *rows;

	if (registry_release_list(reg, &rows) != OTAD_OK)
		die("cannot read releases");
	print_rows(rows, cols);
	json_decref(rows);
	return 0;
}

static int
release_publish(struct opts *o)
{
	struct registry *reg;
	char why[512];
	int64_t rollout;
	int awaiting;

	if (o->argc != 1)
		usage();
	check_version(o->argv[0]);
	check_product(o->product);
	break_glass = o->break_glass;
	reg = open_registry();
	if (registry_release_publish(reg, o->argv[0], o->product, o->chip,
	    &rollout, &awaiting, why, sizeof(why)) != OTAD_OK)
		die("%s", why);
	if (!awaiting)
		wait_served();
	if (json_out) {
		json_t *v = json_pack("{s:s,s:I,s:b}", "version", o->argv[0],
		    "rollout", (json_int_t)rollout, "awaiting_approval",
		    awaiting);

		print_json(v);
		json_decref(v);
	} else if (awaiting) {
		printf("release %s: rollout %lld awaits a second operator's "
		    "approval (otactl rollout approve %lld)\n", o->argv[0],
		    (long long)rollout, (long long)rollout);
	} else {
		printf("release %s published to every matching device "
		    "(rollout %lld)\n", o->argv[0], (long long)rollout);
	}
	return 0;
}

/* ---- rollout ---- */

static int64_t
rollout_id(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v <= 0)
		die("'%s' is not a rollout id", s);
	return (int64_t)v;
}

static int
rollout_create(struct opts *o)
{
	struct catalog_rollout r;
	char why[256];
	size_t nstages;
	int64_t id;

	if (o->argc != 1)
		usage();
	if (o->stages == NULL)
		die("rollout create needs --stages SPEC, e.g. \"group=canary,"
		    "soak=24h,min=5; 10%%,soak=48h; 100%%\"");
	memset(&r, 0, sizeof(r));
	r.version = o->argv[0];
	r.stages = o->stages;
	r.window = o->window;
	r.days = o->days;
	r.utc_offset = o->utc_offset;
	r.min_battery = o->min_battery;
	r.timeout = o->timeout;
	r.product = o->product;
	r.chip = o->chip;
	r.downgrade = o->downgrade;
	break_glass = o->break_glass;
	open_registry();
	if (catalog_rollout_create(the_reg, &r, &id, &nstages, why,
	    sizeof(why)) != OTAD_OK)
		die("%s", why);
	if (json_out)
		printf("{\"id\": %lld, \"version\": \"%s\", \"state\": "
		    "\"draft\", \"stages\": %zu}\n", (long long)id,
		    o->argv[0], nstages);
	else
		printf("rollout %lld of %s created (draft, %zu stages); start "
		    "it with: otactl rollout start %lld\n", (long long)id,
		    o->argv[0], nstages, (long long)id);
	return 0;
}

static int
rollout_action(struct opts *o, enum rollout_action action)
{
	static const char *const done[] = {"started", "paused", "resumed",
	    "aborted", "approved and started"};
	char why[256];
	int64_t id;

	if (o->argc != 1)
		usage();
	id = rollout_id(o->argv[0]);
	break_glass = o->break_glass;
	open_registry();
	if (registry_rollout_action(the_reg, id, action, o->force, why,
	    sizeof(why)) != OTAD_OK)
		die("%s", why);
	wait_served();
	if (json_out)
		printf("{\"id\": %lld, \"done\": \"%s\"}\n", (long long)id,
		    done[action]);
	else
		printf("rollout %lld %s\n", (long long)id, done[action]);
	return 0;
}

/* A stage as the operator wrote it: "group=canary" or "10%" */
static void
stage_names(json_t *stages)
{
	size_t i;
	char buf[80];

	for (i = 0; i < json_array_size(stages); i++) {
		json_t *st = json_array_get(stages, i);
		json_t *g = json_object_get(st, "group");

		if (json_is_string(g))
			snprintf(buf, sizeof(buf), "group=%s",
			    json_string_value(g));
		else
			snprintf(buf, sizeof(buf), "%g%%", json_number_value(
			    json_object_get(st, "percent")));
		json_object_set_new(st, "ring", json_string(buf));
	}
}

static int
rollout_status(struct opts *o)
{
	static const char *const cols[] = {"no", "ring", "targeted",
	    "offered", "in_progress", "succeeded", "rolled_back", "failed",
	    "timed_out", "deferred", "success_rate", "rollback_rate",
	    "failure_rate", "crash_rate", "brownouts", "soak_left", "breach",
	    NULL};
	char why[256];
	json_t *rows;
	size_t i;

	if (o->argc > 1)
		usage();
	open_registry();
	if (registry_rollout_status(the_reg, o->argc ? rollout_id(o->argv[0])
	    : 0, (int64_t)time(NULL), &rows, why, sizeof(why)) != OTAD_OK)
		die("%s", why);
	if (json_out) {
		print_json(rows);
		json_decref(rows);
		return 0;
	}
	for (i = 0; i < json_array_size(rows); i++) {
		json_t *ro = json_array_get(rows, i);
		json_t *reason = json_object_get(ro, "reason");
		char started[64];

		cell(json_object_get(ro, "started"), "started", started,
		    sizeof(started));
		printf("%srollout %lld: %s%s%s, %s%s, stage %lld, started %s"
		    "%s%s\n", i ? "\n" : "",
		    (long long)json_integer_value(json_object_get(ro, "id")),
		    json_string_value(json_object_get(ro, "version")),
		    json_is_string(json_object_get(ro, "product")) ?
		    " for " : "", json_is_string(json_object_get(ro,
		    "product")) ? json_string_value(json_object_get(ro,
		    "product")) : "", json_string_value(json_object_get(ro,
		    "state")), json_integer_value(json_object_get(ro,
		    "staged")) ? "" : " (published to all)",
		    (long long)json_integer_value(json_object_get(ro, "stage")),
		    started, json_is_string(reason) ? ": " : "",
		    json_is_string(reason) ? json_string_value(reason) : "");
		if (json_array_size(json_object_get(ro, "stages")) > 0) {
			stage_names(json_object_get(ro, "stages"));
			print_table(json_object_get(ro, "stages"), cols);
		}
	}
	json_decref(rows);
	return 0;
}

/* ---- key ---- */

static void
check_key_name(const char *name)
{
	if (!catalog_valid_name(name))
		die("invalid key name '%s': 1 to 64 of A-Z a-z 0-9 . _ -",
		    name);
}

/* Say that key name was added (held: where its private half is). */
static void
key_say(const char *name, const char *held)
{
	const char *algo, *purpose, *fp;
	char why[256];
	json_t *row;

	if (registry_key_get(the_reg, name, &row, why, sizeof(why)) != OTAD_OK)
		die("%s", why);
	algo = json_string_value(json_object_get(row, "algo"));
	purpose = json_string_value(json_object_get(row, "purpose"));
	fp = json_string_value(json_object_get(row, "fingerprint"));
	if (json_out)
		printf("{\"name\": \"%s\", \"algo\": \"%s\", \"purpose\": "
		    "\"%s\", \"fingerprint\": \"%s\"}\n", name, algo,
		    purpose, fp);
	else
		printf("key %s %s: %s, %s, fingerprint %s%s%s\n", name,
		    held ? "generated" : "added", algo, purpose, fp,
		    held ? ", private key in " : "", held ? held : "");
	json_decref(row);
}

/*
 * Record key in the registry and say so; dies on error. held is the path
 * of its private half for a server-held key (removed if the record
 * fails), NULL for a key whose private half stays elsewhere.
 */
static void
key_record(const char *name, const struct sign_key *key, const char *purpose,
    const char *held)
{
	char fp[65], why[256], *pem = NULL;
	enum otad_err rc = OTAD_ERR_NOMEM;

	if (sign_key_fingerprint(key, fp) == OTAD_OK &&
	    (pem = sign_key_public_pem(key)) != NULL)
		rc = registry_key_add(the_reg, name, sign_key_algo(key),
		    purpose, pem, fp, held != NULL, why, sizeof(why));
	free(pem);
	if (rc != OTAD_OK) {
		if (held != NULL)
			unlink(held);
		die("%s", rc == OTAD_ERR_NOMEM ? "cannot encode the key" : why);
	}
	key_say(name, held);
}

static int
key_add(struct opts *o)
{
	char why[256], digest[65], warning[256], *pem;
	size_t len;

	if (o->argc != 1 || o->public == NULL)
		die("key add needs NAME and --public PEM");
	check_key_name(o->argv[0]);
	pem = read_small(o->public, 64 * 1024, &len);
	open_registry();
	if (catalog_key_add(the_reg, o->argv[0], pem, len, o->secure_boot,
	    digest, warning, sizeof(warning), why, sizeof(why)) != OTAD_OK)
		die("%s: %s", o->public, why);
	free(pem);
	key_say(o->argv[0], NULL);
	if (o->secure_boot && !json_out)
		printf("eFuse key digest (espsecure digest-sbv2-public-key, "
		    "espefuse summary): %s\n", digest);
	if (warning[0] != '\0')
		fprintf(stderr, "otactl: warning: %s\n", warning);
	return 0;
}

static int
key_generate(struct opts *o)
{
	const char *algo = o->algo ? o->algo : "ecdsa-p256";
	char path[PATH_MAX], dir[PATH_MAX], why[256], *pem;
	struct sign_key *key;
	json_t *row;
	size_t len;
	int lock;

	if (o->argc != 1)
		usage();
	check_key_name(o->argv[0]);
	if (strcmp(algo, "ecdsa-p256") != 0 && strcmp(algo, "ed25519") != 0)
		die("--algo is ecdsa-p256 or ed25519, not '%s'", algo);
	open_registry();
	if ((size_t)snprintf(dir, sizeof(dir), "%s/keys", conf.state_dir) >=
	    sizeof(dir))
		die("state_dir is too long");
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		die("cannot create '%s': %s", dir, strerror(errno));
	key_path(o->argv[0], path, sizeof(path));
	/*
	 * One generate at a time (an flock on the keys directory): then a
	 * key file without a key row is what a killed generate left, not a
	 * key another generate is about to record, and it is replaced.
	 */
	if ((lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    flock(lock, LOCK_EX) < 0)
		die("cannot lock '%s': %s", dir, strerror(errno));
	if (registry_key_get(the_reg, o->argv[0], &row, why, sizeof(why)) ==
	    OTAD_OK) {
		json_decref(row);
		die("key '%s' exists already", o->argv[0]);
	}
	if (access(path, F_OK) == 0)
		log_warnx("replacing '%s': a generate that did not finish left "
		    "it, and no key is recorded under that name", path);
	if (sign_generate(algo, &key) != OTAD_OK ||
	    (pem = sign_key_private_pem(key)) == NULL)
		die("cannot generate a key");
	len = strlen(pem);
	write_atomic(path, pem, len, 0600);
	explicit_bzero(pem, len);
	free(pem);
	key_record(o->argv[0], key, "artifact", path);
	sign_key_free(key);
	close(lock); /* recorded: the next generate may look */
	return 0;
}

static int
key_list(void)
{
	static const char *const cols[] = {"name", "algo", "purpose", "state",
	    "server_held", "signatures", "fingerprint", "efuse_digest",
	    "created", NULL};
	json_t *rows;

	open_registry();
	if (catalog_key_list(the_reg, &rows) != OTAD_OK)
		die("cannot read keys");
	print_rows(rows, cols);
	json_decref(rows);
	return 0;
}

static int
key_revoke(struct opts *o)
{
	char why[256];

	if (o->argc != 1)
		usage();
	open_registry();
	if (registry_key_revoke(the_reg, o->argv[0], why, sizeof(why)) !=
	    OTAD_OK)
		die("%s", why);
	wait_served();
	if (json_out)
		printf("{\"name\": \"%s\", \"state\": \"revoked\"}\n",
		    o->argv[0]);
	else
		printf("key %s revoked: artifacts signed only by it are no "
		    "longer offered\n", o->argv[0]);
	return 0;
}

/* ---- device ---- */

static int
device_list(struct opts *o)
{
	static const char *const cols[] = {"id", "version", "product",
	    "last_seen", "address", "checks", "last_attempt", NULL};
	struct registry *reg = open_registry();
	json_t *rows;

	if (registry_device_list(reg, (int64_t)time(NULL),
	    o->offline ? (int64_t)conf.offline_after : 0, &rows) != OTAD_OK)
		die("cannot read devices");
	print_rows(rows, cols);
	json_decref(rows);
	return 0;
}

static int
device_set(struct opts *o)
{
	struct registry *reg;
	char why[256];

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
	reg = open_registry();
	if (registry_device_set(reg, o->argv[0], o->group, o->hw_rev, o->chip,
	    why, sizeof(why)) != OTAD_OK)
		die("%s", why);
	if (!json_out)
		printf("device %s updated\n", o->argv[0]);
	else
		puts("{}");
	return 0;
}

/* A device id as devices send it (the same rule the daemon applies). */
static void
check_device_id(const char *id)
{
	size_t n;

	for (n = 0; id[n] != '\0'; n++) {
		char c = id[n];

		if (n >= OTAD_ID_MAX || !((c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == ':'))
			die("invalid device id '%s': 1 to 64 of A-Z a-z 0-9 . "
			    "_ : -", id);
	}
	if (n == 0)
		die("invalid device id ''");
}

static int
device_add(struct opts *o)
{
	char token[AUTH_TOKEN_LEN + 1], hash[65], why[256];

	if (o->argc != 1)
		usage();
	check_device_id(o->argv[0]);
	check_token("--group", o->group);
	open_registry();
	if (auth_token_new(token) != OTAD_OK ||
	    auth_token_hash(token, hash) != OTAD_OK)
		die("cannot make a token");
	if (registry_device_add(the_reg, o->argv[0], o->group, hash, why,
	    sizeof(why)) != OTAD_OK)
		die("%s", why);
	/* shown once: only its hash is kept */
	if (json_out)
		printf("{\"device\": \"%s\", \"token\": \"%s\"}\n",
		    o->argv[0], token);
	else
		printf("device %s added; its token (shown only now): %s\n",
		    o->argv[0], token);
	explicit_bzero(token, sizeof(token));
	return 0;
}

/* ---- operator ---- */

static int
operator_add(struct opts *o)
{
	static const char *const roles[] = {"viewer", "operator", "admin",
	    "ci", NULL};
	char token[AUTH_TOKEN_LEN + 1], hash[65], why[256];
	size_t i;

	if (o->argc != 1 || o->role == NULL)
		die("operator add needs NAME and --role viewer|operator|admin|"
		    "ci");
	check_key_name(o->argv[0]);
	for (i = 0; roles[i] != NULL && strcmp(roles[i], o->role) != 0; i++)
		continue;
	if (roles[i] == NULL)
		die("--role is viewer, operator, admin or ci, not '%s'",
		    o->role);
	open_registry();
	if (auth_token_new(token) != OTAD_OK ||
	    auth_token_hash(token, hash) != OTAD_OK)
		die("cannot make a token");
	if (registry_operator_add(the_reg, o->argv[0], o->role, hash, why,
	    sizeof(why)) != OTAD_OK)
		die("%s", why);
	/* shown once: only its hash is kept */
	if (json_out)
		printf("{\"operator\": \"%s\", \"role\": \"%s\", \"token\": "
		    "\"%s\"}\n", o->argv[0], o->role, token);
	else
		printf("operator %s added as %s; their token (shown only now): "
		    "%s\n", o->argv[0], o->role, token);
	explicit_bzero(token, sizeof(token));
	return 0;
}

static int
operator_list(void)
{
	static const char *const cols[] = {"name", "role", "state", "created",
	    "revoked_at", NULL};
	json_t *rows;

	open_registry();
	if (registry_operator_list(the_reg, &rows) != OTAD_OK)
		die("cannot read operators");
	print_rows(rows, cols);
	json_decref(rows);
	return 0;
}

static int
operator_revoke(struct opts *o)
{
	char why[256];

	if (o->argc != 1)
		usage();
	open_registry();
	if (registry_operator_revoke(the_reg, o->argv[0], why, sizeof(why)) !=
	    OTAD_OK)
		die("%s", why);
	if (json_out)
		printf("{\"operator\": \"%s\", \"state\": \"revoked\"}\n",
		    o->argv[0]);
	else
		printf("operator %s revoked: their token is refused from the "
		    "next request\n", o->argv[0]);
	return 0;
}

/* revoke-token, block, unblock: one word, one registry call */
static int
device_change(struct opts *o, const char *what)
{
	char why[256];
	enum otad_err rc;

	if (o->argc != 1)
		usage();
	open_registry();
	if (strcmp(what, "revoke-token") == 0)
		rc = registry_device_revoke_token(the_reg, o->argv[0], why,
		    sizeof(why));
	else
		rc = registry_device_block(the_reg, o->argv[0],
		    strcmp(what, "block") == 0, why, sizeof(why));
	if (rc != OTAD_OK)
		die("%s", why);
	if (json_out)
		printf("{\"device\": \"%s\", \"done\": \"%s\"}\n",
		    o->argv[0], what);
	else
		printf("device %s: %s done\n", o->argv[0], what);
	return 0;
}

/*
 * Ask otad to send the device a trigger over MQTT now, and wait a little
 * to say whether it went out.
 */
static int
device_nudge(struct opts *o)
{
	char why[256], version[OTAD_VERSION_MAX + 1] = "";
	int64_t id;
	int waited, sent = 0;

	if (o->argc != 1)
		usage();
	check_device_id(o->argv[0]);
	if (conf.mqtt_host[0] == '\0')
		die("MQTT is off: set mqtt_host in the configuration to nudge "
		    "devices");
	open_registry();
	if (registry_nudge(the_reg, o->argv[0], &id, why, sizeof(why)) !=
	    OTAD_OK)
		die("%s", why);
	for (waited = 0; waited < 5000 && !sent; waited += 100) {
		if ((sent = registry_nudge_sent(the_reg, id, version,
		    sizeof(version))) == 0)
			usleep(100 * 1000);
	}
	if (json_out) {
		json_t *j = json_pack("{s:s,s:I,s:b,s:s?}", "device",
		    o->argv[0], "nudge", (json_int_t)id, "sent", sent,
		    "version", version[0] ? version : NULL);

		if (j == NULL)
			die("out of memory");
		print_json(j);
		json_decref(j);
	}	else if (!sent)
		printf("device %s: nudge queued; otad sends it once it is "
		    "connected to the MQTT broker\n", o->argv[0]);
	else if (version[0] != '\0')
		printf("device %s nudged: trigger for %s sent\n", o->argv[0],
		    version);
	else
		printf("device %s nudged: nothing to offer it, told to check "
		    "in\n", o->argv[0]);
	return 0;
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
	struct registry *reg;
	char why[256];
	json_t *obj;

	if (o->argc != 1)
		usage();
	reg = open_registry();
	if (registry_device_show(reg, o->argv[0], &obj, why, sizeof(why)) !=
	    OTAD_OK)
		die("%s", why);
	if (json_out) {
		print_json(obj);
	} else {
		print_fields(obj, keys);
		printf("\nattempts (newest first):\n");
		print_table(json_object_get(obj, "attempts"), cols);
	}
	json_decref(obj);
	return 0;
}

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

static int
status(void)
{
	static const char *const vcols[] = {"version", "devices", NULL};
	static const char *const acols[] = {"state", "attempts", NULL};
	static const char *const ocols[] = {"rollout", "version", "product",
	    "started", NULL};
	struct registry *reg = open_registry();
	json_t *obj;

	if (registry_status(reg, (int64_t)time(NULL), &obj) != OTAD_OK)
		die("cannot read status");
	if (json_out) {
		print_json(obj);
	} else {
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

int
main(int argc, char *argv[])
{
	const char *conf_path = getenv("OTAD_CONF");
	char err[CONF_ERR_MAX];
	char *words[64];
	int nwords = 0, i;
	struct opts o;

	log_init("otactl", 0);
	atexit(cleanup);
	if (conf_path == NULL)
		conf_path = OTAD_CONF;
	/* global options may stand anywhere */
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 ||
		    strcmp(argv[i], "--config") == 0) {
			if (++i >= argc)
				usage();
			conf_path = argv[i];
		} else if (strcmp(argv[i], "--json") == 0) {
			json_out = 1;
		} else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			usage();
		} else if (nwords < 63) {
			words[nwords++] = argv[i];
		} else {
			usage();
		}
	}
	words[nwords] = NULL;
	if (nwords < 1)
		usage();
	/* delta works on files alone: no configuration needed */
	if (strcmp(words[0], "delta") == 0 && nwords >= 2) {
		parse_opts(nwords - 2, words + 2, &o, "--output --raw --sha256");
		if (strcmp(words[1], "create") == 0)
			return delta_create_cmd(&o);
		if (strcmp(words[1], "apply") == 0)
			return delta_apply_cmd(&o);
		usage();
	}
	if (conf_load(conf_path, &conf, err, sizeof(err)) < 0)
		die("%s", err);

	if (strcmp(words[0], "artifact") == 0 && nwords >= 2) {
		parse_opts(nwords - 2, words + 2, &o,
		    "--version --product --signature --key --kind");
		if (strcmp(words[1], "add") == 0)
			return artifact_add(&o);
		if (strcmp(words[1], "sign") == 0)
			return artifact_sign(&o);
		if (strcmp(words[1], "list") == 0 && o.argc == 0)
			return artifact_list();
		if (strcmp(words[1], "show") == 0)
			return artifact_show(&o);
	} else if (strcmp(words[0], "release") == 0 && nwords >= 2) {
		parse_opts(nwords - 2, words + 2, &o, "--artifact --product "
		    "--hw-rev --chip --min-from --confirm-secure-version --forced "
		    "--break-glass");
		if (strcmp(words[1], "create") == 0)
			return release_create(&o);
		if (strcmp(words[1], "list") == 0 && o.argc == 0)
			return release_list();
		if (strcmp(words[1], "publish") == 0)
			return release_publish(&o);
	} else if (strcmp(words[0], "device") == 0 && nwords >= 2) {
		parse_opts(nwords - 2, words + 2, &o,
		    "--offline --group --hw-rev --chip");
		if (strcmp(words[1], "list") == 0 && o.argc == 0)
			return device_list(&o);
		if (strcmp(words[1], "set") == 0)
			return device_set(&o);
		if (strcmp(words[1], "add") == 0)
			return device_add(&o);
		if (strcmp(words[1], "revoke-token") == 0 ||
		    strcmp(words[1], "block") == 0 ||
		    strcmp(words[1], "unblock") == 0)
			return device_change(&o, words[1]);
		if (strcmp(words[1], "show") == 0)
			return device_show(&o);
		if (strcmp(words[1], "nudge") == 0)
			return device_nudge(&o);
	} else if (strcmp(words[0], "rollout") == 0 && nwords >= 2) {
		parse_opts(nwords - 2, words + 2, &o, "--stages --window --days "
		    "--utc-offset --min-battery --timeout --downgrade --product "
		    "--chip --force --break-glass");
		if (strcmp(words[1], "create") == 0)
			return rollout_create(&o);
		if (strcmp(words[1], "start") == 0)
			return rollout_action(&o, ROLLOUT_START);
		if (strcmp(words[1], "pause") == 0)
			return rollout_action(&o, ROLLOUT_PAUSE);
		if (strcmp(words[1], "resume") == 0)
			return rollout_action(&o, ROLLOUT_RESUME);
		if (strcmp(words[1], "abort") == 0)
			return rollout_action(&o, ROLLOUT_ABORT);
		if (strcmp(words[1], "approve") == 0)
			return rollout_action(&o, ROLLOUT_APPROVE);
		if (strcmp(words[1], "status") == 0)
			return rollout_status(&o);
	} else if (strcmp(words[0], "operator") == 0 && nwords >= 2) {
		parse_opts(nwords - 2, words + 2, &o, "--role");
		if (strcmp(words[1], "add") == 0)
			return operator_add(&o);
		if (strcmp(words[1], "list") == 0 && o.argc == 0)
			return operator_list();
		if (strcmp(words[1], "revoke") == 0)
			return operator_revoke(&o);
	} else if (strcmp(words[0], "key") == 0 && nwords >= 2) {
		parse_opts(nwords - 2, words + 2, &o,
		    "--public --secure-boot --algo");
		if (strcmp(words[1], "add") == 0)
			return key_add(&o);
		if (strcmp(words[1], "generate") == 0)
			return key_generate(&o);
		if (strcmp(words[1], "list") == 0 && o.argc == 0)
			return key_list();
		if (strcmp(words[1], "revoke") == 0)
			return key_revoke(&o);
	} else if (strcmp(words[0], "status") == 0 && nwords == 1) {
		return status();
	}
	usage();
}
