//! keepalived.conf import of IPv6 VRRP instances: IPv6 `virtual_ipaddress`
//! (with /prefix and dev), IPv6 `unicast_src_ip` / `unicast_peer`,
//! `version 3` (implied for IPv6, as Keepalived does), `native_ipv6`; and the
//! errors, each naming its line: mixed families, `version 2` with IPv6, bad
//! prefix lengths. Expected values are written by hand.

use std::net::IpAddr;
use std::path::Path;

use rvs_control::config::Config;
use rvs_control::keepalived;

fn base() -> Config {
    Config::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keepalived/base.json")).expect("base.json is valid")
}

fn addr(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn instance(body: &str) -> String {
    format!("vrrp_instance VI_6 {{\n    interface dp0\n    virtual_router_id 61\n    priority 150\n{body}}}\n")
}

/// (line, keyword, message) of a rejected text.
fn rejected(text: &str) -> (usize, String, String) {
    let e = keepalived::parse_str(text, &base()).expect_err("must be rejected");
    (e.line(), e.keyword().to_string(), e.to_string())
}

#[test]
fn ipv6_instance_multicast() {
    let text = instance("    advert_int 0.5\n    virtual_ipaddress {\n        2001:db8::100/64 dev dp0\n        2001:db8::101\n    }\n");
    let c = keepalived::parse_str(&text, &base()).expect("valid");
    let i = &c.vrrp.instances[0];
    assert_eq!(i.interface, "lan0");
    assert_eq!(i.virtual_ipaddress, vec![addr("2001:db8::100"), addr("2001:db8::101")]);
    assert_eq!(i.version, 3, "IPv6 implies VRRPv3, as in Keepalived");
    assert_eq!(i.advert_int, 0.5);
    assert!(i.unicast_peer.is_empty());
}

#[test]
fn ipv6_instance_unicast_version_3() {
    let text = instance(
        "    version 3\n    unicast_src_ip fd00:77::1\n    unicast_peer {\n        fd00:77::2\n        fe80::2\n    }\n    \
         virtual_ipaddress {\n        fd00:77::100/128\n    }\n",
    );
    let c = keepalived::parse_str(&text, &base()).expect("valid");
    let i = &c.vrrp.instances[0];
    assert_eq!(i.unicast_src_ip, Some(addr("fd00:77::1")));
    assert_eq!(i.unicast_peer, vec![addr("fd00:77::2"), addr("fe80::2")]);
    assert_eq!(i.virtual_ipaddress, vec![addr("fd00:77::100")]);
}

#[test]
fn native_ipv6_without_addresses_of_the_other_family() {
    let text = instance("    native_ipv6\n    virtual_ipaddress {\n        2001:db8::100\n    }\n");
    assert_eq!(keepalived::parse_str(&text, &base()).expect("valid").vrrp.instances[0].version, 3);
    let text = instance("    native_ipv6\n    virtual_ipaddress {\n        10.0.0.100\n    }\n");
    let (line, keyword, message) = rejected(&text);
    assert_eq!((line, keyword.as_str()), (7, "virtual_ipaddress"), "{message}");
    assert!(message.contains("native_ipv6"), "{message}");
}

#[test]
fn mixed_families_name_the_line() {
    let text = instance("    version 3\n    virtual_ipaddress {\n        10.0.0.100\n        2001:db8::100\n    }\n");
    let (line, keyword, message) = rejected(&text);
    assert_eq!((line, keyword.as_str()), (8, "virtual_ipaddress"), "{message}");
    assert!(message.contains("one address family"), "{message}");
    let text = instance("    virtual_ipaddress {\n        2001:db8::100\n    }\n    unicast_peer {\n        10.0.0.2\n    }\n");
    let (line, keyword, message) = rejected(&text);
    assert_eq!((line, keyword.as_str()), (9, "unicast_peer"), "{message}");
    let text = instance("    unicast_src_ip 10.0.0.1\n    virtual_ipaddress {\n        2001:db8::100\n    }\n");
    let (line, keyword, message) = rejected(&text);
    assert_eq!((line, keyword.as_str()), (5, "unicast_src_ip"), "{message}");
}

#[test]
fn version_2_is_ipv4_only() {
    let text = instance("    version 2\n    virtual_ipaddress {\n        2001:db8::100\n    }\n");
    let (line, keyword, message) = rejected(&text);
    assert_eq!((line, keyword.as_str()), (5, "version"), "{message}");
    assert!(message.contains("VRRPv2 is IPv4 only"), "{message}");
}

#[test]
fn prefix_lengths_per_family() {
    let text = instance("    virtual_ipaddress {\n        2001:db8::100/129\n    }\n");
    let (line, _, message) = rejected(&text);
    assert_eq!(line, 6, "{message}");
    assert!(message.contains("0..=128"), "{message}");
    let text = instance("    virtual_ipaddress {\n        10.0.0.100/33\n    }\n");
    assert!(rejected(&text).2.contains("0..=32"));
    let text = instance("    virtual_ipaddress {\n        2001:db8::zz\n    }\n");
    assert!(rejected(&text).2.contains("not an IPv4 or IPv6 address"));
}
