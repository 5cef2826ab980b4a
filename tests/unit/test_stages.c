/* stages: SPEC parsing, rings, update windows */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stages.h"

static void
test_the_design_example(void **state)
{
	struct stage st[STAGES_MAX];
	char why[256];
	size_t n;

	(void)state;
	assert_int_equal(stages_parse("group=canary,soak=24h,min=5; 10%,"
	    "soak=48h,min=50,success>=0.98,rollback<=0.02; 100%", st, &n, why,
	    sizeof(why)), 0);
	assert_int_equal(n, 3);
	assert_string_equal(st[0].group, "canary");
	assert_int_equal(st[0].percent_x100, 0);
	assert_int_equal(st[0].soak_s, 86400);
	assert_int_equal(st[0].min_devices, 5);
	assert_true(st[0].min_success == STAGE_SUCCESS);
	assert_string_equal(st[1].group, "");
	assert_int_equal(st[1].percent_x100, 1000);
	assert_int_equal(st[1].soak_s, 172800);
	assert_int_equal(st[1].min_devices, 50);
	assert_true(st[1].min_success == 0.98);
	assert_true(st[1].max_rollback == 0.02);
	assert_true(st[1].max_failure == STAGE_FAILURE);
	assert_int_equal(st[2].percent_x100, 10000);
	assert_int_equal(st[2].soak_s, STAGE_SOAK_S);
	assert_int_equal(st[2].min_devices, STAGE_MIN);
	/* rates as percentages, 2.5% rings, spaces */
	assert_int_equal(stages_parse(" 2.5% , crash<=1% , failure <= 0 ;100%",
	    st, &n, why, sizeof(why)), 0);
	assert_int_equal(st[0].percent_x100, 250);
	assert_true(st[0].max_crash == 0.01);
	assert_true(st[0].max_failure == 0);

	/* stages sized in devices, mixed with percentages */
	assert_int_equal(stages_parse("50; 5%; 500,min=20; 100%", st, &n, why,
	    sizeof(why)), 0);
	assert_int_equal(n, 4);
	assert_int_equal(st[0].devices, 50);
	assert_int_equal(st[0].percent_x100, 0);
	assert_int_equal(st[0].min_devices, STAGE_MIN);
	assert_int_equal(st[1].devices, 0);
	assert_int_equal(st[1].percent_x100, 500);
	assert_int_equal(st[2].devices, 500);
	assert_int_equal(st[2].percent_x100, 500);
	assert_int_equal(st[2].min_devices, 20);
	assert_int_equal(st[3].devices, 0);
	/* min=0 said is kept */
	assert_int_equal(stages_parse("50,min=0; 100%", st, &n, why,
	    sizeof(why)), 0);
	assert_int_equal(st[0].min_devices, 0);
}

static void
expect(const char *spec, const char *want)
{
	struct stage st[STAGES_MAX];
	char why[256] = "";
	size_t n;

	assert_int_equal(stages_parse(spec, st, &n, why, sizeof(why)), -1);
	if (strstr(why, want) == NULL)
		fail_msg("'%s': '%s' lacks '%s'", spec, why, want);
}

static void
test_refusals(void **state)
{
	(void)state;
	expect("", "stage 1 is empty");
	expect("10%", "last stage must be 100%");
	expect("50%; 10%; 100%", "stage 2: 10% is less");
	expect("10%; group=canary", "last stage must be 100%");
	expect("110%; 100%", "neither group=NAME, a percentage");
	expect("ten percent; 100%", "neither");
	expect("500; 50; 100%", "stage 2: 50 devices are fewer");
	expect("0; 100%", "nor a count of devices");
	expect("10000001; 100%", "nor a count of devices");
	expect("50", "last stage must be 100%");
	expect("10%,soak=forever; 100%", "stage 1: bad value 'forever'");
	expect("10%,min=-3; 100%", "bad value");
	expect("10%,success>=1.5; 100%", "bad value");
	expect("10%,success<=0.5; 100%", "unknown option");
	expect("10%,colour=red; 100%", "unknown option 'colour'");
	expect("group=; 100%", "bad group");
	expect("10%;;100%", "stage 2 is empty");
	expect("1%;2%;3%;4%;5%;6%;7%;8%;9%;10%;11%;12%;13%;14%;15%;16%;100%",
	    "at most 16");
}

static void
test_durations(void **state)
{
	(void)state;
	assert_int_equal(stages_duration("90"), 90);
	assert_int_equal(stages_duration("5s"), 5);
	assert_int_equal(stages_duration("10m"), 600);
	assert_int_equal(stages_duration("2d"), 172800);
	assert_int_equal(stages_duration("1w"), -1);
	assert_int_equal(stages_duration(""), -1);
	assert_int_equal(stages_duration("-5"), -1);
	assert_int_equal(stages_duration("99999999999999999999"), -1);
}

