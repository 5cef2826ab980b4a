/* heatshrink.c: LZSS with a 256-byte window, as esp_delta_ota decodes it */
#include <stdlib.h>
#include <string.h>

#include "heatshrink.h"
#include "otad.h"

#define WINDOW (1u << HEATSHRINK_WINDOW_BITS)
#define LOOKAHEAD (1u << HEATSHRINK_LOOKAHEAD_BITS)
#define LITERAL_BITS (1u + 8u)
#define BACKREF_BITS (1u + HEATSHRINK_WINDOW_BITS + HEATSHRINK_LOOKAHEAD_BITS)
#define NO_POS UINT32_MAX

struct bits_out {
	uint8_t *p;
	size_t len;
	unsigned fill; /* bits used in p[len] */
};

static void
put_bits(struct bits_out *b, unsigned value, unsigned count)
{
	while (count-- > 0) {
		if (value >> count & 1)
			b->p[b->len] |= (uint8_t)(0x80u >> b->fill);
		if (++b->fill == 8) {
			b->fill = 0;
			b->len++;
		}
	}
}

/*
 * The longest earlier match for every position (within the window and
 * the lookahead): the closest of the longest, as a decoder counts offsets.
 * Matches of three bytes or more are found through chains of positions
 * whose first three bytes hash alike (short chains: pairs of bytes recur
 * every few dozen bytes in code, triples much less); a match of two,
 * which only counts when there is no longer one, is the closest position
 * with the same two bytes (head2). A shorter prefix of a match is a match
 * at the same offset.
 */
#define HASH3_BITS 18

static unsigned
hash3(const uint8_t *p)
{
	uint32_t v = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];

	return (v * 2654435761u) >> (32 - HASH3_BITS);
}

static void
find_matches(const uint8_t *in, size_t n, uint8_t *mlen, uint16_t *moff,
    uint32_t *prev, uint32_t *head, uint32_t *head2, uint32_t *start,
    uint32_t *end)
{
	size_t i, back = 0, run = 1;

	/* every position's run of one byte: where it starts, and ends */
	for (i = 0; i < n; i++)
		start[i] = i > 0 && in[i - 1] == in[i] ? start[i - 1] :
		    (uint32_t)i;
	for (i = n; i-- > 0;)
		end[i] = i + 1 < n && in[i + 1] == in[i] ? end[i + 1] :
		    (uint32_t)(i + 1);
	for (i = 0; i < (1u << HASH3_BITS); i++)
		head[i] = NO_POS;
	for (i = 0; i < 65536; i++)
		head2[i] = NO_POS;
	for (i = 0; i < n; i++) {
		size_t max = n - i < LOOKAHEAD ? n - i : LOOKAHEAD;
		unsigned h2, h, best = 0, off = 0;
		uint32_t c;

		mlen[i] = 0;
		moff[i] = 0;
		prev[i] = NO_POS;
		/* the run of in[i] before i (back) and from i on (run, <= max) */
		if (i > 0 && in[i - 1] == in[i]) {
			back++;
			run--;
		} else {
			back = 0;
			run = 1;
		}
		if (run < 1)
			run = 1;
		while (run < max && in[i + run] == in[i])
			run++;
		if (run > max)
			run = max;
		if (max < 2)
			continue;
		h2 = (unsigned)in[i] << 8 | in[i + 1];
		if (max >= 3) {
			h = hash3(in + i);
			for (c = head[h]; c != NO_POS && i - c <= WINDOW;
			    c = prev[c]) {
				unsigned l;

				/*
				 * In an earlier run of the byte i's run is of
				 * (a diff of near-identical images is mostly
				 * short runs of zeros), once a match as long as
				 * i's run is had: a position with more of the
				 * byte ahead matches as far as i's run goes, one
				 * with less stops sooner; only the one exactly
				 * `run` before the run's end can go further.
				 * Try it alone and go on from before the run.
				 */
				if (run >= 3 && run < max && best >= run &&
				    in[c] == in[i] && end[c] - c >= 3 &&
				    end[c] <= i) {
					uint32_t only = end[c] - (uint32_t)run;

					if (end[c] - start[c] >= run &&
					    i - only <= WINDOW &&
					    in[only + best] == in[i + best] &&
					    (l = (unsigned)otad_common_prefix(in +
					    only, in + i, max)) > best) {
						best = l;
						off = (unsigned)(i - only);
						if (l == max)
							break;
					}
					c = start[c];
					continue;
				}
				/* a candidate that misses at best cannot beat it */
				if (in[c + best] != in[i + best])
					continue;
				if ((l = (unsigned)otad_common_prefix(in + c, in + i, max)) >
				    best && l >= 3) {
					best = l;
					off = (unsigned)(i - c);
					if (l == max)
						break;
				}
				/*
				 * Inside a run of one byte (zeros, mostly, in a
				 * diff), every earlier position of the run matches
				 * exactly as far as the run goes from i, no
				 * further: the closest had it; go on from before
				 * the run (its positions are consecutive in the
				 * chain: they all start with three of the byte).
				 */
				if (c == i - 1 && back > 0 && run >= 3 && run < max)
					c = (uint32_t)(i - back);
			}
			prev[i] = head[h];
			head[h] = (uint32_t)i;
		}
		if (best == 0 && head2[h2] != NO_POS && i - head2[h2] <= WINDOW) {
			best = 2;
			off = (unsigned)(i - head2[h2]);
		}
		head2[h2] = (uint32_t)i;
		mlen[i] = (uint8_t)best;
		moff[i] = (uint16_t)off;
	}
}

