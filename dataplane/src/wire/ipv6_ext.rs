//! IPv6 extension headers (RFC 8200 §4), walked safely.
//!
//! ```text
//!  0           8           16                      31
//! +-----------+-----------+------------------------+
//! |next header|hdr ext len|  type-specific data ... |   hop-by-hop, routing,
//! +-----------+-----------+------------------------+   destination options:
//! |                  ... ((hdr ext len + 1) * 8 bytes in all)
//!
//! +-----------+-----------+------------------+--+-+
//! |next header| reserved  | fragment offset  |00|M|   fragment: 8 bytes
//! +-----------+-----------+------------------+--+-+
//! |                identification                  |
//! +------------------------------------------------+
//! ```
//!
//! [`ExtHeaders`] iterates over the hop-by-hop, routing, fragment and destination
//! options headers at the start of an IPv6 payload; [`walk`] runs it to the end
//! and reports the upper-layer protocol, its offset and the fragment header's
//! fields. The walk stops at the first header that is not one of those four
//! (TCP, UDP, ICMPv6, but also AH, ESP, "no next header" or any unknown value:
//! the caller decides what to do with it), and after a fragment header whose
//! offset is not 0 (what follows is the middle of the original payload).
//!
//! The walk is bounded: at most [`MAX_EXT_HEADERS`] headers, never past the
//! buffer (a header running past it is [`WireError::Truncated`]), the hop-by-hop
//! header only first, at most one fragment header. Every header is at least 8
//! bytes long, so the walk always moves forward and cannot loop.
//!
//! [`ExtOptions`] walks the type-length-value options inside one hop-by-hop or
//! destination options header, and [`UnrecognizedAction`] says what RFC 8200
//! §4.2 requires for an option the node does not know.

use super::ipv6::next_header;
use super::WireError;

/// The most extension headers [`walk`] accepts before the upper-layer header.
/// RFC 8200 §4.1's recommended order holds at most 6 (hop-by-hop, destination
/// options, routing, fragment, AH, destination options); a longer chain is an
/// attack on whoever walks it (RFC 9098).
pub const MAX_EXT_HEADERS: usize = 8;

/// Length of a fragment header.
pub const FRAGMENT_LEN: usize = 8;

/// True for the four header types [`ExtHeaders`] walks through.
pub fn is_walked(kind: u8) -> bool {
    matches!(kind, next_header::HOP_BY_HOP | next_header::ROUTING | next_header::FRAGMENT | next_header::DEST_OPTS)
}

/// One extension header found by [`ExtHeaders`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeader {
    /// Its type (see [`next_header`]): hop-by-hop, routing, fragment or
    /// destination options.
    pub kind: u8,
    /// Its offset in the walked buffer (the IPv6 payload).
    pub offset: usize,
    /// Its length in bytes (a multiple of 8).
    pub len: usize,
    /// The type of the header after it.
    pub next: u8,
}

/// The fields of a fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of this fragment's data in the original payload, in bytes (a
    /// multiple of 8).
    pub offset: u16,
    /// The M ("more fragments") flag.
    pub more: bool,
    /// Identification, shared by the fragments of one original packet.
    pub ident: u32,
}

impl Fragment {
    /// Reads the fragment header at the start of `h` (at least 8 bytes).
    fn parse(h: &[u8]) -> Result<Fragment, WireError> {
        if h.len() < FRAGMENT_LEN {
            return Err(WireError::Truncated);
        }
        let w = super::be16(h, 2..4);
        Ok(Fragment { offset: w & 0xfff8, more: w & 1 != 0, ident: super::be32(h, 4..8) })
    }

    /// True for an atomic fragment (offset 0, M clear, RFC 6946): a whole packet
    /// that only carries a fragment header; it needs no reassembly.
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }

    /// True for the first fragment (offset 0): the only one whose upper-layer
    /// header can be read.
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// The fields of a routing header that decide whether it must be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    /// Routing type (0 is deprecated by RFC 5095, 4 is segment routing).
    pub routing_type: u8,
    /// Segments left: 0 when this node is the final destination.
    pub segments_left: u8,
}