static void
test_rings(void **state)
{
	unsigned buckets[10] = {0}, i, in10 = 0, in20 = 0;
	char id[32];

	(void)state;
	/* stable */
	assert_int_equal(stages_ring(7, "aa:bb"), stages_ring(7, "aa:bb"));
	/* another rollout shuffles the fleet: the same devices are not
	 * always the first ones reached */
	for (i = 0, in10 = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "dev-%u", i);
		in10 += (stages_ring(7, id) < 1000) == (stages_ring(8, id) <
		    1000);
	}
	assert_true(in10 < 950);
	in10 = 0;
	/* uniform: 20,000 devices in 10 buckets, each within 10% */
	for (i = 0; i < 20000; i++) {
		unsigned r;

		snprintf(id, sizeof(id), "24:0A:C4:%02X:%02X:%02X", i >> 16,
		    (i >> 8) & 255, i & 255);
		r = stages_ring(42, id);
		assert_true(r < 10000);
		buckets[r / 1000]++;
		in10 += r < 1000;
		/* widening only adds: everyone in 10% is in 20% */
		in20 += r < 2000;
		if (r < 1000)
			assert_true(r < 2000);
	}
	for (i = 0; i < 10; i++)
		if (buckets[i] < 1800 || buckets[i] > 2200)
			fail_msg("bucket %u has %u of 20000", i, buckets[i]);
	assert_true(in10 < in20);
}

/* Staffed hours: where a promote window opens next, in its offset. */
static void
test_promote_windows(void **state)
{
	/* 2026-11-20 was a Friday; 02:30 UTC */
	const int64_t fri_0230 = 1795141800;
	struct window w;
	int said;

	(void)state;
	assert_int_equal(stages_parse_promote("tue-thu 09:00-16:00 +01:00",
	    &w, &said), 0);
	assert_true(said);
	assert_int_equal(w.offset_min, 60);
	assert_int_equal(w.days, (1u << 2) | (1u << 3) | (1u << 4));
	/* Friday night: closed until Tuesday 09:00 local, 08:00 UTC */
	assert_false(stages_window_open(&w, fri_0230));
	assert_int_equal(stages_window_next(&w, fri_0230), fri_0230 +
	    4 * 86400 - 2 * 3600 - 1800 + 8 * 3600);
	/* inside: now */
	assert_int_equal(stages_window_next(&w, fri_0230 + 4 * 86400 +
	    9 * 3600), fri_0230 + 4 * 86400 + 9 * 3600);
	/* every day, the rollout's own offset */
	assert_int_equal(stages_parse_promote("09:00-16:00", &w, &said), 0);
	assert_false(said);
	assert_int_equal(w.days, 0);
	assert_int_equal(stages_window_next(&w, fri_0230), fri_0230 +
	    6 * 3600 + 1800);
	assert_int_equal(stages_parse_promote("  sat,sun   10:00-12:00 ", &w,
	    &said), 0);
	/* refusals */
	assert_int_equal(stages_parse_promote("", &w, &said), -1);
	assert_int_equal(stages_parse_promote("tue-thu", &w, &said), -1);
	assert_int_equal(stages_parse_promote("09:00-16:00 tue", &w, &said),
	    -1);
	assert_int_equal(stages_parse_promote("tue 09:00-16:00 +01:00 x", &w,
	    &said), -1);
	assert_int_equal(stages_parse_promote("tue 9-16", &w, &said), -1);
}

static void
test_windows(void **state)
{
	struct window w = {-1, -1, 0, 0};
	unsigned days;
	int off;
	/* 2026-11-20 was a Friday; 02:30 UTC */
	int64_t fri_0230 = 1795141800;

	(void)state;
	assert_true(stages_window_open(&w, fri_0230));
	assert_int_equal(stages_parse_window("01:00-05:00", &w), 0);
	assert_int_equal(w.start, 60);
	assert_int_equal(w.end, 300);
	assert_true(stages_window_open(&w, fri_0230));
	assert_false(stages_window_open(&w, fri_0230 + 3 * 3600));
	/* wrapping past midnight */
	assert_int_equal(stages_parse_window("22:00-02:00", &w), 0);
	assert_false(stages_window_open(&w, fri_0230));
	assert_true(stages_window_open(&w, fri_0230 - 3600));
	assert_true(stages_window_open(&w, fri_0230 - 4 * 3600 - 1800));
	/* a local offset moves the window */
	assert_int_equal(stages_parse_window("01:00-05:00", &w), 0);
	assert_int_equal(stages_parse_offset("+02:00", &off), 0);
	w.offset_min = off;
	assert_true(stages_window_open(&w, fri_0230)); /* 04:30 local */
	assert_false(stages_window_open(&w, fri_0230 + 3600)); /* 05:30 */
	assert_int_equal(stages_parse_offset("-02:00", &off), 0);
	w.offset_min = off;
	assert_false(stages_window_open(&w, fri_0230)); /* 00:30 local */
	w.offset_min = 0;
	assert_int_equal(stages_parse_offset("-05:30", &off), 0);
	assert_int_equal(off, -330);
	/* days */
	assert_int_equal(stages_parse_days("mon-thu", &days), 0);
	assert_int_equal(days, 0x1e);
	w.days = days;
	assert_false(stages_window_open(&w, fri_0230));
	assert_true(stages_window_open(&w, fri_0230 - 86400));
	assert_int_equal(stages_parse_days("fri-mon", &days), 0);
	assert_int_equal(days, (1u << 5) | (1u << 6) | 1u | (1u << 1));
	assert_int_equal(stages_parse_days("sat,sun", &days), 0);
	assert_int_equal(days, (1u << 6) | 1u);
	/* refusals */
	assert_int_equal(stages_parse_window("1:00-5:00", &w), -1);
	assert_int_equal(stages_parse_window("25:00-05:00", &w), -1);
	assert_int_equal(stages_parse_window("05:00-05:00", &w), -1);
	assert_int_equal(stages_parse_days("funday", &days), -1);
	assert_int_equal(stages_parse_days("mon,", &days), -1);
	assert_int_equal(stages_parse_offset("+15:00", &off), -1);
	assert_int_equal(stages_parse_offset("2", &off), -1);
}

