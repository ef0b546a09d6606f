#!/usr/bin/env bash
# rvs lab topology: a one-armed director on a single L2 segment, built from
# network namespaces and veth pairs.
#
#   deploy/topology.sh up [--reals N]   build (or rebuild) the topology, N = 2 (default) .. 9
#   deploy/topology.sh down             remove everything (safe when nothing is up)
#   deploy/topology.sh status           print what is up
#   deploy/topology.sh selfcheck        verify servers, ARP and the DR/NAT reply
#                                       paths without rvsd (kernel stand-in)
#
#                          rvs-sw (bridge br0)
#        +----------------+-------+---------+--------- ... -+
#   client-sw          dir-sw  rs1-sw    rs2-sw          rsN-sw
#        |                |       |         |               |
#   rvs-client:eth0  rvs-dir:dp0  rvs-rs1:eth0 rvs-rs2:eth0  rvs-rsN:eth0
#   10.0.0.2/24      (no IP:      10.1.0.11/24 10.1.0.12/24  10.1.0.1N/24
#                    DPDK owns it  + VIPs 10.0.0.100/32 (DR) and 10.0.0.102/32
#                    via af_packet; (TUN) on lo
#                    rvsd = 10.0.0.1, 10.1.0.1)
#
# Each real server runs
#   - tests/e2e/httpd.py on :80 and :8080 (body "rsN\n"),
#   - a socat echo service on :9000 (banner "rsN\n", then echo),
#   - tests/e2e/echod.py: the same banner + echo on TCP :9001 for thousands of
#     concurrent connections, and UDP :9053 answering "rsN\n" + the datagram
#     from the address it was sent to (VIP for DR/TUN, the real's for NAT/FULLNAT),
#   - deploy/tun-decap.py on the TUN device ipip0: IPIP from the director is
#     decapsulated (the kernel here has no ipip module) and the inner packet
#     delivered to the VIP on lo, so the real answers the client directly.
# FULLNAT local addresses (10.1.0.200-203) are rvsd's: the reals reach them
# on-link (rvsd answers ARP for them).
#
# Idempotent: "up" on a healthy topology with the same number of reals does
# nothing; otherwise it tears down whatever exists and builds from scratch.
# Everything lives in namespaces, so no traffic ever reaches the host's
# network; "down" kills every process in the lab namespaces and deletes them.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
readonly HTTPD="$REPO_ROOT/tests/e2e/httpd.py"
readonly ECHOD="$REPO_ROOT/tests/e2e/echod.py"
readonly TUN_DECAP="$REPO_ROOT/deploy/tun-decap.py"
readonly STATE_DIR="${RVS_LAB_STATE:-/run/rvs-lab}"

readonly NS_SW="rvs-sw"
readonly NS_CLIENT="rvs-client"
readonly NS_DIR="rvs-dir"
readonly CLIENT_IP="10.0.0.2"
readonly DIR_NET_GW="10.1.0.1"        # rvsd's address on the reals' subnet
readonly DR_VIP="10.0.0.100"
readonly TUN_VIP="10.0.0.102"
readonly TUN_DEV="ipip0"
readonly CLIENT_NET="10.0.0.0/24"
readonly DR_TABLE=100
readonly MAX_REALS=9

# Fixed, locally administered MACs make captures easy to read.
readonly MAC_DIR="02:00:00:00:00:01"
readonly MAC_CLIENT="02:00:00:00:00:02"
mac_real() { printf '02:00:00:00:01:%02x' "$((0x10 + $1))"; }   # rs1 -> ...:01:11

log() { echo "topology: $*" >&2; }
die() { echo "topology: error: $*" >&2; exit 1; }

# All lab namespaces that currently exist (rvs-sw, rvs-client, rvs-dir, rvs-rsN).
lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^rvs-(sw|client|dir|rs[0-9]+)$' || true
}

# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/netns-lib.sh"

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------

