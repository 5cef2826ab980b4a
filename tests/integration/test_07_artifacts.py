"""Trustworthy artifacts: validation at ingest, chips, anti-rollback."""

import imagebuild
from conftest import FIRMWARE, WLED, Otad, sha256

C3 = FIRMWARE / "wled-esp32c3"
HELLO = FIRMWARE / "esp-idf" / "hello_world_esp32.bin"


def app_digest(path):
    return path.read_bytes()[-32:].hex()


def test_show_prints_what_the_image_says(tmp_path):
    d = Otad(tmp_path)
    sha = d.otactl("artifact", "add", str(HELLO)).stdout.strip()
    a = d.otactl("artifact", "show", sha, json_out=True)
    # no --version: a native ESP-IDF build's own version is used
    assert a["version"] == a["desc_version"] == \
        "qa-test-esp32c61-master-2025070"
    assert a["project"] == "hello_world"
    assert a["idf_ver"].startswith("v6.0-dev")
    assert a["chip"] == "esp32"
    assert a["secure_version"] == 0
    assert a["image_len"] == a["size"] == HELLO.stat().st_size
    assert a["app_sha256"] == app_digest(HELLO)
    text = d.otactl("artifact", "show", sha).stdout
    assert "hello_world" in text and "idf_ver" in text


def test_arduino_build_needs_a_version(tmp_path):
    d = Otad(tmp_path)
    p = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"), check=False)
    assert p.returncode == 1
    assert "esp32-arduino-lib-builder" in p.stderr
    assert "give --version" in p.stderr
    assert d.otactl("artifact", "list", json_out=True) == []
    assert [f for f in (d.state / "artifacts").iterdir()] == []


def test_damaged_images_are_refused_with_the_reason(tmp_path):
    d = Otad(tmp_path)
    good = imagebuild.build()
    cases = []
    flipped = bytearray(good)
    flipped[700] ^= 1
    cases.append((bytes(flipped), "checksum mismatch"))
    digest = bytearray(good)
    digest[-1] ^= 1
    cases.append((bytes(digest), "appended SHA-256 mismatch"))
    cases.append((good[:-100], "segment 2 runs past the end of the file"))
    cases.append((good[:-20], "file ends before the appended SHA-256"))
    cases.append((good + b"\0" * 64, "64 unexpected bytes after the image"))
    magic = bytearray(good)
    magic[32] ^= 0xFF
    cases.append((bytes(magic), "app descriptor magic"))
    for i, (data, needle) in enumerate(cases):
        f = tmp_path / f"bad{i}.bin"
        f.write_bytes(data)
        p = d.otactl("artifact", "add", str(f), "--version", "1.0.0",
                     check=False)
        assert p.returncode == 1, needle
        assert needle in p.stderr, (needle, p.stderr)
    assert d.otactl("artifact", "list", json_out=True) == []


def publish(d, path, version, chip=None, create_args=()):
    sha = d.otactl("artifact", "add", str(path), "--version",
                   version).stdout.strip()
    d.otactl("release", "create", version, "--artifact", sha, *create_args)
    d.otactl("release", "publish", version,
             *(["--chip", chip] if chip else []))
    return sha


def test_esp32_device_never_gets_the_c3_image(otad):
    # the images the two devices run are known to the store
    otad.otactl("artifact", "add", str(WLED / "0.14.0.bin"), "--version",
                "0.14.0")
    otad.otactl("artifact", "add", str(C3 / "0.14.0.bin"), "--version",
                "0.14.0-c3")
    publish(otad, C3 / "0.14.1.bin", "0.14.1", chip="esp32c3")
    otad.wait_for(lambda: any("offering 0.14.1" in l for l in otad.log))
    # an Arduino ESP32 on 0.14.0, sending its sketch digest
    r = otad.get("/firmware/check", {
        "x-ESP32-STA-MAC": "24:0A:C4:00:00:01", "x-ESP32-version": "0.14.0",
        "x-ESP32-sketch-sha256": app_digest(WLED / "0.14.0.bin").upper()})
    assert r.status == 304
    # a C3 on its own 0.14.0 gets the C3 image
    r = otad.get("/firmware/check", {
        "X-Device-ID": "c3-1", "X-Current-Version": "0.14.0",
        "X-Running-SHA256": app_digest(C3 / "0.14.0.bin")})
    assert r.status == 200
    assert sha256(r.body) == sha256((C3 / "0.14.1.bin").read_bytes())
    # the ESP32 is remembered as one, even when it stops sending its digest
    otad.wait_for(lambda: otad.otactl(
        "device", "show", "24:0A:C4:00:00:01", check=False).returncode == 0)
    dev = otad.otactl("device", "show", "24:0A:C4:00:00:01", json_out=True)
    assert dev["chip"] == "esp32"
    assert dev["running_sha256"] == app_digest(WLED / "0.14.0.bin")
    r = otad.get("/firmware/check?device=24:0A:C4:00:00:01&version=0.14.0")
    assert r.status == 304


