/*
 * semver.h: version strings and their order. Pure functions, thread-safe.
 *
 * Order: when both strings are semantic versions (an optional leading 'v',
 * MAJOR[.MINOR[.PATCH]], optional -prerelease and +build; missing parts are
 * 0), Semantic Versioning 2.0 precedence applies (build metadata ignored).
 * Otherwise the fallback is the Debian version order (dpkg's verrevcmp):
 * runs of digits compare as numbers, other runs character by character with
 * letters before punctuation and '~' before everything, even the end.
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
