//! Recording folder/file name templates (doc 001, "Folder") and object key hygiene.

use crate::StorageError;

/// The variables of a folder/file name template.
///
/// Times are Unix milliseconds; they are written in the time zone `utc_offset_s` seconds east of UTC
/// (the console offers UTC, `0`, and UTC+8, `28800`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathVars {
    /// `{RecordSource}`: `origin` for the original stream, else the transcoding template ID.
    pub record_source: String,
    /// `{Domain}`: the push domain.
    pub domain: String,
    /// `{AppName}`: the push path (application).
    pub app: String,
    /// `{StreamID}`: the stream name.
    pub stream: String,
    /// `{RecordId}`: the recording rule's or task's ID.
    pub record_id: String,
    /// `{StartYear}` … `{StartSecond}`: when the file's recording started.
    pub start_unix_ms: i64,
    /// `{EndYear}` … `{EndSecond}`: when it ended (unknown, so not usable, while uploading during recording).
    pub end_unix_ms: i64,
    /// Offset of the time zone the times are written in, in seconds east of UTC.
    pub utc_offset_s: i64,
    /// `{RandomID}`: a random string chosen by the caller (see [`PathVars::new_random_id`]).
    pub random_id: String,
}

impl PathVars {
    /// A fresh value for `{RandomID}`: 16 random decimal digits.
    pub fn new_random_id() -> String {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        (0..16).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect()
    }
}

/// The default folder template of doc 001.
pub const DEFAULT_FOLDER_TEMPLATE: &str = "{RecordSource}/{Domain}/{AppName}/{StreamID}/{RecordId}/{StartYear}-{StartMonth}-{StartDay}-{StartHour}-{StartMinute}-{StartSecond}";

