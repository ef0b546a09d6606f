#!/usr/bin/env bash
# deploy/cluster-lab.sh [demo|up|down|status|start-node N|stop-node N] — rvs
# scaled out behind ECMP, in network namespaces (rvsc-*):
#
#   rvsc-client 10.9.0.2 ── cl0 ── rvsc-router (BIRD, AS 65000; kernel ECMP
#                                   over the BGP paths, L4 multipath hash)
#                                     │ eth0 10.2.0.254
#                          rvsc-sw (bridge br0)
#        ┌───────────────┬───────────┴───┬───────────────┬─────────────┐
#   rvsc-n1 dp0     rvsc-n2 dp0     rvsc-n3 dp0     rvsc-rs1       rvsc-rs2
#   10.2.0.1        10.2.0.2        10.2.0.3        10.2.0.11      10.2.0.12
#   rvsd + BIRD     rvsd + BIRD     rvsd + BIRD     VIP on lo (DR); replies
#   (AS 65001)      (AS 65001)      (AS 65001)      go via the router
#
# Each node runs rvsd on dp0 (af_packet; its TAP rvs0 gets 10.2.0.N) and its
# own BIRD, which peers with the router over rvsd's exception path (BGP + BFD)
# and exports the static protocol rvsd writes to $STATE/nN/vips.conf. The
# VIP 10.10.0.100 (tcp 80: HTTP "rsN", tcp 9000: echo after a "rsN" banner)
# is a maglev service with `sloppy` adoption, DR to rs1 and rs2.
#
#   demo (default)  up, start the three nodes, wait for three ECMP paths, send
#                   requests from many source ports, show which node and which
#                   real server served each, then tear everything down
#                   (--keep leaves it running)
#   up | down       the namespaces, BIRDs and real servers (no rvsd)
#   start-node N    start rvsd on node N (config $STATE/nN/rvsd.json)
#   stop-node N     stop it (SIGTERM: drains first)
#   status          routes on the router, BGP sessions
#
# Nothing reaches the host network. RVSD=/path/to/rvsd picks the binary.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
readonly HTTPD="$REPO_ROOT/tests/e2e/httpd.py"
readonly STATE_DIR="${RVSC_LAB_STATE:-/run/rvsc-lab}"
RVSD="${RVSD:-$REPO_ROOT/target/release/rvsd}"

readonly NS_SW="rvsc-sw"
readonly NS_ROUTER="rvsc-router"
readonly NS_CLIENT="rvsc-client"
readonly VIP="10.10.0.100"
readonly NODES=3
readonly REALS=2
# For netns-lib.sh's make_real_host: the client is routed, not on the
# reals' segment, so replies follow the reals' default route (the router).
readonly DR_TABLE=100
readonly CLIENT_NET=""
# BFD: 200 ms x 5 = 1 s to detect a dead node, robust on a loaded 2-core VM.
readonly BFD_INTERVAL_MS="${RVSC_BFD_INTERVAL_MS:-200}"
readonly BFD_MULTIPLIER=5

log() { echo "cluster-lab: $*" >&2; }
die() { echo "cluster-lab: error: $*" >&2; exit 1; }

lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^rvsc-(sw|router|client|n[0-9]+|rs[0-9]+)$' || true
}

# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/netns-lib.sh"

node_ip() { echo "10.2.0.$1"; }
node_mac() { printf '02:00:00:cc:00:%02x' "$1"; }

# ---------------------------------------------------------------------------
# BIRD configs
# ---------------------------------------------------------------------------

router_bird_conf() {
    local n
    cat <<EOF
# BIRD on the lab's upstream router: a BGP session (with BFD) to every rvs
# node; equal routes to a VIP are merged into one multipath kernel route.
log "$STATE_DIR/router/bird.log" all;
router id 10.2.0.254;
protocol device { scan time 2; }
protocol direct { ipv4; interface "eth0", "cl0"; }
protocol kernel {
    ipv4 { export where source = RTS_BGP; };
    merge paths yes limit 16;
    scan time 2;
}
protocol bfd {
    interface "eth0" { interval ${BFD_INTERVAL_MS} ms; multiplier ${BFD_MULTIPLIER}; };
}
template bgp rvsnode {
    local 10.2.0.254 as 65000;
    hold time 6; keepalive time 2;
    connect retry time 1; error wait time 1, 4;
    bfd on;
    ipv4 { import where net ~ [ 10.10.0.0/16{32,32} ]; export none; };
}
EOF
    for ((n = 1; n <= NODES; n++)); do
        echo "protocol bgp n$n from rvsnode { neighbor $(node_ip "$n") as 65001; }"
    done
}

