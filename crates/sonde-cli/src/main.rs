//! The `sonde` binary: parses the command line, runs the subcommand from the
//! library, prints errors as one line and picks the exit code (0 ok, 1 a
//! failure at run time, 2 a usage error).

#[macro_use]
mod output;

mod args;
mod perf;
mod perf_args;
mod rtt;
mod rtt_load;
mod serve;
mod talk;
mod transfer;
mod transfer_progress;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Library warnings (a failed accept, ...) go to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .without_time()
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sonde: {err:#}");
            if err.downcast_ref::<talk::UsageError>().is_some() {
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
        Command::Listen(args) => talk::listen(args),
        Command::Perf(args) => perf::perf(*args),
        Command::Serve(args) => serve::serve(args),
        Command::Rtt(args) => rtt::rtt(args),
        Command::Send(args) => transfer::send(args),
        Command::Receive(args) => transfer::receive(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sonde", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}
