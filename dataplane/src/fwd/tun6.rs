//! IP tunnelling with IPv6 (`ipvsadm -i` with an IPv6 real server or an IPv6
//! service; keepalived `lb_kind TUN`).
//!
//! Linux IPVS picks the outer header by the real server's family and the
//! inner by the client's (`ip_vs_tunnel_xmit_v6` for an IPv6 real server,
//! `ip_vs_tunnel_xmit` for an IPv4 one, the inner packet either way), so
//! three combinations exist besides IPIP ([`super::tun`]), all implemented
//! here with the default `--tun-type ipip` encapsulation (plain IP in IP;
//! the GUE and GRE tunnel types are not implemented, as for IPv4):
//!
//! * IPv6 in IPv6 (outer next header 41, RFC 2473) for an IPv6 service and an
//!   IPv6 real server;
//! * IPv4 in IPv6 (outer next header 4) for an IPv4 service and an IPv6 real server;
//! * IPv6 in IPv4 (outer protocol 41, RFC 4213) for an IPv6 service and an
//!   IPv4 real server.
//!
//! The outer header copies the inner traffic class / TOS and hop limit / TTL
//! (already decremented, [`super::hop6`], [`super::ttl`]); its ECN field is
//! the inner one except that CE becomes ECT(0) (`INET_ECN_encapsulate`, as
//! IPVS). An outer IPv6 header has flow label 0; an outer IPv4 header around
//! an IPv6 packet has DF clear (IPVS's `df = 0` for an IPv6 inner packet) and
//! the identification the caller's counter gives it.
//!
//! **MTU.** The director never fragments IPv6. An inner IPv6 packet that does
//! not fit the egress MTU once encapsulated is answered with ICMPv6 Packet
//! Too Big (MTU = egress MTU − the outer header) to the client and dropped
//! ([`Transmit6::TooBig6`]; IPVS's `__mtu_check_toobig_v6`). An inner IPv4
//! packet in IPv6 follows the IPv4 rule of [`super::tun`]: with DF, ICMP
//! "fragmentation needed" ([`Transmit6::TooBig4`]); without DF, the *inner*
//! packet is fragmented to fit and each fragment is encapsulated (the outer
//! IPv6 packet is never fragmented). An egress MTU that leaves less than the
//! IPv6 minimum of 1280 bytes for an inner IPv6 packet cannot carry the
//! tunnel at all (IPVS refuses the route the same way).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::frame::Frame;
use crate::wire::ipv6::{self, next_header};
use crate::wire::{ip_proto, ipv4, Ipv4Packet, Ipv6Packet, WireError};

use super::FwdError;

/// Bytes an outer IPv6 header adds.
pub const OVERHEAD6: usize = ipv6::HEADER_LEN;

/// What [`transmit6`] or [`transmit_6in4`] made of a client's packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmit6 {
    /// Encapsulated whole: send it.
    Whole,
    /// The inner IPv4 packet was fragmented and every fragment encapsulated:
    /// send the frame and the frames added to `more`.
    Fragmented,
    /// An inner IPv6 packet too big for the tunnel: answer ICMPv6 Packet Too
    /// Big with this MTU ([`super::icmp6_err::make_error6`]), send nothing.
    TooBig6 {
        /// The MTU the client must fit (egress MTU − outer header).
        mtu: u16,
    },
    /// An inner IPv4 packet with DF too big for the tunnel: answer ICMP
    /// "fragmentation needed" with this MTU ([`super::icmp_err::make_error`]),
    /// send nothing.
    TooBig4 {
        /// The MTU the client must fit (egress MTU − outer header).
        mtu: u16,
    },
}

/// TUN towards an IPv6 real server `real` from our address `src`, on a port
/// of MTU `mtu`: the client's packet at `l2_len` (IPv6 or IPv4) is
/// encapsulated in IPv6 after the MTU policy of the module documentation.
/// Fragments of an inner IPv4 packet are appended to `more`.
pub fn transmit6<F: Frame>(
    frame: &mut F,
    l2_len: usize,
    src: Ipv6Addr,
    real: Ipv6Addr,
    mtu: usize,
    more: &mut Vec<F>,
) -> Result<Transmit6, FwdError> {
    let inner = Inner::read(frame.data(), l2_len)?;
    let room = mtu.saturating_sub(OVERHEAD6);
    if inner.len <= room {
        encapsulate6(frame, l2_len, src, real)?;
        return Ok(Transmit6::Whole);
    }
    if inner.ipv6 {
        if room < usize::from(ipv6::MIN_MTU) {
            return Err(FwdError::Untranslatable("tun6: egress MTU leaves less than 1280 bytes for an IPv6 packet"));
        }
        return Ok(Transmit6::TooBig6 { mtu: clamp16(room) });
    }
    if inner.dont_frag {
        return Ok(Transmit6::TooBig4 { mtu: clamp16(room) });
    }
    let first_new = more.len();
    crate::frag::fragment(frame, l2_len, room, more)?;
    encapsulate6(frame, l2_len, src, real)?;
    for f in more.iter_mut().skip(first_new) {
        encapsulate6(f, l2_len, src, real)?;
    }
    Ok(Transmit6::Fragmented)
}

