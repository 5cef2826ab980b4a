"""The pull-OTA libraries fleets already run, as they ship, against otad
over TLS: esp32FOTA, ESP32-OTA-Pull, ESPHome's http_request update and
esp_ghota. Each client below sends its library's own request and reads
the answer with the library's own rules (the source lines are cited),
so that a field the library needs and otad leaves out fails the test.

One story per library: a baseline release and a rollout to a canary
group. A device outside the ring is left on the baseline; a canary takes
the new release and, polling on, is left alone and counted an inferred
success; a canary whose update does not stay fetches it again, is
counted an inferred rollback and is not offered it again.
"""
import fnmatch
import re
import socket
import ssl
import time

import pytest

from conftest import WLED, Otad, md5, parse_raw, sha256
from imagebuild import app_sha256
from test_06_deploy import make_cert

OLD = (WLED / "0.14.2.bin").read_bytes()
NEW = (WLED / "0.14.3.bin").read_bytes()
SOAK = 2  # the canary stage's soak, seconds: inference waits for it


class Wire:
    """One HTTPS connection, read the way the ESP32 clients read: the
    headers, then Content-Length bytes (none, with -1, when chunked)."""

    def __init__(self, port, cafile):
        ctx = ssl.create_default_context(cafile=str(cafile))
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.port = port

    def get(self, request):
        self.s.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.s.recv(65536)
            assert chunk, "connection closed before an answer"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        r = parse_raw(head + b"\r\n\r\n")
        # every library here needs the length up front
        assert "chunked" not in r.headers.get("transfer-encoding", "")
        r.length = int(r.headers.get("content-length", "-1"))
        while len(buf) < r.length:
            chunk = self.s.recv(65536)
            assert chunk, "connection closed in the body"
            buf += chunk
        r.body = buf[:max(r.length, 0)]
        self.s.close()
        return r


def path_of(url, port):
    m = re.fullmatch(rf"https://127\.0\.0\.1:{port}(/.*)", url)
    assert m, f"not an absolute URL of this server: {url}"
    return m.group(1)


def arduino_get(port, path):
    """Arduino-ESP32 HTTPClient::sendHeader() (HTTPClient.cpp): the request
    line, Host with the port unless 80/443, User-Agent "ESP32HTTPClient",
    Connection: keep-alive (_reuse), Accept-Encoding for HTTP/1.1."""
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "User-Agent: ESP32HTTPClient\r\nConnection: keep-alive\r\n"
            "Accept-Encoding: identity;q=1,chunked;q=0.1,*;q=0\r\n"
            "\r\n").encode()


