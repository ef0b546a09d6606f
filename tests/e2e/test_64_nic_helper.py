"""deploy/rvs-nic, the bare-metal helper (issue 12 "appliance"): hugepages,
NIC binding and a starting config for a machine's NIC.

- `status` runs and shows the hugepage pools as the kernel has them.
- `config IFACE` for a veth in a namespace (no PCI NIC is free here) gives
  the interface's addresses and default route, NUMA-local lcores and an
  af_packet device; `rvsd --check-config` accepts it, and rvsd started from
  the config generated for the lab's dp0 answers on the wire.
- `config PCI` for the machine's own NIC (read only) names the PCI device.
- Unknown PCI addresses and interfaces, a non-root caller, a missing NUMA
  node: one-line errors, exit code 1, nothing printed on stdout.
- `hugepages N` reports what the kernel reserved (the previous value is
  restored afterwards).
- `memory` (what labutil and deploy/lab.sh use) says hugepages exactly when
  enough free pages are mounted.
"""
import json
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import labutil as lab
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)
from nsutil import nsx, run

HELPER = [sys.executable, str(lab.NIC_HELPER)]
NS = "rvs-nic-t"
IFACE = "nic0"
HUGEPAGES_2M_NODE0 = Path("/sys/devices/system/node/node0/hugepages/hugepages-2048kB")
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


def readable_copy() -> Path:
    """deploy/rvs-nic copied where any user can read it: the clone may sit
    below a directory only root may enter (`mktemp -d` makes them 0700)."""
    home = Path(tempfile.mkdtemp(prefix="rvs-nic-"))
    home.chmod(0o755)
    copy = home / "rvs-nic"
    shutil.copyfile(lab.NIC_HELPER, copy)
    copy.chmod(0o755)
    return copy


# The copy an unprivileged caller runs (NicHelperTests.setUpClass makes it).
UNPRIVILEGED_HELPER: Path | None = None


def helper(*args: str, ns: str | None = None, user: int | None = None) -> subprocess.CompletedProcess:
    # An unprivileged caller cannot run root's own Python (Debian's, then),
    # nor read the clone's copy of the helper (a readable copy, then).
    if user is None:
        cmd = [*HELPER, *args]
    else:
        assert UNPRIVILEGED_HELPER is not None, "NicHelperTests.setUpClass makes the readable copy"
        cmd = [SYSTEM_PYTHON, str(UNPRIVILEGED_HELPER), *args]
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, user=user, group=user)


def online_cpus() -> list[int]:
    cpus = []
    for part in Path("/sys/devices/system/cpu/online").read_text().strip().split(","):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def size_label(size_kb: int) -> str:
    """A hugepage size as rvs-nic writes it: "2 MB", "1 GB"."""
    return f"{size_kb // 1048576} GB" if size_kb >= 1048576 else f"{size_kb // 1024} MB"


def machine_pci_nic() -> str | None:
    for dev in sorted(Path("/sys/bus/pci/devices").iterdir()):
        if (dev / "class").read_text().startswith("0x02"):
            return dev.name
    return None


