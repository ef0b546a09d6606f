//! Fragments: IPv4 ones sent to the egress MTU, IPv4 and IPv6 ones held
//! until their datagram is complete.
//!
//! **Egress** ([`fit_to_mtu`]): a packet above the egress port's MTU is split
//! ([`fragment`]) unless it forbids fragmentation (DF), as the kernel's output
//! path does for IPVS. The caller answers DF packets with ICMP "fragmentation
//! needed" where it can (client → VIP) and counts the rest.
//!
//! **Ingress** ([`Reassembler`], one per worker, no locks, both families in
//! one table): the balancing decision needs the ports, which only the first
//! fragment carries, so the fragments of a datagram are held until all of
//! them are there (IPVS sees datagrams reassembled by netfilter's defrag). An
//! IPv4 datagram is known by (source, destination, protocol,
//! identification), an IPv6 one by (source, destination, identification)
//! (RFC 8200 §4.5: its upper protocol is only in the first fragment). The datagram is then *not*
//! copied into one buffer: its first fragment goes through the normal path
//! (connection lookup or scheduling, the mode's rewrite of addresses, ports,
//! checksum, sequence number) and the other fragments follow it with the same
//! verdict and the first one's rewritten addresses. The packet logic keeps
//! working on single-segment buffers, nothing is linearised, and a datagram of
//! 64 KB costs its fragments' buffers, not a 64 KB one. The cost compared with
//! IPVS: the fragments leave with the client's fragment boundaries (each at
//! most the ingress MTU; egress fragments them again when the egress MTU is
//! smaller; IPv6 is never fragmented by the director, a fragment too big for
//! the egress is answered with Packet Too Big as a whole packet is), and TOA
//! is never inserted into a fragment. NAT64 does not translate fragments
//! (either way they are dropped, counted as `drop_fragment`).
//!
//! Memory is bounded: at most `max_datagrams` incomplete datagrams per worker,
//! `max_fragments` fragments each and `max_held` fragments in all (rvsd gives
//! each worker at most a quarter of its share of the mbuf pool), each datagram
//! dropped `timeout_ms` after its first fragment. What is refused or dropped is counted: table full, too many
//! fragments, bad fragments (overlaps, RFC 5722 for IPv6; a length that is
//! not a multiple of 8, beyond 64 KB, conflicting ends; an IPv6 first fragment
//! without the whole header chain and the upper-layer header, RFC 7112),
//! timed out.
//!
//! **Several workers**: RSS on NICs and af_packet's fanout hash IPv4
//! fragments by addresses only (they have no ports), so all fragments of a
//! datagram reach one worker. IPv6 likewise: NICs hash a packet with a
//! fragment header by its addresses (the "IPv6 fragment" hash type), and the
//! kernel's flow dissector stops at a fragment header, first fragment
//! included, hashing the addresses and the flow label, which a datagram's
//! fragments share. If that worker does not own the connection the
//! first fragment's verdict is "redirect", and every fragment follows it over
//! the redirect ring to the owner, which holds and completes the datagram again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;

use crate::frame::Frame;
use crate::fwd::FwdError;
use crate::wire::ipv6::next_header;
use crate::wire::ipv6_ext::{self, ExtHeaders};
use crate::wire::{EthernetFrame, Ipv4Packet, Ipv6Packet, WireError};

