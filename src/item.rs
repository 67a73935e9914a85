//! One calendar item: parse, compare, rewrite and emit an iCalendar object (RFC 5545).
//!
//! An item is one resource: a VEVENT master with its overrides (same UID, with RECURRENCE-ID), or a
//! VTODO / VJOURNAL, plus the VTIMEZONEs it uses. Parsing uses the `ical` crate; emitting is ours
//! because `ical`'s generator writes parameter values containing `,` `;` `:` unquoted, which
//! RFC 5545 §3.2 forbids (`CN="Doe, Jane"` would come back as two values).

use std::collections::HashMap;

use ical::parser::ical::component::{IcalAlarm, IcalCalendar, IcalJournal, IcalTimeZone};
use ical::property::Property;

use crate::identity::{IdentityKey, strip_mailto};
use crate::types::ContentHash;

/// Properties that change on every export without changing the item: left out of the hash.
const HASH_IGNORED_PROPS: &[&str] = &["DTSTAMP"];
/// Calendar-level properties that describe the writer, not the item.
const HASH_IGNORED_CALENDAR_PROPS: &[&str] = &["PRODID"];
/// Properties whose value is a calendar address (RFC 5545 §3.3.3).
const ADDRESS_PROPS: &[&str] = &["ORGANIZER", "ATTENDEE"];
/// Parameters whose values are calendar addresses.
const ADDRESS_PARAMS: &[&str] = &["SENT-BY", "DELEGATED-TO", "DELEGATED-FROM"];
/// Scheduling parameters that tandem sets on copies (SCHEDULE-AGENT) or servers add after
/// delivering (SCHEDULE-STATUS, RFC 6638 §7.3): not content.
const HASH_IGNORED_PARAMS: &[&str] = &["SCHEDULE-AGENT", "SCHEDULE-STATUS"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Event,
    Todo,
    Journal,
}

