//! The socket layer and the engine thread.
//!
//! Per kernel interface and address family one receive socket (raw IP,
//! protocol 112, bound to the interface with `SO_BINDTODEVICE`, member of
//! 224.0.0.18 or ff02::12 when an instance there uses multicast; IPv6 ones
//! ask for `IPV6_HOPLIMIT` and `IPV6_PKTINFO` with every packet, as an IPv6
//! raw socket returns no header: the hop limit is checked and the
//! destination enters the checksum) and one AF_PACKET socket for gratuitous
//! ARP and unsolicited neighbour advertisements. Per instance one send
//! socket (raw IP, protocol 112, bound to the interface and to the primary
//! address so that the source address the v3 checksum covers is the one on
//! the wire; TTL / hop limit 255, TOS / traffic class 0xc0, multicast loop
//! off). The IPv6 checksum is computed and verified here rather than by the
//! kernel (`IPV6_CHECKSUM`, which Keepalived uses), so that bad checksums
//! are counted instead of silently dropped.
//!
//! One thread runs everything: it `poll`s the receive sockets and a wake-up
//! socket (commands: shutdown, script results, link changes) with the
//! timeout of the earliest deadline, then feeds the [`Router`].

use std::collections::HashMap;
use std::io::{ErrorKind, IoSliceMut, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use parking_lot::Mutex;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::sync::mpsc::UnboundedSender;

use super::garp::{GarpSchedule, GarpSocket};
use super::packet::{decode_ip, parse_ipv4, Advert, IpPacket, IPPROTO_VRRP, VRRP_MCAST_V4, VRRP_MCAST_V6, VRRP_TTL};
use super::state::{Action, Router, ScriptStatus, VrrpState};
use super::stats::VrrpStats;
use super::{na, DataplaneLink, Family, InstanceStatus, Plan, PlannedInstance, VrrpEvent};

/// The kernel's view of an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfInfo {
    /// Interface index.
    pub index: u32,
    /// Its first IPv4 address, if any.
    pub first_ipv4: Option<Ipv4Addr>,
    /// Its IPv6 link-local address (fe80::/10), if any: the source of
    /// VRRPv3 adverts over IPv6 (RFC 5798 §5.1.2.1).
    pub link_local_ipv6: Option<Ipv6Addr>,
}

/// Looks an interface up by name.
pub fn interface_info(ifname: &str) -> std::io::Result<IfInfo> {
    let index = nix::net::if_::if_nametoindex(ifname)?;
    let addrs: Vec<_> = nix::ifaddrs::getifaddrs()?.filter(|a| a.interface_name == ifname).filter_map(|a| a.address).collect();
    let first_ipv4 = addrs.iter().find_map(|s| s.as_sockaddr_in().map(|sin| sin.ip()));
    let link_local_ipv6 = addrs.iter().filter_map(|s| s.as_sockaddr_in6().map(|sin| sin.ip())).find(|ip| is_link_local(*ip));
    Ok(IfInfo { index, first_ipv4, link_local_ipv6 })
}

