//! What an operator asks over HTTP: a resync or a cutover of a pair, each behind the bearer
//! token.

use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::json;
use tracing::{info, warn};

use crate::engine::PassOptions;

use super::shared::{Shared, Unavailable, Web, not_found};

/// Compares in time independent of where the first difference is.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(json!({ "error": reason })),
    )
        .into_response()
}

/// `None` when the request carries the bearer token; else the refusal to answer with.
pub(super) fn refused(web: &Web, headers: &HeaderMap, what: &str, id: &str) -> Option<Response> {
    let Some(token) = &web.token else {
        return Some(unauthorized(&format!(
            "{what} over HTTP needs a bearer token: set [http] token_env"
        )));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        None => Some(unauthorized("missing bearer token")),
        Some(t) if !same(t.as_bytes(), token.expose_secret().as_bytes()) => {
            warn!(about = %id, "{what} refused: wrong bearer token");
            Some(unauthorized("wrong bearer token"))
        }
        Some(_) => None,
    }
}

/// Cuts a pair over, as `tandem cutover` does.
pub(super) async fn api_cutover(
    Extract(web): Extract<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    cutover(web, id, headers, false).await
}

/// Rolls a cutover back, as `tandem cutover --undo` does.
pub(super) async fn api_cutover_undo(
    Extract(web): Extract<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    cutover(web, id, headers, true).await
}

async fn cutover(web: Shared, id: String, headers: HeaderMap, undo: bool) -> Response {
    if let Some(refusal) = refused(&web, &headers, "cutover", &id) {
        return refusal;
    }
    let Some(pair) = web.config.pair(&id).cloned() else {
        return not_found(&id);
    };
    if !undo && let Err(e) = web.config.rewrite.inverse() {
        let body = json!({ "pair": id, "error": format!("rewrite: {e}") });
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
    }
    match web.engine.cutover(&pair, undo).await {
        Ok(Ok(changed)) => {
            info!(pair = %id, undo = undo, changed, "cutover asked for over HTTP");
            let authority = if undo { "source" } else { "target" };
            let body = json!({ "pair": id, "authority": authority, "changed": changed });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Ok(Err(locked)) => {
            let body = json!({ "pair": id, "error": format!("calendar {}: {locked}; try again", locked.calendar) });
            (StatusCode::CONFLICT, axum::Json(body)).into_response()
        }
        Err(e) => Unavailable::from(e).into_response(),
    }
}

/// Starts a one-shot resync of a pair (the lease keeps it from racing the pair's own agent).
pub(super) async fn api_resync(
    Extract(web): Extract<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refused(&web, &headers, "resync", &id) {
        return refusal;
    }
    let Some(pair) = web.config.pair(&id).cloned() else {
        return not_found(&id);
    };
    if !web
        .resyncing
        .lock()
        .expect("not poisoned")
        .insert(id.clone())
    {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({ "pair": id, "error": "a resync of this pair is already running" })),
        )
            .into_response();
    }
    info!(pair = %id, "resync asked for over HTTP");
    let task = web.clone();
    tokio::spawn(async move {
        let opts = PassOptions {
            dry_run: false,
            full: true,
            force_delete: false,
        };
        match task.engine.sync_pair(&pair, opts).await {
            Ok(r) => match &r.error {
                Some(e) => warn!(pair = %pair.id, error = %e, "resync failed"),
                None => {
                    info!(pair = %pair.id, created = r.created, updated = r.updated, deleted = r.deleted, failed = r.failed, "resync finished")
                }
            },
            Err(e) => warn!(pair = %pair.id, error = %e, "resync failed: state store"),
        }
        task.resyncing
            .lock()
            .expect("not poisoned")
            .remove(pair.id.as_str());
    });
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "pair": id, "resync": "started" })),
    )
        .into_response()
}
