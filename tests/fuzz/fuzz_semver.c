/*
 * libFuzzer property target: semver_compare is one total order. Each input
 * makes three versions; every property a sort and a rollout rely on must
 * hold for them: reflexivity, antisymmetry, transitivity of < and of =.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otad.h"
#include "semver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Bytes into a version: most map onto the characters versions are made
 * of, so random input is mostly version-shaped; the rest stay as they are
 * (any printable byte is a valid version character).
 */
static const char alphabet[] = "0123456789....---++~vVabrcxz_0019";

static size_t
make_version(const uint8_t *data, size_t size, char *out)
{
	size_t i, n = 0;

	for (i = 0; i < size && n < OTAD_VERSION_MAX; i++) {
		uint8_t b = data[i];

		if (b == 0xff)
			break; /* the next version starts */
		if (b < 0x80)
			out[n++] = alphabet[b % (sizeof(alphabet) - 1)];
		else if (b - 0x80 > 0x20 && b - 0x80 < 0x7f)
			out[n++] = (char)(b - 0x80);
	}
	out[n] = '\0';
	return i < size ? i + 1 : i;
}

static int
sign(int v)
{
	return (v > 0) - (v < 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char v[3][OTAD_VERSION_MAX + 1];
	int c[3][3];
	size_t used = 0;
	int i, j, k;

	for (i = 0; i < 3; i++) {
		used += make_version(data + used, size - used, v[i]);
		if (!semver_valid(v[i]))
			return 0;
	}
	for (i = 0; i < 3; i++)
		for (j = 0; j < 3; j++)
			c[i][j] = sign(semver_compare(v[i], v[j]));
	for (i = 0; i < 3; i++) {
		if (c[i][i] != 0)
			abort(); /* reflexive */
		for (j = 0; j < 3; j++) {
			if (c[i][j] != -c[j][i])
				abort(); /* antisymmetric */
			for (k = 0; k < 3; k++)
				/* transitive, for < and = alike */
				if (c[i][j] <= 0 && c[j][k] <= 0 &&
				    c[i][k] > (c[i][j] < 0 || c[j][k] < 0 ?
				    -1 : 0))
					abort();
		}
	}
	return 0;
}
