//! Fuzz target: `sonde::fuzzing::transfer_wire` (see there for what it reads).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sonde::fuzzing::transfer_wire(data));
