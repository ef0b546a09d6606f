//! Listings a bounded step at a time: every window of every page, across step
//! boundaries, equals the same window of the whole listing; no step looks past
//! its budget; templates come with the last step.

use std::collections::{HashMap as StdHashMap, HashSet};
use std::sync::Arc;

use super::*;
use crate::frame::VecFrame;
use crate::snapshot::{PortInfo, RealServer, SchedulerKind, Service};
use crate::wire::MacAddr;

const DR_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const NAT_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
const RS1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
const RS2: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 12);

fn key(protocol: Protocol, vip: Ipv4Addr, port: u16) -> ServiceKey {
    ServiceKey { protocol, vip: vip.into(), port }
}

/// A DR TCP service, a NAT TCP service and a NAT UDP service, each over RS1 and RS2.
fn snapshot() -> Arc<Snapshot> {
    let reals = |port, forward| vec![RealServer::new(RS1, port, 1, forward), RealServer::new(RS2, port, 1, forward)];
    Arc::new(
        Snapshot {
            generation: 1,
            ports: vec![PortInfo::new("lan0", MacAddr([0x02, 0xd0, 0, 0, 0, 0x01]))],
            services: vec![
                Service::new(key(Protocol::Tcp, DR_VIP, 80), SchedulerKind::Rr, reals(80, ForwardMode::Dr)),
                Service::new(key(Protocol::Tcp, NAT_VIP, 80), SchedulerKind::Rr, reals(8080, ForwardMode::Nat)),
                Service::new(key(Protocol::Udp, NAT_VIP, 53), SchedulerKind::Rr, reals(5353, ForwardMode::Nat)),
            ],
            ..Default::default()
        }
        .finish(),
    )
}

/// What connection `i` of a generated table is: its service, real server and
/// state follow `i`, its client address is unique.
fn entry(i: u32) -> ConnInfo {
    let (protocol, vip, rport, forward) = match i % 3 {
        0 => (Protocol::Tcp, SocketAddrV4::new(DR_VIP, 80), 80, ForwardMode::Dr),
        1 => (Protocol::Tcp, SocketAddrV4::new(NAT_VIP, 80), 8080, ForwardMode::Nat),
        _ => (Protocol::Udp, SocketAddrV4::new(NAT_VIP, 53), 5353, ForwardMode::Nat),
    };
    let state = if protocol == Protocol::Udp { "UDP" } else { ["ESTABLISHED", "SYN_RECV", "FIN_WAIT", "TIME_WAIT"][(i / 3 % 4) as usize] };
    ConnInfo {
        worker: 0,
        protocol,
        client: SocketAddrV4::new(Ipv4Addr::from(0x0a02_0000 + i), 40_000 + (i % 7) as u16).into(),
        vip: vip.into(),
        real: SocketAddrV4::new(if i.is_multiple_of(2) { RS1 } else { RS2 }, rport).into(),
        local: None,
        forward,
        state: state.into(),
        expires_ms: 0,
        template: false,
        seq_delta: 0,
        syn_proxy: None,
    }
}

/// A processor holding connections `0..n` (installed as the sync master's
/// would be) in a table of `capacity`.
fn processor(n: u32, capacity: usize) -> Processor<VecFrame> {
    let mut p = Processor::for_worker(snapshot(), capacity, 0, 1);
    let mut out = Output::with_capacity(8);
    for i in 0..n {
        assert!(p.install(&entry(i), 0, &mut out), "connection {i} installed");
        out.messages.clear();
    }
    assert_eq!(p.conns().len(), n as usize);
    p
}

