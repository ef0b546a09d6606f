//! FULLNAT local address and port pools, one per worker (DPVS's `sa_pool`).
//!
//! A FULLNAT connection leaves towards its real server from a local address
//! (LIP) and a local port chosen here. The port range is split between the
//! workers by `port % workers == worker id`, so no two workers ever hand out the
//! same (LIP, port) and the owner of a reply is known from its destination port
//! alone ([`owner_of_port`]). Within a worker, every LIP has a FIFO of free
//! ports: a released port goes to the back, so it is not reused at once (the
//! real server may still hold the old connection in TIME_WAIT). A pool that runs
//! dry refuses the new connection; the caller counts it.
//!
//! The FIFO is kept in two parts, so that a LIP's free ports cost memory only
//! once they have been used: the ports never handed out yet are the rest of
//! the (rotated) share, named by a cursor, and come first; released ports
//! queue behind them. That is the order a queue holding the whole share would
//! give, without its 2 bytes per port up front (about 3 bytes per connection
//! of a worker's table at 4 million connections, more with many LIPs).
//!
//! Each pool starts at a random point of its share (a rotation, per process
//! start): a restarted director, or the backup that takes over after a
//! failover, does not hand out the very ports whose connections the real
//! servers still hold in TIME_WAIT from the previous run (a new SYN landing on
//! one of those is dropped by the real server).

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddrV4;

use crate::conn::ConnAddr;

use hashbrown::HashMap;

/// The worker that owns local port `port` when `workers` workers share the range.
pub fn owner_of_port(port: u16, workers: usize) -> usize {
    usize::from(port) % workers.max(1)
}

/// One worker's share of the local ports of every local address, of one
/// family: IPv4 local addresses by default, IPv6 ones as
/// `LocalPool<SockV6>` ([`crate::conn::SockV6`]).
#[derive(Debug)]
pub struct LocalPool<S: ConnAddr = SocketAddrV4> {
    worker: usize,
    workers: usize,
    range: (u16, u16),
    free: HashMap<S::Ip, LipPorts>,
    next_lip: usize,
    /// This worker's share of the range and where its FIFOs start
    /// ([`share_of`]), computed once.
    share: Share,
}

/// A worker's share of the port range: every `workers`-th port from `first`,
/// `len` of them, its FIFO starting `rotation` ports in (below `len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Share {
    first: usize,
    len: usize,
    rotation: usize,
}

/// One LIP's free ports: the share from index `fresh` on (never handed out;
/// less `reserved`), then `released` in order of release. A reserved port
/// that was released again is in both (free, in the queue; skipped by the
/// cursor).
#[derive(Debug, Default)]
struct LipPorts {
    /// How many ports of the rotated share have been handed out (or skipped).
    fresh: usize,
    /// Ports not reached by `fresh` yet that are taken anyway (reserved for a
    /// connection received from the sync master).
    reserved: hashbrown::HashSet<u16>,
    /// Released ports, first released first.
    released: VecDeque<u16>,
}

impl LocalPool {
    /// The IPv4 pool of worker `worker` of `workers`, over ports `range`
    /// (inclusive), starting at a random point of the share.
    pub fn new(worker: usize, workers: usize, range: (u16, u16)) -> Self {
        Self::of_family(worker, workers, range)
    }

    /// As [`LocalPool::new`], the FIFO starting `start` ports into the share
    /// (modulo its size).
    pub fn starting_at(worker: usize, workers: usize, range: (u16, u16), start: usize) -> Self {
        Self::of_family_starting_at(worker, workers, range, start)
    }
}

impl<S: ConnAddr> LocalPool<S> {
    /// The pool of local addresses of `S`'s family of worker `worker` of
    /// `workers`, over ports `range` (inclusive), starting at a random point
    /// of the share.
    pub fn of_family(worker: usize, workers: usize, range: (u16, u16)) -> Self {
        // The standard library's per-process random hash keys: no RNG
        // dependency for one number per pool.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Self::of_family_starting_at(worker, workers, range, random as usize)
    }

