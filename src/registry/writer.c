/*
 * registry/writer.c: the writer thread. Producers (HTTP, MQTT threads)
 * queue records; the writer applies them in the order they were queued,
 * many to a transaction (group commit), and says when a durable one is
 * on disk. What each record kind does to the registry is in records.c.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "registry.h"
#include "registry_impl.h"

/* what a record is, for the log */
static const char *const record_names[] = {
	[RECORD_CHECKIN] = "check-in",
	[RECORD_REPORT] = "report",
	[RECORD_DOWNLOAD] = "a download",
	[RECORD_DELIVERED] = "a delivery",
	[RECORD_TELEMETRY] = "telemetry",
	[RECORD_TRIGGER] = "a trigger",
	[RECORD_CLEARED] = "a cleared trigger",
};

/* The writer waits for the database: say since when, once. */
static void
writer_blocked(struct registry *reg)
{
	long long none = 0;

	atomic_compare_exchange_strong(&reg->busy_since, &none,
	    (long long)time(NULL));
}

/* Begin to write, waiting as long as an operator holds the database. */
static void
writer_begin(struct registry *reg)
{
	time_t last_log = 0;

	while (db_begin_write(reg->db) != DB_OK) {
		time_t now = time(NULL);

		writer_blocked(reg);
		if (now - last_log >= 10) {
			/* every record queued, not only this batch */
			log_warnx("database is busy (%s); %zu records wait",
			    db_errmsg(reg->db),
			    (size_t)atomic_load(&reg->depth));
			last_log = now;
		}
	}
}

int
registry_device_cache_stats(struct registry *reg, struct devcache_stats *out)
{
	if (reg->cache == NULL)
		return -1;
	devcache_stats(reg->cache, out);
	return 0;
}

int64_t
registry_stalled(struct registry *reg)
{
	long long since = atomic_load(&reg->busy_since);
	int64_t secs;

	if (since == 0)
		return 0;
	secs = (int64_t)time(NULL) - since;
	return secs > 0 ? secs : 1;
}

/*
 * Every record of batch not failed already, in order; the first that
 * fails, or NULL when all went in.
 */
static struct record *
apply_all(struct registry *reg, struct record *batch)
{
	struct record *rec;

	for (rec = batch; rec != NULL; rec = rec->next)
		if (rec->err == OTAD_OK && (rec->kind == RECORD_REPORT ?
		    record_apply_report(reg, rec) : record_apply(reg, rec)) < 0)
			return rec;
	return NULL;
}

/*
 * Apply and commit a batch of count records, durable of them durable;
 * whether any was. (The caller counted them in a pass it made anyway: a
 * batch under load is larger than the CPU's caches, and each walk of its
 * list is a cache miss a record.)
 */
