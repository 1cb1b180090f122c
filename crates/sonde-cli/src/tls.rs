//! The TLS flags every stream mode shares, with ncat's and socat's
//! spellings as aliases (and sonde's meaning: a client verifies).

use std::path::PathBuf;

use clap::Args;
use sonde::tls::{self, ClientOptions, ClientTls, ServerOptions, ServerTls};

use crate::usage::UsageError;

/// Why a UDP mode refuses --tls.
pub(crate) const NO_DTLS: &str =
    "TLS is for TCP: UDP modes have no DTLS (no well-kept Rust DTLS crate on rustls)";

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct TlsArgs {
    /// Speak TLS (any TLS flag below turns it on too) (--ssl is ncat's).
    #[arg(long, alias = "ssl")]
    pub(crate) tls: bool,
    /// PEM certificate chain: a server's (default: one made once for this user), or a client's for servers that ask.
    #[arg(long, value_name = "FILE", alias = "ssl-cert")]
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", alias = "ssl-key")]
    pub(crate) key: Option<PathBuf>,
    /// Client: trust this PEM CA instead of the system's roots.
    #[arg(long, value_name = "FILE", alias = "ssl-trustfile")]
    pub(crate) ca: Option<PathBuf>,
    /// Client: accept exactly the certificate with this SHA-256 (as the server printed it).
    #[arg(long, value_name = "SHA256")]
    pub(crate) pin: Option<String>,
    /// Client: accept any certificate (warned about on every use).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Client: the name to ask for and check (default: the host).
    #[arg(long, value_name = "NAME", alias = "ssl-servername")]
    pub(crate) sni: Option<String>,
    /// Protocols to offer in ALPN, comma-separated.
    #[arg(long, value_name = "LIST", alias = "ssl-alpn", value_delimiter = ',')]
    pub(crate) alpn: Vec<String>,
    /// Server: require client certificates issued by this PEM CA.
    #[arg(long, value_name = "FILE")]
    pub(crate) client_ca: Option<PathBuf>,
    /// ncat's flag to verify the server: sonde's clients always verify.
    #[arg(long, hide = true)]
    pub(crate) ssl_verify: bool,
}

impl TlsArgs {
    /// Whether TLS is asked for, by --tls or any of its flags.
    pub(crate) fn on(&self) -> bool {
        self.tls
            || self.cert.is_some()
            || self.key.is_some()
            || self.ca.is_some()
            || self.pin.is_some()
            || self.insecure
            || self.sni.is_some()
            || !self.alpn.is_empty()
            || self.client_ca.is_some()
            || self.ssl_verify
    }

    /// A client's configuration for `host`, or `None` without TLS.
    pub(crate) fn client(&self, host: &str) -> anyhow::Result<Option<ClientTls>> {
        if !self.on() {
            return Ok(None);
        }
        if self.client_ca.is_some() {
            return Err(UsageError("--client-ca is a server's flag".into()).into());
        }
        if self.insecure {
            eprintln!(
                "sonde: warning: --insecure: the server's certificate is not checked; anyone on the path can read and change this connection"
            );
        }
        let options = ClientOptions {
            ca: self.ca.clone(),
            pin: self.pin.clone(),
            insecure: self.insecure,
            sni: self.sni.clone(),
            alpn: self.alpn.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        };
        Ok(Some(tls::config::client(&options, host).map_err(usage_or)?))
    }

    /// A server's configuration, or `None` without TLS; says on stderr
    /// which certificate it shows (unless `quiet`).
    pub(crate) fn server(&self, quiet: bool) -> anyhow::Result<Option<ServerTls>> {
        if !self.on() {
            return Ok(None);
        }
        self.server_forced(quiet).map(Some)
    }

    /// A server's certificate whether or not a TLS flag was given (for
    /// a service that offers TLS later, as SMTP's STARTTLS).
    pub(crate) fn server_forced(&self, quiet: bool) -> anyhow::Result<ServerTls> {
        for (set, flag) in [
            (self.ca.is_some(), "--ca"),
            (self.pin.is_some(), "--pin"),
            (self.insecure, "--insecure"),
            (self.sni.is_some(), "--sni"),
        ] {
            if set {
                return Err(UsageError(format!("{flag} is a client's flag")).into());
            }
        }
        let options = ServerOptions {
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: self.client_ca.clone(),
            alpn: self.alpn.clone(),
        };
        let server = tls::config::server(&options).map_err(usage_or)?;
        if !quiet {
            match &server.generated {
                Some(dir) => eprintln!(
                    "sonde: TLS certificate SHA-256 {} (made for this user, kept in {}; clients: --pin {})",
                    server.fingerprint,
                    dir.display(),
                    server.fingerprint
                ),
                None => eprintln!("sonde: TLS certificate SHA-256 {}", server.fingerprint),
            }
        }
        Ok(server)
    }
}

/// Flags that do not go together are a usage error (exit 2); the rest
/// is a failure at run time.
fn usage_or(err: tls::TlsError) -> anyhow::Error {
    match err {
        tls::TlsError::Usage(text) => UsageError(text).into(),
        other => other.into(),
    }
}
