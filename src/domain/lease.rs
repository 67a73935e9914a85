//! Calendar leases: every writer of a calendar holds its lease, so sync passes, the repair
//! assistant and outside tools (an operator running Exchange's repair assistant) never write one
//! calendar at once.
//!
//! A lease row per calendar (`SERVER:PATH`) names its holder, kind and expiry and carries a fencing
//! token that only grows: each new holder gets a higher one. Acquiring is one conditional write
//! (free, expired, or already mine), so of two processes racing for a lease exactly one wins. A
//! holder checks its token is still current before each batch of writes and stops writing if the
//! lease was taken over (it slept past its expiry, say).
//!
//! Expiry is counted on the database's clock, which every node shares. A holder also keeps a
//! local deadline on its own monotonic clock, started before it asked: past it, the lease may
//! have expired, and the holder writes no calendar until a renewal confirms it, even with the
//! database out of reach.

use serde::Serialize;

/// How long a lease lasts without renewal: a crashed holder's lease lapses after this.
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseKind {
    Sync,
    Repair,
    /// Taken by an operator or an outside tool with `tandem lock acquire`.
    External,
    /// A mailbox's discovery (see [`mailbox_lease`]): one at a time, so two never make the
    /// same calendar.
    Discover,
}

impl LeaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Sync => "sync",
            LeaseKind::Repair => "repair",
            LeaseKind::External => "external",
            LeaseKind::Discover => "discover",
        }
    }

    /// The kind stored as `s` (unknown spellings read as `sync`).
    pub fn parse(s: &str) -> LeaseKind {
        match s {
            "repair" => LeaseKind::Repair,
            "external" => LeaseKind::External,
            "discover" => LeaseKind::Discover,
            _ => LeaseKind::Sync,
        }
    }
}

/// A held lease: the right to write `calendar` while `token` is current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub calendar: String,
    pub holder: String,
    pub kind: LeaseKind,
    pub token: i64,
    /// Unix ms, on the database's clock.
    pub expires_at: i64,
    /// Until when this process may trust the lease without asking (its own monotonic clock).
    #[serde(skip)]
    pub deadline: Deadline,
}

/// The share of a ttl a holder trusts on its own clock: clocks drift, and the database counted
/// the ttl from when it answered, a little after the holder asked.
const TRUSTED: f64 = 0.9;

/// A local monotonic deadline, moved forward by each renewal; shared by the clones of a lease.
/// Not part of a lease's identity: two leases are equal whatever their deadlines.
#[derive(Debug, Clone, Default)]
pub struct Deadline(std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>);

impl Deadline {
    /// A deadline `ttl` (less a margin) after `asked`, the instant before the request was sent.
    pub fn after(asked: std::time::Instant, ttl: std::time::Duration) -> Deadline {
        let d = Deadline::default();
        d.extend(asked, ttl);
        d
    }

    /// Moves the deadline to `ttl` (less a margin) after `asked`, after a renewal.
    pub fn extend(&self, asked: std::time::Instant, ttl: std::time::Duration) {
        *self.0.lock().expect("not poisoned") = Some(asked + ttl.mul_f64(TRUSTED));
    }

    /// Whether the deadline has passed (a lease without one never expires locally).
    pub fn passed(&self) -> bool {
        self.0
            .lock()
            .expect("not poisoned")
            .is_some_and(|d| std::time::Instant::now() >= d)
    }
}

impl PartialEq for Deadline {
    fn eq(&self, _: &Deadline) -> bool {
        true
    }
}

impl Eq for Deadline {}

/// Someone else holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// The calendar (SERVER:PATH).
    pub calendar: String,
    pub holder: String,
    pub kind: LeaseKind,
    pub expires_at: i64,
}

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "locked by {} ({}) until {}",
            self.holder,
            self.kind.as_str(),
            crate::domain::time::utc(self.expires_at)
        )
    }
}

/// The name of the lease a mailbox's discovery holds: no calendar's (`SERVER:PATH`) can be
/// spelt so.
pub fn mailbox_lease(mailbox: &str) -> String {
    format!("mailbox {mailbox}")
}

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "localhost".into(), |h| h.trim().to_string())
}

/// "HOST pid N TAG": who holds a lease, and enough to tell whether it still runs.
pub fn process_holder() -> String {
    format!(
        "{} pid {} {}",
        hostname(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Whether `holder` is a process of this machine that no longer runs (killed, crashed).
pub fn holder_is_gone(holder: &str) -> bool {
    match holder.split_whitespace().collect::<Vec<_>>().as_slice() {
        [host, "pid", pid, _] => {
            *host == hostname()
                && pid
                    .parse::<u32>()
                    .is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        }
        _ => false,
    }
}