def test_operator_sets_the_chip(otad):
    publish(otad, C3 / "0.14.1.bin", "0.14.1")
    otad.wait_for(lambda: any("offering 0.14.1" in l for l in otad.log))
    otad.get("/firmware/check?device=op-1&version=0.14.3")
    otad.wait_for(lambda: otad.otactl("device", "show", "op-1",
                                      check=False).returncode == 0)
    otad.otactl("device", "set", "op-1", "--chip", "esp32")
    assert otad.get("/firmware/check?device=op-1&version=0.1.0"
                    ).status == 304
    otad.otactl("device", "set", "op-1", "--chip", "esp32c3")
    assert otad.get("/firmware/check?device=op-1&version=0.1.0"
                    ).status == 200
    p = otad.otactl("device", "set", "op-1", "--chip", "esp8266",
                    check=False)
    assert p.returncode == 1 and "unknown chip" in p.stderr
    p = otad.otactl("device", "set", "ghost", "--chip", "esp32", check=False)
    assert p.returncode == 1 and "no device 'ghost'" in p.stderr


def test_unknown_chip_with_releases_for_two_chips_is_not_guessed(otad):
    publish(otad, WLED / "0.14.4.bin", "0.14.4", chip="esp32")
    publish(otad, C3 / "0.14.1.bin", "0.14.4", chip="esp32c3")
    otad.wait_for(lambda: sum("offering 0.14.4" in l for l in otad.log) >= 2)
    r = otad.get("/firmware/check?device=u1&version=0.14.0")
    assert r.status == 304
    assert r.headers["x-update-deferred"] == "chip"
    r = otad.get("/firmware/check", {
        "X-Device-ID": "u2", "X-Current-Version": "0.14.0",
        "X-Running-SHA256": "ab" * 32})
    assert r.status == 304, "runs an image we do not know: still unknown"
    otad.otactl("artifact", "add", str(C3 / "0.14.0.bin"), "--version",
                "0.14.0-c3")
    r = otad.get("/firmware/check", {
        "X-Device-ID": "u3", "X-Current-Version": "0.14.0",
        "X-Running-SHA256": app_digest(C3 / "0.14.0.bin")})
    assert r.status == 200
    assert r.body == (C3 / "0.14.1.bin").read_bytes()


def test_hardware_revision_limit(otad):
    sha = otad.otactl("artifact", "add", str(WLED / "0.14.4.bin"),
                      "--version", "0.14.4").stdout.strip()
    otad.otactl("release", "create", "0.14.4", "--artifact", sha,
                "--hw-rev", "B")
    otad.otactl("release", "publish", "0.14.4")
    otad.wait_for(lambda: any("offering 0.14.4" in l for l in otad.log))
    assert otad.get("/firmware/check?device=h1&version=0.14.0",
                    {"X-Hardware-Rev": "A"}).status == 304
    assert otad.get("/firmware/check?device=h2&version=0.14.0"
                    ).status == 304
    assert otad.get("/firmware/check?device=h3&version=0.14.0",
                    {"X-Hardware-Rev": "B"}).status == 200


def test_secure_version_is_never_lowered(otad, tmp_path):
    sv1 = tmp_path / "sv1.bin"
    sv1.write_bytes(imagebuild.build(version="2.0.0", secure_version=1))
    publish(otad, sv1, "2.0.0", create_args=["--confirm-secure-version"])
    otad.wait_for(lambda: any("offering 2.0.0" in l for l in otad.log))
    r = otad.get("/firmware/check?device=s2&version=1.0.0",
                 {"X-Secure-Version": "2"})
    assert r.status == 304
    assert r.headers["x-update-deferred"] == "secure-version"
    assert otad.get("/firmware/check?device=s1&version=1.0.0",
                    {"X-Secure-Version": "1"}).status == 200
    assert otad.get("/firmware/check?device=s0&version=1.0.0"
                    ).status == 200
    # remembered: the same device without the header is still protected
    otad.wait_for(lambda: otad.otactl("device", "show", "s2",
                                      check=False).returncode == 0)
    assert otad.get("/firmware/check?device=s2&version=1.0.0"
                    ).status == 304
    # and not counted as an attempt
    assert otad.query("SELECT count(*) FROM attempt WHERE device='s2'"
                      ) == [(0,)]


