//! Per-server request limits: a rate (governor) and a cap on requests in flight (a semaphore).
//!
//! Wraps any store, so every backend honours `requests_per_second` and `max_concurrency` the same
//! way. A batch fetch counts as one request, as a CalDAV multiget does.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::calendar::{CalendarStore, Changes, Fetched, ItemVersion};
use crate::domain::error::StoreResult;
use crate::domain::mailbox::{CalendarProps, HomeListing};
use crate::domain::types::{CalendarPath, Etag, Href, SyncToken};

pub struct Limited {
    inner: Arc<dyn CalendarStore>,
    rate: Option<DefaultDirectRateLimiter>,
    slots: Option<Semaphore>,
    cap: Option<usize>,
}

impl Limited {
    pub fn new(
        inner: Arc<dyn CalendarStore>,
        requests_per_second: Option<u32>,
        max_concurrency: Option<usize>,
    ) -> Self {
        Limited {
            inner,
            rate: requests_per_second
                .and_then(NonZeroU32::new)
                .map(|r| RateLimiter::direct(Quota::per_second(r))),
            slots: max_concurrency.filter(|n| *n > 0).map(Semaphore::new),
            cap: max_concurrency.filter(|n| *n > 0),
        }
    }

    /// Waits for the rate limiter and a free slot; the slot is held until the permit drops.
    async fn gate(&self) -> Option<SemaphorePermit<'_>> {
        let permit = match &self.slots {
            Some(s) => Some(s.acquire().await.expect("the semaphore is never closed")),
            None => None,
        };
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        permit
    }
}

#[async_trait]
impl CalendarStore for Limited {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn counts(&self) -> Option<crate::domain::requests::HttpCounts> {
        self.inner.counts()
    }

    fn health(&self) -> Option<Arc<super::health::ServerHealth>> {
        self.inner.health()
    }

    fn software(&self) -> Option<&'static str> {
        self.inner.software()
    }

    fn departures(&self) -> Vec<&'static str> {
        self.inner.departures()
    }

    fn reuses_etags(&self) -> bool {
        self.inner.reuses_etags()
    }

    fn warning_once(&self) -> Option<String> {
        self.inner.warning_once()
    }

    async fn probe(&self) -> Result<(), String> {
        self.inner.probe().await
    }

    async fn home_of(&self, principal: &str) -> StoreResult<CalendarPath> {
        let _slot = self.gate().await;
        self.inner.home_of(principal).await
    }

    async fn collections(&self, home: &CalendarPath) -> StoreResult<HomeListing> {
        let _slot = self.gate().await;
        self.inner.collections(home).await
    }

    async fn make_calendar(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        let _slot = self.gate().await;
        self.inner.make_calendar(cal, props).await
    }

    async fn set_props(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        let _slot = self.gate().await;
        self.inner.set_props(cal, props).await
    }

    async fn push_offered(&self, cal: &CalendarPath) -> StoreResult<bool> {
        self.inner.push_offered(cal).await
    }

    async fn push_subscribe(
        &self,
        cal: &CalendarPath,
        sub: &super::push::Subscribe,
    ) -> StoreResult<super::push::Subscribed> {
        self.inner.push_subscribe(cal, sub).await
    }

    async fn push_unsubscribe(&self, location: &str) -> StoreResult<()> {
        self.inner.push_unsubscribe(location).await
    }

    fn push_quiet(&self, cal: &CalendarPath, location: Option<&str>) {
        self.inner.push_quiet(cal, location)
    }

    fn parallelism(&self) -> usize {
        let inner = self.inner.parallelism();
        self.cap.map_or(inner, |cap| inner.min(cap))
    }

    async fn check_calendar(&self, cal: &CalendarPath) -> StoreResult<()> {
        let _slot = self.gate().await;
        self.inner.check_calendar(cal).await
    }

    async fn list(&self, cal: &CalendarPath) -> StoreResult<Vec<ItemVersion>> {
        let _slot = self.gate().await;
        self.inner.list(cal).await
    }

    async fn changes(&self, cal: &CalendarPath, since: Option<&SyncToken>) -> StoreResult<Changes> {
        let _slot = self.gate().await;
        self.inner.changes(cal, since).await
    }

    async fn fetch(&self, cal: &CalendarPath, hrefs: &[Href]) -> StoreResult<Vec<Fetched>> {
        let _slot = self.gate().await;
        self.inner.fetch(cal, hrefs).await
    }

    async fn create(&self, cal: &CalendarPath, name: &str, data: &str) -> StoreResult<ItemVersion> {
        let _slot = self.gate().await;
        self.inner.create(cal, name, data).await
    }

    async fn update(&self, href: &Href, etag: &Etag, data: &str) -> StoreResult<Etag> {
        let _slot = self.gate().await;
        self.inner.update(href, etag, data).await
    }

    async fn delete(&self, href: &Href, etag: &Etag) -> StoreResult<()> {
        let _slot = self.gate().await;
        self.inner.delete(href, etag).await
    }
}
