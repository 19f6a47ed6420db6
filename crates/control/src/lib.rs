//! The control plane of ferrocast: hotlink protection ([`auth`]), and (being built) the store, the Live API
//! (2018-08-01 wire format) and its actions, the access policy the ingest and playback doors ask, and callbacks.

pub mod auth;
