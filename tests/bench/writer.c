/*
 * The writer alone: what otad's writer thread spends to record a check-in,
 * against SQLite doing the same statements on the same rows in the same
 * run, with nothing else on the cores (no HTTP, no wrk, which make the
 * other figures move with the host).
 *
 *   writer DB COPY FLEET CHECKINS
 *
 * DB holds FLEET devices dev-0 .. dev-FLEET-1 (as tests/bench/lib.sh's
 * fleet_otad registers them) and is copied to COPY for the second side.
 * Both sides record the same CHECKINS check-ins of devices picked at random,
 * all queued at once, so that otad's writer takes them as one batch, sorts
 * it by device and commits it CHUNK_MAX at a time; SQLite's side does the
 * same:
 *  - SQLite: the check-ins in device order, a transaction every CHUNK_MAX,
 *    every check-in the two statements otad's writer runs for a device
 *    polling again (the look for an attempt under way and the narrow
 *    update, registry_record_sql), bound as the writer binds them;
 *  - otad: one producer queues the check-ins to registry_submit and the
 *    writer thread records them (device rows in memory, the batch sorted,
 *    its chunks, the group commit).
 * Prints the CPU time a check-in of each (the writer thread's own, from
 * /proc; the process's for SQLite), in microseconds.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "registry.h"
#include "registry_impl.h"

#define VERSION "0.14.3"
#define ADDRESS "127.0.0.1"

static atomic_long recorded;

static void
die(const char *what)
{
	fprintf(stderr, "writer bench: %s\n", what);
	exit(1);
}

static long
number(const char *s)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || n <= 0)
		die("FLEET and CHECKINS are positive numbers");
	return n;
}

/* CPU seconds of this process (user and system) */
static double
process_cpu(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
	    (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

/* CPU seconds of the thread named otad-writer, or -1 */
static double
writer_cpu(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	double cpu = -1;
	char path[300], line[1024];

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		unsigned long user, sys;
		const char *p;
		FILE *f;
		int i;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat",
		    e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		p = fgets(line, sizeof(line), f);
		fclose(f);
		if (p == NULL || strstr(line, "(otad-writer)") == NULL ||
		    (p = strrchr(line, ')')) == NULL)
			continue;
		/* fields 14 and 15 (utime, stime); p is at field 2's end */
		for (i = 0; i < 12 && p != NULL; i++)
			p = strchr(p + 1, ' ');
		if (p != NULL && sscanf(p, " %lu %lu", &user, &sys) == 2)
			cpu = (double)(user + sys) /
			    (double)sysconf(_SC_CLK_TCK);
	}
	closedir(d);
	return cpu;
}

static int
by_id(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The check-ins' devices: n ids picked at random among fleet (seeded). */
static char **
pick(long fleet, long n)
{
	char **ids = calloc((size_t)n, sizeof(*ids));
	long i;

	if (ids == NULL)
		die("out of memory");
	srandom(7);
	for (i = 0; i < n; i++) {
		if ((ids[i] = malloc(32)) == NULL)
			die("out of memory");
		snprintf(ids[i], 32, "dev-%ld", random() % fleet);
	}
	return ids;
}

static void
unpick(char **ids, long n)
{
	long i;

	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

static void
step(sqlite3 *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		die(sqlite3_errmsg(db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* SQLite's side: CPU seconds to record the check-ins of ids. */
static double
sqlite_side(const char *path, char **ids, long n)
{
	sqlite3_stmt *look, *seen;
	sqlite3 *db;
	double t0;
	long i, j;

	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous ="
	    " NORMAL; PRAGMA cache_size = -" WRITER_CACHE_KIB, NULL, NULL,
	    NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, registry_record_sql[W_ANY_OPEN], -1, &look,
	    NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, registry_record_sql[W_CHECKIN_SEEN], -1,
	    &seen, NULL) != SQLITE_OK)
		die(sqlite3_errmsg(db));
	t0 = process_cpu();
	/* in device order, as otad's writer applies a batch */
	qsort(ids, (size_t)n, sizeof(*ids), by_id);
	for (i = 0; i < n; i += CHUNK_MAX) {
		long end = i + CHUNK_MAX < n ? i + CHUNK_MAX : n;

		if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
		    SQLITE_OK)
			die(sqlite3_errmsg(db));
		for (j = i; j < end; j++) {
			sqlite3_bind_text(look, 1, ids[j], -1, SQLITE_STATIC);
			step(db, look);
			sqlite3_bind_text(seen, 1, ids[j], -1, SQLITE_STATIC);
			sqlite3_bind_int64(seen, 2, (int64_t)time(NULL));
			sqlite3_bind_text(seen, 3, ADDRESS, -1, SQLITE_STATIC);
			/* the row as the device rows in memory have it */
			sqlite3_bind_text(seen, 9, VERSION, -1, SQLITE_STATIC);
			sqlite3_bind_text(seen, 10, "", -1, SQLITE_STATIC);
			sqlite3_bind_int64(seen, 11, 0);
			sqlite3_bind_text(seen, 12, "", -1, SQLITE_STATIC);
			sqlite3_bind_text(seen, 13, "", -1, SQLITE_STATIC);
			sqlite3_bind_int64(seen, 14, -1);
			sqlite3_bind_text(seen, 15, "", -1, SQLITE_STATIC);
			sqlite3_bind_text(seen, 16, "", -1, SQLITE_STATIC);
			sqlite3_bind_int64(seen, 17, -1);
			sqlite3_bind_text(seen, 18, "", -1, SQLITE_STATIC);
			sqlite3_bind_text(seen, 19, "", -1, SQLITE_STATIC);
			sqlite3_bind_int64(seen, 20, 0);
			step(db, seen);
			if (sqlite3_changes(db) != 1)
				die("a check-in changed no row");
		}
		if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			die(sqlite3_errmsg(db));
	}
	t0 = process_cpu() - t0;
	sqlite3_finalize(look);
	sqlite3_finalize(seen);
	sqlite3_close(db);
	return t0;
}

static void
on_recorded(void *arg, enum otad_err err)
{
	(void)arg;
	if (err != OTAD_OK)
		die("a check-in was not recorded");
	atomic_fetch_add(&recorded, 1);
}

/* otad's side: the writer thread's CPU seconds for the same check-ins. */
static double
otad_side(const char *path, char **ids, long n)
{
	struct registry *reg;
	double t0, t1;
	long i;

	if (registry_open(path, &reg) != OTAD_OK ||
	    registry_writer_start(reg, (unsigned)n, 2000000) != OTAD_OK)
		die("cannot open the registry");
	if ((t0 = writer_cpu()) < 0)
		die("no writer thread");
	for (i = 0; i < n; i++) {
		struct record *rec = registry_record_new(RECORD_CHECKIN);

		if (rec == NULL)
			die("out of memory");
		rec->at = (int64_t)time(NULL);
		snprintf(rec->device, sizeof(rec->device), "%s", ids[i]);
		snprintf(rec->version, sizeof(rec->version), VERSION);
		snprintf(rec->address, sizeof(rec->address), ADDRESS);
		rec->done = on_recorded;
		if (registry_submit(reg, rec) != OTAD_OK)
			die("the writer refused a check-in");
	}
	while (atomic_load(&recorded) < n)
		usleep(1000);
	t1 = writer_cpu();
	registry_close(reg);
	return t1 - t0;
}

int
main(int argc, char **argv)
{
	long fleet, n;
	double otad, bare;
	char **ids;

	if (argc != 5)
		die("usage: writer DB COPY FLEET CHECKINS");
	fleet = number(argv[3]);
	n = number(argv[4]);
	ids = pick(fleet, n);
	otad = otad_side(argv[1], ids, n);
	unpick(ids, n);
	ids = pick(fleet, n);
	bare = sqlite_side(argv[2], ids, n);
	unpick(ids, n);
	printf("otad %.2f sqlite %.2f\n", otad * 1e6 / (double)n,
	    bare * 1e6 / (double)n);
	return 0;
}
