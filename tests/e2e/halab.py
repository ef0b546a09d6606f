"""Helpers for the high-availability end-to-end tests (Python 3.11 stdlib only).

The lab is deploy/ha-topology.sh (namespaces rvsha-*): a client, two
directors (rvsha-d1, rvsha-d2) each running its own rvsd on an af_packet veth
with an exception-path TAP, two real servers, a sorry server and a host for a
Keepalived peer, all on one bridge.

Environment knobs:
  RVSD=/path/to/rvsd      binary to test (default: target/release/rvsd; a
                          private copy is taken at start so that a rebuild
                          during the run does not change the binary under test)
  RVSADM=/path/to/rvsadm  rvsadm for the listing tests (default: next to rvsd;
                          copied likewise)
  RVS_E2E_KEEP=1          leave the topology up after the suite
  RVS_E2E_VERBOSE=1       echo every command

Shared helpers come from labutil.py (rvsd's API, captures) and nsutil.py
(commands, polling, keepalived, ARP lines).
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import unittest

import labutil
import nsutil
from labutil import Capture, tally  # noqa: F401  (re-exported)
from nsutil import ensure_keepalived, log, neighbour, nsx, run, sh, wait_for  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO_ROOT / "deploy" / "ha-topology.sh"
STATE_DIR = Path(os.environ.get("RVSHA_LAB_STATE", "/run/rvsha-lab"))
RVSD_SOURCE = Path(os.environ.get("RVSD", REPO_ROOT / "target" / "release" / "rvsd"))
RVSD: Path = RVSD_SOURCE          # replaced by a private copy in setup()
# rvsadm next to rvsd (RVSADM= overrides); copied with it in setup().
RVSADM_SOURCE = Path(os.environ.get("RVSADM", RVSD_SOURCE.parent / "rvsadm"))
RVSADM: Path = RVSADM_SOURCE

NS_CLIENT = "rvsha-client"
NS_KA = "rvsha-ka"
NS_SORRY = "rvsha-sorry"
CLIENT_IP = "10.0.0.2"
KA_IP = "10.0.0.4"
DR_VIP = "10.0.0.100"
NAT_VIP = "10.0.0.101"
FNAT_VIP = "10.0.0.102"
GATEWAY = "10.1.0.254"
LIP = "10.1.0.200"
SORRY_IP = "10.1.0.99"
MISC_CHECK = STATE_DIR / "misc-check.sh"

# The connection-sync key of the lab's directors (sync.key; required by rvsd).
SYNC_KEY = "rvsha-lab sync key, not secret"

# Director n: namespace, port addresses, MAC of dp0.
DIRECTORS = {
    1: {"ns": "rvsha-d1", "lan": "10.0.0.1", "back": "10.1.0.1", "mac": "02:00:00:aa:00:01"},
    2: {"ns": "rvsha-d2", "lan": "10.0.0.3", "back": "10.1.0.3", "mac": "02:00:00:aa:00:03"},
}


def real_ns(n: int) -> str:
    return f"rvsha-rs{n}"


def real_ip(n: int) -> str:
    return f"10.1.0.1{n}"


# ---------------------------------------------------------------------------
# Lab set-up
# ---------------------------------------------------------------------------

def topology(*args: str) -> subprocess.CompletedProcess:
    return run(["bash", str(TOPOLOGY), *args], timeout=120)


def setup() -> None:
    """Brings the lab up and takes a private copy of the rvsd binary."""
    global RVSD, RVSADM
    if not RVSD_SOURCE.exists():
        raise RuntimeError(f"rvsd binary not found at {RVSD_SOURCE} (cargo build --release?)")
    copy_dir = Path(tempfile.mkdtemp(prefix="rvsha-bin-"))
    RVSD = copy_dir / "rvsd"
    shutil.copy2(RVSD_SOURCE, RVSD)
    if RVSADM_SOURCE.exists():
        RVSADM = copy_dir / "rvsadm"
        shutil.copy2(RVSADM_SOURCE, RVSADM)
    for ns in ("rvsha-d1", "rvsha-d2", NS_KA):
        if ns in run(["ip", "netns", "list"]).stdout.split() and \
                run(["ip", "netns", "pids", ns], check=False).stdout.split() and ns != NS_KA:
            # Leftovers of an interrupted run: rebuild the lab from scratch.
            topology("down")
            break
    topology("up")


def teardown() -> None:
    if RVSD != RVSD_SOURCE:
        shutil.rmtree(RVSD.parent, ignore_errors=True)
    if os.environ.get("RVS_E2E_KEEP") != "1":
        topology("down")


def stop_service(n: int, name: str) -> float:
    """SIGKILLs daemon `name` (http80, http8080, echo, udp, dns) on real n;
    returns the monotonic time just before (the kill follows within ~10 ms)."""
    t = time.monotonic()
    topology("stop-service", real_ns(n), name)
    return t


def start_service(n: int, name: str) -> float:
    """Starts daemon `name` on real n; returns the monotonic time when it listens."""
    topology("start-service", real_ns(n), name)
    return time.monotonic()


def flush_neighbours() -> None:
    for ns in (NS_CLIENT, real_ns(1), real_ns(2), NS_SORRY, NS_KA):
        nsx(ns, ["ip", "neigh", "flush", "all"], check=False)


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------

def real(n: int, weight: int = 1, checks: list | None = None, **extra) -> dict:
    r = {"address": real_ip(n), "weight": weight, **extra}
    if checks is not None:
        h = r.setdefault("health", {})
        h["checks"] = copy.deepcopy(checks)
    return r


def service(protocol: str, vip: str, port: int, forward: str, reals: list[dict],
            scheduler: str = "rr", **extra) -> dict:
    return {"protocol": protocol, "vip": vip, "port": port, "scheduler": scheduler,
            "forward": forward, "reals": reals, **extra}


def lab_services() -> list[dict]:
    """The failover services: DR, NAT and FULLNAT on :80 / :9000 (socat echo),
    and NAT UDP :9001 (UDP echo) for the 10 ms prober."""
    two = lambda **kw: [real(1, **kw), real(2, **kw)]  # noqa: E731
    return [
        service("tcp", DR_VIP, 80, "dr", two()),
        service("tcp", DR_VIP, 9000, "dr", two()),
        service("tcp", NAT_VIP, 80, "nat", two()),
        service("tcp", NAT_VIP, 9000, "nat", two()),
        service("udp", NAT_VIP, 9001, "nat", two()),
        service("tcp", FNAT_VIP, 80, "fullnat", two(), local_addresses=[LIP]),
        service("tcp", FNAT_VIP, 9000, "fullnat", two(), local_addresses=[LIP]),
    ]


def vrrp_config(priority: int, advert_int: float = 1, version: int = 2, nopreempt: bool = False,
                garp_repeat: int = 3, **extra) -> dict:
    """Two instances in one sync group: VI_1 holds the client-side VIPs, VI_2
    the reals' gateway and the FULLNAT local address."""
    common = {"interface": "lan0", "priority": priority, "advert_int": advert_int,
              "version": version, "garp_master_repeat": garp_repeat, "garp_master_delay": 1,
              **extra}
    if nopreempt:
        common["nopreempt"] = True
    return {
        "instances": [
            {"name": "VI_1", "virtual_router_id": 51,
             "virtual_ipaddress": [DR_VIP, NAT_VIP, FNAT_VIP], **common},
            {"name": "VI_2", "virtual_router_id": 52,
             "virtual_ipaddress": [GATEWAY, LIP], **common},
        ],
        "sync_groups": [{"name": "G1", "group": ["VI_1", "VI_2"]}],
    }


