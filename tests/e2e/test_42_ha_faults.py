"""VRRP under faults, end to end in the two-director lab (deploy/ha-topology.sh,
namespaces rvsha-*; helpers in halab.py, the test case base in test_40_ha.py):

* link state: a director's bridge port goes down for a few seconds (the
  carrier of its af_packet veth dp0 drops): its instances go to FAULT, the
  other director (or keepalived) takes over, and when the link returns there
  is exactly one master, the client's ARP entries point at it and new
  connections succeed;
* split brain: d1's bridge port stops forwarding (its carrier stays up) until
  both directors are master, then forwards again: the true master answers the lower
  priority advert with gratuitous ARPs, the client's ARP entries come back;
* a backup that boots (and reboots) next to a live master never takes the VIP
  (API polled every 20 ms, become_master, gratuitous ARP, a new-connection loop);
* forged adverts from a third host (rvsha-ka, scapy) change nothing and are
  counted by reason in /api/v1/ha and /metrics.

Each case runs with VRRPv3 at advert_int 0.1 with unicast peers and with
multicast VRRPv2 (PASS authentication, advert_int 1), between two rvsd and
with Debian's keepalived in rvsha-ka as the peer. Run as root, under the
lab lock (see the README of tests/e2e):
    python3 -m unittest -v test_42_ha_faults
Measured gaps are printed (stderr) and collected at the end of the run.
"""
import http.client
import json
import re
import shutil
import signal
import subprocess
import threading
import time
import unittest

import halab as lab
import labutil
import test_40_ha as ha40
from halab import DIRECTORS, DR_VIP, FNAT_VIP, GATEWAY, KA_IP, LIP, NAT_VIP, NS_CLIENT, NS_KA
from test_40_ha import figure

setUpModule = ha40.setUpModule
tearDownModule = ha40.tearDownModule

NS_SW = "rvsha-sw"
KA_MAC = "02:00:00:aa:00:04"
AUTH = "rvs-pw"
VIPS = (DR_VIP, NAT_VIP, FNAT_VIP)
VRRP_MCAST = "224.0.0.18"
VRRP_MCAST_MAC = "01:00:5e:00:00:12"
STAT_NAMES = ("advert_rcvd", "advert_sent", "become_master", "release_master", "auth_failure",
              "authtype_mismatch", "addr_list_err", "invalid_type_rcvd", "packet_len_err",
              "ip_ttl_err", "pri_zero_rcvd", "pri_zero_sent", "vrid_other", "peer_unknown",
              "version_err", "advert_interval_err", "checksum_err", "invalid_authtype")

# The two VRRP flavours under test: (version, advert_int, unicast, auth_pass).
V3_UNICAST = (3, 0.1, True, None)
V2_MULTICAST = (2, 1, False, AUTH)


def flavour_name(flavour) -> str:
    version, advert_int, unicast, auth = flavour
    return (f"v{version} advert_int {advert_int} {'unicast' if unicast else 'multicast'}"
            + (" PASS" if auth else ""))


def cut_seconds(flavour) -> float:
    """How long a link stays down: 3 s, or long enough for the peer to take
    over when Master_Down_Interval is longer (v2 at advert_int 1: 3.6 s)."""
    version, advert_int, _, _ = flavour
    return max(3.0, lab.master_down(advert_int, 100, version) + 1.0)


def settle_seconds(flavour) -> float:
    """Time for any election to finish (a preempting backup waits a whole
    Master_Down_Interval), with room for a loaded machine."""
    version, advert_int, _, _ = flavour
    return lab.master_down(advert_int, 1, version) + 3.0


# ---------------------------------------------------------------------------
# Lab helpers (switch ports, the API from this process)
# ---------------------------------------------------------------------------

def switch_port(name: str, up: bool) -> float:
    """Sets the bridge port `name` (d1-sw, d2-sw, ka-sw) up or down: the host
    end of that veth loses or regains its carrier. Returns the monotonic time
    just before the change."""
    t = time.monotonic()
    lab.nsx(NS_SW, ["ip", "link", "set", name, "up" if up else "down"])
    return t


def partition(port: str) -> None:
    """Partitions bridge port `port` off the segment while its carrier stays
    up (STP port state disabled; the lab's bridge runs without STP, so the
    state is ours to set): what is behind it hears nobody and is not heard."""
    lab.nsx(NS_SW, ["bridge", "link", "set", "dev", port, "state", "0"])


def rejoin(port: str) -> float:
    """The port forwards again; returns the monotonic time just before."""
    t = time.monotonic()
    lab.nsx(NS_SW, ["bridge", "link", "set", "dev", port, "state", "3"], check=False)
    return t


def fast_get(ns: str, path: str, timeout: float = 0.5):
    """GET rvsd's API in `ns` over a socket made in that namespace from this
    process (about a millisecond, no process per call); None when nothing answers."""
    sock = labutil.ns_socket(ns)
    sock.settimeout(timeout)
    conn = http.client.HTTPConnection("127.0.0.1", 9090, timeout=timeout)
    try:
        sock.connect(("127.0.0.1", 9090))
        conn.sock = sock
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        return json.loads(body) if resp.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()
        sock.close()


def vrrp_view(d: lab.Director) -> dict[str, dict]:
    """{instance: its element of /api/v1/ha "vrrp"} (state upper-cased)."""
    out = {}
    for i in d.ha().get("vrrp", []):
        i = dict(i, state=str(i.get("state")).upper())
        out[i["instance"]] = i
    return out


def vrrp_stats(d: lab.Director) -> dict[str, dict[str, int]]:
    return {name: dict(i.get("stats") or {}) for name, i in vrrp_view(d).items()}


def stat(stats: dict[str, dict[str, int]], name: str, instance: str | None = None) -> int:
    """One statistic of one instance, or summed over every instance."""
    if instance is not None:
        return int(stats.get(instance, {}).get(name, 0))
    return sum(int(s.get(name, 0)) for s in stats.values())


def port_link_up(d: lab.Director):
    ports = d.get("/api/v1/stats").get("ports", [])
    return ports[0].get("link_up") if ports else None