/// Why an .ics body is not an item tandem can sync.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("not valid iCalendar: {0}")]
    Parse(String),
    #[error("empty body: no VCALENDAR")]
    Empty,
    #[error("more than one VCALENDAR in one resource")]
    MultipleCalendars,
    #[error("no VEVENT, VTODO or VJOURNAL inside the VCALENDAR")]
    NoComponents,
    #[error("a {0} has no UID")]
    MissingUid(&'static str),
    #[error("components with different UIDs ({0:?} and {1:?}) in one resource")]
    MixedUids(String, String),
    #[error("mixes VEVENT, VTODO and VJOURNAL in one resource")]
    MixedKinds,
    #[error("contains {0}, which is not a calendar item")]
    Unsupported(&'static str),
}

/// A parsed calendar item.
#[derive(Debug, Clone)]
pub struct Item {
    cal: IcalCalendar,
    uid: String,
    kind: ItemKind,
}

impl Item {
    /// Parses one resource: exactly one VCALENDAR holding one item.
    pub fn parse(text: &str) -> Result<Item, ItemError> {
        let mut cals = parse_calendars(text)?;
        match cals.len() {
            0 => Err(ItemError::Empty),
            1 => Item::from_calendar(cals.pop().expect("one calendar")),
            _ => Err(ItemError::MultipleCalendars),
        }
    }

    /// Splits a calendar export (any number of VCALENDARs and UIDs) into items, one per UID,
    /// each with its calendar's properties and time zones.
    pub fn split(text: &str) -> Result<Vec<Item>, ItemError> {
        let mut items = Vec::new();
        for cal in parse_calendars(text)? {
            let mut groups: Vec<(String, IcalCalendar)> = Vec::new();
            let mut group = |uid: Option<&str>, name: &'static str| -> Result<usize, ItemError> {
                let uid = uid
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .ok_or(ItemError::MissingUid(name))?;
                Ok(match groups.iter().position(|(u, _)| u == uid) {
                    Some(i) => i,
                    None => {
                        let shell = IcalCalendar {
                            properties: cal.properties.clone(),
                            timezones: cal.timezones.clone(),
                            ..IcalCalendar::default()
                        };
                        groups.push((uid.to_string(), shell));
                        groups.len() - 1
                    }
                })
            };
            let mut placed: Vec<(usize, Component)> = Vec::new();
            for e in &cal.events {
                placed.push((
                    group(prop_value(&e.properties, "UID"), "VEVENT")?,
                    Component::Event(e.clone()),
                ));
            }
            for t in &cal.todos {
                placed.push((
                    group(prop_value(&t.properties, "UID"), "VTODO")?,
                    Component::Todo(t.clone()),
                ));
            }
            for j in &cal.journals {
                placed.push((
                    group(prop_value(&j.properties, "UID"), "VJOURNAL")?,
                    Component::Journal(j.clone()),
                ));
            }
            for (i, c) in placed {
                let g = &mut groups[i].1;
                match c {
                    Component::Event(e) => g.events.push(e),
                    Component::Todo(t) => g.todos.push(t),
                    Component::Journal(j) => g.journals.push(j),
                }
            }
            if groups.is_empty() && (!cal.free_busys.is_empty() || !cal.alarms.is_empty()) {
                return Err(ItemError::Unsupported(if cal.free_busys.is_empty() {
                    "a VALARM outside any event or task"
                } else {
                    "VFREEBUSY"
                }));
            }
            for (_, g) in groups {
                items.push(Item::from_calendar(g)?);
            }
        }
        Ok(items)
    }

    fn from_calendar(mut cal: IcalCalendar) -> Result<Item, ItemError> {
        if !cal.free_busys.is_empty() {
            return Err(ItemError::Unsupported("VFREEBUSY"));
        }
        if !cal.alarms.is_empty() {
            return Err(ItemError::Unsupported("a VALARM outside any event or task"));
        }
        let kinds = [
            !cal.events.is_empty(),
            !cal.todos.is_empty(),
            !cal.journals.is_empty(),
        ];
        let kind = match kinds {
            [true, false, false] => ItemKind::Event,
            [false, true, false] => ItemKind::Todo,
            [false, false, true] => ItemKind::Journal,
            [false, false, false] => return Err(ItemError::NoComponents),
            _ => return Err(ItemError::MixedKinds),
        };
        upper_names(&mut cal);
        let mut uid: Option<String> = None;
        for (name, props) in item_components(&cal) {
            let this = prop_value(props, "UID")
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .ok_or(ItemError::MissingUid(name))?;
            match &uid {
                None => uid = Some(this.to_string()),
                Some(u) if u == this => {}
                Some(u) => return Err(ItemError::MixedUids(u.clone(), this.to_string())),
            }
        }
        let uid = uid.ok_or(ItemError::NoComponents)?;
        Ok(Item { cal, uid, kind })
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    pub fn kind(&self) -> ItemKind {
        self.kind
    }

    /// The master's SUMMARY (or the first component's), for messages.
    pub fn summary(&self) -> Option<&str> {
        item_components(&self.cal).find_map(|(_, props)| prop_value(props, "SUMMARY"))
    }

    /// The ORGANIZER value of the master, else of the first component that has one.
    pub fn organizer(&self) -> Option<&str> {
        let comps: Vec<_> = item_components(&self.cal).map(|(_, p)| p).collect();
        let master = comps
            .iter()
            .find(|p| prop_value(p, "RECURRENCE-ID").is_none());
        master
            .and_then(|p| prop_value(p, "ORGANIZER"))
            .or_else(|| comps.iter().find_map(|p| prop_value(p, "ORGANIZER")))
    }

    /// Every ATTENDEE address (lower-case, without `mailto:`), once each.
    pub fn attendees(&self) -> Vec<String> {
        let mut out: Vec<String> = item_components(&self.cal)
            .flat_map(|(_, props)| {
                props
                    .iter()
                    .filter(|p| p.name == "ATTENDEE")
                    .filter_map(|p| p.value.as_deref())
            })
            .map(crate::identity::normalize_address)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The master's SEQUENCE (0 when absent or unreadable).
    pub fn sequence(&self) -> i64 {
        self.master_value("SEQUENCE")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The master's LAST-MODIFIED as written (UTC `YYYYMMDDTHHMMSSZ` sorts by time).
    pub fn last_modified(&self) -> Option<&str> {
        self.master_value("LAST-MODIFIED")
    }

    fn master_value(&self, name: &str) -> Option<&str> {
        let comps: Vec<_> = item_components(&self.cal).map(|(_, p)| p).collect();
        let master = comps
            .iter()
            .find(|p| prop_value(p, "RECURRENCE-ID").is_none())
            .or(comps.first())?;
        prop_value(master, name)
    }

    /// The properties of each VEVENT, VTODO or VJOURNAL (the master and its overrides).
    pub fn components(&self) -> impl Iterator<Item = &[Property]> {
        item_components(&self.cal).map(|(_, p)| p)
    }

    pub fn identity(&self) -> IdentityKey {
        IdentityKey::new(self.organizer(), &self.uid)
    }

    /// A hash of the normalised content: ignores DTSTAMP, PRODID, the order of properties,
    /// parameters, components and VTIMEZONEs, line folding, and the case of `mailto:`.
    pub fn content_hash(&self) -> ContentHash {
        let text = canonical(&self.cal);
        ContentHash(xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }

    /// Rewrites ORGANIZER/ATTENDEE addresses (values and address parameters) in every component.
    /// Returns how many addresses changed.
    pub fn rewrite(&mut self, rw: &Rewriter) -> usize {
        if rw.is_empty() {
            return 0;
        }
        let mut changed = 0;
        for_each_props_mut(&mut self.cal, &mut |props| {
            for p in props.iter_mut() {
                if ADDRESS_PROPS.contains(&p.name.as_str())
                    && let Some(new) = p.value.as_deref().and_then(|v| rw.map_uri(v))
                {
                    p.value = Some(new);
                    changed += 1;
                }
                for (name, values) in p.params.iter_mut().flatten() {
                    if ADDRESS_PARAMS.contains(&name.as_str()) {
                        for v in values.iter_mut() {
                            if let Some(new) = rw.map_uri(v) {
                                *v = new;
                                changed += 1;
                            }
                        }
                    }
                }
            }
        });
        changed
    }

    /// Spells the UID as `uid` in every component (adopting a copy whose server refuses a UID
    /// change; the clean UID, and so the identity, stays the same).
    pub fn set_uid(&mut self, uid: &str) {
        for_each_props_mut(&mut self.cal, &mut |props| {
            for p in props.iter_mut().filter(|p| p.name == "UID") {
                p.value = Some(uid.to_string());
            }
        });
        self.uid = uid.to_string();
    }

    /// Sets `SCHEDULE-AGENT=CLIENT` on every ORGANIZER and ATTENDEE (RFC 6638 §7.1), so a
    /// scheduling server that receives the copy does not send invitations again.
    pub fn mark_client_scheduled(&mut self) {
        for_each_props_mut(&mut self.cal, &mut |props| {
            for p in props
                .iter_mut()
                .filter(|p| ADDRESS_PROPS.contains(&p.name.as_str()))
            {
                let params = p.params.get_or_insert_with(Vec::new);
                params.retain(|(n, _)| !n.eq_ignore_ascii_case("SCHEDULE-AGENT"));
                params.push(("SCHEDULE-AGENT".to_string(), vec!["CLIENT".to_string()]));
            }
        });
    }

    /// The item as iCalendar text: CRLF line ends, lines folded at 75 octets, parameter values
    /// quoted where RFC 5545 §3.2 requires it.
    pub fn to_ics(&self) -> String {
        let mut out = String::with_capacity(1024);
        let cal = &self.cal;
        out.push_str("BEGIN:VCALENDAR\r\n");
        write_props(&mut out, &cal.properties);
        for tz in &cal.timezones {
            write_timezone(&mut out, tz);
        }
        for e in &cal.events {
            write_component(&mut out, "VEVENT", &e.properties, &e.alarms);
        }
        for t in &cal.todos {
            write_component(&mut out, "VTODO", &t.properties, &t.alarms);
        }
        for j in &cal.journals {
            write_component(&mut out, "VJOURNAL", &j.properties, &[]);
        }
        out.push_str("END:VCALENDAR\r\n");
        out
    }
}

/// Maps calendar addresses of the source org to the target org.
#[derive(Debug, Clone, Default)]
pub struct Rewriter {
    /// Lower-cased source domain → target domain.
    domains: HashMap<String, String>,
    /// Lower-cased source address → target address; wins over `domains`.
    addresses: HashMap<String, String>,
}

impl Rewriter {
    pub fn new(
        domains: impl IntoIterator<Item = (String, String)>,
        addresses: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        Rewriter {
            domains: domains
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
            addresses: addresses
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.addresses.is_empty()
    }

    /// The target address for a source address, or `None` when it stays as it is.
    pub fn map_address(&self, addr: &str) -> Option<String> {
        let lower = addr.to_lowercase();
        if let Some(exact) = self.addresses.get(&lower) {
            return Some(exact.clone());
        }
        let (local, domain) = addr.rsplit_once('@')?;
        let target = self.domains.get(&domain.to_lowercase())?;
        Some(format!("{local}@{target}"))
    }

    /// Same as [`Rewriter::map_address`] for a `mailto:` URI; other URIs stay as they are.
    pub fn map_uri(&self, uri: &str) -> Option<String> {
        let addr = strip_mailto(uri)?;
        let scheme = &uri[..uri.len() - addr.len()];
        self.map_address(addr).map(|a| format!("{scheme}{a}"))
    }
}

// ---- traversal -------------------------------------------------------------------------------

enum Component {
    Event(ical::parser::ical::component::IcalEvent),
    Todo(ical::parser::ical::component::IcalTodo),
    Journal(IcalJournal),
}

/// Every VCALENDAR in `text`. The `ical` parser is third-party code fed untrusted input: a panic
/// inside it becomes an error for this item instead of taking the pass down.
fn parse_calendars(text: &str) -> Result<Vec<IcalCalendar>, ItemError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text); // Outlook and Windows tools write a BOM
    std::panic::catch_unwind(|| {
        ical::IcalParser::new(text.as_bytes()).collect::<Result<Vec<_>, _>>()
    })
    .map_err(|_| ItemError::Parse("the iCalendar parser failed on this input".into()))?
    .map_err(|e| ItemError::Parse(e.to_string()))
}

fn prop_value<'a>(props: &'a [Property], name: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.value.as_deref())
}

/// The item's own components (not timezones), with their names.
fn item_components(cal: &IcalCalendar) -> impl Iterator<Item = (&'static str, &[Property])> {
    let events = cal
        .events
        .iter()
        .map(|e| ("VEVENT", e.properties.as_slice()));
    let todos = cal.todos.iter().map(|t| ("VTODO", t.properties.as_slice()));
    let journals = cal
        .journals
        .iter()
        .map(|j| ("VJOURNAL", j.properties.as_slice()));
    events.chain(todos).chain(journals)
}

fn for_each_props_mut(cal: &mut IcalCalendar, f: &mut impl FnMut(&mut Vec<Property>)) {
    f(&mut cal.properties);
    for tz in &mut cal.timezones {
        f(&mut tz.properties);
        for t in &mut tz.transitions {
            f(&mut t.properties);
        }
    }
    for e in &mut cal.events {
        f(&mut e.properties);
        e.alarms.iter_mut().for_each(|a| f(&mut a.properties));
    }
    for t in &mut cal.todos {
        f(&mut t.properties);
        t.alarms.iter_mut().for_each(|a| f(&mut a.properties));
    }
    for j in &mut cal.journals {
        f(&mut j.properties);
    }
}

/// Property and parameter names are case-insensitive (RFC 5545 §2); store them upper-cased.
fn upper_names(cal: &mut IcalCalendar) {
    for_each_props_mut(cal, &mut |props| {
        for p in props.iter_mut() {
            if p.name.bytes().any(|b| b.is_ascii_lowercase()) {
                p.name.make_ascii_uppercase();
            }
            for (name, _) in p.params.iter_mut().flatten() {
                name.make_ascii_uppercase();
            }
        }
    });
}

// ---- normalised form for hashing --------------------------------------------------------------

fn canonical(cal: &IcalCalendar) -> String {
    let mut subs: Vec<String> = Vec::new();
    subs.extend(cal.timezones.iter().map(canonical_timezone));
    subs.extend(
        cal.events
            .iter()
            .map(|e| canonical_with_alarms("VEVENT", &e.properties, &e.alarms)),
    );
    subs.extend(
        cal.todos
            .iter()
            .map(|t| canonical_with_alarms("VTODO", &t.properties, &t.alarms)),
    );
    subs.extend(
        cal.journals
            .iter()
            .map(|j: &IcalJournal| canonical_component("VJOURNAL", &j.properties, &[], Vec::new())),
    );
    canonical_component(
        "VCALENDAR",
        &cal.properties,
        HASH_IGNORED_CALENDAR_PROPS,
        subs,
    )
}

fn canonical_timezone(tz: &IcalTimeZone) -> String {
    let subs = tz
        .transitions
        .iter()
        .map(|t| {
            use ical::parser::ical::component::IcalTimeZoneTransitionType as T;
            let name = match t.transition {
                T::STANDARD => "STANDARD",
                T::DAYLIGHT => "DAYLIGHT",
            };
            canonical_component(name, &t.properties, &[], Vec::new())
        })
        .collect();
    canonical_component("VTIMEZONE", &tz.properties, &[], subs)
}

fn canonical_with_alarms(name: &str, props: &[Property], alarms: &[IcalAlarm]) -> String {
    let subs = alarms
        .iter()
        .map(|a| canonical_component("VALARM", &a.properties, &[], Vec::new()))
        .collect();
    canonical_component(name, props, &[], subs)
}

fn canonical_component(
    name: &str,
    props: &[Property],
    ignored: &[&str],
    mut subs: Vec<String>,
) -> String {
    let mut lines: Vec<String> = props
        .iter()
        .filter(|p| {
            !HASH_IGNORED_PROPS.contains(&p.name.as_str()) && !ignored.contains(&p.name.as_str())
        })
        .map(canonical_property)
        .collect();
    lines.sort_unstable();
    subs.sort_unstable();
    let mut out = String::with_capacity(64 + lines.iter().map(|l| l.len() + 1).sum::<usize>());
    out.push_str("BEGIN:");
    out.push_str(name);
    out.push('\n');
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    for s in subs {
        out.push_str(&s);
    }
    out.push_str("END:");
    out.push_str(name);
    out.push('\n');
    out
}

fn canonical_property(p: &Property) -> String {
    let mut s = p.name.clone();
    if let Some(params) = &p.params {
        let mut params: Vec<&(String, Vec<String>)> = params
            .iter()
            .filter(|(n, _)| {
                !HASH_IGNORED_PARAMS
                    .iter()
                    .any(|i| n.eq_ignore_ascii_case(i))
            })
            .collect();
        params.sort_unstable();
        for (name, values) in params {
            s.push(';');
            s.push_str(name);
            s.push('=');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                push_address_aware(&mut s, v, ADDRESS_PARAMS.contains(&name.as_str()));
            }
        }
    }
    s.push(':');
    if let Some(v) = &p.value {
        if RECUR_PROPS.contains(&p.name.as_str()) {
            push_recur(&mut s, v);
        } else if p.name == "UID" {
            // Spellings of one meeting's UID (GOID with an instance date, wrapped) are one.
            s.push_str(&crate::identity::clean_uid(v));
        } else {
            push_address_aware(&mut s, v, ADDRESS_PROPS.contains(&p.name.as_str()));
        }
    }
    s
}

