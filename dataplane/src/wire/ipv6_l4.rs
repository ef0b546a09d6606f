//! TCP and UDP over IPv6: their checksums with the IPv6 pseudo-header
//! ([`checksum::pseudo_header_v6`]).
//!
//! The views are the IPv4 ones ([`TcpSegment`], [`UdpDatagram`]) over the
//! upper-layer bytes an [`super::Ipv6Packet`]'s extension-header walk points at;
//! only the checksum differs. After an address rewrite, update a stored checksum
//! with [`checksum::update_addr_v6`] (through
//! [`UdpDatagram::update_checksum_with`] for UDP).
//!
//! UDP over IPv6 (RFC 8200 §8.1): the checksum is mandatory. A received `0` is
//! invalid ([`UdpDatagram::verify_checksum_v6`] says false: drop and count it),
//! and a computed `0` is sent as `0xffff`.

use std::net::Ipv6Addr;

use super::checksum;
use super::ipv6::next_header;
use super::{TcpSegment, UdpDatagram};

impl<T: AsRef<[u8]>> TcpSegment<T> {
    /// True when the checksum over the IPv6 pseudo-header and the whole buffer
    /// (the upper-layer length) is correct.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::upper_layer_v6(src, dst, next_header::TCP, self.as_bytes()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    /// Computes and stores the checksum over the IPv6 pseudo-header and the whole
    /// buffer.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::upper_layer_v6(src, dst, next_header::TCP, self.as_bytes());
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    /// The ones-complement sum of the datagram's `len` bytes (header words from
    /// the getters, then the payload, which starts at the even offset 8).
    fn sum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
        let header = u32::from(self.src_port()) + u32::from(self.dst_port()) + u32::from(self.len()) + u32::from(self.checksum());
        checksum::pseudo_header_v6(src, dst, next_header::UDP, u32::from(self.len())) + header + checksum::sum(self.payload())
    }

    /// True when the checksum is present and correct over the IPv6 pseudo-header.
    /// A `0` checksum is invalid over IPv6 and gives false.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        self.checksum() != 0 && checksum::fold(self.sum_v6(src, dst)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    /// Computes and stores the checksum over the IPv6 pseudo-header; a computed
    /// `0` is stored as `0xffff`.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = !checksum::fold(self.sum_v6(src, dst));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_fixtures::scapy;
    use crate::wire::Ipv6Packet;
    use etherparse::{Ipv6Header, TcpHeader, UdpHeader};
    use proptest::prelude::*;

    /// The L4 bytes of a scapy frame and its addresses.
    fn l4(name: &str) -> (Vec<u8>, Ipv6Addr, Ipv6Addr) {
        let f = scapy(name);
        let p = Ipv6Packet::new_checked(&f[14..]).expect("ipv6");
        (p.payload().to_vec(), p.src_addr(), p.dst_addr())
    }

    #[test]
    fn scapy_tcp_checksum() {
        let (mut b, s, d) = l4("tcp");
        let mut seg = TcpSegment::new_checked(&mut b[..]).expect("tcp");
        assert!(seg.verify_checksum_v6(s, d));
        assert!(!seg.verify_checksum_v6(s, Ipv6Addr::LOCALHOST));
        let stored = seg.checksum();
        assert_eq!(stored, 0x4159);
        seg.fill_checksum_v6(s, d);
        assert_eq!(seg.checksum(), stored);
        // Not the IPv4 sum of the same bytes.
        seg.set_checksum(stored.wrapping_add(1));
        assert!(!seg.verify_checksum_v6(s, d));
    }

    #[test]
    fn scapy_udp_checksum() {
        let (mut b, s, d) = l4("udp");
        let mut dg = UdpDatagram::new_checked(&mut b[..]).expect("udp");
        assert_eq!(dg.checksum(), 0x4329);
        assert!(dg.verify_checksum_v6(s, d));
        dg.fill_checksum_v6(s, d);
        assert_eq!(dg.checksum(), 0x4329);
        // A zero checksum is invalid over IPv6 (valid "absent" over IPv4).
        dg.set_checksum(0);
        assert!(!dg.verify_checksum_v6(s, d));
        assert!(dg.verify_checksum(std::net::Ipv4Addr::UNSPECIFIED, std::net::Ipv4Addr::UNSPECIFIED));
    }

    /// A UDP datagram whose correct checksum computes to 0 is sent as 0xffff.
    #[test]
    fn udp_zero_is_sent_as_ffff() {
        let (s, d) = (Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
        let mut b = [0u8; 10];
        b[0..2].copy_from_slice(&1u16.to_be_bytes());
        b[4..6].copy_from_slice(&10u16.to_be_bytes());
        // Choose the last two payload bytes so that the full sum is 0xffff.
        let mut dg = UdpDatagram::new_checked(&mut b[..]).expect("udp");
        dg.set_checksum(0);
        let partial = checksum::fold(dg.sum_v6(s, d));
        let fill = 0xffff - partial;
        dg.payload_mut().copy_from_slice(&fill.to_be_bytes());
        dg.fill_checksum_v6(s, d);
        assert_eq!(dg.checksum(), 0xffff);
        assert!(dg.verify_checksum_v6(s, d));
    }

    fn v6(b: [u8; 16]) -> Ipv6Addr {
        Ipv6Addr::from(b)
    }

    proptest! {
        /// FULLNAT/NAT-style rewrite of both addresses and a port of an IPv6/TCP
        /// segment built by etherparse: the incremental checksum equals
        /// etherparse's full recomputation for the new addresses.
        #[test]
        fn tcp_rewrite_matches_etherparse(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nsrc in any::<[u8; 16]>(), ndst in any::<[u8; 16]>(),
            sport in any::<u16>(), dport in any::<u16>(), nport in any::<u16>(), seq in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut h = TcpHeader::new(sport, dport, seq, 1000);
            h.syn = payload.is_empty();
            h.ack = !h.syn;
            h.checksum = h.calc_checksum_ipv6_raw(src, dst, &payload).expect("len");
            let mut b = h.to_bytes().to_vec();
            b.extend_from_slice(&payload);
            let mut seg = TcpSegment::new_checked(&mut b[..]).expect("tcp");
            prop_assert!(seg.verify_checksum_v6(v6(src), v6(dst)));
            let mut c = checksum::update_addr_v6(seg.checksum(), v6(src), v6(nsrc));
            c = checksum::update_addr_v6(c, v6(dst), v6(ndst));
            c = checksum::update_u16(c, dport, nport);
            seg.set_dst_port(nport);
            seg.set_checksum(c);
            h.destination_port = nport;
            let full = h.calc_checksum_ipv6_raw(nsrc, ndst, &payload).expect("len");
            prop_assert_eq!(c, full);
            prop_assert!(seg.verify_checksum_v6(v6(nsrc), v6(ndst)));
            seg.fill_checksum_v6(v6(nsrc), v6(ndst));
            prop_assert_eq!(seg.checksum(), full);
        }

        /// The same for UDP, through `update_checksum_with` (0 stays invalid, a 0
        /// result is stored as 0xffff, like etherparse).
        #[test]
        fn udp_rewrite_matches_etherparse(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nsrc in any::<[u8; 16]>(), ndst in any::<[u8; 16]>(),
            sport in any::<u16>(), dport in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let ip = |s, d| Ipv6Header { source: s, destination: d, ..Ipv6Header::default() };
            let h = UdpHeader::with_ipv6_checksum(sport, dport, &ip(src, dst), &payload).expect("len");
            let mut b = h.to_bytes().to_vec();
            b.extend_from_slice(&payload);
            let mut dg = UdpDatagram::new_checked(&mut b[..]).expect("udp");
            prop_assert!(dg.verify_checksum_v6(v6(src), v6(dst)));
            dg.update_checksum_with(|c| checksum::update_addr_v6(c, v6(src), v6(nsrc)));
            dg.update_checksum_with(|c| checksum::update_addr_v6(c, v6(dst), v6(ndst)));
            let full = UdpHeader::with_ipv6_checksum(sport, dport, &ip(nsrc, ndst), &payload).expect("len");
            prop_assert_eq!(dg.checksum(), full.checksum);
            prop_assert!(dg.verify_checksum_v6(v6(nsrc), v6(ndst)));
        }

        /// NAT64-style translation of a TCP segment from IPv4 to IPv6: swapping the
        /// IPv4 pseudo-header's sum for the IPv6 one with `update_region` gives
        /// etherparse's IPv6 checksum.
        #[test]
        fn v4_to_v6_pseudo_header_swap_matches_etherparse(
            src4 in any::<[u8; 4]>(), dst4 in any::<[u8; 4]>(), src6 in any::<[u8; 16]>(), dst6 in any::<[u8; 16]>(),
            seq in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut h = TcpHeader::new(40000, 80, seq, 1000);
            h.checksum = h.calc_checksum_ipv4_raw(src4, dst4, &payload).expect("len");
            let len = (h.header_len() + payload.len()) as u16;
            let old = checksum::pseudo_header_v4(src4.into(), dst4.into(), next_header::TCP, len);
            let new = checksum::pseudo_header_v6(v6(src6), v6(dst6), next_header::TCP, u32::from(len));
            let c = checksum::update_region(h.checksum, old, new);
            prop_assert_eq!(c, h.calc_checksum_ipv6_raw(src6, dst6, &payload).expect("len"));
        }

        /// `upper_layer_v6` over a segment with a zeroed checksum field equals
        /// etherparse's TCP checksum (pseudo-header with a 32-bit length).
        #[test]
        fn upper_layer_v6_matches_etherparse(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
                                            payload in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let h = TcpHeader::new(1, 2, 3, 4);
            let want = h.calc_checksum_ipv6_raw(src, dst, &payload).expect("len");
            let mut b = h.to_bytes().to_vec();
            b.extend_from_slice(&payload);
            prop_assert_eq!(checksum::upper_layer_v6(v6(src), v6(dst), next_header::TCP, &b), want);
        }
    }
}
