//! The parse stage's fast path: the common frame of a flow, read at fixed
//! offsets.
//!
//! Almost every frame the burst pipeline sees is the same shape: untagged
//! (or tagged with the port's VLAN), to the port's MAC, IPv4 without
//! options, not a fragment, TCP or UDP with a sane header. [`ipv4_flow`]
//! recognises exactly that shape from a few fixed-size reads and returns
//! what the general parse ([`super::general_l2`] then [`flow::parse_ipv4`])
//! would return for it. Anything else, and any frame the general parse
//! would not give a descriptor, it declines (`None`), and the caller falls
//! back to the general parse: an unusual frame behaves exactly as before,
//! only the common one is parsed faster. The property test in this module
//! checks the agreement for random and mutated frames.

use super::*;
use crate::wire::checksum;
use crate::wire::tcp::flags as tcp_flags;
use flow::L4;

/// What [`ipv4_flow`] read from an IPv4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FastIpv4 {
    /// The flow packet, as [`flow::parse_ipv4`] gives it.
    pub(super) pkt: FlowPacket,
    /// The NIC's verdict on the header checksum was used ([`Counter::RxIpv4CsumHw`]).
    pub(super) nic_checked: bool,
    /// The transport checksum field equals the folded pseudo-header sum:
    /// it may be partial (see [`crate::wire::offload`]), so the full test
    /// must run. False: it is certainly not partial, nothing to complete.
    pub(super) maybe_partial: bool,
}

/// Bytes of an IPv4 header without options.
const IP_HEADER: usize = 20;
/// Bytes of a TCP header without options.
const TCP_HEADER: usize = 20;
/// Bytes of a UDP header.
const UDP_HEADER: usize = 8;

/// The Ethernet header of `frame` received on a port with MAC `port_mac`
/// on VLAN `port_vlan`: its length and the (inner) ethertype, as
/// [`super::general_l2`] finds them, for a frame to `port_mac` untagged on
/// an untagged port or tagged with the port's VLAN; `None` for every other
/// frame (a priority tag, VID 0, on an untagged port among them: the
/// general parse decides those).
#[inline(always)]
pub(super) fn l2(frame: &[u8], port_mac: MacAddr, port_vlan: Option<u16>) -> Option<(usize, u16)> {
    let eth: &[u8; 14] = frame.get(..14)?.try_into().ok()?;
    if eth[..6] != port_mac.0 {
        return None;
    }
    let outer = u16::from_be_bytes([eth[12], eth[13]]);
    match port_vlan {
        None if outer != ethertype::VLAN => Some((14, outer)),
        Some(vid) if vid != 0 && outer == ethertype::VLAN => {
            let tag: &[u8; 4] = frame.get(14..18)?.try_into().ok()?;
            let tag_vid = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
            (tag_vid == vid).then(|| (18, u16::from_be_bytes([tag[2], tag[3]])))
        }
        _ => None,
    }
}

