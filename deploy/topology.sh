#!/usr/bin/env bash
# rvs lab topology: a one-armed director on a single L2 segment, built from
# network namespaces and veth pairs.
#
#   deploy/topology.sh up [--reals N]   build (or rebuild) the topology, N = 2 (default) .. 9
#   deploy/topology.sh down             remove everything (safe when nothing is up)
#   deploy/topology.sh status           print what is up
#   deploy/topology.sh selfcheck        verify servers, ARP and the DR/NAT reply
#                                       paths without rvsd (kernel stand-in)
#   deploy/topology.sh up6              add IPv6 to an "up" topology (see below)
#   deploy/topology.sh down6            remove it again (IPv4 as after "up")
#   deploy/topology.sh selfcheck6       the selfcheck for IPv6 (needs up6)
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
# IPv6 (opt-in, so IPv4-only suites never see ND/MLD on the segment): "up6"
# enables IPv6 on the client and the reals (never on rvs-dir's dp0: rvsd
# owns it) with the addresses below, all "nodad" (no DAD wait), no router
# solicitations, no RA. The director (rvsd) is 2001:db8::1 and 2001:db8:1::1.
#   rvs-client:eth0  2001:db8::2/64, 2001:db8:1::/64 via 2001:db8::1
#   rvs-rsN:eth0     2001:db8:1::1N/64, default via 2001:db8:1::1; the IPv6
#                    DR/TUN VIPs 2001:db8::100 and ::102 on lo, replies from
#                    them straight to 2001:db8::/64 (table 100, as IPv4)
# and IPv6 twins of every server (httpd --bind ::, socat TCP6-LISTEN,
# echod --ipv6, each IPv6-only next to the IPv4 one) plus tun-decap --ipv6 on
# the TUN device ip6tun0 (IPv6-in-IPv6 and IPv4-in-IPv6 from the director).
# FULLNAT IPv6 local addresses (2001:db8:1::200..) are rvsd's, on-link.
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

# IPv6 (up6).
readonly CLIENT_IP6="2001:db8::2"
readonly DIR_IP6="2001:db8::1"          # rvsd on the client's subnet
readonly DIR_NET_GW6="2001:db8:1::1"    # rvsd on the reals' subnet
readonly DR_VIP6="2001:db8::100"
readonly TUN_VIP6="2001:db8::102"
readonly CLIENT_NET6="2001:db8::/64"
readonly REAL_NET6="2001:db8:1::/64"
readonly TUN6_DEV="ip6tun0"
real_ip6() { echo "2001:db8:1::1$1"; }

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

# ---------------------------------------------------------------------------
# up6 / down6: IPv6 on top of an "up" topology.
# ---------------------------------------------------------------------------

# The number of reals of the topology that is up (dies when none is).
reals_up() {
    [[ -f "$STATE_DIR/reals" ]] || die "topology is not up (run: $0 up)"
    cat "$STATE_DIR/reals"
}

