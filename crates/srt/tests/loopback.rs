//! The SRT server against srt-tokio callers on loopback: a publish reaches the hub as canonical frames, an
//! `m=request` viewer receives decodable MPEG-TS, refusals happen in the handshake. Needs `/usr/bin/ffmpeg` to make
//! the TS input (skipped without it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocast_formats::ts_demux::{DemuxEvent, TsDemuxer};
use ferrocast_hub::{Hub, HubConfig, Metrics, Protocol, StreamKey, SubscriberOptions};
use ferrocast_media::MediaType;
use ferrocast_srt::{SrtServeOptions, SrtServer};
use futures::{SinkExt, StreamExt};
use srt_tokio::SrtSocket;
use tokio::sync::watch;

fn ts_input() -> Option<Vec<u8>> {
    if !std::path::Path::new("/usr/bin/ffmpeg").exists() {
        eprintln!("ffmpeg not installed, skipping");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("ferrocast-srt-loopback-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("in.ts");
    let args = "-v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine -t 4 -c:v libx264 -g 25 \
                -bf 2 -c:a aac -f mpegts";
    let mut argv: Vec<&str> = args.split_whitespace().collect();
    argv.push(path.to_str()?);
    let out = std::process::Command::new("/usr/bin/ffmpeg").args(&argv).output().ok()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&path).ok()
}

async fn start(passphrase: Option<&str>) -> (Hub, std::net::SocketAddr, watch::Sender<bool>) {
    start_with(passphrase, &[]).await
}

async fn start_with(
    passphrase: Option<&str>,
    domains: &[(&str, &str)],
) -> (Hub, std::net::SocketAddr, watch::Sender<bool>) {
    let hub = Hub::new(HubConfig::default(), Arc::new(Metrics::default()));
    let options = || SrtServeOptions {
        default_domain: "srt.example".into(),
        passphrase: passphrase.map(str::to_string),
        passphrases: domains.iter().map(|(d, p)| (d.to_string(), p.to_string())).collect(),
        pbkeylen: 0,
        latency: Duration::from_millis(120),
        publisher_idle_timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(5),
        max_batch: 256,
    };
    // A port found free may be taken by a parallel test before we bind it: try another one then.
    let mut attempt = 0;
    let (server, addr) = loop {
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        match SrtServer::bind(&addr, options()).await {
            Ok(server) => break (server, addr),
            Err(e) if attempt < 20 => {
                attempt += 1;
                eprintln!("bind {addr}: {e}; retrying");
            }
            Err(e) => panic!("no free UDP port: {e}"),
        }
    };
    let (tx, rx) = watch::channel(false);
    tokio::spawn(server.serve(hub.clone(), rx));
    (hub, addr.parse().unwrap(), tx)
}

/// Sends the TS at about 4x real time in 7-packet messages.
async fn send_ts(socket: &mut SrtSocket, ts: &[u8]) {
    for chunk in ts.chunks(1316) {
        socket.send((Instant::now(), Bytes::copy_from_slice(chunk))).await.unwrap();
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_play_over_loopback() {
    let Some(ts) = ts_input() else { return };
    let (hub, addr, _stop) = start(None).await;
    let key = StreamKey::new("srt.example", "live", "t");

    let mut publisher = SrtSocket::builder().call(addr, Some("#!::r=live/t,m=publish")).await.unwrap();
    // Half the file, then a viewer over the hub and one over SRT, then the rest twice (a looping encoder).
    let half = ts.len() / 2 / 188 * 188;
    send_ts(&mut publisher, &ts[..half]).await;
    // The server demuxes asynchronously: wait until both tracks are known.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub.stream(&key).is_none_or(|s| s.tracks.video.is_none() || s.tracks.audio.is_none()) {
        assert!(Instant::now() < deadline, "tracks did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut viewer = hub.subscribe(&key, Protocol::Rtmp, None, SubscriberOptions::default()).unwrap();
    let tracks = viewer.start_tracks().clone();
    assert_eq!(tracks.video.as_ref().and_then(|t| t.video.as_ref()).map(|v| (v.width, v.height)), Some((320, 240)));
    assert!(tracks.audio.is_some());

    let mut srt_viewer = SrtSocket::builder().call(addr, Some("#!::r=live/t,m=request")).await.unwrap();
    let received = tokio::spawn(async move {
        let mut demuxer = TsDemuxer::new();
        let (mut video, mut audio, mut keyframes) = (0, 0, 0);
        while let Ok(Some(Ok((_, data)))) = tokio::time::timeout(Duration::from_secs(3), srt_viewer.next()).await {
            demuxer.push(&data);
            while let Some(event) = demuxer.next_event() {
                if let Ok(DemuxEvent::Frame(f)) = event {
                    match f.media {
                        MediaType::Video => {
                            video += 1;
                            keyframes += usize::from(f.keyframe);
                        }
                        MediaType::Audio => audio += 1,
                    }
                }
            }
        }
        (video, audio, keyframes)
    });
    send_ts(&mut publisher, &ts[half..]).await;
    send_ts(&mut publisher, &ts).await;
    publisher.close().await.unwrap();

    let mut batch = Vec::new();
    let mut frames = 0;
    while let Ok(ferrocast_hub::Batch::Entries { .. }) =
        tokio::time::timeout(Duration::from_millis(500), viewer.next_batch(&mut batch, 512)).await
    {
        frames += batch.len();
        batch.clear();
    }
    assert!(frames > 100, "hub viewer got {frames} entries");

    let (video, audio, keyframes) = received.await.unwrap();
    // The SRT viewer starts at the next keyframe: at least the last 1.5 loops' worth of media minus one GOP.
    assert!(video >= 100 && keyframes >= 4, "srt viewer: {video} video frames, {keyframes} keyframes");
    assert!(audio >= 100, "srt viewer: {audio} audio frames");
    assert!(hub.metrics().protocol(Protocol::Srt).bytes_out.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_happen_in_the_handshake() {
    let (hub, addr, _stop) = start(Some("a-good-passphrase")).await;
    // Bad streamid, not live, no encryption, wrong passphrase: the call itself fails.
    for (sid, pass) in [
        ("#!::h=x", Some("a-good-passphrase")),
        ("#!::r=live/none,m=request", Some("a-good-passphrase")),
        ("#!::r=live/p", None),
        ("#!::r=live/p", Some("the-wrong-passphrase")),
    ] {
        let mut b = SrtSocket::builder();
        if let Some(p) = pass {
            b = b.encryption(0, p);
        }
        let r = tokio::time::timeout(Duration::from_secs(8), b.call(addr, Some(sid))).await;
        assert!(matches!(r, Ok(Err(_))), "{sid} {pass:?}: expected a refusal, got {:?}", r.map(|r| r.is_ok()));
    }
    assert!(!hub.is_live(&StreamKey::new("srt.example", "live", "p")));
    assert_eq!(rejected_soon(&hub, 4).await, 4);
    // The right passphrase gets in.
    let ok = SrtSocket::builder().encryption(0, "a-good-passphrase").call(addr, Some("#!::r=live/p")).await;
    assert!(ok.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrases_are_per_domain() {
    let (hub, addr, _stop) = start_with(None, &[("enc.example", "the-domain-passphrase")]).await;
    let call = |sid: &'static str, pass: Option<&'static str>| async move {
        let mut b = SrtSocket::builder();
        if let Some(p) = pass {
            b = b.encryption(0, p);
        }
        tokio::time::timeout(Duration::from_secs(8), b.call(addr, Some(sid))).await.map(|r| r.is_ok())
    };
    // The domain with a passphrase: missing or wrong refused, right accepted.
    assert_eq!(call("#!::h=enc.example,r=live/a", None).await, Ok(false));
    assert_eq!(call("#!::h=enc.example,r=live/a", Some("another-passphrase")).await, Ok(false));
    assert_eq!(call("#!::h=ENC.example,r=live/a", Some("the-domain-passphrase")).await, Ok(true));
    // The default domain has none: plain callers get in, encrypting ones are refused (enforced encryption).
    assert_eq!(call("#!::r=live/b", Some("the-domain-passphrase")).await, Ok(false));
    assert_eq!(call("#!::r=live/b", None).await, Ok(true));
    assert_eq!(rejected_soon(&hub, 3).await, 3);
}

/// The SRT refusal count once it reaches `want` (or after 12 s): the server counts a failed key exchange when its
/// side of the handshake gives up, which can be after the caller has already seen the refusal.
async fn rejected_soon(hub: &ferrocast_hub::Hub, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    loop {
        let n = hub.metrics().protocol(Protocol::Srt).rejected.load(std::sync::atomic::Ordering::Relaxed);
        if n >= want || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