/* telemetry comparisons: parsed, refused, and written back as said */
static void
test_comparisons(void **state)
{
	struct stage st[STAGES_MAX];
	char why[256], text[256];
	size_t n;

	(void)state;
	assert_int_equal(stages_parse("group=canary,soak=1h,heap_drop<=20%,"
	    " rssi_drop <= 6, resets<=2x,metrics.mqtt_reconnects<=1.5x,"
	    "metrics.readings>=0.9x; 100%", st, &n, why, sizeof(why)), 0);
	assert_int_equal(st[0].ncompare, 5);
	assert_int_equal(st[0].compare[0].kind, COMPARE_HEAP_DROP);
	assert_true(st[0].compare[0].bound == 0.2);
	assert_int_equal(st[0].compare[1].kind, COMPARE_RSSI_DROP);
	assert_true(st[0].compare[1].bound == 6);
	assert_int_equal(st[0].compare[2].kind, COMPARE_RESETS);
	assert_true(st[0].compare[2].bound == 2);
	assert_int_equal(st[0].compare[3].kind, COMPARE_METRIC_LE);
	assert_string_equal(st[0].compare[3].metric, "mqtt_reconnects");
	assert_true(st[0].compare[3].bound == 1.5);
	assert_int_equal(st[0].compare[4].kind, COMPARE_METRIC_GE);
	assert_int_equal(st[1].ncompare, 0);
	stages_compare_text(st[0].compare, st[0].ncompare, text, sizeof(text));
	assert_string_equal(text, "heap_drop<=20%,rssi_drop<=6,resets<=2x,"
	    "metrics.mqtt_reconnects<=1.5x,metrics.readings>=0.9x");
	/* what is written back parses to the same */
	{
		struct comparison c;

		assert_int_equal(stages_parse_compare("heap_drop<=0.25", &c),
		    0);
		assert_true(c.bound == 0.25);
		stages_compare_text(&c, 1, text, sizeof(text));
		assert_string_equal(text, "heap_drop<=25%");
		assert_int_equal(stages_parse_compare("heap_drop>=20%", &c),
		    -1);
		assert_int_equal(stages_parse_compare("resets<=2", &c), -1);
		assert_int_equal(stages_parse_compare("resets<=0x", &c), -1);
		assert_int_equal(stages_parse_compare("rssi_drop<=-3", &c),
		    -1);
		assert_int_equal(stages_parse_compare("rssi_drop<=1e400",
		    &c), -1);
		assert_int_equal(stages_parse_compare("metrics.<=2x", &c),
		    -1);
		assert_int_equal(stages_parse_compare("metrics.a-b<=2x", &c),
		    -1);
		assert_int_equal(stages_parse_compare("metrics.x<=nanx", &c),
		    -1);
		assert_int_equal(stages_parse_compare("metrics.abcdefghijklmn"
		    "opqrstuvwxyz0123456<=2x", &c), -1);
		assert_int_equal(stages_parse_compare("metrics.abcdefghijklmn"
		    "opqrstuvwxyz012345<=2x", &c), 0);
	}
	expect("10%,heap_drop<=120%;100%", "bad comparison 'heap_drop<=120%'");
	expect("10%,resets<=2;100%", "bad comparison");
	expect("10%,metrics.x=2x;100%", "bad comparison");
	expect("10%,heap_drop<=1%,heap_drop<=2%,heap_drop<=3%,heap_drop<=4%,"
	    "heap_drop<=5%,heap_drop<=6%,heap_drop<=7%,heap_drop<=8%,"
	    "heap_drop<=9%;100%", "at most 8 comparisons");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_the_design_example),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_rings),
		cmocka_unit_test(test_windows),
		cmocka_unit_test(test_promote_windows),
		cmocka_unit_test(test_comparisons),
	};

	return cmocka_run_group_tests_name("stages", tests, NULL, NULL);
}
