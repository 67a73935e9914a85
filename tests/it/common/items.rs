//! A mix of calendar items like a real mailbox holds: recurring series with overridden
//! instances (and their time zone), all-day events, meetings with several attendees, non-ASCII
//! text and long lines that must be folded.

const VTIMEZONE: &str = "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\n\
TZOFFSETTO:+0200\r\nTZNAME:CEST\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n\
END:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\n\
DTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n";

/// Folds a content line at 75 octets on character boundaries (RFC 5545 §3.1).
pub fn fold(line: &str) -> String {
    let mut out = String::new();
    let mut width = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
    out
}

fn wrap(body: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//tandem tests//EN\r\n{body}END:VCALENDAR\r\n"
    )
}

/// The `i`th item of the mix, with `rev` folded into its summary so edits are visible.
pub fn item(i: usize, rev: u32) -> (String, String) {
    let uid = format!("item-{i:05}@old.example");
    let day = 1 + i % 21;
    let month = 1 + (i / 21) % 12;
    let body = match i % 4 {
        0 => {
            let master = format!(
                "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;TZID=Europe/Berlin:2026{month:02}{day:02}T090000\r\n\
                 DTEND;TZID=Europe/Berlin:2026{month:02}{day:02}T093000\r\nRRULE:FREQ=WEEKLY;COUNT=20\r\n\
                 SUMMARY:Weekly sync {i} r{rev}\r\nEND:VEVENT\r\n"
            );
            let day2 = day + 7;
            let over = format!(
                "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nRECURRENCE-ID;TZID=Europe/Berlin:2026{month:02}{day2:02}T090000\r\n\
                 DTSTART;TZID=Europe/Berlin:2026{month:02}{day2:02}T140000\r\nDTEND;TZID=Europe/Berlin:2026{month:02}{day2:02}T143000\r\n\
                 SUMMARY:Weekly sync {i} (moved)\r\nEND:VEVENT\r\n"
            );
            format!("{VTIMEZONE}{master}{over}")
        }
        1 => format!(
            "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:2026{month:02}{day:02}\r\n\
             DTEND;VALUE=DATE:2026{month:02}{:02}\r\nSUMMARY:Offsite day {i} r{rev}\r\nTRANSP:TRANSPARENT\r\nEND:VEVENT\r\n",
            day + 1
        ),
        2 => {
            let mut s = format!(
                "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:2026{month:02}{day:02}T130000Z\r\n\
                 DTEND:2026{month:02}{day:02}T140000Z\r\nSUMMARY:Planning {i} r{rev}\r\n\
                 ORGANIZER;CN=\"Doe, Jane\":mailto:jane.doe@old.example\r\n"
            );
            for a in ["bob", "carol", "dave", "erin", "frank"] {
                s.push_str(&format!(
                    "ATTENDEE;CN={a};ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{a}@old.example\r\n"
                ));
            }
            s.push_str("END:VEVENT\r\n");
            s
        }
        _ => {
            let desc = format!(
                "DESCRIPTION:Überprüfung der Ergebnisse – 日本語のテキスト – Ελληνικά – {} r{rev}",
                "lorem ipsum dolor sit amet ".repeat(8)
            );
            format!(
                "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:2026{month:02}{day:02}T160000Z\r\n\
                 DTEND:2026{month:02}{day:02}T170000Z\r\nSUMMARY:Café – réunion {i} r{rev}\r\n{}LOCATION:Zürich\\, Raum 4\r\nEND:VEVENT\r\n",
                fold(&desc)
            )
        }
    };
    (uid, wrap(&body))
}