def director_config(n: int, services: list[dict] | None = None, vrrp: dict | None = None,
                    sync: bool = True, workers: int = 1, ipv6: bool = False) -> dict:
    """Director `n`'s rvsd config. With `workers=2` both workers share CPU 1
    and the af_packet port has two queue pairs (as labutil.make_config).
    `ipv6` adds the director's IPv6 addresses (DIRECTORS6) to its port.
    Connection sync follows the first VRRP instance."""
    d = DIRECTORS[n]
    other = DIRECTORS[3 - n]
    cfg = {
        "eal": labutil.eal_args(f"rvsha-d{n}", megabytes=256),
        "main_lcore": 0,
        "workers": list(range(1, workers + 1)),
        "mbufs": 8191,
        "idle_sleep_us": 50,
        "api": {"listen": "127.0.0.1:9090"},
        "ports": [{"name": "lan0", "device": "net_af_packet0,iface=dp0",
                   "addresses": [f"{d['lan']}/24", f"{d['back']}/24"], "tap": "rvs0"}],
        "services": copy.deepcopy(lab_services() if services is None else services),
    }
    if workers == 2:
        cfg["eal"] += ["--lcores", "0@0,1@1,2@1"]
        cfg["ports"][0]["device"] += ",qpairs=2"
    elif workers != 1:
        raise ValueError("the HA lab runs 1 or 2 workers per director")
    if ipv6:
        cfg["ports"][0]["addresses"] += [f"{DIRECTORS6[n]['lan']}/64", f"{DIRECTORS6[n]['back']}/64"]
    if vrrp is not None:
        cfg["vrrp"] = copy.deepcopy(vrrp)
        if sync:
            cfg["sync"] = {"instance": vrrp["instances"][0]["name"], "port": 8848, "peers": [other["lan"]],
                           "key": SYNC_KEY}
    return cfg


