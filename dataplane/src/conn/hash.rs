//! The flow-key hash of a connection table, per address family.
//!
//! Both families use the same scheme: the key is packed into two words `a`
//! and `b`, then hashed as `fold(fold(a ^ s0, b ^ s1), s2 | 1)`, where
//! `fold` multiplies to 128 bits and xors the halves and `s0..s2` are random
//! seeds of the table. IPv4 packs its 13-byte key directly; IPv6 first folds
//! each 16-byte address to one word with two more seeds of its own.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::FlowKey;

/// How many seeds a table draws: three for the chain both families use, four
/// more for folding IPv6 addresses.
const SEED_COUNT: usize = 7;

/// The random seeds of a table's flow-key hash.
#[derive(Clone, Copy, Debug)]
pub struct Seeds([u64; SEED_COUNT]);

impl Seeds {
    /// Fresh random seeds: std's `RandomState` keys (random per process,
    /// different per instance) through SipHash.
    pub fn random() -> Self {
        let state = RandomState::new();
        let mut seeds = [0u64; SEED_COUNT];
        for (i, s) in (0u64..).zip(seeds.iter_mut()) {
            *s = state.hash_one(i);
        }
        Seeds(seeds)
    }
}

/// `a × b` in 128 bits, folded to 64 by xoring the halves.
#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The chain both families end with: `fold(fold(a ^ s0, b ^ s1), s2 | 1)`.
#[inline(always)]
fn chain(seeds: &Seeds, a: u64, b: u64) -> u64 {
    let [s0, s1, s2, ..] = seeds.0;
    folded_multiply(folded_multiply(a ^ s0, b ^ s1), s2 | 1)
}

/// The protocol and ports of a key in the low 40 bits of a word.
#[inline(always)]
fn ports_word<A>(key: &FlowKey<A>) -> u64 {
    u64::from(key.sport) << 24 | u64::from(key.dport) << 8 | u64::from(key.proto)
}

mod sealed {
    /// Only the two IP address types are flow-key addresses.
    pub trait Sealed {}
    impl Sealed for std::net::Ipv4Addr {}
    impl Sealed for std::net::Ipv6Addr {}
}

/// An IP address type a connection table files flow keys by: [`Ipv4Addr`]
/// or [`Ipv6Addr`] (sealed).
pub trait FlowAddr: Copy + Eq + std::fmt::Debug + std::hash::Hash + sealed::Sealed {
    /// The hash of `key` under a table's `seeds`.
    fn hash_key(key: &FlowKey<Self>, seeds: &Seeds) -> u64;
}

impl FlowAddr for Ipv4Addr {
    /// The 13-byte key packed into `a = src << 32 | dst` and
    /// `b = sport << 24 | dport << 8 | proto`, then the chain.
    ///
    /// One folded multiply alone (what hashbrown's default hasher, foldhash,
    /// does with a key this short) is cheaper, 6.4–6.7 ns against 8–9.6 ns per
    /// hash in a dependent chain and 1.5 against 2.0 ns for independent keys,
    /// but spreads keys that differ in a few bits badly for some seeds: 65536
    /// keys that differ only in the client port, or only in the low 16 bits of
    /// the client address, took as few as 4–10 % of the buckets random keys
    /// take 31 % of, so crafted sources (a SYN flood from a sequential range)
    /// would build long probe clusters. Two independent multiplies xored
    /// spread the homes but not the tags. Chained, homes and tags spread like
    /// random keys for every one of 200 seeds tried (a test checks eight).
    #[inline(always)]
    fn hash_key(key: &FlowKey<Self>, seeds: &Seeds) -> u64 {
        let a = u64::from(key.src.to_bits()) << 32 | u64::from(key.dst.to_bits());
        chain(seeds, a, ports_word(key))
    }
}

