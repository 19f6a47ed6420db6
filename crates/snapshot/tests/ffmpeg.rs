//! Pictures from real encoded streams (made by ffmpeg), and snapshot jobs on a hub fed in real time.
//! Every test that needs ffmpeg is skipped, with a printed reason, when `/usr/bin/ffmpeg` is missing.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocast_formats::ts_demux::{DemuxEvent, TsDemuxer};
use ferrocast_hub::{EndReason, Hub, HubConfig, Metrics, Protocol, PublishRequest, StreamKey};
use ferrocast_media::{Codec, Frame, MediaType, TrackInfo};
use ferrocast_snapshot::{Picture, PictureSink, SnapshotError, SnapshotSpec, keyframe_to_jpeg, run_job};
use tokio::sync::{Mutex, watch};

const FFMPEG: &str = "/usr/bin/ffmpeg";

fn ffmpeg() -> Option<PathBuf> {
    let path = PathBuf::from(FFMPEG);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {FFMPEG} is missing");
        None
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrocast-snapshot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Encodes `seconds` of a 1280x720 test pattern (and a tone) with ffmpeg and returns the file.
fn encode(ffmpeg: &Path, dir: &Path, file: &str, seconds: u32, codec_args: &[&str]) -> Vec<u8> {
    let out = dir.join(file);
    let status = std::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=1280x720:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args(["-pix_fmt", "yuv420p"])
        .args(codec_args)
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make {file}");
    std::fs::read(&out).expect("encoded file")
}

fn h264_flv(ffmpeg: &Path, dir: &Path, seconds: u32) -> ferrocast_formats::flv::FlvMedia {
    let args = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-f", "flv"];
    let data = encode(ffmpeg, dir, "h264.flv", seconds, &args);
    ferrocast_formats::flv::demux(&data).expect("demuxes")
}

/// H.265 in MPEG-TS: the FLV muxer of ffmpeg 5 cannot carry HEVC.
fn h265_ts(ffmpeg: &Path, dir: &Path) -> (TrackInfo, Vec<Frame>) {
    let args = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=25:log-level=error", "-an"];
    let data = encode(ffmpeg, dir, "h265.ts", 1, &[&args[..], &["-f", "mpegts"]].concat());
    let mut demux = TsDemuxer::new();
    demux.push(&data);
    demux.flush();
    let (mut track, mut frames) = (None, Vec::new());
    while let Some(event) = demux.next_event() {
        match event.expect("a clean stream") {
            DemuxEvent::Track(t) if t.media == MediaType::Video => track = Some(t),
            DemuxEvent::Frame(f) if f.media == MediaType::Video => frames.push(f),
            _ => {}
        }
    }
    (track.expect("an HEVC track"), frames)
}

/// The frames of an IVF file (AV1, VP9).
fn ivf_frames(data: &[u8]) -> Vec<Bytes> {
    assert_eq!(&data[..4], b"DKIF");
    let mut pos = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let mut frames = Vec::new();
    while pos + 12 <= data.len() {
        let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        frames.push(Bytes::copy_from_slice(&data[pos + 12..pos + 12 + len]));
        pos += 12 + len;
    }
    frames
}

/// The size in a JPEG's start-of-frame segment.
fn jpeg_size(jpeg: &[u8]) -> (u32, u32) {
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "SOI");
    assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9], "EOI");
    let mut pos = 2;
    while pos + 9 < jpeg.len() {
        assert_eq!(jpeg[pos], 0xff, "segment marker at {pos}");
        let marker = jpeg[pos + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        if (0xc0..=0xc2).contains(&marker) {
            let h = u16::from_be_bytes([jpeg[pos + 5], jpeg[pos + 6]]);
            let w = u16::from_be_bytes([jpeg[pos + 7], jpeg[pos + 8]]);
            return (u32::from(w), u32::from(h));
        }
        pos += 2 + len;
    }
    panic!("no SOF segment");
}

