"""Synthetic ESP32 app images for integration tests, laid out as esptool
writes them: header, segments (the app descriptor opening the first), the
XOR checksum at the end of a 16-byte block, the appended SHA-256."""
import hashlib
import struct

CHIPS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9}


def build(version="1.0.0", project="sensor", chip="esp32",
          secure_version=0, segments=3, seglen=4096, seed=0):
    out = bytearray()
    out += struct.pack("<BBBBIB3sHBHH4sB", 0xE9, segments, 2, 0x20,
                       0x40080000, 0xEE, b"\0\0\0", CHIPS[chip], 0, 0,
                       0xFFFF, b"\0" * 4, 1)
    assert len(out) == 24
    checksum = 0xEF
    for n in range(segments):
        data = bytearray((i * 7 + n + seed) & 0xFF for i in range(seglen))
        if n == 0:
            desc = struct.pack("<II8s32s32s16s16s32s32s", 0xABCD5432,
                               secure_version, b"", version.encode(),
                               project.encode(), b"12:00:00",
                               b"Nov 20 2026", b"v5.3", bytes(32))
            data[:len(desc)] = desc
        out += struct.pack("<II", 0x3F400000 + n * 0x10000, seglen)
        out += data
        for b in data:
            checksum ^= b
    out += bytes(15 - len(out) % 16)
    out.append(checksum)
    out += hashlib.sha256(out).digest()
    return bytes(out)


def app_sha256(image):
    """What a device running this image reports: the appended digest."""
    return image[-32:].hex()
