//! The director is a router hop: forwarded packets lose one TTL.
//!
//! Linux IPVS decrements the IPv4 TTL of every packet it transmits to a real
//! server, in every forwarding mode (`decrement_ttl()` in `ip_vs_xmit.c`,
//! called from the route lookup all xmit functions share), and answers a
//! packet that arrives with TTL 0 or 1 with ICMP time exceeded instead of
//! forwarding it. Replies that pass through the director (NAT, FULLNAT) are
//! routed by the kernel's forwarding path, which does the same. rvs applies
//! the rule to both directions before any other rewrite, so a dropped
//! packet is quoted in the ICMP error exactly as it arrived; TUN decrements
//! the inner header, and the outer one copies it (as `ip_vs_tunnel_xmit`).

use crate::wire::ipv4::HEADER_LEN;
use crate::wire::{checksum, WireError};

use super::FwdError;

/// Decrements the TTL of the IPv4 packet `ip` and updates its header checksum
/// incrementally (RFC 1624). A TTL of 0 or 1 leaves the packet unchanged and
/// fails with [`FwdError::TtlExceeded`].
#[inline]
pub fn decrement(ip: &mut [u8]) -> Result<(), FwdError> {
    // Only the TTL and checksum are read: the header was checked when the
    // packet was classified.
    let Some(header) = ip.first_chunk_mut::<HEADER_LEN>() else { return Err(WireError::Truncated.into()) };
    let ttl = header[TTL];
    if ttl <= 1 {
        return Err(FwdError::TtlExceeded);
    }
    let old = u16::from_be_bytes([header[CHECKSUM], header[CHECKSUM + 1]]);
    header[TTL] = ttl - 1;
    header[CHECKSUM..CHECKSUM + 2].copy_from_slice(&decremented_checksum(old).to_be_bytes());
    Ok(())
}

/// The header checksum after the TTL (the high byte of the TTL/protocol
/// word) lost one, from the checksum `old` before. RFC 1624 eqn. 3,
/// `HC' = ~(~HC + ~m + m')`, with `m' = m - 0x0100`: `~m + m'` is
/// `(0xffff - m) + (m - 0x0100) = 0xfeff` whatever the protocol, so the
/// result is [`checksum::update_u16`]'s for the old and new words (see the
/// tests) without reading them.
#[inline]
fn decremented_checksum(old: u16) -> u16 {
    !checksum::fold(u32::from(!old) + 0xfeff)
}

/// Offsets in the IPv4 header.
const TTL: usize = 8;
const CHECKSUM: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ipv4Packet;

    /// An IPv4 header (TCP, 10.0.0.2 → 10.0.0.101, TTL given by the case) with
    /// its checksum, computed outside rvs (a ones-complement sum in Python).
    fn header(ttl: u8, csum: [u8; 2]) -> Vec<u8> {
        vec![0x45, 0x00, 0x00, 0x14, 0x00, 0x4d, 0x40, 0x00, ttl, 0x06, csum[0], csum[1], 10, 0, 0, 2, 10, 0, 0, 101]
    }

    proptest::proptest! {
        /// The checksum update by the constant word change is the general
        /// RFC 1624 update over the old and new TTL/protocol words.
        #[test]
        fn the_constant_update_is_the_general_one(old: u16, ttl in 2u8..=255, proto: u8) {
            let word = |t: u8| u16::from_be_bytes([t, proto]);
            proptest::prop_assert_eq!(decremented_checksum(old), checksum::update_u16(old, word(ttl), word(ttl - 1)));
        }
    }

    #[test]
    fn ttl_is_decremented_with_an_incremental_checksum() {
        struct Case {
            what: &'static str,
            input: Vec<u8>,
            expect: Result<Vec<u8>, FwdError>,
        }
        let cases = [
            Case { what: "64 → 63", input: header(64, [0x26, 0x31]), expect: Ok(header(63, [0x27, 0x31])) },
            Case { what: "2 → 1", input: header(2, [0x64, 0x31]), expect: Ok(header(1, [0x65, 0x31])) },
            Case { what: "255 → 254", input: header(255, [0x67, 0x30]), expect: Ok(header(254, [0x68, 0x30])) },
            Case { what: "1 dies here", input: header(1, [0x65, 0x31]), expect: Err(FwdError::TtlExceeded) },
            Case { what: "0 dies here", input: header(0, [0x66, 0x31]), expect: Err(FwdError::TtlExceeded) },
        ];
        for case in cases {
            let mut ip = case.input.clone();
            let got = decrement(&mut ip).map(|()| ip.clone());
            assert_eq!(got, case.expect, "{}", case.what);
            if case.expect.is_err() {
                assert_eq!(ip, case.input, "{}: an expired packet is left as it arrived", case.what);
            }
            assert!(Ipv4Packet::new_checked(&ip[..]).expect("ip").verify_checksum(), "{}", case.what);
        }
    }
}