/// Splits the (option-less) IPv4 packet at `l2_len` into fragments of at most
/// `mtu` bytes. The first fragment stays in `frame`; the others are allocated
/// with [`Frame::alloc_sibling`] and appended to `more`, in order. A packet
/// that is itself a fragment is split within its place in the datagram.
pub fn fragment<F: Frame>(frame: &mut F, l2_len: usize, mtu: usize, more: &mut Vec<F>) -> Result<(), FwdError> {
    let (header_len, total, base, last_more) = {
        let ip = Ipv4Packet::new_checked(frame.data().get(l2_len..).ok_or(WireError::Truncated)?)?;
        (ip.header_len(), usize::from(ip.total_len()), usize::from(ip.frag_offset()), ip.more_frags())
    };
    let chunk = (mtu.saturating_sub(header_len) / 8) * 8;
    if chunk == 0 {
        return Err(FwdError::NoRoom);
    }
    if total <= mtu {
        return Ok(());
    }
    let payload_len = total - header_len;
    let mut offset = chunk;
    while offset < payload_len {
        let len = chunk.min(payload_len - offset);
        let mut f = frame.alloc_sibling().ok_or(FwdError::NoRoom)?;
        if !f.append(l2_len + header_len + len) {
            return Err(FwdError::NoRoom);
        }
        let src = frame.data();
        let dst = f.data_mut();
        dst[..l2_len + header_len].copy_from_slice(&src[..l2_len + header_len]);
        let from = l2_len + header_len + offset;
        dst[l2_len + header_len..].copy_from_slice(&src[from..from + len]);
        let mut ip = Ipv4Packet::new_unchecked(&mut dst[l2_len..]);
        ip.set_total_len((header_len + len) as u16);
        ip.set_frag_offset((base + offset) as u16);
        ip.set_more_frags(offset + len < payload_len || last_more);
        ip.fill_checksum();
        more.push(f);
        offset += len;
    }
    let excess = frame.len() - (l2_len + header_len + chunk);
    if !frame.trim(excess) {
        return Err(FwdError::NoRoom);
    }
    let mut ip = Ipv4Packet::new_unchecked(&mut frame.data_mut()[l2_len..]);
    ip.set_total_len((header_len + chunk) as u16);
    ip.set_more_frags(true);
    ip.fill_checksum();
    Ok(())
}

/// Why a packet could not be made to fit the egress MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitError {
    /// Above the MTU with DF set.
    DontFragment,
    /// Not an IPv4 packet, or no buffer for a fragment.
    Unfit,
}

/// Makes the IPv4 packet in `frame` fit `mtu`: nothing when it does, else
/// [`fragment`] (the extra fragments go to `more`). Returns how many extra
/// fragments were made. Frames that are not IPv4 are left alone.
pub fn fit_to_mtu<F: Frame>(frame: &mut F, mtu: usize, more: &mut Vec<F>) -> Result<usize, FitError> {
    let (l2_len, too_big, dont_frag) = {
        let Ok(eth) = EthernetFrame::new_checked(frame.data()) else { return Ok(0) };
        if eth.ethertype() != crate::wire::ethertype::IPV4 {
            return Ok(0);
        }
        let l2_len = eth.header_len();
        let Some(Ok(ip)) = frame.data().get(l2_len..).map(Ipv4Packet::new_checked) else { return Err(FitError::Unfit) };
        (l2_len, usize::from(ip.total_len()) > mtu, ip.dont_frag())
    };
    if !too_big {
        return Ok(0);
    }
    if dont_frag {
        return Err(FitError::DontFragment);
    }
    let before = more.len();
    fragment(frame, l2_len, mtu, more).map_err(|_| FitError::Unfit)?;
    Ok(more.len() - before)
}

/// Bounds of a worker's [`Reassembler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragLimits {
    /// Incomplete datagrams held at once.
    pub max_datagrams: usize,
    /// Fragments per datagram.
    pub max_fragments: usize,
    /// How long an incomplete datagram is held after its first fragment.
    pub timeout_ms: u64,
    /// Fragments held in all (buffers taken from the pool).
    pub max_held: usize,
}

impl Default for FragLimits {
    /// 64 datagrams, 45 fragments each (64 KB at a 1500-byte MTU), 1,024
    /// fragments in all, 2 s (Linux holds 30 s; a resolver retries in 1–5 s).
    fn default() -> Self {
        FragLimits { max_datagrams: 64, max_fragments: 45, timeout_ms: 2000, max_held: 1024 }
    }
}

/// Why fragments were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragDrop {
    /// `max_datagrams` incomplete datagrams or `max_held` fragments are already held.
    TableFull,
    /// The datagram has more than `max_fragments` fragments.
    TooManyFragments,
    /// Overlapping, misaligned, beyond 64 KB, conflicting ends, or an IPv6
    /// first fragment without its whole header chain.
    Bad,
}

