/* proxy: which proxies are trusted, and the device address they forward */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy.h"

static struct proxies
trusted(const char *text)
{
	struct proxies p;
	char why[128];

	assert_int_equal(proxies_parse(text, &p, why, sizeof(why)), 0);
	return p;
}

/* The client address for a TCP peer and X-Forwarded-For headers. */
static const char *
client(const char *list, const char *peer, const char *const *values,
    size_t n)
{
	static char buf[PROXY_ADDR_MAX];
	struct proxies p = trusted(list);

	proxies_client(&p, peer, values, n, buf, sizeof(buf));
	return buf;
}

static void
test_parse_refuses_what_is_not_a_network(void **state)
{
	const char *bad[] = {"10.0.0.0/33", "10.0.0.1/", "proxy.local",
	    "::1/129", "10.0.0.0/8x", "1.2.3.4.5", "10.0.0.0/-1"};
	struct proxies p;
	char why[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		assert_int_equal(proxies_parse(bad[i], &p, why, sizeof(why)),
		    -1);
		assert_non_null(strstr(why, "'"));
	}
	assert_int_equal(proxies_parse("", &p, why, sizeof(why)), 0);
	assert_int_equal(p.n, 0);
	assert_int_equal(proxies_parse(" 10.0.0.0/8,127.0.0.1  fd00::/8 ", &p,
	    why, sizeof(why)), 0);
	assert_int_equal(p.n, 3);
}

static void
test_networks_match_by_prefix(void **state)
{
	struct proxies p = trusted("10.1.0.0/16, 192.168.7.9, fd00::/8, "
	    "172.16.0.0/12");
	struct sockaddr_in s4 = {.sin_family = AF_INET};
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
	const struct {
		const char *addr;
		int trusted;
	} cases[] = {
		{"10.1.200.3", 1}, {"10.2.0.1", 0}, {"192.168.7.9", 1},
		{"192.168.7.10", 0}, {"172.31.255.255", 1}, {"172.32.0.1", 0},
		{"fd12::1", 1}, {"fe80::1", 0},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strchr(cases[i].addr, ':') == NULL) {
			inet_pton(AF_INET, cases[i].addr, &s4.sin_addr);
			assert_int_equal(proxies_trust_sockaddr(&p,
			    (struct sockaddr *)&s4), cases[i].trusted);
		} else {
			inet_pton(AF_INET6, cases[i].addr, &s6.sin6_addr);
			assert_int_equal(proxies_trust_sockaddr(&p,
			    (struct sockaddr *)&s6), cases[i].trusted);
		}
	}
	/* a dual-stack socket shows an IPv4 proxy as ::ffff:a.b.c.d */
	inet_pton(AF_INET6, "::ffff:10.1.0.7", &s6.sin6_addr);
	assert_true(proxies_trust_sockaddr(&p, (struct sockaddr *)&s6));
	/* nothing is trusted by default */
	p = trusted("");
	inet_pton(AF_INET, "10.1.200.3", &s4.sin_addr);
	assert_false(proxies_trust_sockaddr(&p, (struct sockaddr *)&s4));
}

static void
test_the_device_is_the_rightmost_untrusted_hop(void **state)
{
	const char *nginx[] = {"203.0.113.7"};
	/* a device that sends its own header to pass for another */
	const char *forged[] = {"198.51.100.1, 203.0.113.7"};
	/* haproxy's option forwardfor adds a header after the device's */
	const char *two[] = {"198.51.100.1", "203.0.113.7"};
	/* two tiers of trusted proxies */
	const char *tiers[] = {"203.0.113.7, 10.1.0.5"};
	const char *ports[] = {"[2001:db8::5]:4711"};
	const char *port4[] = {"203.0.113.7:5000"};
	const char *all_trusted[] = {"10.1.0.9, 10.1.0.5"};
	const char *junk[] = {"203.0.113.7, unknown"};
	const char *empty[] = {"203.0.113.7, , "};

	const struct {
		const char *const *values;
		size_t n;
		const char *device;
	} cases[] = {
		{nginx, 1, "203.0.113.7"},
		{forged, 1, "203.0.113.7"},
		{two, 2, "203.0.113.7"},
		{tiers, 1, "203.0.113.7"},
		{ports, 1, "2001:db8::5"},
		{port4, 1, "203.0.113.7"},
		/* only trusted hops: the farthest of them */
		{all_trusted, 1, "10.1.0.9"},
		/* a malformed hop stops the walk at the last trusted one */
		{junk, 1, "10.1.0.2"},
		{empty, 1, "203.0.113.7"},
		/* no header: the proxy itself */
		{NULL, 0, "10.1.0.2"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(client("10.1.0.0/16", "10.1.0.2",
		    cases[i].values, cases[i].n), cases[i].device);
}

/* Whatever a header holds, the answer is an address (or the peer). */
static void
test_any_header_gives_an_address(void **state)
{
	static const char alphabet[] = "0123456789abcdef.:,[] \t/x";
	struct proxies p = trusted("0.0.0.0/0, ::/0");
	char header[300], buf[PROXY_ADDR_MAX];
	const char *values[1] = {header};
	unsigned seed = 7, i, k, n;
	unsigned char probe[16];

	(void)state;
	for (i = 0; i < 20000; i++) {
		n = (unsigned)rand_r(&seed) % (sizeof(header) - 1);
		for (k = 0; k < n; k++)
			header[k] = alphabet[(unsigned)rand_r(&seed) %
			    (sizeof(alphabet) - 1)];
		header[n] = '\0';
		proxies_client(&p, "10.1.0.2", values, 1, buf, sizeof(buf));
		assert_true(inet_pton(AF_INET, buf, probe) == 1 ||
		    inet_pton(AF_INET6, buf, probe) == 1);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_refuses_what_is_not_a_network),
		cmocka_unit_test(test_networks_match_by_prefix),
		cmocka_unit_test(test_the_device_is_the_rightmost_untrusted_hop),
		cmocka_unit_test(test_any_header_gives_an_address),
	};

	return cmocka_run_group_tests_name("proxy", tests, NULL, NULL);
}
