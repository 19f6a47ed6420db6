use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrocast_media::{Codec, Frame, MediaType};

use crate::*;

fn hub(grace_ms: u64, window_ms: u64) -> Hub {
    let config = HubConfig {
        publisher_grace: Duration::from_millis(grace_ms),
        ring_window: Duration::from_millis(window_ms),
        ..HubConfig::default()
    };
    Hub::new(config, Arc::new(Metrics::default()))
}

fn key() -> StreamKey {
    StreamKey::new("example.com", "live", "s")
}

fn request() -> PublishRequest {
    PublishRequest { key: key(), protocol: Protocol::Rtmp, client: None, server: None, params: vec![] }
}

// The hub's mechanics do not depend on the codec; these fixtures use codecs without a configuration record so
// that frames are accepted without a sequence header.
fn video(dts: i64, keyframe: bool) -> Frame {
    Frame {
        media: MediaType::Video,
        codec: Codec::Vp8,
        timebase: 1000,
        dts,
        pts: dts,
        keyframe,
        data: Bytes::from(vec![0u8; 100]),
    }
}

fn video_track() -> ferrocast_media::TrackInfo {
    ferrocast_media::TrackInfo {
        media: MediaType::Video,
        codec: Codec::Vp8,
        timebase: 1000,
        config: Bytes::new(),
        video: None,
        audio: None,
    }
}

fn audio(dts: i64) -> Frame {
    Frame {
        media: MediaType::Audio,
        codec: Codec::Opus,
        timebase: 1000,
        dts,
        pts: dts,
        keyframe: true,
        data: Bytes::from_static(b"aac"),
    }
}

fn frames(batch: &[Arc<Entry>]) -> Vec<(i64, bool)> {
    batch
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Frame(f) => Some((f.dts, f.keyframe)),
            _ => None,
        })
        .collect()
}

fn drain(sub: &mut Subscriber) -> (Vec<Arc<Entry>>, Option<Batch>) {
    let mut out = Vec::new();
    let mut last = None;
    while let Some(b) = sub.try_batch(&mut out, 1000) {
        last = Some(b);
        if b == Batch::Ended {
            break;
        }
    }
    (out, last)
}

#[test]
fn a_viewer_joining_mid_stream_starts_at_the_newest_keyframe() {
    let hub = hub(0, 60_000);
    let mut p = hub.publish(request()).expect("publish");
    for i in 0..10 {
        p.push_frame(video(i * 40, i % 4 == 0)).expect("push");
    }
    let mut sub = hub.subscribe(&key(), Protocol::HttpFlv, None, SubscriberOptions::default()).expect("live");
    let (batch, _) = drain(&mut sub);
    assert_eq!(frames(&batch), vec![(320, true), (360, false)]);
}

#[test]
fn without_gop_cache_a_viewer_waits_for_the_next_keyframe() {
    let hub = hub(0, 60_000);
    let mut p = hub.publish(request()).expect("publish");
    p.set_track(video_track()).expect("track");
    p.push_frame(video(0, true)).expect("push");
    p.push_frame(video(40, false)).expect("push");
    let opts = SubscriberOptions { gop_cache: Some(false), ..Default::default() };
    let mut sub = hub.subscribe(&key(), Protocol::Rtmp, None, opts).expect("live");
    p.push_frame(video(80, false)).expect("push");
    p.push_frame(audio(90)).expect("push");
    assert!(drain(&mut sub).0.is_empty(), "nothing decodable before a keyframe");
    p.push_frame(video(120, true)).expect("push");
    p.push_frame(audio(130)).expect("push");
    assert_eq!(frames(&drain(&mut sub).0), vec![(120, true), (130, true)]);
}

#[test]
fn a_viewer_that_falls_behind_the_ring_skips_to_a_keyframe_and_is_counted() {
    let hub = hub(0, 200);
    let mut p = hub.publish(request()).expect("publish");
    p.push_frame(video(0, true)).expect("push");
    let mut sub = hub.subscribe(&key(), Protocol::Rtmp, None, SubscriberOptions::default()).expect("live");
    for i in 1..50 {
        p.push_frame(video(i * 40, i % 10 == 0)).expect("push");
    }
    let mut out = Vec::new();
    let batch = sub.try_batch(&mut out, 1000).expect("entries");
    let Batch::Entries { skipped } = batch else { panic!("expected entries") };
    assert!(skipped > 0);
    let got = frames(&out);
    assert_eq!(got.first(), Some(&(1600, true)), "resumes at the GOP that is still in the ring");
    assert!(hub.metrics().frames_dropped_slow_viewer.load(Ordering::Relaxed) >= skipped);
}

#[test]
fn a_second_publisher_is_refused_and_the_first_keeps_going() {
    let hub = hub(0, 1000);
    let mut first = hub.publish(request()).expect("publish");
    assert!(matches!(hub.publish(request()), Err(PublishError::AlreadyPublishing(_))));
    first.push_frame(video(0, true)).expect("first still live");
}

