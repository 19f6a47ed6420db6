//! HLS media playlists (RFC 8216 and the low-latency extensions of RFC 8216bis) as plain text, no I/O.
//!
//! The caller describes the window it serves ([`MediaPlaylist`]) and gets the playlist text back. URIs are
//! written as given, with the playlist's own query string appended (see [`MediaPlaylist::uri_query`]) so that
//! hotlink-protection parameters travel to segments, parts and keys.

use std::fmt::Write as _;

pub use crate::time::iso8601_ms;

/// An `EXT-X-KEY` for AES-128 full-segment encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key URI (relative to the playlist).
    pub uri: String,
    /// The 128-bit IV.
    pub iv: [u8; 16],
}

/// One partial segment (LL-HLS `EXT-X-PART`).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Duration in seconds.
    pub duration: f64,
    /// URI relative to the playlist.
    pub uri: String,
    /// Whether the part starts with an independent frame (a keyframe, or audio).
    pub independent: bool,
}

/// One media segment of the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Duration in seconds.
    pub duration: f64,
    /// URI relative to the playlist.
    pub uri: String,
    /// An `EXT-X-DISCONTINUITY` comes before this segment.
    pub discontinuity: bool,
    /// `EXT-X-PROGRAM-DATE-TIME` of the segment's first frame, in UNIX milliseconds.
    pub program_date_time_ms: Option<i64>,
    /// The `EXT-X-MAP` URI in force for this segment (fMP4); written when it differs from the previous one.
    pub map_uri: Option<String>,
    /// The key in force for this segment; written when it differs from the previous one.
    pub key: Option<Key>,
    /// Its parts, listed only for the last few segments of an LL-HLS playlist.
    pub parts: Vec<Part>,
}

/// The low-latency parameters of a playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct LowLatency {
    /// `PART-TARGET` in seconds.
    pub part_target: f64,
    /// Parts of the segment still being written (after the last complete segment).
    pub open_parts: Vec<Part>,
    /// The `EXT-X-MAP` URI of the open segment (if different from the last complete segment's).
    pub open_map_uri: Option<String>,
    /// Whether the open segment starts after a discontinuity.
    pub open_discontinuity: bool,
    /// URI of the next part, announced by `EXT-X-PRELOAD-HINT`.
    pub preload_hint: Option<String>,
}

/// A live media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// `EXT-X-TARGETDURATION` in whole seconds.
    pub target_duration: u32,
    /// Media sequence number of the first segment.
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuity tags that have left the window (every segment with
    /// `discontinuity` set gets its tag, the first listed one included).
    pub discontinuity_sequence: u64,
    /// Complete segments, oldest first.
    pub segments: Vec<Segment>,
    /// Low-latency extensions, when the playlist is LL-HLS.
    pub low_latency: Option<LowLatency>,
    /// `EXT-X-ENDLIST`: the stream is over.
    pub ended: bool,
    /// Appended to every URI (`?` + this when the URI has no query yet, `&` + this otherwise); empty for none.
    pub uri_query: String,
}

fn with_query(uri: &str, query: &str) -> String {
    if query.is_empty() {
        uri.to_string()
    } else if uri.contains('?') {
        format!("{uri}&{query}")
    } else {
        format!("{uri}?{query}")
    }
}

