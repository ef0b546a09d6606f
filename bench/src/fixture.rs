//! Processor fixtures shared by the criterion bench and `rvs-conn-mem`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rvs_dataplane::snapshot::{
    ForwardMode, InterfaceAddr, InterfaceAddr6, PortInfo, Protocol, RealServer, Route, Route6, SchedulerKind, Service, ServiceKey,
    Snapshot, SynFlood, Timeouts,
};
use rvs_dataplane::wire::builder::arp_frame;
use rvs_dataplane::wire::{arp, nd, MacAddr};

use crate::plan::{self, ModeSpec, ModeSpec6};

/// The director of the plan (one port, both networks, default route via the
/// gateway) with one TCP service in `mode`, round robin over [`plan::REALS`].
///
/// Established connections never expire (`tcp` ≈ 68 years); SYN_RECV entries
/// expire after 1 s of the caller's clock, so a benchmark can sweep them. SYN-flood
/// pressure never starts (the benchmarks measure the normal path).
pub fn snapshot(mode: &ModeSpec) -> Arc<Snapshot> {
    snapshot_for(mode, Protocol::Tcp)
}

/// [`snapshot`] with the service on `protocol` instead of TCP (UDP flows
/// never expire either: `udp` is as long as `tcp`).
pub fn snapshot_for(mode: &ModeSpec, protocol: Protocol) -> Arc<Snapshot> {
    let reals = plan::REALS.iter().map(|(addr, _)| RealServer::new(*addr, mode.real_port, 1, mode.forward)).collect();
    let mut service = Service::new(ServiceKey { protocol, vip: mode.vip.into(), port: mode.vport }, SchedulerKind::Rr, reals);
    if mode.forward == ForwardMode::FullNat {
        service.local_addrs = plan::local_addrs();
    }
    Arc::new(
        Snapshot {
            generation: 1,
            ports: vec![PortInfo::new("lan0", plan::DIRECTOR_MAC)],
            addresses: vec![
                InterfaceAddr { port: 0, addr: plan::DIRECTOR_OUT, prefix_len: plan::PREFIX_LEN },
                InterfaceAddr { port: 0, addr: plan::DIRECTOR_IN, prefix_len: plan::PREFIX_LEN },
            ],
            routes: vec![
                Route { prefix: Ipv4Addr::new(10, 0, 0, 0), prefix_len: plan::PREFIX_LEN, via: None, port: 0 },
                Route { prefix: Ipv4Addr::new(10, 1, 0, 0), prefix_len: plan::PREFIX_LEN, via: None, port: 0 },
                Route { prefix: Ipv4Addr::UNSPECIFIED, prefix_len: 0, via: Some(plan::GATEWAY), port: 0 },
            ],
            services: vec![service],
            timeouts: Timeouts { tcp: u32::MAX / 2, udp: u32::MAX / 2, tcp_syn: 1, ..Timeouts::default() },
            // The table is kept over half full: with the default thresholds
            // the worker would be under SYN-flood pressure and the rate bound
            // would drop the new connections, which all come from one /24.
            syn_flood: SynFlood { pressure_table_percent: 0, pressure_syn_recv_percent: 0, ..SynFlood::default() },
            ..Default::default()
        }
        .finish(),
    )
}

/// ARP replies from every host the benchmarks simulate (real servers, gateway)
/// to the director at `director_mac`: feeding them to a processor resolves
/// every next hop.
pub fn neighbour_replies(director_mac: MacAddr) -> Vec<Vec<u8>> {
    plan::REALS
        .iter()
        .copied()
        .chain([(plan::GATEWAY, plan::GATEWAY_MAC)])
        .map(|(ip, mac)| {
            let target = if ip.octets()[1] == 0 { plan::DIRECTOR_OUT } else { plan::DIRECTOR_IN };
            arp_frame(mac, director_mac, arp::op::REPLY, mac, ip, director_mac, target)
        })
        .collect()
}

/// The director of [`snapshot`] (both IPv4 networks, no IPv4 service) with
/// the IPv6 plan beside it (`2001:db8::/64` for clients and VIPs,
/// `2001:db8:1::/64` for real servers, default route via [`plan::GATEWAY6`])
/// and one IPv6 TCP service in `mode`, round robin over [`plan::REALS6`] (for
/// NAT64: over the IPv4 [`plan::REALS`], from the IPv4 local addresses of
/// [`plan::local_addrs`]). Timeouts and SYN-flood settings as [`snapshot`].
pub fn snapshot6(mode: &ModeSpec6) -> Arc<Snapshot> {
    let reals = if mode.nat64 {
        plan::REALS.iter().map(|(addr, _)| RealServer::new(*addr, mode.real_port, 1, mode.forward)).collect()
    } else {
        plan::REALS6.iter().map(|(addr, _)| RealServer::new(*addr, mode.real_port, 1, mode.forward)).collect()
    };
    let mut service =
        Service::new(ServiceKey { protocol: Protocol::Tcp, vip: mode.vip.into(), port: mode.vport }, SchedulerKind::Rr, reals);
    if mode.nat64 {
        service.local_addrs = plan::local_addrs();
    } else if mode.forward == ForwardMode::FullNat {
        service.local_addrs6 = plan::local_addrs6();
    }
    let net = |n: u16| Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 0);
    let mut s = (*snapshot(&plan::MODES[0])).clone();
    s.services = vec![service];
    s.addresses6 = vec![
        InterfaceAddr6 { port: 0, addr: plan::DIRECTOR6_OUT, prefix_len: plan::PREFIX_LEN6 },
        InterfaceAddr6 { port: 0, addr: plan::DIRECTOR6_IN, prefix_len: plan::PREFIX_LEN6 },
    ];
    s.routes6 = vec![
        Route6 { prefix: net(0), prefix_len: plan::PREFIX_LEN6, via: None, port: 0 },
        Route6 { prefix: net(1), prefix_len: plan::PREFIX_LEN6, via: None, port: 0 },
        Route6 { prefix: Ipv6Addr::UNSPECIFIED, prefix_len: 0, via: Some(plan::GATEWAY6), port: 0 },
    ];
    Arc::new(s.finish())
}

/// Neighbour discovery from every IPv6 host the benchmarks simulate (IPv6
/// real servers, the IPv6 gateway) to the director at `director_mac`: each
/// solicits the director's address on its network, then sends a solicited,
/// overriding advertisement of its own (an unsolicited advertisement
/// creates no entry, RFC 4861 7.2.5). Feeding them to a processor resolves
/// every IPv6 next hop; the director's advertisements it answers with are
/// to be discarded.
pub fn neighbour_frames6(director_mac: MacAddr) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for (ip, mac) in plan::REALS6.iter().copied().chain([(plan::GATEWAY6, plan::GATEWAY_MAC)]) {
        let director = if ip.segments()[2] == 0 { plan::DIRECTOR6_OUT } else { plan::DIRECTOR6_IN };
        let mut ns = vec![0u8; nd::MAX_FRAME_LEN];
        let mut na = vec![0u8; nd::MAX_FRAME_LEN];
        // Both fit: MAX_FRAME_LEN is the longest either writes.
        let ns_len = nd::fill_ns(&mut ns, mac, None, ip, director).unwrap_or(0);
        let flags = nd::na_flag::SOLICITED | nd::na_flag::OVERRIDE;
        let na_len = nd::fill_na(&mut na, mac, director_mac, None, ip, director, ip, flags).unwrap_or(0);
        ns.truncate(ns_len);
        na.truncate(na_len);
        frames.push(ns);
        frames.push(na);
    }
    frames
}
