//! What every stage of a pass uses: the engine (its stores, rewrites, window, leases and
//! clock), how a pass runs (`PassOptions`) and why it stops early (`PassError`); and
//! opening the stores and the state a config names.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tracing::warn;

use super::forms::{Clock, Forms, system_clock};
use super::progress::Progress;
use crate::config::{Config, PasswordSource, ServerConfig, ServerKind, StateConfig};
use crate::domain::direction::{Direction, authority};
use crate::domain::error::{ErrorKind, StoreError, StoreResult};
use crate::domain::item::Rewriter;
use crate::domain::lease::{Lease, LeaseKind, Locked};
use crate::domain::mailbox::Home;
use crate::domain::mapping::Side;
use crate::domain::pair::{Extras, Pair};
use crate::domain::run::RunRecord;
use crate::domain::types::{ContentHash, Etag, Href, SyncToken};
use crate::domain::window::Window;
use crate::state::{PassStart, State, StateError, StateResult};
use crate::store::{CalendarStore, Endpoint, Location};
use crate::sync::Mode;

#[derive(Debug, Clone, Copy, Default)]
pub struct PassOptions {
    /// Print the plan, write nothing.
    pub dry_run: bool,
    /// Ignore watermarks and etags: read and compare everything (`resync`).
    pub full: bool,
    pub force_delete: bool,
}

/// Runs waiting to be written, oldest first (see [`super::runs`]).
pub(crate) type Batch = Arc<std::sync::Mutex<Vec<(crate::domain::types::PairId, RunRecord)>>>;

pub struct Engine {
    pub state: State,
    /// Stores by server name; a server that cannot be opened fails the pairs that use it.
    pub(super) stores: BTreeMap<String, Result<Arc<dyn CalendarStore>, String>>,
    /// How items are put in one form (rewrites, window, clock).
    pub(super) forms: Forms,
    pub(super) extras: Extras,
    /// Who this process is, in leases ("HOST pid 1234 ab12cd34").
    pub(super) holder: String,
    pub(super) lease_ttl: std::time::Duration,
    /// Set when the service stops: passes finish the writes in flight and start no more.
    pub(super) stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Mailbox address (as configured and as rewritten into the target org) → its pair.
    pub(crate) addresses: HashMap<String, Pair>,
    /// Where each server keeps a user's calendars, for the servers that say.
    pub(super) homes: BTreeMap<String, HomeRule>,
    /// Told how a long write phase (a first sync, a resync) is going.
    pub(super) progress: Option<Arc<dyn Progress>>,
    /// Server counters as last added to the state.
    pub(super) flushed: std::sync::Mutex<BTreeMap<String, crate::domain::requests::HttpCounts>>,
    /// Items written to a server and not yet added to the state's minutes (shared by the
    /// engines of one process, see [`Self::on_state`]).
    pub(super) written: Arc<std::sync::atomic::AtomicU64>,
    /// Runs of passes without leases, kept for one write (see [`Self::batching_runs`]).
    pub(super) batch: Option<Batch>,
    /// On a node among others: whether it still holds a pair (see [`Self::claimed_by`]).
    pub(super) claims: Option<Claims>,
}

/// Where a server keeps a user's calendars, as the config says.
#[derive(Debug, Clone)]
pub(super) struct HomeRule {
    pub(super) home: Home,
    /// The default calendar's last segment, for a server that does not name its default.
    pub(super) default_calendar: Option<String>,
}

/// Whether this node holds a pair's claim now.
pub type Claims = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Why a pass of a pair stopped early.
pub(super) enum PassError {
    Pair(ErrorKind, String),
    State(StateError),
}

impl From<StateError> for PassError {
    fn from(e: StateError) -> Self {
        PassError::State(e)
    }
}

/// Wraps a store error as a pair failure naming the calendar and its store.
pub(super) fn named<'a>(
    store: &dyn CalendarStore,
    side: &'a str,
    cal: &'a crate::domain::types::CalendarRef,
) -> impl FnOnce(StoreError) -> PassError + 'a {
    let store = store.describe();
    move |e| PassError::Pair(e.kind, format!("{side} calendar {cal} ({store}): {e}"))
}