/// Expands a folder/file name template and returns it as a safe key (see [`sanitize_key`]).
///
/// Variables: `{RecordSource}`, `{Domain}`, `{AppName}`, `{StreamID}`, `{RecordId}`, `{RandomID}`,
/// `{StartYear}`, `{StartMonth}`, `{StartDay}`, `{StartHour}`, `{StartMinute}`, `{StartSecond}` and the same six with
/// `End`. `/` in the template makes folders; a `/` or `\` inside a variable's value is replaced by `_` so that a stream
/// name cannot add folders or climb out of one. An unknown `{X}` or an unbalanced brace is an error, so a typo in a
/// template is reported instead of ending up in every key.
pub fn render_path(template: &str, vars: &PathVars) -> Result<String, StorageError> {
    let err = |reason: String| StorageError::Template { template: template.to_string(), reason };
    let start = CivilTime::from_unix_ms(vars.start_unix_ms, vars.utc_offset_s);
    let end = CivilTime::from_unix_ms(vars.end_unix_ms, vars.utc_offset_s);
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        if rest.as_bytes()[pos] == b'}' {
            return Err(err(format!("'}}' without '{{' at byte {}", template.len() - rest.len() + pos)));
        }
        let after = &rest[pos + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| err(format!("'{{' without '}}' at byte {}", template.len() - rest.len() + pos)))?;
        let name = &after[..close];
        if name.contains('{') {
            return Err(err(format!("'{{' inside the variable {name:?}")));
        }
        match name {
            "RecordSource" => push_value(&mut out, &vars.record_source),
            "Domain" => push_value(&mut out, &vars.domain),
            "AppName" => push_value(&mut out, &vars.app),
            "StreamID" => push_value(&mut out, &vars.stream),
            "RecordId" => push_value(&mut out, &vars.record_id),
            "RandomID" => push_value(&mut out, &vars.random_id),
            _ => {
                let (time, field) = if let Some(field) = name.strip_prefix("Start") {
                    (&start, field)
                } else if let Some(field) = name.strip_prefix("End") {
                    (&end, field)
                } else {
                    return Err(err(format!("unknown variable {{{name}}}")));
                };
                let text = match field {
                    "Year" => format!("{:04}", time.year),
                    "Month" => format!("{:02}", time.month),
                    "Day" => format!("{:02}", time.day),
                    "Hour" => format!("{:02}", time.hour),
                    "Minute" => format!("{:02}", time.minute),
                    "Second" => format!("{:02}", time.second),
                    _ => return Err(err(format!("unknown variable {{{name}}}"))),
                };
                out.push_str(&text);
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    sanitize_key(&out).map_err(|e| match e {
        StorageError::InvalidKey { reason, .. } => err(format!("the expanded key {out:?} is unusable: {reason}")),
        other => other,
    })
}

/// Appends a variable's value with path separators neutralised.
fn push_value(out: &mut String, value: &str) {
    out.extend(value.chars().map(|c| if c == '/' || c == '\\' { '_' } else { c }));
}

/// The longest key accepted: S3's limit, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Makes a key safe for every target: leading `/`, empty and `.` segments are dropped; `..` segments, control
/// characters, an empty result and keys over 1024 bytes are errors.
pub fn sanitize_key(key: &str) -> Result<String, StorageError> {
    let bad = |reason: &str| StorageError::InvalidKey { key: key.to_string(), reason: reason.to_string() };
    if key.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    let mut parts = Vec::new();
    for segment in key.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(bad("contains a '..' segment")),
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(bad("is empty"));
    }
    let clean = parts.join("/");
    if clean.len() > MAX_KEY_BYTES {
        return Err(bad("is longer than 1024 bytes"));
    }
    Ok(clean)
}

/// A broken-down wall-clock time.
struct CivilTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl CivilTime {
    fn from_unix_ms(unix_ms: i64, offset_s: i64) -> CivilTime {
        let secs = unix_ms.div_euclid(1000).saturating_add(offset_s);
        let days = secs.div_euclid(86_400);
        let tod = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        CivilTime {
            year,
            month,
            day,
            // tod < 86400, so these fit.
            hour: (tod / 3600) as u32,
            minute: (tod % 3600 / 60) as u32,
            second: (tod % 60) as u32,
        }
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> PathVars {
        PathVars {
            record_source: "origin".into(),
            domain: "push.example.com".into(),
            app: "live".into(),
            stream: "room1".into(),
            record_id: "1234".into(),
            // 2024-02-29 23:59:58.750 UTC
            start_unix_ms: 1_709_251_198_750,
            // 2024-03-01 01:02:03 UTC
            end_unix_ms: 1_709_254_923_000,
            utc_offset_s: 0,
            random_id: "8888".into(),
        }
    }

    #[test]
    fn default_template_utc() {
        assert_eq!(
            render_path(DEFAULT_FOLDER_TEMPLATE, &vars()).unwrap(),
            "origin/push.example.com/live/room1/1234/2024-02-29-23-59-58"
        );
    }

    #[test]
    fn default_template_utc_plus_8_crosses_the_day() {
        let v = PathVars { utc_offset_s: 28_800, ..vars() };
        assert_eq!(
            render_path(DEFAULT_FOLDER_TEMPLATE, &v).unwrap(),
            "origin/push.example.com/live/room1/1234/2024-03-01-07-59-58"
        );
    }

    #[test]
    fn every_variable() {
        let t = "{RecordSource}|{Domain}|{AppName}|{StreamID}|{RecordId}|{RandomID}|\
                 {StartYear}{StartMonth}{StartDay}{StartHour}{StartMinute}{StartSecond}|\
                 {EndYear}{EndMonth}{EndDay}{EndHour}{EndMinute}{EndSecond}.flv";
        assert_eq!(
            render_path(t, &vars()).unwrap(),
            "origin|push.example.com|live|room1|1234|8888|20240229235958|20240301010203.flv"
        );
        let v8 = PathVars { utc_offset_s: 28_800, ..vars() };
        assert_eq!(
            render_path("{EndYear}-{EndMonth}-{EndDay} {EndHour}:{EndMinute}:{EndSecond}", &v8).unwrap(),
            "2024-03-01 09:02:03"
        );
    }

    #[test]
    fn times_before_1970_and_year_ends() {
        let mut v = vars();
        v.start_unix_ms = -1; // 1969-12-31 23:59:59.999
        assert_eq!(
            render_path("{StartYear}-{StartMonth}-{StartDay}-{StartHour}-{StartMinute}-{StartSecond}", &v).unwrap(),
            "1969-12-31-23-59-59"
        );
        v.start_unix_ms = 1_735_689_599_000; // 2024-12-31 23:59:59 UTC
        v.utc_offset_s = 28_800;
        assert_eq!(render_path("{StartYear}{StartMonth}{StartDay}{StartHour}", &v).unwrap(), "2025010107");
    }

    #[test]
    fn values_cannot_add_folders() {
        let mut v = vars();
        v.stream = "../../etc/passwd".into();
        v.app = "a\\b".into();
        assert_eq!(render_path("{AppName}/{StreamID}", &v).unwrap(), "a_b/.._.._etc_passwd");
    }

    #[test]
    fn template_errors() {
        for (t, needle) in [
            ("{RecordSource}/{Stream}", "unknown variable {Stream}"),
            ("{StartYears}", "unknown variable {StartYears}"),
            ("{}", "unknown variable {}"),
            ("{Domain", "without"),
            ("Domain}", "without"),
            ("{Do{main}", "inside"),
            ("/", "unusable"),
        ] {
            let e = render_path(t, &vars()).expect_err(t).to_string();
            assert!(e.contains(needle), "{t}: {e}");
        }
    }

    #[test]
    fn sanitize_cases() {
        assert_eq!(sanitize_key("/a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(sanitize_key("live/room 1/x.flv").unwrap(), "live/room 1/x.flv");
        assert_eq!(sanitize_key("直播/流.mp4").unwrap(), "直播/流.mp4");
        assert_eq!(sanitize_key("a..b/c").unwrap(), "a..b/c");
        for bad in ["", "/", "//./", "a/../b", "..", "a/\nb", "a\u{0}", "a\u{7f}", "a\u{85}b"] {
            assert!(matches!(sanitize_key(bad), Err(StorageError::InvalidKey { .. })), "{bad:?}");
        }
        assert!(sanitize_key(&"k".repeat(1025)).is_err());
        assert!(sanitize_key(&"k".repeat(1024)).is_ok());
    }

    #[test]
    fn random_ids_are_digits_and_differ() {
        let a = PathVars::new_random_id();
        let b = PathVars::new_random_id();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_digit()));
        assert_ne!(a, b);
    }
}
