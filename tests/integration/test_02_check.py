"""The poll path: /firmware/check and /ota/firmware.bin, as devices use it."""
import http.client
import time

import pytest

from conftest import WLED, arduino_request, md5, sha256


def test_arduino_httpupdate_gets_the_image(published):
    """HTTP/1.0, Connection: close, x-ESP32-* headers, exactly as sent."""
    r = published.raw(arduino_request("/ota/firmware.bin",
                                      "24:0A:C4:A3:15:3C", "0.14.2",
                                      published.port))
    img = published.image
    assert r.status == 200
    assert int(r.headers["content-length"]) == len(img)
    assert r.body == img
    assert r.headers["x-md5"] == md5(img)
    assert len(r.headers["x-md5"]) == 32
    assert r.headers["x-firmware-sha256"] == sha256(img)
    assert r.headers["x-firmware-version"] == "0.14.3"
    assert r.headers["etag"] == f'"{sha256(img)}"'
    assert r.headers["content-type"] == "application/octet-stream"
    assert "transfer-encoding" not in r.headers
    assert "location" not in r.headers


def test_arduino_up_to_date_gets_304(published):
    r = published.raw(arduino_request("/firmware/check", "24:0A:C4:A3:15:3D",
                                      "0.14.3", published.port))
    assert r.status == 304
    assert r.body == b""


def test_newer_device_is_left_alone(published):
    r = published.get("/firmware/check?device=d1&version=0.15.0")
    assert r.status == 304


def test_semver_order_not_string_order(published):
    # "0.14.10" sorts before "0.14.3" as a string; it is newer as a version
    assert published.get(
        "/firmware/check?device=d1&version=0.14.10").status == 304
    assert published.get(
        "/firmware/check?device=d2&version=v0.14.3").status == 304
    r = published.get("/firmware/check?device=d3&version=0.14.3-rc.2")
    assert r.status == 200, "a prerelease is older than its release"


def test_header_identity_over_keep_alive(published):
    """An HTTP/1.1 client polls several times on one connection."""
    c = http.client.HTTPConnection("127.0.0.1", published.port, timeout=10)
    for i in range(5):
        r = published.request("GET", "/firmware/check", {
            "X-Device-ID": f"kc-{i}", "X-Current-Version": "0.14.3"},
            conn=c)
        assert r.status == 304
        assert r.headers.get("connection", "").lower() != "close"
    r = published.request("GET", "/firmware/check", {
        "X-Device-ID": "kc-old", "X-Current-Version": "0.14.1"}, conn=c)
    assert r.status == 200 and r.body == published.image
    r = published.request("GET", "/firmware/check", {
        "X-Device-ID": "kc-0", "X-Current-Version": "0.14.3"}, conn=c)
    assert r.status == 304
    c.close()


def test_header_names_match_case_insensitively(published):
    r = published.get("/firmware/check", {"x-device-id": "lc",
                                           "x-current-version": "0.14.3"})
    assert r.status == 304


def test_head_gives_headers_without_body_or_attempt(published):
    r = published.request("HEAD", "/firmware/check?device=h1&version=0.14.0")
    assert r.status == 200
    assert r.body == b""
    assert int(r.headers["content-length"]) == len(published.image)
    published.wait_for(lambda: published.otactl(
        "device", "show", "h1", check=False).returncode == 0)
    dev = published.otactl("device", "show", "h1", json_out=True)
    assert dev["attempts"] == []


def test_check_registers_the_device(published):
    published.request("HEAD", "/firmware/check?device=reg-1&version=0.14.2&"
                      "product=wled")
    published.wait_for(lambda: published.otactl(
        "device", "show", "reg-1", check=False).returncode == 0)
    dev = published.otactl("device", "show", "reg-1", json_out=True)
    assert dev["version"] == "0.14.2"
    assert dev["product"] == "wled"
    assert dev["address"] == "127.0.0.1"
    assert dev["checks"] == 1
    assert dev["attempts"] == []
    first = dev["first_seen"]
    time.sleep(1.1)
    published.get("/firmware/check?device=reg-1&version=0.14.2")
    published.wait_for(lambda: published.otactl(
        "device", "show", "reg-1", json_out=True)["checks"] == 2)
    dev = published.otactl("device", "show", "reg-1", json_out=True)
    assert dev["first_seen"] == first and dev["last_seen"] > first
    published.wait_for(lambda: published.otactl(
        "device", "show", "reg-1", json_out=True)["attempts"][0]["state"]
        == "downloading", what="the delivered image to be noted")
    a = published.otactl("device", "show", "reg-1", json_out=True)[
        "attempts"][0]
    assert (a["from_version"], a["to_version"]) == ("0.14.2", "0.14.3")


def last_state(d, dev):
    """The state of dev's newest attempt; None until the writer has it."""
    p = d.otactl("device", "show", dev, check=False, json_out=True)
    if not isinstance(p, dict) or not p["attempts"]:
        return None
    return p["attempts"][0]["state"]


