#!/usr/bin/env python3
"""Turns the raw results of deploy/bench.sh into REPORT.md, report.json and mpps.png.

usage: report.py WORK_DIR OUT_DIR [--smoke]

WORK_DIR holds machine.json, criterion/<group>/<bench>/new/estimates.json
(IPv6 groups are packet_path_ipv6-MODE_SIZE: reported in their own section, without targets),
conn_mem.json, runs/*.json (rvs-pktgen reports; *.stats.json rvsd counters;
*.perf.txt perf stat; NAME-cyclesK.json the cycles trials of run NAME's extra
rvsd processes), testpmd_cycles.json (testpmd's --record-core-cycles
figure at the cycles rate; its generator report is runs/testpmd-cycles.json) and
testpmd_cycles_loaded.json (the same at the loaded rate; runs/testpmd-cycles-loaded.json).
Only the standard library is needed; the plot uses
matplotlib, installed with pip when missing, and falls back to an SVG drawn by
hand when that fails.
"""

import glob
import json
import os
import re
import subprocess
import sys

TARGETS = {
    # issue 6: memif zero-loss throughput, rvsd / testpmd
    "ratio_dr": 0.9,
    "ratio_fullnat": 0.8,
    # issue 13: packet path without I/O (criterion)
    "ns_established_small": 50.0,
    "ns_established_big": 150.0,
    "ns_new_conn_small": 150.0,
    # issue 13: busy cycles per packet over memif, rvsd / testpmd io-fwd, same offered rate
    "cycles_ratio": {"dr": 1.5, "nat": 1.5, "tun": 1.8, "fullnat": 1.8},
    "big_table_cost": 0.25,
    "bytes_per_conn": 64.0,
}


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def criterion_results(work):
    """{(mode, table): {"established": ns, "new_conn": ns, "established_reply": ns (NAT, FULLNAT)}}
    from criterion's estimates."""
    out = {}
    for est in glob.glob(os.path.join(work, "criterion", "packet_path_*", "*", "new", "estimates.json")):
        parts = est.split(os.sep)
        bench, group = parts[-3], parts[-4]
        _, _, mode, table = group.split("_", 3) if group.count("_") >= 3 else (None, None, None, None)
        if mode is None:
            continue
        d = load(est, {})
        mean = d.get("mean", {})
        ci = mean.get("confidence_interval", {})
        out.setdefault((mode, table), {})[bench] = {
            "ns": mean.get("point_estimate"),
            "ci_low": ci.get("lower_bound"),
            "ci_high": ci.get("upper_bound"),
            "median_ns": d.get("median", {}).get("point_estimate"),
        }
    return out


IPV6_PREFIX = "ipv6-"
# The IPv4 scenario each IPv6 one is shown next to (NAT64 goes through FULLNAT).
IPV4_COUNTERPART = {"nat64": "fullnat"}


def ipv6_summary(crit, crit6, mem):
    """The IPv6 figures of report.json: ns per packet per IPv6 scenario next to its IPv4
    counterpart, and the bytes per connection of an IPv6 table (rvs-conn-mem's `ipv6`)."""
    packet_path = {}
    order = ["dr", "nat", "tun", "fullnat", "nat64"]
    rank = lambda m: (order.index(m[len(IPV6_PREFIX):]) if m[len(IPV6_PREFIX):] in order else len(order), m)  # noqa: E731
    for (m, t), v in sorted(crit6.items(), key=lambda kv: (rank(kv[0][0]), table_rank(kv[0][1]))):
        mode = m[len(IPV6_PREFIX):]
        v4 = crit.get((IPV4_COUNTERPART.get(mode, mode), t), {})
        packet_path[f"{m}/{t}"] = {
            "established": v.get("established"),
            "new_conn": v.get("new_conn"),
            "ipv4_mode": IPV4_COUNTERPART.get(mode, mode),
            "ipv4_established_ns": v4.get("established", {}).get("ns"),
            "ipv4_new_conn_ns": v4.get("new_conn", {}).get("ns"),
        }
    m6 = (mem or {}).get("ipv6") or {}
    bytes_per_conn = []
    for r in m6.get("runs", []):
        worker = next((x for x in (mem or {}).get("runs", []) if x["mode"] == r["mode"] and x["connections"] == r["connections"]), None)
        bytes_per_conn.append({
            "mode": r["mode"],
            "connections": r["connections"],
            "ipv6_table_bytes_per_conn": r.get("bytes_per_conn"),
            "ipv4_table_bytes_per_conn": r.get("ipv4_table_only_bytes_per_conn"),
            "ipv4_worker_bytes_per_conn": worker.get("bytes_per_conn") if worker else None,
        })
    return {"packet_path_ns": packet_path, "bytes_per_conn": bytes_per_conn, "static_sizes_bytes": m6.get("static_sizes_bytes")}


def table_rank(label):
    mult = {"k": 1e3, "m": 1e6}
    try:
        return float(label[:-1]) * mult.get(label[-1], 1) if label[-1] in mult else float(label)
    except ValueError:
        return 0.0


def rvsd_counters(path):
    """rvsd's counters in the stats file PATH (GET /api/v1/stats, saved by
    deploy/bench.sh's finish_rvsd), summed over its workers; empty when missing."""
    counters = {}
    for w in (load(path, {}) or {}).get("workers", []):
        for k, v in w.get("counters", {}).items():
            counters[k] = counters.get(k, 0) + v
    return counters