enum otad_err
heatshrink_encode(const uint8_t *in, size_t n, uint8_t **out, size_t *outlen)
{
	uint8_t *mlen = NULL, *take = NULL;
	uint16_t *moff = NULL;
	uint32_t *prev = NULL, *head = NULL, *head2 = NULL, *cost = NULL;
	uint32_t *start = NULL, *end = NULL;
	uint32_t *dq = NULL;
	struct bits_out b = {0};
	enum otad_err rc = OTAD_ERR_NOMEM;
	size_t i, dq_head, dq_tail;

	*out = NULL;
	*outlen = 0;
	/* at most 9 bits a byte, and a byte of padding */
	if ((b.p = calloc(n + n / 8 + 2, 1)) == NULL ||
	    (mlen = malloc(n + 1)) == NULL || (take = malloc(n + 1)) == NULL ||
	    (moff = malloc((n + 1) * sizeof(*moff))) == NULL ||
	    (prev = malloc((n + 1) * sizeof(*prev))) == NULL ||
	    (head = malloc(((size_t)1 << HASH3_BITS) * sizeof(*head))) ==
	    NULL || (head2 = malloc(65536 * sizeof(*head2))) == NULL ||
	    (cost = malloc((n + 1) * sizeof(*cost))) == NULL ||
	    (dq = malloc((n + 2) * sizeof(*dq))) == NULL ||
	    (start = malloc((n + 1) * sizeof(*start))) == NULL ||
	    (end = malloc((n + 1) * sizeof(*end))) == NULL)
		goto done;
	find_matches(in, n, mlen, moff, prev, head, head2, start, end);
	/*
	 * Cheapest parse, from the end: cost[i] = bits to code in[i..]. A
	 * back-reference costs the same whatever its length, so the best one
	 * from i leads to the cheapest of cost[i + 2 .. i + mlen[i]]: a
	 * window that slides left as i does, since a match at i of length L
	 * is one of L - 1 at i + 1 (mlen is clamped so, a prefix of a match
	 * being a match). Its minimum is kept in a deque: indices rising,
	 * costs falling, the cheapest (the shortest such length) last.
	 */
	cost[n] = 0;
	dq_head = dq_tail = n + 1; /* empty; it grows to the left */
	for (i = n; i-- > 0;) {
		uint32_t best = LITERAL_BITS + cost[i + 1];
		unsigned pick = 1;

		/* (mlen says 0 for a match of one byte) */
		if (i + 1 < n && mlen[i] > (mlen[i + 1] ? mlen[i + 1] : 1u) + 1u)
			mlen[i] = (uint8_t)((mlen[i + 1] ? mlen[i + 1] : 1u) + 1u);
		if (i + 2 <= n) {
			/* a later, no cheaper index is never the minimum again */
			while (dq_head < dq_tail &&
			    cost[dq[dq_head]] >= cost[i + 2])
				dq_head++;
			dq[--dq_head] = (uint32_t)(i + 2);
		}
		while (mlen[i] >= 2 && dq_head < dq_tail &&
		    dq[dq_tail - 1] > i + mlen[i])
			dq_tail--;
		if (mlen[i] >= 2 && dq_head < dq_tail &&
		    BACKREF_BITS + cost[dq[dq_tail - 1]] < best) {
			best = BACKREF_BITS + cost[dq[dq_tail - 1]];
			pick = (unsigned)(dq[dq_tail - 1] - i);
		}
		cost[i] = best;
		take[i] = (uint8_t)(pick == 1 ? 0 : pick - 1);
	}
	for (i = 0; i < n;) {
		if (take[i] == 0) {
			put_bits(&b, 1, 1);
			put_bits(&b, in[i], 8);
			i++;
		} else {
			put_bits(&b, 0, 1);
			put_bits(&b, moff[i] - 1u, HEATSHRINK_WINDOW_BITS);
			put_bits(&b, take[i], HEATSHRINK_LOOKAHEAD_BITS);
			i += (size_t)take[i] + 1;
		}
	}
	*outlen = b.len + (b.fill > 0);
	*out = b.p;
	b.p = NULL;
	rc = OTAD_OK;
done:
	free(b.p);
	free(mlen);
	free(take);
	free(moff);
	free(prev);
	free(head);
	free(head2);
	free(cost);
	free(dq);
	free(start);
	free(end);
	return rc;
}

