//! SYN cookies: the initial sequence number of the proxy's SYN-ACK.
//!
//! ```text
//!  31                                  6 5    4 3      0
//! +-------------------------------------+------+--------+
//! |  SipHash-2-4(period key; tuple, ISN, info) high 26  | MSS  | wscale |
//! +-------------------------------------+------+--------+
//! ```
//!
//! The low 6 bits (*info*) carry the index of the client's MSS in
//! [`MSS_TABLE`] (the largest entry not above it) and the client's window
//! scale ([`NO_WSCALE`]: it offered none). The high 26 bits are a keyed hash
//! of the client's and the VIP's address and port, the client's ISN and the
//! info bits, so none of them can be changed without the hash failing.
//!
//! IPv6 cookies are made the same way over the IPv6 4-tuple ([`CookieAddr`]),
//! with their own MSS table ([`MSS_TABLE6`]: each entry 20 bytes less, the
//! IPv6 header's 40 against IPv4's 20 on the same link).
//!
//! The key changes every [`PERIOD_MS`] of the worker clock: period `p`'s key
//! is SipHash-1-3-128 of `p` under the 128-bit master [`Secret`]. A cookie is
//! valid in the period it was made and the next one (64 to 128 s), so a
//! stolen or guessed cookie stops working within two minutes and a client
//! whose ACK straddles a period boundary is still accepted. The master
//! secret is made once per process, so every worker checks every other
//! worker's cookies.

use std::hash::Hasher;
use std::io::Read;
use std::sync::OnceLock;

use siphasher::sip::SipHasher24;
use siphasher::sip128::{Hasher128, SipHasher13};

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::conn::FlowKey;

/// MSS values a cookie can carry (Linux's `msstab`): the client's MSS is
/// rounded down to the largest entry not above it (the first one when it is
/// below them all).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// The IPv6 MSS table: [`MSS_TABLE`]'s entries 20 bytes less (the IPv6
/// header is 20 bytes longer than IPv4's on the same link).
pub const MSS_TABLE6: [u16; 4] = [516, 1280, 1420, 1440];

/// The address family of a cookie's 4-tuple: what is hashed of an address,
/// and which MSS table the cookie's MSS bits index.
pub trait CookieAddr: Copy {
    /// The family's MSS table.
    const MSS_TABLE: [u16; 4];
    /// Feeds the address's bytes to the cookie hash.
    fn hash_into(&self, h: &mut SipHasher24);
}

impl CookieAddr for Ipv4Addr {
    const MSS_TABLE: [u16; 4] = MSS_TABLE;
    fn hash_into(&self, h: &mut SipHasher24) {
        h.write(&self.octets());
    }
}

impl CookieAddr for Ipv6Addr {
    const MSS_TABLE: [u16; 4] = MSS_TABLE6;
    fn hash_into(&self, h: &mut SipHasher24) {
        h.write(&self.octets());
    }
}

/// How long one key is used, in worker-clock milliseconds.
pub const PERIOD_MS: u64 = 64_000;

/// The window scale field's value for "the client offered no window scale".
pub const NO_WSCALE: u8 = 15;

/// The largest window scale (RFC 7323 2.3); larger offers are taken as 14.
pub const MAX_WSCALE: u8 = 14;

/// Bits of a cookie that carry [`CookieInfo`].
const INFO_MASK: u32 = 0x3f;

/// The 128-bit master secret every period's key is derived from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret([u8; 16]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret with these bytes (tests use a fixed one).
    pub const fn new(bytes: [u8; 16]) -> Self {
        Secret(bytes)
    }

    /// 128 fresh random bits from the kernel (`/dev/urandom`). Should the
    /// device be unreadable, std's randomly keyed hasher (seeded by the
    /// kernel at start-up), the time and the process id are mixed instead.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        if read.is_err() {
            use std::hash::BuildHasher;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(now);
                h.write_u32(std::process::id());
                h.write_usize(i);
                chunk.copy_from_slice(&h.finish().to_le_bytes());
            }
        }
        Secret(bytes)
    }

    /// The secret of this process: made by [`Secret::random`] on first use,
    /// the same for every worker afterwards.
    pub fn process() -> Self {
        static PROCESS: OnceLock<Secret> = OnceLock::new();
        *PROCESS.get_or_init(Secret::random)
    }

    /// The key of period `period`.
    fn period_key(&self, period: u64) -> [u8; 16] {
        let mut h = SipHasher13::new_with_key(&self.0);
        h.write_u64(period);
        h.finish128().as_bytes()
    }
}

