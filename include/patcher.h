/*
 * patcher.h: delta patches built once per (base, target) in the
 * background, verified, kept in the artifact store, and looked up by the
 * HTTP threads.
 *
 * A patch is built when a rollout or publish starts, for each image the
 * fleet runs, or on the first device that asks for it (that device gets
 * the full image meanwhile). Before it is stored, and again when a stored
 * one is picked up after a restart, it is applied to its base and must
 * give the target byte for byte; one that does not is logged and never
 * served. A patch larger than max_share percent of the target is not
 * offered either: the full image is as good.
 *
 * The nodes of a cluster share patches (patcher_join_cluster): only the
 * leading node builds; every node fetches what it built, verifies it
 * the same way, and keeps it in its own store.
 */
#ifndef PATCHER_H
#define PATCHER_H

#include <stdint.h>

#include "otad.h"
#include "store.h"

struct patcher;

struct patch_info {
	char base[65];     /* artifact SHA-256 of the base image */
	char target[65];   /* artifact SHA-256 of the target image */
	char base_app[65]; /* the base's appended SHA-256 (what devices
			      report as running) */
	char sha256[65];   /* of the patch as served (the container) */
	uint64_t size;     /* bytes, as served */
};

/* max_share: percent of the target's size; 0 = no deltas at all. */
enum otad_err patcher_start(struct store *store, unsigned max_share,
    struct patcher **out);
/* Stop the builder (a build in progress finishes first); NULL-safe. */
void patcher_stop(struct patcher *p);
void patcher_set_share(struct patcher *p, unsigned max_share);

/* Build it if it was never tried (thread-safe, returns at once). */
void patcher_want(struct patcher *p, const char *base, const char *target);

/*
 * 1 with *out when a verified patch from base to target is ready and
 * small enough; 0 otherwise, after asking for it to be built.
 */
int patcher_ready(struct patcher *p, const char *base, const char *target,
    struct patch_info *out);

/* 1 with *out for the ready patch whose own SHA-256 is sha256. */
int patcher_by_sha(struct patcher *p, const char *sha256,
    struct patch_info *out);

/*
 * A prepared offer of target appeared or went away. When the last one of
 * a target goes (its release is no longer offered), its patches are
 * removed, unless otad is closing (patcher_closing): they are kept for
 * the next start. Closing also stops the builder, so that it asks
 * patch_cluster.leads nothing more.
 */
void patcher_hold(struct patcher *p, const char *target);
void patcher_release(struct patcher *p, const char *target);
void patcher_closing(struct patcher *p);

/*
 * Where the nodes of a cluster keep their patches (the registry's
 * registry_patch_*). Called from the builder thread alone.
 */
struct patch_cluster {
	/* whether this node builds patches now */
	int (*leads)(void *leads_arg);
	void *leads_arg;
	/*
	 * The container kept for base -> target, to fd: 0. -1 with errno
	 * ENOENT when none is yet (the want is recorded for the builder),
	 * EBADMSG when its build failed, another errno when it cannot say.
	 */
	int (*fetch)(void *arg, const char *base, const char *target, int fd);
	/* Keep a container (c NULL: the build failed): 0 or -1. */
	int (*put)(void *arg, const char *base, const char *target,
	    const void *c, size_t n, const char *sha256);
	/* each() for every pair some node asked for: 0 or -1 */
	int (*wanted)(void *arg, void (*each)(void *each_arg,
	    const char *base, const char *target), void *each_arg);
	/* no node offers target any longer: its patches go */
	void (*drop)(void *arg, const char *target);
	void *arg;
};
/* Share patches with the cluster so (before the first want; copied). */
void patcher_join_cluster(struct patcher *p,
    const struct patch_cluster *cluster);

/* A read-only fd of a ready patch, or -1. */
int patcher_open(struct patcher *p, const struct patch_info *info);

#endif
