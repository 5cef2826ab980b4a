/*
 * registry/nodes.c: the daemons serving a registry. Each marks the
 * catalog generation it serves, which otactl waits for after a change;
 * and one of them leads (runs the rollout controller, sends the MQTT
 * triggers).
 *
 * On SQLite there is one daemon, on the database's host: its row is
 * id 1 and its pid says whether it runs. On PostgreSQL every node has
 * its row, kept fresh by a heartbeat, and the leader holds a
 * session-level advisory lock, which PostgreSQL frees when the session
 * ends: the node stopped or crashed, or its host or network died and the
 * keepalives set below gave up on it. A leader that lives but does
 * nothing (hung, stopped, starved) renews no lease: once it is older
 * than the leader timeout, the next node ends that leader's session,
 * which frees the lock, and takes it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "registry.h"
#include "registry_impl.h"

#define LEADER_LOCK "7340419" /* otad's leadership; 7340417 its writes */
#define NODE_FRESH_S 15       /* a node unheard of longer is gone */

int
registry_clustered(struct registry *reg)
{
	return db_backend(reg->db) == DB_POSTGRES;
}

/* This node's name among the registry's daemons: host:pid. */
static const char *
node_name(char *buf, size_t len)
{
	char host[128] = "localhost";

	gethostname(host, sizeof(host) - 1);
	snprintf(buf, len, "%s:%ld", host, (long)getpid());
	return buf;
}

int
registry_daemon_mark(struct registry *reg, int64_t generation, int64_t now)
{
	char node[200];
	int rc;

	if (registry_clustered(reg))
		rc = run(reg, "INSERT INTO daemon (node, pid, generation, seen)"
		    " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (node) DO UPDATE SET"
		    " generation = excluded.generation, seen = excluded.seen",
		    "tiii", node_name(node, sizeof(node)), (int64_t)getpid(),
		    generation, now) == DB_DONE ? 0 : -1;
	else
		rc = exec_ints(reg->db, "INSERT INTO daemon (id, pid,"
		    " generation, seen) VALUES (1, ?1, ?2, ?3) ON CONFLICT (id)"
		    " DO UPDATE SET pid = excluded.pid, generation ="
		    " excluded.generation, seen = excluded.seen",
		    (int64_t)getpid(), generation, now, (int64_t)-1);
	if (rc < 0)
		log_debug("cannot mark the served generation: %s",
		    db_errmsg(reg->db));
	return rc;
}

void
registry_daemon_forget(struct registry *reg)
{
	char node[200];

	if (registry_clustered(reg))
		run(reg, "DELETE FROM daemon WHERE node = ?1", "t",
		    node_name(node, sizeof(node)));
}

/*
 * Is the daemon that wrote the row running? Same host by design (they
 * share the database file); EPERM means alive under another user.
 */
