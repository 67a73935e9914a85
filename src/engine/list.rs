//! The list stage of a pass: list both sides at once, stop early when nothing moved, and bring
//! back items held by the window or quarantine.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::base::{Engine, PassError, PassOptions, named, save_watermarks};
use super::forms::Forms;
use super::report::PairReport;
use crate::domain::error::StoreError;
use crate::domain::mapping::{Pending, Remembered, Side};
use crate::domain::pair::{Extras, Pair};
use crate::domain::pairstate::Quarantined;
use crate::domain::types::{CalendarPath, Etag, Href, SyncToken};
use crate::state::{PassStart, State, StateError};
use crate::store::{CalendarStore, Changes};
use crate::sync::{Content, Prior, Snapshot, Version};

/// Each side's sync token before a pass and as listed now (A, B).
pub(super) type Tokens = [(Option<SyncToken>, Option<SyncToken>); 2];

/// Both sides' listings, and what the state knew before them.
pub(super) struct Listing {
    /// The state's records are for these very calendars.
    pub known: bool,
    pub tokens: Tokens,
    /// Each side's changes (A, B).
    pub changes: [Changes; 2],
    pub pending: Vec<Pending>,
    /// What the state held for the pair as the pass started.
    pub start: PassStart,
}

impl Listing {
    /// Nothing moved on either side since the watermarks and no create waits for its outcome.
    pub(super) fn still(&self, opts: PassOptions) -> bool {
        let [s, t] = &self.changes;
        self.known
            && !opts.full
            && !s.complete
            && !t.complete
            && s.changed.is_empty()
            && s.deleted.is_empty()
            && t.changed.is_empty()
            && t.deleted.is_empty()
            && self.pending.is_empty()
    }
}

/// What one side copied from holds back or brings back this pass: items waiting outside the
/// window or quarantined, held while their etag holds and read again when due.
#[derive(Default)]
pub(super) struct Held {
    /// This side's failed and quarantined items.
    pub quarantine: Vec<Quarantined>,
    /// Hrefs read this pass; those brought back from the window or quarantine.
    pub fetched: Vec<Href>,
    pub injected: HashSet<Href>,
    /// Items remembered outside the window that are gone.
    pub outside_gone: Vec<Href>,
}

/// The window's memory and quarantine of a pair (both sides), as the quiet check read them.
pub(super) type Rows = (Vec<Remembered>, Vec<Quarantined>);

/// What the quiet check found.
pub(super) enum Quiet {
    /// Nothing moved and nothing is due: the pass is done.
    Yes,
    /// Read on, with the rows the check read, if it read any.
    No(Option<Rows>),
}

/// The list and read stages of one pass of a pair (this room and `read.rs`): what they use of
/// the engine, and no more.
pub(super) struct Reader<'e> {
    pub(super) pair: &'e Pair,
    pub(super) state: &'e State,
    /// Side A's store and side B's.
    stores: [Arc<dyn CalendarStore>; 2],
    pub(super) forms: &'e Forms,
    pub(super) extras: Extras,
}

