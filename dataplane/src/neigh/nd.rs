//! Neighbour discovery for rvs's IPv6 neighbours and addresses (RFC 4861):
//! answering solicitations for our addresses, reading advertisements, and the
//! solicitations rvs sends to resolve and confirm next hops.
//!
//! The receive side is called by [`crate::local6::answer`], which parses the
//! frame; here are the RFC 4861 §7.1 validity checks (hop limit 255, ICMPv6
//! checksum, code 0, length, target not multicast, options well-formed, the
//! duplicate address detection rules, S clear towards multicast), the answer
//! to a solicitation (§7.2.4) and what an advertisement tells (§7.2.5, applied
//! by [`super::NeighTable::learn_nd`]).
//!
//! Sending: [`fill_probe`] resolves a next hop (multicast to its
//! solicited-node address) or confirms a known one (unicast);
//! [`fill_unsolicited_na`] announces a VIP on takeover to all nodes (the IPv6
//! analogue of a gratuitous ARP). Both write a complete Ethernet frame of at
//! most [`MAX_FRAME_LEN`] bytes into the caller's buffer.

use std::net::Ipv6Addr;

use super::{NdSource, NdUpdate};
use crate::local6::{Drop6, Duplicate, Local6, NdReply, OurAddrs6};
use crate::wire::checksum;
use crate::wire::icmpv6::Icmpv6Packet;
use crate::wire::nd::{self, NeighborAdvert, NeighborSolicit, Solicitation};
use crate::wire::{ethernet, Ipv6Packet, MacAddr, WireError};

pub use crate::wire::nd::{fill_unsolicited_na, MAX_FRAME_LEN};

/// A received neighbour discovery message and the headers around it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Received<'a> {
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// The frame's 802.1Q tag (answers carry the same).
    pub vlan: Option<u16>,
    /// IPv6 source.
    pub src: Ipv6Addr,
    /// IPv6 destination.
    pub dst: Ipv6Addr,
    /// IPv6 hop limit.
    pub hop_limit: u8,
    /// The whole ICMPv6 message (at least its 8-byte header).
    pub msg: &'a [u8],
}

/// The checks RFC 4861 §7.1.1 and §7.1.2 share, in their order: hop limit
/// 255, checksum, code 0, length, target not multicast (the option walk is
/// the views' `new_checked`).
fn check_common(rx: &Received<'_>) -> Result<(), Drop6> {
    if rx.hop_limit != nd::HOP_LIMIT {
        return Err(Drop6::HopLimit);
    }
    if !Icmpv6Packet::new_unchecked(rx.msg).verify_checksum(rx.src, rx.dst) {
        return Err(Drop6::Checksum);
    }
    match rx.msg {
        [_, code, ..] if *code != 0 => Err(Drop6::Code),
        m if m.len() < nd::MESSAGE_LEN => Err(Drop6::Malformed),
        // The target's first byte (bytes 8..24 hold the target).
        [_, _, _, _, _, _, _, _, 0xff, ..] => Err(Drop6::MulticastTarget),
        _ => Ok(()),
    }
}

/// True when a message to `dst` is for us at all: sent to a multicast group
/// (solicited-node, all nodes) or to one of our addresses.
fn to_us<A: OurAddrs6 + ?Sized>(rx: &Received<'_>, port: u16, addrs: &A) -> bool {
    rx.dst.is_multicast() || addrs.kind(port, rx.dst).is_some()
}