impl FlowAddr for Ipv6Addr {
    /// The 37-byte key folded into two words: `a`, the source address
    /// folded with seeds s3 and s4 (`fold(high ^ s3, low ^ s4)`), and `b`,
    /// the destination folded the same way with s5 and s6, xored with the
    /// protocol and ports word of the IPv4 hash; then the IPv4 chain.
    ///
    /// The two address folds are independent (they run side by side), so a
    /// hash costs one multiply more in a dependent chain than an IPv4 one.
    /// Keys that differ only in the ports reach the chain exactly as IPv4
    /// keys do; keys that differ only in some bits of an address (high or
    /// low half, a sequential range or a /48 an attacker owns) reach it as
    /// distinct unpredictable words. A test checks both spread like random
    /// keys.
    #[inline(always)]
    fn hash_key(key: &FlowKey<Self>, seeds: &Seeds) -> u64 {
        let [_, _, _, s3, s4, s5, s6] = seeds.0;
        let (src, dst) = (key.src.to_bits(), key.dst.to_bits());
        let a = folded_multiply((src >> 64) as u64 ^ s3, src as u64 ^ s4);
        let b = folded_multiply((dst >> 64) as u64 ^ s5, dst as u64 ^ s6);
        chain(seeds, a, b ^ ports_word(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a × b` folded, written out with the halves of the operands (not
    /// through u128), so the test does not repeat the code it checks.
    fn fold_by_halves(a: u64, b: u64) -> u64 {
        let (al, ah, bl, bh) = (a & 0xffff_ffff, a >> 32, b & 0xffff_ffff, b >> 32);
        let (ll, lh, hl, hh) = (al * bl, al * bh, ah * bl, ah * bh);
        let mid = (ll >> 32) + (lh & 0xffff_ffff) + (hl & 0xffff_ffff);
        let low = (ll & 0xffff_ffff) | (mid << 32);
        let high = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
        low ^ high
    }

    #[test]
    fn the_ipv4_hash_is_the_documented_chain_over_the_packed_key() {
        let seeds = Seeds::random();
        let [s0, s1, s2, ..] = seeds.0;
        let key = FlowKey { proto: 17, src: Ipv4Addr::new(198, 51, 100, 7), dst: Ipv4Addr::new(203, 0, 113, 10), sport: 51000, dport: 443 };
        let a = 0xc633_6407_cb00_710a_u64;
        let b = 51000u64 << 24 | 443 << 8 | 17;
        assert_eq!(Ipv4Addr::hash_key(&key, &seeds), fold_by_halves(fold_by_halves(a ^ s0, b ^ s1), s2 | 1));
        assert_eq!(fold_by_halves(u64::MAX, u64::MAX), (1u128 ^ (u64::MAX - 1) as u128) as u64, "(2^64 - 1)^2 = 2^128 - 2^65 + 1");
    }

    #[test]
    fn the_ipv6_hash_folds_each_address_then_runs_the_chain() {
        let seeds = Seeds::random();
        let [s0, s1, s2, s3, s4, s5, s6] = seeds.0;
        let src: Ipv6Addr = "2001:db8:1:2:3:4:5:6".parse().expect("address");
        let dst: Ipv6Addr = "2001:db8:ffff::a".parse().expect("address");
        let key = FlowKey { proto: 6, src, dst, sport: 40000, dport: 80 };
        let a = fold_by_halves(0x2001_0db8_0001_0002 ^ s3, 0x0003_0004_0005_0006 ^ s4);
        let b = fold_by_halves(0x2001_0db8_ffff_0000 ^ s5, 0x0000_0000_0000_000a ^ s6) ^ (40000u64 << 24 | 80 << 8 | 6);
        assert_eq!(Ipv6Addr::hash_key(&key, &seeds), fold_by_halves(fold_by_halves(a ^ s0, b ^ s1), s2 | 1));
        // Every byte of the 37 counts, and source and destination are not interchangeable.
        let h = Ipv6Addr::hash_key(&key, &seeds);
        for i in 0..16 {
            let flip = |x: Ipv6Addr| {
                let mut o = x.octets();
                o[i] ^= 0x80;
                Ipv6Addr::from(o)
            };
            assert_ne!(Ipv6Addr::hash_key(&FlowKey { src: flip(src), ..key }, &seeds), h, "source byte {i}");
            assert_ne!(Ipv6Addr::hash_key(&FlowKey { dst: flip(dst), ..key }, &seeds), h, "destination byte {i}");
        }
        assert_ne!(Ipv6Addr::hash_key(&FlowKey { sport: 80, dport: 40000, ..key }, &seeds), h);
        assert_ne!(Ipv6Addr::hash_key(&FlowKey { proto: 17, ..key }, &seeds), h);
        assert_ne!(Ipv6Addr::hash_key(&FlowKey { src: dst, dst: src, ..key }, &seeds), h);
    }
}
