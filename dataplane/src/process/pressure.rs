//! Table pressure: whether this worker is under a SYN flood's pressure
//! ([`crate::snapshot::SynFlood`]), and the defences that follow from it.
//!
//! * Detection ([`Processor::update_pressure`]): from the fill of either
//!   table (IPv4, IPv6: each against its own capacity) and the number of
//!   SYN_RECV entries of both, which this worker counts as connections are
//!   created, change state and go (`count_conn`, `recount_state`). It is
//!   evaluated on every tick and before every new connection: three compares.
//!   Hysteresis: on at a threshold, off once all are below half theirs.
//! * `drop_entry` ([`Processor::make_room`]): a new connection that finds the
//!   table full takes the place of an expired entry or, with `drop_entry`, of
//!   a SYN_RECV one, found by a bounded scan from a rotating cursor
//!   ([`ConnTable::find_victim`]); never of another live connection. The
//!   victim leaves through the normal removal path (counts, announcements,
//!   FULLNAT port). Whether or not under pressure: a full table is pressure.
//!   The IPv6 table does the same for its own entries ([`Processor::make_room6`]).
//! * Short SYN_RECV timeout: under pressure a new SYN_RECV entry, and one
//!   whose client sends its SYN again, gets `syn_recv_timeout_under_pressure`
//!   instead of the state's timeout; older SYN_RECV entries are cut to it when
//!   the incremental expiry sweep meets them ([`Processor::tick`]).
//! * Rate bound: under pressure, new connections from one source prefix are
//!   bounded by token buckets ([`super::prefix_rate`]).
//!
//! A service's `auto` SYN proxy turns on with pressure too
//! ([`Processor::syn_proxy_active`]).

use super::prefix_rate::PrefixRate;
use super::*;
use crate::conn::Victim;
use crate::snapshot::{Service, SynProxy};

/// Slots `Processor::make_room` looks at, at most, for a victim.
pub const VICTIM_SCAN: usize = 32;

/// This worker's pressure state.
#[derive(Debug, Default)]
pub(super) struct Pressure {
    /// Under pressure now.
    pub(super) on: bool,
    /// TCP connections in SYN_RECV in this worker's table.
    pub(super) syn_recv: usize,
    /// Times pressure turned on or off so far.
    pub(super) flips: u64,
    /// The thresholds in entries, for the snapshot they were computed from.
    limits: Limits,
    /// The SYN_RECV timeout in force (`Some` only under pressure).
    cap_ms: Option<u64>,
    /// The per-prefix rate bound.
    rate: PrefixRate,
}

/// The snapshot's thresholds as entry counts of this worker's table, so a
/// check is two compares (computed when the worker starts and when it adopts
/// a snapshot: [`Processor::set_pressure_limits`]).
#[derive(Clone, Copy, Debug, Default)]
struct Limits {
    /// Entries that start pressure.
    table_on: usize,
    /// SYN_RECV entries that start pressure.
    syn_on: usize,
    /// Entries that keep pressure on (half of `table_on`).
    table_off: usize,
    /// SYN_RECV entries that keep pressure on (half of `syn_on`).
    syn_off: usize,
    /// IPv6 table entries that start pressure.
    table6_on: usize,
    /// IPv6 table entries that keep pressure on (half of `table6_on`).
    table6_off: usize,
    /// The SYN_RECV timeout under pressure (never longer than the normal one).
    cap_ms: Option<u64>,
}

/// The least `n` with `n / capacity ≥ percent / (100 × divisor)`; never
/// reached for a percent of 0.
fn threshold(capacity: usize, percent: u8, divisor: u64) -> usize {
    if percent == 0 {
        return usize::MAX;
    }
    let scaled = (capacity as u64).saturating_mul(u64::from(percent));
    usize::try_from(scaled.div_ceil(100 * divisor)).unwrap_or(usize::MAX)
}

/// A worker's table pressure, for its housekeeping's log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PressureStatus {
    /// Under pressure now.
    pub on: bool,
    /// Connections in the table.
    pub conns: usize,
    /// The table's capacity.
    pub capacity: usize,
    /// TCP connections in SYN_RECV.
    pub syn_recv: usize,
    /// Times pressure turned on or off since the worker started.
    pub flips: u64,
}

/// The entry a victim search found and the counter its removal counts under.
fn evicted(victim: Option<Victim>) -> Option<(ConnId, Counter)> {
    match victim? {
        Victim::Expired(id) => Some((id, Counter::ConnExpired)),
        Victim::SynRecv(id) => Some((id, Counter::ConnEvictedSynRecv)),
    }
}

/// True for a connection [`Pressure::syn_recv`] counts.
fn is_syn_recv<S: ConnAddr>(c: &Conn<S>) -> bool {
    c.protocol == Protocol::Tcp && c.state == TcpState::SynRecv
}

/// Cuts a SYN_RECV connection's timer to `max_ms` if more is left. True if cut.
pub(super) fn shorten_syn_recv<S: ConnAddr>(c: &mut Conn<S>, max_ms: u64, now_ms: u64) -> bool {
    if is_syn_recv(c) && c.expires_in_ms(now_ms) > max_ms {
        c.restart_timer(max_ms, now_ms);
        true
    } else {
        false
    }
}

impl<F: Frame> Processor<F> {
    /// Whether this worker is under pressure now.
    pub fn under_pressure(&self) -> bool {
        self.pressure.on
    }

    /// Whether SYNs to `svc` are answered with a cookie now.
    pub fn syn_proxy_active(&self, svc: &Service) -> bool {
        match svc.syn_proxy {
            SynProxy::Off => false,
            SynProxy::On => true,
            SynProxy::Auto => self.under_pressure(),
        }
    }

