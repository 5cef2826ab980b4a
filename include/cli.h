/*
 * cli.h: what otactl's modules share. otactl.c reads the command line,
 * prints, and runs operations (ops.h) here or on a remote otad
 * (cli_remote.c); each cli_*.c is one group of commands: it turns its
 * options into an operation's arguments and its answer into lines, the
 * same whether the operation ran here or there.
 */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "conf.h"

#define EXIT_USAGE 2

/* Options after the command words: --name VALUE or --flag. */
struct opts {
	const char *verb; /* the command's second word */
	int argc;
	char **argv; /* positional words left */
	const char *version, *product, *artifact, *hw_rev, *group, *chip;
	const char *signature, *key, *public, *algo, *min_from;
	const char *stages, *window, *days, *utc_offset, *min_battery, *timeout;
	const char *promote_window, *on_halt, *reverted;
	const char *output, *sha256, *kind, *break_glass, *role;
	const char *actor, *before, *limit;
	/* rollout simulate */
	const char *failure_rate, *crash_rate, *poll_interval, *seed, *horizon;
	int offline, secure_boot, confirm_sv, forced, force, downgrade, raw;
};

extern int json_out;
extern struct conf conf;

void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void usage(void) __attribute__((noreturn));

/* Refuse a bad value with a clear line, as the server would. */
void check_version(const char *v);
void check_token(const char *option, const char *p);
void check_device_id(const char *id);

/*
 * Run the operation name with args (consumed) here or on the server
 * (--url), and return its answer; dies with the reason on failure.
 * upload: a file whose bytes the operation takes (artifact.add), or NULL.
 */
json_t *cli_run(const char *name, json_t *args, const char *upload);

/*
 * A JSON object of the given "key", value pairs, NULL values left out,
 * up to CLI_END.
 */
#define CLI_END ((const char *)NULL)
json_t *cli_args(const char *key, ...);

/* A file read whole (at most max bytes); dies on error. Caller frees. */
char *read_small(const char *path, size_t max, size_t *len);
const uint8_t *map_file(const char *path, size_t *len);
void write_atomic(const char *path, const void *data, size_t len,
    unsigned mode);

void print_json(json_t *v);
void print_table(json_t *rows, const char *const *cols);
void print_fields(json_t *obj, const char *const *keys);
/* A table, or JSON with --json. */
void print_rows(json_t *rows, const char *const *cols);
/* A cell as a table shows it: times as UTC, NULL as "-". */
void cell(json_t *v, const char *col, char *buf, size_t len);
/* --json: the answer as it is; else nothing. 1 when printed. */
int print_if_json(json_t *answer);
/* The answer as JSON with --json, else the line fmt makes; frees it. */
void say(json_t *answer, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A list: no words after the verb, op's rows as a table (cols). */
int cli_list(struct opts *o, const char *op, json_t *args,
    const char *const *cols);

/* A field of an answer: "" or 0 when absent. */
static inline const char *
jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static inline long long
jint(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

/*
 * A group of commands: its word (the first), the options its commands
 * take, and each command's verb (the second word; "" for a group that is
 * one command, like status) and function. The verb is in o->verb.
 */
struct cli_command {
	const char *verb;
	int (*fn)(struct opts *o);
};
struct cli_group {
	const char *word;
	const char *options;
	struct cli_command commands[10]; /* up to a NULL verb */
};
extern const struct cli_group cli_artifact, cli_key, cli_release,
    cli_rollout, cli_device, cli_operator, cli_status, cli_audit, cli_delta;

/*
 * A remote server: its answer to op with args (and upload's bytes), or
 * NULL with why. base is https://host:port, token the operator's.
 */
struct op;
json_t *cli_remote_call(const char *base, const char *token,
    const char *cafile, const struct op *op, json_t *args,
    const char *upload, char *why, size_t whylen);

#endif