/// Connections `0..600` with holes: the SYN_RECV ones (60 s) expire while the
/// others (FIN_WAIT 120 s, TIME_WAIT 120 s, UDP 300 s, ESTABLISHED 900 s) stay;
/// plus persistence templates for some client networks of the DR service.
fn holed_processor() -> Processor<VecFrame> {
    let mut p = processor(600, 1024);
    let syn_recv = (0..600).filter(|&i| entry(i).state == "SYN_RECV").count();
    assert!(syn_recv > 0);
    let mut out = Output::with_capacity(8);
    for _ in 0..1000 {
        if p.conns().len() == 600 - syn_recv {
            break;
        }
        p.tick(61_000, &mut out);
    }
    assert_eq!(p.conns().len(), 600 - syn_recv, "the SYN_RECV connections expired");
    assert!(p.conns().slot_count() >= 590, "holes all over the table, not only at its end");
    let persistence = Persistence { timeout_s: 300, prefix_len: 24 };
    let dr: Vec<Conn> = p.conns().iter().map(|(_, c)| *c).filter(|c| c.forward == ForwardMode::Dr).collect();
    for c in dr.iter().step_by(40) {
        p.template_use(c, persistence, 61_000);
    }
    assert!(p.templates() >= 2, "templates of several client networks");
    p
}

/// The whole listing, built the direct way: every live slot in order, then the templates.
fn everything(p: &Processor<VecFrame>, filter: &ConnFilter, now: u64) -> Vec<ConnInfo> {
    let mut all: Vec<ConnInfo> = p.conns().iter().map(|(_, c)| p.conn_info(c, now)).filter(|c| filter.matches(c)).collect();
    if filter.templates {
        let templates = p.templates.iter().map(|((k, net), t)| p.template_info(k, *net, t, now));
        all.extend(templates.filter(|c| filter.matches(c)));
    }
    all
}

/// Where each connection sits in the table, by client and virtual address.
fn slots_of(p: &Processor<VecFrame>) -> StdHashMap<(std::net::SocketAddr, std::net::SocketAddr), usize> {
    p.conns().iter().map(|(id, c)| ((c.client.into(), c.vip.into()), id as usize)).collect()
}

/// One page, step by step as rvsd asks for it, each step checked: it looks
/// at no slot past its budget (every entry it returns sits in its slot range),
/// returns no more than wanted, and only the last one has templates.
/// Returns the page, the total and the number of steps.
fn paged(p: &Processor<VecFrame>, filter: &ConnFilter, offset: usize, limit: usize, budget: usize) -> (Vec<ConnInfo>, usize, usize) {
    let slots = slots_of(p);
    let slot_count = p.listing_slots();
    let mut pager = ConnPager::new(offset, limit);
    let mut cursor = Some(0);
    let mut steps = 0;
    while let Some(at) = cursor {
        let scan = pager.scan(at, budget);
        let chunk = p.scan_connections(filter, scan, 5_000);
        let end = at + budget.max(1);
        match chunk.next {
            Some(next) => assert_eq!(next, end, "the next step starts where this one's budget ended"),
            None => assert!(end >= slot_count, "done only at the end of the table"),
        }
        assert!(chunk.conns.len() <= scan.want, "no more entries than wanted");
        assert!(chunk.conns.len() <= chunk.matched);
        for c in &chunk.conns {
            if c.template {
                assert!(chunk.next.is_none(), "templates come with the last step");
            } else {
                let slot = slots[&(c.client, c.vip)];
                assert!((at..end).contains(&slot), "slot {slot} outside this step's {at}..{end}");
            }
        }
        let templates = if chunk.next.is_none() { p.templates() } else { 0 };
        assert!(chunk.matched <= budget.max(1) + templates, "counted more than it may have looked at");
        cursor = pager.add(chunk);
        steps += 1;
    }
    let (page, total) = pager.finish();
    (page, total, steps)
}

