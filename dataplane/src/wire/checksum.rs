//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! * [`sum`] computes a ones-complement *partial* sum of big-endian 16-bit words;
//!   partial sums (including [`pseudo_header_v4`]) may be added together in a `u32`.
//! * [`fold`] folds the carries back into 16 bits (not inverted).
//! * [`internet`] gives the final checksum: `!fold(sum(data))`.
//! * [`update_u16`], [`update_u32`] and [`update_addr`] patch an existing checksum
//!   after a field changed, per RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`.
//! * IPv6: [`pseudo_header_v6`], [`upper_layer_v6`] (TCP, UDP and ICMPv6 over
//!   IPv6) and [`update_addr_v6`] (eqn. 3 over an address's eight words).
//!
//! Eqn. 3 (unlike eqn. 2 of RFC 1141) never produces `0xffff` ("negative zero") out
//! of a header whose full recomputation yields `0x0000`, so the incremental result is
//! bit-identical to a full recomputation whenever the checksummed data is not all
//! zero (always the case for IPv4/TCP/UDP/ICMP headers).
//!
//! UDP: a transmitted checksum of `0` means "no checksum". Callers updating a UDP
//! checksum must leave a `0` alone, and must send a computed `0` as `0xffff`
//! (see [`crate::wire::udp`]).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Ones-complement partial sum of `data` taken as big-endian 16-bit words; an odd
/// trailing byte is padded with a zero byte on the right (RFC 1071).
///
/// The result is always `<= 0xffff`, so a handful of partial sums can be added in a
/// `u32` without overflow before calling [`fold`].
pub fn sum(data: &[u8]) -> u32 {
    // An option-less IPv4 header (every forwarded packet's), unrolled.
    if let Ok(h) = <&[u8; 20]>::try_from(data) {
        let word = |at: usize| u64::from(u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
        return fold64(word(0) + word(4) + word(8) + word(12) + word(16));
    }
    // Eight bytes at a time with end-around carry: 2^16 ≡ 1 (mod 2^16 - 1),
    // so big-endian 64-bit words add up to the same ones-complement sum as
    // their four 16-bit words (RFC 1071 §2(B), "byte order independence").
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for w in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let (s, carry) = acc.overflowing_add(u64::from_be_bytes(word));
        acc = s + u64::from(carry);
    }
    // The remainder starts at a multiple of 8: its 16-bit words stay aligned.
    let mut tail = chunks.remainder().chunks_exact(2);
    let mut small: u64 = 0;
    for w in &mut tail {
        small += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = tail.remainder() {
        small += u64::from(u16::from_be_bytes([*last, 0]));
    }
    let (s, carry) = acc.overflowing_add(small);
    fold64(s + u64::from(carry))
}

/// True when the option-less IPv4 header `h` carries a correct checksum:
/// the same as `fold(sum(h)) == 0xffff`, with less work.
///
/// A correct header's 16-bit words add up (ones-complement) to `0xffff`,
/// i.e. their plain sum is a non-zero multiple of `0xffff` (2^16 ≡ 1
/// modulo `0xffff`). Byte order does not matter for that test (RFC 1071
/// §2(B)): a byte-swapped word is the word times 256 modulo `0xffff`, and
/// 256 is prime to `0xffff`, so the sum of the swapped words is a multiple
/// of `0xffff` exactly when the sum of the words is; nor does the word
/// size, a little-endian 32-bit word being its two 16-bit words modulo
/// `0xffff`. So five native loads, four adds and one remainder do.
#[inline]
pub fn ipv4_header_ok(h: &[u8; 20]) -> bool {
    let word = |at: usize| u64::from(u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
    let s = word(0) + word(4) + word(8) + word(12) + word(16);
    // Zero only for an all-zero header, whose sum folds to 0, not 0xffff.
    s != 0 && s.is_multiple_of(0xffff)
}

/// True when `value` equals `fold(partial)` for a non-zero partial sum
/// `partial` (a sum of 16-bit or 32-bit big-endian words, as
/// [`pseudo_header_v4`]'s), without folding it: the folded sum is the one
/// value in `1..=0xffff` congruent to `partial` modulo `0xffff`, and
/// `value` (at most `0xffff`) is congruent to it exactly when `partial +
/// 0xffff - value` is a multiple of `0xffff`. A `value` of 0 never matches.
#[inline]
pub fn equals_folded(partial: u64, value: u16) -> bool {
    value != 0 && (partial + 0xffff - u64::from(value)).is_multiple_of(0xffff)
}

/// Folds a 64-bit ones-complement sum to at most 0xffff (end-around carries,
/// no branches): 2^32 ≡ 2^16 ≡ 1 (mod 2^16 - 1). Each halving is one add
/// whose carry is added back (an add-with-carry): a carry out leaves the
/// sum at most 2^n - 2, so adding it back cannot carry again. Zero only for
/// a zero sum, as with shifts and masks.
#[inline]
pub(crate) fn fold64(acc: u64) -> u32 {
    let (s, carry) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let s = s + u32::from(carry);
    let (s, carry) = (s as u16).overflowing_add((s >> 16) as u16);
    u32::from(s + u16::from(carry))
}

/// Folds the carries of a partial sum into 16 bits. The result is NOT inverted.
pub fn fold(sum: u32) -> u16 {
    let s = (sum >> 16) + (sum & 0xffff); // <= 0x1fffe
    ((s >> 16) + (s & 0xffff)) as u16
}

/// The Internet checksum of `data`: the inverted, folded ones-complement sum.
///
/// A buffer that embeds its own correct checksum yields `0` here.
pub fn internet(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Partial sum of the IPv4 pseudo-header used by TCP and UDP: source address,
/// destination address, zero, protocol, and the L4 length (header + payload).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(proto)
        + u32::from(len)
}

/// Incrementally updates checksum `csum` after a 16-bit field changed from `old` to
/// `new` (RFC 1624 eqn. 3).
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// Incrementally updates checksum `csum` after a 32-bit field (two aligned 16-bit
/// words) changed from `old` to `new`.
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!csum) + u32::from(!((old >> 16) as u16)) + u32::from(!(old as u16)) + ((new >> 16) & 0xffff) + (new & 0xffff);
    !fold(s)
}

