//! Masquerading over IPv6 (`ipvsadm -m -6`, keepalived `lb_kind NAT` with an
//! IPv6 virtual server).
//!
//! As IPv4 [`super::nat`]: inbound, the destination (`[VIP]:vport`) becomes the
//! real server (`[RIP]:rport`); the real server's replies, routed back through
//! rvs, have their source rewritten back to `[VIP]:vport`. IPv6 has no header
//! checksum; the TCP/UDP checksum covers the addresses through the
//! pseudo-header and is updated incrementally (RFC 1624 over the eight words
//! of each address and the port).
//!
//! Extension headers are walked and kept ([`super::l4v6`]): a first fragment
//! is rewritten like a whole packet (only header words change), a non-first
//! fragment is refused (no ports: the caller reassembles or drops), as is a
//! routing header with segments left. A UDP checksum of 0 is invalid over IPv6
//! (RFC 8200 §8.1): such a datagram is refused, never forwarded.

use std::net::{Ipv6Addr, SocketAddrV6};

use crate::wire::ipv6::next_header;
use crate::wire::{checksum, WireError};

use super::{l4v6, read_u16, FwdError, NextHop6};

/// NAT inbound: rewrites a client packet `ip` (IPv6 header on) to the real
/// server `real` and says where it goes (routed towards the real server).
pub fn xmit_inbound(ip: &mut [u8], real: SocketAddrV6) -> Result<NextHop6, FwdError> {
    rewrite_ends(ip, None, Some(real))?;
    Ok(NextHop6::Routed(*real.ip()))
}

/// NAT reply: rewrites a real server's reply `ip` to come from `vip` and says
/// where it goes (routed towards the client, its destination).
pub fn xmit_reply(ip: &mut [u8], vip: SocketAddrV6) -> Result<NextHop6, FwdError> {
    rewrite_ends(ip, Some(vip), None)?;
    let client = crate::wire::Ipv6Packet::new_checked(&ip[..])?.dst_addr();
    Ok(NextHop6::Routed(client))
}

