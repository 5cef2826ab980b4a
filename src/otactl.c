/*
 * otactl.c: the operator's tool. Runs each operation (ops.h) on the same
 * database and store as otad (the daemon notices changes within a
 * second), or with --url on a remote otad's management API, with the same
 * answers. Every command prints a table by default and JSON with --json,
 * and on error one line on stderr and a non-zero exit. The commands
 * themselves are in cli_*.c, one file per group.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
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

#include "cli.h"
#include "conf.h"
#include "log.h"
#include "ops.h"
#include "registry.h"
#include "semver.h"
#include "store.h"

#ifndef OTAD_CONF
#define OTAD_CONF "/etc/otad/otad.conf"
#endif

int json_out;
struct conf conf;
/* open for the whole command; closed at exit, after die() too */
static struct registry *the_reg;
static struct store *the_store;
/* Where operations run: here (url NULL) or on the server at url. */
static struct {
	const char *url, *cacert;
	char *token;
} remote;
static void
cleanup(void)
{
	registry_close(the_reg);
	store_free(the_store);
	the_reg = NULL;
	the_store = NULL;
	if (remote.token != NULL)
		explicit_bzero(remote.token, strlen(remote.token));
	free(remote.token);
	remote.token = NULL;
}

_Noreturn void
usage(void)
{
	fprintf(stderr,
	    "usage: otactl [-c FILE] [--json] COMMAND\n"
	    "       otactl --url https://HOST:PORT [--token-file FILE]"
	    " [--cacert PEM] [--json] COMMAND\n"
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
	    "    [--promote-window 'tue-thu 09:00-16:00'] [--on-halt revert]\n"
	    "  rollout simulate VERSION --stages SPEC [--failure-rate R]"
	    " [--crash-rate R]\n"
	    "    [--poll-interval 1h] [--seed N] [--horizon 30d]"
	    " (and create's options)\n"
	    "  rollout start|pause|abort ID | resume ID [--force [--reverted"
	    " keep|offer]] |"
	    " status [ID]\n"
	    "  rollout approve ID | start ID --break-glass REASON\n"
	    "  operator add NAME --role viewer|operator|admin|ci |"
	    " list | revoke NAME\n"
	    "  device list [--offline] | show ID\n"
	    "  device set ID [--group G] [--hw-rev R] [--chip C]\n"
	    "  device add ID [--group G] | revoke-token ID | block ID |"
	    " unblock ID\n"
	    "  device clear ID   (out of quarantine) | nudge ID\n"
	    "  delta create BASE TARGET -o PATCH [--raw]\n"
	    "  delta apply BASE PATCH -o OUT [--sha256 HEX]\n"
	    "  status | audit [--actor NAME] [--before ID] [--limit N]\n");
	exit(EXIT_USAGE);
}

/* One clear line and a non-zero exit. */
_Noreturn void
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

#define OPT(name, field) {name, offsetof(struct opts, field)}

/* options that stand alone, and options that take a value */
static const struct {
	const char *name;
	size_t offset;
} flags[] = {
	OPT("--offline", offline), OPT("--secure-boot", secure_boot),
	OPT("--confirm-secure-version", confirm_sv), OPT("--forced", forced),
	OPT("--force", force), OPT("--downgrade", downgrade),
	OPT("--raw", raw),
}, values[] = {
	OPT("--version", version), OPT("--product", product),
	OPT("--artifact", artifact), OPT("--hw-rev", hw_rev),
	OPT("--group", group), OPT("--chip", chip),
	OPT("--signature", signature), OPT("--key", key),
	OPT("--public", public), OPT("--algo", algo),
	OPT("--min-from", min_from), OPT("--stages", stages),
	OPT("--window", window), OPT("--days", days),
	OPT("--utc-offset", utc_offset),
	OPT("--promote-window", promote_window), OPT("--on-halt", on_halt),
	OPT("--reverted", reverted), OPT("--min-battery", min_battery),
	OPT("--timeout", timeout), OPT("--output", output),
	OPT("--sha256", sha256), OPT("--kind", kind),
	OPT("--break-glass", break_glass), OPT("--role", role),
	OPT("--actor", actor), OPT("--before", before),
	OPT("--limit", limit), OPT("--failure-rate", failure_rate),
	OPT("--crash-rate", crash_rate), OPT("--poll-interval", poll_interval),
	OPT("--seed", seed), OPT("--horizon", horizon),
};

static void
parse_opts(int argc, char **argv, struct opts *o, const char *allowed)
{
	static char *pos[64];
	size_t k;
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
		for (k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
			if (strcmp(a, flags[k].name) == 0)
				break;
		if (k < sizeof(flags) / sizeof(flags[0])) {
			*(int *)(void *)((char *)o + flags[k].offset) = 1;
			continue;
		}
		for (k = 0; k < sizeof(values) / sizeof(values[0]); k++)
			if (strcmp(a, values[k].name) == 0)
				break;
		if (k == sizeof(values) / sizeof(values[0]))
			die("unknown option '%s'", a);
		slot = (const char **)(void *)((char *)o + values[k].offset);
		if (i + 1 >= argc)
			die("%s needs a value", a);
		*slot = argv[++i];
	}
	pos[o->argc] = NULL;
}