fn first_keyframe(frames: &[Frame]) -> &Frame {
    frames.iter().find(|f| f.media == MediaType::Video && f.keyframe).expect("a keyframe")
}

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn h264_keyframe_to_jpeg() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let dir = temp_dir("h264");
    let media = h264_flv(&ffmpeg, &dir, 1);
    let track = media.video.expect("video track");
    let jpeg = keyframe_to_jpeg(&ffmpeg, &track, first_keyframe(&media.frames), (640, 360), T).await.expect("jpeg");
    assert_eq!(jpeg_size(&jpeg), (640, 360));
    // The source size is what the track says.
    let full = keyframe_to_jpeg(&ffmpeg, &track, first_keyframe(&media.frames), (1280, 720), T).await.expect("jpeg");
    assert_eq!(jpeg_size(&full), (1280, 720));
}

#[tokio::test]
async fn h265_keyframe_to_jpeg() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let dir = temp_dir("h265");
    let (track, frames) = h265_ts(&ffmpeg, &dir);
    assert_eq!(track.codec, Codec::H265);
    let jpeg = keyframe_to_jpeg(&ffmpeg, &track, first_keyframe(&frames), (640, 360), T).await.expect("jpeg");
    assert_eq!(jpeg_size(&jpeg), (640, 360));
}

#[tokio::test]
async fn av1_and_vp9_keyframes_to_jpeg_via_ivf() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let dir = temp_dir("ivf");
    for (codec, args) in [
        (Codec::Av1, &["-c:v", "libaom-av1", "-cpu-used", "8", "-usage", "realtime", "-b:v", "300k"][..]),
        (Codec::Vp9, &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"][..]),
    ] {
        let args = [args, &["-an", "-frames:v", "3", "-f", "ivf"]].concat();
        let data = encode(&ffmpeg, &dir, &format!("{}.ivf", codec.name()), 1, &args);
        let first = ivf_frames(&data).into_iter().next().expect("a frame");
        // No configuration record: the size comes from the keyframe itself (AV1 sequence header, VP9 header).
        let track = TrackInfo::from_config(codec, 1000, Bytes::new()).expect("track");
        let key = Frame { media: MediaType::Video, codec, timebase: 1000, dts: 0, pts: 0, keyframe: true, data: first };
        assert_eq!(ferrocast_snapshot::source_size(&track, &key), Some((1280, 720)), "{codec:?}");
        let jpeg = keyframe_to_jpeg(&ffmpeg, &track, &key, (320, 180), T).await.expect("jpeg");
        assert_eq!(jpeg_size(&jpeg), (320, 180), "{codec:?}");
    }
}

#[tokio::test]
async fn ffmpeg_failures_are_typed_with_its_stderr() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let record = Bytes::from_static(&[1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 2, 0x68, 0xce]);
    let track = TrackInfo {
        media: MediaType::Video,
        codec: Codec::H264,
        timebase: 1000,
        config: record,
        video: None,
        audio: None,
    };
    let junk = Frame {
        media: MediaType::Video,
        codec: Codec::H264,
        timebase: 1000,
        dts: 0,
        pts: 0,
        keyframe: true,
        data: Bytes::from_static(&[0, 0, 0, 4, 0x65, 0x12, 0x34, 0x56]),
    };
    match keyframe_to_jpeg(&ffmpeg, &track, &junk, (64, 64), T).await {
        Err(SnapshotError::Ffmpeg { stderr, .. } | SnapshotError::NoPicture { stderr, .. }) => {
            assert!(!stderr.is_empty(), "ffmpeg said why")
        }
        other => panic!("expected an ffmpeg error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_or_hanging_ffmpeg_is_a_typed_error() {
    let dir = temp_dir("fake");
    let track = TrackInfo {
        media: MediaType::Video,
        codec: Codec::Vp8,
        timebase: 1000,
        config: Bytes::new(),
        video: None,
        audio: None,
    };
    let frame = Frame {
        media: MediaType::Video,
        codec: Codec::Vp8,
        timebase: 1000,
        dts: 0,
        pts: 0,
        keyframe: true,
        data: Bytes::from_static(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]),
    };
    let missing = keyframe_to_jpeg(&dir.join("no-ffmpeg"), &track, &frame, (64, 64), T).await;
    assert!(matches!(missing, Err(SnapshotError::Spawn { .. })), "{missing:?}");
    let hang = dir.join("hang.sh");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 30\n").expect("script");
    std::process::Command::new("chmod").arg("+x").arg(&hang).status().expect("chmod");
    let started = Instant::now();
    let slow = keyframe_to_jpeg(&hang, &track, &frame, (64, 64), Duration::from_millis(300)).await;
    assert!(matches!(slow, Err(SnapshotError::Timeout(_))), "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "killed at the timeout");
    let too_big = keyframe_to_jpeg(&hang, &track, &frame, (100_000, 64), T).await;
    assert!(matches!(too_big, Err(SnapshotError::BadSpec(_))), "{too_big:?}");
}

/// A sink that keeps what it gets, with the time it got it.
#[derive(Default)]
struct Collect(Mutex<Vec<(Instant, StreamKey, Picture)>>);

impl PictureSink for Collect {
    fn picture(&self, stream: &StreamKey, picture: Picture) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let stream = stream.clone();
        Box::pin(async move { self.0.lock().await.push((Instant::now(), stream, picture)) })
    }
}

