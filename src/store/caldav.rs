//! CalDAV (RFC 4791) through libdav, over [`Transport`] for limits, retries and counting.
//!
//! Listing uses `sync-collection` (RFC 6578) with the stored token. The stored watermark also
//! holds the calendar's CTag, so an unchanged calendar costs one PROPFIND of that property, which
//! servers answer more cheaply than a sync-collection report (Radicale about a fifth faster). A
//! truncated answer (507 on the collection) is continued from its new token; an invalid token
//! (Radicale: 403 `valid-sync-token`, Xandikos: 412) falls back to a full listing; a server
//! without sync support is listed with PROPFIND Depth 1. Reads are `calendar-multiget`; writes
//! are conditional PUT/DELETE.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::{Request, StatusCode, Uri};
use libdav::caldav::GetCalendarResources;
use libdav::dav::{Delete, GetEtag, GetProperty, Propfind, PutResource, WebDavClient, WebDavError};
use libdav::{Depth, names};
use secrecy::SecretString;
use tracing::debug;

use super::calendar::{CalendarStore, Changes, Fetched, ItemVersion, Resource};
use super::dav::{malformed, path_of, refused, status_error, watermark};
use super::http::{HttpFault, HttpSettings, HttpStats, Transport};
use super::quirks::Quirks;
use crate::domain::error::{ErrorKind, StoreError, StoreResult};
use crate::domain::mailbox::{CalendarProps, HomeListing};
use crate::domain::requests::HttpCounts;
use crate::domain::types::{CalendarPath, Etag, Href, SyncToken};

const ICS: &str = "text/calendar; charset=utf-8";

/// A calendar's CTag (Apple CalendarServer's extension; Radicale, Xandikos, SabreDAV and Google
/// have it): a value that changes whenever the calendar's content does.
pub(super) const GETCTAG: libdav::PropertyName<'static, 'static> =
    libdav::PropertyName::new(names::CALENDAR_SERVER, "getctag");

/// Pages of one sync-collection listing before we call the server's truncation endless.
pub(super) const MAX_SYNC_PAGES: usize = 10_000;

pub struct CaldavStore {
    base: Uri,
    pub(super) dav: WebDavClient<Transport>,
    transport: Transport,
    /// Calendars whose server refused sync-collection: listed by PROPFIND from then on.
    pub(super) no_sync: Mutex<HashSet<CalendarPath>>,
    /// The server's warning was logged (see `CalendarStore::warning_once`).
    warned: std::sync::atomic::AtomicBool,
    /// Held while asking the server what it is (see `quirks`): one asks, the others wait.
    asking: tokio::sync::Mutex<()>,
}

impl CaldavStore {
    pub fn new(
        url: &str,
        credentials: Option<(&str, &SecretString)>,
        settings: HttpSettings,
    ) -> StoreResult<CaldavStore> {
        let base: Uri = url.parse().map_err(|e| {
            StoreError::new(ErrorKind::Permanent, format!("{url:?} is not a URL: {e}"))
        })?;
        let plain_remote = base.scheme_str() == Some("http")
            && !matches!(
                base.host(),
                Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
            );
        if plain_remote && credentials.is_some() {
            return Err(StoreError::new(
                ErrorKind::Permanent,
                format!(
                    "{url}: refusing to send a password over plain http to a host other than loopback; use https"
                ),
            ));
        }
        let tls = base.scheme_str() == Some("https");
        let transport = Transport::new(credentials, settings, tls)
            .map_err(|e| StoreError::new(ErrorKind::Permanent, e))?;
        Ok(CaldavStore {
            dav: WebDavClient::new(base.clone(), transport.clone()),
            base,
            transport,
            no_sync: Mutex::new(HashSet::new()),
            warned: Default::default(),
            asking: Default::default(),
        })
    }

    pub fn stats(&self) -> Arc<HttpStats> {
        self.transport.stats()
    }

    /// Writes this server is allowed in flight now (adaptive unless fixed by the config).
    pub fn write_limit(&self) -> usize {
        self.transport.write_limit()
    }

