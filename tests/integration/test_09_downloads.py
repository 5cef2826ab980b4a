"""Downloads that survive bad links: Range, resume, If-Range, HEAD."""
import http.client

from conftest import WLED, sha256


def art(d):
    return f"/firmware/artifacts/{d.sha}"


def test_esp_https_ota_partial_download(published):
    """HEAD, then 64 KiB ranges, then an open-ended last range, as
    esp_https_ota does with partial download on; and a resume."""
    img = published.image
    total = len(img)
    c = http.client.HTTPConnection("127.0.0.1", published.port, timeout=20)
    r = published.request("HEAD", art(published), conn=c)
    assert r.status == 200 and r.body == b""
    assert int(r.headers["content-length"]) == total
    assert r.headers["accept-ranges"] == "bytes"
    got = bytearray()
    chunk = 65536
    while len(got) + chunk < total:
        r = published.request("GET", art(published), {
            "Range": f"bytes={len(got)}-{len(got) + chunk - 1}"}, conn=c)
        assert r.status == 206
        assert r.headers["content-range"] == \
            f"bytes {len(got)}-{len(got) + chunk - 1}/{total}"
        got += r.body
    r = published.request("GET", art(published),
                          {"Range": f"bytes={len(got)}-"}, conn=c)
    assert r.status == 206
    got += r.body
    assert bytes(got) == img
    # a resume from the middle asks for one byte past the end: clamped
    mid = 700001
    r = published.request("GET", art(published),
                          {"Range": f"bytes={mid}-{total}"}, conn=c)
    assert r.status == 206
    assert r.headers["content-range"] == f"bytes {mid}-{total - 1}/{total}"
    assert r.body == img[mid:]
    assert "x-md5" not in r.headers  # only with the whole file
    assert r.headers["x-firmware-sha256"] == sha256(img)
    c.close()


def test_whole_file_and_refusals(published):
    img = published.image
    total = len(img)
    etag = f'"{published.sha}"'
    r = published.get(art(published))
    assert r.status == 200 and r.body == img
    assert r.headers["etag"] == etag and r.headers["x-md5"]
    r = published.get(art(published), {"Range": f"bytes={total}-"})
    assert r.status == 416
    assert r.headers["content-range"] == f"bytes */{total}"
    assert "past the end" in r.json()["error"]
    # If-Range: ours gives the range, a stale one the whole file
    r = published.get(art(published), {"Range": "bytes=10-19",
                                       "If-Range": etag})
    assert r.status == 206 and r.body == img[10:20]
    r = published.get(art(published), {"Range": "bytes=10-19",
                                       "If-Range": '"stale"'})
    assert r.status == 200 and r.body == img
    # suffix, several ranges, junk
    r = published.get(art(published), {"Range": "bytes=-32"})
    assert r.status == 206 and r.body == img[-32:]
    for junk in ["bytes=0-1,5-6", "bytes=5-2", "bytes=a-b", "pages=1-2",
                 "bytes=-5-6", "bytes=" + "9" * 40 + "-"]:
        r = published.get(art(published), {"Range": junk})
        assert r.status in (200, 416), junk
        if r.status == 200:
            assert r.body == img


def test_unknown_and_unreleased_artifacts(published):
    assert published.get("/firmware/artifacts/" + "0" * 64).status == 404
    assert published.get("/firmware/artifacts/xyz").status == 404
    assert published.get("/firmware/artifacts/").status == 404
    assert published.get("/firmware/artifacts/../otad.db").status == 404
    sha = published.otactl("artifact", "add", str(WLED / "0.14.0.bin"),
                           "--version", "0.14.0").stdout.strip()
    r = published.get(f"/firmware/artifacts/{sha}")
    assert r.status == 404, "an artifact no release uses is not served"
    # upper-case hex is the same artifact
    r = published.request("HEAD", f"/firmware/artifacts/"
                          f"{published.sha.upper()}")
    assert r.status == 200
    assert published.request("POST", art(published), body=b"x").status \
        == 405


def test_downloads_move_the_attempt(published):
    published.get("/firmware/check?device=dl1&version=0.14.2")
    r = published.get(art(published), {"X-Device-ID": "dl1",
                                       "Range": "bytes=0-65535"})
    assert r.status == 206
    # a resumed download continues the same attempt
    published.get(art(published) + "?device=dl1",
                  {"Range": "bytes=65536-"})

    def states():
        return published.query("SELECT state FROM attempt WHERE"
                               " device='dl1'")
    published.wait_for(lambda: states() == [("downloading",)])
    assert published.get(art(published),
                         {"X-Device-ID": "bad id"}).status == 400


def test_range_on_the_check_path(published):
    img = published.image
    # the middle of a download this device never began: the whole image
    # (a resume of some other image must not continue into this one)
    r = published.get("/firmware/check?device=rc&version=0.14.2",
                      {"Range": "bytes=100-199"})
    assert r.status == 200 and r.body == img
    r = published.get("/firmware/check?device=rc0&version=0.14.2",
                      {"Range": "bytes=0-99"})
    assert r.status == 206 and r.body == img[:100]
    # its next piece goes on with the image it began
    r = published.get("/firmware/check?device=rc0&version=0.14.2",
                      {"Range": "bytes=100-199"})
    assert r.status == 206 and r.body == img[100:200]
    r = published.get("/firmware/check?device=rc&version=0.14.2",
                      {"Range": f"bytes={len(img) + 5}-"})
    assert r.status == 416
    r = published.get("/firmware/check?device=rc2&version=0.14.3",
                      {"Range": "bytes=0-10"})
    assert r.status == 304


def test_content_addressed_urls_may_be_cached(published):
    """An artifact's URL names its bytes for ever: any HTTP cache or CDN in
    front may keep it. What a check answers depends on the device and the
    hour, and is never cached."""
    r = published.get(art(published))
    assert r.status == 200 and sha256(r.body) == published.sha
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    r = published.get(art(published), {"Range": "bytes=0-9"})
    assert r.status == 206
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    r = published.get("/firmware/check?device=cache1&version=0.14.2")
    assert r.status == 200 and r.headers["cache-control"] == "no-store"
    r = published.get("/firmware/check?device=cache1&version=0.14.3")
    assert r.status == 304
