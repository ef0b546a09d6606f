//! The director is a router hop for IPv6 too: forwarded packets lose one hop.
//!
//! As [`super::ttl`] for IPv4 (Linux IPVS's `decrement_ttl()` handles both
//! families): every IPv6 packet rvs forwards, in every mode and both
//! directions, has its hop limit decremented before any other rewrite. IPv6
//! has no header checksum, so nothing else changes. A packet that arrives
//! with a hop limit of 0 or 1 is not forwarded: the caller answers it with
//! ICMPv6 Time Exceeded, code 0 ([`super::icmp6_err::make_error6`]), quoting
//! it as it arrived. TUN decrements the inner header and the outer copies it;
//! NAT64 decrements here and the IPv4 TTL copies the result (RFC 7915 §5.1).

use crate::wire::ipv6::HEADER_LEN;
use crate::wire::WireError;

use super::FwdError;

/// Decrements the hop limit of the IPv6 packet `ip`. A hop limit of 0 or 1
/// leaves the packet unchanged and fails with [`FwdError::TtlExceeded`] (the
/// caller's cue for ICMPv6 Time Exceeded).
pub fn decrement(ip: &mut [u8]) -> Result<(), FwdError> {
    let Some(header) = ip.get_mut(..HEADER_LEN) else { return Err(WireError::Truncated.into()) };
    if header[0] >> 4 != 6 {
        return Err(WireError::Malformed("ipv6: version is not 6").into());
    }
    let hop = header[HOP_LIMIT];
    if hop <= 1 {
        return Err(FwdError::TtlExceeded);
    }
    header[HOP_LIMIT] = hop - 1;
    Ok(())
}

/// Offset of the hop limit in the IPv6 header.
const HOP_LIMIT: usize = 7;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwd::fixtures6::fixture;

    #[test]
    fn hop_limit_is_decremented_or_expires() {
        struct Case {
            what: &'static str,
            input: Vec<u8>,
            expect: Result<Vec<u8>, FwdError>,
        }
        let cases = [
            Case { what: "64 → 63", input: fixture("hop_64"), expect: Ok(fixture("hop_63")) },
            Case { what: "2 → 1", input: fixture("hop_2"), expect: Ok(fixture("hop_1")) },
            Case { what: "1 dies here", input: fixture("hop_1"), expect: Err(FwdError::TtlExceeded) },
            Case { what: "0 dies here", input: fixture("hop_0"), expect: Err(FwdError::TtlExceeded) },
            Case { what: "truncated", input: fixture("hop_64")[..39].to_vec(), expect: Err(WireError::Truncated.into()) },
            Case { what: "an IPv4 header", input: vec![0x45; 40], expect: Err(WireError::Malformed("ipv6: version is not 6").into()) },
        ];
        for case in cases {
            let mut ip = case.input.clone();
            let got = decrement(&mut ip).map(|()| ip.clone());
            assert_eq!(got, case.expect, "{}", case.what);
            if case.expect.is_err() {
                assert_eq!(ip, case.input, "{}: left as it arrived", case.what);
            }
        }
    }
}
