//! `sonde rtt`: round-trip latency against any echo server, with the
//! statistics latency work needs ([`stats`]), UDP reply accounting
//! ([`seq`]), and the lesson's model rtt = base + passes·size/bandwidth fitted
//! over message sizes ([`fit`]). The measuring loop runs on a plain
//! blocking thread (lower and steadier latency than an async runtime) and
//! allocates nothing per sample.

pub mod client;
pub mod fit;
pub mod open;
pub mod seq;
pub mod stats;
pub mod under_load;