/// Properties whose value is a RECUR: servers reorder its rule parts (Xandikos writes
/// `BYDAY` before `BYMONTH`), and the order carries no meaning (RFC 5545 §3.3.10).
const RECUR_PROPS: &[&str] = &["RRULE", "EXRULE"];

fn push_recur(out: &mut String, v: &str) {
    let mut parts: Vec<String> = v
        .split(';')
        .filter(|p| !p.is_empty())
        .map(str::to_ascii_uppercase)
        .collect();
    parts.sort_unstable();
    out.push_str(&parts.join(";"));
}

/// Servers rewrite `MAILTO:` to `mailto:`; the scheme's case is not content.
fn push_address_aware(out: &mut String, v: &str, is_address: bool) {
    match strip_mailto(v) {
        Some(addr) if is_address => {
            out.push_str("mailto:");
            out.push_str(addr);
        }
        _ => out.push_str(v),
    }
}

// ---- emitting --------------------------------------------------------------------------------

fn write_timezone(out: &mut String, tz: &IcalTimeZone) {
    use ical::parser::ical::component::IcalTimeZoneTransitionType as T;
    out.push_str("BEGIN:VTIMEZONE\r\n");
    write_props(out, &tz.properties);
    for t in &tz.transitions {
        let name = match t.transition {
            T::STANDARD => "STANDARD",
            T::DAYLIGHT => "DAYLIGHT",
        };
        write_component(out, name, &t.properties, &[]);
    }
    out.push_str("END:VTIMEZONE\r\n");
}

