"""Secure Boot v2 at ingest, against Espressif's own espsecure output in
../shared/firmware/secure-boot (RSA-3072, ECDSA P-192/P-256/P-384 blocks,
and three broken files), and an ECDSA image of a chip that verifies
ECDSA, signed here the way espsecure signs."""
import subprocess

import imagebuild
from conftest import FIRMWARE, Otad, sha256

SB = FIRMWARE / "secure-boot"
DIGESTS = {
    "rsa3072": "239a5ea81c41f0e208b8c51b1b37be9c16c0f24ec33f59037eb2aea338a19f51",
    "ecdsa192": "d40945d8889eff9c4a6d3f809a43428e6c007d8423bae2f5350c42c1271de08c",
    "ecdsa256": "f00d8b973d0f812f3be5db73e3889f9aed29bee0eda4a97b6a0adc04f693f2d4",
    "ecdsa384": "ed89aee059064f202bac43492173dab064f022e4099b452f78df7047545a0091",
}


def stored(d):
    """The files in the store: a refused add leaves none behind."""
    return sorted(p.name for p in (d.state / "artifacts").iterdir()
                  if p.is_file())


def add(d, path, version, check=True):
    return d.otactl("artifact", "add", str(path), "--version", version,
                    check=check)


def test_ecdsa_secure_boot_keys_and_images(tmp_path):
    d = Otad(tmp_path)
    # espsecure's public keys: each key's eFuse digest as espsecure gives it
    for name in ("ecdsa256", "ecdsa384", "rsa3072"):
        out = d.otactl("key", "add", name, "--public",
                       str(SB / f"{name}.pub.pem"), "--secure-boot").stdout
        assert DIGESTS[name] in out
    p = d.otactl("key", "add", "ecdsa192", "--public",
                 str(SB / "ecdsa192.pub.pem"), "--secure-boot")
    assert "refuse ECDSA P-192" in p.stderr  # accepted, with a warning
    keys = {k["name"]: k for k in d.otactl("key", "list", json_out=True)}
    for name, digest in DIGESTS.items():
        assert keys[name]["efuse_digest"] == digest
        assert keys[name]["purpose"] == "secure-boot"
    assert keys["ecdsa384"]["algo"] == "ecdsa-p384"
    assert "public_key" not in keys["rsa3072"]
    # P-384 and P-192 are secure-boot keys only
    p = d.otactl("key", "add", "x", "--public",
                 str(SB / "ecdsa384.pub.pem"), check=False)
    assert p.returncode == 1 and "artifact keys are" in p.stderr

    # the vectors are ESP32 images: an ESP32 verifies RSA blocks only
    sha = add(d, SB / "hello_world.rsa3072.bin", "1.0.0").stdout.strip()
    show = d.otactl("artifact", "show", sha, json_out=True)
    assert show["secure_boot_blocks"] == [{
        "block": 0, "scheme": "RSA-3072", "key_digest": DIGESTS["rsa3072"],
        "trusted_key": "rsa3072", "verified": True, "why_not": None}]
    before = stored(d)
    for name in ("ecdsa256", "ecdsa384", "ecdsa192"):
        p = add(d, SB / f"hello_world.{name}.bin", "1.0.1", check=False)
        assert p.returncode == 1
        assert "esp32 bootloader does not verify ECDSA" in p.stderr, \
            p.stderr
    # the broken ones, each for its own reason, and nothing left behind
    for name, reason in [
            ("ecdsa256.badsig", "block 0: ECDSA signature does not verify"),
            ("untrusted-ecdsa256", "no block carries a trusted secure-boot "
             "key (block 0: ECDSA P-256 key 51c611f5ab0ea6b7"),
            # the image itself no longer checks out (its checksum)
            ("rsa3072.badbody", "checksum mismatch")]:
        p = add(d, SB / f"hello_world.{name}.bin", "1.0.2", check=False)
        assert p.returncode == 1 and reason in p.stderr, (name, p.stderr)
    assert stored(d) == before
    # two blocks: either key's block will do
    sha2 = add(d, SB / "hello_world.rsa3072x2.bin", "1.0.3").stdout.strip()
    blocks = d.otactl("artifact", "show", sha2,
                      json_out=True)["secure_boot_blocks"]
    assert [b["block"] for b in blocks] == [0, 1]
    assert blocks[0]["trusted_key"] == "rsa3072"
    assert blocks[1]["trusted_key"] is None
    assert "not a trusted" in blocks[1]["why_not"]

    # an ESP32-C6 verifies ECDSA: an image of ours, signed as espsecure
    # signs it with a P-256 key we add, is accepted and offered
    key = tmp_path / "c6.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey",
                    "-noout", "-out", str(key)], check=True)
    pub = tmp_path / "c6.pub.pem"
    subprocess.run(["openssl", "ec", "-in", str(key), "-pubout", "-out",
                    str(pub)], check=True, capture_output=True)
    d.otactl("key", "add", "c6", "--public", str(pub), "--secure-boot")
    image = imagebuild.build(version="2.0.0", chip="esp32c6")
    signed = tmp_path / "c6.bin"
    signed.write_bytes(imagebuild.sign_sbv2_ecdsa(image, key))
    c6 = add(d, signed, "2.0.0").stdout.strip()
    blocks = d.otactl("artifact", "show", c6,
                      json_out=True)["secure_boot_blocks"]
    assert blocks[0]["scheme"] == "ECDSA P-256"
    assert blocks[0]["trusted_key"] == "c6" and blocks[0]["verified"]
    # the same image with a flipped signature byte: refused
    bad = bytearray(signed.read_bytes())
    at = len(bad) - 4096 + 101
    bad[at] ^= 1
    crc = __import__("zlib").crc32(bytes(bad[len(bad) - 4096:
                                             len(bad) - 4096 + 1196]))
    bad[len(bad) - 4096 + 1196:len(bad) - 4096 + 1200] = \
        crc.to_bytes(4, "little")
    (tmp_path / "bad.bin").write_bytes(bad)
    p = add(d, tmp_path / "bad.bin", "2.0.1", check=False)
    assert p.returncode == 1 and "ECDSA signature does not verify" in \
        p.stderr
    d.otactl("release", "create", "2.0.0", "--artifact", c6)
    d.otactl("release", "publish", "2.0.0")
    d.start()
    try:
        r = d.get("/firmware/check?device=c6-1&version=1.0&chip=esp32c6")
        assert r.status == 200 and sha256(r.body) == c6
    finally:
        d.check_clean_exit()
