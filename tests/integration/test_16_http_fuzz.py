"""A request-sequence fuzzer against the whole HTTP layer of the running
daemon (under the sanitizers in CI's second pass): mutated requests from
every route, in any framing, one or several per connection. Every answer
must be well-formed HTTP, every refusal JSON, and otad must stay up and
stop cleanly with no sanitizer report.

OTAD_HTTP_FUZZ_SECONDS sets how long (default 20); OTAD_HTTP_FUZZ_SEED
replays a run (the seed is printed when one fails)."""
import json
import os
import random
import re
import socket
import time

import pytest

from conftest import WLED, Otad, parse_raw, read_until_closed


@pytest.fixture
def published(tmp_path):
    """WLED 0.14.3 published, with every route on (the fixed URL too),
    and the fuzzer's own address a trusted proxy, so that every request's
    X-Forwarded-For is read."""
    d = Otad(tmp_path, "latest_url = yes\ntrusted_proxies = 127.0.0.1, "
             "::1, 10.0.0.0/8\n")
    d.start()
    d.sha = d.publish(WLED / "0.14.3.bin", "0.14.3")
    d.image = (WLED / "0.14.3.bin").read_bytes()
    d.wait_for(lambda: any("offering 0.14.3" in l for l in d.log))
    yield d
    d.check_clean_exit()

STATUS = re.compile(rb"HTTP/1\.[01] ([1-5]\d\d) [^\r\n]*\r\n")
# libmicrohttpd 0.9.75 answers a few framing errors itself, before any
# handler sees the request (an unparseable Content-Length, a bad request
# line): with HTML, which otad cannot change. Counted, and only these.
MHD_OWN = (400, 413, 414, 431, 505)


def templates(sha):
    report = json.dumps({"device": "fz-1", "version": "0.14.3",
                         "result": "success", "rssi": -60}).encode()
    return [
        (b"GET", b"/firmware/check?device=fz-1&version=0.14.2", [], b""),
        (b"GET", b"/firmware/check", [(b"X-Device-ID", b"fz-2"),
                                      (b"X-Current-Version", b"0.14.3"),
                                      (b"X-Secure-Version", b"1"),
                                      (b"X-Battery", b"80")], b""),
        (b"GET", b"/ota/firmware.bin", [(b"x-ESP32-STA-MAC",
                                         b"AA:BB:CC:DD:EE:01"),
                                        (b"x-ESP32-version", b"0.14.2"),
                                        (b"Connection", b"close")], b""),
        (b"GET", b"/firmware/manifest?device=fz-3&version=0.1", [], b""),
        (b"HEAD", b"/firmware/artifacts/" + sha.encode(), [], b""),
        (b"GET", b"/firmware/artifacts/" + sha.encode(),
         [(b"Range", b"bytes=0-99")], b""),
        (b"POST", b"/firmware/report", [(b"Content-Type",
                                         b"application/json")], report),
        (b"GET", b"/health", [], b""),
        (b"GET", b"/metrics", [], b""),
        (b"GET", b"/firmware/patches/" + b"a" * 64, [], b""),
        (b"GET", b"/firmware/latest/lamp", [(b"X-Chip", b"esp32")], b""),
        (b"GET", b"/firmware/delta/fz-1", [(b"Content-Length", b"0")], b""),
        (b"GET", b"/ota/firmware.bin", [(b"x-ESP32-BASE-MAC",
                                         b"AA:BB:CC:DD:EE:02"),
                                        (b"x-ESP32-mode", b"littlefs"),
                                        (b"x-ESP32-chip-size", b"4194304"),
                                        (b"x-ESP32-sketch-sha256",
                                         b"AB" * 32)], b""),
        (b"GET", b"/firmware/check?version=0.1",
         [(b"Authorization", b"Basic ZnotMTp0b2tlbg=="),
          (b"Range", b"bytes=100-")], b""),
        # the pull-OTA libraries' manifests and links
        (b"GET", b"/pull/esp32fota/lamp?id=246084711010340", [], b""),
        (b"GET", b"/pull/otapull/lamp?device=AA:BB:CC:DD:EE:03", [], b""),
        (b"GET", b"/pull/esphome/lamp/fz-4", [], b""),
        (b"GET", b"/repos/lamp/fz-5/releases/latest",
         [(b"User-Agent", b"ESP32 HTTP Client/1.0")], b""),
        (b"GET", b"/pull/image/" + sha.encode() + b"?device=fz-4&product="
         b"lamp", [(b"Accept", b"application/octet-stream")], b""),
        (b"GET", b"/pull/md5/" + sha.encode(), [], b""),
    ]


