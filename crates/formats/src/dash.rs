//! Dynamic MPEG-DASH manifests (ISO/IEC 23009-1, DASH-IF live profile) over fMP4 segments, as text, no I/O.
//!
//! One `Period` per timeline generation (a new one after a publisher change of codec parameters); each has one
//! video and/or one audio `AdaptationSet` with a `SegmentTemplate` (`$Number$`) and a `SegmentTimeline`.

use std::fmt::Write as _;

use crate::time::iso8601_ms;

/// One segment in an adaptation set's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Start time in the adaptation set's timescale.
    pub start: u64,
    /// Duration in the adaptation set's timescale.
    pub duration: u64,
}

/// The media of one adaptation set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// Video with its picture size.
    Video {
        /// Width in pixels (0 when unknown).
        width: u32,
        /// Height in pixels (0 when unknown).
        height: u32,
    },
    /// Audio with its sample rate and channels.
    Audio {
        /// Samples per second.
        sample_rate: u32,
        /// Channel count.
        channels: u8,
    },
}

/// One adaptation set with a single representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptationSet {
    /// Video or audio and its parameters.
    pub media: Media,
    /// RFC 6381 codec string.
    pub codecs: String,
    /// Units per second of the timeline.
    pub timescale: u32,
    /// Estimated bits per second (`bandwidth`, required by the schema).
    pub bandwidth: u64,
    /// Initialization segment URI, relative to the manifest.
    pub initialization: String,
    /// Media segment URI template with `$Number$`, relative to the manifest.
    pub media_template: String,
    /// Number of the first timeline entry.
    pub start_number: u64,
    /// The segments, oldest first; start times increase.
    pub timeline: Vec<TimelineEntry>,
    /// Media time (in the timescale) that maps to the period start.
    pub presentation_time_offset: u64,
}

/// One period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Unique, stable id.
    pub id: String,
    /// Start relative to `availabilityStartTime`, in milliseconds.
    pub start_ms: u64,
    /// Its adaptation sets.
    pub adaptation_sets: Vec<AdaptationSet>,
}

/// A dynamic (live) manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `availabilityStartTime` in UNIX milliseconds.
    pub availability_start_ms: i64,
    /// `publishTime` in UNIX milliseconds.
    pub publish_ms: i64,
    /// `minimumUpdatePeriod` in milliseconds.
    pub minimum_update_period_ms: u64,
    /// `timeShiftBufferDepth` in milliseconds.
    pub time_shift_buffer_ms: u64,
    /// `suggestedPresentationDelay` in milliseconds.
    pub suggested_presentation_delay_ms: u64,
    /// `maxSegmentDuration` in milliseconds.
    pub max_segment_duration_ms: u64,
    /// `minBufferTime` in milliseconds.
    pub min_buffer_ms: u64,
    /// The periods, oldest first.
    pub periods: Vec<Period>,
    /// Appended to every URI (`?` or `&` + this); empty for none.
    pub uri_query: String,
}