/// Opens the store a configured server names: its password is read now, and a missing one
/// fails the server's pairs with the reason.
pub fn open_store(server: &ServerConfig) -> StoreResult<Arc<dyn CalendarStore>> {
    let location = match &server.kind {
        ServerKind::Vdir { path } => Location::Vdir { path: path.clone() },
        ServerKind::Caldav {
            url,
            username,
            password,
        } => Location::Caldav {
            url: url.clone(),
            username: username.clone(),
            password: password
                .as_ref()
                .map(PasswordSource::read)
                .transpose()
                .map_err(|e| {
                    StoreError::new(
                        ErrorKind::Permanent,
                        format!("server {} ({url}): {e}", server.name),
                    )
                })?,
        },
    };
    crate::store::open(&Endpoint {
        name: server.name.clone(),
        location,
        requests_per_second: server.requests_per_second,
        max_concurrency: server.max_concurrency,
        write_concurrency: server.write_concurrency,
        timeout: server.timeout,
        max_answer: server.max_answer,
    })
}

/// Opens (and migrates) the state a config names; a PostgreSQL password is read now.
pub async fn connect_state(config: &StateConfig) -> StateResult<State> {
    match config {
        StateConfig::Sqlite { path } => State::open(path).await,
        StateConfig::Postgres { url, password } => {
            let password = password
                .as_ref()
                .map(PasswordSource::read)
                .transpose()
                .map_err(|e| StateError::new(url, "its password", e))?;
            State::connect(url, password.as_ref()).await
        }
    }
}

/// Whether the state's records of `pair` are for its configured calendars and direction.
pub(super) fn recorded_as_configured(pair: &Pair, start: &PassStart) -> bool {
    start
        .calendars
        .as_ref()
        .is_some_and(|(a, b)| *a == pair.source.to_string() && *b == pair.target.to_string())
        && start.direction.as_deref() == Some(pair.direction.as_str())
}

impl Engine {
    pub fn new(config: &Config, state: State) -> Engine {
        let stores = config
            .servers
            .iter()
            .map(|(name, server)| (name.clone(), open_store(server).map_err(|e| e.to_string())))
            .collect();
        Engine {
            state,
            stores,
            forms: Forms {
                rewriter: Arc::new(config.rewrite.rewriter()),
                inverse: config.rewrite.inverse().map(Arc::new),
                window: Window {
                    past: config.sync.window_past,
                    future: config.sync.window_future,
                },
                clock: system_clock(),
            },
            extras: config.sync.extras,
            holder: crate::domain::lease::process_holder(),
            lease_ttl: config.sync.lease_ttl,
            homes: (config.servers.iter())
                .filter_map(|(name, s)| {
                    let home = s.home.clone()?;
                    let default_calendar = s.default_calendar.clone();
                    Some((
                        name.clone(),
                        HomeRule {
                            home,
                            default_calendar,
                        },
                    ))
                })
                .collect(),
            addresses: {
                let rw = config.rewrite.rewriter();
                let mut m = HashMap::new();
                for (addr, id) in &config.addresses {
                    if let Some(pair) = config.pair(id.as_str()) {
                        let rewritten = rw
                            .map_address(addr)
                            .map(|a| crate::domain::identity::normalize_address(&a));
                        m.insert(addr.clone(), pair.clone());
                        if let Some(r) = rewritten {
                            m.insert(r, pair.clone());
                        }
                    }
                }
                m
            },
            stopping: Arc::default(),
            progress: None,
            flushed: std::sync::Mutex::default(),
            written: Arc::default(),
            batch: None,
            claims: None,
        }
    }

    /// An engine of a node among others: a pass of a pair `claims` says this node no longer
    /// holds, found before it glanced or took its leases, records nothing and reports busy.
    pub fn claimed_by(mut self, claims: Claims) -> Engine {
        self.claims = Some(claims);
        self
    }

