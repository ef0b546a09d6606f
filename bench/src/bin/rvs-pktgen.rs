//! rvs-pktgen: a Pktgen-DPDK-style traffic generator for rvsd.
//!
//! One DPDK port (memif by default; any vdev or PCI device works), one lcore
//! doing everything: build and stamp TCP/UDP frames for N flows, send them at a
//! set rate or as fast as the port takes them, receive what the device under
//! test (DUT) forwards, check the rewrite of the mode, count loss and
//! reordering from the sequence numbers, and record latency from TSC stamps.
//! It answers the DUT's ARP requests for every host it simulates (the real
//! servers and the clients' gateway of `rvs_bench::plan`) and announces them by
//! gratuitous ARP first.
//!
//! ```text
//! rvs-pktgen run --mode dr --profile established --flows 1000 --search   # JSON on stdout
//! rvs-pktgen rvsd-config --socket /tmp/rvs-bench.sock > rvsd.json        # the matching rvsd config
//! ```
//!
//! Profiles: `established` (a SYN and an ACK per flow first, then ACK data
//! segments round-robin over the flows), `syn` (every packet a SYN from a new
//! client tuple), `mix` (established traffic with every K-th packet a new
//! connection). `--dut testpmd` expects frames back unmodified (testpmd in
//! io-forward mode stands in for a load balancer that does nothing).
//!
//! SYN proxy (issue 14): `--syn-port P` sends the profile's new connections to
//! the VIP's port P (a service with `syn_proxy: on`, see `rvsd-config
//! --syn-proxy-port`) while established flows keep the mode's port, and
//! `--syn-proxy` counts the DUT's SYN-cookie SYN-ACKs (from VIP:P back to the
//! client, through the gateway) as the answer to a SYN: the sequence number is
//! recovered from their ACK number (no latency: the stamp does not come back).
//!
//! Cycles trial (`--cycles-rate`): right after flow setup, one trial at a fixed
//! offered rate; with `--dut-stats host:port` the DUT's own busy TSC cycles per
//! packet over it are read from rvsd's `GET /api/v1/stats` (`busy_cycles`,
//! `busy_frames`, `tsc_hz`) before and after, so the figure does not depend on
//! what the generator can do. `--cycles-trials N` runs N such trials back to
//! back and reports the one with the fewest DUT cycles per packet (every
//! trial's figure is kept under `trials`): on a shared virtual machine the
//! host's placement of the vCPUs moves the figure between runs, and the lowest
//! is the DUT's own cost. `--loaded-cycles-rate R` then runs as many trials
//! at a second rate (`cycles_loaded` in the report): a load near the DUT's
//! capacity, where its rx bursts fill and the pipeline overlaps the lookups'
//! cache misses, where at a light load a poll brings one frame.
//!
//! Throughput search (RFC 2544 §26.1 style): trials of `--trial-secs` at a fixed
//! offered rate, binary search between 0 and the rate of the unthrottled trial
//! for the highest rate with loss ≤ `--loss-tolerance`; frames the DUT's
//! receive ring refused are counted as lost (memif pushes back instead of
//! dropping).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use rvs_bench::plan::{self, ModeSpec, MODES};
use rvs_bench::template::{self, be16, be32, Kind, Proto, Template};
use rvs_dataplane::frame::Frame;
use rvs_dataplane::snapshot::ForwardMode;
use rvs_dataplane::wire::{arp, checksum, ethertype, ip_proto, MacAddr};
use rvs_dpdk::{self as dpdk, Eal, Mbuf, Mempool, Port, Queue, MAX_BURST};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(name = "rvs-pktgen", version, about = "DPDK traffic generator for rvsd benchmarks (memif, af_packet or real ports)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Generate traffic, measure, print a JSON report.
    Run(RunArgs),
    /// Print an rvsd JSON config matching the generator's addressing plan.
    RvsdConfig(ConfigArgs),
    /// Print the names of the forwarding modes of the plan, one per line.
    Modes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Dut {
    /// rvsd: learn its MAC by ARP, check the mode's rewrite.
    Rvsd,
    /// A plain forwarder (dpdk-testpmd io-fwd): frames come back unmodified.
    Testpmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Profile {
    /// SYN+ACK per flow once, then ACK data segments round-robin over the flows.
    Established,
    /// Every packet a SYN from a new client tuple.
    Syn,
    /// Established traffic, every `--mix-syn-every`-th packet a new connection.
    Mix,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProtoArg {
    Tcp,
    Udp,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// DPDK device: a vdev spec (passed as --vdev) or a PCI address (passed as -a).
    #[arg(long, default_value = "net_memif0,role=client,socket=/tmp/rvs-bench.sock,socket-abstract=no")]
    device: String,
    /// The lcore to run on.
    #[arg(long, default_value_t = 0)]
    lcore: u32,
    /// EAL --file-prefix (unique per DPDK process).
    #[arg(long, default_value = "rvs-pktgen")]
    file_prefix: String,
    /// Further EAL arguments, space separated.
    #[arg(long, default_value = "--no-huge -m 512 --no-pci", allow_hyphen_values = true)]
    eal: String,
    /// What sits on the other end.
    #[arg(long, value_enum, default_value_t = Dut::Rvsd)]
    dut: Dut,
    /// Forwarding mode of the service to hit (a mode of the plan: dr, nat, ...).
    #[arg(long, default_value = "dr")]
    mode: String,
    /// Transport protocol.
    #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
    proto: ProtoArg,
    /// Traffic profile.
    #[arg(long, value_enum, default_value_t = Profile::Established)]
    profile: Profile,
    /// Established flows.
    #[arg(long, default_value_t = 1000)]
    flows: u64,
    /// Client tuples the SYN profile cycles through (keep it above rate x tcp_syn timeout).
    #[arg(long, default_value_t = 4_194_304)]
    syn_space: u64,
    /// In the mix profile, one packet in this many is a new connection.
    #[arg(long, default_value_t = 10)]
    mix_syn_every: u64,
    /// VIP port the profile's new connections (SYNs) go to; default the mode's port.
    #[arg(long)]
    syn_port: Option<u16>,
    /// The SYNs' service runs a SYN proxy: its SYN-cookie SYN-ACKs count as
    /// the answer to a SYN (instead of the SYN forwarded to a real server).
    #[arg(long)]
    syn_proxy: bool,
    /// Frame size on the wire including the FCS (64..=1518).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Offered rate in packets per second for the fixed-rate trial; 0 = as fast as the port takes them.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Length of the unthrottled (or fixed-rate) trial, seconds.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Run the RFC 2544 zero-loss search after the first trial.
    #[arg(long)]
    search: bool,
    /// Length of each search trial, seconds.
    #[arg(long, default_value_t = 2.0)]
    trial_secs: f64,
    /// Search trials at most.
    #[arg(long, default_value_t = 8)]
    search_steps: u32,
    /// Stop searching when the bracket is narrower than this fraction of the rate.
    #[arg(long, default_value_t = 0.02)]
    search_precision: f64,
    /// Loss ratio still counted as "no loss" (RFC 2544: 0).
    #[arg(long, default_value_t = 0.0)]
    loss_tolerance: f64,
    /// Seconds to wait for the DUT to come up (memif connection, ARP).
    #[arg(long, default_value_t = 15.0)]
    connect_timeout: f64,
    /// Write the JSON report here as well as to stdout.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Offered rate (packets/s) of a cycles trial run right after flow setup,
    /// before the first trial; 0 = none. With --dut-stats the DUT's busy cycles
    /// per packet over that trial are read from its REST API.
    #[arg(long, default_value_t = 0.0)]
    cycles_rate: f64,
    /// Offered rate (packets/s) of a second set of cycles trials, run right
    /// after the first (as many, as long), reported under `cycles_loaded`; 0 =
    /// none. Meant as a load near the DUT's capacity, where its bursts fill
    /// (the first rate is a light load, where a poll brings one frame).
    #[arg(long, default_value_t = 0.0)]
    loaded_cycles_rate: f64,
    /// Length of the cycles trial, seconds.
    #[arg(long, default_value_t = 2.0)]
    cycles_secs: f64,
    /// Cycles trials run back to back; the one with the fewest DUT cycles per
    /// packet is reported (all are listed under `trials`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    cycles_trials: u32,
    /// host:port of rvsd's REST API: GET /api/v1/stats before and after the
    /// cycles trial (busy_cycles, busy_frames and tsc_hz, summed over workers).
    #[arg(long)]
    dut_stats: Option<String>,
    /// Seconds to stay connected (receiving and freeing) after the report is
    /// written, so that the DUT can print its own statistics while its port is
    /// still up (memif counts nothing once the peer is gone); ends early when
    /// the DUT closes the link.
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
}

#[derive(clap::Args, Debug)]
struct ConfigArgs {
    /// memif socket rvsd serves.
    #[arg(long, default_value = "/tmp/rvs-bench.sock")]
    socket: String,
    /// Full device spec (overrides --socket).
    #[arg(long)]
    device: Option<String>,
    /// EAL --file-prefix of rvsd.
    #[arg(long, default_value = "rvs-bench-rvsd")]
    file_prefix: String,
    /// Main lcore (control plane).
    #[arg(long, default_value_t = 0)]
    main_lcore: u32,
    /// Worker lcores, comma separated.
    #[arg(long, default_value = "1")]
    workers: String,
    /// Connection table entries per worker.
    #[arg(long, default_value_t = 4_500_000)]
    conn_table_size: u64,
    /// REST API address.
    #[arg(long, default_value = "127.0.0.1:19090")]
    api: String,
    /// Modes to configure services for (comma separated; default all of the plan).
    #[arg(long)]
    modes: Option<String>,
    /// SYN_RECV timeout in seconds (short, so the SYN profile recycles its tuples).
    #[arg(long, default_value_t = 1)]
    tcp_syn_timeout: u32,
    /// Also a TCP service on this port of every NAT/FULLNAT VIP with
    /// `syn_proxy: on` (same real servers), for `run --syn-port`.
    #[arg(long)]
    syn_proxy_port: Option<u16>,
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Modes => MODES.iter().for_each(|m| println!("{}", m.name)),
        Cmd::RvsdConfig(a) => match rvsd_config(&a) {
            Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
            Err(e) => {
                eprintln!("rvs-pktgen: {e}");
                std::process::exit(2);
            }
        },
        Cmd::Run(a) => {
            if let Err(e) = run(&a) {
                eprintln!("rvs-pktgen: {e}");
                std::process::exit(1);
            }
        }
    }
}

fn rvsd_config(a: &ConfigArgs) -> Result<Value, String> {
    let modes: Vec<&ModeSpec> = match &a.modes {
        None => MODES.iter().collect(),
        Some(list) => list.split(',').map(|m| plan::mode(m.trim()).ok_or_else(|| format!("unknown mode {m}"))).collect::<Result<_, _>>()?,
    };
    let workers: Vec<u32> =
        a.workers.split(',').map(|w| w.trim().parse().map_err(|_| format!("bad lcore {w}"))).collect::<Result<_, _>>()?;
    let device = a.device.clone().unwrap_or_else(|| format!("net_memif0,role=server,socket={},socket-abstract=no", a.socket));
    let mut services = Vec::new();
    for m in modes {
        for proto in ["tcp", "udp"] {
            let reals: Vec<Value> = plan::REALS.iter().map(|(ip, _)| json!({ "address": ip.to_string(), "port": m.real_port })).collect();
            let mut svc = json!({
                "protocol": proto, "vip": m.vip.to_string(), "port": m.vport,
                "scheduler": "rr", "forward": m.forward.to_string(), "reals": reals,
            });
            if m.forward == ForwardMode::FullNat {
                svc["local_addresses"] = json!(plan::local_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>());
            }
            if let (Some(port), "tcp", ForwardMode::Nat | ForwardMode::FullNat) = (a.syn_proxy_port, proto, m.forward) {
                let mut proxied = svc.clone();
                proxied["port"] = json!(port);
                proxied["syn_proxy"] = json!("on");
                services.push(proxied);
            }
            services.push(svc);
        }
    }
    Ok(json!({
        "eal": ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", a.file_prefix],
        "main_lcore": a.main_lcore,
        "workers": workers,
        "mbufs": 16383,
        "idle_sleep_us": 0,
        "conn_table_size": a.conn_table_size,
        "api": { "listen": a.api },
        "ports": [ { "name": "lan0", "device": device,
                     "addresses": [format!("{}/{}", plan::DIRECTOR_OUT, plan::PREFIX_LEN), format!("{}/{}", plan::DIRECTOR_IN, plan::PREFIX_LEN)] } ],
        "routes": [ { "prefix": "0.0.0.0/0", "via": plan::GATEWAY.to_string(), "port": "lan0" } ],
        "timeouts": { "tcp_syn": a.tcp_syn_timeout },
        "services": services,
    }))
}

// ---------------------------------------------------------------------------
// Time

use rvs_dpdk::rdtsc;

// ---------------------------------------------------------------------------
// Latency histogram: log-linear buckets, 16 per power of two (about 6 % wide).

const SUB: u32 = 16;

#[derive(Clone)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Self {
        Histogram { buckets: vec![0; 64 * SUB as usize], count: 0, max: 0 }
    }

    #[inline]
    fn index(v: u64) -> usize {
        if v < u64::from(SUB) {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let sub = (v >> (msb - 4)) & u64::from(SUB - 1);
        ((msb - 3) * SUB) as usize + sub as usize
    }

    fn lower_bound(i: usize) -> u64 {
        let i = i as u64;
        if i < u64::from(SUB) {
            return i;
        }
        let msb = i / u64::from(SUB) + 3;
        let sub = i % u64::from(SUB);
        (1u64 << msb) | (sub << (msb - 4))
    }

    #[inline]
    fn record(&mut self, v: u64) {
        let i = Self::index(v).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }

    fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let want = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Self::lower_bound(i);
            }
        }
        self.max
    }

    fn summary_ns(&self, tsc_hz: u64) -> Value {
        let ns = |t: u64| (t as f64 * 1e9 / tsc_hz as f64).round() as u64;
        json!({
            "samples": self.count,
            "p50": ns(self.percentile(50.0)),
            "p90": ns(self.percentile(90.0)),
            "p99": ns(self.percentile(99.0)),
            "p99_9": ns(self.percentile(99.9)),
            "max": ns(self.max),
        })
    }
}