fn duration(ms: u64) -> String {
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

fn with_query(uri: &str, query: &str) -> String {
    let joined = if query.is_empty() {
        uri.to_string()
    } else if uri.contains('?') {
        format!("{uri}&{query}")
    } else {
        format!("{uri}?{query}")
    };
    xml_escape(&joined)
}

impl Manifest {
    /// The MPD text.
    pub fn render(&self) -> String {
        let q = self.uri_query.as_str();
        let mut out = String::with_capacity(1024);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" \
             type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"{}\" \
             timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\" maxSegmentDuration=\"{}\" \
             minBufferTime=\"{}\">",
            iso8601_ms(self.availability_start_ms),
            iso8601_ms(self.publish_ms),
            duration(self.minimum_update_period_ms),
            duration(self.time_shift_buffer_ms),
            duration(self.suggested_presentation_delay_ms),
            duration(self.max_segment_duration_ms),
            duration(self.min_buffer_ms),
        );
        for p in &self.periods {
            let _ = writeln!(out, "  <Period id=\"{}\" start=\"{}\">", xml_escape(&p.id), duration(p.start_ms));
            for (i, a) in p.adaptation_sets.iter().enumerate() {
                let (content, mime) = match a.media {
                    Media::Video { .. } => ("video", "video/mp4"),
                    Media::Audio { .. } => ("audio", "audio/mp4"),
                };
                let _ = writeln!(
                    out,
                    "    <AdaptationSet id=\"{i}\" contentType=\"{content}\" mimeType=\"{mime}\" \
                     segmentAlignment=\"true\" startWithSAP=\"1\">"
                );
                let _ = write!(
                    out,
                    "      <Representation id=\"{content}\" codecs=\"{}\" bandwidth=\"{}\"",
                    xml_escape(&a.codecs),
                    a.bandwidth.max(1)
                );
                match a.media {
                    Media::Video { width, height } if width > 0 && height > 0 => {
                        let _ = writeln!(out, " width=\"{width}\" height=\"{height}\">");
                    }
                    Media::Video { .. } => out.push_str(">\n"),
                    Media::Audio { sample_rate, channels } => {
                        let _ = writeln!(out, " audioSamplingRate=\"{sample_rate}\">");
                        let _ = writeln!(
                            out,
                            "        <AudioChannelConfiguration \
                             schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{channels}\"/>"
                        );
                    }
                }
                let _ = writeln!(
                    out,
                    "        <SegmentTemplate timescale=\"{}\" presentationTimeOffset=\"{}\" startNumber=\"{}\" \
                     initialization=\"{}\" media=\"{}\">",
                    a.timescale,
                    a.presentation_time_offset,
                    a.start_number,
                    with_query(&a.initialization, q),
                    with_query(&a.media_template, q),
                );
                out.push_str("          <SegmentTimeline>\n");
                let mut expected: Option<u64> = None;
                for e in &a.timeline {
                    // `t` only where the timeline does not simply continue.
                    if expected == Some(e.start) {
                        let _ = writeln!(out, "            <S d=\"{}\"/>", e.duration);
                    } else {
                        let _ = writeln!(out, "            <S t=\"{}\" d=\"{}\"/>", e.start, e.duration);
                    }
                    expected = Some(e.start + e.duration);
                }
                out.push_str("          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n");
                out.push_str("    </AdaptationSet>\n");
            }
            out.push_str("  </Period>\n");
        }
        out.push_str("</MPD>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_has_timelines_and_escaped_queries() {
        let video = AdaptationSet {
            media: Media::Video { width: 640, height: 360 },
            codecs: "avc1.64001e".into(),
            timescale: 90_000,
            bandwidth: 1_000_000,
            initialization: "v/init-0.mp4".into(),
            media_template: "v/$Number$.m4s".into(),
            start_number: 5,
            timeline: vec![
                TimelineEntry { start: 900_000, duration: 180_000 },
                TimelineEntry { start: 1_080_000, duration: 180_000 },
                TimelineEntry { start: 1_300_000, duration: 90_000 },
            ],
            presentation_time_offset: 0,
        };
        let audio = AdaptationSet {
            media: Media::Audio { sample_rate: 44_100, channels: 2 },
            codecs: "mp4a.40.2".into(),
            timescale: 44_100,
            bandwidth: 128_000,
            initialization: "a/init-0.mp4".into(),
            media_template: "a/$Number$.m4s".into(),
            start_number: 5,
            timeline: vec![TimelineEntry { start: 441_000, duration: 88_200 }],
            presentation_time_offset: 0,
        };
        let m = Manifest {
            availability_start_ms: 1_675_302_995_000,
            publish_ms: 1_675_303_005_500,
            minimum_update_period_ms: 2000,
            time_shift_buffer_ms: 12_000,
            suggested_presentation_delay_ms: 4000,
            max_segment_duration_ms: 2000,
            min_buffer_ms: 2000,
            periods: vec![Period { id: "0".into(), start_ms: 0, adaptation_sets: vec![video, audio] }],
            uri_query: "txSecret=a&txTime=b".into(),
        };
        let text = m.render();
        assert!(text.contains("type=\"dynamic\" availabilityStartTime=\"2023-02-02T01:56:35.000Z\""));
        assert!(text.contains("media=\"v/$Number$.m4s?txSecret=a&amp;txTime=b\""));
        assert!(text.contains(
            "<S t=\"900000\" d=\"180000\"/>\n            <S d=\"180000\"/>\n            <S t=\"1300000\" d=\"90000\"/>"
        ));
        assert!(text.contains("width=\"640\" height=\"360\""));
        assert!(text.contains("audioSamplingRate=\"44100\""));
        assert!(text.contains("minimumUpdatePeriod=\"PT2.000S\""));
        assert_eq!(text.matches("<AdaptationSet").count(), 2);
    }
}