# ---------------------------------------------------------------------------
# IPv6 (deploy/ha-topology.sh up6; test_44_ha_ipv6)
# ---------------------------------------------------------------------------

CLIENT_IP6 = "2001:db8::2"
DR_VIP6 = "2001:db8::100"
NAT_VIP6 = "2001:db8::101"
FNAT_VIP6 = "2001:db8::102"
GATEWAY6 = "2001:db8:1::254"      # the reals' IPv6 default gateway
LIP6 = "2001:db8:1::200"          # the IPv6 FULLNAT local address
# Director n's IPv6 port addresses (client side, reals' side).
DIRECTORS6 = {
    1: {"lan": "2001:db8::1", "back": "2001:db8:1::1"},
    2: {"lan": "2001:db8::3", "back": "2001:db8:1::3"},
}


def real_ip6(n: int) -> str:
    return f"2001:db8:1::1{n}"


def require_lab() -> None:
    """Raises unittest.SkipTest unless the HA lab can run here (root, and
    tcpdump, socat and curl installed)."""
    if os.geteuid() != 0:
        raise unittest.SkipTest("the HA e2e tests need root (network namespaces, raw sockets)")
    for tool in ("tcpdump", "socat", "curl"):
        if not shutil.which(tool):
            raise unittest.SkipTest(f"{tool} is missing (deploy/setup.sh)")


def setup6() -> None:
    """setup() plus IPv6 on the client and the reals (ha-topology.sh up6)."""
    setup()
    topology("up6")


def real6(n: int, weight: int = 1, **extra) -> dict:
    return {"address": real_ip6(n), "weight": weight, **extra}


def lab_services6() -> list[dict]:
    """The IPv6 failover services: DR, NAT and FULLNAT on :80 and :9000
    (socat echo), and NAT UDP :9001 (UDP echo) for the 10 ms prober."""
    two = [real6(1), real6(2)]
    return [
        service("tcp", DR_VIP6, 80, "dr", two),
        service("tcp", DR_VIP6, 9000, "dr", two),
        service("tcp", NAT_VIP6, 80, "nat", two),
        service("tcp", NAT_VIP6, 9000, "nat", two),
        service("udp", NAT_VIP6, 9001, "nat", two),
        service("tcp", FNAT_VIP6, 80, "fullnat", two, local_addresses=[LIP6]),
        service("tcp", FNAT_VIP6, 9000, "fullnat", two, local_addresses=[LIP6]),
    ]


def vrrp6_config(n: int, priority: int, advert_int: float = 0.1, unicast: bool = False,
                 nopreempt: bool = False, garp_repeat: int = 3) -> dict:
    """Director n's VRRPv3-over-IPv6 instance VI_6 (VRID 61) holding the IPv6
    VIPs, the reals' IPv6 gateway and the FULLNAT local address; adverts to
    ff02::12, or with `unicast` from the director's global address to the
    other's."""
    inst = {"name": "VI_6", "virtual_router_id": 61, "interface": "lan0", "priority": priority,
            "advert_int": advert_int, "version": 3, "garp_master_repeat": garp_repeat,
            "garp_master_delay": 1,
            "virtual_ipaddress": [DR_VIP6, NAT_VIP6, FNAT_VIP6, GATEWAY6, LIP6]}
    if nopreempt:
        inst["nopreempt"] = True
    if unicast:
        inst["unicast_src_ip"] = DIRECTORS6[n]["lan"]
        inst["unicast_peer"] = [DIRECTORS6[3 - n]["lan"]]
    return {"instances": [inst]}


