"""Hostile requests, held databases and lying reports: every refusal is a
JSON 4xx that changes nothing, and nothing an attacker sends stops otad."""
import hashlib
import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

import imagebuild
from conftest import (BACKEND, OTACTL, WLED, Otad, parse_raw,
                      read_until_closed)


def rows(d, sql, *args):
    return d.query(sql, args)


def exchange(d, data, timeout=5):
    """Send bytes; read what comes back until close or timeout."""
    with socket.create_connection(("127.0.0.1", d.port),
                                  timeout=timeout) as s:
        s.sendall(data)
        return read_until_closed(s)


def test_a_get_with_a_body_is_refused_and_otad_keeps_serving(published):
    """Once a segmentation fault in run_handler: a GET whose body arrived
    after the answer reached a handler without its route."""
    for path in ("/firmware/check?device=gb-1&version=0.14.3",
                 "/firmware/check?device=gb-2&version=0.14.2",
                 "/firmware/manifest?device=gb-3&version=0.14.2",
                 "/health", "/metrics",
                 f"/firmware/artifacts/{published.sha}"):
        for method in (b"GET", b"HEAD"):
            raw = exchange(published, method + b" " + path.encode() +
                           b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2"
                           b"\r\n\r\n{}")
            r = parse_raw(raw)
            assert r.status == 400, (method, path, raw[:200])
            assert r.headers["connection"] == "close"
            if method == b"GET":
                assert "takes no body" in json.loads(r.body)["error"]
    # the refused checks recorded nothing
    assert rows(published, "SELECT id FROM device WHERE id LIKE 'gb-%'") \
        == []
    assert published.get("/health").status == 200
    # a body of zero bytes is no body
    r = published.request("GET", "/firmware/check?device=gb-4&"
                          "version=0.14.3", {"Content-Length": "0"})
    assert r.status == 304


def test_smuggled_requests_are_refused_and_not_answered(published):
    hidden = json.dumps({"device": "smuggled", "version": "9.9.9",
                         "result": "success"}).encode()
    second = (b"POST /firmware/report HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: " +
              str(len(hidden)).encode() + b"\r\n\r\n" + hidden)
    # RFC 9112 6.3: Content-Length with Transfer-Encoding
    raw = exchange(published,
                   b"POST /firmware/report HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Length: " + str(5 + len(second)).encode() +
                   b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
                   second)
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    r = parse_raw(raw)
    assert r.status == 400 and r.headers["connection"] == "close"
    assert "Transfer-Encoding" in json.loads(r.body)["error"]
    # two different lengths
    raw = exchange(published,
                   b"POST /firmware/report HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Length: 2\r\nContent-Length: " +
                   str(2 + len(second)).encode() + b"\r\n\r\n{}" + second)
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    r = parse_raw(raw)
    assert r.status == 400
    assert "Content-Length" in json.loads(r.body)["error"]
    assert rows(published, "SELECT id FROM device WHERE id = 'smuggled'") \
        == []
    # the same length twice is one length
    body = json.dumps({"device": "twice", "version": "0.14.3",
                       "result": "success"}).encode()
    r = parse_raw(exchange(
        published, b"POST /firmware/report HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() +
        b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" +
        body))
    assert r.status == 200


def test_nul_in_an_id_is_refused(otad):
    r = parse_raw(exchange(otad, b"GET /firmware/check?device=abc%00def&"
                           b"version=1.0.0 HTTP/1.1\r\nHost: x\r\n"
                           b"Connection: close\r\n\r\n"))
    assert r.status == 400 and "NUL" in json.loads(r.body)["error"]
    r = parse_raw(exchange(otad, b"GET /firmware/check?device=abc&"
                           b"version=1.0%000 HTTP/1.1\r\nHost: x\r\n"
                           b"Connection: close\r\n\r\n"))
    assert r.status == 400
    assert rows(otad, "SELECT id FROM device") == []


