//! NIC checksum offload on real DPDK ports: a `net_tap` port, whose PMD offers
//! RX IPv4 checksum verification, and a `net_ring` port, which offers none.
//!
//! Frames enter the tap port from the kernel side of its interface (an
//! AF_PACKET socket), so the PMD receives and classifies them as it would a
//! wire's; rvs's packet logic then forwards or drops them, and what the port
//! sends comes back out of the same interface. One test function, because EAL
//! can be started once per process. Needs root (the tap interface), no
//! hugepages and no PCI devices.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use rvs_dataplane::frame::{Frame, RxChecksum};
use rvs_dataplane::process::{Output, Processor};
use rvs_dataplane::stats::Counter;
use rvs_dataplane::wire::builder::{arp_frame, tcp_frame, TcpParams};
use rvs_dataplane::wire::{arp, MacAddr};
use rvs_dpdk::{Eal, Mbuf, Mempool, Port};

use common::{nat_snapshot, CLIENT, CLIENT_MAC, DIRECTOR_RS_SIDE, RS, RS_MAC, VIP};

const WAIT: Duration = Duration::from_secs(20);

fn syn(dst_mac: MacAddr, sport: u16) -> Vec<u8> {
    tcp_frame(&TcpParams { src_mac: CLIENT_MAC, dst_mac, src: CLIENT, dst: VIP, sport, dport: 80, ..TcpParams::default() })
}

/// The same frame with its IPv4 header checksum broken.
fn corrupted(mut frame: Vec<u8>) -> Vec<u8> {
    frame[14 + 10] ^= 0x5a;
    frame
}

/// An AF_PACKET socket on the kernel side of the tap interface.
struct KernelSide {
    fd: i32,
}

