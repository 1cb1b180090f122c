//! What a TLS end trusts and shows: a server's certificate (given as PEM,
//! or made once and kept in the user's config directory), a client's
//! verifier (the system's roots, a private CA, one pinned certificate, or
//! nothing with `--insecure`), and the SHA-256 fingerprints people pin.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::TlsError;
pub use super::seen::fingerprint;

/// How a server presents itself.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// A PEM certificate chain, leaf first (with `key`).
    pub cert: Option<PathBuf>,
    /// The PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Require client certificates issued by this PEM CA.
    pub client_ca: Option<PathBuf>,
    /// Protocols to offer in ALPN, in order of preference.
    pub alpn: Vec<String>,
}

/// How a client decides whom to trust.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Trust this PEM CA instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// Accept exactly the certificate with this SHA-256 (hex, colons
    /// allowed), whatever its issuer and name.
    pub pin: Option<String>,
    /// Accept any certificate (the caller warns).
    pub insecure: bool,
    /// The name to ask for and check (default: the host connected to).
    pub sni: Option<String>,
    /// Protocols to offer in ALPN.
    pub alpn: Vec<String>,
    /// A client certificate chain and key, for servers that ask.
    pub cert: Option<PathBuf>,
    /// The key of `cert`.
    pub key: Option<PathBuf>,
}

/// A server's TLS configuration, with the fingerprint of what it shows.
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, `AA:BB:...`.
    pub fingerprint: String,
    /// Where a generated certificate is kept (`None`: given by the user).
    pub generated: Option<PathBuf>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("fingerprint", &self.fingerprint)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

/// A client's TLS configuration for one host.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// ring's suites with AES-128-GCM first: with AES instructions it is the
/// fastest, and as strong as the need (Go's crypto/tls prefers it too).
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// A fingerprint as given (any case, colons or not), as 64 hex digits.
fn normal_pin(pin: &str) -> Option<String> {
    let hex: String = pin
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_uppercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::file("reading the certificates in", path, e))?
        .collect();
    let certs = certs.map_err(|e| TlsError::file("reading the certificates in", path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::file("reading the key in", path, e))
}

fn alpn(list: &[String]) -> Vec<Vec<u8>> {
    list.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// Builds a server's configuration: the certificate given, or the one
/// made for this user (made now if there is none yet).
///
/// # Errors
/// A file that cannot be read or holds no certificate or key, a key that
/// does not match, a config directory that cannot be written.
pub fn server(options: &ServerOptions) -> Result<ServerTls, TlsError> {
    let (certs, key, generated) = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => (read_certs(cert)?, read_key(key)?, None),
        (None, None) => {
            let dir = config_dir()?;
            let (certs, key) = own_certificate(&dir)?;
            (certs, key, Some(dir))
        }
        _ => return Err(TlsError::Usage("--cert and --key go together".into())),
    };
    build_server(certs, key, generated, options)
}

/// A server's configuration with a self-signed certificate made now and
/// kept nowhere: `perf --tls` against its embedded server, whose client
/// pins the fingerprint.
///
/// # Errors
/// When the certificate cannot be made.
pub fn ephemeral() -> Result<ServerTls, TlsError> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|e| TlsError::Usage(format!("making a certificate: {e}")))?;
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
        .map_err(|e| TlsError::Usage(format!("making a certificate: {e}")))?;
    let certs = vec![made.cert.der().clone()];
    build_server(certs, key, None, &ServerOptions::default())
}

fn build_server(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    generated: Option<PathBuf>,
    options: &ServerOptions,
) -> Result<ServerTls, TlsError> {
    let fingerprint = fingerprint(&certs[0]);
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?;
    let builder = match &options.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(TlsError::Rustls)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Usage(format!("--client-ca {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(TlsError::Rustls)?;
    config.alpn_protocols = alpn(&options.alpn);
    Ok(ServerTls {
        config: Arc::new(config),
        fingerprint,
        generated,
    })
}

/// `$XDG_CONFIG_HOME/sonde`, or `~/.config/sonde`.
fn config_dir() -> Result<PathBuf, TlsError> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| {
            TlsError::Usage("neither XDG_CONFIG_HOME nor HOME is set: give --cert and --key".into())
        })?;
    Ok(base.join("sonde"))
}

