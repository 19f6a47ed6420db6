//! History actions (brief §2.3): DescribeLiveStreamEventList and DescribeLiveStreamPublishedList read the push
//! sessions, DescribeStreamPlayInfoList the per-minute playback figures, all recorded by [`crate::history`].

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::sign::datetime;
use super::streams::{check_push_domain, iso_utc, parse_iso_utc};
use super::{ApiError, ApiState, Out, Params, int_in_range, invalid_value, object};
use crate::history::{self, PushSession};
use crate::store::{DOMAIN_PLAY, unix_now};

const BEIJING: i64 = 8 * 3600;
const DAY: i64 = 86_400;
/// Clock skew tolerated on `EndTime ≤ now`.
const SKEW: i64 = 300;
/// Most entries the event list pages through.
const MAX_EVENT_ENTRIES: i64 = 10_000;

fn filter_opt(p: &Params, name: &str) -> Result<Option<String>, ApiError> {
    Ok(p.str_opt(name)?.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
}

/// Parses `YYYY-MM-DDThh:mm:ssZ` (UTC) or, when `beijing_ok`, `YYYY-MM-DD hh:mm:ss` (UTC+8).
pub fn parse_time(s: &str, beijing_ok: bool) -> Option<i64> {
    let s = s.trim();
    if let Some(t) = parse_iso_utc(s) {
        return Some(t);
    }
    let b = s.as_bytes();
    if beijing_ok && b.len() == 19 && b[10] == b' ' {
        return parse_iso_utc(&format!("{s}+08:00"));
    }
    None
}

/// Limits of a query window.
#[derive(Debug, Clone, Copy)]
pub struct WindowRules {
    /// Longest `EndTime - StartTime`, seconds.
    pub max_span: i64,
    /// Earliest `StartTime`, seconds before now.
    pub max_back: i64,
    /// Whether the Beijing `YYYY-MM-DD hh:mm:ss` form is accepted too.
    pub beijing_ok: bool,
}

/// Reads and checks `StartTime`/`EndTime` against `rules` at `now`; returns (start, end) in UNIX seconds.
pub fn time_window(p: &Params, rules: WindowRules, now: i64) -> Result<(i64, i64), ApiError> {
    let read = |name: &str| -> Result<i64, ApiError> {
        let raw = p.str_req(name)?;
        parse_time(&raw, rules.beijing_ok).ok_or_else(|| {
            invalid_value(if rules.beijing_ok {
                format!("`{name}` must be `YYYY-MM-DDThh:mm:ssZ` (UTC) or `YYYY-MM-DD hh:mm:ss` (UTC+8): {raw}")
            } else {
                format!("`{name}` must be a UTC ISO 8601 time (`2018-06-29T19:00:00Z`): {raw}")
            })
        })
    };
    let (start, end) = (read("StartTime")?, read("EndTime")?);
    if end < start {
        return Err(invalid_value("`EndTime` must not be before `StartTime`."));
    }
    if end > now + SKEW {
        return Err(invalid_value("`EndTime` must not be later than the current time."));
    }
    if end - start > rules.max_span {
        return Err(invalid_value(format!("`EndTime` must be at most {} s after `StartTime`.", rules.max_span)));
    }
    if start < now - rules.max_back {
        return Err(invalid_value(format!("`StartTime` must be at most {} days back.", rules.max_back / DAY)));
    }
    Ok((start, end))
}

/// The page `page_num` (from 1) of `page_size` items: (first index, total pages).
pub fn page(total: usize, page_num: i64, page_size: i64) -> (usize, i64) {
    let size = usize::try_from(page_size).unwrap_or(1).max(1);
    let start = usize::try_from(page_num.saturating_sub(1)).unwrap_or(0).saturating_mul(size);
    (start, total.div_ceil(size) as i64)
}

/// A session as a `StreamEventInfo` / `StreamName` item (the two share their fields).
fn session_item(s: &PushSession, now: i64) -> Value {
    let end = s.ended_at.unwrap_or(now);
    json!({
        "AppName": s.app,
        "DomainName": s.domain,
        "StreamName": s.stream,
        "StreamStartTime": iso_utc(s.started_at),
        "StreamEndTime": s.ended_at.map(iso_utc).unwrap_or_default(),
        "StopReason": s.errmsg,
        "Duration": (end - s.started_at).max(0),
        "ClientIp": if s.client_ip.is_empty() { "-".to_string() } else { s.client_ip.clone() },
        "Resolution": s.resolution,
    })
}

/// DescribeLiveStreamEventList: push start/stop events in a time range.
pub async fn event_list(state: &ApiState, p: &Params) -> Out {
    let now = unix_now();
    let rules = WindowRules { max_span: 30 * DAY, max_back: 60 * DAY, beijing_ok: false };
    let (start, end) = time_window(p, rules, now)?;
    let domain = filter_opt(p, "DomainName")?.map(|d| d.to_ascii_lowercase());
    let app = filter_opt(p, "AppName")?;
    let stream = filter_opt(p, "StreamName")?;
    if stream.as_deref().is_some_and(|s| s.contains('*')) {
        return Err(invalid_value("`StreamName` must not contain `*`."));
    }
    let page_num = int_in_range(p, "PageNum", 1, MAX_EVENT_ENTRIES, 1)?;
    let page_size = int_in_range(p, "PageSize", 1, 100, 10)?;
    if (page_num - 1).saturating_mul(page_size) >= MAX_EVENT_ENTRIES {
        return Err(invalid_value(format!("At most {MAX_EVENT_ENTRIES} entries can be paged through.")));
    }
    // Every recorded session was a successful push, so IsFilter keeps them all.
    let _is_filter = int_in_range(p, "IsFilter", 0, 1, 0)?;
    let strict = int_in_range(p, "IsStrict", 0, 1, 0)? == 1;
    let asc = int_in_range(p, "IsAsc", 0, 1, 0)? == 1;
    let mut list: Vec<PushSession> = history::sessions_between(&state.store, start, end)
        .await?
        .into_iter()
        .filter(|s| domain.as_deref().is_none_or(|d| s.domain == d))
        .filter(|s| app.as_deref().is_none_or(|a| s.app == a))
        .filter(|s| stream.as_deref().is_none_or(|n| if strict { s.stream == n } else { s.stream.contains(n) }))
        .collect();
    list.sort_by_key(|s| (s.ended_at.unwrap_or(i64::MAX), s.started_at));
    if !asc {
        list.reverse();
    }
    let (first, total_page) = page(list.len(), page_num, page_size);
    let items: Vec<Value> = list.iter().skip(first).take(page_size as usize).map(|s| session_item(s, now)).collect();
    object(json!({
        "EventList": items,
        "PageNum": page_num,
        "PageSize": page_size,
        "TotalNum": list.len(),
        "TotalPage": total_page,
    }))
}

/// DescribeLiveStreamPublishedList: the streams pushed in a time range, one entry per push with its start and end.
pub async fn published_list(state: &ApiState, p: &Params) -> Out {
    let now = unix_now();
    let domain = p.str_req("DomainName")?.trim().to_ascii_lowercase();
    if domain.is_empty() {
        return Err(ApiError::missing("DomainName"));
    }
    let rules = WindowRules { max_span: 30 * DAY, max_back: 60 * DAY, beijing_ok: false };
    let (start, end) = time_window(p, rules, now)?;
    check_push_domain(state, &domain)?;
    let app = filter_opt(p, "AppName")?;
    let stream = filter_opt(p, "StreamName")?;
    let page_num = int_in_range(p, "PageNum", 1, 100_000, 1)?;
    let page_size = int_in_range(p, "PageSize", 10, 100, 10)?;
    let list: Vec<PushSession> = history::sessions_between(&state.store, start, end)
        .await?
        .into_iter()
        .filter(|s| s.domain == domain)
        .filter(|s| app.as_deref().is_none_or(|a| s.app == a))
        .filter(|s| stream.as_deref().is_none_or(|n| s.stream.contains(n)))
        .collect();
    let (first, total_page) = page(list.len(), page_num, page_size);
    let items: Vec<Value> = list.iter().skip(first).take(page_size as usize).map(|s| session_item(s, now)).collect();
    object(json!({
        "PublishInfo": items,
        "PageNum": page_num,
        "PageSize": page_size,
        "TotalNum": list.len(),
        "TotalPage": total_page,
    }))
}

/// Per-minute playback figures.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Minute {
    /// Bytes written to viewers.
    pub bytes: i64,
    /// Viewers that joined.
    pub requests: i64,
    /// Most viewers at one sample.
    pub online: i64,
    /// Milliseconds sampled.
    pub covered_ms: i64,
}

