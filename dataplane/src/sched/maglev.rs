//! Weighted Maglev consistent hashing (`maglev`, an rvs scheduler).
//!
//! For services that must send a client to the same real server on every node
//! of a cluster (ECMP in front of several directors, failover between them),
//! without sharing any state: the choice depends only on the client's address
//! (and optionally port) and on the list of real servers, through a table that
//! every node builds identically.
//!
//! **Table.** Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016, §3.4. The table has a prime number M of entries
//! (default [`MAGLEV_DEFAULT_TABLE_SIZE`] = 65537, or
//! [`SchedOptions::table_size`]). Each real server has a preference order over
//! the entries: `offset = h_off(server) mod M`, `skip = h_skip(server) mod
//! (M − 1) + 1`, its j-th choice being `(offset + j·skip) mod M`, which visits
//! every entry once because M is prime. The table is filled in rounds; in each
//! round the servers, in configuration order, claim their most preferred entry
//! still free, until the table is full.
//!
//! **Weights.** In each round a server earns `weight` credits and claims one
//! entry per `w_max` credits it holds (`w_max` = the largest weight), so the
//! heaviest servers claim an entry every round and a server of weight w every
//! `w_max / w` rounds: the number of entries of each server is its weighted
//! share of M to within one entry. Weight 0: no entry.
//!
//! **Hashes** (fixed, so tables agree across processes, machines and
//! versions): `h(addr, port, seed) = fmix64(FNV-1a-64(addr octets ‖ port
//! big-endian) ^ seed)` — FNV-1a over the 6 bytes, then MurmurHash3's 64-bit
//! finaliser to mix the bits — with one seed for offsets, one for skips and
//! one for client keys. The client key is the source address with port 0, or
//! the source address and port with [`HashFields::SrcAddrPort`]; its entry is
//! `h mod M`.
//!
//! **Unavailable servers** (weight 0 at pick time, or over their connection
//! threshold): the lookup moves on to the next table entries, `e + 1, e + 2,
//! …` (mod M), until one belongs to an available server. As the table is a
//! fine random interleaving, the keys of an unavailable server spread over
//! the others in proportion to their entries, and come back when it returns;
//! the other servers' keys do not move. No pick only when no server is
//! available.
//!
//! **Disruption.** Removing one of N servers frees its ≈ M/N entries, which
//! go to the others; the others keep nearly all of theirs (the tests measure
//! how many move for N = 10, M = 65537). The table is built only in the
//! constructor (2 bytes per entry: 128 KiB at the default size).
//!
//! [`SchedOptions::table_size`]: super::SchedOptions::table_size
//! [`HashFields::SrcAddrPort`]: super::HashFields::SrcAddrPort

use std::net::IpAddr;

use super::common::{endpoint_hash, table_size_or};
use super::SchedFlow;
use super::{Candidates, HashFields, LookupTable, SchedOptions, Scheduler};
use crate::snapshot::RealServer;

/// Default number of table entries (a prime; the Maglev paper's size).
pub const MAGLEV_DEFAULT_TABLE_SIZE: u32 = 65537;

const NO_SERVER: u16 = u16::MAX;
/// Seeds of the three hashes: offsets, skips, client keys.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_2d6f; // "maglev-o"
const SKIP_SEED: u64 = 0x6d61_676c_6576_2d73; // "maglev-s"
const KEY_SEED: u64 = 0x6d61_676c_6576_2d6b; // "maglev-k"

/// Weighted Maglev scheduler: the lookup table and the key fields.
#[derive(Debug)]
pub struct Maglev {
    /// Entry → real server index (`NO_SERVER` when no server has weight),
    /// shared read-only with every worker using the same snapshot.
    table: LookupTable,
    with_port: bool,
}

impl Maglev {
    /// A scheduler that builds its own table (see [`Maglev::build_table`]).
    pub fn new(reals: &[RealServer], options: &SchedOptions) -> Self {
        Maglev::with_table(Maglev::build_table(reals, options), options)
    }

    /// A scheduler over a table [`Maglev::build_table`] made for the same
    /// real servers and options (built once per snapshot, off the workers).
    pub fn with_table(table: LookupTable, options: &SchedOptions) -> Self {
        Maglev { table, with_port: options.hash == HashFields::SrcAddrPort }
    }

