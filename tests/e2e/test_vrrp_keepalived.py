"""VRRP end to end: rvs-vrrp (rvsd's VRRP engine) against Debian's keepalived
and against itself, in network namespaces on one bridge (see vrrp_lab.py).

Run as root:
    python3 -m unittest tests/e2e/test_vrrp_keepalived.py -v
(builds target/release/rvs-vrrp and installs keepalived when missing.)

Measured times are printed; the bounds asserted are 3 × advert_int + skew
(+ a margin) from the moment the master is SIGKILLed.
"""
import os
import shutil
import signal
import sys
import time
import unittest

import vrrp_lab as lab
from vrrp_lab import NS_A, NS_B, IP, VIP

KEEPALIVED = "keepalived"


def setUpModule():
    global KEEPALIVED
    if os.geteuid() != 0:
        raise unittest.SkipTest("the VRRP e2e tests need root (network namespaces, raw sockets)")
    lab.ensure_rvs_vrrp()
    KEEPALIVED = lab.ensure_keepalived()
    lab.ensure_tcpdump()
    lab.topology_up()


def tearDownModule():
    if os.environ.get("RVS_E2E_KEEP") != "1":
        lab.topology_down()


def master_down(advert_int: float, priority: int, version: int) -> float:
    """RFC Master_Down_Interval of a backup with `priority`."""
    skew = (256 - priority) / 256 * (advert_int if version == 3 else 1.0)
    return 3 * advert_int + skew


def report(what: str, seconds: float, bound: float) -> None:
    print(f"\n  {what}: {seconds * 1000:.1f} ms (bound {bound * 1000:.1f} ms)", file=sys.stderr, flush=True)


class VrrpCase(unittest.TestCase):
    def setUp(self):
        self.tmp = lab.make_tmp()
        self.procs = []
        for ns in (NS_A, NS_B):
            lab.del_vip(ns)

    def tearDown(self):
        for p in reversed(self.procs):
            p.stop()
        for ns in (NS_A, NS_B):
            lab.del_vip(ns)

    def run(self, result=None):
        """Prints the peers' logs when the test failed or errored."""
        before = (len(result.failures), len(result.errors)) if result else (0, 0)
        out = super().run(result)
        if result and (len(result.failures), len(result.errors)) != before:
            for p in getattr(self, "procs", []):
                print(f"\n--- {type(p).__name__} in {p.ns} ---\n{p.log_text()}", file=sys.stderr)
        if hasattr(self, "tmp"):
            shutil.rmtree(self.tmp, ignore_errors=True)
        return out

    def rvs(self, ns, instance) -> lab.RvsVrrp:
        p = lab.RvsVrrp(ns, instance, self.tmp)
        self.procs.append(p)
        return p.start()

    def keepalived(self, ns, conf) -> lab.Keepalived:
        p = lab.Keepalived(ns, conf, self.tmp, KEEPALIVED)
        self.procs.append(p)
        return p.start()

    def capture(self) -> lab.ArpCapture:
        c = lab.ArpCapture()
        self.addCleanup(c.stop)
        return c.start()


