#!/usr/bin/env bash
# deploy/ha-topology.sh up|down|status — the two-director HA lab for rvs.
#
#                              rvsha-sw (bridge br0)
#   +-------------+-------------+-------------+-----------+-----------+------------+
#   client-sw     d1-sw         d2-sw         rs1-sw      rs2-sw      sorry-sw     ka-sw
#   |             |             |             |           |           |            |
#   rvsha-client  rvsha-d1:dp0  rvsha-d2:dp0  rvsha-rs1   rvsha-rs2   rvsha-sorry  rvsha-ka:eth0
#   10.0.0.2/24   (no kernel IP: rvsd owns   10.1.0.11   10.1.0.12   10.1.0.99    10.0.0.4/24
#                 it via af_packet; its TAP  (default route via the  (sorry       (a Keepalived
#                 rvs0 gets the port         VRRP router address     server)      director peer)
#                 addresses)                 10.1.0.254)
#                 d1: 10.0.0.1, 10.1.0.1
#                 d2: 10.0.0.3, 10.1.0.3
#
# Addresses that move with the VRRP master (configured in rvsd, not here):
#   10.0.0.100 (DR VIP), 10.0.0.101 (NAT VIP), 10.0.0.102 (FULLNAT VIP)
#   10.1.0.254 (the reals' default gateway), 10.1.0.200 (FULLNAT local address)
#
# Every real server runs:
#   :80, :8080  tests/e2e/httpd.py, body "rsN\n" (one process per port, so a
#               test can stop one port: $STATE_DIR/rvsha-rsN.http80.pid, ...)
#   :9000       socat echo: banner "rsN\n", then echo          (.echo.pid)
#   :9001/udp   UDP echo: "rsN <payload>"                      (.udp.pid)
#   :53/udp     DNS responder: A queries -> 10.1.0.1N          (.dns.pid)
# rvsha-sorry runs httpd "sorry" on :80; rvsha-ka runs httpd "ka" on :80 (the
# DR VIP answers "ka" while keepalived holds it).
# $STATE_DIR/misc-check.sh REAL PORT is the MISC_CHECK script (run by rvsd in
# the director's namespace: an HTTP GET through the exception path).
#
# IPv6 (opt-in: `up6` on top of `up`, `down6` removes it; IPv4-only tests
# never see ND/MLD on the segment). All addresses "nodad", no RA/RS:
#   rvsha-client:eth0  2001:db8::2/64
#   rvsha-rsN:eth0     2001:db8:1::1N/64, default via 2001:db8:1::254 (the
#                      reals' IPv6 gateway, held by the VRRP master); the
#                      IPv6 DR VIP 2001:db8::100 on lo, replies from it
#                      straight to 2001:db8::/64 (table 100, as IPv4)
#   directors          rvsd's port addresses (d1 2001:db8::1, 2001:db8:1::1;
#                      d2 ::3) go on its TAP, which rvsd gives IPv6
# and IPv6 twins of the reals' :80 (httpd --bind ::), :9000 (socat
# TCP6-LISTEN echo, banner "rsN") and :9001/udp (UDP echo "rsN <payload>"),
# pid files rvsha-rsN.6-http80 / .6-echo / .6-udp.
# IPv6 addresses that move with the VRRP master (configured in rvsd):
#   2001:db8::100 (DR), ::101 (NAT), ::102 (FULLNAT), 2001:db8:1::254
#   (the reals' gateway), 2001:db8:1::200 (FULLNAT local address).
#
# The lab uses only its own namespaces (rvsha-*): no traffic reaches the host
# network. `up` is idempotent (rebuilds when anything is missing); `down`
# kills every process in the rvsha-* namespaces and deletes them.
# `restart-service NS NAME` / `stop-service NS NAME` let tests stop and start
# one daemon (NAME: http80, http8080, echo, udp, dns).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
readonly HTTPD="$REPO_ROOT/tests/e2e/httpd.py"
readonly STATE_DIR="${RVSHA_LAB_STATE:-/run/rvsha-lab}"

readonly NS_SW="rvsha-sw"
readonly NS_CLIENT="rvsha-client"
readonly NS_KA="rvsha-ka"
readonly NS_SORRY="rvsha-sorry"
readonly DR_VIP="10.0.0.100"
readonly GATEWAY="10.1.0.254"
readonly CLIENT_NET="10.0.0.0/24"
readonly DR_TABLE=100
readonly REALS=2

