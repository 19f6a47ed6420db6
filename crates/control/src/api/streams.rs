//! Stream management actions (brief §2.3): the online list, stream state and push info come from the hub's live
//! streams; drop ends a stream; forbid/resume keep a stream from being pushed (store table `forbidden_streams`,
//! enforced by the access policy).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrocast_formats::amf0::{self, Amf0Value};
use ferrocast_hub::{StreamKey, StreamSummary};
use serde_json::{Map, Value, json};

use super::sign::datetime;
use super::{ApiError, ApiState, Out, Params, int_in_range, invalid_value, object};
use crate::store::{DOMAIN_PUSH, ForbiddenStream, unix_now};

const BEIJING: i64 = 8 * 3600;
/// Default forbid period when `ResumeTime` is absent.
const DEFAULT_FORBID_SECS: i64 = 7 * 86_400;
/// Longest forbid period.
const MAX_FORBID_SECS: i64 = 90 * 86_400;
/// Longest `Reason`, in bytes.
const MAX_REASON: usize = 2048;
/// The window push rates are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Samples older than this are dropped.
const SAMPLE_KEEP: Duration = Duration::from_secs(15);

/// A non-empty, trimmed string param.
fn name_req(p: &Params, name: &str) -> Result<String, ApiError> {
    let v = p.str_req(name)?.trim().to_string();
    if v.is_empty() {
        return Err(ApiError::missing(name));
    }
    Ok(v)
}