/// What [`walk`] found at the end of the extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// The upper-layer protocol: the first header type not walked through, or,
    /// after a non-first fragment, the fragment header's next header.
    pub protocol: u8,
    /// Offset of the upper-layer header in the walked buffer (the total length
    /// of the extension headers). May equal the buffer length (nothing follows).
    pub offset: usize,
    /// The fragment header's fields, when there is one.
    pub fragment: Option<Fragment>,
    /// The routing header's fields, when there is one.
    pub routing: Option<Routing>,
    /// How many extension headers were walked.
    pub count: usize,
}

/// A bounded iterator over the extension headers at the start of an IPv6
/// payload. It yields `Err` once (then ends) when a header is malformed or runs
/// past the buffer, and ends after the last extension header.
#[derive(Debug, Clone)]
pub struct ExtHeaders<'a> {
    data: &'a [u8],
    next: u8,
    offset: usize,
    count: usize,
    fragments: usize,
    done: bool,
}

impl<'a> ExtHeaders<'a> {
    /// Walks `data` (an IPv6 payload) whose first header is `first` (the IPv6
    /// header's next header).
    pub fn new(first: u8, data: &'a [u8]) -> Self {
        ExtHeaders { data, next: first, offset: 0, count: 0, fragments: 0, done: false }
    }

    /// The next header type after the headers yielded so far.
    pub fn next_header(&self) -> u8 {
        self.next
    }

    /// The offset after the headers yielded so far.
    pub fn offset(&self) -> usize {
        self.offset
    }

    fn read(&mut self) -> Result<Option<ExtHeader>, WireError> {
        let kind = self.next;
        if !is_walked(kind) {
            return Ok(None);
        }
        if kind == next_header::HOP_BY_HOP && self.count > 0 {
            return Err(WireError::Malformed("ipv6: hop-by-hop options header not first"));
        }
        if self.count >= MAX_EXT_HEADERS {
            return Err(WireError::Malformed("ipv6: too many extension headers"));
        }
        let rest = self.data.get(self.offset..).unwrap_or(&[]);
        let (&next, &ext_len) = match rest {
            [n, l, ..] => (n, l),
            _ => return Err(WireError::Truncated),
        };
        let len = if kind == next_header::FRAGMENT { FRAGMENT_LEN } else { (usize::from(ext_len) + 1) * 8 };
        if len > rest.len() {
            return Err(WireError::Truncated);
        }
        if kind == next_header::FRAGMENT {
            self.fragments += 1;
            if self.fragments > 1 {
                return Err(WireError::Malformed("ipv6: more than one fragment header"));
            }
            // Past a non-first fragment's header is the middle of the payload.
            if !Fragment::parse(rest)?.is_first() {
                self.done = true;
            }
        }
        let h = ExtHeader { kind, offset: self.offset, len, next };
        self.offset += len;
        self.count += 1;
        self.next = next;
        Ok(Some(h))
    }
}

impl Iterator for ExtHeaders<'_> {
    type Item = Result<ExtHeader, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read() {
            Ok(Some(h)) => Some(Ok(h)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for ExtHeaders<'_> {}

/// Walks the extension headers of `data` (an IPv6 payload whose first header is
/// `first`) to the upper-layer header. Hop-by-hop options must come first; at
/// most [`MAX_EXT_HEADERS`]; a header running past `data` is
/// [`WireError::Truncated`].
pub fn walk(first: u8, data: &[u8]) -> Result<Chain, WireError> {
    let mut it = ExtHeaders::new(first, data);
    let mut fragment = None;
    let mut routing = None;
    for h in &mut it {
        let h = h?;
        let bytes = data.get(h.offset..h.offset + h.len).unwrap_or(&[]);
        match h.kind {
            next_header::FRAGMENT => fragment = Some(Fragment::parse(bytes)?),
            next_header::ROUTING => {
                if let [_, _, routing_type, segments_left, ..] = *bytes {
                    routing = Some(Routing { routing_type, segments_left });
                }
            }
            _ => {}
        }
    }
    Ok(Chain { protocol: it.next_header(), offset: it.offset(), fragment, routing, count: it.count })
}

/// Option types inside hop-by-hop and destination options headers (RFC 8200
/// §4.2; IANA "Destination Options and Hop-by-Hop Options").
pub mod option_type {
    /// One byte of padding (no length byte).
    pub const PAD1: u8 = 0;
    /// N bytes of padding.
    pub const PADN: u8 = 1;
    /// Router alert (RFC 2711, hop-by-hop).
    pub const ROUTER_ALERT: u8 = 0x05;
    /// Jumbo payload (RFC 2675, hop-by-hop): refused, see [`super::super::ipv6`].
    pub const JUMBO_PAYLOAD: u8 = 0xc2;
}

/// What a node must do with an option it does not recognise: the two high bits
/// of the option type (RFC 8200 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnrecognizedAction {
    /// `00`: skip the option and go on.
    Skip,
    /// `01`: discard the packet.
    Discard,
    /// `10`: discard and send a parameter problem (code 2) to the source.
    DiscardAndReport,
    /// `11`: discard and report unless the destination was multicast.
    DiscardAndReportUnlessMulticast,
}

impl UnrecognizedAction {
    /// The action encoded in option type `kind`.
    pub fn of(kind: u8) -> Self {
        match kind >> 6 {
            0 => UnrecognizedAction::Skip,
            1 => UnrecognizedAction::Discard,
            2 => UnrecognizedAction::DiscardAndReport,
            _ => UnrecognizedAction::DiscardAndReportUnlessMulticast,
        }
    }
}

/// One option (padding excluded) of a hop-by-hop or destination options header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtOption<'a> {
    /// Option type (see [`option_type`]; its high bits are an
    /// [`UnrecognizedAction`], its third bit says the data may change en route).
    pub kind: u8,
    /// Offset of the option's type byte in the header (for a parameter
    /// problem's pointer, add the header's own offset).
    pub offset: usize,
    /// The option data (after the type and length bytes).
    pub data: &'a [u8],
}