// ---------------------------------------------------------------------------
// What comes back, and whether it is right

/// The rewrite the DUT must have done.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Unmodified (a plain forwarder): destination still the VIP.
    Unmodified { vip: Ipv4Addr, vport: u16 },
    /// DR: destination MAC a real server's, IP header untouched.
    Dr { vip: Ipv4Addr, vport: u16 },
    /// NAT: destination the real server (address and port), MAC matching it.
    Nat { real_port: u16 },
    /// TUN: IPIP to the real server, inner packet untouched.
    Tun { vip: Ipv4Addr, vport: u16 },
    /// FULLNAT: source a local address, destination the real server.
    FullNat { real_port: u16 },
}

impl Expect {
    fn for_mode(dut: Dut, m: &ModeSpec) -> Self {
        if dut == Dut::Testpmd {
            return Expect::Unmodified { vip: m.vip, vport: m.vport };
        }
        match m.forward {
            ForwardMode::Dr => Expect::Dr { vip: m.vip, vport: m.vport },
            ForwardMode::Nat => Expect::Nat { real_port: m.real_port },
            ForwardMode::Tun => Expect::Tun { vip: m.vip, vport: m.vport },
            ForwardMode::FullNat => Expect::FullNat { real_port: m.real_port },
        }
    }

    /// Checks a returned frame; on success gives the offset of the (inner) IPv4 header.
    #[inline]
    fn check(&self, f: &[u8], proto: u8) -> Result<usize, &'static str> {
        const IP: usize = template::ETH;
        if f.len() < template::L4 + 8 {
            return Err("short");
        }
        let dst_mac = MacAddr([f[0], f[1], f[2], f[3], f[4], f[5]]);
        let ip_dst = Ipv4Addr::from(be32(f, template::IP_DST));
        let ip_src = Ipv4Addr::from(be32(f, template::IP_SRC));
        if f[IP] != 0x45 || checksum::internet(&f[IP..IP + 20]) != 0 {
            return Err("ipv4 header");
        }
        let real_mac_ok = |ip: Ipv4Addr| plan::REALS.iter().any(|(a, m)| *a == ip && *m == dst_mac);
        let l4_proto = f[IP + 9];
        let inner_ok = |at: usize, vip: Ipv4Addr, vport: u16| {
            f.len() >= at + 20 + 4 && f[at + 9] == proto && Ipv4Addr::from(be32(f, at + 16)) == vip && be16(f, at + 20 + 2) == vport
        };
        match *self {
            Expect::Unmodified { vip, vport } => {
                if inner_ok(IP, vip, vport) {
                    Ok(IP)
                } else {
                    Err("unmodified: destination changed")
                }
            }
            Expect::Dr { vip, vport } => {
                if !plan::REALS.iter().any(|(_, m)| *m == dst_mac) {
                    Err("dr: destination MAC is not a real server's")
                } else if !inner_ok(IP, vip, vport) {
                    Err("dr: IP/port destination changed")
                } else {
                    Ok(IP)
                }
            }
            Expect::Nat { real_port } => {
                if l4_proto != proto || be16(f, template::L4 + 2) != real_port {
                    Err("nat: destination port is not the real server's")
                } else if !real_mac_ok(ip_dst) {
                    Err("nat: destination is not a real server (or MAC mismatch)")
                } else {
                    Ok(IP)
                }
            }
            Expect::Tun { vip, vport } => {
                if l4_proto != ip_proto::IPIP {
                    Err("tun: not IPIP")
                } else if !real_mac_ok(ip_dst) {
                    Err("tun: outer destination is not a real server (or MAC mismatch)")
                } else if !inner_ok(IP + 20, vip, vport) {
                    Err("tun: inner packet changed")
                } else {
                    Ok(IP + 20)
                }
            }
            Expect::FullNat { real_port } => {
                let o = ip_src.octets();
                if l4_proto != proto || be16(f, template::L4 + 2) != real_port {
                    Err("fullnat: destination port is not the real server's")
                } else if !real_mac_ok(ip_dst) {
                    Err("fullnat: destination is not a real server (or MAC mismatch)")
                } else if !(o[0] == 10 && o[1] == 1 && o[2] == 0 && (100..200).contains(&o[3])) {
                    Err("fullnat: source is not a local address")
                } else {
                    Ok(IP)
                }
            }
        }
    }
}

