//! Helpers shared by several schedulers: IPVS's connection overhead, the
//! weighted-least-connection comparison, the hash functions and the PRNG.
//!
//! Every hash here is written out explicitly (no `std` hasher, no random seed),
//! so a table built from the same real servers is identical in every process on
//! every machine, which the consistent-hash schedulers rely on.

use std::net::IpAddr;

use super::Candidates;

/// IPVS's connection overhead of real server `i`: `active × 256 + inactive`
/// (`ip_vs_dest_conn_overhead`: an active connection costs 256 inactive ones).
pub(crate) fn conn_overhead(c: &Candidates<'_>, i: usize) -> u64 {
    u64::from(c.active(i)) * 256 + u64::from(c.inactive(i))
}

/// The available server among `indices` with the lowest `overhead(i) / weight(i)`,
/// compared as IPVS does without division: `i` beats the current best `b` when
/// `overhead(b) × weight(i) > overhead(i) × weight(b)`. Ties keep the earlier
/// one in `indices`. Products are taken in `u128`, so they never overflow.
pub(crate) fn least_weighted(c: &Candidates<'_>, indices: impl Iterator<Item = usize>, overhead: impl Fn(usize) -> u64) -> Option<usize> {
    let mut best: Option<(usize, u64)> = None;
    for i in indices {
        if !c.available(i) {
            continue;
        }
        let oh = overhead(i);
        let better = match best {
            None => true,
            Some((b, boh)) => u128::from(boh) * u128::from(c.weight(i)) > u128::from(oh) * u128::from(c.weight(b)),
        };
        if better {
            best = Some((i, oh));
        }
    }
    best.map(|(i, _)| i)
}

/// IPVS's weighted least-connection pick over all servers (`wlc`, and the
/// fresh pick of `lblc` and `lblcr`).
pub(crate) fn wlc_pick(c: &Candidates<'_>) -> Option<usize> {
    least_weighted(c, 0..c.len(), |i| conn_overhead(c, i))
}

/// The "overloaded" rule of IPVS's `lblc` and `lblcr` (not the overload flag):
/// server `i` has more active connections than its weight while some server of
/// the service has fewer than half its weight (`2 × active < weight`).
pub(crate) fn locality_overloaded(c: &Candidates<'_>, i: usize) -> bool {
    c.active(i) > c.weight(i) && (0..c.len()).any(|j| u64::from(c.active(j)) * 2 < u64::from(c.weight(j)))
}

/// Greatest common divisor.
pub(crate) fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// True when `n` is prime (trial division; table sizes are at most 2^20).
pub(crate) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while u64::from(d) * u64::from(d) <= u64::from(n) {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// The Maglev table size to use: `requested` when it is a prime in
/// `2 ..= MAX_TABLE_SIZE`, `default` otherwise (configurations are checked by
/// [`validate_options`](super::validate_options) first; this keeps the
/// constructor infallible).
pub(crate) fn table_size_or(requested: Option<u32>, default: u32) -> usize {
    match requested {
        Some(m) if is_prime(m) && m <= super::MAX_TABLE_SIZE => m as usize,
        _ => default as usize,
    }
}

/// 2^32 / φ, Knuth's multiplicative-hashing constant (Linux's `GOLDEN_RATIO_32`).
pub(crate) const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// Knuth's multiplicative hash of `v` to `bits` bits (1 ..= 31): the top `bits`
/// bits of `v × 2^32/φ mod 2^32`, as Linux's `hash_32`. The top bits of the
/// product depend on every bit of `v`; the low ones only on `v`'s low bits.
pub(crate) fn hash_32(v: u32, bits: u32) -> u32 {
    v.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// FNV-1a, 64-bit: for each byte, xor it in, then multiply by the FNV prime
/// 2^40 + 2^8 + 0xb3, starting from the offset basis 0xcbf29ce484222325.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finaliser (`fmix64`): a bijection in which every input
/// bit flips each output bit with probability close to 1/2. Applied after
/// FNV-1a, whose output on 6-byte inputs is not well mixed in the low bits.
pub(crate) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Seeded hash of an endpoint: `fmix64(fnv1a64(address octets ‖ port_be) ^ seed)`
/// (4 address octets for IPv4, 16 for IPv6). Deterministic across processes,
/// machines and byte orders.
pub(crate) fn endpoint_hash(addr: impl Into<IpAddr>, port: u16, seed: u64) -> u64 {
    let mut bytes = [0u8; 18];
    let n = match addr.into() {
        IpAddr::V4(a) => {
            bytes[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            bytes[..16].copy_from_slice(&a.octets());
            16
        }
    };
    bytes[n..n + 2].copy_from_slice(&port.to_be_bytes());
    fmix64(fnv1a64(&bytes[..n + 2]) ^ seed)
}

/// An address as the 32-bit word IPVS's hashing schedulers (sh, dh, mh)
/// compute with: the IPv4 address itself, or an IPv6 address's four words
/// xored together (IPVS's `addr_fold`).
pub fn addr_fold(addr: impl Into<IpAddr>) -> u32 {
    match addr.into() {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let w = a.octets();
            (0..4).map(|i| u32::from_be_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]])).fold(0, |x, y| x ^ y)
        }
    }
}

/// Seeded hash of a 32-bit value: `fmix64(v ^ seed)` (for `mh`, which, like
/// IPVS, hashes the sum address + port + offset as one 32-bit word).
pub(crate) fn word_hash(v: u32, seed: u64) -> u64 {
    fmix64(u64::from(v) ^ seed)
}

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit counter stepped by the golden
/// gamma and passed through a mixing function. Small, fast, and good enough to
/// draw load-balancing choices; deterministic for a given seed.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), by Lemire's multiply-shift: the high half
    /// of `random × n` (bias below n / 2^64, negligible here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // FNV-1a published test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // fmix64 fixes 0 and is a bijection; hash_32 of 1 is the constant's top bits.
        assert_eq!(fmix64(0), 0);
        assert_eq!(hash_32(1, 8), GOLDEN_RATIO_32 >> 24);
        // SplitMix64 from seed 0: the reference implementation's first output.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn primes_and_gcd() {
        let primes: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65537) && is_prime(4093) && is_prime(251) && !is_prime(65535));
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(0, 5), 5);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            let x = r.below(5) as usize;
            seen[x] += 1;
        }
        assert!(seen.iter().all(|&n| (1_800..2_200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn ipv6_addresses_fold_to_one_word_as_ipvs_does() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        assert_eq!(addr_fold(Ipv4Addr::new(10, 0, 0, 2)), 0x0a00_0002, "IPv4: the address itself");
        // 2001:0db8:0000:0000:0000:0000:0000:0002 -> 0x20010db8 ^ 0 ^ 0 ^ 2.
        let a: Ipv6Addr = "2001:db8::2".parse().expect("v6");
        assert_eq!(addr_fold(a), 0x2001_0db8 ^ 2);
        // Endpoint hashes take all 16 bytes: clients differing in any word differ.
        let b: Ipv6Addr = "2001:db8:0:1::2".parse().expect("v6");
        assert_ne!(endpoint_hash(a, 80, 7), endpoint_hash(b, 80, 7));
        assert_eq!(endpoint_hash(Ipv4Addr::new(1, 2, 3, 4), 80, 7), endpoint_hash(std::net::IpAddr::from([1, 2, 3, 4]), 80, 7));
    }
}
