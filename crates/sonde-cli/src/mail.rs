//! `sonde serve smtp`'s own flags: where the messages go, how large and
//! how many, and the line each arrival prints on stderr.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sonde::serve::smtp::auth::AuthPolicy;
use sonde::serve::smtp::chaos::{Chaos, parse_probability};
use sonde::serve::smtp::session::{Limits, Policy};
use sonde::serve::smtp::store::{Store, Stored};
use sonde::serve::smtp::{OnMessage, SmtpConfig};

use crate::usage::parse_size;

#[derive(Debug, Args)]
pub(crate) struct SmtpArgs {
    /// smtp: keep messages in the Maildir DIR (default: sonde/mail in the user's data directory),
    /// or `:memory:` for memory only.
    #[arg(long, value_name = "DIR")]
    pub(crate) store: Option<String>,
    /// smtp: the largest message, advertised in SIZE and enforced while it arrives (K/M/G 1024-based).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "50000000")]
    pub(crate) max_message_size: u64,
    /// smtp: recipients per message.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) max_recipients: usize,
    /// smtp: messages kept; past it the oldest go.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub(crate) max_messages: usize,
    /// smtp: offer STARTTLS, with the certificate of --cert/--key (or one made once for this user).
    #[arg(long)]
    pub(crate) starttls: bool,
    /// smtp: no MAIL before STARTTLS (implies --starttls).
    #[arg(long)]
    pub(crate) require_starttls: bool,
    /// smtp: offer AUTH PLAIN and LOGIN and take any user and password.
    #[arg(long)]
    pub(crate) auth_accept_any: bool,
    /// smtp: allow AUTH outside TLS (by default it is offered only inside TLS).
    #[arg(long)]
    pub(crate) auth_allow_insecure: bool,
    /// smtp chaos: answer MAIL 451 with probability P (0 to 1), to test a sender's retries.
    #[arg(long, value_name = "P", value_parser = parse_probability, default_value = "0")]
    pub(crate) chaos_sender: f64,
    /// smtp chaos: answer RCPT 451 with probability P.
    #[arg(long, value_name = "P", value_parser = parse_probability, default_value = "0")]
    pub(crate) chaos_recipient: f64,
    /// smtp chaos: refuse good credentials (535) with probability P.
    #[arg(long, value_name = "P", value_parser = parse_probability, default_value = "0")]
    pub(crate) chaos_auth: f64,
    /// smtp chaos: drop the connection in the middle of DATA with probability P (nothing stored).
    #[arg(long, value_name = "P", value_parser = parse_probability, default_value = "0")]
    pub(crate) chaos_disconnect: f64,
    /// smtp: the web UI and Mailpit-style JSON API on [ADDR:]PORT (default: --bind's address, port 8025).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub(crate) http: Option<String>,
    /// smtp: no web UI or API.
    #[arg(long, conflicts_with = "http")]
    pub(crate) no_http: bool,
}

impl SmtpArgs {
    /// STARTTLS is offered.
    pub(crate) fn offers_starttls(&self) -> bool {
        self.starttls || self.require_starttls
    }

    /// Whether any of these flags was given a value of its own.
    pub(crate) fn given(&self) -> bool {
        self.store.is_some()
            || self.http.is_some()
            || self.no_http
            || self.starttls
            || self.require_starttls
            || self.auth_accept_any
            || self.auth_allow_insecure
            || [
                self.chaos_sender,
                self.chaos_recipient,
                self.chaos_auth,
                self.chaos_disconnect,
            ]
            .iter()
            .any(|p| *p > 0.0)
            || self.max_message_size != 50_000_000
            || self.max_recipients != 100
            || self.max_messages != 500
    }
}

/// Mailpit's web port, so a browser tab or helper set up for it works.
const HTTP_PORT: u16 = 8025;

/// The web side, bound (so its port is known before anything runs) and
/// not yet serving.
pub(crate) struct Web {
    listener: std::net::TcpListener,
    quiet: bool,
}

impl Web {
    /// Binds `--http` (its address, else `bind`'s, else every interface),
    /// unless `--no-http`.
    pub(crate) fn bind(
        args: &SmtpArgs,
        bind: Option<&str>,
        quiet: bool,
    ) -> anyhow::Result<Option<Self>> {
        if args.no_http {
            return Ok(None);
        }
        let (host, port) = match args.http.as_deref() {
            None => (bind.map(str::to_string), HTTP_PORT),
            Some(spec) => http_spec(spec, bind)?,
        };
        let addr = sonde::net::local_addrs(host.as_deref(), port, sonde::net::Family::Any)?[0];
        let listener =
            sonde::net::listen_tcp(addr, false).context("binding the web UI (--http)")?;
        Ok(Some(Self { listener, quiet }))
    }

