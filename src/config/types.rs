//! What a validated configuration holds: plain values the engine turns into what each layer
//! below it takes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::direction::{ConflictPolicy, Direction};
use crate::domain::item::{Ambiguous, Rewriter};
use crate::domain::mailbox::{Home, Mailbox};
use crate::domain::pair::{Extras, Pair};
use crate::domain::types::PairId;

/// One problem in a config file (or a file it names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
    }
}

/// All problems found; printed one per line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; relative paths inside it were resolved against its folder.
    pub file: PathBuf,
    pub state: StateConfig,
    pub sync: SyncConfig,
    pub agents: AgentsConfig,
    pub http: HttpConfig,
    pub alerts: AlertsConfig,
    pub servers: BTreeMap<String, ServerConfig>,
    pub rewrite: RewriteConfig,
    pub pairs: Vec<Pair>,
    /// Mailbox pairs: their calendars are found on both sides and paired by tandem.
    pub mailboxes: Vec<Mailbox>,
    /// Mailbox address (lower-case, as written in the config) → pair, for pairs that give one.
    pub addresses: BTreeMap<String, PairId>,
}

#[derive(Debug, Clone)]
pub enum StateConfig {
    /// One machine: a SQLite database file.
    Sqlite { path: PathBuf },
    /// Several nodes: a PostgreSQL database. `url` carries no password; `password` says where
    /// it is read from.
    Postgres {
        url: String,
        password: Option<PasswordSource>,
    },
}

impl StateConfig {
    /// The database file, for SQLite.
    pub fn file(&self) -> Option<&Path> {
        match self {
            StateConfig::Sqlite { path } => Some(path),
            StateConfig::Postgres { .. } => None,
        }
    }

