//! Sequence-number and window translation of a proxied connection's
//! packets, with incremental checksum updates (RFC 1624).
//!
//! The client knows the director's cookie as the server's ISN; the real
//! server chose its own. `delta = server ISN − cookie`: client packets get
//! `ack += delta`, real-server packets `seq −= delta`. The client's own
//! sequence numbers are the ones the real server saw in the replayed SYN,
//! so they are not changed here (FULLNAT's own shift, `Conn::seq_delta`,
//! applies on top, independently).
//!
//! Both work on IPv4 and IPv6 packets alike ([`tcp_range`]): the addresses do
//! not change, so the pseudo-header's part of the checksum stays.

use crate::fwd::FwdError;
use crate::synproxy::cookie::MAX_WSCALE;
use crate::wire::{checksum, Ipv4Packet, TcpSegment, WireError};

/// Where a connection stands with the SYN proxy (in JSON: `none`,
/// `handshake`, `open`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Phase {
    /// Not proxied.
    #[default]
    None = 0,
    /// The handshake with the real server is in progress.
    Handshake = 1,
    /// Proxied and open: every packet is translated.
    Open = 2,
}

/// What a proxied connection's packets need translated. A
/// [`crate::conn::Conn`] keeps it packed in 6 bytes
/// ([`crate::synproxy::PackedTranslation`]); listings show it and connection
/// sync carries it as this type (once [`Phase::Open`]), so a backup
/// translates exactly as the master did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Translation {
    /// The real server's ISN minus the cookie.
    pub delta: u32,
    /// Where the connection stands.
    pub phase: Phase,
    /// The window scale of the real server's windows (what it announced in
    /// its SYN-ACK; 0 without window scaling).
    pub server_wscale: u8,
    /// The window scale the client applies to the windows it receives (the
    /// director's announced one; 0 without window scaling).
    pub client_view_wscale: u8,
    /// The shift applied to the client's windows towards the real server:
    /// the client's window scale when the real server refused window
    /// scaling, else 0.
    pub inbound_shift: u8,
}

impl Translation {
    /// True for a connection whose packets are translated.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// True when every window scale and shift is one TCP allows (at most
    /// [`MAX_WSCALE`], RFC 7323): what a translation received from
    /// elsewhere (connection sync) must satisfy before it is used.
    pub fn scales_valid(&self) -> bool {
        [self.server_wscale, self.client_view_wscale, self.inbound_shift].iter().all(|s| *s <= MAX_WSCALE)
    }
}

/// Rescales a window field from scale `from` to scale `to`, saturating at 65535.
pub fn rescale_window(window: u16, from: u8, to: u8) -> u16 {
    let bytes = u64::from(window) << from.min(14);
    u16::try_from(bytes >> to.min(14)).unwrap_or(u16::MAX)
}

/// Where the transport segment of the IPv4 or IPv6 packet `ip` lies (by
/// its version; IPv6 extension headers skipped).
pub fn tcp_range(ip: &[u8]) -> Result<std::ops::Range<usize>, FwdError> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let pkt = Ipv4Packet::new_checked(ip)?;
            Ok(pkt.header_len()..usize::from(pkt.total_len()))
        }
        Some(6) => {
            let upper = crate::fwd::l4v6::transport(ip)?;
            Ok(upper.offset..upper.offset + upper.len)
        }
        _ => Err(WireError::Malformed("ip: version neither 4 nor 6").into()),
    }
}

/// The TCP segment of the IPv4 or IPv6 packet `ip` ([`tcp_range`]).
fn tcp_of(ip: &mut [u8]) -> Result<TcpSegment<&mut [u8]>, FwdError> {
    let range = tcp_range(ip)?;
    Ok(TcpSegment::new_checked(ip.get_mut(range).ok_or(WireError::Truncated)?)?)
}

/// Client → real server, in the IPv4 or IPv6 packet `ip`: `ack += delta`
/// (when the ACK flag is set) and the window shifted by `inbound_shift`.
pub fn translate_inbound(ip: &mut [u8], t: &Translation) -> Result<(), FwdError> {
    let mut tcp = tcp_of(ip)?;
    let mut csum = tcp.checksum();
    if tcp.ack() {
        let (old, new) = (tcp.ack_number(), tcp.ack_number().wrapping_add(t.delta));
        tcp.set_ack_number(new);
        csum = checksum::update_u32(csum, old, new);
    }
    if t.inbound_shift != 0 {
        let (old, new) = (tcp.window(), rescale_window(tcp.window(), t.inbound_shift, 0));
        tcp.set_window(new);
        csum = checksum::update_u16(csum, old, new);
    }
    tcp.set_checksum(csum);
    Ok(())
}

