//! ICMP errors that belong to a connection, and the errors rvs sends itself.
//!
//! An ICMP error (destination unreachable, time exceeded, parameter problem)
//! quotes the IP header and at least 8 bytes of the packet that caused it. When
//! that quoted packet belongs to a balanced connection, the error is forwarded
//! to the other party with the same translation as the connection's packets:
//! the outer addresses like a packet in that direction, the quoted packet like a
//! packet in the *opposite* direction (it travelled the other way). The quoted
//! IP header checksum, the ICMP checksum and the outer IP checksum are
//! recomputed (errors are rare and the quote may be truncated, so an
//! incremental update of the quoted transport checksum is not attempted — the
//! kernel's IPVS leaves it too).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::conn::FlowKey;
use crate::frame::Frame;
use crate::wire::{icmp, ip_proto, ipv4, IcmpPacket, Ipv4Packet, WireError};

use super::FwdError;

/// Bytes of the offending packet quoted in errors rvs generates (header + 8, RFC 792).
pub const QUOTE_PAYLOAD: usize = 8;

/// ICMP codes of the errors rvs originates.
pub mod code {
    /// Destination unreachable: port unreachable (no real server, IPVS `ip_vs_leave`).
    pub const PORT_UNREACHABLE: u8 = 3;
    /// Destination unreachable: fragmentation needed and DF set.
    pub const FRAG_NEEDED: u8 = 4;
    /// Time exceeded: TTL exceeded in transit.
    pub const TTL_EXCEEDED: u8 = 0;
}

/// Errors and resets a worker may originate per second, and the burst it may
/// send at once: Linux's `icmp_msgs_per_sec` and `icmp_msgs_burst` defaults.
pub const ANSWERS_PER_SECOND: u32 = 1000;
/// See [`ANSWERS_PER_SECOND`].
pub const ANSWER_BURST: u32 = 50;

/// A token bucket bounding the errors and resets one worker originates, so a
/// flood of packets that each deserve an answer cannot turn rvs into an
/// amplifier (every answer is also no larger than the packet it answers).
#[derive(Clone, Copy, Debug)]
pub struct AnswerLimit {
    tokens: u32,
    refilled_ms: u64,
}

impl Default for AnswerLimit {
    fn default() -> Self {
        AnswerLimit { tokens: ANSWER_BURST, refilled_ms: 0 }
    }
}

impl AnswerLimit {
    /// Takes a token at `now_ms` if one is left; false means "do not answer".
    pub fn allow(&mut self, now_ms: u64) -> bool {
        let earned = now_ms.saturating_sub(self.refilled_ms) * u64::from(ANSWERS_PER_SECOND) / 1000;
        if earned > 0 {
            self.tokens = (u64::from(self.tokens) + earned).min(u64::from(ANSWER_BURST)) as u32;
            self.refilled_ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// True when a packet from `src` may be answered with an ICMP error or a
/// reset: its source names a unique host (RFC 1812 4.3.2.7: not 0/8,
/// loopback, broadcast, multicast or class E).
pub fn may_answer(src: Ipv4Addr) -> bool {
    let first = src.octets()[0];
    first != 0 && !src.is_loopback() && !src.is_broadcast() && !src.is_multicast() && first < 240
}

/// True for the ICMP types that carry a quoted packet and may be forwarded.
pub fn is_error(msg_type: u8) -> bool {
    matches!(msg_type, icmp::msg_type::DEST_UNREACHABLE | icmp::msg_type::TIME_EXCEEDED | 12)
}

/// The 5-tuple of the quoted packet of an ICMP error message (`icmp` = the
/// whole ICMP message), if it is TCP or UDP and long enough to carry its ports.
pub fn quoted_flow(icmp_msg: &[u8]) -> Option<FlowKey> {
    let quote = icmp_msg.get(icmp::HEADER_LEN..)?;
    let ver_ihl = *quote.first()?;
    let hl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || hl < ipv4::HEADER_LEN || quote.len() < hl + 4 {
        return None;
    }
    let proto = quote[9];
    if proto != ip_proto::TCP && proto != ip_proto::UDP {
        return None;
    }
    let src = Ipv4Addr::new(quote[12], quote[13], quote[14], quote[15]);
    let dst = Ipv4Addr::new(quote[16], quote[17], quote[18], quote[19]);
    let sport = u16::from_be_bytes([quote[hl], quote[hl + 1]]);
    let dport = u16::from_be_bytes([quote[hl + 2], quote[hl + 3]]);
    Some(FlowKey { proto, src, dst, sport, dport })
}

/// Address changes to apply to a forwarded ICMP error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    /// New outer source address.
    pub outer_src: Option<Ipv4Addr>,
    /// New outer destination address.
    pub outer_dst: Option<Ipv4Addr>,
    /// New source address and port of the quoted packet.
    pub quoted_src: Option<SocketAddrV4>,
    /// New destination address and port of the quoted packet.
    pub quoted_dst: Option<SocketAddrV4>,
    /// Added to the quoted TCP sequence number (FULLNAT's `seq_delta` undone,
    /// so the client finds the error within its window).
    pub quoted_seq_shift: u32,
}

/// Applies `t` to the ICMP error in the IPv4 packet `ip`.
pub fn translate(ip: &mut [u8], t: &Translation) -> Result<(), FwdError> {
    let mut outer = Ipv4Packet::new_checked(ip)?;
    if outer.protocol() != ip_proto::ICMP {
        return Err(FwdError::Protocol(outer.protocol()));
    }
    if let Some(a) = t.outer_src {
        outer.set_src_addr(a);
    }
    if let Some(a) = t.outer_dst {
        outer.set_dst_addr(a);
    }
    outer.fill_checksum();
    let mut msg = IcmpPacket::new_checked(outer.payload_mut())?;
    {
        let quote = msg.data_mut();
        let hl = usize::from(quote.first().ok_or(WireError::Truncated)? & 0x0f) * 4;
        if hl < ipv4::HEADER_LEN || quote.len() < hl + 4 {
            return Err(WireError::Truncated.into());
        }
        if let Some(s) = t.quoted_src {
            quote[12..16].copy_from_slice(&s.ip().octets());
            quote[hl..hl + 2].copy_from_slice(&s.port().to_be_bytes());
        }
        if let Some(d) = t.quoted_dst {
            quote[16..20].copy_from_slice(&d.ip().octets());
            quote[hl + 2..hl + 4].copy_from_slice(&d.port().to_be_bytes());
        }
        if t.quoted_seq_shift != 0 && quote[9] == ip_proto::TCP {
            if let Some(seq) = quote.get_mut(hl + 4..hl + 8) {
                let shifted = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]).wrapping_add(t.quoted_seq_shift);
                seq.copy_from_slice(&shifted.to_be_bytes());
            }
        }
        quote[10] = 0;
        quote[11] = 0;
        let c = crate::wire::checksum::internet(&quote[..hl]);
        quote[10..12].copy_from_slice(&c.to_be_bytes());
    }
    msg.fill_checksum();
    Ok(())
}