static int
writer_apply(struct registry *reg, struct record *batch, size_t count,
    size_t durable)
{
	struct record *rec;
	int rc;
	int whole = db_backend(reg->db) == DB_POSTGRES;
	time_t last_log = 0;

	/*
	 * Check-ins alone need not wait for the disk; a batch with a
	 * report does, and its wait covers every earlier commit.
	 */
	db_durable(reg->db, durable > 0);
	if (reg->cache != NULL)
		reg->batch_epoch = devcache_epoch(reg->cache);
	writer_begin(reg);
	if (whole) {
		/*
		 * PostgreSQL abandons the whole transaction at a failed
		 * statement: the batch is applied without savepoints (each
		 * would cost two more round trips), and when a record fails it
		 * is left out and the rest applied again from the start.
		 */
		while ((rec = apply_all(reg, batch)) != NULL) {
			enum db_code why = db_errcode(reg->db);

			log_warnx("cannot record %s of '%s': %s",
			    record_names[rec->kind], rec->device,
			    db_errmsg(reg->db));
			rec->err = OTAD_ERR_DB;
			db_exec(reg->db, "ROLLBACK");
			if (why == DB_BUSY) {
				/* the connection, not the record: all fail */
				for (rec = batch; rec != NULL; rec = rec->next)
					rec->err = OTAD_ERR_DB;
				atomic_store(&reg->busy_since, 0);
				return durable > 0;
			}
			writer_begin(reg);
		}
	}
	for (rec = whole ? NULL : batch; rec != NULL; rec = rec->next) {
		/*
		 * A report is all or nothing (savepoint). A check-in's
		 * statements each stand alone, and check-ins are most of the
		 * traffic, so they go without.
		 */
		if (rec->kind != RECORD_REPORT) {
			if (record_apply(reg, rec) < 0) {
				log_warnx("cannot record %s of '%s': %s",
				    record_names[rec->kind], rec->device,
				    db_errmsg(reg->db));
				rec->err = OTAD_ERR_DB;
			}
			continue;
		}
		step_done(reg->w[W_SAVEPOINT]);
		if (record_apply_report(reg, rec) < 0) {
			log_warnx("cannot record report of '%s': %s",
			    rec->device, db_errmsg(reg->db));
			rec->err = OTAD_ERR_DB;
			step_done(reg->w[W_ROLLBACK_TO]);
		}
		step_done(reg->w[W_RELEASE]);
	}
	while ((rc = db_exec(reg->db, "COMMIT")) !=
	    DB_OK) {
		time_t now = time(NULL);

		if (rc != DB_BUSY) {
			log_warnx("cannot commit %zu records: %s", count,
			    db_errmsg(reg->db));
			db_exec(reg->db, "ROLLBACK");
			/* rows put from this batch were never written */
			if (reg->cache != NULL)
				devcache_clear(reg->cache);
			for (rec = batch; rec != NULL; rec = rec->next)
				rec->err = OTAD_ERR_DB;
			atomic_store(&reg->busy_since, 0);
			return durable > 0;
		}
		writer_blocked(reg);
		if (now - last_log >= 10) {
			log_warnx("commit waits: database is busy; %zu records "
			    "wait", (size_t)atomic_load(&reg->depth));
			last_log = now;
		}
	}
	atomic_store(&reg->busy_since, 0);
	return durable > 0;
}

/* Two sorted lists merged into one; b's head goes first when b_first. */
static struct record *
merge(struct record *a, struct record *b,
    int (*b_first)(const struct record *, const struct record *))
{
	struct record head, *tail = &head;

	while (a != NULL && b != NULL) {
		if (b_first(a, b)) {
			tail->next = b;
			b = b->next;
		} else {
			tail->next = a;
			a = a->next;
		}
		tail = tail->next;
	}
	tail->next = a != NULL ? a : b;
	return head.next;
}

static int
seq_before(const struct record *a, const struct record *b)
{
	return b->seq < a->seq;
}

/* a goes first on a tie: each device's records keep their order */
static int
device_before(const struct record *a, const struct record *b)
{
	return strcmp(b->device, a->device) < 0;
}

/*
 * A record's place in device order: the first 16 bytes of its id as two
 * big-endian numbers (zero-padded, so they order as SQLite's keys do),
 * whether the id goes on past them, and the order it was queued in.
 */
struct placed {
	uint64_t hi, lo, seq;
	struct record *rec;
	int longer;
};

static uint64_t
be64(const unsigned char *b)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

