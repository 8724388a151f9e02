//! Who gets in: the API key, an explicit address beyond loopback, and the cap on connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{non_loopback_addresses, Options, Server, SMOLLM2};

const KEY: &str = "test-key-0123456789abcdef";

/// Status, `WWW-Authenticate` and JSON body of a GET with the given key (or none).
async fn get_with(url: &str, key: Option<&str>) -> (u16, String, Value) {
    // A client of its own: the server's default one sends the key.
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        challenge,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_api_key_guards_the_api_but_not_the_page() {
    let server = Server::start_with(Options {
        api_key: Some(KEY.into()),
        ..Default::default()
    });
    for path in [
        "/v1/models",
        "/api/status",
        "/api/settings",
        "/api/events",
        "/metrics",
    ] {
        let url = server.url(path);
        for key in [None, Some("wrong-key-0123456789abcdef"), Some("test-key")] {
            let (status, challenge, body) = get_with(&url, key).await;
            assert_eq!(status, 401, "{path} with {key:?}: {body}");
            assert_eq!(challenge, "Bearer", "{path}");
            assert_eq!(body["error"]["code"], "invalid_api_key", "{path}");
        }
    }
    // The page (it asks for the key) and the liveness check stay open.
    for path in ["/", "/ui/client.js", "/health"] {
        let (status, _, _) = get_with(&server.url(path), None).await;
        assert_eq!(status, 200, "{path}");
    }
    // With the key, everything works, a real completion included.
    let (status, _, body) = get_with(&server.url("/v1/models"), Some(KEY)).await;
    assert_eq!(status, 200, "{body}");
    let answer = server.complete_ok(SMOLLM2, 3).await;
    assert_eq!(answer["usage"]["completion_tokens"], 3, "{answer}");
    // A refused POST changes nothing: the model is still loaded after an unkeyed Stop.
    let refused = reqwest::Client::new()
        .delete(server.url(&format!("/api/memory/models/{SMOLLM2}")))
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 401);
    assert!(server.model_status(SMOLLM2).await.is_some(), "still loaded");
}

#[tokio::test]
async fn the_key_is_never_shown_and_can_be_changed_live() {
    let server = Server::start_with(Options {
        api_key: Some(KEY.into()),
        config: Some(format!("api_key = \"{KEY}\"\n")),
        ..Default::default()
    });
    let (status, settings) = server.get("/api/settings").await;
    assert_eq!(status, 200);
    assert_eq!(settings["settings"]["api_key"], "(hidden)", "{settings}");
    assert!(!settings.to_string().contains(KEY), "{settings}");
    let config = std::path::PathBuf::from(settings["path"].as_str().expect("path"));

    // Sending the settings back as shown keeps the key.
    let mut whole = settings["settings"].clone();
    whole["idle_timeout"] = json!("5m");
    let (status, body) = server.send_json(Method::PUT, "/api/settings", &whole).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = get_with(&server.url("/api/status"), Some(KEY)).await;
    assert_eq!(status, 200, "the key survived a round trip");

    // A new key applies to the next request, and is saved readable by the owner only.
    let new_key = "another-key-0123456789abcdef";
    let (status, body) = server
        .send_json(Method::PUT, "/api/settings", &json!({"api_key": new_key}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = get_with(&server.url("/api/status"), Some(KEY)).await;
    assert_eq!(status, 401, "the old key no longer works");
    let (status, _, _) = get_with(&server.url("/api/status"), Some(new_key)).await;
    assert_eq!(status, 200);
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains(new_key), "{text}");
    let mode = std::fs::metadata(&config)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "config mode {mode:o}");

    // A key too short to be safe is refused and changes nothing.
    let response = reqwest::Client::new()
        .put(server.url("/api/settings"))
        .bearer_auth(new_key)
        .json(&json!({"api_key": "short"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("api_key"),
        "{body}"
    );
    assert!(std::fs::read_to_string(&config)
        .expect("config")
        .contains(new_key));
}

#[tokio::test]
async fn an_address_beyond_loopback_needs_a_key() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["--headless", "--port", "0", "--bind", "0.0.0.0", "--config"])
        .arg(tempfile::tempdir().expect("tmp").path().join("config.toml"))
        .env_remove("HEADROOM_API_KEY")
        .output()
        .expect("ran");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bind") && stderr.contains("api_key"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bound_to_an_address_it_serves_there_with_the_key_and_nowhere_else() {
    let Some(address) = non_loopback_addresses().into_iter().next() else {
        panic!("this test needs a non-loopback address");
    };
    let server = Server::start_with(Options {
        api_key: Some(KEY.into()),
        env: vec![("HEADROOM_BIND", address.to_string())],
        ..Default::default()
    });
    let there = SocketAddr::new(address, server.port);
    let url = format!("http://{there}/v1/models");
    // Any Host is fine now (the network names the machine as it likes); the key is the check.
    let (status, _, body) = get_with(&url, Some(KEY)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = get_with(&url, None).await;
    assert_eq!(status, 401);
    let named = reqwest::Client::new()
        .get(&url)
        .header("host", "my-laptop.local")
        .bearer_auth(KEY)
        .send()
        .await
        .expect("answered");
    assert_eq!(named.status(), 200);
    // Loopback is not listened on: the setting names one address.
    let loopback = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], server.port)),
        Duration::from_secs(2),
    );
    assert!(loopback.is_err(), "127.0.0.1 accepted a connection");
}

/// Opens a connection and has one request answered on it, keeping it open.
fn open_connection(port: u16) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("write");
    let mut answer = vec![0; 4096];
    let n = stream.read(&mut answer).expect("read");
    (stream, String::from_utf8_lossy(&answer[..n]).into_owned())
}

#[tokio::test]
async fn connections_beyond_the_cap_get_a_503_and_the_rest_are_served() {
    let server = Server::start_with(Options::with_env("HEADROOM_MAX_CONNECTIONS", "8"));
    let mut open: Vec<TcpStream> = (0..8)
        .map(|_| {
            let (stream, answer) = open_connection(server.port);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            stream
        })
        .collect();
    // The ninth is answered at once, not left hanging.
    let (_, answer) = open_connection(server.port);
    println!(
        "ninth connection: {}",
        answer.lines().next().unwrap_or_default()
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).expect("a JSON error");
    assert_eq!(body["error"]["code"], "too_many_connections");

    // One closes; a new one is served again.
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, answer) = open_connection(server.port);
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
