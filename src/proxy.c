/* proxy.c: trusted proxies, and the device address they forward */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

/* An address as family and bytes; IPv4-mapped IPv6 counts as IPv4. */
struct ip {
	int family;
	unsigned char b[16];
};

static int
ip_parse(const char *s, struct ip *ip)
{
	if (inet_pton(AF_INET, s, ip->b) == 1) {
		ip->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, ip->b) != 1)
		return -1;
	ip->family = AF_INET6;
	if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)ip->b)) {
		memmove(ip->b, ip->b + 12, 4);
		ip->family = AF_INET;
	}
	return 0;
}

static int
ip_trusted(const struct proxies *p, const struct ip *ip)
{
	size_t i;
	unsigned full, rest;

	for (i = 0; i < p->n; i++) {
		if (p->v[i].family != ip->family)
			continue;
		full = p->v[i].bits / 8;
		rest = p->v[i].bits % 8;
		if (memcmp(p->v[i].addr, ip->b, full) != 0)
			continue;
		if (rest == 0 || ((p->v[i].addr[full] ^ ip->b[full]) &
		    (0xff << (8 - rest))) == 0)
			return 1;
	}
	return 0;
}

int
proxies_parse(const char *text, struct proxies *out, char *why,
    size_t whylen)
{
	char tok[64], *slash, *end;
	const char *s = text;
	struct proxy_net *net;
	struct ip ip;
	unsigned long bits;
	size_t k;

	out->n = 0;
	for (;;) {
		while (*s == ',' || isspace((unsigned char)*s))
			s++;
		if (*s == '\0')
			return 0;
		k = strcspn(s, ", \t");
		if (k >= sizeof(tok)) {
			snprintf(why, whylen, "'%.40s...' is not an address",
			    s);
			return -1;
		}
		memcpy(tok, s, k);
		tok[k] = '\0';
		s += k;
		if ((slash = strchr(tok, '/')) != NULL)
			*slash++ = '\0';
		if (ip_parse(tok, &ip) < 0) {
			snprintf(why, whylen, "'%s' is not an IPv4 or IPv6 "
			    "address", tok);
			return -1;
		}
		bits = ip.family == AF_INET ? 32 : 128;
		if (slash != NULL) {
			bits = strtoul(slash, &end, 10);
			if (*slash == '\0' || *end != '\0' ||
			    bits > (ip.family == AF_INET ? 32u : 128u)) {
				snprintf(why, whylen, "'%s/%s': the prefix "
				    "length must be 0 to %d", tok, slash,
				    ip.family == AF_INET ? 32 : 128);
				return -1;
			}
		}
		if (out->n == PROXIES_MAX) {
			snprintf(why, whylen, "at most %d proxies or networks",
			    PROXIES_MAX);
			return -1;
		}
		net = &out->v[out->n++];
		net->family = ip.family;
		net->bits = (unsigned)bits;
		memcpy(net->addr, ip.b, sizeof(net->addr));
	}
}

int
proxies_trust_sockaddr(const struct proxies *p, const struct sockaddr *sa)
{
	struct ip ip;

	if (p->n == 0 || sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		ip.family = AF_INET;
		memcpy(ip.b, &((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		ip.family = AF_INET6;
		memcpy(ip.b, &((const struct sockaddr_in6 *)(const void *)sa)->
		    sin6_addr, 16);
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)
		    ip.b)) {
			memmove(ip.b, ip.b + 12, 4);
			ip.family = AF_INET;
		}
	} else
		return 0;
	return ip_trusted(p, &ip);
}

/*
 * One entry of the list, ending just before end: its address with any
 * brackets and port taken off ("[::1]:80", "10.0.0.1:5000"). -1 if it
 * is not an address.
 */
static int
entry(const char *start, const char *end, struct ip *ip, char *text,
    size_t len)
{
	char tok[PROXY_ADDR_MAX + 8], *close, *colon;
	size_t k;

	while (start < end && isspace((unsigned char)*start))
		start++;
	while (end > start && isspace((unsigned char)end[-1]))
		end--;
	if ((k = (size_t)(end - start)) == 0 || k >= sizeof(tok))
		return -1;
	memcpy(tok, start, k);
	tok[k] = '\0';
	if (tok[0] == '[') {
		if ((close = strchr(tok, ']')) == NULL)
			return -1;
		*close = '\0';
		memmove(tok, tok + 1, strlen(tok + 1) + 1);
	} else if ((colon = strchr(tok, ':')) != NULL &&
	    strchr(colon + 1, ':') == NULL)
		*colon = '\0'; /* IPv4 with a port */
	if (ip_parse(tok, ip) < 0)
		return -1;
	inet_ntop(ip->family, ip->b, text, (socklen_t)len);
	return 0;
}

static int
blank(const char *start, const char *end)
{
	while (start < end && isspace((unsigned char)*start))
		start++;
	return start == end;
}

void
proxies_client(const struct proxies *p, const char *peer,
    const char *const *values, size_t nvalues, char *buf, size_t len)
{
	const char *v, *end, *comma;
	struct ip ip;
	char text[PROXY_ADDR_MAX];
	size_t i;

	snprintf(buf, len, "%s", peer);
	for (i = nvalues; i-- > 0;) {
		v = values[i];
		end = v + strlen(v);
		for (;;) {
			for (comma = end; comma > v && comma[-1] != ',';
			    comma--)
				continue;
			/* an empty entry (", ,") is no hop; skip it */
			if (!blank(comma, end)) {
				if (entry(comma, end, &ip, text,
				    sizeof(text)) < 0)
					return; /* the last trusted hop */
				snprintf(buf, len, "%s", text);
				if (!ip_trusted(p, &ip))
					return;
			}
			if (comma == v)
				break;
			end = comma - 1;
		}
	}
}
