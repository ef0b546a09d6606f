"""High availability end to end: health checks, VRRP failover between two
rvsd, interoperation with Debian's keepalived, connection sync, and rvsd run
from keepalived.conf — in the two-director lab (deploy/ha-topology.sh,
namespaces rvsha-*; helpers in halab.py).

Run as root after `cargo build --release`:
    python3 -m unittest tests/e2e/test_40_ha.py -v
(or from tests/e2e: python3 -m unittest test_40_ha -v)

Every measured figure (detection times per checker, failover outages) is
printed to stderr. rvsd's log, /api/v1/ha and its non-zero dataplane counters
are printed for every failing test.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import halab as lab
from halab import (DR_VIP, FNAT_VIP, GATEWAY, LIP, NAT_VIP, NS_CLIENT, SORRY_IP,
                   DIRECTORS, real_ip)

KEEPALIVED = "keepalived"
FIGURES: list[str] = []


def figure(line: str) -> None:
    FIGURES.append(line)
    lab.log(f"\n  {line}")


def setUpModule():
    global KEEPALIVED
    if os.geteuid() != 0:
        raise unittest.SkipTest("the HA e2e tests need root (network namespaces, raw sockets)")
    for tool in ("tcpdump", "socat", "curl"):
        if not lab.shutil.which(tool):
            raise unittest.SkipTest(f"{tool} is missing (deploy/setup.sh)")
    try:
        KEEPALIVED = lab.ensure_keepalived()
    except (OSError, subprocess.SubprocessError) as e:
        KEEPALIVED = None
        lab.log(f"keepalived could not be installed ({e}): the interop tests will be skipped")
    lab.setup()


def tearDownModule():
    lab.teardown()
    if FIGURES:
        print("\n==== HA figures ====\n" + "\n".join(FIGURES) + "\n", file=sys.stderr, flush=True)


class HaCase(unittest.TestCase):
    """Starts directors on demand; stops them (and whatever else registered
    for cleanup) afterwards; prints their diagnostics when a test fails."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rvsha-e2e-")
        self.directors: list[lab.Director] = []
        self.others = []          # objects with log_text() shown on failure
        lab.flush_neighbours()

    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            lab.log(f"\n[{self.id()} failed]")
            for d in getattr(self, "directors", []):
                lab.log(d.log_text(80))
            for o in getattr(self, "others", []):
                lab.log(f"--- {type(o).__name__} ---\n{o.log_text()}")
        if hasattr(self, "tmp") and os.environ.get("RVS_E2E_KEEP") != "1":
            lab.shutil.rmtree(self.tmp, ignore_errors=True)
        return out

    def director(self, n: int, config: dict | None = None, keepalived: str | None = None,
                 start: bool = True) -> lab.Director:
        d = lab.Director(n, config, tmp=self.tmp, keepalived=keepalived)
        self.directors.append(d)
        # A cleanup, not tearDown: it also runs when setUp fails, so a director
        # started there never outlives its test.
        self.addCleanup(d.stop)
        return d.start() if start else d

    def diag(self, *ds: lab.Director) -> str:
        return "\n".join(d.diagnostics() for d in (ds or self.directors))

    def arp_watch(self) -> lab.ArpWatch:
        w = lab.ArpWatch().start()
        self.addCleanup(w.stop)
        return w

    def prober(self, **kw) -> lab.Prober:
        p = lab.Prober(**kw)
        self.addCleanup(lambda: p.proc.poll() is None and p.proc.kill())
        return p


# ---------------------------------------------------------------------------
# 1. Health checks
# ---------------------------------------------------------------------------

DELAY_LOOP = 0.5
RETRY = 1
DELAY_BEFORE_RETRY = 0.2
CONNECT_TIMEOUT = 0.5
MISC_TIMEOUT = 1.5
# Poll of the API (ip netns exec + curl every 50 ms) and snapshot publication.
OBSERVE_MARGIN = 0.25


def check(kind: str, **fields) -> dict:
    return {"type": kind, "connect_timeout": CONNECT_TIMEOUT, "retry": RETRY,
            "delay_before_retry": DELAY_BEFORE_RETRY, **fields}


HTTP = check("http_get", urls=[{"path": "/", "status_code": [200]}])
TCP = check("tcp_check")
UDP = check("udp_check", payload="70696e67", require_reply=True, reply="7273")   # "ping" -> "rs.."
DNS = check("dns_check", query_type="A", name="www.lab")


def misc(n: int) -> dict:
    return check("misc_check", path=f"{lab.MISC_CHECK} {real_ip(n)} 8080", timeout=MISC_TIMEOUT)


def attempt_limit(c: dict) -> float:
    """One attempt's limit T (deploy/docs/health.md)."""
    return {"http_get": 2 * CONNECT_TIMEOUT, "misc_check": MISC_TIMEOUT}.get(c["type"], CONNECT_TIMEOUT)


def detection_bound(c: dict) -> float:
    """delay_loop × (retry + 1) plus the timeouts."""
    return DELAY_LOOP * (RETRY + 1) + (RETRY + 1) * attempt_limit(c) + RETRY * DELAY_BEFORE_RETRY


def checked_service(protocol, vip, port, checks_of, *, real_port=None, inhibit=False, **health):
    reals = []
    for n in (1, 2):
        r = lab.real(n, checks=[checks_of(n)] if callable(checks_of) else [checks_of])
        if real_port:
            r["port"] = real_port
        if inhibit:
            r["health"]["inhibit_on_failure"] = True
        reals.append(r)
    return lab.service(protocol, vip, port, "nat", reals,
                       health={"delay_loop": DELAY_LOOP, "quorum": 1, "hysteresis": 0, **health})


HEALTH_SERVICES = [
    checked_service("tcp", NAT_VIP, 80, HTTP),
    # Same reals and check, quorum 2: losing one real switches to the sorry server.
    checked_service("tcp", NAT_VIP, 81, HTTP, real_port=80, quorum=2,
                    sorry_server={"address": SORRY_IP, "port": 80}),
    checked_service("tcp", NAT_VIP, 9000, TCP, inhibit=True),
    checked_service("udp", NAT_VIP, 9001, UDP),
    checked_service("udp", NAT_VIP, 53, DNS),
    checked_service("tcp", NAT_VIP, 8080, misc),
]


