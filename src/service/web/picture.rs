//! The migration at a glance, as pictures the server draws (no script): mailboxes done, syncing
//! and failing; items copied against items still to copy; the last hour's writes and lag as
//! bar charts in SVG.

use std::fmt::Write as _;

use crate::service::observe::human_seconds;
use crate::service::rollup::{MailboxView, Outcome, outcomes};
use crate::state::Minute;

use super::shared::esc;

/// Minutes the charts show.
const CHART_MINUTES: i64 = 60;
/// Mailboxes listed with their own bar of items to copy, at most.
const COPYING_ROWS: usize = 10;
/// The charts' drawing area, in SVG units (scaled to the section's width).
const W: f64 = 360.0;
const H: f64 = 80.0;

/// Mailboxes (a pair named on its own counts as one) done, syncing and failing, as a bar of
/// three colours and their numbers.
pub(super) fn outcome_bar(out: &mut String, all: &[MailboxView]) {
    let n = outcomes(all);
    let total = all.len().max(1);
    out.push_str("<section class=\"wide\"><h2>Mailboxes</h2><div class=\"stack\" id=\"outcomes\">");
    for o in Outcome::ALL {
        let k = n[o.as_str()];
        let _ = write!(
            out,
            "<span class=\"o-{o}\" style=\"width:{}%\" title=\"{k} {o}\"></span>",
            k * 100 / total,
            o = o.as_str()
        );
    }
    out.push_str("</div><div class=\"cards\">");
    for o in Outcome::ALL {
        let _ = write!(
            out,
            "<div class=\"card\" data-outcome=\"{o}\"><b class=\"o-{o}-text\">{}</b>{o}</div>",
            n[o.as_str()],
            o = o.as_str()
        );
    }
    out.push_str("</div></section>");
}

/// Items copied against items still to copy: one bar for the whole migration, then one for
/// each mailbox with the most left (during a first sync, what it has still to copy).
pub(super) fn copying(out: &mut String, all: &[MailboxView]) {
    let copied: i64 = all.iter().map(|m| m.items).sum();
    let left: i64 = all.iter().map(|m| m.backlog).sum();
    let _ = write!(
        out,
        "<section class=\"wide\"><h2>Items copied</h2>\
         <div class=\"stack\" id=\"copying\" data-copied=\"{copied}\" data-left=\"{left}\">\
         <span class=\"o-done\" style=\"width:{}%\"></span>\
         <span class=\"o-syncing\" style=\"width:{}%\"></span></div>",
        share(copied, copied + left),
        share(left, copied + left),
    );
    let mut waiting: Vec<&MailboxView> = all.iter().filter(|m| m.backlog > 0).collect();
    if waiting.is_empty() {
        let _ = write!(
            out,
            "<p>{copied} items in step; nothing waits to be copied.</p></section>"
        );
        return;
    }
    waiting.sort_by(|a, b| b.backlog.cmp(&a.backlog).then(a.id.cmp(&b.id)));
    let _ = write!(
        out,
        "<p>{copied} items copied, <b>{left}</b> to copy in {} mailbox(es).</p>\
         <table id=\"copying-mailboxes\">",
        waiting.len()
    );
    for m in waiting.iter().take(COPYING_ROWS) {
        let _ = write!(
            out,
            "<tr data-mailbox=\"{id}\" data-copied=\"{c}\" data-left=\"{l}\"><td>{id}</td>\
             <td style=\"width:60%\"><div class=\"stack thin\">\
             <span class=\"o-done\" style=\"width:{}%\"></span>\
             <span class=\"o-syncing\" style=\"width:{}%\"></span></div></td>\
             <td class=\"n\">{c} of {}</td></tr>",
            share(m.items, m.items + m.backlog),
            share(m.backlog, m.items + m.backlog),
            m.items + m.backlog,
            id = esc(&m.id),
            c = m.items,
            l = m.backlog,
        );
    }
    out.push_str("</table>");
    if waiting.len() > COPYING_ROWS {
        let _ = write!(
            out,
            "<p class=\"muted\">{} more in <a href=\"/api/pairs\">/api/pairs</a></p>",
            waiting.len() - COPYING_ROWS
        );
    }
    out.push_str("</section>");
}

