//! Address rewriting for the target org, checked with a second parser: what tandem emits is read
//! by Python's `icalendar` (from the test virtualenv) the same way, and its re-emission means the
//! same to tandem.

use crate::common;

use tandem::domain::item::{Item, Rewriter};

const MEETING: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Old Org//EN\r\n\
BEGIN:VEVENT\r\nUID:040000008200E00074C5B7101A82E00800000000A0B1C2D3E4F5A6B7000000000000000010000000AABBCCDDEEFF00112233445566778899\r\n\
DTSTAMP:20260101T000000Z\r\nDTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=4\r\n\
SUMMARY:Quarterly review\\, Q1\\; all hands\r\n\
ORGANIZER;CN=\"Doe, Jane\";SENT-BY=\"MAILTO:Assistant@Old.Example\":MAILTO:Jane.Doe@OLD.example\r\n\
ATTENDEE;CN=\"Smith; John\";PARTSTAT=ACCEPTED:mailto:john@old.example\r\n\
ATTENDEE;CN=Carol;DELEGATED-FROM=\"mailto:dave@old.example\":mailto:Carol@Old.Example\r\n\
ATTENDEE;CN=\"Outside: Partner\":mailto:x@partner.example\r\n\
BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:040000008200E00074C5B7101A82E00800000000A0B1C2D3E4F5A6B7000000000000000010000000AABBCCDDEEFF00112233445566778899\r\n\
RECURRENCE-ID:20260112T100000Z\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260112T130000Z\r\nDTEND:20260112T140000Z\r\n\
SUMMARY:Quarterly review (moved)\r\nORGANIZER;CN=\"Doe, Jane\":mailto:jane.doe@old.example\r\n\
ATTENDEE;CN=\"Smith; John\":mailto:JOHN@OLD.EXAMPLE\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

fn rewriter() -> Rewriter {
    Rewriter::new(
        [("old.example".to_string(), "new.example".to_string())],
        // An exact address wins over its domain.
        [(
            "carol@old.example".to_string(),
            "c.jones@new.example".to_string(),
        )],
    )
}

/// Python's reading of each item: per VEVENT, the organizer and attendees with their CN and
/// address parameters; and its own re-emission of the whole item.
fn python_reads(items: &[String]) -> serde_json::Value {
    const SCRIPT: &str = r#"
import json, sys
from icalendar import Calendar
out = []
for text in json.load(sys.stdin):
    cal = Calendar.from_ical(text)
    events = []
    for ev in cal.walk("VEVENT"):
        def person(p):
            return {"value": str(p), "params": {k: str(v) for k, v in p.params.items()}}
        att = ev.get("ATTENDEE", [])
        if not isinstance(att, list):
            att = [att]
        events.append({
            "uid": str(ev.get("UID")),
            "summary": str(ev.get("SUMMARY")),
            "organizer": person(ev.get("ORGANIZER")),
            "attendees": [person(a) for a in att],
        })
    out.append({"events": events, "reemitted": cal.to_ical().decode()})
json.dump(out, sys.stdout)
"#;
    common::reference::python("icalendar reading tandem's output", SCRIPT, &items)
}

#[test]
fn rewritten_items_read_the_same_in_a_second_parser() {
    let mut item = Item::parse(MEETING).unwrap();
    let before = item.identity();
    assert_eq!(
        item.rewrite(&rewriter()),
        7,
        "organizer, SENT-BY, three attendees, DELEGATED-FROM; and the exception's two"
    );
    item.mark_client_scheduled();
    let emitted = item.to_ics();

    // tandem's own reading.
    let back = Item::parse(&emitted).unwrap();
    assert_eq!(
        back.identity().uid,
        before.uid,
        "the clean GOID is unchanged"
    );
    assert_eq!(
        back.identity().organizer.as_deref(),
        Some("jane.doe@new.example")
    );
    // Only the domain changes; the local part and the scheme keep their case.
    let lines = emitted.replace("\r\n ", "");
    assert!(
        lines.contains("ORGANIZER;CN=\"Doe, Jane\";SENT-BY=\"MAILTO:Assistant@new.example\";SCHEDULE-AGENT=CLIENT:MAILTO:Jane.Doe@new.example\r\n"),
        "{lines}"
    );
    assert!(lines.contains("ATTENDEE;CN=\"Smith; John\";PARTSTAT=ACCEPTED;SCHEDULE-AGENT=CLIENT:mailto:john@new.example\r\n"), "{lines}");
    assert!(
        lines.contains(":mailto:c.jones@new.example\r\n"),
        "exact address wins: {lines}"
    );
    assert!(
        lines.contains("DELEGATED-FROM=\"mailto:dave@new.example\""),
        "{lines}"
    );
    assert!(
        lines.contains(":mailto:x@partner.example\r\n"),
        "unmapped addresses stay: {lines}"
    );
    assert!(
        !lines.to_ascii_lowercase().contains("@old.example"),
        "{lines}"
    );

    // Python's reading.
    let got = python_reads(std::slice::from_ref(&emitted));
    let events = got[0]["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let master = &events[0];
    assert_eq!(master["summary"], "Quarterly review, Q1; all hands");
    assert_eq!(master["organizer"]["params"]["CN"], "Doe, Jane");
    assert_eq!(master["organizer"]["params"]["SCHEDULE-AGENT"], "CLIENT");
    assert!(
        master["organizer"]["params"]["SENT-BY"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("mailto:assistant@new.example")
    );
    assert!(
        master["organizer"]["value"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("mailto:jane.doe@new.example")
    );
    let attendees: Vec<(String, String)> = master["attendees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["value"].as_str().unwrap().to_lowercase(),
                a["params"]["CN"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        attendees,
        [
            (
                "mailto:john@new.example".to_string(),
                "Smith; John".to_string()
            ),
            (
                "mailto:c.jones@new.example".to_string(),
                "Carol".to_string()
            ),
            (
                "mailto:x@partner.example".to_string(),
                "Outside: Partner".to_string()
            ),
        ]
    );
    assert_eq!(
        events[1]["attendees"][0]["value"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        "mailto:john@new.example"
    );

    // Python's re-emission means the same to tandem.
    let again = Item::parse(got[0]["reemitted"].as_str().unwrap()).unwrap();
    assert_eq!(again.identity(), back.identity());
    assert_eq!(
        again.content_hash(),
        back.content_hash(),
        "python:\n{}\ntandem:\n{emitted}",
        got[0]["reemitted"]
    );
}
