//! The SRT `streamid`: which stream a caller wants, whether it publishes or plays, and its signature.
//!
//! Accepted forms (tolerant, as the service's docs print several garbled variants):
//! - the service's `#!::h=push.example.com,r=live/stream,txSecret=..,txTime=..`;
//! - variants with `;` instead of `,`, or another prefix (`#!;h=..;r=..`, `#t:h=..`): everything before the first
//!   key after `#` is ignored;
//! - the SRT access-control syntax `#!::r=live/stream,m=publish|request,u=..,s=..,t=stream` (`m=request` plays;
//!   the default is publish);
//! - a plain `live/stream` or `live/stream?txSecret=..&txTime=..` (the query may also follow `r=`), or the key list
//!   without its prefix (`r=live/stream,txSecret=..`);
//!
//! A missing `h` (or an IP address as `h`) means the configured default domain. Keys other than `h`, `r`, `m`,
//! `u`, `s` and `t` are passed on as URL parameters (`txSecret`, `txTime`, `txDelayTime`, ...).

use ferrocast_hub::{StreamKey, resolve_domain};

/// Whether the caller sends or receives the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `m=publish` (the default): the caller sends MPEG-TS.
    Publish,
    /// `m=request`: the caller receives MPEG-TS.
    Request,
}

/// A parsed streamid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// The stream (domain resolved against the default domain).
    pub key: StreamKey,
    /// Publish or play.
    pub mode: Mode,
    /// The parameters for the access check (`txSecret`, `txTime`, ...), values as sent.
    pub params: Vec<(String, String)>,
}

/// Why a streamid cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// No streamid, or no resource (`r=`) in it.
    #[error("no stream name in the streamid")]
    NoResource,
    /// The resource does not name an app and a stream (`app/stream`).
    #[error("the streamid resource `{0}` is not app/stream")]
    BadResource(String),
    /// `m=` names a mode other than `publish` and `request`.
    #[error("unsupported streamid mode `{0}`")]
    BadMode(String),
}

/// Parses a streamid; `default_domain` is used when it names no domain (or an IP address).
pub fn parse_stream_id(raw: &str, default_domain: &str) -> Result<StreamRequest, StreamIdError> {
    // Some callers (ffmpeg before 6, URLs pasted percent-encoded) send the streamid still URL-encoded.
    let decoded;
    let raw = if raw.starts_with("%23") || raw.contains("%2F") || raw.contains("%2f") {
        decoded = percent_decode(raw);
        decoded.trim()
    } else {
        raw.trim()
    };
    let mut host: Option<String> = None;
    let mut resource: Option<String> = None;
    let mut mode = Mode::Publish;
    let mut params = Vec::new();
    // `#!::h=..,r=..`, or the same key list without the prefix (as printed for the "SRT stream key").
    let body = raw.strip_prefix('#').or_else(|| (raw.starts_with("r=") || raw.starts_with("h=")).then_some(raw));
    if let Some(body) = body {
        // Skip the prefix (`!::`, `!;`, `t:`, ...): up to the last separator before the first `=`.
        let eq = body.find('=').unwrap_or(body.len());
        let start = body[..eq].rfind([':', ';', '!', ',']).map_or(0, |i| i + 1);
        for pair in body[start..].split([',', ';']) {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (k.trim(), v.trim());
            match k {
                "h" => host = Some(v.to_string()),
                "r" => resource = Some(v.to_string()),
                "m" => {
                    mode = match v.to_ascii_lowercase().as_str() {
                        "publish" | "" => Mode::Publish,
                        "request" => Mode::Request,
                        _ => return Err(StreamIdError::BadMode(v.to_string())),
                    }
                }
                "u" | "s" | "t" => {}
                _ => params.push((k.to_string(), v.to_string())),
            }
        }
    } else if !raw.is_empty() {
        resource = Some(raw.to_string());
    }
    let resource = resource.filter(|r| !r.is_empty()).ok_or(StreamIdError::NoResource)?;
    let (path, query) = match resource.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (resource.as_str(), None),
    };
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            // Query parameters override streamid keys of the same name.
            match params.iter_mut().find(|(pk, _)| pk == k) {
                Some(slot) => slot.1 = v.to_string(),
                None => params.push((k.to_string(), v.to_string())),
            }
        }
    }
    let path = path.trim_matches('/');
    let (app, stream) = path.split_once('/').ok_or_else(|| StreamIdError::BadResource(path.to_string()))?;
    let (app, stream) = (app.trim(), stream.trim_matches('/').trim());
    if app.is_empty() || stream.is_empty() {
        return Err(StreamIdError::BadResource(path.to_string()));
    }
    let domain = resolve_domain(host.as_deref().filter(|h| !h.is_empty()), default_domain);
    Ok(StreamRequest { key: StreamKey::new(&domain, app, stream), mode, params })
}

