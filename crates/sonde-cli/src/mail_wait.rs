//! `sonde mail wait`: the next message a `serve smtp` sink receives that
//! matches, printed as the API's JSON; exit 0, or 1 when none comes in
//! time. For shell tests: start it, make the app send, read the JSON.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::usage::parse_secs;

#[derive(Debug, Subcommand)]
pub(crate) enum MailCommand {
    /// Wait for the next message matching --to/--from/--subject/--query and print its JSON
    /// (Mailpit's /api/v1/message shape); exit 0, or 1 when none comes within --timeout.
    Wait(WaitArgs),
}

#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// The sink's web side, HOST[:PORT] ([::1]:PORT for IPv6; port 8025, serve smtp's --http).
    #[arg(default_value = "localhost")]
    pub(crate) server: String,
    /// A recipient the message must have (To, Cc, Bcc or the envelope's).
    #[arg(long, value_name = "ADDR")]
    pub(crate) to: Option<String>,
    /// Its sender must contain this.
    #[arg(long, value_name = "ADDR")]
    pub(crate) from: Option<String>,
    /// Its subject must contain this.
    #[arg(long, value_name = "TEXT")]
    pub(crate) subject: Option<String>,
    /// A search in Mailpit's syntax (words, from:, to:, subject:, is:unread, -word), with the above.
    #[arg(long, value_name = "QUERY")]
    pub(crate) query: Option<String>,
    /// Give up after SECS (exit 1).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "30")]
    pub(crate) timeout: Duration,
    /// A message already stored counts too (the newest that matches), not only one arriving.
    #[arg(long)]
    pub(crate) stored: bool,
}

/// The exit code when no message came in time.
const TIMED_OUT: u8 = 1;

/// A search term for `field`, quoted so spaces stay in it.
fn term(field: &str, value: &str) -> String {
    format!("{field}:\"{}\"", value.replace('"', ""))
}

/// `sonde mail SUBCOMMAND`.
pub(crate) fn mail(command: MailCommand) -> anyhow::Result<ExitCode> {
    let MailCommand::Wait(args) = command;
    let (host, port) = sonde::net::split_host_default_port(&args.server, 8025)?;
    let addr = sonde::net::resolve(&host, port, sonde::net::Family::Any)?[0];
    let mut query: Vec<String> = Vec::new();
    query.extend(args.to.as_deref().map(|v| term("to", v)));
    query.extend(args.from.as_deref().map(|v| term("from", v)));
    query.extend(args.subject.as_deref().map(|v| term("subject", v)));
    query.extend(args.query.clone());
    let query = query.join(" ");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // Once this line is out, a message sent is one it will see.
    let subscribed = || eprintln!("sonde: mail wait: waiting on http://{addr}/");
    let next = sonde::serve::smtp::watch::next(addr, &query, args.stored, subscribed);
    let waited = runtime.block_on(async { tokio::time::timeout(args.timeout, next).await });
    match waited {
        Ok(message) => {
            let message = message.context("waiting for a message")?;
            println!("{}", serde_json::to_string_pretty(&message)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(_) => {
            let what = if query.is_empty() {
                "message".into()
            } else {
                format!("message matching {query}")
            };
            eprintln!(
                "sonde: mail wait: no {what} at {addr} within {:.1} s",
                args.timeout.as_secs_f64()
            );
            Ok(ExitCode::from(TIMED_OUT))
        }
    }
}