/// TUN from an IPv6 service to an IPv4 real server `real` from our address
/// `src`, on a port of MTU `mtu`: the client's IPv6 packet at `l2_len` is
/// encapsulated in IPv4 (protocol 41) with identification `*ident + 1`
/// (stored back), or, when it does not fit, answered with Packet Too Big.
pub fn transmit_6in4<F: Frame>(
    frame: &mut F,
    l2_len: usize,
    src: Ipv4Addr,
    real: Ipv4Addr,
    mtu: usize,
    ident: &mut u16,
) -> Result<Transmit6, FwdError> {
    let inner = Inner::read(frame.data(), l2_len)?;
    if !inner.ipv6 {
        return Err(FwdError::Protocol(ip_proto::IPIP));
    }
    let room = mtu.saturating_sub(ipv4::HEADER_LEN);
    if inner.len > room {
        if room < usize::from(ipv6::MIN_MTU) {
            return Err(FwdError::Untranslatable("tun6: egress MTU leaves less than 1280 bytes for an IPv6 packet"));
        }
        return Ok(Transmit6::TooBig6 { mtu: clamp16(room) });
    }
    *ident = ident.wrapping_add(1);
    encapsulate_6in4(frame, l2_len, src, real, *ident)?;
    Ok(Transmit6::Whole)
}

/// Wraps the IPv6 or IPv4 packet at `l2_len` in an outer IPv6 header
/// `src → dst` (next header 41 or 4; see the module documentation for the
/// copied fields). Ethernet padding after the inner packet is removed first.
pub fn encapsulate6<F: Frame>(frame: &mut F, l2_len: usize, src: Ipv6Addr, dst: Ipv6Addr) -> Result<(), FwdError> {
    let inner = Inner::read(frame.data(), l2_len)?;
    let payload_len = u16::try_from(inner.len).map_err(|_| FwdError::NoRoom)?;
    make_room(frame, l2_len, &inner, OVERHEAD6)?;
    let next = if inner.ipv6 { next_header::IPV6 } else { next_header::IPIP };
    let ip = &mut frame.data_mut()[l2_len..];
    ipv6::fill_header(ip, src, dst, next, payload_len, inner.hop_limit)?;
    Ipv6Packet::new_unchecked(ip).set_traffic_class(ecn_encapsulate(inner.traffic_class));
    super::set_ethertype(frame, l2_len, crate::wire::ethertype::IPV6);
    Ok(())
}

/// Wraps the IPv6 packet at `l2_len` in an outer IPv4 header `src → dst`
/// (protocol 41, DF clear, identification `ident`). Ethernet padding after
/// the inner packet is removed first.
pub fn encapsulate_6in4<F: Frame>(frame: &mut F, l2_len: usize, src: Ipv4Addr, dst: Ipv4Addr, ident: u16) -> Result<(), FwdError> {
    let inner = Inner::read(frame.data(), l2_len)?;
    if !inner.ipv6 {
        return Err(FwdError::Protocol(ip_proto::IPIP));
    }
    let total = u16::try_from(inner.len + ipv4::HEADER_LEN).map_err(|_| FwdError::NoRoom)?;
    make_room(frame, l2_len, &inner, ipv4::HEADER_LEN)?;
    let ip = &mut frame.data_mut()[l2_len..];
    // The gap holds old bytes, and the flag setters keep the reserved bit.
    ip[..ipv4::HEADER_LEN].fill(0);
    let mut outer = Ipv4Packet::new_unchecked(ip);
    outer.set_version_and_header_len(ipv4::HEADER_LEN);
    outer.set_dscp_ecn(ecn_encapsulate(inner.traffic_class));
    outer.set_total_len(total);
    outer.set_ident(ident);
    outer.set_frag_offset(0);
    outer.set_more_frags(false);
    outer.set_dont_frag(false);
    outer.set_ttl(inner.hop_limit);
    outer.set_protocol(next_header::IPV6);
    outer.set_src_addr(src);
    outer.set_dst_addr(dst);
    outer.fill_checksum();
    super::set_ethertype(frame, l2_len, crate::wire::ethertype::IPV4);
    Ok(())
}

