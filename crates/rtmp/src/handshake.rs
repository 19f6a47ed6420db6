//! The RTMP handshake (C0/C1/C2, S0/S1/S2), server and client sides, sans-IO.
//!
//! [`ServerHandshake`] answers both the simple handshake and the "complex" one (HMAC-SHA256 digests keyed
//! with the Flash Player / Flash Media Server strings, digest-first or key-first layout) when C1 carries a
//! valid digest. Players such as ffmpeg validate S1/S2 only when S1's version field is non-zero, so the
//! simple answer keeps it zero. [`ClientHandshake`] sends a simple C1 by default or a complex one on request.
//!
//! Both sides work the same way: [`feed`](ServerHandshake::feed) returns how many of the given bytes it
//! consumed; once [`is_done`](ServerHandshake::is_done), the rest belongs to the chunk stream.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use thiserror::Error;

/// The only RTMP version this crate speaks (plain RTMP; 6 would be RTMPE).
pub const RTMP_VERSION: u8 = 3;
/// Size of C1/C2/S1/S2.
pub const HANDSHAKE_SIZE: usize = 1536;

const DIGEST_LEN: usize = 32;
/// Client digest key ("Genuine Adobe Flash Player 001") followed by the shared 32-byte tail.
const PLAYER_KEY: &[u8; 62] = b"Genuine Adobe Flash Player 001\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
/// Server digest key ("Genuine Adobe Flash Media Server 001") followed by the shared 32-byte tail.
const SERVER_KEY: &[u8; 68] = b"Genuine Adobe Flash Media Server 001\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
/// Length of the public part of each key (used for the C1/S1 digests).
const PLAYER_KEY_PUBLIC: usize = 30;
const SERVER_KEY_PUBLIC: usize = 36;
/// Version field we put in a complex S1 (FMS 4.5-like; non-zero tells the player to validate).
const SERVER_VERSION: [u8; 4] = [0x04, 0x05, 0x00, 0x01];
/// Version field of a complex C1 (Flash Player 9.0.124.2, as ffmpeg sends).
const CLIENT_VERSION: [u8; 4] = [0x09, 0x00, 0x7c, 0x02];

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// C0/S0 asked for a version other than 3 (e.g. RTMPE, or not RTMP at all).
    #[error("unsupported RTMP version {0}")]
    UnsupportedVersion(u8),
}

type Packet = [u8; HANDSHAKE_SIZE];

/// Where the 764-byte digest block sits in C1/S1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Key block first, digest block second (digest block at 772).
    KeyFirst,
    /// Digest block first (at 8).
    DigestFirst,
}

fn digest_offset(packet: &Packet, schema: Schema) -> usize {
    let base = match schema {
        Schema::KeyFirst => 772,
        Schema::DigestFirst => 8,
    };
    let sum: usize = packet.iter().skip(base).take(4).map(|&b| usize::from(b)).sum();
    base + 4 + sum % 728
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; DIGEST_LEN];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC of the packet without its 32 digest bytes at `offset`.
fn packet_digest(packet: &Packet, offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    let before = packet.get(..offset).unwrap_or_default();
    let after = packet.get(offset + DIGEST_LEN..).unwrap_or_default();
    hmac_sha256(key, &[before, after])
}

fn stored_digest(packet: &Packet, offset: usize) -> &[u8] {
    packet.get(offset..offset + DIGEST_LEN).unwrap_or_default()
}

/// Finds a valid digest in a C1 (`key` = player key) or S1 (`key` = server key), trying both layouts.
fn find_digest(packet: &Packet, key: &[u8]) -> Option<(Schema, [u8; DIGEST_LEN])> {
    [Schema::DigestFirst, Schema::KeyFirst].into_iter().find_map(|schema| {
        let offset = digest_offset(packet, schema);
        let digest = packet_digest(packet, offset, key);
        (stored_digest(packet, offset) == digest).then_some((schema, digest))
    })
}

/// Writes a digest into `packet` for `schema`, returning it.
fn imprint_digest(packet: &mut Packet, schema: Schema, key: &[u8]) -> [u8; DIGEST_LEN] {
    let offset = digest_offset(packet, schema);
    let digest = packet_digest(packet, offset, key);
    if let Some(slot) = packet.get_mut(offset..offset + DIGEST_LEN) {
        slot.copy_from_slice(&digest);
    }
    digest
}

