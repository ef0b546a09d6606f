"""Scale-out behind ECMP (issue 17): three rvsd nodes, each with its own BIRD,
announce a VIP to a router (BIRD, BGP + BFD) that spreads flows with Linux
multipath routes (L4 hash). deploy/cluster-lab.sh builds the namespaces.

Shown here, with real kernels, real BGP and real TCP streams checked byte
for byte (tests/e2e/ecmp_streams.py):
  1. flows spread over the three nodes; each flow's real server is the one
     the maglev table gives, on whichever node it lands;
  2. a node SIGKILLed under 100 long-lived DR streams: the router converges
     (BFD; the time is printed), the streams of the surviving nodes are
     untouched and those of the lost node continue on the others (sloppy
     adoption to the same real server);
  3. the node comes back (a node added): the flows ECMP moves to it continue;
  4. a node drained: its routes are withdrawn before anything else, none of
     its streams is cut within the grace period, then rvsd stops.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nsutil import log, nsx, run, wait_for  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB = REPO_ROOT / "deploy" / "cluster-lab.sh"
STREAMS = Path(__file__).resolve().parent / "ecmp_streams.py"
STATE = Path(os.environ.get("RVSC_LAB_STATE", "/run/rvsc-lab"))
VIP = "10.10.0.100"
ROUTER = "rvsc-router"
CLIENT = "rvsc-client"
REALS = {"10.2.0.11": "rs1", "10.2.0.12": "rs2"}


def node_ns(n: int) -> str:
    return f"rvsc-n{n}"


def node_ip(n: int) -> str:
    return f"10.2.0.{n}"


def lab(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return run(["bash", str(LAB), *args], timeout=timeout)


def api(n: int, method: str, path: str) -> tuple[int, dict]:
    cp = nsx(node_ns(n), ["curl", "-s", "--max-time", "15", "-X", method, "-o", "-", "-w", "\n%{http_code}",
                          f"http://127.0.0.1:9090{path}"], check=False, timeout=20)
    body, _, code = cp.stdout.rpartition("\n")
    try:
        return int(code or 0), json.loads(body) if body.strip() else {}
    except ValueError:
        return int(code or 0), {"raw": body}


def paths() -> set[str]:
    """The router's next hops for the VIP (its ECMP route)."""
    out = nsx(ROUTER, ["ip", "-j", "route", "show", VIP], check=False).stdout
    hops: set[str] = set()
    for r in json.loads(out or "[]"):
        if "gateway" in r:
            hops.add(r["gateway"])
        for h in r.get("nexthops", []):
            hops.add(h["gateway"])
    return hops


