//! The sync window: which items are recent or near enough to be written to the target.
//!
//! An item is inside the window when any of its instances overlaps `[now - past, now + future)`.
//! Recurring items are expanded with the `rrule` crate; time zones are IANA names (chrono-tz) or
//! Windows names such as `W. Europe Standard Time` (mapped through the CLDR table of
//! `windows-timezones`). Whatever cannot be read (no start, an unknown rule) counts as inside:
//! syncing an item too many is harmless, leaving one out is not.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rrule::{RRule, RRuleSet, Unvalidated};

use crate::domain::item::{Item, ItemKind, Property};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub past: Option<Duration>,
    pub future: Option<Duration>,
}

/// Where an item stands against the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Inside,
    /// No instance overlaps the window now. `enters`: when the first one will (its start minus
    /// `future`); `None` if none ever will (the item lies wholly in the past).
    Outside {
        enters: Option<DateTime<Utc>>,
    },
}

impl Fit {
    pub fn is_inside(&self) -> bool {
        matches!(self, Fit::Inside)
    }
}

impl Window {
    /// The setting as stored with items judged by it (`past/future` in seconds, `-` unlimited).
    pub fn key(&self) -> String {
        let part = |d: Option<Duration>| d.map_or("-".to_string(), |d| d.as_secs().to_string());
        format!("{}/{}", part(self.past), part(self.future))
    }

    pub(crate) fn is_unlimited(&self) -> bool {
        self.past.is_none() && self.future.is_none()
    }

    /// Where `item` stands against the window at `now`; an error when judging it would walk
    /// more recurrence periods than [`MAX_EXPANSION`].
    pub fn fit(&self, item: &Item, now: DateTime<Utc>) -> Result<Fit, TooLong> {
        // Components tandem does not interpret are not judged by their dates.
        if self.is_unlimited() || item.kind() == ItemKind::Other {
            return Ok(Fit::Inside);
        }
        let lo = self
            .past
            .and_then(|d| now.checked_sub_signed(chrono::Duration::from_std(d).ok()?));
        let hi = self
            .future
            .and_then(|d| now.checked_add_signed(chrono::Duration::from_std(d).ok()?));
        let future = self.future.and_then(|d| chrono::Duration::from_std(d).ok());
        let mut enters: Option<DateTime<Utc>> = None;
        let mut budget = MAX_EXPANSION;
        for props in item.components() {
            // An open task stays current however old its dates are.
            if item.kind() == ItemKind::Todo && is_open_task(props) {
                return Ok(Fit::Inside);
            }
            let Some(first) = first_overlapping_start(props, lo, &mut budget)? else {
                continue;
            };
            let Some(start) = first else {
                return Ok(Fit::Inside);
            };
            match hi {
                Some(hi) if start >= hi => {
                    let at = future
                        .and_then(|f| start.checked_sub_signed(f))
                        .unwrap_or(start);
                    enters = Some(enters.map_or(at, |e| e.min(at)));
                }
                _ => return Ok(Fit::Inside),
            }
        }
        Ok(Fit::Outside { enters })
    }
}

/// The most recurrence periods (seconds of a SECONDLY rule, days of a DAILY one…) walked to
/// judge one item against the window: enough for a daily series since the 16th century or an
/// hourly one over twenty years, and a few tenths of a second of CPU at most. A rule that needs
/// more (`FREQ=SECONDLY` from 1900) makes the item unsyncable with a window, not a stalled agent.
pub(crate) const MAX_EXPANSION: u64 = 200_000;

/// An item whose recurrence cannot be judged within [`MAX_EXPANSION`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "its recurrence (RRULE:{rule}) repeats more than {MAX_EXPANSION} times before the sync \
     window starts (tandem's limit on expanding one item; without [sync] window_past it syncs)"
)]
pub struct TooLong {
    rule: String,
}

