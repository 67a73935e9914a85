//! Validated names that travel through the engine: hrefs, etags, calendars, pairs.
//!
//! Each is parsed once at the edge (config, a store's answer) so the engine never handles a bare
//! string whose shape it has to guess.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// Where an item lives on its server: an absolute path such as `/alice/calendar/x.ics`.
    // INVARIANT: starts with `/`, not empty after it.
    Href
);
string_newtype!(
    /// An opaque version tag; any change to an item changes it.
    Etag
);
string_newtype!(
    /// A pair's id from the config.
    // INVARIANT: 1..=128 chars of [A-Za-z0-9._@+-].
    PairId
);
string_newtype!(
    /// A store's watermark for "changes since" (a CalDAV sync-token).
    SyncToken
);

impl Href {
    pub fn new(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') || s.len() < 2 {
            return Err(format!("href {s:?} must be an absolute path"));
        }
        Ok(Href(s.into()))
    }

    /// The last path segment (a file name for vdir, a resource name for CalDAV).
    pub fn file_name(&self) -> &str {
        self.0
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
    }
}

impl Etag {
    pub fn new(s: impl Into<Arc<str>>) -> Self {
        Etag(s.into())
    }

    /// A version not known yet (equal to no ETag a server gives): the item must be read.
    pub fn unknown() -> Self {
        Etag("".into())
    }
}

impl SyncToken {
    pub fn new(s: impl Into<Arc<str>>) -> Self {
        SyncToken(s.into())
    }
}

/// What a pair id may hold besides letters and digits.
const ID_SIGNS: &str = "._@+-";

/// A pair id: letters, digits, `. _ @ + -`, 1 to 128 characters; a mailbox's calendar is
/// `MAILBOX/SEGMENT`, two such parts.
impl FromStr for PairId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 128 {
            return Err("a pair id must be 1 to 128 characters".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ID_SIGNS.contains(*c) || *c == '/'))
        {
            return Err(format!(
                "a pair id may not contain {c:?} (allowed: letters, digits, . _ @ + -)"
            ));
        }
        if s.split('/').count() > 2 || s.split('/').any(str::is_empty) {
            return Err(format!(
                "{s:?}: '/' only parts a mailbox's id from its calendar's (MAILBOX/CALENDAR)"
            ));
        }
        Ok(PairId(s.into()))
    }
}

impl PairId {
    /// The pair of `mailbox`'s calendar whose last path segment is `segment`: `MAILBOX/SEGMENT`,
    /// the segment's other characters as `_` (and cut to fit 128 characters).
    pub fn in_mailbox(mailbox: &PairId, segment: &str) -> PairId {
        let room = 128usize.saturating_sub(mailbox.0.len() + 1).max(1);
        let mut seg: String = segment
            .chars()
            .map(
                |c| match c.is_ascii_alphanumeric() || ID_SIGNS.contains(c) {
                    true => c,
                    false => '_',
                },
            )
            .take(room)
            .collect();
        if seg.is_empty() {
            seg.push('_');
        }
        PairId(format!("{}/{seg}", mailbox.0).into())
    }

    /// The mailbox this pair is a calendar of, for a discovered pair.
    pub fn mailbox(&self) -> Option<&str> {
        self.0.split_once('/').map(|(m, _)| m)
    }
}

/// A calendar collection's path on its server, always ending in `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CalendarPath(Arc<str>);

impl CalendarPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The href of an item named `name` inside this calendar.
    pub fn join(&self, name: &str) -> Href {
        Href(format!("{}{}", self.0, name).into())
    }

    /// Whether `href` names an item directly inside this calendar: not the calendar itself, not
    /// inside a collection within it, and no `..`, `.` or encoded slash that a server would
    /// resolve to somewhere else (another user's calendar, say).
    pub fn contains(&self, href: &Href) -> bool {
        href.as_str()
            .strip_prefix(self.as_str())
            .is_some_and(|name| {
                let lower = name.to_ascii_lowercase();
                !name.is_empty()
                    && !name.contains(['/', '\\'])
                    && !lower.contains("%2f")
                    && !lower.contains("%5c")
                    && !matches!(lower.replace("%2e", ".").as_str(), "." | "..")
            })
    }
}

