"""rvsd as an appliance (issue 12): signals as Keepalived's, systemd's
notify protocol and watchdog, the pid file, and the operator's config file
kept as the operator made it.

- SIGHUP reloads the config file through the API's validate → diff → apply
  path: a valid change is applied during traffic without losing a
  connection and without rewriting the file; an invalid file or a
  restart-only change applies nothing and rvsd keeps serving.
- SIGUSR1 writes the state dump, SIGUSR2 the statistics dump.
- With $NOTIFY_SOCKET (a real unix datagram socket here, what systemd reads):
  READY=1 only once the API answers, RELOADING=1/READY=1 around a reload,
  STOPPING=1 at the end, and WATCHDOG=1 only while every worker makes
  progress: a worker thread stopped with ptrace (PTRACE_INTERRUPT stops that
  one thread, nothing else) stops the pings; released, they resume.
- --pid-file: written, refuses a second rvsd with a one-line message,
  removed at exit.
- An API change keeps the config file's symlink, mode and owner.
"""
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

import labutil as lab
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)
from labutil import NAT_VIP, NS_CLIENT

NAT_81 = lab.service("tcp", NAT_VIP, 81, "rr", "nat", [lab.real(1, port=80), lab.real(2, port=80)])


def log_size(rvsd: lab.Rvsd) -> int:
    return len(rvsd.log_path.read_text(errors="replace"))


def log_has(rvsd: lab.Rvsd, pattern: str, timeout: float = 10, after: int = 0) -> bool:
    """Whether `pattern` appears in rvsd's log (past offset `after`) within `timeout` s."""
    try:
        lab.wait_for(lambda: re.search(pattern, rvsd.log_path.read_text(errors="replace")[after:]), timeout,
                     interval=0.1, what=pattern)
        return True
    except TimeoutError:
        return False


