/* stages.c: rollout plans, rings and update windows */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stages.h"

int64_t
stages_duration(const char *s)
{
	char *end;
	long long v;
	int64_t unit = 1;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || v > 100LL * 365 * 86400)
		return -1;
	if (*end == 's')
		end++;
	else if (*end == 'm')
		unit = 60, end++;
	else if (*end == 'h')
		unit = 3600, end++;
	else if (*end == 'd')
		unit = 86400, end++;
	return *end == '\0' ? (int64_t)v * unit : -1;
}

/*
 * The number s begins with (a digit first: no sign, no "nan"), *end after
 * it; 0, or -1 if there is none.
 */
static int
leading_number(const char *s, double *v, char **end)
{
	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	*v = strtod(s, end);
	return errno != 0 ? -1 : 0;
}

double
stages_rate(const char *s)
{
	char *end;
	double v;

	if (leading_number(s, &v, &end) < 0)
		return -1;
	if (*end == '%') {
		v /= 100;
		end++;
	}
	return (*end == '\0' && v >= 0 && v <= 1) ? v : -1;
}

/* "10%", "2.5%": share in hundredths of a percent, or -1 */
static long
percent(const char *s)
{
	char *end;
	double v;

	if (leading_number(s, &v, &end) < 0 || strcmp(end, "%") != 0 ||
	    v < 0 || v > 100)
		return -1;
	return (long)(v * 100 + 0.5);
}

static char *trim(char *s);

/* "1.5x": a factor above 0, at most 1000; or -1 */
static double
factor(const char *s)
{
	char *end;
	double v;

	if (leading_number(s, &v, &end) < 0 || strcmp(end, "x") != 0 ||
	    !(v > 0) || v > 1000)
		return -1;
	return v;
}

/* "6", "2.5": decibels, 0..100; or -1 */
static double
decibels(const char *s)
{
	char *end;
	double v;

	if (leading_number(s, &v, &end) < 0 || *end != '\0' || !(v >= 0) ||
	    v > 100)
		return -1;
	return v;
}

static int
valid_metric(const char *m)
{
	size_t n;

	for (n = 0; m[n] != '\0'; n++)
		if (n >= COMPARE_METRIC_MAX || !(isalnum((unsigned char)m[n]) ||
		    m[n] == '_'))
			return 0;
	return n > 0;
}

int
stages_parse_compare(const char *s, struct comparison *out)
{
	char buf[128], *op, *what, *v;
	int ge;

	if (strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", s);
	if ((op = strstr(buf, "<=")) == NULL && (op = strstr(buf, ">=")) ==
	    NULL)
		return -1;
	ge = op[0] == '>';
	*op = '\0';
	what = trim(buf);
	v = trim(op + 2);
	memset(out, 0, sizeof(*out));
	if (strncmp(what, "metrics.", 8) == 0) {
		if (!valid_metric(what + 8) || (out->bound = factor(v)) < 0)
			return -1;
		out->kind = ge ? COMPARE_METRIC_GE : COMPARE_METRIC_LE;
		snprintf(out->metric, sizeof(out->metric), "%s", what + 8);
		return 0;
	}
	if (ge)
		return -1;
	if (strcmp(what, "heap_drop") == 0) {
		out->kind = COMPARE_HEAP_DROP;
		out->bound = stages_rate(v);
	} else if (strcmp(what, "rssi_drop") == 0) {
		out->kind = COMPARE_RSSI_DROP;
		out->bound = decibels(v);
	} else if (strcmp(what, "resets") == 0) {
		out->kind = COMPARE_RESETS;
		out->bound = factor(v);
	} else {
		return -1;
	}
	return out->bound < 0 ? -1 : 0;
}

void
stages_compare_name(const struct comparison *c, char *buf, size_t len)
{
	static const char *const names[] = {
		[COMPARE_HEAP_DROP] = "heap_drop",
		[COMPARE_RSSI_DROP] = "rssi_drop",
		[COMPARE_RESETS] = "resets",
	};

	if (c->kind == COMPARE_METRIC_LE || c->kind == COMPARE_METRIC_GE)
		snprintf(buf, len, "metrics.%s", c->metric);
	else
		snprintf(buf, len, "%s", names[c->kind]);
}

void
stages_compare_text(const struct comparison *c, size_t n, char *buf,
    size_t len)
{
	size_t i, off = 0;
	char name[COMPARE_METRIC_MAX + 16];

	if (len > 0)
		buf[0] = '\0';
	for (i = 0; i < n && off < len; i++) {
		int w;

		stages_compare_name(&c[i], name, sizeof(name));
		if (c[i].kind == COMPARE_HEAP_DROP)
			w = snprintf(buf + off, len - off, "%s%s<=%g%%",
			    i ? "," : "", name, c[i].bound * 100);
		else
			w = snprintf(buf + off, len - off, "%s%s%s%g%s",
			    i ? "," : "", name, c[i].kind == COMPARE_METRIC_GE ?
			    ">=" : "<=", c[i].bound, c[i].kind ==
			    COMPARE_RSSI_DROP ? "" : "x");
		if (w < 0)
			break;
		off += (size_t)w;
	}
}

#define MIN_UNSAID UINT_MAX /* before the options: min= not given */

/* "50": a count of devices, 1..STAGE_DEVICES_MAX, or -1 */
static long
device_count(const char *s)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > STAGE_DEVICES_MAX)
		return -1;
	return (long)v;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int