/// What [`Reassembler::add`] did with a fragment.
#[derive(Debug)]
pub enum Verdict<F> {
    /// Held until the rest of its datagram arrives.
    Held,
    /// The datagram is complete: its fragments, ordered by offset.
    Complete(Vec<F>),
    /// The datagram (this fragment and those held with it) is dropped.
    Dropped(FragDrop, Vec<F>),
}

/// Which datagram a fragment belongs to, by family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum DatagramKey {
    V4 { src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ident: u16 },
    V6 { src: Ipv6Addr, dst: Ipv6Addr, ident: u32 },
}

#[derive(Debug)]
struct Held<F> {
    /// (offset, payload length, frame), in arrival order.
    fragments: Vec<(usize, usize, F)>,
    /// The datagram's payload length, once its last fragment is seen.
    end: Option<usize>,
    first_ms: u64,
}

/// Where a fragment sits in its datagram.
struct Place {
    key: DatagramKey,
    offset: usize,
    len: usize,
    more: bool,
    /// False for an IPv6 first fragment without the whole header chain and
    /// the upper-layer header (RFC 7112): the datagram is dropped.
    headers_whole: bool,
}

/// The place of the IPv4 or IPv6 fragment `ip_bytes` (by its version).
fn place_of(ip_bytes: &[u8]) -> Result<Place, WireError> {
    match ip_bytes.first().map(|b| b >> 4) {
        Some(6) => place_of6(ip_bytes),
        _ => place_of4(ip_bytes),
    }
}

fn place_of4(ip_bytes: &[u8]) -> Result<Place, WireError> {
    let ip = Ipv4Packet::new_checked(ip_bytes)?;
    let key = DatagramKey::V4 { src: ip.src_addr(), dst: ip.dst_addr(), proto: ip.protocol(), ident: ip.ident() };
    let len = usize::from(ip.total_len()) - ip.header_len();
    Ok(Place { key, offset: usize::from(ip.frag_offset()), len, more: ip.more_frags(), headers_whole: true })
}

/// An IPv6 fragment's place: its fragment header's fields, and the length of
/// its fragmentable part (the payload after the fragment header). A first
/// fragment must hold the whole header chain and the upper-layer header
/// (RFC 7112; 20 bytes of TCP, 8 of UDP, 4 of ICMPv6).
fn place_of6(ip_bytes: &[u8]) -> Result<Place, WireError> {
    let ip = Ipv6Packet::new_checked(ip_bytes)?;
    let payload = ip.payload();
    let header = ExtHeaders::new(ip.next_header(), payload)
        .map_while(Result::ok)
        .find(|h| h.kind == next_header::FRAGMENT)
        .ok_or(WireError::Malformed("ipv6: no fragment header"))?;
    let fields = payload.get(header.offset..header.offset + ipv6_ext::FRAGMENT_LEN).ok_or(WireError::Truncated)?;
    let offset_more = u16::from_be_bytes([fields[2], fields[3]]);
    let ident = u32::from_be_bytes([fields[4], fields[5], fields[6], fields[7]]);
    let (offset, more) = (usize::from(offset_more & 0xfff8), offset_more & 1 != 0);
    let headers_whole = offset != 0
        || ipv6_ext::walk(ip.next_header(), payload).is_ok_and(|chain| {
            let upper_min = match chain.protocol {
                next_header::TCP => crate::wire::tcp::HEADER_LEN,
                next_header::UDP => crate::wire::udp::HEADER_LEN,
                next_header::ICMPV6 => 4,
                _ => 0,
            };
            chain.offset + upper_min <= payload.len()
        });
    let key = DatagramKey::V6 { src: ip.src_addr(), dst: ip.dst_addr(), ident };
    let len = payload.len() - (header.offset + header.len);
    Ok(Place { key, offset, len, more, headers_whole })
}

