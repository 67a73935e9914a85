//! What the engine needs from a calendar server: the `CalendarStore` trait and the values it
//! passes (versions, bodies, changes since a watermark).

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::error::{ErrorKind, StoreError, StoreResult};
use crate::domain::mailbox::{CalendarProps, HomeListing};
use crate::domain::requests::HttpCounts;
use crate::domain::types::{CalendarPath, Etag, Href, SyncToken};

use super::{health, push};

/// An item's current version as a listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemVersion {
    pub href: Href,
    pub etag: Etag,
}

/// An item's body with the version it was read at.
#[derive(Debug, Clone)]
pub struct Resource {
    pub href: Href,
    pub etag: Etag,
    pub data: String,
}

/// What changed in a calendar since a watermark.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Items created or changed since the watermark (every item when `complete`).
    pub changed: Vec<ItemVersion>,
    /// Items deleted since the watermark (empty when `complete`: absence says it).
    pub deleted: Vec<Href>,
    /// `changed` is the full listing: anything not in it is gone.
    pub complete: bool,
    /// The watermark to ask from next time, if the store supports it.
    pub token: Option<SyncToken>,
}

/// Per-item outcome of a batch fetch: one missing or unreadable item does not fail the batch.
pub type Fetched = (Href, StoreResult<Resource>);

#[async_trait]
pub trait CalendarStore: Send + Sync {
    /// Names the store in messages (kind and location; never credentials).
    fn describe(&self) -> String;

    /// Succeeds if `cal` exists and is a calendar.
    async fn check_calendar(&self, cal: &CalendarPath) -> StoreResult<()>;

    /// Every item in `cal` with its etag.
    async fn list(&self, cal: &CalendarPath) -> StoreResult<Vec<ItemVersion>>;

    /// Changes since `since`; a store without watermarks (or given none) lists everything.
    /// An expired or invalid watermark also yields a complete listing, never an error.
    async fn changes(&self, cal: &CalendarPath, since: Option<&SyncToken>) -> StoreResult<Changes> {
        let _ = since;
        Ok(Changes {
            changed: self.list(cal).await?,
            deleted: Vec::new(),
            complete: true,
            token: None,
        })
    }

    /// Reads many items at once.
    async fn fetch(&self, cal: &CalendarPath, hrefs: &[Href]) -> StoreResult<Vec<Fetched>>;

    /// Creates `name` in `cal` only if nothing exists there yet (`If-None-Match: *`); an existing
    /// item is `PreconditionFailed`.
    async fn create(&self, cal: &CalendarPath, name: &str, data: &str) -> StoreResult<ItemVersion>;

    /// Replaces the item only if it is still at `etag` (`If-Match`); returns the new etag.
    async fn update(&self, href: &Href, etag: &Etag, data: &str) -> StoreResult<Etag>;

    /// Deletes the item only if it is still at `etag` (`If-Match`).
    async fn delete(&self, href: &Href, etag: &Etag) -> StoreResult<()>;

    /// How many reads or writes a pass may have in flight on this store at once.
    fn parallelism(&self) -> usize {
        1
    }

    /// HTTP request counters, for stores that speak HTTP.
    fn counts(&self) -> Option<HttpCounts> {
        None
    }

    /// Whether the server answers, for stores behind a network (see [`health`](super::health)).
    fn health(&self) -> Option<Arc<health::ServerHealth>> {
        None
    }

    /// The server's software, once it has answered, if tandem tells it apart.
    fn software(&self) -> Option<&'static str> {
        None
    }

    /// What this server does differently from the rules tandem's promises rest on, and what
    /// tandem does about each, as far as its answers so far tell (see [`quirks`](super::quirks)).
    fn departures(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Whether an ETag can name two different versions of one item (see
    /// [`Quirks::reuses_etags`](super::quirks::Quirks::reuses_etags)), as far as the server's answers so far tell.
    fn reuses_etags(&self) -> bool {
        false
    }

    /// What the operator must read before tandem's first write to this server (one that
    /// schedules whatever a copy says): once per process, `None` after.
    fn warning_once(&self) -> Option<String> {
        None
    }

    /// One cheap request to see whether a server that was down answers again; `Err` says why
    /// not. A store without a server always answers.
    async fn probe(&self) -> Result<(), String> {
        Ok(())
    }

    /// The calendar home the principal at `principal` names (RFC 4791 §6.2.1).
    async fn home_of(&self, principal: &str) -> StoreResult<CalendarPath> {
        Err(StoreError::new(
            ErrorKind::Permanent,
            format!(
                "{}: has no principals, so not {principal} (give the server `home`)",
                self.describe()
            ),
        ))
    }

    /// The collections of the home at `home`, with their properties.
    async fn collections(&self, home: &CalendarPath) -> StoreResult<HomeListing> {
        Err(StoreError::new(
            ErrorKind::Permanent,
            format!("{}: cannot list the calendars of {home}", self.describe()),
        ))
    }

    /// Makes a calendar at `cal` with `props`.
    async fn make_calendar(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        let _ = props;
        Err(StoreError::new(
            ErrorKind::Permanent,
            format!("{}: cannot make calendar {cal}", self.describe()),
        ))
    }

    /// Sets `cal`'s display name, colour and description to those of `props`.
    async fn set_props(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        let _ = props;
        Err(StoreError::new(
            ErrorKind::Permanent,
            format!("{}: cannot change calendar {cal}", self.describe()),
        ))
    }

    /// WebDAV-Push: whether `cal`'s server pushes its changes to a subscriber.
    async fn push_offered(&self, cal: &CalendarPath) -> StoreResult<bool> {
        let _ = cal;
        Ok(false)
    }

    /// Subscribes to changes of `cal` (or renews the subscription of the same push URL).
    async fn push_subscribe(
        &self,
        cal: &CalendarPath,
        sub: &push::Subscribe,
    ) -> StoreResult<push::Subscribed> {
        let _ = sub;
        Err(StoreError::new(
            ErrorKind::Permanent,
            format!("{}: {cal} offers no push", self.describe()),
        ))
    }

    /// Ends a subscription (its `location`); one already gone is no error.
    async fn push_unsubscribe(&self, location: &str) -> StoreResult<()> {
        let _ = location;
        Ok(())
    }

    /// tandem's own writes to `cal` ask the server not to push them to the subscription at
    /// `location` (`Push-Dont-Notify`); `None` stops asking.
    fn push_quiet(&self, cal: &CalendarPath, location: Option<&str>) {
        let _ = (cal, location);
    }
}
