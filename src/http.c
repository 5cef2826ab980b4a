/*
 * http.c: libmicrohttpd set-up, routing, limits and JSON errors.
 *
 * A measured fact about libmicrohttpd 0.9.75 shapes this file: a response
 * queued in the first access-handler call of a request closes the
 * connection after it, while one queued on the next call keeps it alive.
 * So every request is answered on its second call (the first only routes
 * and checks limits), and GET requests carry a static marker instead of
 * an allocation between the two calls.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "connwatch.h"
#include "http.h"
#include "tls.h"
#include "log.h"
#include "metrics.h"
#include "monotonic.h"

/* What *con_cls holds between calls: a static marker or a heap body. */
enum pending_kind {
	PENDING_ROUTE, /* a bodyless request for route */
	PENDING_ERROR, /* answer status with msg */
	PENDING_BODY,  /* struct body_ctx on the heap */
	PENDING_COUNT, /* struct count_ctx on the heap: bytes to count */
};

struct pending {
	enum pending_kind kind;
	const struct http_route *route;
	unsigned status;
	const char *msg;
	int early; /* answered in the first call already */
};

struct http_request {
	struct http *h;
	struct MHD_Connection *conn;
	const char *url;
	const struct http_route *route;
	enum http_method method;
	void **con_cls;
	struct body_ctx *body; /* NULL for bodyless requests */
	int answered;
};

struct body_ctx {
	struct pending p; /* kind PENDING_BODY; first, for the cast */
	struct http *h;
	struct MHD_Connection *conn;
	char *buf;
	size_t len, cap;
	int too_large;
	size_t discarded; /* body bytes read and dropped after too_large */
	int refused;      /* a streamed body its route refused: dropped */
	int suspended;           /* in h->suspended, under h->susp_mu */
	uint64_t ticket;         /* its id there */
	long long suspended_at;  /* monotonic ms */
	struct body_ctx *susp_next;
	int resumed;
	uint64_t count_bytes;
	void *userdata;
	void (*userdata_release)(void *);
	/*
	 * The request its handler sees. It lives here, not on the stack,
	 * because a suspended handler hands it to another thread (which
	 * calls http_resume) and sees it again when resumed.
	 */
	struct http_request req;
};

struct count_ctx {
	struct pending p;
	uint64_t bytes;
	void (*done)(void *arg, int complete);
	void *arg;
};

struct http {
	struct MHD_Daemon *daemon;
	const struct http_route *routes;
	size_t nroutes;
	struct pending *route_pending; /* one static marker per route */
	void *arg;
	size_t max_header_bytes;
	atomic_size_t max_body_bytes;
	struct tls *tls; /* NULL: plain HTTP */
	pthread_mutex_t susp_mu; /* guards the list and every ctx->suspended */
	struct body_ctx *suspended;
	uint64_t next_ticket;
	atomic_int closing; /* stopping: new connections are turned away */
	struct proxies proxies; /* trusted to name the device's address */
	struct connwatch *watch; /* connections counted and watched */
};

static atomic_long in_flight;

/* Bodies over the limit but under this are read and dropped (see below). */
#define DISCARD_MAX (1024 * 1024)

static struct pending pending_404 = {PENDING_ERROR, NULL, 404,
    "no such path"};
static struct pending pending_405 = {PENDING_ERROR, NULL, 405,
    "method not allowed"};
static struct pending pending_413h = {PENDING_ERROR, NULL, 413,
    "request headers are too large"};
static struct pending pending_413b = {PENDING_ERROR, NULL, 413,
    "request body is too large", 1};
static struct pending pending_400 = {PENDING_ERROR, NULL, 400,
    "malformed request", 1};
/* answered in the first call, and the connection closed after */
static struct pending pending_smuggle = {PENDING_ERROR, NULL, 400,
    "Content-Length and Transfer-Encoding together", 1};
static struct pending pending_lengths = {PENDING_ERROR, NULL, 400,
    "conflicting Content-Length values", 1};
static struct pending pending_nul = {PENDING_ERROR, NULL, 400,
    "NUL in a header or query value", 1};
static struct pending pending_get_body = {PENDING_ERROR, NULL, 400,
    "a GET or HEAD request takes no body", 1};

long
http_in_flight(void)
{
	return atomic_load(&in_flight);
}

static enum http_method
parse_method(const char *m)
{
	if (strcmp(m, MHD_HTTP_METHOD_GET) == 0)
		return HTTP_GET;
	if (strcmp(m, MHD_HTTP_METHOD_HEAD) == 0)
		return HTTP_HEAD;
	if (strcmp(m, MHD_HTTP_METHOD_POST) == 0)
		return HTTP_POST;
	return 0;
}

/*
 * What the first call learns of a request's header and query values before
 * anything is routed: their size, and what makes its framing or its values
 * untrustworthy.
 */

