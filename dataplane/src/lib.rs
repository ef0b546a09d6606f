//! The rvs packet path, without DPDK: everything here works on byte buffers
//! behind the [`frame::Frame`] trait, builds without libdpdk and is tested
//! without EAL. The DPDK wrappers and the worker poll loop that drives this
//! code are the `rvs-dpdk` crate (`dataplane/dpdk/`).
//!
//! * [`wire`]: zero-copy packet views (Ethernet/802.1Q, ARP, IPv4, TCP, UDP, ICMP)
//!   and checksum helpers. Pure byte-buffer code, testable without DPDK.
//! * [`conn`]: the per-core connection table with idle timeouts.
//! * [`sched`]: one file per scheduler behind the [`sched::Scheduler`] trait.
//! * [`fwd`]: one file per forwarding mode (DR, NAT).
//! * [`neigh`]: the neighbour tables (ARP, IPv6 neighbour discovery) with queues for packets awaiting resolution.
//! * [`local6`]: IPv6 traffic for the appliance: neighbour solicitations for our addresses, echo.
//! * [`snapshot`]: the immutable configuration the control plane hands to workers.
//! * [`process`]: the per-packet logic of a worker, generic over [`frame::Frame`].
//! * [`stats`]: per-core counters and their shared, lock-free publication.
//! * [`synproxy`]: SYN cookies, the proxied handshake's packets, sequence translation.
#![forbid(unsafe_code)]

pub mod conn;
pub mod frag;
pub mod frame;
pub mod fwd;
pub mod laddr;
pub mod link;
pub mod local6;
pub mod neigh;
pub mod process;
pub mod sched;
pub mod snapshot;
pub mod stats;
pub mod synproxy;
pub mod wire;
