//! ICMP errors: those quoting a connection's packet are translated and forwarded; those rvs originates instead of forwarding (time exceeded, fragmentation needed, port unreachable, resets) are rate-limited answers.

use super::*;

impl<F: Frame> Processor<F> {
    /// Answers a packet with DF above the egress MTU with ICMP "fragmentation
    /// needed" (next-hop MTU `mtu`) from `vip` to its sender.
    pub(super) fn frag_needed(&mut self, mut frame: F, l2_len: usize, vip: Ipv4Addr, mtu: u16, now_ms: u64, out: &mut Output<F>) {
        self.counters.inc(Counter::DropTooBig);
        let code_frag_needed = 4;
        match icmp_err::make_error(&mut frame, l2_len, vip, crate::wire::icmp::msg_type::DEST_UNREACHABLE, code_frag_needed, u32::from(mtu))
        {
            Ok(client) => {
                self.counters.inc(Counter::IcmpErrorsSent);
                self.send(frame, NextHop::Routed(client), now_ms, out)
            }
            // Not answerable (an ICMP error itself, RFC 1812): dropped, counted once above.
            Err(_) => out.drop.push(frame),
        }
    }

    /// Counts `reason`, turns the frame into `answer` and sends it; within
    /// the answer rate limit and only where RFC 1812/793 allow an answer.
    pub(super) fn answer(&mut self, mut frame: F, reason: Counter, l2_len: usize, answer: Answer, now_ms: u64, out: &mut Output<F>) {
        self.counters.inc(reason);
        let made = match answer {
            Answer::Icmp { from, msg_type, code } => {
                icmp_err::make_error(&mut frame, l2_len, from, msg_type, code, 0).map(|to| (to, Counter::IcmpErrorsSent))
            }
            Answer::Reset => reset::make_reset(&mut frame, l2_len).map(|to| (to, Counter::TcpResetsSent)),
        };
        let Ok((to, sent)) = made else {
            out.drop.push(frame);
            return;
        };
        if !self.answers.allow(now_ms) {
            self.counters.inc(Counter::AnswersRateLimited);
            out.drop.push(frame);
            return;
        }
        self.counters.inc(sent);
        self.send(frame, NextHop::Routed(to), now_ms, out)
    }

