"""Delta updates over HTTP: a device on WLED 0.14.2 that asks for
esp_delta_ota patches gets one for 0.14.3 that rebuilds it exactly; every
other client gets the full image."""
import subprocess

import pytest

from conftest import OTACTL, WLED, Otad, sha256
from imagebuild import app_sha256

OLD = (WLED / "0.14.2.bin").read_bytes()
NEW = (WLED / "0.14.3.bin").read_bytes()
RUNNING = app_sha256(OLD)


def delta_otad(tmp_path, extra=""):
    d = Otad(tmp_path, extra)
    d.otactl("artifact", "add", str(WLED / "0.14.2.bin"), "--version",
             "0.14.2")
    d.new_sha = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"),
                         "--version", "0.14.3").stdout.strip()
    d.otactl("release", "create", "0.14.3", "--artifact", d.new_sha)
    d.otactl("release", "publish", "0.14.3")
    return d.start()


def asks(dev="d1", **extra):
    h = {"X-Device-ID": dev, "X-Current-Version": "0.14.2",
         "X-Running-SHA256": RUNNING, "X-Accept-Delta": "esp_delta_ota"}
    h.update(extra)
    return {k: v for k, v in h.items() if v is not None}


def wait_patch(d, dev="d1"):
    """The first ask builds the patch in the background; HEAD until it is
    ready (a HEAD opens no attempt)."""
    # about a second; ten times that in the sanitized build
    d.wait_for(lambda: d.request("HEAD", "/firmware/check", asks(dev))
               .headers.get("x-firmware-delta") == "esp_delta_ota", 120,
               "the patch to be built")


@pytest.fixture
def dotad(tmp_path):
    d = delta_otad(tmp_path)
    yield d
    d.check_clean_exit()


def apply(tmp_path, patch):
    (tmp_path / "p").write_bytes(patch)
    subprocess.run([str(OTACTL), "delta", "apply", str(WLED / "0.14.2.bin"),
                    str(tmp_path / "p"), "-o", str(tmp_path / "out")],
                   check=True, capture_output=True)
    return (tmp_path / "out").read_bytes()


def test_a_device_that_asks_gets_a_patch_that_rebuilds_the_image(
        dotad, tmp_path):
    # meanwhile (the patch is not built yet) the full image, never a wait
    first = dotad.get("/firmware/check", asks("d0"))
    assert first.status == 200
    assert first.body == NEW or first.headers.get("x-firmware-delta")
    wait_patch(dotad)
    r = dotad.get("/firmware/check", asks())
    assert r.status == 200
    assert r.headers["x-firmware-delta"] == "esp_delta_ota"
    assert r.headers["x-delta-base-sha256"] == RUNNING
    assert r.headers["x-firmware-sha256"] == dotad.new_sha
    assert r.headers["x-patch-sha256"] == sha256(r.body)
    assert "x-md5" not in r.headers
    assert len(r.body) < len(NEW) * 0.6
    # the esp_delta_ota container: magic, then the base's digest
    assert r.body[:4] == bytes.fromhex("10decdfc")
    assert r.body[4:36].hex() == RUNNING
    assert apply(tmp_path, r.body) == NEW
    # ranges, for a resumed download
    part = dotad.get("/firmware/check", asks(Range="bytes=100-199"))
    assert part.status == 206 and part.body == r.body[100:200]
    # the manifest names it, and the patch has its own URL
    m = dotad.get("/firmware/manifest", asks()).json()
    assert m["delta"]["format"] == "esp_delta_ota"
    assert m["delta"]["sha256"] == sha256(r.body)
    assert m["delta"]["base_sha256"] == RUNNING
    assert dotad.get(m["delta"]["url"]).body == r.body
    assert dotad.get("/firmware/patches/" + "0" * 64).status == 404


def test_clients_that_did_not_ask_get_the_full_image(dotad):
    wait_patch(dotad)
    plain = dotad.get("/firmware/check", asks("d2", **{
        "X-Accept-Delta": None}))
    assert plain.status == 200 and plain.body == NEW
    assert "x-firmware-delta" not in plain.headers
    other = dotad.get("/firmware/check", asks("d3", **{
        "X-Accept-Delta": "bsdiff"}))
    assert other.body == NEW
    # unknown running image: nothing to patch from
    unknown = dotad.get("/firmware/check", asks("d4", **{
        "X-Running-SHA256": "ab" * 32}))
    assert unknown.body == NEW
    # Arduino's HTTPUpdate cannot apply one, whatever it sends
    ard = dotad.get("/firmware/check", asks("d5", **{
        "x-ESP32-STA-MAC": "0C:B8:15:F8:AD:1C"}))
    assert ard.body == NEW and "x-firmware-delta" not in ard.headers
    m = dotad.get("/firmware/manifest", asks("d6", **{
        "X-Accept-Delta": None})).json()
    assert "delta" not in m


