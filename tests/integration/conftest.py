"""Shared harness: start the real otad on a free port with a temp config and
state directory, wait for its readiness line, talk HTTP to it, run otactl.

Every daemon started here must stop cleanly (exit 0) and print no sanitizer
report; teardown fails the test otherwise.
"""
import hashlib
import http.client
import inspect
import json
import os
import pathlib
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

import pgserver

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("OTAD_BUILD", ROOT / "build"))
SHARED = pathlib.Path(os.environ.get("SHARED", ROOT.parent / "shared"))
FIRMWARE = SHARED / "firmware"
WLED = FIRMWARE / "wled-esp32"
OTAD = BUILD / "otad"
OTACTL = BUILD / "otactl"
# the sanitized build (make SANITIZE=... test): CPU-bound work there takes
# about five times as long, which a bound on seconds allows for
SLOWER = 4 if BUILD.name == "san" else 1

# the registry the daemons under test use: sqlite (the default) or
# postgresql (a real server the session starts; make integration-pg)
BACKEND = os.environ.get("OTAD_TEST_BACKEND", "sqlite")
# every daemon's log appended here too, to read after a run
LOG_COPY = os.environ.get("OTAD_TEST_LOG")

READY = re.compile(r"ready: listening on (\S+?):(\d+)")
SANITIZER = re.compile(r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                       r"runtime error:)")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def md5(data):
    return hashlib.md5(data).hexdigest()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)


