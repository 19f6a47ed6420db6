use std::fmt;

/// Identifies a stream: the push domain it belongs to, the application path and the stream name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// The push domain (lowercase host name, no port).
    pub domain: String,
    /// The application ("live" by default in the service's URLs).
    pub app: String,
    /// The stream name, without any query string.
    pub stream: String,
}

impl StreamKey {
    /// Builds a key, normalising the domain to lowercase without a port.
    pub fn new(domain: &str, app: &str, stream: &str) -> StreamKey {
        StreamKey { domain: normalize_domain(domain), app: app.to_string(), stream: stream.to_string() }
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.domain, self.app, self.stream)
    }
}

/// Lowercases a host name and strips a `:port` suffix (keeping bracketed IPv6 literals intact).
pub fn normalize_domain(host: &str) -> String {
    let host = host.trim();
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) if host[i + 1..].chars().all(|c| c.is_ascii_digit()) => &host[..i],
            _ => host,
        }
    };
    without_port.to_ascii_lowercase()
}

/// The domain a request belongs to: the host it named, unless that is an IP address, `localhost` or absent,
/// in which case the configured default domain.
pub fn resolve_domain(host: Option<&str>, default_domain: &str) -> String {
    let Some(host) = host.map(normalize_domain).filter(|h| !h.is_empty()) else {
        return normalize_domain(default_domain);
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" || bare.parse::<std::net::IpAddr>().is_ok() {
        normalize_domain(default_domain)
    } else {
        host
    }
}

/// The protocol a publisher or viewer speaks; used for metrics, logs and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// RTMP over plain TCP.
    Rtmp,
    /// RTMP over TLS.
    Rtmps,
    /// FLV over an HTTP response body.
    HttpFlv,
    /// HLS and LL-HLS over HTTP.
    Hls,
    /// MPEG-DASH over HTTP.
    Dash,
    /// MPEG-TS over SRT (publish and `m=request` play).
    Srt,
    /// WebRTC: WHIP ingest and WHEP playback.
    WebRtc,
}

impl Protocol {
    /// Every protocol, in the order metrics list them.
    pub const ALL: [Protocol; 7] = [
        Protocol::Rtmp,
        Protocol::Rtmps,
        Protocol::HttpFlv,
        Protocol::Hls,
        Protocol::Dash,
        Protocol::Srt,
        Protocol::WebRtc,
    ];

    /// A lowercase label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Rtmps => "rtmps",
            Protocol::HttpFlv => "http-flv",
            Protocol::Hls => "hls",
            Protocol::Dash => "dash",
            Protocol::Srt => "srt",
            Protocol::WebRtc => "webrtc",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised() {
        assert_eq!(normalize_domain("Push.Example.COM:1935"), "push.example.com");
        assert_eq!(normalize_domain("example.com"), "example.com");
        assert_eq!(normalize_domain("[::1]:8080"), "[::1]");
        assert_eq!(normalize_domain("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn ip_hosts_fall_back_to_the_default_domain() {
        assert_eq!(resolve_domain(Some("127.0.0.1:1935"), "Live.Local"), "live.local");
        assert_eq!(resolve_domain(Some("[::1]:8080"), "d"), "d");
        assert_eq!(resolve_domain(Some("localhost"), "d"), "d");
        assert_eq!(resolve_domain(None, "d"), "d");
        assert_eq!(resolve_domain(Some("Push.Example.com:1935"), "d"), "push.example.com");
    }
}
