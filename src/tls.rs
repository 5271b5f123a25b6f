//! Mutual TLS for node-to-node QUIC: every node presents a certificate issued by the
//! cluster CA and accepts only peers that do the same. Anything else fails the handshake.
//!
//! PEM files: `tls.ca` (the CA certificate), `tls.cert` (this node's certificate, optionally
//! followed by intermediates) and `tls.key` (its private key, PKCS#8, PKCS#1 or SEC1).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocol id of the litefleet wire protocol (see `protocol.md`).
pub const ALPN: &[u8] = b"litefleet/1";
/// A peer silent for this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keep-alive well inside the idle timeout, so an idle but live link stays up.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The three PEM files of a node.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Loaded credentials, ready to build QUIC endpoints.
#[derive(Clone)]
pub struct Credentials {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { path: path.to_owned(), reason: reason.to_string() }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate in file"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Credentials {
    pub fn load(files: &TlsFiles) -> Result<Credentials, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in certs(&files.ca)? {
            roots.add(c).map_err(|e| file_err(&files.ca, format!("not a usable CA: {e}")))?;
        }
        let chain = certs(&files.cert)?;
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err(&files.key, e))?;
        Ok(Credentials { roots: Arc::new(roots), chain, key: Arc::new(key) })
    }

    fn transport() -> Arc<quinn::TransportConfig> {
        const MAX_DB_STREAMS: u32 = 65_536;
        let mut t = quinn::TransportConfig::default();
        t.keep_alive_interval(Some(KEEP_ALIVE));
        t.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().unwrap_or(quinn::VarInt::MAX.into())));
        // One unidirectional stream per database (opened by the primary), plus control.
        // Hazard: quinn's default allows 100 concurrent unidirectional streams; the 101st
        // database then waited for a stream forever and never reached a replica (found by
        // SQLite's test suite with a replica attached: 321 databases, 100 replicated). The
        // limit matches POS_MAP's (protocol.md §7).
        t.max_concurrent_uni_streams(MAX_DB_STREAMS.into());
        t.max_concurrent_bidi_streams(4096u32.into());
        t.stream_receive_window((8u32 << 20).into());
        t.receive_window((64u32 << 20).into());
        t.send_window(64 << 20);
        Arc::new(t)
    }

    /// Server side: requires a client certificate from the CA.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        cfg.transport_config(Self::transport());
        Ok(cfg)
    }

    /// Client side: verifies the server against the CA, presents our certificate.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        cfg.transport_config(Self::transport());
        Ok(cfg)
    }
}
