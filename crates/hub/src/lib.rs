//! The hub: every live stream in the process, and the only place frames pass between ingest and egress.
//!
//! A stream is a broadcast, not a queue per viewer (DESIGN §1). The publisher appends [`Entry`]s to a bounded
//! ring; each viewer ([`Subscriber`]) holds a cursor into it. A viewer that falls behind the ring skips forward to
//! the next keyframe and the skipped frames are counted; the publisher never waits for anybody. Egress work that
//! is the same for every viewer is done once per entry and format and cached on the entry ([`Entry::muxed`]).

mod access;
mod delay;
mod events;
mod key;
mod metrics;
pub mod net;
mod registry;
mod stream;
mod subscriber;

pub use access::{AccessPolicy, AccessRequest, AllowAll, Denied, DenyKind, Direction};
pub use delay::{DelayConfig, MAX_DELAY_SECS, parse_delay};
pub use events::{EndReason, HubEvent};
pub use key::{Protocol, StreamKey, normalize_domain, resolve_domain};
pub use metrics::{Metrics, ProtocolCounters, TransportStats};
pub use registry::{Hub, HubConfig, PublishError, PublishRequest, StreamSummary, SubscribeError};
pub use stream::{Entry, EntryKind, MuxSlot, Muxed, Publisher, PushError, StreamParams, Tracks};
pub use subscriber::{Batch, Subscriber, SubscriberOptions};

#[cfg(test)]
mod tests;
