//! Time-shift request parsing, window selection and playlist rendering (pure functions).
//!
//! Parameter names are matched case-insensitively (`txTimeshift`, `txTimeShift`). `tsFormat` is
//! `{unix|human}_{s|ms}[_{zone}]`: `unix` alone means `unix_s` (the default when `tsFormat` is absent), `human`
//! times are `yyyyMMddHHmmss` (`human_ms`: `yyyyMMddHHmmssSSS`) in UTC+zone, zone −12..12; `human_s` without a
//! zone is UTC+0 (the spec's tolerance note: the service does not say which zone applies). `tsCodecname` is
//! accepted and ignored until transcoding exists (the original stream is served).

use ferrocast_control::store_timeshift::TimeShiftSegment;

/// Longest window, in ms (6 h).
pub const MAX_WINDOW_MS: i64 = 6 * 3600 * 1000;
/// Segments listed in a `tsDelay` (live) playlist.
pub const DELAY_WINDOW_SEGMENTS: i64 = 6;

/// What a time-shift request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `tsStart`/`tsEnd`: a VOD playlist of [start_ms, end_ms) (UNIX ms).
    Window {
        /// UNIX ms, inclusive.
        start_ms: i64,
        /// UNIX ms, exclusive.
        end_ms: i64,
    },
    /// `tsDelay`: a live playlist this many ms behind now.
    Delay {
        /// Milliseconds behind live.
        delay_ms: i64,
    },
}

/// A malformed or out-of-range time-shift request (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

/// Whether the query asks for time shifting (`txTimeshift=on`, any case).
pub fn is_timeshift(query: &[(String, String)]) -> bool {
    param(query, "txTimeshift").is_some_and(|v| v.eq_ignore_ascii_case("on"))
}

/// The query parameters of time shifting; segment URLs do not carry them (they carry the rest, for the access check).
pub const OWN_PARAMS: [&str; 6] = ["txTimeshift", "tsStart", "tsEnd", "tsFormat", "tsDelay", "tsCodecname"];

/// A time format: unix or human, seconds or ms, and the zone offset in hours for human times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeFormat {
    human: bool,
    millis: bool,
    zone_hours: i64,
}