/// When `f` is a SYN-ACK from `vip:port` to a client through the gateway (a
/// SYN proxy's cookie answer to one of our SYNs), the low 32 bits of the
/// generator sequence number of that SYN (its TCP sequence number: the
/// SYN-ACK acknowledges it plus one).
#[inline]
fn cookie_syn_ack(f: &[u8], vip: Ipv4Addr, port: u16) -> Option<u64> {
    const SYN_ACK: u8 = 0x12;
    if f.len() < template::L4 + 20
        || f[0..6] != plan::GATEWAY_MAC.0
        || f[template::ETH] != 0x45
        || f[template::ETH + 9] != ip_proto::TCP
        || Ipv4Addr::from(be32(f, template::IP_SRC)) != vip
        || be16(f, template::L4) != port
        || f[template::TCP_FLAGS] & SYN_ACK != SYN_ACK
    {
        return None;
    }
    Some(u64::from(be32(f, template::TCP_ACK).wrapping_sub(1)))
}

/// Verifies the TCP/UDP checksum of the IPv4 packet at `ip` (sampled: it costs).
fn l4_checksum_ok(f: &[u8], ip: usize) -> bool {
    if f.len() < ip + 20 {
        return false;
    }
    let total = usize::from(be16(f, ip + 2));
    let ihl = usize::from(f[ip] & 0x0f) * 4;
    if total < ihl || f.len() < ip + total {
        return false;
    }
    let src = Ipv4Addr::from(be32(f, ip + 12));
    let dst = Ipv4Addr::from(be32(f, ip + 16));
    let l4 = &f[ip + ihl..ip + total];
    if f[ip + 9] == ip_proto::UDP && l4.len() >= 8 && be16(l4, 6) == 0 {
        return true;
    }
    let sum = checksum::pseudo_header_v4(src, dst, f[ip + 9], l4.len() as u16) + checksum::sum(l4);
    checksum::fold(sum) == 0xffff
}

