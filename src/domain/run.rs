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
