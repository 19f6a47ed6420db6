//! Auth at the door (DESIGN §2): the one question every ingest and egress protocol asks before it touches the
//! hub. Protocols only extract the parameters (RTMP stream name and tcUrl query, HTTP query and `Referer`, ...);
//! an [`AccessPolicy`] decides. The policy lives here so protocols do not depend on the control plane, which
//! installs its own with [`Hub::set_access_policy`](crate::Hub::set_access_policy).

use std::fmt;
use std::net::SocketAddr;

use crate::{Protocol, StreamKey};

/// Whether a client wants to send a stream or receive one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A publisher (push).
    Publish,
    /// A viewer (play).
    Play,
}

impl Direction {
    /// A lowercase label for logs.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Publish => "publish",
            Direction::Play => "play",
        }
    }
}

/// What a client asks for, as the protocol saw it.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// Publish or play.
    pub direction: Direction,
    /// The client's protocol.
    pub protocol: Protocol,
    /// The stream, its name exactly as requested (a transcoded play keeps its `_Template` suffix; no extension).
    pub key: &'a StreamKey,
    /// The URL's query parameters (RTMP: the tcUrl query overridden by the stream-name query).
    pub params: &'a [(String, String)],
    /// The client's address.
    pub client: Option<SocketAddr>,
    /// The HTTP `Referer` header, for HTTP playback; `None` elsewhere or when absent.
    pub referer: Option<&'a str>,
}

impl AccessRequest<'_> {
    /// The first value of query parameter `name` (exact spelling).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The class of a refusal; protocols map it to their own status (RTMP `onStatus` code, HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyKind {
    /// Missing, malformed, wrong or expired signature (`txSecret`/`txTime`).
    Unauthorized,
    /// A forbidden stream or domain, or a referer rule.
    Forbidden,
    /// The domain is not configured while domains are.
    UnknownDomain,
}

/// A refusal: why, for the log and the client, and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// A short human-readable reason (`missing txSecret`, `expired`, `bad signature`, `forbidden stream`, ...).
    pub reason: String,
    /// The class of the refusal.
    pub kind: DenyKind,
}

impl Denied {
    /// A refusal of `kind` for `reason`.
    pub fn new(kind: DenyKind, reason: impl Into<String>) -> Denied {
        Denied { reason: reason.into(), kind }
    }

    /// A signature refusal.
    pub fn unauthorized(reason: impl Into<String>) -> Denied {
        Denied::new(DenyKind::Unauthorized, reason)
    }

    /// A forbidden stream, domain or referer.
    pub fn forbidden(reason: impl Into<String>) -> Denied {
        Denied::new(DenyKind::Forbidden, reason)
    }

    /// An unknown domain.
    pub fn unknown_domain(reason: impl Into<String>) -> Denied {
        Denied::new(DenyKind::UnknownDomain, reason)
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Denied {}

/// Decides whether a publish or play may proceed. Synchronous: implementations answer from an in-memory snapshot
/// (the control plane refreshes it when the store changes), so a door never waits on I/O.
pub trait AccessPolicy: Send + Sync {
    /// `Ok` to let the client in, else why not.
    fn check(&self, req: &AccessRequest<'_>) -> Result<(), Denied>;

    /// The domain whose streams a playback request for `requested` plays: for a play domain bound to a push
    /// domain, that push domain (streams live under the domain they were pushed to). `None` keeps `requested`.
    fn stream_domain(&self, requested: &str) -> Option<String> {
        let _ = requested;
        None
    }

    /// The playback delay configured for a stream (AddDelayLiveStream), applied when its push starts.
    fn stream_delay(&self, key: &StreamKey) -> Option<std::time::Duration> {
        let _ = key;
        None
    }
}

/// The default: an open server (no domains configured), every request allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl AccessPolicy for AllowAll {
    fn check(&self, _req: &AccessRequest<'_>) -> Result<(), Denied> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{Hub, HubConfig, Metrics};

    /// Lets publishers in only with `token=ok`, refuses every play of stream `secret`.
    struct TestPolicy {
        calls: AtomicUsize,
    }

    impl AccessPolicy for TestPolicy {
        fn check(&self, req: &AccessRequest<'_>) -> Result<(), Denied> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            match req.direction {
                Direction::Publish if req.param("token") == Some("ok") => Ok(()),
                Direction::Publish => Err(Denied::unauthorized("missing token")),
                Direction::Play if req.key.stream == "secret" => Err(Denied::forbidden("forbidden stream")),
                Direction::Play if req.referer == Some("http://evil.example/") => Err(Denied::forbidden("referer")),
                Direction::Play => Ok(()),
            }
        }
    }

    fn request<'a>(
        direction: Direction,
        key: &'a StreamKey,
        params: &'a [(String, String)],
        referer: Option<&'a str>,
    ) -> AccessRequest<'a> {
        AccessRequest {
            direction,
            protocol: Protocol::Rtmp,
            key,
            params,
            client: Some("127.0.0.1:5000".parse().unwrap()),
            referer,
        }
    }

