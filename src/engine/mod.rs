//! Runs one pass of a pair: list both sides, read what moved, plan, execute, record.
//!
//! Rule 2 of the design lives here: a mapping is recorded only after its remote write succeeded,
//! updates and deletes carry `If-Match`, and a 412 is answered by re-reading the item, never by
//! overwriting blindly. Per-item failures are data in the report; only state-store errors abort.

pub mod progress;
pub mod repair;
pub mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use tracing::{debug, info, warn};

use crate::config::{Config, Extras, PairConfig};
use crate::domain::error::{ErrorKind, StoreError};
use crate::domain::identity::IdentityKey;
use crate::domain::item::{Item, Rewriter};
use crate::domain::lease::{Lease, LeaseKind, Locked};
use crate::engine::report::{PairReport, PlannedAction};
use crate::domain::mapping::{Mapping, OutsideWindow, Pending, Side};
use crate::domain::run::{Outcome, RunCounts, RunKind};
use crate::state::{State, StateError};
use crate::store::{self, CalendarStore, ItemVersion};
use crate::sync::{
    self, Action, Content, PlanOptions, Prepared, Prior, SourceItem, SourceSnapshot, TargetItem,
};
use crate::domain::types::{CalendarPath, Etag, Href, SyncToken};
use crate::domain::window::Window;

/// Items per multiget-style fetch.
const FETCH_BATCH: usize = 100;

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
    extras: Extras,
    window: Window,
    clock: Clock,
    /// Who this process is, in leases ("HOST pid 1234 ab12cd34").
    holder: String,
    lease_ttl: std::time::Duration,
    /// Set when the service stops: passes finish the writes in flight and start no more.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Mailbox address (as configured and as rewritten into the target org) → its pair.
    pub(crate) mailboxes: HashMap<String, PairConfig>,
    /// Told how a long write phase (a first sync, a resync) is going.
    progress: Option<Arc<dyn crate::engine::progress::Progress>>,
    /// Server counters as last added to the state.
    flushed: std::sync::Mutex<BTreeMap<String, crate::store::http::HttpCounts>>,
}

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

/// Wraps a store error as a pair failure naming the calendar and its store.
fn named<'a>(
    store: &dyn CalendarStore,
    side: &'a str,
    cal: &'a crate::domain::types::CalendarRef,
) -> impl FnOnce(StoreError) -> PassError + 'a {
    let store = store.describe();
    move |e| PassError::Pair(e.kind, format!("{side} calendar {cal} ({store}): {e}"))
}

/// A file name for an item in the target, derived from its UID so a retried create after a crash
/// lands on the same name (and is then adopted) instead of making a second copy.
pub fn target_name(uid: &str) -> String {
    let safe = !uid.is_empty()
        && uid.len() <= 200
        && !uid.starts_with('.')
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._-+".contains(c));
    if safe {
        format!("{uid}.ics")
    } else {
        format!("{:032x}.ics", xxhash_rust::xxh3::xxh3_128(uid.as_bytes()))
    }
}