impl KernelSide {
    fn open(iface: &str) -> KernelSide {
        let name = std::ffi::CString::new(iface).expect("interface name");
        // SAFETY: plain libc calls with valid arguments; every result is checked.
        unsafe {
            let index = libc::if_nametoindex(name.as_ptr());
            assert!(index != 0, "the tap port created interface {iface}");
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            assert!(fd >= 0, "AF_PACKET socket (root needed): {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto;
            addr.sll_ifindex = index as i32;
            let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let ret = libc::bind(fd, std::ptr::addr_of!(addr).cast(), len);
            assert_eq!(ret, 0, "bind to {iface}: {}", std::io::Error::last_os_error());
            let tv = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
            let tv_len = std::mem::size_of::<libc::timeval>() as u32;
            let ret = libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, std::ptr::addr_of!(tv).cast(), tv_len);
            assert_eq!(ret, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
            KernelSide { fd }
        }
    }

    /// Sends `frame` out of the kernel interface, i.e. into the tap port.
    fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is a valid buffer of its length; the socket is bound.
        let sent = unsafe { libc::send(self.fd, frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(sent, frame.len() as isize, "send: {}", std::io::Error::last_os_error());
    }

    /// Waits for the port to send `expected` (the kernel receives it).
    fn expect(&self, expected: &[u8]) {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 2048];
        let mut seen = 0;
        while Instant::now() < deadline {
            let mut from: libc::sockaddr_ll = {
                // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
                unsafe { std::mem::zeroed() }
            };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: valid buffer and address out-pointers of the given sizes.
            let n = unsafe {
                libc::recvfrom(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0, std::ptr::addr_of_mut!(from).cast(), &mut from_len)
            };
            // Our own sends show up as outgoing; the port's frames as incoming.
            if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            seen += 1;
            if &buf[..n as usize] == expected {
                return;
            }
        }
        panic!("the port never sent the expected frame ({seen} other frames seen)");
    }
}

impl Drop for KernelSide {
    fn drop(&mut self) {
        // SAFETY: closes the socket we opened.
        unsafe { libc::close(self.fd) };
    }
}

/// Polls `port` until it receives exactly `frame` (dropping anything else the
/// kernel sends, e.g. IPv6 neighbour discovery) and returns that mbuf.
fn receive(port: &Port, frame: &[u8]) -> Mbuf {
    let deadline = Instant::now() + WAIT;
    let mut rx = Vec::new();
    while Instant::now() < deadline {
        port.queue(0).rx_burst(&mut rx);
        if let Some(i) = rx.iter().position(|m| m.data() == frame) {
            return rx.swap_remove(i);
        }
        rx.clear();
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the port never received the frame sent into it");
}

/// Sends `frame` through a ring port (tx and rx are the same ring).
fn through_ring(port: &Port, pool: &Mempool, frame: &[u8]) -> Mbuf {
    let mut m = pool.alloc().expect("pool has mbufs");
    assert!(m.fill(frame));
    let mut tx = vec![m];
    assert_eq!(port.queue(0).tx_burst(&mut tx), 1);
    let mut rx = Vec::new();
    port.queue(0).rx_burst(&mut rx);
    assert_eq!(rx.len(), 1);
    rx.pop().expect("one frame")
}

#[test]
fn rx_checksum_offload_on_a_tap_port_and_software_on_a_ring_port() {
    let iface = format!("rvsck{}", std::process::id() % 100_000);
    let args: Vec<String> = [
        "offload-test",
        "-l",
        "0",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-shconf",
        "--vdev",
        &format!("net_tap0,iface={iface}"),
        "--vdev",
        &format!("net_tap1,iface={iface}p"),
        "--vdev",
        "net_ring0",
        "--log-level",
        "lib.eal:error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL starts with a tap and a ring port (root needed for the tap)");
    let pool = Mempool::new("offload_test_pool", 1023, 0, Eal::socket_id()).expect("mempool");
    let tap = Port::open("net_tap0", 1, &pool, 256, 256).expect("tap port");
    let plain = Port::open_plain("net_tap1", 1, &pool, 256, 256).expect("tap port without offloads");
    let ring = Port::open("net_ring0", 1, &pool, 256, 256).expect("ring port");
    assert!(!plain.offloads().rx_ipv4_cksum, "open_plain leaves offloads off: {:?}", plain.offloads());
    eprintln!("net_tap offloads: {:?}", tap.offloads());
    assert!(tap.offloads().rx_ipv4_cksum, "net_tap offers RX IPv4 checksum offload: {:?}", tap.offloads());
    assert!(!ring.offloads().rx_ipv4_cksum, "net_ring offers no checksum offload: {:?}", ring.offloads());
    // Less noise from the kernel side (IPv6 autoconfiguration); the test filters it anyway.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1");
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}p/disable_ipv6"), "1");
    let kernel = KernelSide::open(&iface);
    let kernel_plain = KernelSide::open(&format!("{iface}p"));

    // With offload: the real server's MAC comes from an ARP reply through the tap.
    let mac = tap.mac();
    let mut hw: Processor<Mbuf> = Processor::new(nat_snapshot("p0", mac), 1024);
    let mut out = Output::with_capacity(32);
    let arp_reply = arp_frame(RS_MAC, mac, arp::op::REPLY, RS_MAC, RS, mac, DIRECTOR_RS_SIDE);
    kernel.send(&arp_reply);
    hw.handle(0, receive(&tap, &arp_reply), 0, &mut out);
    assert_eq!(hw.counters().get(Counter::ArpRepliesIn), 1);
    assert_eq!(hw.counters().get(Counter::RxIpv4CsumHw), 0, "ARP has no IPv4 header");

    // A SYN: the PMD verified its header, rvs trusts that and forwards it.
    let good = syn(mac, 33000);
    kernel.send(&good);
    let m = receive(&tap, &good);
    assert_eq!(m.rx_ipv4_checksum(), RxChecksum::Good, "ol_flags {:#x}", m.ol_flags());
    hw.handle(0, m, 1, &mut out);
    assert_eq!(hw.counters().get(Counter::RxIpv4CsumHw), 1, "the header was verified by the port");
    assert_eq!(hw.counters().get(Counter::DropBadChecksum), 0);
    assert_eq!(out.tx.len(), 1, "the SYN is forwarded");
    let (egress, frame) = out.tx.pop().expect("one frame");
    assert_eq!(egress, 0);
    let mut tx = vec![frame];
    assert_eq!(tap.queue(0).tx_burst(&mut tx), 1);
    let expected = tcp_frame(&TcpParams {
        src_mac: mac,
        dst_mac: RS_MAC,
        src: CLIENT,
        dst: RS,
        sport: 33000,
        dport: 8080,
        ttl: 63,
        ..TcpParams::default()
    });
    kernel.expect(&expected);

    // A broken header: the PMD says bad, rvs drops it without checking again.
    let bad = corrupted(syn(mac, 33001));
    kernel.send(&bad);
    let m = receive(&tap, &bad);
    assert_eq!(m.rx_ipv4_checksum(), RxChecksum::Bad, "ol_flags {:#x}", m.ol_flags());
    hw.handle(0, m, 2, &mut out);
    assert_eq!(hw.counters().get(Counter::DropBadChecksum), 1);
    assert_eq!(hw.counters().get(Counter::RxIpv4CsumHw), 2);
    assert!(out.tx.is_empty());
    assert_eq!(hw.conns().len(), 1, "no connection for the broken SYN");
    out.drop.clear();

    // The same PMD with offloads off: no verdict in the mbuf, the software check drops it.
    let pmac = plain.mac();
    let mut sw_tap: Processor<Mbuf> = Processor::new(nat_snapshot("p0", pmac), 1024);
    let bad = corrupted(syn(pmac, 33004));
    kernel_plain.send(&bad);
    let m = receive(&plain, &bad);
    assert_eq!(m.rx_ipv4_checksum(), RxChecksum::Unknown, "ol_flags {:#x}", m.ol_flags());
    sw_tap.handle(0, m, 0, &mut out);
    assert_eq!(sw_tap.counters().get(Counter::DropBadChecksum), 1);
    assert_eq!(sw_tap.counters().get(Counter::RxIpv4CsumHw), 0);
    out.drop.clear();

    // Without offload (net_ring): the software check finds the broken header.
    let rmac = ring.mac();
    let mut sw: Processor<Mbuf> = Processor::new(nat_snapshot("p0", rmac), 1024);
    let m = through_ring(&ring, &pool, &corrupted(syn(rmac, 33002)));
    assert_eq!(m.rx_ipv4_checksum(), RxChecksum::Unknown);
    sw.handle(0, m, 0, &mut out);
    assert_eq!(sw.counters().get(Counter::DropBadChecksum), 1);
    let m = through_ring(&ring, &pool, &syn(rmac, 33003));
    sw.handle(0, m, 0, &mut out);
    assert_eq!(sw.counters().get(Counter::DropBadChecksum), 1, "a good header passes the software check");
    assert_eq!(sw.counters().get(Counter::RxIpv4CsumHw), 0, "nothing was verified by the ring port");
    assert_eq!(sw.conns().len(), 1);
    out.drop.clear();
    out.tx.clear();

    drop(hw);
    drop(sw);
    drop(sw_tap);
    drop(kernel);
    drop(kernel_plain);
    drop(tap);
    drop(plain);
    drop(ring);
    drop(pool);
    drop(eal);
}
