use std::net::SocketAddr;

use crate::{Protocol, StreamKey};

/// Why a publisher's session or a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The publisher closed the stream itself (unpublish, deleteStream, clean close).
    PublisherClosed,
    /// The publisher's connection broke or timed out.
    PublisherLost(String),
    /// The stream was stopped by the server (API drop, forbid, shutdown).
    Stopped(String),
}

/// A lifecycle event on the hub's internal bus; later features (callbacks, recording, statistics) subscribe.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// A publisher started (or resumed within the grace period, then `resumed` is true).
    Published {
        /// The stream.
        key: StreamKey,
        /// The publisher's protocol.
        protocol: Protocol,
        /// The publisher's address.
        client: Option<SocketAddr>,
        /// The query parameters sent with the push URL.
        params: Vec<(String, String)>,
        /// Whether this publisher continued a stream inside its grace period.
        resumed: bool,
    },
    /// A publisher's session ended. The stream itself may live on for the grace period.
    PublisherLeft {
        /// The stream.
        key: StreamKey,
        /// Why it ended.
        reason: EndReason,
    },
    /// The stream ended for good: viewers were told, the registry entry is gone.
    Unpublished {
        /// The stream.
        key: StreamKey,
        /// Why the last publisher ended.
        reason: EndReason,
    },
    /// A viewer started playing.
    ViewerJoined {
        /// The stream.
        key: StreamKey,
        /// The viewer's protocol.
        protocol: Protocol,
        /// A process-unique viewer id.
        viewer: u64,
        /// The viewer's address.
        client: Option<SocketAddr>,
    },
    /// A viewer stopped playing.
    ViewerLeft {
        /// The stream.
        key: StreamKey,
        /// The viewer's protocol.
        protocol: Protocol,
        /// The id given in `ViewerJoined`.
        viewer: u64,
    },
}
