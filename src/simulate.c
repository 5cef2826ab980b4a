/* simulate.c: a rollout rehearsed on a copy of the fleet (see simulate.h) */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "policy.h"
#include "simulate.h"

/* devices seen within this poll in the rehearsal; older ones are gone */
#define SEEN_WITHIN_S (7 * 86400)
/* polls answered between two looks of the controller: a step's share */
#define STEPS_PER_INTERVAL 100
/* the controller's looks in a whole rehearsal, at most */
#define LOOKS_MAX 20000

/*
 * The facts most devices share (versions, products, chips, groups) are
 * kept once: a million devices cost their ids and a few pointers each.
 */
struct pool {
	char **v;
	size_t n, cap; /* cap a power of two; v open-addressed */
};

static uint64_t
hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (*s != '\0') {
		h ^= (unsigned char)*s++;
		h *= 0x100000001b3ull;
	}
	return h;
}

/* s kept once in p; NULL when out of memory */
static const char *
intern(struct pool *p, const char *s)
{
	size_t i;

	if (p->n * 2 >= p->cap) {
		struct pool bigger = {NULL, 0, p->cap ? p->cap * 2 : 64};

		if ((bigger.v = calloc(bigger.cap, sizeof(char *))) == NULL)
			return NULL;
		for (i = 0; i < p->cap; i++)
			if (p->v[i] != NULL) {
				size_t j = hash(p->v[i]) & (bigger.cap - 1);

				while (bigger.v[j] != NULL)
					j = (j + 1) & (bigger.cap - 1);
				bigger.v[j] = p->v[i];
			}
		bigger.n = p->n;
		free(p->v);
		*p = bigger;
	}
	for (i = hash(s) & (p->cap - 1); p->v[i] != NULL;
	    i = (i + 1) & (p->cap - 1))
		if (strcmp(p->v[i], s) == 0)
			return p->v[i];
	if ((p->v[i] = strdup(s)) == NULL)
		return NULL;
	p->n++;
	return p->v[i];
}

static void
pool_free(struct pool *p)
{
	size_t i;

	for (i = 0; i < p->cap; i++)
		free(p->v[i]);
	free(p->v);
}

struct sim_device {
	struct device_facts f; /* id owned; the rest interned */
	int64_t phase;         /* its polls: start + phase + k * poll_s */
	int64_t refused;       /* rolled back from this release: not again */
};

/* A crash owed: an updated device panics, told by its telemetry. */
struct crash {
	size_t device;
	int64_t at;
};

struct sim {
	const struct rehearsal *r;
	struct pool pool;
	struct sim_device *dev;
	size_t n, cap;
	struct crash *crashes; /* in time order */
	size_t ncrash, crash_head, crash_cap;
	uint64_t rng;
	int64_t rollout;
	struct offer *offers, *stones;
	size_t noffers, nstones;
};

/* xorshift64*: the same seed, the same rehearsal, on any machine */
static double
uniform(struct sim *s)
{
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return (double)((s->rng * 0x2545F4914F6CDD1Dull) >> 11) /
	    9007199254740992.0;
}

static int
add_device(void *arg, const struct device_facts *f)
{
	struct sim *s = arg;
	struct sim_device *d;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		struct sim_device *v = realloc(s->dev, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		s->dev = v;
		s->cap = cap;
	}
	d = &s->dev[s->n];
	d->f = *f;
	if ((d->f.id = strdup(f->id)) == NULL ||
	    (d->f.version = intern(&s->pool, f->version)) == NULL ||
	    (d->f.product = intern(&s->pool, f->product)) == NULL ||
	    (d->f.chip = intern(&s->pool, f->chip)) == NULL ||
	    (d->f.hw_rev = intern(&s->pool, f->hw_rev)) == NULL ||
	    (d->f.group = intern(&s->pool, f->group)) == NULL) {
		free((char *)d->f.id);
		return -1;
	}
	d->refused = 0;
	s->n++;
	return 0;
}

