#!/usr/bin/env bash
# The rvs benchmark suite, one command:
#
#   deploy/bench.sh            full run (about 10 minutes); writes bench/report/
#   deploy/bench.sh --smoke    a short run for CI (well under a minute once built);
#                              writes target/bench-smoke/ and fails only when
#                              something is broken (nothing forwarded, wrong rewrites),
#                              never because a figure is below its target.
#   deploy/bench.sh --synflood only the SYN-proxy runs of step 4b (a few minutes);
#                              writes bench/report/SYNFLOOD.md and synflood.json.
#
# What it runs (see bench/README in bench/src/lib.rs for the pieces):
#   1. cargo build --release: rvsd, rvs-pktgen, rvs-conn-mem; criterion's packet_path bench.
#   2. criterion: ns/packet of Processor::handle_burst (bursts of 32) per mode, established (for NAT and
#      FULLNAT also the real servers' replies) / new connection, 1 thousand and 4 million live connections;
#      IPv4 and IPv6 (groups packet_path/ipv6-MODE/SIZE: DR, NAT, TUN, FULLNAT over IPv6 and NAT64; reported
#      without targets). --smoke runs every scenario, IPv6 included.
#   3. rvs-conn-mem: resident bytes per connection-table entry.
#   4. memif runs on this 2-core machine: rvs-pktgen on lcore 0, the DUT's worker on lcore 1
#      (its main lcore shares core 0): dpdk-testpmd io-fwd (the limit), then rvsd per mode
#      and profile (established 1k flows, established 4M flows, SYN, mix), each with an
#      RFC 2544 zero-loss search.
#      Cycles per packet, independent of the generator: at one offered rate R (a fraction
#      of testpmd's max, below the generator's ceiling) testpmd io-fwd runs once more with
#      --record-core-cycles (its "CPU cycles/packet" at exit), and every established run of
#      rvsd starts with a trial at R bracketed by reads of its busy_cycles / busy_frames
#      (GET /api/v1/stats). Both count only loop iterations that handled packets. The same
#      again at a second, loaded rate L (RVS_BENCH_LOADED_PPS): at R a poll brings about
#      one frame, at L rvsd's bursts fill and its pipeline overlaps the table's misses.
#      Each DUT's figures come from several fresh processes (testpmd: one per trial; rvsd:
#      the established run and RVS_BENCH_CYCLES_PROCESSES - 1 more, cycles trials only),
#      because on this virtual machine a whole process can run slow (below).
#   4b. SYN proxy (issue 14; full and --synflood runs, not --smoke), per NAT/FULLNAT mode, each on
#      a fresh rvsd whose VIP has a second TCP service on port 81 with syn_proxy "on":
#      "plain": the syn profile at :80 (no proxy, every SYN a new connection) for comparison;
#      "cookie": rvs-pktgen's syn profile (every packet a SYN from a new client tuple) at :81,
#      every SYN answered by a SYN-cookie SYN-ACK; rvsd's busy cycles per packet at the cycles
#      rate R and the zero-loss rate of SYNs answered; "mix": 1,000 established flows on :80
#      (proxy off) with every 10th packet a spoofed SYN at :81, zero-loss search: SYNs/s one
#      worker absorbs while the established traffic flows. deploy/bench/synflood_report.py
#      writes SYNFLOOD.md and synflood.json into the report directory.
#   5. deploy/bench/report.py: REPORT.md, report.json, mpps.png (matplotlib, installed with
#      pip if missing; an SVG is drawn instead when that fails).
#
# Environment: RVS_BENCH_MODES="dr nat" restricts the modes; RVS_BENCH_SCENARIOS="established:1000
# established:4000000" the memif scenarios (profile:flows); RVS_BENCH_SEARCH_STEPS the zero-loss
# search trials; RVS_BENCH_SYN_MODES="nat fullnat" the modes of step 4b (RVS_BENCH_SYN_MODES= skips
# it); RVS_BENCH_MIX_SYN_EVERY (default 10) one packet in this many is a SYN in its mix run; RVS_BENCH_CYCLES_PPS fixes the cycles rate R in packets/s (use the same R for a
# before/after comparison), else R is RVS_BENCH_CYCLES_FRACTION (default 0.2) of testpmd's max
# (500000 when testpmd is missing); RVS_BENCH_LOADED_PPS (default 5000000) the rate of the second,
# loaded cycles measurement (near rvsd's capacity, where its bursts fill; same rate for testpmd);
# RVS_BENCH_CYCLES_TRIALS (default 3, 1 with --smoke) cycles trials per DUT, scenario and rate, the
# lowest figure of each DUT reported (testpmd: as many fresh processes); RVS_BENCH_CYCLES_PROCESSES
# (default 2, --smoke included) the fresh rvsd processes per established scenario that run those
# trials (the first is the scenario's own run): some processes on this shared VM run every
# trial two to four times slower (testpmd's as well; it seems to be where the host placed
# that process's memory), and back-to-back trials in one process cannot escape it;
# CARGO_TARGET_DIR is honoured;
# RVS_BENCH_OUT overrides the report directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARGS="$*"
SMOKE=0
SYNFLOOD_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        --synflood) SYNFLOOD_ONLY=1 ;;
        -h|--help) sed -n '2,50p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ $SMOKE == 1 ]]; then
    OUT=${RVS_BENCH_OUT:-$TARGET/bench-smoke}
