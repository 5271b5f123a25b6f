#![no_main]
//! See `litefleet::fuzzing::ltx::ltx_decode`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| litefleet::fuzzing::ltx::ltx_decode(data));
