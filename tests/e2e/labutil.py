"""Helpers for the rvs end-to-end tests (Python 3.11 stdlib only).

Everything runs through `ip netns exec NS ...`: the test process itself stays
in the root namespace. The lab topology comes from deploy/topology.sh.

Environment knobs:
  RVSD=/path/to/rvsd      binary to test (default: target/release/rvsd)
  RVS_E2E_KEEP=1          leave the topology up after the suite
  RVS_E2E_VERBOSE=1       echo every command

DPDK memory: real 2 MB hugepages when enough are reserved and free for the
rvsd processes a suite runs at once (deploy/setup.sh reserves them), else
--no-huge; `eal_args` decides (through deploy/rvs-nic memory) and the run
prints which ("DPDK memory: ...").
"""
from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass, field
from pathlib import Path

from nsutil import VERBOSE, mac_of, neighbour, nsx, run, sh, stop_process, wait_for  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO_ROOT / "deploy" / "topology.sh"
RVSD = Path(os.environ.get("RVSD", REPO_ROOT / "target" / "release" / "rvsd"))

NS_CLIENT = "rvs-client"
NS_DIR = "rvs-dir"
CLIENT_IP = "10.0.0.2"
DR_VIP = "10.0.0.100"
NAT_VIP = "10.0.0.101"
DIR_IPS = ("10.0.0.1", "10.1.0.1")
API = "http://127.0.0.1:9090"
NIC_HELPER = REPO_ROOT / "deploy" / "rvs-nic"
# The most rvsd processes a suite runs at once (the HA suites: 3 directors).
MAX_CONCURRENT_RVSD = 3


def real_ns(n: int) -> str:
    return f"rvs-rs{n}"


def real_ip(n: int) -> str:
    return f"10.1.0.1{n}"


# ---------------------------------------------------------------------------
# Commands (run, nsx, sh, wait_for, mac_of, neighbour come from nsutil.py)
# ---------------------------------------------------------------------------

def topology(*args: str) -> None:
    run(["bash", str(TOPOLOGY), *args], timeout=120)


# ---------------------------------------------------------------------------
# Traffic from the client
# ---------------------------------------------------------------------------

