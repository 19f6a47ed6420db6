//! WebRTC for ferrocast: WHIP ingest (RFC 9725) and WHEP playback over one UDP port, with str0m in ICE-lite
//! mode (DESIGN §4, §6).
//!
//! - One UDP socket serves every session. Datagrams are routed to their session by the source address once
//!   known, and before that by the ICE username of the STUN binding request (`our-ufrag:their-ufrag`).
//! - Each session is a tokio task owning its sans-IO [`str0m::Rtc`]; the shared socket sends its output.
//! - The answer advertises one host candidate per configured public IP/hostname ([`WebRtcConfig::candidates`]),
//!   all on the UDP port. As an ICE-lite server we never send connectivity checks; the client's checks tell us
//!   its address, so NAT in front of the server only needs the public IP in the candidate list.
//! - ICE over TCP (RFC 6544 passive host candidates, RFC 4571 framing) on [`WebRtcConfig::tcp_listen`] for
//!   clients behind firewalls that block UDP; TCP frames go through the same routing as datagrams.
//! - Audio: WebRTC viewers get Opus. AAC streams are transcoded to Opus once per stream by a shared bridge task
//!   ([`bridge`]); WHIP publishers' Opus goes to WHEP viewers untouched and is transcoded to AAC once for the hub
//!   (RTMP/FLV/HLS viewers and recordings).

pub mod audio;
pub mod av1;
mod bridge;
pub mod h264;
pub mod h265;
mod session;
mod signal;
mod tcp;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Weak};

use ferrocast_hub::{Hub, StreamKey};
use ferrocast_media::Frame;
use parking_lot::Mutex;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc};

pub use signal::router;

/// Settings of the WebRTC doors (`[webrtc]` in the server configuration).
#[derive(Debug, Clone)]
pub struct WebRtcConfig {
    /// The UDP address every WebRTC session uses (`0.0.0.0:8000` by default).
    pub udp_listen: String,
    /// The TCP address for ICE over TCP (passive candidates, RFC 4571 framing); empty turns it off.
    pub tcp_listen: String,
    /// Public IPs or host names advertised as ICE candidates in SDP answers, all with the UDP port. Empty: the
    /// bound IP, or when bound to `0.0.0.0` every local non-loopback IPv4 address (the default route's first),
    /// or `127.0.0.1` when there is none. Behind NAT or in a container, set the public IP here.
    pub candidates: Vec<String>,
    /// Domain used when the request names none.
    pub default_domain: String,
    /// `Access-Control-Allow-Origin` on WHIP/WHEP responses.
    pub cors_allow_origin: String,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            udp_listen: "0.0.0.0:8000".to_string(),
            tcp_listen: String::new(),
            candidates: Vec::new(),
            default_domain: "localhost".to_string(),
            cors_allow_origin: "*".to_string(),
        }
    }
}

/// Why the WebRTC doors could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The UDP port could not be bound.
    #[error("webrtc: cannot bind udp {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configured candidate could not be resolved to an IP address.
    #[error("webrtc: candidate {0:?} does not resolve to an IP address")]
    Candidate(String),
}

/// What the UDP loop or an HTTP handler hands a session task.
#[derive(Debug)]
pub(crate) enum SessionMsg {
    /// A datagram from the client.
    Datagram { source: SocketAddr, data: Vec<u8>, tcp: bool },
    /// Ask the (WHIP) publisher for a keyframe.
    RequestKeyframe,
    /// A candidate the client trickled (WHIP/WHEP `PATCH`).
    RemoteCandidate(str0m::Candidate),
    /// End the session (DELETE, shutdown).
    Stop,
}

/// Opus packets shared by every WHEP viewer of one stream: from a WHIP publisher directly or from the AAC → Opus
/// bridge. Viewers hold it; the producer holds a weak reference and stops when the last viewer left.
pub(crate) struct OpusFeed {
    pub(crate) tx: broadcast::Sender<Frame>,
}

impl OpusFeed {
    pub(crate) fn new() -> Arc<OpusFeed> {
        let (tx, _) = broadcast::channel(256);
        Arc::new(OpusFeed { tx })
    }
}

