//! The migration at a glance, from the pairs of one snapshot: each mailbox (a plain pair counts
//! as a mailbox of one calendar) done, syncing or failing, with its items copied and still to
//! copy; pairs by lag; and which pairs `/metrics` gives series of their own when there are too
//! many for each to have them.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::observe::PairView;

/// Where a mailbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A calendar of it is backing off, paused, disabled, over an alert or has quarantined
    /// items: someone should look.
    Failing,
    /// Not every calendar has finished its first sync, or changes are waiting.
    Syncing,
    /// Every calendar in step.
    Done,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Done, Outcome::Syncing, Outcome::Failing];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Failing => "failing",
            Outcome::Syncing => "syncing",
            Outcome::Done => "done",
        }
    }

    /// One pair's.
    pub fn of(p: &PairView) -> Outcome {
        let stuck = matches!(p.state, "backoff" | "paused" | "disabled");
        if stuck || !p.alerts.is_empty() || p.quarantined > 0 {
            Outcome::Failing
        } else if p.last_success_at.is_none() || p.backlog > 0 {
            Outcome::Syncing
        } else {
            Outcome::Done
        }
    }
}

/// A mailbox and its calendars' pairs, or a configured pair on its own.
#[derive(Debug, Clone, Serialize)]
pub struct MailboxView {
    pub id: String,
    /// Whether this is a mailbox (else a pair named in `[[pairs]]`).
    pub mailbox: bool,
    /// The worst of its calendars'.
    pub outcome: Outcome,
    /// Its pairs' ids, worst first.
    pub pairs: Vec<String>,
    /// Items in step, and source changes seen but not yet applied (during a first sync: the
    /// items still to copy).
    pub items: i64,
    pub backlog: i64,
    /// The longest lag of its calendars.
    pub lag_seconds: f64,
}

/// The mailboxes of `pairs` (given worst first), in the order of their worst pair.
pub fn mailboxes(pairs: &[PairView]) -> Vec<MailboxView> {
    let mut out: Vec<MailboxView> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for p in pairs {
        let id = p.mailbox.as_deref().unwrap_or(&p.id);
        let i = *at.entry(id).or_insert_with(|| {
            out.push(MailboxView {
                id: id.to_string(),
                mailbox: p.mailbox.is_some(),
                outcome: Outcome::Done,
                pairs: Vec::new(),
                items: 0,
                backlog: 0,
                lag_seconds: 0.0,
            });
            out.len() - 1
        });
        let m = &mut out[i];
        m.outcome = m.outcome.min(Outcome::of(p));
        m.pairs.push(p.id.clone());
        m.items += p.items;
        m.backlog += p.backlog;
        m.lag_seconds = m.lag_seconds.max(p.lag_seconds);
    }
    out
}

/// Mailboxes per outcome, every outcome named.
pub fn outcomes(mailboxes: &[MailboxView]) -> BTreeMap<&'static str, usize> {
    let mut n: BTreeMap<&'static str, usize> =
        Outcome::ALL.iter().map(|o| (o.as_str(), 0)).collect();
    for m in mailboxes {
        *n.entry(m.outcome.as_str()).or_default() += 1;
    }
    n
}

/// Upper bounds of the lag buckets, in seconds.
pub const LAG_BUCKETS: [f64; 7] = [0.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];

/// Pairs whose lag is at most each bound of [`LAG_BUCKETS`], and all of them (`+Inf`).
pub fn lag_buckets(pairs: &[PairView]) -> Vec<(f64, usize)> {
    (LAG_BUCKETS.iter().copied().chain([f64::INFINITY]))
        .map(|le| (le, pairs.iter().filter(|p| p.lag_seconds <= le).count()))
        .collect()
}

/// The pairs that get series of their own: all of them up to `limit`; past it the pairs that
/// need a look (failing), worst first, at most `limit`.
pub fn series_pairs(pairs: &[PairView], limit: usize) -> Vec<&PairView> {
    if pairs.len() <= limit {
        return pairs.iter().collect();
    }
    (pairs.iter())
        .filter(|p| Outcome::of(p) == Outcome::Failing)
        .take(limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An active pair that has not finished a first sync.
    fn pair(id: &str, mailbox: Option<&str>) -> PairView {
        PairView {
            id: id.to_string(),
            mailbox: mailbox.map(str::to_string),
            source: format!("old:/{id}/"),
            target: format!("new:/{id}/"),
            direction: "one-way",
            conflict: "authority",
            authority: "source",
            cutover_at: None,
            node: None,
            state: "active",
            reason: None,
            until: None,
            failures: 0,
            next_run: None,
            items: 10,
            quarantined: 0,
            lock: None,
            last_success_at: None,
            last_run: None,
            lag_seconds: 0.0,
            pending_since: None,
            backlog: 0,
            created: 0,
            updated: 0,
            deleted: 0,
            adopted: 0,
            requests_last_hour: 0,
            failed_requests_last_hour: 0,
            failed_requests_percent: None,
            alerts: Vec::new(),
            push_driven: false,
            last_push_at: None,
        }
    }

    #[test]
    fn a_mailbox_is_as_bad_as_its_worst_calendar() {
        let mut cal = pair("alice/calendar", Some("alice"));
        cal.last_success_at = Some(1);
        let mut work = pair("alice/work", Some("alice"));
        work.last_success_at = Some(1);
        let mut plain = pair("bob", None);
        plain.last_success_at = Some(1);
        plain.backlog = 3;
        let all = mailboxes(&[plain.clone(), cal.clone(), work.clone()]);
        let got: Vec<(&str, Outcome, usize)> = (all.iter())
            .map(|m| (m.id.as_str(), m.outcome, m.pairs.len()))
            .collect();
        assert_eq!(
            got,
            [("bob", Outcome::Syncing, 1), ("alice", Outcome::Done, 2)]
        );
        assert!(all[1].mailbox && !all[0].mailbox);
        assert_eq!(all[1].items, 20);

        work.state = "backoff";
        let all = mailboxes(&[work, cal, plain]);
        assert_eq!(
            (all[0].id.as_str(), all[0].outcome),
            ("alice", Outcome::Failing)
        );
        let n = outcomes(&all);
        assert_eq!((n["done"], n["syncing"], n["failing"]), (0, 1, 1));
    }

    #[test]
    fn past_the_limit_only_failing_pairs_get_series() {
        let mut pairs: Vec<PairView> = (0..5).map(|i| pair(&format!("p{i}"), None)).collect();
        pairs.iter_mut().for_each(|p| p.last_success_at = Some(1));
        pairs[3].alerts = vec!["lag"];
        pairs[3].lag_seconds = 4000.0;
        assert_eq!(series_pairs(&pairs, 5).len(), 5);
        let ids: Vec<&str> = series_pairs(&pairs, 4)
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(ids, ["p3"]);
        let buckets = lag_buckets(&pairs);
        assert_eq!(buckets.first(), Some(&(0.0, 4)));
        assert_eq!(buckets[LAG_BUCKETS.len() - 1], (3600.0, 4));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 5)));
    }
}
