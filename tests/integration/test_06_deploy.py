"""Deployment: native TLS, make install with PREFIX and DESTDIR."""
import http.client
import ssl
import subprocess

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
