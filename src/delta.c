/* delta.c: detools sequential patches, created and applied, and their
 * esp_delta_ota container */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <divsufsort.h>

#include "delta.h"
#include "heatshrink.h"

#define PATCH_SEQUENTIAL 0
#define COMPRESSION_NONE 0
#define COMPRESSION_HEATSHRINK 4
/* the heatshrink stream's own first byte: window 8, lookahead 7 */
#define HEATSHRINK_PARAMS                                                      \
	(uint8_t)((HEATSHRINK_WINDOW_BITS - 4) << 4 |                          \
	    (HEATSHRINK_LOOKAHEAD_BITS - 3))
#define TARGET_MAX (64u << 20) /* no ESP32 image comes near this */
/* a new match must beat the current alignment by this many bytes */
#define MATCH_MARGIN 8
/*
 * Extending a match over a stretch pays while its matching bytes are worth
 * this many mismatches each. bsdiff uses 2 (more than half must match):
 * bzip2 codes zeros and new bytes alike cheaply. In heatshrink a run of
 * zero diff bytes costs 16 bits per 128 and a new byte 9 bits, so zeros
 * are worth keeping even among many mismatches; 4 made the WLED patches
 * 1-2% smaller than 2 (and 8 no smaller).
 */
#define EXTEND_WEIGHT 4

size_t
delta_pack_size(int64_t value, uint8_t out[10])
{
	uint64_t v = value < 0 ? (uint64_t)-value : (uint64_t)value;
	size_t n = 1;

	if (value == 0) {
		out[0] = 0;
		return 1;
	}
	out[0] = (uint8_t)(0x80 | (value < 0 ? 0x40 : 0) | (v & 0x3f));
	for (v >>= 6; v > 0; v >>= 7)
		out[n++] = (uint8_t)(0x80 | (v & 0x7f));
	out[n - 1] &= 0x7f;
	return n;
}

size_t
delta_unpack_size(const uint8_t *p, size_t len, int64_t *value)
{
	uint64_t v;
	unsigned shift = 6;
	size_t n = 1;

	if (len == 0)
		return 0;
	v = p[0] & 0x3f;
	if (p[0] & 0x80) {
		do {
			if (n == len || shift > 55)
				return 0;
			v |= (uint64_t)(p[n] & 0x7f) << shift;
			shift += 7;
		} while (p[n++] & 0x80);
	}
	*value = (p[0] & 0x40) ? -(int64_t)v : (int64_t)v;
	return n;
}

/* ---- applying ---- */

struct reader {
	const uint8_t *p;
	size_t n, pos;
};

static int
read_size(struct reader *r, int64_t *v)
{
	size_t used = delta_unpack_size(r->p + r->pos, r->n - r->pos, v);

	r->pos += used;
	return used > 0 ? 0 : -1;
}

static enum otad_err
fail(char *why, size_t whylen, const char *msg)
{
	snprintf(why, whylen, "%s", msg);
	return OTAD_ERR_INVALID;
}

/* The records of a decompressed stream, into to (to_size bytes). */
static enum otad_err
apply_records(const uint8_t *base, size_t nbase, struct reader *r,
    uint8_t *to, size_t to_size, char *why, size_t whylen)
{
	int64_t df, diff, extra, adjust, from = 0;
	size_t t = 0, k;

	if (read_size(r, &df) < 0)
		return fail(why, whylen, "patch is truncated");
	if (df != 0)
		return fail(why, whylen, "data-format patches are not "
		    "supported");
	while (t < to_size) {
		if (read_size(r, &diff) < 0)
			return fail(why, whylen, "patch is truncated");
		if (diff < 0 || (uint64_t)diff > to_size - t ||
		    (uint64_t)diff > r->n - r->pos)
			return fail(why, whylen, "corrupt patch: bad diff "
			    "size");
		if (from < 0 || (uint64_t)from + (uint64_t)diff > nbase)
			return fail(why, whylen, "corrupt patch: reads outside "
			    "the base image (wrong base?)");
		for (k = 0; k < (size_t)diff; k++)
			to[t + k] = (uint8_t)(base[from + (int64_t)k] +
			    r->p[r->pos + k]);
		r->pos += (size_t)diff;
		t += (size_t)diff;
		from += diff;
		if (read_size(r, &extra) < 0)
			return fail(why, whylen, "patch is truncated");
		if (extra < 0 || (uint64_t)extra > to_size - t ||
		    (uint64_t)extra > r->n - r->pos)
			return fail(why, whylen, "corrupt patch: bad extra "
			    "size");
		memcpy(to + t, r->p + r->pos, (size_t)extra);
		r->pos += (size_t)extra;
		t += (size_t)extra;
		/* the last record's adjustment may be left out */
		if (t == to_size && r->pos == r->n)
			break;
		if (read_size(r, &adjust) < 0)
			return fail(why, whylen, "patch is truncated");
		if (adjust > (int64_t)TARGET_MAX || adjust < -(int64_t)TARGET_MAX)
			return fail(why, whylen, "corrupt patch: bad "
			    "adjustment");
		from += adjust;
	}
	if (r->pos != r->n)
		return fail(why, whylen, "corrupt patch: data after its end");
	return OTAD_OK;
}

