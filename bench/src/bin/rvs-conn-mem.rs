//! Memory per connection-table entry, measured.
//!
//! For every mode of the plan and every table size given, a worker's
//! `Processor` is created exactly as rvsd creates it (`conn_table_size` =
//! the number of connections), then filled through the packet path with one
//! SYN per client tuple. The process's resident memory is read before
//! creating the processor, after creating it (the up-front allocation, which
//! the table now faults in entirely: slots and index are written when they are
//! created) and after filling it; the difference divided by the number of
//! connections is the cost per connection at capacity. Resident memory is the
//! resident set (`/proc/self/statm`) plus the hugetlbfs pages mapped
//! (`HugetlbPages` in `/proc/self/status`), which the resident set does not
//! count. For each of the table's two arrays the run also says what backs it
//! (`hugetlb`, `thp`, `4k`, `heap`) and what `/proc/self/smaps` shows of its
//! mapping (hugetlb and `AnonHugePages` bytes, kernel page size). The static
//! sizes of the entry types are printed next to it. Output: one JSON document
//! on stdout.
//!
//! IPv6 (`ipv6` in the document, a second line per run on stderr): the same
//! figure for an IPv6 connection table ([`ConnTable6`]) of the same size and
//! mode, measured on the table alone (filled by direct inserts, one
//! connection per client tuple, with the reply key of its mode: none for DR
//! and TUN, `real → client` for NAT, `real → local` for FULLNAT), beside an
//! IPv4 table measured the same way, so the two differ by the entry only.
//! The IPv4 figures above stay those of the whole worker, its IPv6 table at
//! its smallest (`MIN_CONN_CAPACITY6`, `conn_table_size_ipv6` in each run):
//! rvsd's default IPv6 table (`default_ipv6_table_sizes`, a sixteenth of
//! `conn_table_size`) costs the IPv6 figure times its size on top.
//!
//! `rvs-conn-mem [N ...]` (default: 1000000 4000000).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Instant;

use rvs_bench::fixture::{neighbour_replies, snapshot};
use rvs_bench::plan::{self, ModeSpec, MODES};
use rvs_bench::template::{Kind, Proto, Template};
use rvs_dataplane::conn::{Conn, Conn6, ConnAddr, ConnTable, ConnTable6, FlowKey, FlowKey6, IndexEntry, SockV6, TcpState};
use rvs_dataplane::frame::{Frame, VecFrame};
use rvs_dataplane::process::{default_capacity6, Output, Processor, MIN_CONN_CAPACITY6};
use rvs_dataplane::snapshot::{ForwardMode, Protocol};
use rvs_dataplane::stats::Counter;
use serde_json::json;

/// Resident memory of this process in bytes: its resident set plus the
/// hugetlbfs pages it maps (not part of the resident set).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * page_size() + hugetlb_bytes()
}

/// Bytes of hugetlbfs pages this process maps (`HugetlbPages` of /proc/self/status).
fn hugetlb_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("HugetlbPages:")).and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .map_or(0, |kb| kb * 1024)
}

