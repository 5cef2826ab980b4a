/* mqtt.c: the broker connection, triggers out, telemetry in */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "log.h"
#include "metrics.h"
#include "monotonic.h"
#include "mqtt.h"
#include "mqttmsg.h"
#include "policy.h"
#include "ratelimit.h"

#define LOOP_MS 100          /* network wait per turn */
#define WORK_MS 1000         /* nudges, retained clears, rollout states */
#define SWEEP_S 15           /* every device's eligibility, at least */
#define PAGE 500             /* devices read at once */
#define ROUND_MAX 1000       /* triggers sent before waiting for acks */
#define BACKOFF_MAX 60       /* seconds between connection attempts */
#define CONNECT_WAIT_S 30    /* a broker that does not answer */
#define PENDING_WAIT_S 120   /* an acknowledgement that never comes */
#define MAX_TOPICS 16

/* A message that waits for the broker's PUBACK. */
struct pending {
	int mid;
	int cleared;             /* a retained trigger's removal */
	time_t at;
	int64_t trigger_id;      /* the owed row it answers, or 0 */
	char device[OTAD_ID_MAX + 1];
	char group[OTAD_PRODUCT_MAX + 1];
	int64_t release, rollout;
	int stage;
	const char *reason;
	int retained;
};

struct said {
	int64_t id;
	char what[96]; /* state, stage and a hash of the reason */
};

struct mqtt {
	struct mosquitto *mosq;
	char host[256];
	unsigned port, keepalive;
	char prefix[128];
	char state_topic[352]; /* online/offline, retained; the will */
	int clustered;
	char base_url[512];
	char topics[MAX_TOPICS][257];
	size_t ntopics;
	int retain;
	atomic_int device_auth;
	struct registry *reg;
	struct registry_reader *reader;
	struct rollout *rollout;
	struct snapshot *snap;
	struct ratelimit *logrl; /* bad telemetry: one line a minute each */
	pthread_t thread;
	int running;
	atomic_int stopping;
	/* the connection; the thread's alone */
	int socket_up;       /* a connection is being made or is up */
	int session;         /* the broker accepted us */
	int down_logged;     /* this outage was logged */
	size_t unacked;      /* subscriptions the broker has not granted */
	time_t connect_started, next_try;
	unsigned backoff;
	/* what waits for the broker, then for the writer */
	struct pending *pending;
	size_t npending, cap;
	atomic_int recording;
	/* sweeps */
	long long swept_epoch;
	time_t swept_at;
	int sweep_due;
	long long worked_ms;
	/* rollout states said on this connection */
	struct said *said;
	size_t nsaid;
};