else
    OUT=${RVS_BENCH_OUT:-$ROOT/bench/report}
fi
WORK=$(mktemp -d /tmp/rvs-bench.XXXXXX)
TAG="rvsb$$"
API_PORT=$((19000 + $$ % 1000))
PIDS=()

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]:-}"; do
        [[ -n "$pid" ]] && stop_pid "$pid"
    done
    wait 2>/dev/null || true
    # EAL runtime directories of this run's processes only.
    rm -rf /var/run/dpdk/"$TAG"-* 2>/dev/null || true
    if [[ $rc != 0 ]]; then
        mkdir -p "$OUT"
        rm -rf "$OUT/failed-run-logs"
        cp -r "$WORK" "$OUT/failed-run-logs" 2>/dev/null || true
        log "FAILED (exit $rc); logs in $OUT/failed-run-logs"
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$ROOT"

# ---------------------------------------------------------------- 1. build
log "building (release)"
cargo build --release -p rvsd >&2
cargo build --release -p rvs-bench --bins >&2
RVSD=$TARGET/release/rvsd
PKTGEN=$TARGET/release/rvs-pktgen
CONNMEM=$TARGET/release/rvs-conn-mem
TESTPMD=$(command -v dpdk-testpmd || true)

MODES=${RVS_BENCH_MODES:-$("$PKTGEN" modes | tr '\n' ' ')}

# ---------------------------------------------------------------- machine
{
    echo "{"
    echo "  \"cpu_model\": \"$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)\","
    echo "  \"cpus\": $(nproc),"
    echo "  \"kernel\": \"$(uname -r)\","
    echo "  \"memory_gib\": $(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo),"
    echo "  \"hypervisor\": \"$(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1)\","
    echo "  \"date_utc\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"load_average_at_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\","
    echo "  \"rustc\": \"$(rustc --version)\","
    echo "  \"dpdk\": \"$(dpkg-query -W -f='${Version}' dpdk 2>/dev/null || pkg-config --modversion libdpdk 2>/dev/null || echo unknown)\","
    echo "  \"git_commit\": \"$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)\","
    echo "  \"git_dirty\": $( [[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]] && echo true || echo false),"
    echo "  \"command\": \"$(env | grep '^RVS_BENCH_' | sort | tr '\n' ' ')deploy/bench.sh${ARGS:+ $ARGS}\","
    echo "  \"smoke\": $( [[ $SMOKE == 1 ]] && echo true || echo false)"
    echo "}"
} > "$WORK/machine.json"

if [[ $SYNFLOOD_ONLY == 0 ]]; then
# ---------------------------------------------------------------- 2. criterion
if [[ $SMOKE == 1 ]]; then
    BIG=20000; CRIT_ARGS=(--warm-up-time 0.1 --measurement-time 0.3 --sample-size 10)
