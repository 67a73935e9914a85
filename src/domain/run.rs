//! Passes as the run history keeps them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Sync,
    Resync,
}

/// Counts a finished pass reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub adopted: u64,
    /// HTTP requests the pass made (retries included), those that got no usable answer, and
    /// those throttled.
    pub requests: u64,
    pub failed_requests: u64,
    pub throttled: u64,
    /// Source changes seen but not applied; `None` when the pass did not get far enough to know
    /// (the pair's previous backlog and lag then stand).
    pub backlog: Option<u64>,
}

/// A finished pass, recorded in one write when it ends (a pass that never ends leaves none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Time-ordered (UUIDv7): passes started in one millisecond still sort by start.
    pub id: String,
    pub kind: RunKind,
    /// The node (its lease holder name) that ran it.
    pub node: String,
    pub started_at: i64,
    /// When it ended (its start until then).
    pub finished_at: i64,
    pub outcome: Outcome,
    pub counts: RunCounts,
    pub error: Option<String>,
}

impl RunRecord {
    /// A pass of `kind` by `node` starting now, its id taken now.
    pub fn start(kind: RunKind, node: &str) -> RunRecord {
        let now = crate::domain::time::now_ms();
        RunRecord {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            node: node.to_string(),
            started_at: now,
            finished_at: now,
            outcome: Outcome::Ok,
            counts: RunCounts::default(),
            error: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Partial,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
        }
    }
}

/// One pair as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PairStatus {
    pub id: String,
    pub source: String,
    pub target: String,
    pub items: i64,
    pub last_success_at: Option<i64>,
    pub last_run: Option<RunStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunStatus {
    pub kind: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Option<String>,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub unchanged: i64,
    pub failed: i64,
    pub error: Option<String>,
}
