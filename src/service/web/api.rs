//! The JSON API's reads: every pair (and the mailboxes they make up), one pair, agents, servers,
//! nodes, leases, quarantine, and the last hour minute by minute.

use axum::extract::{Path, State as Extract};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::service::rollup::mailboxes;

use super::shared::{Shared, Unavailable, not_found, snap};

pub(super) async fn api_pairs(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok(axum::Json(json!({
        "generated_at": s.generated_at,
        "mailboxes": mailboxes(&s.pairs),
        "pairs": s.pairs,
    }))
    .into_response())
}

pub(super) async fn api_pair(
    Extract(web): Extract<Shared>,
    Path(id): Path<String>,
) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    let Some(pair) = s.pairs.into_iter().find(|p| p.id == id) else {
        return Ok(not_found(&id));
    };
    let passes = web.state.passes(&id, 20).await?;
    let items = web
        .state
        .quarantine_list(id.parse::<crate::domain::types::PairId>().ok().as_ref())
        .await?;
    Ok(axum::Json(json!({ "pair": pair, "passes": passes, "quarantine": items })).into_response())
}

pub(super) async fn api_agents(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok(axum::Json(json!({
        "online_processors": s.online_processors,
        "agents": s.agents,
        "warning": s.agents_warning,
    }))
    .into_response())
}

pub(super) async fn api_servers(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok(axum::Json(json!({ "servers": s.servers })).into_response())
}

pub(super) async fn api_nodes(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok(axum::Json(json!({ "nodes": s.nodes })).into_response())
}

pub(super) async fn api_leases(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let s = snap(&web).await?;
    Ok(axum::Json(json!({ "leases": s.leases })).into_response())
}

pub(super) async fn api_quarantine(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let items = web.state.quarantine_list(None).await?;
    Ok(axum::Json(json!({ "items": items })).into_response())
}

pub(super) async fn api_history(Extract(web): Extract<Shared>) -> Result<Response, Unavailable> {
    let now = crate::domain::time::now_ms();
    let minutes = web
        .state
        .minutes(now - crate::domain::time::HOUR_MS)
        .await?;
    Ok(axum::Json(json!({ "generated_at": now, "minutes": minutes })).into_response())
}