/// A bounded iterator over the type-length-value options of one hop-by-hop or
/// destination options header (the whole header, as [`ExtHeader`] locates it).
/// Pad1 and PadN are skipped. It yields `Err` once (then ends) for an option
/// running past the header. Each step consumes at least one byte, so it ends
/// within the header's length.
#[derive(Debug, Clone)]
pub struct ExtOptions<'a> {
    header: &'a [u8],
    at: usize,
}

impl<'a> ExtOptions<'a> {
    /// Walks the options of `header` (a hop-by-hop or destination options
    /// header, its next-header and length bytes included).
    pub fn new(header: &'a [u8]) -> Self {
        ExtOptions { header, at: 2 }
    }
}

impl<'a> Iterator for ExtOptions<'a> {
    type Item = Result<ExtOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let kind = *self.header.get(self.at)?;
            if kind == option_type::PAD1 {
                self.at += 1;
                continue;
            }
            let offset = self.at;
            let Some(&len) = self.header.get(offset + 1) else {
                self.at = self.header.len();
                return Some(Err(WireError::Truncated));
            };
            let end = offset + 2 + usize::from(len);
            let Some(data) = self.header.get(offset + 2..end) else {
                self.at = self.header.len();
                return Some(Err(WireError::Truncated));
            };
            self.at = end;
            if kind != option_type::PADN {
                return Some(Ok(ExtOption { kind, offset, data }));
            }
        }
    }
}

