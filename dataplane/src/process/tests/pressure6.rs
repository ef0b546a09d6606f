//! SYN-flood defences for IPv6 clients: the IPv6 table's fill starts
//! pressure, a full IPv6 table makes room by evicting SYN_RECV entries
//! (`drop_entry`), new SYN_RECV entries get the short timeout under pressure,
//! and new connections are bounded per source prefix of `prefix_len_ipv6`
//! bits.

use super::ipv6::{processor6, run, snapshot6, tcp6, CLIENT6, DR6};
use super::*;
use crate::snapshot::SynFlood;

/// [`processor6`] (an IPv6 table of 1024 entries) with these settings.
fn processor(syn_flood: SynFlood) -> Processor<VecFrame> {
    let mut p = processor6(1500);
    let mut s = (*snapshot6(1500)).clone();
    s.syn_flood = syn_flood;
    s.generation = 2;
    p.adopt(Arc::new(s.finish()));
    p
}

/// A SYN to the IPv6 DR service from `client`:`port`; true when forwarded.
fn syn(p: &mut Processor<VecFrame>, client: std::net::Ipv6Addr, port: u16) -> bool {
    !run(p, &tcp6(CLIENT_MAC, (client, port), (DR6, 80), true, false, b"")).tx.is_empty()
}

#[test]
fn the_ipv6_tables_fill_starts_pressure_and_a_full_one_evicts_syn_recv_entries() {
    let flood = SynFlood { pressure_syn_recv_percent: 100, new_conns_per_prefix_per_sec: 0, ..SynFlood::default() };
    let mut p = processor(flood);
    for port in 0..511 {
        assert!(syn(&mut p, CLIENT6, 10_000 + port));
    }
    assert!(!p.under_pressure(), "511 of 1024 IPv6 entries: below 50 %");
    assert_eq!(p.counters().get(Counter::ConnSynRecvShortened), 0);
    assert!(syn(&mut p, CLIENT6, 10_511));
    assert!(syn(&mut p, CLIENT6, 10_512));
    assert!(p.under_pressure(), "half the IPv6 table");
    assert_eq!(p.counters().get(Counter::ConnSynRecvShortened), 1, "the SYN_RECV entry made under pressure gets the short timeout");
    // Beyond the table: SYN_RECV entries make room for the newcomers.
    let forwarded = (0..600).filter(|i| syn(&mut p, CLIENT6, 20_000 + i)).count();
    assert_eq!(forwarded, 600, "every SYN finds room");
    assert!(p.counters().get(Counter::ConnEvictedSynRecv) >= 600 - 511, "{}", p.counters().get(Counter::ConnEvictedSynRecv));
    assert_eq!(p.counters().get(Counter::DropConnTableFull), 0);
}

#[test]
fn under_pressure_an_ipv6_prefix_gets_its_rate() {
    // Pressure from 11 entries on (1 % of 1024), 100 new connections a second per /64.
    let flood = SynFlood { pressure_table_percent: 1, new_conns_per_prefix_per_sec: 100, prefix_len_ipv6: 64, ..SynFlood::default() };
    let mut p = processor(flood);
    let forwarded = (0..300).filter(|i| syn(&mut p, CLIENT6, 30_000 + i)).count();
    assert_eq!(forwarded, 11 + 100, "11 before pressure, then a burst of one second's worth");
    assert_eq!(p.counters().get(Counter::DropNewConnRate), 300 - 111);
    // Another host of the same /64 shares the bucket.
    let neighbour = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x77);
    assert!(!syn(&mut p, neighbour, 40_000));
}
