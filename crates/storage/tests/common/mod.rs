//! Shared helpers: a recording [`UploadHandler`] and event waiting.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ferrocast_storage::{UploadHandler, UploadJob, Uploaded};
use tokio::sync::mpsc;

/// What the handler was told.
#[derive(Debug)]
pub enum Event {
    Uploaded(Uploaded),
    Failed { key: String, attempts: u32, error: String, retry_in: Duration },
}

/// Forwards every call to a channel; refuses the first `refuse` `uploaded` calls.
pub struct Recorder {
    tx: mpsc::UnboundedSender<Event>,
    refuse: AtomicU32,
}

impl Recorder {
    pub fn new(refuse: u32) -> (Arc<Recorder>, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(Recorder { tx, refuse: AtomicU32::new(refuse) }), rx)
    }
}

impl UploadHandler for Recorder {
    fn uploaded(&self, done: Uploaded) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let refused = self.refuse.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            let _ = self.tx.send(Event::Uploaded(done));
            if refused { Err("database unavailable".to_string()) } else { Ok(()) }
        })
    }

    fn failed(
        &self,
        job: &UploadJob,
        attempts: u32,
        error: &str,
        retry_in: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let event = Event::Failed { key: job.key.clone(), attempts, error: error.to_string(), retry_in };
        Box::pin(async move {
            let _ = self.tx.send(event);
        })
    }
}

/// The next event, or a panic naming what was awaited.
pub async fn next_event(rx: &mut mpsc::UnboundedReceiver<Event>, what: &str, within: Duration) -> Event {
    match tokio::time::timeout(within, rx.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("handler channel closed while waiting for {what}"),
        Err(_) => panic!("no event within {within:?} while waiting for {what}"),
    }
}

/// A job for `path` on `target`.
pub fn job(target: &str, path: &std::path::Path, key: &str, remove_local: bool) -> UploadJob {
    UploadJob {
        target: target.to_string(),
        local_path: path.to_path_buf(),
        key: key.to_string(),
        content_type: String::new(),
        remove_local,
        meta: serde_json::json!({ "key": key }),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a mix-up of parts shows.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
