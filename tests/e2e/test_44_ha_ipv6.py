"""IPv6 VIP failover between two rvsd (issue 16): VRRPv3 over IPv6 in rvsd,
unsolicited neighbour advertisements seen by the client, connection sync of
IPv6 connections — in the two-director lab with IPv6 (deploy/ha-topology.sh
up6; helpers in halab.py).

Both directors serve the IPv6 VIPs 2001:db8::100 (DR), ::101 (NAT, also UDP
:9001 for the 10 ms prober) and ::102 (FULLNAT, local address
2001:db8:1::200) on :80 (httpd) and :9000 (socat echo); one VRRPv3 instance
VI_6 over IPv6 (ff02::12, or unicast between the directors' global
addresses) holds them with the reals' IPv6 gateway 2001:db8:1::254.
d1 has priority 150, d2 100.

What is shown, each an assertion:
  * the backup neither answers neighbour solicitations for the VIPs, the
    gateway and the local address nor forwards traffic sent to its MAC
    (drop_standby_vip), while the master does both;
  * SIGKILL of the master: the client's outage (10 ms UDP prober over IPv6)
    stays within 3 x advert_int + skew + margin; the client's capture holds
    the new master's unsolicited NAs (ICMPv6 136, Override, target = each
    address, the new master's MAC in the target link-layer option); the
    client's and the reals' neighbour entries move to the new master; curl -6
    to every VIP answers (multicast and unicast adverts);
  * the old master returns with its higher priority and preempts;
  * with connection sync, IPv6 TCP streams through DR, NAT and FULLNAT
    continue byte for byte after the master is SIGKILLed.

Run as root after `cargo build --release -p rvsd -p rvs-control --bins`:
    cd tests/e2e && flock -o /run/rvs-e2e.lock python3 -m unittest test_44_ha_ipv6 -v
Measured figures are printed to stderr.
"""
import json
import os
import sys
import time
import unittest

import halab as lab
import test_40_ha
from halab import (DIRECTORS, DR_VIP6, FNAT_VIP6, GATEWAY6, LIP6, NAT_VIP6, NS_CLIENT)

VIPS6 = (DR_VIP6, NAT_VIP6, FNAT_VIP6)
ADDRESSES6 = VIPS6 + (GATEWAY6, LIP6)     # everything VI_6 holds
# Added to the RFC's Master_Down_Interval: the client sees the takeover once
# the new master's NA has arrived and its dataplane has adopted the VIPs, a
# few ms on a quiet machine (test_40 allows 100 ms), up to ~200 ms measured
# while other builds kept this 2-core machine at a load average of 8-9.
MARGIN = 0.4
FIGURES: list[str] = []


def figure(line: str) -> None:
    FIGURES.append(line)
    lab.log(f"\n  {line}")


def setUpModule():
    lab.require_lab()
    lab.setup6()


def tearDownModule():
    lab.teardown()
    if FIGURES:
        print("\n==== HA IPv6 figures ====\n" + "\n".join(FIGURES) + "\n", file=sys.stderr, flush=True)


def url6(vip: str, port: int = 80) -> str:
    return f"-g 'http://[{vip}]:{port}/'"


def neigh6(ns: str, addr: str) -> str | None:
    """The MAC `ns` holds for `addr` on eth0 (None when it has none)."""
    return lab.neighbour_mac(ns, addr)


