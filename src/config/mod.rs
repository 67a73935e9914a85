//! The configuration file (TOML), validated once at the edge.
//!
//! Every problem is reported as `FILE: KEY: reason` so an operator editing a config for thousands
//! of pairs can go straight to the line. Paths inside the config are relative to the config file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::direction::{ConflictPolicy, Direction};
use crate::domain::item::{Ambiguous, Rewriter};
use crate::domain::pair::{Extras, Pair};
use crate::domain::types::{CalendarRef, PairId};

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

// ---- raw form, as written ---------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    agents: RawAgents,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    servers: BTreeMap<String, RawServer>,
    #[serde(default)]
    rewrite: RawRewrite,
    #[serde(default)]
    pairs: Vec<RawPair>,
    pairs_csv: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawState {
    url: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSync {
    interval: Option<String>,
    pause: Option<String>,
    backoff_max: Option<String>,
    lease_ttl: Option<String>,
    safety_interval: Option<String>,
    push_lifetime: Option<String>,
    window_past: Option<String>,
    window_future: Option<String>,
    extras: Option<String>,
    direction: Option<String>,
    conflict: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAgents {
    count: Option<i64>,
    passes: Option<i64>,
    processor_indexes: Option<Vec<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    token_env: Option<String>,
    protect_pages: Option<bool>,
    public_url: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    lag: Option<String>,
    failed_requests_percent: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    kind: String,
    path: Option<String>,
    url: Option<String>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    requests_per_second: Option<i64>,
    max_concurrency: Option<i64>,
    write_concurrency: Option<toml::Value>,
    timeout: Option<String>,
    max_answer_size: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRewrite {
    #[serde(default)]
    domains: BTreeMap<String, String>,
    addresses: Option<String>,
    #[serde(default)]
    reverse_domains: BTreeMap<String, String>,
    reverse_addresses: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    id: String,
    source: String,
    target: String,
    /// The mailbox's address, for the repair assistant's cross-calendar check.
    address: Option<String>,
    direction: Option<String>,
    conflict: Option<String>,
}

pub const DEFAULT_STATE_URL: &str = "sqlite://tandem.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8686";
/// Per HTTP request to a caldav server, unless its `timeout` says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `max_answer_size` when a server sets none: far above a listing of 100,000 items or a multiget
/// of 100 items with attachments, far below what would strain the machine.
pub const DEFAULT_MAX_ANSWER: usize = 64 << 20;

/// A size as written in the config: bytes, or a number with a unit (`64 MiB`, `500kB`).
fn byte_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.parse::<usize>().ok()?.checked_mul(unit)
}

/// Number of processors this process may run on.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(300);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(1800);
/// Polling of push-driven pairs, in case a push is lost.
pub const DEFAULT_SAFETY_INTERVAL: Duration = Duration::from_secs(3600);
/// What a push subscription is asked for (renewed at half).
pub const DEFAULT_PUSH_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_PASSES_PER_AGENT: usize = 8;

pub fn online_processors() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            ConfigError(vec![ConfigIssue {
                file: file.to_path_buf(),
                key: "(file)".into(),
                reason: format!(
                    "cannot read: {e} (name the config file with -c FILE or the TANDEM_CONFIG \
                     environment variable; config/tandem.example.toml is a start)"
                ),
            }])
        })?;
        Config::from_toml(file, &text)
    }

    /// Validates config text as if read from `file` (relative paths resolve against its folder).
    pub fn from_toml(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut v = Validator {
            file: file.to_path_buf(),
            file_override: None,
            issues: Vec::new(),
        };
        let raw: Raw = match parse_raw(text) {
            Ok(raw) => raw,
            Err((key, reason)) => {
                v.issue(key, reason);
                return Err(ConfigError(v.issues));
            }
        };
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let config = v.validate(raw, &base);
        if v.issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(v.issues))
        }
    }

    pub fn pair(&self, id: &str) -> Option<&Pair> {
        self.pairs.iter().find(|p| p.id.as_str() == id)
    }
}

fn parse_raw(text: &str) -> Result<Raw, (String, String)> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| ("(syntax)".to_string(), toml_reason(text, &e)))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = if path == "." || path.is_empty() {
            "(top level)".to_string()
        } else {
            path
        };
        (key, toml_reason(text, &inner))
    })
}

