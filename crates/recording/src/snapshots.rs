//! Screenshot jobs: [`ferrocast_snapshot::run_job`] takes the pictures; this side stores them through the upload
//! queue (the template's `CosBucket` selects the storage target) and raises event 200 for each stored picture.

use std::sync::Arc;

use ferrocast_control::store_snapshot::SnapshotTemplate;
use ferrocast_hub::StreamKey;
use ferrocast_snapshot::{Picture, PictureSink, SnapshotSpec};
use ferrocast_storage::UploadJob;
use serde_json::json;
use tokio::sync::watch;

use crate::events::PictureEvent;
use crate::{RecordingService, Stop, new_id};

struct Sink {
    svc: RecordingService,
    target: String,
    task_id: String,
    stream_param: String,
}

impl PictureSink for Sink {
    fn picture(
        &self,
        stream: &StreamKey,
        picture: Picture,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let stream = stream.clone();
        Box::pin(async move { self.store(&stream, picture).await })
    }
}

impl Sink {
    async fn store(&self, stream: &StreamKey, picture: Picture) {
        let dir = self.svc.pictures_dir();
        let path = dir.join(format!("{}.jpg", new_id()));
        let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, &picture.jpeg));
        if let Err(e) = written {
            tracing::error!(stream = %stream, file = %path.display(), error = %e, "screenshots: picture not written");
            return;
        }
        let event = PictureEvent {
            domain: stream.domain.clone(),
            app: stream.app.clone(),
            stream: stream.stream.clone(),
            stream_param: self.stream_param.clone(),
            create_time: picture.taken_unix_ms / 1000,
            size: picture.jpeg.len() as u64,
            width: picture.width,
            height: picture.height,
            pic_url: format!("/{}", picture.key),
            task_id: self.task_id.clone(),
        };
        let job = UploadJob {
            target: self.target.clone(),
            local_path: path.clone(),
            key: picture.key,
            content_type: "image/jpeg".into(),
            remove_local: true,
            meta: json!({ "kind": "picture", "event": event }),
        };
        let Some(uploader) = self.svc.uploader() else { return };
        if let Err(e) = uploader.enqueue(job).await {
            tracing::error!(stream = %stream, error = %e, "screenshots: picture not queued for upload");
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Runs one screenshot job until its stream ends or it is stopped.
pub(crate) async fn run(
    svc: RecordingService,
    stream: StreamKey,
    template: SnapshotTemplate,
    task_id: String,
    stream_param: String,
    mut stop: watch::Receiver<Stop>,
) {
    let Some(target) = svc.inner.storage.target_for(&template.bucket) else {
        tracing::error!(stream = %stream, bucket = %template.bucket, template = template.id,
            "screenshots: no storage target is configured for the template's bucket; no pictures taken");
        return;
    };
    let spec = SnapshotSpec {
        interval: std::time::Duration::from_secs(template.interval_s.max(1) as u64),
        width: u32::try_from(template.width).unwrap_or(0),
        height: u32::try_from(template.height).unwrap_or(0),
        prefix: template.prefix.clone(),
        file_name: template.file_name.clone(),
        utc_offset_s: svc.inner.config.utc_offset_s,
    };
    let sink = Arc::new(Sink { svc: svc.clone(), target, task_id, stream_param });
    let (job_stop, job_stop_rx) = watch::channel(false);
    let relay = tokio::spawn(async move {
        while stop.changed().await.is_ok() {
            let now = *stop.borrow();
            if now != Stop::Running {
                break;
            }
        }
        let _ = job_stop.send(true);
    });
    tracing::info!(stream = %stream, template = template.id, interval_s = template.interval_s, "screenshots: started");
    let ffmpeg = svc.inner.config.ffmpeg.clone();
    match ferrocast_snapshot::run_job(svc.inner.hub.clone(), stream.clone(), spec, ffmpeg, sink, job_stop_rx).await {
        Ok(n) => tracing::info!(stream = %stream, pictures = n, "screenshots: job ended"),
        Err(e) => tracing::warn!(stream = %stream, error = %e, "screenshots: job ended with an error"),
    }
    relay.abort();
}
