//! The packet path without I/O: ns per packet through `Processor::handle_burst`,
//! in bursts of [`RX_BURST`] frames as the worker receives them.
//!
//! For every mode of `rvs_bench::plan::MODES` and every table size of
//! [`table_sizes`], a processor is filled with that many live (established)
//! connections by sending each a SYN and an ACK, then two benchmarks run:
//!
//! * `established`: ACK data segments of live flows picked at random, so with
//!   4 M connections the lookups miss the CPU caches as real traffic would;
//! * `new_conn`: SYNs from client tuples the table has never seen (lookup miss,
//!   service lookup, scheduling, insert, rewrite). The new entries are expired
//!   between measured batches (untimed) so the table stays at its size.
//!
//! Nothing in the timed loop allocates: frames come from a pool of `VecFrame`s
//! that is refilled from templates outside the timed region (`iter_custom`), and
//! the `Output` vectors are drained, never reallocated. One iteration is one packet.
//!
//! `RVS_BENCH_BIG_CONNS` overrides the large table size (default 4,000,000);
//! `deploy/bench.sh --smoke` sets it small. Each group prints the frames it
//! ran through the processor to stderr (`frames timed:`), so an instruction
//! count taken under callgrind (`--toggle-collect='*run_pool*'`) can be
//! divided into instructions per packet.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rvs_bench::fixture::{neighbour_replies, snapshot};
use rvs_bench::plan::{self, ModeSpec, MODES};
use rvs_bench::template::{Kind, Proto, Template};
use rvs_dataplane::frame::{Frame, VecFrame};
use rvs_dataplane::process::{Output, Processor};
use rvs_dataplane::stats::Counter;

/// Frames processed between two clock reads.
const BATCH: usize = 256;
/// Frames per `handle_burst` call (rvsd's rx burst, `rvs_dpdk::MAX_BURST`).
const RX_BURST: usize = 32;
/// Wire size of the benchmark frames (64-byte frames: 60 bytes without FCS).
const FRAME_SIZE: usize = 64;

/// `(label, live connections)` for every table size measured.
fn table_sizes() -> Vec<(String, usize)> {
    let big = std::env::var("RVS_BENCH_BIG_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000_000usize);
    vec![("1k".to_owned(), 1_000), (label(big), big)]
}

fn label(n: usize) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{}m", n / 1_000_000)
    } else if n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// A processor with `live` established connections and every neighbour resolved.
struct Fixture {
    p: Processor<VecFrame>,
    out: Output<VecFrame>,
    pool: Vec<VecFrame>,
    burst: Vec<VecFrame>,
    syn: Template,
    data: Template,
    live: usize,
    now_ms: u64,
    rng: u64,
    /// New connections created since the last sweep.
    fresh: usize,
    /// Sweep when `fresh` reaches this.
    slack: usize,
    /// Frames run through the processor in timed regions.
    timed_frames: u64,
}

impl Fixture {
    fn new(mode: &ModeSpec, live: usize) -> Self {
        let slack = (live / 64).max(64);
        let capacity = live + 2 * slack + 2 * BATCH;
        let p = Processor::new(snapshot(mode), capacity);
        let out = Output::with_capacity(BATCH);
        let mk = |kind| Template::new(Proto::Tcp, kind, FRAME_SIZE, plan::CLIENT_MAC, plan::DIRECTOR_MAC, mode.vip, mode.vport);
        let (syn, data) = (mk(Kind::Syn), mk(Kind::Data));
        let mut f = Fixture {
            p,
            out,
            pool: Vec::with_capacity(BATCH),
            burst: Vec::with_capacity(RX_BURST),
            syn,
            data,
            live,
            now_ms: 1,
            rng: 0x9e37_79b9_7f4a_7c15,
            fresh: 0,
            slack,
            timed_frames: 0,
        };
        f.warm_neighbours();
        // Fill the table: SYN then ACK per flow, one recycled frame.
        let mut frame = VecFrame::new(f.syn.bytes());
        for i in 0..live as u64 {
            let (src, sport) = plan::client(i);
            for t in [&f.syn, &f.data] {
                Self::reset_frame(&mut frame, t);
                t.write(frame.data_mut(), src, sport, i, 0);
                f.p.handle(0, frame, f.now_ms, &mut f.out);
                frame = match f.out.tx.pop() {
                    Some((_, fr)) => fr,
                    None => panic!("populating flow {i}: frame not forwarded; counters: {:?}", f.p.counters()),
                };
                assert!(f.out.drop.is_empty() && f.out.tx.is_empty(), "populating flow {i}");
            }
        }
        assert_eq!(f.p.conns().len(), live, "live connections after populating");
        assert_eq!(f.p.counters().get(Counter::ConnCreated), live as u64);
        for _ in 0..BATCH {
            f.pool.push(VecFrame::new(f.syn.bytes()));
        }
        f
    }

