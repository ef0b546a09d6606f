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
//!
//! # Sequence numbers and the real servers' TIME_WAIT
//!
//! A (local address, local port) pair is reused towards a real server that may
//! still hold the previous connection on it in TIME_WAIT (after a restart or a
//! failover of the director, or when a local address carries tens of thousands
//! of connections a minute). Linux accepts a SYN on a TIME_WAIT socket only if
//! its sequence number is after the old connection's (`tw_rcv_nxt`), or its
//! timestamp newer (PAWS). The client's ISN and timestamps are unrelated to the
//! old connection's, so about half of such SYNs would be dropped.
//!
//! As DPVS does, rvs gives the real server its own initial sequence number:
//! RFC 6528's `M + F(4-tuple)`, where `M` is the wall clock in 64 ns ticks (as
//! Linux; it wraps in 274 s, longer than any TIME_WAIT) and `F` a fixed hash
//! of (local address, local port, real address, real port). `F` has no
//! per-process secret on purpose: the ISN a restarted director (or the backup
//! after a failover, whose clock is synchronised) picks for a tuple is then
//! always after the one it picked before. The difference to the client's ISN
//! is the connection's `seq_delta`: added to the sequence number of every
//! client packet, taken from the acknowledgement number and the SACK blocks of
//! every real-server packet (SACK blocks of client packets refer to the real
//! server's sequence space, which is not shifted). Checksums are updated
//! incrementally.
//!
//! TCP timestamps are removed from the client's SYN (overwritten with NOPs, the
//! header keeps its length), so the connection runs without them: PAWS can
//! then never refuse a reused pair, whatever clock the next client's
//! timestamps come from. Rewriting them with a per-connection offset would
//! keep RTTM but has to touch every packet in both directions; stripping
//! touches the SYN only (DPVS removes them too, as an option).

use std::net::SocketAddrV4;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::conn::Conn;
use crate::frame::Frame;
use crate::snapshot::Protocol;
use crate::wire::{checksum, ip_proto, Ipv4Packet, TcpSegment, WireError};

use super::nat::{rewrite_ends_l4, transport_header, SeqShift};
use super::{FwdError, NextHop, Parsed};

/// TCP option kind of TOA.
pub const TOA_KIND: u8 = 254;
/// Length of the TOA option.
pub const TOA_LEN: usize = 8;
/// Largest TCP header.
const MAX_TCP_HEADER: usize = 60;

/// TCP option kinds this module reads or rewrites.
mod option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// Rewrites a client packet to LIP:lport → RIP:rport (TCP: sequence number
/// shifted by the connection's `seq_delta`, timestamps removed from a SYN).
///
/// The addresses, ports and sequence number change in one checksum update
/// ([`rewrite_ends_l4`] with [`SeqShift::Seq`]); only a SYN's options are
/// then read again.
#[inline]
pub fn xmit_inbound(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
    let local = conn.local.get().ok_or(FwdError::Protocol(0))?;
    xmit_inbound_l4::<true>(ip, transport_header(ip)?, local, conn)
}

/// [`xmit_inbound`] of a packet whose headers its parse checked (`parsed`):
/// only a SYN's TCP header length is read again.
#[inline]
pub fn xmit_inbound_parsed(ip: &mut [u8], parsed: Parsed, conn: &Conn) -> Result<NextHop, FwdError> {
    let local = conn.local.get().ok_or(FwdError::Protocol(0))?;
    xmit_inbound_l4::<false>(ip, parsed, local, conn)
}

/// [`xmit_inbound`] from the local address on: `CHECK_TCP`, the TCP
/// header's data offset is checked on every packet, else only on a SYN's
/// (the parse checked it).
#[inline(always)]
fn xmit_inbound_l4<const CHECK_TCP: bool>(ip: &mut [u8], parsed: Parsed, local: SocketAddrV4, conn: &Conn) -> Result<NextHop, FwdError> {
    let shift = if conn.protocol == Protocol::Tcp { SeqShift::Seq(conn.seq_delta) } else { SeqShift::None };
    let l4 = rewrite_ends_l4(ip, parsed, Some(local), Some(conn.real), shift)?;
    if conn.protocol == Protocol::Tcp {
        let segment = ip.get_mut(l4.range).ok_or(WireError::Truncated)?;
        if l4.proto == ip_proto::TCP {
            strip_syn_timestamps::<CHECK_TCP>(segment)?;
        } else {
            // A TCP connection's packet that is not TCP: the general path, as before.
            shift_segment_seq(segment, conn.seq_delta)?;
        }
    }
    Ok(NextHop::Routed(*conn.real.ip()))
}