/// The start of the component's first instance that ends after `lo`:
/// `None` if no instance does, `Some(None)` if it cannot be told (counts as inside). Each
/// recurrence period walked is taken from `budget`.
fn first_overlapping_start(
    props: &[Property],
    lo: Option<DateTime<Utc>>,
    budget: &mut u64,
) -> Result<Option<Option<DateTime<Utc>>>, TooLong> {
    let find = |name: &str| props.iter().find(|p| p.name == name);
    let start_prop = find("DTSTART").or_else(|| find("DUE"));
    let Some(start) = start_prop.and_then(Moment::parse) else {
        return Ok(Some(None));
    };
    let length = instance_length(props, &start);
    // An end beyond what chrono can hold is later than any window.
    let ends_after_lo = |s: DateTime<Utc>| {
        lo.is_none_or(|lo| {
            s.checked_add_signed(length).is_none_or(|end| end > lo) || (length.is_zero() && s >= lo)
        })
    };
    let rules: Vec<&str> = props
        .iter()
        .filter(|p| p.name == "RRULE")
        .map(|p| p.value.trim())
        .collect();
    let rdates: Vec<&Property> = props.iter().filter(|p| p.name == "RDATE").collect();
    if rules.is_empty() && rdates.is_empty() {
        let s = start.utc();
        return Ok(ends_after_lo(s).then_some(Some(s)));
    }
    let dtstart = start.zoned();
    // DTSTART is always the first instance (RFC 5545 §3.8.5.3), whether the rule matches it or not.
    let mut set = RRuleSet::new(dtstart).rdate(dtstart);
    let mut step = i64::MAX;
    for rule in &rules {
        let parsed = rule
            .parse::<RRule<Unvalidated>>()
            .and_then(|r| r.validate(dtstart));
        match parsed {
            Ok(r) => {
                step = step.min(period_seconds(r.get_freq()) * i64::from(r.get_interval().max(1)));
                set = set.rrule(r);
            }
            Err(_) => return Ok(Some(None)),
        }
    }
    for p in rdates
        .iter()
        .copied()
        .chain(props.iter().filter(|p| p.name == "EXDATE"))
    {
        let exclude = p.name == "EXDATE";
        for m in Moment::parse_list(p) {
            let at = m.zoned();
            set = if exclude {
                set.exdate(at)
            } else {
                set.rdate(at)
            };
        }
    }
    let Some(lo) = lo else {
        let first = set.all(8).dates.into_iter().map(|d| d.with_timezone(&Utc));
        return Ok(first.into_iter().find(|s| ends_after_lo(*s)).map(Some));
    };
    // Expand: the first instance starting after `lo - length` is the first that can overlap.
    let from = lo
        .checked_sub_signed(length)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let too_long = || TooLong {
        rule: rules.join(" RRULE:"),
    };
    let mut last = start.utc();
    for at in &set.limit() {
        let at = at.with_timezone(&Utc);
        // The expander works through every period between two instances, even when a BY- part
        // lets only a few through: the gap since the last one is what this instance cost.
        let periods = (at - last).num_seconds().max(0) / step.max(1);
        let cost = (periods.max(1) as u64).saturating_mul(rules.len().max(1) as u64);
        *budget = budget.checked_sub(cost).ok_or_else(too_long)?;
        last = at;
        if at >= from && ends_after_lo(at) {
            return Ok(Some(Some(at)));
        }
    }
    Ok(None)
}

/// How long one period of a recurrence frequency lasts, at least (a month is 28 days).
fn period_seconds(freq: rrule::Frequency) -> i64 {
    use rrule::Frequency::*;
    match freq {
        Yearly => 365 * 86_400,
        Monthly => 28 * 86_400,
        Weekly => 7 * 86_400,
        Daily => 86_400,
        Hourly => 3_600,
        Minutely => 60,
        Secondly => 1,
    }
}

/// DTEND - DTSTART, else DURATION, else a day for a date and nothing for a date-time.
fn instance_length(props: &[Property], start: &Moment) -> chrono::Duration {
    let find = |name: &str| props.iter().find(|p| p.name == name);
    if let Some(end) = find("DTEND").and_then(Moment::parse) {
        return (end.utc() - start.utc()).max(chrono::Duration::zero());
    }
    if let Some(d) = find("DURATION").and_then(|p| parse_duration(p.value.trim())) {
        return d.max(chrono::Duration::zero());
    }
    if start.all_day {
        chrono::Duration::days(1)
    } else {
        chrono::Duration::zero()
    }
}

fn is_open_task(props: &[Property]) -> bool {
    let status = props
        .iter()
        .find(|p| p.name == "STATUS")
        .map_or("", |p| p.value.trim());
    let done = status.eq_ignore_ascii_case("COMPLETED") || status.eq_ignore_ascii_case("CANCELLED");
    !done && !props.iter().any(|p| p.name == "COMPLETED")
}

/// A DATE or DATE-TIME value with its zone.
#[derive(Debug, Clone, Copy)]
struct Moment {
    at: DateTime<rrule::Tz>,
    all_day: bool,
}

impl Moment {
    fn utc(&self) -> DateTime<Utc> {
        self.at.with_timezone(&Utc)
    }

    fn zoned(&self) -> DateTime<rrule::Tz> {
        self.at
    }

    fn parse(p: &Property) -> Option<Moment> {
        Moment::parse_list(p).into_iter().next()
    }

