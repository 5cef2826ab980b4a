"""The web console in a real browser (Debian's headless Chromium through
Selenium) against the real daemon and a simulated fleet: signing in, a
staged rollout advancing ring by ring, a bad build halting with its
reason, pause and resume behind confirmations, what a viewer is offered,
device-sent text that stays text, and a wrong token. Screenshots of the
fleet and rollout pages, at desktop and phone widths, go to the build
folder (screenshots/)."""
import http.client
import json
import re
import shutil

import pytest

import imagebuild
from conftest import BUILD, Otad
from fleet import Device, Fleet

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# the console's reads and writes go through the management API, whose
# registry work test_19 runs on PostgreSQL: the browser runs once
pytestmark = pytest.mark.sqlite_once

ADMIN = re.compile(r"management API on (\S+?):(\d+)")
SHOTS = BUILD / "screenshots"
FLEET = 40
CANARIES = 4
PLAN = "group=canary,soak=2s,min=3; 50%,soak=1s,min=10; 100%,soak=1s,min=1"
# the same, its second ring held until the test lets it go, so that the
# page (redrawn every 2 s) is sure to show it however slow the machine;
# its canaries compared with the rest of the fleet on free heap
HELD = PLAN.replace("50%,soak=1s", "50%,soak=1h").replace(
    "min=3;", "min=3,heap_drop<=20%;")
DESKTOP = (1280, 900)
PHONE = (390, 844)


def browser():
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    assert chromium and driver, "needs Debian's chromium and chromium-driver"
    o = Options()
    o.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=%d,%d" % DESKTOP):
        o.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=o)