/// Rewrites a real server's reply to VIP:vport → client:cport (TCP:
/// acknowledgement and SACK blocks shifted back by `seq_delta`).
///
/// The addresses, ports and acknowledgement number change in one checksum
/// update ([`rewrite_ends_l4`] with [`SeqShift::Ack`]); only a header with
/// options is then read again, for SACK blocks.
#[inline]
pub fn xmit_reply(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
    xmit_reply_parsed(ip, transport_header(ip)?, conn)
}

/// [`xmit_reply`] of a packet whose IPv4 header its parse checked (`parsed`).
#[inline]
pub fn xmit_reply_parsed(ip: &mut [u8], parsed: Parsed, conn: &Conn) -> Result<NextHop, FwdError> {
    let shift = if conn.protocol == Protocol::Tcp { SeqShift::Ack(conn.seq_delta) } else { SeqShift::None };
    let l4 = rewrite_ends_l4(ip, parsed, Some(conn.vip), Some(conn.client), shift)?;
    if conn.protocol == Protocol::Tcp {
        let segment = ip.get_mut(l4.range).ok_or(WireError::Truncated)?;
        if l4.proto == ip_proto::TCP {
            unshift_sack_blocks(segment, conn.seq_delta)?;
        } else {
            unshift_segment_ack(segment, conn.seq_delta)?;
        }
    }
    Ok(NextHop::Routed(*conn.client.ip()))
}

/// The TCP header length of `segment`, checked as [`TcpSegment::check`]
/// does (same errors), for a segment already known to hold 20 bytes.
#[inline]
fn tcp_header_len(segment: &[u8]) -> Result<usize, FwdError> {
    let Some(base) = segment.first_chunk::<TCP_BASE_HEADER>() else { return Err(WireError::Truncated.into()) };
    let header_len = usize::from(base[12] >> 4) * 4;
    if header_len < TCP_BASE_HEADER {
        return Err(WireError::Malformed("tcp: data offset below 5").into());
    }
    if header_len > segment.len() {
        return Err(WireError::Truncated.into());
    }
    Ok(header_len)
}

/// The part of [`shift_segment_seq`] after the sequence number: in a SYN
/// (without ACK), timestamps become NOPs, the checksum updated for them.
/// `CHECK_TCP`: the data offset is checked whatever the flags (as
/// [`shift_segment_seq`] does), else only a SYN's is read. Always inlined:
/// on every client packet, where a call costs more than its checks.
#[inline(always)]
fn strip_syn_timestamps<const CHECK_TCP: bool>(segment: &mut [u8]) -> Result<(), FwdError> {
    if CHECK_TCP {
        tcp_header_len(segment)?;
    }
    let Some(&flags) = segment.get(13) else { return Err(WireError::Truncated.into()) };
    let syn_only = flags & crate::wire::tcp::flags::SYN != 0 && flags & crate::wire::tcp::flags::ACK == 0;
    if !syn_only {
        return Ok(());
    }
    let header_len = tcp_header_len(segment)?;
    if header_len == TCP_BASE_HEADER {
        return Ok(());
    }
    strip_option_timestamps(segment, header_len);
    Ok(())
}

/// Overwrites the timestamps options of the TCP header `segment` (of
/// `header_len` bytes, checked) with NOPs, updating its checksum.
fn strip_option_timestamps(segment: &mut [u8], header_len: usize) {
    let csum = TcpSegment::new_unchecked(&*segment).checksum();
    let options = &mut segment[TCP_BASE_HEADER..header_len];
    let before = checksum::sum(options);
    if strip_timestamps(options) {
        let after = checksum::sum(options);
        TcpSegment::new_unchecked(segment).set_checksum(checksum::update_region(csum, before, after));
    }
}

