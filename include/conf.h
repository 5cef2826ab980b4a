/*
 * conf.h: the configuration file.
 *
 * Format: "key = value" lines, blank lines ignored; '#' at the start of a
 * line or after a blank starts a comment (so "devices/#" is a value).
 * Every key is declared once in conf.c's table with its type, bounds and
 * default; an unknown key, a value out of bounds or a duplicate stops the
 * load with "FILE:LINE: reason". A struct conf is a plain value: a reload
 * builds a new one, validates it, and the caller swaps it in.
 */
#ifndef CONF_H
#define CONF_H

#include <limits.h>
#include <stddef.h>

#include "proxy.h"

#define CONF_ERR_MAX 512

struct conf {
	char listen[128];          /* "host:port", "[v6]:port" or "*:port" */
	char state_dir[PATH_MAX];  /* database + artifact store live here */
	char database[1024]; /* "": state_dir/otad.db; a path; postgresql:// */
	unsigned http_threads;     /* 0 = one per CPU */
	unsigned max_connections;  /* open HTTP connections at once */
	unsigned connection_timeout; /* idle seconds before a close */
	unsigned max_connections_per_address; /* 0 = no cap */
	unsigned request_timeout; /* seconds for a request to arrive */
	size_t max_header_bytes;   /* all request headers together */
	size_t max_body_bytes;     /* a request body (reports) */
	unsigned writer_queue_max; /* queued records per HTTP thread */
	unsigned device_cache;     /* device rows kept in memory */
	unsigned shutdown_timeout; /* seconds to finish in-flight requests */
	unsigned offline_after;    /* seconds unseen before "offline" */
	unsigned leader_timeout;   /* a dead leader's work moves within it */
	int debug;                 /* log_level = debug */
	int require_signature;     /* offer only artifacts signed by a key */
	int device_auth;           /* 1 = token: devices must present one */
	int latest_url;            /* serve /firmware/latest/<product> */
	unsigned infer_after;      /* seconds a silent device polls on after
				      its image before that is a success */
	unsigned rollout_approvals; /* 2: a second operator approves starts */
	/* rollouts created without their own: when stages may open */
	char promote_window[64];    /* "[DAYS] HH:MM-HH:MM [OFFSET]"; "" any */
	/* "3 in 24h": that many failed or rolled-back attempts within the
	 * period, and a device is offered nothing for the period; "off" */
	char quarantine_after[32];
	int on_halt_revert;         /* on_halt = revert: the default */
	unsigned quarantine_n;      /* from quarantine_after; 0 = off */
	unsigned quarantine_s;
	/* telemetry samples: at most one a device per interval (seconds; 0
	 * every one), kept for the retention (seconds) */
	unsigned telemetry_interval;
	unsigned telemetry_retention;
	unsigned compare_min_devices; /* each side, before a comparison halts */
	char admin_listen[128];     /* the management API; "" = off */
	int admin_allow_plaintext;  /* off loopback without TLS */
	size_t max_artifact_bytes;  /* an upload through the API */
	unsigned rate_per_device;  /* requests a minute; 0 = no cap */
	unsigned rate_per_address; /* requests a minute; 0 = no cap */
	unsigned auth_failures_per_address; /* a minute; 0 = no cap */
	char tls_cert[PATH_MAX];   /* PEM; empty = plain HTTP */
	char tls_key[PATH_MAX];    /* PEM; required with tls_cert */
	/* 64 random bytes nodes share to resume each other's sessions; "" =
	 * this process's own */
	char tls_ticket_key[PATH_MAX];
	unsigned tls_ticket_lifetime; /* seconds a ticket resumes; 0 = none */
	/*
	 * Proxies believed about the device's address (X-Forwarded-For),
	 * and exempt from max_connections_per_address; "" = none
	 */
	char trusted_proxies[1024];
	struct proxies proxies; /* trusted_proxies, parsed */
	/* where devices download from, for MQTT triggers; "" = from listen */
	char public_url[256];
	/* MQTT (hybrid push); mqtt_host "" = off */
	char mqtt_host[256];
	unsigned mqtt_port;
	char mqtt_tls_ca[PATH_MAX];   /* CA file; set = TLS to the broker */
	char mqtt_tls_cert[PATH_MAX]; /* client certificate, with key */
	char mqtt_tls_key[PATH_MAX];
	char mqtt_username[128];
	char mqtt_password_file[PATH_MAX];
	char mqtt_client_id[128];     /* "" = otad-<hostname> */
	char mqtt_topic_prefix[128];
	unsigned mqtt_keepalive;      /* seconds */
	char mqtt_telemetry_topics[1024]; /* space-separated filters */
	int mqtt_retain_triggers;     /* a sleeping device sees it on waking */
	/* a delta patch is offered when at most this % of the image; 0 = off */
	unsigned delta_max_share;
};

/* Fill every field with its documented default. */
void conf_defaults(struct conf *conf);

/*
 * Parse the file at path into *conf (defaults first). Returns 0, or -1 with
 * a one-line "path:line: reason" in err.
 */
int conf_load(const char *path, struct conf *conf, char *err, size_t errlen);

/* The same for text already in memory; name is used in messages. */
int conf_parse(const char *name, const char *text, struct conf *conf,
    char *err, size_t errlen);

/* The path of the SQLite database and of the artifact store, in buf. */
int conf_db_path(const struct conf *conf, char *buf, size_t len);

/*
 * Keys whose new value only takes effect after a restart; writes the first
 * one that differs into *key and returns 1, or returns 0.
 */
int conf_needs_restart(const struct conf *old, const struct conf *new,
    const char **key);

#endif
