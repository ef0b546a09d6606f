//! A rate bound on new connections per source prefix
//! (`syn_flood.new_conns_per_prefix_per_sec`, applied under pressure only).
//!
//! A fixed array of [`BUCKETS`] token buckets, allocated once with the
//! processor, indexed by a seeded hash of the client's prefix: no allocation
//! and no key stored. Prefixes whose hashes collide share a bucket (and its
//! rate); with [`BUCKETS`] buckets a random-source flood spreads over all of
//! them, so a bucket sees about `flood rate / BUCKETS` of it. The array
//! takes 256 KiB per worker (16-byte buckets).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Number of token buckets (a power of two).
pub(super) const BUCKETS: usize = 1 << 14;

/// Tokens are counted in thousandths, so a rate of `r` per second refills
/// `r` thousandths per millisecond exactly.
const MILLI: u64 = 1000;

/// [`Bucket::last_ms`] of a bucket never used: it starts full.
const NEVER: u64 = u64::MAX;

/// One prefix's bucket (16 bytes): tokens (in thousandths) as of `last_ms`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli_tokens: u64,
    last_ms: u64,
}

/// Token buckets per source prefix.
#[derive(Debug)]
pub(super) struct PrefixRate {
    buckets: Box<[Bucket]>,
    seed: u64,
}

impl Default for PrefixRate {
    fn default() -> Self {
        // Every bucket is written here, so the array is faulted in by the
        // thread that creates the processor, not on the packet path.
        let fresh = Bucket { milli_tokens: 0, last_ms: NEVER };
        PrefixRate { buckets: vec![fresh; BUCKETS].into_boxed_slice(), seed: RandomState::new().hash_one(0u64) | 1 }
    }
}

/// `addr` with all but its first `prefix_len` bits cleared (all of them for
/// 0, none for 32 or more).
pub(super) fn prefix_of(addr: Ipv4Addr, prefix_len: u8) -> u32 {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len.min(32))).unwrap_or(0);
    addr.to_bits() & mask
}

/// `addr` with all but its first `prefix_len` bits cleared (all of them for
/// 0, none for 128 or more).
pub(super) fn prefix_of6(addr: Ipv6Addr, prefix_len: u8) -> u128 {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len.min(128))).unwrap_or(0);
    addr.to_bits() & mask
}

/// The bucket key of `src`'s prefix: IPv4 prefixes as they are, IPv6 ones
/// folded to 64 bits and marked, so the families do not meet by design.
fn prefix_key(src: IpAddr, prefix_len: u8, prefix_len_ipv6: u8) -> u64 {
    match src {
        IpAddr::V4(a) => u64::from(prefix_of(a, prefix_len)),
        IpAddr::V6(a) => {
            let p = prefix_of6(a, prefix_len_ipv6);
            ((p >> 64) as u64 ^ (p as u64).rotate_left(29)) | 1 << 63
        }
    }
}

impl PrefixRate {
    /// The bucket of a prefix key: a seeded multiplicative hash, top bits.
    fn index(&self, key: u64) -> usize {
        let h = (key ^ (self.seed >> 32)).wrapping_mul(self.seed);
        (h >> (64 - BUCKETS.trailing_zeros())) as usize
    }

    /// Takes one token from the bucket of `src`'s prefix (`prefix_len` bits
    /// of an IPv4 address, `prefix_len_ipv6` of an IPv6 one), allowing
    /// `per_sec` new connections a second with a burst of one second's
    /// worth. False when the bucket is empty (the connection is over the
    /// rate). `per_sec` 0 allows everything.
    pub(super) fn admit(&mut self, src: IpAddr, (prefix_len, prefix_len_ipv6): (u8, u8), per_sec: u32, now_ms: u64) -> bool {
        if per_sec == 0 {
            return true;
        }
        let full = u64::from(per_sec) * MILLI;
        let i = self.index(prefix_key(src, prefix_len, prefix_len_ipv6));
        let Some(b) = self.buckets.get_mut(i) else { return true };
        if b.last_ms == NEVER {
            *b = Bucket { milli_tokens: full, last_ms: now_ms };
        }
        let elapsed = now_ms.saturating_sub(b.last_ms);
        b.milli_tokens = b.milli_tokens.saturating_add(elapsed.saturating_mul(u64::from(per_sec))).min(full);
        b.last_ms = b.last_ms.max(now_ms);
        if b.milli_tokens >= MILLI {
            b.milli_tokens -= MILLI;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 /24, IPv6 /64 (the defaults).
    const LENS: (u8, u8) = (24, 64);

    #[test]
    fn a_bucket_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<Bucket>(), 16);
    }