valid_group(const char *g)
{
	size_t n;

	for (n = 0; g[n] != '\0'; n++)
		if (n >= OTAD_PRODUCT_MAX || g[n] <= 0x20 || g[n] >= 0x7f ||
		    g[n] == ',' || g[n] == ';' || g[n] == '=')
			return 0;
	return n > 0;
}

static int
parse_option(struct stage *st, char *opt, char *why, size_t whylen,
    size_t no)
{
	char *v;
	double r;
	struct comparison c;

	opt = trim(opt);
	if (strncmp(opt, "heap_drop", 9) == 0 || strncmp(opt, "rssi_drop",
	    9) == 0 || strncmp(opt, "resets", 6) == 0 || strncmp(opt,
	    "metrics.", 8) == 0) {
		if (stages_parse_compare(opt, &c) < 0) {
			snprintf(why, whylen, "stage %zu: bad comparison '%s' "
			    "(heap_drop<=20%%, rssi_drop<=6, resets<=2x, "
			    "metrics.NAME<=1.5x or >=0.5x)", no, opt);
			return -1;
		}
		if (st->ncompare == STAGE_COMPARE_MAX) {
			snprintf(why, whylen, "stage %zu: at most %d "
			    "comparisons", no, STAGE_COMPARE_MAX);
			return -1;
		}
		st->compare[st->ncompare++] = c;
		return 0;
	}
	if ((v = strstr(opt, ">=")) != NULL || (v = strstr(opt, "<=")) !=
	    NULL) {
		int ge = v[0] == '>';

		*v = '\0';
		v += 2;
		if ((r = stages_rate(trim(v))) < 0)
			goto bad;
		opt = trim(opt);
		if (strcmp(opt, "success") == 0 && ge)
			st->min_success = r;
		else if (strcmp(opt, "rollback") == 0 && !ge)
			st->max_rollback = r;
		else if (strcmp(opt, "failure") == 0 && !ge)
			st->max_failure = r;
		else if (strcmp(opt, "crash") == 0 && !ge)
			st->max_crash = r;
		else
			goto unknown;
		return 0;
	}
	if ((v = strchr(opt, '=')) == NULL)
		goto unknown;
	*v++ = '\0';
	opt = trim(opt);
	v = trim(v);
	if (strcmp(opt, "soak") == 0) {
		if ((st->soak_s = stages_duration(v)) < 0)
			goto bad;
	} else if (strcmp(opt, "min") == 0) {
		char *end;
		unsigned long m = strtoul(v, &end, 10);

		if (!isdigit((unsigned char)*v) || *end != '\0' ||
		    m > 10000000)
			goto bad;
		st->min_devices = (unsigned)m;
	} else {
		goto unknown;
	}
	return 0;
bad:
	snprintf(why, whylen, "stage %zu: bad value '%s'", no, v);
	return -1;
unknown:
	snprintf(why, whylen, "stage %zu: unknown option '%s' (soak=, min=, "
	    "success>=, rollback<=, failure<=, crash<=, heap_drop<=, "
	    "rssi_drop<=, resets<=, metrics.NAME<= or >=)", no, trim(opt));
	return -1;
}

