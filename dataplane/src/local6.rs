//! IPv6 traffic for the appliance itself that the dataplane answers: neighbour
//! discovery for our addresses (the IPv6 analogue of ARP) and ICMPv6 echo.
//!
//! [`answer`] is a pure function over one received frame (Ethernet header,
//! optionally 802.1Q tagged, then IPv6): given the ingress port, the port's
//! MAC and the addresses we answer for ([`OurAddrs6`]), it says what to do
//! with the frame ([`Local6`]):
//!
//! * a neighbour solicitation for one of our addresses is answered by a
//!   solicited advertisement written into the caller's buffer (the received
//!   frame stays as it was, so that the caller may still hand it to the
//!   kernel); a duplicate address detection probe for one of ours (source
//!   `::`) is answered to all nodes and reported ([`NdReply::dad`]);
//! * an advertisement tells about a neighbour ([`Local6::Learned`], applied
//!   with [`crate::neigh::NeighTable::learn_nd`]), or, for one of our
//!   addresses, that someone else claims it ([`Local6::Duplicate`]);
//! * an echo request to an interface address or a VIP becomes its echo reply
//!   in place, same length;
//! * invalid neighbour discovery messages (RFC 4861 §7.1) are dropped with a
//!   reason ([`Drop6`]); anything else is [`Local6::NotForUs`]: not answered
//!   here, for the caller's own classification (kernel or counted drop), as
//!   the IPv4 code does with what it does not answer.
//!
//! The probes rvs sends itself (solicitations resolving next hops, the
//! unsolicited advertisements of a takeover) are built by
//! [`crate::neigh::nd`].

use std::net::Ipv6Addr;

use hashbrown::HashSet;

use crate::frame::Frame;
use crate::neigh::NdUpdate;
use crate::wire::checksum;
use crate::wire::icmpv6::{msg_type, Icmpv6Packet};
use crate::wire::ipv6::next_header;
use crate::wire::{EthernetFrame, Ipv6Packet, MacAddr};

/// The hop limit of our echo replies (Linux's default).
pub const ECHO_HOP_LIMIT: u8 = 64;

/// What kind of our addresses an address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrKind {
    /// An address of the appliance itself (the kernel's too, through its exception path).
    Interface,
    /// A virtual service address this node currently serves (master).
    Vip,
    /// A FULLNAT local address.
    Local,
}

/// The IPv6 addresses rvs answers for: neighbour solicitations for any of them,
/// echo requests to interface addresses and VIPs.
pub trait OurAddrs6 {
    /// The kind of `addr` when we answer for it on `port`, else `None`
    /// (a VIP this node is backup for is not ours).
    fn kind(&self, port: u16, addr: Ipv6Addr) -> Option<AddrKind>;
}

/// A plain set of our IPv6 addresses, the same on every port.
#[derive(Clone, Debug, Default)]
pub struct AddrSet6 {
    /// Interface addresses.
    pub interface: HashSet<Ipv6Addr>,
    /// VIPs this node serves.
    pub vips: HashSet<Ipv6Addr>,
    /// FULLNAT local addresses.
    pub local: HashSet<Ipv6Addr>,
}

impl OurAddrs6 for AddrSet6 {
    fn kind(&self, _port: u16, addr: Ipv6Addr) -> Option<AddrKind> {
        if self.interface.contains(&addr) {
            Some(AddrKind::Interface)
        } else if self.vips.contains(&addr) {
            Some(AddrKind::Vip)
        } else if self.local.contains(&addr) {
            Some(AddrKind::Local)
        } else {
            None
        }
    }
}

