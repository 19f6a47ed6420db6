//! TLS for RTMPS: one default certificate plus per-domain certificates chosen by the SNI name.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::RtmpsSection;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("{path}: {what}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// Only one of cert_file and key_file is set.
    #[error("rtmps.cert_file and rtmps.key_file must be set together")]
    Incomplete,
}

/// Builds the RTMPS acceptor, or `None` when no certificate is configured (RTMPS stays off).
pub fn acceptor(section: &RtmpsSection) -> Result<Option<TlsAcceptor>, TlsError> {
    let has_default = !section.cert_file.is_empty() || !section.key_file.is_empty();
    if !has_default && section.certificates.is_empty() {
        return Ok(None);
    }
    // The process uses one crypto provider; installing it twice is harmless (the second call reports an error).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let default = if has_default {
        if section.cert_file.is_empty() || section.key_file.is_empty() {
            return Err(TlsError::Incomplete);
        }
        Some(Arc::new(load_key(&section.cert_file, &section.key_file)?))
    } else {
        None
    };
    let mut by_name = HashMap::new();
    for entry in &section.certificates {
        let key = Arc::new(load_key(&entry.cert_file, &entry.key_file)?);
        for domain in &entry.domains {
            by_name.insert(domain.to_ascii_lowercase(), key.clone());
        }
    }
    let resolver = SniResolver { default, by_name };
    let config = rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(Arc::new(resolver));
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

fn load_key(cert_path: &str, key_path: &str) -> Result<CertifiedKey, TlsError> {
    let open = |path: &str| {
        File::open(path).map(BufReader::new).map_err(|source| TlsError::Read { path: path.to_string(), source })
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(cert_path)?)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read { path: cert_path.to_string(), source })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid { path: cert_path.to_string(), what: "no PEM certificate found".into() });
    }
    let key = rustls_pemfile::private_key(&mut open(key_path)?)
        .map_err(|source| TlsError::Read { path: key_path.to_string(), source })?
        .ok_or_else(|| TlsError::Invalid { path: key_path.to_string(), what: "no PEM private key found".into() })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| TlsError::Invalid { path: key_path.to_string(), what: e.to_string() })
}

/// Picks the certificate for the SNI name: exact match, then `*.parent` wildcard, then the default.
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver").field("names", &self.by_name.keys().collect::<Vec<_>>()).finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name().map(str::to_ascii_lowercase) {
            if let Some(key) = self.by_name.get(&name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(key) = self.by_name.get(&format!("*.{parent}"))
            {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }
}
