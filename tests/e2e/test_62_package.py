"""The Debian package as installed on this machine (issue 12).

deploy/test.sh builds it with deploy/package.sh (cargo-deb) and installs it
with `apt-get install ./target/debian/rvs_*.deb` before this suite. Checked
here: what it installed (binaries, man pages, completions, the systemd unit,
the config with its secret-keeping mode, the docs), its dependencies on
Debian's DPDK runtime packages, the unit as systemd-analyze reads it, and the
installed rvsd started with the unit's command line (this machine's PID 1 is
not systemd: the notify socket here is this test's) forwarding traffic,
listed by the installed rvsadm. The unit itself, run by a real systemd
(Type=notify, reload, signals, the watchdog, the sandbox), is
tests/e2e/test_66_systemd.py's: it boots one in a container.

Set RVS_NO_PACKAGE=1 to skip the suite on a machine where the package was
not built (never in CI).
"""
import json
import os
import re
import shlex
import socket
import subprocess
import tempfile
import unittest
from pathlib import Path

import labutil as lab
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)
from labutil import DR_VIP, NS_DIR

UNIT = Path("/usr/lib/systemd/system/rvsd.service")


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


@unittest.skipIf(os.environ.get("RVS_NO_PACKAGE") == "1", "RVS_NO_PACKAGE=1")
class PackageTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        status = run("dpkg-query", "-W", "-f", "${Status} ${Version}", "rvs")
        if status.returncode != 0 or not status.stdout.startswith("install ok installed"):
            raise AssertionError("the rvs package is not installed: run `bash deploy/package.sh` and "
                                 "`apt-get install ./target/debian/rvs_*.deb` (deploy/test.sh does both)")
        cls.files = set(run("dpkg", "-L", "rvs").stdout.split("\n"))

    def test_installs_binaries_docs_unit_and_config(self):
        for path in ["/usr/sbin/rvsd", "/usr/sbin/rvsadm", "/usr/sbin/rvs-vrrp", "/usr/sbin/rvs-nic",
                     "/usr/share/man/man8/rvsd.8", "/usr/share/man/man8/rvsadm.8",
                     "/usr/share/bash-completion/completions/rvsd",
                     "/usr/share/bash-completion/completions/rvsadm",
                     "/usr/share/zsh/vendor-completions/_rvsadm",
                     "/usr/share/fish/vendor_completions.d/rvsd.fish",
                     str(UNIT), "/etc/rvs/rvsd.json", "/etc/default/rvsd",
                     "/usr/share/doc/rvs/README.md", "/usr/share/doc/rvs/api.md",
                     "/usr/share/doc/rvs/metrics.md", "/usr/share/doc/rvs/monitoring/rvs-alerts.yml",
                     "/usr/share/doc/rvs/monitoring/rvs-dashboard.json"]:
            with self.subTest(path):
                self.assertIn(path, self.files)
                self.assertTrue(Path(path).exists(), path)
        # The config and the environment file may hold the API token and the sync key.
        for secret in ("/etc/rvs/rvsd.json", "/etc/default/rvsd"):
            self.assertEqual(os.stat(secret).st_mode & 0o077, 0, f"{secret} readable by others")
        conffiles = run("dpkg-query", "-W", "-f", "${Conffiles}", "rvs").stdout
        self.assertIn("/etc/rvs/rvsd.json", conffiles)
        man = run("man", "-l", "/usr/share/man/man8/rvsd.8", env={**os.environ, "MANWIDTH": "100"})
        if man.returncode == 0:
            self.assertIn("--pid-file", man.stdout)
        self.assertIn(".SH", Path("/usr/share/man/man8/rvsadm.8").read_text())

    def test_depends_on_debians_dpdk_runtime(self):
        depends = run("dpkg-query", "-W", "-f", "${Depends}", "rvs").stdout
        for package in ("librte-eal23", "librte-ethdev23", "librte-mempool-ring23", "librte-net-af-packet23"):
            self.assertRegex(depends, rf"\b{re.escape(package)}\b", depends)

    def test_rvsadm_needs_no_dpdk(self):
        """rvsadm (the REST client and the offline --check-config) links no
        DPDK library: the crates are split along dependency lines."""
        libs = run("ldd", "/usr/sbin/rvsadm").stdout
        self.assertNotIn("librte", libs)
        self.assertIn("librte_eal", run("ldd", "/usr/sbin/rvsd").stdout)
        with tempfile.TemporaryDirectory() as tmp:
            bad = Path(tmp, "rvsd.json")
            bad.write_text('{"workers": [1], "mbufs": "many"}')
            check = run("/usr/sbin/rvsadm", "--check-config", str(bad))
            self.assertEqual(check.returncode, 2, check.stderr)
            self.assertIn("mbufs", check.stderr)

    def test_unit_is_valid_and_does_what_the_guide_says(self):
        verify = run("systemd-analyze", "verify", str(UNIT))
        # Without a booted systemd, verify still parses the unit and checks ExecStart's binary.
        self.assertNotIn("Unknown key", verify.stderr)
        self.assertNotIn("is not executable", verify.stderr)
        self.assertNotIn("Failed to", verify.stderr.replace("Failed to connect to bus", ""))
        unit = UNIT.read_text()
        for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=", "RuntimeDirectory=rvsd"):
            self.assertIn(line, unit)
        start = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart="))
        self.assertEqual(shlex.split(start)[0], "/usr/sbin/rvsd")
        # The shipped config is valid; its example PCI NIC is not on this machine,
        # which --check-config says in one line (exit 3) until the operator edits it.
        check = run("/usr/sbin/rvsd", "--check-config", "--config", "/etc/rvs/rvsd.json")
        self.assertEqual(check.returncode, 3, check.stderr)
        lines = check.stderr.strip().splitlines()
        self.assertIn("rvsd: ports[0].device: PCI device 0000:01:00.0 not found (see `dpdk-devbind.py --status`)", lines)
        # (and, where no hugepages are reserved, a line saying so: nothing else)
        self.assertTrue(all(line.startswith(("rvsd: ports[0]", "rvsd: eal: no hugepages")) for line in lines), lines)

    def test_installed_daemon_serves_as_the_unit_starts_it(self):
        unit = UNIT.read_text()
        start = shlex.split(next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")))
        tmp = Path(tempfile.mkdtemp(prefix="rvs-pkg-"))
        # The unit's own arguments, with the lab's config and a temporary runtime directory.
        args = []
        it = iter(start[1:])
        for a in it:
            value = next(it) if a in ("--config", "--pid-file", "--dump-dir") else None
            if a == "--pid-file":
                args += [a, str(tmp / "rvsd.pid")]
            elif a == "--dump-dir":
                args += [a, str(tmp)]
            elif a != "--config":
                args += [a] + ([value] if value else [])
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(tmp / "notify.sock"))
        sock.settimeout(60)
        self.addCleanup(sock.close)
        rvsd = lab.Rvsd(lab.lab_config([lab.DR_RR_80]), binary=Path(start[0]), args=args,
                        env={"NOTIFY_SOCKET": str(tmp / "notify.sock")})
        self.addCleanup(rvsd.cleanup)
        rvsd.start()
        self.assertIn("READY=1", sock.recv(4096).decode().split("\n"))
        self.assertEqual((tmp / "rvsd.pid").read_text().strip(), str(rvsd.proc.pid))
        answers = lab.http_requests(f"http://{DR_VIP}/", 4)
        self.assertEqual(lab.tally(answers), {"rs1": 2, "rs2": 2}, answers)
        listing = run("ip", "netns", "exec", NS_DIR, "/usr/sbin/rvsadm", "-Ln")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertIn(f"TCP  {DR_VIP}:80 rr", listing.stdout)
        self.assertEqual(rvsd.stop(), 0)


if __name__ == "__main__":
    unittest.main()
