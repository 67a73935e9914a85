//! One calendar item: parse, compare, rewrite and emit an iCalendar object (RFC 5545).
//!
//! An item is one resource: a VCALENDAR holding one UID's components (a VEVENT master with its
//! overrides, a VTODO, a VJOURNAL, or a component tandem has no model for, such as VAVAILABILITY)
//! plus the VTIMEZONEs and UID-less components beside them. Reading is exact ([`content`] unfolds
//! per §3.1 and trims nothing; [`tree`] keeps every component and property in order), so a copy
//! is its source with only the documented changes: ORGANIZER/ATTENDEE addresses and their
//! SENT-BY/DELEGATED-* parameters rewritten, SCHEDULE-AGENT=CLIENT set.
//!
//! The `ical` crate is not used: its line reader trims whitespace at the end of every physical
//! line before unfolding, its parser refuses components it has no type for and regroups the rest
//! by type, and its parameter reader drops empty values and stops after ten.

mod canonical;
mod content;
mod error;
mod rewrite;
mod tree;

use canonical::{ADDRESS_PARAMS, ADDRESS_PROPS};

use crate::domain::identity::IdentityKey;
use crate::domain::types::ContentHash;

pub use content::{Param, ParamValue, Property};
pub use error::ItemError;
#[cfg(test)]
use error::MAX_DEPTH;
pub(crate) use error::MAX_ITEM_BYTES;
pub use rewrite::{Ambiguous, Rewriter};
pub use tree::Component;

/// Components that must carry a UID (RFC 5545 §3.6.1–§3.6.4, RFC 7953 §3.1).
const UID_REQUIRED: &[&str] = &["VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY", "VAVAILABILITY"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Event,
    Todo,
    Journal,
    /// A component tandem carries without interpreting (VFREEBUSY, VAVAILABILITY, X-…).
    Other,
}

/// A parsed calendar item.
#[derive(Debug, Clone)]
pub struct Item {
    /// The VCALENDAR, exactly as read (names upper-cased).
    cal: Component,
    uid: String,
    kind: ItemKind,
}

impl Item {
    /// Parses one resource: exactly one VCALENDAR holding one item.
    pub fn parse(text: &str) -> Result<Item, ItemError> {
        if text.len() > MAX_ITEM_BYTES {
            return Err(ItemError::TooLarge(text.len()));
        }
        let mut cals = tree::parse_stream(text)?;
        match cals.len() {
            0 => Err(ItemError::Empty),
            1 => Item::from_calendar(cals.pop().expect("one calendar")),
            _ => Err(ItemError::MultipleCalendars),
        }
    }

    /// Splits a calendar export (any number of VCALENDARs and UIDs) into items, one per UID and
    /// VCALENDAR, each with its calendar's properties, time zones and UID-less components, in the
    /// order they first appear.
    pub fn split(text: &str) -> Result<Vec<Item>, ItemError> {
        let mut items = Vec::new();
        for cal in tree::parse_stream(text)? {
            if cal.subs.is_empty() {
                return Err(ItemError::NoComponents);
            }
            let mut uids: Vec<&str> = Vec::new();
            for c in cal.subs.iter().filter(|c| c.name != "VTIMEZONE") {
                check_placement(c)?;
                if let Some(uid) = c.uid()
                    && !uids.contains(&uid)
                {
                    uids.push(uid);
                }
            }
            for uid in uids {
                // Only this UID's components are copied: cloning the whole calendar per UID
                // would make a large export quadratic.
                let shell = Component {
                    name: cal.name.clone(),
                    props: cal.props.clone(),
                    subs: cal
                        .subs
                        .iter()
                        .filter(|c| c.name == "VTIMEZONE" || c.uid().is_none_or(|u| u == uid))
                        .cloned()
                        .collect(),
                };
                items.push(Item::from_calendar(shell)?);
            }
        }
        Ok(items)
    }