class RvsAgainstKeepalived(VrrpCase):
    def yield_and_take_over(self, version: int, advert_int: float, margin: float, **kw):
        """keepalived (priority 200) is master; rvs-vrrp (100) stays backup;
        keepalived is SIGKILLed; rvs-vrrp takes over within the bound."""
        ka_unicast = (IP[NS_B], IP[NS_A]) if kw.get("unicast") else None
        rvs_extra = {}
        if kw.get("unicast"):
            rvs_extra = {"unicast_src_ip": IP[NS_A], "unicast_peer": [IP[NS_B]]}
        if kw.get("auth_pass"):
            rvs_extra["auth_pass"] = kw["auth_pass"]
        ka = self.keepalived(NS_B, lab.keepalived_conf(200, "MASTER", advert_int, version,
                                                       auth_pass=kw.get("auth_pass"), unicast=ka_unicast))
        lab.wait_for(lambda: lab.has_vip(NS_B), 10, "keepalived's VIP")
        rvs = self.rvs(NS_A, lab.vrrp_instance(100, advert_int, version, **rvs_extra))
        rvs.wait_state("BACKUP", 5)
        # Several master-down intervals: it must stay backup.
        time.sleep(max(2 * master_down(advert_int, 100, version), 1.0))
        self.assertEqual(rvs.states(), ["BACKUP"], "rvs-vrrp did not yield to keepalived")
        self.assertFalse(lab.has_vip(NS_A))
        cap = self.capture()
        t_kill = ka.crash()
        ev = rvs.wait_state("MASTER", 3 * advert_int + 5)
        took = ev["monotonic"] - t_kill
        bound = master_down(advert_int, 100, version) + margin
        report(f"v{version} advert_int {advert_int}{' unicast' if kw.get('unicast') else ''}: "
               "keepalived SIGKILLed -> rvs-vrrp MASTER", took, bound)
        self.assertLessEqual(took, bound)
        self.assertGreaterEqual(took, 3 * advert_int - advert_int - 0.05)
        self.assertTrue(lab.wait_for(lambda: lab.has_vip(NS_A), 2, "VIP on rvs-vrrp's side"))
        mac = lab.mac_of(NS_A)
        garps = lab.wait_for(lambda: cap.garps(mac=mac), 3, "gratuitous ARP from rvs-vrrp")
        print(f"  gratuitous ARP seen: {garps[0]}", file=sys.stderr)

    def test_v2_rvs_yields_to_keepalived_and_takes_over(self):
        self.yield_and_take_over(2, 1, 0.25, auth_pass="rvs-pw")

    def test_v3_fast_advert_int_0_1(self):
        self.yield_and_take_over(3, 0.1, 0.1)

    def test_v3_unicast(self):
        self.yield_and_take_over(3, 0.5, 0.2, unicast=True)

    def keepalived_yields(self, version: int, advert_int: float, unicast: bool, auth_pass: str | None):
        """rvs-vrrp (200) preempts keepalived (100); on SIGTERM it resigns with
        priority 0 and keepalived takes over after its skew time."""
        ka_unicast = (IP[NS_B], IP[NS_A]) if unicast else None
        rvs_extra = {"unicast_src_ip": IP[NS_A], "unicast_peer": [IP[NS_B]]} if unicast else {}
        if auth_pass:
            rvs_extra["auth_pass"] = auth_pass
        ka = self.keepalived(NS_B, lab.keepalived_conf(100, "BACKUP", advert_int, version,
                                                       auth_pass=auth_pass, unicast=ka_unicast))
        lab.wait_for(lambda: lab.has_vip(NS_B), 10, "keepalived MASTER (VIP)")
        rvs = self.rvs(NS_A, lab.vrrp_instance(200, advert_int, version, **rvs_extra))
        rvs.wait_state("MASTER", 3 * advert_int + 5)
        lab.wait_for(lambda: not lab.has_vip(NS_B), 5, "keepalived dropping the VIP")
        self.assertGreaterEqual(ka.entered("BACKUP"), 1, ka.log_text())
        self.assertTrue(lab.has_vip(NS_A))
        # Stays so, and keepalived found nothing wrong with our adverts.
        time.sleep(max(3 * advert_int, 1.5))
        self.assertEqual(rvs.states(), ["BACKUP", "MASTER"])
        self.assertFalse(lab.has_vip(NS_B))
        for complaint in ("checksum", "mismatch", "invalid", "not present", "bogus"):
            self.assertNotIn(complaint, ka.log_text().lower(), ka.log_text())
        # Resign: keepalived (priority 100) takes over after its skew time.
        t_stop = time.monotonic()
        rvs.proc.send_signal(signal.SIGTERM)
        lab.wait_for(lambda: lab.has_vip(NS_B), 5, "keepalived MASTER after rvs-vrrp resigned")
        took = time.monotonic() - t_stop
        report(f"v{version} advert_int {advert_int}{' unicast' if unicast else ''}: rvs-vrrp resigned "
               "(priority 0) -> keepalived MASTER (VIP up)", took, 1.0)
        self.assertLess(took, 1.0)
        rvs.proc.wait(timeout=5)
        self.assertIsNotNone(rvs.find("stopped"))

    def test_keepalived_yields_to_rvs_v2_pass(self):
        self.keepalived_yields(2, 1, False, "rvs-pw")

    def test_keepalived_yields_to_rvs_v3_unicast_fast(self):
        self.keepalived_yields(3, 0.1, True, None)


class RvsAgainstRvs(VrrpCase):
    def outage(self, version: int, advert_int: float) -> None:
        a = self.rvs(NS_A, lab.vrrp_instance(150, advert_int, version))
        b = self.rvs(NS_B, lab.vrrp_instance(100, advert_int, version))
        a.wait_state("MASTER", 3 * advert_int + 3)
        b.wait_state("BACKUP", 2)
        time.sleep(max(2 * advert_int, 0.5))
        self.assertEqual(b.states(), ["BACKUP"])
        cap = self.capture()
        t_kill = a.kill(signal.SIGKILL)
        ev = b.wait_state("MASTER", 3 * advert_int + 3)
        took = ev["monotonic"] - t_kill
        bound = master_down(advert_int, 100, version) + 0.1
        report(f"rvs-vrrp vs rvs-vrrp v{version} advert_int {advert_int}: SIGKILL master -> backup MASTER",
               took, bound)
        self.assertLessEqual(took, bound)
        mac = lab.mac_of(NS_B)
        lab.wait_for(lambda: cap.garps(mac=mac), 3, "gratuitous ARP from the new master")
        lab.del_vip(NS_A)  # the killed process could not remove it
        return b

    def test_outage_advert_int_1(self):
        self.outage(2, 1)

    def test_outage_advert_int_0_1(self):
        self.outage(3, 0.1)

    def test_old_master_returns_and_preempts(self):
        b = self.outage(3, 0.1)
        t = time.monotonic()
        a = self.rvs(NS_A, lab.vrrp_instance(150, 0.1, 3))
        a.wait_state("MASTER", 3)
        b.wait_state("BACKUP", 2, after=t)
        self.assertTrue(lab.wait_for(lambda: lab.has_vip(NS_A) and not lab.has_vip(NS_B), 2, "VIP moved back"))

    def test_old_master_returns_nopreempt(self):
        b = self.outage(3, 0.1)
        t = time.monotonic()
        a = self.rvs(NS_A, lab.vrrp_instance(150, 0.1, 3, nopreempt=True))
        a.wait_state("BACKUP", 3)
        time.sleep(1.5)
        self.assertEqual(a.states(), ["BACKUP"])
        self.assertIsNone(b.find("state", "BACKUP", after=t))
        self.assertTrue(lab.has_vip(NS_B))


if __name__ == "__main__":
    unittest.main()
