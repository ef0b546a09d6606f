//! The socket address types a [`Conn`](super::Conn) stores, one per table
//! family: [`SocketAddrV4`] in the IPv4 table, the compact [`SockV6`] in the
//! IPv6 one; their optional forms for the FULLNAT local address
//! ([`OptAddrV4`], [`OptAddrV6`]); and NAT64's IPv4-mapped addresses.
//!
//! A NAT64 connection (an IPv6 client and VIP, an IPv4 real server and
//! FULLNAT local address) lives in the IPv6 table with its IPv4 addresses
//! stored IPv4-mapped (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2): [`SockV6::mapped`]
//! and [`OptAddrV6::mapped`] store them, [`SockV6::to_mapped_v4`] reads them
//! back, and [`FlowKey::to_mapped`](super::FlowKey::to_mapped) turns the
//! flow key of an IPv4 reply into the key it is filed under.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::hash::FlowAddr;

mod sealed {
    /// Only the two socket address types of the tables are connection addresses.
    pub trait Sealed {}
    impl Sealed for std::net::SocketAddrV4 {}
    impl Sealed for super::SockV6 {}
}

/// The socket address type of one table family: [`SocketAddrV4`] (IPv4, the
/// default of [`Conn`](super::Conn) and [`ConnTable`](super::ConnTable)) or
/// [`SockV6`] (IPv6 and NAT64). Sealed.
pub trait ConnAddr: Copy + Eq + fmt::Debug + sealed::Sealed {
    /// The IP address type of the family's flow keys.
    type Ip: FlowAddr;
    /// The optional form of an address, for [`Conn::local`](super::Conn::local):
    /// port 0 is none.
    type Opt: Copy + Eq + fmt::Debug + Default + From<Option<Self>> + Into<Option<Self>>;
    /// The address `ip`, port `port`.
    fn from_parts(ip: Self::Ip, port: u16) -> Self;
    /// Its IP address.
    fn ip_addr(&self) -> Self::Ip;
    /// Its port.
    fn port(&self) -> u16;
    /// Its IP address as the snapshot names it: an IPv4-mapped address (a
    /// NAT64 connection's real server or local address) is the IPv4 one.
    fn ip_any(&self) -> IpAddr;
    /// Its address and port as listings show them ([`ConnAddr::ip_any`]).
    fn sock_any(&self) -> SocketAddr {
        SocketAddr::new(self.ip_any(), self.port())
    }
}

impl ConnAddr for SocketAddrV4 {
    type Ip = Ipv4Addr;
    type Opt = OptAddrV4;

    fn from_parts(ip: Ipv4Addr, port: u16) -> Self {
        SocketAddrV4::new(ip, port)
    }

    fn ip_addr(&self) -> Ipv4Addr {
        *self.ip()
    }

    fn port(&self) -> u16 {
        SocketAddrV4::port(self)
    }

    fn ip_any(&self) -> IpAddr {
        IpAddr::V4(*self.ip())
    }
}

impl ConnAddr for SockV6 {
    type Ip = Ipv6Addr;
    type Opt = OptAddrV6;

    fn from_parts(ip: Ipv6Addr, port: u16) -> Self {
        SockV6::new(ip, port)
    }

    fn ip_addr(&self) -> Ipv6Addr {
        self.ip
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn ip_any(&self) -> IpAddr {
        match self.ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(self.ip),
        }
    }
}

/// An IPv6 address and a port in 18 bytes (alignment 2), where
/// [`SocketAddrV6`] takes 28 (flow label and scope id, which a connection
/// does not need). Its methods mirror [`SocketAddrV4`]'s; it prints as
/// ipvsadm and [`SocketAddrV6`] do: `[2001:db8::1]:80`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SockV6 {
    ip: Ipv6Addr,
    port: u16,
}

impl SockV6 {
    /// The address `ip`, port `port`.
    pub const fn new(ip: Ipv6Addr, port: u16) -> Self {
        SockV6 { ip, port }
    }

