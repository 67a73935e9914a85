//! Opening a store from plain values: a folder of `.ics` files or a CalDAV server, behind its
//! request limits.

use std::sync::Arc;

use crate::domain::error::{StoreError, StoreResult};

use super::calendar::CalendarStore;
use super::{caldav, http, limit, vdir};

/// A server to open, as plain values.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server's name, for messages.
    pub name: String,
    pub location: Location,
    pub requests_per_second: Option<u32>,
    pub max_concurrency: Option<usize>,
    /// Writes in flight (caldav): `None` finds the best number itself, up to `max_concurrency`.
    pub write_concurrency: Option<usize>,
    /// Per HTTP request (caldav).
    pub timeout: std::time::Duration,
    /// The largest answer read from the server, in bytes (caldav).
    pub max_answer: usize,
}

/// Where a server's calendars are.
#[derive(Debug, Clone)]
pub enum Location {
    Vdir {
        path: std::path::PathBuf,
    },
    Caldav {
        url: String,
        username: Option<String>,
        password: Option<secrecy::SecretString>,
    },
}

/// Opens the store `server` names, behind its request limits.
pub fn open(server: &Endpoint) -> StoreResult<Arc<dyn CalendarStore>> {
    let store: Arc<dyn CalendarStore> = match &server.location {
        Location::Vdir { path } => Arc::new(vdir::VdirStore::new(path.clone())),
        Location::Caldav {
            url,
            username,
            password,
        } => {
            // Limits apply per HTTP request inside the transport, retries and pagination included.
            let credentials = match (username, password) {
                (Some(u), Some(p)) => Some((u.as_str(), p)),
                (None, Some(p)) => Some(("", p)),
                _ => None,
            };
            let settings = http::HttpSettings {
                requests_per_second: server.requests_per_second,
                max_concurrency: server.max_concurrency.unwrap_or(http::DEFAULT_CONCURRENCY),
                write_concurrency: server.write_concurrency,
                timeout: server.timeout,
                max_answer: server.max_answer,
                ..Default::default()
            };
            let store = caldav::CaldavStore::new(url, credentials, settings).map_err(|e| {
                StoreError::new(e.kind, format!("server {}: {}", server.name, e.message))
            })?;
            if let Some(h) = store.health() {
                h.name(&server.name);
            }
            return Ok(Arc::new(store));
        }
    };
    if server.requests_per_second.is_none() && server.max_concurrency.is_none() {
        return Ok(store);
    }
    Ok(Arc::new(limit::Limited::new(
        store,
        server.requests_per_second,
        server.max_concurrency,
    )))
}