class HealthCheckTests(HaCase):
    """One director (VRRP master alone) with a service per checker; a
    stopped service leaves the pool within the bound, gets no new
    connections and comes back."""

    def setUp(self):
        super().setUp()
        cfg = lab.director_config(1, services=HEALTH_SERVICES, vrrp=lab.vrrp_config(150, 0.1, 3),
                                  sync=False)
        self.d = self.director(1, cfg)
        self.d.wait_vrrp("MASTER", 5)
        self.wait_all_up()

    def wait_all_up(self):
        def all_up():
            reals = self.d.health_reals()
            return len(reals) == 12 and all(r.get("state") == "up" and r.get("rounds", 0) >= 1
                                            for r in reals)
        try:
            lab.wait_for(all_up, 10, interval=0.1, what="every checked real up")
        except TimeoutError:
            self.fail("not every real server came up:\n" + self.diag())

    def report(self, vip, port, n, protocol="tcp"):
        r = self.d.real_report(vip, port, n, protocol)
        self.assertIsNotNone(r, f"no health report for rs{n} of {protocol} {vip}:{port}: "
                                f"{self.d.health_reals()}")
        return r

    def wait_state(self, vip, port, n, state, protocol, timeout):
        t = lab.wait_for(lambda: self.d.real_report(vip, port, n, protocol).get("state") == state
                         and time.monotonic(), timeout, interval=0.03,
                         what=f"rs{n} of {protocol} {vip}:{port} {state}")
        return t

    def spread(self, protocol, port, count=8):
        if protocol == "udp" and port == 53:
            answers = lab.udp_spread(NAT_VIP, port, count, mode="dns")
            return lab.tally({"10.1.0.11": "rs1", "10.1.0.12": "rs2"}.get(a, a) for a in answers)
        if protocol == "udp":
            return lab.tally(lab.udp_spread(NAT_VIP, port, count))
        if port == 9000:
            out = lab.sh(NS_CLIENT, f"for i in $(seq {count}); do b=$(socat -t1 -T2 - "
                                    f"TCP:{NAT_VIP}:9000,connect-timeout=1 </dev/null 2>/dev/null "
                                    f"| head -n1); echo ${{b:-ERR}}; done", timeout=60).stdout
            return lab.tally(out.split())
        return lab.tally(lab.http_spread(f"http://{NAT_VIP}:{port}/", count))

    def fail_and_recover(self, name: str, daemon: str, protocol: str, port: int, c: dict,
                         inhibit: bool = False, also=None):
        before = self.spread(protocol, port)
        self.assertEqual(before, {"rs1": 4, "rs2": 4}, f"{name}: before the failure")

        # Stop right after a successful round of rs1 (the documented worst case
        # starts there; this keeps measurements comparable).
        rounds = self.report(NAT_VIP, port, 1, protocol)["rounds"]
        lab.wait_for(lambda: self.d.real_report(NAT_VIP, port, 1, protocol)["rounds"] > rounds,
                     5, interval=0.02, what="a new round")
        t_stop = lab.stop_service(1, daemon)
        # Started again even if an assertion below fails (start-service restarts
        # a running daemon, so the normal path's own start is harmless).
        self.addCleanup(lab.start_service, 1, daemon)
        try:
            t_down = self.wait_state(NAT_VIP, port, 1, "down", protocol, detection_bound(c) + 5)
        except TimeoutError:
            self.fail(f"{name}: rs1 never went down\n" + self.diag())
        took = t_down - t_stop
        bound = detection_bound(c)
        figure(f"{name}: stopped service detected in {took * 1000:.0f} ms "
               f"(bound delay_loop×(retry+1)+timeouts = {bound * 1000:.0f} ms)")
        rep = self.report(NAT_VIP, port, 1, protocol)
        if inhibit:
            self.assertEqual(rep.get("weight"), 0, f"{name}: inhibit_on_failure keeps it at weight 0: {rep}")
            self.assertTrue(rep.get("in_pool"), f"{name}: inhibit_on_failure keeps it in the pool: {rep}")
        else:
            self.assertFalse(rep.get("in_pool"), f"{name}: a failed real leaves the pool: {rep}")
        # The operator's config is unchanged.
        svc = self.d.get(f"/api/v1/services/{protocol}/{NAT_VIP}/{port}")
        self.assertEqual(sorted((r["address"], r["weight"]) for r in svc["reals"]),
                         [(real_ip(1), 1), (real_ip(2), 1)], f"{name}: GET /services changed: {svc}")

        during = self.spread(protocol, port)
        if also:
            also("down")
        self.assertLessEqual(took, bound + OBSERVE_MARGIN, f"{name}: detection too slow")
        self.assertEqual(during, {"rs2": 8}, f"{name}: new connections while rs1 is down\n"
                                             + self.diag())

        t_start = lab.start_service(1, daemon)
        try:
            t_up = self.wait_state(NAT_VIP, port, 1, "up", protocol, 10)
        except TimeoutError:
            self.fail(f"{name}: rs1 never came back\n" + self.diag())
        figure(f"{name}: recovered service back in {(t_up - t_start) * 1000:.0f} ms")
        self.assertLessEqual(t_up - t_start, DELAY_LOOP + attempt_limit(c) + 1.0)
        after = self.spread(protocol, port)
        if also:
            also("up")
        self.assertEqual(after, {"rs1": 4, "rs2": 4}, f"{name}: after recovery")

    def test_http_get_and_quorum_sorry_server(self):
        def quorum(phase):
            svc = next(s for s in self.d.health_services() if s["service"]["port"] == 81)
            answers = self.spread("tcp", 81, 6)
            if phase == "down":
                self.assertEqual(svc.get("quorum_state"), "lost", svc)
                self.assertTrue(svc.get("sorry_server_active"), svc)
                self.assertEqual(answers, {"sorry": 6}, "quorum lost: the sorry server serves")
                figure("HTTP_GET quorum 2 with one real down: quorum lost, sorry server serves "
                       f"({answers})")
            else:
                self.assertEqual(svc.get("quorum_state"), "up", svc)
                self.assertFalse(svc.get("sorry_server_active"), svc)
                self.assertEqual(answers, {"rs1": 3, "rs2": 3}, "quorum regained")
        self.fail_and_recover("HTTP_GET", "http80", "tcp", 80, HTTP, also=quorum)

    def test_http_get_hung_server(self):
        """A server that accepts but never answers (SIGSTOPped): the check
        fails by its timeouts, within the bound."""
        pid = int((lab.STATE_DIR / f"{lab.real_ns(1)}.http80.pid").read_text())
        self.addCleanup(os.kill, pid, signal.SIGCONT)
        rounds = self.report(NAT_VIP, 80, 1)["rounds"]
        lab.wait_for(lambda: self.d.real_report(NAT_VIP, 80, 1)["rounds"] > rounds, 5, interval=0.02,
                     what="a new round")
        t_stop = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            t_down = self.wait_state(NAT_VIP, 80, 1, "down", "tcp", detection_bound(HTTP) + 5)
        except TimeoutError:
            self.fail("a hung HTTP server was never marked down\n" + self.diag())
        took, bound = t_down - t_stop, detection_bound(HTTP)
        figure(f"HTTP_GET, server hung (SIGSTOP): detected in {took * 1000:.0f} ms (bound {bound * 1000:.0f} ms)")
        self.assertLessEqual(took, bound + OBSERVE_MARGIN)
        self.assertGreaterEqual(took, (RETRY + 1) * CONNECT_TIMEOUT, "faster than its timeouts allow?")
        self.assertEqual(self.spread("tcp", 80, 4), {"rs2": 4})
        os.kill(pid, signal.SIGCONT)
        t_cont = time.monotonic()
        self.wait_state(NAT_VIP, 80, 1, "up", "tcp", 10)
        figure(f"HTTP_GET, server resumed: back in {(time.monotonic() - t_cont) * 1000:.0f} ms")
        self.assertEqual(self.spread("tcp", 80), {"rs1": 4, "rs2": 4})

    def test_tcp_check_inhibit_on_failure(self):
        self.fail_and_recover("TCP_CHECK (inhibit_on_failure)", "echo", "tcp", 9000, TCP, inhibit=True)

    def test_udp_check(self):
        self.fail_and_recover("UDP_CHECK", "udp", "udp", 9001, UDP)

    def test_dns_check(self):
        self.fail_and_recover("DNS_CHECK", "dns", "udp", 53, DNS)

    def test_misc_check(self):
        self.fail_and_recover("MISC_CHECK", "http8080", "tcp", 8080, misc(1))

    def stop_services(self, *which: tuple[int, str]):
        """Stops daemons (real n, name); they are started again at cleanup
        (or by the returned function, once)."""
        stopped = list(which)

        def restart():
            while stopped:
                lab.start_service(*stopped.pop())
        self.addCleanup(restart)
        for n, name in which:
            lab.stop_service(n, name)
        return restart

    def test_rvsadm_lists_the_effective_table(self):
        """`rvsadm -Ln` in the director's namespace shows what the dataplane
        uses, as ipvsadm under Keepalived: a failed real at weight 0 with
        inhibit_on_failure, gone without it; with every real down, the sorry
        server is listed as the service's real server and serves."""
        rs = lambda n, port: f"{real_ip(n)}:{port}"  # noqa: E731
        both = lambda port: {rs(1, port): ("Masq", 1), rs(2, port): ("Masq", 1)}  # noqa: E731
        for port in (80, 9000):
            self.assertEqual(self.d.listed_reals("tcp", NAT_VIP, port), both(port))
        self.assertEqual(self.d.listed_reals("tcp", NAT_VIP, 81), both(80))
        configured = self.d.get("/api/v1/config")

        restart = self.stop_services((1, "echo"), (1, "http80"), (2, "http80"))
        self.wait_state(NAT_VIP, 9000, 1, "down", "tcp", detection_bound(TCP) + 5)
        for n in (1, 2):
            self.wait_state(NAT_VIP, 80, n, "down", "tcp", detection_bound(HTTP) + 5)
            self.wait_state(NAT_VIP, 81, n, "down", "tcp", detection_bound(HTTP) + 5)
        inhibited = self.d.listed_reals("tcp", NAT_VIP, 9000)
        self.assertEqual(inhibited, {rs(1, 9000): ("Masq", 0), rs(2, 9000): ("Masq", 1)},
                         "inhibit_on_failure: listed at weight 0\n" + self.d.rvsadm("-Ln"))
        self.assertEqual(self.d.listed_reals("tcp", NAT_VIP, 80), {},
                         "failed reals are not listed\n" + self.d.rvsadm("-Ln"))
        sorry = self.d.listed_reals("tcp", NAT_VIP, 81)
        self.assertEqual(sorry, {f"{SORRY_IP}:80": ("Masq", 1)},
                         "quorum lost: the sorry server is the real server\n" + self.d.rvsadm("-Ln"))
        answers = self.spread("tcp", 81, 6)
        self.assertEqual(answers, {"sorry": 6}, "the listed sorry server serves")
        figure(f"rvsadm -Ln with rs1 and rs2 down: :9000 {inhibited}, :80 no rows, :81 {sorry}; "
               f"client answers {answers}")
        stats = {s["port"]: s for s in self.d.get("/api/v1/stats/services")}
        self.assertEqual([(r["address"], r["port"]) for r in stats[81]["reals"]], [(SORRY_IP, 80)])
        self.assertEqual(stats[80]["reals"], [])
        self.assertEqual(self.d.get("/api/v1/config"), configured, "the operator's config is unchanged")

        restart()
        self.wait_all_up()
        lab.wait_for(lambda: self.d.listed_reals("tcp", NAT_VIP, 81) == both(80), 5, interval=0.1,
                     what="the configured reals listed again")
        self.assertEqual(self.d.listed_reals("tcp", NAT_VIP, 9000), both(9000))

    def test_checks_added_at_runtime_run_at_once(self):
        """A service added through the API runs its checks at once: rs1's
        HTTP_GET passes, rs2's TCP_CHECK on a closed port fails (so the check
        really goes out through the exception path), both within one
        delay_loop; a changed check takes effect; a deleted service's checks
        stop."""
        svc = checked_service("tcp", NAT_VIP, 82, HTTP, real_port=80)
        svc["reals"][1]["health"]["checks"] = [check("tcp_check", connect_port=1)]

        def reals_of_82(rounds: int):
            reals = {r["address"]: r for r in self.d.health_reals() if r["service"]["port"] == 82}
            return len(reals) == 2 and all(r.get("rounds", 0) >= rounds for r in reals.values()) and reals

        t0 = time.monotonic()
        status, text = self.d.api("POST", "/api/v1/services", svc)
        self.assertEqual(status, 201, text)
        reals = lab.wait_for(lambda: reals_of_82(1), DELAY_LOOP + 5, interval=0.02,
                             what="first rounds of the added checks")
        took = time.monotonic() - t0
        figure(f"checks of a service added through the API: first rounds done {took * 1000:.0f} ms "
               f"after the POST (delay_loop {DELAY_LOOP * 1000:.0f} ms)")
        self.assertLessEqual(took, DELAY_LOOP + OBSERVE_MARGIN, "the added checks did not run at once")
        self.assertEqual(reals[real_ip(1)]["state"], "up", reals)
        self.assertEqual(reals[real_ip(2)]["state"], "down", reals)
        self.assertIn("TCP_CHECK", reals[real_ip(2)].get("last_error") or "", reals)
        self.assertGreaterEqual(reals[real_ip(2)]["consecutive_failures"], 1, reals)
        self.assertEqual(self.d.listed_reals("tcp", NAT_VIP, 82), {f"{real_ip(1)}:80": ("Masq", 1)})
        self.assertEqual(self.spread("tcp", 82, 4), {"rs1": 4})

        # rs2's check changed to HTTP_GET through the real server route: up within the bound.
        fixed = dict(svc["reals"][1], health={"checks": [HTTP]})
        t1 = time.monotonic()
        status, text = self.d.api("PUT", f"/api/v1/services/tcp/{NAT_VIP}/82/reals/{real_ip(2)}/80", fixed)
        self.assertEqual(status, 200, text)
        self.wait_state(NAT_VIP, 82, 2, "up", "tcp", detection_bound(HTTP) + 5)
        self.assertLessEqual(time.monotonic() - t1, DELAY_LOOP + OBSERVE_MARGIN)
        self.assertEqual(self.spread("tcp", 82, 4), {"rs1": 2, "rs2": 2})

        status, text = self.d.api("DELETE", f"/api/v1/services/tcp/{NAT_VIP}/82")
        self.assertEqual(status, 200, text)
        self.assertFalse([r for r in self.d.health_reals() if r["service"]["port"] == 82],
                         "the deleted service's checks stopped")


