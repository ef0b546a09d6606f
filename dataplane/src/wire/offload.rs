//! Checksums a sender's offload left unfinished.
//!
//! A Linux sender with transmit checksum offload on (the default on veth and
//! tap devices) hands its packets to the device with a *partial* TCP/UDP
//! checksum: the field holds only the folded pseudo-header sum, and the
//! "hardware" is to finish it. Between two namespaces nothing ever does; the
//! kernel knows (`CHECKSUM_PARTIAL`, `TP_STATUS_CSUMNOTREADY` for packet
//! sockets), but DPDK 22.11's af_packet PMD neither reads that status nor sets
//! `RTE_MBUF_F_RX_L4_CKSUM_*`, so rvs recognises such packets itself: the
//! field equals the pseudo-header sum (a 6-word sum, cheap enough for every
//! packet) and the full checksum does not verify. They are completed before
//! any incremental rewrite, which would otherwise carry the wrong value to
//! the real server.

use std::net::Ipv4Addr;

use super::{checksum, ip_proto, Ipv4Packet};

/// Completes a partial TCP/UDP checksum of the IPv4 packet `ip` in place.
/// True when it was partial (and is now complete); anything else is left as it is.
pub fn complete_partial_checksum(ip: &mut [u8]) -> bool {
    let Ok(mut pkt) = Ipv4Packet::new_checked(ip) else { return false };
    let (src, dst, proto) = (pkt.src_addr(), pkt.dst_addr(), pkt.protocol());
    complete_partial_transport_checksum(pkt.payload_mut(), src, dst, proto)
}

/// [`complete_partial_checksum`] for the transport segment `l4` (header and
/// payload) of an IPv4 packet from `src` to `dst` of protocol `proto`.
pub fn complete_partial_transport_checksum(l4: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> bool {
    let offset = match proto {
        ip_proto::TCP => 16,
        ip_proto::UDP => 6,
        _ => return false,
    };
    let Ok(len) = u16::try_from(l4.len()) else { return false };
    let pseudo = checksum::pseudo_header_v4(src, dst, proto, len);
    let Some(field) = l4.get(offset..offset + 2).map(|b| u16::from_be_bytes([b[0], b[1]])) else { return false };
    if field != checksum::fold(pseudo) || checksum::fold(pseudo + checksum::sum(l4)) == 0xffff {
        return false;
    }
    l4[offset..offset + 2].copy_from_slice(&[0, 0]);
    let full = !checksum::fold(pseudo + checksum::sum(l4));
    // UDP sends a computed 0 as 0xffff (0 means "no checksum").
    let full = if full == 0 && proto == ip_proto::UDP { 0xffff } else { full };
    l4[offset..offset + 2].copy_from_slice(&full.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::from_hex;

    /// Frames from an independent Python generator: a partial checksum is the
    /// folded pseudo-header sum, as Linux leaves it for the device.
    #[test]
    fn partial_checksums_are_completed_and_others_left_alone() {
        const TCP_FULL: &str =
            "02d00000000102c000000002080045000028004d40004006261d0a0000020a0000659c400050000003e8000000005002faf000130000";
        const TCP_PARTIAL: &str =
            "02d00000000102c000000002080045000028004d40004006261d0a0000020a0000659c400050000003e8000000005002faf014810000";
        const UDP_FULL: &str = "02d00000000102c000000002080045000021004e4000401126180a0000020a00006514e90035000d86677175657279";
        const UDP_PARTIAL: &str = "02d00000000102c000000002080045000021004e4000401126180a0000020a00006514e90035000d14857175657279";
        let mut corrupt = from_hex(TCP_FULL);
        corrupt[14 + 20 + 16] ^= 0x5a;
        let cases: [(&str, Vec<u8>, bool, Vec<u8>); 5] = [
            ("TCP SYN with a partial checksum", from_hex(TCP_PARTIAL), true, from_hex(TCP_FULL)),
            ("UDP with a partial checksum", from_hex(UDP_PARTIAL), true, from_hex(UDP_FULL)),
            ("complete TCP checksum", from_hex(TCP_FULL), false, from_hex(TCP_FULL)),
            ("complete UDP checksum", from_hex(UDP_FULL), false, from_hex(UDP_FULL)),
            ("a wrong checksum that is not partial stays wrong", corrupt.clone(), false, corrupt),
        ];
        for (what, input, partial, expect) in cases {
            let mut frame = input;
            assert_eq!(complete_partial_checksum(&mut frame[14..]), partial, "{what}");
            assert_eq!(frame, expect, "{what}");
        }
    }
}
