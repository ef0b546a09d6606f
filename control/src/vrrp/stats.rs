//! Per-instance VRRP statistics, named as Keepalived names them (its
//! `vrrp_stats` data), plus the rejections Keepalived only logs.
//!
//! | field | counts |
//! |---|---|
//! | `advert_rcvd` | adverts accepted by the instance |
//! | `advert_sent` | adverts sent (every destination counts once) |
//! | `become_master`, `release_master` | transitions into and out of MASTER |
//! | `pri_zero_rcvd`, `pri_zero_sent` | priority-0 (resigning) adverts |
//! | `auth_failure` | v2 PASS adverts with another password |
//! | `authtype_mismatch` | v2 adverts with another auth type (none vs PASS) |
//! | `invalid_authtype` | v2 adverts with an auth type that does not exist |
//! | `addr_list_err` | adverts whose address list differs from ours (accepted) |
//! | `advert_interval_err` | v2 adverts with another interval, or an interval of 0 |
//! | `invalid_type_rcvd` | VRRP packets of a type other than advertisement |
//! | `packet_len_err` | truncated packets or a bad IP header |
//! | `checksum_err` | bad VRRP checksum |
//! | `ip_ttl_err` | adverts whose IPv4 TTL or IPv6 hop limit is not 255 (sent from off-link; IPv6 unicast adverts are not checked, as in Keepalived) |
//! | `version_err` | adverts of another VRRP version |
//! | `vrid_other` | adverts on the instance's interface for a VRID no instance there uses |
//! | `peer_unknown` | unicast instance: an advert from an address not in `unicast_peer` |

use serde::Serialize;

use super::packet::PacketError;
use super::state::Ignored;

/// The counters of one instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VrrpStats {
    /// Adverts accepted.
    pub advert_rcvd: u64,
    /// Adverts sent.
    pub advert_sent: u64,
    /// Transitions into MASTER.
    pub become_master: u64,
    /// Transitions out of MASTER.
    pub release_master: u64,
    /// Priority-0 adverts received.
    pub pri_zero_rcvd: u64,
    /// Priority-0 adverts sent.
    pub pri_zero_sent: u64,
    /// PASS adverts with a wrong password.
    pub auth_failure: u64,
    /// Adverts with another auth type.
    pub authtype_mismatch: u64,
    /// Adverts with an auth type that does not exist.
    pub invalid_authtype: u64,
    /// Adverts whose address list differs from ours.
    pub addr_list_err: u64,
    /// Adverts with a wrong (v2) or zero interval.
    pub advert_interval_err: u64,
    /// VRRP packets that are not adverts.
    pub invalid_type_rcvd: u64,
    /// Truncated packets, bad IP headers.
    pub packet_len_err: u64,
    /// Bad checksums.
    pub checksum_err: u64,
    /// TTL other than 255.
    pub ip_ttl_err: u64,
    /// Another VRRP version.
    pub version_err: u64,
    /// Adverts for a VRID nobody here uses.
    pub vrid_other: u64,
    /// Unicast adverts from an address that is not a peer.
    pub peer_unknown: u64,
}

impl VrrpStats {
    /// Every counter with its name, in the order of the struct (for metrics).
    pub fn named(&self) -> [(&'static str, u64); 18] {
        [
            ("advert_rcvd", self.advert_rcvd),
            ("advert_sent", self.advert_sent),
            ("become_master", self.become_master),
            ("release_master", self.release_master),
            ("pri_zero_rcvd", self.pri_zero_rcvd),
            ("pri_zero_sent", self.pri_zero_sent),
            ("auth_failure", self.auth_failure),
            ("authtype_mismatch", self.authtype_mismatch),
            ("invalid_authtype", self.invalid_authtype),
            ("addr_list_err", self.addr_list_err),
            ("advert_interval_err", self.advert_interval_err),
            ("invalid_type_rcvd", self.invalid_type_rcvd),
            ("packet_len_err", self.packet_len_err),
            ("checksum_err", self.checksum_err),
            ("ip_ttl_err", self.ip_ttl_err),
            ("version_err", self.version_err),
            ("vrid_other", self.vrid_other),
            ("peer_unknown", self.peer_unknown),
        ]
    }

    /// Counts a packet that could not be decoded. Returns false for errors
    /// that are not the instance's business (not VRRP at all).
    pub fn count_packet_error(&mut self, e: &PacketError) -> bool {
        let counter = match e {
            PacketError::TooShort(_) | PacketError::BadIpHeader(_) => &mut self.packet_len_err,
            PacketError::BadVersion(_) => &mut self.version_err,
            PacketError::BadType(_) => &mut self.invalid_type_rcvd,
            PacketError::BadChecksum => &mut self.checksum_err,
            PacketError::BadAuthType(_) => &mut self.invalid_authtype,
            PacketError::ZeroInterval => &mut self.advert_interval_err,
            PacketError::ZeroVrid => &mut self.vrid_other,
            PacketError::NotVrrp(_) => return false,
        };
        *counter += 1;
        true
    }

    /// Counts an advert the state machine ignored (its own adverts and
    /// those arriving in INIT or FAULT are not errors).
    pub fn count_ignored(&mut self, why: Ignored) {
        let counter = match why {
            Ignored::OtherVrid => &mut self.vrid_other,
            Ignored::OtherVersion => &mut self.version_err,
            Ignored::AuthTypeMismatch => &mut self.authtype_mismatch,
            Ignored::AuthFailure => &mut self.auth_failure,
            Ignored::Interval => &mut self.advert_interval_err,
            Ignored::Own | Ignored::NotListening => return,
        };
        *counter += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_json() {
        let s = VrrpStats { auth_failure: 3, peer_unknown: 1, ..VrrpStats::default() };
        let json = serde_json::to_value(s).expect("serialisable");
        for (name, value) in s.named() {
            assert_eq!(json[name], value, "{name}");
        }
        assert_eq!(json.as_object().map(|o| o.len()), Some(s.named().len()));
    }

    #[test]
    fn packet_errors_land_in_their_counter() {
        let mut s = VrrpStats::default();
        assert!(s.count_packet_error(&PacketError::BadChecksum));
        assert!(s.count_packet_error(&PacketError::TooShort(3)));
        assert!(s.count_packet_error(&PacketError::BadAuthType(7)));
        assert!(!s.count_packet_error(&PacketError::NotVrrp(6)));
        assert_eq!((s.checksum_err, s.packet_len_err, s.invalid_authtype), (1, 1, 1));
        s.count_ignored(Ignored::AuthFailure);
        s.count_ignored(Ignored::Own);
        assert_eq!(s.auth_failure, 1);
        assert_eq!(s, VrrpStats { checksum_err: 1, packet_len_err: 1, invalid_authtype: 1, auth_failure: 1, ..Default::default() });
    }
}