class NaWatch(Capture):
    """tcpdump of the ICMPv6 neighbour advertisements seen on NS:eth0."""

    def __init__(self, ns: str = NS_CLIENT, directory: str | None = None):
        super().__init__(ns, "eth0", bpf="icmp6 and ip6[40] == 136", directory=directory)

    def unsolicited(self, target: str, mac: str) -> list[tuple[float, "labutil.Packet6"]]:
        """(capture time, packet) of the unsolicited NAs for `target` from
        `mac` (call after stop()): Ethernet from `mac` to 33:33:00:00:00:01,
        IPv6 to ff02::1 with hop limit 255 and a valid checksum, ICMPv6 136
        code 0, Override set, Solicited clear, target `target`, and a target
        link-layer address option carrying `mac`."""
        out = []
        for pkt in self.packets:
            p6 = labutil.ipv6_of(pkt)
            if p6 is None or p6.icmp_type != 136 or p6.icmp_code != 0 or len(p6.l4) < 24:
                continue
            flags, tgt = p6.l4[4], labutil.ip6_str(p6.l4[8:24])
            tll = [labutil.mac_str(p6.l4[i + 2:i + 8]) for i in range(24, len(p6.l4) - 7, 8)
                   if p6.l4[i] == 2 and p6.l4[i + 1] == 1]
            if (p6.eth_src == mac.lower() and p6.eth_dst == "33:33:00:00:00:01" and p6.ip_dst == "ff02::1"
                    and p6.hlim == 255 and p6.l4_checksum_ok() and flags & 0x20 and not flags & 0x40
                    and tgt == target and tll == [mac.lower()]):
                out.append((pkt.extra["ts"], p6))
        return out


# ---------------------------------------------------------------------------
# rvsd in a director namespace
# ---------------------------------------------------------------------------

def ns_processes(ns: str) -> list[str]:
    """Live (non-zombie) processes in namespace `ns`, as "pid cmd"."""
    out = []
    for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            out.append(f"{pid} {cmd.strip()}")
    return out


