//! ipvsadm's command-line grammar (popt rules), with DPVS's FULLNAT and local
//! address options.
//!
//! * Short options may be clustered (`-Ln`, `-Lnc`); an option that takes a
//!   value takes the rest of its cluster (`-t10.0.0.1:80`, `-At 10.0.0.1:80`)
//!   or else the next argument.
//! * `-p`/`--persistent` takes an optional value: the rest of its cluster,
//!   `--persistent=N`, or the next argument when that does not start with `-`.
//! * Long options take `--name value` or `--name=value`.
//! * One command per invocation; each option at most once; the legal
//!   combinations of commands and options are ipvsadm's table
//!   (`commands_v_options`), extended with DPVS's `-P`, `-Q`, `-G`.
//! * DPVS's `-j`/`--synproxy enable|disable` for `-A`/`-E`, with rvs's third
//!   value `auto` (on while the worker is under SYN-flood pressure).
//!
//! Errors carry ipvsadm's messages (`illegal weight specified`, `You need to
//! supply the 'real-server' option for the 'add-server' command`, ...).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use rvs_dataplane::snapshot::{ForwardMode, Protocol, SynProxy};

use crate::config::PersistenceNetmask;

/// ipvsadm's largest persistence timeout (31 days).
pub const MAX_TIMEOUT: u32 = 86400 * 31;
/// ipvsadm's default persistence timeout (`IPVS_SVC_PERSISTENT_TIMEOUT`, 6 minutes).
pub const DEFAULT_PERSISTENT_TIMEOUT: u32 = 360;

/// A command: exactly one per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `-A`, `--add-service`.
    AddService,
    /// `-E`, `--edit-service`.
    EditService,
    /// `-D`, `--delete-service`.
    DeleteService,
    /// `-C`, `--clear`.
    Flush,
    /// `-L`, `-l`, `--list`.
    List,
    /// `-a`, `--add-server`.
    AddServer,
    /// `-d`, `--delete-server`.
    DeleteServer,
    /// `-e`, `--edit-server`.
    EditServer,
    /// `--set tcp tcpfin udp`.
    SetTimeout,
    /// `-R`, `--restore`.
    Restore,
    /// `-S`, `--save`.
    Save,
    /// `-Z`, `--zero`.
    Zero,
    /// `-P`, `--add-laddr` (DPVS).
    AddLaddr,
    /// `-Q`, `--del-laddr` (DPVS).
    DelLaddr,
    /// `-G`, `--get-laddr` (DPVS).
    GetLaddr,
    /// `-h`, `--help`.
    Help,
    /// `-v`, `--version`.
    Version,
}

impl Command {
    /// ipvsadm's name of the command, as its error messages use it.
    pub fn name(self) -> &'static str {
        match self {
            Command::AddService => "add-service",
            Command::EditService => "edit-service",
            Command::DeleteService => "delete-service",
            Command::Flush => "flush",
            Command::List => "list",
            Command::AddServer => "add-server",
            Command::DeleteServer => "delete-server",
            Command::EditServer => "edit-server",
            Command::SetTimeout => "set",
            Command::Restore => "restore",
            Command::Save => "save",
            Command::Zero => "zero",
            Command::AddLaddr => "add-laddr",
            Command::DelLaddr => "del-laddr",
            Command::GetLaddr => "get-laddr",
            Command::Help => "help",
            Command::Version => "version",
        }
    }

    /// True for the commands that change the table.
    pub fn changes_config(self) -> bool {
        matches!(
            self,
            Command::AddService
                | Command::EditService
                | Command::DeleteService
                | Command::Flush
                | Command::AddServer
                | Command::DeleteServer
                | Command::EditServer
                | Command::SetTimeout
                | Command::AddLaddr
                | Command::DelLaddr
        )
    }
}

/// An option, as ipvsadm's `optnames` name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Opt {
    /// `-n`
    Numeric,
    /// `-c`
    Connection,
    /// `-t`, `-u`
    Service,
    /// `-s`
    Scheduler,
    /// `-p`
    Persistent,
    /// `-M`
    Netmask,
    /// `-r`
    Server,
    /// `-g`, `-m`, `-i`, `-b`
    Forward,
    /// `-w`
    Weight,
    /// `-x`
    UThreshold,
    /// `-y`
    LThreshold,
    /// `--timeout`
    Timeout,
    /// `--daemon`
    Daemon,
    /// `--stats`
    Stats,
    /// `--rate`
    Rate,
    /// `--thresholds`
    Thresholds,
    /// `--persistent-conn`
    PersistentConn,
    /// `--nosort`
    NoSort,
    /// `--exact`, `-X`
    Exact,
    /// `--sched-flags`
    SchedFlags,
    /// `--tun-info`
    TunInfo,
    /// `-z`, `--laddr` (DPVS)
    Laddr,
    /// `-F`, `--ifname` (DPVS; accepted and ignored)
    Ifname,
    /// `-j`, `--synproxy` (DPVS)
    SynProxy,
}

