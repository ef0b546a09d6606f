//! The rvs packet path.
//!
//! * [`dpdk`]: safe wrappers over the raw bindings of `rvs-ffi` (EAL, mempool, mbuf,
//!   ports and queues, lcores). The only module that contains `unsafe`.
//! * [`wire`]: zero-copy packet views (Ethernet/802.1Q, ARP, IPv4, TCP, UDP, ICMP)
//!   and checksum helpers. Pure byte-buffer code, testable without DPDK.
//! * [`conn`]: the per-core connection table with idle timeouts.
//! * [`sched`]: one file per scheduler behind the [`sched::Scheduler`] trait.
//! * [`fwd`]: one file per forwarding mode (DR, NAT).
//! * [`neigh`]: the ARP neighbour table with queues for packets awaiting resolution.
//! * [`snapshot`]: the immutable configuration the control plane hands to workers.
//! * [`process`]: the per-packet logic of a worker, generic over [`frame::Frame`].
//! * [`worker`]: the poll loop (rx burst, process, tx burst) pinned to a core.
//! * [`stats`]: per-core counters and their shared, lock-free publication.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod dpdk;

pub mod conn;
pub mod frag;
pub mod frame;
pub mod fwd;
pub mod laddr;
pub mod link;
pub mod neigh;
pub mod process;
pub mod sched;
pub mod snapshot;
pub mod stats;
pub mod wire;
pub mod worker;