JUNK = [b"flashfs", b"spiffs", b"ESP32-http-Update", b"esp32c3", b"",
        b"\x00", b"%00", b"\xff\xfe", b"../../etc/passwd", b"a" * 5000,
        b"-1", b"0x10", b"1 0", b"+5", b"99999999999999999999", b"\r\n",
        b"\n", b" ", b"chunked", b"bytes=5-1", b"bytes=-0", b"{", b"[]",
        b"\"\\u0000\"", b"%", b"%zz", b"\t", b"9" * 70, b"v1.0.0-rc.1+x",
        b"Basic Og==", b"Bearer ", b"identity, chunked",
        b"203.0.113.7, 10.0.0.1", b"[2001:db8::1]:80, 127.0.0.1",
        b"10.1.2.3:99999, , ,", b"," * 300, b"unknown, 300.1.1.1",
        b"::ffff:10.0.0.1, fe80::1%eth0"]
HEADERS = [b"Content-Length", b"Transfer-Encoding", b"Range", b"If-Range",
           b"X-Device-ID", b"X-Current-Version", b"Authorization",
           b"X-Device-Token", b"Connection", b"Expect", b"Host",
           b"X-Accept-Delta", b"X-Running-SHA256", b"X-Uptime",
           b"X-Secure-Version", b"x-ESP32-STA-MAC", b"Content-Type",
           b"x-ESP32-mode", b"X-Chip", b"x-ESP32-BASE-MAC",
           b"x-ESP32-sketch-sha256", b"x-ESP32-chip-size", b"User-Agent",
           b"X-Forwarded-For"]


def mutate(rng, t):
    method, path, headers, body = t
    headers = list(headers)
    for _ in range(rng.randrange(4)):
        m = rng.randrange(12)
        if m == 0:
            method = rng.choice([b"GET", b"HEAD", b"POST", b"PUT",
                                 b"DELETE", b"OPTIONS", b"G\x00T", b"",
                                 b"get"])
        elif m == 1:
            path = path + rng.choice([b"&device=", b"&version=", b"?",
                                      b"/", b"#x", b"&token="]) + \
                rng.choice(JUNK)
        elif m == 2:
            headers.append((rng.choice(HEADERS), rng.choice(JUNK)))
        elif m == 3:
            body = rng.choice([b"", b"{}", b"{" * 2000, rng.randbytes(64),
                               b'{"device":"fz-9","result":"failed"}',
                               b'{"device":"fz-9","version":"1",'
                               b'"result":"rollback","secure_version":0}'])
        elif m == 4:
            headers.append((b"Content-Length", str(len(body)).encode()))
            headers.append((b"Content-Length",
                            str(rng.randrange(300)).encode()))
        elif m == 5:
            headers.append((b"Transfer-Encoding", b"chunked"))
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        elif m == 6 and headers:
            del headers[rng.randrange(len(headers))]
        elif m == 7:
            path = bytes(b if rng.random() > 0.1 else rng.randrange(256)
                         for b in path)
        elif m == 8:
            headers.append((rng.randbytes(rng.randrange(1, 10)),
                            rng.randbytes(rng.randrange(10))))
        elif m == 9:
            path = path[:rng.randrange(len(path) + 1)]
        elif m == 10:
            headers.append((b"X-Pad", b"p" * rng.choice([100, 9000, 70000])))
        else:
            body = body + rng.randbytes(rng.randrange(100))
    return method, path, headers, body


def render(rng, req):
    method, path, headers, body = req
    eol = b"\r\n" if rng.random() > 0.05 else b"\n"
    version = rng.choice([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2.0",
                                                b"HTTP/1.1x", b""])
    lines = [method + b" " + path + b" " + version, b"Host: fuzz"]
    lines += [k + b": " + v for k, v in headers]
    if body and not any(k.lower() in (b"content-length",
                                      b"transfer-encoding")
                        for k, _ in headers) and rng.random() > 0.2:
        lines.append(b"Content-Length: %d" % len(body))
    data = eol.join(lines) + eol + eol + body
    if rng.random() < 0.05:
        data = data[:rng.randrange(len(data) + 1)]  # cut short
    return data


def check_answers(raw, sent, seed):
    """Every answer in raw: a status line, and JSON for our refusals."""
    found = STATUS.match(raw)
    if not raw:
        return 0, 0
    assert found, f"seed {seed}: not HTTP: {raw[:200]!r} for {sent[:300]!r}"
    r = parse_raw(raw)
    body = r.body
    if r.status >= 400 and body and not body.startswith(b"HTTP/"):
        if body.lstrip().startswith(b"<html>"):
            assert r.status in MHD_OWN, f"seed {seed}: {raw[:300]!r}"
            return 1, 1
        # the body may hold more answers after this one's length
        n = int(r.headers.get("content-length", len(body)))
        try:
            err = json.loads(body[:n])
        except ValueError:
            raise AssertionError(f"seed {seed}: a {r.status} that is not "
                                 f"JSON: {raw[:300]!r} for {sent[:300]!r}")
        assert isinstance(err, dict) and "error" in err, raw[:300]
    return 1, 0