fn hub() -> Hub {
    let config = HubConfig { publisher_grace: Duration::ZERO, ..HubConfig::default() };
    Hub::new(config, Arc::new(Metrics::default()))
}

fn key() -> StreamKey {
    StreamKey::new("push.example.com", "live", "s1")
}

fn publish(hub: &Hub) -> ferrocast_hub::Publisher {
    hub.publish(PublishRequest { key: key(), protocol: Protocol::Rtmp, client: None, server: None, params: vec![] })
        .expect("publish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_takes_pictures_at_the_interval_until_the_stream_ends() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let dir = temp_dir("job");
    let media = h264_flv(&ffmpeg, &dir, 7);
    let hub = hub();
    let mut publisher = publish(&hub);
    publisher.set_track(media.video.clone().expect("video")).expect("track");
    publisher.set_track(media.audio.clone().expect("audio")).expect("track");
    let sink = Arc::new(Collect::default());
    let spec = SnapshotSpec { width: 640, utc_offset_s: 8 * 3600, ..SnapshotSpec::new(Duration::from_secs(2)) };
    let (_stop_tx, stop) = watch::channel(false);
    let job = tokio::spawn(run_job(hub.clone(), key(), spec, ffmpeg, sink.clone(), stop));

    // Real time: every frame when its timestamp comes due.
    let start = Instant::now();
    for frame in media.frames {
        tokio::time::sleep_until((start + Duration::from_millis(frame.dts_ms().max(0) as u64)).into()).await;
        publisher.push_frame(frame).expect("push");
    }
    publisher.close(EndReason::PublisherClosed);
    let ended = Instant::now();
    let taken =
        tokio::time::timeout(Duration::from_secs(20), job).await.expect("the job ends").expect("join").expect("ok");
    assert!(ended.elapsed() < Duration::from_secs(10), "ended with the stream");

    let pictures = sink.0.lock().await;
    let offsets: Vec<_> = pictures.iter().map(|p| p.0.duration_since(start).as_millis()).collect();
    eprintln!("pictures delivered at {offsets:?} ms after the stream started");
    assert_eq!(taken as usize, pictures.len());
    assert!((3..=4).contains(&pictures.len()), "7 s at 2 s: {} pictures", pictures.len());
    for (_, stream, p) in pictures.iter() {
        assert_eq!(stream, &key());
        assert_eq!((p.width, p.height), (640, 360));
        assert_eq!(jpeg_size(&p.jpeg), (640, 360));
        let name = p.key.rsplit('/').next().expect("a file name");
        assert!(name.starts_with("s1-screenshot-") && name.ends_with("-640x360.jpg"), "{}", p.key);
        assert_eq!(p.key.split('/').count(), 2, "one date folder: {}", p.key);
    }
    let first_after = pictures[0].0.duration_since(start);
    assert!(first_after < Duration::from_secs(2), "the first picture comes as soon as there is a keyframe");
    for pair in pictures.windows(2) {
        let gap = pair[1].2.taken_unix_ms - pair[0].2.taken_unix_ms;
        assert!((1900..=3100).contains(&gap), "pictures {gap} ms apart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stops_when_told() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let dir = temp_dir("stop");
    let media = h264_flv(&ffmpeg, &dir, 1);
    let hub = hub();
    let mut publisher = publish(&hub);
    publisher.set_track(media.video.clone().expect("video")).expect("track");
    for frame in media.frames.iter().filter(|f| f.media == MediaType::Video).take(10) {
        publisher.push_frame(frame.clone()).expect("push");
    }
    let sink = Arc::new(Collect::default());
    let (stop_tx, stop) = watch::channel(false);
    let job = tokio::spawn(run_job(
        hub.clone(),
        key(),
        SnapshotSpec::new(Duration::from_secs(2)),
        ffmpeg,
        sink.clone(),
        stop,
    ));
    let deadline = Instant::now() + Duration::from_secs(15);
    while sink.0.lock().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One more tick passes: the same keyframe is not pictured twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop_tx.send(true).expect("job listening");
    let taken = tokio::time::timeout(Duration::from_secs(2), job).await.expect("stops").expect("join").expect("ok");
    assert_eq!(taken, 1, "one keyframe, one picture");
    let pictures = sink.0.lock().await;
    assert_eq!((pictures[0].2.width, pictures[0].2.height), (1280, 720), "source size by default");
    assert!(hub.is_live(&key()), "stopping the job does not touch the stream");
}

#[tokio::test]
async fn a_stream_without_video_ends_the_job_with_an_error() {
    let hub = hub();
    let mut publisher = publish(&hub);
    let aac = TrackInfo::from_config(Codec::Aac, 1000, Bytes::from_static(&[0x12, 0x10])).expect("AAC config");
    publisher.set_track(aac).expect("track");
    let sink = Arc::new(Collect::default());
    let (_stop_tx, stop) = watch::channel(false);
    let ffmpeg = PathBuf::from(FFMPEG);
    let job = tokio::spawn(run_job(hub.clone(), key(), SnapshotSpec::new(Duration::from_secs(2)), ffmpeg, sink, stop));
    // Let the job subscribe: it follows the stream from there (no keyframe to start at in an audio stream).
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 7 s of stream time, handed over frame by frame as a live publisher would (in one go, the ring's 5 s
    // window would drop the oldest before the job reads them).
    for i in 0..300 {
        let f = Frame {
            media: MediaType::Audio,
            codec: Codec::Aac,
            timebase: 1000,
            dts: i * 23,
            pts: i * 23,
            keyframe: true,
            data: Bytes::from_static(&[0x21, 0x10]),
        };
        publisher.push_frame(f).expect("push");
        tokio::task::yield_now().await;
    }
    let result = tokio::time::timeout(Duration::from_secs(5), job).await.expect("ends").expect("join");
    assert!(matches!(result, Err(SnapshotError::NoVideo(ref s)) if s.contains("s1")), "{result:?}");
}

#[tokio::test]
async fn bad_jobs_are_refused_up_front() {
    let hub = hub();
    let sink: Arc<dyn PictureSink> = Arc::new(Collect::default());
    let (_stop_tx, stop) = watch::channel(false);
    let ffmpeg = PathBuf::from(FFMPEG);
    let spec = SnapshotSpec::new(Duration::from_secs(2));
    let not_live = run_job(hub.clone(), key(), spec.clone(), ffmpeg.clone(), sink.clone(), stop.clone()).await;
    assert!(matches!(not_live, Err(SnapshotError::NotLive(_))), "{not_live:?}");
    let _publisher = publish(&hub);
    let bad_name = SnapshotSpec { file_name: "{Stream}{Ext}".into(), ..spec.clone() };
    let r = run_job(hub.clone(), key(), bad_name, ffmpeg.clone(), sink.clone(), stop.clone()).await;
    assert!(matches!(r, Err(SnapshotError::UnknownVariable(ref v)) if v == "Stream"), "{r:?}");
    let zero = SnapshotSpec { interval: Duration::ZERO, ..spec };
    let r = run_job(hub.clone(), key(), zero, ffmpeg, sink, stop).await;
    assert!(matches!(r, Err(SnapshotError::BadSpec(_))), "{r:?}");
}

#[tokio::test]
async fn a_stream_that_ends_without_video_is_an_error() {
    let hub = hub();
    let mut publisher = publish(&hub);
    let aac = TrackInfo::from_config(Codec::Aac, 1000, Bytes::from_static(&[0x12, 0x10])).expect("AAC config");
    publisher.set_track(aac).expect("track");
    let sink = Arc::new(Collect::default());
    let (_stop_tx, stop) = watch::channel(false);
    let ffmpeg = PathBuf::from(FFMPEG);
    let job = tokio::spawn(run_job(hub.clone(), key(), SnapshotSpec::new(Duration::from_secs(2)), ffmpeg, sink, stop));
    tokio::time::sleep(Duration::from_millis(100)).await;
    publisher.close(EndReason::PublisherClosed);
    let result = tokio::time::timeout(Duration::from_secs(5), job).await.expect("ends").expect("join");
    assert!(matches!(result, Err(SnapshotError::NoVideo(_))), "{result:?}");
}

/// A VP8 keyframe header of a 64x64 picture (enough for the job; the fake ffmpeg below does not decode).
fn vp8_keyframe(dts: i64) -> Frame {
    Frame {
        media: MediaType::Video,
        codec: Codec::Vp8,
        timebase: 1000,
        dts,
        pts: dts,
        keyframe: true,
        data: Bytes::from_static(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x00, 0x40, 0x00]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_never_runs_two_ffmpegs_and_skips_ticks_while_one_runs() {
    let dir = temp_dir("slow");
    let log = dir.join("runs.log");
    let fake = dir.join("slow-ffmpeg.sh");
    // Takes 1.2 s per picture (five 250 ms ticks), logs its start and end, writes a minimal JPEG (SOI, EOI).
    let script = format!(
        "#!/bin/sh\necho start >> {log}\ncat > /dev/null\nsleep 1.2\nprintf '\\377\\330\\377\\331'\necho end >> {log}\n",
        log = log.display()
    );
    std::fs::write(&fake, script).expect("script");
    std::process::Command::new("chmod").arg("+x").arg(&fake).status().expect("chmod");

    let hub = hub();
    let mut publisher = publish(&hub);
    publisher.push_frame(vp8_keyframe(0)).expect("push");
    let sink = Arc::new(Collect::default());
    let spec = SnapshotSpec::new(Duration::from_millis(250));
    let (_stop_tx, stop) = watch::channel(false);
    let job = tokio::spawn(run_job(hub.clone(), key(), spec, fake, sink.clone(), stop));
    let start = Instant::now();
    let mut dts = 0;
    while start.elapsed() < Duration::from_millis(3000) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        dts += 100;
        publisher.push_frame(vp8_keyframe(dts)).expect("push");
    }
    publisher.close(EndReason::PublisherClosed);
    let taken = tokio::time::timeout(Duration::from_secs(5), job).await.expect("ends").expect("join").expect("ok");

    let runs = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = runs.lines().collect();
    assert!(lines.chunks(2).all(|pair| pair == ["start", "end"]), "runs overlapped: {lines:?}");
    assert_eq!(taken as usize, lines.len() / 2, "every run delivered");
    assert!((2..=3).contains(&taken), "3 s of 1.2 s runs at a 250 ms interval: {taken}");
    let pictures = sink.0.lock().await;
    assert!(pictures.iter().all(|p| (p.2.width, p.2.height) == (64, 64) && p.2.jpeg.len() == 4));
}
