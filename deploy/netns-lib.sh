# shellcheck shell=bash
# deploy/netns-lib.sh — namespace, veth and host set-up shared by the lab
# topologies (deploy/topology.sh and deploy/ha-topology.sh). Sourced, not run.
#
# The sourcing script defines, before calling anything here:
#   NS_SW          the namespace holding the lab's bridge br0
#   STATE_DIR      where daemons' logs and pid files go
#   DR_TABLE       routing table for replies from a VIP on a real server
#   CLIENT_NET     the client segment those replies go to (empty: clients
#                  are routed, replies follow the real server's default route)
#   log, die       its messages
#   lab_namespaces prints the lab's namespaces that exist

# nsx NS CMD...: run a command inside a namespace.
nsx() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

require_root() {
    [[ $EUID -eq 0 ]] || die "must run as root (network namespaces need CAP_SYS_ADMIN/CAP_NET_ADMIN)"
}

# require_tools TOOL...: each must be on PATH.
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "'$tool' not found (run deploy/setup.sh)"
    done
}

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------

# Kill every process living in namespace $1: SIGTERM, then SIGKILL stragglers.
kill_ns_processes() {
    local ns="$1" pids i
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)"
    [[ -n "${pids// /}" ]] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do            # up to 5 s (rvsd may need a moment)
        pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)"
        [[ -n "${pids// /}" ]] || return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
}