    #[test]
    fn a_new_hub_allows_everything() {
        let hub = Hub::new(HubConfig::default(), Arc::new(Metrics::default()));
        let key = StreamKey::new("example.com", "live", "test");
        assert_eq!(hub.check_access(&request(Direction::Publish, &key, &[], None)), Ok(()));
        assert_eq!(hub.check_access(&request(Direction::Play, &key, &[], Some("http://x/"))), Ok(()));
    }

    #[test]
    fn an_installed_policy_decides_and_is_shared_by_clones() {
        let hub = Hub::new(HubConfig::default(), Arc::new(Metrics::default()));
        let clone = hub.clone();
        let policy = Arc::new(TestPolicy { calls: AtomicUsize::new(0) });
        hub.set_access_policy(policy.clone());

        let key = StreamKey::new("example.com", "live", "test");
        let ok = vec![("token".to_string(), "ok".to_string())];
        assert_eq!(clone.check_access(&request(Direction::Publish, &key, &ok, None)), Ok(()));
        let denied = clone.check_access(&request(Direction::Publish, &key, &[], None)).unwrap_err();
        assert_eq!(denied, Denied::unauthorized("missing token"));
        assert_eq!(denied.to_string(), "missing token");

        let secret = StreamKey::new("example.com", "live", "secret");
        assert_eq!(
            hub.check_access(&request(Direction::Play, &secret, &[], None)).unwrap_err().kind,
            DenyKind::Forbidden
        );
        let evil = request(Direction::Play, &key, &[], Some("http://evil.example/"));
        assert_eq!(hub.check_access(&evil), Err(Denied::forbidden("referer")));
        assert_eq!(hub.check_access(&request(Direction::Play, &key, &[], None)), Ok(()));
        assert_eq!(policy.calls.load(Ordering::Relaxed), 5);

        hub.set_access_policy(Arc::new(AllowAll));
        assert_eq!(clone.check_access(&request(Direction::Publish, &key, &[], None)), Ok(()));
        assert_eq!(policy.calls.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_policy_may_replace_itself_while_answering() {
        // `check_access` must not hold the hub's lock while the policy runs.
        struct Swapper(Hub);
        impl AccessPolicy for Swapper {
            fn check(&self, _req: &AccessRequest<'_>) -> Result<(), Denied> {
                self.0.set_access_policy(Arc::new(AllowAll));
                Err(Denied::unknown_domain("unknown domain"))
            }
        }
        let hub = Hub::new(HubConfig::default(), Arc::new(Metrics::default()));
        hub.set_access_policy(Arc::new(Swapper(hub.clone())));
        let key = StreamKey::new("example.com", "live", "test");
        assert_eq!(
            hub.check_access(&request(Direction::Publish, &key, &[], None)).unwrap_err().kind,
            DenyKind::UnknownDomain
        );
        assert_eq!(hub.check_access(&request(Direction::Publish, &key, &[], None)), Ok(()));
    }

    #[test]
    fn param_finds_the_first_exact_key() {
        let key = StreamKey::new("example.com", "live", "test");
        let params = vec![("a".to_string(), "1".to_string()), ("a".to_string(), "2".to_string())];
        let req = request(Direction::Play, &key, &params, None);
        assert_eq!(req.param("a"), Some("1"));
        assert_eq!(req.param("A"), None);
        assert_eq!(Direction::Publish.label(), "publish");
    }
}