def test_a_report_never_lowers_the_anti_rollback_level(tmp_path):
    d = Otad(tmp_path)
    sha1 = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"),
                    "--version", "5.0.0").stdout.strip()
    d.otactl("release", "create", "5.0.0", "--artifact", sha1)
    d.otactl("release", "publish", "5.0.0")
    d.start()
    try:
        d.wait_for(lambda: any("offering 5.0.0" in l for l in d.log))
        # the image says secure_version 0; an eFuse at 2 must not take it
        d.query("UPDATE artifact SET secure_version = 0")
        q = "/firmware/check?device=sv-1&version=4.0.0"
        assert d.get(q, {"X-Secure-Version": "2"}).status == 304
        for path, body in (
                ("report", {"device": "sv-1", "version": "4.0.0",
                            "result": "failed", "secure_version": 0}),):
            assert d.post_json("/firmware/" + path, body).status == 200
        assert rows(d, "SELECT secure_version FROM device WHERE id='sv-1'") \
            == [(2,)]
        # a check that says less (or nothing) does not lower it either
        assert d.get(q, {"X-Secure-Version": "0"}).status == 304
        assert d.get(q).status == 304
        assert rows(d, "SELECT secure_version FROM device WHERE id='sv-1'") \
            == [(2,)]
        # nor does a hand edit
        p = sql(d, "UPDATE device SET secure_version = 0 WHERE id='sv-1'")
        assert "secure_version only counts up" in p.stderr
        assert sql(d, "UPDATE device SET secure_version = 3 WHERE "
                   "id='sv-1'").returncode == 0
    finally:
        d.check_clean_exit()


def token_otad(tmp_path, extra=""):
    d = Otad(tmp_path, "device_auth = token\nrate_per_device = 5\n" + extra)
    token = d.otactl("device", "add", "dev-1", json_out=True)["token"]
    return d, token


def test_strangers_cannot_spend_a_devices_request_cap(tmp_path):
    d, token = token_otad(tmp_path, "auth_failures_per_address = 100\n")
    d.start()
    try:
        q = "/firmware/check?device=dev-1&version=1.0.0"
        for _ in range(20):
            assert d.get(q).status == 401
            assert d.get(q, {"X-Device-Token": "0" * 40}).status == 401
        # the device itself still has all five of its requests
        for _ in range(5):
            assert d.get(q, {"X-Device-Token": token}).status == 304
        r = d.get(q, {"X-Device-Token": token})
        assert r.status == 429 and int(r.headers["retry-after"]) > 0
    finally:
        d.check_clean_exit()


def test_failed_authentications_are_capped_per_address(tmp_path):
    d, token = token_otad(tmp_path, "auth_failures_per_address = 3\n")
    d.start()
    try:
        q = "/firmware/check?device=dev-1&version=1.0.0"
        for _ in range(3):
            assert d.get(q, {"X-Device-Token": "1" * 40}).status == 401
        # guessing from this address stops: even a right token waits
        r = d.get(q, {"X-Device-Token": token})
        assert r.status == 429 and r.json()["error"].startswith("too many")
        m = d.get("/metrics").body.decode()
        assert "otad_auth_failures_total 3" in m
    finally:
        d.check_clean_exit()


def test_a_report_without_a_version_is_recorded(published):
    # with an offer open: against that attempt
    published.get("/firmware/check?device=nv-1&version=0.14.2")
    published.wait_for(lambda: rows(published, "SELECT count(*) FROM attempt"
                                    " WHERE device='nv-1'") == [(1,)])
    r = published.post_json("/firmware/report", {
        "device": "nv-1", "result": "failed",
        "reason": "flash write error"})
    assert r.status == 200
    assert rows(published, "SELECT to_version, state, reason FROM attempt "
                "WHERE device='nv-1'") == [("0.14.3", "failed",
                                            "flash write error")]
    # with none: an attempt of its own, its version unknown
    r = published.post_json("/firmware/report", {
        "device": "x", "result": "failed", "reason": "flash write error"})
    assert r.status == 200
    got = published.otactl("device", "show", "x", json_out=True)
    assert rows(published, "SELECT to_version, state, reason FROM attempt "
                "WHERE device='x'") == [("", "failed", "flash write error")]
    assert got["id"] == "x"
    # sent twice, recorded once
    assert published.post_json("/firmware/report", {
        "device": "x", "result": "failed",
        "reason": "flash write error"}).status == 200
    assert len(rows(published, "SELECT id FROM attempt WHERE device='x'")) \
        == 1
    # progress needs its version: it would be an attempt left open
    r = published.post_json("/firmware/report", {"device": "x",
                                                 "result": "downloading"})
    assert r.status == 400 and "'version'" in r.json()["error"]