static void
allow_header(struct MHD_Response *r, unsigned methods)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {{HTTP_GET, "GET"}, {HTTP_HEAD, "HEAD"}, {HTTP_POST, "POST"}};
	char allow[32];
	size_t i, len = 0;

	allow[0] = '\0';
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (methods & names[i].bit)
			len += (size_t)snprintf(allow + len, sizeof(allow) - len,
			    "%s%s", len ? ", " : "", names[i].name);
	if (len > 0)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
}

static int
queue_json(struct MHD_Connection *conn, unsigned status, const char *body,
    size_t len, unsigned allow, const char *name, const char *value)
{
	struct MHD_Response *r;
	int ok;

	r = MHD_create_response_from_buffer(len, (void *)body,
	    MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
	    "application/json");
	if (status == 405)
		allow_header(r, allow);
	if (name != NULL)
		MHD_add_response_header(r, name, value);
	ok = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	metrics_status(status);
	return ok;
}

static int
queue_error_header(struct MHD_Connection *conn, unsigned status,
    const char *msg, unsigned allow, const char *name, const char *value)
{
	json_t *o = json_pack("{s:s}", "error", msg);
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	int ok;

	json_decref(o);
	if (body == NULL)
		return MHD_NO;
	ok = queue_json(conn, status, body, strlen(body), allow, name, value);
	free(body);
	return ok;
}

static int
queue_error(struct MHD_Connection *conn, unsigned status, const char *msg,
    unsigned allow)
{
	return queue_error_header(conn, status, msg, allow, NULL, NULL);
}

static const struct http_route *
find_route(struct http *h, const char *url, size_t *idx)
{
	size_t i;

	for (i = 0; i < h->nroutes; i++) {
		const char *path = h->routes[i].path;
		size_t n = strlen(path);

		if (path[n - 1] == '/' ? strncmp(path, url, n) == 0
				       : strcmp(path, url) == 0) {
			*idx = i;
			return &h->routes[i];
		}
	}
	return NULL;
}

/*
 * What the first call learns of a request's header and query values, in
 * one pass, before anything is routed: their size, and what makes its
 * framing or its values untrustworthy.
 *
 * A raw NUL inside a header line: microhttpd 0.9.75 keeps the line up to
 * the NUL as the value and drops the rest unseen ("abc\0def" reads as
 * "abc"), so the value's size cannot tell. Its parser leaves the header
 * block in place, in order: the request line at method, each header's
 * name and value after it, the whole header_size bytes long. Between one
 * value's end and the next name (or the block's end) only line ends,
 * blanks and the terminators it wrote may stand; anything else was hidden
 * behind a NUL. When the layout is not what this expects, judge nothing.
 */
struct request_scan {
	size_t header_bytes;
	unsigned content_lengths; /* Content-Length fields seen */
	const char *content_length; /* the first one's value */
	int lengths_differ;
	int chunked;              /* any Transfer-Encoding */
	int nul;                  /* a NUL inside a name or a value */
	/* the walk over the header block */
	const char *start, *end; /* the block; NULL: no verdict */
	const char *gap;         /* end of the last value seen */
	int hidden;              /* bytes behind a NUL between two lines */
};

static int
gap_is_blank(const char *from, const char *to)
{
	for (; from < to; from++)
		if (*from != '\0' && *from != '\r' && *from != '\n' &&
		    *from != ' ' && *from != '\t')
			return 0;
	return 1;
}

/* One header line of the block: in its place, and nothing hidden before. */
static void
walk_header(struct request_scan *scan, const char *key, size_t key_size,
    const char *value, size_t value_size)
{
	if (scan->start == NULL)
		return;
	if (key < scan->start || key + key_size > scan->end || value == NULL ||
	    value < key + key_size || value + value_size > scan->end ||
	    (scan->gap != NULL && key < scan->gap)) {
		scan->start = NULL; /* not the layout expected: no verdict */
		return;
	}
	if (scan->gap != NULL && !gap_is_blank(scan->gap, key))
		scan->hidden = 1;
	scan->gap = value + value_size;
}

static enum MHD_Result
scan_value(void *cls, enum MHD_ValueKind kind, const char *key,
    size_t key_size, const char *value, size_t value_size)
{
	struct request_scan *scan = cls;

	/* a decoded %00 stays in the value: its size tells */
	if (strlen(key) != key_size ||
	    (value != NULL && strlen(value) != value_size))
		scan->nul = 1;
	if (kind != MHD_HEADER_KIND)
		return MHD_YES;
	walk_header(scan, key, key_size, value, value_size);
	/* "Name: value\r\n" */
	scan->header_bytes += key_size + value_size + 4;
	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		if (scan->content_lengths++ == 0)
			scan->content_length = value ? value : "";
		else if (value == NULL ||
		    strcmp(value, scan->content_length) != 0)
			scan->lengths_differ = 1;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		scan->chunked = 1;
	}
	return MHD_YES;
}