impl Engine {
    pub fn new(config: &Config, state: State) -> Engine {
        let stores = config
            .servers
            .iter()
            .map(|(name, server)| (name.clone(), store::open(server).map_err(|e| e.to_string())))
            .collect();
        Engine {
            state,
            stores,
            rewriter: Arc::new(config.rewrite.rewriter()),
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
        }
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
    pub fn server_counts(&self) -> BTreeMap<String, crate::store::http::HttpCounts> {
        self.stores
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.as_ref().ok()?.counts()?)))
            .collect()
    }

    /// Adds the requests made since the last call to the state's per-server counters.
    pub async fn flush_server_counts(&self) -> Result<(), StateError> {
        let now = self.server_counts();
        let deltas: BTreeMap<String, crate::store::http::HttpCounts> = {
            let mut flushed = self.flushed.lock().expect("not poisoned");
            let deltas = now
                .iter()
                .map(|(name, c)| {
                    let was = flushed.get(name).copied().unwrap_or_default();
                    let d = crate::store::http::HttpCounts {
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

    /// `tandem dedupe`: finds target items of `pair` that are the same meeting (one identity key),
    /// keeps the mapped copy (else the highest SEQUENCE, then the latest LAST-MODIFIED) and
    /// deletes the others with `If-Match`. Reads the whole target calendar; trusts no index.
    pub async fn dedupe(
        &self,
        pair: &PairConfig,
        dry_run: bool,
    ) -> Result<DedupeReport, StateError> {
        let mut report = DedupeReport {
            pair: pair.id.to_string(),
            dry_run,
            ..Default::default()
        };
        let tgt = match self.store(&pair.target.server) {
            Ok(t) => t,
            Err(PassError::Pair(_, e)) => {
                report.error = Some(e);
                return Ok(report);
            }
            Err(PassError::State(e)) => return Err(e),
        };
        // Deleting copies is writing: under the target calendar's lease, like a sync pass.
        let target = pair.target.to_string();
        let done = self
            .under_lease(&target, LeaseKind::Repair, dry_run, async |lease| {
                self.dedupe_under(pair, &*tgt, lease, &mut report).await
            })
            .await?;
        if let Err(locked) = done {
            report.error = Some(format!("target calendar {}: {locked}", pair.target));
        }
        Ok(report)
    }

    /// `dedupe` under its lease (`None`: a dry run).
    async fn dedupe_under(
        &self,
        pair: &PairConfig,
        tgt: &dyn CalendarStore,
        lease: Option<&Lease>,
        report: &mut DedupeReport,
    ) -> Result<(), StateError> {
        let tcal = &pair.target.path;
        let read = async {
            tgt.check_calendar(tcal).await?;
            let hrefs: Vec<Href> = tgt.list(tcal).await?.into_iter().map(|v| v.href).collect();
            fetch_all(&*tgt, tcal, &hrefs).await
        };
        let items = match read.await {
            Ok(items) => items,
            Err(e) => {
                report.error = Some(format!(
                    "target calendar {} ({}): {e}",
                    pair.target,
                    tgt.describe()
                ));
                return Ok(());
            }
        };
        let recorded = self.mapped_copies(pair).await?;
        let known = recorded.is_some();
        let mapped = recorded.unwrap_or_default();
        // Per identity: (href, etag, SEQUENCE, LAST-MODIFIED) of each copy.
        type Copy = (Href, Etag, i64, Option<String>);
        let mut groups: BTreeMap<IdentityKey, Vec<Copy>> = BTreeMap::new();
        for (href, got) in items {
            match got {
                Ok(r) => match Item::parse(&r.data) {
                    Ok(item) => groups.entry(item.identity()).or_default().push((
                        href,
                        r.etag,
                        item.sequence(),
                        item.last_modified().map(str::to_string),
                    )),
                    Err(e) => report
                        .skipped
                        .push(format!("{href}: not readable as iCalendar ({e})")),
                },
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => report.skipped.push(format!("{href}: {e}")),
            }
        }
        let mut gone = Vec::new();
        for (identity, mut copies) in groups.into_iter().filter(|(_, c)| c.len() > 1) {
            sync::rank_copies(&mut copies, |c| sync::CopyRank {
                mapped: mapped.contains(&c.0),
                equal: false,
                sequence: c.2,
                last_modified: c.3.as_deref(),
                href: &c.0,
            });
            let mut group = DedupeGroup {
                identity: identity.to_string(),
                ..Default::default()
            };
            for (i, (href, etag, ..)) in copies.into_iter().enumerate() {
                // The first is kept; so is any other mapped copy (deleting it would only bring it back).
                if i == 0 || mapped.contains(&href) {
                    group.kept.push(href.to_string());
                    continue;
                }
                let Some(lease) = lease else {
                    group.deleted.push(href.to_string());
                    continue;
                };
                if !self.state.lease_is_current(lease).await? {
                    group.failed.push(format!(
                        "{href}: not deleted: the lease on the calendar was taken over"
                    ));
                    continue;
                }
                match tgt.delete(&href, &etag).await {
                    Ok(()) => {
                        group.deleted.push(href.to_string());
                        gone.push(href);
                    }
                    Err(e) => group.failed.push(format!("{href}: {e}")),
                }
            }
            report.groups.push(group);
        }
        if known && !gone.is_empty() {
            self.state.update_target_index(&pair.id, &[], &gone).await?;
        }
        Ok(())
    }

    /// One pass over `pair`. Only a state-store failure is an `Err`; everything else is reported.
    // At error level so the span (and its fields on every log line) exists at any log level.
    #[tracing::instrument(level = "error", skip_all, fields(pair = %pair.id, run = tracing::field::Empty))]
    pub async fn sync_pair(
        &self,
        pair: &PairConfig,
        opts: PassOptions,
    ) -> Result<PairReport, StateError> {
        let mut report = PairReport::new(pair.id.as_str());
        report.dry_run = opts.dry_run;
        if !opts.dry_run {
            self.state.ensure_pair(pair).await?;
        }
        // Whoever writes the target calendar holds its lease: another holder means skip this
        // round, never wait.
        let target = pair.target.to_string();
        let done = self
            .under_lease(&target, LeaseKind::Sync, opts.dry_run, async |lease| {
                self.recorded_pass(pair, opts, &mut report, lease).await
            })
            .await?;
        if let Err(locked) = done {
            report.busy = true;
            report.error = Some(format!(
                "target calendar {}: {locked}; skipped this time",
                pair.target
            ));
            warn!(holder = %locked.holder, "target calendar is locked; pair skipped");
            return Ok(report);
        }
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
        Ok(report)
    }

    /// A pass recorded in the run history (none for a dry run), with its HTTP requests counted.
    async fn recorded_pass(
        &self,
        pair: &PairConfig,
        opts: PassOptions,
        report: &mut PairReport,
        lease: Option<&Lease>,
    ) -> Result<(), StateError> {
        let run = if opts.dry_run {
            None
        } else {
            Some(
                self.state
                    .begin_run(
                        &pair.id,
                        if opts.full {
                            RunKind::Resync
                        } else {
                            RunKind::Sync
                        },
                    )
                    .await?,
            )
        };
        if let Some(run) = &run {
            tracing::Span::current().record("run", run.as_str());
        }
        let tally = Arc::new(crate::store::http::Tally::default());
        let outcome = crate::store::http::PASS_TALLY
            .scope(tally.clone(), self.pass(pair, opts, report, lease))
            .await;
        let counted =
            |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        report.requests = counted(&tally.requests);
        report.failed_requests = counted(&tally.failed);
        match outcome {
            Ok(()) => {}
            Err(PassError::State(e)) => return Err(e),
            Err(PassError::Pair(kind, msg)) => {
                report.error = Some(msg);
                report.error_kind = Some(kind);
            }
        }
        if let Some(run) = run {
            let outcome = match (&report.error, report.failed) {
                (Some(_), _) => Outcome::Failed,
                (None, 0) => Outcome::Ok,
                (None, _) => Outcome::Partial,
            };
            let counts = RunCounts {
                created: report.created,
                updated: report.updated,
                deleted: report.deleted,
                unchanged: report.unchanged,
                failed: report.failed,
                adopted: report.adopted,
                requests: report.requests,
                failed_requests: report.failed_requests,
                throttled: counted(&tally.throttled),
                backlog: report.backlog,
            };
            self.state
                .finish_run(&pair.id, &run, outcome, &counts, report.error.as_deref())
                .await?;
        }
        Ok(())
    }

    /// The target hrefs the state maps for `pair`; `None` if it recorded other calendars for it
    /// (or none at all).
    pub(crate) async fn mapped_copies(
        &self,
        pair: &PairConfig,
    ) -> Result<Option<HashSet<Href>>, StateError> {
        let known = self
            .state
            .pair_calendars(&pair.id)
            .await?
            .is_some_and(|(a, b)| a == pair.source.to_string() && b == pair.target.to_string());
        if !known {
            return Ok(None);
        }
        Ok(Some(
            self.state
                .mappings(&pair.id)
                .await?
                .into_iter()
                .map(|m| m.b_href)
                .collect(),
        ))
    }

    /// How many source changes `changes` holds for `pair`: all of an incremental listing; the
    /// items of a complete one whose etag moved, that are new, or that are gone.
    async fn seen_changes(
        &self,
        pair: &PairConfig,
        known: bool,
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
        let mapped: HashMap<&Href, &Etag> =
            mappings.iter().map(|m| (&m.a_href, &m.a_etag)).collect();
        let moved = listed
            .iter()
            .filter(|(h, e)| mapped.get(*h) != Some(*e))
            .count();
        let gone = mapped.keys().filter(|h| !listed.contains_key(*h)).count();
        Ok((moved + gone) as u64)
    }

    /// Saves each side's new sync token; an unchanged one (a quiet calendar) needs no write.
    async fn save_watermarks(
        &self,
        pair: &PairConfig,
        a: (&Option<SyncToken>, &Option<SyncToken>),
        b: (&Option<SyncToken>, &Option<SyncToken>),
    ) -> Result<(), StateError> {
        for (side, (old, new)) in [(Side::A, a), (Side::B, b)] {
            if old != new {
                self.state
                    .set_watermark(&pair.id, side, new.as_ref())
                    .await?;
            }
        }
        Ok(())
    }

    /// The one lease guard of the writers (sync, dedupe, repair): takes `calendar`'s lease (none
    /// for a dry run, which writes nothing), renews it while `work` runs and releases it after.
    /// `Ok(Err(locked))` when another holder has it: the caller skips, never waits.
    pub(crate) async fn under_lease<T>(
        &self,
        calendar: &str,
        kind: LeaseKind,
        dry_run: bool,
        work: impl AsyncFnOnce(Option<&Lease>) -> Result<T, StateError>,
    ) -> Result<Result<T, Locked>, StateError> {
        let lease = if dry_run {
            None
        } else {
            match self.take_lease(calendar, kind).await? {
                Ok(lease) => Some(lease),
                Err(locked) => return Ok(Err(locked)),
            }
        };
        let out = self.renewing(lease.as_ref(), work(lease.as_ref())).await;
        if let Some(lease) = &lease {
            self.state.release_lease(lease).await?;
        }
        out.map(Ok)
    }

    /// Runs `work` while renewing `lease` every third of its ttl, so work that outlasts one ttl
    /// keeps it. A lost lease is only logged here: the writes check it themselves.
    async fn renewing<T>(
        &self,
        lease: Option<&Lease>,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let renew = async {
            let Some(lease) = lease else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(self.lease_ttl / 3).await;
                match self.state.renew_lease(lease, self.lease_ttl).await {
                    Ok(true) => {}
                    Ok(false) => warn!(calendar = %lease.calendar, "the lease was lost"),
                    Err(e) => warn!(error = %e, "renewing the lease failed"),
                }
            }
        };
        tokio::select! {
            r = work => r,
            never = renew => never,
        }
    }

    /// Takes `calendar`'s lease for this process. A holder on this machine that no longer runs
    /// (killed mid-pass) is not waited out.
    pub async fn take_lease(
        &self,
        calendar: &str,
        kind: LeaseKind,
    ) -> Result<Result<Lease, Locked>, StateError> {
        match self
            .state
            .acquire_lease(calendar, &self.holder, kind, self.lease_ttl)
            .await?
        {
            Ok(lease) => Ok(Ok(lease)),
            Err(locked) if crate::domain::lease::holder_is_gone(&locked.holder) => {
                match self
                    .state
                    .take_over_lease(calendar, &locked.holder, &self.holder, kind, self.lease_ttl)
                    .await?
                {
                    Some(lease) => {
                        info!(was = %locked.holder, calendar, "took over the lease of a process that is gone");
                        Ok(Ok(lease))
                    }
                    None => Ok(Err(locked)),
                }
            }
            Err(locked) => Ok(Err(locked)),
        }
    }

    async fn pass(
        &self,
        pair: &PairConfig,
        opts: PassOptions,
        report: &mut PairReport,
        lease: Option<&Lease>,
    ) -> Result<(), PassError> {
        let src = self.store(&pair.source.server)?;
        let tgt = self.store(&pair.target.server)?;
        let (scal, tcal) = (&pair.source.path, &pair.target.path);
        // Mappings recorded for other calendars (the config changed) do not apply; a real pass
        // drops them in `ensure_pair`, a dry run only ignores them.
        let stored = self.state.pair_calendars(&pair.id).await?;
        let current = (pair.source.to_string(), pair.target.to_string());
        let known = stored.as_ref() == Some(&current);
        let (token, target_token) = if opts.full || !known {
            (None, None)
        } else {
            (
                self.state.watermark(&pair.id, Side::A).await?,
                self.state.watermark(&pair.id, Side::B).await?,
            )
        };

        // The two sides are usually different servers: ask both at once, and read what the
        // state knows about the pair meanwhile. A side without a watermark (first pass, resync,
        // changed calendars) is checked to be a calendar along with its listing, and a failed
        // check is the clearer error; a side with one was checked before, and its listing fails
        // with the URL and status if the calendar is gone. An unchanged calendar costs one request.
        let source_side = async {
            let check = async {
                if token.is_none() {
                    src.check_calendar(scal).await
                } else {
                    Ok(())
                }
            };
            let (check, changes) = tokio::join!(check, src.changes(scal, token.as_ref()));
            check.and(changes)
        };
        let target_side = async {
            let check = async {
                if target_token.is_none() {
                    tgt.check_calendar(tcal).await
                } else {
                    Ok(())
                }
            };
            let (check, changes) = tokio::join!(check, tgt.changes(tcal, target_token.as_ref()));
            check.and(changes)
        };
        let pending_read = async {
            if known {
                self.state.pendings(&pair.id).await
            } else {
                Ok(Vec::new())
            }
        };
        let (changes, target_changes, pending) =
            tokio::join!(source_side, target_side, pending_read);
        let pending = pending?;
        let changes = changes.map_err(named(&*src, "source", &pair.source))?;
        let target_changes = match target_changes {
            Ok(c) => c,
            Err(e) => {
                // The source changes just listed wait for the target: they are backlog.
                if !opts.dry_run {
                    report.backlog = Some(self.seen_changes(pair, known, &changes).await?);
                }
                return Err(named(&*tgt, "target", &pair.target)(e));
            }
        };
        let now = (self.clock)();
        let window_key = self.window.key();

        // Nothing moved on either side since the last pass (the usual case for a service passing
        // thousands of pairs): unless something is due, there is nothing to read or plan.
        let quiet = known
            && !opts.full
            && !changes.complete
            && !target_changes.complete
            && changes.changed.is_empty()
            && changes.deleted.is_empty()
            && target_changes.changed.is_empty()
            && target_changes.deleted.is_empty()
            && pending.is_empty();
        // Rows read for that check are used again below rather than read twice.
        let mut remembered = None;
        if quiet {
            let (due, held) = tokio::join!(
                self.state
                    .outside_window(&pair.id, now.timestamp(), &window_key, false),
                self.state.quarantine_rows(&pair.id)
            );
            let (due, held) = (due?, held?);
            if due.is_empty() && held.iter().all(|q| q.quarantined && !q.retry) {
                report.unchanged = self.state.mapping_count(&pair.id).await?;
                // Quarantined items are source changes not in the target.
                report.backlog = Some(held.len() as u64);
                if opts.dry_run {
                    return Ok(());
                }
                self.save_watermarks(
                    pair,
                    (&token, &changes.token),
                    (&target_token, &target_changes.token),
                )
                .await?;
                return Ok(());
            }
            remembered = Some((due, held));
        }
        let (prior, mut index) = if known {
            let (mappings, index) = tokio::join!(
                self.state.mappings(&pair.id),
                self.state.target_index(&pair.id)
            );
            let prior: Prior = mappings?
                .into_iter()
                .map(|m| (m.a_href.clone(), m))
                .collect();
            (prior, index?)
        } else {
            (Prior::new(), HashMap::new())
        };

        let mut source = SourceSnapshot {
            items: changes
                .changed
                .into_iter()
                .filter(|v| scal.contains(&v.href))
                .map(|v| SourceItem {
                    href: v.href,
                    etag: v.etag,
                    content: Content::NotFetched,
                })
                .collect(),
            deleted: changes.deleted,
            complete: changes.complete,
            waiting: 0,
        };
        // Source items left outside the window earlier. Due ones (their time has come, or the
        // window setting changed) are read again: an incremental listing will not mention them,
        // so they are read as if listed. A complete listing lists whatever still exists (a
        // remembered item it does not list is gone), and lists the ones not yet due as well:
        // those are not read again while their etag holds.
        // Items quarantined after repeated permanent failures are held the same way while
        // their etag holds; one an operator asked to retry (or not yet quarantined) is read.
        let mut outside_gone: Vec<Href> = Vec::new();
        let mut injected: HashSet<Href> = HashSet::new();
        let mut quarantine_rows = Vec::new();
        if known {
            // A quiet-looking pass read these already (its listing was incremental, as here).
            let (outside_rows, q_rows) = match remembered {
                Some(rows) => rows,
                None => {
                    let (o, q) = tokio::join!(
                        self.state.outside_window(
                            &pair.id,
                            now.timestamp(),
                            &window_key,
                            source.complete
                        ),
                        self.state.quarantine_rows(&pair.id)
                    );
                    (o?, q?)
                }
            };
            quarantine_rows = q_rows;
            // (href, etag, held while listed at this etag, quarantined)
            let rows: Vec<(Href, Etag, bool, bool)> = outside_rows
                .into_iter()
                .map(|(h, e, due)| (h, e, !due, false))
                .chain(quarantine_rows.iter().map(|q| {
                    let held = q.quarantined && !q.retry;
                    (q.href.clone(), q.etag.clone(), held, held)
                }))
                .collect();
            if !rows.is_empty() {
                let listed: HashMap<&Href, &Etag> =
                    source.items.iter().map(|s| (&s.href, &s.etag)).collect();
                let deleted: HashSet<&Href> = source.deleted.iter().collect();
                let in_flight: HashSet<&Href> = pending.iter().map(|p| &p.a_href).collect();
                let mut waiting: HashSet<Href> = HashSet::new();
                let mut inject = Vec::new();
                for (href, etag, held, quarantined) in rows {
                    match listed.get(&href) {
                        // Held and unchanged: a new item is left out, a changed mapped one is
                        // listed at its mapped etag (so it counts as unchanged).
                        Some(now_etag)
                            if held && **now_etag == etag && !in_flight.contains(&href) =>
                        {
                            report.quarantined += u64::from(quarantined);
                            waiting.insert(href);
                        }
                        Some(_) => {}
                        None if deleted.contains(&href) => {}
                        None if source.complete => outside_gone.push(href),
                        None if held => {}
                        None => {
                            if !injected.contains(&href) {
                                inject.push((href, etag));
                            }
                        }
                    }
                }
                source.items.retain_mut(|s| {
                    match (waiting.contains(&s.href), prior.get(&s.href)) {
                        (false, _) => true,
                        (true, None) => false,
                        (true, Some(p)) => {
                            s.etag = p.a_etag.clone();
                            true
                        }
                    }
                });
                source.waiting = waiting.len();
                for (href, etag) in inject {
                    if injected.insert(href.clone()) {
                        source.items.push(SourceItem {
                            href,
                            etag,
                            content: Content::NotFetched,
                        });
                    }
                }
            }
        }
        let target_etags = target_view(
            &prior,
            target_changes.changed,
            &target_changes.deleted,
            target_changes.complete,
        );
        let (src_fetch, mut tgt_fetch) =
            sync::fetch_lists(&source, &target_etags, &prior, opts.full);
        // Target items that are not copies of ours are read once per etag, for their identity.
        let mapped: HashSet<&Href> = prior.values().map(|m| &m.b_href).collect();
        let mut gone: Vec<Href> = index
            .keys()
            .filter(|h| {
                mapped.contains(h)
                    || if target_changes.complete {
                        !target_etags.contains_key(*h)
                    } else {
                        target_changes.deleted.contains(h)
                    }
            })
            .cloned()
            .collect();
        let to_index: HashSet<Href> = target_etags
            .iter()
            .filter(|(h, e)| {
                !mapped.contains(h) && index.get(*h).is_none_or(|(known, _)| known != *e)
            })
            .map(|(h, _)| h.clone())
            .collect();
        tgt_fetch.extend(
            to_index
                .iter()
                .filter(|h| !tgt_fetch.contains(h))
                .cloned()
                .collect::<Vec<_>>(),
        );
        debug!(
            source = src_fetch.len(),
            target = tgt_fetch.len(),
            "reading changed items"
        );

        // Source: parse, rewrite for the target org, hash.
        // The etag is the one read with the body, when the read succeeded.
        let mut fetched_src: HashMap<Href, (Option<Etag>, Content<Arc<Prepared>>)> =
            HashMap::with_capacity(src_fetch.len());
        // Both sides' reads go out at once.
        let (src_read, tgt_read) = tokio::join!(
            fetch_all(&*src, scal, &src_fetch),
            fetch_all(&*tgt, tcal, &tgt_fetch)
        );
        let src_read = src_read.map_err(named(&*src, "source", &pair.source))?;
        let tgt_read = tgt_read.map_err(named(&*tgt, "target", &pair.target))?;
        for (href, res) in src_read {
            let entry = match res {
                Ok(r) => (Some(r.etag), self.prepare(&r.data, now)),
                // A remembered item deleted since: nothing to sync, nothing to remember.
                Err(e) if e.kind == ErrorKind::NotFound && injected.contains(&href) => {
                    outside_gone.push(href);
                    continue;
                }
                Err(e) => (None, Content::Broken(e.kind, format!("cannot read: {e}"))),
            };
            fetched_src.insert(href, entry);
        }
        if !outside_gone.is_empty() && !injected.is_empty() {
            let gone: HashSet<&Href> = outside_gone.iter().collect();
            source.items.retain(|s| !gone.contains(&s.href));
        }
        for s in &mut source.items {
            if let Some((etag, content)) = fetched_src.remove(&s.href) {
                s.etag = etag.unwrap_or_else(|| s.etag.clone());
                s.content = content;
            }
        }
        // Mappings an incremental listing did not mention but whose target copy needs restoring.
        for (href, (etag, content)) in fetched_src {
            let Some(etag) = etag.or_else(|| prior.get(&href).map(|p| p.a_etag.clone())) else {
                continue;
            };
            source.items.push(SourceItem {
                href,
                etag,
                content,
            });
        }

        // Target: hash what is there now.
        let mut target: HashMap<Href, TargetItem> = target_etags
            .into_iter()
            .map(|(href, etag)| {
                (
                    href.clone(),
                    TargetItem {
                        href,
                        etag,
                        content: Content::NotFetched,
                    },
                )
            })
            .collect();
        let mut indexed: Vec<(Href, Etag, Option<IdentityKey>)> = Vec::new();
        for (href, res) in tgt_read {
            let Some(t) = target.get_mut(&href) else {
                continue;
            };
            match res {
                Ok(r) => {
                    let parsed = Item::parse(&r.data);
                    if to_index.contains(&href) {
                        indexed.push((
                            href.clone(),
                            r.etag.clone(),
                            parsed.as_ref().ok().map(Item::identity),
                        ));
                    }
                    t.etag = r.etag;
                    t.content = match parsed {
                        Ok(item) => Content::Fetched(item.content_hash()),
                        Err(e) => Content::Broken(ErrorKind::InvalidData, e.to_string()),
                    };
                }
                Err(e) if e.kind == ErrorKind::NotFound => {
                    target.remove(&href);
                    gone.push(href);
                }
                Err(e) => t.content = Content::Broken(e.kind, e.to_string()),
            }
        }
        for h in &gone {
            index.remove(h);
        }
        for (h, e, i) in &indexed {
            index.insert(h.clone(), (e.clone(), i.clone()));
        }
        // Candidates for adoption: unmapped target items by identity.
        let mut adoptable: HashMap<IdentityKey, Vec<(Href, Etag)>> = HashMap::new();
        for (href, (etag, identity)) in &index {
            if let Some(identity) = identity
                && !mapped.contains(href)
            {
                adoptable
                    .entry(identity.clone())
                    .or_default()
                    .push((href.clone(), etag.clone()));
            }
        }

        let plan = sync::plan(
            &source,
            &target,
            &prior,
            &pending,
            PlanOptions {
                force_delete: opts.force_delete,
            },
        )
        .map_err(|e| PassError::Pair(ErrorKind::Permanent, e.to_string()))?;
        report.unchanged = plan.unchanged;

        // One adoption candidate per create, claimed here so parallel creates never share one.
        let mut adopt_for: HashMap<Href, (Href, Etag)> = HashMap::new();
        for a in &plan.actions {
            if let Action::Create {
                source_href, item, ..
            } = a
                && let Some(c) = adoptable.get_mut(&item.identity).and_then(Vec::pop)
            {
                adopt_for.insert(source_href.clone(), c);
            }
        }
        // With `extras = "delete"`, target items that did not come from the source go too (not
        // the ones about to be adopted, nor copies of creates still in flight, nor copies of
        // source items outside the window: those did come from the source).
        let extras: Vec<(Href, Etag)> = if self.extras == Extras::Delete {
            let in_flight: HashSet<&Href> = pending.iter().map(|p| &p.b_href).collect();
            let mut outside: HashSet<IdentityKey> = HashSet::new();
            if adoptable.values().any(|c| !c.is_empty()) {
                outside.extend(self.state.outside_window_identities(&pair.id).await?);
                outside.extend(plan.actions.iter().filter_map(|a| match a {
                    Action::Defer { identity, .. } => Some(identity.clone()),
                    _ => None,
                }));
            }
            let unreadable = index
                .iter()
                .filter(|(h, (_, i))| i.is_none() && !mapped.contains(h))
                .map(|(h, (e, _))| (h.clone(), e.clone()));
            adoptable
                .into_iter()
                .filter(|(identity, _)| !outside.contains(identity))
                .flat_map(|(_, copies)| copies)
                .chain(unreadable)
                .filter(|(h, _)| !in_flight.contains(h))
                .collect()
        } else {
            Vec::new()
        };

        if opts.dry_run {
            for a in &plan.actions {
                count_planned(report, a);
                report.plan.push(describe(a, tcal));
            }
            for (href, _) in &extras {
                report.deleted += 1;
                report.plan.push(PlannedAction {
                    action: "delete",
                    source_href: String::new(),
                    target_href: Some(href.to_string()),
                    detail: Some("not from the source (extras = \"delete\")".into()),
                });
            }
            return Ok(());
        }

        self.state
            .update_target_index(&pair.id, &indexed, &gone)
            .await?;

        let mut bookkeeping: Vec<Mapping> = Vec::new();
        let mut forget: Vec<Href> = Vec::new();
        let mut settled: Vec<Pending> = Vec::new();
        let mut outside: Vec<OutsideWindow> = Vec::new();
        let mut removals = Vec::new();
        let mut writes = Vec::new();
        for action in plan.actions {
            match action {
                Action::ClearPending { pending } => settled.push(pending),
                Action::Refresh { mapping } => bookkeeping.push(mapping),
                Action::Forget { source_href } => forget.push(source_href),
                Action::Defer {
                    source_href,
                    source_etag,
                    identity,
                    enters,
                    forget: drop_mapping,
                } => {
                    report.outside_window += 1;
                    if drop_mapping {
                        forget.push(source_href.clone());
                    }
                    outside.push(OutsideWindow {
                        a_href: source_href,
                        a_etag: source_etag,
                        identity,
                        enters: enters.map(|t| t.timestamp()),
                    });
                }
                Action::Skip {
                    source_href,
                    kind,
                    reason,
                } => {
                    report.fail_item(&source_href, kind, format!("source item skipped: {reason}"));
                }
                a @ (Action::Delete { .. } | Action::DeleteOrphan { .. }) => {
                    removals.push(Write::Plain(a))
                }
                Action::Create {
                    source_href,
                    source_etag,
                    item,
                } => {
                    let adopt = adopt_for.remove(&source_href);
                    writes.push(Write::Create {
                        source_href,
                        source_etag,
                        item,
                        adopt,
                    });
                }
                a @ Action::Update { .. } => writes.push(Write::Plain(a)),
            }
        }
        removals.extend(
            extras
                .into_iter()
                .map(|(href, etag)| Write::DeleteExtra { href, etag }),
        );
        let mut extras_gone = Vec::new();
        // Removals first, so a create that reuses a name (a source item moved to a new href)
        // never meets the copy it replaces; within each phase, up to the target's parallelism.
        let par = tgt.parallelism().max(1);
        // A locked, moving, throttling or refusing target stops the pass: every further write
        // would fail the same way. What is done stays recorded; the rest waits for the next pass.
        let halted = std::sync::atomic::AtomicBool::new(false);
        let mut halt: Option<(ErrorKind, String)> = None;
        let mut left = 0u64;
        let lease = lease.expect("a pass that writes holds the target calendar's lease");
        // Fencing: every write first checks that the lease is still ours. A holder whose lease
        // was taken over (it stalled past its expiry, say) writes nothing more.
        let lost: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let progress = self
            .progress
            .as_ref()
            .filter(|_| (opts.full || prior.is_empty()) && removals.len() + writes.len() > 0);
        if let Some(p) = progress {
            p.start(pair.id.as_str(), (removals.len() + writes.len()) as u64);
        }
        for phase in [removals, writes] {
            let mut done = stream::iter(phase)
                .map(|a| {
                    let (halted, tgt, lost) = (&halted, &tgt, &lost);
                    async move {
                        // A stopping service lets writes in flight finish and starts no more.
                        if halted.load(std::sync::atomic::Ordering::Relaxed)
                            || self.stopping.load(std::sync::atomic::Ordering::Relaxed)
                        {
                            return Ok(Done::NotRun);
                        }
                        if !self.state.lease_is_current(lease).await? {
                            halted.store(true, std::sync::atomic::Ordering::Relaxed);
                            let now = self.state.lease(&lease.calendar).await?;
                            lost.lock().expect("not poisoned").get_or_insert(match now {
                                Some(l) if l.token != lease.token => {
                                    format!("{} (token {}) took over the lease", l.holder, l.token)
                                }
                                _ => "the lease expired".to_string(),
                            });
                            return Ok(Done::NotRun);
                        }
                        self.execute(pair, &**tgt, tcal, a, lease).await
                    }
                })
                .buffer_unordered(par);
            while let Some(outcome) = done.next().await {
                if let Some(p) = progress {
                    p.advance(pair.id.as_str());
                }
                match outcome? {
                    Done::Written(how) => match how {
                        Written::Created => report.created += 1,
                        Written::Updated => report.updated += 1,
                        Written::Adopted => report.adopted += 1,
                        Written::Unchanged => report.unchanged += 1,
                    },
                    Done::Deleted => report.deleted += 1,
                    Done::ExtraDeleted(href) => {
                        report.deleted += 1;
                        extras_gone.push(href);
                    }
                    Done::Settled { pending, removed } => {
                        report.deleted += u64::from(removed);
                        settled.push(pending);
                    }
                    Done::Failed { href, kind, reason } => {
                        if halts_pass(kind) && halt.is_none() {
                            halted.store(true, std::sync::atomic::Ordering::Relaxed);
                            halt = Some((kind, reason.clone()));
                        }
                        report.fail_item(&href, kind, reason);
                    }
                    Done::NotRun => left += 1,
                }
            }
        }
        if let Some(p) = progress {
            p.finish(pair.id.as_str());
        }
        // Every source change this pass saw and did not apply: failed, skipped, quarantined, or
        // left when the pass stopped early.
        report.backlog = Some(report.failed + left + report.quarantined);
        let lost = lost.into_inner().expect("not poisoned");
        self.state.apply(&pair.id, &bookkeeping, &forget).await?;
        self.state.clear_pendings(&pair.id, &settled).await?;
        self.state
            .update_target_index(&pair.id, &[], &extras_gone)
            .await?;
        // Permanent failures of source items count towards quarantine; items read and synced
        // (or gone) leave it. Unless the pass stopped early: then what was not written is unknown.
        let source_versions: HashMap<&Href, &SourceItem> =
            source.items.iter().map(|s| (&s.href, s)).collect();
        let mut faults = Vec::new();
        let mut failed_sources: HashSet<Href> = HashSet::new();
        for f in &report.failures {
            let Ok(href) = Href::new(&f.href) else {
                continue;
            };
            if let Some(s) = source_versions.get(&href) {
                failed_sources.insert(href.clone());
                if f.permanent {
                    let identity = match &s.content {
                        Content::Fetched(p) => Some(p.identity.clone()),
                        _ => prior.get(&href).map(|m| m.identity.clone()),
                    };
                    faults.push(crate::domain::pairstate::ItemFault {
                        href,
                        etag: s.etag.clone(),
                        identity,
                        error: f.reason.clone(),
                    });
                }
            }
        }
        let mut synced: Vec<Href> = outside_gone.clone();
        let cut_short = halt.is_some() || left > 0;
        if !cut_short {
            synced.extend(
                src_fetch
                    .iter()
                    .chain(&injected)
                    .filter(|h| !failed_sources.contains(*h))
                    .cloned(),
            );
            synced.extend(source.deleted.iter().cloned());
        }
        if !faults.is_empty() || !quarantine_rows.is_empty() {
            let newly = self
                .state
                .record_item_faults(&pair.id, &faults, &synced)
                .await?;
            for f in &mut report.failures {
                if newly.iter().any(|h| h.as_str() == f.href) {
                    f.reason.push_str(&format!(
                        "; quarantined after {} failures: skipped until it changes in the source or `tandem quarantine retry`",
                        crate::domain::pairstate::QUARANTINE_AFTER
                    ));
                }
            }
        }
        // What was read and is now written, in step or deleted needs no remembering; after a
        // failure only what is known gone is forgotten (the rest is read again next pass).
        if report.failed == 0 && !cut_short {
            outside_gone.extend(src_fetch);
            outside_gone.extend(injected);
            outside_gone.extend(source.deleted.iter().cloned());
        }
        self.state
            .update_outside_window(&pair.id, &outside, &outside_gone, &window_key)
            .await?;
        if let Some((kind, reason)) = halt {
            let store = tgt.describe();
            return Err(PassError::Pair(
                kind,
                format!(
                    "target calendar {} ({store}): {reason}; pass stopped, {left} change(s) left for the next pass",
                    pair.target
                ),
            ));
        }
        if let Some(why) = lost {
            report.busy = true;
            return Err(PassError::Pair(
                ErrorKind::Transient,
                format!(
                    "target calendar {}: {why}; stopped writing, {left} change(s) left for the next pass",
                    pair.target
                ),
            ));
        }
        if left > 0 {
            report.interrupted = true;
            return Err(PassError::Pair(
                ErrorKind::Transient,
                format!("interrupted: tandem is stopping; {left} change(s) left for the next pass"),
            ));
        }

        // The watermark moves only when every change it covers is recorded.
        if report.failed == 0 {
            // The target's token was taken before this pass wrote: our own writes show up next time with the etags
            // just recorded (a no-op), and nobody else's edit in between is missed.
            self.save_watermarks(
                pair,
                (&token, &changes.token),
                (&target_token, &target_changes.token),
            )
            .await?;
        }
        Ok(())
    }

    pub(crate) fn prepare(
        &self,
        data: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Content<Arc<Prepared>> {
        match Item::parse(data) {
            Ok(mut item) => {
                item.rewrite(&self.rewriter);
                item.mark_client_scheduled();
                // The recurrence expander is third-party code: if it panics on some input, the
                // item counts as inside (synced) rather than taking the pass down.
                let fit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.window.fit(&item, now)
                }))
                .unwrap_or(crate::domain::window::Fit::Inside);
                Content::Fetched(Arc::new(Prepared::new(item).with_fit(fit)))
            }
            Err(e) => Content::Broken(
                ErrorKind::InvalidData,
                format!("invalid iCalendar data: {e}"),
            ),
        }
    }

    /// Performs one remote write and records its mapping right after it succeeded.
    async fn execute(
        &self,
        pair: &PairConfig,
        tgt: &dyn CalendarStore,
        tcal: &CalendarPath,
        write: Write,
        _lease: &Lease,
    ) -> Result<Done, StateError> {
        let action = match write {
            Write::Create {
                source_href,
                source_etag,
                item,
                adopt,
            } => {
                let adopted = match adopt {
                    Some((href, etag)) => {
                        self.adopt(tgt, tcal, &source_href, &source_etag, &item, &href, &etag)
                            .await
                    }
                    None => Ok(None),
                };
                let written = match adopted {
                    Ok(Some(done)) => Ok(done),
                    Ok(None) => {
                        self.create(pair, tgt, tcal, &source_href, &source_etag, &item)
                            .await?
                    }
                    Err(e) => Err(e),
                };
                return self.record(pair, written, source_href).await;
            }
            Write::DeleteExtra { href, etag } => {
                return Ok(match delete(tgt, tcal, &href, &etag).await {
                    Ok(()) => Done::ExtraDeleted(href),
                    Err(e) => Done::Failed {
                        href,
                        kind: e.kind,
                        reason: format!(
                            "deleting an item not from the source failed ({}): {e}",
                            e.kind
                        ),
                    },
                });
            }
            Write::Plain(a) => a,
        };
        let written = match action {
            Action::Create {
                source_href,
                source_etag,
                item,
            } => (
                self.create(pair, tgt, tcal, &source_href, &source_etag, &item)
                    .await?,
                source_href,
            ),
            Action::Update {
                source_href,
                source_etag,
                target_href,
                target_etag,
                item,
            } => (
                self.update(
                    pair,
                    tgt,
                    tcal,
                    &source_href,
                    &source_etag,
                    &target_href,
                    &target_etag,
                    &item,
                )
                .await?,
                source_href,
            ),
            Action::Delete {
                source_href,
                target_href,
                target_etag,
            } => {
                return match delete(tgt, tcal, &target_href, &target_etag).await {
                    Ok(()) => {
                        self.state.delete_mapping(&pair.id, &source_href).await?;
                        Ok(Done::Deleted)
                    }
                    Err(e) => Ok(Done::Failed {
                        href: target_href,
                        kind: e.kind,
                        reason: format!("delete failed ({}): {e}", e.kind),
                    }),
                };
            }
            Action::DeleteOrphan { pending } => {
                return Ok(match delete_orphan(tgt, tcal, &pending).await {
                    Ok(removed) => Done::Settled { pending, removed },
                    Err(e) => Done::Failed {
                        href: pending.b_href,
                        kind: e.kind,
                        reason: format!(
                            "removing a copy left by an interrupted create failed ({}): {e}",
                            e.kind
                        ),
                    },
                });
            }
            other => unreachable!("not a remote write: {other:?}"),
        };
        self.record(pair, written.0, written.1).await
    }

    /// Records the mapping of a successful write right away, or reports the failure.
    async fn record(
        &self,
        pair: &PairConfig,
        written: Result<(Mapping, Written), StoreError>,
        source_href: Href,
    ) -> Result<Done, StateError> {
        match written {
            Ok((mapping, how)) => {
                self.state.put_mapping(&pair.id, &mapping).await?;
                Ok(Done::Written(how))
            }
            Err(e) => Ok(Done::Failed {
                href: source_href,
                kind: e.kind,
                reason: format!("write to target failed ({}): {e}", e.kind),
            }),
        }
    }

    /// Takes over a target item that is the same meeting (a repair assistant's copy, one made by
    /// hand, or one left by a crashed run): updates it with `If-Match` if its content differs,
    /// keeping its UID spelling. `None` if it is gone or no longer the same meeting.
    #[allow(clippy::too_many_arguments)]
    async fn adopt(
        &self,
        tgt: &dyn CalendarStore,
        tcal: &CalendarPath,
        source_href: &Href,
        source_etag: &Etag,
        item: &Prepared,
        href: &Href,
        etag: &Etag,
    ) -> Result<Option<(Mapping, Written)>, StoreError> {
        let Some(now) = read_one(tgt, tcal, href).await? else {
            return Ok(None);
        };
        let Ok(there) = Item::parse(&now.data) else {
            return Ok(None);
        };
        if there.identity() != item.identity {
            return Ok(None);
        }
        debug!(href = %href, was = %etag, "adopting the target's copy of this meeting");
        let etag = if there.content_hash() == item.hash {
            now.etag
        } else {
            let mut ours = item.item.clone();
            ours.set_uid(there.uid());
            tgt.update(href, &now.etag, &ours.to_ics()).await?
        };
        let mapping = Mapping {
            a_href: source_href.clone(),
            a_etag: source_etag.clone(),
            b_href: href.clone(),
            b_etag: etag,
            identity: item.identity.clone(),
            hash: item.hash,
        };
        Ok(Some((mapping, Written::Adopted)))
    }

    /// `If-None-Match: *` create; if the name is taken by a copy of this very item (a crashed
    /// earlier run), adopt it; if by something else, use a fresh name.
    ///
    /// Each create is first noted as pending in the state, so a copy written just before a crash
    /// is found again (adopted, or deleted if its source item is gone) by the next pass.
    pub(crate) async fn create(
        &self,
        pair: &PairConfig,
        tgt: &dyn CalendarStore,
        tcal: &CalendarPath,
        source_href: &Href,
        source_etag: &Etag,
        item: &Prepared,
    ) -> Result<Result<(Mapping, Written), StoreError>, StateError> {
        let text = item.item.to_ics();
        let name = target_name(item.item.uid());
        let mapping = |v: ItemVersion| Mapping {
            a_href: source_href.clone(),
            a_etag: source_etag.clone(),
            b_href: v.href,
            b_etag: v.etag,
            identity: item.identity.clone(),
            hash: item.hash,
        };
        let pending = |name: &str| Pending {
            a_href: source_href.clone(),
            b_href: tcal.join(name),
            identity: item.identity.clone(),
        };
        self.state.add_pending(&pair.id, &pending(&name)).await?;
        match tgt.create(tcal, &name, &text).await {
            Ok(v) => return Ok(Ok((mapping(v), Written::Created))),
            Err(e) if e.kind == ErrorKind::PreconditionFailed => {}
            Err(e) => return self.refused_create(pair, pending(&name), e).await,
        }
        // The name is taken: by our own copy from an interrupted run (adopt it), or by another item.
        let href = tcal.join(&name);
        let adopted = async {
            if let Some(existing) = read_one(tgt, tcal, &href).await?
                && let Ok(there) = Item::parse(&existing.data)
                && there.identity() == item.identity
            {
                let etag = if there.content_hash() == item.hash {
                    existing.etag
                } else {
                    tgt.update(&href, &existing.etag, &text).await?
                };
                return Ok(Some(mapping(ItemVersion {
                    href: href.clone(),
                    etag,
                })));
            }
            Ok::<_, StoreError>(None)
        };
        match adopted.await {
            Ok(Some(m)) => return Ok(Ok((m, Written::Adopted))),
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        let stem = name.trim_end_matches(".ics");
        let fresh = format!("{stem}-{}.ics", uuid::Uuid::new_v4().simple());
        self.state.add_pending(&pair.id, &pending(&fresh)).await?;
        match tgt.create(tcal, &fresh, &text).await {
            Ok(v) => Ok(Ok((mapping(v), Written::Created))),
            Err(e) => self.refused_create(pair, pending(&fresh), e).await,
        }
    }

    /// A create that failed. A permanent refusal (a 4xx such as 413) wrote nothing, so its pending
    /// row goes: a pending create is never held back, and the item could not be quarantined. A
    /// failure that may have written (a timeout, a 5xx) keeps the row for the next pass to settle.
    async fn refused_create(
        &self,
        pair: &PairConfig,
        pending: Pending,
        e: StoreError,
    ) -> Result<Result<(Mapping, Written), StoreError>, StateError> {
        if e.kind.is_permanent() {
            self.state.clear_pendings(&pair.id, &[pending]).await?;
        }
        Ok(Err(e))
    }

    /// `If-Match` update; on 412 re-read the target copy and decide again (once).
    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        pair: &PairConfig,
        tgt: &dyn CalendarStore,
        tcal: &CalendarPath,
        source_href: &Href,
        source_etag: &Etag,
        target_href: &Href,
        target_etag: &Etag,
        item: &Prepared,
    ) -> Result<Result<(Mapping, Written), StoreError>, StateError> {
        let text = item.item.to_ics();
        let mapping = |etag: Etag| Mapping {
            a_href: source_href.clone(),
            a_etag: source_etag.clone(),
            b_href: target_href.clone(),
            b_etag: etag,
            identity: item.identity.clone(),
            hash: item.hash,
        };
        match tgt.update(target_href, target_etag, &text).await {
            Ok(etag) => return Ok(Ok((mapping(etag), Written::Updated))),
            Err(e) if e.kind == ErrorKind::PreconditionFailed => {}
            Err(e) if e.kind == ErrorKind::NotFound => {
                return self
                    .create(pair, tgt, tcal, source_href, source_etag, item)
                    .await;
            }
            Err(e) => return Ok(Err(e)),
        }
        debug!(href = %target_href, "target changed underneath; re-reading");
        let now = match read_one(tgt, tcal, target_href).await {
            Ok(None) => {
                return self
                    .create(pair, tgt, tcal, source_href, source_etag, item)
                    .await;
            }
            Ok(Some(now)) => now,
            Err(e) => return Ok(Err(e)),
        };
        if Item::parse(&now.data).is_ok_and(|i| i.content_hash() == item.hash) {
            return Ok(Ok((mapping(now.etag), Written::Unchanged)));
        }
        // One-way: the source is the truth; overwrite only the version just read.
        Ok(tgt
            .update(target_href, &now.etag, &text)
            .await
            .map(|etag| (mapping(etag), Written::Updated)))
    }
}

/// What `dedupe` found in one pair's target calendar.
#[derive(Debug, Default, serde::Serialize)]
pub struct DedupeReport {
    pub pair: String,
    pub dry_run: bool,
    /// Identities with more than one copy.
    pub groups: Vec<DedupeGroup>,
    /// Items that could not be read or parsed (left alone).
    pub skipped: Vec<String>,
    /// Why the pair could not be deduplicated at all.
    pub error: Option<String>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct DedupeGroup {
    pub identity: String,
    pub kept: Vec<String>,
    /// Deleted (or, in a dry run, to be deleted).
    pub deleted: Vec<String>,
    pub failed: Vec<String>,
}

impl DedupeReport {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.groups.iter().all(|g| g.failed.is_empty())
    }
}

/// A remote write to run; a create may carry a target item to adopt instead.
enum Write {
    Create {
        source_href: Href,
        source_etag: Etag,
        item: Arc<Prepared>,
        adopt: Option<(Href, Etag)>,
    },
    /// A target item that did not come from the source (`extras = "delete"`).
    DeleteExtra {
        href: Href,
        etag: Etag,
    },
    Plain(Action),
}

/// What one remote write came to, for the report.
enum Done {
    Written(Written),
    Deleted,
    ExtraDeleted(Href),
    /// A pending create resolved; `removed` if its orphan copy was deleted.
    Settled {
        pending: Pending,
        removed: bool,
    },
    Failed {
        href: Href,
        kind: ErrorKind,
        reason: String,
    },
    /// Not attempted: the pass stopped.
    NotRun,
}

/// Reads `hrefs` in multiget-sized batches, up to the store's parallelism at once.
pub(crate) async fn fetch_all(
    store: &dyn CalendarStore,
    cal: &CalendarPath,
    hrefs: &[Href],
) -> Result<Vec<store::Fetched>, StoreError> {
    let batches: Vec<Vec<store::Fetched>> =
        stream::iter(hrefs.chunks(FETCH_BATCH).map(<[Href]>::to_vec))
            .map(|batch| async move { store.fetch(cal, &batch).await })
            .buffer_unordered(store.parallelism().max(1))
            .try_collect()
            .await?;
    Ok(batches.into_iter().flatten().collect())
}

/// The target as the planner needs it: every copy with its etag.
///
/// From a complete listing, that is the listing. From changes since the last good pass, it is
/// the copies recorded then, with what changed or went since laid over them; target items that
/// did not come from the source and did not change are not needed.
fn target_view(
    prior: &Prior,
    changed: Vec<ItemVersion>,
    deleted: &[Href],
    complete: bool,
) -> HashMap<Href, Etag> {
    let mut view: HashMap<Href, Etag> = if complete {
        HashMap::with_capacity(changed.len())
    } else {
        prior
            .values()
            .map(|m| (m.b_href.clone(), m.b_etag.clone()))
            .collect()
    };
    for href in deleted {
        view.remove(href);
    }
    view.extend(changed.into_iter().map(|v| (v.href, v.etag)));
    view
}

/// Errors that say the calendar, not the item, is unavailable.
fn halts_pass(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Moving { .. } | ErrorKind::Throttled { .. } | ErrorKind::Unauthorized
    )
}