def http_requests(url: str, count: int, ns: str = NS_CLIENT, give_up_after: int = 5) -> list[str]:
    """`count` sequential curl requests (each a new TCP connection) from `ns`.

    Returns one entry per request: the body stripped ("rs1"), or
    "ERR<curl exit code>" for a failed request. Stops early after
    `give_up_after` failures (a broken director must not cost minutes), so a
    short list also means failure.
    """
    script = (f"f=0; for i in $(seq {count}); do "
              f"curl -s --max-time 2 {shlex.quote(url)} || {{ echo \"ERR$?\"; f=$((f+1)); "
              f"[ $f -ge {give_up_after} ] && break; }}; done; true")
    out = sh(ns, script, timeout=count * 3 + 10).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def echo_banners(vip: str, port: int, count: int, ns: str = NS_CLIENT,
                 give_up_after: int = 5) -> list[str]:
    """`count` new connections to the socat echo service; returns each banner
    ("rsN") or "ERR" when a connection produced none (early stop as above)."""
    script = (f"f=0; for i in $(seq {count}); do "
              f"b=$(socat -t2 -T3 - TCP:{vip}:{port},connect-timeout=2 </dev/null 2>/dev/null"
              f" | head -n1); echo \"${{b:-ERR}}\"; "
              f"[ -n \"$b\" ] || f=$((f+1)); [ $f -ge {give_up_after} ] && break; done; true")
    out = sh(ns, script, timeout=count * 6 + 10).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def tally(answers: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    return counts


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------

def real(n: int, weight: int = 1, **extra) -> dict:
    return {"address": real_ip(n), "weight": weight, **extra}


def service(protocol: str, vip: str, port: int, scheduler: str, forward: str,
            reals: list[dict]) -> dict:
    return {"protocol": protocol, "vip": vip, "port": port, "scheduler": scheduler,
            "forward": forward, "reals": reals}


# The lab's services (same as deploy/lab.json, plus rs3 on the :9000 echo
# services so that removing one real still leaves a choice).
DR_RR_80 = service("tcp", DR_VIP, 80, "rr", "dr", [real(1), real(2)])
DR_WRR_8080 = service("tcp", DR_VIP, 8080, "wrr", "dr", [real(1, 3), real(2, 1)])
NAT_RR_80 = service("tcp", NAT_VIP, 80, "rr", "nat", [real(1), real(2)])
NAT_WRR_8080 = service("tcp", NAT_VIP, 8080, "wrr", "nat", [real(1, 3), real(2, 1)])
NAT_RR_9000 = service("tcp", NAT_VIP, 9000, "rr", "nat", [real(1), real(2), real(3)])
DR_RR_9000 = service("tcp", DR_VIP, 9000, "rr", "dr", [real(1), real(2), real(3)])
ALL_SERVICES = [DR_RR_80, DR_WRR_8080, NAT_RR_80, NAT_WRR_8080, NAT_RR_9000, DR_RR_9000]


@functools.cache
def dpdk_memory_args(megabytes: int) -> tuple[str, ...]:
    """EAL memory arguments for an rvsd of `megabytes`: hugepages
    (`--in-memory`, so a killed rvsd leaves no hugepage files) when
    MAX_CONCURRENT_RVSD of them fit in the free pages, else `--no-huge`.
    Decided once per size and printed."""
    out = run([sys.executable, str(NIC_HELPER), "memory", "--megabytes", str(megabytes),
               "--processes", str(MAX_CONCURRENT_RVSD)])
    print(f"e2e: {out.stderr.strip()}", file=sys.stderr, flush=True)
    return tuple(json.loads(out.stdout))


def eal_args(prefix: str, megabytes: int = 512) -> list[str]:
    """The `eal` list of every rvsd the lab and the suites start: memory as
    dpdk_memory_args decides, no PCI probing, and `prefix` as the EAL file
    prefix (one per process)."""
    return [*dpdk_memory_args(megabytes), "--no-pci", "--file-prefix", prefix]


def lab_config(services: list[dict] | None = None) -> dict:
    return {
        "eal": eal_args("rvs-e2e"),
        "main_lcore": 0,
        "workers": [1],
        "mbufs": 8191,
        "idle_sleep_us": 50,
        "api": {"listen": "127.0.0.1:9090"},
        "ports": [{"name": "lan0", "device": "net_af_packet0,iface=dp0",
                   "addresses": ["10.0.0.1/24", "10.1.0.1/24"]}],
        "services": copy.deepcopy(ALL_SERVICES if services is None else services),
    }


# ---------------------------------------------------------------------------
# REST API (curl inside rvs-dir: the API listens on rvs-dir's loopback)
# ---------------------------------------------------------------------------

@dataclass
class ApiResponse:
    status: int
    text: str

    @property
    def json(self):
        return json.loads(self.text)

    def json_or_none(self):
        try:
            return json.loads(self.text)
        except ValueError:
            return None


def curl_api(ns: str, method: str, path: str, data: str | None,
             timeout: float) -> tuple[int, str]:
    """(HTTP status, body) of a call to the API of the rvsd in `ns` (curl in
    that namespace); `data` is sent as the JSON body. Status 0: no answer."""
    cmd = ["curl", "-s", "-S", "--max-time", str(timeout), "-X", method,
           "-o", "-", "-w", "\n%{http_code}"]
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    cmd.append(API + path)
    cp = nsx(ns, cmd, check=False, input=data, timeout=timeout + 5)
    text, _, code = cp.stdout.rpartition("\n")
    try:
        status = int(code)
    except ValueError:
        status = 0
    if cp.returncode != 0 and status == 0:
        raise RuntimeError(f"API {method} {path} in {ns}: curl rc={cp.returncode}: "
                           f"{cp.stderr.strip()}")
    return status, text


def api(method: str, path: str, body=None, *, raw: str | None = None,
        timeout: float = 10) -> ApiResponse:
    """Call rvsd's API. `body` is JSON-encoded; `raw` is sent verbatim."""
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return ApiResponse(*curl_api(NS_DIR, method, path, data, timeout))


def service_path(svc: dict) -> str:
    return f"/api/v1/services/{svc['protocol']}/{svc['vip']}/{svc['port']}"


# ---------------------------------------------------------------------------
# rvsd process
# ---------------------------------------------------------------------------

def wait_rvsd_ready(proc: subprocess.Popen, ns: str, timeout: float, interval: float,
                    log_text) -> None:
    """Waits until the rvsd `proc` in `ns` answers GET /api/v1/status; raises
    with `log_text()` when it exits first or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"rvsd in {ns} exited with {proc.returncode} during start-up\n"
                               + log_text())
        try:
            if curl_api(ns, "GET", "/api/v1/status", None, timeout=2)[0] == 200:
                return
        except RuntimeError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"rvsd API in {ns} not up after {timeout}s\n" + log_text())
        time.sleep(interval)


def log_tail(path: Path, tail: int, name: str) -> str:
    """The last `tail` lines of the log at `path`, framed with `name`."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {name})"
    return (f"---- {name} ({path}, last {tail} lines) ----\n"
            + "\n".join(lines[-tail:]) + f"\n---- end of {name} ----")


class Rvsd:
    """An rvsd started in rvs-dir with a config dict; logs to a temp file."""

    def __init__(self, config: dict | None, ready_timeout: float = 60,
                 config_path: str | Path | None = None, args: list[str] | None = None,
                 env: dict[str, str] | None = None, binary: Path | None = None):
        """`config_path`: use this config file (rvsd persists API changes to
        it) instead of one in the temp dir; `config` None leaves it as it is.
        `args`: more command-line arguments; `env`: more environment;
        `binary`: another rvsd (default RVSD)."""
        self.config = config
        self.args = list(args or [])
        self.env = dict(env or {})
        self.binary = Path(binary) if binary else RVSD
        self.tmp = tempfile.TemporaryDirectory(prefix="rvs-e2e-")
        self.config_path = Path(config_path) if config_path else Path(self.tmp.name) / "rvsd.json"
        if config is not None:
            self.config_path.write_text(json.dumps(config, indent=2))
        self.log_path = Path(self.tmp.name) / "rvsd.log"
        self.proc: subprocess.Popen | None = None
        self.ready_timeout = ready_timeout

    def start(self) -> "Rvsd":
        if not self.binary.exists():
            raise RuntimeError(f"rvsd binary not found at {self.binary} (cargo build --release?)")
        # Nothing may linger from an earlier run (EAL lock, API port).
        leftovers = run(["ip", "netns", "pids", NS_DIR]).stdout.split()
        if leftovers:
            raise RuntimeError(f"processes still running in {NS_DIR}: {leftovers}")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", NS_DIR, str(self.binary), "--config", str(self.config_path), *self.args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        log.close()
        try:
            self.wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        wait_rvsd_ready(self.proc, NS_DIR, self.ready_timeout, 0.2, self.log_text)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s. Returns the exit code."""
        return stop_process(self.proc, 10, "rvsd")

    def kill(self) -> None:
        """SIGKILL rvsd (`ip netns exec` execs it: the child is rvsd itself)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self, tail: int = 200) -> str:
        return log_tail(self.log_path, tail, "rvsd log")

    def cleanup(self) -> None:
        rc = self.stop()
        if rc not in (0, None):
            print(f"\nnote: rvsd exited with {rc} after SIGTERM\n{self.log_text(20)}", file=sys.stderr)
        self.tmp.cleanup()


class RvsdTestCase(unittest.TestCase):
    """Base class: one rvsd per test class, started with `CONFIG` (None = the
    lab services) and always stopped afterwards. rvsd's log is printed when a
    test of the class fails or errors."""

    CONFIG: dict | None = None
    rvsd: Rvsd

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rvsd = Rvsd(cls.CONFIG if cls.CONFIG is not None else lab_config())
        cls.addClassCleanup(cls.rvsd.cleanup)
        cls.rvsd.start()

    def setUp(self):
        super().setUp()
        if not self.rvsd.alive():
            self.fail(f"rvsd is not running (exit code {self.rvsd.proc.returncode})\n"
                      + self.rvsd.log_text())

    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            print(f"\n[{self.id()} failed]\n{self.rvsd.log_text()}", file=sys.stderr)
        return out

    def assert_mutation_ok(self, resp: ApiResponse, what: str) -> dict:
        """A successful mutation: 2xx with generation/adopted/adopt_us."""
        self.assertTrue(200 <= resp.status < 300, f"{what}: HTTP {resp.status}: {resp.text}")
        body = resp.json_or_none()
        self.assertIsInstance(body, dict, f"{what}: response is not a JSON object: {resp.text!r}")
        self.assertIs(body.get("adopted"), True, f"{what}: not adopted: {body}")
        self.assertIsInstance(body.get("generation"), int, f"{what}: {body}")
        self.assertIsInstance(body.get("adopt_us"), int, f"{what}: {body}")
        print(f"\n  {what}: generation={body['generation']} adopt_us={body['adopt_us']} "
              f"workers={body.get('workers')}", file=sys.stderr)
        return body


