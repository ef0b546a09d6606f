//! Sloppy adoption (IPVS's `sloppy_tcp`, Maglev's and Katran's behaviour):
//! a mid-stream TCP packet of a flow this node has never seen — ECMP moved
//! the flow here when another node of a cluster left or joined — creates its
//! connection in ESTABLISHED to the real server the consistent hash picks,
//! instead of being dropped.
//!
//! Only where the answer is the same on every node and no reply comes back
//! through the director: services with `sloppy` set (validation requires a
//! consistent-hash scheduler, `mh` or `maglev`), and real servers forwarded
//! by DR or TUN. A NAT or FULLNAT real server is never adopted: its replies
//! (and FULLNAT's local port and sequence shift) live on the node that made
//! the connection, so a flow moved away from it cannot continue anyway.

use crate::conn::{next_state, StateTable, TcpState};
use crate::snapshot::{ForwardMode, Service};

use super::flow::L4;

/// Whether this packet without a connection may be adopted by `svc`: a TCP
/// segment that is not a new connection's SYN and not a reset, to a service
/// with `sloppy` on.
pub(super) fn may_adopt(svc: &Service, l4: &L4) -> bool {
    svc.sloppy && (!l4.syn || l4.ack) && !l4.rst
}

/// Whether a connection to a real server forwarded by `mode` may be adopted
/// (its replies do not come back through this node).
pub(super) fn adoptable_mode(mode: ForwardMode) -> bool {
    matches!(mode, ForwardMode::Dr | ForwardMode::Tun)
}

/// The state an adopted connection starts in: ESTABLISHED, with this
/// packet's flags run through IPVS's input table (a FIN moves it on).
pub(super) fn adopted_state(l4: &L4) -> TcpState {
    next_state(TcpState::Established, l4.flags(), StateTable::Input)
}