    /// ICMP errors quoting a connection's packet go to the other party, translated.
    pub(super) fn handle_icmp_error(&mut self, port: u16, data: &mut [u8], l2_len: usize, now_ms: u64, redirected: bool) -> Action {
        let Some(ip_bytes) = data.get_mut(l2_len..) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let quoted = match Ipv4Packet::new_checked(&*ip_bytes) {
            Ok(ip) => icmp_err::quoted_flow(ip.payload()),
            Err(_) => return Action::Drop(Counter::DropMalformed),
        };
        let outer_dst = Ipv4Packet::new_checked(&*ip_bytes).map(|ip| ip.dst_addr()).ok();
        let Some(q) = quoted else {
            return match outer_dst {
                Some(d) if self.snapshot.is_interface_addr(d) => self.local(port),
                _ => Action::Drop(Counter::DropLocal),
            };
        };
        // The quoted packet travelled the other way: look up its reverse.
        let key = FlowKey { proto: q.proto, src: q.dst, sport: q.dport, dst: q.src, dport: q.sport };
        let Some((id, dir)) = self.conns.lookup(&key, now_ms) else {
            // It may quote a NAT64 connection's IPv4 packet (from a local address).
            if self.snapshot.is_local_addr(q.src) && !self.conns6.is_empty() {
                if let Some(action) = self.nat64_icmp4(ip_bytes, l2_len, &key, now_ms) {
                    return action;
                }
            }
            if let Some(owner) = self.other_owner(&key, redirected) {
                return Action::Redirect(owner);
            }
            // An error about the kernel's own traffic (health checks, sync) is the kernel's.
            if outer_dst.is_some_and(|d| self.snapshot.is_interface_addr(d)) {
                return self.local(port);
            }
            return Action::Drop(Counter::DropNoConnection);
        };
        let Some(c) = self.conns.get(id).copied() else {
            return Action::Drop(Counter::DropNoConnection);
        };
        if dir == Direction::Reply && matches!(c.forward, ForwardMode::Dr | ForwardMode::Tun) {
            return Action::Drop(Counter::DropNotForUs);
        }
        // Forwarded errors lose a TTL too; one that dies here is not answered (RFC 1812).
        match ttl::decrement(ip_bytes) {
            Ok(()) => {}
            Err(FwdError::TtlExceeded) => return Action::Drop(Counter::DropTtlExceeded),
            Err(_) => return Action::Drop(Counter::DropMalformed),
        }
        let t = match (dir, c.forward) {
            (Direction::Reply, ForwardMode::Nat) => {
                icmp_err::Translation { outer_src: Some(*c.vip.ip()), quoted_dst: Some(c.vip), ..Default::default() }
            }
            (Direction::Reply, ForwardMode::FullNat) => icmp_err::Translation {
                outer_src: Some(*c.vip.ip()),
                outer_dst: Some(*c.client.ip()),
                quoted_src: Some(c.client),
                quoted_dst: Some(c.vip),
                quoted_seq_shift: c.seq_delta.wrapping_neg(),
            },
            // A SYN proxy's connection: the quoted reply's sequence number
            // goes back to the real server's space (it checks it is in flight).
            (Direction::Inbound, ForwardMode::Nat) => icmp_err::Translation {
                outer_dst: Some(*c.real.ip()),
                quoted_src: Some(c.real),
                quoted_seq_shift: if c.proxy.is_open() { c.proxy.delta() } else { 0 },
                ..Default::default()
            },
            (Direction::Inbound, ForwardMode::FullNat) => icmp_err::Translation {
                outer_src: c.local.get().map(|l| *l.ip()),
                outer_dst: Some(*c.real.ip()),
                quoted_src: Some(c.real),
                quoted_dst: c.local.get(),
                quoted_seq_shift: if c.proxy.is_open() { c.proxy.delta() } else { 0 },
            },
            (Direction::Inbound, ForwardMode::Dr) => {
                self.counters.inc(Counter::IcmpErrorsForwarded);
                return Action::Forward(dr::xmit_inbound(&c));
            }
            (Direction::Inbound, ForwardMode::Tun) => {
                self.counters.inc(Counter::IcmpErrorsForwarded);
                return Action::Tunnel { l2_len, real: *c.real.ip(), vip: *c.vip.ip(), cache: HopCache::None };
            }
            (Direction::Reply, ForwardMode::Dr | ForwardMode::Tun) => return Action::Drop(Counter::DropNotForUs),
        };
        if icmp_err::translate(ip_bytes, &t).is_err() {
            return Action::Drop(Counter::DropMalformed);
        }
        self.counters.inc(Counter::IcmpErrorsForwarded);
        Action::Forward(match dir {
            Direction::Inbound => NextHop::Routed(*c.real.ip()),
            Direction::Reply => NextHop::Routed(*c.client.ip()),
        })
    }

    /// The answer to a packet of `conn` that arrived with TTL 0 or 1: time
    /// exceeded, from the VIP for a client's packet (Linux: the packet was
    /// for a local address) and from our address on the real server's
    /// network for a reply (the kernel's forwarding path).
    pub(super) fn time_exceeded(&self, port: u16, l2_len: usize, conn: &Conn, dir: Direction) -> Action {
        let from = match dir {
            Direction::Inbound => Some(*conn.vip.ip()),
            Direction::Reply => self.snapshot.source_addr_for(port, *conn.real.ip()),
        };
        match from {
            Some(from) => Action::Answer {
                reason: Counter::DropTtlExceeded,
                l2_len,
                answer: Answer::Icmp { from, msg_type: icmp::msg_type::TIME_EXCEEDED, code: icmp_err::code::TTL_EXCEEDED },
            },
            None => Action::Drop(Counter::DropTtlExceeded),
        }
    }
}