// ---------------------------------------------------------------------------
// The generator

#[derive(Default, Clone, Debug)]
struct Counts {
    /// Frames built and offered to the port.
    offered: u64,
    /// Frames the port accepted.
    sent: u64,
    /// Frames the port refused (DUT ring full).
    refused: u64,
    /// Frames back with the right rewrite, from this trial.
    rx_ok: u64,
    /// Frames back from an earlier trial (late).
    rx_late: u64,
    /// Frames back with a wrong rewrite.
    rx_bad: u64,
    /// SYN-cookie SYN-ACKs back (`--syn-proxy`), included in `rx_ok`.
    rx_syn_ack: u64,
    /// Frames whose L4 checksum was checked and wrong.
    rx_bad_l4_checksum: u64,
    /// Frames out of sequence order.
    reordered: u64,
    /// Other frames (ARP, unknown).
    rx_other: u64,
    /// ARP requests answered.
    arp_answered: u64,
    /// mbuf allocation failures.
    alloc_failed: u64,
}

struct Gen {
    queue: Queue,
    pool: Mempool,
    dut_mac: MacAddr,
    tsc_hz: u64,
    proto: Proto,
    ip_proto: u8,
    syn: Template,
    /// SYNs of the profile's new connections (to `--syn-port`).
    syn_new: Template,
    data: Template,
    expect: Expect,
    /// `--syn-proxy`: the VIP and port whose SYN-ACKs answer our SYNs.
    cookie_from: Option<(Ipv4Addr, u16)>,
    profile: Profile,
    flows: u64,
    syn_space: u64,
    mix_every: u64,
    /// Next sequence number (global, never reused).
    seq: u64,
    /// First sequence number of the current trial.
    trial_first_seq: u64,
    /// Highest sequence number received in this trial.
    max_seen: u64,
    /// Next SYN-profile tuple.
    syn_next: u64,
    counts: Counts,
    lat: Histogram,
    first_error: Option<String>,
    rx: Vec<Mbuf>,
    tx: Vec<Mbuf>,
    replies: Vec<Mbuf>,
    free: Vec<Mbuf>,
}

impl Gen {
    /// Builds one frame for the current sequence number; `setup` selects the
    /// connection-opening packets of established flows.
    #[inline]
    #[allow(clippy::manual_is_multiple_of)] // u64::is_multiple_of needs Rust 1.87; the workspace says 1.80
    fn build(&mut self, setup: Option<(u64, Kind)>) -> Option<Mbuf> {
        let Some(mut m) = self.pool.alloc() else {
            self.counts.alloc_failed += 1;
            return None;
        };
        let seq = self.seq;
        let (kind, (src, sport)) = match setup {
            Some((flow, kind)) => (kind, plan::client(flow)),
            None => match self.profile {
                Profile::Established => (Kind::Data, plan::client(seq % self.flows)),
                Profile::Syn => (Kind::Syn, self.next_syn_client()),
                Profile::Mix if seq % self.mix_every == 0 => (Kind::Syn, self.next_syn_client()),
                Profile::Mix => (Kind::Data, plan::client(seq % self.flows)),
            },
        };
        let t = match (kind, setup) {
            (Kind::Syn, Some(_)) => &self.syn,
            (Kind::Syn, None) => &self.syn_new,
            (Kind::Data, _) => &self.data,
        };
        if !m.fill(t.bytes()) {
            return None;
        }
        t.patch(m.data_mut(), src, sport, seq, rdtsc());
        self.seq += 1;
        self.counts.offered += 1;
        Some(m)
    }

    fn next_syn_client(&mut self) -> (Ipv4Addr, u16) {
        let i = self.syn_next % self.syn_space;
        self.syn_next += 1;
        plan::syn_client(i)
    }

    /// Sends what is in `self.tx`; returns how many the port took.
    #[inline]
    fn flush_tx(&mut self) -> usize {
        let want = self.tx.len();
        let sent = self.queue.tx_burst(&mut self.tx);
        self.counts.sent += sent as u64;
        self.counts.refused += (want - sent) as u64;
        sent
    }

    /// Receives one burst and accounts for it; returns frames received.
    #[inline]
    fn poll_rx(&mut self) -> usize {
        let n = self.queue.rx_burst(&mut self.rx);
        if n == 0 {
            return 0;
        }
        let now = rdtsc();
        let mut rx = std::mem::take(&mut self.rx);
        for mut m in rx.drain(..) {
            let keep = self.account(&mut m, now);
            if keep {
                self.replies.push(m);
            } else {
                self.free.push(m);
            }
        }
        self.rx = rx;
        dpdk::free_bulk(&mut self.free);
        if !self.replies.is_empty() {
            let mut replies = std::mem::take(&mut self.replies);
            self.queue.tx_burst(&mut replies);
            self.replies = replies;
        }
        n
    }

