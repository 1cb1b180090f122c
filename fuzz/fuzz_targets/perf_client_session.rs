//! Fuzz target: `sonde::fuzzing::perf_client_session` (see there for what it reads).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::fuzzing::perf_client_session(data));