int
stages_parse(const char *spec, struct stage *out, size_t *n, char *why,
    size_t whylen)
{
	char *copy, *stage_s, *save_stage = NULL;
	unsigned last_percent = 0, last_devices = 0;
	size_t count = 0;
	int rc = -1;

	*n = 0;
	if (strlen(spec) > 4096 || (copy = strdup(spec)) == NULL) {
		snprintf(why, whylen, "stages: too long");
		return -1;
	}
	/* split by hand: strtok would pass over an empty stage silently */
	for (stage_s = copy; stage_s != NULL; stage_s = save_stage) {
		struct stage *st = &out[count];
		char *save_opt = NULL, *head, *opt;
		long p;

		if (count == STAGES_MAX) {
			snprintf(why, whylen, "stages: at most %d",
			    STAGES_MAX);
			goto done;
		}
		if ((save_stage = strchr(stage_s, ';')) != NULL)
			*save_stage++ = '\0';
		memset(st, 0, sizeof(*st));
		st->soak_s = STAGE_SOAK_S;
		st->min_devices = STAGE_MIN;
		st->min_success = STAGE_SUCCESS;
		st->max_rollback = STAGE_ROLLBACK;
		st->max_failure = STAGE_FAILURE;
		st->max_crash = STAGE_CRASH;
		count++;
		if ((head = strtok_r(stage_s, ",", &save_opt)) == NULL ||
		    *(head = trim(head)) == '\0') {
			snprintf(why, whylen, "stage %zu is empty", count);
			goto done;
		}
		if (strncmp(head, "group=", 6) == 0) {
			char *g = trim(head + 6);

			if (!valid_group(g)) {
				snprintf(why, whylen, "stage %zu: bad group "
				    "'%s'", count, g);
				goto done;
			}
			snprintf(st->group, sizeof(st->group), "%s", g);
			st->percent_x100 = last_percent;
		} else if ((p = percent(head)) >= 0) {
			if ((unsigned)p < last_percent) {
				snprintf(why, whylen, "stage %zu: %s is less "
				    "than the stage before; rings only widen",
				    count, head);
				goto done;
			}
			st->percent_x100 = last_percent = (unsigned)p;
		} else if ((p = device_count(head)) > 0) {
			if ((unsigned)p < last_devices) {
				snprintf(why, whylen, "stage %zu: %s devices "
				    "are fewer than the stage before; rings "
				    "only widen", count, head);
				goto done;
			}
			st->devices = last_devices = (unsigned)p;
			st->percent_x100 = last_percent;
		} else {
			snprintf(why, whylen, "stage %zu: '%s' is neither "
			    "group=NAME, a percentage like 10%% nor a count "
			    "of devices like 50", count, head);
			goto done;
		}
		st->min_devices = MIN_UNSAID;
		while ((opt = strtok_r(NULL, ",", &save_opt)) != NULL)
			if (parse_option(st, opt, why, whylen, count) < 0)
				goto done;
		/* min= left out: a canary smaller than the default is enough */
		if (st->min_devices == MIN_UNSAID)
			st->min_devices = st->devices > 0 && st->devices <
			    STAGE_MIN ? st->devices : STAGE_MIN;
	}
	if (out[count - 1].percent_x100 != 10000 ||
	    out[count - 1].group[0] != '\0') {
		snprintf(why, whylen, "the last stage must be 100%%: a rollout "
		    "ends with the whole matching fleet");
		goto done;
	}
	*n = count;
	rc = 0;
done:
	free(copy);
	return rc;
}