static int
placed_cmp(const void *x, const void *y)
{
	const struct placed *a = x, *b = y;
	int c;

	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	/* the same 16 bytes: the rest of the ids, if either goes on */
	if ((a->longer || b->longer) &&
	    (c = strcmp(a->rec->device, b->rec->device)) != 0)
		return c;
	/* one device: in the order they came */
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/*
 * Up to cap records taken off *list, sorted through p: the run, in
 * device order, each device's records in the order they came. Adds the
 * durable ones to *durable.
 */
static struct record *
sort_run(struct placed *p, size_t cap, struct record **list, size_t *durable)
{
	struct record *rec;
	size_t i, n;

	for (n = 0, rec = *list; n < cap && rec != NULL; n++, rec = rec->next) {
		unsigned char b[16] = {0};
		size_t len = strnlen(rec->device, sizeof(b) + 1);

		*durable += rec->durable != 0;
		memcpy(b, rec->device, len < sizeof(b) ? len : sizeof(b));
		p[n].hi = be64(b);
		p[n].lo = be64(b + 8);
		p[n].seq = rec->seq;
		p[n].rec = rec;
		p[n].longer = len > sizeof(b);
	}
	*list = rec;
	qsort(p, n, sizeof(*p), placed_cmp);
	for (i = 0; i + 1 < n; i++)
		p[i].rec->next = p[i + 1].rec;
	p[n - 1].rec->next = NULL;
	return p[0].rec;
}

/*
 * A batch in device order, each device's records in the order they came.
 * Records of different devices do not depend on each other's order;
 * device rows in key order share B-tree pages and descents, which at a
 * million devices in random order is a quarter of the writer's time.
 * The records are sorted through an array of their keys: a batch at a
 * million devices is 100,000 records of 1.6 kB, and a merge sort of the
 * list itself went through every one of them at each of its 17 levels,
 * each a cache miss (a quarter of the writer's time again). Short of
 * memory for the array, runs as long as the array it has (or one on the
 * stack) are sorted and merged. *durable: how many of them are durable.
 */
static struct record *
sort_by_device(struct registry *reg, struct record *list, size_t n,
    size_t *durable)
{
	struct placed stack[64], *p = stack, *grown;
	struct record *sorted = NULL;
	size_t cap = sizeof(stack) / sizeof(stack[0]);

	*durable = 0;
	if (n < 2) {
		*durable = list != NULL && list->durable;
		return list;
	}
	if (n > reg->placed_cap &&
	    (grown = realloc(reg->placed, n * sizeof(*grown))) != NULL) {
		reg->placed = grown;
		reg->placed_cap = n;
	}
	if (reg->placed_cap > cap) {
		p = reg->placed;
		cap = reg->placed_cap;
	}
	/* a later run's records came later: on a tie they go after */
	while (list != NULL)
		sorted = merge(sorted, sort_run(p, cap, &list, durable),
		    device_before);
	return sorted;
}

/*
 * The records in seq order that may be applied now: the held ones and
 * those collected, up to the first seq missing; the rest stay held.
 */
static struct record *
in_order(struct registry *reg, struct record *collected, size_t *count)
{
	struct record *all = merge(reg->held, collected, seq_before), *rec;
	struct record *last = NULL;
	size_t n = 0, total = *count + reg->nheld;

	for (rec = all; rec != NULL && rec->seq == reg->next_seq + n;
	    rec = rec->next) {
		last = rec;
		n++;
	}
	reg->held = rec;
	reg->nheld = total - n;
	if (last == NULL)
		return NULL;
	last->next = NULL;
	reg->next_seq += n;
	*count = n;
	return all;
}

/* Take up to BATCH_MAX records from the producers' queues, in order. */
static struct record *
writer_collect(struct registry *reg, size_t *count)
{
	struct record *head = NULL;
	unsigned i, n = atomic_load(&reg->nproducers);

	/* a report queued after this is found now or by the next look */
	atomic_store(&reg->durable_queued, 0);
	*count = 0;
	for (i = 0; i < n && *count < BATCH_MAX; i++) {
		struct producer *p = reg->producers[i];
		struct record *taken;

		/*
		 * Only taken under the lock, merged after it: a queue under
		 * load holds a hundred thousand records, and a merge walks
		 * them all, a cache miss each, milliseconds in which the
		 * producer's HTTP thread could queue nothing.
		 */
		pthread_mutex_lock(&p->mu);
		if ((taken = p->head) != NULL) {
			*count += p->len;
			p->head = p->tail = NULL;
			p->len = 0;
			pthread_cond_broadcast(&p->not_full);
		}
		pthread_mutex_unlock(&p->mu);
		/* each producer's queue is in seq order already */
		if (taken != NULL)
			head = merge(head, taken, seq_before);
	}
	return in_order(reg, head, count);
}

/*
 * The next records of a batch (in device order) to commit: every record
 * of each device that has a durable one (a report: it is answered only
 * once committed, and must not wait for the rest of a large batch), else
 * the first CHUNK_MAX. Each device's records stay in their order.
 * *durable: how many of those taken are durable.
 */
static struct record *
take_chunk(struct record **batch, int look, size_t *count, size_t *durable)
{
	struct record urgent, rest, *ut = &urgent, *rt = &rest, *first, *rec;
	size_t n = 0, i, d = 0;
	int durable_device;

	urgent.next = rest.next = NULL;
	for (first = look ? *batch : NULL; first != NULL; first = rec) {
		/* one device's records: first .. up to rec */
		durable_device = 0;
		for (rec = first; rec != NULL &&
		    strcmp(rec->device, first->device) == 0; rec = rec->next)
			durable_device |= rec->durable;
		for (; first != rec; first = first->next) {
			if (durable_device) {
				ut->next = first;
				ut = first;
				n++;
				d += first->durable != 0;
			} else {
				rt->next = first;
				rt = first;
			}
		}
	}
	ut->next = rt->next = NULL;
	if (n > 0) {
		*batch = rest.next;
		*count = n;
		*durable = d;
		return urgent.next;
	}
	first = *batch;
	d = first->durable != 0;
	for (i = 1, rec = first; rec->next != NULL && i < CHUNK_MAX; i++) {
		rec = rec->next;
		d += rec->durable != 0;
	}
	*batch = rec->next;
	rec->next = NULL;
	*count = i;
	*durable = d;
	return first;
}

/* Records applied: say so to whoever waits, and let them go. */
static void
writer_finish(struct registry *reg, struct record *list, size_t count)
{
	struct record *rec, *next;

	atomic_fetch_sub(&reg->depth, count);
	for (rec = list; rec != NULL; rec = next) {
		next = rec->next;
		if (rec->done != NULL)
			rec->done(rec->done_arg, rec->err);
		free(rec);
	}
}

/*
 * Load a page of device rows into memory, those not there already; 1 while
 * there are more to load. A clear (a new epoch) starts again from the
 * first device. The writer's own reads see all it has written.
 */
static int
load_devices(struct registry *reg)
{
	struct db_stmt *st = reg->w[W_LOAD_DEVICES];
	uint64_t epoch;
	int n = 0, rc;

	if (reg->cache == NULL)
		return 0;
	epoch = devcache_epoch(reg->cache);
	if (epoch != reg->load_epoch) {
		reg->load_epoch = epoch;
		reg->load_after[0] = '\0';
		reg->loaded = 0;
	}
	if (reg->loaded)
		return 0;
	db_bind_text(st, 1, reg->load_after);
	while ((rc = db_step(st)) == DB_ROW) {
		struct device_row row;
		const char *id = db_column_text(st, DEVICE_ROW_NCOLUMNS);

		if (id == NULL)
			continue;
		device_row_from(st, &row);
		devcache_put(reg->cache, id, &row, epoch, 1);
		snprintf(reg->load_after, sizeof(reg->load_after), "%s", id);
		n++;
	}
	db_reset(st);
	db_clear_bindings(st);
	if (rc != DB_DONE)
		return 0; /* busy or failing: the next round tries again */
	if (n == 0) {
		struct devcache_stats cs;

		reg->loaded = 1;
		devcache_stats(reg->cache, &cs);
		log_debug("%zu device rows in memory", cs.devices);
	}
	return !reg->loaded;
}

/*
 * Whether enough records wait (depth, every producer's queue counted) for
 * the writer not to let more gather: a batch's worth, or half of one
 * producer's queue (no queue holds more than all of them).
 */
static int
enough_queued(const struct registry *reg, size_t depth)
{
	return depth >= GATHER_BELOW || depth >= reg->queue_max / 2;
}

/*
 * Between batches under load: let records gather, so that one batch
 * carries many. In random order every check-in dirties a page of its own,
 * and a batch (in device order, its chunks rewriting disjoint ranges of
 * pages) writes each dirty page once however many rows changed in it, so
 * larger batches write fewer pages per check-in: at 100,000 devices a
 * batch of a few thousand wrote a WAL frame for every third check-in, and
 * the kernel's copying of them was a third of the writer's time. Check-ins
 * wait (nobody waits for them) as long as it takes the last batch's size
 * to come again at 10,000 a second, at most GATHER_MS: under a load past
 * that rate batches grow until a device's poll shows in the database
 * within about a second, below it they shrink, and a burst of a few
 * hundred check-ins shows within milliseconds. They wait not at all once
 * enough are queued (GATHER_BELOW, or half a producer's queue, so that a
 * small writer_queue_max drops nothing) or when the last batch's size
 * queued again while it was applied (a writer that lags, as on
 * PostgreSQL, never idles), and a record that makes enough, or a
 * durable one (a report), ends a gathering. Under a trickle they gather
 * for TRICKLE_MS: at a thousand deliveries a second (each an attempt
 * row, its six index entries and the device's row) a transaction for
 * every one or two cost the writer 110 µs a delivery, and 90 with a
 * few to each. After a batch with a report a 1 ms nap (which nothing
 * ends) lets the next reports share an fsync.
 */
static void
gather(struct registry *reg, size_t count, int durable)
{
	const struct timespec nap = {0, NAP_NS};
	struct pollfd pfd = {.fd = reg->efd, .events = POLLIN};
	size_t ms = count / GATHER_PER_MS;
	uint64_t ticks;

	if (enough_queued(reg, atomic_load(&reg->depth)))
		return;
	if (durable) {
		nanosleep(&nap, NULL);
		return;
	}
	if (count < GATHER_FROM)
		ms = TRICKLE_MS;
	else if (atomic_load(&reg->depth) >= count)
		return;
	atomic_store(&reg->gathering, 1);
	/*
	 * A wake-up left over is dropped: producers that queued while the
	 * last batch was collected saw the writer idle and woke it, and it
	 * ended every gathering at once (batches shrank to what queued
	 * while the last was applied, 12,000 check-ins on average at
	 * 100,000 devices instead of 32,768). A record queued before
	 * gathering showed, or one (or a stop) that woke us and was
	 * dropped, is looked for.
	 */
	if (read(reg->efd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_warn("writer wake-up");
	if (!enough_queued(reg, atomic_load(&reg->depth)) &&
	    !atomic_load(&reg->durable_queued) &&
	    !atomic_load(&reg->stopping) &&
	    poll(&pfd, 1, (int)(ms < GATHER_MS ? ms : GATHER_MS)) > 0 &&
	    read(reg->efd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_warn("writer wake-up");
	atomic_store(&reg->gathering, 0);
}

static void *
writer_main(void *arg)
{
	struct registry *reg = arg;
	struct pollfd pfd = {.fd = reg->efd, .events = POLLIN};
	const struct timespec nap = {0, NAP_NS};

	for (;;) {
		struct record *batch, *more;
		uint64_t ticks;
		size_t count, total, urgent;
		int durable;

		/*
		 * Say we are idle before the last look: a producer that
		 * queues after the look sees idle and wakes us; one that
		 * queued before it is found by the look.
		 */
		atomic_store(&reg->idle, 1);
		batch = writer_collect(reg, &count);
		if (batch == NULL && reg->held != NULL) {
			/* the record before them is being queued: a moment */
			atomic_store(&reg->idle, 0);
			nanosleep(&nap, NULL);
			continue;
		}
		if (batch == NULL) {
			if (atomic_load(&reg->stopping))
				break;
			/* idle: rows to load first, then wait for records */
			if (poll(&pfd, 1, load_devices(reg) ? 0 : 1000) > 0 &&
			    read(reg->efd, &ticks, sizeof(ticks)) < 0 &&
			    errno != EAGAIN)
				log_warn("writer wake-up");
			atomic_store(&reg->idle, 0);
			continue;
		}
		atomic_store(&reg->idle, 0);
		batch = sort_by_device(reg, batch, count, &urgent);
		total = count;
		durable = 0;
		/*
		 * Under load a batch is all that queued meanwhile (a second's
		 * worth at a million devices): it is committed in chunks, and
		 * a report queued in the meantime is taken in and committed
		 * next, with its device's records, instead of after the rest.
		 * In device order, chunks rewrite disjoint ranges of pages.
		 */
		while (batch != NULL) {
			struct record *chunk;
			size_t n, d;

			chunk = take_chunk(&batch, urgent > 0, &n, &d);
			urgent -= d;
			durable |= writer_apply(reg, chunk, n, d);
			writer_finish(reg, chunk, n);
			if (batch == NULL || (!atomic_load(&reg->durable_queued)
			    && reg->held == NULL))
				continue;
			if ((more = writer_collect(reg, &n)) == NULL)
				continue;
			more = sort_by_device(reg, more, n, &d);
			urgent += d;
			total += n;
			/* on a tie the batch's own, older records go first */
			batch = merge(batch, more, device_before);
		}
		load_devices(reg); /* busy: a page between batches */
		gather(reg, total, durable);
	}
	return NULL;
}

enum otad_err
registry_writer_start(struct registry *reg, unsigned queue_max,
    size_t cache_devices)
{
	int i;

	/* on PostgreSQL other nodes write device rows: always read them */
	if (cache_devices > 0 && db_backend(reg->db) == DB_SQLITE &&
	    (reg->cache = devcache_new(cache_devices)) == NULL)
		return OTAD_ERR_NOMEM;
	/*
	 * The writer's pages stay valid across its own commits (SQLite
	 * discards a connection's cache only for another's), so a cache that
	 * holds the device table's pages spares a read per random check-in.
	 * Pages are allocated as they are touched: the limit, not a cost.
	 */
	if (db_backend(reg->db) == DB_SQLITE && db_exec(reg->db,
	    "PRAGMA cache_size = -" WRITER_CACHE_KIB) != DB_OK)
		log_warnx("cannot size the writer's page cache: %s",
		    db_errmsg(reg->db));
	for (i = 0; i < W_COUNT; i++)
		if ((i != W_CHECKIN_SEEN || reg->cache != NULL) &&
		    db_prepare(reg->db, registry_record_sql[i], 1, &reg->w[i]) != DB_OK)
			return db_error(reg->db, "cannot prepare statement");
	/*
	 * Every device's row before the first check: about a second a
	 * million devices. Loaded later (after an operator's edit cleared
	 * them), a page goes in between the writer's batches.
	 */
	if (reg->cache != NULL) {
		struct timespec t0, t1;
		struct devcache_stats cs;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (load_devices(reg))
			continue;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		devcache_stats(reg->cache, &cs);
		log_info("%zu device rows in memory (%.1f s)", cs.devices,
		    (double)(t1.tv_sec - t0.tv_sec) +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	}

	if ((reg->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		log_warn("eventfd");
		return OTAD_ERR_IO;
	}
	if (pthread_key_create(&reg->key, NULL) != 0)
		return OTAD_ERR_NOMEM;
	reg->key_made = 1;
	reg->queue_max = queue_max;
	if (pthread_create(&reg->thread, NULL, writer_main, reg) != 0) {
		log_warnx("cannot start the writer thread");
		return OTAD_ERR_NOMEM;
	}
	reg->running = 1;
	/* named, for top -H and perf: its share of the CPU is the figure */
	pthread_setname_np(reg->thread, "otad-writer");
	return OTAD_OK;
}

enum otad_err
registry_apply(struct registry *reg, struct record *batch)
{
	struct record *rec, *next;
	enum otad_err rc = OTAD_OK;
	size_t count = 0, durable = 0;
	int i;

	if (reg->running)
		return OTAD_ERR_INVALID; /* its writer orders every record */
	for (i = 0; i < W_COUNT; i++)
		if (reg->w[i] == NULL && i != W_CHECKIN_SEEN &&
		    db_prepare(reg->db, registry_record_sql[i], 1, &reg->w[i]) != DB_OK)
			return db_error(reg->db, "cannot prepare statement");
	for (rec = batch; rec != NULL; rec = rec->next) {
		count++;
		durable += rec->durable != 0;
	}
	if (batch != NULL)
		writer_apply(reg, batch, count, durable);
	for (rec = batch; rec != NULL; rec = next) {
		next = rec->next;
		if (rec->err != OTAD_OK)
			rc = rec->err;
		free(rec);
	}
	return rc;
}

static struct producer *
producer_get(struct registry *reg)
{
	struct producer *p = pthread_getspecific(reg->key);
	unsigned n;

	if (p != NULL)
		return p;
	pthread_mutex_lock(&reg->producers_mu);
	n = atomic_load(&reg->nproducers);
	if (n == MAX_PRODUCERS) {
		/* more threads than slots: share one, still correct */
		p = reg->producers[(uintptr_t)pthread_self() % MAX_PRODUCERS];
	} else if ((p = calloc(1, sizeof(*p))) != NULL) {
		pthread_mutex_init(&p->mu, NULL);
		pthread_cond_init(&p->not_full, NULL);
		reg->producers[n] = p;
		atomic_store(&reg->nproducers, n + 1);
	}
	pthread_mutex_unlock(&reg->producers_mu);
	if (p != NULL)
		pthread_setspecific(reg->key, p);
	return p;
}

enum otad_err
registry_submit(struct registry *reg, struct record *rec)
{
	struct producer *p;
	uint64_t one = 1;
	int wake, durable, enough;

	if (!reg->running || atomic_load(&reg->stopping))
		return OTAD_ERR_SHUTDOWN;
	if ((p = producer_get(reg)) == NULL)
		return OTAD_ERR_NOMEM;
	rec->next = NULL;
	rec->err = OTAD_OK;
	pthread_mutex_lock(&p->mu);
	/*
	 * Full: a request is answered now (its caller decides what a
	 * dropped record costs); only a thread that serves none waits.
	 */
	if (p->len >= reg->queue_max && !rec->may_wait) {
		pthread_mutex_unlock(&p->mu);
		return OTAD_ERR_BUSY;
	}
	while (p->len >= reg->queue_max)
		pthread_cond_wait(&p->not_full, &p->mu);
	/* numbered as it is queued, under the lock the writer takes */
	rec->seq = atomic_fetch_add(&reg->seq, 1);
	wake = p->head == NULL;
	if (p->tail != NULL)
		p->tail->next = rec;
	else
		p->head = rec;
	p->tail = rec;
	p->len++;
	enough = enough_queued(reg, atomic_fetch_add(&reg->depth, 1) + 1);
	/* rec is the writer's once the lock is let go: it may be freed */
	if ((durable = rec->durable) != 0)
		atomic_store(&reg->durable_queued, 1);
	pthread_mutex_unlock(&p->mu);
	/*
	 * Only the first record into an empty queue, and only while the
	 * writer waits, costs a wake-up; a durable record, or enough
	 * queued, ends a gathering.
	 */
	if (((wake && atomic_load(&reg->idle)) || ((durable || enough) &&
	    atomic_load(&reg->gathering))) &&
	    write(reg->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("cannot wake the writer");
	return OTAD_OK;
}

void
registry_set_quarantine(struct registry *reg, unsigned n, unsigned period_s)
{
	atomic_store(&reg->quarantine_n, n);
	atomic_store(&reg->quarantine_s, period_s);
}

void
registry_set_telemetry(struct registry *reg, unsigned interval_s,
    unsigned retention_s, unsigned min_devices)
{
	atomic_store(&reg->tel_interval, interval_s);
	atomic_store(&reg->tel_retention, retention_s);
	atomic_store(&reg->compare_min, min_devices);
}

size_t
registry_queue_depth(struct registry *reg)
{
	return atomic_load(&reg->depth);
}

void
registry_close(struct registry *reg)
{
	unsigned i;
	int k;

	if (reg == NULL)
		return;
	if (reg->running) {
		uint64_t one = 1;

		atomic_store(&reg->stopping, 1);
		if (write(reg->efd, &one, sizeof(one)) < 0)
			log_warn("cannot wake the writer");
		pthread_join(reg->thread, NULL);
	}
	for (i = 0; i < atomic_load(&reg->nproducers); i++) {
		pthread_mutex_destroy(&reg->producers[i]->mu);
		pthread_cond_destroy(&reg->producers[i]->not_full);
		free(reg->producers[i]);
	}
	if (reg->key_made)
		pthread_key_delete(reg->key);
	for (k = 0; k < W_COUNT; k++)
		db_finalize(reg->w[k]);
	if (reg->efd >= 0)
		close(reg->efd);
	pthread_mutex_destroy(&reg->producers_mu);
	run_slots_free(reg);
	db_close(reg->db);
	devcache_free(reg->cache);
	free(reg->placed);
	json_decref(reg->compared);
	free(reg);
}
