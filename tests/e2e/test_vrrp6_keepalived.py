"""VRRPv3 over IPv6 end to end: rvs-vrrp (rvsd's VRRP engine) against
Debian's keepalived, in network namespaces on one bridge. The IPv6 mirror of
test_vrrp_keepalived.py (same bounds), with its own namespaces:

    rvs6-a  eth0 fd00:77::1/64 --+
    rvs6-b  eth0 fd00:77::2/64 --+-- br0 in rvs6-sw (MLD snooping off)
    rvs6-c  eth0 fd00:77::3/64 --+   (client: tcpdump, ping, curl)

VIP fd00:77::100. Duplicate address detection is off in the namespaces, so
link-local addresses (the advert sources) are usable at once.

Run as root, alone (the labs share the machine):
    cd tests/e2e && flock /run/rvs-e2e.lock python3 -m unittest -v test_vrrp6_keepalived
RVS_VRRP=/path/to/rvs-vrrp picks the binary (default target/release/rvs-vrrp,
built when missing).

Measured times are printed; the bound asserted is 3 x advert_int + skew
(+ the margin of the IPv4 test) from the moment the master is SIGKILLed. After
each takeover the client's capture must show the new master's unsolicited
neighbour advertisement for the VIP (from the new master's MAC, Override
flag), the client's neighbour entry for the VIP must move to the new master's
MAC, and the VIP (held by the kernel through --manage-vips) must answer ping6
and an HTTP request from the client.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path

import nsutil
import vrrp_lab
from nsutil import nsx, run

NS_SW, NS_A, NS_B, NS_C = "rvs6-sw", "rvs6-a", "rvs6-b", "rvs6-c"
IP6 = {NS_A: "fd00:77::1", NS_B: "fd00:77::2", NS_C: "fd00:77::3"}
VIP6 = "fd00:77::100"
HTTP_PORT = 8086
KEEPALIVED = "keepalived"


# ---------------------------------------------------------------------------
# Topology and helpers
# ---------------------------------------------------------------------------

def topology_down() -> None:
    for ns in (NS_A, NS_B, NS_C, NS_SW):
        run(["ip", "netns", "del", ns], check=False)


def topology_up() -> None:
    topology_down()
    for ns in (NS_SW, NS_A, NS_B, NS_C):
        run(["ip", "netns", "add", ns])
        nsx(ns, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
        nsx(ns, ["ip", "link", "set", "lo", "up"])
    nsx(NS_SW, ["ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0", "mcast_snooping", "0"])
    nsx(NS_SW, ["ip", "link", "set", "br0", "up"])
    for ns, port in ((NS_A, "pa"), (NS_B, "pb"), (NS_C, "pc")):
        nsx(NS_SW, ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        nsx(NS_SW, ["ip", "link", "set", port, "master", "br0", "up"])
        nsx(ns, ["ip", "-6", "addr", "add", f"{IP6[ns]}/64", "dev", "eth0", "nodad"])
        nsx(ns, ["ip", "link", "set", "eth0", "up"])
    for ns in (NS_A, NS_B, NS_C):
        nsutil.wait_for(lambda ns=ns: link_local(ns), 5, what=f"link-local address in {ns}")


def link_local(ns: str) -> str | None:
    out = nsx(ns, ["ip", "-j", "-6", "addr", "show", "dev", "eth0", "scope", "link"]).stdout
    for link in json.loads(out or "[]"):
        for a in link.get("addr_info", []):
            if a.get("scope") == "link" and "tentative" not in a:
                return a.get("local")
    return None


def has_vip6(ns: str) -> bool:
    out = nsx(ns, ["ip", "-j", "-6", "addr", "show", "dev", "eth0"]).stdout
    return any(a.get("local") == VIP6 for link in json.loads(out or "[]") for a in link.get("addr_info", []))


def del_vip6(ns: str) -> None:
    nsx(ns, ["ip", "-6", "addr", "del", f"{VIP6}/128", "dev", "eth0"], check=False)


def neighbour_mac(ns: str, ip: str) -> str | None:
    entry = nsutil.neighbour(ns, ip)
    return (entry or {}).get("lladdr", "").lower() or None


def master_down(advert_int: float, priority: int) -> float:
    """RFC 5798 Master_Down_Interval of a backup with `priority`."""
    return 3 * advert_int + (256 - priority) / 256 * advert_int


def report(what: str, seconds: float, bound: float) -> None:
    print(f"\n  {what}: {seconds * 1000:.1f} ms (bound {bound * 1000:.1f} ms)", file=sys.stderr, flush=True)


def rvs_instance(priority: int, advert_int: float, unicast: bool, **extra) -> dict:
    inst = {"name": "VI_6", "interface": "eth0", "virtual_router_id": 61, "priority": priority,
            "advert_int": advert_int, "version": 3, "virtual_ipaddress": [VIP6],
            "garp_master_delay": 1, "garp_master_repeat": 3}
    if unicast:
        inst["unicast_src_ip"] = IP6[NS_A]
        inst["unicast_peer"] = [IP6[NS_B]]
    inst.update(extra)
    return inst


def keepalived_conf(priority: int, state: str, advert_int: float, unicast: bool) -> str:
    lines = [
        "global_defs {",
        "    router_id rvs_e2e6",
        "    script_user root",
        "    vrrp_garp_master_delay 1",
        "    vrrp_garp_master_repeat 3",
        "}",
        "vrrp_instance VI_6 {",
        f"    state {state}",
        "    interface eth0",
        "    virtual_router_id 61",
        f"    priority {priority}",
        f"    advert_int {advert_int}",
        "    version 3",
    ]
    if unicast:
        lines += [f"    unicast_src_ip {IP6[NS_B]}", "    unicast_peer {", f"        {IP6[NS_A]}", "    }"]
    lines += ["    virtual_ipaddress {", f"        {VIP6}/128 dev eth0", "    }", "}"]
    return "\n".join(lines) + "\n"


class Keepalived6(nsutil.Keepalived):
    """keepalived holding the IPv6 VIP."""

    def __init__(self, ns: str, conf: str, tmp: str):
        super().__init__(ns, conf, Path(tmp) / f"keepalived-{ns}", KEEPALIVED, VIP6)

    def has_vip(self, vip: str | None = None) -> bool:
        return has_vip6(self.ns)

    def stop(self) -> None:
        nsutil.stop_process(self.proc, 10)
        self._kill_vrrp_child()
        if hasattr(self, "_log"):
            self._log.close()
        del_vip6(self.ns)


class NaCapture:
    """tcpdump -e of ICMPv6 neighbour advertisements on the client's eth0."""

    def __init__(self, ns: str = NS_C):
        self.ns = ns
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None

    def start(self) -> "NaCapture":
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "tcpdump", "-i", "eth0", "-n", "-e", "-l", "-vv", "--immediate-mode",
             "icmp6 and ip6[40] == 136"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        # tcpdump prints "listening on" to stderr once the capture runs.
        assert self.proc.stderr
        self.proc.stderr.readline()
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        block = ""
        for line in self.proc.stdout:
            # -vv prints the options on continuation lines: join them.
            if line[:1].isspace():
                block += " " + line.strip()
                self.lines[-1:] = [block]
            else:
                block = line.strip()
                self.lines.append(block)

    def unsolicited_nas(self, mac: str) -> list[str]:
        """NAs for the VIP to ff02::1 from `mac` with the Override flag and
        the target link-layer address option carrying `mac`."""
        return [l for l in list(self.lines)
                if f" {mac} > 33:33:00:00:00:01" in l.lower() and "> ff02::1:" in l and f"tgt is {VIP6}," in l
                and "override" in l.lower() and "solicited" not in l.lower().replace("unsolicited", "")
                and mac in l.lower().split("tgt is", 1)[1]]

    def stop(self) -> None:
        nsutil.stop_process(self.proc, 5)
        if self.proc:
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe:
                    pipe.close()