# Kill the processes of every lab namespace, then delete the namespaces.
delete_lab_namespaces() {
    local ns
    for ns in $(lab_namespaces); do
        kill_ns_processes "$ns"
    done
    for ns in $(lab_namespaces); do
        # Deleting a namespace destroys the veths inside it (and so their peers).
        ip netns delete "$ns" 2>/dev/null || log "warning: could not delete $ns"
    done
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------

# Namespace with lo up and IPv6 off (no ND/MLD/RS noise on the segment).
make_ns() {
    local ns="$1"
    ip netns add "$ns"
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    nsx "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    nsx "$ns" sysctl -qw net.ipv6.conf.lo.disable_ipv6=1
    nsx "$ns" ip link set lo up
}

# ipv6_on NS IFNAME...: IPv6 on these interfaces (and on devices created
# later: default) without DAD, router solicitations or RA.
ipv6_on() {
    local ns="$1" c
    shift
    for c in default "$@"; do
        nsx "$ns" sysctl -qw "net.ipv6.conf.$c.accept_dad=0" "net.ipv6.conf.$c.dad_transmits=0" \
            "net.ipv6.conf.$c.accept_ra=0" "net.ipv6.conf.$c.router_solicitations=0" \
            "net.ipv6.conf.$c.forwarding=0" "net.ipv6.conf.$c.accept_redirects=0"
    done
    for c in default "$@"; do
        nsx "$ns" sysctl -qw "net.ipv6.conf.$c.disable_ipv6=0"
    done
}

# ipv6_off NS: IPv6 off again on every interface of NS (this removes its
# IPv6 addresses and routes), as make_ns left it.
ipv6_off() {
    local ns="$1" dev
    for dev in $(nsx "$ns" ls /proc/sys/net/ipv6/conf); do
        nsx "$ns" sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1" 2>/dev/null || true
    done
}

# Offloads off: af_packet (DPDK) would otherwise see CHECKSUM_PARTIAL frames
# with bogus checksums and GSO super-frames; captures then show real bytes.
no_offloads() {
    local ns="$1" ifname="$2"
    nsx "$ns" ethtool -K "$ifname" tx off tso off gso off gro off rx off >/dev/null 2>&1 \
        || nsx "$ns" ethtool -K "$ifname" tx off tso off gso off gro off rx off
}

# connect NS IFNAME SWNAME MAC: veth pair, host end IFNAME in NS, switch end
# SWNAME enslaved to br0 in $NS_SW. Both ends are created directly inside
# their namespaces, so nothing ever appears in the root namespace.
connect() {
    local ns="$1" ifname="$2" swname="$3" mac="$4"
    ip link add "$ifname" netns "$ns" address "$mac" type veth peer name "$swname" netns "$NS_SW"
    no_offloads "$ns" "$ifname"
    no_offloads "$NS_SW" "$swname"
    nsx "$NS_SW" ip link set "$swname" master br0 up
    nsx "$ns" ip link set "$ifname" up
}

make_switch() {
    make_ns "$NS_SW"
    # STP off and no forwarding delay: ports forward as soon as they are up.
    nsx "$NS_SW" ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    nsx "$NS_SW" ip link set br0 up
}

# make_host NS SWNAME MAC ADDR: a host with eth0 (ADDR/24) on the switch and
# rp_filter off. Real servers answering DR traffic ARP for the client with
# sender IP 10.1.0.1X (arp_announce=2 picks their eth0 address, never the
# VIP). Linux answers an ARP request only if the reverse route check
# (fib_validate_source) on the sender passes; with rp_filter=0 that check only
# rejects senders that are local addresses, so the off-subnet sender is
# accepted and no extra route is needed (verified by topology.sh selfcheck).
make_host() {
    local ns="$1" swname="$2" mac="$3" addr="$4"
    make_ns "$ns"
    connect "$ns" eth0 "$swname" "$mac"
    nsx "$ns" ip addr add "$addr/24" dev eth0
    nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0
    nsx "$ns" sysctl -qw net.ipv4.conf.default.rp_filter=0
    nsx "$ns" sysctl -qw net.ipv4.conf.eth0.rp_filter=0
}

# make_director_host NS SWNAME MAC: a director's namespace. dp0 stays without
# any IP: the kernel must not answer ARP/ICMP or send RSTs; rvsd
# (net_af_packet0,iface=dp0) owns the director's addresses.
make_director_host() {
    local ns="$1" swname="$2" mac="$3"
    make_ns "$ns"
    connect "$ns" dp0 "$swname" "$mac"
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=0
}

# make_real_host NS SWNAME MAC ADDR GATEWAY VIP...: a real server, eth0
# ADDR/24, default route via GATEWAY (NAT replies go back through the
# director). Each VIP sits on lo (DR, TUN), never announced or answered for
# on eth0; replies from a VIP go straight to $CLIENT_NET on the shared segment
# (table $DR_TABLE), everything else via GATEWAY.
make_real_host() {
    local ns="$1" swname="$2" mac="$3" addr="$4" gateway="$5" c vip
    shift 5
    make_ns "$ns"
    connect "$ns" eth0 "$swname" "$mac"
    nsx "$ns" ip addr add "$addr/24" dev eth0
    nsx "$ns" ip route add default via "$gateway" dev eth0
    for vip in "$@"; do
        nsx "$ns" ip addr add "$vip/32" dev lo
    done
    for c in all eth0; do
        nsx "$ns" sysctl -qw "net.ipv4.conf.$c.arp_ignore=1"
        nsx "$ns" sysctl -qw "net.ipv4.conf.$c.arp_announce=2"
    done
    for c in all default eth0 lo; do
        nsx "$ns" sysctl -qw "net.ipv4.conf.$c.rp_filter=0"
    done
    # An empty CLIENT_NET: the clients are routed (replies go via GATEWAY).
    [[ -n "$CLIENT_NET" ]] || return 0
    for vip in "$@"; do
        nsx "$ns" ip rule add from "$vip" table "$DR_TABLE"
    done
    nsx "$ns" ip route add "$CLIENT_NET" dev eth0 table "$DR_TABLE"
}

# start_daemon NS NAME CMD...: start a daemon in a namespace, detached from
# our stdio (so callers that capture our output do not hang), and record its
# pid in $STATE_DIR/NS.NAME.pid (its output goes to NS.NAME.log).
start_daemon() {
    local ns="$1" name="$2"; shift 2
    ip netns exec "$ns" setsid "$@" </dev/null >"$STATE_DIR/$ns.$name.log" 2>&1 &
    echo $! >"$STATE_DIR/$ns.$name.pid"
}

# Is every daemon with a pid file in $STATE_DIR alive (and is there one)?
daemons_alive() {
    local f
    for f in "$STATE_DIR"/*.pid; do
        [[ -e "$f" ]] || return 1
        kill -0 "$(cat "$f")" 2>/dev/null || return 1
    done
    return 0
}

topology_status() {
    local ns
    for ns in $(lab_namespaces); do
        echo "== $ns"
        nsx "$ns" ip -br addr
    done
}