fn write_component(out: &mut String, name: &str, props: &[Property], alarms: &[IcalAlarm]) {
    out.push_str("BEGIN:");
    out.push_str(name);
    out.push_str("\r\n");
    write_props(out, props);
    for a in alarms {
        write_component(out, "VALARM", &a.properties, &[]);
    }
    out.push_str("END:");
    out.push_str(name);
    out.push_str("\r\n");
}

fn write_props(out: &mut String, props: &[Property]) {
    let mut line = String::new();
    for p in props {
        line.clear();
        line.push_str(&p.name);
        for (name, values) in p.params.iter().flatten() {
            line.push(';');
            line.push_str(name);
            line.push('=');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                push_param_value(&mut line, v);
            }
        }
        line.push(':');
        if let Some(v) = &p.value {
            line.push_str(v);
        }
        fold_into(out, &line);
    }
}

/// RFC 5545 §3.2: a parameter value containing `,` `;` or `:` is a quoted-string; DQUOTE can
/// appear in neither form, so it becomes `'`.
fn push_param_value(out: &mut String, v: &str) {
    let needs_quotes = v.contains([',', ';', ':']);
    if needs_quotes {
        out.push('"');
        out.extend(v.chars().map(|c| if c == '"' { '\'' } else { c }));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// Folds a content line at 75 octets (RFC 5545 §3.1) on character boundaries. A physical line
/// never ends in whitespace, because readers (the `ical` crate among them) trim it away.
fn fold_into(out: &mut String, line: &str) {
    const FIRST: usize = 75;
    const NEXT: usize = 74; // plus the leading space
    let mut rest = line;
    let mut limit = FIRST;
    let mut first = true;
    while !rest.is_empty() {
        if !first {
            out.push(' ');
        }
        let cut = if rest.len() <= limit {
            rest.len()
        } else {
            fold_point(rest, limit)
        };
        out.push_str(&rest[..cut]);
        out.push_str("\r\n");
        rest = &rest[cut..];
        limit = NEXT;
        first = false;
    }
}

fn fold_point(s: &str, limit: usize) -> usize {
    let mut cut = limit;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let max = cut;
    // Step back over whitespace so the physical line does not end with it.
    while cut > 0 && s[..cut].ends_with([' ', '\t']) {
        cut -= 1;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
    }
    if cut == 0 { max } else { cut }
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
    fn folds_long_lines_without_trailing_space() {
        let long = format!("{}{}", "word ".repeat(40), "é".repeat(50));
        let ics = MEETING.replace("SUMMARY:Weekly\r\n", &format!("SUMMARY:{long}\r\n"));
        let item = Item::parse(&ics).unwrap();
        let out = item.to_ics();
        for line in out.split("\r\n") {
            assert!(line.len() <= 75, "line too long: {line:?}");
            assert!(!line.ends_with(' '), "ends with space: {line:?}");
        }
        let back = Item::parse(&out).unwrap();
        assert_eq!(back.summary(), Some(long.trim_end()));
        assert_eq!(back.content_hash(), item.content_hash());
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(Item::parse("").unwrap_err(), ItemError::Empty);
        assert!(matches!(Item::parse("garbage"), Err(ItemError::Parse(_))));
        let no_uid =
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(
            Item::parse(no_uid).unwrap_err(),
            ItemError::MissingUid("VEVENT")
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
}