/// Incrementally updates checksum `csum` after a region starting at an even
/// offset changed from [`sum`] `old` to [`sum`] `new` (RFC 1624 eqn. 3 over
/// the region's words).
pub fn update_region(csum: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!csum) + u32::from(!fold(old)) + u32::from(fold(new));
    !fold(s)
}

/// Incrementally updates checksum `csum` after many words changed at once
/// (RFC 1624 eqn. 3, `!fold(!csum + delta)`), where `delta` is Σ(`!old +
/// new`) over the changed words, accumulated in a `u64`. A changed 32-bit
/// word may be added whole (`u64::from(!old) + u64::from(new)`): 2^16 ≡ 1
/// modulo 0xffff, so it counts as its two 16-bit words. Byte order does not
/// matter either (RFC 1071 §2(B)): when `csum` and every word are read in
/// native byte order, the result is the checksum in native byte order.
/// Gives the same checksum as updating word by word.
#[inline]
pub fn update_sum(csum: u16, delta: u64) -> u16 {
    !(fold64(u64::from(!csum) + delta) as u16)
}

/// Incrementally updates checksum `csum` after an IPv4 address changed from `old` to
/// `new` (the IPv4 header checksum, or a TCP/UDP checksum through the pseudo-header).
pub fn update_addr(csum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(csum, u32::from(old), u32::from(new))
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1) used by TCP, UDP and
/// ICMPv6 over IPv6: source address, destination address, the 32-bit
/// upper-layer length (header + payload, extension headers excluded) and the
/// next header of the upper layer (not of an extension header). The result is
/// folded to at most 0xffff, so it adds to other partial sums like [`sum`]'s.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let words = |a: Ipv6Addr| a.segments().iter().map(|&w| u64::from(w)).sum::<u64>();
    fold64(words(src) + words(dst) + u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(next_header))
}

