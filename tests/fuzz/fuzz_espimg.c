/*
 * libFuzzer target: espimg_parse on arbitrary bytes. Whatever comes in, the
 * parser must return (OK or a reason), never read outside the buffer, and
 * an accepted image must be self-consistent.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "espimg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct espimg_info info;
	char why[256];
	/* a copy of exactly size bytes, so ASan sees any overread */
	uint8_t *buf = malloc(size ? size : 1);

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	if (espimg_parse(buf, size, &info, why, sizeof(why)) == OTAD_OK) {
		if (info.image_len > size || info.nsig > ESPIMG_SIG_BLOCKS_MAX)
			abort();
		if (strlen(info.project_name) >= sizeof(info.project_name))
			abort();
	} else if (why[0] == '\0') {
		abort(); /* every refusal names its reason */
	}
	free(buf);
	return 0;
}
