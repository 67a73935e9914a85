//! Reading WebDAV answers: which hrefs of a listing are a calendar's own, what a status means,
//! the truncation marker libdav drops from a sync-collection answer, and the watermark kept per
//! CalDAV calendar.

use http::{Request, StatusCode, Uri};
use libdav::dav::{SyncCollection, SyncCollectionParseError, SyncCollectionResponse, WebDavError};
use libdav::names;
use libdav::requests::{DavRequest, ParseResponseError};
use tracing::warn;

use crate::domain::error::{ErrorKind, MAX_REASON, StoreError, bounded};
use crate::domain::types::{CalendarPath, Href};

/// The path of an href, which servers may send as a full URL.
pub(super) fn path_of(href: &str) -> &str {
    match href.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => href,
    }
}

/// `s` as XML text.
pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(super) fn same_path(href: &str, collection: &str) -> bool {
    path_of(href).trim_end_matches('/') == collection.trim_end_matches('/')
}

/// The hrefs of one listing of `cal` that name its own items. Anything else a server lists
/// (another user's item, an item of a collection inside it, a `..` path) is never read, written
/// or deleted: with one account that can write every mailbox, that would be the wrong mailbox.
/// What was left out is logged once per listing.
pub(super) struct Members<'a> {
    cal: &'a CalendarPath,
    outside: usize,
    first: Option<String>,
}

impl<'a> Members<'a> {
    pub(super) fn of(cal: &'a CalendarPath) -> Self {
        Members {
            cal,
            outside: 0,
            first: None,
        }
    }

    pub(super) fn check(&mut self, href: &str) -> Option<Href> {
        let found = Href::new(&encoded_controls(path_of(href)))
            .ok()
            .filter(|h| self.cal.contains(h));
        if found.is_none() {
            self.outside += 1;
            self.first.get_or_insert_with(|| bounded(href, 200));
        }
        found
    }
}

impl Drop for Members<'_> {
    fn drop(&mut self) {
        if let Some(first) = &self.first {
            warn!(calendar = %self.cal, count = self.outside, first = %first, "the server listed items outside the calendar; ignored");
        }
    }
}

/// `path` with its control characters percent-encoded again, as the server must have sent
/// them (libdav decodes them): a `%00` in an href stays `%00` in every request, report and row
/// (PostgreSQL's text cannot hold a NUL).
pub(super) fn encoded_controls(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(char::is_control) {
        return path.into();
    }
    let mut out = String::with_capacity(path.len() + 8);
    for c in path.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

pub(super) fn status_error(op: &str, url: &str, s: StatusCode) -> StoreError {
    let kind = match s {
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
        StatusCode::FORBIDDEN => ErrorKind::Unauthorized,
        StatusCode::NOT_FOUND | StatusCode::GONE => ErrorKind::NotFound,
        StatusCode::PRECONDITION_FAILED => ErrorKind::PreconditionFailed,
        StatusCode::LOCKED => ErrorKind::Moving { retry_after: None },
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::Throttled { retry_after: None },
        s if s.is_server_error() => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    };
    let hint = match s {
        StatusCode::UNAUTHORIZED => " (check username and password)",
        StatusCode::FORBIDDEN => " (the account may not access this calendar)",
        StatusCode::CONFLICT => {
            " (the server refused the item; it may already hold one with this UID)"
        }
        _ => "",
    };
    StoreError::new(kind, format!("{op} {url}: {s}{hint}"))
}

/// An answer that is not XML, from `op` on `url`.
pub(super) fn malformed(op: &str, url: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::new(
        ErrorKind::InvalidData,
        format!("{op} {url}: the server answered malformed XML: {e}"),
    )
}

/// A refusal of `op` on `url`, with the start of what the server said about it.
pub(super) fn refused(op: &str, url: &str, status: StatusCode, body: &str) -> StoreError {
    let mut e = status_error(op, url, status);
    let detail: String = body.chars().take(300).collect();
    if !detail.trim().is_empty() {
        e.message = bounded(&format!("{}: {}", e.message, detail.trim()), MAX_REASON);
    }
    e
}

/// One sync-collection answer, with whether the server cut it short.
pub(super) struct SyncPage {
    pub(super) resp: SyncCollectionResponse,
    pub(super) truncated: bool,
}

/// libdav's sync-collection request, plus the RFC 6578 §3.6 truncation marker (a 507 for the
/// collection itself) that libdav drops, and Xandikos' 412 for an invalid token.
pub(super) struct TruncatableSync<'a> {
    pub(super) inner: SyncCollection<'a>,
    pub(super) collection: &'a str,
}

