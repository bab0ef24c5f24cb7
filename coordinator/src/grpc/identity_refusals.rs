//! The audit trail of updaters refused for who they claim to be: a certificate holder
//! speaking for another agent or group, or a revoked agent coming back. Within a budget, so
//! a refused client looping cannot grow the audit log without bound; calls without any
//! certificate are only logged (nobody to name), like unauthenticated admin calls.

use std::{num::NonZeroU32, sync::Arc};

use drover_rules::AuditResult;
use governor::{Quota, RateLimiter, clock::DefaultClock, state::InMemoryState, state::NotKeyed};

use crate::{
    error::{ErrorCode, Result},
    fleet::{Fleet, updater_audit},
};

const RECORDS_PER_SECOND: u32 = 20;
const RECORDS_BURST: u32 = 200;

pub struct IdentityRefusals {
    fleet: Arc<Fleet>,
    budget: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
}

impl IdentityRefusals {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        let rate = NonZeroU32::new(RECORDS_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(RECORDS_BURST).unwrap_or(NonZeroU32::MIN);
        Self {
            fleet,
            budget: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Passes `checked` through, auditing it first if it refused a certificate holder.
    pub async fn audit(
        &self,
        certified: Option<&str>,
        action: &str,
        claimed: &str,
        checked: Result<()>,
    ) -> Result<()> {
        let (Err(err), Some(agent)) = (&checked, certified) else {
            return checked;
        };
        if err.code() != ErrorCode::PermissionDenied {
            return checked;
        }
        tracing::warn!(
            agent,
            claimed,
            action,
            "updater refused: {}",
            err.client_message()
        );
        if self.budget.check().is_err() {
            tracing::warn!(
                action,
                "audit record dropped: over the budget for refused updaters"
            );
            return checked;
        }
        let record = updater_audit(
            &format!("agent {agent}"),
            action,
            claimed,
            AuditResult::Refused,
            &err.client_message(),
        );
        if let Err(err) = self.fleet.store().record_audit(&record).await {
            tracing::warn!(action, error = %err, "could not write the audit record");
        }
        checked
    }
}
