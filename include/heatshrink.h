/*
 * heatshrink.h: the heatshrink LZSS format with a 2^8-byte window and a
 * 2^7-byte lookahead, the only one esp_delta_ota's decoder is built for.
 *
 * The stream is bits, most significant first: 1 and 8 bits is a literal
 * byte; 0, 8 bits of (offset - 1) and 7 bits of (count - 1) copies count
 * bytes from offset bytes back (byte by byte, so a copy may overlap what
 * it writes; before the start the window reads as zeros). The last byte is
 * padded with zero bits. Our own encoder and decoder, whole buffers in
 * memory (images are a few MB).
 */
#ifndef HEATSHRINK_H
#define HEATSHRINK_H

#include <stddef.h>
#include <stdint.h>

#include "otad.h"

#define HEATSHRINK_WINDOW_BITS 8
#define HEATSHRINK_LOOKAHEAD_BITS 7

/*
 * Compress in (n bytes) into *out (malloc'd, caller frees), choosing the
 * cheapest parse rather than the greedy one. OTAD_ERR_NOMEM only.
 */
enum otad_err heatshrink_encode(const uint8_t *in, size_t n, uint8_t **out,
    size_t *outlen);

/*
 * Decompress in into *out (malloc'd). More than max bytes of output, or
 * more than 7 bits (or non-zero bits) left after the last symbol, is
 * OTAD_ERR_INVALID: a stream is never trusted to say how large it is.
 */
enum otad_err heatshrink_decode(const uint8_t *in, size_t n, size_t max,
    uint8_t **out, size_t *outlen);

#endif
