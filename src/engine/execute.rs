//! The execute stage of a pass: the plan's remote writes, removals first, up to the receiving
//! store's parallelism. They go in chunks: one state transaction checks the leases and notes a
//! chunk's creates and updates as pending before any of them is sent (fencing), recording the
//! mappings of the writes finished meanwhile; each write checks its lease's local deadline just
//! before it is sent; the writes still unrecorded when a chunk's worth has finished are recorded
//! in one transaction. What each write came to is returned as data.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::collections::{HashMap, HashSet, VecDeque};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tracing::warn;

use super::base::{Engine, PassError};
use super::progress::Progress;
use super::report::ItemOp;
use super::write::{
    Dest, EXPIRED_HERE, Original, Writer, Written, delete, pending_create, pending_update,
};
use crate::domain::error::{ErrorKind, StoreResult};
use crate::domain::lease::Lease;
use crate::domain::mapping::{Mapping, Pending, Side};
use crate::domain::pair::Pair;
use crate::domain::types::{Etag, Href};
use crate::state::{State, StateError};
use crate::store::CalendarStore;
use crate::sync::Action;

/// What one remote write came to.
pub(super) enum Done {
    Written(Written),
    Deleted(Href),
    /// An item not from the other side (`extras = "delete"`).
    ExtraDeleted(Href),
    /// A pending create resolved; `removed` if its orphan copy was deleted.
    Settled {
        pending: Pending,
        removed: bool,
    },
    Failed {
        href: Href,
        op: ItemOp,
        kind: ErrorKind,
        error: String,
    },
    /// Not attempted: the pass stopped.
    NotRun,
}

/// A refusal that stopped the writes: the side refusing, and why.
pub(super) type Halt = (Side, ErrorKind, String);
/// A lease lost: whose side, and by whom or why.
pub(super) type Lost = (Side, String);

/// The execute stage's result.
pub(super) struct Executed {
    pub done: Vec<Done>,
    /// A calendar refused in a way every further write would meet (locked, moving,
    /// throttling, refusing our credentials): the first such refusal, with the side refusing.
    pub halt: Option<Halt>,
    /// A lease was taken over or expired: whose side, and by whom or why.
    pub lost: Option<Lost>,
    /// What the writes did to each side (A, B).
    pub wrote: [Wrote; 2],
}

/// What a pass's writes did to one side.
#[derive(Default)]
pub(super) struct Wrote {
    /// Every copy written or taken over, at the version the write left.
    pub versions: HashMap<Href, Etag>,
    /// Copies created: each must show in a listing from a token taken before.
    pub created: HashSet<Href>,
    /// Items deleted.
    pub deleted: HashSet<Href>,
}

impl Wrote {
    pub(super) fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.deleted.is_empty()
    }
}

/// The sides `actions` write. What a server does whatever tandem asks (see
/// `CalendarStore::warning_once`) is said first.
fn sides_written<'a>(
    pair: &Pair,
    stores: &[Arc<dyn CalendarStore>; 2],
    actions: impl Iterator<Item = &'a Action> + Clone,
) -> Vec<Side> {
    let written: Vec<Side> = [Side::A, Side::B]
        .into_iter()
        .filter(|s| actions.clone().any(|a| a.writes() == Some(*s)))
        .collect();
    for s in &written {
        if let Some(w) = stores[*s as usize].warning_once() {
            warn!(pair = %pair.id, "{w}");
        }
    }
    written
}

/// Notes what a write did to `side`, the side it wrote, for settling its watermark.
fn note_write(w: &mut Wrote, side: Side, done: &Done, record: &Record) {
    match (done, record) {
        (Done::Written(how), Record::Put(m)) => {
            w.versions
                .insert(m.href(side).clone(), m.etag(side).clone());
            if matches!(how, Written::Created) {
                w.created.insert(m.href(side).clone());
            }
        }
        (Done::Deleted(h) | Done::ExtraDeleted(h), _) => {
            w.deleted.insert(h.clone());
        }
        (
            Done::Settled {
                pending,
                removed: true,
            },
            _,
        ) => {
            w.deleted.insert(pending.href(side).clone());
        }
        _ => {}
    }
}

