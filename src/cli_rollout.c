/* cli_rollout.c: otactl rollout create | simulate | start | pause | resume |
 * abort | approve | status */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void
check_rollout_id(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v <= 0)
		die("'%s' is not a rollout id", s);
}

/* A rollout's plan from VERSION and create's options, checked. */
static json_t *
plan_args(struct opts *o, const char *verb)
{
	if (o->argc != 1)
		usage();
	if (o->stages == NULL)
		die("rollout %s needs --stages SPEC, e.g. \"group=canary,"
		    "soak=24h,min=5; 10%%,soak=48h; 100%%\"", verb);
	check_version(o->argv[0]);
	check_token("--product", o->product);
	return cli_args("version", o->argv[0],
	    "stages", o->stages, "window", o->window, "days", o->days,
	    "utc_offset", o->utc_offset, "min_battery", o->min_battery,
	    "timeout", o->timeout, "product", o->product, "chip", o->chip,
	    "promote_window", o->promote_window, "on_halt", o->on_halt,
	    "downgrade", o->downgrade ? "true" : NULL, CLI_END);
}

static int
rollout_create(struct opts *o)
{
	json_t *r;

	r = cli_run("rollout.create", plan_args(o, "create"), NULL);
	say(r, "rollout %lld of %s created (draft, %lld stages); start it "
	    "with: otactl rollout start %lld", jint(r, "id"), o->argv[0],
	    jint(r, "stages"), jint(r, "id"));
	return 0;
}

