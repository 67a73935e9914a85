//! Discovery of a mailbox's calendars: both homes listed (one PROPFIND Depth 1 each), the
//! calendars paired by the pure [`crate::sync::calendars`], then, unless a dry run, what the
//! other side lacks made (MKCALENDAR), renames carried over (PROPPATCH) and the pairings
//! recorded. Each paired calendar is then a pair like any other, `MAILBOX/SEGMENT`.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{info, warn};

use super::base::Engine;
use super::list::role;
use super::report::{CalendarReport, MailboxReport};
use crate::domain::direction::Direction;
use crate::domain::lease::{LeaseKind, mailbox_lease};
use crate::domain::mailbox::{Home, HomeListing, Mailbox, MailboxCalendar};
use crate::domain::mapping::Side;
use crate::domain::pair::Pair;
use crate::domain::types::{CalendarPath, CalendarRef, PairId};
use crate::state::StateError;
use crate::store::CalendarStore;
use crate::sync::calendars::{CalendarAction, CalendarPlan, HomeView, Pairing, pair_calendars};

/// One side of a mailbox as listed: its store, its home and what the home holds.
struct Listed {
    store: Arc<dyn CalendarStore>,
    home: CalendarPath,
    principal: Option<String>,
    listing: HomeListing,
    default_segment: Option<String>,
}

impl Engine {
    /// Discovery for `mailbox`: both homes listed and its calendars paired; unless `dry_run`,
    /// calendars made, renames carried over and pairings recorded, under the mailbox's lease
    /// (another process discovering it meanwhile is said as the mailbox's error). Calendars
    /// the configured `pairs` name are left to them. Only a state failure is an `Err`.
    pub async fn discover(
        &self,
        mailbox: &Mailbox,
        pairs: &[Pair],
        dry_run: bool,
    ) -> Result<MailboxReport, StateError> {
        let lease = mailbox_lease(mailbox.id.as_str());
        let held = self
            .under_leases(&[&lease], LeaseKind::Discover, dry_run, async |_| {
                self.discover_now(mailbox, pairs, dry_run).await
            })
            .await?;
        Ok(held.unwrap_or_else(|locked| {
            info!(mailbox = %mailbox.id, %locked, "discovery skipped: another is running");
            MailboxReport {
                id: mailbox.id.to_string(),
                calendars: Vec::new(),
                error: Some(format!(
                    "another discovery of this mailbox is running ({locked})"
                )),
            }
        }))
    }

    /// [`Self::discover`] once its lease is held.
    async fn discover_now(
        &self,
        mailbox: &Mailbox,
        pairs: &[Pair],
        dry_run: bool,
    ) -> Result<MailboxReport, StateError> {
        let mut report = MailboxReport {
            id: mailbox.id.to_string(),
            calendars: Vec::new(),
            error: None,
        };
        let (a, b) = tokio::join!(
            self.list_home(mailbox, Side::A),
            self.list_home(mailbox, Side::B)
        );
        let sides = match (a, b) {
            (Ok(a), Ok(b)) => [a, b],
            (Err(e), _) | (_, Err(e)) => {
                warn!(mailbox = %mailbox.id, error = %e, "discovery failed");
                report.error = Some(e);
                return Ok(report);
            }
        };
        let servers = [&mailbox.source.server, &mailbox.target.server];
        let known: Vec<MailboxCalendar> = (self.state.mailbox_calendars(&mailbox.id).await?)
            .into_iter()
            .filter(|k| &k.source.server == servers[0] && &k.target.server == servers[1])
            .collect();
        let taken = [Side::A, Side::B].map(|side| taken_on(pairs, servers[side as usize]));
        let how = Pairing {
            both_ways: mailbox.direction == Direction::TwoWay,
            authority: self.mailbox_authority(mailbox, &known).await?,
        };
        let view = |side: Side| {
            let s = &sides[side as usize];
            HomeView {
                home: &s.home,
                listing: &s.listing,
                default_segment: s.default_segment.as_deref(),
                principal: s.principal.as_deref(),
                taken: &taken[side as usize],
            }
        };
        let plans = pair_calendars(&mailbox.id, how, [&view(Side::A), &view(Side::B)], &known);
        let mut record = Vec::new();
        for plan in plans {
            let failed = match dry_run {
                true => None,
                false => self.carry_out(&plan, &sides).await,
            };
            if failed.is_none() && !matches!(plan.action, CalendarAction::Skip(_)) {
                record.extend(remembered(&plan, servers));
            }
            report.calendars.push(reported(plan, failed));
        }
        // Only what changed since the last discovery is written.
        record.retain(|r| !known.contains(r));
        if !dry_run {
            self.state
                .record_mailbox_calendars(&mailbox.id, &record)
                .await?;
        }
        Ok(report)
    }

