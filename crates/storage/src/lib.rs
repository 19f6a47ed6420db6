//! Storage for recordings and screenshots.
//!
//! Finished files are written to a local spool directory by their producer, then handed to the [`Uploader`], which
//! copies them to a configured target: a local directory, an S3-compatible store or Google Cloud Storage. The queue
//! is durable (one JSON file per job in `spool_dir/jobs`), retries forever with exponential backoff, and never blocks
//! the producer beyond the fsync of the job file, so a storage outage never stops a live stream.
//!
//! Object keys are built from folder/file templates with [`render_path`] and made safe with [`sanitize_key`].
//! Credentials are never printed: the `Debug` impls redact them and every error text coming from a store is
//! scrubbed of secrets and signed-URL parameters before it is logged or returned.
//!
//! [`StorageConfig`] deserializes from a table like this (the server nests it as `[storage]`):
//!
//! ```toml
//! default_target = "disk"          # used when a template names no bucket; empty = the first target
//! spool_dir = "/var/spool/ferrocast"
//! max_backoff = 300                # seconds
//! multipart_threshold = 16777216   # bytes
//!
//! [[targets]]
//! name = "disk"
//! kind = "local"
//! root = "/srv/recordings"
//! public_url = "https://media.example.com/recordings"
//!
//! [[targets]]
//! name = "minio"
//! kind = "s3"
//! endpoint = "http://127.0.0.1:9000"   # empty = AWS
//! region = "us-east-1"
//! bucket = "recordings"
//! access_key_id = "..."
//! secret_access_key = "..."
//! path_style = true
//! prefix = "live"
//!
//! [[targets]]
//! name = "gcs"
//! kind = "gcs"
//! bucket = "my-recordings"
//! service_account_key = "/etc/ferrocast/gcs-key.json"
//! ```

#![warn(missing_docs)]

mod config;
mod error;
mod path;
mod queue;
mod scrub;
mod store;

pub use config::{StorageConfig, TargetConfig, TargetKind};
pub use error::StorageError;
pub use path::DEFAULT_FOLDER_TEMPLATE;
pub use path::{PathVars, render_path, sanitize_key};
pub use queue::{UploadHandler, UploadJob, Uploaded, Uploader, content_type_for};
pub use store::Storage;