impl Opt {
    /// ipvsadm's name of the option.
    pub fn name(self) -> &'static str {
        match self {
            Opt::Numeric => "numeric",
            Opt::Connection => "connection",
            Opt::Service => "service-address",
            Opt::Scheduler => "scheduler",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::Server => "real-server",
            Opt::Forward => "forwarding-method",
            Opt::Weight => "weight",
            Opt::UThreshold => "u-threshold",
            Opt::LThreshold => "l-threshold",
            Opt::Timeout => "timeout",
            Opt::Daemon => "daemon",
            Opt::Stats => "stats",
            Opt::Rate => "rate",
            Opt::Thresholds => "thresholds",
            Opt::PersistentConn => "persistent-conn",
            Opt::NoSort => "nosort",
            Opt::Exact => "exact",
            Opt::SchedFlags => "sched-flags",
            Opt::TunInfo => "tun-info",
            Opt::Laddr => "laddr",
            Opt::Ifname => "ifname",
            Opt::SynProxy => "synproxy",
        }
    }

    const ALL: [Opt; 24] = [
        Opt::Numeric,
        Opt::Connection,
        Opt::Service,
        Opt::Scheduler,
        Opt::Persistent,
        Opt::Netmask,
        Opt::Server,
        Opt::Forward,
        Opt::Weight,
        Opt::UThreshold,
        Opt::LThreshold,
        Opt::Timeout,
        Opt::Daemon,
        Opt::Stats,
        Opt::Rate,
        Opt::Thresholds,
        Opt::PersistentConn,
        Opt::NoSort,
        Opt::Exact,
        Opt::SchedFlags,
        Opt::TunInfo,
        Opt::Laddr,
        Opt::Ifname,
        Opt::SynProxy,
    ];
}

/// Legal combinations of commands and options, in [`Opt::ALL`] order:
/// `+` compulsory, `x` illegal, `1` exclusive (one of them), ` ` optional.
/// The ipvsadm columns are ipvsadm's table; `-z`, `-F` and `-j` are DPVS's.
fn legality(cmd: Command) -> &'static [u8; 24] {
    // columns: n c svc s p M r fwd w x y timeout daemon stats rate thresholds
    //          persistent-conn nosort exact sched-flags tun-info z F j
    match cmd {
        Command::AddService | Command::EditService => b"xx+   xxxxxxxxxxxxx xxx ",
        Command::DeleteService => b"xx+xxxxxxxxxxxxxxxxxxxxx",
        Command::List => b" 11xxxxxxxx11      x xxx",
        Command::AddServer | Command::EditServer => b"xx+xxx+    xxxxxxxxxxxxx",
        Command::DeleteServer => b"xx+xxx+xxxxxxxxxxxxxxxxx",
        Command::Save => b" xxxxxxxxxxxxxxxxxxxxxxx",
        Command::Zero => b"xx xxxxxxxxxxxxxxxxxxxxx",
        Command::AddLaddr | Command::DelLaddr => b"xx+xxxxxxxxxxxxxxxxxx+ x",
        Command::GetLaddr => b" x xxxxxxxxxxxxxxxxxxx x",
        Command::Flush | Command::SetTimeout | Command::Restore | Command::Help | Command::Version => b"xxxxxxxxxxxxxxxxxxxxxxxx",
    }
}

/// A virtual service or real server address as given: `host[:port]`,
/// `[ipv6]:port` or a bare IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The address.
    pub addr: IpAddr,
    /// The port, `None` when not given.
    pub port: Option<u16>,
}