static void
nap(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* ---- connection ---- */

/* The connection is gone or never came: try again after a while. */
static void
lost(struct mqtt *m, const char *why)
{
	time_t now = time(NULL);
	unsigned delay = m->backoff;

	if (m->session || !m->down_logged)
		log_warnx("MQTT broker %s:%u %s; retrying in %us", m->host,
		    m->port, why, delay);
	m->down_logged = 1;
	m->session = 0;
	m->socket_up = 0;
	metrics_set_mqtt(0);
	/* a little jitter, so a fleet of servers does not reconnect at once */
	m->next_try = now + delay + (time_t)(rand() % (delay / 4 + 1));
	m->backoff = delay * 2 > BACKOFF_MAX ? BACKOFF_MAX : delay * 2;
}

static void
try_connect(struct mqtt *m)
{
	time_t now = time(NULL);
	char why[160];
	int rc;

	if (now < m->next_try)
		return;
	m->connect_started = now;
	errno = 0;
	rc = mosquitto_connect_async(m->mosq, m->host, (int)m->port,
	    (int)m->keepalive);
	if (rc == MOSQ_ERR_SUCCESS) {
		m->socket_up = 1;
		return;
	}
	snprintf(why, sizeof(why), "is unreachable (%s)", rc == MOSQ_ERR_ERRNO ?
	    strerror(errno) : mosquitto_strerror(rc));
	lost(m, why);
}

static void
server_state(struct mqtt *m, const char *state)
{
	char topic[sizeof(m->state_topic)];

	snprintf(topic, sizeof(topic), "%s", m->state_topic);
	mosquitto_publish(m->mosq, NULL, topic, (int)strlen(state), state, 1,
	    true);
}

static void
on_connect(struct mosquitto *mosq, void *arg, int rc)
{
	struct mqtt *m = arg;
	size_t i;

	(void)mosq;
	if (rc != 0) {
		/* the library drops the connection; the loop backs off */
		log_warnx("MQTT broker %s:%u refused the connection: %s",
		    m->host, m->port, mosquitto_connack_string(rc));
		m->down_logged = 1;
		return;
	}
	log_info("connected to MQTT broker %s:%u", m->host, m->port);
	m->session = 1;
	m->down_logged = 0;
	m->backoff = 1;
	metrics_add(M_MQTT_CONNECTS, 1);
	metrics_set_mqtt(1);
	m->unacked = 0;
	for (i = 0; i < m->ntopics; i++) {
		char sub[sizeof(m->topics[0]) + 16];

		/* the nodes of a cluster share the telemetry: once each */
		snprintf(sub, sizeof(sub), "%s%s", m->clustered ?
		    "$share/otad/" : "", m->topics[i]);
		if (mosquitto_subscribe(m->mosq, NULL, sub, 1) !=
		    MOSQ_ERR_SUCCESS)
			log_warnx("cannot subscribe to '%s'", sub);
		else
			m->unacked++;
	}
	server_state(m, "online");
	/* a new connection: say every rollout's state, and what is owed */
	m->nsaid = 0;
	m->sweep_due = 1;
}

/*
 * Telemetry published before the broker granted a subscription is not
 * delivered to otad: say when it is really listening.
 */
static void
on_subscribe(struct mosquitto *mosq, void *arg, int mid, int ngranted,
    const int *granted)
{
	struct mqtt *m = arg;
	int i;

	(void)mosq;
	(void)mid;
	for (i = 0; i < ngranted; i++)
		if (granted[i] > 2)
			log_warnx("MQTT broker refused a telemetry "
			    "subscription");
	if (m->unacked > 0 && --m->unacked == 0)
		log_info("listening for telemetry on %zu MQTT topic%s",
		    m->ntopics, m->ntopics == 1 ? "" : "s");
}

static void
on_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
	struct mqtt *m = arg;

	(void)mosq;
	(void)rc;
	m->session = 0;
}

/* ---- what goes out ---- */

static void
record_done(void *arg, enum otad_err err)
{
	struct mqtt *m = arg;

	(void)err; /* a trigger not on disk is owed again: sent twice at worst */
	atomic_fetch_sub(&m->recording, 1);
}

/* The broker has it: write down that it went out. */
static void
on_publish(struct mosquitto *mosq, void *arg, int mid)
{
	struct mqtt *m = arg;
	struct pending *p = NULL;
	struct record *rec;
	size_t i;

	(void)mosq;
	for (i = 0; i < m->npending; i++)
		if (m->pending[i].mid == mid) {
			p = &m->pending[i];
			break;
		}
	if (p == NULL)
		return; /* a rollout state or the server's: nothing to record */
	if (!p->cleared)
		metrics_add(M_TRIGGERS, 1);
	if ((rec = registry_record_new(p->cleared ? RECORD_CLEARED :
	    RECORD_TRIGGER)) != NULL) {
		rec->at = (int64_t)time(NULL);
		rec->trigger_id = p->trigger_id;
		snprintf(rec->device, sizeof(rec->device), "%s", p->device);
		snprintf(rec->text->group, sizeof(rec->text->group), "%s",
		    p->group);
		rec->offer_release = p->release;
		rec->offer_rollout = p->rollout;
		rec->offer_stage = p->stage;
		snprintf(rec->text->reason, sizeof(rec->text->reason), "%s",
		    p->reason ? p->reason : "rollout");
		rec->retained = p->retained;
		rec->done = record_done;
		rec->done_arg = m;
		rec->may_wait = 1; /* sent: its record must not be lost */
		atomic_fetch_add(&m->recording, 1);
		if (registry_submit(m->reg, rec) != OTAD_OK) {
			atomic_fetch_sub(&m->recording, 1);
			free(rec);
		}
	}
	m->pending[i] = m->pending[--m->npending];
}