class Console:
    """otad with its management API on loopback, operators of each role,
    a fleet polling it, and a browser on /console/."""

    def __init__(self, tmp_path, extra=""):
        self.d = Otad(tmp_path, "admin_listen = 127.0.0.1:0\n"
                      "rate_per_device = 0\n" + extra)
        self.tokens = {}
        for name, role in [("ada", "admin"), ("otto", "operator"),
                           ("vera", "viewer"), ("cid", "ci")]:
            self.tokens[role] = self.d.otactl("operator", "add", name,
                                              "--role", role,
                                              json_out=True)["token"]
        for version in ("2.0.0", "3.0.0"):
            img = tmp_path / f"app-{version}.bin"
            img.write_bytes(imagebuild.build(version=version, seglen=1024))
            sha = self.d.otactl("artifact", "add", str(img)).stdout.strip()
            self.d.otactl("release", "create", version, "--artifact", sha)
        self.d.start()
        m = next(ADMIN.search(l) for l in self.d.log if ADMIN.search(l))
        self.url = f"http://127.0.0.1:{m.group(2)}/console/"
        self.devices = [Device(f"dev-{i:03d}", "1.0.0") for i in range(FLEET)]
        self.fleet = Fleet(self.d.port, self.devices, bad_versions={"3.0.0"},
                           workers=4)
        assert self.fleet.round() == []
        for dev in self.devices[:CANARIES]:
            self.d.otactl("device", "set", dev.id, "--group", "canary")
        self.b = browser()

    def close(self):
        self.b.quit()
        self.d.check_clean_exit()

    def sign_in(self, role_or_token):
        token = self.tokens.get(role_or_token, role_or_token)
        self.b.get(self.url)
        self.b.execute_script("sessionStorage.clear()")
        self.b.get(self.url)
        self.wait(lambda b: b.find_element(By.ID, "token").is_displayed())
        self.b.find_element(By.ID, "token").send_keys(token)
        self.b.find_element(By.ID, "signin-button").click()

    def wait(self, until, timeout=20):
        return WebDriverWait(self.b, timeout, poll_frequency=0.2).until(until)

    def go(self, page):
        self.b.get(self.url + "#" + page)
        self.b.refresh()
        self.wait(lambda b: b.find_element(By.CSS_SELECTOR, "#view h1").text != "")

    def view(self):
        return self.b.find_element(By.ID, "view").text

    # the live pages redraw every 2 s: read them in one script each
    def card_state(self, rid):
        return self.b.execute_script(
            "const e = document.getElementById('rollout-' + arguments[0]);"
            "return e ? e.dataset.state : null", rid)

    def card_text(self, rid, selector=""):
        return self.b.execute_script(
            "const e = document.querySelector('#rollout-' + arguments[0] +"
            " ' ' + arguments[1]); return e ? e.innerText : null", rid,
            selector)

    def current_stage(self, rid):
        return self.b.execute_script(
            "const e = document.querySelector('#rollout-' + arguments[0] +"
            " ' .ring.current'); return e ? e.dataset.stage : null", rid)

    def api(self, role, method, path, body=None):
        port = int(self.url.split(":")[2].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, "/api/v1/" + path, body=json.dumps(body or {}),
                     headers={"Authorization": "Bearer " + self.tokens[role],
                              "Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())

    def act(self, rid, verb, expect):
        """Press an action, read its confirmation, confirm."""
        def press(b):
            try:
                b.find_element(By.CSS_SELECTOR, f"#rollout-{rid} "
                               f"button[data-action={verb}]").click()
                return True
            except StaleElementReferenceException:
                return False
        self.wait(press)
        self.wait(lambda b: b.find_element(By.ID, "confirm").is_displayed())
        text = self.b.find_element(By.ID, "confirm-text").text
        assert expect in text, text
        self.b.find_element(By.ID, "confirm-ok").click()
        self.wait(lambda b: b.find_element(By.ID, "status").text.startswith(
            f"Rollout {rid}"))
        return text

    def shoot(self, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            self.b.set_window_size(*size)
            self.b.refresh()
            self.wait(lambda b: b.find_element(By.CSS_SELECTOR, "#view h1").text != "")
            path = SHOTS / f"{name}-{label}.png"
            self.b.save_screenshot(str(path))
            assert path.stat().st_size > 10000
            if label == "phone":  # nothing wider than the phone
                width = self.b.execute_script(
                    "return document.documentElement.scrollWidth")
                assert width <= size[0], (name, width)
        self.b.set_window_size(*DESKTOP)

    def state(self, rid):
        return self.d.otactl("rollout", "status", str(rid),
                             json_out=True)[0]


@pytest.fixture
def console(tmp_path):
    c = Console(tmp_path)
    yield c
    c.close()


def test_a_rollout_seen_and_steered_from_the_console(console):
    c = console
    c.sign_in("operator")
    c.wait(lambda b: b.find_element(By.ID, "who").text == "otto (operator)")
    c.wait(lambda b: f"{FLEET}\ndevices" in
           b.find_element(By.ID, "fleet-numbers").text)
    assert "1.0.0" in c.view()

    rid = c.d.otactl("rollout", "create", "2.0.0", "--stages", HELD,
                     json_out=True)["id"]
    c.go("rollouts")
    assert c.card_state(rid) == "draft"
    text = c.act(rid, "start", "Start rollout")
    assert f"rollout {rid} (2.0.0)" in text
    c.wait(lambda b: c.card_state(rid) == "active")
    assert c.state(rid)["state"] == "active"
    # the canaries' comparison, with no telemetry yet to judge by
    c.wait(lambda b: "heap_drop<=20%: updated 0 (0 devices) against 0 not "
           "updated (0 devices): too few devices to judge" in
           (c.card_text(rid, ".ring[data-stage='0'] .compared") or ""))

    # the rings advance while the page watches (it refreshes itself)
    seen = set()
    for _ in range(80):
        assert c.fleet.round() == []
        seen.add(c.current_stage(rid))
        if "1" in seen and c.state(rid)["stage"] >= 1:
            break
    c.wait(lambda b: c.current_stage(rid) not in (None, "0"))
    ring0 = c.card_text(rid, ".ring[data-stage='0']")
    assert f"{CANARIES} succeeded" in ring0, ring0
    assert "success 100% (≥ 95%)" in ring0
    c.shoot("rollouts")

    # pause and resume, each behind its confirmation
    c.act(rid, "pause", "No device is offered it until it resumes")
    c.wait(lambda b: c.card_state(rid) == "paused")
    assert c.state(rid)["state"] == "paused"
    c.act(rid, "resume", "offered again")
    c.wait(lambda b: c.card_state(rid) == "active")
    assert c.state(rid)["state"] == "active"
    audit = c.d.otactl("audit", "--actor", "op:otto", json_out=True)
    assert any(f"rollout {rid} state active -> paused" in a["what"]
               for a in audit), audit
    # the second ring's soak shortened by hand: it may complete now
    c.d.hand_edit(f"UPDATE rollout_stage SET soak_s = 1 WHERE rollout = "
                  f"{rid} AND no = 1").check_returncode()

    # a bad build halts in the canary ring, its reason on the page
    for _ in range(80):
        assert c.fleet.round() == []
        if c.state(rid)["state"] == "completed":
            break
    bad = c.d.otactl("rollout", "create", "3.0.0", "--stages", PLAN,
                     "--on-halt", "revert", json_out=True)["id"]
    c.d.otactl("rollout", "start", str(bad))
    for _ in range(80):
        assert c.fleet.round() == []
        if c.state(bad)["state"] == "halted":
            break
    reason = c.state(bad)["reason"]
    assert "rollback rate" in reason
    # it reverts: the canaries rolled back by themselves, so none is on
    # 3.0.0 to take back to 2.0.0, and none is stranded
    c.d.wait_for(lambda: "revert" in c.state(bad), 10, "the revert")
    c.go("rollouts")
    c.wait(lambda b: c.card_state(bad) == "halted")
    assert c.card_text(bad, ".reason") == reason
    assert "bound crossed: rollback rate" in c.card_text(bad)
    c.wait(lambda b: "Reverted to 2.0.0" in (c.card_text(bad, ".revert")
                                            or ""))
    assert "0 back of 0 offered" in c.card_text(bad, ".revert")
    assert c.card_text(bad, "button[data-action=resume]") == \
        "Resume, keep reverted devices back"
    c.shoot("halted")
    # the fleet page lists the canaries that rolled back
    c.go("fleet")
    failures = c.b.find_element(By.ID, "failures").text
    assert "dev-000" in failures and "rollback" in failures
    c.shoot("fleet")
    # a device's page: its facts and attempts as a timeline
    c.go("device/dev-000")
    timeline = c.b.find_element(By.ID, "timeline").text
    assert "2.0.0 → 3.0.0: rollback" in timeline
    assert "1.0.0 → 2.0.0: success" in timeline
    # the device search narrows by version
    c.go("devices")
    form = c.b.find_element(By.ID, "device-search")
    form.find_element(By.NAME, "version").send_keys("2.0.0")
    form.find_element(By.CSS_SELECTOR, "button").click()
    c.wait(lambda b: "dev-000" in c.view() and "1.0.0" not in c.view())


def test_viewers_wrong_tokens_and_device_text(console):
    c = console
    # a wrong token is refused, and nothing is shown
    c.sign_in("0" * 40)
    c.wait(lambda b: "refused" in b.find_element(By.ID, "signin-error").text)
    assert not c.b.find_element(By.ID, "nav").is_displayed()
    # a ci token may not use the console
    c.sign_in("ci")
    c.wait(lambda b: "ci token" in b.find_element(By.ID, "signin-error").text)

    # a device says it runs markup, for a product named with markup
    evil_version = "<script>window.pwned=1</script>"
    evil_product = "<img/src=x/onerror=window.pwned=2>"
    conn = http.client.HTTPConnection("127.0.0.1", c.d.port, timeout=10)
    conn.request("GET", "/firmware/check", headers={
        "X-Device-ID": "evil-1", "X-Current-Version": evil_version,
        "X-Product": evil_product})
    r = conn.getresponse()
    r.read()
    assert r.status == 304
    c.d.wait_for(lambda: c.d.otactl("device", "show", "evil-1",
                                    check=False).returncode == 0)
    rid = c.d.otactl("rollout", "create", "2.0.0", "--stages", PLAN,
                     json_out=True)["id"]

    # a viewer sees everything and is offered no action
    c.sign_in("viewer")
    c.wait(lambda b: b.find_element(By.ID, "who").text == "vera (viewer)")
    c.wait(lambda b: evil_product in c.view())
    assert evil_version in c.view()
    c.go("device/evil-1")
    assert evil_version in c.view() and evil_product in c.view()
    c.go("rollouts")
    c.wait(lambda b: c.card_state(rid) == "draft")
    assert c.b.find_elements(By.CSS_SELECTOR, "button[data-action]") == []
    # the markup stayed text: nothing ran, no element was made of it
    assert c.b.execute_script("return window.pwned === undefined")
    c.go("fleet")
    assert c.b.execute_script("return window.pwned === undefined")
    assert c.b.find_elements(By.CSS_SELECTOR, "#view img, #view script") == []
    # the console's own headers forbid inline script outright
    conn = http.client.HTTPConnection("127.0.0.1",
                                      int(c.url.split(":")[2].split("/")[0]),
                                      timeout=10)
    conn.request("GET", "/console/")
    r = conn.getresponse()
    r.read()
    csp = r.getheader("Content-Security-Policy")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    # the audit page, filtered by operator
    c.go("audit")
    form = c.b.find_element(By.ID, "audit-filter")
    form.find_element(By.NAME, "actor").send_keys("otactl")
    form.find_element(By.CSS_SELECTOR, "button").click()
    c.wait(lambda b: "rollout create" in c.view() or "operator add" in
           c.view())


def test_two_people_start_a_rollout_from_the_console(tmp_path):
    c = Console(tmp_path, "rollout_approvals = 2\n")
    try:
        st, ro = c.api("operator", "POST", "rollouts",
                       {"version": "2.0.0", "stages": PLAN})
        assert st == 201
        rid = ro["id"]
        # its creator is offered the approval, and the server refuses it
        c.sign_in("operator")
        c.go("rollouts")
        assert c.card_text(rid, "button[data-action=start]") is None
        text = c.act(rid, "approve", "must not be the operator who created")
        assert f"rollout {rid} (2.0.0)" in text
        c.wait(lambda b: "other than its creator" in
               b.find_element(By.ID, "status").text)
        assert c.state(rid)["state"] == "draft"
        # a second person approves, and it starts
        c.sign_in("admin")
        c.go("rollouts")
        c.act(rid, "approve", "Approve and start")
        c.wait(lambda b: c.card_state(rid) == "active")
        assert c.state(rid)["state"] == "active"
    finally:
        c.close()