def run_results(work):
    runs = []
    for path in sorted(glob.glob(os.path.join(work, "runs", "*.json"))):
        if path.endswith((".stats.json", ".rvsd.json")):
            continue
        d = load(path)
        if not d or "max" not in d:
            continue
        name = os.path.basename(path)[:-5]
        # testpmd's cycles runs, and rvsd's extra cycles processes (see process_cycles).
        if name.startswith("testpmd-cycles") or re.search(r"-cycles\d+$", name):
            continue
        search = d.get("search") or {}
        at = search.get("at_zero_loss_rate") or {}
        counters = rvsd_counters(os.path.join(work, "runs", name + ".stats.json"))
        perf = None
        pp = os.path.join(work, "runs", name + ".perf.txt")
        if os.path.exists(pp):
            perf = open(pp).read().strip()
        runs.append({
            "name": name,
            "dut": d["dut"],
            "mode": d["mode"] if d["dut"] == "rvsd" else "io-fwd",
            "profile": d["profile"],
            "flows": d["flows"],
            "frame_size": d["frame_size"],
            "proto": d["proto"],
            "max_mpps": d["max"]["rx_mpps"],
            "max_tx_mpps": d["max"]["tx_mpps"],
            "max_loss_ratio": d["max"]["loss_ratio"],
            "max_latency_ns": d["max"]["latency_ns"],
            "zero_loss_mpps": search.get("zero_loss_mpps"),
            "zero_loss_latency_ns": at.get("latency_ns"),
            "search_trials": search.get("trials"),
            "bad_rewrites": d["max"]["received_bad_rewrite"],
            "reordered": d["max"]["reordered"],
            "setup": d.get("setup"),
            "cycles": d.get("cycles"),
            "cycles_loaded": d.get("cycles_loaded"),
            "rvsd_counters": {k: v for k, v in counters.items() if v} or None,
            # Connections rvsd made: the flows the setup established (an
            # established profile's trials create none). None for testpmd.
            "flows_established": counters.get("conn_created", 0) if d["dut"] == "rvsd" and d["profile"] == "established" else None,
            "perf_stat": perf,
        })
    return runs


def process_cycles(work, r, key):
    """The cycles blocks at KEY ("cycles" or "cycles_loaded") of rvsd run R
    and of its extra fresh processes (runs/NAME-cyclesK.json, deploy/bench.sh's
    RVS_BENCH_CYCLES_PROCESSES), one per process, each with its trials. A
    process whose setup established fewer connections than R's flows is left
    out (its packets would measure drops)."""
    blocks = [r.get(key)]
    for path in sorted(glob.glob(os.path.join(work, "runs", r["name"] + "-cycles*.json"))):
        if path.endswith((".stats.json", ".rvsd.json")):
            continue
        if rvsd_counters(path[:-5] + ".stats.json").get("conn_created", 0) >= r["flows"]:
            blocks.append((load(path) or {}).get(key))
    return [b for b in blocks if b and (b.get("dut") or {}).get("cycles_per_packet")]


def cycles_at(work, rvsd_runs, modes, key, testpmd_name):
    """The cycles figures of one offered rate: testpmd's (WORK/TESTPMD_NAME.json
    and its generator report runs/TESTPMD-NAME.json), rvsd's per run (the run's
    KEY: "cycles" or "cycles_loaded") with their ratio to testpmd's, and per
    mode the increase from the small flow count to the big one."""
    tp_cycles = load(os.path.join(work, testpmd_name + ".json"))
    tp_cycles_run = load(os.path.join(work, "runs", testpmd_name.replace("_", "-") + ".json"))
    if tp_cycles and tp_cycles_run:
        tp_cycles["loss_ratio"] = tp_cycles_run["max"]["loss_ratio"]
        tp_cycles["offered_actual_pps"] = tp_cycles_run["max"].get("offered_rate_actual_pps")
    cycles = []
    for r in rvsd_runs:
        blocks = process_cycles(work, r, key)
        if not blocks:
            continue
        # The process with the lowest figure (each block is its process's lowest trial).
        c = min(blocks, key=lambda b: b["dut"]["cycles_per_packet"])
        u = c["dut"]
        tp = tp_cycles["cycles_per_packet"] if tp_cycles else None
        cycles.append({
            "mode": r["mode"], "flows": r["flows"], "rate_pps": c.get("rate_pps"),
            "offered_actual_pps": c["trial"].get("offered_rate_actual_pps"),
            "rvsd_cycles_per_packet": u["cycles_per_packet"], "rvsd_busy_fraction": u.get("busy_fraction"),
            "rvsd_loss_ratio": c["trial"]["loss_ratio"], "testpmd_cycles_per_packet": tp,
            "ratio": u["cycles_per_packet"] / tp if tp else None,
            "target": TARGETS["cycles_ratio"].get(r["mode"]),
            # Per process, its trials' figures.
            "rvsd_trials": [[t.get("cycles_per_packet") for t in b.get("trials") or []] for b in blocks],
            "short_of_flows": short_of_flows(r),
        })
    big_cost = {}
    for m in modes:
        a = next((c for c in cycles if c["mode"] == m and c["flows"] < 100000), None)
        b = next((c for c in cycles if c["mode"] == m and c["flows"] >= 100000), None)
        if a and b:
            big_cost[m] = {"small_flows": a["flows"], "big_flows": b["flows"], "rate_pps": a["rate_pps"],
                           "increase": b["rvsd_cycles_per_packet"] / a["rvsd_cycles_per_packet"] - 1,
                           "short_of_flows": a["short_of_flows"] or b["short_of_flows"]}
    return {"testpmd": tp_cycles, "rvsd": cycles, "big_table_increase": big_cost}