/*
 * Publish one message that is recorded once acknowledged (p: what to
 * record; its mid is filled in). 0, or -1 when it could not go out.
 */
static int
publish(struct mqtt *m, const char *topic, const char *payload, int retain,
    const struct pending *p)
{
	struct pending *grown;
	int mid, rc;

	if (m->npending == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;

		if ((grown = realloc(m->pending, cap * sizeof(*grown))) == NULL)
			return -1;
		m->pending = grown;
		m->cap = cap;
	}
	rc = mosquitto_publish(m->mosq, &mid, topic, (int)strlen(payload),
	    payload, 1, retain != 0);
	if (rc != MOSQ_ERR_SUCCESS) {
		log_warnx("cannot publish to '%s': %s", topic,
		    mosquitto_strerror(rc));
		return -1;
	}
	m->pending[m->npending] = *p;
	m->pending[m->npending].mid = mid;
	m->pending[m->npending].at = time(NULL);
	m->npending++;
	return 0;
}

/* A trigger for device or group (one of them ""), offer may be NULL. */
static int
send_trigger(struct mqtt *m, const char *device, const char *group,
    const struct offer *o, const char *reason, int64_t trigger_id)
{
	struct pending p = {0};
	char topic[256], *payload;
	int rc;

	if (group[0] != '\0')
		snprintf(topic, sizeof(topic), "%s/group/%s/trigger",
		    m->prefix, group);
	else
		snprintf(topic, sizeof(topic), "%s/%s/trigger", m->prefix,
		    device);
	if (mosquitto_pub_topic_check(topic) != MOSQ_ERR_SUCCESS) {
		log_warnx("no trigger for group '%s': not usable in a topic",
		    group);
		return 0;
	}
	if ((payload = mqttmsg_trigger(o, m->base_url, reason, trigger_id)) ==
	    NULL)
		return -1;
	p.trigger_id = trigger_id;
	snprintf(p.device, sizeof(p.device), "%s", device);
	snprintf(p.group, sizeof(p.group), "%s", group);
	p.release = o ? o->release_id : 0;
	p.rollout = o ? o->rollout_id : 0;
	p.stage = o ? o->stage : 0;
	p.reason = reason;
	p.retained = m->retain && o != NULL;
	rc = publish(m, topic, payload, p.retained, &p);
	if (rc == 0)
		log_debug("trigger to %s%s: %s", group[0] ? "group " : "",
		    group[0] ? group : device, payload);
	free(payload);
	return rc;
}

static const char *
offer_reason(const struct offer *o)
{
	return o->forced ? "forced" : "rollout";
}

/* What the policy offers a device of a fleet page now; NULL if nothing. */
static const struct offer *
decide(struct mqtt *m, const struct snapshot *snap, const json_t *row,
    time_t now)
{
	struct device_refusal ref;
	struct device_facts f;
	struct decision d;
	const char *id = json_string_value(json_object_get(row, "id"));

	memset(&f, 0, sizeof(f)); /* an app, by its identity */
	f.id = id;
	f.version = json_string_value(json_object_get(row, "version"));
	f.product = json_string_value(json_object_get(row, "product"));
	f.chip = json_string_value(json_object_get(row, "chip"));
	f.hw_rev = json_string_value(json_object_get(row, "hw_rev"));
	f.secure_version = json_integer_value(json_object_get(row,
	    "secure_version"));
	f.free_space = json_integer_value(json_object_get(row, "free_space"));
	f.group = json_string_value(json_object_get(row, "grp"));
	f.battery = (int)json_integer_value(json_object_get(row, "battery"));
	f.quarantined_until = json_integer_value(json_object_get(row,
	    "quarantined_until"));
	f.refused_release = 0;
	if (id == NULL || f.version == NULL)
		return NULL;
	policy_decide(&f, snap->offers, snap->n, &snap->stones, now, &d);
	if (d.kind != DECISION_OFFER)
		return NULL;
	if (registry_device_refusal(m->reader, id, &ref) != OTAD_OK)
		return NULL;
	/* rolled back from it: never again, maybe something else */
	if (ref.rolled_back_release == d.offer->release_id) {
		f.refused_release = ref.rolled_back_release;
		policy_decide(&f, snap->offers, snap->n, &snap->stones, now,
		    &d);
		if (d.kind != DECISION_OFFER)
			return NULL;
	}
	/* it has the image already and is installing it */
	if (ref.pending_release == d.offer->release_id)
		return NULL;
	return d.offer;
}