static int
daemon_alive(int64_t pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/*
 * want: the catalog's generation; served: the oldest any running daemon
 * serves; running: how many run. -1 when it cannot be read.
 */
static int
served(struct registry *reg, int64_t *want, int64_t *oldest, int *running)
{
	char cutoff[24];
	json_t *rows, *row;

	if (registry_clustered(reg) ?
	    query_rows(reg->db, &rows, "SELECT (SELECT generation FROM"
	    " catalog) AS want, coalesce(min(generation), -1) AS served,"
	    " count(*) AS running, 0 AS pid FROM daemon WHERE seen >="
	    " CAST(?1 AS BIGINT)", idtext(now_s() - NODE_FRESH_S, cutoff),
	    ARGS_END) != OTAD_OK :
	    query_rows(reg->db, &rows, "SELECT (SELECT generation FROM"
	    " catalog) AS want, coalesce((SELECT generation FROM daemon),"
	    " -1) AS served, 1 AS running, coalesce((SELECT pid FROM"
	    " daemon), 0) AS pid", ARGS_END) != OTAD_OK)
		return -1;
	row = json_array_get(rows, 0);
	*want = json_integer_value(json_object_get(row, "want"));
	*oldest = json_integer_value(json_object_get(row, "served"));
	*running = (int)json_integer_value(json_object_get(row, "running"));
	if (!registry_clustered(reg))
		*running = daemon_alive(json_integer_value(json_object_get(row,
		    "pid")));
	json_decref(rows);
	return 0;
}

enum otad_err
registry_wait_served(struct registry *reg, int timeout_ms)
{
	const struct timespec pause = {0, 20 * 1000000L};
	int64_t want, oldest;
	int waited = 0, running;

	for (;;) {
		if (served(reg, &want, &oldest, &running) < 0)
			return OTAD_ERR_DB;
		if (!running)
			return OTAD_ERR_NOT_FOUND;
		if (oldest >= want)
			return OTAD_OK;
		if (waited >= timeout_ms)
			return OTAD_ERR_BUSY;
		nanosleep(&pause, NULL);
		waited += 20;
	}
}

/* The server gives up on a silent leader within about timeout_s. */
static void
keepalives(struct registry *reg, unsigned timeout_s)
{
	unsigned idle = timeout_s / 3 ? timeout_s / 3 : 1;
	char sql[200];

	snprintf(sql, sizeof(sql), "SET tcp_keepalives_idle = %u; SET "
	    "tcp_keepalives_interval = 1; SET tcp_keepalives_count = %u; SET "
	    "tcp_user_timeout = %u", idle, timeout_s > idle ?
	    timeout_s - idle : 1, timeout_s * 1000);
	if (db_exec(reg->db, sql) != DB_OK)
		log_debug("cannot set keepalives: %s", db_errmsg(reg->db));
}

/* The leader says it lives; 0, or -1 when the database did not hear. */
static int
renew_lease(struct registry *reg)
{
	char node[200];

	return run(reg, "INSERT INTO leader (id, node, backend, renewed)"
	    " VALUES (1, ?1, pg_backend_pid(), clock_timestamp())"
	    " ON CONFLICT (id) DO UPDATE SET node = excluded.node,"
	    " backend = excluded.backend, renewed = excluded.renewed",
	    "t", node_name(node, sizeof(node))) == DB_DONE ? 0 : -1;
}

/*
 * A leader whose lease is older than timeout_s (by the database's clock,
 * whatever the nodes' clocks say) loses its session, and with it the
 * lock; logged when it happens.
 */
static void
depose_silent_leader(struct registry *reg, unsigned timeout_s)
{
	json_t *rows;
	char secs[24];

	if (query_rows(reg->db, &rows, "SELECT l.node, pg_terminate_backend("
	    "l.backend) AS ended FROM leader l JOIN pg_locks k ON k.pid ="
	    " l.backend AND k.locktype = 'advisory' AND k.objid = "
	    LEADER_LOCK " AND k.granted WHERE l.renewed < clock_timestamp() -"
	    " make_interval(secs => CAST(?1 AS INTEGER))",
	    idtext(timeout_s, secs), ARGS_END) != OTAD_OK)
		return;
	if (json_array_size(rows) > 0)
		log_warnx("the leader %s renewed nothing for %u s: its "
		    "database session is ended", json_string_value(
		    json_object_get(json_array_get(rows, 0), "node")),
		    timeout_s);
	json_decref(rows);
}

int
registry_lead(struct registry *reg, unsigned timeout_s)
{
	struct db_stmt *st;
	int held = 0;

	if (!registry_clustered(reg))
		return 1;
	if (reg->leading) {
		/* still connected in the same session: still ours */
		if (renew_lease(reg) == 0 &&
		    db_session(reg->db) == reg->lead_session)
			return 1;
		reg->leading = 0;
		log_warnx("lost the leadership: the database session was "
		    "lost (the connection broke, or another node ended it "
		    "after this one went silent)");
	}
	if (db_prepare(reg->db, "SELECT pg_try_advisory_lock(" LEADER_LOCK
	    ")", 0, &st) != DB_OK)
		return 0;
	if (db_step(st) == DB_ROW)
		held = db_column_int(st, 0);
	db_finalize(st);
	if (!held) {
		depose_silent_leader(reg, timeout_s);
		return 0;
	}
	keepalives(reg, timeout_s);
	reg->leading = 1;
	reg->lead_session = db_session(reg->db);
	renew_lease(reg);
	return 1;
}
