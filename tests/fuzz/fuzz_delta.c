/*
 * libFuzzer target: the delta patch applier and the heatshrink decoder on
 * arbitrary bytes, and the encoder's round trip. Whatever comes in, they
 * must return (a result or a reason), never read or write outside their
 * buffers, and decode(encode(x)) must be x.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "delta.h"
#include "heatshrink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t base[4096];
	uint8_t *buf, *out = NULL, *packed = NULL;
	size_t nout, npacked, i;
	char why[256];

	/* a fixed base with some structure, as images have */
	for (i = 0; i < sizeof(base); i++)
		base[i] = (uint8_t)(i % 251 < 128 ? i * 7 : 0);
	/* a copy of exactly size bytes, so ASan sees any overread */
	if ((buf = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	if (delta_apply(base, sizeof(base), buf, size, &out, &nout, why,
	    sizeof(why)) == OTAD_OK && why[0] == '\0' && nout > (64u << 20))
		abort();
	free(out);
	out = NULL;
	if (heatshrink_decode(buf, size, 1 << 20, &out, &nout) == OTAD_OK &&
	    nout > (1u << 20))
		abort();
	free(out);
	out = NULL;
	if (heatshrink_encode(buf, size, &packed, &npacked) == OTAD_OK) {
		if (heatshrink_decode(packed, npacked, size, &out, &nout) !=
		    OTAD_OK || nout != size || memcmp(out, buf, size) != 0)
			abort();
	}
	free(packed);
	free(out);
	free(buf);
	return 0;
}