class Otad:
    """One otad instance with its own state directory."""

    def __init__(self, tmp, extra_conf=""):
        self.dir = pathlib.Path(tmp)
        self.state = self.dir / "state"
        self.conf = self.dir / "otad.conf"
        keys = {"listen": "127.0.0.1:0", "state_dir": str(self.state),
                "http_threads": "2", "shutdown_timeout": "10",
                # signatures have their own tests (test_08)
                "require_signature": "no"}
        if BACKEND == "postgresql":
            self.pg = pgserver.server()
            self.pg_db = self.pg.new_database()
            keys["database"] = self.pg.url(self.pg_db)
        # extra_conf's keys replace the defaults above
        for line in extra_conf.splitlines():
            k, _, v = line.partition("=")
            keys[k.strip()] = v.strip()
        self.conf.write_text("".join(f"{k} = {v}\n"
                                     for k, v in keys.items()))
        self.proc = None
        self.log = []
        self.port = None
        self.wrap = []  # a command otad runs under (ip netns exec NS)
        self.env = dict(os.environ, OTAD_CONF=str(self.conf))
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("JOURNAL_STREAM", None)

    @property
    def db(self):
        return self.state / "otad.db"

    def query(self, sql, params=()):
        """The rows of one statement (with ? parameters), committed."""
        if BACKEND == "postgresql":
            c = self.pg.connect(self.pg_db)
            try:
                with c.cursor() as cur:
                    if params:
                        cur.execute(sql.replace("?", "%s"), params)
                    else:
                        cur.execute(sql)
                    return cur.fetchall() if cur.description else []
            finally:
                c.close()
        with sqlite3.connect(self.db, timeout=10) as c:
            return c.execute(sql, params).fetchall()

    def hand_edit(self, sql):
        """sql as an operator types it into sqlite3 or psql."""
        if BACKEND == "postgresql":
            # each statement its own transaction, as the sqlite3 shell has
            # it, up to the first that fails
            return subprocess.run(
                ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-",
                 self.pg.url(self.pg_db)], input=sql + ";\n",
                capture_output=True, text=True, timeout=30)
        return subprocess.run(
            ["sqlite3", "-cmd", ".timeout 5000", str(self.db), sql],
            capture_output=True, text=True, timeout=30)

    def start(self, args=(), env=None, wait=True):
        self.log = []
        self.port = None
        self.proc = subprocess.Popen(
            [*self.wrap, str(OTAD), "-c", str(self.conf), *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            env=env or self.env, text=True)
        ready = threading.Event()

        def reader(proc=self.proc):
            for line in proc.stderr:
                self.log.append(line.rstrip("\n"))
                if LOG_COPY:
                    with open(LOG_COPY, "a") as f:
                        f.write(line)
                m = READY.search(line)
                if m:
                    self.port = int(m.group(2))
                    ready.set()
            ready.set()

        threading.Thread(target=reader, daemon=True).start()
        if wait:
            assert ready.wait(20), "otad did not get ready:\n" + self.logtext()
            assert self.port is not None and self.proc.poll() is None, \
                "otad exited:\n" + self.logtext()
        return self

    def logtext(self):
        return "\n".join(self.log)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        time.sleep(0.05)  # let the reader drain the pipe
        return rc

    def check_clean_exit(self):
        rc = self.stop()
        assert not SANITIZER.search(self.logtext()), self.logtext()
        assert rc == 0, f"otad exited {rc}:\n{self.logtext()}"

    def otactl(self, *args, check=True, json_out=False):
        argv = [str(OTACTL), *(["--json"] if json_out else []), *args]
        p = subprocess.run(argv, capture_output=True, text=True,
                           env=self.env, timeout=60)
        assert not SANITIZER.search(p.stderr), p.stderr
        if check:
            assert p.returncode == 0, p.stderr
        if json_out and p.returncode == 0:
            return json.loads(p.stdout)
        return p

    def request(self, method, path, headers=None, body=None, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port,
                                               timeout=20)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if conn is None:
            c.close()
        return Response(r.status, hdrs, data)

    def get(self, path, headers=None):
        return self.request("GET", path, headers)

    def post_json(self, path, obj, headers=None):
        body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.request("POST", path, h, body)

    def raw(self, data, timeout=10):
        """Send bytes as they are, read until the server closes."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=timeout) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may refuse before reading it all
            return parse_raw(read_until_closed(s))

    def publish(self, image, version, product=None):
        extra = ["--product", product] if product else []
        sha = self.otactl("artifact", "add", str(image), "--version",
                          version, *extra).stdout.strip()
        self.otactl("release", "create", version, "--artifact", sha, *extra)
        self.otactl("release", "publish", version, *extra)
        return sha

    def wait_for(self, predicate, timeout=5.0, what="condition"):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


def read_until_closed(sock, limit=4 << 20):
    """What sock receives until the peer closes (or a timeout)."""
    out = b""
    try:
        while len(out) < limit:
            b = sock.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def parse_raw(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0]) if lines else None
    status = int(m.group(1)) if m else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return Response(status, headers, body)


def arduino_request(path, mac, version, port, sketch_sha256=None,
                    free_space=1966080):
    """What Arduino-ESP32's HTTPUpdate sends, header for header."""
    lines = [
        f"GET {path} HTTP/1.0",
        f"Host: 127.0.0.1:{port}",
        "User-Agent: ESP32-http-Update",
        "Connection: close",
        "Cache-Control: no-cache",
        f"x-ESP32-STA-MAC: {mac}",
        "x-ESP32-AP-MAC: 0C:B8:15:F8:AD:1D",
        f"x-ESP32-free-space: {free_space}",
        "x-ESP32-sketch-size: 1286112",
        "x-ESP32-sketch-md5: 5c3d8fa3c3807f5431a87409ec479d57",
    ]
    if sketch_sha256:
        lines.append(f"x-ESP32-sketch-sha256: {sketch_sha256.upper()}")
    lines += [
        "x-ESP32-chip-size: 4194304",
        "x-ESP32-sdk-version: v4.4.4",
        "x-ESP32-mode: sketch",
    ]
    if version:
        lines.append(f"x-ESP32-version: {version}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
def otad(tmp_path):
    d = Otad(tmp_path)
    d.start()
    yield d
    d.check_clean_exit()


@pytest.fixture
def published(otad):
    """otad offering WLED 0.14.3 to every device."""
    otad.sha = otad.publish(WLED / "0.14.3.bin", "0.14.3")
    otad.image = (WLED / "0.14.3.bin").read_bytes()
    # the daemon notices within a second
    otad.wait_for(lambda: any("offering 0.14.3" in l for l in otad.log),
                  what="the publish to be noticed")
    return otad


# the configuration file, TLS and installing, and the HTTP layer's fuzzer:
# the same on either registry
REGISTRY_FREE = {"test_01_config.py", "test_06_deploy.py",
                 "test_16_http_fuzz.py"}


def pytest_collection_modifyitems(config, items):
    """On PostgreSQL, tests that open the SQLite file itself do not apply."""
    if BACKEND != "postgresql":
        return
    skip = pytest.mark.skip(reason="about the SQLite file itself")
    once = pytest.mark.skip(reason="never reaches the registry: run once")
    for item in items:
        fn = getattr(item, "function", None)
        if item.get_closest_marker("sqlite_only") or (
                fn is not None and "sqlite3" in inspect.getsource(fn)):
            item.add_marker(skip)
        elif item.fspath.basename in REGISTRY_FREE or \
                item.get_closest_marker("sqlite_once"):
            item.add_marker(once)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "sqlite_only: about SQLite itself (its file, its locks)")
    config.addinivalue_line(
        "markers", "sqlite_once: what it asks of the registry runs on "
        "PostgreSQL in other tests: run once")