    /// As [`LocalPool::of_family`], the FIFO starting `start` ports into the
    /// share (modulo its size).
    pub fn of_family_starting_at(worker: usize, workers: usize, range: (u16, u16), start: usize) -> Self {
        let workers = workers.max(1);
        let share = share_of(worker, workers, range, start);
        LocalPool { worker, workers, range, free: HashMap::new(), next_lip: 0, share }
    }

    /// The port range this pool was built for.
    pub fn range(&self) -> (u16, u16) {
        self.range
    }

    /// This worker's share of the range: its first port and how many
    /// ports it has (see [`share_of`]).
    fn share(&self) -> (usize, usize) {
        (self.share.first, self.share.len)
    }

    /// The index of `port` in the rotated share; None outside this worker's share.
    fn index_of(&self, port: u16) -> Option<usize> {
        let (first, len) = self.share();
        let p = usize::from(port);
        if len == 0 || p < first || p > usize::from(self.range.1) || owner_of_port(port, self.workers) != self.worker {
            return None;
        }
        let i = (p - first) / self.workers;
        Some((i + len - self.share.rotation) % len)
    }

    /// Takes a free (LIP, port) from one of `lips`, trying them in turn starting
    /// after the one used last. `None` when every LIP's share is exhausted.
    pub fn allocate(&mut self, lips: &[S::Ip]) -> Option<S> {
        let n = lips.len();
        if n == 0 {
            return None;
        }
        // `next_lip` may come from a service with another number of LIPs.
        let mut at = self.next_lip % n;
        for _ in 0..n {
            let lip = *lips.get(at)?;
            at = if at + 1 == n { 0 } else { at + 1 };
            if let Some(port) = self.take(lip) {
                self.next_lip = at;
                return Some(S::from_parts(lip, port));
            }
        }
        None
    }

    /// The next free port of `lip`: a fresh one, else the first released.
    fn take(&mut self, lip: S::Ip) -> Option<u16> {
        let (share, workers) = (self.share, self.workers);
        let ports = self.free.entry(lip).or_default();
        while ports.fresh < share.len {
            let p = port_at(share, workers, ports.fresh);
            ports.fresh += 1;
            if ports.reserved.is_empty() || !ports.reserved.remove(&p) {
                return Some(p);
            }
        }
        ports.released.pop_front()
    }

    /// Returns a (LIP, port) to the pool. Ports outside this worker's share or
    /// range (e.g. after a range change) are ignored.
    pub fn release(&mut self, local: S) {
        let Some(i) = self.index_of(local.port()) else { return };
        if let Some(ports) = self.free.get_mut(&local.ip_addr()) {
            // A port the cursor has not reached is free unless reserved; a
            // reserved one released goes to the back like any other (the
            // cursor still skips it).
            if i < ports.fresh || ports.reserved.contains(&local.port()) {
                ports.released.push_back(local.port());
            }
        }
    }

    /// Marks a (LIP, port) as taken (a connection received from the sync
    /// master, or kept across a range change).
    pub fn reserve(&mut self, local: S) {
        let Some(i) = self.index_of(local.port()) else { return };
        let ports = self.free.entry(local.ip_addr()).or_default();
        ports.released.retain(|&p| p != local.port());
        if i >= ports.fresh {
            ports.reserved.insert(local.port());
        }
    }

    /// Free ports of `lip` in this worker's share (the full share if unused so far).
    pub fn available(&self, lip: S::Ip) -> usize {
        let len = self.share().1;
        self.free.get(&lip).map_or(len, |p| len.saturating_sub(p.fresh).saturating_sub(p.reserved.len()) + p.released.len())
    }
}

/// Worker `worker`'s share of `range` among `workers` (at least 1): its
/// first port and how many ports it has (every `workers`-th port from the
/// first; port 0 is never a local port: a connection without one stores it,
/// `OptAddrV4`), its FIFO starting `start` ports in (modulo its size).
fn share_of(worker: usize, workers: usize, range: (u16, u16), start: usize) -> Share {
    let (lo, hi) = (usize::from(range.0.max(1)), usize::from(range.1));
    let first = lo + (worker + workers - lo % workers) % workers;
    let len = if first > hi { 0 } else { (hi - first) / workers + 1 };
    let rotation = if len == 0 { 0 } else { start % len };
    Share { first, len, rotation }
}

