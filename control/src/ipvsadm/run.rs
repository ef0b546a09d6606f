//! One rvsadm invocation: parse, talk to rvsd, print.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;

use rvs_dataplane::snapshot::ServiceKey;

use crate::config::Config;
use crate::ipvsadm::apply::{apply, service_key};
use crate::ipvsadm::client::{AdmError, Client};
use crate::ipvsadm::format::{self, ListInput, ServiceNames};
use crate::ipvsadm::parse::{parse, split_line, Command, Invocation, Opt, ParseError};

/// How often a change is retried when the config changed under it (HTTP 412).
const RETRIES: usize = 5;

/// The program name in messages.
const PROGRAM: &str = "rvsadm";

fn parse_error(e: ParseError) -> AdmError {
    let mut lines: Vec<String> = Vec::new();
    if !e.message.is_empty() {
        lines.push(e.message);
    }
    if e.try_help {
        lines.push(format!("Try `{PROGRAM} -h' or '{PROGRAM} --help' for more information."));
    }
    AdmError { message: lines.join("\n"), code: e.status }
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), AdmError> {
    out.write_all(text.as_bytes()).map_err(|e| AdmError::failed(format!("cannot write the output: {e}")))
}

/// Runs one invocation (`args` without the program name). `stdin` is read by `-R`.
pub fn run(args: &[String], client: &Client, stdin: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), AdmError> {
    let inv = parse(args).map_err(parse_error)?;
    match inv.command {
        Command::Help => write_out(out, &usage()),
        Command::Version => write_out(out, &format!("{PROGRAM} v{} (rvs; ipvsadm v1.31 grammar)\n", env!("CARGO_PKG_VERSION"))),
        Command::List => list(&inv, client, out),
        Command::Save => {
            let (config, _) = client.config()?;
            let names = names(&inv);
            let none = HashMap::new();
            let input = ListInput { config: &config, stats: &[], persist_conns: &none, names: &names };
            write_out(out, &format::save(&input, &inv.format))
        }
        Command::Zero => client.zero(service_key(&inv).as_ref()),
        Command::GetLaddr => {
            let (config, _) = client.config()?;
            let only = service_key(&inv);
            if let Some(k) = &only {
                if config.service_index(k).is_none() {
                    return Err(AdmError::failed("No such service"));
                }
            }
            let mut counts: HashMap<(ServiceKey, IpAddr), u32> = HashMap::new();
            for c in client.connections()? {
                if let Some(local) = c.local {
                    let key = ServiceKey { protocol: c.protocol, vip: c.vip.ip(), port: c.vip.port() };
                    *counts.entry((key, local.ip())).or_default() += 1;
                }
            }
            write_out(out, &format::list_laddrs(&config, only.as_ref(), &counts))
        }
        Command::Restore => restore(client, stdin),
        _ => change(client, &[(0, inv)]),
    }
}

fn names(inv: &Invocation) -> ServiceNames {
    if inv.format.numeric {
        ServiceNames::default()
    } else {
        ServiceNames::system()
    }
}

fn list(inv: &Invocation, client: &Client, out: &mut dyn Write) -> Result<(), AdmError> {
    let names = names(inv);
    if inv.options.contains(&Opt::Connection) {
        let conns = client.connections()?;
        return write_out(out, &format::list_connections(&conns, &inv.format, &names));
    }
    if inv.options.contains(&Opt::Timeout) {
        return write_out(out, &format::list_timeout(&client.timeouts()?));
    }
    if inv.options.contains(&Opt::Daemon) {
        // rvs runs no IPVS sync daemon: ipvsadm prints nothing when none runs.
        return Ok(());
    }
    // The table the dataplane uses, as ipvsadm lists the kernel's: reals
    // failed by health checks left out or at weight 0, the sorry server in use.
    let config = client.effective_config()?;
    let stats = client.stats()?;
    let mut persist_conns = HashMap::new();
    if inv.format.persistent_conn {
        for c in client.connections()?.into_iter().filter(|c| c.template) {
            let key = ServiceKey { protocol: c.protocol, vip: c.vip.ip(), port: c.vip.port() };
            *persist_conns.entry((key, c.real.ip(), c.real.port())).or_insert(0u32) += 1;
        }
    }
    let input = ListInput { config: &config, stats: &stats, persist_conns: &persist_conns, names: &names };
    let text = match service_key(inv) {
        Some(key) => format::list_service(&input, &key, &inv.format).ok_or_else(|| AdmError::failed("No such service"))?,
        None => format::list_all(&input, &inv.format),
    };
    write_out(out, &text)
}

