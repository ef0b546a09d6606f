"""Issue 4 end to end: connection semantics at IPVS parity, in the namespace
lab, on 2 workers.

- Persistence (-p 3) holds across both workers and ends after its timeout.
- TCP state tracking driven by real TCP (curl, an open connection, an RST)
  and by hand-built packets (AF_PACKET in rvs-client): each state with its
  own configured timeout, and `rvsadm --set` changing what new entries get.
- A quiescent real server (weight 0) keeps its stream while new connections
  go elsewhere; with `expire_quiescent` the stream is cut.
- An upper connection threshold sends new connections elsewhere.
"""
import random
import shlex
import time
import unittest

import labutil as lab
from labutil import figure as log
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)
from labutil import CLIENT_IP, DR_VIP, NAT_VIP, NS_CLIENT, NS_DIR

REALS = [lab.real(1), lab.real(2)]


def curl_with_port(url: str) -> tuple[str, int]:
    """One curl from the client: (body, the client's source port)."""
    out = lab.sh(NS_CLIENT, f"curl -s --max-time 2 -w '\\n%{{local_port}}' {shlex.quote(url)}").stdout
    body, _, port = out.strip().rpartition("\n")
    return body.strip(), int(port)


def entry_for(client_port: int, client: str = CLIENT_IP, **filters) -> dict | None:
    for e in lab.connections(client=client, **filters):
        if e["client"] == f"{client}:{client_port}" and not e.get("template"):
            return e
    return None


# ---------------------------------------------------------------------------
# Persistence across workers
# ---------------------------------------------------------------------------

class PersistenceTests(lab.RvsdTestCase):
    SVC = lab.mode_service("tcp", "nat", 80, REALS, persistence={"timeout": 3})
    SHORT = {"tcp_time_wait": 1, "tcp_fin": 1, "tcp_close": 1, "tcp_close_wait": 1,
             "tcp_last_ack": 1, "tcp_syn": 2}
    CONFIG = lab.make_config([SVC], workers=2, prefix="rvs-e2e-persist", timeouts=SHORT)
    URL = f"http://{NAT_VIP}/"

    def templates(self) -> list[dict]:
        # By client, not by service: see test_template_listed_by_service.
        return [e for e in lab.connections(client=CLIENT_IP, templates="true")
                if e.get("template") and e["vip"].split(":")[0] == NAT_VIP]

    def wait_no_template(self) -> float:
        t0 = time.monotonic()
        lab.wait_for(lambda: not self.templates() and not lab.connections(service=lab.svc_id(self.SVC)),
                     20, interval=0.2, what="connections and the persistence template to expire")
        return time.monotonic() - t0

    def test_template_listed_by_service(self):
        """ipvsadm -Lnc shows a port service's template as
        client:0 -> VIP:vport -> real:rport (IPVS ip_vs_sched_persist), and
        the API's service filter should find it."""
        self.wait_no_template()
        body, _ = self.curls(1)[0]
        self.assertIn(body, ("rs1", "rs2"))
        mine = self.templates()
        by_service = [e for e in lab.connections(service=lab.svc_id(self.SVC), templates="true")
                      if e.get("template")]
        listing = [l for l in lab.rvsadm("-Lnc").stdout.splitlines() if "NONE" in l]
        log(f"template: {mine}; ?service={lab.svc_id(self.SVC)}&templates=true lists {by_service}; "
            f"rvsadm -Lnc: {listing}")
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual((mine[0]["vip"], mine[0]["real"]), (f"{NAT_VIP}:80", f"{lab.real_ip(int(body[2]))}:80"),
                         "template should show the service port and the real's port, as IPVS does")
        self.assertEqual(len(by_service), 1, "GET /api/v1/connections?service=...&templates=true "
                                             "does not list the service's template")

    def curls(self, count: int) -> list[tuple[str, int]]:
        """`count` curls: (body or "ERR<rc>", client port) each."""
        out = []
        for _ in range(count):
            cp = lab.sh(NS_CLIENT, f"curl -s --max-time 1 -w '\\n%{{local_port}}' {self.URL}", check=False)
            body, _, port = cp.stdout.strip().rpartition("\n")
            out.append((body.strip() if cp.returncode == 0 else f"ERR{cp.returncode}", int(port or 0)))
        return out

    def test_persistence_across_workers(self):
        problems = []
        before = lab.settled_counters()
        results = self.curls(50)
        tmpl = self.templates()
        delta = lab.counters_delta(before, lab.settled_counters())
        answers = [a for a, _ in results]
        ports = {p for _, p in results}
        counts = lab.tally(answers)
        log(f"50 connections from {len(ports)} client ports: {counts}; "
            + lab.pick(delta, "rx_packets", "conn_created", "redirect_out", "redirect_in",
                       "drop_no_connection"))
        log(f"templates: {[(t['client'], t['real'], t['worker'], t['expires_ms']) for t in tmpl]}")
        self.assertEqual(len(ports), 50, "every connection from a new source port")
        failed = [p for a, p in results if a.startswith("ERR")]
        if failed:
            problems.append(
                f"{len(failed)} of 50 connections of the persistent service failed (client ports "
                f"{failed[:10]}...): {lab.pick(delta, 'conn_created', 'redirect_out', 'redirect_in', 'drop_no_connection')}"
                " -- SYNs are handed to the worker holding the client's template; the client's "
                "later packets of those connections must reach that worker too")
        good = {a for a in answers if not a.startswith("ERR")}
        self.assertEqual(len(good), 1, f"persistence broken: {counts}")
        first = good.pop()
        # The NIC hash spread the SYNs over both workers; those on the worker
        # that does not hold the client's template were handed over to it.
        for w, c in enumerate(delta):
            self.assertGreater(c["rx_packets"], 0, f"worker {w} received nothing")
        self.assertGreater(lab.total(delta, "redirect_out"), 0,
                           "no SYN reached the worker without the template (all on one worker?)")
        self.assertEqual(len(tmpl), 1, f"expected one template: {tmpl}")
        self.assertEqual(tmpl[0]["client"], f"{CLIENT_IP}:0")
        self.assertEqual(tmpl[0]["real"].split(":")[0], lab.real_ip(int(first[2])))
        self.assertGreater(tmpl[0]["expires_ms"], 0)

        # After the connections end and the 3 s pass, clients spread again.
        seen = {first}
        rounds = []
        for _ in range(4):
            waited = self.wait_no_template()
            batch = [a for a, _ in self.curls(5)]
            rounds.append((round(waited, 1), lab.tally(batch)))
            ok = {a for a in batch if not a.startswith("ERR")}
            self.assertEqual(len(ok), 1, f"persistence broken within a round: {batch}")
            seen |= ok
            if seen == {"rs1", "rs2"}:
                break
        log(f"rounds after expiry (s waited, answers): {rounds}")
        self.assertEqual(seen, {"rs1", "rs2"}, f"clients never moved to the other real: {rounds}")
        if problems:
            self.fail("\n".join(problems))


