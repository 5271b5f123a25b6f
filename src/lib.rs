//! litefleet: SQLite replicated across a fleet of Linux machines.
//!
//! # Layout
//! - [`core`]: the sans-IO heart. LTX transaction files ([`core::ltx`]), the node-to-node wire
//!   protocol ([`core::wire`]) and domain types ([`core::types`]). No tokio, no sockets, no
//!   filesystem, no clock reads.
//! - [`net`]: thin I/O adapters, starting with the `tokio_util` codec over [`core::wire`].
//! - [`fuzzing`]: plain entry points the `fuzz/` targets call, so each target stays tiny.
//! - [`logging`]: the tracing subscriber the binary installs (`log:` settings, flood guard).
//!
//! Data flows: an application commits through the FUSE mount, the database's actor turns the
//! commit into an LTX file ([`core::ltx::LtxWriter`]), and replicas receive it as wire frames,
//! verify it ([`core::ltx::LtxReader`]) and apply it ([`core::ltx::apply`]).

pub mod certs;
pub mod clock;
pub mod config;
pub mod core;
pub mod db;
pub mod fuse;
pub mod fuzzing;
pub mod http;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod mount;
pub mod net;
pub mod node;
pub mod observe;
pub mod promote;
pub mod proxy;
pub mod repl;
pub mod rt;
pub mod scrub;
pub mod storage;
pub mod store;
pub mod tls;
