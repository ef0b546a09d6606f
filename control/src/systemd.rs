//! What rvsd tells systemd (`Type=notify`, sd_notify(3)) and how it logs for
//! journald.
//!
//! - READY=1 once the API is bound, the ports are up and VRRP, health checks
//!   and sync have started; RELOADING=1 … READY=1 around a SIGHUP reload;
//!   STOPPING=1 at shutdown; STATUS= a line `systemctl status` shows.
//! - WATCHDOG=1 every half `WatchdogSec=`, but only while every worker's poll
//!   loop goes round ([`Progress`]): a stuck worker stops the pings and
//!   systemd restarts rvsd, as it would a hung Keepalived.
//! - Log lines carry sd-daemon(3) severity prefixes (`<3>` error … `<7>`
//!   debug) and no colour or timestamp when stderr is the journal
//!   (`$JOURNAL_STREAM`); journald files them under the right priority.
//!
//! Every call is a no-op outside systemd (`$NOTIFY_SOCKET` unset).

use std::fmt;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Sends `states` to systemd; failures are logged, never fatal.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// READY=1 with a status line.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// RELOADING=1 (a SIGHUP reload starts; [`ready`] ends it).
pub fn reloading() {
    notify(&[NotifyState::Reloading, NotifyState::Status("reloading the configuration")]);
}

/// STOPPING=1.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// WATCHDOG=1.
pub fn watchdog_ping() {
    notify(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half of `WatchdogSec=`, or `None` when
/// systemd set no watchdog for this process. As sd_watchdog_enabled(3):
/// `$WATCHDOG_USEC` gives the interval; `$WATCHDOG_PID`, when set, must name
/// this process (the `sd-notify` crate also requires it to be set, which a
/// supervisor other than systemd may not do).
pub fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Whether every worker made progress between two looks: each worker's
/// heartbeat (see `SharedCounters::heartbeat`) must have moved.
#[derive(Debug, Default)]
pub struct Progress {
    last: Vec<u64>,
}

impl Progress {
    /// Records `beats` (one per worker) and says whether each one moved since
    /// the previous call. The first call only records (false).
    pub fn every_worker_moved(&mut self, beats: &[u64]) -> bool {
        let moved = self.last.len() == beats.len() && self.last.iter().zip(beats).all(|(before, now)| before != now);
        self.last = beats.to_vec();
        moved
    }

    /// The workers (by index) whose heartbeat in `beats` equals the previous
    /// look's (call before [`Progress::every_worker_moved`] records `beats`).
    pub fn stalled(&self, beats: &[u64]) -> Vec<usize> {
        self.last.iter().zip(beats).enumerate().filter(|(_, (a, b))| a == b).map(|(i, _)| i).collect()
    }
}

/// True when stderr is connected to the journal (systemd sets
/// `$JOURNAL_STREAM` to its device and inode).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = stream.split_once(':') else { return false };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else { return false };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Prints an error that ends the program on stderr as `program: message`.
/// Under systemd the line starts with the sd-daemon(3) error prefix `<3>`, so
/// `journalctl -p err` shows why a start failed (journald would otherwise file
/// it at the unit's default priority, info).
pub fn print_error(program: &str, message: impl fmt::Display) {
    let prefix = if stderr_is_journal() { severity_prefix(&Level::ERROR) } else { "" };
    eprintln!("{prefix}{program}: {message}");
}

/// A log line formatter that puts the sd-daemon(3) severity prefix before
/// what `inner` writes.
pub struct SeverityPrefix<F>(pub F);

/// The sd-daemon(3) prefix for a tracing level.
pub fn severity_prefix(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

impl<S, N, F> FormatEvent<S, N> for SeverityPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        writer.write_str(severity_prefix(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Sets up logging to stderr: for the journal with severity prefixes and no
/// timestamps or colour; for a terminal with colour; for a file or pipe plain.
/// `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    if stderr_is_journal() {
        // The prefix carries the level: the line does not repeat it.
        let inner = tracing_subscriber::fmt::format().without_time().with_ansi(false).with_target(false).with_level(false);
        builder.with_ansi(false).event_format(SeverityPrefix(inner)).init();
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_needs_every_worker_to_move() {
        let mut p = Progress::default();
        assert!(!p.every_worker_moved(&[1, 1]), "the first look only records");
        assert!(p.every_worker_moved(&[2, 5]));
        assert_eq!(p.stalled(&[3, 5]), [1], "measured against the previous look");
        assert!(!p.every_worker_moved(&[3, 5]), "worker 1 is stuck");
        assert!(p.every_worker_moved(&[4, 6]));
        assert!(!p.every_worker_moved(&[5]), "a different worker count is no progress");
    }

    #[test]
    fn severities_map_to_sd_daemon_prefixes() {
        assert_eq!(severity_prefix(&Level::ERROR), "<3>");
        assert_eq!(severity_prefix(&Level::WARN), "<4>");
        assert_eq!(severity_prefix(&Level::INFO), "<6>");
        assert_eq!(severity_prefix(&Level::DEBUG), "<7>");
    }
}
