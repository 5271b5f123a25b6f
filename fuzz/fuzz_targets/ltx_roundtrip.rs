#![no_main]
//! See `litefleet::fuzzing::ltx::ltx_roundtrip`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| litefleet::fuzzing::ltx::ltx_roundtrip(data));
