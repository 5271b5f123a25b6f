//! Cluster certificates, built on `rcgen`: a CA, node certificates it signs (usable as both
//! TLS server and client, names and IPs as subject alternative names), and a development set.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A PEM certificate and its PEM private key.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// Validity as (not before, not after), calendar dates (year, month, day).
pub type Validity = ((i32, u8, u8), (i32, u8, u8));

/// Ten years from 2025: long enough for clusters, well inside what verifiers accept.
pub const DEFAULT_VALIDITY: Validity = ((2025, 1, 1), (2035, 1, 1));

fn dates(p: &mut CertificateParams, v: Validity) {
    let ((y1, m1, d1), (y2, m2, d2)) = v;
    p.not_before = rcgen::date_time_ymd(y1, m1, d1);
    p.not_after = rcgen::date_time_ymd(y2, m2, d2);
}

/// A new cluster CA.
pub fn new_ca(name: &str, validity: Validity) -> Result<Pem, CertError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name.push(DnType::OrganizationName, "litefleet");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    dates(&mut p, validity);
    let cert = p.self_signed(&key)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// A node certificate signed by the CA, valid for `sans` (DNS names or IP addresses).
pub fn issue(ca: &Pem, node: &str, sans: &[String], validity: Validity) -> Result<Pem, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(sans.to_vec())?;
    p.distinguished_name.push(DnType::CommonName, node);
    p.distinguished_name.push(DnType::OrganizationName, "litefleet");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    dates(&mut p, validity);
    let cert = p.signed_by(&key, &issuer)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// Writes `<stem>.pem` and `<stem>-key.pem` (the key readable by its owner only).
pub fn write(dir: &Path, stem: &str, pem: &Pem) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |path: &Path| {
        let p = path.display().to_string();
        move |source| CertError::Io { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let cert = dir.join(format!("{stem}.pem"));
    std::fs::write(&cert, &pem.cert).map_err(io(&cert))?;
    let key = dir.join(format!("{stem}-key.pem"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key)
        .map_err(io(&key))?;
    std::io::Write::write_all(&mut f, pem.key.as_bytes()).map_err(io(&key))?;
    Ok(())
}

/// Reads `<stem>.pem` and `<stem>-key.pem`.
pub fn read(dir: &Path, stem: &str) -> Result<Pem, CertError> {
    let rd = |name: String| {
        let path = dir.join(&name);
        std::fs::read_to_string(&path)
            .map_err(|source| CertError::Io { path: path.display().to_string(), source })
    };
    Ok(Pem { cert: rd(format!("{stem}.pem"))?, key: rd(format!("{stem}-key.pem"))? })
}

/// A development set in `out`: `ca.pem`, `ca-key.pem`, and per node `<node>.pem` and
/// `<node>-key.pem`, valid for the node's name, `localhost` and `127.0.0.1`. Insecure by
/// design: the keys are meant to be shared.
pub fn dev(out: &Path, nodes: &[String]) -> Result<(), CertError> {
    let ca = new_ca("litefleet development CA (INSECURE)", DEFAULT_VALIDITY)?;
    write(out, "ca", &ca)?;
    for n in nodes {
        let sans = vec![n.clone(), "localhost".into(), "127.0.0.1".into(), "::1".into()];
        write(out, n, &issue(&ca, n, &sans, DEFAULT_VALIDITY)?)?;
    }
    Ok(())
}
