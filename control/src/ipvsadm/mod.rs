//! rvsadm: ipvsadm's command line over rvsd's REST API.
//!
//! * [`parse`]: ipvsadm's grammar (popt rules, its option legality table and
//!   error messages), with DPVS's FULLNAT (`-b`) and local address options
//!   (`-P`, `-Q`, `-G`, `-z`).
//! * [`apply`]: table-changing commands applied to a copy of the config with
//!   ipvsadm's semantics.
//! * [`format`](mod@format): ipvsadm's listings, character for character.
//! * [`order`]: the order ipvsadm lists services and real servers in.
//! * [`client`]: the HTTP client.
//! * [`run`](mod@run): one invocation from arguments to output.
//!
//! The operator's guide is `deploy/docs/rvsadm.md`.

pub mod apply;
pub mod client;
pub mod format;
pub mod order;
pub mod parse;
pub mod run;

pub use client::{AdmError, Client};
pub use run::run;
