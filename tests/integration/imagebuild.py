"""Synthetic ESP32 app images for integration tests, laid out as esptool
writes them: header, segments (the app descriptor opening the first), the
XOR checksum at the end of a 16-byte block, the appended SHA-256."""
import hashlib
import struct
import subprocess
import zlib

CHIPS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c2": 12,
         "esp32c6": 13}


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


def sign_sbv2(image, key_pem):
    """Append a Secure Boot v2 signature sector (one RSA-3072-PSS block) as
    espsecure sign_data --version 2 does, signing with the openssl CLI."""
    body = image + b"\xff" * (-len(image) % 4096)
    digest = hashlib.sha256(body).digest()
    sig = subprocess.run(
        ["openssl", "pkeyutl", "-sign", "-inkey", str(key_pem),
         "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:32",
         "-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"],
        input=digest, capture_output=True, check=True).stdout
    mod = subprocess.run(["openssl", "rsa", "-in", str(key_pem), "-noout",
                          "-modulus"], capture_output=True, check=True,
                         text=True).stdout.strip().split("=", 1)[1]
    n = int(mod, 16)
    block = bytearray(1216)
    block[0], block[1] = 0xE7, 0x02
    block[4:36] = digest
    block[36:420] = n.to_bytes(384, "little")
    block[420:424] = (65537).to_bytes(4, "little")
    # the ROM's Montgomery constants, for completeness
    block[424:808] = pow(2, 2 * 3072, n).to_bytes(384, "little")
    block[808:812] = ((-pow(n, -1, 2 ** 32)) % 2 ** 32).to_bytes(4, "little")
    block[812:1196] = sig[::-1]
    block[1196:1200] = zlib.crc32(bytes(block[:1196])).to_bytes(4, "little")
    return body + bytes(block) + b"\xff" * (4096 - 1216)


def der_ints(der):
    """r and s of a DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs)."""
    assert der[0] == 0x30
    pos, out = 2 if der[1] < 0x80 else 3, []
    for _ in range(2):
        assert der[pos] == 0x02
        n = der[pos + 1]
        out.append(int.from_bytes(der[pos + 2:pos + 2 + n], "big"))
        pos += 2 + n
    return out


def sign_sbv2_ecdsa(image, key_pem):
    """A Secure Boot v2 sector with one ECDSA P-256 block (version 0x03,
    SHA-256), as espsecure lays it out: X, Y, r, s little-endian."""
    body = image + b"\xff" * (-len(image) % 4096)
    digest = hashlib.sha256(body).digest()
    der = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey",
                          str(key_pem)], input=digest, capture_output=True,
                         check=True).stdout
    r, s = der_ints(der)
    pub = subprocess.run(["openssl", "ec", "-in", str(key_pem), "-pubout",
                          "-outform", "DER"], capture_output=True,
                         check=True).stdout[-65:]
    assert pub[0] == 0x04
    block = bytearray(1216)
    block[0], block[1], block[2] = 0xE7, 0x03, 0x00
    block[4:36] = digest
    block[36] = 2  # P-256
    block[37:69] = pub[1:33][::-1]
    block[69:101] = pub[33:65][::-1]
    block[101:133] = r.to_bytes(32, "little")
    block[133:165] = s.to_bytes(32, "little")
    block[1196:1200] = zlib.crc32(bytes(block[:1196])).to_bytes(4, "little")
    return body + bytes(block) + b"\xff" * (4096 - 1216)