/// Decodes `%XX` escapes; malformed escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> StreamRequest {
        parse_stream_id(raw, "def.example").unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    fn param<'a>(r: &'a StreamRequest, k: &str) -> Option<&'a str> {
        r.params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn service_form() {
        let r = p("#!::h=Push.Example.com,r=live/s1,txSecret=abc,txTime=5F5E0FFF");
        assert_eq!(r.key, StreamKey::new("push.example.com", "live", "s1"));
        assert_eq!(r.mode, Mode::Publish);
        assert_eq!(param(&r, "txSecret"), Some("abc"));
        assert_eq!(param(&r, "txTime"), Some("5F5E0FFF"));
    }

    #[test]
    fn garbled_variants() {
        for raw in [
            "#!;h=push.example.com;r=live/s1;txSecret=abc;txTime=5F",
            "#!::h=push.example.com;r=live/s1,txSecret=abc;txTime=5F",
            "#t:h=push.example.com,r=live/s1,txSecret=abc,txTime=5F",
            "#!:: h=push.example.com , r=live/s1 ,txSecret=abc,txTime=5F",
        ] {
            let r = p(raw);
            assert_eq!(r.key, StreamKey::new("push.example.com", "live", "s1"), "{raw}");
            assert_eq!(param(&r, "txSecret"), Some("abc"), "{raw}");
            assert_eq!(param(&r, "txTime"), Some("5F"), "{raw}");
        }
    }

    #[test]
    fn default_domain_and_ip_hosts() {
        assert_eq!(p("#!::r=live/s1").key.domain, "def.example");
        assert_eq!(p("#!::h=127.0.0.1,r=live/s1").key.domain, "def.example");
        assert_eq!(p("#!::h=,r=live/s1").key.domain, "def.example");
    }

    #[test]
    fn access_control_syntax() {
        let r = p("#!::r=live/s1,m=request,u=alice,s=123,t=stream");
        assert_eq!(r.mode, Mode::Request);
        assert!(r.params.is_empty());
        assert_eq!(p("#!::r=live/s1,m=publish").mode, Mode::Publish);
        assert_eq!(p("#!::m=Request,r=live/s1").mode, Mode::Request);
        assert!(matches!(parse_stream_id("#!::r=live/s1,m=bidirectional", "d"), Err(StreamIdError::BadMode(_))));
    }

    #[test]
    fn plain_forms() {
        let r = p("live/s1");
        assert_eq!(r.key, StreamKey::new("def.example", "live", "s1"));
        let r = p("live/s1?txSecret=abc&txTime=5F");
        assert_eq!(r.key.stream, "s1");
        assert_eq!(param(&r, "txSecret"), Some("abc"));
        let r = p("#!::r=live/s1?txSecret=abc&txTime=5F,m=request");
        assert_eq!((r.mode, param(&r, "txTime")), (Mode::Request, Some("5F")));
        assert_eq!(p("/live/a/b/").key.stream, "a/b");
        // The key list without its `#!::` prefix.
        let r = p("r=live/s1,txSecret=abc,txTime=5F");
        assert_eq!((r.key.stream.as_str(), param(&r, "txSecret")), ("s1", Some("abc")));
    }

    #[test]
    fn percent_encoded_streamids() {
        let r = p("%23%21%3A%3Ah%3Dpush.example.com%2Cr%3Dlive%2Fs1%2Cm%3Drequest");
        assert_eq!((r.key, r.mode), (StreamKey::new("push.example.com", "live", "s1"), Mode::Request));
        assert_eq!(p("live%2Fs1").key.stream, "s1");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn bad_streamids() {
        for raw in ["", "#!::", "#!::h=x", "stream", "#!::r=live", "#!::r=/s", "live/", "#"] {
            assert!(parse_stream_id(raw, "d").is_err(), "{raw}");
        }
    }
}
