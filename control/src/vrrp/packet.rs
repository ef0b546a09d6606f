//! VRRP advertisement encoding and decoding: version 2 (RFC 3768, IPv4 only)
//! and version 3 (RFC 5798 / RFC 9568) for IPv4 and IPv6.
//!
//! ```text
//! v2:  0       1       2       3            v3:  0       1       2       3
//!     |ver|typ| VRID  | prio  | count |         |ver|typ| VRID  | prio  | count |
//!     |auth t.|adv int|   checksum    |         |rsv| max adv int   |   checksum    |
//!     |        IPv4 address 1 ...     |         |        IPv4 address 1 ...     |
//!     |   auth data (8 bytes)         |
//! ```
//!
//! The v2 checksum covers the VRRP message only; the v3 checksum also covers
//! the IP pseudo-header: for IPv4 (source, destination, zero, protocol 112,
//! length), for IPv6 the RFC 8200 §8.1 one (source, destination, 32-bit
//! length, three zero bytes, next header 112). Over IPv6 every address is
//! 16 bytes; the family of the message is the family of the IP packet that
//! carries it (its source and destination addresses).
//! The advertisement interval is kept in centiseconds for both versions
//! (v2 carries whole seconds on the wire).
//!
//! Decoding never panics: every malformed input is a [`PacketError`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The VRRP IPv4 multicast group (224.0.0.18).
pub const VRRP_MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The VRRP IPv6 multicast group (ff02::12, RFC 5798 §5.1.2.2).
pub const VRRP_MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL (IPv4) or hop limit (IPv6) every advertisement is sent with and
/// must be received with.
pub const VRRP_TTL: u8 = 255;

/// VRRP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// RFC 3768.
    V2,
    /// RFC 5798 / RFC 9568.
    V3,
}

impl Version {
    /// The version number on the wire (2 or 3).
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// v2 authentication (v3 has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Auth type 0.
    None,
    /// Auth type 1: a plain-text password, zero padded to 8 bytes.
    Pass([u8; 8]),
}

impl Auth {
    /// PASS authentication from a password of at most 8 bytes (longer ones
    /// are truncated, as Keepalived does).
    pub fn pass(password: &str) -> Auth {
        let mut data = [0u8; 8];
        for (d, s) in data.iter_mut().zip(password.as_bytes()) {
            *d = *s;
        }
        Auth::Pass(data)
    }
}

/// One VRRP advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id (1..=255).
    pub vrid: u8,
    /// Sender's priority (0 = the master is leaving, 255 = address owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2: seconds × 100).
    pub advert_int_cs: u16,
    /// Authentication (always [`Auth::None`] for v3).
    pub auth: Auth,
    /// The virtual addresses, all of the family of the IP packet carrying
    /// the advert.
    pub addrs: Vec<IpAddr>,
}