/* A trigger for each group an opened group stage reaches. */
static int
sweep_groups(struct mqtt *m, const struct snapshot *snap, time_t now,
    unsigned *sent)
{
	size_t i;
	unsigned g;

	for (i = 0; i < snap->n; i++) {
		const struct offer *o = &snap->offers[i];

		if (!o->forced && !stages_window_open(&o->window, now))
			continue;
		for (g = 0; g < o->ngroups; g++) {
			int t = registry_group_triggered(m->reader,
			    o->groups[g], o->rollout_id);

			if (t != 0)
				continue; /* sent, or cannot tell now */
			if (send_trigger(m, "", o->groups[g], o, offer_reason(o),
			    0) < 0)
				return -1;
			(*sent)++;
		}
	}
	return 0;
}

/*
 * Every device the rollouts reach now and that has not had its trigger:
 * send it. Stops after ROUND_MAX, to go on once those are on disk.
 */
static void
sweep(struct mqtt *m, time_t now)
{
	struct snapshot *snap = rollout_snapshot(m->rollout, &m->snap);
	char after[OTAD_ID_MAX + 1] = "";
	unsigned sent = 0;
	json_t *rows, *row;
	size_t i;

	m->swept_epoch = snap->epoch;
	m->swept_at = now;
	m->sweep_due = 0;
	if (snap->n == 0)
		return;
	if (sweep_groups(m, snap, now, &sent) < 0) {
		m->sweep_due = 1;
		return;
	}
	for (;;) {
		if (registry_fleet_page(m->reader, after, PAGE, &rows) !=
		    OTAD_OK) {
			m->sweep_due = 1; /* logged; again next turn */
			return;
		}
		json_array_foreach(rows, i, row) {
			const char *id = json_string_value(json_object_get(row,
			    "id"));
			const struct offer *o = decide(m, snap, row, now);

			snprintf(after, sizeof(after), "%s", id);
			if (o == NULL || registry_triggered(m->reader, id,
			    o->release_id) != 0)
				continue;
			if (send_trigger(m, id, "", o, offer_reason(o), 0) < 0 ||
			    ++sent >= ROUND_MAX) {
				m->sweep_due = 1;
				json_decref(rows);
				return;
			}
		}
		i = json_array_size(rows);
		json_decref(rows);
		if (i < PAGE)
			break;
	}
	if (sent > 0)
		log_info("MQTT: %u trigger%s sent", sent, sent == 1 ? "" : "s");
}

/* Nudges an operator asked for: what the device is offered now, if any. */
static void
send_nudges(struct mqtt *m, time_t now)
{
	struct snapshot *snap = rollout_snapshot(m->rollout, &m->snap);
	json_t *rows, *row, *dev;
	size_t i;

	if (registry_nudges_owed(m->reader, &rows) != OTAD_OK)
		return;
	json_array_foreach(rows, i, row) {
		const char *id = json_string_value(json_object_get(row,
		    "device"));
		const struct offer *o = NULL;

		if (registry_fleet_device(m->reader, id, &dev) == OTAD_OK) {
			if (json_array_size(dev) == 1)
				o = decide(m, snap, json_array_get(dev, 0), now);
			json_decref(dev);
		}
		if (send_trigger(m, id, "", o, "nudge", json_integer_value(
		    json_object_get(row, "id"))) < 0)
			break;
	}
	json_decref(rows);
}

