//! The configured targets and how one file is stored on each kind.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use crate::StorageError;
use crate::config::{StorageConfig, TargetConfig, TargetKind};
use crate::path::sanitize_key;
use crate::scrub::scrub;

/// Size of one multipart part. S3 wants at least 5 MiB per part (but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload sent at once; with [`PART_SIZE`] this bounds an upload's memory to about 24 MiB.
const PARTS_IN_FLIGHT: usize = 2;
/// How often a growing file is checked for new bytes.
const GROWING_POLL: Duration = Duration::from_secs(1);
/// Read size when streaming a file into a multipart upload.
const READ_CHUNK: usize = 1024 * 1024;
/// A single put holds the whole file in memory, so the threshold above which multipart is used is capped.
const MAX_MULTIPART_THRESHOLD: u64 = 1024 * 1024 * 1024;
/// Doc 001: bucket and region are at most 100 characters.
const MAX_BUCKET_OR_REGION: usize = 100;

/// The configured storage targets, ready to store files. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    targets: Vec<Target>,
    default_target: String,
    spool_dir: PathBuf,
    max_backoff: Duration,
    multipart_threshold: u64,
}

struct Target {
    config: TargetConfig,
    /// The sanitized prefix ("" for none).
    prefix: String,
    backend: Backend,
    /// Strings that must never appear in an error text from this target.
    secrets: Vec<String>,
}

enum Backend {
    Local(PathBuf),
    Object(Arc<dyn ObjectStore>),
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let targets: Vec<&TargetConfig> = self.inner.targets.iter().map(|t| &t.config).collect();
        f.debug_struct("Storage")
            .field("targets", &targets)
            .field("default_target", &self.inner.default_target)
            .field("spool_dir", &self.inner.spool_dir)
            .field("max_backoff", &self.inner.max_backoff)
            .field("multipart_threshold", &self.inner.multipart_threshold)
            .finish()
    }
}

impl Storage {
    /// Validates the configuration and builds one client per remote target. No network request is made.
    pub fn new(config: &StorageConfig) -> Result<Storage, StorageError> {
        if config.spool_dir.as_os_str().is_empty() {
            return Err(StorageError::config("", "spool_dir is empty"));
        }
        if config.multipart_threshold > MAX_MULTIPART_THRESHOLD {
            return Err(StorageError::config(
                "",
                format!(
                    "multipart_threshold {} is above {MAX_MULTIPART_THRESHOLD} bytes (smaller files are held in memory while sent)",
                    config.multipart_threshold
                ),
            ));
        }
        if config.max_backoff < Duration::from_secs(1) {
            return Err(StorageError::config("", "max_backoff must be at least 1 second"));
        }
        let mut targets: Vec<Target> = Vec::with_capacity(config.targets.len());
        for tc in &config.targets {
            if tc.name.is_empty() {
                return Err(StorageError::config("", "a target has an empty name"));
            }
            if targets.iter().any(|t| t.config.name == tc.name) {
                return Err(StorageError::config(&tc.name, "two targets have this name"));
            }
            targets.push(build_target(tc)?);
        }
        let default_target = if config.default_target.is_empty() {
            targets.first().map(|t| t.config.name.clone()).unwrap_or_default()
        } else if targets.iter().any(|t| t.config.name == config.default_target) {
            config.default_target.clone()
        } else {
            return Err(StorageError::config(&config.default_target, "default_target names no configured target"));
        };
        Ok(Storage {
            inner: Arc::new(Inner {
                targets,
                default_target,
                spool_dir: config.spool_dir.clone(),
                max_backoff: config.max_backoff,
                multipart_threshold: config.multipart_threshold,
            }),
        })
    }

