//! Client mistakes get OpenAI-shaped 4xx errors; a broken model file gets a clear error; none
//! of it takes the server down.

use std::io::Write;

use serde_json::{json, Value};

use crate::support::{model_path, non_loopback_addresses, Options, Server, SMOLLM2};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], want_code, "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(
        !error["message"].as_str().expect("message").is_empty(),
        "{body}"
    );
}

#[tokio::test]
async fn client_mistakes_get_the_right_status_and_an_error_object() {
    let server = Server::start();
    let chat = "/v1/chat/completions";
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", b"{\"model\": ".to_vec(), 400, "invalid_json"),
        ("not an object", b"[1,2]".to_vec(), 400, "invalid_json"),
        ("trailing garbage", br#"{"model":"x","messages":[]} x"#.to_vec(), 400, "invalid_json"),
        ("missing model", br#"{"messages":[{"role":"user","content":"hi"}]}"#.to_vec(), 400, "invalid_json"),
        ("messages of the wrong type", br#"{"model":"x","messages":"hi"}"#.to_vec(), 400, "invalid_json"),
        ("max_tokens of the wrong type", format!(r#"{{"model":"{SMOLLM2}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":"many"}}"#).into_bytes(), 400, "invalid_json"),
        ("negative max_tokens", format!(r#"{{"model":"{SMOLLM2}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":-5}}"#).into_bytes(), 400, "invalid_max_tokens"),
        ("huge max_tokens number", format!(r#"{{"model":"{SMOLLM2}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":1e400}}"#).into_bytes(), 400, "invalid_json"),
        ("empty messages", format!(r#"{{"model":"{SMOLLM2}","messages":[]}}"#).into_bytes(), 400, "invalid_messages"),
        ("unknown role", format!(r#"{{"model":"{SMOLLM2}","messages":[{{"role":"wizard","content":"hi"}}]}}"#).into_bytes(), 400, "invalid_messages"),
        ("invalid UTF-8", b"{\"model\": \"\xff\xfe\", \"messages\": []}".to_vec(), 400, "invalid_json"),
        ("unknown model", br#"{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}"#.to_vec(), 404, "model_not_found"),
        ("a path as model id", br#"{"model":"../../etc/passwd","messages":[{"role":"user","content":"hi"}]}"#.to_vec(), 400, "invalid_model_id"),
        ("temperature out of range", format!(r#"{{"model":"{SMOLLM2}","messages":[{{"role":"user","content":"hi"}}],"temperature":9}}"#).into_bytes(), 400, "invalid_temperature"),
        ("too many stop strings", format!(r#"{{"model":"{SMOLLM2}","messages":[{{"role":"user","content":"hi"}}],"stop":["a","b","c","d","e"]}}"#).into_bytes(), 400, "invalid_stop"),
    ];
    for (what, body, status, code) in cases {
        let (got, json) = server.post_bytes(chat, body).await;
        assert_eq!(got, status, "{what}: {json}");
        assert_error(got, &json, status, code);
    }

    // Unknown fields are ignored, as OpenAI does.
    let (status, body) = server
        .post(chat, &json!({"model": SMOLLM2, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "frequency_penalty": 0, "user": "me", "whatever": [1]}))
        .await;
    assert_eq!(status, 200, "{body}");

    // A prompt longer than the context a request gets.
    let long = "word ".repeat(3000);
    let (status, body) = server
        .post(
            chat,
            &json!({"model": SMOLLM2, "messages": [{"role": "user", "content": long}]}),
        )
        .await;
    assert_error(status, &body, 400, "context_length_exceeded");

    // 100 MB is refused before it is read.
    let huge = vec![b' '; 100 * 1024 * 1024];
    let response = server
        .client
        .post(server.url(chat))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await;
    match response {
        Ok(response) => {
            assert_eq!(response.status(), 413);
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["error"]["code"], "request_too_large");
        }
        // The server may answer 413 and close before the client has finished sending.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }

    // Unknown endpoints are JSON 404s, and the server is still fine after all of it.
    let (status, body) = server.get("/v1/nothing").await;
    assert_error(status, &body, 404, "not_found");
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn broken_model_files_get_a_clear_error_and_the_server_stays_up() {
    let broken = tempfile::tempdir().expect("tmp");
    // Random bytes behind a GGUF magic.
    let mut junk = b"GGUF".to_vec();
    junk.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(broken.path().join("junk.gguf"), junk).expect("write");
    std::fs::write(broken.path().join("empty.gguf"), b"").expect("write");
    // The real model cut short: inside the fixed header, inside the metadata (the vocabulary
    // runs for megabytes), in the tensor data, and one byte short.
    let real = std::fs::read(model_path(SMOLLM2)).expect("model");
    let cuts = [
        ("cut-4", 4),
        ("cut-10", 10),
        ("cut-header", 2_000),
        ("cut-vocab", 300_000),
        ("cut-middle", real.len() / 2),
        ("cut-last-byte", real.len() - 1),
    ];
    for (name, len) in cuts {
        let mut f =
            std::fs::File::create(broken.path().join(format!("{name}.gguf"))).expect("create");
        f.write_all(&real[..len]).expect("write");
    }
    // Headers that claim absurd sizes: reading them as told would allocate exabytes.
    let header = |version: u32, tensors: u64, kvs: u64, rest: &[u8]| {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(version.to_le_bytes());
        bytes.extend(tensors.to_le_bytes());
        bytes.extend(kvs.to_le_bytes());
        bytes.extend(rest);
        bytes.extend([0u8; 64]);
        bytes
    };
    let absurd = [
        ("absurd-tensors", header(3, u64::MAX, 0, &[])),
        ("absurd-kvs", header(3, 0, 1 << 60, &[])),
        ("absurd-key", header(3, 1, 1, &(1u64 << 62).to_le_bytes())),
        ("absurd-version", header(999, 0, 0, &[])),
    ];
    for (name, bytes) in &absurd {
        std::fs::write(broken.path().join(format!("{name}.gguf")), bytes).expect("write");
    }
    std::fs::create_dir(broken.path().join("folder.gguf")).expect("mkdir");

    let server = Server::start_with(Options {
        extra_models_dir: Some(broken.path().to_path_buf()),
        ..Default::default()
    });
    let ids = ["junk", "empty"]
        .into_iter()
        .chain(cuts.iter().map(|(name, _)| *name))
        .chain(absurd.iter().map(|(name, _)| *name));
    for id in ids {
        let (status, body) = server
            .post(
                "/v1/chat/completions",
                &json!({"model": id, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_error(status, &body, 500, "model_load_failed");
        let message = body["error"]["message"].as_str().expect("message");
        println!("{id}: {message}");
        assert!(message.contains(id), "the error names the model: {message}");
    }
    // A directory is not a model at all.
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            &json!({"model": "folder", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_error(status, &body, 404, "model_not_found");

    // Nothing broken is left in the pool, and real models still work.
    let status = server.status().await;
    assert_eq!(status["pool"]["models"], json!([]), "{status}");
    let (code, _) = server
        .post("/v1/chat/completions", &json!({"model": SMOLLM2, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}))
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn foreign_hosts_and_cross_site_posts_are_refused() {
    let server = Server::start();
    let body = json!({"model": SMOLLM2, "prompt": "Hi", "max_tokens": 1});
    let send = |host: Option<&str>, origin: Option<&str>| {
        let mut request = server
            .client
            .post(server.url("/v1/completions"))
            .json(&body);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move {
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    // DNS rebinding: a hostile name resolving to 127.0.0.1 arrives with its own Host.
    let (status, body_json) = send(Some("evil.example:80"), None).await;
    assert_error(status, &body_json, 403, "forbidden_host");
    // A page on another site posting to the API.
    let (status, body_json) = send(None, Some("https://evil.example")).await;
    assert_error(status, &body_json, 403, "forbidden_origin");
    // The UI's own origin and plain clients (no Origin) are served.
    let own = format!("http://localhost:{}", server.port);
    assert_eq!(
        send(Some(&format!("localhost:{}", server.port)), Some(&own))
            .await
            .0,
        200
    );
    assert_eq!(send(None, None).await.0, 200);
    // A GET changes nothing (and without CORS headers a foreign page cannot read the answer).
    let response = server
        .client
        .get(server.url("/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_server_listens_on_both_loopbacks_and_nowhere_else() {
    let server = Server::start();
    let port = server.port;
    // IPv6 loopback, with its own Host form.
    let (status, body) = {
        let response = server
            .client
            .get(format!("http://[::1]:{port}/health"))
            .send()
            .await
            .expect("[::1] answers");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("json"))
    };
    assert_eq!(status, 200, "{body}");
    // The machine's other addresses refuse the connection outright.
    let others = non_loopback_addresses();
    assert!(!others.is_empty(), "this test needs a non-loopback address");
    for address in others {
        let refused = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::new(address, port),
            std::time::Duration::from_secs(2),
        );
        println!("{address}:{port}: {refused:?}");
        assert!(refused.is_err(), "{address}:{port} accepted a connection");
    }
}