/// The part of [`unshift_segment_ack`] after the acknowledgement number:
/// every SACK block's edges `-= delta`, the checksum updated for them.
/// Always inlined, as [`strip_syn_timestamps`].
#[inline(always)]
fn unshift_sack_blocks(segment: &mut [u8], delta: u32) -> Result<(), FwdError> {
    let header_len = tcp_header_len(segment)?;
    if header_len == TCP_BASE_HEADER {
        return Ok(());
    }
    unshift_option_sack(segment, header_len, delta);
    Ok(())
}

/// Subtracts `delta` from the SACK blocks' edges in the options of the TCP
/// header `segment` (of `header_len` bytes, checked), updating its checksum.
fn unshift_option_sack(segment: &mut [u8], header_len: usize, delta: u32) {
    let csum = TcpSegment::new_unchecked(&*segment).checksum();
    let options = &mut segment[TCP_BASE_HEADER..header_len];
    let before = checksum::sum(options);
    if unshift_sack(options, delta) {
        let after = checksum::sum(options);
        TcpSegment::new_unchecked(segment).set_checksum(checksum::update_region(csum, before, after));
    }
}

/// The `seq_delta` of a new FULLNAT TCP connection whose client SYN is the
/// IPv4 packet `ip`, leaving from `local` towards `real`, at the current wall
/// clock.
pub fn new_seq_delta(ip: &[u8], local: SocketAddrV4, real: SocketAddrV4) -> Result<u32, FwdError> {
    new_seq_delta_at(ip, local, real, wall_clock_ns())
}

/// [`new_seq_delta`] at wall-clock time `wall_ns` (nanoseconds since 1970,
/// [`wall_clock_ns`]).
pub fn new_seq_delta_at(ip: &[u8], local: SocketAddrV4, real: SocketAddrV4, wall_ns: u64) -> Result<u32, FwdError> {
    let client_isn = match client_isn_option_less(ip) {
        Some(isn) => isn,
        None => client_isn(ip)?,
    };
    Ok(initial_seq(local, real, wall_ns).wrapping_sub(client_isn))
}

/// The sequence number of the TCP segment in the IPv4 packet `ip`, the
/// IP and TCP headers checked.
fn client_isn(ip: &[u8]) -> Result<u32, FwdError> {
    let pkt = Ipv4Packet::new_checked(ip)?;
    Ok(TcpSegment::new_checked(pkt.payload())?.seq_number())
}

/// [`client_isn`] for the common packet, an IPv4 header without options
/// and a well-formed TCP header: the same number, from fixed-size views.
/// None for any other packet (then [`client_isn`] decides).
#[inline]
fn client_isn_option_less(ip: &[u8]) -> Option<u32> {
    let (head, rest) = ip.split_first_chunk::<20>()?;
    let total_len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    if head[0] != 0x45 || total_len < 20 + TCP_BASE_HEADER || total_len > ip.len() {
        return None;
    }
    let tcp = rest.first_chunk::<TCP_BASE_HEADER>()?;
    let tcp_header_len = usize::from(tcp[12] >> 4) * 4;
    if tcp_header_len < TCP_BASE_HEADER || tcp_header_len > total_len - 20 {
        return None;
    }
    Some(u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]))
}

/// The wall clock in nanoseconds since 1970, as the initial sequence
/// numbers read it. A clock before 1970 reads 0: it only costs the ordering
/// guarantee, never a packet.
pub fn wall_clock_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// rvs's initial sequence number towards `real` from `local` at wall-clock
/// time `wall_ns`: RFC 6528's M + F (see the module documentation).
pub fn initial_seq(local: SocketAddrV4, real: SocketAddrV4, wall_ns: u64) -> u32 {
    let ticks = (wall_ns >> 6) as u32;
    ticks.wrapping_add(tuple_hash(local, real))
}

/// A fixed mix (splitmix64's finaliser) of the 4-tuple, stable across runs.
fn tuple_hash(local: SocketAddrV4, real: SocketAddrV4) -> u32 {
    let x = (u64::from(u32::from(*local.ip())) << 32 | u64::from(u32::from(*real.ip())))
        ^ (u64::from(local.port()) << 48 | u64::from(real.port()) << 16);
    mix(x)
}

/// splitmix64's finaliser, folded to 32 bits.
pub(crate) fn mix(mut x: u64) -> u32 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x ^ (x >> 32)) as u32
}

