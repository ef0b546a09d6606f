//! rte_flow rules that steer FULLNAT replies to the worker owning their local port.
//!
//! A reply to a FULLNAT connection is addressed to LIP:lport, and worker `w`
//! of `n` owns the local ports with `lport % n == w`. When `n` is a power of
//! two that is `lport & (n − 1) == w`, which a NIC can match: one rule per
//! (LIP, protocol, worker) sends such packets to queue `w`, as DPVS does. Ports
//! whose driver refuses the rules (af_packet, memif, …) fall back to software
//! redirection between workers.

use std::ffi::CStr;
use std::net::Ipv4Addr;
use std::ptr::NonNull;

use rvs_ffi as ffi;

/// An installed rule; destroyed when dropped.
#[derive(Debug)]
pub struct FlowRule {
    port: u16,
    raw: NonNull<ffi::rte_flow>,
}

// SAFETY: the handle is only passed back to rte_flow_destroy, which may be
// called from any control thread.
unsafe impl Send for FlowRule {}
// SAFETY: no method reads through the handle with &self.
unsafe impl Sync for FlowRule {}

impl Drop for FlowRule {
    fn drop(&mut self) {
        let mut err = ffi::rte_flow_error::default();
        // SAFETY: the rule was created on this port and is destroyed once.
        unsafe {
            ffi::rte_flow_destroy(self.port, self.raw.as_ptr(), &mut err);
        }
    }
}

/// Steers IPv4 packets of `proto` (6 or 17) to `dst` whose destination port
/// satisfies `port & mask == value` to rx queue `queue` of port `port_id`.
/// With `validate_only`, only asks the driver whether it could (Ok(None)).
pub fn steer_dst_port(
    port_id: u16,
    dst: Ipv4Addr,
    proto: u8,
    mask: u16,
    value: u16,
    queue: u16,
    validate_only: bool,
) -> Result<Option<FlowRule>, String> {
    let mut attr = ffi::rte_flow_attr::default();
    attr.set_ingress(1);
    let mut ip_spec = ffi::rte_flow_item_ipv4::default();
    let mut ip_mask = ffi::rte_flow_item_ipv4::default();
    ip_spec.hdr.dst_addr = u32::from(dst).to_be();
    ip_mask.hdr.dst_addr = u32::MAX;
    ip_spec.hdr.next_proto_id = proto;
    ip_mask.hdr.next_proto_id = u8::MAX;
    let mut tcp_spec = ffi::rte_flow_item_tcp::default();
    let mut tcp_mask = ffi::rte_flow_item_tcp::default();
    tcp_spec.hdr.dst_port = value.to_be();
    tcp_mask.hdr.dst_port = mask.to_be();
    let mut udp_spec = ffi::rte_flow_item_udp::default();
    let mut udp_mask = ffi::rte_flow_item_udp::default();
    udp_spec.hdr.dst_port = value.to_be();
    udp_mask.hdr.dst_port = mask.to_be();
    let (l4_type, l4_spec, l4_mask): (ffi::rte_flow_item_type, *const std::ffi::c_void, *const std::ffi::c_void) = if proto == 6 {
        (
            ffi::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_TCP,
            (&tcp_spec as *const ffi::rte_flow_item_tcp).cast(),
            (&tcp_mask as *const ffi::rte_flow_item_tcp).cast(),
        )
    } else {
        (
            ffi::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_UDP,
            (&udp_spec as *const ffi::rte_flow_item_udp).cast(),
            (&udp_mask as *const ffi::rte_flow_item_udp).cast(),
        )
    };
    let item = |type_, spec: *const std::ffi::c_void, mask: *const std::ffi::c_void| ffi::rte_flow_item {
        type_,
        spec,
        last: std::ptr::null(),
        mask,
    };
    let pattern = [
        item(ffi::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_ETH, std::ptr::null(), std::ptr::null()),
        item(
            ffi::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_IPV4,
            (&ip_spec as *const ffi::rte_flow_item_ipv4).cast(),
            (&ip_mask as *const ffi::rte_flow_item_ipv4).cast(),
        ),
        item(l4_type, l4_spec, l4_mask),
        item(ffi::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_END, std::ptr::null(), std::ptr::null()),
    ];
    let queue_conf = ffi::rte_flow_action_queue { index: queue };
    let actions = [
        ffi::rte_flow_action {
            type_: ffi::rte_flow_action_type_RTE_FLOW_ACTION_TYPE_QUEUE,
            conf: (&queue_conf as *const ffi::rte_flow_action_queue).cast(),
        },
        ffi::rte_flow_action { type_: ffi::rte_flow_action_type_RTE_FLOW_ACTION_TYPE_END, conf: std::ptr::null() },
    ];
    let mut err = ffi::rte_flow_error::default();
    let describe = |err: &ffi::rte_flow_error| {
        if err.message.is_null() {
            "the driver does not support this flow rule".to_owned()
        } else {
            // SAFETY: the driver sets message to a static NUL-terminated string.
            unsafe { CStr::from_ptr(err.message) }.to_string_lossy().into_owned()
        }
    };
    // SAFETY: attr, pattern, actions and the specs they point to live until
    // the call returns; the driver copies what it keeps.
    let valid = unsafe { ffi::rte_flow_validate(port_id, &attr, pattern.as_ptr(), actions.as_ptr(), &mut err) };
    if valid != 0 {
        return Err(describe(&err));
    }
    if validate_only {
        return Ok(None);
    }
    // SAFETY: as for validate.
    let raw = unsafe { ffi::rte_flow_create(port_id, &attr, pattern.as_ptr(), actions.as_ptr(), &mut err) };
    match NonNull::new(raw) {
        Some(raw) => Ok(Some(FlowRule { port: port_id, raw })),
        None => Err(describe(&err)),
    }
}