node_bird_conf() {
    local n="$1"
    cat <<EOF
# BIRD beside rvsd on node $n: announces what rvsd writes to vips.conf
# (protocol rvs_vips) to the router, over rvsd's exception path (TAP rvs0).
log "$STATE_DIR/n$n/bird.log" all;
router id $(node_ip "$n");
protocol device { scan time 2; }
include "$STATE_DIR/n$n/vips.conf";
protocol bfd {
    interface "rvs0" { interval ${BFD_INTERVAL_MS} ms; multiplier ${BFD_MULTIPLIER}; };
}
protocol bgp upstream {
    local $(node_ip "$n") as 65001;
    neighbor 10.2.0.254 as 65000;
    hold time 6; keepalive time 2;
    connect retry time 1; error wait time 1, 4;
    bfd on;
    ipv4 { import none; export where proto = "rvs_vips"; };
}
EOF
}

# rvsd's config for node N (JSON).
node_config() {
    local n="$1" mem
    mem="$(python3 -c "import sys; sys.path.insert(0, '$REPO_ROOT/tests/e2e'); import json, labutil; print(json.dumps(labutil.eal_args('rvsc-n$n', megabytes=256)))")"
    cat <<EOF
{
  "eal": $mem,
  "main_lcore": 0,
  "workers": [1],
  "mbufs": 4095,
  "idle_sleep_us": 50,
  "api": {"listen": "127.0.0.1:9090"},
  "ports": [{"name": "lan0", "device": "net_af_packet0,iface=dp0",
             "addresses": ["$(node_ip "$n")/24"], "tap": "rvs0"}],
  "routes": [{"prefix": "0.0.0.0/0", "via": "10.2.0.254", "port": "lan0"}],
  "bgp": {"include": "$STATE_DIR/n$n/vips.conf", "socket": "$STATE_DIR/n$n/bird.ctl",
          "drain_grace": 10, "check_interval_ms": 200},
  "services": [
    {"protocol": "tcp", "vip": "$VIP", "port": 80, "scheduler": "maglev",
     "sched_options": {"hash": "src_addr_port"}, "forward": "dr", "sloppy": true,
     "reals": [{"address": "10.2.0.11"}, {"address": "10.2.0.12"}]},
    {"protocol": "tcp", "vip": "$VIP", "port": 9000, "scheduler": "maglev",
     "sched_options": {"hash": "src_addr_port"}, "forward": "dr", "sloppy": true,
     "reals": [{"address": "10.2.0.11"}, {"address": "10.2.0.12"}]}
  ]
}
EOF
}

# ---------------------------------------------------------------------------
# up / down
# ---------------------------------------------------------------------------

start_bird() {   # start_bird NS DIR
    local ns="$1" dir="$2"
    ip netns exec "$ns" setsid bird -f -c "$dir/bird.conf" -s "$dir/bird.ctl" </dev/null >"$dir/bird.out" 2>&1 &
    echo $! >"$dir/bird.pid"
    for _ in $(seq 100); do
        [[ -S "$dir/bird.ctl" ]] && return 0
        sleep 0.05
    done
    cat "$dir/bird.out" >&2 || true
    die "BIRD did not start in $ns"
}

