/* conf.c: one table of keys; a bad file names file, line and text */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "stages.h"

enum conf_type {
	CONF_STRING, /* bounded by the field's size */
	CONF_UINT,   /* decimal, within [min, max] */
	CONF_SIZE,   /* bytes, with optional k/M suffix, within [min, max] */
	CONF_LISTEN, /* host:port */
	CONF_CHOICE, /* one of a list of words, each standing for an int */
};

struct choice {
	const char *word;
	int value;
};

static const struct choice yes_no[] = {{"yes", 1}, {"true", 1}, {"on", 1},
    {"1", 1}, {"no", 0}, {"false", 0}, {"off", 0}, {"0", 0}, {NULL, 0}};
static const struct choice log_levels[] = {{"info", 0}, {"debug", 1},
    {NULL, 0}};
static const struct choice auth_modes[] = {{"none", 0}, {"token", 1},
    {NULL, 0}};
static const struct choice halt_modes[] = {{"hold", 0}, {"revert", 1},
    {NULL, 0}};

struct conf_key {
	const char *name;
	enum conf_type type;
	size_t offset;
	size_t size; /* field size for strings */
	unsigned long long min, max;
	const char *def;
	int restart; /* a change needs a restart */
	const struct choice *choices; /* CONF_CHOICE: the words */
	const char *hint;             /* CONF_CHOICE: "info or debug" */
};

#define F(field) offsetof(struct conf, field), sizeof(((struct conf *)0)->field)

