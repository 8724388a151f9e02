//! The web UI's static files, compiled into the binary so the headless server and the app
//! serve the same `ui/` with nothing to install beside the executable.
//!
//! `HEADROOM_UI_DIR` serves them from a folder instead, read at each request, so the UI can be
//! worked on without rebuilding the server.

use axum::body::Body;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

macro_rules! ui_file {
    ($name:literal, $type:literal) => {
        (
            $name,
            $type,
            include_str!(concat!("../../../../ui/", $name)),
        )
    };
}

/// What the pages may load and run: their own scripts, styles and API, nothing inline and
/// nothing from elsewhere, and no other site may frame them. The app's Tauri config carries
/// the same policy for anything Tauri itself would serve.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'; form-action 'self'";

/// (name, content type, bytes) for each file under `ui/`.
const FILES: &[(&str, &str, &str)] = &[
    ui_file!("index.html", "text/html; charset=utf-8"),
    ui_file!("preferences.html", "text/html; charset=utf-8"),
    ui_file!("client.js", "text/javascript; charset=utf-8"),
    ui_file!("app.js", "text/javascript; charset=utf-8"),
    ui_file!("timeline.js", "text/javascript; charset=utf-8"),
    ui_file!("preferences.js", "text/javascript; charset=utf-8"),
    ui_file!("style.css", "text/css; charset=utf-8"),
];

pub async fn index() -> Response {
    serve("index.html")
}

pub async fn file(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    let Some((name, content_type, built_in)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::not_found("not_found", format!("no UI file named '{name}'"))
            .into_response();
    };
    // Only names from the list above reach the folder: no path comes from the request.
    let body: Body = match std::env::var_os("HEADROOM_UI_DIR") {
        Some(dir) => match std::fs::read_to_string(std::path::Path::new(&dir).join(name)) {
            Ok(text) => text.into(),
            Err(e) => {
                return ApiError::server(
                    "ui_file_unreadable",
                    format!("cannot read {name} from HEADROOM_UI_DIR: {e}"),
                )
                .into_response()
            }
        },
        None => (*built_in).into(),
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        body,
    )
        .into_response()
}