enum otad_err
delta_apply(const uint8_t *base, size_t nbase, const uint8_t *patch,
    size_t npatch, uint8_t **out, size_t *nout, char *why, size_t whylen)
{
	struct reader h = {patch, npatch, 0}, r;
	uint8_t *stream = NULL, *to;
	size_t nstream;
	int64_t to_size;
	enum otad_err rc;

	*out = NULL;
	*nout = 0;
	if (npatch < 2)
		return fail(why, whylen, "patch is truncated");
	if ((patch[0] >> 4 & 7) != PATCH_SEQUENTIAL || (patch[0] & 0x80))
		return fail(why, whylen, "not a detools sequential patch");
	if ((patch[0] & 0xf) != COMPRESSION_HEATSHRINK &&
	    (patch[0] & 0xf) != COMPRESSION_NONE)
		return fail(why, whylen, "patch compression is not heatshrink");
	h.pos = 1;
	if (read_size(&h, &to_size) < 0 || to_size < 0)
		return fail(why, whylen, "patch is truncated");
	if (to_size > (int64_t)TARGET_MAX)
		return fail(why, whylen, "patch target is too large");
	if ((to = malloc(to_size > 0 ? (size_t)to_size : 1)) == NULL)
		return OTAD_ERR_NOMEM;
	if (to_size == 0) {
		rc = h.pos == npatch ? OTAD_OK : fail(why, whylen,
		    "corrupt patch: data after its end");
		goto done;
	}
	if ((patch[0] & 0xf) == COMPRESSION_HEATSHRINK) {
		if (h.pos == npatch) {
			rc = fail(why, whylen, "patch is truncated");
			goto done;
		}
		if (patch[h.pos] != HEATSHRINK_PARAMS) {
			rc = fail(why, whylen, "heatshrink window and lookahead "
			    "are not 8 and 7");
			goto done;
		}
		/* records carry at most the target, and a few bytes each */
		rc = heatshrink_decode(patch + h.pos + 1, npatch - h.pos - 1,
		    (size_t)to_size * 3 + 4096, &stream, &nstream);
		if (rc == OTAD_ERR_INVALID)
			fail(why, whylen, "corrupt patch: bad heatshrink data");
		if (rc != OTAD_OK)
			goto done;
		r = (struct reader){stream, nstream, 0};
	} else {
		r = (struct reader){patch + h.pos, npatch - h.pos, 0};
	}
	rc = apply_records(base, nbase, &r, to, (size_t)to_size, why, whylen);
done:
	free(stream);
	if (rc != OTAD_OK) {
		free(to);
		return rc;
	}
	*out = to;
	*nout = (size_t)to_size;
	return OTAD_OK;
}

/* ---- creating ---- */

struct buf {
	uint8_t *p;
	size_t len, cap;
	int failed;
};

