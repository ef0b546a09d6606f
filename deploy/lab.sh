#!/usr/bin/env bash
# rvs lab demo: build, bring up the namespace topology, start rvsd with
# deploy/lab.json, send traffic through every HTTP service (DR, NAT, TUN and
# FULLNAT) and every UDP echo service (all four modes), plus an echo
# exchange, print what answered, and tear everything down again.
#
#   deploy/lab.sh [--no-setup] [--keep] [--requests N]
#     --no-setup    skip deploy/setup.sh (packages + cargo build)
#     --keep        leave rvsd and the topology running (clean up later with
#                   deploy/topology.sh down); try e.g.
#                   ip netns exec rvs-client curl http://10.0.0.100/    (DR)
#                   ip netns exec rvs-client curl http://10.0.0.102/    (TUN)
#                   ip netns exec rvs-client curl http://10.0.0.103/    (FULLNAT)
#                   ip netns exec rvs-dir curl -s http://127.0.0.1:9090/api/v1/services
#     --requests N  requests (UDP: datagrams) per service (default 20)
#   RVSD=/path/to/rvsd overrides target/release/rvsd.
#
# Exits non-zero if any request or the echo exchange failed. Teardown runs on
# every exit path (error, Ctrl-C, SIGTERM) via the EXIT trap.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
readonly CONFIG="$SCRIPT_DIR/lab.json"
readonly RVSD="${RVSD:-$REPO_ROOT/target/release/rvsd}"
readonly NS_DIR="rvs-dir"
readonly NS_CLIENT="rvs-client"
readonly API="http://127.0.0.1:9090"
readonly ECHO_VIP="10.0.0.101"
readonly ECHO_PORT=9000

RUN_SETUP=1
KEEP=0
REQUESTS=20
WORKDIR=""
RVSD_PID=""
FAILED=0

log() { echo "lab: $*" >&2; }
die() { echo "lab: error: $*" >&2; exit 1; }

print_rvsd_log() {
    [[ -n "$WORKDIR" && -s "$WORKDIR/rvsd.log" ]] || return 0
    echo "----- rvsd log ($WORKDIR/rvsd.log) -----" >&2
    tail -n 200 "$WORKDIR/rvsd.log" >&2
    echo "----- end of rvsd log -----" >&2
}

stop_rvsd() {
    [[ -n "$RVSD_PID" ]] || return 0
    if kill -0 "$RVSD_PID" 2>/dev/null; then
        kill -TERM "$RVSD_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 100; i++)); do       # 10 s for a clean shutdown
            kill -0 "$RVSD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$RVSD_PID" 2>/dev/null; then
            log "rvsd did not stop on SIGTERM; killing"
            kill -KILL "$RVSD_PID" 2>/dev/null || true
        fi
    fi
    wait "$RVSD_PID" 2>/dev/null || true
    RVSD_PID=""
}

# EXIT trap: always runs (also after INT/TERM, whose traps call exit).
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((KEEP)) && ((rc == 0)); then
        log "--keep: rvsd (pid $RVSD_PID, log $WORKDIR/rvsd.log) and the topology stay up;"
        log "         stop with: deploy/topology.sh down"
        exit 0
    fi
    ((rc == 0)) || print_rvsd_log
    stop_rvsd
    bash "$SCRIPT_DIR/topology.sh" down || true
    [[ -z "$WORKDIR" ]] || rm -rf "$WORKDIR"
    exit "$rc"
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --no-setup) RUN_SETUP=0 ;;
            --keep) KEEP=1 ;;
            --requests) REQUESTS="${2:?--requests needs a number}"; shift ;;
            -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
        shift
    done
    [[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || die "--requests must be a positive number"
}

# lab.json with the DPDK memory of this machine: 2 MB hugepages when
# deploy/setup.sh could reserve them, else --no-huge (rvs-nic decides and
# says which).
write_lab_config() {
    local memory
    memory="$(python3 "$SCRIPT_DIR/rvs-nic" memory --megabytes 512 2>"$WORKDIR/memory")"
    log "$(cat "$WORKDIR/memory")"
    python3 - "$CONFIG" "$memory" >"$WORKDIR/lab.json" <<'EOF'
import json, sys
config = json.load(open(sys.argv[1]))
eal, rest = config["eal"], []
i = 0
while i < len(eal):                  # drop lab.json's own memory arguments
    if eal[i] == "-m":
        i += 2
        continue
    if eal[i] not in ("--no-huge", "--in-memory"):
        rest.append(eal[i])
    i += 1
config["eal"] = json.loads(sys.argv[2]) + rest
json.dump(config, sys.stdout, indent=2)
EOF
}

start_rvsd() {
    [[ -x "$RVSD" ]] || die "rvsd not found at $RVSD (run deploy/setup.sh)"
    write_lab_config
    # In the director's namespace, where its port (dp0) is: the check looks for it.
    ip netns exec "$NS_DIR" "$RVSD" --config "$WORKDIR/lab.json" --check || die "rvsd --check rejected $WORKDIR/lab.json"
    log "starting rvsd in $NS_DIR (log: $WORKDIR/rvsd.log)"
    ip netns exec "$NS_DIR" "$RVSD" --config "$WORKDIR/lab.json" </dev/null >"$WORKDIR/rvsd.log" 2>&1 &
    RVSD_PID=$!
}

# Poll GET /api/v1/status until 200; fail early if rvsd exits.
wait_rvsd_ready() {
    local i code
    for ((i = 0; i < 300; i++)); do           # 60 s
        kill -0 "$RVSD_PID" 2>/dev/null || {
            wait "$RVSD_PID" && code=0 || code=$?
            RVSD_PID=""
            die "rvsd exited during start-up (exit code $code)"
        }
        code="$(ip netns exec "$NS_DIR" curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
            "$API/api/v1/status" || true)"
        if [[ "$code" == 200 ]]; then
            log "rvsd is up (pid $RVSD_PID)"
            return 0
        fi
        sleep 0.2
    done
    die "rvsd API did not answer 200 on /api/v1/status within 60 s"
}

