//! WebDAV-Push under `tandem run`: the hub that turns a push into a due pair, and the keeper that
//! subscribes each calendar whose server pushes, renews subscriptions before they lapse, moves
//! them to this node's push URL and ends those of pairs no longer configured.
//!
//! A push names its calendar by the unguessable token ending its URL; nothing in it is trusted,
//! so a forged one can at most cause a pass. Pushes can be lost (a server does not retry) and a
//! subscription can vanish silently, so a pair both of whose calendars push is still polled,
//! every `[sync] safety_interval`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::domain::pair::Pair;
use crate::domain::time::now_ms;
use crate::domain::types::CalendarRef;
use crate::engine::Engine;
use crate::service::nodes::Membership;
use crate::state::{PushSubscription, State, StateResult};
use crate::store::push::{self as wire, Subscribe};

/// Calendars registered or renewed at once.
const AT_ONCE: usize = 16;

/// The sides of a pair, as subscriptions name them.
const SIDES: [&str; 2] = ["source", "target"];

fn calendar<'a>(pair: &'a Pair, side: &str) -> &'a CalendarRef {
    match side {
        "source" => &pair.source,
        _ => &pair.target,
    }
}

/// Whether a pair's passes follow pushes: both its calendars hold a live subscription.
pub fn driven<'a>(subs: impl IntoIterator<Item = &'a PushSubscription>, now_ms: i64) -> bool {
    let live: HashSet<&str> = subs
        .into_iter()
        .filter(|s| s.expires_at > now_ms)
        .map(|s| s.side.as_str())
        .collect();
    SIDES.iter().all(|s| live.contains(s))
}

struct Inbox {
    /// Indexes (into the agent's pairs) pushed since the agent last looked.
    pending: Mutex<Vec<usize>>,
    notify: Notify,
}

/// Where pushes land: per agent, the pairs pushed; per pair, whether it is push-driven.
pub struct PushHub {
    inboxes: Vec<Inbox>,
    /// Pair id → (agent, index among the agent's pairs).
    place: HashMap<String, (usize, usize)>,
    driven: RwLock<HashSet<String>>,
    /// Push-driven pairs whose poll found changes no push announced: polled every interval
    /// until a push for them arrives (a firewall or an untrusted certificate loses every push).
    doubted: Mutex<HashSet<String>>,
    /// A pair's first pass is done: the keeper subscribes its calendars now, not at its next
    /// round (up to a minute away).
    first_passes: Notify,
}

impl PushHub {
    /// `agents`: each agent's index and its pairs, in its order.
    pub fn new<'a>(agents: impl IntoIterator<Item = (usize, &'a [Pair])>) -> Arc<PushHub> {
        let mut place = HashMap::new();
        let mut count = 0;
        for (agent, pairs) in agents {
            count = count.max(agent + 1);
            for (i, p) in pairs.iter().enumerate() {
                place.insert(p.id.to_string(), (agent, i));
            }
        }
        let agents = count;
        Arc::new(PushHub {
            inboxes: (0..agents)
                .map(|_| Inbox {
                    pending: Mutex::default(),
                    notify: Notify::new(),
                })
                .collect(),
            place,
            driven: RwLock::default(),
            doubted: Mutex::default(),
            first_passes: Notify::new(),
        })
    }

    /// A pair's first pass under this node is done: its calendars are subscribed at once.
    pub(crate) fn first_pass_done(&self) {
        self.first_passes.notify_one();
    }

    /// A push for `token` arrived: recorded, and its pair made due. `false`: no subscription
    /// has that token (the caller answers 404, which ends it on the server).
    pub(crate) async fn received(&self, state: &State, token: &str) -> StateResult<bool> {
        let Some(pair) = state.record_push(token, now_ms()).await? else {
            return Ok(false);
        };
        debug!(pair = %pair, "push received");
        if self.doubts().remove(&pair) {
            info!(pair = %pair, "a push arrived: the pair is push-driven again");
        }
        self.wake(&pair);
        Ok(true)
    }

    /// Makes `pair` due on its agent (a pair of another node's config is ignored).
    pub(crate) fn wake(&self, pair: &str) {
        if let Some(&(agent, i)) = self.place.get(pair) {
            let inbox = &self.inboxes[agent];
            inbox
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(i);
            inbox.notify.notify_one();
        }
    }

    /// The agent's pairs pushed since it last asked.
    pub fn take(&self, agent: usize) -> Vec<usize> {
        self.inboxes.get(agent).map_or_else(Vec::new, |b| {
            std::mem::take(&mut *b.pending.lock().unwrap_or_else(|p| p.into_inner()))
        })
    }

    /// Resolves when a push for one of the agent's pairs arrives (or arrived since the last
    /// call).
    pub async fn pushed(&self, agent: usize) {
        match self.inboxes.get(agent) {
            Some(b) => b.notify.notified().await,
            None => std::future::pending().await,
        }
    }

    /// Polled only every safety interval: both calendars subscribed, and pushes not in doubt.
    pub(crate) fn is_driven(&self, pair: &str) -> bool {
        self.driven
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(pair)
            && !self.doubts().contains(pair)
    }

    /// A poll of push-driven `pair` found changes no push announced: it is polled every
    /// interval until a push for it arrives. `true` the first time.
    pub(crate) fn doubt(&self, pair: &str) -> bool {
        self.doubts().insert(pair.to_string())
    }

    /// Whether `pair`'s pushes are in doubt on this node.
    pub(crate) fn doubted(&self, pair: &str) -> bool {
        self.doubts().contains(pair)
    }

    fn doubts(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.doubted.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_driven(&self, pairs: HashSet<String>) {
        *self.driven.write().unwrap_or_else(|p| p.into_inner()) = pairs;
    }
}

