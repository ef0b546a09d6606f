#!/usr/bin/env python3
"""testpmd io-fwd's own cycles per packet from its --record-core-cycles output.

    testpmd_cycles.py RATE_PPS LOG [LOG ...]

Each LOG is the output of one testpmd process stopped with SIGTERM (which
prints the forwarding stats). Prints one JSON object: the run with the fewest
cycles per packet, its 1-based position among the LOGs ("run") and every
run's figure ("runs"). Used by deploy/bench.sh and deploy/bench/cycles.sh.
"""
import json
import re
import sys

# DPDK 22.11 labels them "total cycles" (the busy ones: io-fwd stops its count
# on an empty rx burst); later DPDK "busy cycles".
CYCLES = re.compile(r"CPU cycles/packet=([0-9.]+) \((?:total|busy) cycles=(\d+) / total (\w+) packets=(\d+)\) at (\d+) MHz")
BURSTS = re.compile(r"RX-bursts : (\d+) \[([^\]]*)\]")


def parse(path, rate):
    text = open(path, errors="replace").read()
    m = CYCLES.findall(text)
    if not m:
        sys.exit(f"testpmd_cycles.py: no 'CPU cycles/packet' in testpmd's output (--record-core-cycles): see {path}")
    cpp, busy, kind, pkts, mhz = m[-1]
    bursts = BURSTS.findall(text)
    return {"rate_pps": rate, "cycles_per_packet": float(cpp), "busy_cycles": int(busy),
            "packets": int(pkts), "packets_counted": kind, "tsc_mhz": int(mhz),
            "rx_bursts": bursts[-1][0] if bursts else None,
            "rx_burst_sizes": bursts[-1][1].strip() if bursts else None}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rate = int(float(sys.argv[1]))
    found = [parse(path, rate) for path in sys.argv[2:]]
    k = min(range(len(found)), key=lambda i: found[i]["cycles_per_packet"])
    best = dict(found[k], run=k + 1, runs=[f["cycles_per_packet"] for f in found])
    print(json.dumps(best))


if __name__ == "__main__":
    main()
