//! Mutual TLS at the QUIC handshake: a node certificate from the cluster CA is accepted;
//! no client certificate, a certificate from another CA, and an expired certificate are
//! refused. Real quinn endpoints on loopback.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use litefleet::certs::{self, DEFAULT_VALIDITY, Pem};
use litefleet::tls::{ALPN, Credentials, TlsFiles};
use rustls_pki_types::pem::PemObject;

fn creds(dir: &Path, ca: &Pem, node: &str, pem: &Pem) -> Credentials {
    certs::write(dir, "ca", ca).unwrap();
    certs::write(dir, node, pem).unwrap();
    Credentials::load(&TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{node}.pem")),
        key: dir.join(format!("{node}-key.pem")),
    })
    .unwrap()
}

/// Connects with `client` to a server of CA `ca`; returns whether the server accepted the
/// connection and an echo over a stream worked.
async fn handshake(server: &Credentials, client: quinn::ClientConfig) -> bool {
    let ep =
        quinn::Endpoint::server(server.server_config().unwrap(), "127.0.0.1:0".parse().unwrap())
            .unwrap();
    let addr = ep.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let inc = ep.accept().await.unwrap();
        let conn = inc.await.ok()?;
        let (mut s, mut r) = conn.accept_bi().await.ok()?;
        let got = r.read_to_end(64).await.ok()?;
        s.write_all(&got).await.ok()?;
        s.finish().ok()?;
        conn.closed().await;
        Some(())
    });
    let mut cep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    cep.set_default_client_config(client);
    let ok = async {
        let conn = cep.connect(addr, "localhost").ok()?.await.ok()?;
        let (mut s, mut r) = conn.open_bi().await.ok()?;
        s.write_all(b"ping").await.ok()?;
        s.finish().ok()?;
        let back = r.read_to_end(64).await.ok()?;
        conn.close(0u32.into(), b"done");
        (back == b"ping").then_some(())
    };
    let client_ok =
        tokio::time::timeout(Duration::from_secs(10), ok).await.ok().flatten().is_some();
    let server_ok = tokio::time::timeout(Duration::from_secs(10), srv).await;
    let server_ok = matches!(server_ok, Ok(Ok(Some(()))));
    client_ok && server_ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_certificates_of_the_cluster_ca_get_in() {
    let root = crate::common::tmp("tls");
    let sans = |n: &str| vec![n.to_owned(), "localhost".to_owned(), "127.0.0.1".to_owned()];
    let ca = certs::new_ca("cluster", DEFAULT_VALIDITY).unwrap();
    let other = certs::new_ca("someone else", DEFAULT_VALIDITY).unwrap();
    let server = creds(
        &root.join("s"),
        &ca,
        "n1",
        &certs::issue(&ca, "n1", &sans("n1"), DEFAULT_VALIDITY).unwrap(),
    );
    let good = creds(
        &root.join("g"),
        &ca,
        "n2",
        &certs::issue(&ca, "n2", &sans("n2"), DEFAULT_VALIDITY).unwrap(),
    );
    assert!(handshake(&server, good.client_config().unwrap()).await, "a cluster node connects");

    // Signed by another CA (the client trusts our CA, so only the server's check refuses).
    let foreign = certs::issue(&other, "n9", &sans("n9"), DEFAULT_VALIDITY).unwrap();
    let mixed = creds(&root.join("f"), &ca, "n9", &foreign);
    assert!(!handshake(&server, mixed.client_config().unwrap()).await, "another CA is refused");

    // Expired, from the right CA.
    let old = certs::issue(&ca, "n3", &sans("n3"), ((2020, 1, 1), (2021, 1, 1))).unwrap();
    let expired = creds(&root.join("e"), &ca, "n3", &old);
    assert!(!handshake(&server, expired.client_config().unwrap()).await, "expired is refused");

    // No client certificate at all.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(root.join("s/ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let anon = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    assert!(!handshake(&server, anon).await, "no client certificate is refused");
}
