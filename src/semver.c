/* semver.c: one total order of versions, SemVer 2.0 precedence for semver */
#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "otad.h"
#include "semver.h"

struct semver {
	uint64_t num[3];
	const char *pre; /* after '-', up to '+' or end; NULL if none */
	size_t pre_len;
};

int
semver_valid(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++) {
		if (n >= OTAD_VERSION_MAX)
			return 0;
		if (s[n] <= 0x20 || s[n] >= 0x7f)
			return 0;
	}
	return n > 0;
}

/* Digits into *out without overflow; returns chars read or 0. */
static size_t
read_num(const char *s, uint64_t *out)
{
	size_t i = 0;
	uint64_t v = 0;

	while (isdigit((unsigned char)s[i])) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(s[i] - '0');
		i++;
	}
	*out = v;
	return i;
}

static int
ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '-';
}

static int
parse(const char *s, struct semver *v)
{
	size_t i, n;
	int part;

	memset(v, 0, sizeof(*v));
	if (*s == 'v' || *s == 'V')
		s++;
	for (part = 0; part < 3; part++) {
		if ((n = read_num(s, &v->num[part])) == 0)
			return -1;
		s += n;
		if (*s != '.')
			break;
		if (part == 2)
			return -1;
		s++;
	}
	if (*s == '-') {
		s++;
		v->pre = s;
		/* dot-separated non-empty identifiers */
		for (i = 0;; i++) {
			if (s[i] == '.' || s[i] == '+' || s[i] == '\0') {
				if (i == 0 || s[i - 1] == '.')
					return -1;
				if (s[i] != '.')
					break;
			} else if (!ident_char(s[i]))
				return -1;
		}
		v->pre_len = i;
		s += i;
	}
	if (*s == '+') {
		s++;
		if (*s == '\0')
			return -1;
		for (; *s != '\0'; s++)
			if (!ident_char(*s) && *s != '.')
				return -1;
	}
	return *s == '\0' ? 0 : -1;
}

int
semver_is_semver(const char *s)
{
	struct semver v;

	return parse(s, &v) == 0;
}

static int
all_digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return n > 0;
}

static int
sign_of(int c)
{
	return (c > 0) - (c < 0);
}

/* Two runs of digits as numbers, however long: no overflow, no parse. */
static int
cmp_digits(const char *a, size_t an, const char *b, size_t bn)
{
	while (an > 1 && *a == '0')
		a++, an--;
	while (bn > 1 && *b == '0')
		b++, bn--;
	if (an != bn)
		return an < bn ? -1 : 1;
	return sign_of(memcmp(a, b, an));
}

static size_t
digit_run(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && isdigit((unsigned char)s[i]))
		i++;
	return i;
}

/*
 * Two identifiers that are not all digits: runs of digits compare as
 * numbers, other runs byte by byte, a digit run before any other run, and
 * a prefix before what extends it (so rc9 < rc10, beta_2 < rc).
 */
static int
cmp_natural(const char *a, size_t an, const char *b, size_t bn)
{
	while (an > 0 && bn > 0) {
		size_t ad = digit_run(a, an), bd = digit_run(b, bn), al, bl;
		int c;

		if ((ad > 0) != (bd > 0))
			return ad > 0 ? -1 : 1;
		if (ad > 0) {
			if ((c = cmp_digits(a, ad, b, bd)) != 0)
				return c;
			al = ad, bl = bd;
		} else {
			for (al = 0; al < an && !isdigit((unsigned char)a[al]);
			    al++)
				;
			for (bl = 0; bl < bn && !isdigit((unsigned char)b[bl]);
			    bl++)
				;
			c = memcmp(a, b, al < bl ? al : bl);
			if (c != 0)
				return sign_of(c);
			if (al != bl)
				return al < bl ? -1 : 1;
		}
		a += al, an -= al;
		b += bl, bn -= bl;
	}
	return (an > 0) - (bn > 0);
}

/*
 * Dot-separated identifiers, SemVer 2.0 section 11.4: numeric ones as
 * numbers and before the others, fewer before more when all else is
 * equal. Identifiers of other characters (not SemVer, but devices send
 * them) compare naturally.
 */
