//! Gratuitous ARP on becoming master.
//!
//! * [`garp_frame`]: the Ethernet frame: a broadcast ARP request whose sender
//!   and target protocol address are the VIP, sender hardware address the
//!   interface's MAC (what Keepalived sends without `use_vmac`).
//! * [`GarpSchedule`]: when to send: `garp_master_repeat` per VIP at once,
//!   the same again `garp_master_delay` later, then one per VIP every
//!   `garp_master_refresh` (Keepalived's default `garp_master_refresh_repeat`
//!   of 1) while master.
//! * [`GarpSocket`]: an AF_PACKET socket bound to the interface (via the
//!   kernel's own link address from `getifaddrs`, so no unsafe code).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};

/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;

/// Builds the gratuitous ARP frame for `vip` from `mac` (padded to the
/// 60-byte Ethernet minimum).
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; 60] {
    arp_request(mac, vip, [0xff; 6], vip)
}

/// Builds a broadcast ARP request from `mac`/`src` asking for `target`: sent
/// for each unicast peer when an instance starts, so that the peer's kernel
/// learns our MAC from it (and sends us its adverts at once).
pub fn arp_request_frame(mac: [u8; 6], src: Ipv4Addr, target: Ipv4Addr) -> [u8; 60] {
    arp_request(mac, src, [0; 6], target)
}

fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target_mac: [u8; 6], target: Ipv4Addr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]); // destination: broadcast
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&sender.octets());
    f[32..38].copy_from_slice(&target_mac);
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// The gratuitous ARP timing of one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct GarpSchedule {
    repeat: u32,
    delay: Duration,
    refresh: Duration,
    delayed_at: Option<Instant>,
    refresh_at: Option<Instant>,
    lower_prio: LowerPrio,
    lower_prio_at: Option<Instant>,
}

/// Keepalived's `garp_lower_prio_repeat` and `garp_lower_prio_delay`: the
/// ARPs per VIP a master sends when it hears a lower-priority advert, and
/// when it sends the same again (0 = no second round).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowerPrio {
    /// ARPs per VIP and round.
    pub repeat: u32,
    /// Delay of the second round.
    pub delay: Duration,
}

impl GarpSchedule {
    /// From `garp_master_repeat`, `garp_master_delay` and
    /// `garp_master_refresh` (0 = off for both durations); the lower-priority
    /// rounds as `garp_master_*` until [`GarpSchedule::with_lower_prio`].
    pub fn new(repeat: u32, delay: Duration, refresh: Duration) -> GarpSchedule {
        GarpSchedule {
            repeat,
            delay,
            refresh,
            delayed_at: None,
            refresh_at: None,
            lower_prio: LowerPrio { repeat, delay },
            lower_prio_at: None,
        }
    }

    /// Sets what a lower-priority advert triggers.
    pub fn with_lower_prio(mut self, lower_prio: LowerPrio) -> GarpSchedule {
        self.lower_prio = lower_prio;
        self
    }

    /// A lower-priority advert arrived while master at `now`: returns how
    /// many ARPs per VIP to send now (the second round is scheduled).
    pub fn on_lower_priority(&mut self, now: Instant) -> u32 {
        if self.lower_prio.repeat > 0 && !self.lower_prio.delay.is_zero() {
            self.lower_prio_at = Some(now + self.lower_prio.delay);
        }
        self.lower_prio.repeat
    }

    /// Became master at `now`: returns how many ARPs per VIP to send now.
    pub fn on_master(&mut self, now: Instant) -> u32 {
        self.delayed_at = (!self.delay.is_zero()).then(|| now + self.delay);
        self.refresh_at = (!self.refresh.is_zero()).then(|| now + self.refresh);
        self.repeat
    }

    /// Left master: nothing more to send.
    pub fn stop(&mut self) {
        self.delayed_at = None;
        self.refresh_at = None;
        self.lower_prio_at = None;
    }

    /// How many ARPs per VIP are due at `now` (0 when none).
    pub fn due(&mut self, now: Instant) -> u32 {
        let mut n = 0;
        if self.delayed_at.is_some_and(|at| now >= at) {
            self.delayed_at = None;
            n += self.repeat;
        }
        if self.lower_prio_at.is_some_and(|at| now >= at) {
            self.lower_prio_at = None;
            n += self.lower_prio.repeat;
        }
        if let Some(at) = self.refresh_at {
            if now >= at {
                self.refresh_at = Some(now + self.refresh);
                n += 1;
            }
        }
        n
    }

