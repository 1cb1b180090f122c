//! The `sonde` binary: parses the command line, runs the subcommand from the
//! library, prints errors as one line and picks the exit code (0 ok, 1 a
//! failure at run time, 2 a usage error).
//!
//! One module (or folder) per subcommand, holding its flags and its output,
//! as the library has one per subsystem: `talk` (connect, listen), `perf`,
//! `serve`, `rtt`, `transfer` (send, receive); usage errors and the value
//! parsers they share are in `usage`, stdout in `output`.

#[macro_use]
mod output;

mod access;
mod exporter;
mod mail;
mod mail_wait;
mod metrics;
mod perf;
mod relay;
mod report;
mod rtt;
mod serve;
mod talk;
mod tls;
mod transfer;
mod usage;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

/// sonde: talk to and serve TCP and UDP ports, move files, and measure a
/// network's throughput, delay and bandwidth.
#[derive(Debug, Parser)]
#[command(
    name = "sonde",
    version,
    about = "sonde: talk to and serve TCP and UDP ports, move files, and measure a network's throughput, delay and bandwidth (one tool for nc, iperf3 and sockperf's jobs)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to HOST PORT: stdin to the socket, the socket to stdout (like nc).
    Connect(crate::talk::connect::ConnectArgs),
    /// Listen on [ADDR:]PORT for one client (or many with -k) (like nc -l).
    Listen(crate::talk::listen::ListenArgs),
    /// Measure throughput with iperf3's protocol and flags (-s server, -c HOST client;
    /// neither: an embedded loopback test).
    Perf(Box<crate::perf::args::PerfArgs>),
    /// Serve echo, discard, chargen, chat or a sockperf reflector to many clients at once.
    Serve(crate::serve::ServeArgs),
    /// Measure round-trip latency against an echo server, and fit delay and
    /// bandwidth over message sizes (no host: an embedded loopback echo).
    Rtt(crate::rtt::RttArgs),
    /// Send files, directories or stdin to `sonde receive`, verified with
    /// BLAKE3 and resumable.
    Send(crate::transfer::send::SendArgs),
    /// Receive files from `sonde send` into a directory (one transfer, or
    /// many with --keep-open).
    Receive(crate::transfer::receive::ReceiveArgs),
    /// Draw saved results (sonde's JSON, iperf3's -J or --json-stream) as one
    /// self-contained HTML page of charts; several are overlaid.
    Report(crate::report::ReportArgs),
    /// Relay FROM to TO: tcp-listen:8080 tcp:host:80, udp, unix, tls, stdio or exec ends (like socat).
    Relay(crate::relay::RelayArgs),
    /// A Prometheus exporter: each scrape of /probe?target=HOST&module=NAME runs one probe
    /// (perf, rtt, connect, sweep, smtp) and answers its metrics.
    Exporter(crate::exporter::ExporterArgs),
    /// Work with a `serve smtp` mail sink: `mail wait` for the next message that matches.
    #[command(subcommand)]
    Mail(crate::mail_wait::MailCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    use tracing_subscriber::filter::LevelFilter;
    // Library warnings (a failed accept, ...) go to stderr; `perf -d`
    // adds the control session's steps.
    let level = match &cli.command {
        Command::Perf(args) => match args.debug {
            Some(0..=1) => LevelFilter::INFO,
            Some(2..=3) => LevelFilter::DEBUG,
            Some(_) => LevelFilter::TRACE,
            None => LevelFilter::WARN,
        },
        _ => LevelFilter::WARN,
    };
    // SONDE_LOG=debug shows the library's steps in any subcommand (a
    // receiver's commits and what each step cost, for one).
    let level = std::env::var("SONDE_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(level);
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(level)
        .without_time();
    // Warnings alone read as the rest of sonde's messages do.
    let detailed = level > LevelFilter::WARN;
    fmt.event_format(output::Plain { detailed }).init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // An error's chain may quote a peer: escaped, its lines kept.
            let text = usage::describe(&err);
            eprintln!("sonde: {}", sonde::shown::escaped(&text, true));
            if err.downcast_ref::<usage::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Connect(args) => talk::connect(args),
        Command::Listen(args) => talk::listen::listen(args),
        Command::Perf(args) => perf::perf(*args),
        Command::Serve(args) => serve::serve(args),
        Command::Rtt(args) => rtt::rtt(args),
        Command::Send(args) => transfer::send::send(args),
        Command::Receive(args) => transfer::receive::receive(args),
        Command::Report(args) => report::run(args).map(|()| ExitCode::SUCCESS),
        Command::Relay(args) => relay::run(args),
        Command::Mail(command) => mail_wait::mail(command),
        Command::Exporter(args) => exporter::exporter(args),
        Command::Completions { shell } => {
            // Made whole first, then written as any output is: a reader
            // that goes early (`| head -c 1`) ends it quietly.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "sonde", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
