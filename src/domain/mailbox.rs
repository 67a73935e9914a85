//! A mailbox pair: one user's mailbox in each org, whose calendars tandem finds and pairs
//! itself; where a server keeps a user's calendars; and what a calendar collection is.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::domain::direction::{ConflictPolicy, Direction};
use crate::domain::mapping::Side;
use crate::domain::pair::Pair;
use crate::domain::types::{CalendarPath, CalendarRef, PairId};

/// One user's two mailboxes: every calendar of the source's home paired with one of the target's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub id: PairId,
    pub source: UserRef,
    pub target: UserRef,
    pub direction: Direction,
    pub conflict: ConflictPolicy,
}

impl Mailbox {
    /// The user on `side`: A is the source, B the target.
    pub fn user(&self, side: Side) -> &UserRef {
        match side {
            Side::A => &self.source,
            Side::B => &self.target,
        }
    }

    /// The pair that syncs one of its calendars, as this mailbox syncs.
    pub fn pair(&self, calendar: &MailboxCalendar) -> Pair {
        Pair {
            id: calendar.id.clone(),
            source: calendar.source.clone(),
            target: calendar.target.clone(),
            direction: self.direction,
            conflict: self.conflict,
        }
    }
}

/// The pairs of `mailboxes`' calendars as discovery recorded them (`(mailbox, calendar)`): the
/// ones still paired, of a mailbox still configured on the same two servers.
pub fn recorded_pairs(
    mailboxes: &[Mailbox],
    recorded: Vec<(String, MailboxCalendar)>,
) -> Vec<Pair> {
    let by_id: HashMap<&str, &Mailbox> = mailboxes.iter().map(|m| (m.id.as_str(), m)).collect();
    (recorded.into_iter())
        .filter_map(|(id, c)| {
            let m = by_id.get(id.as_str())?;
            let here = c.source.server == m.source.server && c.target.server == m.target.server;
            (here && c.gone.is_none()).then(|| m.pair(&c))
        })
        .collect()
}

/// A pairing of a mailbox's two calendars that discovery made, as remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxCalendar {
    /// `MAILBOX/SEGMENT`.
    pub id: PairId,
    pub source: CalendarRef,
    pub target: CalendarRef,
    /// Why the pair stopped (a calendar of it is gone), if it did.
    pub gone: Option<String>,
    /// Each side's name and colour as the last discovery left them.
    pub seen: [CalendarProps; 2],
}

/// A user on a configured server: `SERVER:USER`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserRef {
    pub server: String,
    pub user: String,
}

impl FromStr for UserRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (server, user) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not SERVER:USER (e.g. old:alice)"))?;
        if server.is_empty() {
            return Err(format!("{s:?} names no server before ':'"));
        }
        // The user goes into a path: one segment, nothing that climbs out of it.
        if user.is_empty()
            || user == "."
            || user == ".."
            || user.contains(['/', '\\', '\0', '{', '}'])
            || user.chars().any(char::is_control)
        {
            return Err(format!(
                "{s:?}: the user must be one path segment (no '/', no '..')"
            ));
        }
        Ok(UserRef {
            server: server.to_string(),
            user: user.to_string(),
        })
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.server, self.user)
    }
}

/// Where a server keeps a user's calendars, with `{user}` standing for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Home {
    /// The calendar home's path (`/{user}/`, `/caldav.php/{user}/`).
    Path(String),
    /// A principal's path, whose `calendar-home-set` names the home (RFC 4791 §6.2.1).
    Principal(String),
}

impl Home {
    /// The template with `user` filled in.
    pub fn of(&self, user: &str) -> Home {
        match self {
            Home::Path(t) => Home::Path(t.replace("{user}", user)),
            Home::Principal(t) => Home::Principal(t.replace("{user}", user)),
        }
    }

    /// Whether a template is one path that holds `{user}` once; `Err` says why not.
    pub fn check_template(template: &str) -> Result<(), String> {
        if !template.starts_with('/') {
            return Err(format!("{template:?} is not a path (it starts with '/')"));
        }
        if template.matches("{user}").count() != 1 {
            return Err(format!("{template:?} must hold {{user}} once"));
        }
        let filled = template.replace("{user}", "u");
        filled
            .parse::<CalendarPath>()
            .map(|_| ())
            .map_err(|e| format!("{template:?}: {e}"))
    }
}

/// What kind of collection a home holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionKind {
    Calendar,
    /// A scheduling inbox or outbox (RFC 6638): the server's, never synced.
    Scheduling,
    /// A subscription to a published calendar (webcal): read-only, the server fetches it.
    Subscription,
}

/// A calendar's own properties: what a created copy is given, and what is kept in step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarProps {
    pub displayname: Option<String>,
    /// `#RRGGBB` or `#RRGGBBAA` (Apple's `calendar-color`).
    pub color: Option<String>,
    pub description: Option<String>,
    /// The components it holds (`VEVENT`, `VTODO`, ...); empty: the server's default.
    pub components: Vec<String>,
    /// A VCALENDAR holding the calendar's time zone (`calendar-timezone`).
    pub timezone: Option<String>,
}

/// One collection of a user's home as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub path: CalendarPath,
    pub kind: CollectionKind,
    pub props: CalendarProps,
    /// Its `DAV:owner` (a principal's href), if the server says.
    pub owner: Option<String>,
}

impl Collection {
    /// Its last path segment: the part of a discovered pair's id after the mailbox's.
    pub fn segment(&self) -> &str {
        self.path
            .as_str()
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
    }
}

/// A user's home as listed: its collections, who owns it, and the calendar the server names
/// as the default (`schedule-default-calendar-URL`, RFC 6638 §9.2), if it does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HomeListing {
    pub collections: Vec<Collection>,
    pub owner: Option<String>,
    pub default: Option<CalendarPath>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_one_segment() {
        let u: UserRef = "old:alice".parse().unwrap();
        assert_eq!((u.server.as_str(), u.user.as_str()), ("old", "alice"));
        assert_eq!(u.to_string(), "old:alice");
        for bad in ["alice", ":alice", "old:", "old:a/b", "old:..", "old:{user}"] {
            assert!(bad.parse::<UserRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn home_templates_hold_the_user_once() {
        assert!(Home::check_template("/{user}/").is_ok());
        assert!(Home::check_template("/caldav.php/{user}/home/").is_ok());
        assert!(Home::check_template("/users/").is_err());
        assert!(Home::check_template("{user}/").is_err());
        assert!(Home::check_template("/{user}/{user}/").is_err());
        assert!(Home::check_template("/{user}/../x/").is_err());
        assert_eq!(
            Home::Path("/dav/{user}/".into()).of("bob"),
            Home::Path("/dav/bob/".into())
        );
    }
}