    /// The next time something is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.delayed_at, self.refresh_at, self.lower_prio_at].into_iter().flatten().min()
    }
}

/// An AF_PACKET socket bound to one interface, for sending whole frames.
#[derive(Debug)]
pub struct GarpSocket {
    fd: OwnedFd,
    mac: [u8; 6],
}

impl GarpSocket {
    /// Opens the socket on `ifname`. The link address to bind to (index and
    /// MAC) is the one the kernel reports for the interface.
    pub fn open(ifname: &str) -> std::io::Result<GarpSocket> {
        let link = nix::ifaddrs::getifaddrs()?
            .filter(|a| a.interface_name == ifname)
            .find_map(|a| a.address.and_then(|s| s.as_link_addr().copied()))
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no link address for {ifname}")))?;
        let mac = link.addr().unwrap_or([0; 6]);
        // Protocol 0: this socket only sends, it receives nothing.
        let fd = socket::socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, None)?;
        socket::bind(fd.as_raw_fd(), &link)?;
        Ok(GarpSocket { fd, mac })
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends `count` gratuitous ARPs for each of `vips`.
    pub fn send(&self, vips: &[Ipv4Addr], count: u32) -> std::io::Result<()> {
        for _ in 0..count {
            for vip in vips {
                self.send_frame(&garp_frame(self.mac, *vip))?;
            }
        }
        Ok(())
    }

    /// Sends an ARP request from `src` for each of `targets`.
    pub fn resolve(&self, src: Ipv4Addr, targets: &[Ipv4Addr]) -> std::io::Result<()> {
        for target in targets {
            self.send_frame(&arp_request_frame(self.mac, src, *target))?;
        }
        Ok(())
    }

    /// Sends one whole Ethernet frame.
    pub fn send_frame(&self, frame: &[u8]) -> std::io::Result<()> {
        socket::send(self.fd.as_raw_fd(), frame, MsgFlags::empty())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x01];
        let f = garp_frame(mac, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(&f[..14], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&f[22..32], &[2, 0, 0, 0, 0, 1, 10, 0, 0, 100]);
        assert_eq!(&f[32..42], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 10, 0, 0, 100]);
        assert!(f[42..].iter().all(|&b| b == 0));
    }

    #[test]
    fn schedule() {
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(5, Duration::from_secs(5), Duration::from_secs(60));
        assert_eq!(s.on_master(t0), 5);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(s.due(t0 + Duration::from_secs(4)), 0);
        assert_eq!(s.due(t0 + Duration::from_secs(5)), 5);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(s.due(t0 + Duration::from_secs(60)), 1);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(120)));
        s.stop();
        assert_eq!(s.next_deadline(), None);
        let mut off = GarpSchedule::new(3, Duration::ZERO, Duration::ZERO);
        assert_eq!(off.on_master(t0), 3);
        assert_eq!(off.next_deadline(), None);
    }

    #[test]
    fn lower_priority_rounds() {
        let t0 = Instant::now();
        let mut s = GarpSchedule::new(5, Duration::from_secs(5), Duration::ZERO)
            .with_lower_prio(LowerPrio { repeat: 2, delay: Duration::from_secs(1) });
        assert_eq!(s.on_master(t0), 5);
        assert_eq!(s.due(t0 + Duration::from_secs(5)), 5);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.on_lower_priority(t0 + Duration::from_secs(10)), 2);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(11)));
        assert_eq!(s.due(t0 + Duration::from_secs(11)), 2);
        assert_eq!(s.next_deadline(), None);
        let mut once = GarpSchedule::new(5, Duration::ZERO, Duration::ZERO).with_lower_prio(LowerPrio { repeat: 1, delay: Duration::ZERO });
        assert_eq!(once.on_lower_priority(t0), 1);
        assert_eq!(once.next_deadline(), None);
    }

    #[test]
    fn request_for_a_peer() {
        let f = arp_request_frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(&f[..14], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        assert_eq!(&f[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&f[22..42], &[2, 0, 0, 0, 0, 1, 10, 0, 0, 3, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    }
}
