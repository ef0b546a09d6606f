//! The command lines of rvsd and rvsadm as clap descriptions, in the library
//! so that `rvs-docgen` makes the man pages (clap_mangen) and shell
//! completions (clap_complete) from the same source as `--help`.
//!
//! rvsd parses its arguments with [`RvsdArgs`]. rvsadm keeps ipvsadm's own
//! grammar (option clusters, `-b` read by its argument, ipvsadm's messages),
//! which clap cannot express; [`rvsadm_command`] describes it for the man page
//! and completions from the parser's option tables and ipvsadm-shaped `-h`
//! text, so the description cannot drift from what the parser accepts.

use std::path::PathBuf;

use crate::ipvsadm::parse::{Arity, LONG_ONLY, SHORT};
use crate::statedump;

/// rvsd's command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "rvsd",
    version,
    about = "rvs: a DPDK layer-4 load balancer with IPVS's modes (DR, NAT, TUN, FULLNAT) and schedulers, Keepalived's VRRP and health checks, and a REST API",
    after_help = "Signals: HUP reloads the config, USR1 dumps the state, USR2 the statistics, TERM/INT stop.\nExit codes: 0 ok, 1 other error, 2 invalid config, 3 DPDK could not start, 4 the API cannot listen, 5 HA could not start, 10-15 keepalived.conf errors."
)]
pub struct RvsdArgs {
    /// The JSON configuration file (with --keepalived: the base for ports, EAL, API).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Take services, VRRP and sync from this keepalived.conf.
    #[arg(long, short = 'k', value_name = "FILE")]
    pub keepalived: Option<PathBuf>,
    /// Validate the configuration and exit (distinct exit code per kind of error).
    #[arg(long = "check-config", alias = "check")]
    pub check: bool,
    /// Write rvsd's process ID to FILE while it runs (a live rvsd named there refuses the start).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Where SIGUSR1 (rvsd.data) and SIGUSR2 (rvsd.stats) dumps are written.
    #[arg(long, value_name = "DIR", default_value = statedump::DEFAULT_DIR)]
    pub dump_dir: PathBuf,
}

/// rvsadm's command line, for documentation only (see the module docs).
pub fn rvsadm_command() -> clap::Command {
    let mut cmd = clap::Command::new("rvsadm")
        .version(env!("CARGO_PKG_VERSION"))
        .about("rvs's ipvsadm: ipvsadm's command line and listings over rvsd's REST API")
        .long_about(format!(
            "rvsadm takes ipvsadm's command line (and DPVS's FULLNAT additions) and applies it to rvsd through its REST API. \
             The API is --api URL, else $RVSADM_API, else {}; the token is $RVSADM_TOKEN, else $RVS_API_TOKEN.\n\n{}",
            crate::ipvsadm::client::DEFAULT_API,
            crate::ipvsadm::run::usage()
        ))
        .after_help("Exit status: 0 success; 1 rvsd refused or the operation failed; 2 bad command line or rvsd unreachable.")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(clap::Arg::new("api").long("api").value_name("URL").help("rvsd's REST API"))
        .arg(clap::Arg::new("check-config").long("check-config").value_name("FILE").help(
            "Validate an rvsd config file as `rvsd --check-config` does (same checks and exit codes), without rvsd or DPDK; \
             alone on the line, optionally followed by --keepalived FILE",
        ))
        .arg(clap::Arg::new("drain").long("drain").value_name("SECONDS").num_args(0..=1).help(
            "Drain this node of an ECMP cluster: its BGP routes are withdrawn, its flows served for SECONDS \
             (default: rvsd's bgp.drain_grace), then rvsd stops; alone on the line",
        ));
    let mut shorts: Vec<clap::Arg> = Vec::new();
    for &(short, long, arity) in SHORT {
        // Two letters for one option (`-L`, `-l`): the second is an alias.
        match shorts.iter_mut().find(|a| a.get_id() == long) {
            Some(arg) => *arg = arg.clone().short_alias(short),
            None => shorts.push(option(long, arity).short(short)),
        }
    }
    cmd = cmd.args(shorts);
    for &(long, arity) in LONG_ONLY {
        cmd = cmd.arg(option(long, arity));
    }
    cmd
}

/// One of rvsadm's options as a clap argument.
fn option(long: &'static str, arity: Arity) -> clap::Arg {
    let arg = clap::Arg::new(long).long(long);
    match arity {
        Arity::None => arg.action(clap::ArgAction::SetTrue),
        Arity::Required => arg.num_args(1),
        Arity::Optional => arg.num_args(0..=1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn both_descriptions_are_consistent() {
        RvsdArgs::command().debug_assert();
        rvsadm_command().debug_assert();
    }

    #[test]
    fn every_described_rvsadm_option_is_one_the_parser_knows() {
        for arg in rvsadm_command().get_arguments().filter(|a| !["api", "check-config", "drain"].contains(&a.get_id().as_str())) {
            let long = format!("--{}", arg.get_long().expect("long name"));
            let args = match arg.get_num_args().map(|n| n.min_values()) {
                Some(0) | None => vec![long.clone()],
                _ => vec![long.clone(), "x".to_owned()],
            };
            if let Err(e) = crate::ipvsadm::parse::parse(&args) {
                assert!(!e.message.contains("unknown option"), "{long}: {}", e.message);
            }
        }
    }
}