fn toml_reason(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{msg} (line {line})")
        }
        None => msg,
    }
}

struct Validator {
    file: PathBuf,
    /// The file issues are reported in while a pair from `pairs_csv` is read.
    file_override: Option<PathBuf>,
    issues: Vec<ConfigIssue>,
}

impl Validator {
    fn issue(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.issues.push(ConfigIssue {
            file: self
                .file_override
                .clone()
                .unwrap_or_else(|| self.file.clone()),
            key: key.into(),
            reason: reason.into(),
        });
    }

    fn duration(&mut self, key: &str, value: Option<&str>) -> Option<Duration> {
        let value = value?;
        match humantime::parse_duration(value) {
            Ok(d) if d.is_zero() => {
                self.issue(key, "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.issue(
                    key,
                    format!("{value:?} is not a duration like \"60s\" or \"180d\": {e}"),
                );
                None
            }
        }
    }

    /// One of two named values (`names`), parsed by `parse`; empty or absent is `None`.
    fn choice<T>(
        &mut self,
        key: &str,
        value: Option<&str>,
        parse: fn(&str) -> Option<T>,
        names: [&str; 2],
    ) -> Option<T> {
        let value = value.filter(|v| !v.is_empty())?;
        let parsed = parse(value);
        if parsed.is_none() {
            let [x, y] = names;
            self.issue(key, format!("{value:?} is neither {x:?} nor {y:?}"));
        }
        parsed
    }

    fn direction(&mut self, key: &str, value: Option<&str>) -> Option<Direction> {
        self.choice(key, value, Direction::parse, ["one-way", "two-way"])
    }

    fn conflict(&mut self, key: &str, value: Option<&str>) -> Option<ConflictPolicy> {
        self.choice(key, value, ConflictPolicy::parse, ["authority", "newest"])
    }

    fn existing_file(&mut self, key: &str, base: &Path, value: &str) -> Option<PathBuf> {
        let path = base.join(value);
        if path.is_file() {
            Some(path)
        } else {
            self.issue(key, format!("file {} does not exist", path.display()));
            None
        }
    }

