//! IP tunnelling (`ipvsadm -i`, keepalived `lb_kind TUN`).
//!
//! The client's packet is wrapped, untouched, in an outer IPv4 header (protocol
//! 4, IPIP) from the director's address to the real server. The real server
//! decapsulates it, sees the VIP as destination (held on a non-ARPing device) and
//! answers the client directly. The outer header copies the inner TOS, TTL
//! (already decremented, [`super::ttl`]) and DF bit, as the kernel's IPVS
//! does, and carries its own identification.
//!
//! **MTU.** Encapsulation adds 20 bytes. When the result exceeds the egress
//! port's MTU: an inner packet with DF set is answered with ICMP "fragmentation
//! needed" (MTU = port MTU − 20) to the client and dropped, so the client's path
//! MTU discovery shrinks its packets; an inner packet without DF is encapsulated
//! and the *outer* packet is fragmented (the real server reassembles it before
//! decapsulating). Both are what Linux IPVS does (`ensure_mtu_is_adequate`, then
//! `ip_local_out` fragmenting the tunnel packet).

use std::net::Ipv4Addr;

use crate::frame::Frame;
use crate::wire::{ip_proto, ipv4, Ipv4Packet, WireError};

use super::FwdError;

/// Bytes the outer header adds.
pub const OVERHEAD: usize = ipv4::HEADER_LEN;

/// Facts about the inner packet the MTU decision needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inner {
    /// IP total length of the inner packet.
    pub len: usize,
    /// The inner packet forbids fragmentation.
    pub dont_frag: bool,
}

/// What [`transmit`] made of a client's packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// Encapsulated whole: send it.
    Whole,
    /// Encapsulated, then the outer packet was fragmented: send it and the
    /// fragments added to `more`.
    Fragmented,
    /// Above the path MTU with DF: answer "fragmentation needed" with this
    /// next-hop MTU, and send nothing.
    TooBig {
        /// The MTU the client must fit (egress MTU − [`OVERHEAD`]).
        mtu: u16,
    },
}

/// TUN's transmit policy for the client's packet at `l2_len`, towards the real
/// server `real` from our address `src` on a port of MTU `mtu` (see the MTU
/// notes above): the outer header gets identification `*ident + 1` (which is
/// stored back) when the packet is encapsulated. Errors: the inner packet is
/// unreadable ([`FwdError::Wire`]) or the buffer has no room ([`FwdError::NoRoom`]).
#[allow(clippy::too_many_arguments)]
pub fn transmit<F: Frame>(
    frame: &mut F,
    l2_len: usize,
    src: Ipv4Addr,
    real: Ipv4Addr,
    mtu: usize,
    ident: &mut u16,
    more: &mut Vec<F>,
) -> Result<Transmit, FwdError> {
    let inner = inner(frame.data(), l2_len)?;
    let too_big = inner.len + OVERHEAD > mtu;
    if too_big && inner.dont_frag {
        return Ok(Transmit::TooBig { mtu: mtu.saturating_sub(OVERHEAD).min(usize::from(u16::MAX)) as u16 });
    }
    *ident = ident.wrapping_add(1);
    encapsulate(frame, l2_len, src, real, *ident)?;
    if !too_big {
        return Ok(Transmit::Whole);
    }
    crate::frag::fragment(frame, l2_len, mtu, more).map_err(|_| FwdError::NoRoom)?;
    Ok(Transmit::Fragmented)
}

/// Reads the inner packet's length and DF bit.
pub fn inner(frame: &[u8], l2_len: usize) -> Result<Inner, FwdError> {
    let ip = Ipv4Packet::new_checked(frame.get(l2_len..).ok_or(WireError::Truncated)?)?;
    Ok(Inner { len: usize::from(ip.total_len()), dont_frag: ip.dont_frag() })
}