    /// Accounts for one received frame. Returns true when the frame was turned
    /// into an ARP reply to send back.
    #[inline]
    fn account(&mut self, m: &mut Mbuf, now: u64) -> bool {
        let f = m.data();
        if f.len() >= 14 && be16(f, 12) == ethertype::ARP {
            return self.arp(m);
        }
        if f.len() < 14 || be16(f, 12) != ethertype::IPV4 {
            self.counts.rx_other += 1;
            return false;
        }
        if let Some(seq_lo) = self.cookie_from.and_then(|(vip, port)| cookie_syn_ack(f, vip, port)) {
            self.counts.rx_syn_ack += 1;
            let sent_hi = self.seq & !0xffff_ffff;
            let mut seq = sent_hi | seq_lo;
            if seq >= self.seq.max(1) && seq >= 1 << 32 {
                seq -= 1 << 32;
            }
            if seq < self.trial_first_seq {
                self.counts.rx_late += 1;
                return false;
            }
            self.counts.rx_ok += 1;
            if seq < self.max_seen {
                self.counts.reordered += 1;
            } else {
                self.max_seen = seq;
            }
            return false;
        }
        let ip = match self.expect.check(f, self.ip_proto) {
            Ok(ip) => ip,
            Err(why) => {
                self.counts.rx_bad += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{why}: {:02x?}", &f[..f.len().min(64)]));
                }
                return false;
            }
        };
        let shift = ip - template::ETH;
        let Some((seq_lo, stamp)) = template::read_stamps(self.proto, &f[shift..]) else {
            self.counts.rx_bad += 1;
            return false;
        };
        // TCP carries 32 bits of sequence number and TSC: extend from what we sent.
        let (seq, lat) = match self.proto {
            Proto::Tcp => {
                let sent_hi = self.seq & !0xffff_ffff;
                let mut s = sent_hi | seq_lo;
                if s >= self.seq.max(1) && s >= 1 << 32 {
                    s -= 1 << 32;
                }
                (s, (now as u32).wrapping_sub(stamp as u32) as u64)
            }
            Proto::Udp => (seq_lo, now.wrapping_sub(stamp)),
        };
        if seq < self.trial_first_seq {
            self.counts.rx_late += 1;
            return false;
        }
        if seq & 63 == 0 && !l4_checksum_ok(f, ip) {
            self.counts.rx_bad_l4_checksum += 1;
        }
        self.counts.rx_ok += 1;
        if seq < self.max_seen {
            self.counts.reordered += 1;
        } else {
            self.max_seen = seq;
        }
        self.lat.record(lat);
        false
    }

    /// Answers ARP requests for simulated hosts in place; learns nothing.
    fn arp(&mut self, m: &mut Mbuf) -> bool {
        let f = m.data();
        if f.len() < 14 + arp::LEN {
            self.counts.rx_other += 1;
            return false;
        }
        let body = &f[14..14 + arp::LEN];
        let op = be16(body, 6);
        let target = Ipv4Addr::from(be32(body, 24));
        self.counts.rx_other += 1;
        if op != arp::op::REQUEST {
            return false;
        }
        let Some(mac) = plan::simulated_mac(target) else { return false };
        let sender_mac = MacAddr([body[8], body[9], body[10], body[11], body[12], body[13]]);
        let sender_ip = Ipv4Addr::from(be32(body, 14));
        // Rewrite in place: the frame becomes our reply.
        let d = m.data_mut();
        d[0..6].copy_from_slice(&sender_mac.0);
        d[6..12].copy_from_slice(&mac.0);
        arp::fill_reply(&mut d[14..14 + arp::LEN], mac, target, sender_mac, sender_ip);
        self.counts.arp_answered += 1;
        true
    }

    /// Sends `frames` (copied into mbufs) now, retrying while the port is busy.
    fn send_raw(&mut self, frames: &[Vec<u8>]) {
        for bytes in frames {
            if let Some(mut m) = self.pool.alloc() {
                if m.fill(bytes) {
                    self.tx.push(m);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while !self.tx.is_empty() && Instant::now() < deadline {
            let sent = self.queue.tx_burst(&mut std::mem::take(&mut self.tx));
            if sent == 0 {
                self.poll_rx();
            }
        }
        self.tx.clear();
    }

    /// Keeps receiving until nothing arrives for `quiet` (at most `max`).
    fn drain(&mut self, quiet: Duration, max: Duration) {
        let start = Instant::now();
        let mut last = Instant::now();
        while start.elapsed() < max {
            if self.poll_rx() > 0 {
                last = Instant::now();
            } else if last.elapsed() >= quiet {
                break;
            }
        }
    }

    fn reset_trial(&mut self) {
        self.counts = Counts::default();
        self.lat = Histogram::new();
        self.trial_first_seq = self.seq;
        self.max_seen = 0;
    }

    /// One trial: offer `rate` packets/s (None = as fast as the port takes them)
    /// for `secs`, then collect stragglers.
    fn trial(&mut self, rate: Option<f64>, secs: f64) -> Value {
        self.reset_trial();
        let hz = self.tsc_hz as f64;
        let start = rdtsc();
        let end = start + (secs * hz) as u64;
        let wall = Instant::now();
        // Frames the generator itself failed to offer in time (it was descheduled):
        // skipped rather than sent in a catch-up burst, which would overrun the DUT's
        // ring and be counted against the DUT.
        let mut skipped = 0u64;
        let mut stalls = 0u64;
        loop {
            let now = rdtsc();
            if now >= end {
                break;
            }
            let n = match rate {
                None => MAX_BURST,
                Some(r) => {
                    let due = (((now - start) as f64 / hz) * r) as u64;
                    let behind = due.saturating_sub(self.counts.offered + skipped);
                    if behind > 8 * MAX_BURST as u64 {
                        skipped += behind - MAX_BURST as u64;
                        stalls += 1;
                    }
                    (due.saturating_sub(self.counts.offered + skipped) as usize).min(MAX_BURST)
                }
            };
            for _ in 0..n {
                if let Some(m) = self.build(None) {
                    self.tx.push(m);
                }
            }
            if !self.tx.is_empty() {
                self.flush_tx();
            }
            self.poll_rx();
        }
        let send_secs = wall.elapsed().as_secs_f64();
        self.drain(Duration::from_millis(50), Duration::from_millis(500));
        let c = self.counts.clone();
        // Throttled trials count refused frames as lost (the DUT did not take them);
        // the unthrottled trial offers only what the port takes.
        let lost = match rate {
            Some(_) => c.offered.saturating_sub(c.rx_ok),
            None => c.sent.saturating_sub(c.rx_ok),
        };
        let base = if rate.is_some() { c.offered } else { c.sent };
        let loss_ratio = if base == 0 { 1.0 } else { lost as f64 / base as f64 };
        json!({
            "offered_rate_pps": rate,
            "offered_rate_actual_pps": c.offered as f64 / send_secs,
            "generator_stalls": stalls,
            "generator_skipped": skipped,
            "seconds": send_secs,
            "offered": c.offered,
            "sent": c.sent,
            "refused_by_port": c.refused,
            "received_ok": c.rx_ok,
            "received_late": c.rx_late,
            "received_bad_rewrite": c.rx_bad,
            "received_syn_ack": c.rx_syn_ack,
            "bad_l4_checksum_sampled": c.rx_bad_l4_checksum,
            "reordered": c.reordered,
            "received_other": c.rx_other,
            "arp_answered": c.arp_answered,
            "mbuf_alloc_failed": c.alloc_failed,
            "lost": lost,
            "loss_ratio": loss_ratio,
            "tx_mpps": c.sent as f64 / send_secs / 1e6,
            "rx_mpps": c.rx_ok as f64 / send_secs / 1e6,
            "latency_ns": self.lat.summary_ns(self.tsc_hz),
        })
    }

    /// Opens every established flow: a SYN and an ACK per flow, paced by the port.
    fn setup_flows(&mut self) -> Value {
        self.reset_trial();
        let wall = Instant::now();
        let mut flow = 0;
        while flow < self.flows {
            while self.tx.len() + 2 <= MAX_BURST && flow < self.flows {
                for kind in [Kind::Syn, Kind::Data] {
                    if let Some(m) = self.build(Some((flow, kind))) {
                        self.tx.push(m);
                    }
                }
                flow += 1;
            }
            // Keep the pairs in order: retry what the port refused instead of dropping it.
            let mut pending = std::mem::take(&mut self.tx);
            let mut last_progress = Instant::now();
            while !pending.is_empty() {
                let sent = self.queue.tx_burst_keep(&mut pending);
                self.counts.sent += sent as u64;
                if sent > 0 {
                    last_progress = Instant::now();
                } else if last_progress.elapsed() > Duration::from_secs(5) {
                    // The DUT stopped taking frames: give up (the report shows it).
                    pending.clear();
                    flow = self.flows;
                }
                self.poll_rx();
            }
            self.tx = pending;
        }
        self.drain(Duration::from_millis(100), Duration::from_secs(5));
        json!({
            "flows": self.flows,
            "packets_sent": self.counts.sent,
            "packets_back": self.counts.rx_ok,
            "bad_rewrite": self.counts.rx_bad,
            "seconds": wall.elapsed().as_secs_f64(),
        })
    }
}

fn run(a: &RunArgs) -> Result<(), String> {
    let mode = plan::mode(&a.mode)
        .ok_or_else(|| format!("unknown mode {}; the plan has {:?}", a.mode, MODES.iter().map(|m| m.name).collect::<Vec<_>>()))?;
    if !(64..=1518).contains(&a.size) {
        return Err(format!("--size {} is outside 64..=1518", a.size));
    }
    let proto = match a.proto {
        ProtoArg::Tcp => Proto::Tcp,
        ProtoArg::Udp => Proto::Udp,
    };
    if a.syn_proxy && (proto != Proto::Tcp || a.dut != Dut::Rvsd) {
        return Err("--syn-proxy needs --proto tcp and --dut rvsd".to_owned());
    }
    let syn_port = a.syn_port.unwrap_or(mode.vport);
    let mut eal = vec!["rvs-pktgen".to_owned(), "-l".to_owned(), a.lcore.to_string(), "--file-prefix".to_owned(), a.file_prefix.clone()];
    if a.device.starts_with("net_") {
        eal.push("--vdev".to_owned());
    } else {
        eal.push("-a".to_owned());
    }
    eal.push(a.device.clone());
    eal.extend(a.eal.split_whitespace().map(str::to_owned));
    let _eal = Eal::init(&eal).map_err(|e| e.to_string())?;
    let tsc_hz = dpdk::tsc_hz();
    let pool = Mempool::new("pktgen_pool", 16383, 256, Eal::socket_id()).map_err(|e| e.to_string())?;
    let dev = a.device.split(',').next().unwrap_or(&a.device);
    let port = Port::open(dev, 1, &pool, 1024, 1024).map_err(|e| e.to_string())?;
    let port_mac = port.mac();

    // Placeholder DUT MAC until ARP tells (a plain forwarder does not care).
    let mut g = Gen {
        queue: port.queue(0),
        pool,
        dut_mac: plan::DIRECTOR_MAC,
        tsc_hz,
        proto,
        ip_proto: match proto {
            Proto::Tcp => ip_proto::TCP,
            Proto::Udp => ip_proto::UDP,
        },
        syn: Template::new(proto, Kind::Syn, a.size, plan::CLIENT_MAC, plan::DIRECTOR_MAC, mode.vip, mode.vport),
        syn_new: Template::new(proto, Kind::Syn, a.size, plan::CLIENT_MAC, plan::DIRECTOR_MAC, mode.vip, syn_port),
        data: Template::new(proto, Kind::Data, a.size, plan::CLIENT_MAC, plan::DIRECTOR_MAC, mode.vip, mode.vport),
        expect: Expect::for_mode(a.dut, mode),
        cookie_from: a.syn_proxy.then_some((mode.vip, syn_port)),
        profile: a.profile,
        flows: a.flows.max(1),
        syn_space: a.syn_space.max(1),
        mix_every: a.mix_syn_every.max(2),
        seq: 1,
        trial_first_seq: 1,
        max_seen: 0,
        syn_next: 0,
        counts: Counts::default(),
        lat: Histogram::new(),
        first_error: None,
        rx: Vec::with_capacity(MAX_BURST),
        tx: Vec::with_capacity(MAX_BURST),
        replies: Vec::with_capacity(MAX_BURST),
        free: Vec::with_capacity(MAX_BURST),
    };

    // 1. Wait for the DUT: ARP for its address until it answers (rvsd) or our
    //    request comes back (a plain forwarder).
    let connect = Instant::now();
    let who_has = arp_request(plan::GATEWAY_MAC, plan::GATEWAY, plan::DIRECTOR_OUT);
    let mut up = false;
    while connect.elapsed().as_secs_f64() < a.connect_timeout && !up {
        if let Some(mut m) = g.pool.alloc() {
            if m.fill(&who_has) {
                g.tx.push(m);
                let _ = g.queue.tx_burst(&mut g.tx);
                g.tx.clear();
            }
        }
        let until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < until && !up {
            g.queue.rx_burst(&mut g.rx);
            for m in g.rx.drain(..) {
                let f = m.data();
                if f.len() >= 14 + arp::LEN && be16(f, 12) == ethertype::ARP {
                    let body = &f[14..14 + arp::LEN];
                    let sender_ip = Ipv4Addr::from(be32(body, 14));
                    match (a.dut, be16(body, 6)) {
                        (Dut::Rvsd, arp::op::REPLY) if sender_ip == plan::DIRECTOR_OUT => {
                            g.dut_mac = MacAddr([body[8], body[9], body[10], body[11], body[12], body[13]]);
                            up = true;
                        }
                        (Dut::Testpmd, _) => up = true,
                        _ => {}
                    }
                } else if a.dut == Dut::Testpmd {
                    up = true;
                }
            }
        }
    }
    if !up {
        return Err(format!("the DUT did not answer within {} s on {} (is it running? same socket?)", a.connect_timeout, a.device));
    }
    let connect_secs = connect.elapsed().as_secs_f64();
    let dut_mac = g.dut_mac;
    g.syn = Template::new(proto, Kind::Syn, a.size, plan::CLIENT_MAC, dut_mac, mode.vip, mode.vport);
    g.syn_new = Template::new(proto, Kind::Syn, a.size, plan::CLIENT_MAC, dut_mac, mode.vip, syn_port);
    g.data = Template::new(proto, Kind::Data, a.size, plan::CLIENT_MAC, dut_mac, mode.vip, mode.vport);

    // 2. Announce the simulated hosts (gratuitous ARP replies to the DUT).
    if a.dut == Dut::Rvsd {
        let announce: Vec<Vec<u8>> = plan::REALS
            .iter()
            .map(|&(ip, mac)| arp_reply(mac, ip, dut_mac, plan::DIRECTOR_IN))
            .chain([arp_reply(plan::GATEWAY_MAC, plan::GATEWAY, dut_mac, plan::DIRECTOR_OUT)])
            .collect();
        g.send_raw(&announce);
        g.drain(Duration::from_millis(50), Duration::from_millis(200));
    }

    // 3. Open the flows.
    let setup = match a.profile {
        Profile::Established | Profile::Mix => Some(g.setup_flows()),
        Profile::Syn => None,
    };

    // 3b. The cycles trial: a fixed offered rate, the DUT's own busy cycles read around it.
    let cycles = if a.cycles_rate > 0.0 { Some(cycles_trials(&mut g, a, a.cycles_rate)?) } else { None };
    let cycles_loaded = if a.loaded_cycles_rate > 0.0 { Some(cycles_trials(&mut g, a, a.loaded_cycles_rate)?) } else { None };

    // 4. The unthrottled (or fixed-rate) trial.
    let first_rate = (a.rate > 0.0).then_some(a.rate);
    let first = g.trial(first_rate, a.duration);

    // 5. Zero-loss search.
    let mut search = Value::Null;
    if a.search {
        let top = first["rx_mpps"].as_f64().unwrap_or(0.0) * 1e6;
        let (mut lo, mut hi) = (0.0f64, top.max(1.0));
        let mut rate = hi;
        let mut best: Option<Value> = None;
        let mut trials = Vec::new();
        for _ in 0..a.search_steps {
            let t = g.trial(Some(rate), a.trial_secs);
            let loss = t["loss_ratio"].as_f64().unwrap_or(1.0);
            let pass = loss <= a.loss_tolerance;
            trials.push(json!({ "rate_pps": rate, "loss_ratio": loss, "pass": pass, "rx_mpps": t["rx_mpps"] }));
            if pass {
                lo = rate;
                best = Some(t);
            } else {
                hi = rate;
            }
            if hi - lo <= a.search_precision * hi {
                break;
            }
            rate = (lo + hi) / 2.0;
        }
        search = json!({
            "zero_loss_mpps": lo / 1e6,
            "loss_tolerance": a.loss_tolerance,
            "trial_seconds": a.trial_secs,
            "trials": trials,
            "at_zero_loss_rate": best.unwrap_or(Value::Null),
        });
    }

    let stats = port.stats();
    let report = json!({
        "tool": "rvs-pktgen",
        "dut": format!("{:?}", a.dut).to_lowercase(),
        "device": a.device,
        "mode": mode.name,
        "proto": proto.name(),
        "profile": format!("{:?}", a.profile).to_lowercase(),
        "flows": a.flows,
        "frame_size": a.size,
        "tsc_hz": tsc_hz,
        "generator_mac": port_mac.to_string(),
        "dut_mac": dut_mac.to_string(),
        "connect_seconds": connect_secs,
        "setup": setup,
        "cycles": cycles,
        "cycles_loaded": cycles_loaded,
        "max": first,
        "search": search,
        "first_bad_frame": g.first_error,
        "port_stats": stats,
    });
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    if let Some(path) = &a.out {
        // Written whole, then renamed: a script waiting for the file never reads half of it.
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, &text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("{text}");
    let linger = Instant::now();
    // Until the DUT goes away (link down) or the time is up.
    while linger.elapsed().as_secs_f64() < a.linger && port.link_up() {
        if g.poll_rx() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(g);
    drop(port);
    Ok(())
}

/// `--cycles-trials` cycles trials at `rate` packets/s; the one with the
/// fewest DUT cycles per packet (the first when the DUT is not asked), with
/// every trial's figures under `trials`.
fn cycles_trials(g: &mut Gen, a: &RunArgs, rate: f64) -> Result<Value, String> {
    let mut all = Vec::new();
    for _ in 0..a.cycles_trials {
        all.push(cycles_trial(g, a, rate)?);
    }
    let cost = |t: &Value| t["dut"]["cycles_per_packet"].as_f64().unwrap_or(f64::INFINITY);
    let summary: Vec<Value> = all
        .iter()
        .map(|t| {
            json!({
                "cycles_per_packet": t["dut"]["cycles_per_packet"],
                "busy_fraction": t["dut"]["busy_fraction"],
                "loss_ratio": t["trial"]["loss_ratio"],
            })
        })
        .collect();
    let mut best = all.into_iter().min_by(|x, y| cost(x).total_cmp(&cost(y))).unwrap_or(Value::Null);
    best["trials"] = json!(summary);
    Ok(best)
}

/// A trial at `rate` packets/s for `--cycles-secs`; with `--dut-stats`, the DUT's
/// busy cycles and frames over the trial (counters are published every 50 ms:
/// read after a quiet 150 ms on each side).
fn cycles_trial(g: &mut Gen, a: &RunArgs, rate: f64) -> Result<Value, String> {
    let settle = Duration::from_millis(150);
    let before = match &a.dut_stats {
        Some(addr) => {
            g.drain(Duration::from_millis(50), Duration::from_millis(500));
            std::thread::sleep(settle);
            Some(DutCycles::read(addr)?)
        }
        None => None,
    };
    let trial = g.trial(Some(rate), a.cycles_secs);
    let dut = match (&a.dut_stats, before) {
        (Some(addr), Some(before)) => {
            std::thread::sleep(settle);
            let after = DutCycles::read(addr)?;
            let cycles = after.busy_cycles.wrapping_sub(before.busy_cycles);
            let frames = after.busy_frames.wrapping_sub(before.busy_frames);
            json!({
                "busy_cycles": cycles,
                "busy_frames": frames,
                "rx_packets": after.rx_packets.wrapping_sub(before.rx_packets),
                "tx_packets": after.tx_packets.wrapping_sub(before.tx_packets),
                "tsc_hz": after.tsc_hz,
                "cycles_per_packet": if frames == 0 { Value::Null } else { json!(cycles as f64 / frames as f64) },
                "busy_fraction": if after.tsc_hz == 0 { Value::Null }
                    else { json!(cycles as f64 / after.tsc_hz as f64 / trial["seconds"].as_f64().unwrap_or(1.0).max(1e-9)) },
            })
        }
        _ => Value::Null,
    };
    Ok(json!({ "rate_pps": rate, "trial": trial, "dut": dut }))
}

/// The DUT's busy-cycle counters, summed over its workers.
#[derive(Debug, Default)]
struct DutCycles {
    busy_cycles: u64,
    busy_frames: u64,
    rx_packets: u64,
    tx_packets: u64,
    tsc_hz: u64,
}

impl DutCycles {
    fn read(addr: &str) -> Result<Self, String> {
        let stats = http_get_json(addr, "/api/v1/stats")?;
        let mut d = DutCycles { tsc_hz: stats["tsc_hz"].as_u64().unwrap_or(0), ..Default::default() };
        let workers = stats["workers"].as_array().ok_or_else(|| format!("http://{addr}/api/v1/stats has no workers array"))?;
        for w in workers {
            let c = &w["counters"];
            let get = |k: &str| c[k].as_u64().ok_or_else(|| format!("http://{addr}/api/v1/stats: worker counter {k} missing"));
            d.busy_cycles += get("busy_cycles")?;
            d.busy_frames += get("busy_frames")?;
            d.rx_packets += get("rx_packets")?;
            d.tx_packets += get("tx_packets")?;
        }
        Ok(d)
    }
}

/// GET `path` from the HTTP server at `addr` (host:port) and parse its JSON body
/// (HTTP/1.0: the server closes the connection after the body).
fn http_get_json(addr: &str, path: &str) -> Result<Value, String> {
    use std::io::{Read, Write};
    let err = |e: std::io::Error| format!("http://{addr}{path}: {e}");
    let mut s = std::net::TcpStream::connect(addr).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(err)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n").map_err(err)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(err)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("http://{addr}{path}: no HTTP header in the answer"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("http://{addr}{path}: status {status}"));
    }
    serde_json::from_str(body).map_err(|e| format!("http://{addr}{path}: {e}"))
}

fn arp_request(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    rvs_dataplane::wire::builder::arp_frame(mac, MacAddr::BROADCAST, arp::op::REQUEST, mac, ip, MacAddr([0; 6]), target)
}

fn arp_reply(mac: MacAddr, ip: Ipv4Addr, to_mac: MacAddr, to_ip: Ipv4Addr) -> Vec<u8> {
    rvs_dataplane::wire::builder::arp_frame(mac, to_mac, arp::op::REPLY, mac, ip, to_mac, to_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_are_within_a_bucket() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.percentile(50.0) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.07, "p50 {p50}");
        let p99 = h.percentile(99.0) as f64;
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.07, "p99 {p99}");
        for i in 0..200 {
            assert!(Histogram::lower_bound(i) <= Histogram::lower_bound(i + 1));
            assert_eq!(Histogram::index(Histogram::lower_bound(i)), i);
        }
    }

    #[test]
    fn checks_accept_the_right_rewrite_and_reject_others() {
        let m = plan::mode("nat").expect("nat in plan");
        let (real, real_mac) = plan::REALS[0];
        let t = Template::new(Proto::Tcp, Kind::Data, 64, plan::CLIENT_MAC, real_mac, real, m.real_port);
        let mut f = t.bytes().to_vec();
        t.patch(&mut f, Ipv4Addr::new(172, 16, 0, 9), 2000, 5, 6);
        let nat = Expect::Nat { real_port: m.real_port };
        assert_eq!(nat.check(&f, ip_proto::TCP), Ok(template::ETH));
        assert!(l4_checksum_ok(&f, template::ETH));
        let dr = Expect::Dr { vip: m.vip, vport: m.vport };
        assert!(dr.check(&f, ip_proto::TCP).is_err(), "DR must keep the VIP");
        f[0] ^= 1;
        assert!(nat.check(&f, ip_proto::TCP).is_err(), "MAC must match the real");
    }

    /// A SYN proxy's SYN-ACK (built with etherparse) to generator SYN number
    /// 0x1_0000_0005 (TCP sequence 5): recognised, sequence recovered; not from
    /// the VIP's proxied port, not a SYN-ACK or not to the gateway: ignored.
    #[test]
    fn cookie_syn_acks_are_recognised() {
        let m = plan::mode("nat").expect("nat in plan");
        let client = plan::syn_client(3).0;
        let build =
            |sport: u16, syn: bool, dst_mac: MacAddr| {
                let b = etherparse::PacketBuilder::ethernet2([2, 0xd0, 0, 0, 0, 1], dst_mac.0)
                    .ipv4(m.vip.octets(), client.octets(), 64)
                    .tcp(sport, 1027, 0x1234_5678, 64240);
                let b = if syn { b.syn() } else { b }.ack(6);
                let mut f = Vec::new();
                b.write(&mut f, &[]).expect("frame");
                f
            };
        assert_eq!(cookie_syn_ack(&build(81, true, plan::GATEWAY_MAC), m.vip, 81), Some(5));
        assert_eq!(cookie_syn_ack(&build(80, true, plan::GATEWAY_MAC), m.vip, 81), None);
        assert_eq!(cookie_syn_ack(&build(81, false, plan::GATEWAY_MAC), m.vip, 81), None);
        assert_eq!(cookie_syn_ack(&build(81, true, plan::REALS[0].1), m.vip, 81), None);
        assert_eq!(cookie_syn_ack(&build(81, true, plan::GATEWAY_MAC), plan::mode("dr").expect("dr").vip, 81), None);
    }
}
