//! Validation: the raw form as written becomes a [`Config`], every problem noted as
//! `FILE: KEY: reason`. The state, sync, agents, http, alerts and rewrite sections are checked
//! here; servers, pairs and mailboxes in rooms of their own.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::direction::{ConflictPolicy, Direction};
use crate::domain::pair::Extras;
use crate::domain::types::PairId;

use super::csv::read_csv;
use super::defaults::{
    DEFAULT_BACKOFF_MAX, DEFAULT_DISCOVER_INTERVAL, DEFAULT_LISTEN, DEFAULT_METRICS_PAIRS,
    DEFAULT_PASSES_PER_AGENT, DEFAULT_PAUSE, DEFAULT_PUSH_LIFETIME, DEFAULT_SAFETY_INTERVAL,
    DEFAULT_STATE_URL, online_processors,
};
use super::raw::{Raw, RawAgents, RawHttp, RawRewrite, RawState, RawSync};
use super::types::{
    AgentsConfig, AlertsConfig, Config, ConfigIssue, HttpConfig, RewriteConfig, ServerConfig,
    StateConfig, SyncConfig, TlsFiles,
};

pub(super) struct Validator {
    pub(super) file: PathBuf,
    /// The file issues are reported in while a pair from `pairs_csv` is read.
    pub(super) file_override: Option<PathBuf>,
    pub(super) issues: Vec<ConfigIssue>,
}

impl Validator {
    pub(super) fn issue(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.issues.push(ConfigIssue {
            file: self
                .file_override
                .clone()
                .unwrap_or_else(|| self.file.clone()),
            key: key.into(),
            reason: reason.into(),
        });
    }