struct bits_in {
	const uint8_t *p;
	size_t n, pos; /* pos in bits */
};

/* count bits, or -1 when fewer are left */
static long
get_bits(struct bits_in *b, unsigned count)
{
	unsigned long v = 0;

	if (b->n * 8 - b->pos < count)
		return -1;
	while (count-- > 0) {
		v = v << 1 | (unsigned)(b->p[b->pos / 8] >> (7 - b->pos % 8) & 1);
		b->pos++;
	}
	return (long)v;
}

enum otad_err
heatshrink_decode(const uint8_t *in, size_t n, size_t max, uint8_t **out,
    size_t *outlen)
{
	struct bits_in b = {in, n, 0};
	size_t cap = n * 4 + 64, len = 0, left;
	uint8_t *o, *grown;
	long flag, v, idx = 0, cnt;

	*out = NULL;
	*outlen = 0;
	if (cap > max)
		cap = max + 1;
	if ((o = malloc(cap ? cap : 1)) == NULL)
		return OTAD_ERR_NOMEM;
	for (;;) {
		size_t start = b.pos, k, need;

		if ((flag = get_bits(&b, 1)) < 0)
			break;
		if (flag == 1) {
			if ((v = get_bits(&b, 8)) < 0) {
				b.pos = start;
				break;
			}
			need = 1;
		} else {
			if ((idx = get_bits(&b, HEATSHRINK_WINDOW_BITS)) < 0 ||
			    (cnt = get_bits(&b, HEATSHRINK_LOOKAHEAD_BITS)) < 0) {
				b.pos = start;
				break;
			}
			need = (size_t)cnt + 1;
			v = 0;
		}
		if (len + need > max)
			goto bad;
		if (len + need > cap) {
			size_t ncap = cap * 2 > len + need ? cap * 2 : len + need;

			if (ncap > max)
				ncap = max;
			if ((grown = realloc(o, ncap)) == NULL) {
				free(o);
				return OTAD_ERR_NOMEM;
			}
			o = grown;
			cap = ncap;
		}
		if (flag == 1) {
			o[len++] = (uint8_t)v;
			continue;
		}
		for (k = 0; k < need; k++, len++) {
			/* before the start the window holds zeros */
			size_t back = (size_t)idx + 1;

			o[len] = len >= back ? o[len - back] : 0;
		}
	}
	/* what is left is the last byte's padding: under 8 zero bits */
	left = n * 8 - b.pos;
	if (left >= 8 || (left > 0 && (in[n - 1] & ((1u << left) - 1)) != 0))
		goto bad;
	*out = o;
	*outlen = len;
	return OTAD_OK;
bad:
	free(o);
	return OTAD_ERR_INVALID;
}
