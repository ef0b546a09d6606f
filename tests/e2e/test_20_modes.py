"""Issue 3 end to end: DR, NAT, TUN and FULLNAT through the real DPDK dataplane
(af_packet) in the namespace lab, on 2 workers.

Per mode: HTTP (curl) spread over the reals, a 200 KB socat stream echoed byte
for byte, UDP datagrams answered by the expected reals, and what each mode
looks like on the wire at the real server. Then: 2,000 concurrent FULLNAT
connections on 2 workers (redirected replies, nothing lost), TUN path MTU
discovery, and a FULLNAT local port pool shrunk to 8 ports (1 worker).

VIPs: DR 10.0.0.100, NAT 10.0.0.101, TUN 10.0.0.102, FULLNAT 10.0.0.103 (LIPs
10.1.0.200/201). Services :80 (httpd), :9000 (socat echo), :9001 (echod, many
connections), udp :9053 (echod) on rs1 and rs2, rr.
"""
import os
import signal
import tempfile
import time
import unittest

import labutil as lab
from labutil import figure as log
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)
from labutil import CLIENT_IP, NS_CLIENT, NS_DIR

MODES = ("dr", "nat", "tun", "fullnat")
REALS = [lab.real(1), lab.real(2)]
HTTP_REQUESTS = 40
UDP_REQUESTS = 20
STREAM_BYTES = 200 * 1024
MANY = 2000
MANY_KEYS = ("conn_created", "redirect_out", "redirect_in", "fwd_inbound_packets", "fwd_reply_packets")


def modes_services() -> list[dict]:
    services = []
    for mode in MODES:
        extra = {"toa": True} if mode == "fullnat" else {}
        services.append(lab.mode_service("tcp", mode, 80, REALS, **extra))
        services.append(lab.mode_service("tcp", mode, lab.ECHO_PORT, REALS))
        services.append(lab.mode_service("udp", mode, lab.UDP_PORT, REALS))
    services.append(lab.mode_service("tcp", "fullnat", lab.MANY_PORT, REALS))
    return services


