//! The packet path over a burst, in stages (VPP's vectors, DPVS's rx prefetch).
//!
//! 1. **Parse** every frame once into a descriptor: Ethernet (the port's
//!    VLAN, our MAC, IPv4 or IPv6), the IPv4 header and its checksum or the
//!    IPv6 header and its extension headers, the TCP/UDP header, the flow
//!    key and its hash (in the connection table of its family). The common
//!    IPv4 frame is read at fixed offsets ([`fast_parse`]), anything else by
//!    the general parse. Frames that are not a flow's
//!    unfragmented TCP/UDP packet for us (ARP, ICMP, fragments, multicast,
//!    anything malformed or foreign) get no descriptor: they take the
//!    frame-at-a-time path ([`Processor::handle`]), which parses them again
//!    and decides everything about them, so their fate and counters are the
//!    same as when they arrive alone.
//!
//!    The hash is the table's own (seeded, in `conn/hash.rs`), not the
//!    NIC's RSS hash, even where a port delivers one. Every key the table
//!    holds must hash the same way whether a packet or a connection
//!    brings it: a NAT/FULLNAT connection's reply key is inserted before
//!    any reply arrives, and ports without RSS (memif, af_packet, tap)
//!    share the table. Taking the NIC's Toeplitz hash would mean
//!    computing Toeplitz in software for those keys and ports (a pass
//!    over each of the key's 96 bits), many times the cost of the seeded
//!    hash (some 17 instructions per packet, the most RSS could save), and
//!    on the new-connection path, whose budget is the tightest. DPVS also
//!    hashes its connection table itself (jhash with a random seed).
//! 2. **Prefetch** the connection index bucket of every descriptor's hash,
//!    then, once those are on their way, the connection slot each bucket
//!    points to: the cache misses of the whole burst overlap instead of
//!    each packet waiting for its own two. A burst of one frame (a lightly
//!    loaded worker's usual poll) has nothing to overlap: it skips this
//!    stage and the descriptor vector ([`Processor::handle_single`]).
//! 3. **Classify and forward** each frame in arrival order: its connection
//!    (or a new one), the mode's rewrite, egress. Processing stays in order,
//!    so a SYN and the next packet of its flow in one burst behave exactly as
//!    they would one at a time; prefetches are hints, never stale state.

use super::*;

mod fast_parse;

use fast_parse::FastIpv4;

/// What the parse stage learned of a frame of the burst.
#[derive(Clone, Copy, Debug)]
pub(super) struct Desc {
    /// Ethernet header length.
    l2_len: usize,
    /// The flow packet, of either family.
    pkt: DescPacket,
    /// The hash of its key in its family's connection table.
    hash: u64,
}

/// A descriptor's flow packet.
#[derive(Clone, Copy, Debug)]
enum DescPacket {
    /// IPv4.
    V4(FlowPacket),
    /// IPv6.
    V6(ipv6::FlowPacket6),
}

impl<F: Frame> Processor<F> {
    /// Processes a burst of frames received on port index `port` at `now_ms`
    /// (it is drained). The same as [`Processor::handle`] on each in turn,
    /// with the burst's connection lookups overlapped.
    pub fn handle_burst(&mut self, port: u16, frames: &mut Vec<F>, now_ms: u64, out: &mut Output<F>) {
        // The port's MAC and VLAN, the same for the whole burst.
        let Some((port_mac, port_vlan)) = self.port_l2(port) else {
            // An unknown port: no frame gets a descriptor.
            for frame in frames.drain(..) {
                self.handle(port, frame, now_ms, out);
            }
            return;
        };
        if frames.len() == 1 {
            if let Some(frame) = frames.pop() {
                self.handle_single(port, port_mac, port_vlan, frame, now_ms, out);
            }
            return;
        }
        let descs = self.parse_known_port(port, port_mac, port_vlan, frames);
        self.forward_parsed(port, frames, descs, now_ms, out);
    }

    /// The MAC and VLAN of port index `port`, None for a port the snapshot does not know.
    #[inline]
    fn port_l2(&self, port: u16) -> Option<(MacAddr, Option<u16>)> {
        self.snapshot.ports.get(usize::from(port)).map(|p| (p.mac, p.vlan))
    }