def wait_ns_idle(ns: str, timeout: float) -> list[str]:
    """Waits until no live process runs in `ns` (e.g. a health-check script
    that outlived rvsd); returns what is still there after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        left = ns_processes(ns)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


class Director:
    """One rvsd in rvsha-dN. `start()` waits for the API; `kill()` SIGKILLs."""

    def __init__(self, n: int, config: dict | None = None, tmp: str | None = None,
                 keepalived: str | None = None, ready_timeout: float = 60):
        self.n = n
        self.ns = DIRECTORS[n]["ns"]
        self.config = config
        self._own_tmp = tmp is None
        self.tmp = Path(tmp or tempfile.mkdtemp(prefix=f"rvsha-d{n}-"))
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.config_path = self.tmp / f"rvsd-d{n}.json"
        self.keepalived_path: Path | None = None
        if keepalived is not None:
            self.keepalived_path = self.tmp / f"keepalived-d{n}.conf"
            self.keepalived_path.write_text(keepalived)
        self.log_path = self.tmp / f"rvsd-d{n}.log"
        self.proc: subprocess.Popen | None = None
        self.ready_timeout = ready_timeout
        self.started_at = 0.0
        self.killed_at: float | None = None
        self.starts = 0

    def command(self, *extra: str) -> list[str]:
        cmd = ["ip", "netns", "exec", self.ns, str(RVSD), "--config", str(self.config_path)]
        if self.keepalived_path is not None:
            cmd += ["--keepalived", str(self.keepalived_path)]
        return cmd + list(extra)

    def start(self, config: dict | None = None) -> "Director":
        if config is not None:
            self.config = config
        assert self.config is not None
        self.config_path.write_text(json.dumps(self.config, indent=2))
        leftovers = wait_ns_idle(self.ns, 3)
        if leftovers:
            raise RuntimeError(f"processes still running in {self.ns}: {leftovers}")
        self.starts += 1
        mode = "wb" if self.starts == 1 else "ab"
        with open(self.log_path, mode) as logf:
            if self.starts > 1:
                logf.write(f"\n===== restart {self.starts} =====\n".encode())
                logf.flush()
            env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, env=env)
        self.killed_at = None
        try:
            self.wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        labutil.wait_rvsd_ready(self.proc, self.ns, self.ready_timeout, 0.1, self.log_text)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> float:
        """SIGKILL (no resignation advert, no cleanup); returns the monotonic
        time just before the signal."""
        assert self.proc is not None
        t = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.killed_at = t
        return t

    def stop(self) -> int | None:
        return nsutil.stop_process(self.proc, 10, f"rvsd in {self.ns}")

    def cleanup(self) -> None:
        self.stop()
        if self._own_tmp and os.environ.get("RVS_E2E_KEEP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_text(self, tail: int = 120) -> str:
        return labutil.log_tail(self.log_path, tail, f"rvsd log {self.ns}")

    # -- REST API (curl inside the director's namespace) --------------------

    def api(self, method: str, path: str, body=None, timeout: float = 5) -> tuple[int, str]:
        data = json.dumps(body) if body is not None else None
        return labutil.curl_api(self.ns, method, path, data, timeout)

    def get(self, path: str):
        status, text = self.api("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} in {self.ns}: HTTP {status}: {text}")
        return json.loads(text)

    def ha(self) -> dict:
        return self.get("/api/v1/ha")

    def vrrp_states(self) -> dict[str, str]:
        return {i["instance"]: str(i["state"]).upper() for i in self.ha().get("vrrp", [])}

    def wait_vrrp(self, state: str, timeout: float, instances=("VI_1", "VI_2")) -> float:
        """Waits until every instance in `instances` is in `state`; returns the
        monotonic time it was seen."""
        def ok():
            try:
                states = self.vrrp_states()
            except (RuntimeError, ValueError):
                return False
            return all(states.get(i) == state for i in instances)
        wait_for(ok, timeout, interval=0.05, what=f"{self.ns}: VRRP {instances} {state}")
        return time.monotonic()

    def stats_counters(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for w in self.get("/api/v1/stats").get("workers", []):
            for k, v in w.get("counters", {}).items():
                if isinstance(v, int):
                    total[k] = total.get(k, 0) + v
        return total

    def health(self) -> dict:
        """GET /api/v1/health: {"reals": [...], "services": [...]}."""
        return self.get("/api/v1/health")

    def health_reals(self) -> list[dict]:
        return self.health().get("reals", [])

    def health_services(self) -> list[dict]:
        return self.health().get("services", [])

    def rvsadm(self, *args: str) -> str:
        """rvsadm ARGS in the director's namespace against its API; its stdout."""
        if not RVSADM.exists():
            raise RuntimeError(f"rvsadm binary not found at {RVSADM} (cargo build --release?)")
        return nsx(self.ns, [str(RVSADM), "--api", "http://127.0.0.1:9090", *args]).stdout

    def listed_reals(self, protocol: str, vip: str, port: int) -> dict[str, tuple[str, int]]:
        """`rvsadm -Ln` rows of one service: "addr:port" -> (forward, weight)."""
        text = self.rvsadm("-Ln", "--tcp-service" if protocol == "tcp" else "--udp-service", f"{vip}:{port}")
        rows = {}
        for line in text.splitlines():
            parts = line.split()
            if line.startswith("  -> ") and len(parts) >= 6 and parts[1] != "RemoteAddress:Port":
                rows[parts[1]] = (parts[2], int(parts[3]))
        return rows

    def real_report(self, vip: str, port: int, n: int, protocol: str = "tcp") -> dict | None:
        for r in self.health_reals():
            s = r.get("service", {})
            if s.get("vip") == vip and s.get("port") == port and r.get("address") == real_ip(n) \
                    and str(s.get("protocol", protocol)).lower() == protocol:
                return r
        return None

    def diagnostics(self) -> str:
        """/api/v1/ha, the non-zero dataplane counters and the log tail."""
        parts = []
        if self.alive():
            for path in ("/api/v1/ha",):
                try:
                    parts.append(f"GET {path} ({self.ns}): {self.api('GET', path)[1][:4000]}")
                except Exception as e:  # noqa: BLE001
                    parts.append(f"GET {path} ({self.ns}): {e}")
            try:
                nz = {k: v for k, v in self.stats_counters().items() if v}
                parts.append(f"counters ({self.ns}): {nz}")
            except Exception as e:  # noqa: BLE001
                parts.append(f"counters ({self.ns}): {e}")
        parts.append(self.log_text(60))
        return "\n".join(parts)


# ---------------------------------------------------------------------------
# Traffic from the client
# ---------------------------------------------------------------------------

def http_spread(url: str, count: int, ns: str = NS_CLIENT, max_time: float = 1.5) -> list[str]:
    """`count` sequential curl requests (new connections); body or ERR<rc>."""
    script = (f"for i in $(seq {count}); do "
              f"curl -s --max-time {max_time} {url} || echo \"ERR$?\"; done; true")
    out = sh(ns, script, timeout=count * (max_time + 1) + 10).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