    fn validate(&mut self, raw: Raw, base: &Path) -> Config {
        let state = self.state(raw.state, base);
        let sync = self.sync(raw.sync);
        let agents = self.agents(raw.agents);
        let listen = raw.http.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen.parse().unwrap_or_else(|_| {
            self.issue(
                "http.listen",
                format!("{listen:?} is not an address like 127.0.0.1:8686"),
            );
            DEFAULT_LISTEN.parse().expect("default listen address")
        });
        let token_env = raw.http.token_env;
        if token_env.as_deref().is_some_and(|v| v.trim().is_empty()) {
            self.issue("http.token_env", "names no environment variable");
        }
        let protect_pages = raw.http.protect_pages.unwrap_or(false);
        if protect_pages && token_env.is_none() {
            self.issue(
                "http.protect_pages",
                "needs http.token_env: the pages would ask for a token no one has",
            );
        }
        let public_url = raw.http.public_url.filter(|u| {
            let ok = url::Url::parse(&u.replace("{host}", "h"))
                .is_ok_and(|p| matches!(p.scheme(), "https" | "http") && p.host().is_some());
            if !ok {
                self.issue(
                    "http.public_url",
                    format!("{u:?} is not a URL like \"https://tandem.example:8686\""),
                );
            }
            ok
        });
        let tls = match (raw.http.tls_cert, raw.http.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: base.join(cert),
                key: base.join(key),
            }),
            (None, None) => None,
            (Some(_), None) => {
                self.issue("http.tls_key", "is needed with http.tls_cert");
                None
            }
            (None, Some(_)) => {
                self.issue("http.tls_cert", "is needed with http.tls_key");
                None
            }
        };
        let mut alerts = AlertsConfig::default();
        if let Some(lag) = self.duration("alerts.lag", raw.alerts.lag.as_deref()) {
            alerts.lag = lag;
        }
        if let Some(p) = raw.alerts.failed_requests_percent {
            if (0.0..=100.0).contains(&p) {
                alerts.failed_requests_percent = p;
            } else {
                self.issue(
                    "alerts.failed_requests_percent",
                    format!("{p} is not a percentage from 0 to 100"),
                );
            }
        }
        let servers: BTreeMap<String, ServerConfig> = raw
            .servers
            .into_iter()
            .filter_map(|(name, s)| self.server(&name, s, base).map(|s| (name, s)))
            .collect();
        let rewrite = self.rewrite(raw.rewrite, base);
        // Mailbox addresses come with their pairs (`[[pairs]] address`, a 4th CSV column).
        let (pairs, addresses) =
            self.pairs(raw.pairs, raw.pairs_csv.as_deref(), base, &servers, &sync);
        self.way_back(&rewrite, &pairs);
        Config {
            file: self.file.clone(),
            state,
            sync,
            agents,
            http: HttpConfig {
                listen,
                token_env,
                protect_pages,
                public_url,
                tls,
            },
            alerts,
            servers,
            rewrite,
            pairs,
            addresses,
        }
    }

    fn state(&mut self, raw: RawState, base: &Path) -> StateConfig {
        let url = raw.url.as_deref().unwrap_or(DEFAULT_STATE_URL);
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let rest = url.split_once("://").map_or("", |(_, r)| r);
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            let query = rest.split_once('?').map_or("", |(_, q)| q);
            let in_authority = authority.contains('@')
                && authority
                    .split('@')
                    .next()
                    .is_some_and(|user| user.contains(':'));
            let in_query = query
                .split('&')
                .any(|kv| kv.to_ascii_lowercase().starts_with("password="));
            if in_authority || in_query {
                self.issue(
                    "state.url",
                    "must not carry a password; use state.password_env or state.password_file",
                );
            }
            let password = self.password("state", raw.password_env, raw.password_file, base);
            return StateConfig::Postgres {
                url: url.to_string(),
                password,
            };
        }
        if raw.password_env.is_some() || raw.password_file.is_some() {
            self.issue(
                "state.password_env",
                "a SQLite state file takes no password",
            );
        }
        let path = match url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Some(p) if !p.is_empty() && !p.starts_with(":memory:") => base.join(p),
            _ => {
                self.issue(
                    "state.url",
                    format!(
                        "{url:?} is neither a SQLite file URL like \"sqlite://tandem.db\" nor a \
                         PostgreSQL URL like \"postgres://tandem@db.example:5432/tandem\""
                    ),
                );
                base.join("tandem.db")
            }
        };
        StateConfig::Sqlite { path }
    }

    fn sync(&mut self, raw: RawSync) -> SyncConfig {
        let interval = self
            .duration("sync.interval", raw.interval.as_deref())
            .unwrap_or(Duration::from_secs(60));
        let pause = self
            .duration("sync.pause", raw.pause.as_deref())
            .unwrap_or(DEFAULT_PAUSE);
        let backoff_max = self
            .duration("sync.backoff_max", raw.backoff_max.as_deref())
            .unwrap_or(DEFAULT_BACKOFF_MAX);
        let lease_ttl = self
            .duration("sync.lease_ttl", raw.lease_ttl.as_deref())
            .unwrap_or(crate::domain::lease::DEFAULT_TTL);
        let safety_interval = self
            .duration("sync.safety_interval", raw.safety_interval.as_deref())
            .unwrap_or(DEFAULT_SAFETY_INTERVAL);
        let push_lifetime = self
            .duration("sync.push_lifetime", raw.push_lifetime.as_deref())
            .unwrap_or(DEFAULT_PUSH_LIFETIME);
        if push_lifetime < Duration::from_secs(10) {
            self.issue("sync.push_lifetime", "must be at least 10s");
        }
        let window_past = self.duration("sync.window_past", raw.window_past.as_deref());
        let window_future = self.duration("sync.window_future", raw.window_future.as_deref());
        let extras = match raw.extras.as_deref() {
            None | Some("keep") => Extras::Keep,
            Some("delete") => Extras::Delete,
            Some(other) => {
                self.issue(
                    "sync.extras",
                    format!("{other:?} is neither \"keep\" nor \"delete\""),
                );
                Extras::Keep
            }
        };
        let direction = self
            .direction("sync.direction", raw.direction.as_deref())
            .unwrap_or_default();
        let conflict = self
            .conflict("sync.conflict", raw.conflict.as_deref())
            .unwrap_or_default();
        SyncConfig {
            interval,
            pause,
            backoff_max,
            lease_ttl,
            safety_interval,
            push_lifetime,
            window_past,
            window_future,
            extras,
            direction,
            conflict,
        }
    }

    fn agents(&mut self, raw: RawAgents) -> AgentsConfig {
        let online = online_processors();
        let count = match raw.count {
            None => raw
                .processor_indexes
                .as_ref()
                .map_or(online, |v| v.len().max(1)),
            Some(n) if (1..=1024).contains(&n) => n as usize,
            Some(n) => {
                self.issue("agents.count", format!("{n} is not between 1 and 1024"));
                online
            }
        };
        let passes = match raw.passes {
            None => DEFAULT_PASSES_PER_AGENT,
            Some(n) if (1..=1024).contains(&n) => n as usize,
            Some(n) => {
                self.issue("agents.passes", format!("{n} is not between 1 and 1024"));
                DEFAULT_PASSES_PER_AGENT
            }
        };
        let Some(indexes) = raw.processor_indexes else {
            return AgentsConfig {
                count,
                processor_indexes: (0..count).map(|i| i % online).collect(),
                explicit: false,
                passes,
            };
        };
        if indexes.len() != count {
            self.issue(
                "agents.processor_indexes",
                format!(
                    "lists {} indexes for {count} agents; give exactly one per agent",
                    indexes.len()
                ),
            );
        }
        let mut valid = Vec::with_capacity(indexes.len());
        for (i, &idx) in indexes.iter().enumerate() {
            if idx < 0 || idx as usize >= online {
                self.issue(
                    format!("agents.processor_indexes[{i}]"),
                    format!("processor {idx} does not exist: this machine has {online} online processors (0..={})", online - 1),
                );
            } else {
                valid.push(idx as usize);
            }
        }
        AgentsConfig {
            count,
            processor_indexes: valid,
            explicit: true,
            passes,
        }
    }

    /// `max_answer_size`: a size from 64 KiB to 4 GiB, else the default (and an issue).
    fn max_answer(&mut self, key: &str, raw: Option<&str>) -> usize {
        match raw.map(byte_size) {
            None => DEFAULT_MAX_ANSWER,
            Some(Some(n)) if (64 << 10..=4 << 30).contains(&n) => n,
            Some(_) => {
                self.issue(
                    key.to_string(),
                    "is not a size from \"64 KiB\" to \"4 GiB\" (bytes, or a number with kB, MB, GB, KiB, MiB or GiB)",
                );
                DEFAULT_MAX_ANSWER
            }
        }
    }

    fn server(&mut self, name: &str, raw: RawServer, base: &Path) -> Option<ServerConfig> {
        let key = |k: &str| format!("servers.{name}.{k}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.issue(
                format!("servers.{name}"),
                "a server name may only use letters, digits, - and _",
            );
        }
        let rps = match raw.requests_per_second {
            None => None,
            Some(n) if (1..=100_000).contains(&n) => Some(n as u32),
            Some(n) => {
                self.issue(
                    key("requests_per_second"),
                    format!("{n} is not between 1 and 100000"),
                );
                None
            }
        };
        let conc = match raw.max_concurrency {
            None => None,
            Some(n) if (1..=1024).contains(&n) => Some(n as usize),
            Some(n) => {
                self.issue(
                    key("max_concurrency"),
                    format!("{n} is not between 1 and 1024"),
                );
                None
            }
        };
        let writes = match &raw.write_concurrency {
            None => None,
            Some(toml::Value::String(s)) if s == "adaptive" => None,
            Some(toml::Value::Integer(n)) if (1..=1024).contains(n) => Some(*n as usize),
            Some(v) => {
                self.issue(
                    key("write_concurrency"),
                    format!("{v} is neither \"adaptive\" nor a number from 1 to 1024"),
                );
                None
            }
        };
        let timeout = self
            .duration(&key("timeout"), raw.timeout.as_deref())
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let max_answer = self.max_answer(&key("max_answer_size"), raw.max_answer_size.as_deref());
        let kind = self.server_kind(name, raw, base)?;
        Some(ServerConfig {
            name: name.to_string(),
            kind,
            requests_per_second: rps,
            max_concurrency: conc,
            write_concurrency: writes,
            timeout,
            max_answer,
        })
    }

    /// What kind of server `servers.<name>` is, and where it is.
    fn server_kind(&mut self, name: &str, raw: RawServer, base: &Path) -> Option<ServerKind> {
        let key = |k: &str| format!("servers.{name}.{k}");
        let kind = match raw.kind.as_str() {
            "vdir" => {
                for (k, set) in [
                    ("url", raw.url.is_some()),
                    ("username", raw.username.is_some()),
                    ("password_env", raw.password_env.is_some()),
                    ("password_file", raw.password_file.is_some()),
                ] {
                    if set {
                        self.issue(key(k), "not used by a vdir server (it has only `path`)");
                    }
                }
                let Some(path) = raw.path else {
                    self.issue(
                        key("path"),
                        "a vdir server needs `path`, the folder that holds its calendars",
                    );
                    return None;
                };
                let path = base.join(path);
                if !path.is_dir() {
                    self.issue(
                        key("path"),
                        format!("folder {} does not exist", path.display()),
                    );
                    return None;
                }
                ServerKind::Vdir { path }
            }
            "caldav" => {
                if raw.path.is_some() {
                    self.issue(key("path"), "not used by a caldav server (it has `url`)");
                }
                let Some(url) = raw.url else {
                    self.issue(key("url"), "a caldav server needs `url`");
                    return None;
                };
                if !(url.starts_with("https://") || url.starts_with("http://"))
                    || url.contains(char::is_whitespace)
                {
                    self.issue(key("url"), format!("{url:?} is not an http(s) URL"));
                    return None;
                }
                if url.split_once("://").is_some_and(|(_, rest)| {
                    rest.split('/').next().is_some_and(|h| h.contains('@'))
                }) {
                    self.issue(
                        key("url"),
                        "must not carry credentials; use username and password_env/password_file",
                    );
                    return None;
                }
                let password_given = raw.password_env.is_some() || raw.password_file.is_some();
                let password = self.password(
                    &format!("servers.{name}"),
                    raw.password_env,
                    raw.password_file,
                    base,
                );
                if raw.username.is_some() && !password_given {
                    self.issue(
                        key("password_env"),
                        "a username needs a password from password_env or password_file",
                    );
                }
                ServerKind::Caldav {
                    url,
                    username: raw.username,
                    password,
                }
            }
            other => {
                self.issue(
                    key("kind"),
                    format!("unknown server kind {other:?} (known: \"caldav\", \"vdir\")"),
                );
                return None;
            }
        };
        Some(kind)
    }

    /// Where a password comes from: `password_env` or `password_file` under `section`, not both.
    fn password(
        &mut self,
        section: &str,
        env: Option<String>,
        file: Option<String>,
        base: &Path,
    ) -> Option<PasswordSource> {
        let key = |k: &str| format!("{section}.{k}");
        match (env, file) {
            (Some(_), Some(_)) => {
                self.issue(
                    key("password_env"),
                    "give either password_env or password_file, not both",
                );
                None
            }
            (Some(var), None) => {
                if std::env::var_os(&var).is_none() {
                    self.issue(
                        key("password_env"),
                        format!("environment variable {var} is not set"),
                    );
                }
                Some(PasswordSource::Env(var))
            }
            (None, Some(file)) => self
                .existing_file(&key("password_file"), base, &file)
                .map(PasswordSource::File),
            (None, None) => None,
        }
    }

    fn rewrite(&mut self, raw: RawRewrite, base: &Path) -> RewriteConfig {
        let mut domains = BTreeMap::new();
        for (from, to) in raw.domains {
            let ok = |d: &str| !d.is_empty() && !d.contains(['@', ' ', '/', ':']);
            if !ok(&from) || !ok(&to) {
                self.issue(format!("rewrite.domains.{from}"), format!("{from:?} = {to:?} is not a domain mapping like \"old.example\" = \"new.example\""));
            } else {
                domains.insert(from.to_lowercase(), to);
            }
        }
        let mut addresses = BTreeMap::new();
        let mut addresses_file = None;
        if let Some(file) = raw.addresses
            && let Some(path) = self.existing_file("rewrite.addresses", base, &file)
        {
            addresses = self.address_map(&path, "source_address,target_address");
            addresses_file = Some(path);
        }
        let mut reverse_domains = BTreeMap::new();
        for (from, to) in raw.reverse_domains {
            let ok = |d: &str| !d.is_empty() && !d.contains(['@', ' ', '/', ':']);
            if !ok(&from) || !ok(&to) {
                self.issue(format!("rewrite.reverse_domains.{from}"), format!("{from:?} = {to:?} is not a domain mapping like \"new.example\" = \"old.example\""));
            } else {
                reverse_domains.insert(from.to_lowercase(), to);
            }
        }
        let reverse_addresses_file = raw
            .reverse_addresses
            .and_then(|file| self.existing_file("rewrite.reverse_addresses", base, &file));
        let reverse_addresses = match &reverse_addresses_file {
            Some(path) => self.address_map(path, "target_address,source_address"),
            None => BTreeMap::new(),
        };
        RewriteConfig {
            domains,
            addresses,
            addresses_file,
            reverse_domains,
            reverse_addresses,
            reverse_addresses_file,
        }
    }

    /// A CSV of address pairs (`expected` names the columns).
    fn address_map(&mut self, path: &Path, expected: &str) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        match read_csv(path, 2..=2) {
            Ok(rows) => {
                for (line, row) in rows {
                    if !row[0].contains('@') || !row[1].contains('@') {
                        self.issue_in(path, format!("line {line}"), format!("expected {expected}"));
                    } else {
                        map.insert(row[0].to_lowercase(), row[1].clone());
                    }
                }
            }
            Err((line, reason)) => self.issue_in(path, format!("line {line}"), reason),
        }
        map
    }

    /// Two-way pairs write copies back to the old org: the rewrite must have a way back.
    fn way_back(&mut self, rewrite: &RewriteConfig, pairs: &[Pair]) {
        let two_way: Vec<&str> = pairs
            .iter()
            .filter(|p| p.direction == Direction::TwoWay)
            .map(|p| p.id.as_str())
            .collect();
        if two_way.is_empty() {
            return;
        }
        if let Err(e) = rewrite.inverse() {
            let more = if two_way.len() > 3 { ", ..." } else { "" };
            let names = two_way[..two_way.len().min(3)].join(", ");
            self.issue(
                "rewrite",
                format!("{e} (needed by the two-way pairs {names}{more})"),
            );
        }
    }

    fn issue_in(&mut self, file: &Path, key: impl Into<String>, reason: impl Into<String>) {
        self.issues.push(ConfigIssue {
            file: file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        });
    }

    fn pairs(
        &mut self,
        raw: Vec<RawPair>,
        csv: Option<&str>,
        base: &Path,
        servers: &BTreeMap<String, ServerConfig>,
        sync: &SyncConfig,
    ) -> (Vec<Pair>, BTreeMap<String, PairId>) {
        let mut entries: Vec<Entry> = raw
            .into_iter()
            .enumerate()
            .map(|(i, p)| Entry {
                file: self.file.clone(),
                key: format!("pairs[{i}]"),
                id: p.id,
                source: p.source,
                target: p.target,
                address: p.address,
                direction: p.direction,
                conflict: p.conflict,
            })
            .collect();
        if let Some(csv) = csv {
            entries.extend(self.csv_entries(csv, base));
        }
        let known = || {
            servers
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut targets: HashSet<CalendarRef> = HashSet::new();
        let mut pairs = Vec::with_capacity(entries.len());
        let mut addresses: BTreeMap<String, PairId> = BTreeMap::new();
        for e in entries {
            let Entry {
                file,
                key,
                id,
                source,
                target,
                address,
                direction,
                conflict,
            } = e;
            self.file_override = Some(file.clone());
            let direction = self
                .direction(&format!("{key}.direction"), direction.as_deref())
                .unwrap_or(sync.direction);
            let conflict = self
                .conflict(&format!("{key}.conflict"), conflict.as_deref())
                .unwrap_or(sync.conflict);
            self.file_override = None;
            let id_parsed = match id.parse::<PairId>() {
                Ok(id) => Some(id),
                Err(e) => {
                    self.issue_in(&file, format!("{key}.id"), e);
                    None
                }
            };
            if let Some(first) = seen.get(&id) {
                self.issue_in(
                    &file,
                    format!("{key}.id"),
                    format!("duplicate pair id {id:?} (first at {first})"),
                );
            } else {
                seen.insert(id.clone(), format!("{}: {key}", file.display()));
            }
            let mut side = |name: &str, value: &str| -> Option<CalendarRef> {
                match value.parse::<CalendarRef>() {
                    Err(e) => {
                        self.issue_in(&file, format!("{key}.{name}"), e);
                        None
                    }
                    Ok(c) if !servers.contains_key(&c.server) => {
                        self.issue_in(
                            &file,
                            format!("{key}.{name}"),
                            format!("unknown server {:?} (configured: {})", c.server, known()),
                        );
                        None
                    }
                    Ok(c) => Some(c),
                }
            };
            let (s, t) = (side("source", &source), side("target", &target));
            if let (Some(id), Some(source), Some(target)) = (id_parsed, s, t) {
                if source == target {
                    self.issue_in(
                        &file,
                        format!("{key}.target"),
                        "is the same calendar as source",
                    );
                    continue;
                }
                if !targets.insert(target.clone()) {
                    self.issue_in(
                        &file,
                        format!("{key}.target"),
                        format!("{target} is already the target of another pair"),
                    );
                    continue;
                }
                if let Some(addr) = address {
                    let addr = crate::domain::identity::normalize_address(&addr);
                    if !addr.contains('@') || addr.contains(char::is_whitespace) {
                        self.issue_in(
                            &file,
                            format!("{key}.address"),
                            format!("{addr:?} is not an email address"),
                        );
                    } else if let Some(other) = addresses.insert(addr.clone(), id.clone()) {
                        self.issue_in(
                            &file,
                            format!("{key}.address"),
                            format!("{addr} is already the address of pair {other}"),
                        );
                    }
                }
                pairs.push(Pair {
                    id,
                    source,
                    target,
                    direction,
                    conflict,
                });
            }
        }
        (pairs, addresses)
    }
}

