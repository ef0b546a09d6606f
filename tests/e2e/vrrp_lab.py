"""Helpers for the VRRP end-to-end tests (Python 3.11 stdlib only).

Topology (its own namespaces, independent of deploy/topology.sh):

    rvsv-a  eth0 10.77.0.1/24 --+
    rvsv-b  eth0 10.77.0.2/24 --+-- br0 in rvsv-sw
    rvsv-c  eth0 10.77.0.3/24 --+   (observer: tcpdump, ARP)

Peers run in rvsv-a and rvsv-b: rvs-vrrp (target/release/rvs-vrrp, JSON
config, JSON-lines events on stdout) or Debian's keepalived.

Environment: RVS_VRRP=/path/to/rvs-vrrp, RVS_E2E_VERBOSE=1.
Commands, polling, keepalived and the ARP capture build on nsutil.py.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import nsutil
from nsutil import VERBOSE, ensure_keepalived, log, mac_of, nsx, run  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
RVS_VRRP = Path(os.environ.get("RVS_VRRP", REPO_ROOT / "target" / "release" / "rvs-vrrp"))

NS_SW = "rvsv-sw"
NS_A = "rvsv-a"
NS_B = "rvsv-b"
NS_C = "rvsv-c"
IP = {NS_A: "10.77.0.1", NS_B: "10.77.0.2", NS_C: "10.77.0.3"}
VIP = "10.77.0.100"


# ---------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------

def ensure_rvs_vrrp() -> None:
    """Builds target/release/rvs-vrrp when it is missing."""
    if RVS_VRRP.exists():
        return
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    log("building rvs-vrrp (cargo build --release -p rvs-control --bin rvs-vrrp)")
    subprocess.run([cargo, "build", "--release", "-p", "rvs-control", "--bin", "rvs-vrrp"],
                   cwd=REPO_ROOT, check=True, timeout=1800)


def ensure_tcpdump() -> None:
    if not shutil.which("tcpdump"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "tcpdump"], env=env, check=True,
                       capture_output=True, timeout=600)


# ---------------------------------------------------------------------------
# Topology
# ---------------------------------------------------------------------------

def topology_down() -> None:
    for ns in (NS_A, NS_B, NS_C, NS_SW):
        run(["ip", "netns", "del", ns], check=False)


def topology_up() -> None:
    topology_down()
    for ns in (NS_SW, NS_A, NS_B, NS_C):
        run(["ip", "netns", "add", ns])
        nsx(ns, ["ip", "link", "set", "lo", "up"])
    nsx(NS_SW, ["ip", "link", "add", "br0", "type", "bridge"])
    nsx(NS_SW, ["ip", "link", "set", "br0", "up"])
    for ns, port in ((NS_A, "pa"), (NS_B, "pb"), (NS_C, "pc")):
        nsx(NS_SW, ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        nsx(NS_SW, ["ip", "link", "set", port, "master", "br0", "up"])
        nsx(ns, ["ip", "addr", "add", f"{IP[ns]}/24", "dev", "eth0"])
        nsx(ns, ["ip", "link", "set", "eth0", "up"])
    # The bridge forwards at once (no STP listening/learning delay).
    nsx(NS_SW, ["ip", "link", "set", "br0", "type", "bridge", "forward_delay", "0"])


def has_vip(ns: str, vip: str = VIP) -> bool:
    return nsutil.has_vip(ns, vip)


def del_vip(ns: str, vip: str = VIP) -> None:
    nsutil.del_vip(ns, vip)


def wait_for(pred, timeout: float, what: str, interval: float = 0.01):
    """nsutil.wait_for with `what` third and 10 ms polling."""
    return nsutil.wait_for(pred, timeout, interval=interval, what=what)


# ---------------------------------------------------------------------------
# rvs-vrrp
# ---------------------------------------------------------------------------

def vrrp_instance(priority: int, advert_int: float = 1, version: int = 2, **extra) -> dict:
    inst = {"name": "VI_1", "interface": "eth0", "virtual_router_id": 51, "priority": priority,
            "advert_int": advert_int, "version": version, "virtual_ipaddress": [VIP],
            "garp_master_delay": 1, "garp_master_repeat": 3}
    inst.update(extra)
    return inst


class RvsVrrp:
    """rvs-vrrp in a namespace; its JSON events are collected with the
    CLOCK_MONOTONIC timestamp it printed."""

    def __init__(self, ns: str, instance: dict, tmp: str):
        self.ns = ns
        self.path = Path(tmp) / f"rvs-vrrp-{ns}.json"
        self.path.write_text(json.dumps({"vrrp": {"instances": [instance]}, "manage_vips": True}))
        self.events: list[dict] = []
        self.stderr_path = Path(tmp) / f"rvs-vrrp-{ns}.log"
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def start(self) -> "RvsVrrp":
        self.stderr = open(self.stderr_path, "w")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, str(RVS_VRRP), str(self.path)],
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env)
        threading.Thread(target=self._reader, daemon=True).start()
        wait_for(lambda: self.find("started") or (self.proc.poll() is not None and self._died()),
                 10, f"rvs-vrrp started in {self.ns}")
        return self

    def _died(self):
        raise RuntimeError(f"rvs-vrrp in {self.ns} exited: {self.log_text()}")

    def _reader(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)
            if VERBOSE:
                log(f"[{self.ns}] {line.strip()}")

    def find(self, event: str = "state", state: str | None = None, after: float = 0.0) -> dict | None:
        with self.lock:
            for ev in self.events:
                if ev.get("event") == event and (state is None or ev.get("state") == state) \
                        and ev.get("monotonic", 0) >= after:
                    return ev
        return None

    def states(self) -> list[str]:
        with self.lock:
            return [e["state"] for e in self.events if e.get("event") == "state"]

    def wait_state(self, state: str, timeout: float, after: float = 0.0) -> dict:
        return wait_for(lambda: self.find("state", state, after), timeout,
                        f"rvs-vrrp in {self.ns} entering {state}")

    def kill(self, sig: int = signal.SIGKILL) -> float:
        """Sends `sig`; returns the monotonic time just before."""
        assert self.proc
        t = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=10)
        return t

    def stop(self) -> None:
        nsutil.stop_process(self.proc, 5)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if hasattr(self, "stderr"):
            self.stderr.close()

    def log_text(self) -> str:
        try:
            return self.stderr_path.read_text()[-4000:]
        except OSError:
            return ""


# ---------------------------------------------------------------------------
# keepalived
# ---------------------------------------------------------------------------

def keepalived_conf(priority: int, state: str = "BACKUP", advert_int: float = 1, version: int = 2,
                    auth_pass: str | None = None, unicast: tuple[str, str] | None = None,
                    nopreempt: bool = False) -> str:
    lines = [
        "global_defs {",
        "    router_id rvs_e2e",
        "    script_user root",
        "    vrrp_garp_master_delay 1",
        "    vrrp_garp_master_repeat 3",
        "}",
        "vrrp_instance VI_1 {",
        f"    state {state}",
        "    interface eth0",
        "    virtual_router_id 51",
        f"    priority {priority}",
        f"    advert_int {advert_int}",
        f"    version {version}",
    ]
    if nopreempt:
        lines.append("    nopreempt")
    if auth_pass:
        lines += ["    authentication {", "        auth_type PASS", f"        auth_pass {auth_pass}", "    }"]
    if unicast:
        src, peer = unicast
        lines += [f"    unicast_src_ip {src}", "    unicast_peer {", f"        {peer}", "    }"]
    lines += ["    virtual_ipaddress {", f"        {VIP}/32 dev eth0", "    }", "}"]
    return "\n".join(lines) + "\n"


class Keepalived(nsutil.Keepalived):
    """keepalived -n -l in a namespace (VRRP only, no respawn, no syslog)."""

    def __init__(self, ns: str, conf: str, tmp: str, binary: str = "keepalived"):
        super().__init__(ns, conf, Path(tmp) / f"keepalived-{ns}", binary, VIP)


# ---------------------------------------------------------------------------
# Capture
# ---------------------------------------------------------------------------

class ArpCapture(nsutil.ArpLines):
    """tcpdump -e arp on rvsv-c's eth0; lines collected as they come."""

    def __init__(self, ns: str = NS_C):
        super().__init__(ns)

    def garps(self, vip: str = VIP, mac: str | None = None) -> list[str]:
        return [l for _, l in list(self.lines) if f"who-has {vip}" in l and f"tell {vip}" in l
                and (mac is None or l.lower().startswith(mac) or f" {mac} " in l.lower())]


def make_tmp() -> str:
    return tempfile.mkdtemp(prefix="rvs-vrrp-e2e-")
