//! The API credentials: `[api] secret_id/secret_key` from the config, or a pair generated on first start and kept
//! in `<data_dir>/api-credentials.json` (mode 0600).

use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// File (under the data dir) holding generated credentials.
pub const CREDENTIALS_FILE: &str = "api-credentials.json";

/// Why credentials could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// Only one of secret_id / secret_key is configured.
    #[error("[api] secret_id and secret_key must be set together")]
    Incomplete,
}

/// One SecretId/SecretKey pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The public id (`AKID...`).
    pub secret_id: String,
    /// The signing key.
    pub secret_key: String,
}

fn alphanumerics(n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

impl Credentials {
    /// A fresh pair in Tencent's format: `AKID` + 32 alphanumerics, and a 32-alphanumeric key.
    pub fn generate() -> Credentials {
        Credentials { secret_id: format!("AKID{}", alphanumerics(32)), secret_key: alphanumerics(32) }
    }

    /// The configured pair, else the one saved under `data_dir`, else a new one saved there. The bool is true when
    /// a new pair was generated (the caller prints it once).
    pub fn load_or_create(
        secret_id: &str,
        secret_key: &str,
        data_dir: &Path,
    ) -> Result<(Credentials, bool), CredentialsError> {
        match (secret_id.is_empty(), secret_key.is_empty()) {
            (false, false) => {
                return Ok((Credentials { secret_id: secret_id.into(), secret_key: secret_key.into() }, false));
            }
            (true, true) => {}
            _ => return Err(CredentialsError::Incomplete),
        }
        let path = data_dir.join(CREDENTIALS_FILE);
        let shown = path.display().to_string();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let c =
                    serde_json::from_slice(&bytes).map_err(|source| CredentialsError::Parse { path: shown, source })?;
                return Ok((c, false));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CredentialsError::Io { path: shown, source }),
        }
        let c = Credentials::generate();
        let text =
            serde_json::to_vec_pretty(&c).map_err(|source| CredentialsError::Parse { path: shown.clone(), source })?;
        write_private(&path, &text).map_err(|source| CredentialsError::Io { path: shown, source })?;
        Ok((c, true))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("ferrocast-creds-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (a, new_a) = Credentials::load_or_create("", "", &dir).expect("create");
        assert!(new_a);
        assert_eq!((a.secret_id.len(), a.secret_key.len()), (36, 32));
        assert!(a.secret_id.starts_with("AKID"));
        let (b, new_b) = Credentials::load_or_create("", "", &dir).expect("reuse");
        assert!(!new_b);
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(CREDENTIALS_FILE)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (c, _) = Credentials::load_or_create("AKIDx", "k", &dir).expect("configured");
        assert_eq!(c.secret_id, "AKIDx");
        assert!(matches!(Credentials::load_or_create("AKIDx", "", &dir), Err(CredentialsError::Incomplete)));
        std::fs::remove_dir_all(&dir).ok();
    }
}
