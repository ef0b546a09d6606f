"""Connection sync under attack, in the two-director lab (deploy/ha-topology.sh,
helpers in halab.py): rvsha-ka (10.0.0.4) is on the directors' network but is
not a sync peer. From there it sends

  (a) well-formed version-3 connection datagrams signed with a wrong key,
  (b) bulk resync requests without a key and with a wrong one,
  (c) (scapy) both, spoofing the other director's address and sync port,

to the backup and to the master. Nothing may be installed on the backup, the
master must send nothing back, and the rejection counters of /api/v1/ha and
/metrics must rise by reason. Then established DR, NAT and FULLNAT streams
must still survive a master SIGKILL with the keys configured (the check of
test_40_ha.ConnectionSyncTests, run here with halab's keyed configs).

Run as root, alone, under the lab lock (from tests/e2e):
    flock /run/rvs-e2e.lock env PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -v test_45_sync_security

The spoofing needs scapy (Debian's python3-scapy, deploy/setup.sh): the sender
runs in rvsha-ka under the first of this interpreter and /usr/bin/python3 that
imports it.
"""
import json
import os
import re
import subprocess
import sys
import time
import unittest

import halab as lab
import test_40_ha as ha40
from halab import DIRECTORS, KA_IP, NS_KA

SYNC_PORT = 8848
WRONG_KEY = "not the lab's key, but just as long"
# A connection the forged datagrams try to install (DR, TCP ESTABLISHED).
FORGED_CLIENT = "10.0.0.66"

# Runs in rvsha-ka. argv[1] is a JSON plan: {"targets": [[dst, spoofed_src], ...],
# "wrong_key": str, "conns": n, "bulks": n}. Prints what it sent, as JSON.
ATTACK = r"""
import hashlib, hmac, json, socket, struct, sys, time
plan = json.loads(sys.argv[1])
wrong = plan["wrong_key"].encode()

def datagram(kind, entries, key, seq):
    now = int(time.time() * 1000)
    b = b"RVSS" + bytes([3, kind, 0, len(entries)]) + struct.pack(">QQQ", now - 5000, seq, now)
    b += b"".join(entries)
    return b if key is None else b + hmac.new(key, b, hashlib.sha256).digest()

def entry(i):
    # tcp, dr, ESTABLISHED, no local | client | vip | real | local | sequence delta | seconds
    ip = lambda s: socket.inet_aton(s)
    return (bytes([6, 0, 1, 0]) + ip(plan["client"]) + struct.pack(">H", 40000 + i)
            + ip("10.0.0.100") + struct.pack(">H", 80) + ip("10.1.0.11") + struct.pack(">H", 80)
            + bytes(6) + struct.pack(">I", 0) + struct.pack(">I", 900))

def batch():
    out = []
    for i in range(plan["conns"]):
        out.append(("conns, wrong key", datagram(1, [entry(i), entry(i + 100)], wrong, 1000 + i)))
    for i in range(plan["bulks"]):
        out.append(("bulk, no key", datagram(2, [], None, 2000 + i)))
        out.append(("bulk, wrong key", datagram(2, [], wrong, 3000 + i)))
    return out

sent = []
plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
plain.bind((plan["own"], plan["port"]))
for dst, spoof in plan["targets"]:
    for what, d in batch():
        plain.sendto(d, (dst, plan["port"]))
        sent.append({"dst": dst, "src": plan["own"], "what": what, "len": len(d)})
if any(spoof for _, spoof in plan["targets"]):
    from scapy.all import IP, UDP, Raw, send, conf
    conf.verb = 0
    for dst, spoof in plan["targets"]:
        if not spoof:
            continue
        for what, d in batch():
            send(IP(src=spoof, dst=dst) / UDP(sport=plan["port"], dport=plan["port"]) / Raw(d))
            sent.append({"dst": dst, "src": spoof, "what": what, "len": len(d), "spoofed": True})
print(json.dumps(sent))
"""


