//! IPVS's Maglev hashing (IPVS `mh`).
//!
//! IPVS's algorithm (after Eisenbud et al., "Maglev", NSDI 2016, §3.4): a
//! lookup table of prime size M (IPVS's default 4093; IPVS can be built with
//! 251, 509, …, 131071; here any prime up to [`MAX_TABLE_SIZE`] via
//! [`SchedOptions::table_size`]). Each real server has a preference order over
//! the table: `offset = h1(server) mod M`, `skip = h2(server) mod (M − 1) + 1`,
//! its j-th preferred entry being `(offset + j·skip) mod M` — a permutation of
//! the entries since M is prime. The table is filled in rounds: in each round
//! every server, in order, claims `turns` entries, each its most preferred
//! entry still free, until all M entries are taken.
//!
//! Weights, as IPVS handles them: divided by their gcd, then shifted right by
//! `s = max(0, bits(max weight / gcd) − ⌈log2 M⌉ / 2)` so that a round stays
//! small (IPVS's `IP_VS_MH_TAB_BITS`, 6 for 4093); `turns = (weight / gcd) >> s`,
//! at least 1 for a non-zero weight, 0 for weight 0 (no entries). Shares are
//! thus proportional to the weights up to that rounding.
//!
//! A connection's entry is `h1(source address + port) mod M` (port 0 unless the
//! `mh-port` option, [`HashFields::SrcAddrPort`]; address and port are summed
//! as one 32-bit word, as IPVS does). If the entry's server is unavailable
//! (weight 0 or overloaded) there is no pick, unless `mh-fallback`
//! ([`SchedOptions::fallback`]): then the key is rehashed with the rotating
//! offset `r = (home + k) mod M` added to it, k = 0, 1, …, up to M tries, and
//! the first available server found wins.
//!
//! Hashes: IPVS uses SipHash with fixed keys; here `h1`, `h2` are
//! `fmix64(v ^ seed)` (MurmurHash3's finaliser) with two fixed seeds, so the
//! table is deterministic but differs from the kernel's.
//!
//! The table (2 bytes per entry) is built in the constructor. IPVS builds it
//! from each server's last non-zero weight, so quiescing a server (weight 0)
//! keeps the table; here a weight change rebuilds the scheduler, and a
//! quiesced server gives its entries up (consistent hashing keeps the other
//! servers' keys mostly in place).
//!
//! [`MAX_TABLE_SIZE`]: super::MAX_TABLE_SIZE
//! [`SchedOptions::table_size`]: super::SchedOptions::table_size
//! [`SchedOptions::fallback`]: super::SchedOptions::fallback
//! [`HashFields::SrcAddrPort`]: super::HashFields::SrcAddrPort

use super::common::{addr_fold, gcd, table_size_or, word_hash};
use super::SchedFlow;
use super::{Candidates, HashFields, LookupTable, SchedOptions, Scheduler};
use crate::snapshot::RealServer;

/// IPVS's default `mh` table size (`CONFIG_IP_VS_MH_TAB_INDEX` 12: 4093).
pub const MH_DEFAULT_TABLE_SIZE: u32 = 4093;

const NO_SERVER: u16 = u16::MAX;
/// Seed of `h1` (server offsets and key lookups).
const SEED_1: u64 = 0x6d68_2d68_6173_6831; // "mh-hash1"
/// Seed of `h2` (server skips).
const SEED_2: u64 = 0x6d68_2d68_6173_6832; // "mh-hash2"

/// `mh` scheduler: the lookup table and the options.
#[derive(Debug)]
pub struct MaglevHashing {
    /// Entry → real server index (`NO_SERVER` when the service has no weight),
    /// shared read-only with every worker using the same snapshot.
    table: LookupTable,
    with_port: bool,
    fallback: bool,
}

/// ⌈log2 m⌉ / 2: IPVS's `IP_VS_MH_TAB_BITS` for its primes (just under 2^k).
fn tab_bits(m: usize) -> u32 {
    (usize::BITS - (m.saturating_sub(1)).leading_zeros()) / 2
}

impl MaglevHashing {
    /// A scheduler that builds its own table (see [`MaglevHashing::build_table`]):
    /// `mh-port` from `options.hash`, `mh-fallback` from `options.fallback`.
    pub fn new(reals: &[RealServer], options: &SchedOptions) -> Self {
        MaglevHashing::with_table(MaglevHashing::build_table(reals, options), options)
    }

    /// A scheduler over a table [`MaglevHashing::build_table`] made for the
    /// same real servers and options (built once per snapshot, off the workers).
    pub fn with_table(table: LookupTable, options: &SchedOptions) -> Self {
        MaglevHashing { table, with_port: options.hash == HashFields::SrcAddrPort, fallback: options.fallback }
    }

