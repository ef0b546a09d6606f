//! What the packet-path tests with real or stand-in NIC frames share: a
//! one-port director with a NAT service. Included by `rx_checksum.rs` here and
//! by rvs-dpdk's EAL-based tests (`#[path]`), which run the same director on
//! DPDK ports.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rvs_dataplane::snapshot::{
    ForwardMode, InterfaceAddr, PortInfo, Protocol, RealServer, Route, SchedulerKind, Service, ServiceKey, Snapshot,
};
use rvs_dataplane::wire::MacAddr;

/// The client's MAC.
pub const CLIENT_MAC: MacAddr = MacAddr([0x02, 0xc0, 0, 0, 0, 2]);
/// The real server's MAC.
pub const RS_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 0x11]);
/// The NAT service's VIP (TCP port 80).
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
/// The client, on the director's 10.0.0.0/24.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The only real server (port 8080), on the director's 10.1.0.0/24.
pub const RS: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
/// The director's address on the real servers' network.
pub const DIRECTOR_RS_SIDE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

/// A NAT service VIP:80 → RS:8080 on a director with one port, `name` with `mac`,
/// holding 10.0.0.1/24 and 10.1.0.1/24.
pub fn nat_snapshot(name: &str, mac: MacAddr) -> Arc<Snapshot> {
    Arc::new(
        Snapshot {
            generation: 1,
            ports: vec![PortInfo::new(name, mac)],
            addresses: vec![
                InterfaceAddr { port: 0, addr: Ipv4Addr::new(10, 0, 0, 1), prefix_len: 24 },
                InterfaceAddr { port: 0, addr: DIRECTOR_RS_SIDE, prefix_len: 24 },
            ],
            routes: vec![
                Route { prefix: Ipv4Addr::new(10, 0, 0, 0), prefix_len: 24, via: None, port: 0 },
                Route { prefix: Ipv4Addr::new(10, 1, 0, 0), prefix_len: 24, via: None, port: 0 },
            ],
            services: vec![Service::new(
                ServiceKey { protocol: Protocol::Tcp, vip: VIP.into(), port: 80 },
                SchedulerKind::Rr,
                vec![RealServer::new(RS, 8080, 1, ForwardMode::Nat)],
            )],
            ..Default::default()
        }
        .finish(),
    )
}