impl std::iter::FusedIterator for ExtOptions<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv6::{self, Ipv6Packet};
    use crate::wire::test_fixtures::scapy;
    use crate::wire::{TcpSegment, UdpDatagram};
    use proptest::prelude::*;

    fn ip(name: &str) -> Vec<u8> {
        scapy(name)[14..].to_vec()
    }

    #[test]
    fn hbh_dest_frag_tcp() {
        let b = ip("chain_hbh_dst_frag_tcp");
        let p = Ipv6Packet::new_checked(&b[..]).expect("ipv6");
        let hs: Vec<ExtHeader> = p.ext_headers().collect::<Result<_, _>>().expect("walk");
        let kinds: Vec<(u8, usize, usize)> = hs.iter().map(|h| (h.kind, h.offset, h.len)).collect();
        assert_eq!(kinds, vec![(next_header::HOP_BY_HOP, 0, 8), (next_header::DEST_OPTS, 8, 16), (next_header::FRAGMENT, 24, 8)]);
        let c = p.upper_layer().expect("walk");
        assert_eq!((c.protocol, c.offset, c.count, c.routing), (next_header::TCP, 32, 3, None));
        assert_eq!(c.fragment, Some(Fragment { offset: 0, more: true, ident: 0x1234_5678 }));
        let f = c.fragment.expect("fragment");
        assert!(f.is_first() && !f.is_atomic());
        let seg = TcpSegment::new_checked(&p.payload()[c.offset..]).expect("tcp");
        assert_eq!((seg.src_port(), seg.dst_port()), (40000, 80));
        assert!(seg.syn());
    }

    #[test]
    fn full_chain_to_udp() {
        let b = ip("chain_full_udp");
        let p = Ipv6Packet::new_checked(&b[..]).expect("ipv6");
        let c = p.upper_layer().expect("walk");
        // hbh 8 + dest 8 + routing (2 addresses) 40 + fragment 8 + dest 8.
        assert_eq!((c.protocol, c.offset, c.count), (next_header::UDP, 72, 5));
        assert_eq!(c.routing, Some(Routing { routing_type: 0, segments_left: 0 }));
        let f = c.fragment.expect("fragment");
        assert!(f.is_atomic());
        assert_eq!(f.ident, 7);
        let d = UdpDatagram::new_checked(&p.payload()[c.offset..]).expect("udp");
        assert_eq!(d.payload(), b"xyz");
    }

    #[test]
    fn non_first_fragment_stops() {
        let b = ip("frag_second");
        let p = Ipv6Packet::new_checked(&b[..]).expect("ipv6");
        let c = p.upper_layer().expect("walk");
        assert_eq!((c.protocol, c.offset, c.count), (next_header::TCP, 8, 1));
        assert_eq!(c.fragment, Some(Fragment { offset: 185 * 8, more: false, ident: 0x1234_5678 }));
        assert!(!c.fragment.expect("fragment").is_first());
        // The data after it looks like a walked header type but is not read.
        let mut data = p.payload().to_vec();
        data[0] = next_header::DEST_OPTS;
        data[8] = 0xff;
        let c = walk(next_header::FRAGMENT, &data).expect("walk");
        assert_eq!((c.protocol, c.offset), (next_header::DEST_OPTS, 8));
    }

    #[test]
    fn stops_at_opaque_or_unknown() {
        for kind in [next_header::AH, next_header::ESP, next_header::NO_NEXT, next_header::ICMPV6, 253, 135] {
            let c = walk(kind, &[0xff; 16]).expect("walk");
            assert_eq!((c.protocol, c.offset, c.count), (kind, 0, 0));
        }
        let c = walk(next_header::NO_NEXT, &[]).expect("empty");
        assert_eq!(c.offset, 0);
        // A destination options header naming "no next header" with nothing after.
        let c = walk(next_header::DEST_OPTS, &[next_header::NO_NEXT, 0, 1, 4, 0, 0, 0, 0]).expect("walk");
        assert_eq!((c.protocol, c.offset), (next_header::NO_NEXT, 8));
    }

    #[test]
    fn truncated_headers_refused() {
        let b = ip("chain_hbh_dst_frag_tcp");
        let p = Ipv6Packet::new_checked(&b[..]).expect("ipv6");
        let payload = p.payload();
        // Cut inside every extension header (the TCP header is not walked).
        for cut in 0..32 {
            assert_eq!(walk(next_header::HOP_BY_HOP, &payload[..cut]).err(), Some(WireError::Truncated), "cut {cut}");
        }
        assert!(walk(next_header::HOP_BY_HOP, &payload[..32]).is_ok());
        // A header whose length field runs past the buffer.
        let mut long = payload.to_vec();
        long[9] = 200;
        assert_eq!(walk(next_header::HOP_BY_HOP, &long).err(), Some(WireError::Truncated));
        // And the iterator yields the error once, then ends.
        let mut it = ExtHeaders::new(next_header::HOP_BY_HOP, &long);
        assert!(matches!(it.next(), Some(Ok(_))));
        assert_eq!(it.next(), Some(Err(WireError::Truncated)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn hop_by_hop_only_first() {
        // dest opts -> hop-by-hop.
        let data = [[next_header::HOP_BY_HOP, 0, 1, 4, 0, 0, 0, 0], [next_header::TCP, 0, 1, 4, 0, 0, 0, 0]].concat();
        assert!(matches!(walk(next_header::DEST_OPTS, &data), Err(WireError::Malformed(_))));
        // hop-by-hop -> hop-by-hop.
        assert!(matches!(walk(next_header::HOP_BY_HOP, &data), Err(WireError::Malformed(_))));
        // hop-by-hop -> dest opts is fine.
        let mut ok = data.clone();
        ok[0] = next_header::DEST_OPTS;
        assert_eq!(walk(next_header::HOP_BY_HOP, &ok).map(|c| c.protocol), Ok(next_header::TCP));
    }

    #[test]
    fn overlong_and_looping_chains_refused() {
        // Destination options naming destination options again and again: each is
        // 8 bytes, so the walk moves on, and stops at the bound.
        let one = [next_header::DEST_OPTS, 0, 1, 4, 0, 0, 0, 0];
        let many: Vec<u8> = one.iter().copied().cycle().take(8 * 64).collect();
        assert!(matches!(walk(next_header::DEST_OPTS, &many), Err(WireError::Malformed(_))));
        // Exactly MAX_EXT_HEADERS, ending in TCP, is accepted.
        let mut max: Vec<u8> = one.iter().copied().cycle().take(8 * MAX_EXT_HEADERS).collect();
        max[8 * (MAX_EXT_HEADERS - 1)] = next_header::TCP;
        let c = walk(next_header::DEST_OPTS, &max).expect("walk");
        assert_eq!((c.protocol, c.offset, c.count), (next_header::TCP, 8 * MAX_EXT_HEADERS, MAX_EXT_HEADERS));
        // Two fragment headers.
        let frags = [[next_header::FRAGMENT, 0, 0, 1, 0, 0, 0, 1], [next_header::TCP, 0, 0, 1, 0, 0, 0, 1]].concat();
        assert!(matches!(walk(next_header::FRAGMENT, &frags), Err(WireError::Malformed(_))));
    }

    #[test]
    fn no_ext_headers() {
        let b = ip("udp");
        let p = Ipv6Packet::new_checked(&b[..]).expect("ipv6");
        assert_eq!(p.ext_headers().count(), 0);
        let c = p.upper_layer().expect("walk");
        assert_eq!((c.protocol, c.offset, c.count, c.fragment), (next_header::UDP, 0, 0, None));
        assert_eq!(ipv6::HEADER_LEN + c.offset + 8 + 3, b.len());
    }

    #[test]
    fn options_of_scapy_headers() {
        let b = ip("chain_hbh_dst_frag_tcp");
        let p = Ipv6Packet::new_checked(&b[..]).expect("ipv6");
        let hs: Vec<ExtHeader> = p.ext_headers().collect::<Result<_, _>>().expect("walk");
        let bytes = |h: &ExtHeader| &p.payload()[h.offset..h.offset + h.len];
        // Hop-by-hop: a router alert (value 0) and padding.
        let opts: Vec<ExtOption> = ExtOptions::new(bytes(&hs[0])).collect::<Result<_, _>>().expect("options");
        assert_eq!(opts, vec![ExtOption { kind: option_type::ROUTER_ALERT, offset: 2, data: &[0, 0] }]);
        assert_eq!(UnrecognizedAction::of(opts[0].kind), UnrecognizedAction::Skip);
        // Destination options: only PadN.
        assert_eq!(ExtOptions::new(bytes(&hs[1])).count(), 0);
        assert_eq!(UnrecognizedAction::of(option_type::JUMBO_PAYLOAD), UnrecognizedAction::DiscardAndReportUnlessMulticast);
        assert_eq!(UnrecognizedAction::of(0x4f), UnrecognizedAction::Discard);
        assert_eq!(UnrecognizedAction::of(0x8f), UnrecognizedAction::DiscardAndReport);
    }

    #[test]
    fn options_running_past_refused() {
        // Pad1, an option of 3 data bytes in a 5-byte remainder, then one whose
        // length runs past the header.
        let h = [6, 0, option_type::PAD1, 0x3e, 3, 7, 8, 9, 0x3f, 9];
        let mut it = ExtOptions::new(&h);
        assert_eq!(it.next(), Some(Ok(ExtOption { kind: 0x3e, offset: 3, data: &[7, 8, 9] })));
        assert_eq!(it.next(), Some(Err(WireError::Truncated)));
        assert_eq!(it.next(), None);
        // A type byte without its length byte.
        let mut it = ExtOptions::new(&[6, 0, 0x3e]);
        assert_eq!(it.next(), Some(Err(WireError::Truncated)));
        assert_eq!(it.next(), None);
    }

    proptest! {
        /// Random bytes behind any first header: never panics, never reads past the
        /// buffer, and the reported offset is inside it.
        #[test]
        fn never_panics(first in prop_oneof![Just(0u8), Just(43u8), Just(44u8), Just(60u8), any::<u8>()],
                        data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(c) = walk(first, &data) {
                prop_assert!(c.offset <= data.len());
                prop_assert!(c.count <= MAX_EXT_HEADERS);
                prop_assert!(c.count == 0 || c.offset >= 8 * c.count);
            }
            let mut n = 0;
            for h in ExtHeaders::new(first, &data) {
                n += 1;
                if let Ok(h) = h {
                    prop_assert!(h.offset + h.len <= data.len());
                }
            }
            prop_assert!(n <= MAX_EXT_HEADERS + 1);
        }

        /// Options of random header bytes: never panics, every option inside.
        #[test]
        fn options_never_panic(h in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut n = 0;
            for o in ExtOptions::new(&h) {
                n += 1;
                if let Ok(o) = o {
                    prop_assert!(o.offset + 2 + o.data.len() <= h.len());
                }
            }
            prop_assert!(n <= h.len());
        }

        /// Chains in RFC 8200 §4.1 order (hop-by-hop, destination options,
        /// routing, destination options, fragment) with random bodies and a first
        /// fragment: the walk agrees with etherparse's parser on the upper-layer
        /// protocol, its offset and the fragment's fields.
        #[test]
        fn rfc_order_chains_match_etherparse(
            present in any::<[bool; 5]>(), lens in any::<[u8; 5]>(), fill in any::<u8>(),
            more in any::<bool>(), ident in any::<u32>(), upper in prop_oneof![Just(6u8), Just(17u8), Just(58u8), Just(59u8)],
        ) {
            let order = [next_header::HOP_BY_HOP, next_header::DEST_OPTS, next_header::ROUTING, next_header::DEST_OPTS, next_header::FRAGMENT];
            // A second destination options header only after a routing header.
            let kinds: Vec<(usize, u8)> = order.iter().copied().enumerate()
                .filter(|&(i, _)| present[i] && (i != 3 || present[2]))
                .collect();
            let mut data = Vec::new();
            for (j, &(i, kind)) in kinds.iter().enumerate() {
                let next = kinds.get(j + 1).map_or(upper, |&(_, k)| k);
                if kind == next_header::FRAGMENT {
                    let m = if more { 1u8 } else { 0 };
                    data.extend([next, 0, 0, m]);
                    data.extend(ident.to_be_bytes());
                } else {
                    let units = lens[i] % 4;
                    let mut h = vec![fill; (usize::from(units) + 1) * 8];
                    h[0] = next;
                    h[1] = units;
                    data.extend(h);
                }
            }
            data.extend([0u8; 20]);
            let first = kinds.first().map_or(upper, |&(_, k)| k);
            let (exts, proto, rest) = etherparse::Ipv6Extensions::from_slice(etherparse::IpNumber(first), &data).expect("etherparse");
            let c = walk(first, &data).expect("walk");
            prop_assert_eq!(c.protocol, proto.0);
            prop_assert_eq!(c.offset, data.len() - rest.len());
            prop_assert_eq!(c.count, kinds.len());
            let theirs = exts.fragment.map(|f| Fragment { offset: f.fragment_offset.byte_offset(), more: f.more_fragments, ident: f.identification });
            prop_assert_eq!(c.fragment, theirs);
        }

        /// Chains of random walked headers with random bodies are walked exactly.
        #[test]
        fn random_valid_chains(kinds in proptest::collection::vec(prop_oneof![Just(43u8), Just(60u8)], 0..MAX_EXT_HEADERS),
                               lens in proptest::collection::vec(0u8..4, MAX_EXT_HEADERS), hbh in any::<bool>()) {
            let mut kinds = kinds;
            if hbh {
                kinds.insert(0, next_header::HOP_BY_HOP);
                kinds.truncate(MAX_EXT_HEADERS);
            }
            let mut data = Vec::new();
            for (i, _) in kinds.iter().enumerate() {
                let next = kinds.get(i + 1).copied().unwrap_or(next_header::TCP);
                let mut h = vec![0xa5u8; (usize::from(lens[i]) + 1) * 8];
                h[0] = next;
                h[1] = lens[i];
                data.extend(h);
            }
            let first = kinds.first().copied().unwrap_or(next_header::TCP);
            let c = walk(first, &data).expect("valid chain");
            prop_assert_eq!((c.protocol, c.offset, c.count), (next_header::TCP, data.len(), kinds.len()));
        }
    }
}
