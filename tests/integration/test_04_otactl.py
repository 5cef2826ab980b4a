"""otactl: clear one-line errors, nothing half-written, atomic ingest."""
import os
import signal
import subprocess
import time

from conftest import FIRMWARE, OTACTL, WLED, Otad, md5, sha256


def count(d, table):
    return d.query(f"SELECT count(*) FROM {table}")[0][0]


def store_files(d):
    return sorted(os.listdir(d.state / "artifacts"))


def one_line_error(p, needle):
    assert p.returncode != 0
    assert p.stdout == ""
    lines = [l for l in p.stderr.splitlines() if "migrated" not in l]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("otactl: ")
    assert needle in lines[0], lines[0]


def test_artifact_add_records_hashes(tmp_path):
    d = Otad(tmp_path)
    img = (WLED / "0.14.2.bin").read_bytes()
    sha = d.otactl("artifact", "add", str(WLED / "0.14.2.bin"),
                   "--version", "0.14.2").stdout.strip()
    assert sha == sha256(img)
    a = d.otactl("artifact", "show", sha[:10], json_out=True)
    assert (a["sha256"], a["md5"], a["size"], a["version"], a["chip"]) == \
        (sha, md5(img), len(img), "0.14.2", "esp32")
    assert (d.state / "artifacts" / sha).read_bytes() == img
    c3 = d.otactl("artifact", "add", str(FIRMWARE / "wled-esp32c3" /
                                         "0.14.1.bin"), "--version",
                  "0.14.1", "--json", json_out=False)
    assert '"chip": "esp32c3"' in c3.stdout
    listed = d.otactl("artifact", "list")
    assert sha in listed.stdout and "SHA256" in listed.stdout


def test_adding_the_same_file_twice_is_idempotent(tmp_path):
    d = Otad(tmp_path)
    f = str(WLED / "0.14.2.bin")
    a = d.otactl("artifact", "add", f, "--version", "0.14.2").stdout
    b = d.otactl("artifact", "add", f, "--version", "0.14.2").stdout
    assert a == b
    one_line_error(d.otactl("artifact", "add", f, "--version", "9.9.9",
                            check=False), "already in the store as version")
    assert count(d, "artifact") == 1


def test_bad_artifacts_are_refused_and_leave_nothing(tmp_path):
    d = Otad(tmp_path)
    d.otactl("status")  # create the database
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello\n" * 100)
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(b"\xe9\x05")
    bad_chip = tmp_path / "chip.bin"
    hdr = bytearray((WLED / "0.14.2.bin").read_bytes()[:4096])
    hdr[12:14] = b"\x42\x00"
    bad_chip.write_bytes(bytes(hdr))
    too_many = tmp_path / "segs.bin"
    hdr2 = bytearray((WLED / "0.14.2.bin").read_bytes()[:4096])
    hdr2[1] = 17
    too_many.write_bytes(bytes(hdr2))
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:
        f.write((WLED / "0.14.2.bin").read_bytes()[:64])
        f.truncate(17 * 1024 * 1024)
    for path, needle in [
        (tmp_path / "missing.bin", "cannot open"),
        (not_image, "not an ESP32 app image"),
        (truncated, "too short"),
        (bad_chip, "unknown chip id 0x0042"),
        (too_many, "segment count 17"),
        (huge, "larger than 16 MiB"),
        (tmp_path, "read error"),
    ]:
        one_line_error(d.otactl("artifact", "add", str(path), "--version",
                                "1.0.0", check=False), needle)
    assert count(d, "artifact") == 0
    assert store_files(d) == []


