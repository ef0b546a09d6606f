//! The flow-key index of a connection table: open addressing with linear
//! probing over 4-byte entries that hold no key.
//!
//! An entry is a connection id and a direction (the caller's 25-bit value)
//! plus 7 bits of the key's hash, so most probes that are not the key are
//! told apart without reading its connection; 0 marks an empty bucket. The key
//! itself lives in the connection: the caller compares it, and gives the hash
//! of any stored value back when a removal shifts entries (backward-shift
//! deletion: no tombstones, so probe lengths do not grow with churn).
//!
//! The bucket count is exactly what the load limit of 3/4 needs (not rounded
//! to a power of two, which wasted up to half the index): a key's home bucket
//! is the high half of `hash × buckets` (Lemire's multiply-shift reduction),
//! probes wrap around at the end. The tag comes from the low bits of the hash,
//! so keys that share a neighbourhood of homes still have unrelated tags.
//!
//! Compared with a hashbrown table of `u32`, this saves hashbrown's control
//! byte per bucket (a fifth of the index). The buckets are a [`HugeArray`]:
//! on huge pages, written (so faulted in) when the index is created.

use rvs_cpu::HugeArray;

/// Bits of the value an entry stores (`id << 1 | direction`, ids below 2^24).
pub const VALUE_BITS: u32 = 25;
const VALUE_MASK: u32 = (1 << VALUE_BITS) - 1;
/// An empty bucket (every stored entry has a non-zero tag).
const EMPTY: u32 = 0;
/// Entries [`Index::first_tagged`] looks at before giving up (a hint only).
const HINT_PROBES: usize = 8;

/// The tag of a hash: its 7 low bits, never 0.
fn tag(hash: u64) -> u32 {
    ((hash as u32) & 0x7f).max(1) << VALUE_BITS
}

/// A set of 25-bit values, each filed under the hash of a key the caller keeps.
#[derive(Debug)]
pub struct Index {
    buckets: HugeArray<u32>,
    len: usize,
}

impl Index {
    /// An index for at most `keys` entries, at most 3/4 full, allocated and
    /// faulted in up front.
    pub fn with_capacity(keys: usize) -> Self {
        let n = (keys.max(1) * 4).div_ceil(3);
        Index { buckets: HugeArray::new(n, EMPTY), len: 0 }
    }

