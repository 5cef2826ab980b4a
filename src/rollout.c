/* rollout.c: the controller thread and snapshot swapping */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "monotonic.h"
#include "registry.h"
#include "rollout.h"

#define TICK_MS 250 /* edits by hand take effect within a second */
#define GAUGE_S 5   /* fleet gauges for /metrics are this fresh, */
#define GAUGE_COST 100 /* or wait this many times their last count took, */
#define GAUGE_MAX_S 60 /* up to this */
#define HEARTBEAT_S 5 /* a node of a cluster says it lives this often */

struct rollout {
	struct registry_reader *reader;
	struct registry *marker; /* the controller's writes: handshake, gates */
	int64_t marked;   /* generation last written for otactl */
	int64_t marked_at;
	int64_t gated_at;
	int64_t gauged_at;
	int64_t gauge_wait_s; /* from one count of the fleet to the next */
	atomic_llong offline_after;
	atomic_uint leader_timeout;
	atomic_int leading; /* this node runs the gates and MQTT triggers */
	struct rollout_payload_hooks hooks;
	pthread_mutex_t swap_mu; /* guards current */
	struct snapshot *current;
	atomic_llong epoch;        /* of current; read lock-free */
	int64_t loaded_generation; /* controller thread only */
	atomic_int force;
	pthread_mutex_t wait_mu;
	pthread_cond_t wake;
	int stopping;
	pthread_t thread;
	int running;
};

/* snapshot_release needs the payload destructor; one controller per process */
static rollout_payload_free payload_free_fn;

void
snapshot_release(struct snapshot *s)
{
	size_t i;

	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (i = 0; i < s->n; i++)
		if (s->offers[i].payload != NULL && payload_free_fn != NULL)
			payload_free_fn(s->offers[i].payload);
	for (i = 0; i < s->stones.n; i++)
		if (s->stone_v[i].payload != NULL && payload_free_fn != NULL)
			payload_free_fn(s->stone_v[i].payload);
	free(s->offers);
	free(s->stone_v);
	free(s);
}

/* Give each offer its payload; drop those that get none. New count. */
static size_t
prepare(struct rollout *r, struct offer *v, size_t n)
{
	size_t i, kept = 0;

	for (i = 0; i < n; i++) {
		v[kept] = v[i];
		v[kept].payload = r->hooks.make(&v[i], r->hooks.arg);
		if (v[kept].payload != NULL)
			kept++;
	}
	return kept;
}

static enum otad_err
build(struct rollout *r, int64_t generation, struct snapshot **out)
{
	struct snapshot *s;
	struct offer *offers, *stones = NULL;
	size_t n, i, nstones = 0;
	enum otad_err rc;
	int paths = 0;

	*out = NULL;
	if ((rc = registry_load_offers(r->reader, &offers, &n)) != OTAD_OK)
		return rc;
	for (i = 0; i < n; i++)
		paths |= offers[i].min_from[0] != '\0';
	/* stepping stones matter only when some release has a min_from */
	if (paths && (rc = registry_load_stones(r->reader, &stones,
	    &nstones)) != OTAD_OK) {
		free(offers);
		return rc;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		free(offers);
		free(stones);
		return OTAD_ERR_NOMEM;
	}
	atomic_init(&s->refs, 1);
	s->generation = generation;
	s->offers = offers;
	s->n = prepare(r, offers, n);
	s->stone_v = stones;
	s->stones.v = stones;
	s->stones.n = prepare(r, stones, nstones);
	*out = s;
	return OTAD_OK;
}

/*
 * Tell otactl what is served now: a command that changed the catalog
 * waits for it. Written only when it changes (or a write failed), so an
 * idle daemon does not write; a node sharing PostgreSQL with others also
 * says every few seconds that it lives.
 */
static void
heartbeat(struct rollout *r, int changed)
{
	int64_t now = (int64_t)time(NULL);

	/* nodes sharing a registry say they live, every few seconds */
	if (r->marker == NULL || (!changed && r->marked ==
	    r->loaded_generation && !(registry_clustered(r->marker) &&
	    now - r->marked_at >= HEARTBEAT_S)))
		return;
	if (registry_daemon_mark(r->marker, r->loaded_generation, now) == 0) {
		r->marked = r->loaded_generation;
		r->marked_at = now;
	}
}

