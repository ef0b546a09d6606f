//! When a worker writes a log line about table pressure: at most one line
//! per [`PRESSURE_LOG_EVERY_MS`] about pressure turning on or off (changes in
//! between are summed up in the next line), and at most one per
//! [`PRESSURE_LOG_EVERY_MS`] about new connections refused by a full table.
//! The worker's housekeeping asks; it formats the lines.

use super::pressure::PressureStatus;

/// Each kind of pressure line is written at most this often per worker.
pub const PRESSURE_LOG_EVERY_MS: u64 = 5_000;

/// A line about pressure due now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PressureLine {
    /// Pressure is now `status.on`, unlike at the last line; `changes` is how
    /// many times it turned on or off since that line (1, or more when the
    /// lines in between were held back).
    Changed {
        /// The worker's pressure now.
        status: PressureStatus,
        /// Changes since the last line.
        changes: u64,
    },
    /// Pressure turned on and off `changes` times since the last line, too
    /// fast to log each, and is where that line left it.
    Flapped {
        /// The worker's pressure now.
        status: PressureStatus,
        /// Changes since the last line.
        changes: u64,
    },
}

/// What a worker last logged about pressure.
#[derive(Clone, Copy, Debug, Default)]
pub struct PressureLog {
    /// Pressure as the last line told it.
    logged_on: bool,
    /// [`PressureStatus::flips`] at the last line.
    logged_flips: u64,
    /// When the last pressure line was written.
    last_ms: Option<u64>,
    /// The table-full refusals counted up to the last such line.
    refused_logged: u64,
    /// When the last table-full line was written.
    last_full_ms: Option<u64>,
}

/// True when a line written at `last` keeps another from `now_ms`.
fn too_soon(last: Option<u64>, now_ms: u64) -> bool {
    last.is_some_and(|t| now_ms.saturating_sub(t) < PRESSURE_LOG_EVERY_MS)
}

impl PressureLog {
    /// The pressure line due at `now_ms` for a worker whose pressure is
    /// `status`, if any (and records it as written).
    pub fn pressure_line(&mut self, status: PressureStatus, now_ms: u64) -> Option<PressureLine> {
        if status.flips == self.logged_flips || too_soon(self.last_ms, now_ms) {
            return None;
        }
        let changes = status.flips.wrapping_sub(self.logged_flips);
        let line =
            if status.on != self.logged_on { PressureLine::Changed { status, changes } } else { PressureLine::Flapped { status, changes } };
        self.logged_on = status.on;
        self.logged_flips = status.flips;
        self.last_ms = Some(now_ms);
        Some(line)
    }

    /// Given the worker's `drop_conn_table_full` counter, the number of new
    /// connections refused since the last table-full line when a line is due
    /// at `now_ms` (and records it as written).
    pub fn table_full_line(&mut self, refused_total: u64, now_ms: u64) -> Option<u64> {
        if refused_total <= self.refused_logged || too_soon(self.last_full_ms, now_ms) {
            return None;
        }
        let refused = refused_total - self.refused_logged;
        self.refused_logged = refused_total;
        self.last_full_ms = Some(now_ms);
        Some(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(on: bool, flips: u64) -> PressureStatus {
        PressureStatus { on, conns: 10, capacity: 100, syn_recv: 5, flips }
    }

    #[test]
    fn one_line_per_change_at_most_every_few_seconds_with_a_summary() {
        let mut log = PressureLog::default();
        assert_eq!(log.pressure_line(status(false, 0), 0), None, "nothing happened");
        assert_eq!(log.pressure_line(status(true, 1), 100), Some(PressureLine::Changed { status: status(true, 1), changes: 1 }));
        // Off 1 s later: held back.
        assert_eq!(log.pressure_line(status(false, 2), 1_100), None);
        assert_eq!(log.pressure_line(status(true, 3), 2_000), None);
        assert_eq!(log.pressure_line(status(false, 4), 4_000), None);
        // 5 s after the last line: three more changes, now off.
        assert_eq!(log.pressure_line(status(false, 4), 5_100), Some(PressureLine::Changed { status: status(false, 4), changes: 3 }));
        // Flapping back to where the last line was.
        assert_eq!(log.pressure_line(status(true, 5), 6_000), None);
        assert_eq!(log.pressure_line(status(false, 6), 7_000), None);
        assert_eq!(log.pressure_line(status(false, 6), 10_100), Some(PressureLine::Flapped { status: status(false, 6), changes: 2 }));
        assert_eq!(log.pressure_line(status(false, 6), 20_000), None, "nothing new");
    }

    #[test]
    fn table_full_lines_sum_up_the_refusals_in_between() {
        let mut log = PressureLog::default();
        assert_eq!(log.table_full_line(0, 0), None);
        assert_eq!(log.table_full_line(3, 10), Some(3));
        assert_eq!(log.table_full_line(50, 4_000), None);
        assert_eq!(log.table_full_line(70, 5_010), Some(67));
        assert_eq!(log.table_full_line(70, 60_000), None);
    }
}
