//! I/O adapters over the sans-IO core. For now: the `tokio_util` codec for wire frames.

pub mod codec;
