"""Issue 16 end to end: IPv6 everywhere, and NAT64 through FULLNAT.

One rvsd (2 workers) with the director's IPv6 addresses 2001:db8::1 and
2001:db8:1::1 next to its IPv4 ones, serving from the IPv6 client
2001:db8::2 (deploy/topology.sh up6):

  DR 2001:db8::100, NAT ::101, TUN ::102, FULLNAT ::103 (IPv6 local addresses
  2001:db8:1::200/201, TOA on :80): tcp :80 (httpd), tcp :9000 (socat echo),
  udp :9053 (echod) on rs1/rs2 by their IPv6 addresses (2001:db8:1::11/12);
  NAT64 ::104: tcp :80 on rs1/rs2 by their IPv4 addresses through FULLNAT
  with the IPv4 local address 10.1.0.204.

What is shown, each an assertion: ND (the client resolves the director and
every VIP to rvsd's MAC by NS/NA) and ICMPv6 echo; per mode HTTP spread over
both reals, a 200 KB stream echoed byte for byte and UDP answered; each
mode's rewrite as the real sees it (DR: only the MACs and the hop limit;
NAT: destination = the real; TUN: an outer IPv6 header from the director;
FULLNAT: source = an IPv6 LIP, DPVS's IPv6 TOA option in the first ACK);
NAT64 reaching the IPv4 reals; TUN path MTU (ICMPv6 Packet Too Big with port
MTU - 40, never a fragment); rvsadm listings in ipvsadm's [v6]:port form;
the SYN proxy on IPv6 (syn_proxy on: HTTP on NAT :8443 to the reals' :80,
200 KB echo streams on NAT and FULLNAT :9443 to their :9000).
"""
import hashlib
import ipaddress
import os
import re
import shutil
import socket
import struct
import tempfile
import time
import unittest

import labutil as lab
from labutil import figure as log
from labutil import CLIENT_IP6, NS_CLIENT, NS_DIR

MODES = ("dr", "nat", "tun", "fullnat")
REALS6 = [lab.real6(1), lab.real6(2)]
REALS4 = [lab.real(1), lab.real(2)]
HTTP_REQUESTS = 20
UDP_REQUESTS = 10
STREAM_BYTES = 200 * 1024
NGINX_PORT = 8088
NGINX_BLOB_BYTES = 1024 * 1024
PORT_MTU = 1500
DIR_MAC = "02:00:00:00:00:01"
ALL_VIPS6 = (lab.DR_VIP6, lab.NAT_VIP6, lab.TUN_VIP6, lab.FNAT_VIP6, lab.NAT64_VIP)
# The SYN proxy's IPv6 services (ports of their own on the NAT/FULLNAT VIPs).
PROXY_HTTP_PORT = 8443
PROXY_ECHO_PORT = 9443
# ipvsadm's forwarding names in listings.
FORWARD_NAMES = {"dr": "Route", "nat": "Masq", "tun": "Tunnel"}


def ipv6_services() -> list[dict]:
    services = []
    for mode in MODES:
        extra = {"toa": True} if mode == "fullnat" else {}
        services.append(lab.mode_service6("tcp", mode, 80, REALS6, **extra))
        services.append(lab.mode_service6("tcp", mode, lab.ECHO_PORT, REALS6))
        services.append(lab.mode_service6("udp", mode, lab.UDP_PORT, REALS6))
    services.append(lab.nat64_service("tcp", 80, REALS4))
    # NAT64 to Debian's nginx on the reals' IPv4 addresses.
    services.append(lab.nat64_service("tcp", NGINX_PORT, REALS4))
    # IPv4 in IPv6: the IPv4 TUN VIP tunnelled to the reals' IPv6 addresses.
    services.append(lab.service("tcp", lab.TUN_VIP, 80, "rr", "tun", REALS6))
    # The SYN proxy on IPv6: HTTP on NAT :8443 (the reals' :80), the echo on
    # NAT and FULLNAT :9443 (the reals' :9000).
    http_reals = [lab.real6(n, port=80) for n in (1, 2)]
    echo_reals = [lab.real6(n, port=lab.ECHO_PORT) for n in (1, 2)]
    services.append(lab.mode_service6("tcp", "nat", PROXY_HTTP_PORT, http_reals, syn_proxy="on"))
    for mode in ("nat", "fullnat"):
        services.append(lab.mode_service6("tcp", mode, PROXY_ECHO_PORT, echo_reals, syn_proxy="on"))
    return services


def setUpModule() -> None:
    if os.geteuid() != 0:
        raise unittest.SkipTest("the e2e suite needs root (network namespaces)")
    lab.setup_topology6(reals=2)


def tearDownModule() -> None:
    lab.teardown_topology6()


def endpoint(text: str) -> tuple[str, int]:
    """An endpoint of the connections API, '[2001:db8::2]:80' (or
    'a.b.c.d:80'), as (compressed address, port), so spellings compare."""
    if text.startswith("["):
        addr, _, port = text[1:].partition("]:")
    else:
        addr, _, port = text.rpartition(":")
    try:
        addr = str(ipaddress.ip_address(addr))
    except ValueError:
        pass
    return addr, int(port) if port.isdigit() else -1


class Ipv6LabTests(unittest.TestCase):
    """The IPv6 lab itself, before any rvsd runs (unittest runs this class
    first): servers, the DR and NAT reply paths and both TUN decapsulations
    with the kernel standing in for the director (topology.sh selfcheck6).
    A failure here is the lab's, not rvsd's."""

    def test_selfcheck6(self):
        cp = lab.run(["bash", str(lab.TOPOLOGY), "selfcheck6"], check=False, timeout=120)
        checks = [l for l in cp.stderr.splitlines() if ": ok: " in l or "FAIL" in l]
        log(f"topology.sh selfcheck6: {sum(': ok: ' in l for l in checks)} checks ok, "
            f"{sum('FAIL' in l for l in checks)} failed")
        self.assertEqual(cp.returncode, 0, f"the IPv6 lab is broken:\n{cp.stderr}")


