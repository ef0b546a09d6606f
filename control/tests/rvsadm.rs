//! rvsadm: golden listings (expected text computed from ipvsadm.c's format
//! strings by `golden/generate.py`, not from rvsadm), the grammar, and the
//! whole tool against a live API server on a random localhost port.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command as Process, Stdio};

use common::{Server, EMPTY_CONFIG};
use rvs_control::api::{ApiOptions, RealStatsView, ServiceStatsView};
use rvs_control::config::{Config, PersistenceNetmask};
use rvs_control::ipvsadm::format::{self, ListInput, ServiceNames};
use rvs_control::ipvsadm::parse::{parse, Command, Format, Opt};
use rvs_control::ipvsadm::run::parse_restore;
use rvs_control::ipvsadm::{run, AdmError, Client};
use rvs_control::rate::Rates;
use rvs_dataplane::snapshot::{ForwardMode, Protocol, ServiceKey};
use rvs_dataplane::stats::{ConnInfo, TrafficCounters};

// ---------------------------------------------------------------------------
// Golden listings

const GOLDEN_CONFIG: &str = r#"{
  "workers": [1, 2],
  "conn_table_size": 65536,
  "ports": [ { "name": "lan0", "device": "net_ring0", "addresses": ["10.0.0.1/24", "10.1.0.1/16"] } ],
  "services": [
    { "protocol": "udp", "vip": "10.0.0.53", "port": 53, "scheduler": "wlc", "forward": "nat",
      "persistence": { "timeout": 600 },
      "reals": [ { "address": "10.1.0.21", "port": 5353, "weight": 3 } ] },
    { "protocol": "tcp", "vip": "10.0.0.100", "port": 443, "scheduler": "sh", "sched_options": { "hash": "src_addr_port" },
      "persistence": { "timeout": 300, "netmask": "255.255.255.0" }, "local_addresses": ["10.0.0.5", "10.0.0.6"],
      "reals": [ { "address": "10.1.0.32", "port": 8443, "weight": 0, "forward": "fullnat" },
                 { "address": "10.1.0.31", "weight": 1, "forward": "tun", "upper_threshold": 100, "lower_threshold": 50 } ] },
    { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr",
      "reals": [ { "address": "10.1.0.12", "weight": 2 }, { "address": "10.1.0.11", "weight": 1 } ] }
  ]
}"#;

fn golden(name: &str) -> String {
    let path = format!("{}/tests/golden/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).expect("golden file").replace("@VERSION@", env!("CARGO_PKG_VERSION"))
}

fn traffic(conns: u64, in_pkts: u64, in_bytes: u64) -> TrafficCounters {
    TrafficCounters { conns, in_pkts, out_pkts: 0, in_bytes, out_bytes: 0 }
}

fn rates(cps: u64, in_pps: u64, in_bps: u64) -> Rates {
    Rates { cps, in_pps, out_pps: 0, in_bps, out_bps: 0 }
}

fn golden_stats() -> Vec<ServiceStatsView> {
    vec![ServiceStatsView {
        protocol: Protocol::Tcp,
        vip: Ipv4Addr::new(10, 0, 0, 100).into(),
        port: 80,
        traffic: traffic(1239, 56839, 123_461_789),
        active: 3,
        inactive: 13,
        rates: rates(12, 3400, 2_500_000),
        reals: vec![
            RealStatsView {
                address: Ipv4Addr::new(10, 1, 0, 11).into(),
                port: 80,
                traffic: traffic(1234, 56789, 123_456_789),
                active: 3,
                inactive: 12,
                rates: rates(11, 3000, 2_400_000),
            },
            RealStatsView {
                address: Ipv4Addr::new(10, 1, 0, 12).into(),
                port: 80,
                traffic: traffic(5, 50, 5000),
                active: 0,
                inactive: 1,
                rates: rates(1, 400, 100_000),
            },
        ],
    }]
}

fn https_key() -> ServiceKey {
    ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port: 443 }
}

fn conn(p: Protocol, expires_s: u64, state: &str, c: &str, v: &str, r: &str) -> ConnInfo {
    ConnInfo {
        worker: 0,
        protocol: p,
        client: c.parse().expect("client"),
        vip: v.parse().expect("vip"),
        real: r.parse().expect("real"),
        local: None,
        forward: ForwardMode::Dr,
        state: state.to_owned().into(),
        expires_ms: expires_s * 1000 + 400,
        template: false,
        seq_delta: 0,
        syn_proxy: None,
    }
}

fn golden_conns() -> Vec<ConnInfo> {
    let mut template = conn(Protocol::Tcp, 300, "NONE", "192.168.1.0:0", "10.0.0.100:443", "10.1.0.31:443");
    template.template = true;
    let mut fnat = conn(Protocol::Tcp, 100, "ESTABLISHED", "192.168.1.12:40001", "10.0.0.100:443", "10.1.0.32:8443");
    fnat.local = Some("10.0.0.5:1025".parse().expect("local"));
    fnat.forward = ForwardMode::FullNat;
    vec![
        conn(Protocol::Tcp, 899, "ESTABLISHED", "192.168.1.10:40000", "10.0.0.100:80", "10.1.0.11:80"),
        conn(Protocol::Udp, 65, "UDP", "192.168.1.11:5000", "10.0.0.53:53", "10.1.0.21:5353"),
        template,
        fnat,
    ]
}

/// Renders a listing of the golden table with the options of `args`.
fn render(args: &str) -> String {
    let config = Config::from_json(GOLDEN_CONFIG).expect("golden config");
    let stats = golden_stats();
    let mut persist = HashMap::new();
    persist.insert((https_key(), Ipv4Addr::new(10, 1, 0, 31).into(), 443), 4u32);
    let names = ServiceNames::parse("http 80/tcp www\nhttps 443/tcp\ndomain 53/udp\ndomain 53/tcp\n");
    let argv: Vec<String> = args.split_whitespace().map(str::to_string).collect();
    let inv = parse(&argv).expect("valid arguments");
    let none = ServiceNames::default();
    let names = if inv.format.numeric { &none } else { &names };
    let input = ListInput { config: &config, stats: &stats, persist_conns: &persist, names };
    match inv.command {
        Command::Save => format::save(&input, &inv.format),
        Command::List if inv.service.is_some() => format::list_service(&input, &https_key(), &inv.format).expect("service exists"),
        Command::List if inv.options.contains(&Opt::Connection) => format::list_connections(&golden_conns(), &inv.format, names),
        Command::List => format::list_all(&input, &inv.format),
        other => panic!("not a listing: {other:?}"),
    }
}

#[track_caller]
fn assert_text(got: &str, want: &str) {
    if got != want {
        panic!("listing differs\n--- got ---\n{got}--- want ---\n{want}---");
    }
}

#[test]
fn golden_list_numeric() {
    assert_text(&render("-Ln"), &golden("list_numeric"));
    // `ipvsadm` alone and `-l` list the same way (with names).
    assert_eq!(parse(&[]).expect("no arguments").command, Command::List);
}

#[test]
fn golden_list_with_port_names() {
    assert_text(&render("-L"), &golden("list_names"));
}

#[test]
fn golden_stats_listing() {
    assert_text(&render("-L -n --stats"), &golden("list_stats"));
    assert_text(&render("-Ln --stats --exact"), &golden("list_stats_exact"));
}

#[test]
fn golden_rate() {
    assert_text(&render("-Ln --rate"), &golden("list_rate"));
    assert_text(&render("-Ln --rate -X"), &golden("list_rate_exact"));
}

#[test]
fn golden_thresholds_persistent_conn_tun_info() {
    assert_text(&render("-Ln --thresholds"), &golden("list_thresholds"));
    assert_text(&render("-Ln --persistent-conn"), &golden("list_persistent_conn"));
    assert_text(&render("-Ln --tun-info"), &golden("list_tun_info"));
}

#[test]
fn golden_one_service_and_save() {
    assert_text(&render("-Ln -t 10.0.0.100:443"), &golden("list_one_service"));
    assert_text(&render("-S -n"), &golden("save_numeric"));
}

#[test]
fn golden_connections_timeout_laddrs() {
    assert_text(&render("-Lnc"), &golden("connections"));
    assert_text(&render("-L -n -c --persistent-conn"), &golden("connections_persistent"));
    let config = Config::from_json(GOLDEN_CONFIG).expect("golden config");
    assert_text(&format::list_timeout(&config.timeouts), &golden("timeout"));
    let mut counts = HashMap::new();
    counts.insert((https_key(), Ipv4Addr::new(10, 0, 0, 5).into()), 1u32);
    assert_text(&format::list_laddrs(&config, None, &counts), &golden("laddrs"));
}

