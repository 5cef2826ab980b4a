"""Health beyond outcomes: a simulated fleet polls a real otad and publishes
its telemetry to a real Mosquitto; stages compare the devices a rollout
updated with the devices it has not, and halt a build that installs,
validates and is still worse."""
import contextlib
import random
import re
import time

import pytest

import imagebuild
from broker import Broker
from conftest import Otad
from fleet import Device, Fleet

FLEET = 40
CANARIES = 12


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@contextlib.contextmanager
def telemetry_fleet(tmp_path, broker, canaries=CANARIES, conf=""):
    """otad with release 2.0.0 (not offered), connected to broker, keeping
    every telemetry sample; a fleet on 1.0.0 known to it, its first
    canaries in group canary. otad must stop cleanly after."""
    d = Otad(tmp_path, f"mqtt_host = 127.0.0.1\nmqtt_port = {broker.port}\n"
             "mqtt_telemetry_topics = devices/telemetry\n"
             "rate_per_device = 0\ntelemetry_interval = 0\n"
             "compare_min_devices = 8\n" + conf)
    img = tmp_path / "app.bin"
    img.write_bytes(imagebuild.build(version="2.0.0", seglen=1024))
    sha = d.otactl("artifact", "add", str(img)).stdout.strip()
    d.otactl("release", "create", "2.0.0", "--artifact", sha)
    d.start()
    try:
        d.wait_for(lambda: any("listening for telemetry on" in l
                               for l in d.log), 10, "the broker connection")
        devices = [Device(f"dev-{i:03d}", "1.0.0") for i in range(FLEET)]
        f = Fleet(d.port, devices)
        assert f.round() == []
        for dev in devices[:canaries]:
            d.otactl("device", "set", dev.id, "--group", "canary")
        yield d, f
    finally:
        d.check_clean_exit()


def health(heap_after=1.0, reconnects_after=1.0):
    """Telemetry as devices send it: free heap around 200 kB and a few MQTT
    reconnects, each scaled on devices that run 2.0.0."""
    rng = random.Random(7)

    def of(dev):
        new = dev.version == "2.0.0"
        heap = 200000 * (heap_after if new else 1.0)
        reconnects = 2 * (reconnects_after if new else 1.0)
        return {"free_heap": int(heap + rng.randint(-3000, 3000)),
                "rssi": -60 + rng.randint(-3, 3),
                "metrics": {"mqtt_reconnects": reconnects +
                            rng.choice((0, 0.5))}}
    return of


def start(d, stages):
    rid = d.otactl("rollout", "create", "2.0.0", "--stages", stages,
                   json_out=True)["id"]
    d.otactl("rollout", "start", str(rid))
    return rid


def status(d, rid):
    return d.otactl("rollout", "status", str(rid), json_out=True)[0]


def drive(d, f, broker, rid, telemetry, done, limit=40):
    """Rounds of polls, each followed by the fleet's telemetry, until
    done(status)."""
    for _ in range(limit):
        assert f.round() == []
        f.telemetry(broker, telemetry)
        st = status(d, rid)
        if done(st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"rollout did not get there: {st}")


def comparison(st, name, stage=0):
    for c in st["stages"][stage].get("compared", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no {name} in {st['stages'][stage]}")


# the fleet's telemetry is in within a round, long before the soak ends
CANARY = "group=canary,soak=3s,min=8,heap_drop<=20%"


def test_a_build_that_loses_heap_halts_at_its_canary(tmp_path, broker):
    with telemetry_fleet(tmp_path, broker) as (d, f):
        rid = start(d, CANARY + "; 100%,soak=1s")
        st = drive(d, f, broker, rid, health(heap_after=0.7),
                   lambda s: s["state"] != "active" or s["stage"] > 0)
        assert st["state"] == "halted", st
        assert st["stage"] == 0
        # the halt names the comparison, both medians and both samples
        assert re.search(r"stage 0: heap_drop<=20%: median free heap 3\d% "
                         r"lower on the updated devices \(1[34]\d{4} B over "
                         r"12 updated, (199|200|201)\d{3} B over 28 not\)",
                         st["reason"]), st["reason"]
        c = comparison(st, "heap_drop")
        assert c["state"] == "breach"
        assert c["updated_devices"] == 12 and c["control_devices"] == 28
        # only the canaries ever got the build
        assert sum(1 for dev in f.devices if dev.offered) == CANARIES
        # /metrics shows both sides and the breach
        d.wait_for(lambda: 'otad_rollout_compare_breached{rollout="%d",'
                   'version="2.0.0",stage="0",compare="heap_drop"} 1' % rid
                   in d.get("/metrics").body.decode(), 10,
                   "the comparison gauges")
        text = d.get("/metrics").body.decode()
        assert re.search(r'otad_rollout_compare_devices\{rollout="%d",'
                         r'version="2.0.0",stage="0",compare="heap_drop",'
                         r'side="control"\} 28' % rid, text)
        # and otactl's table says it in words
        out = d.otactl("rollout", "status", str(rid)).stdout
        assert re.search(r"stage 0 heap_drop<=20%: updated 1[34]\d{4} \(12 "
                         r"devices\), not updated \d+ \(28 devices\): BOUND "
                         r"CROSSED", out), out


# the comparisons' SQL runs on PostgreSQL in the registry's unit tests
# (test_22), and this file's first test drives it there end to end
@pytest.mark.sqlite_once
def test_a_build_as_good_as_the_fleet_passes(tmp_path, broker):
    with telemetry_fleet(tmp_path, broker) as (d, f):
        rid = start(d, CANARY + ",metrics.mqtt_reconnects<=1.5x; "
                    "100%,soak=1s")
        st = drive(d, f, broker, rid, health(),
                   lambda s: s["state"] != "active")
        assert st["state"] == "completed", st
        assert all(dev.version == "2.0.0" for dev in f.devices)


@pytest.mark.sqlite_once
def test_a_comparison_without_its_sample_does_not_halt(tmp_path, broker):
    """Four canaries are too few for compare_min_devices = 8: their 30%
    heap loss cannot halt the rollout, and status says why."""
    with telemetry_fleet(tmp_path, broker, canaries=4) as (d, f):
        rid = start(d, "group=canary,soak=3s,min=4,heap_drop<=20%; "
                    "100%,soak=1h")
        seen = {}

        def judged(s):
            if s["stage"] == 0 and s["stages"][0].get("compared"):
                seen.update(comparison(s, "heap_drop"))
            return s["state"] != "active" or s["stage"] > 0
        st = drive(d, f, broker, rid, health(heap_after=0.7), judged)
        assert st["state"] == "active" and st["stage"] == 1, st
        assert seen["state"] == "sample" and \
            seen["updated_devices"] == 4, seen


@pytest.mark.sqlite_once
def test_a_custom_metric_gates_a_stage(tmp_path, broker):
    """Free heap unchanged, MQTT reconnects tripled: the metrics field the
    devices send halts the canary."""
    with telemetry_fleet(tmp_path, broker) as (d, f):
        rid = start(d, CANARY + ",metrics.mqtt_reconnects<=1.5x; "
                    "100%,soak=1s")
        st = drive(d, f, broker, rid, health(reconnects_after=3),
                   lambda s: s["state"] != "active" or s["stage"] > 0)
        assert st["state"] == "halted", st
        assert "metrics.mqtt_reconnects<=1.5x: median mqtt_reconnects" in \
            st["reason"], st["reason"]
        assert comparison(st, "heap_drop")["state"] == "ok"
        assert comparison(st, "metrics.mqtt_reconnects")["state"] == "breach"