# A long-lived connection to the :9000 echo service: a line every 50 ms for
# `seconds`, each echoed back; prints {"banner", "sent", "echoed", "error"}.
_HOLD = r"""
import json, socket, sys, time
vip, seconds = sys.argv[1], float(sys.argv[2])
out = {"banner": None, "sent": 0, "echoed": 0, "error": None}
try:
    s = socket.create_connection((vip, 9000), timeout=5)
    f = s.makefile("rb")
    out["banner"] = f.readline().decode().strip()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        line = b"line %d\n" % out["sent"]
        s.sendall(line)
        out["sent"] += 1
        if f.readline() != line:
            out["error"] = "echo mismatch"
            break
        out["echoed"] += 1
        time.sleep(0.05)
except OSError as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


class SignalTests(lab.RvsdTestCase):
    """SIGHUP reload, SIGUSR1/SIGUSR2 dumps, on one rvsd."""

    @classmethod
    def setUpClass(cls):
        unittest.TestCase.setUpClass()
        cls.dumps = tempfile.mkdtemp(prefix="rvs-dumps-")
        cls.rvsd = lab.Rvsd(lab.lab_config(), args=["--dump-dir", cls.dumps])
        cls.addClassCleanup(cls.rvsd.cleanup)
        cls.rvsd.start()

    def config_file(self) -> dict:
        return json.loads(self.rvsd.config_path.read_text())

    def generation(self) -> int:
        return lab.api("GET", "/api/v1/status").json["generation"]

    def test_hup_applies_a_valid_file_during_traffic(self):
        cfg = self.config_file()
        cfg["services"].append(NAT_81)
        for svc in cfg["services"]:
            if svc["vip"] == NAT_VIP and svc["port"] == 80:
                svc["reals"][1]["weight"] = 3
        text = json.dumps(cfg, indent=1)
        self.rvsd.config_path.write_text(text)
        before = os.stat(self.rvsd.config_path)

        hold = subprocess.Popen(["ip", "netns", "exec", NS_CLIENT, "python3", "-c", _HOLD, NAT_VIP, "4"],
                                stdout=subprocess.PIPE, text=True)
        traffic = subprocess.Popen(
            ["ip", "netns", "exec", NS_CLIENT, "sh", "-c",
             f"f=0; for i in $(seq 60); do curl -s --max-time 2 -o /dev/null http://{NAT_VIP}/ || f=$((f+1)); "
             f"sleep 0.05; done; echo $f"], stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        gen = self.generation()
        self.rvsd.proc.send_signal(signal.SIGHUP)
        lab.wait_for(lambda: self.generation() > gen, 10, interval=0.1, what="the reload applied")
        held = json.loads(hold.communicate(timeout=30)[0])
        failed = int(traffic.communicate(timeout=120)[0].strip())

        self.assertEqual(lab.api("GET", lab.service_path(NAT_81)).status, 200, "the new service")
        reals = lab.api("GET", f"/api/v1/services/tcp/{NAT_VIP}/80").json["reals"]
        self.assertEqual(sorted(r["weight"] for r in reals), [1, 3], reals)
        self.assertEqual(lab.tally(lab.http_requests(f"http://{NAT_VIP}:81/", 4)), {"rs1": 2, "rs2": 2})
        self.assertIsNone(held["error"], f"the long-lived connection broke: {held}")
        self.assertEqual(held["echoed"], held["sent"])
        self.assertGreater(held["sent"], 20, held)
        self.assertEqual(failed, 0, "requests failed across the reload")
        after = os.stat(self.rvsd.config_path)
        self.assertEqual(self.rvsd.config_path.read_text(), text, "a reload does not rewrite the file")
        self.assertEqual((before.st_mtime_ns, before.st_ino), (after.st_mtime_ns, after.st_ino))
        self.assertTrue(log_has(self.rvsd, r"reload: Add service tcp/10\.0\.0\.101/81"))
        lab.figure(f"SIGHUP during traffic: {held['sent']} echoes on one connection and 60 requests, none lost")

    def test_hup_with_an_invalid_file_applies_nothing(self):
        good = self.rvsd.config_path.read_text()
        self.addCleanup(self.rvsd.config_path.write_text, good)
        gen = self.generation()
        cases = [
            ("broken JSON", good[: len(good) // 2], r"reload refused, nothing changed: invalid configuration"),
            ("an unknown scheduler", good.replace('"rr"', '"nosuch"', 1), r"reload refused, nothing changed"),
            ("a restart-only field", json.dumps({**json.loads(good), "mbufs": 16383}),
             r"reload refused, nothing changed: mbufs: changing it needs a restart"),
        ]
        for what, text, pattern in cases:
            with self.subTest(what):
                self.rvsd.config_path.write_text(text)
                mark = log_size(self.rvsd)
                self.rvsd.proc.send_signal(signal.SIGHUP)
                self.assertTrue(log_has(self.rvsd, pattern, after=mark),
                                f"{what}: no error logged\n{self.rvsd.log_text(20)}")
                self.assertTrue(self.rvsd.alive(), f"{what}: rvsd died")
                self.assertEqual(self.generation(), gen, f"{what}: something was applied")
                self.assertEqual(lab.tally(lab.http_requests(f"http://{NAT_VIP}/", 2)), {"rs1": 1, "rs2": 1})

    def test_usr1_dumps_the_state_and_usr2_the_statistics(self):
        lab.http_requests(f"http://{NAT_VIP}/", 2)
        data_file, stats_file = Path(self.dumps) / "rvsd.data", Path(self.dumps) / "rvsd.stats"
        self.rvsd.proc.send_signal(signal.SIGUSR1)
        lab.wait_for(data_file.exists, 10, interval=0.1, what="rvsd.data")
        data = json.loads(data_file.read_text())
        services = {(s["vip"], s["port"]) for s in data["services"]}
        self.assertIn((NAT_VIP, 80), services)
        self.assertIn("health", data)
        self.assertEqual(os.stat(data_file).st_mode & 0o777, 0o600)
        self.assertTrue(log_has(self.rvsd, r"state: service tcp 10\.0\.0\.101:80 scheduler rr forward nat"))
        self.assertTrue(log_has(self.rvsd, r"state:   real 10\.1\.0\.11:80 weight \d+ health unchecked"))

        self.rvsd.proc.send_signal(signal.SIGUSR2)
        lab.wait_for(stats_file.exists, 10, interval=0.1, what="rvsd.stats")
        stats = json.loads(stats_file.read_text())
        self.assertIn("dataplane", stats)
        conns = sum(s["conns"] for s in stats["services"])
        self.assertGreaterEqual(conns, 2, stats["services"])
        self.assertTrue(self.rvsd.alive(), "a signal killed rvsd")


class PidFileAndFileTests(unittest.TestCase):
    """--pid-file, and the config file's symlink/mode/owner after API changes."""

    def test_pid_file_refuses_a_second_rvsd_and_goes_at_exit(self):
        tmp = Path(tempfile.mkdtemp(prefix="rvs-pid-"))
        pid_file = tmp / "rvsd.pid"
        first = lab.Rvsd(lab.lab_config(), args=["--pid-file", str(pid_file)])
        self.addCleanup(first.cleanup)
        first.start()
        self.assertEqual(pid_file.read_text(), f"{first.proc.pid}\n")
        cfg = tmp / "other.json"
        cfg.write_text(json.dumps(lab.lab_config()))
        second = subprocess.run(["ip", "netns", "exec", lab.NS_DIR, str(lab.RVSD), "--config", str(cfg),
                                 "--pid-file", str(pid_file)], capture_output=True, text=True, timeout=60)
        self.assertEqual(second.returncode, 1, second.stderr)
        self.assertEqual(second.stderr.strip().splitlines(),
                         [f"rvsd: rvsd already runs with pid {first.proc.pid} (--pid-file {pid_file}); stop it first"])
        self.assertEqual(first.stop(), 0)
        self.assertFalse(pid_file.exists(), "pid file left behind")

    def test_api_changes_keep_symlink_mode_and_owner(self):
        tmp = Path(tempfile.mkdtemp(prefix="rvs-file-"))
        (tmp / "etc").mkdir()
        target = tmp / "etc" / "rvsd.json"
        target.write_text(json.dumps(lab.lab_config(), indent=2))
        os.chmod(target, 0o640)
        os.chown(target, 65534, 65534)
        link = tmp / "rvsd.json"
        link.symlink_to("etc/rvsd.json")
        r = lab.Rvsd(None, config_path=link)
        self.addCleanup(r.cleanup)
        r.start()
        resp = lab.api("PUT", f"/api/v1/services/tcp/{NAT_VIP}/80/reals/10.1.0.12/80",
                       {"address": "10.1.0.12", "weight": 5})
        self.assertEqual(resp.status, 200, resp.text)
        self.assertTrue(link.is_symlink(), "the symlink was replaced by a file")
        st = os.stat(target)
        self.assertEqual((st.st_mode & 0o777, st.st_uid, st.st_gid), (0o640, 65534, 65534))
        weights = [r["weight"] for s in json.loads(target.read_text())["services"]
                   if s["vip"] == NAT_VIP and s["port"] == 80 for r in s["reals"]]
        self.assertEqual(weights, [1, 5], "the change reached the file behind the link")
        self.assertEqual(sorted(p.name for p in (tmp / "etc").iterdir()), ["rvsd.json"], "temporary file left")