/// Wraps the IPv4 packet at `l2_len` in an outer header `src → dst`. Ethernet
/// padding after the inner packet is removed first.
pub fn encapsulate<F: Frame>(frame: &mut F, l2_len: usize, src: Ipv4Addr, dst: Ipv4Addr, ident: u16) -> Result<(), FwdError> {
    let (tos, ttl, df, inner_len) = {
        let ip = Ipv4Packet::new_checked(frame.data().get(l2_len..).ok_or(WireError::Truncated)?)?;
        (ip.dscp_ecn(), ip.ttl(), ip.dont_frag(), usize::from(ip.total_len()))
    };
    let padding = frame.len() - l2_len - inner_len;
    if padding > 0 && !frame.trim(padding) {
        return Err(FwdError::NoRoom);
    }
    let total = u16::try_from(inner_len + OVERHEAD).map_err(|_| FwdError::NoRoom)?;
    if !frame.insert_gap(l2_len, OVERHEAD) {
        return Err(FwdError::NoRoom);
    }
    let data = frame.data_mut();
    // The gap holds whatever bytes were there (the Ethernet header moved
    // out of it): start from zeros, or the reserved flag bit may be set.
    data[l2_len..l2_len + ipv4::HEADER_LEN].fill(0);
    let mut outer = Ipv4Packet::new_unchecked(&mut data[l2_len..]);
    outer.set_version_and_header_len(ipv4::HEADER_LEN);
    outer.set_dscp_ecn(tos);
    outer.set_total_len(total);
    outer.set_ident(ident);
    outer.set_frag_offset(0);
    outer.set_more_frags(false);
    outer.set_dont_frag(df);
    outer.set_ttl(ttl);
    outer.set_protocol(ip_proto::IPIP);
    outer.set_src_addr(src);
    outer.set_dst_addr(dst);
    outer.fill_checksum();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;
    use crate::wire::builder::{tcp_frame, TcpParams};
    use crate::wire::ethernet::HEADER_LEN;
    use crate::wire::MacAddr;

    const DIR: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    const RS: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);

    fn client_packet(payload: usize, vlan: Option<u16>) -> Vec<u8> {
        tcp_frame(&TcpParams {
            src_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            vlan,
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(10, 0, 0, 100),
            ttl: 61,
            payload: vec![0xab; payload],
            ..TcpParams::default()
        })
    }

    #[test]
    fn encapsulation_wraps_the_untouched_packet() {
        for vlan in [None, Some(7)] {
            let original = client_packet(100, vlan);
            let l2 = if vlan.is_some() { 18 } else { HEADER_LEN };
            let mut f = VecFrame::new(&original);
            encapsulate(&mut f, l2, DIR, RS, 0x4242).expect("room");
            let out = f.to_vec();
            assert_eq!(out.len(), original.len() + 20);
            assert_eq!(&out[..l2], &original[..l2], "Ethernet header (and VLAN tag) kept");
            assert_eq!(&out[l2 + 20..], &original[l2..], "inner packet untouched");
            let outer = Ipv4Packet::new_checked(&out[l2..]).expect("outer parses");
            assert_eq!(outer.protocol(), ip_proto::IPIP);
            assert_eq!((outer.src_addr(), outer.dst_addr()), (DIR, RS));
            assert_eq!(usize::from(outer.total_len()), original.len() - l2 + 20);
            assert_eq!((outer.ttl(), outer.dont_frag(), outer.ident()), (61, true, 0x4242));
            assert!(outer.verify_checksum());
        }
    }

    #[test]
    fn the_outer_header_starts_from_zeros_whatever_the_gap_held() {
        // A sender MAC with its high bits set (Intel's 0x90...): its bytes are
        // in the gap the Ethernet header leaves when it moves.
        let mut original = client_packet(10, None);
        original[6..12].copy_from_slice(&[0xff; 6]);
        original[..6].copy_from_slice(&[0xff; 6]);
        let mut f = VecFrame::new(&original);
        encapsulate(&mut f, HEADER_LEN, DIR, RS, 7).expect("room");
        let out = f.to_vec();
        assert_eq!(out[HEADER_LEN + 6] & 0x80, 0, "the reserved flag bit is clear");
        assert_eq!(out[HEADER_LEN + 1], original[HEADER_LEN + 1], "TOS copied, nothing else");
    }

    #[test]
    fn ethernet_padding_is_not_tunnelled() {
        let mut padded = client_packet(0, None);
        padded.resize(60, 0);
        let mut f = VecFrame::new(&padded);
        encapsulate(&mut f, HEADER_LEN, DIR, RS, 1).expect("room");
        assert_eq!(f.len(), HEADER_LEN + 20 + 40);
    }

    #[test]
    fn outer_fragments_reassemble_to_the_tunnel_packet() {
        let original = client_packet(1460, None);
        let mut f = VecFrame::new(&original);
        encapsulate(&mut f, HEADER_LEN, DIR, RS, 9).expect("room");
        // Clear DF on the outer header to allow fragmentation (inner had no DF).
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut f.data_mut()[HEADER_LEN..]);
            ip.set_dont_frag(false);
            ip.fill_checksum();
        }
        let tunnel = f.to_vec();
        let mut more = Vec::new();
        crate::frag::fragment(&mut f, HEADER_LEN, 1500, &mut more).expect("fragments");
        assert_eq!(more.len(), 1);
        let frags: Vec<Vec<u8>> = std::iter::once(f.to_vec()).chain(more.iter().map(VecFrame::to_vec)).collect();
        let mut payload = Vec::new();
        for (i, fr) in frags.iter().enumerate() {
            assert!(fr.len() - HEADER_LEN <= 1500);
            let ip = Ipv4Packet::new_checked(&fr[HEADER_LEN..]).expect("fragment parses");
            assert!(ip.verify_checksum());
            assert_eq!(usize::from(ip.frag_offset()), payload.len());
            assert_eq!(ip.more_frags(), i + 1 < frags.len());
            assert_eq!(ip.ident(), 9);
            payload.extend_from_slice(ip.payload());
        }
        assert_eq!(&payload[..], &tunnel[HEADER_LEN + 20..]);
    }
}