pub(crate) enum Written {
    Created,
    Updated,
    Adopted,
    /// A re-read found the target already equal.
    Unchanged,
}

/// `If-Match` delete; on 412 re-read and delete the version now there (the source item is gone).
async fn delete(
    tgt: &dyn CalendarStore,
    tcal: &CalendarPath,
    href: &Href,
    etag: &Etag,
) -> Result<(), StoreError> {
    match tgt.delete(href, etag).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind == ErrorKind::PreconditionFailed => match read_one(tgt, tcal, href).await?
        {
            None => Ok(()),
            Some(now) => tgt.delete(href, &now.etag).await,
        },
        Err(e) => Err(e),
    }
}

/// Deletes the copy a pending create left, if it is still that item. Returns whether it deleted.
async fn delete_orphan(
    tgt: &dyn CalendarStore,
    tcal: &CalendarPath,
    p: &Pending,
) -> Result<bool, StoreError> {
    let Some(now) = read_one(tgt, tcal, &p.b_href).await? else {
        return Ok(false);
    };
    let ours = Item::parse(&now.data).is_ok_and(|i| i.identity() == p.identity);
    if !ours {
        return Ok(false); // another item holds the name now; not ours to delete
    }
    // If-Match on the version whose identity was just checked.
    delete(tgt, tcal, &p.b_href, &now.etag).await.map(|()| true)
}