/// Why a frame was dropped: RFC 4861 §7.1 validity checks and broken headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Drop6 {
    /// Truncated or malformed Ethernet, IPv6, extension or ICMPv6 headers, or
    /// an option of length 0 or running past the message.
    #[error("malformed IPv6/ICMPv6 packet")]
    Malformed,
    /// A neighbour discovery message with a hop limit other than 255 (it was forwarded).
    #[error("neighbour discovery hop limit is not 255")]
    HopLimit,
    /// The ICMPv6 checksum is wrong.
    #[error("bad ICMPv6 checksum")]
    Checksum,
    /// A neighbour discovery message with a code other than 0.
    #[error("neighbour discovery code is not 0")]
    Code,
    /// A solicitation or advertisement for a multicast target.
    #[error("neighbour discovery target is multicast")]
    MulticastTarget,
    /// A duplicate address detection solicitation (source `::`) carrying a
    /// source link-layer address option.
    #[error("DAD solicitation with a source link-layer address option")]
    DadWithLinkLayer,
    /// A duplicate address detection solicitation not sent to a solicited-node address.
    #[error("DAD solicitation not to a solicited-node multicast address")]
    DadDestination,
    /// A solicited advertisement (S set) sent to a multicast address.
    #[error("solicited advertisement to a multicast address")]
    SolicitedToMulticast,
    /// A neighbour discovery message in a fragment (RFC 6980).
    #[error("fragmented neighbour discovery message")]
    Fragmented,
    /// A packet from a multicast source address, or an echo request from `::`.
    #[error("multicast or unspecified source address")]
    BadSource,
    /// The caller's reply buffer is shorter than [`crate::wire::nd::MAX_FRAME_LEN`].
    #[error("reply buffer too short")]
    NoRoom,
}

/// A neighbour advertisement answering a solicitation for one of our addresses,
/// written into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdReply {
    /// The frame's length in the buffer. It is sent out of the ingress port.
    pub len: usize,
    /// The solicited address (ours).
    pub target: Ipv6Addr,
    /// What kind of ours it is (the caller may give the kernel a copy of
    /// solicitations for interface addresses, as for ARP).
    pub kind: AddrKind,
    /// The solicitation came from `::`: someone runs duplicate address
    /// detection for our address (it is or would be a duplicate; log it). The
    /// answer goes to all nodes.
    pub dad: bool,
    /// What the solicitation tells about its sender (its source link-layer
    /// address), to apply with [`crate::neigh::NeighTable::learn_nd`].
    pub learn: Option<NdUpdate>,
}

/// Another node advertises one of our addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duplicate {
    /// Our address.
    pub addr: Ipv6Addr,
    /// What kind of ours it is.
    pub kind: AddrKind,
    /// The MAC the other node advertises (its target link-layer option, else
    /// the frame's Ethernet source).
    pub mac: MacAddr,
}

/// What [`answer`] decided for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local6 {
    /// A neighbour advertisement answering the frame (a solicitation) was
    /// written into the reply buffer; the frame itself is unchanged.
    NdReply(NdReply),
    /// The frame was turned into an echo reply in place: its first `len` bytes
    /// (the rest is Ethernet padding kept as received) go back out of the
    /// ingress port.
    EchoReply {
        /// Length of the reply (Ethernet header to the end of the IPv6 payload).
        len: usize,
        /// What kind of ours the request's destination is.
        kind: AddrKind,
    },
    /// An advertisement for a neighbour: apply it with
    /// [`crate::neigh::NeighTable::learn_nd`]. The frame is unchanged (the
    /// kernel resolves its own neighbours from advertisements too).
    Learned(NdUpdate),
    /// Another node advertises one of our addresses.
    Duplicate(Duplicate),
    /// Not answered here: not neighbour discovery or an echo request to us, a
    /// solicitation for someone else, a message unicast to an address not
    /// ours, or our own message looped back.
    NotForUs,
    /// Dropped, for this reason.
    Drop(Drop6),
}