    /// Discovery for every mailbox of `mailboxes`, several at once (as many as passes), in
    /// their order.
    pub async fn discover_all(
        &self,
        mailboxes: &[&Mailbox],
        pairs: &[Pair],
        dry_run: bool,
    ) -> Result<Vec<MailboxReport>, StateError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        stream::iter(mailboxes.iter().map(|m| self.discover(m, pairs, dry_run)))
            .buffered(self.passes_at_once())
            .try_collect()
            .await
    }

    /// `mailbox`'s home on `side`, listed; `Err` says which home and why.
    async fn list_home(&self, mailbox: &Mailbox, side: Side) -> Result<Listed, String> {
        let user = mailbox.user(side);
        let at = || format!("{} home of {user}", role(side));
        let store = self.store_of(&user.server)?;
        let rule = (self.homes.get(&user.server))
            .ok_or_else(|| format!("{}: server {} names no home", at(), user.server))?;
        let (home, principal) = match rule.home.of(&user.user) {
            Home::Path(p) => (p.parse().map_err(|e| format!("{}: {e}", at()))?, None),
            Home::Principal(p) => {
                let home = (store.home_of(&p).await).map_err(|e| format!("{}: {e}", at()))?;
                (home, Some(p))
            }
        };
        let listing = (store.collections(&home).await)
            .map_err(|e| format!("{} ({home}, {}): {e}", at(), store.describe()))?;
        Ok(Listed {
            store,
            home,
            principal,
            listing,
            default_segment: rule.default_calendar.clone(),
        })
    }

    /// Whose calendar names win: the target's once the mailbox is cut over (its pairs are cut
    /// over together), else the source's.
    async fn mailbox_authority(
        &self,
        mailbox: &Mailbox,
        known: &[MailboxCalendar],
    ) -> Result<Side, StateError> {
        let Some(first) = known.iter().find(|k| k.gone.is_none()) else {
            return Ok(Side::A);
        };
        let start = self.peek(&mailbox.pair(first)).await?.start;
        Ok(crate::domain::direction::authority(
            start.cutover_at.is_some(),
        ))
    }

    /// Makes the calendar a plan creates, or writes the name and colour it carries over;
    /// `Some(why)` if the server refused.
    async fn carry_out(&self, plan: &CalendarPlan, sides: &[Listed; 2]) -> Option<String> {
        let (side, props, what) = match &plan.action {
            CalendarAction::Create { on, props } => (*on, props, "making the calendar"),
            CalendarAction::Pair {
                update: Some((side, props)),
            } => (*side, props, "carrying over its name and colour"),
            _ => return None,
        };
        let path = plan.paths[side as usize].as_ref()?;
        let store = &sides[side as usize].store;
        let done = match &plan.action {
            CalendarAction::Create { .. } => store.make_calendar(path, props).await,
            _ => store.set_props(path, props).await,
        };
        match done {
            Ok(()) => {
                info!(pair = %plan.id, calendar = %path, "{what}: done");
                None
            }
            Err(e) => {
                warn!(pair = %plan.id, calendar = %path, error = %e, "{what} failed");
                Some(format!("failed: {what} on the {}: {e}", role(side)))
            }
        }
    }
}

/// Paths the configured `pairs` name on `server`, with the pair naming each.
fn taken_on(pairs: &[Pair], server: &str) -> HashMap<CalendarPath, PairId> {
    pairs
        .iter()
        .flat_map(|p| [(&p.source, &p.id), (&p.target, &p.id)])
        .filter(|(c, _)| c.server == server)
        .map(|(c, id)| (c.path.clone(), id.clone()))
        .collect()
}

/// The pairing a carried-out plan leaves, to record.
fn remembered(plan: &CalendarPlan, servers: [&String; 2]) -> Option<MailboxCalendar> {
    let at = |side: Side| {
        Some(CalendarRef {
            server: servers[side as usize].clone(),
            path: plan.paths[side as usize].clone()?,
        })
    };
    Some(MailboxCalendar {
        id: plan.id.clone(),
        source: at(Side::A)?,
        target: at(Side::B)?,
        gone: match &plan.action {
            CalendarAction::Gone(why) => Some(why.clone()),
            _ => None,
        },
        seen: plan.seen.clone(),
    })
}

/// A plan as the operator reads it.
fn reported(plan: CalendarPlan, failed: Option<String>) -> CalendarReport {
    let [source, target] = plan.paths.map(|p| p.map(|p| p.to_string()));
    let (action, reason) = match plan.action {
        CalendarAction::Pair { update: None } => ("pair", None),
        CalendarAction::Pair {
            update: Some((side, props)),
        } => {
            let what = [("name", &props.displayname), ("colour", &props.color)]
                .into_iter()
                .filter_map(|(k, v)| Some(format!("{k} {:?}", v.as_ref()?)))
                .collect::<Vec<_>>()
                .join(", ");
            (
                "pair",
                Some(format!("{what} written to the {}", role(side))),
            )
        }
        CalendarAction::Create { on, .. } => ("create", Some(format!("made on the {}", role(on)))),
        CalendarAction::Skip(why) => ("skip", Some(why)),
        CalendarAction::Gone(why) => ("gone", Some(why)),
    };
    CalendarReport {
        id: plan.id.to_string(),
        source,
        target,
        action,
        reason: failed.or(reason),
        displayname: plan.displayname,
    }
}
