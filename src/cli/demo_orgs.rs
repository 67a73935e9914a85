//! The demo's two small orgs on disk (`tandem demo` syncs them twice, in seconds, without a network).
//!
//! The old org (`old.example`) has six users whose calendars hold single events, all-day events,
//! tasks, recurring series (one with an EXDATE and a moved instance) and meetings that appear in
//! the organizer's and every attendee's calendar. The new org (`new.example`) starts empty.

use std::fmt::Write as _;
use std::path::Path;

const USERS: &[(&str, &str)] = &[
    ("alice", "Alice Archer"),
    ("bob", "Bob Baker"),
    ("carol", "Doe, Carol"),
    ("dave", "Dave Diaz"),
    ("erin", "Erin Eng"),
    ("frank", "Frank Fox"),
];
const MARKER: &str = ".tandem-demo";
/// The repair assistant's copy of one of bob's meetings, already in the new org.
pub(super) const REPAIR_COPY: &str = "CRA-0001.ics";

pub(super) struct DemoStats {
    pub users: usize,
    pub items: usize,
}

/// Writes the demo orgs and config into `dir` (which must be new, empty, or an earlier demo).
pub(super) fn build(dir: &Path) -> Result<DemoStats, String> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(format!(
                "{}: exists and is not an earlier demo; choose another --dir",
                dir.display()
            ));
        }
        std::fs::remove_dir_all(dir)
            .map_err(|e| format!("{}: cannot clear: {e}", dir.display()))?;
    }
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(dir.join(MARKER), "built by `tandem demo`; safe to delete\n").map_err(io)?;

    let calendars = generate();
    let mut items = 0;
    for (user, _) in USERS {
        std::fs::create_dir_all(dir.join("old-org").join(user)).map_err(io)?;
        std::fs::create_dir_all(dir.join("new-org").join(user)).map_err(io)?;
    }
    for (user, name, body) in &calendars {
        std::fs::write(dir.join("old-org").join(user).join(name), body).map_err(io)?;
        items += 1;
    }
    // Exchange's repair assistant got to one of bob's meetings first: a stale copy under the
    // meeting's GOID spelling, addresses already in the new org. tandem must adopt it.
    let (_, name, body) = calendars
        .iter()
        .find(|(u, n, _)| u == "bob" && n.starts_with("demo-meeting-"))
        .expect("bob has meetings");
    let uid = name.trim_end_matches(".ics");
    let copy = body
        .replace(
            &format!("UID:{uid}"),
            &format!("UID:{}", crate::domain::identity::wrap_uid(uid, None)),
        )
        .replace("@old.example", "@new.example")
        .replace("SUMMARY:", "SUMMARY:(copy) ");
    std::fs::write(dir.join("new-org/bob").join(REPAIR_COPY), copy).map_err(io)?;
    let mut toml = String::from(
        "# Written by `tandem demo`: two vdir orgs, one pair per user.\n\
         [state]\nurl = \"sqlite://tandem.db\"\n\n\
         [servers.old]\nkind = \"vdir\"\npath = \"old-org\"\n\n\
         [servers.new]\nkind = \"vdir\"\npath = \"new-org\"\n\n\
         [rewrite]\ndomains = { \"old.example\" = \"new.example\" }\n",
    );
    for (user, _) in USERS {
        let _ = write!(
            toml,
            "\n[[pairs]]\nid = \"{user}\"\nsource = \"old:/{user}/\"\ntarget = \"new:/{user}/\"\n"
        );
    }
    std::fs::write(dir.join("tandem.toml"), toml).map_err(io)?;
    Ok(DemoStats {
        users: USERS.len(),
        items,
    })
}

/// (user, file name, body) for every item of the old org.
pub(super) fn generate() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (ui, (user, _)) in USERS.iter().enumerate() {
        own_items(ui, user, &mut |uid: String, body: String| {
            out.push((user.to_string(), format!("{uid}.ics"), body))
        });
    }
    meetings(&mut out);
    out
}