    /// Whether this node's claim on `pair` may have moved to another node by now.
    pub(super) fn lapsed(&self, pair: &Pair) -> bool {
        self.claims
            .as_ref()
            .is_some_and(|holds| !holds(pair.id.as_str()))
    }

    /// An engine over given stores (tests, benches, the demo).
    pub fn with_stores(
        state: State,
        stores: BTreeMap<String, Arc<dyn CalendarStore>>,
        rewriter: Rewriter,
    ) -> Engine {
        Engine {
            state,
            stores: stores.into_iter().map(|(k, v)| (k, Ok(v))).collect(),
            forms: Forms::new(rewriter),
            extras: Extras::Keep,
            holder: crate::domain::lease::process_holder(),
            lease_ttl: crate::domain::lease::DEFAULT_TTL,
            addresses: HashMap::new(),
            homes: BTreeMap::new(),
            stopping: Arc::default(),
            progress: None,
            flushed: std::sync::Mutex::default(),
            written: Arc::default(),
            batch: None,
            claims: None,
        }
    }

    /// `server` keeps a user's calendars at `home` (`{user}` in it); its default calendar is
    /// the one whose last segment is `default_calendar`, if the server does not say.
    pub fn with_home(mut self, server: &str, home: Home, default_calendar: Option<&str>) -> Engine {
        let default_calendar = default_calendar.map(str::to_string);
        self.homes.insert(
            server.to_string(),
            HomeRule {
                home,
                default_calendar,
            },
        );
        self
    }

    /// Only items overlapping `window` are created or updated.
    pub fn with_window(mut self, window: Window) -> Engine {
        self.forms.window = window;
        self
    }

    pub fn with_extras(mut self, extras: Extras) -> Engine {
        self.extras = extras;
        self
    }

    /// Names this engine in leases (tests run several "processes" in one).
    pub fn with_holder(mut self, holder: impl Into<String>) -> Engine {
        self.holder = holder.into();
        self
    }

    /// This engine over `state` (the same state through another pool, for another tokio
    /// runtime): same stores, rules, holder, stop flag and count of writes. Server counters
    /// are flushed by the engine they were counted in only; it records runs at once unless told to batch them.
    pub fn on_state(&self, state: State) -> Engine {
        Engine {
            state,
            stores: self.stores.clone(),
            forms: self.forms.clone(),
            extras: self.extras,
            holder: self.holder.clone(),
            lease_ttl: self.lease_ttl,
            addresses: self.addresses.clone(),
            homes: self.homes.clone(),
            stopping: self.stopping.clone(),
            progress: self.progress.clone(),
            flushed: std::sync::Mutex::default(),
            written: self.written.clone(),
            batch: None,
            claims: self.claims.clone(),
        }
    }