struct SessionEntry {
    tx: mpsc::Sender<SessionMsg>,
    ufrag: String,
    /// The client's ICE ufrag from its offer: a `PATCH` with another one is an ICE restart.
    remote_ufrag: String,
    addrs: Vec<SocketAddr>,
}

#[derive(Default)]
struct Registry {
    sessions: HashMap<String, SessionEntry>,
    by_ufrag: HashMap<String, String>,
    by_addr: HashMap<SocketAddr, String>,
    /// WHIP publishers by stream, for keyframe requests from viewers.
    publishers: HashMap<StreamKey, mpsc::Sender<SessionMsg>>,
    /// Opus sources by stream (WHIP publishers and AAC bridges).
    feeds: HashMap<StreamKey, Weak<OpusFeed>>,
    /// ICE-TCP connections by client address: their outgoing frame queues.
    tcp: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
}

pub(crate) struct Inner {
    pub(crate) hub: Hub,
    pub(crate) socket: Arc<UdpSocket>,
    pub(crate) candidates: Vec<SocketAddr>,
    /// The ICE-TCP candidates (same IPs, the TCP port); empty when ICE-TCP is off.
    pub(crate) tcp_candidates: Vec<SocketAddr>,
    tcp_listener: Mutex<Option<TcpListener>>,
    pub(crate) config: WebRtcConfig,
    registry: Mutex<Registry>,
}

/// The WebRTC doors: the shared UDP socket, the session registry and the HTTP signalling ([`router`]).
#[derive(Clone)]
pub struct WebRtc {
    pub(crate) inner: Arc<Inner>,
}

impl WebRtc {
    /// Binds the UDP port and resolves the candidates. Call [`WebRtc::run`] to serve it.
    pub async fn bind(config: WebRtcConfig, hub: Hub) -> Result<WebRtc, StartError> {
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = UdpSocket::bind(&config.udp_listen)
            .await
            .map_err(|source| StartError::Bind { addr: config.udp_listen.clone(), source })?;
        let local =
            socket.local_addr().map_err(|source| StartError::Bind { addr: config.udp_listen.clone(), source })?;
        let port = local.port();
        let mut candidates = Vec::new();
        for c in &config.candidates {
            let c = c.trim();
            if c.is_empty() {
                continue;
            }
            let addr = match c.parse::<IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, port),
                Err(_) => tokio::net::lookup_host((c, port))
                    .await
                    .ok()
                    .and_then(|mut it| it.next())
                    .ok_or_else(|| StartError::Candidate(c.to_string()))?,
            };
            if !candidates.contains(&addr) {
                candidates.push(addr);
            }
        }
        if candidates.is_empty() {
            candidates = default_candidate_ips(local.ip()).into_iter().map(|ip| SocketAddr::new(ip, port)).collect();
        }
        let (tcp_listener, tcp_candidates) = match config.tcp_listen.trim() {
            "" => (None, Vec::new()),
            addr => {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr: addr.to_string(), source })?;
                let tcp_port =
                    l.local_addr().map_err(|source| StartError::Bind { addr: addr.to_string(), source })?.port();
                let c = candidates.iter().map(|c| SocketAddr::new(c.ip(), tcp_port)).collect();
                (Some(l), c)
            }
        };
        Ok(WebRtc {
            inner: Arc::new(Inner {
                hub,
                socket: Arc::new(socket),
                candidates,
                tcp_candidates,
                tcp_listener: Mutex::new(tcp_listener),
                config,
                registry: Default::default(),
            }),
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.socket.local_addr()
    }

    /// The candidates advertised in answers.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.inner.candidates
    }

    /// The bound ICE-TCP address, when ICE-TCP is on.
    pub fn tcp_local_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_listener.lock().as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Reads the UDP socket (and accepts ICE-TCP connections) and routes packets to their sessions.
    pub async fn run(self) {
        if let Some(listener) = self.inner.tcp_listener.lock().take() {
            tokio::spawn(tcp::accept(self.inner.clone(), listener));
        }
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, source) = match self.inner.socket.recv_from(&mut buf).await {
                Ok(v) => v,
                Err(e) => {
                    // ICMP port unreachable from a gone client surfaces here on some systems; keep serving.
                    tracing::debug!(error = %e, "webrtc udp receive error");
                    continue;
                }
            };
            let data = &buf[..n];
            let Some(tx) = self.inner.route(source, data) else {
                tracing::trace!(%source, len = n, "webrtc datagram for no session");
                continue;
            };
            let msg = SessionMsg::Datagram { source, data: data.to_vec(), tcp: false };
            if tx.try_send(msg).is_err() {
                tracing::debug!(%source, "webrtc session queue full; datagram dropped");
            }
        }
    }

    /// Ends every session (server shutdown).
    pub fn shutdown(&self) {
        let reg = self.inner.registry.lock();
        for s in reg.sessions.values() {
            let _ = s.tx.try_send(SessionMsg::Stop);
        }
    }
}