static const struct conf_key conf_keys[] = {
	{"listen", CONF_LISTEN, F(listen), 0, 0, "127.0.0.1:8080", 1},
	{"state_dir", CONF_STRING, F(state_dir), 0, 0, "/var/lib/otad", 1},
	{"database", CONF_STRING, F(database), 0, 0, "", 1},
	{"http_threads", CONF_UINT, F(http_threads), 0, 64, "0", 1},
	{"max_connections", CONF_UINT, F(max_connections), 16, 100000, "4096",
	    1},
	{"connection_timeout", CONF_UINT, F(connection_timeout), 1, 3600, "60",
	    1},
	{"max_connections_per_address", CONF_UINT,
	    F(max_connections_per_address), 0, 100000, "256", 1},
	{"request_timeout", CONF_UINT, F(request_timeout), 0, 3600, "20", 1},
	{"max_header_bytes", CONF_SIZE, F(max_header_bytes), 1024, 65536,
	    "8192", 1},
	{"max_body_bytes", CONF_SIZE, F(max_body_bytes), 256, 1048576, "16384",
	    0},
	{"writer_queue_max", CONF_UINT, F(writer_queue_max), 64, 1000000,
	    "65536", 1},
	{"device_cache", CONF_UINT, F(device_cache), 0, 100000000, "2000000",
	    1},
	{"shutdown_timeout", CONF_UINT, F(shutdown_timeout), 0, 3600, "30", 0},
	{"offline_after", CONF_UINT, F(offline_after), 10, 31536000, "600", 0},
	{"leader_timeout", CONF_UINT, F(leader_timeout), 2, 300, "10", 0},
	{"log_level", CONF_CHOICE, F(debug), 0, 0, "info", 0, log_levels,
	    "info or debug"},
	{"require_signature", CONF_CHOICE, F(require_signature), 0, 0, "yes", 0,
	    yes_no, "yes or no"},
	{"device_auth", CONF_CHOICE, F(device_auth), 0, 0, "none", 0,
	    auth_modes, "none or token"},
	{"latest_url", CONF_CHOICE, F(latest_url), 0, 0, "no", 0, yes_no,
	    "yes or no"},
	{"infer_after", CONF_UINT, F(infer_after), 1, 31536000, "900", 0},
	{"rollout_approvals", CONF_UINT, F(rollout_approvals), 1, 2, "1", 0},
	{"promote_window", CONF_STRING, F(promote_window), 0, 0, "", 0},
	{"on_halt", CONF_CHOICE, F(on_halt_revert), 0, 0, "hold", 0, halt_modes,
	    "hold or revert"},
	{"quarantine_after", CONF_STRING, F(quarantine_after), 0, 0,
	    "3 in 24h", 0},
	{"telemetry_interval", CONF_UINT, F(telemetry_interval), 0, 86400,
	    "300", 0},
	{"telemetry_retention", CONF_UINT, F(telemetry_retention), 3600,
	    31536000, "604800", 0},
	{"compare_min_devices", CONF_UINT, F(compare_min_devices), 1, 1000000,
	    "10", 0},
	{"admin_listen", CONF_STRING, F(admin_listen), 0, 0, "", 1},
	{"admin_allow_plaintext", CONF_CHOICE, F(admin_allow_plaintext), 0, 0,
	    "no", 1, yes_no, "yes or no"},
	{"max_artifact_bytes", CONF_SIZE, F(max_artifact_bytes), 4096,
	    16 * 1024 * 1024, "16M", 0},
	{"rate_per_device", CONF_UINT, F(rate_per_device), 0, 1000000, "120",
	    0},
	{"rate_per_address", CONF_UINT, F(rate_per_address), 0, 10000000, "0",
	    0},
	{"auth_failures_per_address", CONF_UINT, F(auth_failures_per_address),
	    0, 10000000, "30", 0},
	{"tls_cert", CONF_STRING, F(tls_cert), 0, 0, "", 1},
	{"tls_key", CONF_STRING, F(tls_key), 0, 0, "", 1},
	{"tls_ticket_key", CONF_STRING, F(tls_ticket_key), 0, 0, "", 1},
	{"tls_ticket_lifetime", CONF_UINT, F(tls_ticket_lifetime), 0, 604800,
	    "21600", 1},
	{"trusted_proxies", CONF_STRING, F(trusted_proxies), 0, 0, "", 1},
	{"public_url", CONF_STRING, F(public_url), 0, 0, "", 1},
	{"mqtt_host", CONF_STRING, F(mqtt_host), 0, 0, "", 1},
	{"mqtt_port", CONF_UINT, F(mqtt_port), 1, 65535, "1883", 1},
	{"mqtt_tls_ca", CONF_STRING, F(mqtt_tls_ca), 0, 0, "", 1},
	{"mqtt_tls_cert", CONF_STRING, F(mqtt_tls_cert), 0, 0, "", 1},
	{"mqtt_tls_key", CONF_STRING, F(mqtt_tls_key), 0, 0, "", 1},
	{"mqtt_username", CONF_STRING, F(mqtt_username), 0, 0, "", 1},
	{"mqtt_password_file", CONF_STRING, F(mqtt_password_file), 0, 0, "",
	    1},
	{"mqtt_client_id", CONF_STRING, F(mqtt_client_id), 0, 0, "", 1},
	{"mqtt_topic_prefix", CONF_STRING, F(mqtt_topic_prefix), 0, 0, "ota",
	    1},
	{"mqtt_keepalive", CONF_UINT, F(mqtt_keepalive), 5, 3600, "60", 1},
	{"mqtt_telemetry_topics", CONF_STRING, F(mqtt_telemetry_topics), 0, 0,
	    "devices/+/telemetry devices/+/status", 1},
	{"delta_max_share", CONF_UINT, F(delta_max_share), 0, 100, "60", 0},
	{"mqtt_retain_triggers", CONF_CHOICE, F(mqtt_retain_triggers), 0, 0,
	    "no", 1, yes_no, "yes or no"},
};

#define NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