def rvsd_pid(n: int) -> int | None:
    try:
        return int((STATE / f"n{n}" / "rvsd.pid").read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def counter(n: int, name: str) -> int:
    status, stats = api(n, "GET", "/api/v1/stats")
    if status != 200:
        return 0
    return sum(w["counters"].get(name, 0) for w in stats.get("workers", []))


def flows_on(n: int, vport: int) -> dict[int, str]:
    """Client port -> real server of node n's connections to VIP:vport."""
    status, body = api(n, "GET", "/api/v1/connections?limit=100000")
    if status != 200:
        return {}
    out = {}
    for c in body.get("connections", []):
        if c["vip"] == f"{VIP}:{vport}":
            out[int(c["client"].rsplit(":", 1)[1])] = c["real"].rsplit(":", 1)[0]
    return out


class Streams:
    """ecmp_streams.py in the client namespace."""

    def __init__(self, count: int, first_sport: int):
        self.dir = Path(tempfile.mkdtemp(prefix="rvsc-streams-"))
        self.count, self.first = count, first_sport
        with open(self.dir / "stderr", "wb") as err:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", CLIENT, sys.executable, str(STREAMS), VIP, "9000", str(count),
                 str(first_sport), str(self.dir)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        self.banners: dict[int, str] = {}

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(lambda: (self.dir / "ready").exists() or self.proc.poll() is not None, timeout,
                 what="every stream's banner")
        if not (self.dir / "ready").exists():
            raise AssertionError(f"stream driver exited: {(self.dir / 'stderr').read_text()}")
        self.banners = {int(k): v for k, v in json.loads((self.dir / "ready").read_text()).items()}

    def finish(self) -> list[dict]:
        (self.dir / "stop").touch()
        self.proc.wait(90)
        report = json.loads((self.dir / "report.json").read_text())
        shutil.rmtree(self.dir, ignore_errors=True)
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def intact(s: dict) -> bool:
    return s["error"] is None and s["sent"] > 0 and s["received"] == s["sent"]


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        for tool in ("bird", "birdc", "socat", "curl"):
            if shutil.which(tool) is None:
                raise unittest.SkipTest(f"{tool} missing (deploy/setup.sh installs it)")
        lab("up")
        try:
            for n in (1, 2, 3):
                lab("start-node", str(n))
            wait_for(lambda: paths() == {node_ip(1), node_ip(2), node_ip(3)}, 60, 0.1,
                     what="three ECMP paths on the router")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        if os.environ.get("RVS_E2E_KEEP") != "1":
            lab("down")

    def ensure_nodes(self, nodes: tuple[int, ...]) -> None:
        for n in nodes:
            if not alive(rvsd_pid(n)):
                lab("start-node", str(n))
        want = {node_ip(n) for n in nodes}
        wait_for(lambda: want <= paths(), 60, 0.1, what=f"paths {sorted(want)}")

    def spread_of(self, streams: Streams, nodes: tuple[int, ...]) -> dict[int, int]:
        """Stream client port -> the node holding its connection."""
        where: dict[int, int] = {}
        for n in nodes:
            for sport in flows_on(n, 9000):
                if streams.first <= sport < streams.first + streams.count:
                    where[sport] = n
        return where

    # -- 1 ---------------------------------------------------------------
    def test_1_flows_spread_and_every_node_picks_the_same_real(self) -> None:
        self.ensure_nodes((1, 2, 3))
        answers = {}
        for i in range(60):
            sport = 41000 + i
            cp = nsx(CLIENT, ["curl", "-s", "--max-time", "5", "--local-port", str(sport), f"http://{VIP}/"],
                     check=False, timeout=15)
            answers[sport] = cp.stdout.strip()
        self.assertTrue(all(a in REALS.values() for a in answers.values()), answers)
        seen: dict[int, tuple[int, str]] = {}
        per_node = {}
        for n in (1, 2, 3):
            flows = {p: r for p, r in flows_on(n, 80).items() if p in answers}
            per_node[n] = len(flows)
            for sport, real in flows.items():
                self.assertNotIn(sport, seen, f"flow {sport} on two nodes")
                seen[sport] = (n, real)
                # The real server the node scheduled is the one that answered.
                self.assertEqual(REALS[real], answers[sport], f"flow {sport} on node {n}")
        log(f"ECMP spread of 60 flows over the nodes: {per_node}; real servers: "
            f"{ {r: list(answers.values()).count(r) for r in REALS.values()} }")
        self.assertEqual(len(seen), 60, "every flow has its connection on one node")
        for n, count in per_node.items():
            self.assertGreater(count, 0, f"node {n} got no flow: {per_node}")

    # -- 2 ---------------------------------------------------------------
    def test_2_a_killed_node_loses_no_stream(self) -> None:
        self.ensure_nodes((1, 2, 3))
        streams = Streams(100, 42000)
        try:
            streams.wait_ready()
            where = self.spread_of(streams, (1, 2, 3))
            self.assertEqual(len(where), 100, "every stream has a connection on a node")
            victim = 3
            lost = {p for p, n in where.items() if n == victim}
            self.assertTrue(lost, f"no stream on node {victim}: {where}")
            time.sleep(1)  # data flowing on every stream
            adopted_before = sum(counter(n, "conn_adopted") for n in (1, 2))
            pid = rvsd_pid(victim)
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: node_ip(victim) not in paths(), 30, 0.02, what="the router dropping the dead node")
            converged = time.monotonic() - t0
            log(f"router converged {converged:.2f} s after SIGKILL (BFD 200 ms x 5); paths now {sorted(paths())}")
            wait_for(lambda: not alive(pid), 10, what="rvsd gone")
            time.sleep(4)  # the moved streams go on through the other nodes
            report = streams.finish()
        finally:
            streams.kill()
        by_port = {s["sport"]: s for s in report}
        survivors = [by_port[p] for p in where if p not in lost]
        moved = [by_port[p] for p in lost]
        untouched = sum(intact(s) for s in survivors)
        broken = [s for s in report if not intact(s)]
        log(f"{len(lost)} streams were on the killed node, {len(survivors)} on the others; "
            f"survivors intact {untouched}/{len(survivors)}, lost node's intact {sum(intact(s) for s in moved)}/{len(moved)}")
        self.assertGreaterEqual(untouched, 0.99 * len(survivors), broken[:5])
        for s in moved:
            self.assertTrue(intact(s), f"stream {s} of the killed node did not continue byte for byte")
            self.assertEqual(s["banner"], streams.banners[s["sport"]])
        adopted = sum(counter(n, "conn_adopted") for n in (1, 2)) - adopted_before
        self.assertGreaterEqual(adopted, len(lost), "the surviving nodes adopted the lost node's streams")
        self.assertLess(converged, 15)

    # -- 3 ---------------------------------------------------------------
    def test_3_flows_moved_to_an_added_node_continue(self) -> None:
        self.ensure_nodes((1, 2))
        if alive(rvsd_pid(3)):
            lab("stop-node", "3")
        wait_for(lambda: paths() == {node_ip(1), node_ip(2)}, 60, 0.1, what="two paths")
        streams = Streams(100, 43000)
        try:
            streams.wait_ready()
            time.sleep(1)
            lab("start-node", "3")
            t0 = time.monotonic()
            wait_for(lambda: node_ip(3) in paths(), 60, 0.05, what="the router adding node 3")
            log(f"node 3 in the router's ECMP route {time.monotonic() - t0:.2f} s after its API answered")
            wait_for(lambda: counter(3, "conn_adopted") > 0, 15, 0.1, what="node 3 adopting moved flows")
            time.sleep(3)
            moved = set(flows_on(3, 9000)) & set(range(43000, 43100))
            report = streams.finish()
        finally:
            streams.kill()
        broken = [s for s in report if not intact(s)]
        log(f"{len(moved)} of 100 streams moved to the added node; {len(broken)} broken")
        self.assertTrue(moved, "ECMP moved no flow to the added node")
        self.assertEqual(broken, [], "a stream was cut or corrupted when the node was added")

    # -- 4 ---------------------------------------------------------------
    def test_4_a_drained_node_withdraws_first_and_cuts_nothing(self) -> None:
        self.ensure_nodes((1, 2, 3))
        streams = Streams(100, 44000)
        grace = 6
        try:
            streams.wait_ready()
            where = self.spread_of(streams, (1, 2, 3))
            on_drained = {p for p, n in where.items() if n == 1}
            self.assertTrue(on_drained, f"no stream on node 1: {where}")
            time.sleep(1)
            pid = rvsd_pid(1)
            t0 = time.monotonic()
            status, body = api(1, "POST", f"/api/v1/cluster/drain?grace={grace}")
            self.assertEqual(status, 200, body)
            self.assertEqual(body["announced"], [], body)
            self.assertTrue(body["draining"], body)
            # Withdrawn first: node 1's BIRD exports nothing any more, while
            # rvsd still runs and serves.
            bird = nsx(node_ns(1), ["birdc", "-s", str(STATE / "n1" / "bird.ctl"), "show", "route", "protocol", "rvs_vips"],
                       check=False).stdout
            self.assertNotIn(VIP, bird)
            self.assertTrue(alive(pid))
            wait_for(lambda: node_ip(1) not in paths(), 15, 0.05, what="the router dropping the drained node")
            log(f"drained node's path gone from the router {time.monotonic() - t0:.2f} s after the drain request")
            self.assertTrue(alive(pid), "rvsd must keep serving through the grace period")
            self.assertLess(time.monotonic() - t0, grace)
            wait_for(lambda: not alive(pid), grace + 30, 0.1, what="rvsd stopping after the grace period")
            stopped = time.monotonic() - t0
            log(f"drained rvsd stopped {stopped:.1f} s after the request (grace {grace} s)")
            self.assertGreaterEqual(stopped, grace - 0.5)
            time.sleep(1)
            report = streams.finish()
        finally:
            streams.kill()
        broken = [s for s in report if not intact(s)]
        self.assertEqual(broken, [], f"streams cut by the drain ({len(on_drained)} were on the drained node)")


if __name__ == "__main__":
    unittest.main()