    /// Entries stored.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every stored value (for tests).
    #[cfg(test)]
    pub fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets.iter().filter(|&&e| e != EMPTY).map(|&e| e & VALUE_MASK)
    }

    /// The bucket array (for reports of its memory).
    pub fn buckets(&self) -> &HugeArray<u32> {
        &self.buckets
    }

    /// The home bucket of `hash`: `hash × n / 2^64`, below `n`.
    #[inline]
    pub(super) fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    /// The bucket after `i`, wrapping around.
    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.buckets.len() {
            0
        } else {
            i + 1
        }
    }

    /// How far bucket `to` lies after bucket `from` on a probe path.
    fn distance(&self, from: usize, to: usize) -> usize {
        if to >= from {
            to - from
        } else {
            to + self.buckets.len() - from
        }
    }

    /// Asks the CPU for the home bucket of `hash` (a hint, see [`rvs_cpu::prefetch`]).
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if let Some(b) = self.buckets.get(self.home(hash)) {
            rvs_cpu::prefetch(b);
        }
    }

    /// The value of the first entry on `hash`'s probe path whose tag matches
    /// (looking at a few entries only): the likely candidate a lookup will
    /// compare first. A hint, never an answer.
    #[inline]
    pub fn first_tagged(&self, hash: u64) -> Option<u32> {
        let tag = tag(hash);
        let mut i = self.home(hash);
        for _ in 0..HINT_PROBES.min(self.buckets.len()) {
            let e = *self.buckets.get(i)?;
            if e == EMPTY {
                return None;
            }
            if e & !VALUE_MASK == tag {
                return Some(e & VALUE_MASK);
            }
            i = self.next(i);
        }
        None
    }

    /// The bucket of the first value filed under `hash` that `is` accepts.
    #[inline]
    fn position(&self, hash: u64, is: impl FnMut(u32) -> bool) -> Option<usize> {
        self.probe(hash, is).map(|(i, _)| i)
    }

    /// The first value filed under `hash` that `is` accepts. Always
    /// inlined: it is every packet's lookup, and its closure compares keys.
    #[inline(always)]
    pub fn find(&self, hash: u64, is: impl FnMut(u32) -> bool) -> Option<u32> {
        self.probe(hash, is).map(|(_, e)| e & VALUE_MASK)
    }

    /// The bucket and entry of the first value filed under `hash` that `is`
    /// accepts (the entry as read, so [`Index::find`] need not read it again).
    #[inline(always)]
    fn probe(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<(usize, u32)> {
        let tag = tag(hash);
        let mut i = self.home(hash);
        // An empty bucket always ends the probe (the load is at most 3/4);
        // the bound only guards against a broken caller.
        for _ in 0..self.buckets.len() {
            let e = *self.buckets.get(i)?;
            if e == EMPTY {
                return None;
            }
            if e & !VALUE_MASK == tag && is(e & VALUE_MASK) {
                return Some((i, e));
            }
            i = self.next(i);
        }
        None
    }

    /// The first value filed under `hash` that `is` accepts, else the empty
    /// bucket that ends `hash`'s probe path: where [`Index::insert`] would
    /// file a value under `hash` now, for [`Index::insert_at`] (`None` only
    /// when the index has no empty bucket, which its load limit prevents).
    #[inline]
    pub fn find_or_vacant(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Result<u32, Option<usize>> {
        let tag = tag(hash);
        let mut i = self.home(hash);
        for _ in 0..self.buckets.len() {
            let Some(&e) = self.buckets.get(i) else { return Err(None) };
            if e == EMPTY {
                return Err(Some(i));
            }
            if e & !VALUE_MASK == tag && is(e & VALUE_MASK) {
                return Ok(e & VALUE_MASK);
            }
            i = self.next(i);
        }
        Err(None)
    }

    /// Files `value` under `hash` in bucket `vacant`, which
    /// [`Index::find_or_vacant`] gave for `hash` with no removal since (a
    /// removal may empty a bucket before it on the probe path): the bucket
    /// [`Index::insert`] would choose. When that bucket has been filled since
    /// (by another key whose path ended there too), or is `None`, this is
    /// [`Index::insert`]. Returns false when the index is full.
    pub fn insert_at(&mut self, vacant: Option<usize>, hash: u64, value: u32) -> bool {
        debug_assert!(value <= VALUE_MASK);
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            return false;
        }
        match vacant.and_then(|i| self.buckets.get_mut(i)) {
            Some(b) if *b == EMPTY => {
                *b = tag(hash) | (value & VALUE_MASK);
                self.len += 1;
                true
            }
            _ => self.insert(hash, value),
        }
    }

    /// Files `value` (below 2^25) under `hash`. Returns false when the index is
    /// full (the caller sized it so that it never is).
    pub fn insert(&mut self, hash: u64, value: u32) -> bool {
        debug_assert!(value <= VALUE_MASK);
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            return false;
        }
        let mut i = self.home(hash);
        for _ in 0..self.buckets.len() {
            let Some(b) = self.buckets.get_mut(i) else { return false };
            if *b == EMPTY {
                *b = tag(hash) | (value & VALUE_MASK);
                self.len += 1;
                return true;
            }
            i = self.next(i);
        }
        false
    }

    /// Removes `value` filed under `hash`; `hash_of` gives the hash any other
    /// stored value was filed under. Returns whether it was there.
    pub fn remove(&mut self, hash: u64, value: u32, hash_of: impl Fn(u32) -> u64) -> bool {
        let Some(mut hole) = self.position(hash, |v| v == value) else { return false };
        self.len -= 1;
        // Backward shift: pull later entries of the cluster into the hole when
        // the hole lies on their probe path (between their home and them).
        let mut j = hole;
        loop {
            j = self.next(j);
            let e = self.buckets[j];
            if e == EMPTY {
                break;
            }
            let home = self.home(hash_of(e & VALUE_MASK));
            if self.distance(home, j) >= self.distance(hole, j) {
                self.buckets[hole] = e;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// Hashes that collide a lot: few homes (the high bits, spread over the
    /// whole range so some homes are the last buckets and clusters wrap
    /// around), few tags (the low bits).
    fn hash(key: u32) -> u64 {
        (((u64::MAX / 12) * u64::from(key % 13)) & !0x7f) | u64::from(key % 3)
    }

    proptest! {
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..40), 1..400)) {
            // value = key: the "slot" of a value is the value itself.
            let mut index = Index::with_capacity(30);
            let mut model: HashMap<u32, ()> = HashMap::new();
            for (insert, key) in ops {
                if insert {
                    if !model.contains_key(&key) && model.len() < 30 {
                        prop_assert!(index.insert(hash(key), key));
                        model.insert(key, ());
                    }
                } else {
                    prop_assert_eq!(index.remove(hash(key), key, hash), model.remove(&key).is_some());
                }
                prop_assert_eq!(index.len(), model.len());
                for k in 0..40 {
                    prop_assert_eq!(index.find(hash(k), |v| v == k), model.contains_key(&k).then_some(k));
                }
            }
        }
    }

    #[test]
    fn refuses_past_three_quarters() {
        let mut index = Index::with_capacity(6);
        assert_eq!(index.buckets.len(), 8);
        assert_eq!(Index::with_capacity(3_000_000).buckets.len(), 4_000_000, "no rounding to a power of two");
        for k in 0..6 {
            assert!(index.insert(hash(k), k));
        }
        assert!(!index.insert(hash(6), 6));
        assert_eq!(index.values().count(), 6);
    }
}