def test_bad_device_facts_get_400(otad):
    for headers, needle in [
        ({"X-Running-SHA256": "abc"}, "running SHA-256"),
        ({"X-Running-SHA256": "g" * 64}, "running SHA-256"),
        ({"x-ESP32-sketch-sha256": "A" * 65}, "running SHA-256"),
        ({"X-Secure-Version": "-1"}, "secure version"),
        ({"X-Secure-Version": "4294967296"}, "secure version"),
        ({"X-Secure-Version": "1x"}, "secure version"),
        ({"X-Hardware-Rev": "a b"}, "hardware revision"),
    ]:
        h = {"X-Device-ID": "bad", "X-Current-Version": "1.0.0"}
        h.update(headers)
        r = otad.get("/firmware/check", h)
        assert r.status == 400, headers
        assert needle in r.json()["error"]
    assert otad.otactl("device", "list", json_out=True) == []


def test_raising_secure_version_needs_confirmation(otad, tmp_path):
    v1 = tmp_path / "v1.bin"
    v1.write_bytes(imagebuild.build(version="1.0.0"))
    sv1 = tmp_path / "sv1.bin"
    sv1.write_bytes(imagebuild.build(version="2.0.0", secure_version=1))
    sv1b = tmp_path / "sv1b.bin"
    sv1b.write_bytes(imagebuild.build(version="2.1.0", secure_version=1,
                                      seed=1))
    a1 = otad.otactl("artifact", "add", str(v1)).stdout.strip()
    otad.otactl("release", "create", "1.0.0", "--artifact", a1)
    a2 = otad.otactl("artifact", "add", str(sv1)).stdout.strip()
    p = otad.otactl("release", "create", "2.0.0", "--artifact", a2,
                    check=False)
    assert p.returncode == 1
    assert "raises secure_version from 0 to 1" in p.stderr
    assert "--confirm-secure-version" in p.stderr
    assert len(otad.otactl("release", "list", json_out=True)) == 1
    otad.otactl("release", "create", "2.0.0", "--artifact", a2,
                "--confirm-secure-version")
    # the next one at the same level raises nothing
    a3 = otad.otactl("artifact", "add", str(sv1b)).stdout.strip()
    otad.otactl("release", "create", "2.1.0", "--artifact", a3)
    rel = otad.otactl("release", "list", json_out=True)
    assert [r["secure_version"] for r in rel] == [0, 1, 1]


def test_min_from_goes_through_a_stepping_stone(otad):
    shas = {}
    for v in ("0.14.0", "0.14.2", "0.14.4"):
        shas[v] = otad.otactl("artifact", "add", str(WLED / f"{v}.bin"),
                              "--version", v).stdout.strip()
    otad.otactl("release", "create", "0.14.0", "--artifact", shas["0.14.0"])
    otad.otactl("release", "create", "0.14.2", "--artifact", shas["0.14.2"])
    p = otad.otactl("release", "create", "0.14.4", "--artifact",
                    shas["0.14.4"], "--min-from", "0.14.9", check=False)
    assert p.returncode == 1 and "must be older" in p.stderr
    otad.otactl("release", "create", "0.14.4", "--artifact", shas["0.14.4"],
                "--min-from", "0.14.2")
    rollout = otad.otactl("release", "publish", "0.14.4",
                          json_out=True)["rollout"]
    otad.wait_for(lambda: any("offering 0.14.4" in l for l in otad.log))
    # 0.13.0 is too old for 0.14.4: it gets 0.14.2, the newest step
    r = otad.get("/firmware/check?device=old&version=0.13.0")
    assert r.status == 200
    assert r.headers["x-firmware-version"] == "0.14.2"
    assert r.body == (WLED / "0.14.2.bin").read_bytes()
    # once there, the target
    r = otad.get("/firmware/check?device=old&version=0.14.2")
    assert r.headers["x-firmware-version"] == "0.14.4"
    # the step counted as an attempt of the target's rollout
    otad.wait_for(lambda: len(otad.otactl("device", "show", "old",
                                          json_out=True)["attempts"]) == 2)
    rows = otad.query("SELECT to_version, state, rollout FROM attempt"
                      " WHERE device='old' ORDER BY id")
    assert rows == [("0.14.2", "success", rollout),
                    ("0.14.4", "downloading", rollout)]