/* Retained triggers nobody needs any more: an empty retained message. */
static void
clear_retained(struct mqtt *m)
{
	json_t *rows, *row;
	char topic[256];
	size_t i;

	if (registry_retained_stale(m->reader, &rows) != OTAD_OK)
		return;
	json_array_foreach(rows, i, row) {
		const char *dev = json_string_value(json_object_get(row,
		    "device"));
		const char *grp = json_string_value(json_object_get(row, "grp"));
		struct pending p = {.cleared = 1};

		p.trigger_id = json_integer_value(json_object_get(row, "id"));
		if (grp[0] != '\0')
			snprintf(topic, sizeof(topic), "%s/group/%s/trigger",
			    m->prefix, grp);
		else
			snprintf(topic, sizeof(topic), "%s/%s/trigger",
			    m->prefix, dev);
		if (publish(m, topic, "", 1, &p) < 0)
			break;
	}
	json_decref(rows);
}

/* Each rollout whose state, stage or reason changed since last said. */
static void
publish_states(struct mqtt *m, time_t now)
{
	json_t *rows, *row;
	char topic[160], what[96], *payload;
	size_t i, k;

	if (registry_rollout_states(m->reader, &rows) != OTAD_OK)
		return;
	json_array_foreach(rows, i, row) {
		int64_t id = json_integer_value(json_object_get(row, "id"));
		const char *reason = json_string_value(json_object_get(row,
		    "reason"));
		unsigned long h = 5381;
		struct said *grown;

		for (; reason != NULL && *reason != '\0'; reason++)
			h = h * 33 + (unsigned char)*reason;
		snprintf(what, sizeof(what), "%s/%lld/%lu",
		    json_string_value(json_object_get(row, "state")),
		    (long long)json_integer_value(json_object_get(row,
		    "stage")), h);
		for (k = 0; k < m->nsaid && m->said[k].id != id; k++)
			continue;
		if (k < m->nsaid && strcmp(m->said[k].what, what) == 0)
			continue;
		snprintf(topic, sizeof(topic), "%s/rollout/%lld/state",
		    m->prefix, (long long)id);
		if ((payload = mqttmsg_rollout_state(row, now)) == NULL)
			break;
		if (mosquitto_publish(m->mosq, NULL, topic,
		    (int)strlen(payload), payload, 1, true) !=
		    MOSQ_ERR_SUCCESS) {
			free(payload);
			break;
		}
		free(payload);
		if (k == m->nsaid) {
			if ((grown = realloc(m->said, (m->nsaid + 1) *
			    sizeof(*grown))) == NULL)
				break;
			m->said = grown;
			m->nsaid++;
			m->said[k].id = id;
		}
		snprintf(m->said[k].what, sizeof(m->said[k].what), "%s", what);
	}
	json_decref(rows);
}

/* An acknowledgement that never came: forget it, the registry owes it. */
static void
expire_pending(struct mqtt *m, time_t now)
{
	size_t i = 0;

	while (i < m->npending)
		if (now - m->pending[i].at > PENDING_WAIT_S)
			m->pending[i] = m->pending[--m->npending];
		else
			i++;
}

static void
work(struct mqtt *m)
{
	time_t now = time(NULL);
	long long ms = monotonic_ms();
	struct snapshot *snap;

	if (ms - m->worked_ms < WORK_MS)
		return;
	m->worked_ms = ms;
	expire_pending(m, now);
	/* what goes out goes out once: from the leading node only */
	if (!rollout_leads(m->rollout))
		return;
	publish_states(m, now);
	/* what went out must be on disk before the registry is asked again */
	if (m->npending > 0 || atomic_load(&m->recording) > 0)
		return;
	send_nudges(m, now);
	clear_retained(m);
	snap = rollout_snapshot(m->rollout, &m->snap);
	if (m->sweep_due || snap->epoch != m->swept_epoch ||
	    now - m->swept_at >= SWEEP_S)
		sweep(m, now);
}

/* ---- what comes in ---- */

/*
 * One line a minute per key at most: a device, or one key for each kind
 * of bad topic (topics are the publisher's to vary without end).
 */
