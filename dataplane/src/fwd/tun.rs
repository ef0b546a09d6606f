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
use crate::wire::{checksum, ethernet, ip_proto, ipv4, WireError};

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
#[inline]
pub fn transmit<F: Frame>(
    frame: &mut F,
    l2_len: usize,
    src: Ipv4Addr,
    real: Ipv4Addr,
    mtu: usize,
    ident: &mut u16,
    more: &mut Vec<F>,
) -> Result<Transmit, FwdError> {
    let inner = InnerHeader::read(frame.data(), l2_len)?;
    let too_big = inner.len + OVERHEAD > mtu;
    if too_big && inner.dont_frag {
        return Ok(Transmit::TooBig { mtu: mtu.saturating_sub(OVERHEAD).min(usize::from(u16::MAX)) as u16 });
    }
    *ident = ident.wrapping_add(1);
    wrap(frame, l2_len, &inner, src, real, *ident)?;
    if !too_big {
        return Ok(Transmit::Whole);
    }
    crate::frag::fragment(frame, l2_len, mtu, more).map_err(|_| FwdError::NoRoom)?;
    Ok(Transmit::Fragmented)
}

/// Reads the inner packet's length and DF bit.
pub fn inner(frame: &[u8], l2_len: usize) -> Result<Inner, FwdError> {
    let h = InnerHeader::read(frame, l2_len)?;
    Ok(Inner { len: h.len, dont_frag: h.dont_frag })
}

/// What the outer header copies from the inner one, read once.
#[derive(Clone, Copy, Debug)]
struct InnerHeader {
    /// IP total length of the inner packet.
    len: usize,
    /// The inner packet forbids fragmentation.
    dont_frag: bool,
    /// The inner DSCP/ECN byte.
    tos: u8,
    /// The inner TTL (already decremented).
    ttl: u8,
}

impl InnerHeader {
    /// The header of the IPv4 packet at `l2_len`, checked as
    /// [`crate::wire::Ipv4Packet::new_checked`] does (the same checks in the same order,
    /// the same errors), read from one fixed-size view of its first 20 bytes.
    #[inline]
    fn read(frame: &[u8], l2_len: usize) -> Result<Self, FwdError> {
        let ip = frame.get(l2_len..).ok_or(WireError::Truncated)?;
        let h: &[u8; ipv4::HEADER_LEN] = ip.first_chunk().ok_or(WireError::Truncated)?;
        if h[0] >> 4 != 4 {
            return Err(WireError::Malformed("ipv4: version is not 4").into());
        }
        let header_len = usize::from(h[0] & 0x0f) * 4;
        if header_len < ipv4::HEADER_LEN {
            return Err(WireError::Malformed("ipv4: header length below 20").into());
        }
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len < header_len {
            return Err(WireError::Malformed("ipv4: total length below header length").into());
        }
        if len > ip.len() {
            return Err(WireError::Truncated.into());
        }
        Ok(InnerHeader { len, dont_frag: h[6] & 0x40 != 0, tos: h[1], ttl: h[8] })
    }
}

/// Wraps the IPv4 packet at `l2_len` in an outer header `src → dst`. Ethernet
/// padding after the inner packet is removed first.
pub fn encapsulate<F: Frame>(frame: &mut F, l2_len: usize, src: Ipv4Addr, dst: Ipv4Addr, ident: u16) -> Result<(), FwdError> {
    let inner = InnerHeader::read(frame.data(), l2_len)?;
    wrap(frame, l2_len, &inner, src, dst, ident)
}

/// [`encapsulate`] with the inner header already read.
#[inline]
fn wrap<F: Frame>(frame: &mut F, l2_len: usize, inner: &InnerHeader, src: Ipv4Addr, dst: Ipv4Addr, ident: u16) -> Result<(), FwdError> {
    let padding = frame.len() - l2_len - inner.len;
    if padding > 0 && !frame.trim(padding) {
        return Err(FwdError::NoRoom);
    }
    let total = u16::try_from(inner.len + OVERHEAD).map_err(|_| FwdError::NoRoom)?;
    let header = outer_header(inner, total, ident, src, dst);
    if !open_gap(frame, l2_len, &header) {
        return Err(FwdError::NoRoom);
    }
    Ok(())
}

/// The outer IPv4 header, checksum included: version 4, no options, the
/// inner TOS, TTL and DF, total length `total`, identification `ident`,
/// protocol IPIP, `src → dst`. The checksum is summed over these known
/// 16-bit words (the fragment offset and the checksum field are zero).
#[inline]
fn outer_header(inner: &InnerHeader, total: u16, ident: u16, src: Ipv4Addr, dst: Ipv4Addr) -> [u8; ipv4::HEADER_LEN] {
    let flags: u8 = if inner.dont_frag { 0x40 } else { 0 };
    let (src, dst) = (u32::from(src), u32::from(dst));
    let sum = u32::from(u16::from_be_bytes([0x45, inner.tos]))
        + u32::from(total)
        + u32::from(ident)
        + u32::from(u16::from_be_bytes([flags, 0]))
        + u32::from(u16::from_be_bytes([inner.ttl, ip_proto::IPIP]))
        + (src >> 16)
        + (src & 0xffff)
        + (dst >> 16)
        + (dst & 0xffff);
    let [c0, c1] = (!checksum::fold(sum)).to_be_bytes();
    let [t0, t1] = total.to_be_bytes();
    let [i0, i1] = ident.to_be_bytes();
    let [s0, s1, s2, s3] = src.to_be_bytes();
    let [d0, d1, d2, d3] = dst.to_be_bytes();
    [0x45, inner.tos, t0, t1, i0, i1, flags, 0, inner.ttl, ip_proto::IPIP, c0, c1, s0, s1, s2, s3, d0, d1, d2, d3]
}

