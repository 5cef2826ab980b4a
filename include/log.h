/*
 * log.h: the daemon's log API (after OpenBSD's log.c).
 *
 * Lines go to stderr. Under systemd (JOURNAL_STREAM set) each line carries a
 * "<N>" priority prefix that journald understands. All functions are
 * thread-safe: one write(2) per line.
 */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>

/* Name printed before each line when stderr is a terminal or a file. */
void log_init(const char *progname, int debug);
void log_set_debug(int debug);
int log_get_debug(void);
/*
 * Drop the calling thread's lines (fatal ones aside) while quiet: a
 * rehearsal's scratch copy of the registry speaks of nothing real.
 */
void log_set_quiet(int quiet);

/* log_warn appends ": strerror(errno)"; log_warnx does not. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Start-up only: log and exit(1). */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatalx(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

#endif