_UDP_QUERY = r"""
import json, socket, sys, time
host, port, count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
out = []
for i in range(count):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)   # new source port
    s.settimeout(2.0)   # generous: a loaded 2-core CI machine answers late, not never
    if mode == "dns":
        q = bytes([i >> 8, i & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]) + b"\x03www\x03lab\x00\x00\x01\x00\x01"
        s.sendto(q, (host, port))
    else:
        s.sendto(b"q%d" % i, (host, port))
    try:
        data = s.recv(512)
        if mode == "dns":
            out.append(socket.inet_ntoa(data[-4:]) if len(data) >= 16 else "BAD")
        else:
            out.append(data.split(b" ", 1)[0].decode())
    except OSError:
        out.append("ERR")
    s.close()
print(json.dumps(out))
"""


def udp_spread(vip: str, port: int, count: int, mode: str = "udp", ns: str = NS_CLIENT) -> list[str]:
    """`count` UDP requests from new sockets: the real's name ("rs1") for the
    UDP echo, the answered address for DNS ("10.1.0.11"), or "ERR"."""
    cp = nsx(ns, ["python3", "-c", _UDP_QUERY, vip, str(port), str(count), mode],
             timeout=count + 10)
    return json.loads(cp.stdout)


# A UDP request every 10 ms from one socket; every answer is timed.
_PROBER = r"""
import json, select, signal, socket, sys, time
host, port, duration, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
stop = [False]
signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
sent, answers = [], {}
seq = 0
start = time.monotonic()
next_send = start
print("ready", flush=True)
while not stop[0] and time.monotonic() - start < duration:
    now = time.monotonic()
    if now >= next_send:
        try:
            s.sendto(b"%d" % seq, (host, port))
        except OSError:
            pass
        sent.append(now)
        seq += 1
        next_send += interval
        if next_send < now:
            next_send = now + interval
    r, _, _ = select.select([s], [], [], max(0.0, min(next_send - time.monotonic(), 0.005)))
    if r:
        while True:
            try:
                data = s.recv(512)
            except BlockingIOError:
                break
            except OSError:
                break
            try:
                name, num = data.split(b" ", 1)
                answers.setdefault(int(num), (time.monotonic(), name.decode()))
            except ValueError:
                pass
# late answers
end = time.monotonic() + 0.3
while time.monotonic() < end:
    r, _, _ = select.select([s], [], [], 0.05)
    if r:
        try:
            data = s.recv(512)
            name, num = data.split(b" ", 1)
            answers.setdefault(int(num), (time.monotonic(), name.decode()))
        except (OSError, ValueError):
            pass
json.dump({"sent": sent, "answers": {str(k): v for k, v in answers.items()}}, sys.stdout)
"""


class Prober:
    """The 10 ms UDP request/response client in rvsha-client (NAT VIP :9001;
    an IPv6 `vip` probes over IPv6)."""

    def __init__(self, vip: str = NAT_VIP, port: int = 9001, duration: float = 30,
                 interval: float = 0.01):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", NS_CLIENT, "python3", "-c", _PROBER, vip, str(port),
             str(duration), str(interval)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"prober did not start: {line!r} {self.proc.stderr.read()}")
        self.result: dict | None = None

    def stop(self) -> dict:
        if self.result is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            out, err = self.proc.communicate(timeout=20)
            try:
                self.result = json.loads(out)
            except ValueError as e:
                raise RuntimeError(f"prober output unreadable: {out[-500:]!r} {err[-500:]!r}") from e
        return self.result

    def analyse(self, t_event: float) -> dict:
        """Outage around `t_event`: the send-time gap between the last request
        answered before it and the first answered after it."""
        r = self.stop()
        sent = r["sent"]
        answered = sorted((sent[int(k)], v[1]) for k, v in r["answers"].items())
        before = [t for t, _ in answered if t <= t_event]
        after = [(t, name) for t, name in answered if t > t_event]
        lost_after = 0
        res = {"sent": len(sent), "answered": len(answered), "answered_after": len(after)}
        if not before or not after:
            res["outage"] = None
            return res
        first_after = after[0][0]
        res["outage"] = first_after - before[-1]
        res["from_event"] = first_after - t_event
        # Requests sent after the first post-event answer that went unanswered.
        answered_set = {t for t, _ in answered}
        lost_after = sum(1 for t in sent if t > first_after + 0.05 and t not in answered_set
                         and t < sent[-1] - 0.3)
        res["lost_after_recovery"] = lost_after
        res["reals_after"] = tally([n for _, n in after])
        # Largest gap anywhere (a second, unexpected outage shows here).
        gaps = [b - a for (a, _), (b, _) in zip(answered, answered[1:])]
        res["max_gap"] = max(gaps) if gaps else None
        return res

    def outage_failure(self, t_event: float, bound: float) -> tuple[dict, str | None]:
        """analyse(t_event), and what is wrong with it: no answers after the
        event, an outage above `bound` seconds, or requests lost after the
        service came back (None when nothing)."""
        res = self.analyse(t_event)
        if res["outage"] is None:
            return res, f"no answers after the event: {res}"
        if res["outage"] > bound:
            return res, f"outage {res['outage'] * 1000:.0f} ms above the bound {bound * 1000:.0f} ms: {res}"
        if res["lost_after_recovery"]:
            return res, f"requests lost after the recovery: {res}"
        return res, None