readonly CLIENT_IP6="2001:db8::2"
readonly CLIENT_NET6="2001:db8::/64"
readonly DR_VIP6="2001:db8::100"
readonly GATEWAY6="2001:db8:1::254"
real_ip6() { echo "2001:db8:1::1$1"; }

readonly MAC_CLIENT="02:00:00:aa:00:02"
readonly MAC_KA="02:00:00:aa:00:04"
readonly MAC_SORRY="02:00:00:aa:01:99"
mac_dir() { printf '02:00:00:aa:00:%02x' "$1"; }        # d1 -> :01, d2 -> :03
mac_real() { printf '02:00:00:aa:01:%02x' "$((0x10 + $1))"; }

log() { echo "ha-topology: $*" >&2; }
die() { echo "ha-topology: error: $*" >&2; exit 1; }

lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' \
        | grep -E '^rvsha-(sw|client|d[12]|rs[0-9]+|sorry|ka)$' || true
}

# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/netns-lib.sh"

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------

topology_down() {
    delete_lab_namespaces
    rm -rf "$STATE_DIR"
    log "down"
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------

# The switch ages MACs out quickly: after a failover frames must not keep
# flooding towards a dead port for long (the new master's GARP re-teaches anyway).
make_ha_switch() {
    make_switch
    nsx "$NS_SW" ip link set br0 type bridge ageing_time 3000
}

# Hosts with a kernel address have rp_filter off (see make_host: the reals
# ARP for the client from their 10.1.0.x address in DR mode).
make_client() {
    make_host "$NS_CLIENT" client-sw "$MAC_CLIENT" 10.0.0.2
}

make_director() {   # make_director N  (rvsha-dN, dp0 without kernel IP)
    local n="$1"
    make_director_host "rvsha-d$n" "d$n-sw" "$(mac_dir $((2 * n - 1)))"
}

make_keepalived_host() {
    make_host "$NS_KA" ka-sw "$MAC_KA" 10.0.0.4
    # The DR VIP answers "ka" while keepalived holds it on eth0.
    start_daemon "$NS_KA" http80 python3 "$HTTPD" --name ka --ports 80
}

make_sorry() {
    make_host "$NS_SORRY" sorry-sw "$MAC_SORRY" 10.1.0.99
    nsx "$NS_SORRY" ip route add default via "$GATEWAY" dev eth0
    start_daemon "$NS_SORRY" http80 python3 "$HTTPD" --name sorry --ports 80
}

# Real server N: 10.1.0.1N, the DR VIP on lo; NAT and FULLNAT replies go
# through whichever director is VRRP master (the gateway address moves).
make_real() {
    local n="$1" svc
    make_real_host "rvsha-rs$n" "rs$n-sw" "$(mac_real "$n")" "10.1.0.1$n" "$GATEWAY" "$DR_VIP"
    for svc in http80 http8080 echo udp dns; do start_service "rvsha-rs$n" "$svc"; done
}

# start_service NS NAME: one of a real server's daemons.
start_service() {
    local ns="$1" name="$2" n
    n="${ns#rvsha-rs}"
    case "$name" in
        http80) start_daemon "$ns" http80 python3 "$HTTPD" --name "rs$n" --ports 80 ;;
        http8080) start_daemon "$ns" http8080 python3 "$HTTPD" --name "rs$n" --ports 8080 ;;
        echo) start_daemon "$ns" echo socat TCP-LISTEN:9000,fork,reuseaddr SYSTEM:"echo rs$n; exec cat" ;;
        udp) start_daemon "$ns" udp python3 "$STATE_DIR/udpd.py" udp "rs$n" 9001 ;;
        dns) start_daemon "$ns" dns python3 "$STATE_DIR/udpd.py" dns "10.1.0.1$n" 53 ;;
        *) die "unknown service $name" ;;
    esac
}