impl Minute {
    /// Average bandwidth over the sampled time, Mbit/s.
    pub fn bandwidth_mbps(&self) -> f64 {
        if self.covered_ms <= 0 { 0.0 } else { self.bytes as f64 * 8.0 / (self.covered_ms as f64 / 1000.0) / 1e6 }
    }
}

/// Folds samples into minutes (key: UNIX seconds of the minute's start): bytes and joins add up, viewers of the
/// streams sampled at one tick add up and the minute keeps the largest total, each tick's span counts once.
pub fn minutes(samples: &[history::KeyedSample]) -> BTreeMap<i64, Minute> {
    let mut ticks: BTreeMap<i64, (i64, i64)> = BTreeMap::new(); // at_ms -> (span_ms, viewers)
    let mut out: BTreeMap<i64, Minute> = BTreeMap::new();
    for s in samples {
        let minute = (s.sample.at_ms - 1).div_euclid(60_000) * 60;
        let m = out.entry(minute).or_default();
        m.bytes += s.sample.bytes_out;
        m.requests += s.sample.requests;
        let t = ticks.entry(s.sample.at_ms).or_insert((s.sample.span_ms, 0));
        t.1 += s.sample.viewers;
    }
    for (at_ms, (span_ms, viewers)) in ticks {
        let minute = (at_ms - 1).div_euclid(60_000) * 60;
        let m = out.entry(minute).or_default();
        m.covered_ms += span_ms;
        m.online = m.online.max(viewers);
    }
    out
}

