//! TCP resets rvs sends itself: to a client whose connection the director
//! ended (its real server was removed and `expire_nodest_conn` is on).
//!
//! Linux IPVS drops such a packet and expires the connection; the client's
//! next packet then finds no connection, reaches the director's own TCP
//! stack (the VIP is a local address there) and is answered with a reset.
//! rvs answers the first packet directly, so the client learns at once
//! instead of after a retransmission timeout. The reset is generated as
//! RFC 793 (3.4, "Reset Generation") says: from the address and port the
//! client sent to (VIP:vport), with the sequence number taken from the
//! segment's acknowledgment when it has one, else sequence 0 and an
//! acknowledgment of everything the segment occupied. A reset is never
//! answered with a reset.

use std::net::Ipv4Addr;

use crate::frame::Frame;
use crate::wire::tcp::flags;
use crate::wire::{ip_proto, ipv4, tcp, Ipv4Packet, TcpSegment, WireError};

use super::icmp_err::may_answer;
use super::FwdError;

/// Turns the frame holding a client's TCP segment (its IPv4 packet at
/// `l2_len`) into the reset that answers it, in place: IP and TCP headers
/// without options, no payload, both checksums computed in full. The
/// Ethernet header is left for the caller. Returns the address it goes to.
pub fn make_reset<F: Frame>(frame: &mut F, l2_len: usize) -> Result<Ipv4Addr, FwdError> {
    let (client, vip, client_port, vport, seq, ack, reset_flags) = {
        let ip = Ipv4Packet::new_checked(frame.data().get(l2_len..).ok_or(WireError::Truncated)?)?;
        if ip.protocol() != ip_proto::TCP {
            return Err(FwdError::Protocol(ip.protocol()));
        }
        let seg = TcpSegment::new_checked(ip.payload())?;
        if seg.rst() || !may_answer(ip.src_addr()) {
            return Err(FwdError::NoAnswer);
        }
        let occupied = seg.payload().len() as u32 + u32::from(seg.syn()) + u32::from(seg.fin());
        let (seq, ack, reset_flags) = if seg.ack() {
            (seg.ack_number(), 0, flags::RST)
        } else {
            (0, seg.seq_number().wrapping_add(occupied), flags::RST | flags::ACK)
        };
        (ip.src_addr(), ip.dst_addr(), seg.src_port(), seg.dst_port(), seq, ack, reset_flags)
    };
    let len = l2_len + ipv4::HEADER_LEN + tcp::HEADER_LEN;
    let excess = frame.len().checked_sub(len).ok_or(WireError::Truncated)?;
    if !frame.trim(excess) {
        return Err(FwdError::NoRoom);
    }
    let total_len = (ipv4::HEADER_LEN + tcp::HEADER_LEN) as u16;
    let mut ip = super::originate_ipv4(&mut frame.data_mut()[l2_len..], ip_proto::TCP, total_len, vip, client, true);
    let mut seg = TcpSegment::new_unchecked(ip.payload_mut());
    seg.set_src_port(vport);
    seg.set_dst_port(client_port);
    seg.set_seq_number(seq);
    seg.set_ack_number(ack);
    seg.set_header_len(tcp::HEADER_LEN);
    seg.set_flags(reset_flags);
    seg.set_window(0);
    seg.set_urgent_ptr(0);
    seg.fill_checksum(vip, client);
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;
    use crate::wire::builder::from_hex;

    /// Frames written by an independent Python generator (struct + a
    /// ones-complement sum), not by rvs's builder.
    #[test]
    fn resets_follow_rfc_793() {
        struct Case {
            what: &'static str,
            input: &'static str,
            expect: Result<&'static str, FwdError>,
        }
        let cases = [
            Case {
                what: "a segment with ACK: seq = its ack, flags RST",
                input: "02d00000000102c00000000208004500002b004d40003d0629160a0000020a0000699c400050000003e8000013885018020020fc0000616263",
                expect: Ok("02d00000000102c00000000208004500002800004000400626660a0000690a00000200509c40000013880000000050040000eb5d0000"),
            },
            Case {
                what: "a FIN without ACK: seq 0, ack = its seq + 1, flags RST|ACK",
                input: "02d00000000102c000000002080045000028004e40003d0629180a0000020a0000699c410050000000070000000050010200fce00000",
                expect: Ok("02d00000000102c00000000208004500002800004000400626660a0000690a00000200509c41000000000000000850140000fecc0000"),
            },
            Case {
                what: "a reset is never answered",
                input: "02d00000000102c000000002080045000028004e40003d0629180a0000020a0000699c410050000000070000000050040200fcdd0000",
                expect: Err(FwdError::NoAnswer),
            },
        ];
        for case in cases {
            let mut f = VecFrame::new(&from_hex(case.input));
            let got = make_reset(&mut f, 14).map(|to| (to, f.to_vec()));
            let want = case.expect.map(|h| (Ipv4Addr::new(10, 0, 0, 2), from_hex(h)));
            assert_eq!(got, want, "{}", case.what);
        }
    }
}
