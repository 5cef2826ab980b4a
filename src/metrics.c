/* metrics.c: counters and the Prometheus text exposition */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "otad.h"

static atomic_uint_fast64_t counters[M_COUNT];
static atomic_uint_fast64_t statuses[600];
static size_t (*gauge_queue)(void *);
static void *gauge_queue_arg;
static long (*gauge_in_flight)(void);
static time_t started = 0;

static const struct {
	const char *name, *help;
} info[M_COUNT] = {
	[M_CHECKS] = {"otad_checks_total", "Update checks answered."},
	[M_OFFERS] = {"otad_offers_total", "Checks answered with an image."},
	[M_REPORTS] = {"otad_reports_total", "Outcome reports recorded."},
	[M_BYTES_SERVED] = {"otad_bytes_served_total",
	    "Bytes of images sent in full."},
	[M_RECORD_ERRORS] = {"otad_record_errors_total",
	    "Device records the registry could not store."},
};

void
metrics_add(enum metric m, uint64_t n)
{
	atomic_fetch_add_explicit(&counters[m], n, memory_order_relaxed);
}

uint64_t
metrics_get(enum metric m)
{
	return atomic_load_explicit(&counters[m], memory_order_relaxed);
}

void
metrics_status(unsigned status)
{
	if (status < 600)
		atomic_fetch_add_explicit(&statuses[status], 1,
		    memory_order_relaxed);
}

void
metrics_set_gauges(size_t (*queue_depth)(void *), void *arg,
    long (*in_flight)(void))
{
	gauge_queue = queue_depth;
	gauge_queue_arg = arg;
	gauge_in_flight = in_flight;
	started = time(NULL);
}

struct buf {
	char *p;
	size_t len, cap;
	int failed;
};

static void
put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = 1;
			return;
		}
		if ((size_t)n < b->cap - b->len)
			break;
		char *grown = realloc(b->p, b->cap * 2 + (size_t)n);

		if (grown == NULL) {
			b->failed = 1;
			return;
		}
		b->p = grown;
		b->cap = b->cap * 2 + (size_t)n;
	}
	b->len += (size_t)n;
}

char *
metrics_render(void)
{
	struct buf b = {.cap = 4096};
	unsigned s;
	int i;

	if ((b.p = malloc(b.cap)) == NULL)
		return NULL;
	b.p[0] = '\0';
	put(&b, "# HELP otad_info Build information.\n"
		"# TYPE otad_info gauge\notad_info{version=\"%s\"} 1\n",
	    OTAD_VERSION);
	put(&b, "# HELP otad_start_time_seconds Start time, Unix seconds.\n"
		"# TYPE otad_start_time_seconds gauge\n"
		"otad_start_time_seconds %lld\n", (long long)started);
	for (i = 0; i < M_COUNT; i++)
		put(&b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
		    info[i].name, info[i].help, info[i].name, info[i].name,
		    (unsigned long long)metrics_get((enum metric)i));
	put(&b, "# HELP otad_http_responses_total HTTP responses by status."
		"\n# TYPE otad_http_responses_total counter\n");
	for (s = 100; s < 600; s++) {
		uint64_t n = atomic_load_explicit(&statuses[s],
		    memory_order_relaxed);

		if (n > 0)
			put(&b, "otad_http_responses_total{code=\"%u\"} %llu\n",
			    s, (unsigned long long)n);
	}
	if (gauge_queue != NULL)
		put(&b, "# HELP otad_registry_queue Device records waiting for "
			"the writer.\n# TYPE otad_registry_queue gauge\n"
			"otad_registry_queue %zu\n",
		    gauge_queue(gauge_queue_arg));
	if (gauge_in_flight != NULL)
		put(&b, "# HELP otad_http_in_flight Requests being answered."
			"\n# TYPE otad_http_in_flight gauge\n"
			"otad_http_in_flight %ld\n", gauge_in_flight());
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	return b.p;
}
