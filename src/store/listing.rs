//! How a CalDAV calendar is listed: sync-collection pages (RFC 6578) from a watermark, the
//! CTag that ends a quiet pass early, and a PROPFIND listing for servers without sync.

use std::collections::{BTreeMap, HashSet};

use http::StatusCode;
use libdav::dav::{GetProperty, ListResources, SyncCollection, WebDavError};
use tracing::debug;

use super::caldav::{CaldavStore, GETCTAG, MAX_SYNC_PAGES};
use super::calendar::{Changes, ItemVersion};
use super::dav::{Members, SyncPage, TruncatableSync, path_of, same_path, status_error};
use super::http::HttpFault;
use crate::domain::error::{ErrorKind, StoreError, StoreResult};
use crate::domain::types::{CalendarPath, Etag, SyncToken};

impl CaldavStore {
    pub(super) async fn sync_page(
        &self,
        cal: &CalendarPath,
        token: Option<&SyncToken>,
    ) -> Result<SyncPage, WebDavError<HttpFault>> {
        let mut req = SyncCollection::new(cal.as_str());
        if let Some(t) = token {
            req = req.with_sync_token(t.as_str());
        }
        self.dav
            .request(TruncatableSync {
                inner: req,
                collection: cal.as_str(),
            })
            .await
    }

    /// The calendar's CTag (`CS:getctag`), which changes whenever an item does: one cheap
    /// PROPFIND tells an unchanged calendar without the server working out a sync-collection
    /// answer. `None` when the server has none. Only an error the listing would meet as well
    /// (the server unreachable or busy) fails it; any other answer means "no CTag" and the
    /// listing decides (a property a server lacks comes back as a 404, like a calendar that is
    /// gone).
    pub(super) async fn ctag(&self, cal: &CalendarPath) -> StoreResult<Option<String>> {
        match self
            .dav
            .request(GetProperty::new(cal.as_str(), &GETCTAG))
            .await
        {
            Ok(got) => Ok(got
                .value
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())),
            Err(e) => {
                // A refused login fails here; a calendar without a CTag is listed without.
                let refused = matches!(e, WebDavError::BadStatusCode(StatusCode::UNAUTHORIZED));
                let e = self.error("PROPFIND", cal.as_str(), e);
                if refused || e.kind.is_retryable() {
                    return Err(e);
                }
                debug!(calendar = %cal, error = %e, "no CTag; listing with sync-collection");
                Ok(None)
            }
        }
    }

    /// A sync-collection listing from `since` (everything when `None`), following truncated
    /// answers; the fallbacks are in the module's header.
    pub(super) async fn sync_listing(
        &self,
        cal: &CalendarPath,
        since: Option<&SyncToken>,
    ) -> StoreResult<Changes> {
        let mut token = since.cloned();
        let mut changed: BTreeMap<String, String> = BTreeMap::new();
        let mut deleted: HashSet<String> = HashSet::new();
        let mut pages = 0;
        loop {
            pages += 1;
            match self.sync_page(cal, token.as_ref()).await {
                Ok(page) => {
                    for r in page.resp.changed {
                        if r.resource_type.is_collection || same_path(&r.href, cal.as_str()) {
                            continue;
                        }
                        let href = path_of(&r.href).to_string();
                        deleted.remove(&href);
                        if let Some(etag) = r.etag {
                            changed.insert(href, etag);
                        }
                    }
                    for href in page.resp.deleted {
                        let href = path_of(&href).to_string();
                        changed.remove(&href);
                        deleted.insert(href);
                    }
                    token = Some(SyncToken::new(page.resp.new_sync_token));
                    if !page.truncated {
                        break;
                    }
                    if pages >= MAX_SYNC_PAGES {
                        return Err(StoreError::new(
                            ErrorKind::Transient,
                            format!(
                                "REPORT {}: the server truncated {pages} sync-collection answers in a row",
                                self.url(cal.as_str())
                            ),
                        ));
                    }
                    debug!(calendar = %cal, pages, "sync-collection truncated; continuing from the new token");
                }
                // An expired or unknown token: start over with a full listing.
                Err(WebDavError::PreconditionFailed(_))
                | Err(WebDavError::BadStatusCode(
                    StatusCode::FORBIDDEN | StatusCode::CONFLICT | StatusCode::BAD_REQUEST,
                )) if token.is_some() && since.is_some() && pages == 1 => {
                    debug!(calendar = %cal, "sync token refused; listing everything");
                    return Box::pin(self.sync_listing(cal, None)).await;
                }
                // No sync support at all: PROPFIND from now on.
                Err(WebDavError::BadStatusCode(
                    StatusCode::FORBIDDEN
                    | StatusCode::METHOD_NOT_ALLOWED
                    | StatusCode::NOT_IMPLEMENTED
                    | StatusCode::BAD_REQUEST,
                )) if token.is_none() => {
                    debug!(calendar = %cal, "sync-collection refused; listing with PROPFIND");
                    self.no_sync
                        .lock()
                        .expect("no panics while held")
                        .insert(cal.clone());
                    return Ok(Changes {
                        changed: self.propfind_list(cal).await?,
                        deleted: Vec::new(),
                        complete: true,
                        token: None,
                    });
                }
                Err(e) => return Err(self.error("REPORT", cal.as_str(), e)),
            }
        }
        let complete = since.is_none();
        let mut members = Members::of(cal);
        let changed = changed
            .into_iter()
            .filter_map(|(h, e)| {
                Some(ItemVersion {
                    href: members.check(&h)?,
                    etag: Etag::new(e),
                })
            })
            .collect();
        Ok(Changes {
            changed,
            deleted: if complete {
                Vec::new()
            } else {
                deleted
                    .into_iter()
                    .filter_map(|h| members.check(&h))
                    .collect()
            },
            complete,
            token,
        })
    }

    /// PROPFIND Depth 1: every item with its etag.
    pub(super) async fn propfind_list(&self, cal: &CalendarPath) -> StoreResult<Vec<ItemVersion>> {
        let got = self
            .dav
            .request(ListResources::new(cal.as_str()))
            .await
            .map_err(|e| self.error("PROPFIND", cal.as_str(), e))?;
        // Some servers (Xandikos) answer 207 with a 404 inside for a missing collection.
        if got
            .resources
            .iter()
            .any(|r| r.status == Some(StatusCode::NOT_FOUND) && same_path(&r.href, cal.as_str()))
        {
            return Err(status_error(
                "PROPFIND",
                &self.url(cal.as_str()),
                StatusCode::NOT_FOUND,
            ));
        }
        let mut members = Members::of(cal);
        Ok(got
            .resources
            .into_iter()
            .filter(|r| !r.resource_type.is_collection && !same_path(&r.href, cal.as_str()))
            .filter_map(|r| {
                Some(ItemVersion {
                    href: members.check(&r.href)?,
                    etag: Etag::new(r.etag?),
                })
            })
            .collect())
    }
}
