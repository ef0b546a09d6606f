//! Zero-copy packet views and checksum helpers.
//!
//! Every header type is a thin wrapper around a byte buffer (`T: AsRef<[u8]>`), in the
//! style of smoltcp's `wire` module:
//!
//! * `new_unchecked(buf)` wraps the buffer without any validation; accessors may then
//!   panic on a short buffer.
//! * `new_checked(buf)` validates the lengths (and the fixed fields that make a header
//!   interpretable) so that afterwards **no accessor can panic**, whatever the bytes.
//! * Setters exist when `T: AsMut<[u8]>`; `into_inner()` gives the buffer back.
//!
//! Views never copy and never allocate. [`builder`] constructs complete, valid frames
//! for tests, benchmarks and fixtures.
//!
//! Layering: an [`EthernetFrame`]'s `payload()` is fed to [`Ipv4Packet`] or
//! [`ArpPacket`]; an [`Ipv4Packet`]'s `payload()` (exactly `header_len..total_len`, so
//! Ethernet padding is excluded) is fed to [`TcpSegment`], [`UdpDatagram`] or
//! [`IcmpPacket`].
//!
//! IPv6: an [`EthernetFrame`]'s payload is fed to [`Ipv6Packet`]; its extension
//! headers are walked (bounded) by [`ipv6_ext`] to the upper-layer header, which
//! is viewed as a [`TcpSegment`] or [`UdpDatagram`] (checksums over the IPv6
//! pseudo-header in [`ipv6_l4`]) or an [`Icmpv6Packet`], and neighbour
//! discovery messages as [`NeighborSolicit`] / [`NeighborAdvert`] ([`nd`]).

pub mod arp;
pub mod builder;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6_ext;
pub mod ipv6_l4;
pub mod nd;
pub mod offload;
pub mod tcp;
#[cfg(test)]
mod test_fixtures;
pub mod udp;

pub use arp::ArpPacket;
pub use ethernet::{ethertype, EthernetFrame, MacAddr};
pub use icmp::IcmpPacket;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::{ip_proto, Ipv4Packet};
pub use ipv6::Ipv6Packet;
pub use nd::{NeighborAdvert, NeighborSolicit};
pub use tcp::TcpSegment;
pub use udp::UdpDatagram;

/// The big-endian 16-bit word at `r` of `b` (a view's accessor, called once
/// its check guaranteed the range: one bounds check, 0 if it ever failed).
#[inline]
pub(crate) fn be16(b: &[u8], r: std::ops::Range<usize>) -> u16 {
    match b.get(r) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// The big-endian 32-bit word at `r` of `b` (as [`be16`]).
#[inline]
pub(crate) fn be32(b: &[u8], r: std::ops::Range<usize>) -> u32 {
    match b.get(r) {
        Some(&[w, x, y, z]) => u32::from_be_bytes([w, x, y, z]),
        _ => 0,
    }
}

/// Why a buffer could not be viewed as a given header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or than a length field claims).
    #[error("packet truncated")]
    Truncated,
    /// A field holds a value that makes the packet uninterpretable.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}
