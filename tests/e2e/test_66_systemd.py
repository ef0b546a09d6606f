"""rvsd.service as packaged, under a real, booted systemd (issue 12).

This machine's PID 1 is not systemd (nor need CI's be), so the suite boots
one: deploy/systemd-container.sh builds a Debian root filesystem (mmdebstrap,
minbase + systemd + the package's DPDK runtime dependencies, cached in
/var/cache/rvs/systemd-root) and boots it with `systemd-nspawn --boot`: a
real systemd as PID 1 of the container, with journald and dbus. The package
that deploy/package.sh built (target/debian/rvs_*.deb) is installed inside
with apt-get, and rvsd runs under the unit exactly as packaged (no drop-in:
checked), with an af_packet port on the container's end (`host0`) of a veth
whose other end is in a network namespace of this suite, a TAP exception
path, a VRRP instance, and DPDK memory as labutil decides (hugepages or
--no-huge) but hugepages file-backed on hugetlbfs as the packaged config has
them, not --in-memory. Checked with systemctl, journalctl and curl inside
the container, and from the far end of the veth:

- `systemctl start` returns once rvsd sent READY=1: the API answers at once,
  VRRP is past INIT, the port answers a ping (af_packet in, TAP to the
  kernel and back out), and the unit's sandboxing (ProtectSystem,
  NoNewPrivileges, seccomp, ...) is in force on the running rvsd, which
  logged no warning.
- `systemctl reload`: a valid changed file is applied by the same process;
  an invalid one changes nothing and its error reaches journald as an error
  (`journalctl -p warning`).
- `systemctl kill -s USR1/USR2` write the dumps in /run/rvsd.
- A stuck worker (its thread stopped from the host with ptrace) stops the
  watchdog pings: systemd kills rvsd with result 'watchdog' and restarts it.
- `systemctl stop`: the VRRP master resigns (a priority-0 advert reaches the
  far end) and rvsd exits 0.

systemd-nspawn itself works on this machine although its PID 1 is not
systemd: with --register=no --keep-unit it needs no machined or system bus.
Container artefacts, not the unit's: nspawn hides /sys/module, which DPDK's
EAL needs ("Cannot init VFIO"), so the container gets it read-only
(--bind-ro); where the host holds back CAP_SYS_RESOURCE (this VM does),
systemd clamps LimitMEMLOCK=/LimitNOFILE= to the inherited hard limits. PCI
and VFIO ports cannot be tried here (no device to give the container).

Skipped only without systemd-nspawn or mmdebstrap outside CI (deploy/setup.sh
installs them; under CI=true their absence fails), or with RVS_NO_PACKAGE=1
as test_62. About 30 s with the root filesystem cached; the first run
builds it (80 s here).
"""
import ctypes
import json
import os
import subprocess
import sys
import time
import unittest
from pathlib import Path

import labutil as lab

SCRIPT = lab.REPO_ROOT / "deploy" / "systemd-container.sh"
UNIT = lab.REPO_ROOT / "deploy" / "systemd" / "rvsd.service"
NAME = "rvs-sd"                 # the container, and the network namespace of the veth's far end
FAR_END = f"ve-{NAME}"          # systemd-nspawn's name for the host's end of the veth
FAR_IP, PORT_IP, VIP = "10.0.0.2", "10.0.0.1", "10.0.0.100"
API = "http://127.0.0.1:9090"

DR_80 = lab.service("tcp", VIP, 80, "rr", "dr", [{"address": "10.0.0.11", "weight": 1},
                                                 {"address": "10.0.0.12", "weight": 1}])
DR_8080 = lab.service("tcp", VIP, 8080, "wrr", "dr", [{"address": "10.0.0.11", "weight": 3}])

# ptrace requests (linux/ptrace.h) and waitpid's __WALL
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000


def eal() -> list[str]:
    """labutil's choice of hugepages or --no-huge, but hugepages the way the
    packaged config uses them: files on hugetlbfs (/dev/hugepages, which the
    container's systemd mounts) and EAL's runtime files in the unit's
    RuntimeDirectory, not --in-memory, so that the sandbox meets them."""
    return [a for a in lab.eal_args("rvs-sd") if a != "--in-memory"]


def hugepages() -> bool:
    return "--no-huge" not in eal()


def rvsd_config(*extra_services: dict) -> dict:
    return {
        "eal": eal(),
        "main_lcore": 0,
        "workers": [1],
        "mbufs": 8191,
        "idle_sleep_us": 50,
        "api": {"listen": "127.0.0.1:9090"},
        "ports": [{"name": "lan0", "device": "net_af_packet0,iface=host0", "addresses": [f"{PORT_IP}/24"],
                   "tap": "rvs0"}],
        "services": [DR_80, *extra_services],
        "vrrp": {"instances": [{"name": "VI_1", "virtual_router_id": 51, "interface": "lan0", "priority": 150,
                                "advert_int": 1, "virtual_ipaddress": [VIP]}]},
    }


