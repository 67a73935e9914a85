//! Runs one pass of a pair: list both sides, read what moved, plan, execute, record. Which way
//! it copies comes from the pair's direction and authority: one way from the authority (the
//! source until a cutover, the target after), or both ways (`both.rs`).
//!
//! Rule 2 of the design lives here: a mapping is recorded only after its remote write succeeded,
//! updates and deletes carry `If-Match`, and a 412 is answered by re-reading the item, never by
//! overwriting blindly. Per-item failures are data in the report; only state-store errors abort.

pub mod batch;
mod both;
mod dedupe;
mod execute;
mod glance;
pub mod progress;
mod read;
mod record;
pub mod repair;
pub mod report;
mod runs;
mod settle;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::{Config, PasswordSource, ServerConfig, ServerKind, StateConfig};
use crate::domain::direction::{Direction, authority};
use crate::domain::error::{ErrorKind, StoreError, StoreResult};
use crate::domain::item::{Ambiguous, Item, ItemError, Rewriter};
use crate::domain::lease::{Lease, LeaseKind, Locked};
use crate::domain::mapping::Side;
use crate::domain::pair::{Extras, Pair};
use crate::domain::run::{RunKind, RunRecord};
use crate::domain::types::{ContentHash, Etag, Href, SyncToken};
use crate::domain::window::Window;
use crate::engine::report::PairReport;
use crate::state::{PassStart, Peek, State, StateError, StateResult};
use crate::store::{CalendarStore, Endpoint, Location};
use crate::sync::select::select;
use crate::sync::two_way::TwoWay;
use crate::sync::{self, Action, Content, Mode, PlanOptions, Prepared};
pub use dedupe::{DedupeGroup, DedupeReport};
use glance::Glance;
use read::{Quiet, Read};
pub(crate) use write::{Dest, Original, fetch_all};

/// How a pass of a pair runs, from its direction and whether it was cut over.
#[derive(Debug, Clone, Copy)]
enum Way {
    One(Mode),
    Two(TwoWay),
}

impl Way {
    /// The sides a pass copies from.
    fn reads(self) -> &'static [Side] {
        match self {
            Way::One(mode) if mode.from() == Side::A => &[Side::A],
            Way::One(_) => &[Side::B],
            Way::Two(_) => &[Side::A, Side::B],
        }
    }

    /// The sides a pass may write, whose calendars it leases.
    fn writes(self) -> &'static [Side] {
        match self {
            Way::One(mode) if mode.to() == Side::A => &[Side::A],
            Way::One(_) => &[Side::B],
            Way::Two(_) => &[Side::A, Side::B],
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PassOptions {
    /// Print the plan, write nothing.
    pub dry_run: bool,
    /// Ignore watermarks and etags: read and compare everything (`resync`).
    pub full: bool,
    pub force_delete: bool,
}

pub struct Engine {
    pub state: State,
    /// Stores by server name; a server that cannot be opened fails the pairs that use it.
    stores: BTreeMap<String, Result<Arc<dyn CalendarStore>, String>>,
    rewriter: Arc<Rewriter>,
    /// The rewrite for copies written to the old org (side A), or why there is none.
    inverse: Result<Arc<Rewriter>, Ambiguous>,
    extras: Extras,
    window: Window,
    clock: Clock,
    /// Who this process is, in leases ("HOST pid 1234 ab12cd34").
    holder: String,
    lease_ttl: std::time::Duration,
    /// Set when the service stops: passes finish the writes in flight and start no more.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Mailbox address (as configured and as rewritten into the target org) → its pair.
    pub(crate) mailboxes: HashMap<String, Pair>,
    /// Told how a long write phase (a first sync, a resync) is going.
    progress: Option<Arc<dyn crate::engine::progress::Progress>>,
    /// Server counters as last added to the state.
    flushed: std::sync::Mutex<BTreeMap<String, crate::domain::requests::HttpCounts>>,
    /// Runs of passes without leases, kept for one write (see [`Self::batching_runs`]).
    batch: Option<runs::Batch>,
    /// On a node among others: whether it still holds a pair (see [`Self::claimed_by`]).
    claims: Option<Claims>,
}

/// Whether this node holds a pair's claim now.
pub type Claims = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What "now" is for the sync window (replaceable in tests to let time pass).
pub type Clock = Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(chrono::Utc::now)
}

/// Why a pass of a pair stopped early.
enum PassError {
    Pair(ErrorKind, String),
    State(StateError),
}

impl From<StateError> for PassError {
    fn from(e: StateError) -> Self {
        PassError::State(e)
    }
}

