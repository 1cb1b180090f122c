//! iperf3's authentication (`--username`, `--rsa-*-key-path`,
//! `--authorized-users-path`): the token a client puts in its parameters
//! as `authtoken`, and the server's check of it.
//!
//! The token is `"user: U\npwd:  P\nts:   T"` (T in Unix seconds),
//! RSA-encrypted with the server's public key and base64-encoded. iperf3
//! up to 3.16 (Debian's 3.12 among them) pads with PKCS#1 v1.5; 3.17 and
//! later pad with OAEP (SHA-1) unless given `--use-pkcs1-padding`. The
//! server knows users by `user,hex(sha256("{user}password"))` lines.
//!
//! No clock here: the caller passes the time. The token authenticates the
//! client and nothing more; the test's traffic stays in the clear, as in
//! iperf3.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// iperf3's default `--time-skew-threshold`, seconds.
pub const DEFAULT_SKEW: u64 = 10;

/// How the token is padded before RSA encryption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// OAEP with SHA-1 (iperf3 3.17 and later).
    #[default]
    Oaep,
    /// PKCS#1 v1.5 (iperf3 3.16 and earlier; `--use-pkcs1-padding`).
    Pkcs1,
}

/// Why credentials could not be made or were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A key file's text is not an RSA key in PEM.
    #[error("not an RSA {0} key in PEM (PKCS#1 or PKCS#8/SubjectPublicKeyInfo)")]
    Key(&'static str),
    /// A user name or password that iperf3's format cannot carry.
    #[error("user names and passwords cannot be empty or contain whitespace")]
    Whitespace,
    /// Encryption failed (the key is too small for the credentials).
    #[error("encrypting the credentials: {0}")]
    Encrypt(String),
    /// The test came without a token.
    #[error("the client sent no credentials (iperf3's --username)")]
    Missing,
    /// The token is not base64, or does not decrypt with this key and padding.
    #[error("the credentials do not decrypt with this server's key and {0} padding")]
    Decrypt(&'static str),
    /// It decrypts, but not to iperf3's format.
    #[error("the decrypted credentials are not in iperf3's format")]
    Malformed,
    /// No such user, or the wrong password.
    #[error("user {0:?} is unknown or gave the wrong password")]
    Denied(String),
    /// The token's time is too far from ours.
    #[error("user {user:?}: the client's clock is {skew} s off (at most {max} s allowed)")]
    Skew {
        /// The user it named.
        user: String,
        /// Its time minus ours.
        skew: i64,
        /// `--time-skew-threshold`.
        max: u64,
    },
}

impl Padding {
    fn name(self) -> &'static str {
        match self {
            Padding::Oaep => "OAEP",
            Padding::Pkcs1 => "PKCS#1 v1.5",
        }
    }
}

/// A public key from PEM: `BEGIN PUBLIC KEY` (as `openssl rsa -pubout`
/// writes) or `BEGIN RSA PUBLIC KEY`.
///
/// # Errors
/// [`AuthError::Key`] for anything else.
pub fn public_key(pem: &str) -> Result<RsaPublicKey, AuthError> {
    RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|_| AuthError::Key("public"))
}

/// A private key from PEM: `BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE
/// KEY`, unencrypted (iperf3 reads it without a passphrase too).
///
/// # Errors
/// [`AuthError::Key`] for anything else.
pub fn private_key(pem: &str) -> Result<RsaPrivateKey, AuthError> {
    RsaPrivateKey::from_pkcs8_pem(pem.trim())
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem.trim()))
        .map_err(|_| AuthError::Key("private"))
}

fn plain(user: &str, password: &str) -> Result<(), AuthError> {
    let bad = |s: &str| s.is_empty() || s.chars().any(char::is_whitespace);
    if bad(user) || bad(password) {
        return Err(AuthError::Whitespace);
    }
    Ok(())
}

