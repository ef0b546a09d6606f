//! A [`Translation`] packed into the 6 bytes a connection entry keeps of
//! it ([`crate::conn::Conn::proxy`]), so that an IPv4 entry stays within
//! 52 bytes.
//!
//! Layout, three 16-bit words (2-byte alignment):
//!
//! | word | bits    | field                                   |
//! |------|---------|-----------------------------------------|
//! | 0    | 0..16   | `delta`, low half                       |
//! | 1    | 0..16   | `delta`, high half                      |
//! | 2    | 0..4    | `server_wscale`                         |
//! | 2    | 4..8    | `client_view_wscale`                    |
//! | 2    | 8..12   | `inbound_shift`                         |
//! | 2    | 12..14  | `phase` ([`Phase`] as its number)       |
//!
//! Every scale TCP allows (0..=[`MAX_WSCALE`], RFC 7323) fits in its 4 bits;
//! a translation with a larger one is refused ([`PackedTranslation::try_from`]),
//! never cut.

use crate::synproxy::cookie::MAX_WSCALE;
use crate::synproxy::seq::{Phase, Translation};

/// A translation with a window scale or shift over [`MAX_WSCALE`]: TCP
/// allows none, and a connection entry has no room for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "syn_proxy window scales {server_wscale}/{client_view_wscale}/{inbound_shift} \
     (server_wscale/client_view_wscale/inbound_shift): each must be at most {MAX_WSCALE}"
)]
pub struct ScaleOutOfRange {
    /// The refused translation's `server_wscale`.
    pub server_wscale: u8,
    /// The refused translation's `client_view_wscale`.
    pub client_view_wscale: u8,
    /// The refused translation's `inbound_shift`.
    pub inbound_shift: u8,
}

/// A [`Translation`] in 6 bytes (see the module's layout). The default is
/// the default translation: not proxied.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct PackedTranslation {
    words: [u16; 3],
}

const SCALE_BITS: u32 = 4;
const SCALE_MASK: u16 = (1 << SCALE_BITS) - 1;
const SERVER_SHIFT: u32 = 0;
const CLIENT_VIEW_SHIFT: u32 = SCALE_BITS;
const INBOUND_SHIFT: u32 = 2 * SCALE_BITS;
const PHASE_SHIFT: u32 = 3 * SCALE_BITS;

impl PackedTranslation {
    /// A connection whose handshake with the real server is in progress
    /// (nothing translated yet).
    pub const HANDSHAKE: PackedTranslation = PackedTranslation { words: [0, 0, (Phase::Handshake as u16) << PHASE_SHIFT] };

    /// The translation unpacked.
    pub fn get(&self) -> Translation {
        Translation {
            delta: self.delta(),
            phase: self.phase(),
            server_wscale: self.scale(SERVER_SHIFT),
            client_view_wscale: self.scale(CLIENT_VIEW_SHIFT),
            inbound_shift: self.scale(INBOUND_SHIFT),
        }
    }

    /// The real server's ISN minus the cookie ([`Translation::delta`]).
    pub fn delta(&self) -> u32 {
        u32::from(self.words[1]) << 16 | u32::from(self.words[0])
    }

    /// Where the connection stands with the SYN proxy.
    pub fn phase(&self) -> Phase {
        // Only `pack` writes these bits, from a `Phase`: 3 never occurs.
        match self.words[2] >> PHASE_SHIFT {
            1 => Phase::Handshake,
            2 => Phase::Open,
            _ => Phase::None,
        }
    }

    /// True for a connection whose packets are translated.
    pub fn is_open(&self) -> bool {
        self.phase() == Phase::Open
    }

    fn scale(&self, shift: u32) -> u8 {
        ((self.words[2] >> shift) & SCALE_MASK) as u8
    }
}

impl TryFrom<Translation> for PackedTranslation {
    type Error = ScaleOutOfRange;

    /// Packs `t`; refused when a window scale or shift is over [`MAX_WSCALE`]
    /// ([`Translation::scales_valid`]).
    fn try_from(t: Translation) -> Result<Self, ScaleOutOfRange> {
        if !t.scales_valid() {
            return Err(ScaleOutOfRange {
                server_wscale: t.server_wscale,
                client_view_wscale: t.client_view_wscale,
                inbound_shift: t.inbound_shift,
            });
        }
        let scales = u16::from(t.server_wscale) << SERVER_SHIFT
            | u16::from(t.client_view_wscale) << CLIENT_VIEW_SHIFT
            | u16::from(t.inbound_shift) << INBOUND_SHIFT;
        Ok(PackedTranslation { words: [t.delta as u16, (t.delta >> 16) as u16, scales | (t.phase as u16) << PHASE_SHIFT] })
    }
}