/// How a pass under leases goes on from its start.
struct Leased {
    way: Way,
    opts: PassOptions,
    /// The listings its glance made, if it glanced and something moved.
    glanced: Option<Box<read::Listing>>,
    tally: Arc<crate::store::http::Tally>,
}

/// A pass that stopped, recording nothing, because this node may no longer hold the pair.
fn not_held(pair: &Pair) -> PairReport {
    let mut report = PairReport::new(pair.id.as_str());
    report.busy = true;
    report.error = Some(
        "this node no longer holds the pair (it stalled past its claim, or the pair is moving to \
         another node); skipped, nothing recorded"
            .to_string(),
    );
    warn!("this node no longer holds the pair; pass skipped");
    report
}

/// `report`, its outcome logged.
fn logged(report: PairReport) -> PairReport {
    for f in &report.failures {
        warn!(item = %f.href, kind = f.kind, error = %f.reason, "item failed");
    }
    match &report.error {
        Some(e) => warn!(error = %e, "pair failed"),
        None => info!(
            created = report.created,
            updated = report.updated,
            deleted = report.deleted,
            adopted = report.adopted,
            unchanged = report.unchanged,
            failed = report.failed,
            "pass finished"
        ),
    }
    report
}

/// Wraps a store error as a pair failure naming the calendar and its store.
fn named<'a>(
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
            rewriter: Arc::new(config.rewrite.rewriter()),
            inverse: config.rewrite.inverse().map(Arc::new),
            extras: config.sync.extras,
            window: Window {
                past: config.sync.window_past,
                future: config.sync.window_future,
            },
            clock: system_clock(),
            holder: crate::domain::lease::process_holder(),
            lease_ttl: config.sync.lease_ttl,
            mailboxes: {
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
    fn lapsed(&self, pair: &Pair) -> bool {
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
            inverse: rewriter.inverse([], []).map(Arc::new),
            rewriter: Arc::new(rewriter),
            extras: Extras::Keep,
            window: Window::default(),
            clock: system_clock(),
            holder: crate::domain::lease::process_holder(),
            lease_ttl: crate::domain::lease::DEFAULT_TTL,
            mailboxes: HashMap::new(),
            stopping: Arc::default(),
            progress: None,
            flushed: std::sync::Mutex::default(),
            batch: None,
            claims: None,
        }
    }

    /// Only items overlapping `window` are created or updated.
    pub fn with_window(mut self, window: Window) -> Engine {
        self.window = window;
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
    /// runtime): same stores, rules, holder and stop flag. Server counters are flushed by the
    /// engine they were counted in only; it records runs at once unless told to batch them.
    pub fn on_state(&self, state: State) -> Engine {
        Engine {
            state,
            stores: self.stores.clone(),
            rewriter: self.rewriter.clone(),
            inverse: self.inverse.clone(),
            extras: self.extras,
            window: self.window,
            clock: self.clock.clone(),
            holder: self.holder.clone(),
            lease_ttl: self.lease_ttl,
            mailboxes: self.mailboxes.clone(),
            stopping: self.stopping.clone(),
            progress: self.progress.clone(),
            flushed: std::sync::Mutex::default(),
            batch: None,
            claims: self.claims.clone(),
        }
    }

    /// Reports the write phase of first syncs and resyncs to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn crate::engine::progress::Progress>) -> Engine {
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
        self.clock = clock;
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

    /// Adds the requests made since the last call to the state's per-server counters.
    pub async fn flush_server_counts(&self) -> Result<(), StateError> {
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
        self.state
            .add_server_counts(&deltas, crate::domain::time::now_ms())
            .await
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

    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.clock)()
    }

    fn store(&self, server: &str) -> Result<Arc<dyn CalendarStore>, PassError> {
        match self.stores.get(server) {
            Some(Ok(s)) => Ok(s.clone()),
            Some(Err(e)) => Err(PassError::Pair(ErrorKind::Permanent, e.clone())),
            None => Err(PassError::Pair(
                ErrorKind::Permanent,
                format!("server {server:?} is not configured"),
            )),
        }
    }

    /// One pass over `pair`: [`Self::peek`], then [`Self::sync_pair_from`].
    pub async fn sync_pair(
        &self,
        pair: &Pair,
        opts: PassOptions,
    ) -> Result<PairReport, StateError> {
        let peek = self.peek(pair).await?;
        self.sync_pair_from(pair, opts, peek).await
    }

    /// What the state holds of `pair` as a pass starts, in one read (see [`State::peek`]).
    pub async fn peek(&self, pair: &Pair) -> Result<Peek, StateError> {
        let mut peeks = self.peek_many(&[pair]).await?;
        Ok(peeks.pop().expect("one per pair"))
    }

    /// [`Self::peek`] for several pairs in one read, in their order.
    pub async fn peek_many(&self, pairs: &[&Pair]) -> Result<Vec<Peek>, StateError> {
        let names: Vec<[String; 2]> = pairs
            .iter()
            .map(|p| [p.source.to_string(), p.target.to_string()])
            .collect();
        let keys: Vec<(&crate::domain::types::PairId, [&str; 2])> = pairs
            .iter()
            .zip(&names)
            .map(|(p, [a, b])| (&p.id, [a.as_str(), b.as_str()]))
            .collect();
        let now = (self.clock)().timestamp();
        self.state.peek_many(&keys, now, &self.window.key()).await
    }

    /// One pass over `pair` from what `peek` read. It glances first, without leases (see
    /// `glance.rs`); if something moved, or it may not glance, it goes on under the leases of
    /// the calendars it writes. Only a state-store failure is an `Err`; everything else is
    /// reported.
    // At error level so the span (and its fields on every log line) exists at any log level.
    #[tracing::instrument(level = "error", skip_all, fields(pair = %pair.id, run = tracing::field::Empty))]
    pub async fn sync_pair_from(
        &self,
        pair: &Pair,
        opts: PassOptions,
        peek: Peek,
    ) -> Result<PairReport, StateError> {
        if self.lapsed(pair) {
            return Ok(not_held(pair));
        }
        let way = self.way(pair, opts.dry_run, &peek.start).await?;
        let tally = Arc::new(crate::store::http::Tally::default());
        let mut glanced = None;
        if self.may_glance(pair, way, opts, &peek) {
            match self.glance(pair, way, opts, peek.start, &tally).await? {
                Glance::Done(report) => return Ok(logged(*report)),
                Glance::Moved(listing) => glanced = Some(listing),
                Glance::Late => {}
                Glance::Lapsed => return Ok(not_held(pair)),
            }
        }
        let mut report = PairReport::new(pair.id.as_str());
        report.dry_run = opts.dry_run;
        // Whoever writes a calendar holds its lease: another holder means skip this round,
        // never wait.
        let calendars: Vec<String> = way
            .writes()
            .iter()
            .map(|s| pair.calendar(*s).to_string())
            .collect();
        let names: Vec<&str> = calendars.iter().map(String::as_str).collect();
        let leased = Leased {
            way,
            opts,
            glanced,
            tally,
        };
        let done = self
            .under_leases(&names, LeaseKind::Sync, opts.dry_run, async |leases| {
                if self.lapsed(pair) {
                    report = not_held(pair);
                    return Ok(());
                }
                self.recorded_pass(pair, leased, &mut report, leases).await
            })
            .await;
        let done = match done {
            // Fenced: a state write found the lease gone (this node stalled past it, say).
            Err(e) if e.lease_lost() => {
                warn!(error = %e, "lease lost; this pass stopped and recorded nothing more");
                report.busy = true;
                report.error = Some(e.to_string());
                return Ok(report);
            }
            done => done?,
        };
        if let Err(locked) = done {
            report.busy = true;
            let role = match locked.calendar == pair.source.to_string() {
                true => "source",
                false => "target",
            };
            report.error = Some(format!(
                "{role} calendar {}: {locked}; skipped this time",
                locked.calendar
            ));
            warn!(holder = %locked.holder, calendar = %locked.calendar, "calendar is locked; pair skipped");
            return Ok(report);
        }
        Ok(logged(report))
    }

    /// How `pair` syncs now: its direction, and its authority (the target once cut over).
    /// Unless `dry_run`, a pair the state does not record as configured is recorded first (see
    /// [`State::ensure_pair`]).
    async fn way(&self, pair: &Pair, dry_run: bool, start: &PassStart) -> Result<Way, StateError> {
        let cutover_at = match dry_run || glance::recorded_as_configured(pair, start) {
            true => start.cutover_at,
            false => self.state.ensure_pair(pair).await?,
        };
        let authority = authority(cutover_at.is_some());
        Ok(match pair.direction {
            Direction::OneWay => Way::One(Mode::OneWay { from: authority }),
            Direction::TwoWay => Way::Two(TwoWay {
                authority,
                conflict: pair.conflict,
            }),
        })
    }

    /// A pass under its leases, recorded in the run history (none for a dry run), with its HTTP
    /// requests counted (with those of its glance).
    async fn recorded_pass(
        &self,
        pair: &Pair,
        leased: Leased,
        report: &mut PairReport,
        leases: &[Lease],
    ) -> Result<(), StateError> {
        let Leased {
            way,
            opts,
            glanced,
            tally,
        } = leased;
        // Recorded when it ends, unless a dry run; its id names it in the log meanwhile.
        let kind = match opts.full {
            true => RunKind::Resync,
            false => RunKind::Sync,
        };
        let run = (!opts.dry_run).then(|| RunRecord::start(kind, &self.holder));
        if let Some(run) = &run {
            tracing::Span::current().record("run", run.id.as_str());
        }
        let pass = async {
            if way.writes().contains(&Side::A)
                && let Err(e) = &self.inverse
            {
                return Err(PassError::Pair(ErrorKind::Permanent, e.to_string()));
            }
            match way {
                Way::One(mode) => self.pass(pair, mode, opts, report, leases, glanced).await,
                Way::Two(rules) => {
                    self.pass_both(pair, rules, opts, report, leases, glanced)
                        .await
                }
            }
        };
        let outcome = crate::store::http::PASS_TALLY
            .scope(tally.clone(), pass)
            .await;
        runs::tallied(report, &tally);
        match outcome {
            Ok(()) => {}
            Err(PassError::State(e)) if e.lease_lost() => {
                // Taken over while this pass ran: it records nothing more, not even itself.
                warn!(error = %e, "lease lost mid-pass; stopped writing, nothing more recorded");
                report.error = Some(e.to_string());
                report.interrupted = true;
                return Ok(());
            }
            Err(PassError::State(e)) => return Err(e),
            Err(PassError::Pair(kind, msg)) => {
                report.error = Some(crate::domain::error::bounded(
                    &msg,
                    crate::domain::error::MAX_REASON,
                ));
                report.error_kind = Some(kind);
            }
        }
        if let Some(run) = run {
            let run = runs::finished(run, report, &tally);
            match self.state.record_run(&pair.id, &run).await {
                // The lease went (the pass stopped writing for that): not ours to record.
                Err(e) if e.lease_lost() => report.busy = true,
                other => other?,
            }
        }
        Ok(())
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

    /// How many changes `changes` (of `side`) holds for `pair`: all of an incremental listing;
    /// the items of a complete one whose etag moved, that are new, or that are gone.
    async fn seen_changes(
        &self,
        pair: &Pair,
        known: bool,
        side: Side,
        changes: &crate::store::Changes,
    ) -> Result<u64, StateError> {
        if !changes.complete {
            return Ok((changes.changed.len() + changes.deleted.len()) as u64);
        }
        let mappings = if known {
            self.state.mappings(&pair.id).await?
        } else {
            Vec::new()
        };
        let listed: HashMap<&Href, &Etag> =
            changes.changed.iter().map(|v| (&v.href, &v.etag)).collect();
        let mapped: HashMap<&Href, &Etag> = mappings
            .iter()
            .map(|m| (m.href(side), m.etag(side)))
            .collect();
        let moved = listed
            .iter()
            .filter(|(h, e)| mapped.get(*h) != Some(*e))
            .count();
        let gone = mapped.keys().filter(|h| !listed.contains_key(*h)).count();
        Ok((moved + gone) as u64)
    }

    /// Saves each side's new sync token, both in one transaction; an unchanged one (a quiet
    /// calendar) needs no write.
    async fn save_watermarks(
        &self,
        pair: &Pair,
        tokens: &[(Option<SyncToken>, Option<SyncToken>); 2],
    ) -> Result<(), StateError> {
        let moved: Vec<(Side, Option<&SyncToken>)> = [Side::A, Side::B]
            .into_iter()
            .zip(tokens)
            .filter(|(_, (old, new))| old != new)
            .map(|(side, (_, new))| (side, new.as_ref()))
            .collect();
        self.state.set_watermarks(&pair.id, &moved).await
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
    async fn renewing<T>(&self, leases: &[Lease], work: impl std::future::Future<Output = T>) -> T {
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

    /// Cuts `pair` over (its target becomes the authority) or, with `undo`, back. Both
    /// calendars' leases are held meanwhile, so no pass of the pair runs across the flip: the
    /// next one starts from it and compares both sides in full. `Ok(false)`: it already was so.
    pub async fn cutover(
        &self,
        pair: &Pair,
        undo: bool,
    ) -> Result<Result<bool, Locked>, StateError> {
        let (a, b) = (pair.source.to_string(), pair.target.to_string());
        let at = (!undo).then(crate::domain::time::now_ms);
        self.under_leases(&[&a, &b], LeaseKind::Sync, false, async |_| {
            let changed = self.state.set_cutover(pair, at).await?;
            if changed {
                info!(pair = %pair.id, undo, "cutover recorded");
            }
            Ok(changed)
        })
        .await
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

    /// One pass as its stages: read (list, quiet shortcut, held items, fetch, prepare) → plan →
    /// execute (writes, fencing inside) → record. A dry run stops after planning and prints it.
    async fn pass(
        &self,
        pair: &Pair,
        mode: Mode,
        opts: PassOptions,
        report: &mut PairReport,
        leases: &[Lease],
        glanced: Option<Box<read::Listing>>,
    ) -> Result<(), PassError> {
        let listing = self
            .list(pair, opts, report, &[mode.from()], glanced)
            .await?;
        let Quiet::No(remembered) = self.quiet(pair, opts, &listing, report).await? else {
            return Ok(());
        };
        let mut read = self
            .read(pair, mode, opts, listing, remembered, report)
            .await?;
        let plan = self.plan(&mut read, opts)?;
        report.unchanged = plan.unchanged;
        if opts.dry_run {
            for a in &plan.actions {
                report.planned(a, mode.to(), pair);
            }
            return Ok(());
        }
        self.state
            .update_target_index(&pair.id, &read.indexed, &read.index_gone)
            .await?;
        let (writes, local): (Vec<Action>, Vec<Action>) =
            plan.actions.into_iter().partition(|a| a.writes().is_some());
        // A first sync or a resync shows its progress.
        let long = opts.full || read.prior.is_empty();
        let executed = self.execute(pair, writes, leases, long).await?;
        self.record(pair, read, local, executed, report).await
    }

    /// The plan stage: the decision table, then adoption and extras (all pure).
    fn plan(&self, read: &mut Read, opts: PassOptions) -> Result<sync::Plan, PassError> {
        let mode = read.mode;
        // Items of the old org that did not come from the new one are its colleagues'
        // invitations and the like: a pass writing to the old org never deletes them.
        let extras = match mode.to() {
            Side::A => Extras::Keep,
            Side::B => self.extras,
        };
        let options = PlanOptions {
            force_delete: opts.force_delete,
        };
        let mut plan = sync::plan(
            mode,
            &read.source,
            &read.target,
            &read.prior,
            &read.pending,
            options,
        )
        .map_err(|e| PassError::Pair(ErrorKind::Permanent, e.to_string()))?;
        select(
            &mut plan,
            mode,
            std::mem::take(&mut read.unmapped),
            &read.pending,
            extras,
            &read.outside,
        );
        Ok(plan)
    }

    /// An item read from `side`, made ready to plan with: in the new org's form (side A's
    /// addresses rewritten), marked client-scheduled, judged against the window, hashed. Both
    /// sides' items are in this one form, so equal content hashes equal whichever side it is on.
    pub(crate) fn prepare(
        &self,
        side: Side,
        data: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Content<Arc<Prepared>> {
        match self.canonical(side, data) {
            Ok(mut item) => {
                item.mark_client_scheduled();
                // The recurrence expander is third-party code: if it panics on some input, the
                // item counts as inside (synced) rather than taking the pass down.
                let fit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.window.fit(&item, now)
                }))
                .unwrap_or(Ok(crate::domain::window::Fit::Inside));
                match fit {
                    Ok(fit) => Content::Fetched(Arc::new(Prepared::new(item).with_fit(fit))),
                    Err(e) => Content::Broken(ErrorKind::InvalidData, e.to_string()),
                }
            }
            Err(e) => Content::Broken(
                ErrorKind::InvalidData,
                format!("invalid iCalendar data: {e}"),
            ),
        }
    }

    /// An item read from `side`, parsed, in the new org's form.
    pub(crate) fn canonical(&self, side: Side, data: &str) -> Result<Item, ItemError> {
        let mut item = Item::parse(data)?;
        if side == Side::A {
            item.rewrite(&self.rewriter);
        }
        Ok(item)
    }

    /// The text of a copy written to `side`: for the old org (A), with the new org's addresses
    /// turned back.
    pub(crate) fn render(&self, side: Side, item: &Item) -> String {
        match (side, &self.inverse) {
            (Side::A, Ok(inverse)) if !inverse.is_empty() => {
                let mut back = item.clone();
                back.rewrite(inverse);
                back.to_ics()
            }
            // A pass writing to A without a way back does not start (see `recorded_pass`).
            _ => item.to_ics(),
        }
    }
}
