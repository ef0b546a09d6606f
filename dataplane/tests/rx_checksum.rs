//! The packet path and the NIC's IPv4 checksum verdict ([`Frame::rx_ipv4_checksum`]):
//! a header the NIC called good is not checked again, one it called bad is
//! dropped unchecked, and without a verdict the software check decides.
//!
//! `NicFrame` stands in for an mbuf whose PMD set `ol_flags`; the real ports
//! are covered by rvs-dpdk's `tests/offload.rs` (net_tap and net_ring).

mod common;

use rvs_dataplane::frame::{Frame, RxChecksum, VecFrame};
use rvs_dataplane::process::{Output, Processor};
use rvs_dataplane::stats::Counter;
use rvs_dataplane::wire::builder::{arp_frame, tcp_frame, TcpParams};
use rvs_dataplane::wire::{arp, MacAddr};

use common::{nat_snapshot, CLIENT, CLIENT_MAC, DIRECTOR_RS_SIDE, RS, RS_MAC, VIP};

const PORT_MAC: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 1]);

/// A frame carrying the verdict a NIC gave it.
struct NicFrame {
    inner: VecFrame,
    verdict: RxChecksum,
}

impl Frame for NicFrame {
    fn data(&self) -> &[u8] {
        self.inner.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.inner.data_mut()
    }
    fn prepend(&mut self, len: usize) -> bool {
        self.inner.prepend(len)
    }
    fn adj(&mut self, len: usize) -> bool {
        self.inner.adj(len)
    }
    fn append(&mut self, len: usize) -> bool {
        self.inner.append(len)
    }
    fn trim(&mut self, len: usize) -> bool {
        self.inner.trim(len)
    }
    fn alloc_sibling(&self) -> Option<Self> {
        self.inner.alloc_sibling().map(|inner| NicFrame { inner, verdict: RxChecksum::Unknown })
    }
    fn rx_ipv4_checksum(&self) -> RxChecksum {
        self.verdict
    }
}

fn frame(bytes: &[u8], verdict: RxChecksum) -> NicFrame {
    NicFrame { inner: VecFrame::new(bytes), verdict }
}

fn processor() -> Processor<NicFrame> {
    let mut p = Processor::new(nat_snapshot("nic", PORT_MAC), 64);
    let mut out = Output::with_capacity(8);
    let reply = arp_frame(RS_MAC, PORT_MAC, arp::op::REPLY, RS_MAC, RS, PORT_MAC, DIRECTOR_RS_SIDE);
    p.handle(0, frame(&reply, RxChecksum::Unknown), 0, &mut out);
    assert_eq!(p.counters().get(Counter::ArpRepliesIn), 1);
    p
}

fn syn(sport: u16) -> Vec<u8> {
    tcp_frame(&TcpParams { src_mac: CLIENT_MAC, dst_mac: PORT_MAC, src: CLIENT, dst: VIP, sport, dport: 80, ..TcpParams::default() })
}

/// `frame` with its IPv4 header checksum broken.
fn broken(mut frame: Vec<u8>) -> Vec<u8> {
    frame[14 + 10] ^= 0xff;
    frame
}

/// Feeds one SYN, alone or as a burst; true when it was forwarded.
fn forwarded(p: &mut Processor<NicFrame>, bytes: &[u8], verdict: RxChecksum, burst: bool) -> bool {
    let mut out = Output::with_capacity(8);
    if burst {
        p.handle_burst(0, &mut vec![frame(bytes, verdict)], 1, &mut out);
    } else {
        p.handle(0, frame(bytes, verdict), 1, &mut out);
    }
    !out.tx.is_empty()
}

#[test]
fn the_nic_verdict_replaces_the_software_check() {
    nic_verdict_replaces_the_software_check(false);
}

#[test]
fn the_nic_verdict_replaces_the_software_check_in_bursts() {
    nic_verdict_replaces_the_software_check(true);
}

fn nic_verdict_replaces_the_software_check(burst: bool) {
    let forwarded = |p: &mut Processor<NicFrame>, bytes: &[u8], verdict| forwarded(p, bytes, verdict, burst);
    let mut p = processor();
    // Good from the NIC: trusted, not checked again (a broken header passes:
    // nothing in software looked at it).
    assert!(forwarded(&mut p, &broken(syn(1000)), RxChecksum::Good));
    assert!(forwarded(&mut p, &syn(1001), RxChecksum::Good));
    assert_eq!(p.counters().get(Counter::RxIpv4CsumHw), 2);
    assert_eq!(p.counters().get(Counter::DropBadChecksum), 0);
    // Bad from the NIC: dropped, even though the header would verify.
    assert!(!forwarded(&mut p, &syn(1002), RxChecksum::Bad));
    assert_eq!(p.counters().get(Counter::DropBadChecksum), 1);
    assert_eq!(p.counters().get(Counter::RxIpv4CsumHw), 3);
    // No verdict: the software check decides, and counts nothing as hardware-verified.
    assert!(!forwarded(&mut p, &broken(syn(1003)), RxChecksum::Unknown));
    assert_eq!(p.counters().get(Counter::DropBadChecksum), 2);
    assert!(forwarded(&mut p, &syn(1004), RxChecksum::Unknown));
    assert_eq!(p.counters().get(Counter::RxIpv4CsumHw), 3);
    assert_eq!(p.conns().len(), 3, "connections of the forwarded SYNs only");
}
