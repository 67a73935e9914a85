//! Remote writes of one item, each safe to retry: `If-None-Match: *` creates on a name derived
//! from the UID (a retried create after a crash lands on the same name and is adopted),
//! `If-Match` updates and deletes, and a 412 answered by re-reading, never by overwriting blindly.

use futures_util::stream::{self, StreamExt, TryStreamExt};
use tracing::debug;

use super::forms::Forms;
use crate::domain::error::{ErrorKind, StoreError};
use crate::domain::lease::Lease;
use crate::domain::mapping::{Mapping, Pending, Side};
use crate::domain::types::{CalendarPath, Etag, Href, PairId};
use crate::state::{State, StateError};
use crate::store::{self, CalendarStore, ItemVersion};
use crate::sync::{Prepared, target_name};

/// Items per multiget-style fetch.
const FETCH_BATCH: usize = 100;

/// How a write of an item came out.
pub(crate) enum Written {
    Created,
    Updated,
    Adopted,
    /// A re-read found the copy already equal.
    Unchanged,
}

/// A write's outcome: the mapping to record, or the store's refusal (an `Err` of the state is
/// fatal for the pass, a store error only for the item).
pub(crate) type WriteResult = Result<Result<(Mapping, Written), StoreError>, StateError>;

/// Where a copy is written: the side, its store and its calendar.
#[derive(Clone, Copy)]
pub(crate) struct Dest<'a> {
    pub side: Side,
    pub store: &'a dyn CalendarStore,
    pub cal: &'a CalendarPath,
}

/// The item a copy is made from: its href and etag on the other side, and its prepared form.
#[derive(Clone, Copy)]
pub(crate) struct Original<'a> {
    pub href: &'a Href,
    pub etag: &'a Etag,
    pub item: &'a Prepared,
}

impl Original<'_> {
    fn mapping(&self, to: Side, copy: ItemVersion) -> Mapping {
        Mapping::between(
            to.other(),
            (self.href.clone(), self.etag.clone()),
            (copy.href, copy.etag),
            self.item.identity.clone(),
            self.item.hash,
        )
    }
}

/// The single-item writes of one pair, for the execute stage and for repair: the state notes
/// a write as pending before it is sent, the forms render the copy and judge what is found.
#[derive(Clone, Copy)]
pub(super) struct Writer<'e> {
    pair: &'e PairId,
    state: &'e State,
    forms: &'e Forms,
}