class ModesTests(lab.RvsdTestCase):
    """One rvsd (2 workers) serving every mode."""

    CONFIG = lab.make_config(modes_services(), workers=2, prefix="rvs-e2e-modes")

    # -- helpers -------------------------------------------------------------

    def assert_even_split(self, what: str, answers: list[str], count: int):
        counts = lab.tally(answers)
        log(f"{what}: {counts}")
        self.assertEqual(len(answers), count, f"{what}: {answers}")
        self.assertEqual(set(counts), {"rs1", "rs2"}, f"{what}: unanswered or unexpected replies: {counts}")
        # rr on each of 2 workers: each worker's share alternates, so the total
        # is off an even split by at most one per worker.
        self.assertLessEqual(abs(counts["rs1"] - counts["rs2"]), 2, f"{what}: not rr 50/50: {counts}")

    def http(self, mode: str):
        vip = lab.MODE_VIPS[mode]
        self.assert_even_split(f"{mode} http://{vip}/ x{HTTP_REQUESTS}",
                               lab.http_requests(f"http://{vip}/", HTTP_REQUESTS), HTTP_REQUESTS)

    def stream(self, mode: str):
        vip = lab.MODE_VIPS[mode]
        data = os.urandom(STREAM_BYTES)
        s = lab.SocatStream(vip, lab.ECHO_PORT, data=data)
        self.addCleanup(s.cleanup)
        t0 = time.monotonic()
        try:
            rc = s.wait(60)
        except Exception:
            self.fail(f"{mode}: the {STREAM_BYTES}-byte stream did not finish in 60 s "
                      f"({len(s.received())} bytes back)")
        ok, what = s.check()
        log(f"{mode} stream {vip}:{lab.ECHO_PORT}: {what} in {time.monotonic() - t0:.2f} s (socat rc {rc})")
        self.assertTrue(ok, what)
        self.assertEqual(rc, 0, f"socat failed: {s.err.read_text()}")

    def udp(self, mode: str):
        vip = lab.MODE_VIPS[mode]
        self.assert_even_split(f"{mode} udp {vip}:{lab.UDP_PORT} x{UDP_REQUESTS}",
                               lab.udp_requests(vip, lab.UDP_PORT, UDP_REQUESTS), UDP_REQUESTS)

    # -- 1: HTTP per mode ----------------------------------------------------

    def test_1_http_dr(self):
        self.http("dr")

    def test_1_http_nat(self):
        self.http("nat")

    def test_1_http_tun(self):
        self.http("tun")

    def test_1_http_fullnat(self):
        self.http("fullnat")

    # -- 2: a 200 KB stream per mode, both ways --------------------------------

    def test_2_stream_dr(self):
        self.stream("dr")

    def test_2_stream_nat(self):
        self.stream("nat")

    def test_2_stream_tun(self):
        self.stream("tun")

    def test_2_stream_fullnat(self):
        self.stream("fullnat")

    # -- 3: UDP per mode -------------------------------------------------------

    def test_3_udp_dr(self):
        self.udp("dr")

    def test_3_udp_nat(self):
        self.udp("nat")

    def test_3_udp_tun(self):
        self.udp("tun")

    def test_3_udp_fullnat(self):
        self.udp("fullnat")

    # -- 4: the wire format at the real server ---------------------------------

    def captured(self, mode: str, requests: int = 6):
        """Curl `requests` times through the mode's :80 while capturing on the
        client and on rs1/rs2. Returns (answers, client packets, {n: packets})."""
        tmp = tempfile.TemporaryDirectory(prefix="rvs-cap-")
        self.addCleanup(tmp.cleanup)
        caps = {}
        for key, ns in (("client", NS_CLIENT), (1, lab.real_ns(1)), (2, lab.real_ns(2))):
            cap = lab.Capture(ns, "eth0", directory=tmp.name)
            self.addCleanup(cap.stop)
            caps[key] = cap.start()
        answers = lab.http_requests(f"http://{lab.MODE_VIPS[mode]}/", requests)
        client = caps.pop("client").stop()
        at_rs = {n: cap.stop() for n, cap in caps.items()}
        self.assertEqual(len(answers), requests, answers)
        self.assertEqual(set(answers) - {"rs1", "rs2"}, set(), answers)
        return answers, client, at_rs

    def setup_macs(self):
        self.dp0_mac = lab.mac_of(NS_DIR, "dp0")
        self.client_mac = lab.mac_of(NS_CLIENT, "eth0")
        self.rs_mac = {n: lab.mac_of(lab.real_ns(n), "eth0") for n in (1, 2)}

    @staticmethod
    def key(p: lab.Packet):
        return (p.sport, p.seq, p.ip_id)

    def client_sent(self, client_pkts, vip):
        return {self.key(p): p for p in client_pkts
                if p.is_tcp and p.eth_src == self.client_mac and p.ip_dst == vip and p.dport == 80}

    def assert_direct_replies(self, client_pkts, vip, answers):
        """DR/TUN: replies reach the client from the VIP, straight from a real."""
        replies = [p for p in client_pkts if p.is_tcp and p.ip_dst == CLIENT_IP and p.sport == 80
                   and p.ip_src == vip]
        self.assertTrue(replies, "no replies at the client")
        for p in replies:
            self.assertEqual(p.ip_src, vip, p)
            self.assertIn(p.eth_src, self.rs_mac.values(), f"reply not straight from a real: {p}")
            self.assertTrue(p.ip_checksum_ok() and p.l4_checksum_ok(), f"bad checksum: {p}")

    def test_4_wire_dr(self):
        self.setup_macs()
        answers, client, at_rs = self.captured("dr")
        sent = self.client_sent(client, lab.DR_VIP)
        self.assertTrue(sent, "no client->VIP packets captured at the client")
        seen = 0
        for n, pkts in at_rs.items():
            inbound = [p for p in pkts if p.is_tcp and p.eth_dst == self.rs_mac[n] and p.dport == 80]
            for p in inbound:
                orig = sent.get(self.key(p))
                self.assertIsNotNone(orig, f"rs{n}: packet matches nothing the client sent: {p}")
                self.assertEqual(p.ip.hex(), lab.ttl_decremented(orig.ip).hex(),
                                 f"DR changed the IP packet beyond the TTL: {orig} -> {p}")
                self.assertEqual((p.ip_dst, p.eth_src, p.eth_dst), (lab.DR_VIP, self.dp0_mac, self.rs_mac[n]), p)
                seen += 1
        log(f"dr on the wire: {seen} client packets at the reals, IP packet untouched but for the TTL, MACs changed")
        self.assertGreaterEqual(seen, 3 * len(answers), "too few client packets reached the reals")
        self.assert_direct_replies(client, lab.DR_VIP, answers)

    def test_4_wire_tun(self):
        self.setup_macs()
        answers, client, at_rs = self.captured("tun")
        sent = self.client_sent(client, lab.TUN_VIP)
        seen = 0
        for n, pkts in at_rs.items():
            self.assertFalse([p for p in pkts if p.is_tcp and p.ip_dst == lab.TUN_VIP],
                             f"rs{n}: un-encapsulated packet to the VIP on the wire")
            for p in (p for p in pkts if p.ethertype == 0x0800 and p.proto == 4
                      and lab.inner_packet(p).ip_dst == lab.TUN_VIP and lab.inner_packet(p).dport == 80):
                self.assertEqual((p.ip_src, p.ip_dst), ("10.1.0.1", lab.real_ip(n)), p)
                self.assertEqual((p.eth_src, p.eth_dst), (self.dp0_mac, self.rs_mac[n]), p)
                self.assertTrue(p.ip_checksum_ok(), f"bad outer IP checksum: {p}")
                inner = lab.inner_packet(p)
                orig = sent.get(self.key(inner))
                self.assertIsNotNone(orig, f"rs{n}: inner packet matches nothing the client sent: {inner}")
                self.assertEqual(inner.ip.hex(), lab.ttl_decremented(orig.ip).hex(),
                                 f"TUN changed the inner packet beyond the TTL: {orig} -> {inner}")
                self.assertEqual(len(p.ip), len(inner.ip) + 20, "outer length is not inner + 20")
                self.assertEqual(p.ttl, inner.ttl, "outer TTL should copy the inner one (as IPVS)")
                self.assertEqual(p.ip[6] & 0x40, inner.ip[6] & 0x40, "outer DF should copy the inner one")
                seen += 1
        log(f"tun on the wire: {seen} IPIP packets 10.1.0.1 -> real, inner packet = the client's but for the TTL")
        self.assertGreaterEqual(seen, 3 * len(answers), "too few IPIP packets reached the reals")
        self.assert_direct_replies(client, lab.TUN_VIP, answers)

    def test_4_wire_nat(self):
        self.setup_macs()
        answers, client, at_rs = self.captured("nat")
        seen = 0
        for n, pkts in at_rs.items():
            for p in (p for p in pkts if p.is_tcp and p.eth_dst == self.rs_mac[n] and p.dport == 80):
                self.assertEqual((p.ip_src, p.ip_dst), (CLIENT_IP, lab.real_ip(n)), p)
                self.assertEqual(p.eth_src, self.dp0_mac, p)
                self.assertTrue(p.ip_checksum_ok() and p.l4_checksum_ok(), f"bad checksum after NAT: {p}")
                seen += 1
            for p in (p for p in pkts if p.is_tcp and p.eth_src == self.rs_mac[n] and p.sport == 80):
                self.assertEqual((p.ip_src, p.ip_dst, p.eth_dst), (lab.real_ip(n), CLIENT_IP, self.dp0_mac), p)
        log(f"nat on the wire: {seen} packets client -> real address at the reals")
        self.assertGreaterEqual(seen, 3 * len(answers))
        for p in (p for p in client if p.is_tcp and p.ip_dst == CLIENT_IP and p.ip_src == lab.NAT_VIP):
            self.assertEqual((p.sport, p.eth_src), (80, self.dp0_mac), p)
            self.assertTrue(p.ip_checksum_ok() and p.l4_checksum_ok(), f"bad checksum after reverse NAT: {p}")

    def test_4_wire_fullnat_toa(self):
        self.setup_macs()
        before = lab.settled_counters("toa_inserted")
        answers, client, at_rs = self.captured("fullnat")
        delta = lab.counters_delta(before, lab.settled_counters("toa_inserted"))
        lips = set(lab.LIPS[:2])
        # The director's table: which client port each (LIP, lport) stands for.
        table = {c["local"]: c["client"] for c in lab.connections(service=f"tcp/{lab.FNAT_VIP}/80")}
        client_ports = {p.sport for p in client if p.is_tcp and p.ip_dst == lab.FNAT_VIP and p.syn}
        conns = {}
        for n, pkts in at_rs.items():
            for p in (p for p in pkts if p.is_tcp and p.eth_dst == self.rs_mac[n] and p.dport == 80):
                self.assertIn(p.ip_src, lips, f"FULLNAT source is not a LIP: {p}")
                self.assertEqual((p.ip_dst, p.eth_src), (lab.real_ip(n), self.dp0_mac), p)
                self.assertTrue(p.ip_checksum_ok() and p.l4_checksum_ok(), f"bad checksum after FULLNAT: {p}")
                conns.setdefault((n, p.ip_src, p.sport), []).append(p)
            for p in (p for p in pkts if p.is_tcp and p.eth_src == self.rs_mac[n] and p.sport == 80):
                self.assertIn(p.ip_dst, lips, f"real's reply not to a LIP: {p}")
                self.assertEqual(p.eth_dst, self.dp0_mac, p)
        self.assertEqual(len(conns), len(answers), f"one connection per request at the reals: {list(conns)}")
        toas = []
        for (n, lip, lport), pkts in conns.items():
            self.assertTrue(pkts[0].syn, f"first packet of {lip}:{lport} is not the SYN: {pkts[0]}")
            first_ack = next((p for p in pkts[1:] if p.flags & 0x10 and not p.flags & 0x02), None)
            self.assertIsNotNone(first_ack, f"no ACK from {lip}:{lport}")
            toa = lab.toa_of(first_ack)
            self.assertIsNotNone(toa, f"no TOA option (kind 254) in the first ACK of {lip}:{lport}: "
                                      f"options {lab.tcp_options(first_ack)}")
            self.assertEqual(toa[0], CLIENT_IP, "TOA does not carry the client's address")
            self.assertIn(toa[1], client_ports, "TOA port is not one of the client's ports")
            self.assertEqual(table.get(f"{lip}:{lport}"), f"{toa[0]}:{toa[1]}",
                             f"TOA {toa} disagrees with the director's connection table")
            self.assertEqual([p for p in pkts if p is not first_ack and lab.toa_of(p)], [],
                             "TOA inserted into more than the first ACK")
            toas.append(f"{lip}:{lport}<-{toa[0]}:{toa[1]}")
        log(f"fullnat on the wire: sources {sorted({k[1] for k in conns})}, TOA {toas}; "
            + lab.pick(delta, "toa_inserted"))
        self.assertEqual(lab.total(delta, "toa_inserted"), len(answers))
        for p in (p for p in client if p.is_tcp and p.ip_dst == CLIENT_IP and p.ip_src == lab.FNAT_VIP):
            self.assertEqual((p.sport, p.eth_src), (80, self.dp0_mac), p)
            self.assertTrue(p.ip_checksum_ok() and p.l4_checksum_ok(), f"bad checksum towards the client: {p}")

    # -- 5: 2,000 concurrent FULLNAT connections on 2 workers -------------------

    def test_5_fullnat_2000_concurrent(self):
        before = lab.settled_counters(*MANY_KEYS)
        r = lab.many_connections(lab.FNAT_VIP, lab.MANY_PORT, MANY, deadline_s=30,
                                 inspect=many_inspector(f"tcp/{lab.FNAT_VIP}/{lab.MANY_PORT}"))
        delta = lab.counters_delta(before, lab.settled_counters(*MANY_KEYS))
        log(f"{MANY} concurrent FULLNAT connections: {r}")
        log("counters: " + lab.pick(delta, "conn_created", "fwd_inbound_packets", "fwd_reply_packets",
                                    "redirect_out", "redirect_in", "drop_redirect_ring_full",
                                    "drop_no_local_port", "drop_tx_queue_full", "drop_no_connection"))
        self.assertEqual(r["open_at_once"], MANY,
                         f"not all connections were open at once ({lab.pick(delta, 'drop_no_connection')}): {r}")
        self.assertEqual(r["echoed"], MANY,
                         f"connections lost or not echoed ({lab.pick(delta, 'drop_no_connection')}): {r}")
        self.assertEqual(r["client_ports"], MANY)
        self.assertEqual(set(r["banners"]), {"rs1", "rs2"}, r)
        self.assertLessEqual(abs(r["banners"]["rs1"] - r["banners"]["rs2"]), 2, r)
        self.assertEqual(lab.total(delta, "conn_created"), MANY, "duplicate entries for some connections")
        for w, c in enumerate(delta):
            for name in ("conn_created", "fwd_inbound_packets", "fwd_reply_packets"):
                self.assertGreater(c[name], 0, f"worker {w} shows no {name}")
        self.assertGreater(lab.total(delta, "redirect_out"), 0, "no reply was redirected to its owner")
        self.assertGreater(lab.total(delta, "redirect_in"), 0)
        self.assertEqual(lab.total(delta, "redirect_out"), lab.total(delta, "redirect_in"),
                         "redirected packets went missing between the workers")
        self.assertEqual(lab.total(delta, "drop_redirect_ring_full"), 0)
        self.assertEqual(lab.total(delta, "drop_no_local_port"), 0)

    # -- 6: TUN path MTU discovery ------------------------------------------------

    def test_6_tun_pmtu(self):
        # Forget what the client learned earlier (the stream test taught it).
        lab.nsx(NS_CLIENT, ["ip", "route", "flush", "cache"])
        route = lab.nsx(NS_CLIENT, ["ip", "route", "get", lab.TUN_VIP]).stdout
        self.assertNotIn("mtu", route, f"client still has a path MTU for the TUN VIP: {route}")
        before = lab.settled_counters("drop_too_big", "icmp_errors_sent")
        data = os.urandom(STREAM_BYTES)
        s = lab.SocatStream(lab.TUN_VIP, lab.ECHO_PORT, data=data)
        self.addCleanup(s.cleanup)
        rc = s.wait(60)
        delta = lab.counters_delta(before, lab.settled_counters("drop_too_big", "icmp_errors_sent"))
        route = lab.nsx(NS_CLIENT, ["ip", "route", "get", lab.TUN_VIP]).stdout
        ok, what = s.check()
        log(f"TUN {STREAM_BYTES}-byte upload: {what}; "
            + lab.pick(delta, "drop_too_big", "icmp_errors_sent", "tun_fragments")
            + f"; client route now: {' '.join(route.split())}")
        self.assertTrue(ok, what)
        self.assertEqual(rc, 0)
        self.assertGreater(lab.total(delta, "drop_too_big"), 0, "no packet was too big for the tunnel")
        self.assertGreater(lab.total(delta, "icmp_errors_sent"), 0, "no ICMP fragmentation needed sent")
        self.assertRegex(route, r"mtu 1480\b", "the client did not learn the tunnel's path MTU (1500 - 20)")