/// The lease guarding `side`'s calendar: a pass holds the lease of each side it writes.
fn lease_of<'a>(pair: &Pair, leases: &'a [Lease], side: Side) -> &'a Lease {
    let cal = pair.calendar(side).to_string();
    leases
        .iter()
        .find(|l| l.calendar == cal)
        .expect("a pass holds the lease of each side it writes")
}

/// The pending row a create or an update is noted under before it is sent; `None` for writes
/// that note nothing up front (deletes; a create that first tries to adopt a copy).
fn noted(pair: &Pair, action: &Action) -> Option<Pending> {
    match action {
        Action::Create {
            to,
            from_href,
            item,
            adopt: None,
            ..
        } => Some(pending_create(
            &pair.calendar(*to).path,
            *to,
            from_href,
            item,
            None,
        )),
        Action::Update {
            to,
            from_href,
            from_etag,
            href,
            etag,
            item,
        } => Some(pending_update(
            *to,
            (from_href, from_etag),
            (href, etag),
            item,
        )),
        _ => None,
    }
}

/// Errors that say the calendar, not the item, is unavailable.
fn halts_pass(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Moving { .. } | ErrorKind::Throttled { .. } | ErrorKind::Unauthorized
    )
}

/// Writes per chunk, for each write the receiving store takes at once: enough that a chunk's
/// state transaction costs little per write, few enough that a crash leaves little to adopt.
const CHUNK_PER_SLOT: usize = 8;

/// What a finished write leaves for the state to record.
enum Record {
    Put(Mapping),
    Forget(Href),
    Nothing,
}

/// How often a first sync's or resync's writes left are recorded at most, with the writes
/// being recorded anyway (the page reloads every 10 s).
const LEFT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes finished and not yet recorded, and how many of the pass are left to make when it
/// shows its progress (a first sync, a resync): the pair's backlog meanwhile.
#[derive(Default)]
struct Finished {
    put: Vec<Mapping>,
    forget: Vec<Href>,
    left: Option<u64>,
    /// `left` as the state last recorded it, and when.
    recorded_left: Option<(u64, std::time::Instant)>,
}

impl Finished {
    fn add(&mut self, record: Record) {
        match record {
            Record::Put(m) => self.put.push(m),
            Record::Forget(href) => self.forget.push(href),
            Record::Nothing => {}
        }
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(1);
        }
    }

    fn len(&self) -> usize {
        self.put.len() + self.forget.len()
    }

    /// The writes left, to record with the writes finished: at first, then once they changed
    /// and [`LEFT_EVERY`] has passed.
    fn left_news(&self) -> Option<u64> {
        let left = self.left?;
        match self.recorded_left {
            None => Some(left),
            Some((was, at)) if was != left && at.elapsed() >= LEFT_EVERY => Some(left),
            Some(_) => None,
        }
    }

    /// The state recorded the writes finished, and `left` if given.
    fn recorded(&mut self, left: Option<u64>) {
        self.put.clear();
        self.forget.clear();
        if let Some(left) = left {
            self.recorded_left = Some((left, std::time::Instant::now()));
        }
    }
}

/// One write as the chunking hands it on: to send, or not to (the pass stopped first).
enum Step {
    Send(Box<Action>),
    Skip(Side),
}

/// Whether the pass stopped sending, and why: a halting refusal or a lost lease.
#[derive(Default)]
struct Stops {
    stop: AtomicBool,
    halt: Mutex<Option<Halt>>,
    lost: Mutex<Option<Lost>>,
}

impl Stops {
    fn lose(&self, side: Side, why: String) {
        self.stop.store(true, Ordering::Relaxed);
        self.lost
            .lock()
            .expect("not poisoned")
            .get_or_insert((side, why));
    }
}

