//! Neighbour discovery (RFC 4861): neighbour solicitations and advertisements,
//! the IPv6 analogue of ARP, and their link-layer address options.
//!
//! ```text
//!  0       8       16              31
//! +-------+-------+---------------+
//! | type  | code  |   checksum    |   type 135 (NS) or 136 (NA), code 0
//! +-------+-------+---------------+
//! |R|S|O| reserved (NA) / reserved (NS)
//! +-------------------------------+
//! |     target address (16 bytes) |
//! +-------------------------------+
//! | options: type, length (in 8-byte units, never 0), data ...
//! ```
//!
//! [`NeighborSolicit`] and [`NeighborAdvert`] view the whole ICMPv6 message;
//! `new_checked` validates the code, the target (never multicast) and the whole
//! option walk ([`NdOptions`]: every option inside the buffer, none of length 0),
//! so that afterwards no accessor can fail. The receiver still checks the IPv6
//! side ([`NeighborSolicit::check_addressing`], [`NeighborAdvert::check_addressing`]:
//! hop limit 255, the DAD rules) and the ICMPv6 checksum.
//!
//! [`fill_ns`], [`fill_na_reply`] and [`fill_unsolicited_na`] write complete
//! Ethernet/IPv6/ICMPv6 frames into a caller's buffer (no allocation), with the
//! multicast addresses of [`solicited_node`] and [`super::ipv6::multicast_mac`].

use std::net::Ipv6Addr;

use super::ethernet::{self, ethertype, MacAddr};
use super::icmpv6::{self, msg_type, Icmpv6Packet};
use super::ipv6::{self, next_header};
use super::WireError;

/// The hop limit of every neighbour discovery message: a receiver drops any
/// other value (it was forwarded by a router).
pub const HOP_LIMIT: u8 = 255;

/// Length of an NS or NA without options.
pub const MESSAGE_LEN: usize = 24;

/// Length of an Ethernet link-layer address option.
pub const LL_OPTION_LEN: usize = 8;

/// Option types.
pub mod option_type {
    /// Source link-layer address (in NS, RS, RA).
    pub const SOURCE_LL_ADDR: u8 = 1;
    /// Target link-layer address (in NA, redirect).
    pub const TARGET_LL_ADDR: u8 = 2;
    /// Prefix information (in RA).
    pub const PREFIX_INFO: u8 = 3;
    /// Redirected header.
    pub const REDIRECTED_HEADER: u8 = 4;
    /// MTU (in RA).
    pub const MTU: u8 = 5;
    /// Nonce (RFC 7527, in DAD solicitations).
    pub const NONCE: u8 = 14;
}

/// Neighbour advertisement flag bits (byte 4).
pub mod na_flag {
    /// R: the sender is a router.
    pub const ROUTER: u8 = 0x80;
    /// S: sent in answer to a solicitation.
    pub const SOLICITED: u8 = 0x40;
    /// O: override an existing cache entry.
    pub const OVERRIDE: u8 = 0x20;
}

mod field {
    use std::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const FLAGS: usize = 4;
    pub const TARGET: Range<usize> = 8..24;
    pub const OPTIONS: usize = 24;
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1):
/// `ff02::1:ff` followed by its low 24 bits. A neighbour solicitation for `addr`
/// goes there.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]])
}

/// True for a solicited-node multicast address (`ff02::1:ff00:0/104`).
pub fn is_solicited_node(addr: Ipv6Addr) -> bool {
    addr.octets()[..13] == solicited_node(Ipv6Addr::UNSPECIFIED).octets()[..13]
}

/// One option of an NS or NA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdOption<'a> {
    /// Option type (see [`option_type`]).
    pub kind: u8,
    /// The whole option, type and length bytes included (a multiple of 8 bytes).
    pub bytes: &'a [u8],
}

impl NdOption<'_> {
    /// The option's data (after the type and length bytes).
    pub fn data(&self) -> &[u8] {
        self.bytes.get(2..).unwrap_or(&[])
    }

    /// The Ethernet address of a source or target link-layer address option.
    pub fn link_layer_addr(&self) -> Option<MacAddr> {
        match self.kind {
            option_type::SOURCE_LL_ADDR | option_type::TARGET_LL_ADDR => MacAddr::from_bytes(self.data().get(..6)?),
            _ => None,
        }
    }
}