def test_a_device_that_failed_to_apply_a_patch_gets_the_full_image(dotad):
    wait_patch(dotad)
    assert dotad.get("/firmware/check", asks()).headers[
        "x-firmware-delta"] == "esp_delta_ota"
    dotad.wait_for(lambda: dotad.otactl("device", "show", "d1",
                                        json_out=True)["attempts"], 5,
                   "the attempt")
    r = dotad.post_json("/firmware/report", {
        "device": "d1", "version": "0.14.3", "result": "failed",
        "reason": "delta"})
    assert r.status == 200
    again = dotad.get("/firmware/check", asks())
    assert again.status == 200 and again.body == NEW
    assert "x-firmware-delta" not in again.headers


def test_a_patch_over_the_share_is_never_offered(tmp_path):
    d = delta_otad(tmp_path, "delta_max_share = 2\n")
    try:
        d.get("/firmware/check", asks())
        d.wait_for(lambda: any("over delta_max_share" in l for l in d.log),
                   120, "the size check")
        r = d.get("/firmware/check", asks())
        assert r.body == NEW and "x-firmware-delta" not in r.headers
    finally:
        d.check_clean_exit()


def test_patches_are_kept_and_checked_again_after_a_restart(tmp_path):
    d = delta_otad(tmp_path)
    try:
        wait_patch(d)
        body = d.get("/firmware/check", asks()).body
        d.check_clean_exit()
        patches = list((d.state / "artifacts" / "patches").iterdir())
        assert len(patches) == 1 and patches[0].read_bytes() == body
        d.start()
        wait_patch(d, "d9")
        assert d.get("/firmware/check", asks("d9")).body == body
        assert any("ready" in l for l in d.log)
    finally:
        d.check_clean_exit()


def test_patches_go_with_their_release(dotad):
    wait_patch(dotad)
    patches = dotad.state / "artifacts" / "patches"
    assert len(list(patches.iterdir())) == 1
    rid = dotad.otactl("rollout", "status", json_out=True)[0]["id"]
    dotad.otactl("rollout", "abort", str(rid))

    # gone with the offer, before any HTTP thread has handled a request
    # (an idle thread holds the old offers until its next one)
    dotad.wait_for(lambda: not list(patches.iterdir()), 10,
                   "the patch to be removed")
    assert dotad.get("/firmware/check", asks("d7")).status == 304


def delta_cmd(*args):
    return subprocess.run([str(OTACTL), "delta", *map(str, args)],
                          capture_output=True, text=True)


def test_otactl_delta_refuses_bad_input_in_one_line(tmp_path):
    old, new = WLED / "0.14.2.bin", WLED / "0.14.3.bin"
    out = tmp_path / "out"
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an image at all")
    cases = [
        (("create", tmp_path / "missing", new, "-o", out), "cannot open"),
        (("create", junk, new, "-o", out), "not an ESP32 application image"),
        (("create", old, new), "usage"),
        (("apply", old, junk, "-o", out), "not a detools sequential patch"),
    ]
    # a patch for another base, and one cut short
    p = delta_cmd("create", WLED / "0.14.1.bin", new, "-o", tmp_path / "p")
    assert p.returncode == 0, p.stderr
    cases.append((("apply", old, tmp_path / "p", "-o", out),
                  "the patch is for the image whose SHA-256 is"))
    cut = tmp_path / "cut"
    data = (tmp_path / "p").read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    cases.append((("apply", WLED / "0.14.1.bin", cut, "-o", out),
                  "corrupt patch"))
    cases.append((("apply", WLED / "0.14.1.bin", tmp_path / "p", "-o", out,
                   "--sha256", "00" * 32), "not " + "00" * 32))
    for args, want in cases:
        r = delta_cmd(*args)
        assert r.returncode != 0, args
        assert want in r.stderr, (args, r.stderr)
        if want != "usage":
            assert r.stderr.count("\n") == 1, r.stderr
        assert not out.exists(), args  # nothing half-written
    # --raw takes any two files, and gives them back
    r = delta_cmd("create", junk, new, "--raw", "-o", tmp_path / "raw")
    assert r.returncode == 0, r.stderr
    assert delta_cmd("apply", junk, tmp_path / "raw", "-o",
                     out).returncode == 0
    assert out.read_bytes() == new.read_bytes()
