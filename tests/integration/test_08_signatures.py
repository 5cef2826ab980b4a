"""Signatures and key slots: signed by CI or by the server, revocable."""
import base64
import subprocess

import imagebuild
from conftest import FIRMWARE, WLED, Otad

HELLO = FIRMWARE / "esp-idf" / "hello_world_esp32.bin"


def openssl(*args, **kw):
    return subprocess.run(["openssl", *args], check=True,
                          capture_output=True, **kw)


def ec_key(d, name):
    """A CI signing key made at test time: private and public PEM."""
    key, pub = d / f"{name}.pem", d / f"{name}.pub"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout",
            "-out", str(key))
    openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))
    return key, pub


def dgst_sign(key, image, out):
    openssl("dgst", "-sha256", "-sign", str(key), "-out", str(out),
            str(image))
    return out


def signed_otad(tmp_path):
    d = Otad(tmp_path, "require_signature = yes\n")
    return d


def test_ci_signed_artifact_end_to_end(tmp_path):
    d = signed_otad(tmp_path)
    key, pub = ec_key(tmp_path, "ci")
    d.otactl("key", "add", "ci", "--public", str(pub))
    img = WLED / "0.14.3.bin"
    sig = dgst_sign(key, img, tmp_path / "img.sig")
    sha = d.otactl("artifact", "add", str(img), "--version", "0.14.3",
                   "--signature", str(sig), "--key", "ci").stdout.strip()
    d.otactl("release", "create", "0.14.3", "--artifact", sha)
    d.otactl("release", "publish", "0.14.3")
    d.start()
    try:
        r = d.get("/firmware/check?device=s1&version=0.14.2")
        assert r.status == 200
        assert r.headers["x-firmware-key-id"] == "ci"
        raw = base64.b64decode(r.headers["x-firmware-signature"])
        assert raw == sig.read_bytes()
        # what a device (or a script) checks with the public key
        (tmp_path / "got.sig").write_bytes(raw)
        (tmp_path / "got.bin").write_bytes(r.body)
        p = subprocess.run(["openssl", "dgst", "-sha256", "-verify",
                            str(pub), "-signature", str(tmp_path / "got.sig"),
                            str(tmp_path / "got.bin")], capture_output=True,
                           text=True)
        assert p.stdout.strip() == "Verified OK"
    finally:
        d.check_clean_exit()


def test_bad_signatures_leave_nothing(tmp_path):
    d = signed_otad(tmp_path)
    key, pub = ec_key(tmp_path, "ci")
    d.otactl("key", "add", "ci", "--public", str(pub))
    other = dgst_sign(key, WLED / "0.14.2.bin", tmp_path / "other.sig")
    p = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"), "--version",
                 "0.14.3", "--signature", str(other), "--key", "ci",
                 check=False)
    assert p.returncode == 1 and "does not verify with key 'ci'" in p.stderr
    p = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"), "--version",
                 "0.14.3", "--signature", str(other), "--key", "nobody",
                 check=False)
    assert p.returncode == 1 and "no key 'nobody'" in p.stderr
    junk = tmp_path / "junk.sig"
    junk.write_bytes(b"\x30" * 900)
    p = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"), "--version",
                 "0.14.3", "--signature", str(junk), "--key", "ci",
                 check=False)
    assert p.returncode == 1 and "larger than 512 bytes" in p.stderr
    p = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"), "--version",
                 "0.14.3", "--signature", str(other), check=False)
    assert p.returncode == 1 and "go together" in p.stderr
    assert d.otactl("artifact", "list", json_out=True) == []
    assert list((d.state / "artifacts").iterdir()) == []


def test_unsigned_artifact_cannot_be_released(tmp_path):
    d = signed_otad(tmp_path)
    sha = d.otactl("artifact", "add", str(HELLO)).stdout.strip()
    p = d.otactl("release", "create", "qa-test-esp32c61-master-2025070",
                 "--artifact", sha, check=False)
    assert p.returncode == 1
    assert "not signed by a trusted key" in p.stderr
    assert d.otactl("release", "list", json_out=True) == []


