//! Fuzz target: `sonde::fuzzing::mail_view` (see there for what it reads).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::fuzzing::mail_view(data));