/// The execute stage of one pass: what it needs to send the plan's writes and no more.
pub(super) struct Executor<'e> {
    pair: &'e Pair,
    state: &'e State,
    writer: Writer<'e>,
    /// Side A's store and side B's.
    stores: [Arc<dyn CalendarStore>; 2],
    /// The lease of each side the pass writes.
    leases: &'e [Lease],
    /// Set when the service stops: writes in flight finish, no more start.
    stopping: &'e AtomicBool,
    /// Told how the writes go (a first sync, a resync).
    progress: Option<&'e dyn Progress>,
    /// Whether the pass is a first sync or a resync: it shows its progress, and its writes
    /// left are the pair's backlog meanwhile.
    long: bool,
    /// Items written to a server by this engine, for the state's minutes.
    written: &'e AtomicU64,
}

impl<'e> Executor<'e> {
    /// The stage for `pair` under `leases`; `Err` if a server of it could not be opened.
    pub(super) fn new(
        engine: &'e Engine,
        pair: &'e Pair,
        leases: &'e [Lease],
        long: bool,
    ) -> Result<Executor<'e>, PassError> {
        Ok(Executor {
            pair,
            state: &engine.state,
            writer: Writer::new(&pair.id, &engine.state, &engine.forms),
            stores: engine.pair_stores(pair)?,
            leases,
            stopping: &engine.stopping,
            progress: engine.progress.as_deref().filter(|_| long),
            long,
            written: &engine.written,
        })
    }

    /// Runs `writes` (creates, updates, deletes), removals first so a create that reuses a name
    /// (an item moved to a new href) never meets the copy it replaces. A stopping service lets
    /// writes in flight finish and starts no more; a halting refusal or a lost lease stops the
    /// rest, which is reported `NotRun`.
    pub(super) async fn execute(&self, writes: Vec<Action>) -> Result<Executed, StateError> {
        let (removals, writes): (Vec<Action>, Vec<Action>) = writes
            .into_iter()
            .partition(|a| matches!(a, Action::Delete { .. } | Action::DeleteOrphan { .. }));
        let (pair, stores) = (self.pair, &self.stores);
        let written = sides_written(pair, stores, writes.iter().chain(&removals));
        // Up to the parallelism of the stores written.
        let par = written
            .iter()
            .map(|s| stores[*s as usize].parallelism())
            .max()
            .unwrap_or(1)
            .max(1);
        let stops = Stops::default();
        let total = removals.len() + writes.len();
        let shown = self.progress.filter(|_| total > 0);
        if let Some(p) = shown {
            p.start(pair.id.as_str(), total as u64);
        }
        let mut finished = Finished {
            left: (self.long && total > 0).then_some(total as u64),
            ..Finished::default()
        };
        let mut done = Vec::with_capacity(total);
        let mut wrote: [Wrote; 2] = Default::default();
        for phase in [removals, writes] {
            self.run_phase(
                phase,
                par,
                &stops,
                &mut finished,
                |side, outcome, record| {
                    note_write(&mut wrote[side as usize], side, &outcome, record);
                    done.push(outcome);
                },
            )
            .await?;
        }
        if let Some(p) = shown {
            p.finish(pair.id.as_str());
        }
        Ok(Executed {
            done,
            halt: stops.halt.into_inner().expect("not poisoned"),
            lost: stops.lost.into_inner().expect("not poisoned"),
            wrote,
        })
    }

    /// Sends one phase's writes in chunks, up to `par` at once, handing each outcome to `seen`
    /// and recording what finished.
    async fn run_phase(
        &self,
        phase: Vec<Action>,
        par: usize,
        stops: &Stops,
        finished: &mut Finished,
        mut seen: impl FnMut(Side, Done, &Record),
    ) -> Result<(), StateError> {
        let chunk = par * CHUNK_PER_SLOT;
        let mut chunks = Vec::new();
        let mut phase = phase.into_iter().peekable();
        while phase.peek().is_some() {
            chunks.push(phase.by_ref().take(chunk).collect::<Vec<Action>>());
        }
        let mut chunks = chunks.into_iter();
        let mut queued: VecDeque<Step> = VecDeque::new();
        let mut sending = FuturesUnordered::new();
        let pair = self.pair.id.as_str();
        loop {
            // The next chunk is noted while the last writes of this one are still going, in
            // the transaction that records the writes finished so far.
            if queued.len() < par
                && let Some(c) = chunks.next()
            {
                queued.extend(self.note(c, stops, finished).await?);
            }
            while sending.len() < par
                && let Some(step) = queued.pop_front()
            {
                sending.push(self.send(stops, step));
            }
            let Some(outcome) = sending.next().await else {
                break;
            };
            if let Some(p) = self.progress {
                p.advance(pair);
            }
            let (side, outcome, record) = outcome?;
            if let Done::Failed {
                op, kind, error, ..
            } = &outcome
                && halts_pass(*kind)
            {
                stops.stop.store(true, Ordering::Relaxed);
                stops
                    .halt
                    .lock()
                    .expect("not poisoned")
                    .get_or_insert_with(|| (side, *kind, op.message(*kind, error)));
            }
            if matches!(
                outcome,
                Done::Written(_) | Done::Deleted(_) | Done::ExtraDeleted(_)
            ) {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            seen(side, outcome, &record);
            finished.add(record);
            if finished.len() >= chunk {
                self.record(finished).await?;
            }
        }
        self.record(finished).await
    }

    /// Records the writes finished since the last record, and what is left to write.
    async fn record(&self, finished: &mut Finished) -> Result<(), StateError> {
        if finished.len() == 0 {
            return Ok(());
        }
        let (put, forget, left) = (&finished.put, &finished.forget, finished.left_news());
        self.state
            .apply_and_note(&self.pair.id, put, forget, &[], left)
            .await?;
        finished.recorded(left);
        Ok(())
    }

    /// Sends one write of a noted chunk, unless the pass stopped or the lease's deadline passed
    /// on this node's clock (a stall since the chunk's check).
    async fn send(&self, stops: &Stops, step: Step) -> Result<(Side, Done, Record), StateError> {
        let action = match step {
            Step::Send(a) => *a,
            Step::Skip(side) => return Ok((side, Done::NotRun, Record::Nothing)),
        };
        let side = action.writes().expect("a remote write");
        if stops.stop.load(Ordering::Relaxed) || self.stopping.load(Ordering::Relaxed) {
            return Ok((side, Done::NotRun, Record::Nothing));
        }
        if lease_of(self.pair, self.leases, side).deadline.passed() {
            stops.lose(side, EXPIRED_HERE.to_string());
            return Ok((side, Done::NotRun, Record::Nothing));
        }
        let (done, record) = self.write_one(action).await?;
        Ok((side, done, record))
    }

    /// Before a chunk is sent: one fenced transaction notes its creates and updates as pending,
    /// so a copy written just before a crash is found again, and records the writes `finished`
    /// meanwhile (emptied once recorded). A lost lease (or a pass already stopped) sends none of
    /// it.
    async fn note(
        &self,
        chunk: Vec<Action>,
        stops: &Stops,
        finished: &mut Finished,
    ) -> Result<Vec<Step>, StateError> {
        let skip = |chunk: Vec<Action>| {
            chunk
                .into_iter()
                .map(|a| Step::Skip(a.writes().expect("a remote write")))
                .collect()
        };
        if stops.stop.load(Ordering::Relaxed) || self.stopping.load(Ordering::Relaxed) {
            return Ok(skip(chunk));
        }
        let pair = self.pair;
        let pendings: Vec<Pending> = chunk.iter().filter_map(|a| noted(pair, a)).collect();
        let left = finished.left_news();
        let noted = self
            .state
            .apply_and_note(&pair.id, &finished.put, &finished.forget, &pendings, left)
            .await;
        match noted {
            Ok(()) => {
                finished.recorded(left);
                Ok(chunk.into_iter().map(|a| Step::Send(Box::new(a))).collect())
            }
            Err(e) => match e.lost_lease() {
                Some(lost) => {
                    let side = [Side::A, Side::B]
                        .into_iter()
                        .find(|s| pair.calendar(*s).to_string() == lost.calendar)
                        .unwrap_or(Side::B);
                    stops.lose(side, lost.now.clone());
                    Ok(skip(chunk))
                }
                None => Err(e),
            },
        }
    }

    /// Performs one remote write; returns what it came to and what the state is to record.
    async fn write_one(&self, action: Action) -> Result<(Done, Record), StateError> {
        let side = action.writes().expect("a remote write");
        let (pair, store, writer) = (self.pair, &*self.stores[side as usize], &self.writer);
        let dest = |side: Side| Dest {
            side,
            store,
            cal: &pair.calendar(side).path,
        };
        let (written, from_href) = match action {
            Action::Create {
                to,
                from_href,
                from_etag,
                item,
                adopt,
            } => {
                let original = Original {
                    href: &from_href,
                    etag: &from_etag,
                    item: &item,
                };
                let adopted = match &adopt {
                    Some((href, etag)) => writer.adopt(dest(to), original, (href, etag)).await,
                    None => Ok(None),
                };
                // Noted up front by the chunk unless it first tried to adopt.
                let noted = adopt.is_none();
                let written = match adopted {
                    Ok(Some(done)) => Ok(done),
                    Ok(None) => writer.create(dest(to), original, noted).await?,
                    Err(e) => Err(e),
                };
                (written, from_href)
            }
            Action::Update {
                to,
                from_href,
                from_etag,
                href,
                etag,
                item,
            } => {
                let original = Original {
                    href: &from_href,
                    etag: &from_etag,
                    item: &item,
                };
                let written = writer.update(dest(to), original, (&href, &etag)).await?;
                (written, from_href)
            }
            Action::Delete {
                on,
                href,
                etag,
                mapping,
            } => {
                let result = delete(store, dest(on).cal, &href, &etag).await;
                return Ok(deleted(result, on, href, mapping));
            }
            Action::DeleteOrphan { on: to, pending } => {
                let done = match writer
                    .delete_orphan(store, dest(to).cal, to, &pending)
                    .await
                {
                    Ok(removed) => Done::Settled { pending, removed },
                    Err(e) => Done::Failed {
                        href: pending.href(to).clone(),
                        op: ItemOp::RemoveOrphan,
                        kind: e.kind,
                        error: e.to_string(),
                    },
                };
                return Ok((done, Record::Nothing));
            }
            other => unreachable!("not a remote write: {other:?}"),
        };
        Ok(match written {
            Ok((mapping, how)) => (Done::Written(how), Record::Put(mapping)),
            Err(e) => (
                Done::Failed {
                    href: from_href,
                    op: ItemOp::write(side),
                    kind: e.kind,
                    error: e.to_string(),
                },
                Record::Nothing,
            ),
        })
    }
}

/// What a delete on `on` came to and what the state is to record.
fn deleted(
    result: StoreResult<()>,
    on: Side,
    href: Href,
    mapping: Option<Mapping>,
) -> (Done, Record) {
    let op = match mapping {
        Some(_) => ItemOp::delete(on),
        None => ItemOp::DeleteExtra,
    };
    match (result, mapping) {
        (Ok(()), Some(m)) => (Done::Deleted(href), Record::Forget(m.a_href)),
        (Ok(()), None) => (Done::ExtraDeleted(href), Record::Nothing),
        (Err(e), _) => (
            Done::Failed {
                href,
                op,
                kind: e.kind,
                error: e.to_string(),
            },
            Record::Nothing,
        ),
    }
}