/// One user's own items: single events, all-day events, tasks and series (one with a
/// cancelled and a moved instance), given to `push` as (UID, body).
fn own_items(ui: usize, user: &str, push: &mut dyn FnMut(String, String)) {
    for i in 0..20 {
        let day = (ui * 3 + i * 2) as i64;
        let hour = 8 + (i % 9);
        let uid = format!("demo-{user}-single-{i}");
        push(
            uid.clone(),
            calendar(&event(
                &uid,
                day,
                Some((hour, 0)),
                60,
                &format!("Focus time {}", i + 1),
                None,
                &[],
                &[],
            )),
        );
    }
    for i in 0..8 {
        let uid = format!("demo-{user}-allday-{i}");
        let summary = ["Out of office", "Conference", "Public holiday", "Training"][i % 4];
        push(
            uid.clone(),
            calendar(&event(
                &uid,
                (i * 9 + ui) as i64,
                None,
                0,
                summary,
                None,
                &[],
                &[],
            )),
        );
    }
    for i in 0..2 {
        let uid = format!("demo-{user}-task-{i}");
        push(
            uid.clone(),
            calendar(&format!(
                "BEGIN:VTODO\r\nUID:{uid}\r\nDTSTAMP:20261101T090000Z\r\nDUE;VALUE=DATE:{}\r\nSUMMARY:Migration checklist {}\r\nSTATUS:NEEDS-ACTION\r\nEND:VTODO\r\n",
                date(10 + i * 7),
                i + 1
            )),
        );
    }
    // A weekly series with one cancelled and one moved instance, in a named time zone.
    let uid = format!("demo-{user}-weekly-1on1");
    let start = 1 + ui as i64;
    let master = event(
        &uid,
        start,
        Some((14, 0)),
        30,
        "1:1 with manager",
        Some("FREQ=WEEKLY;COUNT=12"),
        &[],
        &[],
    )
    .replace(
        "END:VEVENT\r\n",
        &format!(
            "EXDATE;TZID=Europe/Berlin:{}T140000\r\nEND:VEVENT\r\n",
            date(start + 14)
        ),
    );
    let moved = format!(
        "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261101T090000Z\r\nRECURRENCE-ID;TZID=Europe/Berlin:{d}T140000\r\n\
         DTSTART;TZID=Europe/Berlin:{d}T160000\r\nDTEND;TZID=Europe/Berlin:{d}T163000\r\nSUMMARY:1:1 with manager (moved)\r\nEND:VEVENT\r\n",
        d = date(start + 21)
    );
    push(uid.clone(), calendar(&format!("{BERLIN}{master}{moved}")));
    for (i, rule) in [
        "FREQ=DAILY;COUNT=10;BYDAY=MO,TU,WE,TH,FR",
        "FREQ=MONTHLY;BYMONTHDAY=1;COUNT=6",
    ]
    .iter()
    .enumerate()
    {
        let uid = format!("demo-{user}-series-{i}");
        push(
            uid.clone(),
            calendar(&event(
                &uid,
                2 + i as i64,
                Some((9, 0)),
                15,
                ["Daily check-in", "Monthly report"][i],
                Some(rule),
                &[],
                &[],
            )),
        );
    }
}

