"""Issue 11 end to end: FULLNAT against a Linux real server's TIME_WAIT.

A FULLNAT director reuses (local address, local port) pairs towards a real
server that may still hold the previous connection on that pair in
TIME_WAIT. Linux takes a SYN on a TIME_WAIT socket only if its sequence
number is after the old connection's or its timestamp is newer (PAWS). The
client's ISN and timestamps are unrelated to the old connection's, so without
help about half of such SYNs are answered with an ACK for the old connection
instead, and the client waits for its SYN retransmission (1 s).

rvs gives the real server its own time-ordered ISN and strips the timestamps
from the SYN (dataplane/src/fwd/fnat.rs). The test: a FULLNAT service with one
local address and a 3,000-port range in front of rs1, whose server closes
first (so rs1 holds every connection in TIME_WAIT). Phase 1: N short
connections from the client's 10.0.0.2. Then rvsd restarts (its pool starts at
a new random point of the same range) and phase 2 opens N more from a second
client address, 10.0.0.50 (another client: its timestamps come from another
random offset, as with real clients). Phase 2 reuses most of phase 1's ports
while rs1 still holds them; nearly all its connections must succeed at once.

With `RVSD=` pointing at a build without the fix, phase 2 fails (it stops
early after its failure budget).
"""
import socket
import subprocess
import sys
import time
import unittest

import labutil as lab
from labutil import figure as log
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)
from labutil import CLIENT_IP, NS_CLIENT

N = 2500
PORT_RANGE = [20000, 22999]
SERVER_PORT = 9300
SECOND_CLIENT = "10.0.0.50"
SECOND_CLIENT_CIDR = f"{SECOND_CLIENT}/24"
# A connection that needs a SYN retransmission (1 s) counts as failed.
CONNECT_TIMEOUT = 0.9
# Phase 2 may lose this share (a loaded 2-core machine drops a few SYNs).
MAX_FAILURE_RATIO = 0.02

# rs1's server: a banner, then it closes first (TIME_WAIT stays on rs1).
CLOSE_FIRST = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {SERVER_PORT}))
s.listen(4096)
while True:
    c, _ = s.accept()
    c.sendall(b"rs1\\n")
    c.close()
"""


def service() -> dict:
    return lab.mode_service("tcp", "fullnat", SERVER_PORT, [lab.real(1)], lips=lab.LIPS[:1])


def config() -> dict:
    return lab.make_config([service()], workers=1, prefix="rvs-e2e-fnat-tw", local_port_range=PORT_RANGE)


def one_connection(source: str) -> bool:
    s = lab.ns_socket(NS_CLIENT)
    try:
        s.settimeout(CONNECT_TIMEOUT)
        s.bind((source, 0))
        s.connect((lab.FNAT_VIP, SERVER_PORT))
        got = b""
        while True:
            chunk = s.recv(64)
            if not chunk:
                break
            got += chunk
        return got == b"rs1\n"
    except OSError:
        return False
    finally:
        s.close()


def phase(source: str, count: int, budget: int) -> tuple[int, int, float]:
    """Up to `count` connections from `source`, stopping after `budget`
    failures. Returns (succeeded, failed, seconds)."""
    ok = failed = 0
    t0 = time.monotonic()
    for _ in range(count):
        if one_connection(source):
            ok += 1
        else:
            failed += 1
            if failed > budget:
                break
    return ok, failed, time.monotonic() - t0


def time_wait_ports() -> set[int]:
    """The local ports rs1 holds in TIME_WAIT towards the service."""
    out = lab.nsx(lab.real_ns(1), ["ss", "-Htan", "state", "time-wait", f"( sport = :{SERVER_PORT} )"]).stdout
    return {int(line.split()[-1].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


def rvsd_local_ports() -> set[int]:
    """The local ports of the running rvsd's connections."""
    return {int(c["local"].rsplit(":", 1)[1]) for c in lab.connections() if c.get("local")}


class FullNatTimeWaitTests(unittest.TestCase):

    def setUp(self):
        lab.raise_nofile()
        self.server = subprocess.Popen(["ip", "netns", "exec", lab.real_ns(1), sys.executable, "-c", CLOSE_FIRST],
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.addCleanup(lab.stop_process, self.server, 5)
        lab.nsx(NS_CLIENT, ["ip", "addr", "add", f"{SECOND_CLIENT_CIDR}", "dev", "eth0"])
        self.addCleanup(lab.nsx, NS_CLIENT, ["ip", "addr", "del", SECOND_CLIENT_CIDR, "dev", "eth0"], check=False)

    def start_rvsd(self) -> lab.Rvsd:
        rvsd = lab.Rvsd(config()).start()
        self.addCleanup(rvsd.cleanup)
        lab.wait_for(lambda: one_connection(CLIENT_IP), 10, 0.2, "the FULLNAT service to answer")
        return rvsd

    def test_reused_local_ports_pass_the_real_servers_time_wait(self):
        rvsd = self.start_rvsd()
        ok1, failed1, secs1 = phase(CLIENT_IP, N, N)
        rate1 = ok1 / secs1
        held = time_wait_ports()
        log(f"phase 1 from {CLIENT_IP}: {ok1}/{ok1 + failed1} in {secs1:.1f} s ({rate1:.0f} conn/s); "
            f"rs1 holds {len(held)} in TIME_WAIT")
        self.assertGreaterEqual(ok1, N * (1 - MAX_FAILURE_RATIO), "phase 1 (fresh ports) already fails")

        rvsd.cleanup()
        self.start_rvsd()
        budget = int(N * MAX_FAILURE_RATIO)
        ok2, failed2, secs2 = phase(SECOND_CLIENT, N, budget)
        rate2 = ok2 / secs2
        log(f"phase 2 from {SECOND_CLIENT} after the restart: {ok2}/{ok2 + failed2} in {secs2:.1f} s "
            f"({rate2:.0f} conn/s, {failed2} needed more than {CONNECT_TIMEOUT} s)")
        self.assertLessEqual(failed2, budget,
                             f"{failed2} of {ok2 + failed2} connections on reused local ports hit rs1's TIME_WAIT")
        self.assertEqual(ok2 + failed2, N)
        reused = len(rvsd_local_ports() & held)
        log(f"phase 2 reused {reused} local ports that rs1 held in TIME_WAIT")
        self.assertGreater(reused, N // 2, "the test did not make rvsd reuse ports rs1 holds")

if __name__ == "__main__":
    unittest.main()