/* Scan every header and query value of the request at method. */
static void
scan_request(struct MHD_Connection *conn, const char *method,
    struct request_scan *scan)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);

	memset(scan, 0, sizeof(*scan));
	if (ci != NULL && ci->header_size > 0) {
		scan->start = method;
		scan->end = method + ci->header_size;
	}
	MHD_get_connection_values_n(conn, MHD_HEADER_KIND |
	    MHD_GET_ARGUMENT_KIND, scan_value, scan);
	if (scan->start != NULL && scan->gap != NULL &&
	    !gap_is_blank(scan->gap, scan->end))
		scan->hidden = 1; /* after the last line */
	if (scan->start == NULL)
		scan->hidden = 0;
}

/*
 * Refuse in the first call: microhttpd then closes the connection after
 * the answer, so nothing the client sent after these headers (a body, or
 * a request hidden in one) is read as a request of its own.
 */
static enum MHD_Result
refuse_early(struct MHD_Connection *conn, void **con_cls,
    struct pending *why)
{
	*con_cls = why;
	return queue_error_header(conn, why->status, why->msg, 0,
	    MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES ? MHD_YES : MHD_NO;
}

static void request_init(struct http_request *req, struct http *h,
    struct MHD_Connection *conn, const char *url,
    const struct http_route *route, const char *method, void **con_cls);

/* First call: route, check framing, method and limits, leave a marker. */
static enum MHD_Result
first_call(struct http *h, struct MHD_Connection *conn, const char *url,
    const char *method, void **con_cls)
{
	const struct http_route *route;
	enum http_method m = parse_method(method);
	struct request_scan scan;
	size_t idx;
	struct body_ctx *ctx;
	int too_large = 0;

	atomic_fetch_add(&in_flight, 1);
	connwatch_phase(conn, WATCH_ANSWER); /* its headers are in */
	scan_request(conn, method, &scan);
	/* RFC 9112 6.3: framing that two parsers may read two ways */
	if (scan.chunked && scan.content_lengths > 0)
		return refuse_early(conn, con_cls, &pending_smuggle);
	if (scan.lengths_differ)
		return refuse_early(conn, con_cls, &pending_lengths);
	if (scan.nul || scan.hidden)
		return refuse_early(conn, con_cls, &pending_nul);
	/*
	 * A GET or HEAD with a body: the client means something we do not
	 * serve, and a body left unread would be read as the next request.
	 */
	if ((m == HTTP_GET || m == HTTP_HEAD) && (scan.chunked ||
	    (scan.content_length != NULL &&
	    strcmp(scan.content_length, "0") != 0)))
		return refuse_early(conn, con_cls, &pending_get_body);
	if (scan.header_bytes > h->max_header_bytes) {
		*con_cls = (void *)&pending_413h;
		return MHD_YES;
	}
	if ((route = find_route(h, url, &idx)) == NULL) {
		*con_cls = (void *)&pending_404;
		return MHD_YES;
	}
	if ((m & route->methods) == 0) {
		*con_cls = (void *)&pending_405;
		return MHD_YES;
	}
	if (m != HTTP_POST) {
		*con_cls = &h->route_pending[idx];
		return MHD_YES;
	}
	if (scan.content_length != NULL && route->chunk == NULL) {
		const char *cl = scan.content_length;
		char *end;
		unsigned long long n;

		errno = 0;
		n = strtoull(cl, &end, 10);
		if (errno != 0 || *end != '\0' || cl[0] < '0' || cl[0] > '9')
			return refuse_early(conn, con_cls, &pending_400);
		if (n > DISCARD_MAX) {
			/* refuse before reading a byte of it */
			return refuse_early(conn, con_cls, &pending_413b);
		}
		too_large = n > atomic_load(&h->max_body_bytes);
	}
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL) {
		/* completed_cb will see no marker: undo the count here */
		atomic_fetch_sub(&in_flight, 1);
		return MHD_NO;
	}
	ctx->p.kind = PENDING_BODY;
	ctx->too_large = too_large;
	ctx->p.route = route;
	ctx->h = h;
	ctx->conn = conn;
	*con_cls = ctx;
	connwatch_phase(conn, WATCH_BODY); /* until the body is in */
	if (route->chunk != NULL) {
		/*
		 * A streamed body's route looks at the headers first (who,
		 * how large): a refusal now is sent before a byte of the
		 * body is read, and the connection closed after it.
		 */
		request_init(&ctx->req, h, conn, url, route, method, con_cls);
		ctx->req.body = ctx;
		route->chunk(&ctx->req, NULL, 0, h->arg);
	}
	return MHD_YES;
}

/*
 * 0 appended (or discarded), -1 out of memory, -2 past DISCARD_MAX: time to
 * answer 413 and close.
 */
