"""Helpers for the rvs end-to-end tests (Python 3.11 stdlib only).

Everything runs through `ip netns exec NS ...`: the test process itself stays
in the root namespace. The lab topology comes from deploy/topology.sh.

Environment knobs:
  RVSD=/path/to/rvsd      binary to test (default: target/release/rvsd)
  RVS_E2E_KEEP=1          leave the topology up after the suite
  RVS_E2E_VERBOSE=1       echo every command
"""
from __future__ import annotations

import copy
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

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO_ROOT / "deploy" / "topology.sh"
RVSD = Path(os.environ.get("RVSD", REPO_ROOT / "target" / "release" / "rvsd"))
VERBOSE = os.environ.get("RVS_E2E_VERBOSE") == "1"

NS_CLIENT = "rvs-client"
NS_DIR = "rvs-dir"
CLIENT_IP = "10.0.0.2"
DR_VIP = "10.0.0.100"
NAT_VIP = "10.0.0.101"
DIR_IPS = ("10.0.0.1", "10.1.0.1")
API = "http://127.0.0.1:9090"


def real_ns(n: int) -> str:
    return f"rvs-rs{n}"


def real_ip(n: int) -> str:
    return f"10.1.0.1{n}"


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

def run(cmd: list[str], *, check: bool = True, timeout: float = 60,
        input: str | bytes | None = None, text: bool = True) -> subprocess.CompletedProcess:
    """Run a command, capturing stdout/stderr; raise with both on failure."""
    if VERBOSE:
        print("+", shlex.join(cmd), file=sys.stderr)
    cp = subprocess.run(cmd, input=input, capture_output=True, text=text, timeout=timeout)
    if check and cp.returncode != 0:
        raise RuntimeError(f"command failed (rc={cp.returncode}): {shlex.join(cmd)}\n"
                           f"stdout: {cp.stdout!r}\nstderr: {cp.stderr!r}")
    return cp


def nsx(ns: str, cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command inside network namespace `ns`."""
    return run(["ip", "netns", "exec", ns, *cmd], **kw)


def sh(ns: str, script: str, **kw) -> subprocess.CompletedProcess:
    """Run a shell snippet inside network namespace `ns`."""
    return nsx(ns, ["sh", "-c", script], **kw)


def topology(*args: str) -> None:
    run(["bash", str(TOPOLOGY), *args], timeout=120)


def mac_of(ns: str, ifname: str) -> str:
    out = nsx(ns, ["ip", "-j", "link", "show", "dev", ifname]).stdout
    return json.loads(out)[0]["address"].lower()


def neighbour(ns: str, ip: str, dev: str = "eth0") -> dict | None:
    """The kernel neighbour entry for `ip` in `ns` (or None)."""
    out = nsx(ns, ["ip", "-j", "neigh", "show", ip, "dev", dev]).stdout
    entries = json.loads(out or "[]")
    return entries[0] if entries else None


def wait_for(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `pred()` until it returns a truthy value; return it or raise."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


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


def lab_config(services: list[dict] | None = None) -> dict:
    return {
        "eal": ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "rvs-e2e"],
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


def api(method: str, path: str, body=None, *, raw: str | None = None,
        timeout: float = 10) -> ApiResponse:
    """Call rvsd's API. `body` is JSON-encoded; `raw` is sent verbatim."""
    cmd = ["curl", "-s", "-S", "--max-time", str(timeout), "-X", method,
           "-o", "-", "-w", "\n%{http_code}"]
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    cmd.append(API + path)
    cp = nsx(NS_DIR, cmd, check=False, input=data, timeout=timeout + 5)
    text, _, code = cp.stdout.rpartition("\n")
    try:
        status = int(code)
    except ValueError:
        status = 0
    if cp.returncode != 0 and status == 0:
        raise RuntimeError(f"API {method} {path}: curl rc={cp.returncode}: {cp.stderr.strip()}")
    return ApiResponse(status, text)


def service_path(svc: dict) -> str:
    return f"/api/v1/services/{svc['protocol']}/{svc['vip']}/{svc['port']}"


# ---------------------------------------------------------------------------
# rvsd process
# ---------------------------------------------------------------------------

class Rvsd:
    """An rvsd started in rvs-dir with a config dict; logs to a temp file."""

    def __init__(self, config: dict, ready_timeout: float = 60):
        self.config = config
        self.tmp = tempfile.TemporaryDirectory(prefix="rvs-e2e-")
        self.config_path = Path(self.tmp.name) / "rvsd.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.log_path = Path(self.tmp.name) / "rvsd.log"
        self.proc: subprocess.Popen | None = None
        self.ready_timeout = ready_timeout

    def start(self) -> "Rvsd":
        if not RVSD.exists():
            raise RuntimeError(f"rvsd binary not found at {RVSD} (cargo build --release?)")
        # Nothing may linger from an earlier run (EAL lock, API port).
        leftovers = run(["ip", "netns", "pids", NS_DIR]).stdout.split()
        if leftovers:
            raise RuntimeError(f"processes still running in {NS_DIR}: {leftovers}")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", NS_DIR, str(RVSD), "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            self.wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rvsd exited with {self.proc.returncode} during start-up\n"
                                   + self.log_text())
            try:
                if api("GET", "/api/v1/status", timeout=2).status == 200:
                    return
            except RuntimeError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"rvsd API not up after {self.ready_timeout}s\n" + self.log_text())
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                print("rvsd ignored SIGTERM for 10 s; killing", file=sys.stderr)
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log_text(self, tail: int = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no rvsd log)"
        return (f"---- rvsd log ({self.log_path}, last {tail} lines) ----\n"
                + "\n".join(lines[-tail:]) + "\n---- end of rvsd log ----")

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