def many_inspector(svc: str):
    """For many_connections(): what the director knows of the first stuck
    connections (entry, owner worker, state), for the failure message."""
    def inspect(stuck):
        by_client = {e["client"]: e for e in lab.connections(service=svc)}
        out = []
        for phase, port in stuck[:5]:
            e = by_client.get(f"{CLIENT_IP}:{port}")
            out.append({"phase": ["connecting", "waiting for banner", "waiting for echo"][phase],
                        "client_port": port,
                        "director": e and {k: e.get(k) for k in ("worker", "real", "local", "state")}})
        return out
    return inspect


class FullnatPoolTests(lab.RvsdTestCase):
    """A FULLNAT pool of 8 ports (one LIP, [40000, 40007], 1 worker)."""

    PORTS = 8
    SVC = lab.mode_service("tcp", "fullnat", lab.MANY_PORT, REALS, lips=(lab.LIPS[2],))
    CONFIG = lab.make_config([SVC], workers=1, prefix="rvs-e2e-pool",
                             local_port_range=[40000, 40000 + PORTS - 1],
                             timeouts={"tcp_time_wait": 1, "tcp_close": 1, "tcp_fin": 1,
                                       "tcp_close_wait": 1, "tcp_last_ack": 1})

    def open_all(self, what: str) -> list[lab.EchoConn]:
        conns = [lab.EchoConn(lab.FNAT_VIP, lab.MANY_PORT) for _ in range(self.PORTS)]
        for c in conns:
            self.addCleanup(c.close)
        self.assertEqual([c.error for c in conns if not c.ok], [], f"{what}: connections failed")
        entries = lab.connections(service=lab.svc_id(self.SVC))
        locals_ = sorted(e.get("local") or "" for e in entries)
        log(f"{what}: {len(conns)} open, banners {lab.tally([c.banner for c in conns])}, local {locals_}")
        self.assertEqual(locals_, [f"{lab.LIPS[2]}:{p}" for p in range(40000, 40000 + self.PORTS)])
        return conns

    def test_pool_exhaustion_and_recovery(self):
        before = lab.settled_counters("drop_no_local_port", "conn_created")
        conns = self.open_all("pool of 8")
        # The 9th: its SYNs are refused (the pool is empty), nothing answers.
        ninth = lab.EchoConn(lab.FNAT_VIP, lab.MANY_PORT, timeout=2.5)
        self.addCleanup(ninth.close)
        delta = lab.counters_delta(before, lab.settled_counters("drop_no_local_port", "conn_created"))
        log(f"9th connection: {ninth.error or 'banner ' + ninth.banner}; "
            + lab.pick(delta, "drop_no_local_port", "conn_created"))
        self.assertFalse(ninth.ok, f"a 9th connection got through a pool of 8 ports: {ninth.banner}")
        self.assertGreaterEqual(lab.total(delta, "drop_no_local_port"), 1, "refusal not counted")
        self.assertEqual(lab.total(delta, "conn_created"), self.PORTS)
        ninth.close()
        # The 8 still work.
        for i, c in enumerate(conns):
            line = f"still here {i}\n".encode()
            self.assertEqual(c.exchange(line), line, f"connection {i} broke when the pool ran dry")
        # Close them; their entries expire (1 s timeouts) and the ports return.
        for c in conns:
            c.close()
        t0 = time.monotonic()
        lab.wait_for(lambda: not lab.connections(service=lab.svc_id(self.SVC)), 15,
                     interval=0.2, what="the closed connections' entries to expire")
        log(f"entries gone {time.monotonic() - t0:.1f} s after close")
        again = self.open_all("after expiry")
        for i, c in enumerate(again):
            line = f"again {i}\n".encode()
            self.assertEqual(c.exchange(line), line)
            c.close()