    /// Stage 1 of [`Processor::handle_burst`] for a burst of frames received
    /// on port index `port`, whose MAC and VLAN are known: every frame
    /// parsed, the burst counted, its connection index buckets prefetched.
    /// Returns the descriptors, one per frame (the processor's vector,
    /// which [`Processor::forward_parsed`] gives back).
    #[inline(always)]
    fn parse_known_port(&mut self, port: u16, port_mac: MacAddr, port_vlan: Option<u16>, frames: &mut [F]) -> Vec<Option<Desc>> {
        let mut descs = std::mem::take(&mut self.descs);
        // One slot per frame, each written by the parse (no push per frame).
        descs.clear();
        descs.resize(frames.len(), None);
        // Nothing reads the counters before stage 3, so the burst's frames
        // and bytes are counted once, before it.
        let mut rx_bytes: u64 = 0;
        for (frame, desc) in frames.iter_mut().zip(descs.iter_mut()) {
            rx_bytes += frame.len() as u64;
            self.parse_for_burst::<true>(port, port_mac, port_vlan, frame, desc);
        }
        self.counters.add(Counter::RxPackets, frames.len() as u64);
        self.counters.add(Counter::RxBytes, rx_bytes);
        descs
    }

    /// Stages 2 and 3 of [`Processor::handle_burst`] for the frames received
    /// on `port` that stage 1 gave `descs` for (they are drained): the
    /// connection slots prefetched, then each frame classified and
    /// forwarded in arrival order.
    #[inline(always)]
    fn forward_parsed(&mut self, port: u16, frames: &mut Vec<F>, descs: Vec<Option<Desc>>, now_ms: u64, out: &mut Output<F>) {
        for desc in &descs {
            match desc {
                Some(Desc { pkt: DescPacket::V4(_), hash, .. }) => self.conns.prefetch_slot(*hash),
                Some(Desc { pkt: DescPacket::V6(_), hash, .. }) => self.conns6.prefetch_slot(*hash),
                None => {}
            }
        }
        // Each frame with its descriptor (stage 1 wrote one per frame; a
        // frame without would be handled whole). Walking the descriptors
        // beside the drain, rather than zipping the two, makes the tighter
        // loop (deploy/bench/instructions.sh: 10 to 15 instructions per packet less).
        let mut descs_iter = descs.iter();
        for frame in frames.drain(..) {
            match descs_iter.next() {
                Some(Some(d)) => self.forward_flow(port, frame, d, now_ms, out),
                Some(None) => self.dispatch(port, frame, now_ms, false, out),
                None => self.handle(port, frame, now_ms, out),
            }
        }
        self.descs = descs;
    }

    /// A burst of one frame (a lightly loaded worker's usual poll): the
    /// stages of [`Processor::handle_burst`] without the descriptor vector
    /// and without the prefetches, which have nothing to overlap with.
    fn handle_single(&mut self, port: u16, port_mac: MacAddr, port_vlan: Option<u16>, mut frame: F, now_ms: u64, out: &mut Output<F>) {
        self.counters.inc(Counter::RxPackets);
        self.counters.add(Counter::RxBytes, frame.len() as u64);
        let mut desc = None;
        self.parse_for_burst::<false>(port, port_mac, port_vlan, &mut frame, &mut desc);
        match &desc {
            Some(d) => self.forward_flow(port, frame, d, now_ms, out),
            None => self.dispatch(port, frame, now_ms, false, out),
        }
    }

    /// Stage 1 for one frame: writes into `desc` the descriptor of a flow's
    /// unfragmented TCP/UDP packet for us (`port`, with MAC `port_mac` on
    /// VLAN `port_vlan`), None for every other frame, and, when `PREFETCH`
    /// (other frames' parses follow before its lookup), prefetches the
    /// descriptor's connection index bucket. Only a partial transport
    /// checksum is completed here; nothing else is decided or counted.
    ///
    /// The common IPv4 frame takes the fast parse ([`fast_parse`]); IPv6
    /// and every frame the fast parse declines take the general one, whose
    /// verdict the fast parse's equals where it gives one. Each path writes
    /// its own descriptor (so the common one is written straight into
    /// `desc`, not through a temporary shared with the others).
    #[inline(always)]
    fn parse_for_burst<const PREFETCH: bool>(
        &mut self,
        port: u16,
        port_mac: MacAddr,
        port_vlan: Option<u16>,
        frame: &mut F,
        desc: &mut Option<Desc>,
    ) {
        let l2 = fast_parse::l2(frame.data(), port_mac, port_vlan);
        let fast = match l2 {
            Some((l2_len, ethertype::IPV4)) => {
                let rx_csum = frame.rx_ipv4_checksum();
                frame.data().get(l2_len..).and_then(|ip| fast_parse::ipv4_flow(ip, rx_csum)).map(|fast| (l2_len, fast))
            }
            _ => None,
        };
        let Some((l2_len, FastIpv4 { pkt, nic_checked, maybe_partial })) = fast else {
            *desc = match l2 {
                Some((l2_len, ethertype::IPV6)) => self.parse_for_burst6(l2_len, frame),
                // The general parse gives other ethertypes no descriptor either.
                Some((_, ethertype)) if ethertype != ethertype::IPV4 => None,
                _ => self.parse_for_burst_general(port, port_mac, port_vlan, frame),
            };
            if PREFETCH {
                self.prefetch_index(desc.as_ref());
            }
            return;
        };
        if nic_checked {
            self.counters.inc(Counter::RxIpv4CsumHw);
        }
        if maybe_partial {
            if let Some(ip) = frame.data_mut().get_mut(l2_len..) {
                self.complete_partial_checksum(port, ip, &pkt);
            }
        }
        let hash = self.conns.hash(&pkt.key);
        if PREFETCH {
            self.conns.prefetch_index(hash);
        }
        *desc = Some(Desc { l2_len, pkt: DescPacket::V4(pkt), hash });
    }