static int
by_phase(const void *a, const void *b)
{
	const struct sim_device *x = a, *y = b;

	return (x->phase > y->phase) - (x->phase < y->phase);
}

/* What the copy offers now (stepping stones only when some need them). */
static enum otad_err
load_offers(struct sim *s, struct registry_reader *rd)
{
	enum otad_err rc;
	size_t i;
	int paths = 0;

	free(s->offers);
	free(s->stones);
	s->offers = s->stones = NULL;
	s->noffers = s->nstones = 0;
	if ((rc = registry_load_offers(rd, &s->offers, &s->noffers)) !=
	    OTAD_OK)
		return rc;
	for (i = 0; i < s->noffers; i++)
		paths |= s->offers[i].min_from[0] != '\0';
	return paths ? registry_load_stones(rd, &s->stones, &s->nstones) :
	    OTAD_OK;
}

static struct record *
record(enum record_kind kind, const struct sim_device *d, int64_t at)
{
	struct record *rec = registry_record_new(kind);

	if (rec != NULL) {
		snprintf(rec->device, sizeof(rec->device), "%s", d->f.id);
		snprintf(rec->version, sizeof(rec->version), "%s",
		    d->f.version);
		rec->at = at;
	}
	return rec;
}

/*
 * Device i polls at t: answered by the policy; offered the rehearsed
 * release, it installs it and reports at once, rolled back at the failure
 * rate, else running it (and owing a crash at the crash rate, half a poll
 * interval later). Its records are appended at *tail.
 */
static int
poll_one(struct sim *s, size_t i, int64_t t, struct record ***tail)
{
	struct sim_device *d = &s->dev[i];
	struct stones stones = {s->stones, s->nstones};
	struct decision dec;
	struct record *offer, *report;
	const struct offer *o;

	d->f.refused_release = d->refused;
	policy_decide(&d->f, s->offers, s->noffers, &stones, t, &dec);
	if (dec.kind != DECISION_OFFER || dec.target->rollout_id != s->rollout)
		return 0; /* up to date, deferred, or another rollout's */
	o = dec.offer;
	if ((offer = record(RECORD_CHECKIN, d, t)) == NULL ||
	    (report = record(RECORD_REPORT, d, t)) == NULL) {
		free(offer);
		return -1;
	}
	offer->offer_release = o->release_id;
	offer->offer_rollout = dec.target->rollout_id;
	offer->offer_stage = dec.target->stage;
	snprintf(offer->offer_version, sizeof(offer->offer_version), "%s",
	    o->version);
	snprintf(report->version, sizeof(report->version), "%s", o->version);
	if (uniform(s) < s->r->failure_rate) {
		report->result = REPORT_ROLLBACK;
		snprintf(report->text->reason, sizeof(report->text->reason),
		    "rehearsal: rolled back");
		d->refused = o->release_id;
	} else {
		report->result = REPORT_SUCCESS;
		d->f.version = intern(&s->pool, o->version);
		if ((int64_t)o->secure_version > d->f.secure_version)
			d->f.secure_version = o->secure_version;
		if (uniform(s) < s->r->crash_rate) {
			if (s->ncrash == s->crash_cap) {
				size_t cap = s->crash_cap ? s->crash_cap * 2 :
				    256;
				struct crash *v = realloc(s->crashes, cap *
				    sizeof(*v));

				if (v == NULL)
					return -1;
				s->crashes = v;
				s->crash_cap = cap;
			}
			s->crashes[s->ncrash++] = (struct crash){i,
			    t + s->r->poll_s / 2};
		}
		if (d->f.version == NULL)
			return -1;
	}
	**tail = offer;
	offer->next = report;
	*tail = &report->next;
	return 0;
}