/// What a valid cookie tells about the client's SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieInfo {
    /// The MSS to use towards the real server (from [`MSS_TABLE`]).
    pub mss: u16,
    /// The client's window scale, if it offered window scaling.
    pub wscale: Option<u8>,
}

/// The period of worker-clock time `now_ms`.
pub fn period(now_ms: u64) -> u64 {
    now_ms / PERIOD_MS
}

/// The index in [`MSS_TABLE`] of the largest MSS not above `client_mss` (0
/// when it is below them all).
pub fn mss_index(client_mss: u16) -> u8 {
    mss_index_in(&MSS_TABLE, client_mss)
}

/// The index in `table` of the largest MSS not above `client_mss` (0 when
/// it is below them all).
pub fn mss_index_in(table: &[u16; 4], client_mss: u16) -> u8 {
    table.iter().rposition(|&m| m <= client_mss).unwrap_or(0) as u8
}

/// The MSS a family's cookie carries for a client's `client_mss`: its
/// table's entry at [`mss_index_in`].
pub fn carried_mss<A: CookieAddr>(client_mss: u16) -> u16 {
    A::MSS_TABLE[usize::from(mss_index_in(&A::MSS_TABLE, client_mss))]
}

/// The info bits of a cookie of family `A`.
fn info_bits<A: CookieAddr>(mss_client: u16, wscale: Option<u8>) -> u32 {
    let ws = wscale.map_or(NO_WSCALE, |w| w.min(MAX_WSCALE));
    u32::from(mss_index_in(&A::MSS_TABLE, mss_client)) << 4 | u32::from(ws)
}

/// The keyed hash of a cookie under period key `period_key`.
fn hash<A: CookieAddr>(period_key: &[u8; 16], key: &FlowKey<A>, client_isn: u32, info: u32) -> u32 {
    let mut h = SipHasher24::new_with_key(period_key);
    key.src.hash_into(&mut h);
    key.dst.hash_into(&mut h);
    h.write_u16(key.sport);
    h.write_u16(key.dport);
    h.write_u32(client_isn);
    h.write_u32(info);
    h.finish() as u32
}

/// The cookie answering a SYN with key `key` (client → VIP), sequence number
/// `client_isn`, MSS option `mss_client` (536 when it had none) and window
/// scale `wscale`, at worker-clock time `now_ms`.
pub fn encode<A: CookieAddr>(secret: &Secret, key: &FlowKey<A>, client_isn: u32, mss_client: u16, wscale: Option<u8>, now_ms: u64) -> u32 {
    Jar::new(*secret).encode(key, client_isn, mss_client, wscale, now_ms)
}

/// Checks `cookie` (an ACK's acknowledgement number minus one) against the
/// ACK's key `key` and `client_isn` (its sequence number minus one) at
/// `now_ms`: what it carries when it was made in this period or the
/// previous one, None otherwise.
pub fn verify<A: CookieAddr>(secret: &Secret, key: &FlowKey<A>, client_isn: u32, cookie: u32, now_ms: u64) -> Option<CookieInfo> {
    Jar::new(*secret).verify(key, client_isn, cookie, now_ms)
}

/// A worker's cookie maker and checker: the master secret and the keys of
/// the last two periods it used, so a key is derived once per period, not
/// once per packet.
#[derive(Clone, Debug)]
pub struct Jar {
    secret: Secret,
    /// `(period, key)`, most recent first; period `u64::MAX` is empty.
    keys: [(u64, [u8; 16]); 2],
}

impl Jar {
    /// A jar for `secret`.
    pub fn new(secret: Secret) -> Self {
        Jar { secret, keys: [(u64::MAX, [0; 16]); 2] }
    }

    /// The key of period `period`, derived or cached.
    fn key(&mut self, period: u64) -> [u8; 16] {
        if let Some(&(_, k)) = self.keys.iter().find(|(p, _)| *p == period) {
            return k;
        }
        let k = self.secret.period_key(period);
        // Keep the newer period of the two in front.
        if period > self.keys[0].0 || self.keys[0].0 == u64::MAX {
            self.keys = [(period, k), self.keys[0]];
        } else {
            self.keys[1] = (period, k);
        }
        k
    }

    /// See [`encode`].
    pub fn encode<A: CookieAddr>(&mut self, key: &FlowKey<A>, client_isn: u32, mss_client: u16, wscale: Option<u8>, now_ms: u64) -> u32 {
        let info = info_bits::<A>(mss_client, wscale);
        let k = self.key(period(now_ms));
        hash(&k, key, client_isn, info) & !INFO_MASK | info
    }