# ---------------------------------------------------------------------------
# A socat stream through a VIP (echo service :9000)
# ---------------------------------------------------------------------------

class Stream:
    """printf lines every `interval` s | socat VIP:9000 (echo): what was sent
    is recorded, what came back is in `out`. An IPv6 `vip` connects over IPv6."""

    def __init__(self, vip: str, port: int = 9000, lines: int = 80, interval: float = 0.05,
                 tmp: str | None = None):
        self.dir = Path(tmp or tempfile.mkdtemp(prefix="rvsha-stream-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sent, self.out, self.err = self.dir / "sent", self.dir / "out", self.dir / "err"
        self.lines = lines
        target = f"TCP6:[{vip}]:{port}" if ":" in vip else f"TCP:{vip}:{port}"
        script = (f"for i in $(seq 1 {lines}); do printf 'line %04d\\n' $i; sleep {interval}; done "
                  f"| tee {self.sent} | socat -t5 -T20 - {target},connect-timeout=3 "
                  f">{self.out} 2>{self.err}")
        self.proc = subprocess.Popen(["ip", "netns", "exec", NS_CLIENT, "sh", "-c", script],
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def banner(self) -> str | None:
        data = self.out.read_bytes() if self.out.exists() else b""
        return data.split(b"\n", 1)[0].decode() if b"\n" in data else None

    def received(self) -> bytes:
        return self.out.read_bytes() if self.out.exists() else b""

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def failure(self, name: str, at_kill: int, timeout: float = 30) -> str | None:
        """Waits for the stream to end. None when it came back byte for byte
        (the banner line, then every line sent), went on past the `at_kill`
        bytes it had when the master was killed, and socat exited 0; else
        what went wrong."""
        rc = self.wait(timeout)
        sent, got = self.sent.read_bytes(), self.received()
        expected = (self.banner() or "").encode() + b"\n" + sent
        lines_sent = sent.count(b"\n")
        if lines_sent != self.lines:
            return f"{name}: the feeder sent {lines_sent} of {self.lines} lines"
        if got != expected:
            return (f"{name}: the stream broke after the failover: got {len(got)} bytes, expected "
                    f"{len(expected)} ({at_kill} when the master was killed); socat rc={rc} "
                    f"err={self.err.read_text()!r}\ngot tail: {got[-80:]!r}")
        if at_kill >= len(got):
            return f"{name}: the stream ended before the kill"
        if rc != 0:
            return f"{name}: socat exited {rc}: {self.err.read_text()!r}"
        return None

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def open_streams(vips: dict[str, str], tmp: str, add_cleanup, lines: int = 100,
                 interval: float = 0.04) -> dict[str, Stream]:
    """A Stream to :9000 of each VIP of `vips` ({name: vip}) in `tmp`/name,
    each registered with `add_cleanup` (a test case's addCleanup); returned
    once every banner has arrived."""
    streams = {}
    for name, vip in vips.items():
        s = Stream(vip, 9000, lines=lines, interval=interval, tmp=str(Path(tmp) / name))
        add_cleanup(s.cleanup)
        streams[name] = s
    for name, s in streams.items():
        wait_for(s.banner, 5, what=f"{name} banner")
    return streams


# ---------------------------------------------------------------------------
# ARP capture in the client (gratuitous ARP from the new master)
# ---------------------------------------------------------------------------

class ArpWatch(nsutil.ArpLines):
    """tcpdump -e arp on an interface; lines collected as they come."""

    def __init__(self, ns: str = NS_CLIENT, ifname: str = "eth0"):
        super().__init__(ns, ifname)

    def garps(self, ip: str, mac: str | None = None) -> list[tuple[float, str]]:
        """Gratuitous ARPs for `ip`: requests with sender = target = ip
        (tcpdump: "Request who-has IP (ff:ff:ff:ff:ff:ff) tell IP"), sent from `mac`."""
        pat = re.compile(rf"who-has {re.escape(ip)}( \([0-9a-f:]+\))? tell {re.escape(ip)},")
        return [(t, line) for t, line in list(self.lines)
                if pat.search(line.lower()) and (mac is None or f" {mac.lower()} > " in line.lower())]

    def arp_replies(self, ip: str) -> list[str]:
        """Source MACs of ARP replies "IP is-at MAC"."""
        pat = re.compile(rf"reply {re.escape(ip)} is-at ([0-9a-f:]+)")
        return [m.group(1) for _, line in list(self.lines) if (m := pat.search(line.lower()))]


def neighbour_mac(ns: str, ip: str, dev: str = "eth0") -> str | None:
    entry = neighbour(ns, ip, dev)
    return entry.get("lladdr", "").lower() or None if entry else None


# ---------------------------------------------------------------------------
# keepalived (Debian's package) as a VRRP peer in rvsha-ka
# ---------------------------------------------------------------------------

def keepalived_vrrp_conf(priority: int, state: str, advert_int: float, version: int,
                         vips: list[str], auth_pass: str | None = None, vrid: int = 51) -> str:
    lines = ["global_defs {", "    router_id rvsha_ka", "    vrrp_garp_master_delay 1",
             "    vrrp_garp_master_repeat 3", "}",
             "vrrp_instance VI_1 {", f"    state {state}", "    interface eth0",
             f"    virtual_router_id {vrid}", f"    priority {priority}",
             f"    advert_int {advert_int}", f"    version {version}"]
    if auth_pass:
        lines += ["    authentication {", "        auth_type PASS", f"        auth_pass {auth_pass}",
                  "    }"]
    lines += ["    virtual_ipaddress {"] + [f"        {v}/32 dev eth0" for v in vips] + ["    }", "}"]
    return "\n".join(lines) + "\n"


class Keepalived(nsutil.Keepalived):
    """keepalived -n -l (VRRP only, no respawn) in rvsha-ka; as master it
    holds the DR VIP."""

    def __init__(self, conf: str, tmp: str, binary: str = "keepalived", ns: str = NS_KA):
        super().__init__(ns, conf, Path(tmp) / "keepalived", binary, DR_VIP)


def master_down(advert_int: float, priority: int, version: int) -> float:
    """RFC Master_Down_Interval of a backup with `priority`."""
    skew = (256 - priority) / 256 * (advert_int if version == 3 else 1.0)
    return 3 * advert_int + skew


# ---------------------------------------------------------------------------
# The observability lab (test_68_metrics, test_70_status_page)
# ---------------------------------------------------------------------------

def observed_services(delay_loop: float = 0.5) -> list[dict]:
    """What the metrics and status-page tests watch: DR :80 with HTTP_GET
    checks on both reals (quorum 1, a sorry server), NAT :9000 unchecked."""
    # Generous timeouts (a loaded 2-core machine must not flap a real server);
    # a stopped server still fails at once (connection refused).
    check = {"type": "http_get", "urls": [{"path": "/", "status_code": [200]}],
             "connect_timeout": 3, "retry": 1, "delay_before_retry": 0.3}
    return [
        service("tcp", DR_VIP, 80, "dr", [real(1, checks=[check]), real(2, weight=2, checks=[check])],
                health={"delay_loop": delay_loop, "quorum": 1,
                        "sorry_server": {"address": SORRY_IP, "port": 80}}),
        service("tcp", NAT_VIP, 9000, "nat", [real(1), real(2)]),
    ]


def observed_pair(start: callable) -> tuple["Director", "Director"]:
    """Directors 1 (priority 150, MASTER) and 2 (100, BACKUP) with
    observed_services, VRRP and connection sync; `start(n, config)` starts
    one (e.g. a test case's director()). Waits for their VRRP states."""
    d1 = start(1, director_config(1, observed_services(), vrrp_config(150)))
    d2 = start(2, director_config(2, observed_services(), vrrp_config(100)))
    d1.wait_vrrp("MASTER", 20)
    d2.wait_vrrp("BACKUP", 20)
    return d1, d2


def cleanup_observed(directors, tmp: str | None) -> None:
    """Stops the directors of observed_pair, takes the lab down, removes `tmp`."""
    for d in directors:
        if d is not None:
            d.cleanup()
    teardown()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