    /// The table for `reals`: size `options.table_size` (default
    /// [`MH_DEFAULT_TABLE_SIZE`]). Servers past index 65534 get no entries.
    pub fn build_table(reals: &[RealServer], options: &SchedOptions) -> LookupTable {
        let m = table_size_or(options.table_size, MH_DEFAULT_TABLE_SIZE);
        let usable = &reals[..reals.len().min(usize::from(NO_SERVER))];
        let mut table = vec![NO_SERVER; m];
        let g = usable.iter().map(|r| r.weight).filter(|&w| w > 0).fold(0, gcd);
        if g > 0 {
            let max = usable.iter().map(|r| r.weight / g).max().unwrap_or(1);
            let shift = (u32::BITS - max.leading_zeros()).saturating_sub(tab_bits(m));
            let turns: Vec<u32> = usable.iter().map(|r| if r.weight == 0 { 0 } else { ((r.weight / g) >> shift).max(1) }).collect();
            let m32 = m as u64;
            let mut next: Vec<usize> = Vec::with_capacity(usable.len());
            let mut skip: Vec<usize> = Vec::with_capacity(usable.len());
            for r in usable {
                let v = addr_fold(r.addr).wrapping_add(u32::from(r.port));
                next.push((word_hash(v, SEED_1) % m32) as usize);
                skip.push((word_hash(v, SEED_2) % (m32 - 1) + 1) as usize);
            }
            let mut filled = 0;
            'fill: loop {
                for (i, &t) in turns.iter().enumerate() {
                    for _ in 0..t {
                        let mut pos = next[i];
                        while table[pos] != NO_SERVER {
                            pos = (pos + skip[i]) % m;
                        }
                        next[i] = pos;
                        table[pos] = i as u16;
                        filled += 1;
                        if filled == m {
                            break 'fill;
                        }
                    }
                }
            }
        }
        LookupTable::new(table)
    }

    /// Number of table entries (the prime M).
    pub fn table_size(&self) -> usize {
        self.table.entries().len()
    }

    /// The real server (index) owning table entry `e`.
    pub fn entry(&self, e: usize) -> Option<usize> {
        match self.table.entries().get(e) {
            Some(&NO_SERVER) | None => None,
            Some(&i) => Some(usize::from(i)),
        }
    }

    fn slot(&self, v: u32) -> usize {
        (word_hash(v, SEED_1) % self.table.entries().len() as u64) as usize
    }
}

