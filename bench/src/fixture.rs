//! Processor fixtures shared by the criterion bench and `rvs-conn-mem`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rvs_dataplane::snapshot::{
    ForwardMode, InterfaceAddr, PortInfo, Protocol, RealServer, Route, SchedulerKind, Service, ServiceKey, Snapshot, SynFlood, Timeouts,
};
use rvs_dataplane::wire::builder::arp_frame;
use rvs_dataplane::wire::{arp, MacAddr};

use crate::plan::{self, ModeSpec};

/// The director of the plan (one port, both networks, default route via the
/// gateway) with one TCP service in `mode`, round robin over [`plan::REALS`].
///
/// Established connections never expire (`tcp` ≈ 68 years); SYN_RECV entries
/// expire after 1 s of the caller's clock, so a benchmark can sweep them. SYN-flood
/// pressure never starts (the benchmarks measure the normal path).
pub fn snapshot(mode: &ModeSpec) -> Arc<Snapshot> {
    let reals = plan::REALS.iter().map(|(addr, _)| RealServer::new(*addr, mode.real_port, 1, mode.forward)).collect();
    let mut service =
        Service::new(ServiceKey { protocol: Protocol::Tcp, vip: mode.vip.into(), port: mode.vport }, SchedulerKind::Rr, reals);
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
            timeouts: Timeouts { tcp: u32::MAX / 2, tcp_syn: 1, ..Timeouts::default() },
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