impl FromStr for CalendarPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("calendar path {s:?} must start with '/'"));
        }
        if s.split('/').any(|seg| seg == "..") {
            return Err(format!("calendar path {s:?} may not contain '..'"));
        }
        let mut p = s.to_string();
        if !p.ends_with('/') {
            p.push('/');
        }
        Ok(CalendarPath(p.into()))
    }
}

impl fmt::Display for CalendarPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// `SERVER:PATH`: one calendar on one configured server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CalendarRef {
    pub server: String,
    pub path: CalendarPath,
}

impl FromStr for CalendarRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (server, path) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not SERVER:PATH (e.g. source:/alice/calendar/)"))?;
        if server.is_empty() {
            return Err(format!("{s:?} names no server before ':'"));
        }
        Ok(CalendarRef {
            server: server.to_string(),
            path: path.parse()?,
        })
    }
}

impl fmt::Display for CalendarRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.server, self.path)
    }
}

/// Hash of an item's normalised content (see [`crate::domain::item::Item::content_hash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub u128);

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for ContentHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        u128::from_str_radix(s, 16)
            .map(ContentHash)
            .map_err(|e| format!("bad content hash {s:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_refs_parse_and_normalise() {
        let c: CalendarRef = "source:/alice/calendar".parse().unwrap();
        assert_eq!(c.server, "source");
        assert_eq!(c.path.as_str(), "/alice/calendar/");
        assert_eq!(c.to_string(), "source:/alice/calendar/");
        assert!("source".parse::<CalendarRef>().is_err());
        assert!(":/a/".parse::<CalendarRef>().is_err());
        assert!("s:a/".parse::<CalendarRef>().is_err());
        assert!("s:/a/../b/".parse::<CalendarRef>().is_err());
    }

    #[test]
    fn calendar_contains_only_direct_children() {
        let p: CalendarPath = "/alice/cal/".parse().unwrap();
        assert!(p.contains(&Href::new("/alice/cal/x.ics").unwrap()));
        assert!(!p.contains(&Href::new("/alice/cal/").unwrap()));
        assert!(!p.contains(&Href::new("/alice/cal/sub/x.ics").unwrap()));
        assert!(!p.contains(&Href::new("/bob/cal/x.ics").unwrap()));
        for outside in [
            "/alice/cal/..",
            "/alice/cal/.",
            "/alice/cal/%2e%2E",
            "/alice/cal/.%2e",
            "/alice/cal/..%2F..%2Fbob%2Fcal%2Fx.ics",
            "/alice/cal/..%5cx.ics",
            "/alice/cal/..\\x.ics",
        ] {
            assert!(!p.contains(&Href::new(outside).unwrap()), "{outside}");
        }
        assert!(p.contains(&Href::new("/alice/cal/a..b%20c.ics").unwrap()));
        assert!(p.contains(&Href::new("/alice/cal/nul%00.ics").unwrap()));
    }

    #[test]
    fn pair_ids_are_checked() {
        assert!("alice@old.example".parse::<PairId>().is_ok());
        assert!("".parse::<PairId>().is_err());
        assert!("a b".parse::<PairId>().is_err());
        assert!("alice/work".parse::<PairId>().is_ok());
        for bad in ["a/b/c", "/a", "a/", "a//b"] {
            assert!(bad.parse::<PairId>().is_err(), "{bad}");
        }
        let alice: PairId = "alice".parse().unwrap();
        let work = PairId::in_mailbox(&alice, "Work Calendar%20(2)");
        assert_eq!(work.as_str(), "alice/Work_Calendar_20_2_");
        assert_eq!(work.mailbox(), Some("alice"));
        assert_eq!(work.as_str().parse::<PairId>().unwrap(), work);
        assert_eq!(alice.mailbox(), None);
    }
}
