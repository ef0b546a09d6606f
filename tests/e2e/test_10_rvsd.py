"""End-to-end tests of rvsd in the namespace lab (deploy/topology.sh).

Run as root after `cargo build --release`:
    python3 -m unittest discover -s tests/e2e -v

Each test class starts its own rvsd (in rvs-dir, config written to a temp
file) and stops it afterwards, also when something fails; rvsd's log is
printed for every failing test.
"""
import copy
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import labutil as lab
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)
from labutil import DR_VIP, NAT_VIP, CLIENT_IP, NS_CLIENT, NS_DIR


def thread_cpus(pid: int) -> list[tuple[str, set[int]]]:
    """Each thread of process `pid`: its name and the CPUs it may run on
    (`Cpus_allowed_list` in /proc)."""
    threads = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread exited meanwhile
        listed = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M).group(1)
        cpus = set()
        for part in listed.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
        threads.append((name, cpus))
    return threads


# ---------------------------------------------------------------------------
# 1-3: scheduling
# ---------------------------------------------------------------------------

class SchedulingTests(lab.RvsdTestCase):
    """100 sequential connections per service; every one answered, spread as
    the scheduler and weights say. Each test uses its own service."""

    def spread(self, url: str, count: int = 100) -> dict:
        answers = lab.http_requests(url, count)
        counts = lab.tally(answers)
        print(f"\n  {url}: {counts}", file=sys.stderr)
        self.assertEqual(len(answers), count, f"{url}: {answers}")
        failed = {k: v for k, v in counts.items() if k not in ("rs1", "rs2")}
        self.assertEqual(failed, {}, f"{url}: unanswered or unexpected replies: {counts}")
        return counts

    def assert_split(self, counts: dict, expected: dict, tolerance: int):
        for name, want in expected.items():
            got = counts.get(name, 0)
            self.assertLessEqual(abs(got - want), tolerance,
                                 f"{name}: got {got}, expected {want}±{tolerance} ({counts})")

    def test_1_dr_rr(self):
        counts = self.spread(f"http://{DR_VIP}:80/")
        self.assert_split(counts, {"rs1": 50, "rs2": 50}, 1)

    def test_2_nat_rr(self):
        counts = self.spread(f"http://{NAT_VIP}:80/")
        self.assert_split(counts, {"rs1": 50, "rs2": 50}, 1)

    def test_3_dr_wrr(self):
        counts = self.spread(f"http://{DR_VIP}:8080/")
        self.assert_split(counts, {"rs1": 75, "rs2": 25}, 2)

    def test_3_nat_wrr(self):
        counts = self.spread(f"http://{NAT_VIP}:8080/")
        self.assert_split(counts, {"rs1": 75, "rs2": 25}, 2)

    def test_control_threads_stay_off_the_worker_cpu(self):
        """The lab's worker polls on CPU 1 (lcore 1). rvsd's control plane
        starts its threads before EAL, with the whole machine's CPUs: once
        the worker runs they are narrowed to the other CPUs, so nothing but
        the worker is allowed on CPU 1."""
        threads = thread_cpus(self.rvsd.proc.pid)
        print(f"\n  rvsd threads: {sorted(threads)}", file=sys.stderr)
        workers = [(n, c) for n, c in threads if n.startswith("rte-worker")]
        others = [(n, c) for n, c in threads if not n.startswith("rte-worker")]
        self.assertEqual([c for _, c in workers], [{1}], f"one worker, on CPU 1: {threads}")
        self.assertTrue(any(n.startswith("tokio") for n, _ in others), f"the control plane's runtime: {threads}")
        for name, cpus in others:
            self.assertTrue(cpus, f"{name}: no CPU")
            self.assertNotIn(1, cpus, f"{name} may run on the worker's CPU: {threads}")

    def test_api_read_endpoints(self):
        for path in ("/api/v1/status", "/api/v1/config", "/api/v1/services", "/api/v1/stats",
                     lab.service_path(lab.NAT_RR_80), lab.service_path(lab.NAT_RR_80) + "/reals"):
            with self.subTest(path=path):
                resp = lab.api("GET", path)
                self.assertEqual(resp.status, 200, f"GET {path}: {resp.text}")
                self.assertIsNotNone(resp.json_or_none(), f"GET {path}: not JSON: {resp.text!r}")
        text = lab.api("GET", "/api/v1/services").text
        for svc in lab.ALL_SERVICES:
            self.assertIn(svc["vip"], text)