/// The fast parse of the IPv4 packet `ip` (from its header on) whose NIC
/// gave the header checksum verdict `rx_csum`: `Some` only for an
/// unfragmented TCP/UDP packet with an option-less header, and then
/// exactly what [`flow::parse_ipv4`] finds; `None` for everything else
/// (the general parse decides). Always inlined: both of the pipeline's
/// parse paths (a burst, a single frame) inline it, so the compiler's own
/// choice would put it out of line.
#[inline(always)]
pub(super) fn ipv4_flow(ip: &[u8], rx_csum: RxChecksum) -> Option<FastIpv4> {
    let h: &[u8; IP_HEADER] = ip.get(..IP_HEADER)?.try_into().ok()?;
    // Version 4, no options.
    if h[0] != 0x45 {
        return None;
    }
    let total_len = u16::from_be_bytes([h[2], h[3]]);
    if usize::from(total_len) > ip.len() {
        return None;
    }
    let flags_offset = u16::from_be_bytes([h[6], h[7]]);
    // More fragments or an offset: a fragment.
    if flags_offset & 0x3fff != 0 {
        return None;
    }
    let nic_checked = match rx_csum {
        RxChecksum::Good => true,
        RxChecksum::Bad => return None,
        RxChecksum::Unknown if checksum::ipv4_header_ok(h) => false,
        RxChecksum::Unknown => return None,
    };
    let proto = h[9];
    let src = Ipv4Addr::from([h[12], h[13], h[14], h[15]]);
    let dst = Ipv4Addr::from([h[16], h[17], h[18], h[19]]);
    // The transport segment's length (the general parse's `payload`).
    let l4_len = total_len.checked_sub(IP_HEADER as u16)?;
    let (l4, csum_field) = match proto {
        ip_proto::TCP => {
            let t: &[u8; TCP_HEADER] = ip.get(IP_HEADER..IP_HEADER + TCP_HEADER)?.try_into().ok()?;
            let data_offset = u16::from(t[12] >> 4) * 4;
            if usize::from(l4_len) < TCP_HEADER || usize::from(data_offset) < TCP_HEADER || data_offset > l4_len {
                return None;
            }
            let flags = t[13];
            let l4 = L4 {
                sport: u16::from_be_bytes([t[0], t[1]]),
                dport: u16::from_be_bytes([t[2], t[3]]),
                syn: flags & tcp_flags::SYN != 0,
                ack: flags & tcp_flags::ACK != 0,
                fin: flags & tcp_flags::FIN != 0,
                rst: flags & tcp_flags::RST != 0,
            };
            (l4, u16::from_be_bytes([t[16], t[17]]))
        }
        ip_proto::UDP => {
            let u: &[u8; UDP_HEADER] = ip.get(IP_HEADER..IP_HEADER + UDP_HEADER)?.try_into().ok()?;
            let udp_len = u16::from_be_bytes([u[4], u[5]]);
            if usize::from(l4_len) < UDP_HEADER || usize::from(udp_len) < UDP_HEADER || udp_len > l4_len {
                return None;
            }
            let l4 = L4 {
                sport: u16::from_be_bytes([u[0], u[1]]),
                dport: u16::from_be_bytes([u[2], u[3]]),
                syn: false,
                ack: false,
                fin: false,
                rst: false,
            };
            (l4, u16::from_be_bytes([u[6], u[7]]))
        }
        _ => return None,
    };
    // The pseudo-header's sum (see `checksum::pseudo_header_v4`), with the
    // addresses as 32-bit words: the same modulo 0xffff, all `equals_folded` needs.
    let pseudo = u64::from(src.to_bits()) + u64::from(dst.to_bits()) + u64::from(proto) + u64::from(l4_len);
    let key = FlowKey { proto, src, dst, sport: l4.sport, dport: l4.dport };
    let pkt = FlowPacket { key, l4, header_len: IP_HEADER as u8, ip_len: total_len, dont_frag: flags_offset & 0x4000 != 0 };
    Some(FastIpv4 { pkt, nic_checked, maybe_partial: checksum::equals_folded(pseudo, csum_field) })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::offload;

    const PORT_MAC: [u8; 6] = [0x02, 0xd0, 0, 0, 0, 1];

    /// What the general parse of the burst pipeline makes of `frame`: the
    /// Ethernet header length and the flow packet with the NIC-verdict flag,
    /// None where it gives no IPv4 descriptor.
    fn general(frame: &[u8], port_mac: MacAddr, port_vlan: Option<u16>, rx_csum: RxChecksum) -> Option<(usize, FlowPacket, bool)> {
        let (l2_len, ethertype) = general_l2(frame, port_mac, port_vlan)?;
        if ethertype != ethertype::IPV4 {
            return None;
        }
        match flow::parse_ipv4(frame.get(l2_len..)?, false, rx_csum) {
            (Ipv4Kind::Flow(pkt), nic_checked) => Some((l2_len, pkt, nic_checked)),
            _ => None,
        }
    }

    /// The frame's fields, to build mostly valid frames of many shapes.
    #[derive(Clone, Debug)]
    struct Shape {
        to_us: bool,
        /// The (inner) ethertype.
        ethertype: u16,
        /// None: untagged; Some(vid): an 802.1Q tag with `vid` (and PCP bits).
        tag: Option<u16>,
        ver_ihl: u8,
        flags_offset: u16,
        proto: u8,
        tcp_data_offset: u8,
        tcp_flags: u8,
        /// The transport checksum: correct, partial (the pseudo-header sum) or random.
        csum: u8,
        random_csum: u16,
        header_csum_ok: bool,
        payload: Vec<u8>,
        padding: usize,
        /// The IPv4 total length / UDP length off by this (0: right).
        total_len_delta: i8,
        udp_len_delta: i8,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        (
            (
                (
                    prop::bool::weighted(0.9),
                    prop_oneof![
                        12 => Just(ethertype::IPV4),
                        1 => Just(ethertype::IPV6),
                        1 => Just(ethertype::ARP),
                        1 => Just(ethertype::VLAN),
                        1 => any::<u16>()
                    ],
                ),
                prop_oneof![3 => Just(None), 1 => Just(Some(7u16)), 1 => Just(Some(0u16)), 1 => (0u16..0x1000).prop_map(Some)],
                prop_oneof![6 => Just(0x45u8), 1 => Just(0x46u8), 1 => any::<u8>()],
                prop_oneof![4 => Just(0u16), 4 => Just(0x4000u16), 1 => Just(0x2000u16), 1 => any::<u16>()],
                prop_oneof![4 => Just(ip_proto::TCP), 3 => Just(ip_proto::UDP), 1 => Just(ip_proto::ICMP), 1 => any::<u8>()],
                prop_oneof![4 => Just(5u8), 1 => 0u8..16],
                any::<u8>(),
            ),
            (
                0u8..3,
                any::<u16>(),
                prop::bool::weighted(0.9),
                prop::collection::vec(any::<u8>(), 0..48),
                prop_oneof![Just(0usize), 0usize..20],
                prop_oneof![6 => Just(0i8), 1 => -30i8..30],
                prop_oneof![6 => Just(0i8), 1 => -12i8..12],
            ),
        )
            .prop_map(
                |(
                    ((to_us, ethertype), tag, ver_ihl, flags_offset, proto, tcp_data_offset, tcp_flags),
                    (csum, random_csum, header_csum_ok, payload, padding, total_len_delta, udp_len_delta),
                )| Shape {
                    to_us,
                    ethertype,
                    tag,
                    ver_ihl,
                    flags_offset,
                    proto,
                    tcp_data_offset,
                    tcp_flags,
                    csum,
                    random_csum,
                    header_csum_ok,
                    payload,
                    padding,
                    total_len_delta,
                    udp_len_delta,
                },
            )
    }

    /// The frame of `s`.
    fn build(s: &Shape) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(if s.to_us { &PORT_MAC } else { &[0x02, 0xd0, 0, 0, 0, 9] });
        f.extend_from_slice(&[0x02, 0xc0, 0, 0, 0, 2]);
        if let Some(vid) = s.tag {
            f.extend_from_slice(&ethertype::VLAN.to_be_bytes());
            f.extend_from_slice(&(0x2000 | vid).to_be_bytes());
        }
        f.extend_from_slice(&s.ethertype.to_be_bytes());
        let ip_at = f.len();
        let header_len = usize::from(s.ver_ihl & 0x0f) * 4;
        let mut ip = vec![0u8; header_len.max(IP_HEADER)];
        ip[0] = s.ver_ihl;
        ip[6..8].copy_from_slice(&s.flags_offset.to_be_bytes());
        ip[8] = 64;
        ip[9] = s.proto;
        ip[12..16].copy_from_slice(&[10, 0, 0, 2]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 101]);
        let mut l4 = match s.proto {
            ip_proto::UDP => {
                let mut u = vec![0u8; UDP_HEADER];
                u[0..2].copy_from_slice(&5353u16.to_be_bytes());
                u[2..4].copy_from_slice(&53u16.to_be_bytes());
                let len = (UDP_HEADER + s.payload.len()) as i32 + i32::from(s.udp_len_delta);
                u[4..6].copy_from_slice(&(len.clamp(0, 0xffff) as u16).to_be_bytes());
                u
            }
            _ => {
                let mut t = vec![0u8; TCP_HEADER];
                t[0..2].copy_from_slice(&40000u16.to_be_bytes());
                t[2..4].copy_from_slice(&80u16.to_be_bytes());
                t[12] = s.tcp_data_offset << 4;
                t[13] = s.tcp_flags;
                t
            }
        };
        l4.extend_from_slice(&s.payload);
        let total = (ip.len() + l4.len()) as i32 + i32::from(s.total_len_delta);
        ip[2..4].copy_from_slice(&(total.clamp(0, 0xffff) as u16).to_be_bytes());
        let sum = checksum::internet(&ip);
        let sum = if s.header_csum_ok { sum } else { sum ^ 0x0101 };
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let csum_at = if s.proto == ip_proto::UDP { 6 } else { 16 };
        let l4_len = l4.len() as u16;
        let pseudo = checksum::pseudo_header_v4(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 101), s.proto, l4_len);
        let field = match s.csum {
            0 => !checksum::fold(pseudo + checksum::sum(&l4)),
            1 => checksum::fold(pseudo),
            _ => s.random_csum,
        };
        l4[csum_at..csum_at + 2].copy_from_slice(&field.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&l4);
        f.extend(std::iter::repeat_n(0u8, s.padding));
        debug_assert_eq!(f[ip_at], s.ver_ihl);
        f
    }

    /// The fast parse agrees with the general one on `frame`: each step
    /// declines, or finds what the general parse finds; and it says "maybe
    /// partial" whenever the general completion would complete something.
    fn agree(frame: &[u8], port_vlan: Option<u16>, rx_csum: RxChecksum) -> Result<(), TestCaseError> {
        let port_mac = MacAddr(PORT_MAC);
        let Some((l2_len, ethertype)) = l2(frame, port_mac, port_vlan) else { return Ok(()) };
        prop_assert_eq!(Some((l2_len, ethertype)), general_l2(frame, port_mac, port_vlan));
        if ethertype != ethertype::IPV4 {
            return Ok(());
        }
        let Some(fast) = ipv4_flow(&frame[l2_len..], rx_csum) else { return Ok(()) };
        let general = general(frame, port_mac, port_vlan, rx_csum);
        prop_assert_eq!(Some((l2_len, fast.pkt, fast.nic_checked)), general);
        let pkt = fast.pkt;
        let mut l4 = frame[l2_len..][usize::from(pkt.header_len)..usize::from(pkt.ip_len)].to_vec();
        let completed = offload::complete_partial_transport_checksum(&mut l4, pkt.key.src, pkt.key.dst, pkt.key.proto);
        prop_assert!(fast.maybe_partial || !completed, "a partial checksum the fast parse would not complete");
        Ok(())
    }

    fn rx_checksum() -> impl Strategy<Value = RxChecksum> {
        prop_oneof![4 => Just(RxChecksum::Unknown), 1 => Just(RxChecksum::Good), 1 => Just(RxChecksum::Bad)]
    }

    fn port_vlan() -> impl Strategy<Value = Option<u16>> {
        prop_oneof![3 => Just(None), 2 => Just(Some(7u16)), 1 => Just(Some(0u16))]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// Frames of many shapes, mostly valid.
        #[test]
        fn fast_parse_agrees_with_general_parse(s in shape(), vlan in port_vlan(), rx in rx_checksum()) {
            agree(&build(&s), vlan, rx)?;
        }

        /// The same frames with bytes changed and cut short.
        #[test]
        fn fast_parse_agrees_on_mutated_frames(
            s in shape(),
            vlan in port_vlan(),
            rx in rx_checksum(),
            changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in prop::option::weighted(0.2, any::<prop::sample::Index>()),
        ) {
            let mut frame = build(&s);
            for (at, byte) in changes {
                let i = at.index(frame.len());
                frame[i] = byte;
            }
            if let Some(cut) = cut {
                frame.truncate(cut.index(frame.len() + 1));
            }
            agree(&frame, vlan, rx)?;
        }
    }

    /// The fast parse takes the common frames (so the property tests above
    /// compare something): TCP and UDP, untagged and on the port's VLAN.
    #[test]
    fn common_frames_take_the_fast_path() {
        let port_mac = MacAddr(PORT_MAC);
        let tcp = Shape {
            to_us: true,
            ethertype: ethertype::IPV4,
            tag: None,
            ver_ihl: 0x45,
            flags_offset: 0x4000,
            proto: ip_proto::TCP,
            tcp_data_offset: 5,
            tcp_flags: tcp_flags::ACK,
            csum: 0,
            random_csum: 0,
            header_csum_ok: true,
            payload: b"GET /".to_vec(),
            padding: 0,
            total_len_delta: 0,
            udp_len_delta: 0,
        };
        let udp = Shape { proto: ip_proto::UDP, flags_offset: 0, padding: 10, ..tcp.clone() };
        let tagged = Shape { tag: Some(7), ..tcp.clone() };
        let partial = Shape { csum: 1, ..udp.clone() };
        for (s, vlan, maybe_partial) in [(&tcp, None, false), (&udp, None, false), (&tagged, Some(7), false), (&partial, None, true)] {
            let frame = build(s);
            let (l2_len, ethertype) = l2(&frame, port_mac, vlan).expect("the port's frame");
            assert_eq!(ethertype, ethertype::IPV4);
            let fast = ipv4_flow(&frame[l2_len..], RxChecksum::Unknown);
            assert_eq!(fast.map(|f| f.maybe_partial), Some(maybe_partial), "{s:?}");
            assert!(agree(&frame, vlan, RxChecksum::Unknown).is_ok(), "{s:?}");
        }
    }
}
