//! The DPDK-bound half of the dataplane: safe wrappers over the raw bindings of
//! `rvs-ffi` (EAL, mempool, mbuf, ports and queues, lcores, rte_flow) and the
//! [`worker`] poll loop that drives `rvs-dataplane`'s packet path with them.
//!
//! With `rvs-ffi` this is the only crate allowed to contain `unsafe`; every
//! unsafe block states why it is sound in a `// SAFETY:` comment. The packet path
//! (the DPDK-free `rvs-dataplane` crate) sees [`Mbuf`] only through its
//! [`rvs_dataplane::frame::Frame`] trait, so it builds and is tested without libdpdk.

pub mod capture;
mod eal;
mod error;
mod flow;
mod lcore;
pub mod log;
mod mbuf;
mod mempool;
mod port;
pub mod worker;

pub use eal::{Eal, Pdump};
pub use error::DpdkError;
pub use flow::{steer_dst_port, FlowRule};
pub use lcore::{launch_on_lcore, rdtsc, tsc_hz, wait_all_lcores};
pub use mbuf::{free_bulk, Mbuf};
pub use mempool::Mempool;
pub use port::{Offloads, Port, PortStats, Queue, MAX_BURST};
