//! Plain entry points for the `cargo fuzz` targets in `fuzz/`, so each target is one line and
//! the same functions can run in ordinary tests (`tests/it/fuzz_seeds.rs` runs them over the
//! committed seed corpus).
//!
//! Every function here must return normally for every input; a panic is a bug found.

pub mod ltx;
pub mod wire;
