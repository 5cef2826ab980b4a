"""Start, readiness, reload, hand edits, graceful stop, health, metrics."""
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import Otad, WLED


def test_ready_is_sent_to_systemd(tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(20)
    d = Otad(tmp_path)
    env = dict(d.env, NOTIFY_SOCKET=path)
    d.start(env=env)
    msg = s.recv(4096).decode()
    assert "READY=1" in msg
    # the readiness line was logged before (and so after the bind)
    assert any("ready: listening on" in l for l in d.log)
    d.proc.send_signal(signal.SIGHUP)
    got = s.recv(4096).decode() + s.recv(4096).decode()
    assert "RELOADING=1" in got and "READY=1" in got
    d.check_clean_exit()
    assert "STOPPING=1" in s.recv(4096).decode()
    s.close()


def test_sighup_with_a_broken_config_keeps_running(otad):
    good = otad.conf.read_text()
    otad.conf.write_text(good + "bogus = 1\n")
    otad.proc.send_signal(signal.SIGHUP)
    otad.wait_for(lambda: any("reload refused" in l for l in otad.log))
    assert any(f"{otad.conf}:" in l and "unknown key 'bogus'" in l
               for l in otad.log)
    assert otad.get("/health").status == 200
    otad.conf.write_text(good + "max_body_bytes = 300\n")
    otad.proc.send_signal(signal.SIGHUP)
    otad.wait_for(lambda: any("configuration reloaded" in l
                              for l in otad.log))
    r = otad.post_json("/firmware/report", {"device": "d", "result":
                                            "failed", "reason": "x" * 300})
    assert r.status == 413, "the new body limit applies after reload"


def test_hand_edit_pauses_offers_within_a_second(published):
    r = published.get("/firmware/check?device=e1&version=0.14.2")
    assert r.status == 200
    # by hand, as an operator types it into the SQL shell
    assert published.hand_edit(
        "UPDATE rollout SET state='paused' WHERE id=1").returncode == 0
    t0 = time.monotonic()
    published.wait_for(lambda: published.get(
        "/firmware/check?device=e2&version=0.14.2").status == 304,
        timeout=1.5, what="the pause to take effect")
    assert time.monotonic() - t0 < 1.5
    audit = published.query("SELECT actor, what FROM audit ORDER BY id DESC"
                            " LIMIT 1")
    assert audit == [("sql", "rollout 1 state active -> paused")]
    assert published.hand_edit(
        "UPDATE rollout SET state='active' WHERE id=1").returncode == 0
    published.wait_for(lambda: published.get(
        "/firmware/check?device=e3&version=0.14.2").status == 200,
        timeout=1.5, what="the resume to take effect")


def metric(d, name):
    for line in d.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_device_edits_reach_the_rows_kept_in_memory(published):
    """Checks read device rows from memory; a block by otactl counts on the
    very next check, one by hand within a second, and so do unblocks and
    groups."""
    d = published
    q = "/firmware/check?device=m1&version=0.14.2"
    assert d.get(q).status == 200
    d.wait_for(lambda: d.query("SELECT count(*) FROM device WHERE"
                               " id='m1'")[0][0] == 1, 5, "m1 recorded")
    before = d.get("/metrics").body.decode()
    for _ in range(5):
        assert d.get(q).status == 200
    after = d.get("/metrics").body.decode()

    def lookups(text, where):
        for line in text.splitlines():
            if line.startswith('otad_device_lookups_total{from="%s"}'
                               % where):
                return float(line.split()[1])
        return None
    if lookups(after, "memory") is not None:  # SQLite: rows in memory
        # one a check: the writer's own looks are not requests' lookups
        assert lookups(after, "memory") - lookups(before, "memory") == 5
        assert metric(d, "otad_device_rows_cached") >= 1
    d.otactl("device", "block", "m1")
    r = d.get(q)  # no waiting: otactl returned once otad served it
    assert r.status == 403 and r.json()["error"] == "device is blocked"
    d.otactl("device", "unblock", "m1")
    assert d.get(q).status == 200
    assert d.hand_edit("UPDATE device SET blocked=1 WHERE id='m1'"
                       ).returncode == 0
    t0 = time.monotonic()
    d.wait_for(lambda: d.get(q).status == 403, 1.5, "the block by hand")
    assert time.monotonic() - t0 < 1.5
    assert d.hand_edit("UPDATE device SET blocked=0 WHERE id='m1'"
                       ).returncode == 0
    d.wait_for(lambda: d.get(q).status == 200, 1.5, "the unblock by hand")


def test_publish_is_served_when_otactl_returns(otad):
    sha = otad.otactl("artifact", "add", str(WLED / "0.14.4.bin"),
                      "--version", "0.14.4").stdout.strip()
    otad.otactl("release", "create", "0.14.4", "--artifact", sha)
    otad.otactl("release", "publish", "0.14.4")
    # no waiting here: the very next request is offered the release
    assert otad.get("/firmware/check?device=n1&version=0.14.3").status == 200


def test_invalid_hand_edit_is_refused(published):
    p = published.hand_edit("UPDATE rollout SET state='bogus' WHERE id=1")
    assert p.returncode != 0
    # SQLite's words, or PostgreSQL's
    assert ("CHECK constraint failed" in p.stderr or
            "violates check constraint" in p.stderr), p.stderr
    assert published.get(
        "/firmware/check?device=i1&version=0.14.2").status == 200


def test_busy_database_delays_but_loses_nothing(published):
    """An operator holding a write lock delays records; none is dropped."""
    holder = sqlite3.connect(published.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    for i in range(20):
        assert published.get(
            f"/firmware/check?device=busy-{i}&version=0.14.3").status == 304
    time.sleep(0.5)
    holder.execute("ROLLBACK")
    holder.close()
    published.wait_for(lambda: len(published.otactl(
        "device", "list", json_out=True)) == 20, timeout=10,
        what="queued check-ins to be written")


def test_sigterm_finishes_a_download_in_flight(published):
    img = published.image
    # a device's small window (lwIP's is 5,744 bytes) and a real link's
    # segments: on loopback's 64 KB segments a tiny window makes the
    # sender wait for its persist timer, 30 s for the image
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", published.port))
    s.sendall(b"GET /firmware/check?device=slow&version=0.14.0 HTTP/1.0\r\n"
              b"Host: x\r\n\r\n")
    first = s.recv(1024)
    assert first.startswith(b"HTTP/1.1 200")
    published.proc.send_signal(signal.SIGTERM)
    data = first
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    body = data.partition(b"\r\n\r\n")[2]
    assert body == img
    assert published.proc.wait(10) == 0
    # the offer, and that the image went out, are on disk
    db = sqlite3.connect(published.db)
    assert db.execute("SELECT state, delivered FROM attempt WHERE"
                      " device='slow'").fetchone() == ("downloading", 1)
    db.close()
    published.start()


def test_sigterm_waits_for_a_report_to_be_durable(published):
    """A report stuck behind an operator's lock when SIGTERM comes is still
    answered 200, and is on disk, before otad exits."""
    holder = sqlite3.connect(published.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    result = {}

    def send():
        result["r"] = published.post_json("/firmware/report", {
            "device": "late", "version": "0.14.3", "result": "success"})
    t = threading.Thread(target=send)
    t.start()
    time.sleep(0.3)
    published.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert published.proc.poll() is None, "otad must wait for the report"
    assert "r" not in result, "no 2xx before the report is on disk"
    holder.execute("ROLLBACK")
    holder.close()
    t.join(10)
    assert result["r"].status == 200
    assert published.proc.wait(10) == 0
    db = sqlite3.connect(published.db)
    assert db.execute("SELECT state FROM attempt WHERE device='late'"
                      ).fetchone() == ("success",)
    db.close()
    published.start()


def test_stop_after_the_grace_period_with_a_report_queued(tmp_path):
    """shutdown_timeout runs out while a report waits for the database: the
    connection is closed without a 2xx, the record is still written once
    the database frees up, and nothing touches the closed request."""
    d = Otad(tmp_path, "shutdown_timeout = 1\n")
    d.start()
    holder = sqlite3.connect(d.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    result = {}

    def send():
        try:
            result["r"] = d.post_json("/firmware/report", {
                "device": "grace", "version": "1.0.0", "result": "failed"})
        except Exception as e:  # closed without an answer
            result["e"] = e
    t = threading.Thread(target=send)
    t.start()
    time.sleep(0.3)
    d.proc.send_signal(signal.SIGTERM)
    t.join(10)
    assert "e" in result or result["r"].status >= 500
    time.sleep(0.5)
    assert d.proc.poll() is None, "queued records are flushed before exit"
    holder.execute("ROLLBACK")
    holder.close()
    d.check_clean_exit()
    db = sqlite3.connect(d.db)
    assert db.execute("SELECT state FROM attempt WHERE device='grace'"
                      ).fetchone() == ("failed",)
    db.close()


def test_health_and_metrics(published):
    r = published.get("/health")
    assert r.status == 200 and r.json() == {"status": "ok"}
    published.get("/firmware/check?device=m1&version=0.14.3")
    published.get("/firmware/check?device=m2&version=0.14.2")
    published.get("/nowhere")
    m = published.get("/metrics")
    assert m.status == 200
    assert m.headers["content-type"].startswith("text/plain")
    text = m.body.decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            values[k] = float(v)
    assert values["otad_checks_total"] == 2
    assert values["otad_offers_total"] == 1
    assert values['otad_http_responses_total{code="304"}'] == 1
    assert values['otad_http_responses_total{code="404"}'] == 1
    published.wait_for(lambda: "otad_bytes_served_total %d" %
                       len(published.image) in
                       published.get("/metrics").body.decode())
    # the fleet gauges say how long counting took (a small fleet: little)
    published.wait_for(lambda: "\notad_fleet_count_seconds " in
                       published.get("/metrics").body.decode(), 10,
                       "the fleet gauges")
    took = [line for line in published.get("/metrics").body.decode()
            .splitlines() if line.startswith("otad_fleet_count_seconds ")]
    assert len(took) == 1 and 0 <= float(took[0].split()[1]) < 1


@pytest.mark.sqlite_only
def test_health_writes_nothing(otad):
    otad.otactl("status")
    before = os.stat(otad.db).st_mtime_ns, os.path.getsize(str(otad.db) +
                                                          "-wal")
    for _ in range(20):
        assert otad.get("/health").status == 200
    time.sleep(0.3)
    after = os.stat(otad.db).st_mtime_ns, os.path.getsize(str(otad.db) +
                                                         "-wal")
    assert before == after
