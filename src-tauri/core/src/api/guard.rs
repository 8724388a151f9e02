//! Who may talk to the server. It listens on loopback, but a web page in the user's browser can
//! still reach loopback: through DNS rebinding (a hostile name that resolves to 127.0.0.1, the
//! hole Ollama had as CVE-2024-28224) or by posting across sites. So the `Host` must be a
//! loopback name, and a request that changes state must not come from another site's page.
//!
//! With an API key set, every request but the UI's own files and `/health` must carry it, as
//! `Authorization: Bearer <key>` (llama-server's and OpenAI's way). Listening beyond loopback
//! requires a key; the `Host` then names whatever address the network uses, so the key, not the
//! `Host`, is what keeps a rebinding page out.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

const LOOPBACK_NAMES: [&str; 4] = ["127.0.0.1", "localhost", "[::1]", "::1"];

pub async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !state.shared && headers.contains_key(header::HOST) {
        let ok = host.is_some_and(|h| is_loopback_host(h, state.port));
        if !ok {
            return forbidden(
                "forbidden_host",
                "the Host header must name this machine's loopback address",
            );
        }
    }
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes_state {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let ok = origin
                .to_str()
                .is_ok_and(|o| is_own_origin(o, state.port) || is_same_origin(o, host));
            if !ok {
                return forbidden(
                    "forbidden_origin",
                    "requests from other web sites are not allowed",
                );
            }
        }
    }
    if let Some(key) = state.live.store().api_key() {
        if !is_public(request.uri().path()) && !carries_key(headers, &key) {
            let mut response = ApiError::bad_request(
                "invalid_api_key",
                "this server needs its API key: send `Authorization: Bearer <api_key>`",
            )
            .with_status(StatusCode::UNAUTHORIZED)
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

/// What anyone who can connect may fetch: the page (it asks for the key) and a liveness check.
fn is_public(path: &str) -> bool {
    path == "/" || path == "/health" || path.starts_with("/ui/")
}

/// `Authorization: Bearer <key>`, or `x-api-key: <key>` as Anthropic's SDKs send it.
fn carries_key(headers: &axum::http::HeaderMap, key: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let anthropic = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let Some(given) = bearer.or(anthropic) else {
        return false;
    };
    // Constant time, so the time to refuse does not tell how much of a guess was right.
    use subtle::ConstantTimeEq;
    bool::from(given.trim().as_bytes().ct_eq(key.as_bytes()))
}

fn forbidden(code: &'static str, message: &str) -> Response {
    ApiError::bad_request(code, message)
        .with_status(StatusCode::FORBIDDEN)
        .into_response()
}

/// `127.0.0.1:11435`, `localhost:11435`, `[::1]:11435`, or any of these without a port.
fn is_loopback_host(host: &str, port: u16) -> bool {
    let (name, host_port) = match host.rsplit_once(':') {
        // An IPv6 literal without a port has colons but ends in ']'.
        Some((name, p)) if !p.ends_with(']') && !name.is_empty() && name != "[" => (name, Some(p)),
        _ => (host, None),
    };
    let name_ok = LOOPBACK_NAMES.iter().any(|n| name.eq_ignore_ascii_case(n));
    let port_ok = host_port.is_none_or(|p| p.parse::<u16>() == Ok(port));
    name_ok && port_ok
}

/// A page served by this server under the name the request came in on (a shared server's
/// network address).
fn is_same_origin(origin: &str, host: Option<&str>) -> bool {
    host.is_some_and(|host| origin.strip_prefix("http://") == Some(host))
}

/// The UI's own origin (served by this server) or the Tauri window's.
fn is_own_origin(origin: &str, port: u16) -> bool {
    const TAURI: [&str; 3] = [
        "tauri://localhost",
        "http://tauri.localhost",
        "https://tauri.localhost",
    ];
    if TAURI.contains(&origin) {
        return true;
    }
    origin
        .strip_prefix("http://")
        .is_some_and(|host| is_loopback_host(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_pass_and_rebinding_names_do_not() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "127.0.0.1",
        ] {
            assert!(is_loopback_host(ok, 8080), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:8080",
            "127.0.0.1:9999",
            "127.0.0.1.evil.com:8080",
            "localhost.:8080",
        ] {
            assert!(!is_loopback_host(bad, 8080), "{bad}");
        }
    }

    #[test]
    fn only_own_origins_may_change_state() {
        assert!(is_own_origin("http://127.0.0.1:8080", 8080));
        assert!(is_own_origin("http://localhost:8080", 8080));
        assert!(is_own_origin("tauri://localhost", 8080));
        assert!(!is_own_origin("https://evil.com", 8080));
        assert!(!is_own_origin("http://localhost:3000", 8080));
        assert!(!is_own_origin("null", 8080));
        assert!(is_same_origin(
            "http://192.0.2.2:8080",
            Some("192.0.2.2:8080")
        ));
        assert!(!is_same_origin("http://evil.com", Some("192.0.2.2:8080")));
        assert!(!is_same_origin("http://evil.com", None));
    }

    #[test]
    fn the_key_must_match_exactly() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(!carries_key(&headers, "0123456789abcdef"));
        for (value, ok) in [
            ("Bearer 0123456789abcdef", true),
            ("Bearer 0123456789abcde", false),
            ("Bearer 0123456789abcdefg", false),
            ("Basic 0123456789abcdef", false),
            ("0123456789abcdef", false),
        ] {
            headers.insert(
                header::AUTHORIZATION,
                axum::http::HeaderValue::from_static(value),
            );
            assert_eq!(carries_key(&headers, "0123456789abcdef"), ok, "{value}");
        }
        let mut anthropic = axum::http::HeaderMap::new();
        anthropic.insert(
            "x-api-key",
            axum::http::HeaderValue::from_static("0123456789abcdef"),
        );
        assert!(carries_key(&anthropic, "0123456789abcdef"));
        anthropic.insert("x-api-key", axum::http::HeaderValue::from_static("nope"));
        assert!(!carries_key(&anthropic, "0123456789abcdef"));
    }
}
