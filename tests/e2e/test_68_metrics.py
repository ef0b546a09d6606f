"""Metrics end to end (issue 15): two rvsd directors of the HA lab with health
checks, VRRP and connection sync (deploy/ha-topology.sh, halab.py) are
scraped after real traffic, and

* `promtool check metrics` (Debian's prometheus package, deploy/setup.sh) has
  nothing to say about the scrape, and does complain about a broken one;
* every family in the scrape is documented in deploy/docs/metrics.md with
  the same type and labels, and every documented family is in the scrape;
* node_exporter's IPVS family carries the numbers of the rvs_* families under
  node_exporter's names and labels;
* health, VRRP, sync and process metrics say what the API says;
* the alert rules (deploy/monitoring/rvs-alerts.yml) pass `promtool check
  rules` and their unit tests, and every metric the rules and the Grafana
  dashboard (rvs-dashboard.json, valid JSON) query is in the scrape.

Run as root after `cargo build --release`:
    flock /run/rvs-e2e.lock python3 -m unittest -v tests.e2e.test_68_metrics
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import halab as lab  # noqa: E402
from halab import DR_VIP, NAT_VIP, NS_CLIENT  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "deploy" / "docs" / "metrics.md"
MONITORING = REPO / "deploy" / "monitoring"
PREFIXES = ("rvs_", "node_ipvs_", "process_")
NODE_LABELS = {"local_address", "local_port", "remote_address", "remote_port", "proto", "local_mark"}

D1 = D2 = None
TMP = None


def setUpModule():
    global D1, D2, TMP
    if os.geteuid() != 0:
        raise unittest.SkipTest("the metrics e2e test needs root (network namespaces)")
    if not shutil.which("promtool"):
        raise RuntimeError("promtool is missing: deploy/setup.sh installs Debian's prometheus package")
    TMP = tempfile.mkdtemp(prefix="rvs-metrics-")
    lab.setup()
    started = []
    try:
        def start(n, config):
            d = lab.Director(n, config, tmp=TMP)
            started.append(d)
            return d.start()
        D1, D2 = lab.observed_pair(start)
        for d in (D1, D2):
            lab.wait_for(lambda d=d: all(r.get("state") == "up" and r.get("rounds", 0) >= 1 for r in d.health_reals())
                         and len(d.health_reals()) == 2, 20, what=f"{d.ns}: reals up")
        # Real traffic through both services, then one estimator sample (2 s) later.
        answers = lab.http_spread(f"http://{DR_VIP}/", 8)
        if sum(a.startswith("rs") for a in answers) < 6:
            raise RuntimeError(f"DR :80 does not answer: {answers}")
        lab.sh(NS_CLIENT, f"for i in 1 2 3; do socat -t1 -T2 - TCP:{NAT_VIP}:9000,connect-timeout=2 </dev/null; done",
               timeout=30)
        time.sleep(2.5)
    except BaseException:
        for d in started:
            lab.log(d.log_text(60))
            d.cleanup()
        lab.teardown()
        raise


def tearDownModule():
    lab.cleanup_observed((D1, D2), TMP)


def scrape(d: lab.Director) -> str:
    status, text = d.api("GET", "/metrics", timeout=10)
    if status != 200:
        raise RuntimeError(f"GET /metrics in {d.ns}: HTTP {status}: {text[:300]}")
    return text


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str):
    """(types: family -> type, samples: [(name, labels, value)])."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            if not m:
                raise AssertionError(f"unparsable sample line: {line!r}")
            labels = dict(LABEL.findall(m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def documented():
    """family -> (type, label set) from the reference table of metrics.md."""
    out = {}
    in_table = False
    for line in DOC.read_text().splitlines():
        if line.startswith("| metric | type | labels |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if not in_table or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = [n for n in re.findall(r"`([a-z_:][a-z0-9_:]*)`", cells[0]) if n.startswith(PREFIXES)]
        labels = set(re.findall(r"`([a-z_]+)`", cells[2]))
        for n in names:
            if n in out:
                raise AssertionError(f"{n} documented twice in {DOC}")
            out[n] = (cells[1], labels)
    return out


def value(samples, name, **labels) -> float | None:
    for n, l, v in samples:
        if n == name and all(l.get(k) == str(x) for k, x in labels.items()):
            return v
    return None


def queried_metrics(exprs) -> set[str]:
    names = set()
    for e in exprs:
        names |= set(re.findall(r"\b((?:rvs|node_ipvs|process)_[a-z0-9_]+)", e))
    return names


class Scrape(unittest.TestCase):
    def setUp(self):
        self.text = scrape(D1)
        self.types, self.samples = parse(self.text)

    def promtool_metrics(self, text: str) -> subprocess.CompletedProcess:
        return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=60)

    def test_promtool_check_metrics_is_clean(self):
        for d in (D1, D2):
            cp = self.promtool_metrics(scrape(d))
            self.assertEqual((cp.returncode, cp.stdout + cp.stderr), (0, ""), f"promtool on {d.ns}'s scrape")
        # The check can fail: the old rate names and a counter without _total are refused.
        broken = self.text + ("# HELP rvs_service_in_bps Bytes per second.\n# TYPE rvs_service_in_bps counter\n"
                              "rvs_service_in_bps 3\n")
        cp = self.promtool_metrics(broken)
        self.assertNotEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertIn("rvs_service_in_bps", cp.stdout + cp.stderr)

    def test_scrape_and_documentation_agree(self):
        doc = documented()
        live = {}
        for name, labels, _ in self.samples:
            live.setdefault(name, set()).update(labels)
        self.assertEqual(set(self.types), set(live), "every family has samples, every sample a TYPE")
        undocumented = sorted(set(live) - set(doc))
        missing = sorted(set(doc) - set(live))
        self.assertEqual(undocumented, [], f"in the scrape but not in {DOC.name}")
        self.assertEqual(missing, [], f"documented in {DOC.name} but not in a scrape with health, VRRP and sync")
        for name, (kind, labels) in sorted(doc.items()):
            with self.subTest(name):
                self.assertEqual(self.types[name], kind, "type")
                self.assertEqual(live[name], labels, "labels")
        self.assertFalse([n for n in live if re.search(r"_(cps|pps|bps)$", n)], "rates are named in base units")

    def test_node_exporter_family_carries_the_ipvs_numbers(self):
        s = self.samples
        pairs = 0
        for name, labels, v in s:
            if not name.startswith("node_ipvs_backend_"):
                continue
            self.assertEqual(set(labels), NODE_LABELS, name)
            self.assertIn(labels["proto"], ("TCP", "UDP"))
            self.assertEqual(labels["local_mark"], "")
            twin = {"node_ipvs_backend_connections_active": "rvs_real_active_connections",
                    "node_ipvs_backend_connections_inactive": "rvs_real_inactive_connections",
                    "node_ipvs_backend_weight": "rvs_real_weight"}[name]
            theirs = value(s, twin, protocol=labels["proto"].lower(), vip=labels["local_address"],
                           port=labels["local_port"], real=f"{labels['remote_address']}:{labels['remote_port']}")
            self.assertEqual(v, theirs, f"{name}{labels}")
            pairs += 1
        reals = [l for n, l, _ in s if n == "rvs_real_weight"]
        self.assertEqual(pairs, 3 * len(reals), "3 node_ipvs_backend_* samples per real server in force")
        self.assertEqual(len(reals), 4, "2 services x 2 reals in force")
        for node, ours in [("node_ipvs_connections_total", "rvs_service_connections_total"),
                           ("node_ipvs_incoming_packets_total", "rvs_service_in_packets_total"),
                           ("node_ipvs_outgoing_packets_total", "rvs_service_out_packets_total"),
                           ("node_ipvs_incoming_bytes_total", "rvs_service_in_bytes_total"),
                           ("node_ipvs_outgoing_bytes_total", "rvs_service_out_bytes_total")]:
            self.assertEqual(value(s, node), sum(v for n, _, v in s if n == ours), node)
        # What the API counted: the traffic of setUpModule.
        api_conns = sum(x["conns"] for x in D1.get("/api/v1/stats/services"))
        self.assertGreaterEqual(value(s, "node_ipvs_connections_total"), 6)
        self.assertEqual(value(s, "node_ipvs_connections_total"), api_conns)
        self.assertEqual(value(s, "node_ipvs_backend_weight", local_address=DR_VIP, local_port=80,
                               remote_address=lab.real_ip(2), remote_port=80), 2)

    def test_health_vrrp_sync_and_process_metrics_say_what_the_api_says(self):
        s = self.samples
        dr = dict(protocol="tcp", vip=DR_VIP, port=80)
        self.assertEqual(value(s, "rvs_service_quorum_up", **dr), 1)
        self.assertEqual(value(s, "rvs_service_sorry_server_active", **dr), 0)
        self.assertEqual(value(s, "rvs_service_up_weight", **dr), 3)
        for n in (1, 2):
            self.assertEqual(value(s, "rvs_real_health_up", **dr, real=f"{lab.real_ip(n)}:80"), 1)
        d2_types, d2 = parse(scrape(D2))
        for inst in ("VI_1", "VI_2"):
            self.assertEqual(value(s, "rvs_vrrp_state", vrrp_instance=inst, state="MASTER"), 1)
            self.assertEqual(value(d2, "rvs_vrrp_state", vrrp_instance=inst, state="BACKUP"), 1)
            self.assertGreaterEqual(value(s, "rvs_vrrp_transitions_total", vrrp_instance=inst, state="MASTER"), 1)
            self.assertEqual(value(d2, "rvs_vrrp_transitions_total", vrrp_instance=inst, state="MASTER"), 0)
            self.assertGreater(value(s, "rvs_vrrp_adverts_sent_total", vrrp_instance=inst), 0)
            self.assertGreater(value(d2, "rvs_vrrp_adverts_received_total", vrrp_instance=inst, outcome="accepted"), 0)
            self.assertEqual(value(d2, "rvs_vrrp_adverts_received_total", vrrp_instance=inst, outcome="auth_failure"), 0)
        ha1, ha2 = D1.ha(), D2.ha()
        self.assertEqual(value(s, "rvs_sync_master"), 1)
        self.assertEqual(value(d2, "rvs_sync_master"), 0)
        self.assertLessEqual(value(s, "rvs_sync_datagrams_total", direction="sent"), ha1["sync"]["datagrams"]["sent"])
        # The sync rings: what the workers queued for the sender, within their capacity.
        stats = D1.get("/api/v1/stats")
        for w in stats["workers"]:
            worker = w["worker"]
            self.assertEqual(value(s, "rvs_worker_sync_backlog_capacity", worker=worker), w["sync_backlog"]["capacity"])
            self.assertLessEqual(value(s, "rvs_worker_sync_backlog", worker=worker), w["sync_backlog"]["capacity"])
            self.assertEqual(value(s, "rvs_worker_redirect_ring_capacity", worker=worker),
                             w["redirect_ring"]["capacity"])
        peer = next(i for i in ha2["vrrp"] if i["instance"] == "VI_1")["last_advert"]

        self.assertEqual((peer["address"], peer["priority"]), (lab.DIRECTORS[1]["lan"], 150), ha2)
        build = [(l, v) for n, l, v in s if n == "rvs_build_info"]
        self.assertEqual(len(build), 1)
        self.assertEqual(build[0][1], 1)
        self.assertRegex(build[0][0]["version"], r"^\d+\.\d+\.\d+")
        start = value(s, "process_start_time_seconds")
        self.assertLess(abs(start - (time.time() - (time.monotonic() - D1.started_at))), 30,
                        "process_start_time_seconds is when rvsd started")
        self.assertGreater(value(s, "process_resident_memory_bytes"), 10e6)
        self.assertGreater(value(s, "process_cpu_seconds_total"), 0)
        self.assertGreater(value(s, "process_open_fds"), 5)

    def test_rules_and_dashboard_use_live_metrics(self):
        rules = MONITORING / "rvs-alerts.yml"
        for args in (["check", "rules", str(rules)], ["test", "rules", "rvs-alerts.test.yml"]):
            cp = subprocess.run(["promtool", *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)
            self.assertEqual(cp.returncode, 0, f"promtool {' '.join(args)}:\n{cp.stdout}{cp.stderr}")
        live = set(self.types)
        rule_exprs = re.findall(r"^\s+expr: *(?:>\s*\n)?(.*(?:\n {10,}.*)*)", rules.read_text(), re.M)
        rule_metrics = queried_metrics(rule_exprs)
        self.assertGreaterEqual(len(rule_metrics), 10, rule_metrics)
        self.assertEqual(sorted(rule_metrics - live), [], "alert rules query metrics rvsd does not export")

        dash = json.loads((MONITORING / "rvs-dashboard.json").read_text())
        self.assertEqual(dash["uid"], "rvs-overview")
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        exprs += [v.get("definition", "") for v in dash["templating"]["list"]]
        self.assertGreaterEqual(len(exprs), 25)
        dash_metrics = queried_metrics(exprs)
        self.assertEqual(sorted(dash_metrics - live), [], "the dashboard queries metrics rvsd does not export")
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")


if __name__ == "__main__":
    unittest.main()
