"""Stock ESP32 clients, unmodified, against the real daemon.

Each test sends what the client's own code sends (method, HTTP version,
header names, case and order, Range arithmetic) and reads the answer the
way that code reads it, then asserts what the device would end up with:
the bytes it would flash, or that it stays put. The source lines imitated
are cited where they are used:

- Arduino-ESP32 HTTPUpdate 3.x: libraries/HTTPUpdate/src/HTTPUpdate.cpp,
  handleUpdate(); 2.0.x sends the same without x-ESP32-BASE-MAC.
  HTTPClient.cpp, sendHeader(): request line, Host, User-Agent,
  Connection, Authorization, then the added headers in order.
- ESP-IDF esp_https_ota: components/esp_https_ota/src/esp_https_ota.c,
  esp_https_ota_begin() and esp_https_ota_perform() (partial download,
  ota_resumption); esp_http_client.c, esp_http_client_open() (User-Agent
  "ESP32 HTTP Client/1.0", Host, Content-Length: 0) and the 401 handling.
- idf-extra-components esp_delta_ota/examples/https_delta_ota/main/main.c.
"""
import base64
import socket
import time
import subprocess

import pytest

from conftest import (OTACTL, WLED, FIRMWARE, Otad, md5, parse_raw,
                      read_until_closed, sha256)
from imagebuild import app_sha256

OLD = (WLED / "0.14.2.bin").read_bytes()
NEW = (WLED / "0.14.3.bin").read_bytes()
NEWER = (WLED / "0.14.4.bin").read_bytes()
C3 = (FIRMWARE / "wled-esp32c3" / "0.14.1.bin").read_bytes()
ESP_HTTP_CLIENT_UA = "ESP32 HTTP Client/1.0"  # esp_http_client.c


# ---- Arduino-ESP32 HTTPUpdate ------------------------------------------

