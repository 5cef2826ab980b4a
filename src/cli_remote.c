/*
 * cli_remote.c: an operation sent to a remote otad's management API
 * (admin.c) with libcurl: the operation's method and path, its arguments
 * as the query (GET), a JSON body (POST), or, for an upload, the query
 * and the file as the body (the signature in X-Signature).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "cli.h"
#include "ops.h"

/* Answers larger than this are not an answer of ours. */
#define ANSWER_MAX (64u << 20)

struct buf {
	char *data;
	size_t len;
	int too_large;
};

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t add = size * n;
	char *grown;

	if (b->len + add > ANSWER_MAX) {
		b->too_large = 1;
		return 0;
	}
	if ((grown = realloc(b->data, b->len + add + 1)) == NULL)
		return 0;
	b->data = grown;
	memcpy(b->data + b->len, p, add);
	b->len += add;
	b->data[b->len] = '\0';
	return add;
}

/* Append s to b; 0, or -1 out of memory. */
static int
append(struct buf *b, const char *s)
{
	return collect((char *)s, 1, strlen(s), b) == strlen(s) ? 0 : -1;
}

/*
 * base/api/v1/PATH[?QUERY]: the path's {arguments} taken out of args
 * and escaped; with query, the other arguments as name=value pairs.
 */
static char *
url_of(CURL *c, const char *base, const struct op *op, json_t *args,
    int query)
{
	struct buf u = {0};
	const char *p = op->path, *k;
	char name[32], *e;
	json_t *v;
	size_t n, sep = 0;
	int bad = 0;

	bad |= append(&u, base);
	while (u.len > 0 && u.data[u.len - 1] == '/')
		u.data[--u.len] = '\0';
	bad |= append(&u, "/api/v1/");
	while (*p != '\0' && !bad) {
		n = *p == '{' ? strcspn(p, "}") : strcspn(p, "{");
		if (*p != '{') {
			snprintf(name, sizeof(name), "%.*s", (int)n, p);
			bad |= append(&u, name);
			p += n;
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(n - 1), p + 1);
		v = json_object_get(args, name);
		e = curl_easy_escape(c, json_string_value(v) ?
		    json_string_value(v) : "", 0);
		bad |= e == NULL || append(&u, e) < 0;
		curl_free(e);
		json_object_del(args, name);
		p += n + (p[n] == '}');
	}
	json_object_foreach(args, k, v) {
		if (!query || !json_is_string(v))
			continue;
		e = curl_easy_escape(c, json_string_value(v), 0);
		bad |= e == NULL || append(&u, sep++ ? "&" : "?") < 0 ||
		    append(&u, k) < 0 || append(&u, "=") < 0 ||
		    append(&u, e) < 0;
		curl_free(e);
	}
	if (bad) {
		free(u.data);
		return NULL;
	}
	return u.data;
}

/* The reason in an answer: its {"error"}, or its status. */
static void
refusal(long status, const struct buf *body, const char *url, char *why,
    size_t whylen)
{
	json_t *j = body->data ? json_loads(body->data, 0, NULL) : NULL;
	const char *e = json_string_value(json_object_get(j, "error"));

	if (e != NULL)
		snprintf(why, whylen, "%s", e);
	else
		snprintf(why, whylen, "%s answered HTTP %ld", url, status);
	json_decref(j);
}

json_t *
cli_remote_call(const char *base, const char *token, const char *cafile,
    const struct op *op, json_t *args, const char *upload, char *why,
    size_t whylen)
{
	int is_get = strcmp(op->method, "GET") == 0;
	struct curl_slist *h = NULL;
	struct buf body = {0}, auth = {0}, sig = {0};
	const char *signature;
	char *url = NULL, *json = NULL, err[CURL_ERROR_SIZE] = "";
	FILE *f = NULL;
	json_t *answer = NULL;
	struct stat st;
	long status = 0;
	CURLcode rc;
	CURL *c;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    (c = curl_easy_init()) == NULL) {
		snprintf(why, whylen, "cannot start an HTTPS client");
		return NULL;
	}
	/* an upload's signature travels in a header, its body is the image */
	signature = upload ? json_string_value(json_object_get(args,
	    "signature")) : NULL;
	if (signature != NULL && (append(&sig, "X-Signature: ") < 0 ||
	    append(&sig, signature) < 0))
		goto oom;
	if (upload)
		json_object_del(args, "signature");
	if ((url = url_of(c, base, op, args, is_get || upload)) == NULL ||
	    append(&auth, "Authorization: Bearer ") < 0 ||
	    append(&auth, token) < 0 ||
	    (h = curl_slist_append(h, auth.data)) == NULL)
		goto oom;
	if (sig.data != NULL && curl_slist_append(h, sig.data) == NULL)
		goto oom;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
	/* no total limit (an image takes what it takes), but no stall */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	if (cafile != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	if (upload != NULL) {
		if ((f = fopen(upload, "rb")) == NULL ||
		    fstat(fileno(f), &st) < 0) {
			snprintf(why, whylen, "%s", strerror(errno));
			goto out;
		}
		if ((h = curl_slist_append(h, "Content-Type: "
		    "application/octet-stream")) == NULL)
			goto oom;
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READDATA, f);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)st.st_size);
	} else if (!is_get) {
		if ((json = json_dumps(args, JSON_COMPACT)) == NULL ||
		    (h = curl_slist_append(h, "Content-Type: "
		    "application/json")) == NULL)
			goto oom;
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	if ((rc = curl_easy_perform(c)) != CURLE_OK) {
		snprintf(why, whylen, "%s: %s", base, err[0] ? err :
		    curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		refusal(status, &body, url, why, whylen);
		goto out;
	}
	if (body.data == NULL ||
	    (answer = json_loads(body.data, 0, NULL)) == NULL)
		snprintf(why, whylen, "%s answered with no JSON", url);
	goto out;
oom:
	snprintf(why, whylen, "out of memory");
out:
	if (f != NULL)
		fclose(f);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (auth.data != NULL)
		explicit_bzero(auth.data, auth.len);
	free(auth.data);
	free(sig.data);
	free(body.data);
	free(url);
	free(json);
	return answer;
}
