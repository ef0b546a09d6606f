//! Direct routing (`ipvsadm -g`, keepalived `lb_kind DR`).
//!
//! The IP packet is left as the client sent it (destination still the VIP)
//! but for the TTL, which loses one as in every mode ([`super::ttl`]): only
//! the Ethernet destination becomes the real server's MAC. The real server holds the VIP on a non-ARPing interface
//! and answers the client directly, so replies never come back through rvs.

use crate::conn::Conn;

use super::NextHop;

/// The client's packet to the real server: no address in the IP packet changes;
/// the frame goes to the real server's own MAC on a connected network.
pub fn xmit_inbound(conn: &Conn) -> NextHop {
    NextHop::OnLink(*conn.real.ip())
}
