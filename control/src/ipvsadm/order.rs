//! The order ipvsadm lists services and real servers in.
//!
//! ipvsadm asks the kernel for its lists, then (unless `--nosort`) sorts them
//! with glibc's `qsort` and libipvs's comparators:
//!
//! * `ipvs_cmp_services`: fwmark, address family, protocol number, then
//!   `ntohl(a) - ntohl(b)` and `ntohs(a) - ntohs(b)` in a signed `int`;
//! * `ipvs_cmp_dests`: `ntohl(a) - ntohl(b)`, then the ports likewise (an
//!   IPv6 address word by word).
//!
//! The address difference wraps for addresses 2^31 or more apart, so
//! 192.168.0.1 sorts before 10.0.0.1, and the comparison is not even an
//! order (10.x < 100.x < 192.x < 10.x): the result depends on the input
//! order and on the sort algorithm. Both are reproduced here:
//!
//! * the input is the kernel's order: real servers newest first (IPVS adds
//!   each one at the head of the service's list, `list_add_rcu`), services
//!   bucket by bucket of IPVS's 256-entry service hash
//!   (`ip_vs_svc_hashkey`, taking its per-namespace term as 0), newest first
//!   within a bucket (`hlist_add_head_rcu`); `--nosort` prints that order;
//! * the sort is glibc 2.36's `qsort` (Debian 12, ipvsadm 1.31's platform): a
//!   top-down merge sort that splits `n` into `n/2` and `n - n/2` and takes
//!   from the left run while `cmp <= 0`.
//!
//! rvs's config lists services and real servers in the order they were
//! added (by rvsadm, the API or keepalived.conf's order), so the kernel's
//! order is derived from it.

use std::net::IpAddr;

use rvs_dataplane::sched::addr_fold;

use crate::config::{RealConfig, ServiceConfig};

/// IPVS's service hash size (`IP_VS_SVC_TAB_BITS` = 8).
const SVC_TAB_BITS: u32 = 8;

/// `ip_vs_svc_hashkey`, with the namespace term as 0 (an IPv6 address
/// folded to one word by xor, as the kernel does).
fn svc_bucket(svc: &ServiceConfig) -> u32 {
    let port = u32::from(svc.port);
    (u32::from(svc.protocol.ip_proto()) ^ addr_fold(svc.vip) ^ (port >> SVC_TAB_BITS) ^ port) & ((1 << SVC_TAB_BITS) - 1)
}

/// `AF_INET` and `AF_INET6`, which libipvs compares by their values.
fn address_family(addr: IpAddr) -> i32 {
    match addr {
        IpAddr::V4(_) => 2,
        IpAddr::V6(_) => 10,
    }
}

/// libipvs's address comparison: the families, then `ntohl(a) - ntohl(b)`
/// for IPv4, word by word for IPv6.
fn cmp_addrs(a: IpAddr, b: IpAddr) -> i32 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => wrapping_diff(u32::from(a), u32::from(b)),
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let words = |x: std::net::Ipv6Addr| {
                let o = x.octets();
                [0, 4, 8, 12].map(|i| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
            };
            words(a).iter().zip(words(b)).map(|(x, y)| wrapping_diff(*x, y)).find(|&r| r != 0).unwrap_or(0)
        }
        _ => address_family(a) - address_family(b),
    }
}

/// `ntohl(a) - ntohl(b)` as C computes it in an `int`.
fn wrapping_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// libipvs's `ipvs_cmp_services` (no fwmark services in rvs): family,
/// protocol, address, port.
fn cmp_services(a: &ServiceConfig, b: &ServiceConfig) -> i32 {
    let r = address_family(a.vip) - address_family(b.vip);
    if r != 0 {
        return r;
    }
    let r = i32::from(a.protocol.ip_proto()) - i32::from(b.protocol.ip_proto());
    if r != 0 {
        return r;
    }
    let r = cmp_addrs(a.vip, b.vip);
    if r != 0 {
        return r;
    }
    i32::from(a.port) - i32::from(b.port)
}

