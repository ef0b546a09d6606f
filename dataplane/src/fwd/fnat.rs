//! Full NAT (Alibaba's FULLNAT, DPVS `-b`, keepalived `lb_kind FNAT`).
//!
//! Inbound, both ends change: client:cport → VIP:vport becomes
//! LIP:lport → RIP:rport, where the local address and port come from the
//! worker's [`crate::laddr::LocalPool`]. The real server answers LIP:lport, so
//! replies return to rvs whatever its routing, and leave as VIP:vport →
//! client:cport. Checksums are updated incrementally.
//!
//! The real server can learn the client's address from the **TOA** TCP option
//! (kind 254, length 8: client port, client IPv4 address), as in Alibaba LVS and
//! DPVS. It is inserted into the client's first ACK after the handshake (the
//! packet the real server's TOA module reads when the connection is accepted),
//! when the service enables it and the TCP header has room.

use std::net::SocketAddrV4;

use crate::conn::Conn;
use crate::frame::Frame;
use crate::wire::{ip_proto, Ipv4Packet, TcpSegment, WireError};

use super::nat::{rewrite, Field};
use super::{FwdError, NextHop};

/// TCP option kind of TOA.
pub const TOA_KIND: u8 = 254;
/// Length of the TOA option.
pub const TOA_LEN: usize = 8;
/// Largest TCP header.
const MAX_TCP_HEADER: usize = 60;

/// Rewrites a client packet to LIP:lport → RIP:rport.
pub fn xmit_inbound(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
    let local = conn.local.get().ok_or(FwdError::Protocol(0))?;
    rewrite(ip, Field::Source, local)?;
    rewrite(ip, Field::Destination, conn.real)?;
    Ok(NextHop::Routed(*conn.real.ip()))
}

/// Rewrites a real server's reply to VIP:vport → client:cport.
pub fn xmit_reply(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
    rewrite(ip, Field::Source, conn.vip)?;
    rewrite(ip, Field::Destination, conn.client)?;
    Ok(NextHop::Routed(*conn.client.ip()))
}

/// Inserts a TOA option carrying `client` into the TCP segment of the IPv4
/// packet at `l2_len`. Returns `Ok(false)` (packet unchanged) when the TCP header
/// has no room for 8 more bytes.
pub fn insert_toa<F: Frame>(frame: &mut F, l2_len: usize, client: SocketAddrV4) -> Result<bool, FwdError> {
    let (ip_hl, tcp_hl, total) = {
        let ip = Ipv4Packet::new_checked(frame.data().get(l2_len..).ok_or(WireError::Truncated)?)?;
        if ip.protocol() != ip_proto::TCP {
            return Err(FwdError::Protocol(ip.protocol()));
        }
        let tcp = TcpSegment::new_checked(ip.payload())?;
        (ip.header_len(), tcp.header_len(), usize::from(ip.total_len()))
    };
    if tcp_hl + TOA_LEN > MAX_TCP_HEADER {
        return Ok(false);
    }
    let headers = l2_len + ip_hl + tcp_hl;
    if !frame.insert_gap(headers, TOA_LEN) {
        return Err(FwdError::NoRoom);
    }
    let data = frame.data_mut();
    let mut toa = [0u8; TOA_LEN];
    toa[0] = TOA_KIND;
    toa[1] = TOA_LEN as u8;
    toa[2..4].copy_from_slice(&client.port().to_be_bytes());
    toa[4..8].copy_from_slice(&client.ip().octets());
    data[headers..headers + TOA_LEN].copy_from_slice(&toa);
    let new_total = u16::try_from(total + TOA_LEN).map_err(|_| FwdError::NoRoom)?;
    let mut ip = Ipv4Packet::new_unchecked(&mut data[l2_len..]);
    ip.set_total_len(new_total);
    ip.fill_checksum();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let mut tcp = TcpSegment::new_unchecked(ip.payload_mut());
    tcp.set_header_len(tcp_hl + TOA_LEN);
    tcp.fill_checksum(src, dst);
    Ok(true)
}

