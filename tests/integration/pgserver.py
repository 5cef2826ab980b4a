"""A real PostgreSQL for the tests: initdb and pg_ctl on a temporary
directory, listening on loopback only, started once per test session.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
`postgres` user Debian's package creates; otherwise to the user running
the tests. Every otad under test gets a database of its own.
"""
import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

import psycopg2

_server = None
_names = itertools.count(1)


def pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (postgresql-15)")
    return found[-1]


def available():
    return bool(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    USER = "otad"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="otad-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.run_as = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.dir, 0o700)
        subprocess.run([*self.run_as, pg_bin("initdb"), "-D", self.data,
                        "-A", "trust", "-U", self.USER, "-E", "UTF8",
                        "--locale=C.UTF-8", "--no-sync"],
                       check=True, capture_output=True)
        self.pg_ctl("start", "-w", "-l", os.path.join(self.dir, "log"),
                    "-o", f"-p {self.port} -k {self.dir} "
                    "-c listen_addresses=127.0.0.1 -c fsync=on "
                    "-c max_connections=400")

    def pg_ctl(self, *args):
        subprocess.run([*self.run_as, pg_bin("pg_ctl"), "-D", self.data,
                        *args], check=True, capture_output=True,
                       timeout=60)

    def url(self, db, tcp=False):
        """A libpq URL: over the server's socket (reachable from a test's
        own network namespace too), or over TCP on loopback."""
        if tcp:
            return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{db}"
        return (f"postgresql://{self.USER}@/{db}?host={self.dir}"
                f"&port={self.port}")

    def connect(self, db="postgres"):
        c = psycopg2.connect(host="127.0.0.1", port=self.port,
                             user=self.USER, dbname=db)
        c.autocommit = True
        return c

    def new_database(self):
        name = f"otad_{os.getpid()}_{next(_names)}"
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name}")
        finally:
            c.close()
        return name

    def stop(self):
        try:
            self.pg_ctl("stop", "-m", "fast")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def server():
    """The session's PostgreSQL, started on first use."""
    global _server
    if _server is None:
        _server = Server()
        atexit.register(_server.stop)
    return _server