/// Client → real server, on the TCP segment (any IP version: only TCP
/// words change, so the checksum update does not involve the
/// pseudo-header): `seq += delta`; in a SYN, timestamps become NOPs.
pub(crate) fn shift_segment_seq(segment: &mut [u8], delta: u32) -> Result<(), FwdError> {
    let mut tcp = TcpSegment::new_checked(&mut *segment)?;
    let (seq, syn_only, header_len) = (tcp.seq_number(), tcp.syn() && !tcp.ack(), tcp.header_len());
    let shifted = seq.wrapping_add(delta);
    tcp.set_seq_number(shifted);
    let mut csum = checksum::update_u32(tcp.checksum(), seq, shifted);
    if syn_only {
        let options = &mut segment[TCP_BASE_HEADER..header_len];
        let before = checksum::sum(options);
        if strip_timestamps(options) {
            csum = checksum::update_region(csum, before, checksum::sum(options));
        }
    }
    TcpSegment::new_unchecked(segment).set_checksum(csum);
    Ok(())
}

/// Real server → client, on the TCP segment (any IP version): `ack -=
/// delta` (when the ACK flag is set) and every SACK block's edges `-= delta`.
pub(crate) fn unshift_segment_ack(segment: &mut [u8], delta: u32) -> Result<(), FwdError> {
    let mut tcp = TcpSegment::new_checked(&mut *segment)?;
    let header_len = tcp.header_len();
    let mut csum = tcp.checksum();
    if tcp.ack() {
        let ack = tcp.ack_number();
        let unshifted = ack.wrapping_sub(delta);
        tcp.set_ack_number(unshifted);
        csum = checksum::update_u32(csum, ack, unshifted);
    }
    let options = &mut segment[TCP_BASE_HEADER..header_len];
    let before = checksum::sum(options);
    if unshift_sack(options, delta) {
        csum = checksum::update_region(csum, before, checksum::sum(options));
    }
    TcpSegment::new_unchecked(segment).set_checksum(csum);
    Ok(())
}

/// TCP header without options.
const TCP_BASE_HEADER: usize = 20;

/// Calls `visit(kind, option bytes)` for every well-formed option, stopping at
/// the end-of-list option or at the first malformed length.
fn for_each_option(options: &mut [u8], mut visit: impl FnMut(u8, &mut [u8])) {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            option::END => return,
            option::NOP => i += 1,
            kind => {
                let Some(&len) = options.get(i + 1) else { return };
                let len = usize::from(len);
                let Some(bytes) = options.get_mut(i..i + len).filter(|_| len >= 2) else { return };
                visit(kind, bytes);
                i += len;
            }
        }
    }
}

/// Overwrites every timestamps option with NOPs. True if one was found.
fn strip_timestamps(options: &mut [u8]) -> bool {
    let mut found = false;
    for_each_option(options, |kind, bytes| {
        if kind == option::TIMESTAMP {
            bytes.fill(option::NOP);
            found = true;
        }
    });
    found
}

/// Subtracts `delta` from both edges of every SACK block. True if one was found.
fn unshift_sack(options: &mut [u8], delta: u32) -> bool {
    let mut found = false;
    for_each_option(options, |kind, bytes| {
        if kind != option::SACK || (bytes.len() - 2) % 4 != 0 {
            return;
        }
        for edge in bytes[2..].chunks_exact_mut(4) {
            let value = u32::from_be_bytes([edge[0], edge[1], edge[2], edge[3]]).wrapping_sub(delta);
            edge.copy_from_slice(&value.to_be_bytes());
            found = true;
        }
    });
    found
}

/// Whether a client's packet of `conn` gets a TOA option: the ACK that
/// completes a TCP handshake (`completes_handshake`), on a FULLNAT
/// connection of a service with `toa` set (`service_toa`), as DPVS does
/// (the real server's TOA module records the address when the connection
/// is accepted; later segments need no option).
pub fn toa_due<S: crate::conn::ConnAddr>(conn: &crate::conn::Conn<S>, completes_handshake: bool, service_toa: bool) -> bool {
    completes_handshake && service_toa && conn.forward == crate::snapshot::ForwardMode::FullNat && conn.protocol == Protocol::Tcp
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
    let o = find_toa_option(options, TOA_LEN)?;
    Some(SocketAddrV4::new([o[4], o[5], o[6], o[7]].into(), u16::from_be_bytes([o[2], o[3]])))
}

