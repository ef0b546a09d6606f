//! Ethernet ports and their queues.

use std::ffi::CString;

use rvs_ffi as ffi;

use super::error::{check, DpdkError};
use super::mbuf::Mbuf;
use super::mempool::Mempool;
use rvs_dataplane::wire::MacAddr;

/// Largest burst handled in one rx/tx call.
pub const MAX_BURST: usize = 32;

/// A configured and started ethdev port.
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    mac: MacAddr,
    queues: u16,
    offloads: Offloads,
}

/// The checksum offloads a port offers and the ones rvs turned on. rvs asks for
/// RX IPv4 header checksum verification wherever the PMD offers it: the packet
/// path then trusts the NIC's verdict (`rx_ipv4_csum_hw`) instead of checking
/// every header in software. TCP/UDP checksum verification is not asked for:
/// rvs (as IPVS) never verifies L4 checksums, it updates them incrementally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Offloads {
    /// RX IPv4 header checksum verification is on.
    pub rx_ipv4_cksum: bool,
    /// The PMD offers RX TCP and UDP checksum verification (left off).
    pub rx_l4_cksum_offered: bool,
    /// The PMD offers TX IPv4 header checksum insertion (not used; see README).
    pub tx_ipv4_cksum_offered: bool,
}

impl Offloads {
    /// What a PMD with these capabilities gets, and the `rxmode.offloads` bits for it.
    fn choose(rx_capa: u64, tx_capa: u64) -> (Offloads, u64) {
        let bit = |b: ffi::rvs_offload::Type| u64::from(b);
        let rx_ipv4 = bit(ffi::rvs_offload::RVS_ETH_RX_OFFLOAD_IPV4_CKSUM);
        let rx_l4 = bit(ffi::rvs_offload::RVS_ETH_RX_OFFLOAD_TCP_CKSUM) | bit(ffi::rvs_offload::RVS_ETH_RX_OFFLOAD_UDP_CKSUM);
        let tx_ipv4 = bit(ffi::rvs_offload::RVS_ETH_TX_OFFLOAD_IPV4_CKSUM);
        let offloads = Offloads {
            rx_ipv4_cksum: rx_capa & rx_ipv4 != 0,
            rx_l4_cksum_offered: rx_capa & rx_l4 == rx_l4,
            tx_ipv4_cksum_offered: tx_capa & tx_ipv4 != 0,
        };
        (offloads, rx_capa & rx_ipv4)
    }
}

/// Port counters as the PMD reports them.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets dropped by the hardware/PMD on receive (no descriptors).
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Receive mbuf allocation failures.
    pub rx_nombuf: u64,
}

impl Port {
    /// Finds the port EAL created for `dev_name` (a vdev name such as
    /// `net_af_packet0`, or a PCI address), sets up `queues` rx and tx queues
    /// receiving into `pool`, enables promiscuous mode and starts it, with the
    /// checksum offloads rvs uses where the PMD offers them ([`Offloads`]).
    pub fn open(dev_name: &str, queues: u16, pool: &Mempool, rx_desc: u16, tx_desc: u16) -> Result<Port, DpdkError> {
        Self::start(dev_name, queues, pool, rx_desc, tx_desc, true)
    }

    /// As [`Port::open`], without offloads: for a port whose received frames
    /// rvs does not classify (the exception path's TAP, whose frames go out
    /// of a real port as they are), where verifying checksums is wasted work.
    pub fn open_plain(dev_name: &str, queues: u16, pool: &Mempool, rx_desc: u16, tx_desc: u16) -> Result<Port, DpdkError> {
        Self::start(dev_name, queues, pool, rx_desc, tx_desc, false)
    }