void
check_version(const char *v)
{
	if (!semver_valid(v))
		die("invalid version '%s': 1 to 64 printable characters, no "
		    "spaces", v);
}

/* An optional option value: 1 to 64 printable characters, no spaces. */
void
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

/* the registry's database: a file, or PostgreSQL's connection string */
static char db_target[PATH_MAX + 16];

/* On a node of a cluster, what another node stored is fetched. */
static void
fetch_from_registry(void)
{
	if (the_store != NULL && the_reg != NULL &&
	    registry_clustered(the_reg))
		store_set_source(the_store, registry_fetch_artifact,
		    db_target);
}

static struct registry *
open_registry(void)
{
	char *path = db_target, actor[96];
	struct passwd *pw = getpwuid(getuid());
	struct registry *reg;

	if (mkdir(conf.state_dir, 0750) < 0 && errno != EEXIST)
		die("cannot create state directory '%s': %s", conf.state_dir,
		    strerror(errno));
	if (conf_db_path(&conf, path, sizeof(db_target)) < 0)
		die("state_dir is too long");
	if (registry_open(path, &reg) != OTAD_OK)
		die("cannot open the registry '%s'", path);
	snprintf(actor, sizeof(actor), "otactl:%s",
	    pw ? pw->pw_name : "unknown");
	registry_set_actor(reg, actor);
	registry_set_who(reg, actor);
	registry_set_patience(reg, 10000);
	the_reg = reg;
	fetch_from_registry();
	return reg;
}

void
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
void
cell(json_t *v, const char *col, char *buf, size_t len)
{
	int is_time = strcmp(col, "created") == 0 || strcmp(col, "at") == 0 ||
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
void
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
void
print_fields(json_t *obj, const char *const *keys)
{
	char buf[512];
	size_t i;

	for (i = 0; keys[i] != NULL; i++) {
		cell(json_object_get(obj, keys[i]), keys[i], buf, sizeof(buf));
		printf("%-15s %s\n", keys[i], buf);
	}
}

void
print_rows(json_t *rows, const char *const *cols)
{
	if (json_out)
		print_json(rows);
	else
		print_table(rows, cols);
}

/*
 * Write a whole file: temp, fsync, rename, so that a crash leaves the old
 * file or the new one, never half of one. Dies on error.
 */
void
write_atomic(const char *path, const void *data, size_t len, unsigned mode)
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
const uint8_t *
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
char *
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
	fetch_from_registry();
	return the_store;
}

void
check_device_id(const char *id)
{
	if (!otad_valid_id(id))
		die("invalid device id '%s': 1 to 64 of A-Z a-z 0-9 . _ : -",
		    id);
}

json_t *
cli_args(const char *key, ...)
{
	json_t *o = json_object();
	const char *v;
	va_list ap;

	if (o == NULL)
		die("out of memory");
	va_start(ap, key);
	for (; key != NULL; key = va_arg(ap, const char *))
		if ((v = va_arg(ap, const char *)) != NULL &&
		    json_object_set_new(o, key, json_string(v)) < 0)
			die("'%s' is not text", key);
	va_end(ap);
	return o;
}

int
print_if_json(json_t *answer)
{
	if (!json_out)
		return 0;
	print_json(answer);
	return 1;
}

void
say(json_t *answer, const char *fmt, ...)
{
	va_list ap;

	if (json_out) {
		print_json(answer);
	} else {
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		putchar('\n');
	}
	json_decref(answer);
}

int
cli_list(struct opts *o, const char *op, json_t *args,
    const char *const *cols)
{
	json_t *rows;

	if (o->argc != 0)
		usage();
	rows = cli_run(op, args, NULL);
	print_rows(rows, cols);
	json_decref(rows);
	return 0;
}

json_t *
cli_run(const char *name, json_t *args, const char *upload)
{
	const struct op *op = ops_find(name);
	struct ops_ctx ctx;
	json_t *result;
	char why[512];
	int rc;

	if (op == NULL || args == NULL)
		die("out of memory");
	if (remote.url != NULL) {
		result = cli_remote_call(remote.url, remote.token,
		    remote.cacert, op, args, upload, why, sizeof(why));
		rc = result != NULL ? OTAD_OK : OTAD_ERR_INVALID;
	} else {
		memset(&ctx, 0, sizeof(ctx));
		ctx.upload_fd = -1;
		if (upload != NULL && (ctx.upload_fd = open(upload, O_RDONLY |
		    O_CLOEXEC)) < 0)
			die("cannot open '%s': %s", upload, strerror(errno));
		ctx.reg = open_registry();
		/* only artifacts need the store: the others run read-only */
		if (strncmp(name, "artifact.", 9) == 0)
			ctx.store = open_store();
		ctx.state_dir = conf.state_dir;
		ctx.require_signature = conf.require_signature;
		ctx.approvals = conf.rollout_approvals;
		ctx.promote_window = conf.promote_window;
		ctx.on_halt_revert = conf.on_halt_revert;
		ctx.offline_after = (int64_t)conf.offline_after;
		ctx.mqtt_on = conf.mqtt_host[0] != '\0';
		ctx.role = ROLE_ADMIN; /* whoever may write the database */
		rc = ops_run(op, &ctx, args, &result, why, sizeof(why));
		if (ctx.upload_fd >= 0)
			close(ctx.upload_fd);
	}
	json_decref(args);
	if (rc != OTAD_OK && upload != NULL)
		die("cannot add '%s': %s", upload, why);
	if (rc != OTAD_OK)
		die("%s", why);
	return result;
}