class Ipv6Tests(lab.RvsdTestCase):
    """IPv6 in every mode, NAT64, ND, PMTU and rvsadm, one rvsd."""

    CONFIG = lab.make_config6(ipv6_services(), workers=2, prefix="rvs-e2e-ipv6")

    def setUp(self):
        super().setUp()
        self.before = lab.worker_counters()

    def moved(self) -> str:
        """The counters that moved since setUp (drops first), for failure
        messages: what the director saw."""
        delta = lab.counters_delta(self.before, lab.worker_counters())
        totals = {}
        for c in delta:
            for k, v in c.items():
                if v and k not in ("generation", "conn_active"):
                    totals[k] = totals.get(k, 0) + v
        drops = {k: v for k, v in totals.items() if k.startswith("drop")}
        rest = {k: v for k, v in totals.items() if not k.startswith("drop")}
        return f"[director counters since the test began: drops {drops}; others {rest}]"

    # -- helpers -------------------------------------------------------------

    def assert_split(self, what: str, answers: list[str], count: int, reals=("rs1", "rs2")):
        counts = lab.tally(answers)
        log(f"{what}: {counts}")
        self.assertEqual(len(answers), count, f"{what}: {answers} {self.moved()}")
        self.assertEqual(set(counts), set(reals), f"{what}: unanswered or unexpected replies: {counts} "
                                                  f"{self.moved()}")
        # rr on each of 2 workers: off an even split by at most one per worker.
        self.assertLessEqual(abs(counts["rs1"] - counts["rs2"]), 2, f"{what}: not rr 50/50: {counts}")

    def capture(self, ns: str, bpf: str = "", directory: str | None = None) -> lab.Capture:
        cap = lab.Capture(ns, "eth0", bpf=bpf, directory=directory)
        self.addCleanup(cap.stop)
        return cap.start()

    def captured(self, vip: str, requests: int = 6):
        """Curl http://[vip]/ `requests` times, capturing at the client and
        at rs1/rs2. Returns (answers, client IPv6 packets, {n: all packets})."""
        tmp = tempfile.TemporaryDirectory(prefix="rvs-cap6-")
        self.addCleanup(tmp.cleanup)
        caps = {"client": self.capture(NS_CLIENT, directory=tmp.name)}
        for n in (1, 2):
            caps[n] = self.capture(lab.real_ns(n), directory=tmp.name)
        answers = lab.http_requests(lab.url6(vip), requests)
        client = lab.packets6(caps.pop("client").stop())
        at_rs = {n: cap.stop() for n, cap in caps.items()}
        self.assertEqual(len(answers), requests, f"{answers} {self.moved()}")
        self.assertEqual(set(answers) - {"rs1", "rs2"}, set(), f"{answers} {self.moved()}")
        return answers, client, at_rs

    def setup_macs(self):
        self.dp0_mac = lab.mac_of(NS_DIR, "dp0")
        self.client_mac = lab.mac_of(NS_CLIENT, "eth0")
        self.rs_mac = {n: lab.mac_of(lab.real_ns(n), "eth0") for n in (1, 2)}

    def client_sent(self, client: list[lab.Packet6], vip: str) -> dict:
        """The client's TCP packets to vip:80, keyed by their TCP segment."""
        return {p.l4: p for p in client
                if p.is_tcp and p.eth_src == self.client_mac and p.ip_dst == vip and p.dport == 80}

    def assert_direct_replies(self, client: list[lab.Packet6], vip: str):
        """DR/TUN: replies reach the client from the VIP, straight from a real."""
        replies = [p for p in client if p.is_tcp and p.ip_dst == CLIENT_IP6 and p.sport == 80]
        self.assertTrue(replies, f"no replies at the client {self.moved()}")
        for p in replies:
            self.assertEqual(p.ip_src, vip, p)
            self.assertIn(p.eth_src, self.rs_mac.values(), f"reply not straight from a real: {p}")
            self.assertTrue(p.l4_checksum_ok(), f"bad checksum: {p}")

    @staticmethod
    def hlim_decremented(ip: bytes) -> bytes:
        """The IPv6 packet as a router forwards it: hop limit one less."""
        b = bytearray(ip)
        b[7] -= 1
        return bytes(b)

    # -- 1: neighbour discovery and echo ------------------------------------

    def test_1_nd_and_echo(self):
        lab.nsx(NS_CLIENT, ["ip", "-6", "neigh", "flush", "dev", "eth0"])
        lab.nsx(lab.real_ns(1), ["ip", "-6", "neigh", "flush", "dev", "eth0"])
        tmp = tempfile.TemporaryDirectory(prefix="rvs-cap6-")
        self.addCleanup(tmp.cleanup)
        cap = self.capture(NS_CLIENT, "icmp6", tmp.name)
        targets = (lab.DIR_IPS6[0],) + ALL_VIPS6
        pings = {}
        for addr in targets:
            cp = lab.nsx(NS_CLIENT, ["ping", "-6", "-n", "-c", "1", "-W", "2", addr], check=False)
            pings[addr] = cp.returncode
        rs1_ping = lab.nsx(lab.real_ns(1), ["ping", "-6", "-n", "-c", "1", "-W", "2", lab.DIR_IPS6[1]],
                           check=False).returncode
        pkts = lab.packets6(cap.stop())
        neigh = {addr: lab.neighbour6(NS_CLIENT, addr) for addr in targets}
        rs1_neigh = lab.neighbour6(lab.real_ns(1), lab.DIR_IPS6[1])
        nas = {lab.nd_target(p): p for p in pkts if p.icmp_type == 136 and p.eth_src == DIR_MAC}
        replies = {p.ip_src for p in pkts if p.icmp_type == 129 and p.ip_dst == CLIENT_IP6
                   and p.eth_src == DIR_MAC and p.l4_checksum_ok()}
        log(f"ND at the client: {neigh}; rs1 -> {lab.DIR_IPS6[1]}: {rs1_neigh}; "
            f"NAs from rvsd for {sorted(t for t in nas if t)}; ping rc {pings}, rs1 ping rc {rs1_ping}")
        for addr in targets:
            self.assertEqual(neigh[addr], DIR_MAC, f"the client did not resolve {addr} to rvsd's MAC "
                                                   f"({lab.nsx(NS_CLIENT, ['ip', '-6', 'neigh']).stdout}) "
                                                   f"{self.moved()}")
            na = nas.get(addr)
            self.assertIsNotNone(na, f"no Neighbor Advertisement from rvsd for {addr} in the client's "
                                     f"capture: {[p for p in pkts if p.icmp_type in (135, 136)]}")
            self.assertEqual(lab.nd_link_addr(na), DIR_MAC, f"NA for {addr} without rvsd's MAC: {na}")
            self.assertTrue(na.l4_checksum_ok(), f"bad ICMPv6 checksum in the NA: {na}")
            self.assertEqual(na.hlim, 255, f"an NA must have hop limit 255: {na}")
            self.assertEqual(pings[addr], 0, f"ping6 {addr} not answered {self.moved()}")
            self.assertIn(addr, replies, f"no echo reply from {addr} by rvsd in the capture")
        self.assertEqual(rs1_neigh, DIR_MAC, f"rs1 did not resolve {lab.DIR_IPS6[1]} to rvsd's MAC")
        self.assertEqual(rs1_ping, 0, f"ping6 {lab.DIR_IPS6[1]} from rs1 not answered {self.moved()}")

    # -- 2: HTTP per mode -------------------------------------------------------

    def http(self, mode: str):
        vip = lab.MODE_VIPS6[mode]
        self.assert_split(f"{mode} {lab.url6(vip)} x{HTTP_REQUESTS}",
                          lab.http_requests(lab.url6(vip), HTTP_REQUESTS), HTTP_REQUESTS)

    def test_2_http_dr(self):
        self.http("dr")

    def test_2_http_nat(self):
        self.http("nat")

    def test_2_http_tun(self):
        self.http("tun")

    def test_2_http_fullnat(self):
        self.http("fullnat")

    # -- 3: TUN path MTU (before the streams teach the client the MTU) ---------

    def test_3_tun_pmtu(self):
        lab.nsx(NS_CLIENT, ["ip", "-6", "route", "flush", "cache"], check=False)
        route = lab.nsx(NS_CLIENT, ["ip", "-6", "route", "get", lab.TUN_VIP6]).stdout
        self.assertNotIn(" mtu ", route, f"client already has a path MTU for the TUN VIP: {route}")
        tmp = tempfile.TemporaryDirectory(prefix="rvs-cap6-")
        self.addCleanup(tmp.cleanup)
        cap_client = self.capture(NS_CLIENT, "icmp6", tmp.name)
        caps_rs = {n: self.capture(lab.real_ns(n), "ip6 proto 41 or ip6 proto 44", tmp.name) for n in (1, 2)}
        data = os.urandom(STREAM_BYTES)
        s = lab.SocatStream(f"[{lab.TUN_VIP6}]", lab.ECHO_PORT, data=data)
        self.addCleanup(s.cleanup)
        try:
            rc = s.wait(60)
        except Exception:
            rc = None
        client = lab.packets6(cap_client.stop())
        at_rs = {n: lab.packets6(c.stop()) for n, c in caps_rs.items()}
        route = lab.nsx(NS_CLIENT, ["ip", "-6", "route", "get", lab.TUN_VIP6]).stdout
        ok, what = s.check()
        ptbs = [p for p in client if p.icmp_type == 2 and p.ip_dst == CLIENT_IP6]
        mtus = sorted({struct.unpack("!I", p.l4[4:8])[0] for p in ptbs if len(p.l4) >= 8})
        fragments = [p for pkts in at_rs.values() for p in pkts if p.proto == 44 or
                     (p.inner() is not None and getattr(p.inner(), "proto", 0) == 44)]
        biggest = max((len(p.ip) for pkts in at_rs.values() for p in pkts), default=0)
        log(f"TUN {STREAM_BYTES}-byte upload: {what}; Packet Too Big x{len(ptbs)} mtu {mtus} from "
            f"{sorted({(p.ip_src, p.eth_src) for p in ptbs})}; largest tunnel packet at the reals "
            f"{biggest} B, fragments {len(fragments)}; client route now: {' '.join(route.split())}; "
            f"{self.moved()}")
        self.assertTrue(ptbs, f"no ICMPv6 Packet Too Big reached the client {self.moved()}")
        for p in ptbs:
            self.assertEqual(p.eth_src, self.dir_mac(), f"Packet Too Big not from rvsd: {p}")
            self.assertIn(p.ip_src, lab.DIR_IPS6 + (lab.TUN_VIP6,), f"Packet Too Big from {p.ip_src}")
            self.assertTrue(p.l4_checksum_ok(), f"bad ICMPv6 checksum: {p}")
            quoted = lab.ipv6_of_ip(p.payload[4:])
            self.assertIsNotNone(quoted, f"Packet Too Big quotes no IPv6 packet: {p}")
            self.assertEqual((quoted.ip_src, quoted.ip_dst), (CLIENT_IP6, lab.TUN_VIP6),
                             f"Packet Too Big quotes another packet: {quoted}")
        self.assertEqual(mtus, [PORT_MTU - 40], "Packet Too Big MTU is not the port MTU - 40")
        self.assertEqual(fragments, [], "the director fragmented (IPv6 never fragments on the way)")
        self.assertLessEqual(biggest, PORT_MTU, "a tunnel packet larger than the port MTU")
        self.assertTrue(ok, what)
        self.assertEqual(rc, 0, f"socat failed: {s.err.read_text() if s.err.exists() else ''}")
        self.assertRegex(route, rf"mtu {PORT_MTU - 40}\b", "the client did not learn the tunnel's path MTU")

    def dir_mac(self) -> str:
        return lab.mac_of(NS_DIR, "dp0")

    # -- 4: a 200 KB stream per mode -------------------------------------------

    def stream(self, mode: str, port: int = lab.ECHO_PORT):
        vip = lab.MODE_VIPS6[mode]
        data = os.urandom(STREAM_BYTES)
        s = lab.SocatStream(f"[{vip}]", port, data=data)
        self.addCleanup(s.cleanup)
        t0 = time.monotonic()
        try:
            rc = s.wait(60)
        except Exception:
            self.fail(f"{mode}: the {STREAM_BYTES}-byte stream did not finish in 60 s "
                      f"({len(s.received())} bytes back) {self.moved()}")
        ok, what = s.check()
        log(f"{mode} stream [{vip}]:{port}: {what} in {time.monotonic() - t0:.2f} s (socat rc {rc})")
        self.assertTrue(ok, f"{what} {self.moved()}")
        self.assertEqual(rc, 0, f"socat failed: {s.err.read_text()}")

    def test_4_stream_dr(self):
        self.stream("dr")

    def test_4_stream_nat(self):
        self.stream("nat")

    def test_4_stream_tun(self):
        self.stream("tun")

    def test_4_stream_fullnat(self):
        self.stream("fullnat")

    # -- 5: UDP per mode --------------------------------------------------------

    def udp(self, mode: str):
        vip = lab.MODE_VIPS6[mode]
        self.assert_split(f"{mode} udp [{vip}]:{lab.UDP_PORT} x{UDP_REQUESTS}",
                          lab.udp_requests6(vip, lab.UDP_PORT, UDP_REQUESTS), UDP_REQUESTS)

    def test_5_udp_dr(self):
        self.udp("dr")

    def test_5_udp_nat(self):
        self.udp("nat")

    def test_5_udp_tun(self):
        self.udp("tun")

    def test_5_udp_fullnat(self):
        self.udp("fullnat")

    # -- 6: each mode's rewrite at the real server -------------------------------

    def test_6_wire_dr(self):
        self.setup_macs()
        answers, client, at_rs = self.captured(lab.DR_VIP6)
        sent = self.client_sent(client, lab.DR_VIP6)
        self.assertTrue(sent, "no client->VIP packets captured at the client")
        seen = 0
        for n, pkts in at_rs.items():
            for p in (p for p in lab.packets6(pkts) if p.is_tcp and p.eth_dst == self.rs_mac[n] and p.dport == 80):
                orig = sent.get(p.l4)
                self.assertIsNotNone(orig, f"rs{n}: TCP segment matches nothing the client sent: {p}")
                self.assertEqual(p.ip.hex(), self.hlim_decremented(orig.ip).hex(),
                                 f"DR changed the IPv6 packet beyond the hop limit: {orig} -> {p}")
                self.assertEqual((p.ip_dst, p.eth_src, p.eth_dst), (lab.DR_VIP6, self.dp0_mac, self.rs_mac[n]), p)
                seen += 1
        log(f"dr on the wire: {seen} client packets at the reals, dst = the VIP, only MACs and hop limit changed")
        self.assertGreaterEqual(seen, 3 * len(answers), f"too few client packets reached the reals {self.moved()}")
        self.assert_direct_replies(client, lab.DR_VIP6)

    def test_6_wire_nat(self):
        self.setup_macs()
        answers, client, at_rs = self.captured(lab.NAT_VIP6)
        seen = 0
        for n, pkts in at_rs.items():
            for p in lab.packets6(pkts):
                if p.is_tcp and p.eth_dst == self.rs_mac[n] and p.dport == 80:
                    self.assertEqual((p.ip_src, p.ip_dst), (CLIENT_IP6, lab.real_ip6(n)), p)
                    self.assertEqual(p.eth_src, self.dp0_mac, p)
                    self.assertTrue(p.l4_checksum_ok(), f"bad checksum after NAT: {p}")
                    seen += 1
                elif p.is_tcp and p.eth_src == self.rs_mac[n] and p.sport == 80:
                    self.assertEqual((p.ip_src, p.ip_dst, p.eth_dst), (lab.real_ip6(n), CLIENT_IP6, self.dp0_mac), p)
        log(f"nat on the wire: {seen} packets client -> real address at the reals")
        self.assertGreaterEqual(seen, 3 * len(answers), f"too few packets at the reals {self.moved()}")
        replies = [p for p in client if p.is_tcp and p.ip_dst == CLIENT_IP6 and p.sport == 80]
        self.assertTrue(replies, "no replies at the client")
        for p in replies:
            self.assertEqual((p.ip_src, p.eth_src), (lab.NAT_VIP6, self.dp0_mac), p)
            self.assertTrue(p.l4_checksum_ok(), f"bad checksum after reverse NAT: {p}")

    def test_6_wire_tun(self):
        self.setup_macs()
        answers, client, at_rs = self.captured(lab.TUN_VIP6)
        sent = self.client_sent(client, lab.TUN_VIP6)
        seen = 0
        for n, pkts in at_rs.items():
            pkts6 = lab.packets6(pkts)
            self.assertFalse([p for p in pkts6 if p.is_tcp and p.ip_dst == lab.TUN_VIP6],
                             f"rs{n}: un-encapsulated packet to the VIP on the wire")
            for p in (p for p in pkts6 if p.proto == 41):
                inner = p.inner()
                if inner is None or not (inner.ip_dst == lab.TUN_VIP6 and inner.dport == 80):
                    continue
                self.assertIn(p.ip_src, lab.DIR_IPS6, f"outer source is not the director's: {p}")
                self.assertEqual(p.ip_dst, lab.real_ip6(n), p)
                self.assertEqual((p.eth_src, p.eth_dst), (self.dp0_mac, self.rs_mac[n]), p)
                self.assertEqual(p.next_header, 41, f"outer header followed by extension headers: {p}")
                orig = sent.get(inner.l4)
                self.assertIsNotNone(orig, f"rs{n}: inner packet matches nothing the client sent: {inner}")
                self.assertEqual(inner.ip.hex(), self.hlim_decremented(orig.ip).hex(),
                                 f"TUN changed the inner packet beyond the hop limit: {orig} -> {inner}")
                self.assertEqual(len(p.ip), len(inner.ip) + 40, "outer length is not inner + 40")
                seen += 1
        log(f"tun on the wire: {seen} IPv6-in-IPv6 packets director -> real, inner = the client's packet to the VIP")
        self.assertGreaterEqual(seen, 3 * len(answers), f"too few tunnelled packets at the reals {self.moved()}")
        self.assert_direct_replies(client, lab.TUN_VIP6)

    def test_6_wire_tun_ipv4_in_ipv6(self):
        """An IPv4 VIP whose TUN reals are IPv6 addresses: the client's IPv4
        packets reach the reals inside IPv6 (next header 4) from the
        director, and the reals answer the client straight from the VIP."""
        self.setup_macs()
        tmp = tempfile.TemporaryDirectory(prefix="rvs-cap6-")
        self.addCleanup(tmp.cleanup)
        caps = {n: self.capture(lab.real_ns(n), "ip6 proto 4", tmp.name) for n in (1, 2)}
        cap_client = self.capture(NS_CLIENT, f"tcp and host {lab.TUN_VIP}", tmp.name)
        answers = lab.http_requests(f"http://{lab.TUN_VIP}/", 6)
        at_rs = {n: lab.packets6(c.stop()) for n, c in caps.items()}
        client = cap_client.stop()
        self.assert_split(f"tun ipv4-in-ipv6 http://{lab.TUN_VIP}/ x6", answers, 6)
        seen = 0
        for n, pkts in at_rs.items():
            for p in (p for p in pkts if p.proto == 4):
                inner = p.inner()
                self.assertIsNotNone(inner, f"rs{n}: no IPv4 packet inside {p}")
                self.assertEqual((inner.ip_dst, inner.dport), (lab.TUN_VIP, 80), f"rs{n}: inner packet {inner}")
                self.assertIn(p.ip_src, lab.DIR_IPS6, f"outer source is not the director's: {p}")
                self.assertEqual((p.ip_dst, p.eth_src, p.eth_dst), (lab.real_ip6(n), self.dp0_mac, self.rs_mac[n]), p)
                self.assertEqual(len(p.ip), len(inner.ip) + 40, "outer length is not inner + 40")
                seen += 1
        log(f"tun ipv4-in-ipv6 on the wire: {seen} packets director -> real, inner = the client's IPv4 packet to the VIP")
        self.assertGreaterEqual(seen, 3 * len(answers), f"too few tunnelled packets at the reals {self.moved()}")
        replies = [p for p in client if p.is_tcp and p.ip_src == lab.TUN_VIP and p.sport == 80]
        self.assertTrue(replies, "no replies at the client")
        self.assertFalse([p for p in replies if p.eth_src == self.dp0_mac], "replies came through the director")

    def test_6_wire_fullnat_toa(self):
        self.setup_macs()
        answers, client, at_rs = self.captured(lab.FNAT_VIP6)
        lips = set(lab.LIPS6[:2])
        table = {endpoint(c["local"]): endpoint(c["client"])
                 for c in lab.connections(service=f"tcp/{lab.FNAT_VIP6}/80") if c.get("local")}
        client_ports = {p.sport for p in client if p.is_tcp and p.ip_dst == lab.FNAT_VIP6 and p.syn}
        conns = {}
        for n, pkts in at_rs.items():
            for p in lab.packets6(pkts):
                if p.is_tcp and p.eth_dst == self.rs_mac[n] and p.dport == 80:
                    self.assertIn(p.ip_src, lips, f"FULLNAT source is not an IPv6 LIP: {p}")
                    self.assertEqual((p.ip_dst, p.eth_src), (lab.real_ip6(n), self.dp0_mac), p)
                    self.assertTrue(p.l4_checksum_ok(), f"bad checksum after FULLNAT: {p}")
                    conns.setdefault((n, p.ip_src, p.sport), []).append(p)
                elif p.is_tcp and p.eth_src == self.rs_mac[n] and p.sport == 80:
                    self.assertIn(p.ip_dst, lips, f"real's reply not to a LIP: {p}")
                    self.assertEqual(p.eth_dst, self.dp0_mac, p)
        self.assertEqual(len(conns), len(answers), f"one connection per request at the reals: {list(conns)} "
                                                   f"{self.moved()}")
        toas = []
        for (n, lip, lport), pkts in conns.items():
            self.assertTrue(pkts[0].syn, f"first packet of [{lip}]:{lport} is not the SYN: {pkts[0]}")
            first_ack = next((p for p in pkts[1:] if p.flags & 0x10 and not p.flags & 0x02), None)
            self.assertIsNotNone(first_ack, f"no ACK from [{lip}]:{lport}")
            raw = [(k, d) for k, d in lab.tcp_options6(first_ack) if k == 254]
            self.assertTrue(raw, f"no TOA option (kind 254) in the first ACK of [{lip}]:{lport}: "
                                 f"options {lab.tcp_options6(first_ack)}")
            self.assertEqual(len(raw[0][1]) + 2, 20, f"IPv6 TOA is not DPVS's 20-byte layout: {raw}")
            toa = lab.toa6_of(first_ack)
            self.assertEqual(toa[0], CLIENT_IP6, "TOA does not carry the client's IPv6 address")
            self.assertIn(toa[1], client_ports, "TOA port is not one of the client's ports")
            self.assertEqual(table.get((lip, lport)), (toa[0], toa[1]),
                             f"TOA {toa} disagrees with the director's connection table {table}")
            self.assertEqual([p for p in pkts if p is not first_ack and lab.toa6_of(p)], [],
                             "TOA inserted into more than the first ACK")
            toas.append(f"[{lip}]:{lport}<-[{toa[0]}]:{toa[1]}")
        log(f"fullnat on the wire: sources {sorted({k[1] for k in conns})}, IPv6 TOA {toas}")
        replies = [p for p in client if p.is_tcp and p.ip_dst == CLIENT_IP6 and p.sport == 80]
        self.assertTrue(replies, "no replies at the client")
        for p in replies:
            self.assertEqual((p.ip_src, p.eth_src), (lab.FNAT_VIP6, self.dp0_mac), p)
            self.assertTrue(p.l4_checksum_ok(), f"bad checksum towards the client: {p}")

    # -- 7: NAT64 -----------------------------------------------------------------

    def test_7_nat64(self):
        self.setup_macs()
        answers, client, at_rs = self.captured(lab.NAT64_VIP, requests=HTTP_REQUESTS)
        self.assert_split(f"NAT64 {lab.url6(lab.NAT64_VIP)} x{HTTP_REQUESTS}", answers, HTTP_REQUESTS)
        seen, sources = 0, set()
        for n, pkts in at_rs.items():
            self.assertEqual([p for p in lab.packets6(pkts) if p.is_tcp and p.dport == 80], [],
                             f"rs{n}: IPv6 reached an IPv4 real of the NAT64 service")
            for p in pkts:
                if p.is_tcp and p.eth_dst == self.rs_mac[n] and p.dport == 80:
                    self.assertIn(p.ip_src, lab.NAT64_LIPS, f"NAT64 source is not an IPv4 LIP: {p}")
                    self.assertEqual((p.ip_dst, p.eth_src), (lab.real_ip(n), self.dp0_mac), p)
                    self.assertTrue(p.ip_checksum_ok() and p.l4_checksum_ok(), f"bad checksum after NAT64: {p}")
                    sources.add(p.ip_src)
                    seen += 1
        log(f"nat64 on the wire: {seen} IPv4 packets at the reals from {sorted(sources)}")
        self.assertGreaterEqual(seen, 3 * len(answers), f"too few IPv4 packets at the reals {self.moved()}")
        replies = [p for p in client if p.is_tcp and p.ip_dst == CLIENT_IP6 and p.sport == 80]
        self.assertTrue(replies, "no IPv6 replies at the client")
        for p in replies:
            self.assertEqual((p.ip_src, p.eth_src), (lab.NAT64_VIP, self.dp0_mac), p)
            self.assertTrue(p.l4_checksum_ok(), f"bad checksum towards the client: {p}")

    def start_nginx(self, n: int, root: str) -> None:
        """Debian's nginx on rs`n`'s IPv4 address only, port NGINX_PORT,
        serving `root`, its access log naming each client's address."""
        conf = os.path.join(root, f"nginx-rs{n}.conf")
        with open(conf, "w") as f:
            f.write(f"""user root;
worker_processes 1;
pid {root}/nginx-rs{n}.pid;
error_log {root}/nginx-rs{n}.error.log;
events {{ worker_connections 64; }}
http {{
    access_log {root}/nginx-rs{n}.access.log;
    client_body_temp_path {root}/body-rs{n};
    proxy_temp_path {root}/proxy-rs{n};
    fastcgi_temp_path {root}/fastcgi-rs{n};
    uwsgi_temp_path {root}/uwsgi-rs{n};
    scgi_temp_path {root}/scgi-rs{n};
    server {{
        listen {lab.real_ip(n)}:{NGINX_PORT};
        root {root}/www;
        location = /who {{ return 200 "rs{n}\\n"; }}
    }}
}}
""")
        lab.nsx(lab.real_ns(n), ["nginx", "-t", "-q", "-c", conf])
        lab.nsx(lab.real_ns(n), ["nginx", "-c", conf])
        self.addCleanup(lab.nsx, lab.real_ns(n), ["nginx", "-c", conf, "-s", "stop"], check=False)

    def test_7_nat64_to_nginx(self):
        """An IPv6 client fetches from Debian's nginx on the IPv4 reals through
        the NAT64 VIP: both reals answer, a 1 MB file arrives byte for byte,
        and nginx logs the IPv4 local address as its client."""
        if not shutil.which("nginx"):
            self.fail("nginx is missing (deploy/setup.sh installs nginx-light)")
        tmp = tempfile.mkdtemp(prefix="rvs-nginx-")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.makedirs(os.path.join(tmp, "www"))
        blob = os.urandom(NGINX_BLOB_BYTES)
        with open(os.path.join(tmp, "www", "blob"), "wb") as f:
            f.write(blob)
        for n in (1, 2):
            self.start_nginx(n, tmp)
        base = f"http://[{lab.NAT64_VIP}]:{NGINX_PORT}"
        who = lab.http_requests(f"{base}/who", 6)
        self.assert_split(f"NAT64 to nginx {base}/who x6", who, 6)
        want = hashlib.sha256(blob).hexdigest()
        for i in range(4):
            cp = lab.nsx(NS_CLIENT, ["curl", "-sS", "-g", "--max-time", "30", "-o", "-", f"{base}/blob"],
                         text=False, timeout=40)
            got = hashlib.sha256(cp.stdout).hexdigest()
            self.assertEqual((len(cp.stdout), got), (NGINX_BLOB_BYTES, want),
                             f"fetch {i}: the file differs after NAT64 {self.moved()}")
        clients = set()
        for n in (1, 2):
            with open(os.path.join(tmp, f"nginx-rs{n}.access.log")) as f:
                clients |= {line.split()[0] for line in f if line.strip()}
        log(f"nginx behind NAT64: /who {lab.tally(who)}, 4 x {NGINX_BLOB_BYTES} B byte for byte, "
            f"nginx's clients {sorted(clients)}")
        self.assertEqual(clients, set(lab.NAT64_LIPS), "nginx saw other clients than the NAT64 local address")

    # -- 8: rvsadm listings as ipvsadm prints IPv6 --------------------------------

    def test_8_rvsadm(self):
        listing = lab.rvsadm("-Ln").stdout
        log("rvsadm -Ln (IPv6 part):\n    " + "\n    ".join(
            l for l in listing.splitlines() if "[" in l or l.startswith(("Prot", "  -> Remote"))))
        for mode in MODES:
            vip = lab.MODE_VIPS6[mode]
            self.assertRegex(listing, rf"(?m)^TCP  \[{re.escape(vip)}\]:80 rr\b", f"-Ln:\n{listing}")
            self.assertRegex(listing, rf"(?m)^UDP  \[{re.escape(vip)}\]:{lab.UDP_PORT} rr\b", f"-Ln:\n{listing}")
            for n in (1, 2):
                fwd = FORWARD_NAMES.get(mode, r"\S+")
                self.assertRegex(listing, rf"(?m)^  -> \[{re.escape(lab.real_ip6(n))}\]:80 +{fwd} +1 +\d+ +\d+",
                                 f"-Ln:\n{listing}")
        self.assertRegex(listing, rf"(?m)^TCP  \[{re.escape(lab.NAT64_VIP)}\]:80 rr\b", f"-Ln:\n{listing}")
        self.assertRegex(listing, r"(?m)^  -> 10\.1\.0\.11:80 +\S+ +1 ", f"-Ln:\n{listing}")
        # The other listings, and one service named as ipvsadm takes it.
        for extra in ("--stats", "--rate"):
            out = lab.rvsadm("-Ln", extra).stdout
            self.assertRegex(out, rf"(?m)^TCP  \[{re.escape(lab.DR_VIP6)}\]:80 +\d+", f"-Ln {extra}:\n{out}")
            self.assertRegex(out, rf"(?m)^  -> \[{re.escape(lab.real_ip6(1))}\]:80 +\d+", f"-Ln {extra}:\n{out}")
        one = lab.rvsadm("-Ln", "-t", f"[{lab.DR_VIP6}]:80").stdout
        services = [l for l in one.splitlines() if re.match(r"^(TCP|UDP) ", l)]
        self.assertEqual(services, [f"TCP  [{lab.DR_VIP6}]:80 rr"], f"-Ln -t [{lab.DR_VIP6}]:80:\n{one}")
        # One open connection through NAT, in -lnc.
        sock = lab.ns_socket(NS_CLIENT, socket.AF_INET6)
        self.addCleanup(sock.close)
        sock.settimeout(3)
        sock.connect((lab.NAT_VIP6, lab.ECHO_PORT))
        banner = lab.read_line(sock).decode().strip()
        lport = sock.getsockname()[1]
        conns = lab.rvsadm("-lnc").stdout
        rows = [l.split() for l in conns.splitlines()
                if f"[{CLIENT_IP6}]:{lport}" in l.split()]
        log(f"rvsadm -lnc: {[' '.join(r) for r in rows]} (banner {banner!r})")
        self.assertEqual(len(rows), 1, f"-lnc has no single row for [{CLIENT_IP6}]:{lport}:\n{conns}")
        row = rows[0]
        self.assertEqual(row[0], "TCP", row)
        self.assertEqual(row[2:5], ["ESTABLISHED", f"[{CLIENT_IP6}]:{lport}", f"[{lab.NAT_VIP6}]:{lab.ECHO_PORT}"],
                         f"-lnc row: {row}")
        self.assertEqual(row[5], f"[{lab.real_ip6(int(banner[-1]))}]:{lab.ECHO_PORT}"
                         if re.fullmatch(r"rs\d", banner) else "", f"-lnc destination: {row}")

    # -- 9: REST capture of an IPv6 service ---------------------------------------

    def test_9_rest_capture_of_the_ipv6_nat_service(self):
        """GET /api/v1/capture?service=tcp/2001:db8::101/80 while curl -6
        runs: the pcapng holds the client's and the reals' frames, each as
        received and as sent, and nothing but the service's."""
        import threading
        query = f"service=tcp/{lab.NAT_VIP6}/80&count=40&seconds=30"
        cmd = ["curl", "-s", "-S", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"]
        token = self.CONFIG.get("api", {}).get("token")
        if token:
            cmd += ["-H", f"Authorization: Bearer {token}"]
        cmd.append(f"{lab.API}/api/v1/capture?{query}")
        result = {}

        def capture():
            result["cp"] = lab.nsx(NS_DIR, cmd, check=False, timeout=70, text=False)

        t = threading.Thread(target=capture)
        t.start()
        time.sleep(1.0)  # the workers are armed before the traffic starts
        answers = lab.http_requests(lab.url6(lab.NAT_VIP6), 8)
        t.join(timeout=90)
        self.assertFalse(t.is_alive(), "the capture did not end")
        self.assertEqual(set(answers) - {"rs1", "rs2"}, set(), f"{answers} {self.moved()}")
        body, _, status = result["cp"].stdout.rpartition(b"\n")
        self.assertEqual(status, b"200", body[:300])
        # pcapng: blocks of (type, total length, body); enhanced packets (type 6)
        # carry the frame and an epb_flags option (code 2: 1 inbound, 2 outbound).
        self.assertEqual(body[:4], b"\x0a\x0d\x0d\x0a", "not a pcapng")
        frames, off = [], 0
        while off + 12 <= len(body):
            btype, blen = struct.unpack_from("<II", body, off)
            self.assertGreaterEqual(blen, 12, f"a bad pcapng block at {off}")
            if btype == 6:
                caplen = struct.unpack_from("<I", body, off + 20)[0]
                data = body[off + 28:off + 28 + caplen]
                opt, flags = off + 28 + (caplen + 3) // 4 * 4, 0
                while opt + 4 <= off + blen - 4:
                    code, olen = struct.unpack_from("<HH", body, opt)
                    if code == 0:
                        break
                    if code == 2:
                        flags = struct.unpack_from("<I", body, opt + 4)[0]
                    opt += 4 + (olen + 3) // 4 * 4
                frames.append((lab.ipv6_of(lab.parse_frame(data)), flags))
            off += blen
        self.assertEqual(len(frames), 40, f"{len(frames)} frames {self.moved()}")
        reals = {lab.real_ip6(1), lab.real_ip6(2)}
        kinds = {(CLIENT_IP6, lab.NAT_VIP6): "client → VIP", (lab.NAT_VIP6, CLIENT_IP6): "VIP → client"}
        kinds.update({(CLIENT_IP6, r): "client → real" for r in reals})
        kinds.update({(r, CLIENT_IP6): "real → client" for r in reals})
        seen = set()
        for p, flags in frames:
            self.assertIsNotNone(p, "a frame that is not IPv6 in the IPv6 service's capture")
            self.assertTrue(p.is_tcp and 80 in (p.sport, p.dport), p)
            kind = kinds.get((p.ip_src, p.ip_dst))
            self.assertIsNotNone(kind, f"a frame of another service: {p}")
            seen.add((kind, {1: "received", 2: "sent"}.get(flags, f"flags {flags}")))
        log(f"REST capture of tcp/[{lab.NAT_VIP6}]:80: {len(frames)} frames, {sorted(seen)}")
        self.assertEqual(seen, {("client → VIP", "received"), ("client → real", "sent"),
                                ("real → client", "received"), ("VIP → client", "sent")},
                         f"{[(p, f) for p, f in frames]}")

    # -- 9: fragmented UDP ---------------------------------------------------------

    def test_9_fragmented_udp(self):
        """UDP datagrams of 4,000 bytes, above every link's 1,500-byte MTU:
        the client's kernel fragments them, and the real server's kernel its
        echo. rvsd's af_packet port does not reassemble IPv6 (the kernel's
        fanout defrag is IPv4-only), so the director itself holds each
        datagram's fragments and forwards them after their first one, both
        ways through NAT and FULLNAT, inbound through DR (the reply goes
        straight to the client). Every echo must come back intact."""
        exchanges, size = 6, 4000
        before = lab.settled_counters("frag_reassembled")
        for mode in ("nat", "dr", "fullnat"):
            vip = lab.MODE_VIPS6[mode]
            answers = []
            for _ in range(exchanges):
                payload = os.urandom(size)
                s = lab.ns_socket(NS_CLIENT, socket.AF_INET6, socket.SOCK_DGRAM)
                try:
                    s.settimeout(3)
                    s.connect((vip, lab.UDP_PORT))
                    s.send(payload)
                    banner, _, rest = s.recv(65535).partition(b"\n")
                    answers.append(banner.decode() if rest == payload else "BAD")
                except OSError:
                    answers.append("ERR")
                finally:
                    s.close()
            log(f"{mode} udp [{vip}]:{lab.UDP_PORT}, {exchanges} datagrams of {size} bytes: {lab.tally(answers)}")
            self.assertEqual(len(answers), exchanges)
            self.assertEqual(set(answers) - {"rs1", "rs2"}, set(), f"{mode}: {answers} {self.moved()}")
        delta = lab.counters_delta(before, lab.settled_counters("frag_reassembled"))
        reassembled = sum(c.get("frag_reassembled", 0) for c in delta)
        log(f"frag_reassembled: {reassembled}")
        # NAT and FULLNAT: request and echo; DR: the request. A datagram
        # whose fragments reached a worker that does not own its connection
        # is reassembled there, then again by the owner.
        self.assertGreaterEqual(reassembled, exchanges * 5, f"{self.moved()}")

    # -- 9: the SYN proxy on IPv6 services ---------------------------------------

    def test_9_syn_proxy(self):
        """NAT (and FULLNAT for the stream) with syn_proxy on: curl -6 gets
        both reals' pages and a 200 KB socat stream comes back byte for byte,
        every connection through the proxy (syn_cookie_sent and
        syn_cookie_ack_valid move by at least one per connection)."""
        before = lab.settled_counters()
        answers = lab.http_requests(lab.url6(lab.NAT_VIP6, PROXY_HTTP_PORT), HTTP_REQUESTS)
        self.assert_split(f"proxied nat http [{lab.NAT_VIP6}]:{PROXY_HTTP_PORT} x{HTTP_REQUESTS}", answers, HTTP_REQUESTS)
        modes = ("nat", "fullnat")
        for mode in modes:
            self.stream(mode, PROXY_ECHO_PORT)
        delta = lab.counters_delta(before, lab.settled_counters())
        log("IPv6 SYN proxy: " + lab.pick(delta, "syn_cookie_sent", "syn_cookie_ack_valid", "syn_cookie_ack_invalid",
                                          "syn_proxy_handshake_failed", "syn_proxy_data_dropped"))
        connections = HTTP_REQUESTS + len(modes)
        self.assertGreaterEqual(lab.total(delta, "syn_cookie_sent"), connections, f"{self.moved()}")
        self.assertGreaterEqual(lab.total(delta, "syn_cookie_ack_valid"), connections, f"{self.moved()}")


class Ipv6PersistenceTests(lab.RvsdTestCase):
    """Persistence for IPv6 services (ipvsadm -p -M 64), its own rvsd with 2
    workers: the NAT VIP ::101 and the NAT64 VIP ::104 on :80 made persistent
    with /64 client networks. Without persistence rr would split the curls
    50/50 (test_2_http_*); with it every curl of the client's /64 goes to the
    one real server its template names, whichever worker the NIC hands the
    SYN to (the template's owner creates the connection)."""

    PERSISTENCE = {"timeout": 60, "netmask": 64}
    CONFIG = lab.make_config6([
        lab.mode_service6("tcp", "nat", 80, REALS6, persistence=PERSISTENCE),
        lab.nat64_service("tcp", 80, REALS4, persistence=PERSISTENCE),
    ], workers=2, prefix="rvs-e2e-ipv6-persist")

    def one_real(self, vip: str):
        answers = lab.http_requests(lab.url6(vip), 10)
        counts = lab.tally(answers)
        log(f"persistent {lab.url6(vip)} x10 from {CLIENT_IP6}: {counts}")
        self.assertEqual(len(answers), 10, answers)
        self.assertEqual(len(counts), 1, f"a persistent service split one client's curls: {counts}")
        self.assertIn(next(iter(counts)), ("rs1", "rs2"), counts)

    def test_1_one_client_one_real(self):
        self.one_real(lab.NAT_VIP6)

    def test_2_nat64_one_client_one_real(self):
        self.one_real(lab.NAT64_VIP)

    def test_3_rvsadm_shows_the_prefix_length_and_templates(self):
        listing = lab.rvsadm("-Ln").stdout
        self.assertRegex(listing, rf"(?m)^TCP  \[{re.escape(lab.NAT_VIP6)}\]:80 rr persistent 60 mask 64$", listing)
        saved = lab.rvsadm("-Sn").stdout
        self.assertIn(f"-A -t [{lab.NAT_VIP6}]:80 -s rr -p 60 -M 64", saved)
        lab.http_requests(lab.url6(lab.NAT_VIP6), 1)
        conns = lab.rvsadm("-lnc").stdout
        net = str(ipaddress.ip_network(f"{CLIENT_IP6}/64", strict=False).network_address)
        rows = [l.split() for l in conns.splitlines() if f"[{net}]:0" in l.split()]
        log(f"rvsadm -lnc templates of [{net}]:0: {[' '.join(r) for r in rows]}")
        vips = {r[4] for r in rows if r[2] == "NONE"}
        self.assertIn(f"[{lab.NAT_VIP6}]:80", vips, f"no template row for the /64:\n{conns}")


if __name__ == "__main__":
    unittest.main()