def setUpModule():
    global KEEPALIVED
    if os.geteuid() != 0:
        raise unittest.SkipTest("the VRRP e2e tests need root (network namespaces, raw sockets)")
    vrrp_lab.ensure_rvs_vrrp()
    KEEPALIVED = vrrp_lab.ensure_keepalived()
    vrrp_lab.ensure_tcpdump()
    topology_up()


def tearDownModule():
    if os.environ.get("RVS_E2E_KEEP") != "1":
        topology_down()


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

class Vrrp6Case(unittest.TestCase):
    def setUp(self):
        self.tmp = vrrp_lab.make_tmp()
        self.procs = []
        for ns in (NS_A, NS_B):
            del_vip6(ns)
        # An HTTP server on every address of A and B: the VIP answers once the
        # kernel holds it.
        self.http = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "-b", "::",
                                       str(HTTP_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      cwd=self.tmp) for ns in (NS_A, NS_B)]
        nsx(NS_C, ["ip", "-6", "neigh", "flush", "dev", "eth0"], check=False)

    def tearDown(self):
        for p in reversed(self.procs):
            p.stop()
        for h in self.http:
            nsutil.stop_process(h, 5)
        for ns in (NS_A, NS_B):
            del_vip6(ns)

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

    def rvs(self, ns: str, instance: dict) -> vrrp_lab.RvsVrrp:
        p = vrrp_lab.RvsVrrp(ns, instance, self.tmp)
        self.procs.append(p)
        return p.start()

    def keepalived(self, ns: str, conf: str) -> Keepalived6:
        p = Keepalived6(ns, conf, self.tmp)
        self.procs.append(p)
        return p.start()

    def capture(self) -> NaCapture:
        c = NaCapture()
        self.addCleanup(c.stop)
        return c.start()

    def client_reaches_vip(self, expect_mac: str) -> None:
        """ping6 and HTTP from the client to the VIP; the client's neighbour
        entry for the VIP is `expect_mac`."""
        ping = nsx(NS_C, ["ping", "-6", "-c", "1", "-W", "2", VIP6], check=False)
        self.assertEqual(ping.returncode, 0, ping.stdout + ping.stderr)
        curl = nsx(NS_C, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                          f"http://[{VIP6}]:{HTTP_PORT}/"], check=False)
        self.assertEqual(curl.stdout.strip(), "200", curl.stderr)
        self.assertEqual(neighbour_mac(NS_C, VIP6), expect_mac)


