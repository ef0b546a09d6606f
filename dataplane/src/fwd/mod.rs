//! Forwarding modes: one file per mode, as in IPVS and DPVS.
//!
//! Each mode rewrites the IPv4 packet (the bytes from the IP header on) of a
//! client's packet on its way to the real server and says which address the
//! frame must be sent towards; NAT also rewrites the real server's replies.
//! Ethernet addressing is done afterwards by the caller, from the neighbour table.
//! Checksums are updated incrementally (RFC 1624), never recomputed.
//!
//! Every mode decrements the TTL ([`ttl`]) as Linux IPVS does; packets that
//! cannot be forwarded are answered like IPVS answers them: ICMP errors
//! ([`icmp_err`]) and TCP resets ([`reset`]).

pub mod dr;
pub mod fnat;
pub mod icmp_err;
pub mod nat;
pub mod reset;
pub mod ttl;
pub mod tun;

use std::net::Ipv4Addr;

use crate::wire::WireError;

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