/// Opens the gap for the outer header after the Ethernet header of
/// `l2_len` bytes, as [`Frame::insert_gap`] does (false, the frame
/// unchanged, without headroom), and writes `outer` into it. An untagged
/// or tagged Ethernet header moves as one fixed-size copy.
#[inline]
fn open_gap<F: Frame>(frame: &mut F, l2_len: usize, outer: &[u8; OVERHEAD]) -> bool {
    match l2_len {
        ethernet::HEADER_LEN => open_gap_behind::<F, { ethernet::HEADER_LEN }>(frame, outer),
        ethernet::VLAN_HEADER_LEN => open_gap_behind::<F, { ethernet::VLAN_HEADER_LEN }>(frame, outer),
        _ => {
            if !frame.insert_gap(l2_len, OVERHEAD) {
                return false;
            }
            match frame.data_mut().get_mut(l2_len..l2_len + OVERHEAD) {
                Some(gap) => {
                    gap.copy_from_slice(outer);
                    true
                }
                None => false,
            }
        }
    }
}

/// [`open_gap`] behind an Ethernet header of `L2` bytes.
#[inline]
fn open_gap_behind<F: Frame, const L2: usize>(frame: &mut F, outer: &[u8; OVERHEAD]) -> bool {
    let Some(&l2_header) = frame.data().first_chunk::<L2>() else { return false };
    if !frame.prepend(OVERHEAD) {
        return false;
    }
    match frame.data_mut().get_mut(..L2 + OVERHEAD) {
        Some(front) => {
            front[..L2].copy_from_slice(&l2_header);
            front[L2..].copy_from_slice(outer);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;
    use crate::wire::builder::{tcp_frame, TcpParams};
    use crate::wire::ethernet::HEADER_LEN;
    use crate::wire::{Ipv4Packet, MacAddr};

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

    /// [`encapsulate`] as it was written first, by the header's setters
    /// and a full checksum.
    fn encapsulate_by_setters(frame: &mut VecFrame, l2_len: usize, src: Ipv4Addr, dst: Ipv4Addr, ident: u16) -> Result<(), FwdError> {
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

    /// [`InnerHeader::read`] as it was written first, by the packet parser.
    fn read_by_parser(frame: &[u8], l2_len: usize) -> Result<(usize, bool, u8, u8), FwdError> {
        let ip = Ipv4Packet::new_checked(frame.get(l2_len..).ok_or(WireError::Truncated)?)?;
        Ok((usize::from(ip.total_len()), ip.dont_frag(), ip.dscp_ecn(), ip.ttl()))
    }

    proptest::proptest! {
        /// The inner header read from a fixed-size view gives the parser's
        /// answer (fields or error) for any bytes.
        #[test]
        fn inner_header_read_agrees_with_the_parser(
            mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            l2_len in 0usize..24,
            version_ihl in proptest::sample::select(vec![0x45u8, 0x46, 0x44, 0x4f, 0x55, 0x65]),
            total_len in proptest::prelude::any::<u16>(),
            short_len in 0u16..80,
        ) {
            if let Some(h) = bytes.get_mut(l2_len..).filter(|h| h.len() >= 4) {
                h[0] = version_ihl;
                let len = if total_len % 2 == 0 { short_len } else { total_len };
                h[2..4].copy_from_slice(&len.to_be_bytes());
            }
            let got = InnerHeader::read(&bytes, l2_len).map(|h| (h.len, h.dont_frag, h.tos, h.ttl));
            proptest::prop_assert_eq!(got, read_by_parser(&bytes, l2_len));
        }

        /// The outer header written at once, with its checksum summed over
        /// known words, is the one the setters and a full checksum write.
        #[test]
        fn encapsulation_agrees_with_the_setters(
            payload in 0usize..64,
            pad in 0usize..20,
            vlan in proptest::option::of(0u16..4096),
            tos: u8,
            ttl: u8,
            df: bool,
            ident: u16,
            src: u32,
            dst: u32,
            mac: [u8; 12],
        ) {
            let mut original = client_packet(payload, vlan);
            original[..12].copy_from_slice(&mac);
            let l2 = if vlan.is_some() { 18 } else { HEADER_LEN };
            {
                let mut ip = Ipv4Packet::new_unchecked(&mut original[l2..]);
                ip.set_dscp_ecn(tos);
                ip.set_ttl(ttl);
                ip.set_dont_frag(df);
                ip.fill_checksum();
            }
            original.resize(original.len() + pad, 0xee);
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let mut fast = VecFrame::new(&original);
            let mut reference = VecFrame::new(&original);
            let got = encapsulate(&mut fast, l2, src, dst, ident);
            let expect = encapsulate_by_setters(&mut reference, l2, src, dst, ident);
            proptest::prop_assert_eq!(got, expect);
            proptest::prop_assert_eq!(fast.to_vec(), reference.to_vec());
        }
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
