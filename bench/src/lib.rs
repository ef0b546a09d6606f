//! rvs benchmarks: the shared test plan.
//!
//! * `benches/packet_path.rs` (criterion): the packet path without I/O, in ns per packet,
//!   IPv4 and IPv6 (`plan::MODES6`, NAT64 included).
//! * `src/bin/rvs-conn-mem.rs`: memory per connection-table entry, measured.
//! * `src/bin/rvs-pktgen.rs`: a DPDK packet generator that talks to rvsd (or
//!   `dpdk-testpmd`) over memif, for Mpps, zero-loss rate and latency.
//! * `deploy/bench.sh` runs all of it and writes `bench/report/`.
//!
//! Everything here is the addressing plan those programs share, so that the
//! criterion bench, the generator and the rvsd config written by `bench.sh`
//! agree on VIPs, real servers, MAC addresses and client tuples.

pub mod fixture;
pub mod plan;
pub mod template;