    /// Prefetches the connection index bucket of `desc`'s hash (stage 2's first half).
    fn prefetch_index(&self, desc: Option<&Desc>) {
        match desc.map(|d| (&d.pkt, d.hash)) {
            Some((DescPacket::V4(_), hash)) => self.conns.prefetch_index(hash),
            Some((DescPacket::V6(_), hash)) => self.conns6.prefetch_index(hash),
            None => {}
        }
    }

    /// The descriptor of an IPv6 frame whose Ethernet header is `l2_len`
    /// long. Not inlined, as [`Processor::parse_for_burst_general`].
    #[inline(never)]
    fn parse_for_burst6(&self, l2_len: usize, frame: &F) -> Option<Desc> {
        let pkt = ipv6::parse_flow6(frame.data().get(l2_len..)?)?;
        Some(Desc { l2_len, pkt: DescPacket::V6(pkt), hash: self.conns6.hash(&pkt.key) })
    }

    /// [`Processor::parse_for_burst`] of a frame the fast parse declined:
    /// any shape (VLAN priority tags, IPv4 options), fully checked. Not
    /// inlined: the fast path's loop keeps its registers.
    #[inline(never)]
    fn parse_for_burst_general(&mut self, port: u16, port_mac: MacAddr, port_vlan: Option<u16>, frame: &mut F) -> Option<Desc> {
        let (l2_len, ethertype) = general_l2(frame.data(), port_mac, port_vlan)?;
        if ethertype == ethertype::IPV6 {
            return self.parse_for_burst6(l2_len, frame);
        }
        if ethertype != ethertype::IPV4 {
            return None;
        }
        let rx_csum = frame.rx_ipv4_checksum();
        let ip = frame.data_mut().get_mut(l2_len..)?;
        // Frames without a descriptor are parsed (and counted) again on the slow path.
        let (Ipv4Kind::Flow(pkt), nic_checked) = flow::parse_ipv4(ip, false, rx_csum) else { return None };
        if nic_checked {
            self.counters.inc(Counter::RxIpv4CsumHw);
        }
        self.complete_partial_checksum(port, ip, &pkt);
        Some(Desc { l2_len, pkt: DescPacket::V4(pkt), hash: self.conns.hash(&pkt.key) })
    }

    /// Stage 3 for a frame with a descriptor. Always inlined into its two
    /// callers (a burst, a single frame), as it was into its one.
    #[inline(always)]
    fn forward_flow(&mut self, port: u16, mut frame: F, d: &Desc, now_ms: u64, out: &mut Output<F>) {
        let action = match (frame.data_mut().get_mut(d.l2_len..), &d.pkt) {
            (Some(ip), DescPacket::V4(pkt)) => self.flow_packet(port, ip, d.l2_len, pkt, d.hash, now_ms, false, out),
            (Some(ip), DescPacket::V6(pkt)) => self.flow_packet6(port, ip, d.l2_len, pkt, d.hash, now_ms, false, out),
            (None, _) => Action::Drop(Counter::DropMalformed),
        };
        self.apply(port, frame, action, now_ms, out);
    }
}

/// The general parse's Ethernet step: the header length and the (inner)
/// ethertype of a frame on the port's VLAN (`port_vlan`; a tag of VID 0 is
/// a priority tag, as good as none) to its MAC `port_mac`; None for any
/// other frame.
fn general_l2(frame: &[u8], port_mac: MacAddr, port_vlan: Option<u16>) -> Option<(usize, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.vlan_id().filter(|&vid| vid != 0) != port_vlan || eth.dst_mac() != port_mac {
        return None;
    }
    Some((eth.header_len(), eth.ethertype()))
}
