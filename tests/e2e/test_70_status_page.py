"""The live status page (issue 15) in a real headless browser: Debian's
chromium driven by selenium through Debian's chromedriver (deploy/setup.sh
installs all three), looking at director 2 of the HA lab (health checks,
VRRP, connection sync; halab.py). rvsd's API listens on the loopback of its
namespace: a socat in the root namespace forwards a local port to it.

* the page renders, and its numbers (states, weights, connections, VRRP
  states, generation) are the API's;
* a real server whose HTTP server is stopped turns red on the page within
  one refresh of the API saying it is down;
* director 1 killed: the page shows director 2's instances become MASTER
  and the transition in the recent events, without a reload;
* the browser console holds no error throughout.

Screenshots go to a temporary directory, or to RVS_SCREENSHOTS=DIR (the
README's are made with RVS_SCREENSHOTS=deploy/docs/img).

Run as root after `cargo build --release`:
    flock /run/rvs-e2e.lock python3 -m unittest -v tests.e2e.test_70_status_page
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import halab as lab  # noqa: E402
from halab import DR_VIP  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# How late the page may show what the API says: one refresh (1 s) plus the
# fetch, the redraw and this test's own polling on a loaded 2-core machine.
REFRESH = 1.0
SLACK = 1.5

D1 = D2 = None
TMP = None
FORWARD: subprocess.Popen | None = None
BASE = ""
DRIVER = None
CONSOLE: list[dict] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise RuntimeError("selenium is missing: deploy/setup.sh installs it (pip)") from e
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).exists():
            raise RuntimeError(f"{tool} is missing: deploy/setup.sh installs Debian's chromium and chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1250", "--force-device-scale-factor=1", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def setUpModule():
    global D1, D2, TMP, FORWARD, BASE, DRIVER
    if os.geteuid() != 0:
        raise unittest.SkipTest("the status page e2e test needs root (network namespaces)")
    TMP = tempfile.mkdtemp(prefix="rvs-status-")
    lab.setup()
    try:
        def start(n, config):
            d = lab.Director(n, config, tmp=TMP)
            return d.start()
        D1, D2 = lab.observed_pair(start)
        lab.wait_for(lambda: len(D2.health_reals()) == 2 and all(r.get("state") == "up" for r in D2.health_reals()),
                     20, what="director 2: reals up")
        port = free_port()
        FORWARD = subprocess.Popen(
            ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
             f"EXEC:ip netns exec {D2.ns} socat STDIO TCP\\:127.0.0.1\\:9090"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        BASE = f"http://127.0.0.1:{port}"
        lab.wait_for(lambda: subprocess.run(["curl", "-sf", "-o", "/dev/null", f"{BASE}/api/v1/status"]).returncode == 0,
                     10, what="the forwarded API")
        # Some traffic, so that the counters are not all zero.
        lab.http_spread(f"http://{DR_VIP}/", 6)
        DRIVER = start_browser()
        DRIVER.set_page_load_timeout(30)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    if DRIVER is not None:
        DRIVER.quit()
    if FORWARD is not None and FORWARD.poll() is None:
        os.killpg(FORWARD.pid, signal.SIGTERM)
        FORWARD.wait(10)
    lab.start_service(1, "http80")
    lab.cleanup_observed((D1, D2), TMP)


def api(path: str):
    return D2.get(path)


PAGE_STATE = """
const value = (sel) => { const e = document.querySelector(sel); return e ? Number(e.dataset.value) : null; };
const num = (tr, f) => { const c = tr.querySelector('[data-field="' + f + '"]'); return c ? Number(c.dataset.value) : null; };
return {
  updated: Number(document.body.dataset.updated || 0),
  generation: Number(document.getElementById('generation').dataset.value),
  live: document.getElementById('live').className,
  services: [...document.querySelectorAll('tr.service')].map(tr => tr.dataset.service),
  service_conns: Object.fromEntries([...document.querySelectorAll('tr.service')].map(tr => [tr.dataset.service, num(tr, 'conns')])),
  tile_cps: value('#tiles [data-field="cps"]'),
  reals: [...document.querySelectorAll('tr.real')].map(tr => ({
    service: tr.dataset.service, real: tr.dataset.real, state: tr.dataset.state, in_pool: tr.dataset.inPool === 'true',
    weight: num(tr, 'weight'), active: num(tr, 'active'), inactive: num(tr, 'inactive'), conns: num(tr, 'conns'),
    background: getComputedStyle(tr.cells[0]).backgroundColor })),
  vrrp: Object.fromEntries([...document.querySelectorAll('#vrrp tr[data-instance]')].map(tr =>
    [tr.dataset.instance, {state: tr.dataset.state, peer: tr.querySelector('[data-field="peer"]').textContent}])),
  events: [...document.querySelectorAll('#events li[data-seq]')].map(li => li.textContent),
  sync_role: (document.querySelector('#sync [data-field="role"]') || {}).textContent,
  sync_received: value('#sync [data-field="received"]'),
};
"""


class StatusPage(unittest.TestCase):
    def page(self) -> dict:
        return DRIVER.execute_script(PAGE_STATE)

    def console_errors(self) -> list[dict]:
        CONSOLE.extend(DRIVER.get_log("browser"))
        return [e for e in CONSOLE if e.get("level") == "SEVERE"]

    def wait_page(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.page()
            if pred(state):
                return state
            if time.monotonic() > deadline:
                self.fail(f"the page never showed {what}: {json.dumps(state, indent=1)[:3000]}")
            time.sleep(0.05)

    def screenshot(self, name: str) -> None:
        target = Path(os.environ.get("RVS_SCREENSHOTS") or TMP)
        target.mkdir(parents=True, exist_ok=True)
        DRIVER.save_screenshot(str(target / f"status-{name}.png"))

    def tearDown(self):
        self.assertEqual(self.console_errors(), [], "JavaScript console errors")

    def test_1_renders_the_api_numbers(self):
        DRIVER.get(f"{BASE}/status")
        self.assertEqual(DRIVER.title, "rvs status")
        self.wait_page(lambda s: s["updated"] > 0 and s["reals"], 15, "a first update")

        def matches(s) -> bool:
            stats = {f"{x['protocol']}/{x['vip']}/{x['port']}": x for x in api("/api/v1/stats/services")}
            health = {(f"{r['service']['protocol']}/{r['service']['vip']}/{r['service']['port']}", f"{r['address']}:{r['port']}"): r
                      for r in api("/api/v1/health")["reals"]}
            effective = api("/api/v1/config/effective")
            weights = {(f"{sv['protocol']}/{sv['vip']}/{sv['port']}", f"{r['address']}:{r.get('port', sv['port'])}"): r.get("weight", 1)
                       for sv in effective["services"] for r in sv["reals"]}
            if s["services"] != list(stats):
                return False
            for r in s["reals"]:
                key = (r["service"], r["real"])
                h = health.get(key)
                want_state = h["state"] if h else "unchecked"
                st = next((x for x in stats[r["service"]]["reals"] if f"{x['address']}:{x['port']}" == r["real"]), None)
                if (r["state"], r["weight"], r["in_pool"]) != (want_state, weights.get(key, 0), key in weights):
                    return False
                if st is None or (r["active"], r["inactive"], r["conns"]) != (st["active"], st["inactive"], st["conns"]):
                    return False
            vrrp = {i["instance"]: i["state"] for i in api("/api/v1/ha")["vrrp"]}
            return {k: v["state"] for k, v in s["vrrp"].items()} == vrrp and s["generation"] == api("/api/v1/status")["generation"]

        state = self.wait_page(matches, 15, "the API's numbers")
        self.assertEqual(len(state["reals"]), 4)
        self.assertTrue(all(r["state"] == "up" for r in state["reals"] if r["service"] == f"tcp/{DR_VIP}/80"), state)
        # A backup schedules nothing; it hears the master's connection sync.
        self.assertGreater(state["sync_received"], 0, "sync datagrams received")
        self.assertLessEqual(state["sync_received"], api("/api/v1/ha")["sync"]["datagrams"]["received"])
        self.assertEqual(state["vrrp"]["VI_1"]["state"], "BACKUP")
        self.assertIn(f"{lab.DIRECTORS[1]['lan']} prio 150", state["vrrp"]["VI_1"]["peer"], "the master is heard")
        self.assertEqual(state["sync_role"], "backup (receives)")
        self.assertIn("live ok", state["live"])
        time.sleep(2.5)   # a few samples in the charts
        self.screenshot("overview")

    def test_2_a_real_going_down_turns_red_within_one_refresh(self):
        DRIVER.get(f"{BASE}/status")
        self.wait_page(lambda s: any(r["real"] == f"{lab.real_ip(1)}:80" and r["state"] == "up" for r in s["reals"]), 15,
                       "rs1 up")
        lab.stop_service(1, "http80")
        try:
            def api_down():
                r = D2.real_report(DR_VIP, 80, 1)
                return r is not None and r.get("state") == "down"
            lab.wait_for(api_down, 20, interval=0.02, what="the API says rs1 is down")
            t_api = time.monotonic()
            row = lambda s: next(r for r in s["reals"] if r["real"] == f"{lab.real_ip(1)}:80" and r["service"] == f"tcp/{DR_VIP}/80")  # noqa: E731
            state = self.wait_page(lambda s: row(s)["state"] == "down", REFRESH + SLACK + 5, "rs1 down")
            late = time.monotonic() - t_api
            lab.log(f"\n  status page: rs1 red {late:.2f} s after the API said down (refresh {REFRESH:.0f} s)")
            self.assertLessEqual(late, REFRESH + SLACK, "the row turned red later than one refresh")
            r = row(state)
            rgb = [int(x) for x in r["background"][r["background"].index("(") + 1:].rstrip(")").split(",")[:3]]
            self.assertGreater(rgb[0], rgb[1] + 15, f"the row is not red: {r['background']}")
            self.assertFalse(r["in_pool"])
            self.assertEqual(r["weight"], 0)
            other = next(x for x in state["reals"] if x["real"] == f"{lab.real_ip(2)}:80" and x["service"] == r["service"])
            self.assertEqual(other["state"], "up")
            self.wait_page(lambda s: any(f"{lab.real_ip(1)}:80" in e and "is down" in e for e in s["events"]), 5,
                           "the health event")
            self.screenshot("real-down")
        finally:
            lab.start_service(1, "http80")
        self.wait_page(lambda s: row(s)["state"] == "up", 20, "rs1 back up")

    def test_3_a_vrrp_failover_shows_without_reload(self):
        DRIVER.get(f"{BASE}/status")
        self.wait_page(lambda s: s["vrrp"].get("VI_1", {}).get("state") == "BACKUP", 15, "VI_1 BACKUP")
        DRIVER.execute_script("window.__sameDocument = true;")
        D1.kill()
        t_kill = time.monotonic()
        state = self.wait_page(lambda s: all(s["vrrp"].get(i, {}).get("state") == "MASTER" for i in ("VI_1", "VI_2")),
                               20, "VI_1 and VI_2 MASTER")
        lab.log(f"\n  status page: MASTER shown {time.monotonic() - t_kill:.2f} s after director 1 was killed")
        self.assertTrue(DRIVER.execute_script("return window.__sameDocument === true;"), "the page was reloaded")
        state = self.wait_page(lambda s: any("VI_1: BACKUP -> MASTER" in e for e in s["events"]), 5, "the transition event")
        self.assertEqual(state["sync_role"], "master (sends)")
        self.assertIn("live ok", state["live"])
        self.assertEqual({i["instance"]: i["state"] for i in api("/api/v1/ha")["vrrp"]}, {"VI_1": "MASTER", "VI_2": "MASTER"})
        # Director 2 now serves the VIP: its traffic shows live, counters and rates.
        dr = f"tcp/{DR_VIP}/80"
        before = state["service_conns"][dr]
        answers = lab.http_spread(f"http://{DR_VIP}/", 20)
        self.assertGreaterEqual(sum(a.startswith("rs") for a in answers), 18, answers)
        conns = api("/api/v1/stats/services")
        want = next(s["conns"] for s in conns if s["vip"] == DR_VIP and s["port"] == 80)
        self.assertGreaterEqual(want, before + 18)
        self.wait_page(lambda s: s["service_conns"][dr] >= want and s["tile_cps"] > 0, 10, "the new connections and their rate")
        time.sleep(2)
        self.screenshot("failover")

    def test_4_keeps_working_with_a_clean_console(self):
        DRIVER.get(f"{BASE}/status")
        first = self.wait_page(lambda s: s["updated"] > 0, 15, "an update")["updated"]
        later = self.wait_page(lambda s: s["updated"] >= first + 2, 10, "two more updates")
        self.assertIn("live ok", later["live"])
        # The page's own requests: GET only, nothing from elsewhere.
        urls = DRIVER.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
        self.assertTrue(urls, "no request seen")
        self.assertEqual([u for u in urls if not u.startswith(BASE)], [], "requests outside rvsd")
        self.assertEqual(self.console_errors(), [])
        # The console check can fail: an error thrown by a script is recorded.
        DRIVER.execute_script("setTimeout(() => { throw new Error('planted by the test'); }, 0);")
        time.sleep(0.5)
        planted = [e for e in self.console_errors() if "planted by the test" in e.get("message", "")]
        self.assertTrue(planted, "a thrown error did not reach the console log")
        for e in planted:
            CONSOLE.remove(e)


if __name__ == "__main__":
    unittest.main()