make_router() {
    make_ns "$NS_ROUTER"
    connect "$NS_ROUTER" eth0 router-sw 02:00:00:cc:00:fe
    nsx "$NS_ROUTER" ip addr add 10.2.0.254/24 dev eth0
    local c
    for c in all default eth0; do
        nsx "$NS_ROUTER" sysctl -qw "net.ipv4.conf.$c.rp_filter=0"
        nsx "$NS_ROUTER" sysctl -qw "net.ipv4.conf.$c.send_redirects=0"
    done
    nsx "$NS_ROUTER" sysctl -qw net.ipv4.ip_forward=1
    # ECMP on the L4 5-tuple: a flow sticks to a node, flows spread.
    nsx "$NS_ROUTER" sysctl -qw net.ipv4.fib_multipath_hash_policy=1
    mkdir -p "$STATE_DIR/router"
    router_bird_conf >"$STATE_DIR/router/bird.conf"
    start_bird "$NS_ROUTER" "$STATE_DIR/router"
}

make_client() {
    make_ns "$NS_CLIENT"
    ip link add eth0 netns "$NS_CLIENT" address 02:00:00:cc:09:02 type veth peer name cl0 netns "$NS_ROUTER"
    no_offloads "$NS_CLIENT" eth0
    no_offloads "$NS_ROUTER" cl0
    nsx "$NS_CLIENT" ip link set eth0 up
    nsx "$NS_ROUTER" ip link set cl0 up
    nsx "$NS_CLIENT" ip addr add 10.9.0.2/24 dev eth0
    nsx "$NS_ROUTER" ip addr add 10.9.0.1/24 dev cl0
    nsx "$NS_ROUTER" sysctl -qw net.ipv4.conf.cl0.rp_filter=0
    nsx "$NS_CLIENT" ip route add default via 10.9.0.1
}

make_node() {
    local n="$1" dir="$STATE_DIR/n$1"
    make_director_host "rvsc-n$n" "n$n-sw" "$(node_mac "$n")"
    mkdir -p "$dir"
    # Nothing announced until rvsd says so.
    printf 'protocol static rvs_vips {\n    ipv4;\n}\n' >"$dir/vips.conf"
    node_bird_conf "$n" >"$dir/bird.conf"
    node_config "$n" >"$dir/rvsd.json"
    start_bird "rvsc-n$n" "$dir"
}

# Real server N: 10.2.0.1N, the VIP on lo (DR); replies to the (routed)
# client go via the router.
make_real() {
    local n="$1" ns="rvsc-rs$1"
    make_real_host "$ns" "rs$n-sw" "$(printf '02:00:00:cc:01:%02x' "$((0x10 + n))")" "10.2.0.1$n" 10.2.0.254 "$VIP"
    start_daemon "$ns" http80 python3 "$HTTPD" --name "rs$n" --ports 80
    start_daemon "$ns" echo socat TCP-LISTEN:9000,fork,reuseaddr,backlog=512 SYSTEM:"echo rs$n; exec cat"
}

wait_listening() {   # wait_listening NS PORT
    for _ in $(seq 200); do
        nsx "$1" ss -Htln "sport = :$2" | grep -q LISTEN && return 0
        sleep 0.05
    done
    die "nothing listens on :$2 in $1"
}

lab_down() {
    local f pid
    # SIGINT stops rvsd at once (SIGTERM would drain for bgp.drain_grace).
    for f in "$STATE_DIR"/n*/rvsd.pid; do
        [[ -f "$f" ]] || continue
        pid="$(cat "$f")"
        kill -INT "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    delete_lab_namespaces
    rm -rf "$STATE_DIR"
    log "down"
}

lab_up() {
    local n
    [[ -f "$HTTPD" ]] || die "missing $HTTPD"
    require_tools ip ethtool sysctl socat ss python3 setsid curl bird birdc
    lab_down
    mkdir -p "$STATE_DIR"
    make_switch
    make_router
    make_client
    for ((n = 1; n <= NODES; n++)); do make_node "$n"; done
    for ((n = 1; n <= REALS; n++)); do make_real "$n"; done
    for ((n = 1; n <= REALS; n++)); do
        wait_listening "rvsc-rs$n" 80
        wait_listening "rvsc-rs$n" 9000
    done
    touch "$STATE_DIR/up"
    log "up: router 10.2.0.254 (BIRD AS 65000), nodes 10.2.0.1-3 (BIRD AS 65001, no rvsd yet)," \
        "reals 10.2.0.11/12, client 10.9.0.2; VIP $VIP"
}

