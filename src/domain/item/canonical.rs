//! The normalised form an item's content hash is taken over: what two spellings of one meeting
//! share. Order of properties, parameters and components, line folding, DTSTAMP, PRODID, the
//! scheduling parameters servers and tandem add, the case of `mailto:`, the order of RRULE parts
//! and the spelling of a GOID UID are left out; every value is otherwise taken as written.

use crate::domain::identity::strip_mailto;

use super::content::Property;
use super::tree::Component;

/// Properties whose value is a calendar address (RFC 5545 §3.3.3).
pub(super) const ADDRESS_PROPS: &[&str] = &["ORGANIZER", "ATTENDEE"];
/// Parameters whose values are calendar addresses.
pub(super) const ADDRESS_PARAMS: &[&str] = &["SENT-BY", "DELEGATED-TO", "DELEGATED-FROM"];

/// Properties that change on every export without changing the item.
const IGNORED_PROPS: &[&str] = &["DTSTAMP"];
/// Calendar-level properties that describe the writer, not the item.
const IGNORED_CALENDAR_PROPS: &[&str] = &["PRODID"];
/// Scheduling parameters that tandem sets on copies (SCHEDULE-AGENT) or servers add after
/// delivering (SCHEDULE-STATUS, RFC 6638 §7.3): not content.
const IGNORED_PARAMS: &[&str] = &["SCHEDULE-AGENT", "SCHEDULE-STATUS"];
/// Properties whose value is a RECUR: servers reorder its rule parts (Xandikos writes `BYDAY`
/// before `BYMONTH`), and the order carries no meaning (RFC 5545 §3.3.10).
const RECUR_PROPS: &[&str] = &["RRULE", "EXRULE"];

pub(super) fn canonical(cal: &Component) -> String {
    component(cal, IGNORED_CALENDAR_PROPS)
}

fn component(c: &Component, ignored: &[&str]) -> String {
    let mut lines: Vec<String> = c
        .props
        .iter()
        .filter(|p| {
            !IGNORED_PROPS.contains(&p.name.as_str()) && !ignored.contains(&p.name.as_str())
        })
        .map(property)
        .collect();
    lines.sort_unstable();
    let mut subs: Vec<String> = c.subs.iter().map(|s| component(s, &[])).collect();
    subs.sort_unstable();
    let mut out = String::with_capacity(64 + lines.iter().map(|l| l.len() + 1).sum::<usize>());
    out.push_str("BEGIN:");
    out.push_str(&c.name);
    out.push('\n');
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    for s in subs {
        out.push_str(&s);
    }
    out.push_str("END:");
    out.push_str(&c.name);
    out.push('\n');
    out
}

fn property(p: &Property) -> String {
    let mut s = p.name.clone();
    // Sorted by name, then values; quoting is spelling, not content. (The same form as before
    // exact reading, so an item read alike then and now keeps its hash across an upgrade.)
    let mut params: Vec<(&str, Vec<&str>)> = p
        .params
        .iter()
        .filter(|q| !IGNORED_PARAMS.contains(&q.name.as_str()))
        .map(|q| {
            (
                q.name.as_str(),
                q.values.iter().map(|v| v.text.as_str()).collect(),
            )
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
            push_address_aware(&mut s, v, ADDRESS_PARAMS.contains(&name));
        }
    }
    s.push(':');
    if RECUR_PROPS.contains(&p.name.as_str()) {
        push_recur(&mut s, &p.value);
    } else if p.name == "UID" {
        // Spellings of one meeting's UID (GOID with an instance date, wrapped) are one.
        s.push_str(&crate::domain::identity::clean_uid(&p.value));
    } else {
        push_address_aware(&mut s, &p.value, ADDRESS_PROPS.contains(&p.name.as_str()));
    }
    s
}

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
