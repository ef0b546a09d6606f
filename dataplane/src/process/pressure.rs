//! Table pressure: whether this worker is under a SYN flood's pressure
//! ([`crate::snapshot::SynFlood`]), and what follows from it (a service's
//! `auto` SYN proxy turns on).

use super::*;
use crate::snapshot::{Service, SynProxy};

/// This worker's pressure state.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Pressure {
    /// Under pressure now.
    pub(super) on: bool,
}

impl<F: Frame> Processor<F> {
    /// Whether this worker is under pressure now.
    pub fn under_pressure(&self) -> bool {
        self.pressure.on
    }

    /// Whether SYNs to `svc` are answered with a cookie now.
    pub fn syn_proxy_active(&self, svc: &Service) -> bool {
        match svc.syn_proxy {
            SynProxy::Off => false,
            SynProxy::On => true,
            SynProxy::Auto => self.under_pressure(),
        }
    }
}