static int
body_append(struct body_ctx *ctx, const char *data, size_t len)
{
	size_t max = atomic_load(&ctx->h->max_body_bytes);

	if (ctx->too_large || len > max - ctx->len) {
		/*
		 * Read and drop a modest excess so the client sees our 413
		 * rather than a reset; past DISCARD_MAX stop reading.
		 */
		ctx->too_large = 1;
		ctx->discarded += len;
		return ctx->discarded > DISCARD_MAX ? -2 : 0;
	}
	if (ctx->len + len + 1 > ctx->cap) {
		size_t cap = ctx->cap ? ctx->cap : 1024;
		char *grown;

		while (cap < ctx->len + len + 1)
			cap *= 2;
		if (cap > max + 1)
			cap = max + 1;
		if ((grown = realloc(ctx->buf, cap)) == NULL)
			return -1;
		ctx->buf = grown;
		ctx->cap = cap;
	}
	memcpy(ctx->buf + ctx->len, data, len);
	ctx->len += len;
	ctx->buf[ctx->len] = '\0';
	return 0;
}

static enum MHD_Result
run_handler(struct http_request *req)
{
	req->route->handler(req, req->h->arg);
	if (req->answered || (req->body && req->body->ticket != 0 &&
	    !req->body->resumed))
		return MHD_YES;
	log_warnx("handler for '%s' gave no answer", req->route->path);
	return queue_error(req->conn, 500, "internal error", 0);
}

static void
request_init(struct http_request *req, struct http *h,
    struct MHD_Connection *conn, const char *url,
    const struct http_route *route, const char *method, void **con_cls)
{
	memset(req, 0, sizeof(*req));
	req->h = h;
	req->conn = conn;
	req->url = url;
	req->route = route;
	req->method = parse_method(method);
	req->con_cls = con_cls;
}

/*
 * A streamed body (route->chunk): each piece to the route, then its
 * handler. Once the route answered (a refusal), the rest is not read:
 * microhttpd closes the connection after the answer.
 */
static enum MHD_Result
stream_body(struct http *h, struct body_ctx *ctx, struct MHD_Connection *conn,
    const char *url, const char *method, const char *data, size_t *len,
    void **con_cls)
{
	if (ctx->req.answered) {
		*len = 0;
		return MHD_YES;
	}
	if (ctx->refused && *len > 0) {
		/* the route said no: drop a modest rest, then hang up */
		ctx->discarded += *len;
		*len = 0;
		return ctx->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	if (ctx->ticket != 0)
		ctx->resumed = 1; /* called again after a resume */
	request_init(&ctx->req, h, conn, url, ctx->p.route, method, con_cls);
	ctx->req.body = ctx;
	if (*len > 0) {
		size_t n = *len;

		*len = 0;
		if (ctx->p.route->chunk(&ctx->req, data, n, h->arg) < 0)
			ctx->refused = 1;
		return MHD_YES;
	}
	connwatch_phase(conn, WATCH_ANSWER);
	return run_handler(&ctx->req);
}

static enum MHD_Result
access_cb(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct http *h = cls;
	struct pending *p = *con_cls;
	struct http_request req;

	(void)version;
	if (p == NULL)
		return first_call(h, conn, url, method, con_cls);
	if (p->kind == PENDING_ERROR) {
		const struct http_route *route = NULL;
		size_t idx;

		if (*upload_data_size > 0) {
			/* discard the body of a refused request, answer after */
			*upload_data_size = 0;
			return MHD_YES;
		}
		if (p->early)
			return MHD_YES; /* answered in the first call */
		if (p == &pending_405)
			route = find_route(h, url, &idx);
		return queue_error(conn, p->status, p->msg,
		    route ? route->methods : 0);
	}
	if (p->kind == PENDING_BODY) {
		struct body_ctx *ctx = (struct body_ctx *)p;

		if (p->route->chunk != NULL)
			return stream_body(h, ctx, conn, url, method,
			    upload_data, upload_data_size, con_cls);
		if (*upload_data_size > 0) {
			int rc = body_append(ctx, upload_data,
			    *upload_data_size);

			*upload_data_size = 0;
			if (rc == -2)
				return queue_error(conn, 413,
				    "request body is too large", 0);
			return rc < 0 ? MHD_NO : MHD_YES;
		}
		if (ctx->too_large)
			return queue_error(conn, 413,
			    "request body is too large", 0);
		if (ctx->ticket != 0)
			ctx->resumed = 1; /* called again after a resume */
		else
			connwatch_phase(conn, WATCH_ANSWER);
		request_init(&ctx->req, h, conn, url, p->route, method,
		    con_cls);
		ctx->req.body = ctx;
		return run_handler(&ctx->req);
	}
	if (p->kind != PENDING_ROUTE) {
		/*
		 * Answered already (PENDING_COUNT replaced the marker): a late
		 * call must not run a handler, which has no route here.
		 */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		/* first_call refuses bodies here; never hand one on */
		*upload_data_size = 0;
		return MHD_YES;
	}
	request_init(&req, h, conn, url, p->route, method, con_cls);
	return run_handler(&req);
}

/* Take ctx off the suspended list; 1 if it was on it. Under susp_mu. */
static int
unlist_suspended(struct http *h, struct body_ctx *ctx)
{
	struct body_ctx **pp;

	for (pp = &h->suspended; *pp != NULL; pp = &(*pp)->susp_next)
		if (*pp == ctx) {
			*pp = ctx->susp_next;
			ctx->suspended = 0;
			return 1;
		}
	return 0;
}

static void
completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct http *h = cls;
	struct pending *p = *con_cls;

	connwatch_phase(conn, WATCH_IDLE);
	if (p != NULL) {
		if (p->kind == PENDING_BODY) {
			struct body_ctx *ctx = (struct body_ctx *)p;

			/* from here on its ticket resumes nothing */
			pthread_mutex_lock(&h->susp_mu);
			unlist_suspended(h, ctx);
			pthread_mutex_unlock(&h->susp_mu);

			if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK &&
			    ctx->count_bytes > 0)
				metrics_add(M_BYTES_SERVED, ctx->count_bytes);
			if (ctx->userdata_release != NULL)
				ctx->userdata_release(ctx->userdata);
			free(ctx->buf);
			free(ctx);
		} else if (p->kind == PENDING_COUNT) {
			struct count_ctx *c = (struct count_ctx *)p;

			if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
				metrics_add(M_BYTES_SERVED, c->bytes);
			if (c->done != NULL)
				c->done(c->arg, toe ==
				    MHD_REQUEST_TERMINATED_COMPLETED_OK);
			free(c);
		}
		atomic_fetch_sub(&in_flight, 1);
	}
	*con_cls = NULL;
}