start_node() {
    local n="$1" dir="$STATE_DIR/n$1"
    [[ -x "$RVSD" ]] || die "no rvsd at $RVSD (cargo build --release -p rvsd)"
    ip netns exec "rvsc-n$n" setsid "$RVSD" --config "$dir/rvsd.json" </dev/null >>"$dir/rvsd.log" 2>&1 &
    echo $! >"$dir/rvsd.pid"
    for _ in $(seq 600); do
        if nsx "rvsc-n$n" curl -sf -o /dev/null --max-time 1 http://127.0.0.1:9090/api/v1/status; then
            log "node $n: rvsd up (pid $(cat "$dir/rvsd.pid"))"
            return 0
        fi
        kill -0 "$(cat "$dir/rvsd.pid")" 2>/dev/null || { tail -n 30 "$dir/rvsd.log" >&2; die "rvsd on node $n exited"; }
        sleep 0.1
    done
    die "rvsd on node $n did not answer"
}

stop_node() {
    local dir="$STATE_DIR/n$1" pid
    [[ -f "$dir/rvsd.pid" ]] || return 0
    pid="$(cat "$dir/rvsd.pid")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/rvsd.pid"
}

# The router's next hops for the VIP.
paths() {
    nsx "$NS_ROUTER" ip route show "$VIP" | grep -oE 'via 10\.2\.0\.[0-9]+' | awk '{print $2}' | sort | tr '\n' ' '
}

status() {
    echo "== router: route to $VIP: $(paths)"
    birdc -s "$STATE_DIR/router/bird.ctl" show protocols || true
}

KEEP=0
on_exit() { [[ "$KEEP" == 1 ]] || lab_down; }

demo() {
    local n i out node
    KEEP="$1"
    lab_up
    trap on_exit EXIT
    for ((n = 1; n <= NODES; n++)); do start_node "$n"; done
    for i in $(seq 300); do
        [[ "$(paths | wc -w)" -eq "$NODES" ]] && break
        sleep 0.1
        [[ "$i" -lt 300 ]] || die "the router did not get $NODES paths: $(paths)"
    done
    log "router: $VIP via $(paths)(ECMP, fib_multipath_hash_policy=1)"
    declare -A by_node=() by_real=()
    for i in $(seq 0 29); do
        out="$(nsx "$NS_CLIENT" curl -s --max-time 3 --local-port "$((40000 + i))" "http://$VIP/" || echo "failed")"
        by_real[$out]=$(( ${by_real[$out]:-0} + 1 ))
    done
    for ((n = 1; n <= NODES; n++)); do
        node="$(nsx "rvsc-n$n" curl -s http://127.0.0.1:9090/api/v1/stats | python3 -c \
            'import json,sys; d=json.load(sys.stdin); print(sum(w["counters"].get("conn_created",0) for w in d["workers"]))' 2>/dev/null || echo "?")"
        by_node[$n]="$node"
    done
    echo "30 requests from ports 40000-40029:"
    for n in "${!by_node[@]}"; do echo "  node $n created ${by_node[$n]} connections"; done
    for out in "${!by_real[@]}"; do echo "  real server $out answered ${by_real[$out]}"; done
    if [[ "$KEEP" == 1 ]]; then log "left running (--keep); tear down with: $0 down"; fi
}

main() {
    local cmd="${1:-demo}"
    [[ $# -gt 0 ]] && shift
    [[ $EUID -eq 0 ]] || die "must run as root"
    case "$cmd" in
        demo) demo "$([[ "${1:-}" == --keep ]] && echo 1 || echo 0)" ;;
        --keep) demo 1 ;;
        up) lab_up ;;
        down) lab_down ;;
        status) status ;;
        start-node) [[ $# -eq 1 ]] || die "start-node N"; start_node "$1" ;;
        stop-node) [[ $# -eq 1 ]] || die "stop-node N"; stop_node "$1" ;;
        *) die "usage: $0 [demo [--keep]|up|down|status|start-node N|stop-node N]" ;;
    esac
}

main "$@"
