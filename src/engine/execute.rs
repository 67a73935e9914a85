//! The execute stage of a pass: the plan's remote writes, removals first, up to the receiving
//! store's parallelism, each checked against the lease just before it is sent (fencing), each
//! mapping recorded right after its write succeeded. What each write came to is returned as data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt};

use super::write::{Dest, Original, Written, delete};
use super::{Engine, PassError};
use crate::config::PairConfig;
use crate::domain::error::ErrorKind;
use crate::domain::lease::Lease;
use crate::domain::mapping::{Pending, Side};
use crate::domain::types::Href;
use crate::state::StateError;
use crate::store::CalendarStore;
use crate::sync::Action;

/// What one remote write came to.
pub(super) enum Done {
    Written(Written),
    Deleted,
    /// An item not from the other side (`extras = "delete"`).
    ExtraDeleted(Href),
    /// A pending create resolved; `removed` if its orphan copy was deleted.
    Settled {
        pending: Pending,
        removed: bool,
    },
    Failed {
        href: Href,
        kind: ErrorKind,
        reason: String,
    },
    /// Not attempted: the pass stopped.
    NotRun,
}

/// A refusal that stopped the writes: the side refusing, and why.
pub(super) type Halt = (Side, ErrorKind, String);
/// A lease lost: whose side, and by whom or why.
pub(super) type Lost = (Side, String);

/// The execute stage's result.
pub(super) struct Executed {
    pub done: Vec<Done>,
    /// A calendar refused in a way every further write would meet (locked, moving,
    /// throttling, refusing our credentials): the first such refusal, with the side refusing.
    pub halt: Option<Halt>,
    /// A lease was taken over or expired: whose side, and by whom or why.
    pub lost: Option<Lost>,
}

/// Errors that say the calendar, not the item, is unavailable.
fn halts_pass(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Moving { .. } | ErrorKind::Throttled { .. } | ErrorKind::Unauthorized
    )
}

impl Engine {
    /// Runs `writes` (creates, updates, deletes), removals first so a create that reuses a name
    /// (an item moved to a new href) never meets the copy it replaces. A stopping service lets
    /// writes in flight finish and starts no more; a halting refusal or a lost lease stops the
    /// rest, which is reported `NotRun`.
    pub(super) async fn execute(
        &self,
        pair: &PairConfig,
        writes: Vec<Action>,
        leases: &[Lease],
        show_progress: bool,
    ) -> Result<Executed, PassError> {
        let (removals, writes): (Vec<Action>, Vec<Action>) = writes
            .into_iter()
            .partition(|a| matches!(a, Action::Delete { .. } | Action::DeleteOrphan { .. }));
        let stores = [
            self.store(&pair.source.server)?,
            self.store(&pair.target.server)?,
        ];
        // Up to the parallelism of the stores written.
        let par = [Side::A, Side::B]
            .into_iter()
            .filter(|s| {
                writes
                    .iter()
                    .chain(&removals)
                    .any(|a| a.writes() == Some(*s))
            })
            .map(|s| stores[s as usize].parallelism())
            .max()
            .unwrap_or(1)
            .max(1);
        // The lease guarding each side's calendar.
        let lease_of = |side: Side| {
            let cal = pair.calendar(side).to_string();
            leases.iter().find(move |l| l.calendar == cal)
        };
        let stop = AtomicBool::new(false);
        let halt: Mutex<Option<Halt>> = Mutex::new(None);
        let lost: Mutex<Option<Lost>> = Mutex::new(None);
        let progress = self.progress.as_ref().filter(|_| show_progress);
        let total = removals.len() + writes.len();
        if let Some(p) = progress.filter(|_| total > 0) {
            p.start(pair.id.as_str(), total as u64);
        }
        let mut done = Vec::with_capacity(total);
        for phase in [removals, writes] {
            let mut running = stream::iter(phase)
                .map(|a| {
                    let (stop, lost, stores) = (&stop, &lost, &stores);
                    let side = a.writes().expect("a remote write");
                    let lease = lease_of(side);
                    async move {
                        if stop.load(Ordering::Relaxed) || self.stopping.load(Ordering::Relaxed) {
                            return Ok::<_, StateError>((side, Done::NotRun));
                        }
                        let lease = lease.expect("a pass holds the lease of each side it writes");
                        if let Some(why) = self.fence(lease).await? {
                            stop.store(true, Ordering::Relaxed);
                            lost.lock()
                                .expect("not poisoned")
                                .get_or_insert((side, why));
                            return Ok((side, Done::NotRun));
                        }
                        Ok((side, self.write_one(pair, stores, a).await?))
                    }
                })
                .buffer_unordered(par);
            while let Some(outcome) = running.next().await {
                if let Some(p) = progress {
                    p.advance(pair.id.as_str());
                }
                let (side, outcome): (Side, Done) = outcome?;
                if let Done::Failed { kind, reason, .. } = &outcome
                    && halts_pass(*kind)
                {
                    stop.store(true, Ordering::Relaxed);
                    halt.lock()
                        .expect("not poisoned")
                        .get_or_insert_with(|| (side, *kind, reason.clone()));
                }
                done.push(outcome);
            }
        }
        if let Some(p) = progress.filter(|_| total > 0) {
            p.finish(pair.id.as_str());
        }
        Ok(Executed {
            done,
            halt: halt.into_inner().expect("not poisoned"),
            lost: lost.into_inner().expect("not poisoned"),
        })
    }