#[test]
fn every_window_of_a_stepped_listing_equals_the_same_window_of_the_whole() {
    let p = holed_processor();
    let filters = [
        ConnFilter::default(),
        ConnFilter { templates: true, ..Default::default() },
        ConnFilter { service: Some(key(Protocol::Tcp, DR_VIP, 80)), templates: true, ..Default::default() },
        ConnFilter { state: Some("established".into()), ..Default::default() },
        ConnFilter { real: Some(RS2.into()), templates: true, ..Default::default() },
        ConnFilter { client: Some(Ipv4Addr::from(0x0a02_0000 + 30).into()), ..Default::default() },
        ConnFilter { state: Some("NONE".into()), templates: true, ..Default::default() },
        ConnFilter { state: Some("NO_SUCH_STATE".into()), templates: true, ..Default::default() },
    ];
    for filter in &filters {
        let all = everything(&p, filter, 5_000);
        assert_eq!(p.connections(filter, 5_000), all, "{filter:?}: connections() is the whole listing");
        let n = all.len();
        for budget in [1, 3, 64, 100, 1000] {
            for (offset, limit) in
                [(0, usize::MAX), (0, 1), (1, 2), (63, 3), (64, 64), (99, 5), (250, 100), (n.saturating_sub(1), 10), (n, 10), (n + 5, 1)]
            {
                let (page, total, steps) = paged(&p, filter, offset, limit, budget);
                assert_eq!(total, n, "{filter:?} budget {budget}: the total");
                let want: Vec<ConnInfo> = all.iter().skip(offset).take(limit).cloned().collect();
                assert_eq!(page, want, "{filter:?} budget {budget} window {offset}+{limit}");
                assert_eq!(steps, p.listing_slots().div_ceil(budget).max(1), "one step per budget of slots");
            }
        }
    }
}

#[test]
fn filters_count_what_the_table_holds() {
    let p = holed_processor();
    let count = |filter: ConnFilter| paged(&p, &filter, 0, 0, 64).1;
    let live: Vec<ConnInfo> = (0..600).map(entry).filter(|e| e.state != "SYN_RECV").collect();
    let templates = p.templates();
    assert_eq!(count(ConnFilter::default()), live.len());
    assert_eq!(count(ConnFilter { templates: true, ..Default::default() }), live.len() + templates);
    assert_eq!(
        count(ConnFilter { state: Some("Established".into()), ..Default::default() }),
        live.iter().filter(|e| e.state == "ESTABLISHED").count()
    );
    assert_eq!(count(ConnFilter { state: Some("UDP".into()), ..Default::default() }), 200);
    assert_eq!(count(ConnFilter { state: Some("NONE".into()), templates: true, ..Default::default() }), templates);
    assert_eq!(count(ConnFilter { service: Some(key(Protocol::Udp, NAT_VIP, 53)), ..Default::default() }), 200);
    assert_eq!(count(ConnFilter { service: Some(key(Protocol::Tcp, NAT_VIP, 53)), ..Default::default() }), 0, "protocol counts");
    assert_eq!(count(ConnFilter { real: Some(RS1.into()), ..Default::default() }), live.iter().filter(|e| e.real.ip() == RS1).count());
    assert_eq!(
        count(ConnFilter { client: Some(Ipv4Addr::from(0x0a02_0000 + 6).into()), ..Default::default() }),
        1,
        "FIN_WAIT: still there"
    );
    assert_eq!(count(ConnFilter { client: Some(Ipv4Addr::from(0x0a02_0000 + 3).into()), ..Default::default() }), 0, "SYN_RECV: expired");
    // A template's client is its network: the masked address, port 0.
    let listed = paged(&p, &ConnFilter { templates: true, state: Some("NONE".into()), ..Default::default() }, 0, usize::MAX, 64).0;
    assert_eq!(listed.len(), templates);
    for t in &listed {
        assert!(
            t.template
                && t.client.port() == 0
                && matches!(t.client.ip(), IpAddr::V4(a) if a.octets()[3] == 0)
                && t.forward == ForwardMode::Dr
        );
        assert_eq!(t.state, "NONE");
        assert_eq!(t.expires_ms, 61_000 + 300_000 - 5_000);
    }
}