/// `part` of `whole` in percent, with two decimals (a sliver still shows).
fn share(part: i64, whole: i64) -> String {
    match whole {
        0 => "0".into(),
        w => format!("{:.2}", part as f64 * 100.0 / w as f64),
    }
}

/// The last hour minute by minute: items written, and the longest lag a service saw (drawn
/// red above the alert, which is a dashed line).
pub(super) fn history(out: &mut String, minutes: &[Minute], now: i64, alert_seconds: f64) {
    let last = now / 60_000;
    let first = last - CHART_MINUTES + 1;
    let at =
        |m: &Minute| (m.minute >= first && m.minute <= last).then(|| (m.minute - first) as usize);
    let mut writes = vec![Some(0.0); CHART_MINUTES as usize];
    let mut lag = vec![None; CHART_MINUTES as usize];
    for m in minutes {
        if let Some(i) = at(m) {
            writes[i] = Some(m.writes as f64);
            lag[i] = m.lag_ms.map(|l| l as f64 / 1000.0);
        }
    }
    let total: f64 = writes.iter().flatten().sum();
    let _ = write!(
        out,
        "<section><h2>Writes, last hour</h2><p class=\"muted\">{total} items written to the \
         servers, per minute</p>"
    );
    let chart = Chart {
        id: "writes-chart",
        first,
        threshold: None,
        say: &|v| format!("{v} items written"),
    };
    chart.draw(out, &writes);
    let _ = write!(
        out,
        "</section><section><h2>Lag, last hour</h2><p class=\"muted\">the longest lag of any \
         pair, per minute; alert above {}</p>",
        human_seconds(alert_seconds)
    );
    let chart = Chart {
        id: "lag-chart",
        first,
        threshold: Some(alert_seconds),
        say: &|v| format!("longest lag {}", human_seconds(v)),
    };
    chart.draw(out, &lag);
    out.push_str("</section>");
}

/// A bar chart of one value per minute.
struct Chart<'a> {
    id: &'static str,
    /// The minute of the first bar.
    first: i64,
    /// Bars above it are red, and it is drawn as a dashed line.
    threshold: Option<f64>,
    /// A value for people, in each bar's tooltip.
    say: &'a dyn Fn(f64) -> String,
}

impl Chart<'_> {
    /// An SVG of `values` (none: not measured that minute, no bar), scaled to the largest
    /// value or the threshold.
    fn draw(&self, out: &mut String, values: &[Option<f64>]) {
        let top = values
            .iter()
            .flatten()
            .copied()
            .chain(self.threshold)
            .fold(0.0_f64, f64::max);
        let scale = if top > 0.0 { H / top } else { 0.0 };
        let step = W / values.len() as f64;
        let _ = write!(
            out,
            "<svg id=\"{}\" class=\"chart\" viewBox=\"0 0 {W} {}\" role=\"img\" \
             xmlns=\"http://www.w3.org/2000/svg\"><line x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\" class=\"axis\"/>",
            self.id,
            H + 18.0
        );
        for (i, v) in values.iter().enumerate() {
            let Some(v) = v else { continue };
            let minute = self.first + i as i64;
            let h = (v * scale).max(if *v > 0.0 { 1.0 } else { 0.0 });
            let over = self.threshold.is_some_and(|t| *v > t);
            let _ = write!(
                out,
                "<rect data-minute=\"{minute}\" data-value=\"{v}\" class=\"{}\" x=\"{:.1}\" y=\"{:.1}\" \
                 width=\"{:.1}\" height=\"{h:.1}\"><title>{}: {}</title></rect>",
                if over { "c-over" } else { "c-ok" },
                i as f64 * step + 0.5,
                H - h,
                (step - 1.0).max(0.5),
                esc(&clock(minute)),
                esc(&(self.say)(*v)),
            );
        }
        if let Some(t) = self.threshold.filter(|t| *t > 0.0) {
            let y = H - t * scale;
            let _ = write!(
                out,
                "<line class=\"threshold\" x1=\"0\" y1=\"{y:.1}\" x2=\"{W}\" y2=\"{y:.1}\"/>"
            );
        }
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\" class=\"label\">{} min ago</text>\
             <text x=\"{W}\" y=\"{}\" class=\"label end\">now</text>\
             <text x=\"2\" y=\"10\" class=\"label\">top: {}</text></svg>",
            H + 12.0,
            values.len(),
            H + 12.0,
            esc(&(self.say)(top)),
        );
    }
}

