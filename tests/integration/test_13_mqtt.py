"""Hybrid push over MQTT against a real Mosquitto broker: triggers out,
telemetry in, rollout states, nudges, broker outages, TLS, bad payloads."""
import contextlib
import json
import re
import subprocess
import time

import pytest

import imagebuild
from broker import Broker, Sub, make_tls
from conftest import OTAD, ROOT, Otad


def mqtt_otad(tmp_path, broker, extra=""):
    d = Otad(tmp_path, f"mqtt_host = 127.0.0.1\nmqtt_port = {broker.port}\n"
             "rate_per_device = 0\n" + extra)
    return d


def connected(d):
    """Subscribed, not only connected: telemetry published before the
    broker grants the subscription never reaches otad."""
    return any("listening for telemetry on" in l for l in d.log)


def check(d, dev, version="1.0.0"):
    return d.get("/firmware/check", {"X-Device-ID": dev,
                                     "X-Current-Version": version})


@contextlib.contextmanager
def running(tmp_path, broker, extra="", release=False):
    """otad connected to broker (with release 2.0.0 created, not offered,
    when asked: d.sha, d.data); it must stop cleanly."""
    d = mqtt_otad(tmp_path, broker, extra)
    if release:
        d.sha, d.data = add_release(d, tmp_path)
    d.start()
    try:
        d.wait_for(lambda: connected(d), 10, "the broker connection")
        yield d
    finally:
        d.check_clean_exit()


def add_release(d, tmp_path, version="2.0.0"):
    img = tmp_path / f"app-{version}.bin"
    data = imagebuild.build(version=version, seglen=1024)
    img.write_bytes(data)
    sha = d.otactl("artifact", "add", str(img)).stdout.strip()
    d.otactl("release", "create", version, "--artifact", sha)
    return sha, data


def wait_attempts(d, n):
    """Until n attempts are on disk: the writer commits after the answer."""
    def count():
        return d.query("SELECT count(*) FROM attempt")[0][0]
    d.wait_for(lambda: count() >= n, 5, f"{n} attempts on disk")


def metrics_text(d):
    return d.get("/metrics").body.decode()


@pytest.fixture(autouse=True)
def no_stray_subscribers():
    yield
    Sub.stop_all()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def test_stage_triggers_reach_its_devices_and_no_others(tmp_path, broker):
    with running(tmp_path, broker, release=True) as d:
        sha, data = d.sha, d.data
        devices = [f"dev-{i:02d}" for i in range(20)]
        for dev in devices:
            assert check(d, dev).status == 304
        for dev in devices[:3]:
            d.otactl("device", "set", dev, "--group", "canary")
        sub = Sub(broker)
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "group=canary,soak=1h,min=1; 100%",
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        d.wait_for(lambda: len(sub.device_triggers()) >= 3, 10,
                   "the canaries' triggers")
        d.wait_for(lambda: sub.topics("ota/group/canary/trigger"), 5,
                   "the group trigger")
        time.sleep(2)  # and nothing for the rest of the fleet
        got = sub.device_triggers()
        assert sorted(got) == devices[:3]
        for dev in devices[:3]:
            assert len(got[dev]) == 1, got[dev]
            t = got[dev][0]
            assert t["version"] == "2.0.0" and t["sha256"] == sha
            assert t["size"] == len(data) and t["forced"] is False
            assert t["url"] == (f"http://127.0.0.1:{d.port}"
                                f"/firmware/artifacts/{sha}")
            assert t["rollout"] == rid and t["reason"] == "rollout"
            # and the URL serves the image
            assert d.get(t["url"].split(str(d.port), 1)[1]).body == data
        # the rollout's state, retained
        st = sub.json(f"ota/rollout/{rid}/state")
        assert st[-1]["state"] == "active" and st[-1]["stage"] == 0
        assert st[-1]["version"] == "2.0.0" and st[-1]["stages"] == 2

        # opening the next stage triggers everyone else, once
        d.query("UPDATE rollout SET stage = 1 WHERE id = ?", (rid,))
        d.wait_for(lambda: len(sub.device_triggers()) == 20, 20,
                   "every device's trigger")
        d.wait_for(lambda: sub.json(f"ota/rollout/{rid}/state")[-1]
                   ["stage"] == 1, 5, "the stage change")
        assert all(len(v) == 1 for v in sub.device_triggers().values())

        # pausing is said, with the state
        d.otactl("rollout", "pause", str(rid))
        d.wait_for(lambda: sub.json(f"ota/rollout/{rid}/state")[-1]
                   ["state"] == "paused", 5, "the pause")
        text = metrics_text(d)
        assert "otad_mqtt_connected 1" in text
        assert "otad_mqtt_triggers_sent_total 21" in text  # 20 + group
        sub.stop()


