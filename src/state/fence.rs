//! Fencing of state writes: a writer holding calendar leases runs its work inside [`fenced`],
//! and every write transaction begun in that work first checks, in the same transaction, that
//! each lease is still its own (same holder and token, unexpired on the database's clock),
//! keeping the lease rows locked to the commit. A writer that was paused or cut off past its
//! lease and then wakes records nothing: no mapping, watermark or pass.

use sqlx::Row;

use super::{State, StateError, StateResult, Tx};
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
        for lease in leases {
            let row = sqlx::query(self.sql(
                "SELECT token FROM leases WHERE calendar = $1 AND holder = $2 AND token = $3 \
                 AND expires_at > NOW_MS FOR_SHARE",
            ))
            .bind(&lease.calendar)
            .bind(&lease.holder)
            .bind(lease.token)
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.err(what))?;
            if row.map(|r| r.get::<i64, _>(0)) != Some(lease.token) {
                let now = match self.lease(&lease.calendar).await? {
                    Some(l) if l.token != lease.token => {
                        format!("{} (token {}) took it over", l.holder, l.token)
                    }
                    _ => "it expired".to_string(),
                };
                return Err(StateError {
                    path: self.place.clone(),
                    what,
                    source: Box::new(LeaseLost {
                        calendar: lease.calendar,
                        token: lease.token,
                        now,
                    }),
                });
            }
        }
        Ok(())
    }
}

impl StateError {
    /// Whether this is a fenced write refused because the writer's lease was lost.
    pub fn lease_lost(&self) -> bool {
        self.source.is::<LeaseLost>()
    }
}
