"""Deployment: native TLS, make install with PREFIX and DESTDIR."""
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time

from conftest import OTAD, ROOT, WLED, Otad, sha256


def make_cert(d):
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return key, cert


def test_tls_serves_the_image(tmp_path):
    key, cert = make_cert(tmp_path)
    d = Otad(tmp_path, f"tls_cert = {cert}\ntls_key = {key}\n")
    d.start()
    try:
        assert any("(TLS)" in l for l in d.log)
        sha = d.publish(WLED / "0.14.3.bin", "0.14.3")
        d.wait_for(lambda: any("offering 0.14.3" in l for l in d.log))
        ctx = ssl.create_default_context(cafile=str(cert))
        c = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx,
                                        timeout=20)
        c.request("GET", "/firmware/check?device=tls1&version=0.14.2")
        r = c.getresponse()
        body = r.read()
        assert r.status == 200 and sha256(body) == sha
        c.request("GET", "/firmware/check?device=tls1&version=0.14.3")
        r = c.getresponse()
        r.read()
        assert r.status == 304
        c.close()
        # plain HTTP on the TLS port gets nothing useful, and no crash
        p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                            "%{http_code}", f"http://127.0.0.1:{d.port}/"
                            "health"], capture_output=True, text=True)
        assert p.stdout != "200"
        # and the daemon is still up
        c = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx)
        c.request("GET", "/health")
        assert c.getresponse().status == 200
        c.close()
    finally:
        d.check_clean_exit()