def ok_count(answers: list[str]) -> int:
    return sum(1 for a in answers if a and not a.startswith("ERR") and a != "BAD")


def keepalived_conf(priority: int, state: str, flavour, unicast_peer: str | None = None) -> str:
    """lab.keepalived_vrrp_conf for `flavour`, with unicast_src_ip/unicast_peer
    when it is a unicast one, and `higher_prio_send_advert` (rvs's default,
    off in Keepalived): a keepalived that yields silently after a split brain
    leaves the winner nothing to answer with gratuitous ARPs, whoever the
    winner is (deploy/docs/vrrp.md, interoperation notes)."""
    version, advert_int, unicast, auth = flavour
    conf = lab.keepalived_vrrp_conf(priority, state, advert_int, version, [DR_VIP], auth_pass=auth)
    conf = conf.replace("    virtual_ipaddress {", "    higher_prio_send_advert\n    virtual_ipaddress {", 1)
    if unicast:
        block = (f"    unicast_src_ip {KA_IP}\n    unicast_peer {{\n        {unicast_peer}\n    }}\n"
                 "    virtual_ipaddress {")
        conf = conf.replace("    virtual_ipaddress {", block, 1)
    return conf


# ---------------------------------------------------------------------------
# Watchers: the API every 20 ms, a loop of new connections
# ---------------------------------------------------------------------------

class StatePoller:
    """Polls /api/v1/ha of some directors every `interval` s in a thread:
    the states seen per director, with the time of every MASTER sighting."""

    def __init__(self, directors: list[lab.Director], interval: float = 0.02):
        self.directors = directors
        self.interval = interval
        self.seen: dict[int, list[tuple[float, dict]]] = {d.n: [] for d in directors}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "StatePoller":
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            for d in self.directors:
                body = fast_get(d.ns, "/api/v1/ha", timeout=0.3)
                if body is not None:
                    states = {i["instance"]: str(i.get("state")).upper() for i in body.get("vrrp", [])}
                    self.seen[d.n].append((time.monotonic(), states))
            self.polls += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def masters(self, n: int) -> list[tuple[float, dict]]:
        return [(t, s) for t, s in self.seen[n] if "MASTER" in s.values()]

    def not_master(self, n: int) -> list[tuple[float, dict]]:
        return [(t, s) for t, s in self.seen[n] if set(s.values()) != {"MASTER"}]


# New TCP connections one after the other (banner of the echo service, or an
# HTTP GET), each with its own timeout; every attempt is timed.
_CONN_LOOP = r"""
import json, signal, socket, sys, time
host, port, interval, timeout, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
stop = [False]
signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
out = []
print("ready", flush=True)
while not stop[0]:
    t = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    res = "ERR"
    try:
        s.connect((host, port))
        if mode == "http":
            s.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
        data = b""
        while b"\n" not in data if mode == "banner" else True:
            chunk = s.recv(1024)
            if not chunk:
                break
            data += chunk
        body = data.split(b"\r\n\r\n", 1)[-1] if mode == "http" else data
        res = body.split(b"\n", 1)[0].decode(errors="replace").strip() or "ERR-empty"
    except OSError as e:
        res = "ERR-" + type(e).__name__
    finally:
        s.close()
    out.append((t, time.monotonic() - t, res))
    rest = interval - (time.monotonic() - t)
    if rest > 0:
        time.sleep(rest)
json.dump(out, sys.stdout)
"""


class ConnLoop:
    """A new TCP connection every `interval` s from rvsha-client to VIP:port
    ("banner": the echo service's first line; "http": the body's first line)."""

    def __init__(self, vip: str, port: int, mode: str = "banner", interval: float = 0.02,
                 timeout: float = 1.0):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", NS_CLIENT, "python3", "-c", _CONN_LOOP, vip, str(port),
             str(interval), str(timeout), mode],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"connection loop did not start: {self.proc.stderr.read()}")
        self.result: list | None = None

    def stop(self) -> list[tuple[float, float, str]]:
        if self.result is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            out, err = self.proc.communicate(timeout=30)
            try:
                self.result = [tuple(x) for x in json.loads(out)]
            except ValueError as e:
                raise RuntimeError(f"connection loop output unreadable: {out[-300:]!r} {err[-300:]!r}") from e
        return self.result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def gaps_in(result: dict, t0: float, t1: float) -> float:
    """The prober's largest gap between answered requests sent in [t0, t1]."""
    sent = result["sent"]
    times = sorted(sent[int(k)] for k in result["answers"])
    inside = [t for t in times if t0 <= t <= t1]
    before = [t for t in times if t < t0]
    after = [t for t in times if t > t1]
    pts = ([before[-1]] if before else []) + inside + ([after[0]] if after else [])
    gaps = [b - a for a, b in zip(pts, pts[1:])]
    return max(gaps) if gaps else float("inf")


def ms(x) -> str:
    return "n/a" if x is None or x == float("inf") else f"{x * 1000:.0f} ms"


# ---------------------------------------------------------------------------
# Forged adverts (scapy, in rvsha-ka)
# ---------------------------------------------------------------------------

_FORGER = r"""
import json, sys, time
from scapy.all import Ether, IP, Raw, sendp
from scapy.layers.vrrp import VRRP, VRRPv3
packets = json.loads(sys.argv[1])
frames = []
for p in packets:
    ip = IP(src=p["src"], dst=p["dst"], ttl=p["ttl"], tos=0xc0, proto=112)
    addrs = p["addrs"]
    if p["version"] == 3:
        vr = VRRPv3(vrid=p["vrid"], priority=p["prio"], type=p.get("type", 1),
                    adv=int(round(p["advert_int"] * 100)), addrlist=addrs)
    else:
        pw = (p.get("auth") or "").encode().ljust(8, b"\0")[:8]
        vr = VRRP(version=2, type=p.get("type", 1), vrid=p["vrid"], priority=p["prio"],
                  authtype=p.get("authtype", 1 if p.get("auth") else 0), adv=int(p["advert_int"]),
                  addrlist=addrs, auth1=int.from_bytes(pw[:4], "big"), auth2=int.from_bytes(pw[4:], "big"))
    frames.append((p["count"], Ether(src=p["src_mac"], dst=p["dst_mac"]) / ip / vr))
for count, f in frames:
    for _ in range(count):
        sendp(f, iface="eth0", verbose=False)
        time.sleep(0.02)
print(json.dumps({"sent": sum(c for c, _ in frames)}))
"""


