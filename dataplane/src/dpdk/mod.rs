//! Safe wrappers over the raw DPDK bindings of `rvs-ffi`.
//!
//! This is the only module of the dataplane allowed to contain `unsafe`; every
//! unsafe block states why it is sound in a `// SAFETY:` comment. The rest of the
//! packet path sees [`Mbuf`] only through the [`crate::frame::Frame`] trait.

mod eal;
mod error;
mod flow;
mod lcore;
mod mbuf;
mod mempool;
mod port;

pub use eal::Eal;
pub use error::DpdkError;
pub use flow::{steer_dst_port, FlowRule};
pub use lcore::{launch_on_lcore, tsc_hz, wait_all_lcores};
pub use mbuf::{free_bulk, Mbuf};
pub use mempool::Mempool;
pub use port::{Port, PortStats, Queue, MAX_BURST};