static void
refuse(struct mqtt *m, const char *key, const char *topic, const char *why)
{
	unsigned retry;

	metrics_add(M_TELEMETRY_BAD, 1);
	if (ratelimit_hit(m->logrl, key, strlen(key), 1, (int64_t)time(NULL),
	    &retry))
		log_warnx("MQTT telemetry on '%s' refused: %s", topic, why);
}

static void
on_message(struct mosquitto *mosq, void *arg,
    const struct mosquitto_message *msg)
{
	struct mqtt *m = arg;
	struct telemetry_msg t;
	struct device_row row;
	struct record *rec;
	char level[OTAD_ID_MAX + 2], why[200];
	const char *topic_device = NULL;
	enum otad_err rc;
	size_t i;
	bool match;

	(void)mosq;
	/* a retained message is old news: it says nothing about now */
	if (msg->retain)
		return;
	for (i = 0; i < m->ntopics; i++)
		if (mosquitto_topic_matches_sub(m->topics[i], msg->topic,
		    &match) == MOSQ_ERR_SUCCESS && match)
			break;
	if (i == m->ntopics)
		return; /* not ours */
	/*
	 * The device a per-device topic names is the one a broker ACL
	 * (pattern devices/%u/...) binds to the client: it, not the
	 * payload, says who speaks, and the payload must agree. A shared
	 * topic cannot say, so with tokens on it is not believed.
	 */
	switch (mqttmsg_topic_level(m->topics[i], msg->topic, level,
	    sizeof(level))) {
	case 0:
		if (!otad_valid_id(level)) {
			refuse(m, "bad topic", msg->topic, "the topic's device "
			    "level is not a device id (1 to 64 of A-Z a-z 0-9 "
			    ". _ : -)");
			return;
		}
		topic_device = level;
		break;
	case 1:
		if (atomic_load(&m->device_auth)) {
			refuse(m, "shared topic", msg->topic, "device_auth is "
			    "token: telemetry is taken only on per-device "
			    "topics (devices/<id>/...)");
			return;
		}
		break;
	default:
		refuse(m, "bad topic", msg->topic, "the topic's device level "
		    "is empty or longer than 64 characters");
		return;
	}
	if (mqttmsg_telemetry(msg->payload, (size_t)msg->payloadlen,
	    topic_device, &t, why, sizeof(why)) < 0) {
		refuse(m, t.device[0] ? t.device : msg->topic, msg->topic, why);
		return;
	}
	rc = registry_device_get(m->reader, t.device, &row);
	if (rc == OTAD_ERR_NOT_FOUND && atomic_load(&m->device_auth)) {
		snprintf(why, sizeof(why), "unknown device '%s' (device_auth "
		    "is token: register it with otactl device add)", t.device);
		refuse(m, t.device, msg->topic, why);
		return;
	}
	if (rc == OTAD_OK && row.blocked) {
		snprintf(why, sizeof(why), "device '%s' is blocked", t.device);
		refuse(m, t.device, msg->topic, why);
		return;
	}
	if (rc != OTAD_OK && rc != OTAD_ERR_NOT_FOUND)
		return; /* logged; the next message will do */
	if ((rec = registry_record_new(RECORD_TELEMETRY)) == NULL)
		return;
	rec->at = (int64_t)time(NULL);
	snprintf(rec->device, sizeof(rec->device), "%s", t.device);
	snprintf(rec->version, sizeof(rec->version), "%s", t.version);
	rec->tel = t.tel;
	memcpy(rec->text->metrics, t.metrics, sizeof(t.metrics));
	if (registry_submit(m->reg, rec) != OTAD_OK) {
		free(rec);
		return;
	}
	metrics_add(M_TELEMETRY, 1);
}

/* ---- the thread ---- */

