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

/// DR over IPv6: the client's packet goes to the real server `real` unchanged
/// but for its hop limit ([`super::hop6::decrement`], the caller's first
/// step); the frame goes to the real server's own MAC on a connected network
/// (the caller resolves it by neighbour discovery and rewrites the Ethernet
/// header). The real server holds the VIP on a device that does not answer
/// neighbour solicitations for it, and answers the client directly.
pub fn xmit_inbound6(real: std::net::Ipv6Addr) -> super::NextHop6 {
    super::NextHop6::OnLink(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr6_sends_to_the_real_server_on_link() {
        let real: std::net::Ipv6Addr = "2001:db8:1::11".parse().expect("addr");
        assert_eq!(xmit_inbound6(real), super::super::NextHop6::OnLink(real));
    }
}
