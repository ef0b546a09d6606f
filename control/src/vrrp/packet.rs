//! VRRP advertisement encoding and decoding: version 2 (RFC 3768) and
//! version 3 (RFC 5798 / RFC 9568) for IPv4.
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
//! the IPv4 pseudo-header (source, destination, zero, protocol 112, length).
//! The advertisement interval is kept in centiseconds for both versions
//! (v2 carries whole seconds on the wire).
//!
//! Decoding never panics: every malformed input is a [`PacketError`].

use std::net::Ipv4Addr;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The VRRP IPv4 multicast group (224.0.0.18).
pub const VRRP_MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The TTL every advertisement is sent with and must be received with.
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
    /// The virtual addresses.
    pub addrs: Vec<Ipv4Addr>,
}

/// Why a packet was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than its headers or its declared content.
    #[error("packet too short ({0} bytes)")]
    TooShort(usize),
    /// Not an IPv4 packet, or a bad IPv4 header.
    #[error("bad IPv4 header: {0}")]
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

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> [u8; 12] {
    let mut ph = [0u8; 12];
    ph[0..4].copy_from_slice(&src.octets());
    ph[4..8].copy_from_slice(&dst.octets());
    ph[9] = IPPROTO_VRRP;
    ph[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    ph
}

impl Advert {
    /// Length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        let count = self.addrs.len().min(255);
        8 + 4 * count + if self.version == Version::V2 { 8 } else { 0 }
    }

    /// Encodes the VRRP message (the IP payload) with its checksum. `src` and
    /// `dst` are the IP addresses it will be sent with (used by the v3
    /// pseudo-header). At most 255 addresses are encoded; the v2 interval is
    /// rounded to whole seconds (at least 1), the v3 one capped at 4095 cs.
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let addrs = &self.addrs[..self.addrs.len().min(255)];
        let mut buf = Vec::with_capacity(self.encoded_len());
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
            buf.extend_from_slice(&a.octets());
        }
        if self.version == Version::V2 {
            match self.auth {
                Auth::None => buf.extend_from_slice(&[0u8; 8]),
                Auth::Pass(p) => buf.extend_from_slice(&p),
            }
        }
        let sum = match self.version {
            Version::V2 => internet_checksum(&[&buf]),
            Version::V3 => internet_checksum(&[&pseudo_header(src, dst, buf.len()), &buf]),
        };
        buf[6..8].copy_from_slice(&sum.to_be_bytes());
        buf
    }

    /// Decodes and validates a VRRP message (the IP payload) received from
    /// `src` to `dst`. Bytes after the declared content are ignored but
    /// covered by the checksum, as they are part of the message.
    pub fn decode(buf: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<Advert, PacketError> {
        if buf.len() < 8 {
            return Err(PacketError::TooShort(buf.len()));
        }
        let version = match buf[0] >> 4 {
            2 => Version::V2,
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
        let need = 8 + 4 * count + if version == Version::V2 { 8 } else { 0 };
        if buf.len() < need {
            return Err(PacketError::TooShort(buf.len()));
        }
        let sum = match version {
            Version::V2 => internet_checksum(&[buf]),
            Version::V3 => internet_checksum(&[&pseudo_header(src, dst, buf.len()), buf]),
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
        let addrs = buf[8..8 + 4 * count].chunks_exact(4).map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3])).collect();
        Ok(Advert { version, vrid, priority, advert_int_cs, auth, addrs })
    }
}

/// The parts of a received IPv4 packet that VRRP checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live (must be 255 for VRRP).
    pub ttl: u8,
    /// IP protocol.
    pub protocol: u8,
    /// The payload (bounded by the total length field).
    pub payload: &'a [u8],
}

/// Parses an IPv4 packet as a raw socket returns it (header included).
/// Fragments are rejected.
pub fn parse_ipv4(buf: &[u8]) -> Result<Ipv4Packet<'_>, PacketError> {
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
    Ok(Ipv4Packet {
        src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
        dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
        ttl: buf[8],
        protocol: buf[9],
        payload: &buf[ihl..end],
    })
}

/// Parses a raw-socket IPv4 packet and decodes the VRRP advertisement in it,
/// checking the protocol. The TTL is returned for the caller to check.
pub fn decode_ipv4(buf: &[u8]) -> Result<(Ipv4Packet<'_>, Advert), PacketError> {
    let ip = parse_ipv4(buf)?;
    if ip.protocol != IPPROTO_VRRP {
        return Err(PacketError::NotVrrp(ip.protocol));
    }
    let advert = Advert::decode(ip.payload, ip.src, ip.dst)?;
    Ok((ip, advert))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

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
            addrs: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
        };
        let buf = a.encode(SRC, VRRP_MCAST_V4);
        assert_eq!(buf.len(), a.encoded_len());
        assert_eq!(Advert::decode(&buf, SRC, VRRP_MCAST_V4), Ok(a));
    }

    #[test]
    fn v3_checksum_depends_on_addresses() {
        let a = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 255,
            advert_int_cs: 10,
            auth: Auth::None,
            addrs: vec![Ipv4Addr::new(10, 0, 0, 1)],
        };
        let buf = a.encode(SRC, VRRP_MCAST_V4);
        assert_eq!(Advert::decode(&buf, SRC, VRRP_MCAST_V4), Ok(a));
        assert_eq!(Advert::decode(&buf, Ipv4Addr::new(192, 168, 1, 2), VRRP_MCAST_V4), Err(PacketError::BadChecksum));
    }
}