static void *
mqtt_main(void *arg)
{
	struct mqtt *m = arg;
	int rc;

	while (!atomic_load(&m->stopping)) {
		if (!m->socket_up) {
			try_connect(m);
			if (!m->socket_up) {
				nap(LOOP_MS);
				continue;
			}
		}
		rc = mosquitto_loop(m->mosq, LOOP_MS, 1);
		if (rc != MOSQ_ERR_SUCCESS) {
			lost(m, rc == MOSQ_ERR_CONN_LOST ? "closed the "
			    "connection" : rc == MOSQ_ERR_ERRNO ?
			    strerror(errno) : mosquitto_strerror(rc));
			continue;
		}
		if (!m->session) {
			if (time(NULL) - m->connect_started > CONNECT_WAIT_S) {
				mosquitto_disconnect(m->mosq);
				lost(m, "did not answer");
			}
			continue;
		}
		work(m);
	}
	if (m->session) {
		long long until = monotonic_ms() + 1000;

		server_state(m, "offline");
		/* let what is queued reach the broker, briefly */
		while (mosquitto_want_write(m->mosq) &&
		    monotonic_ms() < until &&
		    mosquitto_loop(m->mosq, 50, 1) == MOSQ_ERR_SUCCESS)
			continue;
		mosquitto_disconnect(m->mosq);
		mosquitto_loop(m->mosq, 50, 1);
	}
	return NULL;
}

static int
read_password(const char *path, char *out, size_t len, char *why,
    size_t whylen)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL) {
		snprintf(why, whylen, "mqtt_password_file '%s': %s", path,
		    strerror(errno));
		return -1;
	}
	if (fgets(out, (int)len, f) == NULL)
		out[0] = '\0';
	fclose(f);
	n = strcspn(out, "\r\n");
	out[n] = '\0';
	if (n == 0) {
		snprintf(why, whylen, "mqtt_password_file '%s' is empty", path);
		return -1;
	}
	return 0;
}

/* The client id: configured, or otad-<hostname>. */
static void
client_id(const struct conf *c, char *out, size_t len)
{
	char host[64] = "host";

	if (c->mqtt_client_id[0] != '\0') {
		snprintf(out, len, "%s", c->mqtt_client_id);
		return;
	}
	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	snprintf(out, len, "otad-%s", host);
}

static enum otad_err
configure(struct mqtt *m, const struct conf *c, char *why, size_t whylen)
{
	char id[192], password[512], will[352];
	const char *t;
	size_t n;
	int rc;

	client_id(c, id, sizeof(id));
	if ((m->mosq = mosquitto_new(id, true, m)) == NULL) {
		snprintf(why, whylen, "cannot create an MQTT client");
		return OTAD_ERR_NOMEM;
	}
	mosquitto_connect_callback_set(m->mosq, on_connect);
	mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
	mosquitto_subscribe_callback_set(m->mosq, on_subscribe);
	mosquitto_publish_callback_set(m->mosq, on_publish);
	mosquitto_message_callback_set(m->mosq, on_message);
	/* a node of a cluster speaks for itself, under its client id */
	if (m->clustered)
		snprintf(m->state_topic, sizeof(m->state_topic),
		    "%s/server/%s/state", m->prefix, id);
	else
		snprintf(m->state_topic, sizeof(m->state_topic),
		    "%s/server/state", m->prefix);
	snprintf(will, sizeof(will), "%s", m->state_topic);
	mosquitto_will_set(m->mosq, will, 7, "offline", 1, true);
	if (c->mqtt_username[0] != '\0') {
		password[0] = '\0';
		if (c->mqtt_password_file[0] != '\0' &&
		    read_password(c->mqtt_password_file, password,
		    sizeof(password), why, whylen) < 0)
			return OTAD_ERR_INVALID;
		rc = mosquitto_username_pw_set(m->mosq, c->mqtt_username,
		    password[0] ? password : NULL);
		explicit_bzero(password, sizeof(password));
		if (rc != MOSQ_ERR_SUCCESS) {
			snprintf(why, whylen, "mqtt_username: %s",
			    mosquitto_strerror(rc));
			return OTAD_ERR_INVALID;
		}
	}
	if (c->mqtt_tls_ca[0] != '\0' && (rc = mosquitto_tls_set(m->mosq,
	    c->mqtt_tls_ca, NULL, c->mqtt_tls_cert[0] ? c->mqtt_tls_cert :
	    NULL, c->mqtt_tls_key[0] ? c->mqtt_tls_key : NULL, NULL)) !=
	    MOSQ_ERR_SUCCESS) {
		snprintf(why, whylen, "MQTT TLS files (mqtt_tls_ca, "
		    "mqtt_tls_cert, mqtt_tls_key): %s", mosquitto_strerror(rc));
		return OTAD_ERR_INVALID;
	}
	for (t = c->mqtt_telemetry_topics; *t != '\0'; t += n) {
		t += strspn(t, " ");
		if ((n = strcspn(t, " ")) == 0)
			break;
		if (m->ntopics == MAX_TOPICS) {
			snprintf(why, whylen, "mqtt_telemetry_topics: at most "
			    "%d topics", MAX_TOPICS);
			return OTAD_ERR_INVALID;
		}
		snprintf(m->topics[m->ntopics++], sizeof(m->topics[0]), "%.*s",
		    (int)n, t);
	}
	return OTAD_OK;
}