    /// The IPv4 address `a` stored IPv4-mapped (`::ffff:a.b.c.d`), as a
    /// NAT64 connection stores its real server.
    pub const fn mapped(a: SocketAddrV4) -> Self {
        SockV6 { ip: a.ip().to_ipv6_mapped(), port: a.port() }
    }

    /// The IP address.
    pub const fn ip(&self) -> &Ipv6Addr {
        &self.ip
    }

    /// The port.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// Changes the IP address.
    pub fn set_ip(&mut self, ip: Ipv6Addr) {
        self.ip = ip;
    }

    /// Changes the port.
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    /// The IPv4 address an IPv4-mapped one stands for (`None` for any other
    /// IPv6 address).
    pub const fn to_mapped_v4(&self) -> Option<SocketAddrV4> {
        match self.ip.to_ipv4_mapped() {
            Some(ip) => Some(SocketAddrV4::new(ip, self.port)),
            None => None,
        }
    }

    /// True when the address is IPv4-mapped (`::ffff:0:0/96`).
    pub const fn is_mapped(&self) -> bool {
        self.ip.to_ipv4_mapped().is_some()
    }
}

impl fmt::Display for SockV6 {
    /// `[2001:db8::1]:80`, as ipvsadm prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]:{}", self.ip, self.port)
    }
}

impl fmt::Debug for SockV6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<SocketAddrV6> for SockV6 {
    /// Drops the flow label and the scope id.
    fn from(a: SocketAddrV6) -> Self {
        SockV6::new(*a.ip(), a.port())
    }
}

impl From<SockV6> for SocketAddrV6 {
    /// With flow label and scope id 0.
    fn from(a: SockV6) -> Self {
        SocketAddrV6::new(a.ip, a.port, 0, 0)
    }
}

impl From<SockV6> for SocketAddr {
    fn from(a: SockV6) -> Self {
        SocketAddr::V6(a.into())
    }
}

/// An optional IPv4 socket address in 6 bytes with alignment 1, where
/// `Option<SocketAddrV4>` takes 8 (a tag and padding): [`Conn::local`](super::Conn::local).
/// Port 0 means none: a FULLNAT local port is never 0 ([`crate::laddr`]
/// does not hand it out, and synced connections with it are refused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptAddrV4 {
    ip: [u8; 4],
    port: [u8; 2],
}

impl OptAddrV4 {
    /// No address.
    pub const NONE: OptAddrV4 = OptAddrV4 { ip: [0; 4], port: [0; 2] };

    /// The address, if any.
    pub fn get(self) -> Option<SocketAddrV4> {
        let port = u16::from_ne_bytes(self.port);
        (port != 0).then(|| SocketAddrV4::new(Ipv4Addr::from(self.ip), port))
    }
}

impl From<Option<SocketAddrV4>> for OptAddrV4 {
    /// An address with port 0 becomes none.
    fn from(a: Option<SocketAddrV4>) -> Self {
        match a {
            Some(a) => OptAddrV4 { ip: a.ip().octets(), port: a.port().to_ne_bytes() },
            None => OptAddrV4::NONE,
        }
    }
}

impl From<OptAddrV4> for Option<SocketAddrV4> {
    /// [`OptAddrV4::get`].
    fn from(a: OptAddrV4) -> Self {
        a.get()
    }
}

/// An optional IPv6 socket address in 18 bytes with alignment 1, where
/// `Option<SockV6>` takes 20: [`Conn::local`](super::Conn::local) of the IPv6
/// table (an IPv6 local address, or NAT64's IPv4 one mapped). Port 0 means
/// none, as in [`OptAddrV4`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptAddrV6 {
    ip: [u8; 16],
    port: [u8; 2],
}

impl OptAddrV6 {
    /// No address.
    pub const NONE: OptAddrV6 = OptAddrV6 { ip: [0; 16], port: [0; 2] };

    /// The address, if any.
    pub fn get(self) -> Option<SockV6> {
        let port = u16::from_ne_bytes(self.port);
        (port != 0).then(|| SockV6::new(Ipv6Addr::from(self.ip), port))
    }

    /// NAT64: an IPv4 local address stored IPv4-mapped (none when `a` is none).
    pub fn mapped(a: Option<SocketAddrV4>) -> Self {
        a.map(SockV6::mapped).into()
    }
}