# ---------------------------------------------------------------------------
# 4-5: what is on the wire
# ---------------------------------------------------------------------------

def conn_key(p: lab.Packet):
    return (p.sport, p.seq, p.ip_id)


class CaptureTests(lab.RvsdTestCase):
    def setUp(self):
        super().setUp()
        self.dp0_mac = lab.mac_of(NS_DIR, "dp0")
        self.client_mac = lab.mac_of(NS_CLIENT, "eth0")
        self.rs_mac = {n: lab.mac_of(lab.real_ns(n), "eth0") for n in (1, 2)}
        self.tmp = tempfile.TemporaryDirectory(prefix="rvs-cap-")
        self.addCleanup(self.tmp.cleanup)

    def capture(self, *nss: str) -> list[lab.Capture]:
        caps = []
        for ns in nss:
            cap = lab.Capture(ns, "eth0", directory=self.tmp.name)
            self.addCleanup(cap.stop)
            caps.append(cap.start())
        return caps

    def test_4_dr_on_the_wire(self):
        client_cap, rs1_cap = self.capture(NS_CLIENT, lab.real_ns(1))
        answers = lab.http_requests(f"http://{DR_VIP}/", 4)
        client_pkts, rs1_pkts = client_cap.stop(), rs1_cap.stop()
        self.assertEqual(sorted(answers), ["rs1", "rs1", "rs2", "rs2"], answers)

        sent = {conn_key(p): p for p in client_pkts
                if p.is_tcp and p.eth_src == self.client_mac and p.ip_dst == DR_VIP and p.dport == 80}
        self.assertTrue(sent, "no client->VIP packets captured at the client")
        at_rs1 = [p for p in rs1_pkts if p.is_tcp and p.eth_dst == self.rs_mac[1] and p.dport == 80]
        self.assertTrue(any(p.syn for p in at_rs1), f"no SYN reached rs1: {rs1_pkts}")
        for p in at_rs1:
            orig = sent.get(conn_key(p))
            self.assertIsNotNone(orig, f"packet at rs1 matches nothing the client sent: {p}")
            # DR: the IP packet (ident, dst = VIP, payload) is untouched but for
            # the TTL, one less as IPVS decrements it, and so the header checksum;
            # the Ethernet header is rewritten.
            self.assertEqual(p.ip.hex(), lab.ttl_decremented(orig.ip).hex(), f"IP packet changed on the way: {orig} -> {p}")
            self.assertEqual(p.ip_dst, DR_VIP)
            self.assertEqual(p.eth_dst, self.rs_mac[1], p)
            self.assertEqual(p.eth_src, self.dp0_mac, f"not forwarded by the director (dp0): {p}")
        # Every client packet of a connection that went to rs1 got there.
        rs1_ports = {p.sport for p in at_rs1}
        missing = [p for p in sent.values() if p.sport in rs1_ports
                   and conn_key(p) not in {conn_key(q) for q in at_rs1}]
        self.assertEqual(missing, [], "client packets of rs1's connections that never reached rs1")

        # Replies at the client come from the VIP; rs1's come straight from rs1.
        replies = [p for p in client_pkts if p.is_tcp and p.ip_dst == CLIENT_IP]
        self.assertTrue(replies, "no replies at the client")
        for p in replies:
            self.assertEqual((p.ip_src, p.sport), (DR_VIP, 80), p)
            self.assertTrue(p.ip_checksum_ok() and p.l4_checksum_ok(), f"bad checksum: {p}")
            if p.dport in rs1_ports:
                self.assertEqual(p.eth_src, self.rs_mac[1], f"DR reply not direct from rs1: {p}")
        body = b"".join(p.payload for p in replies if p.dport in rs1_ports)
        self.assertIn(b"rs1\n", body)

    def test_5_nat_on_the_wire(self):
        client_cap, rs1_cap, rs2_cap = self.capture(NS_CLIENT, lab.real_ns(1), lab.real_ns(2))
        answers = lab.http_requests(f"http://{NAT_VIP}/", 4)
        client_pkts = client_cap.stop()
        rs_pkts = {1: rs1_cap.stop(), 2: rs2_cap.stop()}
        self.assertEqual(sorted(answers), ["rs1", "rs1", "rs2", "rs2"], answers)

        requests = [p.payload for p in client_pkts
                    if p.is_tcp and p.ip_dst == NAT_VIP and p.payload]
        self.assertEqual(len(requests), 4, "expected one HTTP request per connection")
        seen_requests = []
        for n, pkts in rs_pkts.items():
            inbound = [p for p in pkts if p.is_tcp and p.eth_dst == self.rs_mac[n]]
            outbound = [p for p in pkts if p.is_tcp and p.eth_src == self.rs_mac[n]]
            self.assertEqual(sum(p.syn for p in inbound), 2, f"rs{n}: {inbound}")
            for p in inbound:
                # NAT: destination rewritten to the real, source still the client.
                self.assertEqual((p.ip_src, p.ip_dst, p.dport), (CLIENT_IP, lab.real_ip(n), 80), p)
                self.assertEqual(p.eth_src, self.dp0_mac, p)
                self.assertTrue(p.ip_checksum_ok(), f"bad IP checksum after NAT: {p}")
                self.assertTrue(p.l4_checksum_ok(), f"bad TCP checksum after NAT: {p}")
                if p.payload:
                    seen_requests.append(p.payload)
            for p in outbound:
                # Replies leave via the default route: the director.
                self.assertEqual((p.ip_src, p.sport, p.ip_dst), (lab.real_ip(n), 80, CLIENT_IP), p)
                self.assertEqual(p.eth_dst, self.dp0_mac, p)
            self.assertFalse([p for p in pkts if p.ip_dst == NAT_VIP], f"VIP leaked to rs{n}")
        self.assertEqual(sorted(seen_requests), sorted(requests),
                         "request payloads changed or lost between client and reals")

        replies = [p for p in client_pkts if p.is_tcp and p.ip_dst == CLIENT_IP]
        self.assertGreaterEqual(sum(1 for p in replies if p.flags & 0x12 == 0x12), 4,
                                "expected a SYN-ACK per connection at the client")
        for p in replies:
            self.assertEqual((p.ip_src, p.sport), (NAT_VIP, 80), f"reply not from the VIP: {p}")
            self.assertEqual(p.eth_src, self.dp0_mac, p)
            self.assertTrue(p.ip_checksum_ok(), f"bad IP checksum after reverse NAT: {p}")
            self.assertTrue(p.l4_checksum_ok(), f"bad TCP checksum after reverse NAT: {p}")
        body = b"".join(p.payload for p in replies)
        self.assertIn(b"rs1\n", body)
        self.assertIn(b"rs2\n", body)