class Ipv6HaCase(test_40_ha.HaCase):
    """d1 (150) and d2 (100) with the IPv6 services and VI_6."""

    def pair6(self, advert_int: float, unicast: bool = False, workers: int = 1, services: list[dict] | None = None):
        services = lab.lab_services6() if services is None else services

        def config(n: int, priority: int) -> dict:
            return lab.director_config(n, services, lab.vrrp6_config(n, priority, advert_int, unicast),
                                       workers=workers, ipv6=True)
        d1 = self.director(1, config(1, 150))
        d1.wait_vrrp("MASTER", 3 * advert_int + 5, instances=("VI_6",))
        d2 = self.director(2, config(2, 100))
        d2.wait_vrrp("BACKUP", 5, instances=("VI_6",))
        time.sleep(max(2 * advert_int, 0.3))
        self.assertEqual(d1.vrrp_states(), {"VI_6": "MASTER"}, self.diag())
        self.assertEqual(d2.vrrp_states(), {"VI_6": "BACKUP"}, self.diag())
        return d1, d2

    def na_watch(self) -> lab.NaWatch:
        w = lab.NaWatch().start()
        self.addCleanup(w.cleanup)
        return w

    def resolve_all(self) -> None:
        """The client solicits every VIP, rs1 the gateway and the local
        address (fresh neighbour entries, so the answers are new)."""
        for ns in (NS_CLIENT, lab.real_ns(1)):
            lab.nsx(ns, ["ip", "-6", "neigh", "flush", "dev", "eth0"], check=False)
        for vip in VIPS6:
            lab.nsx(NS_CLIENT, ["ping", "-6", "-c", "1", "-W", "1", vip], check=False)
        for addr in (GATEWAY6, LIP6):
            lab.nsx(lab.real_ns(1), ["ping", "-6", "-c", "1", "-W", "1", addr], check=False)

    def assert_held_by(self, master: lab.Director, backup: lab.Director) -> None:
        """Only `master` answers solicitations for VI_6's addresses: the
        client and rs1 resolve them to its MAC, and no NA from the backup's
        MAC targets one of them."""
        caps = {ns: lab.NaWatch(ns).start() for ns in (NS_CLIENT, lab.real_ns(1))}
        for c in caps.values():
            self.addCleanup(c.cleanup)
        self.resolve_all()
        mac, other = DIRECTORS[master.n]["mac"], DIRECTORS[backup.n]["mac"]
        for ns, addrs in ((NS_CLIENT, VIPS6), (lab.real_ns(1), (GATEWAY6, LIP6))):
            packets = lab.labutil.packets6(caps[ns].stop())
            for addr in addrs:
                self.assertEqual(neigh6(ns, addr), mac, f"{ns} resolved {addr}; master {master.ns} is {mac}\n"
                                 + self.diag())
                from_backup = [p for p in packets if p.eth_src == other and len(p.l4) >= 24
                               and lab.labutil.ip6_str(p.l4[8:24]) == addr]
                self.assertEqual(from_backup, [], f"the backup {backup.ns} advertised {addr}")

    def curl_all(self, what: str) -> None:
        """One HTTP request through each IPv6 VIP, answered by a real."""
        for vip in VIPS6:
            answers = lab.http_spread(url6(vip), 2, max_time=3)
            self.assertTrue(set(answers) <= {"rs1", "rs2"} and answers, f"{what}: curl -6 [{vip}]: {answers}\n"
                            + self.diag())

    def failover(self, advert_int: float, unicast: bool = False):
        """SIGKILL d1 under the 10 ms IPv6 prober: outage bound, the new
        master's unsolicited NAs at the client, neighbours moved, curl -6."""
        d1, d2 = self.pair6(advert_int, unicast)
        self.assert_held_by(d1, d2)
        na = self.na_watch()
        prober = self.prober(vip=NAT_VIP6, duration=60)
        time.sleep(0.5)
        wall_kill = time.time()
        t_kill = d1.kill()
        try:
            d2.wait_vrrp("MASTER", 3 * advert_int + 5, instances=("VI_6",))
        except TimeoutError:
            self.fail("d2 did not take over\n" + self.diag(d2))
        time.sleep(0.6)
        bound = lab.master_down(advert_int, 100, 3) + MARGIN
        res, problem = prober.outage_failure(t_kill, bound)
        outage = f"{res['outage'] * 1000:.0f}" if res["outage"] else "nan"
        figure(f"IPv6 failover (VRRPv3 over IPv6, {'unicast' if unicast else 'ff02::12'}, advert_int "
               f"{advert_int}): SIGKILL master -> client outage {outage} ms (bound 3×advert_int+skew+"
               f"{MARGIN * 1000:.0f}ms = {bound * 1000:.0f} ms; answers after: {res.get('reals_after')})")
        if problem:
            self.fail(f"{problem}\n" + self.diag(d2))
        mac2 = DIRECTORS[2]["mac"]
        na.stop()
        for addr in ADDRESSES6:
            nas = na.unsolicited(addr, mac2)
            self.assertTrue(nas, f"the client saw no unsolicited NA for {addr} from {mac2}; NAs captured: "
                                 f"{lab.labutil.packets6(na.packets)[-20:]}\n" + self.diag(d2))
        first = min(t for t, _ in na.unsolicited(NAT_VIP6, mac2))
        figure(f"  unsolicited NAs from d2 ({mac2}, Override, target = address): "
               f"{ {a: len(na.unsolicited(a, mac2)) for a in ADDRESSES6} }; first for {NAT_VIP6} "
               f"{1000 * (first - wall_kill):.0f} ms after the kill")
        self.assertEqual(neigh6(NS_CLIENT, NAT_VIP6), mac2, "the client's entry for the VIP did not move")
        self.assertEqual(neigh6(lab.real_ns(1), GATEWAY6), mac2, "rs1's entry for its gateway did not move")
        self.curl_all("after the takeover")
        return d1, d2