# ---------------------------------------------------------------------------
# 2. VRRP failover between two rvsd
# ---------------------------------------------------------------------------

class FailoverTests(HaCase):
    """d1 (priority 150) master, d2 (100) backup; SIGKILL d1 while a client
    sends a UDP request every 10 ms to the NAT VIP."""

    def pair(self, advert_int: float, version: int, nopreempt: bool = False):
        d1 = self.director(1, lab.director_config(1, vrrp=lab.vrrp_config(
            150, advert_int, version, nopreempt=nopreempt)))
        d1.wait_vrrp("MASTER", 3 * advert_int + 5)
        d2 = self.director(2, lab.director_config(2, vrrp=lab.vrrp_config(
            100, advert_int, version, nopreempt=nopreempt)))
        d2.wait_vrrp("BACKUP", 5)
        time.sleep(max(2 * advert_int, 0.3))
        self.assertEqual(set(d2.vrrp_states().values()), {"BACKUP"}, self.diag())
        self.assertEqual(set(d1.vrrp_states().values()), {"MASTER"}, self.diag())
        return d1, d2

    def assert_vips_on(self, arp: lab.ArpWatch, master: lab.Director, backup: lab.Director):
        """Only the master answers ARP for the VIPs, the reals' gateway and the
        FULLNAT local address (the backup stays silent)."""
        rs_arp = lab.ArpWatch(lab.real_ns(1)).start()
        self.addCleanup(rs_arp.stop)
        lab.nsx(NS_CLIENT, ["ip", "neigh", "flush", "all"])
        lab.nsx(lab.real_ns(1), ["ip", "neigh", "flush", "all"])
        for vip in (DR_VIP, NAT_VIP, FNAT_VIP):
            lab.nsx(NS_CLIENT, ["ping", "-c", "1", "-W", "1", vip], check=False)
        for addr in (GATEWAY, LIP):
            lab.nsx(lab.real_ns(1), ["ping", "-c", "1", "-W", "0.5", addr], check=False)
        time.sleep(0.2)
        mac = DIRECTORS[master.n]["mac"]
        for watch, ns, addrs in ((arp, NS_CLIENT, (DR_VIP, NAT_VIP, FNAT_VIP)),
                                 (rs_arp, lab.real_ns(1), (GATEWAY, LIP))):
            for addr in addrs:
                macs = set(watch.arp_replies(addr))
                self.assertEqual(macs, {mac}, f"ARP replies for {addr} seen in {ns}: {macs} "
                                              f"(master {master.ns} is {mac})")
                self.assertEqual(lab.neighbour_mac(ns, addr), mac, f"{ns}: {addr}")
        rs_arp.stop()

    def failover(self, advert_int: float, version: int, nopreempt: bool = False):
        d1, d2 = self.pair(advert_int, version, nopreempt)
        arp = self.arp_watch()
        self.assert_vips_on(arp, d1, d2)
        prober = self.prober(duration=60)
        time.sleep(0.5)
        t_kill = d1.kill()
        try:
            d2.wait_vrrp("MASTER", 3 * advert_int + 5)
        except TimeoutError:
            self.fail("d2 did not take over\n" + self.diag(d2))
        time.sleep(0.6)
        bound = lab.master_down(advert_int, 100, version) + 0.1
        res = prober.analyse(t_kill)
        figure(f"failover v{version} advert_int {advert_int}: SIGKILL master -> client outage "
               f"{res['outage'] * 1000 if res['outage'] else float('nan'):.0f} ms "
               f"(bound 3×advert_int+skew+100ms = {bound * 1000:.0f} ms; "
               f"answers after: {res.get('reals_after')})")
        self.assertIsNotNone(res["outage"], f"no answers after the failover: {res}\n" + self.diag(d2))
        self.assertLessEqual(res["outage"], bound, f"{res}\n" + self.diag(d2))
        self.assertEqual(res["lost_after_recovery"], 0, res)
        # The new master's gratuitous ARPs, seen by the client.
        mac2 = DIRECTORS[2]["mac"]
        for vip in (DR_VIP, NAT_VIP, FNAT_VIP, GATEWAY, LIP):
            garps = arp.garps(vip, mac2)
            self.assertTrue(garps, f"no gratuitous ARP for {vip} from {mac2}:\n"
                            + "\n".join(l for _, l in arp.lines[-30:]))
        first = min(t for t, _ in arp.garps(NAT_VIP, mac2))
        figure(f"  gratuitous ARP for {NAT_VIP} from d2 ({mac2}) {1000 * (first - t_kill):.0f} ms "
               f"after the kill: {arp.garps(NAT_VIP, mac2)[0][1]}")
        self.assertEqual(lab.neighbour_mac(NS_CLIENT, NAT_VIP), mac2)
        # The reals' gateway moved too (NAT replies reach the new master).
        self.assertEqual(lab.neighbour_mac(lab.real_ns(1), GATEWAY), mac2)
        return d1, d2, prober, arp

    def test_0_backup_does_not_forward(self):
        """Frames for a VIP sent straight to the backup's MAC are dropped
        (counter drop_standby_vip), not forwarded."""
        d1, d2 = self.pair(0.1, 3)
        arp = self.arp_watch()
        self.assert_vips_on(arp, d1, d2)
        before = d2.stats_counters().get("drop_standby_vip", 0)
        mac2 = DIRECTORS[2]["mac"]
        lab.nsx(NS_CLIENT, ["ip", "neigh", "replace", NAT_VIP, "lladdr", mac2, "dev", "eth0",
                            "nud", "permanent"])
        try:
            answers = lab.udp_spread(NAT_VIP, 9001, 3)
            http = lab.http_spread(f"http://{NAT_VIP}/", 1, max_time=1)
        finally:
            lab.nsx(NS_CLIENT, ["ip", "neigh", "del", NAT_VIP, "dev", "eth0"], check=False)
        after = d2.stats_counters().get("drop_standby_vip", 0)
        self.assertEqual(answers, ["ERR"] * 3, "the backup forwarded UDP for a VIP it does not hold")
        self.assertTrue(http[0].startswith("ERR"), f"the backup forwarded TCP: {http}")
        self.assertGreaterEqual(after - before, 4, f"drop_standby_vip {before} -> {after}\n"
                                + self.diag(d2))
        # ... while the master does.
        self.assertEqual(lab.tally(lab.udp_spread(NAT_VIP, 9001, 4)), {"rs1": 2, "rs2": 2})

    def test_1_outage_advert_int_1_v2(self):
        self.failover(1, 2)

    def test_2_outage_advert_int_0_1_v3_and_preempt(self):
        d1, d2, _, arp = self.failover(0.1, 3)
        # The old master returns and preempts.
        prober = self.prober(duration=60)
        time.sleep(0.3)
        t = time.monotonic()
        d1.start()
        try:
            d1.wait_vrrp("MASTER", 5)
            d2.wait_vrrp("BACKUP", 3)
        except TimeoutError:
            self.fail("d1 did not preempt\n" + self.diag())
        took = time.monotonic() - t
        time.sleep(0.5)
        res = prober.analyse(t)
        figure(f"preemption v3 advert_int 0.1: d1 restarted -> MASTER again in {took * 1000:.0f} ms "
               f"(incl. rvsd start); client's largest gap {res['max_gap'] * 1000:.0f} ms")
        self.assertLessEqual(res["max_gap"], lab.master_down(0.1, 100, 3) + 0.1, res)
        self.assertEqual(lab.neighbour_mac(NS_CLIENT, NAT_VIP), DIRECTORS[1]["mac"])
        self.assertTrue(arp.garps(NAT_VIP, DIRECTORS[1]["mac"]), "no gratuitous ARP from d1")

    def test_3_nopreempt(self):
        d1, d2, _, _ = self.failover(0.1, 3, nopreempt=True)
        prober = self.prober(duration=60)
        time.sleep(0.3)
        t = time.monotonic()
        d1.start()
        d1.wait_vrrp("BACKUP", 5)
        time.sleep(1.5)                      # > 3 master-down intervals
        self.assertEqual(set(d1.vrrp_states().values()), {"BACKUP"}, "nopreempt: d1 must stay backup")
        self.assertEqual(set(d2.vrrp_states().values()), {"MASTER"}, self.diag())
        res = prober.analyse(t)
        figure(f"nopreempt: d1 returned and stayed BACKUP; client's largest gap "
               f"{res['max_gap'] * 1000:.0f} ms while it did")
        self.assertLess(res["max_gap"], 0.1, res)
        self.assertEqual(lab.neighbour_mac(NS_CLIENT, NAT_VIP), DIRECTORS[2]["mac"])


    def test_4_graceful_stop_resigns(self):
        """SIGTERM: the master resigns (priority-0 advert) and the backup
        takes over after its skew time, not after the master-down interval."""
        d1, d2 = self.pair(1, 2)
        prober = self.prober(duration=60)
        time.sleep(0.5)
        t = time.monotonic()
        rc = d1.stop()
        d2.wait_vrrp("MASTER", 5)
        took = time.monotonic() - t
        time.sleep(0.5)
        res = prober.analyse(t)
        skew = (256 - 100) / 256
        figure(f"graceful stop (SIGTERM, v2 advert_int 1): backup MASTER seen after "
               f"{took * 1000:.0f} ms; client's largest gap {res['max_gap'] * 1000:.0f} ms "
               f"(bound skew+100ms = {(skew + 0.1) * 1000:.0f} ms)")
        self.assertLessEqual(res["max_gap"], skew + 0.1, res)
        figure(f"  (exit code of the resigning rvsd: {rc})")

    def test_5_sigterm_exits_cleanly(self):
        """rvsd with VRRP and connection sync stops on SIGTERM with exit code
        0, every time (5 runs)."""
        codes = []
        for i in range(5):
            d = lab.Director(1, lab.director_config(1, vrrp=lab.vrrp_config(150, 0.1, 3)),
                             tmp=str(Path(self.tmp) / f"run{i}"))
            self.addCleanup(d.stop)
            d.start()
            d.wait_vrrp("MASTER", 5)
            time.sleep(0.2)
            codes.append(d.stop())
            if codes[-1] != 0:
                last_bad = d
        figure(f"SIGTERM exit codes of rvsd with VRRP + sync (5 runs): {codes}")
        if codes != [0] * 5:
            self.fail(f"rvsd must exit 0 on SIGTERM, got {codes} (negative = killed by that signal, "
                      f"-11 = SIGSEGV)\n" + last_bad.log_text(15))