/// An optional filter param; `""` means no filter.
fn filter_opt(p: &Params, name: &str) -> Result<Option<String>, ApiError> {
    Ok(p.str_opt(name)?.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
}

/// Refuses a domain that is not a known push domain, once domains exist (brief §2.3 errors).
pub(crate) fn check_push_domain(state: &ApiState, domain: &str) -> Result<(), ApiError> {
    let snap = state.snapshot.get();
    if snap.domains.is_empty() || snap.domain(domain).is_some_and(|d| d.kind == DOMAIN_PUSH) {
        return Ok(());
    }
    Err(ApiError::new(
        "ResourceNotFound.DomainNotExist",
        format!("The domain `{domain}` does not exist or is not a push domain."),
    ))
}

/// The (DomainName, AppName, StreamName) triple of a request, the domain lowercased.
fn stream_key(state: &ApiState, p: &Params) -> Result<StreamKey, ApiError> {
    let domain = name_req(p, "DomainName")?.to_ascii_lowercase();
    let app = name_req(p, "AppName")?;
    let stream = name_req(p, "StreamName")?;
    check_push_domain(state, &domain)?;
    Ok(StreamKey { domain, app, stream })
}

fn unix_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `YYYY-MM-DDThh:mm:ssZ` of a UNIX time.
pub fn iso_utc(unix: i64) -> String {
    datetime(unix, 0).replacen(' ', "T", 1) + "Z"
}

/// Parses `YYYY-MM-DDThh:mm:ssZ` (UTC, ISO 8601; a `+hh:mm`/`-hh:mm` offset is accepted too) to UNIX seconds.
pub fn parse_iso_utc(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let o = oh * 3600 + om * 60;
            if rb[0] == b'-' { -o } else { o }
        }
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn page(total: usize, page_num: i64, page_size: i64) -> (usize, usize, i64) {
    let size = usize::try_from(page_size).unwrap_or(1).max(1);
    let start = usize::try_from(page_num - 1).unwrap_or(0).saturating_mul(size);
    let total_page = total.div_ceil(size) as i64;
    (start, size, total_page)
}

/// The streams with a publisher connected now, optionally only those of a domain, app and stream name.
fn publishing_streams(
    state: &ApiState,
    domain: Option<&str>,
    app: Option<&str>,
    stream: Option<&str>,
) -> Vec<StreamSummary> {
    state
        .hub
        .streams()
        .into_iter()
        .filter(|s| s.publishing)
        .filter(|s| domain.is_none_or(|d| s.key.domain == d))
        .filter(|s| app.is_none_or(|a| s.key.app == a))
        .filter(|s| stream.is_none_or(|n| s.key.stream == n))
        .collect()
}

/// DescribeLiveStreamOnlineList: the streams with a publisher connected now.
pub async fn online_list(state: &ApiState, p: &Params) -> Out {
    let domain = filter_opt(p, "DomainName")?.map(|d| d.to_ascii_lowercase());
    let app = filter_opt(p, "AppName")?;
    let stream = filter_opt(p, "StreamName")?;
    let page_num = int_in_range(p, "PageNum", 1, 100_000, 1)?;
    let page_size = int_in_range(p, "PageSize", 10, 100, 10)?;
    let live = publishing_streams(state, domain.as_deref(), app.as_deref(), stream.as_deref());
    let (start, size, total_page) = page(live.len(), page_num, page_size);
    let list: Vec<Value> = live
        .iter()
        .skip(start)
        .take(size)
        .map(|s| {
            json!({
                "StreamName": s.key.stream,
                "AppName": s.key.app,
                "DomainName": s.key.domain,
                "PublishTimeList": [{ "PublishTime": iso_utc(unix_of(s.params.started_at)) }],
                "PushToDelay": 0,
            })
        })
        .collect();
    object(json!({
        "TotalNum": live.len(),
        "TotalPage": total_page,
        "PageNum": page_num,
        "PageSize": page_size,
        "OnlineInfo": list,
    }))
}

/// DescribeLiveStreamState: `forbid` while forbidden, else `active` with a publisher connected, else `inactive`.
pub async fn stream_state(state: &ApiState, p: &Params) -> Out {
    let key = stream_key(state, p)?;
    let now = unix_now();
    let forbidden = state
        .snapshot
        .get()
        .forbidden
        .iter()
        .any(|f| f.domain == key.domain && f.app == key.app && f.stream == key.stream && now < f.resume_at);
    let live = state.hub.streams().iter().any(|s| s.key == key && s.publishing);
    let st = if forbidden {
        "forbid"
    } else if live {
        "active"
    } else {
        "inactive"
    };
    object(json!({ "StreamState": st }))
}

/// DropLiveStream: ends the stream for its publisher and viewers; dropping an inactive stream succeeds.
pub async fn drop_stream(state: &ApiState, p: &Params) -> Out {
    let key = stream_key(state, p)?;
    let was_live = state.hub.stop_stream(&key, "dropped by DropLiveStream");
    tracing::info!(stream = %key, was_live, "DropLiveStream");
    Ok(Map::new())
}

/// ForbidLiveStream: refuses pushes until `ResumeTime` (default 7 days, at most 90) and drops the stream if live.
pub async fn forbid_stream(state: &ApiState, p: &Params) -> Out {
    let key = stream_key(state, p)?;
    let now = unix_now();
    let resume_at = match filter_opt(p, "ResumeTime")? {
        None => now + DEFAULT_FORBID_SECS,
        Some(t) => {
            let at = parse_iso_utc(&t).ok_or_else(|| {
                invalid_value(format!("`ResumeTime` is not a UTC ISO 8601 time (`2018-06-29T19:00:00Z`): {t}"))
            })?;
            if at <= now {
                return Err(invalid_value("`ResumeTime` must be in the future."));
            }
            if at > now + MAX_FORBID_SECS {
                return Err(invalid_value("`ResumeTime` must be at most 90 days from now."));
            }
            at
        }
    };
    let reason = p.str_opt("Reason")?.unwrap_or_default();
    if reason.len() > MAX_REASON {
        return Err(invalid_value(format!("`Reason` is longer than {MAX_REASON} bytes.")));
    }
    let row = ForbiddenStream {
        domain: key.domain.clone(),
        app: key.app.clone(),
        stream: key.stream.clone(),
        reason,
        forbidden_at: now,
        resume_at,
    };
    state.store.forbid_stream(&row).await?;
    // The policy must know before the publisher is dropped, or it could push again at once.
    state.snapshot.refresh(&state.store).await.map_err(ApiError::internal)?;
    let was_live = state.hub.stop_stream(&key, "forbidden by ForbidLiveStream");
    tracing::info!(stream = %key, resume_at, was_live, "ForbidLiveStream");
    Ok(Map::new())
}

/// ResumeLiveStream: lifts a forbid (succeeds when there was none).
pub async fn resume_stream(state: &ApiState, p: &Params) -> Out {
    let key = stream_key(state, p)?;
    let had = state.store.resume_stream(&key.domain, &key.app, &key.stream).await?;
    tracing::info!(stream = %key, had_forbid = had, "ResumeLiveStream");
    Ok(Map::new())
}

/// Counters of one stream at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    video_frames: u64,
    audio_frames: u64,
    video_bytes: u64,
    audio_bytes: u64,
}