/* The crashes due by t, as the telemetry that tells them. */
static int
crashes_due(struct sim *s, int64_t t, struct record ***tail)
{
	while (s->crash_head < s->ncrash && s->crashes[s->crash_head].at <=
	    t) {
		const struct crash *c = &s->crashes[s->crash_head++];
		struct record *rec = record(RECORD_TELEMETRY, &s->dev[c->device],
		    c->at);

		if (rec == NULL)
			return -1;
		rec->tel.present = TEL_RESET_REASON | TEL_UPTIME;
		rec->tel.reset_reason = 4; /* ESP_RST_PANIC */
		rec->tel.uptime = 1;
		**tail = rec;
		*tail = &rec->next;
	}
	return 0;
}

/* The rehearsal's answer: the copy's own status of the rollout. */
static json_t *
summary(struct registry *copy, struct sim *s, int64_t end, int64_t start,
    const int64_t *opened, const char *state, const char *reason)
{
	json_t *rows = NULL, *out, *stages, *st;
	char why[256];
	int64_t offered = 0;
	size_t i;

	if (registry_rollout_status(copy, s->rollout, end, &rows, why,
	    sizeof(why)) != OTAD_OK)
		return NULL;
	stages = json_incref(json_object_get(json_array_get(rows, 0),
	    "stages"));
	json_decref(rows);
	json_array_foreach(stages, i, st) {
		offered += json_integer_value(json_object_get(st, "offered"));
		json_object_set_new(st, "opened_after", i < STAGES_MAX &&
		    opened[i] >= 0 ? json_integer(opened[i] - start) :
		    json_null());
	}
	out = json_pack("{s:I, s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:I, s:o}",
	    "devices", (json_int_t)s->n, "state", state, "reason", reason,
	    "ended_after", (json_int_t)(end - start), "offered",
	    (json_int_t)offered, "poll_interval", (json_int_t)s->r->poll_s,
	    "failure_rate", s->r->failure_rate, "crash_rate",
	    s->r->crash_rate, "seed", (json_int_t)s->r->seed, "stages",
	    stages);
	return out;
}

/* Rollout s->rollout in simulated time, from start until it ends. */
static enum otad_err
run(struct registry *copy, struct registry_reader *rd, struct sim *s,
    int64_t start, json_t **result, char *why, size_t whylen)
{
	int64_t step = s->r->poll_s / STEPS_PER_INTERVAL, t = start, base =
	    start, gen = -1, g, stage = 0, opened[STAGES_MAX];
	char state[16] = "active", reason[512] = "";
	size_t next = 0, i;
	enum otad_err rc;

	if (step < 1)
		step = 1;
	if (step > 60)
		step = 60;
	/* a long horizon takes longer steps: the controller's looks bound
	 * the work, whatever a caller asks */
	if (s->r->horizon_s / step > LOOKS_MAX)
		step = s->r->horizon_s / LOOKS_MAX + 1;
	for (i = 0; i < STAGES_MAX; i++)
		opened[i] = -1;
	opened[0] = start;
	while (strcmp(state, "active") == 0 && t - start < s->r->horizon_s) {
		struct record *batch = NULL, **tail = &batch;

		t += step;
		if ((rc = registry_catalog_generation(rd, &g)) != OTAD_OK ||
		    (g != gen && (rc = load_offers(s, rd)) != OTAD_OK))
			goto failed;
		gen = g;
		/* every device whose poll falls in this step, in turn */
		while (s->n > 0 && base + s->dev[next].phase <= t) {
			if (poll_one(s, next, base + s->dev[next].phase,
			    &tail) < 0 || crashes_due(s, base +
			    s->dev[next].phase, &tail) < 0) {
				rc = OTAD_ERR_NOMEM;
				goto failed;
			}
			if (++next == s->n) {
				next = 0;
				base += s->r->poll_s;
			}
		}
		if (crashes_due(s, t, &tail) < 0) {
			rc = OTAD_ERR_NOMEM;
			goto failed;
		}
		if (batch != NULL && (rc = registry_apply(copy, batch)) !=
		    OTAD_OK)
			goto failed;
		registry_rollout_tick(copy, t, s->r->offline_after);
		if ((rc = registry_rollout_where(copy, s->rollout, state,
		    sizeof(state), &stage, reason, sizeof(reason))) != OTAD_OK)
			goto failed;
		if (stage >= 0 && stage < STAGES_MAX && opened[stage] < 0)
			opened[stage] = t;
	}
	if ((*result = summary(copy, s, t, start, opened, state, reason)) ==
	    NULL) {
		rc = OTAD_ERR_DB;
		goto failed;
	}
	return OTAD_OK;
failed:
	snprintf(why, whylen, "rehearsal: %s", otad_strerror(rc));
	return rc;
}