    /// Where the state is, as shown to an operator (never with a password).
    pub fn describe(&self) -> String {
        match self {
            StateConfig::Sqlite { path } => path.display().to_string(),
            StateConfig::Postgres { url, .. } => url.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// How often the service polls each pair.
    pub interval: Duration,
    /// How long a pair pauses when its mailbox is being moved or locked and the server gives no
    /// Retry-After.
    pub pause: Duration,
    /// The longest wait between retries of a failing pair.
    pub backoff_max: Duration,
    /// How long a calendar lease lasts without renewal (a stalled or crashed holder loses it
    /// after this).
    pub lease_ttl: Duration,
    /// How often a pair whose calendars all push their changes is polled anyway (a push can be
    /// lost, and a server drops a subscription without saying).
    pub safety_interval: Duration,
    /// How long a push subscription is asked for; it is renewed when half of it is left.
    pub push_lifetime: Duration,
    pub window_past: Option<Duration>,
    pub window_future: Option<Duration>,
    pub extras: Extras,
    /// Defaults for pairs that do not say.
    pub direction: Direction,
    pub conflict: ConflictPolicy,
    /// How often the service looks for calendars added to, renamed in or removed from a
    /// mailbox.
    pub discover_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct AgentsConfig {
    pub count: usize,
    /// One per agent; agent i runs on processor `processor_indexes[i]`.
    pub processor_indexes: Vec<usize>,
    /// Whether the indexes were given explicitly (shown by `check`).
    pub explicit: bool,
    /// Passes one agent runs at once (they wait on the network, not the processor).
    pub passes: usize,
}

impl AgentsConfig {
    /// The idle-core mistake: processors with no agent while another has two or more.
    pub fn placement_warning(&self, online: usize) -> Option<String> {
        let mut per = vec![0usize; online.max(1)];
        for &p in &self.processor_indexes {
            if let Some(n) = per.get_mut(p) {
                *n += 1;
            }
        }
        let idle: Vec<usize> = (0..per.len()).filter(|&p| per[p] == 0).collect();
        let crowded: Vec<String> = (0..per.len())
            .filter(|&p| per[p] >= 2)
            .map(|p| format!("{p} ({} agents)", per[p]))
            .collect();
        if idle.is_empty() || crowded.is_empty() {
            return None;
        }
        Some(format!(
            "processor(s) {} have no agent while processor(s) {} have several: set agents.processor_indexes to spread them",
            idle.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            crowded.join(", ")
        ))
    }
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The environment variable holding the bearer token that `POST /api/pairs/{id}/resync`
    /// asks for; without one, that endpoint refuses every request.
    pub token_env: Option<String>,
    /// Every page, API call and `/metrics` asks for the bearer token too (only `/healthz`
    /// answers without): for nodes reachable over a network.
    pub protect_pages: bool,
    /// How CalDAV servers reach this listener for WebDAV-Push (`https://host:port`); without it
    /// nothing subscribes and every pair is polled. `{host}` stands for this machine's name.
    pub public_url: Option<String>,
    /// A certificate chain and its key (PEM): the listener serves https.
    pub tls: Option<TlsFiles>,
    /// `/metrics` gives every pair series of its own up to this many pairs; past it only the
    /// failing ones (the aggregates always).
    pub metrics_pairs: usize,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl HttpConfig {
    /// Where servers send pushes on this node (`public_url` with `{host}` filled in), without
    /// a trailing slash.
    pub fn push_base(&self) -> Option<String> {
        let url = self.public_url.as_deref()?;
        let url = url.replace("{host}", &crate::domain::lease::hostname());
        Some(url.trim_end_matches('/').to_string())
    }

    /// The bearer token for `POST …/resync`, read from `token_env`; only `run` (and `check`)
    /// need it, so other commands work without it in their environment.
    pub fn token(&self) -> Result<Option<secrecy::SecretString>, String> {
        let Some(var) = &self.token_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Err(_) => Err(format!("environment variable {var} is not set")),
            Ok(t) if t.trim().chars().count() < 16 => {
                Err(format!("the token in {var} is shorter than 16 characters"))
            }
            Ok(t) => Ok(Some(secrecy::SecretString::from(t.trim().to_string()))),
        }
    }
}

/// Thresholds that mark a pair or a server as needing attention (status, page, `/metrics`).
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// A pair whose oldest unapplied source change has waited longer than this.
    pub lag: Duration,
    /// A pair or server whose requests failed more than this share (percent) over the last hour.
    pub failed_requests_percent: f64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            lag: Duration::from_secs(20 * 60),
            failed_requests_percent: 80.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub kind: ServerKind,
    pub requests_per_second: Option<u32>,
    pub max_concurrency: Option<usize>,
    /// Writes in flight (caldav): `None` finds the best number itself, up to `max_concurrency`.
    pub write_concurrency: Option<usize>,
    /// Per HTTP request (caldav).
    pub timeout: Duration,
    /// The largest answer read from the server, in bytes (caldav).
    pub max_answer: usize,
    /// Where a user's calendars live (`{user}` in it); vdir: `/{user}/` unless given.
    pub home: Option<Home>,
    /// The last path segment of a user's default calendar, for a server that does not name it.
    pub default_calendar: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ServerKind {
    Vdir {
        path: PathBuf,
    },
    Caldav {
        url: String,
        username: Option<String>,
        password: Option<PasswordSource>,
    },
}

impl ServerKind {
    pub fn name(&self) -> &'static str {
        match self {
            ServerKind::Vdir { .. } => "vdir",
            ServerKind::Caldav { .. } => "caldav",
        }
    }
}

/// Where a password comes from; the password itself is read only when a connection needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Env(String),
    File(PathBuf),
}

impl PasswordSource {
    /// Reads the password (a file's trailing newline dropped).
    pub fn read(&self) -> Result<secrecy::SecretString, String> {
        match self {
            PasswordSource::Env(var) => std::env::var(var)
                .map(secrecy::SecretString::from)
                .map_err(|_| format!("environment variable {var} (password_env) is not set")),
            PasswordSource::File(path) => std::fs::read_to_string(path)
                .map(|s| secrecy::SecretString::from(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| format!("reading password_file {}: {e}", path.display())),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RewriteConfig {
    pub domains: BTreeMap<String, String>,
    pub addresses: BTreeMap<String, String>,
    pub addresses_file: Option<PathBuf>,
    /// The way back where the inverse of `domains` / `addresses` is not one-to-one.
    pub reverse_domains: BTreeMap<String, String>,
    pub reverse_addresses: BTreeMap<String, String>,
    pub reverse_addresses_file: Option<PathBuf>,
}

impl RewriteConfig {
    pub fn rewriter(&self) -> Rewriter {
        Rewriter::new(
            self.domains.iter().map(|(k, v)| (k.clone(), v.clone())),
            self.addresses.iter().map(|(k, v)| (k.clone(), v.clone())),
        )
    }

    /// The rewrite for copies written back to the old org (two-way and cut-over pairs).
    pub fn inverse(&self) -> Result<Rewriter, Ambiguous> {
        self.rewriter().inverse(
            self.reverse_domains
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
            self.reverse_addresses
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        )
    }
}
