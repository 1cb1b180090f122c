//! Fuzz target: `sonde::fuzzing::report` (see there for what it reads).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::fuzzing::report(data));