def test_a_held_database_stalls_nothing_but_reports(tmp_path):
    """An operator's open transaction: checks are answered, /health says
    so, reports get 503 at once, and everything resumes after."""
    d = Otad(tmp_path, "writer_queue_max = 64\nhttp_threads = 1\n")
    d.start()
    try:
        assert d.post_json("/firmware/report", {
            "device": "warm", "version": "1.0.0",
            "result": "success"}).status == 200
        db = sqlite3.connect(d.db, timeout=10, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            # a report waits for the lock, then is told to come back
            t0 = time.monotonic()
            r = d.post_json("/firmware/report", {
                "device": "r-1", "version": "1.0.0", "result": "success"})
            assert r.status == 503 and r.headers["retry-after"] == "5"
            assert time.monotonic() - t0 < 5.5, "answered before 5 s"
            # past the queue's 64 records, checks are still answered
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
            for i in range(150):
                c.request("GET", f"/firmware/check?device=q-{i}&"
                          "version=1.0.0")
                r = c.getresponse()
                r.read()
                assert r.status == 304, i
            c.close()
            h = d.get("/health").json()
            assert h["status"] == "degraded" and h["registry"] == "stalled"
            assert h["records_waiting"] >= 64
            # a report now is refused without waiting
            t0 = time.monotonic()
            r = d.post_json("/firmware/report", {
                "device": "r-2", "version": "1.0.0", "result": "success"})
            assert r.status == 503 and time.monotonic() - t0 < 1
            m = d.get("/metrics").body.decode()
            assert "otad_records_dropped_total 0" not in m
            # the busy line counts every record that waits
            d.wait_for(lambda: any("records wait" in l and
                                   int(l.split(";")[-1].split()[0]) >= 64
                                   for l in d.log), 15,
                       "a busy line counting the whole queue")
        finally:
            db.execute("ROLLBACK")
            db.close()
        d.wait_for(lambda: d.get("/health").json()["status"] == "ok", 5)
        assert d.post_json("/firmware/report", {
            "device": "r-3", "version": "1.0.0",
            "result": "success"}).status == 200
        assert rows(d, "SELECT count(*) FROM device WHERE id LIKE 'q-%'") \
            [0][0] >= 64
    finally:
        d.check_clean_exit()


def sql(d, statement):
    return d.hand_edit(statement)


def staged_otad(tmp_path):
    d = Otad(tmp_path, "rate_per_device = 0\n")
    img = tmp_path / "app.bin"
    img.write_bytes(imagebuild.build(version="2.0.0", seglen=1024))
    sha = d.otactl("artifact", "add", str(img)).stdout.strip()
    d.otactl("release", "create", "2.0.0", "--artifact", sha)
    rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                   "1%,soak=1h,min=50; 50%,soak=1h,min=50; 100%",
                   json_out=True)["id"]
    d.otactl("rollout", "start", str(rid))
    return d, rid


def test_no_sequence_of_hand_edits_skips_the_gates(tmp_path):
    d, rid = staged_otad(tmp_path)
    # once: staged = 0 with stage 9 passed, then staged = 1 left stage 9
    # of 3 standing, and every stage open
    p = sql(d, f"UPDATE rollout SET staged = 0, stage = 9 WHERE id = {rid};"
            f" UPDATE rollout SET staged = 1 WHERE id = {rid}")
    assert "no such stage" in p.stderr
    assert rows(d, f"SELECT staged, stage FROM rollout WHERE id = {rid}") \
        == [(0, 9)], "the first statement stood alone"
    sql(d, f"UPDATE rollout SET stage = 0, staged = 1 WHERE id = {rid}")
    for bad, why in (
            (f"DELETE FROM rollout_stage WHERE rollout = {rid} AND no = 1",
             "only the last stage"),
            (f"DELETE FROM rollout_stage WHERE rollout = {rid} AND no = 0",
             "only the last stage"),
            (f"UPDATE rollout_stage SET no = 5 WHERE rollout = {rid} AND "
             "no = 2", "keeps its rollout and number"),
            (f"INSERT INTO rollout_stage (rollout, no, percent, soak_s, "
             f"min_devices, min_success, max_rollback, max_failure, "
             f"max_crash) VALUES ({rid}, 7, 100, 0, 0, 0, 1, 1, 1)",
             "add the next one")):
        p = sql(d, bad)
        assert why in p.stderr, (bad, p.stderr)
    # the last stage, not reached, may go
    assert sql(d, f"DELETE FROM rollout_stage WHERE rollout = {rid} AND "
               "no = 2").returncode == 0
    assert rows(d, f"SELECT count(*) FROM rollout_stage WHERE rollout = "
                f"{rid}") == [(2,)]


