//! The control plane of ferrocast: hotlink protection ([`auth`]), the store ([`store`]), the Live API (2018-08-01
//! wire format) and its actions ([`api`]), its credentials ([`credentials`]), and the access policy the ingest and
//! playback doors ask ([`policy`]).

pub mod api;
pub mod auth;
pub mod callbacks;
pub mod credentials;
pub mod history;
pub mod policy;
pub mod store;
pub mod store_callbacks;
pub mod store_delay;
pub mod store_record;
pub mod store_snapshot;
pub mod store_timeshift;

pub use api::{ApiState, api_router};
