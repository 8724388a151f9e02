//! Headroom's management API: what is in memory, and taking it out.
//!
//! - `GET /api/memory/status`: the machine, the pool and each model's measured memory.
//! - `POST /api/memory/flush`: unload every unpinned model.
//! - `DELETE /api/memory/models/{id}`: stop one model (404 not loaded, 409 pinned).
//! - `POST /api/memory/models/{id}/load`: load one, with admission.
//! - `GET /api/models`: every model on disk, its estimate and whether it fits now.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::pool::ModelStatus;

pub async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let pool = state.pool.status().await?;
    let snapshot = state.probe.snapshot().ok();
    let total = snapshot.map(|s| s.total);
    let percent = |part: u64, whole: Option<u64>| {
        whole
            .filter(|w| *w > 0)
            .map(|w| round1(part as f64 * 100.0 / w as f64))
    };
    let models: Vec<Value> = pool
        .models
        .iter()
        .map(|m| model_json(m, total, pool.limit))
        .collect();
    Ok(Json(json!({
        "system": snapshot.map(|s| json!({
            "total": s.total,
            "used": s.used,
            "available": s.available,
            "percent_used": percent(s.used, Some(s.total)),
            "wired": s.wired,
            "compressed": s.compressed,
            "cached_files": s.cached_files,
            "swap_used": s.swap_used,
            // The operating system's own level (macOS); Linux gives stall figures instead.
            "pressure": s.pressure,
            "stall": s.stall,
            "cgroup_limited": s.cgroup_limited,
        })),
        "pool": {
            "limit": pool.limit,
            "used": pool.used,
            "percent_of_limit": percent(pool.used, Some(pool.limit)),
            "headroom_margin": pool.margin,
            "headroom_margins": pool.margins,
            "tier": pool.tier,
            "memory_floor": pool.floor,
        },
        "process_rss": crate::memory::process_rss(),
        "models": models,
    })))
}

fn model_json(m: &ModelStatus, total: Option<u64>, limit: u64) -> Value {
    let held = m.memory.map_or(0, |f| f.total);
    let percent = |whole: u64| (whole > 0).then(|| round1(held as f64 * 100.0 / whole as f64));
    json!({
        "id": m.id,
        "engine": m.engine,
        "state": m.state,
        "pinned": m.pinned,
        "memory": m.memory,
        "estimate": m.estimate,
        "estimate_error_percent": m.estimate_error_percent.map(round1),
        "percent_of_system": total.and_then(percent),
        "percent_of_limit": percent(limit),
        "in_flight": m.in_flight,
        "load_ms": m.load_ms,
        "protection": m.protection,
        "loaded_at": m.loaded_at,
        "last_used": m.last_used,
        "expires_at": m.expires_at,
        "stats": m.stats,
    })
}

pub async fn flush(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let report = state.pool.flush().await?;
    Ok(Json(json!(report)))
}

pub async fn unload(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // An id that is not even a model on disk is "not found" too, said so.
    let report = state.pool.unload(&id).await?;
    Ok(Json(json!(report)))
}

pub async fn load(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let file = state.catalog.find(&id)?;
    let status = state.pool.load(file).await?;
    let total = state.probe.system().map(|s| s.total);
    let limit = state.pool.status().await?.limit;
    Ok(Json(model_json(&status, total, limit)))
}

/// The timeline: samples of the last ten minutes, marks, and the current generation's peak.
pub async fn history(State(state): State<AppState>) -> Json<crate::history::Timeline> {
    Json(state.history.timeline())
}

/// Every model on disk: size, estimate, whether it is loaded and whether it would fit now.
pub async fn models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let catalog = state.catalog.clone();
    let conversations = state.conversations.clone();
    let files = tokio::task::spawn_blocking(move || {
        let saved =
            |path: &std::path::Path| conversations.as_ref().map_or(0, |c| c.bytes_for(path));
        catalog
            .list()
            .into_iter()
            .map(|file| {
                let bytes = saved(&file.path);
                (file, bytes)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let pool = state.pool.status().await?;
    let own = state.pulls.folder().canonicalize().ok();
    let mut models = Vec::with_capacity(files.len());
    for (file, saved) in files {
        // What `DELETE /api/models/{id}` would delete: a file in Headroom's own folder.
        let deletable =
            file.source.is_none() && own.is_some() && file.path.parent() == own.as_deref();
        let loaded = pool.models.iter().find(|m| m.id == file.id);
        let engine = state.pool.engine_for(&file);
        let entry = match state.pool.fit(&file).await {
            Ok((estimate, fit)) => json!({
                "id": file.id,
                "path": file.path,
                "source": file.source,
                "engine": engine,
                "size": file.size,
                "estimate": estimate,
                "loaded": loaded.is_some(),
                "state": loaded.map(|m| m.state),
                "fits": fit.fits,
                "would_evict": fit.would_evict,
                "reason": fit.reason,
                "saved_conversations": saved,
                "deletable": deletable,
            }),
            // A file that is not a usable model is listed with why, not hidden.
            Err(e) => json!({
                "id": file.id,
                "path": file.path,
                "source": file.source,
                "engine": engine,
                "size": file.size,
                "estimate": null,
                "loaded": false,
                "state": null,
                "fits": false,
                "would_evict": [],
                "reason": e.to_string(),
                "saved_conversations": saved,
                "deletable": deletable,
            }),
        };
        models.push(entry);
    }
    Ok(Json(json!({ "models": models })))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
