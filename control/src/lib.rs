//! The rvs control plane.
//!
//! * [`config`]: the JSON schema shared by the config file and the REST API, with
//!   validation that names the offending field (`services[1].reals[0].weight`).
//! * [`build`]: turns a validated [`Config`] into the dataplane's immutable
//!   [`Snapshot`](rvs_dataplane::snapshot::Snapshot).
//! * [`api`]: the REST API (axum) under `/api/v1` and `/metrics`; every accepted
//!   change is validated, built into a new snapshot, written to the config file
//!   and published to the workers.
//! * [`persist`]: crash-safe writing of the config file.
//! * [`rate`]: IPVS's rate estimator (`ipvsadm --rate`).
//! * [`metrics`]: the Prometheus exposition of `/metrics`.
//! * [`status`]: the live status page (`/status`) and its document (`/api/v1/overview`).
//! * [`events`]: the ring of recent events (VRRP and health transitions, config changes).
//! * [`ipvsadm`]: rvsadm, the ipvsadm-compatible command line over the REST API.
//! * [`error`]: the [`ConfigError`] type.
//! * [`affinity`]: keeping rvsd's control threads off the CPUs its workers poll on.

pub mod affinity;
pub mod api;
pub mod appliance;
pub mod build;
pub mod capture;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod error;
pub mod events;
pub mod ha;
pub mod health;
pub mod ipvsadm;
pub mod keepalived;
pub mod metrics;
pub mod persist;
pub mod pidfile;
pub mod preflight;
pub mod queues;
pub mod rate;
pub mod statedump;
pub mod status;
pub mod sync;
pub mod systemd;
pub mod vrrp;

pub use api::{router, spawn_rate_estimator, ApiOptions, ApiState, Dataplane, PublishReport};
pub use build::build_snapshot;
pub use config::{ApiConfig, Cidr, Config, PortConfig, RealConfig, RouteConfig, ServiceConfig};
pub use error::ConfigError;