    /// The target for a template's bucket name (`""` = the default target): the target with that name, else the
    /// first whose `bucket` is that name. `None` if there is none.
    pub fn target_for(&self, bucket: &str) -> Option<String> {
        if bucket.is_empty() {
            return (!self.inner.default_target.is_empty()).then(|| self.inner.default_target.clone());
        }
        let targets = &self.inner.targets;
        targets
            .iter()
            .find(|t| t.config.name == bucket)
            .or_else(|| targets.iter().find(|t| t.config.bucket == bucket))
            .map(|t| t.config.name.clone())
    }

    /// The URL of an object for callbacks: `{public_url}/{prefix}/{key}`, or when no `public_url` is configured a
    /// `file://` URL (local), the bucket URL at the endpoint or at AWS (S3), or `https://storage.googleapis.com/…`
    /// (GCS). Path segments are percent-encoded. An unknown target gives an empty string.
    pub fn url(&self, target: &str, key: &str) -> String {
        let Some(t) = self.target(target) else {
            return String::new();
        };
        let full = t.full_key(key).unwrap_or_else(|_| key.trim_start_matches('/').to_string());
        let encoded = encode_key(&full);
        let c = &t.config;
        if !c.public_url.is_empty() {
            return format!("{}/{encoded}", c.public_url.trim_end_matches('/'));
        }
        match (&t.backend, c.kind) {
            (Backend::Local(root), _) => {
                let root = std::path::absolute(root).unwrap_or_else(|_| root.clone());
                let root = root.to_string_lossy();
                format!("file://{}/{encoded}", encode_key(root.trim_end_matches('/')))
            }
            (_, TargetKind::Gcs) => format!("https://storage.googleapis.com/{}/{encoded}", c.bucket),
            (_, _) => {
                let region = if c.region.is_empty() { "us-east-1" } else { &c.region };
                if c.endpoint.is_empty() {
                    if c.path_style {
                        format!("https://s3.{region}.amazonaws.com/{}/{encoded}", c.bucket)
                    } else {
                        format!("https://{}.s3.{region}.amazonaws.com/{encoded}", c.bucket)
                    }
                } else {
                    let endpoint = without_userinfo(&c.endpoint);
                    if c.path_style {
                        format!("{}/{}/{encoded}", endpoint.trim_end_matches('/'), c.bucket)
                    } else {
                        format!("{}/{encoded}", virtual_host_endpoint(&endpoint, &c.bucket))
                    }
                }
            }
        }
    }

    /// The name of the default target ("" when no target is configured).
    pub fn default_target(&self) -> &str {
        &self.inner.default_target
    }

    /// The names of all targets, in configuration order.
    pub fn target_names(&self) -> Vec<String> {
        self.inner.targets.iter().map(|t| t.config.name.clone()).collect()
    }

    /// The spool directory (upload jobs live in its `jobs` subdirectory).
    pub fn spool_dir(&self) -> &Path {
        &self.inner.spool_dir
    }

    /// The upper bound of the retry backoff.
    pub fn max_backoff(&self) -> Duration {
        self.inner.max_backoff
    }

    /// The object_store client of a remote target (None for local or unknown targets); for reading objects back.
    pub fn object_store(&self, target: &str) -> Option<Arc<dyn ObjectStore>> {
        match &self.target(target)?.backend {
            Backend::Object(store) => Some(store.clone()),
            Backend::Local(_) => None,
        }
    }

    /// The full object key of `key` on `target` (the target's prefix prepended, sanitized).
    pub fn object_key(&self, target: &str, key: &str) -> Result<String, StorageError> {
        self.target(target).ok_or_else(|| StorageError::UnknownTarget(target.to_string()))?.full_key(key)
    }

    /// Where a local target keeps `key` (None for remote or unknown targets).
    pub fn local_path(&self, target: &str, key: &str) -> Option<PathBuf> {
        let t = self.target(target)?;
        match &t.backend {
            Backend::Local(root) => t.full_key(key).ok().map(|k| root.join(k)),
            Backend::Object(_) => None,
        }
    }