def test_a_halt_is_published_with_its_reason(tmp_path, broker):
    with running(tmp_path, broker, release=True) as d:
        for i in range(3):
            assert check(d, f"c{i}").status == 304
            d.otactl("device", "set", f"c{i}", "--group", "canary")
        sub = Sub(broker)
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "group=canary,soak=1h,min=2,rollback<=0.1; 100%",
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        for i in range(3):
            assert check(d, f"c{i}").status == 200
        wait_attempts(d, 3)
        for i in range(3):
            r = d.post_json("/firmware/report", {
                "device": f"c{i}", "result": "rollback",
                "version": "2.0.0"})
            assert r.status in (200, 202, 204)
        d.wait_for(lambda: sub.json(f"ota/rollout/{rid}/state") and
                   sub.json(f"ota/rollout/{rid}/state")[-1]["state"] ==
                   "halted", 10, "the halt")
        st = sub.json(f"ota/rollout/{rid}/state")[-1]
        assert "rollback rate" in st["reason"], st
        # retained: a subscriber that comes later still learns it
        late = subprocess.run(
            ["mosquitto_sub", *broker.client_args(), "-t",
             f"ota/rollout/{rid}/state", "-C", "1", "-W", "5"],
            capture_output=True, text=True, timeout=10)
        assert json.loads(late.stdout)["state"] == "halted"
        sub.stop()


def test_a_revert_is_triggered_over_mqtt(tmp_path, broker):
    """--on-halt revert: the devices that took the halted release are
    triggered, forced, with the release they ran before; the others not."""
    with running(tmp_path, broker) as d:
        old = tmp_path / "old.bin"
        old.write_bytes(imagebuild.build(version="1.0.0", seglen=1024))
        old_sha = d.publish(old, "1.0.0")
        add_release(d, tmp_path)
        for i in range(6):
            assert check(d, f"r{i}").status == 304
        for i in range(3):
            d.otactl("device", "set", f"r{i}", "--group", "canary")
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "group=canary,soak=1h,min=2,crash<=0.1; 100%",
                       "--on-halt", "revert", json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        for i in range(3):
            assert check(d, f"r{i}").status == 200
        wait_attempts(d, 3)
        sub = Sub(broker)
        # they run it, report it, and then two of them panic
        for i in range(3):
            assert d.post_json("/firmware/report", {
                "device": f"r{i}", "result": "success",
                "version": "2.0.0"}).status == 200
        for i, reason in enumerate([4, 4, 1]):
            assert d.get("/firmware/check", {
                "X-Device-ID": f"r{i}", "X-Current-Version": "2.0.0",
                "X-Reset-Reason": str(reason)}).status == 304
        d.wait_for(lambda: len(sub.device_triggers()) >= 3, 15,
                   "the revert's triggers")
        time.sleep(1)  # and none for the devices still on 1.0.0
        got = sub.device_triggers()
        assert sorted(got) == ["r0", "r1", "r2"]
        for dev in got:
            t = got[dev][-1]
            assert t["version"] == "1.0.0" and t["sha256"] == old_sha
            assert t["forced"] is True and t["reason"] == "forced"
        st = sub.json(f"ota/rollout/{rid}/state")[-1]
        assert st["state"] == "halted" and "crash rate" in st["reason"]
        sub.stop()