stop_service() {
    local ns="$1" name="$2" f pid
    f="$STATE_DIR/$ns.$name.pid"
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f")"
    # setsid made the daemon a process-group leader: end the group at once
    # (socat's forked children too); the kernel closes its sockets, so the
    # port answers RST / ICMP port unreachable from now on.
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    # Gone, or a zombie waiting for init to reap it (its sockets are closed).
    for _ in $(seq 100); do
        [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" == [^Z]* ]] || break
        sleep 0.02
    done
    rm -f "$f"
}

port_of() {
    case "$1" in
        http80) echo "tcp 80" ;; http8080) echo "tcp 8080" ;; echo) echo "tcp 9000" ;;
        udp) echo "udp 9001" ;; dns) echo "udp 53" ;;
    esac
}

wait_listening() {   # wait_listening NS NAME
    local ns="$1" name="$2" proto port i
    read -r proto port <<<"$(port_of "$name")"
    for ((i = 0; i < 100; i++)); do
        if [[ "$proto" == tcp ]]; then
            nsx "$ns" ss -Htln "sport = :$port" | grep -q LISTEN && return 0
        else
            nsx "$ns" ss -Huln "sport = :$port" | grep -q . && return 0
        fi
        sleep 0.05
    done
    tail -n 20 "$STATE_DIR/$ns.$name.log" >&2 || true
    die "$name did not start in $ns"
}

write_helpers() {
    # UDP echo and a DNS responder in one tiny stdlib-only program.
    cat >"$STATE_DIR/udpd.py" <<'EOF'
import socket, struct, sys
mode, arg, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
bind = sys.argv[4] if len(sys.argv) > 4 else "0.0.0.0"   # "::": IPv6 only
s = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if ":" in bind:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((bind, port))
answer_ip = socket.inet_aton(arg) if mode == "dns" else b""
while True:
    data, peer = s.recvfrom(4096)
    if mode == "udp":
        s.sendto(arg.encode() + b" " + data, peer)
        continue
    if len(data) < 12:
        continue
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    end = 12
    while end < len(data) and data[end] != 0:
        end += data[end] + 1
    question = data[12:end + 5]
    qtype = struct.unpack("!H", data[end + 1:end + 3])[0] if end + 3 <= len(data) else 0
    hdr_flags = 0x8180 | (flags & 0x0100)
    if qtype == 1:
        ans = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + answer_ip
        s.sendto(struct.pack("!HHHHHH", qid, hdr_flags, 1, 1, 0, 0) + question + ans, peer)
    else:
        s.sendto(struct.pack("!HHHHHH", qid, hdr_flags, 1, 0, 0, 0) + question, peer)
EOF
    # The MISC_CHECK script: exit 0 when REAL:PORT answers HTTP 200.
    cat >"$STATE_DIR/misc-check.sh" <<'EOF'
#!/bin/sh
# misc-check.sh REAL PORT: MISC_CHECK for the rvs HA lab.
exec curl -sf -o /dev/null --max-time 1 "http://$1:$2/"
EOF
    chmod +x "$STATE_DIR/misc-check.sh"
}

topology_healthy() {
    local ns
    [[ -f "$STATE_DIR/up" ]] || return 1
    for ns in "$NS_SW" "$NS_CLIENT" rvsha-d1 rvsha-d2 rvsha-rs1 rvsha-rs2 "$NS_SORRY" "$NS_KA"; do
        ns_exists "$ns" || return 1
    done
    daemons_alive
}

topology_up() {
    local n svc
    [[ -f "$HTTPD" ]] || die "missing $HTTPD"
    require_tools ip ethtool sysctl socat ss python3 setsid curl
    if topology_healthy; then
        log "already up"
        return 0
    fi
    topology_down
    mkdir -p "$STATE_DIR"
    write_helpers
    make_ha_switch
    make_client
    make_director 1
    make_director 2
    for ((n = 1; n <= REALS; n++)); do make_real "$n"; done
    make_sorry
    make_keepalived_host
    for ((n = 1; n <= REALS; n++)); do
        for svc in http80 http8080 echo udp dns; do wait_listening "rvsha-rs$n" "$svc"; done
    done
    touch "$STATE_DIR/up"
    log "up: rvsha-client 10.0.0.2, rvsha-d1/d2 (dp0, rvsd), rvsha-rs1/rs2 10.1.0.11/12," \
        "rvsha-sorry 10.1.0.99, rvsha-ka 10.0.0.4"
}