# ---------------------------------------------------------------------------
# 6: removing a real while a connection to it streams
# ---------------------------------------------------------------------------

class RemoveRealTests(lab.RvsdTestCase):
    LINES = 80           # one every 50 ms: ~4 s
    INTERVAL = "0.05"

    def stream(self, svc: dict):
        vip, port = svc["vip"], svc["port"]
        tmp = Path(tempfile.mkdtemp(prefix="rvs-stream-"))
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", str(tmp)]))
        sent, out, err = tmp / "sent", tmp / "out", tmp / "err"
        # Feeder -> tee (what was sent) -> socat -> file (banner + echoes).
        script = (f"for i in $(seq 1 {self.LINES}); do printf 'line %04d\\n' $i; "
                  f"sleep {self.INTERVAL}; done | tee {sent} | "
                  f"socat -t3 -T10 - TCP:{vip}:{port},connect-timeout=3 >{out} 2>{err}")
        proc = subprocess.Popen(["ip", "netns", "exec", NS_CLIENT, "sh", "-c", script],
                                stdin=subprocess.DEVNULL, start_new_session=True)

        def kill_stream():          # the whole pipeline: sh, tee, socat
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        self.addCleanup(kill_stream)

        def banner():
            data = out.read_bytes() if out.exists() else b""
            return data.split(b"\n", 1)[0].decode() if b"\n" in data else None

        victim = lab.wait_for(banner, 5, what=f"banner from {vip}:{port}")
        self.assertRegex(victim, r"^rs[123]$")
        victim_n = int(victim[2:])

        # Remove the real that serves the stream.
        path = f"{lab.service_path(svc)}/reals/{lab.real_ip(victim_n)}/{port}"
        t0 = time.monotonic()
        resp = lab.api("DELETE", path)
        api_ms = (time.monotonic() - t0) * 1000
        body = self.assert_mutation_ok(resp, f"DELETE {victim} from {vip}:{port}")
        print(f"  (API round trip incl. ip netns exec + curl: {api_ms:.1f} ms)", file=sys.stderr)
        out_at_delete = out.read_bytes()
        reals = lab.api("GET", lab.service_path(svc) + "/reals")
        self.assertEqual(reals.status, 200, reals.text)
        self.assertNotIn(lab.real_ip(victim_n), reals.text, "removed real still listed")

        # New connections never reach the removed real, and all get answered.
        banners = lab.echo_banners(vip, port, 20)
        counts = lab.tally(banners)
        print(f"  new connections after removing {victim}: {counts}", file=sys.stderr)
        self.assertEqual(len(banners), 20, banners)
        self.assertNotIn(victim, counts, f"new connections reached the removed {victim}")
        self.assertNotIn("ERR", counts, f"unanswered connections: {counts}")
        self.assertEqual(len(counts), 2, f"rr over the 2 remaining reals: {counts}")

        # The established connection to the removed real survives intact.
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.fail("stream did not finish in 30 s")
        self.assertEqual(rc, 0, f"socat failed: {err.read_text()}")
        final, sent_bytes = out.read_bytes(), sent.read_bytes()
        self.assertEqual(sent_bytes.count(b"\n"), self.LINES)
        expected = victim.encode() + b"\n" + sent_bytes
        if final != expected:
            self.fail(f"stream to the removed {victim} broke: got {len(final)} bytes, expected "
                      f"{len(expected)} ({len(out_at_delete)} had arrived when it was removed)\n"
                      f"got tail: {final[-120:]!r}\nexpected tail: {expected[-120:]!r}")
        self.assertLess(len(out_at_delete), len(final),
                        "harness: the stream had ended before the real was removed")

        # Put it back; it gets new connections again.
        resp = lab.api("POST", lab.service_path(svc) + "/reals",
                       {"address": lab.real_ip(victim_n), "weight": 1})
        self.assert_mutation_ok(resp, f"POST {victim} back to {vip}:{port}")
        counts = lab.tally(lab.echo_banners(vip, port, 6))
        self.assertEqual(counts, {"rs1": 2, "rs2": 2, "rs3": 2}, "rr over 3 reals again")

    def test_6_remove_real_nat(self):
        self.stream(lab.NAT_RR_9000)

    def test_6_remove_real_dr(self):
        self.stream(lab.DR_RR_9000)


