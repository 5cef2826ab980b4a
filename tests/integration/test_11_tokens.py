"""Device tokens and request caps: devices take only what is theirs."""
import base64
import time

from conftest import WLED, Otad, arduino_request


def token_otad(tmp_path, extra=""):
    d = Otad(tmp_path, "device_auth = token\n" + extra)
    sha = d.otactl("artifact", "add", str(WLED / "0.14.3.bin"), "--version",
                   "0.14.3").stdout.strip()
    d.otactl("release", "create", "0.14.3", "--artifact", sha)
    d.otactl("release", "publish", "0.14.3")
    d.sha = sha
    return d


def add(d, dev):
    out = d.otactl("device", "add", dev, json_out=True)
    assert out["device"] == dev and len(out["token"]) == 40
    return out["token"]


def test_tokens_every_way_a_device_sends_them(tmp_path):
    d = token_otad(tmp_path)
    t1, t2 = add(d, "dev-1"), add(d, "dev-2")
    d.start()
    try:
        q = "/firmware/check?device=dev-1&version=0.14.3"
        assert d.get(q, {"X-Device-Token": t1}).status == 304
        assert d.get(q + "&token=" + t1).status == 304
        assert d.get(q, {"Authorization": "Bearer " + t1}).status == 304
        basic = base64.b64encode(f"dev-1:{t1}".encode()).decode()
        assert d.get(q, {"Authorization": "Basic " + basic}).status == 304
        # Arduino HTTPUpdate with credentials in its URL sends Basic auth
        req = arduino_request("/ota/firmware.bin", "AA:BB:CC:00:00:01",
                              "0.14.2", d.port)
        mac_token = add(d, "AA:BB:CC:00:00:01")
        cred = base64.b64encode(
            f"AA:BB:CC:00:00:01:{mac_token}".encode()).decode()
        r = d.raw(req.replace(b"\r\n\r\n", f"\r\nAuthorization: Basic "
                              f"{cred}\r\n\r\n".encode()))
        assert r.status == 200
        # refusals
        r = d.get(q)
        assert r.status == 401 and r.json()["error"] == "missing device token"
        # Basic first: esp_http_client answers only a challenge that
        # starts with Basic or Digest
        assert r.headers["www-authenticate"] == \
            'Basic realm="otad", Bearer realm="otad"'
        r = d.get(q, {"X-Device-Token": "0" * 40})
        assert r.status == 401
        for bad in ["short", "A" * 40, "0" * 41, t1 + " ", "g" * 40]:
            r = d.get(q, {"X-Device-Token": bad})
            assert r.status == 401, bad
        r = d.get(q, {"X-Device-Token": t2})
        assert r.status == 403
        assert r.json()["error"] == "token belongs to another device"
        other = base64.b64encode(f"dev-2:{t1}".encode()).decode()
        assert d.get(q, {"Authorization": "Basic " + other}).status == 403
        # an unknown device is refused and not registered
        r = d.get("/firmware/check?device=stranger&version=0.1",
                  {"X-Device-Token": t1})
        assert r.status == 403
        r = d.get("/firmware/check?device=stranger2&version=0.1")
        assert r.status == 401
        ids = [x["id"] for x in d.otactl("device", "list", json_out=True)]
        assert "stranger" not in ids and "stranger2" not in ids
        # reports and downloads need it too
        rep = {"device": "dev-1", "version": "0.14.3", "result": "success"}
        assert d.post_json("/firmware/report", rep).status == 401
        assert d.post_json("/firmware/report", rep,
                           {"X-Device-Token": t1}).status == 200
        art = f"/firmware/artifacts/{d.sha}"
        assert d.get(art).status == 401
        assert d.get(art + "?device=dev-1").status == 401
        assert d.get(art + "?device=dev-1", {"X-Device-Token": t1}
                     ).status == 200
        # the token is never written to the log
        assert not any(t1 in line or mac_token in line for line in d.log)
    finally:
        d.check_clean_exit()


def test_revoke_and_block_take_effect_at_once(tmp_path):
    d = token_otad(tmp_path)
    t = add(d, "dev-r")
    d.start()
    try:
        q = "/firmware/check?device=dev-r&version=0.14.3"
        h = {"X-Device-Token": t}
        assert d.get(q, h).status == 304
        d.otactl("device", "block", "dev-r")
        r = d.get(q, h)
        assert r.status == 403 and r.json()["error"] == "device is blocked"
        d.otactl("device", "unblock", "dev-r")
        assert d.get(q, h).status == 304
        d.otactl("device", "revoke-token", "dev-r")
        assert d.get(q, h).status == 401
        # a new token works, the old one does not
        t2 = add(d, "dev-r")
        assert d.get(q, {"X-Device-Token": t2}).status == 304
        assert d.get(q, h).status == 401
    finally:
        d.check_clean_exit()
    p = d.otactl("device", "add", "dev-r", check=False)
    assert p.returncode == 1 and "has a token already" in p.stderr
    p = d.otactl("device", "revoke-token", "ghost", check=False)
    assert p.returncode == 1 and "no device 'ghost'" in p.stderr
    p = d.otactl("device", "add", "bad id", check=False)
    assert p.returncode == 1 and "invalid device id" in p.stderr
    dev = d.otactl("device", "show", "dev-r", json_out=True)
    assert dev["has_token"] == 1 and "token_hash" not in dev


def test_request_caps(tmp_path):
    d = Otad(tmp_path, "rate_per_device = 3\nrate_per_address = 8\n")
    d.start()
    # caps count in one-minute windows: keep the test inside one
    while time.time() % 60 > 50:
        time.sleep(0.5)
    try:
        for _ in range(3):
            assert d.get("/firmware/check?device=c1&version=1").status == 304
        r = d.get("/firmware/check?device=c1&version=1")
        assert r.status == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # another device still gets through, until the address cap
        statuses = [d.get(f"/firmware/check?device=c{i}&version=1").status
                    for i in range(2, 8)]
        assert statuses[:4] == [304] * 4 and statuses[4:] == [429, 429]
        # health and metrics are not capped
        assert d.get("/health").status == 200
    finally:
        d.check_clean_exit()


def test_bad_auth_config(tmp_path):
    from test_01_config import run_otad
    conf = tmp_path / "c.conf"
    conf.write_text("device_auth = password\n")
    p = run_otad(conf, "-n")
    assert p.returncode != 0 and "none or token" in p.stderr
