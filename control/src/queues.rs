//! How many rx/tx queue pairs a port's DPDK device brings, when its devargs fix it.
//!
//! rvsd sets up one queue per worker on every port and each worker polls its
//! own queue. Most devices take the queue count rvsd asks for, but some vdevs
//! fix it in their arguments: an af_packet port with `qpairs=2` spreads the
//! packets over two sockets (kernel fanout), and with one worker the second
//! queue would never be read; with more workers than queue pairs the port does
//! not start. [`fixed_queue_count`] finds those arguments so the config can be
//! refused before anything starts.

/// Vdev drivers whose queue count is fixed by a devarg: `(driver prefix, argument, default)`.
const FIXED_QUEUE_ARGS: &[(&str, &str, u16)] = &[
    // DPDK's af_packet PMD: one socket per queue pair, default 1.
    ("net_af_packet", "qpairs", 1),
    // DPDK's AF_XDP PMD: queues of the kernel interface it binds, default 1.
    ("net_af_xdp", "queue_count", 1),
];

/// A device's fixed queue count: the argument that sets it (`"qpairs"`) and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedQueues {
    /// The devarg (`qpairs`, `queue_count`).
    pub arg: &'static str,
    /// The number of queue pairs it gives (its default when absent).
    pub count: u16,
}

/// The queue count fixed by `device`'s arguments (`net_af_packet0,iface=dp0,qpairs=2`),
/// `Ok(None)` for devices that take any count (PCI, memif, ring, tap), or a
/// message when the argument is not a number of at least 1.
pub fn fixed_queue_count(device: &str) -> Result<Option<FixedQueues>, String> {
    let mut parts = device.split(',');
    let driver = parts.next().unwrap_or_default().trim();
    let Some(&(_, arg, default)) = FIXED_QUEUE_ARGS.iter().find(|(prefix, _, _)| driver.starts_with(prefix)) else {
        return Ok(None);
    };
    let mut count = default;
    for part in parts {
        if let Some(value) = part.trim().strip_prefix(arg).and_then(|rest| rest.strip_prefix('=')) {
            count = value
                .parse::<u16>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("`{arg}={value}` is not a queue count; use a number of at least 1"))?;
        }
    }
    Ok(Some(FixedQueues { arg, count }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devargs_that_fix_the_queue_count() {
        let fixed = |arg, count| Ok(Some(FixedQueues { arg, count }));
        let cases: &[(&str, Result<Option<FixedQueues>, String>)] = &[
            ("net_af_packet0,iface=dp0", fixed("qpairs", 1)),
            ("net_af_packet0,iface=dp0,qpairs=2", fixed("qpairs", 2)),
            ("net_af_packet1, qpairs=4 ,iface=eth1", fixed("qpairs", 4)),
            ("net_af_xdp0,iface=eth0,queue_count=3", fixed("queue_count", 3)),
            ("net_af_xdp0,iface=eth0", fixed("queue_count", 1)),
            ("net_memif0,role=server,socket=/run/m.sock", Ok(None)),
            ("net_tap0,iface=t0", Ok(None)),
            ("net_ring0", Ok(None)),
            ("0000:03:00.0", Ok(None)),
        ];
        for (device, want) in cases {
            assert_eq!(&fixed_queue_count(device), want, "{device}");
        }
        for bad in ["net_af_packet0,iface=dp0,qpairs=0", "net_af_packet0,qpairs=two", "net_af_packet0,qpairs="] {
            let err = fixed_queue_count(bad).expect_err(bad);
            assert!(err.contains("qpairs="), "{err}");
        }
    }
}