impl<'e> Writer<'e> {
    pub(super) fn new(pair: &'e PairId, state: &'e State, forms: &'e Forms) -> Writer<'e> {
        Writer { pair, state, forms }
    }

    /// Takes over a copy of the same meeting (a repair assistant's, one made by hand, or one
    /// left by a crashed run): updates it with `If-Match` if its content differs, keeping its
    /// UID spelling. `None` if it is gone or no longer the same meeting.
    pub(super) async fn adopt(
        &self,
        dest: Dest<'_>,
        original: Original<'_>,
        (href, etag): (&Href, &Etag),
    ) -> Result<Option<(Mapping, Written)>, StoreError> {
        let Some(now) = read_one(dest.store, dest.cal, href).await? else {
            return Ok(None);
        };
        let Ok(there) = self.forms.canonical(dest.side, &now.data) else {
            return Ok(None);
        };
        if there.identity() != original.item.identity {
            return Ok(None);
        }
        debug!(href = %href, was = %etag, "adopting the existing copy of this meeting");
        let etag = if there.content_hash() == original.item.hash {
            now.etag
        } else {
            let mut ours = original.item.item.clone();
            ours.set_uid(there.uid());
            let text = self.forms.render(dest.side, &ours);
            dest.store.update(href, &now.etag, &text).await?
        };
        let copy = ItemVersion {
            href: href.clone(),
            etag,
        };
        Ok(Some((original.mapping(dest.side, copy), Written::Adopted)))
    }

    /// `If-None-Match: *` create; if the name is taken by a copy of this very item (a crashed
    /// earlier run), adopt it; if by something else, use a fresh name.
    ///
    /// Each create is first noted as pending in the state (by the caller if `noted`), so a copy
    /// written just before a crash is found again (adopted, or deleted if its original is gone)
    /// by the next pass.
    pub(super) async fn create(
        &self,
        dest: Dest<'_>,
        original: Original<'_>,
        noted: bool,
    ) -> WriteResult {
        let item = original.item;
        let text = self.forms.render(dest.side, &item.item);
        let name = target_name(item.item.uid());
        let pending =
            |name: &str| pending_create(dest.cal, dest.side, original.href, item, Some(name));
        if !noted {
            self.state.add_pending(self.pair, &pending(&name)).await?;
        }
        match dest.store.create(dest.cal, &name, &text).await {
            Ok(v) => return Ok(Ok((original.mapping(dest.side, v), Written::Created))),
            Err(e) if e.kind == ErrorKind::PreconditionFailed => {}
            Err(e) => return self.refused_create(pending(&name), e).await,
        }
        // The name is taken: by our own copy from an interrupted run (adopt it), or by another item.
        let href = dest.cal.join(&name);
        let adopted = async {
            if let Some(existing) = read_one(dest.store, dest.cal, &href).await?
                && let Ok(there) = self.forms.canonical(dest.side, &existing.data)
                && there.identity() == item.identity
            {
                let etag = if there.content_hash() == item.hash {
                    existing.etag
                } else {
                    dest.store.update(&href, &existing.etag, &text).await?
                };
                let copy = ItemVersion {
                    href: href.clone(),
                    etag,
                };
                return Ok(Some(original.mapping(dest.side, copy)));
            }
            Ok::<_, StoreError>(None)
        };
        match adopted.await {
            Ok(Some(m)) => return Ok(Ok((m, Written::Adopted))),
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        let stem = name.trim_end_matches(".ics");
        let fresh = format!("{stem}-{}.ics", uuid::Uuid::new_v4().simple());
        self.state.add_pending(self.pair, &pending(&fresh)).await?;
        match dest.store.create(dest.cal, &fresh, &text).await {
            Ok(v) => Ok(Ok((original.mapping(dest.side, v), Written::Created))),
            Err(e) => self.refused_create(pending(&fresh), e).await,
        }
    }

    /// A create that failed. A permanent refusal (a 4xx such as 413) or a server holding the item
    /// back (`Waiting`) wrote nothing, so its pending
    /// row goes: a pending create is never held back, and the item could not be quarantined. A
    /// failure that may have written (a timeout, a 5xx) keeps the row for the next pass to settle.
    async fn refused_create(&self, pending: Pending, e: StoreError) -> WriteResult {
        if e.kind.is_permanent() || e.kind == ErrorKind::Waiting {
            self.state.clear_pendings(self.pair, &[pending]).await?;
        }
        Ok(Err(e))
    }

    /// Deletes the copy a pending create left on `side`, if it is still that item. Returns
    /// whether it deleted.
    pub(super) async fn delete_orphan(
        &self,
        store: &dyn CalendarStore,
        cal: &CalendarPath,
        side: Side,
        p: &Pending,
    ) -> Result<bool, StoreError> {
        let href = p.href(side);
        let Some(now) = read_one(store, cal, href).await? else {
            return Ok(false);
        };
        let ours = self
            .forms
            .canonical(side, &now.data)
            .is_ok_and(|i| i.identity() == p.identity);
        if !ours {
            return Ok(false); // another item holds the name now; not ours to delete
        }
        // If-Match on the version whose identity was just checked.
        delete(store, cal, href, &now.etag).await.map(|()| true)
    }

    /// `If-Match` update of the copy at `href`; on 412 re-read it and decide again (once). The
    /// caller noted it as pending first ([`pending_update`]): should the process die before the
    /// mapping is recorded, the next pass knows this content on the copy for its own write, not
    /// an edit made there.
    pub(super) async fn update(
        &self,
        dest: Dest<'_>,
        original: Original<'_>,
        (href, etag): (&Href, &Etag),
    ) -> WriteResult {
        let text = self.forms.render(dest.side, &original.item.item);
        let mapping = |etag: Etag| {
            let copy = ItemVersion {
                href: href.clone(),
                etag,
            };
            original.mapping(dest.side, copy)
        };
        let pending = pending_update(
            dest.side,
            (original.href, original.etag),
            (href, etag),
            original.item,
        );
        match dest.store.update(href, etag, &text).await {
            Ok(etag) => return Ok(Ok((mapping(etag), Written::Updated))),
            Err(e) if e.kind == ErrorKind::PreconditionFailed => {}
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.state.clear_pendings(self.pair, &[pending]).await?;
                return self.create(dest, original, false).await;
            }
            Err(e) if e.kind.is_permanent() => {
                self.state.clear_pendings(self.pair, &[pending]).await?;
                return Ok(Err(e));
            }
            Err(e) => return Ok(Err(e)),
        }
        debug!(href = %href, "the copy changed underneath; re-reading");
        let now = match read_one(dest.store, dest.cal, href).await {
            Ok(None) => return self.create(dest, original, false).await,
            Ok(Some(now)) => now,
            Err(e) => return Ok(Err(e)),
        };
        if self
            .forms
            .canonical(dest.side, &now.data)
            .is_ok_and(|i| i.content_hash() == original.item.hash)
        {
            return Ok(Ok((mapping(now.etag), Written::Unchanged)));
        }
        // The plan chose this version (one way: the truth; two ways: the winner); overwrite only
        // the version just read.
        Ok(dest
            .store
            .update(href, &now.etag, &text)
            .await
            .map(|etag| (mapping(etag), Written::Updated)))
    }
}

/// Why a holder stops when its own clock passed its lease's deadline.
pub(super) const EXPIRED_HERE: &str =
    "the lease may have expired: no renewal within its ttl on this node's clock";

/// Fencing, before a write under `lease`: `None` while the lease is still ours; otherwise who
/// took it over, or that it expired. A holder whose lease was taken over (it stalled past its
/// expiry, say) writes nothing more.
pub(super) async fn fence(state: &State, lease: &Lease) -> Result<Option<String>, StateError> {
    // Without a renewal in time (the process was paused, the database is out of reach),
    // the lease may be someone else's by now: no write, whatever the database would say.
    if lease.deadline.passed() {
        return Ok(Some(EXPIRED_HERE.to_string()));
    }
    if state.lease_is_current(lease).await? {
        return Ok(None);
    }
    Ok(Some(match state.lease(&lease.calendar).await? {
        Some(l) if l.token != lease.token => {
            format!("{} (token {}) took over the lease", l.holder, l.token)
        }
        _ => "the lease expired".to_string(),
    }))
}

/// The pending row of a create of `item` (from `from_href`) into `cal` on side `to`, under
/// `name` (by default the one derived from its UID).
pub(crate) fn pending_create(
    cal: &CalendarPath,
    to: Side,
    from_href: &Href,
    item: &Prepared,
    name: Option<&str>,
) -> Pending {
    let name = name.map_or_else(|| target_name(item.item.uid()), str::to_string);
    Pending::new(
        to.other(),
        from_href.clone(),
        cal.join(&name),
        item.identity.clone(),
    )
    .writing(item.hash)
}

/// The pending row of an update to `item` of the copy at `href` (known at `etag`) on side `to`.
pub(crate) fn pending_update(
    to: Side,
    (from_href, from_etag): (&Href, &Etag),
    (href, etag): (&Href, &Etag),
    item: &Prepared,
) -> Pending {
    let mapping = Mapping::between(
        to.other(),
        (from_href.clone(), from_etag.clone()),
        (href.clone(), etag.clone()),
        item.identity.clone(),
        item.hash,
    );
    Pending::update(&mapping, to, item.hash)
}

/// Reads `hrefs` in multiget-sized batches, up to the store's parallelism at once.
pub(crate) async fn fetch_all(
    store: &dyn CalendarStore,
    cal: &CalendarPath,
    hrefs: &[Href],
) -> Result<Vec<store::Fetched>, StoreError> {
    let batches: Vec<Vec<store::Fetched>> =
        stream::iter(hrefs.chunks(FETCH_BATCH).map(<[Href]>::to_vec))
            .map(|batch| fetch_split(store, cal, batch))
            .buffer_unordered(store.parallelism().max(1))
            .try_collect()
            .await?;
    Ok(batches.into_iter().flatten().collect())
}

/// One multiget; when the server refuses it as a whole for something in it (a 400 for one odd
/// href, an answer over the size limit) rather than for being down, its halves are asked apart,
/// down to single items, so what the server cannot serve costs those items alone. If no part of
/// the batch could be read, the server is at fault, not the items: the batch's error stands.
async fn fetch_split(
    store: &dyn CalendarStore,
    cal: &CalendarPath,
    batch: Vec<Href>,
) -> Result<Vec<store::Fetched>, StoreError> {
    let several = batch.len() > 1;
    let mut got = Vec::with_capacity(batch.len());
    let mut first_error = None;
    let mut todo = vec![batch];
    while let Some(hrefs) = todo.pop() {
        match store.fetch(cal, &hrefs).await {
            Ok(items) => got.extend(items),
            Err(e) if e.kind.is_permanent() && hrefs.len() == 1 => {
                got.push((hrefs[0].clone(), Err(e)));
            }
            Err(e) if e.kind.is_permanent() => {
                first_error.get_or_insert(e);
                let (left, right) = hrefs.split_at(hrefs.len() / 2);
                todo.push(right.to_vec());
                todo.push(left.to_vec());
            }
            Err(e) => return Err(e),
        }
    }
    match first_error {
        Some(e) if several && got.iter().all(|(_, r)| r.is_err()) => Err(e),
        _ => Ok(got),
    }
}

/// `If-Match` delete; on 412 re-read and delete the version now there (its original is gone).
pub(super) async fn delete(
    store: &dyn CalendarStore,
    cal: &CalendarPath,
    href: &Href,
    etag: &Etag,
) -> Result<(), StoreError> {
    match store.delete(href, etag).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind == ErrorKind::PreconditionFailed => {
            match read_one(store, cal, href).await? {
                None => Ok(()),
                Some(now) => store.delete(href, &now.etag).await,
            }
        }
        Err(e) => Err(e),
    }
}

/// Reads one item; `None` if it does not exist.
pub(crate) async fn read_one(
    store: &dyn CalendarStore,
    cal: &CalendarPath,
    href: &Href,
) -> Result<Option<crate::store::Resource>, StoreError> {
    let mut got = store.fetch(cal, std::slice::from_ref(href)).await?;
    match got.pop() {
        Some((_, Ok(r))) => Ok(Some(r)),
        Some((_, Err(e))) if e.kind == ErrorKind::NotFound => Ok(None),
        Some((_, Err(e))) => Err(e),
        None => Ok(None),
    }
}