    /// Fencing: `None` while the lease is still ours; otherwise who took it over, or that it
    /// expired. A holder whose lease was taken over (it stalled past its expiry, say) writes
    /// nothing more.
    pub(crate) async fn fence(&self, lease: &Lease) -> Result<Option<String>, StateError> {
        // Without a renewal in time (the process was paused, the database is out of reach),
        // the lease may be someone else's by now: no write, whatever the database would say.
        if lease.deadline.passed() {
            return Ok(Some(
                "the lease may have expired: no renewal within its ttl on this node's clock"
                    .to_string(),
            ));
        }
        if self.state.lease_is_current(lease).await? {
            return Ok(None);
        }
        Ok(Some(match self.state.lease(&lease.calendar).await? {
            Some(l) if l.token != lease.token => {
                format!("{} (token {}) took over the lease", l.holder, l.token)
            }
            _ => "the lease expired".to_string(),
        }))
    }

    /// Performs one remote write and records its mapping right after it succeeded.
    async fn write_one(
        &self,
        pair: &PairConfig,
        stores: &[Arc<dyn CalendarStore>; 2],
        action: Action,
    ) -> Result<Done, StateError> {
        let side = action.writes().expect("a remote write");
        let store = &*stores[side as usize];
        let dest = |side: Side| Dest {
            side,
            store,
            cal: &pair.calendar(side).path,
        };
        let (written, from_href) = match action {
            Action::Create {
                to,
                from_href,
                from_etag,
                item,
                adopt,
            } => {
                let original = Original {
                    href: &from_href,
                    etag: &from_etag,
                    item: &item,
                };
                let adopted = match &adopt {
                    Some((href, etag)) => self.adopt(dest(to), original, (href, etag)).await,
                    None => Ok(None),
                };
                let written = match adopted {
                    Ok(Some(done)) => Ok(done),
                    Ok(None) => self.create(pair, dest(to), original).await?,
                    Err(e) => Err(e),
                };
                (written, from_href)
            }
            Action::Update {
                to,
                from_href,
                from_etag,
                href,
                etag,
                item,
            } => {
                let original = Original {
                    href: &from_href,
                    etag: &from_etag,
                    item: &item,
                };
                let written = self
                    .update(pair, dest(to), original, (&href, &etag))
                    .await?;
                (written, from_href)
            }
            Action::Delete {
                on,
                href,
                etag,
                mapping,
            } => {
                let result = delete(store, dest(on).cal, &href, &etag).await;
                let what = match (on, mapping.is_some()) {
                    (_, false) => "deleting an item not from the other side",
                    (Side::A, true) => "delete in the source",
                    (Side::B, true) => "delete in the target",
                };
                return Ok(match (result, mapping) {
                    (Ok(()), Some(m)) => {
                        self.state.delete_mapping(&pair.id, &m.a_href).await?;
                        Done::Deleted
                    }
                    (Ok(()), None) => Done::ExtraDeleted(href),
                    (Err(e), _) => Done::Failed {
                        href,
                        kind: e.kind,
                        reason: format!("{what} failed ({}): {e}", e.kind),
                    },
                });
            }
            Action::DeleteOrphan { on: to, pending } => {
                return Ok(
                    match self.delete_orphan(store, dest(to).cal, to, &pending).await {
                        Ok(removed) => Done::Settled { pending, removed },
                        Err(e) => Done::Failed {
                            href: pending.href(to).clone(),
                            kind: e.kind,
                            reason: format!(
                                "removing a copy left by an interrupted create failed ({}): {e}",
                                e.kind
                            ),
                        },
                    },
                );
            }
            other => unreachable!("not a remote write: {other:?}"),
        };
        match written {
            Ok((mapping, how)) => {
                self.state.put_mapping(&pair.id, &mapping).await?;
                Ok(Done::Written(how))
            }
            Err(e) => Ok(Done::Failed {
                href: from_href,
                kind: e.kind,
                reason: format!(
                    "write to {} failed ({}): {e}",
                    super::read::role(side),
                    e.kind
                ),
            }),
        }
    }
}
