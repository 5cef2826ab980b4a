"""otad behind the TLS-terminating proxies README recommends above 100,000
devices, configured as the files in conf/ say: nginx (conf/nginx-otad.conf)
and haproxy (conf/haproxy.cfg). Stock device requests over TLS reach otad
through them, resume their sessions, and the device's own address (not the
proxy's) reaches the registry through a trusted X-Forwarded-For, which a
device cannot forge."""
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from conftest import ROOT, WLED, Otad, parse_raw
from test_06_deploy import make_cert
from test_17_stock_clients import (NEW, httpupdate, httpupdate_result,
                                   idf_request)
from test_23_cluster import free_port

# what these ask of the registry (a device's address) other tests ask on
# PostgreSQL; the proxies are the same on either
pytestmark = pytest.mark.sqlite_once


def start_nginx(tmp, cert, key, upstream):
    """nginx with conf/nginx-otad.conf: its TLS server on a free loopback
    port, its upstream the otad under test."""
    port = free_port()
    cfg = (ROOT / "conf" / "nginx-otad.conf").read_text()
    cfg = cfg.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    cfg = cfg.replace("/etc/otad/tls/cert.pem", str(cert))
    cfg = cfg.replace("/etc/otad/tls/key.pem", str(key))
    cfg = cfg.replace("server 127.0.0.1:8080;",
                      f"server 127.0.0.1:{upstream};")
    cfg = cfg.replace("worker_processes auto;", "worker_processes 1;\n"
                      f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
                      "user root;")
    cfg = cfg.replace("worker_rlimit_nofile 65536;", "")
    (tmp / "nginx").mkdir()
    (tmp / "nginx.conf").write_text(cfg)
    proc = subprocess.Popen(["nginx", "-p", str(tmp / "nginx"), "-c",
                             str(tmp / "nginx.conf"), "-e",
                             str(tmp / "error.log"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    return proc, port


def start_haproxy(tmp, cert, key, upstream):
    """haproxy with conf/haproxy.cfg: its TLS frontend on a free loopback
    port with the test's certificate, its one server the otad under
    test."""
    port = free_port()
    pem = tmp / "haproxy.pem"
    pem.write_text(cert.read_text() + key.read_text())
    cfg = (ROOT / "conf" / "haproxy.cfg").read_text()
    cfg = cfg.replace("bind :443 ssl crt /etc/haproxy/ota.pem",
                      f"bind 127.0.0.1:{port} ssl crt {pem}")
    cfg = re.sub(r"(?m)^\tserver .*\n", "", cfg)
    cfg = re.sub(r"maxconn \d+", "maxconn 4096", cfg)
    cfg += f"\tserver node1 127.0.0.1:{upstream} check\n"
    (tmp / "haproxy.cfg").write_text(cfg)
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(tmp / "haproxy.cfg")],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    return proc, port


PROXIES = {"nginx": start_nginx, "haproxy": start_haproxy}


@pytest.fixture(params=sorted(PROXIES))
def proxied(request, tmp_path):
    """otad trusting 127.0.0.1, WLED 0.14.3 published, the proxy in front:
    (otad, proxy port, the CA file)."""
    if shutil.which(request.param) is None:
        pytest.fail(f"{request.param} is not installed (make deps-test)")
    key, cert = make_cert(tmp_path)
    d = Otad(tmp_path, "trusted_proxies = 127.0.0.1\nrate_per_device = 0\n")
    d.publish(WLED / "0.14.3.bin", "0.14.3")
    d.start()
    proc, port = PROXIES[request.param](tmp_path, cert, key, d.port)
    try:
        end = time.monotonic() + 10
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < end, f"{request.param} is not up"
                time.sleep(0.05)
        d.wait_for(lambda: any("offering 0.14.3" in l for l in d.log))
        yield d, port, cert
    finally:
        proc.terminate()
        proc.wait(10)
    d.check_clean_exit()


def device_tls(ca, version=ssl.TLSVersion.TLSv1_2):
    """A device's TLS: it checks the server's certificate; esp-tls's
    mbedTLS speaks TLS 1.2 (1.3 only when built with it)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.maximum_version = version
    return ctx


def complete(data):
    """The answer in data, once all of it is there (its headers and
    Content-Length bytes; none for a 304); None before."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    r = parse_raw(data)
    n = 0 if r.status == 304 else int(r.headers.get("content-length", "0"))
    return r if len(body) >= n else None


def over_tls(port, data, ctx, source, session=None):
    """One request over a new TLS connection from a device's own address,
    read as esp_http_client reads (headers, then Content-Length bytes),
    then closed (esp_https_ota closes after each): the answer, the TLS
    session and whether it was resumed."""
    with socket.create_connection(("127.0.0.1", port), timeout=20,
                                  source_address=(source, 0)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost",
                             session=session) as s:
            s.sendall(data)
            out = b""
            while (r := complete(out)) is None:
                chunk = s.recv(65536)
                assert chunk, f"closed before a whole answer: {out[:200]}"
                out += chunk
            return r, s.session, s.session_reused


def address(d, dev):
    d.wait_for(lambda: d.otactl("device", "show", dev,
                                check=False).returncode == 0,
               5, f"{dev} in the registry")
    return d.otactl("device", "show", dev, json_out=True)["address"]


def test_esp_https_ota_through_the_proxy(proxied):
    """esp_https_ota's GET over TLS 1.2 from its own address: the image,
    whole; the next poll resumes the session by its ticket and is a 304;
    the registry has the device's address, not the proxy's."""
    d, port, ca = proxied
    ctx = device_tls(ca)
    url = "/firmware/check?device=px-1&version=0.14.2"
    r, session, _ = over_tls(port, idf_request(port, url), ctx, "127.0.0.2")
    assert r.status == 200 and r.body == NEW
    assert address(d, "px-1") == "127.0.0.2"
    url = "/firmware/check?device=px-1&version=0.14.3"
    r, _, resumed = over_tls(port, idf_request(port, url), ctx, "127.0.0.2",
                             session)
    assert r.status == 304
    assert resumed, "the next poll is a full handshake again"


def test_a_range_request_passes_through(proxied):
    """esp_https_ota's partial download (CONFIG_ESP_HTTPS_OTA partial
    http download): a Range request comes back a 206 of those bytes."""
    d, port, ca = proxied
    url = "/firmware/check?device=px-2&version=0.14.2"
    r, _, _ = over_tls(port, idf_request(port, url, range_="bytes=0-4095"),
                       device_tls(ca), "127.0.0.4")
    assert r.status == 206 and r.body == NEW[:4096]
    assert r.headers["content-range"] == f"bytes 0-4095/{len(NEW)}"


def test_a_device_cannot_forge_its_address(proxied):
    """Arduino HTTPUpdate's request (HTTP/1.0, Connection: close) with an
    X-Forwarded-For of its own: the proxy appends the address it saw, and
    otad believes only that hop."""
    d, port, ca = proxied
    data = httpupdate(port, "/firmware/check", version="0.14.2",
                      base_mac="24:0A:C4:00:02:00", sta_mac=None)
    data = data.replace(b"Connection: close\r\n",
                        b"Connection: close\r\nX-Forwarded-For: 192.0.2.66"
                        b"\r\n")
    r, _, _ = over_tls(port, data, device_tls(ca, ssl.TLSVersion.TLSv1_3),
                       "127.0.0.3")
    assert httpupdate_result(r) == NEW
    devices = d.otactl("device", "list", json_out=True)
    mine = [x for x in devices if x["address"] in ("127.0.0.3", "192.0.2.66")]
    assert [x["address"] for x in mine] == ["127.0.0.3"]


def test_only_a_trusted_proxy_is_believed(tmp_path):
    """Straight to otad: a device's own X-Forwarded-For is ignored, from
    an address otad does not trust; and with no trusted_proxies (the
    default) even loopback is not believed."""
    for trusted, source in (("127.0.0.1", "127.0.0.5"), ("", "127.0.0.1")):
        (tmp_path / source).mkdir()
        d = Otad(tmp_path / source, f"trusted_proxies = {trusted}\n")
        d.start()
        try:
            dev = f"direct-{source}"
            with socket.create_connection(("127.0.0.1", d.port), timeout=10,
                                          source_address=(source, 0)) as s:
                s.sendall(idf_request(d.port, f"/firmware/check?device={dev}"
                                      f"&version=1.0.0").replace(
                    b"Content-Length: 0\r\n",
                    b"Content-Length: 0\r\nX-Forwarded-For: 192.0.2.7\r\n"))
                assert s.recv(4096).startswith(b"HTTP/1.1 304")
            assert address(d, dev) == source
        finally:
            d.check_clean_exit()
