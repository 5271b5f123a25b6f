//! The deterministic core: formats, wire protocol and (later) replication and lease state
//! machines.
//!
//! Nothing under `core` touches tokio, sockets, the filesystem or the clock. Streaming code is
//! written against `std::io::{Read, Write}` and `bytes` buffers so callers can hand it a file, a
//! QUIC stream's buffered bytes or a fuzzer's input; time, where needed, is passed in. That keeps
//! every decision here unit-testable, simulatable and fuzzable.

pub mod commit;
pub mod halt;
pub mod lease;
pub mod ltx;
pub mod proxy;
pub mod quorum;
pub mod ratelimit;
pub mod repl;
#[cfg(test)]
mod repl_sim;
pub mod rfc3339;
pub mod session;
#[cfg(test)]
pub mod sim;
pub mod sqlite;
pub mod types;
pub mod wire;