# ---------------------------------------------------------------------------
# 3. Interoperation with keepalived
# ---------------------------------------------------------------------------

def single_instance(priority: int, advert_int: float, version: int, **extra) -> dict:
    return {"instances": [{"name": "VI_1", "interface": "lan0", "virtual_router_id": 51,
                           "priority": priority, "advert_int": advert_int, "version": version,
                           "virtual_ipaddress": [DR_VIP], "garp_master_repeat": 3,
                           "garp_master_delay": 1, **extra}]}


DR_ONLY = [lab.service("tcp", DR_VIP, 80, "dr", [lab.real(1), lab.real(2)])]


class KeepalivedInteropTests(HaCase):
    def setUp(self):
        if not KEEPALIVED:
            self.skipTest("Debian's keepalived is not installed")
        super().setUp()

    def keepalived(self, conf: str) -> lab.Keepalived:
        ka = lab.Keepalived(conf, self.tmp, KEEPALIVED)
        self.others.append(ka)
        self.addCleanup(ka.stop)
        return ka.start()

    def who_serves(self, count: int = 4) -> dict:
        lab.nsx(NS_CLIENT, ["ip", "neigh", "flush", "all"])
        return lab.tally(lab.http_spread(f"http://{DR_VIP}/", count, max_time=1))

    def test_1_rvsd_yields_to_keepalived_and_takes_over_v2(self):
        ka = self.keepalived(lab.keepalived_vrrp_conf(200, "MASTER", 1, 2, [DR_VIP], auth_pass="rvs-pw"))
        lab.wait_for(ka.has_vip, 10, what="keepalived MASTER (VIP on its eth0)")
        d = self.director(1, lab.director_config(1, services=DR_ONLY, vrrp=single_instance(
            100, 1, 2, auth_pass="rvs-pw"), sync=False))
        d.wait_vrrp("BACKUP", 5, instances=("VI_1",))
        time.sleep(2 * lab.master_down(1, 100, 2))
        self.assertEqual(d.vrrp_states(), {"VI_1": "BACKUP"}, "rvsd did not yield\n" + ka.log_text())
        self.assertEqual(self.who_serves(), {"ka": 4}, "keepalived's host should serve the VIP")
        self.assertEqual(lab.neighbour_mac(NS_CLIENT, DR_VIP), "02:00:00:aa:00:04")
        arp = self.arp_watch()
        t_kill = ka.crash()
        try:
            t_master = d.wait_vrrp("MASTER", 10, instances=("VI_1",))
        except TimeoutError:
            self.fail("rvsd did not take over from the dead keepalived\n" + self.diag(d))
        lab.nsx(lab.NS_KA, ["ip", "addr", "del", f"{DR_VIP}/32", "dev", "eth0"], check=False)
        bound = lab.master_down(1, 100, 2) + 0.3
        figure(f"keepalived (prio 200, v2 PASS, advert_int 1) SIGKILLed -> rvsd MASTER seen after "
               f"{(t_master - t_kill) * 1000:.0f} ms (bound {bound * 1000:.0f} ms incl. API polling)")
        self.assertLessEqual(t_master - t_kill, bound)
        lab.wait_for(lambda: arp.garps(DR_VIP, DIRECTORS[1]["mac"]), 3, what="GARP from rvsd")
        self.assertEqual(lab.neighbour_mac(NS_CLIENT, DR_VIP), DIRECTORS[1]["mac"])
        answers = lab.tally(lab.http_spread(f"http://{DR_VIP}/", 4, max_time=1))
        self.assertEqual(answers, {"rs1": 2, "rs2": 2}, "rvsd serves the VIP after the takeover")

    def test_2_keepalived_yields_to_rvsd_and_takes_over_v3(self):
        ka = self.keepalived(lab.keepalived_vrrp_conf(100, "BACKUP", 0.1, 3, [DR_VIP]))
        lab.wait_for(ka.has_vip, 10, what="keepalived MASTER alone")
        d = self.director(1, lab.director_config(1, services=DR_ONLY, vrrp=single_instance(
            200, 0.1, 3), sync=False))
        try:
            d.wait_vrrp("MASTER", 5, instances=("VI_1",))
            lab.wait_for(lambda: not ka.has_vip(), 5, what="keepalived dropping the VIP")
        except TimeoutError:
            self.fail("rvsd (200) did not preempt keepalived (100)\n" + ka.log_text() + self.diag(d))
        time.sleep(0.5)
        self.assertIn("Entering BACKUP STATE", ka.log_text())
        self.assertFalse(ka.has_vip())
        self.assertEqual(self.who_serves(), {"rs1": 2, "rs2": 2})
        t_kill = d.kill()
        try:
            lab.wait_for(ka.has_vip, 5, interval=0.01, what="keepalived taking over")
        except TimeoutError:
            self.fail("keepalived did not take over from the dead rvsd\n" + ka.log_text())
        took = time.monotonic() - t_kill
        bound = lab.master_down(0.1, 100, 3) + 0.15
        figure(f"rvsd (prio 200, v3 advert_int 0.1) SIGKILLed -> keepalived MASTER (VIP up) "
               f"after {took * 1000:.0f} ms (bound {bound * 1000:.0f} ms)")
        self.assertLessEqual(took, bound)
        self.assertEqual(self.who_serves(), {"ka": 4})
        # rvsd comes back with the higher priority and preempts again.
        d.start()
        d.wait_vrrp("MASTER", 5, instances=("VI_1",))
        lab.wait_for(lambda: not ka.has_vip(), 5, what="keepalived yielding to the returning rvsd")
        self.assertEqual(self.who_serves(), {"rs1": 2, "rs2": 2})


