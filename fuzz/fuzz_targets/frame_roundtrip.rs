#![no_main]
//! See `litefleet::fuzzing::wire::frame_roundtrip`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| litefleet::fuzzing::wire::frame_roundtrip(data));
