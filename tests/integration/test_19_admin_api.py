"""The management API over TLS (certificates made here): operators and
their roles, uploads (whole, cut halfway, over the cap), the two-person
rule, bad input on every endpoint, and the audit trail naming who did
what."""
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (OTACTL, SANITIZER, WLED, Otad, parse_raw,
                      read_until_closed, sha256)
from test_06_deploy import make_cert

ADMIN = re.compile(r"management API on (\S+?):(\d+)")
IMAGE = (WLED / "0.14.3.bin").read_bytes()


class Admin:
    """An otad with the management API on TLS and an operator per role."""

    def __init__(self, tmp_path, extra=""):
        self.key, self.cert = make_cert(tmp_path)
        self.d = Otad(tmp_path, f"tls_cert = {self.cert}\n"
                      f"tls_key = {self.key}\nadmin_listen = 127.0.0.1:0\n"
                      "max_artifact_bytes = 2M\n" + extra)
        self.tokens = {}
        roles = {"vera": "viewer", "otto": "operator", "olga": "operator",
                 "ada": "admin", "cid": "ci"}
        for name, role in roles.items():
            out = self.d.otactl("operator", "add", name, "--role", role,
                                json_out=True)
            assert out["role"] == role and len(out["token"]) == 40
            self.tokens[name] = out["token"]
        # the first operator of each role answers to the role's name
        for alias, name in [("viewer", "vera"), ("operator", "otto"),
                            ("admin", "ada"), ("ci", "cid")]:
            self.tokens[alias] = self.tokens[name]
        self.d.start()
        m = next(ADMIN.search(l) for l in self.d.log if ADMIN.search(l))
        self.port = int(m.group(2))
        self.ctx = ssl.create_default_context(cafile=str(self.cert))

    def conn(self):
        return http.client.HTTPSConnection("127.0.0.1", self.port,
                                           context=self.ctx, timeout=30)

    def call(self, method, path, who=None, body=None, headers=None):
        h = dict(headers or {})
        if who is not None:
            h["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c = self.conn()
        c.request(method, "/api/v1/" + path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = data
        return r.status, doc

    def device(self, path):
        """A device's request, on the device port (TLS here too)."""
        c = http.client.HTTPSConnection("127.0.0.1", self.d.port,
                                        context=self.ctx, timeout=30)
        c.request("GET", path)
        r = c.getresponse()
        r.body = r.read()
        c.close()
        return r

    def audit(self):
        return self.d.query("SELECT actor, what FROM audit ORDER BY id")

    def stop(self):
        self.d.check_clean_exit()


@pytest.fixture
def adm(tmp_path):
    a = Admin(tmp_path)
    yield a
    a.stop()


def test_roles_tokens_and_the_audit_trail(adm):
    # no token, a wrong one: 401 with a JSON reason
    st, doc = adm.call("GET", "status")
    assert st == 401 and "token" in doc["error"]
    st, doc = adm.call("GET", "status", who="0" * 40)
    assert st == 401 and "wrong or revoked" in doc["error"]
    # every role reads except ci
    for who in ("viewer", "operator", "admin"):
        assert adm.call("GET", "status", who)[0] == 200
    st, doc = adm.call("GET", "status", "ci")
    assert st == 403 and doc["error"] == "role ci may not run status"
    # ci uploads and creates releases, and nothing else
    st, art = adm.call("POST", "artifacts?version=0.14.3", "ci", IMAGE,
                       {"Content-Type": "application/octet-stream"})
    assert st == 201 and art["sha256"] == sha256(IMAGE)
    # the same file again is the same artifact
    st, again = adm.call("POST", "artifacts?version=0.14.3", "ci", IMAGE)
    assert st == 201 and again["sha256"] == art["sha256"]
    st, rel = adm.call("POST", "releases", "ci",
                       {"version": "0.14.3", "artifact": art["sha256"][:12]})
    assert st == 201 and rel["artifact"] == art["sha256"]
    st, ro = adm.call("POST", "rollouts", "ci",
                      {"version": "0.14.3", "stages": "100%"})
    assert st == 403 and ro["error"] == "role ci may not run rollout.create"
    st, doc = adm.call("POST", "releases/0.14.3/publish", "ci", {})
    assert st == 403
    # the operator steers; the viewer may not
    st, ro = adm.call("POST", "rollouts", "viewer",
                      {"version": "0.14.3", "stages": "100%"})
    assert st == 403
    st, ro = adm.call("POST", "rollouts", "operator",
                      {"version": "0.14.3", "stages": "10%; 100%"})
    assert st == 201 and ro["state"] == "draft" and ro["stages"] == 2
    st, doc = adm.call("POST", f"rollouts/{ro['id']}/start", "operator")
    assert st == 200 and doc["done"] == "started"
    st, doc = adm.call("POST", f"rollouts/{ro['id']}/start", "ci")
    assert st == 403  # a ci token cannot start a rollout
    st, status = adm.call("GET", f"rollouts/{ro['id']}", "viewer")
    assert st == 200 and status[0]["state"] == "active"
    st, doc = adm.call("POST", f"rollouts/{ro['id']}/pause", "operator")
    assert st == 200
    # keys and operators are an admin's
    pem = (adm.cert.parent / "pub.pem")
    import subprocess
    subprocess.run(["openssl", "ec", "-in", str(adm.key), "-pubout", "-out",
                    str(pem)], check=True, capture_output=True)
    st, doc = adm.call("POST", "keys", "operator",
                       {"name": "k1", "public_key": pem.read_text()})
    assert st == 403
    st, doc = adm.call("POST", "keys", "admin",
                       {"name": "k1", "public_key": pem.read_text()})
    assert st == 201 and doc["purpose"] == "artifact"
    st, keys = adm.call("GET", "keys", "viewer")
    assert [k["name"] for k in keys] == ["k1"]
    st, op = adm.call("POST", "operators", "admin",
                      {"name": "newbie", "role": "viewer"})
    assert st == 201 and len(op["token"]) == 40
    assert adm.call("GET", "status", op["token"])[0] == 200
    st, doc = adm.call("POST", "operators/newbie/revoke", "admin")
    assert st == 200
    st, doc = adm.call("GET", "status", op["token"])
    assert st == 401  # revoked: refused from the next request
    assert adm.call("GET", "operators", "operator")[0] == 403
    st, ops = adm.call("GET", "operators", "admin")
    assert {o["name"]: o["state"] for o in ops}["newbie"] == "revoked"
    # devices: a token shown once, then refused or blocked as asked
    st, dev = adm.call("POST", "devices", "operator", {"id": "dev-1"})
    assert st == 201 and len(dev["token"]) == 40
    st, doc = adm.call("POST", "devices/dev-1/block", "operator")
    assert st == 200
    st, shown = adm.call("GET", "devices/dev-1", "viewer")
    assert shown["blocked"] == 1
    # every change names its operator, role and address
    rows = adm.audit()
    by = {what.split(" ")[0] + " " + what.split(" ")[1]: actor
          for actor, what in rows}
    assert by["artifact add"] == "op:cid (ci) from 127.0.0.1"
    assert by["release create"] == "op:cid (ci) from 127.0.0.1"
    assert by["rollout create"] == "op:otto (operator) from 127.0.0.1"
    assert by["key add"].startswith("op:ada (admin)")
    assert ("op:otto (operator) from 127.0.0.1",
            f"rollout {ro['id']} state draft -> active") in rows
    st, page = adm.call("GET", "audit?limit=2", "viewer")
    assert st == 200 and len(page) == 2 and page[0]["id"] > page[1]["id"]
    st, older = adm.call("GET", f"audit?limit=2&before={page[1]['id']}",
                         "viewer")
    assert older[0]["id"] < page[1]["id"]


def test_uploads_that_fail_leave_nothing(adm):
    store = adm.d.state / "artifacts"

    def files():
        return sorted(p.name for p in store.iterdir()) if store.exists() \
            else []
    before = files()
    # over the cap (2M here): 413 from the headers, before the body is read
    s = adm.ctx.wrap_socket(socket.create_connection(("127.0.0.1",
                                                      adm.port)),
                            server_hostname="127.0.0.1")
    s.sendall((f"POST /api/v1/artifacts?version=9.9.9 HTTP/1.1\r\n"
               f"Host: x\r\nAuthorization: Bearer {adm.tokens['ci']}\r\n"
               f"Content-Length: {3 << 20}\r\n\r\n").encode())
    r = parse_raw(read_until_closed(s))
    s.close()
    assert r.status == 413 and b"max_artifact_bytes" in r.body
    # and one that says no length (chunked): refused once past the cap
    c = adm.conn()
    c.request("POST", "/api/v1/artifacts?version=9.9.9",
              body=iter([b"\xe9" * (1 << 20)] * 2 + [b"x" * (1 << 19)]),
              headers={"Authorization": f"Bearer {adm.tokens['ci']}"},
              encode_chunked=True)
    r = c.getresponse()
    assert r.status == 413 and b"max_artifact_bytes" in r.read()
    c.close()
    # not an image, a bad signature, a bad kind: 400, nothing stored
    st, doc = adm.call("POST", "artifacts?version=1.0", "ci", b"x" * 5000)
    assert st == 400
    st, doc = adm.call("POST", "artifacts?version=1.0&kind=nope", "ci",
                       IMAGE)
    assert st == 400
    st, doc = adm.call("POST", "artifacts?version=1.0&key=k", "ci", IMAGE)
    assert st == 400 and "go together" in doc["error"]
    st, doc = adm.call("POST", "artifacts", "ci", b"")
    assert st == 400
    # cut halfway: the connection drops with half the body sent
    raw = socket.create_connection(("127.0.0.1", adm.port))
    s = adm.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    s.sendall((f"POST /api/v1/artifacts?version=0.14.3 HTTP/1.1\r\n"
               f"Host: x\r\nAuthorization: Bearer {adm.tokens['ci']}\r\n"
               f"Content-Length: {len(IMAGE)}\r\n\r\n").encode() +
              IMAGE[:len(IMAGE) // 2])
    time.sleep(0.3)
    s.close()
    time.sleep(0.3)
    assert files() == before
    st, arts = adm.call("GET", "artifacts", "viewer")
    assert arts == []
    # and a whole one still goes through after all that
    st, art = adm.call("POST", "artifacts?version=0.14.3", "ci", IMAGE)
    assert st == 201


def test_bad_input_everywhere_changes_nothing(adm):
    adm.call("POST", "artifacts?version=0.14.3", "ci", IMAGE)
    bodies = [b"{", b"[]", b'"x"', b'{"version": 3}', b'{"stages": ["x"]}',
              b'{"name": "../x", "public_key": "y"}', b'{"id": "bad id"}',
              b'{"force": "yes"}', b'{"role": "god", "name": "x"}',
              b'{"a": "' + b"\x01" + b'"}', b"x" * 20000,
              b'{"version": "0.14.3", "artifact": "ffff"}',
              b'{"break_glass": "why"}']
    paths = ["releases", "rollouts", "keys", "devices", "devices/d1",
             "devices/d1/block", "operators", "rollouts/1/start",
             "rollouts/x/pause", "rollouts/1/explode", "releases/0.14.3/"
             "publish", "keys/nope/revoke", "artifacts/00/sign",
             "nowhere", "devices/a/b/c/d/e"]
    before = adm.audit()
    for path in paths:
        for body in bodies:
            st, doc = adm.call("POST", path, "operator", body)
            assert 400 <= st < 500, (path, body, st, doc)
            assert isinstance(doc, dict) and doc.get("error"), (path, doc)
    for path in ["rollouts/0", "rollouts/abc", "devices/nobody",
                 "artifacts/zz", "nothing", "status/extra",
                 "audit?limit=0", "audit?before=x"]:
        st, doc = adm.call("GET", path, "viewer")
        assert 400 <= st < 500 and doc["error"], (path, st, doc)
    assert adm.audit() == before


def test_two_person_rule(tmp_path):
    adm = Admin(tmp_path, "rollout_approvals = 2\n")
    try:
        st, art = adm.call("POST", "artifacts?version=0.14.3", "ci", IMAGE)
        adm.call("POST", "releases", "ci", {"version": "0.14.3",
                                            "artifact": art["sha256"]})
        # a publish waits for someone else
        st, pub = adm.call("POST", "releases/0.14.3/publish", "operator")
        assert st == 200 and pub["awaiting_approval"] is True
        assert adm.device("/firmware/check?device=x&version=0.1").status \
            == 304
        st, doc = adm.call("POST", f"rollouts/{pub['rollout']}/start",
                           "operator")
        assert st == 400 and "second operator" in doc["error"]
        # its creator cannot approve it
        st, doc = adm.call("POST", f"rollouts/{pub['rollout']}/approve",
                           "operator")
        assert st == 400 and "other than its creator" in doc["error"]
        # a second operator can, and it starts
        st, doc = adm.call("POST", f"rollouts/{pub['rollout']}/approve",
                           "olga")
        assert st == 200
        adm.d.wait_for(lambda: adm.device(
            "/firmware/check?device=x&version=0.1").status == 200)
        # halts, pauses and aborts never wait
        assert adm.call("POST", f"rollouts/{pub['rollout']}/pause",
                        "operator")[0] == 200
        # break-glass: an admin's alone, audited with the reason, counted
        st, ro = adm.call("POST", "rollouts", "operator",
                          {"version": "0.14.3", "stages": "100%"})
        st, doc = adm.call("POST", f"rollouts/{ro['id']}/start", "operator",
                           {"break_glass": "fire"})
        assert st == 403
        st, doc = adm.call("POST", f"rollouts/{ro['id']}/start", "admin",
                           {"break_glass": "field devices bricking"})
        assert st == 200
        assert any("break-glass" in what and "field devices bricking" in
                   what and actor.startswith("op:ada")
                   for actor, what in adm.audit())
        assert any("break-glass" in l for l in adm.d.log)
        assert "otad_break_glass_total 1" in \
            adm.device("/metrics").body.decode()
        approved = [w for _, w in adm.audit() if "approve" in w or
                    "draft -> active" in w]
        assert approved
    finally:
        adm.stop()


def test_admin_listen_needs_tls_off_loopback(tmp_path):
    d = Otad(tmp_path, "admin_listen = 0.0.0.0:0\n")
    p = d.start(wait=False)
    assert p.proc.wait(20) != 0
    time.sleep(0.2)
    assert "in the clear" in d.logtext()


class Remote:
    """otactl on an operator's laptop: no configuration, no database, only
    the server's address, its CA and a token file."""

    def __init__(self, adm, tmp_path):
        self.adm = adm
        self.dir = tmp_path / "laptop"
        self.dir.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("OTAD_")}
        # a configuration that names no readable database: proof that
        # remote otactl never opens one
        self.env["OTAD_CONF"] = str(self.dir / "absent.conf")
        self.url = f"https://127.0.0.1:{adm.port}"

    def token_file(self, who):
        f = self.dir / f"{who}.token"
        f.write_text(adm_token(self.adm, who) + "\n")
        f.chmod(0o600)
        return f

    def run(self, who, *args, json_out=False, env=None):
        argv = [str(OTACTL), "--url", self.url, "--cacert",
                str(self.adm.cert), "--token-file", str(self.token_file(who)),
                *(["--json"] if json_out else []), *args]
        p = subprocess.run(argv, capture_output=True, text=True,
                           env=env or self.env, timeout=60)
        assert not SANITIZER.search(p.stderr), p.stderr
        return p


def adm_token(adm, who):
    return adm.tokens.get(who, who)


def ok(p):
    assert p.returncode == 0, p.stderr
    return p.stdout


def refused(p, reason):
    assert p.returncode == 1 and p.stdout == "", (p.stdout, p.stderr)
    assert p.stderr == f"otactl: {reason}\n", p.stderr


@pytest.mark.sqlite_once  # the API's registry work runs on PostgreSQL above
def test_remote_otactl_is_local_otactl(adm, tmp_path):
    r = Remote(adm, tmp_path)
    image = WLED / "0.14.3.bin"
    sha = sha256(IMAGE)
    key = tmp_path / "ci.pem"
    pub = tmp_path / "ci.pub"
    sig = tmp_path / "0.14.3.sig"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey",
                    "-noout", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out",
                    str(pub)], check=True)
    subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key), "-out",
                    str(sig), str(image)], check=True)

    # keys are an admin's: the operator is refused, the admin adds it
    refused(r.run("operator", "key", "add", "ci", "--public", str(pub)),
            "role operator may not run key.add")
    out = ok(r.run("admin", "key", "add", "ci", "--public", str(pub)))
    assert re.fullmatch(r"key ci added: ecdsa-p256, artifact, fingerprint "
                        r"[0-9a-f]{64}\n", out), out

    # the CI step: upload with the signature made in CI, create a release
    out = ok(r.run("ci", "artifact", "add", str(image), "--version",
                   "0.14.3", "--signature", str(sig), "--key", "ci"))
    assert out == sha + "\n"
    got = adm.d.otactl("artifact", "show", sha, json_out=True)
    assert [s["key"] for s in got["signatures"]] == ["ci"]
    # a signature that does not verify leaves nothing
    p = r.run("ci", "artifact", "add", str(WLED / "0.14.4.bin"),
              "--version", "0.14.4", "--signature", str(sig), "--key", "ci")
    assert p.returncode == 1 and "cannot add" in p.stderr, p.stderr
    assert "verify" in p.stderr, p.stderr
    assert len(adm.d.otactl("artifact", "list", json_out=True)) == 1
    out = ok(r.run("ci", "release", "create", "0.14.3", "--artifact",
                   sha[:12]))
    assert re.fullmatch(rf"release 0\.14\.3 created \(id \d+, artifact "
                        rf"{sha[:12]}\)\n", out), out
    # ... and cannot go further
    refused(r.run("ci", "rollout", "create", "0.14.3", "--stages", "100%"),
            "role ci may not run rollout.create")
    refused(r.run("ci", "release", "publish", "0.14.3"),
            "role ci may not run release.publish")
    assert adm.d.otactl("rollout", "status", json_out=True) == []

    # the operator rolls it out, and a device takes it
    check = "/firmware/check?device=dev-1&version=0.14.2"
    assert adm.device(check).status == 304
    # rehearsed first, from the laptop as on the host, and the same answer
    plan = ["0.14.3", "--stages", "group=canary,soak=0s; 100%",
            "--failure-rate", "0.5"]
    refused(r.run("viewer", "rollout", "simulate", *plan),
            "role viewer may not run rollout.simulate")
    out = ok(r.run("operator", "rollout", "simulate", *plan))
    assert out == adm.d.otactl("rollout", "simulate", *plan).stdout, out
    assert "nothing was written to the registry" in out
    assert adm.d.otactl("rollout", "status", json_out=True) == []
    assert ok(r.run("operator", "device", "set", "dev-1", "--group",
                    "canary")) == "device dev-1 updated\n"
    # no soak: the status compared below has no clock counting down in it
    out = ok(r.run("operator", "rollout", "create", "0.14.3", "--stages",
                   "group=canary,soak=0s; 100%"))
    m = re.fullmatch(r"rollout (\d+) of 0\.14\.3 created \(draft, 2 stages\)"
                     r"; start it with: otactl rollout start \1\n", out)
    assert m, out
    rid = m.group(1)
    assert adm.device(check).status == 304
    assert ok(r.run("operator", "rollout", "start", rid)) == \
        f"rollout {rid} started\n"
    # otactl returned once otad served the change: the device sees it now
    got = adm.device(check)
    assert got.status == 200 and sha256(got.body) == sha
    out = ok(r.run("operator", "device", "add", "dev-2", "--group",
                   "canary"))
    assert re.fullmatch(r"device dev-2 added; its token \(shown only now\): "
                        r"\S{40}\n", out), out
    assert ok(r.run("operator", "rollout", "pause", rid)) == \
        f"rollout {rid} paused\n"
    assert ok(r.run("operator", "device", "block", "dev-1")) == \
        "device dev-1: block done\n"
    refused(r.run("viewer", "device", "unblock", "dev-1"),
            "role viewer may not run device.unblock")

    # reads: the same table and the same JSON as on the host, byte for byte
    for args in (["artifact", "list"], ["artifact", "show", sha],
                 ["release", "list"], ["key", "list"],
                 ["device", "list"], ["device", "show", "dev-1"],
                 ["rollout", "status", rid], ["status"]):
        for as_json in (False, True):
            local = adm.d.otactl(*args, json_out=as_json)
            local = local if as_json else local.stdout
            remote = ok(r.run("viewer", *args, json_out=as_json))
            remote = json.loads(remote) if as_json else remote
            assert remote == local, args
    # errors: the same message and exit code as on the host
    for args in (["rollout", "start", "999"], ["device", "show", "nobody"],
                 ["artifact", "show", "00" * 32]):
        local = adm.d.otactl(*args, check=False)
        remote = r.run("operator", *args)
        assert (remote.returncode, remote.stderr) == \
            (local.returncode, local.stderr) and local.returncode == 1, args
    # usage is checked before anything is sent
    p = r.run("operator", "rollout", "start")
    assert p.returncode == 2 and p.stderr.startswith("usage:")

    # the audit log names who did what, from where, a page at a time
    out = ok(r.run("viewer", "audit", "--actor", "op:otto"))
    assert "op:otto (operator) from 127.0.0.1" in out, out
    assert "op:ada" not in out and "op:cid" not in out
    page = json.loads(ok(r.run("viewer", "audit", "--limit", "2",
                               json_out=True)))
    assert len(page) == 2 and page[0]["id"] > page[1]["id"]
    more = json.loads(ok(r.run("viewer", "audit", "--before",
                               str(page[1]["id"]), "--limit", "2",
                               json_out=True)))
    assert more[0]["id"] < page[1]["id"]

    # a token from the environment, as CI systems hand secrets over
    env = dict(r.env, OTAD_URL=r.url, OTAD_CACERT=str(adm.cert),
               OTAD_TOKEN=adm.tokens["viewer"])
    p = subprocess.run([str(OTACTL), "release", "list"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 0 and "0.14.3" in p.stdout, p.stderr
    # a wrong token, a revoked one, no token, an unknown CA: refused
    refused(r.run("0" * 40, "status"),
            "wrong or revoked operator token")
    out = ok(r.run("admin", "operator", "revoke", "vera"))
    assert out == "operator vera revoked: their token is refused from the " \
        "next request\n"
    refused(r.run("viewer", "status"), "wrong or revoked operator token")
    p = subprocess.run([str(OTACTL), "--url", r.url, "status"],
                       capture_output=True, text=True, env=r.env, timeout=60)
    assert p.returncode == 1 and "needs an operator token" in p.stderr
    p = subprocess.run([str(OTACTL), "--url", r.url, "--token-file",
                        str(r.token_file("admin")), "status"],
                       capture_output=True, text=True, env=r.env, timeout=60)
    assert p.returncode == 1 and "certificate" in p.stderr, p.stderr
    # and never a token in clear across the network
    p = subprocess.run([str(OTACTL), "--url", "http://192.0.2.1:8443",
                        "--token-file", str(r.token_file("admin")),
                        "status"], capture_output=True, text=True,
                       env=r.env, timeout=60)
    assert p.returncode == 1 and "in clear" in p.stderr, p.stderr