# ---------------------------------------------------------------------------
# 4. Established connections survive the failover (connection sync)
# ---------------------------------------------------------------------------

class ConnectionSyncTests(HaCase):
    def test_streams_continue_byte_for_byte(self):
        """Both directors run 2 workers: the backup keeps each synced connection
        once, on one worker that announces it to the other."""
        d1 = self.director(1, lab.director_config(1, vrrp=lab.vrrp_config(150, 0.1, 3), workers=2))
        d1.wait_vrrp("MASTER", 5)
        d2 = self.director(2, lab.director_config(2, vrrp=lab.vrrp_config(100, 0.1, 3), workers=2))
        d2.wait_vrrp("BACKUP", 5)
        time.sleep(0.3)
        streams = {}
        for mode, vip in (("FULLNAT", FNAT_VIP), ("DR", DR_VIP), ("NAT", NAT_VIP)):
            s = lab.Stream(vip, 9000, lines=100, interval=0.04, tmp=str(Path(self.tmp) / mode))
            self.addCleanup(s.cleanup)
            streams[mode] = s
        for mode, s in streams.items():
            lab.wait_for(s.banner, 5, what=f"{mode} banner")
        time.sleep(1.0)
        conns1 = d1.get("/api/v1/connections?limit=100")
        fnat1 = [c for c in conns1["connections"] if c.get("forward") in ("fullnat", "FullNat")
                 and c["vip"].startswith(FNAT_VIP)]
        lab.wait_for(lambda: d2.stats_counters().get("conn_synced_in", 0) >= 3, 3,
                     what="connections synced to d2")
        conns2 = d2.get("/api/v1/connections?limit=100")
        flows2 = [(c["client"], c["vip"]) for c in conns2["connections"]]
        self.assertEqual(len(flows2), len(set(flows2)), f"a synced connection is held twice on d2: {flows2}")
        at_kill = {m: len(s.received()) for m, s in streams.items()}
        t_kill = d1.kill()
        d2.wait_vrrp("MASTER", 5)
        figure(f"connection sync: d2 had {len(conns2['connections'])} synced connections when d1 "
               f"was SIGKILLed ({', '.join(c['forward'] + ' ' + c['state'] for c in conns2['connections'])}); "
               f"bytes received per stream at the kill: {at_kill}")
        # New FULLNAT connections on the new master get other local ports than
        # the synced one (a reused LIP:port towards the same real would clash).
        fresh = []
        for i in range(3):
            f = lab.Stream(FNAT_VIP, 9000, lines=25, interval=0.04, tmp=str(Path(self.tmp) / f"new{i}"))
            self.addCleanup(f.cleanup)
            fresh.append(f)
        for f in fresh:
            lab.wait_for(f.banner, 5, what="banner of a new FULLNAT connection")
        pairs = [(c["real"], c.get("local")) for c in d2.get("/api/v1/connections?limit=100")["connections"]
                 if c["vip"].startswith(FNAT_VIP)]
        self.assertEqual(len(pairs), len(set(pairs)), f"FULLNAT local address:port reused: {pairs}")
        self.assertGreaterEqual(len(pairs), 4, pairs)
        for i, f in enumerate(fresh):
            f.wait(15)
            self.assertEqual(f.received(), f.banner().encode() + b"\n" + f.sent.read_bytes(),
                             f"new FULLNAT connection {i} on the new master")
        for mode, s in streams.items():
            with self.subTest(mode=mode):
                rc = s.wait(30)
                sent = s.sent.read_bytes()
                got = s.received()
                self.assertEqual(sent.count(b"\n"), s.lines, f"{mode}: feeder")
                expected = s.banner().encode() + b"\n" + sent
                if got != expected:
                    self.fail(f"{mode}: stream broke after the failover: got {len(got)} bytes, "
                              f"expected {len(expected)} ({at_kill[mode]} when d1 was killed); "
                              f"socat rc={rc} err={s.err.read_text()!r}\ngot tail: {got[-80:]!r}\n"
                              f"d2 connections before the kill: {json.dumps(conns2)[:3000]}\n"
                              + self.diag(d2))
                self.assertLess(at_kill[mode], len(got), f"{mode}: the stream ended before the kill")
                self.assertEqual(rc, 0, s.err.read_text())
        # FULLNAT's local address and port were synced: d2 has the same LIP:port.
        self.assertTrue(fnat1, f"no FULLNAT connection listed on d1: {conns1}")
        local1 = {c.get("local") for c in fnat1}
        local2 = {c.get("local") for c in conns2["connections"] if c["vip"].startswith(FNAT_VIP)}
        self.assertTrue(local1 & local2, f"FULLNAT local address:port not synced: d1 {local1} d2 {local2}")
        self.assertTrue(all(str(l).startswith(LIP + ":") for l in local1), local1)
        figure(f"  FULLNAT local address:port synced: {sorted(local1 & local2)}")


    def test_syn_proxied_streams_continue_byte_for_byte(self):
        """Connections opened through the SYN proxy (NAT and FULLNAT with
        syn_proxy "on") are synced with their translation (cookie -> real
        server ISN, window scales): after the master is SIGKILLed the backup
        translates them the same way and the streams continue byte for byte."""
        services = lab.lab_services()
        for svc in services:
            if svc["protocol"] == "tcp" and svc["forward"] in ("nat", "fullnat"):
                svc["syn_proxy"] = "on"
        d1 = self.director(1, lab.director_config(1, services=services, vrrp=lab.vrrp_config(150, 0.1, 3)))
        d1.wait_vrrp("MASTER", 5)
        d2 = self.director(2, lab.director_config(2, services=services, vrrp=lab.vrrp_config(100, 0.1, 3)))
        d2.wait_vrrp("BACKUP", 5)
        time.sleep(0.3)
        streams = {}
        for mode, vip in (("FULLNAT", FNAT_VIP), ("NAT", NAT_VIP)):
            s = lab.Stream(vip, 9000, lines=100, interval=0.04, tmp=str(Path(self.tmp) / f"proxied-{mode}"))
            self.addCleanup(s.cleanup)
            streams[mode] = s
        for mode, s in streams.items():
            lab.wait_for(s.banner, 5, what=f"{mode} banner")
        time.sleep(0.5)
        proxied1 = [c for c in d1.get("/api/v1/connections?limit=100")["connections"] if "syn_proxy" in c]
        self.assertEqual(len(proxied1), 2, f"two proxied connections on d1: {proxied1}")
        self.assertTrue(all(c["syn_proxy"]["phase"] == "open" for c in proxied1), proxied1)
        def synced():
            conns = d2.get("/api/v1/connections?limit=100")["connections"]
            return [c for c in conns if "syn_proxy" in c]
        lab.wait_for(lambda: len(synced()) == 2, 3, what="proxied connections synced to d2")
        proxied2 = synced()
        key = lambda c: (c["client"], c["vip"])  # noqa: E731
        self.assertEqual(sorted((key(c), c["syn_proxy"]) for c in proxied2),
                         sorted((key(c), c["syn_proxy"]) for c in proxied1), "the same translations")
        at_kill = {m: len(s.received()) for m, s in streams.items()}
        d1.kill()
        d2.wait_vrrp("MASTER", 5)
        figure("SYN-proxied connections synced: "
               + ", ".join(f"{c['forward']} delta {c['syn_proxy']['delta']:#010x}" for c in proxied2)
               + f"; bytes received per stream at the kill: {at_kill}")
        for mode, s in streams.items():
            with self.subTest(mode=mode):
                rc = s.wait(30)
                got = s.received()
                expected = s.banner().encode() + b"\n" + s.sent.read_bytes()
                self.assertEqual(got, expected, f"{mode}: proxied stream broke after the failover "
                                 f"(socat rc={rc}, {at_kill[mode]} bytes at the kill)\n" + self.diag(d2))
                self.assertLess(at_kill[mode], len(got), f"{mode}: the stream ended before the kill")

    def test_late_backup_gets_bulk_resync(self):
        """A backup that starts while connections are established asks the
        master for a bulk resync; those connections survive a failover too."""
        d1 = self.director(1, lab.director_config(1, vrrp=lab.vrrp_config(150, 0.1, 3)))
        d1.wait_vrrp("MASTER", 5)
        streams = {}
        for mode, vip in (("FULLNAT", FNAT_VIP), ("DR", DR_VIP)):
            s = lab.Stream(vip, 9000, lines=100, interval=0.04, tmp=str(Path(self.tmp) / mode))
            self.addCleanup(s.cleanup)
            streams[mode] = s
        for mode, s in streams.items():
            lab.wait_for(s.banner, 5, what=f"{mode} banner")
        time.sleep(0.3)
        d2 = self.director(2, lab.director_config(2, vrrp=lab.vrrp_config(100, 0.1, 3)))
        d2.wait_vrrp("BACKUP", 5)
        try:
            lab.wait_for(lambda: d2.get("/api/v1/connections?limit=100")["total"] >= 2, 3,
                         what="bulk resync to the late backup")
        except TimeoutError:
            self.fail("the late backup got no bulk resync\n" + self.diag())
        conns2 = d2.get("/api/v1/connections?limit=100")["connections"]
        figure(f"bulk resync: late backup installed {len(conns2)} connections: "
               + ", ".join(f"{c['forward']} {c['client']}->{c['vip']} {c['state']}" for c in conns2))
        time.sleep(0.3)
        d1.kill()
        d2.wait_vrrp("MASTER", 5)
        for mode, s in streams.items():
            with self.subTest(mode=mode):
                rc = s.wait(30)
                expected = s.banner().encode() + b"\n" + s.sent.read_bytes()
                self.assertEqual(s.received(), expected, f"{mode}: stream broke (socat rc={rc})\n"
                                 + self.diag(d2))