/// How listings look (ipvsadm's `FMT_*` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Format {
    /// `-n`: numeric addresses and ports.
    pub numeric: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--rate`.
    pub rate: bool,
    /// `--thresholds`.
    pub thresholds: bool,
    /// `--persistent-conn`.
    pub persistent_conn: bool,
    /// `--nosort`.
    pub nosort: bool,
    /// `--exact`: no K/M/G scaling.
    pub exact: bool,
    /// `--tun-info`.
    pub tun_info: bool,
}

/// One parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The command.
    pub command: Command,
    /// The options given, for the legality checks.
    pub options: BTreeSet<Opt>,
    /// `-t`/`-u`: protocol and address.
    pub service: Option<(Protocol, Endpoint)>,
    /// `-s`, as given.
    pub scheduler: Option<String>,
    /// `-p [timeout]`.
    pub persistent: Option<u32>,
    /// `-M`: a netmask, or a prefix length after an IPv6 `-t`/`-u`.
    pub netmask: Option<PersistenceNetmask>,
    /// `-r`.
    pub server: Option<Endpoint>,
    /// `-g`, `-m`, `-i`, `-b`.
    pub forward: Option<ForwardMode>,
    /// `-w`.
    pub weight: Option<u32>,
    /// `-x`.
    pub u_threshold: Option<u32>,
    /// `-y`.
    pub l_threshold: Option<u32>,
    /// `--sched-flags`, split at commas.
    pub sched_flags: Vec<String>,
    /// `-z`.
    pub laddr: Option<IpAddr>,
    /// `-j enable|disable|auto` (DPVS's `--synproxy`; `auto` is rvs's).
    pub syn_proxy: Option<SynProxy>,
    /// `--set tcp tcpfin udp` (0 = leave unchanged).
    pub timeouts: Option<[u32; 3]>,
    /// Listing format.
    pub format: Format,
}

/// A command line rvsadm refuses, with ipvsadm's message and exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The message (without program name); empty when only the hint is printed.
    pub message: String,
    /// Print `Try `rvsadm -h' or 'rvsadm --help' for more information.` (after the message, if any).
    pub try_help: bool,
    /// Exit status: 2 for ipvsadm's `fail(2, ...)`, 255 for popt's errors and the hint (`exit(-1)`).
    pub status: u8,
}

