//! Object keys of pictures: the `CosPrefix` and `CosFileName` templates of a snapshot template.

use ferrocast_formats::time::civil_from_days;

use crate::{SnapshotError, SnapshotSpec};

/// The folder template used when a template sets none (API reference of `CreateLiveSnapshotTemplate`).
pub const DEFAULT_PREFIX: &str = "/{Year}-{Month}-{Day}";
/// The file name template used when a template sets none.
pub const DEFAULT_FILE_NAME: &str = "{StreamID}-screenshot-{Hour}-{Minute}-{Second}-{Width}x{Height}{Ext}";
/// What `{Ext}` expands to: every picture is a JPEG.
pub const EXT: &str = ".jpg";

/// Expands the prefix and file-name templates of `spec` for a picture of `stream` taken at `unix_ms` with `size`,
/// and joins them with one `/` (no leading `/`: the key is relative to the storage root).
///
/// Variables (the ones the docs list): `{Year}` (4 digits), `{Month}` `{Day}` `{Hour}` `{Minute}` `{Second}`
/// (2 digits, in `spec.utc_offset_s`), `{StreamID}`, `{Width}`, `{Height}`, `{Ext}` (`.jpg`). Names are
/// case-sensitive, as documented. An unknown variable or a `{` without `}` is an error; a lone `}` is literal.
/// Empty templates mean the defaults ([`DEFAULT_PREFIX`], [`DEFAULT_FILE_NAME`]); a prefix of `/` puts the
/// pictures at the root. A key with a `.` or `..` path segment is refused.
pub fn picture_key(spec: &SnapshotSpec, stream: &str, unix_ms: i64, size: (u32, u32)) -> Result<String, SnapshotError> {
    let vars = Vars::new(stream, unix_ms, spec.utc_offset_s, size);
    let prefix = if spec.prefix.is_empty() { DEFAULT_PREFIX } else { &spec.prefix };
    let file_name = if spec.file_name.is_empty() { DEFAULT_FILE_NAME } else { &spec.file_name };
    let folder = expand(prefix, &vars)?;
    let name = expand(file_name, &vars)?;
    let folder = folder.trim_matches('/');
    let name = name.trim_start_matches('/');
    if name.is_empty() {
        return Err(SnapshotError::BadSpec(format!("the file name template {file_name:?} expands to nothing")));
    }
    let key = if folder.is_empty() { name.to_string() } else { format!("{folder}/{name}") };
    // A stream name or template could otherwise climb out of the storage root of a local directory.
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(SnapshotError::BadSpec(format!("picture key {key:?} has a . or .. path segment")));
    }
    Ok(key)
}

struct Vars<'a> {
    stream: &'a str,
    date: (i64, u32, u32),
    time: (i64, i64, i64),
    size: (u32, u32),
}

