//! Fuzz target: `sonde::fuzzing::sockperf` (see there for what it reads).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::fuzzing::sockperf(data));