def fuzz(port, base, seconds, seed, alive):
    """Mutated request sequences to port for seconds; alive() is asked
    every 50 connections. Returns (connections, answered, by MHD)."""
    rng = random.Random(seed)
    end = time.monotonic() + seconds
    sent = answered = html = 0
    while time.monotonic() < end:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(0.5)
            data = b"".join(render(rng, mutate(rng, rng.choice(base)))
                            for _ in range(rng.choice([1, 1, 1, 2, 5])))
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # refused and closed before it was all sent
            raw = read_until_closed(s)
        sent += 1
        a, h = check_answers(raw, data, seed)
        answered += a
        html += h
        if sent % 50 == 0:
            assert alive(), f"seed {seed}"
    print(f"http fuzz: seed {seed}, {sent} connections, {answered} "
          f"answered, {html} by libmicrohttpd itself")
    return sent, answered, html


def fuzz_seconds():
    return float(os.environ.get("OTAD_HTTP_FUZZ_SECONDS", "20"))


def fuzz_seed():
    return int(os.environ.get("OTAD_HTTP_FUZZ_SEED", time.time_ns() % 10**9))


def test_the_http_layer_survives_hostile_request_sequences(published):
    sent, answered, _ = fuzz(published.port, templates(published.sha),
                             fuzz_seconds(), fuzz_seed(),
                             lambda: published.get("/health").status == 200)
    assert sent > 100 and answered > sent // 2
    # still whole: a device is served as before
    r = published.get("/firmware/check?device=after-fuzz&version=0.14.2")
    assert r.status == 200 and r.body == published.image


def admin_templates(token, sha):
    auth = [(b"Authorization", b"Bearer " + token.encode())]
    js = [(b"Content-Type", b"application/json")]
    image = (WLED / "0.14.3.bin").read_bytes()[:3000]
    return [
        (b"GET", b"/api/v1/status", auth, b""),
        (b"GET", b"/api/v1/audit?limit=3&before=9", auth, b""),
        (b"GET", b"/api/v1/artifacts/" + sha.encode()[:8], auth, b""),
        (b"GET", b"/api/v1/rollouts/1", auth, b""),
        (b"GET", b"/api/v1/devices?offline=1", auth, b""),
        (b"POST", b"/api/v1/artifacts?version=1.0&kind=app", auth, image),
        (b"POST", b"/api/v1/releases", auth + js,
         b'{"version": "0.14.3", "artifact": "' + sha.encode() + b'"}'),
        (b"POST", b"/api/v1/rollouts", auth + js,
         b'{"version": "0.14.3", "stages": "10%; 100%"}'),
        (b"POST", b"/api/v1/rollouts/1/pause", auth, b"{}"),
        (b"POST", b"/api/v1/rollouts/2/approve", auth,
         b'{"break_glass": "x"}'),
        (b"POST", b"/api/v1/devices", auth, b'{"id": "fz-9"}'),
        (b"POST", b"/api/v1/devices/fz-9/block", auth, b""),
        (b"POST", b"/api/v1/keys", auth,
         b'{"name": "k", "public_key": "-----BEGIN"}'),
        (b"POST", b"/api/v1/operators", auth,
         b'{"name": "z", "role": "viewer"}'),
        (b"POST", b"/api/v1/releases/0.14.3/publish", auth, b"{}"),
        (b"GET", b"/api/v1/status", [], b""),
    ]


def test_the_management_api_survives_hostile_request_sequences(tmp_path):
    """The same against the management API, with an admin's token (and
    without): uploads, JSON bodies and actions mutated and interleaved."""
    d = Otad(tmp_path, "admin_listen = 127.0.0.1:0\n")
    token = d.otactl("operator", "add", "fz", "--role", "admin",
                     json_out=True)["token"]
    d.start()
    try:
        sha = d.publish(WLED / "0.14.3.bin", "0.14.3")
        port = int(re.search(r"management API on \S+:(\d+)",
                             d.logtext()).group(1))

        def alive():
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /api/v1/status HTTP/1.0\r\nAuthorization: "
                      b"Bearer " + token.encode() + b"\r\n\r\n")
            ok = parse_raw(read_until_closed(s)).status in (200, 429)
            s.close()
            return ok and d.get("/health").status == 200
        sent, answered, _ = fuzz(port, admin_templates(token, sha),
                                 fuzz_seconds() / 2, fuzz_seed(), alive)
        assert sent > 50 and answered > sent // 2
        assert alive()
    finally:
        d.check_clean_exit()