    /// Stores one local file as `key` on `target` and returns its size. With `move_file` the local file is gone
    /// afterwards (renamed into a local target when possible, else deleted after the copy or upload).
    /// Files above the multipart threshold are streamed in parts; smaller ones are sent with one request.
    pub async fn put_file(
        &self,
        target: &str,
        local: &Path,
        key: &str,
        content_type: &str,
        move_file: bool,
    ) -> Result<u64, StorageError> {
        let t = self.target(target).ok_or_else(|| StorageError::UnknownTarget(target.to_string()))?;
        let full = t.full_key(key)?;
        match &t.backend {
            Backend::Local(root) => {
                let dest = root.join(&full);
                let src = local.to_path_buf();
                tokio::task::spawn_blocking(move || put_local(&src, &dest, move_file))
                    .await
                    .map_err(|e| StorageError::io("store", local, io::Error::other(e.to_string())))?
            }
            Backend::Object(store) => {
                let size = self.put_object(t, store.as_ref(), local, &full, content_type).await?;
                if move_file {
                    tokio::fs::remove_file(local).await.map_err(|e| StorageError::io("remove", local, e))?;
                }
                Ok(size)
            }
        }
    }

    /// Whether `key` already exists on `target`, with its size. Used to recognise an upload that completed
    /// before a crash whose local file is gone.
    pub async fn stored_size(&self, target: &str, key: &str) -> Result<Option<u64>, StorageError> {
        let t = self.target(target).ok_or_else(|| StorageError::UnknownTarget(target.to_string()))?;
        let full = t.full_key(key)?;
        match &t.backend {
            Backend::Local(root) => match tokio::fs::metadata(root.join(&full)).await {
                Ok(m) => Ok(Some(m.len())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StorageError::io("stat", root.join(&full), e)),
            },
            Backend::Object(store) => {
                let path = object_path(t, &full)?;
                match store.head(&path).await {
                    Ok(meta) => Ok(Some(meta.size)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(t.remote_error(&e)),
                }
            }
        }
    }

    /// Whether `target` is a remote store (S3, GCS), where uploading a file while it grows saves time at its end.
    pub fn is_remote(&self, target: &str) -> bool {
        self.target(target).is_some_and(|t| matches!(t.backend, Backend::Object(_)))
    }

    /// Uploads a file that is still being written ("upload while recording"): parts are sent as the file grows,
    /// and when `finished` turns true (the writer has flushed and closed it) the rest is sent and the upload
    /// completed; returns the size. If the sender is dropped before that, or anything fails, the multipart upload
    /// is aborted and the error returned: the caller then queues the whole file as usual. Remote targets only.
    pub async fn put_growing_file(
        &self,
        target: &str,
        local: &Path,
        key: &str,
        content_type: &str,
        mut finished: tokio::sync::watch::Receiver<bool>,
    ) -> Result<u64, StorageError> {
        let t = self.target(target).ok_or_else(|| StorageError::UnknownTarget(target.to_string()))?;
        let full = t.full_key(key)?;
        let Backend::Object(store) = &t.backend else {
            return Err(StorageError::Config {
                target: target.to_string(),
                reason: "a local target takes files when they are complete".into(),
            });
        };
        let path = object_path(t, &full)?;
        let attributes = content_type_attributes(content_type);
        let opts = PutMultipartOptions { attributes, ..PutMultipartOptions::default() };
        let upload = store.put_multipart_opts(&path, opts).await.map_err(|e| t.remote_error(&e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let streamed = async {
            let mut file = tokio::fs::File::open(local).await.map_err(|e| StorageError::io("open", local, e))?;
            let mut buf = vec![0u8; READ_CHUNK];
            let mut total = 0u64;
            loop {
                // Read the flag first: when it is set, everything the writer wrote is in the file.
                let done = *finished.borrow_and_update();
                total += copy_to_end(&mut file, &mut buf, &mut writer, local, t).await?;
                if done {
                    return Ok(total);
                }
                tokio::select! {
                    changed = finished.changed() => {
                        if changed.is_err() {
                            return Err(StorageError::io("record", local, io::Error::other("the file was abandoned")));
                        }
                    }
                    _ = tokio::time::sleep(GROWING_POLL) => {}
                }
            }
        }
        .await;
        complete_or_abort(writer, streamed, t, &full).await
    }

    fn target(&self, name: &str) -> Option<&Target> {
        self.inner.targets.iter().find(|t| t.config.name == name)
    }

    async fn put_object(
        &self,
        t: &Target,
        store: &dyn ObjectStore,
        local: &Path,
        full: &str,
        content_type: &str,
    ) -> Result<u64, StorageError> {
        let path = object_path(t, full)?;
        let size = tokio::fs::metadata(local).await.map_err(|e| StorageError::io("stat", local, e))?.len();
        let attributes = content_type_attributes(content_type);
        if size <= self.inner.multipart_threshold {
            // Bounded by the threshold, which `new` caps.
            let data = tokio::fs::read(local).await.map_err(|e| StorageError::io("read", local, e))?;
            let len = data.len() as u64;
            let opts = PutOptions { attributes, ..PutOptions::default() };
            store.put_opts(&path, PutPayload::from(data), opts).await.map_err(|e| t.remote_error(&e))?;
            return Ok(len);
        }
        let opts = PutMultipartOptions { attributes, ..PutMultipartOptions::default() };
        let upload = store.put_multipart_opts(&path, opts).await.map_err(|e| t.remote_error(&e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let streamed = stream_file(&mut writer, local, t).await;
        complete_or_abort(writer, streamed, t, full).await
    }
}

/// The object attributes that carry `content_type` (none when it is empty).
fn content_type_attributes(content_type: &str) -> Attributes {
    let mut attributes = Attributes::new();
    if !content_type.is_empty() {
        attributes.insert(Attribute::ContentType, content_type.to_string().into());
    }
    attributes
}

/// Completes a multipart upload whose parts were all written, or aborts it after an error.
async fn complete_or_abort(
    writer: WriteMultipart,
    streamed: Result<u64, StorageError>,
    t: &Target,
    full: &str,
) -> Result<u64, StorageError> {
    match streamed {
        Ok(total) => {
            writer.finish().await.map_err(|e| t.remote_error(&e))?;
            Ok(total)
        }
        Err(e) => {
            // Leaving parts behind costs the user storage; an abort failure changes nothing for the retry.
            if let Err(abort) = writer.abort().await {
                tracing::debug!(target_name = %t.config.name, key = full, error = %t.remote_error(&abort), "multipart abort failed");
            }
            Err(e)
        }
    }
}

/// Reads the whole file at `local` into `writer`.
async fn stream_file(writer: &mut WriteMultipart, local: &Path, t: &Target) -> Result<u64, StorageError> {
    let mut file = tokio::fs::File::open(local).await.map_err(|e| StorageError::io("open", local, e))?;
    copy_to_end(&mut file, &mut vec![0u8; READ_CHUNK], writer, local, t).await
}

/// Reads `file` (the file at `local`) from where it is to its current end into `writer` in chunks of `buf`,
/// waiting for part uploads so that memory stays bounded; returns the bytes read.
async fn copy_to_end(
    file: &mut tokio::fs::File,
    buf: &mut [u8],
    writer: &mut WriteMultipart,
    local: &Path,
    t: &Target,
) -> Result<u64, StorageError> {
    let mut total = 0u64;
    loop {
        let n = file.read(buf).await.map_err(|e| StorageError::io("read", local, e))?;
        if n == 0 {
            return Ok(total);
        }
        writer.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(|e| t.remote_error(&e))?;
        writer.write(&buf[..n]);
        total += n as u64;
    }
}

fn object_path(t: &Target, full: &str) -> Result<ObjectPath, StorageError> {
    ObjectPath::parse(full)
        .map_err(|e| StorageError::InvalidKey { key: full.to_string(), reason: scrub(&e.to_string(), &t.secrets) })
}

impl Target {
    fn full_key(&self, key: &str) -> Result<String, StorageError> {
        let key = sanitize_key(key)?;
        if self.prefix.is_empty() { Ok(key) } else { sanitize_key(&format!("{}/{key}", self.prefix)) }
    }

    /// An object_store error as a scrubbed [`StorageError::Remote`], with its whole source chain (the interesting
    /// part, e.g. "connection refused", is usually at the bottom).
    fn remote_error(&self, e: &object_store::Error) -> StorageError {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let s_text = s.to_string();
            if !text.contains(&s_text) {
                text.push_str(": ");
                text.push_str(&s_text);
            }
            source = s.source();
        }
        StorageError::Remote { target: self.config.name.clone(), message: scrub(&text, &self.secrets) }
    }
}

fn build_target(c: &TargetConfig) -> Result<Target, StorageError> {
    let prefix = if c.prefix.trim_matches('/').is_empty() {
        String::new()
    } else {
        sanitize_key(&c.prefix).map_err(|e| StorageError::config(&c.name, format!("prefix: {e}")))?
    };
    let url = &c.public_url;
    if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
        return Err(StorageError::config(&c.name, "public_url must start with http:// or https://"));
    }
    let mut secrets = vec![c.access_key_id.clone(), c.secret_access_key.clone()];
    let backend = match c.kind {
        TargetKind::Local => {
            if c.root.is_empty() {
                return Err(StorageError::config(&c.name, "a local target needs `root` (a directory)"));
            }
            Backend::Local(PathBuf::from(&c.root))
        }
        TargetKind::S3 => Backend::Object(build_s3(c, &mut secrets)?),
        TargetKind::Gcs => Backend::Object(build_gcs(c, &mut secrets)?),
    };
    secrets.retain(|s| !s.is_empty());
    Ok(Target { config: c.clone(), prefix, backend, secrets })
}

fn check_bucket(c: &TargetConfig) -> Result<(), StorageError> {
    if c.bucket.is_empty() {
        return Err(StorageError::config(&c.name, "`bucket` is required"));
    }
    if c.bucket.chars().count() > MAX_BUCKET_OR_REGION || c.region.chars().count() > MAX_BUCKET_OR_REGION {
        return Err(StorageError::config(&c.name, "bucket and region are at most 100 characters"));
    }
    if c.bucket.contains('/') || c.bucket.chars().any(char::is_whitespace) {
        return Err(StorageError::config(&c.name, "the bucket name contains '/' or whitespace"));
    }
    Ok(())
}

/// The store client's own retries are few and short: the upload queue retries with its own, persistent backoff.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(30),
    }
}

fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(120))
}

