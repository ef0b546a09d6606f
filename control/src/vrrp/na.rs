//! Unsolicited neighbour advertisements on becoming master: the IPv6
//! analogue of gratuitous ARP (RFC 4861 §7.2.6), as Keepalived sends them.
//!
//! * [`unsolicited_na_frame`]: for each IPv6 VIP an Ethernet frame to
//!   `33:33:00:00:00:01` from the interface's MAC, IPv6 from the VIP itself
//!   to all nodes (ff02::1) with hop limit 255, ICMPv6 type 136 with the
//!   Override flag (neighbours replace the MAC they cached for the VIP), the
//!   Router flag when the interface forwards IPv6 (Keepalived's
//!   `get_ipv6_forwarding`), the VIP as target and a target link-layer
//!   address option with the MAC.
//! * [`solicitation_frame`]: a neighbour solicitation from the primary
//!   address for an IPv6 unicast peer, sent when an instance starts, so that
//!   the peer's kernel learns our MAC from its source link-layer option (the
//!   analogue of the ARP requests of [`super::garp::arp_request_frame`]).
//!
//! The frames are written by `rvs_dataplane::wire::nd` (the dataplane's
//! own neighbour discovery builders); they go out through the same AF_PACKET
//! socket as gratuitous ARP ([`super::garp::GarpSocket`]) on the same
//! schedule ([`super::garp::GarpSchedule`]: `garp_master_repeat`,
//! `garp_master_delay`, `garp_master_refresh`, `garp_lower_prio_*`), which is
//! what Keepalived does for its unsolicited NAs.

use std::net::Ipv6Addr;

use rvs_dataplane::wire::nd::{self, na_flag};
use rvs_dataplane::wire::{ipv6, MacAddr};

use super::garp::GarpSocket;

/// Length of the frames built here (Ethernet 14 + IPv6 40 + NS/NA 24 + option 8).
pub const FRAME_LEN: usize = 86;

/// The unsolicited advertisement of `vip` at `mac` (Router flag set when
/// `router`).
pub fn unsolicited_na_frame(mac: [u8; 6], vip: Ipv6Addr, router: bool) -> Vec<u8> {
    let mut buf = vec![0u8; nd::MAX_FRAME_LEN];
    let flags = na_flag::OVERRIDE | if router { na_flag::ROUTER } else { 0 };
    let dst = ipv6::ALL_NODES;
    match nd::fill_na(&mut buf, MacAddr(mac), ipv6::multicast_mac(dst), None, vip, dst, vip, flags) {
        Ok(n) => buf.truncate(n),
        // The buffer is MAX_FRAME_LEN long: never short.
        Err(_) => buf.clear(),
    }
    buf
}

/// A neighbour solicitation from `src` at `mac` for `target`, to the
/// solicited-node group of `target`, with a source link-layer address option.
pub fn solicitation_frame(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let mut buf = vec![0u8; nd::MAX_FRAME_LEN];
    match nd::fill_ns(&mut buf, MacAddr(mac), None, src, target) {
        Ok(n) => buf.truncate(n),
        Err(_) => buf.clear(),
    }
    buf
}

/// Whether `ifname` forwards IPv6 (`/proc/sys/net/ipv6/conf/IF/forwarding`),
/// which sets the Router flag of the advertisements.
pub fn ipv6_forwarding(ifname: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/forwarding")).is_ok_and(|s| s.trim() == "1")
}

/// Sends `count` unsolicited advertisements for each of `vips` through `sock`.
pub fn send_unsolicited(sock: &GarpSocket, vips: &[Ipv6Addr], count: u32, router: bool) -> std::io::Result<()> {
    for _ in 0..count {
        for vip in vips {
            sock.send_frame(&unsolicited_na_frame(sock.mac(), *vip, router))?;
        }
    }
    Ok(())
}

/// Sends a solicitation from `src` for each of `targets` through `sock`.
pub fn solicit(sock: &GarpSocket, src: Ipv6Addr, targets: &[Ipv6Addr]) -> std::io::Result<()> {
    for target in targets {
        sock.send_frame(&solicitation_frame(sock.mac(), src, *target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes from scapy (`control/tests/fixtures/vrrp6_scapy.py`, which
    /// prints them): `Ether(src=02:00:00:00:00:01, dst=33:33:00:00:00:01) /
    /// IPv6(src=2001:db8::100, dst=ff02::1, hlim=255) /
    /// ICMPv6ND_NA(R, S=0, O=1, tgt=2001:db8::100) /
    /// ICMPv6NDOptDstLLAddr(02:00:00:00:00:01)`, R clear then set.
    const NA_SCAPY: &str = "33330000000102000000000186dd6000000000203aff20010db8000000000000000000000100\
                            ff0200000000000000000000000000018800f72c2000000020010db80000000000000000000001000201020000000001";
    const NA_ROUTER_SCAPY: &str = "33330000000102000000000186dd6000000000203aff20010db8000000000000000000000100\
                                   ff0200000000000000000000000000018800772ca000000020010db80000000000000000000001000201020000000001";
    /// scapy: `Ether(src=02:00:00:00:00:01, dst=33:33:ff:00:00:02) /
    /// IPv6(src=fd00:77::1, dst=ff02::1:ff00:2, hlim=255) /
    /// ICMPv6ND_NS(tgt=fd00:77::2) / ICMPv6NDOptSrcLLAddr(02:00:00:00:00:01)`.
    const NS_SCAPY: &str = "3333ff00000202000000000186dd6000000000203afffd000077000000000000000000000001\
                            ff0200000000000000000001ff00000287007ca900000000fd0000770000000000000000000000020101020000000001";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).filter_map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn unsolicited_na_matches_scapy() {
        let vip: Ipv6Addr = "2001:db8::100".parse().expect("address");
        let f = unsolicited_na_frame(MAC, vip, false);
        assert_eq!(f.len(), FRAME_LEN);
        assert_eq!(f, hex(NA_SCAPY));
        assert_eq!(unsolicited_na_frame(MAC, vip, true), hex(NA_ROUTER_SCAPY));
    }

    #[test]
    fn solicitation_matches_scapy() {
        let src: Ipv6Addr = "fd00:77::1".parse().expect("address");
        let target: Ipv6Addr = "fd00:77::2".parse().expect("address");
        assert_eq!(solicitation_frame(MAC, src, target), hex(NS_SCAPY));
    }
}
