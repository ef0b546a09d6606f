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
//! `rvs-conn-mem [N ...]` (default: 1000000 4000000).

use std::time::Instant;

use rvs_bench::fixture::{neighbour_replies, snapshot};
use rvs_bench::plan::{self, MODES};
use rvs_bench::template::{Kind, Proto, Template};
use rvs_dataplane::conn::{Conn, ConnTable, FlowKey, IndexEntry};
use rvs_dataplane::frame::{Frame, VecFrame};
use rvs_dataplane::process::{Output, Processor};
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
fn pages(table: &ConnTable) -> (serde_json::Value, String) {
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
            let mut p: Processor<VecFrame> = Processor::new(snapshot(mode), n);
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
    let doc = json!({
        "what": "resident memory (RSS + hugetlb pages) of a worker's packet-path state per connection, conn_table_size = connections",
        "page_size": page_size(),
        "static_sizes_bytes": static_sizes,
        "runs": runs,
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}
