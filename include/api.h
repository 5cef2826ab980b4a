/*
 * api.h: the device endpoints. Parses what devices send, asks policy,
 * answers, and queues what happened for the registry writer. The only
 * module that maps enum otad_err to HTTP statuses.
 *
 * Threads: the handlers run on every HTTP thread at once; each thread owns
 * its registry reader and its snapshot reference (released when the
 * thread ends). struct api itself is read-only after api_new.
 */
#ifndef API_H
#define API_H

#include <stddef.h>

#include "http.h"
#include "otad.h"
#include "registry.h"
#include "rollout.h"
#include "store.h"

struct api;

/* db_path: for per-thread readers. reg, store are borrowed. */
enum otad_err api_new(const char *db_path, struct registry *reg,
    struct store *store, struct api **out);
void api_free(struct api *api);

/*
 * Offer only artifacts signed by a trusted key (require_signature); takes
 * effect at the next snapshot (rollout_reload).
 */
void api_set_require_signature(struct api *api, int on);

/* Serve /firmware/latest/<product> (latest_url); the next request on. */
void api_set_latest(struct api *api, int on);

/*
 * Seconds a silent device (a pull-OTA library that never reports) must
 * poll on after its image went out before its update counts as a
 * success, when longer than its stage's soak (infer_after).
 */
void api_set_infer_after(struct api *api, unsigned seconds);

/*
 * Where devices download ("https://host:port", no trailing '/'), for the
 * absolute links of library manifests. Once, after the server is bound;
 * until then those manifests are answered 503.
 */
void api_set_base_url(struct api *api, const char *base_url);

/* Offer delta patches through patcher (set before the first request). */
struct patcher;
void api_set_patcher(struct api *api, struct patcher *patcher);

/*
 * Device tokens (device_auth = token) and request caps per minute (0 = no
 * cap); take effect on the next request.
 */
/*
 * Seconds a report waits for its commit before it is answered 503 (send
 * again): under esp_http_client's and Arduino HTTPClient's 5 s timeout.
 */
#define API_REPORT_WAIT_S 4

void api_set_access(struct api *api, int tokens, unsigned per_device,
    unsigned per_address, unsigned auth_failures);

/* Start the rollout controller whose offers carry api's responses. */
enum otad_err api_start_rollout(struct api *api, struct rollout **out);

/* The route table for http_start, with api as the handlers' argument. */
const struct http_route *api_routes(size_t *n);

#endif
