/* connwatch.c: open connections, counted per address and watched */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "connwatch.h"
#include "log.h"
#include "metrics.h"
#include "monotonic.h"
#include "ratelimit.h"

/* One per open connection (microhttpd's socket context). */
struct conn_watch {
	struct conn_watch *prev, *next; /* cw->watches, under watch_mu */
	int fd;
	unsigned char addr[16]; /* counted in cw->conncap when addrlen > 0 */
	size_t addrlen;
	atomic_int phase;
	atomic_llong since; /* monotonic ms */
	atomic_uint gen;    /* moves at every answer completed */
	/* the reaper's own: a new request's first bytes seen at 'began' */
	unsigned seen_gen;
	long long began;
};

struct connwatch {
	struct conncap *conncap;
	unsigned per_address;
	struct proxies proxies;
	unsigned request_timeout;   /* seconds; 0 = not watched */
	unsigned handshake_timeout; /* seconds; 0 = plain HTTP */
	pthread_mutex_t watch_mu;
	struct conn_watch *watches;
	pthread_t reaper;
	int reaper_running;
	pthread_mutex_t reaper_mu;
	pthread_cond_t reaper_wake;
	int reaper_stop;
};

/* Data this close to an idle phase's start may belong before it. */
#define DATA_SLACK_MS 100

/* The connection's watch, or NULL. */
static struct conn_watch *
watch_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci != NULL ? ci->socket_context : NULL;
}

void
connwatch_phase(struct MHD_Connection *conn, enum watch_phase phase)
{
	struct conn_watch *w = watch_of(conn);

	if (w == NULL)
		return;
	if (phase != WATCH_ANSWER)
		atomic_store(&w->since, monotonic_ms());
	if (phase == WATCH_IDLE)
		atomic_fetch_add(&w->gen, 1);
	atomic_store(&w->phase, phase);
}

/*
 * The peer's address bytes (4 or 16) into out; 0 for loopback, a trusted
 * proxy or none: those are not capped.
 */
static size_t
peer_key(const struct connwatch *cw, struct MHD_Connection *conn,
    unsigned char out[16])
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	if (sa == NULL || proxies_trust_sockaddr(&cw->proxies, sa))
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		memcpy(out, &s4->sin_addr, 4);
		return out[0] == 127 ? 0 : 4;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		memcpy(out, &s6->sin6_addr, 16);
		if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && out[12] == 127))
			return 0;
		return 16;
	}
	return 0;
}

/*
 * Over its address's share: a plain-HTTP client is told why (it has sent
 * nothing microhttpd read yet, so ours is the only answer), then the
 * connection is shut and microhttpd closes it.
 */
static void
refuse_connection(const struct connwatch *cw, int fd)
{
	static const char answer[] = "HTTP/1.1 429 Too Many Requests\r\n"
	    "Content-Type: application/json\r\nRetry-After: 10\r\n"
	    "Connection: close\r\nContent-Length: 51\r\n\r\n"
	    "{\"error\":\"too many connections from this address\"}";

	metrics_add(M_CONNECTIONS_REFUSED, 1);
	if (fd < 0)
		return;
	if (cw->handshake_timeout == 0 && send(fd, answer, sizeof(answer) - 1, MSG_NOSIGNAL |
	    MSG_DONTWAIT) < 0)
		log_debug("cannot tell a refused connection why: %s",
		    strerror(errno));
	shutdown(fd, SHUT_RDWR);
}

void
connwatch_closed(struct connwatch *cw, void **socket_context)
{
	struct conn_watch *w = *socket_context;

	if (w == NULL)
		return;
	pthread_mutex_lock(&cw->watch_mu);
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		cw->watches = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	pthread_mutex_unlock(&cw->watch_mu);
	if (w->addrlen > 0)
		conncap_give(cw->conncap, w->addr, w->addrlen);
	free(w);
	*socket_context = NULL;
}

void
connwatch_opened(struct connwatch *cw, struct MHD_Connection *conn,
    void **socket_context)
{
	const union MHD_ConnectionInfo *ci;
	struct conn_watch *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return; /* unwatched and uncounted, but served */
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	w->fd = ci != NULL ? ci->connect_fd : -1;
	atomic_init(&w->phase, cw->handshake_timeout > 0 ? WATCH_HANDSHAKE :
	    WATCH_IDLE);
	atomic_init(&w->since, monotonic_ms());
	atomic_init(&w->gen, 0);
	w->addrlen = peer_key(cw, conn, w->addr);
	if (w->addrlen > 0 && !conncap_take(cw->conncap, w->addr, w->addrlen,
	    cw->per_address)) {
		w->addrlen = 0; /* not counted: nothing to give back */
		atomic_store(&w->phase, WATCH_ANSWER);
		refuse_connection(cw, w->fd);
	}
	pthread_mutex_lock(&cw->watch_mu);
	w->next = cw->watches;
	if (w->next != NULL)
		w->next->prev = w;
	cw->watches = w;
	pthread_mutex_unlock(&cw->watch_mu);
	*socket_context = w;
}