    /// Teaches the processor the MACs of the reals and the gateway (untimed).
    fn warm_neighbours(&mut self) {
        for reply in neighbour_replies(plan::DIRECTOR_MAC) {
            self.p.handle(0, VecFrame::new(&reply), self.now_ms, &mut self.out);
        }
        self.out.drop.clear();
        self.out.tx.clear();
        self.out.control.clear();
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Runs `n` frames (already in the pool) through the processor; returns the time taken.
    fn run_pool(&mut self, n: usize) -> Duration {
        let now = self.now_ms;
        let start = Instant::now();
        let mut frames = self.pool.drain(..n);
        loop {
            self.burst.extend(frames.by_ref().take(RX_BURST));
            if self.burst.is_empty() {
                break;
            }
            self.p.handle_burst(0, &mut self.burst, now, &mut self.out);
        }
        drop(frames);
        let took = start.elapsed();
        self.timed_frames += n as u64;
        assert!(
            self.out.drop.is_empty() && self.out.tx.len() == n,
            "every frame must be forwarded: {} sent, {} dropped; counters {:?}",
            self.out.tx.len(),
            self.out.drop.len(),
            self.p.counters()
        );
        self.pool.extend(self.out.tx.drain(..).map(|(_, f)| f));
        self.out.control.clear();
        took
    }

    /// Puts back a frame's original length (a mode may grow or shrink frames).
    fn reset_frame(frame: &mut VecFrame, template: &Template) {
        if frame.len() != template.len() {
            *frame = VecFrame::new(template.bytes());
        }
    }

    /// `iters` ACK segments of random live flows.
    fn established(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters as usize;
        while left > 0 {
            let n = left.min(BATCH);
            for i in 0..n {
                let flow = self.next_rand() % self.live as u64;
                let (src, sport) = plan::client(flow);
                let mut frame = std::mem::replace(&mut self.pool[i], VecFrame::new(&[]));
                Self::reset_frame(&mut frame, &self.data);
                self.data.write(frame.data_mut(), src, sport, flow, 0);
                self.pool[i] = frame;
            }
            total += self.run_pool(n);
            left -= n;
        }
        total
    }

    /// `iters` SYNs of never-seen client tuples.
    fn new_connections(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters as usize;
        while left > 0 {
            if self.fresh >= self.slack {
                self.sweep();
            }
            let n = left.min(BATCH).min(self.slack - self.fresh);
            for i in 0..n {
                let (src, sport) = plan::syn_client((self.fresh + i) as u64);
                let mut frame = std::mem::replace(&mut self.pool[i], VecFrame::new(&[]));
                Self::reset_frame(&mut frame, &self.syn);
                self.syn.write(frame.data_mut(), src, sport, 0, 0);
                self.pool[i] = frame;
            }
            total += self.run_pool(n);
            self.fresh += n;
            left -= n;
        }
        total
    }

    /// Expires the new connections (untimed): advance the clock past the SYN
    /// timeout and let the incremental sweep remove them.
    fn sweep(&mut self) {
        self.now_ms += 1_001;
        let max_ticks = self.p.conns().capacity() / rvs_dataplane::process::EXPIRE_BUDGET + 2;
        for _ in 0..max_ticks {
            if self.p.conns().len() <= self.live {
                break;
            }
            self.p.tick(self.now_ms, &mut self.out);
        }
        assert_eq!(self.p.conns().len(), self.live, "sweep left new connections behind");
        self.out.drop.clear();
        self.out.tx.clear();
        self.out.control.clear();
        self.warm_neighbours();
        self.fresh = 0;
    }
}

fn packet_path(c: &mut Criterion) {
    for (table, live) in table_sizes() {
        for mode in MODES {
            let setup = Instant::now();
            let mut fx = Fixture::new(mode, live);
            eprintln!("packet_path: {} with {} live connections ready in {:.1?}", mode.name, live, setup.elapsed());
            let mut group = c.benchmark_group(format!("packet_path/{}/{}", mode.name, table));
            group.throughput(Throughput::Elements(1));
            group.bench_function("established", |b| b.iter_custom(|iters| fx.established(iters)));
            group.bench_function("new_conn", |b| b.iter_custom(|iters| fx.new_connections(iters)));
            group.finish();
            if fx.timed_frames > 0 {
                eprintln!("packet_path: {}/{}: frames timed: {}", mode.name, table, fx.timed_frames);
            }
            black_box(fx.p.counters().get(Counter::InboundPackets));
        }
    }
}

criterion_group!(benches, packet_path);
criterion_main!(benches);