/// Meetings: each user organises three; each appears in the organizer's and every attendee's
/// calendar under the same UID, as a scheduling server delivers them.
fn meetings(out: &mut Vec<(String, String, String)>) {
    let addr = |u: &str| format!("{u}@old.example");
    for (ui, (organizer, org_name)) in USERS.iter().enumerate() {
        for m in 0..3 {
            let attendees: Vec<usize> = (1..=2 + m % 2)
                .map(|k| (ui + k + m) % USERS.len())
                .filter(|a| *a != ui)
                .collect();
            let uid = if m == 0 {
                format!("demo-standup-{}", addr(organizer))
            } else {
                format!("demo-meeting-{organizer}-{m}")
            };
            let summary = ["Standup", "Migration planning", "Design review"][m];
            let rrule = (m == 0).then_some("FREQ=WEEKLY;BYDAY=MO,WE;COUNT=20");
            let org_line = format!("ORGANIZER;CN=\"{org_name}\":mailto:{}", addr(organizer));
            let mut lines = vec![org_line];
            for a in &attendees {
                let (u, n) = USERS[*a];
                lines.push(format!("ATTENDEE;CN=\"{n}\";ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;RSVP=TRUE:mailto:{}", addr(u)));
            }
            lines.push(
                "ATTENDEE;CN=External Partner;PARTSTAT=NEEDS-ACTION:mailto:partner@partner.example"
                    .into(),
            );
            let body = calendar(&event(
                &uid,
                (ui * 2 + m * 5) as i64,
                Some((10 + m, 30)),
                45,
                summary,
                rrule,
                &lines,
                &["LOCATION:Room \"Harbour\"\\, 2nd floor"],
            ));
            for who in std::iter::once(ui).chain(attendees.iter().copied()) {
                out.push((USERS[who].0.to_string(), format!("{uid}.ics"), body.clone()));
            }
        }
    }
}

const BERLIN: &str = "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
TZNAME:CEST\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\n\
TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n\
END:STANDARD\r\nEND:VTIMEZONE\r\n";

fn calendar(components: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//old.example//Groupware 9.1//EN\r\n{components}END:VCALENDAR\r\n"
    )
}

/// A VEVENT `day` days after 2026-11-02; `time` None makes it all-day.
#[allow(clippy::too_many_arguments)]
fn event(
    uid: &str,
    day: i64,
    time: Option<(usize, usize)>,
    minutes: usize,
    summary: &str,
    rrule: Option<&str>,
    people: &[String],
    extra: &[&str],
) -> String {
    let mut e = format!("BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261101T090000Z\r\n");
    match time {
        Some((h, m)) => {
            let end = h * 60 + m + minutes;
            let tz = if rrule.is_some_and(|r| r.contains("WEEKLY;COUNT=12")) {
                ";TZID=Europe/Berlin"
            } else {
                ""
            };
            let z = if tz.is_empty() { "Z" } else { "" };
            let _ = write!(
                e,
                "DTSTART{tz}:{}T{h:02}{m:02}00{z}\r\nDTEND{tz}:{}T{:02}{:02}00{z}\r\n",
                date(day),
                date(day),
                end / 60,
                end % 60
            );
        }
        None => {
            let _ = write!(
                e,
                "DTSTART;VALUE=DATE:{}\r\nDTEND;VALUE=DATE:{}\r\nTRANSP:TRANSPARENT\r\n",
                date(day),
                date(day + 1)
            );
        }
    }
    let _ = write!(e, "SUMMARY:{summary}\r\n");
    if let Some(r) = rrule {
        let _ = write!(e, "RRULE:{r}\r\n");
    }
    for p in people {
        let _ = write!(e, "{p}\r\n");
    }
    for x in extra {
        let _ = write!(e, "{x}\r\n");
    }
    e.push_str("BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nTRIGGER:-PT10M\r\nEND:VALARM\r\nEND:VEVENT\r\n");
    e
}

/// `YYYYMMDD` of 2026-11-02 plus `offset` days (proleptic Gregorian; Hinnant's civil_from_days).
fn date(offset: i64) -> String {
    let z = 20_759 + offset + 719_468; // 2026-11-02 is day 20759 since 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "20261102");
        assert_eq!(date(29), "20261201");
        assert_eq!(date(60), "20270101");
        assert_eq!(date(-306), "20251231");
    }

    #[test]
    fn every_generated_item_parses() {
        let items = generate();
        assert!(items.len() >= 200, "{}", items.len());
        for (user, name, body) in &items {
            crate::domain::item::Item::parse(body).unwrap_or_else(|e| panic!("{user}/{name}: {e}"));
        }
    }
}