/// One pair as written, in `[[pairs]]` or a line of `pairs_csv`.
struct Entry {
    file: PathBuf,
    /// Where in `file`: `pairs[3]` or `line 12`.
    key: String,
    id: String,
    source: String,
    target: String,
    /// The mailbox address.
    address: Option<String>,
    direction: Option<String>,
    conflict: Option<String>,
}

impl Validator {
    /// The pairs of `pairs_csv`: `id,source,target[,address[,direction[,conflict]]]` per line,
    /// an empty column meaning the default, an optional header line.
    fn csv_entries(&mut self, csv: &str, base: &Path) -> Vec<Entry> {
        let Some(path) = self.existing_file("pairs_csv", base, csv) else {
            return Vec::new();
        };
        let rows = match read_csv(&path, 3..=6) {
            Ok(rows) => rows,
            Err((line, reason)) => {
                self.issue_in(&path, format!("line {line}"), reason);
                return Vec::new();
            }
        };
        let header = |line: u64, row: &[String]| {
            line == 1 && row[0] == "id" && row[1] == "source" && row[2] == "target"
        };
        rows.into_iter()
            .filter(|(line, row)| !header(*line, row))
            .map(|(line, row)| {
                let col = |i: usize| row.get(i).filter(|c| !c.is_empty()).cloned();
                Entry {
                    file: path.clone(),
                    key: format!("line {line}"),
                    id: row[0].clone(),
                    source: row[1].clone(),
                    target: row[2].clone(),
                    address: col(3),
                    direction: col(4),
                    conflict: col(5),
                }
            })
            .collect()
    }
}

/// Records as (line number, fields).
type CsvRows = Vec<(u64, Vec<String>)>;

/// Reads a headerless CSV with exactly `columns` fields per record; an error is (line, reason).
fn read_csv(
    path: &Path,
    columns: std::ops::RangeInclusive<usize>,
) -> Result<CsvRows, (u64, String)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(true)
        .from_path(path)
        .map_err(|e| (0, e.to_string()))?;
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| (e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().all(str::is_empty) {
            continue;
        }
        if !columns.contains(&rec.len()) {
            let expected = match columns.end() - columns.start() {
                0 => columns.start().to_string(),
                1 => format!("{} or {}", columns.start(), columns.end()),
                _ => format!("{} to {}", columns.start(), columns.end()),
            };
            return Err((
                line,
                format!(
                    "expected {expected} comma-separated fields, found {}",
                    rec.len()
                ),
            ));
        }
        rows.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok(rows)
}