/// Turns the frame holding the IPv4 packet at `l2_len` into an ICMP error
/// (`msg_type`/`code`, with `rest` as the second header word, e.g. the next-hop
/// MTU) from `src` back to the packet's sender, quoting its header and first
/// 8 payload bytes. Returns the address the error goes to. Packets RFC 1812
/// forbids answering (ICMP errors, sources that are not a unique host) fail
/// with [`FwdError::NoAnswer`], unchanged.
pub fn make_error<F: Frame>(frame: &mut F, l2_len: usize, src: Ipv4Addr, msg_type: u8, code: u8, rest: u32) -> Result<Ipv4Addr, FwdError> {
    let (to, quote_len) = {
        let ip = Ipv4Packet::new_checked(frame.data().get(l2_len..).ok_or(WireError::Truncated)?)?;
        let about_an_error = ip.protocol() == ip_proto::ICMP && ip.payload().first().is_some_and(|&t| is_error(t));
        if about_an_error || !may_answer(ip.src_addr()) {
            return Err(FwdError::NoAnswer);
        }
        let quote = (ip.header_len() + QUOTE_PAYLOAD).min(usize::from(ip.total_len()));
        (ip.src_addr(), quote)
    };
    let excess = frame.len() - l2_len - quote_len;
    if !frame.trim(excess) {
        return Err(FwdError::NoRoom);
    }
    let added = ipv4::HEADER_LEN + icmp::HEADER_LEN;
    if !frame.insert_gap(l2_len, added) {
        return Err(FwdError::NoRoom);
    }
    let data = frame.data_mut();
    let mut ip = super::originate_ipv4(&mut data[l2_len..], ip_proto::ICMP, (added + quote_len) as u16, src, to, false);
    let mut msg = IcmpPacket::new_unchecked(ip.payload_mut());
    msg.set_msg_type(msg_type);
    msg.set_code(code);
    msg.set_rest_of_header(rest);
    msg.fill_checksum();
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;
    use crate::wire::builder::from_hex;
    use crate::wire::builder::{icmp_frame, tcp_frame, TcpParams};
    use crate::wire::ethernet::HEADER_LEN;
    use crate::wire::MacAddr;

    fn sock(a: [u8; 4], p: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), p)
    }

    fn packet(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
        tcp_frame(&TcpParams {
            src: *src.ip(),
            sport: src.port(),
            dst: *dst.ip(),
            dport: dst.port(),
            payload: b"0123456789".to_vec(),
            ..TcpParams::default()
        })
    }

    /// An ICMP error from `from` to `to` quoting `quoted` (its IP header + 8 bytes).
    fn error(from: Ipv4Addr, to: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
        let ip = &quoted[HEADER_LEN..];
        icmp_frame(MacAddr::ZERO, MacAddr::ZERO, from, to, icmp::msg_type::DEST_UNREACHABLE, 3, 0, &ip[..28])
    }

    #[test]
    fn quoted_flow_is_read_and_translated() {
        let client = sock([10, 0, 0, 2], 40000);
        let vip = sock([10, 0, 0, 101], 80);
        let real = sock([10, 1, 0, 11], 8080);
        // The real server rejects the DNATed packet client → real: its error goes to the client.
        let mut err = error(*real.ip(), *client.ip(), &packet(client, real));
        let flow = quoted_flow(&err[HEADER_LEN + 20..]).expect("quoted tcp");
        assert_eq!((flow.src, flow.sport, flow.dst, flow.dport), (*client.ip(), 40000, *real.ip(), 8080));
        translate(&mut err[HEADER_LEN..], &Translation { outer_src: Some(*vip.ip()), quoted_dst: Some(vip), ..Default::default() })
            .expect("translates");
        // As if the VIP itself had rejected the client's packet: byte for byte an
        // error built from scratch (the quote holds 8 TCP bytes: ports and
        // sequence, no TCP checksum), checksums included.
        assert_eq!(err, error(*vip.ip(), *client.ip(), &packet(client, vip)));
        let ip = Ipv4Packet::new_checked(&err[HEADER_LEN..]).expect("ip");
        assert!(IcmpPacket::new_checked(ip.payload()).expect("icmp").verify_checksum());
    }

    #[test]
    fn a_fullnat_quote_gets_the_clients_sequence_number_back() {
        let (client, vip) = (sock([10, 0, 0, 2], 40000), sock([10, 0, 0, 102], 80));
        let (local, real) = (sock([10, 1, 0, 200], 5001), sock([10, 1, 0, 11], 8080));
        let with_seq = |s: SocketAddrV4, d: SocketAddrV4, seq: u32| {
            tcp_frame(&TcpParams { src: *s.ip(), sport: s.port(), dst: *d.ip(), dport: d.port(), seq, ..TcpParams::default() })
        };
        let delta = 0x9000_0003u32;
        let mut err = error(*real.ip(), *local.ip(), &with_seq(local, real, 0x7f00_0010u32.wrapping_add(delta)));
        let t = Translation {
            outer_src: Some(*vip.ip()),
            outer_dst: Some(*client.ip()),
            quoted_src: Some(client),
            quoted_dst: Some(vip),
            quoted_seq_shift: delta.wrapping_neg(),
        };
        translate(&mut err[HEADER_LEN..], &t).expect("translates");
        assert_eq!(err, error(*vip.ip(), *client.ip(), &with_seq(client, vip, 0x7f00_0010)));
    }

    #[test]
    fn translated_errors_verify() {
        let client = sock([10, 0, 0, 2], 40000);
        let real = sock([10, 1, 0, 11], 8080);
        let mut err = error(*real.ip(), *client.ip(), &packet(client, real));
        translate(
            &mut err[HEADER_LEN..],
            &Translation { outer_dst: Some(Ipv4Addr::new(1, 2, 3, 4)), quoted_src: Some(sock([5, 6, 7, 8], 9)), ..Default::default() },
        )
        .expect("translates");
        let ip = Ipv4Packet::new_checked(&err[HEADER_LEN..]).expect("ip");
        assert!(ip.verify_checksum());
        let msg = IcmpPacket::new_checked(ip.payload()).expect("icmp");
        assert!(msg.verify_checksum());
        let q = Ipv4Packet::new_unchecked(msg.data());
        assert!(q.verify_checksum());
        assert_eq!(q.src_addr(), Ipv4Addr::new(5, 6, 7, 8));
        assert_eq!(quoted_flow(ip.payload()).map(|f| f.sport), Some(9));
    }

    #[test]
    fn short_or_foreign_quotes_are_ignored() {
        assert_eq!(quoted_flow(&[3, 3, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(quoted_flow(&[3, 3, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 20]), None);
        let client = sock([10, 0, 0, 2], 1);
        let mut icmp_quote = error(*client.ip(), *client.ip(), &packet(client, client));
        icmp_quote[HEADER_LEN + 20 + 8 + 9] = ip_proto::ICMP;
        assert_eq!(quoted_flow(&icmp_quote[HEADER_LEN + 20..]), None);
        let mut short = vec![0x45u8; 10];
        assert!(translate(&mut short, &Translation::default()).is_err());
    }

    #[test]
    fn fragmentation_needed_is_built_from_the_packet() {
        let client = sock([10, 0, 0, 2], 40000);
        let vip = sock([10, 0, 0, 100], 80);
        let original = packet(client, vip);
        let mut f = VecFrame::new(&original);
        let to = make_error(&mut f, HEADER_LEN, *vip.ip(), icmp::msg_type::DEST_UNREACHABLE, 4, 1480).expect("room");
        assert_eq!(to, *client.ip());
        let out = f.to_vec();
        assert_eq!(&out[..HEADER_LEN], &original[..HEADER_LEN]);
        let ip = Ipv4Packet::new_checked(&out[HEADER_LEN..]).expect("ip");
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.protocol()), (*vip.ip(), *client.ip(), ip_proto::ICMP));
        let msg = IcmpPacket::new_checked(ip.payload()).expect("icmp");
        assert!(msg.verify_checksum());
        assert_eq!((msg.msg_type(), msg.code(), msg.rest_of_header() & 0xffff), (3, 4, 1480));
        assert_eq!(msg.data(), &original[HEADER_LEN..HEADER_LEN + 28]);
    }

    /// Errors rvs originates, against frames written by an independent Python
    /// generator (struct + a ones-complement sum): outer header from the VIP
    /// with TTL 64, the quote = the packet's IP header + 8 bytes (RFC 1812).
    #[test]
    fn originated_errors_match_independent_fixtures() {
        struct Case {
            what: &'static str,
            input: &'static str,
            msg_type: u8,
            code: u8,
            expect: Result<&'static str, FwdError>,
        }
        let cases = [
            Case {
                what: "UDP to a service without a real server: port unreachable",
                input: "02d00000000102c000000002080045000021004d40003d1129190a0000020a00006514e90035000d86677175657279",
                msg_type: icmp::msg_type::DEST_UNREACHABLE,
                code: code::PORT_UNREACHABLE,
                expect: Ok("02d00000000102c000000002080045000038000000004001665f0a0000650a0000020303616a0000000045000021004d40003d1129190a0000020a00006514e90035000d8667"),
            },
            Case {
                what: "a SYN with TTL 1: time exceeded",
                input: "02d00000000102c000000002080045000028004d40000106651d0a0000020a0000659c400050000003e80000000050020200f9030000",
                msg_type: icmp::msg_type::TIME_EXCEEDED,
                code: code::TTL_EXCEEDED,
                expect: Ok("02d00000000102c000000002080045000038000000004001665f0a0000650a0000020b0054870000000045000028004d40000106651d0a0000020a0000659c400050000003e8"),
            },
            Case {
                what: "an ICMP error is never answered with one",
                input: "02d00000000102c000000002080045000038000000004001665f0a0000650a0000020b0054870000000045000028004d40000106651d0a0000020a0000659c400050000003e8",
                msg_type: icmp::msg_type::TIME_EXCEEDED,
                code: code::TTL_EXCEEDED,
                expect: Err(FwdError::NoAnswer),
            },
        ];
        for case in cases {
            let mut f = VecFrame::new(&from_hex(case.input));
            let got = make_error(&mut f, HEADER_LEN, Ipv4Addr::new(10, 0, 0, 101), case.msg_type, case.code, 0).map(|to| (to, f.to_vec()));
            let want = case.expect.map(|h| (Ipv4Addr::new(10, 0, 0, 2), from_hex(h)));
            assert_eq!(got, want, "{}", case.what);
        }
    }

    #[test]
    fn only_unique_hosts_are_answered() {
        for (addr, ok) in [
            ([10, 0, 0, 2], true),
            ([192, 0, 2, 7], true),
            ([0, 0, 0, 0], false),
            ([0, 1, 2, 3], false),
            ([127, 0, 0, 1], false),
            ([224, 0, 0, 18], false),
            ([240, 0, 0, 1], false),
            ([255, 255, 255, 255], false),
        ] {
            assert_eq!(may_answer(Ipv4Addr::from(addr)), ok, "{addr:?}");
        }
    }

    #[test]
    fn answers_are_bounded_per_second() {
        let mut limit = AnswerLimit::default();
        let burst = (0..200).filter(|_| limit.allow(5)).count();
        assert_eq!(burst, ANSWER_BURST as usize, "a burst of 200 at once gets the bucket");
        assert!(!limit.allow(5));
        assert!(limit.allow(6), "one more after a millisecond (1000/s)");
        assert!(!limit.allow(6));
        let after_a_second = (0..2000).filter(|_| limit.allow(1_006)).count();
        assert_eq!(after_a_second, ANSWER_BURST as usize, "the bucket never holds more than the burst");
    }
}
