//! The upload queue against a real S3 implementation (moto). Runs when `FERROCAST_TEST_MOTO` is the path of a
//! `moto_server` executable (`pip install 'moto[server]'`); skipped with a printed reason otherwise.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Event, Recorder, job, next_event, pattern};
use ferrocast_storage::{Storage, StorageConfig, TargetConfig, TargetKind, Uploader};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

const ACCESS_KEY: &str = "AKIDFERROCASTTEST01";
const SECRET: &str = "FerrocastSecret/Key+0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);

/// A moto_server child process, killed on drop.
struct Moto {
    child: Child,
}

impl Moto {
    fn start(bin: &str, port: u16, env: &[(&str, &str)]) -> Moto {
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {bin} (FERROCAST_TEST_MOTO): {e}"));
        let moto = Moto { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on {port} within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Creates a bucket with an unsigned request, which moto accepts (object_store cannot create buckets).
fn create_bucket(port: u16, bucket: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
    write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "bucket creation: {response}");
}

fn config(spool: &Path, port: u16) -> StorageConfig {
    let mut t = TargetConfig::empty("s3", TargetKind::S3);
    t.endpoint = format!("http://127.0.0.1:{port}");
    t.bucket = "rec".into();
    t.region = "us-east-1".into();
    t.path_style = true;
    t.access_key_id = ACCESS_KEY.into();
    t.secret_access_key = SECRET.into();
    t.prefix = "ferrocast".into();
    StorageConfig { targets: vec![t], spool_dir: spool.to_path_buf(), ..StorageConfig::default() }
}

async fn read_back(storage: &Storage, key: &str) -> (Vec<u8>, Option<String>) {
    let store = storage.object_store("s3").expect("remote target");
    let path = ObjectPath::parse(storage.object_key("s3", key).unwrap()).unwrap();
    let got = store.get(&path).await.expect("object is stored");
    let content_type = got.attributes.get(&object_store::Attribute::ContentType).map(|v| v.to_string());
    (got.bytes().await.unwrap().to_vec(), content_type)
}

fn moto_bin() -> Option<String> {
    match std::env::var("FERROCAST_TEST_MOTO") {
        Ok(bin) if !bin.is_empty() => Some(bin),
        _ => {
            eprintln!(
                "SKIPPED: FERROCAST_TEST_MOTO is not set (path to moto_server; python3 -m venv /tmp/motoenv && /tmp/motoenv/bin/pip install 'moto[server]')"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_multipart_single_put_outage_and_recovery() {
    let Some(bin) = moto_bin() else { return };
    let port = free_port();
    let mut moto = Moto::start(&bin, port, &[]);
    create_bucket(port, "rec");

    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let storage = Storage::new(&config(&spool, port)).unwrap();
    let (handler, mut rx) = Recorder::new(0);
    let up = Uploader::start(storage.clone(), handler).await.unwrap();

    let big = pattern(40 * 1024 * 1024 + 12_345, 1);
    let small = pattern(300_000, 2);
    std::fs::write(spool.join("big.mp4"), &big).unwrap();
    std::fs::write(spool.join("small.flv"), &small).unwrap();
    up.enqueue(job("s3", &spool.join("big.mp4"), "live/big.mp4", true)).await.unwrap();
    up.enqueue(job("s3", &spool.join("small.flv"), "live/small.flv", false)).await.unwrap();
    for _ in 0..2 {
        match next_event(&mut rx, "uploaded", WAIT).await {
            Event::Uploaded(u) => {
                assert_eq!(u.attempts, 1);
                assert_eq!(u.url, format!("http://127.0.0.1:{port}/rec/ferrocast/{}", u.job.key));
                let expected = if u.job.key == "live/big.mp4" { big.len() } else { small.len() };
                assert_eq!(u.size, expected as u64, "{}", u.job.key);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (got_big, big_type) = read_back(&storage, "live/big.mp4").await;
    assert!(got_big == big, "multipart object differs ({} bytes read)", got_big.len());
    assert_eq!(big_type.as_deref(), Some("video/mp4"));
    let (got_small, small_type) = read_back(&storage, "live/small.flv").await;
    assert!(got_small == small, "small object differs");
    assert_eq!(small_type.as_deref(), Some("video/x-flv"));
    assert!(!spool.join("big.mp4").exists());
    assert!(spool.join("small.flv").exists());

    // Outage: the store goes away, the job waits with a growing backoff.
    drop(moto);
    let third = pattern(1_000_000, 3);
    std::fs::write(spool.join("third.ts"), &third).unwrap();
    up.enqueue(job("s3", &spool.join("third.ts"), "live/third.ts", true)).await.unwrap();
    let mut delays = Vec::new();
    for n in 1..=2 {
        match next_event(&mut rx, "failed while moto is down", WAIT).await {
            Event::Failed { attempts, error, retry_in, .. } => {
                assert_eq!(attempts, n);
                assert!(!error.contains(SECRET) && !error.contains(ACCESS_KEY), "{error}");
                delays.push(retry_in);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delays, [Duration::from_secs(1), Duration::from_secs(2)]);
    assert_eq!(up.pending(), 1);

    // moto keeps everything in memory: the bucket comes back empty.
    moto = Moto::start(&bin, port, &[]);
    create_bucket(port, "rec");
    match next_event(&mut rx, "uploaded after the outage", WAIT).await {
        Event::Uploaded(u) => {
            assert_eq!(u.job.key, "live/third.ts");
            assert_eq!(u.attempts, 3);
            assert_eq!(u.size, third.len() as u64);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(read_back(&storage, "live/third.ts").await.0 == third);
    assert!(!spool.join("third.ts").exists());
    assert_eq!(up.drain(WAIT).await, 0);
    drop(moto);
}

/// A store that rejects the credentials answers with a body quoting the access key ID; neither it nor the secret
/// may reach the error text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_auth_error_is_scrubbed() {
    let Some(bin) = moto_bin() else { return };
    let port = free_port();
    // moto checks signatures and keys from the first request on.
    let _moto = Moto::start(&bin, port, &[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let storage = Storage::new(&config(&spool, port)).unwrap();
    let file = spool.join("f.flv");
    std::fs::write(&file, b"data").unwrap();
    let err = storage
        .put_file("s3", &file, "k.flv", "video/x-flv", false)
        .await
        .expect_err("unknown credentials are refused")
        .to_string();
    eprintln!("scrubbed error: {err}");
    assert!(!err.contains(SECRET), "{err}");
    assert!(!err.contains(ACCESS_KEY), "{err}");
    assert!(err.contains("InvalidAccessKeyId") || err.contains("403"), "{err}");
}

/// Upload while recording: a file that grows in four steps is streamed while it grows, and the object is the whole
/// file once the writer says it is finished. An abandoned file (the sender dropped) aborts the upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_growing_file_is_uploaded_while_written() {
    let Some(bin) = moto_bin() else { return };
    let port = free_port();
    let _moto = Moto::start(&bin, port, &[]);
    create_bucket(port, "rec");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let storage = Storage::new(&config(&spool, port)).unwrap();
    assert!(storage.is_remote("s3"));
    let path = spool.join("growing.flv");
    let data = pattern(4 * 5 * 1024 * 1024 + 777, 4);
    std::fs::write(&path, b"").unwrap();
    let (done, finished) = tokio::sync::watch::channel(false);
    let up = {
        let (storage, path) = (storage.clone(), path.clone());
        tokio::spawn(async move { storage.put_growing_file("s3", &path, "live/g.flv", "video/x-flv", finished).await })
    };
    for chunk in data.chunks(data.len() / 4 + 1) {
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(chunk).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    done.send(true).unwrap();
    let size = up.await.unwrap().expect("growing upload");
    assert_eq!(size, data.len() as u64);
    let (got, content_type) = read_back(&storage, "live/g.flv").await;
    assert!(got == data, "object differs ({} bytes)", got.len());
    assert_eq!(content_type.as_deref(), Some("video/x-flv"));

    let (done, finished) = tokio::sync::watch::channel(false);
    let abandoned = {
        let (storage, path) = (storage.clone(), path.clone());
        tokio::spawn(async move { storage.put_growing_file("s3", &path, "live/a.flv", "", finished).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(done);
    assert!(abandoned.await.unwrap().is_err(), "an abandoned file is not stored");
    let store = storage.object_store("s3").unwrap();
    let missing = ObjectPath::parse(storage.object_key("s3", "live/a.flv").unwrap()).unwrap();
    assert!(store.head(&missing).await.is_err(), "nothing was completed");
}