/// The endpoint without `user:password@`: callback URLs are handed to third parties.
fn without_userinfo(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => endpoint.to_string(),
    }
}

/// `http://host:port` with the bucket as a subdomain: `http://bucket.host:port`.
fn virtual_host_endpoint(endpoint: &str, bucket: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{rest}"),
        None => format!("{bucket}.{endpoint}"),
    }
}

fn build_s3(c: &TargetConfig, secrets: &mut Vec<String>) -> Result<Arc<dyn ObjectStore>, StorageError> {
    check_bucket(c)?;
    // `http://user:password@host` would otherwise show up in every error that quotes a URL.
    if let Some((_, rest)) = c.endpoint.split_once("://")
        && let Some((userinfo, _)) = rest.split('/').next().unwrap_or("").rsplit_once('@')
    {
        secrets.push(userinfo.to_string());
    }
    let region = if c.region.is_empty() { "us-east-1" } else { &c.region };
    let mut builder = match (c.access_key_id.is_empty(), c.secret_access_key.is_empty()) {
        // Credentials left to the environment (AWS_ACCESS_KEY_ID, instance roles, ...).
        (true, true) => {
            for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
                if let Ok(value) = std::env::var(var) {
                    secrets.push(value);
                }
            }
            AmazonS3Builder::from_env()
        }
        (false, false) => {
            AmazonS3Builder::new().with_access_key_id(&c.access_key_id).with_secret_access_key(&c.secret_access_key)
        }
        _ => {
            return Err(StorageError::config(
                &c.name,
                "set both access_key_id and secret_access_key, or neither (credentials from the environment)",
            ));
        }
    };
    builder = builder.with_bucket_name(&c.bucket).with_region(region).with_retry(retry_config());
    let mut allow_http = false;
    if c.endpoint.is_empty() {
        builder = builder.with_virtual_hosted_style_request(!c.path_style);
    } else {
        let http = c.endpoint.starts_with("http://");
        if !http && !c.endpoint.starts_with("https://") {
            return Err(StorageError::config(&c.name, "endpoint must start with http:// or https://"));
        }
        allow_http = http;
        let endpoint = if c.path_style {
            c.endpoint.trim_end_matches('/').to_string()
        } else {
            // object_store takes a virtual-hosted endpoint with the bucket already in it.
            virtual_host_endpoint(&c.endpoint, &c.bucket)
        };
        builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(!c.path_style);
    }
    let store = builder
        .with_client_options(client_options(allow_http))
        .build()
        .map_err(|e| StorageError::config(&c.name, scrub(&e.to_string(), secrets)))?;
    Ok(Arc::new(store))
}