def test_tls_with_a_missing_key_fails_clearly(tmp_path):
    key, cert = make_cert(tmp_path)
    d = Otad(tmp_path, f"tls_cert = {cert}\ntls_key = {tmp_path}/none.pem\n")
    p = subprocess.run([str(OTAD), "-c", str(d.conf)], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode != 0
    assert "none.pem" in p.stderr


def test_a_bad_ticket_key_or_a_mismatched_key_fails_clearly(tmp_path):
    key, cert = make_cert(tmp_path)
    short = tmp_path / "short.key"
    short.write_bytes(os.urandom(10))
    other = tmp_path / "other"
    other.mkdir()
    for extra, needle in [
        (f"tls_ticket_key = {short}\n", "must hold 64 random bytes"),
        (f"tls_ticket_key = {tmp_path}/none.key\n", "none.key"),
        ("tls_ticket_lifetime = 604801\n", "'tls_ticket_lifetime'"),
    ]:
        d = Otad(tmp_path, f"tls_cert = {cert}\ntls_key = {key}\n" + extra)
        p = subprocess.run([str(OTAD), "-c", str(d.conf)],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode != 0 and needle in p.stderr, (extra, p.stderr)
    d = Otad(tmp_path, f"tls_cert = {cert}\n"
             f"tls_key = {make_cert(other)[0]}\n")
    p = subprocess.run([str(OTAD), "-c", str(d.conf)], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode != 0 and "tls_key" in p.stderr, p.stderr


def test_make_install_honours_prefix_and_destdir(tmp_path):
    dest = tmp_path / "root"
    subprocess.run(["make", "-s", "-C", str(ROOT), "install",
                    "PREFIX=/usr", f"DESTDIR={dest}"], check=True,
                   capture_output=True)
    assert (dest / "usr/sbin/otad").stat().st_mode & 0o111
    assert (dest / "usr/bin/otactl").stat().st_mode & 0o111
    conf = dest / "etc/otad/otad.conf"
    assert "state_dir = /var/lib/otad" in conf.read_text()
    unit = (dest / "lib/systemd/system/otad.service").read_text()
    assert "ExecStart=/usr/sbin/otad -c /etc/otad/otad.conf" in unit
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP" in unit
    assert "@" not in unit.replace("@system-service", "").replace(
        "@privileged", "").replace("@resources", "")
    # an installed otad needs no schema files: it migrates from the binary
    p = subprocess.run([str(dest / "usr/sbin/otad"), "-n", "-c", str(conf)],
                       capture_output=True, text=True)
    assert p.stdout.strip() == "configuration OK"


def tls_poll(port, ctx, session=None):
    """One poll over a new TLS connection, as esp_https_ota makes one per
    update check: the answer's status, the session (with its ticket, read
    after the answer) and whether it resumed the one given."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost",
                             session=session) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n"
                      b"Connection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            return (int(data.split()[1]), s.session, s.session_reused,
                    s.getpeercert(binary_form=True))


def context(cert, version):
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


TLS_VERSIONS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


def test_tls_sessions_resume_with_tickets(tmp_path):
    """A device's next poll resumes its session from the ticket it was
    given, TLS 1.2 (what esp-tls's mbedTLS resumes) and 1.3; two nodes
    sharing tls_ticket_key resume each other's; a ticket past
    tls_ticket_lifetime is a full handshake again."""
    key, cert = make_cert(tmp_path)
    ticket_key = tmp_path / "ticket.key"
    ticket_key.write_bytes(os.urandom(64))
    conf = (f"tls_cert = {cert}\ntls_key = {key}\n"
            f"tls_ticket_key = {ticket_key}\ntls_ticket_lifetime = 60\n")
    for node in "abc":
        (tmp_path / node).mkdir()
    a, b = Otad(tmp_path / "a", conf), Otad(tmp_path / "b", conf)
    a.start()
    b.start()
    try:
        for version in TLS_VERSIONS:
            ctx = context(cert, version)
            status, session, reused, _ = tls_poll(a.port, ctx)
            assert status == 200 and not reused
            status, again, reused, _ = tls_poll(a.port, ctx, session)
            assert status == 200 and reused, version
            # the other node of a cluster takes the same ticket
            status, _, reused, _ = tls_poll(b.port, ctx, again)
            assert status == 200 and reused, version
    finally:
        a.check_clean_exit()
        b.check_clean_exit()
    # a node with a key of its own does not resume another's tickets
    c = Otad(tmp_path / "c", f"tls_cert = {cert}\ntls_key = {key}\n")
    c.start()
    try:
        ctx = context(cert, ssl.TLSVersion.TLSv1_2)
        _, session, _, _ = tls_poll(c.port, ctx)
        assert tls_poll(c.port, ctx, session)[2]
        c.stop()
        c.start()
        assert not tls_poll(c.port, ctx, session)[2]
    finally:
        c.check_clean_exit()
    # tls_ticket_lifetime = 0: no tickets, every poll a full handshake
    (tmp_path / "e").mkdir()
    e = Otad(tmp_path / "e", f"tls_cert = {cert}\ntls_key = {key}\n"
             "tls_ticket_lifetime = 0\n")
    e.start()
    try:
        for version in TLS_VERSIONS:
            ctx = context(cert, version)
            status, session, _, _ = tls_poll(e.port, ctx)
            assert status == 200
            assert not tls_poll(e.port, ctx, session)[2], version
    finally:
        e.check_clean_exit()


def test_sighup_serves_a_renewed_certificate_to_the_next_connection(
        tmp_path):
    key, cert = make_cert(tmp_path)
    d = Otad(tmp_path, f"tls_cert = {cert}\ntls_key = {key}\n")
    d.start()
    try:
        old = cert.read_bytes()
        ctx = ssl.create_default_context(cafile=str(cert))
        kept = http.client.HTTPSConnection("127.0.0.1", d.port,
                                           context=ctx, timeout=10)
        kept.request("GET", "/health")
        r = kept.getresponse()
        assert r.status == 200 and r.read()
        first = tls_poll(d.port, ctx)[3]
        # a reload with the same files (any change of otad.conf) keeps
        # what is served
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(lambda: any("TLS certificate" in l and "unchanged" in l
                               for l in d.log), 10, "the reload")
        assert tls_poll(d.port, ctx)[3] == first
        # renewed in place (a new key too), as certbot does
        renewed = tmp_path / "renewed"
        renewed.mkdir()
        new_key, new_cert = make_cert(renewed)
        key.write_bytes(new_key.read_bytes())
        cert.write_bytes(new_cert.read_bytes())
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(lambda: any("TLS certificate" in l and "read again" in l
                               for l in d.log), 10, "the reload")
        ctx2 = ssl.create_default_context(cafile=str(new_cert))
        status, _, _, served = tls_poll(d.port, ctx2)
        assert status == 200 and served != first
        assert served == ssl.PEM_cert_to_DER_cert(new_cert.read_text())
        # the connection opened before goes on, on its handshake's keys
        kept.request("GET", "/health")
        r = kept.getresponse()
        assert r.status == 200 and r.read()
        kept.close()
        # a key that is not the certificate's is refused; the renewed
        # one is still served
        other = tmp_path / "other"
        other.mkdir()
        key.write_bytes(make_cert(other)[0].read_bytes())
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(lambda: any("keeping the TLS certificate served" in l
                               for l in d.log), 10, "the refusal")
        assert tls_poll(d.port, ctx2)[3] == served
        assert old != cert.read_bytes()
    finally:
        d.check_clean_exit()


def closed_by_otad(s):
    """Read until otad closes the connection (after an alert at most);
    a reset is a close too. Times out (an error) if it never does."""
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass


def test_tls_handshakes_that_stall_or_are_not_tls(tmp_path):
    """What reaches a TLS port and is not a device's handshake: plain
    HTTP, random bytes, a ClientHello cut short and never finished, a
    crowd of connections that say nothing. Each is closed (the stalled
    ones within connection_timeout), none slows a device, and otad
    exits cleanly after."""
    key, cert = make_cert(tmp_path)
    d = Otad(tmp_path, f"tls_cert = {cert}\ntls_key = {key}\n"
             "connection_timeout = 2\n")
    d.start()
    ctx = context(cert, ssl.TLSVersion.TLSv1_2)
    try:
        for junk in (b"GET /firmware/check HTTP/1.1\r\nHost: x\r\n\r\n",
                     os.urandom(3000), b"\x16\x03\x01\xff\xff" + b"\0" * 40):
            with socket.create_connection(("127.0.0.1", d.port),
                                          timeout=10) as s:
                s.sendall(junk)
                closed_by_otad(s)
        # a ClientHello's first bytes, then silence; and 100 that never
        # send a byte
        hello = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(*hello, server_hostname="localhost")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        first = hello[1].read()
        stalled = [socket.create_connection(("127.0.0.1", d.port),
                                            timeout=10) for _ in range(100)]
        stalled[0].sendall(first[:len(first) // 2])
        t0 = time.monotonic()
        # a device is served meanwhile, promptly
        status, _, _, _ = tls_poll(d.port, ctx)
        assert status == 200 and time.monotonic() - t0 < 1.5
        for s in stalled:
            closed_by_otad(s)
        assert time.monotonic() - t0 < 8
        for s in stalled:
            s.close()
        assert tls_poll(d.port, ctx)[0] == 200
    finally:
        d.check_clean_exit()