/// The `authtoken` for `user` and `password` at Unix time `now`.
///
/// # Errors
/// [`AuthError::Whitespace`], or [`AuthError::Encrypt`] when the key is
/// too small to hold them.
pub fn token(
    key: &RsaPublicKey,
    padding: Padding,
    user: &str,
    password: &str,
    now: i64,
) -> Result<String, AuthError> {
    plain(user, password)?;
    let text = format!("user: {user}\npwd:  {password}\nts:   {now}");
    let mut rng = rand_core::OsRng;
    let sealed = match padding {
        Padding::Oaep => key.encrypt(&mut rng, Oaep::new::<sha1::Sha1>(), text.as_bytes()),
        Padding::Pkcs1 => key.encrypt(&mut rng, Pkcs1v15Encrypt, text.as_bytes()),
    }
    .map_err(|e| AuthError::Encrypt(e.to_string()))?;
    Ok(BASE64.encode(sealed))
}

/// A client's credentials, and the key and padding to seal them with.
#[derive(Clone)]
pub struct Credentials {
    /// `--username`.
    pub user: String,
    /// From `IPERF3_PASSWORD` or a prompt.
    pub password: String,
    /// The server's public key (`--rsa-public-key-path`).
    pub key: RsaPublicKey,
    /// OAEP, or PKCS#1 v1.5 for iperf3 3.16 and earlier.
    pub padding: Padding,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("padding", &self.padding)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `authtoken` at Unix time `now`.
    ///
    /// # Errors
    /// As [`token`].
    pub fn token(&self, now: i64) -> Result<String, AuthError> {
        token(&self.key, self.padding, &self.user, &self.password, now)
    }
}

