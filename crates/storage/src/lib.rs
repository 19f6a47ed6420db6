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
