//! What happened lately: a bounded in-memory ring of the appliance's events —
//! VRRP transitions, health-check transitions (real servers up and down,
//! quorums lost and regained), config changes (API, SIGHUP), refused reloads
//! — for operators: `GET /api/v1/events`, the `events` of
//! `GET /api/v1/overview` and the status page (`GET /status`).
//!
//! The ring keeps the newest [`EVENT_CAPACITY`] events; every event has a
//! sequence number that only grows (from 1), so a reader asks for what came
//! after the last one it saw and knows from a gap that it missed some.
//! Messages name services, real servers and instances, never a secret (the
//! API token, the sync key, a VRRP password, a notify or check command).

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

/// Events the ring keeps.
pub const EVENT_CAPACITY: usize = 256;

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The control plane itself (started).
    Daemon,
    /// An operator's change: API, rvsadm, SIGHUP reload (or a refused one).
    Config,
    /// A health-check transition.
    Health,
    /// A VRRP state change.
    Vrrp,
    /// A port's link went down or came up.
    Link,
}

/// How much it matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Normal operation (a real server came up, a change was applied).
    Info,
    /// Something an operator should look at (a real server went down, a
    /// quorum was lost, an instance left MASTER or entered FAULT).
    Warning,
}

/// One event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Sequence number, from 1, one more for every event recorded.
    pub seq: u64,
    /// When, in Unix seconds.
    pub time: f64,
    /// What it is about.
    pub kind: EventKind,
    /// How much it matters.
    pub severity: Severity,
    /// What happened, for people.
    pub message: String,
    /// The same for programs (e.g. `{"instance": "VI_1", "from": "BACKUP", "to": "MASTER"}`).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

struct Ring {
    events: VecDeque<Event>,
    next_seq: u64,
}

/// The ring of events. Cheap to record into from any thread.
pub struct EventLog {
    ring: Mutex<Ring>,
    capacity: usize,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("last_seq", &self.last_seq()).field("capacity", &self.capacity).finish()
    }
}

impl Default for EventLog {
    fn default() -> Self {
        Self::with_capacity(EVENT_CAPACITY)
    }
}

impl EventLog {
    /// A ring keeping the newest `capacity` events (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        EventLog { ring: Mutex::new(Ring { events: VecDeque::with_capacity(capacity), next_seq: 1 }), capacity }
    }

    /// Records an event now; returns its sequence number.
    pub fn record(&self, kind: EventKind, severity: Severity, message: impl Into<String>, details: Value) -> u64 {
        let time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut ring = self.ring.lock();
        let seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.events.len() == self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(Event { seq, time, kind, severity, message: message.into(), details });
        seq
    }

    /// Up to `limit` of the events after sequence number `after` (all kept
    /// ones for 0), oldest first; with more than `limit`, the newest `limit`.
    pub fn after(&self, after: u64, limit: usize) -> Vec<Event> {
        let ring = self.ring.lock();
        let newer: Vec<&Event> = ring.events.iter().filter(|e| e.seq > after).collect();
        newer[newer.len().saturating_sub(limit)..].iter().map(|e| (*e).clone()).collect()
    }

    /// The sequence number of the newest event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.ring.lock().next_seq - 1
    }

    /// How many events the ring keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_numbers_every_event() {
        let log = EventLog::with_capacity(3);
        assert_eq!(log.last_seq(), 0);
        assert!(log.after(0, 10).is_empty());
        for i in 1..=5 {
            assert_eq!(log.record(EventKind::Config, Severity::Info, format!("change {i}"), Value::Null), i);
        }
        assert_eq!(log.last_seq(), 5);
        let kept: Vec<u64> = log.after(0, 10).iter().map(|e| e.seq).collect();
        assert_eq!(kept, [3, 4, 5], "the oldest fell out");
        let newest: Vec<u64> = log.after(0, 2).iter().map(|e| e.seq).collect();
        assert_eq!(newest, [4, 5], "a limit keeps the newest");
        let after: Vec<String> = log.after(4, 10).into_iter().map(|e| e.message).collect();
        assert_eq!(after, ["change 5"]);
        assert!(log.after(5, 10).is_empty());
    }

    #[test]
    fn events_serialise_without_empty_details() {
        let log = EventLog::default();
        log.record(EventKind::Vrrp, Severity::Warning, "VRRP instance VI_1: MASTER -> BACKUP", serde_json::json!({"instance": "VI_1"}));
        log.record(EventKind::Daemon, Severity::Info, "started", Value::Null);
        let v = serde_json::to_value(log.after(0, 10)).expect("serialisable");
        assert_eq!(v[0]["kind"], "vrrp");
        assert_eq!(v[0]["severity"], "warning");
        assert_eq!(v[0]["details"]["instance"], "VI_1");
        assert!(v[0]["time"].as_f64().is_some_and(|t| t > 1.5e9));
        assert!(v[1].get("details").is_none());
    }
}