def scapy_python() -> str | None:
    """A Python that imports scapy: this one, or Debian's (python3-scapy)."""
    for py in (shutil.which("python3"), "/usr/bin/python3"):
        if py and subprocess.run([py, "-c", "import scapy.layers.vrrp"], capture_output=True,
                                 timeout=60).returncode == 0:
            return py
    return None


def advert(*, dst: str, dst_mac: str, src: str = KA_IP, ttl: int = 255, version: int, vrid: int = 51,
           prio: int = 254, advert_int: float, auth: str | None = None, count: int = 5,
           addrs=(DR_VIP, NAT_VIP, FNAT_VIP), **extra) -> dict:
    return {"dst": dst, "dst_mac": dst_mac, "src": src, "src_mac": KA_MAC, "ttl": ttl,
            "version": version, "vrid": vrid, "prio": prio, "advert_int": advert_int, "auth": auth,
            "count": count, "addrs": list(addrs), **extra}


def forge(py: str, packets: list[dict]) -> int:
    cp = lab.nsx(NS_KA, [py, "-c", _FORGER, json.dumps(packets)], timeout=120)
    return json.loads(cp.stdout.strip().splitlines()[-1])["sent"]


# ---------------------------------------------------------------------------
# The test cases
# ---------------------------------------------------------------------------

class FaultCase(ha40.HaCase):
    """Switch ports up and filters off again after every test."""

    def setUp(self):
        super().setUp()
        for port in ("d1-sw", "d2-sw", "ka-sw"):
            self.addCleanup(switch_port, port, True)
            self.addCleanup(rejoin, port)

    def vrrp(self, n: int, priority: int, flavour, peer: str | None = None) -> dict:
        version, advert_int, unicast, auth = flavour
        extra = {}
        if unicast:
            extra["unicast_peer"] = [peer or DIRECTORS[3 - n]["lan"]]
        if auth:
            extra["auth_pass"] = auth
        return lab.vrrp_config(priority, advert_int, version, **extra)

    def pair(self, flavour):
        """d1 (150) MASTER, d2 (100) BACKUP, both instances of the sync group."""
        version, advert_int, _, _ = flavour
        d1 = self.director(1, lab.director_config(1, vrrp=self.vrrp(1, 150, flavour)))
        d1.wait_vrrp("MASTER", 3 * advert_int + 8)
        d2 = self.director(2, lab.director_config(2, vrrp=self.vrrp(2, 100, flavour)))
        d2.wait_vrrp("BACKUP", 8)
        time.sleep(max(2 * advert_int, 0.3))
        self.assert_roles(d1, d2)
        return d1, d2

    def assert_roles(self, master: lab.Director, backup: lab.Director, what: str = ""):
        self.assertEqual(set(master.vrrp_states().values()), {"MASTER"}, what + "\n" + self.diag())
        self.assertEqual(set(backup.vrrp_states().values()), {"BACKUP"}, what + "\n" + self.diag())

    def wait_roles(self, master: lab.Director, backup: lab.Director, timeout: float, what: str):
        try:
            master.wait_vrrp("MASTER", timeout)
            backup.wait_vrrp("BACKUP", timeout)
        except TimeoutError:
            self.fail(f"{what}: expected {master.ns} MASTER and {backup.ns} BACKUP\n" + self.diag())

    def cut_link(self, d: lab.Director, what: str, instances=("VI_1", "VI_2")) -> float:
        """Director d's bridge port down; waits until its instances are in
        FAULT. Returns the time of the cut."""
        t_cut = switch_port(f"d{d.n}-sw", False)
        try:
            d.wait_vrrp("FAULT", 3, instances=instances)
        except TimeoutError:
            self.fail(f"{what}: {d.ns}'s link is down but its instances are not in FAULT\n"
                      + self.diag())
        return t_cut

    def prime_client(self):
        """One request to each VIP: the client has an ARP entry for every one."""
        for vip in VIPS:
            lab.http_spread(f"http://{vip}/", 1, max_time=1)

    def assert_client_arp(self, mac: str, what: str, vips=VIPS):
        got = {vip: lab.neighbour_mac(NS_CLIENT, vip) for vip in vips}
        arp = getattr(self, "arp", None)
        seen = "\n".join(line for _, line in arp.lines[-25:]) if arp else ""
        self.assertEqual(got, {vip: mac for vip in vips},
                         f"{what}: the client's ARP entries must point at the master {mac}\n{seen}")

    def new_connections(self, what: str, count: int = 200, mode: str = "udp") -> int:
        """`count` new connections (UDP: new sockets to the NAT VIP :9001;
        "http": curl to each VIP in turn); at least 99 % must succeed."""
        t = time.monotonic()
        if mode == "udp":
            answers = lab.udp_spread(NAT_VIP, 9001, count)
        else:
            answers, per_vip = [], {}
            for vip in (DR_VIP,) if mode == "http-dr" else VIPS:
                got = lab.http_spread(f"http://{vip}/", count // (1 if mode == "http-dr" else 3),
                                      max_time=1)
                per_vip[vip] = lab.tally(got)
                answers += got
            what += f" {per_vip}"
        took = time.monotonic() - t
        ok = ok_count(answers)
        figure(f"  {what}: {ok}/{len(answers)} new connections succeeded (in {took:.1f} s; "
               f"{lab.tally(answers)})")
        self.assertGreaterEqual(ok, 0.99 * len(answers), f"{what}: {lab.tally(answers)}\n" + self.diag())
        return ok


