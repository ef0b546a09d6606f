//! Connection synchronisation between directors (IPVS's sync daemon, done the
//! rvs way): the VRRP master streams new and changed connections to the
//! backups, which install them on their workers, so established connections
//! survive a failover in every forwarding mode (FULLNAT's local address and
//! port included). A director that starts or becomes backup asks the master for
//! a bulk resync of every connection it has.
//!
//! # Wire format (version 1)
//!
//! UDP datagrams (default port 8848) to the configured peers, or to the
//! multicast group 224.0.0.81. All integers big-endian.
//!
//! ```text
//! header  (8 bytes): "RVSS" | version u8 = 1 | kind u8 | sync id u8 | count u8
//!   kind 1 = connections (count entries follow), 2 = bulk resync request (no entries)
//! entry  (32 bytes): protocol u8 (6 tcp, 17 udp) | forward u8 (0 dr, 1 nat, 2 tun, 3 fullnat)
//!                    | state u8 (IPVS state number) | flags u8 (bit 0: local address present)
//!                    | client ip4 port2 | vip ip4 port2 | real ip4 port2 | local ip4 port2
//!                    | seconds left u32
//! ```
//!
//! A receiver drops datagrams with another magic, another version, another
//! sync id, a bad count or a truncated entry; unknown kinds are ignored, so a
//! newer sender can add kinds without breaking older receivers.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rvs_dataplane::conn::TcpState;
use rvs_dataplane::snapshot::{ForwardMode, Protocol};
use rvs_dataplane::stats::ConnInfo;

/// Magic at the start of every datagram.
pub const MAGIC: [u8; 4] = *b"RVSS";
/// Format version.
pub const VERSION: u8 = 1;
/// Multicast group used when no peers are configured (IPVS's).
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// Bytes of the header.
pub const HEADER_LEN: usize = 8;
/// Bytes of one entry.
pub const ENTRY_LEN: usize = 32;
/// Entries per datagram (keeps datagrams under 1500 bytes).
pub const MAX_ENTRIES: usize = 40;

const KIND_CONNS: u8 = 1;
const KIND_BULK_REQUEST: u8 = 2;

/// A decoded sync message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// New or changed connections.
    Conns(Vec<ConnInfo>),
    /// "Send me everything you have."
    BulkRequest,
}

/// Why a datagram was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Too short, wrong magic or a count that does not fit.
    #[error("malformed sync datagram: {0}")]
    Malformed(&'static str),
    /// Another format version.
    #[error("sync version {0} is not supported (this is version {VERSION})")]
    Version(u8),
    /// Another sync id.
    #[error("sync id {got} is not ours ({want})")]
    SyncId {
        /// Id in the datagram.
        got: u8,
        /// Our id.
        want: u8,
    },
    /// A kind this version does not know.
    #[error("unknown sync message kind {0}")]
    Kind(u8),
}

fn forward_code(f: ForwardMode) -> u8 {
    match f {
        ForwardMode::Dr => 0,
        ForwardMode::Nat => 1,
        ForwardMode::Tun => 2,
        ForwardMode::FullNat => 3,
    }
}

fn forward_from(code: u8) -> Option<ForwardMode> {
    Some(match code {
        0 => ForwardMode::Dr,
        1 => ForwardMode::Nat,
        2 => ForwardMode::Tun,
        3 => ForwardMode::FullNat,
        _ => return None,
    })
}

fn put_sock(buf: &mut Vec<u8>, s: SocketAddrV4) {
    buf.extend_from_slice(&s.ip().octets());
    buf.extend_from_slice(&s.port().to_be_bytes());
}

fn get_sock(b: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(b[0], b[1], b[2], b[3]), u16::from_be_bytes([b[4], b[5]]))
}

/// Encodes `msg` into datagrams.
pub fn encode(sync_id: u8, msg: &Message) -> Vec<Vec<u8>> {
    let header = |kind: u8, count: usize| {
        let mut b = Vec::with_capacity(HEADER_LEN + count * ENTRY_LEN);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&[VERSION, kind, sync_id, count as u8]);
        b
    };
    match msg {
        Message::BulkRequest => vec![header(KIND_BULK_REQUEST, 0)],
        Message::Conns(conns) => conns
            .chunks(MAX_ENTRIES)
            .map(|chunk| {
                let mut b = header(KIND_CONNS, chunk.len());
                for c in chunk {
                    let state = TcpState::from_name(&c.state).unwrap_or(TcpState::None) as u8;
                    b.extend_from_slice(&[c.protocol.ip_proto(), forward_code(c.forward), state, u8::from(c.local.is_some())]);
                    put_sock(&mut b, c.client);
                    put_sock(&mut b, c.vip);
                    put_sock(&mut b, c.real);
                    put_sock(&mut b, c.local.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));
                    let secs = u32::try_from(c.expires_ms / 1000).unwrap_or(u32::MAX);
                    b.extend_from_slice(&secs.to_be_bytes());
                }
                b
            })
            .collect(),
    }
}

