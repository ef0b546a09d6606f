//! rvsadm: ipvsadm's command line for rvs, over rvsd's REST API.
//!
//! `rvsadm [--api URL] <ipvsadm arguments>`; see `deploy/docs/rvsadm.md`.
//! `rvsadm --check-config FILE [--keepalived FILE]` validates an rvsd config
//! offline, as `rvsd --check-config` does (same checks, same exit codes), on a
//! machine without DPDK.
//! `rvsadm --drain [SECONDS]` drains the node (see `deploy/docs/cluster.md`).
//! The API address is `--api URL`, else `$RVSADM_API`, else
//! `http://127.0.0.1:9090`; the token is `$RVSADM_TOKEN`, else `$RVS_API_TOKEN`.
//!
//! Exit status: 0 success; 1 rvsd refused or the operation failed; 2 bad
//! command line (ipvsadm's own checks) or rvsd unreachable; 255 bad command
//! line found by popt, or no command first (as ipvsadm).

use std::process::ExitCode;

use rvs_control::ipvsadm::{run, Client};

/// `--check-config FILE [--keepalived FILE]` (alone on the line): the files.
fn check_config_args(args: &[String]) -> Option<Result<(String, Option<String>), String>> {
    let (first, rest) = args.split_first()?;
    let file = match first.strip_prefix("--check-config=") {
        Some(f) => f.to_string(),
        None if first == "--check-config" => match rest.first() {
            Some(f) => f.clone(),
            None => return Some(Err("--check-config: missing argument (the rvsd config file)".to_string())),
        },
        None => return None,
    };
    let rest = if first == "--check-config" { &rest[1..] } else { rest };
    Some(match rest {
        [] => Ok((file, None)),
        [k, path] if k == "--keepalived" => Ok((file, Some(path.clone()))),
        _ => Err("usage: rvsadm --check-config FILE [--keepalived FILE]".to_string()),
    })
}

/// Takes `--api URL` / `--api=URL` out of the arguments.
fn take_api(args: &mut Vec<String>) -> Result<Option<String>, String> {
    let mut api = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--api" {
            if i + 1 >= args.len() {
                return Err("--api: missing argument".to_string());
            }
            api = Some(args.remove(i + 1));
            args.remove(i);
        } else if let Some(v) = args[i].strip_prefix("--api=") {
            api = Some(v.to_string());
            args.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(api)
}

/// `rvsadm --drain [SECONDS]`: withdraw this node's routes, serve its flows
/// for SECONDS (default rvsd's `bgp.drain_grace`), then stop rvsd.
fn drain(client: &Client, rest: &[String]) -> ExitCode {
    let grace = match rest {
        [] => None,
        [g] => match g.parse::<u32>() {
            Ok(g) => Some(g),
            Err(_) => {
                eprintln!("--drain: {g:?} is not a number of seconds");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: rvsadm --drain [SECONDS]");
            return ExitCode::from(2);
        }
    };
    match client.drain(grace) {
        Ok(v) => {
            let vips = v.get("announced").map(ToString::to_string).unwrap_or_default();
            let left = v.get("stops_in_s").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
            println!("draining: routes withdrawn (announced now: {vips}); rvsd stops in {left:.0} s");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", e.message);
            ExitCode::from(e.code)
        }
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    match check_config_args(&args) {
        Some(Ok((config, keepalived))) => {
            return rvs_control::check::check_config("rvsadm", config.as_ref(), keepalived.as_deref().map(std::path::Path::new))
        }
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        None => {}
    }
    let api = match take_api(&mut args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let client = Client::from_env(api);
    if args.first().is_some_and(|a| a == "--drain") {
        return drain(&client, &args[1..]);
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(&args, &client, &mut input, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.message);
            ExitCode::from(e.code)
        }
    }
}
