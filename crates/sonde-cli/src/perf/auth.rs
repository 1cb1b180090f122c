//! iperf3's authentication flags: the client's credentials (user, the
//! password from `IPERF3_PASSWORD` or a prompt, the server's public key)
//! and the server's verifier (private key, users file, clock skew).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sonde::wire::iperf::auth::{self, Credentials, Padding, Verifier};

use crate::usage::usage;

/// iperf3's authentication flags.
#[derive(Debug, Args)]
pub(crate) struct AuthArgs {
    /// Client: the user to authenticate as (password from IPERF3_PASSWORD, or asked for).
    #[arg(long, value_name = "USER", requires = "rsa_public_key_path")]
    pub(crate) username: Option<String>,
    /// Client: the server's RSA public key (PEM), to encrypt the credentials with.
    #[arg(long, value_name = "FILE", requires = "username")]
    pub(crate) rsa_public_key_path: Option<PathBuf>,
    /// Server: the RSA private key (PEM, unencrypted) that opens clients' credentials.
    #[arg(long, value_name = "FILE", requires = "authorized_users_path")]
    pub(crate) rsa_private_key_path: Option<PathBuf>,
    /// Server: the users allowed, as lines "user,sha256hex" of "{user}password".
    #[arg(long, value_name = "FILE", requires = "rsa_private_key_path")]
    pub(crate) authorized_users_path: Option<PathBuf>,
    /// Server: how far (seconds) a client's clock may be from ours.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = crate::usage::parse_secs)]
    pub(crate) time_skew_threshold: std::time::Duration,
    /// PKCS#1 v1.5 padding instead of OAEP: what iperf3 3.16 and older (Debian's 3.12) use.
    #[arg(long)]
    pub(crate) use_pkcs1_padding: bool,
}

impl AuthArgs {
    fn padding(&self) -> Padding {
        if self.use_pkcs1_padding {
            Padding::Pkcs1
        } else {
            Padding::Oaep
        }
    }

    /// The client's credentials, when `--username` is given.
    pub(crate) fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        let (Some(user), Some(path)) = (&self.username, &self.rsa_public_key_path) else {
            return Ok(None);
        };
        let key = auth::public_key(&read(path, "the RSA public key")?)
            .with_context(|| format!("reading the RSA public key {}", path.display()))?;
        let password = match std::env::var("IPERF3_PASSWORD") {
            Ok(password) => password,
            Err(_) => rpassword::prompt_password("Password: ")
                .context("reading the password (set IPERF3_PASSWORD, or run in a terminal)")?,
        };
        let credentials = Credentials {
            user: user.clone(),
            password,
            key,
            padding: self.padding(),
        };
        // Made once here so that a bad name or a small key is a usage error.
        credentials
            .token(0)
            .map_err(|e| usage(format!("--username {user}: {e}")))?;
        Ok(Some(credentials))
    }

    /// The server's verifier, when its key and users file are given.
    pub(crate) fn verifier(&self) -> anyhow::Result<Option<Arc<Verifier>>> {
        let (Some(key_path), Some(users_path)) =
            (&self.rsa_private_key_path, &self.authorized_users_path)
        else {
            return Ok(None);
        };
        let key = auth::private_key(&read(key_path, "the RSA private key")?)
            .with_context(|| format!("reading the RSA private key {}", key_path.display()))?;
        let users = read(users_path, "the authorized users")?;
        // Tokens carry whole seconds: a part of one allows the whole.
        let skew = self.time_skew_threshold.as_secs_f64().ceil() as u64;
        let verifier = Verifier::new(key, &users, skew, self.padding());
        if verifier.user_count() == 0 {
            eprintln!(
                "sonde: warning: {} names no user (lines user,sha256hex): every test will be refused",
                users_path.display()
            );
        }
        Ok(Some(Arc::new(verifier)))
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}
