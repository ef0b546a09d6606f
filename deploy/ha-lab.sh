#!/usr/bin/env bash
# deploy/ha-lab.sh — a failover demo in the two-director lab (deploy/ha-topology.sh).
#
#   deploy/ha-lab.sh [--advert-int 1|0.1] [--keep]
#
# Starts rvsd in rvsha-d1 (VRRP priority 150) and rvsha-d2 (100) with the
# lab's DR / NAT / FULLNAT services, VRRP (two instances in a sync group:
# client VIPs and the reals' gateway + FULLNAT local address) and connection
# sync; a client in rvsha-client sends a UDP request every 10 ms to the NAT VIP
# and a socat stream runs through the FULLNAT VIP. Then it SIGKILLs the master,
# prints the outage the client saw, shows that the stream survived, brings the
# old master back (it preempts) and stops everything. --advert-int 0.1 uses
# VRRPv3 (centisecond adverts). --keep leaves the lab (and nothing else) up.
#
# Needs root and target/release/rvsd (cargo build --release).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
ADVERT_INT=1
KEEP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --advert-int) ADVERT_INT="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "usage: $0 [--advert-int 1|0.1] [--keep]" >&2; exit 2 ;;
    esac
done
[[ $EUID -eq 0 ]] || { echo "ha-lab: must run as root" >&2; exit 1; }

bash "$SCRIPT_DIR/ha-topology.sh" up
cleanup() {
    if [[ $KEEP -eq 0 ]]; then bash "$SCRIPT_DIR/ha-topology.sh" down; fi
}
trap cleanup EXIT

cd "$REPO_ROOT/tests/e2e"
ADVERT_INT="$ADVERT_INT" python3 - <<'EOF'
import os, time
import halab as lab

adv = float(os.environ["ADVERT_INT"])
version = 2 if adv >= 1 else 3
say = lambda *a: print("ha-lab:", *a, flush=True)
d1 = lab.Director(1, lab.director_config(1, vrrp=lab.vrrp_config(150, adv, version)))
d2 = lab.Director(2, lab.director_config(2, vrrp=lab.vrrp_config(100, adv, version)))
stream = None
try:
    d1.start(); d1.wait_vrrp("MASTER", 3 * adv + 5)
    d2.start(); d2.wait_vrrp("BACKUP", 5)
    say(f"VRRP v{version} advert_int {adv}: d1 {d1.vrrp_states()}  d2 {d2.vrrp_states()}")
    say("client spread over the NAT VIP:", lab.tally(lab.http_spread(f"http://{lab.NAT_VIP}/", 6)))
    stream = lab.Stream(lab.FNAT_VIP, 9000, lines=int(max(60, 50 * adv + 40)), interval=0.1)
    lab.wait_for(stream.banner, 5, what="stream banner")
    say(f"socat stream through the FULLNAT VIP to {stream.banner()}")
    prober = lab.Prober(duration=120)
    time.sleep(1)
    t = d1.kill()
    say("SIGKILLed the master (d1)")
    d2.wait_vrrp("MASTER", 3 * adv + 5)
    time.sleep(1)
    res = prober.analyse(t)
    bound = lab.master_down(adv, 100, version) + 0.1
    say(f"d2 is MASTER; the client saw an outage of {res['outage'] * 1000:.0f} ms "
        f"(3 x advert_int + skew + 100 ms = {bound * 1000:.0f} ms)")
    say("client's ARP entry for the NAT VIP:", lab.neighbour_mac(lab.NS_CLIENT, lab.NAT_VIP),
        "(d2 is", lab.DIRECTORS[2]["mac"] + ")")
    rc = stream.wait(60)
    ok = stream.received() == stream.banner().encode() + b"\n" + stream.sent.read_bytes()
    say(f"FULLNAT stream after the failover: {'intact, byte for byte' if ok else 'BROKEN'} (socat rc {rc})")
    d1.start()
    d1.wait_vrrp("MASTER", 3 * adv + 5)
    say("d1 is back and preempted: d1", d1.vrrp_states(), " d2", d2.vrrp_states())
finally:
    if stream:
        stream.cleanup()
    d1.cleanup(); d2.cleanup()
EOF
