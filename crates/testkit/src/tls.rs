//! Certificates for TLS tests, generated with rcgen into a temporary directory: a CA, a server
//! certificate it signs (for `127.0.0.1` and `localhost`) and a client certificate it signs
//! (for mutual TLS).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// A CA with a server and a client certificate, as PEM files in a temporary directory
/// (removed on drop). Every call makes a new, unrelated CA.
///
/// ```no_run
/// let tls = tower_scale_testkit::TlsFiles::generate();
/// let server = tower_scale_testkit::RedisServer::start_tls(&tls, false);
/// let url = server.tls_url(); // rediss://127.0.0.1:<tls port>
/// let ca = tls.ca_file();     // the file a client trusts
/// ```
#[derive(Debug)]
pub struct TlsFiles {
    dir: TempDir,
}

impl TlsFiles {
    /// Generates a CA, a server certificate for `127.0.0.1`/`localhost` and a client
    /// certificate, all signed by the CA.
    ///
    /// # Panics
    ///
    /// When a key or certificate cannot be generated or written.
    pub fn generate() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tower-scale-tls-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for certificates: {e}"));
        let ca_key = key();
        let mut ca = CertificateParams::new(Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // A name of its own, so that another kit's CA is an unknown issuer, not a namesake.
        let name = dir.path().file_name().unwrap_or_default().to_string_lossy();
        ca.distinguished_name
            .push(DnType::CommonName, format!("tower-scale test CA {name}"));
        let ca_cert = ca
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("cannot sign the CA: {e}"));
        let issuer = Issuer::new(ca, ca_key);
        write(dir.path(), "ca.crt", &ca_cert.pem());
        for (name, sans, usages) in [
            (
                "server",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
                // The cluster bus presents the server certificate as a client.
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            ),
            (
                "client",
                vec!["tower-scale-client".to_owned()],
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            ),
        ] {
            let key = key();
            let mut params = CertificateParams::new(sans).unwrap_or_else(|e| panic!("{e}"));
            params.extended_key_usages = usages;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("tower-scale test {name}"));
            let cert = params
                .signed_by(&key, &issuer)
                .unwrap_or_else(|e| panic!("cannot sign the {name} certificate: {e}"));
            write(dir.path(), &format!("{name}.crt"), &cert.pem());
            write(dir.path(), &format!("{name}.key"), &key.serialize_pem());
        }
        Self { dir }
    }

    /// The CA certificate (PEM): what a client trusts.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The server certificate (PEM), for `127.0.0.1` and `localhost`.
    pub fn server_cert_file(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The server certificate's private key (PEM).
    pub fn server_key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The client certificate (PEM), for mutual TLS.
    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.path().join("client.crt")
    }

    /// The client certificate's private key (PEM).
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// The `redis-server` arguments that serve TLS on `tls_port` with these certificates;
    /// with `require_client_cert`, clients must present a certificate signed by the CA.
    pub(crate) fn server_args(&self, tls_port: u16, require_client_cert: bool) -> Vec<String> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        vec![
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            path(self.server_cert_file()),
            "--tls-key-file".to_owned(),
            path(self.server_key_file()),
            "--tls-ca-cert-file".to_owned(),
            path(self.ca_file()),
            "--tls-auth-clients".to_owned(),
            if require_client_cert { "yes" } else { "no" }.to_owned(),
        ]
    }
}

fn key() -> KeyPair {
    KeyPair::generate().unwrap_or_else(|e| panic!("cannot generate a key: {e}"))
}

fn write(dir: &Path, name: &str, pem: &str) {
    std::fs::write(dir.join(name), pem).unwrap_or_else(|e| panic!("cannot write {name}: {e}"));
}