fn build_gcs(c: &TargetConfig, secrets: &mut Vec<String>) -> Result<Arc<dyn ObjectStore>, StorageError> {
    check_bucket(c)?;
    if c.service_account_key.is_empty() {
        return Err(StorageError::config(
            &c.name,
            "a gcs target needs `service_account_key` (path to the service account JSON key file)",
        ));
    }
    let mut text = String::new();
    std::fs::File::open(&c.service_account_key)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| StorageError::config(&c.name, format!("cannot read the service account key file: {e}")))?;
    // Parsed here for clear errors; the contents are never quoted in them.
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        StorageError::config(
            &c.name,
            format!("the service account key file is not JSON (line {}, column {})", e.line(), e.column()),
        )
    })?;
    let field = |name: &str| json.get(name).and_then(serde_json::Value::as_str).unwrap_or("");
    for (name, hint) in [("private_key", "the PEM private key"), ("client_email", "the service account's e-mail")] {
        if field(name).is_empty() {
            return Err(StorageError::config(
                &c.name,
                format!(
                    "the service account key file has no `{name}` ({hint}); download a JSON key for a service account"
                ),
            ));
        }
    }
    if !field("private_key").contains("PRIVATE KEY-----") {
        return Err(StorageError::config(
            &c.name,
            "the service account key file's `private_key` is not a PEM private key",
        ));
    }
    secrets.push(field("private_key").to_string());
    secrets.push(field("private_key_id").to_string());
    let store = GoogleCloudStorageBuilder::new()
        .with_bucket_name(&c.bucket)
        .with_service_account_key(text.clone())
        .with_retry(retry_config())
        .with_client_options(client_options(false))
        .build()
        .map_err(|e| StorageError::config(&c.name, scrub(&e.to_string(), secrets)))?;
    Ok(Arc::new(store))
}