/// Whether `ip` is an IPv6 link-local unicast address (fe80::/10).
pub fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The socket address of `ip` on interface `ifindex` (IPv6 link-local and
/// multicast addresses need the scope id).
fn sock_addr(ip: IpAddr, ifindex: u32) -> SockAddr {
    match ip {
        IpAddr::V4(v4) => SockAddr::from(SocketAddrV4::new(v4, 0)),
        IpAddr::V6(v6) => {
            let scoped = is_link_local(v6) || v6.is_multicast();
            SockAddr::from(SocketAddrV6::new(v6, 0, 0, if scoped { ifindex } else { 0 }))
        }
    }
}

/// Whether the interface's operational state is up (`/sys/class/net/IF/operstate`
/// is `up` or `unknown`, as for TAP and loopback devices).
pub fn link_up(ifname: &str) -> bool {
    match std::fs::read_to_string(format!("/sys/class/net/{ifname}/operstate")) {
        Ok(s) => matches!(s.trim(), "up" | "unknown"),
        Err(_) => false,
    }
}

/// Opens the receive socket of an interface for `family`.
pub fn open_recv_socket(ifname: &str, ifindex: u32, family: Family, multicast: bool) -> std::io::Result<Socket> {
    let domain = if family == Family::V4 { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(IPPROTO_VRRP))))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    match family {
        Family::V4 => {
            if multicast {
                s.join_multicast_v4_n(&VRRP_MCAST_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
            }
        }
        Family::V6 => {
            if multicast {
                s.join_multicast_v6(&VRRP_MCAST_V6, ifindex)?;
            }
            s.set_recv_hoplimit_v6(true)?;
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv6RecvPacketInfo, &true)?;
        }
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Opens the send socket of an instance, sourced from `src` on `ifname`
/// (`ifindex`: the scope of an IPv6 link-local source and of ff02::12).
pub fn open_send_socket(ifname: &str, ifindex: u32, src: IpAddr) -> std::io::Result<Socket> {
    let domain = if src.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(IPPROTO_VRRP))))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    match src {
        IpAddr::V4(_) => {
            // The source address may not be configured yet (or may be a VIP elsewhere).
            s.set_freebind_v4(true)?;
            s.bind(&sock_addr(src, ifindex))?;
            s.set_ttl_v4(u32::from(VRRP_TTL))?;
            s.set_multicast_ttl_v4(u32::from(VRRP_TTL))?;
            s.set_multicast_loop_v4(false)?;
            s.set_tos_v4(0xc0)?;
        }
        IpAddr::V6(_) => {
            // As for IPv4; also lets a link-local address still in duplicate
            // address detection be bound.
            s.set_freebind_v6(true)?;
            s.bind(&sock_addr(src, ifindex))?;
            s.set_unicast_hops_v6(u32::from(VRRP_TTL))?;
            s.set_multicast_hops_v6(u32::from(VRRP_TTL))?;
            s.set_multicast_loop_v6(false)?;
            s.set_multicast_if_v6(ifindex)?;
            s.set_tclass_v6(0xc0)?;
        }
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Receives one packet from an IPv6 raw socket: the payload into `buf`, and
/// the source, destination (`IPV6_PKTINFO`) and hop limit (`IPV6_HOPLIMIT`).
/// A packet without those control messages (never from a socket opened by
/// [`open_recv_socket`]) is returned with the unspecified destination and
/// hop limit 0, which the checks refuse.
fn recv_v6(sock: &Socket, buf: &mut [u8]) -> std::io::Result<(usize, Ipv6Addr, Ipv6Addr, u8)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn6};
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)?;
    let (mut dst, mut hop) = (Ipv6Addr::UNSPECIFIED, 0u8);
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(info) => dst = Ipv6Addr::from(info.ipi6_addr.s6_addr),
            ControlMessageOwned::Ipv6HopLimit(h) => hop = u8::try_from(h).unwrap_or(0),
            _ => {}
        }
    }
    let src = msg.address.map_or(Ipv6Addr::UNSPECIFIED, |a| a.ip());
    Ok((msg.bytes, src, dst, hop))
}

/// A command to the engine thread.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Resign (priority 0 as master) and stop.
    Shutdown,
    /// A track script run finished.
    Script { script: usize, ok: bool },
    /// A watched interface (by its configured name) changed link state.
    Link { link: String, up: bool },
}

/// Sends commands to the engine thread and wakes it.
#[derive(Clone, Debug)]
pub(crate) struct Waker {
    tx: mpsc::Sender<Cmd>,
    sock: Arc<UnixDatagram>,
}

impl Waker {
    pub(crate) fn new(tx: mpsc::Sender<Cmd>, sock: UnixDatagram) -> Waker {
        Waker { tx, sock: Arc::new(sock) }
    }

    /// Sends a command; false once the engine has stopped.
    pub(crate) fn send(&self, cmd: Cmd) -> bool {
        if self.tx.send(cmd).is_err() {
            return false;
        }
        // A full socket buffer already means a pending wake-up.
        let _ = self.sock.send(&[1]);
        true
    }
}