# Stop the IPv6 servers of every real (pid files *.6-*.pid).
stop_ipv6_daemons() {
    local f pid i
    for f in "$STATE_DIR"/*.6-*.pid; do
        [[ -e "$f" ]] || continue
        pid="$(cat "$f")"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$f"
    done
}

topology_down6() {
    local reals n ns
    [[ -f "$STATE_DIR/reals" ]] || return 0
    reals="$(cat "$STATE_DIR/reals")"
    stop_ipv6_daemons
    for ((n = 1; n <= reals; n++)); do
        ns="rvs-rs$n"
        ns_exists "$ns" || continue
        while nsx "$ns" ip -6 rule del table "$DR_TABLE" 2>/dev/null; do :; done
        nsx "$ns" ip -6 route flush table "$DR_TABLE" 2>/dev/null || true
        ipv6_off "$ns"
    done
    ns_exists "$NS_CLIENT" && ipv6_off "$NS_CLIENT"
    if ns_exists "$NS_DIR"; then ipv6_off "$NS_DIR"; fi
    rm -f "$STATE_DIR/ipv6"
    log "down6"
}

start_real_services6() {
    local n="$1" ns="rvs-rs$1" i
    start_daemon "$ns" 6-httpd python3 "$HTTPD" --name "rs$n" --ports 80,8080 --bind ::
    start_daemon "$ns" 6-echo socat TCP6-LISTEN:9000,fork,reuseaddr,ipv6only=1 SYSTEM:"echo rs$n; exec cat"
    start_daemon "$ns" 6-echod python3 "$ECHOD" --name "rs$n" --tcp 9001 --udp 9053 --ipv6
    start_daemon "$ns" 6-tundecap python3 "$TUN_DECAP" --ipv6 "$TUN6_DEV"
    for ((i = 0; i < 100; i++)); do
        nsx "$ns" ip link show "$TUN6_DEV" >/dev/null 2>&1 && break
        sleep 0.05
    done
    nsx "$ns" ip link show "$TUN6_DEV" >/dev/null 2>&1 || {
        cat "$STATE_DIR/$ns.6-tundecap.log" >&2 || true
        die "tun-decap --ipv6 did not create $TUN6_DEV in $ns"
    }
    # IPv4-in-IPv6 inner packets come from clients not routed through it.
    nsx "$ns" sysctl -qw "net.ipv4.conf.$TUN6_DEV.rp_filter=0"
    nsx "$ns" sysctl -qw "net.ipv6.conf.$TUN6_DEV.disable_ipv6=0"
    nsx "$ns" ip link set "$TUN6_DEV" up
}

# Wait until every real listens on [::]:80, 8080, 9000, 9001 and UDP 9053.
wait_real_services6() {
    local reals="$1" n i port ok
    for ((n = 1; n <= reals; n++)); do
        for ((i = 0; i < 100; i++)); do
            ok=1
            for port in 80 8080 9000 9001; do
                nsx "rvs-rs$n" ss -Htln6 "sport = :$port" | grep -q LISTEN || ok=0
            done
            nsx "rvs-rs$n" ss -Huln6 "sport = :9053" | grep -q 9053 || ok=0
            ((ok)) && break
            sleep 0.1
        done
        ((ok)) || {
            tail -n 20 "$STATE_DIR"/rvs-rs"$n".6-*.log >&2 || true
            die "IPv6 servers in rvs-rs$n did not start"
        }
    done
}

topology_up6() {
    local reals n ns vip
    reals="$(reals_up)"
    topology_down6
    ipv6_on "$NS_CLIENT" lo eth0
    nsx "$NS_CLIENT" ip -6 addr add "$CLIENT_IP6/64" dev eth0 nodad
    nsx "$NS_CLIENT" ip -6 route add "$REAL_NET6" via "$DIR_IP6" dev eth0
    for ((n = 1; n <= reals; n++)); do
        ns="rvs-rs$n"
        ipv6_on "$ns" lo eth0
        nsx "$ns" ip -6 addr add "$(real_ip6 "$n")/64" dev eth0 nodad
        nsx "$ns" ip -6 route add default via "$DIR_NET_GW6" dev eth0
        # DR/TUN VIPs on lo (a Linux host answers NS only for addresses on
        # the interface asked on, so never for these on eth0); replies from
        # them go straight to the client's subnet, like IPv4's table.
        for vip in "$DR_VIP6" "$TUN_VIP6"; do
            nsx "$ns" ip -6 addr add "$vip/128" dev lo nodad
            nsx "$ns" ip -6 rule add from "$vip" table "$DR_TABLE"
        done
        nsx "$ns" ip -6 route add "$CLIENT_NET6" dev eth0 table "$DR_TABLE"
        start_real_services6 "$n"
    done
    wait_real_services6 "$reals"
    echo up >"$STATE_DIR/ipv6"
    log "up6: rvs-client $CLIENT_IP6, rvsd $DIR_IP6 / $DIR_NET_GW6, reals 1..$reals ($(real_ip6 1)..)"
}

# ---------------------------------------------------------------------------
# selfcheck6: the IPv6 paths without rvsd, the kernel standing in (dp0 gets
# IPv6 and the director's addresses for a while).
# ---------------------------------------------------------------------------

# The kernel director of step 4 forwards client <-> real traffic back out of
# dp0 and so sends ICMPv6 redirects ("the client is on-link"); a real that
# took one would answer NAT clients directly afterwards. Reals do not accept
# redirects (ipv6_on), and the route caches are flushed here all the same.
selfcheck6_cleanup() {
    ipv6_off "$NS_DIR"
    nsx "$NS_CLIENT" ip -6 neigh del "$DR_VIP6" dev eth0 2>/dev/null || true
    flush_neighbours
    local ns
    for ns in $(lab_namespaces); do
        nsx "$ns" ip -6 neigh flush all 2>/dev/null || true
        nsx "$ns" ip -6 route flush cache 2>/dev/null || true
    done
}

topology_selfcheck6() {
    local reals n out i rx
    reals="$(reals_up)"
    [[ -f "$STATE_DIR/ipv6" ]] || die "IPv6 is not up (run: $0 up6)"
    if [[ -n "$(ip netns pids "$NS_DIR" 2>/dev/null)" ]]; then
        die "processes are running in $NS_DIR (rvsd?); selfcheck6 needs it idle"
    fi
    SELFCHECK_FAILED=0
    trap selfcheck6_cleanup EXIT
    flush_neighbours

    # 1. The IPv6 servers answer inside each real.
    for ((n = 1; n <= reals; n++)); do
        local a6
        a6="$(real_ip6 "$n")"
        check "rs$n http [::]:80" "rs$n" "$(nsx "rvs-rs$n" curl -s --max-time 2 "http://[$a6]/")"
        check "rs$n http [::]:8080" "rs$n" "$(nsx "rvs-rs$n" curl -s --max-time 2 "http://[$a6]:8080/")"
        out="$(printf 'ping\n' | nsx "rvs-rs$n" socat -t2 -T3 - "TCP6:[$a6]:9000" | tr '\n' ' ')"
        check "rs$n echo [::]:9000" "rs$n ping " "$out"
        out="$(printf 'ping\n' | nsx "rvs-rs$n" socat -t2 -T3 - "TCP6:[$a6]:9001" | tr '\n' ' ')"
        check "rs$n echo [::]:9001" "rs$n ping " "$out"
        out="$(printf 'ping\n' | nsx "rvs-rs$n" socat -t1 -T2 - "UDP6:[$a6]:9053" | tr '\n' ' ')"
        check "rs$n udp echo [::]:9053" "rs$n ping " "$out"
        check "rs$n IPv4 http :80 unchanged" "rs$n" "$(nsx "rvs-rs$n" curl -s --max-time 2 "http://10.1.0.1$n/")"
    done

    # 2. Nobody answers NS for the DR VIP while dp0 has no IPv6.
    nsx "$NS_CLIENT" ping -6 -c1 -W1 "$DR_VIP6" >/dev/null 2>&1 || true
    out="$(nsx "$NS_CLIENT" ip -6 neigh show "$DR_VIP6" dev eth0 | grep -o 'lladdr [0-9a-f:]*' || true)"
    check "no real answers NS for the IPv6 DR VIP" "" "$out"

    # 3. DR leg: the client sends to the VIP at rs N's MAC; rs N answers from
    #    the VIP straight to the client (table $DR_TABLE).
    for ((n = 1; n <= reals; n++)); do
        nsx "$NS_CLIENT" ip -6 neigh replace "$DR_VIP6" lladdr "$(mac_real "$n")" dev eth0 nud permanent
        check "IPv6 DR reply path rs$n -> client" "rs$n" \
            "$(nsx "$NS_CLIENT" curl -s --max-time 2 "http://[$DR_VIP6]/")"
    done
    nsx "$NS_CLIENT" ip -6 neigh del "$DR_VIP6" dev eth0

    # 4. NAT leg: the kernel routes in rvs-dir with the director's addresses.
    ipv6_on "$NS_DIR" lo dp0
    nsx "$NS_DIR" ip -6 addr add "$DIR_IP6/64" dev dp0 nodad
    nsx "$NS_DIR" ip -6 addr add "$DIR_NET_GW6/64" dev dp0 nodad
    nsx "$NS_DIR" sysctl -qw net.ipv6.conf.all.forwarding=1
    for ((n = 1; n <= reals; n++)); do
        check "IPv6 routed path client -> rs$n -> client" "rs$n" \
            "$(nsx "$NS_CLIENT" curl -s --max-time 2 "http://[$(real_ip6 "$n")]/")"
    done

    # 5. TUN leg: rvs-dir sends each real IPv6-in-IPv6 (next header 41) and
    #    IPv4-in-IPv6 (next header 4) holding a UDP datagram to the TUN VIP
    #    :9053; the real decapsulates (tun-decap --ipv6) and answers the
    #    client from the VIP.
    for ((n = 1; n <= reals; n++)); do
        local fam
        for fam in 6 4; do
            if [[ $fam == 6 ]]; then
                nsx "$NS_CLIENT" timeout 3 socat -u "UDP6-RECV:40053,bind=[$CLIENT_IP6]" - \
                    >"$STATE_DIR/selfcheck.tun6" 2>/dev/null &
            else
                nsx "$NS_CLIENT" timeout 3 socat -u "UDP4-RECV:40053,bind=$CLIENT_IP" - \
                    >"$STATE_DIR/selfcheck.tun6" 2>/dev/null &
            fi
            rx=$!
            for ((i = 0; i < 50; i++)); do
                nsx "$NS_CLIENT" ss -Huln "sport = :40053" | grep -q 40053 && break
                sleep 0.05
            done
            nsx "$NS_DIR" python3 - "$(real_ip6 "$n")" "$fam" "$CLIENT_IP6" "$TUN_VIP6" "$CLIENT_IP" \
                "$TUN_VIP" <<'PYEOF'
import socket, struct, sys
real, fam, client6, vip6, client4, vip4 = sys.argv[1:7]
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
data = b"tun6 selfcheck\n"
if fam == "6":
    src, dst = socket.inet_pton(socket.AF_INET6, client6), socket.inet_pton(socket.AF_INET6, vip6)
    udp = struct.pack("!HHHH", 40053, 9053, 8 + len(data), 0) + data
    c = csum(src + dst + struct.pack("!IxxxB", len(udp), 17) + udp)
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    inner = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64) + src + dst + udp
    proto = 41
else:
    udp = struct.pack("!HHHH", 40053, 9053, 8 + len(data), 0) + data
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                    socket.inet_aton(client4), socket.inet_aton(vip4))
    inner = h[:10] + struct.pack("!H", csum(h)) + h[12:] + udp
    proto = 4
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
s.sendto(inner, (real, 0))
PYEOF
            wait "$rx" || true
            check "TUN path: IPv$fam-in-IPv6 to rs$n decapsulated, answered from the VIP" \
                "rs$n tun6 selfcheck " "$(tr '\n' ' ' <"$STATE_DIR/selfcheck.tun6")"
        done
    done

    selfcheck6_cleanup
    trap - EXIT
    if ((SELFCHECK_FAILED)); then
        die "selfcheck6 failed"
    fi
    log "selfcheck6 passed"
}

usage() {
    echo "usage: $0 up [--reals N] | down | status | selfcheck | up6 | down6 | selfcheck6" >&2
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
        up6) topology_up6 ;;
        down6) topology_down6 ;;
        selfcheck6) topology_selfcheck6 ;;
        *) usage ;;
    esac
}

main "$@"