def check_config(config: dict, ns: str | None = None) -> subprocess.CompletedProcess:
    """`rvsd --check-config` on `config`, in namespace `ns` (its pre-flight
    checks look for the port's interface there)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="rvs-nic-") as f:
        json.dump(config, f)
        f.flush()
        where = ["ip", "netns", "exec", ns] if ns else []
        return run([*where, str(lab.RVSD), "--check-config", "--config", f.name], check=False)


class NicHelperTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        run(["ip", "netns", "del", NS], check=False)
        run(["ip", "netns", "add", NS])
        cls.addClassCleanup(run, ["ip", "netns", "del", NS], check=False)
        global UNPRIVILEGED_HELPER
        UNPRIVILEGED_HELPER = readable_copy()
        cls.addClassCleanup(shutil.rmtree, UNPRIVILEGED_HELPER.parent, ignore_errors=True)
        nsx(NS, ["ip", "link", "add", IFACE, "type", "veth", "peer", "name", f"{IFACE}-peer"])
        for name in (IFACE, f"{IFACE}-peer"):
            nsx(NS, ["ip", "link", "set", name, "up"])
        nsx(NS, ["ip", "addr", "add", "10.99.0.2/24", "dev", IFACE])
        nsx(NS, ["ip", "addr", "add", "10.98.0.2/16", "dev", IFACE])
        nsx(NS, ["ip", "route", "add", "default", "via", "10.99.0.1", "dev", IFACE])

    def assert_refused(self, out: subprocess.CompletedProcess, message: str) -> None:
        """Exit code 1, exactly one line on stderr: `rvs-nic: error: <message>`, no stdout."""
        self.assertEqual(out.returncode, 1, out)
        self.assertEqual(out.stdout, "", out)
        self.assertEqual(out.stderr, f"rvs-nic: error: {message}\n")

    def test_status_shows_the_kernels_hugepages(self):
        out = helper("status")
        self.assertEqual(out.returncode, 0, out)
        for heading in ("NICs (PCI network controllers):", "Hugepages:", "CPUs:", "DPDK memory: "):
            self.assertIn(heading, out.stdout)
        for pool in Path("/sys/devices/system/node").glob("node[0-9]*/hugepages/hugepages-*kB"):
            node, size = pool.parent.parent.name, size_label(int(pool.name[10:-2]))
            reserved = (pool / "nr_hugepages").read_text().strip()
            free = (pool / "free_hugepages").read_text().strip()
            self.assertRegex(out.stdout, rf"{node} +{size}: {reserved} reserved, {free} free")
        nic = machine_pci_nic()
        if nic is not None:
            self.assertIn(nic, out.stdout)

    def test_config_for_an_interface_is_accepted_by_rvsd(self):
        out = helper("config", IFACE, ns=NS)
        self.assertEqual(out.returncode, 0, out)
        config = json.loads(out.stdout)
        port = config["ports"][0]
        self.assertEqual(port["device"], f"net_af_packet0,iface={IFACE}")
        self.assertEqual(port["addresses"], ["10.99.0.2/24", "10.98.0.2/16"])
        self.assertEqual(port["tap"], "rvs-lan0")
        self.assertEqual(config["routes"], [{"prefix": "0.0.0.0/0", "via": "10.99.0.1", "port": "lan0"}])
        cpus = online_cpus()
        self.assertIn(config["main_lcore"], cpus)
        self.assertEqual(len(config["workers"]), 1)
        self.assertNotIn(config["main_lcore"], config["workers"])
        self.assertTrue(set(config["workers"]) <= set(cpus), config["workers"])
        if len(cpus) > 2:
            self.assertNotIn(0, config["workers"] + [config["main_lcore"]], "CPU 0 avoided when others exist")
        self.assertIn("--no-pci", config["eal"])
        self.assertEqual(config["eal"][config["eal"].index("--file-prefix") + 1], "rvsd")
        self.assertIn(f"the kernel still holds 10.99.0.2/24, 10.98.0.2/16 on {IFACE}", out.stderr)
        checked = check_config(config, ns=NS)
        self.assertEqual(checked.returncode, 0, checked)

    def test_config_with_more_workers_than_cpus(self):
        cpus = online_cpus()
        out = helper("config", IFACE, "--workers", "2", ns=NS)
        if len(cpus) >= 3:
            self.assertEqual(out.returncode, 0, out)
            config = json.loads(out.stdout)
            self.assertEqual(config["ports"][0]["device"], f"net_af_packet0,iface={IFACE},qpairs=2")
            self.assertEqual(check_config(config, ns=NS).returncode, 0)
        else:
            self.assert_refused(out, f"2 workers asked but only {len(cpus) - 1} CPUs are free on the NIC's node "
                                     f"({','.join(map(str, cpus[1:]))})")

    def test_config_for_the_machines_pci_nic(self):
        nic = machine_pci_nic()
        if nic is None:
            self.skipTest("no PCI network controller on this machine")
        short = nic.removeprefix("0000:")
        out = helper("config", short)
        self.assertEqual(out.returncode, 0, out)
        config = json.loads(out.stdout)
        self.assertEqual(config["ports"][0]["device"], nic)
        self.assertNotIn("--no-pci", config["eal"])
        driver = Path(f"/sys/bus/pci/devices/{nic}/driver").resolve().name
        if driver != "vfio-pci":
            self.assertIn(f"{nic} is bound to {driver}: rvs-nic bind {nic} --persist", out.stderr)
        checked = check_config(config)
        self.assertEqual(checked.returncode, 0, checked)

    def test_refusals_are_one_line(self):
        self.assert_refused(helper("config", "0000:7f:1f.7"),
                            "0000:7f:1f.7: no such PCI device (rvs-nic status lists the NICs)")
        self.assert_refused(helper("config", "nosuch0", ns=NS),
                            "nosuch0: no such network interface or PCI address (rvs-nic status lists the NICs)")
        self.assert_refused(helper("bind", "7f:1f.7"), "0000:7f:1f.7: no such PCI device (rvs-nic status lists the NICs)")
        self.assert_refused(helper("bind", IFACE), f"`{IFACE}` is not a PCI address (domain:bus:slot.function, e.g. 0000:01:00.0)")
        nodes = sorted(int(p.name[4:]) for p in Path("/sys/devices/system/node").glob("node[0-9]*"))
        self.assert_refused(helper("hugepages", "1", "--node", "99"),
                            f"NUMA node 99 does not exist (nodes: {', '.join(map(str, nodes))})")
        sizes = sorted({size_label(int(p.name[10:-2])) for p in Path("/sys/kernel/mm/hugepages").iterdir()})
        self.assert_refused(helper("hugepages", "1", "--size", "3M"),
                            f"this kernel has no 3 MB hugepages (it offers: {', '.join(sizes)})")
        # The message repeats the command as it was run: the readable copy's path.
        self.assert_refused(helper("hugepages", "1", user=NOBODY),
                            f"reserving hugepages needs root; try: sudo {UNPRIVILEGED_HELPER} hugepages 1")
        nic = machine_pci_nic()
        if nic is not None:
            self.assert_refused(helper("bind", nic, user=NOBODY),
                                f"binding a NIC needs root; try: sudo {UNPRIVILEGED_HELPER} bind {nic}")

    def test_hugepages_reports_what_it_reserved(self):
        if not HUGEPAGES_2M_NODE0.exists():
            self.skipTest("no 2 MB hugepages on node 0")
        nr = HUGEPAGES_2M_NODE0 / "nr_hugepages"
        before = int(nr.read_text())

        def restore():
            nr.write_text(f"{before}\n")
            self.assertEqual(int(nr.read_text()), before, "previous hugepage reservation restored")
        self.addCleanup(restore)
        asked = before + 2
        out = helper("hugepages", str(asked), "--node", "0")
        got = int(nr.read_text())
        self.assertRegex(out.stdout, rf"^hugepages: node0 2 MB: {got} reserved \(asked {asked}\), \d+ free, "
                                     r"mounted on /\S+\n$")
        if got == asked:
            self.assertEqual(out.returncode, 0, out)
        else:
            self.assert_refused(subprocess.CompletedProcess([], out.returncode, "", out.stderr),
                                f"the kernel gave fewer 2 MB pages than asked (node0 {got} of {asked}): memory is too "
                                "fragmented; reserve them at boot (hugepages= on the kernel command line)")
        mounts = Path("/proc/mounts").read_text()
        self.assertRegex(mounts, r"\S+ \S+ hugetlbfs \S*pagesize=2M")

    def test_memory_says_hugepages_only_when_enough_are_free(self):
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        free_mb = int(meminfo["HugePages_Free"].split()[0]) * int(meminfo["Hugepagesize"].split()[0]) // 1024
        mounted = " hugetlbfs " in Path("/proc/mounts").read_text()
        out = helper("memory", "--megabytes", "256", "--processes", "3")
        self.assertEqual(out.returncode, 0, out)
        if mounted and free_mb >= 768:
            self.assertEqual(json.loads(out.stdout), ["--in-memory", "-m", "256"])
            self.assertRegex(out.stderr, r"^DPDK memory: 2 MB hugepages \(\d+ reserved, \d+ free\)\n$")
        else:
            self.assertEqual(json.loads(out.stdout), ["--no-huge", "-m", "256"])
        out = helper("memory", "--megabytes", "1024", "--processes", "100000")
        self.assertEqual(json.loads(out.stdout), ["--no-huge", "-m", "1024"])
        self.assertRegex(out.stderr, r"^DPDK memory: --no-huge \(hugepages unavailable: .+\)\n$")


class GeneratedConfigRunsTests(unittest.TestCase):
    """rvsd started from `rvs-nic config dp0` (the lab director's port, given
    the lab's director address for the occasion) answers ping on the wire."""

    PREFIX = "rvs-e2e-nic"

    def test_rvsd_runs_the_generated_config(self):
        nsx(lab.NS_DIR, ["ip", "addr", "add", "10.0.0.1/24", "dev", "dp0"])
        try:
            out = helper("config", "dp0", ns=lab.NS_DIR)
        finally:
            nsx(lab.NS_DIR, ["ip", "addr", "del", "10.0.0.1/24", "dev", "dp0"])
        self.assertEqual(out.returncode, 0, out)
        config = json.loads(out.stdout)
        self.assertEqual(config["ports"][0]["addresses"], ["10.0.0.1/24"])
        eal = config["eal"]
        eal[eal.index("--file-prefix") + 1] = self.PREFIX    # not the machine's own rvsd's
        self.addCleanup(self.remove_hugepage_files)
        rvsd = lab.Rvsd(config)
        self.addCleanup(rvsd.cleanup)
        rvsd.start()
        deadline = time.monotonic() + 10
        while True:
            ping = nsx(lab.NS_CLIENT, ["ping", "-c", "1", "-W", "1", "10.0.0.1"], check=False)
            if ping.returncode == 0 or time.monotonic() > deadline:
                break
        self.assertEqual(ping.returncode, 0, f"{ping.stdout}\n{rvsd.log_text()}")

    def remove_hugepage_files(self):
        """The generated config keeps EAL's hugepage files (dpdk-dumpcap needs
        them; the next rvsd with the prefix reuses them): remove ours."""
        for mount in {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                      if line.split()[2] == "hugetlbfs"}:
            for f in Path(mount).glob(f"{self.PREFIX}map_*"):
                f.unlink()
        run(["rm", "-rf", f"/var/run/dpdk/{self.PREFIX}"])


if __name__ == "__main__":
    unittest.main()