def setUpModule() -> None:
    """unittest's module hook for the suites on this topology (import it into
    the test module): skip without root, else bring the lab up."""
    if os.geteuid() != 0:
        raise unittest.SkipTest("the e2e suite needs root (network namespaces)")
    setup_topology(reals=3)


def tearDownModule() -> None:
    """unittest's module hook that takes the lab down again."""
    teardown_topology()


def figure(msg: str) -> None:
    """A measured figure in the test output (indented under the test's name)."""
    print(f"\n  {msg}", file=sys.stderr, end="")


def setup_topology(reals: int = 3) -> None:
    topology("up", "--reals", str(reals))


def teardown_topology() -> None:
    if os.environ.get("RVS_E2E_KEEP") == "1":
        return
    topology("down")


# ---------------------------------------------------------------------------
# Packet capture: tcpdump -w, parsed here (pcap + Ethernet/IPv4/TCP/ARP)
# ---------------------------------------------------------------------------

class Capture:
    """tcpdump on NS:IFNAME into a pcap file; use as a context manager or
    start()/stop(). stop() returns the parsed packets."""

    def __init__(self, ns: str, ifname: str = "eth0", bpf: str = "", directory: str | None = None):
        self.ns, self.ifname, self.bpf = ns, ifname, bpf
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="rvs-cap-")
        d = directory or self._tmp.name
        self.path = Path(d) / f"{ns}-{ifname}.pcap"
        self.proc: subprocess.Popen | None = None
        self._stderr: list[str] = []
        self.packets: list[Packet] = []

    def start(self) -> "Capture":
        # -Z root: do not drop privileges (the file lives in a root-owned dir);
        # --immediate-mode + -U: every packet reaches the file without delay.
        cmd = ["ip", "netns", "exec", self.ns, "tcpdump", "-i", self.ifname, "-n",
               "-Z", "root", "--immediate-mode", "-U", "-s", "0", "-w", str(self.path)]
        if self.bpf:
            cmd.append(self.bpf)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        listening = threading.Event()

        def reader():
            for line in self.proc.stderr:
                self._stderr.append(line)
                if "listening on" in line:
                    listening.set()

        threading.Thread(target=reader, daemon=True).start()
        if not listening.wait(10):
            self.proc.kill()
            raise RuntimeError(f"tcpdump in {self.ns} did not start: {''.join(self._stderr)}")
        return self

    def stop(self) -> list["Packet"]:
        if self.proc and self.proc.poll() is None:
            time.sleep(0.2)                 # let in-flight frames land in the ring
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        self.packets = read_pcap(self.path.read_bytes()) if self.path.exists() else []
        return self.packets

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def cleanup(self):
        self.stop()
        if self._tmp:
            self._tmp.cleanup()