    fn start(dev_name: &str, queues: u16, pool: &Mempool, rx_desc: u16, tx_desc: u16, offload: bool) -> Result<Port, DpdkError> {
        let cname = CString::new(dev_name).map_err(|_| DpdkError::Nul(dev_name.to_owned()))?;
        let mut id: u16 = 0;
        // SAFETY: valid C string and out-pointer.
        let ret = unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret != 0 {
            return Err(DpdkError::NoSuchPort(dev_name.to_owned()));
        }
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { ffi::rte_eth_dev_info_get(id, &mut info) };
        check(|| format!("rte_eth_dev_info_get({dev_name})"), ret)?;
        let (mut offloads, mut rx_bits) = Offloads::choose(info.rx_offload_capa, info.tx_offload_capa);
        if !offload {
            offloads.rx_ipv4_cksum = false;
            rx_bits = 0;
        }
        let mut conf = ffi::rte_eth_conf::default();
        conf.rxmode.offloads = rx_bits;
        // SAFETY: id is a valid port; conf is zeroed (defaults) but for offloads
        // the port reported it supports.
        let ret = unsafe { ffi::rte_eth_dev_configure(id, queues, queues, &conf) };
        check(|| format!("rte_eth_dev_configure({dev_name}, {queues} queues)"), ret)?;
        let (mut nrx, mut ntx) = (rx_desc, tx_desc);
        // SAFETY: valid port and out-pointers.
        let ret = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrx, &mut ntx) };
        check(|| format!("rte_eth_dev_adjust_nb_rx_tx_desc({dev_name})"), ret)?;
        // SAFETY: valid port.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id) };
        let socket = u32::try_from(socket).unwrap_or(0);
        for q in 0..queues {
            // SAFETY: valid port and queue index; NULL rxconf = driver defaults; the
            // pool outlives the port (rvsd keeps both for the process's life).
            let ret = unsafe { ffi::rte_eth_rx_queue_setup(id, q, nrx, socket, std::ptr::null(), pool.as_ptr()) };
            check(|| format!("rte_eth_rx_queue_setup({dev_name}, queue {q})"), ret)?;
            // SAFETY: as above; NULL txconf = driver defaults.
            let ret = unsafe { ffi::rte_eth_tx_queue_setup(id, q, ntx, socket, std::ptr::null()) };
            check(|| format!("rte_eth_tx_queue_setup({dev_name}, queue {q})"), ret)?;
        }
        // SAFETY: valid, configured port. Some PMDs cannot enable promiscuous
        // mode; that is not fatal, so the result is ignored.
        unsafe {
            ffi::rte_eth_promiscuous_enable(id);
        }
        // SAFETY: valid, configured port.
        let ret = unsafe { ffi::rte_eth_dev_start(id) };
        check(|| format!("rte_eth_dev_start({dev_name})"), ret)?;
        let mut addr = ffi::rte_ether_addr::default();
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { ffi::rte_eth_macaddr_get(id, &mut addr) };
        check(|| format!("rte_eth_macaddr_get({dev_name})"), ret)?;
        if !offload {
            tracing::debug!(port = dev_name, "port {dev_name}: checksum offloads left off (its frames are not classified)");
        } else {
            tracing::info!(
                port = dev_name,
                rx_ipv4_cksum = offloads.rx_ipv4_cksum,
                rx_l4_cksum_offered = offloads.rx_l4_cksum_offered,
                tx_ipv4_cksum_offered = offloads.tx_ipv4_cksum_offered,
                "port {dev_name}: IPv4 header checksums verified {}",
                if offloads.rx_ipv4_cksum { "by the NIC (rx offload on)" } else { "in software (no rx offload)" }
            );
        }
        Ok(Port { id, name: dev_name.to_owned(), mac: MacAddr(addr.addr_bytes), queues, offloads })
    }

    /// DPDK port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device name the port was opened by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port's MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The checksum offloads the port offers and has on.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// Number of rx (and tx) queues.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// A handle on queue `q` (rx and tx), for one worker to own.
    pub fn queue(&self, q: u16) -> Queue {
        Queue { port: self.id, queue: q }
    }

    /// The link state the PMD reports now (`rte_eth_link_get_nowait`): true
    /// when the carrier is up. A PMD that cannot tell (an error) counts as up,
    /// so a driver without link reporting never fakes an outage.
    pub fn link_up(&self) -> bool {
        let mut link = ffi::rte_eth_link::default();
        // SAFETY: valid port and out-pointer; the call does not block.
        let ret = unsafe { ffi::rte_eth_link_get_nowait(self.id, &mut link) };
        ret != 0 || link.link_status() != 0
    }

    /// The PMD's counters.
    pub fn stats(&self) -> PortStats {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { ffi::rte_eth_stats_get(self.id, &mut s) };
        if ret != 0 {
            return PortStats::default();
        }
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: the port is ours and no worker uses it any more (workers are
        // joined before ports are dropped).
        unsafe {
            ffi::rte_eth_dev_stop(self.id);
            ffi::rte_eth_dev_close(self.id);
        }
    }
}

