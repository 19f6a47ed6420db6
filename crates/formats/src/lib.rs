//! Container formats for ferrocast. Every function here is sans-IO: bytes in, values or bytes out, so the
//! parsers can be unit-tested and fuzzed without sockets.

pub mod amf0;
pub mod av1;
pub mod dash;
pub mod flv;
pub mod fmp4;
pub mod hls;
pub mod mp4file;
pub mod time;
pub mod ts;
pub mod ts_demux;