def mac_str(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def ip_str(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def ttl_decremented(ip: bytes) -> bytes:
    """The IPv4 packet `ip` as a router (and IPVS) forwards it: TTL one less,
    header checksum recomputed; everything else unchanged."""
    b = bytearray(ip)
    b[8] -= 1
    b[10:12] = b"\0\0"
    ihl = (b[0] & 0x0F) * 4
    b[10:12] = inet_checksum(bytes(b[:ihl])).to_bytes(2, "big")
    return bytes(b)


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@dataclass
class Packet:
    """One captured Ethernet frame, decoded as far as IPv4/TCP/UDP/ARP."""
    frame: bytes
    eth_dst: str = ""
    eth_src: str = ""
    ethertype: int = 0
    # IPv4
    ip: bytes = b""            # the whole IPv4 packet (header + payload, trimmed to total length)
    ip_src: str = ""
    ip_dst: str = ""
    ip_id: int = 0
    ttl: int = 0
    proto: int = 0
    ihl: int = 0
    # TCP / UDP
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0
    payload: bytes = b""
    # ARP
    arp_op: int = 0
    arp_sha: str = ""
    arp_spa: str = ""
    arp_tpa: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def is_tcp(self) -> bool:
        return self.ethertype == 0x0800 and self.proto == 6

    @property
    def syn(self) -> bool:
        return self.is_tcp and bool(self.flags & 0x02) and not self.flags & 0x10

    def ip_checksum_ok(self) -> bool:
        return inet_checksum(self.ip[: self.ihl]) == 0

    def l4_checksum_ok(self) -> bool:
        """TCP/UDP checksum over the pseudo header (UDP 0 = none = ok)."""
        seg = self.ip[self.ihl:]
        if self.proto == 17 and seg[6:8] == b"\0\0":
            return True
        pseudo = self.ip[12:20] + struct.pack("!BBH", 0, self.proto, len(seg))
        return inet_checksum(pseudo + seg) == 0

    def __repr__(self) -> str:
        if self.is_tcp:
            return (f"<{self.eth_src}>{self.eth_dst} {self.ip_src}:{self.sport}>"
                    f"{self.ip_dst}:{self.dport} id={self.ip_id} seq={self.seq} "
                    f"flags={self.flags:#x} len={len(self.payload)}>")
        if self.ethertype == 0x0806:
            return f"<ARP op={self.arp_op} {self.arp_spa}({self.arp_sha})->{self.arp_tpa}>"
        return f"<{self.eth_src}>{self.eth_dst} type={self.ethertype:#x} {self.ip_src}>{self.ip_dst}>"


def parse_frame(frame: bytes) -> Packet:
    p = Packet(frame=frame)
    if len(frame) < 14:
        return p
    p.eth_dst, p.eth_src = mac_str(frame[0:6]), mac_str(frame[6:12])
    (p.ethertype,) = struct.unpack("!H", frame[12:14])
    body = frame[14:]
    if p.ethertype == 0x0800 and len(body) >= 20:
        ver_ihl, _, total = struct.unpack("!BBH", body[:4])
        p.ihl = (ver_ihl & 0x0F) * 4
        p.ip = body[:total]
        p.ip_id = struct.unpack("!H", body[4:6])[0]
        p.ttl, p.proto = body[8], body[9]
        p.ip_src, p.ip_dst = ip_str(body[12:16]), ip_str(body[16:20])
        seg = p.ip[p.ihl:]
        if p.proto == 6 and len(seg) >= 20:
            p.sport, p.dport, p.seq, p.ack, off_flags = struct.unpack("!HHIIH", seg[:14])
            p.flags = off_flags & 0x1FF
            p.payload = seg[(off_flags >> 12) * 4:]
        elif p.proto == 17 and len(seg) >= 8:
            p.sport, p.dport = struct.unpack("!HH", seg[:4])
            p.payload = seg[8:]
    elif p.ethertype == 0x0806 and len(body) >= 28:
        (p.arp_op,) = struct.unpack("!H", body[6:8])
        p.arp_sha, p.arp_spa = mac_str(body[8:14]), ip_str(body[14:18])
        p.arp_tpa = ip_str(body[24:28])
    return p


def read_pcap(data: bytes) -> list[Packet]:
    """Parse a classic pcap file (µs or ns timestamps, either byte order),
    link type Ethernet. Timestamps go into Packet.extra['ts']."""
    if len(data) < 24:
        return []
    magic = data[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
              b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
    if endian is None:
        raise ValueError(f"not a pcap file (magic {magic.hex()}); pcapng is not supported")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError(f"pcap link type {linktype}, expected 1 (Ethernet)")
    packets, off = [], 24
    while off + 16 <= len(data):
        ts_s, ts_frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        if len(frame) < incl:          # truncated last record (tcpdump killed)
            break
        pkt = parse_frame(frame)
        pkt.extra["ts"] = ts_s + ts_frac / (1e9 if nano else 1e6)
        packets.append(pkt)
    return packets


# ===========================================================================
# Additions for the forwarding-mode, semantics and API suites
# (test_20_modes.py, test_25_api.py, test_30_semantics.py)
# ===========================================================================

import ctypes
import errno
import random
import selectors
import socket
import statistics
from concurrent.futures import ThreadPoolExecutor

TUN_VIP = "10.0.0.102"
FNAT_VIP = "10.0.0.103"
LIPS = ("10.1.0.200", "10.1.0.201", "10.1.0.202", "10.1.0.203")
ECHO_PORT = 9000        # socat banner + echo on every real
MANY_PORT = 9001        # echod banner + echo (thousands of connections)
UDP_PORT = 9053         # echod UDP: "rsN\n" + datagram
RVSADM = Path(os.environ.get("RVSADM", REPO_ROOT / "target" / "release" / "rvsadm"))
MODE_VIPS = {"dr": DR_VIP, "nat": NAT_VIP, "tun": TUN_VIP, "fullnat": FNAT_VIP}


def mode_service(protocol: str, mode: str, port: int, reals: list[dict], scheduler: str = "rr",
                 lips: tuple[str, ...] = LIPS[:2], **extra) -> dict:
    """A service on the mode's lab VIP (DR .100, NAT .101, TUN .102, FULLNAT .103)."""
    svc = service(protocol, MODE_VIPS[mode], port, scheduler, mode, reals)
    if mode == "fullnat":
        svc["local_addresses"] = list(lips)
    svc.update(extra)
    return svc


def make_config(services: list[dict], *, workers: int = 2, prefix: str = "rvs-e2e-modes",
                **top) -> dict:
    """A lab config with 1 or 2 workers. Two workers on this 2-core machine:
    lcores 1 and 2 share CPU 1 (`--lcores 0@0,1@1,2@1`) and the af_packet
    port gets 2 queue pairs. `prefix` is the EAL file prefix (one per suite,
    so nothing collides with other users of DPDK on the machine)."""
    cfg = lab_config(services)
    cfg["eal"] = eal_args(prefix)
    cfg["mbufs"] = 16383
    if workers == 2:
        cfg["workers"] = [1, 2]
        cfg["eal"] += ["--lcores", "0@0,1@1,2@1"]
        cfg["ports"][0]["device"] = "net_af_packet0,iface=dp0,qpairs=2"
    elif workers != 1:
        raise ValueError("the lab runs 1 or 2 workers")
    cfg.update(top)
    return cfg


# ---------------------------------------------------------------------------
# Sockets inside a namespace, from this process: a thread per namespace has
# setns()'d into it; sockets created there belong to that namespace for good
# and can be used from any thread.
# ---------------------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_ns_pools: dict[str, tuple[int, ThreadPoolExecutor]] = {}
_ns_lock = threading.Lock()


def _enter_netns(ns: str) -> None:
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def ns_call(ns: str, fn, *args, **kw):
    """Run `fn(*args, **kw)` in a thread that lives in network namespace `ns`.
    The thread is replaced when the namespace was re-created (the topology
    is rebuilt per test module), so it never lingers in a deleted one."""
    ino = os.stat(f"/var/run/netns/{ns}").st_ino
    with _ns_lock:
        entry = _ns_pools.get(ns)
        if entry is not None and entry[0] != ino:
            entry[1].shutdown(wait=False)
            entry = None
        if entry is None:
            entry = (ino, ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"netns-{ns}",
                                             initializer=_enter_netns, initargs=(ns,)))
            _ns_pools[ns] = entry
    return entry[1].submit(fn, *args, **kw).result()


def ns_socket(ns: str, family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0) -> socket.socket:
    return ns_call(ns, socket.socket, family, type, proto)


def raise_nofile(n: int = 16384) -> None:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def read_line(sock: socket.socket, timeout: float = 3.0) -> bytes:
    """Read up to and including the first newline (or b'' on EOF/timeout)."""
    sock.settimeout(timeout)
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                break
            buf += chunk
    except (socket.timeout, OSError):
        pass
    return buf


class EchoConn:
    """A TCP connection from rvs-client to a banner+echo service (:9000 socat
    or :9001 echod), opened from this process."""

    def __init__(self, vip: str, port: int, timeout: float = 3.0, ns: str = NS_CLIENT):
        self.sock = ns_socket(ns)
        self.sock.settimeout(timeout)
        self.error: str | None = None
        self.banner = ""
        try:
            self.sock.connect((vip, port))
            self.banner = read_line(self.sock, timeout).decode(errors="replace").strip()
            if not self.banner:
                self.error = "no banner"
        except OSError as e:
            self.error = f"{type(e).__name__}: {e}"
        self.local_port = self.sock.getsockname()[1] if self.error is None else 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def exchange(self, data: bytes, timeout: float = 3.0) -> bytes:
        """Send `data`, read back len(data) bytes (or what arrived in time)."""
        self.sock.settimeout(timeout)
        self.sock.sendall(data)
        got = b""
        try:
            while len(got) < len(data):
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, OSError):
            pass
        return got

    def close(self, rst: bool = False) -> None:
        if rst:         # SO_LINGER 0: close() sends an RST
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def udp_requests(vip: str, port: int, count: int, ns: str = NS_CLIENT,
                 timeout: float = 2.0) -> list[str]:
    """`count` UDP datagrams, each from a new socket (a new source port, so a
    new flow); returns each reply's first line ("rsN"), "ERR" for no reply,
    or "BAD" when the echoed payload differs."""
    answers = []
    for i in range(count):
        s = ns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        payload = f"datagram {i} {random.getrandbits(64):016x}\n".encode()
        try:
            s.connect((vip, port))
            s.send(payload)
            reply = s.recv(65535)
            banner, _, rest = reply.partition(b"\n")
            answers.append(banner.decode() if rest == payload else "BAD")
        except OSError:
            answers.append("ERR")
        finally:
            s.close()
    return answers


# ---------------------------------------------------------------------------
# Streams through socat (client side), compared byte for byte
# ---------------------------------------------------------------------------

class SocatStream:
    """A socat client in rvs-client: `feeder | tee sent | socat - TCP:vip:port > out`.

    kind="lines": numbered lines, one every `interval` s, `lines` of them
    (0 = until stop() is called); kind="file": the bytes of `data` at once.
    """

    def __init__(self, vip: str, port: int, *, lines: int = 0, interval: float = 0.05,
                 data: bytes | None = None, idle_timeout: int = 15, ns: str = NS_CLIENT):
        self.vip, self.port = vip, port
        self.dir = Path(tempfile.mkdtemp(prefix="rvs-stream-"))
        self.sent, self.out, self.err = self.dir / "sent", self.dir / "out", self.dir / "err"
        self.stopfile = self.dir / "stop"
        target = f"TCP:{vip}:{port},connect-timeout=3"
        sock = f"socat -t5 -T{idle_timeout} - {target} >{self.out} 2>{self.err}"
        if data is not None:
            self.sent.write_bytes(data)
            script = f"exec {sock} <{self.sent}"
        else:
            cond = f"[ $i -lt {lines} ]" if lines else f"[ ! -e {self.stopfile} ]"
            script = (f"i=0; while {cond}; do i=$((i+1)); printf 'line %06d\\n' $i; "
                      f"sleep {interval}; done | tee {self.sent} | {sock}")
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "sh", "-c", script],
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.expected_data = data

    def received(self) -> bytes:
        return self.out.read_bytes() if self.out.exists() else b""

    def banner(self) -> str | None:
        data = self.received()
        return data.split(b"\n", 1)[0].decode(errors="replace") if b"\n" in data else None

    def wait_banner(self, timeout: float = 5) -> str:
        return wait_for(self.banner, timeout, what=f"banner from {self.vip}:{self.port}")

    def stop(self) -> None:
        """Stop feeding lines (the stream then ends cleanly)."""
        self.stopfile.touch()

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def check(self) -> tuple[bool, str]:
        """(ok, description): out == banner line + everything sent."""
        got, sent = self.received(), self.sent.read_bytes() if self.sent.exists() else b""
        banner = self.banner()
        expected = (banner.encode() + b"\n" if banner else b"") + sent
        if banner and re.fullmatch(r"rs\d", banner) and got == expected:
            return True, f"{len(sent)} bytes echoed by {banner}"
        # Where does it first differ?
        i = next((k for k in range(min(len(got), len(expected))) if got[k] != expected[k]),
                 min(len(got), len(expected)))
        return False, (f"{self.vip}:{self.port}: banner {banner!r}, got {len(got)} bytes, expected "
                       f"{len(expected)}; first difference at byte {i}: got {got[i:i + 40]!r} "
                       f"expected {expected[i:i + 40]!r}; socat stderr: "
                       f"{self.err.read_text(errors='replace')[-300:] if self.err.exists() else ''!r}")

    def cleanup(self) -> None:
        self.kill()
        subprocess.run(["rm", "-rf", str(self.dir)])