    /// Says where it is (after the SMTP port's line, which scripts read
    /// first), unless quiet.
    pub(crate) fn announce(&self) {
        if !self.quiet {
            let at = self
                .listener
                .local_addr()
                .map_or_else(|_| "an unknown address".into(), |a| a.to_string());
            eprintln!("sonde serve smtp web UI and API on http://{at}/");
        }
    }

    /// Serves the UI and API for `store` on the running runtime until
    /// `smtp`'s door shuts.
    pub(crate) fn start(
        self,
        config: &sonde::serve::ServeConfig,
        smtp: &sonde::door::Door,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let listener =
            sonde::door::to_tokio(self.listener).context("registering the web listener")?;
        let door = sonde::serve::smtp::web::door(config);
        let (closing, shut) = (smtp.closing(), door.clone());
        tokio::spawn(async move {
            closing.cancelled().await;
            shut.shutdown();
        });
        let store = Arc::clone(&config.smtp.store);
        Ok(tokio::spawn(sonde::serve::smtp::web::run(
            listener, door, store,
        )))
    }
}

/// `--http`'s `PORT`, `ADDR:PORT` or `[V6]:PORT`.
fn http_spec(spec: &str, bind: Option<&str>) -> anyhow::Result<(Option<String>, u16)> {
    let bad = || crate::usage::UsageError(format!("--http {spec}: give PORT or ADDR:PORT"));
    if let Ok(port) = spec.parse::<u16>() {
        return Ok((bind.map(str::to_string), port));
    }
    let (host, port) = spec.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad().into());
    }
    Ok((Some(host.to_string()), port))
}

/// The user's data directory for the default store: `$XDG_DATA_HOME`,
/// else `~/.local/share`.
fn default_store() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME").context("finding a store: no HOME (give --store DIR)")?,
        )
        .join(".local/share"),
    };
    Ok(base.join("sonde").join("mail"))
}

/// The sink's configuration; with `quiet`, no line per message. `users`
/// are `--auth-file`'s, `starttls` the certificate STARTTLS offers.
pub(crate) fn config(
    args: &SmtpArgs,
    quiet: bool,
    users: std::collections::HashMap<String, String>,
    starttls: Option<sonde::tls::ServerTls>,
) -> anyhow::Result<SmtpConfig> {
    let store = match args.store.as_deref() {
        Some(":memory:") => Store::memory(args.max_messages),
        other => {
            let dir = match other {
                Some(dir) => PathBuf::from(dir),
                None => default_store()?,
            };
            Store::maildir(&dir, args.max_messages)
                .with_context(|| format!("opening the Maildir {}", dir.display()))?
        }
    };
    let offered = !users.is_empty() || args.auth_accept_any || args.auth_allow_insecure;
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let on_message: Option<OnMessage> = (!quiet).then(|| Arc::new(tell) as OnMessage);
    Ok(SmtpConfig {
        host,
        limits: Limits {
            max_size: usize::try_from(args.max_message_size).unwrap_or(usize::MAX),
            max_recipients: args.max_recipients.max(1),
        },
        store: Arc::new(store),
        on_message,
        policy: Policy {
            starttls: starttls.is_some(),
            require_tls: args.require_starttls,
            auth: offered.then_some(AuthPolicy {
                users,
                accept_any: args.auth_accept_any,
                allow_insecure: args.auth_allow_insecure,
            }),
            chaos: Chaos {
                sender: args.chaos_sender,
                recipient: args.chaos_recipient,
                auth: args.chaos_auth,
                disconnect: args.chaos_disconnect,
            },
            seed: 0,
        },
        starttls,
    })
}

/// One line on stderr per message: from, to, subject, size.
fn tell(m: &Stored) {
    let from = if m.envelope.from.is_empty() {
        "<>"
    } else {
        &m.envelope.from
    };
    eprintln!(
        "mail {} from {from} to {}: {:?} ({} bytes)",
        m.id,
        m.envelope.to.join(", "),
        m.summary.subject,
        m.size
    );
}