/// A bounded iterator over ND options: each is at least 8 bytes, so it ends
/// within `len / 8` steps. It yields `Err` once (then ends) for an option of
/// length 0 (RFC 4861 §4.6: the packet must be dropped) or one running past the
/// buffer.
#[derive(Debug, Clone)]
pub struct NdOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdOptions<'a> {
    /// Walks the options in `data` (the bytes after the 24-byte message).
    pub fn new(data: &'a [u8]) -> Self {
        NdOptions { rest: data }
    }

    fn read(&mut self) -> Result<NdOption<'a>, WireError> {
        let (kind, units) = match self.rest {
            [k, l, ..] => (*k, *l),
            _ => return Err(WireError::Truncated),
        };
        if units == 0 {
            return Err(WireError::Malformed("nd: option of length 0"));
        }
        let len = usize::from(units) * 8;
        let bytes = self.rest.get(..len).ok_or(WireError::Truncated)?;
        self.rest = &self.rest[len..];
        Ok(NdOption { kind, bytes })
    }
}

impl<'a> Iterator for NdOptions<'a> {
    type Item = Result<NdOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.read();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

impl std::iter::FusedIterator for NdOptions<'_> {}

/// The checks shared by NS and NA: length, type, code 0, target not multicast,
/// a valid option walk.
fn check_message(b: &[u8], want: u8) -> Result<(), WireError> {
    if b.len() < MESSAGE_LEN {
        return Err(WireError::Truncated);
    }
    if b[field::TYPE] != want {
        return Err(WireError::Malformed("nd: unexpected ICMPv6 type"));
    }
    if b[field::CODE] != 0 {
        return Err(WireError::Malformed("nd: code is not 0"));
    }
    if b[field::TARGET.start] == 0xff {
        return Err(WireError::Malformed("nd: multicast target address"));
    }
    NdOptions::new(&b[field::OPTIONS..]).try_for_each(|o| o.map(|_| ()))
}

/// The link-layer address in the first option of type `kind`, if any.
fn find_ll_option(b: &[u8], kind: u8) -> Option<MacAddr> {
    NdOptions::new(b.get(field::OPTIONS..)?).filter_map(Result::ok).find(|o| o.kind == kind)?.link_layer_addr()
}

fn read_target(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    if let Some(t) = b.get(field::TARGET) {
        a.copy_from_slice(t);
    }
    Ipv6Addr::from(a)
}

/// A view of a neighbour solicitation (the whole ICMPv6 message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborSolicit<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NeighborSolicit<T> {
    /// Wraps `buffer` without validation.
    pub fn new_unchecked(buffer: T) -> Self {
        NeighborSolicit { buffer }
    }

    /// Wraps `buffer`, checking: at least 24 bytes, type 135, code 0, a unicast
    /// target, and every option well-formed.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_message(buffer.as_ref(), msg_type::NEIGHBOR_SOLICIT)?;
        Ok(NeighborSolicit { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The address whose link-layer address is asked for.
    pub fn target(&self) -> Ipv6Addr {
        read_target(self.buffer.as_ref())
    }

    /// The options (all valid after [`NeighborSolicit::new_checked`]).
    pub fn options(&self) -> NdOptions<'_> {
        NdOptions::new(self.buffer.as_ref().get(field::OPTIONS..).unwrap_or(&[]))
    }

    /// The sender's link-layer address option, if present.
    pub fn source_ll_addr(&self) -> Option<MacAddr> {
        find_ll_option(self.buffer.as_ref(), option_type::SOURCE_LL_ADDR)
    }

    /// The IPv6-side checks of RFC 4861 §7.1.1 for an NS sent from `src` to
    /// `dst` with `hop_limit`: hop limit 255; from the unspecified address
    /// (duplicate address detection) only to a solicited-node address and
    /// without a source link-layer address option.
    pub fn check_addressing(&self, src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8) -> Result<(), WireError> {
        if hop_limit != HOP_LIMIT {
            return Err(WireError::Malformed("nd: hop limit is not 255"));
        }
        if src.is_unspecified() {
            if !is_solicited_node(dst) {
                return Err(WireError::Malformed("nd: DAD solicitation not to a solicited-node address"));
            }
            if self.source_ll_addr().is_some() {
                return Err(WireError::Malformed("nd: DAD solicitation with a source link-layer address"));
            }
        }
        Ok(())
    }
}

/// A view of a neighbour advertisement (the whole ICMPv6 message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborAdvert<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NeighborAdvert<T> {
    /// Wraps `buffer` without validation.
    pub fn new_unchecked(buffer: T) -> Self {
        NeighborAdvert { buffer }
    }