class LinkFaultTests(FaultCase):
    """Two rvsd: the master's bridge port down for a few seconds and back,
    then the backup's; both directors alive throughout."""

    def cut_master(self, d1, d2, flavour):
        version, advert_int, _, _ = flavour
        name = flavour_name(flavour)
        self.arp = self.arp_watch()
        self.prime_client()
        st1, st2 = vrrp_stats(d1), vrrp_stats(d2)
        prober = self.prober(duration=120)
        time.sleep(0.5)
        t_cut = self.cut_link(d1, name)
        t_fault = time.monotonic()
        try:
            d2.wait_vrrp("MASTER", lab.master_down(advert_int, 100, version) + 5)
        except TimeoutError:
            self.fail(f"{name}: d2 did not take over from d1 (link down)\n" + self.diag())
        figure(f"{name}: d1's link down -> d1 FAULT seen after {ms(t_fault - t_cut)}, "
               f"d2 MASTER after {ms(time.monotonic() - t_cut)}")
        self.assertIs(port_link_up(d1), False, "/api/v1/stats ports[0].link_up of d1 while dp0 has no carrier")
        self.assertIs(port_link_up(d2), True)
        # d1 in FAULT: no adverts; frames its kernel sends out (a ping) are
        # dropped and counted, not queued.
        sent_a = stat(vrrp_stats(d1), "advert_sent")
        drops_a = d1.stats_counters().get("drop_link_down", 0)
        lab.nsx(DIRECTORS[1]["ns"], ["ping", "-c", "3", "-i", "0.2", "-W", "0.3", lab.CLIENT_IP],
                check=False)
        try:
            lab.wait_for(lambda: d1.stats_counters().get("drop_link_down", 0) > drops_a, 3,
                         interval=0.1, what="drop_link_down growing on d1")
        except TimeoutError:
            self.fail("frames sent towards d1's downed port are not counted in drop_link_down: "
                      f"{d1.stats_counters()}")
        time.sleep(max(0.0, t_cut + cut_seconds(flavour) - time.monotonic()))
        self.assertEqual(stat(vrrp_stats(d1), "advert_sent"), sent_a, "d1 sent adverts in FAULT")
        self.assertEqual(set(d1.vrrp_states().values()), {"FAULT"}, self.diag(d1))
        t_up = switch_port("d1-sw", True)
        self.new_connections(f"{name}: master's link back", mode="udp")
        self.wait_roles(d1, d2, settle_seconds(flavour), f"{name}: after d1's link returned")
        lab.wait_for(lambda: port_link_up(d1) is True, 3, what="d1 link_up again")
        time.sleep(0.5)
        res = prober.analyse(t_cut)
        back_gap = gaps_in(prober.result, t_up, prober.result["sent"][-1])
        bound = lab.master_down(advert_int, 100, version) + 0.5
        figure(f"{name}: master's link cut {cut_seconds(flavour):.1f} s -> client outage "
               f"{ms(res['outage'])} (bound master_down+500ms = {ms(bound)}); largest gap after "
               f"the link returned (d1 preempts) {ms(back_gap)}")
        self.assertIsNotNone(res["outage"], f"no answers after the cut: {res}\n" + self.diag())
        self.assertLessEqual(res["outage"], bound, res)
        self.assertLessEqual(back_gap, 1.0, "outage > 1 s after the master's link returned")
        self.assert_client_arp(DIRECTORS[1]["mac"], f"{name}: after d1 returned")
        after1, after2 = vrrp_stats(d1), vrrp_stats(d2)
        self.assertEqual(stat(after2, "become_master", "VI_1") - stat(st2, "become_master", "VI_1"), 1,
                         after2)
        self.assertEqual(stat(after1, "become_master", "VI_1") - stat(st1, "become_master", "VI_1"), 1,
                         after1)
        self.assertTrue(self.arp.garps(NAT_VIP, DIRECTORS[1]["mac"]), "no gratuitous ARP from d1")

    def cut_backup(self, d1, d2, flavour):
        name = flavour_name(flavour)
        st1, st2 = vrrp_stats(d1), vrrp_stats(d2)
        prober = self.prober(duration=120)
        time.sleep(0.3)
        t_cut = self.cut_link(d2, name)
        time.sleep(max(0.0, t_cut + cut_seconds(flavour) - time.monotonic()))
        switch_port("d2-sw", True)
        self.new_connections(f"{name}: backup's link back", mode="udp")
        try:
            d2.wait_vrrp("BACKUP", 5)
        except TimeoutError:
            self.fail(f"{name}: d2 did not leave FAULT\n" + self.diag())
        version, advert_int, _, _ = flavour
        time.sleep(lab.master_down(advert_int, 100, version) + 1.5)   # d2 would have taken over by now
        self.assert_roles(d1, d2, f"{name}: after the backup's link returned")
        res = prober.stop()
        gap = gaps_in(res, t_cut, res["sent"][-1])
        figure(f"{name}: backup's link cut {cut_seconds(flavour):.1f} s and back -> client's largest gap "
               f"{ms(gap)}")
        self.assertLess(gap, 0.2, "the backup's link fault disturbed the traffic")
        after1, after2 = vrrp_stats(d1), vrrp_stats(d2)
        for s in ("become_master", "release_master"):
            self.assertEqual(stat(after1, s), stat(st1, s), f"d1 {s}: {after1}")
            self.assertEqual(stat(after2, s), stat(st2, s), f"d2 {s}: {after2}")
        self.assert_client_arp(DIRECTORS[1]["mac"], f"{name}: after d2 returned")
        self.new_connections(f"{name}: every VIP after both cuts", count=60, mode="http")
        # A fresh watch: the test's own one saw d2 answer ARP while it was the
        # master during the first cut, which was right then.
        ha40.FailoverTests.assert_vips_on(self, self.arp_watch(), d1, d2)

    def link_cuts(self, flavour):
        d1, d2 = self.pair(flavour)
        self.cut_master(d1, d2, flavour)
        self.cut_backup(d1, d2, flavour)

    def test_1_link_cuts_v3_unicast(self):
        self.link_cuts(V3_UNICAST)

    def test_2_link_cuts_v2_multicast(self):
        self.link_cuts(V2_MULTICAST)


