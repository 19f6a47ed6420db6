//! Error texts of failing S3 uploads never carry credentials. A fake S3 endpoint answers 403 with a body quoting
//! the access key ID, the request's Authorization header and the secret (worst case); a closed port gives a
//! transport error. Runs without any external tool.

use std::time::Duration;

use ferrocast_storage::{Storage, StorageConfig, TargetConfig, TargetKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ACCESS_KEY: &str = "AKIDLEAKCHECK0001";
const SECRET: &str = "LeakCheckSecret/abc+0123456789xyz";

fn storage(endpoint: String) -> Storage {
    let mut t = TargetConfig::empty("s3", TargetKind::S3);
    t.endpoint = endpoint;
    t.bucket = "rec".into();
    t.path_style = true;
    t.access_key_id = ACCESS_KEY.into();
    t.secret_access_key = SECRET.into();
    Storage::new(&StorageConfig { targets: vec![t], ..StorageConfig::default() }).unwrap()
}

/// Answers every request with a 403 whose body echoes what a careless server (or proxy) might.
async fn leaky_server(listener: TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { return };
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&req).into_owned();
            let auth = head
                .lines()
                .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
                .unwrap_or("")
                .to_string();
            let body = format!(
                "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
                 <Message>auth was {auth}; secret {SECRET}</Message>\
                 <AWSAccessKeyId>{ACCESS_KEY}</AWSAccessKeyId>\
                 <StringToSign>AWS4-HMAC-SHA256 20240101T000000Z {ACCESS_KEY}</StringToSign>\
                 <SignatureProvided>deadbeef</SignatureProvided></Error>"
            );
            let response = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(response.as_bytes()).await;
        });
    }
}

#[tokio::test]
async fn rejected_upload_error_is_scrubbed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(leaky_server(listener));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.flv");
    std::fs::write(&file, b"data").unwrap();
    let st = storage(format!("http://127.0.0.1:{port}"));
    let err = st
        .put_file("s3", &file, "live/f.flv", "video/x-flv", false)
        .await
        .expect_err("the fake server refuses everything");
    let text = err.to_string();
    let debug = format!("{err:?}");
    for t in [&text, &debug] {
        assert!(!t.contains(SECRET), "secret leaked: {t}");
        assert!(!t.contains(ACCESS_KEY), "access key leaked: {t}");
        assert!(!t.contains("deadbeef"), "signature leaked: {t}");
    }
    assert!(text.contains("403") || text.contains("SignatureDoesNotMatch"), "{text}");
}

#[tokio::test]
async fn closed_port_error_is_clear_and_scrubbed() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.flv");
    std::fs::write(&file, b"data").unwrap();
    let st = storage(format!("http://proxyuser:Pr0xyPassw0rd@127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    let err = st.put_file("s3", &file, "live/f.flv", "", false).await.expect_err("nothing listens there").to_string();
    assert!(!err.contains(SECRET) && !err.contains(ACCESS_KEY), "{err}");
    assert!(!err.contains("Pr0xyPassw0rd"), "{err}");
    assert!(err.to_lowercase().contains("connect"), "{err}");
    // The store client's own retries are short; the queue does the long waiting.
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());

    // The TLS client (rustls) is usable too: an https endpoint fails the same way, without a panic.
    let tls = storage(format!("https://127.0.0.1:{port}"));
    let err = tls.put_file("s3", &file, "live/f.flv", "", false).await.expect_err("nothing listens there").to_string();
    assert!(err.to_lowercase().contains("connect"), "{err}");
}