def scapy_python() -> str | None:
    """An interpreter that imports scapy (this one, or Debian's)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        if exe and os.path.exists(exe) and subprocess.run(
                [exe, "-c", "import scapy.all"], capture_output=True, timeout=60).returncode == 0:
            return exe
    return None


def setUpModule():
    if os.geteuid() != 0:
        raise unittest.SkipTest("the HA e2e tests need root (network namespaces, raw sockets)")
    for tool in ("tcpdump", "socat", "curl"):
        if not lab.shutil.which(tool):
            raise unittest.SkipTest(f"{tool} is missing (deploy/setup.sh)")
    lab.setup()


def tearDownModule():
    lab.teardown()


def sync_status(d: lab.Director) -> dict:
    s = d.ha().get("sync")
    if not isinstance(s, dict):
        raise AssertionError(f"{d.ns}: no \"sync\" object in /api/v1/ha: {d.ha()}")
    return s


def sync_metrics(d: lab.Director) -> dict[str, int]:
    """`rvs_sync_*` samples of /metrics, keyed by name{labels}."""
    status, text = d.api("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"GET /metrics in {d.ns}: HTTP {status}")
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(rvs_sync_[a-z_]+(?:\{[^}]*\})?) (\d+)$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def rejected_metric(reason: str) -> str:
    return f'rvs_sync_rejected_total{{reason="{reason}"}}'


class SyncSecurityTests(ha40.HaCase):
    def pair(self) -> tuple[lab.Director, lab.Director]:
        d1 = self.director(1, lab.director_config(1, vrrp=lab.vrrp_config(150, 0.1, 3)))
        d1.wait_vrrp("MASTER", 5)
        d2 = self.director(2, lab.director_config(2, vrrp=lab.vrrp_config(100, 0.1, 3)))
        d2.wait_vrrp("BACKUP", 5)
        # d2's start-up bulk request reached d1 and was answered (nothing to send).
        lab.wait_for(lambda: sync_status(d1)["bulk_answered"] >= 1, 3, what="d1 answered d2's bulk request")
        return d1, d2

    def test_1_strangers_and_spoofers_are_refused(self):
        python = scapy_python()
        if python is None:
            self.skipTest("scapy is missing (apt-get install python3-scapy; deploy/setup.sh)")
        d1, d2 = self.pair()
        # The key is neither shown by the API nor logged.
        self.assertNotIn("key", d1.get("/api/v1/config")["sync"])
        self.assertNotIn(lab.SYNC_KEY, d1.api("GET", "/api/v1/config")[1])
        before = {d.n: (sync_status(d), sync_metrics(d)) for d in (d1, d2)}
        conns, bulks = 5, 3
        plan = {
            "own": KA_IP, "port": SYNC_PORT, "wrong_key": WRONG_KEY, "client": FORGED_CLIENT,
            "conns": conns, "bulks": bulks,
            # To the backup spoofing the master, to the master spoofing the backup.
            "targets": [[DIRECTORS[2]["lan"], DIRECTORS[1]["lan"]], [DIRECTORS[1]["lan"], DIRECTORS[2]["lan"]]],
        }
        cap = lab.Capture(NS_KA, "eth0", bpf=f"udp and dst host {KA_IP}", directory=self.tmp).start()
        try:
            out = lab.nsx(NS_KA, [python, "-c", ATTACK, json.dumps(plan)], timeout=120).stdout
        finally:
            time.sleep(1.0)            # anything the directors would answer arrives by now
            answers = cap.stop()
        sent = json.loads(out)
        per_dir = len(sent) // 2
        ha40.figure(f"sync attack from {NS_KA}: {len(sent)} datagrams ({per_dir} per director: "
                    f"{conns} connection datagrams and {2 * bulks} bulk requests from {KA_IP}, "
                    f"as many spoofing the other director)")
        # Expected per director: from 10.0.0.4 everything is not_peer; spoofed,
        # the wrong key is bad_auth and a bulk request without a MAC is malformed.
        want = {"not_peer": conns + 2 * bulks, "bad_auth": conns + bulks, "malformed": bulks}
        for d in (d1, d2):
            s0, m0 = before[d.n]

            def risen(d=d, s0=s0):
                s = sync_status(d)
                return all(s["rejected"][r] - s0["rejected"][r] >= n for r, n in want.items())
            try:
                lab.wait_for(risen, 5, what=f"{d.ns}: rejection counters")
            except TimeoutError:
                self.fail(f"{d.ns}: rejections did not rise by {want}: before {s0['rejected']}, "
                          f"after {sync_status(d)['rejected']}\n" + self.diag(d))
            s, m = sync_status(d), sync_metrics(d)
            delta = {r: s["rejected"][r] - s0["rejected"][r] for r in s["rejected"]}
            ha40.figure(f"  {d.ns} ({'master' if s['master'] else 'backup'}): rejected {delta}, "
                        f"received {s['datagrams']['received'] - s0['datagrams']['received']}")
            for reason, n in want.items():
                with self.subTest(director=d.ns, reason=reason):
                    self.assertEqual(delta[reason], n, f"{d.ns}: {delta}")
                    self.assertEqual(m[rejected_metric(reason)] - m0.get(rejected_metric(reason), 0), n,
                                     f"{d.ns} /metrics: {m}")
            for reason in ("replay", "version", "sync_id", "bulk_rate_limited"):
                self.assertEqual(delta[reason], 0, f"{d.ns}: {delta}")
            self.assertGreaterEqual(s["datagrams"]["received"] - s0["datagrams"]["received"], per_dir)
            self.assertGreaterEqual(m['rvs_sync_datagrams_total{direction="received"}']
                                    - m0['rvs_sync_datagrams_total{direction="received"}'], per_dir)
            # Nothing installed, nothing answered, nothing sent.
            self.assertEqual(s["installed"], s0["installed"], f"{d.ns} installed forged connections")
            self.assertEqual(s["bulk_answered"], s0["bulk_answered"], f"{d.ns} answered a forged bulk request")
            self.assertEqual(s["datagrams"]["sent"], s0["datagrams"]["sent"], f"{d.ns} sent sync datagrams")
        conns2 = d2.get("/api/v1/connections?limit=1000")
        self.assertEqual(conns2["total"], 0, f"the backup holds connections: {conns2}")
        self.assertEqual(d2.stats_counters().get("conn_synced_in", 0), 0)
        self.assertFalse([c for c in conns2["connections"] if c["client"].startswith(FORGED_CLIENT)])
        self.assertEqual(answers, [], f"a director answered {NS_KA}: {answers}")
        ha40.figure(f"  nothing installed on the backup, nothing sent to {NS_KA} (tcpdump: 0 packets)")
        for d in (d1, d2):
            self.assertNotIn(lab.SYNC_KEY, d.log_path.read_text(errors="replace"), f"{d.ns} logged the key")

    def test_3_the_key_is_required(self):
        """Sync without sync.key and without RVS_SYNC_KEY: rvsd refuses to
        start (exit 2) and says which setting is missing; the variable alone
        is enough."""
        cfg = lab.director_config(1, vrrp=lab.vrrp_config(150))
        del cfg["sync"]["key"]
        d = lab.Director(1, cfg, tmp=self.tmp)
        d.config_path.write_text(json.dumps(cfg))
        env = {k: v for k, v in os.environ.items() if k != "RVS_SYNC_KEY"}
        cp = subprocess.run(d.command("--check-config"), capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL, env=env)
        ha40.figure(f"sync without a key: exit {cp.returncode}: {cp.stderr.strip()[:200]}")
        self.assertEqual(cp.returncode, 2, cp.stdout + cp.stderr)
        self.assertIn("sync.key", cp.stderr)
        self.assertIn("RVS_SYNC_KEY", cp.stderr)
        cp = subprocess.run(d.command("--check-config"), capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL, env=dict(env, RVS_SYNC_KEY=lab.SYNC_KEY))
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        cp = subprocess.run(d.command("--check-config"), capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL, env=dict(env, RVS_SYNC_KEY="short"))
        self.assertEqual(cp.returncode, 2, cp.stdout + cp.stderr)
        self.assertIn("RVS_SYNC_KEY", cp.stderr)

    def test_2_streams_survive_a_failover_with_keys(self):
        """DR, NAT and FULLNAT streams through the master continue after it is
        SIGKILLed: ConnectionSyncTests' check, with halab's keyed sync config."""
        self.assertEqual(lab.director_config(1, vrrp=lab.vrrp_config(150))["sync"]["key"], lab.SYNC_KEY)
        ha40.ConnectionSyncTests.test_streams_continue_byte_for_byte(self)
        d2 = self.directors[1]
        s = sync_status(d2)
        ha40.figure(f"  keyed sync: the new master had installed {s['installed']} connections, "
                    f"rejected {s['rejected']}")
        self.assertGreaterEqual(s["installed"], 3, s)
        self.assertEqual(s["rejected"]["bad_auth"], 0, s)


if __name__ == "__main__":
    unittest.main()