/// ipvsadm's exit status for its own checks (`fail(2, ...)`).
const STATUS_FAIL: u8 = 2;
/// ipvsadm's exit status for popt's errors and `tryhelp_exit(argv[0], -1)`.
const STATUS_POPT: u8 = 255;

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
        ParseError { message: message.into(), try_help: false, status: STATUS_FAIL }
    }

    /// popt's own errors after the command: `-t: missing argument`, `-K: unknown option`.
    fn popt(message: impl Into<String>) -> Self {
        ParseError { message: message.into(), try_help: false, status: STATUS_POPT }
    }

    /// Only the hint: the first option is not a command, or popt failed on it.
    fn try_help_only() -> Self {
        ParseError { message: String::new(), try_help: true, status: STATUS_POPT }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What an option needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arity {
    None,
    Required,
    Optional,
}

/// Short options: (letter, long name, arity).
pub(crate) const SHORT: &[(char, &str, Arity)] = &[
    ('A', "add-service", Arity::None),
    ('E', "edit-service", Arity::None),
    ('D', "delete-service", Arity::None),
    ('C', "clear", Arity::None),
    ('L', "list", Arity::None),
    ('l', "list", Arity::None),
    ('Z', "zero", Arity::None),
    ('a', "add-server", Arity::None),
    ('e', "edit-server", Arity::None),
    ('d', "delete-server", Arity::None),
    ('h', "help", Arity::None),
    ('v', "version", Arity::None),
    ('R', "restore", Arity::None),
    ('S', "save", Arity::None),
    ('t', "tcp-service", Arity::Required),
    ('u', "udp-service", Arity::Required),
    ('f', "fwmark-service", Arity::Required),
    ('s', "scheduler", Arity::Required),
    ('p', "persistent", Arity::Optional),
    ('M', "netmask", Arity::Required),
    ('r', "real-server", Arity::Required),
    ('m', "masquerading", Arity::None),
    ('i', "ipip", Arity::None),
    ('g', "gatewaying", Arity::None),
    ('b', "fullnat", Arity::None),
    ('w', "weight", Arity::Required),
    ('x', "u-threshold", Arity::Required),
    ('y', "l-threshold", Arity::Required),
    ('n', "numeric", Arity::None),
    ('c', "connection", Arity::None),
    ('X', "exact", Arity::None),
    ('6', "ipv6", Arity::None),
    ('o', "ops", Arity::None),
    ('P', "add-laddr", Arity::None),
    ('Q', "del-laddr", Arity::None),
    ('G', "get-laddr", Arity::None),
    ('z', "laddr", Arity::Required),
    ('F', "ifname", Arity::Required),
    ('j', "synproxy", Arity::Required),
];

/// Long-only options: (name, arity).
pub(crate) const LONG_ONLY: &[(&str, Arity)] = &[
    ("set", Arity::None),
    ("timeout", Arity::None),
    ("daemon", Arity::None),
    ("stats", Arity::None),
    ("rate", Arity::None),
    ("thresholds", Arity::None),
    ("persistent-conn", Arity::None),
    ("nosort", Arity::None),
    ("sort", Arity::None),
    ("sched-flags", Arity::Required),
    ("tun-info", Arity::None),
    ("sctp-service", Arity::Required),
    ("start-daemon", Arity::Required),
    ("stop-daemon", Arity::Required),
    ("mcast-interface", Arity::Required),
    ("syncid", Arity::Required),
    ("pe", Arity::Required),
    ("mcast-group", Arity::Required),
    ("mcast-port", Arity::Required),
    ("mcast-ttl", Arity::Required),
    ("sync-maxlen", Arity::Required),
    ("tun-type", Arity::Required),
    ("tun-port", Arity::Required),
    ("tun-nocsum", Arity::None),
    ("tun-csum", Arity::None),
    ("tun-remcsum", Arity::None),
];

fn long_arity(name: &str) -> Option<Arity> {
    SHORT.iter().find(|(_, n, _)| *n == name).map(|(_, _, a)| *a).or_else(|| LONG_ONLY.iter().find(|(n, _)| *n == name).map(|(_, a)| *a))
}

/// ipvsadm's `string_to_number`: a decimal in `min..=max`.
fn number(s: &str, min: u64, max: u64) -> Option<u64> {
    s.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
}

/// Looks a port name up in `/etc/services` for `protocol`.
pub fn service_to_port(name: &str, protocol: Protocol) -> Option<u16> {
    let text = std::fs::read_to_string("/etc/services").ok()?;
    crate::ipvsadm::format::ServiceNames::parse(&text).port(name, protocol)
}

/// ipvsadm's `parse_service`: `host[:port]`, host a dotted quad or a name,
/// port a number or a service name; `[ipv6]:port` (the port is then
/// required), or an IPv6 address alone (no port). `None` when it is not an
/// address.
pub fn parse_endpoint(buf: &str, protocol: Protocol) -> Result<Option<Endpoint>, ParseError> {
    if buf.is_empty() || buf.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let (host, port) = match buf.strip_prefix('[') {
        Some(rest) => match rest.split_once("]:") {
            Some((h, p)) => (h, Some(p)),
            None => return Ok(None),
        },
        None if buf.parse::<Ipv6Addr>().is_ok() => (buf, None),
        None => match buf.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (buf, None),
        },
    };
    let addr = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) if buf.starts_with('[') || port.is_none() => IpAddr::V6(a),
        Ok(IpAddr::V6(_)) => return Ok(None),
        Ok(IpAddr::V4(a)) if !buf.starts_with('[') => IpAddr::V4(a),
        Ok(IpAddr::V4(_)) => return Ok(None),
        Err(_) if buf.starts_with('[') => return Ok(None),
        Err(_) => match (host, 0u16).to_socket_addrs() {
            Ok(mut addrs) => match addrs.find_map(|a| match a.ip() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            }) {
                Some(a) => IpAddr::V4(a),
                None => return Ok(None),
            },
            Err(_) => return Ok(None),
        },
    };
    let port = match port {
        None => None,
        Some(p) => match number(p, 0, 65535) {
            Some(n) => Some(n as u16),
            None => match service_to_port(p, protocol) {
                Some(n) => Some(n),
                None => return Ok(None),
            },
        },
    };
    Ok(Some(Endpoint { addr, port }))
}

/// An IPv4 `-M` netmask, dotted (ipvsadm's inet_aton short forms are
/// refused on purpose: parity.md).
fn parse_netmask(buf: &str) -> Option<Ipv4Addr> {
    buf.parse().ok()
}

/// An IPv6 service's `-M` prefix length as ipvsadm reads it: C's `atoi`
/// (leading blanks, a sign, the digits up to the first other character),
/// then 1..=128.
fn parse_prefix_len6(buf: &str) -> Option<u8> {
    let s = buf.trim_start();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits = &s[..s.bytes().take_while(u8::is_ascii_digit).count()];
    let n: u64 = digits.parse().unwrap_or(0);
    if negative {
        return None;
    }
    u8::try_from(n).ok().filter(|n| (1..=128).contains(n))
}

fn parse_timeout(buf: &str, min: u32, max: u32) -> Result<u32, ParseError> {
    number(buf, u64::from(min), u64::from(max))
        .map(|n| n as u32)
        .ok_or_else(|| ParseError::new(format!("invalid timeout value `{buf}' specified")))
}