/* A scratch directory for the copy, and the copy's path in it. */
static int
scratch(char *dir, size_t dirlen, char *path, size_t pathlen)
{
	const char *tmp = getenv("TMPDIR");

	if (tmp == NULL || *tmp == '\0')
		tmp = "/tmp";
	if (snprintf(dir, dirlen, "%s/otad-rehearsal-XXXXXX", tmp) >=
	    (int)dirlen || mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, pathlen, "%s/otad.db", dir);
	return 0;
}

static void
scratch_remove(const char *dir, const char *path)
{
	static const char *const suffixes[] = {"", "-wal", "-shm",
	    "-journal"};
	char p[PATH_MAX + 16];
	size_t i;

	for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
	rmdir(dir);
}

enum otad_err
simulate_rollout(struct registry *reg, const struct rehearsal *r,
    json_t **result, char *why, size_t whylen)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct registry *copy = NULL;
	struct registry_reader *rd = NULL;
	struct sim s;
	size_t copied, nstages, i;
	int64_t start;
	enum otad_err rc;

	*result = NULL;
	memset(&s, 0, sizeof(s));
	s.r = r;
	s.rng = r->seed * 0x9E3779B97F4A7C15ull + 1;
	if (scratch(dir, sizeof(dir), path, sizeof(path)) < 0) {
		snprintf(why, whylen, "cannot make a scratch directory: %s",
		    strerror(errno));
		return OTAD_ERR_IO;
	}
	start = (int64_t)time(NULL);
	log_set_quiet(1);
	if ((rc = registry_copy_fleet(reg, path, start - SEEN_WITHIN_S,
	    &copied, why, whylen)) != OTAD_OK)
		goto done;
	if ((rc = registry_open(path, &copy)) != OTAD_OK) {
		snprintf(why, whylen, "cannot open the copy");
		goto done;
	}
	registry_set_actor(copy, "rehearsal");
	/* the rollout as the operator would create and start it */
	if ((rc = catalog_rollout_create(copy, r->plan, &s.rollout, &nstages,
	    why, whylen)) != OTAD_OK ||
	    (rc = registry_rollout_action(copy, s.rollout, ROLLOUT_START, 0,
	    why, whylen)) != OTAD_OK)
		goto done;
	if ((rc = registry_reader_open(path, &rd)) != OTAD_OK ||
	    (rc = registry_each_device(copy, add_device, &s)) != OTAD_OK) {
		snprintf(why, whylen, "cannot read the copy: %s",
		    otad_strerror(rc));
		goto done;
	}
	/* each device polls at its own phase of the interval */
	for (i = 0; i < s.n; i++)
		s.dev[i].phase = (int64_t)(uniform(&s) * (double)r->poll_s);
	qsort(s.dev, s.n, sizeof(*s.dev), by_phase);
	rc = run(copy, rd, &s, start, result, why, whylen);
done:
	for (i = 0; i < s.n; i++)
		free((char *)s.dev[i].f.id);
	free(s.dev);
	free(s.crashes);
	free(s.offers);
	free(s.stones);
	pool_free(&s.pool);
	registry_reader_free(rd);
	registry_close(copy);
	scratch_remove(dir, path);
	log_set_quiet(0);
	return rc;
}