/// The outer ECN/DS byte for an inner one: DSCP copied, ECN copied but CE
/// sent as ECT(0) (RFC 6040's normal mode, Linux's `INET_ECN_encapsulate`).
pub fn ecn_encapsulate(inner: u8) -> u8 {
    const CE: u8 = 0b11;
    const ECT_0: u8 = 0b10;
    if inner & CE == CE {
        (inner & !CE) | ECT_0
    } else {
        inner
    }
}

/// What the encapsulation needs of the inner packet.
struct Inner {
    ipv6: bool,
    /// Its length (IPv6: 40 + payload length; IPv4: total length).
    len: usize,
    traffic_class: u8,
    hop_limit: u8,
    dont_frag: bool,
}

impl Inner {
    fn read(frame: &[u8], l2_len: usize) -> Result<Inner, FwdError> {
        let ip = frame.get(l2_len..).ok_or(WireError::Truncated)?;
        match ip.first().map(|b| b >> 4) {
            Some(6) => {
                let p = Ipv6Packet::new_checked(ip)?;
                let len = ipv6::HEADER_LEN + usize::from(p.payload_len());
                Ok(Inner { ipv6: true, len, traffic_class: p.traffic_class(), hop_limit: p.hop_limit(), dont_frag: true })
            }
            _ => {
                let p = Ipv4Packet::new_checked(ip)?;
                Ok(Inner {
                    ipv6: false,
                    len: usize::from(p.total_len()),
                    traffic_class: p.dscp_ecn(),
                    hop_limit: p.ttl(),
                    dont_frag: p.dont_frag(),
                })
            }
        }
    }
}

/// Removes padding after the inner packet and opens `overhead` bytes in front of it.
fn make_room<F: Frame>(frame: &mut F, l2_len: usize, inner: &Inner, overhead: usize) -> Result<(), FwdError> {
    let padding = frame.len() - l2_len - inner.len;
    if padding > 0 && !frame.trim(padding) {
        return Err(FwdError::NoRoom);
    }
    if !frame.insert_gap(l2_len, overhead) {
        return Err(FwdError::NoRoom);
    }
    Ok(())
}