# ---------------------------------------------------------------------------
# 7: bad input
# ---------------------------------------------------------------------------

def bad_configs() -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, config text, words of which stderr must contain at least one)."""
    good = lab.lab_config()
    cases = [("malformed JSON", json.dumps(good)[:-40],
              ("json", "parse", "eof", "expected", "line"))]
    c = copy.deepcopy(good)
    c["services"][0]["colour"] = "red"
    cases.append(("unknown field", json.dumps(c), ("colour",)))
    c = copy.deepcopy(good)
    c["services"][0]["scheduler"] = "bogus-sched"
    cases.append(("unknown scheduler", json.dumps(c), ("scheduler", "bogus-sched")))
    c = copy.deepcopy(good)
    c["services"][2]["reals"][0]["weight"] = 70000
    cases.append(("weight 70000", json.dumps(c), ("weight", "70000")))
    return cases


class ConfigValidationTests(unittest.TestCase):
    """7a: rvsd refuses bad configs with a non-zero exit and a clear message."""

    def setUp(self):
        if not lab.RVSD.exists():
            self.fail(f"rvsd binary not found at {lab.RVSD}")
        self.tmp = tempfile.TemporaryDirectory(prefix="rvs-cfg-")
        self.addCleanup(self.tmp.cleanup)

    def rvsd(self, text: str, *extra: str) -> subprocess.CompletedProcess:
        path = Path(self.tmp.name) / "config.json"
        path.write_text(text)
        cmd = ["ip", "netns", "exec", NS_DIR, str(lab.RVSD), "--config", str(path), *extra]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            lab.run(["bash", "-c", f"ip netns pids {NS_DIR} | xargs -r kill -9"], check=False)
            self.fail(f"rvsd {' '.join(extra)} did not exit within 30 s on a bad config")

    def test_7a_good_config_checks(self):
        cp = self.rvsd(json.dumps(lab.lab_config()), "--check")
        self.assertEqual(cp.returncode, 0, f"--check rejected the lab config: {cp.stderr}")

    def test_7a_bad_configs(self):
        for name, text, words in bad_configs():
            for extra in (("--check",), ()):
                with self.subTest(case=name, mode=" ".join(extra) or "run"):
                    cp = self.rvsd(text, *extra)
                    self.assertNotEqual(cp.returncode, 0, f"{name}: accepted; stderr: {cp.stderr}")
                    err = cp.stderr.lower()
                    self.assertTrue(any(w in err for w in words),
                                    f"{name}: stderr names none of {words}: {cp.stderr!r}")


class ApiValidationTests(lab.RvsdTestCase):
    """7b: bad API requests get a 4xx JSON error and change nothing."""

    def expect_error(self, method, path, body=None, raw=None, field=None):
        resp = lab.api(method, path, body, raw=raw)
        what = f"{method} {path} {raw if raw is not None else json.dumps(body)}"
        self.assertTrue(400 <= resp.status < 500, f"{what}: HTTP {resp.status}: {resp.text}")
        err = resp.json_or_none()
        self.assertIsInstance(err, dict, f"{what}: error body is not JSON: {resp.text!r}")
        self.assertTrue(err.get("error"), f"{what}: no 'error' message: {err}")
        if field is not None:
            # The contract is {"error", "field"}; a body that fails to
            # deserialize may name the path only in the message, accept that.
            self.assertTrue(field in str(err.get("field")) or field in str(err.get("error")),
                            f"{what}: neither 'field' nor 'error' names {field}: {err}")
        return resp

    def test_7b_bad_requests_change_nothing(self):
        before = lab.api("GET", "/api/v1/config")
        self.assertEqual(before.status, 200, before.text)
        services = "/api/v1/services"
        new = lab.service("tcp", NAT_VIP, 81, "rr", "nat", [lab.real(1)])
        nat80 = lab.service_path(lab.NAT_RR_80)

        self.expect_error("POST", services, raw='{"protocol": "tcp", "vip": ')
        bad = copy.deepcopy(new)
        bad["scheduler"] = "bogus-sched"
        self.expect_error("POST", services, bad, field="scheduler")
        self.expect_error("POST", services, lab.NAT_RR_80)                  # duplicate
        bad = copy.deepcopy(new)
        bad["reals"][0]["weight"] = 70000
        self.expect_error("POST", services, bad, field="weight")
        bad = copy.deepcopy(new)
        bad["colour"] = "red"
        self.expect_error("POST", services, bad, field="colour")
        bad = lab.service("tcp", DR_VIP, 81, "rr", "dr", [lab.real(1, port=8081)])
        self.expect_error("POST", services, bad, field="port")              # DR remaps no port
        self.expect_error("POST", nat80 + "/reals", {"address": lab.real_ip(3), "weight": 70000},
                          field="weight")
        self.expect_error("POST", nat80 + "/reals", {"address": lab.real_ip(1)})  # duplicate real
        self.expect_error("PUT", f"{nat80}/reals/{lab.real_ip(1)}/80",
                          {"address": lab.real_ip(1), "weight": 70000}, field="weight")
        self.expect_error("DELETE", f"{nat80}/reals/10.1.0.99/80")
        self.expect_error("GET", lab.service_path(new))
        self.expect_error("DELETE", lab.service_path(new))

        after = lab.api("GET", "/api/v1/config")
        self.assertEqual(after.status, 200, after.text)
        self.assertEqual(after.json, before.json, "a rejected request changed the config")

        # Traffic still flows as before.
        for url in (f"http://{NAT_VIP}/", f"http://{DR_VIP}/"):
            counts = lab.tally(lab.http_requests(url, 10))
            self.assertEqual(counts, {"rs1": 5, "rs2": 5}, url)

    def test_7b_valid_mutations_adopt(self):
        """A valid weight change is adopted and takes effect (control case)."""
        path = f"{lab.service_path(lab.NAT_WRR_8080)}/reals/{lab.real_ip(2)}/8080"
        resp = lab.api("PUT", path, {"address": lab.real_ip(2), "weight": 0})
        self.assert_mutation_ok(resp, "PUT rs2 weight 0 on NAT :8080")
        counts = lab.tally(lab.http_requests(f"http://{NAT_VIP}:8080/", 8))
        self.assertEqual(counts, {"rs1": 8}, "weight 0 must take no new connections")
        resp = lab.api("PUT", path, {"address": lab.real_ip(2), "weight": 1})
        self.assert_mutation_ok(resp, "PUT rs2 weight 1 on NAT :8080")


# ---------------------------------------------------------------------------
# 8: ICMP and ARP
# ---------------------------------------------------------------------------

class IcmpArpTests(lab.RvsdTestCase):
    def setUp(self):
        super().setUp()
        self.dp0_mac = lab.mac_of(NS_DIR, "dp0")

    def assert_neigh(self, ns: str, ip: str):
        entry = lab.neighbour(ns, ip)
        self.assertIsNotNone(entry, f"{ns}: no ARP entry for {ip}")
        self.assertEqual(entry.get("lladdr", "").lower(), self.dp0_mac, f"{ns}: {ip}: {entry}")
        self.assertNotIn("FAILED", entry.get("state", []), entry)

    def test_8_ping_director(self):
        for ns, ip in ((NS_CLIENT, "10.0.0.1"), (lab.real_ns(1), "10.1.0.1")):
            with self.subTest(ns=ns, ip=ip):
                lab.nsx(ns, ["ip", "neigh", "flush", "all"])
                cp = lab.nsx(ns, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", ip], check=False)
                self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
                self.assertRegex(cp.stdout, r"3 packets transmitted, 3 received", cp.stdout)
                self.assert_neigh(ns, ip)

    def test_8_arp_for_vips(self):
        lab.nsx(NS_CLIENT, ["ip", "neigh", "flush", "all"])
        for vip in (DR_VIP, NAT_VIP):
            with self.subTest(vip=vip):
                self.assertIn(lab.http_requests(f"http://{vip}/", 1), (["rs1"], ["rs2"]))
                self.assert_neigh(NS_CLIENT, vip)

    def test_8_no_arp_for_other_addresses(self):
        lab.nsx(NS_CLIENT, ["ip", "neigh", "flush", "all"])
        lab.nsx(NS_CLIENT, ["ping", "-n", "-c", "1", "-W", "1", "10.0.0.77"], check=False)
        entry = lab.neighbour(NS_CLIENT, "10.0.0.77")
        self.assertFalse(entry and entry.get("lladdr"), f"someone answered ARP for 10.0.0.77: {entry}")


if __name__ == "__main__":
    unittest.main()