/* ---- request accessors ---- */

enum http_method
http_method(const struct http_request *req)
{
	return req->method;
}

const char *
http_header(const struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *
http_path(const struct http_request *req)
{
	return req->url;
}

const char *
http_arg(const struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND,
	    name);
}

const char *
http_body(const struct http_request *req, size_t *len)
{
	if (req->body == NULL) {
		*len = 0;
		return "";
	}
	*len = req->body->len;
	return req->body->buf ? req->body->buf : "";
}

int
http_basic_auth(const struct http_request *req, char **user, char **pass)
{
	*pass = NULL;
	*user = MHD_basic_auth_get_username_password(req->conn, pass);
	if (*user == NULL || *pass == NULL) {
		http_free_basic(*user, *pass);
		*user = *pass = NULL;
		return -1;
	}
	return 0;
}

void
http_free_basic(char *user, char *pass)
{
	if (pass != NULL)
		explicit_bzero(pass, strlen(pass)); /* a device's token */
	if (user != NULL)
		MHD_free(user);
	if (pass != NULL)
		MHD_free(pass);
}

/* The X-Forwarded-For values of a request, in order (the last few). */
struct forwarded {
	const char *v[8];
	size_t n;
};

static enum MHD_Result
forwarded_value(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct forwarded *f = cls;

	(void)kind;
	if (value == NULL || strcasecmp(key, "X-Forwarded-For") != 0)
		return MHD_YES;
	if (f->n == sizeof(f->v) / sizeof(f->v[0])) {
		/* the rightmost are the ones a trusted proxy added */
		memmove(f->v, f->v + 1, (f->n - 1) * sizeof(f->v[0]));
		f->n--;
	}
	f->v[f->n++] = value;
	return MHD_YES;
}

void
http_peer(const struct http_request *req, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;
	struct forwarded f = {.n = 0};
	char peer[PROXY_ADDR_MAX];

	buf[0] = '\0';
	ci = MHD_get_connection_info(req->conn,
	    MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || (sa = ci->client_addr) == NULL)
		return;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)
		    sa)->sin_addr, buf, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void
		    *)sa)->sin6_addr, buf, (socklen_t)len);
	/* behind a trusted proxy, the device is who the proxy says */
	if (!proxies_trust_sockaddr(&req->h->proxies, sa))
		return;
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, forwarded_value,
	    &f);
	snprintf(peer, sizeof(peer), "%s", buf);
	proxies_client(&req->h->proxies, peer, f.v, f.n, buf, len);
}

void *
http_userdata(const struct http_request *req)
{
	return req->body ? req->body->userdata : NULL;
}

int
http_set_userdata(struct http_request *req, void *data,
    void (*release)(void *))
{
	struct body_ctx *ctx;

	if (req->body == NULL) {
		/*
		 * A bodyless request that keeps something (it suspends, say):
		 * its marker becomes what a request with a body has, which
		 * the next call of the handler finds
		 */
		if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
			return -1;
		ctx->p.kind = PENDING_BODY;
		ctx->p.route = req->route;
		ctx->h = req->h;
		ctx->conn = req->conn;
		*req->con_cls = ctx;
		req->body = ctx;
	}
	req->body->userdata = data;
	req->body->userdata_release = release;
	return 0;
}

