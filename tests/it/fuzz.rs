//! The item reader under random input: random bytes, and random iCalendar structures (nesting,
//! parameters, folding, recurrence rules from any year). Nothing may panic, and each item is
//! read, hashed, rewritten, written and judged against a window within the documented bounds
//! (nesting depth, item size, recurrence expansion). `TANDEM_FUZZ_CASES` sets the cases per
//! property (CI runs the default; a longer run is a larger number).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use tandem::domain::item::{Item, Rewriter};
use tandem::domain::window::Window;

fn cases() -> u32 {
    std::env::var("TANDEM_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000)
}

/// Everything tandem does with one item it has read.
fn exercise(text: &str) {
    let Ok(mut item) = Item::parse(text) else {
        return;
    };
    let rw = Rewriter::new(
        [("old.example".to_string(), "new.example".to_string())],
        std::iter::empty(),
    );
    item.rewrite(&rw);
    item.mark_client_scheduled();
    let _ = (item.identity(), item.content_hash());
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
    let window = Window {
        past: Some(Duration::from_secs(3650 * 86_400)),
        future: Some(Duration::from_secs(365 * 86_400)),
    };
    let _ = window.fit(&item, now);
    // What tandem writes, it reads back as the same item.
    let again = Item::parse(&item.to_ics()).expect("a written item reads back");
    assert_eq!(again.content_hash(), item.content_hash());
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("VEVENT".to_string()),
        Just("VALARM".to_string()),
        Just("VTODO".to_string()),
        Just("VTIMEZONE".to_string()),
        "X-[A-Z]{1,4}",
    ]
}

fn property() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        "[ -~]{0,40}",
        "\\PC{0,20}",
        Just("mailto:jane@old.example".to_string()),
    ];
    let rule = (
        prop::sample::select(vec![
            "SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY",
        ]),
        1u16..5,
        prop::option::of(prop::sample::select(vec![
            "BYHOUR=9",
            "BYMONTH=2;BYMONTHDAY=30",
            "BYDAY=MO,FR",
            "BYSETPOS=-1;BYDAY=MO",
            "COUNT=3",
            "UNTIL=19010101T000000Z",
        ])),
    )
        .prop_map(|(f, i, by)| {
            let by = by.map(|b| format!(";{b}")).unwrap_or_default();
            format!("RRULE:FREQ={f};INTERVAL={i}{by}")
        });
    prop_oneof![
        (1800u32..2100, 1u32..13).prop_map(|(y, m)| format!("DTSTART:{y}{m:02}01T000000Z")),
        rule,
        value.clone().prop_map(|v| format!("SUMMARY:{v}")),
        value.prop_map(|v| format!("ATTENDEE;CN=\"a:b;c\";X-P=q,r:{v}")),
        "[A-Z-]{1,8}(;[A-Z]{1,4}=[a-z]{0,4}){0,3}:[ -~]{0,30}",
    ]
}

fn component(depth: u32) -> BoxedStrategy<String> {
    let leaf = (name(), prop::collection::vec(property(), 0..6)).prop_map(|(n, props)| {
        format!(
            "BEGIN:{n}\r\nUID:u1\r\n{}\r\nEND:{n}\r\n",
            props.join("\r\n")
        )
    });
    if depth == 0 {
        return leaf.boxed();
    }
    (
        name(),
        prop::collection::vec(property(), 0..4),
        prop::collection::vec(component(depth - 1), 0..3),
    )
        .prop_map(|(n, props, subs)| {
            format!(
                "BEGIN:{n}\r\nUID:u1\r\n{}\r\n{}END:{n}\r\n",
                props.join("\r\n"),
                subs.concat()
            )
        })
        .boxed()
}

/// Folds `text` at random places, as a writer may, with CRLF or LF.
fn folded(text: String, at: Vec<usize>, lf: bool) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if at.contains(&i) && c != '\r' && c != '\n' {
            out.push_str(if lf { "\n " } else { "\r\n " });
        }
        out.push(c);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_lines_never_panic(lines in prop::collection::vec(
        prop_oneof![Just("BEGIN:VCALENDAR".to_string()), Just("END:VCALENDAR".to_string()),
            Just("BEGIN:VEVENT".to_string()), Just("END:VEVENT".to_string()), property()],
        0..40,
    )) {
        exercise(&lines.join("\r\n"));
    }

    #[test]
    fn random_structures_never_panic(
        subs in prop::collection::vec(component(5), 1..4),
        at in prop::collection::vec(0usize..400, 0..8),
        lf in any::<bool>(),
    ) {
        let text = format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{}END:VCALENDAR\r\n", subs.concat());
        exercise(&folded(text, at, lf));
    }
}