impl From<Option<SockV6>> for OptAddrV6 {
    /// An address with port 0 becomes none.
    fn from(a: Option<SockV6>) -> Self {
        match a {
            Some(a) => OptAddrV6 { ip: a.ip.octets(), port: a.port.to_ne_bytes() },
            None => OptAddrV6::NONE,
        }
    }
}

impl From<OptAddrV6> for Option<SockV6> {
    /// [`OptAddrV6::get`].
    fn from(a: OptAddrV6) -> Self {
        a.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_addresses_take_what_their_bytes_need() {
        assert_eq!(std::mem::size_of::<OptAddrV4>(), 6);
        assert_eq!(std::mem::size_of::<SockV6>(), 18);
        assert_eq!(std::mem::align_of::<SockV6>(), 2);
        assert_eq!(std::mem::size_of::<OptAddrV6>(), 18);
        assert_eq!(std::mem::align_of::<OptAddrV6>(), 1);
    }

    #[test]
    fn optional_addresses_keep_the_address_and_take_port_0_for_none() {
        assert_eq!(OptAddrV4::from(None).get(), None);
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 200), 5001);
        assert_eq!(OptAddrV4::from(Some(a)).get(), Some(a));
        assert_eq!(Option::<SocketAddrV4>::from(OptAddrV4::from(Some(a))), Some(a));
        let zero = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        assert_eq!(OptAddrV4::from(Some(zero)).get(), None, "port 0 is no local address");

        assert_eq!(OptAddrV6::from(None).get(), None);
        let b = SockV6::new("2001:db8:ffff:1::c8".parse().expect("address"), 5001);
        assert_eq!(OptAddrV6::from(Some(b)).get(), Some(b));
        assert_eq!(Option::<SockV6>::from(OptAddrV6::from(Some(b))), Some(b));
        assert_eq!(OptAddrV6::from(Some(SockV6::new(Ipv6Addr::LOCALHOST, 0))).get(), None, "port 0 is no local address");
        assert_eq!(OptAddrV6::default(), OptAddrV6::NONE);
    }

    #[test]
    fn ipv4_addresses_map_into_ipv6_and_back() {
        let a = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 33), 8080);
        let m = SockV6::mapped(a);
        assert_eq!(*m.ip(), Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0221));
        assert_eq!(m.port(), 8080);
        assert!(m.is_mapped());
        assert_eq!(m.to_mapped_v4(), Some(a));
        assert_eq!(OptAddrV6::mapped(Some(a)).get(), Some(m));
        assert_eq!(OptAddrV6::mapped(None).get(), None);
        // IPv4-compatible (::a.b.c.d, deprecated) and NAT64's well-known prefix are not IPv4-mapped.
        for ip in ["::c000:221", "64:ff9b::c000:221", "2001:db8::ffff:c000:221"] {
            let s = SockV6::new(ip.parse().expect("address"), 80);
            assert!(!s.is_mapped(), "{s}");
            assert_eq!(s.to_mapped_v4(), None);
        }
    }

    #[test]
    fn prints_as_ipvsadm_does() {
        let a = SockV6::new("2001:db8::1".parse().expect("address"), 80);
        assert_eq!(a.to_string(), "[2001:db8::1]:80");
        assert_eq!(format!("{a:?}"), "[2001:db8::1]:80");
        assert_eq!(SocketAddr::from(a).to_string(), "[2001:db8::1]:80", "as std prints it");
        assert_eq!(SockV6::mapped(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1)).to_string(), "[::ffff:10.0.0.1]:1");
        let mut b = SockV6::from(SocketAddrV6::new(*a.ip(), 443, 7, 3));
        assert_eq!((b.ip(), b.port()), (a.ip(), 443), "flow label and scope id are dropped");
        b.set_port(80);
        assert_eq!(b, a);
        b.set_ip(Ipv6Addr::LOCALHOST);
        assert_eq!(SocketAddrV6::from(b), SocketAddrV6::new(Ipv6Addr::LOCALHOST, 80, 0, 0));
    }
}