class RvsAgainstKeepalived6(Vrrp6Case):
    def yield_and_take_over(self, advert_int: float, margin: float, unicast: bool):
        """keepalived (200) is master; rvs-vrrp (100) stays backup; the client
        talks to the VIP through keepalived; keepalived is SIGKILLed; rvs-vrrp
        takes over within the bound, announces the VIP with unsolicited NAs
        and the client follows."""
        ka = self.keepalived(NS_B, keepalived_conf(200, "MASTER", advert_int, unicast))
        vrrp_lab.wait_for(lambda: has_vip6(NS_B), 10, "keepalived's IPv6 VIP")
        rvs = self.rvs(NS_A, rvs_instance(100, advert_int, unicast))
        rvs.wait_state("BACKUP", 5)
        time.sleep(max(2 * master_down(advert_int, 100), 1.0))
        self.assertEqual(rvs.states(), ["BACKUP"], "rvs-vrrp did not yield to keepalived")
        self.assertFalse(has_vip6(NS_A))
        mac_a, mac_b = nsutil.mac_of(NS_A), nsutil.mac_of(NS_B)
        self.client_reaches_vip(mac_b)
        cap = self.capture()
        t_kill = ka.crash()
        ev = rvs.wait_state("MASTER", 3 * advert_int + 5)
        took = ev["monotonic"] - t_kill
        bound = master_down(advert_int, 100) + margin
        report(f"IPv6 v3 advert_int {advert_int}{' unicast' if unicast else ' multicast'}: "
               "keepalived SIGKILLed -> rvs-vrrp MASTER", took, bound)
        self.assertLessEqual(took, bound)
        self.assertGreaterEqual(took, 3 * advert_int - advert_int - 0.05)
        self.assertTrue(vrrp_lab.wait_for(lambda: has_vip6(NS_A), 2, "IPv6 VIP on rvs-vrrp's side"))
        nas = vrrp_lab.wait_for(lambda: cap.unsolicited_nas(mac_a), 3, "unsolicited NA from rvs-vrrp")
        print(f"  unsolicited NA seen: {nas[0]}", file=sys.stderr)
        # The NA (Override) moved the client's entry without a probe timing out.
        vrrp_lab.wait_for(lambda: neighbour_mac(NS_C, VIP6) == mac_a, 2, "client's neighbour entry -> rvs-vrrp's MAC")
        self.client_reaches_vip(mac_a)
        st = rvs.find("state", "MASTER")
        self.assertEqual(st["virtual_ipaddress"], [VIP6])

    def test_multicast_ff02_12(self):
        self.yield_and_take_over(0.5, 0.2, unicast=False)

    def test_unicast_peers(self):
        self.yield_and_take_over(0.5, 0.2, unicast=True)

    def keepalived_yields(self, unicast: bool):
        """rvs-vrrp (200) preempts keepalived (100): keepalived finds nothing
        wrong with our IPv6 adverts; on SIGTERM rvs-vrrp resigns with priority
        0 and keepalived takes over after its skew time."""
        advert_int = 0.1
        ka = self.keepalived(NS_B, keepalived_conf(100, "BACKUP", advert_int, unicast))
        vrrp_lab.wait_for(lambda: has_vip6(NS_B), 10, "keepalived MASTER (IPv6 VIP)")
        cap = self.capture()
        rvs = self.rvs(NS_A, rvs_instance(200, advert_int, unicast))
        rvs.wait_state("MASTER", 3 * advert_int + 5)
        vrrp_lab.wait_for(lambda: not has_vip6(NS_B), 5, "keepalived dropping the IPv6 VIP")
        self.assertGreaterEqual(ka.entered("BACKUP"), 1, ka.log_text())
        self.assertTrue(has_vip6(NS_A))
        mac_a, mac_b = nsutil.mac_of(NS_A), nsutil.mac_of(NS_B)
        vrrp_lab.wait_for(lambda: cap.unsolicited_nas(mac_a), 3, "unsolicited NA from rvs-vrrp")
        time.sleep(max(3 * advert_int, 1.5))
        self.assertEqual(rvs.states(), ["BACKUP", "MASTER"])
        self.assertFalse(has_vip6(NS_B))
        for complaint in ("checksum", "mismatch", "invalid", "not present", "bogus", "ttl", "hop"):
            self.assertNotIn(complaint, ka.log_text().lower(), ka.log_text())
        self.client_reaches_vip(mac_a)
        t_stop = time.monotonic()
        rvs.proc.send_signal(signal.SIGTERM)
        vrrp_lab.wait_for(lambda: has_vip6(NS_B), 5, "keepalived MASTER after rvs-vrrp resigned")
        took = time.monotonic() - t_stop
        report(f"IPv6 v3 advert_int {advert_int}{' unicast' if unicast else ' multicast'}: rvs-vrrp resigned "
               "(priority 0) -> keepalived MASTER (VIP up)",
               took, 1.0)
        self.assertLess(took, 1.0)
        rvs.proc.wait(timeout=5)
        self.assertFalse(has_vip6(NS_A), "rvs-vrrp --manage-vips removed the VIP on leaving")
        vrrp_lab.wait_for(lambda: cap.unsolicited_nas(mac_b), 3, "keepalived's unsolicited NA")
        vrrp_lab.wait_for(lambda: neighbour_mac(NS_C, VIP6) == mac_b, 3, "client's entry back to keepalived's MAC")
        self.client_reaches_vip(mac_b)

    def test_keepalived_yields_multicast(self):
        self.keepalived_yields(unicast=False)

    def test_keepalived_yields_unicast(self):
        self.keepalived_yields(unicast=True)


