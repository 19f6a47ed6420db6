use std::path::PathBuf;

/// Everything that can go wrong in this crate. Texts never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage configuration is invalid (missing field, duplicate name, unreadable key file, ...).
    #[error("storage config: target {target:?}: {reason}")]
    Config {
        /// The target concerned ("" for the configuration as a whole).
        target: String,
        /// What is wrong, for a human.
        reason: String,
    },
    /// A job names a target that is not configured.
    #[error("unknown storage target {0:?}")]
    UnknownTarget(String),
    /// A path template is malformed or names an unknown variable.
    #[error("path template {template:?}: {reason}")]
    Template {
        /// The template as given.
        template: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An object key is unusable (empty, `..`, control characters, ...).
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given (control characters escaped by `Debug`).
        key: String,
        /// Why it is refused.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("read", "create directory", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The remote store refused or failed the operation. The text is already scrubbed of secrets.
    #[error("storage target {target:?}: {message}")]
    Remote {
        /// The target concerned.
        target: String,
        /// The scrubbed error text.
        message: String,
    },
    /// A job file in the spool could not be encoded or decoded.
    #[error("job file {path}: {reason}")]
    JobFile {
        /// The job file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io { op, path: path.into(), source }
    }

    pub(crate) fn config(target: &str, reason: impl Into<String>) -> Self {
        StorageError::Config { target: target.to_string(), reason: reason.into() }
    }
}