/// Real server → client, in the IPv4 or IPv6 packet `ip`: `seq −= delta`
/// and the window rescaled from the real server's scale to the client's.
pub fn translate_reply(ip: &mut [u8], t: &Translation) -> Result<(), FwdError> {
    let mut tcp = tcp_of(ip)?;
    let (old_seq, new_seq) = (tcp.seq_number(), tcp.seq_number().wrapping_sub(t.delta));
    tcp.set_seq_number(new_seq);
    let mut csum = checksum::update_u32(tcp.checksum(), old_seq, new_seq);
    if t.server_wscale != t.client_view_wscale {
        let (old, new) = (tcp.window(), rescale_window(tcp.window(), t.server_wscale, t.client_view_wscale));
        tcp.set_window(new);
        csum = checksum::update_u16(csum, old, new);
    }
    tcp.set_checksum(csum);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    /// An IPv4/TCP packet built by etherparse.
    fn packet(seq: u32, ack: Option<u32>, window: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 1, 0, 11], [10, 0, 0, 2], 64).tcp(8080, 40000, seq, window);
        let b = match ack {
            Some(a) => b.ack(a),
            None => b,
        };
        let mut v = Vec::new();
        b.psh().write(&mut v, payload).expect("build");
        v
    }

    /// (seq, ack, window, checksum correct) as etherparse reads them.
    fn read(ip: &[u8]) -> (u32, u32, u16, bool) {
        let p = SlicedPacket::from_ip(ip).expect("parse");
        let Some(NetSlice::Ipv4(v4)) = &p.net else { panic!("not ipv4") };
        let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("not tcp") };
        let expect = t.to_header().calc_checksum_ipv4(&v4.header().to_header(), t.payload()).expect("checksum");
        (t.sequence_number(), t.acknowledgment_number(), t.window_size(), expect == t.checksum())
    }

    #[test]
    fn inbound_acknowledgements_move_into_the_real_servers_space() {
        let t = Translation { delta: 0x8000_0010, phase: Phase::Open, ..Default::default() };
        let mut ip = packet(1001, Some(0xffff_fff5), 512, b"GET / HTTP/1.1\r\n\r\n");
        translate_inbound(&mut ip, &t).expect("translate");
        assert_eq!(read(&ip), (1001, 0x8000_0005, 512, true), "ack wraps around");
        // A segment without ACK keeps its acknowledgement field.
        let mut ip = packet(1001, None, 512, b"");
        let before = read(&ip);
        translate_inbound(&mut ip, &t).expect("translate");
        assert_eq!(read(&ip), before);
    }

    #[test]
    fn replies_move_into_the_clients_space_and_windows_are_rescaled() {
        struct Case {
            what: &'static str,
            server: u8,
            client_view: u8,
            window: u16,
            expect: u16,
        }
        let cases = [
            Case { what: "same scale", server: 7, client_view: 7, window: 501, expect: 501 },
            Case { what: "server scales less", server: 2, client_view: 7, window: 64000, expect: 2000 },
            Case { what: "server scales more", server: 9, client_view: 7, window: 1000, expect: 4000 },
            Case { what: "saturates", server: 14, client_view: 7, window: 1000, expect: 65535 },
            Case { what: "server refused scaling", server: 0, client_view: 7, window: 65535, expect: 511 },
        ];
        for c in cases {
            let t =
                Translation { delta: 77, phase: Phase::Open, server_wscale: c.server, client_view_wscale: c.client_view, inbound_shift: 0 };
            let mut ip = packet(5077, Some(1001), c.window, b"HTTP/1.1 200 OK\r\n");
            translate_reply(&mut ip, &t).expect(c.what);
            assert_eq!(read(&ip), (5000, 1001, c.expect, true), "{}", c.what);
        }
    }

    #[test]
    fn client_windows_are_scaled_up_when_the_real_server_refused_scaling() {
        let t = Translation { delta: 0, phase: Phase::Open, server_wscale: 0, client_view_wscale: 7, inbound_shift: 6 };
        let mut ip = packet(1, Some(2), 502, b"x");
        translate_inbound(&mut ip, &t).expect("translate");
        assert_eq!(read(&ip), (1, 2, 32128, true));
        let mut ip = packet(1, Some(2), 5000, b"x");
        translate_inbound(&mut ip, &t).expect("translate");
        assert_eq!(read(&ip).2, 65535, "saturates");
    }

    #[test]
    fn garbage_is_refused() {
        let t = Translation::default();
        assert!(translate_inbound(&mut [0x45, 0, 0], &t).is_err());
        assert!(translate_reply(&mut [0u8; 30], &t).is_err());
    }
}
