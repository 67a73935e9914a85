//! What the web's rooms share: the server's state, answering a state-store failure or an
//! unknown pair, the operator's view they all read, and escaping for HTML and links.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde_json::json;

use crate::config::Config;
use crate::engine::Engine;
use crate::service::observe::{Live, Snapshot, snapshot};
use crate::state::State;

/// How often the page reloads itself.
pub(super) const REFRESH_SECONDS: u32 = 10;
/// Pairs and quarantined items listed on the page (the API has them all).
pub(super) const PAGE_ROWS: usize = 50;

pub struct Web {
    pub config: Arc<Config>,
    pub state: State,
    pub engine: Arc<Engine>,
    pub live: Live,
    /// The bearer token `POST /api/pairs/{id}/resync` asks for.
    pub token: Option<SecretString>,
    /// Pairs with a resync asked for over HTTP and still running.
    pub(super) resyncing: Mutex<HashSet<String>>,
}

impl Web {
    /// `token`: from `HttpConfig::token`, read once at start.
    pub fn new(
        config: Arc<Config>,
        state: State,
        engine: Arc<Engine>,
        live: Live,
        token: Option<SecretString>,
    ) -> Web {
        Web {
            config,
            state,
            engine,
            live,
            token,
            resyncing: Mutex::default(),
        }
    }
}

pub(super) type Shared = Arc<Web>;

/// A state-store failure, answered as 503 with the reason.
pub(super) struct Unavailable(pub(super) String);

impl IntoResponse for Unavailable {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": self.0 })),
        )
            .into_response()
    }
}

impl From<crate::state::StateError> for Unavailable {
    fn from(e: crate::state::StateError) -> Self {
        Unavailable(e.to_string())
    }
}

pub(super) async fn snap(web: &Web) -> Result<Snapshot, Unavailable> {
    Ok(snapshot(&web.config, &web.state, &web.live).await?)
}

pub(super) fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": format!("no pair with id {what:?}") })),
    )
        .into_response()
}

/// Escapes text for HTML.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a path segment for a link.
pub(super) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}
