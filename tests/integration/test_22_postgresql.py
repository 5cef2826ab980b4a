"""The registry in PostgreSQL: its SQL functions agree with the daemon's C,
passwords stay out of the configuration, and one node leads."""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import BACKEND, BUILD, OTAD, WLED, Otad, sha256

pg_only = pytest.mark.skipif(BACKEND != "postgresql",
                             reason="runs with the registry in PostgreSQL")


def unit_test_on_postgresql(tmp_path, name, sqlite_only=()):
    """A unit test of the registry run on a database of its own here
    (make unit runs it on SQLite): its cmocka summary. The tests named in
    sqlite_only skip themselves on PostgreSQL; every other one passes."""
    d = Otad(tmp_path)
    p = subprocess.run([str(BUILD / "tests" / name)],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OTAD_TEST_DATABASE=d.pg.url(
                           d.pg_db)))
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout + p.stderr
    ran = re.search(r"Running (\d+) test\(s\)", out)
    assert ran and int(ran.group(1)) > 0, out
    skipped = set(re.findall(r"\[  SKIPPED \] (test_\w+)", out))
    assert skipped == set(sqlite_only), out
    assert "[  PASSED  ] %d test(s)." % (int(ran.group(1)) - len(skipped)) \
        in out, out
    return out


@pg_only
def test_sql_functions_are_the_daemons(tmp_path):
    """semver_compare and ring in PL/pgSQL give what the C gives, pair by
    pair (tests/unit/test_sqlfunctions.c, run on this database)."""
    assert "[  PASSED  ] 2 test(s)." in unit_test_on_postgresql(
        tmp_path, "test_sqlfunctions")


@pg_only
def test_the_registry_unit_tests_pass_on_postgresql(tmp_path):
    """tests/unit/test_registry.c: the catalog, the writer and its order
    (a batch sorted by device keeps each device's),
    readers, a newer schema refused, stage transitions, promote windows,
    quarantine, telemetry comparisons (window functions, metric()),
    an outcome reported to one node before another committed its offer, and
    no device rows kept in memory (other nodes write them)."""
    out = unit_test_on_postgresql(tmp_path, "test_registry", sqlite_only=(
        # an operator holding the database is SQLite's lock
        "test_a_report_does_not_wait_for_a_long_batch",
        # the writer's pace on PostgreSQL is its round trips
        "test_a_small_queue_drops_nothing_while_the_writer_gathers"))
    assert "[       OK ] test_a_batch_sorted_by_device_keeps_each_devices_order" \
        in out


def test_a_password_in_the_database_url_is_refused(tmp_path):
    for url in ("postgresql://otad:secret@db.example.net/otad",
                "host=db.example.net dbname=otad password=secret"):
        conf = tmp_path / "otad.conf"
        conf.write_text(f"state_dir = {tmp_path}\ndatabase = {url}\n")
        p = subprocess.run([str(OTAD), "-n", "-c", str(conf)],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode != 0
        assert "must not hold a password" in p.stderr
        assert "secret" not in p.stderr


def leads(d):
    """otad_leader from a node's /metrics."""
    for line in d.get("/metrics").body.decode().splitlines():
        if line.startswith("otad_leader "):
            return int(line.split()[1])
    return None


@pg_only
def test_one_node_leads(tmp_path):
    """Two nodes on one registry: one leads, and when it stops the other
    takes over within a second."""
    a, b = node_pair(tmp_path)
    a.start()
    b.start()
    try:
        def leaders():
            return [d for d in (a, b) if leads(d) == 1]
        a.wait_for(lambda: len(leaders()) == 1, 5, "one leader")
        first = leaders()[0]
        other = b if first is a else a
        assert leads(other) == 0
        assert any("leading:" in line for line in first.log)
        first.check_clean_exit()
        other.wait_for(lambda: leads(other) == 1, 2, "the other node to lead")
    finally:
        a.stop()
        b.stop()


def node_pair(tmp_path):
    """Two nodes, each with its own state directory, on one registry."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Otad(tmp_path / "a")
    b = Otad(tmp_path / "b", f"database = {a.pg.url(a.pg_db)}\n")
    b.pg_db = a.pg_db  # what b.query and b.hand_edit reach
    return a, b


@pg_only
def test_an_artifact_added_on_one_node_downloads_from_another(tmp_path):
    a, b = node_pair(tmp_path)
    image = (WLED / "0.14.3.bin").read_bytes()
    sha = a.publish(WLED / "0.14.3.bin", "0.14.3")
    b.start()
    try:
        r = b.get("/firmware/check?device=n1&version=0.14.2")
        assert r.status == 200 and sha256(r.body) == sha
        assert r.body == image
        # kept on b's disk, byte for byte, for the next device
        assert (b.state / "artifacts" / sha).read_bytes() == image
        assert any(f"artifact {sha} fetched from the registry" in line
                   for line in b.log)
        r = b.get(f"/firmware/artifacts/{sha}")
        assert r.status == 200 and r.body == image
    finally:
        b.check_clean_exit()


def test_a_corrupt_copy_is_never_served(tmp_path):
    """A flipped byte in the store: never sent to a device. A node of a
    cluster fetches a good copy; a lone SQLite node answers 503."""
    d = Otad(tmp_path)
    image = (WLED / "0.14.3.bin").read_bytes()
    sha = d.publish(WLED / "0.14.3.bin", "0.14.3")
    path = d.state / "artifacts" / sha
    bad = bytearray(image)
    bad[len(bad) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(bad))
    d.start()
    try:
        r = d.get("/firmware/check?device=c1&version=0.14.2")
        if BACKEND == "postgresql":
            assert r.status == 200 and r.body == image
            assert path.read_bytes() == image
        else:
            # nothing to offer but the bad copy: nothing offered
            assert r.status == 304
            r = d.get(f"/firmware/artifacts/{sha}")
            assert r.status == 503 and r.json()["error"]
        assert any("does not match its digest" in line for line in d.log)
    finally:
        d.check_clean_exit()


@pg_only
def test_a_hung_leader_is_replaced_within_leader_timeout(tmp_path):
    """A leader that lives but does nothing (SIGSTOP: its connection
    stays open, so PostgreSQL alone would wait forever) renews no lease;
    the other node ends its session and leads. Woken, it knows."""
    a, b = node_pair(tmp_path)
    for d in (a, b):
        d.conf.write_text(d.conf.read_text() + "leader_timeout = 2\n")
    a.start()
    a.wait_for(lambda: leads(a) == 1, 5, "a to lead")
    b.start()
    try:
        assert leads(b) == 0
        a.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        b.wait_for(lambda: leads(b) == 1, 5, "b to take over")
        assert time.monotonic() - t0 < 2 + 1.5, "within leader_timeout"
        assert any("renewed nothing for 2 s" in line for line in b.log)
        a.proc.send_signal(signal.SIGCONT)
        a.wait_for(lambda: leads(a) == 0, 3, "a to know it no longer leads")
        assert any("lost the leadership" in line for line in a.log)
        assert leads(b) == 1
    finally:
        a.proc.send_signal(signal.SIGCONT)
        a.check_clean_exit()
        b.check_clean_exit()


def test_a_path_is_sqlite_whatever_its_name(tmp_path):
    """A file named like a connection string is still a file."""
    db = tmp_path / "host=dbname=x.db"
    d = Otad(tmp_path, f"database = {db}\n")
    d.otactl("status")
    assert db.exists() and db.read_bytes()[:16] == b"SQLite format 3\x00"