# ---------------------------------------------------------------------------
# Counters and tables through the API
# ---------------------------------------------------------------------------

def worker_counters() -> list[dict]:
    """Per-worker counters from GET /api/v1/stats, in worker order."""
    resp = api("GET", "/api/v1/stats")
    if resp.status != 200:
        raise RuntimeError(f"GET /api/v1/stats: HTTP {resp.status}: {resp.text}")
    return [w["counters"] for w in sorted(resp.json["workers"], key=lambda w: w["worker"])]


def settled_counters(*keys: str, timeout: float = 5.0, interval: float = 0.25) -> list[dict]:
    """Per-worker counters once they stop moving (workers publish their
    counters every 50 ms, and the last packets of closed connections may
    still be in flight): two reads `interval` apart that agree on `keys`
    (default: every counter but the gauges), or the last read after
    `timeout`."""
    gauges = {"conn_active", "generation"}

    def strip(cs):
        return [{k: v for k, v in c.items() if (k in keys if keys else k not in gauges)} for c in cs]

    prev = worker_counters()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(interval)
        cur = worker_counters()
        if strip(cur) == strip(prev):
            return cur
        prev = cur
    return prev


def counters_delta(before: list[dict], after: list[dict]) -> list[dict]:
    return [{k: a[k] - b.get(k, 0) for k in a} for b, a in zip(before, after)]


def total(counters: list[dict], name: str) -> int:
    return sum(c.get(name, 0) for c in counters)


def pick(counters: list[dict], *names: str) -> str:
    """'name=[w0, w1]' for printing."""
    return " ".join(f"{n}={[c.get(n, 0) for c in counters]}" for n in names)


def connections(**filters) -> list[dict]:
    """GET /api/v1/connections with filters (service=tcp/VIP/PORT, client=,
    real=, state=, templates=true); all pages."""
    out, offset = [], 0
    while True:
        q = "&".join([f"offset={offset}", "limit=10000"] +
                     [f"{k}={v}" for k, v in filters.items() if v is not None])
        resp = api("GET", f"/api/v1/connections?{q}")
        if resp.status != 200:
            raise RuntimeError(f"GET /api/v1/connections?{q}: HTTP {resp.status}: {resp.text}")
        page = resp.json
        out += page["connections"]
        offset += len(page["connections"])
        if not page["connections"] or offset >= page["total"]:
            return out


