//! Traffic for the appliance itself: ARP (answers and learning), ICMP echo, and what goes to the kernel.

use super::*;

impl<F: Frame> Processor<F> {
    /// Traffic for the appliance itself that the dataplane does not answer:
    /// to the kernel when the port has an exception path, else dropped.
    pub(super) fn local(&self, port: u16) -> Action {
        if self.snapshot.ports.get(usize::from(port)).is_some_and(|p| p.kernel) {
            Action::ToKernel
        } else {
            Action::Drop(Counter::DropLocal)
        }
    }

    pub(super) fn handle_arp(
        &mut self,
        port: u16,
        port_mac: MacAddr,
        data: &mut [u8],
        l2_len: usize,
        now_ms: u64,
        out: &mut Output<F>,
    ) -> Action {
        let Some(Ok(pkt)) = data.get(l2_len..).map(ArpPacket::new_checked) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let (sender_ip, sender_mac, target_ip) = (pkt.sender_ip(), pkt.sender_mac(), pkt.target_ip());
        let for_us = self.snapshot.answers_arp_for(target_ip);
        if !sender_ip.is_unspecified() && sender_mac.is_unicast() {
            self.learn_neighbour(sender_ip, sender_mac, port, now_ms, for_us, true, out);
        }
        match pkt.operation() {
            arp::op::REQUEST if for_us => {
                // The kernel learns its peers (VRRP unicast peers, sync peers,
                // health-checked hosts) from requests for its own addresses,
                // as on any host: it gets a copy; the answer is ours.
                if self.snapshot.is_interface_addr(target_ip) && matches!(self.local(port), Action::ToKernel) {
                    match ControlFrame::untagged_copy_of(data, l2_len, l2_len + arp::LEN) {
                        Some(copy) => out.kernel_control.push((port, copy)),
                        None => self.counters.inc(Counter::DropKernel),
                    }
                }
                let Some(body) = data.get_mut(l2_len..) else {
                    return Action::Drop(Counter::DropMalformed);
                };
                let Ok(mut pkt) = ArpPacket::new_checked(body) else {
                    return Action::Drop(Counter::DropMalformed);
                };
                pkt.set_operation(arp::op::REPLY);
                pkt.set_target_mac(sender_mac);
                pkt.set_target_ip(sender_ip);
                pkt.set_sender_mac(port_mac);
                pkt.set_sender_ip(target_ip);
                set_macs(data, port_mac, sender_mac);
                self.counters.inc(Counter::ArpRequestsIn);
                Action::Reply
            }
            arp::op::REPLY => {
                self.counters.inc(Counter::ArpRepliesIn);
                // The kernel resolves its own neighbours (health checks, sync) from these.
                match self.local(port) {
                    Action::ToKernel => Action::ToKernel,
                    _ => Action::Consumed(Counter::ArpRepliesConsumed),
                }
            }
            _ => Action::Consumed(Counter::ArpIgnored),
        }
    }

    /// Records a neighbour, sends what waited for it, and tells the other workers.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn learn_neighbour(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        port: u16,
        now_ms: u64,
        create: bool,
        broadcast: bool,
        out: &mut Output<F>,
    ) {
        let Some((port_mac, vlan)) = self.snapshot.ports.get(usize::from(port)).map(|p| (p.mac, p.vlan)) else { return };
        let known = self.neigh.lookup(ip, now_ms) == Some(mac);
        let released = self.neigh.learn(ip, mac, port, now_ms, create);
        if let Some((mac, fresh_until_ms)) = self.neigh.fresh(ip) {
            self.hops.learned(ip, mac, fresh_until_ms);
        }
        let learned = self.neigh.lookup(ip, now_ms) == Some(mac);
        for mut f in released {
            if !set_vlan(&mut f, vlan) {
                self.drop(f, Counter::DropNoRoom, out);
                continue;
            }
            set_macs(f.data_mut(), port_mac, mac);
            self.push_tx(port, f, out);
        }
        if broadcast && learned && self.workers > 1 && !known {
            out.messages.push(WorkerMsg::Neighbour { ip, mac, port });
        }
    }

    /// A packet that is not part of a balanced flow: ours, a VIP's, or someone else's.
    pub(super) fn not_balanced(&self, port: u16, dst: Ipv4Addr) -> Action {
        if self.snapshot.is_interface_addr(dst) {
            self.local(port)
        } else if self.snapshot.is_local_addr(dst) {
            Action::Drop(Counter::DropLocal)
        } else if self.snapshot.is_vip(dst) {
            Action::Drop(Counter::DropNoService)
        } else {
            Action::Drop(Counter::DropNotForUs)
        }
    }

    /// Answers ICMP echo requests to our addresses and VIPs in place.
    pub(super) fn handle_icmp(&mut self, port: u16, port_mac: MacAddr, data: &mut [u8], l2_len: usize, dst: Ipv4Addr) -> Action {
        if !(self.snapshot.is_interface_addr(dst) || self.snapshot.is_vip(dst)) {
            return Action::Drop(Counter::DropNotForUs);
        }
        let client_mac = match EthernetFrame::new_checked(&*data) {
            Ok(eth) => eth.src_mac(),
            Err(_) => return Action::Drop(Counter::DropMalformed),
        };
        let Some(ip_bytes) = data.get_mut(l2_len..) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let Ok(mut ip) = Ipv4Packet::new_checked(ip_bytes) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let src = ip.src_addr();
        {
            let Ok(mut msg) = IcmpPacket::new_checked(ip.payload_mut()) else {
                return Action::Drop(Counter::DropMalformed);
            };
            if msg.msg_type() != icmp::msg_type::ECHO_REQUEST || !msg.verify_checksum() {
                // Echo replies and the rest: for the kernel's own pings and tools.
                return if self.snapshot.is_interface_addr(dst) { self.local(port) } else { Action::Drop(Counter::DropLocal) };
            }
            let old = u16::from_be_bytes([icmp::msg_type::ECHO_REQUEST, msg.code()]);
            let new = u16::from_be_bytes([icmp::msg_type::ECHO_REPLY, msg.code()]);
            msg.set_msg_type(icmp::msg_type::ECHO_REPLY);
            let c = crate::wire::checksum::update_u16(msg.checksum(), old, new);
            msg.set_checksum(c);
        }
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(64);
        ip.fill_checksum();
        set_macs(data, port_mac, client_mac);
        self.counters.inc(Counter::IcmpEchoReplies);
        Action::Reply
    }
}