/// What backs each array of a table, as JSON, and a one-line summary.
fn pages<S: ConnAddr>(table: &ConnTable<S>) -> (serde_json::Value, String) {
    let parts = table.memory();
    let json = parts
        .iter()
        .map(|p| {
            let smaps = p.smaps.unwrap_or_default();
            (
                p.name.to_owned(),
                json!({
                    "bytes": p.bytes,
                    "backing": p.backing.name(),
                    "mapped_bytes": smaps.size_bytes,
                    "resident_bytes": smaps.rss_bytes + smaps.hugetlb_bytes,
                    "hugetlb_bytes": smaps.hugetlb_bytes,
                    "anon_huge_bytes": smaps.anon_huge_bytes,
                    "kernel_page_size": smaps.kernel_page_size,
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>();
    let line = parts
        .iter()
        .map(|p| {
            let smaps = p.smaps.unwrap_or_default();
            let huge = smaps.hugetlb_bytes + smaps.anon_huge_bytes;
            format!("{} {}: {:.1} MB in {:.1} MB of huge pages", p.name, p.backing.name(), p.bytes as f64 / 1e6, huge as f64 / 1e6)
        })
        .collect::<Vec<_>>()
        .join(", ");
    (serde_json::Value::Object(json), line)
}

fn page_size() -> u64 {
    // getconf is not worth a libc dependency: every Linux target this runs on uses 4 KiB pages
    // unless the kernel says otherwise in /proc/self/smaps ("KernelPageSize").
    std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("KernelPageSize:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .map_or(4096, |kb| kb * 1024)
}

/// The IPv6 address standing for the IPv4 address `a` of the benchmark plan
/// in the IPv6 table: `2001:db8:AB:CD::1` (`a` is `A.B.C.D`).
fn v6(a: Ipv4Addr) -> Ipv6Addr {
    let [a, b, c, d] = a.octets().map(u16::from);
    Ipv6Addr::new(0x2001, 0xdb8, a << 8 | b, c << 8 | d, 0, 0, 0, 1)
}

/// Connection `i` of a table of family `S` in `mode` (`ip` gives the
/// family's address for an IPv4 one of the plan): client tuple `i` of the
/// plan, a real server of the plan, and for FULLNAT a local address and port
/// of its own (local tuple `i`), so that no two connections share a key.
fn table_conn<S: ConnAddr>(mode: &ModeSpec, i: u64, ip: fn(Ipv4Addr) -> S::Ip) -> Conn<S> {
    let (client, sport) = plan::client(i);
    let (real, _) = plan::REALS[(i % plan::REALS.len() as u64) as usize];
    let local_addr = Ipv4Addr::from(0x0a01_0100u32.wrapping_add((i / plan::PORTS_PER_CLIENT) as u32));
    let local_port = plan::FIRST_CLIENT_PORT + (i % plan::PORTS_PER_CLIENT) as u16;
    let local = (mode.forward == ForwardMode::FullNat).then(|| S::from_parts(ip(local_addr), local_port));
    Conn {
        protocol: Protocol::Tcp,
        client: S::from_parts(ip(client), sport),
        vip: S::from_parts(ip(mode.vip), mode.vport),
        real: S::from_parts(ip(real), mode.real_port),
        local: local.into(),
        real_index: 0,
        service_index: 0,
        generation: 0,
        synced_tick: 0,
        forward: mode.forward,
        state: TcpState::Established,
        expires_ms: u32::MAX / 2,
        seq_delta: 0,
        reply_hop: rvs_dataplane::neigh::hops::NONE,
        proxy: Default::default(),
    }
}

/// What filling a table alone measured.
struct TableRun {
    /// Resident bytes per connection, filled.
    per_conn: f64,
    /// Resident bytes per connection right after creating it.
    at_create: f64,
    /// Seconds to create and fill it.
    seconds: f64,
    /// [`pages`] of the filled table.
    pages: (serde_json::Value, String),
}

/// A table of family `S` for `n` connections, created and filled with `n`
/// connections of `mode` by direct inserts, measured.
fn table_run<S: ConnAddr>(mode: &ModeSpec, n: usize, ip: fn(Ipv4Addr) -> S::Ip) -> TableRun {
    let before = rss_bytes();
    let t0 = Instant::now();
    let mut table = ConnTable::<S>::new(n);
    let allocated = rss_bytes();
    let mut displaced = Vec::new();
    for i in 0..n as u64 {
        if let Err(e) = table.insert(table_conn(mode, i, ip), &mut displaced) {
            eprintln!("rvs-conn-mem: {} table, connection {i}: {e}", mode.name);
            std::process::exit(1);
        }
    }
    let filled = rss_bytes();
    assert!(displaced.is_empty() && table.len() == n, "every connection has keys of its own");
    TableRun {
        per_conn: filled.saturating_sub(before) as f64 / n as f64,
        at_create: allocated.saturating_sub(before) as f64 / n as f64,
        seconds: t0.elapsed().as_secs_f64(),
        pages: pages(&table),
    }
}

/// Rounded to a tenth.
fn tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The IPv6 part of the document: static sizes of the IPv6 entry, and per
/// mode and size, an IPv6 table and an IPv4 one filled alone.
fn ipv6_section(sizes: &[usize]) -> serde_json::Value {
    let index_entry = std::mem::size_of::<IndexEntry>();
    let probe = ConnTable6::new(3000);
    let [slots, index] = probe.memory();
    let static_sizes = json!({
        "conn": std::mem::size_of::<Conn6>(),
        "slot": slots.bytes / probe.capacity(),
        "slot_option_conn": std::mem::size_of::<Option<Conn6>>(),
        "flow_key": std::mem::size_of::<FlowKey6>(),
        "index_entry": index_entry,
        "index_buckets_per_conn": index.bytes as f64 / index_entry as f64 / probe.capacity() as f64,
    });
    drop(probe);
    let mut runs = Vec::new();
    for mode in MODES {
        for &n in sizes {
            let v4 = table_run::<SocketAddrV4>(mode, n, |a| a);
            let v6 = table_run::<SockV6>(mode, n, v6);
            eprintln!(
                "rvs-conn-mem: ipv6 {} {} conns: {:.1} bytes/conn (table alone; an IPv4 table alone: {:.1}); {}",
                mode.name, n, v6.per_conn, v4.per_conn, v6.pages.1
            );
            runs.push(json!({
                "mode": mode.name,
                "connections": n,
                "conn_table_size": n,
                "bytes_per_conn": tenth(v6.per_conn),
                "bytes_per_conn_at_create": tenth(v6.at_create),
                "ipv4_table_only_bytes_per_conn": tenth(v4.per_conn),
                "fill_seconds": v6.seconds,
                "pages": v6.pages.0,
            }));
        }
    }
    json!({
        "default_ipv6_table_sizes": sizes.iter().map(|&n| json!({"conn_table_size": n, "conn_table_size_ipv6": default_capacity6(n)})).collect::<Vec<_>>(),
        "what": "resident memory (RSS + hugetlb pages) per connection of an IPv6 connection table alone (created and filled by direct inserts, \
                 not through a worker), conn_table_size = connections; ipv4_table_only_bytes_per_conn: an IPv4 table measured the same way",
        "static_sizes_bytes": static_sizes,
        "runs": runs,
    })
}

fn main() {
    let sizes: Vec<usize> = {
        let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
        if args.is_empty() {
            vec![1_000_000, 4_000_000]
        } else {
            args
        }
    };
    let index_entry = std::mem::size_of::<IndexEntry>();
    // The slot size and the index's buckets per connection, as a table shows them.
    let probe = ConnTable::with_capacity(3000);
    let [slots, index] = probe.memory();
    let static_sizes = json!({
        "conn": std::mem::size_of::<Conn>(),
        "slot": slots.bytes / probe.capacity(),
        "slot_option_conn": std::mem::size_of::<Option<Conn>>(),
        "flow_key": std::mem::size_of::<FlowKey>(),
        "index_entry": index_entry,
        "index_bucket": index_entry,
        "index_buckets_per_conn": index.bytes as f64 / index_entry as f64 / probe.capacity() as f64,
        "index_max_load": 0.75,
        "free_list_entry": 0,
    });
    drop(probe);
    let mut runs = Vec::new();
    for mode in MODES {
        for &n in &sizes {
            let before = rss_bytes();
            let t0 = Instant::now();
            // The IPv6 table at its smallest: this figure is the IPv4 entry's
            // (the IPv6 one is measured apart, below).
            let mut p: Processor<VecFrame> = Processor::for_worker_sized(snapshot(mode), n, MIN_CONN_CAPACITY6, 0, 1);
            let allocated = rss_bytes();
            let mut out = Output::with_capacity(8);
            for reply in neighbour_replies(plan::DIRECTOR_MAC) {
                p.handle(0, VecFrame::new(&reply), 0, &mut out);
            }
            out.drop.clear();
            let syn = Template::new(Proto::Tcp, Kind::Syn, 64, plan::CLIENT_MAC, plan::DIRECTOR_MAC, mode.vip, mode.vport);
            let mut frame = VecFrame::new(syn.bytes());
            for i in 0..n as u64 {
                let (src, sport) = plan::client(i);
                if frame.len() != syn.len() {
                    // TUN grew the frame it forwarded: start again from the template's size.
                    frame = VecFrame::new(syn.bytes());
                }
                syn.write(frame.data_mut(), src, sport, i, 0);
                p.handle(0, frame, 0, &mut out);
                frame = match out.tx.pop() {
                    Some((_, f)) => f,
                    None => {
                        eprintln!("rvs-conn-mem: flow {i} was not forwarded: {:?}", p.counters());
                        std::process::exit(1);
                    }
                };
            }
            let filled = rss_bytes();
            let (pages, pages_line) = pages(p.conns());
            let created = p.counters().get(Counter::ConnCreated);
            assert_eq!(created, n as u64, "every SYN creates a connection");
            let per_conn = (filled.saturating_sub(before)) as f64 / n as f64;
            let run = json!({
                "mode": mode.name,
                "connections": n,
                "conn_table_size": n,
                "conn_table_size_ipv6": MIN_CONN_CAPACITY6,
                "rss_before": before,
                "rss_after_create": allocated,
                "rss_after_fill": filled,
                "bytes_per_conn": (per_conn * 10.0).round() / 10.0,
                "bytes_per_conn_at_create": ((allocated.saturating_sub(before)) as f64 / n as f64 * 10.0).round() / 10.0,
                "fill_seconds": t0.elapsed().as_secs_f64(),
                "pages": pages,
            });
            eprintln!("rvs-conn-mem: {} {} conns: {:.1} bytes/conn (resident, hugetlb included); {}", mode.name, n, per_conn, pages_line);
            runs.push(run);
            drop(p);
        }
    }
    let ipv6 = ipv6_section(&sizes);
    let doc = json!({
        "what": "resident memory (RSS + hugetlb pages) of a worker's packet-path state per connection, conn_table_size = connections",
        "page_size": page_size(),
        "static_sizes_bytes": static_sizes,
        "runs": runs,
        "ipv6": ipv6,
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}
