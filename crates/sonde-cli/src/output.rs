//! Results on standard output without `println!`'s panic when the reader
//! has gone (`sonde rtt | head -1`): a closed pipe ends the process quietly
//! with exit code 0, as ripgrep does; any other failure to write ends it
//! with the error and exit code 1. Warnings from the library go to stderr
//! in the same voice ([`Plain`]).

use std::io::Write;

/// Writes `args` (and a newline when `newline`) to standard output.
pub(crate) fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let mut result = out.write_fmt(args);
    if newline && result.is_ok() {
        result = out.write_all(b"\n");
    }
    if let Err(e) = result.and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("sonde: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` to standard output through [`write`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), true)
    };
}

/// `print!` to standard output through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), false)
    };
}

/// The library's events on stderr as `sonde: MESSAGE` (warnings, like
/// the rest of sonde's messages: the level and target only add noise
/// there) or `LEVEL target: MESSAGE` (`SONDE_LOG=debug` and finer). Either
/// way the message is escaped: it may carry what a peer sent.
pub(crate) struct Plain {
    /// Whether the level and target are shown.
    pub(crate) detailed: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut message = String::new();
        let fields = tracing_subscriber::fmt::format::Writer::new(&mut message);
        ctx.field_format().format_fields(fields, event)?;
        let message = sonde::shown::escaped(&message, false);
        if self.detailed {
            let meta = event.metadata();
            writeln!(writer, "{:>5} {}: {message}", meta.level(), meta.target())
        } else {
            writeln!(writer, "sonde: {message}")
        }
    }
}