/*
 * Talk to a server: --url (or OTAD_URL), the operator's token from
 * --token-file (or OTAD_TOKEN_FILE, or OTAD_TOKEN itself, as CI systems
 * hand secrets over), the CA from --cacert (or OTAD_CACERT). Never a
 * token on the command line, where every user's ps shows it.
 */
static void
remote_setup(const char *url, const char *token_file, const char *cacert)
{
	const char *env;
	size_t len, host;

	if (url == NULL)
		url = getenv("OTAD_URL");
	if (url == NULL || url[0] == '\0')
		return;
	if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) !=
	    0)
		die("--url is https://HOST:PORT, not '%s'", url);
	host = strncmp(url, "http://", 7) == 0 ? 7 : 0;
	/* a token in clear only to this host: the server's rule too */
	if (host && strncmp(url + host, "127.0.0.1", 9) != 0 &&
	    strncmp(url + host, "localhost", 9) != 0 &&
	    strncmp(url + host, "[::1]", 5) != 0)
		die("'%s' is not https: the token would cross the network in "
		    "clear", url);
	remote.url = url;
	remote.cacert = cacert ? cacert : getenv("OTAD_CACERT");
	if (token_file == NULL)
		token_file = getenv("OTAD_TOKEN_FILE");
	if (token_file != NULL)
		remote.token = read_small(token_file, 256, &len);
	else if ((env = getenv("OTAD_TOKEN")) != NULL &&
	    (remote.token = strdup(env)) == NULL)
		die("out of memory");
	if (remote.token == NULL)
		die("a remote otad needs an operator token: --token-file FILE "
		    "or OTAD_TOKEN (otactl operator add NAME --role ROLE on "
		    "the server makes one)");
	remote.token[strcspn(remote.token, "\r\n")] = '\0';
}

static const struct cli_group *const groups[] = {&cli_artifact, &cli_key,
    &cli_release, &cli_rollout, &cli_device, &cli_operator, &cli_status,
    &cli_audit, &cli_delta};

/* The command that words name, and its group; usage for none. */
static const struct cli_command *
find_command(char **words, int nwords, const struct cli_group **group)
{
	const struct cli_command *c;
	size_t g;

	for (g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
		if (strcmp(words[0], groups[g]->word) != 0)
			continue;
		for (c = groups[g]->commands; c->verb != NULL; c++)
			if (c->verb[0] == '\0' || (nwords > 1 &&
			    strcmp(c->verb, words[1]) == 0)) {
				*group = groups[g];
				return c;
			}
	}
	usage();
}

int
main(int argc, char *argv[])
{
	const char *conf_path = getenv("OTAD_CONF");
	const char *url = NULL, *token_file = NULL, *cacert = NULL;
	char err[CONF_ERR_MAX];
	char *words[64];
	int nwords = 0, i;
	const char **value;
	struct opts o;
	const struct cli_command *cmd;
	const struct cli_group *grp;
	int skip;

	log_init("otactl", 0);
	atexit(cleanup);
	if (conf_path == NULL)
		conf_path = OTAD_CONF;
	/* global options may stand anywhere */
	for (i = 1; i < argc; i++) {
		value = NULL;
		if (strcmp(argv[i], "-c") == 0 ||
		    strcmp(argv[i], "--config") == 0)
			value = &conf_path;
		else if (strcmp(argv[i], "--url") == 0)
			value = &url;
		else if (strcmp(argv[i], "--token-file") == 0)
			value = &token_file;
		else if (strcmp(argv[i], "--cacert") == 0)
			value = &cacert;
		else if (strcmp(argv[i], "--json") == 0)
			json_out = 1;
		else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0)
			usage();
		else if (nwords < 63)
			words[nwords++] = argv[i];
		else
			usage();
		if (value != NULL) {
			if (++i >= argc)
				usage();
			*value = argv[i];
		}
	}
	words[nwords] = NULL;
	if (nwords < 1)
		usage();
	cmd = find_command(words, nwords, &grp);
	skip = cmd->verb[0] == '\0' ? 1 : 2;
	parse_opts(nwords - skip, words + skip, &o, grp->options);
	o.verb = cmd->verb;
	/* delta works on files alone: no configuration, no server */
	if (grp != &cli_delta) {
		remote_setup(url, token_file, cacert);
		if (remote.url == NULL && conf_load(conf_path, &conf, err,
		    sizeof(err)) < 0)
			die("%s", err);
	}
	return cmd->fn(&o);
}
