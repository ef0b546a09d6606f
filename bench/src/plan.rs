//! The addressing plan of every benchmark.
//!
//! One director port carries two connected networks: clients and VIPs on
//! 10.0.0.0/24, real servers on 10.1.0.0/24 (a one-armed director, as in the lab
//! and the memif runs). Clients are not on a connected network: their packets
//! arrive from anywhere, and DR/NAT inbound traffic never needs their MAC.
//!
//! Adding a forwarding mode to every benchmark is one line in [`MODES`].

use std::net::{Ipv4Addr, Ipv6Addr};

use rvs_dataplane::snapshot::ForwardMode;
use rvs_dataplane::wire::MacAddr;

/// One forwarding mode as the benchmarks exercise it: a TCP (and UDP) service on
/// its own VIP with the two real servers of [`REALS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeSpec {
    /// Short name used in benchmark ids, CLI flags and reports.
    pub name: &'static str,
    /// The forwarding mode of the service's real servers.
    pub forward: ForwardMode,
    /// The service's VIP.
    pub vip: Ipv4Addr,
    /// The service's port.
    pub vport: u16,
    /// The real servers' port (equal to `vport` where the mode cannot change it).
    pub real_port: u16,
}

/// Every mode the benchmarks cover. Add a mode here and the criterion bench, the
/// generator's `--mode` and `deploy/bench.sh` pick it up.
pub const MODES: &[ModeSpec] = &[
    ModeSpec { name: "dr", forward: ForwardMode::Dr, vip: Ipv4Addr::new(10, 0, 0, 100), vport: 80, real_port: 80 },
    ModeSpec { name: "nat", forward: ForwardMode::Nat, vip: Ipv4Addr::new(10, 0, 0, 101), vport: 80, real_port: 8080 },
    ModeSpec { name: "tun", forward: ForwardMode::Tun, vip: Ipv4Addr::new(10, 0, 0, 102), vport: 80, real_port: 80 },
    ModeSpec { name: "fullnat", forward: ForwardMode::FullNat, vip: Ipv4Addr::new(10, 0, 0, 103), vport: 80, real_port: 8080 },
];

/// The mode called `name`.
pub fn mode(name: &str) -> Option<&'static ModeSpec> {
    MODES.iter().find(|m| m.name == name)
}

/// The director's address on the client/VIP network (prefix /24).
pub const DIRECTOR_OUT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The director's address on the real-server network (prefix /24).
pub const DIRECTOR_IN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
/// Prefix length of both connected networks.
pub const PREFIX_LEN: u8 = 24;
/// Default gateway (towards clients; used by modes whose replies come back).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
/// MAC of the gateway (the generator answers ARP for it).
pub const GATEWAY_MAC: MacAddr = MacAddr([0x02, 0xee, 0, 0, 0, 0xfe]);

/// The director port's MAC in the criterion bench (in memif runs it is learned by ARP).
pub const DIRECTOR_MAC: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 0x01]);
/// Source MAC of client frames (the gateway's, as on a one-armed director).
pub const CLIENT_MAC: MacAddr = GATEWAY_MAC;

/// The real servers: address and the MAC the generator pretends to have for it.
pub const REALS: [(Ipv4Addr, MacAddr); 2] = [
    (Ipv4Addr::new(10, 1, 0, 11), MacAddr([0x02, 0xaa, 0, 0, 0, 0x11])),
    (Ipv4Addr::new(10, 1, 0, 12), MacAddr([0x02, 0xaa, 0, 0, 0, 0x12])),
];

/// The MAC the generator answers for `ip`, if it simulates that host.
pub fn simulated_mac(ip: Ipv4Addr) -> Option<MacAddr> {
    if ip == GATEWAY {
        return Some(GATEWAY_MAC);
    }
    REALS.iter().find(|(a, _)| *a == ip).map(|(_, m)| *m)
}

/// FULLNAT local addresses (sources towards the real servers): 10.1.0.100 to
/// 10.1.0.199, 100 addresses, so that 4 M connections find free local ports.
pub fn local_addrs() -> Vec<Ipv4Addr> {
    (100..200).map(|h| Ipv4Addr::new(10, 1, 0, h)).collect()
}

/// Client source ports used per client address.
pub const PORTS_PER_CLIENT: u64 = 64_512;
/// First client source port.
pub const FIRST_CLIENT_PORT: u16 = 1024;

/// Client tuple of established flow `i`: addresses from 172.16.0.1 on, ports
/// 1024..=65535 (64,512 flows per address; 4 Mi flows use 66 addresses).
pub fn client(i: u64) -> (Ipv4Addr, u16) {
    tuple(0xac10_0001, i)
}

/// Client tuple of new connection `i` (SYN profile): from 172.24.0.1 on, never
/// overlapping [`client`] for fewer than 2^19 addresses' worth of flows.
pub fn syn_client(i: u64) -> (Ipv4Addr, u16) {
    tuple(0xac18_0001, i)
}

fn tuple(base: u32, i: u64) -> (Ipv4Addr, u16) {
    let addr = base.wrapping_add((i / PORTS_PER_CLIENT) as u32);
    let port = FIRST_CLIENT_PORT + (i % PORTS_PER_CLIENT) as u16;
    (Ipv4Addr::from(addr), port)
}

