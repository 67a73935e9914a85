//! The configuration as written: what serde reads from the TOML, before validation.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    #[serde(default)]
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) sync: RawSync,
    #[serde(default)]
    pub(super) agents: RawAgents,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) alerts: RawAlerts,
    #[serde(default)]
    pub(super) servers: BTreeMap<String, RawServer>,
    #[serde(default)]
    pub(super) rewrite: RawRewrite,
    #[serde(default)]
    pub(super) pairs: Vec<RawPair>,
    pub(super) pairs_csv: Option<String>,
    #[serde(default)]
    pub(super) mailboxes: Vec<RawMailbox>,
    pub(super) mailboxes_csv: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) url: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub(super) interval: Option<String>,
    pub(super) pause: Option<String>,
    pub(super) backoff_max: Option<String>,
    pub(super) lease_ttl: Option<String>,
    pub(super) safety_interval: Option<String>,
    pub(super) push_lifetime: Option<String>,
    pub(super) window_past: Option<String>,
    pub(super) window_future: Option<String>,
    pub(super) extras: Option<String>,
    pub(super) direction: Option<String>,
    pub(super) conflict: Option<String>,
    pub(super) discover_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgents {
    pub(super) count: Option<i64>,
    pub(super) passes: Option<i64>,
    pub(super) processor_indexes: Option<Vec<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) listen: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) protect_pages: Option<bool>,
    pub(super) public_url: Option<String>,
    pub(super) tls_cert: Option<String>,
    pub(super) tls_key: Option<String>,
    pub(super) metrics_pairs: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub(super) lag: Option<String>,
    pub(super) failed_requests_percent: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) kind: String,
    pub(super) path: Option<String>,
    pub(super) url: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) requests_per_second: Option<i64>,
    pub(super) max_concurrency: Option<i64>,
    pub(super) write_concurrency: Option<toml::Value>,
    pub(super) timeout: Option<String>,
    pub(super) max_answer_size: Option<String>,
    pub(super) home: Option<String>,
    pub(super) principal: Option<String>,
    pub(super) default_calendar: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRewrite {
    #[serde(default)]
    pub(super) domains: BTreeMap<String, String>,
    pub(super) addresses: Option<String>,
    #[serde(default)]
    pub(super) reverse_domains: BTreeMap<String, String>,
    pub(super) reverse_addresses: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPair {
    pub(super) id: String,
    pub(super) source: String,
    pub(super) target: String,
    /// The mailbox's address, for the repair assistant's cross-calendar check.
    pub(super) address: Option<String>,
    pub(super) direction: Option<String>,
    pub(super) conflict: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMailbox {
    pub(super) id: String,
    pub(super) source: String,
    pub(super) target: String,
    pub(super) direction: Option<String>,
    pub(super) conflict: Option<String>,
}
