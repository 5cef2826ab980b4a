/*
 * delta.h: delta updates that ESP32 devices apply with Espressif's
 * esp_delta_ota component.
 *
 * A patch is a detools "sequential" patch: a header byte (patch type 0,
 * compression 4 = heatshrink), the target's size, then one heatshrink
 * stream (its first byte says window 8, lookahead 7) of: the data-format
 * size (0), and records of diff bytes (added to the base's bytes), extra
 * bytes (new), and an adjustment of the base position. Sizes are detools'
 * variable-length integers: 6 bits and a sign in the first byte, 7 bits in
 * each next one, the top bit saying another follows.
 *
 * What a device receives is the container esp_delta_ota's https example
 * reads: 64 bytes (magic 0xfccdde10 little-endian, the SHA-256 the device
 * reports for its running image, zeros) and the patch.
 *
 * Patches are created bsdiff-style: a suffix array of the base
 * (libdivsufsort), the longest matches extended both ways, differences
 * kept as bytes that compress to almost nothing.
 */
#ifndef DELTA_H
#define DELTA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "otad.h"

#define DELTA_MAGIC 0xfccdde10u
#define DELTA_HEADER_SIZE 64

/* A detools size: bytes written into out (at most 10). */
size_t delta_pack_size(int64_t value, uint8_t out[10]);
/*
 * Read one from p (len bytes): bytes used, or 0 when it is cut short or
 * too large.
 */
size_t delta_unpack_size(const uint8_t *p, size_t len, int64_t *value);

/*
 * Create the patch (bare detools, heatshrink) from base to target; caller
 * frees *patch. OTAD_ERR_NOMEM only.
 */
enum otad_err delta_create(const uint8_t *base, size_t nbase,
    const uint8_t *target, size_t ntarget, uint8_t **patch, size_t *npatch);
/*
 * The same, given up with OTAD_ERR_SHUTDOWN once *stop is set (a daemon
 * stopping does not wait for a patch it will not serve).
 */
enum otad_err delta_create_until(const uint8_t *base, size_t nbase,
    const uint8_t *target, size_t ntarget, uint8_t **patch, size_t *npatch,
    const atomic_int *stop);

/*
 * Apply a bare detools sequential patch (heatshrink or uncompressed) to
 * base; caller frees *out. OTAD_ERR_INVALID with one line in why for a
 * patch that is corrupt, truncated, of another kind, reads outside the
 * base or has anything after its end.
 */
enum otad_err delta_apply(const uint8_t *base, size_t nbase,
    const uint8_t *patch, size_t npatch, uint8_t **out, size_t *nout,
    char *why, size_t whylen);

/* The container header for a base whose appended digest is base_sha256. */
void delta_container_header(const uint8_t base_sha256[32],
    uint8_t out[DELTA_HEADER_SIZE]);

/*
 * 1 when p starts with a container header (its base digest copied out),
 * 0 when it does not (a bare patch).
 */
int delta_container_parse(const uint8_t *p, size_t n, uint8_t base_sha256[32]);

#endif