/// One IPv6 scenario of the benchmarks: a TCP service on its own IPv6 VIP.
/// Its real servers are [`REALS6`], or for NAT64 the IPv4 [`REALS`] reached
/// from an IPv4 local address of [`local_addrs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeSpec6 {
    /// Short name used in benchmark ids and reports (`ipv6-` and the mode).
    pub name: &'static str,
    /// The forwarding mode of the service's real servers.
    pub forward: ForwardMode,
    /// True when the real servers are IPv4 (NAT64 through FULLNAT).
    pub nat64: bool,
    /// The service's IPv6 VIP.
    pub vip: Ipv6Addr,
    /// The service's port.
    pub vport: u16,
    /// The real servers' port.
    pub real_port: u16,
}

/// The IPv6 address `2001:db8:NET::HOST`.
const fn v6(net: u16, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, net, 0, 0, 0, 0, host)
}

/// Every IPv6 scenario of the criterion bench: the four modes over IPv6 and
/// NAT64 (IPv6 client, IPv4 real server, IPv4 local address).
pub const MODES6: &[ModeSpec6] = &[
    ModeSpec6 { name: "ipv6-dr", forward: ForwardMode::Dr, nat64: false, vip: v6(0, 0x100), vport: 80, real_port: 80 },
    ModeSpec6 { name: "ipv6-nat", forward: ForwardMode::Nat, nat64: false, vip: v6(0, 0x101), vport: 80, real_port: 8080 },
    ModeSpec6 { name: "ipv6-tun", forward: ForwardMode::Tun, nat64: false, vip: v6(0, 0x102), vport: 80, real_port: 80 },
    ModeSpec6 { name: "ipv6-fullnat", forward: ForwardMode::FullNat, nat64: false, vip: v6(0, 0x103), vport: 80, real_port: 8080 },
    ModeSpec6 { name: "ipv6-nat64", forward: ForwardMode::FullNat, nat64: true, vip: v6(0, 0x104), vport: 80, real_port: 8080 },
];

/// The director's IPv6 address on the client/VIP network `2001:db8::/64`.
pub const DIRECTOR6_OUT: Ipv6Addr = v6(0, 1);
/// The director's IPv6 address on the real-server network `2001:db8:1::/64`.
pub const DIRECTOR6_IN: Ipv6Addr = v6(1, 1);
/// Prefix length of both connected IPv6 networks.
pub const PREFIX_LEN6: u8 = 64;
/// The IPv6 default gateway (towards clients), at [`GATEWAY_MAC`].
pub const GATEWAY6: Ipv6Addr = v6(0, 0xfe);

/// The IPv6 real servers, at the MACs of the IPv4 ones (dual-stack hosts).
pub const REALS6: [(Ipv6Addr, MacAddr); 2] = [(v6(1, 0x11), REALS[0].1), (v6(1, 0x12), REALS[1].1)];

/// FULLNAT IPv6 local addresses: `2001:db8:1::100` to `2001:db8:1::163`, 100
/// addresses as for IPv4.
pub fn local_addrs6() -> Vec<Ipv6Addr> {
    (0x100..0x164).map(|h| v6(1, h)).collect()
}

/// IPv6 client tuple of established flow `i`: addresses `2001:db8:c::1` on
/// (one per [`PORTS_PER_CLIENT`] flows), ports as [`client`].
pub fn client6(i: u64) -> (Ipv6Addr, u16) {
    tuple6(0xc, i)
}

/// IPv6 client tuple of new connection `i` (SYN profile): from `2001:db8:d::1`
/// on, never overlapping [`client6`].
pub fn syn_client6(i: u64) -> (Ipv6Addr, u16) {
    tuple6(0xd, i)
}

fn tuple6(net: u16, i: u64) -> (Ipv6Addr, u16) {
    let host = 1 + i / PORTS_PER_CLIENT;
    let addr = v6(net, 0).to_bits() | u128::from(host);
    let port = FIRST_CLIENT_PORT + (i % PORTS_PER_CLIENT) as u16;
    (Ipv6Addr::from_bits(addr), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_have_distinct_names_and_vips() {
        for (i, a) in MODES.iter().enumerate() {
            for b in &MODES[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.vip, b.vip);
            }
        }
        assert_eq!(mode("dr").map(|m| m.forward), Some(ForwardMode::Dr));
    }

    #[test]
    fn client_tuples_are_distinct_and_disjoint() {
        assert_eq!(client(0), (Ipv4Addr::new(172, 16, 0, 1), 1024));
        assert_eq!(client(PORTS_PER_CLIENT - 1), (Ipv4Addr::new(172, 16, 0, 1), 65535));
        assert_eq!(client(PORTS_PER_CLIENT), (Ipv4Addr::new(172, 16, 0, 2), 1024));
        assert_eq!(syn_client(0).0, Ipv4Addr::new(172, 24, 0, 1));
        let last_established = client(1 << 32).0;
        assert!(last_established < syn_client(0).0);
    }

    #[test]
    fn ipv6_modes_and_client_tuples() {
        for (i, a) in MODES6.iter().enumerate() {
            assert!(a.name.starts_with("ipv6-"));
            for b in &MODES6[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.vip, b.vip);
            }
        }
        assert_eq!(client6(0), (v6(0xc, 1), 1024));
        assert_eq!(client6(PORTS_PER_CLIENT - 1), (v6(0xc, 1), 65535));
        assert_eq!(client6(PORTS_PER_CLIENT), (v6(0xc, 2), 1024));
        assert_eq!(syn_client6(0), (v6(0xd, 1), 1024));
        assert_eq!(client6(0).0.to_string(), "2001:db8:c::1");
        assert_eq!(local_addrs6().len(), 100);
    }
}