/// DPVS's `-j` value: `enable` or `disable`, and rvs's `auto`.
fn parse_syn_proxy(buf: &str) -> Result<SynProxy, ParseError> {
    match buf {
        "enable" => Ok(SynProxy::On),
        "disable" => Ok(SynProxy::Off),
        "auto" => Ok(SynProxy::Auto),
        // DPVS's message, with rvs's third value.
        _ => Err(ParseError::new("synproxy switch must be enable, disable or auto")),
    }
}

fn unsupported(option: &str, why: &str) -> ParseError {
    ParseError::new(format!("option `{option}' is not supported by rvs: {why}"))
}

/// State while parsing.
struct Parser {
    inv: Invocation,
    positionals: Vec<String>,
    command_set: bool,
    tun_type_given: bool,
}

/// The command an option names, if it is one (ipvsadm's first `switch`).
fn command_of(name: &str) -> Option<Command> {
    Some(match name {
        "add-service" => Command::AddService,
        "edit-service" => Command::EditService,
        "delete-service" => Command::DeleteService,
        "clear" => Command::Flush,
        "list" => Command::List,
        "zero" => Command::Zero,
        "add-server" => Command::AddServer,
        "edit-server" => Command::EditServer,
        "delete-server" => Command::DeleteServer,
        "set" => Command::SetTimeout,
        "restore" => Command::Restore,
        "save" => Command::Save,
        "add-laddr" => Command::AddLaddr,
        "del-laddr" => Command::DelLaddr,
        "get-laddr" => Command::GetLaddr,
        "help" => Command::Help,
        "version" => Command::Version,
        _ => return None,
    })
}

impl Parser {
    fn set_option(&mut self, opt: Opt) -> Result<(), ParseError> {
        if !self.inv.options.insert(opt) {
            return Err(ParseError::new(format!("multiple '{}' options specified", opt.name())));
        }
        Ok(())
    }

    /// One option, as ipvsadm's two `switch`es see it: the first option must be
    /// a command (else only the hint), and a command after it is an invalid option.
    fn option(&mut self, raw: &str, name: &str, value: Option<String>) -> Result<(), ParseError> {
        let command = command_of(name);
        if !self.command_set {
            if matches!(name, "start-daemon" | "stop-daemon") {
                return Err(unsupported(&format!("--{name}"), "connection sync is configured in rvsd's config file"));
            }
            let Some(cmd) = command else {
                return Err(ParseError::try_help_only());
            };
            self.inv.command = cmd;
            self.command_set = true;
            return Ok(());
        }
        if command.is_some() || matches!(name, "start-daemon" | "stop-daemon") {
            return Err(ParseError::new(format!("invalid option `{raw}'")));
        }
        self.apply(name, value)
    }

    /// A popt error (`unknown option`, `missing argument`) on the argument `raw`.
    fn popt_error(&self, raw: &str, what: &str) -> ParseError {
        if self.command_set {
            ParseError::popt(format!("{raw}: {what}"))
        } else {
            ParseError::try_help_only()
        }
    }

    /// `--name`, `--name=value`, `--name value`.
    fn long_option(&mut self, raw: &str, args: &[String], i: &mut usize) -> Result<(), ParseError> {
        let long = &raw[2..];
        let (name, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (long, None),
        };
        let Some(arity) = long_arity(name) else {
            return Err(self.popt_error(raw, "unknown option"));
        };
        let value = match arity {
            Arity::None if inline.is_some() => return Err(self.popt_error(raw, "option does not take an argument")),
            Arity::None => None,
            Arity::Required => match inline {
                Some(v) => Some(v),
                None => {
                    let Some(v) = args.get(*i) else {
                        return Err(self.popt_error(raw, "missing argument"));
                    };
                    *i += 1;
                    Some(v.clone())
                }
            },
            Arity::Optional => inline.or_else(|| optional_value(args, i)),
        };
        self.option(raw, name, value)
    }

    /// A cluster of short options (`-Lnc`, `-At10.0.0.1:80`).
    fn short_cluster(&mut self, raw: &str, args: &[String], i: &mut usize) -> Result<(), ParseError> {
        let chars: Vec<char> = raw[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            let Some(&(_, name, arity)) = SHORT.iter().find(|(s, _, _)| *s == c) else {
                return Err(self.popt_error(raw, "unknown option"));
            };
            let rest: String = chars[j..].iter().collect();
            if c == 'b' {
                // ipvsadm's `-b flags` (--sched-flags) when a value follows; DPVS's `-b`
                // (--fullnat) when it stands alone or another option follows.
                let flags = if rest.is_empty() {
                    args.get(*i).filter(|n| !n.starts_with('-')).cloned().inspect(|_| *i += 1)
                } else {
                    Some(rest.clone())
                };
                if let Some(flags) = flags {
                    return self.option(raw, "sched-flags", Some(flags));
                }
            }
            let value = match arity {
                Arity::None => None,
                Arity::Required => {
                    j = chars.len();
                    if !rest.is_empty() {
                        Some(rest)
                    } else {
                        let Some(v) = args.get(*i) else {
                            return Err(self.popt_error(raw, "missing argument"));
                        };
                        *i += 1;
                        Some(v.clone())
                    }
                }
                Arity::Optional => {
                    j = chars.len();
                    if rest.is_empty() {
                        optional_value(args, i)
                    } else {
                        Some(rest)
                    }
                }
            };
            self.option(raw, name, value)?;
        }
        Ok(())
    }
}

