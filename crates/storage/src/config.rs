use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// One configured storage target (`[[storage.targets]]` in the server config).
///
/// A template's `CosBucketName` selects the target whose `bucket` or `name` equals it (see [`crate::Storage::target_for`]).
/// `Debug` is written by hand so that credentials never reach a log line.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The target's name, unique among the targets.
    pub name: String,
    /// Which kind of store this is.
    pub kind: TargetKind,
    /// Local targets: the directory objects are written under.
    #[serde(default)]
    pub root: String,
    /// S3 targets: the endpoint, e.g. `http://127.0.0.1:9000`; empty means AWS.
    #[serde(default)]
    pub endpoint: String,
    /// S3 targets: the region (empty means `us-east-1`).
    #[serde(default)]
    pub region: String,
    /// S3 and GCS targets: the bucket.
    #[serde(default)]
    pub bucket: String,
    /// S3 targets: the access key ID (empty together with the secret: taken from the `AWS_*` environment).
    #[serde(default)]
    pub access_key_id: String,
    /// S3 targets: the secret access key.
    #[serde(default)]
    pub secret_access_key: String,
    /// S3 targets: path-style requests (`{endpoint}/{bucket}/{key}`) instead of virtual-hosted ones.
    #[serde(default)]
    pub path_style: bool,
    /// GCS targets: path to the service account JSON key file.
    #[serde(default)]
    pub service_account_key: String,
    /// Base URL put in callbacks for an object (`{public_url}/{key}`); empty means a default derived per kind.
    #[serde(default)]
    pub public_url: String,
    /// Prepended to every key (a folder, e.g. `live/recordings`).
    #[serde(default)]
    pub prefix: String,
}

/// The kind of a storage target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A directory on this machine.
    Local,
    /// An S3-compatible object store (AWS, MinIO, SeaweedFS, moto, ...).
    S3,
    /// Google Cloud Storage.
    Gcs,
}

/// Redacts a secret for `Debug`: whether it is set is useful, its value never is.
fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { "***" }
}

impl fmt::Debug for TargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("root", &self.root)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &redacted(&self.access_key_id))
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("path_style", &self.path_style)
            // The path is not secret, but it tells where the key lives; redacted like the rest.
            .field("service_account_key", &redacted(&self.service_account_key))
            .field("public_url", &self.public_url)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// All storage targets and the upload queue's settings (`[storage]` in the server config).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The targets.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// The target used when a template names no bucket; empty means the first target.
    #[serde(default)]
    pub default_target: String,
    /// Where upload jobs (`jobs/`) are kept; recordings are usually written below it too.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Upper bound of the retry backoff (seconds in the config file).
    #[serde(default = "default_max_backoff", deserialize_with = "seconds")]
    pub max_backoff: Duration,
    /// Files larger than this many bytes are sent with a multipart upload.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: u64,
}

/// The default spool directory.
fn default_spool_dir() -> PathBuf {
    PathBuf::from("spool")
}

/// The default upper bound of the retry backoff: 5 minutes.
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}

/// The default multipart threshold: 16 MiB.
fn default_multipart_threshold() -> u64 {
    16 * 1024 * 1024
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

impl Default for StorageConfig {
    /// No targets, spool in `./spool`, backoff up to 300 s, multipart above 16 MiB.
    fn default() -> Self {
        StorageConfig {
            targets: Vec::new(),
            default_target: String::new(),
            spool_dir: default_spool_dir(),
            max_backoff: default_max_backoff(),
            multipart_threshold: default_multipart_threshold(),
        }
    }
}

impl TargetConfig {
    /// A local-directory target.
    pub fn local(name: &str, root: impl Into<String>) -> TargetConfig {
        TargetConfig::empty(name, TargetKind::Local).with(|t| t.root = root.into())
    }

    /// A target of `kind` with every other field empty.
    pub fn empty(name: &str, kind: TargetKind) -> TargetConfig {
        TargetConfig {
            name: name.to_string(),
            kind,
            root: String::new(),
            endpoint: String::new(),
            region: String::new(),
            bucket: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            path_style: false,
            service_account_key: String::new(),
            public_url: String::new(),
            prefix: String::new(),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut TargetConfig)) -> TargetConfig {
        f(&mut self);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let mut t = TargetConfig::empty("s3", TargetKind::S3);
        t.access_key_id = "AKIDEXAMPLE123".into();
        t.secret_access_key = "wJalrXUtnFEMI/K7MDENG".into();
        t.service_account_key = "/etc/keys/gcs.json".into();
        let cfg = StorageConfig { targets: vec![t.clone()], ..StorageConfig::default() };
        for text in [format!("{t:?}"), format!("{cfg:?}"), format!("{cfg:#?}")] {
            assert!(!text.contains("AKIDEXAMPLE123"), "{text}");
            assert!(!text.contains("wJalrXUtnFEMI"), "{text}");
            assert!(!text.contains("gcs.json"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
    }

    #[test]
    fn crate_doc_example_parses() {
        let doc = include_str!("lib.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        let cfg: StorageConfig = toml::from_str(&example).expect("the crate doc's example is valid");
        assert_eq!(cfg.targets.len(), 3);
        assert_eq!(cfg.targets[2].kind, TargetKind::Gcs);
    }

    #[test]
    fn deserializes_with_defaults() {
        let cfg: StorageConfig = toml::from_str(
            r#"
            default_target = "minio"
            spool_dir = "/var/spool/ferrocast"
            max_backoff = 60
            [[targets]]
            name = "disk"
            kind = "local"
            root = "/srv/rec"
            [[targets]]
            name = "minio"
            kind = "s3"
            endpoint = "http://127.0.0.1:9000"
            bucket = "rec"
            path_style = true
            "#,
        )
        .expect("valid config");
        assert_eq!(cfg.targets.len(), 2);
        assert_eq!(cfg.targets[0].kind, TargetKind::Local);
        assert_eq!(cfg.targets[1].kind, TargetKind::S3);
        assert!(cfg.targets[1].path_style);
        assert_eq!(cfg.max_backoff, Duration::from_secs(60));
        assert_eq!(cfg.multipart_threshold, 16 * 1024 * 1024);

        let bad = toml::from_str::<StorageConfig>("[[targets]]\nname = \"x\"\nkind = \"ftp\"\n");
        assert!(bad.is_err());
        let typo = toml::from_str::<StorageConfig>("[[targets]]\nname = \"x\"\nkind = \"s3\"\nbuckett = \"b\"\n");
        assert!(typo.is_err());
    }
}
