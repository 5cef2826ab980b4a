"""Configuration: -n checks, bad files stop start-up naming file:line."""
import socket
import subprocess

from conftest import OTAD, Otad


def run_otad(conf, *args):
    return subprocess.run([str(OTAD), "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=20)


def test_check_mode_says_configuration_ok(tmp_path):
    d = Otad(tmp_path)
    p = run_otad(d.conf, "-n")
    assert p.returncode == 0
    assert p.stdout.strip() == "configuration OK"
    assert not d.state.exists(), "-n must not create the state directory"


def test_unknown_key_names_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("# comment\nlisten = 127.0.0.1:0\nlisten_port = 9\n")
    p = run_otad(conf, "-n")
    assert p.returncode != 0
    assert f"{conf}:3: unknown key 'listen_port'" in p.stderr


def test_value_out_of_bounds_is_refused(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("http_threads = 1000\n")
    p = run_otad(conf, "-n")
    assert p.returncode != 0
    assert f"{conf}:1:" in p.stderr and "between 0 and 64" in p.stderr


def test_junk_values_are_refused(tmp_path):
    for text, needle in [
        ("max_body_bytes = 12x\n", "whole number"),
        ("max_body_bytes = -5\n", "whole number"),
        ("listen = localhost\n", "host:port"),
        ("listen = 127.0.0.1:70000\n", "host:port"),
        ("log_level = loud\n", "info or debug"),
        ("state_dir\n", "expected 'key = value'"),
        ("listen = 127.0.0.1:1\nlisten = 127.0.0.1:2\n", "set twice"),
        ("tls_cert = /x.pem\n", "go together"),
    ]:
        conf = tmp_path / "bad.conf"
        conf.write_text(text)
        p = run_otad(conf, "-n")
        assert p.returncode != 0, text
        assert needle in p.stderr, (text, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_missing_config_file(tmp_path):
    p = run_otad(tmp_path / "nope.conf", "-n")
    assert p.returncode != 0
    assert "nope.conf: cannot open" in p.stderr


def test_sizes_take_suffixes(tmp_path):
    d = Otad(tmp_path, "max_body_bytes = 1M\nmax_header_bytes = 4k\n")
    assert run_otad(d.conf, "-n").returncode == 0


def test_port_in_use_fails_clearly(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    d = Otad(tmp_path)
    d.conf.write_text(d.conf.read_text().replace("127.0.0.1:0",
                                                 f"127.0.0.1:{port}"))
    p = run_otad(d.conf)
    s.close()
    assert p.returncode != 0
    assert "cannot listen" in p.stderr


def test_ready_line_and_clean_stop(otad):
    assert any("ready: listening on 127.0.0.1:" in l for l in otad.log)
    assert otad.get("/health").status == 200
