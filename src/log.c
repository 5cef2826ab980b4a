/* log.c: one line per event on stderr, journald priorities under systemd */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const char *log_name = "otad";
static int log_debug_on;
static int log_journal; /* stderr is connected to journald */
static _Thread_local int log_quiet; /* this thread's lines are dropped */

void
log_init(const char *progname, int debug)
{
	log_name = progname;
	log_debug_on = debug;
	log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void
log_set_debug(int debug)
{
	log_debug_on = debug;
}

int
log_get_debug(void)
{
	return log_debug_on;
}

/* prio is the syslog level: 3 err, 4 warning, 6 info, 7 debug */
static void
log_vwrite(int prio, const char *err, const char *fmt, va_list ap)
{
	char line[1024];
	int n;
	size_t len;

	if (log_journal)
		n = snprintf(line, sizeof(line), "<%d>", prio);
	else
		n = snprintf(line, sizeof(line), "%s: ", log_name);
	if (n < 0)
		return;
	len = (size_t)n;
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	if (n < 0)
		return;
	len += (size_t)n;
	if (len >= sizeof(line) - 1)
		len = sizeof(line) - 2;
	if (err != NULL) {
		n = snprintf(line + len, sizeof(line) - len, ": %s", err);
		if (n > 0)
			len += (size_t)n;
		if (len >= sizeof(line) - 1)
			len = sizeof(line) - 2;
	}
	line[len++] = '\n';
	/* one write per line so threads never interleave inside a line */
	if (write(STDERR_FILENO, line, len) < 0)
		return;
}

#define LOG_BODY(prio, err)                                                    \
	do {                                                                   \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		log_vwrite(prio, err, fmt, ap);                                \
		va_end(ap);                                                    \
	} while (0)

void
log_set_quiet(int quiet)
{
	log_quiet = quiet;
}

void
log_info(const char *fmt, ...)
{
	if (log_quiet)
		return;
	LOG_BODY(6, NULL);
}

void
log_warn(const char *fmt, ...)
{
	const char *err = strerror(errno);

	if (log_quiet)
		return;
	LOG_BODY(4, err);
}

void
log_warnx(const char *fmt, ...)
{
	if (log_quiet)
		return;
	LOG_BODY(4, NULL);
}

void
log_debug(const char *fmt, ...)
{
	if (!log_debug_on || log_quiet)
		return;
	LOG_BODY(7, NULL);
}

void
fatal(const char *fmt, ...)
{
	const char *err = strerror(errno);

	LOG_BODY(3, err);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	LOG_BODY(3, NULL);
	exit(1);
}
