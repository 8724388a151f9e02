//! `GET /api/settings` and `PUT /api/settings`: the preferences, read and changed live.
//!
//! A PUT is a JSON merge patch (RFC 7396) of the settings: only the keys it names change, and
//! `null` resets one to its default. The result is validated as a whole, saved atomically, and
//! applied at once where it can be (limits, margins, timeouts, pinned models); settings that
//! shape a running server (port, slots, context, threads, folders) apply at the next start and
//! are listed as such.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::error::ApiError;
use super::AppState;
use crate::config::{SettingError, Settings};
use crate::live::ApplyError;

pub async fn get(State(state): State<AppState>) -> Json<Value> {
    Json(view(&state, &[], &[]))
}

/// What the API shows in place of a secret (the API key, the Hub token): the secret itself
/// never leaves the server, and a client that sends the settings back unchanged (this value
/// included) keeps it.
const HIDDEN_KEY: &str = "(hidden)";

/// The settings that are secrets.
const SECRETS: [&str; 2] = ["api_key", "hub_token"];

fn view(state: &AppState, changed: &[String], restart_required: &[String]) -> Value {
    let mut settings = state.live.store().live();
    for secret in [&mut settings.api_key, &mut settings.hub_token] {
        if secret.is_some() {
            *secret = Some(HIDDEN_KEY.into());
        }
    }
    json!({
        "settings": settings,
        "path": state.live.store().path(),
        "notices": state.live.store().notices(),
        "changed": changed,
        "restart_required": restart_required,
    })
}

pub async fn put(
    State(state): State<AppState>,
    JsonBody(mut patch): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    if !patch.is_object() {
        return Err(invalid(
            "(body)",
            "the body must be a JSON object of settings",
        ));
    }
    // `preload` is the old name of `pinned`: a client that still sends it means the same.
    if let Some(fields) = patch.as_object_mut() {
        if let Some(pinned) = fields.remove("preload") {
            fields.entry("pinned").or_insert(pinned);
        }
    }
    if let Some(fields) = patch.as_object_mut() {
        for secret in SECRETS {
            if fields.get(secret).and_then(Value::as_str) == Some(HIDDEN_KEY) {
                fields.remove(secret);
            }
        }
    }
    let store = state.live.store();
    let before = store.live();
    // The file gets the patch on top of what it said; what is in force gets it on top of what
    // is in force (which may include environment overrides).
    let file = patched(&store.file(), &patch)?;
    let live = patched(&before, &patch)?;
    let total_ram = state.probe.system().map(|s| s.total);
    for candidate in [&file, &live] {
        candidate.validate("settings").map_err(setting_error)?;
        if let Some(total) = total_ram {
            candidate
                .validate_for_machine(total, "settings")
                .map_err(setting_error)?;
        }
    }
    // A model pinned now must exist: it loads at once, and would otherwise fail only in the log.
    if let Some(missing) = live
        .pinned
        .iter()
        .filter(|id| !before.pinned.contains(id))
        .find(|id| state.catalog.find(id).is_err())
    {
        return Err(invalid(
            "pinned",
            &format!(
                "pinned: no model '{missing}' in the model folders; pin a model that is on disk"
            ),
        ));
    }
    let event = state.live.apply(file, live).await.map_err(|e| match e {
        ApplyError::NotSaved(e) => ApiError::server("settings_not_saved", e.to_string()),
        ApplyError::Pool(e) => ApiError::from(e),
    })?;
    Ok(Json(view(&state, &event.changed, &event.restart_required)))
}

/// `base` with the merge patch applied, read back as settings (unknown keys and wrong types are
/// errors naming the key).
fn patched(base: &Settings, patch: &Value) -> Result<Settings, ApiError> {
    let mut value = serde_json::to_value(base)
        .map_err(|e| ApiError::server("settings_error", e.to_string()))?;
    json_patch::merge(&mut value, patch);
    let deserializer = value;
    serde_path_to_error::deserialize::<_, Settings>(deserializer).map_err(|e| {
        let field = e.path().to_string();
        invalid(&field, &e.inner().to_string())
    })
}

fn setting_error(e: SettingError) -> ApiError {
    invalid(
        &e.setting,
        &format!("{} = {}: {}", e.setting, e.value, e.allowed),
    )
}

fn invalid(field: &str, message: &str) -> ApiError {
    let mut error = ApiError::bad_request("invalid_setting", message.to_string())
        .with_status(StatusCode::UNPROCESSABLE_ENTITY);
    error.param = Some(field.to_string());
    error
}