    /// Every value of a (possibly comma-separated) DATE / DATE-TIME property; PERIOD values
    /// count by their start.
    fn parse_list(p: &Property) -> Vec<Moment> {
        let tz = p.param("TZID").map(zone).unwrap_or(rrule::Tz::UTC);
        p.value
            .split(',')
            .filter_map(|v| Moment::parse_value(v.split('/').next()?.trim(), tz))
            .collect()
    }

    fn parse_value(v: &str, tz: rrule::Tz) -> Option<Moment> {
        if v.len() == 8 {
            let d = NaiveDate::parse_from_str(v, "%Y%m%d").ok()?;
            let local = d.and_hms_opt(0, 0, 0)?;
            return Some(Moment {
                at: local_in(tz, local)?,
                all_day: true,
            });
        }
        if let Some(utc) = v.strip_suffix('Z').or_else(|| v.strip_suffix('z')) {
            let naive = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").ok()?;
            return Some(Moment {
                at: Utc.from_utc_datetime(&naive).with_timezone(&tz),
                all_day: false,
            });
        }
        let naive = NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S").ok()?;
        Some(Moment {
            at: local_in(tz, naive)?,
            all_day: false,
        })
    }
}

/// A wall-clock time in `tz`; in a DST gap, the hour after.
fn local_in(tz: rrule::Tz, naive: NaiveDateTime) -> Option<DateTime<rrule::Tz>> {
    tz.from_local_datetime(&naive).earliest().or_else(|| {
        tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
    })
}

/// A TZID as a zone: an IANA name, a Windows name, or an IANA name behind a vendor prefix
/// (`/mozilla.org/20070129_1/America/New_York`). Unknown zones are read as UTC: off by hours at
/// most, which matters little for a window measured in days.
pub fn zone(tzid: &str) -> rrule::Tz {
    let name = tzid.trim().trim_matches('"');
    if let Ok(tz) = chrono_tz::Tz::from_str(name) {
        return rrule::Tz::Tz(tz);
    }
    if let Ok(w) = windows_timezones::WindowsTimezone::from_str(name) {
        return rrule::Tz::Tz(w.into());
    }
    let parts: Vec<&str> = name.split('/').filter(|s| !s.is_empty()).collect();
    for take in [3, 2] {
        if parts.len() >= take
            && let Ok(tz) = chrono_tz::Tz::from_str(&parts[parts.len() - take..].join("/"))
        {
            return rrule::Tz::Tz(tz);
        }
    }
    rrule::Tz::UTC
}

