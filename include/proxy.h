/*
 * proxy.h: the proxies trusted to say which address a request came from.
 *
 * Behind a TLS-terminating proxy every connection comes from the proxy;
 * the device's own address arrives in X-Forwarded-For. Only a proxy named
 * in trusted_proxies is believed, and only for the hops it appended: the
 * device's address is the rightmost one in the chain that is not itself a
 * trusted proxy, so a device cannot pass itself off as another by sending
 * the header.
 */
#ifndef PROXY_H
#define PROXY_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXIES_MAX 32
#define PROXY_ADDR_MAX 46 /* INET6_ADDRSTRLEN */

struct proxy_net {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned bits; /* prefix length */
};

struct proxies {
	size_t n; /* 0: no proxy is trusted */
	struct proxy_net v[PROXIES_MAX];
};

/*
 * "10.0.0.0/8, 127.0.0.1, fd00::/8": addresses and networks, separated by
 * commas or spaces; "" trusts none. -1 with why on a bad entry.
 */
int proxies_parse(const char *text, struct proxies *out, char *why,
    size_t whylen);

/* Whether the socket address (IPv4-mapped IPv6 as IPv4) is trusted. */
int proxies_trust_sockaddr(const struct proxies *p, const struct sockaddr *sa);

/*
 * The client's address: peer (the TCP peer, trusted) followed by the
 * X-Forwarded-For values in the order they came (several headers read as
 * one list). Walks the list from the right, past trusted proxies; stops at
 * the first address that is not one, or at a malformed entry (then the
 * last trusted hop is the answer). Writes into buf (numeric, as
 * inet_ntop gives it).
 */
void proxies_client(const struct proxies *p, const char *peer,
    const char *const *values, size_t nvalues, char *buf, size_t len);

#endif