def mpps(pps):
    """'1.0 Mpps' for a rate in packets/s ('? Mpps' when unknown)."""
    return f"{pps / 1e6:.1f} Mpps" if pps else "? Mpps"


def cycles_table(L, at):
    """Appends testpmd's line and rvsd's table of one offered rate (see cycles_at)."""
    tp_cycles = at["testpmd"]
    if tp_cycles:
        L.append(f"testpmd io-fwd at {tp_cycles['rate_pps'] / 1e6:.3f} Mpps offered: **{tp_cycles['cycles_per_packet']:.1f} cycles/packet** "
                 f"({tp_cycles['busy_cycles']} busy cycles / {tp_cycles['packets']} {tp_cycles['packets_counted']} packets, TSC {tp_cycles['tsc_mhz']} MHz, "
                 f"actually offered {fmt((tp_cycles.get('offered_actual_pps') or 0) / 1e6, 3)} Mpps, "
                 f"loss {fmt(tp_cycles.get('loss_ratio'), 4)}; RX bursts: {tp_cycles.get('rx_burst_sizes') or 'n/a'}; "
                 f"all runs: {', '.join(fmt(v) for v in tp_cycles.get('runs') or [tp_cycles['cycles_per_packet']])}).")
    else:
        L.append("testpmd io-fwd: not measured (dpdk-testpmd missing or its cycles run failed).")
    L.append("")
    if not at["rvsd"]:
        L.append("rvsd: not measured at this rate.")
        L.append("")
        return
    L.append("| mode | flows | offered Mpps (set / actual) | rvsd cycles/packet | rvsd busy | rvsd loss at this rate | testpmd cycles/packet | ratio rvsd : testpmd | target | rvsd trials |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for c in at["rvsd"]:
        flows = f"{c['flows']} ({c['short_of_flows']})" if c["short_of_flows"] else f"{c['flows']}"
        L.append(f"| {c['mode']} | {flows} | {fmt(c['rate_pps'] / 1e6 if c['rate_pps'] else None, 3)} / "
                 f"{fmt((c['offered_actual_pps'] or 0) / 1e6, 3)} | {fmt(c['rvsd_cycles_per_packet'])} | "
                 f"{fmt(c['rvsd_busy_fraction'] * 100 if c['rvsd_busy_fraction'] is not None else None, 0)} % | {fmt(c['rvsd_loss_ratio'], 4)} | "
                 f"{fmt(c['testpmd_cycles_per_packet'])} | {fmt(c['ratio'], 2)} | ≤ {c['target']} | "
                 f"{' / '.join(', '.join(fmt(v) for v in p) for p in c['rvsd_trials']) or 'n/a'} |")
    L.append("")


def short_of_flows(r):
    """The run's 'only N of M flows established' note when rvsd refused
    some of its flows at setup (its figures then measure something else:
    packets of flows without a connection are dropped), else None."""
    n = r.get("flows_established")
    if n is None or n >= r["flows"]:
        return None
    return f"only {n} of {r['flows']} flows established"


def not_measured(note):
    return f"not measured ({note})"


def fmt(v, nd=1, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def verdict(ok):
    if ok is None:
        return "n/a"
    return "met" if ok else "**not met**"


def scenario_label(r):
    if r["profile"] == "established":
        n = r["flows"]
        return f"established {n // 1000000}M" if n >= 1000000 else f"established {n // 1000}k" if n >= 1000 else f"established {n}"
    return r["profile"]


def plot_png(path, runs, crit):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600, check=False)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    # Left: memif Mpps by mode and scenario.
    ax = axes[0]
    modes = []
    for r in runs:
        if r["mode"] not in modes:
            modes.append(r["mode"])
    scenarios = []
    for r in runs:
        s = scenario_label(r)
        if s not in scenarios:
            scenarios.append(s)
    width = 0.8 / max(1, len(scenarios))
    for j, s in enumerate(scenarios):
        xs, zl, mx = [], [], []
        for i, m in enumerate(modes):
            r = next((r for r in runs if r["mode"] == m and scenario_label(r) == s), None)
            if r:
                xs.append(i + j * width)
                zl.append(r["zero_loss_mpps"] or 0)
                mx.append(r["max_mpps"] or 0)
        bars = ax.bar(xs, mx, width * 0.95, label=f"{s} (max)", alpha=0.35)
        ax.bar(xs, zl, width * 0.95, color=bars.patches[0].get_facecolor()[:3] if bars.patches else None,
               label=f"{s} (zero loss)")
    ax.set_xticks([i + width * (len(scenarios) - 1) / 2 for i in range(len(modes))])
    ax.set_xticklabels(modes)
    ax.set_ylabel("Mpps (64-byte frames)")
    ax.set_title("memif, 1 worker core: rvsd per mode vs testpmd io-fwd")
    ax.legend(fontsize=7)
    # Right: packet path without I/O, Mpps per core = 1000 / ns.
    ax = axes[1]
    cmodes = sorted({m for m, _ in crit})
    tables = sorted({t for _, t in crit}, key=table_rank)
    benches = ["established", "new_conn"]
    groups = [(t, b) for t in tables for b in benches]
    width = 0.8 / max(1, len(groups))
    for j, (t, b) in enumerate(groups):
        xs, ys = [], []
        for i, m in enumerate(cmodes):
            ns = crit.get((m, t), {}).get(b, {}).get("ns")
            if ns:
                xs.append(i + j * width)
                ys.append(1000.0 / ns)
        ax.bar(xs, ys, width * 0.95, label=f"{b}, {t} conns")
    ax.axhline(1000.0 / TARGETS["ns_established_small"], color="grey", linestyle="--", linewidth=0.8)
    ax.text(0, 1000.0 / TARGETS["ns_established_small"], " target 50 ns (established, 1k)", fontsize=7, va="bottom")
    ax.set_xticks([i + width * (len(groups) - 1) / 2 for i in range(len(cmodes))])
    ax.set_xticklabels(cmodes)
    ax.set_ylabel("Mpps per core (1000 / ns per packet)")
    ax.set_title("packet path without I/O (criterion)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def plot_svg(path, runs):
    """A plain bar chart of memif max / zero-loss Mpps, without dependencies."""
    w, h, left, bottom = 900, 420, 60, 60
    bars = [(f"{r['mode']} {scenario_label(r)}", r["max_mpps"] or 0, r["zero_loss_mpps"] or 0) for r in runs]
    top = max([b[1] for b in bars] + [0.1]) * 1.1
    bw = (w - left - 20) / max(1, len(bars))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="10">',
           f'<text x="{w/2}" y="20" text-anchor="middle" font-size="14">Mpps over memif (light: max, dark: zero loss)</text>']
    for i, (label, mx, zl) in enumerate(bars):
        x = left + i * bw
        for val, colour in ((mx, "#9ecae1"), (zl, "#3182bd")):
            bh = (h - bottom - 40) * val / top
            out.append(f'<rect x="{x + 4:.1f}" y="{h - bottom - bh:.1f}" width="{bw - 8:.1f}" height="{bh:.1f}" fill="{colour}"/>')
        out.append(f'<text x="{x + bw/2:.1f}" y="{h - bottom - (h - bottom - 40) * mx / top - 4:.1f}" text-anchor="middle">{mx:.2f}</text>')
        out.append(f'<text transform="translate({x + bw/2:.1f},{h - bottom + 12}) rotate(20)">{label}</text>')
    out.append(f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="black"/>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    smoke = "--smoke" in sys.argv
    work, out = args[0], args[1]
    os.makedirs(out, exist_ok=True)
    machine = load(os.path.join(work, "machine.json"), {})
    machine["load_average_at_end"] = load(os.path.join(work, "load_end.json"))
    crit_all = criterion_results(work)
    # IPv6 scenarios (groups packet_path/ipv6-MODE/SIZE) have no target: kept apart from the IPv4 figures.
    crit = {k: v for k, v in crit_all.items() if not k[0].startswith(IPV6_PREFIX)}
    crit6 = {k: v for k, v in crit_all.items() if k[0].startswith(IPV6_PREFIX)}
    mem = load(os.path.join(work, "conn_mem.json"), {})
    runs = run_results(work)

    testpmd = next((r for r in runs if r["dut"] == "testpmd"), None)
    rvsd_runs = [r for r in runs if r["dut"] == "rvsd"]
    modes = []
    for r in rvsd_runs:
        if r["mode"] not in modes:
            modes.append(r["mode"])
    for m, _ in crit:
        if m not in modes:
            modes.append(m)

    # Cycles per packet at the same offered rate: rvsd's busy_cycles / busy_frames
    # against testpmd io-fwd's --record-core-cycles figure; at the light rate and
    # at the loaded one.
    light = cycles_at(work, rvsd_runs, modes, "cycles", "testpmd_cycles")
    loaded = cycles_at(work, rvsd_runs, modes, "cycles_loaded", "testpmd_cycles_loaded")

    # Ratios rvsd/testpmd, established flows, smallest flow count, same frame size.
    ratios = {}
    for m in modes:
        r = next((r for r in rvsd_runs if r["mode"] == m and r["profile"] == "established"), None)
        if r and testpmd:
            ratios[m] = {
                "zero_loss": (r["zero_loss_mpps"] / testpmd["zero_loss_mpps"]) if r["zero_loss_mpps"] and testpmd["zero_loss_mpps"] else None,
                "max": (r["max_mpps"] / testpmd["max_mpps"]) if testpmd["max_mpps"] else None,
                "target": TARGETS["ratio_dr"] if m == "dr" else TARGETS["ratio_fullnat"] if m == "fullnat" else None,
            }

    tables = sorted({t for _, t in crit}, key=table_rank)
    small, big = (tables[0], tables[-1]) if tables else (None, None)
    big_cost = {}
    for m in modes:
        a = crit.get((m, small), {}).get("established", {}).get("ns")
        b = crit.get((m, big), {}).get("established", {}).get("ns")
        memif_small = next((r for r in rvsd_runs if r["mode"] == m and r["profile"] == "established" and r["flows"] < 100000), None)
        memif_big = next((r for r in rvsd_runs if r["mode"] == m and r["profile"] == "established" and r["flows"] >= 100000), None)
        big_cost[m] = {
            "criterion_throughput_loss": (1 - a / b) if a and b and small != big else None,
            "memif_throughput_loss": (1 - memif_big["max_mpps"] / memif_small["max_mpps"]) if memif_small and memif_big and memif_small["max_mpps"] else None,
            "memif_short_of_flows": (short_of_flows(memif_small) or short_of_flows(memif_big)) if memif_small and memif_big else None,
        }

    ipv6 = ipv6_summary(crit, crit6, mem)
    report = {
        "machine": machine,
        "smoke": smoke,
        "targets": TARGETS,
        "packet_path_ns": {f"{m}/{t}": v for (m, t), v in sorted(crit.items())},
        "memory_per_connection": mem,
        "ipv6": ipv6,
        "memif_runs": runs,
        "ratios_rvsd_over_testpmd": ratios,
        "big_table_cost": big_cost,
        "cycles_per_packet": dict(light, loaded=loaded),
    }
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)

    png = os.path.join(out, "mpps.png")
    plotted = plot_png(png, runs, crit)
    if not plotted:
        plot_svg(os.path.join(out, "mpps.svg"), runs)

    L = []
    L.append("# rvs benchmark report" + (" (smoke run: short, small tables — not for comparison)" if smoke else ""))
    L.append("")
    L.append("Produced by `deploy/bench.sh" + (" --smoke" if smoke else "") + "`. Every figure below is measured by that command; "
             "targets are from issues 6 (memif throughput ratios) and 13 (packet path, cycles per packet) and are reported, not asserted.")
    L.append("")
    L.append("## Machine")
    L.append("")
    for k in ["cpu_model", "cpus", "memory_gib", "hypervisor", "kernel", "dpdk", "rustc", "date_utc", "git_commit", "git_dirty",
              "load_average_at_start", "load_average_at_end", "command"]:
        L.append(f"- {k}: {machine.get(k)}")
    L.append("")
    L.append("The machine is a 2-vCPU KVM guest shared with other work: load averages above 2 mean other processes "
             "competed for the two cores during the run, and every figure is then pessimistic and noisy.")
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | measured | verdict |")
    L.append("|---|---|---|")
    for m, r in ratios.items():
        if r["target"] is not None:
            v = r["zero_loss"] if r["zero_loss"] is not None else r["max"]
            L.append(f"| rvsd/testpmd {m} (64 B, established 1k flows) ≥ {r['target']} | zero-loss {fmt(r['zero_loss'], 2)}, max {fmt(r['max'], 2)} | {verdict(v >= r['target'] if v is not None else None)} (on zero-loss) |")
        else:
            L.append(f"| rvsd/testpmd {m} (no target; 64 B, established 1k flows) | zero-loss {fmt(r['zero_loss'], 2)}, max {fmt(r['max'], 2)} | — |")
    for (m, t), v in sorted(crit.items(), key=lambda kv: (kv[0][0], table_rank(kv[0][1]))):
        e = v.get("established", {}).get("ns")
        n = v.get("new_conn", {}).get("ns")
        te = TARGETS["ns_established_small"] if t == small else TARGETS["ns_established_big"]
        L.append(f"| {m}, {t} conns: established ≤ {te:.0f} ns | {fmt(e)} ns | {verdict(e <= te if e else None)} |")
        if "established_reply" in v:
            r = v["established_reply"].get("ns")
            L.append(f"| {m}, {t} conns: established, real server's reply ≤ {te:.0f} ns | {fmt(r)} ns | {verdict(r <= te if r else None)} |")
        if t == small:
            tn = TARGETS["ns_new_conn_small"]
            L.append(f"| {m}, {t} conns: new connection ≤ {tn:.0f} ns | {fmt(n)} ns | {verdict(n <= tn if n else None)} |")
    for at in (light, loaded):
        for c in at["rvsd"]:
            if c["target"] is not None:
                lossy = " (rvsd lost packets at this rate)" if c["rvsd_loss_ratio"] else ""
                judged = not_measured(c["short_of_flows"]) if c["short_of_flows"] else verdict(c["ratio"] <= c["target"] if c["ratio"] else None)
                L.append(f"| {c['mode']}, {c['flows']} flows, {mpps(c['rate_pps'])} offered: cycles/packet rvsd ≤ {c['target']} × "
                         f"testpmd io-fwd | {fmt(c['ratio'], 2)} ×{lossy} | {judged} |")
        for m, c in at["big_table_increase"].items():
            judged = not_measured(c["short_of_flows"]) if c["short_of_flows"] else verdict(c["increase"] <= TARGETS["big_table_cost"])
            L.append(f"| {m}, {mpps(c['rate_pps'])} offered: {c['big_flows']} flows cost ≤ 25 % more cycles/packet than "
                     f"{c['small_flows']} | {fmt(c['increase'] * 100)} % | {judged} |")
    for m, c in big_cost.items():
        v = c["criterion_throughput_loss"]
        if v is not None:
            L.append(f"| {m}: {big} conns cost ≤ 25 % vs {small} (packet path) | {fmt(v * 100)} % | {verdict(v <= TARGETS['big_table_cost'])} |")
        v = c["memif_throughput_loss"]
        if v is not None:
            judged = not_measured(c["memif_short_of_flows"]) if c["memif_short_of_flows"] else verdict(v <= TARGETS["big_table_cost"])
            L.append(f"| {m}: 4M flows cost ≤ 25 % vs 1k (memif Mpps) | {fmt(v * 100)} % | {judged} |")
    for r in mem.get("runs", []):
        if r["connections"] == max(x["connections"] for x in mem["runs"]):
            L.append(f"| {r['mode']}: ≤ 64 bytes per connection ({r['connections']} conns) | {fmt(r['bytes_per_conn'])} B | {verdict(r['bytes_per_conn'] <= TARGETS['bytes_per_conn'])} |")
    L.append("")
    L.append("## Throughput over memif (one worker core)")
    L.append("")
    L.append("rvs-pktgen on lcore 0 sends 64-byte TCP frames over a memif pair to the DUT whose worker runs on lcore 1 "
             "(its main lcore shares core 0 with the generator). *max*: as fast as the DUT's ring takes frames; "
             "*zero loss*: RFC 2544 binary search, frames refused by the DUT's ring count as lost. "
             "Latency: TSC stamps, generator → DUT → generator, at the zero-loss rate.")
    L.append("")
    L.append("| DUT | mode | profile | flows | max Mpps | zero-loss Mpps | ratio to testpmd (zero-loss) | p50 / p99 latency at zero-loss rate | bad rewrites | reordered |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        ratio = None
        if testpmd and r["zero_loss_mpps"] and testpmd["zero_loss_mpps"]:
            ratio = r["zero_loss_mpps"] / testpmd["zero_loss_mpps"]
        lat = r["zero_loss_latency_ns"] or {}
        flows = f"{r['flows']} ({short_of_flows(r)})" if short_of_flows(r) else f"{r['flows']}"
        L.append(f"| {r['dut']} | {r['mode']} | {r['profile']} | {flows} | {fmt(r['max_mpps'], 3)} | {fmt(r['zero_loss_mpps'], 3)} | "
                 f"{fmt(ratio, 2)} | {fmt(lat.get('p50'))} / {fmt(lat.get('p99'))} ns | {r['bad_rewrites']} | {r['reordered']} |")
    L.append("")
    if plotted:
        L.append("![Mpps by mode and table size](mpps.png)")
    else:
        L.append("![Mpps by mode](mpps.svg) (matplotlib could not be installed: SVG fallback)")
    L.append("")
    L.append("## Cycles per packet over memif (the DUT's own count)")
    L.append("")
    L.append("Independent of the generator: at one offered rate (`RVS_BENCH_CYCLES_PPS`, else a fraction of testpmd's max; "
             "below the generator's ceiling), each DUT counts the TSC cycles of its poll-loop iterations that handled packets. testpmd io-fwd: "
             "`--record-core-cycles`, busy cycles ÷ packets it transmitted, printed at exit (a process of its own, SYN frames, "
             "no flow setup). rvsd: the worker's `busy_cycles` ÷ `busy_frames` over the trial, read from `GET /api/v1/stats` "
             "before and after it (a trial right after the flows were set up, before the max trial). Both include the memif "
             "rx/tx of the burst; at a rate below the maximum bursts are small, so both figures are above their saturated cost. "
             "The TSC counts wall time: a busy iteration during which the kernel preempted the lcore (a loaded shared machine: "
             "see the load averages) counts the preemption too, for both DUTs alike; *busy* is rvsd's busy cycles ÷ "
             "(TSC Hz × trial seconds). *actual* is the rate the generator managed to offer (it skips what it could not send in time). "
             "Each DUT is measured several times, in several fresh processes (testpmd: one process per trial, "
             "`RVS_BENCH_CYCLES_TRIALS`; rvsd: that many back-to-back trials in each of `RVS_BENCH_CYCLES_PROCESSES` "
             "processes, the scenario's own run first), and its lowest figure is the one compared: on this shared virtual "
             "machine some processes, of either DUT, run every trial two to four times slower than others (their rx, "
             "processing and tx alike), and the lowest is the DUT's own cost. Every trial's figure is listed, rvsd's "
             "processes separated by a slash.")
    L.append("")
    cycles_table(L, light)
    L.append("### Under load")
    L.append("")
    L.append("The same measurement at a second offered rate, near rvsd's capacity (`RVS_BENCH_LOADED_PPS`; testpmd at the "
             "same rate). At the light rate above a poll brings about one frame, so each lookup of a big table waits for "
             "its own cache misses; here the rx bursts fill, and the pipeline's prefetches overlap the misses of a "
             "burst's packets. A DUT that cannot keep up shows loss at this rate; its cycles/packet still counts only "
             "the frames it handled.")
    L.append("")
    cycles_table(L, loaded)
    L.append("## Packet path without I/O (criterion)")
    L.append("")
    L.append("`Processor::handle_burst` on prepared 64-byte frames in bursts of 32 (`VecFrame`, no allocation in the timed loop), one core. "
             "*established*: ACK segments of live flows picked at random (with the big table, lookups miss the caches); "
             "*new_conn*: SYNs from never-seen tuples (lookup miss, service lookup, scheduling, insert, rewrite); "
             "*reply* (NAT and FULLNAT, whose replies come back through the director): the real server's ACK segments "
             "of live flows picked at random (lookup by the reply key, rewrite back to the client).")
    L.append("")
    L.append("| mode | live conns | established ns/pkt (95 % CI) | reply ns/pkt (95 % CI) | new connection ns/pkt (95 % CI) |")
    L.append("|---|---|---|---|---|")
    for (m, t), v in sorted(crit.items(), key=lambda kv: (kv[0][0], table_rank(kv[0][1]))):
        e, n, r = v.get("established", {}), v.get("new_conn", {}), v.get("established_reply")
        reply = f"{fmt(r.get('ns'))} ({fmt(r.get('ci_low'))}–{fmt(r.get('ci_high'))})" if r else "— (replies bypass the director)"
        L.append(f"| {m} | {t} | {fmt(e.get('ns'))} ({fmt(e.get('ci_low'))}–{fmt(e.get('ci_high'))}) | {reply} | "
                 f"{fmt(n.get('ns'))} ({fmt(n.get('ci_low'))}–{fmt(n.get('ci_high'))}) |")
    L.append("")
    L.append("## Memory per connection")
    L.append("")
    if mem:
        s = mem.get("static_sizes_bytes", {})
        # conn_mem.json files before the compact index (key and value in a hashbrown map) have no index_bucket.
        compact = "index_bucket" in s
        if "slot" in s:
            L.append(f"Static sizes: `Conn` {s.get('conn')} B (slot {s.get('slot')} B), index entry "
                     f"(hash tag, id and direction; the key is read from the slot) {s.get('index_entry')} B with no control byte, "
                     "no free-list entry.")
        elif compact:
            L.append(f"Static sizes: `Conn` {s.get('conn')} B (slot `Option<Conn>` {s.get('slot_option_conn')} B), index entry "
                     f"(hash tag, id and direction; the key is read from the slot) {s.get('index_entry')} B with no control byte, "
                     f"free-list entry {s.get('free_list_entry')} B.")
        else:
            L.append(f"Static sizes: `Conn` {s.get('conn')} B (slot `Option<Conn>` {s.get('slot_option_conn')} B), index entry "
                     f"(FlowKey → (ConnId, Direction)) {s.get('index_entry_key_value')} B + 1 control byte, free-list entry {s.get('free_list_entry')} B.")
        L.append("")
        L.append("| mode | connections (= conn_table_size) | resident bytes per connection | of which allocated at creation |")
        L.append("|---|---|---|---|")
        for r in mem.get("runs", []):
            L.append(f"| {r['mode']} | {r['connections']} | {fmt(r['bytes_per_conn'])} | {fmt(r['bytes_per_conn_at_create'])} |")
        L.append("")
        if "index_buckets_per_conn" in s:
            # The exact-size index (no power-of-two rounding), free list through the free slots, pages reported per run.
            per = s["index_buckets_per_conn"]
            L.append("Where it goes: the index is an open-addressing table with exactly room for 2 keys per connection (NAT's reply key) "
                     f"at a load of at most {s.get('index_max_load')}: {per:.2f} buckets of {s.get('index_bucket')} bytes per connection "
                     f"({per * s.get('index_bucket', 4):.1f} B, DR included, which uses one key), plus the {s.get('slot')}-byte slot; free "
                     "slots chain through themselves (no free list of their own). Both arrays are faulted in when the table is created, "
                     "on 2 MB pages when there are any (hugetlbfs, else transparent huge pages; resident memory counts hugetlbfs pages).")
            backing = sorted({f"{name} {p.get('backing')}" for r in mem.get("runs", []) for name, p in r.get("pages", {}).items()})
            if backing:
                L.append("")
                L.append(f"Pages of the measured tables: {', '.join(backing)}.")
        elif compact:
            bucket, max_load = s.get("index_bucket"), s.get("index_max_load")
            low, high = 2 * bucket / max_load, 4 * bucket / max_load
            L.append("Where it goes: the index is an open-addressing table created with room for 2 keys per connection (NAT's reply key) "
                     f"at a load of at most {max_load}, rounded up to a power of two buckets: for N connections {2 / max_load:.2f}N..{4 / max_load:.2f}N "
                     f"buckets of {bucket} bytes ({low:.1f}–{high:.1f} B per connection, DR included, which uses one key), plus the "
                     f"{s.get('slot_option_conn')}-byte slot and a 4-byte free-list entry once the free list is used.")
        else:
            L.append("Where it goes: the index is a hashbrown map created with room for 2 keys per connection (NAT's reply key), "
                     "rounded up to a power of two buckets at 7/8 load: for N connections 2N..4N buckets of 25 bytes "
                     f"(50–100 B per connection, DR included, which uses one key), plus the {s.get('slot_option_conn')}-byte slot "
                     "and a 4-byte free-list entry once the free list is used.")
    L.append("")
    L.append("## IPv6 (no targets: reported, not judged)")
    L.append("")
    L.append("The same criterion benchmarks over IPv6 (groups `packet_path/ipv6-MODE/SIZE`): DR, NAT, TUN (6in6) and FULLNAT with "
             "IPv6 clients and real servers, and NAT64 (IPv6 clients, IPv4 real servers through FULLNAT, IPv4 local addresses), "
             "the connections in an IPv6 table sized for them. IPv6 frames are 78 bytes (82 on the wire), the smallest that hold "
             "Ethernet, IPv6, TCP and the 4-byte stamp. Each is shown next to the IPv4 figure of the same mode (NAT64 next to FULLNAT).")
    L.append("")
    if ipv6["packet_path_ns"]:
        L.append("| IPv6 scenario | live conns | established ns/pkt (95 % CI) | IPv4 established ns/pkt | new connection ns/pkt (95 % CI) | IPv4 new connection ns/pkt |")
        L.append("|---|---|---|---|---|---|")
        for key, v in ipv6["packet_path_ns"].items():
            m, t = key.rsplit("/", 1)
            e, n = v.get("established") or {}, v.get("new_conn") or {}
            L.append(f"| {m} | {t} | {fmt(e.get('ns'))} ({fmt(e.get('ci_low'))}–{fmt(e.get('ci_high'))}) | {fmt(v['ipv4_established_ns'])} ({v['ipv4_mode']}) | "
                     f"{fmt(n.get('ns'))} ({fmt(n.get('ci_low'))}–{fmt(n.get('ci_high'))}) | {fmt(v['ipv4_new_conn_ns'])} ({v['ipv4_mode']}) |")
    else:
        L.append("No IPv6 criterion results in this run.")
    L.append("")
    L.append("What an IPv6 connection costs (rvs-conn-mem): resident bytes per connection of an IPv6 connection table alone, "
             "created with conn_table_size = connections and filled by direct inserts, next to an IPv4 table measured the same way "
             "(the two differ by the entry only) and to the IPv4 worker figure of the memory section above.")
    L.append("")
    s6 = ipv6.get("static_sizes_bytes") or {}
    if s6:
        L.append(f"Static sizes: `Conn6` {s6.get('conn')} B (slot {s6.get('slot')} B), IPv6 flow key {s6.get('flow_key')} B, index entry "
                 f"{s6.get('index_entry')} B, {fmt(s6.get('index_buckets_per_conn'), 2)} index buckets per connection.")
        L.append("")
    if ipv6["bytes_per_conn"]:
        L.append("| mode | connections | IPv6 table, bytes per connection | IPv4 table, bytes per connection | IPv4 worker, bytes per connection |")
        L.append("|---|---|---|---|---|")
        for r in ipv6["bytes_per_conn"]:
            L.append(f"| {r['mode']} | {r['connections']} | {fmt(r['ipv6_table_bytes_per_conn'])} | {fmt(r['ipv4_table_bytes_per_conn'])} | "
                     f"{fmt(r['ipv4_worker_bytes_per_conn'])} |")
        defaults = ((mem or {}).get("ipv6") or {}).get("default_ipv6_table_sizes") or []
        six = {r["connections"]: r["ipv6_table_bytes_per_conn"] for r in ipv6["bytes_per_conn"]}
        for d in defaults:
            n, n6 = d.get("conn_table_size"), d.get("conn_table_size_ipv6")
            if n and n6 and six.get(n):
                L.append("")
                L.append(f"The IPv4 worker figures above are measured with the smallest IPv6 table; rvsd's default IPv6 table "
                         f"(conn_table_size_ipv6 = {n6} for conn_table_size = {n}) adds about {fmt(six[n] * n6 / n)} B per IPv4 connection.")
    else:
        L.append("No IPv6 memory figures in this run (rvs-conn-mem without an `ipv6` section).")
    L.append("")
    L.append("## Where the time goes")
    L.append("")
    L.append("Per-packet budget of one worker core at the measured memif rate (1000 / Mpps ns), against the cost of "
             "`Processor::handle_burst` alone (criterion, 1k connections) and of plain I/O (testpmd io-fwd: rx burst, tx burst, "
             "memif copies, nothing else). What is left is rvsd's own I/O path (mbuf wrapping, per-frame free, "
             "counters, the clock read per poll) and cache misses that the criterion loop does not see.")
    L.append("")
    L.append("| DUT | mode | ns/packet at max rate | packet path (criterion) | testpmd io-fwd ns/packet | remainder |")
    L.append("|---|---|---|---|---|---|")
    tp_ns = 1000.0 / testpmd["max_mpps"] if testpmd and testpmd["max_mpps"] else None
    for r in rvsd_runs:
        if r["profile"] != "established" or r["flows"] >= 100000 or not r["max_mpps"]:
            continue
        total = 1000.0 / r["max_mpps"]
        pp = crit.get((r["mode"], small), {}).get("established", {}).get("ns")
        rest = total - pp - tp_ns if pp and tp_ns else None
        L.append(f"| rvsd | {r['mode']} | {fmt(total)} | {fmt(pp)} | {fmt(tp_ns)} | {fmt(rest)} |")
    L.append("")
    L.append("The generator shares its core with the DUT's main lcore and does more per packet than the forwarder "
             "(build, stamp, check, histogram), so when testpmd's max rate equals the generator's own transmit "
             "ceiling the ratio understates the gap; the `max_tx_mpps` of the testpmd run in report.json is that ceiling.")
    L.append("")
    perfs = [r for r in runs if r.get("perf_stat")]
    if perfs:
        L.append("## perf stat of rvsd during the runs")
        L.append("")
        for r in perfs:
            L.append(f"<details><summary>{r['name']}</summary>")
            L.append("")
            L.append("```")
            L.append(r["perf_stat"])
            L.append("```")
            L.append("</details>")
            L.append("")
    L.append("## rvsd counters after each run")
    L.append("")
    for r in rvsd_runs:
        c = r.get("rvsd_counters") or {}
        keys = [k for k in sorted(c) if k.startswith(("drop", "conn_", "fwd_", "arp"))]
        L.append(f"- {r['name']}: " + ", ".join(f"{k}={c[k]}" for k in keys))
    L.append("")
    L.append("## Reproduce")
    L.append("")
    L.append("```")
    L.append("deploy/bench.sh           # this report (about 10 minutes)")
    L.append("deploy/bench.sh --smoke   # seconds, for CI; writes target/bench-smoke/")
    L.append("```")
    L.append("")
    L.append("Real NICs: see `deploy/bench/pktgen-dpdk.md`.")
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
