/*
 * stages.h: a rollout's plan, as an operator writes it down, and the pure
 * rules that follow from it: which devices a stage reaches, when the
 * update window is open.
 *
 * SPEC: stages separated by ';', each an explicit group (group=canary), a
 * cumulative percentage of the matching fleet (10%), or a cumulative count
 * of its devices (50: the first 50 in ring order), then options:
 * soak=DURATION (s, m, h, d), min=N (finished attempts before the next
 * stage may open), success>=R, rollback<=R, failure<=R, crash<=R (rates
 * as 0.98 or 98%), and telemetry comparisons of the devices the rollout
 * updated with those of the same product and chip it has not (the
 * control group): heap_drop<=P% (median free heap at most P% below the
 * control's), rssi_drop<=D (dB below), resets<=Rx (resets a device-hour
 * at most R times the control's), metrics.NAME<=Rx or >=Rx (the median
 * of a number devices send under "metrics", at most or at least R times
 * the control's). The last stage is 100%. Pure functions; thread-safe.
 */
#ifndef STAGES_H
#define STAGES_H

#include <stddef.h>
#include <stdint.h>

#include "otad.h"

#define STAGES_MAX 16

/* Defaults for what a stage leaves out (documented in README). */
#define STAGE_SOAK_S 3600
#define STAGE_MIN 1
#define STAGE_DEVICES_MAX 10000000
#define STAGE_SUCCESS 0.95
#define STAGE_ROLLBACK 0.05
#define STAGE_FAILURE 0.05
#define STAGE_CRASH 0.05

#define STAGE_COMPARE_MAX 8   /* comparisons a stage may make */
#define COMPARE_METRIC_MAX 32 /* a metrics field's name, bytes */

enum compare_kind {
	COMPARE_HEAP_DROP, /* bound: a share, 0..1 */
	COMPARE_RSSI_DROP, /* bound: dB */
	COMPARE_RESETS,    /* bound: a factor */
	COMPARE_METRIC_LE, /* bound: a factor */
	COMPARE_METRIC_GE, /* bound: a factor */
};

struct comparison {
	enum compare_kind kind;
	char metric[COMPARE_METRIC_MAX + 1]; /* COMPARE_METRIC_*: its name */
	double bound;
};

struct stage {
	char group[OTAD_PRODUCT_MAX + 1]; /* "" for a percentage stage */
	unsigned percent_x100;            /* cumulative share, 0..10000 */
	unsigned devices;                 /* a count stage's size; 0: none */
	int64_t soak_s;
	unsigned min_devices;
	double min_success, max_rollback, max_failure, max_crash;
	size_t ncompare;
	struct comparison compare[STAGE_COMPARE_MAX];
};

/*
 * Parse spec into out[0..*n). 0, or -1 with one line in why naming the
 * stage and the problem.
 */
int stages_parse(const char *spec, struct stage *out, size_t *n, char *why,
    size_t whylen);

/*
 * One comparison as a stage option writes it ("heap_drop<=20%"); 0, or -1
 * if it is not one. A metrics name is 1 to 32 of A-Z a-z 0-9 _.
 */
int stages_parse_compare(const char *s, struct comparison *out);
/*
 * A stage's comparisons as stored with it and shown: each as written
 * back ("heap_drop<=20%"), separated by ','; "" when none.
 */
void stages_compare_text(const struct comparison *c, size_t n, char *buf,
    size_t len);
/* The name of what a comparison compares: "heap_drop", "metrics.x" */
void stages_compare_name(const struct comparison *c, char *buf, size_t len);

/* "5s", "10m", "24h", "2d", or plain seconds; -1 if not one. */
int64_t stages_duration(const char *s);

/* A rate: "0.98", "98%", "0"; within 0..1, else -1. */
double stages_rate(const char *s);

/*
 * A device's place in a rollout's rings: a stable hash of (rollout,
 * device) in 0..9999. A device is in a percentage stage when its place is
 * below percent_x100, so widening only adds devices.
 */
unsigned stages_ring(int64_t rollout_id, const char *device_id);

/*
 * An update window: minutes of the day [start, end) (end < start wraps
 * past midnight; start < 0: always), days a bit mask (bit 0 Sunday .. 6
 * Saturday; 0: every day), both in the rollout's local time, which is UTC
 * plus offset_min.
 */
struct window {
	int start, end;
	unsigned days;
	int offset_min;
};

/* "01:00-05:00"; 0 or -1. */
int stages_parse_window(const char *s, struct window *w);
/* "mon-thu", "sat,sun", "mon"; 0 or -1. */
int stages_parse_days(const char *s, unsigned *days);
/* "+02:00", "-05:30", "0"; 0 or -1. */
int stages_parse_offset(const char *s, int *offset_min);
/* 1 when now (Unix seconds) falls inside w. */
int stages_window_open(const struct window *w, int64_t now);

/*
 * When stages may open (staffed hours): "[DAYS] HH:MM-HH:MM [OFFSET]",
 * e.g. "tue-thu 09:00-16:00 +01:00"; without DAYS every day, without
 * OFFSET *offset_said is 0 and w->offset_min 0 (the rollout's own
 * offset applies). 0 or -1.
 */
int stages_parse_promote(const char *s, struct window *w, int *offset_said);

/*
 * The first minute at or after from (Unix seconds) inside w: from itself
 * when it is open; -1 if w never opens.
 */
int64_t stages_window_next(const struct window *w, int64_t from);

#endif