/// Percent-encodes every byte outside RFC 3986's unreserved set, keeping `/`.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Moves or copies `src` to `dest` durably and returns the stored size.
fn put_local(src: &Path, dest: &Path, move_file: bool) -> Result<u64, StorageError> {
    let dir = dest.parent().ok_or_else(|| StorageError::io("store", dest, io::Error::other("no parent directory")))?;
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
    if move_file {
        match std::fs::rename(src, dest) {
            Ok(()) => {
                sync_dir(dir)?;
                return std::fs::metadata(dest).map(|m| m.len()).map_err(|e| StorageError::io("stat", dest, e));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::io("rename", src, e)),
            // Another filesystem (EXDEV) or a refusal to rename: copy instead.
            Err(e) => {
                tracing::debug!(src = %src.display(), dest = %dest.display(), error = %e, "rename failed, copying")
            }
        }
    }
    let file_name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.part-{:08x}", rand::random::<u32>()));
    let result = (|| {
        let size = std::fs::copy(src, &tmp).map_err(|e| StorageError::io("copy", src, e))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| StorageError::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, dest).map_err(|e| StorageError::io("rename", &tmp, e))?;
        sync_dir(dir)?;
        Ok(size)
    })();
    if result.is_err() {
        // A partial copy is useless; the next attempt starts over with a new temporary name.
        let _ = std::fs::remove_file(&tmp);
    }
    let size = result?;
    if move_file {
        std::fs::remove_file(src).map_err(|e| StorageError::io("remove", src, e))?;
    }
    Ok(size)
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| StorageError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(name: &str, endpoint: &str, bucket: &str, path_style: bool) -> TargetConfig {
        let mut t = TargetConfig::empty(name, TargetKind::S3);
        t.endpoint = endpoint.into();
        t.bucket = bucket.into();
        t.path_style = path_style;
        t.access_key_id = "AKIDTESTTESTTEST".into();
        t.secret_access_key = "secretsecretsecret".into();
        t
    }

    fn storage(targets: Vec<TargetConfig>, default_target: &str) -> Result<Storage, StorageError> {
        Storage::new(&StorageConfig { targets, default_target: default_target.into(), ..StorageConfig::default() })
    }

    #[test]
    fn target_selection_and_urls() {
        let mut local = TargetConfig::local("disk", "/srv/rec");
        local.prefix = "/live/".into();
        let mut aws = s3("aws", "", "my-bucket", false);
        aws.region = "ap-southeast-1".into();
        let minio = s3("minio", "http://127.0.0.1:9000/", "rec", true);
        let mut vhost = s3("vhost", "https://s3.example.com", "vb", false);
        vhost.public_url = "https://cdn.example.com/".into();
        let st = storage(vec![local, aws, minio, vhost], "minio").unwrap();
        assert_eq!(st.target_for("").as_deref(), Some("minio"));
        assert_eq!(st.target_for("aws").as_deref(), Some("aws"));
        assert_eq!(st.target_for("my-bucket").as_deref(), Some("aws"));
        assert_eq!(st.target_for("nope"), None);
        assert_eq!(st.url("disk", "a b/c.flv"), "file:///srv/rec/live/a%20b/c.flv");
        assert_eq!(st.url("aws", "x/y.mp4"), "https://my-bucket.s3.ap-southeast-1.amazonaws.com/x/y.mp4");
        assert_eq!(st.url("minio", "/x/y.mp4"), "http://127.0.0.1:9000/rec/x/y.mp4");
        assert_eq!(st.url("vhost", "x/直.mp4"), "https://cdn.example.com/x/%E7%9B%B4.mp4");
        assert_eq!(st.url("nope", "x"), "");
        assert_eq!(st.object_key("disk", "a//b").unwrap(), "live/a/b");
        assert_eq!(st.local_path("disk", "a").unwrap(), PathBuf::from("/srv/rec/live/a"));
        assert!(st.object_store("minio").is_some());
        assert!(st.object_store("disk").is_none());
        let mut v2 = s3("v2", "http://localhost:9000", "b2", false);
        v2.region = "eu-west-1".into();
        let st2 = storage(vec![v2], "").unwrap();
        assert_eq!(st2.default_target(), "v2");
        assert_eq!(st2.url("v2", "k"), "http://b2.localhost:9000/k");
        let with_user = s3("u", "http://user:pa55word@127.0.0.1:9000", "b", true);
        let st3 = storage(vec![with_user], "").unwrap();
        assert_eq!(st3.url("u", "k"), "http://127.0.0.1:9000/b/k");
    }

    #[test]
    fn config_errors_are_clear() {
        let cases: Vec<(Vec<TargetConfig>, &str, &str)> = vec![
            (vec![TargetConfig::local("a", "/x"), TargetConfig::local("a", "/y")], "", "two targets"),
            (vec![TargetConfig::local("a", "")], "", "needs `root`"),
            (vec![TargetConfig::local("a", "/x")], "b", "default_target"),
            (vec![s3("s", "", "", false)], "", "`bucket` is required"),
            (vec![s3("s", "ftp://h", "b", true)], "", "endpoint must start"),
            (vec![s3("s", "", &"b".repeat(101), true)], "", "at most 100"),
            (
                vec![{
                    let mut t = s3("s", "", "b", true);
                    t.secret_access_key.clear();
                    t
                }],
                "",
                "both access_key_id",
            ),
            (
                vec![{
                    let mut t = TargetConfig::local("a", "/x");
                    t.prefix = "a/../b".into();
                    t
                }],
                "",
                "prefix",
            ),
            (
                vec![{
                    let mut t = TargetConfig::local("a", "/x");
                    t.public_url = "cdn.example.com".into();
                    t
                }],
                "",
                "public_url",
            ),
        ];
        for (targets, default, needle) in cases {
            let e = storage(targets, default).expect_err(needle).to_string();
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(!e.contains("secretsecret"), "{e}");
        }
        let too_big = Storage::new(&StorageConfig { multipart_threshold: 2 << 30, ..StorageConfig::default() });
        assert!(too_big.is_err());
    }

    #[test]
    fn storage_debug_is_redacted() {
        let st = storage(vec![s3("s", "http://127.0.0.1:1", "b", true)], "").unwrap();
        let text = format!("{st:?}");
        assert!(!text.contains("AKIDTEST") && !text.contains("secretsecret"), "{text}");
    }

    #[tokio::test]
    async fn local_put_copies_or_moves() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let st = storage(vec![TargetConfig::local("disk", root.to_string_lossy())], "").unwrap();
        let src = dir.path().join("a.flv");
        std::fs::write(&src, b"hello").unwrap();
        assert_eq!(st.put_file("disk", &src, "x/y/a.flv", "video/x-flv", false).await.unwrap(), 5);
        assert!(src.exists());
        assert_eq!(std::fs::read(root.join("x/y/a.flv")).unwrap(), b"hello");
        assert_eq!(st.put_file("disk", &src, "x/z.flv", "", true).await.unwrap(), 5);
        assert!(!src.exists());
        assert_eq!(std::fs::read(root.join("x/z.flv")).unwrap(), b"hello");
        assert_eq!(st.stored_size("disk", "x/z.flv").await.unwrap(), Some(5));
        assert_eq!(st.stored_size("disk", "x/none").await.unwrap(), None);
        let missing = st.put_file("disk", &src, "x/w.flv", "", true).await.unwrap_err();
        assert!(matches!(missing, StorageError::Io { .. }), "{missing}");
        assert!(matches!(st.put_file("nope", &src, "k", "", false).await, Err(StorageError::UnknownTarget(_))));
    }

    /// A move across filesystems (rename fails with EXDEV) falls back to copy + fsync + delete.
    #[tokio::test]
    async fn local_move_across_filesystems() {
        use std::os::unix::fs::MetadataExt;
        let root_dir = tempfile::tempdir().unwrap();
        let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("SKIPPED: no /dev/shm to move from");
            return;
        };
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).unwrap();
        if dev(root_dir.path()) == dev(other.path()) {
            eprintln!("SKIPPED: /dev/shm is on the same filesystem as the temporary directory");
            return;
        }
        let st = storage(vec![TargetConfig::local("disk", root_dir.path().to_string_lossy())], "").unwrap();
        let src = other.path().join("big.flv");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        assert_eq!(st.put_file("disk", &src, "d/big.flv", "", true).await.unwrap(), 3_000_000);
        assert!(!src.exists());
        assert!(std::fs::read(root_dir.path().join("d/big.flv")).unwrap() == data);
        let leftovers: Vec<_> = std::fs::read_dir(root_dir.path().join("d")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary copy left behind");
    }
}