/// Runs `sh -c cmd` in the background (notify scripts); the child is reaped
/// by a short-lived thread.
pub fn spawn_notify(cmd: &str) {
    match Command::new("sh").arg("-c").arg(cmd).stdin(Stdio::null()).spawn() {
        Ok(mut child) => {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => tracing::warn!(%cmd, error = %e, "cannot run notify script"),
    }
}

/// Runs `sh -c cmd` and waits at most `timeout`; true on exit status 0.
/// A run past its timeout is killed (its whole process group) and fails.
pub fn run_check(cmd: &str, timeout: Duration) -> bool {
    use std::os::unix::process::CommandExt;
    let child =
        Command::new("sh").arg("-c").arg(cmd).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%cmd, error = %e, "cannot run track script");
            return false;
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!(%cmd, "track script timed out");
                return false;
            }
        }
    }
}

/// Sleeps `d` in short slices; false when `stop` was raised meanwhile.
pub(crate) fn sleep_unless_stopped(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

struct Iface {
    name: String,
    family: Family,
    recv: Socket,
    garp: Option<GarpSocket>,
    /// Instances on this interface.
    instances: Vec<usize>,
}

struct InstIo {
    iface: usize,
    send: Socket,
    garp: GarpSchedule,
}

/// The engine thread's state.
pub(crate) struct Runner {
    plan: Plan,
    router: Router,
    ifaces: Vec<Iface>,
    insts: Vec<InstIo>,
    scripts: Vec<ScriptStatus>,
    group_state: Vec<Option<VrrpState>>,
    events: UnboundedSender<VrrpEvent>,
    shared: Arc<Mutex<Vec<InstanceStatus>>>,
    /// Counters per instance (published with the states).
    stats: Vec<VrrpStats>,
    /// The last advert accepted per instance (published with the states).
    last_advert: Vec<Option<super::PeerAdvert>>,
    dataplane: DataplaneLink,
    cmd_rx: mpsc::Receiver<Cmd>,
    wake: UnixDatagram,
}

impl Runner {
    /// Opens the sockets. Errors here make `VrrpEngine::start` fail.
    pub(crate) fn open(
        plan: Plan,
        router: Router,
        events: UnboundedSender<VrrpEvent>,
        shared: Arc<Mutex<Vec<InstanceStatus>>>,
        dataplane: DataplaneLink,
        cmd_rx: mpsc::Receiver<Cmd>,
        wake: UnixDatagram,
    ) -> Result<Runner, super::VrrpError> {
        let io_err = |what: String| move |source: std::io::Error| super::VrrpError::Io { what, source };
        let mut ifaces: Vec<Iface> = Vec::new();
        let mut by_name: HashMap<(String, Family), usize> = HashMap::new();
        let mut insts = Vec::new();
        for (i, ip) in plan.instances.iter().enumerate() {
            let family = ip.family();
            let iface = match by_name.get(&(ip.ifname.clone(), family)) {
                Some(&k) => k,
                None => {
                    let multicast =
                        plan.instances.iter().any(|o| o.ifname == ip.ifname && o.family() == family && o.unicast_peer.is_empty());
                    let recv = open_recv_socket(&ip.ifname, ip.ifindex, family, multicast).map_err(io_err(format!(
                        "VRRP {} receive socket on {}",
                        family.name(),
                        ip.ifname
                    )))?;
                    ifaces.push(Iface { name: ip.ifname.clone(), family, recv, garp: None, instances: Vec::new() });
                    by_name.insert((ip.ifname.clone(), family), ifaces.len() - 1);
                    ifaces.len() - 1
                }
            };
            ifaces[iface].instances.push(i);
            let send = open_send_socket(&ip.ifname, ip.ifindex, ip.params.primary_ip).map_err(io_err(format!(
                "VRRP {} send socket on {}",
                family.name(),
                ip.ifname
            )))?;
            let garp = GarpSchedule::new(ip.garp_repeat, ip.garp_delay, ip.garp_refresh).with_lower_prio(ip.garp_lower_prio);
            insts.push(InstIo { iface, send, garp });
        }
        for iface in &mut ifaces {
            match GarpSocket::open(&iface.name) {
                Ok(s) => iface.garp = Some(s),
                Err(e) => {
                    tracing::warn!(ifname = %iface.name, error = %e, "no gratuitous ARP / neighbour advertisement socket")
                }
            }
        }
        wake.set_nonblocking(true).map_err(io_err("wake-up socket".to_owned()))?;
        let scripts = plan.scripts.iter().map(|s| ScriptStatus::new(s.rise, s.fall)).collect();
        let group_state = vec![None; plan.groups.len()];
        let stats = vec![VrrpStats::default(); plan.instances.len()];
        let last_advert = vec![None; stats.len()];
        Ok(Runner { stats, last_advert, dataplane, plan, router, ifaces, insts, scripts, group_state, events, shared, cmd_rx, wake })
    }

    /// The engine loop; returns after a shutdown command (or when every
    /// command sender is gone).
    pub(crate) fn run(mut self) {
        let now = Instant::now();
        // Links already down are faults before the start.
        for i in 0..self.plan.instances.len() {
            for link in self.plan.instances[i].watched_links.clone() {
                if !link.is_up(&self.dataplane) {
                    tracing::warn!(instance = %self.plan.instances[i].params.name, link = %link.name,
                        "VRRP starts in FAULT: link down");
                    let _ = self.router.set_fault(now, i, &format!("link {}", link.name), true);
                }
            }
        }
        let acts = self.router.start(now);
        self.execute(now, acts);
        let mut buf = vec![0u8; 4096];
        loop {
            let now = Instant::now();
            let deadline = self.router.next_deadline().into_iter().chain(self.insts.iter().filter_map(|i| i.garp.next_deadline())).min();
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(now);
                    // Round up to the next millisecond so that we never wake early.
                    let ms = left.as_micros().div_ceil(1000);
                    PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX))
                }
                None => PollTimeout::from(u16::MAX),
            };
            let ready: Vec<bool> = {
                let mut fds = Vec::with_capacity(self.ifaces.len() + 1);
                fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
                for iface in &self.ifaces {
                    fds.push(PollFd::new(iface.recv.as_fd(), PollFlags::POLLIN));
                }
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) => fds.iter().map(|f| f.any().unwrap_or(false)).collect(),
                    Err(nix::errno::Errno::EINTR) => vec![false; fds.len()],
                    Err(e) => {
                        tracing::error!(error = %e, "VRRP poll failed");
                        std::thread::sleep(Duration::from_millis(10));
                        vec![false; fds.len()]
                    }
                }
            };
            if ready.first().copied().unwrap_or(false) {
                while self.wake.recv(&mut buf).is_ok() {}
            }
            loop {
                match self.cmd_rx.try_recv() {
                    Ok(Cmd::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => {
                        let acts = self.router.shutdown();
                        self.execute(Instant::now(), acts);
                        return;
                    }
                    Ok(cmd) => self.command(cmd),
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            for (k, &r) in ready.iter().skip(1).enumerate() {
                if r {
                    self.receive(k, &mut buf);
                }
            }
            let now = Instant::now();
            let acts = self.router.on_timer(now);
            self.execute(now, acts);
            for i in 0..self.insts.len() {
                let n = self.insts[i].garp.due(now);
                if n > 0 {
                    self.send_garp(i, n);
                }
            }
            // States, priorities and counters for the API (a short lock).
            self.publish();
        }
    }

    fn receive(&mut self, k: usize, buf: &mut [u8]) {
        for _ in 0..256 {
            let got = match self.ifaces[k].family {
                Family::V4 => (&self.ifaces[k].recv).read(buf).map(|n| (n, None)),
                Family::V6 => recv_v6(&self.ifaces[k].recv, buf).map(|(n, src, dst, hop)| (n, Some((src, dst, hop)))),
            };
            let (n, v6) = match got {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(ifname = %self.ifaces[k].name, error = %e, "VRRP receive failed");
                    break;
                }
            };
            let Some(pkt) = buf.get(..n) else {
                continue;
            };
            let ip = match v6 {
                None => parse_ipv4(pkt),
                Some((src, dst, hop)) => Ok(IpPacket { src: src.into(), dst: dst.into(), ttl: hop, protocol: IPPROTO_VRRP, payload: pkt }),
            };
            self.receive_one(k, ip);
        }
    }

    /// Checks one packet received on interface `k` (counting every
    /// rejection on the instances it was meant for) and feeds the adverts
    /// that pass to their instances.
    fn receive_one(&mut self, k: usize, ip: Result<IpPacket<'_>, super::packet::PacketError>) {
        let ifname = &self.ifaces[k].name;
        let vrid = ip.as_ref().ok().and_then(|ip| ip.payload.get(1).copied());
        let (ip, advert) = match ip.and_then(decode_ip) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(%ifname, error = %e, "invalid VRRP packet");
                // Charge the error to the instances of the VRID it names,
                // if it names one of ours, else to every instance here.
                let mut targets = self.instances_for_vrid(k, vrid);
                if targets.is_empty() {
                    targets = self.ifaces[k].instances.clone();
                }
                for i in targets {
                    self.stats[i].count_packet_error(&e);
                }
                return;
            }
        };
        let targets = self.instances_for_vrid(k, Some(advert.vrid));
        if targets.is_empty() {
            tracing::debug!(%ifname, src = %ip.src, vrid = advert.vrid, "VRRP advert for another VRID");
            for &i in &self.ifaces[k].instances {
                self.stats[i].vrid_other += 1;
            }
            return;
        }
        let now = Instant::now();
        for i in targets {
            if !admit(&ip, &self.plan.instances[i], &mut self.stats[i]) {
                continue;
            }
            let acts = self.router.on_advert(now, i, ip.src, &advert);
            match self.router.instance(i).and_then(|x| x.last_ignored()) {
                Some(why) => self.stats[i].count_ignored(why),
                None => self.count_accepted(i, ip.src, &advert),
            }
            self.execute(now, acts);
        }
    }

    /// Instances on interface `k` with virtual router id `vrid`.
    fn instances_for_vrid(&self, k: usize, vrid: Option<u8>) -> Vec<usize> {
        self.ifaces[k].instances.iter().copied().filter(|&i| Some(self.plan.instances[i].params.vrid) == vrid).collect()
    }

    fn count_accepted(&mut self, i: usize, src: IpAddr, advert: &Advert) {
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Some(slot) = self.last_advert.get_mut(i) {
            *slot = Some(super::PeerAdvert { address: src, priority: advert.priority, at });
        }
        let stats = &mut self.stats[i];
        stats.advert_rcvd += 1;
        if advert.priority == 0 {
            stats.pri_zero_rcvd += 1;
        }
        if advert.addrs != self.plan.instances[i].params.vips {
            stats.addr_list_err += 1;
        }
    }

    fn command(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Shutdown => {}
            Cmd::Link { link, up } => {
                tracing::warn!(%link, up, "VRRP tracked link changed");
                for i in 0..self.plan.instances.len() {
                    if self.plan.instances[i].watched_links.iter().any(|w| w.name == link) {
                        let acts = self.router.set_fault(now, i, &format!("link {link}"), !up);
                        self.execute(now, acts);
                    }
                }
            }
            Cmd::Script { script, ok } => {
                let Some(status) = self.scripts.get_mut(script) else {
                    return;
                };
                if !status.record(ok) {
                    return;
                }
                let up = status.up;
                let name = self.plan.scripts[script].name.clone();
                tracing::info!(script = %name, up, "VRRP track script changed");
                for i in 0..self.plan.instances.len() {
                    let tracked = self.plan.instances[i].scripts.clone();
                    if !tracked.iter().any(|&(s, _)| s == script) {
                        continue;
                    }
                    let mut adjust = 0;
                    let mut faulty = Vec::new();
                    for (s, weight) in tracked {
                        let s_up = self.scripts[s].up;
                        match weight {
                            0 => faulty.push((s, !s_up)),
                            w if w > 0 && s_up => adjust += w,
                            w if w < 0 && !s_up => adjust += w,
                            _ => {}
                        }
                    }
                    self.router.set_priority_adjust(i, adjust);
                    for (s, f) in faulty {
                        let reason = format!("script {}", self.plan.scripts[s].name);
                        let acts = self.router.set_fault(now, i, &reason, f);
                        self.execute(now, acts);
                    }
                }
                self.publish();
            }
        }
    }

    fn execute(&mut self, now: Instant, acts: Vec<(usize, Action)>) {
        let mut changed = false;
        for (i, act) in acts {
            match act {
                Action::SendAdvert { priority } => self.send_advert(i, priority),
                Action::AnnounceVips => {
                    let n = self.insts[i].garp.on_lower_priority(now);
                    tracing::info!(instance = %self.plan.instances[i].params.name,
                        "lower-priority advert received: forcing a new election, gratuitous ARPs / unsolicited NAs sent");
                    self.send_garp(i, n);
                }
                Action::StateChange { from, to } => {
                    changed = true;
                    self.on_state_change(now, i, from, to);
                }
            }
        }
        if changed {
            self.publish();
            self.group_notify();
        }
    }

    fn send_advert(&mut self, i: usize, priority: u8) {
        let p = &self.plan.instances[i];
        let advert = p.params.advert(priority);
        let src = p.params.primary_ip;
        let dsts: Vec<IpAddr> = match (p.unicast_peer.is_empty(), src) {
            (true, IpAddr::V4(_)) => vec![VRRP_MCAST_V4.into()],
            (true, IpAddr::V6(_)) => vec![VRRP_MCAST_V6.into()],
            (false, _) => p.unicast_peer.clone(),
        };
        for dst in dsts {
            let pkt = advert.encode(src, dst);
            match self.insts[i].send.send_to(&pkt, &sock_addr(dst, p.ifindex)) {
                Ok(_) => {
                    self.stats[i].advert_sent += 1;
                    if priority == 0 {
                        self.stats[i].pri_zero_sent += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(instance = %p.params.name, %dst, error = %e, "VRRP advert not sent")
                }
            }
        }
    }

    /// Sends an ARP request (IPv4) or a neighbour solicitation (IPv6) for
    /// each unicast peer of instance `i`, so that the peers' kernels learn
    /// our MAC now (a booting backup must hear the master's next advert, not
    /// the one after the master's ARP retry).
    fn resolve_peers(&self, i: usize) {
        let p = &self.plan.instances[i];
        if p.unicast_peer.is_empty() {
            return;
        }
        if let Some(sock) = &self.ifaces[self.insts[i].iface].garp {
            let sent = match p.params.primary_ip {
                IpAddr::V4(src) => sock.resolve(src, &v4_only(&p.unicast_peer)),
                IpAddr::V6(src) => na::solicit(sock, src, &v6_only(&p.unicast_peer)),
            };
            if let Err(e) = sent {
                tracing::warn!(instance = %p.params.name, error = %e, "ARP requests / neighbour solicitations for the unicast peers not sent");
            }
        }
    }

    /// Announces instance `i`'s VIPs `count` times: gratuitous ARP for IPv4
    /// VIPs, unsolicited neighbour advertisements for IPv6 ones.
    fn send_garp(&self, i: usize, count: u32) {
        let p = &self.plan.instances[i];
        if let Some(sock) = &self.ifaces[self.insts[i].iface].garp {
            let sent = match p.family() {
                Family::V4 => sock.send(&v4_only(&p.params.vips), count),
                Family::V6 => na::send_unsolicited(sock, &v6_only(&p.params.vips), count, na::ipv6_forwarding(&p.ifname)),
            };
            if let Err(e) = sent {
                tracing::warn!(instance = %p.params.name, error = %e, "gratuitous ARP / unsolicited NA not sent");
            }
        }
    }

    fn on_state_change(&mut self, now: Instant, i: usize, from: VrrpState, to: VrrpState) {
        let prio = self.router.instance(i).map_or(0, |x| x.effective_priority());
        let p = &self.plan.instances[i];
        tracing::info!(instance = %p.params.name, %from, %to, priority = prio, "VRRP state change");
        let _ = self.events.send(VrrpEvent::State { instance: p.params.name.clone(), state: to, virtual_ipaddress: p.params.vips.clone() });
        let script = match to {
            VrrpState::Master => p.notify_master.as_deref(),
            VrrpState::Backup => p.notify_backup.as_deref(),
            VrrpState::Fault => p.notify_fault.as_deref(),
            VrrpState::Initialize => None,
        };
        if let Some(cmd) = script {
            spawn_notify(cmd);
        }
        if let Some(cmd) = &p.notify {
            let state = if to == VrrpState::Initialize { "STOP" } else { to.as_str() };
            spawn_notify(&format!("{cmd} INSTANCE {} {state} {prio}", shell_quote(&p.params.name)));
        }
        if to == VrrpState::Master {
            self.stats[i].become_master += 1;
            let n = self.insts[i].garp.on_master(now);
            self.send_garp(i, n);
        } else if from == VrrpState::Master {
            self.stats[i].release_master += 1;
            self.insts[i].garp.stop();
        }
        if to == VrrpState::Backup && matches!(from, VrrpState::Initialize | VrrpState::Fault) {
            self.resolve_peers(i);
        }
    }

    /// Runs a sync group's notify script when all its members agree on a new state.
    fn group_notify(&mut self) {
        for g in 0..self.plan.groups.len() {
            let members = &self.plan.groups[g].members;
            let states: Vec<VrrpState> = members.iter().filter_map(|&m| self.router.instance(m).map(|x| x.state())).collect();
            let Some(&first) = states.first() else {
                continue;
            };
            if states.iter().any(|&s| s != first) || self.group_state[g] == Some(first) {
                continue;
            }
            self.group_state[g] = Some(first);
            let grp = &self.plan.groups[g];
            tracing::info!(group = %grp.name, state = %first, "VRRP sync group state");
            let script = match first {
                VrrpState::Master => grp.notify_master.as_deref(),
                VrrpState::Backup => grp.notify_backup.as_deref(),
                VrrpState::Fault => grp.notify_fault.as_deref(),
                VrrpState::Initialize => None,
            };
            if let Some(cmd) = script {
                spawn_notify(cmd);
            }
        }
    }

    fn publish(&self) {
        let v = self
            .router
            .instances()
            .iter()
            .zip(&self.stats)
            .zip(&self.last_advert)
            .map(|((x, stats), last_advert)| InstanceStatus {
                name: x.params().name.clone(),
                state: x.state(),
                priority: x.effective_priority(),
                stats: *stats,
                last_advert: *last_advert,
            })
            .collect();
        *self.shared.lock() = v;
    }
}

