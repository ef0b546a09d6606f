"""Packet capture from a running rvsd (issue 15): Debian's dpdk-dumpcap
attached as a DPDK secondary process, and the REST capture
(GET /api/v1/capture) of one service's frames as received and as sent.

rvsd runs on 2 MB hugepages with shared EAL state (no --in-memory) so that
dpdk-dumpcap can attach; the test reserves the pages it needs (rvsd's EAL
memory, its connection table and dumpcap's mempool) when fewer are free. On a
machine without hugepages the dumpcap test is skipped with the reason and the
REST tests run on --no-huge.

Run as root after `cargo build --release`:
    flock /run/rvs-e2e.lock python3 -m unittest -v tests.e2e.test_72_capture
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import labutil as lab  # noqa: E402
from labutil import setUpModule, tearDownModule  # noqa: E402,F401
from labutil import CLIENT_IP, DR_VIP, NAT_VIP, NS_CLIENT, NS_DIR  # noqa: E402

PREFIX = "rvs-e2e-cap"
TOKEN = "capture-test-token"
EAL_MB = 256
# rvsd's EAL memory, its connection table (65536 slots, a few MB) and
# dumpcap's packet pool, with room to spare.
PAGES_NEEDED = (EAL_MB + 128) // 2
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
NAT_RIPS = ("10.1.0.11", "10.1.0.12")


def free_hugepages() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("HugePages_Free:"):
            return int(line.split()[1])
    return 0


def hugepages_for_dumpcap() -> str | None:
    """Makes PAGES_NEEDED 2 MB pages free (reserving more if needed and
    allowed); returns why not, or None."""
    if not Path("/dev/hugepages").is_mount():
        return "no hugetlbfs on /dev/hugepages"
    short = PAGES_NEEDED - free_hugepages()
    if short > 0:
        try:
            NR_HUGEPAGES.write_text(str(int(NR_HUGEPAGES.read_text()) + short))
        except OSError as e:
            return f"cannot reserve {short} more hugepages: {e}"
    if free_hugepages() < PAGES_NEEDED:
        return f"only {free_hugepages()} hugepages free, {PAGES_NEEDED} needed"
    return None


def remove_eal_files() -> None:
    """The hugepage files and runtime directory a shared-state EAL leaves."""
    for f in glob.glob(f"/dev/hugepages/{PREFIX}map_*"):
        os.unlink(f)
    shutil.rmtree(f"/var/run/dpdk/{PREFIX}", ignore_errors=True)


NO_HUGEPAGES = hugepages_for_dumpcap() if os.geteuid() == 0 else "not root"


def config() -> dict:
    cfg = lab.lab_config()
    memory = ["--no-huge", "-m", str(EAL_MB)] if NO_HUGEPAGES else ["-m", str(EAL_MB)]
    cfg["eal"] = [*memory, "--no-pci", "--file-prefix", PREFIX]
    cfg["api"]["token"] = TOKEN
    return cfg


def tshark(path: Path, *fields: str, display: str = "") -> list[list[str]]:
    """One row of `fields` per frame of the capture file `path`."""
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=,"]
    for f in fields:
        cmd += ["-e", f]
    if display:
        cmd += ["-Y", display]
    out = lab.run(cmd, timeout=60)
    return [line.split(",") for line in out.stdout.splitlines() if line.strip()]


class Capture(lab.RvsdTestCase):
    CONFIG = None

    @classmethod
    def setUpClass(cls):
        remove_eal_files()
        cls.CONFIG = config()
        cls.addClassCleanup(remove_eal_files)
        super().setUpClass()
        cls.tmp = tempfile.TemporaryDirectory(prefix="rvs-cap72-")
        cls.addClassCleanup(cls.tmp.cleanup)

    # -- helpers ---------------------------------------------------------

    def rest_capture(self, query: str, token: str | None = TOKEN, timeout: float = 90):
        """(status, headers, body path) of GET /api/v1/capture?query."""
        out = Path(self.tmp.name) / f"rest-{time.monotonic_ns()}.pcapng"
        headers = out.with_suffix(".headers")
        cmd = ["curl", "-s", "-S", "--max-time", str(timeout), "-D", str(headers), "-o", str(out),
               "-w", "%{http_code}"]
        if token:
            cmd += ["-H", f"Authorization: Bearer {token}"]
        cmd.append(f"{lab.API}/api/v1/capture?{query}")
        cp = lab.nsx(NS_DIR, cmd, check=False, timeout=timeout + 10)
        status = int(cp.stdout.strip() or 0)
        head = {}
        if headers.exists():
            for line in headers.read_text(errors="replace").splitlines()[1:]:
                name, _, value = line.partition(":")
                if value:
                    head[name.strip().lower()] = value.strip()
        return status, head, out

    def traffic_while(self, work, url: str, count: int):
        """Runs `work()` in a thread, sends `count` HTTP requests to `url`
        once it had time to arm, returns work's result."""
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", work()))
        t.start()
        time.sleep(1.0)
        answers = lab.http_requests(url, count)
        t.join(timeout=120)
        self.assertFalse(t.is_alive(), "the capture did not end")
        return result["r"], answers

    # -- dpdk-dumpcap ----------------------------------------------------

    def test_1_dumpcap_attaches_with_a_bpf_filter(self):
        if NO_HUGEPAGES:
            self.assertIn("dpdk-dumpcap cannot attach", self.rvsd.log_text(400))
            self.skipTest(f"dpdk-dumpcap needs hugepages: {NO_HUGEPAGES}")
        self.assertIn("packet capture server started", self.rvsd.log_text(400))
        out = Path(self.tmp.name) / "dumpcap.pcapng"
        frames = 12
        proc = subprocess.Popen(
            ["ip", "netns", "exec", NS_DIR, "dpdk-dumpcap", f"--file-prefix={PREFIX}", "-i", "net_af_packet0",
             "-f", f"tcp and host {NAT_VIP} and port 80", "-c", str(frames), "-a", "duration:90",
             "-w", str(out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        try:
            # dumpcap's "Capturing on" line is buffered (stdout is a pipe): send
            # rounds of traffic until it has its frames. Each round: the DR
            # service (must not match) and the NAT service (matches).
            deadline = time.monotonic() + 90
            rounds = 0
            while proc.poll() is None and time.monotonic() < deadline:
                lab.http_requests(f"http://{DR_VIP}:80/", 1)
                answers = lab.http_requests(f"http://{NAT_VIP}:80/", 2)
                self.assertEqual(len(answers), 2, answers)
                rounds += 1
                time.sleep(0.5)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        reader.join(timeout=5)
        proc.stdout.close()
        self.assertEqual(proc.returncode, 0, "".join(lines))
        rows = tshark(out, "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport")
        lab.figure(f"dpdk-dumpcap: {len(rows)} frames after {rounds} rounds of traffic; "
                   f"{''.join(lines).strip().splitlines()[-1:]}")
        # dumpcap stops after the burst that reaches -c: at least that many.
        self.assertGreaterEqual(len(rows), frames, rows)
        for src, dst, sport, dport in rows:
            self.assertIn(NAT_VIP, (src, dst), rows)
            self.assertIn("80", (sport, dport), rows)
        self.assertIn([CLIENT_IP, NAT_VIP], [r[:2] for r in rows], "client → VIP as received")

    # -- REST ------------------------------------------------------------

    def test_2_rest_capture_returns_the_rewritten_frames_of_one_service(self):
        query = f"service=tcp/{NAT_VIP}/80&count=40&seconds=30"
        (status, head, out), answers = self.traffic_while(
            lambda: self.rest_capture(query), f"http://{NAT_VIP}:80/", 8)
        self.assertEqual(len(answers), 8, answers)
        self.assertEqual(status, 200, out.read_bytes()[:300] if out.exists() else head)
        self.assertEqual(head.get("content-type"), "application/x-pcapng")
        self.assertEqual(head.get("x-rvs-capture-stop"), "count", head)
        rows = tshark(out, "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "frame.packet_flags_direction")
        self.assertEqual(len(rows), 40, rows)
        pairs = {(r[0], r[1], r[4]) for r in rows}
        lab.figure(f"REST capture: {len(rows)} frames, {sorted(pairs)}")
        inbound, outbound = "0x00000001", "0x00000002"
        self.assertIn((CLIENT_IP, NAT_VIP, inbound), pairs, "client → VIP as received")
        self.assertTrue(any(s == CLIENT_IP and d in NAT_RIPS and f == outbound for s, d, f in pairs),
                        f"client → RIP as sent (rewritten): {pairs}")
        self.assertTrue(any(s in NAT_RIPS and d == CLIENT_IP and f == inbound for s, d, f in pairs),
                        f"RIP → client as received: {pairs}")
        self.assertIn((NAT_VIP, CLIENT_IP, outbound), pairs, "VIP → client as sent (rewritten)")
        for src, dst, sport, dport, _ in rows:
            self.assertIn("80", (sport, dport), rows)
            self.assertNotIn(DR_VIP, (src, dst), rows)

    def test_3_other_services_frames_are_not_captured(self):
        # Only DR traffic while capturing the NAT service: nothing comes back
        # but the time bound ends it.
        query = f"service=tcp/{NAT_VIP}/80&count=5&seconds=4"
        t0 = time.monotonic()
        (status, head, out), answers = self.traffic_while(
            lambda: self.rest_capture(query), f"http://{DR_VIP}:80/", 5)
        took = time.monotonic() - t0
        self.assertEqual(len(answers), 5, answers)
        self.assertEqual(status, 200, head)
        self.assertEqual(head.get("x-rvs-capture-stop"), "seconds", head)
        self.assertEqual(tshark(out, "ip.src"), [], "frames of the DR service in the NAT service's capture")
        self.assertGreaterEqual(took, 4)
        lab.figure(f"seconds=4 capture returned after {took:.1f}s with 0 frames")

    def test_4_bpf_filter_and_bounds(self):
        # A filter keeping only the client's SYNs towards the VIP.
        query = (f"service=tcp/{NAT_VIP}/80&count=3&seconds=30"
                 "&filter=tcp%5Btcpflags%5D%20%26%20tcp-syn%20!%3D%200%20and%20dst%20port%2080%20and%20not%20tcp-ack")
        (status, head, out), _ = self.traffic_while(
            lambda: self.rest_capture(query), f"http://{NAT_VIP}:80/", 5)
        self.assertEqual(status, 200, head)
        rows = tshark(out, "ip.src", "ip.dst", "tcp.flags.syn", "tcp.flags.ack")
        self.assertEqual(len(rows), 3, rows)
        for src, dst, syn, ack in rows:
            self.assertEqual((src, syn, ack), (CLIENT_IP, "1", "0"), rows)
            self.assertIn(dst, (NAT_VIP, *NAT_RIPS), rows)

    def test_5_bad_parameters_and_token(self):
        for query, field in [
            ("count=5", "service"),
            (f"service=tcp/{NAT_VIP}", "service"),
            (f"service=tcp/{NAT_VIP}/80&count=0", "count"),
            (f"service=tcp/{NAT_VIP}/80&count=many", "count"),
            (f"service=tcp/{NAT_VIP}/80&seconds=3600", "seconds"),
            (f"service=tcp/{NAT_VIP}/80&filter=port%20and", "filter"),
            (f"service=tcp/{NAT_VIP}/80&bogus=1", "bogus"),
        ]:
            with self.subTest(query=query):
                status, _, out = self.rest_capture(query)
                body = json.loads(out.read_text())
                self.assertEqual(status, 400, body)
                self.assertEqual(body.get("field"), field, body)
                self.assertIn(field, body.get("error", ""), body)
        status, _, out = self.rest_capture("service=udp/10.0.0.99/53")
        self.assertEqual(status, 404, out.read_text())
        self.assertIn("service", out.read_text())
        status, head, out = self.rest_capture(f"service=tcp/{NAT_VIP}/80&count=1&seconds=1", token=None)
        self.assertEqual(status, 401, out.read_text())
        status, _, out = self.rest_capture(f"service=tcp/{NAT_VIP}/80&count=1&seconds=1", token="wrong")
        self.assertEqual(status, 401, out.read_text())

    def test_6_one_capture_at_a_time(self):
        first = {}
        t = threading.Thread(target=lambda: first.setdefault(
            "r", self.rest_capture(f"service=tcp/{NAT_VIP}/80&count=1&seconds=5")))
        t.start()
        time.sleep(1.5)
        status, _, out = self.rest_capture(f"service=tcp/{NAT_VIP}/80&count=1&seconds=1")
        t.join(timeout=30)
        self.assertEqual(status, 409, out.read_text())
        self.assertEqual(first["r"][0], 200)

    def test_7_shutdown_ends_a_running_capture(self):
        # Last: it stops this class's rvsd. SIGTERM must not wait for seconds=60.
        first = {}
        t = threading.Thread(target=lambda: first.setdefault(
            "r", self.rest_capture(f"service=tcp/{NAT_VIP}/80&count=10000&seconds=60")))
        t.start()
        time.sleep(1.5)
        t0 = time.monotonic()
        rc = self.rvsd.stop()
        took = time.monotonic() - t0
        t.join(timeout=30)
        lab.figure(f"SIGTERM during a 60 s capture: rvsd exited {rc} after {took:.1f}s")
        self.assertEqual(rc, 0, self.rvsd.log_text())
        self.assertLess(took, 8)
        self.assertEqual(first["r"][0], 200, first["r"])


if __name__ == "__main__":
    unittest.main()