impl Sample {
    fn of(s: &StreamSummary, at: Instant) -> Sample {
        Sample {
            at,
            video_frames: s.video_frames,
            audio_frames: s.audio_frames,
            video_bytes: s.video_bytes,
            audio_bytes: s.audio_bytes,
        }
    }
}

/// Measured rates of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Rates {
    video_fps: f64,
    audio_fps: f64,
    video_bps: f64,
    audio_bps: f64,
}

fn rates_between(old: &Sample, new: &Sample) -> Rates {
    let secs = new.at.duration_since(old.at).as_secs_f64();
    if secs <= 0.0 {
        return Rates::default();
    }
    let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    Rates {
        video_fps: per_sec(old.video_frames, new.video_frames),
        audio_fps: per_sec(old.audio_frames, new.audio_frames),
        video_bps: per_sec(old.video_bytes, new.video_bytes) * 8.0,
        audio_bps: per_sec(old.audio_bytes, new.audio_bytes) * 8.0,
    }
}

/// Push rates measured from the hub's counters: over the last ~5 s between samples taken on each query, or, for a
/// stream seen for the first time, averaged since its publisher started.
#[derive(Debug, Default)]
pub struct RateMeter {
    samples: Mutex<HashMap<StreamKey, Vec<Sample>>>,
}

impl RateMeter {
    fn measure(&self, streams: &[StreamSummary]) -> HashMap<StreamKey, Rates> {
        let now = Instant::now();
        let mut samples = match self.samples.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        samples.retain(|k, _| streams.iter().any(|s| &s.key == k));
        let mut out = HashMap::new();
        for s in streams {
            let new = Sample::of(s, now);
            let list = samples.entry(s.key.clone()).or_default();
            list.retain(|x| now.duration_since(x.at) <= SAMPLE_KEEP);
            // Counters never go down for one stream; a reset means a new stream under the same key.
            list.retain(|x| x.video_frames <= new.video_frames && x.audio_frames <= new.audio_frames);
            // The newest sample at least RATE_WINDOW old, else the oldest at least 1 s old.
            let base = list
                .iter()
                .rev()
                .find(|x| now.duration_since(x.at) >= RATE_WINDOW)
                .or_else(|| list.iter().find(|x| now.duration_since(x.at) >= Duration::from_secs(1)));
            let rates = match base {
                Some(old) => rates_between(old, &new),
                None => {
                    let elapsed = s.params.started_at.elapsed().unwrap_or_default();
                    let zero = Sample { at: now, video_frames: 0, audio_frames: 0, video_bytes: 0, audio_bytes: 0 };
                    match now.checked_sub(elapsed) {
                        Some(start) => rates_between(&Sample { at: start, ..zero }, &new),
                        None => Rates::default(),
                    }
                }
            };
            list.push(new);
            out.insert(s.key.clone(), rates);
        }
        out
    }
}