class Ipv6FailoverTests(Ipv6HaCase):
    def test_0_backup_does_not_answer_or_forward(self):
        """Frames for an IPv6 VIP sent straight to the backup's MAC are dropped
        (drop_standby_vip), not forwarded; the master forwards them."""
        d1, d2 = self.pair6(0.1)
        self.assert_held_by(d1, d2)
        before = d2.stats_counters().get("drop_standby_vip", 0)
        mac2 = DIRECTORS[2]["mac"]
        lab.nsx(NS_CLIENT, ["ip", "-6", "neigh", "replace", NAT_VIP6, "lladdr", mac2, "dev", "eth0",
                            "nud", "permanent"])
        try:
            answers = lab.udp_spread(NAT_VIP6, 9001, 3)
            http = lab.http_spread(url6(NAT_VIP6), 1, max_time=1)
        finally:
            lab.nsx(NS_CLIENT, ["ip", "-6", "neigh", "del", NAT_VIP6, "dev", "eth0"], check=False)
        after = d2.stats_counters().get("drop_standby_vip", 0)
        self.assertEqual(answers, ["ERR"] * 3, "the backup forwarded UDP for an IPv6 VIP it does not hold")
        self.assertTrue(http[0].startswith("ERR"), f"the backup forwarded TCP: {http}")
        self.assertGreaterEqual(after - before, 4, f"drop_standby_vip {before} -> {after}\n" + self.diag(d2))
        self.assertEqual(lab.tally(lab.udp_spread(NAT_VIP6, 9001, 4)), {"rs1": 2, "rs2": 2}, self.diag(d1))
        self.curl_all("through the master")

    def test_1_failover_multicast(self):
        self.failover(0.3)

    def test_2_failover_unicast_and_preempt(self):
        d1, d2 = self.failover(0.3, unicast=True)
        # The old master returns with its higher priority and takes the VIPs back.
        na = self.na_watch()
        prober = self.prober(vip=NAT_VIP6, duration=60)
        time.sleep(0.3)
        t = time.monotonic()
        d1.start()
        try:
            d1.wait_vrrp("MASTER", 5, instances=("VI_6",))
            d2.wait_vrrp("BACKUP", 3, instances=("VI_6",))
        except TimeoutError:
            self.fail("d1 did not preempt\n" + self.diag())
        took = time.monotonic() - t
        time.sleep(0.5)
        res = prober.analyse(t)
        bound = lab.master_down(0.3, 100, 3) + MARGIN
        figure(f"IPv6 preemption (unicast, advert_int 0.3): d1 restarted -> MASTER again in {took * 1000:.0f} ms "
               f"(incl. rvsd start); client's largest gap {res['max_gap'] * 1000:.0f} ms (bound {bound * 1000:.0f})")
        self.assertLessEqual(res["max_gap"], bound, res)
        na.stop()
        mac1 = DIRECTORS[1]["mac"]
        self.assertTrue(na.unsolicited(NAT_VIP6, mac1), "no unsolicited NA from d1 after preempting")
        self.assertEqual(neigh6(NS_CLIENT, NAT_VIP6), mac1)
        self.curl_all("after the preemption")