static void
put(struct buf *b, const void *data, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n > b->cap) {
		size_t cap = (b->cap + n) * 2;
		uint8_t *grown = realloc(b->p, cap);

		if (grown == NULL) {
			b->failed = 1;
			return;
		}
		b->p = grown;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void
put_size(struct buf *b, int64_t v)
{
	uint8_t s[10];

	put(b, s, delta_pack_size(v, s));
}

static size_t
match_len(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
	return otad_common_prefix(a, b, na < nb ? na : nb);
}

/* The longest match of to (n bytes) in base, by binary search of sa. */
static size_t
longest(const saidx_t *sa, const uint8_t *base, size_t nbase,
    const uint8_t *to, size_t n, saidx_t st, saidx_t en, int64_t *pos)
{
	while (en - st >= 2) {
		saidx_t x = st + (en - st) / 2;
		size_t left = nbase - (size_t)sa[x];

		if (memcmp(base + sa[x], to, left < n ? left : n) < 0)
			st = x;
		else
			en = x;
	}
	{
		size_t a = match_len(base + sa[st], nbase - (size_t)sa[st], to,
		    n);
		size_t b = match_len(base + sa[en], nbase - (size_t)sa[en], to,
		    n);

		*pos = a > b ? sa[st] : sa[en];
		return a > b ? a : b;
	}
}

/*
 * The suffix array's index by first two bytes: bucket[k] is the first
 * suffix whose two bytes are k (a one-byte suffix, the last, counts as
 * its byte and 0, where it sorts), bucket[65536] = nbase. NULL when out of
 * memory.
 */
static saidx_t *
two_byte_buckets(const saidx_t *sa, const uint8_t *base, size_t nbase)
{
	saidx_t *bucket = malloc(65537 * sizeof(*bucket));
	size_t j = 0;
	unsigned k;

	if (bucket == NULL)
		return NULL;
	for (k = 0; k <= 65536; k++) {
		while (j < nbase) {
			size_t s = (size_t)sa[j];
			unsigned key = (unsigned)base[s] << 8 |
			    (s + 1 < nbase ? base[s + 1] : 0);

			if (key >= k)
				break;
			j++;
		}
		bucket[k] = (saidx_t)j;
	}
	return bucket;
}

/*
 * longest() over the whole array, started within the bucket of to's first
 * two bytes and the suffix either side of it: a binary search ends on the
 * same pair of suffixes from any range holding its boundary, and the
 * boundary lies there. Its first steps, the ones that miss the CPU's
 * caches across a megabyte of base, are skipped.
 */
static size_t
longest_from(const saidx_t *sa, const saidx_t *bucket, const uint8_t *base,
    size_t nbase, const uint8_t *to, size_t n, int64_t *pos)
{
	saidx_t st = 0, en = (saidx_t)nbase - 1;

	if (bucket != NULL && n >= 2) {
		unsigned k = (unsigned)to[0] << 8 | to[1];

		if (bucket[k + 1] > bucket[k]) {
			st = bucket[k] > 0 ? bucket[k] - 1 : 0;
			en = bucket[k + 1] < (saidx_t)nbase ? bucket[k + 1] :
			    (saidx_t)nbase - 1;
		}
	}
	return longest(sa, base, nbase, to, n, st, en, pos);
}

/* base at at matches to for len bytes too */
static int
keeps_alignment(const uint8_t *base, size_t nbase, const uint8_t *to,
    size_t n, int64_t at, size_t len)
{
	return at >= 0 && at < (int64_t)nbase &&
	    match_len(base + at, nbase - (size_t)at, to, n) >= len;
}

/*
 * Percival's bsdiff scan: find a match that beats continuing the last
 * one by 8 bytes, then split the stretch between matches into the last
 * match extended forwards (diff), new bytes (extra), and the next match
 * extended backwards, where the extensions pay for themselves.
 */
static void
diff_records(const saidx_t *sa, const saidx_t *bucket, const uint8_t *old,
    size_t nold, const uint8_t *new, size_t nnew, struct buf *out,
    const atomic_int *stop)
{
	size_t scan = 0, len = 0, lastscan = 0, scsc;
	int64_t pos = 0, lastpos = 0, lastoffset = 0;
	uint8_t *db = NULL, *grown;

	while (scan < nnew && !out->failed) {
		int64_t oldscore = 0;

		if (stop != NULL && atomic_load_explicit(stop,
		    memory_order_relaxed)) {
			out->failed = 1;
			break;
		}

		for (scsc = scan += len; scan < nnew; scan++) {
			len = nold > 0 ? longest_from(sa, bucket, old, nold,
			    new + scan, nnew - scan, &pos) : 0;
			/* as long at the last alignment: keep to it, so the
			 * diff bytes between matches stay zeros */
			if (len > 0 && keeps_alignment(old, nold, new + scan,
			    nnew - scan, (int64_t)scan + lastoffset, len))
				pos = (int64_t)scan + lastoffset;
			for (; scsc < scan + len; scsc++)
				if ((int64_t)scsc + lastoffset < (int64_t)nold &&
				    old[(int64_t)scsc + lastoffset] == new[scsc])
					oldscore++;
			if ((len == (size_t)oldscore && len != 0) ||
			    (int64_t)len > oldscore + MATCH_MARGIN)
				break;
			if ((int64_t)scan + lastoffset < (int64_t)nold &&
			    old[(int64_t)scan + lastoffset] == new[scan])
				oldscore--;
		}
		if ((int64_t)len != oldscore || scan == nnew) {
			int64_t s = 0, sf = 0, lenf = 0, lenb = 0, sb, i;

			for (i = 0; (int64_t)lastscan + i < (int64_t)scan &&
			    lastpos + i < (int64_t)nold;) {
				if (old[lastpos + i] == new[(int64_t)lastscan + i])
					s++;
				i++;
				if (s * EXTEND_WEIGHT - i > sf * EXTEND_WEIGHT - lenf) {
					sf = s;
					lenf = i;
				}
			}
			if (scan < nnew) {
				s = 0;
				sb = 0;
				for (i = 1; (int64_t)scan >= (int64_t)lastscan + i &&
				    pos >= i; i++) {
					if (old[pos - i] == new[(int64_t)scan - i])
						s++;
					if (s * EXTEND_WEIGHT - i > sb * EXTEND_WEIGHT - lenb) {
						sb = s;
						lenb = i;
					}
				}
			}
			if ((int64_t)lastscan + lenf > (int64_t)scan - lenb) {
				int64_t overlap = ((int64_t)lastscan + lenf) -
				    ((int64_t)scan - lenb), ss = 0, lens = 0;

				s = 0;
				for (i = 0; i < overlap; i++) {
					if (new[(int64_t)lastscan + lenf - overlap +
					    i] == old[lastpos + lenf - overlap + i])
						s++;
					if (new[(int64_t)scan - lenb + i] ==
					    old[pos - lenb + i])
						s--;
					if (s > ss) {
						ss = s;
						lens = i + 1;
					}
				}
				lenf += lens - overlap;
				lenb -= lens;
			}
			if ((grown = realloc(db, (size_t)lenf + 1)) == NULL) {
				out->failed = 1;
				break;
			}
			db = grown;
			for (i = 0; i < lenf; i++)
				db[i] = (uint8_t)(new[(int64_t)lastscan + i] -
				    old[lastpos + i]);
			put_size(out, lenf);
			put(out, db, (size_t)lenf);
			put_size(out, ((int64_t)scan - lenb) -
			    ((int64_t)lastscan + lenf));
			put(out, new + lastscan + lenf, (size_t)(((int64_t)scan -
			    lenb) - ((int64_t)lastscan + lenf)));
			put_size(out, (pos - lenb) - (lastpos + lenf));
			lastscan = (size_t)((int64_t)scan - lenb);
			lastpos = pos - lenb;
			lastoffset = pos - (int64_t)scan;
		}
	}
	free(db);
}

enum otad_err
delta_create(const uint8_t *base, size_t nbase, const uint8_t *target,
    size_t ntarget, uint8_t **patch, size_t *npatch)
{
	return delta_create_until(base, nbase, target, ntarget, patch, npatch,
	    NULL);
}

enum otad_err
delta_create_until(const uint8_t *base, size_t nbase, const uint8_t *target,
    size_t ntarget, uint8_t **patch, size_t *npatch, const atomic_int *stop)
{
	struct buf records = {0}, out = {0};
	saidx_t *sa = NULL, *bucket = NULL;
	uint8_t *packed = NULL, head[12];
	size_t npacked, nhead = 0;
	enum otad_err rc = OTAD_ERR_NOMEM;

	*patch = NULL;
	*npatch = 0;
	head[nhead++] = PATCH_SEQUENTIAL << 4 | COMPRESSION_HEATSHRINK;
	nhead += delta_pack_size((int64_t)ntarget, head + nhead);
	put(&out, head, nhead);
	if (ntarget > 0) {
		if (nbase > 0 && ((sa = malloc(nbase * sizeof(*sa))) == NULL ||
		    divsufsort(base, sa, (saidx_t)nbase) != 0 ||
		    (bucket = two_byte_buckets(sa, base, nbase)) == NULL))
			goto done;
		put_size(&records, 0); /* no data format */
		diff_records(sa, bucket, base, nbase, target, ntarget, &records,
		    stop);
		if (stop != NULL && atomic_load(stop)) {
			rc = OTAD_ERR_SHUTDOWN;
			goto done;
		}
		if (records.failed || heatshrink_encode(records.p,
		    records.len, &packed, &npacked) != OTAD_OK)
			goto done;
		head[0] = HEATSHRINK_PARAMS;
		put(&out, head, 1);
		put(&out, packed, npacked);
	}
	if (out.failed)
		goto done;
	*patch = out.p;
	*npatch = out.len;
	out.p = NULL;
	rc = OTAD_OK;
done:
	free(sa);
	free(bucket);
	free(records.p);
	free(packed);
	free(out.p);
	return rc;
}

/* ---- the container ---- */

void
delta_container_header(const uint8_t base_sha256[32],
    uint8_t out[DELTA_HEADER_SIZE])
{
	memset(out, 0, DELTA_HEADER_SIZE);
	out[0] = DELTA_MAGIC & 0xff;
	out[1] = DELTA_MAGIC >> 8 & 0xff;
	out[2] = DELTA_MAGIC >> 16 & 0xff;
	out[3] = DELTA_MAGIC >> 24 & 0xff;
	memcpy(out + 4, base_sha256, 32);
}

int
delta_container_parse(const uint8_t *p, size_t n, uint8_t base_sha256[32])
{
	if (n < DELTA_HEADER_SIZE || p[0] != (DELTA_MAGIC & 0xff) ||
	    p[1] != (DELTA_MAGIC >> 8 & 0xff) ||
	    p[2] != (DELTA_MAGIC >> 16 & 0xff) || p[3] != DELTA_MAGIC >> 24)
		return 0;
	memcpy(base_sha256, p + 4, 32);
	return 1;
}
