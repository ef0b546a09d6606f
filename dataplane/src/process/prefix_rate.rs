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
use std::net::Ipv4Addr;

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

impl PrefixRate {
    /// The bucket of a prefix: a seeded multiplicative hash, top bits.
    fn index(&self, prefix: u32) -> usize {
        let h = (u64::from(prefix) ^ (self.seed >> 32)).wrapping_mul(self.seed);
        (h >> (64 - BUCKETS.trailing_zeros())) as usize
    }

    /// Takes one token from the bucket of `src`'s `prefix_len` prefix,
    /// allowing `per_sec` new connections a second with a burst of one
    /// second's worth. False when the bucket is empty (the connection is over
    /// the rate). `per_sec` 0 allows everything.
    pub(super) fn admit(&mut self, src: Ipv4Addr, prefix_len: u8, per_sec: u32, now_ms: u64) -> bool {
        if per_sec == 0 {
            return true;
        }
        let full = u64::from(per_sec) * MILLI;
        let i = self.index(prefix_of(src, prefix_len));
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
        let admitted = (0..150).filter(|_| r.admit(src, 24, 100, 1_000)).count();
        assert_eq!(admitted, 100, "a burst of one second's worth");
        // Another host of the same /24 shares the bucket.
        assert!(!r.admit(Ipv4Addr::new(203, 0, 113, 200), 24, 100, 1_000));
        // 50 ms later: 5 more.
        let admitted = (0..20).filter(|_| r.admit(src, 24, 100, 1_050)).count();
        assert_eq!(admitted, 5);
        // A long pause refills to the burst, not beyond.
        let admitted = (0..300).filter(|_| r.admit(src, 24, 100, 60_000)).count();
        assert_eq!(admitted, 100);
        // Rate 0: no bound.
        assert!((0..1000).all(|_| r.admit(src, 24, 0, 60_000)));
    }

    #[test]
    fn other_prefixes_keep_their_own_buckets() {
        let mut r = PrefixRate::default();
        let hot = Ipv4Addr::new(203, 0, 113, 9);
        while r.admit(hot, 24, 10, 5) {}
        // Of 200 other /24s, those that do not share the hot one's bucket are admitted.
        let hot_bucket = r.index(prefix_of(hot, 24));
        for n in 0..200u32 {
            let other = Ipv4Addr::from_bits(0x0a00_0000 | n << 8 | 1);
            let shares = r.index(prefix_of(other, 24)) == hot_bucket;
            assert_eq!(r.admit(other, 24, 10, 5), !shares, "{other}");
        }
    }
}