def test_back_on_the_old_version_is_a_rollback(published):
    """The whole image went out; the device rebooted (its uptime says so)
    and runs what it ran before: the image did not stay. It is not
    offered the same again."""
    assert published.get("/firmware/check?device=rb&version=0.14.2"
                         ).status == 200
    published.wait_for(lambda: last_state(published, "rb") == "downloading")
    time.sleep(1.1)
    r = published.get("/firmware/check?device=rb&version=0.14.2",
                      {"X-Uptime": "0"})
    assert r.status == 304
    published.wait_for(lambda: last_state(published, "rb") == "rollback")
    a = published.otactl("device", "show", "rb", json_out=True)["attempts"]
    assert len(a) == 1 and a[0]["reason"] == "back on 0.14.2"
    assert published.get("/firmware/check?device=rb&version=0.14.2"
                         ).status == 304
    # a device that only polls again (no reboot seen: perhaps the image
    # never reached it) is not a rollback: it may try again
    assert published.get("/firmware/check?device=re&version=0.14.2"
                         ).status == 200
    published.wait_for(lambda: last_state(published, "re") == "downloading")
    assert published.get("/firmware/check?device=re&version=0.14.2",
                         {"X-Uptime": "99999"}).status == 200
    assert published.get("/firmware/check?device=re&version=0.14.2"
                         ).status == 200
    # reported installed, then back on the old version: a rollback
    r = published.post_json("/firmware/report", {
        "device": "re", "version": "0.14.3", "result": "installed"})
    assert r.status == 200, r.body
    assert published.get("/firmware/check?device=re&version=0.14.2"
                         ).status == 304
    published.wait_for(lambda: last_state(published, "re") == "rollback",
                       what=f"a rollback, not {last_state(published, 're')}")


def test_running_the_offered_version_is_a_success(published):
    published.get("/firmware/check?device=s1&version=0.14.2")
    published.get("/firmware/check?device=s1&version=0.14.3")

    def state():
        p = published.otactl("device", "show", "s1", check=False,
                             json_out=True)
        return p["attempts"][0]["state"] if isinstance(p, dict) else None
    published.wait_for(lambda: state() == "success",
                       what="the attempt to succeed")


def test_nothing_published_means_304(otad):
    r = otad.get("/firmware/check?device=x&version=1.0.0")
    assert r.status == 304


def test_product_limited_release(otad):
    otad.publish(WLED / "0.14.3.bin", "0.14.3", product="wled")
    otad.wait_for(lambda: any("offering 0.14.3" in l for l in otad.log))
    assert otad.get("/firmware/check?device=p1&version=0.14.2&"
                    "product=wled").status == 200
    assert otad.get("/firmware/check?device=p2&version=0.14.2&"
                    "product=other").status == 304
    assert otad.get("/firmware/check?device=p3&version=0.14.2").status == 304


def test_newer_publish_supersedes(published):
    published.publish(WLED / "0.14.4.bin", "0.14.4")
    published.wait_for(lambda: any("offering 0.14.4" in l
                                   for l in published.log))
    r = published.get("/firmware/check?device=n1&version=0.14.3")
    assert r.status == 200
    assert r.headers["x-firmware-version"] == "0.14.4"
    assert r.body == (WLED / "0.14.4.bin").read_bytes()


@pytest.mark.parametrize("query,headers,needle", [
    ("", {}, "missing device id"),
    ("?device=d1", {}, "missing current version"),
    ("?device=" + "a" * 65 + "&version=1.0", {}, "invalid device id"),
    ("?device=has%20space&version=1.0", {}, "invalid device id"),
    ("?device=a%2Fb&version=1.0", {}, "invalid device id"),
    ("?device=d1&version=" + "1" * 65, {}, "invalid version"),
    ("?device=d1&version=1.0%01", {}, "invalid version"),
    ("?device=d1&version=1.0%0a", {}, "invalid version"),
    ("?device=d1&version=1.0&product=a%20b", {}, "invalid product"),
])
def test_bad_identity_gets_400_and_writes_nothing(published, query, headers,
                                                  needle):
    r = published.get("/firmware/check" + query, headers)
    assert r.status == 400
    assert needle in r.json()["error"]
    assert published.otactl("device", "list", json_out=True) == []


def test_control_character_in_header_value(published):
    r = published.raw(b"GET /firmware/check HTTP/1.1\r\nHost: x\r\n"
                      b"X-Device-ID: dev\x01ice\r\nX-Current-Version: 1.0\r\n"
                      b"Connection: close\r\n\r\n")
    assert 400 <= r.status < 500
    assert published.otactl("device", "list", json_out=True) == []


def test_headers_over_the_cap_get_413(published):
    r = published.get("/firmware/check?device=big&version=1.0",
                      {"X-Filler": "a" * 9000})
    assert r.status == 413
    assert r.json()["error"] == "request headers are too large"
    r = published.get("/firmware/check?device=big&version=1.0",
                      {f"X-F{i}": "a" * 200 for i in range(60)})
    assert r.status == 413
    assert published.otactl("device", "list", json_out=True) == []


def test_unknown_path_and_wrong_method(published):
    r = published.get("/firmware/nothing")
    assert r.status == 404 and r.json()["error"] == "no such path"
    r = published.request("POST", "/firmware/check", body=b"x")
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD"
    r = published.request("DELETE", "/firmware/report")
    assert r.status == 405 and r.headers["allow"] == "POST"
    r = published.get("/firmware/report")
    assert r.status == 405


@pytest.mark.sqlite_once  # the HTTP layer alone: run once
def test_garbage_request_line_does_not_crash(published):
    for junk in [b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n",
                 b"GET / HTTP/9.9\r\n\r\n", b"A" * 70000 + b"\r\n\r\n"]:
        published.raw(junk, timeout=3)
    assert published.get("/health").status == 200
