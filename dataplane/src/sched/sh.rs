//! Source hashing (IPVS `sh`), and the 256-bucket table it shares with `dh`.
//!
//! IPVS's algorithm: a table of 256 buckets (`IP_VS_SH_TAB_SIZE`, 2^8) is
//! filled once from the real servers, walking them in order and giving each
//! `weight` consecutive buckets (at least one, even at weight 0) before moving
//! to the next, wrapping around until all 256 are assigned. Weights 2:1 thus
//! give A A B A A B … A: 171 and 85 buckets. Weights are used as they are (no
//! gcd reduction), so a server weighing 256 or more takes the whole table, as in
//! IPVS: keep `sh` weights small.
//!
//! A connection's bucket is the multiplicative hash of its source address
//! (plus its source port with the `sh-port` option, [`HashFields::SrcAddrPort`];
//! port 0 otherwise): `hash_32(addr + port, 8)`, the top 8 bits of
//! `(addr + port) × 0x61C88647 mod 2^32` (Knuth's 2^32/φ), as IPVS computes it.
//!
//! When the bucket's server is unavailable (weight 0 or overloaded) there is no
//! pick, unless the `sh-fallback` option ([`SchedOptions::fallback`]) is set:
//! then the key is rehashed with a rotating offset, the k-th retry (k = 0 ‥
//! 255) looking at bucket `hash_32(key + ((h + k) mod 256), 8)` for home
//! bucket `h`, and the first available owner wins; should all 256 retries
//! miss, the buckets are scanned in order, so a pick is found whenever some
//! available server owns a bucket.
//!
//! This departs from IPVS in one detail: IPVS adds the rotating offset
//! *after* hashing (`(h + offset) mod 256`), which walks the buckets linearly
//! from `2h`; with tables filled round robin, all the keys of an unavailable
//! server then land on the one server that follows it. Hashing `key + offset`
//! instead spreads them over the available servers in proportion to their
//! buckets, as `mh` (whose IPVS fallback does rehash) does.
//!
//! The table is built in the constructor; a change of weights or servers
//! rebuilds the scheduler (IPVS rebuilds on every change as well).
//!
//! [`HashFields::SrcAddrPort`]: super::HashFields::SrcAddrPort
//! [`SchedOptions::fallback`]: super::SchedOptions::fallback

use super::common::{addr_fold, hash_32};
use super::SchedFlow;
use super::{Candidates, HashFields, SchedOptions, Scheduler};
use crate::snapshot::RealServer;

/// log2 of the number of buckets of the `sh` and `dh` tables.
pub const HASH_TAB_BITS: u32 = 8;
/// Number of buckets of the `sh` and `dh` tables (IPVS's default, 256).
pub const HASH_TAB_SIZE: usize = 1 << HASH_TAB_BITS;

const NO_SERVER: u16 = u16::MAX;

/// A 256-bucket table, each bucket naming a real server (index) or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Buckets {
    owner: [u16; HASH_TAB_SIZE],
}

impl Buckets {
    /// `sh`'s fill: each server in turn takes `max(weight, 1)` consecutive buckets.
    pub(crate) fn weighted(reals: &[RealServer]) -> Self {
        let mut owner = [NO_SERVER; HASH_TAB_SIZE];
        if !reals.is_empty() {
            let (mut server, mut taken) = (0usize, 0u32);
            for slot in owner.iter_mut() {
                // At most 256 servers are ever reached, so the index fits in u16.
                *slot = server as u16;
                taken += 1;
                if taken >= reals[server].weight {
                    server = (server + 1) % reals.len();
                    taken = 0;
                }
            }
        }
        Buckets { owner }
    }

    /// `dh`'s fill: bucket `b` belongs to server `b mod n`, weights ignored.
    pub(crate) fn round_robin(reals: &[RealServer]) -> Self {
        let mut owner = [NO_SERVER; HASH_TAB_SIZE];
        if !reals.is_empty() {
            for (b, slot) in owner.iter_mut().enumerate() {
                *slot = (b % reals.len()) as u16;
            }
        }
        Buckets { owner }
    }

    /// The server owning bucket `b`, if any.
    pub(crate) fn owner(&self, b: usize) -> Option<usize> {
        match self.owner.get(b) {
            Some(&NO_SERVER) | None => None,
            Some(&i) => Some(usize::from(i)),
        }
    }

    /// The bucket of a 32-bit key.
    pub(crate) fn bucket(key: u32) -> usize {
        hash_32(key, HASH_TAB_BITS) as usize
    }

    /// The server for `key`: the home bucket's owner if available; otherwise,
    /// with `fallback`, the first available owner along the retry sequence
    /// (rehashes of `key` + offset, then every bucket in order).
    pub(crate) fn lookup(&self, c: &Candidates<'_>, key: u32, fallback: bool) -> Option<usize> {
        let home = Self::bucket(key);
        let first = self.owner(home)?;
        if c.available(first) {
            return Some(first);
        }
        if !fallback || !(0..c.len()).any(|i| c.available(i)) {
            return None;
        }
        let rehashed = (0..HASH_TAB_SIZE).map(|k| Self::bucket(key.wrapping_add(((home + k) % HASH_TAB_SIZE) as u32)));
        rehashed.chain(0..HASH_TAB_SIZE).filter_map(|b| self.owner(b)).find(|&i| c.available(i))
    }

    /// Buckets per server (for tests).
    #[cfg(test)]
    pub(crate) fn shares(&self, n: usize) -> Vec<usize> {
        let mut s = vec![0; n];
        for b in 0..HASH_TAB_SIZE {
            if let Some(i) = self.owner(b) {
                s[i] += 1;
            }
        }
        s
    }
}

