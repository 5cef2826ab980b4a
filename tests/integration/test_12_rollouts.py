"""Rollouts in canary rings with health gates, driven by a simulated fleet
of 1,000 devices with A/B slots polling a real otad in parallel."""
import time

import imagebuild
from conftest import Otad
from fleet import Device, Fleet

FLEET = 1000
CANARIES = 5


def otad_with_release(tmp_path, conf="", version="2.0.0"):
    """A started otad (no per-device cap, conf added) with a release."""
    d = Otad(tmp_path, "rate_per_device = 0\n" + conf)
    img = tmp_path / "app.bin"
    img.write_bytes(imagebuild.build(version=version, seglen=1024))
    sha = d.otactl("artifact", "add", str(img)).stdout.strip()
    d.otactl("release", "create", version, "--artifact", sha)
    return d.start()


def fleet_otad(tmp_path, version="2.0.0"):
    d = otad_with_release(tmp_path, version=version)
    devices = [Device(f"dev-{i:04d}", "1.0.0",
                      "canary" if i < CANARIES else None)
               for i in range(FLEET)]
    # the fleet is known: one poll each registers it
    f = Fleet(d.port, devices)
    assert f.round() == []
    for dev in devices[:CANARIES]:
        d.otactl("device", "set", dev.id, "--group", "canary")
    return d, devices, f


def status(d, rid):
    return d.otactl("rollout", "status", str(rid), json_out=True)[0]


def rounds_until(d, f, rid, done, limit=60):
    for _ in range(limit):
        assert f.round() == []
        st = status(d, rid)
        if done(st):
            return st
        time.sleep(0.3)
    raise AssertionError(f"rollout did not get there: {st}")


# The canary soak outlasts a round of 1,000 polls even under the
# sanitizers, so the first round can only ever reach the canaries.
PLAN = ("group=canary,soak=5s,min=3; 10%,soak=1s,min=20; "
        "100%,soak=1s,min=1")


def test_a_good_release_walks_every_ring(tmp_path):
    d, devices, f = fleet_otad(tmp_path)
    try:
        rid = d.otactl("rollout", "create", "2.0.0", "--stages", PLAN,
                       json_out=True)["id"]
        # a draft offers nothing
        assert f.round() == [] and not any(x.offered for x in devices)
        d.otactl("rollout", "start", str(rid))
        assert f.round() == []
        # only the canaries at first
        assert {x.id for x in devices if x.offered} == \
            {x.id for x in devices[:CANARIES]}
        st = rounds_until(d, f, rid, lambda s: s["state"] == "completed")
        # completed while a round was under way (the last ring's soak is
        # 1 s): the devices polled before it opened get it next time
        assert f.round() == []
        st = status(d, rid)
        assert all(x.version == "2.0.0" for x in devices)
        assert all(x.offered == ["2.0.0"] for x in devices)
        stages = st["stages"]
        assert [s["succeeded"] for s in stages][0] == CANARIES
        assert sum(s["succeeded"] for s in stages) == FLEET
        # the 10% ring took about a tenth of the rest
        # (its size by the ring hash: how many of it polled while it was
        # the newest ring depends on how fast the rounds go)
        assert 50 <= stages[1]["targeted"] - CANARIES <= 150
        assert 0 < stages[1]["offered"] <= stages[1]["targeted"]
        assert stages[2]["targeted"] == FLEET
        assert st["baseline"] == 1
        moves = [r[0] for r in d.query(
            "SELECT what FROM audit WHERE what LIKE 'rollout % stage %'"
            " ORDER BY id")]
        assert moves == [f"rollout {rid} stage 0 -> 1",
                         f"rollout {rid} stage 1 -> 2"]
        # a device that joins later gets the baseline
        late = Device("late-1", "1.0.0")
        Fleet(d.port, [late]).round()
        assert late.version == "2.0.0"
    finally:
        d.check_clean_exit()


