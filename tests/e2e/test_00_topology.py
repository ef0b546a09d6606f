"""The lab itself, without rvsd: namespaces, servers, ARP behaviour and the
DR/NAT reply paths (deploy/topology.sh selfcheck uses the kernel of rvs-dir as
a stand-in director). When this passes and the rvsd tests fail, look at rvsd."""
import unittest

import labutil as lab
from labutil import setUpModule, tearDownModule  # noqa: F401 (unittest's module hooks)


class TopologySelfCheck(unittest.TestCase):
    def test_selfcheck(self):
        cp = lab.run(["bash", str(lab.TOPOLOGY), "selfcheck"], check=False, timeout=120)
        self.assertEqual(cp.returncode, 0, f"selfcheck failed:\n{cp.stderr}")

    def test_no_ipv6_and_no_offloads(self):
        for ns, ifname in [(lab.NS_CLIENT, "eth0"), (lab.NS_DIR, "dp0"), (lab.real_ns(1), "eth0")]:
            with self.subTest(ns=ns):
                v6 = lab.nsx(ns, ["sysctl", "-n", f"net.ipv6.conf.{ifname}.disable_ipv6"]).stdout
                self.assertEqual(v6.strip(), "1")
                feats = lab.nsx(ns, ["ethtool", "-k", ifname]).stdout
                for feat in ("tx-checksumming", "rx-checksumming", "generic-segmentation-offload",
                             "generic-receive-offload", "tcp-segmentation-offload"):
                    self.assertIn(f"{feat}: off", feats, f"{ns}:{ifname} {feat}")

    def test_director_port_has_no_kernel_address(self):
        out = lab.nsx(lab.NS_DIR, ["ip", "-4", "-o", "addr", "show", "dev", "dp0"]).stdout
        self.assertEqual(out.strip(), "", "dp0 must have no IP: rvsd owns 10.0.0.1/10.1.0.1")


if __name__ == "__main__":
    unittest.main()
