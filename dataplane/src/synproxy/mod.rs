//! The SYN proxy's packet logic, on byte buffers (DPVS `dp_vs_synproxy`,
//! Linux `net/ipv4/syncookies.c`): what is sent and checked, not when (the
//! worker's stages are in `process/synproxy.rs`).
//!
//! A client's SYN to a proxied service is answered with a SYN-ACK whose
//! sequence number is a **SYN cookie** ([`cookie`]): a keyed hash of the
//! 4-tuple, the client's ISN and the time, with the few things the
//! handshake with the real server needs (the client's MSS, rounded down to
//! a small table, and its window scale) carried in its low bits. Nothing is
//! stored. Only an ACK acknowledging a valid cookie creates a connection;
//! the director then replays the handshake towards the real server
//! ([`shape::client_syn`]) with the client's ISN and options, completes it
//! itself ([`shape::ack_from_syn_ack`]), and for the rest of the
//! connection's life translates sequence numbers between the cookie the
//! client knows and the real server's ISN ([`seq`]).
//!
//! Every step works on IPv4 and IPv6 packets (NAT and FULLNAT services of
//! either family; NAT64 ones are not proxied): the cookie hashes the
//! family's 4-tuple and indexes its MSS table ([`cookie::CookieAddr`]).
//!
//! # Options: MSS and window scale, not SACK or timestamps
//!
//! The cookie SYN-ACK offers the MSS option (the client's own, rounded down
//! to [`cookie::MSS_TABLE`]) and, when the client offered window scaling,
//! the director's window scale (`syn_flood.proxy_window_scale`). It offers
//! neither SACK-permitted nor timestamps, and the SYN the director sends
//! the real server carries neither, so the connection runs without them on
//! both sides.
//!
//! Linux carries SACK, window scale and ECN in the low bits of the
//! timestamp value it sends in the SYN-ACK (the client echoes it in every
//! segment), so it can offer them only to clients that send timestamps.
//! The proxy would then have to rewrite the timestamps of every packet in
//! both directions for the connection's life (the real server picks its own
//! clock), and FULLNAT strips timestamps anyway (see [`crate::fwd::fnat`]:
//! a reused local port must never be refused by PAWS). The window scale
//! fits in the sequence number itself (4 bits), and MSS in 2: SACK would
//! need a bit that the hash can spare, but a SACK block from either side
//! would also have to be translated, which this first version does not do.
//!
//! # Window scale
//!
//! The client scales windows it receives by the scale the director
//! announced; the real server scales its own by the scale it chose in its
//! SYN-ACK. Each real-server packet's window is rescaled from one to the
//! other (saturating at 65535); when the real server refuses window
//! scaling (no option in its SYN-ACK) the client's windows are rescaled
//! towards it too ([`seq::Translation`]).

pub mod cookie;
pub mod packed;
pub mod seq;
pub mod shape;

pub use cookie::{CookieInfo, Secret};
pub use packed::{PackedTranslation, ScaleOutOfRange};
pub use seq::Translation;