/* A replaced snapshot's payloads are retired, whoever still holds it. */
static void
retire(struct rollout *r, struct snapshot *old)
{
	size_t i;

	if (old == NULL || r->hooks.retire == NULL)
		return;
	for (i = 0; i < old->n; i++)
		r->hooks.retire(old->offers[i].payload);
	for (i = 0; i < old->stones.n; i++)
		r->hooks.retire(old->stone_v[i].payload);
}

/* Reload if the catalog moved (or force); log what is offered now. */
static void
refresh(struct rollout *r, int force)
{
	struct snapshot *s, *old;
	int64_t gen;
	size_t i;

	if (registry_catalog_generation(r->reader, &gen) != OTAD_OK)
		return; /* logged; try again next tick */
	if (!force && gen == r->loaded_generation) {
		heartbeat(r, 0);
		return;
	}
	if (build(r, gen, &s) != OTAD_OK) {
		log_warnx("cannot load what to offer; keeping the previous "
		    "set");
		return;
	}
	pthread_mutex_lock(&r->swap_mu);
	old = r->current;
	s->epoch = (old ? old->epoch : 0) + 1;
	r->current = s;
	r->loaded_generation = gen;
	atomic_store(&r->epoch, s->epoch);
	pthread_mutex_unlock(&r->swap_mu);
	retire(r, old);
	snapshot_release(old);
	heartbeat(r, 1);
	if (s->n == 0)
		log_info("catalog %lld: no release is offered",
		    (long long)gen);
	for (i = 0; i < s->n; i++)
		log_info("catalog %lld: offering %s%s%s (rollout %lld, %s)",
		    (long long)gen, s->offers[i].version,
		    s->offers[i].product[0] ? " for product " : "",
		    s->offers[i].product, (long long)s->offers[i].rollout_id,
		    s->offers[i].sha256);
}

/*
 * Once a second: time out attempts and judge every active staged rollout.
 * What it changes moves the catalog, so the refresh that follows serves
 * the new stage (or the halt) at once.
 */
static void
gates(struct rollout *r)
{
	int64_t now = (int64_t)time(NULL);

	if (now == r->gated_at)
		return;
	r->gated_at = now;
	if (!atomic_load(&r->leading))
		return;
	registry_rollout_tick(r->marker, now, atomic_load(&r->offline_after));
}

unsigned
rollout_gauge_wait(int64_t took_ms)
{
	int64_t wait = took_ms * GAUGE_COST / 1000;

	return wait < GAUGE_S ? GAUGE_S : wait > GAUGE_MAX_S ? GAUGE_MAX_S :
	    (unsigned)wait;
}

/*
 * Every few seconds: the fleet's gauges for /metrics. Counting scans
 * every device's row, three times (0.4 s of a core at a million devices:
 * 8% of it, every 5 s, taken from the checks), so a slow count waits
 * longer for the next one: see rollout_gauge_wait.
 */
static void
gauges(struct rollout *r)
{
	int64_t now = (int64_t)time(NULL);
	long long took_ms;
	json_t *g;

	if (now - r->gauged_at < (r->gauge_wait_s ? r->gauge_wait_s : GAUGE_S))
		return;
	r->gauged_at = now;
	took_ms = monotonic_ms();
	if (registry_fleet_gauges(r->reader, now,
	    atomic_load(&r->offline_after), &g) != OTAD_OK)
		return; /* logged; the last ones stay */
	took_ms = monotonic_ms() - took_ms;
	r->gauge_wait_s = rollout_gauge_wait(took_ms);
	json_object_set_new(g, "count_ms", json_integer(took_ms));
	/* without them, the rest still stands */
	registry_compare_gauges(r->marker, now, g);
	metrics_set_fleet(g);
	json_decref(g);
}

/*
 * Whether this node leads now (see registry_lead): said in the log when
 * it changes, and in /metrics.
 */
static void
lead(struct rollout *r)
{
	int now = registry_lead(r->marker, atomic_load(&r->leader_timeout));

	if (now != atomic_exchange(&r->leading, now))
		log_info(now ? "leading: this node runs the rollout controller "
		    "and sends the MQTT triggers" : "not leading: another node "
		    "runs the rollout controller");
	metrics_set_leader(now);
}