def test_server_held_key_signs(tmp_path):
    d = signed_otad(tmp_path)
    out = d.otactl("key", "generate", "fleet", "--algo", "ed25519").stdout
    assert "ed25519" in out
    keyfile = d.state / "keys" / "fleet.pem"
    assert keyfile.stat().st_mode & 0o777 == 0o600
    sha = d.otactl("artifact", "add", str(HELLO)).stdout.strip()
    d.otactl("artifact", "sign", sha[:12], "--key", "fleet")
    a = d.otactl("artifact", "show", sha, json_out=True)
    assert [s["key"] for s in a["signatures"]] == ["fleet"]
    keys = d.otactl("key", "list", json_out=True)
    assert keys[0]["name"] == "fleet" and keys[0]["server_held"] == 1
    assert keys[0]["signatures"] == 1
    # a CI key's private half is not here: it cannot sign
    _, pub = ec_key(tmp_path, "ci")
    d.otactl("key", "add", "ci", "--public", str(pub))
    p = d.otactl("artifact", "sign", sha, "--key", "ci", check=False)
    assert p.returncode == 1 and "not held by this server" in p.stderr
    p = d.otactl("key", "generate", "fleet", check=False)
    assert p.returncode == 1 and "exists already" in p.stderr


def test_revoking_a_key_stops_offers_at_once(tmp_path):
    d = signed_otad(tmp_path)
    key_a, pub_a = ec_key(tmp_path, "a")
    key_b, pub_b = ec_key(tmp_path, "b")
    d.otactl("key", "add", "old", "--public", str(pub_a))
    d.otactl("key", "add", "new", "--public", str(pub_b))
    # 0.14.3 signed by the old key only; 0.14.4 by both
    s3 = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"), "--version",
                  "0.14.3", "--signature",
                  str(dgst_sign(key_a, WLED / "0.14.3.bin",
                                tmp_path / "3a.sig")),
                  "--key", "old").stdout.strip()
    s4 = d.otactl("artifact", "add", str(WLED / "0.14.4.bin"), "--version",
                  "0.14.4", "--signature",
                  str(dgst_sign(key_a, WLED / "0.14.4.bin",
                                tmp_path / "4a.sig")),
                  "--key", "old").stdout.strip()
    d.otactl("artifact", "add", str(WLED / "0.14.4.bin"), "--version",
             "0.14.4", "--signature",
             str(dgst_sign(key_b, WLED / "0.14.4.bin", tmp_path / "4b.sig")),
             "--key", "new")
    d.otactl("release", "create", "0.14.3", "--artifact", s3,
             "--product", "a")
    d.otactl("release", "create", "0.14.4", "--artifact", s4,
             "--product", "b")
    d.otactl("release", "publish", "0.14.3")
    d.otactl("release", "publish", "0.14.4")
    d.start()
    try:
        assert d.get("/firmware/check?device=a1&version=0.1&product=a"
                     ).status == 200
        assert d.get("/firmware/check?device=b1&version=0.1&product=b"
                     ).headers["x-firmware-key-id"] == "new"
        out = d.otactl("key", "revoke", "old").stdout
        assert "revoked" in out
        # the very next request: otactl returns once otad serves it
        assert d.get("/firmware/check?device=a2&version=0.1&product=a"
                     ).status == 304
        # signed by a successor too: still offered, under that key
        r = d.get("/firmware/check?device=b2&version=0.1&product=b")
        assert r.status == 200 and r.headers["x-firmware-key-id"] == "new"
        assert any("no signature by a trusted key" in l for l in d.log)
    finally:
        d.check_clean_exit()
    assert d.query("SELECT actor, what FROM audit WHERE what LIKE"
                   " 'key old%'") == [
        ("otactl:root", "key old state active -> revoked")]
    p = d.hand_edit("UPDATE signing_key SET"
                        " state='active' WHERE name='old'")
    assert "a revoked key stays revoked" in p.stderr
    p = d.otactl("key", "revoke", "old", check=False)
    assert p.returncode == 1 and "already revoked" in p.stderr