    /// Wraps `buffer`, checking: at least 24 bytes, type 136, code 0, a unicast
    /// target, and every option well-formed.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_message(buffer.as_ref(), msg_type::NEIGHBOR_ADVERT)?;
        Ok(NeighborAdvert { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flag byte (see [`na_flag`]; the low 5 bits are reserved).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// R: the sender is a router.
    pub fn router(&self) -> bool {
        self.flags() & na_flag::ROUTER != 0
    }

    /// S: an answer to a solicitation.
    pub fn solicited(&self) -> bool {
        self.flags() & na_flag::SOLICITED != 0
    }

    /// O: the receiver should override its cache entry.
    pub fn override_flag(&self) -> bool {
        self.flags() & na_flag::OVERRIDE != 0
    }

    /// The address whose link-layer address is advertised.
    pub fn target(&self) -> Ipv6Addr {
        read_target(self.buffer.as_ref())
    }

    /// The options (all valid after [`NeighborAdvert::new_checked`]).
    pub fn options(&self) -> NdOptions<'_> {
        NdOptions::new(self.buffer.as_ref().get(field::OPTIONS..).unwrap_or(&[]))
    }

    /// The advertised link-layer address option, if present.
    pub fn target_ll_addr(&self) -> Option<MacAddr> {
        find_ll_option(self.buffer.as_ref(), option_type::TARGET_LL_ADDR)
    }

    /// The IPv6-side checks of RFC 4861 §7.1.2 for an NA sent to `dst` with
    /// `hop_limit`: hop limit 255; S clear when sent to a multicast address.
    pub fn check_addressing(&self, dst: Ipv6Addr, hop_limit: u8) -> Result<(), WireError> {
        if hop_limit != HOP_LIMIT {
            return Err(WireError::Malformed("nd: hop limit is not 255"));
        }
        if dst.is_multicast() && self.solicited() {
            return Err(WireError::Malformed("nd: solicited advertisement to a multicast address"));
        }
        Ok(())
    }
}

/// A received neighbour solicitation, as far as answering it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solicitation {
    /// The Ethernet source of the NS frame.
    pub eth_src: MacAddr,
    /// The IPv6 source of the NS (unspecified for duplicate address detection).
    pub ip_src: Ipv6Addr,
    /// The NS's source link-layer address option, if present.
    pub source_ll: Option<MacAddr>,
    /// The solicited address (one of ours when we answer).
    pub target: Ipv6Addr,
}

impl Solicitation {
    /// Collects what an answer needs from a checked NS and its frame's addresses.
    pub fn new<T: AsRef<[u8]>>(eth_src: MacAddr, ip_src: Ipv6Addr, ns: &NeighborSolicit<T>) -> Self {
        Solicitation { eth_src, ip_src, source_ll: ns.source_ll_addr(), target: ns.target() }
    }
}

/// Ethernet/IPv6 header length for an optional VLAN tag.
fn l2_len(vlan: Option<u16>) -> usize {
    if vlan.is_some() {
        ethernet::VLAN_HEADER_LEN
    } else {
        ethernet::HEADER_LEN
    }
}

/// Writes Ethernet + IPv6 (hop limit 255) + an ND message of `msg_len` bytes
/// whose type-specific bytes the caller fills through `body`, then the ICMPv6
/// checksum. Returns the frame length.
#[allow(clippy::too_many_arguments)]
fn fill_nd_frame(
    buf: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    vlan: Option<u16>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    msg_len: usize,
    body: impl FnOnce(&mut [u8]),
) -> Result<usize, WireError> {
    let l3 = l2_len(vlan);
    let total = l3 + ipv6::HEADER_LEN + msg_len;
    let frame = buf.get_mut(..total).ok_or(WireError::Truncated)?;
    frame.fill(0);
    ethernet::fill_header(frame, eth_dst, eth_src, vlan, ethertype::IPV6)?;
    let payload_len = u16::try_from(msg_len).map_err(|_| WireError::Malformed("nd: message too long"))?;
    ipv6::fill_header(&mut frame[l3..], src, dst, next_header::ICMPV6, payload_len, HOP_LIMIT)?;
    let msg = &mut frame[l3 + ipv6::HEADER_LEN..];
    body(msg);
    Icmpv6Packet::new_unchecked(msg).fill_checksum(src, dst);
    Ok(total)
}