else
    BIG=4000000; CRIT_ARGS=(--warm-up-time 1 --measurement-time 4)
fi
log "criterion packet_path (big table: $BIG connections)"
rm -rf "$TARGET/criterion/packet_path_"*
RVS_BENCH_BIG_CONNS=$BIG cargo bench -p rvs-bench --bench packet_path -- "${CRIT_ARGS[@]}" --noplot \
    > "$WORK/criterion.log" 2>&1 || { tail -40 "$WORK/criterion.log" >&2; exit 1; }
grep -E '^packet_path|time:' "$WORK/criterion.log" >&2 || true
mkdir -p "$WORK/criterion"
cp -r "$TARGET/criterion/packet_path_"* "$WORK/criterion/" 2>/dev/null || true
# The IPv6 scenarios must have run (CI exercises the IPv6 bench code through --smoke).
for group in "packet_path_ipv6-dr_1k" "packet_path_ipv6-nat64_1k"; do
    [[ -f "$WORK/criterion/$group/new_conn/new/estimates.json" ]] || { echo "bench.sh: no criterion result for $group" >&2; exit 1; }
done
# So must the replies of NAT and FULLNAT.
for group in "packet_path_nat_1k" "packet_path_fullnat_1k"; do
    [[ -f "$WORK/criterion/$group/established_reply/new/estimates.json" ]] || { echo "bench.sh: no criterion result for $group/established_reply" >&2; exit 1; }
done

# ---------------------------------------------------------------- 3. memory per connection
log "memory per connection"
if [[ $SMOKE == 1 ]]; then MEM_SIZES=(100000); else MEM_SIZES=(1000000 4000000); fi
"$CONNMEM" "${MEM_SIZES[@]}" > "$WORK/conn_mem.json" 2> "$WORK/conn_mem.log"
fi

# ---------------------------------------------------------------- 4. memif runs
if [[ $SMOKE == 1 ]]; then
    GEN_TIMES=(--duration 0.5 --trial-secs 0.3 --search-steps 3)
    SCENARIOS=("established:1000")
    TABLE=100000
    CYCLES_SECS=0.5
    CYCLES_TRIALS=1
else
    GEN_TIMES=(--duration 3 --trial-secs 2 --search-steps "${RVS_BENCH_SEARCH_STEPS:-8}")
    read -r -a SCENARIOS <<< "${RVS_BENCH_SCENARIOS:-established:1000 established:4000000 syn:0 mix:1000}"
    TABLE=4500000
    CYCLES_SECS=3
    CYCLES_TRIALS=${RVS_BENCH_CYCLES_TRIALS:-3}
fi
CYCLES_PROCESSES=${RVS_BENCH_CYCLES_PROCESSES:-2}
CYCLES_FRACTION=${RVS_BENCH_CYCLES_FRACTION:-0.2}
CYCLES_PPS=${RVS_BENCH_CYCLES_PPS:-500000}
LOADED_PPS=${RVS_BENCH_LOADED_PPS:-5000000}
mkdir -p "$WORK/runs"
# File-system sockets (so the script can wait for them) and 4096-slot rings: on a shared
# 2-vCPU guest a worker can be descheduled for milliseconds, which a 1024-slot ring at
# several Mpps does not absorb. The same options for every DUT.
MEMIF_OPTS="socket-abstract=no,rsize=12"

# wait_socket PATH PID: until the DUT listens on its memif socket (the memif client
# does not retry a connection that failed at start).
wait_socket() {
    for _ in $(seq 300); do
        [[ -S "$1" ]] && return 0
        kill -0 "$2" 2>/dev/null || { echo "bench.sh: the DUT (pid $2) exited before listening on $1" >&2; return 1; }
        sleep 0.1
    done
    echo "bench.sh: no memif socket at $1 after 30 s" >&2
    return 1
}