/// A worker's incomplete datagrams.
#[derive(Debug)]
pub struct Reassembler<F> {
    held: HashMap<DatagramKey, Held<F>>,
    fragments: usize,
    limits: FragLimits,
}

impl<F: Frame> Reassembler<F> {
    /// An empty table with these bounds.
    pub fn new(limits: FragLimits) -> Self {
        Reassembler { held: HashMap::new(), fragments: 0, limits }
    }

    /// New bounds (a new snapshot); what is held stays until complete or timed out.
    pub fn set_limits(&mut self, limits: FragLimits) {
        self.limits = limits;
    }

    /// Incomplete datagrams held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes the fragment in `frame` (its IPv4 or IPv6 header at `l2_len`).
    pub fn add(&mut self, frame: F, l2_len: usize, now_ms: u64) -> Verdict<F> {
        let Ok(p) = frame.data().get(l2_len..).ok_or(WireError::Truncated).and_then(place_of) else {
            return Verdict::Dropped(FragDrop::Bad, vec![frame]);
        };
        let aligned = !p.more || p.len % 8 == 0;
        if !aligned || p.offset + p.len > usize::from(u16::MAX) || p.len == 0 || !p.headers_whole {
            let mut frames = self.forget(&p.key);
            frames.push(frame);
            return Verdict::Dropped(FragDrop::Bad, frames);
        }
        let new_datagram = !self.held.contains_key(&p.key);
        if (new_datagram && self.held.len() >= self.limits.max_datagrams) || self.fragments >= self.limits.max_held {
            let mut frames = self.forget(&p.key);
            frames.push(frame);
            return Verdict::Dropped(FragDrop::TableFull, frames);
        }
        let entry = self.held.entry(p.key).or_insert_with(|| Held { fragments: Vec::new(), end: None, first_ms: now_ms });
        let end = p.offset + p.len;
        let conflicting_end = match (p.more, entry.end) {
            (false, Some(e)) => e != end,
            (true, Some(e)) => end > e,
            (_, None) => false,
        };
        let overlaps = entry.fragments.iter().any(|&(o, l, _)| p.offset < o + l && o < end);
        let beyond_end = !p.more && entry.fragments.iter().any(|&(o, l, _)| o + l > end);
        if conflicting_end || overlaps || beyond_end {
            let mut frames = self.forget(&p.key);
            frames.push(frame);
            return Verdict::Dropped(FragDrop::Bad, frames);
        }
        if entry.fragments.len() >= self.limits.max_fragments {
            let mut frames = self.forget(&p.key);
            frames.push(frame);
            return Verdict::Dropped(FragDrop::TooManyFragments, frames);
        }
        if !p.more {
            entry.end = Some(end);
        }
        entry.fragments.push((p.offset, p.len, frame));
        self.fragments += 1;
        let Some(total) = entry.end else { return Verdict::Held };
        // No overlaps: complete when the lengths add up to the end.
        if entry.fragments.iter().map(|&(_, l, _)| l).sum::<usize>() != total {
            return Verdict::Held;
        }
        let Some(mut done) = self.held.remove(&p.key) else { return Verdict::Held };
        self.fragments -= done.fragments.len();
        done.fragments.sort_unstable_by_key(|&(o, _, _)| o);
        Verdict::Complete(done.fragments.into_iter().map(|(_, _, f)| f).collect())
    }

    /// Drops the datagrams held longer than `timeout_ms`: their fragments go
    /// to `dropped`. Returns how many datagrams timed out.
    pub fn expire(&mut self, now_ms: u64, dropped: &mut Vec<F>) -> usize {
        let timeout = self.limits.timeout_ms;
        let before = self.held.len();
        self.held.retain(|_, h| {
            let keep = now_ms.saturating_sub(h.first_ms) < timeout;
            if !keep {
                dropped.extend(h.fragments.drain(..).map(|(_, _, f)| f));
            }
            keep
        });
        self.fragments = self.held.values().map(|h| h.fragments.len()).sum();
        before - self.held.len()
    }