/// Answers a solicitation for one of our addresses (RFC 4861 §7.2.4): a
/// solicited advertisement to its sender (to the source link-layer option's
/// MAC, else the frame's source), or, for duplicate address detection (from
/// `::`), an advertisement to all nodes. O is set, R is not.
pub(crate) fn solicitation<A: OurAddrs6 + ?Sized>(rx: &Received<'_>, port: u16, our_mac: MacAddr, addrs: &A, reply: &mut [u8]) -> Local6 {
    if let Err(d) = check_common(rx) {
        return Local6::Drop(d);
    }
    let Ok(ns) = NeighborSolicit::new_checked(rx.msg) else {
        return Local6::Drop(Drop6::Malformed);
    };
    let dad = rx.src.is_unspecified();
    if dad {
        if !nd::is_solicited_node(rx.dst) {
            return Local6::Drop(Drop6::DadDestination);
        }
        if ns.source_ll_addr().is_some() {
            return Local6::Drop(Drop6::DadWithLinkLayer);
        }
    }
    if rx.eth_src == our_mac || !to_us(rx, port, addrs) {
        return Local6::NotForUs;
    }
    let target = ns.target();
    let Some(kind) = addrs.kind(port, target) else {
        return Local6::NotForUs;
    };
    let q = Solicitation::new(rx.eth_src, rx.src, &ns);
    if !dad && q.source_ll.unwrap_or(q.eth_src).is_multicast() {
        return Local6::Drop(Drop6::BadSource);
    }
    if reply.len() < MAX_FRAME_LEN {
        return Local6::Drop(Drop6::NoRoom);
    }
    let Ok(len) = nd::fill_na_reply(reply, our_mac, rx.vlan, &q, true) else {
        return Local6::Drop(Drop6::NoRoom);
    };
    let learn = q.source_ll.filter(|_| !dad).map(|mac| NdUpdate { ip: rx.src, mac: Some(mac), source: NdSource::Solicitation });
    Local6::NdReply(NdReply { len, target, kind, dad, learn })
}

/// Reads an advertisement: what it tells about a neighbour, or that another
/// node claims one of our addresses.
pub(crate) fn advertisement<A: OurAddrs6 + ?Sized>(rx: &Received<'_>, port: u16, our_mac: MacAddr, addrs: &A) -> Local6 {
    if let Err(d) = check_common(rx) {
        return Local6::Drop(d);
    }
    let Ok(na) = NeighborAdvert::new_checked(rx.msg) else {
        return Local6::Drop(Drop6::Malformed);
    };
    if rx.dst.is_multicast() && na.solicited() {
        return Local6::Drop(Drop6::SolicitedToMulticast);
    }
    let (target, target_ll) = (na.target(), na.target_ll_addr());
    if rx.eth_src == our_mac || target_ll == Some(our_mac) || !to_us(rx, port, addrs) {
        // Our own advertisement looped back, or someone else's unicast.
        return Local6::NotForUs;
    }
    if let Some(kind) = addrs.kind(port, target) {
        return Local6::Duplicate(Duplicate { addr: target, kind, mac: target_ll.unwrap_or(rx.eth_src) });
    }
    let source = NdSource::Advertisement { solicited: na.solicited(), override_flag: na.override_flag() };
    Local6::Learned(NdUpdate { ip: target, mac: target_ll, source })
}

/// Writes into `buf` a neighbour solicitation for `target` from our address
/// `src` on the link, at `src_mac` (with a source link-layer option), on VLAN
/// `vlan`. Without `known`, it resolves: to the solicited-node multicast
/// address of `target` and its `33:33:ff:..` MAC. With the MAC `known` of an
/// entry to confirm (a [`super::Resolution::Resolved`] asking `refresh`, RFC
/// 4861 §7.3.3), it is unicast to `target` at that MAC. Returns the frame
/// length (86, or 90 tagged); [`WireError::Truncated`] when `buf` is shorter.
pub fn fill_probe(
    buf: &mut [u8],
    src_mac: MacAddr,
    vlan: Option<u16>,
    src: Ipv6Addr,
    target: Ipv6Addr,
    known: Option<MacAddr>,
) -> Result<usize, WireError> {
    let len = nd::fill_ns(buf, src_mac, vlan, src, target)?;
    let Some(mac) = known else { return Ok(len) };
    let l2 = if vlan.is_some() { ethernet::VLAN_HEADER_LEN } else { ethernet::HEADER_LEN };
    let frame = buf.get_mut(..len).ok_or(WireError::Truncated)?;
    ethernet::fill_header(frame, mac, src_mac, vlan, ethernet::ethertype::IPV6)?;
    let mut ip = Ipv6Packet::new_checked(frame.get_mut(l2..).ok_or(WireError::Truncated)?)?;
    ip.set_dst_addr(target);
    let mut msg = Icmpv6Packet::new_checked(ip.payload_mut())?;
    msg.set_checksum(checksum::update_addr_v6(msg.checksum(), nd::solicited_node(target), target));
    Ok(len)
}
