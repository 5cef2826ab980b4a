"""POST /firmware/report: outcomes and telemetry, durable before 2xx."""
import json
import signal

import pytest


def attempts(d, dev):
    return d.otactl("device", "show", dev, json_out=True)["attempts"]


def test_report_success_closes_the_offer(published):
    published.get("/firmware/check?device=r1&version=0.14.2")
    r = published.post_json("/firmware/report", {
        "device": "r1", "version": "0.14.3", "result": "success",
        "uptime": 42, "free_heap": 123456, "rssi": -61, "reset_reason": 1,
        "battery": 87, "secure_version": 0})
    assert r.status == 200 and r.json() == {"recorded": True}
    dev = published.otactl("device", "show", "r1", json_out=True)
    assert dev["version"] == "0.14.3"
    assert (dev["uptime"], dev["free_heap"], dev["rssi"], dev["battery"]) \
        == (42, 123456, -61, 87)
    assert [a["state"] for a in dev["attempts"]] == ["success"]


def test_rollback_and_failure_keep_their_reason(published):
    published.get("/firmware/check?device=r2&version=0.14.2")
    r = published.post_json("/firmware/report", {
        "device": "r2", "version": "0.14.3", "result": "downloading"})
    assert r.status == 200
    assert attempts(published, "r2")[0]["state"] == "downloading"
    r = published.post_json("/firmware/report", {
        "device": "r2", "version": "0.14.3", "result": "rollback",
        "reason": "app did not confirm: watchdog"})
    assert r.status == 200
    a = attempts(published, "r2")[0]
    assert a["state"] == "rollback"
    assert a["reason"] == "app did not confirm: watchdog"
    assert a["finished_at"] is not None
    dev = published.otactl("device", "show", "r2", json_out=True)
    assert dev["version"] == "0.14.2", "a rollback leaves the old version"


def test_report_without_an_offer_is_still_recorded(otad):
    r = otad.post_json("/firmware/report", {
        "device": "lone", "version": "2.0.0", "result": "failed",
        "reason": "flash write error"})
    assert r.status == 200
    a = attempts(otad, "lone")
    assert [(x["to_version"], x["state"], x["reason"]) for x in a] == \
        [("2.0.0", "failed", "flash write error")]
    # the device retrying the same report does not double it
    otad.post_json("/firmware/report", {
        "device": "lone", "version": "2.0.0", "result": "failed",
        "reason": "flash write error"})
    assert len(attempts(otad, "lone")) == 1


def test_device_id_from_header_when_body_has_none(otad):
    r = otad.post_json("/firmware/report", {"version": "1.0.0",
                                            "result": "success"},
                       {"X-Device-ID": "hdr-dev"})
    assert r.status == 200
    assert otad.otactl("device", "show", "hdr-dev",
                       json_out=True)["version"] == "1.0.0"


def test_reports_survive_a_restart(published):
    published.get("/firmware/check?device=p1&version=0.14.2")
    assert published.post_json("/firmware/report", {
        "device": "p1", "version": "0.14.3", "result": "rollback",
        "reason": "boot loop"}).status == 200
    published.stop()
    published.start()
    a = attempts(published, "p1")
    assert a[0]["state"] == "rollback" and a[0]["reason"] == "boot loop"


def test_acknowledged_report_survives_sigkill(published):
    """A 2xx means it is on disk: no clean shutdown needed to keep it."""
    assert published.post_json("/firmware/report", {
        "device": "k1", "version": "0.14.3", "result": "success"}
    ).status == 200
    published.proc.send_signal(signal.SIGKILL)
    published.proc.wait(10)
    rows = published.query("SELECT state FROM attempt WHERE device='k1'")
    assert rows == [("success",)]
    published.start()


