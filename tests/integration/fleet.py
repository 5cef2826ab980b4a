"""A fleet of simulated ESP32 devices with A/B slots, polling a real otad.

Each device runs the image in its active slot and polls /firmware/check
with what it runs. Offered an image, it writes the other slot and reboots
into it; a good image stays (the device checks in on the new version and
reports success), a bad one is rolled back by the bootloader (the device
reports rollback and runs its old slot again). Devices poll in parallel,
many per worker thread, over keep-alive connections. Between polls a
device may publish its health over MQTT, as an ESP32 fleet does.
"""
import http.client
import json
import random
import threading
import time


class Device:
    def __init__(self, ident, version, group=None, battery=None,
                 anti_rollback=False):
        self.id = ident
        self.slots = [version, None]  # A/B
        self.active = 0
        self.group = group
        self.battery = battery
        # ESP-IDF's CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK: a validated app
        # raises the eFuse to its secure version, sent as X-Secure-Version
        self.anti_rollback = anti_rollback
        self.secure_version = 0
        self.offered = []      # versions it was offered, in order
        self.deferred = []     # X-Update-Deferred reasons it got
        self.booted = time.monotonic() - 3600  # up for an hour

    @property
    def uptime(self):
        return int(time.monotonic() - self.booted)

    @property
    def version(self):
        return self.slots[self.active]


class Fleet:
    def __init__(self, port, devices, bad_versions=(), workers=16,
                 failure_rate=0.0):
        self.port = port
        self.devices = devices
        self.bad = set(bad_versions)
        # besides bad versions, each offer rolls back at this rate: drawn
        # from the device and version, so a run is the same every time
        self.failure_rate = failure_rate
        self.workers = workers
        self.errors = []
        self.acked = []  # (device, version, result) of reports answered 200
        self.secure_versions = {}  # version: its image's secure version

    def _poll(self, conn, d):
        headers = {"X-Device-ID": d.id, "X-Current-Version": d.version}
        if d.battery is not None:
            headers["X-Battery"] = str(d.battery)
        if d.anti_rollback:
            headers["X-Secure-Version"] = str(d.secure_version)
        conn.request("GET", "/firmware/check", headers=headers)
        r = conn.getresponse()
        body = r.read()
        if r.status == 304:
            reason = r.getheader("X-Update-Deferred")
            if reason:
                d.deferred.append(reason)
            return
        if r.status != 200:
            self.errors.append((d.id, r.status, body[:200]))
            return
        new = r.getheader("X-Firmware-Version")
        d.offered.append(new)
        # write the other slot, reboot into it
        other = 1 - d.active
        d.slots[other] = new
        if new in self.bad or random.Random(f"{d.id}:{new}").random() < \
                self.failure_rate:
            # the new app never confirms: the bootloader goes back
            result = {"device": d.id, "version": new, "result": "rollback",
                      "reason": "app did not confirm itself"}
        else:
            d.active = other
            d.booted = time.monotonic()  # rebooted into it
            if d.anti_rollback:
                d.secure_version = max(d.secure_version,
                                       self.secure_versions.get(new, 0))
            result = {"device": d.id, "version": new, "result": "success",
                      "uptime": 5, "reset_reason": 3}
        conn.request("POST", "/firmware/report", body=json.dumps(result),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            self.errors.append((d.id, "report", r.status))
        else:
            self.acked.append((d.id, new, result["result"]))

    def _worker(self, chunk):
        conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=30)
        try:
            for d in chunk:
                self._poll(conn, d)
        except Exception as e:  # reported by the test
            self.errors.append(("worker", repr(e)))
        finally:
            conn.close()

    def telemetry(self, broker, health, topic="devices/telemetry"):
        """Every device publishes its telemetry once: what health(device)
        says of it (free_heap, rssi, metrics, ...), with its id, the
        version it runs and its uptime, on a topic the devices share."""
        broker.pub_lines(topic, [json.dumps(
            {"device_id": d.id, "firmware": d.version, "uptime": d.uptime,
             **health(d)}) for d in self.devices])

    def round(self):
        """Every device polls once, in parallel."""
        n = self.workers
        chunks = [self.devices[i::n] for i in range(n)]
        threads = [threading.Thread(target=self._worker, args=(c,))
                   for c in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.errors