/// libipvs's `ipvs_cmp_dests`.
fn cmp_dests(a: (IpAddr, u16), b: (IpAddr, u16)) -> i32 {
    let r = cmp_addrs(a.0, b.0);
    if r != 0 {
        return r;
    }
    i32::from(a.1) - i32::from(b.1)
}

/// glibc 2.36's `msort_with_tmp`: top-down merge sort, left run first on ties.
pub fn glibc_msort<T: Copy>(items: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = items.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    glibc_msort(&mut items[..n1], cmp);
    glibc_msort(&mut items[n1..], cmp);
    let (left, right) = (items[..n1].to_vec(), items[n1..].to_vec());
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < left.len() && j < right.len() {
        if cmp(&left[i], &right[j]) <= 0 {
            items[k] = left[i];
            i += 1;
        } else {
            items[k] = right[j];
            j += 1;
        }
        k += 1;
    }
    for &x in left[i..].iter().chain(&right[j..]) {
        items[k] = x;
        k += 1;
    }
}

/// Services in the kernel's list order (what `--nosort` prints).
pub fn kernel_services(services: &[ServiceConfig]) -> Vec<&ServiceConfig> {
    let mut list: Vec<(usize, &ServiceConfig)> = services.iter().enumerate().collect();
    // Buckets in order, the newest (last added) first within each.
    list.sort_by(|(ia, a), (ib, b)| svc_bucket(a).cmp(&svc_bucket(b)).then(ib.cmp(ia)));
    list.into_iter().map(|(_, s)| s).collect()
}

/// Real servers in the kernel's list order: newest first.
pub fn kernel_reals(svc: &ServiceConfig) -> Vec<&RealConfig> {
    svc.reals.iter().rev().collect()
}

/// Services as ipvsadm lists them: sorted unless `nosort`.
pub fn services(services: &[ServiceConfig], nosort: bool) -> Vec<&ServiceConfig> {
    let mut list = kernel_services(services);
    if !nosort {
        glibc_msort(&mut list, &|a, b| cmp_services(a, b));
    }
    list
}

/// Real servers of `svc` as ipvsadm lists them: sorted unless `nosort`.
pub fn reals(svc: &ServiceConfig, nosort: bool) -> Vec<&RealConfig> {
    let mut list = kernel_reals(svc);
    if !nosort {
        glibc_msort(&mut list, &|a, b| cmp_dests((a.address, a.port_for(svc)), (b.address, b.port_for(svc))));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msort_splits_and_merges_like_glibc() {
        // With a consistent comparison it is an ordinary stable sort.
        let mut v = [5, 3, 9, 1, 3, 7];
        glibc_msort(&mut v, &|a, b| a - b);
        assert_eq!(v, [1, 3, 3, 5, 7, 9]);
        // The wrapping address comparison is a cycle for 10.x, 100.x, 192.x; by hand:
        // [10, 100, 192] splits into [10] and [100, 192]; [100] vs [192]: 100-192 < 0, so
        // [100, 192]; merge [10] with it: 10 vs 100: < 0, take 10 -> [10, 100, 192].
        let a = |o: u8| u32::from_be_bytes([o, 0, 0, 1]);
        let cmp = |x: &u32, y: &u32| wrapping_diff(*x, *y);
        let mut v = [a(10), a(100), a(192)];
        glibc_msort(&mut v, &cmp);
        assert_eq!(v, [a(10), a(100), a(192)]);
        // [192, 100, 10]: [192] and [100, 10] -> [100] vs [10]: 100-10 > 0 -> [10, 100];
        // 192 vs 10: 0xC0-0x0A = 0xB6000000 wraps negative, take 192 -> [192, 10, 100].
        let mut v = [a(192), a(100), a(10)];
        glibc_msort(&mut v, &cmp);
        assert_eq!(v, [a(192), a(10), a(100)]);
    }
}