/// Parses `tsFormat`.
pub fn parse_format(s: &str) -> Result<TimeFormat, ParseError> {
    let lower = s.trim().to_ascii_lowercase();
    let bad = || ParseError(format!("tsFormat={s}: expected unix_s, unix_ms, human_s_<zone> or human_ms_<zone>"));
    let mut parts = lower.split('_');
    let human = match parts.next() {
        Some("unix") | Some("") => false,
        Some("human") => true,
        _ => return Err(bad()),
    };
    let millis = match parts.next() {
        None | Some("s") => false,
        Some("ms") => true,
        _ => return Err(bad()),
    };
    let zone_hours = match parts.next() {
        None => 0,
        Some(z) => z.parse::<i64>().ok().filter(|z| (-12..=12).contains(z)).ok_or_else(bad)?,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(TimeFormat { human, millis, zone_hours })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses one time value in `format` to UNIX ms.
pub fn parse_time(name: &str, value: &str, format: TimeFormat) -> Result<i64, ParseError> {
    let bad = |why: &str| ParseError(format!("{name}={value}: {why}"));
    if !value.bytes().all(|b| b.is_ascii_digit()) || value.is_empty() {
        return Err(bad("expected digits only"));
    }
    if !format.human {
        let v: i64 = value.parse().map_err(|_| bad("out of range"))?;
        return if format.millis { Ok(v) } else { v.checked_mul(1000).ok_or_else(|| bad("out of range")) };
    }
    let want = if format.millis { 17 } else { 14 };
    if value.len() != want {
        return Err(bad(if format.millis { "expected yyyyMMddHHmmssSSS" } else { "expected yyyyMMddHHmmss" }));
    }
    let num = |a: usize, b: usize| value.get(a..b).and_then(|s| s.parse::<i64>().ok()).unwrap_or(-1);
    let (y, mo, d, h, mi, s) = (num(0, 4), num(4, 6), num(6, 8), num(8, 10), num(10, 12), num(12, 14));
    let ms = if format.millis { num(14, 17) } else { 0 };
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 || ms < 0 {
        return Err(bad("not a valid date and time"));
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - format.zone_hours * 3600;
    Ok(secs * 1000 + ms)
}

/// Parses a time-shift request (the caller checked [`is_timeshift`]).
pub fn parse_request(query: &[(String, String)]) -> Result<Request, ParseError> {
    let start = param(query, "tsStart");
    let end = param(query, "tsEnd");
    if let (None, None) = (start, end) {
        let Some(delay) = param(query, "tsDelay") else {
            return Err(ParseError("time shift needs tsStart and tsEnd, or tsDelay".into()));
        };
        let delay: i64 = delay
            .parse()
            .ok()
            .filter(|d| (0..=30 * 86_400).contains(d))
            .ok_or_else(|| ParseError(format!("tsDelay={delay}: expected whole seconds from 0 to 2592000")))?;
        return Ok(Request::Delay { delay_ms: delay * 1000 });
    }
    let (Some(start), Some(end)) = (start, end) else {
        return Err(ParseError("tsStart and tsEnd go together".into()));
    };
    let format = parse_format(param(query, "tsFormat").unwrap_or("unix_s"))?;
    let start_ms = parse_time("tsStart", start, format)?;
    let end_ms = parse_time("tsEnd", end, format)?;
    if end_ms <= start_ms {
        return Err(ParseError("tsEnd must be after tsStart".into()));
    }
    if end_ms - start_ms > MAX_WINDOW_MS {
        return Err(ParseError(format!(
            "the window is {} s; at most 21600 s (6 h) can be requested",
            (end_ms - start_ms) / 1000
        )));
    }
    Ok(Request::Window { start_ms, end_ms })
}

/// The segments covering [start_ms, end_ms): the first contains `start_ms` (or is the first one after it), the last
/// contains `end_ms - 1` (or is the last one before it). `index` is in wall-clock order.
pub fn select_window(index: &[TimeShiftSegment], start_ms: i64, end_ms: i64) -> Vec<TimeShiftSegment> {
    index.iter().filter(|s| s.wall_ms < end_ms && s.end_ms() > start_ms).cloned().collect()
}

pub use ferrocast_formats::time::iso8601_ms as iso_ms;

/// Renders a playlist of `segments` (wall-clock order). `vod` adds `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`.
/// URIs are `{base}{sid}/{seq}.ts` plus `?{query}` when not empty. A change of session, or a segment flagged as
/// discontinuous, gets `EXT-X-DISCONTINUITY`.
pub fn render(segments: &[TimeShiftSegment], vod: bool, base: &str, query: &str, min_target_s: i64) -> String {
    let max_ms = segments.iter().map(|s| s.duration_ms).max().unwrap_or(0);
    let target = ((max_ms + 999) / 1000).max(min_target_s).max(1);
    let first_seq = segments.first().map_or(0, |s| s.seq);
    let mut out = String::with_capacity(256 + segments.len() * 160);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    out.push_str(&format!("#EXT-X-TARGETDURATION:{target}\n"));
    out.push_str(&format!("#EXT-X-MEDIA-SEQUENCE:{}\n", if vod { 0 } else { first_seq }));
    if vod {
        out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    let mut prev: Option<&TimeShiftSegment> = None;
    for s in segments {
        if prev.is_some_and(|p| p.sid != s.sid || s.discontinuity) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        out.push_str(&format!("#EXT-X-PROGRAM-DATE-TIME:{}\n", iso_ms(s.wall_ms)));
        out.push_str(&format!("#EXTINF:{:.3},\n{base}{}/{}.ts", s.duration_ms as f64 / 1000.0, s.sid, s.seq));
        if !query.is_empty() {
            out.push('?');
            out.push_str(query);
        }
        out.push('\n');
        prev = Some(s);
    }
    if vod {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn window(pairs: &[(&str, &str)]) -> Result<(i64, i64), ParseError> {
        match parse_request(&q(pairs))? {
            Request::Window { start_ms, end_ms } => Ok((start_ms, end_ms)),
            Request::Delay { .. } => Err(ParseError("delay".into())),
        }
    }

    #[test]
    fn the_spec_vectors_parse_alike_in_every_format() {
        assert!(is_timeshift(&q(&[("txTimeShift", "ON")])));
        assert!(is_timeshift(&q(&[("txtimeshift", "on")])));
        assert!(!is_timeshift(&q(&[("txTimeshift", "off")])));
        let unix = window(&[("tsFormat", "unix_s"), ("tsStart", "1675302995"), ("tsEnd", "1675303025")]);
        assert_eq!(unix, Ok((1_675_302_995_000, 1_675_303_025_000)));
        let human = window(&[("tsFormat", "human_s_8"), ("tsStart", "20230202095635"), ("tsEnd", "20230202095705")]);
        assert_eq!(human, unix);
        // Default format and `unix` mean unix_s.
        assert_eq!(window(&[("tsStart", "1675302995"), ("tsEnd", "1675303025")]), unix);
        assert_eq!(window(&[("TSFORMAT", "unix"), ("tsstart", "1675302995"), ("tsEnd", "1675303025")]), unix);
        let ms = window(&[("tsFormat", "unix_ms"), ("tsStart", "1675302995000"), ("tsEnd", "1675303025000")]);
        assert_eq!(ms, unix);
        // human_s without a zone is UTC+0.
        let utc = window(&[("tsFormat", "human_s"), ("tsStart", "20230202015635"), ("tsEnd", "20230202015705")]);
        assert_eq!(utc, unix);
        let human_ms =
            window(&[("tsFormat", "human_ms_8"), ("tsStart", "20230202095635000"), ("tsEnd", "20230202095705000")]);
        assert_eq!(human_ms, unix);
        let west = window(&[("tsFormat", "human_s_-5"), ("tsStart", "20230201205635"), ("tsEnd", "20230201205705")]);
        assert_eq!(west, unix);
        // The console example: 2024-07-17 13:04:27 to 13:58:41 UTC+8.
        let (s, e) = window(&[("tsFormat", "unix"), ("tsStart", "1721192667"), ("tsEnd", "1721195921")]).expect("ok");
        assert_eq!((e - s) / 1000, 3254);
        let console = window(&[("tsFormat", "human_s_8"), ("tsStart", "20240717130427"), ("tsEnd", "20240717135841")]);
        assert_eq!(console, Ok((s, e)));
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let err = |pairs: &[(&str, &str)]| parse_request(&q(pairs)).err().map(|e| e.0).unwrap_or_default();
        assert!(err(&[("tsStart", "100"), ("tsEnd", "21701")]).contains("6 h"));
        assert!(window(&[("tsStart", "100"), ("tsEnd", "21700")]).is_ok());
        assert!(err(&[("tsStart", "200"), ("tsEnd", "100")]).contains("after"));
        assert!(err(&[("tsStart", "100")]).contains("together"));
        assert!(err(&[("tsFormat", "human_s_13"), ("tsStart", "1"), ("tsEnd", "2")]).contains("tsFormat"));
        assert!(err(&[("tsFormat", "local"), ("tsStart", "1"), ("tsEnd", "2")]).contains("tsFormat"));
        assert!(
            err(&[("tsFormat", "human_s_8"), ("tsStart", "20230231000000"), ("tsEnd", "20230301000000")])
                .contains("valid date")
        );
        assert!(err(&[("tsStart", "-5"), ("tsEnd", "2")]).contains("digits"));
        assert!(err(&[("tsDelay", "1.5")]).contains("tsDelay"));
        assert!(err(&[]).contains("tsDelay"));
        assert_eq!(
            parse_request(&q(&[("tsDelay", "30"), ("tsCodecname", "hd")])),
            Ok(Request::Delay { delay_ms: 30_000 })
        );
    }

    fn seg(sid: &str, seq: i64, wall_ms: i64, duration_ms: i64) -> TimeShiftSegment {
        TimeShiftSegment {
            sid: sid.into(),
            seq,
            domain: "d".into(),
            app: "live".into(),
            stream: "s".into(),
            wall_ms,
            duration_ms,
            path: String::new(),
            discontinuity: false,
            bytes: 0,
            expires_at_ms: 0,
        }
    }

    #[test]
    fn windows_cover_exactly_the_requested_range() {
        let index: Vec<_> = (0..10).map(|i| seg("a", i, 1000 + i * 3000, 3000)).collect();
        let seqs = |s: i64, e: i64| select_window(&index, s, e).iter().map(|x| x.seq).collect::<Vec<_>>();
        // 1000..4000 is segment 0, 4000..7000 segment 1, ...
        assert_eq!(seqs(4000, 10_000), [1, 2]);
        assert_eq!(seqs(4001, 10_001), [1, 2, 3]);
        assert_eq!(seqs(3999, 7000), [0, 1]);
        assert_eq!(seqs(0, 1000), Vec::<i64>::new());
        assert_eq!(seqs(30_000, 60_000), [9]);
        // Every selected window: the first contains start, the last contains end - 1.
        for (s, e) in [(5000, 9000), (1000, 31_000), (12_345, 20_000)] {
            let w = select_window(&index, s, e);
            let (first, last) = (w.first().expect("first"), w.last().expect("last"));
            assert!(first.wall_ms <= s && s < first.end_ms());
            assert!(last.wall_ms < e && e - 1 < last.end_ms());
        }
    }

    #[test]
    fn playlists_carry_dates_discontinuities_and_the_query() {
        let mut segs = vec![seg("a", 4, 1_675_302_995_000, 3000), seg("a", 5, 1_675_302_998_000, 3000)];
        segs.push(seg("b", 6, 1_675_303_100_000, 2500));
        let vod = render(&segs, true, "s/timeshift/", "txSecret=x", 3);
        assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && vod.ends_with("#EXT-X-ENDLIST\n"));
        assert!(vod.contains(
            "#EXT-X-PROGRAM-DATE-TIME:2023-02-02T01:56:35.000Z\n#EXTINF:3.000,\ns/timeshift/a/4.ts?txSecret=x\n"
        ));
        assert_eq!(vod.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
        assert!(vod.contains("#EXT-X-MEDIA-SEQUENCE:0\n") && vod.contains("#EXT-X-TARGETDURATION:3\n"));
        let live = render(&segs[1..], false, "", "", 3);
        assert!(live.contains("#EXT-X-MEDIA-SEQUENCE:5\n") && !live.contains("ENDLIST"));
        assert_eq!(iso_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}
