"""Every real client: manifest readers, Arduino-ESP32 and ESP8266 updaters."""
import base64
import json

from conftest import WLED, arduino_request, md5, sha256


def test_manifest_says_what_check_would(published):
    r = published.get("/firmware/manifest?device=m1&version=0.14.2")
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    m = r.json()
    assert m == {"update": True, "version": "0.14.3",
                 "size": len(published.image), "sha256": published.sha,
                 "md5": md5(published.image),
                 "url": f"/firmware/artifacts/{published.sha}",
                 "forced": False}
    # the url serves exactly that
    img = published.get(m["url"]).body
    assert sha256(img) == m["sha256"] and len(img) == m["size"]
    r = published.get("/firmware/manifest?device=m2&version=0.14.3")
    assert r.json() == {"update": False}
    # the same refusals as the check path
    r = published.get("/firmware/manifest?device=m3")
    assert r.status == 400 and "version" in r.json()["error"]
    assert published.request("POST", "/firmware/manifest",
                             body=b"{}").status == 405
    # a manifest answer opens the attempt like an image would
    published.wait_for(lambda: published.otactl(
        "device", "show", "m1", check=False).returncode == 0)
    dev = published.otactl("device", "show", "m1", json_out=True)
    assert dev["attempts"][0]["state"] == "offered"


def test_manifest_carries_the_signature(tmp_path):
    from conftest import Otad
    d = Otad(tmp_path, "require_signature = yes\n")
    d.otactl("key", "generate", "fleet")
    sha = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"), "--version",
                   "0.14.3").stdout.strip()
    d.otactl("artifact", "sign", sha, "--key", "fleet")
    d.otactl("release", "create", "0.14.3", "--artifact", sha)
    d.otactl("release", "publish", "0.14.3")
    d.start()
    try:
        m = d.get("/firmware/manifest?device=s&version=0.1").json()
        assert m["key_id"] == "fleet"
        assert base64.b64decode(m["signature"])
        r = d.get("/firmware/check?device=s&version=0.1")
        assert r.headers["x-firmware-signature"] == m["signature"]
    finally:
        d.check_clean_exit()


def test_arduino_free_space_defers(published):
    img = published.image
    small = arduino_request("/ota/firmware.bin", "24:0A:C4:00:00:09",
                            "0.14.2", published.port,
                            free_space=len(img) - 1)
    r = published.raw(small)
    assert r.status == 304
    assert r.headers["x-update-deferred"] == "space"
    published.wait_for(lambda: published.otactl(
        "device", "show", "24:0A:C4:00:00:09", check=False).returncode == 0)
    dev = published.otactl("device", "show", "24:0A:C4:00:00:09",
                           json_out=True)
    assert dev["deferred"] == "space" and dev["free_space"] == len(img) - 1
    assert "space" in published.otactl("device", "show",
                                       "24:0A:C4:00:00:09").stdout
    # with room, it gets the image, and the deferral is cleared
    r = published.raw(arduino_request("/ota/firmware.bin",
                                      "24:0A:C4:00:00:09", "0.14.2",
                                      published.port, free_space=len(img)))
    assert r.status == 200 and r.body == img
    published.wait_for(lambda: published.otactl(
        "device", "show", "24:0A:C4:00:00:09",
        json_out=True)["deferred"] is None)
    m = published.get("/firmware/manifest?version=0.14.2",
                      {"x-ESP32-STA-MAC": "24:0A:C4:00:00:0A",
                       "x-ESP32-free-space": "1000"}).json()
    assert m == {"update": False, "deferred": "space"}


def test_each_304_says_its_own_reason_on_every_thread(published):
    """Each HTTP thread answers 304s of its own, one per reason: devices
    polling at once on kept-alive connections (both threads answer),
    some deferred for room and some up to date, each get their own
    answer's header, and the up-to-date ones none."""
    import http.client
    import threading
    small = str(len(published.image) - 1)
    wrong = []

    def poll(n):
        c = http.client.HTTPConnection("127.0.0.1", published.port,
                                       timeout=10)
        for i in range(40):
            dev = f"r{n}-{i % 4}"
            if i % 2:
                h = {"X-Device-ID": dev, "X-Current-Version": "0.14.2",
                     "x-ESP32-free-space": small}
                want = "space"
            else:
                h = {"X-Device-ID": dev, "X-Current-Version": "0.14.3"}
                want = None
            c.request("GET", "/firmware/check", headers=h)
            r = c.getresponse()
            r.read()
            got = (r.status, r.getheader("X-Update-Deferred"))
            if got != (304, want):
                wrong.append((dev, i, got))
        c.close()

    pollers = [threading.Thread(target=poll, args=(n,)) for n in range(8)]
    for t in pollers:
        t.start()
    for t in pollers:
        t.join()
    assert wrong == []


def test_esp8266_httpupdate_headers(published):
    req = ("GET /ota/firmware.bin HTTP/1.0\r\n"
           f"Host: 127.0.0.1:{published.port}\r\n"
           "User-Agent: ESP8266-http-Update\r\n"
           "Connection: close\r\n"
           "x-ESP8266-STA-MAC: CC:50:E3:17:C4:11\r\n"
           "x-ESP8266-AP-MAC: CE:50:E3:17:C4:11\r\n"
           "x-ESP8266-free-space: 3874816\r\n"
           "x-ESP8266-sketch-size: 296800\r\n"
           "x-ESP8266-sketch-md5: 789996d857d880c882d6f3cb6bffdf34\r\n"
           "x-ESP8266-chip-size: 4194304\r\n"
           "x-ESP8266-sdk-version: 2.2.1(cfd48f3)\r\n"
           "x-ESP8266-mode: sketch\r\n"
           "x-ESP8266-version: 0.14.3\r\n\r\n").encode()
    r = published.raw(req)
    assert r.status == 304
    published.wait_for(lambda: published.otactl(
        "device", "show", "CC:50:E3:17:C4:11", check=False).returncode == 0)
    dev = published.otactl("device", "show", "CC:50:E3:17:C4:11",
                           json_out=True)
    assert dev["version"] == "0.14.3" and dev["free_space"] == 3874816


def test_bad_free_space(published):
    for v in ["-1", "abc", "99999999999"]:
        r = published.get("/firmware/check?device=f&version=0.1",
                          {"x-ESP32-free-space": v})
        assert r.status == 400 and "free space" in r.json()["error"]