int
http_queue(struct http_request *req, unsigned status,
    struct http_response *resp, uint64_t count_bytes)
{
	return http_queue_notify(req, status, resp, count_bytes, NULL, NULL);
}

int
http_queue_notify(struct http_request *req, unsigned status,
    struct http_response *resp, uint64_t count_bytes,
    void (*done)(void *arg, int complete), void *arg)
{
	req->answered = 1;
	if ((count_bytes > 0 || done != NULL) && req->body == NULL) {
		struct count_ctx *c = calloc(1, sizeof(*c));

		/* replaces the static marker; freed when completed */
		if (c != NULL) {
			c->p.kind = PENDING_COUNT;
			c->bytes = req->method == HTTP_GET ? count_bytes : 0;
			c->done = done;
			c->arg = arg;
			*req->con_cls = c;
		} else if (done != NULL) {
			done(arg, 0);
		}
	} else if (count_bytes > 0 && req->method == HTTP_GET) {
		req->body->count_bytes = count_bytes;
	}
	metrics_status(status);
	if (MHD_queue_response(req->conn, status,
	    (struct MHD_Response *)resp) != MHD_YES)
		log_debug("cannot queue a %u response", status);
	return 0;
}

unsigned
http_status_of(enum otad_err err)
{
	switch (err) {
	case OTAD_ERR_INVALID:
	case OTAD_ERR_NOT_IMAGE:
		return 400;
	case OTAD_ERR_DENIED:
		return 403;
	case OTAD_ERR_NOT_FOUND:
		return 404;
	case OTAD_ERR_EXISTS:
		return 409;
	case OTAD_ERR_TOO_LARGE:
		return 413;
	default:
		return 503;
	}
}

int
http_error(struct http_request *req, unsigned status, const char *msg)
{
	req->answered = 1;
	queue_error(req->conn, status, msg, 0);
	return 0;
}

int
http_error_header(struct http_request *req, unsigned status, const char *msg,
    const char *name, const char *value)
{
	req->answered = 1;
	queue_error_header(req->conn, status, msg, 0, name, value);
	return 0;
}

int
http_send(struct http_request *req, unsigned status, const char *content_type,
    const char *body, size_t len)
{
	struct MHD_Response *r;

	req->answered = 1;
	r = MHD_create_response_from_buffer(len, (void *)body,
	    MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return 0;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	metrics_status(status);
	MHD_queue_response(req->conn, status, r);
	MHD_destroy_response(r);
	return 0;
}

struct http_ticket
http_suspend(struct http_request *req)
{
	struct http_ticket t = {req->h, 0};
	struct body_ctx *ctx = req->body;
	struct http *h = req->h;

	if (ctx == NULL)
		return t;
	pthread_mutex_lock(&h->susp_mu);
	ctx->ticket = ++h->next_ticket;
	ctx->suspended = 1;
	ctx->suspended_at = monotonic_ms();
	ctx->susp_next = h->suspended;
	h->suspended = ctx;
	t.id = ctx->ticket;
	/* under the lock: a resume cannot come before the suspend */
	MHD_suspend_connection(req->conn);
	pthread_mutex_unlock(&h->susp_mu);
	return t;
}

void
http_resume(struct http_ticket t)
{
	struct body_ctx *ctx;

	if (t.h == NULL || t.id == 0)
		return;
	pthread_mutex_lock(&t.h->susp_mu);
	for (ctx = t.h->suspended; ctx != NULL; ctx = ctx->susp_next)
		if (ctx->ticket == t.id)
			break;
	if (ctx != NULL && unlist_suspended(t.h, ctx))
		MHD_resume_connection(ctx->conn);
	pthread_mutex_unlock(&t.h->susp_mu);
}

/* Resume the suspended requests that waited seconds or more. */
void
http_resume_older(struct http *h, unsigned seconds)
{
	struct body_ctx **pp, *ctx;
	long long now = monotonic_ms();

	pthread_mutex_lock(&h->susp_mu);
	for (pp = &h->suspended; (ctx = *pp) != NULL;) {
		if (now - ctx->suspended_at < (long long)seconds * 1000) {
			pp = &ctx->susp_next;
			continue;
		}
		*pp = ctx->susp_next;
		ctx->suspended = 0;
		MHD_resume_connection(ctx->conn);
	}
	pthread_mutex_unlock(&h->susp_mu);
}

/* Resume every suspended request (the daemon is stopping). */
static void
resume_all(struct http *h)
{
	http_resume_older(h, 0);
}

/* ---- prepared responses ---- */

struct http_response *
http_response_file(int fd, uint64_t size)
{
	struct MHD_Response *r = MHD_create_response_from_fd64(size, fd);

	if (r == NULL)
		close(fd);
	return (struct http_response *)r;
}

struct http_response *
http_response_file_range(int fd, uint64_t offset, uint64_t len)
{
	struct MHD_Response *r;

	r = MHD_create_response_from_fd_at_offset64(len, fd, offset);
	if (r == NULL)
		close(fd);
	return (struct http_response *)r;
}

struct http_response *
http_response_empty(void)
{
	static char nothing[1];

	return (struct http_response *)MHD_create_response_from_buffer(0,
	    nothing, MHD_RESPMEM_PERSISTENT);
}

struct http_response *
http_response_static(const void *data, size_t len)
{
	return (struct http_response *)MHD_create_response_from_buffer(len,
	    (void *)(uintptr_t)data, MHD_RESPMEM_PERSISTENT);
}

int
http_response_header(struct http_response *resp, const char *name,
    const char *value)
{
	return MHD_add_response_header((struct MHD_Response *)resp, name,
	    value) == MHD_YES ? 0 : -1;
}

void
http_response_free(struct http_response *resp)
{
	if (resp != NULL)
		MHD_destroy_response((struct MHD_Response *)resp);
}

/* ---- server ---- */

static int
split_listen(const char *listen, char *host, size_t hostlen, char *port,
    size_t portlen)
{
	const char *colon = strrchr(listen, ':');
	size_t hl;

	if (colon == NULL)
		return -1;
	hl = (size_t)(colon - listen);
	if (listen[0] == '[' && hl >= 2 && listen[hl - 1] == ']') {
		listen++;
		hl -= 2;
	}
	if (hl >= hostlen || strlen(colon + 1) >= portlen)
		return -1;
	memcpy(host, listen, hl);
	host[hl] = '\0';
	if (strcmp(host, "*") == 0)
		host[0] = '\0';
	snprintf(port, portlen, "%s", colon + 1);
	return 0;
}

static int
bind_listen(const char *spec, char *bound, size_t boundlen)
{
	struct addrinfo hints = {0}, *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], port[16], addr[INET6_ADDRSTRLEN];
	int fd = -1, on = 1, rc;

	if (split_listen(spec, host, sizeof(host), port, sizeof(port)) < 0) {
		log_warnx("cannot parse listen address '%s'", spec);
		return -1;
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) !=
	    0) {
		log_warnx("cannot resolve '%s': %s", spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 1024) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		log_warn("cannot listen on '%s'", spec);
		return -1;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
			snprintf(bound, boundlen, "[%s]:%u", addr,
			    ntohs(s6->sin6_port));
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
			snprintf(bound, boundlen, "%s:%u", addr,
			    ntohs(s4->sin_port));
		}
	}
	return fd;
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_debug("microhttpd: %s", line);
}

