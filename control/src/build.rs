//! Turns a validated [`Config`] into the immutable [`Snapshot`] the workers forward by.

use rvs_dataplane::frag::FragLimits;
use std::net::IpAddr;

use rvs_dataplane::snapshot::{self, InterfaceAddr, InterfaceAddr6, Persistence, PortInfo, RealServer, Route, Route6, Service, Snapshot};
use rvs_dataplane::wire::MacAddr;

use crate::config::{Config, ConfigError};

/// Builds the snapshot for `config`.
///
/// * Port index = position in `config.ports`; `port_macs[i]` is the MAC of port `i`
///   (as the DPDK side reports it), so the two lists must have the same length.
/// * Every interface address becomes an [`InterfaceAddr`] and a connected [`Route`]
///   (network address, no gateway); the configured routes follow, port names
///   resolved to indices. [`Snapshot::finish`] sorts them longest prefix first.
/// * Service and real server defaults are applied (real port = service port,
///   real forwarding mode = service forwarding mode).
///
/// The config is validated first, so an invalid config never becomes a snapshot.
///
/// Real servers reach the schedulers in IPVS's list order: IPVS adds each new
/// real server at the head of its service's list (`list_add_rcu` in
/// `ip_vs_ctl.c`), so the most recently added comes first. The config keeps
/// the order the operator added them in (rvsadm and the API append;
/// keepalived adds a `virtual_server`'s reals in file order), so the snapshot
/// takes them in reverse: the same ipvsadm commands or keepalived.conf give
/// the same rr/wrr sequences, sh/mh buckets and tie breaks as the kernel.
pub fn build_snapshot(config: &Config, port_macs: &[MacAddr], generation: u64) -> Result<Snapshot, ConfigError> {
    config.validate()?;
    if port_macs.len() != config.ports.len() {
        return Err(ConfigError::invalid(
            "ports",
            format!("{} ports are configured but the dataplane reports {} MAC addresses", config.ports.len(), port_macs.len()),
        ));
    }

    let mut ports = Vec::with_capacity(config.ports.len());
    let mut addresses = Vec::new();
    let mut routes: Vec<Route> = Vec::new();
    let mut addresses6 = Vec::new();
    let mut routes6: Vec<Route6> = Vec::new();
    for (i, (port, mac)) in config.ports.iter().zip(port_macs).enumerate() {
        let index = port_index(i)?;
        ports.push(PortInfo { name: port.name.clone(), mac: *mac, mtu: port.mtu, kernel: port.tap.is_some(), vlan: port.vlan });
        for cidr in &port.addresses {
            let prefix_len = cidr.prefix_len;
            // Two addresses in one network share one connected route.
            match (cidr.addr, cidr.network()) {
                (IpAddr::V4(addr), IpAddr::V4(net)) => {
                    addresses.push(InterfaceAddr { port: index, addr, prefix_len });
                    let connected = Route { prefix: net, prefix_len, via: None, port: index };
                    if !routes.contains(&connected) {
                        routes.push(connected);
                    }
                }
                (IpAddr::V6(addr), IpAddr::V6(net)) => {
                    addresses6.push(InterfaceAddr6 { port: index, addr, prefix_len });
                    let connected = Route6 { prefix: net, prefix_len, via: None, port: index };
                    if !routes6.contains(&connected) {
                        routes6.push(connected);
                    }
                }
                // Cidr::network keeps the address's family.
                _ => return Err(ConfigError::invalid(format!("ports[{i}].addresses"), format!("{cidr}: network of another family"))),
            }
        }
    }

    for (i, route) in config.routes.iter().enumerate() {
        let index = config
            .ports
            .iter()
            .position(|p| p.name == route.port)
            .ok_or_else(|| ConfigError::invalid(format!("routes[{i}].port"), format!("no port named `{}`", route.port)))
            .and_then(port_index)?;
        let prefix_len = route.prefix.prefix_len;
        let family_error = || ConfigError::invalid(format!("routes[{i}].via"), "the gateway is not of the prefix's family");
        match route.prefix.network() {
            IpAddr::V4(prefix) => {
                let via = route.via.map(|v| snapshot::v4(v).ok_or_else(family_error)).transpose()?;
                routes.push(Route { prefix, prefix_len, via, port: index });
            }
            IpAddr::V6(prefix) => {
                let via = route.via.map(|v| snapshot::v6(v).ok_or_else(family_error)).transpose()?;
                routes6.push(Route6 { prefix, prefix_len, via, port: index });
            }
        }
    }

    let services = config
        .services
        .iter()
        .map(|s| Service {
            key: s.key(),
            scheduler: s.scheduler,
            sched_options: s.sched_options,
            persistence: s.persistence.as_ref().map(|p| Persistence { timeout_s: p.timeout, prefix_len: p.prefix_len(s.vip) }),
            local_addrs: s.local_addresses.iter().filter_map(|&a| snapshot::v4(a)).collect(),
            local_addrs6: s.local_addresses.iter().filter_map(|&a| snapshot::v6(a)).collect(),
            toa: s.toa,
            expire_quiescent: s.expire_quiescent,
            sloppy: s.sloppy,
            syn_proxy: s.syn_proxy,
            lookup_table: None, // built by Snapshot::finish
            reals: s
                .reals
                .iter()
                .rev()
                .map(|r| RealServer {
                    upper_threshold: r.upper_threshold,
                    lower_threshold: r.lower_threshold,
                    ..RealServer::new(r.address, r.port_for(s), r.weight, r.forward_for(s))
                })
                .collect(),
        })
        .collect();

    Ok(Snapshot {
        generation,
        ports,
        addresses,
        routes,
        addresses6,
        routes6,
        services,
        timeouts: config.timeouts,
        local_port_range: (config.local_port_range[0], config.local_port_range[1]),
        frag_limits: FragLimits {
            max_datagrams: config.fragments.max_datagrams as usize,
            max_fragments: config.fragments.max_fragments as usize,
            timeout_ms: u64::from(config.fragments.timeout_ms),
            // A quarter of a worker's share of the pool, whatever the counts above.
            max_held: config.mbufs as usize / 4 / config.workers.len().max(1),
        },
        // Another quarter of a worker's share for frames waiting for ARP.
        neigh_max_held: (config.mbufs as usize / 4 / config.workers.len().max(1)).max(1),
        workers: config.workers.len(),
        expire_nodest_conn: config.expire_nodest_conn,
        syn_flood: config.syn_flood,
        ..Snapshot::default()
    }
    .finish())
}