class Ipv6ConnectionSyncTests(Ipv6HaCase):
    def test_streams_continue_byte_for_byte(self):
        """IPv6 connections synced to the backup (2 workers each) continue
        through it, byte for byte, after the master is SIGKILLed."""
        d1, d2 = self.pair6(0.1, workers=2)
        streams = lab.open_streams({"FULLNAT": FNAT_VIP6, "DR": DR_VIP6, "NAT": NAT_VIP6}, self.tmp, self.addCleanup)
        time.sleep(1.0)
        conns1 = d1.get("/api/v1/connections?limit=100")["connections"]
        try:
            lab.wait_for(lambda: d2.stats_counters().get("conn_synced_in", 0) >= 3, 3,
                         what="IPv6 connections synced to d2")
        except TimeoutError:
            self.fail(f"d2 did not get the IPv6 connections; d1 has {json.dumps(conns1)[:2000]}\n" + self.diag())
        conns2 = d2.get("/api/v1/connections?limit=100")["connections"]
        flows2 = [(c["client"], c["vip"]) for c in conns2]
        self.assertEqual(len(flows2), len(set(flows2)), f"a synced connection is held twice on d2: {flows2}")
        at_kill = {m: len(s.received()) for m, s in streams.items()}
        d1.kill()
        d2.wait_vrrp("MASTER", 5, instances=("VI_6",))
        figure(f"IPv6 connection sync: d2 had {len(conns2)} synced connections when d1 was SIGKILLed "
               f"({', '.join(c['forward'] + ' ' + c['state'] + ' ' + c['vip'] for c in conns2)}); "
               f"bytes received per stream at the kill: {at_kill}")
        for mode, s in streams.items():
            with self.subTest(mode=mode):
                problem = s.failure(f"IPv6 {mode}", at_kill[mode])
                if problem:
                    self.fail(f"{problem}\nd2 connections before the kill: {json.dumps(conns2)[:3000]}\n"
                              + self.diag(d2))
        # FULLNAT's IPv6 local address and port were synced.
        local1 = {c.get("local") for c in conns1 if c["vip"].startswith(f"[{FNAT_VIP6}]")}
        local2 = {c.get("local") for c in conns2 if c["vip"].startswith(f"[{FNAT_VIP6}]")}
        self.assertTrue(local1 and local1 & local2, f"FULLNAT local address:port not synced: d1 {local1} d2 {local2}")
        self.assertTrue(all(str(l).startswith(f"[{LIP6}]:") for l in local1), local1)

    def test_persistence_templates_survive_a_failover(self):
        """A persistent IPv6 NAT service (-M 64): the master syncs the
        client network's template with its connections, the backup lists it
        before the failover and keeps the network on that real after it."""
        services = lab.lab_services6()
        nat80 = next(s for s in services if s["vip"] == NAT_VIP6 and s["port"] == 80 and s["protocol"] == "tcp")
        nat80["persistence"] = {"timeout": 300, "netmask": 64}
        d1, d2 = self.pair6(0.1, workers=2, services=services)
        before = lab.http_spread(url6(NAT_VIP6), 4, max_time=3)
        self.assertEqual(len(set(before)), 1, f"persistence through d1: {before}\n" + self.diag())
        chosen = before[0]
        self.assertIn(chosen, ("rs1", "rs2"), before)

        def templates(d: lab.Director) -> list[dict]:
            conns = d.get("/api/v1/connections?templates=true&limit=100")["connections"]
            return [c for c in conns if c.get("template") and c["vip"].startswith(f"[{NAT_VIP6}]")]

        try:
            lab.wait_for(lambda: templates(d2), 3, what="the template synced to d2")
        except TimeoutError:
            self.fail(f"d2 has no template; d1 has {templates(d1)}\n" + self.diag())
        synced = templates(d2)
        real_ip = lab.real6(int(chosen[2:]))["address"]
        self.assertEqual([c["real"] for c in synced], [f"[{real_ip}]:80"], f"d2's template: {synced}")
        self.assertEqual(synced[0]["client"], "[2001:db8::]:0", synced)
        d1.kill()
        d2.wait_vrrp("MASTER", 5, instances=("VI_6",))
        time.sleep(0.3)
        after = lab.http_spread(url6(NAT_VIP6), 4, max_time=3)
        figure(f"IPv6 persistence across a failover: d1 chose {chosen} for 2001:db8::/64 ({before}); "
               f"d2 held the synced template {synced[0]['client']} -> {synced[0]['real']}; after the kill: {after}")
        self.assertEqual(after, [chosen] * 4, "the client network moved to another real after the failover\n"
                         + self.diag(d2))


if __name__ == "__main__":
    unittest.main()
