/* range.c: one byte range out of a Range header, or the whole file */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "range.h"

/* Digits at *s into *v; 1 ok, 0 none, -1 overflow (v = UINT64_MAX). */
static int
number(const char **s, uint64_t *v)
{
	const char *p = *s;
	int overflow = 0;

	*v = 0;
	if (!isdigit((unsigned char)*p))
		return 0;
	for (; isdigit((unsigned char)*p); p++) {
		if (*v > (UINT64_MAX - 9) / 10)
			overflow = 1;
		else
			*v = *v * 10 + (uint64_t)(*p - '0');
	}
	*s = p;
	if (overflow)
		*v = UINT64_MAX;
	return overflow ? -1 : 1;
}

static const char *
skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

void
range_parse(const char *header, const char *if_range, const char *etag,
    uint64_t total, struct range *out)
{
	const char *p;
	uint64_t a, b;
	int ra, rb;

	out->kind = RANGE_NONE;
	out->start = 0;
	out->len = total;
	if (header == NULL || total == 0)
		return;
	/* a validator that is not ours (or a date): the file may differ */
	if (if_range != NULL && strcmp(if_range, etag) != 0)
		return;
	p = skip_ws(header);
	if (strncasecmp(p, "bytes", 5) != 0)
		return;
	p = skip_ws(p + 5);
	if (*p++ != '=')
		return;
	p = skip_ws(p);
	if (strchr(p, ',') != NULL)
		return; /* several ranges: the whole file */
	if (*p == '-') {
		/* suffix: the last b bytes */
		p++;
		if ((rb = number(&p, &b)) == 0 || *skip_ws(p) != '\0')
			return;
		if (b == 0) {
			out->kind = RANGE_UNSATISFIABLE;
			return;
		}
		if (b > total)
			b = total;
		out->kind = RANGE_PARTIAL;
		out->start = total - b;
		out->len = b;
		return;
	}
	if ((ra = number(&p, &a)) == 0)
		return;
	p = skip_ws(p);
	if (*p++ != '-')
		return;
	p = skip_ws(p);
	rb = number(&p, &b);
	if (*skip_ws(p) != '\0')
		return;
	if (rb != 0 && b < a)
		return; /* invalid: ignored, as the RFC says */
	if (ra < 0 || a >= total) {
		out->kind = RANGE_UNSATISFIABLE;
		return;
	}
	/* open-ended, or an end past the last byte: up to the end */
	if (rb == 0 || b >= total)
		b = total - 1;
	out->kind = RANGE_PARTIAL;
	out->start = a;
	out->len = b - a + 1;
}

int
range_continues(const char *header)
{
	struct range r;

	/* against a file of unknown size: only where the range starts */
	range_parse(header, NULL, "", UINT64_MAX, &r);
	return r.kind == RANGE_PARTIAL && r.start > 0;
}