/// Why a packet was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than its headers or its declared content.
    #[error("packet too short ({0} bytes)")]
    TooShort(usize),
    /// Not an IPv4 packet, a bad IPv4 header, or source and destination of
    /// different families.
    #[error("bad IP header: {0}")]
    BadIpHeader(&'static str),
    /// IP protocol other than 112.
    #[error("not VRRP (IP protocol {0})")]
    NotVrrp(u8),
    /// Version other than 2 or 3.
    #[error("unsupported VRRP version {0}")]
    BadVersion(u8),
    /// Type other than 1 (advertisement).
    #[error("unsupported VRRP type {0}")]
    BadType(u8),
    /// Checksum mismatch.
    #[error("bad checksum")]
    BadChecksum,
    /// v2 auth type other than 0 (none) and 1 (PASS).
    #[error("unsupported auth type {0}")]
    BadAuthType(u8),
    /// Advertisement interval of zero.
    #[error("advertisement interval is zero")]
    ZeroInterval,
    /// Virtual router id 0.
    #[error("virtual router id 0")]
    ZeroVrid,
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`
/// (each part must have an even length except the last).
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header the v3 checksum covers: IPv4's 12 bytes or IPv6's 40
/// (`None` when `src` and `dst` are not of one family).
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Option<Vec<u8>> {
    let mut ph = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ph.extend_from_slice(&s.octets());
            ph.extend_from_slice(&d.octets());
            ph.extend_from_slice(&[0, IPPROTO_VRRP]);
            ph.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ph.extend_from_slice(&s.octets());
            ph.extend_from_slice(&d.octets());
            ph.extend_from_slice(&(len as u32).to_be_bytes());
            ph.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
        }
        _ => return None,
    }
    Some(ph)
}

/// Length of one address of `family_of`'s family on the wire.
fn addr_len(family_of: IpAddr) -> usize {
    if family_of.is_ipv4() {
        4
    } else {
        16
    }
}

impl Advert {
    /// The addresses encoded when sent from `src`: those of its family, at
    /// most 255.
    fn addrs_for(&self, src: IpAddr) -> impl Iterator<Item = &IpAddr> {
        self.addrs.iter().filter(move |a| a.is_ipv4() == src.is_ipv4()).take(255)
    }

    /// Length of the message encoded for sending from `src`.
    pub fn encoded_len(&self, src: IpAddr) -> usize {
        let count = self.addrs_for(src).count();
        8 + addr_len(src) * count + if self.version == Version::V2 { 8 } else { 0 }
    }

    /// Encodes the VRRP message (the IP payload) with its checksum. `src` and
    /// `dst` are the IP addresses it will be sent with (used by the v3
    /// pseudo-header; both of one family, which is the family of the
    /// addresses encoded: addresses of the other family are left out, as the
    /// engine never mixes them). At most 255 addresses are encoded; the v2
    /// interval is rounded to whole seconds (at least 1), the v3 one capped
    /// at 4095 cs. v2 over IPv6 does not exist: the engine refuses it before
    /// anything is sent (the bytes would be a v2 message with 16-byte
    /// addresses).
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let addrs: Vec<&IpAddr> = self.addrs_for(src).collect();
        let mut buf = Vec::with_capacity(self.encoded_len(src));
        buf.push((self.version.number() << 4) | 1);
        buf.push(self.vrid);
        buf.push(self.priority);
        buf.push(addrs.len() as u8);
        match self.version {
            Version::V2 => {
                let auth_type = match self.auth {
                    Auth::None => 0,
                    Auth::Pass(_) => 1,
                };
                let secs = ((u32::from(self.advert_int_cs) + 50) / 100).clamp(1, 255) as u8;
                buf.push(auth_type);
                buf.push(secs);
            }
            Version::V3 => {
                let cs = self.advert_int_cs.min(0x0fff);
                buf.extend_from_slice(&cs.to_be_bytes());
            }
        }
        buf.extend_from_slice(&[0, 0]);
        for a in addrs {
            match a {
                IpAddr::V4(a) => buf.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => buf.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            match self.auth {
                Auth::None => buf.extend_from_slice(&[0u8; 8]),
                Auth::Pass(p) => buf.extend_from_slice(&p),
            }
        }
        let sum = match (self.version, pseudo_header(src, dst, buf.len())) {
            (Version::V3, Some(ph)) => internet_checksum(&[&ph, &buf]),
            _ => internet_checksum(&[&buf]),
        };
        buf[6..8].copy_from_slice(&sum.to_be_bytes());
        buf
    }

    /// Decodes and validates a VRRP message (the IP payload) received from
    /// `src` to `dst` (of one family: IPv4 or IPv6; v2 exists over IPv4
    /// only, a v2 message over IPv6 is [`PacketError::BadVersion`]). Bytes
    /// after the declared content are ignored but covered by the checksum,
    /// as they are part of the message.
    pub fn decode(buf: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, PacketError> {
        let Some(ph) = pseudo_header(src, dst, buf.len()) else {
            return Err(PacketError::BadIpHeader("source and destination of different families"));
        };
        if buf.len() < 8 {
            return Err(PacketError::TooShort(buf.len()));
        }
        let version = match buf[0] >> 4 {
            2 if src.is_ipv4() => Version::V2,
            3 => Version::V3,
            v => return Err(PacketError::BadVersion(v)),
        };
        if buf[0] & 0x0f != 1 {
            return Err(PacketError::BadType(buf[0] & 0x0f));
        }
        let vrid = buf[1];
        if vrid == 0 {
            return Err(PacketError::ZeroVrid);
        }
        let priority = buf[2];
        let count = usize::from(buf[3]);
        let alen = addr_len(src);
        let need = 8 + alen * count + if version == Version::V2 { 8 } else { 0 };
        if buf.len() < need {
            return Err(PacketError::TooShort(buf.len()));
        }
        let sum = match version {
            Version::V2 => internet_checksum(&[buf]),
            Version::V3 => internet_checksum(&[&ph, buf]),
        };
        if sum != 0 {
            return Err(PacketError::BadChecksum);
        }
        let (advert_int_cs, auth) = match version {
            Version::V2 => {
                let auth = match buf[4] {
                    0 => Auth::None,
                    1 => {
                        let mut p = [0u8; 8];
                        p.copy_from_slice(&buf[8 + 4 * count..8 + 4 * count + 8]);
                        Auth::Pass(p)
                    }
                    t => return Err(PacketError::BadAuthType(t)),
                };
                (u16::from(buf[5]) * 100, auth)
            }
            Version::V3 => (u16::from_be_bytes([buf[4], buf[5]]) & 0x0fff, Auth::None),
        };
        if advert_int_cs == 0 {
            return Err(PacketError::ZeroInterval);
        }
        let addrs = buf[8..8 + alen * count]
            .chunks_exact(alen)
            .filter_map(|c| match alen {
                4 => <[u8; 4]>::try_from(c).ok().map(IpAddr::from),
                _ => <[u8; 16]>::try_from(c).ok().map(IpAddr::from),
            })
            .collect();
        Ok(Advert { version, vrid, priority, advert_int_cs, auth, addrs })
    }
}

/// The parts of a received IP packet that VRRP checks: for IPv4 parsed from
/// the header a raw socket returns ([`parse_ipv4`]); for IPv6 (whose raw
/// sockets return the payload only) from the `recvmsg` source address and
/// its `IPV6_PKTINFO` / `IPV6_HOPLIMIT` control messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpPacket<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 time to live or IPv6 hop limit (must be 255 for VRRP).
    pub ttl: u8,
    /// IP protocol.
    pub protocol: u8,
    /// The payload (bounded by the total length field).
    pub payload: &'a [u8],
}

/// Parses an IPv4 packet as a raw socket returns it (header included).
/// Fragments are rejected.
pub fn parse_ipv4(buf: &[u8]) -> Result<IpPacket<'_>, PacketError> {
    if buf.len() < 20 {
        return Err(PacketError::TooShort(buf.len()));
    }
    if buf[0] >> 4 != 4 {
        return Err(PacketError::BadIpHeader("not IPv4"));
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(PacketError::BadIpHeader("header length below 20"));
    }
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    // Some kernels hand raw sockets the total length as received; accept the
    // buffer length when the field is larger than what we got.
    if total < ihl || buf.len() < ihl {
        return Err(PacketError::BadIpHeader("total length below header length"));
    }
    let end = total.min(buf.len());
    let frag = u16::from_be_bytes([buf[6], buf[7]]);
    if frag & 0x3fff != 0 {
        return Err(PacketError::BadIpHeader("fragment"));
    }
    Ok(IpPacket {
        src: IpAddr::V4(Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15])),
        dst: IpAddr::V4(Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19])),
        ttl: buf[8],
        protocol: buf[9],
        payload: &buf[ihl..end],
    })
}

/// Parses a raw-socket IPv4 packet and decodes the VRRP advertisement in it,
/// checking the protocol. The TTL is returned for the caller to check.
pub fn decode_ipv4(buf: &[u8]) -> Result<(IpPacket<'_>, Advert), PacketError> {
    decode_ip(parse_ipv4(buf)?)
}

/// Decodes the VRRP advertisement in a received packet of either family,
/// checking the protocol. The TTL / hop limit is left for the caller to check.
pub fn decode_ip(ip: IpPacket<'_>) -> Result<(IpPacket<'_>, Advert), PacketError> {
    if ip.protocol != IPPROTO_VRRP {
        return Err(PacketError::NotVrrp(ip.protocol));
    }
    let advert = Advert::decode(ip.payload, ip.src, ip.dst)?;
    Ok((ip, advert))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
    const MCAST: IpAddr = IpAddr::V4(VRRP_MCAST_V4);

    #[test]
    fn checksum_rfc1071_example() {
        // RFC 1071 §3 example: 0001 f203 f4f5 f6f7 sums to ddf2, complement 220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&[&data]), 0x220d);
        // Odd length pads with zero.
        assert_eq!(internet_checksum(&[&[0x01]]), !0x0100);
    }

    #[test]
    fn v2_roundtrip() {
        let a = Advert {
            version: Version::V2,
            vrid: 7,
            priority: 100,
            advert_int_cs: 300,
            auth: Auth::pass("secret"),
            addrs: vec![Ipv4Addr::new(10, 0, 0, 1).into(), Ipv4Addr::new(10, 0, 0, 2).into()],
        };
        let buf = a.encode(SRC, MCAST);
        assert_eq!(buf.len(), a.encoded_len(SRC));
        assert_eq!(Advert::decode(&buf, SRC, MCAST), Ok(a));
    }

    #[test]
    fn v3_checksum_depends_on_addresses() {
        let a = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 255,
            advert_int_cs: 10,
            auth: Auth::None,
            addrs: vec![Ipv4Addr::new(10, 0, 0, 1).into()],
        };
        let buf = a.encode(SRC, MCAST);
        assert_eq!(Advert::decode(&buf, SRC, MCAST), Ok(a));
        assert_eq!(Advert::decode(&buf, Ipv4Addr::new(192, 168, 1, 2).into(), MCAST), Err(PacketError::BadChecksum));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).filter_map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
    }

    fn v6(s: &str) -> IpAddr {
        s.parse().expect("IPv6 address")
    }

    /// VRRPv3 messages over IPv6 built by scapy (`VRRPv3` under `IPv6`, its
    /// checksum over the IPv6 pseudo-header), printed by
    /// `control/tests/fixtures/vrrp6_scapy.py`.
    const V6_MCAST: &str = "3133c8020064aac320010db800000000000000000000010020010db8000000000000000000000101";
    const V6_UNICAST_PRIO0: &str = "310700010fffc2f3fd000077000000000000000000000100";

    #[test]
    fn v3_over_ipv6_matches_scapy() {
        let a = Advert {
            version: Version::V3,
            vrid: 51,
            priority: 200,
            advert_int_cs: 100,
            auth: Auth::None,
            addrs: vec![v6("2001:db8::100"), v6("2001:db8::101")],
        };
        let (src, dst) = (v6("fe80::1"), IpAddr::V6(VRRP_MCAST_V6));
        let wire = a.encode(src, dst);
        assert_eq!(wire, hex(V6_MCAST));
        assert_eq!(wire.len(), a.encoded_len(src));
        assert_eq!(Advert::decode(&wire, src, dst), Ok(a));
        let b =
            Advert { version: Version::V3, vrid: 7, priority: 0, advert_int_cs: 4095, auth: Auth::None, addrs: vec![v6("fd00:77::100")] };
        let (src, dst) = (v6("fe80::2"), v6("fe80::1"));
        assert_eq!(b.encode(src, dst), hex(V6_UNICAST_PRIO0));
        assert_eq!(Advert::decode(&hex(V6_UNICAST_PRIO0), src, dst), Ok(b));
    }

    #[test]
    fn ipv6_checksum_covers_the_pseudo_header() {
        let wire = hex(V6_MCAST);
        let dst = IpAddr::V6(VRRP_MCAST_V6);
        assert_eq!(Advert::decode(&wire, v6("fe80::2"), dst), Err(PacketError::BadChecksum));
        assert_eq!(Advert::decode(&wire, v6("fe80::1"), v6("ff02::1")), Err(PacketError::BadChecksum));
        let mut bad = wire.clone();
        bad[20] ^= 1;
        assert_eq!(Advert::decode(&bad, v6("fe80::1"), dst), Err(PacketError::BadChecksum));
        // The same bytes read as IPv4 are 4-byte addresses and another checksum.
        assert!(Advert::decode(&wire, SRC, MCAST).is_err());
        // Families must agree.
        assert!(matches!(Advert::decode(&wire, SRC, dst), Err(PacketError::BadIpHeader(_))));
        // Truncated: two 16-byte addresses declared, one present.
        assert_eq!(Advert::decode(&wire[..24], v6("fe80::1"), dst), Err(PacketError::TooShort(24)));
    }

    #[test]
    fn v2_does_not_exist_over_ipv6() {
        let a =
            Advert { version: Version::V2, vrid: 1, priority: 100, advert_int_cs: 100, auth: Auth::None, addrs: vec![v6("2001:db8::1")] };
        let (src, dst) = (v6("fe80::1"), IpAddr::V6(VRRP_MCAST_V6));
        assert_eq!(Advert::decode(&a.encode(src, dst), src, dst), Err(PacketError::BadVersion(2)));
    }

    #[test]
    fn only_addresses_of_the_sender_family_are_encoded() {
        let a = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 100,
            advert_int_cs: 100,
            auth: Auth::None,
            addrs: vec![v6("2001:db8::1"), Ipv4Addr::new(10, 0, 0, 1).into()],
        };
        let (src, dst) = (v6("fe80::1"), IpAddr::V6(VRRP_MCAST_V6));
        let d = Advert::decode(&a.encode(src, dst), src, dst).expect("valid");
        assert_eq!(d.addrs, vec![v6("2001:db8::1")]);
    }
}