def rvsadm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return nsx(NS_DIR, [str(RVSADM), "--api", API, *args], check=check)


def svc_id(svc: dict) -> str:
    return f"{svc['protocol']}/{svc['vip']}/{svc['port']}"


# ---------------------------------------------------------------------------
# Packets: TCP options, IPIP inner packets, hand-built frames
# ---------------------------------------------------------------------------

def tcp_options(p: "Packet") -> list[tuple[int, bytes]]:
    """(kind, data) of every TCP option of a captured TCP packet."""
    seg = p.ip[p.ihl:]
    if len(seg) < 20:
        return []
    hl = (seg[12] >> 4) * 4
    opts, i, out = seg[20:hl], 0, []
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        length = opts[i + 1]
        out.append((kind, bytes(opts[i + 2:i + length])))
        i += length
    return out


def toa_of(p: "Packet") -> tuple[str, int] | None:
    """The TOA option (kind 254, len 8: port, IPv4) of a TCP packet, if any."""
    for kind, data in tcp_options(p):
        if kind == 254 and len(data) == 6:
            return ip_str(data[2:6]), struct.unpack("!H", data[:2])[0]
    return None


def inner_packet(p: "Packet") -> "Packet | None":
    """The packet inside an IPIP (protocol 4) packet, decoded."""
    if p.ethertype != 0x0800 or p.proto != 4:
        return None
    return parse_frame(b"\0" * 12 + b"\x08\x00" + p.ip[p.ihl:])


def ipv4_header(src: str, dst: str, proto: int, payload_len: int, ident: int = 0,
                ttl: int = 64, df: bool = True) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, 0x4000 if df else 0,
                    ttl, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", inet_checksum(h)) + h[12:]


def tcp_frame(src_mac: str, dst_mac: str, src: str, dst: str, sport: int, dport: int,
              flags: str, seq: int = 1000, ack: int = 0, payload: bytes = b"") -> bytes:
    """An Ethernet/IPv4/TCP frame with correct checksums; flags from 'SAFRP'."""
    bits = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}
    fl = sum(bits[c] for c in flags)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, fl, 65535, 0, 0) + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", inet_checksum(pseudo + tcp)) + tcp[18:]
    ip = ipv4_header(src, dst, 6, len(tcp), ident=random.getrandbits(16))
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    return eth + ip + tcp


class RawSender:
    """An AF_PACKET socket on NS:IFNAME for hand-built frames."""

    def __init__(self, ns: str = NS_CLIENT, ifname: str = "eth0"):
        def make():
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            s.bind((ifname, 0))
            return s
        self.sock = ns_call(ns, make)

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------
# Many concurrent connections (selectors), all open at once
# ---------------------------------------------------------------------------

def many_connections(vip: str, port: int, count: int, *, batch: int = 100,
                     deadline_s: float = 90, ns: str = NS_CLIENT, inspect=None,
                     after_first_batch=None) -> dict:
    """Open `count` TCP connections to a banner+echo service at once (non-blocking
    connects, in batches of `batch` so the burst stays within the lab's
    queues), wait until every one has its banner (at most half the deadline),
    then send each a unique line and read it back; only when every connection
    is done (or the deadline has passed) are they all closed. Returns a summary dict. `inspect(stuck)` is
    called with [(phase, client port)] of unfinished connections (phase 0
    connecting, 1 waiting for the banner, 2 waiting for the echo) while they
    are still open; what it returns goes into the summary as "inspected".
    `after_first_batch()` is called once the first batch of connects is out."""
    raise_nofile(count + 1024)
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    conns = []
    # Per connection: [sock, phase, buf, line, banner, (local port), (line sent)];
    # phase: 0 connecting, 1 banner, 2 echo, 3 done, -1 failed.
    errors: dict[str, int] = {}

    def fail(c, why):
        c[1] = -1
        errors[why] = errors.get(why, 0) + 1
        try:
            sel.unregister(c[0])
        except (KeyError, ValueError):
            pass

    max_open = 0
    for start in range(0, count, batch):
        for i in range(start, min(start + batch, count)):
            s = ns_socket(ns)
            s.setblocking(False)
            rc = s.connect_ex((vip, port))
            c = [s, 0, b"", f"conn {i:05d} {random.getrandbits(48):012x}\n".encode(), None]
            conns.append(c)
            if rc not in (0, errno.EINPROGRESS):
                fail(c, f"connect: {os.strerror(rc)}")
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        if start == 0 and after_first_batch is not None:
            after_first_batch()
        # Let this batch make progress before the next burst.
        _pump(sel, fail, 0.05, banners_only=True)
        max_open = max(max_open, sum(1 for c in conns if c[1] in (0, 1, 2)))
    # Everything until all have their banner (or half the time is up: then
    # the ones that have it go on, the others count as stuck).
    while time.monotonic() - t0 < deadline_s / 2 and any(c[1] in (0, 1) for c in conns):
        _pump(sel, fail, 0.2, banners_only=True)
    t_banners = time.monotonic() - t0
    all_open = sum(1 for c in conns if c[1] == 2)
    # Now every connection is open at once: send the lines.
    for c in conns:
        if c[1] == 2:
            c.append(True)          # c[6]: line sent
            try:
                c[0].send(c[3])
            except OSError as e:
                fail(c, f"send: {e}")
                continue
            sel.modify(c[0], selectors.EVENT_READ, c)
    while time.monotonic() - t0 < deadline_s and any(c[1] in (0, 1, 2) for c in conns):
        _pump(sel, fail, 0.2, banners_only=False)
        for c in conns:             # late banners: send their line too
            if c[1] == 2 and not c[6:]:
                c.append(True)
                try:
                    c[0].send(c[3])
                    sel.modify(c[0], selectors.EVENT_READ, c)
                except OSError as e:
                    fail(c, f"send: {e}")
    elapsed = time.monotonic() - t0
    banners: dict[str, int] = {}
    for c in conns:
        if c[4]:
            banners[c[4]] = banners.get(c[4], 0) + 1
    done = sum(1 for c in conns if c[1] == 3)
    stuck = {p: sum(1 for c in conns if c[1] == p) for p in (0, 1, 2)}
    stuck_ports = sorted((c[1], c[5] if len(c) > 5 else 0) for c in conns if c[1] in (0, 1, 2))
    inspected = inspect(stuck_ports) if inspect and stuck_ports else None
    for c in conns:
        try:
            sel.unregister(c[0])
        except (KeyError, ValueError):
            pass
        c[0].close()
    sel.close()
    return {"count": count, "echoed": done, "open_at_once": all_open, "banners": banners,
            "errors": errors, "stuck": stuck, "seconds_to_all_banners": round(t_banners, 2),
            "seconds": round(elapsed, 2),
            "client_ports": len({c[5] for c in conns if len(c) > 5}),
            "stuck_ports": stuck_ports[:20], "inspected": inspected}



