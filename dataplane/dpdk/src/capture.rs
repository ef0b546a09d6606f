//! The worker's capture hook behind `GET /api/v1/capture`.
//!
//! Each worker owns a [`CaptureTap`], shared with the control plane. While no
//! capture runs the worker pays one relaxed load of `armed` per poll-loop
//! iteration ([`CaptureTap::begin`]) and nothing else. When the control plane
//! arms the tap with a [`Session`] (a frame matcher and the producing end of a
//! bounded ring), the worker copies every matching frame as received (right
//! after `rx_burst`, before any rewrite) and as sent (right before
//! `tx_burst`, after the rewrite) into the ring; the control thread drains it,
//! applies the count/byte/time bounds and writes pcapng. A full ring drops the
//! copy (counted in the session), never the frame.
//!
//! Arming and disarming go through a mutex the worker only `try_lock`s once
//! per iteration while armed: disarming takes the session back under the
//! lock, so once [`CaptureTap::disarm`] returns no worker holds the matcher.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard};
use rvs_dataplane::frame::Frame as _;

use crate::Mbuf;

/// Which way a captured frame went through the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// As received (before any rewrite).
    Rx,
    /// As sent (after the rewrite).
    Tx,
}

/// One captured frame: a copy of its first `snaplen` bytes.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Port index (config order).
    pub port: u16,
    /// Received or sent.
    pub direction: Direction,
    /// Wall-clock time of the copy, in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// Its first bytes.
    pub data: Vec<u8>,
}

/// Decides whether a frame is captured (the service match and BPF filter of
/// the request, built by the control plane once per worker).
pub type Matcher = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// A capture running on one worker.
pub struct Session {
    matcher: Matcher,
    ring: rtrb::Producer<Frame>,
    snaplen: usize,
    ring_full: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("snaplen", &self.snaplen).field("ring_full", &self.ring_full).finish_non_exhaustive()
    }
}

impl Session {
    /// A session copying the frames `matcher` accepts, at most `snaplen`
    /// bytes of each, into `ring`.
    pub fn new(matcher: Matcher, ring: rtrb::Producer<Frame>, snaplen: usize) -> Self {
        Session { matcher, ring, snaplen, ring_full: 0 }
    }

    /// Copies the frames of `frames` that match (port `port`, direction `direction`).
    pub fn record(&mut self, port: u16, direction: Direction, frames: &[Mbuf]) {
        if frames.is_empty() {
            return;
        }
        let timestamp_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        for m in frames {
            let data = m.data();
            if !(self.matcher)(data) {
                continue;
            }
            let copy = data.get(..self.snaplen.min(data.len())).unwrap_or(data).to_vec();
            let frame = Frame { port, direction, timestamp_ns, orig_len: m.pkt_len(), data: copy };
            if self.ring.push(frame).is_err() {
                self.ring_full += 1;
            }
        }
    }

    /// Matching frames left out because the ring was full.
    pub fn ring_full(&self) -> u64 {
        self.ring_full
    }
}

/// One worker's capture hook (see the module documentation).
#[derive(Debug, Default)]
pub struct CaptureTap {
    armed: AtomicBool,
    session: Mutex<Option<Session>>,
}

/// What a worker holds for one poll-loop iteration: the running session, if any.
pub type Active<'a> = Option<MutexGuard<'a, Option<Session>>>;

impl CaptureTap {
    /// Called once per poll-loop iteration: one relaxed load when no capture
    /// runs. While armed, the session is locked for the iteration (a control
    /// thread disarming waits at most that long).
    #[inline]
    pub fn begin(&self) -> Active<'_> {
        if self.armed.load(Ordering::Relaxed) {
            self.session.try_lock()
        } else {
            None
        }
    }

    /// Starts `session` on this worker (replacing any other).
    pub fn arm(&self, session: Session) {
        *self.session.lock() = Some(session);
        self.armed.store(true, Ordering::Release);
    }

    /// Stops the capture and returns its session: when this returns the
    /// worker no longer runs the matcher.
    pub fn disarm(&self) -> Option<Session> {
        self.armed.store(false, Ordering::Release);
        self.session.lock().take()
    }
}

/// The hook the worker calls on a burst (received or about to be sent).
#[inline]
pub fn record(active: &mut Active<'_>, port: u16, direction: Direction, frames: &[Mbuf]) {
    if let Some(session) = active.as_mut().and_then(|g| g.as_mut()) {
        session.record(port, direction, frames);
    }
}