# Services from lab.json as "protocol vip port forward scheduler": TCP on
# ports 80/8080 (HTTP), UDP on 9053 (echo).
lab_services() {
    python3 - "$CONFIG" <<'EOF'
import json, sys
for s in json.load(open(sys.argv[1]))["services"]:
    if (s["protocol"], s["port"]) in (("tcp", 80), ("tcp", 8080), ("udp", 9053)):
        print(s["protocol"], s["vip"], s["port"], s["forward"], s["scheduler"])
EOF
}

# run_service VIP PORT MODE SCHED: REQUESTS curls from the client, one row.
run_service() {
    local vip="$1" port="$2" mode="$3" sched="$4" i body ok=0 per_real
    declare -A counts=()
    for ((i = 0; i < REQUESTS; i++)); do
        if body="$(ip netns exec "$NS_CLIENT" curl -s --max-time 2 "http://$vip:$port/" </dev/null)" \
            && [[ "$body" =~ ^rs[0-9]+$ ]]; then
            ok=$((ok + 1))
            counts[$body]=$((${counts[$body]:-0} + 1))
        fi
    done
    per_real="$(for k in "${!counts[@]}"; do echo "$k=${counts[$k]}"; done | sort | tr '\n' ' ')"
    printf '%-24s %-8s %-6s %-9s %s\n' "tcp $vip:$port" "$mode" "$sched" "$ok/$REQUESTS" "${per_real:--}"
    ((ok == REQUESTS)) || FAILED=1
}

# run_udp_service VIP PORT MODE SCHED: REQUESTS datagrams, each from a new
# socket (a new flow), to the reals' UDP echo ("rsN\n" + the datagram).
run_udp_service() {
    local vip="$1" port="$2" mode="$3" sched="$4" out ok per_real
    out="$(ip netns exec "$NS_CLIENT" python3 - "$vip" "$port" "$REQUESTS" <<'EOF'
import socket, sys
vip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
counts, ok = {}, 0
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    msg = f"datagram {i}\n".encode()
    try:
        s.connect((vip, port))
        s.send(msg)
        name, _, echo = s.recv(2048).partition(b"\n")
        if echo == msg:
            ok += 1
            counts[name.decode()] = counts.get(name.decode(), 0) + 1
    except OSError:
        pass
    s.close()
print(ok, " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
EOF
)" || out="0"
    ok="${out%% *}"
    per_real="${out#* }"
    [[ "$per_real" == "$out" ]] && per_real=""
    printf '%-24s %-8s %-6s %-9s %s\n' "udp $vip:$port" "$mode" "$sched" "$ok/$REQUESTS" "${per_real:--}"
    ((ok == REQUESTS)) || FAILED=1
}

run_echo() {
    local out expected_line="hello through rvs"
    out="$(printf '%s\n' "$expected_line" \
        | ip netns exec "$NS_CLIENT" socat -t2 -T5 - "TCP:$ECHO_VIP:$ECHO_PORT,connect-timeout=3" || true)"
    echo
    echo "echo exchange via $ECHO_VIP:$ECHO_PORT (nat):"
    echo "  sent:     $expected_line"
    echo "  received: $(echo "$out" | sed -n 2p)   (banner: $(echo "$out" | sed -n 1p))"
    if [[ "$(echo "$out" | sed -n 1p)" =~ ^rs[0-9]+$ && "$(echo "$out" | sed -n 2p)" == "$expected_line" ]]; then
        echo "  ok"
    else
        echo "  FAILED (raw output: ${out@Q})"
        FAILED=1
    fi
}

main() {
    parse_args "$@"
    [[ $EUID -eq 0 ]] || die "must run as root"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORKDIR="$(mktemp -d /tmp/rvs-lab.XXXXXX)"

    if ((RUN_SETUP)); then
        bash "$SCRIPT_DIR/setup.sh"
    fi
    bash "$SCRIPT_DIR/topology.sh" up --reals 2
    start_rvsd
    wait_rvsd_ready

    echo
    printf '%-24s %-8s %-6s %-9s %s\n' SERVICE MODE SCHED ANSWERED "PER REAL SERVER"
    local proto vip port mode sched
    while read -r proto vip port mode sched; do
        if [[ "$proto" == udp ]]; then
            run_udp_service "$vip" "$port" "$mode" "$sched"
        else
            run_service "$vip" "$port" "$mode" "$sched"
        fi
    done < <(lab_services)
    run_echo
    echo

    if ! kill -0 "$RVSD_PID" 2>/dev/null; then
        log "rvsd died during the run"
        FAILED=1
    fi
    if ((FAILED)); then
        log "FAILED: some requests or datagrams were not answered"
        exit 1
    fi
    log "all requests answered"
}

main "$@"