def _pump(sel, fail, timeout: float, banners_only: bool) -> None:
    for key, mask in sel.select(timeout):
        c = key.data
        s = c[0]
        try:
            if c[1] == 0:                           # connect finished
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(c, f"connect: {os.strerror(err)}")
                    continue
                c[1] = 1
                c.append(s.getsockname()[1])
                sel.modify(s, selectors.EVENT_READ, c)
                continue
            chunk = s.recv(4096)
            if not chunk:
                fail(c, "closed by peer" if c[1] == 2 else "closed before banner")
                continue
            c[2] += chunk
            if c[1] == 1 and b"\n" in c[2]:
                line, _, rest = c[2].partition(b"\n")
                c[4] = line.decode(errors="replace")
                c[2] = rest
                c[1] = 2
                if banners_only:
                    sel.modify(s, selectors.EVENT_READ, c)
            if c[1] == 2 and not banners_only and len(c[2]) >= len(c[3]):
                if c[2][:len(c[3])] == c[3]:
                    c[1] = 3
                    sel.unregister(s)
                else:
                    fail(c, "echo differs")
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            fail(c, f"{type(e).__name__}: {e.strerror}")


def summary(values: list[float]) -> str:
    if not values:
        return "n=0"
    return (f"n={len(values)} min={min(values)} median={statistics.median(values)} "
            f"max={max(values)}")


# ===========================================================================
# IPv6 (issue 16): the lab's IPv6 plan (deploy/topology.sh up6), configs,
# traffic and IPv6 frame parsing (test_76_ipv6.py)
# ===========================================================================

import ipaddress

CLIENT_IP6 = "2001:db8::2"
DIR_IPS6 = ("2001:db8::1", "2001:db8:1::1")
DR_VIP6 = "2001:db8::100"
NAT_VIP6 = "2001:db8::101"
TUN_VIP6 = "2001:db8::102"
FNAT_VIP6 = "2001:db8::103"
NAT64_VIP = "2001:db8::104"
MODE_VIPS6 = {"dr": DR_VIP6, "nat": NAT_VIP6, "tun": TUN_VIP6, "fullnat": FNAT_VIP6}
LIPS6 = ("2001:db8:1::200", "2001:db8:1::201", "2001:db8:1::202", "2001:db8:1::203")
NAT64_LIPS = ("10.1.0.204",)
DIR_ADDRESSES6 = ["2001:db8::1/64", "2001:db8:1::1/64"]


def real_ip6(n: int) -> str:
    """Real server N's IPv6 address (rs1 2001:db8:1::11)."""
    return f"2001:db8:1::1{n}"


def real6(n: int, weight: int = 1, **extra) -> dict:
    """Real server N by its IPv6 address, for a service's `reals`."""
    return {"address": real_ip6(n), "weight": weight, **extra}


def setup_topology6(reals: int = 2) -> None:
    """The lab with IPv6 on the client and the reals (topology.sh up6)."""
    setup_topology(reals)
    topology("up6")


def teardown_topology6() -> None:
    """IPv6 off again (topology.sh down6), then the lab down as usual."""
    topology("down6")
    teardown_topology()


def url6(addr: str, port: int = 80, path: str = "/") -> str:
    """http://[addr]:port/path"""
    return f"http://[{addr}]:{port}{path}"


def mode_service6(protocol: str, mode: str, port: int, reals: list[dict], scheduler: str = "rr",
                  lips: tuple[str, ...] = LIPS6[:2], **extra) -> dict:
    """A service on the mode's IPv6 lab VIP (DR ::100, NAT ::101, TUN ::102,
    FULLNAT ::103 with IPv6 local addresses)."""
    svc = service(protocol, MODE_VIPS6[mode], port, scheduler, mode, reals)
    if mode == "fullnat":
        svc["local_addresses"] = list(lips)
    svc.update(extra)
    return svc


def nat64_service(protocol: str, port: int, reals: list[dict], scheduler: str = "rr",
                  lips: tuple[str, ...] = NAT64_LIPS, **extra) -> dict:
    """NAT64: the IPv6 VIP 2001:db8::104 served by IPv4 reals through FULLNAT
    with IPv4 local addresses."""
    svc = service(protocol, NAT64_VIP, port, scheduler, "fullnat", reals)
    svc["local_addresses"] = list(lips)
    svc.update(extra)
    return svc


def make_config6(services: list[dict], **kw) -> dict:
    """make_config with the director's IPv6 addresses on the port too."""
    cfg = make_config(services, **kw)
    cfg["ports"][0]["addresses"] = cfg["ports"][0]["addresses"] + DIR_ADDRESSES6
    return cfg