/// Walks TCP options to the first TOA option (kind 254) of `len` bytes and
/// returns its bytes; None at the end-of-options, at a malformed option, or
/// without one. IPv4's TOA is 8 bytes long, DPVS's IPv6 TOA 20.
pub(super) fn find_toa_option(options: &[u8], len: usize) -> Option<&[u8]> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let opt_len = usize::from(*options.get(i + 1)?);
                if opt_len < 2 {
                    return None;
                }
                if kind == TOA_KIND && opt_len == len {
                    return options.get(i..i + len);
                }
                i += opt_len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::nat::tests::{random_packet, reference_rewrite_ends_l4};
    use super::*;
    use crate::conn::TcpState;
    use crate::frame::VecFrame;
    use crate::snapshot::ForwardMode;
    use crate::wire::builder::{tcp_frame, udp_frame, TcpParams, UdpParams};
    use crate::wire::ethernet::HEADER_LEN;
    use crate::wire::tcp::flags;
    use proptest::prelude::*;

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
            synced_tick: 0,
            forward: ForwardMode::FullNat,
            state: TcpState::Established,
            expires_ms: 1,
            seq_delta: 0,
            reply_hop: crate::neigh::hops::NONE,
            proxy: Default::default(),
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
            udp_frame(&UdpParams {
                src: *s.ip(),
                sport: s.port(),
                dst: *d.ip(),
                dport: d.port(),
                payload: b"dgram".to_vec(),
                ..UdpParams::default()
            })
        };
        let c = Conn { protocol: Protocol::Udp, seq_delta: 0x1234, ..c };
        let mut f = udp(c.client, c.vip);
        xmit_inbound(&mut f[HEADER_LEN..], &c).expect("udp inbound");
        assert_eq!(f, udp(local, c.real));
        let mut f = udp(c.real, local);
        xmit_reply(&mut f[HEADER_LEN..], &c).expect("udp reply");
        assert_eq!(f, udp(c.vip, c.client));
    }

    /// IPv4 packets written by hand (Python `struct` + its own RFC 1071 sum,
    /// not our builder): client 10.0.0.2:40000, VIP 10.0.0.102:80, real
    /// 10.1.0.11:8080, local 10.1.0.200:5001, `seq_delta` 0x9000_0003.
    const SYN_IN: &str =
        "4500003c1c46400040060a0f0a0000020a0000669c4000507f00001000000000a002faf03ac50000020405b40402080a0001e2400000000001030307";
    const SYN_OUT: &str =
        "4500003c1c464000400609a20a0100c80a01000b13891f900f00001300000000a002faf0f9130000020405b404020101010101010101010101030307";
    const DATA_IN: &str = "4500002d1c46400040060a1e0a0000020a0000669c4000507f000011334455665018faf0b850000068656c6c6f";
    const DATA_OUT: &str = "4500002d1c464000400609b10a0100c80a01000b13891f900f000014334455665018faf09158000068656c6c6f";
    const REPLY_SACK_IN: &str =
        "4500003c1c464000400609a20a01000b0a0100c81f901389334455660f000019a010faf03dfb0000010105120f0001000f0002001000000010000010";
    const REPLY_SACK_OUT: &str =
        "4500003c1c46400040060a0f0a0000660a00000200509c40334455667f000016a010faf0a4fd0000010105127f0000fd7f0001fd7ffffffd8000000d";
    const REPLY_ODD_SACK_IN: &str =
        "450000341c464000400609aa0a01000b0a0100c81f901389334455660f0000198010faf09a00000001050a0f0001000f00020000";
    const REPLY_ODD_SACK_OUT: &str =
        "450000341c46400040060a170a0000660a00000200509c40334455667f0000168010faf0c618000001050a7f0000fd7f0001fd00";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    #[test]
    fn sequence_numbers_are_shifted_and_timestamps_leave_the_syn() {
        let c = Conn { seq_delta: 0x9000_0003, ..conn() };
        let cases = [
            ("SYN: seq + delta, timestamps become NOPs", SYN_IN, SYN_OUT, true),
            ("data: seq + delta", DATA_IN, DATA_OUT, true),
            ("reply: ack and SACK edges - delta (wrapping)", REPLY_SACK_IN, REPLY_SACK_OUT, false),
            ("reply: SACK at an odd offset", REPLY_ODD_SACK_IN, REPLY_ODD_SACK_OUT, false),
        ];
        for (what, input, expected, inbound) in cases {
            let mut p = unhex(input);
            let hop = if inbound { xmit_inbound(&mut p, &c) } else { xmit_reply(&mut p, &c) };
            assert!(hop.is_ok(), "{what}: {hop:?}");
            assert_eq!(p, unhex(expected), "{what}");
        }
    }

    #[test]
    fn the_initial_sequence_number_moves_with_the_clock_and_differs_per_tuple() {
        let (local, real) = (sock([10, 1, 0, 200], 5001), sock([10, 1, 0, 11], 8080));
        let t0 = 1_800_000_000_000_000_000u64;
        let first = initial_seq(local, real, t0);
        // A minute later (a restarted director, a TIME_WAIT still running):
        // after the first in sequence space, by the elapsed 64 ns ticks.
        let later = initial_seq(local, real, t0 + 60_000_000_000);
        assert_eq!(later.wrapping_sub(first), (60_000_000_000u64 >> 6) as u32);
        assert!((later.wrapping_sub(first) as i32) > 0);
        assert_ne!(initial_seq(sock([10, 1, 0, 200], 5002), real, t0), first, "another local port");
        assert_ne!(initial_seq(local, sock([10, 1, 0, 12], 8080), t0), first, "another real server");
        // The delta makes the real server see that ISN.
        let mut syn = unhex(SYN_IN);
        let delta = new_seq_delta(&syn, local, real).expect("syn");
        let c = Conn { seq_delta: delta, ..conn() };
        xmit_inbound(&mut syn, &c).expect("rewrite");
        let seen = TcpSegment::new_checked(Ipv4Packet::new_checked(&syn[..]).expect("ip").payload()).expect("tcp").seq_number();
        assert_eq!(seen, 0x7f00_0010u32.wrapping_add(delta));
        assert!(new_seq_delta(&syn[..30], local, real).is_err(), "a truncated SYN is refused");
    }

    #[test]
    fn malformed_options_are_left_alone() {
        // A SYN whose options claim a length past the header: nothing rewritten
        // in them, the sequence number still shifted, the checksum still right.
        let mut p = unhex(SYN_IN);
        p[20 + 20 + 7] = 40; // the timestamps option's length
        let (src, dst) = ([10, 0, 0, 2].into(), [10, 0, 0, 102].into());
        TcpSegment::new_unchecked(&mut p[20..]).fill_checksum(src, dst);
        let c = Conn { seq_delta: 7, ..conn() };
        xmit_inbound(&mut p, &c).expect("rewrite");
        let ip = Ipv4Packet::new_checked(&p[..]).expect("ip");
        let tcp = TcpSegment::new_checked(ip.payload()).expect("tcp");
        assert_eq!(tcp.options()[6..8], [8, 40]);
        assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!(tcp.seq_number(), 0x7f00_0017);
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

    /// [`xmit_inbound`] as it was before the sequence shift joined the
    /// address rewrite: the reference the current one must agree with.
    fn reference_xmit_inbound(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
        let local = conn.local.get().ok_or(FwdError::Protocol(0))?;
        let l4 = reference_rewrite_ends_l4(ip, Some(local), Some(conn.real))?;
        if conn.protocol == Protocol::Tcp {
            shift_segment_seq(ip.get_mut(l4).ok_or(WireError::Truncated)?, conn.seq_delta)?;
        }
        Ok(NextHop::Routed(*conn.real.ip()))
    }

    /// [`xmit_reply`] as it was (see [`reference_xmit_inbound`]).
    fn reference_xmit_reply(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
        let l4 = reference_rewrite_ends_l4(ip, Some(conn.vip), Some(conn.client))?;
        if conn.protocol == Protocol::Tcp {
            unshift_segment_ack(ip.get_mut(l4).ok_or(WireError::Truncated)?, conn.seq_delta)?;
        }
        Ok(NextHop::Routed(*conn.client.ip()))
    }

    /// Random packets: the nat module's random TCP/UDP packets, and the
    /// hand-made ones above with options (timestamps in a SYN, SACK
    /// blocks), all with a few random bytes overwritten.
    fn random_fnat_packet() -> impl Strategy<Value = Vec<u8>> {
        let with_options = (
            proptest::sample::select(vec![SYN_IN, DATA_IN, REPLY_SACK_IN, REPLY_ODD_SACK_IN]),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..=3),
        )
            .prop_map(|(hex, muts)| {
                let mut ip = unhex(hex);
                for (at, value) in muts {
                    let at = at % ip.len();
                    ip[at] = value;
                }
                ip
            });
        prop_oneof![random_packet(3), with_options]
    }

    fn random_conn() -> impl Strategy<Value = Conn> {
        (any::<bool>(), any::<[u8; 4]>(), any::<u16>(), any::<[u8; 4]>(), any::<u16>(), any::<u32>()).prop_map(
            |(is_tcp, local, lport, real, rport, seq_delta)| Conn {
                protocol: if is_tcp { Protocol::Tcp } else { Protocol::Udp },
                local: Some(sock(local, lport)).into(),
                real: sock(real, rport),
                seq_delta,
                ..conn()
            },
        )
    }

    proptest! {
        /// Both directions give exactly the reference's bytes and result,
        /// for any packet (a TCP connection's packet that is UDP included).
        #[test]
        fn xmit_agrees_with_the_reference(ip in random_fnat_packet(), c in random_conn()) {
            let (mut got, mut want) = (ip.clone(), ip.clone());
            let result = xmit_inbound(&mut got, &c);
            prop_assert_eq!(&result, &reference_xmit_inbound(&mut want, &c));
            if result.is_ok() {
                prop_assert_eq!(&got, &want);
            }
            let (mut got, mut want) = (ip.clone(), ip);
            let result = xmit_reply(&mut got, &c);
            prop_assert_eq!(&result, &reference_xmit_reply(&mut want, &c));
            if result.is_ok() {
                prop_assert_eq!(&got, &want);
            }
        }
    }

    /// The layout of `ip` when it is what the processor's parse hands the
    /// `*_parsed` rewrites ([`Parsed`]'s contract): the IPv4 header as
    /// [`transport_header`] checks it, a TCP header's data offset within the
    /// packet.
    fn parsed_layout(ip: &[u8]) -> Option<Parsed> {
        let parsed = transport_header(ip).ok()?;
        if parsed.proto == ip_proto::TCP {
            tcp_header_len(ip.get(parsed.header_len..parsed.total_len)?).ok()?;
        }
        Some(parsed)
    }

    proptest! {
        /// On a packet the parse checked, the `*_parsed` rewrites (NAT and
        /// FULLNAT, both directions) give the same bytes and result as the
        /// ones that check the headers themselves.
        #[test]
        fn parsed_rewrites_agree_with_the_checking_ones(ip in random_fnat_packet(), c in random_conn()) {
            let Some(parsed) = parsed_layout(&ip) else { return Ok(()) };
            type Pair = (fn(&mut [u8], &Conn) -> Result<NextHop, FwdError>, fn(&mut [u8], Parsed, &Conn) -> Result<NextHop, FwdError>);
            let pairs: [Pair; 4] = [
                (xmit_inbound, xmit_inbound_parsed),
                (xmit_reply, xmit_reply_parsed),
                (super::super::nat::xmit_inbound, super::super::nat::xmit_inbound_parsed),
                (super::super::nat::xmit_reply, super::super::nat::xmit_reply_parsed),
            ];
            for (checking, parsed_fn) in pairs {
                let (mut got, mut want) = (ip.clone(), ip.clone());
                prop_assert_eq!(parsed_fn(&mut got, parsed, &c), checking(&mut want, &c));
                prop_assert_eq!(&got, &want);
            }
        }
    }

    proptest! {
        /// The option-less shortcut gives the general reading's sequence
        /// number whenever it gives one.
        #[test]
        fn the_option_less_isn_agrees_with_the_general_one(ip in random_fnat_packet()) {
            if let Some(isn) = client_isn_option_less(&ip) {
                prop_assert_eq!(client_isn(&ip), Ok(isn));
            }
        }
    }

    #[test]
    fn the_option_less_isn_is_found_for_a_plain_syn() {
        let syn = unhex(SYN_IN);
        assert_eq!(client_isn_option_less(&syn), Some(0x7f00_0010));
        assert_eq!(client_isn_option_less(&syn[..39]), None);
    }
}