enum otad_err
mqtt_start(const struct mqtt_options *o, struct mqtt **out, char *why,
    size_t whylen)
{
	const struct conf *c = o->conf;
	struct mqtt *m;
	enum otad_err rc;

	*out = NULL;
	if (c->mqtt_host[0] == '\0')
		return OTAD_OK;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return OTAD_ERR_NOMEM;
	mosquitto_lib_init();
	snprintf(m->host, sizeof(m->host), "%s", c->mqtt_host);
	m->port = c->mqtt_port;
	m->keepalive = c->mqtt_keepalive;
	snprintf(m->prefix, sizeof(m->prefix), "%s", c->mqtt_topic_prefix);
	snprintf(m->base_url, sizeof(m->base_url), "%s", o->base_url);
	m->retain = c->mqtt_retain_triggers;
	m->clustered = o->clustered;
	atomic_init(&m->device_auth, c->device_auth);
	atomic_init(&m->recording, 0);
	m->reg = o->reg;
	m->rollout = o->rollout;
	m->backoff = 1;
	m->swept_epoch = -1;
	m->sweep_due = 1;
	metrics_set_mqtt(0);
	if ((rc = configure(m, c, why, whylen)) != OTAD_OK)
		goto fail;
	if ((m->logrl = ratelimit_new(4096)) == NULL ||
	    (rc = registry_reader_open(o->db_path, &m->reader)) != OTAD_OK) {
		snprintf(why, whylen, "MQTT: cannot open the registry");
		rc = rc != OTAD_OK ? rc : OTAD_ERR_NOMEM;
		goto fail;
	}
	registry_reader_share_cache(m->reader, o->reg);
	if (pthread_create(&m->thread, NULL, mqtt_main, m) != 0) {
		snprintf(why, whylen, "cannot start the MQTT thread");
		rc = OTAD_ERR_NOMEM;
		goto fail;
	}
	m->running = 1;
	pthread_setname_np(m->thread, "otad-mqtt");
	log_info("MQTT: broker %s:%u%s, topics under '%s/', telemetry from "
	    "'%s'", m->host, m->port, c->mqtt_tls_ca[0] ? " (TLS)" : "",
	    m->prefix, c->mqtt_telemetry_topics);
	*out = m;
	return OTAD_OK;
fail:
	mqtt_stop(m);
	return rc;
}

void
mqtt_set_device_auth(struct mqtt *m, int token)
{
	if (m != NULL)
		atomic_store(&m->device_auth, token);
}

void
mqtt_stop(struct mqtt *m)
{
	if (m == NULL)
		return;
	if (m->running) {
		long long until = monotonic_ms() + 10000;

		atomic_store(&m->stopping, 1);
		pthread_join(m->thread, NULL);
		/* the writer calls record_done with m: wait for it */
		while (atomic_load(&m->recording) > 0 && monotonic_ms() < until)
			nap(5);
		if (atomic_load(&m->recording) > 0) {
			log_warnx("MQTT: trigger records still queued; "
			    "leaving them");
			return;
		}
	}
	if (m->mosq != NULL)
		mosquitto_destroy(m->mosq);
	mosquitto_lib_cleanup();
	snapshot_release(m->snap);
	registry_reader_free(m->reader);
	ratelimit_free(m->logrl);
	metrics_set_mqtt(-1);
	free(m->pending);
	free(m->said);
	free(m);
}
