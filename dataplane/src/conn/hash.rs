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