#[test]
fn long_names_are_cut_like_ipvsadm() {
    // svc_name[33] and dname[28]: a long service name is cut, not widened.
    let names = ServiceNames::parse("a-very-long-service-name-indeed 8080/tcp\n");
    let config = Config::from_json(
        r#"{"ports": [{"name": "p", "device": "d", "addresses": ["10.0.0.1/24"]}],
            "services": [{"protocol": "tcp", "vip": "100.100.100.100", "port": 8080, "scheduler": "rr",
                          "reals": [{"address": "200.200.200.200", "weight": 1}]}]}"#,
    )
    .expect("valid");
    let none = HashMap::new();
    let input = ListInput { config: &config, stats: &[], persist_conns: &none, names: &names };
    let text = format::list_all(&input, &Format::default());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[3], "TCP  100.100.100.100:a-very-long- rr");
    assert_eq!(lines[4], "  -> 200.200.200.200:a-very-long- Route   1      0          0         ");
}

// ---------------------------------------------------------------------------
// Grammar

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn parse_err(s: &str) -> String {
    parse(&args(s)).expect_err("must be refused").message
}

#[test]
fn grammar_accepts_ipvsadm_forms() {
    let inv = parse(&args("-Lnc")).expect("clustered");
    assert_eq!(inv.command, Command::List);
    assert!(inv.format.numeric);
    let inv = parse(&args("-At 10.0.0.1:80 -s rr -p")).expect("cluster with argument");
    assert_eq!(inv.command, Command::AddService);
    // A bare -p is IPVS_SVC_PERSISTENT_TIMEOUT, (6*60) in libipvs.h.
    assert_eq!(inv.persistent, Some(360));
    assert_eq!(inv.scheduler.as_deref(), Some("rr"));
    let inv = parse(&args("-A -t10.0.0.1:80 -p 60 -M 255.255.255.0")).expect("attached value");
    assert_eq!(inv.persistent, Some(60));
    assert_eq!(inv.netmask, Some(PersistenceNetmask::Mask(Ipv4Addr::new(255, 255, 255, 0))));
    let inv = parse(&args("--add-service --tcp-service=10.0.0.1:80 --persistent=90")).expect("long forms");
    assert_eq!(inv.persistent, Some(90));
    // `-p` followed by an option takes no value.
    let inv = parse(&args("-A -t 10.0.0.1:80 -p -s wrr")).expect("optional value");
    assert_eq!(inv.persistent, Some(360));
    // MAX_TIMEOUT (86400*31) is accepted, one more is not (ipvsadm.c's parse_timeout).
    assert_eq!(parse(&args("-A -t 10.0.0.1:80 -p 2678400")).expect("31 days").persistent, Some(2_678_400));
    assert_eq!(parse_err("-A -t 10.0.0.1:80 -p 2678401"), "invalid timeout value `2678401' specified");
    let inv = parse(&args("-a -u 10.0.0.1:53 -r 10.1.0.1:5353 -m -w 0 -x 10 -y 5")).expect("add server");
    assert_eq!(inv.forward, Some(ForwardMode::Nat));
    assert_eq!((inv.weight, inv.u_threshold, inv.l_threshold), (Some(0), Some(10), Some(5)));
    assert_eq!(inv.service.map(|(p, _)| p), Some(Protocol::Udp));
    let inv = parse(&args("-a -t 10.0.0.1:80 -r 10.1.0.1 -b")).expect("DPVS fullnat");
    assert_eq!(inv.forward, Some(ForwardMode::FullNat));
    let inv = parse(&args("-A -t 10.0.0.1:80 -s sh -b sh-port,sh-fallback")).expect("ipvsadm -b flags");
    assert_eq!(inv.sched_flags, vec!["sh-port", "sh-fallback"]);
    assert_eq!(inv.forward, None);
    let inv = parse(&args("-P -t 10.0.0.1:80 -z 10.0.0.9 -F dpdk0")).expect("DPVS laddr");
    assert_eq!(inv.laddr, Some(Ipv4Addr::new(10, 0, 0, 9).into()));
    let inv = parse(&args("--set 900 0 300")).expect("set");
    assert_eq!(inv.timeouts, Some([900, 0, 300]));
    assert_eq!(parse(&args("-Z")).expect("zero").command, Command::Zero);
    assert_eq!(parse(&args("-G")).expect("get laddr").command, Command::GetLaddr);
}

#[test]
fn grammar_errors_read_like_ipvsadm() {
    assert_eq!(parse_err("-a -t 10.0.0.1:80 -r 10.1.0.1 -w 70000"), "illegal weight specified");
    assert_eq!(parse_err("-a -t 10.0.0.1:80 -r 10.1.0.1 -x -1"), "illegal u_threshold specified");
    assert_eq!(parse_err("-A -t 10.0.0.1:80 -p 0"), "invalid timeout value `0' specified");
    assert_eq!(parse_err("-A -t 10.0.0.1:80 -p 9999999"), "invalid timeout value `9999999' specified");
    assert_eq!(parse_err("-A -t :80"), "illegal virtual server address[:port] specified");
    assert_eq!(parse_err("-A -t 10.0.0.1:no-such-port-name"), "illegal virtual server address[:port] specified");
    // inet_aton's short forms are addresses, as in ipvsadm: 10.0.0 is 10.0.0.0, without a port.
    assert_eq!(parse_err("-A -t 10.0.0"), "Zero port specified for non-persistent service");
    assert_eq!(parse_err("-A -t 10.0.0.1:99999"), "illegal virtual server address[:port] specified");
    assert_eq!(parse_err("-a -t 10.0.0.1:80 -r 1234"), "illegal real server address[:port] specified");
    assert_eq!(parse_err("-A -t 10.0.0.1:80 -M 255.255.0"), "illegal virtual server persistent mask specified");
    assert_eq!(parse_err("-A -t 10.0.0.1"), "Zero port specified for non-persistent service");
    // popt hands ipvsadm a second command as an option its second switch does not know.
    assert_eq!(parse_err("-A -D -t 10.0.0.1:80"), "invalid option `-D'");
    assert_eq!(parse_err("-A -t 10.0.0.1:80 -s rr -s wrr"), "multiple 'scheduler' options specified");
    assert_eq!(parse_err("-A -s rr"), "You need to supply the 'service-address' option for the 'add-service' command");
    assert_eq!(parse_err("-a -t 10.0.0.1:80"), "You need to supply the 'real-server' option for the 'add-server' command");
    assert_eq!(parse_err("-A -t 10.0.0.1:80 -w 3"), "Illegal 'weight' option with the 'add-service' command");
    assert_eq!(parse_err("-D -t 10.0.0.1:80 -s rr"), "Illegal 'scheduler' option with the 'delete-service' command");
    assert_eq!(parse_err("-L -c --timeout"), "The option 'timeout' conflicts with the 'connection' option in the 'list' command");
    assert_eq!(parse_err("-L -c --stats"), "options conflicts in the list command");
    assert_eq!(parse_err("--set 900 120"), "--set option requires 3 timeout values");
    assert_eq!(parse_err("-L extra"), "unexpected argument extra");
    assert_eq!(parse_err("-C -n"), "Illegal 'numeric' option with the 'flush' command");
    assert_eq!(parse_err("-P -t 10.0.0.1:80"), "You need to supply the 'laddr' option for the 'add-laddr' command");
    assert_eq!(parse_err("-a -t 10.0.0.1:80 -r 10.1.0.1 -g --tun-type ipip"), "Tunnel options conflict with forward method");
    assert!(parse_err("-A -f 1").contains("not supported by rvs"));
    assert!(parse_err("--start-daemon master").contains("not supported by rvs"));
    // The first option must be a command: else only the hint, exit status 255.
    for line in ["-K", "-n", "-r 10.1.0.1", "foo"] {
        let e = parse(&args(line)).expect_err("no command first");
        assert!(e.try_help && e.message.is_empty() && e.status == 255, "{line}: {e:?}");
    }
    let e = parse(&args("-L -K")).expect_err("unknown");
    assert!(!e.try_help && e.message == "-K: unknown option" && e.status == 255, "{e:?}");
}

#[test]
fn restore_input_is_checked_before_anything_changes() {
    let text = "# comment\n\n-A -t 10.0.0.1:80 -s rr\nipvsadm -a -t 10.0.0.1:80 -r 10.1.0.1 -g -w 1\n";
    let cmds = parse_restore(text).expect("valid");
    assert_eq!(cmds.len(), 2);
    assert_eq!(cmds[1].0, 4);
    let e = parse_restore("-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.1.0.1 -w 99999\n").expect_err("bad line");
    assert!(e.message.starts_with("illegal weight specified\nrvsadm: line 2"), "{}", e.message);
    let e = parse_restore("-L -n\n").expect_err("listing");
    assert!(e.message.contains("cannot be restored"), "{}", e.message);
}

// ---------------------------------------------------------------------------
// Against a live API