/// popt's optional value: the next argument unless it starts with `-`.
fn optional_value(args: &[String], i: &mut usize) -> Option<String> {
    let v = args.get(*i).filter(|v| !v.starts_with('-'))?;
    *i += 1;
    Some(v.clone())
}

/// Parses one command line (without the program name), in ipvsadm's order:
/// each option is checked as it comes (the first failure is reported), then
/// `--set`'s values, stray arguments, scheduler flags, the legality table and
/// the per-command rules.
pub fn parse(args: &[String]) -> Result<Invocation, ParseError> {
    let mut p = Parser {
        inv: Invocation {
            command: Command::Help,
            options: BTreeSet::new(),
            service: None,
            scheduler: None,
            persistent: None,
            netmask: None,
            server: None,
            forward: None,
            weight: None,
            u_threshold: None,
            l_threshold: None,
            sched_flags: Vec::new(),
            laddr: None,
            syn_proxy: None,
            timeouts: None,
            format: Format::default(),
        },
        positionals: Vec::new(),
        command_set: false,
        tun_type_given: false,
    };
    if args.is_empty() {
        // Plain `ipvsadm` lists the table.
        p.inv.command = Command::List;
        return Ok(p.inv);
    }
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            p.positionals.extend(args[i..].iter().cloned());
            break;
        }
        if arg.starts_with("--") {
            p.long_option(arg, args, &mut i)?;
        } else if arg.len() > 1 && arg.starts_with('-') {
            p.short_cluster(arg, args, &mut i)?;
        } else {
            p.positionals.push(arg.clone());
        }
    }
    if !p.command_set {
        return Err(ParseError::try_help_only());
    }
    p.finish()
}

