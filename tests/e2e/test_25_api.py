"""Issue 5 end to end: the REST API under traffic, and config persistence
across a SIGKILL.

- 100 REST changes (services and real servers other than the streams',
  weights, local addresses) while numbered-line socat streams run through
  NAT and FULLNAT on 2 workers: every line is echoed, byte for byte; the
  time from the API's reply to every worker using the new snapshot
  (`adopt_us`) is measured.
- rvsd killed with SIGKILL while a loop changes its config through the API:
  the file it persists to parses and holds the last accepted config (or the
  one in flight at the kill), and rvsd started again serves exactly that.
"""
import json
import os
import random
import threading
import time
import unittest
from pathlib import Path

import labutil as lab
from labutil import figure as log
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)
from labutil import NAT_VIP, FNAT_VIP

REALS = [lab.real(1), lab.real(2)]


class ApiUnderTrafficTests(lab.RvsdTestCase):
    NAT = lab.mode_service("tcp", "nat", lab.ECHO_PORT, REALS)
    FNAT = lab.mode_service("tcp", "fullnat", lab.ECHO_PORT, REALS)
    CONFIG = lab.make_config([NAT, FNAT], workers=2, prefix="rvs-e2e-api")
    STREAMS = 2                 # per service
    CHANGES = 100

    def changes(self):
        """The 100 changes: (method, path, body, expected status) in order.
        None of them touches rs1/rs2 of the streams' services or their LIPs."""
        nat, fnat = lab.service_path(self.NAT), lab.service_path(self.FNAT)
        rs3 = lab.real_ip(3)
        out = []
        for k in range(self.CHANGES // 10):
            port = 8100 + k
            extra = lab.service("tcp", NAT_VIP, port, "rr", "nat", [lab.real(1, port=80)])
            edited = lab.service("tcp", NAT_VIP, port, "wrr", "nat",
                                 [lab.real(1, 2, port=80), lab.real(2, 1, port=80)])
            out += [
                ("POST", "/api/v1/services", extra, 201),
                ("PUT", lab.service_path(extra), edited, 200),
                ("POST", f"{nat}/reals", {"address": rs3, "weight": 1}, 201),
                ("PUT", f"{nat}/reals/{rs3}/{lab.ECHO_PORT}", {"address": rs3, "weight": 5}, 200),
                ("DELETE", f"{nat}/reals/{rs3}/{lab.ECHO_PORT}", None, 200),
                ("POST", f"{fnat}/reals", {"address": rs3, "weight": 2}, 201),
                ("DELETE", f"{fnat}/reals/{rs3}/{lab.ECHO_PORT}", None, 200),
                ("POST", f"{fnat}/laddrs", {"address": lab.LIPS[2]}, 201),
                ("DELETE", f"{fnat}/laddrs/{lab.LIPS[2]}", None, 200),
                ("DELETE", lab.service_path(extra), None, 200),
            ]
        return out

    def test_100_changes_under_traffic(self):
        streams = []
        for svc in (self.NAT, self.FNAT):
            for _ in range(self.STREAMS):
                s = lab.SocatStream(svc["vip"], svc["port"], lines=0, interval=0.02)
                self.addCleanup(s.cleanup)
                streams.append(s)
        for s in streams:
            s.wait_banner()
        before = lab.worker_counters()
        adopt, rtt, failures = [], [], []
        t_start = time.monotonic()
        for i, (method, path, body, want) in enumerate(self.changes()):
            t0 = time.monotonic()
            resp = lab.api(method, path, body)
            rtt.append(round((time.monotonic() - t0) * 1000, 1))
            data = resp.json_or_none() or {}
            if resp.status != want or data.get("adopted") is not True:
                failures.append(f"#{i} {method} {path}: HTTP {resp.status} {resp.text[:200]}")
                continue
            adopt.append(data["adopt_us"])
            if i % 10 == 1:     # the edited extra service serves traffic at once
                answers = lab.http_requests(f"http://{NAT_VIP}:{body['port']}/", 2)
                if len(answers) != 2 or set(answers) - {"rs1", "rs2"}:
                    failures.append(f"#{i}: new service {body['port']} answered {answers}")
        t_changes = time.monotonic() - t_start
        for s in streams:
            s.stop()
        results = []
        for s in streams:
            try:
                rc = s.wait(30)
            except Exception:
                s.kill()
                rc = "timeout"
            ok, what = s.check()
            results.append((ok, f"{s.vip}:{s.port} rc={rc}: {what}"))
        delta = lab.counters_delta(before, lab.settled_counters())
        log(f"{len(adopt)} changes in {t_changes:.1f} s under {len(streams)} streams")
        log(f"adopt_us (API reply -> every worker on the new snapshot): {lab.summary(adopt)}")
        log(f"API round trip incl. ip netns exec + curl, ms: {lab.summary(rtt)}")
        for ok, what in results:
            log(("ok: " if ok else "BROKEN: ") + what)
        log("counters: " + lab.pick(delta, "snapshots_adopted", "redirect_out", "drop_no_connection",
                                    "drop_redirect_ring_full", "drop_no_local_port"))
        self.assertEqual(failures, [], "changes refused or not adopted")
        self.assertEqual(len(adopt), self.CHANGES)
        self.assertEqual([w for ok, w in results if not ok], [], "established streams lost data")
        for s in streams:
            self.assertGreater(s.sent.read_bytes().count(b"\n"), 50, "harness: streams too short")
        self.assertEqual(lab.api("GET", "/api/v1/services").json,
                         lab.api("GET", "/api/v1/config").json["services"])
        services = lab.api("GET", "/api/v1/services").json
        self.assertEqual([(s["vip"], s["port"]) for s in services],
                         [(NAT_VIP, lab.ECHO_PORT), (FNAT_VIP, lab.ECHO_PORT)],
                         "the config after 100 changes is not the original one")


# ---------------------------------------------------------------------------
# SIGKILL while changing the config
# ---------------------------------------------------------------------------

def norm_services(services: list[dict]) -> list[tuple]:
    """What must survive a restart, independent of how defaults are written."""
    out = []
    for s in services:
        reals = tuple(sorted((r["address"], r.get("port") or s["port"], r.get("weight", 1))
                             for r in s.get("reals", [])))
        out.append((s["protocol"], s["vip"], s["port"], s.get("scheduler", "wlc"),
                    s.get("forward", "dr"), reals))
    return out


class ChangeLoop(threading.Thread):
    """Changes the config through the API as fast as it can, keeping the
    expected service list: after the last accepted change (`accepted`) and
    with the change that got no answer (`in_flight`)."""

    def __init__(self, services: list[dict], seed: int):
        super().__init__(daemon=True)
        self.accepted = [dict(s) for s in services]
        self.in_flight = None
        self.count = 0
        self.errors = []
        self.rng = random.Random(seed)
        self.next_port = 20000 + seed * 1000

    def step(self) -> tuple[str, str, dict | None, list[dict]]:
        """The next change and the service list after it."""
        svcs = [dict(s) for s in self.accepted]
        extras = [s for s in svcs if s["port"] >= 20000]
        roll = self.rng.random()
        if extras and roll < 0.3:
            victim = self.rng.choice(extras)
            return "DELETE", lab.service_path(victim), None, [s for s in svcs if s is not victim]
        if extras and roll < 0.6:
            victim = self.rng.choice(extras)
            edited = dict(victim, reals=[lab.real(1, self.rng.randint(1, 9), port=80),
                                         lab.real(2, self.rng.randint(1, 9), port=80)])
            return "PUT", lab.service_path(victim), edited, [edited if s is victim else s for s in svcs]
        self.next_port += 1
        new = lab.service("tcp", NAT_VIP, self.next_port, "rr", "nat",
                          [lab.real(1, 1, port=80), lab.real(2, 1, port=80)])
        return "POST", "/api/v1/services", new, svcs + [new]

    def run(self):
        while True:
            method, path, body, after = self.step()
            self.in_flight = after
            try:
                resp = lab.api(method, path, body, timeout=5)
            except RuntimeError:            # connection refused/reset: rvsd is gone
                return
            if 200 <= resp.status < 300:
                self.accepted = after
                self.in_flight = None
                self.count += 1
            elif resp.status == 0:
                return
            else:
                self.errors.append(f"{method} {path}: HTTP {resp.status} {resp.text[:200]}")
                self.in_flight = None
                if len(self.errors) > 5:
                    return


class KillTests(unittest.TestCase):
    """SIGKILL rvsd while a loop changes its config through the API, three
    times, restarting it from its own config file each time."""

    ROUNDS = 3

    def setUp(self):
        self.dir = lab.tempfile.TemporaryDirectory(prefix="rvs-kill-")
        self.addCleanup(self.dir.cleanup)
        self.path = os.path.join(self.dir.name, "rvsd.json")
        self.rvsd = None

    def tearDown(self):
        if self.rvsd is not None:
            self.rvsd.cleanup()

    def start(self, config: dict | None) -> lab.Rvsd:
        self.rvsd = lab.Rvsd(config, config_path=self.path)
        self.rvsd.start()
        return self.rvsd

    def test_sigkill_during_changes(self):
        base = [lab.mode_service("tcp", "nat", 80, REALS)]
        d = self.start(lab.make_config(base, workers=1, prefix="rvs-e2e-kill"))
        expected = base
        for rnd in range(self.ROUNDS):
            loop = ChangeLoop(expected, seed=rnd)
            loop.start()
            # Let a random number of changes through, then kill mid-stream.
            want = random.randint(15, 40)
            lab.wait_for(lambda: loop.count >= want or not loop.is_alive(), 60, interval=0.005,
                         what=f"{want} accepted changes")
            time.sleep(random.uniform(0, 0.02))
            d.kill()
            loop.join(15)
            self.assertFalse(loop.is_alive(), "change loop did not notice rvsd died")
            self.assertEqual(loop.errors, [], "changes refused before the kill")
            text = Path(self.path).read_text()
            try:
                on_disk = json.loads(text)
            except ValueError as e:
                self.fail(f"round {rnd}: the config file does not parse after SIGKILL: {e}\n{text[-500:]}")
            got = norm_services(on_disk["services"])
            last = norm_services(loop.accepted)
            flight = norm_services(loop.in_flight) if loop.in_flight is not None else None
            which = "last accepted" if got == last else "in flight" if got == flight else "NEITHER"
            log(f"round {rnd}: killed after {loop.count} accepted changes; file has "
                f"{len(got)} services = the {which} config")
            self.assertTrue(got == last or got == flight,
                            f"{d.log_text(30)}\nround {rnd}: the file is neither the last accepted config nor the one in "
                            f"flight:\nfile: {got}\nlast accepted: {last}\nin flight: {flight}")
            # Whole: every field of the file is still a valid config (rvsd --check).
            cp = lab.nsx(lab.NS_DIR, [str(lab.RVSD), "--config", self.path, "--check"], check=False)
            self.assertEqual(cp.returncode, 0, f"rvsd --check rejects the file: {cp.stderr}")
            # Restart from the file: it serves exactly that.
            d.cleanup()
            d = self.start(None)
            served = norm_services(lab.api("GET", "/api/v1/services").json)
            self.assertEqual(served, got, "rvsd restarted with a different config than its file")
            extra = [s for s in on_disk["services"] if s["port"] >= 20000]
            if extra:
                svc = extra[-1]
                answers = lab.http_requests(f"http://{svc['vip']}:{svc['port']}/", 2)
                self.assertEqual(sorted(answers), ["rs1", "rs2"],
                                 f"restored service {svc['port']} does not forward")
            expected = on_disk["services"]


if __name__ == "__main__":
    unittest.main()
