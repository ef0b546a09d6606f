//! The link (carrier) state of the dataplane ports.
//!
//! One writer, the link monitor of rvsd, reads each port's state off the
//! packet path (`rte_eth_link_get_nowait`, and the kernel's carrier for
//! af_packet ports) and stores it here; the workers read it before every tx
//! burst so that frames for a port without carrier are dropped and counted
//! instead of being queued and sent late, and VRRP reads it so that a port
//! losing its carrier puts its instances in FAULT. Plain loads and stores:
//! no read-modify-write on the packet path.

use std::sync::atomic::{AtomicBool, Ordering};

/// Link state per port index.
#[derive(Debug)]
pub struct LinkStates {
    up: Vec<AtomicBool>,
}

impl LinkStates {
    /// `ports` ports, all up until the monitor says otherwise.
    pub fn new(ports: usize) -> LinkStates {
        LinkStates { up: (0..ports).map(|_| AtomicBool::new(true)).collect() }
    }

    /// Whether port `port` has carrier (an unknown port counts as up).
    pub fn is_up(&self, port: usize) -> bool {
        self.up.get(port).is_none_or(|u| u.load(Ordering::Relaxed))
    }

    /// Records port `port`'s state; true when it changed.
    pub fn set(&self, port: usize, up: bool) -> bool {
        match self.up.get(port) {
            Some(u) => u.swap(up, Ordering::Relaxed) != up,
            None => false,
        }
    }

    /// Number of ports.
    pub fn len(&self) -> usize {
        self.up.len()
    }

    /// True when there are no ports.
    pub fn is_empty(&self) -> bool {
        self.up.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_up_and_reports_changes_once() {
        let l = LinkStates::new(2);
        assert!(l.is_up(0) && l.is_up(1));
        assert!(l.set(1, false));
        assert!(!l.set(1, false), "no change the second time");
        assert!(l.is_up(0) && !l.is_up(1));
        assert!(l.is_up(7), "an unknown port is up");
        assert!(!l.set(7, false));
        assert!(l.set(1, true));
        assert!(l.is_up(1));
    }
}