/* "2d 3h", "3h 5m", "12m", "40s": a simulated time, read at a glance */
static void
span(int64_t s, char *buf, size_t len)
{
	if (s >= 86400)
		snprintf(buf, len, "%lldd %lldh", (long long)(s / 86400),
		    (long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(buf, len, "%lldh %lldm", (long long)(s / 3600),
		    (long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(buf, len, "%lldm", (long long)(s / 60));
	else
		snprintf(buf, len, "%llds", (long long)s);
}

static int
rollout_simulate(struct opts *o)
{
	json_t *r, *st;
	const char *state;
	char when[32], interval[32];
	size_t i;

	json_t *args = plan_args(o, "simulate");
	const char *const extra[][2] = {{"failure_rate", o->failure_rate},
	    {"crash_rate", o->crash_rate}, {"poll_interval", o->poll_interval},
	    {"seed", o->seed}, {"horizon", o->horizon}};

	for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
		if (extra[i][1] != NULL)
			json_object_set_new(args, extra[i][0],
			    json_string(extra[i][1]));
	r = cli_run("rollout.simulate", args, NULL);
	if (print_if_json(r)) {
		json_decref(r);
		return 0;
	}
	span(jint(r, "poll_interval"), interval, sizeof(interval));
	printf("rehearsal of %s on a copy of the fleet: %lld devices, each "
	    "polling every %s; failure rate %g, crash rate %g (seed %lld)\n",
	    o->argv[0], jint(r, "devices"), interval, json_number_value(
	    json_object_get(r, "failure_rate")), json_number_value(
	    json_object_get(r, "crash_rate")), jint(r, "seed"));
	json_array_foreach(json_object_get(r, "stages"), i, st) {
		json_t *at = json_object_get(st, "opened_after");

		if (!json_is_integer(at)) {
			printf("stage %zu: never opens\n", i);
			continue;
		}
		span(json_integer_value(at), when, sizeof(when));
		printf("stage %zu: opens after %s, reaching %lld devices: "
		    "offered %lld, succeeded %lld, rolled back %lld, crashed "
		    "%lld\n", i, when, jint(st, "targeted"), jint(st,
		    "offered"), jint(st, "succeeded"), jint(st, "rolled_back"),
		    jint(st, "crashed"));
	}
	state = jstr(r, "state");
	span(jint(r, "ended_after"), when, sizeof(when));
	if (strcmp(state, "halted") == 0)
		printf("halts after %s: %s\n%lld devices offered %s before the "
		    "halt\n", when, jstr(r, "reason"), jint(r, "offered"),
		    o->argv[0]);
	else if (strcmp(state, "completed") == 0)
		printf("completes after %s: %lld devices offered %s\n", when,
		    jint(r, "offered"), o->argv[0]);
	else
		printf("still %s after %s (the horizon): %lld devices offered "
		    "%s so far\n", state, when, jint(r, "offered"), o->argv[0]);
	printf("nothing was written to the registry\n");
	json_decref(r);
	return 0;
}

static int
rollout_action(struct opts *o)
{
	char name[32];
	json_t *r;

	if (o->argc != 1)
		usage();
	check_rollout_id(o->argv[0]);
	snprintf(name, sizeof(name), "rollout.%s", o->verb);
	r = cli_run(name, cli_args("id", o->argv[0], "force", o->force ?
	    "true" : NULL, "break_glass", o->break_glass, "reverted",
	    o->reverted, CLI_END), NULL);
	say(r, "rollout %s %s", o->argv[0], jstr(r, "done"));
	return 0;
}

/*
 * A stage as the operator wrote it ("group=canary", "10%" or "50
 * devices"), and its
 * inferred outcomes as "succeeded/rolled back"
 */
static void
stage_names(json_t *stages)
{
	size_t i;
	char buf[80];

	for (i = 0; i < json_array_size(stages); i++) {
		json_t *st = json_array_get(stages, i);
		json_t *g = json_object_get(st, "group");

		if (json_is_string(g))
			snprintf(buf, sizeof(buf), "group=%s",
			    json_string_value(g));
		else if (json_is_integer(json_object_get(st, "devices")))
			snprintf(buf, sizeof(buf), "%lld devices",
			    jint(st, "devices"));
		else
			snprintf(buf, sizeof(buf), "%g%%", json_number_value(
			    json_object_get(st, "percent")));
		json_object_set_new(st, "ring", json_string(buf));
		/* of SUCCEEDED and ROLLED BACK, what otad inferred */
		snprintf(buf, sizeof(buf), "%lld/%lld", jint(st,
		    "inferred_succeeded"), jint(st, "inferred_rolled_back"));
		json_object_set_new(st, "inferred", json_string(buf));
	}
}

/* A halted rollout's revert: how its devices went back, who could not. */
static void
print_revert(json_t *ro)
{
	json_t *rev = json_object_get(ro, "revert");
	json_t *stranded = json_object_get(ro, "stranded");
	size_t i;

	printf("reverted to %s (rollout %lld, %s): offered %lld, back %lld, "
	    "failed %lld, in progress %lld; stranded %zu%s",
	    json_string_value(json_object_get(rev, "version")),
	    jint(rev, "rollout"), json_string_value(json_object_get(rev,
	    "state")), jint(rev, "offered"), jint(rev, "succeeded"),
	    jint(rev, "failed") + jint(rev, "rolled_back") +
	    jint(rev, "timed_out"), jint(rev, "in_progress"),
	    json_array_size(stranded), json_array_size(stranded) ?
	    " (their eFuse refuses it):" : "");
	for (i = 0; i < json_array_size(stranded) && i < 20; i++)
		printf(" %s", json_string_value(json_object_get(
		    json_array_get(stranded, i), "id")));
	printf("%s\n", i < json_array_size(stranded) ? " ..." : "");
}

/* A stage's telemetry comparisons, one line each. */
static void
print_compared(json_t *stages)
{
	static const char *const states[] = {"ok", "breach", "sample"};
	static const char *const said[] = {"within its bound",
	    "BOUND CROSSED", "too few devices to judge"};
	json_t *st, *c;
	size_t i, k, j;

	json_array_foreach(stages, i, st) {
		json_array_foreach(json_object_get(st, "compared"), k, c) {
			const char *state = json_string_value(json_object_get(c,
			    "state"));

			for (j = 0; j < 2 && strcmp(state, states[j]) != 0; j++)
				;
			printf("stage %lld %s: updated %g (%lld devices), not "
			    "updated %g (%lld devices): %s\n", jint(st, "no"),
			    json_string_value(json_object_get(c, "compare")),
			    json_number_value(json_object_get(c, "updated")),
			    jint(c, "updated_devices"), json_number_value(
			    json_object_get(c, "control")),
			    jint(c, "control_devices"), said[j]);
		}
	}
}

static int
rollout_status(struct opts *o)
{
	static const char *const cols[] = {"no", "ring", "targeted",
	    "offered", "in_progress", "succeeded", "rolled_back", "failed",
	    "timed_out", "deferred", "success_rate", "rollback_rate",
	    "failure_rate", "crash_rate", "brownouts", "inferred", "soak_left",
	    "breach", NULL};
	json_t *rows;
	size_t i;

	if (o->argc > 1)
		usage();
	if (o->argc == 1)
		check_rollout_id(o->argv[0]);
	rows = cli_run(o->argc ? "rollout.show" : "rollout.list",
	    cli_args("id", o->argc ? o->argv[0] : NULL, CLI_END), NULL);
	if (print_if_json(rows)) {
		json_decref(rows);
		return 0;
	}
	for (i = 0; i < json_array_size(rows); i++) {
		json_t *ro = json_array_get(rows, i);
		json_t *reason = json_object_get(ro, "reason");
		char started[64];

		cell(json_object_get(ro, "started"), "started", started,
		    sizeof(started));
		printf("%srollout %lld: %s%s%s, %s%s, stage %lld, started %s"
		    "%s%s\n", i ? "\n" : "",
		    (long long)json_integer_value(json_object_get(ro, "id")),
		    json_string_value(json_object_get(ro, "version")),
		    json_is_string(json_object_get(ro, "product")) ?
		    " for " : "", json_is_string(json_object_get(ro,
		    "product")) ? json_string_value(json_object_get(ro,
		    "product")) : "", json_string_value(json_object_get(ro,
		    "state")), json_integer_value(json_object_get(ro,
		    "staged")) ? "" : json_is_integer(json_object_get(ro,
		    "revert_of")) ? " (a revert)" : " (published to all)",
		    (long long)json_integer_value(json_object_get(ro, "stage")),
		    started, json_is_string(reason) ? ": " : "",
		    json_is_string(reason) ? json_string_value(reason) : "");
		if (json_object_get(ro, "revert") != NULL)
			print_revert(ro);
		if (json_is_string(json_object_get(ro, "promote")))
			printf("promote window: %s\n", json_string_value(
			    json_object_get(ro, "promote")));
		if (json_object_get(ro, "next_stage_at") != NULL) {
			json_t *at = json_object_get(ro, "next_stage_at");

			cell(at, "next_stage_at", started, sizeof(started));
			printf("next stage may open: %s\n", json_is_null(at) ?
			    "never (the promote window does not open; fix it)" :
			    started);
		}
		if (json_array_size(json_object_get(ro, "stages")) > 0) {
			stage_names(json_object_get(ro, "stages"));
			print_table(json_object_get(ro, "stages"), cols);
			print_compared(json_object_get(ro, "stages"));
		}
	}
	json_decref(rows);
	return 0;
}

const struct cli_group cli_rollout = {"rollout", "--stages --window --days "
    "--utc-offset --promote-window --on-halt --reverted --min-battery "
    "--timeout --downgrade --product --chip --force --break-glass "
    "--failure-rate --crash-rate --poll-interval --seed --horizon", {
	{"create", rollout_create},
	{"simulate", rollout_simulate},
	{"start", rollout_action},
	{"pause", rollout_action},
	{"resume", rollout_action},
	{"abort", rollout_action},
	{"approve", rollout_action},
	{"status", rollout_status},
}};