class StartupErrorTests(unittest.TestCase):
    """A start-up failure is one line naming its cause (exit 3), before EAL
    prints anything; --check-config finds the same."""

    def rvsd(self, cfg: dict, *extra: str, user: str | None = None) -> subprocess.CompletedProcess:
        tmp = Path(tempfile.mkdtemp(prefix="rvs-start-"))
        os.chmod(tmp, 0o755)
        path = tmp / "rvsd.json"
        path.write_text(json.dumps(cfg))
        os.chmod(path, 0o644)
        cmd = ["ip", "netns", "exec", lab.NS_DIR]
        if user:
            cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        cmd += [str(lab.RVSD), "--config", str(path), *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    def assert_one_line(self, cp: subprocess.CompletedProcess, expected: str):
        self.assertEqual(cp.returncode, 3, cp.stderr)
        lines = [line for line in cp.stderr.splitlines() if line.strip()]
        self.assertEqual(lines, [expected], cp.stderr)

    def test_each_cause_in_one_line(self):
        cases = [
            ("missing interface", {"ports": [{"name": "lan0", "device": "net_af_packet0,iface=nosuch0",
                                              "addresses": ["10.0.0.1/24"]}]},
             "rvsd: ports[0].device: interface nosuch0 does not exist (in this network namespace); see `ip link`"),
            ("lcore not on this machine", {"workers": [63]},
             f"rvsd: workers[0]: lcore 63 is not a CPU of this machine (online CPUs: "
             f"{Path('/sys/devices/system/cpu/online').read_text().strip()})"),
            ("PCI device missing", {"ports": [{"name": "lan0", "device": "0000:7f:1f.7", "addresses": ["10.0.0.1/24"]}]},
             "rvsd: ports[0].device: PCI device 0000:7f:1f.7 not found (see `dpdk-devbind.py --status`)"),
        ]
        # A DPDK runtime library (a driver plugin) missing: Debian's package named.
        pmds = sorted(Path("/usr/lib").glob("*/dpdk/pmds-*"))
        if pmds:
            abi = pmds[0].name.removeprefix("pmds-").split(".")[0]
            cases.append(("DPDK driver missing",
                          {"ports": [{"name": "lan0", "device": "net_nosuchpmd0", "addresses": ["10.0.0.1/24"]}]},
                          f"rvsd: ports[0].device: the DPDK driver librte_net_nosuchpmd is not installed in {pmds[0]}: "
                          f"install Debian's librte-net-nosuchpmd{abi}"))
        for what, change, expected in cases:
            for extra in ((), ("--check-config",)):
                with self.subTest(what, mode=extra):
                    self.assert_one_line(self.rvsd({**lab.lab_config(), **change}, *extra), expected)

    def test_not_root(self):
        cp = self.rvsd(lab.lab_config(), user="65534")
        self.assert_one_line(cp, "rvsd: rvsd must run as root (DPDK maps hugepages and devices, VRRP and the "
                                 "exception path need raw sockets and TAPs)")

    def test_file_prefix_in_use(self):
        # Shared runtime files (no --in-memory, which the lab uses on hugepages):
        # the EAL file prefix is then a lock another process can hold.
        cfg = {**lab.lab_config(), "eal": ["--no-huge", "-m", "256", "--no-pci", "--file-prefix", "rvs-e2e-prefix"]}
        first = lab.Rvsd(cfg)
        self.addCleanup(first.cleanup)
        first.start()
        prefix = cfg["eal"][cfg["eal"].index("--file-prefix") + 1]
        second = {**cfg, "api": {"listen": "127.0.0.1:9091"}}
        self.assert_one_line(self.rvsd(second), f"rvsd: eal: the EAL file prefix \"{prefix}\" is in use by process "
                                                f"{first.proc.pid} (another rvsd or DPDK application): stop it or "
                                                f"set another --file-prefix in eal")
        self.assertEqual(self.rvsd(second, "--check-config").returncode, 0, "--check-config ignores the prefix")


# ptrace requests (linux/ptrace.h)
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000


class Notifications:
    """A unix datagram socket standing where systemd's notify socket would;
    every message received, with its arrival time."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def having(self, field: str, since: float = 0) -> list[float]:
        return [t for t, m in self.messages if t >= since and field in m.split("\n")]

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


class SystemdNotifyTests(unittest.TestCase):
    """Type=notify and WatchdogSec= as systemd runs them (the machine has no
    booted systemd: the notify socket is a real socket of this test)."""

    def setUp(self):
        tmp = Path(tempfile.mkdtemp(prefix="rvs-notify-"))
        self.notes = Notifications(tmp / "notify.sock")
        self.addCleanup(self.notes.close)
        cfg = lab.lab_config()
        self.rvsd = lab.Rvsd(cfg, env={"NOTIFY_SOCKET": str(tmp / "notify.sock"), "WATCHDOG_USEC": "1000000"})
        self.addCleanup(self.rvsd.cleanup)

    def test_ready_reload_watchdog_and_stopping(self):
        started = time.monotonic()
        self.rvsd.proc = None
        # Start without waiting for the API, to see when READY comes.
        threading.Thread(target=self.rvsd.start, daemon=True).start()
        lab.wait_for(lambda: self.notes.having("READY=1"), 60, interval=0.05, what="READY=1")
        ready_at = self.notes.having("READY=1")[0]
        status, _ = lab.curl_api(lab.NS_DIR, "GET", "/api/v1/status", None, timeout=2)
        self.assertEqual(status, 200, "READY=1 came before the API answered")
        lab.figure(f"READY=1 {ready_at - started:.2f} s after the start")

        # Pings every half WatchdogSec (0.5 s) while the workers run.
        time.sleep(2.2)
        pings = self.notes.having("WATCHDOG=1", ready_at)
        self.assertGreaterEqual(len(pings), 3, self.notes.messages)

        # One worker thread stopped: no more pings.
        pid = self.rvsd.proc.pid
        tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()
                if (t / "comm").read_text().strip().startswith("rte-worker")]
        self.assertEqual(len(tids), 1, "one worker thread (lcore 1)")
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.assertEqual(libc.ptrace(PTRACE_SEIZE, tids[0], None, None), 0, os.strerror(ctypes.get_errno()))
        detached = [False]

        def detach():
            if not detached[0]:
                libc.ptrace(PTRACE_DETACH, tids[0], None, None)
                detached[0] = True
        self.addCleanup(detach)
        self.assertEqual(libc.ptrace(PTRACE_INTERRUPT, tids[0], None, None), 0)
        os.waitpid(tids[0], WALL)
        stalled_at = time.monotonic()
        time.sleep(3)
        late = [t for t in self.notes.having("WATCHDOG=1", stalled_at) if t > stalled_at + 1.2]
        self.assertEqual(late, [], "the watchdog was fed while a worker was stuck")
        self.assertTrue(log_has(self.rvsd, r"a worker made no progress: the systemd watchdog is no longer fed"))
        detach()
        released = time.monotonic()
        lab.wait_for(lambda: self.notes.having("WATCHDOG=1", released), 5, interval=0.1, what="pings again")
        lab.figure(f"stuck worker: pings stopped for {released - stalled_at:.1f} s, resumed "
                   f"{self.notes.having('WATCHDOG=1', released)[0] - released:.2f} s after release")

        hup = time.monotonic()
        self.rvsd.proc.send_signal(signal.SIGHUP)
        lab.wait_for(lambda: self.notes.having("READY=1", hup), 10, interval=0.05, what="READY=1 after reload")
        self.assertTrue(self.notes.having("RELOADING=1", hup), self.notes.messages[-5:])
        self.assertLessEqual(self.notes.having("RELOADING=1", hup)[0], self.notes.having("READY=1", hup)[0])

        term = time.monotonic()
        self.assertEqual(self.rvsd.stop(), 0)
        self.assertTrue(self.notes.having("STOPPING=1", term), self.notes.messages[-5:])


if __name__ == "__main__":
    unittest.main()