/// Writes the NS/NA common part: type, target, and one link-layer option.
fn write_message(msg: &mut [u8], kind: u8, flags: u8, target: Ipv6Addr, option: Option<(u8, MacAddr)>) {
    msg[field::TYPE] = kind;
    msg[field::FLAGS] = flags;
    msg[field::TARGET].copy_from_slice(&target.octets());
    if let Some((t, mac)) = option {
        msg[MESSAGE_LEN] = t;
        msg[MESSAGE_LEN + 1] = 1;
        msg[MESSAGE_LEN + 2..MESSAGE_LEN + LL_OPTION_LEN].copy_from_slice(&mac.octets());
    }
}

/// Writes into `buf` a neighbour solicitation for `target` from `src`/`src_mac`:
/// to the solicited-node address of `target` and its `33:33:ff:..` Ethernet
/// address, with a source link-layer address option unless `src` is
/// unspecified (duplicate address detection). Returns the frame length (86, or
/// 78 without the option; 4 more with a VLAN tag); [`WireError::Truncated`]
/// when `buf` is shorter.
pub fn fill_ns(buf: &mut [u8], src_mac: MacAddr, vlan: Option<u16>, src: Ipv6Addr, target: Ipv6Addr) -> Result<usize, WireError> {
    let dst = solicited_node(target);
    let option = (!src.is_unspecified()).then_some((option_type::SOURCE_LL_ADDR, src_mac));
    let len = MESSAGE_LEN + if option.is_some() { LL_OPTION_LEN } else { 0 };
    fill_nd_frame(buf, ipv6::multicast_mac(dst), src_mac, vlan, src, dst, len, |m| {
        write_message(m, msg_type::NEIGHBOR_SOLICIT, 0, target, option)
    })
}

/// Writes into `buf` a neighbour advertisement from `src`/`src_mac` to
/// `dst`/`dst_mac` for `target` with `flags` (see [`na_flag`]) and a target
/// link-layer address option of `src_mac`. Returns the frame length (86; 90
/// with a VLAN tag).
#[allow(clippy::too_many_arguments)]
pub fn fill_na(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    vlan: Option<u16>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    flags: u8,
) -> Result<usize, WireError> {
    let option = Some((option_type::TARGET_LL_ADDR, src_mac));
    fill_nd_frame(buf, dst_mac, src_mac, vlan, src, dst, MESSAGE_LEN + LL_OPTION_LEN, |m| {
        write_message(m, msg_type::NEIGHBOR_ADVERT, flags, target, option)
    })
}

/// Writes into `buf` the advertisement answering `ns` (RFC 4861 §7.2.4) for our
/// address `ns.target` at `our_mac`: to the solicitor (its link-layer option,
/// else its Ethernet source) with S set; or, for duplicate address detection
/// (unspecified source), to all nodes with S clear. O is set when
/// `override_flag` (a VIP answers like an ARP reply: always, unless it is an
/// anycast address). R is never set.
pub fn fill_na_reply(
    buf: &mut [u8],
    our_mac: MacAddr,
    vlan: Option<u16>,
    ns: &Solicitation,
    override_flag: bool,
) -> Result<usize, WireError> {
    let o = if override_flag { na_flag::OVERRIDE } else { 0 };
    if ns.ip_src.is_unspecified() {
        let dst = ipv6::ALL_NODES;
        fill_na(buf, our_mac, ipv6::multicast_mac(dst), vlan, ns.target, dst, ns.target, o)
    } else {
        let dst_mac = ns.source_ll.unwrap_or(ns.eth_src);
        fill_na(buf, our_mac, dst_mac, vlan, ns.target, ns.ip_src, ns.target, na_flag::SOLICITED | o)
    }
}

