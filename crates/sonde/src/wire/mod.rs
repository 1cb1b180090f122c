//! Wire formats that more than one subsystem speaks, pure (no sockets,
//! no clock): iperf3's control and data protocol, used by `perf` and
//! `rtt --under-load`, and sockperf's message header, used by `rtt` and
//! `serve sockperf`. Everything above may import these; they import
//! nothing of sonde's.

pub mod iperf;
pub mod sockperf;