impl Inner {
    /// The session a datagram belongs to: by source address, else by the STUN username's first part.
    pub(crate) fn route(&self, source: SocketAddr, data: &[u8]) -> Option<mpsc::Sender<SessionMsg>> {
        let mut reg = self.registry.lock();
        if let Some(id) = reg.by_addr.get(&source) {
            return reg.sessions.get(id).map(|s| s.tx.clone());
        }
        let ufrag = stun_local_ufrag(data)?;
        let id = reg.by_ufrag.get(ufrag)?.clone();
        reg.by_addr.insert(source, id.clone());
        let s = reg.sessions.get_mut(&id)?;
        s.addrs.push(source);
        Some(s.tx.clone())
    }

    pub(crate) fn tcp_connection(&self, peer: SocketAddr) -> Option<mpsc::Sender<Vec<u8>>> {
        self.registry.lock().tcp.get(&peer).cloned()
    }

    pub(crate) fn set_tcp_connection(&self, peer: SocketAddr, tx: Option<mpsc::Sender<Vec<u8>>>) {
        let mut reg = self.registry.lock();
        match tx {
            Some(tx) => {
                reg.tcp.insert(peer, tx);
            }
            None => {
                reg.tcp.remove(&peer);
                if let Some(id) = reg.by_addr.remove(&peer)
                    && let Some(s) = reg.sessions.get_mut(&id)
                {
                    s.addrs.retain(|a| *a != peer);
                }
            }
        }
    }

    pub(crate) fn register(&self, id: &str, ufrag: &str, remote_ufrag: &str, tx: mpsc::Sender<SessionMsg>) {
        let mut reg = self.registry.lock();
        reg.by_ufrag.insert(ufrag.to_string(), id.to_string());
        let entry =
            SessionEntry { tx, ufrag: ufrag.to_string(), remote_ufrag: remote_ufrag.to_string(), addrs: Vec::new() };
        reg.sessions.insert(id.to_string(), entry);
    }

    /// A session's channel and the client's ICE ufrag.
    pub(crate) fn session_with_remote_ufrag(&self, id: &str) -> Option<(mpsc::Sender<SessionMsg>, String)> {
        self.registry.lock().sessions.get(id).map(|s| (s.tx.clone(), s.remote_ufrag.clone()))
    }

    pub(crate) fn unregister(&self, id: &str) {
        let mut reg = self.registry.lock();
        if let Some(s) = reg.sessions.remove(id) {
            reg.by_ufrag.remove(&s.ufrag);
            for a in s.addrs {
                reg.by_addr.remove(&a);
            }
        }
    }

    pub(crate) fn session(&self, id: &str) -> Option<mpsc::Sender<SessionMsg>> {
        self.registry.lock().sessions.get(id).map(|s| s.tx.clone())
    }

    pub(crate) fn set_publisher(
        &self,
        key: &StreamKey,
        tx: Option<mpsc::Sender<SessionMsg>>,
        feed: Option<&Arc<OpusFeed>>,
    ) {
        let mut reg = self.registry.lock();
        match tx {
            Some(tx) => {
                reg.publishers.insert(key.clone(), tx);
            }
            None => {
                reg.publishers.remove(key);
            }
        }
        match feed {
            Some(f) => {
                reg.feeds.insert(key.clone(), Arc::downgrade(f));
            }
            None => {
                reg.feeds.remove(key);
            }
        }
    }