# ---------------------------------------------------------------------------
# up6 / down6: IPv6 on top of an "up" lab
# ---------------------------------------------------------------------------

topology_down6() {
    local n ns name
    for ((n = 1; n <= REALS; n++)); do
        ns="rvsha-rs$n"
        ns_exists "$ns" || continue
        for name in 6-http80 6-echo 6-udp; do stop_service "$ns" "$name"; done
        while nsx "$ns" ip -6 rule del table "$DR_TABLE" 2>/dev/null; do :; done
        nsx "$ns" ip -6 route flush table "$DR_TABLE" 2>/dev/null || true
        ipv6_off "$ns"
    done
    if ns_exists "$NS_CLIENT"; then ipv6_off "$NS_CLIENT"; fi
    rm -f "$STATE_DIR/ipv6"
    log "down6"
}

# Wait until real N listens on [::]:80, [::]:9000 and UDP [::]:9001.
wait_listening6() {
    local ns="rvsha-rs$1" i
    for ((i = 0; i < 100; i++)); do
        if nsx "$ns" ss -Htln6 "sport = :80" | grep -q LISTEN \
            && nsx "$ns" ss -Htln6 "sport = :9000" | grep -q LISTEN \
            && nsx "$ns" ss -Huln6 "sport = :9001" | grep -q .; then
            return 0
        fi
        sleep 0.05
    done
    tail -n 20 "$STATE_DIR/$ns".6-*.log >&2 || true
    die "the IPv6 servers of $ns did not start"
}

topology_up6() {
    local n ns
    [[ -f "$STATE_DIR/up" ]] || die "the lab is not up (run: $0 up)"
    topology_down6
    ipv6_on "$NS_CLIENT" lo eth0
    nsx "$NS_CLIENT" ip -6 addr add "$CLIENT_IP6/64" dev eth0 nodad
    for ((n = 1; n <= REALS; n++)); do
        ns="rvsha-rs$n"
        ipv6_on "$ns" lo eth0
        nsx "$ns" ip -6 addr add "$(real_ip6 "$n")/64" dev eth0 nodad
        nsx "$ns" ip -6 route add default via "$GATEWAY6" dev eth0
        # The DR VIP on lo (a Linux host answers NS only for addresses on the
        # interface asked on); replies from it go straight to the client.
        nsx "$ns" ip -6 addr add "$DR_VIP6/128" dev lo nodad
        nsx "$ns" ip -6 rule add from "$DR_VIP6" table "$DR_TABLE"
        nsx "$ns" ip -6 route add "$CLIENT_NET6" dev eth0 table "$DR_TABLE"
        start_daemon "$ns" 6-http80 python3 "$HTTPD" --name "rs$n" --ports 80 --bind ::
        start_daemon "$ns" 6-echo socat TCP6-LISTEN:9000,fork,reuseaddr,ipv6only=1 SYSTEM:"echo rs$n; exec cat"
        start_daemon "$ns" 6-udp python3 "$STATE_DIR/udpd.py" udp "rs$n" 9001 ::
    done
    for ((n = 1; n <= REALS; n++)); do wait_listening6 "$n"; done
    echo up >"$STATE_DIR/ipv6"
    log "up6: rvsha-client $CLIENT_IP6, rvsha-rs1/rs2 $(real_ip6 1)/$(real_ip6 2) (gateway $GATEWAY6)"
}

usage() {
    echo "usage: $0 up | down | status | up6 | down6 | stop-service NS NAME | start-service NS NAME" >&2
    exit 2
}

main() {
    local cmd="${1:-}"
    [[ -n "$cmd" ]] || usage
    shift
    require_root
    case "$cmd" in
        up) topology_up ;;
        down) topology_down ;;
        up6) topology_up6 ;;
        down6) topology_down6 ;;
        status) topology_status ;;
        stop-service) [[ $# -eq 2 ]] || usage; stop_service "$1" "$2" ;;
        start-service)
            [[ $# -eq 2 ]] || usage
            [[ "$1" == rvsha-rs[0-9] ]] || die "start-service works on rvsha-rsN"
            stop_service "$1" "$2"
            start_service "$1" "$2"
            wait_listening "$1" "$2"
            ;;
        *) usage ;;
    esac
}

main "$@"