#[test]
fn viewers_see_the_end_when_the_publisher_leaves() {
    let hub = hub(0, 1000);
    let mut p = hub.publish(request()).expect("publish");
    p.push_frame(video(0, true)).expect("push");
    let mut sub = hub.subscribe(&key(), Protocol::Rtmp, None, SubscriberOptions::default()).expect("live");
    p.close(EndReason::PublisherClosed);
    let (batch, last) = drain(&mut sub);
    assert_eq!(frames(&batch), vec![(0, true)]);
    assert_eq!(last, Some(Batch::Ended));
    assert!(!hub.is_live(&key()));
    assert!(hub.subscribe(&key(), Protocol::Rtmp, None, SubscriberOptions::default()).is_err());
}

#[tokio::test]
async fn a_publisher_returning_within_grace_continues_with_monotonic_timestamps() {
    let hub = hub(500, 60_000);
    let mut p = hub.publish(request()).expect("publish");
    p.push_frame(video(1000, true)).expect("push");
    p.push_frame(video(1040, false)).expect("push");
    let mut sub = hub.subscribe(&key(), Protocol::Rtmp, None, SubscriberOptions::default()).expect("live");
    drop(p);
    let mut p2 = hub.publish(request()).expect("resume within grace");
    p2.push_frame(video(0, true)).expect("push");
    p2.push_frame(video(40, false)).expect("push");
    let (batch, last) = drain(&mut sub);
    assert_eq!(last, Some(Batch::Entries { skipped: 0 }));
    let dts: Vec<i64> = frames(&batch).iter().map(|f| f.0).collect();
    assert_eq!(dts, vec![0, 40, 80, 120], "the resumed segment starts one frame interval (40) later");
    drop(p2);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(drain(&mut sub).1, Some(Batch::Ended));
}

#[tokio::test]
async fn a_resumed_timeline_starts_after_the_latest_presented_frame() {
    let hub = hub(60_000, 60_000);
    let mut p = hub.publish(request()).expect("publish");
    let mut b_frame_ahead = video(1000, false);
    b_frame_ahead.pts = 1100;
    p.push_frame(video(960, true)).expect("push");
    p.push_frame(b_frame_ahead).expect("push");
    let mut sub = hub.subscribe(&key(), Protocol::Rtmp, None, SubscriberOptions::default()).expect("live");
    p.close(EndReason::PublisherLost("test".into()));
    let mut p2 = hub.publish(request()).expect("resume");
    let mut key_with_delay = video(0, true);
    key_with_delay.pts = 67;
    p2.push_frame(key_with_delay).expect("push");
    let (batch, _) = drain(&mut sub);
    let EntryKind::Frame(resumed) = &batch.last().expect("frames").kind else { panic!("a frame") };
    // The old segment (frame interval 40) was presented up to 140 (1100 - 960); the resumed keyframe is shown
    // 67 after its decode.
    assert_eq!(resumed.pts, 180, "presented one frame interval after the latest presented frame");
    assert_eq!(resumed.dts, 113, "decoded as early as that allows, after the last decoded frame (40)");
}

#[tokio::test]
async fn audio_rides_with_the_next_video_frame_but_video_always_wakes_viewers() {
    let hub = hub(0, 60_000);
    let mut p = hub.publish(request()).expect("publish");
    p.set_track(video_track()).expect("track");
    p.push_frame(video(0, true)).expect("push");
    let mut sub = hub.subscribe(&key(), Protocol::Rtmp, None, SubscriberOptions::default()).expect("live");
    let mut out = Vec::new();
    sub.try_batch(&mut out, 100).expect("the keyframe");
    let waiter = tokio::spawn(async move {
        let mut out = Vec::new();
        sub.next_batch(&mut out, 100).await;
        frames(&out)
    });
    tokio::task::yield_now().await;
    p.push_frame(audio(10)).expect("audio within the wakeup interval is held");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "an audio frame 10 ms after a wakeup does not wake viewers");
    p.push_frame(video(33, false)).expect("video");
    let got = tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("woken").expect("join");
    assert_eq!(got, vec![(10, true), (33, false)], "the held audio goes out with the video frame");
}

#[test]
fn frames_viewers_could_not_decode_are_refused_and_the_stream_goes_on() {
    let hub = hub(0, 60_000);
    let mut p = hub.publish(request()).expect("publish");
    let mut h264 = video(0, true);
    h264.codec = Codec::H264;
    let Err(PushError::Refused(why)) = p.push_frame(h264.clone()) else { panic!("H.264 before its configuration") };
    assert!(why.contains("before its sequence header"), "{why}");
    p.set_track(video_track()).expect("vp8 track");
    let Err(PushError::Refused(why)) = p.push_frame(h264) else { panic!("H.264 on a VP8 track") };
    assert!(why.contains("h264 frame on a vp8 track"), "{why}");
    p.push_frame(video(40, true)).expect("a matching frame is still taken");
}

