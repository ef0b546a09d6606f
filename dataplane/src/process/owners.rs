//! Worker ownership: which worker owns a connection, the announcements that tell the others, and redirects.

use super::*;

impl<F: Frame> Processor<F> {
    /// Applies a message from another worker.
    pub fn handle_message(&mut self, msg: WorkerMsg, now_ms: u64, out: &mut Output<F>) {
        match msg {
            WorkerMsg::Neighbour { ip, mac, port } => self.learn_neighbour(ip, mac, port, now_ms, true, false, out),
            WorkerMsg::FlowOwner { key, owner } => {
                // A newer connection elsewhere holds this key: ours is stale.
                if let Some((id, _)) = self.conns.lookup(&key, now_ms) {
                    self.counters.inc(Counter::ConnSuperseded);
                    self.remove_conn(id, now_ms, out);
                }
                self.flow_owners.insert(key, owner);
            }
            WorkerMsg::FlowGone { key, owner } => {
                if self.flow_owners.get(&key) == Some(&owner) {
                    self.flow_owners.remove(&key);
                }
            }
            WorkerMsg::Neighbour6 { .. } | WorkerMsg::FlowOwner6 { .. } | WorkerMsg::FlowGone6 { .. } => {
                self.handle_message6(msg, now_ms, out)
            }
        }
    }

    /// Tells the other workers that this one owns `conn`, so a packet of it
    /// that the NIC hands to another worker (NAT replies; client packets after
    /// an af_packet rollover, a redirected persistent SYN, a synced connection)
    /// is redirected here. FULLNAT replies need no announcement: their local
    /// port names the owner.
    pub(super) fn announce(&self, conn: &Conn, out: &mut Output<F>) {
        if self.workers < 2 {
            return;
        }
        let owner = self.worker as u16;
        out.messages.push(WorkerMsg::FlowOwner { key: conn.inbound_key(), owner });
        if conn.forward == ForwardMode::Nat {
            if let Some(key) = conn.reply_key() {
                out.messages.push(WorkerMsg::FlowOwner { key, owner });
            }
        }
    }

    /// The other worker that owns the connection of a packet with `key`, if
    /// any: by local port for FULLNAT replies, else as announced by the owner.
    /// A packet another worker already redirected here is never sent on.
    #[inline]
    pub(super) fn other_owner(&self, key: &FlowKey, redirected: bool) -> Option<usize> {
        if redirected || self.workers < 2 {
            return None;
        }
        self.other_worker_owner(key)
    }

    /// [`Processor::other_owner`] with other workers, for a packet not redirected yet.
    fn other_worker_owner(&self, key: &FlowKey) -> Option<usize> {
        let owner = if self.snapshot.is_local_addr(key.dst) {
            owner_of_port(key.dport, self.workers)
        } else {
            usize::from(*self.flow_owners.get(key)?)
        };
        (owner != self.worker).then_some(owner)
    }
}

/// The worker of `workers` that installs a connection received from the sync
/// master: for FULLNAT the owner of its local port (its replies are steered or
/// redirected by port), else one picked by the client's address and port; a
/// persistence template goes to its client network's template owner.
pub fn install_worker(info: &ConnInfo, workers: usize) -> usize {
    let workers = workers.max(1);
    if info.template {
        return super::persistence::template_owner(info.client.ip(), workers);
    }
    match info.local {
        Some(local) => owner_of_port(local.port(), workers),
        None => (crate::sched::addr_fold(info.client.ip()) ^ u32::from(info.client.port())) as usize % workers,
    }
}