# ---------------------------------------------------------------------------
# 5. rvsd --keepalived
# ---------------------------------------------------------------------------

def base_config(n: int = 1) -> dict:
    cfg = lab.director_config(n, services=[])
    del cfg["services"]
    # keepalived.conf cannot hold the sync key: lvs_sync_daemon takes it from here.
    cfg["sync"] = {"key": lab.SYNC_KEY}
    return cfg


KEEPALIVED_DR = f"""\
! Configuration File for keepalived -- DR director pair, the classic LVS setup
global_defs {{
   notification_email {{
     ops@example.com
   }}
   notification_email_from lvs@example.com
   smtp_server 127.0.0.1
   smtp_connect_timeout 30
   router_id LVS_RVSHA_1
   vrrp_skip_check_adv_addr
   vrrp_garp_master_delay 1
   vrrp_garp_master_repeat 3
   lvs_timeouts tcp 900 tcpfin 120 udp 300
}}

vrrp_sync_group VG_LVS {{
    group {{
        VI_WEB
        VI_GW
    }}
}}

vrrp_instance VI_WEB {{
    state MASTER
    interface dp0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass lvs-pw
    }}
    virtual_ipaddress {{
        {DR_VIP}/24 dev dp0 label dp0:vip
        {NAT_VIP}/24 dev dp0
    }}
}}

vrrp_instance VI_GW {{
    state MASTER
    interface dp0
    virtual_router_id 52
    priority 150
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass lvs-pw
    }}
    virtual_ipaddress {{
        {GATEWAY}/24 dev dp0
    }}
}}

virtual_server {DR_VIP} 80 {{
    delay_loop 1
    lb_algo wrr
    lb_kind DR
    protocol TCP

    real_server {real_ip(1)} 80 {{
        weight 1
        HTTP_GET {{
            url {{
              path /
              status_code 200
            }}
            connect_timeout 1
            nb_get_retry 1
            delay_before_retry 0.5
        }}
    }}
    real_server {real_ip(2)} 80 {{
        weight 1
        HTTP_GET {{
            url {{
              path /
              status_code 200-299
            }}
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }}
    }}
}}

virtual_server {NAT_VIP} 9000 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    sorry_server {SORRY_IP} 80

    real_server {real_ip(1)} 9000 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
    real_server {real_ip(2)} 9000 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"""