#[test]
fn muxed_bytes_are_made_once_and_shared() {
    let hub = hub(0, 1000);
    let mut p = hub.publish(request()).expect("publish");
    p.push_frame(video(0, true)).expect("push");
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let mut sub = hub.subscribe(&key(), Protocol::HttpFlv, None, SubscriberOptions::default()).expect("live");
        let (batch, _) = drain(&mut sub);
        for e in &batch {
            e.muxed(MuxSlot::Flv, |_| {
                calls.fetch_add(1, Ordering::Relaxed);
                vec![Bytes::from_static(b"x")]
            });
        }
    }
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[test]
fn the_ring_stays_bounded() {
    let config = HubConfig { ring_max_bytes: 10_000, ..HubConfig::default() };
    let hub = Hub::new(config, Arc::new(Metrics::default()));
    let mut p = hub.publish(request()).expect("publish");
    for i in 0..1000 {
        p.push_frame(video(i, i == 0)).expect("push");
    }
    let stream = hub.shared_stream_for_tests(&key()).expect("live");
    let st = stream.state.read();
    assert!(st.ring.len() <= 10_000 / 164 + 1, "ring holds {} entries", st.ring.len());
}

#[test]
fn internal_subscribers_are_not_viewers() {
    let hub = hub(0, 60_000);
    let mut events = hub.events();
    let _p = hub.publish(request()).expect("publish");
    let internal = SubscriberOptions { internal: true, ..Default::default() };
    let packager = hub.subscribe(&key(), Protocol::Hls, None, internal).expect("live");
    let viewer = hub.subscribe(&key(), Protocol::HttpFlv, None, SubscriberOptions::default()).expect("live");
    let summary = hub.stream(&key()).expect("live");
    assert_eq!(summary.viewers, 1, "only the real viewer counts");
    drop(packager);
    drop(viewer);
    assert_eq!(hub.stream(&key()).expect("live").viewers, 0);
    let mut joined = 0;
    while let Ok(e) = events.try_recv() {
        joined += usize::from(matches!(e, crate::HubEvent::ViewerJoined { .. }));
    }
    assert_eq!(joined, 1, "the internal subscriber announced nothing");
}

fn delayed_request(delay: &str) -> PublishRequest {
    PublishRequest { params: vec![("txDelayTime".into(), delay.into())], ..request() }
}

fn delayed_hub(budget: usize, dir: &std::path::Path) -> Hub {
    let config = HubConfig {
        publisher_grace: Duration::from_millis(0),
        ring_window: Duration::from_secs(60),
        delay: DelayConfig { memory_budget: budget, spill_dir: dir.to_path_buf() },
        ..HubConfig::default()
    };
    Hub::new(config, Arc::new(Metrics::default()))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ferrocast-hub-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Polls `sub` until `n` frames arrived (or `limit` passed); returns them with the time the first one came.
fn collect(sub: &mut Subscriber, n: usize, limit: Duration) -> (Vec<(i64, bool)>, Option<std::time::Instant>) {
    let deadline = std::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut first = None;
    while got.len() < n && std::time::Instant::now() < deadline {
        let (batch, _) = drain(sub);
        let f = frames(&batch);
        if !f.is_empty() && first.is_none() {
            first = Some(std::time::Instant::now());
        }
        got.extend(f);
        std::thread::sleep(Duration::from_millis(10));
    }
    (got, first)
}

#[test]
fn a_delayed_stream_reaches_viewers_after_its_delay() {
    let dir = temp_dir("delay");
    let hub = delayed_hub(64 << 20, &dir);
    let mut p = hub.publish(delayed_request("1")).expect("publish");
    assert_eq!(p.delay(), Some(Duration::from_secs(1)));
    p.set_track(video_track()).expect("track");
    let pushed = std::time::Instant::now();
    for i in 0..25 {
        p.push_frame(video(i * 40, i % 5 == 0)).expect("push");
    }
    let mut sub = hub.subscribe(&key(), Protocol::HttpFlv, None, SubscriberOptions::default()).expect("live");
    let (got, first) = collect(&mut sub, 25, Duration::from_secs(5));
    let waited = first.expect("frames arrived").duration_since(pushed);
    assert!(waited >= Duration::from_millis(950), "first frame after {waited:?}");
    assert_eq!(got.len(), 25);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "in order: {got:?}");
    assert_eq!(hub.stream(&key()).expect("live").video_frames, 25, "ingest figures count on arrival");
}

