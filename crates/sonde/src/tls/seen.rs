//! A failed handshake said in one line, with what the user needs to act
//! on it: the fingerprint seen (to pin it), the names the certificate
//! carries, its dates, both fingerprints of a pin that did not match, or
//! that the peer does not speak TLS at all.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::{CertificateError, OtherError};

/// The SHA-256 of a certificate, as people write it: `AA:BB:...`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// A verifier's refusal, already said the way the user reads it.
#[derive(Debug)]
struct Why(String);

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Why {}

fn refusal(why: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Why(why)))))
}

/// A date as people read it (UTC).
fn date(at: UnixTime) -> String {
    let secs = i64::try_from(at.as_secs()).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            let format = time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            );
            t.format(&format).ok()
        })
        .unwrap_or_else(|| format!("{secs} s after 1970"))
}

/// The roots' refusal of `cert`, with what to do about it.
pub(crate) fn with_fingerprint(err: rustls::Error, cert: &CertificateDer<'_>) -> rustls::Error {
    let seen = fingerprint(cert);
    let rustls::Error::InvalidCertificate(why) = &err else {
        return err;
    };
    refusal(match why {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the certificate's issuer is not trusted (its SHA-256 is {seen}: --pin {seen} trusts exactly this certificate, --ca FILE its CA)"
        ),
        CertificateError::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            format!(
                "the server shows a CA's certificate as its own (one made by `openssl req -x509`?); its SHA-256 is {seen}: --pin {seen} trusts exactly it"
            )
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "the certificate is for {}, not {}",
            if presented.is_empty() {
                "no name".to_string()
            } else {
                presented
                    .iter()
                    .map(|n| bare(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            expected.to_str()
        ),
        CertificateError::NotValidForName => "the certificate is not for this name".to_string(),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "the certificate expired on {} (it is {} now)",
            date(*not_after),
            date(*time)
        ),
        CertificateError::Expired => "the certificate has expired".to_string(),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "the certificate is not valid before {} (it is {} now)",
            date(*not_before),
            date(*time)
        ),
        _ => return err,
    })
}

/// A name as rustls lists it (`DnsName("localhost")`), bare.
fn bare(name: &str) -> &str {
    let inner = name
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(name);
    inner.trim_matches('"')
}

/// A pinned fingerprint that the server's certificate does not have.
pub(crate) fn pin_mismatch(want: &str, seen: &str) -> rustls::Error {
    let want: Vec<String> = want
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    refusal(format!(
        "the certificate's SHA-256 is {seen}, not the pinned {}",
        want.join(":")
    ))
}

/// One line for a failed handshake.
pub(crate) fn describe(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(why))) => {
            why.to_string()
        }
        rustls::Error::InvalidMessage(_) => {
            "the peer does not speak TLS (what came was not a TLS record)".to_string()
        }
        rustls::Error::NoCertificatesPresented => {
            "the peer sent no certificate, and one is required (--client-ca)".to_string()
        }
        rustls::Error::AlertReceived(alert) => {
            format!("the peer refused the handshake ({alert:?})")
        }
        other => other.to_string(),
    }
}
