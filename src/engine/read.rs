//! The read stage of a pass, one path for either mode: bring back what each side carried over
//! holds (window, quarantine), read what moved on both sides at once, and lay it over the
//! listings prepared for planning — a side carried over parsed, rewritten into the new org's
//! form and judged against the window; a side only written (one way) parsed and hashed, with the
//! items no mapping names indexed by identity for adoption and `extras`.

use std::collections::{HashMap, HashSet};

use tracing::debug;

use super::base::{PassError, PassOptions, named};
use super::list::{Held, Listing, Reader, Rows, Tokens, bring_back, listed, role, unread};
use super::report::PairReport;
use super::write::fetch_all;
use crate::domain::error::{ErrorKind, StoreError};
use crate::domain::identity::IdentityKey;
use crate::domain::item::Item;
use crate::domain::mapping::{Pending, Side};
use crate::domain::pair::Extras;
use crate::domain::types::{Etag, Href};
use crate::store::{Fetched, Resource};
use crate::sync::select::Unmapped;
use crate::sync::{self, Content, Mode, Prepared, Prior, Snapshot, Version};

/// Everything the plan and record stages need.
pub(super) struct Read {
    pub mode: Mode,
    pub tokens: Tokens,
    /// Sides A and B as listed, with what was read laid over them.
    pub sides: [Snapshot; 2],
    /// What each side carried over holds back or brings back.
    pub held: [Held; 2],
    pub prior: Prior,
    pub pending: Vec<Pending>,
    /// One way: the side written's items no mapping names.
    pub index: Indexed,
}

/// One way, what is known of the side written's items no mapping names (the target index).
#[derive(Default)]
pub(super) struct Indexed {
    /// By identity (for adoption and `extras`), and the ones that cannot be read.
    pub unmapped: Unmapped,
    /// Identities of items carried over that wait outside the window (read for
    /// `extras = "delete"`).
    pub outside: HashSet<IdentityKey>,
    /// Items read for their identity this pass, and ones gone, for the state's index.
    pub read: Vec<(Href, Etag, Option<IdentityKey>)>,
    pub gone: Vec<Href>,
}

/// The target index as the state holds it: href → (etag, identity).
type Index = HashMap<Href, (Etag, Option<IdentityKey>)>;