#[test]
fn a_delay_line_over_its_budget_spills_to_disk_and_loses_nothing() {
    let dir = temp_dir("spill");
    let hub = delayed_hub(2_000, &dir);
    let mut p = hub.publish(delayed_request("1")).expect("publish");
    p.set_track(video_track()).expect("track");
    for i in 0..300 {
        p.push_frame(video(i * 10, i % 30 == 0)).expect("push");
    }
    std::thread::sleep(Duration::from_millis(300));
    let spilled: u64 = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    assert!(spilled > 20_000, "most of 300 × 164 bytes went to disk: {spilled}");
    let mut sub = hub.subscribe(&key(), Protocol::HttpFlv, None, SubscriberOptions::default()).expect("live");
    let (got, _) = collect(&mut sub, 300, Duration::from_secs(6));
    assert_eq!(got.len(), 300, "every frame came back from the spill file");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "in order");
    p.close(EndReason::PublisherClosed);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hub.is_live(&key()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!hub.is_live(&key()), "the stream ends once the close came due");
    let left = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the spill file is removed");
}

#[test]
fn a_publisher_returning_while_the_delay_drains_continues_the_stream() {
    let dir = temp_dir("attach");
    let hub = delayed_hub(64 << 20, &dir);
    let mut events = hub.events();
    let mut first = hub.publish(delayed_request("1")).expect("publish");
    first.set_track(video_track()).expect("track");
    for i in 0..10 {
        first.push_frame(video(i * 40, i == 0)).expect("push");
    }
    drop(first);
    let mut second = hub.publish(delayed_request("1")).expect("the line is draining: the new publisher takes it over");
    second.set_track(video_track()).expect("track");
    for i in 0..10 {
        second.push_frame(video(i * 40, i == 0)).expect("push");
    }
    let mut sub = hub.subscribe(&key(), Protocol::HttpFlv, None, SubscriberOptions::default()).expect("live");
    let (got, _) = collect(&mut sub, 20, Duration::from_secs(4));
    assert_eq!(got.len(), 20, "{got:?}");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "one spliced timeline: {got:?}");
    assert!(hub.is_live(&key()), "the first publisher's close was superseded");
    let mut resumed = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let HubEvent::Published { resumed: r, .. } = e {
            resumed.push(r);
        }
    }
    assert_eq!(resumed, [false, true]);
}

#[test]
fn bad_delays_are_refused() {
    let hub = delayed_hub(1 << 20, &temp_dir("bad"));
    for bad in ["601", "2.5", "soon"] {
        match hub.publish(delayed_request(bad)) {
            Err(PublishError::BadParameter(why)) => assert!(why.contains("txDelayTime"), "{why}"),
            other => panic!("txDelayTime={bad}: {:?}", other.map(|_| ())),
        }
    }
    assert!(!hub.is_live(&key()));
    let p = hub.publish(delayed_request("0")).expect("0 = no delay");
    assert_eq!(p.delay(), None);
}

#[test]
fn publisher_transport_stats_reach_the_summary_and_metrics_until_it_leaves() {
    let hub = hub(0, 1000);
    let p = hub.publish(request()).expect("publish");
    assert_eq!(hub.stream(&key()).expect("live").params.transport, None);
    let stats = TransportStats {
        rtt: Some(Duration::from_micros(1500)),
        packets_received: 42,
        packets_lost: 3,
        packets_retransmitted: 2,
        packets_dropped: 1,
        receive_rate_bps: 800_000,
        latency: Some(Duration::from_millis(120)),
    };
    p.set_transport_stats(stats);
    assert_eq!(hub.stream(&key()).expect("live").params.transport, Some(stats));
    let mut out = String::new();
    hub.metrics().render(&mut out);
    let stream = "protocol=\"rtmp\",stream=\"example.com/live/s\"";
    for line in [
        format!("ferrocast_publisher_rtt_microseconds{{{stream}}} 1500"),
        format!("ferrocast_publisher_packets_received_total{{{stream}}} 42"),
        format!("ferrocast_publisher_packets_lost_total{{{stream}}} 3"),
        format!("ferrocast_publisher_packets_retransmitted_total{{{stream}}} 2"),
        format!("ferrocast_publisher_packets_dropped_total{{{stream}}} 1"),
        format!("ferrocast_publisher_receive_rate_bits_per_second{{{stream}}} 800000"),
        format!("ferrocast_publisher_latency_microseconds{{{stream}}} 120000"),
    ] {
        assert!(out.lines().any(|l| l == line), "missing `{line}` in\n{out}");
    }
    p.close(EndReason::PublisherClosed);
    let mut out = String::new();
    hub.metrics().render(&mut out);
    assert!(!out.contains("ferrocast_publisher_"), "a gone publisher's figures stay:\n{out}");
    // The next publisher starts without the previous one's figures.
    let _next = hub.publish(request()).expect("publish again");
    assert_eq!(hub.stream(&key()).expect("live").params.transport, None);
}
