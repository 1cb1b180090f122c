//! Fuzz target: `sonde::fuzzing::iperf_udp` (see there for what it reads).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::fuzzing::iperf_udp(data));
