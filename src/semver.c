/* semver.c: Semantic Versioning 2.0 precedence, dpkg order as the fallback */
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
cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

/* Prerelease precedence, SemVer 2.0 section 11.4 */
static int
cmp_pre(const char *a, size_t alen, const char *b, size_t blen)
{
	while (alen > 0 && blen > 0) {
		const char *ad = memchr(a, '.', alen);
		const char *bd = memchr(b, '.', blen);
		size_t an = ad ? (size_t)(ad - a) : alen;
		size_t bn = bd ? (size_t)(bd - b) : blen;
		int anum = all_digits(a, an), bnum = all_digits(b, bn);
		int c;

		if (anum && bnum) {
			/* compare as numbers without parsing: strip zeros */
			while (an > 1 && *a == '0')
				a++, an--, alen--;
			while (bn > 1 && *b == '0')
				b++, bn--, blen--;
			if (an != bn)
				return an < bn ? -1 : 1;
			c = memcmp(a, b, an);
		} else if (anum || bnum) {
			return anum ? -1 : 1;
		} else {
			c = memcmp(a, b, an < bn ? an : bn);
			if (c == 0 && an != bn)
				c = an < bn ? -1 : 1;
		}
		if (c != 0)
			return c < 0 ? -1 : 1;
		a += an, alen -= an;
		b += bn, blen -= bn;
		if (alen > 0)
			a++, alen--;
		if (blen > 0)
			b++, blen--;
	}
	return cmp_u64(alen > 0, blen > 0);
}

/* dpkg's character weight: '~' < end < letters < other punctuation */
static int
order(int c)
{
	if (isdigit(c))
		return 0;
	if (isalpha(c))
		return c;
	if (c == '~')
		return -1;
	if (c)
		return c + 256;
	return 0;
}

static int
verrevcmp(const char *a, const char *b)
{
	while (*a || *b) {
		int first_diff = 0;

		while ((*a && !isdigit((unsigned char)*a)) ||
		    (*b && !isdigit((unsigned char)*b))) {
			int ac = order((unsigned char)*a);
			int bc = order((unsigned char)*b);

			if (ac != bc)
				return ac < bc ? -1 : 1;
			a++;
			b++;
		}
		while (*a == '0')
			a++;
		while (*b == '0')
			b++;
		while (isdigit((unsigned char)*a) &&
		    isdigit((unsigned char)*b)) {
			if (!first_diff)
				first_diff = *a - *b;
			a++;
			b++;
		}
		if (isdigit((unsigned char)*a))
			return 1;
		if (isdigit((unsigned char)*b))
			return -1;
		if (first_diff)
			return first_diff < 0 ? -1 : 1;
	}
	return 0;
}

int
semver_compare(const char *a, const char *b)
{
	struct semver va, vb;
	int i, c;

	if (parse(a, &va) < 0 || parse(b, &vb) < 0)
		return verrevcmp(a, b);
	for (i = 0; i < 3; i++)
		if ((c = cmp_u64(va.num[i], vb.num[i])) != 0)
			return c;
	/* a version without prerelease outranks one with */
	if (va.pre == NULL || vb.pre == NULL)
		return cmp_u64(va.pre == NULL, vb.pre == NULL);
	return cmp_pre(va.pre, va.pre_len, vb.pre, vb.pre_len);
}