    pub(crate) fn publisher(&self, key: &StreamKey) -> Option<mpsc::Sender<SessionMsg>> {
        self.registry.lock().publishers.get(key).cloned()
    }

    /// The Opus feed of a stream, creating one with `make` (under the lock, so once per stream) when there is
    /// none or it is gone.
    pub(crate) fn feed_or(
        &self,
        key: &StreamKey,
        make: impl FnOnce() -> Option<Arc<OpusFeed>>,
    ) -> Option<Arc<OpusFeed>> {
        let mut reg = self.registry.lock();
        if let Some(f) = reg.feeds.get(key).and_then(Weak::upgrade) {
            return Some(f);
        }
        let f = make()?;
        reg.feeds.insert(key.clone(), Arc::downgrade(&f));
        Some(f)
    }
}

/// The candidate IPs when none is configured: the bound IP; when bound to `0.0.0.0`, every local non-loopback
/// IPv4 address (Linux: `/proc/net/fib_trie`), else the primary one (the default route's source), else loopback.
fn default_candidate_ips(bound: IpAddr) -> Vec<IpAddr> {
    if !bound.is_unspecified() {
        return vec![bound];
    }
    let usable = |ip: &IpAddr| !ip.is_unspecified() && !ip.is_loopback();
    let mut ips: Vec<IpAddr> = std::fs::read_to_string("/proc/net/fib_trie")
        .map(|t| local_ipv4_from_fib_trie(&t))
        .unwrap_or_default()
        .into_iter()
        .map(IpAddr::V4)
        .filter(usable)
        .collect();
    // Connecting a UDP socket sends nothing; it only asks the kernel which source address the route would use.
    let primary = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(usable);
    if let Some(p) = primary {
        // The primary address first: it is the one most clients can reach.
        ips.retain(|ip| *ip != p);
        ips.insert(0, p);
    }
    if ips.is_empty() {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    ips
}

/// The local addresses listed in `/proc/net/fib_trie` (`|-- A.B.C.D` followed by `/32 host LOCAL`).
fn local_ipv4_from_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(ip) = line.strip_prefix("|-- ") {
            last = ip.parse().ok();
        } else if line.contains("/32 host LOCAL")
            && let Some(ip) = last.take()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// The local (first) part of the USERNAME attribute of a STUN message, if `data` is one.
fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + len)?;
    let mut pos = 0;
    while pos + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[pos], body[pos + 1]]);
        let alen = u16::from_be_bytes([body[pos + 2], body[pos + 3]]) as usize;
        let value = body.get(pos + 4..pos + 4 + alen)?;
        if typ == 0x0006 {
            let user = std::str::from_utf8(value).ok()?;
            return user.split(':').next();
        }
        pos += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_username_is_parsed() {
        let user = b"abcd:wxyz";
        let mut msg = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        msg.extend_from_slice(&[7; 12]);
        let mut attrs = vec![0x00, 0x06, 0x00, user.len() as u8];
        attrs.extend_from_slice(user);
        attrs.extend_from_slice(&[0, 0, 0]);
        msg[3] = attrs.len() as u8;
        msg.extend_from_slice(&attrs);
        assert_eq!(stun_local_ufrag(&msg), Some("abcd"));
        assert_eq!(stun_local_ufrag(&msg[..25]), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
    }

    #[test]
    fn a_specific_bind_address_is_the_default_candidate() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(default_candidate_ips(ip), vec![ip]);
        let any = default_candidate_ips("0.0.0.0".parse().unwrap());
        assert!(!any.is_empty() && any.iter().all(|ip| !ip.is_unspecified()));
    }

    #[test]
    fn fib_trie_local_addresses() {
        let text = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n           |-- 10.0.0.5\n              /32 host LOCAL\n           |-- 10.0.0.255\n              /32 link BROADCAST\n           |-- 127.0.0.1\n              /32 host LOCAL\nLocal:\n           |-- 10.0.0.5\n              /32 host LOCAL\n";
        let want: Vec<Ipv4Addr> = vec!["10.0.0.5".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        assert_eq!(local_ipv4_from_fib_trie(text), want);
    }
}