static int
cmp_idents(const char *a, size_t alen, const char *b, size_t blen)
{
	while (alen > 0 && blen > 0) {
		const char *ad = memchr(a, '.', alen);
		const char *bd = memchr(b, '.', blen);
		size_t an = ad ? (size_t)(ad - a) : alen;
		size_t bn = bd ? (size_t)(bd - b) : blen;
		int anum = all_digits(a, an), bnum = all_digits(b, bn);
		int c;

		if (anum && bnum)
			c = cmp_digits(a, an, b, bn);
		else if (anum || bnum)
			c = anum ? -1 : 1;
		else
			c = cmp_natural(a, an, b, bn);
		if (c != 0)
			return c;
		a += an, alen -= an;
		b += bn, blen -= bn;
		/* "1.0.0-a" < "1.0.0-a." : a separator is more */
		if ((alen > 0) != (blen > 0))
			return alen > 0 ? 1 : -1;
		if (alen > 0)
			a++, alen--, b++, blen--;
	}
	return (alen > 0) - (blen > 0);
}

/*
 * Any version string as the key it is ordered by: its numeric core (up to
 * three dot-separated digit runs after an optional 'v'; none when it does
 * not start with a digit), then what follows the core, up to a '+' (build
 * metadata, ignored): nothing (a release), a prerelease ('-' or '~' and
 * identifiers) that comes before the release, or anything else, a
 * post-release (1.2.3.4, 1.0a) that comes after it.
 */
struct version_key {
	const char *core[3];
	size_t core_len[3]; /* 0: the part is missing, which counts as 0 */
	int has_core;
	int rank; /* PRE < RELEASE < POST */
	const char *rest;
	size_t rest_len;
};

enum { RANK_PRE, RANK_RELEASE, RANK_POST };

static void
version_key(const char *s, struct version_key *k)
{
	const char *p = s;
	size_t n;
	int part;

	memset(k, 0, sizeof(*k));
	if ((*p == 'v' || *p == 'V') && isdigit((unsigned char)p[1]))
		p++;
	if (!isdigit((unsigned char)*p)) {
		/* no core: the whole string is its own identifiers */
		k->rank = RANK_POST;
		k->rest = s;
		k->rest_len = strcspn(s, "+");
		return;
	}
	k->has_core = 1;
	for (part = 0; part < 3; part++) {
		n = digit_run(p, strlen(p));
		k->core[part] = p;
		k->core_len[part] = n;
		p += n;
		if (part == 2 || p[0] != '.' || !isdigit((unsigned char)p[1]))
			break;
		p++;
	}
	n = strcspn(p, "+");
	if (n == 0) {
		k->rank = RANK_RELEASE;
	} else if (*p == '-' || *p == '~') {
		k->rank = RANK_PRE;
		k->rest = p + 1;
		k->rest_len = n - 1;
	} else {
		k->rank = RANK_POST;
		/* 1.2.3.4: the identifiers after the core's own dot */
		k->rest = *p == '.' ? p + 1 : p;
		k->rest_len = *p == '.' ? n - 1 : n;
	}
}

/*
 * One total order over every version string, so that what otad offers and
 * what a rollout calls older always agree: comparing keys field by field,
 * each field by a total order, is itself one (reflexive, antisymmetric,
 * transitive; tested by a property fuzzer).
 */
int
semver_compare(const char *a, const char *b)
{
	struct version_key ka, kb;
	int i, c;

	version_key(a, &ka);
	version_key(b, &kb);
	if (ka.has_core != kb.has_core)
		return ka.has_core ? 1 : -1; /* "dev" < "0.0.1" */
	for (i = 0; i < 3 && ka.has_core; i++) {
		const char *x = ka.core_len[i] ? ka.core[i] : "0";
		const char *y = kb.core_len[i] ? kb.core[i] : "0";

		c = cmp_digits(x, ka.core_len[i] ? ka.core_len[i] : 1, y,
		    kb.core_len[i] ? kb.core_len[i] : 1);
		if (c != 0)
			return c;
	}
	if (ka.rank != kb.rank)
		return ka.rank < kb.rank ? -1 : 1;
	return cmp_idents(ka.rest, ka.rest_len, kb.rest, kb.rest_len);
}
