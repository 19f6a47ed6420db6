// ferrocast: a vendored third-party crate (see FERROCAST.md); its own lints are not ours to fix.
#![allow(warnings, clippy::all)]
pub mod access;
pub mod connection;
pub mod listener;
pub mod options;
pub mod packet;
pub mod protocol;
pub mod settings;
pub mod statistics;