    fn forget(&mut self, key: &DatagramKey) -> Vec<F> {
        let Some(h) = self.held.remove(key) else { return Vec::new() };
        self.fragments -= h.fragments.len();
        h.fragments.into_iter().map(|(_, _, f)| f).collect()
    }
}

/// What the followers of a datagram take from its first fragment once it
/// is rewritten: source, destination, TTL or hop limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leader {
    /// Its source address.
    pub src: IpAddr,
    /// Its destination address.
    pub dst: IpAddr,
    /// Its TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
}

/// The [`Leader`] a rewritten first fragment (IP header at `l2_len` of
/// `frame`) sets; None when it is no IP packet.
pub fn leader_of(frame: &[u8], l2_len: usize) -> Option<Leader> {
    let ip = frame.get(l2_len..)?;
    match ip.first()? >> 4 {
        6 => Ipv6Packet::new_checked(ip).ok().map(|p| Leader { src: p.src_addr().into(), dst: p.dst_addr().into(), ttl: p.hop_limit() }),
        _ => Ipv4Packet::new_checked(ip).ok().map(|p| Leader { src: p.src_addr().into(), dst: p.dst_addr().into(), ttl: p.ttl() }),
    }
}

/// Gives a follower fragment (IP header at `l2_len`) the source,
/// destination and TTL (hop limit) its first fragment left with, and an IPv4
/// one a fresh header checksum. A follower of another family than its
/// leader is refused.
pub fn follow_first(first: Leader, follower: &mut [u8], l2_len: usize) -> Result<(), WireError> {
    let ip = follower.get_mut(l2_len..).ok_or(WireError::Truncated)?;
    match (first.src, first.dst, ip.first().map(|b| b >> 4)) {
        (IpAddr::V4(src), IpAddr::V4(dst), Some(4)) => {
            let mut ip = Ipv4Packet::new_checked(ip)?;
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.set_ttl(first.ttl);
            ip.fill_checksum();
        }
        (IpAddr::V6(src), IpAddr::V6(dst), Some(6)) => {
            let mut ip = Ipv6Packet::new_checked(ip)?;
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.set_hop_limit(first.ttl);
        }
        _ => return Err(WireError::Malformed("fragment: follower of another family than its first fragment")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;

    const L2: usize = 14;

    /// An Ethernet + IPv4 fragment of UDP (header written byte by byte).
    fn piece(ident: u16, offset: usize, len: usize, more: bool, dont_frag: bool) -> VecFrame {
        let mut f = vec![0u8; L2 + 20 + len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (20 + len) as u16;
        let flags_offset = (u16::from(more) << 13) | (u16::from(dont_frag) << 14) | (offset / 8) as u16;
        let h = &mut f[L2..L2 + 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&ident.to_be_bytes());
        h[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        h[8] = 64;
        h[9] = 17;
        h[12..16].copy_from_slice(&[10, 0, 0, 2]);
        h[16..20].copy_from_slice(&[10, 0, 0, 101]);
        for (i, b) in f[L2 + 20..].iter_mut().enumerate() {
            *b = (offset + i) as u8;
        }
        let mut frame = VecFrame::new(&f);
        Ipv4Packet::new_unchecked(&mut frame.data_mut()[L2..]).fill_checksum();
        frame
    }

    fn limits(max_datagrams: usize, max_fragments: usize, max_held: usize) -> FragLimits {
        FragLimits { max_datagrams, max_fragments, timeout_ms: 1000, max_held }
    }

    fn offsets(frames: &[VecFrame]) -> Vec<u16> {
        frames.iter().map(|f| Ipv4Packet::new_checked(&f.data()[L2..]).expect("ip").frag_offset()).collect()
    }

    fn completed(v: Verdict<VecFrame>) -> Vec<VecFrame> {
        match v {
            Verdict::Complete(frames) => frames,
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn a_datagram_completes_in_any_order() {
        let mut r = Reassembler::new(FragLimits::default());
        assert!(matches!(r.add(piece(1, 16, 16, true, false), L2, 0), Verdict::Held));
        assert!(matches!(r.add(piece(1, 32, 5, false, false), L2, 0), Verdict::Held));
        assert_eq!(r.held(), 1);
        assert_eq!(offsets(&completed(r.add(piece(1, 0, 16, true, false), L2, 0))), vec![0, 16, 32]);
        assert_eq!(r.held(), 0);
    }

    fn dropped(v: Verdict<VecFrame>) -> (FragDrop, usize) {
        match v {
            Verdict::Dropped(why, frames) => (why, frames.len()),
            other => panic!("not dropped: {other:?}"),
        }
    }

    /// `max_datagrams`, `max_fragments` and `max_held` hold for the
    /// fragments `piece(ident, offset, len, more)` makes.
    fn bounds_hold(piece: impl Fn(u16, usize, usize, bool) -> VecFrame) {
        let mut r = Reassembler::new(limits(1, 2, 100));
        assert!(matches!(r.add(piece(1, 0, 8, true), L2, 0), Verdict::Held));
        assert_eq!(dropped(r.add(piece(2, 0, 8, true), L2, 0)), (FragDrop::TableFull, 1), "a second datagram");
        assert!(matches!(r.add(piece(1, 8, 8, true), L2, 0), Verdict::Held));
        assert_eq!(dropped(r.add(piece(1, 16, 8, false), L2, 0)), (FragDrop::TooManyFragments, 3));
        assert_eq!(r.held(), 0);

        let mut r = Reassembler::new(limits(8, 8, 2));
        assert!(matches!(r.add(piece(1, 8, 8, true), L2, 0), Verdict::Held));
        assert!(matches!(r.add(piece(2, 8, 8, true), L2, 0), Verdict::Held));
        assert_eq!(dropped(r.add(piece(3, 8, 8, true), L2, 0)).0, FragDrop::TableFull, "max_held buffers");
    }

    /// Each case's fragments, added in order, end with the whole datagram dropped as bad.
    fn all_dropped_as_bad<const N: usize>(cases: [(&str, Vec<VecFrame>); N]) {
        let mut r = Reassembler::new(FragLimits::default());
        for (what, frames) in cases {
            let n = frames.len();
            let mut last = None;
            for f in frames {
                last = Some(r.add(f, L2, 0));
            }
            assert_eq!(dropped(last.expect("a verdict")), (FragDrop::Bad, n), "{what}");
        }
        assert_eq!(r.held(), 0, "nothing left behind");
    }

    #[test]
    fn bounds_and_bad_fragments_drop_the_datagram() {
        bounds_hold(|ident, offset, len, more| piece(ident, offset, len, more, false));
        all_dropped_as_bad([
            ("overlap", vec![piece(1, 0, 16, true, false), piece(1, 8, 16, true, false)]),
            ("two different ends", vec![piece(2, 16, 8, false, false), piece(2, 16, 16, false, false)]),
            ("past the end", vec![piece(3, 8, 8, false, false), piece(3, 16, 8, true, false)]),
            ("end before held data", vec![piece(4, 16, 8, true, false), piece(4, 0, 8, false, false)]),
            ("not a multiple of 8", vec![piece(5, 0, 12, true, false)]),
            ("beyond 64 KB", vec![piece(6, 65528, 16, false, false)]),
        ]);
    }

    /// Only the datagrams held `timeout_ms` since their first fragment
    /// expire, for the fragments `piece(ident, offset, len, more)` makes.
    fn only_timed_out_datagrams_of_expire(piece: impl Fn(u16, usize, usize, bool) -> VecFrame) {
        let mut r = Reassembler::new(limits(8, 8, 100));
        assert!(matches!(r.add(piece(1, 0, 8, true), L2, 0), Verdict::Held));
        assert!(matches!(r.add(piece(1, 8, 8, true), L2, 500), Verdict::Held));
        assert!(matches!(r.add(piece(2, 0, 8, true), L2, 600), Verdict::Held));
        let mut freed = Vec::new();
        assert_eq!(r.expire(999, &mut freed), 0);
        assert_eq!(r.expire(1000, &mut freed), 1, "held since its first fragment");
        assert_eq!(freed.len(), 2);
        assert_eq!(r.held(), 1);
    }

    #[test]
    fn only_timed_out_datagrams_expire() {
        only_timed_out_datagrams_of_expire(|ident, offset, len, more| piece(ident, offset, len, more, false));
    }

    /// An Ethernet + IPv6 fragment (header and fragment header written byte
    /// by byte) from 2001:db8::2 to 2001:db8::101; `next` is the fragment
    /// header's next header.
    fn piece6(ident: u32, offset: usize, len: usize, more: bool, next: u8) -> VecFrame {
        let mut f = vec![0u8; L2 + 48 + len];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let h = &mut f[L2..L2 + 48];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
        h[6] = 44;
        h[7] = 64;
        h[8..24].copy_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets());
        h[24..40].copy_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101).octets());
        h[40] = next;
        h[42..44].copy_from_slice(&((offset as u16 & 0xfff8) | u16::from(more)).to_be_bytes());
        h[44..48].copy_from_slice(&ident.to_be_bytes());
        for (i, b) in f[L2 + 48..].iter_mut().enumerate() {
            *b = (offset + i) as u8;
        }
        VecFrame::new(&f)
    }

    fn offsets6(frames: &[VecFrame]) -> Vec<u16> {
        frames.iter().map(|f| u16::from_be_bytes([f.data()[L2 + 42], f.data()[L2 + 43]]) & 0xfff8).collect()
    }

    const UDP: u8 = 17;

    #[test]
    fn an_ipv6_datagram_completes_in_any_order_apart_from_ipv4_ones() {
        let mut r = Reassembler::new(FragLimits::default());
        assert!(matches!(r.add(piece6(7, 32, 5, false, UDP), L2, 0), Verdict::Held), "last first");
        assert!(matches!(r.add(piece6(7, 16, 16, true, UDP), L2, 0), Verdict::Held));
        // The same identification in IPv4 and in another IPv6 datagram is another datagram.
        assert!(matches!(r.add(piece(7, 0, 16, true, false), L2, 0), Verdict::Held));
        assert!(matches!(r.add(piece6(8, 0, 16, true, UDP), L2, 0), Verdict::Held));
        assert_eq!(r.held(), 3);
        assert_eq!(offsets6(&completed(r.add(piece6(7, 0, 16, true, UDP), L2, 0))), vec![0, 16, 32]);
        assert_eq!(offsets6(&completed(r.add(piece6(8, 16, 8, false, UDP), L2, 0))), vec![0, 16], "in order");
        assert_eq!(r.held(), 1, "the IPv4 one stays");
    }

    #[test]
    fn ipv6_bounds_overlaps_and_a_short_header_chain_drop_the_datagram() {
        bounds_hold(|ident, offset, len, more| piece6(u32::from(ident), offset, len, more, UDP));
        const DEST_OPTS: u8 = 60;
        // A destination options header (8 bytes, next header UDP) alone in the first fragment.
        let mut opts_only = piece6(7, 0, 8, true, DEST_OPTS);
        opts_only.data_mut()[L2 + 48..L2 + 56].copy_from_slice(&[UDP, 0, 1, 4, 0, 0, 0, 0]);
        all_dropped_as_bad([
            ("overlap (RFC 5722)", vec![piece6(1, 0, 16, true, UDP), piece6(1, 8, 16, true, UDP)]),
            ("overlap of a later fragment", vec![piece6(2, 16, 16, false, UDP), piece6(2, 8, 16, true, UDP)]),
            ("not a multiple of 8", vec![piece6(3, 0, 12, true, UDP)]),
            ("beyond 64 KB", vec![piece6(4, 65528, 16, false, UDP)]),
            ("first fragment without the whole TCP header (RFC 7112)", vec![piece6(5, 16, 8, false, 6), piece6(5, 0, 16, true, 6)]),
            ("first fragment ending in the header chain (RFC 7112)", vec![piece6(7, 8, 16, false, UDP), opts_only]),
        ]);
    }

    #[test]
    fn ipv6_datagrams_time_out_from_their_first_fragment() {
        only_timed_out_datagrams_of_expire(|ident, offset, len, more| piece6(u32::from(ident), offset, len, more, UDP));
    }

    #[test]
    fn ipv6_followers_take_the_first_fragments_addresses_and_hop_limit() {
        let first = piece6(1, 0, 8, true, UDP);
        let mut leader = leader_of(first.data(), L2).expect("an IPv6 leader");
        assert_eq!(leader.ttl, 64);
        leader.src = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101).into();
        leader.dst = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into();
        leader.ttl = 63;
        let mut f = piece6(1, 8, 8, false, UDP);
        follow_first(leader, f.data_mut(), L2).expect("ipv6");
        let ip = Ipv6Packet::new_checked(&f.data()[L2..]).expect("ip");
        assert_eq!((IpAddr::from(ip.src_addr()), IpAddr::from(ip.dst_addr()), ip.hop_limit()), (leader.src, leader.dst, 63));
        assert_eq!(&f.data()[L2 + 40..L2 + 48], &piece6(1, 8, 8, false, UDP).data()[L2 + 40..L2 + 48], "fragment header kept");
        let mut v4 = piece(1, 8, 8, false, false);
        assert!(follow_first(leader, v4.data_mut(), L2).is_err(), "an IPv4 follower of an IPv6 leader");
    }

    #[test]
    fn egress_splits_a_fragment_within_its_place_and_refuses_df() {
        // The last fragment (offset 1480) of a datagram, 1000 bytes, to a 576-byte MTU.
        let mut f = piece(9, 1480, 1000, false, false);
        let mut more = Vec::new();
        assert_eq!(fit_to_mtu(&mut f, 576, &mut more), Ok(1));
        let all: Vec<VecFrame> = std::iter::once(f).chain(more).collect();
        assert_eq!(offsets(&all), vec![1480, 1480 + 552]);
        let flags: Vec<bool> = all.iter().map(|f| Ipv4Packet::new_checked(&f.data()[L2..]).expect("ip").more_frags()).collect();
        assert_eq!(flags, vec![true, false], "the datagram still ends with the last piece");
        for (i, f) in all.iter().enumerate() {
            let ip = Ipv4Packet::new_checked(&f.data()[L2..]).expect("ip");
            assert!(ip.verify_checksum());
            assert_eq!(ip.payload()[0], (1480 + 552 * i) as u8, "payload bytes in place");
        }

        let mut small = piece(9, 0, 100, false, true);
        assert_eq!(fit_to_mtu(&mut small, 576, &mut Vec::new()), Ok(0));
        let mut df = piece(9, 0, 1000, false, true);
        assert_eq!(fit_to_mtu(&mut df, 576, &mut Vec::new()), Err(FitError::DontFragment));
        let mut arp = VecFrame::new(&[0u8; 60]);
        arp.data_mut()[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(fit_to_mtu(&mut arp, 20, &mut Vec::new()), Ok(0), "not IPv4: left alone");
    }

    #[test]
    fn followers_take_the_first_fragments_addresses() {
        let mut f = piece(1, 8, 8, false, false);
        let leader = Leader { src: Ipv4Addr::new(10, 1, 0, 200).into(), dst: Ipv4Addr::new(10, 1, 0, 11).into(), ttl: 63 };
        follow_first(leader, f.data_mut(), L2).expect("ip");
        let ip = Ipv4Packet::new_checked(&f.data()[L2..]).expect("ip");
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.ttl()), (Ipv4Addr::new(10, 1, 0, 200), Ipv4Addr::new(10, 1, 0, 11), 63));
        assert!(ip.verify_checksum());
        let local = Leader { src: Ipv4Addr::LOCALHOST.into(), dst: Ipv4Addr::LOCALHOST.into(), ttl: 1 };
        assert!(follow_first(local, &mut [0u8; 20], L2).is_err());
    }
}