/// The self-signed certificate kept in `dir` (`tls-cert.pem`,
/// `tls-key.pem`, the key 0600), made on first use.
fn own_certificate(
    dir: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_path = dir.join("tls-cert.pem");
    let key_path = dir.join("tls-key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((read_certs(&cert_path)?, read_key(&key_path)?));
    }
    fs::create_dir_all(dir).map_err(|e| TlsError::file("making", dir, e))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError::Usage(format!("making a certificate: {e}")))?;
    write_new(
        &key_path,
        made.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(&cert_path, made.cert.pem().as_bytes(), 0o644)?;
    Ok((read_certs(&cert_path)?, read_key(&key_path)?))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| TlsError::file("writing", path, e))?;
    io::Write::write_all(&mut file, data).map_err(|e| TlsError::file("writing", path, e))
}

/// Builds a client's configuration for `host` (the name checked, and sent
/// as SNI, unless `options.sni` says otherwise).
///
/// # Errors
/// A bad pin, a CA file that cannot be read, a name that cannot be one.
pub fn client(options: &ClientOptions, host: &str) -> Result<ClientTls, TlsError> {
    let name_text = options
        .sni
        .clone()
        .unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
    let name = ServerName::try_from(name_text.clone()).map_err(|_| {
        TlsError::Usage(format!(
            "{name_text} is not a host name to check a certificate against"
        ))
    })?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?;
    let verifier: Arc<dyn ServerCertVerifier> = if let Some(pin) = &options.pin {
        let want = normal_pin(pin).ok_or_else(|| {
            TlsError::Usage(format!(
                "--pin {pin}: not a SHA-256 fingerprint (64 hex digits, colons allowed)"
            ))
        })?;
        Arc::new(Pinned {
            want,
            provider: provider(),
        })
    } else if options.insecure {
        Arc::new(Anything {
            provider: provider(),
        })
    } else {
        Arc::new(Roots::new(options.ca.as_deref())?)
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(TlsError::Rustls)?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsError::Usage("--cert and --key go together".into())),
    };
    config.alpn_protocols = alpn(&options.alpn);
    Ok(ClientTls {
        config: Arc::new(config),
        name,
    })
}

/// The roots to verify against: a CA file, or the system's.
fn roots(ca: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(TlsError::Rustls)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::Usage(
                    "no system root certificates were found: give --ca FILE or --pin SHA256".into(),
                ));
            }
        }
    }
    Ok(roots)
}

/// The usual verification against roots, with the fingerprint of the
/// certificate kept for the message when it fails (so it can be pinned).
#[derive(Debug)]
struct Roots {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl Roots {
    fn new(ca: Option<&Path>) -> Result<Roots, TlsError> {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(ca)?),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::Usage(format!("the root certificates: {e}")))?;
        Ok(Roots { inner })
    }
}

impl ServerCertVerifier for Roots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map_err(|e| super::seen::with_fingerprint(e, end_entity))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Exactly one certificate, by its SHA-256; the handshake's signatures are
/// still checked, so the peer must hold that certificate's key.
#[derive(Debug)]
struct Pinned {
    want: String,
    provider: Arc<CryptoProvider>,
}

/// Any certificate (`--insecure`); signatures still checked.
#[derive(Debug)]
struct Anything {
    provider: Arc<CryptoProvider>,
}

macro_rules! signatures_by_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity);
        if seen.replace(':', "") == self.want {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(super::seen::pin_mismatch(&self.want, &seen))
        }
    }

    signatures_by_provider!();
}

impl ServerCertVerifier for Anything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signatures_by_provider!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_read_as_people_write_them() {
        let hex = "ab".repeat(32);
        assert_eq!(normal_pin(&hex).as_deref(), Some("AB".repeat(32).as_str()));
        let colons: Vec<&str> = std::iter::repeat_n("AB", 32).collect();
        assert_eq!(normal_pin(&colons.join(":")), normal_pin(&hex));
        assert_eq!(normal_pin("abcd"), None);
        assert_eq!(normal_pin(&"zz".repeat(32)), None);
    }

    #[test]
    fn a_fingerprint_is_sha256_in_pairs() {
        let seen = fingerprint(b"");
        assert!(seen.starts_with("E3:B0:C4:42"), "{seen}");
        assert_eq!(seen.len(), 32 * 3 - 1);
    }
}
