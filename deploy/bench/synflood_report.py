#!/usr/bin/env python3
"""SYN-proxy figures of deploy/bench.sh step 4b (issue 14): SYNFLOOD.md and synflood.json.

  synflood_report.py RUN_DIR OUT_DIR MIX_SYN_EVERY CYCLES_PPS

RUN_DIR holds machine.json and, per mode, rvs-pktgen's reports
rvsd-MODE-synproxy-cookie.json (syn profile at a syn_proxy "on" service, with
a cycles trial read from rvsd's busy_cycles / busy_frames) and
rvsd-MODE-synproxy-mix-1000.json (1,000 established flows, one packet in
MIX_SYN_EVERY a spoofed SYN at the proxied service), each with the rvsd
counters at its end (NAME.stats.json). Standard library only.
"""
import glob
import json
import os
import sys

from report import load  # deploy/bench/report.py, beside this script


def counter(stats: dict, name: str) -> int:
    return sum(w.get("counters", {}).get(name, 0) for w in stats.get("workers", []))


def main() -> int:
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    run_dir, out, every, cycles_pps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(float(sys.argv[4]))
    machine = load(os.path.join(run_dir, "machine.json"), {})
    rows = []
    for path in sorted(glob.glob(os.path.join(run_dir, "rvsd-*-synproxy-cookie.json"))):
        mode = os.path.basename(path).split("-")[1]
        cookie = load(path, {})
        mix = load(os.path.join(run_dir, f"rvsd-{mode}-synproxy-mix-1000.json"), {})
        cstats = load(path.replace(".json", ".stats.json"), {})
        mstats = load(os.path.join(run_dir, f"rvsd-{mode}-synproxy-mix-1000.stats.json"), {})
        plain = load(os.path.join(run_dir, f"rvsd-{mode}-synproxy-plain.json"), {})
        plain_dut = ((plain.get("cycles") or {}).get("dut") or {})
        dut = ((cookie.get("cycles") or {}).get("dut") or {})
        mix_max = mix.get("max") or {}
        secs = max(mix_max.get("seconds") or 0, 1e-9)
        trial = ((cookie.get("cycles") or {}).get("trial") or {})
        zl_cookie = ((cookie.get("search") or {}).get("zero_loss_mpps") or 0) * 1e6
        zl_mix = ((mix.get("search") or {}).get("zero_loss_mpps") or 0) * 1e6
        rows.append({
            "mode": mode,
            "plain_cycles_per_packet": plain_dut.get("cycles_per_packet"),
            "plain_zero_loss_syns_pps": ((plain.get("search") or {}).get("zero_loss_mpps") or 0) * 1e6,
            "cookie_cycles_per_packet": dut.get("cycles_per_packet"),
            "cookie_busy_fraction": dut.get("busy_fraction"),
            "cookie_cycles_trial_loss": trial.get("loss_ratio"),
            "cookie_cycles_trial_syn_acks": trial.get("received_syn_ack"),
            "cookie_max_syn_acks_pps": ((cookie.get("max") or {}).get("rx_mpps") or 0) * 1e6,
            "cookie_zero_loss_syns_pps": zl_cookie,
            "cookie_syn_cookie_sent": counter(cstats, "syn_cookie_sent"),
            "cookie_conn_active_at_end": counter(cstats, "conn_active"),
            "mix_zero_loss_pps": zl_mix,
            # The search starts at the unthrottled trial's rate: zero loss there means the
            # generator, not rvsd, was the limit (the figure is a lower bound).
            "mix_generator_bound": zl_mix >= 0.98 * ((mix.get("max") or {}).get("rx_mpps") or 0) * 1e6 > 0,
            "cookie_generator_bound": zl_cookie >= 0.98 * ((cookie.get("max") or {}).get("rx_mpps") or 0) * 1e6 > 0,
            "mix_zero_loss_syns_pps": zl_mix / every,
            "mix_zero_loss_established_pps": zl_mix * (every - 1) / every,
            "mix_max_pps": ((mix.get("max") or {}).get("rx_mpps") or 0) * 1e6,
            # The unthrottled trial: what came back per second, SYN-ACKs and forwarded segments apart.
            "mix_max_syn_acks_pps": mix_max.get("received_syn_ack", 0) / secs,
            "mix_max_established_pps": (mix_max.get("received_ok", 0) - mix_max.get("received_syn_ack", 0)) / secs,
            "mix_max_loss_ratio": mix_max.get("loss_ratio"),
            "mix_syn_cookie_sent": counter(mstats, "syn_cookie_sent"),
            "mix_conn_created": counter(mstats, "conn_created"),
        })
    report = {"machine": machine, "mix_syn_every": every, "cycles_rate_pps": cycles_pps, "modes": rows}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "synflood.json"), "w") as f:
        json.dump(report, f, indent=2)

    def n(v, fmt="{:,.0f}"):
        return "–" if v is None else fmt.format(v)

    lines = [
        "# SYN proxy over memif (issue 14)",
        "",
        f"Command: `{machine.get('command', 'deploy/bench.sh --synflood')}` "
        f"(git {machine.get('git_commit', '?')}{' dirty' if machine.get('git_dirty') else ''}, "
        f"{machine.get('date_utc', '?')}).",
        f"Machine: {machine.get('cpu_model', '?')}, {machine.get('cpus', '?')} CPUs "
        f"({machine.get('hypervisor') or 'bare metal'}), kernel {machine.get('kernel', '?')}, "
        f"DPDK {machine.get('dpdk', '?')}, load average at start {machine.get('load_average_at_start', '?')}. "
        "rvs-pktgen on lcore 0, rvsd's one worker on lcore 1 (its main lcore shares core 0), memif.",
        "",
        "Each mode's VIP has a second TCP service on port 81 with `syn_proxy: \"on\"` (rvs-pktgen "
        "`rvsd-config --syn-proxy-port 81`).",
        "",
        "* **plain**: the same SYNs at :80, no proxy: each one a new connection forwarded to a real "
        "server (the path the cookie replaces), cycles per packet at the same rate and zero-loss rate.",
        "* **cookie**: the `syn` profile at :81, every packet a SYN from a new client tuple "
        "(`run --profile syn --syn-port 81 --syn-proxy`), each answered by a SYN-cookie SYN-ACK "
        f"(counted as the answer). Cycles per packet: rvsd's busy_cycles / busy_frames over a "
        f"{cycles_pps:,} SYN/s trial (what the worker spends per SYN answered, independent of the "
        "generator); zero loss: the highest SYN rate with every SYN answered (RFC 2544 search).",
        f"* **mix**: 1,000 established flows at :80 (no proxy) with one packet in {every} a spoofed SYN "
        "at :81; the zero-loss rate of the whole mix, and the SYNs/s one worker absorbs (answers with a "
        "cookie, no table entry) at that rate while the established traffic is forwarded without loss; "
        "and the unthrottled trial (as fast as memif takes frames): SYN-ACKs and forwarded established "
        "segments per second, and its loss.",
        "",
        "| mode | plain SYN: cycles/packet | plain SYN: zero-loss SYNs/s | cookie: cycles/packet | cookie: busy % at the cycles rate | cookie: zero-loss SYNs/s "
        "| cookie: max SYN-ACKs/s | mix: zero-loss packets/s | mix: SYNs/s absorbed | mix: established packets/s "
        "| mix unthrottled: SYN-ACKs/s | mix unthrottled: established packets/s | mix unthrottled: loss "
        "| syn_cookie_sent (cookie, mix) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        busy = r["cookie_busy_fraction"]
        c, m = ("≥ " if r["cookie_generator_bound"] else ""), ("≥ " if r["mix_generator_bound"] else "")
        lines.append(
            f"| {r['mode']} | {n(r['plain_cycles_per_packet'])} | {n(r['plain_zero_loss_syns_pps'])} "
            f"| {n(r['cookie_cycles_per_packet'])} | {n(None if busy is None else 100 * busy, '{:.0f}')} "
            f"| {c}{n(r['cookie_zero_loss_syns_pps'])} | {n(r['cookie_max_syn_acks_pps'])} | {m}{n(r['mix_zero_loss_pps'])} "
            f"| {m}{n(r['mix_zero_loss_syns_pps'])} | {m}{n(r['mix_zero_loss_established_pps'])} "
            f"| {n(r['mix_max_syn_acks_pps'])} | {n(r['mix_max_established_pps'])} "
            f"| {n(r['mix_max_loss_ratio'], '{:.4f}')} "
            f"| {r['cookie_syn_cookie_sent']:,}, {r['mix_syn_cookie_sent']:,} |")
    if not rows:
        lines.append("| (no runs) | | | | | | | | | | | | | |")
    lines += ["", "≥: no loss at the unthrottled trial's rate, so the generator (sharing the 2 CPUs) was the "
              "limit, not rvsd. Zero-loss rates on a shared 2-vCPU guest are noisy (one descheduled "
              "millisecond loses frames at any rate): read them with the unthrottled figures. Busy cycles count every TSC cycle of the worker's iterations that handled "
              "frames, including time the host took the CPU away: on a loaded shared machine (see the load "
              "average) they overstate the work; compare with the established runs of the same day in "
              "REPORT.md, or use deploy/bench/instructions.sh for a load-independent count.",
              "", "Raw figures: `synflood.json`; rvs-pktgen's reports and rvsd's counters: `synflood-runs/`.", ""]
    with open(os.path.join(out, "SYNFLOOD.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