topology_down() {
    [[ -n "$(lab_namespaces)" ]] || { rm -rf "$STATE_DIR"; return 0; }
    delete_lab_namespaces
    rm -rf "$STATE_DIR"
    log "down"
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------

make_client() {
    # rp_filter off (see make_host). The client has only 10.0.0.0/24 (no
    # default route): the VIPs 10.0.0.100/.101 are on-link, so it ARPs for
    # them and rvsd answers.
    make_host "$NS_CLIENT" client-sw "$MAC_CLIENT" "$CLIENT_IP"
}

make_director() {
    # rvsd owns 10.0.0.1 and 10.1.0.1 on dp0.
    make_director_host "$NS_DIR" dir-sw "$MAC_DIR"
}

# Real server N: 10.1.0.1N; the DR and TUN VIPs on lo; NAT replies go back
# through rvsd's 10.1.0.1.
make_real() {
    local n="$1"
    make_real_host "rvs-rs$n" "rs$n-sw" "$(mac_real "$n")" "10.1.0.1$n" "$DIR_NET_GW" "$DR_VIP" "$TUN_VIP"
    start_real_services "$n"
}

start_real_services() {
    local n="$1" ns="rvs-rs$1" i
    start_daemon "$ns" httpd python3 "$HTTPD" --name "rs$n" --ports 80,8080
    # socat echo: banner "rsN\n" then echo everything back.
    start_daemon "$ns" echo socat TCP-LISTEN:9000,fork,reuseaddr SYSTEM:"echo rs$n; exec cat"
    # Many-connection TCP echo (:9001) and UDP echo (:9053).
    start_daemon "$ns" echod python3 "$ECHOD" --name "rs$n" --tcp 9001 --udp 9053
    # TUN: decapsulate IPIP into $TUN_DEV; the inner packet's VIP is on lo.
    start_daemon "$ns" tundecap python3 "$TUN_DECAP" "$TUN_DEV"
    for ((i = 0; i < 100; i++)); do
        nsx "$ns" ip link show "$TUN_DEV" >/dev/null 2>&1 && break
        sleep 0.05
    done
    nsx "$ns" ip link show "$TUN_DEV" >/dev/null 2>&1 || {
        cat "$STATE_DIR/$ns.tundecap.log" >&2 || true
        die "tun-decap did not create $TUN_DEV in $ns"
    }
    # Packets arrive on ipip0 from clients it has no route to: no rp_filter.
    nsx "$ns" sysctl -qw "net.ipv4.conf.$TUN_DEV.rp_filter=0"
    nsx "$ns" ip link set "$TUN_DEV" up
}

# Wait until every real listens on 80, 8080, 9000, 9001 and UDP 9053.
wait_real_services() {
    local reals="$1" n i port ok
    for ((n = 1; n <= reals; n++)); do
        for ((i = 0; i < 100; i++)); do
            ok=1
            for port in 80 8080 9000 9001; do
                nsx "rvs-rs$n" ss -Htln "sport = :$port" | grep -q LISTEN || ok=0
            done
            nsx "rvs-rs$n" ss -Huln "sport = :9053" | grep -q 9053 || ok=0
            ((ok)) && break
            sleep 0.1
        done
        ((ok)) || {
            tail -n 20 "$STATE_DIR"/rvs-rs"$n".*.log >&2 || true
            die "servers in rvs-rs$n did not start"
        }
    done
}

# Is the topology up, with $1 reals and all their servers alive?
topology_healthy() {
    local reals="$1" n ns
    [[ -f "$STATE_DIR/reals" && "$(cat "$STATE_DIR/reals")" == "$reals" ]] || return 1
    for ns in "$NS_SW" "$NS_CLIENT" "$NS_DIR"; do ns_exists "$ns" || return 1; done
    for ((n = 1; n <= reals; n++)); do
        ns_exists "rvs-rs$n" || return 1
        # Cheap sanity check that the real's DR/TUN policy routes and the
        # TUN device are still there (an older topology lacks them).
        nsx "rvs-rs$n" ip rule show | grep -q "from $DR_VIP lookup $DR_TABLE" || return 1
        nsx "rvs-rs$n" ip rule show | grep -q "from $TUN_VIP lookup $DR_TABLE" || return 1
        nsx "rvs-rs$n" ip link show "$TUN_DEV" up 2>/dev/null | grep -q UP || return 1
    done
    # No extra reals left over from a bigger topology.
    ns_exists "rvs-rs$((reals + 1))" && return 1
    daemons_alive
}

topology_up() {
    local reals="$1" n
    [[ -f "$HTTPD" && -f "$ECHOD" && -f "$TUN_DECAP" ]] || die "missing $HTTPD, $ECHOD or $TUN_DECAP"
    require_tools ip ethtool sysctl socat ss python3 setsid
    if topology_healthy "$reals"; then
        log "already up ($reals reals)"
        return 0
    fi
    topology_down
    mkdir -p "$STATE_DIR"
    make_switch
    make_client
    make_director
    for ((n = 1; n <= reals; n++)); do make_real "$n"; done
    wait_real_services "$reals"
    echo "$reals" >"$STATE_DIR/reals"
    log "up: rvs-client 10.0.0.2, rvs-dir dp0 ($MAC_DIR, no IP), reals 1..$reals (10.1.0.11..)"
}

# ---------------------------------------------------------------------------
# selfcheck: verify the topology without rvsd, using the kernel as a stand-in.
# Must not run while rvsd is running (it briefly gives dp0 kernel addresses).
# ---------------------------------------------------------------------------

check() {   # check DESCRIPTION EXPECTED ACTUAL
    if [[ "$2" == "$3" ]]; then
        log "ok: $1"
    else
        log "FAIL: $1: expected '$2', got '$3'"
        SELFCHECK_FAILED=1
    fi
}

flush_neighbours() {
    local ns
    for ns in $(lab_namespaces); do nsx "$ns" ip neigh flush all 2>/dev/null || true; done
}

# Undo everything selfcheck may have added (also used by the EXIT trap).
selfcheck_cleanup() {
    nsx "$NS_DIR" ip addr flush dev dp0 2>/dev/null || true
    nsx "$NS_DIR" sysctl -qw net.ipv4.ip_forward=0 2>/dev/null || true
    if [[ -n "${DP0_SYSCTLS:-}" ]]; then
        # shellcheck disable=SC2086
        nsx "$NS_DIR" sysctl -qw $DP0_SYSCTLS 2>/dev/null || true
    fi
    nsx "$NS_CLIENT" ip route del 10.1.0.0/24 2>/dev/null || true
    nsx "$NS_CLIENT" ip neigh del "$DR_VIP" dev eth0 2>/dev/null || true
    flush_neighbours
}

topology_selfcheck() {
    local reals n out i
    [[ -f "$STATE_DIR/reals" ]] || die "topology is not up"
    reals="$(cat "$STATE_DIR/reals")"
    if [[ -n "$(ip netns pids "$NS_DIR" 2>/dev/null)" ]]; then
        die "processes are running in $NS_DIR (rvsd?); selfcheck needs it idle"
    fi
    SELFCHECK_FAILED=0
    trap selfcheck_cleanup EXIT
    flush_neighbours

    # 1. Servers answer inside each real.
    for ((n = 1; n <= reals; n++)); do
        check "rs$n http :80" "rs$n" "$(nsx "rvs-rs$n" curl -s --max-time 2 "http://10.1.0.1$n/")"
        check "rs$n http :8080" "rs$n" "$(nsx "rvs-rs$n" curl -s --max-time 2 "http://10.1.0.1$n:8080/")"
        out="$(printf 'ping\n' | nsx "rvs-rs$n" socat -t2 -T3 - "TCP:10.1.0.1$n:9000" | tr '\n' ' ')"
        check "rs$n echo :9000" "rs$n ping " "$out"
        out="$(printf 'ping\n' | nsx "rvs-rs$n" socat -t2 -T3 - "TCP:10.1.0.1$n:9001" | tr '\n' ' ')"
        check "rs$n echo :9001" "rs$n ping " "$out"
        out="$(printf 'ping\n' | nsx "rvs-rs$n" socat -t1 -T2 - "UDP:10.1.0.1$n:9053" | tr '\n' ' ')"
        check "rs$n udp echo :9053" "rs$n ping " "$out"
        out="$(nsx "rvs-rs$n" ip -o link show "$TUN_DEV" 2>/dev/null | grep -o 'state [A-Z]*' || true)"
        [[ "$out" == "state UNKNOWN" || "$out" == "state UP" ]] && out=up
        check "rs$n $TUN_DEV up (tun-decap running)" "up" "$out"
    done

    # 2. Nobody but the director may answer ARP for the DR VIP (arp_ignore=1):
    #    dp0 has no IP now, so the client's ARP must stay unanswered.
    nsx "$NS_CLIENT" ping -c1 -W1 "$DR_VIP" >/dev/null 2>&1 || true
    out="$(nsx "$NS_CLIENT" ip neigh show "$DR_VIP" dev eth0 | grep -o 'lladdr [0-9a-f:]*' || true)"
    check "no real answers ARP for the DR VIP" "" "$out"

    # 3. DR leg: pretend the director forwarded to rs1 (static neighbour
    #    VIP -> rs1's MAC). rs1 accepts the VIP (on lo) and replies from the
    #    VIP straight to the client (table $DR_TABLE); to do so it ARPs for
    #    10.0.0.2 with sender 10.1.0.11, which the client must answer.
    for ((n = 1; n <= reals; n++)); do
        nsx "$NS_CLIENT" ip neigh replace "$DR_VIP" lladdr "$(mac_real "$n")" dev eth0 nud permanent
        check "DR reply path rs$n -> client" "rs$n" \
            "$(nsx "$NS_CLIENT" curl -s --max-time 2 "http://$DR_VIP/")"
        out="$(nsx "rvs-rs$n" ip neigh show "$CLIENT_IP" dev eth0 | grep -o 'lladdr [0-9a-f:]*' || true)"
        check "rs$n resolved the client directly (off-subnet ARP answered)" "lladdr $MAC_CLIENT" "$out"
    done
    nsx "$NS_CLIENT" ip neigh del "$DR_VIP" dev eth0

    # 4. NAT leg: the kernel routes in rvs-dir (addresses on dp0, forwarding
    #    on); the reals' replies must come back via their default route.
    #    rvsd keeps the kernel off its port (arp_ignore=8, rp_filter=1 on
    #    dp0) and leaves it so; the stand-in needs them off for a while.
    DP0_SYSCTLS="$(nsx "$NS_DIR" sysctl -e net.ipv4.conf.dp0.arp_ignore net.ipv4.conf.dp0.rp_filter \
        | tr -d ' ' | tr '\n' ' ')"
    nsx "$NS_DIR" sysctl -qw net.ipv4.conf.dp0.arp_ignore=0 net.ipv4.conf.dp0.rp_filter=0
    nsx "$NS_DIR" ip addr add 10.0.0.1/24 dev dp0
    nsx "$NS_DIR" ip addr add 10.1.0.1/24 dev dp0
    nsx "$NS_DIR" sysctl -qw net.ipv4.ip_forward=1
    nsx "$NS_CLIENT" ip route add 10.1.0.0/24 via 10.0.0.1
    for ((n = 1; n <= reals; n++)); do
        check "routed path client -> rs$n -> client" "rs$n" \
            "$(nsx "$NS_CLIENT" curl -s --max-time 2 "http://10.1.0.1$n/")"
        out="$(nsx "rvs-rs$n" ip neigh show 10.1.0.1 dev eth0 | grep -o 'lladdr [0-9a-f:]*' || true)"
        check "rs$n reaches the director's 10.1.0.1" "lladdr $MAC_DIR" "$out"
    done

    # 5. TUN leg: rvs-dir (kernel, 10.1.0.1) sends each real an IPIP packet
    #    whose inner packet is a UDP datagram client -> TUN VIP :9053; the
    #    real decapsulates it (tun-decap) and answers the client from the VIP.
    for ((n = 1; n <= reals; n++)); do
        nsx "$NS_CLIENT" timeout 3 socat -u UDP-RECV:40053,bind="$CLIENT_IP" - \
            >"$STATE_DIR/selfcheck.tun" 2>/dev/null &
        local rx=$!
        for ((i = 0; i < 50; i++)); do
            nsx "$NS_CLIENT" ss -Huln "sport = :40053" | grep -q 40053 && break
            sleep 0.05
        done
        nsx "$NS_DIR" python3 - "10.1.0.1$n" "$CLIENT_IP" "$TUN_VIP" <<'PYEOF'
import socket, struct, sys
real, client, vip = sys.argv[1:4]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
def ip(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
data = b"tun selfcheck\n"
udp = struct.pack("!HHHH", 40053, 9053, 8 + len(data), 0) + data
pkt = ip("10.1.0.1", real, 4, ip(client, vip, 17, udp))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(pkt, (real, 0))
PYEOF
        wait "$rx" || true
        check "TUN path: IPIP to rs$n decapsulated, answered from the VIP" "rs$n tun selfcheck " \
            "$(tr '\n' ' ' <"$STATE_DIR/selfcheck.tun")"
    done

    selfcheck_cleanup
    trap - EXIT
    if ((SELFCHECK_FAILED)); then
        die "selfcheck failed"
    fi
    log "selfcheck passed"
}

usage() {
    echo "usage: $0 up [--reals N] | down | status | selfcheck" >&2
    exit 2
}

main() {
    local cmd="${1:-}" reals=2
    [[ -n "$cmd" ]] || usage
    shift
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --reals) reals="${2:-}"; shift 2 || usage ;;
            --reals=*) reals="${1#*=}"; shift ;;
            *) usage ;;
        esac
    done
    [[ "$reals" =~ ^[1-9]$ && "$reals" -le $MAX_REALS ]] || die "--reals must be 1..$MAX_REALS"
    require_root
    case "$cmd" in
        up) topology_up "$reals" ;;
        down) topology_down ;;
        status) topology_status ;;
        selfcheck) topology_selfcheck ;;
        *) usage ;;
    esac
}

main "$@"
