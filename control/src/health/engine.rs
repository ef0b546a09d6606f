//! The health-check engine: one tokio task per checked real server, a shared
//! [`HealthState`], and a `watch` counter bumped whenever the effective config
//! changes.
//!
//! ```no_run
//! # async fn demo(config: rvs_control::Config) {
//! use rvs_control::health::HealthEngine;
//! let (tx, mut rx) = tokio::sync::watch::channel(0u64);
//! let engine = HealthEngine::start(&config, tx);
//! while rx.changed().await.is_ok() {
//!     let effective = engine.effective(); // = state.effective(&operator config)
//!     // build a snapshot from `effective` and publish it
//! #   let _ = effective;
//! }
//! # }
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::state::{managed, service_health, HealthEvent, HealthReport, HealthState, RoundResult, Transition};
use super::{kind_name, real_health, run_check, secs, RealKey, WeightChange};
use crate::config::Config;
use crate::events::{EventKind, EventLog, Severity};
use crate::ha::HealthCheck;

/// Shortest pause between two rounds of one real server, whatever `delay_loop` says.
pub const MIN_DELAY_LOOP: Duration = Duration::from_millis(10);

/// What the engine shares with its tasks.
struct Shared {
    state: Arc<Mutex<HealthState>>,
    /// The operator's config last given to `start`/`reconfigure`.
    config: Mutex<Arc<Config>>,
    changed: watch::Sender<u64>,
    runtime: Handle,
    /// Where transitions are recorded for operators, once attached.
    events: Mutex<Option<Arc<EventLog>>>,
}

/// What a real server's task runs: its checks and its service's `delay_loop`.
#[derive(Clone, Debug, PartialEq)]
struct Spec {
    checks: Vec<HealthCheck>,
    delay_loop: f64,
}

/// A running real-server task.
struct RealTask {
    spec: Spec,
    /// Set (under the state lock) when the task is stopped, so a round that
    /// ends meanwhile is not recorded.
    stopped: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// Runs the health checks of a config and keeps the shared [`HealthState`].
///
/// Whenever a real server goes up or down, a dynamic weight changes or a
/// service's quorum changes, the engine bumps the `watch::Sender<u64>` given to
/// [`start`](Self::start) (and runs the transition's notify command with
/// `sh -c`, in the background, logging its exit status and output with
/// `tracing`). The receiver then rebuilds from [`effective`](Self::effective).
pub struct HealthEngine {
    shared: Arc<Shared>,
    tasks: HashMap<RealKey, RealTask>,
}

impl HealthEngine {
    /// Starts checking every real server of `config` that has checks.
    ///
    /// Must be called from within a tokio runtime (it panics otherwise, as
    /// `tokio::spawn` does); the engine's tasks run on that runtime, and
    /// [`reconfigure`](Self::reconfigure) may then be called from any thread.
    /// The first round of every real runs at once. Transitions already caused
    /// by the initial state (a service that starts below its quorum, e.g.
    /// with `alpha`) bump `changed` and run their notifiers.
    pub fn start(config: &Config, changed: watch::Sender<u64>) -> HealthEngine {
        let shared = Arc::new(Shared {
            state: Arc::new(Mutex::new(HealthState::new())),
            config: Mutex::new(Arc::new(config.clone())),
            changed,
            runtime: Handle::current(),
            events: Mutex::new(None),
        });
        let mut engine = HealthEngine { shared, tasks: HashMap::new() };
        engine.reconfigure(config);
        engine
    }

    /// Applies a new operator config: tasks of real servers whose checks (and
    /// service `delay_loop`) are unchanged keep running with their state; tasks
    /// of changed ones restart (their state, up or down, is kept until their
    /// next round); new real servers start in their initial state; removed
    /// ones stop (with `omega`, running `notify_down`/`quorum_down`). Quorums
    /// are re-evaluated against the new config.
    ///
    /// Bumps `changed` only if this caused a transition: the caller, who
    /// changed the config, should rebuild from [`effective`](Self::effective)
    /// anyway.
    pub fn reconfigure(&mut self, config: &Config) {
        let wanted = checked_reals(config);
        let transitions = {
            let mut state = self.shared.state.lock();
            *self.shared.config.lock() = Arc::new(config.clone());
            self.tasks.retain(|key, task| {
                let keep = wanted.get(key) == Some(&task.spec);
                if !keep {
                    task.stopped.store(true, Ordering::SeqCst);
                    task.handle.abort();
                }
                keep
            });
            state.sync(config, SystemTime::now())
        };
        for (key, spec) in wanted {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let stopped = Arc::new(AtomicBool::new(false));
            let handle = self.shared.runtime.spawn(run_real(key, spec.clone(), self.shared.clone(), stopped.clone()));
            self.tasks.insert(key, RealTask { spec, stopped, handle });
        }
        publish(&self.shared, transitions);
    }

    /// Records every transition from now on in `events` as well (the API's
    /// event ring, [`crate::api::ApiState::events`]).
    pub fn set_events(&self, events: Arc<EventLog>) {
        *self.shared.events.lock() = Some(events);
    }

    /// The shared state (lock it briefly: the tasks record into it).
    pub fn state(&self) -> Arc<Mutex<HealthState>> {
        self.shared.state.clone()
    }

    /// The operator's config the engine runs.
    pub fn config(&self) -> Arc<Config> {
        self.shared.config.lock().clone()
    }

    /// The effective config now: [`HealthState::effective`] of the operator's config.
    pub fn effective(&self) -> Config {
        let config = self.config();
        let state = self.shared.state.lock();
        state.effective(&config)
    }

    /// The report for `GET /api/v1/health`: every checked real server (state,
    /// weight, last result and error, last check and change times) and every
    /// managed service's quorum. Serialize it with serde.
    pub fn snapshot(&self) -> HealthReport {
        let config = self.config();
        let state = self.shared.state.lock();
        state.report(&config)
    }