class RolloverFullnatTests(lab.RvsdTestCase):
    """2,000 FULLNAT connections on 2 workers, opened while rvsd's workers
    stall for a moment (SIGSTOP while the client sends the SYNs, then
    SIGCONT) — as a descheduled worker does on a busy host.

    DPDK's af_packet PMD (22.11) joins its queues' sockets to one fanout
    group with PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_ROLLOVER: when the
    hashed queue's ring is short of room the kernel hands the packet to the
    other queue. A SYN rolled over creates the connection on the worker the
    flow does not hash to; every later client packet of the flow arrives on
    the other worker. Replies are redirected to their owner (by local port);
    the client's own packets must reach it too, or the connection is lost."""

    SVC = lab.mode_service("tcp", "fullnat", lab.MANY_PORT, REALS, lips=(lab.LIPS[3],))
    CONFIG = lab.make_config([SVC], workers=2, prefix="rvs-e2e-rollover")
    CONFIG["ports"][0]["device"] += ",framecnt=128"     # rings the stall surely fills

    def test_fullnat_2000_after_a_stall(self):
        pid = self.rvsd.proc.pid
        before = lab.settled_counters("conn_created", "redirect_out", "redirect_in")
        os.kill(pid, signal.SIGSTOP)
        try:
            # 40 s: a client segment lost in the stall more than a few times
            # waits out TCP's doubling retransmission timer (0.2 s .. 12.8 s,
            # 25 s in all after 7 losses) on a loaded 2-core machine; a
            # segment dropped by the wrong worker never completes at all.
            r = lab.many_connections(lab.FNAT_VIP, lab.MANY_PORT, MANY, batch=MANY, deadline_s=40,
                                     inspect=many_inspector(lab.svc_id(self.SVC)),
                                     after_first_batch=lambda: os.kill(pid, signal.SIGCONT))
        finally:
            os.kill(pid, signal.SIGCONT)
        delta = lab.counters_delta(before, lab.settled_counters("conn_created", "redirect_out", "redirect_in"))
        port = lab.api("GET", "/api/v1/stats").json["ports"][0]["stats"]
        log(f"{MANY} FULLNAT connections after a stall: "
            + str({k: r[k] for k in ("echoed", "open_at_once", "stuck", "errors", "seconds")}))
        log("counters: " + lab.pick(delta, "conn_created", "drop_no_connection", "redirect_out",
                                    "redirect_in", "drop_redirect_ring_full")
            + f"; port imissed={port.get('imissed')}")
        if r["inspected"]:
            log(f"stuck connections as the director sees them: {r['inspected']}")
        self.assertEqual(r["echoed"], MANY,
                         f"{MANY - r['echoed']} connections never completed; "
                         f"{lab.total(delta, 'drop_no_connection')} packets dropped as drop_no_connection "
                         f"and {lab.total(delta, 'conn_created') - MANY} extra entries created: client "
                         f"packets that reached the worker not owning their connection were dropped "
                         f"instead of redirected. Stuck: {r['inspected']}")

if __name__ == "__main__":
    unittest.main()