impl DavRequest for TruncatableSync<'_> {
    type Response = SyncPage;
    type ParseError = SyncCollectionParseError;
    type Error<E> = WebDavError<E>;

    fn prepare_request(&self, base_url: Uri) -> Result<Request<String>, http::Error> {
        self.inner.prepare_request(base_url)
    }

    fn parse_response(
        &self,
        parts: &http::response::Parts,
        body: &[u8],
    ) -> Result<SyncPage, SyncCollectionParseError> {
        if parts.status == StatusCode::PRECONDITION_FAILED {
            return Err(SyncCollectionParseError::PreconditionFailed(
                names::VALID_SYNC_TOKEN.into(),
            ));
        }
        let resp = self.inner.parse_response(parts, body)?;
        let truncated = truncated(body, self.collection)
            .map_err(|e| SyncCollectionParseError::Parse(ParseResponseError::Xml(e)))?;
        Ok(SyncPage { resp, truncated })
    }
}

/// Whether a multistatus holds a 507 response for the collection itself.
pub(super) fn truncated(body: &[u8], collection: &str) -> Result<bool, roxmltree::Error> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Ok(false);
    };
    let doc = roxmltree::Document::parse(text)?;
    let found = doc
        .descendants()
        .filter(|n| n.tag_name() == names::RESPONSE)
        .any(|r| {
            let href = r
                .descendants()
                .find(|n| n.tag_name() == names::HREF)
                .and_then(|n| n.text())
                .unwrap_or("");
            let same = same_path(href, collection);
            let status = r
                .children()
                .find(|n| n.tag_name() == names::STATUS)
                .and_then(|n| n.text())
                .unwrap_or("");
            same && status.split_whitespace().nth(1) == Some("507")
        });
    Ok(found)
}

/// The watermark kept for a CalDAV calendar: the sync-collection token, a newline (a token is a
/// URI, which has none), then the CTag read before that listing. An empty CTag says the server has
/// none (or its CTag is not used); a watermark without the newline (from an earlier release) has
/// not been asked yet.
pub(super) mod watermark {
    pub(crate) fn split(stored: &str) -> (&str, Option<&str>) {
        match stored.split_once('\n') {
            Some((sync, ctag)) => (sync, Some(ctag)),
            None => (stored, None),
        }
    }

    pub(crate) fn join(sync: &str, ctag: Option<&str>) -> String {
        format!("{sync}\n{}", ctag.unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_holds_the_token_and_the_ctag() {
        let t = "http://radicale.org/ns/sync/ab12";
        assert_eq!(
            watermark::split(&watermark::join(t, Some("\"7\""))),
            (t, Some("\"7\""))
        );
        assert_eq!(watermark::split(&watermark::join(t, None)), (t, Some("")));
        assert_eq!(
            watermark::split(t),
            (t, None),
            "a watermark of an earlier release"
        );
    }

    #[test]
    fn finds_the_truncation_marker_for_the_collection_only() {
        let body = r#"<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:">
  <d:response><d:href>/u/cal/a.ics</d:href><d:propstat><d:prop><d:getetag>"1"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
  <d:response><d:href>http://h:1/u/cal/</d:href><d:status>HTTP/1.1 507 Insufficient Storage</d:status></d:response>
  <d:sync-token>t2</d:sync-token>
</d:multistatus>"#;
        assert!(truncated(body.as_bytes(), "/u/cal/").unwrap());
        assert!(!truncated(body.as_bytes(), "/u/other/").unwrap());
        assert!(
            !truncated(
                body.replace("507 Insufficient", "200 OK").as_bytes(),
                "/u/cal/"
            )
            .unwrap()
        );
        assert!(truncated(b"<not xml", "/u/cal/").is_err());
        assert_eq!(path_of("http://h:1/u/cal/a.ics"), "/u/cal/a.ics");
        assert_eq!(path_of("/u/cal/a.ics"), "/u/cal/a.ics");
    }

    #[test]
    fn statuses_map_to_kinds_and_name_the_url() {
        let e = status_error("PUT", "http://h/u/cal/x.ics", StatusCode::UNAUTHORIZED);
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(
            e.to_string(),
            "PUT http://h/u/cal/x.ics: 401 Unauthorized (check username and password)"
        );
        assert_eq!(
            status_error("GET", "u", StatusCode::PRECONDITION_FAILED).kind,
            ErrorKind::PreconditionFailed
        );
        assert_eq!(
            status_error("GET", "u", StatusCode::NOT_FOUND).kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            status_error("GET", "u", StatusCode::LOCKED).kind,
            ErrorKind::Moving { retry_after: None }
        );
        assert_eq!(
            status_error("GET", "u", StatusCode::BAD_GATEWAY).kind,
            ErrorKind::Transient
        );
        assert_eq!(
            status_error("PUT", "u", StatusCode::UNSUPPORTED_MEDIA_TYPE).kind,
            ErrorKind::Permanent
        );
    }
}
