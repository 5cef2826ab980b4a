/* main.c: otad, the daemon: flags, start and stop order, signals */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "admin.h"
#include "api.h"
#include "conf.h"
#include "http.h"
#include "tls.h"
#include "log.h"
#include "metrics.h"
#include "mqtt.h"
#include "patcher.h"
#include "registry.h"
#include "rollout.h"
#include "store.h"

#ifndef OTAD_CONF
#define OTAD_CONF "/etc/otad/otad.conf"
#endif

static _Noreturn void
usage(void)
{
	fprintf(stderr, "usage: otad [-dn] [-c file]\n"
			"  -c file  configuration (default " OTAD_CONF ")\n"
			"  -d       debug logging\n"
			"  -n       check the configuration and exit\n");
	exit(2);
}

/*
 * Where devices download, for MQTT triggers and library manifests:
 * public_url, or this server as bound (a wildcard address becomes the
 * host name).
 */
static void
base_url(const struct conf *conf, const char *bound, char *out, size_t len)
{
	const char *port = strrchr(bound, ':');
	char host[256];
	size_t n;

	if (conf->public_url[0] != '\0') {
		n = strlen(conf->public_url);
		while (n > 0 && conf->public_url[n - 1] == '/')
			n--;
		snprintf(out, len, "%.*s", (int)n, conf->public_url);
		return;
	}
	if (port == NULL)
		port = "";
	if (strncmp(bound, "0.0.0.0:", 8) == 0 || strncmp(bound, "[::]:", 5) ==
	    0 || strncmp(bound, "*:", 2) == 0) {
		if (gethostname(host, sizeof(host) - 1) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
	} else {
		snprintf(host, sizeof(host), "%.*s", (int)(port - bound), bound);
	}
	snprintf(out, len, "%s://%s%s", conf->tls_cert[0] ? "https" : "http",
	    host, port);
}

static size_t
queue_depth(void *arg)
{
	return registry_queue_depth(arg);
}

static int
device_rows(void *arg, struct metrics_device_rows *out)
{
	struct devcache_stats st;

	if (registry_device_cache_stats(arg, &st) < 0)
		return -1;
	out->devices = st.devices;
	out->hits = st.hits;
	out->misses = st.misses;
	return 0;
}

/* SIGHUP: a new config, checked whole, then swapped in. */
/* For the store's sweep: does an artifact row name this file? */
static int
artifact_named(void *arg, const char *sha256)
{
	char why[256];
	json_t *row;
	enum otad_err rc = registry_artifact_get(arg, sha256, &row, why,
	    sizeof(why));

	json_decref(rc == OTAD_OK ? row : NULL);
	/* when unsure (the database said something else), keep the file */
	return rc != OTAD_ERR_NOT_FOUND;
}

static void
reload(const char *path, struct conf *conf, struct registry *reg,
    struct http *http, struct tls *tls, struct api *api,
    struct rollout *rollout, struct mqtt *mqtt, struct patcher *patcher,
    struct admin *admin, int debug_flag)
{
	char err[CONF_ERR_MAX];
	struct conf next;
	const char *key;

	sd_notify(0, "RELOADING=1");
	if (conf_load(path, &next, err, sizeof(err)) < 0) {
		log_warnx("reload refused, keeping the running configuration: "
		    "%s", err);
	} else {
		if (conf_needs_restart(conf, &next, &key))
			log_warnx("reload: a new '%s' takes effect on restart",
			    key);
		log_set_debug(debug_flag || next.debug);
		http_set_max_body(http, next.max_body_bytes);
		conf->max_body_bytes = next.max_body_bytes;
		conf->shutdown_timeout = next.shutdown_timeout;
		conf->offline_after = next.offline_after;
		rollout_set_offline_after(rollout, next.offline_after);
		rollout_set_leader_timeout(rollout, next.leader_timeout);
		mqtt_set_device_auth(mqtt, next.device_auth);
		patcher_set_share(patcher, next.delta_max_share);
		conf->delta_max_share = next.delta_max_share;
		conf->debug = next.debug;
		conf->require_signature = next.require_signature;
		api_set_require_signature(api, next.require_signature);
		api_set_access(api, next.device_auth, next.rate_per_device,
		    next.rate_per_address, next.auth_failures_per_address);
		conf->device_auth = next.device_auth;
		api_set_latest(api, next.latest_url);
		api_set_infer_after(api, next.infer_after);
		conf->latest_url = next.latest_url;
		if (admin != NULL)
			admin_configure(admin, &next);
		conf->rollout_approvals = next.rollout_approvals;
		registry_set_quarantine(reg, next.quarantine_n,
		    next.quarantine_s);
		registry_set_telemetry(reg, next.telemetry_interval,
		    next.telemetry_retention, next.compare_min_devices);
		rollout_set_telemetry(rollout, next.telemetry_interval,
		    next.telemetry_retention, next.compare_min_devices);
		conf->max_artifact_bytes = next.max_artifact_bytes;
		conf->rate_per_device = next.rate_per_device;
		conf->rate_per_address = next.rate_per_address;
		conf->auth_failures_per_address =
		    next.auth_failures_per_address;
		log_info("configuration reloaded");
	}
	/*
	 * A certificate renewed in place is served from the next handshake;
	 * connections open keep theirs (new paths take a restart).
	 */
	if (tls != NULL) {
		switch (tls_reload(tls, conf->tls_cert, conf->tls_key, err,
		    sizeof(err))) {
		case 0:
			log_info("TLS certificate '%s' read again: served from "
			    "the next handshake", conf->tls_cert);
			break;
		case 1:
			log_info("TLS certificate '%s' unchanged", conf->tls_cert);
			break;
		default:
			log_warnx("keeping the TLS certificate served: %s", err);
		}
	}
	rollout_reload(rollout);
	sd_notify(0, "READY=1");
}

/* the rollout controller once it runs: it knows whether this node leads */
static _Atomic(struct rollout *) leading_rollout;

static int
leads(void *unused)
{
	struct rollout *r = atomic_load(&leading_rollout);

	(void)unused;
	return r != NULL && rollout_leads(r);
}

/*
 * A node of a cluster builds patches only while it leads, and shares
 * them: set before the first offer asks for patches.
 */
static void
share_patches(struct patcher *patcher, const char *db_path,
    struct registry_patches **rp)
{
	struct patch_cluster cluster = {
		.leads = leads,
		.fetch = registry_patch_fetch,
		.put = registry_patch_put,
		.wanted = registry_patch_wanted,
		.drop = registry_patch_drop,
	};

	if (registry_patches_open(db_path, rp) != OTAD_OK)
		fatalx("out of memory");
	cluster.arg = *rp;
	patcher_join_cluster(patcher, &cluster);
}

int
main(int argc, char *argv[])
{
	const char *conf_path = OTAD_CONF;
	char err[CONF_ERR_MAX], db_path[PATH_MAX + 16], bound[128] = "";
	struct http_options hopt;
	struct registry *reg = NULL;
	struct store *store = NULL;
	struct api *api = NULL;
	struct rollout *rollout = NULL;
	struct mqtt *mqtt = NULL;
	struct patcher *patcher = NULL;
	struct registry_patches *shared_patches = NULL;
	struct mqtt_options mopt;
	char url[512];
	struct http *http = NULL, *admin_http = NULL;
	struct tls *tls = NULL;
	struct admin *admin = NULL;
	char admin_bound[160];
	const struct http_route *routes;
	struct conf conf;
	size_t nroutes;
	sigset_t sigs;
	int ch, debug = 0, check_only = 0, sig;
	long ncpu;

	while ((ch = getopt(argc, argv, "c:dn")) != -1) {
		switch (ch) {
		case 'c':
			conf_path = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'n':
			check_only = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	log_init("otad", debug);
	if (conf_load(conf_path, &conf, err, sizeof(err)) < 0)
		fatalx("%s", err);
	if (check_only) {
		printf("configuration OK\n");
		return 0;
	}
	log_set_debug(debug || conf.debug);

	/* signals are taken synchronously by this thread alone */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (mkdir(conf.state_dir, 0750) < 0 && errno != EEXIST)
		fatal("cannot create state directory '%s'", conf.state_dir);
	if (conf_db_path(&conf, db_path, sizeof(db_path)) < 0)
		fatalx("state_dir '%s' is too long", conf.state_dir);
	if (registry_open(db_path, &reg) != OTAD_OK)
		fatalx("cannot open the registry '%s'", db_path);
	if (store_open(conf.state_dir, &store) != OTAD_OK)
		fatalx("cannot open the artifact store in '%s'",
		    conf.state_dir);
	/* a node of a cluster fetches what another node stored */
	if (registry_clustered(reg))
		store_set_source(store, registry_fetch_artifact, db_path);
	store_clean(store);
	store_sweep(store, artifact_named, reg);
	registry_set_quarantine(reg, conf.quarantine_n, conf.quarantine_s);
	registry_set_telemetry(reg, conf.telemetry_interval,
	    conf.telemetry_retention, conf.compare_min_devices);
	if (registry_writer_start(reg, conf.writer_queue_max,
	    conf.device_cache) != OTAD_OK)
		fatalx("cannot start the registry writer");
	if (api_new(db_path, reg, store, &api) != OTAD_OK)
		fatalx("out of memory");
	api_set_require_signature(api, conf.require_signature);
	api_set_latest(api, conf.latest_url);
	api_set_infer_after(api, conf.infer_after);
	if (patcher_start(store, conf.delta_max_share, &patcher) != OTAD_OK)
		fatalx("cannot start the delta patch builder");
	if (registry_clustered(reg))
		share_patches(patcher, db_path, &shared_patches);
	api_set_patcher(api, patcher);
	api_set_access(api, conf.device_auth, conf.rate_per_device,
	    conf.rate_per_address, conf.auth_failures_per_address);
	if (api_start_rollout(api, &rollout) != OTAD_OK)
		fatalx("cannot load the releases to offer");
	rollout_set_offline_after(rollout, conf.offline_after);
	rollout_set_leader_timeout(rollout, conf.leader_timeout);
	rollout_set_telemetry(rollout, conf.telemetry_interval,
	    conf.telemetry_retention, conf.compare_min_devices);
	atomic_store(&leading_rollout, rollout);

	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	memset(&hopt, 0, sizeof(hopt));
	hopt.listen = conf.listen;
	hopt.threads = conf.http_threads ? conf.http_threads
					 : (unsigned)(ncpu > 0 ? ncpu : 1);
	hopt.max_connections = conf.max_connections;
	hopt.connection_timeout = conf.connection_timeout;
	hopt.max_connections_per_address = conf.max_connections_per_address;
	hopt.proxies = &conf.proxies;
	hopt.request_timeout = conf.request_timeout;
	hopt.max_header_bytes = conf.max_header_bytes;
	hopt.max_body_bytes = conf.max_body_bytes;
	if (conf.tls_cert[0] != '\0' && (tls = tls_new(conf.tls_cert,
	    conf.tls_key, conf.tls_ticket_key, conf.tls_ticket_lifetime, err,
	    sizeof(err))) == NULL)
		fatalx("%s", err);
	hopt.tls = tls;
	routes = api_routes(&nroutes);
	if (http_start(&hopt, routes, nroutes, api, &http, bound,
	    sizeof(bound)) != OTAD_OK)
		fatalx("cannot serve HTTP on '%s'", conf.listen);
	metrics_set_gauges(queue_depth, reg, http_in_flight);
	metrics_set_device_rows(device_rows, reg);
	if (conf.admin_listen[0] != '\0') {
		struct http_options aopt = hopt;

		if (admin_new(db_path, &conf, store, &admin) != OTAD_OK)
			fatalx("cannot start the management API");
		aopt.listen = conf.admin_listen;
		aopt.threads = 2;
		aopt.max_connections = 256;
		/* an upload of 16 MiB over a slow link takes its time */
		aopt.request_timeout = conf.request_timeout > 600 ?
		    conf.request_timeout : 600;
		routes = admin_routes(&nroutes);
		if (http_start(&aopt, routes, nroutes, admin, &admin_http,
		    admin_bound, sizeof(admin_bound)) != OTAD_OK)
			fatalx("cannot serve the management API on '%s'",
			    conf.admin_listen);
	}
	base_url(&conf, bound, url, sizeof(url));
	api_set_base_url(api, url);
	mopt.conf = &conf;
	mopt.base_url = url;
	mopt.db_path = db_path;
	mopt.reg = reg;
	mopt.rollout = rollout;
	mopt.clustered = registry_clustered(reg);
	if (mqtt_start(&mopt, &mqtt, err, sizeof(err)) != OTAD_OK)
		fatalx("%s", err);

	log_info("ready: listening on %s%s, %u threads, state in '%s'%s%s",
	    bound, conf.tls_cert[0] ? " (TLS)" : "", hopt.threads,
	    conf.state_dir, admin ? ", management API on " : "",
	    admin ? admin_bound : "");
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s", bound);

	for (;;) {
		const struct timespec tick = {1, 0};

		/*
		 * Once a second: a report that waited this long for a held
		 * database is answered 503 before the device gives up.
		 */
		sig = sigtimedwait(&sigs, NULL, &tick);
		if (sig < 0 && errno == EAGAIN) {
			http_resume_older(http, API_REPORT_WAIT_S);
			continue;
		}
		if (sig == SIGHUP) {
			reload(conf_path, &conf, reg, http, tls, api, rollout, mqtt,
			    patcher, admin, debug);
			continue;
		}
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (sig < 0 && errno != EINTR)
			fatal("sigwaitinfo");
	}

	sd_notify(0, "STOPPING=1");
	log_info("stopping: finishing requests in flight");
	http_stop(admin_http, conf.shutdown_timeout);
	http_stop(http, conf.shutdown_timeout);
	mqtt_stop(mqtt);
	/* stopping is no reason to drop patches; the builder stops */
	patcher_closing(patcher);
	rollout_stop(rollout);
	patcher_stop(patcher); /* after everyone who asks it for patches */
	registry_patches_free(shared_patches);
	/* after the HTTP threads: their records are all queued by now */
	registry_close(reg);
	http_free(http);
	http_free(admin_http);
	tls_free(tls);
	admin_free(admin);
	api_free(api);
	store_free(store);
	log_info("stopped");
	return 0;
}