class SplitBrainTests(FaultCase):
    """d1 partitioned off the segment (carrier up) until both directors are
    master, then back: d1 (the higher priority) answers d2's advert with
    gratuitous ARPs, the client comes back to it."""

    def split_and_heal(self, flavour):
        version, advert_int, _, _ = flavour
        name = flavour_name(flavour)
        d1, d2 = self.pair(flavour)
        self.arp = self.arp_watch()
        self.prime_client()
        st1 = vrrp_stats(d1)
        partition("d1-sw")
        try:
            d2.wait_vrrp("MASTER", lab.master_down(advert_int, 100, version) + 5)
        except TimeoutError:
            self.fail(f"{name}: no split brain (d2 did not become master)\n" + self.diag())
        lab.wait_for(lambda: self.arp.garps(NAT_VIP, DIRECTORS[2]["mac"]), 3, what="d2's GARPs")
        time.sleep(0.3)
        self.assertEqual(set(d1.vrrp_states().values()), {"MASTER"}, "d1 must still be master")
        self.assertEqual(lab.neighbour_mac(NS_CLIENT, NAT_VIP), DIRECTORS[2]["mac"],
                         "precondition: the client follows d2's gratuitous ARP")
        prober = self.prober(duration=120)
        time.sleep(0.3)
        t_heal = rejoin("d1-sw")
        self.wait_roles(d1, d2, 5, f"{name}: after the split brain")
        try:
            lab.wait_for(lambda: [t for t, _ in self.arp.garps(NAT_VIP, DIRECTORS[1]["mac"])
                                  if t > t_heal], 3, what="gratuitous ARP from d1 after the heal")
        except TimeoutError:
            self.fail(f"{name}: d1 (master) did not send gratuitous ARP when it heard d2's lower "
                      "priority advert (garp_lower_prio_repeat); client's entry for "
                      f"{NAT_VIP}: {lab.neighbour_mac(NS_CLIENT, NAT_VIP)}\n"
                      + "\n".join(line for _, line in self.arp.lines[-25:]) + "\n" + self.diag())
        first = min(t for t, _ in self.arp.garps(NAT_VIP, DIRECTORS[1]["mac"]) if t > t_heal)
        self.new_connections(f"{name}: after the split brain healed", mode="udp")
        time.sleep(0.3)
        res = prober.stop()
        gap = gaps_in(res, t_heal, res["sent"][-1])
        figure(f"{name}: split brain healed -> d1's gratuitous ARP {ms(first - t_heal)} after the "
               f"partition ended; client's largest gap {ms(gap)}")
        self.assert_client_arp(DIRECTORS[1]["mac"], f"{name}: after the heal")
        self.assertLessEqual(gap, 1.0, "client outage > 1 s after the heal")
        after1 = vrrp_stats(d1)
        self.assertEqual(stat(after1, "become_master"), stat(st1, "become_master"),
                         "d1 stayed master throughout")
        self.assertEqual(lab.neighbour_mac(lab.real_ns(1), GATEWAY) or DIRECTORS[1]["mac"],
                         DIRECTORS[1]["mac"], "the reals' gateway entry points at d1")

    def test_1_split_brain_v3_unicast(self):
        self.split_and_heal(V3_UNICAST)

    def test_2_split_brain_v2_multicast(self):
        self.split_and_heal(V2_MULTICAST)


class BootingBackupTests(FaultCase):
    """d2 started, stopped and started, killed and started next to a live
    master d1: d1 keeps the VIPs and no new connection fails."""

    def boots(self, flavour, restarts):
        version, advert_int, unicast, _ = flavour
        name = flavour_name(flavour)
        d1 = self.director(1, lab.director_config(1, vrrp=self.vrrp(1, 150, flavour)))
        d1.wait_vrrp("MASTER", 3 * advert_int + 8)
        time.sleep(0.5)
        d2 = self.director(2, lab.director_config(2, vrrp=self.vrrp(2, 100, flavour)), start=False)
        self.arp = self.arp_watch()
        st1 = vrrp_stats(d1)
        watch_for = lab.master_down(advert_int, 100, version) * 2 + 1.0
        poller = StatePoller([d1, d2]).start()
        self.addCleanup(poller.stop)
        loop = ConnLoop(NAT_VIP, 9000)
        self.addCleanup(loop.kill)
        prober = self.prober(duration=300)
        t_first = time.monotonic()
        time.sleep(0.3)
        starts, d2_stats = [], []
        for how in ["start"] + restarts:
            if how == "stop":
                d2.stop()
            elif how == "kill":
                d2.kill()
            t = time.monotonic()
            d2.start()
            starts.append((how, t, time.monotonic()))
            try:
                d2.wait_vrrp("BACKUP", 5)
            except TimeoutError:
                self.fail(f"{name}: d2 not BACKUP after its start ({how})\n" + self.diag())
            time.sleep(watch_for)
            d2_stats.append((how, vrrp_stats(d2)))
        poller.stop()
        conns = loop.stop()
        res = prober.stop()
        gap = gaps_in(res, t_first, res["sent"][-1])
        bad = [c for c in conns if c[2].startswith("ERR")]
        boot_times = ", ".join(f"{how} {t1 - t0:.1f} s" for how, t0, t1 in starts)
        figure(f"{name}: backup booted {len(starts)}× next to the master ({boot_times}): "
               f"{poller.polls} API polls, d2 MASTER seen {len(poller.masters(2))}×; "
               f"{len(conns) - len(bad)}/{len(conns)} new connections ok; prober's largest gap {ms(gap)}")
        self.assertEqual(poller.masters(2), [], f"{name}: the booting backup was seen MASTER")
        self.assertEqual(poller.not_master(1), [], f"{name}: d1 was seen not master")
        after1 = vrrp_stats(d1)
        for s in ("become_master", "release_master"):
            self.assertEqual(stat(after1, s), stat(st1, s), f"{name}: d1 {s}: {st1} -> {after1}")
        self.assertEqual(self.arp.garps(NAT_VIP, DIRECTORS[2]["mac"]), [], "d2 sent gratuitous ARP")
        self.assertEqual(bad, [], f"{name}: new connections failed while d2 booted")
        self.assertLess(gap, 0.2, f"{name}: the prober saw a gap while d2 booted")
        self.assert_client_arp(DIRECTORS[1]["mac"], name, vips=(NAT_VIP,))
        if unicast:
            # The starting instance asks for its peer's MAC at once.
            pat = re.compile(rf"who-has {re.escape(DIRECTORS[1]['lan'])} tell "
                             rf"{re.escape(DIRECTORS[2]['lan'])}")
            asks = [t for t, line in self.arp.lines
                    if pat.search(line) and DIRECTORS[2]["mac"] in line.lower()]
            for how, t0, t1 in starts:
                self.assertTrue([t for t in asks if t0 <= t <= t1 + 2],
                                f"{name}: no ARP request from d2 for its peer {DIRECTORS[1]['lan']} "
                                f"while it started ({how})")
        for how, s2 in d2_stats:
            self.assertEqual(stat(s2, "become_master"), 0, f"{name}: d2 became master after {how}: {s2}")
            self.assertGreater(stat(s2, "advert_rcvd", "VI_1"), 0, f"{how}: {s2}")

    def test_1_booting_backup_v3_unicast(self):
        self.boots(V3_UNICAST, ["stop", "kill"])

    def test_2_booting_backup_v2_multicast(self):
        self.boots(V2_MULTICAST, ["kill"])