/// Reads one item; `None` if it does not exist.
async fn read_one(
    tgt: &dyn CalendarStore,
    cal: &CalendarPath,
    href: &Href,
) -> Result<Option<crate::store::Resource>, StoreError> {
    let mut got = tgt.fetch(cal, std::slice::from_ref(href)).await?;
    match got.pop() {
        Some((_, Ok(r))) => Ok(Some(r)),
        Some((_, Err(e))) if e.kind == ErrorKind::NotFound => Ok(None),
        Some((_, Err(e))) => Err(e),
        None => Ok(None),
    }
}

fn count_planned(report: &mut PairReport, a: &Action) {
    match a {
        Action::Create { .. } => report.created += 1,
        Action::Update { .. } => report.updated += 1,
        Action::Delete { .. } => report.deleted += 1,
        Action::Skip {
            source_href,
            kind,
            reason,
        } => report.fail_item(source_href, *kind, format!("source item skipped: {reason}")),
        Action::DeleteOrphan { .. } => report.deleted += 1,
        Action::Defer { .. } => report.outside_window += 1,
        Action::Refresh { .. } | Action::Forget { .. } | Action::ClearPending { .. } => {}
    }
}

fn describe(a: &Action, tcal: &CalendarPath) -> PlannedAction {
    let planned =
        |action, source: &Href, target: Option<&Href>, detail: Option<String>| PlannedAction {
            action,
            source_href: source.to_string(),
            target_href: target.map(Href::to_string),
            detail,
        };
    let summary = |p: &Prepared| p.item.summary().map(|s| format!("{s:?}"));
    match a {
        Action::Create {
            source_href, item, ..
        } => planned(
            "create",
            source_href,
            Some(&tcal.join(&target_name(item.item.uid()))),
            summary(item),
        ),
        Action::Update {
            source_href,
            target_href,
            item,
            ..
        } => planned("update", source_href, Some(target_href), summary(item)),
        Action::Delete {
            source_href,
            target_href,
            ..
        } => planned("delete", source_href, Some(target_href), None),
        Action::Refresh { mapping } => planned(
            "refresh",
            &mapping.a_href,
            Some(&mapping.b_href),
            Some("etags moved, content equal: record only".into()),
        ),
        Action::Forget { source_href } => planned(
            "forget",
            source_href,
            None,
            Some("gone on both sides: drop the mapping".into()),
        ),
        Action::DeleteOrphan { pending } => planned(
            "delete",
            &pending.a_href,
            Some(&pending.b_href),
            Some("copy left by an interrupted create; its source item is gone".into()),
        ),
        Action::ClearPending { pending } => planned(
            "settle",
            &pending.a_href,
            Some(&pending.b_href),
            Some("interrupted create already resolved: record only".into()),
        ),
        Action::Skip {
            source_href,
            reason,
            ..
        } => planned("skip", source_href, None, Some(reason.clone())),
        Action::Defer {
            source_href,
            enters,
            ..
        } => planned(
            "outside-window",
            source_href,
            None,
            Some(match enters {
                Some(t) => format!(
                    "outside the sync window: written once it enters it, {}",
                    t.format("%Y-%m-%d %H:%M UTC")
                ),
                None => "before the sync window: not written".into(),
            }),
        ),
    }
}