fn rvsadm(client: &Client, line: &str) -> Result<String, AdmError> {
    let mut out = Vec::new();
    run(&args(line), client, &mut std::io::empty(), &mut out)?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

fn ok(client: &Client, line: &str) -> String {
    rvsadm(client, line).unwrap_or_else(|e| panic!("rvsadm {line}: {}", e.message))
}

fn restore(client: &Client, text: &str) -> Result<(), AdmError> {
    let mut out = Vec::new();
    run(&args("-R"), client, &mut text.as_bytes(), &mut out)
}

/// Services in ipvsadm's listing order (a restore adds them in that order).
fn sorted(mut services: Vec<rvs_control::ServiceConfig>) -> Vec<rvs_control::ServiceConfig> {
    services.sort_by_key(|s| (s.protocol.ip_proto(), s.vip, s.port));
    services
}

fn server() -> Server {
    Server::start(Config::from_json(EMPTY_CONFIG).expect("valid"), ApiOptions::default())
}

fn build_table(c: &Client) {
    for line in [
        "-A -t 10.0.0.100:80 -s rr",
        "-a -t 10.0.0.100:80 -r 10.1.0.11 -g -w 2",
        "-a -t 10.0.0.100:80 -r 10.1.0.12:80 -w 1 -x 10 -y 5",
        "-A -u 10.0.0.53:53 -p",
        "-a -u 10.0.0.53:53 -r 10.1.0.21:5353 -m -w 3",
        "-A -t 10.0.0.100:443 -s sh --sched-flags sh-port -p 120 -M 255.255.255.0",
        "-P -t 10.0.0.100:443 -z 10.0.0.5 -F dpdk0",
        "-P -t 10.0.0.100:443 -z 10.0.0.6",
        "-a -t 10.0.0.100:443 -r 10.1.0.31:8443 -b -w 4",
        "-a -t 10.0.0.100:443 -r 10.1.0.32:9999 -i",
        "-A -t 10.0.0.101:80 -s maglev",
        "-a -t 10.0.0.101:80 -r 10.1.0.41 -w 0",
        "--set 600 60 120",
    ] {
        ok(c, line);
    }
}

#[test]
fn save_clear_restore_round_trip() {
    let s = server();
    let c = Client::new(&s.url(), None);
    build_table(&c);
    let listing = ok(&c, "-Ln");
    let saved = ok(&c, "-S -n");
    let services = sorted(s.config().services);
    assert!(listing.contains("  -> 10.1.0.32:443                Tunnel  1      0          0         \n"), "{listing}");
    assert!(saved.contains("-a -t 10.0.0.100:80 -r 10.1.0.12:80 -g -w 1 -x 10 -y 5\n"), "{saved}");
    assert!(saved.contains("-P -t 10.0.0.100:443 -z 10.0.0.5\n"), "{saved}");
    assert_eq!(ok(&c, "-L --timeout"), "Timeout (tcp tcpfin udp): 600 60 120\n");

    ok(&c, "-C");
    let empty = ok(&c, "-Ln");
    assert_eq!(empty.lines().count(), 3, "{empty}");
    assert!(s.config().services.is_empty());

    restore(&c, &saved).expect("restore");
    assert_text(&ok(&c, "-Ln"), &listing);
    assert_text(&ok(&c, "-S -n"), &saved);
    assert_eq!(sorted(s.config().services), services);
    // Restoring onto the same table changes nothing (and is refused only for duplicates).
    let e = restore(&c, &saved).expect_err("duplicates");
    assert!(e.message.starts_with("Service already exists\nrvsadm: restore stopped at line 1"), "{}", e.message);
    assert_eq!(sorted(s.config().services), services);
}

#[test]
fn replays_a_real_lvs_rules_file() {
    let s = server();
    let c = Client::new(&s.url(), None);
    let rules = std::fs::read_to_string(format!("{}/tests/fixtures/lvs-production.rules", env!("CARGO_MANIFEST_DIR"))).expect("fixture");
    restore(&c, &rules).expect("replay");
    assert_text(&ok(&c, "-Ln"), &golden("fixture_list"));
    let config = s.config();
    assert_eq!(config.services.len(), 6);
    // One change: the whole file became one snapshot.
    assert_eq!(s.dataplane.count(), 1);
    // `-S` of the replayed table replays to the same table.
    let saved = ok(&c, "-Sn");
    ok(&c, "-C");
    restore(&c, &saved).expect("replay of the save");
    assert_eq!(sorted(s.config().services), sorted(config.services));
}

#[test]
fn changes_follow_ipvsadm_semantics() {
    let s = server();
    let c = Client::new(&s.url(), None);
    ok(&c, "-A -t 10.0.0.100:80 -s rr -p 600");
    // DR forces the real server port to the service port, as ipvsadm does.
    ok(&c, "-a -t 10.0.0.100:80 -r 10.1.0.11:8080 -w 5");
    let cfg = s.config();
    assert_eq!(cfg.services[0].reals[0].port, None);
    // -e resets what it is not given: weight back to 1.
    ok(&c, "-e -t 10.0.0.100:80 -r 10.1.0.11 -x 7");
    let r = &s.config().services[0].reals[0];
    assert_eq!((r.weight, r.upper_threshold), (1, 7));
    // -E resets the scheduler to wlc and drops persistence when not given.
    ok(&c, "-E -t 10.0.0.100:80");
    let svc = &s.config().services[0];
    assert_eq!(svc.scheduler.to_string(), "wlc");
    assert!(svc.persistence.is_none());

    let err = |line: &str| rvsadm(&c, line).expect_err("refused");
    assert_eq!(err("-A -t 10.0.0.100:80").message, "Service already exists");
    assert_eq!(err("-A -t 10.0.0.100:81 -s fastest").message, "Scheduler not found");
    assert_eq!(err("-E -t 10.0.0.100:81").message, "No such service");
    assert_eq!(err("-D -t 10.0.0.100:81").message, "No such service");
    assert_eq!(err("-a -t 10.0.0.100:81 -r 10.1.0.11").message, "Service not defined");
    assert_eq!(err("-a -t 10.0.0.100:80 -r 10.1.0.11").message, "Destination already exists");
    assert_eq!(err("-d -t 10.0.0.100:80 -r 10.1.0.99").message, "No such destination");
    assert_eq!(err("-L -n -t 10.0.0.100:81").message, "No such service");
    assert_eq!(err("-A -t 10.0.0.100:82 -s sh --sched-flags mh-port").message, "incompatible scheduler flag `mh-port'");
    // rvsd's own validation comes back as its message; nothing changes.
    let before = s.config();
    let e = err("-a -t 10.0.0.100:80 -r 10.0.0.1");
    assert_eq!(e.code, 1);
    assert!(e.message.contains("own port addresses"), "{}", e.message);
    // IPVS refuses l_threshold > u_threshold with -ERANGE, ipvsadm prints strerror(ERANGE).
    assert_eq!(err("-a -t 10.0.0.100:80 -r 10.1.0.12 -x 5 -y 9").message, "Numerical result out of range");
    assert_eq!(err("-a -t 10.0.0.100:80 -r 10.1.0.12 -y 5").message, "Numerical result out of range");
    assert_eq!(s.config(), before);

    ok(&c, "-d -t 10.0.0.100:80 -r 10.1.0.11");
    ok(&c, "-D -t 10.0.0.100:80");
    assert!(s.config().services.is_empty());
}

#[test]
fn zero_and_laddr_listing() {
    let s = server();
    let c = Client::new(&s.url(), None);
    ok(&c, "-A -t 10.0.0.100:443 -s rr");
    ok(&c, "-P -t 10.0.0.100:443 -z 10.0.0.5");
    ok(&c, "-a -t 10.0.0.100:443 -r 10.1.0.31 -b");
    let g = ok(&c, "-G -t 10.0.0.100:443");
    assert_eq!(g.lines().nth(1), Some("10.0.0.100:443       1        "));
    assert_eq!(rvsadm(&c, "-Q -t 10.0.0.100:443 -z 10.0.0.9").expect_err("missing").message, "No such local address");
    // Removing the last local address of a FULLNAT service is accepted, as in
    // DPVS: the service then forwards nothing and its listing says so.
    ok(&c, "-Q -t 10.0.0.100:443 -z 10.0.0.5");
    assert!(ok(&c, "-Ln").contains(&format!("TCP  10.0.0.100:443 rr{}\n", format::NO_LADDR_NOTE)));
    ok(&c, "-Z");
    ok(&c, "-Z -t 10.0.0.100:443");
    assert_eq!(rvsadm(&c, "-Z -t 10.0.0.100:444").expect_err("missing").message, "No such service");
    assert_eq!(s.dataplane.zeroed.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(ok(&c, "-L --daemon"), "");
}

// ---------------------------------------------------------------------------
// The binary

fn bin(url: &str, line: &str, env: &[(&str, &str)], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_rvsadm"));
    cmd.args(args(line)).arg("--api").arg(url);
    cmd.env_remove("RVSADM_TOKEN").env_remove("RVS_API_TOKEN").env_remove("RVSADM_API");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run rvsadm");
    if let Some(text) = stdin {
        child.stdin.as_mut().expect("stdin").write_all(text.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("rvsadm output");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn binary_exit_codes_messages_and_restore_from_stdin() {
    let s = Server::start(Config::from_json(EMPTY_CONFIG).expect("valid"), ApiOptions { config_path: None, token: Some("s3cret".into()) });
    let url = s.url();
    let token = [("RVSADM_TOKEN", "s3cret")];
    let (code, _, err) = bin(&url, "-A -t 10.0.0.100:80 -s rr", &[], None);
    assert_eq!(code, 1);
    assert!(err.starts_with("Permission denied"), "{err}");
    let (code, _, err) = bin(&url, "-A -t 10.0.0.100:80 -s rr", &[("RVSADM_TOKEN", "wrong")], None);
    assert_eq!((code, err.contains("wrong bearer token")), (1, true), "{err}");
    assert!(s.config().services.is_empty());
    assert_eq!(bin(&url, "-A -t 10.0.0.100:80 -s rr", &[("RVS_API_TOKEN", "s3cret")], None).0, 0);
    let (code, _, err) = bin(&url, "-A -t 10.0.0.100:80", &token, None);
    assert_eq!((code, err.as_str()), (1, "Service already exists\n"));
    let (code, _, err) = bin(&url, "-a -t 10.0.0.100:80 -r 10.1.0.11 -w 70000", &token, None);
    assert_eq!((code, err.as_str()), (2, "illegal weight specified\n"));
    let (code, _, err) = bin(&url, "-Y", &token, None);
    assert_eq!((code, err.as_str()), (255, "Try `rvsadm -h' or 'rvsadm --help' for more information.\n"));
    let (code, out, _) = bin(&url, "-R", &token, Some("-a -t 10.0.0.100:80 -r 10.1.0.11 -g -w 3\n"));
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, out, _) = bin(&url, "-Ln", &[], None);
    assert_eq!(code, 0);
    assert!(out.ends_with("TCP  10.0.0.100:80 rr\n  -> 10.1.0.11:80                 Route   3      0          0         \n"), "{out}");
    let (code, out, _) = bin(&url, "-h", &[], None);
    assert_eq!(code, 0);
    assert!(out.contains("--add-laddr       -P"));
    drop(s);
    let (code, _, err) = bin("http://127.0.0.1:1", "-Ln", &[], None);
    assert_eq!(code, 2);
    assert!(err.starts_with("Can't reach rvsd at http://127.0.0.1:1"), "{err}");
}

// ---------------------------------------------------------------------------
// ipvsadm 1.31 parity

/// The lines ipvsadm refuses while parsing, with its message and exit status,
/// read off ipvsadm.c (fail(2, ...), popt's "%s: %s" and tryhelp_exit(-1) = 255).
/// `-w` is left out on purpose: Debian's 1.31 takes weights up to INT_MAX, rvs up to 65535.
const PARSE_ERRORS: &[(&str, &str, i32)] = &[
    ("-A -E", "invalid option `-E'\n", 2),
    ("-AE", "invalid option `-AE'\n", 2),
    ("-A -t 10.0.0.1:80 --edit-service", "invalid option `--edit-service'\n", 2),
    ("-L -h", "invalid option `-h'\n", 2),
    ("-A -t 10.0.0.1:80 -s rr -b nosuch-flag", "invalid scheduler flag `nosuch-flag'\n", 2),
    ("-A -t 10.0.0.1:80 -s sh -b sh-port,nosuch", "invalid scheduler flag `nosuch'\n", 2),
    ("-A -t 10.0.0.1:80 -s rr -b sh-port", "incompatible scheduler flag `sh-port'\n", 2),
    ("-A -t 10.0.0.1:80 -b mh-fallback", "incompatible scheduler flag `mh-fallback'\n", 2),
    ("-a -t 10.0.0.1:80 -r 10.1.0.1 -b sh-port", "incompatible scheduler flag `sh-port'\n", 2),
    ("-r 10.1.0.1", "Try `rvsadm -h' or 'rvsadm --help' for more information.\n", 255),
    ("-K -L", "Try `rvsadm -h' or 'rvsadm --help' for more information.\n", 255),
    ("foo", "Try `rvsadm -h' or 'rvsadm --help' for more information.\n", 255),
    ("-AK", "-AK: unknown option\n", 255),
    ("-A --foo=3", "--foo=3: unknown option\n", 255),
    ("-A --numeric=3", "--numeric=3: option does not take an argument\n", 255),
    ("-A -t", "-t: missing argument\n", 255),
    ("-At", "-At: missing argument\n", 255),
    ("foo -L -n", "unexpected argument foo\n", 2),
    ("-L -n -n", "multiple 'numeric' options specified\n", 2),
    ("-A -t 10.0.0.1:80 -p 2678401", "invalid timeout value `2678401' specified\n", 2),
    ("-A -t 10.0.0.1:80 -p abc", "invalid timeout value `abc' specified\n", 2),
    ("-a -t 10.0.0.1:80 -r 10.1.0.1 -x 2147483648", "illegal u_threshold specified\n", 2),
    ("-a -t 10.0.0.1:80 -r 10.1.0.1 -y -1", "illegal l_threshold specified\n", 2),
    ("-Z -n", "Illegal 'numeric' option with the 'zero' command\n", 2),
    ("-A -s rr", "You need to supply the 'service-address' option for the 'add-service' command\n", 2),
    ("-A -t 10.0.0.1", "Zero port specified for non-persistent service\n", 2),
    ("--set 900 120", "--set option requires 3 timeout values\n", 2),
    ("-L -c --stats", "options conflicts in the list command\n", 2),
    ("-A -t :80", "illegal virtual server address[:port] specified\n", 2),
    ("-A -w 7 -t :80", "illegal virtual server address[:port] specified\n", 2),
    ("-a -t 10.0.0.1:80 -r 1234", "illegal real server address[:port] specified\n", 2),
    ("-A -t 10.0.0.1:80 -s rr -s wrr", "multiple 'scheduler' options specified\n", 2),
    ("-A -t [2001:db8::1] -s rr", "illegal virtual server address[:port] specified\n", 2),
    ("-A -t [2001:db8::1:80 -s rr", "illegal virtual server address[:port] specified\n", 2),
    ("-A -t [2001:db8::1]:80 -6", "-6 used before -f\n\n", 2),
    ("-a -t [2001:db8::1]:80 -r 10.1.0.1:80", "Different address family is allowed only for tunneling servers\n", 2),
    ("-a -t 10.0.0.1:80 -r [2001:db8::11]:80 -m", "Different address family is allowed only for tunneling servers\n", 2),
    // After an IPv6 service, -M is a prefix length 1..=128 read with atoi.
    ("-A -t [2001:db8::1]:80 -p 60 -M 0", "illegal ipv6 netmask specified\n", 2),
    ("-A -t [2001:db8::1]:80 -p 60 -M 129", "illegal ipv6 netmask specified\n", 2),
    ("-A -t [2001:db8::1]:80 -p 60 -M -5", "illegal ipv6 netmask specified\n", 2),
    ("-A -t [2001:db8::1]:80 -p 60 -M abc", "illegal ipv6 netmask specified\n", 2),
    ("-A -t [2001:db8::1]:80 -p 60 -M 255.255.255.0", "illegal ipv6 netmask specified\n", 2),
    ("-A -t [2001:db8::1]:80 -p 60 -M 64 -M 48", "multiple 'netmask' options specified\n", 2),
    ("-A -t 10.0.0.1:80 -p 60 -M 255.255.255.0.1", "illegal virtual server persistent mask specified\n", 2),
    ("-A -t 10.0.0.1:80 -p 60 -M 255.255.256.0", "illegal virtual server persistent mask specified\n", 2),
];

/// Lines ipvsadm parses (and then hands to the kernel).
const PARSE_OK: &[&str] = &[
    "-A -t 10.0.0.1:80 -p 2678400",
    "-A -t 10.0.0.1:80 -p -s rr",
    "-A -t 10.0.0.1:80 -s sh -b sh-fallback,sh-port",
    "-a -t 10.0.0.1:80 -r 10.1.0.1 -x 2147483647 -y 5",
    "-a -t 10.0.0.1:80 -r 10.1.0.1 -y 5",
];

/// IPv6 lines ipvsadm parses (and then hands to the kernel, which this
/// machine's shim answers for IPv6 with "Operation not supported with
/// specified address family").
const PARSE_OK6: &[&str] = &[
    "-A -t [2001:db8::1]:80 -s rr",
    "-A -t 2001:db8::1 -p 60",
    "-A -u [2001:db8::1]:domain",
    "-a -t [2001:db8::1]:80 -r [2001:db8::11]:8080 -m -w 3",
    "-a -t [2001:db8::1]:80 -r 10.1.0.1 -i",
    "-A -t [2001:db8::1]:80 -p 60 -M 64",
    "-A -t [2001:db8::1]:80 -p -M 128",
    "-E -u [2001:db8::1]:53 -s sh -p 300 -M 48",
    // atoi stops at the first non-digit.
    "-A -t [2001:db8::1]:80 -p 60 -M 64abc",
    // Before the service, -M is read as an IPv4 mask, then an IPv6 -t resets it to 128.
    "-A -M 255.255.255.0 -t [2001:db8::1]:80 -p 60",
];

/// Builds the LD_PRELOAD shim that lets /usr/sbin/ipvsadm parse without IPVS;
/// `None` when ipvsadm or a C compiler is missing.
fn ipvsadm_shim() -> Option<std::path::PathBuf> {
    if !std::path::Path::new("/usr/sbin/ipvsadm").exists() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("rvsadm-ipvsadm-shim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let so = dir.join("shim.so");
    let src = format!("{}/tests/fixtures/ipvsadm-shim.c", env!("CARGO_MANIFEST_DIR"));
    let built = Process::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&so).arg(&src).arg("-ldl").status().ok()?;
    built.success().then_some(so)
}

/// Runs the real ipvsadm (named rvsadm, so its messages name rvsadm too).
fn real_ipvsadm(shim: &std::path::Path, line: &str) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let out = Process::new("/usr/sbin/ipvsadm")
        .arg0("rvsadm")
        .args(args(line))
        .env("LD_PRELOAD", shim)
        .stdin(Stdio::null())
        .output()
        .expect("run ipvsadm");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn command_line_errors_match_ipvsadm() {
    for (line, message, code) in PARSE_ERRORS {
        let (got_code, out, err) = bin("http://127.0.0.1:1", line, &[], None);
        assert_eq!((got_code, err.as_str(), out.as_str()), (*code, *message, ""), "rvsadm {line}");
    }
    for line in PARSE_OK.iter().chain(PARSE_OK6) {
        parse(&args(line)).unwrap_or_else(|e| panic!("{line}: {e:?}"));
    }
    // The expectations above are ipvsadm's own behaviour: check them against it when it is here.
    let Some(shim) = ipvsadm_shim() else {
        eprintln!("/usr/sbin/ipvsadm or cc missing: compared with the expectations only");
        return;
    };
    for (line, message, code) in PARSE_ERRORS {
        assert_eq!(real_ipvsadm(&shim, line), (*code, message.to_string()), "ipvsadm {line}");
    }
    for line in PARSE_OK {
        assert_eq!(real_ipvsadm(&shim, line), (255, "Protocol not available\n".to_string()), "ipvsadm {line}");
    }
    for line in PARSE_OK6 {
        let refused_by_kernel = (255, "Operation not supported with specified address family\n".to_string());
        assert_eq!(real_ipvsadm(&shim, line), refused_by_kernel, "ipvsadm {line}");
    }
    let _ = std::fs::remove_dir_all(shim.parent().expect("shim dir"));
}

#[test]
fn help_keeps_ipvsadm_lines_and_indentation() {
    let fixture = std::fs::read_to_string(format!("{}/tests/fixtures/ipvsadm-1.31-help.txt", env!("CARGO_MANIFEST_DIR")))
        .expect("ipvsadm -h output")
        .replace("/usr/sbin/ipvsadm", "rvsadm");
    // What rvs does not have: fwmark/IPv6/SCTP services, persistence engines,
    // GUE/GRE tunnels, one-packet scheduling, the sync daemon; and the lines
    // that name ipvsadm's version, usage synopsis and scheduler list.
    let absent = [
        "ipvsadm v1.31",
        "--pe",
        "persistence_engine",
        "not set by default",
        "--start-daemon",
        "--stop-daemon",
        "--sctp-service",
        "--fwmark-service",
        "--ipv6",
        "--tun-type",
        "one of ipip|gue|gre",
        "the default tunnel type",
        "--tun-port",
        "csum",
        "--ops",
        "Daemon Options",
        "--sync",
        "--syncid",
        "--mcast",
        "--scheduler",
        "the default scheduler",
    ];
    let (code, help, _) = bin("http://127.0.0.1:1", "-h", &[], None);
    assert_eq!(code, 0);
    let mut rest = help.lines();
    for line in fixture.lines().filter(|l| !absent.iter().any(|a| l.contains(a))) {
        // Each shared line, character for character and in ipvsadm's order.
        assert!(rest.any(|l| l == line), "rvsadm -h lacks or reorders ipvsadm's line {line:?}\n{help}");
    }
    assert!(help.contains("  rvsadm -P|Q virtual-service -z local-address [-F ifname]\n"), "{help}");
}

#[test]
fn save_writes_scheduler_flags_as_ipvsadm_does() {
    let config = Config::from_json(
        r#"{"ports": [{"name": "p", "device": "d", "addresses": ["10.0.0.1/24"]}],
            "services": [
              {"protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "sh",
               "sched_options": {"fallback": true, "hash": "src_addr_port"}},
              {"protocol": "tcp", "vip": "10.0.0.100", "port": 81, "scheduler": "mh", "sched_options": {"fallback": true}}]}"#,
    )
    .expect("valid");
    let none = HashMap::new();
    let input = ListInput { config: &config, stats: &[], persist_conns: &none, names: &ServiceNames::default() };
    // print_sched_flags: " -b " then the flags, fallback before port.
    let saved = format::save(&input, &Format { numeric: true, ..Format::default() });
    assert_eq!(saved, "-A -t 10.0.0.100:80 -s sh -b sh-fallback,sh-port\n-A -t 10.0.0.100:81 -s mh -b mh-fallback\n");
    let inv = parse(&args(saved.lines().next().expect("line"))).expect("replays");
    assert_eq!((inv.sched_flags.len(), inv.forward), (2, None));
}

#[test]
fn synproxy_flag_parses_as_dpvs_spells_it() {
    use rvs_dataplane::snapshot::SynProxy;
    assert_eq!(parse(&args("-A -t 10.0.0.1:80 -s rr -j enable")).expect("-j enable").syn_proxy, Some(SynProxy::On));
    assert_eq!(parse(&args("-E -t 10.0.0.1:80 --synproxy disable")).expect("--synproxy").syn_proxy, Some(SynProxy::Off));
    assert_eq!(parse(&args("-At 10.0.0.1:80 --synproxy=auto")).expect("auto").syn_proxy, Some(SynProxy::Auto));
    assert_eq!(parse(&args("-A -t 10.0.0.1:80 -jenable")).expect("attached").syn_proxy, Some(SynProxy::On));
    assert_eq!(parse(&args("-A -t 10.0.0.1:80")).expect("absent").syn_proxy, None);
    assert_eq!(parse_err("-A -t 10.0.0.1:80 -j on"), "synproxy switch must be enable, disable or auto");
    assert_eq!(parse_err("-A -t 10.0.0.1:80 -j enable -j auto"), "multiple 'synproxy' options specified");
    assert_eq!(parse_err("-a -t 10.0.0.1:80 -r 10.1.0.1 -m -j enable"), "Illegal 'synproxy' option with the 'add-server' command");
    assert_eq!(parse_err("-L -n -j enable"), "Illegal 'synproxy' option with the 'list' command");
    let e = parse(&args("-A -t 10.0.0.1:80 -j")).expect_err("value needed");
    assert_eq!((e.message.as_str(), e.status), ("-j: missing argument", 255));
}

#[test]
fn synproxy_lists_as_dpvs_and_saves_as_j() {
    let config = Config::from_json(
        r#"{"ports": [{"name": "p", "device": "d", "addresses": ["10.0.0.1/24", "10.1.0.1/24"]}],
            "services": [
              {"protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr", "forward": "nat", "syn_proxy": "on",
               "persistence": {"timeout": 300}, "reals": [{"address": "10.1.0.11", "port": 8080}]},
              {"protocol": "tcp", "vip": "10.0.0.100", "port": 81, "scheduler": "wlc", "forward": "fullnat", "syn_proxy": "auto",
               "local_addresses": ["10.0.0.5"]},
              {"protocol": "tcp", "vip": "10.0.0.100", "port": 82, "scheduler": "wlc", "forward": "nat"}]}"#,
    )
    .expect("valid");
    let none = HashMap::new();
    let input = ListInput { config: &config, stats: &[], persist_conns: &none, names: &ServiceNames::default() };
    let numeric = Format { numeric: true, ..Format::default() };
    // DPVS's print_service_entry: printf("%s %s", svc_name, sched_name), " persistent %u", then " synproxy".
    assert_eq!(
        service_lines(&format::list_all(&input, &numeric)),
        vec![
            "TCP  10.0.0.100:80 rr persistent 300 synproxy".to_string(),
            "TCP  10.0.0.100:81 wlc synproxy auto".to_string(),
            "TCP  10.0.0.100:82 wlc".to_string(),
        ]
    );
    let saved = format::save(&input, &numeric);
    let rules: Vec<&str> = saved.lines().filter(|l| l.starts_with("-A")).collect();
    assert_eq!(
        rules,
        vec!["-A -t 10.0.0.100:80 -s rr -p 300 -j enable", "-A -t 10.0.0.100:81 -s wlc -j auto", "-A -t 10.0.0.100:82 -s wlc"]
    );
}

#[test]
fn synproxy_round_trips_through_save_and_restore() {
    use rvs_dataplane::snapshot::SynProxy;
    let s = server();
    let c = Client::new(&s.url(), None);
    for line in [
        "-A -t 10.0.0.100:80 -s rr -j enable",
        "-a -t 10.0.0.100:80 -r 10.1.0.11:8080 -m -w 2",
        "-A -t 10.0.0.100:443 --synproxy auto",
        "-P -t 10.0.0.100:443 -z 10.0.0.5",
        "-a -t 10.0.0.100:443 -r 10.1.0.31:8443 -b",
    ] {
        ok(&c, line);
    }
    let proxies: Vec<SynProxy> = sorted(s.config().services).iter().map(|x| x.syn_proxy).collect();
    assert_eq!(proxies, vec![SynProxy::On, SynProxy::Auto]);
    let listing = ok(&c, "-Ln");
    assert!(listing.contains("TCP  10.0.0.100:80 rr synproxy\n"), "{listing}");
    assert!(listing.contains("TCP  10.0.0.100:443 wlc synproxy auto\n"), "{listing}");
    let saved = ok(&c, "-S -n");
    let services = sorted(s.config().services);
    ok(&c, "-C");
    restore(&c, &saved).expect("restore");
    assert_eq!(sorted(s.config().services), services);
    assert_text(&ok(&c, "-Ln"), &listing);

    // rvsd refuses what a SYN proxy cannot serve, naming the field; nothing changes.
    let before = s.config();
    let e = rvsadm(&c, "-a -t 10.0.0.100:80 -r 10.1.0.12 -g").expect_err("DR real");
    assert!(e.message.contains("syn_proxy") && e.message.contains("forwarded by dr"), "{}", e.message);
    let e = rvsadm(&c, "-A -u 10.0.0.53:53 -j enable").expect_err("UDP");
    assert!(e.message.contains("syn_proxy") && e.message.contains("TCP services only"), "{}", e.message);
    assert_eq!(s.config(), before);
    // -E sets everything -A sets: without -j the proxy is off (DPVS's -E clears the flag too).
    ok(&c, "-E -t 10.0.0.100:80 -s rr");
    assert_eq!(
        s.config().services[s
            .config()
            .service_index(&ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port: 80 })
            .expect("kept")]
        .syn_proxy,
        SynProxy::Off
    );
    ok(&c, "-E -t 10.0.0.100:80 -s rr -j disable");
    ok(&c, "-E -t 10.0.0.100:80 -s rr -j auto");
    assert!(ok(&c, "-Ln").contains("TCP  10.0.0.100:80 rr synproxy auto\n"));
}

/// The service lines of a listing (neither header nor `  ->` lines).
fn service_lines(listing: &str) -> Vec<String> {
    listing.lines().skip(3).filter(|l| !l.starts_with("  ->")).map(str::to_string).collect()
}

/// The real server addresses of a one-service listing, in order.
fn real_lines(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.strip_prefix("  -> "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.split(':').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn listing_order_is_ipvsadm_qsort_of_the_kernel_lists() {
    let s = server();
    let c = Client::new(&s.url(), None);
    // ip_vs_svc_hashkey = (proto ^ addr ^ (port >> 8) ^ port) & 255 (namespace term 0):
    // TCP 10.0.0.100:80 -> 6^0x64^0x50 = 50; TCP 192.168.0.7:80 -> 6^0x07^0x50 = 81;
    // UDP 10.0.0.100:80 -> 17^0x64^0x50 = 37; TCP 10.0.0.101:81 -> 6^0x65^0x51 = 50.
    for line in ["-A -t 10.0.0.100:80", "-A -t 192.168.0.7:80", "-A -u 10.0.0.100:80", "-A -t 10.0.0.101:81"] {
        ok(&c, line);
    }
    // --nosort: buckets in order, the newest first within bucket 50.
    assert_eq!(
        service_lines(&ok(&c, "-Ln --nosort")),
        ["UDP  10.0.0.100:80 wlc", "TCP  10.0.0.101:81 wlc", "TCP  10.0.0.100:80 wlc", "TCP  192.168.0.7:80 wlc"]
    );
    // Sorted: protocol 6 before 17; 0x0A000064 - 0xC0A80007 overflows an int to a positive
    // number, so 10.0.0.100 sorts after 192.168.0.7.
    assert_eq!(
        service_lines(&ok(&c, "-Ln")),
        ["TCP  192.168.0.7:80 wlc", "TCP  10.0.0.100:80 wlc", "TCP  10.0.0.101:81 wlc", "UDP  10.0.0.100:80 wlc"]
    );

    // Real servers: 10.x < 100.x (no overflow), 100.x < 192.x (no overflow), but
    // 192.x < 10.x (overflow): no order at all, so the kernel's list order and glibc's
    // merge sort decide. Added 10, 100, 192: the kernel lists 192, 100, 10; msort splits
    // [192] | [100, 10] -> [10, 100]; merges 192 vs 10: 192 first; then 10, 100.
    ok(&c, "-A -t 10.0.0.200:80 -s rr");
    for rs in ["10.1.0.1", "100.1.0.1", "192.168.1.1"] {
        ok(&c, &format!("-a -t 10.0.0.200:80 -r {rs}"));
    }
    assert_eq!(real_lines(&ok(&c, "-Ln -t 10.0.0.200:80")), ["192.168.1.1", "10.1.0.1", "100.1.0.1"]);
    assert_eq!(real_lines(&ok(&c, "-Ln --nosort -t 10.0.0.200:80")), ["192.168.1.1", "100.1.0.1", "10.1.0.1"]);
    // Added 192, 10, 100: the kernel lists 100, 10, 192; [100] | [10, 192] -> 10 vs 192:
    // 192 first -> [192, 10]; merge 100 vs 192: 100 first; then 192, 10.
    ok(&c, "-A -t 10.0.0.201:80 -s rr");
    for rs in ["192.168.1.1", "10.1.0.1", "100.1.0.1"] {
        ok(&c, &format!("-a -t 10.0.0.201:80 -r {rs}"));
    }
    assert_eq!(real_lines(&ok(&c, "-Ln -t 10.0.0.201:80")), ["100.1.0.1", "192.168.1.1", "10.1.0.1"]);
    // -S lists in the same order, so a restore rebuilds the same kernel lists up to this sort.
    let saved = ok(&c, "-S -n");
    let reals: Vec<&str> = saved.lines().filter(|l| l.starts_with("-a -t 10.0.0.201:80")).collect();
    assert_eq!(reals[0], "-a -t 10.0.0.201:80 -r 100.1.0.1:80 -g -w 1");
}

#[test]
fn thresholds_and_persistence_have_the_kernels_ranges_everywhere() {
    let s = server();
    let c = Client::new(&s.url(), None);
    ok(&c, "-A -t 10.0.0.100:80 -s rr -p 2678400");
    ok(&c, "-a -t 10.0.0.100:80 -r 10.1.0.11 -x 2147483647 -y 2147483647");
    let saved = ok(&c, "-S -n");
    assert_eq!(saved, "-A -t 10.0.0.100:80 -s rr -p 2678400\n-a -t 10.0.0.100:80 -r 10.1.0.11:80 -g -w 1 -x 2147483647 -y 2147483647\n");
    // The API (and the config file) refuse what ipvsadm -R would: a threshold above INT_MAX,
    // a lower threshold above the upper one (even 0), a persistence timeout over 31 days.
    let (config, generation) = c.config().expect("config");
    let refused = |edit: &dyn Fn(&mut Config), field: &str| {
        let mut bad = config.clone();
        edit(&mut bad);
        let e = c.put_config(&bad, generation).expect_err("refused by the API");
        assert!(e.message.contains(field), "{field}: {}", e.message);
        let text = serde_json::to_string(&bad).expect("json");
        let e = Config::from_json(&text).expect_err("refused in a config file");
        assert_eq!(e.field(), Some(field));
    };
    refused(&|c| c.services[0].reals[0].upper_threshold = 1 << 31, "services[0].reals[0].upper_threshold");
    refused(&|c| c.services[0].reals[0].lower_threshold = 1 << 31, "services[0].reals[0].lower_threshold");
    refused(
        &|c| {
            c.services[0].reals[0].upper_threshold = 0;
            c.services[0].reals[0].lower_threshold = 5;
        },
        "services[0].reals[0].lower_threshold",
    );
    refused(&|c| c.services[0].persistence.as_mut().expect("persistent").timeout = 2_678_401, "services[0].persistence.timeout");
    assert_eq!(s.config(), config);

    // -S | -C | -R gives the table back.
    ok(&c, "-C");
    restore(&c, &saved).expect("restore");
    assert_eq!(s.config(), config);

    // A refused restore changes nothing: not when a line does not parse, not when IPVS
    // would refuse a command, not when rvsd refuses the result.
    let published = s.dataplane.count();
    for (input, message) in [
        ("-C\n-A -t 10.0.0.101:80\n-a -t 10.0.0.101:80 -r 10.1.0.12 -x 2147483648\n", "illegal u_threshold specified"),
        ("-C\n-A -t 10.0.0.101:80\n-a -t 10.0.0.101:80 -r 10.1.0.12 -y 3\n", "Numerical result out of range"),
        ("-C\n-A -t 10.0.0.101:80\n-A -t 10.0.0.101:80\n", "Service already exists"),
        ("-C\n-A -t 10.0.0.101:80\n-a -t 10.0.0.101:80 -r 10.0.0.1\n", "own port addresses"),
    ] {
        let e = restore(&c, input).expect_err("refused");
        assert!(e.message.contains(message), "{input}: {}", e.message);
        assert_eq!(s.config(), config, "{input}");
    }
    assert_eq!(s.dataplane.count(), published);
}

/// The address a scheduler picks for each of `flows` on `vip`:80, from the last published snapshot.
fn picks(s: &Server, vip: Ipv4Addr, flows: &[(Ipv4Addr, u16)]) -> Vec<Ipv4Addr> {
    let snap = s.dataplane.published.lock().last().cloned().expect("a snapshot");
    let key = ServiceKey { protocol: Protocol::Tcp, vip: vip.into(), port: 80 };
    let (_, svc) = snap.service(&key).expect("service");
    let mut sched = rvs_dataplane::sched::new_scheduler(svc.scheduler, &svc.reals, &svc.sched_options);
    let candidates = rvs_dataplane::sched::Candidates::idle(&svc.reals);
    flows
        .iter()
        .map(|&(src, sport)| {
            let flow = rvs_dataplane::conn::FlowKey { proto: 6, src, dst: vip, sport, dport: 80 };
            svc.reals[sched.pick(&candidates, &flow).expect("a pick")].addr_v4().expect("an IPv4 real")
        })
        .collect()
}

#[test]
fn schedulers_see_the_kernels_real_server_order() {
    let s = server();
    let c = Client::new(&s.url(), None);
    let (a, b, cc) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 3));
    let client = |n: u8, port: u16| (Ipv4Addr::new(10, 0, 0, n), port);
    let six: Vec<(Ipv4Addr, u16)> = (0..6).map(|i| client(9, 1000 + i)).collect();

    // rr: ip_vs_rr_schedule starts after the list head and walks n_list; the list is
    // C, B, A (list_add_rcu puts each new dest at the head).
    let vip = Ipv4Addr::new(10, 0, 0, 100);
    for line in [
        "-A -t 10.0.0.100:80 -s rr",
        "-a -t 10.0.0.100:80 -r 10.1.0.1",
        "-a -t 10.0.0.100:80 -r 10.1.0.2",
        "-a -t 10.0.0.100:80 -r 10.1.0.3",
    ] {
        ok(&c, line);
    }
    assert_eq!(picks(&s, vip, &six), [cc, b, a, cc, b, a]);
    // The listing stays sorted, the config keeps the order the reals were added in.
    let reals: Vec<std::net::IpAddr> = s.config().services[0].reals.iter().map(|r| r.address).collect();
    assert_eq!(reals, [a, b, cc].map(std::net::IpAddr::V4));

    // wrr, weights A 1, B 2, C 3: cw starts at mw = 3 and drops by gcd 1 each time the walk
    // wraps: cw 3 -> C; cw 2 -> C, B; cw 1 -> C, B, A.
    ok(&c, "-E -t 10.0.0.100:80 -s wrr");
    ok(&c, "-e -t 10.0.0.100:80 -r 10.1.0.1 -w 1");
    ok(&c, "-e -t 10.0.0.100:80 -r 10.1.0.2 -w 2");
    ok(&c, "-e -t 10.0.0.100:80 -r 10.1.0.3 -w 3");
    assert_eq!(picks(&s, vip, &six), [cc, cc, b, cc, b, a]);

    // sh: ip_vs_sh_reassign gives bucket i to the list's (i mod 3)-th dest at weight 1, so
    // bucket 0 is C. Bucket = hash_32(addr) = (addr * 0x61C88647 mod 2^32) >> 24:
    // 10.0.0.1: 0xC6000000 + 0x61C88647 = 0x27C88647 -> 39, 39 mod 3 = 0 -> C;
    // 10.0.0.2: 0xC6000000 + 0xC3910C8E = 0x89910C8E -> 137, mod 3 = 2 -> A;
    // 10.0.0.3: 0xC6000000 + 0x255992D5 = 0xEB5992D5 -> 235, mod 3 = 1 -> B.
    ok(&c, "-E -t 10.0.0.100:80 -s sh");
    for n in 1..=3 {
        ok(&c, &format!("-e -t 10.0.0.100:80 -r 10.1.0.{n} -w 1"));
    }
    assert_eq!(picks(&s, vip, &[client(1, 1), client(2, 1), client(3, 1)]), [cc, a, b]);

    // Deleting and adding a real server again puts it at the head, as in IPVS.
    ok(&c, "-E -t 10.0.0.100:80 -s rr");
    ok(&c, "-d -t 10.0.0.100:80 -r 10.1.0.1");
    ok(&c, "-a -t 10.0.0.100:80 -r 10.1.0.1");
    assert_eq!(picks(&s, vip, &six[..3]), [a, cc, b]);
}

#[test]
fn keepalived_import_gives_the_kernels_order_too() {
    // Keepalived adds a virtual_server's real servers to IPVS in file order, so IPVS
    // lists (and rr walks) them last first.
    let base = Config::from_json(EMPTY_CONFIG).expect("valid");
    let config = rvs_control::keepalived::parse_str(
        "virtual_server 10.0.0.100 80 {\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n\
         real_server 10.1.0.1 80 {\n  }\n  real_server 10.1.0.2 80 {\n  }\n  real_server 10.1.0.3 80 {\n  }\n}\n",
        &base,
    )
    .expect("valid keepalived.conf");
    let s = Server::start(config, ApiOptions::default());
    let c = Client::new(&s.url(), None);
    // Publishes a snapshot of the imported table (wrr with equal weights walks the list as rr does).
    ok(&c, "-E -t 10.0.0.100:80 -s wrr");
    let flows: Vec<(Ipv4Addr, u16)> = (0..3).map(|i| (Ipv4Addr::new(10, 0, 0, 9), 1000 + i)).collect();
    let ip = |n| Ipv4Addr::new(10, 1, 0, n);
    assert_eq!(picks(&s, Ipv4Addr::new(10, 0, 0, 100), &flows), [ip(3), ip(2), ip(1)]);
}

#[test]
fn dpvs_fullnat_order_local_addresses_last() {
    // DPVS's sample scripts: the service, its FULLNAT reals, then the local address.
    let s = server();
    let c = Client::new(&s.url(), None);
    ok(&c, "-A -t 10.0.0.100:80 -s rr");
    ok(&c, "-a -t 10.0.0.100:80 -r 10.1.0.2 -b");
    ok(&c, "-a -t 10.0.0.100:80 -r 10.1.0.3 -b");
    let listing = ok(&c, "-Ln");
    assert!(listing.contains(&format!("TCP  10.0.0.100:80 rr{}\n", format::NO_LADDR_NOTE)), "{listing}");
    assert!(listing.contains("  -> 10.1.0.2:80                  FullNat 1      0          0         \n"), "{listing}");
    let snap = s.dataplane.published.lock().last().cloned().expect("published");
    assert!(snap.services[0].local_addrs.is_empty());
    ok(&c, "--add-laddr -z 10.0.0.5 -t 10.0.0.100:80 -F dpdk0");
    let listing = ok(&c, "-Ln");
    assert!(listing.contains("TCP  10.0.0.100:80 rr\n"), "{listing}");
    let snap = s.dataplane.published.lock().last().cloned().expect("published");
    assert_eq!(snap.services[0].local_addrs, [Ipv4Addr::new(10, 0, 0, 5)]);
    assert_eq!(
        ok(&c, "-S -n"),
        "-A -t 10.0.0.100:80 -s rr\n-P -t 10.0.0.100:80 -z 10.0.0.5\n\
         -a -t 10.0.0.100:80 -r 10.1.0.2:80 -b -w 1\n-a -t 10.0.0.100:80 -r 10.1.0.3:80 -b -w 1\n"
    );
}

/// `rvsadm --check-config`: rvsd's offline check in the DPDK-free client.
#[test]
fn check_config_validates_a_file_without_rvsd() {
    let rvsadm = |args: &[&std::ffi::OsStr]| std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm")).args(args).output().expect("rvsadm");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("rvsd.json");
    // Invalid: exit 2, the field named.
    std::fs::write(&path, r#"{ "ports": [ { "name": "lan0", "device": "net_ring0", "addresses": ["10.0.0.1/33"] } ] }"#).expect("write");
    let out = rvsadm(&["--check-config".as_ref(), path.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("rvsadm: invalid configuration") && stderr.contains("ports[0].addresses"), "{stderr}");
    // Missing file: exit 2, the path named.
    let missing = dir.path().join("nope.json");
    let out = rvsadm(&["--check-config".as_ref(), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.json"));
    // Bad usage: the usage line, exit 2, nothing sent anywhere.
    for args in [&["--check-config"][..], &["--check-config", "a.json", "-L"]] {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let out = rvsadm(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--check-config"), "{args:?}");
    }
}

#[test]
fn ipv6_endpoints_parse_and_list_in_brackets_uncut() {
    let inv = parse(&args("-a -t [2001:db8::1]:80 -r [2001:db8::11]:8080 -m")).expect("an IPv6 line");
    let v6 = |s: &str| -> std::net::IpAddr { s.parse().expect("v6") };
    assert_eq!(inv.service.map(|(_, e)| (e.addr, e.port)), Some((v6("2001:db8::1"), Some(80))));
    assert_eq!(inv.server.map(|e| (e.addr, e.port)), Some((v6("2001:db8::11"), Some(8080))));
    let bare = parse(&args("-A -t 2001:db8::1 -p 60")).expect("a bare IPv6 address");
    assert_eq!(bare.service.map(|(_, e)| (e.addr, e.port)), Some((v6("2001:db8::1"), None)), "no port without brackets");

    // ipvsadm prints `[addr]:port` for IPv6 and, unlike IPv4 names, never cuts
    // them to the column (print_service_entry: `if (se->af != AF_INET6)`).
    let mut config = Config::from_json(GOLDEN_CONFIG).expect("golden config");
    config.services.truncate(1);
    let long = v6("2001:db8:1234:5678:9abc:def0:1234:5678");
    config.services[0].vip = long;
    config.services[0].protocol = Protocol::Tcp;
    config.services[0].persistence = None;
    config.services[0].scheduler = rvs_dataplane::snapshot::SchedulerKind::Rr;
    config.services[0].sched_options = Default::default();
    config.services[0].reals.truncate(1);
    config.services[0].reals[0].address = v6("2001:db8:1234:5678:9abc:def0:1234:5679");
    config.services[0].reals[0].port = Some(8443);
    config.services[0].reals[0].forward = Some(ForwardMode::Nat);
    config.services[0].reals[0].weight = 1;
    let input = ListInput { config: &config, stats: &[], persist_conns: &HashMap::new(), names: &ServiceNames::default() };
    let text = format::list_all(&input, &parse(&args("-Ln")).expect("-Ln").format);
    let port = config.services[0].port;
    let want = format!(
        "TCP  [{long}]:{port} rr\n  -> {:<28} {:<7} {:<6} {:<10} {:<10}\n",
        "[2001:db8:1234:5678:9abc:def0:1234:5679]:8443", "Masq", 1, 0, 0
    );
    assert!(text.ends_with(&want), "{text}");
    let rules = format::save(&input, &parse(&args("-Sn")).expect("-Sn").format);
    assert!(rules.contains(&format!("-A -t [{long}]:{port} -s rr")), "{rules}");
}

#[test]
fn ipv6_persistence_parses_a_prefix_length_as_ipvsadm_does() {
    let mask_of = |line: &str| parse(&args(line)).unwrap_or_else(|e| panic!("{line}: {e:?}")).netmask;
    assert_eq!(mask_of("-A -t [2001:db8::1]:80 -p 60 -M 64"), Some(PersistenceNetmask::PrefixLen(64)));
    assert_eq!(mask_of("-A -t [2001:db8::1]:80 -p 60 -M 64abc"), Some(PersistenceNetmask::PrefixLen(64)), "atoi");
    assert_eq!(mask_of("-A -t [2001:db8::1]:80 -p 60 --netmask=1"), Some(PersistenceNetmask::PrefixLen(1)));
    // ipvsadm's parse_service sets an IPv6 service's mask to 128: an earlier -M is dropped.
    assert_eq!(mask_of("-A -M 255.255.255.0 -t [2001:db8::1]:80 -p 60"), None);
    // IPv4 keeps its dotted netmask, before or after the service.
    assert_eq!(mask_of("-A -t 10.0.0.1:80 -p 60 -M 255.255.255.0"), Some(PersistenceNetmask::Mask(Ipv4Addr::new(255, 255, 255, 0))));
    assert_eq!(mask_of("-A -M 255.255.0.0 -t 10.0.0.1:80 -p 60"), Some(PersistenceNetmask::Mask(Ipv4Addr::new(255, 255, 0, 0))));
    assert_eq!(parse_err("-A -t 10.0.0.1:80 -p 60 -M 24"), "illegal virtual server persistent mask specified", "no prefix length for IPv4");
}

/// ipvsadm's print_service_entry for an IPv6 persistent service: `persistent
/// T mask N` / `-p T -M N` with the prefix length, nothing for /128.
#[test]
fn ipv6_persistence_lists_and_saves_as_ipvsadm_and_round_trips() {
    let s = server();
    let c = Client::new(&s.url(), None);
    for line in [
        "-A -t [2001:db8::1]:80 -s rr -p 300 -M 64",
        "-a -t [2001:db8::1]:80 -r [2001:db8:1::11]:80 -g",
        "-A -t [2001:db8::1]:443 -s wlc -p 60",
        "-A -t 10.0.0.100:80 -s rr -p 120 -M 255.255.0.0",
    ] {
        ok(&c, line);
    }
    let listing = ok(&c, "-Ln");
    let lines = service_lines(&listing);
    assert_eq!(
        lines,
        vec![
            "TCP  10.0.0.100:80 rr persistent 120 mask 255.255.0.0".to_string(),
            "TCP  [2001:db8::1]:80 rr persistent 300 mask 64".to_string(),
            "TCP  [2001:db8::1]:443 wlc persistent 60".to_string(),
        ],
        "{listing}"
    );
    let saved = ok(&c, "-S -n");
    let rules: Vec<&str> = saved.lines().filter(|l| l.starts_with("-A")).collect();
    assert_eq!(
        rules,
        vec![
            "-A -t 10.0.0.100:80 -s rr -p 120 -M 255.255.0.0",
            "-A -t [2001:db8::1]:80 -s rr -p 300 -M 64",
            "-A -t [2001:db8::1]:443 -s wlc -p 60"
        ]
    );
    let services = sorted(s.config().services);
    ok(&c, "-C");
    restore(&c, &saved).expect("restore");
    assert_eq!(sorted(s.config().services), services);
    assert_text(&ok(&c, "-Ln"), &listing);
    // -E without -M goes back to one client per template, as ipvsadm's does.
    ok(&c, "-E -t [2001:db8::1]:80 -s rr -p 300");
    assert!(ok(&c, "-Ln").contains("TCP  [2001:db8::1]:80 rr persistent 300\n"));
}

/// `rvsadm -lnc` shows an IPv6 template as ipvsadm does: the client network with port 0, `[v6]:port` forms.
#[test]
fn ipv6_templates_list_in_brackets() {
    let mut t = conn(Protocol::Tcp, 300, "NONE", "[2001:db8:0:7::]:0", "[2001:db8::1]:80", "[2001:db8:1::11]:80");
    t.template = true;
    let mut nat64 = conn(Protocol::Tcp, 60, "NONE", "[2001:db8::]:0", "[2001:db8::6]:80", "10.1.0.11:8080");
    nat64.template = true;
    let fmt = parse(&args("-Lnc")).expect("-Lnc").format;
    let text = format::list_connections(&[t, nat64], &fmt, &ServiceNames::default());
    assert!(text.contains("TCP 05:00  NONE        [2001:db8:0:7::]:0 [2001:db8::1]:80   [2001:db8:1::11]:80"), "{text}");
    assert!(text.contains("TCP 01:00  NONE        [2001:db8::]:0     [2001:db8::6]:80   10.1.0.11:8080"), "{text}");
}