    /// Number of real-server tasks running.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// The real servers whose checks run now, sorted by service, address and
    /// port: after [`reconfigure`](Self::reconfigure), exactly the reals of the
    /// config that have checks.
    pub fn running(&self) -> Vec<RealKey> {
        let mut keys: Vec<RealKey> = self.tasks.iter().filter(|(_, t)| !t.handle.is_finished()).map(|(k, _)| *k).collect();
        keys.sort_by_key(|k| k.sort_key());
        keys
    }

    /// Stops every task and forgets the state, running the `omega` notifiers
    /// (`notify_down` of up reals and `quorum_down` of services holding their
    /// quorum, where the service has `omega`). Bumps `changed` if any ran.
    pub fn shutdown(&mut self) {
        let transitions = {
            let mut state = self.shared.state.lock();
            for task in self.tasks.values() {
                task.stopped.store(true, Ordering::SeqCst);
                task.handle.abort();
            }
            self.tasks.clear();
            state.clear()
        };
        publish(&self.shared, transitions);
    }
}

impl Drop for HealthEngine {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.stopped.store(true, Ordering::SeqCst);
            task.handle.abort();
        }
    }
}

/// The checked real servers of `config` and what their tasks run.
fn checked_reals(config: &Config) -> HashMap<RealKey, Spec> {
    let mut out = HashMap::new();
    for service in config.services.iter().filter(|s| managed(s)) {
        let delay_loop = service_health(service).delay_loop;
        for real in &service.reals {
            let checks = &real_health(real).checks;
            if !checks.is_empty() {
                out.insert(RealKey::of(service, real), Spec { checks: checks.clone(), delay_loop });
            }
        }
    }
    out
}

/// A real server's task: a round, record it, sleep `delay_loop`, again.
async fn run_real(key: RealKey, spec: Spec, shared: Arc<Shared>, stopped: Arc<AtomicBool>) {
    let delay = secs(spec.delay_loop).max(MIN_DELAY_LOOP);
    loop {
        let started = std::time::Instant::now();
        let result = run_round(&spec.checks, key.address, key.port).await.took(started.elapsed());
        let transitions = {
            let mut state = shared.state.lock();
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            let config = shared.config.lock().clone();
            state.record(&key, &result, &config, SystemTime::now())
        };
        if let Some(error) = &result.error {
            tracing::debug!("health: {key}: round failed: {error}");
        }
        publish(&shared, transitions);
        tokio::time::sleep(delay).await;
    }
}

/// Runs all `checks` concurrently, each with its retries.
async fn run_round(checks: &[HealthCheck], address: IpAddr, port: u16) -> RoundResult {
    let mut set = JoinSet::new();
    for (i, check) in checks.iter().cloned().enumerate() {
        set.spawn(async move {
            let result = run_check(&check, address, port).await.map_err(|e| format!("{}: {e}", kind_name(&check.kind)));
            (i, result)
        });
    }
    let mut results: Vec<(usize, Result<WeightChange, String>)> = Vec::with_capacity(checks.len());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => results.push((usize::MAX, Err(format!("check task failed: {e}")))),
        }
    }
    results.sort_by_key(|(i, _)| *i);
    let mut weight = WeightChange::Keep;
    let mut errors = Vec::new();
    for (_, r) in results {
        match r {
            Ok(WeightChange::Keep) => {}
            Ok(w) => weight = w,
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        RoundResult { weight, ..RoundResult::pass() }
    } else {
        RoundResult::fail(errors.join("; "))
    }
}

/// Logs `transitions`, bumps the change counter and runs their commands.
fn publish(shared: &Shared, transitions: Vec<Transition>) {
    if transitions.is_empty() {
        return;
    }
    shared.changed.send_modify(|n| *n = n.wrapping_add(1));
    let events = shared.events.lock().clone();
    for t in transitions {
        let what = describe(&t.event);
        tracing::info!("health: {what}");
        if let Some(events) = &events {
            let severity = match t.event {
                HealthEvent::RealDown { .. } | HealthEvent::QuorumLost { .. } => Severity::Warning,
                HealthEvent::RealUp { .. } | HealthEvent::WeightChanged { .. } | HealthEvent::QuorumRegained { .. } => Severity::Info,
            };
            events.record(EventKind::Health, severity, what.clone(), serde_json::to_value(&t.event).unwrap_or_default());
        }
        if let Some(command) = t.command {
            run_notify(&shared.runtime, command, what);
        }
    }
}

fn describe(event: &HealthEvent) -> String {
    match event {
        HealthEvent::RealUp { real } => format!("real server {real} is up"),
        HealthEvent::RealDown { real } => format!("real server {real} is down"),
        HealthEvent::WeightChanged { real, weight } => format!("real server {real} has weight {weight}"),
        HealthEvent::QuorumLost { service } => format!("service {service} lost its quorum"),
        HealthEvent::QuorumRegained { service } => format!("service {service} regained its quorum"),
    }
}

/// Runs `command` with `sh -c` in the background; logs its exit status and output.
pub fn run_notify(runtime: &Handle, command: String, what: String) {
    runtime.spawn(async move {
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .output()
            .await;
        match output {
            Ok(out) => {
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                if out.status.success() {
                    tracing::info!("health: notify `{command}` ({what}): {}; stdout: {stdout:?}; stderr: {stderr:?}", out.status);
                } else {
                    tracing::warn!("health: notify `{command}` ({what}): {}; stdout: {stdout:?}; stderr: {stderr:?}", out.status);
                }
            }
            Err(e) => tracing::warn!("health: notify `{command}` ({what}) could not run: {e}"),
        }
    });
}
