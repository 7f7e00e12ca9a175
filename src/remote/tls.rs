//! TLS for `grpcs://`: which files the settings name, and the checks that
//! turn each of them into what rustls needs, with messages that name the
//! variable, the file and what is wrong with it.
//!
//! The server is verified against the system's CA store (rustls-native-certs:
//! `SSL_CERT_FILE`, `SSL_CERT_DIR`, else the distribution's bundle, e.g.
//! /etc/ssl/certs on Debian) plus `KDTHIN_REMOTE_CA`; with
//! `KDTHIN_REMOTE_CLIENT_CERT` and `_KEY` the client proves who it is
//! (mutual TLS).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use tonic::transport::{ClientTlsConfig, Identity};

pub const CA_VAR: &str = "KDTHIN_REMOTE_CA";
pub const CERT_VAR: &str = "KDTHIN_REMOTE_CLIENT_CERT";
pub const KEY_VAR: &str = "KDTHIN_REMOTE_CLIENT_KEY";
/// Every variable that only means something with `grpcs://`.
pub const VARS: [&str; 3] = [CA_VAR, CERT_VAR, KEY_VAR];

/// The TLS handshake's own limit (the TCP connect has one too): a server
/// that accepts the connection but never answers the ClientHello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files a `grpcs://` connection uses besides the system's CAs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `KDTHIN_REMOTE_CA`: more CAs to trust (a private cluster's).
    pub ca: Option<PathBuf>,
    /// `KDTHIN_REMOTE_CLIENT_CERT` and `KDTHIN_REMOTE_CLIENT_KEY`.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// What the files hold, checked.
pub struct Checked {
    /// The certificates of `KDTHIN_REMOTE_CA`, each usable as a CA.
    ca: RootCertStore,
    /// The client certificate (chain) and key, as read (PEM).
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    /// From the variables' values (None: unset). `Err` when only half of
    /// the client pair is given.
    pub fn new(ca: Option<String>, cert: Option<String>, key: Option<String>) -> Result<TlsFiles, String> {
        let client = match (cert, key) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            (Some(_), None) => return Err(format!("{CERT_VAR} is set but {KEY_VAR} is not (mutual TLS needs both)")),
            (None, Some(_)) => return Err(format!("{KEY_VAR} is set but {CERT_VAR} is not (mutual TLS needs both)")),
        };
        Ok(TlsFiles { ca: ca.map(PathBuf::from), client })
    }

    /// Reads and checks every file named (not the system's store): PEM of
    /// the right kind, CA certificates usable as trust anchors, a private
    /// key of a supported type that belongs to the client certificate.
    pub fn check(&self) -> Result<Checked, String> {
        let mut ca = RootCertStore::empty();
        if let Some(path) = &self.ca {
            let data = read(CA_VAR, path)?;
            for (n, cert) in certificates(CA_VAR, path, &data)?.into_iter().enumerate() {
                ca.add(cert).map_err(|e| {
                    format!("{CA_VAR}={}: certificate {} cannot be used as a CA ({e})", path.display(), n + 1)
                })?;
            }
        }
        let client = match &self.client {
            None => None,
            Some((cert_path, key_path)) => {
                let cert_pem = read(CERT_VAR, cert_path)?;
                let key_pem = read(KEY_VAR, key_path)?;
                let chain = certificates(CERT_VAR, cert_path, &cert_pem)?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
                    pem::Error::NoItemsFound => format!(
                        "{KEY_VAR}={}: not a PEM private key (no unencrypted \"-----BEGIN PRIVATE KEY-----\", \
                         \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)",
                        key_path.display()
                    ),
                    e => format!("{KEY_VAR}={}: not a valid PEM file ({e})", key_path.display()),
                })?;
                let provider = rustls::crypto::ring::default_provider();
                CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => format!(
                        "{KEY_VAR}={} is not the private key of {CERT_VAR}={}",
                        key_path.display(),
                        cert_path.display()
                    ),
                    e => format!("{KEY_VAR}={}: unusable private key ({e})", key_path.display()),
                })?;
                Some((cert_pem, key_pem))
            }
        };
        Ok(Checked { ca, client })
    }

    /// The channel's TLS settings: the files checked, plus the system's
    /// CAs. `Err` when no CA at all is left to verify the server with.
    pub fn client_config(&self) -> Result<ClientTlsConfig, String> {
        let Checked { ca, client } = self.check()?;
        let native = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(native.certs);
        if roots.is_empty() && ca.is_empty() {
            let why = native.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
            return Err(format!(
                "no system CA certificates found{why} (install ca-certificates, set SSL_CERT_FILE, \
                 or name the server's CA in {CA_VAR})"
            ));
        }
        roots.roots.extend(ca.roots);
        let mut cfg = ClientTlsConfig::new().trust_anchors(roots.roots).timeout(HANDSHAKE_TIMEOUT);
        if let Some((cert, key)) = client {
            cfg = cfg.identity(Identity::from_pem(cert, key));
        }
        Ok(cfg)
    }
}

fn read(var: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{var}={}: cannot read: {e}", path.display()))
}

/// Every `CERTIFICATE` block of a PEM file, at least one.
fn certificates(var: &str, path: &Path, data: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{var}={}: not a valid PEM file ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{var}={}: not a PEM certificate (no \"-----BEGIN CERTIFICATE-----\" block)",
            path.display()
        ));
    }
    Ok(certs)
}