def test_the_controller_halts_a_rollout_whose_stage_is_gone(tmp_path):
    """A database from before the schema held the line: halt, not skip."""
    d, rid = staged_otad(tmp_path)
    sql(d, "DROP TRIGGER rollout_stage_exists" +
        (" ON rollout" if BACKEND == "postgresql" else ""))
    assert sql(d, f"UPDATE rollout SET stage = 9 WHERE id = {rid}") \
        .returncode == 0
    d.start()
    try:
        d.wait_for(lambda: rows(d, f"SELECT state FROM rollout WHERE id = "
                                f"{rid}") == [("halted",)], 5, "the halt")
        reason = rows(d, f"SELECT reason FROM rollout WHERE id = {rid}")
        assert "stage 9 does not exist" in reason[0][0]
        for i in range(50):
            r = d.get(f"/firmware/check?device=h-{i}&version=1.0.0")
            assert r.status == 304, "a halted rollout offers nothing"
    finally:
        d.check_clean_exit()


def store_files(d):
    return sorted(p.name for p in (d.state / "artifacts").iterdir()
                  if len(p.name) == 64)


def test_start_up_sweeps_artifact_files_no_record_names(tmp_path):
    """What a killed 'artifact add' leaves between publishing its file and
    recording it is removed when otad starts; recorded files stay."""
    d = Otad(tmp_path)
    kept = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"),
                    "--version", "0.14.3").stdout.strip()
    img = imagebuild.build(version="3.0.0", seglen=2048)
    orphan = hashlib.sha256(img).hexdigest()
    (d.state / "artifacts" / orphan).write_bytes(img)
    assert store_files(d) == sorted([kept, orphan])
    d.start()
    try:
        assert store_files(d) == [kept]
        assert any("no record names" in l for l in d.log)
    finally:
        d.check_clean_exit()