    pub(super) fn duration(&mut self, key: &str, value: Option<&str>) -> Option<Duration> {
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
    pub(super) fn choice<T>(
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

    pub(super) fn direction(&mut self, key: &str, value: Option<&str>) -> Option<Direction> {
        self.choice(key, value, Direction::parse, ["one-way", "two-way"])
    }

    pub(super) fn conflict(&mut self, key: &str, value: Option<&str>) -> Option<ConflictPolicy> {
        self.choice(key, value, ConflictPolicy::parse, ["authority", "newest"])
    }

    /// The direction and conflict policy of the entry at `key` in `file`, `[sync]`'s where it
    /// gives none.
    pub(super) fn way_at(
        &mut self,
        file: &Path,
        key: &str,
        (direction, conflict): (Option<&str>, Option<&str>),
        sync: &SyncConfig,
    ) -> (Direction, ConflictPolicy) {
        self.file_override = Some(file.to_path_buf());
        let direction = self.direction(&format!("{key}.direction"), direction);
        let conflict = self.conflict(&format!("{key}.conflict"), conflict);
        self.file_override = None;
        (
            direction.unwrap_or(sync.direction),
            conflict.unwrap_or(sync.conflict),
        )
    }

    /// Whether `id` is the first of its kind (`what`: "pair", "mailbox") in `seen`; a second is
    /// an issue at `KEY.id` naming where the first is.
    pub(super) fn first_id(
        &mut self,
        seen: &mut HashMap<PairId, String>,
        (file, key): (&Path, &str),
        id: &PairId,
        what: &str,
    ) -> bool {
        let here = format!("{}: {key}", file.display());
        match seen.get(id) {
            Some(first) => {
                let why = format!("duplicate {what} id {:?} (first at {first})", id.as_str());
                self.issue_in(file, format!("{key}.id"), why);
                false
            }
            None => {
                seen.insert(id.clone(), here);
                true
            }
        }
    }

    pub(super) fn existing_file(&mut self, key: &str, base: &Path, value: &str) -> Option<PathBuf> {
        let path = base.join(value);
        if path.is_file() {
            Some(path)
        } else {
            self.issue(key, format!("file {} does not exist", path.display()));
            None
        }
    }

    pub(super) fn validate(&mut self, raw: Raw, base: &Path) -> Config {
        let state = self.state(raw.state, base);
        let sync = self.sync(raw.sync);
        let agents = self.agents(raw.agents);
        let http = self.http(raw.http, base);
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
        let mailboxes = self.mailboxes(
            raw.mailboxes,
            raw.mailboxes_csv.as_deref(),
            base,
            &servers,
            &sync,
        );
        self.overlaps(&pairs, &mailboxes, &servers);
        let two_way = pairs
            .iter()
            .filter(|p| p.direction == Direction::TwoWay)
            .map(|p| p.id.as_str())
            .chain(
                (mailboxes.iter())
                    .filter(|m| m.direction == Direction::TwoWay)
                    .map(|m| m.id.as_str()),
            );
        self.way_back(&rewrite, two_way.collect());
        Config {
            file: self.file.clone(),
            state,
            sync,
            agents,
            http,
            alerts,
            servers,
            rewrite,
            pairs,
            mailboxes,
            addresses,
        }
    }

    pub(super) fn http(&mut self, raw: RawHttp, base: &Path) -> HttpConfig {
        let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen.parse().unwrap_or_else(|_| {
            self.issue(
                "http.listen",
                format!("{listen:?} is not an address like 127.0.0.1:8686"),
            );
            DEFAULT_LISTEN.parse().expect("default listen address")
        });
        let token_env = raw.token_env;
        if token_env.as_deref().is_some_and(|v| v.trim().is_empty()) {
            self.issue("http.token_env", "names no environment variable");
        }
        let protect_pages = raw.protect_pages.unwrap_or(false);
        if protect_pages && token_env.is_none() {
            self.issue(
                "http.protect_pages",
                "needs http.token_env: the pages would ask for a token no one has",
            );
        }
        let public_url = raw.public_url.filter(|u| {
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
        let tls = match (raw.tls_cert, raw.tls_key) {
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
        HttpConfig {
            listen,
            token_env,
            protect_pages,
            public_url,
            tls,
            metrics_pairs: raw.metrics_pairs.unwrap_or(DEFAULT_METRICS_PAIRS),
        }
    }

    pub(super) fn state(&mut self, raw: RawState, base: &Path) -> StateConfig {
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

    pub(super) fn sync(&mut self, raw: RawSync) -> SyncConfig {
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
        let discover_interval = self
            .duration("sync.discover_interval", raw.discover_interval.as_deref())
            .unwrap_or(DEFAULT_DISCOVER_INTERVAL);
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
            discover_interval,
        }
    }

    pub(super) fn agents(&mut self, raw: RawAgents) -> AgentsConfig {
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

    pub(super) fn rewrite(&mut self, raw: RawRewrite, base: &Path) -> RewriteConfig {
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
    pub(super) fn address_map(&mut self, path: &Path, expected: &str) -> BTreeMap<String, String> {
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

    /// Two-way pairs and mailboxes (`two_way`, by id) write copies back to the old org: the
    /// rewrite must have a way back.
    pub(super) fn way_back(&mut self, rewrite: &RewriteConfig, two_way: Vec<&str>) {
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

    pub(super) fn issue_in(
        &mut self,
        file: &Path,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.issues.push(ConfigIssue {
            file: file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        });
    }
}

/// One line of a pairs or mailboxes CSV: its file, where in it (`line 12`), its fields.
pub(super) type CsvLine = (PathBuf, String, Vec<String>);

impl Validator {
    /// The lines of the CSV file `key` names (`id,source,target,...`, `columns` fields each, an
    /// optional header line); a problem is an issue at its line, and no lines.
    pub(super) fn csv_lines(
        &mut self,
        key: &str,
        csv: &str,
        base: &Path,
        columns: std::ops::RangeInclusive<usize>,
    ) -> Vec<CsvLine> {
        let Some(path) = self.existing_file(key, base, csv) else {
            return Vec::new();
        };
        let rows = match read_csv(&path, columns) {
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
            .map(|(line, row)| (path.clone(), format!("line {line}"), row))
            .collect()
    }
}
