//! When a connection was last sent to the backup directors (connection
//! sync), kept in 16 bits, and when it is due again.
//!
//! A [`Conn`](super::Conn) stores the time of its last sync as a wrapping
//! count of [`SYNC_TICK_MS`]-millisecond ticks ([`sync_tick`]) in a `u16`:
//! the count wraps every 65,536 ticks, 18.6 hours. Two rules keep the
//! wrapping difference right:
//!
//! - A connection is sent again every half idle timeout but at least every
//!   [`SYNC_REFRESH_MAX_MS`] (30 minutes, [`sync_refresh_ms`]): a refresh
//!   falls due long before the count could wrap, even for idle timeouts longer
//!   than the wrap period (up to [`super::MAX_TIMEOUT_MS`], 24.8 days).
//! - The incremental sweep, which visits every live connection again and again
//!   ([`super::ConnTable::expire`]), pins a last sync older than
//!   [`SYNC_STALE_TICKS`] (70 minutes, more than any refresh period) to exactly
//!   that age ([`Conn::age_sync`](super::Conn::age_sync)). A connection
//!   that goes unsynced for days (connection sync off, or no packet) so stays
//!   due, as long as the sweep comes back to it within the 17.5 hours between
//!   that age and the wrap (the worker's sweep covers the largest table,
//!   2^24 slots, in about 11 minutes).
//!
//! Ticks make the refresh up to one tick (about a second) early or late
//! against the millisecond clock: immaterial next to idle timeouts of
//! seconds to days.

/// Milliseconds of worker clock per sync tick (a power of two: a shift).
pub const SYNC_TICK_MS: u64 = 1024;

/// Longest time between two syncs of a connection that keeps seeing
/// packets (30 minutes), whatever its idle timeout.
pub const SYNC_REFRESH_MAX_MS: u64 = 30 * 60 * 1000;

/// Age in ticks (4,096: 69.9 minutes) past which the sweep pins a
/// connection's last sync; more than [`SYNC_REFRESH_MAX_MS`], far less than
/// the 65,536 ticks at which the count wraps.
pub const SYNC_STALE_TICKS: u16 = 1 << 12;

const _: () = assert!(SYNC_STALE_TICKS as u64 * SYNC_TICK_MS > SYNC_REFRESH_MAX_MS + SYNC_TICK_MS);

/// The worker-clock time `now_ms` as a connection stores its last sync:
/// whole ticks, wrapping at 16 bits.
pub fn sync_tick(now_ms: u64) -> u16 {
    (now_ms / SYNC_TICK_MS) as u16
}

