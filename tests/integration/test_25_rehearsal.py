"""A rollout rehearsed before it starts: `otactl rollout simulate` runs the
real controller and policy on a copy of the live fleet in simulated time,
predicts what a real run of the fleet simulator then shows, and writes
nothing."""
import time

import pytest

from conftest import SLOWER
from fleet import Device, Fleet
from test_12_rollouts import otad_with_release, status

FLEET = 10000
FAILURE_RATE = 0.08
# the canary of 50 tolerates the failure rate, the next thousand do not
PLAN = ("50,soak=2s,min=50,success>=0.5,rollback<=0.2; "
        "1000,soak=2s,min=900,success>=0.5,rollback<=0.05; 100%,soak=1s")


def registry_state(d):
    """What a rehearsal must leave as it was, table by table."""
    return [d.query(sql) for sql in (
        "SELECT count(*), sum(checks), max(last_seen), min(version),"
        " max(version) FROM device",
        "SELECT count(*) FROM rollout", "SELECT count(*) FROM rollout_stage",
        "SELECT count(*) FROM attempt", "SELECT count(*) FROM audit",
        "SELECT count(*) FROM telemetry", "SELECT * FROM catalog")]


def test_a_rehearsal_predicts_the_exposure_of_a_real_run(tmp_path):
    d = otad_with_release(tmp_path)
    try:
        devices = [Device(f"dev-{i:05d}", "1.0.0") for i in range(FLEET)]
        now = int(time.time())
        # registered as a poll each would, seen just now
        d.query("INSERT INTO device (id, version, first_seen, last_seen)"
                " VALUES " + ", ".join(f"('{x.id}', '1.0.0', {now}, {now})"
                                       for x in devices))
        before = registry_state(d)
        r = d.otactl("rollout", "simulate", "2.0.0", "--stages", PLAN,
                     "--failure-rate", str(FAILURE_RATE), "--poll-interval",
                     "1h", json_out=True)
        assert r["devices"] == FLEET
        assert r["state"] == "halted", r
        assert r["reason"].startswith("stage 1: rollback rate"), r
        assert r["stages"][0]["opened_after"] == 0
        assert r["stages"][1]["opened_after"] > 0
        assert r["stages"][2]["opened_after"] is None
        # halted within two poll intervals of simulated time
        assert 0 < r["ended_after"] <= 2 * 3600, r
        predicted = r["offered"]
        # and in words
        out = d.otactl("rollout", "simulate", "2.0.0", "--stages", PLAN,
                       "--failure-rate", str(FAILURE_RATE)).stdout
        assert f"{predicted} devices offered 2.0.0 before the halt" in out
        assert "stage 2: never opens" in out
        assert "nothing was written to the registry" in out
        assert registry_state(d) == before

        # the real run: the same plan, the fleet polling otad
        f = Fleet(d.port, devices, workers=32, failure_rate=FAILURE_RATE)
        rid = d.otactl("rollout", "create", "2.0.0", "--stages", PLAN,
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        for _ in range(30):
            assert f.round() == []
            st = status(d, rid)
            if st["state"] != "active":
                break
            time.sleep(1)
        assert st["state"] == "halted", st
        assert st["reason"].startswith("stage 1: rollback rate"), st
        real = sum(s["offered"] for s in st["stages"])
        assert real == sum(1 for x in devices if x.offered)
        assert abs(predicted - real) <= 0.1 * real, (predicted, real)
        d.check_clean_exit()
    finally:
        d.stop()


@pytest.mark.sqlite_once  # refusals before any registry read
def test_a_rehearsal_refuses_what_rollout_create_refuses(tmp_path):
    d = otad_with_release(tmp_path)
    try:
        for args, needle in [
            (["--stages", "10%"], "last stage must be 100%"),
            (["--stages", "100%", "--failure-rate", "1.5"],
             "'failure_rate' must be a rate"),
            (["--stages", "100%", "--crash-rate", "-1"],
             "'crash_rate' must be a rate"),
            (["--stages", "100%", "--poll-interval", "0"],
             "'poll_interval' must be a duration"),
            (["--stages", "100%", "--horizon", "2y"],
             "'horizon' must be a duration"),
            (["--stages", "100%", "--seed", "x"], "'seed' must be"),
            (["--stages", "100%", "--poll-interval", "30s"],
             "'poll_interval' must be a minute or more"),
        ]:
            p = d.otactl("rollout", "simulate", "2.0.0", *args, check=False)
            assert p.returncode == 1, args
            assert needle in p.stderr, (needle, p.stderr)
        p = d.otactl("rollout", "simulate", "9.9.9", "--stages", "100%",
                     check=False)
        assert "no release 9.9.9" in p.stderr
        assert d.query("SELECT count(*) FROM rollout") == [(0,)]
        # a plan that never ends, over a year of minutes: the controller's
        # looks are bounded, so it answers in seconds, at the horizon
        now = int(time.time())
        d.query("INSERT INTO device (id, version, first_seen, last_seen)"
                " VALUES " + ", ".join(f"('n{i}', '1.0.0', {now}, {now})"
                                       for i in range(20)))
        started = time.monotonic()
        r = d.otactl("rollout", "simulate", "2.0.0", "--stages",
                     "10,min=50; 100%", "--poll-interval", "1m",
                     "--horizon", "365d", json_out=True)
        assert time.monotonic() - started < 20 * SLOWER
        assert r["state"] == "active" and r["offered"] == 10, r
        assert r["ended_after"] >= 365 * 86400, r
    finally:
        d.stop()