/// `HH:MM` UTC of a minute.
fn clock(minute: i64) -> String {
    let utc = crate::domain::time::utc(minute * 60_000);
    utc.get(11..16).map_or(utc.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::rollup::Outcome;

    fn mailbox(id: &str, items: i64, backlog: i64) -> MailboxView {
        MailboxView {
            id: id.into(),
            mailbox: true,
            outcome: Outcome::Syncing,
            pairs: vec![format!("{id}/calendar")],
            items,
            backlog,
            lag_seconds: 0.0,
        }
    }

    /// The `name="…"` attribute values of every element carrying `name`, in order.
    fn attrs<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
        let key = format!("{name}=\"");
        html.split(&key)
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect()
    }

    #[test]
    fn items_copied_against_items_to_copy() {
        let all = [
            mailbox("done", 40, 0),
            mailbox("alice", 30, 10),
            mailbox("bob", 5, 45),
        ];
        let mut out = String::new();
        copying(&mut out, &all);
        assert!(
            out.contains("id=\"copying\" data-copied=\"75\" data-left=\"55\""),
            "{out}"
        );
        // 75 of 130 copied.
        assert!(out.contains("style=\"width:57.69%\""), "{out}");
        // Mailboxes with the most left first; those in step are not listed.
        assert_eq!(attrs(&out, "data-mailbox"), ["bob", "alice"]);
        assert!(out.contains("<td class=\"n\">30 of 40</td>"), "{out}");
        assert!(out.contains("55</b> to copy in 2 mailbox(es)"), "{out}");

        let mut quiet = String::new();
        copying(&mut quiet, &all[..1]);
        assert!(quiet.contains("40 items in step; nothing waits"), "{quiet}");
        assert!(!quiet.contains("copying-mailboxes"));
    }

    #[test]
    fn the_last_hour_as_bars_one_per_minute() {
        let now = 1_000 * 60_000 + 30_000;
        let minutes = [
            // Older than the hour: not drawn.
            Minute {
                minute: 900,
                writes: 99,
                lag_ms: Some(1),
                lagging: Some(1),
            },
            Minute {
                minute: 950,
                writes: 12,
                lag_ms: None,
                lagging: None,
            },
            Minute {
                minute: 1_000,
                writes: 3,
                lag_ms: Some(90_000),
                lagging: Some(2),
            },
            Minute {
                minute: 999,
                writes: 0,
                lag_ms: Some(10_000),
                lagging: Some(1),
            },
        ];
        let mut out = String::new();
        history(&mut out, &minutes, now, 60.0);
        let (writes, lag) = out.split_at(out.find("id=\"lag-chart\"").unwrap());
        // Writes: a bar for every minute of the hour, the last one now.
        let drawn = attrs(writes, "data-minute");
        assert_eq!(drawn.len(), 60);
        assert_eq!((drawn[0], drawn[59]), ("941", "1000"));
        let values: Vec<f64> = (attrs(writes, "data-value").iter())
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(values.iter().sum::<f64>(), 15.0);
        assert!(
            writes.contains("15 items written to the servers"),
            "{writes}"
        );
        // The tallest bar fills the chart; a minute's tooltip says its time and value.
        assert!(
            writes
                .contains("y=\"0.0\" width=\"5.0\" height=\"80.0\"><title>15:50: 12 items written"),
            "{writes}"
        );
        // Lag: only the minutes a service looked, red above the alert, the alert dashed.
        assert_eq!(attrs(lag, "data-minute"), ["999", "1000"]);
        assert_eq!(
            attrs(lag, "class")[1..],
            [
                "axis",
                "c-ok",
                "c-over",
                "threshold",
                "label",
                "label end",
                "label"
            ]
        );
        assert!(lag.contains("longest lag 1m 30s"), "{lag}");
        assert!(
            lag.contains("<line class=\"threshold\" x1=\"0\" y1=\"26.7\""),
            "{lag}"
        );
    }
}