/// Subscribes, renews and ends subscriptions for the pairs this node holds.
pub struct PushKeeper {
    pub config: Arc<Config>,
    pub engine: Arc<Engine>,
    pub hub: Arc<PushHub>,
    pub membership: Arc<Membership>,
    /// `{public_url}/push`: this node's push URLs start with it.
    pub base: String,
}

/// What the keeper remembers between rounds.
#[derive(Default)]
struct Memory {
    /// Per (pair, side): not before this (unix ms), after a failure or a server without push.
    not_before: HashMap<(String, String), i64>,
    /// Per (pair, side): subscriptions failed in a row, so each wait is longer than the last.
    failures: HashMap<(String, String), u32>,
    /// Calendars whose writes carry `Push-Dont-Notify` for this location.
    quiet: HashMap<(String, String), String>,
}

/// How long (ms) a calendar waits after its `failures`-th failed subscription in a row: a
/// quarter of the subscription lifetime (1 s to 5 min), doubling with each failure up to the
/// safety interval, so a server that keeps refusing is asked less and less often.
fn retry_wait(lifetime_ms: i64, failures: u32, safety_ms: i64) -> i64 {
    let first = (lifetime_ms / 4).clamp(1_000, 300_000);
    let doubled = first.saturating_mul(1 << failures.saturating_sub(1).min(20));
    doubled.min(safety_ms.max(first))
}