def test_telemetry_is_recorded_like_a_check_in(tmp_path, broker):
    with running(tmp_path, broker) as d:
        broker.pub("devices/esp-01/telemetry", json.dumps({
            "device_id": "esp-01", "firmware": "1.4.2", "uptime": 3600,
            "free_heap": 123456, "rssi": -67, "reset_reason": "ESP_RST_PANIC",
            "battery": 81, "secure_version": 2}))
        broker.pub("devices/esp-02/status", json.dumps({
            "firmware": "1.4.1", "uptime": 12, "reset_reason": 1}))

        def shown(dev):
            p = d.otactl("device", "show", dev, "--json", check=False)
            return json.loads(p.stdout) if p.returncode == 0 else None

        d.wait_for(lambda: shown("esp-01") and shown("esp-02"), 10,
                   "the telemetry to be recorded")
        one = shown("esp-01")
        assert one["version"] == "1.4.2" and one["uptime"] == 3600
        assert one["free_heap"] == 123456 and one["rssi"] == -67
        assert one["reset_reason"] == 4 and one["battery"] == 81
        assert one["secure_version"] == 2 and one["mqtt_seen"] is not None
        two = shown("esp-02")
        assert two["version"] == "1.4.1" and two["reset_reason"] == 1
        # seen: it counts as online, and by version
        d.wait_for(lambda: 'otad_devices{state="online"} 2' in
                   metrics_text(d), 10, "the fleet gauges")
        text = metrics_text(d)
        assert 'otad_devices_by_version{version="1.4.2"} 1' in text
        assert "otad_mqtt_telemetry_total 2" in text


def test_bad_telemetry_is_counted_and_never_recorded(tmp_path, broker):
    with running(tmp_path, broker, "device_auth = token\n") as d:
        tok = d.otactl("device", "add", "known").stdout
        k = "devices/known/telemetry"
        bad = [
            (k, b"not json at all"),
            (k, b"[1, 2, 3]"),
            (k, b'{"device_id": 5}'),
            (k, json.dumps({"device_id": "known", "uptime": "long"}).encode()),
            (k, json.dumps({"device_id": "known", "rssi": 99999}).encode()),
            (k, json.dumps(
                {"device_id": "known", "reset_reason": "HAMMER"}).encode()),
            (k, json.dumps(
                {"device_id": "known", "firmware": "has space"}).encode()),
            # a payload that names another device than its topic
            (k, json.dumps({"device_id": "../../etc",
                            "firmware": "1.0"}).encode()),
            ("devices/known/status", json.dumps(
                {"device_id": "other", "firmware": "1.0"}).encode()),
            (k, b'{"device_id": "known", "x": "' + b"A" * 20000 + b'"}'),
            (k, b"\xff\xfe\x00garbage"),
            # unknown to the registry while tokens are required
            ("devices/stranger/telemetry", json.dumps(
                {"firmware": "1.0.0"}).encode()),
            # a topic whose device level says nothing: the payload is
            # not believed instead (once it was)
            ("devices//status", json.dumps(
                {"device_id": "known", "firmware": "6.6.6"}).encode()),
            ("devices/" + "a" * 70 + "/status", json.dumps(
                {"device_id": "known", "firmware": "6.6.6"}).encode()),
            ("devices/bad id!/status", json.dumps(
                {"device_id": "known", "firmware": "6.6.6"}).encode()),
        ]
        for topic, payload in bad:
            broker.pub(topic, payload)
        d.wait_for(lambda: f"otad_mqtt_telemetry_rejected_total {len(bad)}"
                   in metrics_text(d), 10, "every bad payload counted")
        # a good one still goes through after all that
        broker.pub(k, json.dumps({"firmware": "3.0.0"}))
        d.wait_for(lambda: "otad_mqtt_telemetry_total 1" in metrics_text(d),
                   10, "the good payload")
        d.wait_for(lambda: d.otactl("device", "show", "known", json_out=True)
                   ["version"] == "3.0.0", 5, "its version")
        ids = {r[0] for r in d.query("SELECT id FROM device")}
        assert ids == {"known"}
        # logged, but once a minute per device, not per message: six
        # messages, one line (two when a minute turns between them)
        for _ in range(5):
            broker.pub("devices/stranger/telemetry", b'{}')
        d.wait_for(lambda: f"otad_mqtt_telemetry_rejected_total "
                   f"{len(bad) + 5}" in metrics_text(d), 10, "the repeats")
        assert 1 <= sum("unknown device 'stranger'" in l
                        for l in d.log) <= 2
        assert any("not JSON" in l for l in d.log)
        assert tok


