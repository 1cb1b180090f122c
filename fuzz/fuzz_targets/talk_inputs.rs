//! Fuzz target: `sonde::fuzzing::talk_inputs` (see there for what it reads).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::fuzzing::talk_inputs(data));
