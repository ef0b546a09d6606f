//! keepalived.conf import of persistence for IPv6 virtual servers:
//! `persistence_granularity` is a prefix length 1..=128 there (an IPv4
//! virtual server keeps its netmask), and a wrong form names its line.
//! Expected values are written by hand.

use std::path::Path;

use rvs_control::config::{Config, PersistenceConfig, PersistenceNetmask};
use rvs_control::keepalived;

fn base() -> Config {
    Config::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keepalived/base.json")).expect("base.json is valid")
}

/// An IPv6 DR virtual server with these persistence lines.
fn virtual_server6(persistence: &str) -> String {
    format!(
        "virtual_server 2001:db8::100 80 {{\n    lb_algo rr\n    lb_kind DR\n{persistence}    real_server 2001:db8:1::11 80 {{\n        weight 1\n    }}\n}}\n"
    )
}

#[test]
fn an_ipv6_virtual_servers_granularity_is_a_prefix_length() {
    let c =
        keepalived::parse_str(&virtual_server6("    persistence_timeout 600\n    persistence_granularity 64\n"), &base()).expect("valid");
    let want = PersistenceConfig { timeout: 600, netmask: Some(PersistenceNetmask::PrefixLen(64)) };
    assert_eq!(c.services[0].persistence, Some(want));
    assert_eq!(c.services[0].persistence.as_ref().map(|p| p.prefix_len(c.services[0].vip)), Some(64));
    // Without a granularity: one client per template (/128).
    let c = keepalived::parse_str(&virtual_server6("    persistence_timeout 600\n"), &base()).expect("valid");
    assert_eq!(c.services[0].persistence, Some(PersistenceConfig::per_client(600)));
    assert_eq!(c.services[0].persistence.as_ref().map(|p| p.prefix_len(c.services[0].vip)), Some(128));
}

#[test]
fn an_ipv4_granularity_on_an_ipv6_virtual_server_names_its_line() {
    for bad in ["255.255.255.0", "0", "129", "abc"] {
        let text = virtual_server6(&format!("    persistence_timeout 600\n    persistence_granularity {bad}\n"));
        let e = keepalived::parse_str(&text, &base()).expect_err("must be rejected");
        assert_eq!((e.line(), e.keyword()), (5, "persistence_granularity"), "{bad}: {e}");
        assert!(e.to_string().contains("prefix length 1..=128"), "{bad}: {e}");
    }
}

#[test]
fn an_ipv4_virtual_server_keeps_its_netmask() {
    let text = "virtual_server 10.0.0.100 80 {\n    lb_kind DR\n    persistence_timeout 60\n    persistence_granularity 24\n    real_server 10.1.0.11 80 {\n    }\n}\n";
    let c = keepalived::parse_str(text, &base()).expect("valid");
    let want = PersistenceConfig { timeout: 60, netmask: Some(PersistenceNetmask::Mask(std::net::Ipv4Addr::new(255, 255, 255, 0))) };
    assert_eq!(c.services[0].persistence, Some(want));
}