def test_nudge(tmp_path, broker):
    with running(tmp_path, broker, release=True) as d:
        sha = d.sha
        assert check(d, "n1").status == 304
        sub = Sub(broker)
        out = d.otactl("device", "nudge", "n1").stdout
        assert "nothing to offer" in out
        d.wait_for(lambda: sub.topics("ota/n1/trigger"), 5, "the nudge")
        first = sub.json("ota/n1/trigger")[0]
        assert first == {"update": False, "reason": "nudge",
                         "id": first["id"]}
        assert re.fullmatch(r"nudge-\d+", first["id"])
        # with a release offered, the nudge carries it (and the publish
        # itself already triggered the device once)
        d.otactl("release", "publish", "2.0.0")
        d.wait_for(lambda: len(sub.topics("ota/n1/trigger")) == 2, 10,
                   "the publish's trigger")
        res = d.otactl("device", "nudge", "n1", json_out=True)
        assert res["sent"] is True and res["version"] == "2.0.0"
        d.wait_for(lambda: len(sub.topics("ota/n1/trigger")) == 3, 5,
                   "the second nudge")
        t = sub.json("ota/n1/trigger")[-1]
        assert t["reason"] == "nudge" and t["sha256"] == sha
        # every trigger has an id of its own, the same in any copy of it
        ids = [x["id"] for x in sub.json("ota/n1/trigger")]
        assert len(set(ids)) == 3 and re.fullmatch(r"\d+-\d+-0", ids[1])
        # bad input: one clear line, nothing recorded
        p = d.otactl("device", "nudge", "nobody", check=False)
        assert p.returncode == 1 and "no device 'nobody'" in p.stderr
        p = d.otactl("device", "nudge", "bad id!", check=False)
        assert p.returncode != 0 and p.stderr.count("\n") == 1
        assert d.query("SELECT count(*) FROM trigger WHERE device"
                       " != 'n1'")[0][0] == 0
        sub.stop()


def test_nudge_without_mqtt_says_so(otad):
    assert check(otad, "x1").status == 304
    p = otad.otactl("device", "nudge", "x1", check=False)
    assert p.returncode == 1 and "MQTT is off" in p.stderr


def test_broker_outage_keeps_http_and_owed_triggers_arrive(tmp_path):
    brokers = [Broker(tmp_path).start()]
    try:
        broker = brokers[0]
        with running(tmp_path, broker, release=True) as d:
            for i in range(10):
                assert check(d, f"o{i}").status == 304
            broker.stop()
            d.wait_for(lambda: "otad_mqtt_connected 0" in metrics_text(d),
                       10, "the lost connection to show")
            # the rollout starts while the broker is away
            d.otactl("release", "publish", "2.0.0")
            t0 = time.monotonic()
            for i in range(10):  # HEAD: a look, not a download
                assert d.request("HEAD", "/firmware/check", {
                    "X-Device-ID": f"o{i}",
                    "X-Current-Version": "1.0.0"}).status == 200
            assert time.monotonic() - t0 < 2, "HTTP waited for the broker"
            # otad restarts meanwhile: nothing owed lives in its memory
            d.check_clean_exit()
            d.start()
            time.sleep(1.5)
            broker = Broker(tmp_path, port=broker.port).start()
            brokers.append(broker)
            sub = Sub(broker)
            d.wait_for(lambda: len(sub.device_triggers()) == 10, 30,
                       "the owed triggers after the broker came back")
            assert all(v[0]["version"] == "2.0.0"
                       for v in sub.device_triggers().values())
            # and they are not sent again by a restart
            d.check_clean_exit()
            d.start()
            d.wait_for(lambda: connected(d), 10, "the reconnection")
            time.sleep(2)
            assert all(len(v) == 1 for v in sub.device_triggers().values())
            sub.stop()
    finally:
        for b in brokers:
            b.stop()


