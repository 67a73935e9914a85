//! Fencing of state writes: a writer holding calendar leases runs its work inside [`fenced`],
//! and every write transaction begun in that work first checks, in the same transaction, that
//! each lease is still its own (same holder and token, unexpired on the database's clock),
//! keeping the lease rows locked to the commit. A writer that was paused or cut off past its
//! lease and then wakes records nothing: no mapping, watermark or pass.

use sqlx::Row;

use super::db::{State, StateError, StateResult};
use super::leases::each_lease;
use super::sql::Tx;
use crate::domain::lease::Lease;

tokio::task_local! {
    static FENCE: Vec<Lease>;
}

/// Runs `work` with every state write it makes fenced by `leases` (none: unfenced).
pub async fn fenced<F: Future>(leases: &[Lease], work: F) -> F::Output {
    if leases.is_empty() {
        return work.await;
    }
    FENCE.scope(leases.to_vec(), work).await
}

/// A fenced write refused: the lease is someone else's now, or expired.
#[derive(Debug, thiserror::Error)]
#[error("the lease on {calendar} (token {token}) is no longer this writer's: {now}")]
pub struct LeaseLost {
    pub calendar: String,
    pub token: i64,
    /// Who has it now, or that it expired.
    pub now: String,
}

impl State {
    /// Checks, inside `tx`, the leases of the fenced work this task runs (if any).
    pub(super) async fn check_fence(&self, tx: &mut Tx, what: &'static str) -> StateResult<()> {
        let Ok(leases) = FENCE.try_with(Clone::clone) else {
            return Ok(());
        };
        let text = format!(
            "SELECT calendar FROM leases WHERE expires_at > NOW_MS AND ({}) FOR_SHARE",
            each_lease(leases.len())
        );
        let mut q = sqlx::query(self.sql(&text));
        for l in &leases {
            q = q.bind(&l.calendar).bind(&l.holder).bind(l.token);
        }
        let held: Vec<String> = q
            .fetch_all(&mut **tx)
            .await
            .map_err(self.err(what))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let Some(lease) = leases.into_iter().find(|l| !held.contains(&l.calendar)) else {
            return Ok(());
        };
        let now = match self.lease(&lease.calendar).await? {
            Some(l) if l.token != lease.token => {
                format!("{} (token {}) took over the lease", l.holder, l.token)
            }
            _ => "the lease expired".to_string(),
        };
        Err(StateError {
            path: self.place.clone(),
            what,
            source: Box::new(LeaseLost {
                calendar: lease.calendar,
                token: lease.token,
                now,
            }),
        })
    }
}

impl StateError {
    /// Whether this is a fenced write refused because the writer's lease was lost.
    pub fn lease_lost(&self) -> bool {
        self.source.is::<LeaseLost>()
    }

    /// The lease whose loss refused this fenced write, if that is what it is.
    pub fn lost_lease(&self) -> Option<&LeaseLost> {
        self.source.downcast_ref::<LeaseLost>()
    }
}