/// A C2/S2 answering a complex C1/S1: random bytes whose last 32 bytes are an HMAC keyed by the peer's digest.
fn complex_response(peer_digest: &[u8; DIGEST_LEN], full_key: &[u8]) -> Packet {
    let mut packet = random_packet();
    let key = hmac_sha256(full_key, &[peer_digest]);
    let split = HANDSHAKE_SIZE - DIGEST_LEN;
    let signature = hmac_sha256(&key, &[packet.get(..split).unwrap_or_default()]);
    if let Some(slot) = packet.get_mut(split..) {
        slot.copy_from_slice(&signature);
    }
    packet
}

fn random_packet() -> Packet {
    let mut packet = [0u8; HANDSHAKE_SIZE];
    rand::thread_rng().fill_bytes(&mut packet);
    packet
}

/// Copies up to `want - buf.len()` bytes from `data` into `buf`, returning how many were taken.
fn fill(buf: &mut Vec<u8>, want: usize, data: &[u8]) -> usize {
    let n = want.saturating_sub(buf.len()).min(data.len());
    buf.extend_from_slice(data.get(..n).unwrap_or_default());
    n
}

fn to_packet(bytes: &[u8]) -> Packet {
    let mut packet = [0u8; HANDSHAKE_SIZE];
    packet.iter_mut().zip(bytes).for_each(|(d, s)| *d = *s);
    packet
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerStage {
    /// Waiting for C0 + C1.
    C0C1,
    /// S0/S1/S2 queued; waiting for C2.
    C2,
    Done,
}

/// Server side of the handshake.
#[derive(Debug)]
pub struct ServerHandshake {
    stage: ServerStage,
    buf: Vec<u8>,
    output: Vec<u8>,
    complex: bool,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A handshake waiting for C0/C1.
    pub fn new() -> Self {
        Self {
            stage: ServerStage::C0C1,
            buf: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            output: Vec::new(),
            complex: false,
        }
    }

    /// Consumes handshake bytes from `data`, returning how many were used; any rest belongs to the chunk
    /// stream once [`is_done`](Self::is_done). S0+S1+S2 are queued as soon as C0+C1 are complete.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, HandshakeError> {
        let mut used = 0;
        if self.stage == ServerStage::C0C1 {
            used += fill(&mut self.buf, 1 + HANDSHAKE_SIZE, data);
            if let Some(&version) = self.buf.first()
                && version != RTMP_VERSION
            {
                return Err(HandshakeError::UnsupportedVersion(version));
            }
            if self.buf.len() < 1 + HANDSHAKE_SIZE {
                return Ok(used);
            }
            let c1 = to_packet(self.buf.get(1..).unwrap_or_default());
            self.respond(&c1);
            self.buf.clear();
            self.stage = ServerStage::C2;
        }
        if self.stage == ServerStage::C2 {
            used += fill(&mut self.buf, HANDSHAKE_SIZE, data.get(used..).unwrap_or_default());
            if self.buf.len() == HANDSHAKE_SIZE {
                // C2 is not validated: neither nginx-rtmp nor SRS do, and some clients get it wrong.
                self.stage = ServerStage::Done;
                self.buf = Vec::new();
            }
        }
        Ok(used)
    }

    fn respond(&mut self, c1: &Packet) {
        self.output.reserve(1 + 2 * HANDSHAKE_SIZE);
        self.output.push(RTMP_VERSION);
        let mut s1 = random_packet();
        s1.get_mut(..4).into_iter().for_each(|t| t.fill(0));
        // A C1 with a zero version field is a simple handshake; don't even look for a digest.
        let digest = if c1.get(4..8).is_some_and(|v| v != [0; 4]) {
            find_digest(c1, &PLAYER_KEY[..PLAYER_KEY_PUBLIC])
        } else {
            None
        };
        match digest {
            Some((schema, c1_digest)) => {
                self.complex = true;
                if let Some(v) = s1.get_mut(4..8) {
                    v.copy_from_slice(&SERVER_VERSION);
                }
                imprint_digest(&mut s1, schema, &SERVER_KEY[..SERVER_KEY_PUBLIC]);
                self.output.extend_from_slice(&s1);
                self.output.extend_from_slice(&complex_response(&c1_digest, SERVER_KEY));
            }
            None => {
                // Simple: S1 version zero (so players skip digest checks), S2 echoes C1.
                if let Some(v) = s1.get_mut(4..8) {
                    v.fill(0);
                }
                self.output.extend_from_slice(&s1);
                self.output.extend_from_slice(c1);
            }
        }
    }

    /// Bytes to send to the client, if any.
    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        (!self.output.is_empty()).then(|| std::mem::take(&mut self.output))
    }

    /// Whether C2 has been received.
    pub fn is_done(&self) -> bool {
        self.stage == ServerStage::Done
    }

    /// Whether the client used the complex (digest) handshake.
    pub fn is_complex(&self) -> bool {
        self.complex
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientStage {
    /// C0+C1 queued; waiting for S0 + S1.
    S0S1,
    /// C2 queued; waiting for S2.
    S2,
    Done,
}

/// Client side of the handshake. C0+C1 are queued on creation.
#[derive(Debug)]
pub struct ClientHandshake {
    stage: ClientStage,
    buf: Vec<u8>,
    output: Vec<u8>,
    /// Our C1 digest, when sending a complex C1.
    c1_digest: Option<[u8; DIGEST_LEN]>,
    server_verified: bool,
}

impl Default for ClientHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientHandshake {
    /// A simple handshake (C1 version field zero), which every server accepts.
    pub fn new() -> Self {
        Self::build(false)
    }

    /// A complex handshake (digest in C1, Flash Player 9 version field), like ffmpeg's.
    pub fn new_complex() -> Self {
        Self::build(true)
    }

    fn build(complex: bool) -> Self {
        let mut c1 = random_packet();
        c1.get_mut(..4).into_iter().for_each(|t| t.fill(0));
        let mut c1_digest = None;
        if let Some(v) = c1.get_mut(4..8) {
            v.copy_from_slice(if complex { &CLIENT_VERSION } else { &[0; 4] });
        }
        if complex {
            c1_digest = Some(imprint_digest(&mut c1, Schema::DigestFirst, &PLAYER_KEY[..PLAYER_KEY_PUBLIC]));
        }
        let mut output = Vec::with_capacity(1 + HANDSHAKE_SIZE);
        output.push(RTMP_VERSION);
        output.extend_from_slice(&c1);
        Self {
            stage: ClientStage::S0S1,
            buf: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            output,
            c1_digest,
            server_verified: false,
        }
    }

    /// Consumes handshake bytes from `data`, returning how many were used; any rest belongs to the chunk
    /// stream once [`is_done`](Self::is_done).
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, HandshakeError> {
        let mut used = 0;
        if self.stage == ClientStage::S0S1 {
            used += fill(&mut self.buf, 1 + HANDSHAKE_SIZE, data);
            if let Some(&version) = self.buf.first()
                && version != RTMP_VERSION
            {
                return Err(HandshakeError::UnsupportedVersion(version));
            }
            if self.buf.len() < 1 + HANDSHAKE_SIZE {
                return Ok(used);
            }
            let s1 = to_packet(self.buf.get(1..).unwrap_or_default());
            let s1_digest = match self.c1_digest {
                Some(_) => find_digest(&s1, &SERVER_KEY[..SERVER_KEY_PUBLIC]),
                None => None,
            };
            match s1_digest {
                Some((_, digest)) => self.output.extend_from_slice(&complex_response(&digest, PLAYER_KEY)),
                None => self.output.extend_from_slice(&s1),
            }
            self.buf.clear();
            self.stage = ClientStage::S2;
        }
        if self.stage == ClientStage::S2 {
            used += fill(&mut self.buf, HANDSHAKE_SIZE, data.get(used..).unwrap_or_default());
            if self.buf.len() == HANDSHAKE_SIZE {
                if let Some(c1_digest) = self.c1_digest {
                    let s2 = to_packet(&self.buf);
                    let key = hmac_sha256(SERVER_KEY, &[&c1_digest]);
                    let split = HANDSHAKE_SIZE - DIGEST_LEN;
                    let expected = hmac_sha256(&key, &[s2.get(..split).unwrap_or_default()]);
                    self.server_verified = s2.get(split..) == Some(&expected[..]);
                }
                self.stage = ClientStage::Done;
                self.buf = Vec::new();
            }
        }
        Ok(used)
    }

    /// Bytes to send to the server, if any.
    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        (!self.output.is_empty()).then(|| std::mem::take(&mut self.output))
    }

    /// Whether S2 has been received.
    pub fn is_done(&self) -> bool {
        self.stage == ClientStage::Done
    }

    /// Whether a complex handshake's S2 carried the signature expected for our C1 digest.
    pub fn server_verified(&self) -> bool {
        self.server_verified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs both sides against each other, optionally splitting every transfer into `step`-byte pieces.
    fn run(mut client: ClientHandshake, step: usize) -> (ClientHandshake, ServerHandshake) {
        let mut server = ServerHandshake::new();
        for _ in 0..10 {
            if let Some(out) = client.take_output() {
                for piece in out.chunks(step) {
                    assert_eq!(server.feed(piece).unwrap(), piece.len());
                }
            }
            if let Some(out) = server.take_output() {
                for piece in out.chunks(step) {
                    assert_eq!(client.feed(piece).unwrap(), piece.len());
                }
            }
        }
        assert!(client.is_done() && server.is_done());
        (client, server)
    }

    #[test]
    fn simple_handshake() {
        let (client, server) = run(ClientHandshake::new(), 4096);
        assert!(!server.is_complex());
        assert!(!client.server_verified());
        let (_, server) = run(ClientHandshake::new(), 7);
        assert!(!server.is_complex());
    }

    #[test]
    fn complex_handshake_both_schemas() {
        let (client, server) = run(ClientHandshake::new_complex(), 4096);
        assert!(server.is_complex());
        assert!(client.server_verified());
        // Key-first C1, as some Flash players send.
        let mut c1 = random_packet();
        c1[4..8].copy_from_slice(&CLIENT_VERSION);
        let digest = imprint_digest(&mut c1, Schema::KeyFirst, &PLAYER_KEY[..PLAYER_KEY_PUBLIC]);
        let mut server = ServerHandshake::new();
        let mut input = vec![3];
        input.extend_from_slice(&c1);
        server.feed(&input).unwrap();
        assert!(server.is_complex());
        let out = server.take_output().unwrap();
        let s1 = to_packet(&out[1..1 + HANDSHAKE_SIZE]);
        assert_eq!(&s1[4..8], &SERVER_VERSION);
        assert_eq!(find_digest(&s1, &SERVER_KEY[..SERVER_KEY_PUBLIC]).map(|d| d.0), Some(Schema::KeyFirst));
        let s2 = &out[1 + HANDSHAKE_SIZE..];
        let key = hmac_sha256(SERVER_KEY, &[&digest]);
        assert_eq!(&s2[1504..], &hmac_sha256(&key, &[&s2[..1504]])[..]);
    }

    #[test]
    fn invalid_digest_falls_back_to_simple() {
        let mut c1 = random_packet();
        c1[4..8].copy_from_slice(&CLIENT_VERSION);
        let mut server = ServerHandshake::new();
        server.feed(&[3]).unwrap();
        server.feed(&c1).unwrap();
        assert!(!server.is_complex());
        let out = server.take_output().unwrap();
        assert_eq!(&out[5..9], &[0, 0, 0, 0]);
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &c1[..]);
    }

    #[test]
    fn leftover_bytes_are_not_consumed() {
        let mut server = ServerHandshake::new();
        let mut input = vec![3u8];
        input.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
        input.extend_from_slice(&[1u8; HANDSHAKE_SIZE]);
        input.extend_from_slice(b"chunk");
        assert_eq!(server.feed(&input).unwrap(), input.len() - 5);
        assert!(server.is_done());
        assert_eq!(server.feed(b"more").unwrap(), 0);
    }

    #[test]
    fn wrong_version_is_rejected() {
        assert_eq!(ServerHandshake::new().feed(&[6]), Err(HandshakeError::UnsupportedVersion(6)));
        assert_eq!(ServerHandshake::new().feed(b"GET / HTTP/1.1"), Err(HandshakeError::UnsupportedVersion(b'G')));
        let mut client = ClientHandshake::new();
        assert_eq!(client.feed(&[0x16]), Err(HandshakeError::UnsupportedVersion(0x16)));
    }
}