    /// See [`verify`].
    pub fn verify<A: CookieAddr>(&mut self, key: &FlowKey<A>, client_isn: u32, cookie: u32, now_ms: u64) -> Option<CookieInfo> {
        let info = cookie & INFO_MASK;
        let now = period(now_ms);
        let valid = [Some(now), now.checked_sub(1)].into_iter().flatten().any(|p| {
            let k = self.key(p);
            hash(&k, key, client_isn, info) & !INFO_MASK == cookie & !INFO_MASK
        });
        if !valid {
            return None;
        }
        let ws = (info & 0xf) as u8;
        let mss = A::MSS_TABLE[((info >> 4) & 0x3) as usize];
        Some(CookieInfo { mss, wscale: (ws <= MAX_WSCALE).then_some(ws) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: Secret = Secret::new(*b"0123456789abcdef");

    fn key() -> FlowKey {
        FlowKey { proto: 6, src: Ipv4Addr::new(198, 51, 100, 7), dst: Ipv4Addr::new(203, 0, 113, 10), sport: 51000, dport: 443 }
    }

    #[test]
    fn a_cookie_is_valid_in_its_period_and_the_next_only() {
        let t0 = 10 * PERIOD_MS + 5;
        let c = encode(&SECRET, &key(), 0xdead_beef, 1460, Some(7), t0);
        let info = CookieInfo { mss: 1460, wscale: Some(7) };
        assert_eq!(verify(&SECRET, &key(), 0xdead_beef, c, t0), Some(info), "same instant");
        assert_eq!(verify(&SECRET, &key(), 0xdead_beef, c, 11 * PERIOD_MS - 1), Some(info), "end of its period");
        assert_eq!(verify(&SECRET, &key(), 0xdead_beef, c, 11 * PERIOD_MS), Some(info), "the next period: previous accepted");
        assert_eq!(verify(&SECRET, &key(), 0xdead_beef, c, 12 * PERIOD_MS - 1), Some(info), "end of the next period");
        assert_eq!(verify(&SECRET, &key(), 0xdead_beef, c, 12 * PERIOD_MS), None, "two periods old");
        assert_eq!(verify(&SECRET, &key(), 0xdead_beef, c, 9 * PERIOD_MS), None, "a period before it was made");
    }

    #[test]
    fn the_key_rotates_with_the_period() {
        // The same SYN gets a different cookie in every period (the key changes).
        let cookies: std::collections::HashSet<u32> =
            (0..16).map(|p| encode(&SECRET, &key(), 1, 1460, None, p * PERIOD_MS) & !INFO_MASK).collect();
        assert_eq!(cookies.len(), 16);
        assert_ne!(SECRET.period_key(1), SECRET.period_key(2));
    }

    #[test]
    fn a_jar_caches_keys_and_agrees_with_the_pure_functions() {
        let mut jar = Jar::new(SECRET);
        // Periods visited out of order and back: the cache never serves a wrong key.
        for &p in &[5u64, 6, 5, 7, 6, 3, 7, 8] {
            let now = p * PERIOD_MS + 17;
            let c = jar.encode(&key(), 99, 1300, Some(2), now);
            assert_eq!(c, encode(&SECRET, &key(), 99, 1300, Some(2), now), "period {p}");
            assert!(jar.verify(&key(), 99, c, now + PERIOD_MS).is_some(), "period {p}, checked one later");
            assert!(jar.verify(&key(), 99, c, now + 2 * PERIOD_MS).is_none(), "period {p}, checked two later");
        }
    }

    #[test]
    fn tampering_with_the_tuple_isn_info_or_secret_is_refused() {
        let now = 3 * PERIOD_MS;
        let c = encode(&SECRET, &key(), 4242, 1440, Some(9), now);
        assert!(verify(&SECRET, &key(), 4242, c, now).is_some());
        let changed = [
            FlowKey { src: Ipv4Addr::new(198, 51, 100, 8), ..key() },
            FlowKey { dst: Ipv4Addr::new(203, 0, 113, 11), ..key() },
            FlowKey { sport: 51001, ..key() },
            FlowKey { dport: 80, ..key() },
        ];
        for k in changed {
            assert_eq!(verify(&SECRET, &k, 4242, c, now), None, "{k:?}");
        }
        assert_eq!(verify(&SECRET, &key(), 4243, c, now), None, "another ISN");
        // Claiming a larger MSS or another window scale breaks the hash.
        assert_eq!(verify(&SECRET, &key(), 4242, c | 0x30, now), None, "MSS bits changed");
        assert_eq!(verify(&SECRET, &key(), 4242, c ^ 0x01, now), None, "window scale bits changed");
        assert_eq!(verify(&SECRET, &key(), 4242, c ^ 0x8000_0000, now), None, "hash bits changed");
        assert_eq!(verify(&Secret::new([7; 16]), &key(), 4242, c, now), None, "another process's secret");
    }

    #[test]
    fn mss_is_rounded_down_to_the_table() {
        let cases = [
            (0, 536),
            (535, 536),
            (536, 536),
            (1299, 536),
            (1300, 1300),
            (1439, 1300),
            (1440, 1440),
            (1459, 1440),
            (1460, 1460),
            (9000, 1460),
        ];
        for (client, carried) in cases {
            let c = encode(&SECRET, &key(), 1, client, None, 0);
            assert_eq!(verify(&SECRET, &key(), 1, c, 0).map(|i| i.mss), Some(carried), "client MSS {client}");
        }
    }

    #[test]
    fn window_scale_is_carried_and_capped() {
        for (offered, carried) in
            [(None, None), (Some(0), Some(0)), (Some(7), Some(7)), (Some(14), Some(14)), (Some(15), Some(14)), (Some(200), Some(14))]
        {
            let c = encode(&SECRET, &key(), 1, 1460, offered, 0);
            assert_eq!(verify(&SECRET, &key(), 1, c, 0).map(|i| i.wscale), Some(carried), "offered {offered:?}");
        }
    }

    /// An IPv6 key whose addresses embed the IPv4 key's.
    fn key6() -> crate::conn::FlowKey6 {
        let k = key();
        FlowKey { proto: 6, src: k.src.to_ipv6_mapped(), dst: k.dst.to_ipv6_mapped(), sport: k.sport, dport: k.dport }
    }

    #[test]
    fn ipv4_cookies_keep_their_values() {
        // The hash input of an IPv4 cookie, written out: the generic hash
        // must feed SipHash-2-4 exactly these bytes, so cookies made before
        // IPv6 support still verify.
        let now = 7 * PERIOD_MS;
        let info = u32::from(mss_index(1440)) << 4 | 7;
        let mut h = SipHasher24::new_with_key(&SECRET.period_key(7));
        h.write(&[198, 51, 100, 7]);
        h.write(&[203, 0, 113, 10]);
        h.write_u16(51000);
        h.write_u16(443);
        h.write_u32(1234);
        h.write_u32(info);
        let expected = h.finish() as u32 & !INFO_MASK | info;
        assert_eq!(encode(&SECRET, &key(), 1234, 1440, Some(7), now), expected);
    }

    #[test]
    fn ipv6_cookies_hash_the_ipv6_tuple_and_use_the_ipv6_mss_table() {
        let now = 4 * PERIOD_MS;
        let c = encode(&SECRET, &key6(), 99, 1440, Some(8), now);
        assert_ne!(c & !INFO_MASK, encode(&SECRET, &key(), 99, 1440, Some(8), now) & !INFO_MASK, "another family's tuple");
        assert_eq!(verify(&SECRET, &key6(), 99, c, now), Some(CookieInfo { mss: 1440, wscale: Some(8) }));
        assert_eq!(verify(&SECRET, &FlowKey { sport: 1, ..key6() }, 99, c, now), None, "another port");
        let mut other = key6();
        other.src = "2001:db8::7".parse().expect("addr");
        assert_eq!(verify(&SECRET, &other, 99, c, now), None, "another client");
        for (client, carried) in [(0, 516), (1279, 516), (1280, 1280), (1419, 1280), (1420, 1420), (1460, 1440), (9000, 1440)] {
            let c = encode(&SECRET, &key6(), 1, client, None, 0);
            assert_eq!(verify(&SECRET, &key6(), 1, c, 0).map(|i| i.mss), Some(carried), "client MSS {client}");
            assert_eq!(carried_mss::<Ipv6Addr>(client), carried);
        }
        for (a, b) in MSS_TABLE.iter().zip(MSS_TABLE6) {
            assert_eq!(a - b, 20, "20 bytes less than IPv4's");
        }
    }

    #[test]
    fn random_secrets_differ_and_the_process_secret_is_stable() {
        assert_ne!(Secret::random(), Secret::random());
        assert_eq!(Secret::process(), Secret::process());
    }

    #[test]
    fn forged_cookies_are_rarely_accepted() {
        // 2^16 guesses at one ACK's cookie: at 26 bits of hash, about one in
        // 2^26 per try (two periods: 2^25); seeing more than a couple is a bug.
        let now = 5 * PERIOD_MS;
        let accepted = (0..1u32 << 16).filter(|g| verify(&SECRET, &key(), 77, g.wrapping_mul(0x9e37_79b9), now).is_some()).count();
        assert!(accepted <= 2, "{accepted} forged cookies accepted");
    }
}
