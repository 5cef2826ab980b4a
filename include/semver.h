/*
 * semver.h: version strings and their order. Pure functions, thread-safe.
 *
 * Order: one total order over every version string (reflexive,
 * antisymmetric, transitive), which is SemVer 2.0 precedence for semantic
 * versions. A version is its numeric core (up to three dot-separated digit
 * runs after an optional 'v'; missing parts are 0; a string without one
 * comes before every string with one), then what follows up to '+' (build
 * metadata, ignored): nothing is the release; '-' or '~' starts a
 * prerelease, before the release; anything else (1.2.3.4, 1.0a) is a
 * post-release, after it. Prereleases and post-releases compare by
 * dot-separated identifiers: all-digit ones as numbers and before the
 * others, the others naturally (digit runs as numbers: rc9 < rc10).
 */
#ifndef SEMVER_H
#define SEMVER_H

/*
 * A version a device or operator may use: 1..OTAD_VERSION_MAX bytes of
 * printable ASCII without spaces. Returns 1 if valid.
 */
int semver_valid(const char *s);

/* 1 if s parses as a (lenient) semantic version. */
int semver_is_semver(const char *s);

/* <0, 0, >0 as a is older than, equal to, newer than b. */
int semver_compare(const char *a, const char *b);

#endif