/*
 * Is a request arriving on this idle connection, and since when? The
 * kernel knows when data last came (TCP_INFO): data after the idle phase
 * began is a request on its way. Under watch_mu.
 */
static int
request_started(struct conn_watch *w, long long now, long long since)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	unsigned gen = atomic_load(&w->gen);

	if (gen != w->seen_gen) {
		w->seen_gen = gen;
		w->began = 0;
	}
	/*
	 * The kernel counts in jiffies: data that came a few ms before the
	 * idle phase began may look as if it came after. Only data well
	 * after it is a new request.
	 */
	if (w->began == 0 && w->fd >= 0 &&
	    getsockopt(w->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
	    (long long)ti.tcpi_last_data_recv + DATA_SLACK_MS < now - since)
		w->began = now - ti.tcpi_last_data_recv;
	return w->began != 0;
}

/* Once a second: shut every connection whose request takes too long. */
static void *
reaper_main(void *arg)
{
	struct connwatch *cw = arg;
	long long limit = (long long)cw->request_timeout * 1000;
	long long handshake = (long long)cw->handshake_timeout * 1000;
	struct timespec until;
	struct conn_watch *w;

	pthread_mutex_lock(&cw->reaper_mu);
	while (!cw->reaper_stop) {
		long long now;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&cw->reaper_wake, &cw->reaper_mu, &until);
		if (cw->reaper_stop)
			break;
		now = monotonic_ms();
		pthread_mutex_lock(&cw->watch_mu);
		for (w = cw->watches; w != NULL; w = w->next) {
			int phase = atomic_load(&w->phase);
			long long since = atomic_load(&w->since);

			if (phase == WATCH_ANSWER || w->fd < 0)
				continue;
			if (phase == WATCH_HANDSHAKE) {
				if (now - since <= handshake)
					continue;
			} else if (limit == 0 || (phase == WATCH_BODY ?
			    now - since <= limit :
			    !request_started(w, now, since) ||
			    now - w->began <= limit))
				continue;
			/* microhttpd sees the end, closes, and notifies */
			shutdown(w->fd, SHUT_RDWR);
			atomic_store(&w->phase, WATCH_ANSWER);
			metrics_add(M_CONNECTIONS_SLOW, 1);
		}
		pthread_mutex_unlock(&cw->watch_mu);
	}
	pthread_mutex_unlock(&cw->reaper_mu);
	return NULL;
}

struct connwatch *
connwatch_new(const struct connwatch_options *opt)
{
	struct connwatch *cw;

	if ((cw = calloc(1, sizeof(*cw))) == NULL)
		return NULL;
	if ((cw->conncap = conncap_new(1 << 14)) == NULL) {
		free(cw);
		return NULL;
	}
	cw->per_address = opt->per_address;
	if (opt->proxies != NULL)
		cw->proxies = *opt->proxies;
	cw->request_timeout = opt->request_timeout;
	cw->handshake_timeout = opt->handshake_timeout;
	pthread_mutex_init(&cw->watch_mu, NULL);
	pthread_mutex_init(&cw->reaper_mu, NULL);
	pthread_cond_init(&cw->reaper_wake, NULL);
	return cw;
}

void
connwatch_start(struct connwatch *cw)
{
	if (cw->reaper_running || (cw->request_timeout == 0 &&
	    cw->handshake_timeout == 0))
		return;
	if (pthread_create(&cw->reaper, NULL, reaper_main, cw) != 0) {
		log_warnx("cannot start the slow-request reaper");
		return;
	}
	cw->reaper_running = 1;
	pthread_setname_np(cw->reaper, "otad-reaper");
}

void
connwatch_stop(struct connwatch *cw)
{
	if (cw == NULL || !cw->reaper_running)
		return;
	pthread_mutex_lock(&cw->reaper_mu);
	cw->reaper_stop = 1;
	pthread_cond_signal(&cw->reaper_wake);
	pthread_mutex_unlock(&cw->reaper_mu);
	pthread_join(cw->reaper, NULL);
	cw->reaper_running = 0;
}

void
connwatch_free(struct connwatch *cw)
{
	if (cw == NULL)
		return;
	connwatch_stop(cw);
	pthread_mutex_destroy(&cw->watch_mu);
	pthread_mutex_destroy(&cw->reaper_mu);
	pthread_cond_destroy(&cw->reaper_wake);
	conncap_free(cw->conncap);
	free(cw);
}