# run_gen NAME DUT MODE PROFILE FLOWS SOCKET [rvs-pktgen arguments...]
# (default arguments: the max trial and the zero-loss search)
run_gen() {
    local name=$1 dut=$2 mode=$3 profile=$4 flows=$5 sock=$6
    shift 6
    local extra=("$@")
    [[ ${#extra[@]} == 0 ]] && extra=(--search "${GEN_TIMES[@]}")
    # In the background and waited for, so that a signal reaches the trap at once.
    local dir=${RUN_DIR:-$WORK/runs}
    rm -f "$dir/$name.json"
    "$PKTGEN" run --dut "$dut" --mode "$mode" --profile "$profile" --flows "$flows" \
        --device "net_memif0,role=client,socket=$sock,$MEMIF_OPTS" --lcore 0 --file-prefix "$TAG-gen" \
        "${extra[@]}" --out "$dir/$name.json" \
        > /dev/null 2> "$dir/$name.gen.log" < /dev/null &
    local gen=$!
    PIDS+=($gen)
    GEN_PID=$gen
    if [[ -n ${BEFORE_GEN_EXIT:-} ]]; then
        # The generator lingers connected after its report: run the hook meanwhile.
        for _ in $(seq 6000); do
            [[ -f "$dir/$name.json" ]] && break
            kill -0 "$gen" 2>/dev/null || break
            sleep 0.1
        done
        $BEFORE_GEN_EXIT
    fi
    wait "$gen" || { tail -20 "$dir/$name.gen.log" >&2; return 1; }
    python3 - "$dir/$name.json" <<'EOF' >&2
import json, sys
d = json.load(open(sys.argv[1]))
m, s = d["max"], d.get("search") or {}
print(f"  {d['dut']:8} {d['mode']:8} {d['profile']:12} flows={d['flows']:<8} max {m['rx_mpps']:.3f} Mpps"
      f"  zero-loss {s.get('zero_loss_mpps', 0):.3f} Mpps  bad={m['received_bad_rewrite']} p50={m['latency_ns']['p50']} ns"
      + (f"  syn-acks={m['received_syn_ack']}" if m.get("received_syn_ack") else ""))
if m["received_ok"] == 0 or m["received_bad_rewrite"] > 0:
    print(f"  BROKEN: nothing forwarded or wrong rewrites; first bad frame: {d.get('first_bad_frame')}")
    sys.exit(1)
for c in (d.get("cycles") or {}, d.get("cycles_loaded") or {}):
    if not c.get("dut"):
        continue
    u, t = c["dut"], c["trial"]
    print(f"  cycles trial at {c['rate_pps'] / 1e6:.3f} Mpps: rvsd {u['cycles_per_packet'] or 0:.0f} cycles/packet "
          f"({u['busy_cycles']} busy cycles / {u['busy_frames']} frames, busy {100 * (u['busy_fraction'] or 0):.0f} %), loss {t['loss_ratio']:.4f}")
    if not u["busy_cycles"] or not u["busy_frames"] or not u["tsc_hz"]:
        print("  BROKEN: the DUT's busy_cycles / busy_frames / tsc_hz did not move over the cycles trial")
        sys.exit(1)
EOF
}

# start_testpmd LOG [testpmd options...]: io-fwd on the memif server at $SOCK; sets TP_PID.
start_testpmd() {
    local log=$1
    shift
    rm -f "$SOCK"
    "$TESTPMD" -l 0,1 --main-lcore 0 --no-huge -m 512 --no-pci --file-prefix "$TAG-testpmd" \
        --vdev "net_memif0,role=server,socket=$SOCK,$MEMIF_OPTS" -- \
        --forward-mode=io --port-topology=loop --nb-cores=1 --total-num-mbufs=16384 \
        --rxd=1024 --txd=1024 --burst=32 --auto-start --stats-period 60 "$@" \
        > "$log" 2>&1 < /dev/null &
    TP_PID=$!
    PIDS+=($TP_PID)
    wait_socket "$SOCK" "$TP_PID" || { tail -20 "$log" >&2; exit 1; }
    # The socket exists from EAL's probe on; testpmd answers the memif handshake only
    # once its port is started, and the memif client does not retry: wait for that.
    for _ in $(seq 300); do
        grep -q "forwards packets on" "$log" && break
        sleep 0.1
    done
    sleep 0.5
}

# ---------------------------------------------------------------- 4b. SYN proxy (issue 14)
# start_rvsd NAME [rvs-pktgen rvsd-config arguments...]: an rvsd serving $SOCK (RVSD_PID).
start_rvsd() {
    local name=$1 dir=${RUN_DIR:-$WORK/runs}
    shift
    rm -f "$SOCK"
    "$PKTGEN" rvsd-config --device "net_memif0,role=server,socket=$SOCK,$MEMIF_OPTS" --file-prefix "$TAG-rvsd" \
        --api "127.0.0.1:$API_PORT" "$@" > "$dir/$name.rvsd.json"
    RUST_LOG=warn "$RVSD" --config "$dir/$name.rvsd.json" > "$dir/$name.rvsd.log" 2>&1 < /dev/null &
    RVSD_PID=$!
    PIDS+=($RVSD_PID)
    for _ in $(seq 100); do
        curl -sf "127.0.0.1:$API_PORT/api/v1/status" > /dev/null 2>&1 && break
        kill -0 "$RVSD_PID" 2>/dev/null || { cat "$dir/$name.rvsd.log" >&2; exit 1; }
        sleep 0.1
    done
    wait_socket "$SOCK" "$RVSD_PID" || { tail -20 "$dir/$name.rvsd.log" >&2; exit 1; }
}

# finish_rvsd NAME: rvsd's counters into NAME.stats.json, then rvsd stopped, while the
# generator still lingers connected (run_gen's BEFORE_GEN_EXIT, with --linger). The DUT
# goes first because DPDK 22.11's memif driver unmaps a connection's rings from its
# interrupt thread when the peer disconnects, without waiting for the lcore that polls
# them: a busy-polling worker can then fault (seen in rvsd's rx burst when the generator
# exited first). Exits the bench when rvsd had died or does not stop cleanly, so that a
# crash is never reported as missing counters.
finish_rvsd() {
    local name=$1 dir=${RUN_DIR:-$WORK/runs} rc=0
    if [[ -n ${PERF_PID:-} ]]; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=""
    fi
    curl -sf "127.0.0.1:$API_PORT/api/v1/stats" > "$dir/$name.stats.json" || echo '{}' > "$dir/$name.stats.json"
    # stop_pid leaves the exit status to `wait`: rvsd's own when it had died before.
    stop_pid "$RVSD_PID"
    wait "$RVSD_PID" || rc=$?
    if ((rc != 0)); then
        tail -20 "$dir/$name.rvsd.log" >&2
        echo "bench.sh: rvsd ($name) exited with status $rc (above 128: killed by signal $((rc - 128)))" >&2
        exit 1
    fi
}

# synflood_runs: step 4b into $WORK/synflood, then its report into $OUT.
synflood_runs() {
    local mode name every=${RVS_BENCH_MIX_SYN_EVERY:-10}
    local RUN_DIR=$WORK/synflood
    mkdir -p "$RUN_DIR"
    SOCK=$WORK/rvsd.sock
    for mode in ${RVS_BENCH_SYN_MODES-nat fullnat}; do
        # The same SYNs at :80 (no proxy: each creates a connection), for comparison.
        name="rvsd-$mode-synproxy-plain"
        log "rvsd $mode without SYN proxy: syn profile at :80, cycles at $CYCLES_PPS pps"
        start_rvsd "$name" --modes "$mode" --conn-table-size "$TABLE"
        BEFORE_GEN_EXIT="finish_rvsd $name" run_gen "$name" rvsd "$mode" syn 0 "$SOCK" --search "${GEN_TIMES[@]}" \
            --cycles-rate "$CYCLES_PPS" --cycles-secs "$CYCLES_SECS" --dut-stats "127.0.0.1:$API_PORT" --linger 10
        name="rvsd-$mode-synproxy-cookie"
        log "rvsd $mode SYN proxy: syn profile at :81 (syn_proxy on), cycles at $CYCLES_PPS pps"
        start_rvsd "$name" --modes "$mode" --conn-table-size 1000000 --syn-proxy-port 81
        BEFORE_GEN_EXIT="finish_rvsd $name" run_gen "$name" rvsd "$mode" syn 0 "$SOCK" --search "${GEN_TIMES[@]}" \
            --syn-port 81 --syn-proxy --cycles-rate "$CYCLES_PPS" --cycles-secs "$CYCLES_SECS" \
            --dut-stats "127.0.0.1:$API_PORT" --linger 10
        name="rvsd-$mode-synproxy-mix-1000"
        log "rvsd $mode SYN proxy: 1000 established flows at :80, 1 packet in $every a SYN at :81"
        start_rvsd "$name" --modes "$mode" --conn-table-size 1000000 --syn-proxy-port 81
        BEFORE_GEN_EXIT="finish_rvsd $name" run_gen "$name" rvsd "$mode" mix 1000 "$SOCK" --search "${GEN_TIMES[@]}" \
            --syn-port 81 --syn-proxy --mix-syn-every "$every" --linger 10
    done
    cp "$WORK/machine.json" "$RUN_DIR/machine.json"
    mkdir -p "$OUT"
    rm -rf "$OUT/synflood-runs"
    mkdir -p "$OUT/synflood-runs"
    cp "$RUN_DIR"/*.json "$OUT/synflood-runs/"
    python3 "$ROOT/deploy/bench/synflood_report.py" "$RUN_DIR" "$OUT" "$every" "$CYCLES_PPS"
    log "SYN proxy figures: $OUT/SYNFLOOD.md"
}

# --synflood: only step 4b (at R = RVS_BENCH_CYCLES_PPS, default 500000: no testpmd run).
if [[ $SYNFLOOD_ONLY == 1 ]]; then
    synflood_runs
    exit 0
fi

if [[ -n "$TESTPMD" ]]; then
    log "dpdk-testpmd io-fwd (the limit)"
    SOCK=$WORK/testpmd.sock
    FIRST_MODE=$(echo $MODES | cut -d' ' -f1)
    start_testpmd "$WORK/runs/testpmd.log"
    run_gen "testpmd-io-established-1000" testpmd "$FIRST_MODE" established 1000 "$SOCK"
    stop_pid "$TP_PID"
    [[ -n ${RVS_BENCH_CYCLES_PPS:-} ]] || CYCLES_PPS=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['max']['rx_mpps'] * 1e6 * float(sys.argv[2])))" \
        "$WORK/runs/testpmd-io-established-1000.json" "$CYCLES_FRACTION")
    # testpmd's own busy cycles per packet at the cycles rate: a fresh process (its
    # counters are cumulative and printed at exit), SYN frames (no flow setup; io-fwd
    # does not look at them), stopped with SIGTERM, which prints the forwarding stats.
    # testpmd's port counters (its cycles/packet denominator) read zero once memif's peer
    # has gone: the generator stays connected (--linger) until testpmd has stopped.
    # As many fresh processes as rvsd gets cycles trials; the lowest figure is kept.
    stop_testpmd() { stop_pid "$TP_PID"; }
    # testpmd_cycles RATE NAME: testpmd's figure at RATE into $WORK/NAME.json (report.py
    # reads testpmd_cycles.json and testpmd_cycles_loaded.json), the kept run's generator
    # report (offered rate, loss) into runs/NAME with '_' as '-'.
    testpmd_cycles() {
        local rate=$1 name=$2 run=${2//_/-} k kept
        log "dpdk-testpmd io-fwd --record-core-cycles at $rate pps"
        for k in $(seq "$CYCLES_TRIALS"); do
            start_testpmd "$WORK/runs/$run-$k.log" --record-core-cycles --record-burst-stats
            BEFORE_GEN_EXIT=stop_testpmd run_gen "$run-$k" testpmd "$FIRST_MODE" syn 0 "$SOCK" \
                --rate "$rate" --duration "$CYCLES_SECS" --linger 10
        done
        python3 "$ROOT/deploy/bench/testpmd_cycles.py" "$rate" \
            $(seq -f "$WORK/runs/$run-%g.log" "$CYCLES_TRIALS") > "$WORK/$name.json"
        kept=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run"])' "$WORK/$name.json")
        cp "$WORK/runs/$run-$kept.json" "$WORK/runs/$run.json"
        log "  testpmd: $(cat "$WORK/$name.json")"
    }
    testpmd_cycles "$CYCLES_PPS" testpmd_cycles
    testpmd_cycles "$LOADED_PPS" testpmd_cycles_loaded
else
    log "dpdk-testpmd not found (apt-get install dpdk): no limit measured; cycles rate $CYCLES_PPS pps"
fi

for mode in $MODES; do
    for sc in "${SCENARIOS[@]}"; do
        profile=${sc%%:*}; flows=${sc##*:}
        name="rvsd-$mode-$profile-$flows"
        log "rvsd $mode $profile flows=$flows"
        SOCK=$WORK/rvsd.sock
        # The flows must fill at most half the table: above half (the default
        # syn_flood.pressure_table_percent) rvsd's SYN-flood defence bounds new
        # connections per source prefix, and the setup would leave flows without
        # a connection (report.py marks such a run "not measured").
        table=$(( flows * 2 + 100000 > TABLE ? flows * 2 + 100000 : TABLE ))
        start_rvsd "$name" --modes "$mode" --conn-table-size "$table"
        # perf stat on rvsd over the whole run: where the worker's time goes.
        PERF_PID=""
        if command -v perf > /dev/null && [[ $SMOKE == 0 ]]; then
            perf stat -e task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions \
                -p "$RVSD_PID" -o "$WORK/runs/$name.perf.txt" > /dev/null 2>&1 &
            PERF_PID=$!
            PIDS+=($PERF_PID)
        fi
        if [[ $profile == established ]]; then
            BEFORE_GEN_EXIT="finish_rvsd $name" run_gen "$name" rvsd "$mode" "$profile" "$flows" "$SOCK" \
                --search "${GEN_TIMES[@]}" --cycles-rate "$CYCLES_PPS" --loaded-cycles-rate "$LOADED_PPS" \
                --cycles-secs "$CYCLES_SECS" --cycles-trials "$CYCLES_TRIALS" --dut-stats "127.0.0.1:$API_PORT" --linger 10
            # The same cycles trials in more fresh rvsd processes (NAME-cyclesK: report.py
            # keeps the lowest figure of all of them, as it does for testpmd's processes).
            for k in $(seq 2 "$CYCLES_PROCESSES"); do
                log "rvsd $mode $profile flows=$flows: cycles trials in fresh process $k of $CYCLES_PROCESSES"
                start_rvsd "$name-cycles$k" --modes "$mode" --conn-table-size "$table"
                BEFORE_GEN_EXIT="finish_rvsd $name-cycles$k" run_gen "$name-cycles$k" rvsd "$mode" "$profile" "$flows" "$SOCK" \
                    --rate "$CYCLES_PPS" --duration 1 --cycles-rate "$CYCLES_PPS" --loaded-cycles-rate "$LOADED_PPS" \
                    --cycles-secs "$CYCLES_SECS" --cycles-trials "$CYCLES_TRIALS" --dut-stats "127.0.0.1:$API_PORT" --linger 10
            done
        else
            BEFORE_GEN_EXIT="finish_rvsd $name" run_gen "$name" rvsd "$mode" "$profile" "$flows" "$SOCK" \
                --search "${GEN_TIMES[@]}" --linger 10
        fi
    done
done
[[ $SMOKE == 1 || -z ${RVS_BENCH_SYN_MODES-x} ]] || synflood_runs
echo "\"$(cut -d' ' -f1-3 /proc/loadavg)\"" > "$WORK/load_end.json"

# ---------------------------------------------------------------- 5. report
log "report -> $OUT"
mkdir -p "$OUT"
rm -rf "$OUT/failed-run-logs"
python3 "$ROOT/deploy/bench/report.py" "$WORK" "$OUT" $( [[ $SMOKE == 1 ]] && echo --smoke )
log "done: $OUT/REPORT.md"
