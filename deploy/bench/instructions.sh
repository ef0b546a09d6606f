#!/usr/bin/env bash
# Instructions per packet of the packet path, counted by callgrind: exact and
# independent of machine load (unlike criterion's nanoseconds), so a change can
# be compared before/after on a busy machine.
#
#   deploy/bench/instructions.sh [MODE ...]      (default: dr nat tun fullnat)
#
# MODE is a criterion group name: the IPv4 modes, the IPv6 scenarios
# ipv6-dr ipv6-nat ipv6-tun ipv6-fullnat ipv6-nat64, or an IPv4 mode over UDP
# (udp-dr udp-nat udp-tun udp-fullnat: RVS_BENCH_PROTO=udp, established only).
#
# For each mode and each of `established` / `new_conn` (and, for NAT and
# FULLNAT, `established_reply`: the real servers' replies), it runs criterion's
# packet_path bench (1k connections) under valgrind with collection toggled on
# `Fixture::run_pool` (the frames' trip through `Processor::handle_burst`, plus
# the harness's moving of frames between vectors), divides by the frames the
# bench reports it ran (`frames timed:`) and prints one line per case.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
modes=${*:-dr nat tun fullnat}
bin=$(cargo bench -p rvs-bench --bench packet_path --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "packet_path":
        print(m["executable"])')
[ -x "$bin" ] || { echo "instructions.sh: the packet_path bench did not build" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-8s %-18s %12s %10s %14s\n' mode case instructions frames "instr/packet"
for mode in $modes; do
    cases="established new_conn" proto=tcp
    [[ $mode == nat || $mode == fullnat ]] && cases="established established_reply new_conn"
    [[ $mode == udp-* ]] && cases=established proto=udp
    for what in $cases; do
        RVS_BENCH_PROTO=$proto RVS_BENCH_BIG_CONNS=2000 valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" \
            --toggle-collect='*run_pool*' "$bin" --bench "packet_path/$mode/1k/$what" --profile-time 2 \
            >/dev/null 2>"$tmp/err"
        total=$(callgrind_annotate "$tmp/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
        frames=$(grep -o "frames timed: [0-9]*" "$tmp/err" | awk '{print $3}')
        printf '%-8s %-18s %12s %10s %14s\n' "$mode" "$what" "$total" "$frames" "$((total / frames))"
    done
done