/// Checks the IP side of an advert for instance `p`, counting a refusal in
/// `stats`: the TTL / hop limit must be 255 (`ip_ttl_err`: it crossed a
/// router), and a unicast instance hears its peers only (`peer_unknown`).
///
/// The hop limit of IPv6 adverts sent to a unicast address is not checked:
/// Keepalived checks TTL / hop limit for multicast adverts only ("but not if
/// unicast") and sends its IPv6 unicast adverts with the kernel's default
/// hop limit (64), so checking would make every Keepalived peer unheard;
/// the source must still be a configured peer. IPv4 unicast adverts keep
/// the check (Keepalived sends those with TTL 255).
pub(crate) fn admit(ip: &IpPacket<'_>, p: &PlannedInstance, stats: &mut VrrpStats) -> bool {
    let checked = ip.src.is_ipv4() || ip.dst.is_multicast();
    if checked && ip.ttl != VRRP_TTL {
        tracing::debug!(instance = %p.params.name, src = %ip.src, ttl = ip.ttl, "VRRP advert with TTL / hop limit != 255 dropped");
        stats.ip_ttl_err += 1;
        return false;
    }
    if !p.unicast_peer.is_empty() && !p.unicast_peer.contains(&ip.src) {
        tracing::debug!(instance = %p.params.name, src = %ip.src, "VRRP advert from an address that is not a unicast peer");
        stats.peer_unknown += 1;
        return false;
    }
    true
}

fn v4_only(addrs: &[IpAddr]) -> Vec<Ipv4Addr> {
    addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect()
}

fn v6_only(addrs: &[IpAddr]) -> Vec<Ipv6Addr> {
    addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(v6) => Some(*v6),
            IpAddr::V4(_) => None,
        })
        .collect()
}

/// Single-quotes a word for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
