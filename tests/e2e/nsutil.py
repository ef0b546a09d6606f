"""Network-namespace helpers shared by the end-to-end labs (Python 3.11
stdlib only): commands inside a namespace, polling, addresses, tcpdump's ARP
lines, and Debian's keepalived as a VRRP peer. labutil.py (deploy/topology.sh),
halab.py (deploy/ha-topology.sh) and vrrp_lab.py (its own rvsv-* namespaces)
build on these.

Environment: RVS_E2E_VERBOSE=1 echoes every command.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

VERBOSE = os.environ.get("RVS_E2E_VERBOSE") == "1"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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


def stop_process(proc: subprocess.Popen | None, timeout: float,
                 what: str | None = None) -> int | None:
    """SIGTERM `proc` if it still runs and wait `timeout` s; then SIGKILL it
    (saying so when `what` names it). Returns its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if what:
                log(f"{what} ignored SIGTERM for {timeout:g} s; killing")
            proc.kill()
            proc.wait(10)
    return proc.returncode


# ---------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------

def mac_of(ns: str, ifname: str = "eth0") -> str:
    out = nsx(ns, ["ip", "-j", "link", "show", "dev", ifname]).stdout
    return json.loads(out)[0]["address"].lower()


def neighbour(ns: str, ip: str, dev: str = "eth0") -> dict | None:
    """The kernel neighbour entry for `ip` in `ns` (or None)."""
    out = nsx(ns, ["ip", "-j", "neigh", "show", ip, "dev", dev]).stdout
    entries = json.loads(out or "[]")
    return entries[0] if entries else None


def has_vip(ns: str, vip: str, dev: str = "eth0") -> bool:
    """Does `dev` in `ns` hold the address `vip`?"""
    out = nsx(ns, ["ip", "-j", "-4", "addr", "show", "dev", dev]).stdout
    return any(a.get("local") == vip for link in json.loads(out or "[]")
               for a in link.get("addr_info", []))


def del_vip(ns: str, vip: str, dev: str = "eth0") -> None:
    nsx(ns, ["ip", "addr", "del", f"{vip}/32", "dev", dev], check=False)


# ---------------------------------------------------------------------------
# ARP as tcpdump prints it
# ---------------------------------------------------------------------------

class ArpLines:
    """tcpdump -e arp on NS:IFNAME; its lines are collected as they come, as
    (monotonic time, line) in `lines`."""

    def __init__(self, ns: str, ifname: str = "eth0"):
        self.ns, self.ifname = ns, ifname
        self.lines: list[tuple[float, str]] = []
        self.proc: subprocess.Popen | None = None

    def start(self):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "tcpdump", "-i", self.ifname, "-n", "-e", "-l",
             "--immediate-mode", "arp"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def err_reader():
            for line in self.proc.stderr:
                if "listening on" in line:
                    ready.set()

        def out_reader():
            for line in self.proc.stdout:
                self.lines.append((time.monotonic(), line.strip()))

        threading.Thread(target=err_reader, daemon=True).start()
        threading.Thread(target=out_reader, daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("tcpdump did not start")
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 5)
            for f in (self.proc.stdout, self.proc.stderr):
                if f:
                    f.close()


# ---------------------------------------------------------------------------
# keepalived (Debian's package) as a VRRP peer
# ---------------------------------------------------------------------------

def ensure_keepalived() -> str:
    """Installs Debian's keepalived when it is missing; returns its path."""
    path = shutil.which("keepalived") or ("/usr/sbin/keepalived"
                                          if Path("/usr/sbin/keepalived").exists() else None)
    if path:
        return path
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("installing keepalived (apt-get)")
    cp = subprocess.run(["apt-get", "install", "-y", "keepalived"], env=env, capture_output=True,
                        timeout=600)
    if cp.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "keepalived"], env=env, check=True,
                       capture_output=True, timeout=600)
    return shutil.which("keepalived") or "/usr/sbin/keepalived"


class Keepalived:
    """keepalived -n -l (VRRP only, no respawn, no syslog) in namespace `ns`,
    with its config, pid files and log in `directory`; as master it holds
    `vip` on eth0 (stop() removes it there, in case it was killed)."""

    def __init__(self, ns: str, conf: str, directory: Path, binary: str, vip: str):
        self.ns = ns
        self.vip = vip
        self.dir = directory
        self.dir.mkdir(exist_ok=True)
        self.conf = self.dir / "keepalived.conf"
        self.conf.write_text(conf)
        self.pidfile = self.dir / "keepalived.pid"
        self.vrrp_pidfile = self.dir / "vrrp.pid"
        self.logfile = self.dir / "keepalived.log"
        self.binary = binary
        self.proc: subprocess.Popen | None = None

    def start(self):
        self._log = open(self.logfile, "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, self.binary, "-n", "-l", "-D", "-G", "-P", "-R",
             "-f", str(self.conf), "-p", str(self.pidfile), "-r", str(self.vrrp_pidfile)],
            stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(self.vrrp_pid, 10, what=f"keepalived VRRP process in {self.ns}")
        return self

    def vrrp_pid(self) -> int | None:
        try:
            return int(self.vrrp_pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def has_vip(self, vip: str | None = None) -> bool:
        return has_vip(self.ns, vip or self.vip)

    def log_text(self) -> str:
        try:
            return self.logfile.read_text()[-6000:]
        except OSError:
            return ""

    def entered(self, state: str) -> int:
        """How many times the log says it entered `state` (MASTER/BACKUP/FAULT)."""
        return self.log_text().count(f"Entering {state} STATE")

    def _kill_vrrp_child(self) -> None:
        pid = self.vrrp_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def crash(self) -> float:
        """SIGKILL the VRRP process, then the parent (no priority-0 advert);
        returns the monotonic time of the kill."""
        t = time.monotonic()
        self._kill_vrrp_child()
        assert self.proc
        self.proc.kill()
        self.proc.wait(timeout=10)
        return t

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self._kill_vrrp_child()
        if hasattr(self, "_log"):
            self._log.close()
        del_vip(self.ns, self.vip)