    /// One request libdav has no type for, through the transport (limits, retries, counting):
    /// its status, headers and body.
    pub(super) async fn raw(
        &self,
        op: &str,
        path: &str,
        req: Result<Request<String>, http::Error>,
    ) -> StoreResult<(StatusCode, http::HeaderMap, String)> {
        use http_body_util::BodyExt as _;
        use tower_service::Service as _;
        let req = req.map_err(|e| {
            StoreError::new(
                ErrorKind::Permanent,
                format!("{op} {}: cannot build the request: {e}", self.url(path)),
            )
        })?;
        let resp = self
            .transport
            .clone()
            .call(req)
            .await
            .map_err(|f| StoreError::new(f.kind, f.message))?;
        let (head, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok((
            head.status,
            head.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }

    /// The full URL of a server path, for messages (libdav resolves paths against the authority).
    pub(super) fn url(&self, path: &str) -> String {
        format!(
            "{}://{}{path}",
            self.base.scheme_str().unwrap_or("http"),
            self.base.authority().map_or("", |a| a.as_str())
        )
    }

    /// Turns a libdav error into a store error naming the request.
    pub(super) fn error(&self, op: &str, path: &str, e: WebDavError<HttpFault>) -> StoreError {
        let url = self.url(path);
        match e {
            WebDavError::Request(libdav::dav::RequestError::Client(fault)) => {
                StoreError::new(fault.kind, fault.message)
            }
            WebDavError::Request(libdav::dav::RequestError::Http(e)) => StoreError::new(
                ErrorKind::Transient,
                format!("{op} {url}: reading the answer failed: {e}"),
            ),
            WebDavError::BadStatusCode(s) => status_error(op, &url, s),
            WebDavError::PreconditionFailed(p) => {
                let name: libdav::PropertyName = p.into();
                StoreError::new(
                    ErrorKind::PreconditionFailed,
                    format!("{op} {url}: precondition {} failed", name.name()),
                )
            }
            WebDavError::Xml(e) => malformed(op, &url, e),
            WebDavError::InvalidResponse(e) => StoreError::new(
                ErrorKind::InvalidData,
                format!("{op} {url}: the server's answer makes no sense: {e}"),
            ),
            WebDavError::InvalidInput(e) => StoreError::new(
                ErrorKind::Permanent,
                format!("{op} {url}: cannot build the request: {e}"),
            ),
        }
    }

    /// What the server does differently. Until one of its answers has told (SOGo leaves its
    /// marks off REPORT answers), a PROPFIND of `at` asks.
    async fn quirks(&self, at: &str) -> &Quirks {
        let quirks = self.transport.quirks();
        if quirks.software().is_none() {
            let _one = self.asking.lock().await;
            if quirks.software().is_none() {
                // Any answer tells; a failure here shows again on the request that follows.
                let _ = self.dav.request(GetProperty::new(at, &GETCTAG)).await;
            }
        }
        quirks
    }

    /// A create's refusal. On a server that files attendees' copies itself (SOGo), a 412 on a
    /// free name is its wait for the organizer's copy, and a 409 the copy it filed meanwhile:
    /// the item waits (see `ErrorKind::Waiting`).
    fn create_error(&self, href: &Href, e: WebDavError<HttpFault>) -> StoreError {
        let status = match &e {
            WebDavError::BadStatusCode(s) => Some(*s),
            WebDavError::PreconditionFailed(_) => Some(StatusCode::PRECONDITION_FAILED),
            _ => None,
        };
        let url = self.url(href.as_str());
        let quirks = self.transport.quirks();
        let why = match status {
            _ if !quirks.files_attendee_copies() => None,
            Some(StatusCode::PRECONDITION_FAILED) => Some(
                "refuses an attendee's copy of a meeting until the organizer's copy is in the organizer's calendar",
            ),
            Some(StatusCode::CONFLICT) => Some(
                "already holds its own copy of this meeting (it files one into each attendee's calendar when the organizer's copy is written); the next pass takes it over",
            ),
            _ => None,
        };
        match why {
            Some(why) => StoreError::new(
                ErrorKind::Waiting,
                format!("PUT {url}: {} {why}", quirks.name()),
            ),
            None => self.error("PUT", href.as_str(), e),
        }
    }

    /// On a server that ignores `If-None-Match` (see [`Quirks`]): a create where an item is
    /// already refused as the precondition would. What remains is the moment between this
    /// check and the write.
    async fn check_absent(&self, href: &Href) -> StoreResult<()> {
        match self.etag_of(href).await {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Err(StoreError::new(
                ErrorKind::PreconditionFailed,
                format!(
                    "PUT {}: an item is already there (checked first: this server ignores If-None-Match)",
                    self.url(href.as_str())
                ),
            )),
        }
    }

    /// On a server that ignores `If-Match` on DELETE, or on a PUT to an item that is gone: the
    /// item must still be the version `etag`.
    async fn check_version(&self, op: &str, href: &Href, etag: &Etag) -> StoreResult<()> {
        let now = self.etag_of(href).await?;
        match now == *etag {
            true => Ok(()),
            false => Err(StoreError::new(
                ErrorKind::PreconditionFailed,
                format!(
                    "{op} {}: the item changed (now {now}; checked first: this server does not always honour If-Match)",
                    self.url(href.as_str())
                ),
            )),
        }
    }

    async fn etag_of(&self, href: &Href) -> StoreResult<Etag> {
        let got = self
            .dav
            .request(GetEtag::new(href.as_str()))
            .await
            .map_err(|e| self.error("PROPFIND", href.as_str(), e))?;
        Ok(Etag::new(got.etag))
    }
}

/// The collection properties `check_calendar` reads.
const CHECK_PROPS: [&libdav::PropertyName<'static, 'static>; 2] =
    [&names::RESOURCETYPE, &names::SUPPORTED_REPORT_SET];

#[async_trait]
impl CalendarStore for CaldavStore {
    fn describe(&self) -> String {
        format!("caldav {}", self.base)
    }

    fn parallelism(&self) -> usize {
        self.transport.max_concurrency()
    }

    fn counts(&self) -> Option<HttpCounts> {
        Some(self.transport.stats().counts())
    }

    fn health(&self) -> Option<Arc<crate::store::health::ServerHealth>> {
        Some(self.transport.health())
    }

    async fn probe(&self) -> Result<(), String> {
        self.transport.probe(&self.base.to_string()).await
    }

    fn software(&self) -> Option<&'static str> {
        self.transport.quirks().software().map(|s| s.name())
    }

    fn departures(&self) -> Vec<&'static str> {
        self.transport.quirks().departures()
    }

    fn reuses_etags(&self) -> bool {
        self.transport.quirks().reuses_etags()
    }

    fn warning_once(&self) -> Option<String> {
        let warning = self.transport.quirks().warning()?;
        let first = !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed);
        first.then(|| format!("{}: {warning}", self.describe()))
    }

