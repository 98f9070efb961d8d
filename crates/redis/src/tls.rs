//! TLS settings of the backend: the CA and client-certificate files of the config, read and
//! checked once, and handed to every kind of connection (our links through a rustls
//! connector, redis-rs clients through `TlsCertificates`).

use std::path::Path;

use crate::{Error, RedisConfig};

/// The TLS material of a config whose URLs are `rediss://`.
pub(crate) struct Tls {
    /// The CA certificates (PEM) that replace the system's roots, if `tls_ca_file` is set.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    ca: Option<Vec<u8>>,
    /// The client certificate chain and key (PEM), if `tls_cert_file` is set.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    client: Option<(Vec<u8>, Vec<u8>)>,
}

/// Whether `url` asks for TLS.
pub(crate) fn is_tls_url(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
}

impl Tls {
    /// Reads and checks the TLS files of `config`; `None` when its URLs are not `rediss://`.
    /// Errors name the field: TLS settings without a `rediss://` URL, a certificate without
    /// its key, a file that cannot be read or holds no PEM certificate or key, a `rediss://`
    /// URL or file in a build without the `tls` feature.
    pub(crate) fn load(config: &RedisConfig) -> Result<Option<Self>, Error> {
        let urls = std::iter::once(&config.url).chain(&config.nodes);
        let tls_urls = urls.clone().filter(|u| is_tls_url(u)).count();
        let files = [
            ("tls_ca_file", &config.tls_ca_file),
            ("tls_cert_file", &config.tls_cert_file),
            ("tls_key_file", &config.tls_key_file),
        ];
        if tls_urls == 0 {
            return match files.iter().find(|(_, f)| f.is_some()) {
                Some((field, _)) => Err(Error::Config(format!(
                    "{field}: set, but the URL is not rediss://; use a rediss:// URL for TLS or remove {field}"
                ))),
                None => Ok(None),
            };
        }
        if tls_urls != config.nodes.len() + 1 {
            return Err(Error::Config(
                "nodes: some URLs are rediss:// and some redis://; use TLS for every node or none"
                    .to_owned(),
            ));
        }
        if let Some(url) = urls.clone().find(|u| u.contains('#')) {
            return Err(Error::Config(format!(
                "url: {:?} has a fragment; certificate checks cannot be turned off (no #insecure): \
                 give the server's CA in tls_ca_file instead",
                crate::redact_url(url)
            )));
        }
        let ca = match &config.tls_ca_file {
            Some(path) => Some(read_pem("tls_ca_file", path, Pem::Certificates)?),
            None => None,
        };
        let client = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some((
                read_pem("tls_cert_file", cert, Pem::Certificates)?,
                read_pem("tls_key_file", key, Pem::PrivateKey)?,
            )),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::Config(
                    "tls_key_file: missing; tls_cert_file needs the key of its certificate"
                        .to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::Config(
                    "tls_cert_file: missing; tls_key_file needs its certificate".to_owned(),
                ));
            }
        };
        Ok(Some(Self { ca, client }))
    }
}

impl Tls {
    /// Whether a CA or client certificate file is set (as opposed to `rediss://` with the
    /// system's roots alone).
    pub(crate) fn has_files(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

/// A redis-rs client for `url`, with the TLS settings for a `rediss://` one.
pub(crate) fn client_for(tls: Option<&Tls>, url: &str) -> Result<redis::Client, Error> {
    let bad =
        |e: redis::RedisError| Error::Config(format!("url: {:?}: {e}", crate::redact_url(url)));
    match tls {
        #[cfg(feature = "tls")]
        Some(tls) if is_tls_url(url) => {
            redis::Client::build_with_tls(url, tls.certificates()).map_err(bad)
        }
        _ => redis::Client::open(url).map_err(bad),
    }
}

/// What a PEM file must hold.
#[derive(Clone, Copy)]
enum Pem {
    Certificates,
    PrivateKey,
}

/// The contents of the PEM file at `path`, once checked to hold what `kind` says.
fn read_pem(field: &str, path: &Path, kind: Pem) -> Result<Vec<u8>, Error> {
    let bad = |why: String| Error::Config(format!("{field}: {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    #[cfg(feature = "tls")]
    {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        match kind {
            Pem::Certificates => {
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(format!("not a valid PEM certificate file: {e}")))?;
                if certs.is_empty() {
                    return Err(bad(
                        "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
                    ));
                }
            }
            Pem::PrivateKey => {
                // The error of a key file says nothing of its contents.
                PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
                    bad("holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned())
                })?;
            }
        }
    }
    #[cfg(not(feature = "tls"))]
    let _ = kind;
    Ok(pem)
}

#[cfg(feature = "tls")]
mod rustls_tls {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ClientConfig, RootCertStore};
    use tokio_rustls::TlsConnector;

    use super::Tls;
    use crate::Error;

    impl Tls {
        /// The certificates for redis-rs clients (pooled, cluster and pub/sub connections).
        pub(crate) fn certificates(&self) -> redis::TlsCertificates {
            redis::TlsCertificates {
                client_tls: self
                    .client
                    .as_ref()
                    .map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                root_cert: self.ca.clone(),
            }
        }

        /// The connector of the default mode's links: rustls (the process's default provider,
        /// else ring's), trusting
        /// the CA file or else the system's roots (rustls-native-certs), presenting the client
        /// certificate if there is one. Built once per backend.
        pub(crate) fn connector(&self) -> Result<TlsConnector, Error> {
            let mut roots = RootCertStore::empty();
            match &self.ca {
                Some(ca) => {
                    for cert in CertificateDer::pem_slice_iter(ca) {
                        let cert = cert.map_err(|e| {
                            Error::Config(format!("tls_ca_file: not a valid PEM certificate: {e}"))
                        })?;
                        roots.add(cert).map_err(|e| {
                            Error::Config(format!("tls_ca_file: not a usable CA certificate: {e}"))
                        })?;
                    }
                }
                None => {
                    let native = rustls_native_certs::load_native_certs();
                    roots.add_parsable_certificates(native.certs);
                    if roots.is_empty() {
                        let errors: Vec<String> =
                            native.errors.iter().map(ToString::to_string).collect();
                        return Err(Error::Config(format!(
                            "tls_ca_file: not set, and the system has no root certificates \
                             ({}); install ca-certificates or give the server's CA in tls_ca_file",
                            if errors.is_empty() {
                                "none found".to_owned()
                            } else {
                                errors.join("; ")
                            }
                        )));
                    }
                }
            }
            // The application's process-wide provider if it installed one (as redis-rs's own
            // connections use), else ring's, the one this crate builds. ring's has no
            // post-quantum key exchange (hence its deprecation in rustls 0.23.48); an
            // application that wants one installs aws-lc-rs's provider as the default.
            #[allow(deprecated)]
            let provider = rustls::crypto::CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
            let builder = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Config(format!("tls: {e}")))?
                .with_root_certificates(roots);
            let config = match &self.client {
                Some((cert, key)) => {
                    let chain = CertificateDer::pem_slice_iter(cert)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            Error::Config(format!(
                                "tls_cert_file: not a valid PEM certificate: {e}"
                            ))
                        })?;
                    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
                        Error::Config("tls_key_file: holds no PEM private key".to_owned())
                    })?;
                    builder.with_client_auth_cert(chain, key).map_err(|e| {
                        Error::Config(format!(
                            "tls_cert_file, tls_key_file: not a certificate and its key: {e}"
                        ))
                    })?
                }
                None => builder.with_no_client_auth(),
            };
            Ok(TlsConnector::from(Arc::new(config)))
        }
    }
}