/// Answers an IPv6 frame for the appliance, if it is one this code answers
/// (see the module documentation). `frame` starts at the Ethernet header,
/// which is `l2_len` bytes long (14, or 18 with an 802.1Q tag); it arrived on
/// `port`, whose MAC is `our_mac`. Answers to solicitations are written into
/// `reply` (at least [`crate::wire::nd::MAX_FRAME_LEN`] bytes; the same VLAN
/// tag as the frame), echo replies over `frame`. Never panics, whatever the bytes.
pub fn answer<A: OurAddrs6 + ?Sized>(frame: &mut [u8], l2_len: usize, port: u16, our_mac: MacAddr, addrs: &A, reply: &mut [u8]) -> Local6 {
    let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
        return Local6::Drop(Drop6::Malformed);
    };
    let (eth_src, vlan) = (eth.src_mac(), eth.vlan_id());
    let Some(Ok(ip)) = frame.get(l2_len..).map(Ipv6Packet::new_checked) else {
        return Local6::Drop(Drop6::Malformed);
    };
    let Ok(chain) = ip.upper_layer() else {
        return Local6::Drop(Drop6::Malformed);
    };
    if chain.protocol != next_header::ICMPV6 {
        return Local6::NotForUs;
    }
    let (src, dst, hop_limit) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
    let Some(Ok(msg)) = ip.into_payload().get(chain.offset..).map(Icmpv6Packet::new_checked) else {
        return Local6::Drop(Drop6::Malformed);
    };
    let kind = msg.msg_type();
    if !matches!(kind, msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT | msg_type::ECHO_REQUEST) {
        return Local6::NotForUs;
    }
    if src.is_multicast() {
        return Local6::Drop(Drop6::BadSource);
    }
    let nd = crate::neigh::nd::Received { eth_src, vlan, src, dst, hop_limit, msg: msg.as_bytes() };
    match kind {
        msg_type::NEIGHBOR_SOLICIT if chain.fragment.is_some() => Local6::Drop(Drop6::Fragmented),
        msg_type::NEIGHBOR_ADVERT if chain.fragment.is_some() => Local6::Drop(Drop6::Fragmented),
        msg_type::NEIGHBOR_SOLICIT => crate::neigh::nd::solicitation(&nd, port, our_mac, addrs, reply),
        msg_type::NEIGHBOR_ADVERT => crate::neigh::nd::advertisement(&nd, port, our_mac, addrs),
        // An echo request behind extension headers or in fragments is the kernel's.
        _ if chain.offset != 0 || chain.fragment.is_some() => Local6::NotForUs,
        _ => echo(frame, l2_len, port, our_mac, eth_src, addrs),
    }
}

/// Turns the echo request in `frame` (its ICMPv6 header right after the IPv6
/// header) into its reply in place, when its destination is an interface
/// address or a VIP and its checksum is right.
fn echo<A: OurAddrs6 + ?Sized>(frame: &mut [u8], l2_len: usize, port: u16, our_mac: MacAddr, eth_src: MacAddr, addrs: &A) -> Local6 {
    let Some(Ok(mut ip)) = frame.get_mut(l2_len..).map(Ipv6Packet::new_checked) else {
        return Local6::Drop(Drop6::Malformed);
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let kind = match addrs.kind(port, dst) {
        Some(k @ (AddrKind::Interface | AddrKind::Vip)) => k,
        _ => return Local6::NotForUs,
    };
    if src.is_unspecified() {
        return Local6::Drop(Drop6::BadSource);
    }
    let len = l2_len + crate::wire::ipv6::HEADER_LEN + usize::from(ip.payload_len());
    {
        let Ok(mut msg) = Icmpv6Packet::new_checked(ip.payload_mut()) else {
            return Local6::Drop(Drop6::Malformed);
        };
        if !msg.verify_checksum(src, dst) {
            return Local6::Drop(Drop6::Checksum);
        }
        // Swapping the addresses leaves the pseudo-header's sum as it was:
        // only the type changes.
        let old = u16::from_be_bytes([msg_type::ECHO_REQUEST, msg.code()]);
        let new = u16::from_be_bytes([msg_type::ECHO_REPLY, msg.code()]);
        msg.set_msg_type(msg_type::ECHO_REPLY);
        msg.set_checksum(checksum::update_u16(msg.checksum(), old, new));
    }
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.set_hop_limit(ECHO_HOP_LIMIT);
    if let Some(macs) = frame.get_mut(..12) {
        macs[..6].copy_from_slice(&eth_src.octets());
        macs[6..].copy_from_slice(&our_mac.octets());
    }
    Local6::EchoReply { len, kind }
}

/// Replaces the content of `frame` by `bytes`, resizing it: sends an
/// [`NdReply`] written into a scratch buffer back out in the received frame's
/// own buffer, as ARP replies are (when the solicitation itself is not needed
/// any more). False, leaving the frame as it was, when it has no room to grow.
pub fn replace_frame<F: Frame>(frame: &mut F, bytes: &[u8]) -> bool {
    let len = frame.len();
    let resized = if bytes.len() >= len { frame.append(bytes.len() - len) } else { frame.trim(len - bytes.len()) };
    match frame.data_mut().get_mut(..bytes.len()) {
        Some(data) if resized => {
            data.copy_from_slice(bytes);
            true
        }
        _ => false,
    }
}