impl Reader<'_> {
    /// Reads what moved on both sides and prepares it (see the module's note).
    pub(super) async fn read(
        &self,
        mode: Mode,
        opts: PassOptions,
        listing: Listing,
        remembered: Option<Rows>,
        report: &mut PairReport,
    ) -> Result<Read, PassError> {
        let Listing {
            known,
            tokens,
            changes: [a, b],
            pending,
            ..
        } = listing;
        let written_only = match mode {
            Mode::OneWay { from } => Some(from.other()),
            Mode::TwoWay { .. } => None,
        };
        let (prior, mut index) = self.remembered_of(known, written_only).await?;
        let pair = self.pair;
        let mut sides = [listed(&pair.source.path, a), listed(&pair.target.path, b)];
        let mut held: [Held; 2] = Default::default();
        if known {
            let all = mode.reads().iter().any(|s| sides[*s as usize].complete);
            let rows = self.held_rows(all, remembered).await?;
            for &side in mode.reads() {
                let (snapshot, held) = (&mut sides[side as usize], &mut held[side as usize]);
                bring_back(side, snapshot, held, (&prior, &pending), &rows, report);
            }
        }
        let [sa, sb] = &sides;
        let mut fetch = sync::fetch_lists(mode, [sa, sb], &prior, opts.full);
        let mut indexed = Indexed::default();
        let mut to_index = HashSet::new();
        if let Some(to) = written_only {
            (indexed.gone, to_index) = index_changes(to, &prior, &index, &sides[to as usize]);
            add_unlisted(&mut fetch[to as usize], &to_index);
        }
        debug!(
            a = fetch[0].len(),
            b = fetch[1].len(),
            "reading changed items"
        );
        for &side in mode.reads() {
            held[side as usize].fetched = fetch[side as usize].clone();
        }
        let got = self.fetch_both(&fetch).await?;
        let now = self.forms.now();
        for ((side, got), (snapshot, held)) in [Side::A, Side::B]
            .into_iter()
            .zip(got)
            .zip(sides.iter_mut().zip(&mut held))
        {
            if written_only == Some(side) {
                self.take_copies(side, got, snapshot, (&to_index, &mut indexed));
            } else {
                self.take_in(side, got, snapshot, held, &prior, now);
                sync::twins::set_aside(side, snapshot, &prior);
            }
        }
        if let Some(to) = written_only {
            for h in &indexed.gone {
                index.remove(h);
            }
            for (h, e, i) in &indexed.read {
                index.insert(h.clone(), (e.clone(), i.clone()));
            }
            self.unmapped(index, to, &prior, &mut indexed).await?;
        }
        Ok(Read {
            mode,
            tokens,
            sides,
            held,
            prior,
            pending,
            index: indexed,
        })
    }

    /// The pair's mappings, and the index of side `indexed`, when the state knows the pair
    /// (else empty).
    async fn remembered_of(
        &self,
        known: bool,
        indexed: Option<Side>,
    ) -> Result<(Prior, Index), PassError> {
        if !known {
            return Ok((Prior::new(), HashMap::new()));
        }
        let index = async {
            match indexed {
                Some(_) => self.state.target_index(&self.pair.id).await,
                None => Ok(HashMap::new()),
            }
        };
        let (mappings, index) = tokio::join!(self.state.mappings(&self.pair.id), index);
        Ok((mappings?.into_iter().collect::<Prior>(), index?))
    }

    /// Reads the hrefs `fetch` names on each side (A, B), both at once.
    async fn fetch_both(&self, fetch: &[Vec<Href>; 2]) -> Result<[Vec<Fetched>; 2], PassError> {
        let (ca, cb) = (self.pair.calendar(Side::A), self.pair.calendar(Side::B));
        let (sa, sb) = (self.store(Side::A), self.store(Side::B));
        let (ra, rb) = tokio::join!(
            fetch_all(sa, &ca.path, &fetch[0]),
            fetch_all(sb, &cb.path, &fetch[1])
        );
        Ok([
            ra.map_err(named(sa, role(Side::A), ca))?,
            rb.map_err(named(sb, role(Side::B), cb))?,
        ])
    }

    /// Puts what was read of `side` (carried over) into its snapshot, prepared. An item deleted
    /// between listing and reading is as if listed deleted; one read but not listed (an
    /// original whose copy needs restoring) is added.
    fn take_in(
        &self,
        side: Side,
        got: Vec<Fetched>,
        snapshot: &mut Snapshot,
        held: &mut Held,
        prior: &Prior,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let mut read: HashMap<Href, _> = got.into_iter().collect();
        let mut gone = HashSet::new();
        for v in &mut snapshot.items {
            if let Some(res) = read.remove(&v.href) {
                self.lay(side, v, res, held, &mut gone, now);
            }
        }
        // Mappings an incremental listing did not mention but whose copy needs restoring.
        for (href, res) in read {
            if let Some(p) = prior.get(side, &href) {
                let mut v = unread(href, p.etag(side).clone());
                self.lay(side, &mut v, res, held, &mut gone, now);
                snapshot.items.push(v);
            }
        }
        if !gone.is_empty() {
            snapshot.items.retain(|v| !gone.contains(&v.href));
            if !snapshot.complete {
                snapshot.deleted.extend(gone);
            }
        }
    }

    /// Lays one read of `side` over `v`; a deleted item joins `gone` (and, if it was
    /// remembered outside the window or quarantined, is no longer remembered).
    fn lay(
        &self,
        side: Side,
        v: &mut Version,
        res: Result<Resource, StoreError>,
        held: &mut Held,
        gone: &mut HashSet<Href>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        match res {
            Ok(r) => {
                v.content = self.forms.prepare(side, &r.data, now);
                v.etag = r.etag;
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                if held.injected.contains(&v.href) {
                    held.outside_gone.push(v.href.clone());
                }
                gone.insert(v.href.clone());
            }
            Err(e) => v.content = Content::Broken(e.kind, format!("cannot read: {e}")),
        }
    }

    /// Puts what was read of `side` (only written) into its snapshot, parsed and hashed, and
    /// indexes by identity the items of `to_index`; an item gone is gone from both.
    fn take_copies(
        &self,
        side: Side,
        got: Vec<Fetched>,
        snapshot: &mut Snapshot,
        (to_index, indexed): (&HashSet<Href>, &mut Indexed),
    ) {
        let mut read: HashMap<Href, _> = got.into_iter().collect();
        let mut gone = HashSet::new();
        for v in &mut snapshot.items {
            match read.remove(&v.href) {
                None => {}
                Some(Ok(r)) => {
                    let parsed = self.forms.canonical(side, &r.data);
                    if to_index.contains(&v.href) {
                        let identity = parsed.as_ref().ok().map(Item::identity);
                        indexed
                            .read
                            .push((v.href.clone(), r.etag.clone(), identity));
                    }
                    v.etag = r.etag;
                    v.content = match parsed {
                        Ok(item) => Content::Fetched(std::sync::Arc::new(Prepared::new(item))),
                        Err(e) => Content::Broken(ErrorKind::InvalidData, e.to_string()),
                    };
                }
                Some(Err(e)) if e.kind == ErrorKind::NotFound => {
                    gone.insert(v.href.clone());
                }
                Some(Err(e)) => v.content = Content::Broken(e.kind, e.to_string()),
            }
        }
        if !gone.is_empty() {
            snapshot.items.retain(|v| !gone.contains(&v.href));
            indexed.gone.extend(gone.iter().cloned());
            if !snapshot.complete {
                snapshot.deleted.extend(gone);
            }
        }
    }

    /// Items of side `to` no mapping names, by identity (candidates for adoption), and the ones
    /// that cannot be read; with `extras = "delete"`, the identities waiting outside the window
    /// on the other side too.
    async fn unmapped(
        &self,
        index: Index,
        to: Side,
        prior: &Prior,
        indexed: &mut Indexed,
    ) -> Result<(), PassError> {
        for (href, (etag, identity)) in index {
            if prior.get(to, &href).is_some() {
                continue;
            }
            match identity {
                Some(i) => indexed
                    .unmapped
                    .by_identity
                    .entry(i)
                    .or_default()
                    .push((href, etag)),
                None => indexed.unmapped.unreadable.push((href, etag)),
            }
        }
        if self.extras == Extras::Delete && !indexed.unmapped.by_identity.is_empty() {
            let from = to.other();
            indexed.outside.extend(
                self.state
                    .outside_window_identities(&self.pair.id, from)
                    .await?,
            );
        }
        Ok(())
    }
}

/// Adds to `fetch` the hrefs of `more` it does not hold yet.
fn add_unlisted(fetch: &mut Vec<Href>, more: &HashSet<Href>) {
    let listed: HashSet<&Href> = fetch.iter().collect();
    let extra: Vec<Href> = more
        .iter()
        .filter(|h| !listed.contains(h))
        .cloned()
        .collect();
    fetch.extend(extra);
}

/// What the index of side `to` loses (rows of items now mapped, deleted or no longer listed)
/// and the items to read for their identity: those not copies of ours, new or changed since
/// indexed (read once per etag).
fn index_changes(
    to: Side,
    prior: &Prior,
    index: &Index,
    listing: &Snapshot,
) -> (Vec<Href>, HashSet<Href>) {
    let mapped = |h: &Href| prior.get(to, h).is_some();
    let listed = listing.index();
    let gone = index
        .keys()
        .filter(|h| mapped(h) || !listed.present(h))
        .cloned()
        .collect();
    let to_index = listing
        .items
        .iter()
        .filter(|v| !mapped(&v.href) && index.get(&v.href).is_none_or(|(k, _)| *k != v.etag))
        .map(|v| v.href.clone())
        .collect();
    (gone, to_index)
}
