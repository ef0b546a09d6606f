"""Linux-IPVS packet behaviour end to end, in the namespace lab.

- TTL: the director is a router hop. A datagram arrives at the real server
  with one TTL less; one sent with TTL 1 is answered with ICMP time
  exceeded from the VIP (IPVS decrement_ttl).
- No real server: UDP and TCP clients of a service without an available
  real server get ICMP port unreachable at once (IPVS ip_vs_leave) instead
  of waiting for a timeout; drop_no_real_server counts them.
- expire_nodest_conn: the client of a connection whose real server was
  removed gets a TCP reset at its next segment instead of a black hole.
- Partial checksums: with transmit checksum offload left on along the path
  to rvsd (veth default), TCP traffic to a NAT service still works, the
  counter rx_l4_csum_partial rises and rvsd logs what to change.
"""
import socket
import struct
import time
import unittest

import labutil as lab
from labutil import figure as log
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)
from labutil import NAT_VIP, NS_CLIENT

IP_RECVERR = 11         # linux/in.h; Python does not export it everywhere
MSG_ERRQUEUE = 0x2000   # linux/socket.h
ICMP_TIME_EXCEEDED = 11

REALS = [lab.real(1), lab.real(2)]
UDP_SVC = lab.mode_service("udp", "nat", lab.UDP_PORT, REALS)
HTTP_SVC = lab.mode_service("tcp", "nat", 80, REALS)
ECHO_SVC = lab.mode_service("tcp", "nat", lab.ECHO_PORT, REALS)
EMPTY_UDP = lab.mode_service("udp", "nat", 9999, [])
DRAINED_TCP = lab.mode_service("tcp", "nat", 9998, [lab.real(1, weight=0), lab.real(2, weight=0)])


