//! IPv6 neighbour discovery and ICMPv6 echo for the appliance's own addresses
//! ([`rvs_dataplane::local6::answer`], [`rvs_dataplane::neigh::nd`]): every
//! input and every expected frame is written by scapy
//! (`tests/fixtures/nd_scapy.py`, committed as `nd_scapy.txt`), never by rvs's
//! builders. Only the crate's public API is used.

use std::net::Ipv6Addr;

use proptest::prelude::*;
use rvs_dataplane::frame::{Frame, VecFrame};
use rvs_dataplane::local6::{answer, replace_frame, AddrKind, AddrSet6, Drop6, Duplicate, Local6, NdReply};
use rvs_dataplane::neigh::nd::{fill_probe, fill_unsolicited_na, MAX_FRAME_LEN};
use rvs_dataplane::neigh::{NdSource, NdUpdate, NeighTable6, Resolution};
use rvs_dataplane::wire::builder::from_hex;
use rvs_dataplane::wire::MacAddr;

const FIXTURES: &str = include_str!("fixtures/nd_scapy.txt");

const MAC_C: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const MAC_LB: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const MAC_RS: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x11]);
const MAC_RS2: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x12]);
const A_C: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const A_LB: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x64);
const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const LB_IN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const LIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xc8);
const RS: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0x11, 0x2233);
const PORT: u16 = 0;

/// The scapy frame `name`.
fn scapy(name: &str) -> Vec<u8> {
    FIXTURES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.split_once(' ').filter(|(n, _)| *n == name).map(|(_, hex)| from_hex(hex.trim())))
        .unwrap_or_else(|| panic!("no scapy fixture {name}"))
}

fn ours() -> AddrSet6 {
    let mut a = AddrSet6::default();
    a.interface.extend([A_LB, LB_IN]);
    a.vips.insert(VIP);
    a.local.insert(LIP);
    a
}

/// Runs `answer` on the fixture `name` (its Ethernet header length read from the
/// tag): the outcome, the frame afterwards, and the reply buffer.
fn run(name: &str) -> (Local6, Vec<u8>, Vec<u8>) {
    let mut frame = scapy(name);
    let l2_len = if frame[12..14] == [0x81, 0x00] { 18 } else { 14 };
    let mut reply = vec![0xaa; MAX_FRAME_LEN];
    let r = answer(&mut frame, l2_len, PORT, MAC_LB, &ours(), &mut reply);
    (r, frame, reply)
}

