//! VRRP unit tests: packet fixtures (checksums computed independently, with
//! Python's struct/socket), malformed input (proptest), and state-machine
//! scenarios on a fake clock (`t0 + offsets`; the state machine never reads
//! the clock itself).

#![allow(clippy::unwrap_used)]

/// Everything under `vrrp::` so that `cargo test -p rvs-control vrrp` selects it.
mod vrrp {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use rvs_control::ha::VrrpInstance;
    use rvs_control::vrrp::garp::garp_frame;
    use rvs_control::vrrp::packet::{decode_ipv4, internet_checksum, parse_ipv4, Advert, Auth, PacketError, Version, VRRP_MCAST_V4};
    use rvs_control::vrrp::state::{Action, Ignored, Instance, InstanceParams, Router, ScriptStatus, VrrpState};
    use rvs_control::vrrp::{advert_int_cs, instance_params};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const VIP: IpAddr = IpAddr::V4(VIP4);
    const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const PEER_HI: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const PEER_LO: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0));
    const MCAST: IpAddr = IpAddr::V4(VRRP_MCAST_V4);

    fn ip4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn ip4u(u: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(u))
    }

    // ---------------------------------------------------------------------------
    // Packets
    // ---------------------------------------------------------------------------

    #[test]
    fn v2_fixture_pass_auth() {
        // vrid 51, prio 100, 1 address, auth PASS "secret", advert 1 s; checksum 0x331a.
        let wire = hex("213364010101331a0a0000647365637265740000");
        let a = Advert { version: Version::V2, vrid: 51, priority: 100, advert_int_cs: 100, auth: Auth::pass("secret"), addrs: vec![VIP] };
        assert_eq!(a.encode(ME, MCAST), wire);
        // The v2 checksum does not depend on the IP addresses.
        assert_eq!(Advert::decode(&wire, ip4(1, 2, 3, 4), ip4(5, 6, 7, 8)), Ok(a));
    }

    #[test]
    fn v2_fixture_no_auth_two_addresses() {
        let wire = hex("2107c8020003819ec0a80a01c0a80a020000000000000000");
        let a = Advert {
            version: Version::V2,
            vrid: 7,
            priority: 200,
            advert_int_cs: 300,
            auth: Auth::None,
            addrs: vec![ip4(192, 168, 10, 1), ip4(192, 168, 10, 2)],
        };
        assert_eq!(a.encode(ME, MCAST), wire);
        assert_eq!(Advert::decode(&wire, ME, MCAST), Ok(a));
    }

    #[test]
    fn v3_fixture_multicast_centiseconds() {
        // vrid 51, prio 150, max advert int 10 cs, from 10.0.0.1 to 224.0.0.18; checksum 0x43cd.
        let wire = hex("31339601000a43cd0a000064");
        let a = Advert { version: Version::V3, vrid: 51, priority: 150, advert_int_cs: 10, auth: Auth::None, addrs: vec![VIP] };
        assert_eq!(a.encode(ME, MCAST), wire);
        assert_eq!(Advert::decode(&wire, ME, MCAST), Ok(a));
        // The pseudo-header is covered: another destination breaks the checksum.
        assert_eq!(Advert::decode(&wire, ME, ip4(10, 0, 0, 3)), Err(PacketError::BadChecksum));
    }

    #[test]
    fn v3_fixture_unicast_priority_zero() {
        let src = ip4(10, 0, 0, 2);
        let dst = ip4(10, 0, 0, 3);
        let wire = hex("310900020064a5f60a0900010a090002");
        let a = Advert {
            version: Version::V3,
            vrid: 9,
            priority: 0,
            advert_int_cs: 100,
            auth: Auth::None,
            addrs: vec![ip4(10, 9, 0, 1), ip4(10, 9, 0, 2)],
        };
        assert_eq!(a.encode(src, dst), wire);
        assert_eq!(Advert::decode(&wire, src, dst), Ok(a));
    }

    #[test]
    fn malformed_packets() {
        let good = hex("213364010101331a0a0000647365637265740000");
        assert_eq!(Advert::decode(&good[..7], ME, MCAST), Err(PacketError::TooShort(7)));
        assert_eq!(Advert::decode(&good[..19], ME, MCAST), Err(PacketError::TooShort(19)));
        let mut bad = good.clone();
        bad[0] = 0x41;
        assert_eq!(Advert::decode(&bad, ME, MCAST), Err(PacketError::BadVersion(4)));
        bad[0] = 0x22;
        assert_eq!(Advert::decode(&bad, ME, MCAST), Err(PacketError::BadType(2)));
        let mut bad = good.clone();
        bad[2] = 101; // priority changed, checksum not
        assert_eq!(Advert::decode(&bad, ME, MCAST), Err(PacketError::BadChecksum));
        let mut bad = good.clone();
        bad[1] = 0;
        assert_eq!(Advert::decode(&bad, ME, MCAST), Err(PacketError::ZeroVrid));
        // Auth type 2 (AH) with a fixed-up checksum.
        let mut bad = good.clone();
        bad[4] = 2;
        bad[6] = 0;
        bad[7] = 0;
        let c = internet_checksum(&[&bad]);
        bad[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(Advert::decode(&bad, ME, MCAST), Err(PacketError::BadAuthType(2)));
        // Interval 0.
        let mut bad = good;
        bad[5] = 0;
        bad[6] = 0;
        bad[7] = 0;
        let c = internet_checksum(&[&bad]);
        bad[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(Advert::decode(&bad, ME, MCAST), Err(PacketError::ZeroInterval));
    }

    fn ip_packet(ttl: u8, proto: u8, src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let octets = |a: IpAddr| match a {
            IpAddr::V4(v4) => v4.octets(),
            IpAddr::V6(_) => unreachable!("IPv4 packets only"),
        };
        let mut p = vec![0x45, 0xc0];
        p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, ttl, proto, 0, 0]);
        p.extend_from_slice(&octets(src));
        p.extend_from_slice(&octets(dst));
        let c = internet_checksum(&[&p]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn ipv4_wrapping() {
        let vrrp = hex("31339601000a43cd0a000064");
        let pkt = ip_packet(255, 112, ME, MCAST, &vrrp);
        let (ip, advert) = decode_ipv4(&pkt).unwrap();
        assert_eq!((ip.src, ip.dst, ip.ttl), (ME, MCAST, 255));
        assert_eq!(advert.priority, 150);
        let pkt = ip_packet(64, 112, ME, MCAST, &vrrp);
        assert_eq!(decode_ipv4(&pkt).unwrap().0.ttl, 64);
        let pkt = ip_packet(255, 17, ME, MCAST, &vrrp);
        assert_eq!(decode_ipv4(&pkt).unwrap_err(), PacketError::NotVrrp(17));
        let mut frag = ip_packet(255, 112, ME, MCAST, &vrrp);
        frag[6] = 0x20; // more fragments
        assert!(matches!(decode_ipv4(&frag), Err(PacketError::BadIpHeader(_))));
        assert!(matches!(parse_ipv4(&[0x60; 40]), Err(PacketError::BadIpHeader(_))));
        assert!(matches!(parse_ipv4(&[0x45; 10]), Err(PacketError::TooShort(10))));
    }

    #[test]
    fn garp_frame_is_an_arp_request_for_the_vip() {
        let f = garp_frame([0x02, 0xaa, 0, 0, 0, 1], VIP4);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[28..32], &VIP4.octets()); // sender protocol address
        assert_eq!(&f[38..42], &VIP4.octets()); // target protocol address
    }

    fn arb_advert() -> impl Strategy<Value = Advert> {
        (
            any::<bool>(),
            1u8..=255,
            any::<u8>(),
            1u16..=4095,
            proptest::option::of(any::<[u8; 8]>()),
            proptest::collection::vec(any::<u32>(), 0..20),
        )
            .prop_map(|(v3, vrid, priority, cs, pass, addrs)| {
                let version = if v3 { Version::V3 } else { Version::V2 };
                Advert {
                    version,
                    vrid,
                    priority,
                    // v2 carries whole seconds.
                    advert_int_cs: if v3 { cs } else { (cs % 255 + 1) * 100 },
                    auth: match (v3, pass) {
                        (false, Some(p)) => Auth::Pass(p),
                        _ => Auth::None,
                    },
                    addrs: addrs.into_iter().map(ip4u).collect(),
                }
            })
    }

    proptest! {
        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200), s in any::<u32>(), d in any::<u32>()) {
            let _ = Advert::decode(&buf, ip4u(s), ip4u(d));
            let _ = decode_ipv4(&buf);
        }

        #[test]
        fn encode_decode_roundtrip(a in arb_advert(), s in any::<u32>(), d in any::<u32>()) {
            let (s, d) = (ip4u(s), ip4u(d));
            let wire = a.encode(s, d);
            prop_assert_eq!(wire.len(), a.encoded_len(s));
            prop_assert_eq!(Advert::decode(&wire, s, d), Ok(a));
        }

        #[test]
        fn ipv6_decode_never_panics_and_v3_round_trips(
            buf in proptest::collection::vec(any::<u8>(), 0..300),
            s in any::<u128>(),
            d in any::<u128>(),
            addrs in proptest::collection::vec(any::<u128>(), 0..20),
            vrid in 1u8..=255,
            cs in 1u16..=4095,
        ) {
            let (s, d) = (IpAddr::from(std::net::Ipv6Addr::from(s)), IpAddr::from(std::net::Ipv6Addr::from(d)));
            let _ = Advert::decode(&buf, s, d);
            let a = Advert {
                version: Version::V3,
                vrid,
                priority: 100,
                advert_int_cs: cs,
                auth: Auth::None,
                addrs: addrs.into_iter().map(|a| IpAddr::from(std::net::Ipv6Addr::from(a))).collect(),
            };
            let wire = a.encode(s, d);
            prop_assert_eq!(wire.len(), 8 + 16 * a.addrs.len());
            prop_assert_eq!(Advert::decode(&wire, s, d), Ok(a));
        }

        #[test]
        fn any_single_bit_flip_is_rejected_or_differs(a in arb_advert(), bit in 0usize..64) {
            let wire = a.encode(ME, MCAST);
            let mut bad = wire.clone();
            let i = (bit / 8) % bad.len();
            bad[i] ^= 1 << (bit % 8);
            // One flipped bit always breaks the Internet checksum.
            prop_assert!(Advert::decode(&bad, ME, MCAST).is_err());
        }
    }

    // ---------------------------------------------------------------------------
    // State machine
    // ---------------------------------------------------------------------------

    fn params(version: Version, priority: u8, advert_int_cs: u16) -> InstanceParams {
        InstanceParams {
            name: "VI_1".to_owned(),
            version,
            vrid: 51,
            priority,
            advert_int_cs,
            preempt: true,
            preempt_delay: Duration::ZERO,
            higher_prio_send_advert: false,
            auth: Auth::None,
            primary_ip: ME,
            vips: vec![VIP],
        }
    }

    fn advert_from(p: &InstanceParams, priority: u8) -> Advert {
        p.advert(priority)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn change(to: VrrpState, acts: &[Action]) -> bool {
        acts.iter().any(|a| matches!(a, Action::StateChange { to: t, .. } if *t == to))
    }

    #[test]
    fn intervals_v2_and_v3() {
        let v2 = Instance::new(params(Version::V2, 100, 100));
        // 3 × 1 s + (256 − 100)/256 s.
        assert_eq!(v2.master_down_interval(), Duration::from_micros(3_000_000 + 156 * 1_000_000 / 256));
        let v3 = Instance::new(params(Version::V3, 100, 10));
        // 3 × 100 ms + 156 × 100 ms / 256 = 360.9375 ms.
        assert_eq!(v3.master_down_interval(), Duration::from_micros(360_937));
        assert_eq!(v3.skew(), Duration::from_micros(60_937));
    }

    #[test]
    fn backup_becomes_master_after_master_down_interval() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(Version::V2, 100, 100));
        let acts = i.start(t0);
        assert!(change(VrrpState::Backup, &acts));
        let down = i.master_down_interval();
        assert_eq!(i.next_deadline(), Some(t0 + down));
        assert!(i.on_timer(t0 + down - ms(1)).is_empty());
        assert_eq!(i.state(), VrrpState::Backup);
        let acts = i.on_timer(t0 + down);
        assert_eq!(acts[0], Action::SendAdvert { priority: 100 });
        assert!(change(VrrpState::Master, &acts));
        // Then adverts every advert_int.
        assert_eq!(i.next_deadline(), Some(t0 + down + ms(1000)));
        assert_eq!(i.on_timer(t0 + down + ms(1000)), vec![Action::SendAdvert { priority: 100 }]);
    }

    #[test]
    fn adverts_from_a_higher_priority_master_keep_the_backup() {
        let t0 = Instant::now();
        let p = params(Version::V2, 100, 100);
        let mut i = Instance::new(p.clone());
        i.start(t0);
        let peer = advert_from(&p, 200);
        for k in 1..10u64 {
            assert!(i.on_advert(t0 + ms(k * 1000), PEER_LO, &peer).is_empty());
            assert_eq!(i.next_deadline(), Some(t0 + ms(k * 1000) + i.master_down_interval()));
        }
        assert!(i.on_timer(t0 + ms(12_000)).is_empty());
        assert_eq!(i.state(), VrrpState::Backup);
    }

    #[test]
    fn master_yields_to_higher_priority() {
        let t0 = Instant::now();
        let p = params(Version::V2, 100, 100);
        let mut i = Instance::new(p.clone());
        i.start(t0);
        i.on_timer(t0 + ms(4000));
        assert_eq!(i.state(), VrrpState::Master);
        let acts = i.on_advert(t0 + ms(4500), PEER_LO, &advert_from(&p, 150));
        assert!(change(VrrpState::Backup, &acts));
        assert!(!acts.iter().any(|a| matches!(a, Action::SendAdvert { .. })));
        assert_eq!(i.next_deadline(), Some(t0 + ms(4500) + i.master_down_interval()));
    }

    #[test]
    fn master_answers_lower_priority_at_once_and_stays() {
        let t0 = Instant::now();
        let p = params(Version::V2, 150, 100);
        let mut i = Instance::new(p.clone());
        i.start(t0);
        i.on_timer(t0 + ms(4000));
        let acts = i.on_advert(t0 + ms(4200), PEER_HI, &advert_from(&p, 100));
        // An advert forcing the election, and gratuitous ARPs that pull the
        // clients back (Keepalived's garp_lower_prio_repeat).
        assert_eq!(acts, vec![Action::SendAdvert { priority: 150 }, Action::AnnounceVips]);
        assert_eq!(i.state(), VrrpState::Master);
    }

    #[test]
    fn yielding_master_claims_once_with_higher_prio_send_advert() {
        let t0 = Instant::now();
        let mut p = params(Version::V3, 100, 10);
        let mut i = Instance::new(p.clone());
        i.start(t0);
        i.on_timer(t0 + ms(4000));
        assert_eq!(i.state(), VrrpState::Master);
        // Keepalived's default: yield silently.
        let acts = i.on_advert(t0 + ms(4100), PEER_HI, &advert_from(&p, 150));
        assert!(!acts.iter().any(|a| matches!(a, Action::SendAdvert { .. })));
        assert_eq!(i.state(), VrrpState::Backup);
        // rvs's default: one advert with our priority, then BACKUP, so the
        // new master answers with gratuitous ARPs (split brain healing).
        p.higher_prio_send_advert = true;
        let mut j = Instance::new(p.clone());
        j.start(t0);
        j.on_timer(t0 + ms(4000));
        let acts = j.on_advert(t0 + ms(4100), PEER_HI, &advert_from(&p, 150));
        assert_eq!(acts.first(), Some(&Action::SendAdvert { priority: 100 }));
        assert!(change(VrrpState::Backup, &acts));
    }

    #[test]
    fn preempt_takes_over_from_lower_priority_master() {
        let t0 = Instant::now();
        let p = params(Version::V2, 200, 100);
        let mut i = Instance::new(p.clone());
        i.start(t0);
        let lower = advert_from(&p, 100);
        // Lower-priority adverts do not reset the timer: we take over on time.
        for k in 0..3u64 {
            i.on_advert(t0 + ms(k * 1000), PEER_LO, &lower);
        }
        let acts = i.on_timer(t0 + i.master_down_interval());
        assert!(change(VrrpState::Master, &acts));
    }

    #[test]
    fn nopreempt_keeps_a_lower_priority_master() {
        let t0 = Instant::now();
        let mut p = params(Version::V2, 200, 100);
        p.preempt = false;
        let mut i = Instance::new(p.clone());
        i.start(t0);
        let lower = advert_from(&p, 100);
        for k in 0..20u64 {
            i.on_advert(t0 + ms(k * 1000), PEER_LO, &lower);
            assert!(i.on_timer(t0 + ms(k * 1000 + 500)).is_empty());
        }
        assert_eq!(i.state(), VrrpState::Backup);
        // But a silent master is still replaced.
        assert!(change(VrrpState::Master, &i.on_timer(t0 + ms(19_000) + i.master_down_interval())));
    }

    #[test]
    fn preempt_delay_waits_before_preempting() {
        let t0 = Instant::now();
        let mut p = params(Version::V2, 200, 100);
        p.preempt_delay = Duration::from_secs(5);
        let mut i = Instance::new(p.clone());
        i.start(t0);
        let lower = advert_from(&p, 100);
        // For 5 s from the first lower-priority advert, it is accepted.
        for k in 0..=5u64 {
            i.on_advert(t0 + ms(k * 1000), PEER_LO, &lower);
            assert!(i.on_timer(t0 + ms(k * 1000 + 500)).is_empty(), "preempted early at {k}s");
        }
        // From then on it is ignored: master 3 × 1 s + skew after the last accepted one (at 4 s).
        let t_last = t0 + ms(4000);
        for k in 6..8u64 {
            i.on_advert(t0 + ms(k * 1000), PEER_LO, &lower);
        }
        assert!(i.on_timer(t_last + i.master_down_interval() - ms(1)).is_empty());
        assert!(change(VrrpState::Master, &i.on_timer(t_last + i.master_down_interval())));
    }

    #[test]
    fn priority_zero_hands_over_after_skew() {
        let t0 = Instant::now();
        let p = params(Version::V3, 100, 100);
        let mut i = Instance::new(p.clone());
        i.start(t0);
        i.on_advert(t0 + ms(500), PEER_LO, &advert_from(&p, 200));
        i.on_advert(t0 + ms(1000), PEER_LO, &advert_from(&p, 0));
        let skew = i.skew();
        assert_eq!(skew, Duration::from_micros(156 * 1_000_000 / 256));
        assert_eq!(i.next_deadline(), Some(t0 + ms(1000) + skew));
        assert!(change(VrrpState::Master, &i.on_timer(t0 + ms(1000) + skew)));
    }

    #[test]
    fn master_shutdown_sends_priority_zero() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(Version::V2, 255, 100));
        let acts = i.start(t0);
        // The owner starts as master at once.
        assert_eq!(acts[0], Action::SendAdvert { priority: 255 });
        assert_eq!(i.state(), VrrpState::Master);
        let acts = i.shutdown();
        assert_eq!(acts[0], Action::SendAdvert { priority: 0 });
        assert!(change(VrrpState::Initialize, &acts));
        assert_eq!(i.next_deadline(), None);
    }

    #[test]
    fn equal_priority_tie_broken_by_higher_address() {
        let t0 = Instant::now();
        let p = params(Version::V2, 100, 100);
        let mut i = Instance::new(p.clone());
        i.start(t0);
        i.on_timer(t0 + ms(4000));
        assert_eq!(i.state(), VrrpState::Master);
        // Same priority from a lower address: we stay (and assert ourselves,
        // with gratuitous ARPs, as to any lower claim).
        let acts = i.on_advert(t0 + ms(4100), PEER_LO, &advert_from(&p, 100));
        assert_eq!(acts, vec![Action::SendAdvert { priority: 100 }, Action::AnnounceVips]);
        // Same priority from a higher address: we yield.
        let acts = i.on_advert(t0 + ms(4200), PEER_HI, &advert_from(&p, 100));
        assert!(change(VrrpState::Backup, &acts));
    }

    #[test]
    fn ipv6_instance_runs_the_same_machine() {
        // VRRPv3 over IPv6: primary = link-local address; the tie is broken
        // by the 128-bit address (RFC 5798 §6.4.3), and a higher-priority
        // master keeps us backup, exactly as over IPv4.
        let v6 = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut p = params(Version::V3, 100, 10);
        p.primary_ip = v6("fe80::5");
        p.vips = vec![v6("2001:db8::100")];
        let t0 = Instant::now();
        let mut i = Instance::new(p.clone());
        i.start(t0);
        assert_eq!(i.master_down_interval(), ms(300) + Duration::from_micros(156 * 10 * 10_000 / 256));
        assert!(i.on_advert(t0 + ms(100), v6("fe80::9"), &advert_from(&p, 150)).is_empty());
        assert_eq!(i.state(), VrrpState::Backup);
        let acts = i.on_timer(t0 + ms(100) + i.master_down_interval());
        assert!(change(VrrpState::Master, &acts));
        let acts = i.on_advert(t0 + ms(1000), v6("fe80::4"), &advert_from(&p, 100));
        assert_eq!(acts, vec![Action::SendAdvert { priority: 100 }, Action::AnnounceVips]);
        let acts = i.on_advert(t0 + ms(1100), v6("fe80::1:0"), &advert_from(&p, 100));
        assert!(change(VrrpState::Backup, &acts), "fe80::1:0 > fe80::5 as 128-bit numbers");
        assert!(i.on_advert(t0 + ms(1200), v6("fe80::5"), &advert_from(&p, 200)).is_empty());
        assert_eq!(i.last_ignored(), Some(Ignored::Own));
    }

    #[test]
    fn own_adverts_are_ignored() {
        let t0 = Instant::now();
        let p = params(Version::V2, 100, 100);
        let mut i = Instance::new(p.clone());
        i.start(t0);
        assert!(i.on_advert(t0, ME, &advert_from(&p, 200)).is_empty());
        assert_eq!(i.last_ignored(), Some(Ignored::Own));
    }

    #[test]
    fn v2_auth_mismatch_is_ignored() {
        let t0 = Instant::now();
        let mut p = params(Version::V2, 100, 100);
        p.auth = Auth::pass("secret");
        let mut i = Instance::new(p.clone());
        i.start(t0);
        let mut wrong = advert_from(&p, 200);
        wrong.auth = Auth::pass("other");
        i.on_advert(t0 + ms(1000), PEER_LO, &wrong);
        assert_eq!(i.last_ignored(), Some(Ignored::AuthFailure));
        wrong.auth = Auth::None;
        i.on_advert(t0 + ms(1000), PEER_LO, &wrong);
        assert_eq!(i.last_ignored(), Some(Ignored::AuthTypeMismatch));
        // The timer was not reset: we become master on the original schedule.
        assert!(change(VrrpState::Master, &i.on_timer(t0 + i.master_down_interval())));
        // The right password is accepted.
        let mut j = Instance::new(p.clone());
        j.start(t0);
        j.on_advert(t0 + ms(1000), PEER_LO, &advert_from(&p, 200));
        assert_eq!(j.last_ignored(), None);
        assert_eq!(j.next_deadline(), Some(t0 + ms(1000) + j.master_down_interval()));
    }

    #[test]
    fn advert_int_mismatch_v2_drops_v3_learns() {
        let t0 = Instant::now();
        let p2 = params(Version::V2, 100, 100);
        let mut i = Instance::new(p2.clone());
        i.start(t0);
        let mut other = advert_from(&p2, 200);
        other.advert_int_cs = 300;
        i.on_advert(t0 + ms(100), PEER_LO, &other);
        assert_eq!(i.last_ignored(), Some(Ignored::Interval));

        let p3 = params(Version::V3, 100, 10);
        let mut j = Instance::new(p3.clone());
        j.start(t0);
        let mut other = advert_from(&p3, 200);
        other.advert_int_cs = 100; // the master advertises every second
        j.on_advert(t0 + ms(100), PEER_LO, &other);
        assert_eq!(j.last_ignored(), None);
        // Master_Down_Interval now follows the master's interval: 3 s + 156/256 s.
        assert_eq!(j.master_down_interval(), Duration::from_micros(3_000_000 + 156 * 1_000_000 / 256));
        assert_eq!(j.next_deadline(), Some(t0 + ms(100) + j.master_down_interval()));
    }

    #[test]
    fn other_vrid_and_version_are_ignored() {
        let t0 = Instant::now();
        let p = params(Version::V3, 100, 100);
        let mut i = Instance::new(p.clone());
        i.start(t0);
        let mut a = advert_from(&p, 200);
        a.vrid = 52;
        i.on_advert(t0, PEER_LO, &a);
        assert_eq!(i.last_ignored(), Some(Ignored::OtherVrid));
        let mut a = advert_from(&p, 200);
        a.version = Version::V2;
        i.on_advert(t0, PEER_LO, &a);
        assert_eq!(i.last_ignored(), Some(Ignored::OtherVersion));
    }

    #[test]
    fn track_script_weight_changes_priority_and_mastership() {
        let t0 = Instant::now();
        let p = params(Version::V2, 100, 100);
        let mut r = Router::new(vec![Instance::new(p.clone())], vec![]);
        r.start(t0);
        r.on_timer(t0 + ms(4000));
        assert_eq!(r.instance(0).unwrap().state(), VrrpState::Master);
        // A failing script with weight -30: 100 → 70; a peer at 80 now wins.
        r.set_priority_adjust(0, -30);
        assert_eq!(r.instance(0).unwrap().effective_priority(), 70);
        let acts = r.on_timer(t0 + ms(5000));
        assert_eq!(acts, vec![(0, Action::SendAdvert { priority: 70 })]);
        let acts = r.on_advert(t0 + ms(5100), 0, PEER_LO, &advert_from(&p, 80));
        assert!(acts.iter().any(|(_, a)| matches!(a, Action::StateChange { to: VrrpState::Backup, .. })));
        // Clamped to 1..=254; an owner stays 255.
        r.set_priority_adjust(0, -500);
        assert_eq!(r.instance(0).unwrap().effective_priority(), 1);
        r.set_priority_adjust(0, 500);
        assert_eq!(r.instance(0).unwrap().effective_priority(), 254);
        let mut owner = Instance::new(params(Version::V2, 255, 100));
        owner.set_priority_adjust(-50);
        assert_eq!(owner.effective_priority(), 255);
    }

    #[test]
    fn fault_from_master_resigns_and_recovers_as_backup() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(Version::V2, 100, 100));
        i.start(t0);
        i.on_timer(t0 + ms(4000));
        let acts = i.set_fault(t0 + ms(4100), "link eth0", true);
        assert_eq!(acts[0], Action::SendAdvert { priority: 0 });
        assert!(change(VrrpState::Fault, &acts));
        assert_eq!(i.next_deadline(), None);
        // Two reasons: both must clear.
        assert!(i.set_fault(t0 + ms(4200), "script chk", true).is_empty());
        assert!(i.set_fault(t0 + ms(4300), "link eth0", false).is_empty());
        let acts = i.set_fault(t0 + ms(4400), "script chk", false);
        assert!(change(VrrpState::Backup, &acts));
        assert_eq!(i.next_deadline(), Some(t0 + ms(4400) + i.master_down_interval()));
        // A fault known before start starts in FAULT.
        let mut j = Instance::new(params(Version::V2, 100, 100));
        j.set_fault(t0, "link eth0", true);
        assert!(change(VrrpState::Fault, &j.start(t0)));
    }

    #[test]
    fn script_rise_and_fall() {
        let mut s = ScriptStatus::new(2, 3);
        assert!(s.up);
        assert!(!s.record(false));
        assert!(!s.record(false));
        assert!(!s.record(true)); // streak broken
        assert!(!s.record(false));
        assert!(!s.record(false));
        assert!(s.record(false));
        assert!(!s.up);
        assert!(!s.record(true));
        assert!(s.record(true));
        assert!(s.up);
    }

    fn group_pair() -> (Router, InstanceParams, InstanceParams) {
        let a = params(Version::V2, 100, 100);
        let mut b = params(Version::V2, 100, 100);
        b.name = "VI_2".to_owned();
        b.vrid = 52;
        let r = Router::new(vec![Instance::new(a.clone()), Instance::new(b.clone())], vec![vec![0, 1]]);
        (r, a, b)
    }

    fn states(r: &Router) -> Vec<VrrpState> {
        r.instances().iter().map(|i| i.state()).collect()
    }

    #[test]
    fn sync_group_moves_together() {
        let t0 = Instant::now();
        let (mut r, a, b) = group_pair();
        r.start(t0);
        // Instance 1 keeps hearing a master; instance 0 does not: the group waits.
        let down = r.instance(0).unwrap().master_down_interval();
        let mut t = t0;
        while t < t0 + down + ms(2000) {
            r.on_advert(t, 1, PEER_LO, &advert_from(&b, 200));
            r.on_timer(t);
            t += ms(500);
        }
        assert_eq!(states(&r), vec![VrrpState::Backup, VrrpState::Backup]);
        // Instance 1's master goes silent: once its timer expires too, both become master.
        let acts = r.on_timer(t + down);
        assert_eq!(states(&r), vec![VrrpState::Master, VrrpState::Master]);
        assert_eq!(acts.iter().filter(|(_, a)| matches!(a, Action::SendAdvert { .. })).count(), 2);
        // A higher-priority advert on instance 0 sends the whole group to backup.
        let acts = r.on_advert(t + down + ms(100), 0, PEER_LO, &advert_from(&a, 200));
        assert_eq!(states(&r), vec![VrrpState::Backup, VrrpState::Backup]);
        assert_eq!(acts.iter().filter(|(_, a)| matches!(a, Action::StateChange { .. })).count(), 2);
    }

    #[test]
    fn a_group_yielding_claims_once_on_every_member() {
        // With higher_prio_send_advert, each member sends one advert as it
        // yields, also those moved by the group: every VRID's new master
        // hears a lower-priority claim and re-announces its VIPs.
        let t0 = Instant::now();
        let a = InstanceParams { higher_prio_send_advert: true, ..params(Version::V2, 100, 100) };
        let b = InstanceParams { name: "VI_2".to_owned(), vrid: 52, ..a.clone() };
        let mut r = Router::new(vec![Instance::new(a.clone()), Instance::new(b)], vec![vec![0, 1]]);
        r.start(t0);
        r.on_timer(t0 + ms(4000));
        assert_eq!(states(&r), vec![VrrpState::Master, VrrpState::Master]);
        let acts = r.on_advert(t0 + ms(4100), 0, PEER_HI, &advert_from(&a, 200));
        assert_eq!(states(&r), vec![VrrpState::Backup, VrrpState::Backup]);
        let claims: Vec<usize> = acts.iter().filter(|(_, a)| *a == Action::SendAdvert { priority: 100 }).map(|(i, _)| *i).collect();
        assert_eq!(claims, vec![0, 1]);
    }

    #[test]
    fn sync_group_fault_moves_the_group() {
        let t0 = Instant::now();
        let (mut r, _, _) = group_pair();
        r.start(t0);
        r.on_timer(t0 + ms(10_000));
        assert_eq!(states(&r), vec![VrrpState::Master, VrrpState::Master]);
        let acts = r.set_fault(t0 + ms(10_100), 1, "link eth1", true);
        assert_eq!(states(&r), vec![VrrpState::Fault, VrrpState::Fault]);
        // Both masters resigned with priority 0.
        assert_eq!(acts.iter().filter(|(_, a)| *a == Action::SendAdvert { priority: 0 }).count(), 2);
        r.set_fault(t0 + ms(10_200), 1, "link eth1", false);
        assert_eq!(states(&r), vec![VrrpState::Backup, VrrpState::Backup]);
    }

    #[test]
    fn config_validation() {
        assert_eq!(advert_int_cs(2, 1.0), Ok(100));
        assert_eq!(advert_int_cs(2, 2.4), Ok(200));
        assert_eq!(advert_int_cs(3, 0.1), Ok(10));
        assert_eq!(advert_int_cs(3, 0.01), Ok(1));
        assert!(advert_int_cs(3, 41.0).is_err());
        assert!(advert_int_cs(2, 0.0).is_err());
        assert!(advert_int_cs(4, 1.0).is_err());
        let inst: VrrpInstance = serde_json::from_value(serde_json::json!({
            "name": "VI_1", "interface": "lan0", "virtual_router_id": 51, "priority": 150,
            "advert_int": 0.1, "version": 3, "nopreempt": true, "virtual_ipaddress": ["10.0.0.100"]
        }))
        .unwrap();
        let p = instance_params(&inst, ME).unwrap();
        assert_eq!((p.version, p.vrid, p.priority, p.advert_int_cs, p.preempt), (Version::V3, 51, 150, 10, false));
        let mut bad = inst.clone();
        bad.auth_pass = Some("x".to_owned());
        assert!(instance_params(&bad, ME).is_err(), "PASS needs v2");
        let mut bad = inst.clone();
        bad.version = 2;
        bad.auth_pass = Some("123456789".to_owned());
        assert!(instance_params(&bad, ME).is_err(), "password too long");
        let mut bad = inst;
        bad.virtual_router_id = 0;
        assert!(instance_params(&bad, ME).is_err());
    }
}
