//! Masquerading (`ipvsadm -m`, keepalived `lb_kind NAT`).
//!
//! Inbound, the destination (VIP:vport) becomes the real server (RIP:rport).
//! The real server routes its replies back through rvs, whose source
//! (RIP:rport) is rewritten back to VIP:vport before they go to the client. The
//! IP header checksum and the TCP/UDP checksum (whose pseudo-header covers the
//! addresses) are updated incrementally.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::conn::Conn;
use crate::wire::{checksum, ip_proto, Ipv4Packet, TcpSegment, UdpDatagram, WireError};

use super::{FwdError, NextHop};

/// Rewrites a client packet for the real server (DNAT) and says where it goes.
pub fn xmit_inbound(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
    rewrite(ip, Field::Destination, conn.real)?;
    Ok(NextHop::Routed(*conn.real.ip()))
}

/// Rewrites a real server's reply to come from the VIP and says where it goes.
pub fn xmit_reply(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
    rewrite(ip, Field::Source, conn.vip)?;
    Ok(NextHop::Routed(*conn.client.ip()))
}

/// Which address/port pair of a packet to rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Source address and port.
    Source,
    /// Destination address and port.
    Destination,
}

/// Sets the source or destination address and port of an IPv4 TCP or UDP
/// packet, updating the IP and transport checksums incrementally.
pub fn rewrite(ip: &mut [u8], field: Field, to: SocketAddrV4) -> Result<(), FwdError> {
    let mut pkt = Ipv4Packet::new_checked(ip)?;
    let proto = pkt.protocol();
    if proto != ip_proto::TCP && proto != ip_proto::UDP {
        return Err(FwdError::Protocol(proto));
    }
    let old_addr = match field {
        Field::Source => pkt.src_addr(),
        Field::Destination => pkt.dst_addr(),
    };
    let new_addr: Ipv4Addr = *to.ip();
    if old_addr != new_addr {
        match field {
            Field::Source => pkt.set_src_addr(new_addr),
            Field::Destination => pkt.set_dst_addr(new_addr),
        }
        let c = checksum::update_addr(pkt.checksum(), old_addr, new_addr);
        pkt.set_checksum(c);
    }
    let payload = pkt.payload_mut();
    match proto {
        ip_proto::TCP => {
            let mut tcp = TcpSegment::new_checked(payload)?;
            let old_port = match field {
                Field::Source => tcp.src_port(),
                Field::Destination => tcp.dst_port(),
            };
            match field {
                Field::Source => tcp.set_src_port(to.port()),
                Field::Destination => tcp.set_dst_port(to.port()),
            }
            let c = checksum::update_addr(tcp.checksum(), old_addr, new_addr);
            let c = checksum::update_u16(c, old_port, to.port());
            tcp.set_checksum(c);
        }
        _ => {
            // Only the header is touched: a first fragment (which holds just
            // the start of the datagram) is rewritten the same way.
            if payload.len() < crate::wire::udp::HEADER_LEN {
                return Err(WireError::Truncated.into());
            }
            let mut udp = UdpDatagram::new_unchecked(payload);
            let old_port = match field {
                Field::Source => udp.src_port(),
                Field::Destination => udp.dst_port(),
            };
            match field {
                Field::Source => udp.set_src_port(to.port()),
                Field::Destination => udp.set_dst_port(to.port()),
            }
            // A zero UDP checksum means "none" and stays zero.
            if udp.checksum() != 0 {
                let c = checksum::update_addr(udp.checksum(), old_addr, new_addr);
                let c = checksum::update_u16(c, old_port, to.port());
                udp.set_checksum(if c == 0 { 0xffff } else { c });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{tcp_frame, udp_frame, TcpParams, UdpParams};
    use crate::wire::ethernet::HEADER_LEN;

    fn sock(a: [u8; 4], p: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), p)
    }

    /// Rewriting must give exactly the packet the builder makes (with full
    /// checksum computation) for the rewritten addresses.
    #[test]
    fn rewrites_match_full_recomputation() {
        struct Case {
            what: &'static str,
            field: Field,
            from: (SocketAddrV4, SocketAddrV4),
            to: SocketAddrV4,
            expect: (SocketAddrV4, SocketAddrV4),
        }
        let client = sock([10, 0, 0, 2], 40000);
        let vip = sock([10, 0, 0, 101], 80);
        let real = sock([10, 1, 0, 11], 8080);
        let cases = [
            Case { what: "dnat to real", field: Field::Destination, from: (client, vip), to: real, expect: (client, real) },
            Case { what: "snat reply to vip", field: Field::Source, from: (real, client), to: vip, expect: (vip, client) },
            Case {
                what: "same address, port only",
                field: Field::Destination,
                from: (client, vip),
                to: sock([10, 0, 0, 101], 81),
                expect: (client, sock([10, 0, 0, 101], 81)),
            },
        ];
        for case in &cases {
            for payload in [vec![], b"GET / HTTP/1.1\r\n\r\n".to_vec(), vec![0xff; 1]] {
                let mk = |(s, d): (SocketAddrV4, SocketAddrV4)| {
                    tcp_frame(&TcpParams {
                        src: *s.ip(),
                        dst: *d.ip(),
                        sport: s.port(),
                        dport: d.port(),
                        seq: 0x1234_5678,
                        payload: payload.clone(),
                        ..TcpParams::default()
                    })
                };
                let mut got = mk(case.from);
                rewrite(&mut got[HEADER_LEN..], case.field, case.to).expect(case.what);
                assert_eq!(got, mk(case.expect), "tcp: {} (payload {} bytes)", case.what, payload.len());

                let mku = |(s, d): (SocketAddrV4, SocketAddrV4)| {
                    udp_frame(&UdpParams {
                        src: *s.ip(),
                        dst: *d.ip(),
                        sport: s.port(),
                        dport: d.port(),
                        payload: payload.clone(),
                        ..UdpParams::default()
                    })
                };
                let mut got = mku(case.from);
                rewrite(&mut got[HEADER_LEN..], case.field, case.to).expect(case.what);
                assert_eq!(got, mku(case.expect), "udp: {} (payload {} bytes)", case.what, payload.len());
            }
        }
    }

    #[test]
    fn udp_without_checksum_keeps_none() {
        let mut f = udp_frame(&UdpParams::default());
        // Clear the UDP checksum (offset: eth 14 + ip 20 + 6).
        f[HEADER_LEN + 26] = 0;
        f[HEADER_LEN + 27] = 0;
        rewrite(&mut f[HEADER_LEN..], Field::Destination, sock([10, 1, 0, 12], 53)).expect("udp");
        assert_eq!(&f[HEADER_LEN + 26..HEADER_LEN + 28], &[0, 0]);
    }

    #[test]
    fn refuses_other_protocols_and_garbage() {
        let mut icmp = crate::wire::builder::icmp_echo_frame(
            crate::wire::MacAddr::ZERO,
            crate::wire::MacAddr::ZERO,
            Ipv4Addr::new(1, 1, 1, 1),
            Ipv4Addr::new(2, 2, 2, 2),
            1,
            1,
            b"x",
        );
        assert_eq!(rewrite(&mut icmp[HEADER_LEN..], Field::Source, sock([1, 2, 3, 4], 1)), Err(FwdError::Protocol(1)));
        let mut short = vec![0x45u8; 10];
        assert!(rewrite(&mut short, Field::Source, sock([1, 2, 3, 4], 1)).is_err());
        // A TCP packet whose IP length claims less than a TCP header.
        let mut f = tcp_frame(&TcpParams::default());
        let ip = &mut f[HEADER_LEN..];
        ip[2] = 0;
        ip[3] = 30;
        assert!(rewrite(ip, Field::Source, sock([1, 2, 3, 4], 1)).is_err());
    }
}