/// Finds the TOA option in TCP options, returning the client it names.
pub fn find_toa(options: &[u8]) -> Option<SocketAddrV4> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 {
                    return None;
                }
                if kind == TOA_KIND && len == TOA_LEN {
                    let o = options.get(i..i + TOA_LEN)?;
                    let port = u16::from_be_bytes([o[2], o[3]]);
                    return Some(SocketAddrV4::new([o[4], o[5], o[6], o[7]].into(), port));
                }
                i += len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::conn::TcpState;
    use crate::frame::VecFrame;
    use crate::snapshot::{ForwardMode, Protocol};
    use crate::wire::builder::{tcp_frame, udp_frame, TcpParams, UdpParams};
    use crate::wire::ethernet::HEADER_LEN;
    use crate::wire::tcp::flags;

    fn sock(a: [u8; 4], p: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), p)
    }

    fn conn() -> Conn {
        Conn {
            protocol: Protocol::Tcp,
            client: sock([10, 0, 0, 2], 40000),
            vip: sock([10, 0, 0, 102], 80),
            real: sock([10, 1, 0, 11], 8080),
            local: Some(sock([10, 1, 0, 200], 5001)).into(),
            real_index: 0,
            service_index: 0,
            generation: 0,
            synced_ms: 0,
            forward: ForwardMode::FullNat,
            state: TcpState::Established,
            expires_ms: 1,
        }
    }

    fn tcp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
        tcp_frame(&TcpParams {
            src: *src.ip(),
            sport: src.port(),
            dst: *dst.ip(),
            dport: dst.port(),
            flags: flags::ACK,
            payload: payload.to_vec(),
            ..TcpParams::default()
        })
    }

    #[test]
    fn both_directions_match_full_recomputation() {
        let c = conn();
        let local = c.local.get().expect("fnat");
        let cases = [
            ("inbound tcp", tcp(c.client, c.vip, b"hello"), tcp(local, c.real, b"hello"), true),
            ("reply tcp", tcp(c.real, local, b"world"), tcp(c.vip, c.client, b"world"), false),
        ];
        for (what, input, expected, inbound) in cases {
            let mut f = input.clone();
            let hop = if inbound { xmit_inbound(&mut f[HEADER_LEN..], &c) } else { xmit_reply(&mut f[HEADER_LEN..], &c) };
            assert_eq!(f, expected, "{what}");
            let want = if inbound { NextHop::Routed(*c.real.ip()) } else { NextHop::Routed(*c.client.ip()) };
            assert_eq!(hop, Ok(want), "{what}");
        }
        let udp = |s: SocketAddrV4, d: SocketAddrV4| {
            udp_frame(&UdpParams { src: *s.ip(), sport: s.port(), dst: *d.ip(), dport: d.port(), payload: b"dgram".to_vec(), ..UdpParams::default() })
        };
        let mut f = udp(c.client, c.vip);
        xmit_inbound(&mut f[HEADER_LEN..], &c).expect("udp inbound");
        assert_eq!(f, udp(local, c.real));
        let mut f = udp(c.real, local);
        xmit_reply(&mut f[HEADER_LEN..], &c).expect("udp reply");
        assert_eq!(f, udp(c.vip, c.client));
    }

    #[test]
    fn toa_is_inserted_with_valid_checksums() {
        let c = conn();
        let original = tcp(sock([10, 1, 0, 200], 5001), c.real, b"GET /");
        let mut f = VecFrame::new(&original);
        assert_eq!(insert_toa(&mut f, HEADER_LEN, c.client), Ok(true));
        let out = f.to_vec();
        assert_eq!(out.len(), original.len() + 8);
        let ip = Ipv4Packet::new_checked(&out[HEADER_LEN..]).expect("ip");
        assert!(ip.verify_checksum());
        let seg = TcpSegment::new_checked(ip.payload()).expect("tcp");
        assert!(seg.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!(seg.header_len(), 28);
        assert_eq!(seg.payload(), b"GET /");
        assert_eq!(find_toa(seg.options()), Some(c.client));
        assert_eq!(&out[..HEADER_LEN], &original[..HEADER_LEN]);
    }

    #[test]
    fn toa_is_skipped_when_the_header_is_full() {
        let mut original = tcp(conn().client, conn().vip, b"");
        // Pretend the TCP header is already 56 bytes long: grow it with NOPs.
        let mut f = VecFrame::new(&original);
        assert!(f.insert_gap(HEADER_LEN + 40, 36));
        let d = f.data_mut();
        d[HEADER_LEN + 40..HEADER_LEN + 76].fill(1);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut d[HEADER_LEN..]);
            ip.set_total_len(76);
            ip.fill_checksum();
            let (s, t) = (ip.src_addr(), ip.dst_addr());
            let mut seg = TcpSegment::new_unchecked(ip.payload_mut());
            seg.set_header_len(56);
            seg.fill_checksum(s, t);
        }
        original = f.to_vec();
        assert_eq!(insert_toa(&mut f, HEADER_LEN, conn().client), Ok(false));
        assert_eq!(f.to_vec(), original);
    }

    #[test]
    fn toa_parser_walks_options() {
        assert_eq!(find_toa(&[1, 1, 254, 8, 0x9c, 0x40, 10, 0, 0, 2]), Some(sock([10, 0, 0, 2], 40000)));
        assert_eq!(find_toa(&[2, 4, 5, 180, 0, 0, 0, 0]), None);
        assert_eq!(find_toa(&[2, 0]), None);
        assert_eq!(find_toa(&[254, 8, 1]), None);
    }
}