static int
conf_error(char *err, size_t errlen, const char *name, unsigned line,
    const char *fmt, ...)
{
	char msg[CONF_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(err, errlen, "%s:%u: %s", name, line, msg);
	else
		snprintf(err, errlen, "%s: %s", name, msg);
	return -1;
}

/* Decimal with no sign, no junk; 0 on success. */
static int
parse_ull(const char *s, unsigned long long *out, const char **end)
{
	char *e;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	*out = strtoull(s, &e, 10);
	if (errno != 0)
		return -1;
	*end = e;
	return 0;
}

/* host:port with a port of 0..65535 (0 = pick a free one, for tests) */
static int
valid_listen(const char *v)
{
	const char *colon = strrchr(v, ':');
	unsigned long long port;
	const char *end;

	if (colon == NULL || colon[1] == '\0')
		return 0;
	if (v[0] == '[' && (colon == v || colon[-1] != ']'))
		return 0;
	if (parse_ull(colon + 1, &port, &end) < 0 || *end != '\0' ||
	    port > 65535)
		return 0;
	return 1;
}

static int
conf_set(const struct conf_key *k, struct conf *conf, const char *v,
    char *msg, size_t msglen)
{
	char *field = (char *)conf + k->offset;
	unsigned long long n;
	const char *end;

	switch (k->type) {
	case CONF_STRING:
	case CONF_LISTEN:
		if (strlen(v) >= k->size) {
			snprintf(msg, msglen, "value of '%s' is too long",
			    k->name);
			return -1;
		}
		if (k->type == CONF_LISTEN && !valid_listen(v)) {
			snprintf(msg, msglen,
			    "'%s' wants host:port, not '%s'", k->name, v);
			return -1;
		}
		memcpy(field, v, strlen(v) + 1);
		return 0;
	case CONF_UINT:
	case CONF_SIZE:
		if (parse_ull(v, &n, &end) < 0)
			goto badnum;
		if (k->type == CONF_SIZE && (*end == 'k' || *end == 'K')) {
			n *= 1024;
			end++;
		} else if (k->type == CONF_SIZE &&
		    (*end == 'm' || *end == 'M')) {
			n *= 1024 * 1024;
			end++;
		}
		if (*end != '\0')
			goto badnum;
		if (n < k->min || n > k->max) {
			snprintf(msg, msglen, "'%s' must be between %llu and "
			    "%llu, not %s", k->name, k->min, k->max, v);
			return -1;
		}
		if (k->type == CONF_SIZE)
			*(size_t *)(void *)field = (size_t)n;
		else
			*(unsigned *)(void *)field = (unsigned)n;
		return 0;
	case CONF_CHOICE: {
		const struct choice *c;

		for (c = k->choices; c->word != NULL; c++)
			if (strcmp(v, c->word) == 0) {
				*(int *)(void *)field = c->value;
				return 0;
			}
		snprintf(msg, msglen, "'%s' is %s, not '%s'", k->name, k->hint,
		    v);
		return -1;
	}
	}
	return -1;
badnum:
	snprintf(msg, msglen, "'%s' wants a whole number, not '%s'", k->name,
	    v);
	return -1;
}

static int quarantine_parse(struct conf *conf);

void
conf_defaults(struct conf *conf)
{
	char msg[CONF_ERR_MAX];
	size_t i;

	memset(conf, 0, sizeof(*conf));
	for (i = 0; i < NKEYS; i++)
		if (conf_set(&conf_keys[i], conf, conf_keys[i].def, msg,
		    sizeof(msg)) < 0)
			abort(); /* a bad default is a programming error */
	if (quarantine_parse(conf) < 0)
		abort();
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* A filter's levels: '#' only last and alone, '+' alone. */
static int
valid_filter(const char *f, size_t len)
{
	size_t i;

	if (len == 0 || len > 256)
		return 0;
	for (i = 0; i < len; i++) {
		int starts = i == 0 || f[i - 1] == '/';
		int ends = i + 1 == len || f[i + 1] == '/';

		if ((f[i] == '+' && !(starts && ends)) ||
		    (f[i] == '#' && !(starts && i + 1 == len)) ||
		    (unsigned char)f[i] < 0x21 || f[i] == 0x7f)
			return 0;
	}
	return 1;
}

/* What only makes sense together, and topics the broker would refuse. */
/* An address only this host reaches: 127.0.0.0/8, ::1, localhost. */
static int
loopback_listen(const char *listen)
{
	return strncmp(listen, "127.", 4) == 0 ||
	    strncmp(listen, "[::1]:", 6) == 0 ||
	    strncmp(listen, "localhost:", 10) == 0;
}

/*
 * A libpq connection string with a password in it (a URL's user:password@
 * or a password= keyword): refused, since the configuration is readable
 * by more than the database's owner should be.
 */
static int
password_in(const char *target)
{
	const char *p = strstr(target, "://"), *at, *colon;

	if (strstr(target, "password=") != NULL)
		return 1;
	if (p == NULL || (at = strchr(p + 3, '@')) == NULL)
		return 0;
	colon = memchr(p + 3, ':', (size_t)(at - (p + 3)));
	return colon != NULL;
}

/* quarantine_after into quarantine_n and _s; 0 or -1 */
static int
quarantine_parse(struct conf *conf)
{
	char count[16], in[4], period[16], extra[2];
	int64_t s;
	char *end;
	unsigned long n;

	conf->quarantine_n = conf->quarantine_s = 0;
	if (strcmp(conf->quarantine_after, "off") == 0)
		return 0;
	if (sscanf(conf->quarantine_after, "%15s %3s %15s %1s", count, in,
	    period, extra) != 3 || strcmp(in, "in") != 0 ||
	    !isdigit((unsigned char)count[0]))
		return -1;
	n = strtoul(count, &end, 10);
	if (*end != '\0' || n < 1 || n > 1000 ||
	    (s = stages_duration(period)) <= 0 || s > 365 * 86400)
		return -1;
	conf->quarantine_n = (unsigned)n;
	conf->quarantine_s = (unsigned)s;
	return 0;
}

static int
check_mqtt(const char *name, const struct conf *conf, char *err,
    size_t errlen)
{
	const char *p = conf->mqtt_topic_prefix, *t;
	size_t n;

	if ((conf->mqtt_tls_cert[0] == '\0') != (conf->mqtt_tls_key[0] == '\0'))
		return conf_error(err, errlen, name, 0,
		    "'mqtt_tls_cert' and 'mqtt_tls_key' go together");
	if (conf->mqtt_tls_cert[0] != '\0' && conf->mqtt_tls_ca[0] == '\0')
		return conf_error(err, errlen, name, 0,
		    "'mqtt_tls_cert' needs 'mqtt_tls_ca'");
	if (conf->mqtt_password_file[0] != '\0' &&
	    conf->mqtt_username[0] == '\0')
		return conf_error(err, errlen, name, 0,
		    "'mqtt_password_file' needs 'mqtt_username'");
	if (*p == '\0' || *p == '/' || p[strlen(p) - 1] == '/' ||
	    strpbrk(p, "+# ") != NULL)
		return conf_error(err, errlen, name, 0,
		    "'mqtt_topic_prefix' must be a topic without wildcards, "
		    "spaces or a leading or trailing '/', not '%s'", p);
	if (strncmp(conf->public_url, "http://", 7) != 0 &&
	    strncmp(conf->public_url, "https://", 8) != 0 &&
	    conf->public_url[0] != '\0')
		return conf_error(err, errlen, name, 0,
		    "'public_url' must start with http:// or https://");
	if (conf->admin_listen[0] != '\0' && conf->tls_cert[0] == '\0' &&
	    !conf->admin_allow_plaintext && !loopback_listen(
	    conf->admin_listen))
		return conf_error(err, errlen, name, 0,
		    "'admin_listen' on '%s' without TLS would send operator "
		    "tokens in the clear: set tls_cert and tls_key, listen on "
		    "loopback, or say 'admin_allow_plaintext = yes'",
		    conf->admin_listen);
	if (conf->latest_url && conf->device_auth)
		return conf_error(err, errlen, name, 0,
		    "'latest_url = yes' serves devices that say nothing of "
		    "themselves, so it cannot check a device's token: not "
		    "with 'device_auth = token'");
	for (t = conf->mqtt_telemetry_topics; *t != '\0'; t += n) {
		t += strspn(t, " ");
		if ((n = strcspn(t, " ")) > 0 && !valid_filter(t, n))
			return conf_error(err, errlen, name, 0,
			    "'mqtt_telemetry_topics': '%.*s' is not a topic "
			    "filter", (int)n, t);
		/* only a topic's own level can be bound to a client */
		if (n > 0 && conf->device_auth && memchr(t, '+', n) == NULL)
			return conf_error(err, errlen, name, 0,
			    "'mqtt_telemetry_topics': with device_auth = "
			    "token every topic names its device with '+' "
			    "(devices/+/telemetry), not '%.*s'", (int)n, t);
	}
	return 0;
}

int
conf_parse(const char *name, const char *text, struct conf *conf, char *err,
    size_t errlen)
{
	char seen[NKEYS] = {0};
	char line[4096], msg[CONF_ERR_MAX];
	const char *p = text;
	unsigned lineno = 0;
	struct window w;
	int offset_said;
	size_t i;

	conf_defaults(conf);
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char *key, *val, *eq, *hash;

		lineno++;
		if (len >= sizeof(line))
			return conf_error(err, errlen, name, lineno,
			    "line is too long");
		memcpy(line, p, len);
		line[len] = '\0';
		p += len + (nl ? 1 : 0);
		if (memchr(line, '\0', len) != NULL || strlen(line) != len)
			return conf_error(err, errlen, name, lineno,
			    "line contains a NUL byte");
		/* a comment starts a line or follows a blank, so that MQTT
		 * topic filters keep their '#' */
		for (hash = line; (hash = strchr(hash, '#')) != NULL; hash++)
			if (hash == line || hash[-1] == ' ' ||
			    hash[-1] == '\t') {
				*hash = '\0';
				break;
			}
		key = trim(line);
		if (*key == '\0')
			continue;
		if ((eq = strchr(key, '=')) == NULL)
			return conf_error(err, errlen, name, lineno,
			    "expected 'key = value', got '%s'", key);
		*eq = '\0';
		key = trim(key);
		val = trim(eq + 1);
		for (i = 0; i < NKEYS; i++)
			if (strcmp(conf_keys[i].name, key) == 0)
				break;
		if (i == NKEYS)
			return conf_error(err, errlen, name, lineno,
			    "unknown key '%s'", key);
		if (seen[i])
			return conf_error(err, errlen, name, lineno,
			    "'%s' is set twice", key);
		seen[i] = 1;
		if (conf_set(&conf_keys[i], conf, val, msg, sizeof(msg)) < 0)
			return conf_error(err, errlen, name, lineno, "%s", msg);
	}
	if (conf->state_dir[0] == '\0')
		return conf_error(err, errlen, name, 0,
		    "'state_dir' must not be empty");
	if (password_in(conf->database))
		return conf_error(err, errlen, name, 0, "'database' must not "
		    "hold a password: put it in ~/.pgpass or a file named by "
		    "PGPASSFILE (libpq's own mechanisms)");
	if ((conf->tls_cert[0] == '\0') != (conf->tls_key[0] == '\0'))
		return conf_error(err, errlen, name, 0,
		    "'tls_cert' and 'tls_key' go together");
	if (conf->promote_window[0] != '\0' && stages_parse_promote(
	    conf->promote_window, &w, &offset_said) < 0)
		return conf_error(err, errlen, name, 0, "'promote_window' is "
		    "like 'tue-thu 09:00-16:00 +01:00' (days and offset may be "
		    "left out), not '%s'", conf->promote_window);
	if (proxies_parse(conf->trusted_proxies, &conf->proxies, msg,
	    sizeof(msg)) < 0)
		return conf_error(err, errlen, name, 0, "'trusted_proxies' "
		    "lists addresses and networks ('10.0.0.0/8, 127.0.0.1'): "
		    "%s", msg);
	if (quarantine_parse(conf) < 0)
		return conf_error(err, errlen, name, 0, "'quarantine_after' is "
		    "like '3 in 24h' (1 to 1000 failures, a period up to 365d) "
		    "or 'off', not '%s'", conf->quarantine_after);
	return check_mqtt(name, conf, err, errlen);
}

int
conf_load(const char *path, struct conf *conf, char *err, size_t errlen)
{
	/* a config file is small; refuse anything that is clearly not one */
	enum { CONF_FILE_MAX = 1024 * 1024 };
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rc = -1;

	if ((f = fopen(path, "r")) == NULL)
		return conf_error(err, errlen, path, 0, "cannot open: %s",
		    strerror(errno));
	if ((text = malloc(CONF_FILE_MAX + 1)) == NULL) {
		conf_error(err, errlen, path, 0, "out of memory");
		goto done;
	}
	len = fread(text, 1, CONF_FILE_MAX + 1, f);
	if (ferror(f)) {
		conf_error(err, errlen, path, 0, "cannot read: %s",
		    strerror(errno));
		goto done;
	}
	if (len > CONF_FILE_MAX) {
		conf_error(err, errlen, path, 0, "file is larger than 1 MiB");
		goto done;
	}
	text[len] = '\0';
	if (strlen(text) != len) {
		conf_error(err, errlen, path, 0, "file contains a NUL byte");
		goto done;
	}
	rc = conf_parse(path, text, conf, err, errlen);
done:
	free(text);
	fclose(f);
	return rc;
}

int
conf_db_path(const struct conf *conf, char *buf, size_t len)
{
	int n = conf->database[0] != '\0' ?
	    snprintf(buf, len, "%s", conf->database) :
	    snprintf(buf, len, "%s/otad.db", conf->state_dir);

	return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

int
conf_needs_restart(const struct conf *old, const struct conf *new,
    const char **key)
{
	size_t i;

	for (i = 0; i < NKEYS; i++) {
		const struct conf_key *k = &conf_keys[i];

		if (!k->restart)
			continue;
		const char *a = (const char *)old + k->offset;
		const char *b = (const char *)new + k->offset;
		int differ = (k->type == CONF_STRING || k->type == CONF_LISTEN)
		    ? strcmp(a, b) != 0 : memcmp(a, b, k->size) != 0;

		if (differ) {
			*key = k->name;
			return 1;
		}
	}
	return 0;
}
