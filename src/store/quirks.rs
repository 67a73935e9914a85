//! What a CalDAV server does differently from the rules tandem's promises rest on (sync tokens
//! that report every change, a CTag that moves on every change, `If-None-Match` and `If-Match`
//! honoured), learned from how the server names itself in its answers. The CalDAV store asks
//! here before it takes a shortcut or trusts a precondition; README's servers table says what
//! each server does and what tandem does about it.

use std::sync::OnceLock;

use http::HeaderMap;

/// The server software, as far as tandem tells servers apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Software {
    /// SOGo (its SOPE web layer names itself in `Server` or sends `X-Dav-Error`).
    Sogo,
    /// DAViCal (sends `X-DAViCal-Version`).
    Davical,
    /// Any other: trusted to keep the rules.
    Other,
}

impl Software {
    /// Tells the software from one answer's marks, if it bears any.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Software> {
        let server = headers
            .get(http::header::SERVER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if server.contains("SOPE") || headers.contains_key("x-dav-error") {
            Some(Software::Sogo)
        } else if headers.contains_key("x-davical-version") {
            Some(Software::Davical)
        } else {
            None
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Software::Sogo => "SOGo",
            Software::Davical => "DAViCal",
            Software::Other => "trusted to keep the rules (not SOGo or DAViCal)",
        }
    }
}

/// One server's software, set by its first answer.
#[derive(Debug, Default)]
pub(crate) struct Quirks(OnceLock<Software>);

impl Quirks {
    /// Notes the software from an answer to `method`: marks of SOGo or DAViCal tell at once;
    /// an answer to a PROPFIND without them tells another server (both mark every PROPFIND
    /// answer, but SOGo leaves its marks off REPORT answers, so those tell nothing). The first
    /// answer that tells counts.
    pub(crate) fn notice(&self, method: &http::Method, headers: &HeaderMap) {
        if self.0.get().is_some() {
            return;
        }
        let told = Software::of(headers)
            .or_else(|| (method.as_str() == "PROPFIND").then_some(Software::Other));
        if let Some(software) = told {
            let _ = self.0.set(software);
        }
    }

    /// `None` until the server has answered once.
    pub(crate) fn software(&self) -> Option<Software> {
        self.0.get().copied()
    }

    /// The server overwrites an item when a create says `If-None-Match: *` and deletes one
    /// whatever a stale `If-Match` says (SOGo): tandem checks what it holds just before.
    pub(crate) fn ignores_preconditions(&self) -> bool {
        self.software() == Some(Software::Sogo)
    }

    /// The server writes a copy of a meeting into each attendee's calendar when the organizer's
    /// copy is written (`SCHEDULE-AGENT=CLIENT` or not), and refuses an attendee's copy before
    /// the organizer's (SOGo): tandem waits for, and takes over, the server's copy.
    pub(crate) fn files_attendee_copies(&self) -> bool {
        self.software() == Some(Software::Sogo)
    }

    /// The server's name for messages.
    pub(crate) fn name(&self) -> &'static str {
        match self.software() {
            Some(Software::Other) | None => "the server",
            Some(s) => s.name(),
        }
    }

    /// What the server does differently and what tandem does about it, for `tandem check
    /// --connect` and README's servers table.
    pub(crate) fn departures(&self) -> Vec<&'static str> {
        match self.software() {
            Some(Software::Sogo) => vec![
                "ignores If-None-Match and a stale If-Match on DELETE: tandem checks what it holds just before each create, update and delete",
                "its CTag counts seconds: tandem lists with the sync token on every pass",
                "files a copy of a meeting into each attendee's calendar when the organizer's copy is written, and refuses an attendee's copy before the organizer's: tandem writes the organizer's first and takes the server's copies over",
                "reuses an ETag after a delete and a re-create at the same name: on a side tandem only reads, it reads every item a listing of changes names, whatever its ETag (on a side it writes, `tandem repair` finds such a copy)",
            ],
            Some(Software::Davical) => vec![
                "schedules a reply when an attendee's copy of a meeting is written, whatever SCHEDULE-AGENT says (see the warning)",
                "answers a PUT it rewrote without an ETag: tandem asks for it",
                "allows two items with one UID in one calendar: tandem keeps one, sets the other aside and names it",
            ],
            _ => Vec::new(),
        }
    }

    /// What an operator must know before tandem writes to this server.
    pub(crate) fn warning(&self) -> Option<&'static str> {
        (self.software() == Some(Software::Davical)).then_some(
            "DAViCal delivers a reply to the organizer's scheduling inbox, and rewrites the organizer's copy (adding SCHEDULE-STATUS), whenever an attendee's copy of a meeting whose organizer's copy it holds is written; SCHEDULE-AGENT=CLIENT does not stop it and nothing else a client sends does. No mail is sent unless DAViCal is set up to send it; the organizer's copy is put back in step by the organizer's next pass",
        )
    }

    /// An item deleted and made again at the same name starts at the same ETag (SOGo counts
    /// versions per item): an ETag a listing of changes gives is not trusted to say what
    /// changed, and such items are read whole.
    pub(crate) fn reuses_etags(&self) -> bool {
        self.software() == Some(Software::Sogo)
    }

    /// The CTag counts seconds, so two changes within one second leave it unchanged (SOGo):
    /// tandem lists with the sync token every time instead.
    pub(crate) fn coarse_ctag(&self) -> bool {
        self.software() == Some(Software::Sogo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn tells_servers_by_their_headers() {
        assert_eq!(
            Software::of(&headers(&[("server", "SOPE 4.9.37/WebDAV")])),
            Some(Software::Sogo)
        );
        // Behind a proxy that replaces `Server`, SOPE's own header still tells.
        assert_eq!(
            Software::of(&headers(&[
                ("server", "Apache"),
                ("x-dav-error", "200 No error")
            ])),
            Some(Software::Sogo)
        );
        assert_eq!(
            Software::of(&headers(&[(
                "x-davical-version",
                "DAViCal/1.1.12; DB/1.3.5"
            )])),
            Some(Software::Davical)
        );
        assert_eq!(Software::of(&headers(&[("server", "Radicale")])), None);
    }

    #[test]
    fn an_unmarked_report_answer_tells_nothing_and_a_propfind_answer_does() {
        let (report, propfind) = (
            http::Method::from_bytes(b"REPORT").unwrap(),
            http::Method::from_bytes(b"PROPFIND").unwrap(),
        );
        let q = Quirks::default();
        assert!(!q.ignores_preconditions(), "unknown until it answers");
        // SOGo answers a sync-collection REPORT without its marks.
        q.notice(&report, &headers(&[]));
        assert_eq!(q.software(), None);
        q.notice(&propfind, &headers(&[("server", "SOPE 4.9.37/WebDAV")]));
        q.notice(&propfind, &headers(&[]));
        assert!(q.ignores_preconditions() && q.coarse_ctag() && q.reuses_etags());
        let other = Quirks::default();
        other.notice(&propfind, &headers(&[("server", "Radicale")]));
        assert_eq!(other.software(), Some(Software::Other));
    }
}