class ForgedAdvertTests(FaultCase):
    """Adverts from rvsha-ka that must be ignored: each with priority 254, so
    that accepting one would make d1 yield; states, the VIPs' owner and the
    client's traffic stay as they are, and the instance statistics count each
    by reason."""

    def setUp(self):
        self.py = scapy_python()
        if not self.py:
            self.skipTest("scapy is missing (python3-scapy, deploy/setup.sh)")
        super().setUp()

    def attack(self, flavour, cases):
        """`cases`: (label, packets, [(director, stat, instance or None)])."""
        name = flavour_name(flavour)
        d1, d2 = self.pair(flavour)
        ds = {1: d1, 2: d2}
        self.arp = self.arp_watch()
        self.prime_client()
        prober = self.prober(duration=120)
        time.sleep(0.3)
        before = {n: vrrp_stats(d) for n, d in ds.items()}
        t0 = time.monotonic()
        frames = forge(self.py, [p for _, packets, _ in cases for p in packets])
        time.sleep(0.5)
        after = {n: vrrp_stats(d) for n, d in ds.items()}
        self.assert_roles(d1, d2, f"{name}: after the forged adverts")
        res = prober.stop()
        gap = gaps_in(res, t0, res["sent"][-1])
        lines = []
        for label, packets, expect in cases:
            sent_each = packets[0]["count"]
            for n, sname, inst in expect:
                delta = stat(after[n], sname, inst) - stat(before[n], sname, inst)
                lines.append((label, n, sname, inst, delta, sent_each))
        figure(f"{name}: forged adverts from rvsha-ka ({frames} frames); "
               f"client's largest gap {ms(gap)}; counters: "
               + "; ".join(f"{label}: d{n} {s}{'/' + i if i else ''} +{d}" for label, n, s, i, d, _ in lines))
        for n in (1, 2):
            self.assertEqual(stat(after[n], "become_master"), stat(before[n], "become_master"),
                             f"d{n} {after[n]}")
            self.assertEqual(stat(after[n], "release_master"), stat(before[n], "release_master"))
        self.assertEqual(self.arp.garps(NAT_VIP, DIRECTORS[2]["mac"]), [], "d2 sent gratuitous ARP")
        self.assertEqual(lab.neighbour_mac(NS_CLIENT, NAT_VIP), DIRECTORS[1]["mac"])
        self.assertLess(gap, 0.2, "the forged adverts disturbed the traffic")
        missing = [f"{label}: d{n} {s} {i or '(any instance)'} +{d} (sent {sent})"
                   for label, n, s, i, d, sent in lines if d < sent]
        self.assertEqual(missing, [], f"{name}: forged adverts not counted by reason; before "
                                      f"{before}\nafter {after}")
        # Every instance shows its priority and all of Keepalived's statistics.
        for n, d, prio in ((1, d1, 150), (2, d2, 100)):
            for inst, view in vrrp_view(d).items():
                self.assertEqual(view.get("priority"), prio, f"d{n} {inst}: {view}")
                self.assertEqual(set(STAT_NAMES) - set(view.get("stats") or {}), set(),
                                 f"d{n} {inst}: statistics missing from /api/v1/ha: {view}")
        return d1, d2, after

    def test_1_forged_v2_multicast(self):
        v, ai = 2, 1
        mc = dict(dst=VRRP_MCAST, dst_mac=VRRP_MCAST_MAC, version=v, advert_int=ai)
        both = lambda s, i="VI_1": [(1, s, i), (2, s, i)]  # noqa: E731
        cases = [
            ("wrong password", [advert(auth="evil", **mc)], both("auth_failure")),
            ("no authentication", [advert(auth=None, authtype=0, **mc)], both("authtype_mismatch")),
            ("other VRID", [advert(vrid=77, auth=AUTH, **mc)], both("vrid_other", None)),
            ("TTL 64", [advert(ttl=64, auth=AUTH, **mc)], both("ip_ttl_err")),
            ("advert_int 3", [advert(auth=AUTH, **dict(mc, advert_int=3))], both("advert_interval_err")),
            ("type 2", [advert(auth=AUTH, type=2, **mc)], both("invalid_type_rcvd")),
            ("version 3", [advert(**dict(mc, version=3, advert_int=1))], both("version_err")),
        ]
        d1, _, after = self.attack(V2_MULTICAST, cases)
        # /metrics carries the same numbers.
        status, text = d1.api("GET", "/metrics")
        self.assertEqual(status, 200)
        for sname in ("auth_failure", "ip_ttl_err", "vrid_other"):
            m = re.search(rf'^rvs_vrrp_stats_total\{{[^}}]*vrrp_instance="VI_1"[^}}]*stat="{sname}"[^}}]*\}} (\d+)',
                          text, re.M) or re.search(
                rf'^rvs_vrrp_stats_total\{{[^}}]*stat="{sname}"[^}}]*vrrp_instance="VI_1"[^}}]*\}} (\d+)', text, re.M)
            self.assertIsNotNone(m, f"/metrics has no rvs_vrrp_stats_total for VI_1 {sname}:\n"
                                 + "\n".join(l for l in text.splitlines() if "vrrp" in l)[:3000])
            self.assertGreaterEqual(int(m.group(1)), stat(after[1], sname, "VI_1"))

    def test_2_forged_v3_unicast(self):
        v, ai = 3, 0.1
        to1 = dict(dst=DIRECTORS[1]["lan"], dst_mac=DIRECTORS[1]["mac"], version=v, advert_int=ai)
        to2 = dict(dst=DIRECTORS[2]["lan"], dst_mac=DIRECTORS[2]["mac"], version=v, advert_int=ai)
        cases = [
            ("non-peer source", [advert(**to1), advert(**to2)],
             [(1, "peer_unknown", "VI_1"), (2, "peer_unknown", "VI_1")]),
            ("peer spoofed, TTL 64", [advert(src=DIRECTORS[2]["lan"], ttl=64, **to1),
                                      advert(src=DIRECTORS[1]["lan"], ttl=64, **to2)],
             [(1, "ip_ttl_err", "VI_1"), (2, "ip_ttl_err", "VI_1")]),
            ("peer spoofed, other VRID", [advert(src=DIRECTORS[2]["lan"], vrid=77, **to1),
                                          advert(src=DIRECTORS[1]["lan"], vrid=77, **to2)],
             [(1, "vrid_other", None), (2, "vrid_other", None)]),
            ("peer spoofed, version 2", [advert(src=DIRECTORS[2]["lan"], **dict(to1, version=2, advert_int=1)),
                                         advert(src=DIRECTORS[1]["lan"], **dict(to2, version=2, advert_int=1))],
             [(1, "version_err", "VI_1"), (2, "version_err", "VI_1")]),
        ]
        self.attack(V3_UNICAST, cases)