/// An RFC 5545 DURATION (`P1D`, `-PT15M`, `P2W`, `P1DT2H`).
fn parse_duration(v: &str) -> Option<chrono::Duration> {
    let v = v.trim();
    let (neg, rest) = match v.as_bytes().first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    let rest = rest.strip_prefix('P').or_else(|| rest.strip_prefix('p'))?;
    let mut total = chrono::Duration::zero();
    let mut num = String::new();
    let mut in_time = false;
    for c in rest.chars() {
        match c.to_ascii_uppercase() {
            d @ '0'..='9' => num.push(d),
            'T' => in_time = true,
            unit => {
                let n: i64 = num.parse().ok()?;
                num.clear();
                let part = match (unit, in_time) {
                    ('W', false) => chrono::Duration::try_weeks(n),
                    ('D', false) => chrono::Duration::try_days(n),
                    ('H', true) => chrono::Duration::try_hours(n),
                    ('M', true) => chrono::Duration::try_minutes(n),
                    ('S', true) => chrono::Duration::try_seconds(n),
                    _ => None,
                }?;
                total = total.checked_add(&part)?;
            }
        }
    }
    if !num.is_empty() {
        return None;
    }
    Some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
    }

    fn window(past_days: u64, future_days: u64) -> Window {
        Window {
            past: Some(DAY * past_days as u32),
            future: Some(DAY * future_days as u32),
        }
    }

    fn event(body: &str) -> Item {
        Item::parse(&format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:w@example.com\r\n{body}END:VEVENT\r\nEND:VCALENDAR\r\n"
        ))
        .unwrap()
    }

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn single_events() {
        let w = window(30, 365);
        assert_eq!(
            w.fit(
                &event("DTSTART:20261120T090000Z\r\nDTEND:20261120T100000Z\r\n"),
                now()
            )
            .unwrap(),
            Fit::Inside
        );
        // Ended before the window: never comes back.
        assert_eq!(
            w.fit(
                &event("DTSTART:20250101T090000Z\r\nDTEND:20250101T100000Z\r\n"),
                now()
            )
            .unwrap(),
            Fit::Outside { enters: None }
        );
        // Far in the future: enters when its start is `future` away.
        let far = w
            .fit(&event("DTSTART:20281121T120000Z\r\n"), now())
            .unwrap();
        assert_eq!(
            far,
            Fit::Outside {
                enters: Some(
                    Utc.with_ymd_and_hms(2028, 11, 21, 12, 0, 0).unwrap()
                        - chrono::Duration::days(365)
                )
            }
        );
        // Started before the window but still running inside it.
        assert_eq!(
            w.fit(
                &event("DTSTART;VALUE=DATE:20261001\r\nDTEND;VALUE=DATE:20261201\r\n"),
                now()
            )
            .unwrap(),
            Fit::Inside
        );
        // DURATION instead of DTEND.
        assert_eq!(
            w.fit(
                &event("DTSTART:20261001T000000Z\r\nDURATION:P25D\r\n"),
                now()
            )
            .unwrap(),
            Fit::Inside
        );
        assert!(
            !w.fit(
                &event("DTSTART:20261001T000000Z\r\nDURATION:PT1H\r\n"),
                now()
            )
            .unwrap()
            .is_inside()
        );
        // No start: cannot be told, so synced.
        assert_eq!(
            w.fit(&event("SUMMARY:undated\r\n"), now()).unwrap(),
            Fit::Inside
        );
        assert_eq!(
            Window::default()
                .fit(&event("DTSTART:19900101T000000Z\r\n"), now())
                .unwrap(),
            Fit::Inside
        );
    }

    #[test]
    fn recurring_series_starting_before_the_window() {
        let w = window(30, 365);
        let weekly = event(
            "DTSTART;TZID=W. Europe Standard Time:20200106T100000\r\nDTEND;TZID=W. Europe Standard Time:20200106T110000\r\nRRULE:FREQ=WEEKLY;BYDAY=MO\r\n",
        );
        assert_eq!(w.fit(&weekly, now()).unwrap(), Fit::Inside);
        let weekly_ended = event(
            "DTSTART;TZID=W. Europe Standard Time:20200106T100000\r\nRRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20210101T000000Z\r\n",
        );
        assert_eq!(
            w.fit(&weekly_ended, now()).unwrap(),
            Fit::Outside { enters: None }
        );
        // Every first Monday of the month from 1990: the expander walks 36 years to get here.
        let monthly = event("DTSTART:19900101T100000Z\r\nRRULE:FREQ=MONTHLY;BYDAY=1MO\r\n");
        assert_eq!(
            window(10, 10).fit(&monthly, now()).unwrap(),
            Fit::Outside {
                enters: Some(
                    at(2026, 12, 7) + chrono::Duration::hours(10) - chrono::Duration::days(10)
                )
            }
        );
        let ended =
            event("DTSTART:20200106T100000Z\r\nRRULE:FREQ=WEEKLY;UNTIL=20210101T000000Z\r\n");
        assert_eq!(w.fit(&ended, now()).unwrap(), Fit::Outside { enters: None });
        let counted = event("DTSTART:20200106T100000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\n");
        assert_eq!(
            w.fit(&counted, now()).unwrap(),
            Fit::Outside { enters: None }
        );
        // Yearly, next instance beyond the future edge: enters a year ahead of it.
        let yearly = event("DTSTART;VALUE=DATE:20000301\r\nRRULE:FREQ=YEARLY\r\n");
        assert_eq!(
            window(30, 60).fit(&yearly, now()).unwrap(),
            Fit::Outside {
                enters: Some(at(2027, 3, 1) - chrono::Duration::days(60))
            }
        );
        // An RDATE inside the window brings an ended series back in.
        let rdate = event(
            "DTSTART:20200106T100000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\nRDATE:20261115T100000Z\r\n",
        );
        assert_eq!(w.fit(&rdate, now()).unwrap(), Fit::Inside);
        // An override moved into the window counts too.
        let moved = Item::parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:m\r\nDTSTART:20200106T100000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\n\
             BEGIN:VEVENT\r\nUID:m\r\nRECURRENCE-ID:20200107T100000Z\r\nDTSTART:20261120T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .unwrap();
        assert_eq!(w.fit(&moved, now()).unwrap(), Fit::Inside);
        // A rule the expander refuses counts as inside.
        assert_eq!(
            w.fit(
                &event("DTSTART:20200106T100000Z\r\nRRULE:FREQ=SOMETIMES\r\n"),
                now()
            )
            .unwrap(),
            Fit::Inside
        );
    }

    #[test]
    fn tasks() {
        let w = window(30, 365);
        let task = |body: &str| {
            Item::parse(&format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTODO\r\nUID:t\r\n{body}END:VTODO\r\nEND:VCALENDAR\r\n")).unwrap()
        };
        assert_eq!(
            w.fit(&task("DUE:20200101T000000Z\r\n"), now()).unwrap(),
            Fit::Inside,
            "an open task is current"
        );
        assert_eq!(
            w.fit(&task("DUE:20200101T000000Z\r\nSTATUS:COMPLETED\r\n"), now())
                .unwrap(),
            Fit::Outside { enters: None }
        );
    }

    #[test]
    fn zones() {
        assert_eq!(zone("W. Europe Standard Time").name(), "Europe/Berlin");
        assert_eq!(
            zone("\"Pacific Standard Time\"").name(),
            "America/Los_Angeles"
        );
        assert_eq!(zone("Europe/Brussels").name(), "Europe/Brussels");
        assert_eq!(zone("US/Eastern").name(), "US/Eastern");
        assert_eq!(
            zone("/mozilla.org/20070129_1/America/New_York").name(),
            "America/New_York"
        );
        assert_eq!(
            zone("/freeassociation.sourceforge.net/Tzfile/America/Argentina/Buenos_Aires").name(),
            "America/Argentina/Buenos_Aires"
        );
        assert_eq!(zone("MyTimezone").name(), "UTC");
        // 10:00 in Berlin in winter is 09:00 UTC.
        let m = Moment::parse_value("20261123T100000", zone("W. Europe Standard Time")).unwrap();
        assert_eq!(
            m.utc(),
            Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("P1D"), Some(chrono::Duration::days(1)));
        assert_eq!(
            parse_duration("-PT15M"),
            Some(chrono::Duration::minutes(-15))
        );
        assert_eq!(parse_duration("P2W"), Some(chrono::Duration::weeks(2)));
        assert_eq!(
            parse_duration("P1DT2H30M"),
            Some(chrono::Duration::minutes(24 * 60 + 150))
        );
        assert_eq!(parse_duration("PT"), Some(chrono::Duration::zero()));
        assert_eq!(parse_duration("1D"), None);
        assert_eq!(parse_duration("P1H"), None);
        assert_eq!(
            parse_duration("P999999999999999999W"),
            None,
            "out of range, not a panic"
        );
    }

    /// A rule that repeats without end from long ago is refused within the budget, quickly;
    /// ordinary long series are judged as before.
    #[test]
    fn expansion_has_a_budget() {
        let w = window(3650, 365);
        for rule in ["FREQ=SECONDLY", "FREQ=MINUTELY", "FREQ=SECONDLY;BYHOUR=9"] {
            let e = event(&format!("DTSTART:19000101T000000Z\r\nRRULE:{rule}\r\n"));
            let started = std::time::Instant::now();
            let err = w.fit(&e, now()).unwrap_err();
            assert!(err.to_string().contains(rule), "{err}");
            assert!(started.elapsed() < Duration::from_secs(20), "{rule}");
        }
        let daily = event("DTSTART:19900101T090000Z\r\nRRULE:FREQ=DAILY\r\n");
        assert_eq!(w.fit(&daily, now()), Ok(Fit::Inside));
        let hourly = event("DTSTART:20100101T090000Z\r\nRRULE:FREQ=HOURLY\r\n");
        assert_eq!(w.fit(&hourly, now()), Ok(Fit::Inside));
        // Ended long before the window: walked only up to its end.
        let ended =
            event("DTSTART:19000101T000000Z\r\nRRULE:FREQ=SECONDLY;UNTIL=19000101T010000Z\r\n");
        assert_eq!(w.fit(&ended, now()), Ok(Fit::Outside { enters: None }));
        // No window: nothing is expanded past the first instances.
        let e = event("DTSTART:19000101T000000Z\r\nRRULE:FREQ=SECONDLY\r\n");
        assert_eq!(Window::default().fit(&e, now()), Ok(Fit::Inside));
        // The budget is the item's, not each component's.
        let mut body = String::new();
        for i in 0..40 {
            body.push_str(&format!(
                "BEGIN:VEVENT\r\nUID:w@example.com\r\nRECURRENCE-ID:2010{:02}01T090000Z\r\n\
                 DTSTART:20100101T090000Z\r\nRRULE:FREQ=HOURLY;UNTIL=20251231T000000Z\r\nEND:VEVENT\r\n",
                i % 12 + 1
            ));
        }
        let many = Item::parse(&format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{body}END:VCALENDAR\r\n"
        ))
        .unwrap();
        assert!(window(10, 10).fit(&many, now()).is_err());
    }
}
