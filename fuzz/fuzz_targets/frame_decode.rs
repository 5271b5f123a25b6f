#![no_main]
//! See `litefleet::fuzzing::wire::frame_decode`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| litefleet::fuzzing::wire::frame_decode(data));