def test_a_bad_release_halts_in_the_canary_ring(tmp_path):
    d, devices, f = fleet_otad(tmp_path)
    f.bad = {"2.0.0"}
    try:
        rid = d.otactl("rollout", "create", "2.0.0", "--stages", PLAN,
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        st = rounds_until(d, f, rid, lambda s: s["state"] == "halted")
        assert "rollback rate" in st["reason"]
        assert st["stage"] == 0
        # a few more rounds: nothing more is offered to anyone
        for _ in range(3):
            assert f.round() == []
            time.sleep(0.3)
        offered = {x.id for x in devices if x.offered}
        assert offered <= {x.id for x in devices[:CANARIES]}
        outside = d.query("SELECT count(*) FROM attempt WHERE device NOT"
                          " IN (SELECT id FROM device WHERE grp ="
                          " 'canary')")[0][0]
        halted = d.query("SELECT actor FROM audit WHERE what ="
                         f" 'rollout {rid} state active -> halted'")[0]
        assert outside == 0
        assert halted == ("otad",)
        assert all(x.version == "1.0.0" for x in devices)
        assert any("halted" in l for l in d.log)
        # resuming a halt needs --force
        p = d.otactl("rollout", "resume", str(rid), check=False)
        assert p.returncode == 1 and "--force" in p.stderr
    finally:
        d.check_clean_exit()


def test_a_hand_edit_pauses_a_rollout_within_a_second(tmp_path):
    d, devices, f = fleet_otad(tmp_path)
    try:
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "10%,soak=1h,min=1000; 100%", json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        d.hand_edit("UPDATE rollout SET state ="
                        f" 'paused' WHERE id = {rid}").check_returncode()
        time.sleep(1.0)
        assert f.round() == []
        assert not any(x.offered for x in devices)
        # stages edited by hand stay in order
        p = d.hand_edit("UPDATE rollout_stage SET"
                            f" percent = 5 WHERE rollout = {rid} AND no = 1")
        assert "rings only widen" in p.stderr
        p = d.hand_edit("UPDATE rollout SET"
                            f" stage = 7 WHERE id = {rid}")
        assert "no such stage" in p.stderr
        d.hand_edit("UPDATE rollout SET state ="
                        f" 'active' WHERE id = {rid}").check_returncode()
        time.sleep(1.0)
        assert f.round() == []
        assert 50 <= sum(1 for x in devices if x.offered) <= 150
    finally:
        d.check_clean_exit()


def test_deferred_devices_are_not_failures(tmp_path):
    d, devices, f = fleet_otad(tmp_path)
    low = devices[:300]
    for x in low:
        x.battery = 20
    try:
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "100%,soak=1s,min=1", "--min-battery", "40",
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        assert f.round() == []
        assert all(x.deferred == ["battery"] and not x.offered for x in low)
        assert all(x.version == "2.0.0" for x in devices[300:])
        st = status(d, rid)["stages"][0]
        assert st["failed"] == 0 and st["timed_out"] == 0
        assert st["deferred"] == 300
        # charged: they update
        for x in low:
            x.battery = 90
        assert f.round() == []
        assert all(x.version == "2.0.0" for x in devices)
    finally:
        d.check_clean_exit()


def test_rollout_commands_refuse_what_makes_no_sense(tmp_path):
    d = Otad(tmp_path)
    img = tmp_path / "a.bin"
    img.write_bytes(imagebuild.build(version="2.0.0"))
    sha = d.otactl("artifact", "add", str(img)).stdout.strip()
    d.otactl("release", "create", "2.0.0", "--artifact", sha)
    old = tmp_path / "o.bin"
    old.write_bytes(imagebuild.build(version="1.5.0", seed=3))
    sha_old = d.otactl("artifact", "add", str(old)).stdout.strip()
    d.otactl("release", "create", "1.5.0", "--artifact", sha_old)
    for args, needle in [
        (["rollout", "create", "2.0.0"], "needs --stages"),
        (["rollout", "create", "2.0.0", "--stages", "10%"],
         "last stage must be 100%"),
        (["rollout", "create", "2.0.0", "--stages", "100%", "--window",
          "9-17"], "--window is HH:MM-HH:MM"),
        (["rollout", "create", "2.0.0", "--stages", "100%", "--days",
          "weekdays"], "--days"),
        (["rollout", "create", "2.0.0", "--stages", "100%",
          "--min-battery", "150"], "--min-battery"),
        (["rollout", "create", "9.9.9", "--stages", "100%"],
         "no release 9.9.9"),
        (["rollout", "create", "2.0.0", "--stages",
          "10%,heap_drop<=200%;100%"], "bad comparison 'heap_drop<=200%'"),
        (["rollout", "create", "2.0.0", "--stages",
          "10%,metrics.a b<=2x;100%"], "bad comparison"),
        (["rollout", "create", "2.0.0", "--stages",
          "10%,resets>=2x;100%"], "bad comparison"),
        (["rollout", "start", "77"], "no rollout 77"),
        (["rollout", "start", "x"], "not a rollout id"),
    ]:
        p = d.otactl(*args, check=False)
        assert p.returncode == 1, args
        assert needle in p.stderr, (needle, p.stderr)
    rid = d.otactl("rollout", "create", "2.0.0", "--stages", "100%",
                   json_out=True)["id"]
    d.otactl("rollout", "start", str(rid))
    p = d.otactl("rollout", "start", str(rid), check=False)
    assert "is active: cannot start" in p.stderr
    # going back needs --downgrade
    p = d.otactl("rollout", "create", "1.5.0", "--stages", "100%",
                 check=False)
    assert p.returncode == 1 and "--downgrade" in p.stderr
    d.otactl("rollout", "create", "1.5.0", "--stages", "100%",
             "--downgrade")
    d.otactl("rollout", "abort", str(rid))
    p = d.otactl("rollout", "pause", str(rid), check=False)
    assert "is aborted" in p.stderr
    assert "rollout 1" in d.otactl("rollout", "status").stdout


def test_window_forced_and_downgrade(tmp_path):
    d, devices, f = fleet_otad(tmp_path)
    few = devices[:20]
    f2 = Fleet(d.port, few)
    try:
        # a window that is closed now: deferred, not failed
        now = time.gmtime()
        start = (now.tm_hour + 2) % 24
        window = f"{start:02d}:00-{(start + 1) % 24:02d}:00"
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "100%,soak=1s,min=1", "--window", window,
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        assert f2.round() == []
        assert all(x.deferred == ["window"] and not x.offered for x in few)
        d.otactl("rollout", "abort", str(rid))
        # the same plan for a forced release goes out at once
        img = tmp_path / "f.bin"
        img.write_bytes(imagebuild.build(version="2.0.1", seglen=1024,
                                         seed=5))
        sha = d.otactl("artifact", "add", str(img)).stdout.strip()
        d.otactl("release", "create", "2.0.1", "--artifact", sha,
                 "--forced")
        # a soak long enough that the rollout is still running when it is
        # aborted, however slowly the round went
        rid = d.otactl("rollout", "create", "2.0.1", "--stages",
                       "100%,soak=1h,min=1", "--window", window,
                       "--min-battery", "90", json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        for x in few:
            x.battery = 10
        assert f2.round() == []
        assert all(x.version == "2.0.1" for x in few)
        d.otactl("rollout", "abort", str(rid))
        # rolling the fleet back to 2.0.0 needs --downgrade, then works
        p = d.otactl("rollout", "create", "2.0.0", "--stages", "100%",
                     check=False)
        assert p.returncode == 0, "2.0.1 is no longer offered"
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "100%,soak=1s,min=1", "--downgrade",
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        assert f2.round() == []
        assert all(x.version == "2.0.0" for x in few)
    finally:
        d.check_clean_exit()


def test_crashes_after_the_update_halt_the_rollout(tmp_path):
    d, devices, f = fleet_otad(tmp_path)
    canaries = devices[:CANARIES]
    try:
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "group=canary,soak=30s,min=3,crash<=0.2; 100%",
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        assert Fleet(d.port, canaries).round() == []
        assert all(x.version == "2.0.0" for x in canaries)
        time.sleep(1.1)
        # they updated fine, then three panic (4) or hit the watchdog (6)
        for x, reason in zip(canaries, [4, 6, 4, 1, 1]):
            assert d.get("/firmware/check", {
                "X-Device-ID": x.id, "X-Current-Version": "2.0.0",
                "X-Reset-Reason": str(reason)}).status == 304
        d.wait_for(lambda: status(d, rid)["state"] == "halted", timeout=5,
                   what="the crash rate to halt the rollout")
        st = status(d, rid)
        assert "crash rate 0.60 > 0.20" in st["reason"]
        assert st["stages"][0]["crashed"] == 3
    finally:
        d.check_clean_exit()


def count_stage_reach(tmp_path, size):
    """A fleet of size devices in the registry, a rollout whose canary is
    50 devices: how many a round of polls is offered the build (no halt,
    no widening: the canary soaks for an hour), and the stage's targeted
    figure in rollout status."""
    tmp_path.mkdir()
    d = otad_with_release(tmp_path)
    try:
        devices = [Device(f"n{size}-{i:05d}", "1.0.0") for i in range(size)]
        # registered as a poll each would (quicker for 20,000)
        d.query("INSERT INTO device (id, version, first_seen, last_seen)"
                " VALUES " + ", ".join(f"('{x.id}', '1.0.0', 1, 1)"
                                       for x in devices))
        f = Fleet(d.port, devices, workers=32)
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "50,soak=1h; 100%", json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        assert f.round() == []
        offered = {x.id for x in devices if x.offered}
        st = status(d, rid)
        assert st["stages"][0]["devices"] == 50
        assert st["stages"][0]["targeted"] == len(offered)
        if size <= 200:
            # the same devices again in the next round, no others
            assert f.round() == []
            assert {x.id for x in devices if x.offered} == offered
        text = d.otactl("rollout", "status", str(rid)).stdout
        assert "50 devices" in text
        d.check_clean_exit()
        return len(offered)
    finally:
        d.stop()


def test_a_stage_of_50_devices_reaches_50_whatever_the_fleet(tmp_path):
    """A canary sized in devices does not grow with the fleet: 50 of 200,
    50 of 20,000, and the whole of a 40-device fleet."""
    assert count_stage_reach(tmp_path / "a", 200) == 50
    assert count_stage_reach(tmp_path / "b", 20000) == 50
    assert count_stage_reach(tmp_path / "c", 40) == 40


def test_a_promote_window_keeps_a_healthy_stage_waiting(tmp_path):
    """promote_window in the config: a rollout created without its own
    waits, healthy and soaked, in its canary ring until the window opens
    (status says when); an operator's window that is open now lets it
    widen; a failing canary halts outside the window."""
    start = time.gmtime(time.time() + 2 * 3600)
    end = time.gmtime(time.time() + 3 * 3600)
    closed = (f"{start.tm_hour:02d}:{start.tm_min:02d}-"
              f"{end.tm_hour:02d}:{end.tm_min:02d}")
    d = otad_with_release(tmp_path, f"promote_window = {closed}\n")
    try:
        devices = [Device(f"pw-{i:03d}", "1.0.0") for i in range(200)]
        f = Fleet(d.port, devices)
        assert f.round() == []
        for dev in devices[:CANARIES]:
            d.otactl("device", "set", dev.id, "--group", "canary")
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "group=canary,soak=1s,min=3; 100%,soak=1s",
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        for _ in range(8):
            assert f.round() == []
            time.sleep(0.3)
        st = status(d, rid)
        assert st["promote"] == closed
        assert st["stage"] == 0 and st["state"] == "active"
        assert st["stages"][0]["succeeded"] == CANARIES
        assert abs(st["next_stage_at"] - (time.time() + 2 * 3600)) < 120
        assert {x.id for x in devices if x.offered} == \
            {x.id for x in devices[:CANARIES]}
        text = d.otactl("rollout", "status", str(rid)).stdout
        assert f"promote window: {closed}" in text
        assert "next stage may open: " + time.strftime(
            "%Y-%m-%d", time.gmtime(st["next_stage_at"])) in text
        # an operator opens the window by hand: the next ring opens
        d.hand_edit(f"UPDATE rollout SET promote = NULL WHERE id = {rid}")
        st = rounds_until(d, f, rid, lambda s: s["stage"] == 1, 30)
        # a rollout may still ask for no window at all
        rid2 = d.otactl("rollout", "create", "2.0.0", "--stages",
                        "group=canary; 100%", "--promote-window", "any",
                        "--downgrade", json_out=True)["id"]
        assert status(d, rid2)["promote"] is None
        p = d.otactl("rollout", "create", "2.0.0", "--stages", "100%",
                     "--promote-window", "someday", check=False)
        assert p.returncode != 0 and "--promote-window" in p.stderr
    finally:
        d.check_clean_exit()


def test_a_failing_canary_halts_outside_the_promote_window(tmp_path):
    d, devices, f = fleet_otad(tmp_path)
    f.bad = {"2.0.0"}
    start = time.gmtime(time.time() + 2 * 3600)
    end = time.gmtime(time.time() + 3 * 3600)
    try:
        rid = d.otactl("rollout", "create", "2.0.0", "--stages", PLAN,
                       "--promote-window",
                       f"{start.tm_hour:02d}:{start.tm_min:02d}-"
                       f"{end.tm_hour:02d}:{end.tm_min:02d} +00:00",
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        st = rounds_until(d, f, rid, lambda s: s["state"] == "halted")
        assert "rollback rate" in st["reason"] and st["stage"] == 0
    finally:
        d.check_clean_exit()


def test_a_device_that_keeps_failing_is_quarantined(tmp_path):
    """quarantine_after = 3 in 24h (the default): a device whose last three
    attempts, across releases, failed is offered nothing (a 304 saying
    quarantine), shown in device show, /metrics and the audit log, and
    left out of the next rollout's count-sized canary, until an operator
    clears it."""
    d = otad_with_release(tmp_path)
    try:
        for i in range(6):
            r = d.get("/firmware/check", {"X-Device-ID": f"q-{i}",
                                          "X-Current-Version": "1.0.0"})
            assert r.status == 304
        # q-0 reports three failed updates, each of another build
        for v in ("1.1.0", "1.2.0", "1.3.0"):
            r = d.post_json("/firmware/report", {
                "device": "q-0", "version": v, "result": "failed",
                "reason": "flash write failed"})
            assert r.status == 200
        show = d.otactl("device", "show", "q-0", json_out=True)
        assert show["quarantined_until"] > time.time() + 86400 - 60
        assert d.query("SELECT count(*) FROM audit WHERE what LIKE"
                       " 'device q-0 quarantined for 86400s: 3 failed%'"
                       ) == [(1,)]
        assert any("device q-0 quarantined" in l for l in d.log)
        # the gauges are gathered in the background, every few seconds
        d.wait_for(lambda: "otad_devices_quarantined 1\n" in
                   d.get("/metrics").body.decode(), 15, "the gauge")
        # a canary of 5 devices: the five that are not quarantined
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "5,soak=1h; 100%", json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        offered = []
        for i in range(6):
            r = d.get("/firmware/check", {"X-Device-ID": f"q-{i}",
                                          "X-Current-Version": "1.0.0"})
            if r.status == 200:
                offered.append(f"q-{i}")
            elif i == 0:
                assert r.status == 304
                assert r.headers.get("x-update-deferred") == "quarantine"
        assert offered == [f"q-{i}" for i in range(1, 6)]
        # cleared by an operator: offered again at once
        d.otactl("device", "clear", "q-0")
        assert d.otactl("device", "show", "q-0",
                        json_out=True)["quarantined_until"] is None
        p = d.otactl("device", "clear", "q-0", check=False)
        assert p.returncode != 0 and "not in quarantine" in p.stderr
        assert d.query("SELECT actor FROM audit WHERE what ="
                       " 'device clear q-0 (out of quarantine)'") != []
        d.hand_edit(f"UPDATE rollout_stage SET devices = 6, cut_ring ="
                    f" NULL WHERE rollout = {rid} AND no = 0")
        for _ in range(50):
            r = d.get("/firmware/check", {"X-Device-ID": "q-0",
                                          "X-Current-Version": "1.0.0"})
            if r.status == 200:
                break
            time.sleep(0.1)
        assert r.status == 200
    finally:
        d.check_clean_exit()


def test_a_build_that_crashes_later_is_reverted_unattended(tmp_path):
    """--on-halt revert: a build that installs, validates itself and then
    crashes (the crash telemetry comes long after the update, within the
    canary's soak) halts the canary ring, and every canary goes back to
    the release it ran before, with nobody at the console; the one whose
    eFuse the build raised is listed stranded, never offered the older
    image; resuming past the halt needs a word on the reverted devices."""
    d = Otad(tmp_path, "rate_per_device = 0\n")
    old = tmp_path / "old.bin"
    old.write_bytes(imagebuild.build(version="1.0.0", seglen=1024))
    new = tmp_path / "new.bin"
    new.write_bytes(imagebuild.build(version="2.0.0", seglen=1024,
                                     secure_version=1, seed=1))
    d.start()
    try:
        d.publish(old, "1.0.0")
        sha = d.otactl("artifact", "add", str(new)).stdout.strip()
        d.otactl("release", "create", "2.0.0", "--artifact", sha,
                 "--confirm-secure-version")
        devices = [Device(f"rv-{i:03d}", "1.0.0",
                          anti_rollback=(i == 0)) for i in range(100)]
        canaries = devices[:CANARIES]
        f = Fleet(d.port, devices)
        f.secure_versions = {"2.0.0": 1}
        assert f.round() == []
        for dev in canaries:
            d.otactl("device", "set", dev.id, "--group", "canary")
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "group=canary,soak=2h,min=3,crash<=0.2; 100%",
                       "--on-halt", "revert", json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        assert f.round() == []
        assert [x.version for x in canaries] == ["2.0.0"] * CANARIES
        assert canaries[0].secure_version == 1
        assert all(x.version == "1.0.0" for x in devices[CANARIES:])
        # later in the soak: three of them panic or hit the watchdog
        for x, reason in zip(canaries, [4, 6, 4, 1, 1]):
            assert d.get("/firmware/check", {
                "X-Device-ID": x.id, "X-Current-Version": "2.0.0",
                "X-Secure-Version": str(x.secure_version),
                "X-Reset-Reason": str(reason)}).status == 304
        d.wait_for(lambda: status(d, rid).get("revert") is not None, 10,
                   "the halt and its revert")
        st = status(d, rid)
        assert st["state"] == "halted" and "crash rate" in st["reason"]
        assert st["stranded"] == [{"id": canaries[0].id}]
        # the fleet polls on: the canaries go back by themselves
        for _ in range(3):
            assert f.round() == []
        assert [x.version for x in canaries] == ["2.0.0"] + \
            ["1.0.0"] * (CANARIES - 1)
        assert all(x.version == "1.0.0" for x in devices[1:])
        assert canaries[0].offered == ["2.0.0"]
        assert "secure-version" in canaries[0].deferred
        st = status(d, rid)
        assert st["revert"]["version"] == "1.0.0"
        assert st["revert"]["succeeded"] == CANARIES - 1
        assert st["revert"]["offered"] == CANARIES - 1
        text = d.otactl("rollout", "status", str(rid)).stdout
        assert f"reverted to 1.0.0 (rollout {st['revert']['rollout']}" in text
        assert f"stranded 1 (their eFuse refuses it): {canaries[0].id}" \
            in text
        audit = d.query("SELECT what FROM audit WHERE what LIKE"
                        f" 'rollout {rid} reverted to 1.0.0%'")
        assert len(audit) == 1 and canaries[0].id in audit[0][0]
        d.wait_for(lambda: f'otad_rollout_stranded{{rollout="{rid}",'
                   'version="2.0.0"} 1' in d.get("/metrics").body.decode(),
                   15, "the stranded gauge")
        # going on needs a word on the devices the revert took back
        p = d.otactl("rollout", "resume", str(rid), "--force", check=False)
        assert p.returncode != 0 and "--reverted keep" in p.stderr
        for bad in (["--reverted", "keep"], ["--force", "--reverted",
                                             "maybe"]):
            p = d.otactl("rollout", "resume", str(rid), *bad, check=False)
            assert p.returncode != 0 and "'reverted' must be" in p.stderr
        p = d.otactl("rollout", "create", "2.0.0", "--stages", "100%",
                     "--on-halt", "undo", check=False)
        assert p.returncode != 0 and "hold or revert" in p.stderr
        assert status(d, rid)["state"] == "halted"
        # (the operator judged the crashes harmless: the bound goes up)
        d.hand_edit(f"UPDATE rollout_stage SET soak_s = 0, max_crash = 1"
                    f" WHERE rollout = {rid}")
        d.otactl("rollout", "resume", str(rid), "--force", "--reverted",
                 "keep")
        st = status(d, rid)
        assert st["state"] == "active" and st["revert"]["state"] == \
            "completed"
        st = rounds_until(d, f, rid, lambda s: s["state"] == "completed")
        assert f.round() == []
        # the rest of the fleet took it; the reverted canaries were kept
        assert all(x.version == "2.0.0" for x in devices[CANARIES:])
        assert all(x.offered == ["2.0.0", "1.0.0"] for x in canaries[1:])
        assert all(x.version == "1.0.0" for x in canaries[1:])
    finally:
        d.check_clean_exit()


def test_a_halt_by_hand_with_nothing_to_revert_to_says_so_once(tmp_path):
    """on_halt = revert, no earlier release, halted by hand (no reason):
    the halt says there is nothing to revert to, once, not every tick."""
    d = otad_with_release(tmp_path, "on_halt = revert\n")
    try:
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "10%; 100%", json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        d.hand_edit(f"UPDATE rollout SET state = 'halted' WHERE id = {rid}")
        d.wait_for(lambda: "nothing to revert to" in
                   (status(d, rid)["reason"] or ""), 10, "the reason")
        time.sleep(2.5)  # two more ticks of the controller
        assert sum("nothing to revert to" in l for l in d.log) == 1
        assert status(d, rid)["on_halt"] == "revert"
        assert "revert" not in status(d, rid)
    finally:
        d.check_clean_exit()