impl<'e> Reader<'e> {
    /// The stages for `pair`; `Err` if a server of it could not be opened.
    pub(super) fn new(engine: &'e Engine, pair: &'e Pair) -> Result<Reader<'e>, PassError> {
        Ok(Reader {
            pair,
            state: &engine.state,
            stores: engine.pair_stores(pair)?,
            forms: &engine.forms,
            extras: engine.extras,
        })
    }

    pub(super) fn store(&self, side: Side) -> &dyn CalendarStore {
        &*self.stores[side as usize]
    }

    /// The listings of a pass under its leases: those its glance made (see
    /// [`Engine::glance`]) if the state has not moved since `start`, else new ones
    /// ([`Self::list_from`]).
    pub(super) async fn list(
        &self,
        opts: PassOptions,
        report: &mut PairReport,
        from: &[Side],
        glanced: Option<Box<Listing>>,
        start: PassStart,
    ) -> Result<Listing, PassError> {
        match glanced {
            Some(listing)
                if !opts.full
                    && listing.start.calendars == start.calendars
                    && listing.start.watermarks == start.watermarks =>
            {
                let pending = self.pending_of(listing.known, &start).await?;
                Ok(Listing {
                    pending,
                    start,
                    ..*listing
                })
            }
            _ => self.list_from(opts, report, from, start).await,
        }
    }

    /// The creates `start` says are pending, if its records are for this pair's calendars.
    async fn pending_of(&self, known: bool, start: &PassStart) -> Result<Vec<Pending>, PassError> {
        match known && start.pendings > 0 {
            true => Ok(self.state.pendings(&self.pair.id).await?),
            false => Ok(Vec::new()),
        }
    }

    /// Lists both sides at once (the two are usually different servers) from the watermarks
    /// of `start`, and reads the pending creates meanwhile. If a side cannot be listed, the
    /// changes just listed on the sides copied `from` wait for it: they are the backlog.
    pub(super) async fn list_from(
        &self,
        opts: PassOptions,
        report: &mut PairReport,
        from: &[Side],
        start: PassStart,
    ) -> Result<Listing, PassError> {
        let pair = self.pair;
        let (src, tgt) = (self.store(Side::A), self.store(Side::B));
        // Mappings recorded for other calendars (the config changed) do not apply; a real pass
        // drops them in `ensure_pair`, a dry run only ignores them.
        let current = (pair.source.to_string(), pair.target.to_string());
        let known = start.calendars.as_ref() == Some(&current);
        let (token, target_token) = match opts.full || !known {
            true => (None, None),
            false => start.watermarks.clone(),
        };
        let pending_read = self.pending_of(known, &start);
        // A side only read (the source of a one-way pair) is recorded as it stores its items.
        let only_read = |side: Side| from == [side];
        let (changes, target_changes, pending) = tokio::join!(
            list_side(src, &pair.source.path, token.as_ref(), only_read(Side::A)),
            list_side(
                tgt,
                &pair.target.path,
                target_token.as_ref(),
                only_read(Side::B)
            ),
            pending_read
        );
        let pending = pending?;
        let (changes, target_changes) = match (changes, target_changes) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                let mut backlog = None;
                for (side, listed) in [(Side::A, &a), (Side::B, &b)] {
                    if let (Ok(c), true) = (listed, from.contains(&side) && !opts.dry_run) {
                        let seen = self.seen_changes(known, side, c).await?;
                        backlog = Some(backlog.unwrap_or(0) + seen);
                    }
                }
                report.backlog = backlog;
                return Err(match (a, b) {
                    (Err(e), _) => named(src, "source", &pair.source)(e),
                    (_, Err(e)) => named(tgt, "target", &pair.target)(e),
                    _ => unreachable!("one side failed"),
                });
            }
        };
        Ok(Listing {
            known,
            tokens: [
                (token, changes.token.clone()),
                (target_token, target_changes.token.clone()),
            ],
            changes: [changes, target_changes],
            pending,
            start,
        })
    }

    /// Nothing moved on either side since the last pass (the usual case for a service passing
    /// thousands of pairs): unless something is due, there is nothing to read or plan.
    pub(super) async fn quiet(
        &self,
        opts: PassOptions,
        listing: &Listing,
        report: &mut PairReport,
    ) -> Result<Quiet, PassError> {
        if !listing.still(opts) {
            return Ok(Quiet::No(None));
        }
        let start = &listing.start;
        if start.due > 0 || start.to_retry > 0 {
            let now = self.forms.now().timestamp();
            let window_key = self.forms.window.key();
            let (due, held) = tokio::join!(
                self.state
                    .outside_window(&self.pair.id, now, &window_key, false),
                self.state.quarantine_rows(&self.pair.id)
            );
            return Ok(Quiet::No(Some((due?, held?))));
        }
        report.unchanged = start.mappings;
        // Quarantined items are source changes not in the target.
        report.backlog = Some(start.held);
        if !opts.dry_run {
            save_watermarks(self.state, self.pair, &listing.tokens).await?;
        }
        Ok(Quiet::Yes)
    }

    /// The pair's window memory and quarantine (all of it when `all`, for a complete listing),
    /// unless the quiet check read them already.
    pub(super) async fn held_rows(
        &self,
        all: bool,
        remembered: Option<Rows>,
    ) -> Result<Rows, PassError> {
        if let Some(rows) = remembered {
            return Ok(rows);
        }
        let now = self.forms.now().timestamp();
        let key = self.forms.window.key();
        let (o, q) = tokio::join!(
            self.state.outside_window(&self.pair.id, now, &key, all),
            self.state.quarantine_rows(&self.pair.id)
        );
        Ok((o?, q?))
    }

    /// How many changes `changes` (of `side`) holds for the pair: all of an incremental listing;
    /// the items of a complete one whose etag moved, that are new, or that are gone.
    pub(super) async fn seen_changes(
        &self,
        known: bool,
        side: Side,
        changes: &crate::store::Changes,
    ) -> Result<u64, StateError> {
        if !changes.complete {
            return Ok((changes.changed.len() + changes.deleted.len()) as u64);
        }
        let mappings = if known {
            self.state.mappings(&self.pair.id).await?
        } else {
            Vec::new()
        };
        let listed: HashMap<&Href, &Etag> =
            changes.changed.iter().map(|v| (&v.href, &v.etag)).collect();
        let mapped: HashMap<&Href, &Etag> = mappings
            .iter()
            .map(|m| (m.href(side), m.etag(side)))
            .collect();
        let moved = listed
            .iter()
            .filter(|(h, e)| mapped.get(*h) != Some(*e))
            .count();
        let gone = mapped.keys().filter(|h| !listed.contains_key(*h)).count();
        Ok((moved + gone) as u64)
    }
}