impl PushKeeper {
    /// Rounds until `stop`: every tenth of `[sync] push_lifetime`, between 1 s and 1 min, and
    /// as soon as a pair's first pass is done (a second later at most, so a burst of first
    /// passes makes one round).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let every = (self.config.sync.push_lifetime / 10)
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let memory = Mutex::new(Memory::default());
        info!(push_url = %format!("{}/…", self.base), "WebDAV-Push: subscribing calendars whose servers push");
        while !*stop.borrow() {
            if let Err(e) = self.round(&memory).await {
                warn!(error = %e, "push subscriptions: the state store failed; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.hub.first_passes.notified() => {
                    tokio::time::sleep(Duration::from_secs(1).min(every)).await;
                }
                _ = stop.changed() => {}
            }
        }
    }

    /// One look at every subscription kept and every calendar this node's pairs read.
    async fn round(&self, memory: &Mutex<Memory>) -> StateResult<()> {
        let state = &self.engine.state;
        let rows = state.push_subscriptions().await?;
        let now = now_ms();
        let by_pair: HashMap<&str, &Pair> = self
            .config
            .pairs
            .iter()
            .map(|p| (p.id.as_str(), p))
            .collect();
        // Subscriptions of pairs gone from the config, or of calendars a pair no longer names.
        for row in &rows {
            let current = by_pair.get(row.pair.as_str()).is_some_and(|p| {
                let c = calendar(p, &row.side);
                c.server == row.server && c.path.as_str() == row.calendar
            });
            let gone = !by_pair.contains_key(row.pair.as_str());
            if gone || (!current && self.membership.holds(&row.pair)) {
                self.end(row).await?;
            }
        }
        let kept: HashMap<(&str, &str), &PushSubscription> = rows
            .iter()
            .map(|r| ((r.pair.as_str(), r.side.as_str()), r))
            .collect();
        let lifetime = self.config.sync.push_lifetime.as_millis() as i64;
        let work: Vec<(&Pair, &str, Option<&PushSubscription>)> = self
            .config
            .pairs
            .iter()
            .filter(|p| self.membership.holds(p.id.as_str()))
            .flat_map(|p| SIDES.iter().map(move |s| (p, *s)))
            .map(|(p, s)| (p, s, kept.get(&(p.id.as_str(), s)).copied()))
            .filter(|(p, s, row)| {
                let c = calendar(p, s);
                let fresh = row.is_some_and(|r| {
                    r.push_url.starts_with(&self.base)
                        && r.server == c.server
                        && r.calendar == c.path.as_str()
                        && r.expires_at - now > lifetime / 2
                });
                if let Some(r) = row.filter(|_| fresh) {
                    self.keep_quiet(memory, c, Some(&r.location));
                }
                let waiting = memory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .not_before
                    .get(&(p.id.to_string(), s.to_string()))
                    .is_some_and(|t| *t > now);
                !fresh && !waiting
            })
            .collect();
        futures_util::stream::iter(work)
            .for_each_concurrent(AT_ONCE, |(pair, side, row)| async move {
                let key = (pair.id.to_string(), side.to_string());
                let done = self.subscribe(pair, side, row, memory).await;
                let mut m = memory.lock().unwrap_or_else(|p| p.into_inner());
                match done {
                    Ok(()) => {
                        m.failures.remove(&key);
                    }
                    Err(e) => {
                        let failures = m.failures.entry(key.clone()).or_insert(0);
                        *failures += 1;
                        let safety = self.config.sync.safety_interval.as_millis() as i64;
                        let wait = retry_wait(lifetime, *failures, safety);
                        warn!(pair = %pair.id, side, calendar = %calendar(pair, side).path, error = %e, failures = *failures, retry_in_s = wait / 1000, "push subscription failed; the pair is polled meanwhile");
                        m.not_before.insert(key, now_ms() + wait);
                    }
                }
            })
            .await;
        let rows = state.push_subscriptions().await?;
        let mut of_pair: HashMap<&str, Vec<&PushSubscription>> = HashMap::new();
        for r in &rows {
            of_pair.entry(r.pair.as_str()).or_default().push(r);
        }
        let now = now_ms();
        self.hub.set_driven(
            of_pair
                .into_iter()
                .filter(|(_, subs)| driven(subs.iter().copied(), now))
                .map(|(p, _)| p.to_string())
                .collect(),
        );
        Ok(())
    }

    /// Subscribes one calendar (or renews, or moves its subscription to this node's URL).
    async fn subscribe(
        &self,
        pair: &Pair,
        side: &str,
        row: Option<&PushSubscription>,
        memory: &Mutex<Memory>,
    ) -> Result<(), String> {
        let cal = calendar(pair, side);
        let store = self.engine.store_of(&cal.server)?;
        let offered = store
            .push_offered(&cal.path)
            .await
            .map_err(|e| e.to_string())?;
        if !offered {
            // Polled as before; asked again after a safety interval.
            let again = self.config.sync.safety_interval.as_millis() as i64;
            memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .not_before
                .insert((pair.id.to_string(), side.to_string()), now_ms() + again);
            if let Some(old) = row {
                self.end(old).await.map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        // Ours and for this calendar: renew with the same URL and keys (the server answers with
        // the same subscription). Otherwise a new token and keys.
        let same = row.filter(|r| {
            r.push_url.starts_with(&self.base)
                && r.server == cal.server
                && r.calendar == cal.path.as_str()
        });
        let (token, private_key, auth_secret) = match same {
            Some(r) => (
                r.token.clone(),
                wire::unb64(&r.private_key)?,
                wire::unb64(&r.auth_secret)?,
            ),
            None => {
                let keys = wire::new_keys()?;
                (wire::new_token()?, keys.private, keys.auth)
            }
        };
        let now = now_ms();
        let sub = Subscribe {
            push_url: format!("{}/{token}", self.base),
            public_key: wire::public_key_of(&private_key)?,
            auth_secret: auth_secret.clone(),
            expires_at: now + self.config.sync.push_lifetime.as_millis() as i64,
        };
        let got = store
            .push_subscribe(&cal.path, &sub)
            .await
            .map_err(|e| e.to_string())?;
        let kept = PushSubscription {
            token,
            pair: pair.id.to_string(),
            side: side.to_string(),
            server: cal.server.clone(),
            calendar: cal.path.to_string(),
            push_url: sub.push_url,
            location: got.location.clone(),
            expires_at: got.expires_at,
            private_key: wire::b64(&private_key),
            auth_secret: wire::b64(&auth_secret),
            renewed_at: now,
            last_push_at: row.and_then(|r| r.last_push_at),
        };
        self.engine
            .state
            .save_push_subscription(&kept)
            .await
            .map_err(|e| e.to_string())?;
        self.keep_quiet(memory, cal, Some(&got.location));
        match row {
            Some(old) if old.location != got.location => {
                self.unsubscribe(old).await;
                info!(pair = %pair.id, side, calendar = %cal.path, "push subscription made");
            }
            Some(_) => debug!(pair = %pair.id, side, "push subscription renewed"),
            None => info!(pair = %pair.id, side, calendar = %cal.path, "push subscription made"),
        }
        Ok(())
    }

    /// Ends a subscription on its server (as far as it answers) and forgets it.
    async fn end(&self, row: &PushSubscription) -> StateResult<()> {
        self.unsubscribe(row).await;
        self.engine
            .state
            .forget_push_subscription(&row.token)
            .await?;
        if let (Ok(store), Ok(path)) = (self.engine.store_of(&row.server), row.calendar.parse()) {
            store.push_quiet(&path, None);
        }
        info!(pair = %row.pair, side = %row.side, calendar = %row.calendar, "push subscription ended");
        Ok(())
    }

    async fn unsubscribe(&self, row: &PushSubscription) {
        let Ok(store) = self.engine.store_of(&row.server) else {
            return;
        };
        if let Err(e) = store.push_unsubscribe(&row.location).await {
            // Left to lapse at its expiry; pushes meanwhile are answered 404, which ends it too.
            warn!(pair = %row.pair, side = %row.side, error = %e, "ending a push subscription failed");
        }
    }

    fn keep_quiet(&self, memory: &Mutex<Memory>, cal: &CalendarRef, location: Option<&str>) {
        let mut m = memory.lock().unwrap_or_else(|p| p.into_inner());
        let key = (cal.server.clone(), cal.path.to_string());
        if m.quiet.get(&key).map(String::as_str) == location {
            return;
        }
        if let Ok(store) = self.engine.store_of(&cal.server) {
            store.push_quiet(&cal.path, location);
        }
        match location {
            Some(l) => m.quiet.insert(key, l.to_string()),
            None => m.quiet.remove(&key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::retry_wait;

    #[test]
    fn failed_subscriptions_wait_longer_each_time_up_to_the_safety_interval() {
        let (week, hour) = (7 * 86_400_000, 3_600_000);
        let waits: Vec<i64> = (1..=6).map(|n| retry_wait(week, n, hour)).collect();
        assert_eq!(
            waits,
            [300_000, 600_000, 1_200_000, 2_400_000, hour, hour],
            "5 min, doubling, then the safety interval"
        );
        assert_eq!(retry_wait(week, 1_000, hour), hour);
        // A short lifetime starts shorter; a safety interval under the first wait does not cut it.
        assert_eq!(retry_wait(20_000, 1, hour), 5_000);
        assert_eq!(retry_wait(20_000, 3, hour), 20_000);
        assert_eq!(retry_wait(week, 1, 60_000), 300_000);
    }
}