def httpupdate(port, path, major=3, base_mac="24:0A:C4:00:01:00",
               sta_mac="24:0A:C4:00:01:00", version=None, mode="sketch",
               sketch_sha256=None, free_space=1310720, chip_size=4194304,
               basic=None):
    """The request of httpUpdate.update(client, url[, version]) and of
    updateSpiffs/updateFs/updateLittlefs/updateFatfs (mode)."""
    # HTTPClient::sendHeader: useHTTP10(true) makes it HTTP/1.0, close
    lines = [f"GET {path} HTTP/1.0", f"Host: 127.0.0.1:{port}",
             "User-Agent: ESP32-http-Update", "Connection: close"]
    if basic:  # http://user:pass@host/... in the URL: sent at once
        lines.append("Authorization: Basic " +
                     base64.b64encode(basic.encode()).decode())
    lines.append("Cache-Control: no-cache")
    if major >= 3:  # http.addHeader("x-ESP32-BASE-MAC", ...)
        lines.append(f"x-ESP32-BASE-MAC: {base_mac}")
    if sta_mac:  # #if SOC_WIFI_SUPPORTED (3.x); always in 2.x
        lines += [f"x-ESP32-STA-MAC: {sta_mac}",
                  "x-ESP32-AP-MAC: 24:0A:C4:00:01:01"]
    lines += [f"x-ESP32-free-space: {free_space}",
              "x-ESP32-sketch-size: 1286112",
              "x-ESP32-sketch-md5: 5c3d8fa3c3807f5431a87409ec479d57"]
    if sketch_sha256:  # getSketchSHA256(): upper-case hex
        lines.append(f"x-ESP32-sketch-sha256: {sketch_sha256.upper()}")
    lines += [f"x-ESP32-chip-size: {chip_size}",
              "x-ESP32-sdk-version: v5.1.4-586-gb6b4727c58",
              f"x-ESP32-mode: {mode}"]
    if version:  # only when currentVersion is not empty
        lines.append(f"x-ESP32-version: {version}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def httpupdate_result(r, mode="sketch"):
    """What handleUpdate() makes of the answer: the bytes it writes, or
    its result. 3.x collects x-MD5 and x-SHA256 and the updater checks
    both; only in sketch mode does it look for the 0xE9 magic."""
    if r.status in (304, 204):
        return "HTTP_UPDATE_NO_UPDATES"
    if r.status != 200:
        return {404: "HTTP_UE_SERVER_FILE_NOT_FOUND",
                403: "HTTP_UE_SERVER_FORBIDDEN"}.get(
                    r.status, "HTTP_UE_SERVER_WRONG_HTTP_CODE")
    if int(r.headers.get("content-length", "0")) <= 0:
        return "HTTP_UE_SERVER_NOT_REPORT_SIZE"
    if mode == "sketch" and r.body[:1] != b"\xe9":
        return "HTTP_UE_BIN_VERIFY_HEADER_FAILED"
    if "x-md5" in r.headers and r.headers["x-md5"] != md5(r.body):
        return "HTTP_UE_SERVER_FAULTY_MD5"
    if "x-sha256" in r.headers and r.headers["x-sha256"] != sha256(r.body):
        return "HTTP_UE_SERVER_FAULTY_SHA256"
    return r.body


def show(d, dev):
    d.wait_for(lambda: d.otactl("device", "show", dev,
                                check=False).returncode == 0)
    return d.otactl("device", "show", dev, json_out=True)


@pytest.fixture
def wled(tmp_path):
    """0.14.3 published; 0.14.2 in the store, as an image devices run."""
    d = Otad(tmp_path)
    d.otactl("artifact", "add", str(WLED / "0.14.2.bin"), "--version",
             "0.14.2")
    d.sha = d.publish(WLED / "0.14.3.bin", "0.14.3")
    d.start()
    yield d
    d.check_clean_exit()


def test_httpupdate3_stock_call_without_a_version(wled):
    """httpUpdate.update(client, url), as the library's examples call it:
    no x-ESP32-version. The running image's digest names 0.14.2 in the
    store, so that is its version."""
    req = httpupdate(wled.port, "/ota/firmware.bin",
                     sketch_sha256=app_sha256(OLD))
    r = wled.raw(req)
    assert httpupdate_result(r) == NEW
    assert r.headers["x-sha256"] == sha256(NEW)  # 3.x checks it
    assert r.headers["x-md5"] == md5(NEW)
    dev = show(wled, "24:0A:C4:00:01:00")
    assert dev["version"] == "0.14.2"
    assert dev["attempts"][0]["to_version"] == "0.14.3"
    # after the reboot it runs 0.14.3: up to date, and the attempt succeeded
    r = wled.raw(httpupdate(wled.port, "/ota/firmware.bin",
                            sketch_sha256=app_sha256(NEW)))
    assert httpupdate_result(r) == "HTTP_UPDATE_NO_UPDATES"
    wled.wait_for(lambda: show(wled, "24:0A:C4:00:01:00")["attempts"][0]
                  ["state"] == "success")
    assert show(wled, "24:0A:C4:00:01:00")["version"] == "0.14.3"


def test_httpupdate_unknown_image_is_decided_by_its_digest(wled):
    """A device running an image otad never stored, sending no version:
    offered what differs from it, recorded with its digest and an
    unknown version; once on the offered image it is known."""
    mine = "ab" * 32
    r = wled.raw(httpupdate(wled.port, "/ota/firmware.bin",
                            base_mac="24:0A:C4:00:02:00", sta_mac=None,
                            sketch_sha256=mine))
    assert httpupdate_result(r) == NEW
    dev = show(wled, "24:0A:C4:00:02:00")
    assert dev["version"] is None and dev["running_sha256"] == mine
    assert dev["attempts"][0]["from_version"] == ""
    r = wled.raw(httpupdate(wled.port, "/ota/firmware.bin",
                            base_mac="24:0A:C4:00:02:00", sta_mac=None,
                            sketch_sha256=app_sha256(NEW)))
    assert httpupdate_result(r) == "HTTP_UPDATE_NO_UPDATES"
    wled.wait_for(lambda: show(wled, "24:0A:C4:00:02:00")["version"] ==
                  "0.14.3")
    # with neither a version nor a digest there is nothing to go by
    bare = httpupdate(wled.port, "/ota/firmware.bin").replace(
        b"x-ESP32-sketch-md5", b"x-ESP32-sketch-mdX")
    r = wled.raw(bare)
    assert r.status == 400 and "digest" in r.json()["error"]


def test_httpupdate2_and_3_with_a_version(wled):
    # 2.0.x: STA and AP MACs, no BASE MAC
    r = wled.raw(httpupdate(wled.port, "/ota/firmware.bin", major=2,
                            sta_mac="24:0A:C4:00:03:00", version="0.14.2",
                            sketch_sha256=app_sha256(OLD)))
    assert httpupdate_result(r) == NEW
    r = wled.raw(httpupdate(wled.port, "/ota/firmware.bin", major=2,
                            sta_mac="24:0A:C4:00:03:01", version="0.14.3"))
    assert httpupdate_result(r) == "HTTP_UPDATE_NO_UPDATES"
    # 2.0.x's stock call without a version: its digest tells
    r = wled.raw(httpupdate(wled.port, "/ota/firmware.bin", major=2,
                            sta_mac="24:0A:C4:00:03:02",
                            sketch_sha256=app_sha256(NEW)))
    assert httpupdate_result(r) == "HTTP_UPDATE_NO_UPDATES"
    r = wled.raw(httpupdate(wled.port, "/ota/firmware.bin", major=2,
                            sta_mac="24:0A:C4:00:03:03",
                            sketch_sha256=app_sha256(OLD)))
    assert httpupdate_result(r) == NEW
    # 3.x on a chip without Wi-Fi (ESP32-H2): only the BASE MAC names it
    r = wled.raw(httpupdate(wled.port, "/ota/firmware.bin",
                            base_mac="24:0A:C4:00:04:00", sta_mac=None,
                            version="0.14.2"))
    assert httpupdate_result(r) == NEW
    assert show(wled, "24:0A:C4:00:04:00")["version"] == "0.14.2"
    # too little room in the OTA slot: it would fail writing; it waits
    r = wled.raw(httpupdate(wled.port, "/ota/firmware.bin",
                            base_mac="24:0A:C4:00:05:00", version="0.14.2",
                            free_space=len(NEW) - 1))
    assert httpupdate_result(r) == "HTTP_UPDATE_NO_UPDATES"
    assert r.headers["x-update-deferred"] == "space"


def littlefs_image(size=64 * 1024, seed=1):
    """A littlefs image as mklittlefs lays it out: a superblock in
    blocks 0 and 1, the magic "littlefs" at offset 8 of each."""
    img = bytearray((i * 31 + seed) & 0xFF for i in range(size))
    for block in (0, 4096):
        img[block:block + 8] = (block // 4096 + 1).to_bytes(4, "little") \
            + b"\x00\x00\x00\x10"
        img[block + 8:block + 16] = b"littlefs"
    img[0] = 0x03  # never mistaken for an app image
    return bytes(img)


def test_filesystem_modes_get_only_filesystem_images(wled, tmp_path):
    mac = "24:0A:C4:00:06:00"

    def ask(mode, version=None, chip_size=4194304):
        return wled.raw(httpupdate(wled.port, "/ota/firmware.bin",
                                   base_mac=mac, sta_mac=None,
                                   version=version, mode=mode,
                                   sketch_sha256=app_sha256(NEW),
                                   chip_size=chip_size))

    # nothing of that kind released: never the app into the file system
    for mode in ("spiffs", "littlefs", "fatfs", "flashfs", "nvs"):
        r = ask(mode)
        assert httpupdate_result(r, mode) == "HTTP_UPDATE_NO_UPDATES", mode
        assert r.headers["x-update-deferred"] == "mode"
    fs = littlefs_image()
    (tmp_path / "fs.bin").write_bytes(fs)
    # otactl refuses an app as a file system, and a file system as an app
    p = wled.otactl("artifact", "add", str(WLED / "0.14.3.bin"), "--kind",
                    "littlefs", "--version", "1.0.0", check=False)
    assert p.returncode != 0 and "app image" in p.stderr
    p = wled.otactl("artifact", "add", str(tmp_path / "fs.bin"),
                    "--version", "1.0.0", check=False)
    assert p.returncode != 0
    (tmp_path / "odd.bin").write_bytes(fs[:5000])
    p = wled.otactl("artifact", "add", str(tmp_path / "odd.bin"), "--kind",
                    "spiffs", "--version", "1.0.0", check=False)
    assert p.returncode != 0 and "sectors" in p.stderr
    (tmp_path / "nolfs.bin").write_bytes(bytes(8192))
    p = wled.otactl("artifact", "add", str(tmp_path / "nolfs.bin"),
                    "--kind", "littlefs", "--version", "1.0.0", check=False)
    assert p.returncode != 0 and "superblock" in p.stderr
    sha = wled.otactl("artifact", "add", str(tmp_path / "fs.bin"), "--kind",
                      "littlefs", "--version", "2024.1.0").stdout.strip()
    assert wled.otactl("artifact", "show", sha,
                       json_out=True)["kind"] == "littlefs"
    wled.otactl("release", "create", "2024.1.0", "--artifact", sha)
    wled.otactl("release", "publish", "2024.1.0")
    wled.wait_for(lambda: any("offering 2024.1.0" in l for l in wled.log))
    # the app release is still the app's: publishing a file system did
    # not supersede it
    assert httpupdate_result(ask("sketch", "0.14.2")) == NEW
    # a file system larger than the flash cannot be written
    r = ask("flashfs", chip_size=32768)
    assert r.status == 304 and r.headers["x-update-deferred"] == "space"
    # littlefs and flashfs (3.x updateFs: whichever partition it has) get
    # the image, which HTTPUpdate writes as it is
    r = ask("littlefs")
    assert httpupdate_result(r, "littlefs") == fs
    assert r.headers["x-firmware-version"] == "2024.1.0"
    assert ask("spiffs").headers["x-update-deferred"] == "mode"
    assert ask("fatfs").headers["x-update-deferred"] == "mode"
    # sent whole: installed; the next poll without a version is up to date
    dev = show(wled, mac)
    wled.wait_for(lambda: show(wled, mac)["fs_version"] == "2024.1.0")
    r = ask("flashfs")
    assert httpupdate_result(r, "flashfs") == "HTTP_UPDATE_NO_UPDATES"
    dev = show(wled, mac)
    # its app version is what its app check said, whatever the file
    # system requests said since
    assert dev["version"] == "0.14.2"
    fsatt = [a for a in dev["attempts"] if a["to_version"] == "2024.1.0"]
    assert fsatt and fsatt[0]["state"] == "success"
    # a device that names its file system version is judged by it
    assert httpupdate_result(ask("littlefs", "2023.9.0"), "littlefs") == fs
    assert httpupdate_result(ask("littlefs", "2024.1.0"),
                             "littlefs") == "HTTP_UPDATE_NO_UPDATES"


# ---- esp_http_client / esp_https_ota ------------------------------------

def idf_request(port, path, method="GET", range_=None, authorization=None):
    """esp_http_client_open(): the request line, then its header list in
    the order it was built (User-Agent and Host at init, Authorization
    after a challenge, Range when set), Content-Length of write_len 0."""
    lines = [f"{method} {path} HTTP/1.1",
             f"User-Agent: {ESP_HTTP_CLIENT_UA}",
             f"Host: 127.0.0.1:{port}"]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    if range_:
        lines.append(f"Range: {range_}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class KeepAlive:
    """One TCP connection read the way esp_http_client reads: headers,
    then Content-Length bytes (none for HEAD, 304)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""

    def exchange(self, data, head=False):
        self.s.sendall(data)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            assert chunk, "connection closed before an answer"
            self.buf += chunk
        hdr, _, self.buf = self.buf.partition(b"\r\n\r\n")
        r = parse_raw(hdr + b"\r\n\r\n")
        n = 0 if head or r.status == 304 else \
            int(r.headers.get("content-length", "0"))
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            assert chunk, "connection closed in the body"
            self.buf += chunk
        r.body, self.buf = self.buf[:n], self.buf[n:]
        return r

    def close(self):
        self.s.close()


def once(port, data, head=False):
    """esp_https_ota closes the connection after every range request
    (esp_http_client_close unless support_persistent_connection)."""
    c = KeepAlive(port)
    try:
        return c.exchange(data, head)
    finally:
        c.close()


def partial_download(port, url, max_request):
    """esp_https_ota with partial_http_download: HEAD for the length, then
    ranges of max_http_request_size, the last one open-ended."""
    r = once(port, idf_request(port, url, "HEAD"), head=True)
    assert r.status == 200, r.status  # "Received incorrect http status"
    image_length = int(r.headers["content-length"])
    got = bytearray()
    # esp_https_ota_begin: range_end = start + max - 1, or image_length
    end = max_request - 1 if image_length > max_request else image_length
    first = f"bytes=0-{end}" if end < image_length else None
    r = once(port, idf_request(port, url, range_=first))
    assert r.status in (200, 206)
    got += r.body
    while len(got) < image_length:
        # esp_https_ota_perform: "bytes=%d-%d", or "bytes=%d-" for the rest
        if image_length - len(got) > max_request:
            rng = f"bytes={len(got)}-{len(got) + max_request - 1}"
        else:
            rng = f"bytes={len(got)}-"
        r = once(port, idf_request(port, url, range_=rng))
        assert r.status == 206, (rng, r.status, r.body[:200])
        got += r.body
    return bytes(got)


@pytest.mark.parametrize("size", [4096, 16384])
def test_esp_https_ota_partial_download_counts_once(tmp_path, size):
    """Every range is a request; the ranges of one download are one
    download against rate_per_device, here a tight 5 a minute."""
    d = Otad(tmp_path, "rate_per_device = 5\n")
    d.otactl("artifact", "add", str(WLED / "0.14.2.bin"), "--version",
             "0.14.2")
    d.publish(WLED / "0.14.3.bin", "0.14.3")
    d.start()
    try:
        url = f"/firmware/check?device=p{size}&version=0.14.2"
        assert partial_download(d.port, url, size) == NEW
        # the same device's plain requests still meet the cap (twice
        # what it allows: the cap refills one every 12 s, and a loaded
        # machine may take that long over the download)
        codes = [once(d.port, idf_request(d.port, url)).status
                 for _ in range(10)]
        assert 429 in codes
    finally:
        d.check_clean_exit()


def resumed_download(port, url, cut, between=None):
    """esp_https_ota with ota_resumption: every start asks "bytes=N-"
    (N = 0 on a fresh one) and needs 206; any other answer makes it fall
    back to a download from 0 without Range (esp_https_ota_begin:
    ESP_ERR_HTTP_RANGE_NOT_SATISFIABLE). Returns the flashed bytes."""
    r = once(port, idf_request(port, url, range_="bytes=0-"))
    assert r.status == 206
    written = r.body[:cut]  # the link dropped after cut bytes
    if between:
        between()
    r = once(port, idf_request(port, url, range_=f"bytes={len(written)}-"))
    if r.status == 206:
        assert r.headers["content-range"].startswith(f"bytes {cut}-")
        return written + r.body
    assert r.status == 200  # "Server ignored the requested Range header"
    r = once(port, idf_request(port, url))
    assert r.status == 200
    return r.body


def test_esp_https_ota_plain(wled):
    """esp_https_ota(&config) with the check URL: one GET; a 304 is
    ESP_ERR_HTTP_NOT_MODIFIED (5.x _http_handle_response_code)."""
    url = "/firmware/check?device=plain1&version=0.14.2"
    r = once(wled.port, idf_request(wled.port, url))
    assert r.status == 200 and r.body == NEW
    assert int(r.headers["content-length"]) == len(NEW)
    r = once(wled.port, idf_request(
        wled.port, "/firmware/check?device=plain1&version=0.14.3"))
    assert r.status == 304 and r.body == b""


def test_esp_https_ota_resumption_never_splices(wled):
    url = "/firmware/check?device=res1&version=0.14.2"
    assert resumed_download(wled.port, url, 500000) == NEW
    # a release published between the cut and the resume: the whole new
    # image from 0, never its second half after the old first half
    url = "/firmware/check?device=res2&version=0.14.2"

    def publish_newer():
        wled.publish(WLED / "0.14.4.bin", "0.14.4")
        wled.wait_for(lambda: any("offering 0.14.4" in l for l in wled.log))
    flashed = resumed_download(wled.port, url, 500000, publish_newer)
    assert flashed == NEWER
    # a later cut continues the image it downloads now, 0.14.4
    r = once(wled.port, idf_request(wled.port, url, range_="bytes=600000-"))
    assert r.status == 206 and r.body == NEWER[600000:]
    # the artifact path with a stale If-Range: the whole file
    r = wled.get(f"/firmware/artifacts/{sha256(NEWER)}",
                 {"Range": "bytes=10-19", "If-Range": f'"{wled.sha}"'})
    assert r.status == 200 and r.body == NEWER


def test_resume_continues_an_image_still_offered(tmp_path):
    """A staged rollout of 0.14.4 reaches the device while 0.14.3 (its
    download under way) is still published: it finishes 0.14.3."""
    d = Otad(tmp_path)
    d.otactl("artifact", "add", str(WLED / "0.14.2.bin"), "--version",
             "0.14.2")
    d.publish(WLED / "0.14.3.bin", "0.14.3")
    sha = d.otactl("artifact", "add", str(WLED / "0.14.4.bin"),
                   "--version", "0.14.4").stdout.strip()
    d.otactl("release", "create", "0.14.4", "--artifact", sha)
    d.start()
    try:
        url = "/firmware/check?device=stay&version=0.14.2"

        def stage_newer():
            out = d.otactl("rollout", "create", "0.14.4", "--stages",
                           "100%", json_out=True)
            d.otactl("rollout", "start", str(out["id"]))
            d.wait_for(lambda: once(d.port, idf_request(
                d.port, "/firmware/check?device=other&version=0.14.2",
                "HEAD"), head=True).headers.get("x-firmware-version") ==
                "0.14.4", 10, "the rollout to reach devices")
        d.wait_for(lambda: any("offering 0.14.3" in l for l in d.log))
        assert resumed_download(d.port, url, 400000, stage_newer) == NEW
        # its next check, on 0.14.3, gets the newer release from 0
        r = once(d.port, idf_request(
            d.port, "/firmware/check?device=stay&version=0.14.3",
            range_="bytes=0-"))
        assert r.status == 206 and r.body == NEWER
    finally:
        d.check_clean_exit()


def test_url_credentials_with_device_tokens(tmp_path):
    """http://ID:TOKEN@host/... with esp_http_client's default auth_type:
    nothing until a challenge, then Basic if the challenge starts so."""
    d = Otad(tmp_path, "device_auth = token\n")
    d.publish(WLED / "0.14.3.bin", "0.14.3")
    tokens = {dev: d.otactl("device", "add", dev).stdout.split()[-1]
              for dev in ("lamp-7", "24:0A:C4:00:07:00")}
    d.start()
    try:
        for dev, token in tokens.items():
            c = KeepAlive(d.port)
            url = "/firmware/check?version=0.14.2"
            r = c.exchange(idf_request(d.port, url))
            assert r.status == 401
            # esp_http_client joins the values and looks at the start
            assert r.headers["www-authenticate"].startswith("Basic")
            # esp_http_client_set_url: user = before the first colon of
            # the URL's userinfo, password = the rest; http_auth_basic
            # joins them again with one colon
            user, _, password = f"{dev}:{token}".partition(":")
            basic = base64.b64encode(f"{user}:{password}".encode())
            r = c.exchange(idf_request(d.port, url,
                                       authorization="Basic " +
                                       basic.decode()))
            c.close()
            assert r.status == 200 and r.body == NEW, dev
            assert show(d, dev)["version"] == "0.14.2"
        # a challenge is not a failed guess: the address is not charged
        metrics = d.get("/metrics").body.decode()
        assert "otad_auth_failures_total 0" in metrics
        # a wrong token is, and gets 401 again
        bad = base64.b64encode(b"lamp-7:" + b"0" * 64).decode()
        r = once(d.port, idf_request(d.port, "/firmware/check?version=1",
                                     authorization="Basic " + bad))
        assert r.status == 401
        assert "otad_auth_failures_total 1" in d.get("/metrics").body.decode()
    finally:
        d.check_clean_exit()


# ---- the https_delta_ota example ----------------------------------------

def test_delta_example_fixed_url(tmp_path):
    d = Otad(tmp_path)
    d.otactl("artifact", "add", str(WLED / "0.14.2.bin"), "--version",
             "0.14.2")
    d.publish(WLED / "0.14.3.bin", "0.14.3")
    d.start()
    try:
        # the example's own request: esp_http_client_open(client, 0)
        def example(dev):
            return once(d.port, idf_request(d.port,
                                            f"/firmware/delta/{dev}"))
        # otad knows nothing of what it runs: no patch, never an image
        r = example("dx1")
        assert r.status == 409 and r.body[:1] != b"\xe9"
        # a check (or telemetry) recorded the image it runs
        d.get("/firmware/check", {"X-Device-ID": "dx1",
                                  "X-Running-SHA256": app_sha256(OLD),
                                  "Range": "bytes=0-0"})
        # the first 200 is the patch, delivered whole: the one to read
        got = []
        d.wait_for(lambda: got.append(example("dx1")) or
                   got[-1].status == 200, 120, "the patch to be built")
        r = got[-1]
        assert r.headers["x-firmware-delta"] == "esp_delta_ota"
        # main.c: the first 64 bytes are the patch header, checked against
        # the running partition's digest
        assert r.body[:4] == bytes.fromhex("10decdfc")
        assert r.body[4:36].hex() == app_sha256(OLD)
        (tmp_path / "p").write_bytes(r.body)
        subprocess.run([str(OTACTL), "delta", "apply",
                        str(WLED / "0.14.2.bin"), str(tmp_path / "p"), "-o",
                        str(tmp_path / "out")], check=True,
                       capture_output=True)
        assert (tmp_path / "out").read_bytes() == NEW
        # the example cannot report: sent whole, it is taken as installed,
        # and it is not sent a patch from the old image again
        d.wait_for(lambda: example("dx1").status == 304, 10,
                   "the device to count as updated")
        dev = show(d, "dx1")
        assert dev["version"] == "0.14.3"
        assert dev["running_sha256"] == app_sha256(NEW)
        assert d.get("/metrics").body.decode().count(
            "otad_delta_url_requests_total") == 3  # HELP, TYPE, value
        # Arduino clients never get a patch, whatever they say they accept
        for extra in ({"x-ESP32-BASE-MAC": "24:0A:C4:00:08:00"},
                      {"User-Agent": "ESP32-http-Update",
                       "X-Device-ID": "ua1"}):
            h = {"X-Current-Version": "0.14.2",
                 "X-Running-SHA256": app_sha256(OLD),
                 "X-Accept-Delta": "esp_delta_ota", **extra}
            r = d.get("/firmware/check", h)
            assert r.status == 200 and r.body == NEW
            assert "x-firmware-delta" not in r.headers
    finally:
        d.check_clean_exit()


# ---- one URL for every device ------------------------------------------

def test_fixed_url_without_identity(tmp_path):
    d = Otad(tmp_path, "latest_url = yes\n")
    d.publish(WLED / "0.14.3.bin", "0.14.3")
    d.start()
    try:
        # esp_https_ota's simple example: the configured URL, no headers
        r = once(d.port, idf_request(d.port, "/firmware/latest/lamp"))
        assert r.status == 200 and r.body == NEW
        assert r.headers["x-sha256"] == sha256(NEW)
        # a staged ring is for devices with an identity: not here
        sha = d.otactl("artifact", "add", str(WLED / "0.14.4.bin"),
                       "--version", "0.14.4").stdout.strip()
        d.otactl("release", "create", "0.14.4", "--artifact", sha)
        out = d.otactl("rollout", "create", "0.14.4", "--stages", "100%",
                       json_out=True)
        d.otactl("rollout", "start", str(out["id"]))
        d.wait_for(lambda: d.get("/firmware/check?device=z&version=0.14.3")
                   .status == 200)
        r = once(d.port, idf_request(d.port, "/firmware/latest/lamp"))
        assert r.body == NEW
        # partial download works on it too
        assert partial_download(d.port, "/firmware/latest/lamp", 65536) \
            == NEW
        # two chips released, none named: no guess; X-Chip or ?chip= picks
        d.publish(FIRMWARE / "wled-esp32c3" / "0.14.1.bin", "0.14.1-c3")
        d.wait_for(lambda: any("offering 0.14.1-c3" in l for l in d.log))
        r = once(d.port, idf_request(d.port, "/firmware/latest/lamp"))
        assert r.status == 304 and r.headers["x-update-deferred"] == "chip"
        r = once(d.port, idf_request(d.port,
                                     "/firmware/latest/lamp?chip=esp32c3"))
        assert r.status == 200 and r.body == C3
        m = d.get("/metrics").body.decode()
        assert "otad_latest_requests_total" in m
        assert "otad_latest_offers_total" in m
        assert d.get("/firmware/latest/bad%20name").status == 400
    finally:
        d.check_clean_exit()
    # off by default, and never together with device tokens
    (tmp_path / "off").mkdir()
    (tmp_path / "tokens").mkdir()
    d = Otad(tmp_path / "off")
    d.start()
    try:
        assert d.get("/firmware/latest/lamp").status == 404
    finally:
        d.check_clean_exit()
    bad = Otad(tmp_path / "tokens", "latest_url = yes\ndevice_auth = token\n")
    bad.start(wait=False)
    assert bad.proc.wait(20) != 0
    time.sleep(0.2)
    assert "latest_url" in bad.logtext()


def test_a_device_that_knows_its_chip_says_so(tmp_path):
    d = Otad(tmp_path)
    d.publish(WLED / "0.14.3.bin", "0.14.3")
    d.publish(FIRMWARE / "wled-esp32c3" / "0.14.1.bin", "0.14.1-c3")
    d.start()
    try:
        d.wait_for(lambda: any("offering 0.14.1-c3" in l for l in d.log))
        q = "/firmware/check?device=c1&version=0.1"
        r = d.get(q)
        assert r.status == 304 and r.headers["x-update-deferred"] == "chip"
        r = d.get(q, {"X-Chip": "esp32c3"})
        assert r.status == 200 and r.body == C3
        assert show(d, "c1")["chip"] == "esp32c3"
        # remembered: the next check need not say it
        assert d.get(q).body == C3
        r = d.get(q + "&chip=esp32")
        assert r.status == 200 and r.body == NEW
        assert d.get(q, {"X-Chip": "esp8266"}).status == 400
    finally:
        d.check_clean_exit()