    /// This worker's pressure, table fill and SYN_RECV entries now.
    pub fn pressure_status(&self) -> PressureStatus {
        PressureStatus {
            on: self.pressure.on,
            conns: self.conns.len(),
            capacity: self.conns.capacity(),
            syn_recv: self.pressure.syn_recv,
            flips: self.pressure.flips,
        }
    }

    /// Counts a connection into (`delta` 1) or out of (-1) the SYN_RECV entries.
    pub(super) fn count_syn_recv<S: ConnAddr>(&mut self, c: &Conn<S>, delta: i32) {
        if is_syn_recv(c) {
            self.pressure.syn_recv = self.pressure.syn_recv.saturating_add_signed(delta as isize);
        }
    }

    /// Computes the thresholds of the snapshot in use (at start and on every
    /// snapshot adopted).
    pub(super) fn set_pressure_limits(&mut self) {
        let (f, cap, cap6) = (self.snapshot.syn_flood, self.conns.capacity(), self.conns6.capacity());
        let s = f.syn_recv_timeout_under_pressure;
        let normal = state_timeout_ms(TcpState::SynRecv, &self.snapshot.timeouts);
        self.pressure.limits = Limits {
            table_on: threshold(cap, f.pressure_table_percent, 1),
            syn_on: threshold(cap, f.pressure_syn_recv_percent, 1),
            table_off: threshold(cap, f.pressure_table_percent, 2),
            syn_off: threshold(cap, f.pressure_syn_recv_percent, 2),
            table6_on: threshold(cap6, f.pressure_table_percent, 1),
            table6_off: threshold(cap6, f.pressure_table_percent, 2),
            cap_ms: (s > 0).then(|| (u64::from(s) * 1000).min(normal)),
        };
        self.pressure.cap_ms = if self.pressure.on { self.pressure.limits.cap_ms } else { None };
    }

    /// Pressure turns on or off.
    #[cold]
    fn flip_pressure(&mut self, on: bool) {
        self.pressure.on = on;
        self.pressure.cap_ms = if on { self.pressure.limits.cap_ms } else { None };
        self.pressure.flips += 1;
        self.counters.set(Counter::SynFloodPressure, u64::from(on));
        if on {
            self.counters.inc(Counter::SynFloodPressureOn);
        }
    }

    /// Re-evaluates the pressure from the tables' fill and the SYN_RECV
    /// entries, with hysteresis: on when any reaches its threshold, off
    /// when all are below half theirs. Sets the pressure gauge when it
    /// changes (the tick sets the SYN_RECV one). The thresholds are computed
    /// once per snapshot: a check is three compares.
    #[inline]
    pub(super) fn update_pressure(&mut self) {
        let (l, len, len6, syn_recv) = (&self.pressure.limits, self.conns.len(), self.conns6.len(), self.pressure.syn_recv);
        let on = if self.pressure.on {
            len >= l.table_off || syn_recv >= l.syn_off || len6 >= l.table6_off
        } else {
            len >= l.table_on || syn_recv >= l.syn_on || len6 >= l.table6_on
        };
        if on != self.pressure.on {
            self.flip_pressure(on);
        }
    }

    /// The SYN_RECV timeout while under pressure, in milliseconds (never
    /// longer than the normal one); `None` when not under pressure or the
    /// setting is 0.
    pub(super) fn syn_recv_cap_ms(&self) -> Option<u64> {
        self.pressure.cap_ms
    }

    /// Whether a new connection from `src` may be created: always when not
    /// under pressure; under pressure, while its source prefix is within
    /// `new_conns_per_prefix_per_sec`. The drop reason otherwise.
    #[inline]
    pub(super) fn admit_new_conn(&mut self, src: IpAddr, now_ms: u64) -> Option<Counter> {
        self.update_pressure();
        if !self.pressure.on {
            return None;
        }
        self.admit_under_pressure(src, now_ms)
    }

    /// [`Processor::admit_new_conn`] under pressure: the source prefix's rate bound.
    fn admit_under_pressure(&mut self, src: IpAddr, now_ms: u64) -> Option<Counter> {
        let f = self.snapshot.syn_flood;
        let lens = (f.prefix_len, f.prefix_len_ipv6);
        (!self.pressure.rate.admit(src, lens, f.new_conns_per_prefix_per_sec, now_ms)).then_some(Counter::DropNewConnRate)
    }

    /// Frees a slot of a full table for a new connection: removes an expired
    /// entry or, with `drop_entry`, a SYN_RECV one (see the module docs),
    /// counting it. False when the slots looked at hold neither.
    pub(super) fn make_room(&mut self, now_ms: u64, out: &mut Output<F>) -> bool {
        let victim = self.conns.find_victim(now_ms, VICTIM_SCAN, self.snapshot.syn_flood.drop_entry);
        let Some((id, counter)) = evicted(victim) else { return false };
        self.remove_conn(id, now_ms, out);
        self.counters.inc(counter);
        true
    }

    /// [`Processor::make_room`] for the IPv6 table.
    pub(super) fn make_room6(&mut self, now_ms: u64, out: &mut Output<F>) -> bool {
        let victim = self.conns6.find_victim(now_ms, VICTIM_SCAN, self.snapshot.syn_flood.drop_entry);
        let Some((id, counter)) = evicted(victim) else { return false };
        self.remove_conn6(id, now_ms, out);
        self.counters.inc(counter);
        true
    }
}