def test_key_add_refuses_the_wrong_keys(tmp_path):
    d = signed_otad(tmp_path)
    rsa = tmp_path / "rsa.pem"
    openssl("genrsa", "-out", str(rsa), "3072")
    rsapub = tmp_path / "rsa.pub"
    openssl("rsa", "-in", str(rsa), "-pubout", "-out", str(rsapub))
    _, ecpub = ec_key(tmp_path, "ec")
    ed = tmp_path / "ed.pem"
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(ed))
    edpub = tmp_path / "ed.pub"
    openssl("pkey", "-in", str(ed), "-pubout", "-out", str(edpub))
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n"
                    "-----END PUBLIC KEY-----\n")
    for args, needle in [
        (["key", "add", "r", "--public", str(rsapub)], "are for --secure-boot"),
        (["key", "add", "e", "--public", str(edpub), "--secure-boot"],
         "a Secure Boot v2 key is RSA-3072 or ECDSA P-192, P-256 or P-384"),
        (["key", "add", "j", "--public", str(junk)], "not a PEM public key"),
        (["key", "add", "../x", "--public", str(ecpub)], "invalid key name"),
        (["key", "add", "k", "--public", str(tmp_path / "none")],
         "cannot open"),
        (["key", "generate", "g", "--algo", "rsa"], "--algo is"),
    ]:
        p = d.otactl(*args, check=False)
        assert p.returncode == 1, args
        assert needle in p.stderr, (needle, p.stderr)
    d.otactl("key", "add", "e", "--public", str(ecpub))
    p = d.otactl("key", "add", "e2", "--public", str(ecpub), check=False)
    assert p.returncode == 1 and "already there" in p.stderr
    assert [k["name"] for k in d.otactl("key", "list", json_out=True)] == \
        ["e"]


def test_secure_boot_blocks_are_verified_at_ingest(tmp_path):
    d = signed_otad(tmp_path)
    sb, other = tmp_path / "sb.pem", tmp_path / "other.pem"
    openssl("genrsa", "-out", str(sb), "3072")
    openssl("genrsa", "-out", str(other), "3072")
    sbpub = tmp_path / "sb.pub"
    openssl("rsa", "-in", str(sb), "-pubout", "-out", str(sbpub))
    image = imagebuild.build(version="3.0.0")
    signed = tmp_path / "signed.bin"
    signed.write_bytes(imagebuild.sign_sbv2(image, sb))
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(imagebuild.sign_sbv2(image, other))
    plain = tmp_path / "plain.bin"
    plain.write_bytes(image)
    # no secure boot key configured: any valid image is fine
    d.otactl("artifact", "add", str(foreign), "--version", "3.0.0-f")
    d.otactl("key", "add", "sb", "--public", str(sbpub), "--secure-boot")
    p = d.otactl("artifact", "add", str(plain), check=False)
    assert p.returncode == 1
    assert "carries no Secure Boot v2 signature" in p.stderr
    p = d.otactl("artifact", "add", str(foreign), "--version", "3.0.0-g",
                 check=False)
    assert p.returncode == 1 and "no block carries a trusted secure-boot key" in \
        p.stderr
    sha = d.otactl("artifact", "add", str(signed)).stdout.strip()
    a = d.otactl("artifact", "show", sha, json_out=True)
    assert a["sig_blocks"] == 1
    assert a["image_len"] == len(image) and a["size"] == len(image) + \
        (-len(image) % 4096) + 4096
    assert len(d.otactl("artifact", "list", json_out=True)) == 2
