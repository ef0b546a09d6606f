//! Forwarding modes: one file per mode, as in IPVS and DPVS.
//!
//! Each mode rewrites the IPv4 packet (the bytes from the IP header on) of a
//! client's packet on its way to the real server and says which address the
//! frame must be sent towards; NAT also rewrites the real server's replies.
//! Ethernet addressing is done afterwards by the caller, from the neighbour table.
//! Checksums are updated incrementally (RFC 1624), never recomputed.
//!
//! IPv6 has its own file per mode where the rewrite differs (`*6.rs`: [`hop6`],
//! [`icmp6_err`], [`nat6`], [`fnat6`], [`tun6`], DR in [`dr`]), and [`nat64`]
//! translates between an IPv6 client and IPv4 real servers through FULLNAT.
//! The IPv6 functions take addresses and ports, never a connection entry.
//!
//! Every mode decrements the TTL ([`ttl`]) as Linux IPVS does; packets that
//! cannot be forwarded are answered like IPVS answers them: ICMP errors
//! ([`icmp_err`]) and TCP resets ([`reset`]).

pub mod dr;
pub mod fnat;
pub mod fnat6;
pub mod hop6;
pub mod icmp6_err;
pub mod icmp_err;
pub mod l4v6;
pub mod nat;
pub mod nat6;
pub mod nat64;
pub mod reset;
pub mod ttl;
pub mod tun;
pub mod tun6;

#[cfg(test)]
mod fixtures6;
#[cfg(test)]
mod robust6;

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::{ipv4, Ipv4Packet, WireError};

/// Why a rewrite could not be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FwdError {
    /// The packet could not be parsed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The packet is of a protocol the mode cannot rewrite.
    #[error("protocol {0} cannot be forwarded in this mode")]
    Protocol(u8),
    /// The frame has no room to grow (headroom, tailroom, or a fragment buffer).
    #[error("no room in the packet buffer")]
    NoRoom,
    /// The packet's TTL would reach 0 here.
    #[error("time to live exceeded in transit")]
    TtlExceeded,
    /// The packet must not be answered with an error (RFC 1812 4.3.2.7: an
    /// ICMP error, a reset, or a source that is not a unique host).
    #[error("the packet may not be answered with an ICMP error or a reset")]
    NoAnswer,
    /// The packet cannot be translated between IPv6 and IPv4 (NAT64) or
    /// rewritten over IPv6; the reason names what is missing or refused, for
    /// the drop counter.
    #[error("packet not translatable: {0}")]
    Untranslatable(&'static str),
}

/// Where a rewritten packet goes: the address whose route and neighbour entry
/// decide the egress port and destination MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// Route towards this address (gateway or on-link host, by the routing table).
    Routed(Ipv4Addr),
    /// This host must be on a connected network (DR: the real server's own MAC).
    OnLink(Ipv4Addr),
}

/// Where an IPv4 TCP or UDP packet's transport header is, as the packet's
/// parse found and checked it (the processor's flow parse): the IP header
/// length, the total length (within the packet's bytes), and the protocol,
/// `ip_proto::TCP` (whose header, data offset included, lies within the total
/// length) or `ip_proto::UDP` (whose 8-byte header does). The `*_parsed`
/// rewrites take it instead of checking the headers again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The IPv4 header length.
    pub header_len: usize,
    /// The IPv4 total length.
    pub total_len: usize,
    /// The transport protocol.
    pub proto: u8,
}

/// Where a rewritten IPv6 packet goes (the IPv6 counterpart of [`NextHop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop6 {
    /// Route towards this address (gateway or on-link host, by the routing table).
    Routed(Ipv6Addr),
    /// This host must be on a connected network (DR: the real server's own MAC).
    OnLink(Ipv6Addr),
}

/// Writes an option-less IPv4 header for a packet rvs originates (an ICMP
/// error, a reset: identification 0, TTL 64) at the start of `ip`, checksum
/// included, and returns the view to fill the payload through.
fn originate_ipv4(ip: &mut [u8], protocol: u8, total_len: u16, src: Ipv4Addr, dst: Ipv4Addr, dont_frag: bool) -> Ipv4Packet<&mut [u8]> {
    // From zeros: the bytes there are the answered packet's (its reserved
    // flag bit, its options' bits must not carry over).
    if let Some(header) = ip.get_mut(..ipv4::HEADER_LEN) {
        header.fill(0);
    }
    let mut pkt = Ipv4Packet::new_unchecked(ip);
    pkt.set_version_and_header_len(ipv4::HEADER_LEN);
    pkt.set_dscp_ecn(0);
    pkt.set_total_len(total_len);
    pkt.set_ident(0);
    pkt.set_frag_offset(0);
    pkt.set_more_frags(false);
    pkt.set_dont_frag(dont_frag);
    pkt.set_ttl(64);
    pkt.set_protocol(protocol);
    pkt.set_src_addr(src);
    pkt.set_dst_addr(dst);
    pkt.fill_checksum();
    pkt
}

/// The big-endian 16-bit word at offset `at` of `b` ([`crate::wire::be16`]).
#[inline]
fn read_u16(b: &[u8], at: usize) -> u16 {
    crate::wire::be16(b, at..at + 2)
}

/// The big-endian 32-bit word at offset `at` of `b` ([`crate::wire::be32`]).
#[inline]
fn read_u32(b: &[u8], at: usize) -> u32 {
    crate::wire::be32(b, at..at + 4)
}

/// Sets the ethertype field that ends the L2 header at `l2_len` (untagged or
/// 802.1Q: the last two bytes), for the IPv4 ↔ IPv6 changes of NAT64 and the
/// mixed-family tunnels. A frame shorter than that is left alone.
pub(crate) fn set_ethertype<F: crate::frame::Frame>(frame: &mut F, l2_len: usize, ethertype: u16) {
    if let Some(b) = l2_len.checked_sub(2).and_then(|at| frame.data_mut().get_mut(at..l2_len)) {
        b.copy_from_slice(&ethertype.to_be_bytes());
    }
}