fn nd_reply(name: &str) -> (NdReply, Vec<u8>) {
    let before = scapy(name);
    let (r, frame, reply) = run(name);
    assert_eq!(frame, before, "{name}: the solicitation is left as it was");
    match r {
        Local6::NdReply(r) => {
            let len = r.len;
            (r, reply[..len].to_vec())
        }
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn solicitation_for_a_vip_answered_like_scapy() {
    let (r, na) = nd_reply("ns_vip");
    assert_eq!(na, scapy("na_vip"));
    assert_eq!((r.target, r.kind, r.dad), (VIP, AddrKind::Vip, false));
    assert_eq!(r.learn, Some(NdUpdate { ip: A_C, mac: Some(MAC_C), source: NdSource::Solicitation }));
}

#[test]
fn tagged_solicitation_answered_with_the_tag() {
    let (r, na) = nd_reply("ns_vlan");
    assert_eq!(na, scapy("na_vlan"));
    assert_eq!((r.target, r.kind), (A_LB, AddrKind::Interface));
}

/// No source link-layer option (a unicast NS, here with a nonce option first):
/// the answer goes to the frame's Ethernet source, nothing is learned.
#[test]
fn solicitation_without_link_layer_option() {
    let (r, na) = nd_reply("ns_nonce");
    assert_eq!(na, scapy("na_nonce"));
    assert_eq!(r.learn, None);
}

#[test]
fn dad_probe_for_our_address_is_answered_to_all_nodes_and_reported() {
    let (r, na) = nd_reply("ns_dad_lip");
    assert_eq!(na, scapy("na_dad_lip"));
    assert_eq!((r.target, r.kind, r.dad, r.learn), (LIP, AddrKind::Local, true, None));
}

/// The answer sent in the solicitation's own buffer: grown for a DAD probe
/// (78 bytes in, 86 out), shrunk for a solicitation with more options.
#[test]
fn answers_replace_the_received_frame() {
    for (ns, na, extra) in [("ns_dad_lip", "na_dad_lip", 0), ("ns_vip", "na_vip", 16)] {
        let mut bytes = scapy(ns);
        bytes.extend(vec![0; extra]);
        let mut frame = VecFrame::new(&bytes);
        let mut reply = [0u8; MAX_FRAME_LEN];
        let Local6::NdReply(r) = answer(frame.data_mut(), 14, PORT, MAC_LB, &ours(), &mut reply) else { panic!("{ns}: answered") };
        assert!(replace_frame(&mut frame, &reply[..r.len]));
        assert_eq!(frame.to_vec(), scapy(na), "{ns}");
    }
    // No tailroom: the frame stays as it was.
    let mut frame = Tight(scapy("ns_dad_lip"));
    assert!(!replace_frame(&mut frame, &scapy("na_dad_lip")));
    assert_eq!(frame.0, scapy("ns_dad_lip"));
}

/// A buffer without tailroom or headroom.
struct Tight(Vec<u8>);

impl Frame for Tight {
    fn data(&self) -> &[u8] {
        &self.0
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn prepend(&mut self, _: usize) -> bool {
        false
    }
    fn adj(&mut self, _: usize) -> bool {
        false
    }
    fn append(&mut self, len: usize) -> bool {
        len == 0
    }
    fn trim(&mut self, len: usize) -> bool {
        len == 0
    }
    fn alloc_sibling(&self) -> Option<Self> {
        None
    }
}

/// A hop-by-hop header before the NS is allowed (MLD-style); a fragment is not.
#[test]
fn solicitation_behind_extension_headers() {
    let (_, na) = nd_reply("ns_hbh");
    assert_eq!(na, scapy("na_vip"));
    assert_eq!(run("ns_frag").0, Local6::Drop(Drop6::Fragmented));
}

#[test]
fn messages_for_someone_else_are_not_ours() {
    for name in ["ns_other", "ns_to_other", "na_to_other"] {
        let (r, frame, reply) = run(name);
        assert_eq!(r, Local6::NotForUs, "{name}");
        assert_eq!(frame, scapy(name), "{name}");
        assert!(reply.iter().all(|&b| b == 0xaa), "{name}: nothing written");
    }
}

#[test]
fn invalid_solicitations_dropped_with_a_reason() {
    for (name, why) in [
        ("ns_hlim254", Drop6::HopLimit),
        ("ns_badsum", Drop6::Checksum),
        ("ns_code1", Drop6::Code),
        ("ns_mcast_target", Drop6::MulticastTarget),
        ("ns_dad_ll", Drop6::DadWithLinkLayer),
        ("ns_dad_unicast", Drop6::DadDestination),
    ] {
        let (r, frame, reply) = run(name);
        assert_eq!(r, Local6::Drop(why), "{name}");
        assert_eq!(frame, scapy(name), "{name}: unchanged");
        assert!(reply.iter().all(|&b| b == 0xaa), "{name}: nothing written");
    }
    // The checksum really is what fails: the valid frame differs only there.
    let (good, bad) = (scapy("ns_vip"), scapy("ns_badsum"));
    let diff: Vec<usize> = (0..good.len()).filter(|&i| good[i] != bad[i]).collect();
    assert_eq!(diff, vec![56, 57]);
}

#[test]
fn malformed_options_and_short_buffers() {
    // An option of length 0, and one running past the message.
    assert_eq!(run("ns_opt_len0").0, Local6::Drop(Drop6::Malformed));
    assert_eq!(run("ns_opt_overrun").0, Local6::Drop(Drop6::Malformed));
    let mut reply = [0u8; MAX_FRAME_LEN];
    // Truncated headers.
    for n in [0, 13, 14, 53, 54, 61] {
        let mut f = scapy("ns_vip")[..n].to_vec();
        assert_eq!(answer(&mut f, 14, PORT, MAC_LB, &ours(), &mut reply), Local6::Drop(Drop6::Malformed), "{n} bytes");
    }
    // A reply buffer too short for the answer.
    let mut f = scapy("ns_vip");
    let mut short = [0u8; MAX_FRAME_LEN - 1];
    assert_eq!(answer(&mut f, 14, PORT, MAC_LB, &ours(), &mut short), Local6::Drop(Drop6::NoRoom));
}

/// Our own solicitation looped back (our MAC as the source) is not answered.
#[test]
fn own_messages_are_ignored() {
    let mut f = scapy("ns_vip");
    f[6..12].copy_from_slice(&MAC_LB.0);
    let mut reply = [0u8; MAX_FRAME_LEN];
    assert_eq!(answer(&mut f, 14, PORT, MAC_LB, &ours(), &mut reply), Local6::NotForUs);
    let mut f = scapy("na_takeover_vlan");
    assert_eq!(answer(&mut f, 18, PORT, MAC_LB, &ours(), &mut reply), Local6::NotForUs);
}

#[test]
fn advertisements_tell_about_neighbours() {
    let adv = |solicited, override_flag| NdSource::Advertisement { solicited, override_flag };
    assert_eq!(run("na_rs").0, Local6::Learned(NdUpdate { ip: RS, mac: Some(MAC_RS), source: adv(true, true) }));
    assert_eq!(run("na_rs_moved").0, Local6::Learned(NdUpdate { ip: RS, mac: Some(MAC_RS2), source: adv(false, true) }));
    assert_eq!(run("na_rs_no_override").0, Local6::Learned(NdUpdate { ip: RS, mac: Some(MAC_RS2), source: adv(true, false) }));
    assert_eq!(run("na_rs_mcast_solicited").0, Local6::Drop(Drop6::SolicitedToMulticast));
    let mut hl = scapy("na_rs");
    hl[21] = 254;
    let mut reply = [0u8; MAX_FRAME_LEN];
    assert_eq!(answer(&mut hl, 14, PORT, MAC_LB, &ours(), &mut reply), Local6::Drop(Drop6::HopLimit));
}

#[test]
fn someone_else_advertising_our_vip_is_a_duplicate() {
    let (r, frame, _) = run("na_vip_conflict");
    assert_eq!(r, Local6::Duplicate(Duplicate { addr: VIP, kind: AddrKind::Vip, mac: MAC_C }));
    assert_eq!(frame, scapy("na_vip_conflict"));
}

/// The table follows what the advertisements say (RFC 4861 7.2.5 as Linux applies it).
#[test]
fn advertisements_drive_the_table() {
    let update = |name: &str| match run(name).0 {
        Local6::Learned(u) => u,
        other => panic!("{name}: {other:?}"),
    };
    let mut t: NeighTable6<u32> = NeighTable6::new();
    // Untracked: ignored.
    let l = t.learn_nd(&update("na_rs"), 1, 0);
    assert!(l.mac.is_none() && !l.changed && t.is_empty());
    // Incomplete with frames waiting: the solicited answer releases them.
    assert!(matches!(t.resolve(RS, 1, 10, 0), Resolution::Queued { request: true }));
    assert!(matches!(t.resolve(RS, 1, 11, 5), Resolution::Queued { request: false }));
    let l = t.learn_nd(&update("na_rs"), 1, 20);
    assert_eq!((l.mac, l.changed, l.released), (Some(MAC_RS), true, vec![10, 11]));
    assert!(matches!(t.resolve(RS, 1, 12, 30), Resolution::Resolved { mac: MAC_RS, refresh: false, frame: 12 }));
    // A different MAC without O: kept, but no longer trusted.
    let l = t.learn_nd(&update("na_rs_no_override"), 1, 40);
    assert_eq!((l.mac, l.changed), (Some(MAC_RS), false));
    assert!(matches!(t.resolve(RS, 1, 13, 50), Resolution::Resolved { mac: MAC_RS, refresh: true, .. }));
    // An unsolicited one with O moves the entry, unconfirmed.
    let l = t.learn_nd(&update("na_rs_moved"), 1, 2_000);
    assert_eq!((l.mac, l.changed), (Some(MAC_RS2), true));
    assert!(matches!(t.resolve(RS, 1, 14, 2_001), Resolution::Resolved { mac: MAC_RS2, refresh: true, .. }));
    assert_eq!(t.fresh(RS), Some((MAC_RS2, 2_000)), "no longer fresh");
}

/// The solicitor learned from an NS answers the first packet, then is confirmed.
#[test]
fn solicitations_create_unconfirmed_entries() {
    let (r, _) = nd_reply("ns_vip");
    let mut t: NeighTable6<u32> = NeighTable6::new();
    let l = t.learn_nd(&r.learn.expect("learn"), PORT, 100);
    assert_eq!((l.mac, l.changed), (Some(MAC_C), true));
    assert_eq!(t.lookup(A_C, 100), Some(MAC_C));
    assert!(matches!(t.resolve(A_C, PORT, 1, 100), Resolution::Resolved { mac: MAC_C, refresh: true, .. }));
    // The same again changes nothing (and does not confirm).
    assert!(!t.learn_nd(&r.learn.expect("learn"), PORT, 200).changed);
    let confirm = NdUpdate { ip: A_C, mac: Some(MAC_C), source: NdSource::Advertisement { solicited: true, override_flag: true } };
    t.learn_nd(&confirm, PORT, 300);
    assert_eq!(t.fresh(A_C), Some((MAC_C, 300 + rvs_dataplane::neigh::REFRESH_MS)));
}

#[test]
fn echo_to_a_vip_answered_in_place_like_scapy() {
    let (r, frame, _) = run("echo_vip");
    let want = scapy("echo_vip_reply");
    assert_eq!(r, Local6::EchoReply { len: want.len(), kind: AddrKind::Vip });
    assert_eq!(frame, want);
}

#[test]
fn tagged_echo_to_an_interface_address() {
    let (r, frame, _) = run("echo_vlan");
    let want = scapy("echo_vlan_reply");
    assert_eq!(r, Local6::EchoReply { len: want.len(), kind: AddrKind::Interface });
    assert_eq!(frame, want);
}

/// Ethernet padding after the packet stays; the reply is as long as the request.
#[test]
fn echo_with_trailing_padding() {
    let mut f = scapy("echo_vip");
    f.extend([0xee; 6]);
    let mut reply = [0u8; MAX_FRAME_LEN];
    let r = answer(&mut f, 14, PORT, MAC_LB, &ours(), &mut reply);
    let want = scapy("echo_vip_reply");
    assert_eq!(r, Local6::EchoReply { len: want.len(), kind: AddrKind::Vip });
    assert_eq!(&f[..want.len()], &want[..]);
    assert_eq!(&f[want.len()..], &[0xee; 6]);
}

#[test]
fn echo_not_answered_for_others_or_when_broken() {
    let mut reply = [0u8; MAX_FRAME_LEN];
    for name in ["echo_other", "echo_lip", "echo_vip_reply"] {
        let (r, frame, _) = run(name);
        assert_eq!(r, Local6::NotForUs, "{name}");
        assert_eq!(frame, scapy(name), "{name}: unchanged");
    }
    let mut bad = scapy("echo_vip");
    bad[60] ^= 1;
    let keep = bad.clone();
    assert_eq!(answer(&mut bad, 14, PORT, MAC_LB, &ours(), &mut reply), Local6::Drop(Drop6::Checksum));
    assert_eq!(bad, keep);
    // From a multicast source.
    let mut m = scapy("echo_vip");
    m[22] = 0xff;
    assert_eq!(answer(&mut m, 14, PORT, MAC_LB, &ours(), &mut reply), Local6::Drop(Drop6::BadSource));
    // TCP, UDP, IPv4: not ours to answer.
    let mut tcp = scapy("echo_vip");
    tcp[20] = 6;
    assert_eq!(answer(&mut tcp, 14, PORT, MAC_LB, &ours(), &mut reply), Local6::NotForUs);
}

#[test]
fn probes_equal_scapy() {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = fill_probe(&mut buf, MAC_LB, Some(7), LB_IN, RS, None).expect("fits");
    assert_eq!(&buf[..n], &scapy("probe_vlan")[..]);
    let n = fill_probe(&mut buf, MAC_LB, None, LB_IN, RS, Some(MAC_RS)).expect("fits");
    assert_eq!(&buf[..n], &scapy("probe_unicast")[..]);
    assert!(fill_probe(&mut buf[..85], MAC_LB, None, LB_IN, RS, Some(MAC_RS)).is_err());
    let n = fill_unsolicited_na(&mut buf, MAC_LB, Some(42), VIP).expect("fits");
    assert_eq!(&buf[..n], &scapy("na_takeover_vlan")[..]);
}

/// Our probe, answered by the real server's NA, resolves the next hop.
#[test]
fn resolution_round_trip() {
    let mut t: NeighTable6<&str> = NeighTable6::new();
    assert!(matches!(t.resolve(RS, 1, "syn", 0), Resolution::Queued { request: true }));
    let (mut expired, mut requests) = (Vec::new(), Vec::new());
    t.tick(rvs_dataplane::neigh::RETRY_MS, &mut expired, &mut requests);
    assert_eq!(requests, vec![(RS, 1)]);
    let mut na = scapy("na_rs");
    let mut reply = [0u8; MAX_FRAME_LEN];
    let Local6::Learned(u) = answer(&mut na, 14, 1, MAC_LB, &ours(), &mut reply) else { panic!("learned") };
    assert_eq!(t.learn_nd(&u, 1, 1_100).released, vec!["syn"]);
}

proptest! {
    /// Random bytes, alone or behind a valid Ethernet/IPv6 header, never make
    /// `answer` panic or write past what it reports.
    #[test]
    fn random_frames_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200), l2 in 0usize..24, prefix in any::<bool>()) {
        let mut f = if prefix { scapy("ns_vip")[..54].to_vec() } else { Vec::new() };
        f.extend(body);
        let mut reply = [0u8; MAX_FRAME_LEN];
        let len = f.len();
        match answer(&mut f, l2, PORT, MAC_LB, &ours(), &mut reply) {
            Local6::EchoReply { len: n, .. } => prop_assert!(n <= len),
            Local6::NdReply(r) => prop_assert!(r.len <= MAX_FRAME_LEN),
            _ => {}
        }
        prop_assert_eq!(f.len(), len);
    }

    /// Valid frames with a few bytes changed, or cut short: any outcome but a panic,
    /// and a solicitation answered only when it is still valid.
    #[test]
    fn mutated_frames_never_panic(which in 0usize..6, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4), cut in any::<usize>()) {
        let name = ["ns_vip", "ns_vlan", "ns_dad_lip", "na_rs", "echo_vip", "echo_vlan"][which];
        let mut f = scapy(name);
        for (i, b) in edits {
            let i = i % f.len();
            f[i] = b;
        }
        let n = cut % (f.len() + 1);
        let mut g = f[..n].to_vec();
        let mut reply = [0u8; MAX_FRAME_LEN];
        let l2 = if name.contains("vlan") { 18 } else { 14 };
        let _ = answer(&mut f, l2, PORT, MAC_LB, &ours(), &mut reply);
        let _ = answer(&mut g, l2, PORT, MAC_LB, &ours(), &mut reply);
    }
}
