"""Issue 11 end to end: fragmented UDP datagrams through every mode.

The client sends UDP datagrams of 1,800 bytes, above the 1,500-byte MTU of
every link: its kernel fragments them. echod on the real servers answers with
"rsN\\n" + the datagram, fragmented again by the real server's kernel. Per mode
(DR, NAT, TUN, FULLNAT; 2 workers) every datagram must come back intact from
one of the reals.

What this exercises in rvsd, and what it cannot: the director's DPDK
af_packet port lets the kernel reassemble fragments before rvsd reads them
(PACKET_FANOUT_FLAG_DEFRAG, see DESIGN.md), so rvsd receives whole 1,828-byte
datagrams, above the egress MTU, and must fragment them on the way out
(`frag_out`; TUN fragments the tunnel packet, `tun_fragments`). rvsd's own
reassembly of fragments (what a real NIC delivers) and its timeout are covered
by the packet-path unit tests (dataplane/src/process/tests.rs, frag.rs), which
feed fragments to the same code without a kernel in front.
"""
import os
import socket
import unittest

import labutil as lab
from labutil import figure as log
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)
from labutil import NS_CLIENT

MODES = ("dr", "nat", "tun", "fullnat")
REALS = [lab.real(1), lab.real(2)]
DATAGRAMS = 10
SIZE = 1800


def config() -> dict:
    services = [lab.mode_service("udp", mode, lab.UDP_PORT, REALS) for mode in MODES]
    return lab.make_config(services, workers=2, prefix="rvs-e2e-frag")


def exchange(vip: str, payload: bytes, timeout: float = 2.0) -> str:
    """One datagram from a new socket; the answering real ("rsN"), "ERR"
    without an answer, "BAD" when the echo differs."""
    s = lab.ns_socket(NS_CLIENT, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.connect((vip, lab.UDP_PORT))
        s.send(payload)
        banner, _, rest = s.recv(65535).partition(b"\n")
        return banner.decode() if rest == payload else "BAD"
    except OSError:
        return "ERR"
    finally:
        s.close()


class FragmentTests(lab.RvsdTestCase):

    CONFIG = config()

    def round_trips(self, mode: str):
        vip = lab.MODE_VIPS[mode]
        before = lab.settled_counters("frag_out", "tun_fragments")
        answers = [exchange(vip, os.urandom(SIZE)) for _ in range(DATAGRAMS)]
        delta = lab.counters_delta(before, lab.settled_counters("frag_out", "tun_fragments"))
        counts = lab.tally(answers)
        log(f"{mode} udp {vip}:{lab.UDP_PORT} {SIZE}-byte datagrams x{DATAGRAMS}: {counts}; "
            f"{lab.pick(delta, 'frag_out', 'tun_fragments')}")
        self.assertEqual(set(counts), {"rs1", "rs2"}, f"{mode}: lost, damaged or unbalanced datagrams: {answers}")
        return delta

    def test_dr(self):
        delta = self.round_trips("dr")
        self.assertGreaterEqual(lab.total(delta, "frag_out"), DATAGRAMS, "requests fragmented by rvsd")

    def test_nat(self):
        delta = self.round_trips("nat")
        # Requests towards the reals and answers towards the client.
        self.assertGreaterEqual(lab.total(delta, "frag_out"), 2 * DATAGRAMS)

    def test_tun(self):
        delta = self.round_trips("tun")
        self.assertGreaterEqual(lab.total(delta, "tun_fragments"), DATAGRAMS, "tunnel packets fragmented")

    def test_fullnat(self):
        delta = self.round_trips("fullnat")
        self.assertGreaterEqual(lab.total(delta, "frag_out"), 2 * DATAGRAMS)


if __name__ == "__main__":
    unittest.main()
