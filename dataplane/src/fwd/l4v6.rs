//! Where the transport header of an IPv6 packet is, for the IPv6 rewrites.
//!
//! The extension headers are walked with the bounded walker of
//! [`crate::wire::ipv6_ext`], inside the IPv6 payload length only (Ethernet
//! padding after it is never read as a header). What the IPv6 modes accept:
//!
//! * hop-by-hop, destination options and a routing header whose segments-left
//!   is 0 are passed over and kept as they are;
//! * a routing header with segments left is refused: the packet's final
//!   destination is not the address in the header, so neither the VIP match nor
//!   the pseudo-header would hold;
//! * a first fragment (offset 0, atomic or not) carries the ports and is
//!   rewritten like a whole packet: only header words change, and the
//!   transport checksum, which covers the whole reassembled datagram, is
//!   updated incrementally (as IPv4 [`super::nat`] does for first fragments);
//! * a non-first fragment carries no ports and is refused
//!   ([`FwdError::Untranslatable`]): the caller reassembles first, or drops;
//! * anything but TCP or UDP after the chain is [`FwdError::Protocol`].

use crate::wire::ipv6::{next_header, HEADER_LEN};
use crate::wire::ipv6_ext::{self, Fragment};
use crate::wire::{Ipv6Packet, WireError};

use super::FwdError;

/// The upper-layer header of an IPv6 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upper {
    /// Its protocol (next header value of the last extension header).
    pub protocol: u8,
    /// Its offset from the start of the IPv6 header (40 + extension headers).
    pub offset: usize,
    /// Upper-layer length: bytes from `offset` to the end of the IPv6 payload.
    pub len: usize,
    /// The fragment header's fields, when there is one.
    pub fragment: Option<Fragment>,
}

impl Upper {
    /// Length of the extension headers between the IPv6 header and the upper layer.
    pub fn ext_len(&self) -> usize {
        self.offset - HEADER_LEN
    }
}

/// Walks the IPv6 packet `ip` to its upper-layer header (any protocol).
/// Errors: a bad IPv6 header or an extension chain running past the payload
/// ([`FwdError::Wire`]), a routing header with segments left or a non-first
/// fragment ([`FwdError::Untranslatable`]).
pub fn locate(ip: &[u8]) -> Result<Upper, FwdError> {
    let pkt = Ipv6Packet::new_checked(ip)?;
    let payload = pkt.payload();
    let chain = ipv6_ext::walk(pkt.next_header(), payload)?;
    if chain.routing.is_some_and(|r| r.segments_left != 0) {
        return Err(FwdError::Untranslatable("ipv6: routing header with segments left"));
    }
    if chain.fragment.is_some_and(|f| !f.is_first()) {
        return Err(FwdError::Untranslatable("ipv6: non-first fragment carries no ports"));
    }
    Ok(Upper { protocol: chain.protocol, offset: HEADER_LEN + chain.offset, len: payload.len() - chain.offset, fragment: chain.fragment })
}

/// [`locate`], then checks that the upper layer is TCP or UDP and that its
/// header (20 or 8 bytes, TCP's data offset included) lies within the payload.
pub fn transport(ip: &[u8]) -> Result<Upper, FwdError> {
    let upper = locate(ip)?;
    let l4 = ip.get(upper.offset..upper.offset + upper.len).ok_or(WireError::Truncated)?;
    let min = match upper.protocol {
        next_header::TCP => {
            let doff = l4.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
            if doff < crate::wire::tcp::HEADER_LEN {
                return Err(if l4.len() < crate::wire::tcp::HEADER_LEN {
                    WireError::Truncated.into()
                } else {
                    WireError::Malformed("tcp: data offset below 5").into()
                });
            }
            doff
        }
        next_header::UDP => crate::wire::udp::HEADER_LEN,
        p => return Err(FwdError::Protocol(p)),
    };
    if l4.len() < min {
        return Err(WireError::Truncated.into());
    }
    Ok(upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwd::fixtures6::fixture;

    #[test]
    fn the_walk_finds_the_transport_header_or_says_why_not() {
        let got = transport(&fixture("nat_in_tcp")).expect("tcp");
        assert_eq!((got.protocol, got.offset, got.fragment), (next_header::TCP, 40, None));
        let chain = transport(&fixture("nat_in_chain")).expect("first fragment");
        assert_eq!((chain.protocol, chain.offset, chain.ext_len()), (next_header::TCP, 40 + 8 + 16 + 8, 32));
        assert_eq!(chain.len, fixture("nat_in_chain").len() - 72);
        // An ICMPv6 message is located but is not a transport the modes rewrite.
        let echo = fixture("echo6");
        assert_eq!(locate(&echo).map(|u| u.protocol), Ok(next_header::ICMPV6));
        assert_eq!(transport(&echo), Err(FwdError::Protocol(next_header::ICMPV6)));
        let tcp = fixture("nat_in_tcp");
        assert_eq!(transport(&tcp[..30]), Err(WireError::Truncated.into()));
        assert_eq!(transport(&tcp[..tcp.len() - 1]), Err(WireError::Truncated.into()), "payload length past the buffer");
        // TCP data offset below 5 words.
        let mut bad = tcp.clone();
        bad[40 + 12] = 0x40;
        assert!(matches!(transport(&bad), Err(FwdError::Wire(WireError::Malformed(_)))));
    }
}