impl Scheduler for MaglevHashing {
    fn pick(&mut self, c: &Candidates<'_>, flow: &dyn SchedFlow) -> Option<usize> {
        let port = if self.with_port { flow.sport() } else { 0 };
        let v = addr_fold(flow.src()).wrapping_add(u32::from(port));
        let home = self.slot(v);
        let first = self.entry(home)?;
        if c.available(first) {
            return Some(first);
        }
        if !self.fallback || !(0..c.len()).any(|i| c.available(i)) {
            return None;
        }
        let m = self.table.entries().len();
        for k in 0..m {
            let offset = ((home + k) % m) as u32;
            let i = self.entry(self.slot(v.wrapping_add(offset)))?;
            if c.available(i) {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::conn::FlowKey;
    use crate::sched::test_util::{counts, flow_from, reals};
    use crate::sched::Candidates;

    fn shares(s: &MaglevHashing, n: usize) -> Vec<usize> {
        let mut v = vec![0; n];
        for e in 0..s.table_size() {
            if let Some(i) = s.entry(e) {
                v[i] += 1;
            }
        }
        v
    }

    fn mh(weights: &[u32]) -> MaglevHashing {
        MaglevHashing::new(&reals(weights), &SchedOptions::default())
    }

    #[test]
    fn tab_bits_match_ipvs() {
        // IPVS: CONFIG_IP_VS_MH_TAB_INDEX k ↦ prime just under 2^k, bits k/2.
        for (m, bits) in [(251, 4), (509, 4), (1021, 5), (4093, 6), (65521, 8), (131071, 8)] {
            assert_eq!(tab_bits(m), bits, "{m}");
        }
    }

    #[test]
    fn turns_give_exact_shares() {
        // Shares worked out from the round structure: per round each server
        // takes `turns` entries, 4093 = rounds·(Σ turns) + rest, the rest going
        // to the servers in order.
        // 1:1:1:1 → 4093 = 4·1023 + 1.
        assert_eq!(shares(&mh(&[1, 1, 1, 1]), 4), vec![1024, 1023, 1023, 1023]);
        // 1:2 → turns 1, 2; 4093 = 3·1364 + 1 → A 1365, B 2728.
        assert_eq!(shares(&mh(&[1, 2]), 2), vec![1365, 2728]);
        // 100:50 → gcd 50 → turns 2, 1; rest 1 to A: A 2729, B 1364.
        assert_eq!(shares(&mh(&[100, 50]), 2), vec![2729, 1364]);
        // 1000:1 → max 1000 (10 bits) − 6 = shift 4: turns 62, max(0,1) = 1;
        // 4093 = 63·64 + 61 → A 62·64 + 61 = 4029, B 64.
        assert_eq!(shares(&mh(&[1000, 1]), 2), vec![4029, 64]);
        // Weight 0: no entries.
        assert_eq!(shares(&mh(&[1, 0, 1]), 3), vec![2047, 0, 2046]);
        assert_eq!(shares(&mh(&[0, 0]), 2), vec![0, 0]);
    }

    #[test]
    fn deterministic_and_stable() {
        let (a, b) = (mh(&[3, 1, 2, 5]), mh(&[3, 1, 2, 5]));
        assert_eq!(a.table, b.table);
        let rs = reals(&[3, 1, 2, 5]);
        let mut a = a;
        for n in 0..500u32 {
            let f = flow_from(Ipv4Addr::from(0x0A10_0000 + n * 13), n as u16);
            let p = a.pick(&Candidates::idle(&rs), &f);
            assert!(p.is_some());
            assert_eq!(p, a.pick(&Candidates::idle(&rs), &FlowKey { sport: 1, ..f }), "port ignored without mh-port");
        }
    }

    #[test]
    fn one_of_ten_leaving_moves_few_other_entries() {
        // 10 equal servers in IPVS's default 4093 entries (M ≈ 400·N): the
        // leaving server's tenth moves, the others' entries mostly stay.
        let before_rs = reals(&[1; 10]);
        let after_rs: Vec<RealServer> = before_rs.iter().enumerate().filter(|&(i, _)| i != 3).map(|(_, r)| *r).collect();
        let (before, after) = (mh(&[1; 10]), MaglevHashing::new(&after_rs, &SchedOptions::default()));
        let (mut moved, mut survivors, mut survivors_moved) = (0, 0, 0);
        for e in 0..before.table_size() {
            let old = before.entry(e).map(|i| before_rs[i].addr);
            let new = after.entry(e).map(|i| after_rs[i].addr);
            moved += usize::from(old != new);
            if old != Some(before_rs[3].addr) {
                survivors += 1;
                survivors_moved += usize::from(old != new);
            }
        }
        let (total, kept) = (moved as f64 / 4093.0, survivors_moved as f64 / f64::from(survivors));
        eprintln!("mh 4093 entries, 1 of 10 leaves: {:.2}% of entries move, {:.3}% of survivors' entries", total * 100.0, kept * 100.0);
        assert!((0.095..0.13).contains(&total), "{total}");
        assert!(kept < 0.03, "{kept}");
    }

    #[test]
    fn fallback_only_with_the_option() {
        let rs = reals(&[1, 1, 1]);
        let down = counts(&rs, &[0; 3], &[0; 3], &[false, false, true]);
        let mut plain = MaglevHashing::new(&rs, &SchedOptions::default());
        let mut fb = MaglevHashing::new(&rs, &SchedOptions { fallback: true, ..Default::default() });
        let mut moved = [0usize; 3];
        for n in 0..3000u32 {
            let f = flow_from(Ipv4Addr::from(0xAC10_0000 + n), 80);
            let home = plain.pick(&Candidates::idle(&rs), &f);
            if home == Some(2) {
                assert_eq!(plain.pick(&down, &f), None);
                moved[fb.pick(&down, &f).unwrap_or(2)] += 1;
            } else {
                assert_eq!(fb.pick(&down, &f), home);
            }
        }
        assert_eq!(moved[2], 0);
        assert!(moved[0] > 300 && moved[1] > 300, "{moved:?}");
    }

    #[test]
    fn mh_port_hashes_the_source_port() {
        let rs = reals(&[1, 1, 1, 1]);
        let mut s = MaglevHashing::new(&rs, &SchedOptions { hash: HashFields::SrcAddrPort, ..Default::default() });
        let mut seen = [0usize; 4];
        for p in 0..4000u16 {
            seen[s.pick(&Candidates::idle(&rs), &flow_from(Ipv4Addr::new(10, 0, 0, 2), p)).unwrap_or(0)] += 1;
        }
        assert!(seen.iter().all(|&n| (850..1150).contains(&n)), "{seen:?}");
    }
}