/// `onMetaData` numbers: (videodatarate, audiodatarate, framerate); data rates in kbit/s as the encoders send them.
fn meta_numbers(body: &[u8]) -> (f64, f64, f64) {
    let mut buf = body;
    let mut props: Option<Vec<(String, Amf0Value)>> = None;
    // `onMetaData` then an object or ECMA array; some muxers put `@setDataFrame` first.
    for _ in 0..3 {
        match amf0::decode(&mut buf) {
            Ok(Amf0Value::Object(p)) | Ok(Amf0Value::EcmaArray(p)) => {
                props = Some(p);
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    let props = props.unwrap_or_default();
    let num = |name: &str| props.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.as_f64()).unwrap_or(0.0);
    (num("videodatarate"), num("audiodatarate"), num("framerate"))
}

fn round(v: f64) -> i64 {
    if v.is_finite() { v.round() as i64 } else { 0 }
}

/// DescribeLiveStreamPushInfoList: codec, resolution, measured fps and bitrates of every pushed stream.
pub async fn push_info_list(state: &ApiState, p: &Params) -> Out {
    let domain = filter_opt(p, "PushDomain")?.map(|d| d.to_ascii_lowercase());
    let app = filter_opt(p, "AppName")?;
    let page_num = int_in_range(p, "PageNum", 1, 10_000, 1)?;
    let page_size = int_in_range(p, "PageSize", 1, 1000, 200)?;
    let live = publishing_streams(state, domain.as_deref(), app.as_deref(), None);
    if live.is_empty() {
        return Err(ApiError::new("FailedOperation.HasNotLivingStream", "No live stream."));
    }
    let rates = state.rates.measure(&live);
    let (start, size, total_page) = page(live.len(), page_num, page_size);
    let list: Vec<Value> = live
        .iter()
        .skip(start)
        .take(size)
        .map(|s| {
            let r = rates.get(&s.key).copied().unwrap_or_default();
            let video = s.tracks.video.as_deref();
            let audio = s.tracks.audio.as_deref();
            let resolution =
                video.and_then(|v| v.video.as_ref()).map(|v| format!("{}*{}", v.width, v.height)).unwrap_or_default();
            let (meta_video_kbps, meta_audio_kbps, meta_fps) =
                s.metadata.as_deref().map(meta_numbers).unwrap_or((0.0, 0.0, 0.0));
            let mut item = json!({
                "StreamName": s.key.stream,
                "AppName": s.key.app,
                "ClientIp": s.params.client.map(|a| a.ip().to_string()).unwrap_or_default(),
                "ServerIp": s.params.server.map(|a| a.ip().to_string()).unwrap_or_default(),
                "PushDomain": s.key.domain,
                "BeginPushTime": datetime(unix_of(s.params.started_at), BEIJING),
                "VideoFps": round(r.video_fps),
                "VideoSpeed": round(r.video_bps),
                "AudioFps": round(r.audio_fps),
                "AudioSpeed": round(r.audio_bps),
                "Acodec": audio.map(|a| a.codec.name().to_ascii_uppercase()).unwrap_or_default(),
                "Vcodec": video.map(|v| v.codec.name().to_ascii_uppercase()).unwrap_or_default(),
                "Resolution": resolution,
                "AsampleRate": audio.and_then(|a| a.audio).map(|a| a.sample_rate).unwrap_or(0),
                "MetaAudioSpeed": round(meta_audio_kbps * 1000.0),
                "MetaVideoSpeed": round(meta_video_kbps * 1000.0),
                "MetaFps": round(meta_fps),
            });
            if let (Some(t), Some(obj)) = (s.params.transport, item.as_object_mut()) {
                obj.insert("TransportStats".into(), transport_json(s.params.protocol, &t));
            }
            item
        })
        .collect();
    object(json!({
        "DataInfoList": list,
        "TotalNum": live.len(),
        "TotalPage": total_page,
        "PageNum": page_num,
        "PageSize": page_size,
    }))
}

/// A ferrocast extension of `PushDataInfo` (the SDK model has no field for them): the publisher connection's
/// transport figures, for protocols that measure them (SRT). Times in milliseconds, rates in bit/s like
/// `VideoSpeed`; the SDK ignores the key (with a warning), raw JSON clients read it.
fn transport_json(protocol: ferrocast_hub::Protocol, t: &ferrocast_hub::TransportStats) -> Value {
    let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0);
    json!({
        "Protocol": protocol.label().to_ascii_uppercase(),
        "RttMs": ms(t.rtt),
        "LatencyMs": ms(t.latency),
        "ReceivedPackets": t.packets_received,
        "LostPackets": t.packets_lost,
        "RetransmittedPackets": t.packets_retransmitted,
        "DroppedPackets": t.packets_dropped,
        "ReceiveSpeed": t.receive_rate_bps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_round_trip() {
        assert_eq!(parse_iso_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso_utc("2018-06-29T19:00:00Z"), Some(1_530_298_800));
        assert_eq!(iso_utc(1_530_298_800), "2018-06-29T19:00:00Z");
        assert_eq!(parse_iso_utc("2018-06-30T03:00:00+08:00"), Some(1_530_298_800));
        assert_eq!(parse_iso_utc("2024-02-29T12:34:56.789Z"), Some(1_709_210_096));
        for bad in ["", "2018-06-29", "2018-13-01T00:00:00Z", "2018-06-29T19:00:00", "x018-06-29T19:00:00Z"] {
            assert_eq!(parse_iso_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn rates_are_per_second() {
        let t0 = Instant::now();
        let old = Sample { at: t0, video_frames: 0, audio_frames: 0, video_bytes: 0, audio_bytes: 0 };
        let new = Sample {
            at: t0 + Duration::from_secs(2),
            video_frames: 60,
            audio_frames: 86,
            video_bytes: 250_000,
            audio_bytes: 24_000,
        };
        let r = rates_between(&old, &new);
        assert_eq!(r, Rates { video_fps: 30.0, audio_fps: 43.0, video_bps: 1_000_000.0, audio_bps: 96_000.0 });
    }

    #[test]
    fn transport_figures() {
        let t = ferrocast_hub::TransportStats {
            rtt: Some(Duration::from_micros(1234)),
            packets_received: 10,
            packets_lost: 2,
            receive_rate_bps: 96_000,
            ..Default::default()
        };
        let v = transport_json(ferrocast_hub::Protocol::Srt, &t);
        assert_eq!(v["Protocol"], "SRT");
        assert_eq!(v["RttMs"], 1.234);
        assert_eq!(v["LatencyMs"], Value::Null);
        assert_eq!((v["ReceivedPackets"].as_u64(), v["LostPackets"].as_u64()), (Some(10), Some(2)));
        assert_eq!(v["ReceiveSpeed"], 96_000);
    }

    #[test]
    fn pages() {
        assert_eq!(page(0, 1, 10), (0, 10, 0));
        assert_eq!(page(25, 3, 10), (20, 10, 3));
    }

    #[test]
    fn metadata_numbers() {
        let mut body = Vec::new();
        amf0::encode(&Amf0Value::string("onMetaData"), &mut body);
        let props = vec![
            ("videodatarate".to_string(), Amf0Value::Number(800.0)),
            ("audiodatarate".to_string(), Amf0Value::Number(96.0)),
            ("framerate".to_string(), Amf0Value::Number(30.0)),
        ];
        amf0::encode(&Amf0Value::EcmaArray(props), &mut body);
        assert_eq!(meta_numbers(&body), (800.0, 96.0, 30.0));
        assert_eq!(meta_numbers(b"junk"), (0.0, 0.0, 0.0));
    }
}