def test_retained_trigger_waits_for_a_sleeping_device(tmp_path, broker):
    with running(tmp_path, broker, "mqtt_retain_triggers = yes\n", release=True) as d:
        assert check(d, "sleepy").status == 304
        d.otactl("release", "publish", "2.0.0")

        def retained():
            p = subprocess.run(
                ["mosquitto_sub", *broker.client_args(), "-t",
                 "ota/sleepy/trigger", "-C", "1", "-W", "2", "-F", "%r %p"],
                capture_output=True, text=True, timeout=10)
            return p.stdout.strip()

        # it wakes later and still finds its trigger
        d.wait_for(lambda: retained().startswith("1 {"), 10,
                   "the retained trigger")
        assert json.loads(retained()[2:])["version"] == "2.0.0"
        # once it runs the version the retained copy goes away
        broker.pub("devices/sleepy/telemetry", json.dumps(
            {"device_id": "sleepy", "firmware": "2.0.0"}))
        d.wait_for(lambda: retained() == "", 15, "the retained trigger "
                   "to be cleared")


def test_offline_devices(tmp_path, broker):
    d = mqtt_otad(tmp_path, broker)
    add_release(d, tmp_path)
    d.start()
    try:
        for dev in ("gone", "here"):
            assert check(d, dev).status == 304
        rid = d.otactl("rollout", "create", "2.0.0", "--stages", "100%",
                       "--timeout", "1m", json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        assert check(d, "gone").status == 200
        assert check(d, "here").status == 200
        wait_attempts(d, 2)
        # an hour passes; "here" keeps checking in, "gone" does not
        d.query("UPDATE device SET last_seen = last_seen - 3600"
                " WHERE id = 'gone'")
        d.query("UPDATE attempt SET offered_at = offered_at - 3600")
        offline = d.otactl("device", "list", "--offline", json_out=True)
        assert [r["id"] for r in offline] == ["gone"]
        d.wait_for(lambda: 'otad_devices{state="offline"} 1' in
                   metrics_text(d), 10, "the offline gauge")

        def attempts():
            return dict(d.query("SELECT device, state || ':' ||"
                                " coalesce(reason, '') FROM attempt"))
        d.wait_for(lambda: attempts().get("gone") == "failed:offline", 5,
                   "the offline device's attempt to fail")
        assert attempts()["here"] == "timeout:no outcome in time"
        text = metrics_text(d)
        assert (f'otad_rollout_attempts{{rollout="{rid}",version="2.0.0",'
                f'stage="0",outcome="failed"}} 2') in text
    finally:
        d.check_clean_exit()


def tls_otad(tmp_path, broker, ca, client):
    """otad (not started) trusting ca, with the client's certificate."""
    return mqtt_otad(tmp_path, broker, f"mqtt_tls_ca = {ca}\n"
                     f"mqtt_tls_cert = {client['cert']}\n"
                     f"mqtt_tls_key = {client['key']}\n")


@pytest.mark.sqlite_once  # TLS to the broker: run once
def test_tls_to_the_broker(tmp_path):
    server, client = make_tls(tmp_path)
    broker = Broker(tmp_path, tls=server).start()
    d = tls_otad(tmp_path, broker, client["ca"], client)
    d.start()
    try:
        d.wait_for(lambda: connected(d), 15, "the TLS connection")
        assert check(d, "t1").status == 304
        sub = Sub(broker, client_tls=client)
        d.otactl("device", "nudge", "t1")
        d.wait_for(lambda: sub.topics("ota/t1/trigger"), 5, "the trigger")
        sub.stop()
    finally:
        d.check_clean_exit()
        broker.stop()


@pytest.mark.sqlite_once  # TLS to the broker: run once
def test_tls_with_the_wrong_ca_is_refused_and_http_goes_on(tmp_path):
    server, client = make_tls(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, stranger = make_tls(other)
    broker = Broker(tmp_path, tls=server).start()
    d = tls_otad(tmp_path, broker, stranger["ca"], client)
    d.start()
    try:
        d.wait_for(lambda: any("MQTT broker 127.0.0.1" in l and
                               "retrying" in l for l in d.log), 15,
                   "the refused connection to be logged")
        assert not connected(d)
        assert check(d, "t2").status == 304
        assert "otad_mqtt_connected 0" in metrics_text(d)
    finally:
        d.check_clean_exit()
        broker.stop()


@pytest.mark.parametrize("conf, message", [
    ("mqtt_tls_cert = /x.pem\n", "'mqtt_tls_cert' and 'mqtt_tls_key'"),
    ("mqtt_tls_cert = /x.pem\nmqtt_tls_key = /y.pem\n",
     "'mqtt_tls_cert' needs 'mqtt_tls_ca'"),
    ("mqtt_topic_prefix = ota/#\n", "'mqtt_topic_prefix'"),
    ("mqtt_topic_prefix = /ota\n", "'mqtt_topic_prefix'"),
    ("mqtt_telemetry_topics = devices/#/x\n", "is not a topic filter"),
    ("mqtt_telemetry_topics = dev+/x\n", "is not a topic filter"),
    ("device_auth = token\nmqtt_telemetry_topics = devices/telemetry\n",
     "every topic names its device with '+'"),
    ("device_auth = token\nmqtt_telemetry_topics = devices/#\n",
     "every topic names its device with '+'"),
    ("mqtt_password_file = /p\n", "needs 'mqtt_username'"),
    ("mqtt_port = 0\n", "'mqtt_port' must be between 1 and 65535"),
    ("mqtt_retain_triggers = maybe\n", "'mqtt_retain_triggers' is yes or no"),
    ("public_url = ftp://x\n", "'public_url' must start with http"),
])
def test_bad_mqtt_configuration_is_refused(tmp_path, conf, message):
    d = Otad(tmp_path, conf)
    p = subprocess.run([str(OTAD), "-n", "-c", str(d.conf)],
                       capture_output=True, text=True)
    assert p.returncode != 0 and message in p.stderr, p.stderr


def test_unreadable_password_file_stops_start(tmp_path, broker):
    d = mqtt_otad(tmp_path, broker, "mqtt_username = otad\n"
                  f"mqtt_password_file = {tmp_path}/missing\n")
    d.start(wait=False)
    assert d.proc.wait(10) != 0
    time.sleep(0.1)
    assert any("mqtt_password_file" in l for l in d.log), d.logtext()


def test_grafana_dashboard_asks_only_for_what_otad_exports(tmp_path, broker):
    dash = json.loads((ROOT / "conf" / "grafana-otad.json").read_text())
    wanted = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            wanted |= set(re.findall(r"\b(otad_[a-z_]+)", target["expr"]))
    assert len(wanted) >= 10
    with running(tmp_path, broker) as d:
        d.wait_for(lambda: "otad_devices{" in metrics_text(d), 10,
                   "the fleet gauges")
        exported = set(re.findall(r"^# HELP (otad_[a-z_]+)",
                                  metrics_text(d), re.M))
    assert wanted <= exported, wanted - exported


def test_telemetry_feeds_the_health_gates(tmp_path, broker):
    """An update confirmed by telemetry succeeds; a panic reported after it
    counts as a crash against the stage, and halts it."""
    with running(tmp_path, broker, release=True) as d:
        for dev in ("h1", "h2"):
            assert check(d, dev).status == 304
        rid = d.otactl("rollout", "create", "2.0.0", "--stages",
                       "100%,soak=1h,min=1,crash<=0.4",
                       json_out=True)["id"]
        d.otactl("rollout", "start", str(rid))
        for dev in ("h1", "h2"):
            assert check(d, dev).status == 200
        wait_attempts(d, 2)
        for dev in ("h1", "h2"):
            broker.pub(f"devices/{dev}/telemetry", json.dumps(
                {"device_id": dev, "firmware": "2.0.0", "uptime": 4}))
        broker.pub("devices/h1/status", json.dumps(
            {"firmware": "2.0.0", "uptime": 2, "reset_reason": "panic"}))

        def stage():
            return d.otactl("rollout", "status", str(rid),
                            json_out=True)[0]["stages"][0]
        d.wait_for(lambda: stage()["succeeded"] == 2 and
                   stage()["crashed"] == 1, 10, "the crash to count")
        d.wait_for(lambda: d.otactl("rollout", "status", str(rid),
                                    json_out=True)[0]["state"] == "halted",
                   10, "the halt on the crash rate")


def test_a_shared_telemetry_topic_still_works_without_tokens(tmp_path,
                                                            broker):
    with running(tmp_path, broker, "mqtt_telemetry_topics = "
                 "devices/telemetry devices/+/status\n") as d:
        broker.pub("devices/telemetry", json.dumps(
            {"device_id": "shared-1", "firmware": "1.2.3"}))
        d.wait_for(lambda: d.otactl("device", "show", "shared-1",
                                    check=False).returncode == 0, 10,
                   "telemetry on the shared topic")


ACL = """\
# otad: reads every device's telemetry, writes triggers and states
user otad
topic read devices/+/telemetry
topic read devices/+/status
topic readwrite ota/#
# a device (its username is its id): writes only under its own id and
# reads only its own trigger
pattern write devices/%u/telemetry
pattern write devices/%u/status
pattern read ota/%u/trigger
"""


@pytest.mark.sqlite_once  # the broker's ACL: run once
def test_broker_acl_binds_each_device_to_its_own_topics(tmp_path):
    """The README's Mosquitto ACL, on a real broker: a device can speak
    only for itself, and otad believes only the topic's id."""
    pw = tmp_path / "passwd"
    pw.write_text("")
    for user in ("otad", "dev-1", "dev-2"):
        subprocess.run(["mosquitto_passwd", "-b", str(pw), user,
                        user + "-secret"], check=True, timeout=10)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    broker = Broker(tmp_path, extra=["allow_anonymous false",
                                     f"password_file {pw}",
                                     f"acl_file {acl}"]).start()
    (tmp_path / "otad-pw").write_text("otad-secret\n")
    try:
        with running(tmp_path, broker, "device_auth = token\n"
                     "mqtt_username = otad\n"
                     f"mqtt_password_file = {tmp_path}/otad-pw\n") as d:
            for dev in ("dev-1", "dev-2"):
                d.otactl("device", "add", dev)
            # dev-1 speaking for dev-2: the broker drops it
            broker.pub("devices/dev-2/telemetry", json.dumps(
                {"device_id": "dev-2", "firmware": "6.6.6"}), user="dev-1")
            # and for itself: taken
            broker.pub("devices/dev-1/telemetry", json.dumps(
                {"firmware": "1.0.1"}), user="dev-1")
            d.wait_for(lambda: d.otactl("device", "show", "dev-1",
                                        json_out=True)["version"] ==
                       "1.0.1", 10, "dev-1's own telemetry")
            time.sleep(0.5)
            assert d.otactl("device", "show", "dev-2",
                            json_out=True)["version"] is None
            # a device reads its own trigger, not another's
            broker.pub("ota/dev-2/trigger", '{"nudge":true}', retain=True,
                       user="otad")

            def read_as(user):
                return subprocess.run(
                    ["mosquitto_sub", *broker.client_args(user=user), "-t",
                     "ota/dev-2/trigger", "-C", "1", "-W", "2"],
                    capture_output=True, text=True, timeout=10).stdout
            assert read_as("dev-2").strip() == '{"nudge":true}'
            assert read_as("dev-1") == ""
    finally:
        broker.stop()