static void *
controller_main(void *arg)
{
	struct rollout *r = arg;
	struct timespec until;

	pthread_mutex_lock(&r->wait_mu);
	while (!r->stopping) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += TICK_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->wake, &r->wait_mu, &until);
		if (r->stopping)
			break;
		pthread_mutex_unlock(&r->wait_mu);
		lead(r);
		gates(r);
		refresh(r, atomic_exchange(&r->force, 0));
		gauges(r);
		pthread_mutex_lock(&r->wait_mu);
	}
	pthread_mutex_unlock(&r->wait_mu);
	return NULL;
}

enum otad_err
rollout_start(const char *db_path, struct registry *daemon,
    const struct rollout_payload_hooks *hooks, struct rollout **out)
{
	struct rollout *r;
	enum otad_err rc;

	*out = NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return OTAD_ERR_NOMEM;
	r->hooks = *hooks;
	payload_free_fn = hooks->free;
	atomic_init(&r->epoch, 0);
	atomic_init(&r->offline_after, 600);
	atomic_init(&r->leader_timeout, 10);
	atomic_init(&r->leading, 0);
	r->loaded_generation = -1;
	r->marked = -1;
	pthread_mutex_init(&r->swap_mu, NULL);
	pthread_mutex_init(&r->wait_mu, NULL);
	pthread_cond_init(&r->wake, NULL);
	if ((rc = registry_reader_open(db_path, &r->reader)) != OTAD_OK ||
	    (rc = registry_open(db_path, &r->marker)) != OTAD_OK)
		goto fail;
	registry_reader_share_cache(r->reader, daemon);
	lead(r);
	refresh(r, 1);
	if (r->current == NULL) {
		rc = OTAD_ERR_DB;
		goto fail;
	}
	if (pthread_create(&r->thread, NULL, controller_main, r) != 0) {
		rc = OTAD_ERR_NOMEM;
		goto fail;
	}
	r->running = 1;
	pthread_setname_np(r->thread, "otad-rollout");
	*out = r;
	return OTAD_OK;
fail:
	rollout_stop(r);
	return rc;
}

void
rollout_stop(struct rollout *r)
{
	if (r == NULL)
		return;
	if (r->running) {
		pthread_mutex_lock(&r->wait_mu);
		r->stopping = 1;
		pthread_cond_signal(&r->wake);
		pthread_mutex_unlock(&r->wait_mu);
		pthread_join(r->thread, NULL);
	}
	if (r->marker != NULL)
		registry_daemon_forget(r->marker);
	snapshot_release(r->current);
	registry_reader_free(r->reader);
	registry_close(r->marker);
	pthread_mutex_destroy(&r->swap_mu);
	pthread_mutex_destroy(&r->wait_mu);
	pthread_cond_destroy(&r->wake);
	free(r);
}

void
rollout_set_offline_after(struct rollout *r, unsigned seconds)
{
	atomic_store(&r->offline_after, (long long)seconds);
}

void
rollout_set_telemetry(struct rollout *r, unsigned interval_s,
    unsigned retention_s, unsigned min_devices)
{
	registry_set_telemetry(r->marker, interval_s, retention_s, min_devices);
}

void
rollout_set_leader_timeout(struct rollout *r, unsigned seconds)
{
	atomic_store(&r->leader_timeout, seconds);
}

int
rollout_leads(struct rollout *r)
{
	return atomic_load(&r->leading);
}

void
rollout_reload(struct rollout *r)
{
	atomic_store(&r->force, 1);
	pthread_mutex_lock(&r->wait_mu);
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->wait_mu);
}

struct snapshot *
rollout_snapshot(struct rollout *r, struct snapshot **cached)
{
	struct snapshot *mine = *cached;

	/* the common case: one atomic load, no lock, no write */
	if (mine != NULL && mine->epoch == atomic_load(&r->epoch))
		return mine;
	pthread_mutex_lock(&r->swap_mu);
	mine = r->current;
	atomic_fetch_add(&mine->refs, 1);
	pthread_mutex_unlock(&r->swap_mu);
	snapshot_release(*cached);
	*cached = mine;
	return mine;
}
