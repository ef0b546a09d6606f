//! Destination hashing (IPVS `dh`).
//!
//! IPVS's algorithm: the same 256-bucket table as `sh`, but filled without
//! weights: bucket `b` belongs to the `b mod n`-th real server. A connection's
//! bucket is `hash_32(destination address, 8)` (Knuth's multiplicative hash,
//! top 8 bits of `addr × 0x61C88647 mod 2^32`). When that server is unavailable
//! (weight 0 or overloaded) there is no pick: IPVS's `dh` has no fallback.
//!
//! Weights thus only matter as "zero or not". The table is built in the
//! constructor.

use super::common::addr_fold;
use super::sh::Buckets;
use super::SchedFlow;
use super::{Candidates, Scheduler};
use crate::snapshot::RealServer;

/// Destination-hashing scheduler: the bucket table.
#[derive(Debug)]
pub struct DestinationHashing {
    buckets: Buckets,
}

impl DestinationHashing {
    /// The table for `reals`.
    pub fn new(reals: &[RealServer]) -> Self {
        DestinationHashing { buckets: Buckets::round_robin(reals) }
    }
}

impl Scheduler for DestinationHashing {
    fn pick(&mut self, c: &Candidates<'_>, flow: &dyn SchedFlow) -> Option<usize> {
        self.buckets.lookup(c, addr_fold(flow.dst()), false)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::conn::FlowKey;
    use crate::sched::test_util::{counts, flow, reals};
    use crate::sched::Candidates;

    fn to(dst: Ipv4Addr) -> FlowKey {
        FlowKey { dst, ..flow(1000) }
    }

    #[test]
    fn buckets_round_robin_ignoring_weights() {
        assert_eq!(Buckets::round_robin(&reals(&[1, 1, 1])).shares(3), vec![86, 85, 85]);
        assert_eq!(Buckets::round_robin(&reals(&[5, 1])).shares(2), vec![128, 128]);
        let b = Buckets::round_robin(&reals(&[1, 1, 1]));
        assert_eq!((0..6).map(|i| b.owner(i)).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2].map(Some).to_vec());
    }

    #[test]
    fn same_destination_same_server_sources_ignored() {
        let rs = reals(&[1, 2, 3]);
        let mut a = DestinationHashing::new(&rs);
        let c = Candidates::idle(&rs);
        for n in 0..300u32 {
            let f = to(Ipv4Addr::from(0xC633_6400 + n * 31));
            let first = a.pick(&c, &f);
            assert!(first.is_some());
            assert_eq!(DestinationHashing::new(&rs).pick(&c, &f), first);
            let other_src = FlowKey { src: Ipv4Addr::new(172, 16, 9, 9), sport: 7, ..f };
            assert_eq!(a.pick(&c, &other_src), first);
            // The owner is bucket hash_32(dst, 8) mod 3, computed by hand.
            let bucket = (u64::from(u32::from(f.dst)) * 0x61C8_8647 % (1 << 32)) >> 24;
            assert_eq!(first, Some(bucket as usize % 3));
        }
    }

    #[test]
    fn unavailable_owner_means_no_pick() {
        let rs = reals(&[1, 1]);
        let mut s = DestinationHashing::new(&rs);
        let dst = (0..).map(|n| Ipv4Addr::from(0x0A0A_0000 + n)).find(|&d| s.pick(&Candidates::idle(&rs), &to(d)) == Some(0));
        let dst = dst.unwrap_or(Ipv4Addr::UNSPECIFIED);
        assert_eq!(s.pick(&counts(&rs, &[0, 0], &[0, 0], &[true, false]), &to(dst)), None);
        let quiesced = reals(&[0, 1]);
        assert_eq!(s.pick(&Candidates::idle(&quiesced), &to(dst)), None);
    }
}
