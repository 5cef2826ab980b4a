/*
 * connwatch.h: open connections, counted per address and watched.
 *
 * One address may hold only its share of the connections (a trusted proxy
 * and loopback speak for many devices and are not counted), and a request
 * that arrives too slowly, or a TLS handshake that never ends, is cut:
 * microhttpd's own timeout counts only idleness (a byte every few seconds
 * keeps it at bay) and times out nothing before a handshake is done.
 */
#ifndef CONNWATCH_H
#define CONNWATCH_H

#include "proxy.h"

struct MHD_Connection;

/* Where a connection is, as the HTTP layer tells it. */
enum watch_phase {
	/*
	 * TLS, connected, no request yet: a client that connects and says
	 * nothing would otherwise hold its place for ever
	 */
	WATCH_HANDSHAKE,
	WATCH_IDLE,   /* waiting for a request */
	WATCH_BODY,   /* headers in, the body still coming */
	WATCH_ANSWER, /* being answered (or suspended): not ours to cut */
};

struct connwatch_options {
	unsigned per_address;       /* connections an address holds; 0 = any */
	const struct proxies *proxies; /* not counted (copied) */
	unsigned request_timeout;   /* s from a request's first byte; 0 = no */
	unsigned handshake_timeout; /* s from connect to a request; 0 = no TLS */
};

struct connwatch;

struct connwatch *connwatch_new(const struct connwatch_options *opt);
/* Start cutting slow connections, if anything is to be watched. */
void connwatch_start(struct connwatch *cw);
/* Stop cutting (before the server stops); NULL-safe, idempotent. */
void connwatch_stop(struct connwatch *cw);
void connwatch_free(struct connwatch *cw);

/*
 * microhttpd's connection notifications: a connection opened (counted,
 * or refused when over its address's share) and closed. socket_context is
 * microhttpd's, which the watch occupies.
 */
void connwatch_opened(struct connwatch *cw, struct MHD_Connection *conn,
    void **socket_context);
void connwatch_closed(struct connwatch *cw, void **socket_context);

/* The connection moved on to phase. */
void connwatch_phase(struct MHD_Connection *conn, enum watch_phase phase);

#endif
