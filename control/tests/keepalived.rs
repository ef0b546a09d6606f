//! keepalived.conf import: the DR and DPVS-style FULLNAT fixtures give the
//! expected services, VRRP and checks; every kind of error is reported with its
//! file, line and exit code. Expected values are written by hand from the fixtures.

use std::path::{Path, PathBuf};

use rvs_control::config::{Config, PersistenceConfig, PersistenceNetmask};
use rvs_control::ha::{
    CheckKind, HealthCheck, RealHealth, ServiceHealth, SorryServer, SyncConfig, TrackScript, UrlCheck, VrrpInitialState, VrrpInstance,
    VrrpSyncGroup,
};
use rvs_control::keepalived::{self, Imported, KeepalivedError};
use rvs_dataplane::sched::HashFields;
use rvs_dataplane::snapshot::{ForwardMode, Protocol, SchedulerKind, ServiceKey, Timeouts};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keepalived").join(name)
}

fn base() -> Config {
    Config::load(fixture("base.json")).expect("base.json is valid")
}

fn ip<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("test address")
}

/// An address of either family (VRRP instances).
fn addr(s: &str) -> std::net::IpAddr {
    s.parse().expect("test address")
}

fn import(name: &str) -> Imported {
    match keepalived::import_file(&fixture(name), &base()) {
        Ok(i) => i,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn check(kind: CheckKind, connect_timeout: f64, retry: u32, delay_before_retry: f64) -> HealthCheck {
    HealthCheck { kind, connect_timeout, retry, delay_before_retry, connect_ip: None, connect_port: None, bind_ip: None }
}

fn url(path: &str, status_code: &[u16], digest: Option<&str>) -> UrlCheck {
    UrlCheck { path: path.into(), status_code: status_code.to_vec(), digest: digest.map(String::from) }
}

// ---------------------------------------------------------------------------
// The DR fixture.

#[test]
fn dr_services() {
    let c = import("dr.conf").config;
    let keys: Vec<ServiceKey> = c.services.iter().map(|s| s.key()).collect();
    assert_eq!(
        keys,
        vec![
            ServiceKey { protocol: Protocol::Tcp, vip: ip("10.0.0.100"), port: 80 },
            ServiceKey { protocol: Protocol::Tcp, vip: ip("10.0.0.100"), port: 443 },
            ServiceKey { protocol: Protocol::Udp, vip: ip("10.0.0.53"), port: 53 },
        ]
    );

    let web = &c.services[0];
    assert_eq!(web.scheduler, SchedulerKind::Wrr);
    assert_eq!(web.forward, ForwardMode::Dr);
    assert_eq!(web.persistence, Some(PersistenceConfig { timeout: 300, netmask: Some(PersistenceNetmask::Mask(ip("255.255.255.0"))) }));
    assert!(web.local_addresses.is_empty());
    assert_eq!(
        web.health,
        Some(ServiceHealth {
            delay_loop: 6.0,
            quorum: 2,
            hysteresis: 1,
            sorry_server: Some(SorryServer { address: ip("10.1.0.99"), port: Some(80), forward: None }),
            alpha: true,
            omega: false,
            quorum_up: Some("/etc/keepalived/quorum.sh up".into()),
            quorum_down: Some("/etc/keepalived/quorum.sh down".into()),
        })
    );
    let reals: Vec<(std::net::IpAddr, Option<u16>, u32, Option<ForwardMode>)> =
        web.reals.iter().map(|r| (r.address, r.port, r.weight, r.forward)).collect();
    assert_eq!(reals, vec![(ip("10.1.0.11"), Some(80), 3, None), (ip("10.1.0.12"), Some(80), 1, None)]);

    let tls = &c.services[1];
    assert_eq!(tls.scheduler, SchedulerKind::Lc);
    assert_eq!(tls.forward, ForwardMode::Dr);
    // `persistence_timeout` without a value: Keepalived's 6 minutes.
    assert_eq!(tls.persistence, Some(PersistenceConfig::per_client(360)));
    assert_eq!(tls.health, Some(ServiceHealth { delay_loop: 10.0, ..ServiceHealth::default() }));
    let reals: Vec<(std::net::IpAddr, Option<u16>, u32)> = tls.reals.iter().map(|r| (r.address, r.port, r.weight)).collect();
    assert_eq!(reals, vec![(ip("10.1.0.11"), Some(443), 1), (ip("10.1.0.12"), Some(443), 1)]);

    // From the included dr.d/dns.conf.
    let dns = &c.services[2];
    assert_eq!(dns.scheduler, SchedulerKind::Rr);
    assert_eq!(dns.forward, ForwardMode::Dr);
    assert_eq!(dns.persistence, None);
    assert_eq!(dns.health, Some(ServiceHealth { delay_loop: 5.0, ..ServiceHealth::default() }));
    let reals: Vec<(std::net::IpAddr, Option<u16>, u32)> = dns.reals.iter().map(|r| (r.address, r.port, r.weight)).collect();
    assert_eq!(reals, vec![(ip("10.1.0.21"), Some(53), 1), (ip("10.1.0.22"), Some(53), 2)]);
}

#[test]
fn dr_checks() {
    let h = import("dr.conf").real_health;
    assert_eq!(h.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 2]);
    let vhost = Some("www.example.com".to_string());
    assert_eq!(
        h[0][0],
        RealHealth {
            checks: vec![check(
                CheckKind::HttpGet {
                    urls: vec![url("/health", &[200], None), url("/index.html", &[200], Some("9b3a0c5f6e2d4a1b8c7d6e5f4a3b2c1d")),],
                    virtualhost: vhost.clone(),
                },
                3.0,
                3,
                2.0,
            )],
            inhibit_on_failure: true,
            notify_up: None,
            notify_down: Some("/etc/keepalived/rs.sh down 10.1.0.11".into()),
        }
    );
    let mut c = check(
        CheckKind::HttpGet { urls: vec![url("/health?full=1", &[200, 201, 202, 203, 204, 301], None)], virtualhost: vhost },
        2.0,
        2,
        0.5,
    );
    c.connect_port = Some(8080);
    assert_eq!(h[0][1], RealHealth { checks: vec![c], ..RealHealth::default() });
    assert_eq!(h[1][0].checks, vec![check(CheckKind::SslGet { urls: vec![url("/ping", &[200], None)], virtualhost: None }, 4.0, 1, 1.0)]);
    assert_eq!(h[1][1].checks, vec![check(CheckKind::TcpCheck, 3.0, 1, 1.0)]);
    assert!(!h[1][1].inhibit_on_failure);
    let dns = || CheckKind::DnsCheck { query_type: "A".into(), name: "ns.example.com".into() };
    assert_eq!(h[2][0].checks, vec![check(dns(), 2.0, 2, 1.0)]);
    assert_eq!(h[2][1].checks, vec![check(dns(), 5.0, 1, 1.0)]);
}

#[test]
fn dr_vrrp_sync_and_timeouts() {
    let c = import("dr.conf").config;
    assert_eq!(
        c.vrrp.instances,
        vec![
            VrrpInstance {
                name: "VI_WEB".into(),
                state: VrrpInitialState::Master,
                // `interface dp0`: the kernel interface of port lan0.
                interface: "lan0".into(),
                virtual_router_id: 51,
                priority: 150,
                advert_int: 1.0,
                version: 2,
                nopreempt: false,
                preempt_delay: 0.0,
                auth_pass: Some("s3cr3t".into()),
                virtual_ipaddress: vec![addr("10.0.0.100"), addr("10.0.0.101")],
                unicast_src_ip: None,
                unicast_peer: vec![],
                track_interface: vec!["lan0".into()],
                track_script: vec!["chk_uplink".into()],
                garp_master_delay: 2.0,
                garp_master_repeat: 3,
                garp_master_refresh: 60.0,
                garp_lower_prio_repeat: None,
                garp_lower_prio_delay: None,
                higher_prio_send_advert: None,
                notify_master: None,
                notify_backup: None,
                notify_fault: None,
                notify: None,
            },
            VrrpInstance {
                name: "VI_DNS".into(),
                state: VrrpInitialState::Backup,
                interface: "lan0".into(),
                virtual_router_id: 52,
                priority: 100,
                advert_int: 2.0,
                version: 2,
                nopreempt: true,
                preempt_delay: 30.0,
                auth_pass: None,
                virtual_ipaddress: vec![addr("10.0.0.53")],
                unicast_src_ip: None,
                unicast_peer: vec![],
                track_interface: vec![],
                track_script: vec![],
                garp_master_delay: 2.0,
                garp_master_repeat: 5,
                garp_master_refresh: 0.0,
                garp_lower_prio_repeat: None,
                garp_lower_prio_delay: None,
                higher_prio_send_advert: None,
                notify_master: None,
                notify_backup: None,
                notify_fault: None,
                notify: Some("/etc/keepalived/notify-all.sh".into()),
            },
        ]
    );
    assert_eq!(
        c.vrrp.sync_groups,
        vec![VrrpSyncGroup {
            name: "VG_LB".into(),
            group: vec!["VI_WEB".into(), "VI_DNS".into()],
            notify_master: Some("/etc/keepalived/notify.sh master".into()),
            notify_backup: Some("/etc/keepalived/notify.sh backup".into()),
            notify_fault: Some("/etc/keepalived/notify.sh fault".into()),
        }]
    );
    assert_eq!(
        c.vrrp.scripts,
        vec![TrackScript {
            name: "chk_uplink".into(),
            script: "/usr/local/bin/check-uplink --gw 10.0.0.254".into(),
            interval: 2.0,
            timeout: Some(1.0),
            weight: -20,
            rise: 2,
            fall: 3,
        }]
    );
    assert_eq!(c.sync, Some(SyncConfig { instance: "VI_WEB".into(), port: 8848, peers: vec![], sync_id: 7, key: None }));
    assert_eq!(c.timeouts, Timeouts { tcp: 7200, tcp_fin: 60, udp: 120, ..Timeouts::default() });
}

#[test]
fn base_supplies_the_rest_and_services_are_replaced() {
    let b = base();
    let c = import("dr.conf").config;
    assert_eq!(c.eal, b.eal);
    assert_eq!(c.workers, vec![1, 2]);
    assert_eq!(c.api, b.api);
    assert_eq!(c.ports, b.ports);
    assert_eq!(c.routes, b.routes);
    // The base's own service (10.0.0.200:22) is replaced by the keepalived services.
    assert!(c.services.iter().all(|s| s.vip != ip::<std::net::IpAddr>("10.0.0.200")));
    // The result fits the JSON schema and reads back identically.
    assert_eq!(Config::from_json(&c.to_json_pretty()).expect("round trip"), c);
    // load() gives the same config as import_file().
    assert_eq!(keepalived::load(&fixture("dr.conf"), &b).expect("load"), c);
}

#[test]
fn the_sync_key_comes_from_the_base_config_or_the_environment() {
    use rvs_control::ha::SyncKey;
    use rvs_control::sync::{SyncSettings, SyncSetupError, KEY_ENV};
    // Without a key anywhere, sync cannot start: the error names sync.key and the variable.
    // Sync runs on the exception path: lan0 (dp0) gets a TAP.
    let mut tapped = base();
    tapped.ports[0].tap = Some("rvs0".into());
    let c = keepalived::import_file(&fixture("dr.conf"), &tapped).expect("import").config;
    let e = SyncSettings::resolve(&c, None).expect_err("no key");
    assert_eq!(e, SyncSetupError::MissingKey);
    assert!(e.to_string().starts_with("sync.key") && e.to_string().contains(KEY_ENV), "{e}");
    let s = SyncSettings::resolve(&c, Some("from the environment".into())).expect("env key").expect("sync configured");
    assert_eq!(s.config.instance, "VI_WEB");
    // A base config may hold just the key; lvs_sync_daemon gives the rest.
    let mut b = tapped.clone();
    b.sync = Some(serde_json::from_str(r#"{ "key": "0123456789abcdef" }"#).expect("a sync section with only a key"));
    let b = Config::from_json(&b.to_json_pretty()).expect("a base with only sync.key is valid");
    let c = keepalived::import_file(&fixture("dr.conf"), &b).expect("import").config;
    let sync = c.sync.clone().expect("sync");
    assert_eq!(sync.key, Some(SyncKey::new("0123456789abcdef")));
    assert_eq!((sync.instance.as_str(), sync.sync_id), ("VI_WEB", 7));
    assert!(SyncSettings::resolve(&c, None).expect("file key").is_some());
    assert!(!format!("{c:?}").contains("0123456789abcdef"), "the key is never in Debug output");
}

// ---------------------------------------------------------------------------
// The DPVS-style FULLNAT fixture.

#[test]
fn fnat_services() {
    let c = import("fnat.conf").config;
    let keys: Vec<ServiceKey> = c.services.iter().map(|s| s.key()).collect();
    assert_eq!(
        keys,
        vec![
            ServiceKey { protocol: Protocol::Tcp, vip: ip("10.140.31.48"), port: 80 },
            ServiceKey { protocol: Protocol::Udp, vip: ip("10.140.31.49"), port: 53 },
        ]
    );
    let web = &c.services[0];
    assert_eq!(web.scheduler, SchedulerKind::Rr);
    assert_eq!(web.forward, ForwardMode::FullNat);
    assert_eq!(web.local_addresses, vec![ip::<std::net::IpAddr>("192.168.100.200"), ip("192.168.100.201")]);
    assert_eq!(web.persistence, None);
    assert_eq!(web.health, Some(ServiceHealth { delay_loop: 3.0, alpha: true, omega: true, ..ServiceHealth::default() }));
    let reals: Vec<(std::net::IpAddr, Option<u16>, u32, u32, u32)> =
        web.reals.iter().map(|r| (r.address, r.port, r.weight, r.upper_threshold, r.lower_threshold)).collect();
    assert_eq!(reals, vec![(ip("192.168.100.2"), Some(8080), 100, 0, 0), (ip("192.168.100.3"), Some(8080), 50, 1000, 800)]);

    let dns = &c.services[1];
    assert_eq!(dns.scheduler, SchedulerKind::Mh);
    assert_eq!(dns.sched_options.hash, HashFields::SrcAddrPort);
    assert!(!dns.sched_options.fallback);
    assert_eq!(dns.forward, ForwardMode::FullNat);
    // `192.168.100.210-213`: a range of the last byte.
    assert_eq!(
        dns.local_addresses,
        vec![ip::<std::net::IpAddr>("192.168.100.210"), ip("192.168.100.211"), ip("192.168.100.212"), ip("192.168.100.213")]
    );
    assert_eq!(dns.health, Some(ServiceHealth { delay_loop: 2.0, ..ServiceHealth::default() }));
    let reals: Vec<(std::net::IpAddr, Option<u16>, u32)> = dns.reals.iter().map(|r| (r.address, r.port, r.weight)).collect();
    assert_eq!(reals, vec![(ip("192.168.100.5"), Some(53), 1), (ip("192.168.100.6"), Some(53), 1)]);
}

#[test]
fn fnat_checks() {
    let h = import("fnat.conf").real_health;
    let mut tcp = check(CheckKind::TcpCheck, 1.0, 2, 1.0);
    tcp.connect_port = Some(8080);
    assert_eq!(h[0][0], RealHealth { checks: vec![tcp], inhibit_on_failure: true, ..RealHealth::default() });
    assert_eq!(
        h[0][1],
        RealHealth {
            checks: vec![check(
                CheckKind::MiscCheck { path: "/opt/dpvs/check.sh 192.168.100.3 8080".into(), timeout: Some(5.0), dynamic: true },
                5.0,
                1,
                1.0,
            )],
            ..RealHealth::default()
        }
    );
    assert_eq!(
        h[1][0].checks,
        vec![
            check(CheckKind::UdpCheck { payload: Some("0001abcd".into()), require_reply: true, reply: Some("0002".into()) }, 2.0, 3, 1.0,)
        ]
    );
    assert_eq!(h[1][1].checks, vec![check(CheckKind::UdpCheck { payload: None, require_reply: false, reply: None }, 2.0, 1, 1.0)]);
}

#[test]
fn fnat_vrrp() {
    let c = import("fnat.conf").config;
    assert_eq!(
        c.vrrp.instances,
        vec![VrrpInstance {
            name: "VI_FNAT".into(),
            state: VrrpInitialState::Backup,
            interface: "dpdk1".into(),
            virtual_router_id: 80,
            priority: 120,
            advert_int: 0.5,
            version: 3,
            nopreempt: false,
            preempt_delay: 0.0,
            auth_pass: None,
            virtual_ipaddress: vec![addr("10.140.31.48"), addr("10.140.31.49")],
            unicast_src_ip: Some(addr("10.140.0.1")),
            unicast_peer: vec![addr("10.140.0.2"), addr("10.140.0.3")],
            track_interface: vec![],
            track_script: vec![],
            garp_master_delay: 5.0,
            garp_master_repeat: 5,
            garp_master_refresh: 0.0,
            garp_lower_prio_repeat: None,
            garp_lower_prio_delay: None,
            higher_prio_send_advert: None,
            notify_master: Some("/opt/dpvs/notify.sh master".into()),
            notify_backup: None,
            notify_fault: None,
            notify: None,
        }]
    );
    assert!(c.vrrp.sync_groups.is_empty());
    assert!(c.vrrp.scripts.is_empty());
    assert_eq!(c.sync, None);
    assert_eq!(c.timeouts, base().timeouts);
}

// ---------------------------------------------------------------------------
// Grammar.

#[test]
fn comments_quotes_and_one_line_blocks() {
    let text = "\
# hash comment
! bang comment
virtual_server 10.0.0.100 80 {   # web
    lb_kind DR                   ! direct routing
    quorum_up \"/bin/echo #1 !x { }\"   # a quoted command keeps # ! and braces
    real_server 10.1.0.11 80 { weight 4 }
}
";
    let c = keepalived::parse_str(text, &base()).expect("valid");
    let s = &c.services[0];
    assert_eq!(s.forward, ForwardMode::Dr);
    assert_eq!(s.health.as_ref().and_then(|h| h.quorum_up.as_deref()), Some("/bin/echo #1 !x { }"));
    assert_eq!(s.reals[0].weight, 4);
    // Keepalived's defaults: wlc, NAT.
    assert_eq!(s.scheduler, SchedulerKind::Wlc);
    let c = keepalived::parse_str("virtual_server 10.0.0.100 80 {\n}\n", &base()).expect("valid");
    assert_eq!(c.services[0].forward, ForwardMode::Nat);
}

// ---------------------------------------------------------------------------
// Errors: kind, line, keyword, exit code.

/// A small valid config; line numbers below refer to it.
const MINI: &str = "\
vrrp_instance VI_1 {
    interface lan0
    virtual_router_id 9
    virtual_ipaddress {
        10.0.0.100
    }
}
virtual_server 10.0.0.100 80 {
    lb_kind DR
    real_server 10.1.0.11 80 {
        weight 1
    }
}
";

/// MINI with `line` (1-based) replaced by `with` (which may hold several lines).
fn edit(line: usize, with: &str) -> String {
    let mut lines: Vec<String> = MINI.lines().map(String::from).collect();
    lines[line - 1] = with.to_string();
    lines.join("\n") + "\n"
}

/// MINI with `text` inserted after `line`.
fn insert(line: usize, text: &str) -> String {
    let mut lines: Vec<String> = MINI.lines().map(String::from).collect();
    lines.insert(line, text.to_string());
    lines.join("\n") + "\n"
}

fn error(text: &str) -> KeepalivedError {
    keepalived::parse_str(text, &base()).expect_err("must be rejected")
}

/// (exit code, line, keyword) of the error.
fn where_(e: &KeepalivedError) -> (u8, usize, String) {
    (e.exit_code(), e.line(), e.keyword().to_string())
}

#[test]
fn mini_is_valid() {
    let c = keepalived::parse_str(MINI, &base()).expect("valid");
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.vrrp.instances[0].virtual_router_id, 9);
}

#[test]
fn unknown_keywords_are_reported_with_their_line() {
    let e = error(&insert(9, "    lb_algoo rr"));
    assert!(matches!(e, KeepalivedError::UnknownKeyword { .. }), "{e}");
    assert_eq!(where_(&e), (11, 10, "lb_algoo".into()));
    assert!(e.to_string().starts_with("<keepalived.conf>:10: unknown keyword `lb_algoo` in virtual_server 10.0.0.100 80"), "{e}");

    let e = error(&insert(11, "        TCP_CHECK {\n            conect_timeout 3\n        }"));
    assert_eq!(where_(&e), (11, 13, "conect_timeout".into()));

    let e = error(&insert(0, "vrrp_instanse VI_2 {\n}"));
    assert_eq!(where_(&e), (11, 1, "vrrp_instanse".into()));

    let e = error(&insert(3, "    prority 100"));
    assert_eq!(where_(&e), (11, 4, "prority".into()));
}

#[test]
fn unknown_keyword_in_an_included_file_names_that_file() {
    let e = keepalived::load(&fixture("bad/main.conf"), &base()).expect_err("typo");
    assert!(matches!(e, KeepalivedError::UnknownKeyword { .. }), "{e}");
    assert_eq!(where_(&e), (11, 6, "wieght".into()));
    assert!(e.file().ends_with("bad/inc/vs.conf"), "{}", e.file().display());
    assert!(e.to_string().contains("inc/vs.conf:6: unknown keyword `wieght`"), "{e}");
}

#[test]
fn unsupported_keywords() {
    let cases: &[(&str, usize, &str)] = &[
        (&insert(9, "    ops"), 10, "ops"),
        (&insert(0, "virtual_server_group VSG {\n    10.0.0.100 80\n}"), 1, "virtual_server_group"),
        (&insert(0, "global_defs {\n    vrrp_strict\n}"), 2, "vrrp_strict"),
        (&insert(0, "global_defs {\n    enable_snmp_checker\n}"), 2, "enable_snmp_checker"),
        (&insert(11, "        SMTP_CHECK {\n        }"), 12, "SMTP_CHECK"),
        (&insert(3, "    use_vmac"), 4, "use_vmac"),
        (&insert(3, "    authentication {\n        auth_type AH\n        auth_pass x\n    }"), 5, "auth_type AH"),
        (&edit(8, "virtual_server fwmark 1 {"), 8, "fwmark"),
        (&edit(8, "virtual_server group VSG {"), 8, "group"),
        (&edit(5, "        10.0.0.100 dev dp1"), 5, "dev"),
        (&insert(9, "    protocol SCTP"), 10, "protocol"),
        (&insert(9, "    lb_kind SNAT"), 10, "lb_kind"),
    ];
    for (text, line, keyword) in cases {
        let e = error(text);
        assert!(matches!(e, KeepalivedError::Unsupported { .. }), "{keyword}: {e}");
        assert_eq!(where_(&e), (12, *line, keyword.to_string()), "{e}");
        assert!(e.to_string().contains("is not supported by rvs"), "{e}");
    }
}

#[test]
fn ignored_keywords_are_accepted() {
    let text = insert(
        0,
        "global_defs {\n    router_id X\n    notification_email {\n        a@b.c\n    }\n    smtp_server 127.0.0.1\n    lvs_flush\n}",
    );
    assert!(keepalived::parse_str(&text, &base()).is_ok());
    // Every listed keyword comes with a reason.
    assert!(keepalived::IGNORED_KEYWORDS.iter().all(|(_, _, why)| !why.is_empty()));
    assert!(!keepalived::UNSUPPORTED_KEYWORDS.iter().any(|(_, k, _)| *k == "syn_proxy"));
}

#[test]
fn invalid_values() {
    let cases: &[(&str, usize, &str)] = &[
        (&edit(9, "    lb_kind XYZ"), 9, "lb_kind"),
        (&insert(9, "    lb_algo fastest"), 10, "lb_algo"),
        (&insert(3, "    priority 300"), 4, "priority"),
        (&insert(3, "    priority 0"), 4, "priority"),
        (&edit(3, "    virtual_router_id 256"), 3, "virtual_router_id"),
        (&edit(2, "    interface eth9"), 2, "interface"),
        (&insert(3, "    advert_int 0.5"), 4, "advert_int"),
        (&insert(3, "    state PRIMARY"), 4, "state"),
        (&insert(3, "    authentication {\n        auth_type PASS\n        auth_pass 123456789\n    }"), 6, "auth_pass"),
        (&edit(5, "        10.0.0.300"), 5, "10.0.0.300"),
        (&edit(11, "        weight heavy"), 11, "weight"),
        (&insert(9, "    persistence_granularity 255.0.255.0\n    persistence_timeout 60"), 10, "persistence_granularity"),
        (&insert(9, "    laddr_group_name nope"), 10, "laddr_group_name"),
        (&insert(11, "        HTTP_GET {\n            url {\n                status_code 200\n            }\n        }"), 13, "url"),
        (&insert(11, "        MISC_CHECK {\n            misc_timeout 3\n        }"), 12, "MISC_CHECK"),
        (&insert(11, "        UDP_CHECK {\n            payload xyz\n        }"), 13, "payload"),
        (&insert(3, "    track_script {\n        chk_none\n    }"), 5, "chk_none"),
        (
            &edit(1, "vrrp_instance VI_1 {\n    version 3\n    authentication {\n        auth_type PASS\n        auth_pass x\n    }"),
            3,
            "authentication",
        ),
    ];
    for (text, line, keyword) in cases {
        let e = error(text);
        assert!(matches!(e, KeepalivedError::Invalid { .. }), "{keyword}: {e}");
        assert_eq!(where_(&e), (13, *line, keyword.to_string()), "{e}");
    }
    // An unknown interface lists the ports, with their kernel names.
    let e = error(&edit(2, "    interface eth9"));
    assert!(e.to_string().contains("lan0 (iface dp0), dpdk0 (iface dp1), dpdk1 (iface dp2)"), "{e}");
}

#[test]
fn syntax_errors() {
    // Unclosed block: reported at the keyword that opened it.
    let text: String = MINI.lines().take(12).map(|l| format!("{l}\n")).collect();
    let e = error(&text);
    assert!(matches!(e, KeepalivedError::Syntax { .. }), "{e}");
    assert_eq!(where_(&e), (10, 8, "virtual_server".into()));
    // A `}` too many.
    let e = error(&(MINI.to_string() + "}\n"));
    assert_eq!(where_(&e), (10, 14, "}".into()));
    // Missing value, extra value, a block where none belongs.
    assert_eq!(where_(&error(&edit(9, "    lb_kind"))), (10, 9, "lb_kind".into()));
    assert_eq!(where_(&error(&edit(9, "    lb_kind DR NAT"))), (10, 9, "lb_kind".into()));
    assert_eq!(where_(&error(&edit(11, "        weight { 1 }"))), (10, 11, "weight".into()));
    // A block that needs a name, an unterminated quote.
    assert_eq!(where_(&error(&edit(1, "vrrp_instance {"))), (10, 1, "vrrp_instance".into()));
    assert_eq!(where_(&error(&insert(9, "    quorum_up \"/bin/true"))), (10, 10, String::new()));
}

#[test]
fn include_errors() {
    let e = keepalived::load(&fixture("bad/missing-include.conf"), &base()).expect_err("missing include");
    assert!(matches!(e, KeepalivedError::Include { .. }), "{e}");
    assert_eq!(where_(&e), (14, 4, "include".into()));
    assert!(e.file().ends_with("bad/missing-include.conf"));
    assert!(e.to_string().contains("does-not-exist.conf"), "{e}");

    let e = keepalived::load(&fixture("no-such-file.conf"), &base()).expect_err("missing main file");
    assert_eq!(where_(&e), (14, 0, String::new()));

    let e = error(&insert(13, "include /nonexistent/dir/*.conf"));
    assert_eq!(where_(&e), (14, 14, "include".into()));
    assert!(e.to_string().contains("matches no file"), "{e}");
}

#[test]
fn include_loop_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.conf");
    std::fs::write(&a, "! loops\ninclude a.conf\n").expect("write");
    let e = keepalived::load(&a, &base()).expect_err("loop");
    assert!(matches!(e, KeepalivedError::Include { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("nested"), "{e}");
}

#[test]
fn invalid_resulting_config_keeps_the_field_path() {
    // Weight out of rvs's range: reported at the real_server block.
    let e = error(&edit(11, "        weight 70000"));
    match &e {
        KeepalivedError::Config { field, line, keyword, .. } => {
            assert_eq!(field, "services[0].reals[0].weight");
            assert_eq!(*line, 10);
            assert_eq!(keyword, "real_server");
        }
        other => panic!("expected a Config error, got {other}"),
    }
    assert_eq!(e.exit_code(), 15);
    // FULLNAT without local addresses is accepted (DPVS adds them later); it forwards nothing until then.
    keepalived::parse_str(&edit(9, "    lb_kind FNAT"), &base()).expect("FULLNAT without local addresses");
    // The same virtual_server twice: reported at the second one.
    let text = MINI.to_string() + "virtual_server 10.0.0.100 80 {\n    lb_kind DR\n}\n";
    let e = error(&text);
    assert!(matches!(&e, KeepalivedError::Config { field, line: 14, .. } if field == "services[1]"), "{e}");
    // A DR real server cannot change the port.
    let e = error(&edit(10, "    real_server 10.1.0.11 8080 {"));
    assert!(matches!(&e, KeepalivedError::Config { field, line: 10, .. } if field == "services[0].reals[0].port"), "{e}");
}

#[test]
fn syn_proxy_imports_as_on_where_the_service_can_have_it() {
    use rvs_dataplane::snapshot::SynProxy;
    // DPVS's Keepalived: `syn_proxy` is a flag in virtual_server. MINI's service is DR: make it NAT.
    let nat = edit(9, "    lb_kind NAT\n    syn_proxy");
    let c = keepalived::parse_str(&nat, &base()).expect("NAT service with syn_proxy");
    assert_eq!(c.services[0].syn_proxy, SynProxy::On);
    assert_eq!(c.services[0].reals[0].forward_for(&c.services[0]), ForwardMode::Nat);
    // Without the keyword: off.
    let c = keepalived::parse_str(&edit(9, "    lb_kind NAT"), &base()).expect("NAT service");
    assert_eq!(c.services[0].syn_proxy, SynProxy::Off);
    // FULLNAT (DPVS's lb_kind FNAT) with a local address group.
    let fnat =
        "local_address_group LG {\n    10.0.0.5\n}\n".to_string() + &edit(9, "    lb_kind FNAT\n    laddr_group_name LG\n    syn_proxy");
    let c = keepalived::parse_str(&fnat, &base()).expect("FULLNAT service with syn_proxy");
    assert_eq!(c.services[0].syn_proxy, SynProxy::On);

    // A DR service cannot have it: reported at the syn_proxy line, naming the field.
    let e = error(&insert(9, "    syn_proxy"));
    match &e {
        KeepalivedError::Config { field, line, keyword, message, .. } => {
            assert_eq!((field.as_str(), *line, keyword.as_str()), ("services[0].syn_proxy", 10, "syn_proxy"));
            assert!(message.contains("reals[0] is forwarded by dr"), "{message}");
        }
        other => panic!("expected a Config error, got {other}"),
    }
    assert_eq!(e.exit_code(), 15);
    // A NAT service with one DR real_server: likewise.
    let e = error(&edit(9, "    lb_kind NAT\n    syn_proxy\n    real_server 10.1.0.12 80 {\n        lb_kind DR\n    }"));
    assert!(
        matches!(&e, KeepalivedError::Config { field, keyword, .. } if field == "services[0].syn_proxy" && keyword == "syn_proxy"),
        "{e}"
    );
    assert!(e.to_string().contains("reals[0] is forwarded by dr"), "{e}");
    // UDP.
    let e = error(&edit(9, "    lb_kind NAT\n    protocol UDP\n    syn_proxy"));
    assert!(e.to_string().contains("TCP services only"), "{e}");
    // A flag takes no value.
    let e = error(&edit(9, "    lb_kind NAT\n    syn_proxy on"));
    assert!(matches!(e, KeepalivedError::Syntax { .. }), "{e}");
    assert_eq!(where_(&e), (10, 10, "syn_proxy".into()));
}

#[test]
fn every_kind_has_its_own_exit_code() {
    let errors = [
        error(&edit(9, "    lb_kind")),
        error(&insert(9, "    lb_algoo rr")),
        error(&insert(9, "    ops")),
        error(&edit(9, "    lb_kind XYZ")),
        keepalived::load(&fixture("bad/missing-include.conf"), &base()).expect_err("include"),
        error(&edit(11, "        weight 70000")),
    ];
    let codes: Vec<u8> = errors.iter().map(KeepalivedError::exit_code).collect();
    assert_eq!(codes, vec![10, 11, 12, 13, 14, 15]);
}

#[test]
fn duplicates_and_references_are_checked() {
    // vrrp_sync_group naming an instance that does not exist.
    let e = error(&(MINI.to_string() + "vrrp_sync_group G {\n    group {\n        VI_1\n        VI_9\n    }\n}\n"));
    assert_eq!(where_(&e), (13, 17, "VI_9".into()));
    // lvs_sync_daemon following an unknown instance.
    let e = error(&insert(0, "global_defs {\n    lvs_sync_daemon lan0 VI_X\n}"));
    assert_eq!(where_(&e), (13, 2, "lvs_sync_daemon".into()));
    // Two instances with the same router id on one port.
    let e = error(&insert(7, "vrrp_instance VI_2 {\n    interface dp0\n    virtual_router_id 9\n}"));
    assert_eq!(where_(&e), (13, 8, "vrrp_instance".into()));
}

#[test]
fn doc_lists_every_ignored_and_unsupported_keyword() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/docs/keepalived.md");
    let doc = std::fs::read_to_string(&doc_path).expect("deploy/docs/keepalived.md");
    for (block, keyword, _) in keepalived::IGNORED_KEYWORDS.iter().chain(keepalived::UNSUPPORTED_KEYWORDS) {
        assert!(doc.contains(&format!("`{keyword}`")), "{block} {keyword} is not documented");
    }
}

/// Why a sample is refused: exit code, line, keyword.
type Refusal = (u8, usize, &'static str);

/// What the importer answers for each sample Keepalived and DPVS ship
/// (`tests/fixtures/keepalived-samples/`, see its README): `None` when the
/// sample imports, else the exit code, line and keyword of the refusal. The
/// same list is the table "Keepalived and DPVS samples" of deploy/docs/keepalived.md.
const SAMPLES: &[(&str, Option<Refusal>)] = &[
    ("keepalived/keepalived.conf.HTTP_GET.port", None),
    ("keepalived/keepalived.conf.IPv6", Some((12, 7, "virtual_server_group"))),
    ("keepalived/keepalived.conf.PING_CHECK", Some((12, 23, "PING_CHECK"))),
    ("keepalived/keepalived.conf.SMTP_CHECK", Some((12, 39, "SMTP_CHECK"))),
    ("keepalived/keepalived.conf.SSL_GET", Some((12, 20, "auth_type AH"))),
    ("keepalived/keepalived.conf.UDP_CHECK", None),
    ("keepalived/keepalived.conf.conditional_conf", Some((12, 3, "@high"))),
    ("keepalived/keepalived.conf.fwmark", Some((12, 7, "fwmark"))),
    ("keepalived/keepalived.conf.inhibit", None),
    ("keepalived/keepalived.conf.misc_check", None),
    ("keepalived/keepalived.conf.misc_check_arg", None),
    ("keepalived/keepalived.conf.quorum", None),
    ("keepalived/keepalived.conf.sample", None),
    ("keepalived/keepalived.conf.status_code", None),
    ("keepalived/keepalived.conf.track_interface", Some((12, 7, "static_routes"))),
    ("keepalived/keepalived.conf.virtual_server_group", Some((12, 13, "virtual_server_group"))),
    ("keepalived/keepalived.conf.virtualhost", None),
    ("keepalived/keepalived.conf.vrrp", Some((13, 32, "192.168.200.18"))),
    ("keepalived/keepalived.conf.vrrp.localcheck", Some((12, 51, "weight"))),
    ("keepalived/keepalived.conf.vrrp.lvs_syncd", Some((12, 11, "lvs_sync_daemon_interface"))),
    ("keepalived/keepalived.conf.vrrp.routes", Some((12, 7, "static_routes"))),
    ("keepalived/keepalived.conf.vrrp.rules", Some((12, 9, "static_rules"))),
    ("keepalived/keepalived.conf.vrrp.scripts", None),
    ("keepalived/keepalived.conf.vrrp.static_ipaddress", Some((12, 7, "static_ipaddress"))),
    ("keepalived/keepalived.conf.vrrp.sync", None),
    ("dpvs/containerized-keepalived.conf", Some((12, 37, "virtual_server_group"))),
];

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keepalived-samples")
}

#[test]
fn keepalived_and_dpvs_samples() {
    let dir = samples_dir();
    let base = Config::load(dir.join("base.json")).expect("samples base.json is valid");
    let mut on_disk: Vec<String> = ["keepalived", "dpvs"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(dir.join(sub))
                .expect("sample folder")
                .map(move |e| format!("{sub}/{}", e.expect("entry").file_name().to_string_lossy()))
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SAMPLES.iter().map(|(name, _)| name.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every sample file has an expected outcome");
    for (name, expected) in SAMPLES {
        let outcome = keepalived::import_file(&dir.join(name), &base);
        match (expected, outcome) {
            (None, Ok(_)) => {}
            (None, Err(e)) => panic!("{name} must import: {e}"),
            (Some(want), Ok(_)) => panic!("{name} must be refused at {want:?}"),
            (Some((code, line, keyword)), Err(e)) => {
                assert_eq!(where_(&e), (*code, *line, keyword.to_string()), "{name}: {e}");
            }
        }
    }
    // The doc's table names every refused sample with its keyword.
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/docs/keepalived.md"))
        .expect("deploy/docs/keepalived.md");
    let section = doc.split("## Keepalived and DPVS samples").nth(1).expect("samples section");
    for (name, expected) in SAMPLES {
        let file = name.rsplit('/').next().unwrap_or(name);
        let row = section.lines().find(|l| l.contains(&format!("`{file}`"))).unwrap_or_else(|| panic!("{name} not in the table"));
        match expected {
            None => assert!(row.contains("imports"), "{row}"),
            Some((_, _, keyword)) => assert!(row.contains(&format!("`{keyword}`")), "{row}"),
        }
    }
}

/// MINI with a `global_defs` block holding `lines`, and a vrrp_script running `script`.
fn with_globals_and_script(lines: &str, script: &str) -> String {
    insert(0, &format!("global_defs {{\n{lines}\n}}\nvrrp_script chk {{\n    script \"{script} -0 x\"\n}}"))
}

#[test]
fn script_user_is_accepted_when_rvsd_is_that_user() {
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid()).expect("passwd").expect("current user");
    let text = with_globals_and_script(&format!("    script_user {}\n    enable_script_security", me.name), "/bin/true");
    keepalived::parse_str(&text, &base()).expect("accepted: nothing changes");
    // Another user: the scripts would run as rvsd's user instead, refused.
    let other = if me.uid.is_root() { "nobody" } else { "root" };
    let e = error(&with_globals_and_script(&format!("    script_user {other}"), "/bin/true"));
    assert_eq!(where_(&e), (12, 2, "script_user".to_string()), "{e}");
    assert!(e.to_string().contains(&format!("not `{other}`")), "{e}");
    let e = error(&with_globals_and_script("    script_user no-such-user-rvs", "/bin/true"));
    assert_eq!(where_(&e), (13, 2, "script_user".to_string()), "{e}");
}

#[test]
fn enable_script_security_refuses_scripts_others_can_change() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("rvs-ka-scripts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let script = dir.join("check.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let text = with_globals_and_script("    enable_script_security", &script.display().to_string());
    let e = error(&text);
    assert_eq!(where_(&e), (13, 5, "script".to_string()), "{e}");
    assert!(e.to_string().contains("enable_script_security"), "{e}");
    // Without enable_script_security Keepalived runs it, and so does rvs.
    keepalived::parse_str(&text.replace("    enable_script_security", ""), &base()).expect("accepted");
    // A program found on PATH is checked where it is.
    keepalived::parse_str(&with_globals_and_script("    enable_script_security", "true"), &base()).expect("root's /bin/true");
    let _ = std::fs::remove_dir_all(&dir);
}
