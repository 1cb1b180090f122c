//! Fuzz target: `sonde::fuzzing::rtt_replies` (see there for what it reads).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::fuzzing::rtt_replies(data));