/// Source-hashing scheduler: the bucket table and the options.
#[derive(Debug)]
pub struct SourceHashing {
    buckets: Buckets,
    with_port: bool,
    fallback: bool,
}

impl SourceHashing {
    /// The table for `reals`; `options.hash` selects `sh-port`,
    /// `options.fallback` selects `sh-fallback`.
    pub fn new(reals: &[RealServer], options: &SchedOptions) -> Self {
        SourceHashing { buckets: Buckets::weighted(reals), with_port: options.hash == HashFields::SrcAddrPort, fallback: options.fallback }
    }
}

impl Scheduler for SourceHashing {
    fn pick(&mut self, c: &Candidates<'_>, flow: &dyn SchedFlow) -> Option<usize> {
        let port = if self.with_port { flow.sport() } else { 0 };
        let key = addr_fold(flow.src()).wrapping_add(u32::from(port));
        self.buckets.lookup(c, key, self.fallback)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::conn::FlowKey;
    use crate::sched::test_util::{counts, flow, flow_from, reals};
    use crate::sched::Candidates;

    fn opts(hash: HashFields, fallback: bool) -> SchedOptions {
        SchedOptions { hash, fallback, table_size: None }
    }

    /// Bucket shares computed independently of the fill loop: the pattern of
    /// one round (each server max(w,1) times) repeated and cut at 256.
    fn expected_shares(weights: &[u32]) -> Vec<usize> {
        let round: Vec<usize> = weights.iter().enumerate().flat_map(|(i, &w)| std::iter::repeat_n(i, w.max(1) as usize)).collect();
        let mut s = vec![0; weights.len()];
        for b in 0..HASH_TAB_SIZE {
            s[round[b % round.len()]] += 1;
        }
        s
    }

    #[test]
    fn weighted_bucket_shares_are_exact() {
        assert_eq!(Buckets::weighted(&reals(&[2, 1])).shares(2), vec![171, 85]);
        assert_eq!(Buckets::weighted(&reals(&[1, 1, 1])).shares(3), vec![86, 85, 85]);
        for w in [&[3u32, 1, 0, 2][..], &[5, 7], &[1; 7], &[255, 1], &[300, 1]] {
            assert_eq!(Buckets::weighted(&reals(w)).shares(w.len()), expected_shares(w), "weights {w:?}");
        }
        // A weight of 256 or more takes the whole table (as in IPVS).
        assert_eq!(Buckets::weighted(&reals(&[300, 1])).shares(2), vec![256, 0]);
    }

    #[test]
    fn home_bucket_is_knuth_hash_of_source() {
        // 10.0.0.2 = 0x0A000002; × 0x61C88647 mod 2^32, top 8 bits, by hand:
        let key = u32::from(Ipv4Addr::new(10, 0, 0, 2));
        let expect = (u64::from(key) * 0x61C8_8647 % (1 << 32)) >> 24;
        assert_eq!(Buckets::bucket(key) as u64, expect);
    }

    #[test]
    fn same_source_same_server_across_calls_and_instances() {
        let rs = reals(&[3, 1, 2]);
        let mut a = SourceHashing::new(&rs, &SchedOptions::default());
        let c = Candidates::idle(&rs);
        for n in 0..500u32 {
            let f = flow_from(Ipv4Addr::from(0x0A00_0000 + n * 7919), (n % 60_000) as u16);
            let first = a.pick(&c, &f);
            assert!(first.is_some());
            assert_eq!(a.pick(&c, &f), first);
            assert_eq!(SourceHashing::new(&rs, &SchedOptions::default()).pick(&c, &f), first);
            // Without sh-port the source port does not matter.
            let other_port = FlowKey { sport: f.sport.wrapping_add(1), ..f };
            assert_eq!(a.pick(&c, &other_port), first);
        }
    }

    #[test]
    fn sh_port_spreads_one_source_over_servers() {
        let rs = reals(&[1, 1, 1, 1]);
        let mut s = SourceHashing::new(&rs, &opts(HashFields::SrcAddrPort, false));
        let mut seen = [0usize; 4];
        for p in 0..4096u16 {
            seen[s.pick(&Candidates::idle(&rs), &flow(p)).unwrap_or(9)] += 1;
        }
        // Consecutive ports walk consecutive keys: every server is used, about evenly.
        assert!(seen.iter().all(|&n| (900..1150).contains(&n)), "{seen:?}");
    }

    #[test]
    fn unavailable_owner_without_and_with_fallback() {
        let rs = reals(&[1, 1, 1]);
        let down = counts(&rs, &[0; 3], &[0; 3], &[false, true, false]);
        let mut plain = SourceHashing::new(&rs, &SchedOptions::default());
        let mut fb = SourceHashing::new(&rs, &opts(HashFields::SrcAddr, true));
        let mut moved_to = [0usize; 3];
        for n in 0..3000u32 {
            let f = flow_from(Ipv4Addr::from(0xC0A8_0000 + n), 1234);
            let home = plain.pick(&Candidates::idle(&rs), &f);
            if home == Some(1) {
                assert_eq!(plain.pick(&down, &f), None, "no fallback: no pick");
                let alt = fb.pick(&down, &f).unwrap_or(9);
                assert!(alt == 0 || alt == 2);
                moved_to[alt] += 1;
            } else {
                // Keys of available servers stay put in both modes.
                assert_eq!(plain.pick(&down, &f), home);
                assert_eq!(fb.pick(&down, &f), home);
            }
        }
        // The displaced keys land on both survivors.
        assert!(moved_to[0] > 100 && moved_to[2] > 100, "{moved_to:?}");
    }
}