KEEPALIVED_FNAT = f"""\
! DPVS-style keepalived.conf: FULLNAT with a local address group
global_defs {{
    router_id dpvs_rvsha
}}

local_address_group laddr_g1 {{
    {LIP} dp0
}}

vrrp_instance VI_1 {{
    state MASTER
    interface dp0
    virtual_router_id 61
    priority 120
    advert_int 1
    version 3
    virtual_ipaddress {{
        {FNAT_VIP}
        {LIP}
    }}
}}

virtual_server {FNAT_VIP} 9000 {{
    delay_loop 1
    lb_algo rr
    lb_kind FNAT
    protocol TCP
    laddr_group_name laddr_g1

    real_server {real_ip(1)} 9000 {{
        weight 100
        inhibit_on_failure
        TCP_CHECK {{
            connect_timeout 1
            nb_get_retry 2
            delay_before_retry 1
        }}
    }}
    real_server {real_ip(2)} 9000 {{
        weight 100
        inhibit_on_failure
        TCP_CHECK {{
            connect_timeout 1
            nb_get_retry 2
            delay_before_retry 1
        }}
    }}
}}

virtual_server {FNAT_VIP} 80 {{
    delay_loop 1
    lb_algo wlc
    lb_kind FNAT
    protocol TCP
    laddr_group_name laddr_g1

    real_server {real_ip(1)} 80 {{
        weight 1
        MISC_CHECK {{
            misc_path "{lab.MISC_CHECK} {real_ip(1)} 80"
            misc_timeout 2
        }}
    }}
    real_server {real_ip(2)} 80 {{
        weight 1
        MISC_CHECK {{
            misc_path "{lab.MISC_CHECK} {real_ip(2)} 80"
            misc_timeout 2
        }}
    }}
}}
"""


# A director pair from keepalived.conf: fast VRRP (v3, 0.1 s) and IPVS-style
# connection sync (lvs_sync_daemon: multicast 224.0.0.81, sync id 7).
KEEPALIVED_PAIR = f"""\
global_defs {{
    router_id LVS_RVSHA_PAIR
    vrrp_version 3
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 3
    lvs_sync_daemon dp0 VI_WEB id 7
}}
vrrp_sync_group VG_LVS {{
    group {{
        VI_WEB
        VI_GW
    }}
}}
vrrp_instance VI_WEB {{
    state @STATE@
    interface dp0
    virtual_router_id 51
    priority @PRIO@
    advert_int 0.1
    virtual_ipaddress {{
        {NAT_VIP}/24 dev dp0
    }}
}}
vrrp_instance VI_GW {{
    state @STATE@
    interface dp0
    virtual_router_id 52
    priority @PRIO@
    advert_int 0.1
    virtual_ipaddress {{
        {GATEWAY}/24 dev dp0
    }}
}}
virtual_server {NAT_VIP} 9000 {{
    delay_loop 2
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server {real_ip(1)} 9000 {{
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
    real_server {real_ip(2)} 9000 {{
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"""