# ---------------------------------------------------------------------------
# TCP states and their timeouts
# ---------------------------------------------------------------------------

TIMEOUTS = {"tcp": 600, "tcp_fin": 50, "tcp_syn": 25, "udp": 90, "tcp_time_wait": 40,
            "tcp_close": 7, "tcp_close_wait": 45, "tcp_last_ack": 35}
STATE_TIMEOUT = {"ESTABLISHED": "tcp", "FIN_WAIT": "tcp_fin", "SYN_RECV": "tcp_syn", "UDP": "udp",
                 "TIME_WAIT": "tcp_time_wait", "CLOSE": "tcp_close", "CLOSE_WAIT": "tcp_close_wait",
                 "LAST_ACK": "tcp_last_ack"}


class StateTimeoutTests(lab.RvsdTestCase):
    SERVICES = [lab.mode_service("tcp", "dr", 80, REALS), lab.mode_service("tcp", "nat", 80, REALS),
                lab.mode_service("tcp", "dr", lab.MANY_PORT, REALS),
                lab.mode_service("tcp", "nat", lab.MANY_PORT, REALS),
                lab.mode_service("udp", "nat", lab.UDP_PORT, REALS)]
    CONFIG = lab.make_config(SERVICES, workers=2, prefix="rvs-e2e-states", timeouts=dict(TIMEOUTS))
    SPOOF = "10.0.0.66"         # a client nobody answers ARP for: the reals' replies go nowhere

    def assert_state(self, entry: dict | None, state: str, timeouts: dict, what: str):
        self.assertIsNotNone(entry, f"{what}: no entry in GET /api/v1/connections")
        limit = timeouts[STATE_TIMEOUT[state]] * 1000
        log(f"{what}: {entry['state']} expires_ms={entry['expires_ms']} (timeout {limit} ms, "
            f"worker {entry['worker']})")
        self.assertEqual(entry["state"], state, f"{what}: {entry}")
        self.assertLessEqual(entry["expires_ms"], limit, f"{what}: expires later than {state}'s timeout")
        self.assertGreater(entry["expires_ms"], limit - 5000,
                           f"{what}: expires much sooner than {state}'s timeout of {limit} ms")

    def wait_state(self, port: int, state: str, client: str = CLIENT_IP, timeout: float = 3) -> dict | None:
        """The entry once it is in `state` (or whatever it is after `timeout`)."""
        last = [None]

        def check():
            last[0] = entry_for(port, client)
            return last[0] if last[0] and last[0]["state"] == state else None
        try:
            return lab.wait_for(check, timeout, interval=0.05, what=f"{client}:{port} in {state}")
        except TimeoutError:
            return last[0]

    def test_1_curl_nat_time_wait(self):
        # NAT sees both directions: after the close handshake, TIME_WAIT.
        body, port = curl_with_port(f"http://{NAT_VIP}/")
        self.assertIn(body, ("rs1", "rs2"))
        self.assert_state(self.wait_state(port, "TIME_WAIT"), "TIME_WAIT", TIMEOUTS, "NAT curl done")

    def test_1_curl_dr_fin_wait(self):
        # DR sees the client only (IPVS's INPUT-ONLY table): FIN_WAIT.
        body, port = curl_with_port(f"http://{DR_VIP}/")
        self.assertIn(body, ("rs1", "rs2"))
        self.assert_state(self.wait_state(port, "FIN_WAIT"), "FIN_WAIT", TIMEOUTS, "DR curl done")

    def test_2_open_connections_established(self):
        for vip in (NAT_VIP, DR_VIP):
            c = lab.EchoConn(vip, lab.MANY_PORT)
            self.addCleanup(c.close)
            self.assertTrue(c.ok, c.error)
            self.assert_state(self.wait_state(c.local_port, "ESTABLISHED"), "ESTABLISHED", TIMEOUTS,
                              f"open connection to {vip}:{lab.MANY_PORT}")
            listing = lab.rvsadm("-Lnc").stdout
            row = [l for l in listing.splitlines() if f"{CLIENT_IP}:{c.local_port}" in l]
            log(f"rvsadm -Lnc: {row}")
            self.assertTrue(row and "ESTABLISHED" in row[0], f"rvsadm -Lnc:\n{listing}")

    def test_3_udp(self):
        s = lab.ns_socket(NS_CLIENT, lab.socket.AF_INET, lab.socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.settimeout(2)
        s.connect((NAT_VIP, lab.UDP_PORT))
        s.send(b"state test\n")
        self.assertRegex(s.recv(1000).decode(), r"^rs[12]\nstate test\n$")
        self.assert_state(self.wait_state(s.getsockname()[1], "UDP"), "UDP", TIMEOUTS, "UDP flow")

    def test_4_rst_closes(self):
        c = lab.EchoConn(NAT_VIP, lab.MANY_PORT)
        self.assertTrue(c.ok, c.error)
        port = c.local_port
        self.assertEqual(self.wait_state(port, "ESTABLISHED")["state"], "ESTABLISHED")
        c.close(rst=True)           # SO_LINGER 0: the client's kernel sends an RST
        self.assert_state(self.wait_state(port, "CLOSE"), "CLOSE", TIMEOUTS, "NAT after the client's RST")

    def test_5_crafted_packets(self):
        """Hand-built TCP from a spoofed client (the reals' answers go nowhere,
        so only our packets move the state): SYN, ACK, FIN, RST."""
        raw = lab.RawSender()
        self.addCleanup(raw.close)
        dp0, me = lab.mac_of(NS_DIR, "dp0"), lab.mac_of(NS_CLIENT, "eth0")
        base = random.randrange(20000, 30000)

        def send(vip, sport, flags, seq):
            raw.send(lab.tcp_frame(me, dp0, self.SPOOF, vip, sport, 80, flags, seq=seq,
                                   ack=1 if "A" in flags else 0))

        # DR (INPUT-ONLY table): SYN -> SYN_RECV, ACK -> ESTABLISHED, FIN -> FIN_WAIT.
        p = base
        send(DR_VIP, p, "S", 1000)
        self.assert_state(self.wait_state(p, "SYN_RECV", self.SPOOF), "SYN_RECV", TIMEOUTS, "DR lone SYN")
        send(DR_VIP, p, "A", 1001)
        self.assert_state(self.wait_state(p, "ESTABLISHED", self.SPOOF), "ESTABLISHED", TIMEOUTS, "DR SYN, ACK")
        send(DR_VIP, p, "FA", 1001)
        self.assert_state(self.wait_state(p, "FIN_WAIT", self.SPOOF), "FIN_WAIT", TIMEOUTS, "DR SYN, ACK, FIN")
        # An RST on an established connection: CLOSE.
        p = base + 1
        send(DR_VIP, p, "S", 5000)
        send(DR_VIP, p, "A", 5001)
        self.assertEqual(self.wait_state(p, "ESTABLISHED", self.SPOOF)["state"], "ESTABLISHED")
        send(DR_VIP, p, "R", 5001)
        self.assert_state(self.wait_state(p, "CLOSE", self.SPOOF), "CLOSE", TIMEOUTS, "DR SYN, ACK, RST")
        # NAT: a lone SYN (the real's SYN-ACK passes rvs, still SYN_RECV).
        p = base + 2
        send(NAT_VIP, p, "S", 9000)
        self.assert_state(self.wait_state(p, "SYN_RECV", self.SPOOF), "SYN_RECV", TIMEOUTS, "NAT lone SYN")
        # A non-SYN without a connection creates nothing.
        p = base + 3
        before = lab.worker_counters()
        send(DR_VIP, p, "A", 1)
        lab.wait_for(lambda: lab.total(lab.counters_delta(before, lab.worker_counters()),
                                       "drop_no_connection") > 0, 3, what="drop_no_connection")
        self.assertIsNone(entry_for(p, self.SPOOF), "a lone ACK created a connection")

    def test_6_rvsadm_set(self):
        cp = lab.rvsadm("--set", "30", "10", "20")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        shown = lab.rvsadm("-L", "--timeout").stdout.strip()
        log(f"rvsadm -L --timeout: {shown!r}")
        self.assertEqual(shown, "Timeout (tcp tcpfin udp): 30 10 20")
        t = lab.api("GET", "/api/v1/timeouts").json
        self.assertEqual((t["tcp"], t["tcp_fin"], t["udp"]), (30, 10, 20), t)
        now = dict(TIMEOUTS, tcp=30, tcp_fin=10, udp=20)
        c = lab.EchoConn(NAT_VIP, lab.MANY_PORT)
        self.addCleanup(c.close)
        self.assert_state(self.wait_state(c.local_port, "ESTABLISHED"), "ESTABLISHED", now,
                          "new connection after --set")
        _, port = curl_with_port(f"http://{DR_VIP}/")
        self.assert_state(self.wait_state(port, "FIN_WAIT"), "FIN_WAIT", now, "DR curl after --set")
        s = lab.ns_socket(NS_CLIENT, lab.socket.AF_INET, lab.socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.settimeout(2)
        s.connect((NAT_VIP, lab.UDP_PORT))
        s.send(b"x\n")
        s.recv(1000)
        self.assert_state(self.wait_state(s.getsockname()[1], "UDP"), "UDP", now, "UDP after --set")


# ---------------------------------------------------------------------------
# Quiescent real servers and thresholds
# ---------------------------------------------------------------------------

class QuiescentThresholdTests(lab.RvsdTestCase):
    DRAIN = lab.mode_service("tcp", "nat", lab.ECHO_PORT, REALS)
    EXPIRE = lab.mode_service("tcp", "nat", 9100, [lab.real(1, port=9000), lab.real(2, port=9000)],
                              expire_quiescent=True)
    THRESH = lab.mode_service("tcp", "nat", lab.MANY_PORT, [lab.real(1, upper_threshold=3), lab.real(2)])
    CONFIG = lab.make_config([DRAIN, EXPIRE, THRESH], workers=2, prefix="rvs-e2e-quiesce")

    def set_weight(self, svc: dict, n: int, weight: int, rport: int | None = None):
        rport = rport or svc["port"]
        body = {"address": lab.real_ip(n), "weight": weight}
        if rport != svc["port"]:
            body["port"] = rport
        resp = lab.api("PUT", f"{lab.service_path(svc)}/reals/{lab.real_ip(n)}/{rport}", body)
        return self.assert_mutation_ok(resp, f"rs{n} weight {weight} on {lab.svc_id(svc)}")

    def test_quiescent_keeps_stream(self):
        s = lab.SocatStream(NAT_VIP, lab.ECHO_PORT, lines=80, interval=0.05)
        self.addCleanup(s.cleanup)
        victim = s.wait_banner()
        n = int(victim[2:])
        other = f"rs{3 - n}"
        self.set_weight(self.DRAIN, n, 0)
        self.addCleanup(self.set_weight, self.DRAIN, n, 1)
        at_change = len(s.received())
        banners = lab.echo_banners(NAT_VIP, lab.ECHO_PORT, 10)
        log(f"stream on {victim}; new connections after weight 0: {lab.tally(banners)}")
        self.assertEqual(banners, [other] * 10, f"new connections must all go to {other}")
        rc = s.wait(30)
        ok, what = s.check()
        log(f"stream to the quiescent {victim}: {what} ({at_change} bytes had arrived at the change)")
        self.assertTrue(ok, what)
        self.assertEqual(rc, 0)
        self.assertLess(at_change, len(s.received()), "harness: the stream ended before the change")

    def test_expire_quiescent_cuts_stream(self):
        s = lab.SocatStream(NAT_VIP, 9100, lines=0, interval=0.05, idle_timeout=3)
        self.addCleanup(s.cleanup)
        victim = s.wait_banner()
        n = int(victim[2:])
        lab.wait_for(lambda: s.received().count(b"\n") > 5, 5, what="a few echoed lines")
        before = lab.worker_counters()
        self.set_weight(self.EXPIRE, n, 0, rport=9000)
        self.addCleanup(self.set_weight, self.EXPIRE, n, 1, 9000)
        lab.wait_for(lambda: lab.total(lab.counters_delta(before, lab.worker_counters()),
                                       "drop_expire_quiescent") > 0, 5,
                     what="drop_expire_quiescent after weight 0 with expire_quiescent")
        sent_at_cut = s.sent.read_bytes().count(b"\n")
        # Keep sending a while: nothing more may come back.
        lab.wait_for(lambda: s.sent.read_bytes().count(b"\n") >= sent_at_cut + 20, 10,
                     what="20 more lines sent after the cut")
        s.stop()
        try:
            s.wait(30)
        except Exception:
            s.kill()
        got = s.received()
        sent = s.sent.read_bytes()
        expected = victim.encode() + b"\n" + sent
        delta = lab.counters_delta(before, lab.settled_counters())
        log(f"expire_quiescent: {len(sent)} bytes sent, {len(got) - len(victim) - 1} echoed before the "
            f"cut; " + lab.pick(delta, "drop_expire_quiescent", "drop_no_connection"))
        self.assertTrue(expected.startswith(got), "what came back is not a prefix of what was sent")
        self.assertLess(len(got), len(expected), "the stream to a weight-0 real was not cut")
        self.assertGreaterEqual(len(expected) - len(got), 20 * len(b"line 000001\n"),
                                "lines sent after the cut came back")

    def test_upper_threshold(self):
        conns = []
        to_rs1 = []
        for _ in range(10):
            c = lab.EchoConn(NAT_VIP, lab.MANY_PORT)
            self.addCleanup(c.close)
            self.assertTrue(c.ok, c.error)
            conns.append(c)
            if c.banner == "rs1":
                to_rs1.append(c)
            if len(to_rs1) == 3:
                break
            time.sleep(0.05)        # let the workers exchange their counts
        self.assertEqual(len(to_rs1), 3, f"rr never gave rs1 3 connections: {[c.banner for c in conns]}")
        time.sleep(0.05)
        more = []
        for _ in range(6):
            c = lab.EchoConn(NAT_VIP, lab.MANY_PORT)
            self.addCleanup(c.close)
            more.append(c.banner or c.error)
        log(f"rs1 (upper_threshold 3) holds 3 open connections; 6 more went to {lab.tally(more)}")
        log("rvsadm -Ln --thresholds:\n" + lab.rvsadm("-Ln", "--thresholds", "-t",
                                                      f"{NAT_VIP}:{lab.MANY_PORT}").stdout)
        svc = next(x for x in lab.api("GET", "/api/v1/stats/services").json if x["port"] == lab.MANY_PORT)
        active = {r["address"]: r["active"] for r in svc["reals"]}
        self.assertEqual(more, ["rs2"] * 6,
                         f"new connections reached rs1 above its upper threshold of 3 (active per real: "
                         f"{active})")


if __name__ == "__main__":
    unittest.main()