/// Decodes one datagram.
pub fn decode(buf: &[u8], sync_id: u8) -> Result<Message, SyncError> {
    if buf.len() < HEADER_LEN || buf[..4] != MAGIC {
        return Err(SyncError::Malformed("no RVSS header"));
    }
    if buf[4] != VERSION {
        return Err(SyncError::Version(buf[4]));
    }
    if buf[6] != sync_id {
        return Err(SyncError::SyncId { got: buf[6], want: sync_id });
    }
    let count = usize::from(buf[7]);
    match buf[5] {
        KIND_BULK_REQUEST => Ok(Message::BulkRequest),
        KIND_CONNS => {
            if buf.len() != HEADER_LEN + count * ENTRY_LEN {
                return Err(SyncError::Malformed("length does not match the entry count"));
            }
            let mut conns = Vec::with_capacity(count);
            for e in buf[HEADER_LEN..].chunks_exact(ENTRY_LEN) {
                let protocol = Protocol::from_ip_proto(e[0]).ok_or(SyncError::Malformed("unknown protocol"))?;
                let forward = forward_from(e[1]).ok_or(SyncError::Malformed("unknown forwarding method"))?;
                let state = state_from(e[2]).ok_or(SyncError::Malformed("unknown state"))?;
                let local = (e[3] & 1 == 1).then(|| get_sock(&e[22..28]));
                conns.push(ConnInfo {
                    worker: 0,
                    protocol,
                    client: get_sock(&e[4..10]),
                    vip: get_sock(&e[10..16]),
                    real: get_sock(&e[16..22]),
                    local,
                    forward,
                    state: state.name().to_owned(),
                    expires_ms: u64::from(u32::from_be_bytes([e[28], e[29], e[30], e[31]])) * 1000,
                    template: false,
                });
            }
            Ok(Message::Conns(conns))
        }
        other => Err(SyncError::Kind(other)),
    }
}

fn state_from(n: u8) -> Option<TcpState> {
    use TcpState::*;
    [None, Established, SynSent, SynRecv, FinWait, TimeWait, Close, CloseWait, LastAck, Listen, SynAck, Udp]
        .into_iter()
        .find(|s| *s as u8 == n)
}

/// What the sync threads need from the dataplane.
pub trait SyncDataplane: Send + Sync + 'static {
    /// Connection updates the workers produced since the last call.
    fn drain_updates(&self) -> Vec<ConnInfo>;
    /// Every connection (for a bulk resync).
    fn all_connections(&self) -> Vec<ConnInfo>;
    /// Installs connections from the master on the workers.
    fn install(&self, conns: Vec<ConnInfo>);
}

/// The running sync daemon: a sender and a receiver thread.
pub struct SyncDaemon {
    master: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    socket: Arc<UdpSocket>,
    targets: Vec<SocketAddr>,
    sync_id: u8,
    threads: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl SyncDaemon {
    /// Binds `local:port` and starts the threads. `master` says whether this
    /// node currently sends (VRRP master) or receives (backup).
    pub fn start(
        config: &crate::ha::SyncConfig,
        local: Ipv4Addr,
        dataplane: Arc<dyn SyncDataplane>,
        master: bool,
    ) -> std::io::Result<SyncDaemon> {
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, config.port))?;
        let targets: Vec<SocketAddr> = if config.peers.is_empty() {
            socket.join_multicast_v4(&GROUP, &local)?;
            socket.set_multicast_loop_v4(false)?;
            // Send from the exception-path interface even without a multicast route.
            socket2::SockRef::from(&socket).set_multicast_if_v4(&local)?;
            vec![SocketAddr::V4(SocketAddrV4::new(GROUP, config.port))]
        } else {
            config.peers.iter().map(|p| SocketAddr::V4(SocketAddrV4::new(*p, config.port))).collect()
        };
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let socket = Arc::new(socket);
        let daemon = SyncDaemon {
            master: Arc::new(AtomicBool::new(master)),
            stop: Arc::new(AtomicBool::new(false)),
            socket,
            targets,
            sync_id: config.sync_id,
            threads: parking_lot::Mutex::new(Vec::new()),
        };
        daemon.spawn_sender(Arc::clone(&dataplane))?;
        daemon.spawn_receiver(dataplane)?;
        if !master {
            daemon.request_bulk();
        }
        Ok(daemon)
    }

    /// Switches role (on a VRRP transition). Becoming backup asks the master
    /// for a bulk resync.
    pub fn set_master(&self, master: bool) {
        let was = self.master.swap(master, Ordering::SeqCst);
        if was && !master {
            self.request_bulk();
        }
    }

    /// Stops both threads and waits for them (they hold the dataplane, which
    /// must be gone before DPDK shuts down).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }

    /// Asks the peers for every connection they have.
    pub fn request_bulk(&self) {
        send_all(&self.socket, &self.targets, &encode(self.sync_id, &Message::BulkRequest));
    }

    fn spawn_sender(&self, dataplane: Arc<dyn SyncDataplane>) -> std::io::Result<()> {
        let (socket, targets, stop, master, id) =
            (Arc::clone(&self.socket), self.targets.clone(), Arc::clone(&self.stop), Arc::clone(&self.master), self.sync_id);
        let handle = std::thread::Builder::new().name("rvs-sync-tx".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let updates = dataplane.drain_updates();
                if updates.is_empty() {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                if master.load(Ordering::Relaxed) {
                    send_all(&socket, &targets, &encode(id, &Message::Conns(updates)));
                }
            }
        })?;
        self.threads.lock().push(handle);
        Ok(())
    }

    fn spawn_receiver(&self, dataplane: Arc<dyn SyncDataplane>) -> std::io::Result<()> {
        let (socket, stop, master, id) = (Arc::clone(&self.socket), Arc::clone(&self.stop), Arc::clone(&self.master), self.sync_id);
        let handle = std::thread::Builder::new().name("rvs-sync-rx".into()).spawn(move || {
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                match decode(&buf[..n], id) {
                    Ok(Message::Conns(conns)) if !master.load(Ordering::Relaxed) => {
                        tracing::debug!(%from, conns = conns.len(), "sync: installing connections");
                        dataplane.install(conns);
                    }
                    Ok(Message::Conns(_)) => {}
                    Ok(Message::BulkRequest) if master.load(Ordering::Relaxed) => {
                        let all = dataplane.all_connections();
                        tracing::info!(%from, conns = all.len(), "sync: bulk resync requested");
                        send_all(&socket, &[from], &encode(id, &Message::Conns(all)));
                    }
                    Ok(Message::BulkRequest) => {}
                    Err(e) => tracing::debug!(%from, error = %e, "sync: datagram refused"),
                }
            }
        })?;
        self.threads.lock().push(handle);
        Ok(())
    }
}

