"""A real Mosquitto broker on a free loopback port, and a subscriber that
records what it sees (mosquitto_sub), for the MQTT tests."""
import json
import os
import pathlib
import socket
import subprocess
import threading
import time

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto -c CONF; tls: dict(ca=, cert=, key=) to require client
    certificates signed by ca."""

    def __init__(self, tmp, tls=None, port=None, extra=()):
        self.dir = pathlib.Path(tmp)
        self.port = port or free_port()
        self.tls = tls
        self.proc = None
        self.conf = self.dir / f"mosquitto-{self.port}.conf"
        # as root mosquitto would drop to its own user, which cannot read
        # the test's files
        lines = ["user root"] if os.geteuid() == 0 else []
        lines += [f"listener {self.port} 127.0.0.1",
                 "allow_anonymous true", "persistence false",
                 "log_dest stderr", "log_type error", "log_type warning"]
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}",
                      f"keyfile {tls['key']}", "require_certificate true"]
        lines += list(extra)  # later lines win (allow_anonymous false)
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read()
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def client_args(self, client_tls=None, user=None):
        args = ["-h", "127.0.0.1", "-p", str(self.port)]
        if user:
            args += ["-u", user, "-P", user + "-secret"]
        if client_tls:
            args += ["--cafile", client_tls["ca"], "--cert",
                     client_tls["cert"], "--key", client_tls["key"]]
        return args

    def pub(self, topic, payload, client_tls=None, retain=False, user=None):
        argv = ["mosquitto_pub", *self.client_args(client_tls, user), "-q",
                "1", "-t", topic]
        if retain:
            argv.append("-r")
        if isinstance(payload, bytes):
            argv += ["-s"]
            subprocess.run(argv, input=payload, check=True, timeout=10)
        else:
            subprocess.run(argv + ["-m", payload], check=True, timeout=10)


    def pub_lines(self, topic, lines):
        """Publish each line as one message on topic (QoS 1), from one
        client: a fleet's telemetry round without a process a message."""
        argv = ["mosquitto_pub", *self.client_args(), "-q", "1", "-t",
                topic, "-l"]
        subprocess.run(argv, input="".join(l + "\n" for l in lines),
                       text=True, check=True, timeout=60)


class Sub:
    """mosquitto_sub on a filter; messages as (retained, topic, payload)."""

    live = []  # stopped by stop_all() even when a test fails

    def __init__(self, broker, topic="ota/#", client_tls=None):
        self.messages = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["mosquitto_sub", *broker.client_args(client_tls), "-q", "1",
             "-t", topic, "-t", "otad-test/ready", "-F", "%r\t%t\t%p"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        Sub.live.append(self)
        threading.Thread(target=self._read, daemon=True).start()
        # subscribed once a message of our own comes back
        end = time.monotonic() + 10
        while not self.topics("otad-test/ready"):
            assert time.monotonic() < end, "mosquitto_sub did not subscribe"
            broker.pub("otad-test/ready", "1", client_tls)
            time.sleep(0.1)

    def _read(self):
        for line in self.proc.stdout:
            retained, topic, payload = (line.rstrip("\n").split("\t", 2) +
                                        ["", ""])[:3]
            with self.lock:
                self.messages.append((retained == "1", topic, payload))

    def topics(self, topic):
        """Payloads seen on topic, in order."""
        with self.lock:
            return [p for _, t, p in self.messages if t == topic]

    def json(self, topic):
        return [json.loads(p) for p in self.topics(topic) if p]

    def matching(self, pred):
        with self.lock:
            return [(t, p) for _, t, p in self.messages if pred(t)]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def device_triggers(self):
        """Device id -> the trigger payloads it got, group triggers left
        out."""
        out = {}
        for t, p in self.matching(lambda t: t.endswith("/trigger") and
                                  "/group/" not in t):
            out.setdefault(t.split("/")[1], []).append(
                json.loads(p) if p else None)
        return out

    @classmethod
    def stop_all(cls):
        while cls.live:
            cls.live.pop().stop()


def make_tls(tmp):
    """A CA, a server certificate for 127.0.0.1 and a client certificate,
    made with openssl; returns (server, client) dicts of paths."""
    d = pathlib.Path(tmp) / "pki"
    d.mkdir(exist_ok=True)

    def run(*argv):
        subprocess.run(["openssl", *argv], check=True, cwd=d,
                       capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=otad test CA", "-keyout", "ca.key", "-out", "ca.crt")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                      ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (d / f"{name}.ext").write_text(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey",
            "ca.key", "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
            "-extfile", f"{name}.ext")
    paths = {n: str(d / n) for n in ("ca.crt", "server.crt", "server.key",
                                      "client.crt", "client.key")}
    server = {"ca": paths["ca.crt"], "cert": paths["server.crt"],
              "key": paths["server.key"]}
    client = {"ca": paths["ca.crt"], "cert": paths["client.crt"],
              "key": paths["client.key"]}
    return server, client