/// Applies table changes (line number, command) as one config change.
fn change(client: &Client, commands: &[(usize, Invocation)]) -> Result<(), AdmError> {
    for _ in 0..RETRIES {
        let (mut config, generation) = client.config()?;
        apply_all(&mut config, commands)?;
        if client.put_config(&config, generation)? {
            return Ok(());
        }
    }
    Err(AdmError::failed("the config kept changing while rvsadm applied its change; try again"))
}

/// Applies every command to `config`, stopping at the first refusal.
pub fn apply_all(config: &mut Config, commands: &[(usize, Invocation)]) -> Result<(), AdmError> {
    for (line, inv) in commands {
        if let Err(e) = apply(config, inv) {
            let mut message = e.0;
            if *line > 0 {
                message.push_str(&format!("\n{PROGRAM}: restore stopped at line {line}; nothing was changed"));
            }
            return Err(AdmError::failed(message));
        }
    }
    Ok(())
}

/// Parses a restore file: one ipvsadm command per line (as `-S` writes them);
/// blank lines and `#` comments are skipped, a leading `ipvsadm`/`rvsadm` word is allowed.
pub fn parse_restore(text: &str) -> Result<Vec<(usize, Invocation)>, AdmError> {
    let mut commands = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let mut words = split_line(line);
        if words.first().is_some_and(|w| w == "ipvsadm" || w == "rvsadm" || w.ends_with("/ipvsadm")) {
            words.remove(0);
        }
        if words.is_empty() {
            continue;
        }
        let inv = parse(&words).map_err(|e| {
            let e = parse_error(e);
            AdmError { message: format!("{}\n{PROGRAM}: line {line_no} of the restore input: {}", e.message, line.trim()), ..e }
        })?;
        if !inv.command.changes_config() {
            return Err(AdmError::usage(format!(
                "the '{}' command cannot be restored\n{PROGRAM}: line {line_no} of the restore input: {}",
                inv.command.name(),
                line.trim()
            )));
        }
        commands.push((line_no, inv));
    }
    Ok(commands)
}

fn restore(client: &Client, stdin: &mut dyn BufRead) -> Result<(), AdmError> {
    let mut text = String::new();
    stdin.read_to_string(&mut text).map_err(|e| AdmError::failed(format!("cannot read the restore input: {e}")))?;
    let commands = parse_restore(&text)?;
    if commands.is_empty() {
        return Ok(());
    }
    change(client, &commands)
}

/// `-h`: ipvsadm's usage text, line for line where the option is ipvsadm's
/// (same columns), with rvs's scheduler list, DPVS's local address commands
/// and rvs's `--api` in place of what rvs does not have (fwmark, IPv6, sync
/// daemon, persistence engines, GUE/GRE tunnels, one-packet scheduling).
pub fn usage() -> String {
    const TEXT: &str = r#"Usage:
  @P -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [-j enable|disable|auto]
  @P -D virtual-service
  @P -C
  @P -R
  @P -S [-n]
  @P -a|e virtual-service -r server-address [options]
  @P -d virtual-service -r server-address
  @P -L|l [virtual-service] [options]
  @P -Z [virtual-service]
  @P --set tcp tcpfin udp
  @P -P|Q virtual-service -z local-address [-F ifname]
  @P -G [virtual-service]
  @P -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --add-laddr       -P        add FULLNAT local address (DPVS)
  --del-laddr       -Q        delete FULLNAT local address (DPVS)
  --get-laddr       -G        list FULLNAT local addresses (DPVS)
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]

Options:
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh|twos|maglev,
                                      the default scheduler is wlc.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --fullnat      -b                   full NAT (DPVS; -b without a value)
  --tun-type      type                one of ipip,
                                      the default tunnel type is ipip.
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --laddr        -z local-address     FULLNAT local address (DPVS)
  --ifname       -F ifname            accepted for DPVS compatibility, ignored
  --synproxy     -j switch            TCP SYN proxy (DPVS): enable|disable, or auto
                                      (rvs: on while the worker is under SYN-flood pressure)
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
rvs options:
  --api URL                           rvsd's REST API (default $RVSADM_API or @API)
                                      the token is read from $RVSADM_TOKEN or $RVS_API_TOKEN
"#;
    format!(
        "{PROGRAM} v{} (rvs; ipvsadm v1.31 grammar over rvsd's REST API)\n{}",
        env!("CARGO_PKG_VERSION"),
        TEXT.replace("@P", PROGRAM).replace("@API", crate::ipvsadm::client::DEFAULT_API)
    )
}