fn clamp16(n: usize) -> u16 {
    n.min(usize::from(u16::MAX)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;
    use crate::fwd::fixtures6::{fixture, frame, ip_of, L2};

    const DIR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    const RS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);
    const DIR4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    const RS4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);

    fn ethertype(f: &VecFrame) -> [u8; 2] {
        let d = f.to_vec();
        [d[L2 - 2], d[L2 - 1]]
    }

    #[test]
    fn encapsulation_matches_scapy() {
        let cases = [
            ("IPv6 in IPv6: traffic class and hop limit copied, flow label 0", "tun_6in6_in", "tun_6in6_out"),
            ("IPv6 in IPv6: CE becomes ECT(0) outside", "tun_6in6_ce_in", "tun_6in6_ce_out"),
            ("IPv4 in IPv6", "tun_4in6_in", "tun_4in6_out"),
        ];
        for (what, input, expected) in cases {
            let mut f = frame(input);
            assert_eq!(transmit6(&mut f, L2, DIR6, RS6, 1500, &mut Vec::new()), Ok(Transmit6::Whole), "{what}");
            assert_eq!(ip_of(&f), fixture(expected), "{what}");
            assert_eq!(ethertype(&f), [0x86, 0xdd], "{what}");
        }
        let mut f = frame("tun_6in6_in");
        let mut ident = 0x4242;
        assert_eq!(transmit_6in4(&mut f, L2, DIR4, RS4, 1500, &mut ident), Ok(Transmit6::Whole));
        assert_eq!(ip_of(&f), fixture("tun_6in4_out"));
        assert_eq!((ident, ethertype(&f)), (0x4243, [0x08, 0x00]));
        // An IPv4 packet is not carried by the IPv6-in-IPv4 tunnel.
        let mut f = frame("tun_4in6_in");
        assert_eq!(transmit_6in4(&mut f, L2, DIR4, RS4, 1500, &mut ident), Err(FwdError::Protocol(4)));
    }

    #[test]
    fn ethernet_padding_is_not_tunnelled() {
        let mut padded = frame("tun_4in6_in").to_vec();
        let ip_len = padded.len() - L2;
        padded.resize(padded.len() + 7, 0);
        let mut f = VecFrame::new(&padded);
        encapsulate6(&mut f, L2, DIR6, RS6).expect("room");
        assert_eq!(f.len(), L2 + 40 + ip_len);
    }

    #[test]
    fn the_director_never_fragments_ipv6() {
        // 40 + 1420 = 1460 bytes of inner IPv6: fits 1500, not 1499.
        let mut f = frame("tun_6in6_big");
        let before = f.to_vec();
        assert_eq!(transmit6(&mut f, L2, DIR6, RS6, 1499, &mut Vec::new()), Ok(Transmit6::TooBig6 { mtu: 1459 }));
        assert_eq!(f.to_vec(), before, "nothing sent, nothing changed");
        assert_eq!(transmit6(&mut f, L2, DIR6, RS6, 1500, &mut Vec::new()), Ok(Transmit6::Whole));
        // In IPv4 the outer header costs 20.
        let mut f = frame("tun_6in6_big");
        assert_eq!(transmit_6in4(&mut f, L2, DIR4, RS4, 1479, &mut 0), Ok(Transmit6::TooBig6 { mtu: 1459 }));
        // A link that cannot carry 1280 bytes of IPv6 inside the tunnel.
        let mut f = frame("tun_6in6_big");
        assert!(matches!(transmit6(&mut f, L2, DIR6, RS6, 1300, &mut Vec::new()), Err(FwdError::Untranslatable(_))));
    }

    #[test]
    fn inner_ipv4_follows_the_df_bit() {
        let mut f = frame("tun_4in6_big_df");
        assert_eq!(transmit6(&mut f, L2, DIR6, RS6, 1500, &mut Vec::new()), Ok(Transmit6::TooBig4 { mtu: 1460 }));
        let inner = fixture("tun_4in6_big");
        let mut f = frame("tun_4in6_big");
        let mut more = Vec::new();
        assert_eq!(transmit6(&mut f, L2, DIR6, RS6, 1500, &mut more), Ok(Transmit6::Fragmented));
        assert_eq!(more.len(), 1);
        let mut payload = Vec::new();
        for out in std::iter::once(ip_of(&f)).chain(more.iter().map(ip_of)) {
            assert!(out.len() <= 1500);
            let outer = Ipv6Packet::new_checked(&out[..]).expect("outer");
            assert_eq!((outer.next_header(), outer.src_addr(), outer.dst_addr()), (next_header::IPIP, DIR6, RS6));
            let frag = Ipv4Packet::new_checked(outer.payload()).expect("inner fragment");
            assert!(frag.verify_checksum());
            assert_eq!(usize::from(frag.frag_offset()), payload.len());
            payload.extend_from_slice(frag.payload());
        }
        assert_eq!(payload, inner[20..]);
    }

    #[test]
    fn ecn_encapsulation() {
        assert_eq!(ecn_encapsulate(0xb8), 0xb8);
        assert_eq!(ecn_encapsulate(0xb9), 0xb9, "ECT(1)");
        assert_eq!(ecn_encapsulate(0xba), 0xba, "ECT(0)");
        assert_eq!(ecn_encapsulate(0xbb), 0xba, "CE");
    }

    #[test]
    fn garbage_is_refused() {
        for bytes in [vec![0x60; 20], vec![0x45; 10], vec![]] {
            let mut raw = vec![0u8; L2];
            raw.extend_from_slice(&bytes);
            let mut f = VecFrame::new(&raw);
            assert!(matches!(transmit6(&mut f, L2, DIR6, RS6, 1500, &mut Vec::new()), Err(FwdError::Wire(_))));
            assert!(matches!(encapsulate6(&mut f, L2, DIR6, RS6), Err(FwdError::Wire(_))));
            assert!(matches!(encapsulate_6in4(&mut f, L2, DIR4, RS4, 1), Err(FwdError::Wire(_))));
        }
    }

    #[test]
    fn stale_bytes_under_the_outer_ipv4_header_do_not_leak_into_it() {
        // MAC addresses of all ones: after the gap opens, old L2 bytes lie
        // where the outer flags go.
        let mut bytes = vec![0xff; L2 - 2];
        bytes.extend_from_slice(&[0x86, 0xdd]);
        bytes.extend_from_slice(&fixture("tun_6in6_in"));
        let mut f = VecFrame::new(&bytes);
        encapsulate_6in4(&mut f, L2, DIR4, RS4, 0x4243).expect("room");
        assert_eq!(ip_of(&f), fixture("tun_6in4_out"));
    }
}
