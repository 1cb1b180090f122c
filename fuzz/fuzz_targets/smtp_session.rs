//! Fuzz target: `sonde::fuzzing::smtp_session` (see there for what it reads).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::fuzzing::smtp_session(data));