class KeepalivedFaultTests(FaultCase):
    """rvsd d1 with Debian's keepalived in rvsha-ka as its peer (one instance,
    VRID 51, the DR VIP; rvsha-ka serves it as "ka" while keepalived holds it)."""

    SERVICES = ha40.DR_ONLY

    def setUp(self):
        if not ha40.KEEPALIVED:
            self.skipTest("Debian's keepalived is not installed")
        super().setUp()

    def start_pair(self, flavour, rvsd_prio: int, ka_prio: int):
        version, advert_int, unicast, auth = flavour
        extra = {"unicast_peer": [KA_IP]} if unicast else {}
        if auth:
            extra["auth_pass"] = auth
        ka = lab.Keepalived(keepalived_conf(ka_prio, "BACKUP", flavour, DIRECTORS[1]["lan"]),
                            self.tmp, ha40.KEEPALIVED)
        self.others.append(ka)
        self.addCleanup(ka.stop)
        d = self.director(1, lab.director_config(1, services=self.SERVICES, vrrp=ha40.single_instance(
            rvsd_prio, advert_int, version, **extra), sync=False), start=False)
        first, second = (d, ka) if rvsd_prio > ka_prio else (ka, d)
        first.start()
        if first is ka:
            lab.wait_for(ka.has_vip, settle_seconds(flavour) + 5, what="keepalived MASTER")
        else:
            d.wait_vrrp("MASTER", settle_seconds(flavour) + 5, instances=("VI_1",))
        second.start()
        time.sleep(lab.master_down(advert_int, 100, version) + 1.0)
        return d, ka

    def state(self, d, ka) -> tuple[str, bool]:
        return d.vrrp_states().get("VI_1"), ka.has_vip()

    def expect(self, d, ka, rvsd_master: bool, timeout: float, what: str) -> float:
        want = ("MASTER", False) if rvsd_master else ("BACKUP", True)
        try:
            lab.wait_for(lambda: self.state(d, ka) == want, timeout, interval=0.05, what=what)
        except TimeoutError:
            self.fail(f"{what}: expected rvsd {want[0]}, keepalived "
                      f"{'MASTER' if want[1] else 'BACKUP'}; got {self.state(d, ka)}\n"
                      + ka.log_text()[-3000:] + self.diag(d))
        return time.monotonic()

    def check_master(self, d, ka, rvsd_master: bool, what: str):
        answers = lab.http_spread(f"http://{DR_VIP}/", 4, max_time=1)
        want = {"rs1": 2, "rs2": 2} if rvsd_master else {"ka": 4}
        self.assertEqual(lab.tally(answers), want, f"{what}: who serves the DR VIP")
        self.assert_client_arp(DIRECTORS[1]["mac"] if rvsd_master else KA_MAC, what, vips=(DR_VIP,))

    def cut(self, d, ka, flavour, port: str, rvsd_master_during: bool, rvsd_master_after: bool):
        """Bridge port `port` down for cut_seconds, then up: who is master
        during and after, and new connections once it is back."""
        name = flavour_name(flavour) + " with keepalived"
        who = "rvsd" if port == "d1-sw" else "keepalived"
        role = "master" if (port == "d1-sw") == rvsd_master_after else "backup"
        version, advert_int, _, _ = flavour
        st = vrrp_stats(d)
        ka_backup = ka.entered("BACKUP")
        t_cut = self.cut_link(d, name, ("VI_1",)) if port == "d1-sw" else switch_port(port, False)
        if rvsd_master_during:
            t_take = self.expect(d, ka, True, lab.master_down(advert_int, 100, version) + 5,
                                 f"{name}: rvsd takes over while keepalived's link is down")
        elif port == "d1-sw":
            t_take = time.monotonic()
            lab.wait_for(ka.has_vip, lab.master_down(advert_int, 100, version) + 5,
                         what="keepalived taking the VIP while rvsd's link is down")
        else:
            t_take = None
        if t_take and role == "master":
            figure(f"{name}: {who}'s (master) link down -> peer MASTER after {ms(t_take - t_cut)}")
        time.sleep(max(0.0, t_cut + cut_seconds(flavour) - time.monotonic()))
        switch_port(port, True)
        self.new_connections(f"{name}: {who}'s ({role}) link back", count=100, mode="http-dr")
        self.expect(d, ka, rvsd_master_after, settle_seconds(flavour) + 3,
                    f"{name}: after {who}'s link returned")
        time.sleep(1.0)
        self.assertEqual(self.state(d, ka), ("MASTER", False) if rvsd_master_after else ("BACKUP", True),
                         "exactly one master")
        self.check_master(d, ka, rvsd_master_after, f"{name}: after {who}'s link returned")
        if role == "backup" and rvsd_master_after:
            self.assertEqual(stat(vrrp_stats(d), "become_master"), stat(st, "become_master"),
                             "rvsd stayed master while keepalived (backup) lost its link")
        if role == "backup" and not rvsd_master_after:
            self.assertEqual(stat(vrrp_stats(d), "become_master"), stat(st, "become_master"),
                             "rvsd (backup) became master after its link returned")
            self.assertEqual(ka.entered("BACKUP"), ka_backup, "keepalived left MASTER\n" + ka.log_text())

    def link_cuts(self, flavour, rvsd_master: bool):
        """rvsd's link cut, then keepalived's; rvsd (150) master over keepalived
        (100), or keepalived (200) over rvsd (100)."""
        self.arp = self.arp_watch()
        d, ka = self.start_pair(flavour, *((150, 100) if rvsd_master else (100, 200)))
        self.check_master(d, ka, rvsd_master, "start")
        self.cut(d, ka, flavour, "d1-sw", rvsd_master_during=False, rvsd_master_after=rvsd_master)
        self.cut(d, ka, flavour, "ka-sw", rvsd_master_during=True, rvsd_master_after=rvsd_master)

    def test_1_v3_unicast_rvsd_master(self):
        self.link_cuts(V3_UNICAST, rvsd_master=True)

    def test_2_v2_multicast_keepalived_master(self):
        self.link_cuts(V2_MULTICAST, rvsd_master=False)

    def test_3_split_brain_v3_unicast(self):
        """rvsd (150) partitioned from keepalived (100) until both are master,
        then back: rvsd answers keepalived's advert with
        gratuitous ARPs and the client comes back to it."""
        self.arp = self.arp_watch()
        d, ka = self.start_pair(V3_UNICAST, 150, 100)
        self.check_master(d, ka, True, "start")
        partition("d1-sw")
        lab.wait_for(ka.has_vip, 5, what="keepalived MASTER too (split brain)")
        lab.wait_for(lambda: self.arp.garps(DR_VIP, KA_MAC), 3, what="keepalived's GARP")
        time.sleep(0.3)
        self.assertEqual(d.vrrp_states().get("VI_1"), "MASTER")
        self.assertEqual(lab.neighbour_mac(NS_CLIENT, DR_VIP), KA_MAC, "precondition: client on ka")
        t_heal = rejoin("d1-sw")
        self.expect(d, ka, True, 5, "split brain with keepalived healed")
        try:
            lab.wait_for(lambda: [t for t, _ in self.arp.garps(DR_VIP, DIRECTORS[1]["mac"]) if t > t_heal],
                         3, what="rvsd's gratuitous ARP after the heal")
        except TimeoutError:
            self.fail("rvsd did not send gratuitous ARP on keepalived's lower-priority advert\n"
                      + "\n".join(line for _, line in self.arp.lines[-25:]))
        first = min(t for t, _ in self.arp.garps(DR_VIP, DIRECTORS[1]["mac"]) if t > t_heal)
        figure(f"split brain rvsd/keepalived v3 unicast healed: rvsd's gratuitous ARP "
               f"{ms(first - t_heal)} after the partition ended")
        self.new_connections("split brain with keepalived healed", count=100, mode="http-dr")
        self.check_master(d, ka, True, "after the heal")

    def test_4_rvsd_boots_next_to_keepalived_master_v3_unicast(self):
        """keepalived (200) master; rvsd (100) started, killed and restarted:
        keepalived never leaves MASTER, rvsd is never seen MASTER."""
        flavour = V3_UNICAST
        ka = lab.Keepalived(keepalived_conf(200, "BACKUP", flavour, DIRECTORS[1]["lan"]), self.tmp,
                            ha40.KEEPALIVED)
        self.others.append(ka)
        self.addCleanup(ka.stop)
        ka.start()
        lab.wait_for(ka.has_vip, 10, what="keepalived MASTER")
        time.sleep(0.5)
        backups = ka.entered("BACKUP")
        d = self.director(1, lab.director_config(1, services=self.SERVICES, vrrp=ha40.single_instance(
            100, 0.1, 3, unicast_peer=[KA_IP]), sync=False), start=False)
        poller = StatePoller([d]).start()
        self.addCleanup(poller.stop)
        loop = ConnLoop(DR_VIP, 80, mode="http")
        self.addCleanup(loop.kill)
        for how in ("start", "kill", "stop"):
            if how == "kill":
                d.kill()
            elif how == "stop":
                d.stop()
            d.start()
            d.wait_vrrp("BACKUP", 5, instances=("VI_1",))
            time.sleep(1.5)
            self.assertEqual(stat(vrrp_stats(d), "become_master"), 0)
        poller.stop()
        conns = loop.stop()
        bad = [c for c in conns if c[2] != "ka"]
        figure(f"rvsd booted 3× next to a keepalived master (v3 unicast): {poller.polls} API polls, "
               f"rvsd MASTER seen {len(poller.masters(1))}×, keepalived re-entered BACKUP "
               f"{ka.entered('BACKUP') - backups}×; {len(conns) - len(bad)}/{len(conns)} new "
               f"connections answered by ka")
        self.assertEqual(poller.masters(1), [], "rvsd was seen MASTER while booting")
        self.assertEqual(ka.entered("BACKUP"), backups, "keepalived left MASTER\n" + ka.log_text())
        self.assertTrue(ka.has_vip())
        self.assertEqual(bad, [], "new connections failed or went elsewhere while rvsd booted")


if __name__ == "__main__":
    unittest.main(verbosity=2)