/// Writes into `buf` an unsolicited advertisement of `addr` at `our_mac` to all
/// nodes (`ff02::1`, `33:33:00:00:00:01`) with O set and S clear: the IPv6
/// analogue of a gratuitous ARP, sent when a VIP appears or moves.
pub fn fill_unsolicited_na(buf: &mut [u8], our_mac: MacAddr, vlan: Option<u16>, addr: Ipv6Addr) -> Result<usize, WireError> {
    let dst = ipv6::ALL_NODES;
    fill_na(buf, our_mac, ipv6::multicast_mac(dst), vlan, addr, dst, addr, na_flag::OVERRIDE)
}

/// The longest frame the `fill_*` functions write (an NS or NA with its option
/// and a VLAN tag).
pub const MAX_FRAME_LEN: usize = ethernet::VLAN_HEADER_LEN + ipv6::HEADER_LEN + MESSAGE_LEN + LL_OPTION_LEN;

/// Parses `frame` as an untagged or tagged Ethernet/IPv6/ICMPv6 neighbour
/// discovery message with hop limit 255 and a correct checksum, returning the
/// IPv6 view and the ICMPv6 message bytes. Extension headers are walked (see
/// [`ipv6::Ipv6Packet::upper_layer`]); a fragmented ND message is refused
/// (RFC 6980).
pub fn parse_frame(frame: &[u8]) -> Result<(ipv6::Ipv6Packet<&[u8]>, &[u8]), WireError> {
    let eth = ethernet::EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != ethertype::IPV6 {
        return Err(WireError::Malformed("nd: not an IPv6 frame"));
    }
    let ip = ipv6::Ipv6Packet::new_checked(eth.into_payload())?;
    if ip.hop_limit() != HOP_LIMIT {
        return Err(WireError::Malformed("nd: hop limit is not 255"));
    }
    let chain = ip.upper_layer()?;
    if chain.fragment.is_some() {
        return Err(WireError::Malformed("nd: fragmented neighbour discovery message"));
    }
    if chain.protocol != next_header::ICMPV6 {
        return Err(WireError::Malformed("nd: not ICMPv6"));
    }
    let msg = ip.clone().into_payload().get(chain.offset..).ok_or(WireError::Truncated)?;
    let m = icmpv6::Icmpv6Packet::new_checked(msg)?;
    if !m.verify_checksum(ip.src_addr(), ip.dst_addr()) {
        return Err(WireError::Malformed("nd: bad ICMPv6 checksum"));
    }
    Ok((ip, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::from_hex;
    use crate::wire::test_fixtures::scapy;
    use proptest::prelude::*;

    const MAC_C: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const MAC_LB: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const A_C: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const A_LB: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x64);
    const VIP2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0xabcd, 0xef01);
    const LB_IN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    const RS: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0x11, 0x2233);

    #[test]
    fn solicited_node_matches_scapy() {
        assert_eq!(solicited_node(A_LB).octets().to_vec(), scapy("nsma_lb"));
        assert_eq!(solicited_node(RS), "ff02::1:ff11:2233".parse::<Ipv6Addr>().expect("addr"));
        assert!(is_solicited_node(solicited_node(RS)));
        assert!(!is_solicited_node(ipv6::ALL_NODES));
        assert!(!is_solicited_node(A_LB));
    }

    #[test]
    fn parse_scapy_ns() {
        let f = scapy("ns");
        let (ip, msg) = parse_frame(&f).expect("nd");
        let ns = NeighborSolicit::new_checked(msg).expect("ns");
        assert_eq!(ns.target(), A_LB);
        assert_eq!(ns.source_ll_addr(), Some(MAC_C));
        assert_eq!(ns.options().count(), 1);
        assert!(ns.check_addressing(ip.src_addr(), ip.dst_addr(), ip.hop_limit()).is_ok());
        assert!(ns.check_addressing(ip.src_addr(), ip.dst_addr(), 64).is_err());
        // From :: it must not carry a source link-layer address.
        assert!(ns.check_addressing(Ipv6Addr::UNSPECIFIED, ip.dst_addr(), 255).is_err());
        assert!(NeighborAdvert::new_checked(msg).is_err());

        let f = scapy("ns_dad");
        let (ip, msg) = parse_frame(&f).expect("nd");
        let ns = NeighborSolicit::new_checked(msg).expect("ns");
        assert_eq!((ns.target(), ns.source_ll_addr(), ns.options().count()), (A_LB, None, 0));
        assert!(ns.check_addressing(ip.src_addr(), ip.dst_addr(), 255).is_ok());
        assert!(ns.check_addressing(ip.src_addr(), A_LB, 255).is_err());
    }

    #[test]
    fn parse_scapy_na() {
        let f = scapy("na_reply");
        let (ip, msg) = parse_frame(&f).expect("nd");
        let na = NeighborAdvert::new_checked(msg).expect("na");
        assert_eq!((na.router(), na.solicited(), na.override_flag()), (false, true, true));
        assert_eq!((na.target(), na.target_ll_addr()), (A_LB, Some(MAC_LB)));
        assert!(na.check_addressing(ip.dst_addr(), ip.hop_limit()).is_ok());
        assert!(na.check_addressing(ipv6::ALL_NODES, 255).is_err());
        let f = scapy("na_unsolicited");
        let (ip, msg) = parse_frame(&f).expect("nd");
        let na = NeighborAdvert::new_checked(msg).expect("na");
        assert_eq!(na.flags(), na_flag::OVERRIDE);
        assert!(na.check_addressing(ip.dst_addr(), 255).is_ok());
    }

    /// The NA answering scapy's NS is byte-equal to scapy's NA; and for DAD.
    #[test]
    fn na_reply_equals_scapy() {
        for (req, want) in [("ns", "na_reply"), ("ns_dad", "na_dad_reply")] {
            let f = scapy(req);
            let eth = ethernet::EthernetFrame::new_checked(&f[..]).expect("eth");
            let (ip, msg) = parse_frame(&f).expect("nd");
            let ns = NeighborSolicit::new_checked(msg).expect("ns");
            let q = Solicitation::new(eth.src_mac(), ip.src_addr(), &ns);
            let mut buf = [0u8; MAX_FRAME_LEN];
            let n = fill_na_reply(&mut buf, MAC_LB, None, &q, true).expect("fits");
            assert_eq!(&buf[..n], &scapy(want)[..], "{req}");
        }
    }

    #[test]
    fn unsolicited_na_equals_scapy() {
        let mut buf = [0xaau8; 100];
        let n = fill_unsolicited_na(&mut buf, MAC_LB, None, VIP2).expect("fits");
        assert_eq!(&buf[..n], &scapy("na_unsolicited")[..]);
        assert_eq!(&buf[..6], &from_hex("333300000001")[..]);
    }

    #[test]
    fn ns_equals_scapy() {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = fill_ns(&mut buf, MAC_LB, None, LB_IN, RS).expect("fits");
        assert_eq!(&buf[..n], &scapy("ns_out")[..]);
        assert_eq!(&buf[..6], &from_hex("3333ff112233")[..]);
        // Duplicate address detection: no option.
        let n = fill_ns(&mut buf, MAC_C, None, Ipv6Addr::UNSPECIFIED, A_LB).expect("fits");
        assert_eq!(&buf[..n], &scapy("ns_dad")[..]);
        // Tagged, and a short buffer.
        let n = fill_ns(&mut buf, MAC_LB, Some(5), LB_IN, RS).expect("fits");
        assert_eq!(n, MAX_FRAME_LEN);
        let eth = ethernet::EthernetFrame::new_checked(&buf[..n]).expect("eth");
        assert_eq!(eth.vlan_id(), Some(5));
        assert_eq!(&buf[18..n], &scapy("ns_out")[14..]);
        assert_eq!(fill_ns(&mut buf[..85], MAC_LB, None, LB_IN, RS), Err(WireError::Truncated));
    }

    #[test]
    fn bad_options_refused() {
        let f = scapy("ns");
        let msg = &f[54..];
        // Zero-length option.
        let mut z = msg.to_vec();
        z[MESSAGE_LEN + 1] = 0;
        assert!(matches!(NeighborSolicit::new_checked(&z[..]), Err(WireError::Malformed(_))));
        // An option running past the message.
        let mut long = msg.to_vec();
        long[MESSAGE_LEN + 1] = 2;
        assert_eq!(NeighborSolicit::new_checked(&long[..]).err(), Some(WireError::Truncated));
        // A lone trailing byte.
        let mut odd = msg.to_vec();
        odd.push(1);
        assert_eq!(NeighborSolicit::new_checked(&odd[..]).err(), Some(WireError::Truncated));
        // Iterator: the error once, then the end.
        let mut it = NdOptions::new(&z[MESSAGE_LEN..]);
        assert!(matches!(it.next(), Some(Err(WireError::Malformed(_)))));
        assert_eq!(it.next(), None);
        // Code, multicast target, short.
        let mut c = msg.to_vec();
        c[1] = 1;
        assert!(NeighborSolicit::new_checked(&c[..]).is_err());
        let mut m = msg.to_vec();
        m[8] = 0xff;
        assert!(NeighborSolicit::new_checked(&m[..]).is_err());
        assert_eq!(NeighborSolicit::new_checked(&msg[..23]).err(), Some(WireError::Truncated));
        // Unknown options are skipped; the link-layer one is still found.
        let mut more = msg[..MESSAGE_LEN].to_vec();
        more.extend([option_type::NONCE, 1, 1, 2, 3, 4, 5, 6]);
        more.extend(&msg[MESSAGE_LEN..]);
        let ns = NeighborSolicit::new_checked(&more[..]).expect("ns");
        assert_eq!(ns.source_ll_addr(), Some(MAC_C));
        assert_eq!(ns.options().count(), 2);
        assert_eq!(ns.options().next().and_then(Result::ok).map(|o| o.data().len()), Some(6));
    }

    #[test]
    fn parse_frame_refuses() {
        let mut f = scapy("ns");
        f[21] = 64; // hop limit
        assert!(parse_frame(&f).is_err());
        let mut f = scapy("ns");
        f[60] ^= 1; // checksum
        assert!(parse_frame(&f).is_err());
        assert!(parse_frame(&scapy("udp")).is_err());
    }

    /// An NS behind a hop-by-hop header parses; behind a fragment header, not.
    #[test]
    fn parse_frame_ext_headers() {
        let f = scapy("ns");
        for (ext, ok) in [([next_header::ICMPV6, 0, 1, 4, 0, 0, 0, 0], true), ([next_header::ICMPV6, 0, 0, 0, 0, 0, 0, 9], false)] {
            let mut g = f[..54].to_vec();
            g[20] = if ok { next_header::HOP_BY_HOP } else { next_header::FRAGMENT };
            g[19] += 8; // payload length
            g.extend(ext);
            g.extend(&f[54..]);
            let r = parse_frame(&g);
            assert_eq!(r.is_ok(), ok);
            if let Ok((_, msg)) = r {
                assert_eq!(msg, &f[54..]);
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..80), kind in prop_oneof![Just(135u8), Just(136u8)]) {
            let mut m = vec![kind, 0, 0, 0];
            m.extend(body);
            if let Ok(ns) = NeighborSolicit::new_checked(&m[..]) {
                let _ = (ns.target(), ns.source_ll_addr());
                prop_assert!(ns.options().all(|o| o.is_ok()));
            }
            if let Ok(na) = NeighborAdvert::new_checked(&m[..]) {
                let _ = (na.target(), na.target_ll_addr(), na.flags(), na.router(), na.solicited(), na.override_flag());
                prop_assert!(na.options().all(|o| o.is_ok()));
            }
            let n = NdOptions::new(&m).count();
            prop_assert!(n <= m.len() / 8 + 1);
        }

        /// Every NA this module builds parses back with its fields.
        #[test]
        fn na_round_trip(src in any::<[u8; 16]>(), target in any::<[u8; 16]>(), mac in any::<[u8; 6]>(), flags in any::<u8>()) {
            let mut target = target;
            target[0] &= 0x7f; // unicast
            let (src, target) = (Ipv6Addr::from(src), Ipv6Addr::from(target));
            let mut buf = [0u8; MAX_FRAME_LEN];
            let n = fill_na(&mut buf, MacAddr(mac), MAC_C, None, src, A_C, target, flags).expect("fits");
            let (ip, msg) = parse_frame(&buf[..n]).expect("nd");
            prop_assert_eq!(ip.src_addr(), src);
            let na = NeighborAdvert::new_checked(msg).expect("na");
            prop_assert_eq!((na.target(), na.target_ll_addr(), na.flags()), (target, Some(MacAddr(mac)), flags));
        }
    }
}
