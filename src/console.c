/*
 * console.c: the web console's files, compiled in (console.h), each
 * answered from one prepared response with headers that keep a page of
 * device-sent text from ever running as code: a Content-Security-Policy
 * allowing no inline script or style and nothing from elsewhere, no
 * sniffing, no framing.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"
#include "http.h"
#include "log.h"

#define PREFIX "/console/"
#define CSP "default-src 'none'; script-src 'self'; style-src 'self'; " \
	"img-src 'self'; connect-src 'self'; base-uri 'none'; " \
	"form-action 'none'; frame-ancestors 'none'"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct http_response **prepared; /* one per console_files entry */

static const char *
type_of(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot != NULL && strcmp(dot, ".html") == 0)
		return "text/html; charset=utf-8";
	if (dot != NULL && strcmp(dot, ".css") == 0)
		return "text/css; charset=utf-8";
	if (dot != NULL && strcmp(dot, ".js") == 0)
		return "text/javascript; charset=utf-8";
	return "application/octet-stream";
}

/* The responses, built once and kept for the life of the process. */
static void
prepare(void)
{
	static const char *const headers[][2] = {
		{"Content-Security-Policy", CSP},
		{"X-Content-Type-Options", "nosniff"},
		{"X-Frame-Options", "DENY"},
		{"Referrer-Policy", "no-referrer"},
		{"Cache-Control", "no-cache"},
	};
	size_t i, h;

	if ((prepared = calloc(console_file_count, sizeof(*prepared))) == NULL)
		return;
	for (i = 0; i < console_file_count; i++) {
		struct http_response *r = http_response_static(
		    console_files[i].data, console_files[i].len);
		int bad = r == NULL || http_response_header(r, "Content-Type",
		    type_of(console_files[i].name)) < 0;

		for (h = 0; !bad && h < sizeof(headers) / sizeof(headers[0]);
		    h++)
			bad = http_response_header(r, headers[h][0],
			    headers[h][1]) < 0;
		if (bad) {
			log_warnx("console: cannot prepare %s",
			    console_files[i].name);
			http_response_free(r);
			r = NULL;
		}
		prepared[i] = r;
	}
}

int
console_serve(struct http_request *req, void *arg)
{
	const char *name = http_path(req) + strlen(PREFIX);
	size_t i;

	(void)arg;
	pthread_once(&once, prepare);
	if (name[0] == '\0')
		name = "index.html";
	for (i = 0; i < console_file_count; i++)
		if (strcmp(console_files[i].name, name) == 0)
			break;
	if (i == console_file_count)
		return http_error(req, 404, "no such file in the console");
	if (prepared == NULL || prepared[i] == NULL)
		return http_error(req, 503, "out of memory");
	return http_queue(req, 200, prepared[i], 0);
}

int
console_redirect(struct http_request *req, void *arg)
{
	(void)arg;
	return http_error_header(req, 301, "the console is at /console/",
	    "Location", PREFIX);
}
