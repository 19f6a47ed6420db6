//! The upload queue against local-directory targets: completion, durability across restarts, retries, handler
//! failures, corrupt job files, input validation.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Event, Recorder, job, next_event};
use ferrocast_storage::{Storage, StorageConfig, StorageError, TargetConfig, Uploader};

const WAIT: Duration = Duration::from_secs(10);

fn config(spool: &Path, root: &Path) -> StorageConfig {
    StorageConfig {
        targets: vec![TargetConfig::local("disk", root.to_string_lossy())],
        default_target: String::new(),
        spool_dir: spool.to_path_buf(),
        max_backoff: Duration::from_secs(300),
        multipart_threshold: 16 * 1024 * 1024,
    }
}

fn job_files(spool: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(spool.join("jobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn local_upload_completes_and_forgets_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, root) = (dir.path().join("spool"), dir.path().join("root"));
    std::fs::create_dir_all(&spool).unwrap();
    let storage = Storage::new(&config(&spool, &root)).unwrap();
    let (handler, mut rx) = Recorder::new(0);
    let up = Uploader::start(storage.clone(), handler).await.unwrap();

    let a = spool.join("a.flv");
    let b = spool.join("b.jpg");
    std::fs::write(&a, vec![7u8; 100_000]).unwrap();
    std::fs::write(&b, b"jpeg").unwrap();
    up.enqueue(job("disk", &a, "/live/room1/a.flv", true)).await.unwrap();
    up.enqueue(job("disk", &b, "live/room1/shots/b.jpg", false)).await.unwrap();

    let mut done = Vec::new();
    for _ in 0..2 {
        match next_event(&mut rx, "uploaded", WAIT).await {
            Event::Uploaded(u) => done.push(u),
            other => panic!("unexpected {other:?}"),
        }
    }
    done.sort_by(|x, y| x.job.key.cmp(&y.job.key));
    assert_eq!(done[0].job.key, "live/room1/a.flv", "key sanitized on enqueue");
    assert_eq!(done[0].size, 100_000);
    assert_eq!(done[0].attempts, 1);
    assert_eq!(done[0].job.content_type, "video/x-flv");
    assert_eq!(done[0].job.meta["key"], "/live/room1/a.flv");
    assert_eq!(done[0].url, storage.url("disk", "live/room1/a.flv"));
    assert!(done[0].url.starts_with("file:///") && done[0].url.ends_with("/root/live/room1/a.flv"));
    assert_eq!(done[1].size, 4);
    assert_eq!(done[1].job.content_type, "image/jpeg");

    assert_eq!(std::fs::read(root.join("live/room1/a.flv")).unwrap().len(), 100_000);
    assert_eq!(std::fs::read(root.join("live/room1/shots/b.jpg")).unwrap(), b"jpeg");
    assert!(!a.exists(), "remove_local deletes the spool file");
    assert!(b.exists(), "without remove_local the file stays");
    assert_eq!(up.drain(WAIT).await, 0);
    assert_eq!(up.pending(), 0);
    assert!(job_files(&spool).is_empty(), "{:?}", job_files(&spool));
}

/// A target that cannot store (its root is a regular file) fails with a growing backoff; the job survives a
/// restart of the queue and completes once the target works.
#[tokio::test]
async fn failing_job_survives_restart_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let blocked_root = dir.path().join("not-a-dir");
    std::fs::write(&blocked_root, b"x").unwrap();

    let file = spool.join("rec.mp4");
    std::fs::write(&file, b"0123456789").unwrap();
    {
        let storage = Storage::new(&config(&spool, &blocked_root)).unwrap();
        let (handler, mut rx) = Recorder::new(0);
        let up = Uploader::start(storage, handler).await.unwrap();
        up.enqueue(job("disk", &file, "a/rec.mp4", true)).await.unwrap();
        let mut delays = Vec::new();
        for n in 1..=2 {
            match next_event(&mut rx, "failed", WAIT).await {
                Event::Failed { attempts, retry_in, error, key } => {
                    assert_eq!(attempts, n);
                    assert_eq!(key, "a/rec.mp4");
                    assert!(error.contains("create directory"), "{error}");
                    delays.push(retry_in);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(delays, [Duration::from_secs(1), Duration::from_secs(2)]);
        assert_eq!(up.pending(), 1);
        assert_eq!(up.drain(Duration::from_millis(50)).await, 1);
        assert_eq!(job_files(&spool).len(), 1);
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(spool.join("jobs").join(&job_files(&spool)[0])).unwrap()).unwrap();
        assert_eq!(saved["attempts"], 2);
        assert!(saved["next_attempt_unix_ms"].as_i64().unwrap() > 0);
        // Dropping the last handle stops the queue; the job stays in the spool.
    }

    let root = dir.path().join("root");
    let storage = Storage::new(&config(&spool, &root)).unwrap();
    let (handler, mut rx) = Recorder::new(0);
    let up = Uploader::start(storage, handler).await.unwrap();
    assert_eq!(up.pending(), 1, "the job is resumed");
    match next_event(&mut rx, "uploaded after restart", WAIT).await {
        Event::Uploaded(u) => {
            assert_eq!(u.job.key, "a/rec.mp4");
            assert_eq!(u.size, 10);
            assert_eq!(u.attempts, 3);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(std::fs::read(root.join("a/rec.mp4")).unwrap(), b"0123456789");
    assert_eq!(up.drain(WAIT).await, 0);
    assert!(job_files(&spool).is_empty());
}

/// A handler error is a failed attempt: the handler is asked again, the file is not uploaded again (it was moved
/// into the target, so a second upload would fail).
#[tokio::test]
async fn handler_failure_repeats_the_handler_only() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, root) = (dir.path().join("spool"), dir.path().join("root"));
    std::fs::create_dir_all(&spool).unwrap();
    let storage = Storage::new(&config(&spool, &root)).unwrap();
    let (handler, mut rx) = Recorder::new(1);
    let up = Uploader::start(storage, handler).await.unwrap();
    let file = spool.join("x.aac");
    std::fs::write(&file, b"aac!").unwrap();
    up.enqueue(job("disk", &file, "x.aac", true)).await.unwrap();

    let Event::Uploaded(first) = next_event(&mut rx, "first uploaded", WAIT).await else { panic!("expected uploaded") };
    assert_eq!(first.attempts, 1);
    let Event::Failed { error, retry_in, .. } = next_event(&mut rx, "failed", WAIT).await else {
        panic!("expected failed")
    };
    assert!(error.contains("database unavailable"), "{error}");
    assert_eq!(retry_in, Duration::from_secs(1));
    let Event::Uploaded(second) = next_event(&mut rx, "second uploaded", WAIT).await else {
        panic!("expected uploaded")
    };
    assert_eq!(second.attempts, 2);
    assert_eq!(second.size, 4);
    assert_eq!(std::fs::read(root.join("x.aac")).unwrap(), b"aac!");
    assert_eq!(up.drain(WAIT).await, 0);
}

#[tokio::test]
async fn corrupt_job_files_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, root) = (dir.path().join("spool"), dir.path().join("root"));
    std::fs::create_dir_all(spool.join("jobs")).unwrap();
    std::fs::write(spool.join("jobs/0000000000001-00000000-00000000.json"), b"{not json").unwrap();
    std::fs::write(spool.join("jobs/.0000000000002-00000000-00000000.json.tmp"), b"{\"half").unwrap();
    let storage = Storage::new(&config(&spool, &root)).unwrap();
    let (handler, _rx) = Recorder::new(0);
    let up = Uploader::start(storage, handler).await.unwrap();
    assert_eq!(up.pending(), 0);
    assert_eq!(job_files(&spool), ["0000000000001-00000000-00000000.json.corrupt"]);
    assert!(!spool.join("jobs/.0000000000002-00000000-00000000.json.tmp").exists());
}

#[tokio::test]
async fn enqueue_refuses_bad_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, root) = (dir.path().join("spool"), dir.path().join("root"));
    std::fs::create_dir_all(&spool).unwrap();
    let storage = Storage::new(&config(&spool, &root)).unwrap();
    let (handler, _rx) = Recorder::new(0);
    let up = Uploader::start(storage, handler).await.unwrap();
    let file = spool.join("f.flv");
    std::fs::write(&file, b"f").unwrap();

    let e = up.enqueue(job("cos", &file, "k.flv", false)).await.unwrap_err();
    assert!(matches!(e, StorageError::UnknownTarget(ref t) if t == "cos"), "{e}");
    let e = up.enqueue(job("disk", &file, "a/../b.flv", false)).await.unwrap_err();
    assert!(matches!(e, StorageError::InvalidKey { .. }), "{e}");
    let e = up.enqueue(job("disk", &spool.join("missing.flv"), "k.flv", false)).await.unwrap_err();
    assert!(matches!(e, StorageError::Io { .. }) && e.to_string().contains("missing.flv"), "{e}");
    let e = up.enqueue(job("disk", &spool, "k.flv", false)).await.unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert_eq!(up.pending(), 0);
    assert!(job_files(&spool).is_empty());
}

#[tokio::test]
async fn one_spool_one_uploader() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, root) = (dir.path().join("spool"), dir.path().join("root"));
    let storage = Storage::new(&config(&spool, &root)).unwrap();
    let (handler, _rx) = Recorder::new(0);
    let _first = Uploader::start(storage.clone(), handler.clone()).await.unwrap();
    let second = Uploader::start(storage, handler).await;
    let e = second.err().expect("a second uploader on the same spool is refused");
    assert!(e.to_string().contains("in use"), "{e}");
}