/// How long after its last sync a connection with idle timeout
/// `idle_timeout_ms` is sent again: half its timeout, at most
/// [`SYNC_REFRESH_MAX_MS`].
pub fn sync_refresh_ms(idle_timeout_ms: u64) -> u64 {
    (idle_timeout_ms / 2).min(SYNC_REFRESH_MAX_MS)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;
    use crate::conn::{Conn, TcpState, MAX_TIMEOUT_MS};
    use crate::snapshot::{ForwardMode, Protocol, Timeouts};

    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    /// Milliseconds after which the tick count wraps (18.6 hours).
    const WRAP_MS: u64 = (1 << 16) * SYNC_TICK_MS;

    /// An ESTABLISHED TCP connection, last synced at `synced_at_ms`.
    fn conn(synced_at_ms: u64) -> Conn {
        let sock = |last, port| SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port);
        let mut c = Conn {
            protocol: Protocol::Tcp,
            client: sock(2, 40000),
            vip: sock(100, 80),
            real: sock(11, 8080),
            local: None.into(),
            real_index: 0,
            service_index: 0,
            generation: 0,
            synced_tick: 0,
            forward: ForwardMode::Nat,
            state: TcpState::Established,
            expires_ms: 0,
            seq_delta: 0,
            reply_hop: crate::neigh::hops::NONE,
            proxy: Default::default(),
        };
        c.mark_synced(synced_at_ms);
        c
    }

    /// Timeouts whose ESTABLISHED one is `secs`.
    fn established(secs: u32) -> Timeouts {
        Timeouts { tcp: secs, ..Timeouts::default() }
    }

    /// What the packet path does for a packet of `c` at `now_ms`, as far as
    /// sync goes: sent again when due. True when sent.
    fn packet(c: &mut Conn, t: &Timeouts, now_ms: u64) -> bool {
        c.restart_timer(c.idle_timeout_ms(t), now_ms);
        let due = c.sync_refresh_due(t, now_ms);
        if due {
            c.mark_synced(now_ms);
        }
        due
    }

    #[test]
    fn the_refresh_period_is_half_the_timeout_capped_at_30_minutes() {
        assert_eq!(sync_refresh_ms(900_000), 450_000);
        assert_eq!(sync_refresh_ms(10_000), 5_000);
        assert_eq!(sync_refresh_ms(2 * HOUR), 30 * MINUTE);
        assert_eq!(sync_refresh_ms(MAX_TIMEOUT_MS), 30 * MINUTE);
        assert_eq!(sync_tick(WRAP_MS - 1), u16::MAX);
        assert_eq!(sync_tick(WRAP_MS), 0);
    }

    #[test]
    fn a_connection_is_due_half_its_timeout_after_its_last_sync_within_a_tick() {
        let t = established(900);
        for synced_at in [0, 1_023, 1_024, 5 * HOUR + 777] {
            let c = conn(synced_at);
            assert!(!c.sync_refresh_due(&t, synced_at + 450_000 - SYNC_TICK_MS), "synced at {synced_at}: not yet");
            assert!(c.sync_refresh_due(&t, synced_at + 450_000 + SYNC_TICK_MS), "synced at {synced_at}: due");
        }
    }

    #[test]
    fn a_connection_is_due_across_the_wrap_of_the_tick_count() {
        let t = established(900);
        for synced_at in [WRAP_MS - 1, WRAP_MS - 200_000, 7 * WRAP_MS - 449_000] {
            let c = conn(synced_at);
            for now in (synced_at..synced_at + 450_000 - SYNC_TICK_MS).step_by(10_000) {
                assert!(!c.sync_refresh_due(&t, now), "synced at {synced_at}, now {now}: not yet");
            }
            let due_from = synced_at + 450_000 + SYNC_TICK_MS;
            for now in (due_from..due_from + 3 * HOUR).step_by(60_000) {
                assert!(c.sync_refresh_due(&t, now), "synced at {synced_at}, now {now}: due");
            }
        }
    }

    #[test]
    fn a_timeout_longer_than_the_wrap_period_is_still_refreshed_every_30_minutes() {
        // Idle timeout 2 days (more than the 18.6 hours of the tick count),
        // a packet every 7 minutes for 3 days: a sync at least every 30
        // minutes (and a tick), never more often than every 30 minutes.
        let t = established(2 * 24 * 3600);
        let mut c = conn(0);
        let (mut last, mut syncs) = (0, 0);
        for now in (7 * MINUTE..3 * 24 * HOUR).step_by(7 * MINUTE as usize) {
            if packet(&mut c, &t, now) {
                assert!(now - last > 30 * MINUTE - SYNC_TICK_MS, "sent at {now} after {last}: too early");
                (last, syncs) = (now, syncs + 1);
            }
            assert!(now - last <= 30 * MINUTE + SYNC_TICK_MS + 7 * MINUTE, "at {now}: last sync at {last}");
        }
        assert_eq!(syncs, 3 * 24 * 60 / 35, "one sync every 5 packets (35 minutes)");
    }

    #[test]
    fn the_sweep_keeps_a_long_idle_connection_due_however_long_it_waits() {
        // Idle timeout 20 days, no packet for 3 days, the sweep passing every
        // 10 minutes: the next packet finds it due, at any point of the wrap.
        let t = established(20 * 24 * 3600);
        for start in [0, WRAP_MS - 1, WRAP_MS / 2] {
            let mut c = conn(start);
            let mut now = start;
            while now < start + 3 * 24 * HOUR {
                now += 10 * MINUTE;
                c.age_sync(now);
                let expect = now - start > sync_refresh_ms(c.idle_timeout_ms(&t)) + SYNC_TICK_MS;
                if expect {
                    assert!(c.sync_refresh_due(&t, now), "synced at {start}, idle until {now}: due");
                }
                assert!(c.since_synced_ms(now) <= (now - start) + SYNC_TICK_MS, "the age never runs ahead");
            }
        }
    }

    #[test]
    fn without_the_sweep_the_wrap_would_hide_a_due_refresh() {
        // Why the sweep pins the age: the wrapping difference alone says a
        // connection last synced exactly one wrap ago was just synced.
        let t = established(20 * 24 * 3600);
        let c = conn(0);
        assert!(!c.sync_refresh_due(&t, WRAP_MS));
        let mut swept = c;
        swept.age_sync(WRAP_MS / 2);
        assert!(swept.sync_refresh_due(&t, WRAP_MS));
    }
}