/// The port at index `i` (below the share's length) of the rotated `share`,
/// every `workers`-th.
fn port_at(share: Share, workers: usize, i: usize) -> u16 {
    // Both terms are below `len`: one subtraction wraps the sum.
    let rotated = i + share.rotation;
    let rotated = if rotated >= share.len { rotated - share.len } else { rotated };
    (share.first + rotated * workers) as u16
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LIP1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 200);
    const LIP2: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 201);

    #[test]
    fn workers_get_disjoint_shares() {
        let mut a = LocalPool::new(0, 2, (1000, 1009));
        let mut b = LocalPool::new(1, 2, (1000, 1009));
        let pa: Vec<_> = std::iter::from_fn(|| a.allocate(&[LIP1])).collect();
        let pb: Vec<_> = std::iter::from_fn(|| b.allocate(&[LIP1])).collect();
        assert_eq!(pa.len(), 5);
        assert_eq!(pb.len(), 5);
        assert!(pa.iter().all(|s| s.port() % 2 == 0 && owner_of_port(s.port(), 2) == 0));
        assert!(pb.iter().all(|s| s.port() % 2 == 1 && owner_of_port(s.port(), 2) == 1));
    }

    #[test]
    fn exhaustion_refuses_and_release_refills_at_the_back() {
        let mut p = LocalPool::starting_at(0, 1, (2000, 2002), 0);
        let got: Vec<_> = (0..3).filter_map(|_| p.allocate(&[LIP1])).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(p.allocate(&[LIP1]), None);
        p.release(got[1]);
        assert_eq!(p.allocate(&[LIP1]), Some(got[1]));
        p.release(got[0]);
        p.release(got[2]);
        assert_eq!(p.allocate(&[LIP1]).map(|s| s.port()), Some(2000), "FIFO: first released first reused");
    }

    #[test]
    fn local_addresses_are_used_in_turn_and_spill_over() {
        let mut p = LocalPool::new(0, 1, (3000, 3001));
        let got: Vec<_> = (0..4).filter_map(|_| p.allocate(&[LIP1, LIP2])).collect();
        assert_eq!(got.iter().filter(|s| *s.ip() == LIP1).count(), 2);
        assert_eq!(got.iter().filter(|s| *s.ip() == LIP2).count(), 2);
        assert_eq!(p.allocate(&[LIP1, LIP2]), None);
        assert_eq!(p.allocate(&[]), None);
    }

    #[test]
    fn a_pool_starts_at_a_rotation_of_its_share() {
        let mut p = LocalPool::starting_at(1, 2, (5000, 5009), 7);
        let ports: Vec<u16> = std::iter::from_fn(|| p.allocate(&[LIP1]).map(|s| s.port())).collect();
        // Worker 1's share is 5001, 5003, ..., 5009; 7 mod 5 = 2 places in.
        assert_eq!(ports, vec![5005, 5007, 5009, 5001, 5003]);
        // Pools made by `new` start at random points: a restarted director
        // does not reuse the previous run's first ports (eight pools over a
        // 64k share all starting at the same port: odds of about 2^-112).
        let firsts: std::collections::HashSet<u16> =
            (0..8).filter_map(|_| LocalPool::new(0, 1, (1024, 65535)).allocate(&[LIP1]).map(|s| s.port())).collect();
        assert!(firsts.len() > 1, "{firsts:?}");
    }

    #[test]
    fn foreign_ports_are_not_taken_back() {
        let mut p = LocalPool::new(1, 2, (4000, 4003));
        let s = p.allocate(&[LIP1]).expect("port");
        p.release(SocketAddrV4::new(LIP1, 4000)); // worker 0's port
        p.release(SocketAddrV4::new(LIP1, 9999)); // outside the range
        assert_eq!(p.available(LIP1), 1);
        p.release(s);
        assert_eq!(p.available(LIP1), 2);
        p.reserve(s);
        assert_eq!(p.available(LIP1), 1);
    }

    #[test]
    fn an_ipv6_pool_shares_ports_by_worker_like_the_ipv4_one() {
        use crate::conn::SockV6;
        let lip: std::net::Ipv6Addr = "2001:db8:1::200".parse().expect("v6");
        let mut w1: LocalPool<SockV6> = LocalPool::of_family_starting_at(1, 2, (4000, 4003), 0);
        let a = w1.allocate(&[lip]).expect("a port");
        let b = w1.allocate(&[lip]).expect("a second port");
        assert_eq!((a.ip(), owner_of_port(a.port(), 2), owner_of_port(b.port(), 2)), (&lip, 1, 1));
        assert_eq!(w1.allocate(&[lip]), None, "worker 1 owns 2 of the 4 ports");
        w1.release(a);
        assert_eq!(w1.allocate(&[lip]), Some(a));
    }

    /// The pool as a plain queue of the whole rotated share (the pool's
    /// documented order), to check the two-part FIFO against.
    struct Model {
        queue: VecDeque<u16>,
    }

    impl Model {
        fn new(worker: usize, workers: usize, range: (u16, u16), start: usize) -> Self {
            let mut queue: VecDeque<u16> = (range.0.max(1)..=range.1).filter(|&p| owner_of_port(p, workers) == worker).collect();
            if !queue.is_empty() {
                queue.rotate_left(start % queue.len());
            }
            Model { queue }
        }
    }

    proptest::proptest! {
        /// Local addresses are tried in turn from the one after the last
        /// used, `(next + i) % n` over each call's list (services with
        /// lists of other lengths share the turn), each handing out its own
        /// FIFO until it runs dry.
        #[test]
        fn local_addresses_are_tried_in_turn_over_lists_of_any_length(
            span in 0u16..6,
            calls in proptest::collection::vec(0usize..5, 0..60),
        ) {
            let lips: Vec<Ipv4Addr> = (0..4).map(|i| Ipv4Addr::new(10, 1, 0, 200 + i)).collect();
            let range = (7000, 7000 + span);
            let mut pool = LocalPool::starting_at(0, 1, range, 3);
            let mut models: Vec<Model> = lips.iter().map(|_| Model::new(0, 1, range, 3)).collect();
            let mut next = 0usize;
            for n in calls {
                let mut expected = None;
                for i in 0..n {
                    let at = (next + i) % n;
                    if let Some(port) = models[at].queue.pop_front() {
                        next = (next + i + 1) % n;
                        expected = Some(SocketAddrV4::new(lips[at], port));
                        break;
                    }
                }
                proptest::prop_assert_eq!(pool.allocate(&lips[..n]), expected);
            }
        }

        #[test]
        fn the_two_part_fifo_hands_out_ports_in_the_queues_order(
            worker in 0usize..3,
            lo in 0u16..40,
            span in 0u16..40,
            start in 0usize..100,
            ops in proptest::collection::vec((0u8..3, 0u16..100), 0..200),
        ) {
            let workers = 3;
            let range = (lo, lo + span);
            let mut pool = LocalPool::starting_at(worker, workers, range, start);
            let mut model = Model::new(worker, workers, range, start);
            let mut taken: Vec<u16> = Vec::new();
            for (op, n) in ops {
                match op {
                    0 => {
                        let got = pool.allocate(&[LIP1]).map(|s| s.port());
                        proptest::prop_assert_eq!(got, model.queue.pop_front());
                        taken.extend(got);
                    }
                    1 => {
                        if !taken.is_empty() {
                            let port = taken.swap_remove(usize::from(n) % taken.len());
                            pool.release(SocketAddrV4::new(LIP1, port));
                            model.queue.push_back(port);
                        }
                    }
                    _ => {
                        // A synced connection's port, free or not.
                        let port = range.0.saturating_add(n % (span + 1));
                        pool.reserve(SocketAddrV4::new(LIP1, port));
                        if let Some(at) = model.queue.iter().position(|&p| p == port) {
                            model.queue.remove(at);
                            taken.push(port);
                        }
                    }
                }
                proptest::prop_assert_eq!(pool.available(LIP1), model.queue.len());
            }
        }
    }
}