def test_bad_arguments(tmp_path):
    d = Otad(tmp_path)
    f = str(WLED / "0.14.2.bin")
    one_line_error(d.otactl("artifact", "add", f, check=False),
                   "give --version")
    one_line_error(d.otactl("artifact", "add", f, "--version", "1 0",
                            check=False), "invalid version")
    one_line_error(d.otactl("artifact", "add", f, "--version", "1.0",
                            "--product", "a/b c", check=False),
                   "invalid --product")
    one_line_error(d.otactl("artifact", "add", f, "--version", check=False),
                   "needs a value")
    one_line_error(d.otactl("artifact", "add", f, "--version", "1",
                            "--colour", "red", check=False), "unknown option")
    p = d.otactl("frobnicate", check=False)
    assert p.returncode == 2 and "usage:" in p.stderr


def test_release_errors(tmp_path):
    d = Otad(tmp_path)
    sha = d.otactl("artifact", "add", str(WLED / "0.14.2.bin"),
                   "--version", "0.14.2").stdout.strip()
    one_line_error(d.otactl("release", "create", "0.14.2", "--artifact",
                            "ffffffff", check=False), "no artifact")
    one_line_error(d.otactl("release", "create", "0.14.2", "--artifact",
                            "zz", check=False), "not a SHA-256")
    one_line_error(d.otactl("release", "create", "0.14.2", check=False),
                   "needs --artifact")
    one_line_error(d.otactl("release", "create", "0.14.9", "--artifact", sha,
                            check=False), "is version 0.14.2, not 0.14.9")
    d.otactl("release", "create", "0.14.2", "--artifact", sha)
    one_line_error(d.otactl("release", "create", "0.14.2", "--artifact", sha,
                            check=False), "already exists")
    one_line_error(d.otactl("release", "publish", "7.7.7", check=False),
                   "no release 7.7.7")
    d.otactl("release", "publish", "0.14.2")
    one_line_error(d.otactl("release", "publish", "0.14.2", check=False),
                   "already being offered")
    assert count(d, "release") == 1 and count(d, "rollout") == 1
    rel = d.otactl("release", "list", json_out=True)
    assert rel[0]["rollout_state"] == "active"


def test_killed_ingest_leaves_no_artifact(tmp_path):
    """otactl killed half-way through a file: nothing visible, and the
    daemon removes the leftover at its next start."""
    d = Otad(tmp_path)
    d.otactl("status")
    fifo = tmp_path / "pipe.bin"
    os.mkfifo(fifo)
    p = subprocess.Popen([str(OTACTL), "artifact", "add", str(fifo),
                          "--version", "1.0.0"], env=d.env,
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    with open(fifo, "wb") as w:
        w.write((WLED / "0.14.2.bin").read_bytes()[:300000])
        w.flush()
        deadline = time.monotonic() + 5
        while not any(f.startswith(".ingest-") for f in store_files(d)):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait(5)
    assert count(d, "artifact") == 0
    assert d.otactl("artifact", "list", json_out=True) == []
    assert all(f.startswith(".ingest-") for f in store_files(d))
    d.start()
    try:
        assert store_files(d) == []
        assert any("removed unfinished ingest" in l for l in d.log)
    finally:
        d.check_clean_exit()


def test_device_and_status_views(published):
    published.get("/firmware/check?device=v1&version=0.14.2")
    published.get("/firmware/check?device=v2&version=0.14.3")
    published.wait_for(lambda: len(published.otactl(
        "device", "list", json_out=True)) == 2)
    table = published.otactl("device", "list").stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "VERSION", "PRODUCT"]
    # the whole image went out: the attempt is under way
    assert "v1" in table and "downloading" in table
    st = published.otactl("status", json_out=True)
    assert st["devices"] == 2
    assert {v["version"]: v["devices"] for v in st["versions"]} == \
        {"0.14.2": 1, "0.14.3": 1}
    assert st["offered"][0]["version"] == "0.14.3"
    assert "devices 2" in published.otactl("status").stdout
    assert published.otactl("device", "list", "--offline",
                            json_out=True) == []
    one_line_error(published.otactl("device", "show", "ghost", check=False),
                   "no device 'ghost'")