/// Percent-encodes a URI path segment or query component (RFC 3986 unreserved characters are kept).
pub fn uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The IV of a segment: its media sequence number as a 128-bit big-endian integer (RFC 8216 §5.2 default).
pub fn sequence_iv(media_sequence: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[8..].copy_from_slice(&media_sequence.to_be_bytes());
    iv
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl MediaPlaylist {
    /// The playlist text.
    pub fn render(&self) -> String {
        let q = self.uri_query.as_str();
        let mut out = String::with_capacity(256 + self.segments.len() * 160);
        let ll = self.low_latency.as_ref();
        let version = if ll.is_some() { 9 } else { 7 };
        let _ = writeln!(out, "#EXTM3U\n#EXT-X-VERSION:{version}");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration.max(1));
        if let Some(ll) = ll {
            // Blocking reload; clients may skip nothing. PART-HOLD-BACK is 3 part targets (the RFC's minimum).
            let _ =
                writeln!(out, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}", ll.part_target * 3.0);
            let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={:.3}", ll.part_target);
        }
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        let mut map: Option<&str> = None;
        let mut key: Option<&Key> = None;
        for seg in &self.segments {
            if seg.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if seg.key.as_ref() != key {
                key = seg.key.as_ref();
                match key {
                    Some(k) => {
                        let _ = writeln!(
                            out,
                            "#EXT-X-KEY:METHOD=AES-128,URI=\"{}\",IV=0x{}",
                            with_query(&k.uri, q),
                            hex(&k.iv)
                        );
                    }
                    None => out.push_str("#EXT-X-KEY:METHOD=NONE\n"),
                }
            }
            if let Some(m) = seg.map_uri.as_deref()
                && map != Some(m)
            {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", with_query(m, q));
                map = Some(m);
            }
            if let Some(t) = seg.program_date_time_ms {
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601_ms(t));
            }
            for p in &seg.parts {
                write_part(&mut out, p, q);
            }
            let _ = writeln!(out, "#EXTINF:{:.3},\n{}", seg.duration, with_query(&seg.uri, q));
        }
        if let Some(ll) = ll {
            if ll.open_discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if let Some(m) = ll.open_map_uri.as_deref()
                && map != Some(m)
            {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", with_query(m, q));
            }
            for p in &ll.open_parts {
                write_part(&mut out, p, q);
            }
            if let Some(h) = &ll.preload_hint {
                let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", with_query(h, q));
            }
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

fn write_part(out: &mut String, p: &Part, q: &str) {
    let _ = write!(out, "#EXT-X-PART:DURATION={:.3},URI=\"{}\"", p.duration, with_query(&p.uri, q));
    if p.independent {
        out.push_str(",INDEPENDENT=YES");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(n: u64, parts: Vec<Part>) -> Segment {
        Segment {
            duration: 2.0,
            uri: format!("{n}.m4s"),
            discontinuity: false,
            program_date_time_ms: None,
            map_uri: Some("init-0.mp4".into()),
            key: None,
            parts,
        }
    }

    fn part(uri: &str, independent: bool) -> Part {
        Part { duration: 0.5, uri: uri.into(), independent }
    }

    #[test]
    fn live_playlist_lists_the_window_with_the_query() {
        let mut second = seg(8, vec![]);
        second.discontinuity = true;
        second.map_uri = Some("init-1.mp4".into());
        let p = MediaPlaylist {
            target_duration: 2,
            media_sequence: 7,
            discontinuity_sequence: 1,
            segments: vec![seg(7, vec![]), second],
            low_latency: None,
            ended: false,
            uri_query: "txSecret=a&txTime=b".into(),
        };
        let text = p.render();
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MAP:URI=\"init-0.mp4?txSecret=a&txTime=b\"\n#EXTINF:2.000,\n7.m4s?txSecret=a&txTime=b\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4?txSecret=a&txTime=b\"\n#EXTINF:2.000,\n\
             8.m4s?txSecret=a&txTime=b\n"
        );
    }

    #[test]
    fn low_latency_playlist_has_parts_hint_and_server_control() {
        let p = MediaPlaylist {
            target_duration: 2,
            media_sequence: 3,
            discontinuity_sequence: 0,
            segments: vec![seg(3, vec![part("3.0.m4s", true), part("3.1.m4s", false)])],
            low_latency: Some(LowLatency {
                part_target: 0.5,
                open_parts: vec![part("4.0.m4s", true)],
                open_map_uri: Some("init-0.mp4".into()),
                open_discontinuity: false,
                preload_hint: Some("4.1.m4s".into()),
            }),
            ended: false,
            uri_query: String::new(),
        };
        let text = p.render();
        assert!(text.contains("#EXT-X-VERSION:9\n"));
        assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n"));
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.500\n"));
        assert!(text.contains(
            "#EXT-X-PART:DURATION=0.500,URI=\"3.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.500,URI=\"3.1.m4s\"\n\
             #EXTINF:2.000,\n3.m4s\n#EXT-X-PART:DURATION=0.500,URI=\"4.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"4.1.m4s\"\n"
        ));
        assert_eq!(text.matches("#EXT-X-MAP").count(), 1, "the open segment's map is the same");
    }

    #[test]
    fn keys_are_written_when_they_change() {
        let key = |n: u64| Key { uri: format!("key/{n}.key"), iv: sequence_iv(n) };
        let mut segs: Vec<Segment> = (0..3).map(|n| seg(n, vec![])).collect();
        segs[0].key = Some(key(0));
        segs[1].key = Some(key(0));
        segs[2].key = Some(key(2));
        let p = MediaPlaylist {
            target_duration: 2,
            media_sequence: 0,
            discontinuity_sequence: 0,
            segments: segs,
            low_latency: None,
            ended: true,
            uri_query: String::new(),
        };
        let text = p.render();
        assert_eq!(text.matches("#EXT-X-KEY").count(), 2);
        assert!(text.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"key/2.key\",IV=0x00000000000000000000000000000002\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn uri_components_are_percent_encoded() {
        assert_eq!(uri_component("a b/c~d_e.f-g"), "a%20b%2Fc~d_e.f-g");
        assert_eq!(uri_component("流"), "%E6%B5%81");
    }
}