    #[test]
    fn prefixes_mask_their_host_bits() {
        let a = Ipv4Addr::new(198, 51, 100, 77);
        assert_eq!(prefix_of(a, 24), u32::from_be_bytes([198, 51, 100, 0]));
        assert_eq!(prefix_of(a, 16), u32::from_be_bytes([198, 51, 0, 0]));
        assert_eq!(prefix_of(a, 32), a.to_bits());
        assert_eq!(prefix_of(a, 40), a.to_bits());
        assert_eq!(prefix_of(a, 0), 0);
    }

    #[test]
    fn a_prefix_gets_a_burst_of_one_second_then_its_rate() {
        let mut r = PrefixRate::default();
        let src = Ipv4Addr::new(203, 0, 113, 9);
        let src = IpAddr::V4(src);
        let admitted = (0..150).filter(|_| r.admit(src, LENS, 100, 1_000)).count();
        assert_eq!(admitted, 100, "a burst of one second's worth");
        // Another host of the same /24 shares the bucket.
        assert!(!r.admit(Ipv4Addr::new(203, 0, 113, 200).into(), LENS, 100, 1_000));
        // 50 ms later: 5 more.
        let admitted = (0..20).filter(|_| r.admit(src, LENS, 100, 1_050)).count();
        assert_eq!(admitted, 5);
        // A long pause refills to the burst, not beyond.
        let admitted = (0..300).filter(|_| r.admit(src, LENS, 100, 60_000)).count();
        assert_eq!(admitted, 100);
        // Rate 0: no bound.
        assert!((0..1000).all(|_| r.admit(src, LENS, 0, 60_000)));
    }

    #[test]
    fn other_prefixes_keep_their_own_buckets() {
        let mut r = PrefixRate::default();
        let hot = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
        while r.admit(hot, LENS, 10, 5) {}
        // Of 200 other /24s, those that do not share the hot one's bucket are admitted.
        let hot_bucket = r.index(prefix_key(hot, 24, 64));
        for n in 0..200u32 {
            let other = IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 | n << 8 | 1));
            let shares = r.index(prefix_key(other, 24, 64)) == hot_bucket;
            assert_eq!(r.admit(other, LENS, 10, 5), !shares, "{other}");
        }
    }

    #[test]
    fn ipv6_clients_are_bounded_per_prefix_of_their_own_length() {
        let mut r = PrefixRate::default();
        let a: Ipv6Addr = "2001:db8:1:2::9".parse().expect("v6");
        let admitted = (0..30).filter(|_| r.admit(a.into(), LENS, 10, 1_000)).count();
        assert_eq!(admitted, 10, "a burst of one second's worth");
        // Another host of the same /64 shares the bucket; another /64 (almost surely) does not.
        assert!(!r.admit("2001:db8:1:2::ffff".parse::<Ipv6Addr>().expect("v6").into(), LENS, 10, 1_000));
        let other: Ipv6Addr = "2001:db8:1:3::9".parse().expect("v6");
        if r.index(prefix_key(other.into(), 24, 64)) != r.index(prefix_key(a.into(), 24, 64)) {
            assert!(r.admit(other.into(), LENS, 10, 1_000));
        }
        // With a /48 both /64s are one prefix.
        assert_eq!(prefix_key(a.into(), 24, 48), prefix_key(other.into(), 24, 48));
        assert_ne!(prefix_key(a.into(), 24, 64), prefix_key(other.into(), 24, 64));
        assert_eq!(prefix_of6(a, 0), 0);
        assert_eq!(prefix_of6(a, 128), a.to_bits());
    }
}