impl std::fmt::Debug for PackedTranslation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PHASES: [Phase; 3] = [Phase::None, Phase::Handshake, Phase::Open];

    /// Deltas that exercise every bit of both halves and their carries.
    const DELTAS: [u32; 9] = [0, 1, 0xffff, 0x1_0000, 0x8000_0000, 0x7fff_ffff, 0xdead_beef, 0x0001_fffe, u32::MAX];

    #[test]
    fn it_takes_six_bytes_aligned_to_two() {
        assert_eq!(std::mem::size_of::<PackedTranslation>(), 6);
        assert_eq!(std::mem::align_of::<PackedTranslation>(), 2);
    }

    #[test]
    fn every_valid_translation_survives_pack_and_unpack() {
        // Every phase and every combination of the three scales, with deltas
        // over all bit positions: 3 * 15^3 * (9 + 32) translations.
        let deltas = DELTAS.into_iter().chain((0..32).map(|b| 1u32 << b));
        let deltas: Vec<u32> = deltas.collect();
        let mut checked = 0;
        for phase in PHASES {
            for server_wscale in 0..=MAX_WSCALE {
                for client_view_wscale in 0..=MAX_WSCALE {
                    for inbound_shift in 0..=MAX_WSCALE {
                        for &delta in &deltas {
                            let t = Translation { delta, phase, server_wscale, client_view_wscale, inbound_shift };
                            let packed = PackedTranslation::try_from(t).expect("valid scales pack");
                            assert_eq!(packed.get(), t);
                            assert_eq!((packed.delta(), packed.phase(), packed.is_open()), (delta, phase, t.is_open()));
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 15 * 15 * 15 * 41);
    }

    fn phase() -> impl Strategy<Value = Phase> {
        prop_oneof![Just(Phase::None), Just(Phase::Handshake), Just(Phase::Open)]
    }

    proptest! {
        #[test]
        fn any_valid_translation_survives_pack_and_unpack(
            delta in any::<u32>(),
            phase in phase(),
            server_wscale in 0..=MAX_WSCALE,
            client_view_wscale in 0..=MAX_WSCALE,
            inbound_shift in 0..=MAX_WSCALE,
        ) {
            let t = Translation { delta, phase, server_wscale, client_view_wscale, inbound_shift };
            prop_assert_eq!(PackedTranslation::try_from(t).map(|p| p.get()), Ok(t));
        }

        #[test]
        fn any_translation_with_a_scale_over_14_is_refused(
            t in (any::<u32>(), phase(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(delta, phase, s, c, i)| Translation {
                delta, phase, server_wscale: s, client_view_wscale: c, inbound_shift: i,
            }),
        ) {
            prop_assert_eq!(PackedTranslation::try_from(t).is_ok(), t.scales_valid());
        }
    }

    #[test]
    fn a_scale_tcp_does_not_allow_is_refused_not_cut() {
        let valid = Translation { delta: 5, phase: Phase::Open, server_wscale: 14, client_view_wscale: 14, inbound_shift: 14 };
        assert!(PackedTranslation::try_from(valid).is_ok());
        for (s, c, i) in [(15, 0, 0), (0, 15, 0), (0, 0, 15), (16, 7, 7), (255, 255, 255)] {
            let t = Translation { server_wscale: s, client_view_wscale: c, inbound_shift: i, ..valid };
            let err = PackedTranslation::try_from(t).expect_err("over 14");
            assert_eq!((err.server_wscale, err.client_view_wscale, err.inbound_shift), (s, c, i));
            assert!(err.to_string().contains("at most 14"), "{err}");
        }
    }

    #[test]
    fn the_defaults_and_the_handshake_mark_are_what_they_say() {
        assert_eq!(PackedTranslation::default().get(), Translation::default());
        assert_eq!(PackedTranslation::HANDSHAKE.get(), Translation { phase: Phase::Handshake, ..Translation::default() });
        assert_eq!(format!("{:?}", PackedTranslation::HANDSHAKE), format!("{:?}", PackedTranslation::HANDSHAKE.get()));
    }
}
