//! Memory per connection-table entry, measured.
//!
//! For every mode of the plan and every table size given, a worker's
//! `Processor` is created exactly as rvsd creates it (`conn_table_size` =
//! the number of connections), then filled through the packet path with one
//! SYN per client tuple. The process's resident set size is read from
//! `/proc/self/statm` before creating the processor, after creating it (the
//! up-front allocation) and after filling it; the difference divided by the
//! number of connections is the cost per connection. The static sizes of the
//! entry types are printed next to it. Output: one JSON document on stdout.
//!
//! `rvs-conn-mem [N ...]` (default: 1000000 4000000).

use std::time::Instant;

use rvs_bench::fixture::{neighbour_replies, snapshot};
use rvs_bench::plan::{self, MODES};
use rvs_bench::template::{Kind, Proto, Template};
use rvs_dataplane::conn::{Conn, ConnId, FlowKey, IndexEntry};
use rvs_dataplane::frame::{Frame, VecFrame};
use rvs_dataplane::process::{Output, Processor};
use rvs_dataplane::stats::Counter;
use serde_json::json;

/// Resident set size of this process in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * page_size()
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
    let static_sizes = json!({
        "conn": std::mem::size_of::<Conn>(),
        "slot_option_conn": std::mem::size_of::<Option<Conn>>(),
        "flow_key": std::mem::size_of::<FlowKey>(),
        "index_entry": index_entry,
        "index_bucket": index_entry,
        "index_max_load": 0.75,
        "free_list_entry": std::mem::size_of::<ConnId>(),
    });
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
            });
            eprintln!("rvs-conn-mem: {} {} conns: {:.1} bytes/conn (RSS)", mode.name, n, per_conn);
            runs.push(run);
            drop(p);
        }
    }
    let doc = json!({
        "what": "resident memory of a worker's packet-path state per connection, conn_table_size = connections",
        "page_size": page_size(),
        "static_sizes_bytes": static_sizes,
        "runs": runs,
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}