class RvsAgainstRvs6(Vrrp6Case):
    def test_outage_multicast(self):
        advert_int = 0.1
        a = self.rvs(NS_A, rvs_instance(150, advert_int, False))
        b = self.rvs(NS_B, rvs_instance(100, advert_int, False))
        a.wait_state("MASTER", 3 * advert_int + 3)
        b.wait_state("BACKUP", 2)
        time.sleep(0.5)
        self.assertEqual(b.states(), ["BACKUP"])
        cap = self.capture()
        t_kill = a.kill(signal.SIGKILL)
        ev = b.wait_state("MASTER", 3 * advert_int + 3)
        took = ev["monotonic"] - t_kill
        bound = master_down(advert_int, 100) + 0.1
        report(f"IPv6 rvs-vrrp vs rvs-vrrp advert_int {advert_int}: SIGKILL master -> backup MASTER", took, bound)
        self.assertLessEqual(took, bound)
        del_vip6(NS_A)  # the killed process could not remove it
        mac_b = nsutil.mac_of(NS_B)
        vrrp_lab.wait_for(lambda: cap.unsolicited_nas(mac_b), 3, "unsolicited NA from the new master")
        vrrp_lab.wait_for(lambda: neighbour_mac(NS_C, VIP6) in (None, mac_b), 2, "no stale entry at the client")
        self.client_reaches_vip(mac_b)


if __name__ == "__main__":
    unittest.main()
