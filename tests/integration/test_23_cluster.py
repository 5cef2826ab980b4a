"""Two otad nodes on one PostgreSQL, behind haproxy configured as
conf/haproxy.cfg says, with a real Mosquitto: the fleet simulator polls
through the balancer while the leader is killed mid-rollout."""
import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import imagebuild
from broker import Broker, Sub
from conftest import BACKEND, ROOT, WLED, Otad
from fleet import Device, Fleet
from test_14_delta import NEW, apply, asks

pytestmark = pytest.mark.skipif(BACKEND != "postgresql",
                                reason="runs with the registry in PostgreSQL")

FLEET = 300
CANARIES = 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Haproxy:
    """haproxy with the shipped configuration, its TLS frontend bound to
    plain HTTP on loopback and its servers pointed at the nodes."""

    def __init__(self, tmp, nodes, port):
        self.port = port
        cfg = (ROOT / "conf" / "haproxy.cfg").read_text()
        cfg = re.sub(r"(?m)^\tbind .*$", f"\tbind 127.0.0.1:{self.port}",
                     cfg)
        cfg = re.sub(r"(?m)^\tserver .*\n", "", cfg)
        # within the test machine's file limit
        cfg = re.sub(r"maxconn \d+", "maxconn 4096", cfg)
        cfg += "".join(f"\tserver node{i} 127.0.0.1:{n.port} check\n"
                       for i, n in enumerate(nodes))
        self.cfg = tmp / "haproxy.cfg"
        self.cfg.write_text(cfg)
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port),
                                         0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read()
                time.sleep(0.05)
        raise AssertionError("haproxy did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def leads(d):
    for line in d.get("/metrics").body.decode().splitlines():
        if line.startswith("otad_leader "):
            return int(line.split()[1])
    return None


def status(d, rid):
    return d.otactl("rollout", "status", str(rid), json_out=True)[0]


@pytest.fixture
def cluster(tmp_path):
    """Nodes a and b (their own state directories), the broker, haproxy."""
    broker = Broker(tmp_path).start()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    lb_port = free_port()
    common = (f"mqtt_host = 127.0.0.1\nmqtt_port = {broker.port}\n"
              f"rate_per_device = 0\nleader_timeout = 3\n"
              f"public_url = http://127.0.0.1:{lb_port}\n")
    a = Otad(tmp_path / "a", common + "mqtt_client_id = otad-a\n")
    b = Otad(tmp_path / "b", common + "mqtt_client_id = otad-b\n"
             f"database = {a.pg.url(a.pg_db)}\n")
    b.pg_db = a.pg_db  # what b.query and b.hand_edit reach
    img = tmp_path / "app.bin"
    img.write_bytes(imagebuild.build(version="2.0.0", seglen=1024))
    sha = a.otactl("artifact", "add", str(img)).stdout.strip()
    a.otactl("release", "create", "2.0.0", "--artifact", sha)
    lb = None
    try:
        a.start()
        b.start()
        lb = Haproxy(tmp_path, [a, b], lb_port)
        yield a, b, lb, broker
    finally:
        # whatever failed, nothing outlives the test
        if lb is not None:
            lb.stop()
        Sub.stop_all()
        for d in (a, b):
            if d.proc is not None and d.proc.poll() is None:
                d.stop(signal.SIGKILL)
        broker.stop()


def test_the_leader_dies_mid_rollout_and_nothing_is_lost(cluster):
    a, b, lb, broker = cluster
    devices = [Device(f"dev-{i:04d}", "1.0.0") for i in range(FLEET)]
    f = Fleet(lb.port, devices)
    assert f.round() == []
    for dev in devices[:CANARIES]:
        a.otactl("device", "set", dev.id, "--group", "canary")
    a.wait_for(lambda: a.get("/health").status == 200 and
               leads(a) is not None and leads(b) is not None, 5,
               "both nodes up")
    assert sorted([leads(a), leads(b)]) == [0, 1], "exactly one leads"
    leader, other = (a, b) if leads(a) == 1 else (b, a)
    a.wait_for(lambda: any("listening for telemetry on" in l for l in a.log)
               and any("listening for telemetry on" in l for l in b.log),
               10, "both nodes on the broker")
    sub = Sub(broker)
    rid = other.otactl("rollout", "create", "2.0.0", "--stages",
                       "group=canary,soak=2s,min=3; 30%,soak=30s,min=20; "
                       "100%,soak=1s,min=1", json_out=True)["id"]
    other.otactl("rollout", "start", str(rid))
    # the canaries, triggered by the leader, polling through the balancer
    leader.wait_for(lambda: len(sub.device_triggers()) >= CANARIES, 10,
                    "the canaries' triggers")
    assert f.round() == []
    assert {x.id for x in devices if x.offered} == \
        {x.id for x in devices[:CANARIES]}
    # the gate opens the 30% ring; its devices are triggered and update
    leader.wait_for(lambda: status(other, rid)["stage"] == 1, 10,
                    "the second ring")
    leader.wait_for(lambda: len(sub.device_triggers()) >= 40, 15,
                    "the second ring's triggers")
    time.sleep(1)  # each trigger sent is on disk before the leader dies
    sent = other.query("SELECT count(*) FROM trigger WHERE device IS NOT"
                       " NULL AND sent_at IS NOT NULL")[0][0]
    assert sent == len(sub.device_triggers())

    # kill -9 the leader while a round is under way through the balancer
    poller = threading.Thread(target=f.round)
    poller.start()
    time.sleep(0.3)
    leader.proc.kill()
    leader.proc.wait(10)
    t0 = time.monotonic()
    poller.join(60)
    other.wait_for(lambda: leads(other) == 1, 4, "the other node to lead")
    assert time.monotonic() - t0 <= 4, "within leader_timeout"
    assert any("leading:" in line for line in other.log)

    # every report acknowledged before (and during) the kill is on disk
    recorded = set(other.query(
        "SELECT device, to_version, state FROM attempt"))
    assert set(f.acked) <= recorded, set(f.acked) - recorded

    # the rollout goes on under the new leader, through the balancer
    other.query("UPDATE rollout_stage SET soak_s = 1 WHERE rollout = ?",
                (rid,))
    f.errors.clear()
    for _ in range(60):
        assert f.round() == []
        if status(other, rid)["state"] == "completed":
            break
        time.sleep(0.3)
    assert status(other, rid)["state"] == "completed"
    assert f.round() == []
    assert all(x.version == "2.0.0" for x in devices)
    assert all(x.offered == ["2.0.0"] for x in devices)
    # the new leader publishes: the rollout's end, on MQTT
    other.wait_for(lambda: any(s["state"] == "completed" for s in
                               sub.json(f"ota/rollout/{rid}/state")), 10,
                   "the completed state from the new leader")
    # and no device was triggered twice, across the failover
    twice = {k: v for k, v in sub.device_triggers().items() if len(v) > 1}
    assert twice == {}
    other.check_clean_exit()


def test_a_bad_build_halts_in_the_canary_ring_through_the_balancer(cluster):
    """As on one host (test_12): the canaries roll back, the leader halts
    the rollout, and no device outside the canary ring is offered it,
    whichever node it polls."""
    a, b, lb, broker = cluster
    devices = [Device(f"bad-{i:04d}", "1.0.0") for i in range(FLEET)]
    f = Fleet(lb.port, devices)
    f.bad = {"2.0.0"}
    assert f.round() == []
    for dev in devices[:CANARIES]:
        a.otactl("device", "set", dev.id, "--group", "canary")
    rid = b.otactl("rollout", "create", "2.0.0", "--stages",
                   "group=canary,soak=5s,min=3; 10%,soak=1s,min=20; "
                   "100%,soak=1s,min=1", json_out=True)["id"]
    b.otactl("rollout", "start", str(rid))
    for _ in range(60):
        assert f.round() == []
        st = status(a, rid)
        if st["state"] == "halted":
            break
        time.sleep(0.3)
    assert st["state"] == "halted" and st["stage"] == 0
    assert "rollback rate" in st["reason"]
    for _ in range(3):
        assert f.round() == []
        time.sleep(0.3)
    assert {x.id for x in devices if x.offered} <= \
        {x.id for x in devices[:CANARIES]}
    assert all(x.version == "1.0.0" for x in devices)
    assert a.query("SELECT count(*) FROM attempt WHERE device NOT IN"
                   " (SELECT id FROM device WHERE grp = 'canary')") == [(0,)]
    assert a.query(f"SELECT actor FROM audit WHERE what = 'rollout {rid}"
                   " state active -> halted'") == [("otad",)]
    # the polls went to both nodes, and one of them halted it
    assert all(counter(d, "otad_checks_total") > 0 for d in (a, b))
    assert sum(any("halted" in l for l in d.log) for d in (a, b)) == 1
    for d in (a, b):
        d.check_clean_exit()


def counter(d, name):
    for line in d.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    return 0


def test_the_nodes_share_the_broker(cluster):
    """Each node says its own state; telemetry reaches one node, once."""
    a, b, lb, broker = cluster
    sub = Sub(broker, "ota/server/#")
    for d in (a, b):
        d.wait_for(lambda: any("listening for telemetry on" in l
                               for l in d.log), 10, "the broker")
    a.wait_for(lambda: sub.topics("ota/server/otad-a/state") == ["online"]
               and sub.topics("ota/server/otad-b/state") == ["online"], 5,
               "both nodes online")
    for i in range(10):
        broker.pub(f"devices/t-{i}/telemetry", json.dumps(
            {"firmware": "1.0.0", "uptime": 5}))
    a.wait_for(lambda: counter(a, "otad_mqtt_telemetry_total") +
               counter(b, "otad_mqtt_telemetry_total") >= 10, 10,
               "the telemetry")
    time.sleep(0.5)
    assert counter(a, "otad_mqtt_telemetry_total") + \
        counter(b, "otad_mqtt_telemetry_total") == 10
    assert {r[0] for r in a.query("SELECT id FROM device")} == \
        {f"t-{i}" for i in range(10)}
    # a node that stops says so on its own topic; the other stays online
    b.check_clean_exit()
    a.wait_for(lambda: sub.topics("ota/server/otad-b/state")[-1:] ==
               ["offline"], 5, "b offline")
    assert sub.topics("ota/server/otad-a/state") == ["online"]
    a.check_clean_exit()


def test_a_change_on_one_node_is_served_by_both(cluster):
    a, b, lb, broker = cluster
    rid = a.otactl("rollout", "create", "2.0.0", "--stages", "100%",
                   json_out=True)["id"]
    a.otactl("rollout", "start", str(rid))
    # otactl returned: both nodes serve it already
    for d in (a, b):
        assert d.get(f"/firmware/check?device=c-{d.port}&version=1.0.0"
                     ).status == 200
    # a hand edit in psql pauses offers on both within a second
    assert a.hand_edit(f"UPDATE rollout SET state = 'paused' WHERE id = "
                       f"{rid}").returncode == 0
    t0 = time.monotonic()
    for i, d in enumerate((a, b)):
        d.wait_for(lambda: d.get(f"/firmware/check?device=p{i}&"
                                 "version=1.0.0").status == 304, 1.5,
                   "the pause on every node")
    assert time.monotonic() - t0 < 1.5
    # a bad hand edit is refused and changes nothing, as on SQLite
    p = a.hand_edit(f"UPDATE rollout SET state = 'bogus' WHERE id = {rid}")
    assert p.returncode != 0 and "violates check constraint" in p.stderr
    assert a.query(f"SELECT state FROM rollout WHERE id = {rid}") == \
        [("paused",)]
    assert a.query("SELECT actor, what FROM audit ORDER BY id DESC LIMIT 1"
                   ) == [("sql", f"rollout {rid} state active -> paused")]
    for d in (a, b):
        d.check_clean_exit()


def test_the_leader_alone_builds_patches_and_every_node_serves_them(
        cluster, tmp_path):
    a, b, lb, broker = cluster
    a.otactl("artifact", "add", str(WLED / "0.14.2.bin"), "--version",
             "0.14.2")
    new = a.otactl("artifact", "add", str(WLED / "0.14.3.bin"), "--version",
                   "0.14.3").stdout.strip()
    a.otactl("release", "create", "0.14.3", "--artifact", new)
    a.otactl("release", "publish", "0.14.3")
    a.wait_for(lambda: leads(a) is not None and leads(b) is not None and
               leads(a) + leads(b) == 1, 5, "a leader")
    leader, other = (a, b) if leads(a) == 1 else (b, a)
    # a device asks the node that does not lead, only: that node fetches
    # what the leader built for it (about a second; ten times that under
    # the sanitizers)
    other.wait_for(lambda: other.request("HEAD", "/firmware/check", asks())
                   .headers.get("x-firmware-delta") == "esp_delta_ota", 120,
                   "the patch on the node that does not lead")
    body = other.get("/firmware/check", asks()).body
    assert apply(tmp_path, body) == NEW
    assert leader.get("/firmware/check", asks("d2")).body == body
    built = [l for l in leader.log if re.search(r"delta \w+ -> \w+ ready:", l)]
    fetched = [l for l in other.log if "ready (built by the leader)" in l]
    assert len(built) == 1 and len(fetched) == 1
    assert not any(re.search(r"delta \w+ -> \w+ ready:", l)
                   for l in other.log), "only the leader builds"
    assert a.query("SELECT state, size FROM patch WHERE target = ?",
                   (new,)) == [("built", len(body))]

    # a corrupt copy on a node's disk is never served: fetched again
    other.check_clean_exit()
    [copy] = (other.state / "artifacts" / "patches").iterdir()
    copy.write_bytes(body[:-100] + bytes(100))
    other.start()
    other.wait_for(lambda: other.request("HEAD", "/firmware/check",
                                         asks("d3"))
                   .headers.get("x-firmware-delta") == "esp_delta_ota", 120,
                   "the patch again")
    assert other.get("/firmware/check", asks("d3")).body == body
    assert copy.read_bytes() == body

    # the release withdrawn, the leader drops its patches from the cluster
    rid = a.otactl("rollout", "status", json_out=True)[0]["id"]
    a.otactl("rollout", "abort", str(rid))

    def dropped():
        # each HTTP thread lets go of the old offers at its next request
        for d in (a, b):
            d.get("/firmware/check", asks("d4"))
        return a.query("SELECT count(*) FROM patch")[0][0] == 0
    a.wait_for(dropped, 10, "the patches to be dropped")
    for d in (a, b):
        d.check_clean_exit()