impl Drop for SyncDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn send_all(socket: &UdpSocket, targets: &[SocketAddr], datagrams: &[Vec<u8>]) {
    for d in datagrams {
        for t in targets {
            if let Err(e) = socket.send_to(d, t) {
                tracing::warn!(target = %t, error = %e, "sync: send failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(i: u16, fnat: bool) -> ConnInfo {
        ConnInfo {
            worker: 0,
            protocol: if i.is_multiple_of(2) { Protocol::Tcp } else { Protocol::Udp },
            client: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000 + i),
            vip: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 80),
            real: SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 11), 8080),
            local: fnat.then(|| SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 200), 5000 + i)),
            forward: if fnat { ForwardMode::FullNat } else { ForwardMode::Dr },
            state: if i.is_multiple_of(2) { "ESTABLISHED".into() } else { "UDP".into() },
            expires_ms: 900_000,
            template: false,
        }
    }

    #[test]
    fn round_trip_in_datagrams_of_bounded_size() {
        let conns: Vec<ConnInfo> = (0..100).map(|i| conn(i, i % 3 == 0)).collect();
        let datagrams = encode(7, &Message::Conns(conns.clone()));
        assert_eq!(datagrams.len(), 3);
        assert!(datagrams.iter().all(|d| d.len() <= HEADER_LEN + MAX_ENTRIES * ENTRY_LEN && d.len() < 1400));
        let mut back = Vec::new();
        for d in &datagrams {
            match decode(d, 7) {
                Ok(Message::Conns(c)) => back.extend(c),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, conns);
        assert_eq!(decode(&encode(7, &Message::BulkRequest)[0], 7), Ok(Message::BulkRequest));
    }

    #[test]
    fn the_header_is_the_documented_bytes() {
        let d = &encode(3, &Message::Conns(vec![conn(0, true)]))[0];
        assert_eq!(&d[..8], &[b'R', b'V', b'S', b'S', 1, 1, 3, 1]);
        assert_eq!(d.len(), 40);
        // protocol tcp, forward fullnat, state ESTABLISHED (1), local present.
        assert_eq!(&d[8..12], &[6, 3, 1, 1]);
        assert_eq!(&d[12..18], &[10, 0, 0, 2, 0x9c, 0x40]);
        assert_eq!(&d[30..36], &[10, 1, 0, 200, 0x13, 0x88]);
        assert_eq!(&d[36..40], &900u32.to_be_bytes());
    }

    #[test]
    fn foreign_or_broken_datagrams_are_refused() {
        let good = encode(1, &Message::Conns(vec![conn(0, false)]))[0].clone();
        assert_eq!(decode(&good, 2), Err(SyncError::SyncId { got: 1, want: 2 }));
        let mut v = good.clone();
        v[4] = 9;
        assert_eq!(decode(&v, 1), Err(SyncError::Version(9)));
        assert!(matches!(decode(&good[..20], 1), Err(SyncError::Malformed(_))));
        assert!(matches!(decode(b"nonsense", 1), Err(SyncError::Malformed(_))));
        let mut k = good.clone();
        k[5] = 77;
        assert_eq!(decode(&k, 1), Err(SyncError::Kind(77)));
        let mut p = good;
        p[8] = 1;
        assert!(matches!(decode(&p, 1), Err(SyncError::Malformed(_))));
        for len in 0..60 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let _ = decode(&junk, 0);
        }
    }
}