class KeepalivedConfTests(HaCase):
    def check_config(self, conf: str, base: dict | None = None) -> subprocess.CompletedProcess:
        d = lab.Director(1, base or base_config(), tmp=self.tmp, keepalived=conf)
        d.config_path.write_text(json.dumps(d.config))
        return subprocess.run(d.command("--check-config"), capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)

    def wait_checks_up(self, d: lab.Director, count: int):
        lab.wait_for(lambda: len(d.health_reals()) == count
                     and all(r["state"] == "up" and r["rounds"] >= 1 for r in d.health_reals()),
                     10, interval=0.1, what="every real server checked and up")

    def test_1_dr_keepalived_conf(self):
        cp = self.check_config(KEEPALIVED_DR)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        t = time.monotonic()
        d = self.director(1, base_config(), keepalived=KEEPALIVED_DR)
        try:
            d.wait_vrrp("MASTER", 8, instances=("VI_WEB", "VI_GW"))
        except TimeoutError:
            self.fail("keepalived.conf VRRP instances did not become MASTER\n" + self.diag(d))
        figure(f"rvsd --keepalived (DR conf, advert_int 1, prio 150): MASTER "
               f"{(time.monotonic() - t) * 1000:.0f} ms after start")
        services = {(s["protocol"], s["vip"], s["port"]): s for s in d.get("/api/v1/services")}
        dr = services.get(("tcp", DR_VIP, 80))
        nat = services.get(("tcp", NAT_VIP, 9000))
        self.assertIsNotNone(dr, services)
        self.assertIsNotNone(nat, services)
        self.assertEqual((dr["forward"], dr["scheduler"]), ("dr", "wrr"), dr)
        self.assertEqual((nat["forward"], nat["scheduler"]), ("nat", "rr"), nat)
        self.assertEqual(nat["health"]["sorry_server"]["address"], SORRY_IP, nat)
        self.assertEqual(dr["reals"][1]["health"]["checks"][0]["urls"][0]["status_code"],
                         list(range(200, 300)), dr)
        timeouts = d.get("/api/v1/timeouts")
        self.assertEqual((timeouts.get("tcp"), timeouts.get("tcp_fin"), timeouts.get("udp")),
                         (900, 120, 300), f"lvs_timeouts: {timeouts}")
        self.wait_checks_up(d, 4)
        self.assertEqual(lab.tally(lab.http_spread(f"http://{DR_VIP}/", 6)), {"rs1": 3, "rs2": 3})
        out = lab.sh(NS_CLIENT, f"for i in 1 2 3 4; do socat -t1 -T2 - TCP:{NAT_VIP}:9000 "
                                f"</dev/null | head -n1; done").stdout.split()
        self.assertEqual(lab.tally(out), {"rs1": 2, "rs2": 2})
        # The HTTP_GET checks from the file run: rs1's web server stops -> out.
        lab.stop_service(1, "http80")
        self.addCleanup(lab.start_service, 1, "http80")
        lab.wait_for(lambda: d.real_report(DR_VIP, 80, 1)["state"] == "down", 6,
                     what="rs1 down by the HTTP_GET of the keepalived.conf")
        self.assertEqual(lab.tally(lab.http_spread(f"http://{DR_VIP}/", 4)), {"rs2": 4})

    def test_2_dpvs_fullnat_keepalived_conf(self):
        cp = self.check_config(KEEPALIVED_FNAT)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        d = self.director(1, base_config(), keepalived=KEEPALIVED_FNAT)
        try:
            d.wait_vrrp("MASTER", 8, instances=("VI_1",))
        except TimeoutError:
            self.fail("VI_1 did not become MASTER\n" + self.diag(d))
        services = {(s["protocol"], s["vip"], s["port"]): s for s in d.get("/api/v1/services")}
        echo = services.get(("tcp", FNAT_VIP, 9000))
        self.assertIsNotNone(echo, services)
        self.assertEqual(echo["forward"], "fullnat", echo)
        self.assertEqual(echo["local_addresses"], [LIP], echo)
        self.assertTrue(all(r["health"].get("inhibit_on_failure") for r in echo["reals"]), echo)
        self.wait_checks_up(d, 4)
        out = lab.sh(NS_CLIENT, f"for i in 1 2 3 4; do socat -t1 -T2 - TCP:{FNAT_VIP}:9000 "
                                f"</dev/null | head -n1; done").stdout.split()
        self.assertEqual(lab.tally(out), {"rs1": 2, "rs2": 2})
        self.assertEqual(sorted(lab.http_spread(f"http://{FNAT_VIP}/", 4)), ["rs1", "rs1", "rs2", "rs2"])
        # The reals saw the connections from the local address.
        s = lab.Stream(FNAT_VIP, 9000, lines=30, interval=0.05, tmp=str(Path(self.tmp) / "s"))
        self.addCleanup(s.cleanup)
        banner = lab.wait_for(s.banner, 5, what="banner")
        ns = lab.real_ns(int(banner[2:]))
        peers = lab.nsx(ns, ["ss", "-Htn", "state", "established", "( sport = :9000 )"]).stdout
        self.assertIn(LIP + ":", peers, f"FULLNAT: the real should see the local address: {peers}")
        self.assertEqual(s.wait(15), 0)

    def test_4_keepalived_pair_with_lvs_sync_daemon(self):
        """Two rvsd from one keepalived.conf each (MASTER 150 / BACKUP 100),
        connection sync from `lvs_sync_daemon` (IPVS-style multicast
        224.0.0.81, the only sync a keepalived.conf can express): a NAT
        stream through the master continues after it is SIGKILLed."""
        def conf(priority: int, state: str) -> str:
            return (KEEPALIVED_PAIR.replace("@PRIO@", str(priority)).replace("@STATE@", state))
        d1 = self.director(1, base_config(1), keepalived=conf(150, "MASTER"))
        d1.wait_vrrp("MASTER", 5, instances=("VI_WEB", "VI_GW"))
        d2 = self.director(2, base_config(2), keepalived=conf(100, "BACKUP"))
        d2.wait_vrrp("BACKUP", 5, instances=("VI_WEB", "VI_GW"))
        self.assertEqual(d2.get("/api/v1/config").get("sync"),
                         {"instance": "VI_WEB", "port": 8848, "sync_id": 7})
        s = lab.Stream(NAT_VIP, 9000, lines=60, interval=0.04, tmp=str(Path(self.tmp) / "s"))
        self.addCleanup(s.cleanup)
        lab.wait_for(s.banner, 5, what="banner")
        try:
            lab.wait_for(lambda: d2.get("/api/v1/connections")["total"] >= 1, 2,
                         what="the connection synced to the backup")
            synced = True
        except TimeoutError:
            synced = False
        d1.kill()
        d2.wait_vrrp("MASTER", 5, instances=("VI_WEB", "VI_GW"))
        rc = s.wait(15 if synced else 5)
        s.kill()
        expected = s.banner().encode() + b"\n" + s.sent.read_bytes()
        got = s.received()
        figure(f"keepalived.conf pair, lvs_sync_daemon (multicast): backup had the connection: "
               f"{synced}; stream after failover: {len(got)}/{len(expected)} bytes")
        self.assertTrue(synced, "the backup never received the master's connection over "
                                "lvs_sync_daemon multicast\n" + self.diag())
        self.assertEqual(got, expected, f"stream broke (socat rc={rc})\n" + self.diag(d2))

    def test_3_check_config_exit_codes(self):
        unknown = KEEPALIVED_DR.replace("    lb_algo rr\n", "    lb_algoo rr\n")
        line = unknown[:unknown.index("lb_algoo")].count("\n") + 1
        cp = self.check_config(unknown)
        figure(f"--check-config unknown keyword: exit {cp.returncode}: {cp.stderr.strip()[:200]}")
        self.assertEqual(cp.returncode, 11, cp.stdout + cp.stderr)
        self.assertIn("lb_algoo", cp.stderr)
        self.assertIn(str(line), cp.stderr, f"the error must name line {line}: {cp.stderr}")
        unsupported = KEEPALIVED_DR.replace("   vrrp_skip_check_adv_addr\n",
                                            "   vrrp_skip_check_adv_addr\n   vrrp_strict\n")
        cp = self.check_config(unsupported)
        self.assertEqual(cp.returncode, 12, cp.stdout + cp.stderr)
        self.assertIn("vrrp_strict", cp.stderr)
        bad_kind = KEEPALIVED_DR.replace("lb_kind DR", "lb_kind XYZ")
        cp = self.check_config(bad_kind)
        self.assertEqual(cp.returncode, 13, cp.stdout + cp.stderr)
        syntax = KEEPALIVED_DR.rstrip().rstrip("}")
        cp = self.check_config(syntax)
        self.assertEqual(cp.returncode, 10, cp.stdout + cp.stderr)
        # A running rvsd refuses the file with the same code (nothing starts).
        d = lab.Director(1, base_config(), tmp=self.tmp, keepalived=unknown)
        d.config_path.write_text(json.dumps(d.config))
        cp = subprocess.run(d.command(), capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
        self.assertEqual(cp.returncode, 11, cp.stderr)


if __name__ == "__main__":
    unittest.main()