def test_killed_adds_leave_no_unrecorded_file_after_a_restart(tmp_path):
    d = Otad(tmp_path)
    d.otactl("artifact", "list")  # the database exists
    killed = 0
    for i in range(12):
        img = tmp_path / f"k{i}.bin"
        img.write_bytes(imagebuild.build(version=f"4.0.{i}",
                                         seglen=200000))
        p = subprocess.Popen([str(OTACTL), "artifact", "add", str(img)],
                             env=d.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(0.005 * i)  # kill it at a different step each time
        p.kill()
        killed += p.wait() < 0
    d.start()
    try:
        recorded = {r[0] for r in rows(d, "SELECT sha256 FROM artifact")}
        assert set(store_files(d)) == recorded
        assert killed > 0
    finally:
        d.check_clean_exit()


def test_racing_adds_of_one_image_never_lose_the_recorded_file(tmp_path):
    """Adds of the same image at once, all but one refused (they name
    another version): a refused one once deleted the file that the one
    that won had recorded."""
    d = Otad(tmp_path)
    d.otactl("artifact", "list")
    for i in range(10):
        img = tmp_path / f"r{i}.bin"
        img.write_bytes(imagebuild.build(version=f"5.0.{i}", seglen=300000))
        procs = [subprocess.Popen([str(OTACTL), "artifact", "add",
                                   str(img), "--version", f"{5 + n}.0.{i}"],
                                  env=d.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for n in range(5)]
        outs = [p.communicate(timeout=60) for p in procs]
        assert sorted(p.returncode for p in procs) == [0, 1, 1, 1, 1], outs
        sha = rows(d, "SELECT sha256 FROM artifact WHERE version LIKE ?",
                   f"%.0.{i}")
        assert len(sha) == 1
        assert (d.state / "artifacts" / sha[0][0]).exists(), \
            f"round {i}: the recorded file is gone"


def test_a_killed_key_generate_can_be_retried(tmp_path):
    d = Otad(tmp_path)
    d.otactl("artifact", "list")
    keys = d.state / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    # what a generate killed after writing its key, before recording it,
    # leaves: a private key and no row
    (keys / "ci.pem").write_text("-----BEGIN PRIVATE KEY-----\nleft\n"
                                 "-----END PRIVATE KEY-----\n")
    p = d.otactl("key", "generate", "ci", check=False)
    assert p.returncode == 0, p.stderr
    assert "did not finish" in p.stderr
    assert "left" not in (keys / "ci.pem").read_text()
    # a recorded key is never replaced
    before = (keys / "ci.pem").read_text()
    p = d.otactl("key", "generate", "ci", check=False)
    assert p.returncode == 1 and "exists already" in p.stderr
    assert (keys / "ci.pem").read_text() == before


@pytest.mark.sqlite_once  # the HTTP layer alone: run once
def test_a_request_that_trickles_is_cut_an_idle_one_is_not(tmp_path):
    d = Otad(tmp_path, "request_timeout = 2\n")
    d.start()
    try:
        def trickle(first, step):
            """Send first, then step every 0.4 s; seconds until cut."""
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            t0 = time.monotonic()
            s.sendall(first)
            try:
                while time.monotonic() - t0 < 8:
                    time.sleep(0.4)
                    s.sendall(step)
            except (BrokenPipeError, ConnectionResetError):
                pass
            s.settimeout(2)
            try:
                while s.recv(4096):
                    pass
            except (socket.timeout, ConnectionResetError):
                pass
            s.close()
            return time.monotonic() - t0
        # headers a byte at a time (slowloris)
        assert trickle(b"GET /health HTTP/1.1\r\n", b"X") < 6
        # a body a byte at a time
        assert trickle(b"POST /firmware/report HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 100\r\n\r\n{", b" ") < 6
        m = d.get("/metrics").body.decode()
        assert "otad_connections_cut_total 2" in m
        # an idle keep-alive connection is microhttpd's to close (60 s),
        # and a request on it after the pause is served
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        c.request("GET", "/health")
        assert c.getresponse().read()
        time.sleep(3.5)
        c.request("GET", "/health")
        r = c.getresponse()
        assert r.status == 200 and r.read()
        c.close()
    finally:
        d.check_clean_exit()


NETNS_CLIENT = r"""
import json, socket, sys, time
addr = (sys.argv[1], int(sys.argv[2]))
held = []
for i in range(5):
    s = socket.create_connection(addr, timeout=5)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # not finished
    held.append(s)
time.sleep(0.3)
s = socket.create_connection(addr, timeout=5)
s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
over = b""
try:
    while True:
        b = s.recv(4096)
        if not b:
            break
        over += b
except (ConnectionResetError, socket.timeout):
    pass
held.pop().close()
time.sleep(0.3)
s = socket.create_connection(addr, timeout=5)
s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
again = s.recv(4096)
print(json.dumps({"over": over.decode("latin-1"),
                  "again": again.decode("latin-1")}))
"""


def test_one_address_cannot_take_every_connection(tmp_path):
    """A network namespace of our own, so the client's address is not
    loopback (which is exempt: a proxy in front speaks for everyone)."""
    ns = f"otadt{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", "192.0.2.1/32", "dev", "lo"]):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)
        d = Otad(tmp_path, "listen = 192.0.2.1:0\n"
                 "max_connections_per_address = 5\n")
        d.wrap = ["ip", "netns", "exec", ns]
        d.start()
        try:
            out = subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, "-c",
                 NETNS_CLIENT, "192.0.2.1", str(d.port)],
                capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            got = json.loads(out.stdout)
            over = parse_raw(got["over"].encode("latin-1"))
            assert over.status == 429, got
            assert "too many connections" in json.loads(over.body)["error"]
            assert parse_raw(got["again"].encode("latin-1")).status == 200
        finally:
            d.check_clean_exit()
    finally:
        subprocess.run(["ip", "netns", "del", ns])