impl<'a> Vars<'a> {
    fn new(stream: &'a str, unix_ms: i64, offset: i64, size: (u32, u32)) -> Vars<'a> {
        let t = unix_ms.div_euclid(1000).saturating_add(offset);
        let s = t.rem_euclid(86_400);
        Vars { stream, date: civil_from_days(t.div_euclid(86_400)), time: (s / 3600, s / 60 % 60, s % 60), size }
    }

    fn value(&self, name: &str) -> Option<String> {
        Some(match name {
            "Year" => format!("{:04}", self.date.0),
            "Month" => format!("{:02}", self.date.1),
            "Day" => format!("{:02}", self.date.2),
            "Hour" => format!("{:02}", self.time.0),
            "Minute" => format!("{:02}", self.time.1),
            "Second" => format!("{:02}", self.time.2),
            "StreamID" => self.stream.to_string(),
            "Width" => self.size.0.to_string(),
            "Height" => self.size.1.to_string(),
            "Ext" => EXT.to_string(),
            _ => return None,
        })
    }
}

fn expand(template: &str, vars: &Vars<'_>) -> Result<String, SnapshotError> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| SnapshotError::BadTemplate(template.to_string()))?;
        let name = &after[..close];
        let value = vars.value(name).ok_or_else(|| SnapshotError::UnknownVariable(name.to_string()))?;
        out.push_str(&value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-11-22 02:12:05.250 UTC = 10:12:05 in UTC+8.
    const T: i64 = 1_795_313_525_250;

    fn spec() -> SnapshotSpec {
        SnapshotSpec::new(Duration::from_secs(10))
    }

    #[test]
    fn defaults_in_utc() {
        let key = picture_key(&spec(), "s1", T, (640, 360)).expect("defaults expand");
        assert_eq!(key, "2026-11-22/s1-screenshot-02-12-05-640x360.jpg");
    }

    #[test]
    fn defaults_in_utc_plus_8() {
        let spec = SnapshotSpec { utc_offset_s: 8 * 3600, ..spec() };
        assert_eq!(
            picture_key(&spec, "s1", T, (640, 360)).expect("ok"),
            "2026-11-22/s1-screenshot-10-12-05-640x360.jpg"
        );
    }

    #[test]
    fn the_offset_can_change_the_day() {
        // 2026-11-22 20:00:00 UTC is 04:00 on the 23rd in UTC+8.
        let t = 1_795_377_600_000;
        let utc = picture_key(&spec(), "s", t, (2, 2)).expect("ok");
        let cst = picture_key(&SnapshotSpec { utc_offset_s: 28_800, ..spec() }, "s", t, (2, 2)).expect("ok");
        assert_eq!(utc, "2026-11-22/s-screenshot-20-00-00-2x2.jpg");
        assert_eq!(cst, "2026-11-23/s-screenshot-04-00-00-2x2.jpg");
    }

    #[test]
    fn custom_templates() {
        let spec = SnapshotSpec {
            prefix: "/shots/{StreamID}/".into(),
            file_name: "{Year}{Month}{Day}-{Hour}{Minute}{Second}_{Width}_{Height}{Ext}".into(),
            ..spec()
        };
        assert_eq!(picture_key(&spec, "cam", T, (1280, 720)).expect("ok"), "shots/cam/20261122-021205_1280_720.jpg");
        let root = SnapshotSpec { prefix: "/".into(), ..spec };
        assert_eq!(picture_key(&root, "cam", T, (2, 2)).expect("ok"), "20261122-021205_2_2.jpg");
    }

    #[test]
    fn unknown_and_unterminated_variables_are_errors() {
        let bad = SnapshotSpec { file_name: "{StreamID}-{Millis}{Ext}".into(), ..spec() };
        match picture_key(&bad, "s", T, (2, 2)) {
            Err(SnapshotError::UnknownVariable(v)) => assert_eq!(v, "Millis"),
            other => panic!("expected an unknown variable error, got {other:?}"),
        }
        let lower = SnapshotSpec { prefix: "/{year}".into(), ..spec() };
        assert!(matches!(picture_key(&lower, "s", T, (2, 2)), Err(SnapshotError::UnknownVariable(v)) if v == "year"));
        let open = SnapshotSpec { file_name: "{StreamID".into(), ..spec() };
        assert!(matches!(picture_key(&open, "s", T, (2, 2)), Err(SnapshotError::BadTemplate(_))));
        let climb = SnapshotSpec { file_name: "{StreamID}/x{Ext}".into(), ..spec() };
        assert!(matches!(picture_key(&climb, "..", T, (2, 2)), Err(SnapshotError::BadSpec(_))));
        let nothing = SnapshotSpec { file_name: "/".into(), ..spec() };
        assert!(matches!(picture_key(&nothing, "s", T, (2, 2)), Err(SnapshotError::BadSpec(_))));
    }

    #[test]
    fn before_1970_still_works() {
        assert_eq!(picture_key(&spec(), "s", -1000, (2, 2)).expect("ok"), "1969-12-31/s-screenshot-23-59-59-2x2.jpg");
    }
}