/* A connection opened (before its TLS handshake) or closed. */
static void
connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode code)
{
	struct http *h = cls;
	const union MHD_ConnectionInfo *ci;

	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		connwatch_closed(h->watch, socket_context);
		return;
	}
	/* before its handshake: its session may be resumed by a ticket */
	if (h->tls != NULL && (ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_GNUTLS_SESSION)) != NULL)
		tls_session_started(h->tls, (gnutls_session_t)ci->tls_session);
	connwatch_opened(h->watch, conn, socket_context);
}

/* Accept policy: while stopping, a new connection is closed at once. */
static enum MHD_Result
accept_cb(void *cls, const struct sockaddr *addr, socklen_t len)
{
	struct http *h = cls;

	(void)addr;
	(void)len;
	return atomic_load(&h->closing) ? MHD_NO : MHD_YES;
}

enum otad_err
http_start(const struct http_options *opt, const struct http_route *routes,
    size_t nroutes, void *arg, struct http **out, char *bound,
    size_t boundlen)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	    MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_TURBO |
	    MHD_USE_ERROR_LOG;
	struct connwatch_options wopt = {0};
	struct http *h;
	size_t i, pool;
	int fd;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->route_pending = calloc(nroutes, sizeof(*h->route_pending))) ==
	    NULL) {
		free(h);
		return OTAD_ERR_NOMEM;
	}
	if (opt->proxies != NULL)
		h->proxies = *opt->proxies;
	wopt.per_address = opt->max_connections_per_address;
	wopt.proxies = &h->proxies;
	wopt.request_timeout = opt->request_timeout;
	if (opt->tls != NULL) {
		/* a handshake and the first request: within either bound */
		wopt.handshake_timeout = opt->connection_timeout;
		if (opt->request_timeout > 0 &&
		    opt->request_timeout < wopt.handshake_timeout)
			wopt.handshake_timeout = opt->request_timeout;
	}
	if ((h->watch = connwatch_new(&wopt)) == NULL) {
		free(h->route_pending);
		free(h);
		return OTAD_ERR_NOMEM;
	}
	pthread_mutex_init(&h->susp_mu, NULL);
	h->routes = routes;
	h->nroutes = nroutes;
	h->arg = arg;
	h->max_header_bytes = opt->max_header_bytes;
	atomic_init(&h->max_body_bytes, opt->max_body_bytes);
	for (i = 0; i < nroutes; i++) {
		h->route_pending[i].kind = PENDING_ROUTE;
		h->route_pending[i].route = &routes[i];
	}
	/*
	 * With TLS, poll() rather than epoll: during a handshake GnuTLS reads
	 * the socket itself, so microhttpd never sees the EAGAIN that takes
	 * a connection off its epoll ready list, and spins calling the
	 * handshake (and recv) until the client's next flight arrives: about
	 * 120 recv calls a connection, a quarter of the CPU, and 0.7 times
	 * the handshakes poll() serves (tests/bench/tls.sh).
	 */
	if ((h->tls = opt->tls) != NULL)
		flags = (flags & ~(unsigned)MHD_USE_EPOLL) | MHD_USE_POLL |
		    MHD_USE_TLS;
	if ((fd = bind_listen(opt->listen, bound, boundlen)) < 0)
		goto fail;
	/*
	 * The connection pool holds the request line and headers; leave room
	 * over our own header limit so that we, not microhttpd, answer an
	 * oversized request with a JSON 413.
	 */
	pool = opt->max_header_bytes * 2 + 16384;
	/* the certificate through a callback: SIGHUP replaces it */
	if (h->tls != NULL)
		h->daemon = MHD_start_daemon(flags, 0, accept_cb, h, access_cb, h,
		    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		    MHD_OPTION_LISTEN_SOCKET, fd,
		    MHD_OPTION_THREAD_POOL_SIZE, opt->threads,
		    MHD_OPTION_CONNECTION_LIMIT, opt->max_connections,
		    MHD_OPTION_CONNECTION_TIMEOUT, opt->connection_timeout,
		    MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
		    MHD_OPTION_NOTIFY_COMPLETED, completed_cb, h,
		    MHD_OPTION_NOTIFY_CONNECTION, connection_cb, h,
		    MHD_OPTION_HTTPS_CERT_CALLBACK, tls_certificate,
		    MHD_OPTION_END);
	else
		h->daemon = MHD_start_daemon(flags, 0, accept_cb, h, access_cb, h,
		    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		    MHD_OPTION_LISTEN_SOCKET, fd,
		    MHD_OPTION_THREAD_POOL_SIZE, opt->threads,
		    MHD_OPTION_CONNECTION_LIMIT, opt->max_connections,
		    MHD_OPTION_CONNECTION_TIMEOUT, opt->connection_timeout,
		    MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
		    MHD_OPTION_NOTIFY_COMPLETED, completed_cb, h,
		    MHD_OPTION_NOTIFY_CONNECTION, connection_cb, h,
		    MHD_OPTION_END);
	if (h->daemon == NULL) {
		log_warnx("cannot start the HTTP server on '%s'", bound);
		close(fd);
		goto fail;
	}
	connwatch_start(h->watch);
	*out = h;
	return OTAD_OK;