/// The checksum of an upper-layer message over IPv6 (TCP, UDP or ICMPv6): the
/// inverted folded sum of the pseudo-header and `data`, whose checksum field
/// must hold 0 when filling (or the stored value when verifying: a correct one
/// gives 0). `data.len()` is the upper-layer length.
///
/// UDP over IPv6: a checksum is mandatory (RFC 8200 §8.1), a computed `0` must
/// be sent as `0xffff`, and a received `0` is invalid (drop the datagram).
pub fn upper_layer_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, data: &[u8]) -> u16 {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    !fold(pseudo_header_v6(src, dst, next_header, len) + sum(data))
}

/// Incrementally updates checksum `csum` after an IPv6 address changed from `old`
/// to `new` (a TCP, UDP or ICMPv6 checksum through the pseudo-header; IPv6 has
/// no header checksum): RFC 1624 eqn. 3 over the address's eight 16-bit words.
///
/// UDP: a stored `0` is not a checksum over IPv6 (the datagram is invalid);
/// store a `0` result as `0xffff`.
pub fn update_addr_v6(csum: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    let mut s = u64::from(!csum);
    for (o, n) in old.segments().iter().zip(new.segments().iter()) {
        s += u64::from(!*o) + u64::from(*n);
    }
    !fold(fold64(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The IPv4 header from RFC 1071-style textbook example (checksum 0xb861).
    const IPV4_HDR: [u8; 20] =
        [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7];

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 -> sum 0xddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(internet(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        assert_eq!(internet(&IPV4_HDR), 0);
        assert!(ipv4_header_ok(&IPV4_HDR));
        assert!(!ipv4_header_ok(&[0; 20]));
        let mut h = IPV4_HDR;
        h[10] = 0;
        h[11] = 0;
        assert_eq!(internet(&h), 0xb861);
    }

    #[test]
    fn odd_length() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[]), 0);
        assert_eq!(internet(&[]), 0xffff);
    }

    #[test]
    fn large_input_no_overflow() {
        let data = vec![0xffu8; 1 << 20];
        assert_eq!(fold(sum(&data)), 0xffff);
        assert!(sum(&data) <= 0xffff);
    }

    #[test]
    fn pseudo_header() {
        let p = pseudo_header_v4(Ipv4Addr::new(192, 168, 0, 1), Ipv4Addr::new(192, 168, 0, 199), 17, 0x5f);
        assert_eq!(p, 0xc0a8 + 0x0001 + 0xc0a8 + 0x00c7 + 17 + 0x5f);
    }

    /// Builds a 20-byte IPv4 header with checksum filled.
    fn ip_header(words: [u16; 10]) -> [u8; 20] {
        let mut h = [0u8; 20];
        for (i, w) in words.iter().enumerate() {
            h[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
        }
        h[0] = 0x45;
        h[10] = 0;
        h[11] = 0;
        let c = internet(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn csum_of(h: &[u8]) -> u16 {
        u16::from_be_bytes([h[10], h[11]])
    }

    /// A header whose full checksum is exactly 0x0000, then an address rewrite and
    /// back: the incremental update must produce 0x0000, never 0xffff.
    #[test]
    fn zero_checksum_corner() {
        let mut h = ip_header([0x4500, 0x0054, 0, 0x4000, 0x4006, 0, 0x0a00, 0x0001, 0x0a00, 0x0002]);
        // Choose the ident word so that the full checksum becomes 0x0000.
        let mut tmp = h;
        tmp[4] = 0;
        tmp[5] = 0;
        tmp[10] = 0;
        tmp[11] = 0;
        let s = fold(sum(&tmp));
        // want fold(s + ident) == 0xffff -> ident = 0xffff - s (ones complement)
        let ident = 0xffff - s;
        h[4..6].copy_from_slice(&ident.to_be_bytes());
        h[10] = 0;
        h[11] = 0;
        let c = internet(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(c, 0x0000);
        assert_eq!(internet(&h), 0);

        let old = Ipv4Addr::new(10, 0, 0, 2);
        let new = Ipv4Addr::new(10, 0, 0, 9);
        let c2 = update_addr(c, old, new);
        h[16..20].copy_from_slice(&new.octets());
        let mut full = h;
        full[10] = 0;
        full[11] = 0;
        assert_eq!(c2, internet(&full));
        // And back again: must return to exactly 0x0000.
        let c3 = update_addr(c2, new, old);
        assert_eq!(c3, 0x0000);
        // Same via a 16-bit field change.
        assert_eq!(update_u16(update_u16(c, ident, 7), 7, ident), 0x0000);
    }

    proptest! {
        #[test]
        fn ipv4_header_ok_is_the_folded_sum_test(mut h in any::<[u8; 20]>(), fix in any::<bool>(), zero in 0usize..30) {
            if fix {
                h[10] = 0;
                h[11] = 0;
                let c = internet(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            if zero == 0 {
                h = [0; 20];
            }
            prop_assert_eq!(ipv4_header_ok(&h), fold(sum(&h)) == 0xffff);
        }

        #[test]
        fn equals_folded_is_fold_then_compare(words in proptest::collection::vec(any::<u16>(), 1..12), value in any::<u16>(), hit in any::<bool>()) {
            let partial: u32 = words.iter().map(|&w| u32::from(w)).sum();
            prop_assume!(partial != 0);
            let value = if hit { fold(partial) } else { value };
            prop_assert_eq!(equals_folded(u64::from(partial), value), fold(partial) == value);
        }

        #[test]
        fn sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut naive: u64 = 0;
            for i in (0..data.len()).step_by(2) {
                let hi = u64::from(data[i]);
                let lo = u64::from(*data.get(i + 1).unwrap_or(&0));
                naive += (hi << 8) | lo;
            }
            // The exact representative: 0 only for an all-zero sum, else 1..=0xffff.
            let naive = match naive % 0xffff {
                0 if naive != 0 => 0xffff,
                r => r as u32,
            };
            prop_assert_eq!(sum(&data), naive);
            prop_assert_eq!(u32::from(fold(sum(&data))), naive);
        }

        #[test]
        fn sum_of_a_bare_ipv4_header_matches_the_general_loop(h in any::<[u8; 20]>()) {
            // 21 bytes with a zero pad take the general path and sum the same.
            let mut padded = h.to_vec();
            padded.push(0);
            prop_assert_eq!(sum(&h), sum(&padded));
        }

        #[test]
        fn fold_reduces_every_u32(x in any::<u32>()) {
            let mut slow = x;
            while slow > 0xffff {
                slow = (slow & 0xffff) + (slow >> 16);
            }
            prop_assert_eq!(u32::from(fold(x)), slow);
        }

        #[test]
        fn ipv4_update_addr_matches_full(words in any::<[u16; 10]>(), new_src in any::<u32>(), new_dst in any::<u32>()) {
            let mut h = ip_header(words);
            let old_src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
            let old_dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            let (ns, nd) = (Ipv4Addr::from(new_src), Ipv4Addr::from(new_dst));
            let mut c = csum_of(&h);
            c = update_addr(c, old_src, ns);
            c = update_addr(c, old_dst, nd);
            h[12..16].copy_from_slice(&ns.octets());
            h[16..20].copy_from_slice(&nd.octets());
            h[10] = 0;
            h[11] = 0;
            prop_assert_eq!(c, internet(&h));
        }

        #[test]
        fn ipv4_update_u16_matches_full(words in any::<[u16; 10]>(), idx in 1usize..9, new in any::<u16>()) {
            // Any word but the version/IHL word (0) and the checksum itself (5).
            let idx = if idx >= 5 { idx + 1 } else { idx };
            let mut h = ip_header(words);
            let old = u16::from_be_bytes([h[2 * idx], h[2 * idx + 1]]);
            let c = update_u16(csum_of(&h), old, new);
            h[2 * idx..2 * idx + 2].copy_from_slice(&new.to_be_bytes());
            h[10] = 0;
            h[11] = 0;
            prop_assert_eq!(c, internet(&h));
        }

        /// TCP: DNAT-style rewrite of the destination address (pseudo-header) and the
        /// destination port, compared with a full recomputation.
        #[test]
        fn tcp_update_matches_full(
            src in any::<u32>(), dst in any::<u32>(), new_dst in any::<u32>(),
            hdr in any::<[u8; 20]>(), payload in proptest::collection::vec(any::<u8>(), 0..64),
            new_port in any::<u16>(), new_seq in any::<u32>(),
        ) {
            let (src, dst, new_dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst), Ipv4Addr::from(new_dst));
            let mut seg = hdr.to_vec();
            seg[12] = 0x50;
            seg.extend_from_slice(&payload);
            seg[16] = 0;
            seg[17] = 0;
            let len = seg.len() as u16;
            let full = |seg: &[u8], d: Ipv4Addr| -> u16 {
                let mut s = seg.to_vec();
                s[16] = 0;
                s[17] = 0;
                !fold(pseudo_header_v4(src, d, 6, len) + sum(&s))
            };
            let c0 = full(&seg, dst);
            seg[16..18].copy_from_slice(&c0.to_be_bytes());

            let old_port = u16::from_be_bytes([seg[2], seg[3]]);
            let old_seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
            let mut c = update_addr(c0, dst, new_dst);
            c = update_u16(c, old_port, new_port);
            c = update_u32(c, old_seq, new_seq);
            seg[2..4].copy_from_slice(&new_port.to_be_bytes());
            seg[4..8].copy_from_slice(&new_seq.to_be_bytes());
            prop_assert_eq!(c, full(&seg, new_dst));
        }
    }
}

#[cfg(test)]
mod v6_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pseudo_header_v6_words() {
        let one = Ipv6Addr::LOCALHOST;
        let two = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 2);
        assert_eq!(pseudo_header_v6(one, two, 6, 20), 1 + 2 + 6 + 20);
        // The 32-bit length contributes both of its 16-bit halves.
        assert_eq!(pseudo_header_v6(one, two, 17, 0x0001_2345), 1 + 2 + 17 + 1 + 0x2345);
        // Folded: all-ones addresses stay within 16 bits.
        let ff = Ipv6Addr::from([0xff; 16]);
        assert!(pseudo_header_v6(ff, ff, 0xff, u32::MAX) <= 0xffff);
        assert_eq!(fold(pseudo_header_v6(ff, ff, 0, 0)), 0xffff);
    }

    /// A message whose full checksum is exactly 0x0000, an address rewrite and
    /// back: the incremental update returns to 0x0000, never 0xffff.
    #[test]
    fn zero_checksum_corner_v6() {
        let (src, dst) = (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x64));
        // Four bytes: a free word, then the checksum word.
        let mut m = [0u8; 4];
        let s = fold(pseudo_header_v6(src, dst, 58, 4));
        m[..2].copy_from_slice(&(0xffff - s).to_be_bytes());
        let c = upper_layer_v6(src, dst, 58, &m);
        assert_eq!(c, 0x0000);
        let new = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0x1234, 0x5678);
        let c2 = update_addr_v6(c, dst, new);
        assert_eq!(c2, upper_layer_v6(src, new, 58, &m));
        assert_eq!(update_addr_v6(c2, new, dst), 0x0000);
    }

    proptest! {
        /// The add-with-carry fold gives what folding by shifts and masks
        /// gives, zero included (only for a zero sum).
        #[test]
        fn fold64_equals_folding_by_shifts(acc in prop_oneof![any::<u64>(), 0u64..0x3_0000, Just(0xffff_ffff_ffff_ffff), Just(0)]) {
            let mut s = acc;
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            prop_assert_eq!(u64::from(fold64(acc)), s);
        }
    }

    proptest! {
        /// Rewriting either address of a random message: the incremental update
        /// equals a full recomputation.
        #[test]
        fn update_addr_v6_matches_full(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), new in any::<[u8; 16]>(),
                                       which in any::<bool>(), data in proptest::collection::vec(any::<u8>(), 2..120)) {
            let (src, dst, new) = (Ipv6Addr::from(src), Ipv6Addr::from(dst), Ipv6Addr::from(new));
            let mut data = data;
            data[0] = 0;
            data[1] = 0;
            let c = upper_layer_v6(src, dst, 6, &data);
            let (old, ns, nd) = if which { (src, new, dst) } else { (dst, src, new) };
            prop_assert_eq!(update_addr_v6(c, old, new), upper_layer_v6(ns, nd, 6, &data));
        }
    }
}