def udp_requests6(vip: str, port: int, count: int, ns: str = NS_CLIENT,
                  timeout: float = 2.0) -> list[str]:
    """udp_requests over IPv6: each datagram from a new socket (a new flow);
    the reply's first line ("rsN"), "ERR" for none, "BAD" when the echo
    differs."""
    answers = []
    for i in range(count):
        s = ns_socket(ns, socket.AF_INET6, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        payload = f"datagram6 {i} {random.getrandbits(64):016x}\n".encode()
        try:
            s.connect((vip, port))
            s.send(payload)
            reply = s.recv(65535)
            banner, _, rest = reply.partition(b"\n")
            answers.append(banner.decode() if rest == payload else "BAD")
        except OSError:
            answers.append("ERR")
        finally:
            s.close()
    return answers


def ip6_str(b: bytes) -> str:
    """Compressed text form of a 16-byte IPv6 address."""
    return str(ipaddress.IPv6Address(bytes(b)))


# IPv6 extension headers walked to the upper-layer protocol (RFC 8200 4.1).
_IPV6_EXT = {0, 43, 60, 135, 139, 140}
_IPV6_FRAGMENT = 44


@dataclass
class Packet6:
    """One captured Ethernet frame carrying IPv6, decoded as far as
    TCP/UDP/ICMPv6 (see ipv6_of)."""
    frame: bytes
    eth_dst: str = ""
    eth_src: str = ""
    ip: bytes = b""            # the whole IPv6 packet (header + payload length)
    ip_src: str = ""
    ip_dst: str = ""
    hlim: int = 0
    tclass: int = 0
    flow: int = 0
    next_header: int = 0       # the first header after the fixed one
    proto: int = 0             # the upper-layer protocol after extension headers (44 if fragmented)
    l4: bytes = b""            # the upper-layer segment (TCP/UDP/ICMPv6 header + data)
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0
    payload: bytes = b""
    icmp_type: int = -1
    icmp_code: int = -1

    @property
    def is_tcp(self) -> bool:
        return self.proto == 6

    @property
    def syn(self) -> bool:
        return self.is_tcp and bool(self.flags & 0x02) and not self.flags & 0x10

    def l4_checksum_ok(self) -> bool:
        """TCP/UDP/ICMPv6 checksum over the IPv6 pseudo header."""
        if self.proto not in (6, 17, 58):
            return False
        pseudo = self.ip[8:40] + struct.pack("!I3xB", len(self.l4), self.proto)
        return inet_checksum(pseudo + self.l4) == 0

    def inner(self) -> "Packet6 | Packet | None":
        """The packet a tunnel carries: IPv6 (next header 41) or IPv4 (4)."""
        if self.proto == 41:
            return ipv6_of_ip(self.l4)
        if self.proto == 4:
            return parse_frame(b"\0" * 12 + b"\x08\x00" + self.l4)
        return None

    def __repr__(self) -> str:
        if self.proto in (6, 17):
            return (f"<{self.eth_src}>{self.eth_dst} [{self.ip_src}]:{self.sport}>[{self.ip_dst}]:"
                    f"{self.dport} p={self.proto} hlim={self.hlim} seq={self.seq} flags={self.flags:#x} "
                    f"len={len(self.payload)}>")
        if self.proto == 58:
            return (f"<{self.eth_src}>{self.eth_dst} {self.ip_src}>{self.ip_dst} icmp6 "
                    f"type={self.icmp_type} code={self.icmp_code} len={len(self.l4)}>")
        return f"<{self.eth_src}>{self.eth_dst} {self.ip_src}>{self.ip_dst} nh={self.next_header} p={self.proto}>"


def ipv6_of_ip(ip: bytes, p: Packet6 | None = None) -> Packet6 | None:
    """Decode an IPv6 packet (no Ethernet header); None if it is not one."""
    if len(ip) < 40 or ip[0] >> 4 != 6:
        return None
    p = p or Packet6(frame=b"")
    (vtf, plen, nh, p.hlim) = struct.unpack("!IHBB", ip[:8])
    p.tclass, p.flow = (vtf >> 20) & 0xFF, vtf & 0xFFFFF
    p.ip = ip[:40 + plen]
    p.ip_src, p.ip_dst = ip6_str(ip[8:24]), ip6_str(ip[24:40])
    p.next_header = nh
    off = 40
    while nh in _IPV6_EXT and off + 8 <= len(p.ip):
        nh, hlen = p.ip[off], (p.ip[off + 1] + 1) * 8
        off += hlen
    p.proto = nh
    p.l4 = p.ip[off:]
    seg = p.l4
    if nh == 6 and len(seg) >= 20:
        p.sport, p.dport, p.seq, p.ack, off_flags = struct.unpack("!HHIIH", seg[:14])
        p.flags = off_flags & 0x1FF
        p.payload = seg[(off_flags >> 12) * 4:]
    elif nh == 17 and len(seg) >= 8:
        p.sport, p.dport = struct.unpack("!HH", seg[:4])
        p.payload = seg[8:]
    elif nh == 58 and len(seg) >= 4:
        p.icmp_type, p.icmp_code = seg[0], seg[1]
        p.payload = seg[4:]
    return p


def ipv6_of(pkt: "Packet") -> Packet6 | None:
    """The IPv6 decoding of a captured frame (Capture.stop() packets), or
    None when it is not IPv6 (ethertype 0x86dd)."""
    f = pkt.frame
    if len(f) < 54 or struct.unpack("!H", f[12:14])[0] != 0x86DD:
        return None
    p = Packet6(frame=f, eth_dst=mac_str(f[0:6]), eth_src=mac_str(f[6:12]))
    return ipv6_of_ip(f[14:], p)


def packets6(packets: list["Packet"]) -> list[Packet6]:
    """The IPv6 frames of a capture, decoded."""
    return [p6 for p6 in (ipv6_of(p) for p in packets) if p6 is not None]


def tcp_options6(p: Packet6) -> list[tuple[int, bytes]]:
    """(kind, data) of every TCP option of a captured IPv6 TCP packet."""
    seg = p.l4
    if p.proto != 6 or len(seg) < 20:
        return []
    hl = (seg[12] >> 4) * 4
    opts, i, out = seg[20:hl], 0, []
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        length = opts[i + 1]
        out.append((kind, bytes(opts[i + 2:i + length])))
        i += length
    return out


def toa6_of(p: Packet6) -> tuple[str, int] | None:
    """DPVS's IPv6 TOA option (kind 254, length 20: port, 16-byte IPv6
    address) of an IPv6 TCP packet, if any: (address, port)."""
    for kind, data in tcp_options6(p):
        if kind == 254 and len(data) == 18:
            return ip6_str(data[2:18]), struct.unpack("!H", data[:2])[0]
    return None


def nd_target(p: Packet6) -> str | None:
    """The target address of a Neighbor Solicitation (135) or Advertisement
    (136), else None."""
    if p.proto == 58 and p.icmp_type in (135, 136) and len(p.l4) >= 24:
        return ip6_str(p.l4[8:24])
    return None


def nd_link_addr(p: Packet6) -> str | None:
    """The link-layer address option of an NS (source, type 1) or NA
    (target, type 2), else None."""
    if p.proto != 58 or p.icmp_type not in (135, 136):
        return None
    opts, i = p.l4[24:], 0
    while i + 2 <= len(opts) and opts[i + 1]:
        if opts[i] in (1, 2) and opts[i + 1] == 1 and i + 8 <= len(opts):
            return mac_str(opts[i + 2:i + 8])
        i += opts[i + 1] * 8
    return None


def neighbour6(ns: str, addr: str, dev: str = "eth0") -> str | None:
    """The MAC `ns` has for IPv6 `addr` (ip -6 neigh), or None."""
    out = nsx(ns, ["ip", "-6", "neigh", "show", addr, "dev", dev], check=False).stdout
    m = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return m.group(1) if m else None