fn port_index(i: usize) -> Result<u16, ConfigError> {
    u16::try_from(i).map_err(|_| ConfigError::invalid("ports", "too many ports"))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rvs_dataplane::snapshot::{ForwardMode, Protocol, SchedulerKind, ServiceKey, Timeouts};

    use super::*;
    use crate::config::EXAMPLE;

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);

    fn example() -> Config {
        Config::from_json(EXAMPLE).expect("valid example")
    }

    #[test]
    fn builds_the_example() {
        let snap = build_snapshot(&example(), &[MAC], 7).expect("builds");
        assert_eq!(snap.generation, 7);
        assert_eq!(snap.ports, vec![PortInfo::new("lan0", MAC)]);
        assert_eq!(
            snap.addresses,
            vec![
                InterfaceAddr { port: 0, addr: Ipv4Addr::new(10, 0, 0, 1), prefix_len: 24 },
                InterfaceAddr { port: 0, addr: Ipv4Addr::new(10, 1, 0, 1), prefix_len: 24 },
            ]
        );
        // Connected networks first (longer prefixes), the default route last.
        assert_eq!(
            snap.routes,
            vec![
                Route { prefix: Ipv4Addr::new(10, 0, 0, 0), prefix_len: 24, via: None, port: 0 },
                Route { prefix: Ipv4Addr::new(10, 1, 0, 0), prefix_len: 24, via: None, port: 0 },
                Route { prefix: Ipv4Addr::UNSPECIFIED, prefix_len: 0, via: Some(Ipv4Addr::new(10, 0, 0, 254)), port: 0 },
            ]
        );
        assert_eq!(snap.timeouts, Timeouts::default());
        let key = ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port: 80 };
        let (idx, svc) = snap.service(&key).expect("service indexed");
        assert_eq!(idx, 0);
        assert_eq!(svc.scheduler, SchedulerKind::Rr);
        // The config adds 10.1.0.11 then 10.1.0.12: IPVS's list (and the snapshot) has the newest first.
        assert_eq!(
            svc.reals,
            vec![
                RealServer::new(Ipv4Addr::new(10, 1, 0, 12), 80, 1, ForwardMode::Dr),
                RealServer::new(Ipv4Addr::new(10, 1, 0, 11), 80, 1, ForwardMode::Dr),
            ]
        );
        assert_eq!(snap.route(Ipv4Addr::new(10, 1, 0, 11)).map(|r| r.via), Some(None));
        assert_eq!(snap.route(Ipv4Addr::new(8, 8, 8, 8)).and_then(|r| r.via), Some(Ipv4Addr::new(10, 0, 0, 254)));
    }

    #[test]
    fn ipv6_addresses_and_routes_go_to_their_own_tables() {
        let mut c = example();
        c.ports[0].addresses.push("2001:db8::1/64".parse().expect("cidr"));
        c.ports[0].addresses.push("2001:db8:1::1/64".parse().expect("cidr"));
        c.routes.push(crate::config::RouteConfig {
            prefix: "2001:db8:99::/48".parse().expect("cidr"),
            via: Some("2001:db8::fe".parse().expect("v6")),
            port: "lan0".into(),
        });
        c.validate().expect("valid");
        let snap = build_snapshot(&c, &[MAC], 1).expect("builds");
        assert_eq!(snap.addresses.len(), 2, "the IPv4 addresses as before");
        let v6 = |s: &str| -> std::net::Ipv6Addr { s.parse().expect("v6") };
        assert_eq!(
            snap.addresses6,
            vec![
                InterfaceAddr6 { port: 0, addr: v6("2001:db8::1"), prefix_len: 64 },
                InterfaceAddr6 { port: 0, addr: v6("2001:db8:1::1"), prefix_len: 64 },
            ]
        );
        assert_eq!(snap.route6(v6("2001:db8:1::11")).map(|r| (r.prefix, r.via)), Some((v6("2001:db8:1::"), None)));
        assert_eq!(snap.route6(v6("2001:db8:99::5")).and_then(|r| r.via), Some(v6("2001:db8::fe")));
        assert_eq!(snap.route6(v6("2001:db8:77::5")), None, "no IPv6 default route configured");
        assert_eq!(snap.source_addr6_for(0, v6("2001:db8:1::11")), Some(v6("2001:db8:1::1")));
        // A gateway of the other family, an IPv4-mapped address, a /129: refused with their fields.
        let mut bad = c.clone();
        bad.routes[1].via = Some(Ipv4Addr::new(10, 0, 0, 254).into());
        assert_eq!(bad.validate().map_err(|e| e.field().map(str::to_owned)), Err(Some("routes[1].via".to_owned())));
        let mut bad = c.clone();
        bad.ports[0].addresses[2] = "::ffff:10.9.9.9/128".parse().expect("cidr");
        assert_eq!(bad.validate().map_err(|e| e.field().map(str::to_owned)), Err(Some("ports[0].addresses[2]".to_owned())));
        assert!("2001:db8::1/129".parse::<crate::config::Cidr>().is_err());
    }

    #[test]
    fn resolves_ports_and_defaults() {
        let mut c = example();
        c.ports.push(crate::config::PortConfig {
            name: "wan0".into(),
            device: "net_af_packet1,iface=dp1".into(),
            addresses: vec!["192.0.2.10/28".parse().expect("cidr"), "192.0.2.11/28".parse().expect("cidr")],
            mtu: 1500,
            tap: None,
            vlan: None,
        });
        c.routes.push(crate::config::RouteConfig {
            prefix: "198.51.100.0/24".parse().expect("cidr"),
            via: Some(Ipv4Addr::new(192, 0, 2, 1).into()),
            port: "wan0".into(),
        });
        c.services[0].forward = ForwardMode::Nat;
        c.services[0].reals[0].port = Some(8080);
        c.services[0].reals[0].weight = 5;
        c.timeouts.udp = 30;
        let mac1 = MacAddr([0x02, 0, 0, 0, 0, 2]);
        let snap = build_snapshot(&c, &[MAC, mac1], 1).expect("builds");
        assert_eq!(snap.ports[1], PortInfo::new("wan0", mac1));
        assert_eq!(snap.port_addr(1), Some(Ipv4Addr::new(192, 0, 2, 10)));
        // Two addresses in one /28: one connected route.
        let wan_connected: Vec<_> = snap.routes.iter().filter(|r| r.port == 1 && r.via.is_none()).collect();
        assert_eq!(wan_connected.len(), 1);
        assert_eq!(wan_connected[0].prefix, Ipv4Addr::new(192, 0, 2, 0));
        let r = snap.route(Ipv4Addr::new(198, 51, 100, 7)).expect("route");
        assert_eq!((r.port, r.via), (1, Some(Ipv4Addr::new(192, 0, 2, 1))));
        let reals = &snap.services[0].reals;
        assert_eq!((reals[1].port, reals[1].weight, reals[1].forward), (8080, 5, ForwardMode::Nat));
        // An explicit forward mode wins over the service's.
        assert_eq!(reals[0].forward, ForwardMode::Dr);
        assert_eq!(snap.timeouts.udp, 30);
    }

    #[test]
    fn mac_count_must_match_ports() {
        let err = build_snapshot(&example(), &[], 1).expect_err("no MACs");
        assert_eq!(err.field(), Some("ports"));
        assert!(err.to_string().contains("1 ports are configured but the dataplane reports 0"), "{err}");
        assert!(build_snapshot(&example(), &[MAC, MAC], 1).is_err());
    }

    #[test]
    fn invalid_config_is_refused() {
        let mut c = example();
        c.services[0].reals[0].weight = 70000;
        let err = build_snapshot(&c, &[MAC], 1).expect_err("invalid");
        assert_eq!(err.field(), Some("services[0].reals[0].weight"));
    }

    #[test]
    fn empty_service_list_builds() {
        let mut c = example();
        c.services.clear();
        let snap = build_snapshot(&c, &[MAC], 2).expect("builds");
        assert!(snap.services.is_empty());
        assert!(snap.service_index.is_empty());
    }

    #[test]
    fn syn_proxy_and_syn_flood_reach_the_snapshot() {
        use rvs_dataplane::snapshot::{SynFlood, SynProxy};
        let mut c = example();
        assert_eq!(build_snapshot(&c, &[MAC], 1).expect("builds").services[0].syn_proxy, SynProxy::Off);
        c.services[0].forward = ForwardMode::Nat;
        c.services[0].reals[1].forward = None;
        c.services[0].syn_proxy = SynProxy::Auto;
        c.syn_flood.pressure_table_percent = 80;
        c.syn_flood.drop_entry = false;
        c.syn_flood.prefix_len = 16;
        let snap = build_snapshot(&c, &[MAC], 1).expect("builds");
        assert_eq!(snap.services[0].syn_proxy, SynProxy::Auto);
        assert_eq!(snap.syn_flood, SynFlood { pressure_table_percent: 80, drop_entry: false, prefix_len: 16, ..SynFlood::default() });
    }
}