fail:
	free(h->route_pending);
	connwatch_free(h->watch);
	pthread_mutex_destroy(&h->susp_mu);
	free(h);
	return OTAD_ERR_IO;
}

void
http_set_max_body(struct http *h, size_t max_body_bytes)
{
	atomic_store(&h->max_body_bytes, max_body_bytes);
}

/* Wait for requests in flight to finish: 0, or -1 after grace seconds. */
static int
wait_in_flight(unsigned grace)
{
	struct timespec start, now, pause = {0, 20 * 1000000L};

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (atomic_load(&in_flight) > 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= (time_t)grace)
			return -1;
		nanosleep(&pause, NULL);
	}
	return 0;
}

void
http_stop(struct http *h, unsigned grace)
{
	if (h == NULL || h->daemon == NULL)
		return;
	/*
	 * No new connections; requests in flight go on. Not with
	 * MHD_quiesce_daemon: with epoll and a thread pool it races its own
	 * threads for the listening socket and microhttpd aborts ("Failed to
	 * remove listen FD from epoll set"). The accept policy turns new
	 * connections away instead.
	 */
	atomic_store(&h->closing, 1);
	if (wait_in_flight(grace) < 0) {
		log_warnx("%ld requests still in flight after %us; "
		    "closing them", atomic_load(&in_flight), grace);
		/*
		 * microhttpd refuses to stop with suspended connections:
		 * resume them (their handlers answer without waiting) and
		 * give them a moment to do so.
		 */
		resume_all(h);
		wait_in_flight(1);
	}
	connwatch_stop(h->watch);
	MHD_stop_daemon(h->daemon);
	h->daemon = NULL;
}


void
http_free(struct http *h)
{
	if (h == NULL)
		return;
	if (h->daemon != NULL)
		http_stop(h, 0);
	pthread_mutex_destroy(&h->susp_mu);
	connwatch_free(h->watch);
	free(h->route_pending);
	free(h);
}
