//! The rvs control plane.
//!
//! * [`config`]: the JSON schema shared by the config file and the REST API, with
//!   validation that names the offending field (`services[1].reals[0].weight`).
//! * [`build`]: turns a validated [`Config`] into the dataplane's immutable
//!   [`Snapshot`](rvs_dataplane::snapshot::Snapshot).
//! * [`api`]: the REST API (axum) under `/api/v1`; every accepted change is
//!   validated, built into a new snapshot and published to the workers.
//! * [`error`]: the [`ConfigError`] type.

pub mod api;
pub mod build;
pub mod config;
pub mod error;

pub use api::{router, ApiState, Dataplane, PublishReport};
pub use build::build_snapshot;
pub use config::{ApiConfig, Cidr, Config, PortConfig, RealConfig, RouteConfig, ServiceConfig};
pub use error::ConfigError;