unsigned
stages_ring(int64_t rollout_id, const char *device_id)
{
	uint64_t h = 0xcbf29ce484222325ull;
	char seed[24];
	int i, n = snprintf(seed, sizeof(seed), "%lld:", (long long)rollout_id);
	const char *p;

	/* FNV-1a over "rollout:device", then a final mix for uniformity */
	for (i = 0; i < n; i++) {
		h ^= (unsigned char)seed[i];
		h *= 0x100000001b3ull;
	}
	for (p = device_id; *p != '\0'; p++) {
		h ^= (unsigned char)*p;
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (unsigned)(h % 10000);
}

static int
hhmm(const char *s, int *minutes)
{
	int h, m, used = 0;

	if (sscanf(s, "%2d:%2d%n", &h, &m, &used) != 2 || used != 5 ||
	    h < 0 || h > 24 || m < 0 || m > 59 || (h == 24 && m != 0))
		return -1;
	*minutes = h * 60 + m;
	return 0;
}

int
stages_parse_window(const char *s, struct window *w)
{
	char a[6], b[6];

	if (strlen(s) != 11 || s[5] != '-')
		return -1;
	memcpy(a, s, 5);
	a[5] = '\0';
	memcpy(b, s + 6, 5);
	b[5] = '\0';
	if (hhmm(a, &w->start) < 0 || hhmm(b, &w->end) < 0 ||
	    w->start == w->end)
		return -1;
	return 0;
}

static int
day(const char *s, size_t len)
{
	static const char *const names[] = {"sun", "mon", "tue", "wed", "thu",
	    "fri", "sat"};
	int i;

	for (i = 0; i < 7; i++)
		if (len == 3 && strncasecmp(s, names[i], 3) == 0)
			return i;
	return -1;
}

int
stages_parse_days(const char *s, unsigned *days)
{
	const char *p = s;

	*days = 0;
	while (*p != '\0') {
		const char *comma = strchr(p, ','), *dash;
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		int a, b;

		dash = memchr(p, '-', len);
		if (dash != NULL) {
			a = day(p, (size_t)(dash - p));
			b = day(dash + 1, len - (size_t)(dash - p) - 1);
		} else {
			a = b = day(p, len);
		}
		if (a < 0 || b < 0)
			return -1;
		for (;; a = (a + 1) % 7) {
			*days |= 1u << a;
			if (a == b)
				break;
		}
		p += len + (comma ? 1 : 0);
		if (comma != NULL && *p == '\0')
			return -1;
	}
	return *days != 0 ? 0 : -1;
}

int
stages_parse_offset(const char *s, int *offset_min)
{
	int sign = 1, m;

	if (strcmp(s, "0") == 0) {
		*offset_min = 0;
		return 0;
	}
	if (*s == '+' || *s == '-') {
		sign = *s == '-' ? -1 : 1;
		s++;
	} else {
		return -1;
	}
	if (strlen(s) != 5 || hhmm(s, &m) < 0 || m > 14 * 60)
		return -1;
	*offset_min = sign * m;
	return 0;
}

int
stages_window_open(const struct window *w, int64_t now)
{
	int64_t local = now + (int64_t)w->offset_min * 60;
	int64_t days_since = local >= 0 ? local / 86400 :
	    (local - 86399) / 86400;
	int minute = (int)((local - days_since * 86400) / 60);
	/* 1970-01-01 was a Thursday (4) */
	int weekday = (int)(((days_since % 7) + 7 + 4) % 7);

	if (w->days != 0 && !(w->days & (1u << weekday)))
		return 0;
	if (w->start < 0)
		return 1;
	if (w->start < w->end)
		return minute >= w->start && minute < w->end;
	return minute >= w->start || minute < w->end;
}

int
stages_parse_promote(const char *s, struct window *w, int *offset_said)
{
	char copy[64], *tok[4], *save = NULL, *t;
	int n = 0, i = 0;

	memset(w, 0, sizeof(*w));
	*offset_said = 0;
	if (strlen(s) >= sizeof(copy))
		return -1;
	snprintf(copy, sizeof(copy), "%s", s);
	for (t = strtok_r(copy, " \t", &save); t != NULL;
	    t = strtok_r(NULL, " \t", &save)) {
		if (n == 3)
			return -1;
		tok[n++] = t;
	}
	if (n == 0)
		return -1;
	if (isalpha((unsigned char)tok[0][0]) &&
	    stages_parse_days(tok[i++], &w->days) < 0)
		return -1;
	if (i >= n || stages_parse_window(tok[i++], w) < 0)
		return -1;
	if (i < n) {
		if (stages_parse_offset(tok[i++], &w->offset_min) < 0)
			return -1;
		*offset_said = 1;
	}
	return i == n ? 0 : -1;
}

int64_t
stages_window_next(const struct window *w, int64_t from)
{
	int64_t t = from, minute;

	if (stages_window_open(w, t))
		return t;
	/* minute by minute over a week and a day: every window recurs */
	minute = t - ((t % 60) + 60) % 60 + 60;
	for (t = minute; t < from + 8 * 86400; t += 60)
		if (stages_window_open(w, t))
			return t;
	return -1;
}
