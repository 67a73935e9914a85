//! What `tandem run` serves on `[http] listen`: the status page, the JSON API, Prometheus
//! `/metrics` and `/healthz`. Everything is read from the state store through `observe`, so the
//! page, the API, the metrics and `tandem status` agree. The page is self-contained (styles
//! inline, no scripts from elsewhere) and reloads itself.

use axum::Router;
use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::warn;

mod actions;
mod api;
mod metrics;
mod page;
mod picture;
mod shared;

use actions::{api_cutover, api_cutover_undo, api_resync, refused};
use api::{
    api_agents, api_history, api_leases, api_nodes, api_pair, api_pairs, api_quarantine,
    api_servers,
};
pub use metrics::encode_metrics;
use metrics::metrics;
pub use page::render_page;
use page::{page, pair_page};
use shared::Shared;
pub use shared::Web;

pub(crate) fn router(web: Shared) -> Router {
    let pages = Router::new()
        .route("/", get(page))
        .route("/pairs/{id}", get(pair_page))
        .route("/api/pairs", get(api_pairs))
        .route("/api/pairs/{id}", get(api_pair))
        .route("/api/pairs/{id}/resync", post(api_resync))
        .route("/api/pairs/{id}/cutover", post(api_cutover))
        .route("/api/pairs/{id}/cutover/undo", post(api_cutover_undo))
        .route("/api/agents", get(api_agents))
        .route("/api/servers", get(api_servers))
        .route("/api/leases", get(api_leases))
        .route("/api/nodes", get(api_nodes))
        .route("/api/quarantine", get(api_quarantine))
        .route("/api/history", get(api_history))
        .route("/metrics", get(metrics));
    let pages = match web.config.http.protect_pages {
        true => pages.route_layer(axum::middleware::from_fn_with_state(web.clone(), guard)),
        false => pages,
    };
    // Servers pushing calendar changes carry no token: the unguessable URL is the credential.
    pages
        .route("/healthz", get(healthz))
        .route("/push/{token}", post(push))
        .with_state(web)
}

/// A WebDAV-Push delivery: its calendar's pair is due at once. The body (encrypted) is not
/// read: the token says which calendar changed, and nothing else of a push is trusted.
async fn push(Extract(web): Extract<Shared>, Path(token): Path<String>) -> Response {
    let Some(hub) = &web.live.push else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match hub.received(&web.state, &token).await {
        Ok(true) => StatusCode::CREATED.into_response(),
        // 404 ends the subscription on the server (a forged or stale URL).
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            warn!(error = %e, "recording a push failed; the pair is woken anyway by its next poll");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// `[http] protect_pages`: no page or call without the bearer token.
async fn guard(
    Extract(web): Extract<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_string();
    match refused(&web, request.headers(), "reading the status", &path) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

async fn healthz(Extract(web): Extract<Shared>) -> Response {
    if let Some(Err(reason)) = web.live.membership.as_ref().map(|m| m.health()) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response();
    }
    match web.state.ping().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the state database does not answer: {e}\n"),
        )
            .into_response(),
    }
}

/// Serves on `listener`, over TLS with `tls`, until `stop` resolves (connections bounded as
/// [`crate::service::listen`] says).
pub async fn serve(
    web: Shared,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::service::listen::serve(listener, tls, router(web), stop).await
}

#[cfg(test)]
mod tests {
    use super::actions::same;
    use super::shared::{esc, seg};
    use super::*;
    use crate::service::observe::Snapshot;

    #[test]
    fn html_and_links_are_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }

    fn snapshot_with_agents(online: usize, processors: &[usize]) -> Snapshot {
        Snapshot {
            generated_at: 0,
            pairs: Vec::new(),
            states: Default::default(),
            servers: Vec::new(),
            online_processors: online,
            agents: processors
                .iter()
                .enumerate()
                .map(|(i, &p)| crate::service::observe::AgentView {
                    agent: i,
                    processor: p,
                    pairs: 5,
                    items: 50,
                    passes: Some(3),
                    busy_seconds: Some(1.5),
                })
                .collect(),
            agents_warning: Some("processor(s) 1 have no agent".into()),
            leases: Vec::new(),
            nodes: Vec::new(),
            quarantined: 0,
            alerts: crate::service::observe::AlertThresholds {
                lag_seconds: 1200.0,
                failed_requests_percent: 80.0,
            },
        }
    }

    #[test]
    fn an_idle_processor_shows_on_the_page_and_in_metrics() {
        let s = snapshot_with_agents(2, &[0, 0]);
        let page = render_page(&s, &[], &[]);
        assert!(page.contains("class=\"proc\" data-processor=\"0\" data-agents=\"2\""));
        assert!(page.contains("class=\"proc idle\" data-processor=\"1\" data-agents=\"0\""));
        assert!(page.contains("id=\"agents-warning\">processor(s) 1 have no agent"));
        let m = encode_metrics(&s, 1000);
        assert!(m.contains("tandem_idle_processors 1\n"), "{m}");
        assert!(
            m.contains("tandem_agent_pairs{agent=\"1\",processor=\"0\"} 5\n"),
            "{m}"
        );

        let spread = snapshot_with_agents(2, &[0, 1]);
        assert!(!render_page(&spread, &[], &[]).contains("proc idle"));
        assert!(encode_metrics(&spread, 1000).contains("tandem_idle_processors 0\n"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret-token", b"secret-token"));
        assert!(!same(b"secret-token", b"secret-tokem"));
        assert!(!same(b"secret", b"secret-token"));
    }
}