/// Sets the source (`src`) and/or destination (`dst`) address and port of an
/// IPv6 TCP or UDP packet in one pass, updating the transport checksum once
/// for all the words that changed (RFC 1624 eqn. 3 over their sum).
pub fn rewrite_ends(ip: &mut [u8], src: Option<SocketAddrV6>, dst: Option<SocketAddrV6>) -> Result<(), FwdError> {
    let upper = l4v6::transport(ip)?;
    let at = checksum_offset(upper.protocol);
    let (head, l4) = ip.split_at_mut(upper.offset);
    let old = read_u16(l4, at);
    if upper.protocol == next_header::UDP && old == 0 {
        return Err(WireError::Malformed("udp over ipv6: zero checksum").into());
    }
    // Σ(~old + new) over the changed 16-bit words.
    let mut words = 0u64;
    if let Some(to) = src {
        words += set_addr(head, SRC_ADDR, *to.ip()) + set_u16(l4, SRC_PORT, to.port());
    }
    if let Some(to) = dst {
        words += set_addr(head, DST_ADDR, *to.ip()) + set_u16(l4, DST_PORT, to.port());
    }
    let c = adjust(old, words);
    let c = if upper.protocol == next_header::UDP && c == 0 { 0xffff } else { c };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Sets the source and/or destination address of a non-first fragment of a
/// datagram whose first fragment went through [`rewrite_ends`] (what IPv4's
/// reassembler does for the fragments that follow the first one): no port and
/// no checksum is in this fragment, so only the addresses change. Errors: not
/// a non-first fragment (a packet with its transport header must go through
/// [`rewrite_ends`]), or a malformed chain.
pub fn rewrite_fragment_addrs(ip: &mut [u8], src: Option<Ipv6Addr>, dst: Option<Ipv6Addr>) -> Result<(), FwdError> {
    let chain = {
        let pkt = crate::wire::Ipv6Packet::new_checked(&ip[..])?;
        crate::wire::ipv6_ext::walk(pkt.next_header(), pkt.payload())?
    };
    if chain.fragment.is_none_or(|f| f.is_first()) {
        return Err(FwdError::Untranslatable("ipv6: not a non-first fragment"));
    }
    if let Some(a) = src {
        set_addr(ip, SRC_ADDR, a);
    }
    if let Some(a) = dst {
        set_addr(ip, DST_ADDR, a);
    }
    Ok(())
}

/// The checksum `old` after words whose Σ(~old + new) is `words` changed.
pub(crate) fn adjust(old: u16, words: u64) -> u16 {
    !(checksum::fold64(u64::from(!old) + words) as u16)
}

/// Σ(~old + new) over the eight words of an address change (0 when equal).
pub(crate) fn addr_words(old: Ipv6Addr, new: Ipv6Addr) -> u64 {
    if old == new {
        return 0;
    }
    old.segments().iter().zip(new.segments().iter()).map(|(o, n)| u64::from(!*o) + u64::from(*n)).sum()
}

/// Writes the address `new` at `at` and returns Σ(~old + new) over its words.
fn set_addr(b: &mut [u8], at: usize, new: Ipv6Addr) -> u64 {
    let mut old = [0u8; 16];
    old.copy_from_slice(&b[at..at + 16]);
    b[at..at + 16].copy_from_slice(&new.octets());
    addr_words(Ipv6Addr::from(old), new)
}

/// Writes `new` at `at` and returns `~old + new`.
fn set_u16(b: &mut [u8], at: usize, new: u16) -> u64 {
    let old = read_u16(b, at);
    b[at..at + 2].copy_from_slice(&new.to_be_bytes());
    u64::from(!old) + u64::from(new)
}

/// Offset of the checksum in a TCP or UDP header.
pub(crate) fn checksum_offset(protocol: u8) -> usize {
    if protocol == next_header::TCP {
        16
    } else {
        6
    }
}

/// Offsets of the IPv6 source and destination addresses.
const SRC_ADDR: usize = 8;
const DST_ADDR: usize = 24;
/// Offsets of the TCP/UDP source and destination ports.
const SRC_PORT: usize = 0;
const DST_PORT: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwd::fixtures6::fixture;

    fn sock(a: &str, port: u16) -> SocketAddrV6 {
        SocketAddrV6::new(a.parse().expect("addr"), port, 0, 0)
    }

    #[test]
    fn nat_rewrites_match_scapy() {
        let (vip, real) = (sock("2001:db8::64", 80), sock("2001:db8:1::11", 8080));
        let client: Ipv6Addr = "2001:db8::1".parse().expect("addr");
        let cases = [
            ("tcp inbound", "nat_in_tcp", "nat_out_tcp", true),
            ("udp inbound", "nat_in_udp", "nat_out_udp", true),
            ("tcp reply", "nat_reply_tcp", "nat_reply_out_tcp", false),
            ("udp reply", "nat_reply_udp", "nat_reply_out_udp", false),
            ("hop-by-hop, destination options, first fragment", "nat_in_chain", "nat_out_chain", true),
            ("atomic fragment", "nat_in_atomic", "nat_out_atomic", true),
            ("udp checksum computing to 0xffff", "nat_in_udp_ffff", "nat_out_udp_ffff", true),
        ];
        for (what, input, expected, inbound) in cases {
            let mut ip = fixture(input);
            let hop = if inbound { xmit_inbound(&mut ip, real) } else { xmit_reply(&mut ip, vip) };
            assert_eq!(ip, fixture(expected), "{what}");
            let want = if inbound { NextHop6::Routed(*real.ip()) } else { NextHop6::Routed(client) };
            assert_eq!(hop, Ok(want), "{what}");
        }
    }

    #[test]
    fn nat_refuses_what_it_cannot_rewrite() {
        let real = sock("2001:db8:1::11", 8080);
        let cases: [(&str, Vec<u8>, FwdError); 5] = [
            ("second fragment", fixture("frag_second"), FwdError::Untranslatable("ipv6: non-first fragment carries no ports")),
            ("icmpv6", fixture("echo6"), FwdError::Protocol(58)),
            ("zero udp checksum", fixture("udp_zero_csum6"), FwdError::Wire(WireError::Malformed("udp over ipv6: zero checksum"))),
            (
                "routing header with segments left",
                fixture("routing_left"),
                FwdError::Untranslatable("ipv6: routing header with segments left"),
            ),
            ("chain past the payload", fixture("chain_past_end"), FwdError::Wire(WireError::Truncated)),
        ];
        for (what, input, err) in cases {
            let mut ip = input.clone();
            assert_eq!(xmit_inbound(&mut ip, real), Err(err), "{what}");
            assert_eq!(ip, input, "{what}: unchanged");
        }
    }

    #[test]
    fn following_fragments_get_the_first_ones_addresses() {
        let real: Ipv6Addr = "2001:db8:1::11".parse().expect("addr");
        let mut ip = fixture("frag_second");
        assert_eq!(rewrite_fragment_addrs(&mut ip, None, Some(real)), Ok(()));
        assert_eq!(ip, fixture("frag_second_out"));
        let mut first = fixture("nat_in_chain");
        assert_eq!(rewrite_fragment_addrs(&mut first, None, Some(real)), Err(FwdError::Untranslatable("ipv6: not a non-first fragment")));
        assert_eq!(first, fixture("nat_in_chain"));
    }
}