    fn from_calendar(cal: Component) -> Result<Item, ItemError> {
        if cal.subs.is_empty() {
            return Err(ItemError::NoComponents);
        }
        let mut uid: Option<&str> = None;
        let mut kind: Option<ItemKind> = None;
        for c in cal.subs.iter().filter(|c| c.name != "VTIMEZONE") {
            check_placement(c)?;
            let Some(this) = c.uid() else { continue };
            match uid {
                None => uid = Some(this),
                Some(u) if u == this => {}
                Some(u) => return Err(ItemError::MixedUids(u.to_string(), this.to_string())),
            }
            let this_kind = match c.name.as_str() {
                "VEVENT" => ItemKind::Event,
                "VTODO" => ItemKind::Todo,
                "VJOURNAL" => ItemKind::Journal,
                _ => continue,
            };
            if kind.is_some_and(|k| k != this_kind) {
                return Err(ItemError::MixedKinds);
            }
            kind = Some(this_kind);
        }
        let uid = match uid {
            Some(u) => u.to_string(),
            None => {
                // Only VTIMEZONEs, or components none of which says which item this is.
                let first = cal.subs.iter().find(|c| c.name != "VTIMEZONE");
                return Err(first.map_or(ItemError::NoComponents, |c| {
                    ItemError::MissingUid(c.name.clone())
                }));
            }
        };
        Ok(Item {
            cal,
            uid,
            kind: kind.unwrap_or(ItemKind::Other),
        })
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    pub fn kind(&self) -> ItemKind {
        self.kind
    }

    /// The item's own components: those of the VCALENDAR that carry its UID.
    fn own(&self) -> impl Iterator<Item = &Component> {
        self.cal.subs.iter().filter(|c| is_own(c))
    }

    fn own_mut(&mut self) -> impl Iterator<Item = &mut Component> {
        self.cal.subs.iter_mut().filter(|c| is_own(c))
    }

    /// The master: the own component without RECURRENCE-ID, else the first.
    fn master(&self) -> Option<&Component> {
        self.own()
            .find(|c| c.value("RECURRENCE-ID").is_none())
            .or_else(|| self.own().next())
    }

    /// The master's SUMMARY (or the first component's), for messages.
    pub fn summary(&self) -> Option<&str> {
        self.own().find_map(|c| c.value("SUMMARY"))
    }

    /// The ORGANIZER value of the master, else of the first component that has one.
    pub fn organizer(&self) -> Option<&str> {
        self.master()
            .and_then(|c| c.value("ORGANIZER"))
            .or_else(|| self.own().find_map(|c| c.value("ORGANIZER")))
    }

    /// Every ATTENDEE address (lower-case, without `mailto:`), once each.
    pub fn attendees(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .own()
            .flat_map(|c| c.props.iter().filter(|p| p.name == "ATTENDEE"))
            .map(|p| crate::domain::identity::normalize_address(&p.value))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The master's SEQUENCE (0 when absent or unreadable).
    pub fn sequence(&self) -> i64 {
        self.master()
            .and_then(|c| c.value("SEQUENCE"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The master's LAST-MODIFIED as written (UTC `YYYYMMDDTHHMMSSZ` sorts by time).
    pub fn last_modified(&self) -> Option<&str> {
        self.master().and_then(|c| c.value("LAST-MODIFIED"))
    }

    /// The master's DTSTAMP as written.
    pub fn dtstamp(&self) -> Option<&str> {
        self.master().and_then(|c| c.value("DTSTAMP"))
    }

    /// The properties of each own VEVENT, VTODO or VJOURNAL (the master and its overrides).
    pub fn components(&self) -> impl Iterator<Item = &[Property]> {
        self.own()
            .filter(|c| matches!(c.name.as_str(), "VEVENT" | "VTODO" | "VJOURNAL"))
            .map(|c| c.props.as_slice())
    }

    /// The whole VCALENDAR as read.
    pub fn calendar(&self) -> &Component {
        &self.cal
    }

    pub fn identity(&self) -> IdentityKey {
        IdentityKey::new(self.organizer(), &self.uid)
    }

    /// A hash of the normalised content (see [`canonical`]): ignores DTSTAMP, PRODID, the order
    /// of properties, parameters and components, line folding, and the case of `mailto:`.
    pub fn content_hash(&self) -> ContentHash {
        let text = canonical::canonical(&self.cal);
        ContentHash(xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }

    /// Rewrites ORGANIZER/ATTENDEE addresses (values and address parameters) in every component.
    /// Returns how many addresses changed.
    pub fn rewrite(&mut self, rw: &Rewriter) -> usize {
        if rw.is_empty() {
            return 0;
        }
        let mut changed = 0;
        self.cal.for_each_props_mut(&mut |props| {
            for p in props.iter_mut() {
                if ADDRESS_PROPS.contains(&p.name.as_str())
                    && let Some(new) = rw.map_uri(&p.value)
                {
                    p.value = new;
                    changed += 1;
                }
                for param in p.params.iter_mut() {
                    if ADDRESS_PARAMS.contains(&param.name.as_str()) {
                        for v in param.values.iter_mut() {
                            if let Some(new) = rw.map_uri(&v.text) {
                                v.text = new;
                                changed += 1;
                            }
                        }
                    }
                }
            }
        });
        changed
    }

    /// Spells the UID as `uid` in every own component (adopting a copy whose server refuses a UID
    /// change; the clean UID, and so the identity, stays the same).
    pub fn set_uid(&mut self, uid: &str) {
        for c in self.own_mut() {
            for p in c.props.iter_mut().filter(|p| p.name == "UID") {
                p.value = uid.to_string();
            }
        }
        self.uid = uid.to_string();
    }

    /// Sets `SCHEDULE-AGENT=CLIENT` on every ORGANIZER and ATTENDEE of the own components
    /// (RFC 6638 §7.1), so a scheduling server that receives the copy does not send invitations
    /// again. An existing SCHEDULE-AGENT keeps its place.
    pub fn mark_client_scheduled(&mut self) {
        let client = || ParamValue {
            text: "CLIENT".to_string(),
            quoted: false,
        };
        for c in self.own_mut() {
            for p in c
                .props
                .iter_mut()
                .filter(|p| ADDRESS_PROPS.contains(&p.name.as_str()))
            {
                match p.params.iter_mut().find(|q| q.name == "SCHEDULE-AGENT") {
                    Some(q) => q.values = vec![client()],
                    None => p.params.push(Param {
                        name: "SCHEDULE-AGENT".to_string(),
                        values: vec![client()],
                    }),
                }
            }
        }
    }

    /// The item as iCalendar text: CRLF line ends, lines folded at 75 octets, parameter values
    /// quoted where RFC 5545 §3.2 requires it or the source did.
    pub fn to_ics(&self) -> String {
        let mut out = String::with_capacity(1024);
        self.cal.write(&mut out);
        out
    }
}

/// Whether a component at the top of the VCALENDAR is one of the item's own (it carries the UID).
fn is_own(c: &Component) -> bool {
    c.name != "VTIMEZONE" && c.uid().is_some()
}

/// A component that may not stand at the top of a VCALENDAR, or lacks a UID it must have.
fn check_placement(c: &Component) -> Result<(), ItemError> {
    if c.name == "VALARM" {
        return Err(ItemError::StrayAlarm);
    }
    if c.uid().is_none() && UID_REQUIRED.contains(&c.name.as_str()) {
        return Err(ItemError::MissingUid(c.name.clone()));
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_marked_client_scheduled_and_that_is_not_content() {
        let plain = Item::parse(MEETING).unwrap();
        let mut marked = plain.clone();
        marked.mark_client_scheduled();
        let text = marked.to_ics();
        assert!(
            text.contains(
                "ORGANIZER;CN=\"Doe, Jane\";SCHEDULE-AGENT=CLIENT:mailto:jane@old.example\r\n"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("SCHEDULE-AGENT=CLIENT").count(),
            3,
            "organizer and two attendees: {text}"
        );
        let again = Item::parse(&text).unwrap();
        assert_eq!(again.content_hash(), plain.content_hash());
        let status = MEETING.replace("ATTENDEE;CN=Bob;", "ATTENDEE;SCHEDULE-STATUS=1.2;CN=Bob;");
        assert_eq!(
            Item::parse(&status).unwrap().content_hash(),
            plain.content_hash()
        );
        marked.mark_client_scheduled();
        assert_eq!(
            marked.to_ics().matches("SCHEDULE-AGENT").count(),
            3,
            "marking twice adds nothing"
        );
    }

    #[test]
    fn recurrence_rule_part_order_is_not_content() {
        let a = Item::parse(&MEETING.replace(
            "RRULE:FREQ=WEEKLY;COUNT=5",
            "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=5",
        ))
        .unwrap();
        let b = Item::parse(&MEETING.replace(
            "RRULE:FREQ=WEEKLY;COUNT=5",
            "RRULE:FREQ=WEEKLY;COUNT=5;BYDAY=MO",
        ))
        .unwrap();
        let c = Item::parse(&MEETING.replace(
            "RRULE:FREQ=WEEKLY;COUNT=5",
            "RRULE:FREQ=WEEKLY;COUNT=6;BYDAY=MO",
        ))
        .unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
    }

    const MEETING: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:m1@old.example\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T100000Z\r\nSUMMARY:Weekly\r\nRRULE:FREQ=WEEKLY;COUNT=5\r\nORGANIZER;CN=\"Doe, Jane\":mailto:jane@old.example\r\nATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:MAILTO:Bob@Old.Example\r\nATTENDEE;SENT-BY=\"mailto:assistant@old.example\":mailto:carol@other.example\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:m1@old.example\r\nRECURRENCE-ID:20260112T100000Z\r\nDTSTART:20260112T110000Z\r\nSUMMARY:Weekly (moved)\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    fn rw() -> Rewriter {
        Rewriter::new([("old.example".to_string(), "new.example".to_string())], [])
    }

    #[test]
    fn parses_master_with_override() {
        let item = Item::parse(MEETING).unwrap();
        assert_eq!(item.uid(), "m1@old.example");
        assert_eq!(item.kind(), ItemKind::Event);
        assert_eq!(item.organizer(), Some("mailto:jane@old.example"));
        assert_eq!(item.summary(), Some("Weekly"));
    }

    #[test]
    fn hash_ignores_dtstamp_order_and_folding() {
        let a = Item::parse(MEETING).unwrap();
        let reordered = MEETING
            .replace("DTSTAMP:20260101T000000Z", "DTSTAMP:20270101T000000Z")
            .replace(
                "SUMMARY:Weekly\r\nRRULE:FREQ=WEEKLY;COUNT=5",
                "RRULE:FREQ=WEEKLY;COUNT=5\r\nSUMMARY:Weekly",
            )
            .replace("CN=Bob;PARTSTAT=ACCEPTED", "PARTSTAT=ACCEPTED;CN=Bob")
            .replace("SUMMARY:Weekly (moved)", "SUMMARY:Weekly (m\r\n oved)")
            .replace("PRODID:-//test//EN", "PRODID:-//other//EN");
        let b = Item::parse(&reordered).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        let changed = Item::parse(&MEETING.replace("COUNT=5", "COUNT=6")).unwrap();
        assert_ne!(a.content_hash(), changed.content_hash());
    }

    #[test]
    fn hash_ignores_component_order() {
        let a = Item::parse(MEETING).unwrap();
        let master_end = MEETING.find("END:VEVENT\r\n").unwrap() + "END:VEVENT\r\n".len();
        let begin = MEETING.find("BEGIN:VEVENT").unwrap();
        let end = MEETING.find("END:VCALENDAR").unwrap();
        let swapped = format!(
            "{}{}{}{}",
            &MEETING[..begin],
            &MEETING[master_end..end],
            &MEETING[begin..master_end],
            &MEETING[end..]
        );
        assert_eq!(
            a.content_hash(),
            Item::parse(&swapped).unwrap().content_hash()
        );
    }

    #[test]
    fn rewrites_addresses_and_keeps_quoted_params() {
        let mut item = Item::parse(MEETING).unwrap();
        assert_eq!(item.rewrite(&rw()), 3);
        let text = item.to_ics();
        assert!(
            text.contains("ORGANIZER;CN=\"Doe, Jane\":mailto:jane@new.example\r\n"),
            "{text}"
        );
        assert!(text.contains("MAILTO:Bob@new.example"), "{text}");
        assert!(
            text.contains("SENT-BY=\"mailto:assistant@new.example\""),
            "{text}"
        );
        assert!(
            text.contains("mailto:carol@other.example"),
            "unmapped stays: {text}"
        );
        let again = Item::parse(&text).unwrap();
        assert_eq!(again.content_hash(), item.content_hash());
        assert_eq!(again.identity(), item.identity());
        assert_eq!(
            item.identity().organizer.as_deref(),
            Some("jane@new.example")
        );
    }

    #[test]
    fn exact_addresses_win_over_domains() {
        let rw = Rewriter::new(
            [("old.example".to_string(), "new.example".to_string())],
            [(
                "jane@old.example".to_string(),
                "j.doe@new.example".to_string(),
            )],
        );
        assert_eq!(
            rw.map_address("Jane@Old.Example").as_deref(),
            Some("j.doe@new.example")
        );
        assert_eq!(
            rw.map_address("bob@OLD.example").as_deref(),
            Some("bob@new.example")
        );
        assert_eq!(rw.map_address("bob@else.example"), None);
        assert_eq!(rw.map_uri("urn:uuid:x"), None);
    }

    #[test]
    fn folded_text_keeps_every_blank() {
        // A client folded right after a space, and a value ends in blanks and a tab.
        let ics = MEETING.replace(
            "SUMMARY:Weekly\r\n",
            "SUMMARY:hello \r\n world\r\nDESCRIPTION:tab\there and trailing  \r\n",
        );
        let item = Item::parse(&ics).unwrap();
        assert_eq!(item.summary(), Some("hello world"));
        let out = item.to_ics();
        assert!(
            out.contains("DESCRIPTION:tab\there and trailing  \r\n"),
            "{out}"
        );
        let long = format!("{}  ", "word ".repeat(40));
        let item =
            Item::parse(&MEETING.replace("SUMMARY:Weekly\r\n", &format!("SUMMARY:{long}\r\n")))
                .unwrap();
        let back = Item::parse(&item.to_ics()).unwrap();
        assert_eq!(back.summary(), Some(long.as_str()));
        assert_eq!(back.content_hash(), item.content_hash());
    }

    #[test]
    fn uninterpreted_components_pass_through_in_order() {
        let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nX-WR-CALNAME:Team\r\nBEGIN:VAVAILABILITY\r\n\
                   UID:av1\r\nDTSTAMP:20260101T000000Z\r\nBEGIN:AVAILABLE\r\nUID:av1-a\r\n\
                   DTSTART:20260105T090000Z\r\nEND:AVAILABLE\r\nEND:VAVAILABILITY\r\n\
                   BEGIN:X-THING\r\nX-A;X-P=\"a:b\":v\r\nEND:X-THING\r\nEND:VCALENDAR\r\n";
        let item = Item::parse(ics).unwrap();
        assert_eq!((item.uid(), item.kind()), ("av1", ItemKind::Other));
        assert_eq!(item.to_ics(), ics);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(Item::parse("").unwrap_err(), ItemError::Empty);
        assert!(matches!(
            Item::parse("garbage"),
            Err(ItemError::Line { line: 1, .. })
        ));
        let no_uid =
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(
            Item::parse(no_uid).unwrap_err(),
            ItemError::MissingUid("VEVENT".into())
        );
        let mixed = MEETING.replace(
            "UID:m1@old.example\r\nRECURRENCE-ID",
            "UID:other\r\nRECURRENCE-ID",
        );
        assert!(matches!(Item::parse(&mixed), Err(ItemError::MixedUids(..))));
        let empty = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n";
        assert_eq!(Item::parse(empty).unwrap_err(), ItemError::NoComponents);
        let truncated = &MEETING[..MEETING.len() / 2];
        assert!(Item::parse(truncated).is_err());
        let two = format!("{MEETING}{MEETING}");
        assert_eq!(Item::parse(&two).unwrap_err(), ItemError::MultipleCalendars);
    }

    /// Nesting a thread's stack cannot hold, and size, are refused before anything walks the tree.
    #[test]
    fn refuses_deep_nesting_and_huge_items() {
        let nested = |depth: usize| {
            let inner = format!(
                "{}{}",
                "BEGIN:X-N\r\n".repeat(depth),
                "END:X-N\r\n".repeat(depth)
            );
            MEETING.replace("END:VEVENT\r\n", &format!("{inner}END:VEVENT\r\n"))
        };
        // VCALENDAR and VEVENT, then X-N components up to the limit.
        let deepest = Item::parse(&nested(MAX_DEPTH - 2)).unwrap();
        assert_eq!(
            deepest.to_ics(),
            Item::parse(&deepest.to_ics()).unwrap().to_ics()
        );
        let err = Item::parse(&nested(MAX_DEPTH - 1)).unwrap_err();
        assert!(matches!(err, ItemError::TooDeep { .. }), "{err}");
        let err = Item::parse(&nested(100_000)).unwrap_err();
        assert!(err.to_string().contains("nest more than 16 deep"), "{err}");
        let huge = MEETING.replace(
            "SUMMARY:",
            &format!("X-BLOB:{}\r\nSUMMARY:", "a".repeat(MAX_ITEM_BYTES)),
        );
        assert_eq!(
            Item::parse(&huge).unwrap_err(),
            ItemError::TooLarge(huge.len())
        );
        // A megabyte line is quoted in 60 characters.
        let junk = MEETING.replace("SUMMARY:", &format!("{}:", "X;Y".repeat(300_000)));
        let reason = Item::parse(&junk).unwrap_err().to_string();
        assert!(reason.len() < 300, "{reason}");
    }
}