@pytest.mark.parametrize("body,needle", [
    (b"{", "malformed JSON"),
    (b"", "malformed JSON"),
    (b"[1,2]", "JSON object"),
    (b'{"device":"a","device":"b","result":"success","version":"1"}',
     "malformed JSON"),
    (b'{"result":"success","version":"1.0"}', "'device'"),
    (b'{"device":"d e v","result":"success","version":"1.0"}', "'device'"),
    (b'{"device":7,"result":"success","version":"1.0"}', "'device'"),
    (b'{"device":"d1","result":"exploded","version":"1.0"}', "'result'"),
    (b'{"device":"d1","version":"1.0"}', "'result'"),
    (b'{"device":"d1","result":"success"}', "needs 'version'"),
    (b'{"device":"d1","result":"failed","version":1}', "'version'"),
    (b'{"device":"d1","result":"failed","reason":"x\\u0001y"}',
     "control characters"),
    (b'{"device":"d1","result":"failed","reason":"' + b"r" * 257 + b'"}',
     "'reason'"),
    (b'{"device":"d1","result":"failed","rssi":"-60"}', "'rssi'"),
    (b'{"device":"d1","result":"failed","rssi":-600}', "'rssi'"),
    (b'{"device":"d1","result":"failed","battery":101}', "'battery'"),
    (b'{"device":"d1","result":"failed","uptime":-1}', "'uptime'"),
    (b'{"device":"d1","result":"failed","uptime":1.5}', "'uptime'"),
    (b'{"device":"d1","result":"failed","free_heap":99999999999999999999}',
     "malformed JSON"),
    (b'{"device":"d1","result":"failed","metrics":[1]}', "'metrics'"),
    (b'{"device":"d1","result":"failed","metrics":{"a":"1"}}', "'metrics'"),
    (b'{"device":"d1","result":"failed","metrics":{"a-b":1}}', "'metrics'"),
    (b'{"device":"d1","result":"failed","metrics":{"":1}}', "'metrics'"),
    (b'{"device":"d1","result":"failed","metrics":{"a":1e16}}', "'metrics'"),
    (b'{"device":"d1","result":"failed","metrics":{"' + b"m" * 33 +
     b'":1}}', "'metrics'"),
    (b'{"device":"d1","result":"failed","metrics":{' + b",".join(
        b'"m%d":1' % i for i in range(9)) + b'}}', "'metrics'"),
])
def test_bad_reports_get_400_and_write_nothing(otad, body, needle):
    r = otad.request("POST", "/firmware/report",
                     {"Content-Type": "application/json"}, body)
    assert r.status == 400, r.body
    assert needle in r.json()["error"]
    assert otad.otactl("device", "list", json_out=True) == []


def test_a_report_with_telemetry_keeps_a_sample(otad):
    """What a report says of the device's health, metrics too, is a
    sample of its telemetry series, with the version it runs."""
    r = otad.post_json("/firmware/report", json.dumps(
        {"device": "d1", "result": "success", "version": "1.2.0",
         "free_heap": 150000, "rssi": -70, "uptime": 12,
         "metrics": {"mqtt_reconnects": 2, "temp_c": 21.5}}))
    assert r.status == 200, r.body
    # telemetry-free reports keep none
    assert otad.post_json("/firmware/report", json.dumps(
        {"device": "d2", "result": "success", "version": "1.2.0"})).status \
        == 200
    assert otad.query("SELECT device, version, free_heap, rssi, uptime,"
                      " metrics FROM telemetry") == [
        ("d1", "1.2.0", 150000, -70, 12,
         '{"mqtt_reconnects":2,"temp_c":21.5}')]


def test_body_over_the_cap_gets_413(otad):
    big = json.dumps({"device": "d1", "result": "failed",
                      "reason": "x", "pad": "y" * 20000})
    r = otad.post_json("/firmware/report", big)
    assert r.status == 413
    assert r.json()["error"] == "request body is too large"
    # the same without Content-Length (chunked) is refused too
    chunked = b"".join(b"3e8\r\n" + b"a" * 1000 + b"\r\n" for _ in range(40))
    r = otad.raw(b"POST /firmware/report HTTP/1.1\r\nHost: x\r\n"
                 b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                 + chunked + b"0\r\n\r\n")
    assert r.status == 413
    assert otad.otactl("device", "list", json_out=True) == []
    assert otad.get("/health").status == 200


def test_bad_content_length(otad):
    r = otad.raw(b"POST /firmware/report HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: -5\r\nConnection: close\r\n\r\n")
    assert 400 <= r.status < 500
    r = otad.raw(b"POST /firmware/report HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 99999999999999999999999\r\n"
                 b"Connection: close\r\n\r\n")
    assert 400 <= r.status < 500
    assert otad.get("/health").status == 200