def container(*args: str, check: bool = True, timeout: float = 60, input: str | None = None):
    return lab.run(["bash", str(SCRIPT), *args], check=check, timeout=timeout, input=input)


def inside(*cmd: str, check: bool = True, timeout: float = 60, input: str | None = None):
    """A command in the container (its namespaces, a clean environment)."""
    return container("exec", NAME, *cmd, check=check, timeout=timeout, input=input)


def show(*props: str) -> dict[str, str]:
    out = inside("systemctl", "show", "rvsd", "-p", ",".join(props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def api(path: str) -> tuple[int, str]:
    """(HTTP status, body) of GET `path` on rvsd's API, by curl inside the container."""
    cp = inside("curl", "-s", "-S", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", API + path, check=False)
    body, _, code = cp.stdout.rpartition("\n")
    return (int(code) if code.isdigit() else 0), body


def write_config(cfg: dict) -> None:
    # `cat >` keeps the packaged file's mode (0600) and owner.
    inside("sh", "-c", "cat > /etc/rvs/rvsd.json", input=json.dumps(cfg, indent=2))


def journal_cursor() -> str:
    out = inside("journalctl", "--no-pager", "-n", "1", "-o", "json").stdout
    return json.loads(out.splitlines()[-1])["__CURSOR"]


def journal(after: str, *args: str) -> list[dict]:
    """The journal entries after cursor `after` (journalctl -o json, filtered by `args`).
    (--cursor, less the cursor's own entry: journalctl 252's --after-cursor
    finds nothing when the cursor's entry does not match a -p filter.)"""
    out = inside("journalctl", "--no-pager", "-o", "json", "--cursor", after, *args).stdout
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    entries = [e for e in entries if e.get("__CURSOR") != after]
    for e in entries:
        if isinstance(e.get("MESSAGE"), list):  # journalctl's form of a non-UTF-8 message
            e["MESSAGE"] = bytes(e["MESSAGE"]).decode(errors="replace")
        e.setdefault("MESSAGE", "")
    return entries


def rvsd_own(entry: dict) -> bool:
    """A line rvsd wrote to stderr (not systemd's, not DPDK's syslog copy)."""
    return entry.get("SYSLOG_IDENTIFIER") == "rvsd" and entry.get("_TRANSPORT") == "stdout"


def host_pid(ns_pid: int) -> int:
    """The host's PID of the container's process `ns_pid`."""
    leader = int(container("leader", NAME).stdout.split()[0])
    pidns = os.readlink(f"/proc/{leader}/ns/pid")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.readlink(d / "ns" / "pid") != pidns:
                continue
            nspid = next(line for line in (d / "status").read_text().splitlines() if line.startswith("NSpid:"))
        except (OSError, StopIteration):
            continue
        if int(nspid.split()[-1]) == ns_pid:
            return int(d.name)
    raise AssertionError(f"no host process for the container's PID {ns_pid}")


def vrrp_states() -> dict[str, str]:
    status, body = api("/api/v1/ha")
    if status != 200:
        return {}
    return {i["instance"]: str(i["state"]).upper() for i in json.loads(body).get("vrrp", [])}


@unittest.skipIf(os.environ.get("RVS_NO_PACKAGE") == "1", "RVS_NO_PACKAGE=1")
class SystemdUnitTests(unittest.TestCase):
    """One container for the suite; the tests run in order (start, reload,
    signals, watchdog, stop), each starting rvsd again if an earlier one
    left it stopped."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (systemd-nspawn, network namespaces)")
        tools = container("check", check=False)
        if tools.returncode != 0:
            if os.environ.get("CI"):
                raise AssertionError(f"CI must run this suite: {tools.stderr.strip()}")
            raise unittest.SkipTest(tools.stderr.strip())
        debs = sorted((lab.REPO_ROOT / "target" / "debian").glob("rvs_*.deb"), key=lambda p: p.stat().st_mtime)
        if not debs:
            raise AssertionError("no package in target/debian: run `bash deploy/package.sh` (deploy/test.sh does)")
        cls.addClassCleanup(container, "stop", NAME, timeout=120)
        started = time.monotonic()
        booted = container("boot", NAME, str(debs[-1]), timeout=600)
        print("\n" + booted.stderr.strip(), file=sys.stderr)
        lab.figure(f"container ready with {debs[-1].name} installed in {time.monotonic() - started:.1f} s "
                   "(including the root filesystem when it was built)")
        lab.run(["ip", "-n", NAME, "addr", "add", f"{FAR_IP}/24", "dev", FAR_END])
        inside("ip", "link", "set", "host0", "up")
        write_config(rvsd_config())

    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            log = inside("journalctl", "--no-pager", "-u", "rvsd", "-n", "60", check=False)
            print(f"\n[{self.id()} failed] journalctl -u rvsd:\n{log.stdout}{log.stderr}", file=sys.stderr)
        return out

    def ensure_running(self) -> None:
        """rvsd active with the base config (an earlier test may have failed half-way)."""
        if inside("systemctl", "is-active", "rvsd", check=False).stdout.strip() != "active":
            write_config(rvsd_config())
            inside("systemctl", "reset-failed", "rvsd", check=False)
            inside("systemctl", "start", "rvsd", timeout=150)

    def test_1_start_returns_once_ready_under_the_packaged_sandbox(self):
        unit = inside("systemctl", "show", "rvsd", "-p", "FragmentPath", "-p", "DropInPaths").stdout
        props = dict(line.split("=", 1) for line in unit.splitlines())
        self.assertEqual(props["DropInPaths"], "", "the unit runs as packaged, without drop-ins")
        self.assertEqual(inside("cat", props["FragmentPath"]).stdout, UNIT.read_text(),
                         "the installed unit is deploy/systemd/rvsd.service")

        cursor = journal_cursor()
        started = time.monotonic()
        inside("systemctl", "start", "rvsd", timeout=150)
        elapsed = time.monotonic() - started
        # No polling: Type=notify returns only after READY=1, which rvsd sends
        # once the API is bound, the ports are up and VRRP has started.
        status, body = api("/api/v1/status")
        self.assertEqual(status, 200, f"the API did not answer right after `systemctl start`: {body}")
        self.assertEqual(json.loads(body)["services"], 1, body)
        self.assertIn(vrrp_states().get("VI_1"), ("BACKUP", "MASTER"), "VRRP not initialised at READY")
        self.assertEqual(inside("systemctl", "is-active", "rvsd", check=False).stdout.strip(), "active")
        props = show("MainPID", "NRestarts", "WatchdogUSec", "StatusText", "Type", "NotifyAccess")
        self.assertGreater(int(props["MainPID"]), 1, props)
        self.assertEqual((props["Type"], props["NotifyAccess"], props["NRestarts"]), ("notify", "main", "0"), props)
        self.assertEqual(props["WatchdogUSec"], "10s", props)
        self.assertRegex(props["StatusText"], r"^serving: 1 ports, 1 workers, REST API on 127\.0\.0\.1:9090", props)
        self.assertEqual(inside("cat", "/run/rvsd/rvsd.pid").stdout.strip(), props["MainPID"])
        if hugepages():
            # EAL's files: the primary's lock in $RUNTIME_DIRECTORY/dpdk, the
            # memory on hugetlbfs.
            self.assertEqual(inside("test", "-f", "/run/rvsd/dpdk/rvs-sd/config", check=False).returncode, 0,
                             inside("find", "/run/rvsd", check=False).stdout)
            pages = inside("sh", "-c", "ls /dev/hugepages | grep -c '^rvs-sdmap_'", check=False).stdout.strip()
            self.assertGreater(int(pages or 0), 0, "no hugepage files of rvsd in /dev/hugepages")

        # The port works: the far end's ping comes in through af_packet, goes
        # to the kernel through the TAP and its answer back out.
        ping = lab.run(["ip", "netns", "exec", NAME, "ping", "-c", "3", "-i", "0.3", "-W", "2", PORT_IP], check=False)
        self.assertEqual(ping.returncode, 0, ping.stdout + ping.stderr)

        # The sandbox is in force on the running rvsd (the host's view of it).
        pid = host_pid(int(props["MainPID"]))
        mounts = {}
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
            fields = line.split()
            mounts[fields[4]] = fields[5].split(",")
        for path, mode in (("/usr", "ro"), ("/boot", "ro"), ("/etc", "ro"), ("/etc/rvs", "rw"), ("/tmp", "rw")):
            with self.subTest(path=path):
                self.assertIn(path, mounts, f"no mount of {path} in rvsd's namespace")
                self.assertIn(mode, mounts[path])
        status_lines = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        self.assertEqual(status_lines["NoNewPrivs"].strip(), "1")
        self.assertEqual(status_lines["Seccomp"].strip(), "2", "SystemCallArchitectures/RestrictAddressFamilies filter")
        own_warnings = [e["MESSAGE"] for e in journal(cursor, "-u", "rvsd", "-p", "warning")
                        if rvsd_own(e) and not e["MESSAGE"].startswith("dpdk: ")]
        self.assertEqual(own_warnings, [], "rvsd warned at start under the unit's sandbox")
        # DPDK's own log goes through rvsd's logger (rte_openlog_stream): each
        # line once, on rvsd's stream, with DPDK's severity (EAL's "Detected
        # CPU lcores" is INFO), not to stdout and again to syslog.
        entries = journal(cursor, "-u", "rvsd")
        dpdk = [e for e in entries if "EAL: " in e["MESSAGE"] or e["MESSAGE"].startswith("dpdk: ")]
        self.assertTrue(dpdk, "no DPDK line in the journal")
        self.assertEqual([e["MESSAGE"] for e in dpdk if not rvsd_own(e)], [], "DPDK lines outside rvsd's stream (syslog?)")
        self.assertTrue(all(e["MESSAGE"].startswith("dpdk: ") for e in dpdk), [e["MESSAGE"] for e in dpdk])
        detected = [e for e in dpdk if "EAL: Detected CPU lcores" in e["MESSAGE"]]
        self.assertEqual(len(detected), 1, [e["MESSAGE"] for e in dpdk])
        self.assertEqual(detected[0]["PRIORITY"], "6", detected[0])
        self.assertFalse(any(" INFO " in e["MESSAGE"] for e in entries if rvsd_own(e)), "the level is repeated in the text")
        lab.figure(f"`systemctl start rvsd` returned after {elapsed:.2f} s (READY=1), the API answering at once")

    def test_2_reload_applies_a_valid_file_and_refuses_an_invalid_one(self):
        self.ensure_running()
        pid = show("MainPID")["MainPID"]
        write_config(rvsd_config(DR_8080))
        inside("systemctl", "reload", "rvsd")
        path = f"/api/v1/services/tcp/{VIP}/8080"
        lab.wait_for(lambda: api(path)[0] == 200, 20, interval=0.2, what="the reloaded service in the API")
        self.assertEqual(show("MainPID", "NRestarts"), {"MainPID": pid, "NRestarts": "0"})

        cursor = journal_cursor()
        bad = json.loads(json.dumps(DR_8080))
        bad["reals"][0]["weight"] = 70000
        write_config(rvsd_config(bad))
        self.addCleanup(write_config, rvsd_config(DR_8080))
        inside("systemctl", "reload", "rvsd")
        field = "services[1].reals[0].weight"

        def refused():
            return [e for e in journal(cursor, "-u", "rvsd", "-p", "warning") if rvsd_own(e) and field in e["MESSAGE"]]
        errors = lab.wait_for(refused, 20, interval=0.2, what="the refused reload in journalctl -p warning")
        self.assertEqual(errors[0]["PRIORITY"], "3", errors[0])  # journald filed it as an error
        self.assertIn("70000 is out of range", errors[0]["MESSAGE"])
        # Nothing changed, the same process serves.
        status, body = api(path)
        self.assertEqual(status, 200, body)
        self.assertEqual([r["weight"] for r in json.loads(body)["reals"]], [3], body)
        self.assertEqual(show("MainPID", "ActiveState"), {"MainPID": pid, "ActiveState": "active"})

    def test_3_usr1_and_usr2_write_the_dumps_in_run_rvsd(self):
        self.ensure_running()
        inside("rm", "-f", "/run/rvsd/rvsd.data", "/run/rvsd/rvsd.stats")
        for signal, name in (("USR1", "rvsd.data"), ("USR2", "rvsd.stats")):
            with self.subTest(signal=signal):
                inside("systemctl", "kill", "-s", signal, "rvsd")
                lab.wait_for(lambda: inside("test", "-s", f"/run/rvsd/{name}", check=False).returncode == 0, 10,
                             interval=0.1, what=f"/run/rvsd/{name}")
        data = json.loads(inside("cat", "/run/rvsd/rvsd.data").stdout)
        served = {(s["vip"], s["port"]) for s in data["services"]}
        running = {(s["vip"], s["port"]) for s in json.loads(api("/api/v1/services")[1])}
        self.assertEqual(served, running, data)
        self.assertTrue(inside("cat", "/run/rvsd/rvsd.stats").stdout.strip())
        self.assertEqual(show("ActiveState")["ActiveState"], "active")

    def test_4_a_stuck_worker_gets_rvsd_restarted_by_the_watchdog(self):
        self.ensure_running()
        before = show("MainPID", "NRestarts")
        pid = host_pid(int(before["MainPID"]))
        tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()
                if (t / "comm").read_text().strip().startswith("rte-worker")]
        self.assertEqual(len(tids), 1, "one worker thread (lcore 1)")
        cursor = journal_cursor()
        # Stop that one thread (ptrace: nothing else of rvsd stops).
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.assertEqual(libc.ptrace(PTRACE_SEIZE, tids[0], None, None), 0, os.strerror(ctypes.get_errno()))
        self.addCleanup(libc.ptrace, PTRACE_DETACH, tids[0], None, None)
        self.assertEqual(libc.ptrace(PTRACE_INTERRUPT, tids[0], None, None), 0)
        os.waitpid(tids[0], WALL)
        frozen = time.monotonic()
        # This process is the stopped thread's tracer: it must reap the thread
        # when systemd's SIGABRT ends rvsd, or rvsd cannot finish dying.
        ended = None
        while time.monotonic() < frozen + 60:
            try:
                tid, status = os.waitpid(tids[0], WALL | os.WNOHANG)
            except ChildProcessError:
                tid, status = tids[0], 0
            if tid and os.WIFSTOPPED(status):
                # A signal stopped at its tracer: hand it on (SIGABRT kills).
                libc.ptrace(PTRACE_DETACH, tids[0], None, ctypes.c_void_p(os.WSTOPSIG(status)))
            elif tid:
                ended = time.monotonic()
                break
            time.sleep(0.05)
        self.assertIsNotNone(ended, "rvsd was not killed within 60 s of its worker stopping")
        lab.wait_for(lambda: show("NRestarts", "ActiveState") == {"NRestarts": str(int(before["NRestarts"]) + 1),
                                                                   "ActiveState": "active"},
                     60, interval=0.2, what="rvsd restarted by systemd")
        back = time.monotonic()
        after = show("MainPID", "Result")
        self.assertNotEqual(after["MainPID"], before["MainPID"])
        self.assertEqual(api("/api/v1/status")[0], 200)
        entries = journal(cursor, "-u", "rvsd")
        messages = [e["MESSAGE"] for e in entries]
        self.assertTrue(any("Watchdog timeout" in m for m in messages), messages)
        self.assertTrue(any("Failed with result 'watchdog'" in m for m in messages), messages)
        stalled = [e for e in entries if rvsd_own(e) and "a worker made no progress" in e["MESSAGE"]]
        self.assertTrue(stalled and stalled[0]["PRIORITY"] == "3", messages)
        # The pings stop at most WatchdogSec/2 after the last one; systemd waits WatchdogSec.
        self.assertLess(ended - frozen, 30, "killed too late for WatchdogSec=10s")
        self.assertGreater(ended - frozen, 4, "killed sooner than the watchdog could have fired")
        lab.figure(f"stuck worker: rvsd killed by the watchdog {ended - frozen:.1f} s after the worker stopped, "
                   f"active again {back - ended:.1f} s later (RestartSec=2s)")

    def test_5_stop_resigns_vrrp_and_exits_cleanly(self):
        self.ensure_running()
        lab.wait_for(lambda: vrrp_states().get("VI_1") == "MASTER", 15, interval=0.2, what="VI_1 MASTER")
        # A priority-0 advert (VRRP's priority byte: IP header + 2) at the far end.
        dump = subprocess.Popen(["ip", "netns", "exec", NAME, "tcpdump", "-n", "-l", "-c", "1", "-i", FAR_END,
                                 "vrrp and ip[22] = 0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lab.stop_process, dump, 5)
        banner = [dump.stderr.readline() for _ in range(2)]  # "verbose output suppressed...", "listening on..."
        self.assertTrue(any("listening on" in line for line in banner), banner)
        cursor = journal_cursor()
        inside("systemctl", "stop", "rvsd", timeout=60)
        self.assertEqual(inside("systemctl", "is-active", "rvsd", check=False).stdout.strip(), "inactive")
        entries = journal(cursor, "-u", "rvsd")
        messages = [e["MESSAGE"] for e in entries]
        # A non-zero exit would be "Main process exited, code=exited, status=N" with EXIT_STATUS.
        self.assertTrue(any("Deactivated successfully" in m for m in messages), messages)
        self.assertEqual([e for e in entries if "EXIT_STATUS" in e or "EXIT_CODE" in e], [], messages)
        try:
            out, _ = dump.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out = ""
        self.assertRegex(out, r"vrid 51, prio 0", "no priority-0 advert: the master did not resign at stop")
        self.assertNotEqual(inside("test", "-e", "/run/rvsd", check=False).returncode, 0,
                            "RuntimeDirectory=rvsd removed at stop")


if __name__ == "__main__":
    unittest.main()