/// The users file's hash of a password: lowercase hex SHA-256 of
/// `"{user}password"`.
pub fn password_hash(user: &str, password: &str) -> String {
    let digest = Sha256::digest(format!("{{{user}}}{password}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The decrypted token's three fields, as iperf3's `sscanf` reads them.
fn parse(text: &str) -> Option<(String, String, i64)> {
    let mut words = text.split_whitespace();
    let mut field = |name: &str| {
        (words.next()? == name)
            .then(|| words.next())
            .flatten()
            .map(str::to_string)
    };
    let user = field("user:")?;
    let password = field("pwd:")?;
    let ts = field("ts:")?.parse().ok()?;
    Some((user, password, ts))
}

/// What a server checks tokens with.
pub struct Verifier {
    key: RsaPrivateKey,
    /// (user, hash) from the users file, in order.
    users: Vec<(String, String)>,
    skew: u64,
    padding: Padding,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("users", &self.users.len())
            .field("skew", &self.skew)
            .field("padding", &self.padding)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier from the private key, the users file's text (lines
    /// `user,hash`; others, and those starting with `#`, are skipped as
    /// iperf3 skips them), the allowed clock skew and the padding.
    pub fn new(key: RsaPrivateKey, users: &str, skew: u64, padding: Padding) -> Self {
        let users = users
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(','))
            .map(|(u, h)| (u.trim().to_string(), h.trim().to_ascii_lowercase()))
            .collect();
        Self {
            key,
            users,
            skew,
            padding,
        }
    }

    /// The users the file names.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Checks a test's token at Unix time `now`; the user's name when
    /// it passes.
    ///
    /// # Errors
    /// Why the test is refused.
    pub fn check(&self, token: Option<&str>, now: i64) -> Result<String, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let decrypt = AuthError::Decrypt(self.padding.name());
        let sealed = BASE64.decode(token.trim()).map_err(|_| decrypt)?;
        let opened = match self.padding {
            Padding::Oaep => self.key.decrypt(Oaep::new::<sha1::Sha1>(), &sealed),
            Padding::Pkcs1 => self.key.decrypt(Pkcs1v15Encrypt, &sealed),
        }
        .map_err(|_| AuthError::Decrypt(self.padding.name()))?;
        let text = String::from_utf8(opened).map_err(|_| AuthError::Malformed)?;
        let (user, password, ts) = parse(&text).ok_or(AuthError::Malformed)?;
        let skew = ts.saturating_sub(now);
        if skew.unsigned_abs() > self.skew {
            return Err(AuthError::Skew {
                user,
                skew,
                max: self.skew,
            });
        }
        let hash = password_hash(&user, &password);
        if self.users.iter().any(|(u, h)| *u == user && *h == hash) {
            Ok(user)
        } else {
            Err(AuthError::Denied(user))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    fn keys() -> (RsaPrivateKey, RsaPublicKey) {
        let private = RsaPrivateKey::new(&mut rand_core::OsRng, 1024).expect("a key");
        let public = private.to_public_key();
        (private, public)
    }

    fn verifier(private: RsaPrivateKey, padding: Padding) -> Verifier {
        let users = format!(
            "# comment\n\nmallory\nalice,{}\n",
            password_hash("alice", "secret")
        );
        Verifier::new(private, &users, DEFAULT_SKEW, padding)
    }

    #[test]
    fn the_hash_is_iperf3s() {
        // echo -n "{alice}secret" | sha256sum
        assert_eq!(
            password_hash("alice", "secret"),
            "27b307f21eb6137ab56a3c80a93a5db840e79a697f80f3381c87edaa79a83f6f"
        );
    }

    #[test]
    fn a_token_opens_with_its_padding_only() {
        let (private, public) = keys();
        for (padding, other) in [
            (Padding::Oaep, Padding::Pkcs1),
            (Padding::Pkcs1, Padding::Oaep),
        ] {
            let good = verifier(private.clone(), padding);
            let t = token(&public, padding, "alice", "secret", 1000).expect("token");
            assert_eq!(good.check(Some(&t), 1005).expect("accepted"), "alice");
            let wrong = verifier(private.clone(), other);
            assert!(matches!(
                wrong.check(Some(&t), 1000),
                Err(AuthError::Decrypt(_))
            ));
        }
    }

    #[test]
    fn refusals_say_why() {
        let (private, public) = keys();
        let v = verifier(private, Padding::Oaep);
        let at =
            |user: &str, pw: &str, ts| token(&public, Padding::Oaep, user, pw, ts).expect("token");
        assert!(matches!(v.check(None, 0), Err(AuthError::Missing)));
        assert!(matches!(v.check(Some("!!"), 0), Err(AuthError::Decrypt(_))));
        let e = v.check(Some(&at("alice", "wrong", 50)), 50);
        assert!(matches!(e, Err(AuthError::Denied(u)) if u == "alice"));
        assert!(matches!(
            v.check(Some(&at("bob", "secret", 50)), 50),
            Err(AuthError::Denied(_))
        ));
        assert!(matches!(
            v.check(Some(&at("mallory", "x", 50)), 50),
            Err(AuthError::Denied(_))
        ));
        let e = v.check(Some(&at("alice", "secret", 100)), 111);
        assert!(
            matches!(
                e,
                Err(AuthError::Skew {
                    skew: -11,
                    max: 10,
                    ..
                })
            ),
            "{e:?}"
        );
        assert!(v.check(Some(&at("alice", "secret", 100)), 90).is_ok());
        assert!(matches!(
            token(&public, Padding::Oaep, "a b", "x", 0),
            Err(AuthError::Whitespace)
        ));
    }

    #[test]
    fn keys_read_from_both_pem_forms() {
        let (private, public) = keys();
        let pem = private.to_pkcs8_pem(LineEnding::LF).expect("pem");
        assert!(private_key(&pem).is_ok());
        let pem =
            rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_pem(&private, LineEnding::LF).expect("pem");
        assert!(private_key(&pem).is_ok());
        let pem = public.to_public_key_pem(LineEnding::LF).expect("pem");
        assert!(public_key(&pem).is_ok());
        assert!(matches!(public_key("junk"), Err(AuthError::Key("public"))));
        assert!(matches!(private_key(&pem), Err(AuthError::Key("private"))));
    }

    #[test]
    fn the_plaintext_parses_as_iperf3_reads_it() {
        let parsed = parse("user: alice\npwd:  secret\nts:   1795798939");
        assert_eq!(
            parsed,
            Some(("alice".into(), "secret".into(), 1_795_798_939))
        );
        assert_eq!(parse("user: alice\npwd:  secret"), None);
    }
}