/// DescribeStreamPlayInfoList: viewers, joins, bandwidth and traffic per minute.
pub async fn play_info_list(state: &ApiState, p: &Params) -> Out {
    let now = unix_now();
    let rules = WindowRules { max_span: DAY, max_back: 31 * DAY, beijing_ok: true };
    let (start, end) = time_window(p, rules, now)?;
    let stream = filter_opt(p, "StreamName")?;
    let app = filter_opt(p, "AppName")?;
    if app.is_some() && stream.is_none() {
        return Err(invalid_value("`AppName` is only accepted together with `StreamName`."));
    }
    if let Some(service) = filter_opt(p, "ServiceName")?
        && !matches!(service.to_ascii_uppercase().as_str(), "LVB" | "LEB")
    {
        return Err(invalid_value(format!("`ServiceName` must be LVB or LEB, got {service}.")));
    }
    // A play domain plays its push domain's streams.
    let domain = match filter_opt(p, "PlayDomain")?.map(|d| d.to_ascii_lowercase()) {
        None => None,
        Some(d) => {
            let snap = state.snapshot.get();
            let bound = snap.domain(&d).filter(|x| x.kind == DOMAIN_PLAY).and_then(|x| x.push_domain.clone());
            Some(bound.unwrap_or(d))
        }
    };
    let first = start.div_euclid(60) * 60;
    let last = end.min(now).div_euclid(60) * 60;
    let samples: Vec<history::KeyedSample> =
        history::samples_between(&state.store, first.saturating_mul(1000), (last + 60).saturating_mul(1000))
            .await?
            .into_iter()
            .filter(|s| domain.as_deref().is_none_or(|d| s.key.domain == d))
            .filter(|s| stream.as_deref().is_none_or(|n| s.key.stream == n))
            .filter(|s| app.as_deref().is_none_or(|a| s.key.app == a))
            .collect();
    let per_minute: HashMap<i64, Minute> = minutes(&samples).into_iter().collect();
    let mut list = Vec::new();
    let mut t = first;
    while t <= last {
        let m = per_minute.get(&t).cloned().unwrap_or_default();
        list.push(json!({
            "Time": datetime(t, BEIJING),
            "Bandwidth": m.bandwidth_mbps(),
            "Flux": m.bytes as f64 / 1e6,
            "Request": m.requests,
            "Online": m.online,
        }));
        t += 60;
    }
    object(json!({ "DataInfoList": list }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{KeyedSample, PlaySample};
    use ferrocast_hub::StreamKey;

    fn params(v: Value) -> Params {
        Params::from_json(v.to_string().as_bytes()).expect("json")
    }

    const NOW: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    #[test]
    fn times_in_both_forms() {
        assert_eq!(parse_time("2023-11-14T22:13:20Z", false), Some(NOW));
        assert_eq!(parse_time("2023-11-15 06:13:20", true), Some(NOW), "Beijing time");
        assert_eq!(parse_time("2023-11-15 06:13:20", false), None);
        assert_eq!(parse_time("2023-11-15", true), None);
        assert_eq!(parse_time("yesterday", true), None);
    }

    #[test]
    fn windows_are_checked() {
        let rules = WindowRules { max_span: DAY, max_back: 31 * DAY, beijing_ok: true };
        let ok = params(json!({"StartTime": "2023-11-14T00:00:00Z", "EndTime": "2023-11-15 06:00:00"}));
        assert_eq!(time_window(&ok, rules, NOW).expect("ok"), (1_699_920_000, 1_699_999_200));
        let cases = [
            json!({"StartTime": "2023-11-14T10:00:00Z", "EndTime": "2023-11-14T09:00:00Z"}),
            json!({"StartTime": "2023-11-12T00:00:00Z", "EndTime": "2023-11-14T00:00:00Z"}),
            json!({"StartTime": "2023-11-14T00:00:00Z", "EndTime": "2023-11-16T00:00:00Z"}),
            json!({"StartTime": "2023-09-01T00:00:00Z", "EndTime": "2023-09-01T01:00:00Z"}),
            json!({"StartTime": "nope", "EndTime": "2023-11-14T00:00:00Z"}),
        ];
        for c in cases {
            assert_eq!(
                time_window(&params(c.clone()), rules, NOW).expect_err("bad").code,
                "InvalidParameterValue",
                "{c}"
            );
        }
        let missing = params(json!({"StartTime": "2023-11-14T00:00:00Z"}));
        assert_eq!(time_window(&missing, rules, NOW).expect_err("missing").code, "MissingParameter");
        let utc_only = WindowRules { beijing_ok: false, ..rules };
        assert!(time_window(&ok, utc_only, NOW).is_err(), "Beijing form refused where only UTC is documented");
    }

    #[test]
    fn paging() {
        assert_eq!(page(0, 1, 10), (0, 0));
        assert_eq!(page(25, 3, 10), (20, 3));
        assert_eq!(page(25, 4, 10), (30, 3));
        assert_eq!(page(10, 1, 10), (0, 1));
    }

    #[test]
    fn samples_fold_into_minutes() {
        let key = |s: &str| StreamKey { domain: "d".into(), app: "live".into(), stream: s.into() };
        let sample = |s: &str, at_ms, viewers, bytes_out| KeyedSample {
            key: key(s),
            sample: PlaySample { at_ms, span_ms: 30_000, viewers, requests: 1, bytes_out },
        };
        let base = NOW / 60 * 60 * 1000;
        let samples = vec![
            sample("a", base + 30_000, 2, 1_500_000),
            sample("b", base + 30_000, 1, 0),
            sample("a", base + 60_000, 1, 1_500_000),
            sample("a", base + 90_000, 0, 0),
        ];
        let m = minutes(&samples);
        let first = &m[&(base / 1000)];
        assert_eq!((first.bytes, first.requests, first.online, first.covered_ms), (3_000_000, 3, 3, 60_000));
        assert!((first.bandwidth_mbps() - 0.4).abs() < 1e-9, "{}", first.bandwidth_mbps());
        let second = &m[&(base / 1000 + 60)];
        assert_eq!((second.bytes, second.online, second.covered_ms), (0, 0, 30_000));
        assert_eq!(Minute::default().bandwidth_mbps(), 0.0);
    }
}