    async fn home_of(&self, principal: &str) -> StoreResult<CalendarPath> {
        self.home_named_by(principal).await
    }

    async fn collections(&self, home: &CalendarPath) -> StoreResult<HomeListing> {
        self.home_listing(home).await
    }

    async fn make_calendar(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        self.mkcalendar(cal, props).await
    }

    async fn set_props(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        self.proppatch(cal, props).await
    }

    async fn push_offered(&self, cal: &CalendarPath) -> StoreResult<bool> {
        let req = Request::builder()
            .method("PROPFIND")
            .uri(self.url(cal.as_str()))
            .header("depth", "0")
            .header("content-type", "application/xml; charset=utf-8")
            .body(super::push::PROPFIND.to_string());
        let (status, _, body) = self.raw("PROPFIND", cal.as_str(), req).await?;
        if !status.is_success() {
            return Ok(false);
        }
        super::push::offers_web_push(&body)
            .map_err(|e| malformed("PROPFIND", &self.url(cal.as_str()), e))
    }

    async fn push_subscribe(
        &self,
        cal: &CalendarPath,
        sub: &super::push::Subscribe,
    ) -> StoreResult<super::push::Subscribed> {
        let url = self.url(cal.as_str());
        // Any other content type makes the POST "add a member" on some servers.
        let req = Request::post(&url)
            .header("content-type", "application/xml; charset=utf-8")
            .body(super::push::register_body(sub));
        let (status, headers, body) = self.raw("POST push-register", cal.as_str(), req).await?;
        if !status.is_success() {
            return Err(refused("POST push-register", &url, status, &body));
        }
        let location = headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                StoreError::new(
                    ErrorKind::InvalidData,
                    format!(
                        "POST push-register {url}: the answer names no subscription (no Location)"
                    ),
                )
            })?;
        let location = url::Url::parse(&url)
            .and_then(|base| base.join(location))
            .map(String::from)
            .map_err(|e| {
                StoreError::new(
                    ErrorKind::InvalidData,
                    format!("POST push-register {url}: Location {location:?}: {e}"),
                )
            })?;
        let expires_at = headers
            .get(http::header::EXPIRES)
            .and_then(|v| v.to_str().ok())
            .and_then(super::push::parse_http_date)
            .unwrap_or(sub.expires_at);
        Ok(super::push::Subscribed {
            location,
            expires_at,
        })
    }

    async fn push_unsubscribe(&self, location: &str) -> StoreResult<()> {
        let req = Request::delete(location).body(String::new());
        let (status, _, _) = self.raw("DELETE", location, req).await?;
        match status {
            s if s.is_success() || s == StatusCode::NOT_FOUND || s == StatusCode::GONE => Ok(()),
            s => Err(status_error("DELETE", location, s)),
        }
    }

    fn push_quiet(&self, cal: &CalendarPath, location: Option<&str>) {
        self.transport.set_quiet(cal.as_str(), location);
    }

    async fn check_calendar(&self, cal: &CalendarPath) -> StoreResult<()> {
        let url = self.url(cal.as_str());
        let got = self
            .dav
            .request(
                Propfind::new(cal.as_str())
                    .with_properties(&CHECK_PROPS)
                    .with_depth(Depth::Zero),
            )
            .await
            .map_err(|e| self.error("PROPFIND", cal.as_str(), e))?;
        let doc = got.xml_tree().map_err(|e| malformed("PROPFIND", &url, e))?;
        let missing = doc
            .descendants()
            .filter(|n| n.tag_name() == names::RESPONSE)
            .any(|r| {
                r.children().any(|n| {
                    n.tag_name() == names::STATUS
                        && n.text()
                            .is_some_and(|t| t.split_whitespace().nth(1) == Some("404"))
                })
            });
        if missing {
            return Err(status_error("PROPFIND", &url, StatusCode::NOT_FOUND));
        }
        let rtype = doc
            .descendants()
            .find(|n| n.tag_name() == names::RESOURCETYPE);
        let is_calendar =
            rtype.is_some_and(|r| r.descendants().any(|n| n.tag_name() == names::CALENDAR));
        if !is_calendar {
            return Err(StoreError::new(
                ErrorKind::Permanent,
                format!("PROPFIND {url}: not a calendar collection"),
            ));
        }
        let reports = doc
            .descendants()
            .find(|n| n.tag_name() == names::SUPPORTED_REPORT_SET);
        if let Some(reports) = reports
            && reports.has_children()
            && !reports
                .descendants()
                .any(|n| n.tag_name() == names::SYNC_COLLECTION)
        {
            debug!(%url, "no sync-collection in supported-report-set; listing with PROPFIND");
            self.no_sync
                .lock()
                .expect("no panics while held")
                .insert(cal.clone());
        }
        Ok(())
    }

    async fn list(&self, cal: &CalendarPath) -> StoreResult<Vec<ItemVersion>> {
        self.propfind_list(cal).await
    }

    async fn changes(&self, cal: &CalendarPath, since: Option<&SyncToken>) -> StoreResult<Changes> {
        if self
            .no_sync
            .lock()
            .expect("no panics while held")
            .contains(cal)
        {
            return Ok(Changes {
                changed: self.propfind_list(cal).await?,
                deleted: Vec::new(),
                complete: true,
                token: None,
            });
        }
        let (sync, known) = match since {
            Some(since) => {
                let (sync, known) = watermark::split(since.as_str());
                (Some(SyncToken::new(sync)), known)
            }
            None => (None, None),
        };
        // Read before the listing (a full one too, so that the pass after a first sync can
        // end at the CTag): a change made between the two shows as a new CTag next time. A
        // CTag that counts seconds is no use (see `Quirks::coarse_ctag`); it is known only
        // once the server has told what it is, which this PROPFIND does.
        let quirks = self.transport.quirks();
        let ctag = match known {
            _ if quirks.coarse_ctag() => None,
            Some("") if quirks.software().is_some() => None,
            _ => self.ctag(cal).await?,
        }
        .filter(|_| !quirks.coarse_ctag());
        if let Some(since) = since
            && ctag.is_some()
            && ctag.as_deref() == known
        {
            return Ok(Changes {
                changed: Vec::new(),
                deleted: Vec::new(),
                complete: false,
                token: Some(since.clone()),
            });
        }
        let mut changes = self.sync_listing(cal, sync.as_ref()).await?;
        changes.token = changes
            .token
            .map(|t| SyncToken::new(watermark::join(t.as_str(), ctag.as_deref())));
        Ok(changes)
    }

    async fn fetch(&self, cal: &CalendarPath, hrefs: &[Href]) -> StoreResult<Vec<Fetched>> {
        if hrefs.is_empty() {
            return Ok(Vec::new());
        }
        let got = self
            .dav
            .request(
                GetCalendarResources::new(cal.as_str()).with_hrefs(hrefs.iter().map(Href::as_str)),
            )
            .await
            .map_err(|e| self.error("REPORT", cal.as_str(), e))?;
        let mut by_href: HashMap<String, libdav::FetchedResource> = got
            .resources
            .into_iter()
            .map(|r| (path_of(&r.href).to_string(), r))
            .collect();
        Ok(hrefs
            .iter()
            .map(|href| {
                let res = match by_href.remove(href.as_str()) {
                    Some(r) => match r.content {
                        Ok(c) => Ok(Resource {
                            href: href.clone(),
                            etag: Etag::new(c.etag),
                            data: c.data,
                        }),
                        Err(s) => Err(status_error("REPORT", &self.url(href.as_str()), s)),
                    },
                    None => Err(StoreError::new(
                        ErrorKind::NotFound,
                        format!("{}: not in the multiget answer", self.url(href.as_str())),
                    )),
                };
                (href.clone(), res)
            })
            .collect())
    }

    async fn create(&self, cal: &CalendarPath, name: &str, data: &str) -> StoreResult<ItemVersion> {
        let href = cal.join(name);
        if self.quirks(href.as_str()).await.ignores_preconditions() {
            self.check_absent(&href).await?;
        }
        let put = self
            .dav
            .request(PutResource::new(href.as_str()).create(data.to_string(), ICS))
            .await
            .map_err(|e| self.create_error(&href, e))?;
        // No ETag means the server changed what we sent (RFC 4791 §5.3.4): ask for it.
        let etag = match put.etag {
            Some(e) => Etag::new(e),
            None => self.etag_of(&href).await?,
        };
        Ok(ItemVersion { href, etag })
    }

    async fn update(&self, href: &Href, etag: &Etag, data: &str) -> StoreResult<Etag> {
        // SOGo honours a stale If-Match on PUT, but writes an item that is gone.
        if self.quirks(href.as_str()).await.ignores_preconditions() {
            self.check_version("PUT", href, etag).await?;
        }
        let put = self
            .dav
            .request(PutResource::new(href.as_str()).update(data.to_string(), ICS, etag.as_str()))
            .await
            .map_err(|e| self.error("PUT", href.as_str(), e))?;
        match put.etag {
            Some(e) => Ok(Etag::new(e)),
            None => self.etag_of(href).await,
        }
    }

    async fn delete(&self, href: &Href, etag: &Etag) -> StoreResult<()> {
        if self.quirks(href.as_str()).await.ignores_preconditions() {
            self.check_version("DELETE", href, etag).await?;
        }
        self.dav
            .request(Delete::new(href.as_str()).with_etag(etag.as_str()))
            .await
            .map(|_| ())
            .map_err(|e| self.error("DELETE", href.as_str(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_password_over_plain_http_to_a_remote_host() {
        let pw = SecretString::from("hunter2".to_string());
        let err = CaldavStore::new(
            "http://caldav.example/",
            Some(("u", &pw)),
            HttpSettings::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("plain http"), "{err}");
        assert!(!err.to_string().contains("hunter2"));
        assert!(
            CaldavStore::new(
                "http://127.0.0.1:5232/",
                Some(("u", &pw)),
                HttpSettings::default()
            )
            .is_ok()
        );
        // https loads the system's roots through rustls with the ring provider.
        let s = CaldavStore::new(
            "https://caldav.example/dav/",
            Some(("u", &pw)),
            HttpSettings::default(),
        )
        .unwrap();
        assert_eq!(s.describe(), "caldav https://caldav.example/dav/");
        assert_eq!(
            s.url("/alice/calendar/"),
            "https://caldav.example/alice/calendar/"
        );
    }
}