    /// The table for `reals`: size `options.table_size` (default
    /// [`MAGLEV_DEFAULT_TABLE_SIZE`]). Servers past index 65534 get no entries.
    pub fn build_table(reals: &[RealServer], options: &SchedOptions) -> LookupTable {
        let m = table_size_or(options.table_size, MAGLEV_DEFAULT_TABLE_SIZE);
        let usable = &reals[..reals.len().min(usize::from(NO_SERVER))];
        let mut table = vec![NO_SERVER; m];
        let w_max = u64::from(usable.iter().map(|r| r.weight).max().unwrap_or(0));
        if w_max > 0 {
            let m64 = m as u64;
            let mut next: Vec<usize> = Vec::with_capacity(usable.len());
            let mut skip: Vec<usize> = Vec::with_capacity(usable.len());
            for r in usable {
                next.push((endpoint_hash(r.addr, r.port, OFFSET_SEED) % m64) as usize);
                skip.push((endpoint_hash(r.addr, r.port, SKIP_SEED) % (m64 - 1) + 1) as usize);
            }
            let mut credit = vec![0u64; usable.len()];
            let mut filled = 0;
            'fill: loop {
                for (i, r) in usable.iter().enumerate() {
                    credit[i] += u64::from(r.weight);
                    if credit[i] < w_max {
                        continue;
                    }
                    credit[i] -= w_max;
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

    /// The table entry of a client (source address, and port when the key includes it).
    pub fn slot(&self, src: impl Into<IpAddr>, sport: u16) -> usize {
        let port = if self.with_port { sport } else { 0 };
        (endpoint_hash(src, port, KEY_SEED) % self.table.entries().len() as u64) as usize
    }
}

impl Scheduler for Maglev {
    fn pick(&mut self, c: &Candidates<'_>, flow: &dyn SchedFlow) -> Option<usize> {
        let home = self.slot(flow.src(), flow.sport());
        if let Some(i) = self.entry(home).filter(|&i| c.available(i)) {
            return Some(i);
        }
        if !(0..c.len()).any(|i| c.available(i)) {
            return None;
        }
        let m = self.table.entries().len();
        (1..m).filter_map(|k| self.entry((home + k) % m)).find(|&i| c.available(i))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::sched::common::{fnv1a64, SplitMix64};
    use crate::sched::test_util::{counts, flow_from, reals};
    use crate::sched::Candidates;

    fn shares(s: &Maglev, n: usize) -> Vec<usize> {
        let mut v = vec![0; n];
        for e in 0..s.table_size() {
            if let Some(i) = s.entry(e) {
                v[i] += 1;
            }
        }
        v
    }

    const MIXED: [u32; 10] = [1, 2, 3, 5, 8, 1, 2, 3, 5, 8];

    #[test]
    fn weighted_shares_within_one_percent() {
        for weights in [&[1u32; 10][..], &MIXED[..], &[100, 1, 50, 7, 3, 3, 20, 90, 64, 10][..]] {
            let s = Maglev::new(&reals(weights), &SchedOptions::default());
            let got = shares(&s, weights.len());
            let total: u32 = weights.iter().sum();
            let mut worst = 0.0f64;
            for (i, &w) in weights.iter().enumerate() {
                let want = 65537.0 * f64::from(w) / f64::from(total);
                let over = (got[i] as f64 - want) / want;
                worst = worst.max(over.abs());
                assert!(over.abs() < 0.01, "weights {weights:?}: server {i} has {} entries, share {want:.1}", got[i]);
            }
            eprintln!("maglev balance, weights {weights:?}: worst deviation from weighted share {:.4}%", worst * 100.0);
        }
    }

    #[test]
    fn client_keys_follow_the_weighted_shares() {
        let rs = reals(&MIXED);
        let mut s = Maglev::new(&rs, &SchedOptions::default());
        let mut rng = SplitMix64::new(1);
        let mut seen = [0u32; 10];
        let n = 400_000;
        for _ in 0..n {
            let f = flow_from(Ipv4Addr::from(rng.next_u64() as u32), 0);
            seen[s.pick(&Candidates::idle(&rs), &f).unwrap_or(0)] += 1;
        }
        let total: u32 = MIXED.iter().sum();
        for (i, &w) in MIXED.iter().enumerate() {
            let want = f64::from(n) * f64::from(w) / f64::from(total);
            assert!((f64::from(seen[i]) - want).abs() / want < 0.04, "server {i}: {} keys, expected {want:.0}", seen[i]);
        }
    }

    /// Fraction of all entries whose server changes, and fraction of the
    /// entries held by surviving servers that change, when server `gone`
    /// leaves (compared by address, since indices shift).
    fn disruption(weights: &[u32], gone: usize) -> (f64, f64) {
        let before_rs = reals(weights);
        let after_rs: Vec<RealServer> = before_rs.iter().enumerate().filter(|&(i, _)| i != gone).map(|(_, r)| *r).collect();
        let before = Maglev::new(&before_rs, &SchedOptions::default());
        let after = Maglev::new(&after_rs, &SchedOptions::default());
        let (mut moved, mut survivors, mut survivors_moved) = (0usize, 0usize, 0usize);
        for e in 0..before.table_size() {
            let old = before.entry(e).map(|i| before_rs[i].addr);
            let new = after.entry(e).map(|i| after_rs[i].addr);
            if old != new {
                moved += 1;
            }
            if old != Some(before_rs[gone].addr) {
                survivors += 1;
                if old != new {
                    survivors_moved += 1;
                }
            }
        }
        (moved as f64 / before.table_size() as f64, survivors_moved as f64 / survivors as f64)
    }

    #[test]
    fn one_of_ten_leaving_moves_about_a_tenth() {
        // The Maglev paper (NSDI 2016, §3.4 and evaluation) reports small
        // disruption when M ≫ N (it asks M > 100·N, which also bounds share
        // imbalance by 1 %): about 1/N of entries move, and entries of the
        // surviving backends only rarely. We require < 2 % of theirs to move.
        for gone in [0, 4, 9] {
            let (total, survivors) = disruption(&[1; 10], gone);
            eprintln!(
                "maglev equal weights, server {gone} leaves: {:.2}% of entries move, {:.3}% of survivors' entries",
                total * 100.0,
                survivors * 100.0
            );
            assert!((0.095..0.13).contains(&total), "{total}");
            assert!(survivors < 0.02, "{survivors}");
        }
        for gone in [0, 4] {
            let (total, survivors) = disruption(&MIXED, gone);
            let share = f64::from(MIXED[gone]) / f64::from(MIXED.iter().sum::<u32>());
            eprintln!(
                "maglev mixed weights, server {gone} (share {:.2}%) leaves: {:.2}% move, {:.3}% of survivors' entries",
                share * 100.0,
                total * 100.0,
                survivors * 100.0
            );
            assert!(total < share + 0.03, "{total}");
            assert!(survivors < 0.03, "{survivors}");
        }
    }

    #[test]
    fn identical_tables_from_independent_builds() {
        let rs = reals(&MIXED);
        let (a, b) = (Maglev::new(&rs, &SchedOptions::default()), Maglev::new(&rs, &SchedOptions::default()));
        assert_eq!(a.table, b.table);
        // Pinned: a change here changes which server clients reach across a
        // cluster running mixed versions. FNV-1a over the table's bytes.
        let bytes: Vec<u8> = a.table.entries().iter().flat_map(|e| e.to_le_bytes()).collect();
        assert_eq!(fnv1a64(&bytes), PINNED_TABLE_HASH, "maglev table changed: {:#x}", fnv1a64(&bytes));
    }

    const PINNED_TABLE_HASH: u64 = 0x6a7b_fe67_9ca4_22aa;

    #[test]
    fn unavailable_server_keys_go_to_the_next_entries_others_stay() {
        let rs = reals(&[1, 1, 1, 1]);
        let mut s = Maglev::new(&rs, &SchedOptions::default());
        let down = counts(&rs, &[0; 4], &[0; 4], &[false, true, false, false]);
        let mut moved = [0usize; 4];
        for n in 0..8000u32 {
            let f = flow_from(Ipv4Addr::from(0x0B00_0000 + n * 101), 9);
            let home = s.pick(&Candidates::idle(&rs), &f);
            let now = s.pick(&down, &f);
            if home == Some(1) {
                let e = s.slot(f.src, f.sport);
                let next = (1..).map(|k| s.entry((e + k) % 65537)).find(|&o| o != Some(1)).flatten();
                assert_eq!(now, next);
                moved[now.unwrap_or(1)] += 1;
            } else {
                assert_eq!(now, home);
            }
        }
        assert!(moved[0] > 400 && moved[2] > 400 && moved[3] > 400, "{moved:?}");
        let none = counts(&rs, &[0; 4], &[0; 4], &[true; 4]);
        assert_eq!(s.pick(&none, &flow_from(Ipv4Addr::new(1, 2, 3, 4), 5)), None);
    }

    #[test]
    fn key_fields_and_custom_table_size() {
        let rs = reals(&[1, 1, 1]);
        let opts = SchedOptions { hash: HashFields::SrcAddrPort, fallback: false, table_size: Some(251) };
        let mut s = Maglev::new(&rs, &opts);
        assert_eq!(s.table_size(), 251);
        assert_eq!(shares(&s, 3), vec![84, 84, 83]);
        let mut per_server = [0usize; 3];
        for p in 0..3000u16 {
            per_server[s.pick(&Candidates::idle(&rs), &flow_from(Ipv4Addr::new(10, 0, 0, 2), p)).unwrap_or(0)] += 1;
        }
        assert!(per_server.iter().all(|&n| n > 800), "{per_server:?}");
        // A table size that is not prime falls back to the default.
        let bad = Maglev::new(&rs, &SchedOptions { table_size: Some(1000), ..Default::default() });
        assert_eq!(bad.table_size(), 65537);
    }
}
