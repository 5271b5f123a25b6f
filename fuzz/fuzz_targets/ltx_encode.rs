#![no_main]
//! See `litefleet::fuzzing::ltx::ltx_encode`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| litefleet::fuzzing::ltx::ltx_encode(data));