#[test]
fn states_are_borrowed_not_allocated() {
    let p = processor(30, 64);
    for c in p.connections(&ConnFilter::default(), 0) {
        assert!(matches!(c.state, Cow::Borrowed(_)), "{c:?}");
        assert_eq!(c.state, entry(0x0a02_0000 ^ crate::sched::addr_fold(c.client.ip())).state);
    }
}

#[test]
fn a_scan_past_the_end_or_on_an_empty_table_is_the_last_step() {
    let empty = processor(0, 16);
    let scan = ConnScan { cursor: 0, budget: 10, skip: 0, want: 10 };
    // The table's slots exist up front (free ones): an empty table is walked
    // to its end in capacity / budget steps, finding nothing.
    let mut steps = Vec::new();
    let mut cursor = Some(0);
    while let Some(at) = cursor {
        let chunk = empty.scan_connections(&ConnFilter::default(), ConnScan { cursor: at, ..scan }, 0);
        assert!(chunk.next.is_none_or(|n| n > at), "the cursor moves on");
        steps.push((chunk.matched, chunk.conns.len()));
        cursor = chunk.next;
        assert!(steps.len() <= empty.listing_slots().div_ceil(10) + 1, "an empty table's walk ends");
    }
    assert!(steps.iter().all(|&s| s == (0, 0)));
    let p = processor(10, 16);
    let past = p.scan_connections(&ConnFilter::default(), ConnScan { cursor: 1_000_000, ..scan }, 0);
    assert_eq!((past.matched, past.next), (0, None));
    // A budget of 0 still moves on by one slot, so a listing always ends.
    let zero = p.scan_connections(&ConnFilter::default(), ConnScan { budget: 0, ..scan }, 0);
    assert_eq!((zero.matched, zero.next), (1, Some(1)));
}

/// 200k connections in chunks of CONN_SCAN_SLOTS: no step returns a
/// connection outside its slots, and the steps together list the table,
/// each connection exactly once.
#[test]
fn two_hundred_thousand_connections_in_bounded_steps() {
    const N: u32 = 200_000;
    let p = processor(N, N as usize);
    let filter = ConnFilter::default();
    let slots = slots_of(&p);
    let mut seen: HashSet<(std::net::SocketAddr, std::net::SocketAddr)> = HashSet::with_capacity(N as usize);
    let (mut cursor, mut steps, mut total) = (Some(0), 0, 0);
    while let Some(at) = cursor {
        let chunk = p.scan_connections(&filter, ConnScan { cursor: at, budget: CONN_SCAN_SLOTS, skip: 0, want: usize::MAX }, 0);
        assert_eq!(chunk.conns.len(), chunk.matched);
        assert!(chunk.matched <= CONN_SCAN_SLOTS);
        for c in &chunk.conns {
            let slot = slots[&(c.client, c.vip)];
            assert!((at..at + CONN_SCAN_SLOTS).contains(&slot), "slot {slot} outside step {at}");
            assert!(seen.insert((c.client, c.vip)), "{c:?} listed twice");
        }
        total += chunk.matched;
        steps += 1;
        cursor = chunk.next;
    }
    assert_eq!(steps, (N as usize).div_ceil(CONN_SCAN_SLOTS));
    assert_eq!(total, N as usize);
    let table: HashSet<(std::net::SocketAddr, std::net::SocketAddr)> =
        p.conns().iter().map(|(_, c)| (c.client.into(), c.vip.into())).collect();
    assert_eq!(seen, table, "the steps together list the table");
    // A page deep inside, across a step boundary, with the exact total.
    let (page, total, _) = paged(&p, &filter, CONN_SCAN_SLOTS - 50, 100, CONN_SCAN_SLOTS);
    assert_eq!(total, N as usize);
    let want: Vec<ConnInfo> =
        (CONN_SCAN_SLOTS as u32 - 50..CONN_SCAN_SLOTS as u32 + 50).map(|i| p.conn_info(p.conns().get(i).expect("slot"), 5_000)).collect();
    assert_eq!(page, want);
}