impl Parser {
    /// Handles one option by its long name.
    fn apply(&mut self, name: &str, value: Option<String>) -> Result<(), ParseError> {
        let v = value.unwrap_or_default();
        match name {
            "tcp-service" | "udp-service" => {
                self.set_option(Opt::Service)?;
                let proto = if name == "tcp-service" { Protocol::Tcp } else { Protocol::Udp };
                let ep = parse_endpoint(&v, proto)?.ok_or_else(|| ParseError::new("illegal virtual server address[:port] specified"))?;
                // ipvsadm's parse_service sets an IPv6 service's mask to 128:
                // a `-M` given before an IPv6 `-t`/`-u` is dropped.
                if ep.addr.is_ipv6() {
                    self.inv.netmask = None;
                }
                self.inv.service = Some((proto, ep));
            }
            "scheduler" => {
                self.set_option(Opt::Scheduler)?;
                self.inv.scheduler = Some(v);
            }
            "persistent" => {
                self.set_option(Opt::Persistent)?;
                self.inv.persistent = Some(if v.is_empty() { DEFAULT_PERSISTENT_TIMEOUT } else { parse_timeout(&v, 1, MAX_TIMEOUT)? });
            }
            "netmask" => {
                self.set_option(Opt::Netmask)?;
                // As ipvsadm: a prefix length once the service is known to be
                // IPv6, else an IPv4 netmask.
                let v6 = self.inv.service.is_some_and(|(_, ep)| ep.addr.is_ipv6());
                self.inv.netmask = Some(if v6 {
                    PersistenceNetmask::PrefixLen(parse_prefix_len6(&v).ok_or_else(|| ParseError::new("illegal ipv6 netmask specified"))?)
                } else {
                    PersistenceNetmask::Mask(
                        parse_netmask(&v).ok_or_else(|| ParseError::new("illegal virtual server persistent mask specified"))?,
                    )
                });
            }
            "real-server" => {
                self.set_option(Opt::Server)?;
                let proto = self.inv.service.map_or(Protocol::Tcp, |(p, _)| p);
                let ep = parse_endpoint(&v, proto)?.ok_or_else(|| ParseError::new("illegal real server address[:port] specified"))?;
                self.inv.server = Some(ep);
            }
            "masquerading" | "ipip" | "gatewaying" | "fullnat" => {
                self.set_option(Opt::Forward)?;
                self.inv.forward = Some(match name {
                    "masquerading" => ForwardMode::Nat,
                    "ipip" => ForwardMode::Tun,
                    "fullnat" => ForwardMode::FullNat,
                    _ => ForwardMode::Dr,
                });
            }
            "weight" => {
                self.set_option(Opt::Weight)?;
                let w = number(&v, 0, 65535).ok_or_else(|| ParseError::new("illegal weight specified"))?;
                self.inv.weight = Some(w as u32);
            }
            "u-threshold" => {
                self.set_option(Opt::UThreshold)?;
                let n = number(&v, 0, i32::MAX as u64).ok_or_else(|| ParseError::new("illegal u_threshold specified"))?;
                self.inv.u_threshold = Some(n as u32);
            }
            "l-threshold" => {
                self.set_option(Opt::LThreshold)?;
                let n = number(&v, 0, i32::MAX as u64).ok_or_else(|| ParseError::new("illegal l_threshold specified"))?;
                self.inv.l_threshold = Some(n as u32);
            }
            "numeric" => {
                self.set_option(Opt::Numeric)?;
                self.inv.format.numeric = true;
            }
            "connection" => self.set_option(Opt::Connection)?,
            "timeout" => self.set_option(Opt::Timeout)?,
            "daemon" => self.set_option(Opt::Daemon)?,
            "stats" => {
                self.set_option(Opt::Stats)?;
                self.inv.format.stats = true;
            }
            "rate" => {
                self.set_option(Opt::Rate)?;
                self.inv.format.rate = true;
            }
            "thresholds" => {
                self.set_option(Opt::Thresholds)?;
                self.inv.format.thresholds = true;
            }
            "persistent-conn" => {
                self.set_option(Opt::PersistentConn)?;
                self.inv.format.persistent_conn = true;
            }
            "nosort" => {
                self.set_option(Opt::NoSort)?;
                self.inv.format.nosort = true;
            }
            "sort" => {}
            "exact" => {
                self.set_option(Opt::Exact)?;
                self.inv.format.exact = true;
            }
            "tun-info" => {
                self.set_option(Opt::TunInfo)?;
                self.inv.format.tun_info = true;
            }
            "sched-flags" => {
                self.set_option(Opt::SchedFlags)?;
                self.inv.sched_flags = v.split(',').filter(|f| !f.is_empty()).map(str::to_string).collect();
            }
            "laddr" => {
                self.set_option(Opt::Laddr)?;
                self.inv.laddr = Some(v.parse().map_err(|_| ParseError::new(format!("illegal local address `{v}' specified")))?);
            }
            "ifname" => self.set_option(Opt::Ifname)?,
            "synproxy" => {
                self.set_option(Opt::SynProxy)?;
                self.inv.syn_proxy = Some(parse_syn_proxy(&v)?);
            }
            "fwmark-service" => return Err(unsupported("-f", "rvs has no firewall-mark services; use -t or -u")),
            "sctp-service" => return Err(unsupported("--sctp-service", "rvs balances TCP and UDP")),
            // `-6` only says a firewall-mark service (`-f`) is IPv6; a -t/-u
            // service's family is its address's. ipvsadm refuses it before -f,
            // and rvs has no -f.
            "ipv6" => return Err(ParseError::new("-6 used before -f\n")),
            "ops" => return Err(unsupported("-o", "one-packet scheduling is not implemented")),
            "pe" => return Err(unsupported("--pe", "no persistence engines (sip) in rvs")),
            "start-daemon" | "stop-daemon" | "mcast-interface" | "syncid" | "mcast-group" | "mcast-port" | "mcast-ttl" | "sync-maxlen" => {
                return Err(unsupported(&format!("--{name}"), "connection sync is configured in rvsd's config file"))
            }
            "tun-type" if v == "ipip" => {
                // ipvsadm 1.31 saves tunnel servers with `--tun-type ipip`, IPVS's default and rvs's only kind.
                if self.tun_type_given {
                    return Err(ParseError::new("multiple 'tun-type' options specified"));
                }
                self.tun_type_given = true;
            }
            "tun-type" => return Err(ParseError::new("illegal tunnel type specified")),
            "tun-port" | "tun-nocsum" | "tun-csum" | "tun-remcsum" => {
                return Err(unsupported(&format!("--{name}"), "rvs tunnels with IPIP only"))
            }
            other => return Err(ParseError::popt(format!("--{other}: unknown option"))),
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Invocation, ParseError> {
        let cmd = self.inv.command;
        if cmd == Command::SetTimeout {
            if self.positionals.len() < 3 {
                return Err(ParseError::new("--set option requires 3 timeout values"));
            }
            let t: Vec<String> = self.positionals.drain(..3).collect();
            self.inv.timeouts =
                Some([parse_timeout(&t[0], 0, MAX_TIMEOUT)?, parse_timeout(&t[1], 0, MAX_TIMEOUT)?, parse_timeout(&t[2], 0, MAX_TIMEOUT)?]);
        }
        if let Some(extra) = self.positionals.first() {
            return Err(ParseError::new(format!("unexpected argument {extra}")));
        }
        check_sched_flags(self.inv.scheduler.as_deref(), &self.inv.sched_flags)?;
        generic_opt_check(cmd, &self.inv.options)?;
        if self.tun_type_given {
            if !matches!(cmd, Command::AddServer | Command::EditServer) {
                return Err(ParseError::new(format!("Illegal 'tun-type' option with the '{}' command", cmd.name())));
            }
            if self.inv.forward != Some(ForwardMode::Tun) {
                return Err(ParseError::new("Tunnel options conflict with forward method"));
            }
        }
        if let (Command::AddServer | Command::EditServer, Some((_, svc)), Some(real)) = (cmd, self.inv.service, self.inv.server) {
            if svc.addr.is_ipv4() != real.addr.is_ipv4() && self.inv.forward != Some(ForwardMode::Tun) {
                return Err(ParseError::new("Different address family is allowed only for tunneling servers"));
            }
        }
        if matches!(cmd, Command::AddService | Command::EditService) {
            if let Some((_, ep)) = self.inv.service {
                if ep.port.unwrap_or(0) == 0 && self.inv.persistent.is_none() {
                    return Err(ParseError::new("Zero port specified for non-persistent service"));
                }
            }
        }
        if cmd == Command::List {
            let o = &self.inv.options;
            let has = |x: Opt| o.contains(&x);
            if ((has(Opt::Connection) || has(Opt::Timeout) || has(Opt::Daemon))
                && (has(Opt::Stats) || has(Opt::Rate) || has(Opt::Thresholds)))
                || ((has(Opt::Timeout) || has(Opt::Daemon)) && has(Opt::PersistentConn))
            {
                return Err(ParseError::new("options conflicts in the list command"));
            }
        }
        Ok(self.inv)
    }
}

/// ipvsadm's `generic_opt_check` over [`legality`].
fn generic_opt_check(cmd: Command, options: &BTreeSet<Opt>) -> Result<(), ParseError> {
    let table = legality(cmd);
    let mut exclusive: Option<Opt> = None;
    for (j, opt) in Opt::ALL.iter().enumerate() {
        let rule = table[j];
        if !options.contains(opt) {
            if rule == b'+' {
                return Err(ParseError::new(format!("You need to supply the '{}' option for the '{}' command", opt.name(), cmd.name())));
            }
        } else {
            if rule == b'x' {
                return Err(ParseError::new(format!("Illegal '{}' option with the '{}' command", opt.name(), cmd.name())));
            }
            if rule == b'1' {
                if let Some(first) = exclusive {
                    return Err(ParseError::new(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        opt.name(),
                        first.name(),
                        cmd.name()
                    )));
                }
                exclusive = Some(*opt);
            }
        }
    }
    Ok(())
}

/// ipvsadm's `parse_sched_flags`: every flag known, and `sh-*`/`mh-*` only
/// with their scheduler (`-s` as given, `wlc` when absent).
fn check_sched_flags(scheduler: Option<&str>, flags: &[String]) -> Result<(), ParseError> {
    let scheduler = scheduler.filter(|s| !s.is_empty()).unwrap_or("wlc");
    for flag in flags {
        let needs = match flag.as_str() {
            "flag-1" | "flag-2" | "flag-3" => None,
            "sh-fallback" | "sh-port" => Some("sh"),
            "mh-fallback" | "mh-port" => Some("mh"),
            _ => return Err(ParseError::new(format!("invalid scheduler flag `{flag}'"))),
        };
        if needs.is_some_and(|s| s != scheduler) {
            return Err(ParseError::new(format!("incompatible scheduler flag `{flag}'")));
        }
    }
    Ok(())
}

/// Splits one line of a restore file into arguments: whitespace-separated,
/// with `"..."` and `'...'` quoting; `#` starts a comment at a word start.
pub fn split_line(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None if c == '#' && !in_word => break,
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}
