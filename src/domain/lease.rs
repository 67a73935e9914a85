//! Calendar leases: every writer of a calendar holds its lease, so sync passes, the repair
//! assistant and outside tools (an operator running Exchange's repair assistant) never write one
//! calendar at once.
//!
//! A lease row per calendar (`SERVER:PATH`) names its holder, kind and expiry and carries a fencing
//! token that only grows: each new holder gets a higher one. Acquiring is one conditional write
//! (free, expired, or already mine), so of two processes racing for a lease exactly one wins. A
//! holder checks its token is still current before each batch of writes and stops writing if the
//! lease was taken over (it slept past its expiry, say).

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
}

impl LeaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Sync => "sync",
            LeaseKind::Repair => "repair",
            LeaseKind::External => "external",
        }
    }

    /// The kind stored as `s` (unknown spellings read as `sync`).
    pub fn parse(s: &str) -> LeaseKind {
        match s {
            "repair" => LeaseKind::Repair,
            "external" => LeaseKind::External,
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
    /// Unix ms.
    pub expires_at: i64,
}

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

fn hostname() -> String {
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