/// One rx/tx queue pair of a port. A queue is used by exactly one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    /// DPDK port id.
    pub port: u16,
    /// Queue index.
    pub queue: u16,
}

impl Queue {
    /// Receives up to `MAX_BURST` frames, appending them to `out`.
    /// Returns how many arrived.
    pub fn rx_burst(&self, out: &mut Vec<Mbuf>) -> usize {
        // The PMD writes the mbuf pointers straight into the vector's spare room
        // (no array to clear and copy per poll).
        out.reserve(MAX_BURST);
        let len = out.len();
        // SAFETY: reserve left room for MAX_BURST elements after `len`; Mbuf is
        // repr(transparent) over a non-null rte_mbuf pointer, so that room is an
        // array of MAX_BURST pointer slots. The queue belongs to this worker.
        let n = unsafe {
            let free = out.as_mut_ptr().add(len).cast::<*mut ffi::rte_mbuf>();
            usize::from(ffi::rvs_eth_rx_burst(self.port, self.queue, free, MAX_BURST as u16))
        };
        // SAFETY: rx_burst filled the first `n` (<= MAX_BURST) slots with mbufs it
        // hands over to us, each a valid, non-null rte_mbuf (DPDK returns only
        // those); the vector now owns them.
        unsafe { out.set_len(len + n.min(MAX_BURST)) };
        n
    }

    /// Sends the frames in `pkts` (emptying it). Frames the queue cannot take are
    /// freed; the return value is how many were sent.
    pub fn tx_burst(&self, pkts: &mut Vec<Mbuf>) -> usize {
        let mut sent_total = 0;
        while !pkts.is_empty() {
            let chunk = pkts.len().min(MAX_BURST);
            let ptr = pkts.as_mut_ptr().cast::<*mut ffi::rte_mbuf>();
            // SAFETY: Mbuf is repr(transparent) over a non-null rte_mbuf pointer, so the
            // first `chunk` elements form a valid array of mbuf pointers.
            let sent = usize::from(unsafe { ffi::rvs_eth_tx_burst(self.port, self.queue, ptr, chunk as u16) });
            sent_total += sent;
            if sent == pkts.len() {
                // The common case: the driver took them all and owns them now.
                // SAFETY: the `sent` elements are the driver's; shortening the
                // vector forgets them without running Drop (no double free).
                unsafe { pkts.set_len(0) };
                break;
            }
            // The driver now owns the first `sent` mbufs: forget them without freeing.
            pkts.drain(..sent).for_each(std::mem::forget);
            if sent < chunk {
                // Queue full: drop what is left of this chunk (freed by Drop).
                pkts.drain(..chunk - sent);
            }
        }
        sent_total
    }

    /// Sends at most one burst from the front of `pkts`; unlike [`Queue::tx_burst`]
    /// what the queue refused stays in `pkts` (in order) for the caller to retry.
    /// Returns how many were sent.
    pub fn tx_burst_keep(&self, pkts: &mut Vec<Mbuf>) -> usize {
        let n = pkts.len().min(MAX_BURST);
        let ptr = pkts.as_mut_ptr().cast::<*mut ffi::rte_mbuf>();
        // SAFETY: Mbuf is repr(transparent) over a non-null rte_mbuf pointer, so the
        // first `n` elements form a valid array of mbuf pointers owned by us.
        let sent = usize::from(unsafe { ffi::rvs_eth_tx_burst(self.port, self.queue, ptr, n as u16) });
        // The driver owns the first `sent` mbufs now: forget them without freeing.
        pkts.drain(..sent).for_each(std::mem::forget);
        sent
    }
}