    /// Reports the write phase of first syncs and resyncs to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Engine {
        self.progress = Some(progress);
        self
    }

    /// Passes in progress stop after the writes in flight; their mappings are recorded.
    pub fn request_stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Judges the window by `clock` instead of the system time.
    pub fn with_clock(mut self, clock: Clock) -> Engine {
        self.forms.clock = clock;
        self
    }

    /// HTTP request counters per server, for the servers that speak HTTP.
    pub fn server_counts(&self) -> BTreeMap<String, crate::domain::requests::HttpCounts> {
        self.stores
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.as_ref().ok()?.counts()?)))
            .collect()
    }

    /// Whether each server that speaks HTTP answers, as this process sees it.
    pub fn server_health(&self) -> BTreeMap<String, crate::store::health::HealthView> {
        self.stores
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.as_ref().ok()?.health()?.view())))
            .collect()
    }

    /// Adds the requests made since the last call to the state's per-server counters, and the
    /// items written to its minutes.
    pub async fn flush_counts(&self) -> Result<(), StateError> {
        let now = crate::domain::time::now_ms();
        let written = self.written.swap(0, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self.state.add_writes(written, now).await {
            self.written
                .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
        self.flush_server_counts(now).await
    }

    /// Adds the requests made since the last call to the state's per-server counters.
    async fn flush_server_counts(&self, now_ms: i64) -> Result<(), StateError> {
        let now = self.server_counts();
        let deltas: BTreeMap<String, crate::domain::requests::HttpCounts> = {
            let mut flushed = self.flushed.lock().expect("not poisoned");
            let deltas = now
                .iter()
                .map(|(name, c)| {
                    let was = flushed.get(name).copied().unwrap_or_default();
                    let d = crate::domain::requests::HttpCounts {
                        requests: c.requests - was.requests,
                        retries: c.retries - was.retries,
                        failures: c.failures - was.failures,
                        failed: c.failed - was.failed,
                        throttled: c.throttled - was.throttled,
                    };
                    (name.clone(), d)
                })
                .filter(|(_, d)| d.requests > 0)
                .collect();
            *flushed = now;
            deltas
        };
        self.state.add_server_counts(&deltas, now_ms).await
    }

    /// How many passes one command runs at once: each pass mostly waits on one request at a
    /// time, so the servers' own limits (their requests in flight, summed) decide, not the
    /// number of processors.
    pub fn passes_at_once(&self) -> usize {
        self.stores
            .values()
            .filter_map(|s| s.as_ref().ok())
            .map(|s| s.parallelism())
            .sum::<usize>()
            .max(1)
    }

    /// The store of `server`, or why it cannot be used.
    pub(crate) fn store_of(&self, server: &str) -> Result<Arc<dyn CalendarStore>, String> {
        match self.store(server) {
            Ok(s) => Ok(s),
            Err(PassError::Pair(_, e)) => Err(e),
            Err(PassError::State(e)) => Err(e.to_string()),
        }
    }

    pub(crate) fn extras(&self) -> Extras {
        self.extras
    }

    /// The stores of `pair`'s side A and side B.
    pub(super) fn pair_stores(
        &self,
        pair: &Pair,
    ) -> Result<[Arc<dyn CalendarStore>; 2], PassError> {
        Ok([
            self.store(&pair.source.server)?,
            self.store(&pair.target.server)?,
        ])
    }

    pub(super) fn store(&self, server: &str) -> Result<Arc<dyn CalendarStore>, PassError> {
        match self.stores.get(server) {
            Some(Ok(s)) => Ok(s.clone()),
            Some(Err(e)) => Err(PassError::Pair(ErrorKind::Permanent, e.clone())),
            None => Err(PassError::Pair(
                ErrorKind::Permanent,
                format!("server {server:?} is not configured"),
            )),
        }
    }

    /// The lease guard of a writer of one calendar (sync, dedupe, repair): [`Self::under_leases`]
    /// for one.
    pub(crate) async fn under_lease<T>(
        &self,
        calendar: &str,
        kind: LeaseKind,
        dry_run: bool,
        work: impl AsyncFnOnce(Option<&Lease>) -> Result<T, StateError>,
    ) -> Result<Result<T, Locked>, StateError> {
        self.under_leases(&[calendar], kind, dry_run, async |leases: &[Lease]| {
            work(leases.first()).await
        })
        .await
    }

    /// The one lease guard of the writers: takes every calendar's lease (none for a dry run,
    /// which writes nothing) in one global order (sorted by name), so two processes wanting the
    /// same calendars never hold one each and wait; renews them while `work` runs and releases
    /// them after. `Ok(Err(locked))` when another holder has one: the leases taken so far are
    /// released and the caller skips, never waits.
    pub async fn under_leases<T>(
        &self,
        calendars: &[&str],
        kind: LeaseKind,
        dry_run: bool,
        work: impl AsyncFnOnce(&[Lease]) -> Result<T, StateError>,
    ) -> Result<Result<T, Locked>, StateError> {
        let mut order = calendars.to_vec();
        order.sort_unstable();
        order.dedup();
        let mut leases = Vec::with_capacity(order.len());
        if !dry_run {
            for calendar in order {
                match self.take_lease(calendar, kind).await? {
                    Ok(lease) => leases.push(lease),
                    Err(locked) => {
                        self.state.release_leases(&leases).await?;
                        return Ok(Err(locked));
                    }
                }
            }
        }
        // Every state write of `work` checks these leases in its own transaction.
        let out = self
            .renewing(&leases, crate::state::fenced(&leases, work(&leases)))
            .await;
        self.state.release_leases(&leases).await?;
        out.map(Ok)
    }

    /// Runs `work` while renewing `leases` every third of their ttl, so work that outlasts one
    /// ttl keeps them. A lost lease is only logged here: the writes check it themselves.
    pub(super) async fn renewing<T>(
        &self,
        leases: &[Lease],
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let renew = async {
            if leases.is_empty() {
                return std::future::pending().await;
            }
            loop {
                tokio::time::sleep(self.lease_ttl / 3).await;
                for lease in leases {
                    match self.state.renew_lease(lease, self.lease_ttl).await {
                        Ok(true) => {}
                        Ok(false) => warn!(calendar = %lease.calendar, "the lease was lost"),
                        Err(e) => warn!(error = %e, "renewing the lease failed"),
                    }
                }
            }
        };
        tokio::select! {
            r = work => r,
            never = renew => never,
        }
    }

    /// Takes `calendar`'s lease for this process (see [`State::take_lease`]).
    pub async fn take_lease(
        &self,
        calendar: &str,
        kind: LeaseKind,
    ) -> Result<Result<Lease, Locked>, StateError> {
        self.state
            .take_lease(calendar, &self.holder, kind, self.lease_ttl)
            .await
    }

    /// How `pair` syncs now: its direction, and its authority (the target once cut over).
    /// Unless `dry_run`, a pair the state does not record as configured is recorded first (see
    /// [`State::ensure_pair`]).
    pub(super) async fn mode(
        &self,
        pair: &Pair,
        dry_run: bool,
        start: &PassStart,
    ) -> Result<Mode, StateError> {
        let cutover_at = match dry_run || recorded_as_configured(pair, start) {
            true => start.cutover_at,
            false => self.state.ensure_pair(pair).await?,
        };
        let authority = authority(cutover_at.is_some());
        Ok(match pair.direction {
            Direction::OneWay => Mode::OneWay { from: authority },
            Direction::TwoWay => Mode::TwoWay {
                authority,
                conflict: pair.conflict,
            },
        })
    }

    /// The hrefs the state maps for `pair` on each side, with the content it recorded; `None`
    /// if it recorded other calendars for it (or none at all).
    pub(crate) async fn mapped_copies(
        &self,
        pair: &Pair,
    ) -> Result<Option<[HashMap<Href, (ContentHash, Etag)>; 2]>, StateError> {
        let known = self
            .state
            .pair_calendars(&pair.id)
            .await?
            .is_some_and(|(a, b)| a == pair.source.to_string() && b == pair.target.to_string());
        if !known {
            return Ok(None);
        }
        let mut sides: [HashMap<Href, (ContentHash, Etag)>; 2] = Default::default();
        for m in self.state.mappings(&pair.id).await? {
            sides[0].insert(m.a_href.clone(), (m.hash, m.a_etag));
            sides[1].insert(m.b_href, (m.hash, m.b_etag));
        }
        Ok(Some(sides))
    }
}

/// Saves each side's new sync token, both in one transaction; an unchanged one (a quiet
/// calendar) needs no write.
pub(super) async fn save_watermarks(
    state: &State,
    pair: &Pair,
    tokens: &[(Option<SyncToken>, Option<SyncToken>); 2],
) -> Result<(), StateError> {
    let moved: Vec<(Side, Option<&SyncToken>)> = [Side::A, Side::B]
        .into_iter()
        .zip(tokens)
        .filter(|(_, (old, new))| old != new)
        .map(|(side, (_, new))| (side, new.as_ref()))
        .collect();
    state.set_watermarks(&pair.id, &moved).await
}