def idf_get(port, path, user_agent="ESP32 HTTP Client/1.0", extra=()):
    """esp_http_client_open() (esp_http_client.c): User-Agent and Host
    set at init, then headers set by the caller, Content-Length of
    write_len 0."""
    lines = [f"GET {path} HTTP/1.1", f"User-Agent: {user_agent}",
             f"Host: 127.0.0.1:{port}", *extra, "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def semver3(s):
    """The three numbers of a semver string, or None (the libraries'
    own semver.c parsers take MAJOR.MINOR.PATCH)."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?", s or "")
    return tuple(int(x) for x in m.groups()) if m else None


class Library:
    """A device running one library; version is what it runs."""

    def __init__(self, d, cafile, device, version="0.14.2"):
        self.d, self.cafile, self.device = d, cafile, device
        self.version = version
        self.fetches = 0

    def wire(self):
        return Wire(self.d.port, self.cafile)

    def poll(self, stays=True):
        """One check as the library does it; fetch and flash what it
        decides to. stays: a new image boots and stays."""
        url = self.check()
        if url is None:
            return None
        self.url = url
        self.fetches += 1
        r = self.download(path_of(url, self.d.port))
        if r is None:
            return "failed"
        if stays:
            self.version = self.listed
        return "updated"


class Esp32Fota(Library):
    """chrisjoyce911/esp32FOTA src/esp32FOTA.cpp."""
    name = "esp32fota"

    def manifest_path(self):
        # execHTTPcheck(): use_device_id appends "?id=" + getDeviceID(),
        # the eFuse MAC in decimal
        return f"/pull/esp32fota/WLED?id={self.device}"

    def check(self):
        r = self.wire().get(arduino_get(self.d.port, self.manifest_path()))
        # "only handle 200/301, fail on everything else"
        if r.status not in (200, 301):
            return None
        doc = r.json()
        entries = doc if isinstance(doc, list) else [doc]
        for e in entries:
            # checkJSONManifest(): strcmp(doc["type"], _cfg.name); a
            # missing "type" is strcmp(NULL, ...) on the device
            assert isinstance(e.get("type"), str), e
            if e["type"] != "WLED":
                continue
            v = e.get("version")
            payload = (v, 0, 0) if isinstance(v, int) and 0 <= v < 65536 \
                else semver3(v) if isinstance(v, str) else None
            assert payload is not None, f"invalid semver {v!r}: 0.0.0"
            # "url" wins; else host + port + bin
            url = e.get("url")
            assert isinstance(url, str), "JSON manifest was missing keys"
            # semver_compare(payload, current) == 1
            if payload > semver3(self.version):
                self.listed = v
                return url
        return None

    def download(self, path):
        # getHTTPStream(): GET, 200/301, getSize() must be > 0
        r = self.wire().get(arduino_get(self.d.port, path))
        if r.status not in (200, 301) or r.length <= 0:
            return None
        assert len(r.body) == r.length
        return r.body


class OtaPull(Library):
    """mikalhart/ESP32-OTA-Pull src/ESP32OTAPull.h, CheckForOTAUpdate()."""
    name = "otapull"
    board = "ESP32_DEV"  # ARDUINO_BOARD

    def manifest_path(self):
        # the sketch builds its JSON_URL with its MAC (WiFi.macAddress())
        return f"/pull/otapull/WLED?device={self.device}"

    def check(self):
        # DownloadJson(): http.GET() == 200, getString()
        r = self.wire().get(arduino_get(self.d.port, self.manifest_path()))
        if r.status != 200:
            return None
        doc = r.json()
        for config in doc["Configurations"]:
            board = config.get("Board") or ""
            device = config.get("Device") or ""
            cversion = config.get("Version") or ""
            cconfig = config.get("Config") or ""
            if (board in ("", self.board) and device in ("", self.device)
                    and cconfig == ""):
                # an empty Version would update every time
                assert cversion != "", config
                # String comparison: CVersion > String(version)
                if cversion > self.version:
                    self.listed = cversion
                    return config["URL"]
        return None

    def download(self, path):
        # DoOTAUpdate(): 200, totalLength = getSize(); the read loop runs
        # while offset < totalLength: no length, nothing written
        r = self.wire().get(arduino_get(self.d.port, path))
        if r.status != 200 or r.length <= 0:
            return None
        return r.body


class EspHome(Library):
    """esphome components/http_request/update/http_request_update.cpp
    update_task() and ota/ota_http_request.cpp do_ota_(), over
    http_request_idf.cpp (esp_http_client with the useragent option)."""
    name = "esphome"
    variant = "ESP32"  # ESPHOME_VARIANT
    ua = "ESPHome/2025.11.0 (https://esphome.io)"

    def manifest_path(self):
        # source: https://otad:8443/pull/esphome/WLED/${device_id}
        return f"/pull/esphome/WLED/{self.device}"

    def check(self):
        r = self.wire().get(idf_get(self.d.port, self.manifest_path(),
                                    self.ua))
        if r.status != 200:
            return None
        # allocate(container->content_length), then read it fully
        assert r.length > 0
        root = r.json()
        assert isinstance(root.get("name"), str)
        assert isinstance(root.get("version"), str)
        assert isinstance(root.get("builds"), list)
        found = None
        for build in root["builds"]:
            # "Manifest does not contain required fields"
            assert isinstance(build.get("chipFamily"), str), build
            if build["chipFamily"] == self.variant:
                ota = build["ota"]
                assert isinstance(ota.get("path"), str)
                assert isinstance(ota.get("md5"), str)
                found = ota
                break
        if found is None:
            return None  # "Failed to parse manifest JSON": no update
        url = found["path"]
        assert url.startswith("http"), "a relative path is merged"
        # latest empty or equal to ESPHOME_PROJECT_VERSION: no update;
        # any other version is one (not an ordering)
        if root["version"] == "" or root["version"] == self.version:
            return None
        self.listed = root["version"]
        self.md5 = found["md5"]
        self.md5_url = found.get("md5_url")
        return url

    def download(self, path):
        if self.md5_url:  # ota.http_request.flash with md5_url
            r = self.wire().get(idf_get(self.d.port,
                                        path_of(self.md5_url, self.d.port),
                                        self.ua))
            # http_get_md5_(): at least MD5_SIZE bytes, the first 32
            assert r.status == 200 and r.length >= 32
            assert r.body[:32].decode() == self.md5
        r = self.wire().get(idf_get(self.d.port, path, self.ua))
        if not 200 <= r.status < 300 or r.length <= 0:
            return None
        # the MD5 of what was read against the manifest's
        if md5(r.body) != self.md5:
            return None
        return r.body


class Ghota(Library):
    """Fishwaldo/esp_ghota src/esp_ghota.c: ghota_check() and
    ghota_update(); hostname set to otad's, org the product, repo the
    device id."""
    name = "ghota"
    filenamematch = "WLED-*.bin"

    def manifest_path(self):
        # snprintf(url, "https://%s/repos/%s/%s/releases/latest", ...)
        return f"/repos/WLED/{self.device}/releases/latest"

    def check(self):
        r = self.wire().get(idf_get(self.d.port, self.manifest_path()))
        # lwjson_callback() only sees data when not chunked (asserted by
        # Wire); a status other than 200 is no update
        if r.status != 200:
            return None
        doc = r.json()
        tag = doc["tag_name"]
        url = None
        for asset in doc.get("assets", []):
            # both "name" and "url" of an asset, then fnmatch(name)
            if "name" in asset and "url" in asset and \
                    fnmatch.fnmatch(asset["name"], self.filenamematch):
                url = asset["url"]
                break
        if url is None:
            return None  # "No Valid Firmware Assets Found"
        latest = semver3(tag)
        assert latest is not None, "Failed to parse new version"
        # semver_gt(latest, current)
        if latest <= semver3(self.version):
            return None
        self.listed = tag
        return url

    def download(self, path):
        # esp_https_ota_begin() with http_client_set_header_cb adding
        # Accept: application/octet-stream
        r = self.wire().get(idf_get(self.d.port, path, extra=(
            "Accept: application/octet-stream",)))
        if r.status != 200 or r.length <= 0:
            return None
        return r.body


LIBRARIES = [Esp32Fota, OtaPull, EspHome, Ghota]
IDS = {  # how each library's devices are named in its URL
    "esp32fota": ["246084711010340", "246084711010341", "246084711010342"],
    "otapull": ["24:0A:C4:00:01:00", "24:0A:C4:00:01:01",
                "24:0A:C4:00:01:02"],
    "esphome": ["kitchen-light", "hall-light", "porch-light"],
    "ghota": ["sensor-1", "sensor-2", "sensor-3"],
}


@pytest.fixture
def fleet(tmp_path):
    key, cert = make_cert(tmp_path)
    d = Otad(tmp_path, f"tls_cert = {cert}\ntls_key = {key}\n"
             "infer_after = 1\nlatest_url = yes\nrate_per_device = 0\n")
    d.start()
    d.publish(WLED / "0.14.2.bin", "0.14.2", "WLED")
    sha = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"), "--version",
                   "0.14.3", "--product", "WLED").stdout.strip()
    d.otactl("release", "create", "0.14.3", "--artifact", sha, "--product",
             "WLED")
    d.wait_for(lambda: any("offering 0.14.2" in l for l in d.log))
    d.cert = cert
    yield d
    d.check_clean_exit()


def stage0(d, rid):
    return d.otactl("rollout", "status", rid, json_out=True)[0]["stages"][0]


# each library's wire differs, what it asks of the registry (silent
# attempts, inferred outcomes) does not: on PostgreSQL one library does
@pytest.mark.parametrize("library", [LIBRARIES[0]] + [
    pytest.param(lib, marks=pytest.mark.sqlite_once) for lib in
    LIBRARIES[1:]], ids=lambda c: c.name)
def test_library_as_it_ships(fleet, library):
    d = fleet
    good, bad, outside = (library(d, d.cert, i) for i in IDS[library.name])
    # before any rollout, every device is listed the baseline it runs
    for dev in (good, bad, outside):
        assert dev.poll() is None and dev.fetches == 0
    d.wait_for(lambda: d.otactl("device", "show", good.device,
                                check=False).returncode == 0)
    d.wait_for(lambda: d.otactl("device", "show", bad.device,
                                check=False).returncode == 0)
    for dev in (good, bad):
        d.otactl("device", "set", dev.device, "--group", "canary")
    rid = str(d.otactl("rollout", "create", "0.14.3", "--product", "WLED",
                       "--stages", f"group=canary,soak={SOAK}s,min=5; 100%",
                       json_out=True)["id"])
    d.otactl("rollout", "start", rid)

    # outside the ring: the baseline again, nothing to do
    assert outside.poll() is None and outside.version == "0.14.2"
    # the canaries are offered 0.14.3 and take its exact bytes
    assert good.poll() == "updated" and good.version == "0.14.3"
    assert bad.poll(stays=False) == "updated" and bad.version == "0.14.2"
    d.wait_for(lambda: stage0(d, rid)["in_progress"] == 2,
               what="two attempts under way")
    assert stage0(d, rid)["succeeded"] == 0

    time.sleep(SOAK + 0.3)
    # after the soak, the new release is left alone where it runs ...
    assert good.poll() is None and good.fetches == 1
    # ... and asked for again where it did not stay: refused, and from
    # then on it is listed what it runs
    assert bad.poll() == "failed" and bad.fetches == 2
    assert bad.poll() is None and bad.fetches == 2
    # nor is it served by the link the device was given before
    assert bad.download(path_of(bad.url, d.port)) is None
    # polling on without fetching it again (a fetch follows the poll
    # that lists what a device lacks within infer_after): a success
    time.sleep(1.2)
    assert good.poll() is None and good.fetches == 1
    d.wait_for(lambda: stage0(d, rid)["succeeded"] == 1 and
               stage0(d, rid)["rolled_back"] == 1, what="inference")
    st = stage0(d, rid)
    assert st["inferred_succeeded"] == 1 and st["inferred_rolled_back"] == 1
    table = d.otactl("rollout", "status", rid).stdout
    assert "INFERRED" in table and " 1/1 " in table, table
    # /metrics shows them apart too (its fleet gauges refresh on a timer)
    def inferred_in_metrics():
        text = Wire(d.port, d.cert).get(idf_get(d.port, "/metrics")
                                        ).body.decode()
        return all(re.search(rf'otad_rollout_attempts{{[^}}]*stage="0",'
                             rf'outcome="{o}"}} 1\n', text) for o in
                   ("inferred_succeeded", "inferred_rolled_back")) and \
            "otad_pull_refetches_total 1\n" in text
    d.wait_for(inferred_in_metrics, timeout=15, what="inferred in /metrics")
    # what otad knows it runs now: the image it was sent
    shown = d.otactl("device", "show", good.device, json_out=True)
    assert shown["version"] == "0.14.3"
    assert shown["running_sha256"] == app_sha256(NEW)
    attempts = shown["attempts"]
    assert attempts[0]["state"] == "success" and \
        attempts[0]["reason"].startswith("inferred")
    # the ring was honoured all along
    assert outside.poll() is None and outside.fetches == 0


def test_pull_without_identity_and_bad_input(fleet):
    d = fleet
    cafile = d.cert
    w = lambda: Wire(d.port, cafile)  # noqa: E731
    # no identity: only what every device may have (latest_url = yes)
    r = w().get(arduino_get(d.port, "/pull/esp32fota/WLED"))
    assert r.status == 200
    [entry] = r.json()
    assert entry["version"] == "0.14.2" and "device=" not in entry["url"]
    img = w().get(arduino_get(d.port, path_of(entry["url"], d.port)))
    assert img.status == 200 and sha256(img.body) == sha256(OLD)
    r = w().get(idf_get(d.port, "/repos/WLED//releases/latest"))
    assert r.status == 200 and r.json()["tag_name"] == "0.14.2"
    # a product with nothing: an empty list, never an entry without type
    r = w().get(arduino_get(d.port, "/pull/esp32fota/Other/dev-9"))
    assert r.status == 200 and r.json() == []
    r = w().get(arduino_get(d.port, "/pull/otapull/Other/dev-9"))
    assert r.json() == {"Configurations": []}
    r = w().get(idf_get(d.port, "/repos/Other/dev-9/releases/latest"))
    assert r.status == 404
    # the MD5 URL: 32 hex digits and nothing else
    sha = sha256(OLD)
    r = w().get(idf_get(d.port, f"/pull/md5/{sha}"))
    assert r.status == 200 and r.body.decode() == md5(OLD)
    # refusals are JSON and change nothing
    for path in ("/pull/esp32fota/", "/pull/esp32fota/bad%20name",
                 "/pull/esp32fota/WLED?chip=z80", "/pull/esphome/WLED/" +
                 "x" * 80, "/pull/image/nothex", "/pull/md5/" + "0" * 64,
                 "/repos/WLED/dev/releases", "/repos/x"):
        r = w().get(arduino_get(d.port, path))
        assert 400 <= r.status < 500, (path, r.status)
        assert r.headers["content-type"] == "application/json", path
    # only the well-formed request with a device id left a device
    devices = d.otactl("device", "list", json_out=True)
    assert [x["id"] for x in devices] == ["dev-9"], devices


def test_ota_pull_string_order_is_warned(fleet):
    d = fleet
    sha = d.otactl("artifact", "add", str(WLED / "0.14.4.bin"), "--version",
                   "0.14.10", "--product", "WLED").stdout.strip()
    p = d.otactl("release", "create", "0.14.10", "--artifact", sha,
                 "--product", "WLED")
    assert "ESP32-OTA-Pull compare versions as text: they take 0.14.10 " \
        "as older than" in p.stderr, p.stderr
    assert p.stdout.startswith("release 0.14.10 created")