/// Items of side `from` left outside the window earlier, and ones quarantined, are held while
/// their etag holds. Due ones (their time has come, the window setting changed, an operator asked
/// for a retry) are read again: an incremental listing will not mention them, so they are read
/// as if listed. A complete listing lists whatever still exists (a remembered item it does not
/// list is gone).
pub(super) fn bring_back(
    from: Side,
    source: &mut Snapshot,
    held: &mut Held,
    (prior, pending): (&Prior, &[Pending]),
    (outside_rows, q_rows): &Rows,
    report: &mut PairReport,
) {
    held.quarantine = q_rows.iter().filter(|q| q.side == from).cloned().collect();
    // (href, etag, held while listed at this etag, quarantined)
    let rows: Vec<(Href, Etag, bool, bool)> = outside_rows
        .iter()
        .filter(|o| o.side == from)
        .map(|o| (o.href.clone(), o.etag.clone(), !o.due, false))
        .chain(held.quarantine.iter().map(|q| {
            let on_hold = q.quarantined && !q.retry;
            (q.href.clone(), q.etag.clone(), on_hold, on_hold)
        }))
        .collect();
    if rows.is_empty() {
        return;
    }
    let listed: HashMap<&Href, &Etag> = source.items.iter().map(|s| (&s.href, &s.etag)).collect();
    let deleted: HashSet<&Href> = source.deleted.iter().collect();
    // Creates from this side still in flight: their items are not held back.
    let in_flight: HashSet<&Href> = pending
        .iter()
        .filter(|p| p.to == from.other())
        .map(|p| p.href(from))
        .collect();
    let mut waiting: HashSet<Href> = HashSet::new();
    let mut inject = Vec::new();
    for (href, etag, on_hold, quarantined) in rows {
        match listed.get(&href) {
            // Held and unchanged: a new item is left out, a changed mapped one is listed at its
            // mapped etag (so it counts as unchanged).
            Some(now_etag) if on_hold && **now_etag == etag && !in_flight.contains(&href) => {
                report.quarantined += u64::from(quarantined);
                waiting.insert(href);
            }
            Some(_) => {}
            None if deleted.contains(&href) => {}
            None if source.complete => held.outside_gone.push(href),
            None if on_hold => {}
            None => inject.push((href, etag)),
        }
    }
    source.items.retain_mut(
        |s| match (waiting.contains(&s.href), prior.get(from, &s.href)) {
            (false, _) => true,
            (true, None) => false,
            (true, Some(p)) => {
                s.etag = p.etag(from).clone();
                true
            }
        },
    );
    source.waiting = waiting.len();
    for (href, etag) in inject {
        if held.injected.insert(href.clone()) {
            source.items.push(unread(href, etag));
        }
    }
}

/// How messages name a side's calendar.
pub(super) fn role(side: Side) -> &'static str {
    match side {
        Side::A => "source",
        Side::B => "target",
    }
}

/// One side's changes since `token`. A side without a watermark (first pass, resync, changed
/// calendars) is checked to be a calendar along with its listing, and a failed check is the
/// clearer error; a side with one was checked before, and its listing fails with the URL and
/// status if the calendar is gone. An unchanged calendar costs one request. On a server that
/// may give a new item at an old name the old item's ETag, the items a listing of changes names
/// on a side `only_read` are read whole and judged by their content (which the state records as
/// that side stores it).
async fn list_side(
    store: &dyn CalendarStore,
    cal: &CalendarPath,
    token: Option<&SyncToken>,
    only_read: bool,
) -> Result<Changes, StoreError> {
    let check = async {
        match token {
            None => store.check_calendar(cal).await,
            Some(_) => Ok(()),
        }
    };
    let (check, changes) = tokio::join!(check, store.changes(cal, token));
    let mut changes = check.and(changes)?;
    if only_read && !changes.complete && store.reuses_etags() {
        for v in &mut changes.changed {
            v.etag = Etag::unknown();
        }
    }
    Ok(changes)
}

pub(super) fn unread(href: Href, etag: Etag) -> Version {
    Version {
        href,
        etag,
        content: Content::NotFetched,
    }
}

/// A side's listing as a snapshot of unread items (only the calendar's own hrefs).
pub(super) fn listed(cal: &CalendarPath, changes: Changes) -> Snapshot {
    Snapshot {
        items: changes
            .changed
            .into_iter()
            .filter(|v| cal.contains(&v.href))
            .map(|v| unread(v.href, v.etag))
            .collect(),
        deleted: changes.deleted,
        complete: changes.complete,
        waiting: 0,
    }
}
