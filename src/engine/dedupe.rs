//! `tandem dedupe`: copies of one meeting in one calendar of a pair (the target by default),
//! all but one deleted.

use std::collections::BTreeMap;

use super::base::{Engine, PassError};
use super::list::role;
use super::write::{fence, fetch_all};
use crate::domain::error::ErrorKind;
use crate::domain::identity::IdentityKey;
use crate::domain::lease::{Lease, LeaseKind};
use crate::domain::mapping::Side;
use crate::domain::pair::Pair;
use crate::domain::types::{Etag, Href};
use crate::state::StateError;
use crate::store::CalendarStore;
use crate::sync;

/// What `dedupe` found in one pair's target calendar.
#[derive(Debug, Default, serde::Serialize)]
pub struct DedupeReport {
    pub pair: String,
    pub dry_run: bool,
    /// Identities with more than one copy.
    pub groups: Vec<DedupeGroup>,
    /// Items that could not be read or parsed (left alone).
    pub skipped: Vec<String>,
    /// Why the pair could not be deduplicated at all.
    pub error: Option<String>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct DedupeGroup {
    pub identity: String,
    pub kept: Vec<String>,
    /// Deleted (or, in a dry run, to be deleted).
    pub deleted: Vec<String>,
    pub failed: Vec<String>,
}

impl DedupeReport {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.groups.iter().all(|g| g.failed.is_empty())
    }
}

impl Engine {
    /// `tandem dedupe`: finds items of `pair` on `side` that are the same meeting (one identity
    /// key), keeps the mapped one (else the highest SEQUENCE, then the latest LAST-MODIFIED) and
    /// deletes the others with `If-Match`. Reads the whole calendar; trusts no index.
    pub async fn dedupe(
        &self,
        pair: &Pair,
        side: Side,
        dry_run: bool,
    ) -> Result<DedupeReport, StateError> {
        let mut report = DedupeReport {
            pair: pair.id.to_string(),
            dry_run,
            ..Default::default()
        };
        let cal = pair.calendar(side);
        let tgt = match self.store(&cal.server) {
            Ok(t) => t,
            Err(PassError::Pair(_, e)) => {
                report.error = Some(e);
                return Ok(report);
            }
            Err(PassError::State(e)) => return Err(e),
        };
        // Deleting copies is writing: under the calendar's lease, like a sync pass.
        let done = self
            .under_lease(
                &cal.to_string(),
                LeaseKind::Repair,
                dry_run,
                async |lease| {
                    self.dedupe_under(pair, side, &*tgt, lease, &mut report)
                        .await
                },
            )
            .await?;
        if let Err(locked) = done {
            report.error = Some(format!("{} calendar {cal}: {locked}", role(side)));
        }
        Ok(report)
    }

    /// `dedupe` under its lease (`None`: a dry run).
    async fn dedupe_under(
        &self,
        pair: &Pair,
        side: Side,
        tgt: &dyn CalendarStore,
        lease: Option<&Lease>,
        report: &mut DedupeReport,
    ) -> Result<(), StateError> {
        let tcal = &pair.calendar(side).path;
        let read = async {
            tgt.check_calendar(tcal).await?;
            let hrefs: Vec<Href> = tgt.list(tcal).await?.into_iter().map(|v| v.href).collect();
            fetch_all(&*tgt, tcal, &hrefs).await
        };
        let items = match read.await {
            Ok(items) => items,
            Err(e) => {
                report.error = Some(format!(
                    "{} calendar {} ({}): {e}",
                    role(side),
                    pair.calendar(side),
                    tgt.describe()
                ));
                return Ok(());
            }
        };
        let recorded = self.mapped_copies(pair).await?;
        let known = recorded.is_some();
        let [a, b] = recorded.unwrap_or_default();
        let mapped = match side {
            Side::A => a,
            Side::B => b,
        };
        // Per identity: (href, etag, how new) of each copy.
        type Copy = (Href, Etag, sync::rank::Newness);
        let mut groups: BTreeMap<IdentityKey, Vec<Copy>> = BTreeMap::new();
        for (href, got) in items {
            match got {
                Ok(r) => match self.forms.canonical(side, &r.data) {
                    Ok(item) => groups.entry(item.identity()).or_default().push((
                        href,
                        r.etag,
                        sync::rank::Newness::of(&item),
                    )),
                    Err(e) => report
                        .skipped
                        .push(format!("{href}: not readable as iCalendar ({e})")),
                },
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => report.skipped.push(format!("{href}: {e}")),
            }
        }
        let mut gone = Vec::new();
        for (identity, mut copies) in groups.into_iter().filter(|(_, c)| c.len() > 1) {
            sync::rank_copies(&mut copies, |c| sync::CopyRank {
                mapped: mapped.contains_key(&c.0),
                equal: false,
                newness: &c.2,
                href: &c.0,
            });
            let mut group = DedupeGroup {
                identity: identity.to_string(),
                ..Default::default()
            };
            for (i, (href, etag, ..)) in copies.into_iter().enumerate() {
                // The first is kept; so is any other mapped copy (deleting it would only bring it back).
                if i == 0 || mapped.contains_key(&href) {
                    group.kept.push(href.to_string());
                    continue;
                }
                let Some(lease) = lease else {
                    group.deleted.push(href.to_string());
                    continue;
                };
                if fence(&self.state, lease).await?.is_some() {
                    group.failed.push(format!(
                        "{href}: not deleted: the lease on the calendar was taken over"
                    ));
                    continue;
                }
                match tgt.delete(&href, &etag).await {
                    Ok(()) => {
                        group.deleted.push(href.to_string());
                        gone.push(href);
                    }
                    Err(e) => group.failed.push(format!("{href}: {e}")),
                }
            }
            report.groups.push(group);
        }
        if known && !gone.is_empty() {
            self.state.update_target_index(&pair.id, &[], &gone).await?;
        }
        Ok(())
    }
}
