#!/usr/bin/env bash
# rvsd's own cycles per packet over memif at one offered rate, for a quick
# before/after comparison of two builds on the same machine (deploy/bench.sh
# measures the same figure inside its full run, next to testpmd's).
#
#   deploy/bench/cycles.sh [--target DIR] [MODE [RATE_PPS [FLOWS]]]
#       (defaults: target/ of this checkout, dr, 1000000, 1000)
#   deploy/bench/cycles.sh testpmd [RATE_PPS]
#       dpdk-testpmd io-fwd's own figure at the same rate (--record-core-cycles),
#       the reference of the issue-13 ratio: on a shared virtual machine the
#       host's placement of the two vCPUs moves both figures, so compare runs
#       taken back to back.
#
# rvsd's worker runs on lcore 1, rvs-pktgen on lcore 0 offering RATE_PPS
# 64-byte frames of FLOWS established flows for 3 s; the figure is the
# worker's busy_cycles / busy_frames over the trial (GET /api/v1/stats before
# and after). Prints one JSON line. Needs a release build of rvsd and
# rvs-pktgen in DIR/release (cargo build --release -p rvsd -p rvs-bench).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ ${1:-} == --target ]]; then TARGET=$2; shift 2; fi
MODE=${1:-dr}; RATE=${2:-1000000}; FLOWS=${3:-1000}
DEVICE_OPTS="socket-abstract=no,rsize=12"
for b in rvsd rvs-pktgen; do
    [[ -x $TARGET/release/$b ]] || { echo "cycles.sh: no $TARGET/release/$b (cargo build --release -p rvsd -p rvs-bench)" >&2; exit 1; }
done
WORK=$(mktemp -d)
SOCK=$WORK/rvsd.sock
RVSD_PID=
cleanup() { [[ -n $RVSD_PID ]] && kill "$RVSD_PID" 2>/dev/null && wait "$RVSD_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
DEVICE="net_memif0,socket=$SOCK,$DEVICE_OPTS"
# Until the generator ($GEN) has written its report (it then lingers connected) or
# has exited; at most 2 minutes.
wait_report() {
    for _ in $(seq 1200); do
        [[ -f $WORK/gen.json ]] && return 0
        kill -0 "$GEN" 2>/dev/null || return 0
        sleep 0.1
    done
}

if [[ $MODE == testpmd ]]; then
    # As deploy/bench.sh measures it: io-fwd on the memif server, SYN frames (no
    # flow setup), testpmd stopped while the generator lingers connected (its
    # port counters, the denominator, read zero once the peer has gone).
    command -v dpdk-testpmd >/dev/null || { echo "cycles.sh: no dpdk-testpmd (apt-get install dpdk)" >&2; exit 1; }
    dpdk-testpmd -l 0,1 --main-lcore 0 --no-huge -m 512 --no-pci --file-prefix "rvs-cycles-testpmd-$$" \
        --vdev "net_memif0,role=server,socket=$SOCK,$DEVICE_OPTS" -- \
        --forward-mode=io --port-topology=loop --nb-cores=1 --total-num-mbufs=16384 \
        --rxd=1024 --txd=1024 --burst=32 --auto-start --stats-period 60 --record-core-cycles --record-burst-stats \
        > "$WORK/testpmd.log" 2>&1 < /dev/null &
    RVSD_PID=$!
    for _ in $(seq 300); do
        grep -q "forwards packets on" "$WORK/testpmd.log" && [[ -S $SOCK ]] && break
        kill -0 "$RVSD_PID" 2>/dev/null || { cat "$WORK/testpmd.log" >&2; exit 1; }
        sleep 0.1
    done
    sleep 0.5
    "$TARGET/release/rvs-pktgen" run --dut testpmd --mode dr --profile syn --flows 0 \
        --device "${DEVICE/net_memif0,/net_memif0,role=client,}" --lcore 0 --file-prefix "rvs-cycles-gen-$$" \
        --rate "$RATE" --duration 3 --linger 10 --out "$WORK/gen.json" > /dev/null 2> "$WORK/gen.log" < /dev/null &
    GEN=$!
    wait_report
    kill -TERM "$RVSD_PID" 2>/dev/null && wait "$RVSD_PID" 2>/dev/null || true
    RVSD_PID=
    wait "$GEN" || { tail -20 "$WORK/gen.log" >&2; exit 1; }
    python3 "$ROOT/deploy/bench/testpmd_cycles.py" "$RATE" "$WORK/testpmd.log" \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"mode": "testpmd", "rate_pps": float(d["rate_pps"]), "cycles_per_packet": d["cycles_per_packet"], "packets": d["packets"]}))'
    exit 0
fi
"$TARGET/release/rvs-pktgen" rvsd-config --device "${DEVICE/net_memif0,/net_memif0,role=server,}" --file-prefix "rvs-cycles-rvsd-$$" \
    --api 127.0.0.1:19191 --modes "$MODE" --conn-table-size $((FLOWS * 2 + 100000)) > "$WORK/rvsd.json"
RUST_LOG=warn "$TARGET/release/rvsd" --config "$WORK/rvsd.json" > "$WORK/rvsd.log" 2>&1 < /dev/null &
RVSD_PID=$!
for _ in $(seq 300); do
    [[ -S $SOCK ]] && break
    kill -0 "$RVSD_PID" 2>/dev/null || { cat "$WORK/rvsd.log" >&2; exit 1; }
    sleep 0.1
done
sleep 1
# rvsd is stopped while the generator lingers connected: DPDK's memif driver unmaps
# the rings of a connection its peer closed without waiting for the polling lcore
# (see finish_rvsd in deploy/bench.sh).
"$TARGET/release/rvs-pktgen" run --dut rvsd --mode "$MODE" --profile established --flows "$FLOWS" \
    --device "${DEVICE/net_memif0,/net_memif0,role=client,}" --lcore 0 --file-prefix "rvs-cycles-gen-$$" \
    --rate "$RATE" --duration 1 --cycles-rate "$RATE" --cycles-secs 3 --dut-stats 127.0.0.1:19191 \
    --linger 10 --out "$WORK/gen.json" > /dev/null 2> "$WORK/gen.log" < /dev/null &
GEN=$!
wait_report
kill -TERM "$RVSD_PID" 2>/dev/null || true
rc=0
wait "$RVSD_PID" || rc=$?
RVSD_PID=
((rc == 0)) || { tail -20 "$WORK/rvsd.log" >&2; echo "cycles.sh: rvsd exited with status $rc" >&2; exit 1; }
wait "$GEN" || { tail -20 "$WORK/gen.log" >&2; exit 1; }
python3 - "$WORK/gen.json" "$MODE" "$FLOWS" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
c = d.get("cycles") or {}
u, t = c.get("dut") or {}, c.get("trial") or {}
print(json.dumps({"mode": sys.argv[2], "flows": int(sys.argv[3]), "rate_pps": c.get("rate_pps"),
                  "cycles_per_packet": u.get("cycles_per_packet"), "busy_fraction": u.get("busy_fraction"),
                  "loss": t.get("loss_ratio")}))
PY