def udp_socket(ttl: int) -> socket.socket:
    s = lab.ns_socket(NS_CLIENT, socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    return s


def queued_icmp_error(s: socket.socket, timeout: float) -> tuple[int, int, str] | None:
    """(ICMP type, code, offender address) of the first error queued on `s`
    (IP_RECVERR), or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, ancdata, _, _ = s.recvmsg(256, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        for level, kind, data in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_RECVERR and len(data) >= 32:
                _errno, _origin, icmp_type, icmp_code = struct.unpack("=IBBB", data[:7])
                offender = socket.inet_ntoa(data[16 + 4:16 + 8])
                return icmp_type, icmp_code, offender
    return None


def counter(name: str) -> int:
    return lab.total(lab.settled_counters(), name)


class IpvsPacketTests(lab.RvsdTestCase):
    CONFIG = lab.make_config([UDP_SVC, HTTP_SVC, ECHO_SVC, EMPTY_UDP, DRAINED_TCP], workers=1,
                             prefix="rvs-e2e-ipvspkt", expire_nodest_conn=True)

    def test_ttl_is_decremented_on_the_way_to_the_real_server(self):
        caps = [lab.Capture(lab.real_ns(n), "eth0", f"udp and dst port {lab.UDP_PORT}").start() for n in (1, 2)]
        for c in caps:
            self.addCleanup(c.cleanup)
        s = udp_socket(ttl=9)
        self.addCleanup(s.close)
        s.settimeout(3)
        s.connect((NAT_VIP, lab.UDP_PORT))
        s.send(b"ttl\n")
        reply = s.recv(1000)
        seen = [p for c in caps for p in c.stop() if p.proto == 17]
        log(f"sent with TTL 9; the real server saw TTL {[p.ttl for p in seen]}; reply {reply[:4]!r}")
        self.assertTrue(reply.startswith(b"rs"), reply)
        self.assertEqual([p.ttl for p in seen], [8], "one hop through the director: TTL 9 - 1")
        self.assertTrue(seen[0].ip_checksum_ok(), "the header checksum follows the TTL")

    def test_ttl_1_is_answered_with_time_exceeded_from_the_vip(self):
        before = counter("drop_ttl_exceeded")
        s = udp_socket(ttl=1)
        self.addCleanup(s.close)
        s.connect((NAT_VIP, lab.UDP_PORT))
        t0 = time.monotonic()
        s.send(b"dies here\n")
        err = queued_icmp_error(s, 3)
        log(f"TTL 1 to {NAT_VIP}:{lab.UDP_PORT}: ICMP (type, code, from) = {err} after "
            f"{(time.monotonic() - t0) * 1000:.1f} ms")
        self.assertEqual(err, (ICMP_TIME_EXCEEDED, 0, NAT_VIP))
        lab.wait_for(lambda: counter("drop_ttl_exceeded") > before, 5, what="drop_ttl_exceeded")

    def test_no_real_server_is_answered_with_port_unreachable(self):
        before = counter("drop_no_real_server")
        u = lab.ns_socket(NS_CLIENT, socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(u.close)
        u.settimeout(3)
        u.connect((NAT_VIP, 9999))
        t0 = time.monotonic()
        u.send(b"anyone?\n")
        with self.assertRaises(ConnectionRefusedError, msg="UDP: ICMP port unreachable expected"):
            u.recv(100)
        udp_ms = (time.monotonic() - t0) * 1000

        t = lab.ns_socket(NS_CLIENT)
        self.addCleanup(t.close)
        t.settimeout(5)
        t0 = time.monotonic()
        with self.assertRaises(ConnectionRefusedError, msg="TCP: the SYN must be refused, not left to time out"):
            t.connect((NAT_VIP, 9998))
        tcp_ms = (time.monotonic() - t0) * 1000
        log(f"no real server: UDP refused after {udp_ms:.1f} ms, TCP connect refused after {tcp_ms:.1f} ms")
        self.assertLess(tcp_ms, 1000)
        lab.wait_for(lambda: counter("drop_no_real_server") >= before + 2, 5, what="drop_no_real_server += 2")
        metrics = lab.api("GET", "/metrics").text
        line = next((l for l in metrics.splitlines()
                     if l.startswith("rvs_worker_drops_total") and 'reason="no_real_server"' in l), "")
        log(f"/metrics: {line}")
        self.assertTrue(line and int(float(line.rsplit(" ", 1)[1])) >= 2, line)

    def test_expire_nodest_conn_resets_the_client(self):
        conn = lab.EchoConn(NAT_VIP, lab.ECHO_PORT)
        self.addCleanup(conn.close)
        self.assertTrue(conn.ok, conn.error)
        self.assertEqual(conn.exchange(b"before\n"), b"before\n")
        n = int(conn.banner[2:])
        path = f"{lab.service_path(ECHO_SVC)}/reals/{lab.real_ip(n)}/{lab.ECHO_PORT}"
        resets = counter("tcp_resets_sent")
        self.assert_mutation_ok(lab.api("DELETE", path), f"remove rs{n}")
        conn.sock.settimeout(5)
        t0 = time.monotonic()
        try:
            # The client's delayed ACK of the echo may reach rvsd after the
            # removal and be answered first: the reset is then already here.
            conn.sock.sendall(b"after\n")
            got = conn.sock.recv(100)
            outcome = f"read {got!r}"
        except ConnectionResetError:
            outcome = "reset"
        except socket.timeout:
            outcome = "timeout"
        ms = (time.monotonic() - t0) * 1000
        log(f"rs{n} removed with expire_nodest_conn: the client's next segment got: {outcome} after {ms:.1f} ms")
        self.assertEqual(outcome, "reset")
        lab.wait_for(lambda: counter("tcp_resets_sent") > resets, 5, what="tcp_resets_sent")
        again = lab.EchoConn(NAT_VIP, lab.ECHO_PORT)
        self.addCleanup(again.close)
        self.assertEqual(again.banner, f"rs{3 - n}", "a new connection goes to the remaining real server")


class PartialChecksumTests(lab.RvsdTestCase):
    """Transmit checksum offload on the client's veth and on the switch port
    towards the director: rvsd's af_packet port receives partial checksums."""
    CONFIG = lab.make_config([HTTP_SVC], workers=1, prefix="rvs-e2e-csum")
    OFFLOAD_ON = [(NS_CLIENT, "eth0"), ("rvs-sw", "dir-sw")]

    def set_tx_offload(self, on: bool) -> None:
        for ns, ifname in self.OFFLOAD_ON:
            lab.nsx(ns, ["ethtool", "-K", ifname, "tx", "on" if on else "off"])

    def test_traffic_works_and_the_operator_is_told(self):
        self.addCleanup(self.set_tx_offload, False)
        self.set_tx_offload(True)
        before = counter("rx_l4_csum_partial")
        answers = lab.http_requests(f"http://{NAT_VIP}/", 6)
        lab.wait_for(lambda: counter("rx_l4_csum_partial") > before, 5, what="rx_l4_csum_partial to rise")
        partial = counter("rx_l4_csum_partial") - before
        lab.wait_for(lambda: "partial checksums" in self.rvsd.log_text(400), 5, what="the log line")
        line = next(l for l in self.rvsd.log_text(400).splitlines() if "partial checksums" in l)
        log(f"tx offload on: answers {lab.tally(answers)}; rx_l4_csum_partial +{partial}; log: {line.strip()[:160]}...")
        self.assertEqual(sorted(set(answers)), ["rs1", "rs2"], answers)
        self.assertIn("ethtool -K", line)
        self.assertIn("lan0", line, "the log line names the port")


if __name__ == "__main__":
    unittest.main()
