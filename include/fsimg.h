/*
 * fsimg.h: what kind of image an artifact is, and the checks a
 * filesystem image gets before any device sees it.
 *
 * Arduino's HTTPUpdate names the partition it will write in x-ESP32-mode:
 * "sketch" (the app), "spiffs", "littlefs", "fatfs", or "flashfs" (3.x
 * updateFs: whichever filesystem partition the device has). It checks the
 * 0xE9 magic only in sketch mode, so an app image sent to a filesystem
 * request would be written into the filesystem partition: every artifact
 * carries its kind, and a request gets only its own.
 *
 * Pure functions; thread-safe.
 */
#ifndef FSIMG_H
#define FSIMG_H

#include <stddef.h>
#include <stdint.h>

#include "otad.h"

enum artifact_kind {
	KIND_APP = 0, /* an ESP-IDF app image (espimg.h); the default */
	KIND_SPIFFS,
	KIND_LITTLEFS,
	KIND_FATFS,
	KIND_COUNT,
	KIND_ANY_FS = KIND_COUNT, /* a request: any filesystem kind */
};

/* Flash is erased and written in sectors; images are whole sectors. */
#define FSIMG_SECTOR 4096

/* "app", "spiffs", "littlefs", "fatfs" */
const char *fsimg_kind_name(enum artifact_kind kind);
/* The kind of a name; -1 if none. */
int fsimg_kind_parse(const char *name);

/*
 * The kind an x-ESP32-mode value asks for: "sketch" is KIND_APP,
 * "flashfs" KIND_ANY_FS; -1 for a mode otad does not serve.
 */
int fsimg_kind_of_mode(const char *mode);

/*
 * Check a whole filesystem image of kind (not KIND_APP): never an app
 * image, whole flash sectors, and for littlefs a superblock (the
 * "littlefs" magic in block 0 or 1). OTAD_ERR_NOT_IMAGE with the reason
 * in why when it is not one.
 */
enum otad_err fsimg_check(enum artifact_kind kind, const uint8_t *buf,
    size_t len, char *why, size_t whylen);

#endif
